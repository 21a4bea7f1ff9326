"""Export of a 50-cell notebook through the trusted service, per gate, against the same gates
run in-process.

``python -m benchmarks.export_service [--repeat 5] [--cells 50] [--dsn postgresql://...]
[--sandbox-user pdsandbox] [--sandbox-python PATH]``

Each round runs both sides once, alternating which goes first:

- **in-process**: :class:`NotebookExporter` in this process, as a same-user server does (the
  clean run is a subprocess of this process, with this interpreter);
- **service**: a real ``jupyter prod-discovery service`` (own process, unix socket, ledger in a
  throw-away PostgreSQL database); the notebook is submitted (``ServiceClient.create_export``)
  and the job polled every 50 ms until done. The service runs the same gates, the clean run in
  its sandbox (as ``--sandbox-user`` when run as root, else as itself), records the decision
  and returns the bundle's files.

Both sides sign with the same HMAC key, so signing costs the same. Reported: the median seconds
of each step (the exporter's own timings: prepare, each gate, bundle) per side, the end-to-end
medians, and the service's overhead: median(service) / median(in-process) - 1 end to end
(goal, issue 16: <= 10 %). Run it with an interpreter the sandbox user can run (as root:
``.venv-users/bin/python -m benchmarks.export_service``), so that both clean runs start the same
interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat

GOAL = 0.10


def make_notebook(cells: int) -> dict[str, Any]:
    """``cells`` code cells of ordinary analysis code (a markdown cell every tenth)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for i in range(cells):
        if i % 10 == 9:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"## Step {i}\nWhat the next cells do."))
        else:
            nb.cells.append(
                nbformat.v4.new_code_cell(
                    f"values_{i} = [n * {i} for n in range(2000)]\n"
                    f"total_{i} = sum(values_{i})\n"
                    f"mean_{i} = total_{i} / len(values_{i})"
                )
            )
    return dict(nb)


