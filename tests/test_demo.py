"""The one-command demo: seeding and the Vault hand-over on real OpenBao and PostgreSQL, and the
demo process end to end (as root: the separated topology with real OS users)."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import psutil
import psycopg
import pytest
import requests

from jupyter_prod_discovery.demo.binder import write_user_config
from jupyter_prod_discovery.demo.openbao import DevServer
from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.runner import DEFAULT_DSN
from jupyter_prod_discovery.demo.seed import (
    ANALYST_POLICY,
    drop_leftover_roles,
    generate_customers,
    postgres_reachable,
    revoke_database_leases,
    seed_vault,
)
from jupyter_prod_discovery.demo.topology import (
    DEMO_USER,
    SERVICE_USER,
    ensure_account,
    users_venv,
)
from jupyter_prod_discovery.demo.trusted import SERVICE_POLICY, hand_over_vault
from jupyter_prod_discovery.pytest_plugin import require
from jupyter_prod_discovery.service.ledger import read_lines
from jupyter_prod_discovery.service.vault_policy import KERNEL_POLICY

SSN = re.compile(r"^(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def roles_with_prefix(dsn: str, prefix: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select rolname from pg_roles where starts_with(rolname, %s)", (prefix,)
        ).fetchall()
    return [r[0] for r in rows]


# --- seeding ---------------------------------------------------------------------------------


def test_generate_customers_realistic_and_deterministic() -> None:
    rows = list(generate_customers(200))
    assert rows == list(generate_customers(200))
    assert len({r["email"] for r in rows}) == 200
    for r in rows:
        assert SSN.match(r["ssn"]), r["ssn"]
        assert r["ssn"] not in ("078-05-1120", "123-45-6789")
        assert re.match(r"^\(\d{3}\) \d{3}-\d{4}$", r["phone"])
        assert "@" in r["email"]


def test_seed_vault_without_postgres(openbao: DevServer) -> None:
    port = free_port()  # nothing listens there
    dsn = f"postgresql://postgres:pw-not-shown@127.0.0.1:{port}/postgres"
    result = seed_vault(openbao.client(), dsn=dsn)
    assert not result.has_database
    assert any("unreachable" in n for n in result.notes)
    secret = openbao.client().secrets.kv.v2.read_secret_version(
        path=result.kv_path, mount_point=result.kv_mount, raise_on_deleted_version=True
    )
    assert set(secret["data"]["data"]) == set(result.kv_keys)
    assert [p["type"] for p in result.profiles()] == ["token", "kv"]
    assert "pw-not-shown" not in repr(result)


def test_seed_vault_database_creds_revoked(openbao: DevServer, postgres_dsn: str) -> None:
    client = openbao.client()
    result = seed_vault(client, dsn=postgres_dsn)
    assert result.has_database and result.role_prefix and result.customers >= 200
    creds = client.read(f"{result.database_mount}/creds/{result.database_role}")
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert user.startswith(result.role_prefix)
    assert creds["lease_duration"] <= 600
    # The analyst policy grants exactly what the profiles read.
    analyst = client.auth.token.create(policies=result.policies, ttl="5m")["auth"]["client_token"]
    scoped = hvac.Client(url=openbao.address, token=analyst)
    assert scoped.read(f"{result.database_mount}/creds/{result.database_role}")["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        scoped.sys.list_mounted_secrets_engines()
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", 5432)
    session = psycopg.connect(
        f"postgresql://{user}:{password}@{host}:{port}/{result.database}", autocommit=True
    )
    try:
        row = session.execute("select count(*), min(ssn) from customers").fetchone()
        assert row is not None and row[0] >= 200
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("delete from customers")
        revoke_database_leases(client, result.database_mount or "database")
        # Revocation terminated the open session and dropped the role.
        with pytest.raises(psycopg.OperationalError):
            session.execute("select 1")
    finally:
        session.close()
    assert roles_with_prefix(postgres_dsn, result.role_prefix) == []


def test_drop_leftover_roles_after_server_lost(postgres_dsn: str) -> None:
    server = DevServer().start()
    try:
        result = seed_vault(server.client(), dsn=postgres_dsn)
        assert result.role_prefix
        server.client().read("database/creds/analyst")
    finally:
        server.stop()  # leases outstanding: the role stays behind in PostgreSQL
    assert len(roles_with_prefix(postgres_dsn, result.role_prefix)) == 1
    assert len(drop_leftover_roles(postgres_dsn, result.role_prefix)) == 1
    assert roles_with_prefix(postgres_dsn, result.role_prefix) == []


def test_drop_leftover_roles_refuses_broad_prefix(postgres_dsn: str) -> None:
    for prefix in ("", "v-", "postgres", "v-p"):
        with pytest.raises(ValueError, match="broad prefix"):
            drop_leftover_roles(postgres_dsn, prefix)


def test_hand_over_vault_revokes_root_and_keeps_two_narrow_tokens(
    openbao: DevServer, postgres_dsn: str
) -> None:
    """After seeding no root token works; the service's token issues what the profiles need and
    nothing else; the demo's cleanup token can only revoke the database leases."""
    root = openbao.client()
    seed = seed_vault(root, dsn=postgres_dsn)
    assert seed.role_prefix
    try:
        handover = hand_over_vault(root, seed.profiles(), seed.database_mount or "database")
        assert not openbao.client().is_authenticated()  # revoked, not merely forgotten
        assert handover.service_token not in repr(handover)
        service = hvac.Client(url=openbao.address, token=handover.service_token, timeout=5)
        creds = service.read(f"{seed.database_mount}/creds/{seed.database_role}")
        assert creds["data"]["username"].startswith(seed.role_prefix)
        child = service.auth.token.create(policies=[ANALYST_POLICY], ttl="5m")
        assert child["auth"]["policies"] == ["default", ANALYST_POLICY]
        with pytest.raises(hvac.exceptions.Forbidden):
            service.sys.list_mounted_secrets_engines()
        with pytest.raises(hvac.exceptions.Forbidden):
            service.sys.create_or_update_policy("mine", 'path "*" { capabilities = ["sudo"] }')
        cleanup = hvac.Client(url=openbao.address, token=handover.cleanup_token, timeout=5)
        with pytest.raises(hvac.exceptions.Forbidden):
            cleanup.read(f"{seed.database_mount}/creds/{seed.database_role}")
        assert len(roles_with_prefix(postgres_dsn, seed.role_prefix)) == 1
        revoke_database_leases(cleanup, seed.database_mount or "database")
        assert roles_with_prefix(postgres_dsn, seed.role_prefix) == []
    finally:
        drop_leftover_roles(postgres_dsn, seed.role_prefix)


