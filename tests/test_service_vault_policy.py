"""The trusted service's Vault policy: what its profiles need and nothing else (real OpenBao)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
from credentials_support import Warehouse

from jupyter_prod_discovery.cli import main


def test_setup_service_writes_least_privilege_policy_and_token(
    openbao: Any,
    warehouse: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "service.json"
    config.write_text(json.dumps({"CredentialBroker": {"profiles": warehouse.profiles()}}))
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)  # the operator's, never the service's
    assert main(["hub", "setup-service", "--config", str(config), "--create-token"]) == 0
    summary = json.loads(capsys.readouterr().out)
    service = hvac.Client(url=openbao.address, token=summary["token"])
    info = service.auth.token.lookup_self()["data"]
    assert "root" not in info["policies"]
    assert set(info["policies"]) >= {"prod-discovery-service", "default"}
    # What the profiles need works ...
    creds = service.read("database/creds/analyst")
    assert creds["data"]["username"]
    service.sys.revoke_lease(creds["lease_id"])
    child = service.auth.token.create(policies=["default"], ttl="1m")
    assert child["auth"]["client_token"]
    # ... and nothing else: no policies, no other engines, no auth methods, no other roles.
    for attempt in (
        lambda: service.sys.list_policies(),
        lambda: service.sys.create_or_update_policy("evil", 'path "*" { capabilities = ["sudo"] }'),
        lambda: service.read("database/creds/other-role"),
        lambda: service.read("database/config/prod"),
        lambda: service.sys.enable_auth_method("userpass"),
        lambda: service.auth.token.create(policies=["root"]),
    ):
        with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
            attempt()


def test_setup_service_refuses_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("VAULT_TOKEN", "x")
    bad = tmp_path / "bad.json"
    bad.write_text('{"CredentialBroker": {"profiles": [{"name": "x", "type": "nope"}]}}')
    assert main(["hub", "setup-service", "--config", str(bad)]) == 2
    assert "cannot read profiles" in capsys.readouterr().err
    assert main(["hub", "setup-service", "--config", str(tmp_path / "missing.json")]) == 2
