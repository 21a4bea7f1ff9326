"""Promotion through the trusted service: the service runs the gates on what was submitted, the
clean run executes as another OS user with the declared roles only, and it signs only what
passed. Real service process, OpenBao, PostgreSQL and kernels; a real sandbox OS user."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from credentials_support import Warehouse
from export_helpers import statement_fields
from service_export_support import (
    SANDBOX_USER,
    export_service,
    notebook,
    report_dir,
    sandbox_settings,
    wait_job,
    write_bundle,
)
from service_support import ServiceProcess, service_token

from jupyter_prod_discovery.export.attestation import key_id_of_pem
from jupyter_prod_discovery.export.verify import verify_bundle
from jupyter_prod_discovery.service.client import ServiceClient, ServiceRefused
from jupyter_prod_discovery.service.ledger import read_lines

READ_CUSTOMERS = (
    "import psycopg\n"
    "with psycopg.connect('') as conn:\n"
    "    n = conn.execute('select count(*) from customers').fetchone()[0]\n"
    "assert n == 3, n"
)
REPORT = (
    "import json, os, pathlib\n"
    "probe = {}\n"
    "for p in STATE_PATHS:\n"
    "    try:\n"
    "        probe[p] = sorted(os.listdir(p)) if os.path.isdir(p) else pathlib.Path(p).read_text()\n"
    "    except OSError as exc:\n"
    "        probe[p] = type(exc).__name__\n"
    "caps = {l.split(':')[0]: l.split()[1] for l in open('/proc/self/status')"
    " if l.startswith('Cap')}\n"
    "pathlib.Path(REPORT_DIR, 'report.json').write_text(json.dumps(\n"
    "    {'env': dict(os.environ), 'uid': os.getuid(), 'probe': probe, 'caps': caps}))"
)


@pytest.fixture
def vault_token(openbao: Any, warehouse: Warehouse) -> str:
    return service_token(openbao, warehouse.profiles())


@pytest.fixture
def service(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, postgres_database: str, vault_token: str
) -> Iterator[ServiceProcess]:
    sandbox = {**sandbox_settings()["ExportSandbox"], "admin_dsn": postgres_database}
    with export_service(
        tmp_path,
        postgres_database,
        openbao,
        warehouse,
        vault_token=vault_token,
        config={"ExportSandbox": sandbox},
    ) as svc:
        yield svc


@pytest.fixture
def client(service: ServiceProcess) -> ServiceClient:
    return service.client("server-1")


#: A well-formed git report of "a.ipynb" (what a server sends; export/git_report.py).
GIT = {"commit": "0" * 40, "path": "a.ipynb", "dirty": False, "branch": "main", "remote": None}


def customers_source(warehouse: Warehouse) -> str:
    """The data source a kernel reading the test customers table reports (audit shim)."""
    return f"psycopg postgresql://127.0.0.1:5432/{warehouse.dbname}"


def submit(client: ServiceClient, nb: dict[str, Any], **request: Any) -> dict[str, Any]:
    job = client.create_export({"notebook": nb, "path": "work/customers.ipynb", **request})
    assert job["state"] == "running" and job["done"] is False
    return wait_job(client, job["id"])


def test_export_runs_every_gate_in_the_service_and_signs(
    client: ServiceClient,
    service: ServiceProcess,
    warehouse: Warehouse,
    vault_token: str,
    tmp_path: Path,
) -> None:
    out = report_dir()
    state_paths = [service.state_dir, str(Path(service.state_dir) / "audit-signing-key.pem")]
    nb = notebook(READ_CUSTOMERS, REPORT)
    job = submit(
        client,
        nb,
        parameters={"REPORT_DIR": str(out), "STATE_PATHS": state_paths},
        profiles=["warehouse"],
    )
    assert job["state"] == "exported", job["gates"]
    gates = {g["name"]: g for g in job["gates"]}
    assert all(g["passed"] for g in gates.values()), gates
    assert "sandbox" in gates["clean_run"]["reason"]
    public = client.public_key()["public_key_pem"]
    assert job["signature"]["key_id"] == key_id_of_pem(public)

    # The bundle verifies with the service's key, and its manifest declares the role.
    bundle = write_bundle(job, tmp_path / "bundle")
    assert verify_bundle(bundle, [public]) == []
    fields = statement_fields(bundle)
    assert fields["author"] == "root"
    assert [r["profile"] for r in fields["declared_roles"]] == ["warehouse"]
    # What the clean run touched, as the service's own sandbox saw it: the customers database.
    sources = fields["session"]["data_sources"]
    assert {"kind": "dbapi", "target": customers_source(warehouse), "count": 1} | {
        "seen_in": ["clean_run"]
    } in sources, sources
    assert fields["session"]["source"] == "service_ledger"
    assert not [s for s in sources if "/pd-run-" in s["target"]], sources  # the run's own dir
    # No git was reported: the statement says so, and the service read none itself.
    assert fields["git"] is None
    assert fields["reported_by_server"] == {"server": "server-1", "git": None}
    # ... and it is what the service signed: one changed byte and it no longer verifies.
    script = next(bundle.glob("*.py"))
    script.write_text(script.read_text() + "\nimport os\n")
    assert verify_bundle(bundle, [public]) != []

    # The run was the sandbox user with nothing of the trusted side, and the declared role.
    report = json.loads((out / "report.json").read_text())
    import pwd

    assert report["uid"] == pwd.getpwnam(SANDBOX_USER).pw_uid
    for cap in ("CapPrm", "CapEff", "CapAmb", "CapInh"):
        assert int(report["caps"][cap], 16) == 0, report["caps"]
    env = report["env"]
    assert not [k for k in env if k.startswith(("VAULT_", "BAO_", "PROD_DISCOVERY"))], env
    values = "\n".join(env.values())
    for secret in (vault_token, service.dsn):
        assert secret not in values
    assert env["PGDATABASE"] == warehouse.dbname and env["PGUSER"].startswith(warehouse.prefix)
    assert all(v == "PermissionError" for v in report["probe"].values()), report["probe"]
    # The run's database user is gone and its lease revoked.
    assert env["PGUSER"] not in warehouse.roles()
    assert warehouse.leases() == []

    # The decision is in the service's ledger, under the principal it authenticated.
    deadline = time.monotonic() + 30
    while True:
        recs = [json.loads(line) for line in read_lines(service.dsn)]
        exports = [r for r in recs if r["kind"] == "export"]
        if exports or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (decision,) = exports
    assert decision["data"]["principal"]["username"] == "root"
    assert decision["data"]["manifest_sha256"] == job["manifest_sha256"]
    assert decision["data"]["export_job"] == job["id"]


def test_refused_export_keeps_every_gate_and_signs_nothing(client: ServiceClient) -> None:
    leak = {"output_type": "stream", "name": "stdout", "text": "ssn 536-22-8341\n"}
    job = submit(client, notebook("print('x')", outputs=[leak]))
    assert job["state"] == "refused" and "files" not in job
    gates = {g["name"]: g for g in job["gates"]}
    assert gates["no_pii"]["passed"] is False and "US_SSN" in gates["no_pii"]["reason"]
    assert gates["clean_run"]["skipped"] is True
    assert len(gates) == 6


def test_clean_run_without_the_declared_role_fails(client: ServiceClient) -> None:
    """Nothing declared, nothing issued: the notebook that reads the table fails its clean run
    (and that gate cannot be overridden by default)."""
    job = submit(client, notebook(READ_CUSTOMERS))
    assert job["state"] == "refused"
    (clean,) = [g for g in job["gates"] if g["name"] == "clean_run"]
    assert clean["passed"] is False and "cell 1 raised" in clean["reason"]
    with pytest.raises(ServiceRefused) as refused:
        client.create_export(
            {
                "notebook": notebook(READ_CUSTOMERS),
                "path": "a.ipynb",
                "overrides": {"clean_run": "works on my machine"},
            }
        )
    assert refused.value.status == 403 and "clean_run" in str(refused.value)


@pytest.mark.parametrize(
    ("request_", "status", "names"),
    [
        ({"parameters": {"x = 1\nimport subprocess\ny": 0}}, 400, "x = 1"),
        ({"parameters": {"import": 1}}, 400, "'import'"),
        ({"parameters": [1]}, 400, "parameters"),
        ({"overrides": {"no_pii": "trust me"}}, 403, "no_pii"),
        ({"overrides": {"no_secrets": "trust me"}}, 403, "no_secrets"),
        ({"overrides": {"no_interactive": "  "}}, 400, "reason"),
        ({"overrides": {"nonsense": "x"}}, 400, "nonsense"),
        ({"profiles": ["nope"]}, 400, "nope"),
        ({"profiles": ["vault"], "writable": ["vault"]}, 400, "database"),
        ({"path": "../x.ipynb"}, 400, "path"),
        ({"path": "/etc/x.ipynb"}, 400, "path"),
        ({"targets": ["cron"]}, 400, "cron"),
        ({"notebook": "{not json"}, 400, "notebook"),
        ({"git": "abc"}, 400, "'git'"),
        ({"git": {**GIT, "commit": "abc123"}}, 400, "git.commit"),
        ({"git": {**GIT, "commit": "A" * 40}}, 400, "git.commit"),
        ({"git": {**GIT, "commit": None}}, 400, "git.commit"),
        ({"git": {**GIT, "path": "/repo/a.ipynb"}}, 400, "git.path"),
        ({"git": {**GIT, "path": "x/../a.ipynb"}}, 400, "git.path"),
        ({"git": {**GIT, "path": "x//a.ipynb"}}, 400, "git.path"),
        ({"git": {**GIT, "path": "other.ipynb"}}, 400, "git.path"),
        ({"git": {**GIT, "dirty": "no"}}, 400, "git.dirty"),
        ({"git": {**GIT, "branch": "b" * 256}}, 400, "git.branch"),
        ({"git": {**GIT, "branch": 7}}, 400, "git.branch"),
        ({"git": {**GIT, "remote": "https://h/r\n.git"}}, 400, "git.remote"),
        ({"git": {**GIT, "hooks": "x"}}, 400, "hooks"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    client: ServiceClient, request_: dict[str, Any], status: int, names: str
) -> None:
    body = {"notebook": notebook("x = 1"), "path": "a.ipynb", **request_}
    with pytest.raises(ServiceRefused) as refused:
        client.create_export(body)
    assert refused.value.status == status and names in str(refused.value)


def test_jobs_are_their_owners_only(service: ServiceProcess, client: ServiceClient) -> None:
    job = client.create_export({"notebook": notebook("x = 1"), "path": "a.ipynb"})
    with pytest.raises(ServiceRefused) as missing:
        client.export_job("0" * 32)
    assert missing.value.status == 404
    wait_job(client, job["id"])


def test_writable_profile_runs_on_a_throwaway_copy(
    client: ServiceClient, warehouse: Warehouse
) -> None:
    write = (
        "import psycopg\n"
        "with psycopg.connect('') as conn:\n"
        "    conn.execute(\"insert into customers values (4, 'edsger')\")\n"
        "    conn.execute('delete from customers where id = 1')\n"
        "    db = conn.execute('select current_database()').fetchone()[0]\n"
        "assert db.startswith('pd_run_'), db"
    )
    job = submit(client, notebook(write), profiles=["warehouse"], writable=["warehouse"])
    assert job["state"] == "exported", job
    with psycopg.connect(warehouse.dsn) as conn:
        rows = conn.execute("select id from customers order by id").fetchall()
        copies = conn.execute(
            "select datname from pg_database where datname like 'pd_run_%'"
        ).fetchall()
    assert rows == [(1,), (2,), (3,)]  # the source is unchanged
    assert copies == []  # the copy is gone
    assert warehouse.roles() == set() and warehouse.leases() == []


def test_override_by_an_allowed_user_is_signed_and_recorded_with_its_reason(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, postgres_database: str
) -> None:
    """The policy lets root override no_interactive and nobody else anything more: the bundle is
    signed with the override and its reason in the manifest and the ledger."""
    policy = {"no_interactive": ["user:root"]}
    with export_service(
        tmp_path,
        postgres_database,
        openbao,
        warehouse,
        config={"ExportDesk": {"override_policy": policy}},
    ) as svc:
        client = svc.client("server-2")
        with pytest.raises(ServiceRefused) as refused:  # no longer anyone's to override
            client.create_export(
                {
                    "notebook": notebook("x = 1"),
                    "path": "a.ipynb",
                    "overrides": {"dependencies_locked": "pinned elsewhere"},
                }
            )
        assert refused.value.status == 403
        nb = notebook("x = 1", "%who")  # a magic not allow-listed, harmless unattended
        job = submit(client, nb, overrides={"no_interactive": "%who needs no person"})
        assert job["state"] == "exported", job
        (gate,) = [g for g in job["gates"] if g["name"] == "no_interactive"]
        assert gate["passed"] is False and gate["overridden"] is True
        assert gate["override_reason"] == "%who needs no person"
        deadline = time.monotonic() + 30
        overrides: list[dict[str, Any]] = []
        while not overrides and time.monotonic() < deadline:
            recs = [json.loads(line) for line in read_lines(svc.dsn)]
            overrides = [
                r for r in recs if r["kind"] == "export" and r["data"]["action"] == "override"
            ]
            time.sleep(0.2)
        (override,) = overrides
        assert override["data"]["reason"] == "%who needs no person"
        assert override["data"]["principal"]["username"] == "root"


def test_clean_run_past_its_deadline_leaves_no_process_and_no_login(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, postgres_database: str
) -> None:
    """A notebook that never ends: the gate fails at the deadline, the sandbox user's runner and
    kernel (which runs in a session of its own) are gone, and so is the run's database login."""
    import pwd

    with export_service(
        tmp_path, postgres_database, openbao, warehouse, config={"CleanRunGate": {"timeout": 25}}
    ) as svc:
        client = svc.client("server-3")
        sleeper = "import psycopg, time\nconn = psycopg.connect('')\ntime.sleep(600)"
        job = submit(client, notebook(sleeper), profiles=["warehouse"])
        (clean,) = [g for g in job["gates"] if g["name"] == "clean_run"]
        assert clean["passed"] is False and "did not finish within 25 s" in clean["reason"]
        uid = pwd.getpwnam(SANDBOX_USER).pw_uid

        def left() -> list[str]:
            return [
                Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
                for pid in filter(str.isdigit, os.listdir("/proc"))
                if _uid_of(pid) == uid
            ]

        deadline = time.monotonic() + 15  # a killed process is gone once its parent reaped it
        while left() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left() == []
        assert warehouse.roles() == set() and warehouse.leases() == []


