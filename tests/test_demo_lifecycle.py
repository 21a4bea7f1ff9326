"""The demo stops cleanly whatever happens (issue 18): its output piped into ``tee`` that the
terminal's signal ends too, Ctrl-C or a closed terminal (SIGHUP), or the demo itself killed.
After each: no process, no lease (OpenBao is gone with them) and no database role of the demo.
Real OpenBao, PostgreSQL and JupyterLab; as root, the separated topology."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import requests

from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.runner import DEFAULT_DSN
from jupyter_prod_discovery.demo.seed import drop_leftover_roles, postgres_reachable
from jupyter_prod_discovery.pytest_plugin import require

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def demo_dsn() -> str:
    return os.environ.get("PROD_DISCOVERY_DEMO_DSN", DEFAULT_DSN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def roles_with_prefix(prefix: str) -> list[str]:
    with psycopg.connect(demo_dsn()) as conn:
        rows = conn.execute(
            "select rolname from pg_roles where starts_with(rolname, %s)", (prefix,)
        ).fetchall()
    return [r[0] for r in rows]


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


def start_kernel_with_role(demo: DemoProcess) -> str:
    """A kernel whose credentials include a database role of the demo's."""
    r = requests.post(
        f"{demo.url}/api/kernels",
        json={"name": "python3"},
        headers={"Authorization": f"token {demo.token}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert demo.role_prefix
    eventually(lambda: bool(roles_with_prefix(demo.role_prefix or "")), "a database role issued")
    return str(r.json()["id"])


@pytest.mark.parametrize(
    ("sig", "keep"), [(signal.SIGINT, False), (signal.SIGHUP, True)], ids=["ctrl-c", "sighup"]
)
def test_stop_demo_with_output_piped_leaves_nothing(sig: int, keep: bool) -> None:
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    demo = DemoProcess(free_port(), ["--keep"] if keep else [], piped=True)
    try:
        demo.start(timeout=120)
        start_kernel_with_role(demo)
        tree = demo.tree()
        assert len(tree) >= 4  # OpenBao, the service, JupyterLab, the kernel
        # What a terminal does: the signal to the whole foreground pipeline, tee included.
        assert demo.stop(sig, group=True) == 0
        assert demo.tee is not None and demo.tee.returncode == -sig  # tee died of it
        assert [p.pid for p in tree if p.is_running() and p.status() != "zombie"] == []
        assert demo.leftover_processes() == []
        assert roles_with_prefix(demo.role_prefix or "") == []
        log = demo.demo_log()  # the stop went on after its stdout was gone
        assert "stopping" in log and "stopped: no processes, leases or database roles" in log
        assert "failed" not in log.split("stopping", 1)[1]
        notebooks = Path(demo.notebooks)
        if keep:
            assert (notebooks / "WELCOME.md").is_file()
            assert f"kept: notebooks in {notebooks}" in log
        else:
            assert not notebooks.exists()
        # The trail verifies after the stop, with the public key the demo left in its folder.
        done = subprocess.run(
            demo.verify_after_command, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0 and "intact" in done.stdout, done.stdout + done.stderr
    finally:
        demo.cleanup()


def test_demo_children_die_with_the_demo() -> None:
    # SIGKILL runs no cleanup in the demo: its children (one process group, each tied to the
    # demo's life) get SIGTERM from the kernel and go, JupyterLab taking its kernels along.
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    demo = DemoProcess(free_port())
    try:
        demo.start(timeout=120)
        start_kernel_with_role(demo)
        tree = demo.tree()
        assert len(tree) >= 4
        groups = {
            os.getpgid(p.pid) for p in tree[:3] if p.pid in {pid for _, pid in demo.parts.values()}
        }
        assert len(groups) == 1 and groups != {os.getpgid(demo.proc.pid)}  # type: ignore[union-attr]
        assert demo.stop(signal.SIGKILL) == -signal.SIGKILL
        eventually(
            lambda: not [p for p in tree if p.is_running() and p.status() != "zombie"],
            "the demo's children gone",
        )
        assert demo.leftover_processes() == []
    finally:
        if demo.role_prefix:  # no ordered stop ran: the roles are this test's to drop
            drop_leftover_roles(demo_dsn(), demo.role_prefix)
        demo.cleanup()


def test_demo_prints_the_url_again_on_enter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # While the demo waits, Enter prints the URL again (JupyterLab's own lines no longer reach
    # the terminal, but a newcomer may have scrolled it away); end of input stops the watch.
    import argparse
    import sys

    from jupyter_prod_discovery.demo.runner import Demo

    args = argparse.Namespace(port=None, dsn=None, root_dir=None, keep=False, no_browser=True)
    demo = Demo(args, demo_dsn())
    demo.token = "0123abcd"
    read, write = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(read))
    os.write(write, b"\n\n")
    os.close(write)  # then end of input
    demo.lab = subprocess.Popen(["sleep", "3"])
    try:
        assert demo.wait() == 1  # JupyterLab "exited by itself"
    finally:
        demo.lab.kill()
        demo.lab.wait()
    out = capsys.readouterr().out
    assert out.count(f"{demo.url}/lab?token=0123abcd") == 2
