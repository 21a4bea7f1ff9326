"""The audit channel, service side: one kept-open connection per server, lines in, acks out.

The upgrade request is authenticated like every other request (peer uid on the unix socket, the
server's hub token over TCP) and names its stream (``X-Prod-Discovery-Server``); after the 101
the connection carries that server's sealed lines only. What arrives is committed in arrival
order, one ledger append at a time per connection (whatever came in meanwhile goes into the
next append): the same checks, the same group commit and the same acknowledgment as ``POST
/api/audit/events``, at a fraction of an HTTP request's cost per record on both ends
(``channel_client.py`` says why that matters).

A hub token's identity is checked again every ``HubServerToken.cache_seconds`` on a long-lived
channel, as a stream of requests would be; the unix socket's peer cannot change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from tornado import iostream, web

from .channel_client import CHANNEL_PROTOCOL
from .client import SERVER_HEADER
from .identity import ClientAuthenticator
from .ledger import AuditLedger, LedgerError, LedgerUnavailable, Principal

__all__ = ["ChannelHandler", "ChannelSession"]

# Most lines committed in one append of one channel (a batch the writer sends is at most
# AuditTrail.batch_size, 1000 by default; a longer backlog is split).
MAX_LINES = 5000
# A line longer than this is not a record: the channel is refused (400) before it grows further.
MAX_LINE = 4 * 1024 * 1024


class ChannelSession:
    """Commits one server's lines in order and acknowledges them, until either side closes."""

    def __init__(
        self,
        stream: iostream.IOStream,
        ledger: AuditLedger,
        principal: Principal,
        server_id: str,
        recheck: Any = None,
    ) -> None:
        self.stream = stream
        self.ledger = ledger
        self.principal = principal
        self.server_id = server_id
        # async () -> Principal: the caller's identity again (None: it cannot change)
        self.recheck = recheck
        self.recheck_every: float | None = None
        self._checked = time.monotonic()
        self._lines: list[str] = []
        self._more = asyncio.Event()
        self._closed = False

    async def run(self) -> None:
        reader = asyncio.ensure_future(self._read())
        try:
            await self._commit_loop()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.stream.close()

    async def _read(self) -> None:
        partial = b""
        try:
            while True:
                data = await self.stream.read_bytes(1 << 16, partial=True)
                *lines, partial = (partial + data).split(b"\n")
                if len(partial) > MAX_LINE:
                    await self._refuse(400, "a line is longer than any record")
                    return
                if lines:
                    self._lines.extend(ln.decode("utf-8", "replace") for ln in lines if ln)
                    self._more.set()
        except iostream.StreamClosedError:
            pass
        finally:
            self._closed = True
            self._more.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            while self._lines:
                lines, self._lines = self._lines[:MAX_LINES], self._lines[MAX_LINES:]
                if not await self._identity_holds():
                    return
                try:
                    result = await self.ledger.append(self.principal, self.server_id, lines)
                except LedgerError as exc:
                    await self._refuse(400, str(exc))
                    return
                except LedgerUnavailable as exc:
                    await self._refuse(503, str(exc))
                    return
                if self.stream.closed():
                    return  # committed; the server ships it again and gets a duplicate ack
                ack = b'{"last_server_seq": %d}\n' % int(result["last_server_seq"])
                try:
                    await self.stream.write(ack)
                except iostream.StreamClosedError:
                    return
            if self._closed:
                return

    async def _identity_holds(self) -> bool:
        if self.recheck is None or self.recheck_every is None:
            return True
        if time.monotonic() - self._checked < self.recheck_every:
            return True
        try:
            principal = await self.recheck()
        except web.HTTPError as exc:
            await self._refuse(exc.status_code, exc.log_message or "not authenticated")
            return False
        if principal.username != self.principal.username:
            await self._refuse(403, "the channel's identity changed")
            return False
        self._checked = time.monotonic()
        return True

    async def _refuse(self, status: int, message: str) -> None:
        with contextlib.suppress(iostream.StreamClosedError):
            await self.stream.write(json.dumps({"status": status, "message": message}).encode())
            await self.stream.write(b"\n")
        self.stream.close()


class ChannelHandler(web.RequestHandler):
    """``GET /api/audit/channel`` with ``Upgrade: prod-discovery-audit/1``: see the module."""

    def check_xsrf_cookie(self) -> None:  # API clients only, no cookies are ever set
        return

    async def prepare(self) -> None:
        auth: ClientAuthenticator = self.settings["authenticator"]
        self.principal = await auth.authenticate(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else ""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message or self._reason}))

    async def get(self) -> None:
        if self.request.headers.get("Upgrade", "").lower() != CHANNEL_PROTOCOL:
            raise web.HTTPError(400, f"ask for Upgrade: {CHANNEL_PROTOCOL}")
        sid = self.request.headers.get(SERVER_HEADER, "")
        if not sid or len(sid) > 200 or "/" in sid:
            raise web.HTTPError(400, f"send the server's id in {SERVER_HEADER}")
        ledger: AuditLedger = self.settings["ledger"]
        if not ledger.running:
            raise web.HTTPError(503, "the ledger is not running")
        auth: ClientAuthenticator = self.settings["authenticator"]
        self.set_status(101)
        self.clear_header("Content-Type")
        self.set_header("Upgrade", CHANNEL_PROTOCOL)
        self.set_header("Connection", "Upgrade")
        self.finish()
        stream = self.detach()
        session = ChannelSession(
            stream, ledger, self.principal, sid, recheck=lambda: auth.authenticate(self)
        )
        session.recheck_every = auth.recheck_after
        await session.run()
