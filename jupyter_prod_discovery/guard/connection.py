"""The kernel websocket hook: every output through the PII guard, every execute to the audit.

``GuardedWebsocketConnection`` is installed as ``ServerApp.kernel_websocket_connection_class``.
Outgoing kernel messages go through one ordered queue per connection, so a message whose scan
is not finished (a stream chunk held back for its continuation, a large output scanned on the
worker thread) delays the messages behind it instead of being overtaken: nothing is lost or
reordered, and ``status: idle`` always comes after the outputs of its cell.

The hot path stays cheap: the message type is read from the packed header bytes; messages that
cannot carry output (status, replies, comm_open, ...) go straight to the base class when the
queue is empty; output whose raw JSON bytes hold no digit, no '@', no ``\\u`` escape and no
gate byte of a live secret is not even decoded (``PIIGuard.raw_clean``: it cannot hold a
finding), and the seam after a line break is not rescanned (``PIIGuard.seam_closed``).
Edited messages are re-packed and re-signed with the session key (the legacy JSON protocol
verifies signatures; the v1 protocol passes raw parts through).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from concurrent.futures import Future
from typing import Any

import zmq
from jupyter_client.session import DELIM
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from ..pii import Finding, redact
from ..pii.scanner import may_match
from .live import SCANNED_TYPES, PIIGuard, Scan

__all__ = ["GuardedWebsocketConnection"]

V1 = "v1.kernel.websocket.jupyter.org"


_UNSET = object()


def _msg_type(header: bytes) -> str:
    """``msg_type`` from a packed header without parsing it (a few hundred nanoseconds)."""
    i = header.find(b'"msg_type"')
    if i < 0:
        return ""
    j = header.find(b'"', header.find(b":", i) + 1)
    return header[j + 1 : header.find(b'"', j + 1)].decode()


class _Out:
    """One outgoing message waiting its turn in the connection's ordered queue."""

    __slots__ = (
        "clean",
        "content",
        "decoded",
        "extra",
        "findings",
        "held",
        "idents",
        "key",
        "msg_list",
        "msg_type",
        "parts",
        "pending",
        "scan",
        "stream",
        "text",
        "withheld",
    )

    def __init__(self, stream: Any, msg_list: list[Any]) -> None:
        self.stream = stream
        self.msg_list = msg_list
        self.idents: list[Any] = []
        self.parts: list[Any] = []
        self.msg_type = ""
        self.content: dict[str, Any] = {}
        self.key: tuple[str, str] | None = None
        self.text = ""
        self.findings: list[Finding] = []
        self.extra: list[Finding] = []
        self.held = False
        self.pending: Future[Any] | None = None
        self.scan: Scan | None = None
        self.withheld = False
        # clean: the raw content bytes passed ``PIIGuard.raw_clean`` (nothing to find, so not
        # decoded unless a neighbour's seam needs the text); decoded: content/text are set.
        self.clean = False
        self.decoded = False


def _decode(e: _Out) -> None:
    """Parse a message's content (and a stream's text) once, when first needed."""
    if not e.decoded:
        e.content = json.loads(e.parts[3])
        if e.msg_type == "stream":
            e.text = str(e.content.get("text", ""))
        e.decoded = True


def _stream_key(e: _Out) -> tuple[str, str]:
    """(parent msg_id, stream name): chunks of one stream, whose seams are rescanned."""
    if e.key is None:
        _decode(e)
        parent = json.loads(e.parts[1])
        e.key = (str(parent.get("msg_id", "")), str(e.content.get("name", "")))
    return e.key


def _same_parent(held: _Out, parts: list[Any]) -> bool:
    """Whether a message (its parts after the signature) answers the same request as the held
    stream chunk."""
    parent = parts[1] if len(parts) > 1 else b""
    if held.parts[1] == parent:  # the same packed header: no need to parse it
        return True
    try:
        msg_id = json.loads(parent).get("msg_id", "")
    except (ValueError, AttributeError):
        return True  # unreadable: treated as the cell moving on, as before
    return bool(_stream_key(held)[0] == str(msg_id))


def _same_stream(a: _Out, b: _Out) -> bool:
    """Whether two stream messages continue one another (decodes both)."""
    _decode(a)
    _decode(b)
    if a.parts[1] == b.parts[1]:  # the same packed parent header: no need to parse it
        return bool(a.content.get("name", "") == b.content.get("name", ""))
    return _stream_key(a) == _stream_key(b)


