"""The audit channel, client side: sealed lines framed onto one kept-open connection, acks back.

Why not one HTTP request per record (``ServiceClient.ship`` on the trail's writer thread): an
audited request waits for its record, and that path cost the server ~300 us of CPU per record
(the hand-off to the writer thread and back, ``http.client``'s request and header parsing), a
fifth of a small notebook's GET. Here the request's own thread (the event loop) writes the sealed
line to a socket that stays open, and the service's acknowledgment comes back on the same loop:
an append to a socket buffer and one read per acknowledgment, no thread, no HTTP per record.

Protocol (``GET <prefix>/api/audit/channel`` with ``Upgrade: prod-discovery-audit/1``; the
service authenticates the upgrade like any request, then answers 101): the client sends each
record as one line (the sealed JSON line, which holds no raw newline); the service commits what
it has read, in order, and answers ``{"last_server_seq": N}\\n`` (everything up to N of this
server's stream is stored, replays included) or ``{"status": S, "message": M}\\n`` and closes.

Nothing here decides what is durable: lines stay :meth:`outstanding` until acknowledged. When
the connection breaks or the service stops answering, the trail's writer ships the outstanding
lines over HTTP (the service acknowledges a line it already stored without a second copy) or
spools them, in order, and :meth:`settle` resolves their waiters. The channel reconnects only
when nothing is outstanding, so a line can never overtake an older one that is still unsettled.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .client import ServiceClient

__all__ = ["CHANNEL_PATH", "CHANNEL_PROTOCOL", "AuditChannel"]

CHANNEL_PATH = "/api/audit/channel"
CHANNEL_PROTOCOL = "prod-discovery-audit/1"
_IDLE, _CONNECTING, _OPEN, _BROKEN = range(4)
_MAX_HANDSHAKE = 64 * 1024
_ACK = b'{"last_server_seq": '  # how every acknowledgment starts (channel_server.py)


class _Refused(ConnectionError):
    """The service answered the upgrade with something else than 101."""


class AuditChannel(asyncio.Protocol):
    """One server's open connection to the service's audit channel (event loop only, except
    :meth:`outstanding` and :meth:`settle`, which the trail's writer thread calls)."""

    def __init__(
        self,
        client: ServiceClient,
        *,
        timeout: float,
        retry_interval: float,
        on_break: Callable[[], None] = lambda: None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.on_break = on_break
        self.log = log or logging.getLogger(__name__)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: str | None = None
        self._state = _IDLE
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._next_attempt = 0.0
        # (server seq, line, future of the waiter or None, time sent, the waiter's deadline),
        # in the order sent.
        self._unacked: collections.deque[tuple[int, str, asyncio.Future[bool] | None, float, float]]
        self._unacked = collections.deque()
        self._lock = threading.Lock()  # _unacked: the loop appends and acks, the writer settles
        self._watchdog: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._connecting: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    # -- the event loop's side ----------------------------------------------------------------

    def ready(self) -> bool:
        """Whether a record may be sent now (the caller runs on the channel's loop). Starts a
        connection in the background when there is none and nothing is left to settle."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        state = self._state
        if state == _OPEN:
            return loop is self.loop
        if state != _CONNECTING and not self._unacked:
            if self.loop is None:
                self.loop = loop
            if loop is self.loop and time.monotonic() >= self._next_attempt:
                self._state = _CONNECTING
                self._connecting = loop.create_task(self._connect())
        return False

    def send(
        self, seq: int, line: str, wait: bool, timeout: float = math.inf
    ) -> asyncio.Future[bool] | None:
        """Frame ``line`` (server seq ``seq``) onto the connection; with ``wait`` a future that
        resolves True once it is stored (or spooled: see :meth:`settle`), False when neither
        happened within ``timeout`` seconds.

        Why the deadline is kept here and not as a timer per record: one watchdog per
        connection already wakes for the oldest unacknowledged line; a timer per awaited
        record (created, pushed on the loop's heap, cancelled, left there until it is due)
        was a measurable share of the CPU an audited request pays for its acknowledgment.
        """
        assert self._transport is not None and self.loop is not None
        fut = self.loop.create_future() if wait else None
        now = time.monotonic()
        with self._lock:
            first = not self._unacked
            self._unacked.append((seq, line, fut, now, now + timeout if wait else math.inf))
        self._transport.write((line + "\n").encode())
        if first or wait:
            # Armed for the oldest line; earlier only for a waiter whose deadline comes first
            # (a shorter ack timeout than the connection's), which is rare: one comparison.
            at = self.loop.time() + (min(self.timeout, timeout) if wait else self.timeout)
            watchdog = self._watchdog
            if watchdog is None or watchdog.when() > at:
                if watchdog is not None:
                    watchdog.cancel()
                self._watchdog = self.loop.call_at(at, self._check_stale)
        return fut

    def _check_stale(self) -> None:
        """Waiters past their deadline are answered False (their lines stay outstanding, for
        the writer or a late acknowledgment); a connection that stopped acknowledging is
        broken: its lines go the HTTP way. Rearmed while anything is outstanding."""
        self._watchdog = None
        now = time.monotonic()
        expired: list[asyncio.Future[bool]] = []
        with self._lock:
            if not self._unacked:
                return
            oldest = self._unacked[0][3]
            due = math.inf
            for _seq, _line, fut, _sent, deadline in self._unacked:
                if fut is None or fut.done():
                    continue
                if deadline <= now:
                    expired.append(fut)
                else:
                    due = min(due, deadline)
        for fut in expired:
            fut.set_result(False)
        if self._state == _OPEN:
            if oldest + self.timeout <= now:
                self._break(f"the service did not acknowledge within {self.timeout:g} s")
            else:
                due = min(due, oldest + self.timeout)
        if due < math.inf and self.loop is not None and not self.loop.is_closed():
            self._watchdog = self.loop.call_at(self.loop.time() + due - now, self._check_stale)

    async def _connect(self) -> None:
        assert self.loop is not None
        client = self.client
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: see client.arequest
                if client.socket_path:
                    await self.loop.create_unix_connection(lambda: self, client.socket_path)
                else:
                    parts = urlsplit(client.base)
                    secure = parts.scheme == "https"
                    await self.loop.create_connection(
                        lambda: self,
                        parts.hostname or "localhost",
                        parts.port or (443 if secure else 80),
                        ssl=ssl.create_default_context() if secure else None,
                    )
                self._handshake = self.loop.create_future()
                assert self._transport is not None
                self._transport.write(self._request())
                await self._handshake
        except Exception as exc:  # unreachable, refused, too slow: the HTTP way goes on
            self._break(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            if isinstance(exc, _Refused):  # e.g. a service without the channel: ask rarely
                self._next_attempt = time.monotonic() + max(60.0, self.retry_interval)
                self.log.info("The Prod Discovery service refused the audit channel: %s", exc)
            return
        finally:
            self._handshake = None
        self._state = _OPEN
        self.error = None
        self.log.info("Audit channel to the Prod Discovery service %s is open", client.url)

    def _request(self) -> bytes:
        client = self.client
        parts = urlsplit(client.base)
        headers = {
            "Host": parts.netloc,
            "Connection": "Upgrade",
            "Upgrade": CHANNEL_PROTOCOL,
            **client.auth_headers(),
        }
        head = f"GET {client.path(CHANNEL_PATH)} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (head + "\r\n").encode("latin-1")

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        if self._handshake is not None and not self._handshake.done():
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                if len(buffer) > _MAX_HANDSHAKE:
                    self._handshake.set_exception(ValueError("handshake answer too long"))
                self._buffer = buffer
                return
            status = head.split(b"\r\n", 1)[0].split(b" ", 2)
            if len(status) < 2 or status[1] != b"101":
                reason = status[2].decode("latin-1", "replace") if len(status) > 2 else "?"
                code = status[1].decode("latin-1", "replace") if len(status) > 1 else "?"
                self._handshake.set_exception(_Refused(f"{code} {reason}"))
                self._buffer = b""
                return
            self._handshake.set_result(None)
            buffer = rest
        *lines, self._buffer = buffer.split(b"\n")
        for raw in lines:
            if raw.startswith(_ACK) and raw[-1:] == b"}" and raw[len(_ACK) : -1].isdigit():
                self._acknowledge(int(raw[len(_ACK) : -1]))  # the usual answer, not decoded
                continue
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            message = answer.get("message") if isinstance(answer, dict) else None
            self._break(f"the service refused: {message or raw[:200]!r}")
            return

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionResetError("closed during the handshake"))
        if self._state == _OPEN:  # while connecting, _connect breaks it
            self._break("the connection was closed")

    def _acknowledge(self, upto: int) -> None:
        done: list[asyncio.Future[bool]] = []
        with self._lock:
            unacked = self._unacked
            while unacked and unacked[0][0] <= upto:
                fut = unacked.popleft()[2]
                if fut is not None:
                    done.append(fut)
        for fut in done:
            if not fut.done():
                fut.set_result(True)

    def _break(self, reason: str) -> None:
        was = self._state
        self._state = _BROKEN
        self.error = reason
        self._next_attempt = time.monotonic() + self.retry_interval
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        if was == _OPEN:
            self.log.warning("Audit channel to the Prod Discovery service broke: %s", reason)
        self.on_break()

    # -- the writer thread's side -------------------------------------------------------------

    def outstanding(self) -> list[tuple[int, str]]:
        """Lines sent and not acknowledged, in order (seq, line)."""
        with self._lock:
            return [(seq, line) for seq, line, _f, _t, _d in self._unacked]

    def healthy(self) -> bool:
        """Open and acknowledging (the writer leaves its outstanding lines to it)."""
        return self._state == _OPEN

    def settle(self, upto: int, stored: bool) -> None:
        """The writer shipped or spooled everything up to ``upto``: resolve those waiters with
        ``stored`` (False: the records could not be kept anywhere). Any thread."""
        done: list[asyncio.Future[bool]] = []
        with self._lock:
            unacked = self._unacked
            while unacked and unacked[0][0] <= upto:
                fut = unacked.popleft()[2]
                if fut is not None:
                    done.append(fut)
        if done and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_resolve_all, done, stored)

    def close(self) -> None:
        """Stop using the connection (the trail settles what is outstanding)."""
        self._state = _BROKEN
        self._next_attempt = float("inf")
        transport, self._transport = self._transport, None
        if transport is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(transport.close)


def _resolve_all(futures: list[asyncio.Future[bool]], stored: bool) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(stored)
