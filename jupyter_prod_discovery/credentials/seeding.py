"""Configure OpenBao/Vault's database secrets engine against a PostgreSQL database.

Shared by the tests and the demo: one call mounts the engine, registers the connection and
creates a role whose credentials may read the given tables. The revocation statements terminate
the role's sessions before dropping it: without ``pg_terminate_backend`` open sessions outlive the
revocation.

Privileges are granted once to a NOLOGIN *group* role, and each dynamic user is created ``IN
ROLE`` that group. Granting to every new user instead makes concurrent kernel starts fail:
PostgreSQL updates the table's ACL tuple in place, and two GRANTs on one table at the same time
abort with "tuple concurrently updated".
"""

from __future__ import annotations

from collections.abc import Sequence

import hvac
import hvac.exceptions
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["configure_database_engine", "ensure_group_role", "group_role_name"]

# Serializes group-role creation and grants between concurrent seeders of one cluster.
_SEED_LOCK = 20261122


def group_role_name(dbname: str, role: str) -> str:
    """The NOLOGIN role holding the privileges of Vault role ``role`` in database ``dbname``."""
    return f"grp_{dbname}_{role}"[:63]


def ensure_group_role(dsn: str, group: str, grants: Sequence[str]) -> None:
    """Create the NOLOGIN role ``group`` unless present and run ``grants`` (SQL) in ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SEED_LOCK,))
        try:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
            for statement in grants:
                conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SEED_LOCK,))


def configure_database_engine(
    client: hvac.Client,
    dsn: str,
    *,
    role: str = "analyst",
    tables: Sequence[str] = (),
    mount: str = "database",
    connection: str = "prod",
    username_prefix: str = "pd",
    default_ttl: str = "1h",
    max_ttl: str = "24h",
) -> None:
    """Mount the database engine (if needed), connect it to ``dsn`` and create ``role``.

    ``dsn`` is a superuser libpq URI; its password, if any, is handed to Vault as the
    connection's root credentials and is never part of the connection URL. Role names start
    with ``username_prefix`` so that a test can tell its own roles apart in ``pg_roles``.
    """
    try:
        client.sys.enable_secrets_engine("database", path=mount)
    except hvac.exceptions.InvalidRequest as exc:
        if "already in use" not in " ".join(getattr(exc, "errors", None) or []):
            raise
    params = conninfo_to_dict(dsn)
    username = str(params.pop("user", "postgres"))
    password = str(params.pop("password", "") or "")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    dbname = params.get("dbname", "postgres")
    if password:
        url = (
            f"postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{port}/{dbname}?sslmode=disable"
        )
    else:
        url = f"postgresql://{username}@{host}:{port}/{dbname}?sslmode=disable"
    client.secrets.database.configure(
        name=connection,
        plugin_name="postgresql-database-plugin",
        connection_url=url,
        username=username if password else None,
        password=password or None,
        allowed_roles=["*"],
        username_template=(
            '{{ printf "' + username_prefix + '_%s_%s" (.RoleName) (random 12) | lowercase }}'
        ),
        mount_point=mount,
    )
    group = group_role_name(str(dbname), role)
    ensure_group_role(dsn, group, [f'GRANT SELECT ON {t} TO "{group}"' for t in tables])
    client.secrets.database.create_role(
        name=role,
        db_name=connection,
        creation_statements=[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{group}\";",
        ],
        revocation_statements=[
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';",
            'DROP ROLE IF EXISTS "{{name}}";',
        ],
        default_ttl=default_ttl,
        max_ttl=max_ttl,
        mount_point=mount,
    )


def make_dsn(dsn: str, **overrides: str) -> str:
    """``dsn`` with some parameters replaced (e.g. user, dbname)."""
    params = conninfo_to_dict(dsn)
    params.update(overrides)
    return make_conninfo(**params)  # type: ignore[arg-type]
