"""The broker's lean Vault transport against a real OpenBao: same answers and errors as hvac.

Every behaviour runs in both modes: direct (pooled asyncio connections on the event loop) and
through hvac's adapter (the mode used when a proxy applies to the Vault address). The HTTP
framing cases (chunked bodies, bodies up to EOF, malformed answers) use a scripted server.
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


async def test_token_create_and_revoke_transport(transport: VaultTransport, openbao: Any) -> None:
    created = await transport.post(
        "auth/token/create",
        {"policies": ["default"], "ttl": "5m", "meta": {"kernel_id": "k1"}, "display_name": "k"},
    )
    assert created is not None
    auth = created["auth"]
    assert auth["lease_duration"] == 300
    assert auth["metadata"] == {"kernel_id": "k1"}
    admin = hvac.Client(url=openbao.address, token=openbao.root_token)
    assert admin.auth.token.lookup_accessor(auth["accessor"])["data"]["ttl"] > 0
    await transport.post("auth/token/revoke-accessor", {"accessor": auth["accessor"]})
    with pytest.raises(hvac.exceptions.InvalidRequest):
        admin.auth.token.lookup_accessor(auth["accessor"])


async def test_kv_read_transport_equals_hvac(transport: VaultTransport, openbao: Any) -> None:
    admin = hvac.Client(url=openbao.address, token=openbao.root_token)
    admin.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"user": "u", "pw": "p"})
    got = await transport.get("secret/data/app/db")
    want = admin.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)
    assert got is not None
    assert got["data"]["data"] == want["data"]["data"] == {"user": "u", "pw": "p"}


async def test_errors_transport_raise_what_hvac_raises(
    transport: VaultTransport, openbao: Any
) -> None:
    with pytest.raises(hvac.exceptions.InvalidPath):
        await transport.get("secret/data/does/not/exist")
    with pytest.raises(hvac.exceptions.InvalidRequest) as info:
        await transport.post("auth/token/create", {"ttl": "not-a-duration"})
    assert info.value.errors
    denied = VaultTransport(openbao.address, token=lambda: "hvs.not-a-token")
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
        await denied.get("secret/data/app/db")


async def test_unreachable_transport_names_the_cause() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = VaultTransport(f"http://127.0.0.1:{port}", token=lambda: "x", timeout=2)
    with pytest.raises(VaultUnreachable, match="unreachable"):
        await t.get("sys/health")


async def test_silent_vault_transport_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection in the backlog, never answers
        port = listener.getsockname()[1]
        t = VaultTransport(f"http://127.0.0.1:{port}", token=lambda: "x", timeout=0.5)
        with pytest.raises(VaultUnreachable, match="did not answer in time"):
            await t.get("sys/health")


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


async def test_redirect_transport_follows_307(one_shot: str, openbao: Any) -> None:
    admin = hvac.Client(url=openbao.address, token=openbao.root_token)
    admin.secrets.kv.v2.create_or_update_secret(path="moved", secret={"v": "1"})
    t = VaultTransport(one_shot, token=lambda: openbao.root_token)
    got = await t.get("redirect/secret/data/moved")
    assert got is not None
    assert got["data"]["data"] == {"v": "1"}


async def test_dropped_keepalive_transport_retries_on_fresh_connection(one_shot: str) -> None:
    t = VaultTransport(one_shot, token=lambda: "x", namespace="team-a")
    for _ in range(3):
        assert await t.get("anything") == {"data": {"ok": True}}
    assert _OneShotHandler.connections == 3
    sent = _OneShotHandler.headers_seen[-1]
    assert sent["X-Vault-Token"] == "x"
    assert sent["X-Vault-Namespace"] == "team-a"
    assert sent["X-Vault-Request"] == "true"


async def test_vault_client_transport_uses_current_token(openbao: Any) -> None:
    client = VaultClient(url=openbao.address, token=openbao.root_token)
    with pytest.raises(Exception, match="not connected"):
        client.transport  # noqa: B018
    client.connect()
    assert not client.transport.through_hvac
    assert await client.transport.get("auth/token/lookup-self") is not None
    client.client.token = "hvs.revoked-or-unknown"
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
        await client.transport.get("auth/token/lookup-self")


async def test_vault_client_transport_through_hvac_with_proxy(
    openbao: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    client = VaultClient(url=openbao.address, token=openbao.root_token)
    client._client = client.new_client(openbao.root_token)
    assert client.transport.through_hvac


@pytest.fixture
def scripted() -> Iterator[Any]:
    """A server answering each request with the next scripted bytes (None: close silently,
    b"": hold the connection open without answering)."""
    answers: list[bytes | None] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while answers:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        request += chunk
                    if not request:
                        break
                    answer = answers.pop(0)
                    if answer is None:
                        break
                    if not answer:
                        stop.wait(10)
                        break
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()

    class Script:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def answer(self, *raw: bytes | None) -> None:
            answers.extend(raw)

    yield Script()
    stop.set()
    listener.close()


async def test_chunked_and_eof_delimited_bodies_transport(scripted: Any) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"data"\r\n5;ext=1\r\n: {"a\r\n6\r\n": 1}}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    informational = b"HTTP/1.1 100 Continue\r\n\r\n"
    to_eof = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"data": {"b": 2}}'
    scripted.answer(chunked, informational + chunked, to_eof)
    t = VaultTransport(scripted.url, token=lambda: "x")
    assert await t.get("one") == {"data": {"a": 1}}
    assert await t.get("two") == {"data": {"a": 1}}  # same connection, after a 1xx answer
    assert await t.get("three") == {"data": {"b": 2}}  # body up to EOF: not pooled afterwards
    assert t._pool == []
    t.close()


@pytest.mark.parametrize(
    "answer, cause",
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed answer: bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed answer: bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "malformed answer: bad content-length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"cut', "closed the connection"),
        (None, "closed the connection before answering"),
    ],
)
async def test_malformed_or_cut_answer_transport_names_the_cause(
    scripted: Any, answer: bytes | None, cause: str
) -> None:
    scripted.answer(answer)
    t = VaultTransport(scripted.url, token=lambda: "x", timeout=5)
    with pytest.raises(VaultUnreachable, match=cause):
        await t.get("anything")
    assert t._pool == []  # a connection in an unknown state is never reused
    t.close()


async def test_token_with_line_break_transport_refused_before_sending(scripted: Any) -> None:
    from jupyter_prod_discovery.credentials.vault import VaultError

    t = VaultTransport(scripted.url, token=lambda: "x\r\nX-Injected: 1")
    with pytest.raises(VaultError, match="line break"):
        await t.get("anything")


async def test_redirect_loop_transport_stops(scripted: Any) -> None:
    loop_answer = (
        f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {scripted.url}/v1/again\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    scripted.answer(*[loop_answer] * 5)
    t = VaultTransport(scripted.url, token=lambda: "x")
    with pytest.raises(VaultUnreachable, match="redirected more than 3 times"):
        await t.get("start")
    t.close()


async def test_cancelled_call_transport_drops_its_connection(scripted: Any) -> None:
    import asyncio

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    scripted.answer(ok, b"")  # the second request gets no answer: the call is cancelled
    t = VaultTransport(scripted.url, token=lambda: "x")
    assert await t.get("first") is not None
    assert len(t._pool) == 1
    call = asyncio.ensure_future(t.get("second"))
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert t._pool == []
