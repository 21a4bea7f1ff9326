"""The attacker suite against the real trusted service, standalone topology.

``jupyter prod-discovery service`` runs as its own OS user (``pdsvc``) with the only Vault token
(least privilege), the ledger's DSN and the audit signing key; alice (``pdalice``) and bob
(``pdbob``) each run a Jupyter server that is merely its client over a unix socket, which
identifies callers by their peer uid. Everything is real: OpenBao, PostgreSQL (trust auth, so any
local user can rewrite any table: that is why the ledger is signed), kernels, terminals, users.

What alice, with code in her kernel, her terminal and a process that outlives her server, must
not achieve, and how each test could fail:

1. obtain a secret of the trusted side (the service's Vault token, its signing key, its DSN's
   password, OpenBao's root token) or of bob's kernel, or open another user's process. Positive
   controls: the probe, run as ``pdsvc``, does find the service's token, password and key, so the
   needles match what the service holds; a decoy of alice's own is found by every probe, so no
   probe can pass by reading nothing.
2. (the service works across users) her kernel's database credentials come from the service and
   her server's audit records carry the principal the service authenticated: ``pdalice``.
3. reach bob's credentials through the service (his kernel and server ids are not secrets) or
   through Vault with the child token her kernel holds. Controls: bob's own kernel renews with
   the same request; a token with Vault's default policy does see bob's lease.
4. rewrite the ledger unseen: ``audit verify`` names the first break, and a cut-off tail
   (records and checkpoints) is caught by the service's signed head alone.
5. read the service's state, replace its socket, or authenticate as anyone but herself, not even
   as root of a user namespace of her own. Control: bob and pdsvc are told apart.

Vault's ``default`` policy lets every token look up and renew any lease whose id it knows
(``sys/leases/lookup``, ``sys/leases/renew``), and lease ids are in the ledger, which every local
user can read. The kernels' token profile therefore drops the default policy
(``no_default_policy``) for a policy on the token itself only; the Vault test shows both sides.

Two worlds, module-scoped: the main one (tests 1-3, 5) and, for the tampering (4), a second
service and ledger, so that no other test's traffic lands in a ledger being rewritten. Helpers
and the code run as the users are in ``boundary_service_support.py``, the tamperer in
``attacks/ledger_tamper.py``. Needs root, ``.venv-users`` (``bash scripts/install.sh``), OpenBao
and PostgreSQL; skipped without them on a workstation, failed under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import psutil
import psycopg
import pytest
from boundary_service_support import (
    ALICE,
    BOB,
    FILES,
    JUPYTER,
    LEDGER,
    ROWS,
    SERVICE_USER,
    TAMPERER,
    VAULT_CALLS,
    Side,
    Verdict,
    admin_dsn,
    environ_of,
    json_file,
    kernel_pid,
    kernel_profiles,
    kernel_side,
    kill_marked,
    marked_json,
    own_leases,
    quiet_head,
    records,
    restore,
    run_as,
    run_dir,
    server_id,
    signing_key_needle,
    snapshot,
    socket_calls,
    start_service_as,
    vault_token_needle,
    verify,
    wait_for,
    whoami,
)
from boundary_support import (
    SHARED_TMP,
    USERS_VENV,
    SecretHolder,
    UserServer,
    by_name,
    ensure_user,
    foreign_access,
    leaks,
    make_dir,
    misses,
    needle,
    probe_as,
    probe_config,
    users_python,
)
from credentials_support import Warehouse, drop_leftover_roles, make_warehouse
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from service_support import ServiceProcess

from jupyter_prod_discovery.demo.openbao import DevServer
from jupyter_prod_discovery.pytest_plugin import require, throwaway_database
from jupyter_prod_discovery.service.client import URL_ENV

pytestmark = [
    pytest.mark.boundary,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(300),
]

#: The probe's whole run from a kernel or a terminal (well under a second here).
PROBE_BUDGET_S = 20.0
#: Heartbeats well inside the service's server timeout (``start_service_as``): no kernel is
#: reaped as a dead server's while a test attacks it, even on a loaded machine.
SERVER_ARGS = ("--RemoteCredentialBroker.heartbeat_interval=0.5",)


# --------------------------------------------------------------------------------------------
# the world: OpenBao, PostgreSQL, the service as pdsvc, alice's and bob's servers


@dataclass
class World:
    bao: DevServer
    warehouse: Warehouse
    profiles: list[dict[str, Any]]
    admin: str
    ledger_dsn: str  # without the service's (fake) password: what an auditor uses
    service: ServiceProcess
    service_side: Side
    bao_side: Side
    base: Path
    alice: UserServer
    bob: UserServer
    decoy: SecretHolder
    alice_rows: str
    bob_rows: str
    alice_kernel: Side
    bob_kernel: Side
    kernel_secrets: dict[str, str]  # label -> value, both kernels
    logs: Path

    @property
    def state_dir(self) -> Path:
        return Path(self.service.state_dir)

    @property
    def key_file(self) -> Path:
        return self.state_dir / "audit-signing-key.pem"

    def bob_credentials(self) -> dict[str, Any]:
        """Bob's kernel as his server lists it: lease ids and the token's accessor."""
        leases = {x["profile"]: x["lease_id"] for x in own_leases(self.bob)}
        return {
            "lease_id": leases["warehouse"],
            "accessor": leases["vault"].removeprefix("accessor:"),
        }

    def alice_config(self) -> dict[str, Any]:
        """Everything alice attacks: the service, OpenBao, bob's kernel, her own decoy."""
        home = Path(self.alice.pw.pw_dir)
        paths = [
            *self.service_side.paths(),
            *self.bob_kernel.paths(),
            "/etc/prod-discovery",
            "/etc/jupyter",
            "/usr/local/etc/jupyter",
            str(USERS_VENV / "etc" / "jupyter"),
            str(self.alice.runtime_dir),
            str(home / ".jupyter"),
            *self.decoy.paths(),
        ]
        return probe_config(
            {
                **self.service_side.needles(),
                **self.bao_side.needles(),
                **self.bob_kernel.needles(),
                **self.decoy.needles(),
            },
            # Were one of them (wrongly) alice's, its environ and memory would show.
            pids=[
                self.decoy.pid,
                self.service_side.pid,
                self.bao_side.pid,
                self.bob.pid,
                self.bob_kernel.pid,
            ],
            paths=paths,
            unix=[*self.service_side.unix(), *self.decoy.unix()],
            tcp=self.decoy.tcp(),
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for user in (SERVICE_USER, ALICE, BOB):
        ensure_user(user)
    users_python()
    admin = admin_dsn()
    logs = tmp_path_factory.mktemp("boundary-service")  # root's: no user reads these logs
    with contextlib.ExitStack() as stack:
        ledger_dsn = stack.enter_context(throwaway_database(admin))
        bao = DevServer(log_path=str(logs / "openbao.log"))
        try:
            bao.start()
        except (FileNotFoundError, RuntimeError) as exc:
            require(False, f"OpenBao dev server could not start: {exc}")
        stack.callback(bao.stop)
        warehouse = make_warehouse(bao, ledger_dsn)
        stack.callback(drop_leftover_roles, warehouse)
        profiles = kernel_profiles(warehouse, bao)
        # A distinctive password: trust auth ignores it, so it matters only as a needle.
        dsn_password = f"svcdsn-{secrets.token_hex(16)}"
        base = run_dir()
        stack.callback(shutil.rmtree, base, True)
        service = start_service_as(
            SERVICE_USER,
            base,
            logs / "service.log",
            make_conninfo(ledger_dsn, password=dsn_password),
            bao,
            profiles,
        )
        stack.callback(service.stop)
        env = environ_of(service.proc.pid)
        key_file = Path(service.state_dir) / "audit-signing-key.pem"
        service_side = Side(
            service.proc.pid,
            {
                "service:vault_token": vault_token_needle(env["VAULT_TOKEN"]),
                "service:signing_key": signing_key_needle(key_file),
                "service:dsn_password": dsn_password[len("svcdsn-") :][:16],
            },
            [str(base), service.state_dir, pwd.getpwnam(SERVICE_USER).pw_dir],
            [
                {
                    "path": service.socket_path,
                    "request_hex": b"GET /api/status HTTP/1.0\r\n\r\n".hex(),
                }
            ],
        )
        assert bao.process is not None
        bao_side = Side(bao.process.pid, {"openbao:root_token": needle(bao.root_token[5:])})
        decoy = SecretHolder(
            ALICE, "decoy", logs / "decoy.log", leak_argv=True, tcp_answers_everyone=True
        )
        stack.callback(decoy.stop)
        decoy.start()
        client_env = {URL_ENV: service.url}
        alice = UserServer(ALICE, logs / "alice.log", env=client_env, args=SERVER_ARGS)
        bob = UserServer(BOB, logs / "bob.log", env=client_env, args=SERVER_ARGS)
        # Servers stop before the service (they revoke through it), which stops before OpenBao.
        stack.callback(alice.stop)
        stack.callback(bob.stop)
        alice.start()
        bob.start()
        rows = ROWS.format(prefix=warehouse.prefix)
        alice_rows, bob_rows = alice.execute(rows), bob.execute(rows)
        alice_kernel, alice_values = kernel_side(alice, "alice")
        bob_kernel, bob_values = kernel_side(bob, "bob")
        yield World(
            bao=bao,
            warehouse=warehouse,
            profiles=profiles,
            admin=admin,
            ledger_dsn=ledger_dsn,
            service=service,
            service_side=service_side,
            bao_side=bao_side,
            base=base,
            alice=alice,
            bob=bob,
            decoy=decoy,
            alice_rows=alice_rows,
            bob_rows=bob_rows,
            alice_kernel=alice_kernel,
            bob_kernel=bob_kernel,
            kernel_secrets={**alice_values, **bob_values},
            logs=logs,
        )


# --------------------------------------------------------------------------------------------
# 1. no secret of the trusted side, no other user's process


def assert_boundary_held(report: dict[str, Any], world: World) -> None:
    """Nothing of the service, OpenBao or bob; no other process opened; every probe able to see."""
    assert report["uid"] == world.alice.pw.pw_uid
    assert world.alice.pid in report["ancestors"], "the probe did not run under alice's server"
    for pid in (world.service_side.pid, world.bao_side.pid, world.bob_kernel.pid):
        assert pid in report["foreign"], f"{pid} is not another user's process"
    assert report["seconds"] < PROBE_BUDGET_S
    assert leaks(report, world.service_side) == {}
    assert leaks(report, world.bao_side) == {}
    assert leaks(report, world.bob_kernel) == {}
    assert foreign_access(report, allowed=[world.decoy.pid]) == {}
    assert misses(report, world.decoy) == []


def test_probe_finds_service_secrets_as_pdsvc(world: World) -> None:
    """Positive control: without the uid boundary the probe reaches the service's secrets.

    So the needles are what the service really holds, where it holds them; and the service was
    never handed OpenBao's root token.
    """
    config = probe_config(
        {**world.service_side.needles(), **world.bao_side.needles()},
        pids=[world.service_side.pid],
        paths=world.service_side.paths(),
        unix=world.service_side.unix(),
    )
    report = probe_as(SERVICE_USER, config)
    assert report["uid"] == pwd.getpwnam(SERVICE_USER).pw_uid
    probes = by_name(report)
    assert {"service:vault_token", "service:dsn_password"} <= set(probes["proc_environ"]["found"])
    assert "service:vault_token" in probes["proc_mem"]["found"]
    assert "service:signing_key" in probes["files"]["found"]
    assert leaks(report, world.bao_side) == {}


def test_root_token_is_where_alice_would_look(world: World) -> None:
    """Positive control for the root token's needle: OpenBao's environment holds it."""
    label, value = next(iter(world.bao_side.needles().items()))
    assert value.encode() in Path(f"/proc/{world.bao_side.pid}/environ").read_bytes(), label


def test_kernel_obtains_no_trusted_secret(world: World) -> None:
    """Alice's notebook kernel: the first place a data scientist runs code."""
    report = world.alice.probe_in_kernel(world.alice_config())
    assert_boundary_held(report, world)


def test_terminal_obtains_no_trusted_secret(world: World) -> None:
    """Alice's terminal: no kernel hook sees it, so only the uid boundary can hold there."""
    report = world.alice.probe_in_terminal(world.alice_config())
    assert_boundary_held(report, world)
    assert world.alice.last_exit_status == 0


def test_ledger_alice_can_read_holds_no_secret(world: World) -> None:
    """Trust auth lets alice read the whole ledger: no secret of anyone may be in it.

    Alice's kernel reads bob's records as ``postgres`` (the attack is real); root then searches
    every column of the records and checkpoints for every secret's needle. Control: bob's lease
    id, which is no secret, is found, so the search reads the credential records.
    """
    code = (
        "import psycopg\n"
        f"with psycopg.connect({world.ledger_dsn!r}, connect_timeout=5) as _c:\n"
        f"    print('PDJSON', _c.execute(\"select count(*) from {LEDGER} "
        "where username = 'pdbob'\").fetchone()[0])\n"
    )
    out = world.alice.execute(code)
    assert int(marked_json(out, "PDJSON ")) > 0, out
    with psycopg.connect(world.ledger_dsn) as conn:
        text = "\n".join(
            row[0]
            for table in (LEDGER, f"{LEDGER}_checkpoints")
            for row in conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            ).fetchall()
        )
    needles = {
        **world.service_side.needles(),
        **world.bao_side.needles(),
        **{label: needle(value) for label, value in world.kernel_secrets.items()},
    }
    assert [label for label, n in needles.items() if n in text] == []
    assert world.bob_credentials()["lease_id"] in text


