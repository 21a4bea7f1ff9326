"""Hub-signed JWTs against a real OpenBao: claims, JWKS, setup-vault, and what Vault refuses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import jwt
import pytest
from traitlets import TraitError

from jupyter_prod_discovery.cli import main as cli_main
from jupyter_prod_discovery.credentials.vault import VaultAuthError, VaultClient, VaultUnreachable
from jupyter_prod_discovery.hub.issuer import ALGORITHM, JWTIssuer
from jupyter_prod_discovery.hub.service import server_of_scopes
from jupyter_prod_discovery.hub.singleuser import fetch_jwt
from jupyter_prod_discovery.hub.vault_setup import USER_POLICY, group_policy_name, setup_vault

ROLE = "prod-discovery-user"
MOUNT = "jupyterhub"


@pytest.fixture
def issuer(tmp_path: Path) -> JWTIssuer:
    return JWTIssuer(key_file=str(tmp_path / "key.pem"))


@pytest.fixture
def vault(openbao: Any, issuer: JWTIssuer) -> hvac.Client:
    """OpenBao configured by setup_vault for two hub groups, with a KV secret per group/user."""
    root = hvac.Client(url=openbao.address, token=openbao.root_token)
    setup_vault(
        root,
        public_key_pem=issuer.public_pem(),
        groups={"analysts": [], "fraud": []},
    )
    for path in ("groups/analysts/info", "groups/fraud/info", "users/alice/info", "users/bob/info"):
        root.secrets.kv.v2.create_or_update_secret(path=path, secret={"v": path})
    return root


def _login(openbao: Any, token: str) -> hvac.Client:
    client = hvac.Client(url=openbao.address)
    client.token = None
    client.auth.jwt.jwt_login(role=ROLE, jwt=token, path=MOUNT)
    return client


def _sign(issuer: JWTIssuer, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, issuer._key, algorithm=ALGORITHM, headers={"kid": issuer.kid})


def test_issue_jwt_claims(issuer: JWTIssuer) -> None:
    token = issuer.issue("alice", ["fraud", "analysts"], "lab", admin=False)
    assert jwt.get_unverified_header(token)["kid"] == issuer.kid
    claims = issuer.verify(token)
    assert claims["sub"] == "alice"
    assert claims["groups"] == ["analysts", "fraud"]
    assert claims["server_name"] == "lab"
    assert claims["aud"] == "prod-discovery-vault"
    assert claims["exp"] - claims["iat"] == 300


def test_publish_jwks_verifies_jwt(issuer: JWTIssuer) -> None:
    jwks = issuer.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [issuer.kid]
    assert "d" not in jwks["keys"][0]  # never the private exponent
    key = jwt.PyJWK(jwks["keys"][0]).key
    token = issuer.issue("bob", ["fraud"])
    assert (
        jwt.decode(token, key, algorithms=[ALGORITHM], audience="prod-discovery-vault")["sub"]
        == "bob"
    )


def test_create_key_file_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "key.pem"
    first = JWTIssuer(key_file=str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    assert JWTIssuer(key_file=str(path)).kid == first.kid  # reused, not regenerated


def test_validate_lifetime_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(TraitError, match=r"JWTIssuer\.lifetime"):
        JWTIssuer(key_file=str(tmp_path / "k.pem"), lifetime=86400)


def test_parse_server_scopes() -> None:
    assert server_of_scopes(["access:servers!server=alice/", "users:activity!user=alice"]) == (
        "alice",
        "",
    )
    assert server_of_scopes(["access:servers!server=alice/lab"]) == ("alice", "lab")
    assert server_of_scopes(["access:servers!user=alice", "read:users"]) is None
    two = ["access:servers!server=alice/", "access:servers!server=bob/"]
    assert server_of_scopes(two) is None


def test_login_with_hub_jwt_names_user_and_groups(
    openbao: Any, vault: hvac.Client, issuer: JWTIssuer
) -> None:
    client = _login(openbao, issuer.issue("alice", ["analysts"]))
    data = client.auth.token.lookup_self()["data"]
    assert data["meta"]["hub_user"] == "alice"
    assert data["display_name"] == f"{MOUNT}-alice"
    assert USER_POLICY in data["policies"]
    assert group_policy_name("analysts") in data["identity_policies"]
    assert group_policy_name("fraud") not in (data.get("identity_policies") or [])
    read = client.secrets.kv.v2.read_secret_version
    assert read(path="users/alice/info", raise_on_deleted_version=True)["data"]["data"]
    assert read(path="groups/analysts/info", raise_on_deleted_version=True)["data"]["data"]


def test_read_other_user_or_group_secret_is_denied(
    openbao: Any, vault: hvac.Client, issuer: JWTIssuer
) -> None:
    client = _login(openbao, issuer.issue("alice", ["analysts"]))
    read = client.secrets.kv.v2.read_secret_version
    for path in ("users/bob/info", "groups/fraud/info"):
        with pytest.raises(hvac.exceptions.Forbidden):
            read(path=path, raise_on_deleted_version=True)


def test_login_with_forged_subject_is_refused(
    openbao: Any, vault: hvac.Client, issuer: JWTIssuer
) -> None:
    """Alice's JWT with the payload edited to say bob: the signature no longer matches."""
    header, payload, signature = issuer.issue("alice", ["analysts"]).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims.update(sub="bob", groups=["fraud"])
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(hvac.exceptions.VaultError):
        _login(openbao, f"{header}.{forged_payload}.{signature}")


