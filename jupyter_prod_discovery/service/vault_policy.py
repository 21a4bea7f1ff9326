"""The Vault policy of the trusted service: the paths it uses, nothing else.

Why generated from the profiles: least privilege is the list of Vault paths the configured
credential profiles read, plus lease and token bookkeeping. Users never hold this token (only the
service's process does), so the bookkeeping paths, which act on any lease or accessor, are not a
way for one user to reach another's leases: a user's kernel holds a database login or a child
token with the profile's own policies, neither of which may renew or revoke anything else.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..credentials.profiles import Profile

__all__ = ["service_policy"]

_BOOKKEEPING = {
    "sys/leases/renew": ["update"],
    "sys/leases/revoke": ["update"],
    "auth/token/renew-accessor": ["update"],
    "auth/token/revoke-accessor": ["update"],
    "auth/token/lookup-self": ["read"],
    "auth/token/renew-self": ["update"],
}


def service_policy(profiles: Iterable[Profile]) -> str:
    """HCL of a policy allowing exactly what ``profiles`` need. Child tokens (type ``token``)
    can only carry policies the service's own token holds: give it those policies too."""
    paths: dict[str, list[str]] = {}
    for profile in profiles:
        if profile.type == "database":
            paths[f"{profile.mount}/creds/{profile.role}"] = ["read"]
        elif profile.type == "kv":
            paths[f"{profile.mount}/data/{profile.path}"] = ["read"]
        elif profile.type == "read":
            paths[profile.path] = ["read"]
        elif profile.type == "token":
            paths["auth/token/create"] = ["create", "update"]
    paths.update(_BOOKKEEPING)
    blocks = []
    for path, caps in paths.items():
        quoted = ", ".join(f'"{c}"' for c in caps)
        blocks.append(f'path "{path}" {{\n  capabilities = [{quoted}]\n}}\n')
    return "\n".join(blocks)