# --------------------------------------------------------------------------------------------
# 2. the service works across OS users and stamps who asked


def shipped_by(world: World, server: UserServer) -> list[dict[str, Any]]:
    """The records ``server`` shipped, once its execution records have been sealed."""

    def shipped() -> list[dict[str, Any]]:
        sid = server_id(server)
        recs = [r for r in records(world.ledger_dsn) if r.get("server_id") == sid]
        return recs if any(r["kind"] == "execution" for r in recs) else []

    return wait_for(shipped, 30, f"{server.user}'s execution records in the ledger")


def test_service_issues_alice_credentials_and_stamps_her(world: World) -> None:
    """Alice's kernel queries the warehouse with credentials the service issued as pdsvc; the
    ledger names her as the service authenticated her (peer uid), whatever her server reports."""
    assert "PDROWS 3 True" in world.alice_rows, world.alice_rows
    assert "PDROWS 3 True" in world.bob_rows, world.bob_rows
    principals = {
        (r["principal"]["username"], r["principal"]["via"]) for r in shipped_by(world, world.alice)
    }
    assert principals == {(ALICE, "peer-uid")}
    principals = {
        (r["principal"]["username"], r["principal"]["via"]) for r in shipped_by(world, world.bob)
    }
    assert principals == {(BOB, "peer-uid")}
    # The service's own record of issuing her kernel's credentials names her too.
    issued = [
        r
        for r in records(world.ledger_dsn)
        if r["kind"] == "credential"
        and r["principal"]["via"] == "service"
        and r["data"].get("action") == "issue"
        and (r["data"].get("user") or {}).get("username") == ALICE
    ]
    assert issued, "no record of the service issuing pdalice's credentials"


