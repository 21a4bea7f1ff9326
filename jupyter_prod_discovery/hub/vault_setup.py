"""Configure Vault/OpenBao for hub-signed JWTs: auth method, role, templated policies, groups.

What :func:`setup_vault` writes (idempotent: running it again updates in place):

- a JWT auth method at ``mount`` verifying our JWTs with the hub's public key (or ``jwks_url``),
  ``bound_issuer`` set;
- a role (``role``) with ``bound_audiences`` = our audience, ``user_claim`` = ``sub`` (the hub
  user names the Vault entity alias), ``groups_claim`` = ``groups``, the ``server_name`` claim
  copied into token metadata, short ``token_ttl``/``token_max_ttl``;
- the policy ``prod-discovery-user`` every hub user gets: what the extension needs to hand out
  per-kernel child tokens and manage their leases, plus a KV path templated on the user
  (``secret/data/users/<user>/*`` through ``{{identity.entity.aliases.<accessor>.name}}``);
- per hub group, an external identity group aliased to the group claim, with a policy
  ``prod-discovery-group-<group>`` granting read on the listed paths (for example that group's
  database role) and the group's KV path ``secret/data/groups/<group>/*``. A user outside the
  group gets "permission denied" from Vault even if a profile was misconfigured;
- the policy ``prod-discovery-hub`` for the hub's stop hook, which revokes a stopped server's
  Vault tokens (and so every lease they issued) by accessor.
"""

from __future__ import annotations

import re
from typing import Any

import hvac

from .issuer import DEFAULT_AUDIENCE

__all__ = ["HUB_POLICY", "USER_POLICY", "group_policy_name", "setup_vault"]

USER_POLICY = "prod-discovery-user"
HUB_POLICY = "prod-discovery-hub"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

_USER_POLICY_HCL = """\
# Every hub user's server token (JWT login). Templated on the hub user name.
path "auth/token/create" {{ capabilities = ["create", "update"] }}
path "auth/token/lookup-self" {{ capabilities = ["read"] }}
path "auth/token/renew-self" {{ capabilities = ["update"] }}
path "auth/token/revoke-self" {{ capabilities = ["update"] }}
path "auth/token/renew-accessor" {{ capabilities = ["update"] }}
path "auth/token/revoke-accessor" {{ capabilities = ["update"] }}
path "sys/leases/renew" {{ capabilities = ["update"] }}
path "sys/leases/revoke" {{ capabilities = ["update"] }}
path "{kv}/data/users/{{{{identity.entity.aliases.{accessor}.name}}}}/*" {{ capabilities = ["read"] }}
"""

_GROUP_POLICY_HCL = """\
# Members of the hub group {group!r} (external identity group from the JWT 'groups' claim).
path "{kv}/data/groups/{group}/*" {{ capabilities = ["read"] }}
"""

_HUB_POLICY_HCL = """\
# The hub's stop hook: find a stopped server's tokens and revoke them (and their leases).
path "auth/token/accessors" { capabilities = ["list", "sudo"] }
path "auth/token/lookup-accessor" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }
"""


def group_policy_name(group: str) -> str:
    return f"prod-discovery-group-{group}"


def _check_name(kind: str, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"{kind} {value!r} may only contain letters, digits, '_', '.', '-'")


def setup_vault(
    client: hvac.Client,
    *,
    mount: str = "jupyterhub",
    role: str = "prod-discovery-user",
    issuer: str = "jupyterhub",
    audience: str = DEFAULT_AUDIENCE,
    public_key_pem: str = "",
    jwks_url: str = "",
    groups: dict[str, list[str]] | None = None,
    token_ttl: str = "15m",  # noqa: S107 (a duration, not a secret)
    token_max_ttl: str = "1h",  # noqa: S107
    kv_mount: str = "secret",
) -> dict[str, Any]:
    """Write the JWT auth method, role, policies and groups; return what was configured.

    Exactly one of ``public_key_pem`` (the hub's key, verified offline) and ``jwks_url`` (the
    service's ``jwks.json``, fetched by Vault) must be given. ``groups`` maps a hub group to the
    Vault paths its members may read (e.g. ``{"fraud": ["database/creds/fraud-pii"]}``).
    """
    if bool(public_key_pem) == bool(jwks_url):
        raise ValueError("give exactly one of a public key (PEM) and a JWKS URL")
    for kind, value in (("mount", mount), ("role", role), ("kv mount", kv_mount)):
        _check_name(kind, value)
    groups = dict(groups or {})
    for group in groups:
        _check_name("group", group)

    mounts = client.sys.list_auth_methods()
    mounts = mounts.get("data", mounts)
    if f"{mount}/" not in mounts:
        client.sys.enable_auth_method("jwt", path=mount, description="JupyterHub-signed JWTs")
        mounts = client.sys.list_auth_methods()
        mounts = mounts.get("data", mounts)
    accessor = mounts[f"{mount}/"]["accessor"]
    config: dict[str, Any] = {"bound_issuer": issuer}
    if public_key_pem:
        config["jwt_validation_pubkeys"] = [public_key_pem]
    else:
        config["jwks_url"] = jwks_url
    client.write(f"auth/{mount}/config", **config)

    client.sys.create_or_update_policy(
        USER_POLICY, _USER_POLICY_HCL.format(kv=kv_mount, accessor=accessor)
    )
    client.sys.create_or_update_policy(HUB_POLICY, _HUB_POLICY_HCL)
    client.write(
        f"auth/{mount}/role/{role}",
        role_type="jwt",
        bound_audiences=[audience],
        user_claim="sub",
        groups_claim="groups",
        claim_mappings={"server_name": "server_name", "sub": "hub_user"},
        token_policies=[USER_POLICY],
        token_ttl=token_ttl,
        token_max_ttl=token_max_ttl,
        token_type="service",  # noqa: S106
        clock_skew_leeway=10,
        expiration_leeway=10,
        not_before_leeway=10,
    )

    configured_groups: dict[str, dict[str, Any]] = {}
    for group, paths in groups.items():
        hcl = _GROUP_POLICY_HCL.format(group=group, kv=kv_mount) + "".join(
            f'path "{p.strip().strip("/")}" {{ capabilities = ["read", "update"] }}\n'
            for p in paths
            if p.strip()
        )
        policy = group_policy_name(group)
        client.sys.create_or_update_policy(policy, hcl)
        existing = client.read(f"identity/group/name/{group}")
        if existing is None:
            created = client.write("identity/group", name=group, type="external", policies=[policy])
            group_id = created["data"]["id"]
        else:
            group_id = existing["data"]["id"]
            client.write(f"identity/group/name/{group}", type="external", policies=[policy])
        alias = existing["data"].get("alias") if existing else None
        if not alias:
            client.write(
                "identity/group-alias", name=group, mount_accessor=accessor, canonical_id=group_id
            )
        configured_groups[group] = {"policy": policy, "paths": list(paths), "id": group_id}

    return {
        "mount": mount,
        "mount_accessor": accessor,
        "role": role,
        "audience": audience,
        "issuer": issuer,
        "user_policy": USER_POLICY,
        "hub_policy": HUB_POLICY,
        "groups": configured_groups,
    }
