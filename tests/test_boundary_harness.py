"""The attacker suite's harness, proven against a stand-in for the trusted service.

Everything that must hold against the data scientist moves into a trusted service running as its
own OS user. Its acceptance test is an attacker suite: alice (a real, different OS user) runs
``tests/attacks/probe.py`` in her notebook kernel and in her terminal and must obtain no secret of
the trusted side. Before the service exists, this module proves the harness itself:

- the trusted side is ``TrustedStandIn`` (user ``pdsvc``), holding secrets the way a service does
  (environment, memory, a 0700 state dir, a unix socket answering its own uid only);
- alice's kernel and terminal obtain none of them, and open no process of another user;
- positive controls make every test able to fail: in the same run alice's own decoy process,
  holding secrets of its own within her reach, must be found by every probe (a probe that read
  nothing would otherwise pass as a boundary that held), and the same probe run as ``pdsvc``
  itself must find every secret of the stand-in (the needles match what the stand-in holds).

Needs root (to create the users) and ``.venv-users`` (``bash scripts/install.sh``); skipped
without them on a workstation, failed under ``CI=true``.
"""

from __future__ import annotations

import pwd
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from boundary_support import (
    USERS_VENV,
    SecretHolder,
    TrustedStandIn,
    UserServer,
    by_name,
    ensure_user,
    foreign_access,
    is_dumpable,
    leaks,
    misses,
    needle,
    probe_as,
    probe_config,
    spawn_as,
    stop,
    users_python,
)

pytestmark = [pytest.mark.boundary, pytest.mark.slow, pytest.mark.timeout(180)]

ALICE = "pdalice"
SERVICE_USER = "pdsvc"
#: The probe's whole run, from inside a kernel or a terminal (it takes well under a second here).
PROBE_BUDGET_S = 20.0


@dataclass
class World:
    alice: pwd.struct_passwd
    trusted: TrustedStandIn
    decoy: SecretHolder
    server: UserServer
    server_canary: str

    def alice_config(self) -> dict[str, Any]:
        """Everything alice attacks: the trusted side, her decoy, every config and runtime dir."""
        home = Path(self.alice.pw_dir)
        paths = [
            *self.trusted.paths(),
            pwd.getpwnam(SERVICE_USER).pw_dir,  # 0755 by Debian's default: a service keeps out
            "/etc/prod-discovery",
            "/etc/jupyter",
            "/usr/local/etc/jupyter",
            str(USERS_VENV / "etc" / "jupyter"),
            str(self.server.runtime_dir),
            str(home / ".jupyter"),
            str(home / ".local" / "share" / "jupyter"),
            *self.decoy.paths(),
        ]
        return probe_config(
            {
                **self.trusted.needles(),
                **self.decoy.needles(),
                "server:env": needle(self.server_canary),
            },
            # The trusted pid too: were it (wrongly) alice's, its environ and memory would show.
            pids=[self.decoy.pid, self.trusted.pid],
            paths=paths,
            unix=[*self.trusted.unix(), *self.decoy.unix()],
            tcp=[*self.trusted.tcp(), *self.decoy.tcp()],
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    alice = ensure_user(ALICE)
    ensure_user(SERVICE_USER)
    users_python()
    logs = tmp_path_factory.mktemp("boundary")  # root's: the users never see these logs
    canary = secrets.token_hex(24)
    trusted = TrustedStandIn(logs / "trusted.log", user=SERVICE_USER)
    decoy = SecretHolder(
        ALICE, "decoy", logs / "decoy.log", leak_argv=True, tcp_answers_everyone=True
    )
    server = UserServer(ALICE, logs / "server.log", env={"PD_SERVER_CANARY": canary})
    try:
        trusted.start()
        decoy.start()
        server.start()
        yield World(alice, trusted, decoy, server, canary)
    finally:
        server.stop()
        decoy.stop()
        trusted.stop()


def assert_boundary_held(report: dict[str, Any], world: World) -> None:
    """No trusted secret, no other user's process, and every probe shown able to see."""
    assert report["uid"] == world.alice.pw_uid
    assert world.server.pid in report["ancestors"], "the probe did not run under alice's server"
    assert world.trusted.pid in report["foreign"], "the trusted process is not another user's"
    assert report["seconds"] < PROBE_BUDGET_S
    assert leaks(report, world.trusted) == {}
    assert foreign_access(report, allowed=[world.decoy.pid]) == {}
    assert misses(report, world.decoy) == []
    # The server is alice's own process: readable unless it made itself non-dumpable. (Only the
    # server's pid counts: a terminal's shell is an ancestor too, with an environment of its own.)
    probes = by_name(report)
    dumpable = is_dumpable(world.server.pid)
    for name in ("own_server_environ", "own_server_memory"):
        places = probes[name]["found"].get("server:env", [])
        assert (str(world.server.pid) in places) is dumpable, (name, dumpable, probes[name])


def test_probe_finds_trusted_secrets_as_their_owner(world: World) -> None:
    """Positive control: without the uid boundary every probe reaches the stand-in's secrets."""
    config = probe_config(
        world.trusted.needles(),
        pids=[world.trusted.pid],
        paths=world.trusted.paths(),
        unix=world.trusted.unix(),
        tcp=world.trusted.tcp(),
    )
    report = probe_as(SERVICE_USER, config)
    assert report["uid"] == pwd.getpwnam(SERVICE_USER).pw_uid
    # Every way to each secret works for its owner: environment, memory, fd, file, socket.
    assert misses(report, world.trusted) == []
    assert set(by_name(report)["proc_mem"]["found"]) >= {"trusted:memory", "trusted:env"}


def test_kernel_obtains_no_trusted_secret(world: World) -> None:
    """Alice's notebook kernel: the first place a data scientist runs code."""
    report = world.server.probe_in_kernel(world.alice_config())
    assert_boundary_held(report, world)


def test_terminal_obtains_no_trusted_secret(world: World) -> None:
    """Alice's terminal: no kernel hook sees it, so only the uid boundary can hold there."""
    report = world.server.probe_in_terminal(world.alice_config())
    assert_boundary_held(report, world)
    assert world.server.last_exit_status == 0


def test_run_users_venv_as_other_user(world: World) -> None:
    """Alice runs Debian's Python from .venv-users, the project importable, the venv not hers."""
    code = (
        "import os, sys, jupyter_prod_discovery as p; "
        "print(sys.base_prefix, os.access(sys.prefix, os.W_OK), os.access(p.__file__, os.W_OK))"
    )
    proc = spawn_as(ALICE, [users_python(), "-c", code], stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert out.decode().split() == ["/usr", "False", "False"]