def _uid_of(pid: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def test_the_sandbox_account_is_nobodys_client(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, postgres_database: str
) -> None:
    """Code in a clean run runs as the sandbox user: were the service's socket reachable, it
    would still be refused (no credentials, no exports), while other users are served."""
    import subprocess

    from boundary_support import spawn_as, users_python

    with export_service(tmp_path, postgres_database, openbao, warehouse, shared_socket=True) as svc:
        code = (
            "import sys\n"
            "from jupyter_prod_discovery.service.client import ServiceClient, ServiceRefused\n"
            f"c = ServiceClient('{svc.url}', 's')\n"
            "for call in (lambda: c.request('GET', '/api/status'),\n"
            "             lambda: c.request('POST', '/api/credentials',"
            " json_body={'kernel_id': 'k1', 'kernel_name': 'python3'})):\n"
            "    try:\n"
            "        call()\n"
            "        print('served')\n"
            "    except ServiceRefused as exc:\n"
            "        print(exc.status)\n"
        )
        proc = spawn_as(
            SANDBOX_USER,
            [users_python(), "-c", code],
            {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            cwd="/",
            stdout=subprocess.PIPE,
        )
        out, _ = proc.communicate(timeout=120)
        assert out.decode().split() == ["403", "403"]
        assert warehouse.roles() == set()
        assert svc.client("server-4").request("GET", "/api/status")["principal"]["username"] == (
            "root"
        )


def _ledger_records(dsn: str, kind: str, wanted: int = 1) -> list[dict[str, Any]]:
    """The ledger's records of ``kind`` once ``wanted`` are committed (the service's own
    records are written by its group commit, shortly after the job ends)."""
    deadline = time.monotonic() + 30
    while True:
        recs = [json.loads(line) for line in read_lines(dsn)]
        found = [r for r in recs if r["kind"] == kind]
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_statement_records_the_reported_git_as_the_servers_claim(
    client: ServiceClient, service: ServiceProcess, tmp_path: Path, capsys: Any
) -> None:
    """The server's git report (read with dulwich from a real repository, as ServiceExports
    does) is signed as the server's claim, beside nothing the service read itself; the ledger's
    decision holds it too, and `export verify` prints it, saying who vouches for it."""
    import subprocess

    from jupyter_prod_discovery.cli import main
    from jupyter_prod_discovery.export.git_report import git_report

    repo = tmp_path / "repo"
    (repo / "work").mkdir(parents=True)
    nb = notebook("x = 1")
    (repo / "work" / "customers.ipynb").write_text(json.dumps(nb))
    git = ["git", "-c", "core.hooksPath=/dev/null", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "feature/x"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run(
        [*git, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-qm", "nb"], check=True
    )
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    report = git_report(repo / "work" / "customers.ipynb")
    assert report == {
        "commit": commit,
        "path": "work/customers.ipynb",
        "dirty": False,
        "branch": "feature/x",
        "remote": None,
    }

    job = submit(client, nb, git=report)
    assert job["state"] == "exported", job["gates"]
    assert job["git_reported_by_server"] == report
    bundle = write_bundle(job, tmp_path / "bundle")
    public = client.public_key()["public_key_pem"]
    assert verify_bundle(bundle, [public]) == []
    fields = statement_fields(bundle)
    assert fields["git"] is None  # the service read no repository
    assert fields["reported_by_server"] == {"server": "server-1", "git": report}
    statement = json.loads((bundle / "manifest.json").read_text())
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    (repo_dep,) = [d for d in deps if d["name"] == "notebook repository"]
    assert repo_dep["digest"] == {"gitCommit": commit}
    assert repo_dep["annotations"]["reportedBy"] == "server"
    assert repo_dep["annotations"]["path"] == "work/customers.ipynb"

    (decision,) = [
        r
        for r in _ledger_records(service.dsn, "export")
        if r["data"].get("export_job") == job["id"]
    ]
    assert decision["data"]["git_reported_by_server"] == report

    key = tmp_path / "service.pem"
    key.write_text(public)
    capsys.readouterr()
    assert main(["export", "verify", str(bundle), "--public-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert (
        f"git: work/customers.ipynb @ {commit} (feature/x, as committed; reported by server "
        "server-1, not checked by the signer)"
    ) in out
    assert "data sources (0, from service_ledger):" in out  # x = 1 reads nothing
    assert main(["export", "verify", str(bundle), "--public-key", str(key), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["valid"] is True
    assert verdict["reported_by_server"]["git"]["commit"] == commit
    assert verdict["data_sources_from"] == "service_ledger"


def _datasource_lines(first_seq: int, claimed_user: str, events: list[dict[str, Any]]) -> str:
    """Lines of a server's audit stream holding datasource events (what ServiceSink ships)."""
    import uuid
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "\n".join(
        json.dumps(
            {
                "seq": first_seq + i,
                "kind": "datasource",
                "ts": now,
                "schema": "https://events.prod-discovery.dev/datasource/v1",
                "version": 1,
                "event_id": uuid.uuid4().hex,
                "data": {
                    "server_id": "server-ds",
                    "user": {"username": claimed_user},
                    "kernel_id": "k-1",
                    **event,
                },
            }
        )
        for i, event in enumerate(events)
    )


def test_statement_lists_the_authors_data_sources_and_no_one_elses(
    tmp_path: Path, openbao: Any, warehouse: Warehouse, postgres_database: str
) -> None:
    """Data sources come from the service's ledger: the author's records on the submitting
    server's stream (scrubbed, deduplicated with the clean run's), never those another OS user
    shipped, even under the same server id and claiming to be the author, nor those of the
    author's other servers."""
    import subprocess

    from boundary_support import ensure_user, spawn_as, users_python

    other = "pdauthor2"
    with export_service(tmp_path, postgres_database, openbao, warehouse, shared_socket=True) as svc:
        ensure_user(other)
        # Another user, same server id, claiming to be root: the service records it as theirs.
        forged = _datasource_lines(
            1,
            "root",
            [
                {"kind": "file", "target": "/home/pdauthor2/private.csv", "count": 1},
                {"kind": "dbapi", "target": "psycopg postgresql://10.9.9.9:5432/theirs"},
            ],
        )
        code = (
            "import sys\n"
            "from jupyter_prod_discovery.service.client import ServiceClient\n"
            f"print(ServiceClient('{svc.url}', 'server-ds').ship(sys.stdin.read().split('\\n')))"
        )
        proc = spawn_as(
            other,
            [users_python(), "-c", code],
            {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            cwd="/",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        out, _ = proc.communicate(forged.encode(), timeout=120)
        assert proc.returncode == 0 and "'acknowledged': 2" in out.decode(), out
        # The author's own records: on this server, and on another server of theirs.
        client = svc.client("server-ds")
        shipped = client.ship(
            _datasource_lines(
                1,
                "root",
                [
                    {"kind": "dbapi", "target": customers_source(warehouse), "count": 3},
                    {"kind": "file", "target": "/srv/data/sales.csv", "count": 2},
                    {"kind": "dbapi", "target": "psycopg host=db password=hunter2 dbname=x"},
                    {"kind": "dropped", "target": "*", "count": 9},
                ],
            ).split("\n")
        )
        assert shipped["acknowledged"] == 4
        elsewhere = svc.client("server-elsewhere")
        elsewhere.ship(
            _datasource_lines(1, "root", [{"kind": "file", "target": "/elsewhere.csv"}]).split("\n")
        )

        job = client.create_export(
            {"notebook": notebook(READ_CUSTOMERS), "path": "c.ipynb", "profiles": ["warehouse"]}
        )
        job = wait_job(client, job["id"])
        assert job["state"] == "exported", job["gates"]
        fields = statement_fields(write_bundle(job, tmp_path / "bundle"))
        sources = {(s["kind"], s["target"]): s for s in fields["session"]["data_sources"]}
        customers = sources[("dbapi", customers_source(warehouse))]
        # Seen in the author's kernels (3 times) and in the clean run (once): one entry.
        assert customers["seen_in"] == ["author_session", "clean_run"]
        assert customers["count"] == 4
        assert sources[("file", "/srv/data/sales.csv")]["seen_in"] == ["author_session"]
        assert ("dbapi", "psycopg host=db password=*** dbname=x") in sources
        text = json.dumps(fields)
        for absent in ("hunter2", "pdauthor2", "10.9.9.9", "/elsewhere.csv", '"dropped"'):
            assert absent not in text, absent
