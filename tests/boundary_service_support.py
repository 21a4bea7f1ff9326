"""Helpers of the attacker suite against the real service (``tests/test_boundary_service.py``).

What runs as alice or bob is kept to the standard library (it must run in whatever Python they
have) and lives here as code strings: HTTP over the service's unix socket, identity claims, file
attempts on the service's state, Vault calls with a kernel's token. The rest sets the scene as
root: a throw-away database, the service under its own OS user, a kernel's secrets read from
``/proc`` (so that the attacker's probe knows what to look for), the ledger snapshotted and
restored between tamperings, and the compliance command that judges them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
from boundary_support import (
    ROOT,
    SHARED_TMP,
    UserServer,
    make_dir,
    needle,
    spawn_as,
    stop,
    user_env,
    users_python,
)
from credentials_support import Warehouse
from psycopg import sql
from service_support import ServiceProcess, service_token, start_service

from jupyter_prod_discovery.demo.openbao import DevServer
from jupyter_prod_discovery.pytest_plugin import reachable_dsn
from jupyter_prod_discovery.service.ledger import read_lines

SERVICE_USER, ALICE, BOB = "pdsvc", "pdalice", "pdbob"
LEDGER = "prod_discovery_service_audit"
TAMPERER = ROOT / "tests" / "attacks" / "ledger_tamper.py"
JUPYTER = str(Path(sys.executable).parent / "jupyter")

#: The kernels' child token: itself only. Vault's default policy would add lease lookup and
#: renewal by id for every lease (see ``kernel_profiles``).
KERNEL_POLICY = "pd-kernel-self"
KERNEL_POLICY_HCL = """
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
"""
T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# code run as alice or bob (standard library only: it runs in whatever Python they have)

#: HTTP over the service's unix socket, as any local process can speak it.
UNIX_HTTP = r'''
import http.client as _hc, json as _json, socket as _socket


def _pd_call(path, method, url, headers=None, body=None):
    """One request over the unix socket ``path``: [status, body text]."""
    conn = _hc.HTTPConnection("prod-discovery-service", timeout=10)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    conn.sock = sock
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        return [resp.status, resp.read().decode("utf-8", "replace")]
    finally:
        conn.close()
'''


def whoami(path_expr: str = "sys.argv[1]", marker: str = "") -> str:
    """Code asking the service who the caller is, plainly and with headers claiming others."""
    return (
        UNIX_HTTP
        + f"""
import os, sys
claims = [
    {{}},
    {{"Authorization": "token " + "0" * 40}},
    {{"X-Forwarded-User": "pdsvc", "X-Remote-User": "root", "X-Prod-Discovery-User": "pdbob"}},
]
answers = [_pd_call({path_expr}, "GET", "/api/status", h) for h in claims]
print({marker!r} + _json.dumps({{"uid": os.getuid(), "answers": answers}}))
"""
    )


def socket_calls(calls: Sequence[Sequence[Any]]) -> str:
    """Code making ``_pd_call(*call)`` for each call and printing the answers after PDJSON."""
    return UNIX_HTTP + f"print('PDJSON' + _json.dumps([_pd_call(*c) for c in {list(calls)!r}]))\n"


#: What a user can do to the service's files: list and read its state, replace its socket.
FILES = r"""
import errno, json, os, sys
state, key, sock_dir, sock = sys.argv[1:5]
writes = "--writes" in sys.argv


def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def create():
    path = os.path.join(sock_dir, "pd-attempt-%d" % os.getpid())
    open(path, "x").close()
    os.unlink(path)


result = {
    "list_state": attempt(lambda: os.listdir(state)),
    "read_key": attempt(lambda: open(key, "rb").read()),
    "create_in_socket_dir": attempt(create),
}
if writes:  # never as the service's own user: it would remove the live socket
    result["unlink_socket"] = attempt(lambda: os.unlink(sock))
    result["move_socket"] = attempt(lambda: os.rename(sock, sock + ".old"))
print(json.dumps(result))
"""

#: Vault paths that act on another user's lease or token, given its id or accessor.
VAULT_CALLS = r"""
import json, os, urllib.error, urllib.request


def _vault(path, body):
    req = urllib.request.Request(
        os.environ["VAULT_ADDR"] + "/v1/" + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"X-Vault-Token": os.environ["VAULT_TOKEN"]},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return [resp.status, ""]
    except urllib.error.HTTPError as exc:
        return [exc.code, " ".join(json.loads(exc.read() or b"{}").get("errors") or [])]


