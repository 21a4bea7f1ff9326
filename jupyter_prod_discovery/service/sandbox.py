"""The clean run outside the trusted domain: another OS user, the job's declared roles only.

Why a separate OS user and not a subprocess of the service: the notebook is the author's code.
Run as the service's uid it could read the service's signing key, its Vault token (from
``/proc/<service pid>/environ``) and its state directory, and sign whatever it liked. As the
``ExportSandbox.user`` (an unprivileged account of its own) it can reach none of that; its
environment is built from nothing (``HOME``, ``PATH``, ``LANG`` and the credentials issued for
this run), never copied from the service's.

Credentials: the service's broker issues the bundle's *declared* credential profiles (those the
manifest names), checked against the author's own entitlements, under a kernel key of the run
(``<user>/export-run/<job id>``); they are revoked as soon as the run ends, whatever the outcome,
so the database user a run had is gone afterwards.

Data sources: the run's kernel carries the same audit shim as the author's kernels
(``audit/kernel_shim.py``), reporting to a collector socket the service opens for this run alone
(:class:`RunCollector`, one random token); what it reports goes into the statement as the
``clean_run`` data sources. The shim's source travels with the run (the sandbox interpreter
need not have this package), and its variables are taken out of the kernel's environment before
the notebook's code runs.

Writable profiles: a database profile the job declares writable is never given write access to
its source. The run gets a throwaway copy instead: a PostgreSQL database created for the run from
the source (``pg_dump | psql``, which unlike ``CREATE DATABASE ... TEMPLATE`` works while others
are connected to the source), on which the run's database user gets every privilege; the
profile's variables point at the copy, and the copy is dropped after the run, before the
user's lease is revoked (a role holding privileges in a database cannot be dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import Bool, Unicode, default
from traitlets.config import LoggingConfigurable

from ..audit import kernel_shim
from ..audit.shim_listener import KINDS, MAX_MESSAGE_BYTES
from ..export.gates.base import CleanRunOutcome, CleanRunSandbox, SandboxError

if TYPE_CHECKING:
    from .credentials import CredentialDesk
    from .ledger import Principal

__all__ = ["SANDBOX_RUNNER", "ExportSandbox", "RunCollector", "UserSandbox", "drop_to"]

#: What the sandbox user runs (argv[1]: the parameters as JSON; stdin: the notebook; stdout:
#: the executed notebook). It makes its own private directory, which is also the kernel's HOME
#: and Jupyter runtime dir (the sandbox account may have no home), and removes it after.
SANDBOX_RUNNER = """
import json, os, shutil, signal, sys, tempfile

def end(*_):
    # The kernel runs in a session of its own (jupyter_client): a signal to this process group
    # at the deadline misses it. ipykernel notices its parent's death and exits; a kernel that
    # does not would outlive the run. Kill this process's children, then go.
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            if ppid == me:
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, IndexError):
            pass
    os._exit(3)

signal.signal(signal.SIGTERM, end)
work = tempfile.mkdtemp(prefix="pd-run-")
os.environ["HOME"] = os.environ["JUPYTER_RUNTIME_DIR"] = work
shim = os.environ.pop("PD_RUN_SHIM", "")
if shim:
    # For the kernel only (this runner's own reads are not the notebook's): the shim module and
    # a sitecustomize that installs it, then removes its variables before any cell runs.
    shim = json.loads(shim)
    site = os.path.join(work, "shim")
    os.mkdir(site)
    with open(os.path.join(site, "pd_kernel_shim.py"), "w", encoding="utf-8") as f:
        f.write(shim["source"])
    with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(
            "import os\\n"
            "try:\\n"
            "    import pd_kernel_shim\\n"
            "    pd_kernel_shim.install()\\n"
            "except Exception:\\n"
            "    pass\\n"
            "for _k in " + repr(sorted(shim["env"])) + ":\\n"
            "    os.environ.pop(_k, None)\\n"
        )
    # IPython runs its startup files once the kernel is up, before the first cell: from there
    # on what the kernel touches is the notebook's doing (not its connection file, history...).
    startup = os.path.join(work, ".ipython", "profile_default", "startup")
    os.makedirs(startup)
    with open(os.path.join(startup, "00-pd-shim.py"), "w", encoding="utf-8") as f:
        f.write(
            "import sys\\n"
            "_c = getattr(sys, '_prod_discovery_shim', None)\\n"
            "if _c is not None:\\n"
            "    _c.reset()\\n"
        )
    os.environ.update(shim["env"])
    os.environ["PYTHONPATH"] = site
