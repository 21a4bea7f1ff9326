"""The broker's lean Vault transport against a real OpenBao: same answers and errors as hvac.

Every behaviour runs in both modes: direct (pooled http.client) and through hvac's adapter (the
mode used when a proxy applies to the Vault address).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import hvac
import hvac.exceptions
import pytest

from jupyter_prod_discovery.credentials.transport import VaultTransport
from jupyter_prod_discovery.credentials.vault import VaultClient, VaultUnreachable


@pytest.fixture(params=["direct", "hvac"])
def transport(request: Any, openbao: Any) -> Iterator[VaultTransport]:
    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    t = VaultTransport(
        openbao.address,
        token=lambda: openbao.root_token,
        hvac_client=(lambda: client) if request.param == "hvac" else None,
    )
    assert t.through_hvac == (request.param == "hvac")
    yield t
    t.close()


def test_token_create_and_revoke_transport(transport: VaultTransport, openbao: Any) -> None:
    created = transport.post(
        "auth/token/create",
        {"policies": ["default"], "ttl": "5m", "meta": {"kernel_id": "k1"}, "display_name": "k"},
    )
    assert created is not None
    auth = created["auth"]
    assert auth["lease_duration"] == 300
    assert auth["metadata"] == {"kernel_id": "k1"}
    admin = hvac.Client(url=openbao.address, token=openbao.root_token)
    assert admin.auth.token.lookup_accessor(auth["accessor"])["data"]["ttl"] > 0
    transport.post("auth/token/revoke-accessor", {"accessor": auth["accessor"]})
    with pytest.raises(hvac.exceptions.InvalidRequest):
        admin.auth.token.lookup_accessor(auth["accessor"])


def test_kv_read_transport_equals_hvac(transport: VaultTransport, openbao: Any) -> None:
    admin = hvac.Client(url=openbao.address, token=openbao.root_token)
    admin.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"user": "u", "pw": "p"})
    got = transport.get("secret/data/app/db")
    want = admin.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)
    assert got is not None
    assert got["data"]["data"] == want["data"]["data"] == {"user": "u", "pw": "p"}


def test_errors_transport_raise_what_hvac_raises(transport: VaultTransport, openbao: Any) -> None:
    with pytest.raises(hvac.exceptions.InvalidPath):
        transport.get("secret/data/does/not/exist")
    with pytest.raises(hvac.exceptions.InvalidRequest) as info:
        transport.post("auth/token/create", {"ttl": "not-a-duration"})
    assert info.value.errors
    denied = VaultTransport(openbao.address, token=lambda: "hvs.not-a-token")
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
        denied.get("secret/data/app/db")


def test_unreachable_transport_names_the_cause() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = VaultTransport(f"http://127.0.0.1:{port}", token=lambda: "x", timeout=2)
    with pytest.raises(VaultUnreachable, match="unreachable"):
        t.get("sys/health")


def test_silent_vault_transport_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection in the backlog, never answers
        port = listener.getsockname()[1]
        t = VaultTransport(f"http://127.0.0.1:{port}", token=lambda: "x", timeout=0.5)
        with pytest.raises(VaultUnreachable, match="did not answer in time"):
            t.get("sys/health")


class _OneShotHandler(http.server.BaseHTTPRequestHandler):
    """Redirects to the real Vault, or answers once and then drops the connection."""

    protocol_version = "HTTP/1.1"
    target = ""
    connections = 0
    headers_seen: list[dict[str, str]] = []

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_GET(self) -> None:
        type(self).headers_seen.append(dict(self.headers.items()))
        if self.path.startswith("/v1/redirect/"):
            self.send_response(307)
            self.send_header("Location", self.target + "/v1/" + self.path[len("/v1/redirect/") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"data": {"ok": true}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # keep-alive announced...
        self.wfile.write(body)
        self.close_connection = True  # ...but the connection is dropped, as an idle timeout does

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def one_shot(openbao: Any) -> Iterator[str]:
    _OneShotHandler.target = openbao.address
    _OneShotHandler.connections = 0
    _OneShotHandler.headers_seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneShotHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirect_transport_follows_307(one_shot: str, openbao: Any) -> None:
    admin = hvac.Client(url=openbao.address, token=openbao.root_token)
    admin.secrets.kv.v2.create_or_update_secret(path="moved", secret={"v": "1"})
    t = VaultTransport(one_shot, token=lambda: openbao.root_token)
    got = t.get("redirect/secret/data/moved")
    assert got is not None
    assert got["data"]["data"] == {"v": "1"}


def test_dropped_keepalive_transport_retries_on_fresh_connection(one_shot: str) -> None:
    t = VaultTransport(one_shot, token=lambda: "x", namespace="team-a")
    for _ in range(3):
        assert t.get("anything") == {"data": {"ok": True}}
    assert _OneShotHandler.connections == 3
    sent = _OneShotHandler.headers_seen[-1]
    assert sent["X-Vault-Token"] == "x"
    assert sent["X-Vault-Namespace"] == "team-a"
    assert sent["X-Vault-Request"] == "true"


def test_vault_client_transport_uses_current_token(openbao: Any) -> None:
    client = VaultClient(url=openbao.address, token=openbao.root_token)
    with pytest.raises(Exception, match="not connected"):
        client.transport  # noqa: B018
    client.connect()
    assert not client.transport.through_hvac
    assert client.transport.get("auth/token/lookup-self") is not None
    client.client.token = "hvs.revoked-or-unknown"
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
        client.transport.get("auth/token/lookup-self")


def test_vault_client_transport_through_hvac_with_proxy(
    openbao: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    client = VaultClient(url=openbao.address, token=openbao.root_token)
    client._client = client.new_client(openbao.root_token)
    assert client.transport.through_hvac
