"""Seed an OpenBao/Vault with what the demo and the tests need: policies, a KV secret and,
when PostgreSQL is reachable, a sample "production" database behind the database secrets engine.

Why here and reusable: the demo, the integration tests of the credential broker and the
benchmarks all need the same realistic setup, and a setup written three times drifts.
``seed_vault(client, dsn=...)`` is idempotent on the PostgreSQL side (the sample database and its
table are created once and reused) and fresh on the Vault side (a dev server is in memory).

The customers table holds realistic but synthetic PII from a seeded generator: names, emails,
phone numbers and SSNs in valid format (area 001-899 without 666, group and serial non-zero,
never the famous 078-05-1120 or 123-45-6789 that PII detectors reject by design), so the PII guard
has something real to find.

Database credentials: the ``analyst`` role of the database engine creates a PostgreSQL login role
per lease, named from a per-seed prefix (``SeedResult.role_prefix``, ``v-pd<tag>-...``) so that
one demo's roles can be told from another's; its revocation statements terminate the role's open
sessions first (otherwise they survive revocation) and then drop the role.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hvac

from ..credentials.seeding import ensure_group_role, group_role_name

__all__ = [
    "DEMO_DATABASE",
    "SeedResult",
    "drop_leftover_roles",
    "generate_customers",
    "postgres_reachable",
    "revoke_database_leases",
    "seed_database",
    "seed_vault",
]

DEMO_DATABASE = "prod_discovery_demo"
DATABASE_MOUNT = "database"
DATABASE_ROLE = "analyst"
KV_MOUNT = "secret"
KV_PATH = "demo/warehouse"
ANALYST_POLICY = "prod-discovery-analyst"
EXPORT_KEY_MOUNT = "transit"
EXPORT_KEY_NAME = "prod-discovery-export"


@dataclass
class SeedResult:
    """What was seeded, for the demo's config, the tests and the cleanup (holds no secret)."""

    policies: list[str]
    kv_mount: str
    kv_path: str
    kv_keys: list[str]
    database: str | None = None  # sample database name, when PostgreSQL was reachable
    database_mount: str | None = None
    database_role: str | None = None
    role_prefix: str | None = None  # PostgreSQL login roles of this seed start with it
    created_database: bool = False
    customers: int = 0
    notes: list[str] = field(default_factory=list)
    #: The service's export signing key: an ed25519 key in OpenBao's transit engine (it never
    #: leaves OpenBao) and its public half, which is all a verifier needs.
    export_key_mount: str = EXPORT_KEY_MOUNT
    export_key_name: str = EXPORT_KEY_NAME
    export_public_key_pem: str = ""

    @property
    def has_database(self) -> bool:
        return self.database is not None

    def profiles(self) -> list[dict[str, Any]]:
        """Credential profiles (``c.CredentialBroker.profiles``) for what was seeded."""
        profiles: list[dict[str, Any]] = [
            {
                "name": "vault-token",
                "type": "token",
                "description": "a short-lived child token with the analyst policy",
                "policies": [ANALYST_POLICY],
                "ttl": "30m",
                "env": {"VAULT_TOKEN": "{token}", "VAULT_ADDR": "{vault_addr}"},
            },
            {
                "name": "warehouse-api",
                "type": "kv",
                "description": "the sample warehouse API key from KV v2",
                "mount": self.kv_mount,
                "path": self.kv_path,
                "env": {"WAREHOUSE_API_KEY": "{api_key}", "WAREHOUSE_URL": "{endpoint}"},
            },
        ]
        if self.database:
            profiles.append(
                {
                    "name": "prod-db",
                    "type": "database",
                    "description": "a per-kernel PostgreSQL login with SELECT on the sample data",
                    "mount": self.database_mount,
                    "role": self.database_role,
                    "env": {
                        "PGUSER": "{username}",
                        "PGPASSWORD": "{password}",
                        # Static values: libpq (psycopg.connect("")) needs nothing else.
                        "PGHOST": _host_port(self._dsn).rsplit(":", 1)[0],
                        "PGPORT": _host_port(self._dsn).rsplit(":", 1)[1],
                        "PGDATABASE": self.database,
                        "PROD_DB_URL": "postgresql://{username}:{password}@"
                        + _host_port(self._dsn)
                        + f"/{self.database}",
                    },
                }
            )
        return profiles

    # Kept out of repr: a DSN may hold a password.
    _dsn: str = field(default="", repr=False)