# --------------------------------------------------------------------------------------------
# 3. bob's credentials, through the service and through Vault


def test_service_refuses_alice_on_bob_kernel(world: World) -> None:
    """With bob's kernel and server ids (no secrets), alice's kernel calls the service socket
    itself: revoking, renewing and listing bob's kernel reach nothing of his, and his database
    login keeps working. Control: bob's own kernel renews with the same request."""
    bob = world.bob_credentials()
    kid, sid = world.bob.kernel_id, server_id(world.bob)
    headers = {"X-Prod-Discovery-Server": sid}
    calls = [
        [world.service.socket_path, "DELETE", f"/api/credentials/{kid}?reason=shutdown", headers],
        [world.service.socket_path, "POST", f"/api/credentials/{kid}/renew", headers],
        [world.service.socket_path, "POST", "/api/heartbeat", headers],
    ]
    (revoke, renew, beat) = marked_json(world.alice.execute(socket_calls(calls)))
    assert revoke[0] == 200 and json.loads(revoke[1]) == {"revoked": False}, revoke
    assert renew[0] == 404, renew
    assert beat[0] == 200 and json.loads(beat[1]) == {"kernels": []}, beat
    assert world.warehouse.lease_alive(bob["lease_id"])
    assert world.warehouse.accessor_alive(bob["accessor"])
    assert "PDROWS 3 True" in world.bob.execute(ROWS.format(prefix=world.warehouse.prefix))
    # Control: the request was right; only its sender was not bob.
    (own,) = marked_json(world.bob.execute(socket_calls(calls[1:2])))
    assert own[0] == 200 and json.loads(own[1])["kernel_id"] == kid, own


