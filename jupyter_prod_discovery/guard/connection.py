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
import re
from collections import deque
from concurrent.futures import Future
from typing import Any

import zmq
from jupyter_client.session import DELIM
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from ..pii import Finding, redact
from ..pii.scanner import may_match
from .live import MARKED_TYPES, MARKER_KEY, UNSCANNED_TYPES, PIIGuard, Scan

__all__ = ["GuardedWebsocketConnection"]

V1 = "v1.kernel.websocket.jupyter.org"


_UNSET = object()
#: Channels whose messages the guard scans (everything a kernel sends to the client).
GUARDED_CHANNELS = frozenset(("iopub", "shell", "stdin", "control"))
#: Characters of a stream's current line kept to rescan a seam (carriage return and backspace
#: rewrite the line from its start as JupyterLab renders it).
LINE_CONTEXT = 4096
_MARKER = MARKER_KEY.encode()
# How a packed stream content ends when its text ends a line (ipykernel packs name, then text).
_LINE_END = b'\\n"}'
# Characters a pattern entity can hold (digits, letters, separators of numbers, of emails and
# of addresses): the end of a chunk made of them may continue in the next one.
_CONTINUABLE = re.compile(r"[\w.,%+\-@ ():/#\[\]]*\Z")


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
        "buffers",
        "clean",
        "content",
        "decoded",
        "drop",
        "extra",
        "findings",
        "forged",
        "held",
        "idents",
        "key",
        "modified",
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
        # modified: a stream whose text was split or joined (re-packed even without finding);
        # drop: emptied by such a split (not sent); forged: the kernel set the guard's marker in
        # the message metadata (removed); buffers: redacted binary buffers, or None.
        self.modified = False
        self.drop = False
        self.forged = False
        self.buffers: list[bytes] | None = None


def _decode(e: _Out) -> None:
    """Parse a message's content (and a stream's text) once, when first needed."""
    if not e.decoded:
        e.content = _loads(e.parts[3])
        if e.msg_type == "stream":
            e.text = str(e.content.get("text", ""))
        e.decoded = True


def _loads(raw: bytes) -> Any:
    """``json.loads`` of packed bytes, decoded here: given bytes, ``json`` detects their encoding
    in Python first, a microsecond per message on the hot path (packers write UTF-8)."""
    return json.loads(raw.decode("utf-8", "surrogatepass"))


def _parent_id(parts: list[Any]) -> str:
    try:
        return str(json.loads(parts[1]).get("msg_id", ""))
    except (ValueError, AttributeError, IndexError):
        return ""


def _stream_key(e: _Out) -> tuple[str, str]:
    """(parent msg_id, stream name): chunks of one stream, whose seams are rescanned."""
    if e.key is None:
        _decode(e)
        e.key = (_parent_id(e.parts), str(e.content.get("name", "")))
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