# ---------------------------------------------------------------------------------------------
# Synthetic PII
# ---------------------------------------------------------------------------------------------

_FIRST = (  # noqa: SIM905 - a readable word list
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Christopher Karen Daniel Lisa Matthew Nancy "
    "Anthony Betty Mark Sandra Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua "
    "Michelle Kenneth Carol Kevin Amanda Brian Melissa Timothy Deborah Ronald Stephanie Jason "
    "Rebecca Priya Wei Fatima Mateo Aisha Hiroshi Sofia Olumide Ingrid Rahul"
).split()
_LAST = (  # noqa: SIM905 - a readable word list
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Okafor Novak "
    "Kowalski Tanaka Patel Lindqvist Haddad"
).split()
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "proton.me", "hotmail.com")
_CITIES = (
    ("Austin", "TX", "512"),
    ("Denver", "CO", "303"),
    ("Seattle", "WA", "206"),
    ("Boston", "MA", "617"),
    ("Chicago", "IL", "312"),
    ("Atlanta", "GA", "404"),
    ("Portland", "OR", "503"),
    ("Phoenix", "AZ", "602"),
    ("Columbus", "OH", "614"),
    ("Raleigh", "NC", "919"),
)
_FORBIDDEN_SSNS = {"078-05-1120", "123-45-6789", "219-09-9999"}


def _ssn(rng: random.Random) -> str:
    """An SSN of valid structure: area 001-899 except 666, group 01-99, serial 0001-9999."""
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        ssn = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        if ssn not in _FORBIDDEN_SSNS:
            return ssn


def generate_customers(n: int = 200, seed: int = 20261121) -> Iterator[dict[str, Any]]:
    """``n`` synthetic customers with realistic PII, the same for the same ``seed``."""
    rng = random.Random(seed)
    used_emails: set[str] = set()
    for i in range(1, n + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, state, area_code = rng.choice(_CITIES)
        base = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{last[:3]}"]).lower()
        email = f"{base}@{rng.choice(_DOMAINS)}"
        while email in used_emails:
            email = f"{base}{rng.randint(2, 99)}@{rng.choice(_DOMAINS)}"
        used_emails.add(email)
        phone = f"({area_code}) {rng.randint(201, 989)}-{rng.randint(1000, 9999)}"
        born = _dt.date(1950, 1, 1) + _dt.timedelta(days=rng.randint(0, 365 * 55))
        signup = _dt.date(2019, 1, 1) + _dt.timedelta(days=rng.randint(0, 365 * 7))
        yield {
            "id": i,
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": phone,
            "ssn": _ssn(rng),
            "date_of_birth": born,
            "city": city,
            "state": state,
            "signup_date": signup,
            "lifetime_value": round(rng.lognormvariate(6, 1), 2),
        }


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def _host_port(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return f"{params.get('host') or '127.0.0.1'}:{params.get('port') or 5432}"


def _with_dbname(dsn: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def postgres_reachable(dsn: str, timeout: int = 3) -> bool:
    """Whether a superuser session can be opened with ``dsn`` (no exception leaks)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=timeout) as conn:
            conn.execute("select 1")
    except (psycopg.Error, OSError):
        return False
    return True


def seed_database(dsn: str, database: str = DEMO_DATABASE, rows: int = 200) -> tuple[bool, int]:
    """Create ``database`` with its ``customers`` table unless present; return (created, rows).

    Reused when it exists: several demos (or a demo and the tests) may share one PostgreSQL,
    and their Vault roles only read it.
    """
    import psycopg
    from psycopg import sql

    created = False
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                created = True
            except psycopg.errors.DuplicateDatabase:
                pass  # a concurrent seeder won the race
    with psycopg.connect(_with_dbname(dsn, database), autocommit=False) as conn:
        # One seeder at a time fills the table, even when several start together.
        conn.execute("select pg_advisory_xact_lock(20261121)")
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS customers (
                id integer PRIMARY KEY,
                first_name text NOT NULL,
                last_name text NOT NULL,
                email text NOT NULL UNIQUE,
                phone text NOT NULL,
                ssn text NOT NULL,
                date_of_birth date NOT NULL,
                city text NOT NULL,
                state text NOT NULL,
                signup_date date NOT NULL,
                lifetime_value numeric(12, 2) NOT NULL
            )
            """
        )
        count = conn.execute("select count(*) from customers").fetchone()
        if not count or count[0] == 0:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO customers VALUES (%(id)s, %(first_name)s, %(last_name)s, "
                    "%(email)s, %(phone)s, %(ssn)s, %(date_of_birth)s, %(city)s, %(state)s, "
                    "%(signup_date)s, %(lifetime_value)s)",
                    list(generate_customers(rows)),
                )
        n = conn.execute("select count(*) from customers").fetchone()
        conn.commit()
    return created, int(n[0]) if n else 0


def drop_leftover_roles(dsn: str, prefix: str) -> list[str]:
    """Drop PostgreSQL roles named ``prefix...`` (after terminating their sessions).

    The last line of defence when Vault could not revoke (killed server, lost connection): the
    demo must leave no login roles behind. Returns the names dropped.
    """
    import psycopg
    from psycopg import sql

    if not prefix.startswith("v-") or len(prefix) < 5:
        raise ValueError(f"refusing to drop roles by the broad prefix {prefix!r}")
    dropped: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select rolname from pg_roles where starts_with(rolname, %s)", (prefix,)
        ).fetchall()
        dbs = [
            r[0]
            for r in conn.execute(
                "select datname from pg_database where datallowconn and not datistemplate"
            ).fetchall()
        ]
        for (name,) in rows:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                (name,),
            )
            for db in dbs:  # privileges are per database: drop the role's grants everywhere
                try:
                    with psycopg.connect(_with_dbname(dsn, db), autocommit=True) as dconn:
                        dconn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                except psycopg.Error:
                    continue
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


