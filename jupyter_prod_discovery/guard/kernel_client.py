"""A kernel client that passes the PII guard and the audit: for kernel clients inside the server.

Extensions that run code without the kernel websocket (jupyter-server-nbmodel's REST execution,
jupyter-server-documents' server-side execution, jupyter-mcp-server's tools) all create their
client from the kernel manager: ``km.client()`` or ``km.client_factory(...)``, i.e. the
manager's ``client_class``, a declared jupyter_client trait. ``extension`` makes
:class:`GuardedKernelClient` that class (unless one is configured), so every such client:

- audits each ``execute_request`` it sends (shell ``send``), with the path it came through and
  the authenticated user from :mod:`.attribution`, and its ``execute_reply`` status;
- scans every message it receives (iopub, shell, stdin, control ``get_msg``) before its caller
  sees it: output types through ``PIIGuard.content``, every other message's strings through
  ``PIIGuard.text``; a message that cannot be scanned is replaced by the guard's notice;
- rescans the seam between two chunks of one stream. ``execute_interactive`` holds each stream
  message back until the next message of the cell arrives (the ``idle`` status always does),
  so a value split across flushes, however far apart in time, is redacted whole.

Callers that read the sockets directly (``socket.recv_multipart``) bypass all of this;
``documents.py`` covers the one such caller we know of (jupyter-server-documents' websocket).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import Type

from ..pii import Finding, redact
from .attribution import Attribution
from .live import SCANNED_TYPES, PIIGuard, map_strings

__all__ = ["GuardedChannel", "GuardedKernelClient", "MessageGuard"]

log = logging.getLogger(__name__)

#: Messages that carry nothing a user typed or a kernel printed.
_UNSCANNED = frozenset(("status", "kernel_info_reply", "comm_info_reply", "is_complete_reply"))


def _app_of(obj: Any) -> Any:
    from ..credentials.provisioner import find_app

    return find_app(obj)


class MessageGuard:
    """One client's guard state: its kernel, the guard, the audit, executions and seams."""

    def __init__(self, app: Any, kernel_id: str) -> None:
        self.app = app
        self.kernel_id = kernel_id
        #: execute_request msg_id -> who asked, for the reply, the outputs' pii events
        self.requests: dict[str, Attribution] = {}
        self._stream: dict[str, Any] | None = None  # last stream message (may still be held)

    @property
    def guard(self) -> PIIGuard | None:
        guard = getattr(self.app, "pii_guard", None)
        return guard if guard is not None and guard.on else None

    # --- outbound -------------------------------------------------------------------------------
    def sent(self, msg: dict[str, Any], who: Attribution | None = None) -> None:
        """Audit an execute_request leaving for the kernel (``who``: known by the caller)."""
        header = msg.get("header") or {}
        if header.get("msg_type") != "execute_request":
            return
        content = msg.get("content") or {}
        code = str(content.get("code", ""))
        paths = getattr(self.app, "execution_paths", None)
        if who is None:
            who = paths.attributions.claim(self.kernel_id, code) if paths else Attribution("server")
        msg_id = str(header.get("msg_id", ""))
        if len(self.requests) > 1000:  # replies that never came (kernel died): bound the map
            self.requests.pop(next(iter(self.requests)))
        self.requests[msg_id] = who
        metadata = msg.get("metadata") or {}
        from .attribution import code_sha256

        self.app.audit.record(
            "execution",
            {
                "phase": "request",
                "kernel_id": self.kernel_id,
                "session": header.get("session"),
                "msg_id": msg_id,
                "cell_id": metadata.get("cellId") or metadata.get("cell_id") or who.cell_id,
                "code_sha256": code_sha256(code),
                "code": code,
                "via": who.via,
            },
            user=who.user,
        )

    # --- inbound --------------------------------------------------------------------------------
    def received(self, channel: str, msg: dict[str, Any]) -> bool:
        """Scan one received message in place; True when its content was changed."""
        msg_type = str((msg.get("header") or {}).get("msg_type", ""))
        parent = str((msg.get("parent_header") or {}).get("msg_id", ""))
        if channel == "shell" and msg_type == "execute_reply":
            self._audit_reply(parent, msg)
        guard = self.guard
        if guard is None:
            return False
        if msg_type in _UNSCANNED:
            if channel == "iopub":  # the cell's idle status closes its stream's seam
                self._track_stream(guard, msg_type, parent, msg)
            return False
        content = msg.get("content")
        if not isinstance(content, dict):
            return False
        try:
            changed = self._scan(guard, channel, msg_type, parent, msg, content)
        except Exception:
            # Never passed unscanned: the notice replaces what could not be scanned.
            guard.log.exception("PII guard could not scan a %s message", msg_type)
            msg["content"] = guard.blocked(msg_type, content, None)
            return True
        return changed

    def _scan(
        self,
        guard: PIIGuard,
        channel: str,
        msg_type: str,
        parent: str,
        msg: dict[str, Any],
        content: dict[str, Any],
    ) -> bool:
        raw = json.dumps(content).encode()
        if guard.raw_clean(raw, self.kernel_id):
            if channel == "iopub":
                self._track_stream(guard, msg_type, parent, msg)
            return False
        who = self.requests.get(parent)
        where = self._where(msg_type, parent)
        if msg_type in SCANNED_TYPES:
            scan = guard.content(msg_type, content, self.kernel_id)
            guard.audit(self.app.audit, where, scan.verdict, who.user if who else None)
            if scan.content is not None:
                msg["content"] = scan.content
        else:
            found: dict[str, int] = {}

            def fn(s: str) -> str:
                verdict, out = guard.text(s, self.kernel_id)
                for k, v in verdict.entities.items():
                    found[k] = found.get(k, 0) + v
                if verdict.action == "block":
                    return "[Prod Discovery: blocked by the PII policy]"
                return out

            new = map_strings(content, fn)
            if found:
                from ..pii import Verdict

                verdict = Verdict("redact", [])
                verdict.entities = found
                guard.audit(self.app.audit, where, verdict, who.user if who else None)
                msg["content"] = new
        if channel == "iopub":
            self._track_stream(guard, msg_type, parent, msg)
        return msg["content"] is not content

    def _track_stream(
        self, guard: PIIGuard, msg_type: str, parent: str, msg: dict[str, Any]
    ) -> None:
        """Rescan the seam between two chunks of one stream; redact a straddling value in both."""
        prev = self._stream
        if msg_type != "stream":
            if prev is not None and str(prev["parent_header"].get("msg_id", "")) == parent:
                self._stream = None
            return
        self._stream = msg
        if prev is None:
            return
        same = str(prev["parent_header"].get("msg_id", "")) == parent and prev["content"].get(
            "name"
        ) == msg["content"].get("name")
        if not same:
            return
        before, after = str(prev["content"].get("text", "")), str(msg["content"].get("text", ""))
        if guard.seam_closed(before, after, self.kernel_id):
            return
        window = max(guard.stream_window, guard.matcher(self.kernel_id).max_length)
        tail, head = before[-window:], after[:window]
        cut = len(tail)
        extra_prev: list[Finding] = []
        extra_next: list[Finding] = []
        for f in guard.find(tail + head, self.kernel_id):
            if f.start < cut < f.end:
                base = len(before) - cut
                extra_prev.append(Finding(f.entity_type, base + f.start, len(before), f.score))
                extra_next.append(Finding(f.entity_type, 0, f.end - cut, f.score))
        if not extra_prev:
            return
        verdict = guard.policy.decide(extra_next)
        if verdict.action in ("allow", "warn"):
            return
        # The held previous chunk is fixed in place (execute_interactive, documents.py hold it
        # back until now); the new chunk is fixed before anyone sees it.
        prev["content"] = {**prev["content"], "text": redact(before, extra_prev)}
        msg["content"] = {**msg["content"], "text": redact(after, extra_next)}
        who = self.requests.get(parent)
        where = self._where("stream", parent)
        guard.audit(self.app.audit, where, verdict, who.user if who else None)

    def _where(self, output: str, parent: str) -> dict[str, Any]:
        """Where a finding was: the kernel, the message type, and the execute_request it
        answers (``msg_id``), which links it to that execution's record (user, path, cell)."""
        return {
            "source": "live",
            "kernel_id": self.kernel_id,
            "output": output,
            "msg_id": parent or None,
        }

    def _audit_reply(self, parent: str, msg: dict[str, Any]) -> None:
        who = self.requests.pop(parent, None)
        if who is None:
            return
        self.app.audit.record(
            "execution",
            {
                "phase": "reply",
                "kernel_id": self.kernel_id,
                "session": (msg.get("parent_header") or {}).get("session"),
                "msg_id": parent,
                "status": (msg.get("content") or {}).get("status"),
                "via": who.via,
            },
            user=who.user,
        )