def test_login_with_other_key_is_refused(openbao: Any, vault: hvac.Client, tmp_path: Path) -> None:
    stranger = JWTIssuer(key_file=str(tmp_path / "stranger.pem"))
    with pytest.raises(hvac.exceptions.VaultError):
        _login(openbao, stranger.issue("bob", ["fraud"]))


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("expired", {"iat": -1000, "nbf": -1000, "exp": -600}),
        ("wrong_audience", {"aud": "some-other-service"}),
        ("wrong_issuer", {"iss": "evil-hub"}),
        ("not_yet_valid", {"nbf": 600}),
    ],
)
def test_login_with_bad_claims_is_refused(
    openbao: Any, vault: hvac.Client, issuer: JWTIssuer, case: str, change: dict[str, Any]
) -> None:
    claims = issuer.claims("alice", ["analysts"])
    now = int(time.time())
    for key, value in change.items():
        claims[key] = now + value if isinstance(value, int) else value
    with pytest.raises(hvac.exceptions.VaultError):
        _login(openbao, _sign(issuer, claims))
    # The same claims without the change log in: the refusal is due to the change alone.
    assert _login(openbao, issuer.issue("alice", ["analysts"])).is_authenticated()


def test_setup_vault_twice_is_idempotent(
    openbao: Any, vault: hvac.Client, issuer: JWTIssuer
) -> None:
    again = setup_vault(vault, public_key_pem=issuer.public_pem(), groups={"analysts": []})
    assert again["groups"]["analysts"]["policy"] == group_policy_name("analysts")
    assert _login(openbao, issuer.issue("alice", ["analysts"])).is_authenticated()


def test_setup_vault_needs_one_key_source(vault: hvac.Client) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        setup_vault(vault)
    with pytest.raises(ValueError, match="group"):
        setup_vault(vault, jwks_url="http://hub/jwks.json", groups={"bad group": []})


def test_setup_vault_command(openbao: Any, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    key = tmp_path / "hub-key.pem"
    status = cli_main(
        [
            "hub",
            "setup-vault",
            "--vault-addr",
            openbao.address,
            "--key-file",
            str(key),
            "--group",
            "analysts=database/creds/analysts-ro",
            "--group",
            "fraud",
        ],
    )
    assert status == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["groups"]) == {"analysts", "fraud"}
    assert out["groups"]["analysts"]["paths"] == ["database/creds/analysts-ro"]
    issuer = JWTIssuer(key_file=str(key))
    assert _login(openbao, issuer.issue("bob", ["fraud"])).is_authenticated()


def test_setup_vault_command_without_token_explains(
    openbao: Any, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    status = cli_main(
        ["hub", "setup-vault", "--vault-addr", openbao.address, "--key-file", str(tmp_path / "k")]
    )
    assert status == 2
    assert "VAULT_TOKEN" in capsys.readouterr().err


def test_connect_with_jwt_provider(
    openbao: Any, vault: hvac.Client, issuer: JWTIssuer, tmp_path: Path, monkeypatch: Any
) -> None:
    module = tmp_path / "pd_test_jwt_provider.py"
    module.write_text(
        "from jupyter_prod_discovery.hub.issuer import JWTIssuer\n"
        f"def get():\n    return JWTIssuer(key_file={issuer.key_file!r}).issue('bob', ['fraud'])\n"
        "def broken():\n    raise RuntimeError('hub down')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    client = VaultClient(
        url=openbao.address,
        auth_method="jwt",
        jwt_role=ROLE,
        jwt_mount=MOUNT,
        jwt_provider="pd_test_jwt_provider:get",
    )
    assert client.connect().display_name == f"{MOUNT}-bob"
    client.jwt_provider = "pd_test_jwt_provider:broken"
    with pytest.raises(VaultAuthError, match="JWT provider pd_test_jwt_provider:broken failed"):
        client.connect()


def test_fetch_jwt_without_hub_explains(monkeypatch: Any) -> None:
    monkeypatch.delenv("PROD_DISCOVERY_JWT_URL", raising=False)
    with pytest.raises(VaultAuthError, match="PROD_DISCOVERY_JWT_URL"):
        fetch_jwt(api_token="x")
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    with pytest.raises(VaultAuthError, match="JUPYTERHUB_API_TOKEN"):
        fetch_jwt(url="http://127.0.0.1:9/token")
    with pytest.raises(VaultUnreachable, match="unreachable"):
        fetch_jwt(url="http://127.0.0.1:9/token", api_token="x", timeout=2)


def test_publish_rotated_keys_in_jwks(tmp_path: Path, monkeypatch: Any) -> None:
    old = JWTIssuer(key_file=str(tmp_path / "old.pem"))
    (tmp_path / "old.pub").write_text(old.public_pem())
    monkeypatch.setenv("PROD_DISCOVERY_JWT_EXTRA_PUBLIC_KEYS", str(tmp_path / "old.pub"))
    new = JWTIssuer(key_file=str(tmp_path / "new.pem"))
    assert [k["kid"] for k in new.jwks()["keys"]] == [new.kid, old.kid]
