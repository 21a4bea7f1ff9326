"""Helpers for the tests of promotion through the trusted service: notebooks, the sandbox user,
polling a job, and writing a returned bundle out to verify it."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import nbformat
from boundary_support import ensure_user, users_python

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