class GuardedChannel(AsyncZMQSocketChannel):
    """A client channel whose sends are audited and whose receptions are scanned."""

    pd_guard: MessageGuard | None = None
    pd_name = ""

    def send(self, msg: dict[str, Any]) -> None:
        if self.pd_guard is not None:
            try:
                self.pd_guard.sent(msg)
            except Exception:
                # An execution we cannot record is not sent (the audit guard fails closed).
                log.exception("could not audit an execute_request; not sent")
                raise RuntimeError("Prod Discovery: the execution could not be audited") from None
        super().send(msg)

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]  # noqa: ASYNC109
        msg = await super().get_msg(timeout)
        if self.pd_guard is not None:
            self.pd_guard.received(self.pd_name, msg)
        return msg


class GuardedKernelClient(AsyncKernelClient):
    """``AsyncKernelClient`` through the guard: installed as the kernel managers' client_class."""

    shell_channel_class = Type(GuardedChannel)
    iopub_channel_class = Type(GuardedChannel)
    stdin_channel_class = Type(GuardedChannel)
    control_channel_class = Type(GuardedChannel)

    _pd_guard: MessageGuard | None = None

    @property
    def pd_guard(self) -> MessageGuard | None:
        """The guard state of this client (None outside a server running the extension)."""
        if self._pd_guard is None:
            app = _app_of(self.parent)
            kernel_id = getattr(self.parent, "kernel_id", None)
            if app is not None and kernel_id:
                self._pd_guard = MessageGuard(app, str(kernel_id))
        return self._pd_guard

    def _wire(self, channel: Any, name: str) -> Any:
        if isinstance(channel, GuardedChannel) and channel.pd_guard is None:
            channel.pd_guard = self.pd_guard
            channel.pd_name = name
        return channel

    @property
    def shell_channel(self) -> Any:
        return self._wire(super().shell_channel, "shell")

    @property
    def iopub_channel(self) -> Any:
        return self._wire(super().iopub_channel, "iopub")

    @property
    def stdin_channel(self) -> Any:
        return self._wire(super().stdin_channel, "stdin")

    @property
    def control_channel(self) -> Any:
        return self._wire(super().control_channel, "control")

    async def _async_execute_interactive(
        self, code: str, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        """jupyter_client's, with each stream message held back until the next one arrives."""
        user_hook = kwargs.get("output_hook")
        if user_hook is None or self.pd_guard is None:
            return await super()._async_execute_interactive(code, *args, **kwargs)
        held: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if held:
                user_hook(held.pop())
            if msg.get("header", {}).get("msg_type") == "stream":
                held.append(msg)
                return
            user_hook(msg)

        kwargs["output_hook"] = hook
        try:
            return await super()._async_execute_interactive(code, *args, **kwargs)
        finally:
            if held:  # a timeout or an error ended the loop before the idle status
                user_hook(held.pop())

    execute_interactive = _async_execute_interactive


def is_guarded(client_class: Any) -> bool:
    """Whether a client class (or import string) is ours or derived from it."""
    if isinstance(client_class, str):
        from traitlets.utils.importstring import import_item

        try:
            client_class = import_item(client_class)
        except Exception:
            return False
    return isinstance(client_class, type) and issubclass(client_class, GuardedKernelClient)
