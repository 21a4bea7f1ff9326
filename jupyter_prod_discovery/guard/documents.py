"""jupyter-server-documents' kernel websocket through the guard (its class is composed in
``_compat.guarded_documents_connection``, installed by ``paths.compose_websocket``).

Its connection forwards raw kernel frames to the browser; here each frame is decoded, passed
through the client's :class:`~.kernel_client.MessageGuard` (the same scan and audit as every other
kernel client in the server) and re-packed only when the guard changed it. On iopub, a stream
frame that ends mid-line is held until the next frame arrives or ``PIIGuard.secret_hold_timeout``
passes (10 s by default), so a value split across two flushes, even seconds apart, is redacted
in both halves before either leaves; a frame ending a line passes at once (no finding spans a
line break).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.websocket import WebSocketClosedError

from .attribution import Attribution
from .kernel_client import MessageGuard

__all__ = ["audit_incoming", "forward"]

_KEYS = ("header", "parent_header", "metadata", "content")


class _Frame:
    __slots__ = ("content", "msg", "parts")

    def __init__(self, parts: list[bytes], msg: dict[str, Any]) -> None:
        self.parts = parts
        self.msg = msg
        self.content = msg["content"]


def _guard_of(client: Any) -> MessageGuard | None:
    return getattr(client, "pd_guard", None)


async def forward(conn: Any, client: Any, channel_name: str) -> None:
    """Read one channel of ``client`` and write each frame, guarded, to ``conn``'s websocket."""
    import asyncio

    channel = getattr(client, f"{channel_name}_channel")
    socket = channel.socket
    session = client.session
    mg = _guard_of(client)
    held: _Frame | None = None
    held_since = 0.0
    loop = asyncio.get_running_loop()

    def write(frame: _Frame) -> bool:
        parts = frame.parts
        if frame.msg["content"] is not frame.content:
            parts = [*parts[:3], session.pack(frame.msg["content"]), *parts[4:]]
        try:
            conn.websocket_handler.write_message(
                serialize_msg_to_ws_v1(parts, channel_name), binary=True
            )
        except WebSocketClosedError:
            return False
        except Exception as err:
            conn.log.error("Error forwarding kernel message: %s", err)
        return True

    try:
        while True:
            if held is not None:
                # An open line waits for its continuation up to secret_hold_timeout (10 s by
                # default), whatever the pause between the two flushes within that.
                guard = mg.guard if mg is not None else None
                wait = guard.secret_hold_timeout if guard is not None else 0.0
                wait -= loop.time() - held_since
                if not await socket.poll(max(0, int(wait * 1000))):
                    frame, held = held, None
                    if not write(frame):
                        return
                    continue
            msg_list = await socket.recv_multipart()
            _, fed = session.feed_identities(msg_list)
            parts = list(fed[1:])  # without the signature: the v1 protocol carries none
            if mg is None:
                if not write(_Frame(parts, {"content": None})):
                    return
                continue
            try:
                msg = {k: json.loads(parts[i]) for i, k in enumerate(_KEYS)}
            except (ValueError, IndexError):
                conn.log.error("PII guard: undecodable kernel message on %s withheld", channel_name)
                continue
            frame = _Frame(parts, msg)
            mg.received(channel_name, msg)  # may also fix the held frame's seam in place
            if held is not None:
                prev, held = held, None
                if not write(prev):
                    return
            if channel_name == "iopub" and msg["header"].get("msg_type") == "stream":
                # A chunk ending a line is not held: no finding spans a line break (the guard's
                # seam rule), so the next chunk cannot complete a value begun in this one.
                text = str(msg["content"].get("text", ""))
                if not text.endswith("\n") or (
                    mg.guard is not None and mg.guard.matcher(mg.kernel_id).multiline
                ):
                    held, held_since = frame, loop.time()
                    continue
            if not write(frame):
                return
    except asyncio.CancelledError:
        if held is not None:
            write(held)


def audit_incoming(conn: Any, client: Any, ws_msg: Any) -> None:
    """Audit an execute_request from the browser, with the websocket's user."""
    mg = _guard_of(client)
    if mg is None or not isinstance(ws_msg, bytes) or b"execute_request" not in ws_msg[:4096]:
        return
    try:
        _, parts = deserialize_msg_from_ws_v1(ws_msg)
        msg = {k: json.loads(parts[i]) for i, k in enumerate(_KEYS)}
    except (ValueError, IndexError):
        return
    user = getattr(conn.websocket_handler, "current_user", None)
    mg.sent(msg, Attribution("websocket", user))