# ---------------------------------------------------------------------------------------------
# Vault
# ---------------------------------------------------------------------------------------------


def _analyst_policy(kv_mount: str, db_mount: str, db_role: str) -> str:
    return f"""
# What a data scientist's kernel may read: the sample KV secret and a database login.
path "{kv_mount}/data/demo/*" {{
  capabilities = ["read"]
}}
path "{kv_mount}/metadata/demo/*" {{
  capabilities = ["read", "list"]
}}
path "{db_mount}/creds/{db_role}" {{
  capabilities = ["read"]
}}
"""


def _ensure_kv2(client: hvac.Client, mount: str) -> None:
    mounts = client.sys.list_mounted_secrets_engines()
    data = mounts.get("data", mounts)
    entry = data.get(f"{mount}/")
    if entry is None:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    elif (entry.get("options") or {}).get("version") != "2":
        raise RuntimeError(f"the {mount}/ mount exists but is not KV version 2")


def seed_export_key(client: hvac.Client, mount: str, name: str) -> str:
    """The service's export signing key (transit, ed25519, not exportable); its public PEM.

    Why transit: the key never leaves OpenBao, so neither the service's disk nor its memory holds
    it, and verifiers need only the public key, which is published as PEM.
    """
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    mounts = client.sys.list_mounted_secrets_engines()
    if f"{mount}/" not in mounts.get("data", mounts):
        client.sys.enable_secrets_engine("transit", path=mount)
    try:
        key = client.secrets.transit.read_key(name=name, mount_point=mount)
    except hvac.exceptions.InvalidPath:
        client.secrets.transit.create_key(name=name, key_type="ed25519", mount_point=mount)
        key = client.secrets.transit.read_key(name=name, mount_point=mount)
    versions = key["data"]["keys"]
    raw = base64.b64decode(versions[str(key["data"]["latest_version"])]["public_key"])
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def export_signing_policy(mount: str, name: str) -> str:
    """HCL letting the service sign (and verify) with the export key, nothing else of transit.

    ``read`` on the key itself: TransitSigner reads its type, latest version and public key
    (never the private key: the demo's key is not exportable) to name and pin what it signs with.
    """
    return (
        f'path "{mount}/sign/{name}" {{\n  capabilities = ["update"]\n}}\n\n'
        f'path "{mount}/verify/{name}" {{\n  capabilities = ["update"]\n}}\n\n'
        f'path "{mount}/keys/{name}" {{\n  capabilities = ["read"]\n}}\n'
    )


