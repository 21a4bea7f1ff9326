"""The Vault policy of the trusted service: the paths it uses, nothing else.

Why generated from the profiles: least privilege is the list of Vault paths the configured
credential profiles read, plus lease and token bookkeeping. Users never hold this token (only the
service's process does), so the bookkeeping paths, which act on any lease or accessor, are not a
way for one user to reach another's leases: a user's kernel holds a database login or a child
token with the profile's own policies, neither of which may renew or revoke anything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..credentials.profiles import Profile

__all__ = ["KERNEL_POLICY", "install_policies", "kernel_policy", "service_policy"]

#: Given to every child token the service issues to a kernel, instead of Vault's ``default``
#: policy, which lets any token look up and renew *any* lease whose id it knows (lease ids are in
#: the audit trail). With this policy a kernel's token manages itself and nothing else.
KERNEL_POLICY = "prod-discovery-kernel"

_BOOKKEEPING = {
    "sys/leases/renew": ["update"],
    "sys/leases/revoke": ["update"],
    "auth/token/renew-accessor": ["update"],
    "auth/token/revoke-accessor": ["update"],
    "auth/token/lookup-self": ["read"],
    "auth/token/renew-self": ["update"],
}


def kernel_policy() -> str:
    """HCL of :data:`KERNEL_POLICY`: the token may look itself up, renew and revoke itself."""
    return (
        'path "auth/token/lookup-self" {\n  capabilities = ["read"]\n}\n\n'
        'path "auth/token/renew-self" {\n  capabilities = ["update"]\n}\n\n'
        'path "auth/token/revoke-self" {\n  capabilities = ["update"]\n}\n'
    )


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


def install_policies(
    client: Any, profiles: Iterable[Profile], name: str = "prod-discovery-service"
) -> list[str]:
    """Write the service's policy and :data:`KERNEL_POLICY` with ``client`` (an operator's hvac
    client); returns the policies the service's token must carry (its own, the kernel policy and
    the token profiles' policies, since a child token's policies must be its parent's)."""
    profiles = list(profiles)
    client.sys.create_or_update_policy(name, service_policy(profiles))
    client.sys.create_or_update_policy(KERNEL_POLICY, kernel_policy())
    extra = {p for prof in profiles for p in prof.policies} | {KERNEL_POLICY}
    return [name, *sorted(extra)]
