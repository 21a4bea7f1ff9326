"""A lean keep-alive HTTP transport for the broker's per-kernel Vault calls.

Why not hvac on this path: a call through hvac and requests costs about 1 ms of server CPU
(session and environment merging, hooks, adapters, urllib3's pool, response wrappers), and a
kernel start makes one call per credential profile while the whole credential work must stay
within about a tenth of a plain kernel start. This transport sends the same HTTP requests over
pooled ``http.client`` connections (about a tenth of that cost), follows Vault's 307 redirects
(standby nodes send clients to the active one), and raises exactly what hvac raises for an error
status (through ``hvac.utils.raise_for_error``), so ``translate_error`` and every caller behave as
with hvac. Connection failures and timeouts become the same ``VaultUnreachable`` messages.

When a proxy applies to the Vault address (``HTTPS_PROXY`` and friends, resolved once by
``VaultClient``) the transport hands each request to hvac's adapter instead, which speaks
proxies; the results are the same.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import hvac
import hvac.utils

from .vault import VaultUnreachable

__all__ = ["VaultTransport"]

_MAX_REDIRECTS = 3
_POOL_SIZE = 8


class VaultTransport:
    """``get``/``post``/``put``/``delete`` of Vault API paths, returning the parsed JSON body.

    Thread-safe: each call takes a connection from a small pool (issuing and revoking run in
    worker threads, several kernels may start at once).
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
        self._pool: list[tuple[str, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    @property
    def through_hvac(self) -> bool:
        """True when requests go through hvac's adapter (a proxy is configured)."""
        return self._hvac_client is not None

    def get(self, path: str) -> dict[str, Any] | None:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return self.request("POST", path, body)

    def put(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return self.request("PUT", path, body)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """One Vault API call (``path`` relative to ``/v1/``); None when Vault sends no body."""
        api_path = "/v1/" + path.lstrip("/")
        if self._hvac_client is not None:
            return self._through_hvac(method, api_path, body)
        # X-Vault-Request as hvac sends it: Vault Agent listeners with require_request_header
        # refuse requests without it.
        headers = {"Accept": "application/json", "X-Vault-Request": "true"}
        token = self._token()
        if token:
            headers["X-Vault-Token"] = token
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        base = self.url
        for _ in range(_MAX_REDIRECTS + 1):
            status, location, payload = self._send(base, method, api_path, data, headers)
            if status in (301, 302, 307, 308) and location:
                target = urlsplit(urljoin(base + api_path, location))
                base = f"{target.scheme}://{target.netloc}"
                api_path = target.path + (f"?{target.query}" if target.query else "")
                continue
            return self._result(method, base + api_path, status, payload)
        raise VaultUnreachable(f"Vault at {self.url} redirected more than {_MAX_REDIRECTS} times")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for _, conn in pool:
            conn.close()

    # -- internals ------------------------------------------------------------------------------

    def _send(
        self, base: str, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str | None, bytes]:
        # A pooled connection Vault closed while idle is dropped before use (_take); if Vault
        # closes one in the instant between that check and the request, the request never
        # reached it and is sent once more on a fresh connection.
        for attempt in (0, 1):
            conn, pooled = self._take(base, fresh=attempt == 1)
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except TimeoutError:
                conn.close()
                raise VaultUnreachable(f"Vault at {self.url} did not answer in time") from None
            except ssl.SSLError as exc:
                conn.close()
                raise VaultUnreachable(
                    f"TLS error talking to Vault at {self.url}: {exc.__class__.__name__}"
                ) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if pooled:
                    continue
                raise VaultUnreachable(
                    f"Vault at {self.url} is unreachable (connection refused or no route)"
                ) from None
            except (OSError, http.client.HTTPException):
                conn.close()
                raise VaultUnreachable(
                    f"Vault at {self.url} is unreachable (connection refused or no route)"
                ) from None
            if response.will_close:
                conn.close()
            else:
                self._give(base, conn)
            return response.status, response.getheader("Location"), payload
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self, base: str, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """A pooled connection to ``base`` that is still open, or a new one; and which it is."""
        while not fresh:
            with self._lock:
                found = next(
                    (i for i in range(len(self._pool) - 1, -1, -1) if self._pool[i][0] == base),
                    None,
                )
                if found is None:
                    break
                conn = self._pool.pop(found)[1]
            if not _dropped(conn):
                return conn, True
            conn.close()
        return self._connect(base), False

    def _connect(self, base: str) -> http.client.HTTPConnection:
        parts = urlsplit(base)
        host = parts.hostname or "127.0.0.1"
        if parts.scheme == "https":
            context = self._context or _ssl_context(True)
            return http.client.HTTPSConnection(
                host, parts.port, timeout=self._timeout, context=context
            )
        return http.client.HTTPConnection(host, parts.port, timeout=self._timeout)

    def _give(self, base: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._pool) < _POOL_SIZE:
                self._pool.append((base, conn))
                return
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


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection that is readable was closed by the server (EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


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