def test_vault_refuses_alice_token_on_bob_lease(world: World) -> None:
    """The child token in alice's kernel cannot look up, renew or revoke bob's lease, nor look
    up or revoke his token by accessor: permission denied, while it works on itself.

    Controls: bob's lease and token stay alive; and a token with Vault's default policy (what the
    profile would issue without ``no_default_policy``) does look up and renew bob's lease, so
    the refusals are the kernel policy's doing, not a wrong id.
    """
    bob = world.bob_credentials()
    calls = {
        "lookup_self": ["auth/token/lookup-self", None],
        "lease_lookup": ["sys/leases/lookup", {"lease_id": bob["lease_id"]}],
        "lease_renew": ["sys/leases/renew", {"lease_id": bob["lease_id"]}],
        "lease_revoke": ["sys/leases/revoke", {"lease_id": bob["lease_id"]}],
        "accessor_lookup": ["auth/token/lookup-accessor", {"accessor": bob["accessor"]}],
        "accessor_revoke": ["auth/token/revoke-accessor", {"accessor": bob["accessor"]}],
    }
    answers = marked_json(world.alice.execute(f"CALLS = {calls!r}\n" + VAULT_CALLS))
    assert answers.pop("lookup_self")[0] == 200, "alice's kernel token is not live"
    assert {k: (v[0], "permission denied" in v[1]) for k, v in answers.items()} == {
        k: (403, True) for k in answers
    }
    assert world.warehouse.lease_alive(bob["lease_id"])
    assert world.warehouse.accessor_alive(bob["accessor"])
    # The default policy's lease paths: why the kernel's profile drops that policy.
    client: hvac.Client = world.bao.client()
    default = client.auth.token.create(policies=["default"], ttl="2m")["auth"]["client_token"]
    try:
        as_default = world.bao.client(default)
        looked = as_default.write_data("sys/leases/lookup", data={"lease_id": bob["lease_id"]})
        assert looked["data"]["id"] == bob["lease_id"]
        renewed = as_default.sys.renew_lease(bob["lease_id"])
        assert renewed["lease_id"] == bob["lease_id"]
    finally:
        client.auth.token.revoke(default)


