"""The PostgreSQL sink: an append-only table that the writer role may insert into but never alter.

Provision it once with an administrator connection (``provision`` or
``jupyter prod-discovery audit init-db``): the tables are owned by the administrator, a trigger
refuses UPDATE, DELETE and TRUNCATE for everyone, and the writer role gets INSERT and SELECT
only. Checkpoints go to ``<table>_checkpoints`` in the same database, which makes truncating the
JSONL file detectable when both sinks are on.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from traitlets import Bool, Int, Unicode, default, validate
from traitlets import TraitError as _TraitError

from .base import AuditSink, SinkUnavailable

__all__ = ["PostgresSink", "provision"]


def _ddl(table: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            seq bigint PRIMARY KEY, ts timestamptz, kind text, username text,
            kernel_id text, path text, record text NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (ts)",
        f"""CREATE TABLE IF NOT EXISTS {table}_checkpoints (
            seq bigint NOT NULL, head text NOT NULL, mac text NOT NULL,
            ts timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN
              RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP;
            END $$""",
        f"""CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
        f"""CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
        f"""CREATE OR REPLACE TRIGGER {table}_cp_append_only BEFORE UPDATE OR DELETE
            ON {table}_checkpoints FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
    ]


def _check_ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise ValueError(f"invalid SQL identifier {name!r}")
    return name


def provision(
    admin_dsn: str, role: str, password: str, table: str = "prod_discovery_audit"
) -> None:
    """Create the tables (owned by the admin) and a writer role with INSERT and SELECT only."""
    import psycopg
    from psycopg import sql

    table, role = _check_ident(table), _check_ident(role)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for stmt in _ddl(table):
            conn.execute(stmt)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        for t in (table, f"{table}_checkpoints"):
            conn.execute(f"REVOKE ALL ON {t} FROM {role}")
            conn.execute(f"GRANT INSERT, SELECT ON {t} TO {role}")


class _Conflict(Exception):
    def __init__(self, seqs: list[int]) -> None:
        super().__init__(seqs)
        self.seqs = seqs


class PostgresSink(AuditSink):
    """Records in an append-only PostgreSQL table (one row per record, the line kept verbatim)."""

    dsn = Unicode(
        config=True,
        help="""libpq connection string of the writer role (INSERT and SELECT only). Default:
        the PROD_DISCOVERY_AUDIT_DSN environment variable, else ''. Never logged.""",
    )
    table = Unicode(
        "prod_discovery_audit",
        config=True,
        help="""Table of the records; checkpoints go to <table>_checkpoints. Default
        'prod_discovery_audit'. Letters, digits and underscores only.""",
    )
    create_tables = Bool(
        True,
        config=True,
        help="""Create the tables when missing, with the sink's own role (convenient for
        development, but then the writer owns the table). Default True. In production
        provision with 'jupyter prod-discovery audit init-db' and set False.""",
    )
    connect_timeout = Int(
        3,
        config=True,
        help="Seconds to wait for a connection before spooling locally. Default 3.",
    )

    @default("dsn")
    def _dsn_default(self) -> str:
        return os.environ.get("PROD_DISCOVERY_AUDIT_DSN", "")

    @validate("table")
    def _check_table(self, proposal: Any) -> str:
        try:
            return _check_ident(proposal["value"])
        except ValueError as exc:
            raise _TraitError(f"PostgresSink.table: {exc}") from None

    _conn: Any = None

    @property
    def name(self) -> str:
        return f"postgres-{self.table}"

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        if not self.dsn:
            raise SinkUnavailable("PostgresSink.dsn is not set")
        try:
            self._conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            raise SinkUnavailable(f"PostgreSQL unreachable: {exc.__class__.__name__}") from None
        return self._conn

    def open(self) -> None:
        import psycopg

        conn = self._connect()
        if not self.create_tables:
            return
        try:
            with conn.transaction():
                found = conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0]
                if found is None:
                    for stmt in _ddl(self.table):
                        conn.execute(stmt)
        except psycopg.Error as exc:
            self.close()
            raise SinkUnavailable(f"cannot create the audit tables: {exc}") from None

    def write(self, lines: list[str]) -> None:
        import psycopg

        rows = []
        for line in lines:
            rec = json.loads(line)
            data = rec.get("data") or {}
            user = data.get("user") or {}
            rows.append(
                (
                    rec["seq"],
                    rec.get("ts"),
                    rec.get("kind"),
                    user.get("username"),
                    data.get("kernel_id"),
                    data.get("path"),
                    line,
                )
            )
        try:
            conn = self._connect()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {self.table} (seq, ts, kind, username, kernel_id, path, record)"  # noqa: S608 - validated identifier
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (seq) DO NOTHING",
                    rows,
                )
                # A seq already stored is fine only as a replay of the same record (after a
                # partial failure). Anything else is another writer on this table (two servers
                # configured with one table): an error that keeps the batch spooled and is
                # retried, never a record silently dropped.
                cur.execute(
                    f"SELECT seq FROM {self.table} WHERE seq = ANY(%s) AND record <> ALL(%s)",  # noqa: S608 - validated identifier
                    ([r[0] for r in rows], [r[6] for r in rows]),
                )
                clashes = [row[0] for row in cur.fetchall()]
                if clashes:
                    raise _Conflict(clashes)
        except _Conflict as exc:
            self.log.error(
                "ALERT audit table %s holds other records at seq %s: another writer shares it "
                "(give every server its own table, or use the trusted service); the batch stays "
                "spooled and is retried",
                self.table,
                exc.seqs[:5],
            )
            raise SinkUnavailable(
                f"conflict: {len(exc.seqs)} record(s) of another writer at the same seq"
            ) from None
        except psycopg.Error as exc:
            self.close()
            raise SinkUnavailable(f"PostgreSQL write failed: {exc.__class__.__name__}") from None

    def read_lines(self) -> Iterator[str]:
        conn = self._connect()
        with conn.transaction():
            for (line,) in conn.execute(f"SELECT record FROM {self.table} ORDER BY seq"):  # noqa: S608 - validated identifier
                yield line

    def tail(self) -> dict[str, Any] | None:
        conn = self._connect()
        with conn.transaction():
            row = conn.execute(
                f"SELECT record FROM {self.table} ORDER BY seq DESC LIMIT 1"  # noqa: S608 - validated identifier
            ).fetchone()
        return json.loads(row[0]) if row else None

    def write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import psycopg

        try:
            conn = self._connect()
            with conn.transaction():
                conn.execute(
                    f"INSERT INTO {self.table}_checkpoints (seq, head, mac) VALUES (%s, %s, %s)",  # noqa: S608 - validated identifier
                    (checkpoint["seq"], checkpoint["head"], checkpoint["mac"]),
                )
        except psycopg.Error as exc:
            self.close()
            raise SinkUnavailable(f"checkpoint write failed: {exc.__class__.__name__}") from None

    def read_checkpoints(self) -> list[dict[str, Any]]:
        conn = self._connect()
        with conn.transaction():
            rows = conn.execute(
                f"SELECT seq, head, mac FROM {self.table}_checkpoints ORDER BY seq"  # noqa: S608 - validated identifier
            ).fetchall()
        return [{"seq": s, "head": h, "mac": m} for s, h, m in rows]

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._conn.close()
            self._conn = None