print("PDJSON" + json.dumps({name: _vault(p, b) for name, (p, b) in CALLS.items()}))
"""

ROWS = """\
import psycopg
with psycopg.connect("", connect_timeout=5) as _c:
    _n = len(_c.execute("select * from customers").fetchall())
    print("PDROWS", _n, _c.info.user.startswith({prefix!r}))
"""

# --------------------------------------------------------------------------------------------
# helpers


def vault_token_needle(token: str) -> str:
    """16 characters of a token's random part, past the prefix every token shares (``hvs.CAESI``
    for Vault's service tokens, ``s.`` for OpenBao's): a needle only this token matches."""
    rest = token.removeprefix("hvs.CAESI") if token.startswith("hvs.") else token.split(".", 1)[-1]
    assert len(rest) >= 16, "not a Vault service token"
    return rest[:16]


def signing_key_needle(key_file: Path) -> str:
    """16 characters of the random part of the PEM body (its first 21 encode a fixed header)."""
    body = "".join(
        line for line in key_file.read_text().splitlines() if line and not line.startswith("-----")
    )
    return body[24:40]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def json_file(path: Path) -> Callable[[], Any]:
    """A check for ``wait_for``: the JSON in ``path`` once it exists (written atomically)."""
    return lambda: json.loads(path.read_text()) if path.exists() else None


def marked_json(output: str, marker: str = "PDJSON") -> Any:
    """The JSON a cell printed after ``marker`` (other output, warnings included, ignored)."""
    for line in output.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    raise AssertionError(f"no {marker} line in the cell's output:\n{output}")


def run_as(user: str, argv: Sequence[str], timeout: float = 60.0) -> Any:
    """Run ``argv`` as ``user`` (nothing of root's environment); the JSON of its last line."""
    proc = spawn_as(user, argv, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop(proc)
    text = out.decode(errors="replace").strip()
    assert proc.returncode == 0 and text, f"{argv[0]} as {user} failed ({proc.returncode}):\n{text}"
    return json.loads(text.splitlines()[-1])


def admin_dsn() -> str:
    """The PostgreSQL superuser DSN (module scope: the plugin's fixture is per test)."""
    return reachable_dsn()


def run_dir() -> Path:
    """A fresh directory for a service's socket and state (``/run`` when root may write it)."""
    base = Path("/run") if os.access("/run", os.W_OK) else SHARED_TMP
    return base / f"pd-test-{secrets.token_hex(6)}"


def start_service_as(
    user: str,
    base: Path,
    log: Path,
    dsn: str,
    bao: DevServer,
    profiles: list[dict[str, Any]],
    server_timeout: float = 10.0,
) -> ServiceProcess:
    """The service as ``user``: socket dir ``base`` 0755 and state dir 0700, both the user's.

    Its environment is a login's plus its DSN and Vault token (never the test runner's), its
    Vault token the least-privilege one its profiles need, its log in root's ``log``.
    """
    pw = pwd.getpwnam(user)
    make_dir(base, pw, 0o755)
    make_dir(base / "state", pw, 0o700)
    return start_service(
        base,
        dsn,
        vault_addr=bao.address,
        vault_token=service_token(bao, profiles),
        profiles=profiles,
        preexec_user=(pw.pw_uid, pw.pw_gid),
        python=users_python(),
        base_env=user_env(pw),
        state_dir=base / "state",
        log_path=log,
        server_timeout=server_timeout,
    )


def kernel_pid(server: UserServer) -> int:
    """The server's kernel: the descendant whose environment holds database credentials."""
    for child in psutil.Process(server.pid).children(recursive=True):
        with contextlib.suppress(OSError, psutil.Error):
            if b"\0PGPASSWORD=" in b"\0" + Path(f"/proc/{child.pid}/environ").read_bytes():
                return int(child.pid)
    raise AssertionError(f"no kernel with credentials under {server.user}'s server")


def own_leases(server: UserServer) -> list[dict[str, Any]]:
    """The leases of the server's kernel as its user sees them (ids and accessors, no value)."""
    listing = server.api("GET", "/prod-discovery/api/credentials")
    (kernel,) = [k for k in listing["kernels"] if k["kernel_id"] == server.kernel_id]
    return list(kernel["leases"])


def environ_of(pid: int) -> dict[str, str]:
    """A process's environment, read as root."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def records(dsn: str) -> list[dict[str, Any]]:
    """The sealed ledger, read as root (alice could read it just the same)."""
    return [json.loads(line) for line in read_lines(dsn)]


def server_id(server: UserServer) -> str:
    """The id a server ships its records under (``AuditTrail.server_id``'s default)."""
    return f"{socket.gethostname()}:{server.pid}"


def kill_marked(uid: int, marker: str) -> None:
    """SIGKILL ``uid``'s processes whose command line names ``marker`` (a path unique to one
    run): what a test started, found even when it never reported its pid, and nothing else."""
    for proc in psutil.process_iter(["uids", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["uids"].real == uid and any(marker in a for a in proc.info["cmdline"]):
                proc.send_signal(signal.SIGKILL)


@dataclass
class Side:
    """A holder of secrets, as the harness's ``TrustedSide`` describes what to attack."""

    pid: int
    labelled: dict[str, str]
    where: list[str] = field(default_factory=list)
    sockets: list[dict[str, str]] = field(default_factory=list)

    def needles(self) -> dict[str, str]:
        return dict(self.labelled)

    def paths(self) -> list[str]:
        return list(self.where)

    def unix(self) -> list[dict[str, str]]:
        return list(self.sockets)

    def tcp(self) -> list[dict[str, Any]]:
        return []


def kernel_side(server: UserServer, label: str) -> tuple[Side, dict[str, str]]:
    """A user's kernel as a side to attack: its database password and child token."""
    pid = kernel_pid(server)
    env = environ_of(pid)
    values = {f"{label}:pgpassword": env["PGPASSWORD"], f"{label}:vault_token": env["VAULT_TOKEN"]}
    needles = {
        f"{label}:pgpassword": needle(env["PGPASSWORD"]),
        f"{label}:vault_token": vault_token_needle(env["VAULT_TOKEN"]),
    }
    return Side(pid, needles, [str(server.home)]), values


def kernel_profiles(warehouse: Warehouse, bao: DevServer) -> list[dict[str, Any]]:
    """The warehouse's profiles, the child token limited to itself (see the module docstring)."""
    bao.client().sys.create_or_update_policy(KERNEL_POLICY, KERNEL_POLICY_HCL)
    profiles = warehouse.profiles()
    for profile in profiles:
        if profile["type"] == "token":
            profile.update(policies=[KERNEL_POLICY], no_default_policy=True)
    return profiles


# --------------------------------------------------------------------------------------------
# the ledger between tamperings


@dataclass
class Verdict:
    """One ``jupyter prod-discovery audit verify`` run."""

    code: int
    output: str


def verify(dsn: str, public_key: Path, service_url: str | None) -> Verdict:
    """The compliance command, as root, with the pinned public key (and the service's head)."""
    argv = [JUPYTER, "prod-discovery", "audit", "verify", "--dsn", dsn]
    argv += ["--public-key", str(public_key)]
    if service_url:
        argv += ["--service", service_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return Verdict(done.returncode, done.stdout + done.stderr)


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Both ledger tables, to undo one tampering before the next."""
    with psycopg.connect(dsn) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))
            ).fetchall()
            for table in (LEDGER, f"{LEDGER}_checkpoints")
        }


def restore(dsn: str, tables: Mapping[str, list[tuple[Any, ...]]]) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction(), conn.cursor() as cur:
        for table, rows in tables.items():
            ident = sql.Identifier(table)
            cur.execute(sql.SQL("DELETE FROM {}").format(ident))
            if rows:
                marks = sql.SQL(", ").join([sql.Placeholder()] * len(rows[0]))
                cur.executemany(sql.SQL("INSERT INTO {} VALUES ({})").format(ident, marks), rows)


def quiet_head(service: ServiceProcess, still: float) -> int:
    """The service's head seq once it has not moved for ``still`` seconds (nothing in flight:
    the revocations of alice's stopped server are sealed, no dead-server reaping is pending)."""
    client = service.client("tamper-test")
    last, since = -1, time.monotonic()
    deadline = since + 30
    while time.monotonic() < deadline:
        seq = int(client.head()["seq"])
        if seq != last:
            last, since = seq, time.monotonic()
        elif time.monotonic() - since >= still:
            return seq
        time.sleep(0.25)
    raise AssertionError("the ledger kept moving")