# --------------------------------------------------------------------------------------------
# 4. the ledger rewritten by a process that outlives alice's server

CASES = ("modified", "deleted", "inserted", "truncated")


@dataclass
class Round:
    """One tampering: what alice's process did, and what the verifier said."""

    tampered: dict[str, Any]
    with_head: Verdict
    without_head: Verdict
    restored: Verdict


@dataclass
class Tampering:
    """The tamperer's run: where it stood, the untouched ledger's verdict, and every round."""

    helper: dict[str, Any]  # its pid, parent and session once detached
    server_tree: set[int]  # the server's descendants just before it was stopped
    kernel_pid: int
    baseline: Verdict
    rounds: dict[str, Round]
    head_seq: int  # the service's head while alice tampered
    sealed: dict[int, dict[str, Any]]  # the untouched ledger by seq


@pytest.fixture(scope="module")
def tampering(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tampering]:
    """A second service and ledger (so that tampering never meets the other tests' traffic),
    alice's server as its client, and her tamperer, started from her kernel, outliving it."""
    alice_pw = pwd.getpwnam(ALICE)
    logs = tmp_path_factory.mktemp("boundary-tamper")
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(throwaway_database(world.admin))
        base = run_dir()
        stack.callback(shutil.rmtree, base, True)
        service = start_service_as(
            SERVICE_USER, base, logs / "service.log", dsn, world.bao, world.profiles
        )
        stack.callback(service.stop)
        public_key = logs / "service-public-key.pem"
        fetch = [JUPYTER, "prod-discovery", "audit", "public-key", "--service", service.url]
        subprocess.run([*fetch, "-o", str(public_key)], check=True, capture_output=True, timeout=60)
        # The test drives the rounds from a dir alice reads; she reports in one only she writes.
        control = Path(tempfile.mkdtemp(prefix="pd-tamper-", dir=SHARED_TMP))
        stack.callback(shutil.rmtree, control, True)
        control.chmod(0o755)
        stack.callback(kill_marked, alice_pw.pw_uid, str(control))  # the tamperer, at the latest
        out = make_dir(control / "out", alice_pw, 0o700)
        server = UserServer(ALICE, logs / "alice.log", env={URL_ENV: service.url}, args=SERVER_ARGS)
        stack.callback(server.stop)
        server.start()
        assert "PDROWS 3 True" in server.execute(ROWS.format(prefix=world.warehouse.prefix))
        kpid = kernel_pid(server)
        plain = conninfo_to_dict(dsn)
        helper_argv = [
            users_python(),
            str(TAMPERER),
            "--detach",
            "--dsn",
            make_conninfo("", **{k: str(v) for k, v in plain.items() if k != "password"}),
            "--user",
            ALICE,
            "--control",
            str(control),
            "--out",
            str(out),
            "--wait-pid",
            str(server.pid),
        ]
        launch = (
            "import os, subprocess\n"
            f"_env = {{'HOME': os.environ['HOME'], 'PATH': '/usr/bin:/bin', 'LANG': 'C.UTF-8'}}\n"
            f"with open({str(out / 'helper.log')!r}, 'ab') as _log:\n"
            f"    subprocess.Popen({helper_argv!r}, start_new_session=True, env=_env,\n"
            "        stdin=subprocess.DEVNULL, stdout=_log, stderr=_log).wait()\n"
        )
        server.execute(launch)
        helper = wait_for(json_file(out / "pid.json"), 30, "the tamperer's pid")
        # UserServer.stop kills whatever descends from the server: the tamperer must not.
        tree = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        leases = [x["lease_id"] for x in own_leases(server)]
        server.stop()
        wait_for(json_file(out / "server-gone.json"), 30, "the tamperer to see the server gone")
        # Her kernel's credentials revoked and sealed: nothing is left to reap, the ledger rests.
        wait_for(
            lambda: not any(world.warehouse.lease_alive(x) for x in leases if "/" in x),
            30,
            "her kernel's lease revoked",
        )
        head_seq = quiet_head(service, still=1.5)
        baseline = verify(dsn, public_key, service.url)
        tables = snapshot(dsn)
        sealed = {int(json.loads(r[-1])["seq"]): json.loads(r[-1]) for r in tables[LEDGER]}
        rounds: dict[str, Round] = {}
        for n, case in enumerate(CASES):
            (control / f"go-{n}-{case}").write_text("")
            tampered = wait_for(
                json_file(out / f"done-{n}-{case}.json"), 30, f"the tamperer's {case} round"
            )
            with_head = verify(dsn, public_key, service.url)
            without_head = verify(dsn, public_key, None)
            restore(dsn, tables)
            restored = verify(dsn, public_key, service.url)
            rounds[case] = Round(tampered, with_head, without_head, restored)
        (control / "exit").write_text("")
        wait_for(lambda: not psutil.pid_exists(int(helper["pid"])), 30, "the tamperer to exit")
        yield Tampering(helper, tree, kpid, baseline, rounds, head_seq, sealed)


