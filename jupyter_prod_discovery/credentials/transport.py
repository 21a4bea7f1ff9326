"""A lean keep-alive HTTP/1.1 transport to Vault on the server's event loop.

Why not hvac on this path: a call through hvac and requests costs about 1 ms of server CPU
(session and environment merging, hooks, adapters, urllib3's pool, response wrappers) and needs a
worker thread, whose hand-offs cost as much again; a kernel start makes one call per credential
profile while the whole credential work must stay within about a tenth of a plain kernel start.
This transport sends the same requests from the event loop over pooled asyncio connections (one
buffer, no thread, about a tenth of that cost), follows Vault's 307 redirects (standby nodes send
clients to the active one) and raises exactly what hvac raises for an error status (through
``hvac.utils.raise_for_error``), so ``translate_error`` and every caller behave as with hvac.
Connection failures, malformed answers and timeouts become ``VaultUnreachable`` naming the cause.

When a proxy applies to the Vault address (``HTTPS_PROXY`` and friends, resolved once by
``VaultClient``) each request goes to hvac's adapter in a thread instead, which speaks proxies;
the results are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import hvac
import hvac.utils

from .vault import VaultError, VaultUnreachable

__all__ = ["VaultTransport"]

_MAX_REDIRECTS = 3
_POOL_SIZE = 8
_MAX_HEAD = 64 * 1024  # status line and headers
_MAX_BODY = 32 * 1024 * 1024


class _Malformed(Exception):
    """The answer is not HTTP/1.x as Vault sends it."""


class _Closed(Exception):
    """The connection ended before a complete answer (``empty``: before its first byte)."""

    def __init__(self, empty: bool) -> None:
        super().__init__("connection closed")
        self.empty = empty


class _Connection(asyncio.Protocol):
    """One keep-alive connection: bytes in one buffer, a future to wait for more."""

    def __init__(self, base: str, loop: asyncio.AbstractEventLoop) -> None:
        self.base = base
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- use --------------------------------------------------------------------------------

    @property
    def idle_ok(self) -> bool:
        """Still usable after sitting in the pool: open, and Vault sent nothing meanwhile."""
        transport = self.transport
        return (
            not self.closed
            and not self.buffer
            and transport is not None
            and not transport.is_closing()
            and self.loop is asyncio.get_running_loop()
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                self.transport.close()

    async def _more(self) -> None:
        if self.closed:
            raise _Closed(empty=False)
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _until(self, marker: bytes, limit: int) -> int:
        while (i := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise _Malformed("header block too large")
            if self.closed:
                raise _Closed(empty=not self.buffer)
            await self._more()
        return i

    async def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.closed:
                raise _Closed(empty=False)
            await self._more()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def exchange(self, request: bytes, method: str) -> tuple[int, dict[str, str], bytes]:
        """Send one request, read its answer; keeps ``closed`` true when it cannot be reused."""
        assert self.transport is not None
        self.transport.write(request)
        while True:
            end = await self._until(b"\r\n\r\n", _MAX_HEAD)
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            status_line, *lines = head.split("\r\n")
            version, _, rest = status_line.partition(" ")
            try:
                status = int(rest[:3])
            except ValueError:
                raise _Malformed(f"bad status line {status_line[:60]!r}") from None
            if not version.startswith("HTTP/1.") or not 100 <= status <= 599:
                raise _Malformed(f"bad status line {status_line[:60]!r}")
            headers: dict[str, str] = {}
            for line in lines:
                name, sep, value = line.partition(":")
                if not sep:
                    raise _Malformed("bad header line")
                headers[name.strip().lower()] = value.strip()
            if status >= 200:
                break  # 1xx (informational) answers precede the real one
        body = await self._body(method, status, headers)
        connection = headers.get("connection", "").lower()
        if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
            self.close()
        return status, headers, body

    async def _body(self, method: str, status: int, headers: dict[str, str]) -> bytes:
        if method == "HEAD" or status in (204, 304):
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                end = await self._until(b"\r\n", 1024)
                size_text = bytes(self.buffer[:end]).split(b";", 1)[0].strip()
                del self.buffer[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _Malformed("bad chunk size") from None
                if size == 0:
                    # Trailers (none from Vault) end with an empty line.
                    while (end := await self._until(b"\r\n", _MAX_HEAD)) > 0:
                        del self.buffer[: end + 2]
                    del self.buffer[:2]
                    return b"".join(parts)
                total += size
                if total > _MAX_BODY:
                    raise _Malformed("answer too large")
                parts.append(await self._take(size))
                if await self._take(2) != b"\r\n":
                    raise _Malformed("bad chunk end")
        length = headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise _Malformed("bad content-length") from None
            if not 0 <= n <= _MAX_BODY:
                raise _Malformed("bad content-length")
            return await self._take(n)
        # No length: the body runs to the end of the connection, which cannot be reused.
        while not self.closed:
            if len(self.buffer) > _MAX_BODY:
                raise _Malformed("answer too large")
            await self._more()
        body = bytes(self.buffer)
        self.buffer.clear()
        return body


class VaultTransport:
    """``await get/post/put/request`` of Vault API paths, returning the parsed JSON body.

    For the event loop's thread: each call takes an idle connection from a small pool or opens
    one, so several kernels' calls run at once without threads.
    """

    def __init__(
        self,
        url: str,
        *,
        token: Callable[[], str | None],
        namespace: str | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
        hvac_client: Callable[[], hvac.Client] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._namespace = namespace
        self._timeout = timeout
        self._context = _ssl_context(verify) if url.startswith("https:") else None
        # Set when a proxy applies to the address: requests go through hvac's adapter.
        self._hvac_client = hvac_client
        self._pool: list[_Connection] = []

    @property
    def through_hvac(self) -> bool:
        """True when requests go through hvac's adapter (a proxy is configured)."""
        return self._hvac_client is not None

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self.request("GET", path)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return await self.request("PUT", path, body)

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """One Vault API call (``path`` relative to ``/v1/``); None when Vault sends no body."""
        api_path = "/v1/" + path.lstrip("/")
        if self._hvac_client is not None:
            return await asyncio.to_thread(self._through_hvac, method, api_path, body)
        # X-Vault-Request as hvac sends it: Vault Agent listeners with require_request_header
        # refuse requests without it.
        fixed = "Accept: application/json\r\nX-Vault-Request: true\r\n"
        token = self._token()
        if token:
            fixed += f"X-Vault-Token: {_header_value(token)}\r\n"
        if self._namespace:
            fixed += f"X-Vault-Namespace: {_header_value(self._namespace)}\r\n"
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            fixed += "Content-Type: application/json\r\n"
        if body is not None or method in ("POST", "PUT"):
            fixed += f"Content-Length: {len(data)}\r\n"
        base = self.url
        try:
            async with asyncio.timeout(self._timeout):
                for _ in range(_MAX_REDIRECTS + 1):
                    status, headers, payload = await self._send(base, method, api_path, fixed, data)
                    location = headers.get("location")
                    if status in (301, 302, 307, 308) and location:
                        target = urlsplit(urljoin(base + api_path, location))
                        base = f"{target.scheme}://{target.netloc}"
                        api_path = target.path + (f"?{target.query}" if target.query else "")
                        continue
                    return self._result(method, base + api_path, status, payload)
        except TimeoutError:
            raise VaultUnreachable(f"Vault at {self.url} did not answer in time") from None
        raise VaultUnreachable(f"Vault at {self.url} redirected more than {_MAX_REDIRECTS} times")

    def close(self) -> None:
        """Close the idle connections (those in use close when their call ends)."""
        pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    # -- internals ------------------------------------------------------------------------------

    async def _send(
        self, base: str, method: str, path: str, fixed: str, data: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        netloc = urlsplit(base).netloc
        request = f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\n{fixed}\r\n".encode() + data
        # A pooled connection Vault closed while idle is dropped before use (_take); if Vault
        # closes one in the instant between that check and the request, the request never
        # reached it (no byte came back) and is sent once more on a fresh connection.
        for attempt in (0, 1):
            conn, pooled = await self._take(base, fresh=attempt == 1)
            done = False
            try:
                status, headers, payload = await conn.exchange(request, method)
                done = True
            except _Closed as exc:
                if pooled and exc.empty:
                    continue
                raise VaultUnreachable(
                    f"Vault at {self.url} closed the connection before answering"
                ) from None
            except _Malformed as exc:
                raise VaultUnreachable(
                    f"Vault at {self.url} sent a malformed answer: {exc}"
                ) from None
            finally:
                if not done:
                    conn.close()  # an answer half read (or a cancelled call): never reused
            self._give(conn)
            return status, headers, payload
        raise AssertionError("unreachable")  # pragma: no cover

    async def _take(self, base: str, fresh: bool) -> tuple[_Connection, bool]:
        """An idle pooled connection to ``base`` that is still open, or a new one; which it is."""
        while not fresh:
            found = next(
                (i for i in range(len(self._pool) - 1, -1, -1) if self._pool[i].base == base),
                None,
            )
            if found is None:
                break
            conn = self._pool.pop(found)
            if conn.idle_ok:
                return conn, True
            conn.close()
        return await self._connect(base), False

    async def _connect(self, base: str) -> _Connection:
        parts = urlsplit(base)
        host = parts.hostname or "127.0.0.1"
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        context = (self._context or _ssl_context(True)) if https else None
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(base, loop),
                host,
                port,
                ssl=context,
                server_hostname=host if context is not None else None,
            )
        except ssl.SSLError as exc:
            raise VaultUnreachable(
                f"TLS error talking to Vault at {self.url}: {exc.__class__.__name__}"
            ) from None
        except OSError:
            raise VaultUnreachable(
                f"Vault at {self.url} is unreachable (connection refused or no route)"
            ) from None
        return conn

    def _give(self, conn: _Connection) -> None:
        if not conn.closed and not conn.buffer and len(self._pool) < _POOL_SIZE:
            self._pool.append(conn)
        else:
            conn.close()

    def _result(self, method: str, url: str, status: int, payload: bytes) -> dict[str, Any] | None:
        parsed: Any = None
        if payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = None
        if 200 <= status < 300:
            return parsed if isinstance(parsed, dict) else None
        errors = parsed.get("errors") if isinstance(parsed, dict) else None
        text = payload.decode(errors="replace")
        hvac.utils.raise_for_error(
            method, url, status, errors=errors, text=text, json=parsed if parsed else None
        )
        raise hvac.exceptions.UnexpectedError(f"Vault answered {status}")  # pragma: no cover

    def _through_hvac(
        self, method: str, api_path: str, body: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        assert self._hvac_client is not None
        adapter = self._hvac_client().adapter
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        result = adapter.request(method, api_path, **kwargs)
        return result if isinstance(result, dict) else None


def _header_value(value: str) -> str:
    """A header value as sent; a line break in it (a corrupt token) would split the request."""
    if "\r" in value or "\n" in value:
        raise VaultError("the Vault token or namespace contains a line break")
    return value


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """TLS settings as requests applies them: False skips checks, a path is a CA bundle."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()