# --- the demo process ------------------------------------------------------------------------
#
# Run as root (sessions and CI are), the demo separates: OpenBao and the trusted service as
# pd-demo-svc, JupyterLab with its kernels as pd-demo. Elsewhere it runs in same-user mode and the
# tests that need the separation skip (and fail under CI=true).


def demo_dsn() -> str:
    return os.environ.get("PROD_DISCOVERY_DEMO_DSN") or DEFAULT_DSN


def require_root() -> None:
    require(os.geteuid() == 0, "the separated topology needs the demo started as root")


def environ_of(pid: int) -> dict[str, str]:
    """A process's environment, read as root (JupyterLab is non-dumpable: root only)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def uid_of(pid: int) -> int:
    """The real uid of ``pid`` from ``/proc/<pid>/status`` (its "Uid:" line)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def verify(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a banner's ``jupyter prod-discovery audit verify ...`` with this interpreter."""
    assert command[:4] == ["jupyter", "prod-discovery", "audit", "verify"], command
    return subprocess.run(
        [sys.executable, "-m", "jupyter_prod_discovery.cli", *command[2:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoProcess]:
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    proc = DemoProcess(free_port())
    try:
        yield proc.start(timeout=30)  # acceptance: JupyterLab serves within 30 s
    finally:
        proc.cleanup()


def test_serve_demo_status_client_of_the_service(demo: DemoProcess) -> None:
    """JupyterLab talks to the trusted service, not to Vault: it holds nothing of Vault and
    reports Vault as the service sees it, without an address or identity."""
    r = requests.get(
        f"{demo.url}/prod-discovery/api/status",
        headers={"Authorization": f"token {demo.token}"},
        timeout=10,
    )
    assert r.status_code == 200
    status = r.json()
    assert status["environment"]["name"] == "Prod Discovery (demo)"
    vault = status["vault"]
    assert vault["via"] == "service" and vault["authenticated"] is True
    assert vault["address"] is None and vault["identity"] is None
    assert vault["principal"] == "pd-demo"
    assert status["guards"]["credentials"] is True
    assert status["boundary"]["mode"] == "service"
    assert demo.token not in r.text


def test_serve_demo_refuses_without_token(demo: DemoProcess) -> None:
    r = requests.get(f"{demo.url}/prod-discovery/api/status", timeout=10)
    assert r.status_code == 403


def test_run_demo_parts_as_their_os_users(demo: DemoProcess) -> None:
    """OpenBao and the service as pd-demo-svc, JupyterLab as pd-demo, none as root."""
    require_root()
    assert demo.parts["openbao"][0] == demo.parts["service"][0] == SERVICE_USER
    assert demo.parts["lab"][0] == DEMO_USER
    service_uid, demo_uid = pwd.getpwnam(SERVICE_USER).pw_uid, pwd.getpwnam(DEMO_USER).pw_uid
    assert uid_of(demo.parts["openbao"][1]) == service_uid
    assert uid_of(demo.parts["service"][1]) == service_uid
    assert uid_of(demo.parts["lab"][1]) == demo_uid
    assert service_uid != demo_uid and 0 not in (service_uid, demo_uid)
    # The service's socket is in a directory only it and the demo user may enter.
    socket_dir = Path(demo.socket_path).parent.stat()
    assert (socket_dir.st_uid, socket_dir.st_gid) == (service_uid, pwd.getpwnam(DEMO_USER).pw_gid)
    assert stat.S_IMODE(socket_dir.st_mode) == 0o750
    notebooks = Path(demo.notebooks).stat()
    assert notebooks.st_uid == demo_uid and stat.S_IMODE(notebooks.st_mode) == 0o700
    assert "same-user mode" not in demo.output


def test_run_demo_lab_environment_holds_no_secret(demo: DemoProcess) -> None:
    """No Vault token, DSN or audit key in JupyterLab's environment, by name or by value."""
    require_root()
    lab = environ_of(demo.parts["lab"][1])
    service = environ_of(demo.parts["service"][1])
    forbidden = ("VAULT_", "BAO_", "PROD_DISCOVERY_SERVICE_DSN", "PROD_DISCOVERY_AUDIT_KEY", "PG")
    assert [k for k in lab if k.startswith(forbidden)] == []
    state = Path(demo.workdir) / "service-state" / "audit-signing-key.pem"
    signing_key = "".join(state.read_text().splitlines()[1:-1])
    values = "\0".join(lab.values())
    for secret in (service["VAULT_TOKEN"], service["PROD_DISCOVERY_SERVICE_DSN"], signing_key):
        assert secret and secret not in values
    # OpenBao got no root token id in its environment either: it generated one, which the
    # demo read from a pipe, kept out of the log and revoked after seeding.
    bao = environ_of(demo.parts["openbao"][1])
    assert [k for k in bao if k.startswith(("VAULT_", "BAO_"))] == []
    log = (Path(demo.workdir) / "logs" / "openbao.log").read_text()
    assert "Root Token: <redacted" in log and "revoked lease: lease_id=auth/token/root/" in log


def test_run_demo_service_token_is_least_privilege(demo: DemoProcess) -> None:
    """The only Vault token past seeding: the service's, with its derived policy, no root."""
    require_root()
    service = environ_of(demo.parts["service"][1])
    client = hvac.Client(url=service["VAULT_ADDR"], token=service["VAULT_TOKEN"], timeout=5)
    policies = client.auth.token.lookup_self()["data"]["policies"]
    assert "root" not in policies and SERVICE_POLICY in policies and KERNEL_POLICY in policies
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.list_mounted_secrets_engines()
    with pytest.raises(hvac.exceptions.Forbidden):  # it reads the profiles' paths, no more
        client.secrets.kv.v2.create_or_update_secret(
            path="demo/warehouse", secret={"api_key": "x"}, mount_point="secret"
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.create_or_update_policy("mine", 'path "*" { capabilities = ["sudo"] }')


def run_in_kernel(demo: DemoProcess, code: str) -> str:
    """Start a kernel in the demo, run ``code``, return its stdout (legacy JSON websocket)."""
    import uuid

    import websocket

    headers = {"Authorization": f"token {demo.token}"}
    r = requests.post(
        f"{demo.url}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60
    )
    assert r.status_code == 201
    kid = r.json()["id"]
    ws = websocket.create_connection(
        f"ws://{demo.url.removeprefix('http://')}/api/kernels/{kid}/channels",
        header=[f"Authorization: token {demo.token}"],
        timeout=60,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": uuid.uuid4().hex,
                        "username": "test",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False},
                    "channel": "shell",
                }
            )
        )
        out = []
        while True:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError(msg["content"]["evalue"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
        requests.delete(f"{demo.url}/api/kernels/{kid}", headers=headers, timeout=60)


def test_run_demo_kernel_holds_only_a_child_token(demo: DemoProcess) -> None:
    """The kernel's Vault token is the service's child with the analyst policy, never root."""
    out = run_in_kernel(
        demo, "import hvac; print(*hvac.Client().auth.token.lookup_self()['data']['policies'])"
    )
    policies = out.split()
    assert ANALYST_POLICY in policies and "root" not in policies
    assert set(policies) <= {ANALYST_POLICY, KERNEL_POLICY, "default"}


def test_run_demo_kernel_reads_customers_with_issued_user(demo: DemoProcess) -> None:
    """The WELCOME notebook's step: libpq needs nothing but the kernel's injected environment;
    the kernel runs as the demo user, the login is its own, and PII comes back redacted."""
    out = run_in_kernel(
        demo,
        "import os, psycopg\n"
        "conn = psycopg.connect('')\n"
        "row = conn.execute('select count(*), current_user from customers').fetchone()\n"
        "print(row[0], row[1].startswith('v-'), os.environ['PGUSER'] == row[1], os.getuid())\n"
        "print(conn.execute('select email, ssn from customers limit 5').fetchall())",
    )
    first, rows = out.split("\n", 1)
    count, own_login, injected, uid = first.split()
    assert (count, own_login, injected) == ("200", "True", "True")
    if os.geteuid() == 0:
        assert int(uid) == pwd.getpwnam(DEMO_USER).pw_uid
    assert rows.count("(") == 5  # five rows came back...
    assert not re.search(r"\d{3}-\d{2}-\d{4}", rows) and "@" not in rows  # ...redacted


def test_run_demo_ledger_records_kernel_start_as_demo_user(demo: DemoProcess) -> None:
    """The service sealed the kernel start under the principal it authenticated (peer uid), and
    the banner's command verifies the chain with the service's public key."""
    require_root()
    dsn, chain = option(demo.verify_command, "--dsn"), option(demo.verify_command, "--chain")

    def started() -> list[dict[str, Any]]:
        records = (json.loads(line) for line in read_lines(dsn, chain))
        return [r for r in records if r["kind"] == "kernel" and r["data"]["action"] == "start"]

    eventually(lambda: bool(started()), "a sealed kernel start")
    assert {r["principal"]["username"] for r in started()} == {DEMO_USER}
    done = verify(demo.verify_command)
    assert done.returncode == 0 and "intact" in done.stdout, done.stdout + done.stderr


def test_run_demo_kernel_has_pandas(demo: DemoProcess) -> None:
    """DataFrames are where PII shows: the demo kernel's environment has pandas."""
    out = run_in_kernel(demo, "import pandas; print(pandas.__name__)")
    assert out.strip() == "pandas"


def test_run_demo_user_opens_the_audit_viewer(demo: DemoProcess) -> None:
    """In the demo only, its user plays compliance too: the status grants the audit viewer,
    which reads JupyterLab's copy of its records in the demo's folder and verifies it."""
    headers = {"Authorization": f"token {demo.token}"}
    api = f"{demo.url}/prod-discovery/api"
    status = requests.get(f"{api}/status", headers=headers, timeout=10).json()
    assert status["permissions"]["audit"] is True
    r = requests.get(f"{demo.url}/api/contents/WELCOME.md", headers=headers, timeout=10)
    assert r.status_code == 200

    def welcome_read() -> bool:
        got = requests.get(
            f"{api}/audit/events", params={"type": "contents"}, headers=headers, timeout=10
        )
        assert got.status_code == 200, got.text
        return any(e["data"].get("path") == "WELCOME.md" for e in got.json()["events"])

    eventually(welcome_read, "the contents read in the audit viewer's events")
    verified = requests.get(f"{api}/audit/verify", headers=headers, timeout=30).json()
    assert verified["ok"] is True, verified
    assert (Path(demo.workdir) / "trail" / "audit.jsonl").is_file()


# --- promotion through the service, from the demo --------------------------------------------


def test_run_demo_exports_customers_notebook_signed_by_the_service(
    demo: DemoProcess, tmp_path: Path
) -> None:
    """The README's customers notebook: every gate passes in the service, clean_run included
    (as the sandbox user, with the declared prod-db role, whose database user is gone after);
    the bundle verifies with the published public key only, and papermill runs it. The
    statement holds the notebook's git commit and path (the server's claim) and the customers
    database as a data source, seen by the author's kernel and by the clean run."""
    require_root()
    from export_helpers import statement_fields
    from service_export_support import notebook

    from jupyter_prod_discovery.demo.runner import EXPORT_PUBLIC_KEY
    from jupyter_prod_discovery.demo.topology import SANDBOX_USER
    from jupyter_prod_discovery.export.verify import verify_bundle

    lab = pwd.getpwnam(DEMO_USER)
    repo = Path(demo.notebooks) / "reports"
    repo.mkdir()
    source = repo / "customers_report.ipynb"
    read = (
        "with psycopg.connect('') as conn:\n"
        "    n = conn.execute('select count(*) from customers').fetchone()[0]\n"
        "print(f'{n} customers')"
    )
    nb = notebook("import psycopg", read)
    source.write_text(json.dumps(nb))
    git = ["git", "-c", "core.hooksPath=/dev/null", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run(
        [*git, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-qm", "c"], check=True
    )
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["chown", "-R", f"{lab.pw_uid}:{lab.pw_gid}", str(repo)], check=True)
    # The author reads the table in a kernel of theirs; the service's ledger gets it.
    run_in_kernel(demo, "import psycopg\n" + read)
    dsn, chain = option(demo.verify_command, "--dsn"), option(demo.verify_command, "--chain")

    def author_read_recorded() -> bool:
        return any(
            e["kind"] == "datasource"
            and e["principal"]["username"] == DEMO_USER
            and e["data"]["target"].endswith("/prod_discovery_demo")
            for e in map(json.loads, read_lines(dsn, chain))
        )

    eventually(author_read_recorded, "the author's read of customers in the ledger", 30)
    assert demo.role_prefix
    roles_before = set(roles_with_prefix(demo_dsn(), demo.role_prefix))
    headers = {"Authorization": f"token {demo.token}"}
    api = f"{demo.url}/prod-discovery/api/export-jobs"
    r = requests.post(
        api,
        json={"path": "reports/customers_report.ipynb", "profiles": ["prod-db"]},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while True:
        job = requests.get(f"{api}/{job_id}", headers=headers, timeout=60).json()
        if job["done"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["state"] == "exported", (job["message"], job["gates"])
    gates = {g["name"]: g for g in job["gates"]}
    assert all(g["passed"] for g in gates.values()), gates
    assert "declared credential profiles" in gates["clean_run"]["reason"]
    assert job["signature"]["algorithm"] == "vault-transit"

    bundle = Path(demo.notebooks) / job["bundle"]
    public = (Path(demo.workdir) / EXPORT_PUBLIC_KEY).read_text()
    assert verify_bundle(bundle, [public]) == []  # offline, the published public key only
    fields = statement_fields(bundle)
    assert fields["author"] == DEMO_USER
    assert [r["profile"] for r in fields["declared_roles"]] == ["prod-db"]
    claim = fields["reported_by_server"]["git"]
    assert (claim["commit"], claim["path"], claim["dirty"]) == (
        commit,
        "customers_report.ipynb",
        False,
    )
    (customers,) = [
        s
        for s in fields["session"]["data_sources"]
        if s["kind"] == "dbapi" and s["target"].endswith("/prod_discovery_demo")
    ]
    assert customers["seen_in"] == ["author_session", "clean_run"]

    # The clean run's declared role was issued for the run and revoked after it.
    run = f"{DEMO_USER}/export-run/{job_id}"
    events = [json.loads(line) for line in read_lines(dsn, chain)]
    actions = [
        e["data"]["action"]
        for e in events
        if e["kind"] == "credential" and e["data"].get("kernel_id") == run
    ]
    assert "issue" in actions and "revoke" in actions, actions
    assert set(roles_with_prefix(demo_dsn(), demo.role_prefix)) <= roles_before
    assert pwd.getpwnam(SANDBOX_USER).pw_uid not in (0, lab.pw_uid)

    # Integration runs it with papermill (with its own database login: here the superuser).
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(demo_dsn())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "VAULT_"))}
    env.update(
        PGHOST=str(params.get("host") or "127.0.0.1"),
        PGPORT=str(params.get("port") or 5432),
        PGUSER=str(params.get("user") or "postgres"),
        PGDATABASE="prod_discovery_demo",
    )
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    out = tmp_path / "out.ipynb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(bundle / fields["notebook"]["bundled"]),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "customers" in out.read_text()


def test_stop_demo_leaves_nothing(demo: DemoProcess) -> None:
    """Ctrl-C with a kernel running: its credentials revoked through the service, then no
    process of the demo, no role, no private file; the trail still verifies afterwards."""
    headers = {"Authorization": f"token {demo.token}"}
    r = requests.post(
        f"{demo.url}/api/kernels", json={"name": "python3"}, headers=headers, timeout=30
    )
    assert r.status_code == 201
    kernel_id = r.json()["id"]
    assert demo.bao_port is not None
    tree = demo.tree()
    assert len(tree) >= 4  # OpenBao, the service, JupyterLab, the kernel
    assert demo.stop() == 0
    assert [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert demo.leftover_processes() == []
    assert "stopped: no processes" in demo.output
    assert "failed" not in demo.output.split("[prod-discovery demo] stopping", 1)[1]
    if demo.role_prefix:
        assert roles_with_prefix(demo_dsn(), demo.role_prefix) == []
    # The signing key, the socket, the config and the runtime dir are gone, and the temporary
    # notebooks folder (no --keep), which the stop names; logs, trail and the public keys (of
    # the ledger, of exported bundles) stay.
    left = sorted(p.name for p in Path(demo.workdir).iterdir())
    assert left == ["audit-public-key.pem", "export-public-key.pem", "logs", "trail"]
    assert f"removed the demo's notebooks folder {demo.notebooks} (--keep keeps it)" in demo.output
    assert (
        "verify the trail: jupyter prod-discovery audit verify"
        in demo.output.rsplit("stopping", 1)[1]
    )
    # JupyterLab stopped first: the service revoked the running kernel's credentials for it.
    dsn, chain = option(demo.verify_command, "--dsn"), option(demo.verify_command, "--chain")
    revoked = [
        rec["data"].get("reason")
        for rec in (json.loads(line) for line in read_lines(dsn, chain))
        if rec["kind"] == "credential"
        and rec["data"].get("action") == "revoke"
        and str(rec["data"].get("kernel_id", "")).endswith(f"/{kernel_id}")
    ]
    assert revoked and set(revoked) == {"server_stop"}
    done = verify(demo.verify_after_command)
    assert done.returncode == 0 and "intact" in done.stdout, done.stdout + done.stderr


def test_run_demo_same_user_mode_says_so() -> None:
    """Started as a normal user, everything runs as that user, and the banner says so."""
    require_root()  # to start the demo as another, unprivileged, user
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    python = users_venv() / "bin" / "python"
    require(python.exists(), f"{users_venv()} is missing: run `bash scripts/install.sh`")
    user = ensure_account(DEMO_USER, system=False)
    proc = DemoProcess(free_port(), user=DEMO_USER)
    try:
        proc.start(timeout=60)
        assert "same-user mode: evaluation only; start as root for the separated topology" in (
            proc.output
        )
        assert {name for name, _ in proc.parts.values()} == {DEMO_USER}
        assert {uid_of(pid) for _, pid in proc.parts.values()} == {user.uid}
        assert [k for k in environ_of(proc.parts["lab"][1]) if k.startswith("VAULT_")] == []
        assert proc.stop() == 0
        assert proc.leftover_processes() == []
    finally:
        proc.cleanup()


def test_run_demo_as_root_without_users_venv_names_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root mode needs an interpreter the demo's users can run: say how to get one."""
    require_root()
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    monkeypatch.setenv("PROD_DISCOVERY_USERS_VENV", str(tmp_path / "missing"))
    proc = DemoProcess(free_port())
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            proc.start(timeout=60)
        assert "bash scripts/install.sh" in proc.output
        assert "OpenBao dev server at" not in proc.output  # nothing was started
        assert proc.wait(30) == 1
    finally:
        proc.cleanup()


def test_run_demo_without_postgres_refuses_cleanly() -> None:
    """The service's signed ledger lives in PostgreSQL: without it the demo says so and starts
    nothing (Binder, which has none, runs ``demo.binder`` instead)."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    proc = DemoProcess(free_port(), ["--dsn", dead])
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            proc.start(timeout=60)
        assert "unreachable" in proc.output and "--dsn" in proc.output
        assert "OpenBao dev server at" not in proc.output
        assert proc.wait(30) == 1
        assert proc.leftover_processes() == []
    finally:
        proc.cleanup()


def test_run_demo_port_taken_names_the_holder_before_starting_anything() -> None:
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = DemoProcess(port)
        try:
            with pytest.raises(RuntimeError, match="exited with 1"):
                proc.start(timeout=60)
            # An explicit --port that is taken: who holds it (this test's process) and a free
            # port to pass instead; nothing was started.
            assert f"error: port {port} is taken by pid {os.getpid()} (" in proc.output
            assert re.search(r"stop it or pass --port \d+", proc.output)
            assert "OpenBao dev server at" not in proc.output
            assert "stopped: no processes" in proc.output
            assert proc.wait(30) == 1
            assert proc.leftover_processes() == []
        finally:
            proc.cleanup()


def test_choose_port_default_taken_takes_the_next_free_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_prod_discovery.demo import runner

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(runner, "DEFAULT_PORT", port)
        chosen = runner.choose_port(None)
        assert chosen != port
        assert runner._port_holder(chosen) is None
        assert f"port {port} is taken by pid {os.getpid()}" in capsys.readouterr().out
        assert runner.choose_port(chosen) == chosen  # free and asked for: taken as it is


def test_run_demo_help() -> None:
    out = subprocess.run(
        ["jupyter", "prod-discovery", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--port" in out.stdout


# --- binder ----------------------------------------------------------------------------------


def test_run_binder_vault_exports_and_config(tmp_path: Path) -> None:
    """binder/start's helper: OpenBao outlives it, only the env gets the token."""
    config_dir = tmp_path / "jupyter"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        '{"ServerApp": {"port": 9999, "jpserver_extensions": {"x": true}}}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update({"HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(config_dir)})
    env.pop("PROD_DISCOVERY_DEMO_DSN", None)
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_prod_discovery.demo.binder"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    pid = int((tmp_path / ".prod-discovery" / "openbao.pid").read_text())
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines()
        )
        assert set(exports) == {"VAULT_ADDR", "VAULT_TOKEN"}
        client = hvac.Client(url=exports["VAULT_ADDR"], token=exports["VAULT_TOKEN"])
        assert client.is_authenticated()
        # Least privilege even here: not root, and refused what the profiles do not need.
        assert "root" not in client.auth.token.lookup_self()["data"]["policies"]
        with pytest.raises(hvac.exceptions.Forbidden):
            client.sys.list_policies()
        written = (config_dir / "jupyter_server_config.json").read_text()
        assert exports["VAULT_TOKEN"] not in written
        config = json.loads(written)
        assert config["ServerApp"]["port"] == 9999  # merged, not clobbered
        assert config["ServerApp"]["jpserver_extensions"] == {
            "x": True,
            "jupyter_prod_discovery": True,
        }
    finally:
        os.kill(pid, signal.SIGTERM)
    psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)


def test_write_user_config_rejects_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "jupyter_server_config.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not valid JSON"):
        write_user_config(tmp_path, {"ServerApp": {}})


def test_start_openbao_private_root_token_in_no_env_and_no_file(tmp_path: Path) -> None:
    """The demo's mode: OpenBao generates the root token; only this process learns it."""
    log = tmp_path / "openbao.log"
    server = DevServer(log_path=str(log), private_root_token=True)
    try:
        server.start()
    except (FileNotFoundError, RuntimeError) as exc:
        require(False, f"OpenBao dev server could not start: {exc}")
    try:
        assert server.root_token and server.client().is_authenticated()
        assert server.process is not None
        child = psutil.Process(server.process.pid)
        assert not [k for k in child.environ() if k.startswith(("BAO_", "VAULT_"))]
        assert server.root_token not in " ".join(child.cmdline())
    finally:
        server.stop()
    text = log.read_text()
    assert "Root Token: <redacted" in text and "Unseal Key: <redacted" in text
    assert server.root_token not in text
    with pytest.raises(ValueError, match="private root token"):
        DevServer(root_token="root-x", private_root_token=True)


def test_start_openbao_token_not_on_command_line(openbao: DevServer) -> None:
    assert openbao.process is not None
    cmdline = " ".join(psutil.Process(openbao.process.pid).cmdline())
    assert "-dev-no-store-token" in cmdline
    assert openbao.root_token not in cmdline
    assert openbao.client().is_authenticated()


def test_welcome_and_readme_give_the_same_example() -> None:
    from jupyter_prod_discovery.demo.runner import WELCOME

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = (
        'import os, psycopg; psycopg.connect("").execute("select * from customers limit 5")'
        ".fetchall()"
    )
    assert example in WELCOME
    assert f"`{example}`" in readme