def test_tamperer_outlived_alice_server(tampering: Tampering) -> None:
    """Alice's process left her server's tree and acted after it stopped; before it acted, the
    untouched ledger verified (so every failure below is the tampering's doing); after each
    round, the restored ledger verified again (so each round is judged alone)."""
    assert tampering.helper["pid"] not in tampering.server_tree
    assert tampering.helper["ppid"] != tampering.kernel_pid
    assert tampering.helper["sid"] == tampering.helper["pid"]
    assert tampering.baseline.code == 0, tampering.baseline.output
    assert "intact" in tampering.baseline.output
    for case, round_ in tampering.rounds.items():
        assert "error" not in round_.tampered, (case, round_.tampered)
        assert round_.restored.code == 0, (case, round_.restored.output)


@pytest.mark.parametrize("case", ["modified", "deleted", "inserted"])
def test_verify_names_first_break(tampering: Tampering, case: str) -> None:
    """A rewritten, deleted or forged record: exit 1, naming its seq and what happened."""
    round_ = tampering.rounds[case]
    seq = round_.tampered["seq"]
    assert round_.with_head.code == 1, round_.with_head.output
    assert f"(seq {seq}): {case}" in round_.with_head.output, round_.with_head.output
    assert round_.without_head.code == 1, round_.without_head.output
    if case == "inserted":  # her own signature on a checkpoint counts for nothing
        assert "ignored: not signed by a trusted key" in round_.with_head.output
    else:  # what she rewrote or removed is the cell that started her tamperer
        target = tampering.sealed[seq]
        assert target["principal"]["username"] == ALICE and target["kind"] == "execution"
        assert TAMPERER.name in target["data"]["code"]