def seed_vault(
    client: hvac.Client,
    *,
    dsn: str | None,
    database: str = DEMO_DATABASE,
    rows: int = 200,
    default_ttl: str = "10m",
    max_ttl: str = "1h",
) -> SeedResult:
    """Seed policies, the KV secret and (when ``dsn`` is reachable) the database engine.

    Parameters
    ----------
    client
        An hvac client with a root (or sufficiently privileged) token, e.g. ``DevServer.client()``.
    dsn
        PostgreSQL superuser DSN, or None. When unreachable, the database part is skipped and
        ``SeedResult.notes`` says why: the demo then runs with KV and token credentials only.
    database, rows
        Name of the sample database and the number of customers generated into it.
    default_ttl, max_ttl
        Lease TTLs of the ``analyst`` database role: short, because a lease that outlives a
        killed server must expire on its own.
    """
    _ensure_kv2(client, KV_MOUNT)
    secret = {
        "api_key": "wh_" + os.urandom(16).hex(),
        "endpoint": "https://warehouse.prod.example.internal/v2",
    }
    client.secrets.kv.v2.create_or_update_secret(path=KV_PATH, secret=secret, mount_point=KV_MOUNT)
    client.sys.create_or_update_policy(
        name=ANALYST_POLICY, policy=_analyst_policy(KV_MOUNT, DATABASE_MOUNT, DATABASE_ROLE)
    )
    result = SeedResult(
        policies=[ANALYST_POLICY],
        kv_mount=KV_MOUNT,
        kv_path=KV_PATH,
        kv_keys=sorted(secret),
    )
    result.export_public_key_pem = seed_export_key(client, EXPORT_KEY_MOUNT, EXPORT_KEY_NAME)
    if dsn is None:
        result.notes.append("no PostgreSQL DSN given: database credentials are not available")
        return result
    if not postgres_reachable(dsn):
        result.notes.append(
            f"PostgreSQL at {_host_port(dsn)} is unreachable: database credentials are not "
            "available (KV and token credentials are)"
        )
        return result

    result.created_database, result.customers = seed_database(dsn, database, rows)
    tag = os.urandom(3).hex()
    prefix = f"v-pd{tag}-"
    mounts = client.sys.list_mounted_secrets_engines()
    if f"{DATABASE_MOUNT}/" not in mounts.get("data", mounts):
        client.sys.enable_secrets_engine("database", path=DATABASE_MOUNT)
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    user = str(params.get("user") or "postgres")
    password = str(params.get("password") or "")
    host_port = _host_port(dsn)
    config: dict[str, Any] = {
        "plugin_name": "postgresql-database-plugin",
        "allowed_roles": [DATABASE_ROLE],
        "verify_connection": True,
        # Role names carry this seed's prefix: cleanup can find exactly its own roles.
        "username_template": prefix + "{{.RoleName | truncate 8}}-{{random 10}}-{{unix_time}}",
    }
    if password:
        config["connection_url"] = (
            f"postgresql://{{{{username}}}}:{{{{password}}}}@{host_port}/{database}?sslmode=disable"
        )
        config["username"] = user
        config["password"] = password
    else:  # trust authentication (as on the project's machines): no password to template
        config["connection_url"] = f"postgresql://{user}@{host_port}/{database}?sslmode=disable"
    client.write(f"{DATABASE_MOUNT}/config/{database}", **config)
    # Privileges live on a NOLOGIN group role; each dynamic user only joins it, so concurrent
    # kernel starts never GRANT on the same table at once ("tuple concurrently updated").
    # The group stays after the demo, like the sample database: it cannot log in.
    group = group_role_name(database, DATABASE_ROLE)
    ensure_group_role(
        _with_dbname(dsn, database),
        group,
        [
            f'GRANT CONNECT ON DATABASE "{database}" TO "{group}"',
            f'GRANT USAGE ON SCHEMA public TO "{group}"',
            f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{group}"',
        ],
    )
    creation = [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{group}\";",
    ]
    revocation = [
        # Open sessions survive DROP ROLE's preconditions and VALID UNTIL: end them first.
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';",
        'DROP ROLE IF EXISTS "{{name}}";',
    ]
    client.write(
        f"{DATABASE_MOUNT}/roles/{DATABASE_ROLE}",
        db_name=database,
        creation_statements=creation,
        revocation_statements=revocation,
        default_ttl=default_ttl,
        max_ttl=max_ttl,
    )
    result.database = database
    result.database_mount = DATABASE_MOUNT
    result.database_role = DATABASE_ROLE
    result.role_prefix = prefix
    result._dsn = dsn
    return result


def revoke_database_leases(client: hvac.Client, mount: str = DATABASE_MOUNT) -> None:
    """Revoke every lease under the database mount (``sys/leases/revoke-prefix``), synchronously."""
    client.sys.revoke_prefix(f"{mount}/creds/")
