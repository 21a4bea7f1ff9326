"""Helpers shared by the audit tests (not fixtures: each test module declares its own)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jupyter_prod_discovery.audit.sinks.postgres import provision
from jupyter_prod_discovery.audit.trail import AuditTrail

KEY = "test-audit-key-0123456789"


@contextmanager
def writer_role(database_dsn: str) -> Iterator[str]:
    """Provision the audit tables in ``database_dsn`` and yield the DSN of a writer role."""
    role = "pd_audit_writer_" + uuid.uuid4().hex[:8]
    provision(database_dsn, role, "writer-password")
    params = conninfo_to_dict(database_dsn)
    params.update(user=role, password="writer-password")
    try:
        yield make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(database_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def closed_port_dsn(dsn: str) -> str:
    """The same DSN pointed at a loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(port))
    return make_conninfo(**params)  # type: ignore[arg-type]


def trail_of(serverapp: Any) -> AuditTrail:
    """The server's trail, its writer started (pytest-jupyter never runs the start hooks)."""
    trail = serverapp.web_app.settings["prod_discovery"].audit
    assert isinstance(trail, AuditTrail)
    trail.start()
    return trail


def events(trail: AuditTrail, kind: str | None = None) -> list[dict[str, Any]]:
    """Every record the trail's first sink holds (of ``kind``), once all are written."""
    assert trail.flush()
    recs = [json.loads(x) for x in trail.sinks[0].read_lines()]
    return [r for r in recs if kind is None or r["kind"] == kind]


def event_data(trail: AuditTrail, kind: str) -> list[dict[str, Any]]:
    """The ``data`` of every record of ``kind``."""
    return [r["data"] for r in events(trail, kind)]
