"""``configure_hub(c, ...)``: wire Prod Discovery into a ``jupyterhub_config.py``.

One call adds the JWT issuer as a managed service (with the role to read users' groups), points
every single-user server's ``VaultClient`` at Vault's JWT auth with the hub-signed JWT, and
installs a ``post_stop_hook`` that revokes the stopped server's Vault tokens, and with them every
lease and child token they issued, even when the server died without cleaning up.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hvac

from .service import SERVICE_NAME
from .singleuser import JWT_URL_ENV

__all__ = [
    "TRUSTED_SERVICE_NAME",
    "configure_hub",
    "configure_trusted_service",
    "revoke_server_tokens",
]

TRUSTED_SERVICE_NAME = "prod-discovery"


def _current(c: Any, section: str, name: str, empty: Any) -> Any:
    """The value set so far in config ``c`` (applying .append/.update-style lazy edits)."""
    from traitlets.config import LazyConfigValue

    sec = c[section]
    if name not in sec:
        return empty
    value = sec[name]
    if isinstance(value, LazyConfigValue):
        return value.get_value(empty)
    return value


log = logging.getLogger("jupyter_prod_discovery.hub")


def _add_service(c: Any, service: dict[str, Any], role: str, description: str) -> None:
    """Append a managed service and its role (read users and their groups) to ``c``, keeping
    the services and roles configured before."""
    c.JupyterHub.services = [*_current(c, "JupyterHub", "services", []), service]
    c.JupyterHub.load_roles = [
        *_current(c, "JupyterHub", "load_roles", []),
        {
            "name": role,
            "description": description,
            "scopes": ["read:users", "read:users:groups"],
            "services": [service["name"]],
        },
    ]


def revoke_server_tokens(
    vault_addr: str, hub_token: str, user: str, server_name: str = "", role: str = ""
) -> int:
    """Revoke every Vault token a JWT login of ``user``'s server ``server_name`` created.

    Revoking a token revokes its child tokens and the leases issued with it, so this takes back
    every credential of that server. Needs the ``prod-discovery-hub`` policy (listing accessors is
    a sudo operation). Returns how many tokens were revoked; blocking (call it in a thread).
    """
    client = hvac.Client(url=vault_addr, token=hub_token, timeout=10)
    try:
        accessors = client.list("auth/token/accessors")["data"]["keys"]
    except (hvac.exceptions.VaultError, KeyError, TypeError):
        return 0
    revoked = 0
    for accessor in accessors:
        try:
            data = client.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.VaultError:
            continue  # expired or revoked meanwhile
        meta = data.get("meta") or {}
        if meta.get("hub_user") != user or meta.get("server_name", "") != server_name:
            continue
        if role and meta.get("role") != role:
            continue
        try:
            client.auth.token.revoke_accessor(accessor)
            revoked += 1
        except hvac.exceptions.VaultError as exc:
            log.error("Revoking Vault token %s of %s failed: %s", accessor, user, exc)
    return revoked


def configure_hub(
    c: Any,
    *,
    vault_addr: str,
    service_port: int,
    key_file: str,
    role: str = "prod-discovery-user",
    mount: str = "jupyterhub",
    issuer: str = "jupyterhub",
    audience: str = "prod-discovery-vault",
    jwt_lifetime: int = 300,
    hub_vault_token: str = "",
    service_host: str = "127.0.0.1",
    bind_ip: str = "",
    jwt_url: str = "",
) -> None:
    """Add the JWT service, the single-user Vault settings and the revoking stop hook to ``c``.

    ``jwt_url`` is how single-user servers reach the service's ``token`` endpoint (default:
    the service's own address; on Kubernetes use the hub's or proxy's service name).
    ``hub_vault_token`` (a token with the ``prod-discovery-hub`` policy) enables the stop hook.
    ``bind_ip`` is where the service listens when ``service_host`` is a name the hub's own
    process cannot bind (on Kubernetes: ``service_host="hub"``, ``bind_ip="0.0.0.0"``).
    """
    service_url = f"http://{service_host}:{service_port}"
    prefix = f"/services/{SERVICE_NAME}/"
    jwt_service: dict[str, Any] = {
        "name": SERVICE_NAME,
        "url": service_url,
        "command": [sys.executable, "-m", "jupyter_prod_discovery.hub.service"],
        "environment": {
            "PROD_DISCOVERY_JWT_KEY_FILE": key_file,
            "PROD_DISCOVERY_JWT_ISSUER": issuer,
            "PROD_DISCOVERY_JWT_AUDIENCE": audience,
            "PROD_DISCOVERY_JWT_LIFETIME": str(jwt_lifetime),
            "PROD_DISCOVERY_JWT_BIND_IP": bind_ip,
        },
    }
    _add_service(
        c,
        jwt_service,
        "prod-discovery-jwt",
        "Read users' names, groups and admin flag to sign their JWTs",
    )

    env = dict(_current(c, "Spawner", "environment", {}))
    env.update(
        {
            "VAULT_ADDR": vault_addr,
            JWT_URL_ENV: jwt_url or f"{service_url}{prefix}token",
            "PROD_DISCOVERY_VAULT_JWT_PROVIDER": "jupyter_prod_discovery.hub.singleuser:fetch_jwt",
        }
    )
    c.Spawner.environment = env
    c.Spawner.args = [
        *list(_current(c, "Spawner", "args", [])),
        "--VaultClient.auth_method=jwt",
        f"--VaultClient.jwt_role={role}",
        f"--VaultClient.jwt_mount={mount}",
    ]

    if hub_vault_token:
        previous = _current(c, "Spawner", "post_stop_hook", None)

        async def _revoke_on_stop(spawner: Any) -> None:
            import asyncio

            if callable(previous):
                result = previous(spawner)
                if asyncio.iscoroutine(result):
                    await result
            count = await asyncio.to_thread(
                revoke_server_tokens,
                vault_addr,
                hub_vault_token,
                spawner.user.name,
                spawner.name or "",
                role,
            )
            spawner.log.info(
                "Revoked %d Vault token(s) of %s's server %r",
                count,
                spawner.user.name,
                spawner.name,
            )

        c.Spawner.post_stop_hook = _revoke_on_stop


def configure_trusted_service(
    c: Any,
    *,
    port: int,
    dsn: str,
    vault_addr: str,
    vault_token: str,
    config_file: str,
    state_dir: str,
    host: str = "127.0.0.1",
    bind_ip: str = "",
    user: str = "",
    python: str = "",
    server_url: str = "",
) -> None:
    """Run the trusted service as a hub-managed service and make every server its client.

    The service (``jupyter prod-discovery service``) gets the only secrets of the trusted side in
    its own environment: the audit store's ``dsn``, Vault's ``vault_token`` (a least-privilege
    token: ``jupyter prod-discovery service-policy`` prints its policy), and its signing key in
    ``state_dir``. ``config_file`` holds its configuration (the credential profiles). ``user``
    runs it as that OS user (the hub must run as root), so single-user servers, whatever uid they
    run as, cannot read its memory or files. Servers get only the service's address
    (``server_url``, default ``http://host:port/services/prod-discovery/``) and authenticate
    with their own hub API token: they hold no Vault token, no DSN and no audit key.
    ``bind_ip`` is where it listens when ``host`` is a name the hub's process cannot bind (on
    Kubernetes: ``host="hub"``, ``bind_ip="0.0.0.0"``); ``python`` the interpreter that ``user``
    can run (default: the hub's own).
    """
    prefix = f"/services/{TRUSTED_SERVICE_NAME}/"
    service: dict[str, Any] = {
        "name": TRUSTED_SERVICE_NAME,
        "url": f"http://{host}:{port}",
        "command": [
            python or sys.executable,
            "-m",
            "jupyter_prod_discovery.cli",
            "service",
            f"--config={config_file}",
            f"--ProdDiscoveryService.ip={bind_ip or host}",
        ],
        "environment": {
            "PROD_DISCOVERY_SERVICE_DSN": dsn,
            "VAULT_ADDR": vault_addr,
            "VAULT_TOKEN": vault_token,
            "PROD_DISCOVERY_SERVICE_STATE_DIR": state_dir,
        },
    }
    if user:
        service["user"] = user
    _add_service(
        c,
        service,
        "prod-discovery-service",
        "Read users' names and groups to enforce credential profiles",
    )
    env = dict(_current(c, "Spawner", "environment", {}))
    env["PROD_DISCOVERY_SERVICE_URL"] = server_url or f"http://{host}:{port}{prefix}"
    c.Spawner.environment = env
