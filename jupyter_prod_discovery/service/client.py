"""The single-user server's one client of the trusted service (the client seam).

Why httpx: one maintained HTTP stack with the same API synchronously (the audit writer thread)
and asynchronously (kernel starts on the event loop), over TCP or a unix socket
(``unix:/run/prod-discovery/service.sock``), with connection pooling. Errors are translated once:
:class:`ServiceUnavailable` (unreachable, timed out, 503: the caller spools or fails closed) and
:class:`ServiceRefused` (4xx: the message says why). Neither ever carries the token.

Authentication: over a unix socket the service reads the caller's uid, so nothing is sent; over
TCP the server's own ``JUPYTERHUB_API_TOKEN`` (a secret of the user's own identity, nothing
stronger).
"""

from __future__ import annotations

import os
from typing import Any

import httpx

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
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            transport = httpx.HTTPTransport(uds=self.socket_path) if self.socket_path else None
            self._sync = httpx.Client(
                base_url=self.base,
                headers=self._headers,
                timeout=self.timeout,
                transport=transport,
            )
        return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            transport = httpx.AsyncHTTPTransport(uds=self.socket_path) if self.socket_path else None
            self._async = httpx.AsyncClient(
                base_url=self.base,
                headers=self._headers,
                timeout=self.timeout,
                transport=transport,
            )
        return self._async

    def _result(self, resp: httpx.Response) -> Any:
        if resp.status_code < 300:
            return resp.json()
        try:
            message = str(resp.json().get("message") or "")
        except ValueError:
            message = ""
        message = message or resp.reason_phrase
        if resp.status_code in (502, 503, 504):
            raise ServiceUnavailable(
                f"the Prod Discovery service at {self.url} cannot now: {message}"
            )
        raise ServiceRefused(resp.status_code, message)

    def _down(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the Prod Discovery service at {self.url} is unreachable ({type(exc).__name__})"
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._sync_client().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._down(exc) from None
        return self._result(resp)

    async def arequest(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self._async_client().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._down(exc) from None
        return self._result(resp)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        self.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None

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

    def public_key(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/audit/public-key")
        return result

    def head(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/audit/head")
        return result

    # -- credentials (event loop) --------------------------------------------------------------

    async def issue(self, kernel_id: str, kernel_name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.arequest(
            "POST", "/api/credentials", json={"kernel_id": kernel_id, "kernel_name": kernel_name}
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
