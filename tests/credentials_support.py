"""Helpers shared by the credential tests: a seeded warehouse database and Vault/PG probes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions
import psycopg
from psycopg.conninfo import conninfo_to_dict

from jupyter_prod_discovery.credentials.seeding import configure_database_engine


@dataclass
class Warehouse:
    dsn: str
    dbname: str
    prefix: str
    client: hvac.Client

    def roles(self) -> set[str]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (self.prefix + "\\_%",)
            ).fetchall()
        return {r[0] for r in rows}

    def leases(self, role: str = "analyst") -> list[str]:
        try:
            keys = self.client.sys.list_leases(f"database/creds/{role}")["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return []
        return [f"database/creds/{role}/{k}" for k in keys]

    def lease_alive(self, lease_id: str) -> bool:
        try:
            self.client.sys.read_lease(lease_id)
        except hvac.exceptions.InvalidRequest:
            return False
        return True

    def accessor_alive(self, accessor: str) -> bool:
        try:
            self.client.auth.token.lookup_accessor(accessor)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            return False
        return True

    def profiles(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "warehouse",
                "type": "database",
                "role": "analyst",
                "env": {
                    "PGUSER": "{username}",
                    "PGPASSWORD": "{password}",
                    "PGHOST": "127.0.0.1",
                    "PGPORT": "5432",
                    "PGDATABASE": self.dbname,
                },
            },
            {
                "name": "vault",
                "type": "token",
                "policies": ["default"],
                "ttl": "10m",
                "env": {"VAULT_ADDR": "{vault_addr}", "VAULT_TOKEN": "{token}"},
            },
        ]


def make_warehouse(openbao: Any, dsn: str) -> Warehouse:
    """A customers table in ``dsn``'s database and Vault's database engine pointed at it."""
    prefix = "pdt" + uuid.uuid4().hex[:6]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO customers VALUES (1, 'ada'), (2, 'grace'), (3, 'alan')")
    client = openbao.client()
    configure_database_engine(
        client, dsn, tables=["customers"], username_prefix=prefix, default_ttl="10m"
    )
    return Warehouse(
        dsn=dsn, dbname=str(conninfo_to_dict(dsn)["dbname"]), prefix=prefix, client=client
    )


def drop_leftover_roles(warehouse: Warehouse) -> None:
    """Teardown safety net so a failing test leaves no role behind in the shared PostgreSQL."""
    with psycopg.connect(warehouse.dsn, autocommit=True) as conn:
        for role in warehouse.roles():
            conn.execute(f'REVOKE ALL ON customers FROM "{role}"')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``check`` until it returns a truthy value (deadline only to avoid hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


async def run_code(serverapp: Any, kernel_id: str, code: str) -> str:
    """Execute ``code`` in a kernel of the server; return its stdout+stderr (and errors).

    A plain client on the kernel's connection file, as the kernel itself sees it: the kernel
    manager's own clients are guarded (guard/kernel_client.py) and would redact the very
    credentials these tests check were injected.
    """
    from jupyter_client.asynchronous import AsyncKernelClient

    km = serverapp.kernel_manager.get_kernel(kernel_id)
    client = AsyncKernelClient()
    client.load_connection_info(km.get_connection_info())
    # No heartbeat: without a kernel manager one missed 1 s heartbeat (a loaded machine) makes
    # wait_for_ready report the kernel dead; readiness is its kernel_info reply.
    client.start_channels(hb=False)
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"ERROR {msg['content']['ename']}: {msg['content']['evalue']}")

    try:
        await client.wait_for_ready(timeout=60)
        await client.execute_interactive(code, output_hook=hook, timeout=60)
    finally:
        client.stop_channels()
    return "".join(out)


QUERY = """\
import os, psycopg
with psycopg.connect("", connect_timeout=5) as c:
    n = c.execute("select count(*) from customers").fetchone()[0]
    print(n, c.info.user, os.environ.get("VAULT_TOKEN", "")[:4])
"""


class ListRecorder:
    """Wraps the app's audit recorder and also keeps the events in memory for assertions."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.last_ticket: Any = None

    def record(self, kind: str, data: dict[str, Any], *, user: Any = None) -> None:
        self.events.append((kind, dict(data)))
        self.last_ticket = self.inner.record(kind, data, user=user)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def actions(self, action: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == "credential" and d.get("action") == action]
