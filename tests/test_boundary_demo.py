"""The attacker suite against the standalone demo, started as root.

``jupyter prod-discovery demo`` started as root separates: OpenBao and the trusted service run as
``pd-demo-svc`` (the service with the only Vault token in its environment and the ed25519 signing
key in its 0700 state dir), JupyterLab with its kernels and terminals as ``pd-demo``; the demo
process itself (root) keeps the cleanup token in memory, and OpenBao's root token was revoked
after seeding. The README promises that the data scientist obtains none of these; the standalone
attacker suite (``test_boundary_service.py``) proves it for a service the tests assemble, this
module for the demo exactly as a reader runs it (``DemoProcess``, the banner's URL and token).

What each test shows, and how it could fail:

1. the needles are real: root reads each secret where the trusted side holds it (the service's
   ``/proc/<pid>/environ``, its state dir, the demo's and OpenBao's memory) and OpenBao confirms
   what each token is (the service's live, the cleanup token able to revoke database leases, the
   root token refused);
2. the probe (``tests/attacks/probe.py``) from pd-demo's notebook kernel and from pd-demo's
   terminal finds none of them and opens no process of another user; a decoy of pd-demo's own
   is found by every probe (so no probe passes by reading nothing);
3. the same probe as ``pd-demo-svc`` does find the service's token, its key and OpenBao's root
   token (so the needles match what a process of the right uid could read), and not the demo's
   cleanup token, which is root's;
4. root's view: no process of pd-demo (JupyterLab, a kernel, a terminal's shell) holds any of
   them, readable or not;
5. with the child token pd-demo's kernel holds, Vault refuses every lease and token operation on
   another kernel's credentials and every policy, mount and engine-config read.

Module-scoped: one demo for every test (~10 s to start), stopped with Ctrl-C (SIGINT) at
teardown, which fails if the demo exits uncleanly or leaves a process of its tree. Needs root,
PostgreSQL and ``.venv-users`` (``bash scripts/install.sh``); skipped without them on a
workstation, failed under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import psutil
import pytest
from boundary_demo_support import (
    DemoLab,
    cleanup_token_of,
    held_by,
    lab_tree,
    real_uids,
    revoked_tokens_in_openbao,
    token_shape,
)
from boundary_service_support import (
    VAULT_CALLS,
    Side,
    environ_of,
    marked_json,
    own_leases,
    signing_key_needle,
    vault_token_needle,
)
from boundary_support import (
    SecretHolder,
    by_name,
    foreign_access,
    leaks,
    misses,
    probe_as,
    probe_config,
    users_python,
)

from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.runner import DEFAULT_DSN
from jupyter_prod_discovery.demo.seed import ANALYST_POLICY, postgres_reachable
from jupyter_prod_discovery.demo.topology import DEMO_USER, SERVICE_USER
from jupyter_prod_discovery.demo.trusted import SERVICE_POLICY
from jupyter_prod_discovery.pytest_plugin import require
from jupyter_prod_discovery.service.vault_policy import KERNEL_POLICY

pytestmark = [
    pytest.mark.boundary,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(120),
]

#: The probe's whole run from a kernel or a terminal (a few seconds here).
PROBE_BUDGET_S = 20.0
#: The service-user control reads all of OpenBao's heap: its root token is somewhere in it.
WHOLE_HEAP = 1 << 30
#: What a kernel prints to show it read the sample data with its own login.
ROWS = """\
import psycopg
with psycopg.connect("", connect_timeout=5) as _c:
    print("PDROWS", _c.execute("select count(*) from customers").fetchone()[0])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_dsn() -> str:
    return os.environ.get("PROD_DISCOVERY_DEMO_DSN") or DEFAULT_DSN


# --------------------------------------------------------------------------------------------
# the world: the demo as root, its secrets as needles, pd-demo's decoy and JupyterLab


