"""The single-user server's one client of the trusted service (the client seam).

Why the standard library's ``http.client`` (pooled keep-alive connections, TCP, TLS or a unix
socket such as ``unix:/run/prod-discovery/service.sock``) and not httpx: every audited request
of a server that is the service's client ships its record and waits for it, so the client's own
CPU is paid per request. Measured here on the writer thread (benchmarks --service): httpx's
synchronous client 530-590 us of CPU per shipped record, ``http.client`` on the same kept-alive
socket ~160 us; httpx's asynchronous client ~785 us of event-loop CPU per kernel start's issue.
Calls from the event loop (kernel starts, heartbeats) write the same request on a kept-alive
connection of the loop's own (:meth:`ServiceClient.arequest`; ~0.5 ms less per issue than
``http.client`` in a worker thread); the audit records of the loop travel on the audit channel
(``channel_client.py``). Errors are translated once: :class:`ServiceUnavailable` (unreachable, timed out,
503: the caller spools or fails closed) and :class:`ServiceRefused` (4xx: the message says why).
Neither ever carries the token.

Authentication: over a unix socket the service reads the caller's uid, so nothing is sent; over
TCP the server's own ``JUPYTERHUB_API_TOKEN`` (a secret of the user's own identity, nothing
stronger).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["ServiceClient", "ServiceError", "ServiceRefused", "ServiceUnavailable", "parse_url"]

SERVER_HEADER = "X-Prod-Discovery-Server"
URL_ENV = "PROD_DISCOVERY_SERVICE_URL"


class ServiceError(Exception):
    """The trusted service could not do what was asked."""


class ServiceUnavailable(ServiceError):
    """Unreachable, too slow, or it said it cannot now (503)."""


class ServiceRefused(ServiceError):
    """The service refused (4xx); the message is its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_url(url: str) -> tuple[str, str | None]:
    """(base URL for requests, unix socket path or None) of a service address."""
    if url.startswith("unix:"):
        path = url[len("unix:") :]
        path = path[2:] if path.startswith("//") else path
        if not path.startswith("/"):
            raise ValueError(f"the service socket must be an absolute path: {url!r}")
        return "http://prod-discovery-service", path
    if url.startswith(("http://", "https://")):
        return url.rstrip("/"), None
    raise ValueError(f"service URL must be unix:/path or http(s)://host:port/prefix, got {url!r}")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str, bool, bytes]:
    """(status, reason, keep-alive, body) of one HTTP/1.1 response (Content-Length or chunked:
    what the service's tornado sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError("not an HTTP/1 response")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return int(code), reason, keep, body


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the standalone service): the peer uid is the identity."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("prod-discovery-service", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ServiceClient:
    """Calls the service as this server (``server_id``) of the user the service authenticates."""

    def __init__(
        self, url: str, server_id: str, token: str | None = None, timeout: float = 4.0
    ) -> None:
        self.url = url
        self.server_id = server_id
        self.base, self.socket_path = parse_url(url)
        token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self._headers = {SERVER_HEADER: server_id}
        if token and self.socket_path is None:
            self._headers["Authorization"] = f"token {token}"
        self.timeout = timeout
        parts = urlsplit(self.base)
        self._scheme, self._netloc = parts.scheme, parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        # The event loop's own kept-alive connections (arequest), for the loop they belong to.
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aidle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    # -- plumbing ------------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The headers that identify this server (its id, and over TCP its token)."""
        return dict(self._headers)

    def path(self, path: str) -> str:
        """``path`` under the service's URL prefix."""
        return self._prefix + path

    def _connection(self) -> http.client.HTTPConnection:
        if self.socket_path:
            return _UnixConnection(self.socket_path, self.timeout)
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._netloc, timeout=self.timeout)
        return http.client.HTTPConnection(self._netloc, timeout=self.timeout)

    def _result(self, status: int, reason: str, body: bytes) -> Any:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if status < 300:
            return payload
        message = str(payload.get("message") or "") if isinstance(payload, dict) else ""
        message = message or reason
        if status in (502, 503, 504):
            raise ServiceUnavailable(
                f"the Prod Discovery service at {self.url} cannot now: {message}"
            )
        raise ServiceRefused(status, message)

    def _down(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the Prod Discovery service at {self.url} is unreachable ({type(exc).__name__})"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call, on a pooled connection; a kept-alive connection the service closed
        meanwhile is retried once on a fresh one."""
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        all_headers = {**self._headers, **(headers or {})}
        if json_body is not None:
            content = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            conn = conn or self._connection()
            try:
                conn.request(method, url, body=content, headers=all_headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # the service closed an idle connection: once more, afresh
                raise self._down(exc) from None
            if resp.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
            return self._result(resp.status, resp.reason, body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """:meth:`request` from the event loop, on the loop itself (kernel starts, heartbeats).

        Why not :meth:`request` in a worker thread: a kernel start waits for its credentials,
        and the thread hop plus ``http.client``'s header parsing cost ~0.5 ms of the server's
        CPU per issue (benchmarks --service); here one request is written and one response of
        known length read on a kept-alive connection of this loop.
        """
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        head = {**self._headers, "Host": self._netloc or "prod-discovery-service"}
        body = b""
        if json_body is not None:
            body = json.dumps(json_body).encode()
            head["Content-Type"] = "application/json"
        head["Content-Length"] = str(len(body))
        request = (
            (
                f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
            ).encode("latin-1")
            + b"\r\n"
            + body
        )
        loop = asyncio.get_running_loop()
        if self._aloop is not loop:
            self._aloop, self._aidle = loop, []
        for attempt in (1, 2):
            conn = self._aidle.pop() if self._aidle else None
            reused = conn is not None
            try:
                # asyncio.timeout, not wait_for: wait_for (3.11) swallows a cancellation that
                # arrives as a fast failure completes, and the heartbeat task then never stops.
                async with asyncio.timeout(self.timeout):
                    if conn is None:
                        conn = await self._aopen()
                    reader, writer = conn
                    writer.write(request)
                    status, reason, keep, payload = await _read_response(reader)
            except (
                OSError,
                EOFError,
                ValueError,
                asyncio.IncompleteReadError,
                TimeoutError,
            ) as exc:
                if conn is not None:
                    conn[1].close()
                if reused and attempt == 1 and not isinstance(exc, TimeoutError):
                    continue  # the service closed an idle connection: once more, afresh
                raise self._down(exc) from None
            if keep:
                self._aidle.append(conn)
            else:
                writer.close()
            return self._result(status, reason, payload)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aopen(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.socket_path:
            return await asyncio.open_unix_connection(self.socket_path)
        parts = urlsplit(self.base)
        secure = parts.scheme == "https"
        return await asyncio.open_connection(
            parts.hostname or "localhost",
            parts.port or (443 if secure else 80),
            ssl=ssl.create_default_context() if secure else None,
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def aclose(self) -> None:
        self.close()
        idle, self._aidle = self._aidle, []
        for _reader, writer in idle:
            writer.close()

    # -- audit (writer thread) -----------------------------------------------------------------

    def ship(self, lines: list[str]) -> dict[str, Any]:
        """Ship chained lines of this server's stream; returns once the service committed."""
        body = "\n".join(lines).encode()
        result: dict[str, Any] = self.request(
            "POST",
            "/api/audit/events",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        return result

    def stream_position(self) -> int:
        """The last of this server's events the service stored (0: none)."""
        return int(self.request("GET", "/api/audit/stream")["last_server_seq"])

    def session_key(self) -> bytes:
        """The MAC key the service keeps for this server's stream (issued once per stream)."""
        return bytes.fromhex(str(self.request("POST", "/api/audit/session")["key"]))

    def public_key(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/audit/public-key")
        return result

    def head(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/audit/head")
        return result

    # -- credentials (event loop) --------------------------------------------------------------

    async def issue(self, kernel_id: str, kernel_name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.arequest(
            "POST",
            "/api/credentials",
            json_body={"kernel_id": kernel_id, "kernel_name": kernel_name},
        )
        return result

    async def revoke(self, kernel_id: str, reason: str) -> None:
        await self.arequest("DELETE", f"/api/credentials/{kernel_id}", params={"reason": reason})

    async def renew(self, kernel_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.arequest("POST", f"/api/credentials/{kernel_id}/renew")
        return result

    async def heartbeat(self) -> list[dict[str, Any]]:
        return list((await self.arequest("POST", "/api/heartbeat"))["kernels"])

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.arequest("GET", "/api/status")
        return result

    # -- export (promotion decided by the service; called from worker threads) ------------------

    def create_export(self, submission: dict[str, Any]) -> dict[str, Any]:
        """Submit a notebook and its request; the service answers with the job (202)."""
        result: dict[str, Any] = self.request("POST", "/api/exports", json_body=submission)
        return result

    def export_job(self, job_id: str) -> dict[str, Any]:
        """The job: each gate's result as it completes; once exported, the bundle's files."""
        result: dict[str, Any] = self.request("GET", f"/api/exports/{job_id}")
        return result
