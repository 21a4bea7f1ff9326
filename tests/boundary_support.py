"""Helpers for the boundary tests: real OS users, their Jupyter servers, and secrets to attack.

The acceptance test of the trust boundary is an attacker suite: code running as alice, a real
and different OS user, in her notebook kernel and in her terminal, tries to obtain any secret of
the trusted side (``tests/attacks/probe.py``). Same-uid tricks (``/proc/$PPID/environ``, the
runtime dir) only fail across a uid boundary, so nothing here fakes one:

- ``ensure_user`` creates the users (sessions and CI run as root; elsewhere the tests skip, and
  under ``CI=true`` they fail instead);
- ``spawn_as`` starts a process as one of them, in its own process group, with a minimal
  environment: nothing of root's environment may reach the attacker by accident;
- ``UserServer`` is alice's ``jupyter server`` (from ``.venv-users``, which she can run: the image's
  Python lives in /root, mode 700) with ``execute`` (a kernel cell) and ``terminal`` (a shell line);
- ``SecretHolder`` holds labelled secrets in its environment, its memory, a file in its 0700 state
  dir (kept open) and behind a unix socket that answers its own uid only. As ``TrustedStandIn``
  (user ``pdsvc``) it stands in for ``jupyter prod-discovery service`` until that can be plugged in
  through the same ``TrustedSide`` protocol; as alice's own decoy it is the positive control that
  every probe would have found a secret it could reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, Self

import psutil
import requests

from jupyter_prod_discovery.pytest_plugin import require

ROOT = Path(__file__).resolve().parent.parent
USERS_VENV = Path(os.environ.get("PROD_DISCOVERY_USERS_VENV", str(ROOT / ".venv-users")))
PROBE = ROOT / "tests" / "attacks" / "probe.py"
#: Where root writes what other users must read: never root's own TMPDIR, which may be private.
SHARED_TMP = Path("/tmp")
INSTALL_HINT = "bash scripts/install.sh"
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")

# --------------------------------------------------------------------------------------------
# users and processes


def ensure_user(name: str) -> pwd.struct_passwd:
    """The OS user ``name`` (created with a home and bash if absent); needs root."""
    require(os.geteuid() == 0, f"creating the OS user {name} needs root")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--create-home", "--shell", "/bin/bash", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
            raise RuntimeError(
                f"useradd {name} failed ({done.returncode}): {done.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(name)
    # Debian creates homes 0755 (UMASK 022, no HOME_MODE): every user could read every other
    # user's notebooks, which under LocalProcessSpawner live in the home. Private, as a
    # deployment must make them (deploy/README.md).
    home = Path(entry.pw_dir)
    if home.is_dir() and home.stat().st_uid == entry.pw_uid:
        home.chmod(0o700)
    return entry


def _not_enterable(path: Path) -> list[str]:
    """Directories on the way to ``path`` that other users cannot pass, and ``path`` itself if
    they cannot read it. Passing needs only the search bit: install.sh gives a checkout in a
    private directory (mktemp -d, 0700) exactly that (o+x), never the right to list it."""
    blocked = []
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            continue
        needed = stat.S_IXOTH | (stat.S_IROTH if p == path else 0)
        if mode & needed != needed:
            blocked.append(str(p))
    return blocked


def users_python() -> str:
    """The python of ``.venv-users``, which other OS users can run (built by install.sh)."""
    python = USERS_VENV / "bin" / "python"
    require(python.exists(), f"{USERS_VENV} is missing: run `{INSTALL_HINT}`")
    blocked = _not_enterable(USERS_VENV) + _not_enterable(ROOT / "jupyter_prod_discovery")
    require(
        not blocked,
        f"other users cannot enter {sorted(set(blocked))}: the users venv and the checkout "
        "must be world-readable",
    )
    return str(python)


def user_env(pw: pwd.struct_passwd) -> dict[str, str]:
    """What a login would give the user: no variable of the test runner's environment."""
    return {
        "HOME": pw.pw_dir,
        "USER": pw.pw_name,
        "LOGNAME": pw.pw_name,
        "SHELL": pw.pw_shell or "/bin/bash",
        "PATH": f"{USERS_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }


def spawn_as(
    user: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    *,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.STDOUT,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as ``user`` (no supplementary groups) in a new process group.

    The environment is ``user_env`` plus ``env``; ``stop`` ends the whole group.
    """
    pw = pwd.getpwnam(user)
    return subprocess.Popen(
        list(argv),
        env={**user_env(pw), **(env or {})},
        cwd=str(cwd or pw.pw_dir),
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        process_group=0,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        close_fds=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM the process group, SIGKILL it after ``timeout``; the leader's exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived its leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return proc.returncode


def kill_leftovers(procs: Sequence[psutil.Process], uid: int) -> None:
    """SIGKILL processes still alive that are still the user's (a pid may have been reused)."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.uids().real == uid:
                p.kill()


def is_dumpable(pid: int) -> bool:
    """Whether ``pid`` is dumpable: the kernel hands a non-dumpable process's /proc files to root.

    (Its ``/proc/<pid>`` directory may keep the old owner: ask a file inside.)
    """
    real: int = psutil.Process(pid).uids().real
    return os.stat(f"/proc/{pid}/environ").st_uid == real


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_dir(path: Path, owner: pwd.struct_passwd, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, owner.pw_uid, owner.pw_gid)
    path.chmod(mode)
    return path


def _run_dir() -> Path:
    run = Path("/run")
    return run if os.access(run, os.W_OK) else SHARED_TMP


# --------------------------------------------------------------------------------------------
# the side that holds secrets


class TrustedSide(Protocol):
    """What the attacker suite needs to know of a trusted process to attack it.

    ``jupyter prod-discovery service`` plugs into the suite by providing the same.
    """

    @property
    def pid(self) -> int: ...

    def needles(self) -> dict[str, str]:
        """Label -> a distinctive substring of each secret it holds (never the whole secret)."""
        ...

    def paths(self) -> list[str]:
        """Files and directories that hold its secrets (its state dir)."""
        ...

    def unix(self) -> list[dict[str, str]]:
        """Unix sockets to try, each ``{"path", "request_hex"}``."""
        ...

    def tcp(self) -> list[dict[str, Any]]:
        """TCP endpoints to try, each ``{"host", "port", "request_hex"}``."""
        ...


HOLDER_SCRIPT = r"""
import json, os, socket, struct, sys, threading
cfg = json.loads(sys.stdin.readline())
held = cfg["memory"].encode()  # the in-memory secret: a bytes object kept alive
replies = {"owner": cfg["socket_secret"].encode() + b"\n"}
key_file = open(cfg["file"], "rb")  # held open, as a service holds its key: reachable via fd
me = os.getuid()

def serve(srv, peer_uid):
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(4096)
            except OSError:
                pass
            uid = peer_uid(conn)
            if uid == me or (cfg["tcp_answers_everyone"] and uid is None):
                conn.sendall(replies["owner"])
            else:
                conn.sendall(json.dumps({"uid": uid, "denied": True}).encode() + b"\n")

def peercred(conn):
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]

unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
unix.bind(cfg["socket"])
os.chmod(cfg["socket"], 0o666)
unix.listen(16)
tcp = socket.create_server(("127.0.0.1", 0))
threading.Thread(target=serve, args=(tcp, lambda c: None), daemon=True).start()
print(json.dumps({"tcp_port": tcp.getsockname()[1]}), flush=True)
serve(unix, peercred)
"""


def needle(secret: str) -> str:
    """The substring the probe looks for: 16 characters of a random secret are distinctive."""
    return secret[:16]


class SecretHolder:
    """A process of ``user`` holding four labelled secrets, each where a service keeps one.

    ``<label>:env`` in its environment, ``<label>:memory`` only in its heap, ``<label>:file`` in
    ``state/secret`` (state dir 0700, file 0600, kept open), ``<label>:socket`` answered on
    ``sock`` (0666, in a 0755 dir) to peers of its own uid only (``SO_PEERCRED``), and on a
    loopback TCP port, where no peer uid is known, to nobody or, with ``tcp_answers_everyone``,
    to anyone. ``leak_argv`` also puts
    ``<label>:argv`` on its command line, which every user can read: only for alice's decoy.
    """

    def __init__(
        self,
        user: str,
        label: str,
        log_path: Path,
        *,
        leak_argv: bool = False,
        tcp_answers_everyone: bool = False,
    ) -> None:
        self.user = user
        self.label = label
        self.log_path = log_path
        self.leak_argv = leak_argv
        self.tcp_answers_everyone = tcp_answers_everyone
        self.secrets = {
            kind: secrets.token_hex(24) for kind in ("env", "memory", "file", "socket", "argv")
        }
        self.base = _run_dir() / f"pd-test-{secrets.token_hex(6)}"
        self.state_dir = self.base / "state"
        self.socket_path = self.base / "sock"
        self.tcp_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> SecretHolder:
        pw = pwd.getpwnam(self.user)
        make_dir(self.base, pw, 0o755)
        make_dir(self.state_dir, pw, 0o700)
        secret_file = self.state_dir / "secret"
        secret_file.write_text(self.secrets["file"] + "\n")
        os.chown(secret_file, pw.pw_uid, pw.pw_gid)
        secret_file.chmod(0o600)
        argv = [users_python(), "-c", HOLDER_SCRIPT]
        if self.leak_argv:
            argv.append(self.secrets["argv"])
        env = {"PD_HOLDER_SECRET": self.secrets["env"]}
        with self.log_path.open("ab") as log:
            self.proc = spawn_as(
                self.user,
                argv,
                env,
                cwd=self.state_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        config = {
            "memory": self.secrets["memory"],
            "socket_secret": self.secrets["socket"],
            "file": str(secret_file),
            "socket": str(self.socket_path),
            "tcp_answers_everyone": self.tcp_answers_everyone,
        }
        self.proc.stdin.write(json.dumps(config).encode() + b"\n")
        self.proc.stdin.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"{self.label} holder did not start; see {self.log_path}")
        self.tcp_port = int(json.loads(line)["tcp_port"])
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        shutil.rmtree(self.base, ignore_errors=True)

    # TrustedSide

    def needles(self) -> dict[str, str]:
        kinds = [k for k in self.secrets if k != "argv" or self.leak_argv]
        return {f"{self.label}:{k}": needle(self.secrets[k]) for k in kinds}

    def paths(self) -> list[str]:
        return [str(self.base), str(self.state_dir)]

    def unix(self) -> list[dict[str, str]]:
        return [{"path": str(self.socket_path), "request_hex": b"secret?\n".hex()}]

    def tcp(self) -> list[dict[str, Any]]:
        return [{"host": "127.0.0.1", "port": self.tcp_port, "request_hex": b"secret?\n".hex()}]


class TrustedStandIn(SecretHolder):
    """The trusted side until ``jupyter prod-discovery service`` plugs in: user ``pdsvc``."""

    def __init__(self, log_path: Path, user: str = "pdsvc", label: str = "trusted") -> None:
        super().__init__(user, label, log_path)


# --------------------------------------------------------------------------------------------
# the probe


def probe_config(
    needles: Mapping[str, str],
    *,
    pids: Sequence[int] = (),
    paths: Sequence[str] = (),
    unix: Sequence[Mapping[str, Any]] = (),
    tcp: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The probe's JSON config (see ``tests/attacks/probe.py``)."""
    return {
        "needles": [{"label": k, "hex": v.encode().hex()} for k, v in needles.items()],
        "pids": list(pids),
        "paths": list(paths),
        "unix": [dict(u) for u in unix],
        "tcp": [dict(t) for t in tcp],
    }


class ProbeFiles:
    """The probe's config, readable by ``user``, and its report dir, writable by ``user`` only.

    Both live outside every probed path: a probe that read its own config would find every needle.
    """

    def __init__(self, user: str, config: Mapping[str, Any]) -> None:
        pw = pwd.getpwnam(user)
        self.dir = Path(tempfile.mkdtemp(prefix="pd-probe-", dir=SHARED_TMP))
        self.dir.chmod(0o755)
        self.config = self.dir / "config.json"
        self.config.write_text(json.dumps(config))
        self.config.chmod(0o644)
        self.out = make_dir(self.dir / "out", pw, 0o700) / "report.json"

    def args(self) -> list[str]:
        return ["--config", str(self.config), "--out", str(self.out)]

    def report(self, output: str = "") -> dict[str, Any]:
        if not self.out.exists():
            raise AssertionError(f"the probe wrote no report; its output:\n{output}")
        report: dict[str, Any] = json.loads(self.out.read_text())
        return report

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def probe_as(
    user: str, config: Mapping[str, Any], timeout: float = 60.0, cwd: str | None = None
) -> dict[str, Any]:
    """Run the probe as a plain process of ``user`` (no Jupyter in between), in ``cwd`` (by
    default the user's home; ``/`` for a system user whose home does not exist)."""
    files = ProbeFiles(user, config)
    try:
        argv = [users_python(), str(PROBE), *files.args()]
        proc = spawn_as(user, argv, cwd=cwd, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            stop(proc)
        return files.report(out.decode(errors="replace"))
    finally:
        files.cleanup()


#: The probe that must find each kind of a decoy's secrets when the decoy is within reach.
DECOY_FINDS = {
    "proc_cmdline": "argv",
    "proc_environ": "env",
    "proc_mem": "memory",
    "proc_fd": "file",
    "files": "file",
    "unix_socket": "socket",
    "tcp": "socket",
}
#: Probes whose ``access`` lists the processes they opened (cmdline is world-readable anyway).
PROCESS_PROBES = ("proc_environ", "proc_mem", "proc_fd", "ptrace_attach")


def by_name(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["probes"]}


def leaks(report: Mapping[str, Any], side: TrustedSide) -> dict[str, list[str]]:
    """Probe -> labels of ``side``'s secrets it found: must be empty across the boundary."""
    labels = set(side.needles())
    found = {p["name"]: sorted(labels & set(p["found"])) for p in report["probes"]}
    return {name: hit for name, hit in found.items() if hit}


def foreign_access(report: Mapping[str, Any], allowed: Sequence[int]) -> dict[str, list[str]]:
    """Probe -> processes it opened beyond ``allowed`` (the attacker's own decoys)."""
    ok = {str(p) for p in allowed}
    probes = by_name(report)
    extra = {n: sorted(set(probes[n]["access"]) - ok) for n in PROCESS_PROBES}
    return {name: pids for name, pids in extra.items() if pids}


def misses(report: Mapping[str, Any], decoy: SecretHolder) -> list[str]:
    """The positive control: what the probe failed to obtain from a decoy within its reach.

    Empty when every probe found its kind of the decoy's secrets and ptrace attached to it; a
    probe that silently reads nothing shows up here instead of passing as a boundary that held.
    """
    probes = by_name(report)
    expected = dict(DECOY_FINDS)
    if not decoy.leak_argv:
        del expected["proc_cmdline"]
    if not decoy.tcp_answers_everyone:
        del expected["tcp"]
    missed = [
        f"{name} did not find {decoy.label}:{kind} ({probes[name]['detail']})"
        for name, kind in expected.items()
        if f"{decoy.label}:{kind}" not in probes[name]["found"]
    ]
    if str(decoy.pid) not in probes["ptrace_attach"]["access"]:
        missed.append(f"ptrace_attach could not attach to {decoy.label} ({decoy.pid})")
    return missed


# --------------------------------------------------------------------------------------------
# alice's Jupyter server


class UserServer:
    """``jupyter server`` as ``user`` on a free loopback port, with kernels and terminals.

    Started from ``.venv-users`` with a random token, ``root_dir`` ``~/work`` and the runtime dir
    in the user's home; the extension is enabled by the package's ``jupyter_server_config.d``.
    """

    def __init__(
        self,
        user: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.pw = pwd.getpwnam(user)
        self.user = user
        self.log_path = log_path
        self.env = dict(env or {})
        self.args = list(args)
        self.home = Path(self.pw.pw_dir)
        self.root_dir = self.home / "work"
        self.runtime_dir = self.home / ".local" / "share" / "jupyter" / "runtime"
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kernel_id: str | None = None
        self.last_exit_status: int | None = None  # of the last ``terminal`` command

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> UserServer:
        make_dir(self.root_dir, self.pw, 0o755)
        argv = [
            str(USERS_VENV / "bin" / "jupyter-server"),
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--ServerApp.runtime_dir={self.runtime_dir}",
            *self.args,
        ]
        users_python()  # the venv is there and reachable, or skip/fail with the reason
        with self.log_path.open("ab") as log:
            # The token in the environment, not on the command line, which every user can read.
            env = {**self.env, "JUPYTER_TOKEN": self.token}
            self.proc = spawn_as(self.user, argv, env, cwd=self.home, stdout=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"jupyter server as {self.user} exited: {self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except requests.RequestException:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"no /api/status in {timeout} s: {self.log_tail()}"
                    ) from None
                time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        # Kernels and terminal shells run in sessions of their own: remember them before the
        # server goes, so that none outlives a server that failed to stop them.
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.proc.pid).children(recursive=True)
        stop(self.proc, timeout=20)
        kill_leftovers(children, self.pw.pw_uid)
        self.proc = None

    def __enter__(self) -> UserServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # REST

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        response = requests.request(
            method, self.url + path, json=body, headers=self._headers, timeout=timeout
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def _ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://", 1) + path

    # kernels

    def execute(self, code: str, timeout: float = 60.0) -> str:
        """Run ``code`` in this server's kernel (started on first use); its text output.

        Streams, results and tracebacks in order, collected until the kernel is idle again.
        """
        if self.kernel_id is None:
            self.kernel_id = str(self.api("POST", "/api/kernels", {"name": "python3"})["id"])
        return asyncio.run(self._execute(self.kernel_id, code, timeout))

    async def _execute(self, kernel_id: str, code: str, timeout: float) -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self._ws_url(f"/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}")
        conn = await asyncio.wait_for(
            websocket_connect(HTTPRequest(url, headers=self._headers)), timeout
        )
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": self.user,
                "session": uuid.uuid4().hex,
                "version": "5.3",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        parts: list[str] = []
        try:
            await conn.write_message(json.dumps(request))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"kernel not idle after {timeout} s: {''.join(parts)}")
                raw = await asyncio.wait_for(conn.read_message(), left)
                if raw is None:
                    raise RuntimeError(f"kernel websocket closed: {''.join(parts)}")
                if isinstance(raw, bytes):
                    continue
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg.get("msg_type"), msg.get("content", {})
                if kind == "stream":
                    parts.append(content.get("text", ""))
                elif kind in ("execute_result", "display_data"):
                    parts.append(str(content.get("data", {}).get("text/plain", "")) + "\n")
                elif kind == "error":
                    parts.append(_ANSI.sub("", "\n".join(content.get("traceback", []))) + "\n")
                elif kind == "status" and content.get("execution_state") == "idle":
                    return "".join(parts)
        finally:
            conn.close()

    # terminals

    def terminal(self, command: str, timeout: float = 60.0) -> str:
        """Type ``command`` into a new terminal; what the terminal showed until it finished.

        An end marker echoed after the command tells when it is done; its exit status is kept in
        ``last_exit_status``.
        """
        name = str(self.api("POST", "/api/terminals")["name"])
        try:
            return asyncio.run(self._terminal(name, command, timeout))
        finally:
            with contextlib.suppress(requests.RequestException):
                self.api("DELETE", f"/api/terminals/{name}")

    async def _terminal(self, name: str, command: str, timeout: float) -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        conn = await asyncio.wait_for(
            websocket_connect(
                HTTPRequest(self._ws_url(f"/terminals/websocket/{name}"), headers=self._headers)
            ),
            timeout,
        )
        marker = secrets.token_hex(8)
        # printf joins the marker's halves, so the echoed command line never matches it.
        done = re.compile(rf"PDEND_{marker}:(\d+)")
        out = ""
        try:
            await conn.write_message(json.dumps(["stdin", command + "\n"]))
            await conn.write_message(
                json.dumps(["stdin", f"printf '%s_%s:%s\\n' PDEND {marker} \"$?\"\n"])
            )
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"terminal command unfinished after {timeout} s:\n{out}")
                raw = await asyncio.wait_for(conn.read_message(), left)
                if raw is None:
                    raise RuntimeError(f"terminal websocket closed:\n{out}")
                msg = json.loads(raw)
                if msg[0] == "stdout":
                    out += _ANSI.sub("", msg[1]).replace("\r", "")
                    found = done.search(out)
                    if found:
                        self.last_exit_status = int(found.group(1))
                        return out[: found.start()]
        finally:
            conn.close()

    # the probe from inside

    def probe_in_kernel(self, config: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """The probe in this server's kernel; only paths travel in the cell, never needles."""
        files = ProbeFiles(self.user, config)
        try:
            code = (
                "import runpy\n"
                f"_pd_probe = runpy.run_path({str(PROBE)!r}, run_name='pd_probe')\n"
                f"_pd_probe['main']({files.args()!r})\n"
            )
            return files.report(self.execute(code, timeout))
        finally:
            files.cleanup()

    def probe_in_terminal(self, config: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """The probe from a terminal of this server, as ``<users venv>/bin/python probe.py``."""
        files = ProbeFiles(self.user, config)
        try:
            # The absolute path: the terminal's login shell resets PATH from /etc/profile.
            out = self.terminal(f"{users_python()} {PROBE} {' '.join(files.args())}", timeout)
            return files.report(out)
        finally:
            files.cleanup()


class ReachedServer(UserServer):
    """A server someone else started and owns (the demo, a JupyterHub), reached at its URL with
    a token: ``start`` only checks that it answers, ``stop`` only shuts down the kernel this
    object started. A subclass sets ``url``, ``token`` and ``port`` and says its ``pid``."""

    def start(self, timeout: float = 60.0) -> Self:
        self.api("GET", "/api/status", timeout=timeout)
        return self

    def stop(self) -> None:
        if self.kernel_id is not None:
            with contextlib.suppress(requests.RequestException):
                self.api("DELETE", f"/api/kernels/{self.kernel_id}")
            self.kernel_id = None


__all__ = [
    "DECOY_FINDS",
    "PROBE",
    "USERS_VENV",
    "ProbeFiles",
    "ReachedServer",
    "SecretHolder",
    "TrustedSide",
    "TrustedStandIn",
    "UserServer",
    "by_name",
    "ensure_user",
    "foreign_access",
    "is_dumpable",
    "leaks",
    "misses",
    "needle",
    "probe_as",
    "probe_config",
    "spawn_as",
    "stop",
    "users_python",
]
