"""The server's Vault client against a real OpenBao: every login method and every failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from traitlets import TraitError

from jupyter_prod_discovery.credentials.vault import (
    VaultAuthError,
    VaultClient,
    VaultError,
    VaultUnreachable,
)
from jupyter_prod_discovery.demo.openbao import free_even_port


def test_connect_with_token_returns_identity(openbao: Any) -> None:
    client = VaultClient(url=openbao.address, token=openbao.root_token)
    identity = client.connect()
    assert identity.policies == ["root"]
    assert openbao.root_token not in repr(identity.to_dict())


def test_connect_reads_vault_env(openbao: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    client = VaultClient()
    assert client.url == openbao.address
    assert client.connect().policies == ["root"]


def test_new_client_resolves_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Proxy and CA bundle variables still apply; they are read once, not on every request.
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/vault-ca.pem")
    remote = VaultClient(url="https://vault.example.com:8200", token="t").new_client("t")
    assert remote.adapter.session.trust_env is False
    assert remote.adapter._kwargs["proxies"]["https"] == "http://proxy.invalid:3128"
    assert remote.adapter._kwargs["verify"] == "/etc/ssl/vault-ca.pem"
    local = VaultClient(url="http://localhost:8200", token="t", verify="false").new_client(None)
    assert local.adapter._kwargs["verify"] is False
    assert not local.adapter._kwargs["proxies"]
    assert local.token is None


def test_connect_invalid_token_raises_auth_error(openbao: Any) -> None:
    client = VaultClient(url=openbao.address, token="not-a-real-token")
    with pytest.raises(VaultAuthError, match="invalid, expired or revoked"):
        client.connect()
    assert client.last_error is not None


def test_connect_unreachable_raises_quickly() -> None:
    port = free_even_port()
    client = VaultClient(url=f"http://127.0.0.1:{port}", token="t", timeout=2)
    started = time.monotonic()
    with pytest.raises(VaultUnreachable, match="unreachable"):
        client.connect()
    assert time.monotonic() - started < 5


def test_connect_without_token_explains() -> None:
    client = VaultClient(url="http://127.0.0.1:1", token="")
    with pytest.raises(VaultAuthError, match="no token is set"):
        client.connect()


def test_connect_not_configured_raises() -> None:
    client = VaultClient(url="")
    assert not client.configured
    with pytest.raises(VaultError, match="not configured"):
        client.connect()


def test_url_without_scheme_is_rejected() -> None:
    with pytest.raises(TraitError, match=r"VaultClient\.url"):
        VaultClient(url="vault.example.com:8200")


def test_login_with_approle(openbao: Any) -> None:
    root = openbao.client()
    root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy("jupyter-server", 'path "kv/*" { capabilities = ["read"] }')
    root.auth.approle.create_or_update_approle(
        "jupyter", token_policies=["jupyter-server"], token_ttl="30m"
    )
    role_id = root.auth.approle.read_role_id("jupyter")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("jupyter")["data"]["secret_id"]
    client = VaultClient(
        url=openbao.address,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id=secret_id,
    )
    identity = client.connect()
    assert "jupyter-server" in identity.policies
    assert identity.renewable
    before = client.identity(max_age=0).ttl
    renewed = client.renew()
    assert renewed.ttl >= before - 1


def test_login_with_approle_wrong_secret_is_refused(openbao: Any) -> None:
    root = openbao.client()
    root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle("jupyter", token_policies=["default"])
    role_id = root.auth.approle.read_role_id("jupyter")["data"]["role_id"]
    client = VaultClient(
        url=openbao.address,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id="00000000-0000-0000-0000-000000000000",
    )
    with pytest.raises(VaultError):
        client.connect()


def _jwt_setup(openbao: Any) -> Any:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    root = openbao.client()
    root.sys.enable_auth_method("jwt")
    root.write("auth/jwt/config", jwt_validation_pubkeys=[public_pem])
    root.sys.create_or_update_policy("jupyter-server", 'path "kv/*" { capabilities = ["read"] }')
    root.write(
        "auth/jwt/role/jupyter",
        role_type="jwt",
        bound_audiences=["prod-discovery"],
        user_claim="sub",
        token_policies=["jupyter-server"],
        token_ttl="10m",
    )
    return key


def _sign(key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "aud": "prod-discovery", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256")


def test_login_with_jwt(openbao: Any, tmp_path: Path) -> None:
    key = _jwt_setup(openbao)
    token_file = tmp_path / "token.jwt"
    token_file.write_text(_sign(key))
    client = VaultClient(
        url=openbao.address, auth_method="jwt", jwt_role="jupyter", jwt_path=str(token_file)
    )
    identity = client.connect()
    assert "jupyter-server" in identity.policies


def test_login_with_jwt_wrong_audience_is_refused(openbao: Any, tmp_path: Path) -> None:
    key = _jwt_setup(openbao)
    token_file = tmp_path / "token.jwt"
    token_file.write_text(_sign(key, aud="someone-else"))
    client = VaultClient(
        url=openbao.address, auth_method="jwt", jwt_role="jupyter", jwt_path=str(token_file)
    )
    with pytest.raises(VaultError):
        client.connect()


def test_login_with_jwt_missing_file_explains(openbao: Any, tmp_path: Path) -> None:
    client = VaultClient(
        url=openbao.address,
        auth_method="jwt",
        jwt_role="jupyter",
        jwt_path=str(tmp_path / "absent.jwt"),
    )
    with pytest.raises(VaultAuthError, match="cannot read the JWT file"):
        client.connect()


def test_health_reports_unreachable_without_raising() -> None:
    port = free_even_port()
    client = VaultClient(url=f"http://127.0.0.1:{port}", token="t", timeout=1)
    info = client.health()
    assert info["configured"] is True
    assert info["reachable"] is False
    assert "unreachable" in info["error"]


def test_renewal_keeps_token_alive(openbao: Any) -> None:
    root = openbao.client()
    token = root.auth.token.create(policies=["default"], ttl="20s", renewable=True)["auth"][
        "client_token"
    ]
    client = VaultClient(url=openbao.address, token=token)
    first = client.connect()
    assert first.renewable and 0 < first.ttl <= 20
    time.sleep(2)
    renewed = client.renew()
    assert renewed.ttl >= first.ttl - 1
