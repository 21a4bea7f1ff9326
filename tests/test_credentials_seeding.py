"""The database engine setup shared by the demo and the tests, on real OpenBao and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jupyter_prod_discovery.credentials.seeding import configure_database_engine


def test_issue_database_creds_concurrently(openbao: Any, postgres_database: str) -> None:
    """Dynamic users join a group role: concurrent issues never GRANT on one table at once."""
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE sales (id int)")
        conn.execute("INSERT INTO sales VALUES (1), (2)")
    root = openbao.client()
    # Two connections, as a Vault cluster serving several roles has: their statements run in
    # parallel, which is where per-user GRANTs on one table collide.
    for n in range(4):
        configure_database_engine(
            root,
            postgres_database,
            role=f"analyst{n}",
            connection=f"prod{n}",
            tables=["sales"],
            username_prefix="pdseed",
        )

    def issue(i: int) -> dict[str, Any]:
        return openbao.client().read(f"database/creds/analyst{i % 4}")

    with ThreadPoolExecutor(max_workers=12) as pool:
        issued = list(pool.map(issue, range(24)))
    users = {r["data"]["username"] for r in issued}
    assert len(users) == 24
    params = conninfo_to_dict(postgres_database)
    first = issued[0]["data"]
    params.update(user=first["username"], password=first["password"])
    with psycopg.connect(make_conninfo(**params)) as conn:  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM sales").fetchone() == (2,)
    root.sys.revoke_prefix("database/creds/")
    with psycopg.connect(postgres_database) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (sorted(users),)
        ).fetchone()
    assert left == (0,)
