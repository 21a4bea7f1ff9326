"""Who ran a piece of code, and through which path: for executions no websocket carries.

The kernel websocket knows its user (``websocket_handler.current_user``). Code that reaches a
kernel through a kernel client inside the server (REST execution, server-side execution into a
shared document, an AI agent's tool) is sent from a background task whose request context is
stale or absent (NOTES: trust identity only at request time). So each such path states, *at
request time*, what it is about to run and for whom (``expect``), and the guarded kernel client
claims that statement when the execute_request actually leaves (``claim``):

1. a pending statement for the kernel whose code matches: by sha256 (REST execution and agents'
   tools state the code), else by the MurmurHash2 of the code (server-side execution states
   each cell's id and the hash of the source it approved, as jupyter-server-documents' API
   carries it), so concurrent requests, whatever order their cells run in, are each matched to
   their own execution, with the cell; else the oldest statement that names no code;
2. the path marked on the running context (``mark_via``) while its request is live, with
   the user of that request;
3. the live request itself (``CallContext``), named by its handler class;
4. otherwise the execution is recorded as ``server`` with no user: visible as unattributed.

Once claimed, an execution is known by its ``msg_id``: its reply and the PII findings in its
outputs are recorded with the same user and path through their ``parent_header``
(``kernel_client.MessageGuard.requests``), not by order. A cell edited after it was queued runs
code no statement names: it is recorded unattributed, and its statement expires.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import struct
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
    "murmur2",
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


def murmur2(source: str) -> str:
    """MurmurHash2 (seed 0) of the UTF-8 source as a decimal string: the ``source_hash`` a
    jupyter-server-documents execute request states for each cell (its frontend computes it)."""
    data = source.encode("utf-8")
    m = 0x5BD1E995
    n = len(data)
    h = n & 0xFFFFFFFF
    i = 0
    while n - i >= 4:
        k = struct.unpack_from("<I", data, i)[0]
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
        i += 4
    rest = n - i
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return str(h)


@dataclass(frozen=True)
class Attribution:
    """The path an execution came through and the authenticated user who asked for it."""

    via: str
    user: Any = None
    cell_id: str | None = None


@dataclass(eq=False)
class _Pending:
    via: str
    user: Any
    sha: str | None
    expires: float
    source_hash: str | None = None
    cell_id: str | None = None


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
        self,
        kernel_id: str,
        via: str,
        user: Any,
        code: str | None = None,
        count: int = 1,
        cells: list[tuple[str | None, str | None]] | None = None,
    ) -> list[Any]:
        """Say that executions on ``kernel_id`` are coming: of ``code`` when known; one per
        ``(cell_id, source_hash)`` of ``cells`` (``murmur2`` of each cell's source); else
        ``count`` that name no code.

        Returns the statements, for ``withdraw`` when the request is refused after all.
        """
        expires = time.monotonic() + CLAIM_TTL
        queue = self._pending.setdefault(kernel_id, deque(maxlen=MAX_PENDING))
        if cells:
            added = [_Pending(via, user, None, expires, source_hash=h, cell_id=c) for c, h in cells]
        else:
            sha = code_sha256(code) if code is not None else None
            added = [_Pending(via, user, sha, expires) for _ in range(max(1, count))]
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
            if hit is None and any(p.source_hash is not None for p in queue):
                source_hash = murmur2(code)
                hit = next((p for p in queue if p.source_hash == source_hash), None)
            if hit is None:
                hit = next((p for p in queue if p.sha is None and p.source_hash is None), None)
            if hit is not None:
                queue.remove(hit)
                return Attribution(hit.via, hit.user, hit.cell_id)
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
