"""Extension side config: the demo's seeded OpenBao and credential profiles.

With this hook every kernel of the extension server gets what a demo kernel gets (a child token,
the KV secret and, when PostgreSQL is reachable, a database login), so ``kernel_start`` measures
the credential broker too. ``--no-openbao`` turns it off.
"""

from __future__ import annotations

from typing import Any

from benchmarks.core import BenchEnv, server_config


@server_config
def demo_credential_profiles(env: BenchEnv) -> dict[str, dict[str, Any]]:
    if env.openbao is None:
        return {}
    from jupyter_prod_discovery.demo.runner import _broker_has_profiles
    from jupyter_prod_discovery.demo.seed import (
        drop_leftover_roles,
        revoke_database_leases,
        seed_vault,
    )

    bao, dsn = env.openbao, env.postgres_dsn
    seed = seed_vault(bao.client(), dsn=dsn)
    if seed.role_prefix and dsn:
        prefix = seed.role_prefix

        def cleanup() -> None:
            revoke_database_leases(bao.client())
            drop_leftover_roles(dsn, prefix)

        env.cleanups.append(cleanup)
    if not _broker_has_profiles():
        return {}
    return {"CredentialBroker": {"profiles": seed.profiles()}}
