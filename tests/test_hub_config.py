"""The deployment examples in deploy/ load and wire the hub as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from traitlets.config import Config

from jupyter_prod_discovery.hub.config import configure_hub
from jupyter_prod_discovery.hub.service import SERVICE_NAME

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _service(c: Config) -> dict[str, Any]:
    [service] = [s for s in c.JupyterHub.services if s["name"] == SERVICE_NAME]
    return service


def test_load_jupyterhub_config_example(monkeypatch: Any) -> None:
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example.com:8200")
    monkeypatch.setenv("PROD_DISCOVERY_AUDIT_DSN", "postgresql://writer@db/audit")
    monkeypatch.setenv("PROD_DISCOVERY_AUDIT_KEY", "k" * 32)
    c = Config()
    code = (DEPLOY / "jupyterhub_config.py").read_text()
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})  # noqa: S102
    service = _service(c)
    assert service["url"] == "http://127.0.0.1:8181"
    assert service["command"][1:] == ["-m", "jupyter_prod_discovery.hub.service"]
    env = c.Spawner.environment
    assert env["VAULT_ADDR"] == "https://vault.example.com:8200"
    assert env["PROD_DISCOVERY_JWT_URL"] == f"http://127.0.0.1:8181/services/{SERVICE_NAME}/token"
    assert env["PROD_DISCOVERY_VAULT_JWT_PROVIDER"].endswith("singleuser:fetch_jwt")
    assert "--VaultClient.auth_method=jwt" in c.Spawner.args
    [role] = [r for r in c.JupyterHub.load_roles if r["services"] == [SERVICE_NAME]]
    assert set(role["scopes"]) == {"read:users", "read:users:groups"}
    assert "post_stop_hook" not in c.Spawner  # no hub Vault token set: no revoking hook


def test_load_zero_to_jupyterhub_values() -> None:
    values = yaml.safe_load((DEPLOY / "zero-to-jupyterhub" / "values.yaml").read_text())
    c = Config()
    code = values["hub"]["extraConfig"]["prodDiscovery"]
    env = {"VAULT_ADDR": "https://vault.vault.svc:8200", "PROD_DISCOVERY_HUB_VAULT_TOKEN": "t"}
    import os

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        exec(compile(code, "extraConfig", "exec"), {"c": c})  # noqa: S102
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    service = _service(c)
    assert service["url"] == "http://hub:8181"
    assert service["environment"]["PROD_DISCOVERY_JWT_BIND_IP"] == "0.0.0.0"  # noqa: S104
    assert c.Spawner.environment["PROD_DISCOVERY_JWT_URL"].startswith("http://proxy-public/")
    assert callable(c.Spawner.post_stop_hook)
    profiles = values["singleuser"]["extraFiles"]["prod-discovery-config"]["data"][
        "CredentialBroker"
    ]["profiles"]
    from jupyter_prod_discovery.credentials.profiles import parse_profiles

    assert [p.groups for p in parse_profiles(profiles)] == [("analysts",), ("fraud",)]


def test_configure_hub_keeps_existing_services_and_hooks() -> None:
    calls: list[str] = []
    c = Config()
    c.JupyterHub.services = [{"name": "other", "api_token": "x"}]
    c.Spawner.post_stop_hook = lambda spawner: calls.append(spawner)
    configure_hub(c, vault_addr="http://v:8200", service_port=1, key_file="k", hub_vault_token="t")
    assert [s["name"] for s in c.JupyterHub.services] == ["other", SERVICE_NAME]
    assert c.Spawner.post_stop_hook is not None