class GuardedWebsocketConnection(ZMQChannelsWebsocketConnection):
    """Kernel websocket connection with the PII guard and execution auditing."""

    _pd_app: Any = None
    _pd_queue: deque[_Out] | None = None
    _pd_held: _Out | None = None
    _pd_held_since = 0.0
    _pd_timer: asyncio.TimerHandle | None = None

    # --- wiring -------------------------------------------------------------------------------
    @property
    def pd_app(self) -> Any:
        if self._pd_app is None:
            self._pd_app = self.websocket_handler.settings.get("prod_discovery")
        return self._pd_app

    @property
    def pd_guard(self) -> PIIGuard | None:
        guard = getattr(self.pd_app, "pii_guard", None)
        return guard if guard is not None and guard.on else None

    @property
    def pd_kernel_id(self) -> str:
        """The kernel id, read once (the base class's property goes through traitlets)."""
        kid: str | None = self.__dict__.get("_pd_kid")
        if kid is None:
            kid = self.kernel_id
            if kid is not None:
                self.__dict__["_pd_kid"] = kid
        return str(kid)

    def _user(self) -> Any:
        return getattr(self.websocket_handler, "current_user", None)

    def create_stream(self) -> None:
        """Open the kernel channels; iopub gets the guard's receive high-water mark.

        ZMQ drops iopub messages silently once ~1,000 are queued for a slow consumer; a 0
        (unlimited) HWM on this side keeps the kernel's queue drained by the ZMQ I/O thread,
        so bursts of output are buffered here instead of lost.
        """
        guard = getattr(self.pd_app, "pii_guard", None)
        opts = getattr(getattr(self.kernel_manager, "context", None), "sockopts", None)
        if guard is None or not isinstance(opts, dict):
            super().create_stream()
            return
        # The HWM of a pipe is fixed when it connects, so it is made the context's default for
        # the sockets this call creates (all on this thread, right now) instead of reconnecting
        # iopub afterwards, which delayed iopub and cost each kernel start extra nudge rounds.
        # The other channels get it too: they carry a few replies each, never a burst.
        previous = opts.get(zmq.RCVHWM, _UNSET)
        opts[zmq.RCVHWM] = guard.iopub_rcvhwm
        try:
            super().create_stream()
        finally:
            if previous is _UNSET:
                opts.pop(zmq.RCVHWM, None)
            else:
                opts[zmq.RCVHWM] = previous

    # --- incoming: audit execute requests ----------------------------------------------------
    def handle_incoming_message(self, incoming_msg: str) -> None:
        try:
            self._audit_request(incoming_msg)
        except Exception:
            self.log.exception("could not audit an execute_request")
        super().handle_incoming_message(incoming_msg)

    def _audit_request(self, ws_msg: Any) -> None:
        audit = getattr(self.pd_app, "audit", None)
        if audit is None:
            return
        if self.subprotocol == V1:
            if not isinstance(ws_msg, bytes) or b"execute_request" not in ws_msg[:4096]:
                return
            _, parts = deserialize_msg_from_ws_v1(ws_msg)
            # Decoded first: json.loads of bytes detects the encoding in Python each time.
            header = json.loads(parts[0].decode())
            metadata, content = json.loads(parts[2].decode()), json.loads(parts[3].decode())
        else:
            # Binary legacy frames carry buffers (comm data), never an execute_request.
            if not isinstance(ws_msg, str) or "execute_request" not in ws_msg[:4096]:
                return
            msg = json.loads(ws_msg)
            header, metadata, content = msg["header"], msg.get("metadata", {}), msg["content"]
        if header.get("msg_type") != "execute_request":
            return
        code = str(content.get("code", ""))
        audit.record(
            "execution",
            {
                "phase": "request",
                "kernel_id": self.pd_kernel_id,
                "session": header.get("session"),
                "msg_id": header.get("msg_id"),
                "cell_id": (metadata or {}).get("cellId") or (metadata or {}).get("cell_id"),
                "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
                "code": code,
            },
            user=self._user(),
        )

    def _audit_reply(self, parts: list[Any]) -> None:
        audit = getattr(self.pd_app, "audit", None)
        if audit is None:
            return
        parent, content = json.loads(parts[1].decode()), json.loads(parts[3].decode())
        audit.record(
            "execution",
            {
                "phase": "reply",
                "kernel_id": self.pd_kernel_id,
                "session": parent.get("session"),
                "msg_id": parent.get("msg_id"),
                "status": content.get("status"),
            },
            user=self._user(),
        )

    # --- outgoing: the guard ----------------------------------------------------------------
    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        if isinstance(stream, str):
            stream = self.channels[stream]
        msg_list = outgoing_msg
        if msg_list and type(msg_list[0]) is not bytes:  # zmq Frames (streams with copy=False)
            msg_list = [p.bytes if hasattr(p, "bytes") else p for p in outgoing_msg]
        try:
            i = msg_list.index(DELIM)
        except ValueError:
            super().handle_outgoing_message(stream, msg_list)
            return
        parts = msg_list[i + 2 :]
        msg_type = _msg_type(parts[0])
        channel = getattr(stream, "channel", None)
        if channel == "shell" and msg_type == "execute_reply":
            try:
                self._audit_reply(parts)
            except Exception:
                self.log.exception("could not audit an execute_reply")
        guard = self.pd_guard
        if guard is None or channel != "iopub" or msg_type not in SCANNED_TYPES:
            if not self._pd_queue:
                super().handle_outgoing_message(stream, msg_list)
                return
            held = self._pd_held
            if channel == "iopub" and held is not None and _same_parent(held, parts):
                # The cell's output moved on: the held chunk has no continuation. A message of
                # another request (the status of a control kernel_info_request answered while
                # the cell runs), or a reply on another channel, says nothing about the stream;
                # it waits in order behind the chunk instead of cutting the seam of a split
                # value (which would let each half of a secret pass the scan alone).
                self._release_held()
            self._pd_queue.append(_Out(stream, msg_list))
            self._drain()
            return
        if self._pd_queue is None:
            self._pd_queue = deque()
        entry = _Out(stream, msg_list)
        entry.idents, entry.parts, entry.msg_type = msg_list[:i], parts, msg_type
        try:
            self._scan(guard, entry)
        except Exception:
            # A message we cannot parse or scan is withheld, never passed unscanned.
            self.log.exception("PII guard could not scan a %s message", msg_type)
            self._release_held()
            entry.withheld = True
            entry.pending = None
        self._pd_queue.append(entry)
        self._drain()

    def _scan(self, guard: PIIGuard, e: _Out) -> None:
        big = len(e.parts[3]) > guard.inline_limit
        kid = self.pd_kernel_id
        # Raw bytes with nothing that could be found are not even decoded (see raw_clean).
        e.clean = guard.raw_clean(e.parts[3], kid)
        if e.msg_type == "stream":
            prev = self._pd_held
            # Two clean neighbours cannot share a match across their seam: any match holds a
            # digit, an '@' or a secret's gate byte, which would be on one side or the other.
            if prev is not None and not (prev.clean and e.clean) and _same_stream(prev, e):
                self._boundary(guard, prev, e, kid)
            self._release_held()
            e.held = True
            self._pd_held = e
            self._arm_hold_timer(guard.stream_hold_timeout)
            if e.clean:
                return
            _decode(e)
            # Text that cannot hold a pattern entity is cleared inline in microseconds.
            if big and (guard.policy.ner or may_match(e.text)):
                self._offload(guard, e, guard.find, e.text, kid)
            else:
                e.findings = guard.find(e.text, kid)
            return
        self._release_held()
        if e.clean:
            return
        _decode(e)
        if big:
            self._offload(guard, e, guard.content, e.msg_type, e.content, kid)
        else:
            e.scan = guard.content(e.msg_type, e.content, kid)

    def _boundary(self, guard: PIIGuard, prev: _Out, e: _Out, kid: str) -> None:
        """Rescan the seam between two chunks; a match across it is redacted in both halves."""
        if guard.seam_closed(prev.text, e.text, kid):
            return
        window = max(guard.stream_window, guard.matcher(kid).max_length)
        tail, head = prev.text[-window:], e.text[:window]
        cut = len(tail)
        for f in guard.find(tail + head, kid):
            if f.start < cut < f.end:
                base = len(prev.text) - cut
                prev.extra.append(Finding(f.entity_type, base + f.start, len(prev.text), f.score))
                e.extra.append(Finding(f.entity_type, 0, f.end - cut, f.score))

    def _offload(self, guard: PIIGuard, e: _Out, fn: Any, *args: Any) -> None:
        loop = asyncio.get_running_loop()
        if guard.latency_budget <= 0 and guard.over_budget == "block":
            e.withheld = True
            return
        fut = guard.submit(fn, *args)
        e.pending = fut
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(self._scanned, e, f))
        if guard.over_budget == "block":
            loop.call_later(guard.latency_budget, self._over_budget, e, fut)

    def _scanned(self, e: _Out, fut: Future[Any]) -> None:
        if e.pending is not fut:
            return  # already withheld by the budget rule
        e.pending = None
        try:
            result = fut.result()
        except Exception:
            self.log.exception("PII guard scan failed; output withheld")
            e.withheld = True
        else:
            if e.msg_type == "stream":
                e.findings = result
            else:
                e.scan = result
        self._drain()

    def _over_budget(self, e: _Out, fut: Future[Any]) -> None:
        if e.pending is fut:
            e.pending = None
            e.withheld = True
            self._drain()

    def _arm_hold_timer(self, timeout: float) -> None:
        """One timer per connection (not per message): release a chunk held too long."""
        loop = asyncio.get_running_loop()
        self._pd_held_since = loop.time()
        if self._pd_timer is None:
            self._pd_timer = loop.call_later(timeout, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        self._pd_timer = None
        if self._pd_held is None:
            return
        loop = asyncio.get_running_loop()
        left = self._pd_held_since + timeout - loop.time()
        if left > 0:
            self._pd_timer = loop.call_later(left, self._expire, timeout)
            return
        held, guard = self._pd_held, self.pd_guard
        if guard is not None and held.parts:
            # A chunk ending with the start of a live secret waits longer for the rest of it:
            # released now, the secret's two halves would each pass the scan alone.
            _decode(held)
            since = loop.time() - self._pd_held_since
            if since < guard.secret_hold_timeout and guard.may_continue_secret(
                held.text, self.pd_kernel_id
            ):
                self._pd_timer = loop.call_later(
                    min(timeout, guard.secret_hold_timeout - since), self._expire, timeout
                )
                return
        self._release_held()
        self._drain()

    def _release_held(self) -> None:
        if self._pd_held is not None:
            self._pd_held.held = False
            self._pd_held = None

    def _drain(self) -> None:
        q = self._pd_queue
        while q:
            e = q[0]
            if e.held or e.pending is not None:
                return
            q.popleft()
            try:
                self._emit(e)
            except Exception:
                self.log.exception("PII guard could not deliver a message")

    def _where(self, e: _Out) -> dict[str, Any]:
        return {"source": "live", "kernel_id": self.pd_kernel_id, "output": e.msg_type}

    def _emit(self, e: _Out) -> None:
        guard = self.pd_guard
        if not e.parts or guard is None:
            super().handle_outgoing_message(e.stream, e.msg_list)
            return
        content: dict[str, Any] | None
        if e.withheld:
            if not e.decoded:
                try:
                    _decode(e)
                except Exception:  # not JSON at all: the notice alone
                    e.content = {"name": "stdout"} if e.msg_type == "stream" else {}
            content = guard.blocked(e.msg_type, e.content, None)
            if e.msg_type in ("execute_result", "display_data", "update_display_data"):
                content["metadata"] = {"prod_discovery": {"action": "block", "entities": {}}}
        elif e.msg_type == "stream":
            verdict = guard.policy.decide(e.findings + e.extra)
            content = None
            if verdict.action == "block":
                content = guard.blocked("stream", e.content, verdict.entities)
            elif verdict.action == "redact":
                text = redact(e.text, guard.policy.to_redact(verdict))
                content = {**e.content, "text": text}
            if verdict.entities:
                guard.audit(self.pd_app.audit, self._where(e), verdict, self._user())
        else:
            scan = e.scan
            content = scan.content if scan is not None else None
            if scan is not None:
                guard.audit(self.pd_app.audit, self._where(e), scan.verdict, self._user())
        if content is None:
            super().handle_outgoing_message(e.stream, e.msg_list)
            return
        parts = list(e.parts)
        parts[3] = self.session.pack(content)
        signature = self.session.sign(parts[:4])
        super().handle_outgoing_message(e.stream, [*e.idents, DELIM, signature, *parts])
