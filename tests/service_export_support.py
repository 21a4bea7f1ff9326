"""Helpers for the tests of promotion through the trusted service: the service as they run it,
notebooks, the sandbox user, polling a job, and writing a returned bundle out to verify it."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from boundary_support import ensure_user, users_python
from credentials_support import Warehouse
from service_support import ServiceProcess, service_token, start_service

from jupyter_prod_discovery.service.client import ServiceClient

SANDBOX_USER = "pdsandbox"


def sandbox_settings(python: str | None = None) -> dict[str, Any]:
    """Service config (JSON) for exports: the sandbox user (created now); bundles are signed
    with the service's own key (its default)."""
    ensure_user(SANDBOX_USER)
    return {
        "ExportSandbox": {
            "user": SANDBOX_USER,
            "python": python or users_python(),
            "work_dir": "/tmp",
        },
        "CleanRunGate": {"timeout": 240},
    }


@contextlib.contextmanager
def export_service(
    tmp: Path,
    dsn: str,
    openbao: Any,
    warehouse: Warehouse,
    *,
    vault_token: str = "",
    config: dict[str, Any] | None = None,
    shared_socket: bool = False,
) -> Iterator[ServiceProcess]:
    """The service over ``dsn`` with the warehouse's profiles, a least-privilege Vault token
    (``vault_token``, or one made now) and the export sandbox (``sandbox_settings``), sections of
    ``config`` replacing its own; stopped afterwards.

    ``shared_socket``: its socket in a directory of its own under /tmp that every user may enter
    (removed afterwards), so that another OS user's process can try it.
    """
    sockets = None
    if shared_socket:
        sockets = Path(tempfile.mkdtemp(prefix="pd-sock-", dir="/tmp"))
        sockets.chmod(0o755)
    try:
        svc = start_service(
            tmp,
            dsn,
            vault_addr=openbao.address,
            vault_token=vault_token or service_token(openbao, warehouse.profiles()),
            profiles=warehouse.profiles(),
            socket_dir=sockets,
            extra_config={**sandbox_settings(), **(config or {})},
        )
        try:
            yield svc
        finally:
            svc.stop()
    finally:
        if sockets is not None:
            shutil.rmtree(sockets, ignore_errors=True)


def notebook(*sources: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A python3 notebook of code cells; ``outputs`` go on the last cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    if outputs:
        nb.cells[-1].outputs = [nbformat.from_dict(o) for o in outputs]
    return dict(nb)


def report_dir() -> Path:
    """A directory the sandbox user may write its report into (and the test read)."""
    path = Path("/tmp") / f"pd-export-report-{secrets.token_hex(6)}"
    path.mkdir(mode=0o700)
    entry = ensure_user(SANDBOX_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def wait_job(client: ServiceClient, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    """Poll the job until it is done; returns its last state (deadline only against hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.export_job(job_id)
        if job["done"]:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"export job {job_id} still running after {timeout} s: {job}")
        time.sleep(0.2)


def write_bundle(job: dict[str, Any], dest: Path) -> Path:
    """The job's files written out as a bundle directory."""
    shutil.rmtree(dest, ignore_errors=True)
    for rel, data in job["files"].items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
    return dest
