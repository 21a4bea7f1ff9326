"""Who ran a piece of code, and through which path: for executions no websocket carries.

The kernel websocket knows its user (``websocket_handler.current_user``). Code that reaches a
kernel through a kernel client inside the server (REST execution, server-side execution into a
shared document, an AI agent's tool) is sent from a background task whose request context is
stale or absent (NOTES: trust identity only at request time). So each such path states, *at
request time*, what it is about to run and for whom (``expect``), and the guarded kernel client
claims that statement when the execute_request actually leaves (``claim``):

1. a pending claim for the kernel whose code matches (sha256), else the oldest one without code
   (server-side execution names cells, not code);
2. the path marked on the running context (``mark_via``) while its request is live, with
   the user of that request;
3. the live request itself (``CallContext``), named by its handler class;
4. otherwise the execution is recorded as ``server`` with no user: visible as unattributed.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Attribution",
    "Attributions",
    "code_sha256",
    "current_request_user",
    "mark_via",
    "unmark",
]

#: How long a request-time statement waits for its execute_request (a queued Run All waits
#: behind the cells before it; an hour bounds the table without dropping a slow queue).
CLAIM_TTL = 3600.0
#: Statements kept per kernel at most (a runaway client cannot grow the table without bound).
MAX_PENDING = 10_000

_VIA: contextvars.ContextVar[tuple[str, Any] | None] = contextvars.ContextVar(
    "prod_discovery_execution_via", default=None
)


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class Attribution:
    """The path an execution came through and the authenticated user who asked for it."""

    via: str
    user: Any = None


@dataclass(eq=False)
class _Pending:
    via: str
    user: Any
    sha: str | None
    expires: float


def current_request_user() -> tuple[Any, Any] | None:
    """(handler, user) of the request being served in this context, if it is still live.

    A finished handler seen through a copied context (a task created by an earlier request)
    is stale: it names whoever started the task, not who asked for this execution.
    """
    try:
        from jupyter_server import CallContext
    except ImportError:  # pragma: no cover - jupyter_server < 2.13
        return None
    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    if handler is None or getattr(handler, "_finished", True):
        return None
    return handler, getattr(handler, "current_user", None)


def mark_via(via: str, user: Any = None) -> contextvars.Token[tuple[str, Any] | None]:
    """Mark executions sent in this context (and tasks it creates) as run through ``via``.

    For hooks that cannot wrap the call they mark (jupyter-mcp-server's before/after tool call);
    reset with ``unmark``.
    """
    return _VIA.set((via, user))


def unmark(token: contextvars.Token[tuple[str, Any] | None]) -> None:
    with contextlib.suppress(ValueError):  # set in another context: ends with that context
        _VIA.reset(token)


class Attributions:
    """Request-time statements of what will run on which kernel, claimed at send time."""

    def __init__(self) -> None:
        self._pending: dict[str, deque[_Pending]] = {}

    def expect(
        self, kernel_id: str, via: str, user: Any, code: str | None = None, count: int = 1
    ) -> list[Any]:
        """Say that ``count`` executions on ``kernel_id`` (of ``code`` when known) are coming.

        Returns the statements, for ``withdraw`` when the request is refused after all.
        """
        now = time.monotonic()
        queue = self._pending.setdefault(kernel_id, deque(maxlen=MAX_PENDING))
        sha = code_sha256(code) if code is not None else None
        added = [_Pending(via, user, sha, now + CLAIM_TTL) for _ in range(max(1, count))]
        queue.extend(added)
        return added

    def withdraw(self, kernel_id: str, statements: list[Any]) -> None:
        """Take back statements whose request failed (nothing will run for them)."""
        queue = self._pending.get(kernel_id)
        for p in statements:
            if queue is not None and p in queue:
                queue.remove(p)

    def forget(self, kernel_id: str) -> None:
        self._pending.pop(kernel_id, None)

    def claim(self, kernel_id: str, code: str) -> Attribution:
        """Who this execute_request is for (see the module docstring for the order)."""
        queue = self._pending.get(kernel_id)
        if queue:
            now = time.monotonic()
            while queue and queue[0].expires < now:
                queue.popleft()
            sha = code_sha256(code)
            hit = next((p for p in queue if p.sha == sha), None)
            if hit is None:
                hit = next((p for p in queue if p.sha is None), None)
            if hit is not None:
                queue.remove(hit)
                return Attribution(hit.via, hit.user)
        marked = _VIA.get()
        live = current_request_user()
        # A mark is trusted only inside a live request: a task created during a marked request
        # (a kernel's execution worker) keeps a copy of the mark long after that request.
        if marked is not None and live is not None:
            via, user = marked
            return Attribution(via, user if user is not None else live[1])
        if live is not None:
            handler, user = live
            return Attribution(f"server:{type(handler).__name__}", user)
        return Attribution("server", None)
