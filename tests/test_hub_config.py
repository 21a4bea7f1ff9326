"""The deployment examples in deploy/ load and wire the hub as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from traitlets.config import Config

from jupyter_prod_discovery.hub.config import TRUSTED_SERVICE_NAME, configure_hub
from jupyter_prod_discovery.hub.service import SERVICE_NAME

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _service(c: Config) -> dict[str, Any]:
    [service] = [s for s in c.JupyterHub.services if s["name"] == SERVICE_NAME]
    return service


TRUSTED_SECRETS = {
    "VAULT_ADDR": "https://vault.example.com:8200",
    "PROD_DISCOVERY_SERVICE_DSN": "postgresql://pd@db/audit?password=dsn-secret-4f1c",
    "PROD_DISCOVERY_SERVICE_VAULT_TOKEN": "hvs.service-token-secret-9e2a",
}
# Names that would put a secret of the trusted side into single-user servers.
FORBIDDEN_NAMES = ("VAULT_TOKEN", "AUDIT_KEY", "AUDIT_DSN", "SERVICE_DSN", "HMAC", "SECRET_ID")


def _assert_no_trusted_secret(where: str, env: dict[str, Any]) -> None:
    text = repr(env)
    for value in TRUSTED_SECRETS.values():
        if value.startswith("https://"):
            continue  # Vault's address is not a secret
        assert value not in text, f"{where} holds a secret of the trusted side"
    for name in env:
        assert not any(f in name for f in FORBIDDEN_NAMES), f"{where} sets {name}"


def _trusted(c: Config) -> dict[str, Any]:
    [service] = [s for s in c.JupyterHub.services if s["name"] == TRUSTED_SERVICE_NAME]
    return service


def test_load_jupyterhub_config_example(monkeypatch: Any) -> None:
    for name, value in TRUSTED_SECRETS.items():
        monkeypatch.setenv(name, value)
    c = Config()
    code = (DEPLOY / "jupyterhub_config.py").read_text()
    exec(compile(code, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})  # noqa: S102
    service = _trusted(c)
    assert service["url"] == "http://127.0.0.1:8182"
    assert service["command"][1:4] == ["-m", "jupyter_prod_discovery.cli", "service"]
    assert service["user"] == "prod-discovery"
    # The secrets go to the service's own process, and nowhere else.
    assert (
        service["environment"]["VAULT_TOKEN"]
        == TRUSTED_SECRETS["PROD_DISCOVERY_SERVICE_VAULT_TOKEN"]
    )
    assert (
        service["environment"]["PROD_DISCOVERY_SERVICE_DSN"]
        == TRUSTED_SECRETS["PROD_DISCOVERY_SERVICE_DSN"]
    )
    env = dict(c.Spawner.environment)
    _assert_no_trusted_secret("Spawner.environment", env)
    assert env["PROD_DISCOVERY_SERVICE_URL"] == "http://127.0.0.1:8182/services/prod-discovery/"
    assert not [a for a in c.Spawner.get("args", []) if "Vault" in a]
    [role] = [r for r in c.JupyterHub.load_roles if r["services"] == [TRUSTED_SERVICE_NAME]]
    assert set(role["scopes"]) == {"read:users", "read:users:groups"}


def test_load_zero_to_jupyterhub_values(monkeypatch: Any) -> None:
    values = yaml.safe_load((DEPLOY / "zero-to-jupyterhub" / "values.yaml").read_text())
    for name, value in TRUSTED_SECRETS.items():
        monkeypatch.setenv(name, value)
    c = Config()
    code = values["hub"]["extraConfig"]["prodDiscovery"]
    exec(compile(code, "extraConfig", "exec"), {"c": c})  # noqa: S102
    service = _trusted(c)
    assert service["url"] == "http://hub:8182"
    assert "--ProdDiscoveryService.ip=0.0.0.0" in service["command"]
    env = dict(c.Spawner.environment)
    assert env["PROD_DISCOVERY_SERVICE_URL"] == "http://hub:8182/services/prod-discovery/"
    # Everything a user pod gets: the spawner's environment, singleuser.extraEnv and extraFiles.
    single = values["singleuser"]
    _assert_no_trusted_secret("Spawner.environment", env)
    _assert_no_trusted_secret("singleuser.extraEnv", single.get("extraEnv", {}))
    for name, spec in single.get("extraFiles", {}).items():
        _assert_no_trusted_secret(f"singleuser.extraFiles.{name}", spec.get("data", {}))
        assert "CredentialBroker" not in spec.get("data", {}), "profiles belong to the service"
    secret_refs = [
        v["valueFrom"]["secretKeyRef"]["name"]
        for v in single.get("extraEnv", {}).values()
        if isinstance(v, dict) and "valueFrom" in v
    ]
    assert secret_refs == [], "no Kubernetes Secret is mounted into user pods"
    # The service's profiles are in the hub pod.
    profiles = values["hub"]["extraFiles"]["prod-discovery-service"]["data"]["CredentialBroker"][
        "profiles"
    ]
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