@dataclass
class DemoWorld:
    """The running demo, pd-demo's way into it, and the needles of what pd-demo must not get."""

    demo: DemoProcess
    lab: DemoLab
    decoy: SecretHolder
    service: Side  # the service's Vault token and signing key
    keeper: Side  # the demo process (root): the cleanup token
    bao: Side  # OpenBao: its revoked root token
    service_token: str
    cleanup_token: str | None
    root_tokens: list[str]  # token-shaped, refused, in OpenBao's heap: its root token
    logs: Path

    @property
    def workdir(self) -> Path:
        return Path(self.demo.workdir)

    @property
    def bao_address(self) -> str:
        return f"http://127.0.0.1:{self.demo.bao_port}"

    def sides(self) -> list[Side]:
        return [self.service, self.keeper, self.bao]

    def needles(self) -> dict[str, str]:
        return {label: n for side in self.sides() for label, n in side.needles().items()}

    def attacker_config(self) -> dict[str, Any]:
        """Everything pd-demo attacks: the trusted side's processes, files, socket and OpenBao's
        port, beside its own JupyterLab dirs and its decoy."""
        home = pwd.getpwnam(DEMO_USER).pw_dir
        own = ["config", "runtime", "lab", "notebooks", "trail"]
        return probe_config(
            {**self.needles(), **self.decoy.needles()},
            pids=[self.decoy.pid, self.service.pid, self.keeper.pid, self.bao.pid],
            paths=[
                *self.service.paths(),
                *(str(self.workdir / d) for d in own),
                home,
                *self.decoy.paths(),
            ],
            unix=[*self.service.unix(), *self.decoy.unix()],
            tcp=[
                {
                    "host": "127.0.0.1",
                    "port": self.demo.bao_port,
                    "request_hex": b"GET /v1/sys/health HTTP/1.0\r\n\r\n".hex(),
                },
                *self.decoy.tcp(),
            ],
        )