def _crossing(findings: list[Finding], cut: int) -> int:
    """The largest cut at or before ``cut`` that splits no finding."""
    moved = True
    while moved:
        moved = False
        for f in findings:
            if f.start < cut < f.end:
                cut = f.start
                moved = True
    return cut


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

    # --- outgoing: the guard ---
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
        if guard is not None and msg_type == "status" and b'"idle"' in parts[3]:
            parent = _parent_id(parts)
            self._pd_idle.append(parent)
            lines = self.__dict__.get("_pd_line_")
            if lines:
                # The cell is done: its open line is not continued by anything it prints, and
                # an empty line context keeps the connection on the direct path.
                for k in [k for k in lines if k[0] == parent]:
                    del lines[k]
        if (
            msg_type == "stream"
            and guard is not None
            and not self._pd_queue
            and len(parts) == 4
            and parts[3].endswith(_LINE_END)
            and not self.__dict__.get("_pd_carry_")
            and not self.__dict__.get("_pd_line_")
            and self._pass_line(guard, stream, msg_list, parts)
        ):
            return
        if self._pd_carry and msg_type != "stream" and channel == "iopub":
            # The held-back end of a stream goes out before anything else of its request.
            self._flush_carries(_parent_id(parts), None)
        if guard is None or channel not in GUARDED_CHANNELS or msg_type in UNSCANNED_TYPES:
            if not self._pd_queue:
                super().handle_outgoing_message(stream, msg_list)
                return
            held = self._pd_held
            if held is not None and channel in _ORDERED and _same_parent(held, parts):
                # The cell's output moved on: the held chunk has no continuation. A message of
                # another request (the status of a control kernel_info_request answered while
                # the cell runs), or a reply (shell and iopub are not ordered with each other:
                # an execute_reply often overtakes the cell's last output), says nothing about
                # the stream; it waits in order behind the chunk instead of cutting the seam of
                # a split value.
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

    def _pass_line(
        self, guard: PIIGuard, stream: Any, msg_list: list[Any], parts: list[Any]
    ) -> bool:
        """The hot path: a stream chunk that ends a line, with nothing held or queued, and
        nothing found in it, is sent at once (no queue, no hold, no timer).

        Its seam with the next chunk is closed (``PIIGuard.seam_closed``: no entity spans a
        line break) and the one before it too (the previous chunk ended a line, or the stream's
        line context would not be empty). Returns False to take the ordered path instead.
        """
        if guard.scanner.ner or _MARKER in parts[2]:
            return False
        kid = self.pd_kernel_id
        if guard.matcher(kid).multiline:
            return False
        if not guard.raw_clean(parts[3], kid):
            if len(parts[3]) > guard.inline_limit:
                return False  # scanned on the worker thread, in order
            text = _loads(parts[3]).get("text")
            if not isinstance(text, str) or not text.endswith("\n") or guard.find(text, kid):
                return False
        super().handle_outgoing_message(stream, msg_list)
        return True

    # --- state of the stream seams --------------------------------------------------------------
    @property
    def _pd_carry(self) -> dict[tuple[str, str], _Out]:
        """Held-back ends of streams (their request's output may continue them), by key."""
        d: dict[tuple[str, str], _Out] | None = self.__dict__.get("_pd_carry_")
        if d is None:
            d = self.__dict__["_pd_carry_"] = {}
        return d

    @property
    def _pd_line(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """The current line already sent of each stream (text, clean), for seams after it."""
        d: dict[tuple[str, str], tuple[str, bool]] | None = self.__dict__.get("_pd_line_")
        if d is None:
            d = self.__dict__["_pd_line_"] = {}
        return d

    @property
    def _pd_idle(self) -> deque[str]:
        """Requests whose kernel went idle (output after that comes from threads)."""
        d: deque[str] | None = self.__dict__.get("_pd_idle_")
        if d is None:
            d = self.__dict__["_pd_idle_"] = deque(maxlen=64)
        return d

    def _scan(self, guard: PIIGuard, e: _Out) -> None:
        parts = e.parts
        kid = self.pd_kernel_id
        e.forged = _MARKER in parts[2]
        # Raw bytes with nothing that could be found are not even decoded (see raw_clean).
        e.clean = guard.raw_clean(parts[3], kid) and _MARKER not in parts[3]
        if len(parts) > 4:
            e.buffers = self._scan_buffers(guard, parts[4:], kid, e)
        if e.msg_type == "stream":
            self._scan_stream(guard, e, kid)
            return
        held = self._pd_held
        channel = getattr(e.stream, "channel", None)
        if held is not None and channel in _ORDERED and _same_parent(held, parts):
            # An input_request: show the prompt, but keep back an end that could continue.
            self._release_held(split=channel == "stdin")
        if e.clean:
            return
        _decode(e)
        if len(parts[3]) > guard.inline_limit:
            self._offload(guard, e, guard.content, e.msg_type, e.content, kid)
        else:
            e.scan = guard.content(e.msg_type, e.content, kid)

    def _scan_stream(self, guard: PIIGuard, e: _Out, kid: str) -> None:
        prev = self._pd_held
        carry, lines = self._pd_carry, self._pd_line
        closed = prev is None or (prev.clean and e.clean) or _ends_line(prev)
        if carry or lines or not closed:
            key = _stream_key(e)
            for k in [k for k in carry if k[0] == key[0] and k != key]:
                self._enqueue_carry(k)
            tail = carry.pop(key, None)
            if tail is not None:  # the end held back earlier continues here
                e.text = tail.text + e.text
                e.content = {**e.content, "text": e.text}
                e.modified = True
                e.clean = e.clean and tail.clean
            same = prev is not None and _stream_key(prev) == key
            if prev is not None and not same:
                # Another stream: the held chunk goes out; of another request, its end is kept
                # back in case its own output continues it later.
                self._release_held(split=prev.key is not None and prev.key[0] != key[0])
                prev = None
            self._seam(guard, prev, e, kid)
        self._release_held()
        if not (_ends_line(e) and self._line_closes(guard, kid)):
            # Its end may continue in the next chunk: held until then (or the timer).
            e.held = True
            self._pd_held = e
            self._arm_hold_timer(guard.stream_hold_timeout)
        if e.clean:
            return
        _decode(e)
        # Text that cannot hold a pattern entity is cleared inline in microseconds.
        if len(e.text) > guard.inline_limit and (guard.policy.ner or may_match(e.text)):
            self._offload(guard, e, guard.find, e.text, kid)
        else:
            e.findings = guard.find(e.text, kid)

    def _line_closes(self, guard: PIIGuard, kid: str) -> bool:
        """A line break ends every finding (``PIIGuard.seam_closed``), unless NER is on or a
        live secret spans lines."""
        return not guard.scanner.ner and not guard.matcher(kid).multiline

    def _seam(self, guard: PIIGuard, prev: _Out | None, e: _Out, kid: str) -> None:
        """Rescan the seam between a stream's current line (sent, or held in ``prev``) and
        chunk ``e``, whatever the time between them; a finding across it is redacted in
        ``e`` and in ``prev`` (what was sent already cannot be, but is never a whole value:
        the end of a chunk is held back until its continuation comes, see ``_split``)."""
        key = _stream_key(e)
        line, line_clean = self._pd_line.get(key, ("", True))
        if prev is not None:
            _decode(prev)
        ptext = prev.text if prev is not None else ""
        if line_clean and e.clean and (prev is None or prev.clean):
            return  # no digit, '@', escape or secret byte on either side: nothing to find
        left = line + ptext
        if not left or guard.seam_closed(left, e.text, kid):
            return
        start = max(left.rfind("\n") + 1, len(left) - LINE_CONTEXT)
        tail = left[start:]
        nl = e.text.find("\n")
        head = e.text[: nl + 1 if 0 <= nl < LINE_CONTEXT else LINE_CONTEXT]
        cut, pbase = len(tail), len(line) - start
        for f in guard.find(tail + head, kid):
            if f.start < cut < f.end:
                e.extra.append(Finding(f.entity_type, 0, f.end - cut, f.score))
                if prev is not None:
                    a = max(f.start - pbase, 0)
                    prev.extra.append(Finding(f.entity_type, a, len(ptext), f.score))

    def _scan_buffers(
        self, guard: PIIGuard, buffers: list[Any], kid: str, e: _Out
    ) -> list[bytes] | None:
        """Binary buffers (comm messages) scanned as Latin-1 text; a finding's bytes are
        overwritten with '*' in place, so that the buffer keeps its length and layout."""
        changed = False
        out: list[bytes] = []
        for buf in buffers:
            b = bytes(buf)
            if guard.raw_clean(b, kid) if b.isascii() else False:
                out.append(b)
                continue
            text = b.decode("latin-1")
            verdict = guard.policy.decide(guard.scanner.scan(text) + guard.matcher(kid).find(text))
            spans = guard.policy.to_redact(verdict) if verdict.action != "warn" else []
            if verdict.entities:
                guard.audit(
                    self.pd_app.audit, {**self._where(e), "output": "buffer"}, verdict, self._user()
                )
            if spans:
                arr = bytearray(b)
                for f in spans:
                    arr[f.start : f.end] = b"*" * (f.end - f.start)
                b = bytes(arr)
                changed = True
            out.append(b)
        return out if changed else None

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

    # --- holding back and releasing stream chunks ------------------------------------------------
    def _arm_hold_timer(self, timeout: float) -> None:
        """One timer per connection (not per message): release a chunk held too long."""
        loop = asyncio.get_running_loop()
        self._pd_held_since = loop.time()
        if self._pd_timer is None:
            self._pd_timer = loop.call_later(timeout, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        self._pd_timer = None
        held = self._pd_held
        if held is None:
            return
        loop = asyncio.get_running_loop()
        left = self._pd_held_since + timeout - loop.time()
        if left > 0 or held.pending is not None:
            self._pd_timer = loop.call_later(max(left, timeout), self._expire, timeout)
            return
        self._release_held(split=True)
        self._drain()

    def _release_held(self, split: bool = False) -> None:
        """Let the held chunk go. With ``split``, a chunk that does not end a line keeps its
        end back (``_split``): the stream may continue it, and the two halves of a value
        must never leave apart."""
        held = self._pd_held
        if held is None:
            return
        self._pd_held = None
        held.held = False
        if (
            split
            and held.parts
            and not held.withheld
            and held.pending is None  # findings still to come: positions must stay valid
            and not _ends_line(held)
        ):
            try:
                self._split(held)
            except Exception:
                self.log.exception("PII guard could not split a stream chunk; withheld")
                held.withheld = True

    def _split(self, h: _Out) -> None:
        guard = self.pd_guard
        if guard is None:
            return
        _decode(h)
        key = _stream_key(h)
        text = h.text
        kid = self.pd_kernel_id
        if not text or guard.seam_closed(text, "", kid):
            return
        window = max(guard.stream_window, guard.matcher(kid).max_length)
        cut = max(text.rfind("\n") + 1, len(text) - window)
        if text.isascii() and "\r" not in text and "\b" not in text:
            # Only a trailing run of characters that findings are made of can be the start of
            # one (a prompt ending in '? ' is shown at once), or the start of a live secret.
            run = _CONTINUABLE.search(text, cut)
            cut = max(cut, run.start() if run is not None else len(text))
            for secret in guard.matcher(kid).values:
                for k in range(min(len(secret) - 1, len(text)), 1, -1):
                    if text.endswith(secret[:k]):
                        cut = min(cut, len(text) - k)
                        break
        cut = _crossing(h.findings + h.extra, cut)
        c = _Out(h.stream, h.msg_list)
        c.idents, c.parts, c.msg_type, c.key = h.idents, h.parts, h.msg_type, key
        c.content, c.decoded, c.modified, c.clean = h.content, True, True, h.clean
        c.text = text[cut:]
        h.text = text[:cut]
        h.findings = [f for f in h.findings if f.end <= cut]
        h.extra = [f for f in h.extra if f.end <= cut]
        h.modified = True
        h.drop = cut == 0
        old = self._pd_carry.pop(key, None)
        if old is not None:  # cannot happen (a carry is joined to the next chunk); kept safe
            c.text = old.text + c.text
        self._pd_carry[key] = c
        if key[0] in self._pd_idle:
            # Output after the cell finished (a thread): its continuation may never come.
            loop = asyncio.get_running_loop()
            loop.call_later(guard.secret_hold_timeout, self._stale_carry, key, c)

    def _stale_carry(self, key: tuple[str, str], c: _Out) -> None:
        if self._pd_carry.get(key) is c:
            self._enqueue_carry(key)
            self._drain()

    def _flush_carries(self, parent: str, keep: tuple[str, str] | None) -> None:
        for k in [k for k in self._pd_carry if k[0] == parent and k != keep]:
            self._enqueue_carry(k)

    def _enqueue_carry(self, key: tuple[str, str]) -> None:
        """Send a held-back stream end on its own (its request moved on)."""
        c = self._pd_carry.pop(key)
        guard = self.pd_guard
        if guard is not None and not c.clean:
            c.findings = guard.find(c.text, self.pd_kernel_id)
        if self._pd_queue is None:
            self._pd_queue = deque()
        self._pd_queue.append(c)

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

    def _note_line(self, e: _Out) -> None:
        """Remember the end of a sent stream's current line, for the seam with what follows."""
        lines = self._pd_line
        if not lines and _ends_line(e):
            return
        _decode(e)
        key = _stream_key(e)
        text = e.text
        nl = text.rfind("\n")
        if nl >= 0:
            line, clean = text[nl + 1 :], e.clean
        else:
            old, old_clean = lines.get(key, ("", True))
            line, clean = old + text, old_clean and e.clean
        lines.pop(key, None)
        if line and key[0] not in self._pd_idle:  # a finished cell's line is not continued
            lines[key] = (line[-LINE_CONTEXT:], clean)
            while len(lines) > 64:
                lines.pop(next(iter(lines)))

    def _emit(self, e: _Out) -> None:
        guard = self.pd_guard
        if e.drop:
            return
        if not e.parts or guard is None:
            super().handle_outgoing_message(e.stream, e.msg_list)
            return
        content: dict[str, Any] | None
        marker: dict[str, Any] | None = None
        if e.withheld:
            if not e.decoded:
                try:
                    _decode(e)
                except Exception:  # not JSON at all: the notice alone
                    e.content = {"name": "stdout"} if e.msg_type == "stream" else {}
            content = guard.blocked(e.msg_type, e.content, None)
            marker = {"action": "block", "entities": {}}
            if e.msg_type in MARKED_TYPES:
                content["metadata"] = {MARKER_KEY: marker}
        elif e.msg_type == "stream":
            verdict = guard.policy.decide(e.findings + e.extra)
            content = None
            if verdict.action == "block":
                content = guard.blocked("stream", e.content, verdict.entities)
            elif verdict.action == "redact":
                text = redact(e.text, guard.policy.to_redact(verdict))
                content = {**e.content, "text": text}
            elif e.modified:
                content = {**e.content, "text": e.text}
            if verdict.entities:
                marker = {"action": verdict.action, "entities": dict(verdict.entities)}
                guard.audit(self.pd_app.audit, self._where(e), verdict, self._user())
            self._note_line(e)
        else:
            scan = e.scan
            content = scan.content if scan is not None else None
            if scan is not None:
                guard.audit(self.pd_app.audit, self._where(e), scan.verdict, self._user())
                if scan.verdict.entities:
                    marker = {"action": scan.verdict.action, "entities": scan.verdict.entities}
            if e.msg_type in _OUTPUT_TYPES and self._pd_line:
                parent = _parent_id(e.parts)
                for k in [k for k in self._pd_line if k[0] == parent]:
                    del self._pd_line[k]
        if content is None and marker is None and not e.forged and e.buffers is None:
            super().handle_outgoing_message(e.stream, e.msg_list)
            return
        parts = list(e.parts)
        if content is not None:
            parts[3] = self.session.pack(content)
        if marker is not None or e.forged:
            meta = json.loads(parts[2]) if parts[2] else {}
            meta.pop(MARKER_KEY, None)
            if marker is not None:
                meta[MARKER_KEY] = marker
            parts[2] = self.session.pack(meta)
        if e.buffers is not None:
            parts[4:] = e.buffers
        signature = self.session.sign(parts[:4])
        super().handle_outgoing_message(e.stream, [*e.idents, DELIM, signature, *parts])


#: Channels whose messages follow a stream's chunks in the order the kernel sent them (iopub
#: itself; stdin's input_request comes after the kernel flushed its output). Shell and control
#: replies are not ordered with iopub.
_ORDERED = frozenset(("iopub", "stdin"))
#: Outputs after which a stream's next chunk starts a new output in the frontend.
_OUTPUT_TYPES = frozenset(("display_data", "execute_result", "error", "clear_output"))


def _ends_line(e: _Out) -> bool:
    """True when a stream chunk ends with a line break (read from the raw bytes if not decoded:
    ipykernel packs ``{"name": ..., "text": ...}``, so the text ends the JSON)."""
    if e.decoded:
        return e.text.endswith("\n")
    return bool(e.parts) and e.parts[3].endswith(_LINE_END)
