"""The trusted service alone, on a throw-away ledger database: for the benchmarks that measure
it, or a client of it, without a Jupyter server (``audit_record_path``, ``service_throughput``).

The service is started with ``tests/service_support.start_service``, as its tests start it (no
Vault, no profiles); ``benchmarks/service.py`` (``--service`` beside a server) keeps its own copy
of that start-up because it configures the service as the demo does.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jupyter_prod_discovery.pytest_plugin import throwaway_database

#: The PostgreSQL the benchmarks create their throw-away databases on (a superuser's DSN).
DEFAULT_DSN = os.environ.get(
    "PROD_DISCOVERY_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def ledger_service(admin_dsn: str) -> Iterator[tuple[Any, Path]]:
    """A service whose ledger is a database of its own on ``admin_dsn``'s server, and a temporary
    directory (its socket, state and log, and room for the caller's files). Yields the running
    ``ServiceProcess`` (``url``, ``dsn``, ``proc``) and that directory; afterwards the service is
    stopped, the directory removed and the database dropped, also when the run fails."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from service_support import start_service

    with (
        throwaway_database(admin_dsn, prefix="pd_bench_") as dsn,
        tempfile.TemporaryDirectory() as tmp,
    ):
        svc = start_service(Path(tmp), dsn)
        try:
            yield svc, Path(tmp)
        finally:
            svc.stop()