def stop_demo(demo: DemoProcess) -> None:
    """Ctrl-C, as a user stops it; then nothing of its tree may be left (else a teardown error).

    ``cleanup`` kills whatever is left either way, so a failed stop never outlives the module; a
    demo that never served is only cleaned up (its start already failed the module).
    """
    served, tree = bool(demo.url), demo.tree()
    try:
        code = demo.stop()
        alive = [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        leftover = [p.pid for p in demo.leftover_processes()]
    finally:
        demo.cleanup()
    if not served:
        return
    assert code == 0, f"the demo exited with {code}:\n{demo.output[-3000:]}"
    assert alive == [] and leftover == [], f"left running: {alive} {leftover}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    require(os.geteuid() == 0, "the separated demo needs to be started as root")
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    users_python()  # .venv-users exists and other users can run it
    logs = tmp_path_factory.mktemp("boundary-demo")  # root's: pd-demo reads none of it
    demo = DemoProcess(free_port())
    with contextlib.ExitStack() as stack:
        stack.callback(stop_demo, demo)
        demo.start(timeout=60)
        assert demo.proc is not None and demo.bao_port is not None
        users = {part: user for part, (user, _) in demo.parts.items()}
        assert users == {"openbao": SERVICE_USER, "service": SERVICE_USER, "lab": DEMO_USER}, (
            demo.output[-3000:]
        )
        service_pid, bao_pid = demo.parts["service"][1], demo.parts["openbao"][1]
        # Before any kernel exists: the only tokens OpenBao has seen are the demo's three.
        service_token = environ_of(service_pid)["VAULT_TOKEN"]
        shape = token_shape(service_token)
        cleanup = cleanup_token_of(demo, shape)
        root_tokens = revoked_tokens_in_openbao(demo, shape, [service_token, cleanup or ""])
        workdir = Path(demo.workdir)
        key_file = workdir / "service-state" / "audit-signing-key.pem"
        service = Side(
            service_pid,
            {
                "service:vault_token": vault_token_needle(service_token),
                "service:signing_key": signing_key_needle(key_file),
            },
            [
                str(workdir),  # traversable, not listable
                *(str(workdir / d) for d in ("service-state", "socket", "openbao-home", "logs")),
                str(workdir / "service.json"),
                pwd.getpwnam(SERVICE_USER).pw_dir,
            ],
            [{"path": demo.socket_path, "request_hex": b"GET /api/status HTTP/1.0\r\n\r\n".hex()}],
        )
        keeper = Side(
            demo.proc.pid, {"demo:cleanup_token": vault_token_needle(cleanup)} if cleanup else {}
        )
        # One expected; should there be more, each is a needle of its own (the first test fails).
        bao = Side(
            bao_pid,
            {
                "openbao:root_token" if n == 0 else f"openbao:revoked_{n + 1}": vault_token_needle(
                    t
                )
                for n, t in enumerate(root_tokens)
            },
        )
        decoy = SecretHolder(
            DEMO_USER, "decoy", logs / "decoy.log", leak_argv=True, tcp_answers_everyone=True
        )
        stack.callback(decoy.stop)
        decoy.start()
        lab = DemoLab(demo, DEMO_USER, logs / "lab.log").start()
        stack.callback(lab.stop)
        yield DemoWorld(
            demo=demo,
            lab=lab,
            decoy=decoy,
            service=service,
            keeper=keeper,
            bao=bao,
            service_token=service_token,
            cleanup_token=cleanup,
            root_tokens=root_tokens,
            logs=logs,
        )


# --------------------------------------------------------------------------------------------
# 1. the needles are what the trusted side holds


def test_needles_are_what_the_trusted_side_holds(world: DemoWorld) -> None:
    """Root finds each secret where the demo keeps it, and OpenBao says what each token is.

    Without this, a needle of the wrong secret would make every probe below pass vacuously.
    The cleanup token is the one token in the demo's memory that may revoke database leases; the
    root token is the one token in OpenBao's heap that is neither of those and is refused (it
    was revoked after seeding, and the log keeps it redacted).
    """
    service = hvac.Client(url=world.bao_address, token=world.service_token, timeout=5)
    policies = service.auth.token.lookup_self()["data"]["policies"]
    assert SERVICE_POLICY in policies and "root" not in policies
    assert world.cleanup_token, "no token in the demo's memory can revoke database leases"
    assert world.cleanup_token != world.service_token
    assert len(world.root_tokens) == 1, f"{len(world.root_tokens)} refused tokens in OpenBao"
    log = (world.workdir / "logs" / "openbao.log").read_text()
    assert "revoked lease: lease_id=auth/token/root/" in log
    assert world.bao.needles()["openbao:root_token"] not in log
    # Each needle is a fragment of its secret's random part, distinct from every other.
    assert len(set(world.needles().values())) == len(world.needles()) == 4


# --------------------------------------------------------------------------------------------
# 2. pd-demo's kernel and terminal


def assert_boundary_held(report: dict[str, Any], world: DemoWorld) -> None:
    """Nothing of the service, the demo or OpenBao; no other user's process opened; every probe
    able to see (the decoy)."""
    assert report["uid"] == pwd.getpwnam(DEMO_USER).pw_uid
    assert world.lab.pid in report["ancestors"], "the probe did not run under the demo's lab"
    for side in world.sides():
        assert side.pid in report["foreign"], f"{side.pid} is not another user's process"
    assert report["seconds"] < PROBE_BUDGET_S
    for side in world.sides():
        assert leaks(report, side) == {}
    assert foreign_access(report, allowed=[world.decoy.pid]) == {}
    assert misses(report, world.decoy) == []


def test_kernel_obtains_no_trusted_secret(world: DemoWorld) -> None:
    """pd-demo's notebook kernel: where the data scientist (or a compromised package) runs code."""
    report = world.lab.probe_in_kernel(world.attacker_config())
    assert_boundary_held(report, world)


def test_terminal_obtains_no_trusted_secret(world: DemoWorld) -> None:
    """pd-demo's terminal in JupyterLab: no kernel hook sees it, only the uid boundary holds."""
    report = world.lab.probe_in_terminal(world.attacker_config())
    assert_boundary_held(report, world)
    assert world.lab.last_exit_status == 0


# --------------------------------------------------------------------------------------------
# 3. the same probe as the service's user


def test_probe_as_service_user_finds_service_secrets(world: DemoWorld) -> None:
    """Positive control: one uid closer, the same probe reaches the service's signing key (state
    dir) and OpenBao's root token (OpenBao's memory); the service itself, started with
    capabilities, is non-dumpable even to its own user.

    The demo process stays root's: not even the service's user opens it. (Its cleanup token is in
    OpenBao's heap too, and OpenBao runs as the service's user: in the demo that user is OpenBao's
    administrator, as the README's platform admin is trusted with Vault.)
    """
    config = probe_config(
        world.needles(),
        pids=[world.service.pid, world.bao.pid, world.keeper.pid],
        paths=world.service.paths(),
        unix=world.service.unix(),
    )
    config["mem_cap"] = WHOLE_HEAP
    # pd-demo-svc's home (/nonexistent) does not exist: the probe runs from /.
    report = probe_as(SERVICE_USER, config, cwd="/")
    assert report["uid"] == pwd.getpwnam(SERVICE_USER).pw_uid
    probes = by_name(report)
    # The service starts with CAP_SETUID/CAP_SETGID (it runs clean runs as the sandbox user),
    # so Linux made it non-dumpable: not even its own user reads its environment or memory.
    assert "service:vault_token" not in probes["proc_environ"]["found"]
    assert str(world.service.pid) not in probes["proc_mem"]["found"].get("service:vault_token", [])
    # The same probes do reach what that user can: the state dir's signing key, and OpenBao's
    # memory (same user, dumpable), which holds OpenBao's root token.
    assert "service:signing_key" in probes["files"]["found"]
    assert "openbao:root_token" in probes["proc_mem"]["found"]
    # The demo process is root's: the service's user opens nothing of it.
    assert foreign_access(report, allowed=[world.service.pid, world.bao.pid]) == {}
    assert not any(str(world.keeper.pid) in p["access"] for p in report["probes"])
    # OpenBao runs as the service's user and saw every token: its heap hands that user the
    # cleanup token too (the demo's own copy stays out of reach).
    assert set(probes["proc_mem"]["found"].get("demo:cleanup_token", [])) <= {str(world.bao.pid)}


# --------------------------------------------------------------------------------------------
# 4. root's view of pd-demo's processes


def test_no_process_of_pd_demo_holds_a_trusted_secret(world: DemoWorld) -> None:
    """Whether or not pd-demo could read it, nothing pd-demo runs holds a trusted secret.

    JupyterLab is non-dumpable, so the probe from its kernel cannot look inside it; root can.
    JupyterLab, a kernel and a terminal's shell are all searched, environment and memory.
    Controls: the same search finds the service's token in the service and the cleanup token in
    the demo process.
    """
    world.lab.execute("1")  # a kernel to search
    terminal = str(world.lab.api("POST", "/api/terminals")["name"])
    try:
        owners = real_uids(lab_tree(world.demo))
        tree = sorted(owners)
        assert len(tree) >= 3, f"JupyterLab, a kernel and a shell expected, got {tree}"
        assert set(owners.values()) == {pwd.getpwnam(DEMO_USER).pw_uid}
        assert held_by(tree, world.needles()) == {}
    finally:
        world.lab.api("DELETE", f"/api/terminals/{terminal}")
    service = held_by([world.service.pid], world.service.needles())
    assert service.get("service:vault_token") == [world.service.pid]
    keeper = held_by([world.keeper.pid], world.keeper.needles())
    assert keeper.get("demo:cleanup_token") == [world.keeper.pid]


# --------------------------------------------------------------------------------------------
# 5. Vault, with what pd-demo's kernel holds


def test_vault_refuses_kernel_token_beyond_itself(world: DemoWorld) -> None:
    """The child token in pd-demo's kernel reaches no other lease or token and reads no policy,
    mount or engine config: permission denied for each, while it works on itself.

    The target is a second kernel's credentials, by the ids JupyterLab lists (no secrets).
    Controls: the second kernel still reads the database and its token is alive afterwards; and
    a token with Vault's default policy (what kernels would get without the service's hardening)
    does look the lease up, so the refusals are the kernel policy's doing, not a wrong id.
    """
    kernel = world.lab
    other = DemoLab(world.demo, DEMO_USER, world.logs / "lab-other.log")
    try:
        assert "PDROWS 200" in other.execute(ROWS)
        leases = {x["profile"]: x["lease_id"] for x in own_leases(other)}
        lease, accessor = leases["prod-db"], leases["vault-token"].removeprefix("accessor:")
        own = kernel.execute(
            "import hvac, json\n"
            "print('PDJSON' + json.dumps(hvac.Client().auth.token.lookup_self()['data']))\n"
        )
        mine = marked_json(own)
        assert sorted(mine["policies"]) == sorted([ANALYST_POLICY, KERNEL_POLICY]), mine
        assert mine["accessor"] != accessor
        attacker = 'path "*" { capabilities = ["create", "read", "update", "delete", "sudo"] }'
        calls: dict[str, list[Any]] = {
            "lookup_self": ["auth/token/lookup-self", None],
            "lease_lookup": ["sys/leases/lookup", {"lease_id": lease}],
            "lease_renew": ["sys/leases/renew", {"lease_id": lease}],
            "lease_revoke": ["sys/leases/revoke", {"lease_id": lease}],
            "lease_list": ["sys/leases/lookup/database/creds/analyst?list=true", None],
            "lease_revoke_prefix": ["sys/leases/revoke-prefix/database/creds", {}],
            "accessor_lookup": ["auth/token/lookup-accessor", {"accessor": accessor}],
            "accessor_renew": ["auth/token/renew-accessor", {"accessor": accessor}],
            "accessor_revoke": ["auth/token/revoke-accessor", {"accessor": accessor}],
            "token_create": ["auth/token/create", {"policies": [SERVICE_POLICY]}],
            "policy_list": ["sys/policy", None],
            "policy_read_service": [f"sys/policy/{SERVICE_POLICY}", None],
            "policy_read_own": [f"sys/policies/acl/{ANALYST_POLICY}", None],
            "policy_write": ["sys/policies/acl/pd-test-attacker", {"policy": attacker}],
            "mounts": ["sys/mounts", None],
            "auth_methods": ["sys/auth", None],
            "mount_tune": ["sys/mounts/database/tune", None],
            "database_config": ["database/config/prod_discovery_demo", None],
            "database_roles": ["database/roles?list=true", None],
            "kv_list": ["secret/metadata?list=true", None],
        }
        answers = marked_json(kernel.execute(f"CALLS = {calls!r}\n" + VAULT_CALLS))
        assert answers.pop("lookup_self")[0] == 200, "the kernel's token is not live"
        assert {k: (v[0], "permission denied" in v[1]) for k, v in answers.items()} == {
            k: (403, True) for k in answers
        }
        # Nothing of the other kernel's was touched.
        assert "PDROWS 200" in other.execute(ROWS)
        itself = {"lookup_self": calls["lookup_self"]}
        alive = marked_json(other.execute(f"CALLS = {itself!r}\n" + VAULT_CALLS))
        assert alive["lookup_self"][0] == 200
        # The default policy's lease paths: why the service gives kernels its own policy.
        service = hvac.Client(url=world.bao_address, token=world.service_token, timeout=5)
        child = service.auth.token.create(policies=["default"], ttl="2m")["auth"]["client_token"]
        as_default = hvac.Client(url=world.bao_address, token=child, timeout=5)
        try:
            looked = as_default.write_data("sys/leases/lookup", data={"lease_id": lease})
            assert looked["data"]["id"] == lease
        finally:
            as_default.auth.token.revoke_self()
    finally:
        other.stop()