class Service:
    """The service for the run: a throw-away ledger database, a config, a unix socket."""

    def __init__(self, workdir: Path, admin_dsn: str, key: str, user: str, python: str) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        self.dir = workdir
        self.database = "pd_bench_export_" + uuid.uuid4().hex[:8]
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.admin_dsn = admin_dsn
        self.dsn = make_conninfo(admin_dsn, dbname=self.database)
        self.socket = workdir / "service.sock"
        config = {
            "HMACSigner": {"keys": [key]},
            "ExportSandbox": {
                "user": user,
                "allow_same_user": not user,
                "python": python,
                "work_dir": "/tmp",
            },
            "ExportDesk": {"max_running": 1},
        }
        (workdir / "service.json").write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["PROD_DISCOVERY_SERVICE_DSN"] = self.dsn
        self.log = open(workdir / "service.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_prod_discovery.cli",
                "service",
                f"--ProdDiscoveryService.socket_path={self.socket}",
                f"--ProdDiscoveryService.state_dir={workdir / 'state'}",
                f"--config={workdir / 'service.json'}",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        from jupyter_prod_discovery.service.client import ServiceClient, ServiceError

        self.client = ServiceClient(f"unix:{self.socket}", "bench-server", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the service exited; see {workdir / 'service.log'}")
            try:
                self.client.head()
                break
            except ServiceError:
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not answer in 60 s") from None
                time.sleep(0.1)

    def export(self, nb: dict[str, Any]) -> tuple[float, dict[str, float], str]:
        started = time.monotonic()
        job = self.client.create_export({"notebook": nb, "path": "bench/notebook.ipynb"})
        while not job["done"]:
            time.sleep(0.05)
            job = self.client.export_job(job["id"])
        return time.monotonic() - started, dict(job["timings"]), str(job["state"])

    def stop(self) -> None:
        import psycopg

        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def export_in_process(nb: dict[str, Any], key: str, tmp: Path) -> tuple[float, dict[str, float]]:
    from traitlets.config import Config

    from jupyter_prod_discovery.export.exporter import ExportRequest, NotebookExporter

    src = tmp / f"in-{uuid.uuid4().hex[:6]}" / "notebook.ipynb"
    src.parent.mkdir()
    src.write_text(json.dumps(nb))
    exporter = NotebookExporter(config=Config({"HMACSigner": {"keys": [key]}}))
    request = ExportRequest(
        notebook=src, output=src.parent / "bundle", author="bench", display_path="bench/nb"
    )
    started = time.monotonic()
    exporter.process(request)
    elapsed = time.monotonic() - started
    shutil.rmtree(src.parent, ignore_errors=True)
    return elapsed, dict(exporter.timings)


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: statistics.median(row.get(k, 0.0) for row in rows) for k in keys}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.export_service", description=__doc__)
    p.add_argument("--repeat", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--cells", type=int, default=50, help="notebook cells (default 50)")
    p.add_argument(
        "--dsn",
        default=os.environ.get(
            "PROD_DISCOVERY_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL superuser DSN for the service's throw-away ledger database",
    )
    p.add_argument("--sandbox-user", default="", help="sandbox OS user (default: none)")
    p.add_argument("--sandbox-python", default=sys.executable, help="the sandbox's interpreter")
    p.add_argument("--json", type=Path, help="also write the results there")
    args = p.parse_args(argv)
    user = args.sandbox_user
    if user and os.geteuid() != 0:
        raise SystemExit("--sandbox-user needs root (the service switches to that user)")
    if user:
        pwd.getpwnam(user)  # KeyError names a missing user
    key = secrets.token_hex(24)
    nb = make_notebook(args.cells)
    with tempfile.TemporaryDirectory(prefix="pd-bench-export-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        service = Service(tmp, args.dsn, key, user, args.sandbox_python)
        try:
            export_in_process(nb, key, tmp)  # warm-up, both sides
            service.export(nb)
            local: list[tuple[float, dict[str, float]]] = []
            remote: list[tuple[float, dict[str, float]]] = []
            for i in range(args.repeat):
                order = ("local", "remote") if i % 2 == 0 else ("remote", "local")
                for side in order:
                    if side == "local":
                        local.append(export_in_process(nb, key, tmp))
                    else:
                        elapsed, timings, state = service.export(nb)
                        if state != "exported":
                            raise SystemExit(f"the service's export ended {state}")
                        remote.append((elapsed, timings))
        finally:
            service.stop()
    a = statistics.median(t for t, _ in local)
    b = statistics.median(t for t, _ in remote)
    steps_a, steps_b = median_of([s for _, s in local]), median_of([s for _, s in remote])
    overhead = b / a - 1
    print(f"export of a {args.cells}-cell notebook, {args.repeat} rounds, medians (seconds)")
    print(f"{'step':<22}{'in-process':>12}{'service':>12}{'ratio':>8}")
    for step in steps_a:
        ra = steps_a[step]
        rb = steps_b.get(step, 0.0)
        ratio = f"{rb / ra:.2f}" if ra > 0 else "-"
        print(f"{step:<22}{ra:>12.3f}{rb:>12.3f}{ratio:>8}")
    print(f"{'end to end':<22}{a:>12.3f}{b:>12.3f}{b / a:>8.2f}")
    verdict = "meets" if overhead <= GOAL else "misses"
    print(
        f"service overhead: {overhead * 100:+.1f} % ({verdict} the <= {GOAL * 100:.0f} % goal); "
        f"sandbox user: {user or 'none (same user)'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cells": args.cells,
                    "repeat": args.repeat,
                    "in_process": {"end_to_end": a, "steps": steps_a},
                    "service": {"end_to_end": b, "steps": steps_b},
                    "overhead": overhead,
                    "sandbox_user": user,
                },
                indent=1,
            )
        )
    return 0 if overhead <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