src, out = os.path.join(work, "in.ipynb"), os.path.join(work, "out.ipynb")
with open(src, "w", encoding="utf-8") as f:
    f.write(sys.stdin.read())
code = 0
try:
    import papermill
    papermill.execute_notebook(src, out, parameters=json.loads(sys.argv[1]), cwd=work,
                               progress_bar=False, log_output=False)
except BaseException:
    code = 1
try:
    with open(out, encoding="utf-8") as f:
        sys.stdout.write(f.read())
except OSError:
    pass
shutil.rmtree(work, ignore_errors=True)
sys.exit(code)
"""

T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RunCollector:
    """The datasource events of one clean run: a PULL socket on loopback, one random token.

    Received after the run (ZMQ queues them meanwhile; the shim sends a summary a second and at
    the kernel's exit), in this job's thread. Messages without the token are dropped, as the
    server's collector drops them (``audit/shim_listener.py``); any local process can connect to
    a loopback port, only the run's kernel knows the token.
    """

    def __init__(self, tmpdir: str) -> None:
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 1000)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.token = secrets.token_hex(16)
        # The run's own private directory (HOME, kernel files) is not a data source, nor is
        # the probe file Python's tempfile writes once into TMPDIR (8 random characters).
        self._work_prefix = str(Path(tmpdir) / "pd-run-")
        self._probe = re.compile(re.escape(str(Path(tmpdir))) + r"/[a-z0-9_]{8}")
        self.events: list[dict[str, Any]] = []

    def shim(self) -> str:
        """What the runner needs to load the shim into the run's kernel (``PD_RUN_SHIM``)."""
        return json.dumps(
            {
                "source": Path(kernel_shim.__file__).read_text(encoding="utf-8"),
                "env": {
                    kernel_shim.ENV_ADDR: self.address,
                    kernel_shim.ENV_TOKEN: self.token,
                    kernel_shim.ENV_INTERVAL: "1",
                },
            }
        )

    def drain(self, quiet: float = 0.05) -> list[dict[str, Any]]:
        """Take what arrived, until ``quiet`` seconds pass without a message.

        Called once the runner has exited, which it does after its kernel: the kernel's last
        summary (sent at its exit, lingering until delivered) is already queued here, so the
        wait only catches stragglers; it adds ``quiet`` to every clean run."""
        zmq = self._zmq
        while self._sock.poll(int(quiet * 1000), zmq.POLLIN):
            frames = self._sock.recv_multipart(zmq.NOBLOCK)
            if len(frames) != 2 or frames[0] != self.token.encode():
                continue
            try:
                events = json.loads(frames[1])["events"]
            except (ValueError, KeyError, TypeError):
                continue
            for event in events[:500] if isinstance(events, list) else []:
                if not isinstance(event, dict) or event.get("kind") not in KINDS:
                    continue
                target = str(event.get("target", ""))[:500]
                if event["kind"] == "file" and (
                    target.startswith(self._work_prefix) or self._probe.fullmatch(target)
                ):
                    continue
                try:
                    count = max(1, int(event.get("count") or 1))
                except (TypeError, ValueError):
                    count = 1
                self.events.append({"kind": event["kind"], "target": target, "count": count})
        return self.events

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


class ExportSandbox(LoggingConfigurable):
    """Where the service runs ``clean_run``: configuration of the sandbox (``c.ExportSandbox``)."""

    user = Unicode(
        "",
        config=True,
        help="""Unprivileged OS user the clean run executes as (its own account, not the
        service's, not a notebook user's). Default '' (none): clean_run then fails closed, naming
        this setting. The service must run as root or with CAP_SETUID to switch to it.""",
    )
    allow_same_user = Bool(
        False,
        config=True,
        help="""Evaluation only: with no ``user`` configured, run clean runs as the service's own
        user instead of refusing them. No boundary at all (the notebook's code could read the
        service's keys): for a same-user demo. Default False.""",
    )
    python = Unicode(
        config=True,
        help="""Interpreter the sandbox user runs papermill with (it needs papermill, ipykernel
        and the notebook's libraries, and must be executable by that user). Default: the
        service's own interpreter.""",
    )
    work_dir = Unicode(
        "",
        config=True,
        help="""Where each run makes its private working directory (the run's TMPDIR: created
        0700 by the sandbox user, removed after), so it must be writable by that user.
        Default '' (the service's temporary directory).""",
    )
    admin_dsn = Unicode(
        config=True,
        help="""PostgreSQL DSN of an account allowed to CREATE and DROP DATABASE, for the
        throwaway copies of writable profiles. Default: $PROD_DISCOVERY_SANDBOX_ADMIN_DSN, or ''
        (a job declaring a writable profile is then refused). Never logged.""",
    )

    @default("python")
    def _python_default(self) -> str:
        return sys.executable

    @default("admin_dsn")
    def _admin_default(self) -> str:
        return os.environ.get("PROD_DISCOVERY_SANDBOX_ADMIN_DSN", "")

    def for_run(
        self,
        desk: CredentialDesk,
        loop: asyncio.AbstractEventLoop,
        principal: Principal,
        run_id: str,
        kernel_name: str,
        profiles: list[str],
        writable: list[str],
    ) -> UserSandbox:
        """The sandbox of one export job (used from the job's worker thread)."""
        return UserSandbox(self, desk, loop, principal, run_id, kernel_name, profiles, writable)


class UserSandbox(CleanRunSandbox):
    """One job's clean run as ``ExportSandbox.user`` with its declared profiles' credentials."""

    def __init__(
        self,
        config: ExportSandbox,
        desk: CredentialDesk,
        loop: asyncio.AbstractEventLoop,
        principal: Principal,
        run_id: str,
        kernel_name: str,
        profiles: list[str],
        writable: list[str],
    ) -> None:
        self.config = config
        self.desk = desk
        self.loop = loop
        self.principal = principal
        self.run_id = run_id
        self.kernel_name = kernel_name
        self.profiles = profiles
        self.writable = writable
        #: What the last run was given, for the job's record (names only, never values).
        self.issued_profiles: list[str] = []
        #: What the run's kernel touched (datasource event data), for the statement.
        self.data_sources: list[dict[str, Any]] = []
        self.copies: list[str] = []

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the service's event loop (the broker lives there) and wait."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _account(self) -> pwd.struct_passwd | None:
        """The sandbox account; None: the service's own (``allow_same_user``, evaluation)."""
        name = self.config.user
        if not name and self.config.allow_same_user:
            return None
        if not name:
            raise SandboxError("no sandbox user is configured (c.ExportSandbox.user)")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SandboxError(f"the sandbox user {name!r} does not exist") from None
        if entry.pw_uid in (0, os.getuid()):
            raise SandboxError(
                f"the sandbox user {name!r} must be an unprivileged account other than the "
                "service's own"
            )
        return entry

    def run(self, notebook: str, parameters: dict[str, Any], timeout: float) -> CleanRunOutcome:
        account = self._account()
        if self.writable and not self.config.admin_dsn:
            raise SandboxError(
                "a writable profile needs a throwaway database copy, and no "
                "c.ExportSandbox.admin_dsn is configured"
            )
        key = ""
        try:
            key, env = self._on_loop(
                self.desk.issue_run(self.principal, self.run_id, self.kernel_name, self.profiles)
            )
            self.issued_profiles = list(self.profiles)
            for name in self.writable:
                env = self._writable_copy(name, env)
            return self._execute(account, notebook, parameters, timeout, env)
        finally:
            for copy in self.copies:
                try:
                    drop_database(self.config.admin_dsn, copy)
                except Exception:
                    self.config.log.exception("Dropping the run's database copy %s failed", copy)
            if key:
                self._on_loop(self.desk.revoke_run(key))

    # -- the run ---------------------------------------------------------------------------------

    def _execute(
        self,
        account: pwd.struct_passwd | None,
        notebook: str,
        parameters: dict[str, Any],
        timeout: float,
        issued: dict[str, str],
    ) -> CleanRunOutcome:
        """Run :data:`SANDBOX_RUNNER` as the sandbox user: the notebook goes in on stdin, the
        executed notebook comes back on stdout. No file is shared: the run makes its own 0700
        directory, so the service needs no right to create or chown files for another user."""
        me = account or pwd.getpwuid(os.getuid())
        python = self.config.python
        tmpdir = self.config.work_dir or tempfile.gettempdir()
        collector = RunCollector(tmpdir)
        env = {
            "USER": me.pw_name,
            "LOGNAME": me.pw_name,
            "PATH": f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TMPDIR": tmpdir,
            "PD_RUN_SHIM": collector.shim(),
            **issued,
        }
        try:
            code, out = self._spawn(account, env, notebook, parameters, timeout)
            # The kernel's last summary left at its exit, before the runner's.
            self.data_sources = list(collector.drain())
        finally:
            collector.close()
        return CleanRunOutcome(code, out.decode("utf-8", "replace") if out else None)

    def _spawn(
        self,
        account: pwd.struct_passwd | None,
        env: dict[str, str],
        notebook: str,
        parameters: dict[str, Any],
        timeout: float,
    ) -> tuple[int | None, bytes]:
        """The runner's process: (exit code or None at the deadline, its stdout)."""
        python = self.config.python
        prefix = drop_to(account) if account is not None else []
        argv = [*prefix, python, "-c", SANDBOX_RUNNER, json.dumps(parameters)]
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd="/",
            process_group=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        code: int | None
        try:
            out, _ = proc.communicate(notebook.encode(), timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code, out = None, b""
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)  # the runner kills its kernel, then exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of the run outlived it
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=5)
        return code, out

    # -- writable profiles -----------------------------------------------------------------------

    def _writable_copy(self, profile: str, env: dict[str, str]) -> dict[str, str]:
        """Create the run's copy of the profile's database; return ``env`` pointing at it."""
        source, login = env.get("PGDATABASE", ""), env.get("PGUSER", "")
        if not source or not login:
            raise SandboxError(
                f"writable profile {profile!r} must set PGDATABASE and PGUSER for its copy"
            )
        copy = f"pd_run_{re.sub(r'[^a-z0-9]', '', self.run_id.lower())[:20]}"
        self.copies.append(copy)
        copy_database(self.config.admin_dsn, source, copy, login)
        out: dict[str, str] = {}
        for var, value in env.items():
            if value == source:
                value = copy
            else:
                value = re.sub(rf"/{re.escape(source)}(?=$|\?)", f"/{copy}", value)
            out[var] = value
        return out


