"""Pytest fixtures for this project and for anyone deploying it: real OpenBao, real PostgreSQL.

Nothing here mocks Vault or PostgreSQL. ``openbao`` starts a real ``bao server -dev`` on a free even
loopback port (``-dev-no-store-token``) and stops it after the test. ``postgres_dsn`` connects to
the DSN in ``PROD_DISCOVERY_TEST_DSN`` (default postgresql://postgres@127.0.0.1:5432/postgres): when
it is unreachable the test is skipped on a workstation, but under ``CI=true`` it fails, so a
CI run can never go green by skipping the database.

``prod_discovery_server_config`` is the jupyter-server config with the extension enabled and
unauthenticated access refused; a conftest uses it to override pytest-jupyter's
``jp_server_config``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .demo.openbao import DevServer

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Debian's Chromium, driven by Playwright; never a downloaded browser.
CHROMIUM = os.environ.get("PROD_DISCOVERY_CHROMIUM", "/usr/bin/chromium")
#: Without the background-networking flags Chromium keeps dialling out, which this closed
#: network refuses; root needs --no-sandbox.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip on a workstation, fail under CI=true: a real dependency is missing."""
    if condition:
        return
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: missing dependencies fail the run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def openbao() -> Iterator[DevServer]:
    """A fresh, real OpenBao dev server for one test; ``.address`` and ``.root_token``."""
    server = DevServer()
    try:
        server.start()
    except (FileNotFoundError, RuntimeError) as exc:
        require(False, f"OpenBao dev server could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


def reachable_dsn() -> str:
    """DSN of a reachable PostgreSQL superuser connection (see module docstring); skips, or
    fails under CI=true, when there is none. A function too, for module-scoped fixtures."""
    import psycopg

    dsn = os.environ.get("PROD_DISCOVERY_TEST_DSN", DEFAULT_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        require(False, f"PostgreSQL at {dsn} is unreachable: {exc.__class__.__name__}")
    return dsn


@contextlib.contextmanager
def throwaway_database(admin_dsn: str, prefix: str = "pd_test_") -> Iterator[str]:
    """A fresh database on ``admin_dsn``'s server, dropped (with its sessions and the group
    roles that held privileges in it) afterwards. Its name is ``prefix`` and 12 hex digits, so
    that one a killed run left behind says whose it was (the benchmarks use ``pd_bench_``)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            # Group roles that held privileges in it (credentials.seeding.group_role_name).
            groups = conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (f"grp_{name}_",)
            ).fetchall()
            for (group,) in groups:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(group)))


@pytest.fixture
def postgres_dsn() -> str:
    """DSN of a reachable PostgreSQL superuser connection (see module docstring)."""
    return reachable_dsn()


@pytest.fixture
def postgres_database(postgres_dsn: str) -> Iterator[str]:
    """A throw-away database on the test PostgreSQL, dropped (with its sessions) afterwards."""
    with throwaway_database(postgres_dsn) as dsn:
        yield dsn


@pytest.fixture
def prod_discovery_extension_config() -> dict[str, Any]:
    """Extra traitlets config merged into the server config; override it to configure guards."""
    return {}


@pytest.fixture
def prod_discovery_server_config(
    prod_discovery_extension_config: dict[str, Any],
) -> dict[str, Any]:
    """jupyter-server config: this extension enabled, authentication enforced."""
    config: dict[str, Any] = {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_prod_discovery": True},
            "allow_unauthenticated_access": False,
        },
    }
    for section, values in prod_discovery_extension_config.items():
        config.setdefault(section, {}).update(values)
    return config


@pytest.fixture
def vault_config(openbao: DevServer) -> dict[str, Any]:
    """Config pointing the extension's VaultClient at the test's OpenBao (root token)."""
    return {"VaultClient": {"url": openbao.address, "token": openbao.root_token}}