def test_verify_catches_cut_tail_only_with_service_head(tampering: Tampering) -> None:
    """The last signed batch deleted with its checkpoint looks intact to the key alone; the
    service's signed head says how far the ledger went."""
    round_ = tampering.rounds["truncated"]
    kept = round_.tampered["seq"] - 1
    assert round_.without_head.code == 0, round_.without_head.output
    assert round_.with_head.code == 1, round_.with_head.output
    assert f"(seq {kept}): truncated" in round_.with_head.output, round_.with_head.output
    assert f"the service's head is seq {tampering.head_seq}" in round_.with_head.output


# --------------------------------------------------------------------------------------------
# 5. the service's files and socket; who the socket says you are


def test_alice_cannot_read_state_or_replace_socket(world: World) -> None:
    """The state dir (signing key, lease journal) is closed to alice, the socket dir is not hers
    to write. Control: the service's user reads and writes the same paths."""
    args = [
        str(world.state_dir),
        str(world.key_file),
        str(world.base),
        world.service.socket_path,
    ]
    alice = run_as(ALICE, [users_python(), "-c", FILES, *args, "--writes"])
    assert alice == {
        "list_state": "EACCES",
        "read_key": "EACCES",
        "create_in_socket_dir": "EACCES",
        "unlink_socket": "EACCES",
        "move_socket": "EACCES",
    }
    owner = run_as(SERVICE_USER, [users_python(), "-c", FILES, *args])
    assert owner == {"list_state": "ok", "read_key": "ok", "create_in_socket_dir": "ok"}
    assert Path(world.service.socket_path).exists()


def test_socket_authenticates_alice_as_herself_only(world: World) -> None:
    """Whatever alice sends, from a plain process, her kernel or as root of a user namespace of
    her own, the service knows her as pdalice; it listens on no TCP port where a token would do.
    Control: bob and pdsvc on the same socket are told apart."""

    def principals(answer: dict[str, Any]) -> set[tuple[int, str, str]]:
        return {
            (status, body["principal"]["username"], body["principal"]["via"])
            for status, body in ((s, json.loads(b)) for s, b in answer["answers"])
        }

    sock = world.service.socket_path
    alice = run_as(ALICE, [users_python(), "-c", whoami(), sock])
    assert principals(alice) == {(200, "pdalice", "peer-uid")}
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is missing"
    in_userns = run_as(
        ALICE, [unshare, "--user", "--map-root-user", users_python(), "-c", whoami(), sock]
    )
    assert in_userns["uid"] == 0, "not root in her user namespace: the attack did not run"
    assert principals(in_userns) == {(200, "pdalice", "peer-uid")}
    from_kernel = marked_json(world.alice.execute(whoami(repr(sock), "PDJSON")))
    assert principals(from_kernel) == {(200, "pdalice", "peer-uid")}
    assert principals(run_as(BOB, [users_python(), "-c", whoami(), sock])) == {
        (200, "pdbob", "peer-uid")
    }
    assert principals(run_as(SERVICE_USER, [users_python(), "-c", whoami(), sock])) == {
        (200, "pdsvc", "peer-uid")
    }
    listening = psutil.Process(world.service_side.pid).net_connections(kind="inet")
    assert [c for c in listening if c.status == psutil.CONN_LISTEN] == []