def drop_to(account: pwd.struct_passwd) -> list[str]:
    """The ``setpriv`` prefix that runs a command as ``account`` with no capability left.

    Why setpriv rather than ``Popen(user=...)``: a service that is not root switches users with
    ambient CAP_SETUID/CAP_SETGID (the demo grants them so), and ambient capabilities survive a
    switch between two non-root uids: the notebook's code could switch back to the service's
    user. Clearing the inheritable set clears the ambient one; ``--no-new-privs`` keeps setuid
    binaries from giving any back.
    """
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    if not Path(setpriv).exists():
        raise SandboxError("setpriv (util-linux) is needed to switch to the sandbox user")
    return [
        setpriv,
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ]


def _pg_env(dsn: str, dbname: str) -> dict[str, str]:
    """libpq variables of ``dsn`` for ``dbname``: the password never goes on a command line."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD"}
    env = {var: str(params[k]) for k, var in names.items() if params.get(k) is not None}
    env["PGDATABASE"] = dbname
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return env


def _with_db(dsn: str, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=dbname)


def copy_database(admin_dsn: str, source: str, copy: str, grantee: str) -> None:
    """``copy``: a new database with the schema and data of ``source``, all of it ``grantee``'s
    to change, connectable by nobody else."""
    import psycopg

    for name in (source, copy, grantee):
        if not re.fullmatch(r"[\w.-]{1,63}", name):
            raise SandboxError(f"refusing the database identifier {name!r}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{copy}"')
        conn.execute(f'REVOKE CONNECT ON DATABASE "{copy}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{copy}" TO "{grantee}"')
    dump = subprocess.Popen(
        ["pg_dump", "--no-owner", "--no-privileges"],
        env=_pg_env(admin_dsn, source),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    load = subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1"],
        env=_pg_env(admin_dsn, copy),
        stdin=dump.stdout,
        capture_output=True,
        check=False,
    )
    if dump.stdout is not None:
        dump.stdout.close()
    dumped = dump.wait()
    if dumped != 0 or load.returncode != 0:
        raise SandboxError(f"copying database {source!r} for the run failed")
    with psycopg.connect(_with_db(admin_dsn, copy), autocommit=True) as conn:
        for (schema,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema'"
        ).fetchall():
            conn.execute(f'GRANT ALL ON SCHEMA "{schema}" TO "{grantee}"')
            conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{grantee}"')
            conn.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{grantee}"')


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a run's copy, ending its sessions first (PostgreSQL 13+: ``WITH (FORCE)``)."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
