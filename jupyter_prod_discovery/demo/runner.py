"""``jupyter prod-discovery demo``: OpenBao, a sample production database, the trusted service
and JupyterLab as its client.

Order of start, each step only once the previous one works:

1. PostgreSQL is checked (the service's signed ledger lives there: no PostgreSQL, no demo) and
   the topology resolved (``topology.py``: started as root, OpenBao and the service run as
   ``pd-demo-svc`` and JupyterLab as ``pd-demo``; otherwise everything as the caller).
2. OpenBao dev server; its root token seeds policies, the KV secret and the database engine
   (``seed.py``), creates the service's least-privilege token and the demo's cleanup token, and
   is revoked (``trusted.py``). From here on no root token exists.
3. The trusted service: the only Vault token, the ledger's DSN and the signing key, in its own
   environment and state dir; a unix socket in a directory of its own.
4. JupyterLab, a client of the service (``ProdDiscoveryApp.service_url``): it holds nothing of
   Vault, no DSN and no audit key. Kernels get credentials from the service; audit records are
   sealed there; the live PII guard stays in JupyterLab, where the outputs pass.

Order of stop (Ctrl-C, SIGTERM or SIGHUP), so that nothing is left behind:

1. JupyterLab gets SIGTERM: its kernels shut down and the service revokes their credentials;
   whatever is left of its process tree (kernels and terminals run in sessions of their own) is
   then killed.
2. The service gets SIGTERM: it revokes anything still issued and flushes the ledger.
3. Every lease still under the database mount is revoked with the cleanup token, which drops the
   PostgreSQL roles Vault created; any role of this demo still present afterwards
   (``v-pd<tag>-...``) is dropped directly.
4. OpenBao is stopped; the private directories (signing key, socket, config, runtime) go.
5. Whatever is left of the demo's group of children is killed (``lifetime.py``: they share one
   process group, and each gets SIGTERM from Linux if the demo itself dies without stopping).

The stop runs to its end whatever happens on the way: a closed pipe or a closed terminal (the
demo's output piped into ``tee`` that Ctrl-C ended, SIGHUP) only silences the messages, which
also go to ``logs/demo.log``; a step that fails is reported and the next one still runs.

Kept: the logs, JupyterLab's copy of its audit records (``trail/``), the ledger
(``prod_discovery_demo_audit``, one chain per run, with its public key in the work dir) and the
sample database ``prod_discovery_demo``: it holds only synthetic data, is reused by the next demo
(and may be in use by another demo sharing the PostgreSQL), and no login can reach it once the
demo's roles are gone. The demo's own notebooks folder is removed unless ``--keep`` (a
``--root-dir`` of the user's is never touched); the banner says where it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import hvac
import psutil
import requests

from .lifetime import ChildGroup
from .openbao import DevServer
from .seed import (
    SeedResult,
    _host_port,
    drop_leftover_roles,
    postgres_reachable,
    revoke_database_leases,
    seed_vault,
)
from .topology import (
    SAME_USER_NOTE,
    DemoError,
    Layout,
    Topology,
    resolve_topology,
)
from .trusted import (
    LEDGER_TABLE,
    DemoService,
    VaultHandover,
    dsn_password,
    ensure_audit_database,
    hand_over_vault,
    public_dsn,
)

__all__ = ["DEFAULT_DSN", "demo_config", "lab_command", "lab_config", "run_demo"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PORT = 8888
STARTUP_TIMEOUT = 60.0

WELCOME = """\
# Prod Discovery demo

This JupyterLab runs with the Prod Discovery guardrails against a throw-away OpenBao. It holds
no Vault token, no database password and no audit key: a separate trusted service issues each
kernel its own short-lived credentials (as environment variables, revoked when the kernel stops)
and seals the audit trail. Try, in a notebook:

```python
import os
sorted(k for k in os.environ if k.startswith(("PG", "PROD_", "WAREHOUSE", "VAULT")))
```

then read the sample production data with the database login issued to this kernel alone
(libpq needs nothing but the `PG*` variables; the same line as in the README):

```python
import os, psycopg; psycopg.connect("").execute("select * from customers limit 5").fetchall()
```

The SSNs and emails come back redacted: the live PII guard scans every output before it reaches
the browser. Every file you open, every cell you run and every credential issued is recorded in
the service's signed ledger (the demo's banner prints the command that verifies it).
"""


class _Console:
    """The demo's messages: to the terminal while it is there, and to ``logs/demo.log``.

    Why: the stop must run to its end. With the output piped (``demo.sh | tee demo.log``),
    Ctrl-C ends ``tee`` too and the next print raises BrokenPipeError; a closed terminal
    (SIGHUP) gives EIO. The first such failure points stdout and stderr at /dev/null (so that
    neither a later print nor the interpreter's last flush can raise), and the messages go on
    in the log only.
    """

    def __init__(self) -> None:
        self.log: Path | None = None
        self.gone = False

    def say(self, text: str) -> None:
        if self.log is not None:
            with contextlib.suppress(OSError), self.log.open("a", encoding="utf-8") as f:
                f.write(text + "\n")
        if self.gone:
            return
        try:
            print(text, flush=True)
        except (OSError, ValueError):
            self.lost()

    def lost(self) -> None:
        """The terminal or pipe is gone: write nowhere from now on."""
        self.gone = True
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)


_console = _Console()


def _say(msg: str) -> None:
    _console.say(f"[prod-discovery demo] {msg}")


def _port_holder(port: int) -> str | None:
    """Who listens on 127.0.0.1:``port`` (None when it is free), as a person can act on it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as JupyterLab binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            return None
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            listening = conn.status == psutil.CONN_LISTEN and conn.laddr
            if listening and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                cmd = " ".join(proc.cmdline()[:4]) or proc.name()
                return f"pid {conn.pid} ({cmd}, user {proc.username()})"
    return "another process"


def choose_port(requested: int | None) -> int:
    """The port JupyterLab will use: the one asked for, or the default or the next free one.

    An explicit ``--port`` that is taken stops the demo before anything starts, naming the
    holder (often an earlier demo or JupyterLab) and a free port to pass instead.
    """
    port = requested or DEFAULT_PORT
    holder = _port_holder(port)
    if holder is None:
        return port
    free = next((p for p in range(port + 1, port + 100) if _port_holder(p) is None), None)
    if requested is not None or free is None:
        hint = f": stop it or pass --port {free}" if free else ": stop it or pass another --port"
        raise DemoError(f"port {port} is taken by {holder}{hint}")
    _say(f"port {port} is taken by {holder}: using port {free}")
    return free


def _open_browser(url: str) -> None:
    """Open ``url`` where a graphical browser can show it (never a text browser in this
    terminal, which would take it over)."""
    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not (graphical or sys.platform == "darwin"):
        _say("no graphical display here: open the URL below in your browser")
        return
    import webbrowser

    try:
        opened = webbrowser.open(url, new=2)
    except Exception:  # a broken browser setup must not stop the demo
        opened = False
    if not opened:
        _say("could not open a browser: open the URL below yourself")


def _broker_has_profiles() -> bool:
    """Whether this installation's credential broker takes ``profiles`` (a later capability)."""
    try:
        from ..credentials.broker import CredentialBroker
    except ImportError:
        return False
    return "profiles" in CredentialBroker.class_trait_names()


def demo_config(seed: SeedResult, root_dir: Path) -> dict[str, Any]:
    """Jupyter config of a server that talks to Vault itself (Binder, the UI tests): the seeded
    credential profiles, no secret (Vault comes from the environment)."""
    config: dict[str, Any] = {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_prod_discovery": True},
            "root_dir": str(root_dir),
            "open_browser": False,
            "allow_unauthenticated_access": False,
        },
        "ProdDiscoveryApp": {"environment_name": "Prod Discovery (demo)"},
    }
    if _broker_has_profiles():
        config["CredentialBroker"] = {"profiles": seed.profiles()}
    return config


#: The export signing key's public half, in the work dir: all Integration needs to verify.
EXPORT_PUBLIC_KEY = "export-public-key.pem"


def export_config(seed: SeedResult, topo: Topology) -> dict[str, Any]:
    """The service's promotion settings: bundles signed with the seeded transit key; clean runs
    as the sandbox user (same-user mode: as the service itself, evaluation only)."""
    return {
        "NotebookExporter": {"signer_class": "jupyter_prod_discovery.export.signing.TransitSigner"},
        "TransitSigner": {"mount": seed.export_key_mount, "key_name": seed.export_key_name},
        "ExportSandbox": {
            "user": topo.sandbox.name if topo.sandbox is not None else "",
            "allow_same_user": topo.sandbox is None,
            "python": topo.python,
            "work_dir": "/tmp",  # noqa: S108 - the sandbox user must enter it; runs get 0700 dirs
        },
    }


def lab_config(
    root_dir: Path, service_url: str, spool_dir: Path, trail_dir: Path | None = None
) -> dict[str, Any]:
    """The demo's JupyterLab config: a client of the trusted service, holding no secret.

    ``trail_dir``: JupyterLab also keeps what it ships in a JSONL file there, chained with the
    key the service issued for its stream (the key lives in JupyterLab's memory only, for the
    demo's life), and every user may open the audit viewer on it: the demo's user is the only
    user and plays compliance too. A production server reads nothing of the ledger back.
    """
    config: dict[str, Any] = {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_prod_discovery": True},
            "root_dir": str(root_dir),
            "open_browser": False,
            "allow_unauthenticated_access": False,
        },
        "ProdDiscoveryApp": {
            "environment_name": "Prod Discovery (demo)",
            "service_url": service_url,
        },
        # In this run's runtime dir: a later demo (another service, another chain) must not
        # replay what this one could not ship.
        "AuditTrail": {"spool_dir": str(spool_dir)},
    }
    if trail_dir is not None:
        config["AuditTrail"].update(
            {
                "sink_classes": [
                    "jupyter_prod_discovery.audit.sinks.JSONLSink",
                    "jupyter_prod_discovery.audit.sinks.ServiceSink",
                ],
                "compliance_users": ["*"],
            }
        )
        config["JSONLSink"] = {"path": str(trail_dir / "audit.jsonl")}
    return config


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


def _wait_until_serving(
    url: str, token: str, proc: subprocess.Popen[bytes], timeout: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with status {proc.returncode} while starting; the end of "
                f"{log}:\n{_tail(log)}"
            )
        with contextlib.suppress(requests.RequestException):
            r = requests.get(
                f"{url}/api/status", headers={"Authorization": f"token {token}"}, timeout=1
            )
            if r.status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"JupyterLab did not serve within {timeout:.0f}s")


def _stop_lab(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM JupyterLab (it shuts its kernels; the service revokes), then kill what is left.

    Kernels and terminals run in sessions of their own: they are collected before the server
    goes, so that none outlives a server that failed to stop them.
    """
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        tree = psutil.Process(proc.pid).children(recursive=True)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _say("JupyterLab did not stop in time: killing it")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        proc.kill()  # itself: the group it shares is the demo's to end, last
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    for child in tree:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()
    psutil.wait_procs(tree, timeout=5)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def lab_command(port: int, python: str | None = None, *, as_root: bool | None = None) -> list[str]:
    """The JupyterLab command of the demo (and of the UI tests): loopback only, fixed port.

    ``as_root``: whether JupyterLab itself runs as root (default: whether this process does).
    """
    cmd = [
        python or sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
    ]
    if as_root is None:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if as_root:
        cmd.append("--allow-root")  # containers run as root; the server is loopback-only
    return cmd


class Demo:
    """One run of the demo: what was started, so that ``stop`` undoes exactly that."""

    def __init__(self, args: argparse.Namespace, dsn: str) -> None:
        self.args = args
        self.dsn = dsn
        self.port: int = args.port or DEFAULT_PORT
        self.group: ChildGroup | None = None  # OpenBao, the service, JupyterLab
        self.topology: Topology | None = None
        self.layout: Layout | None = None
        self.bao: DevServer | None = None
        self.seed: SeedResult | None = None
        self._handover: VaultHandover | None = None  # the tokens that replace the root token
        self.cleanup_token = ""  # revoke-prefix on the database mount, nothing else
        self.service: DemoService | None = None
        self.audit_dsn = ""
        self.lab: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.verify_after = ""  # the command that verifies the trail after the demo

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        if not postgres_reachable(self.dsn):
            raise DemoError(
                f"PostgreSQL at {_host_port(self.dsn)} is unreachable: the trusted service keeps "
                "its signed audit ledger there. Start PostgreSQL or pass --dsn (a superuser DSN)"
            )
        self.port = choose_port(self.args.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.topology = topo = resolve_topology()
        self.group = ChildGroup(topo.python)
        self.layout = layout = Layout.create(
            topo, Path(self.args.root_dir) if self.args.root_dir else None
        )
        _console.log = layout.logs / "demo.log"
        _say(f"work dir: {layout.workdir}")
        self._start_vault(topo, layout)
        self._start_service(topo, layout)
        self._start_lab(topo, layout)
        _say(f"JupyterLab is serving after {time.monotonic() - started:.1f}s")
        self._banner(topo, layout)

    def _start_vault(self, topo: Topology, layout: Layout) -> None:
        self.bao = bao = DevServer(
            log_path=str(layout.logs / "openbao.log"),
            private_root_token=True,  # generated by OpenBao, read from a pipe: no env, no file
            run_as=topo.run_as(topo.service),
            env=topo.environment(topo.service, home=str(layout.bao_home)),
            cwd=str(layout.bao_home),
            bao=topo.bao,
        )
        bao.group = self.group
        bao.start()
        _say(f"OpenBao dev server at {bao.address} (in memory, stopped with the demo)")
        root = bao.client()
        self.seed = seed = seed_vault(root, dsn=self.dsn)
        for note in seed.notes:
            _say(note)
        if seed.has_database:
            _say(
                f"sample database {seed.database!r}: {seed.customers} customers with synthetic "
                f"PII; database credentials from {seed.database_mount}/creds/"
                f"{seed.database_role} (role prefix {seed.role_prefix})"
            )
        self._handover = handover = hand_over_vault(
            root,
            seed.profiles(),
            seed.database_mount or "database",
            export_key=(seed.export_key_mount, seed.export_key_name),
        )
        bao.root_token = ""  # revoked in OpenBao; no copy kept here
        del root
        self.cleanup_token = handover.cleanup_token
        _say(
            "root token revoked after seeding; the service holds a token with the policies "
            + ", ".join(handover.service_policies)
        )

    def _start_service(self, topo: Topology, layout: Layout) -> None:
        assert self.bao is not None and self.seed is not None and self._handover is not None
        self.audit_dsn = ensure_audit_database(self.dsn)
        chain = f"demo-{os.urandom(4).hex()}"
        self.service = service = DemoService(
            python=topo.python,
            socket_path=layout.socket_path,
            state_dir=layout.service_state,
            config_path=layout.service_config,
            log_path=layout.logs / "service.log",
            chain=chain,
        )
        service.write_config(self.seed.profiles(), export_config(self.seed, topo))
        secrets_ = {
            "PROD_DISCOVERY_SERVICE_DSN": self.audit_dsn,
            "VAULT_ADDR": self.bao.address,
            "VAULT_TOKEN": self._handover.service_token,
        }
        service.start(
            topo.environment(topo.service, home=str(layout.service_state)),
            secrets_,
            {} if topo.separated else topo.popen_user(topo.service),
            group=self.group,
            launcher=topo.service_launcher(),
        )
        # The service has it now; the demo keeps only the cleanup token.
        self._handover.service_token = ""
        del secrets_
        layout.public_key.write_text(service.public_key())
        layout.public_key.chmod(0o644)
        export_key = layout.workdir / EXPORT_PUBLIC_KEY
        export_key.write_text(self.seed.export_public_key_pem)
        export_key.chmod(0o644)

    def _start_lab(self, topo: Topology, layout: Layout) -> None:
        assert self.service is not None
        root_dir = layout.notebooks
        if not self.args.root_dir:  # never write into a directory the user chose
            welcome = root_dir / "WELCOME.md"
            welcome.write_text(WELCOME)
            if topo.separated:
                os.chown(welcome, topo.lab.uid, topo.lab.gid)
        elif topo.separated and root_dir.stat().st_uid != topo.lab.uid:
            _say(
                f"note: JupyterLab runs as {topo.lab.name}, which does not own {root_dir}: it "
                "reads and writes there only as far as the directory's modes allow"
            )
        config = layout.config / "jupyter_server_config.json"
        config.write_text(
            json.dumps(
                lab_config(root_dir, self.service.url, layout.runtime / "spool", layout.trail),
                indent=1,
            )
        )
        if topo.separated:
            os.chown(config, topo.lab.uid, topo.lab.gid)
        self.token = secrets.token_hex(24)
        env = topo.environment(topo.lab)
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(layout.config),
                "JUPYTER_RUNTIME_DIR": str(layout.runtime),
                "JUPYTERLAB_SETTINGS_DIR": str(layout.lab_settings / "user-settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(layout.lab_settings / "workspaces"),
                "JUPYTER_TOKEN": self.token,  # not on the command line, where `ps` shows it
            }
        )
        assert self.group is not None
        log = layout.logs / "jupyterlab.log"
        with open(log, "ab") as out:  # its log lines would push the URL off the screen
            self.lab = subprocess.Popen(
                # Root separates: JupyterLab never runs as root here.
                self.group.argv(lab_command(self.port, topo.python, as_root=False)),
                env=env,
                cwd=root_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Ctrl-C reaches us only; we stop it in order. It dies with the demo.
                **self.group.popen_kwargs(),
                **topo.popen_user(topo.lab),
            )
        self.group.joined(self.lab)
        _wait_until_serving(self.url, self.token, self.lab, STARTUP_TIMEOUT, log)

    def _banner(self, topo: Topology, layout: Layout) -> None:
        assert self.bao is not None and self.service is not None and self.lab is not None
        bao_pid = self.bao.process.pid if self.bao.process else 0
        svc_pid = self.service.process.pid if self.service.process else 0
        if topo.separated:
            _say("topology: separated (started as root): controls run outside the user's reach")
        else:
            _say(f"topology: {SAME_USER_NOTE}")
        _say(f"  OpenBao dev server: user {topo.service.name}, pid {bao_pid}, {self.bao.address}")
        _say(
            f"  trusted service: user {topo.service.name}, pid {svc_pid}, {self.service.url} "
            "(the only Vault token, the ledger's DSN and the signing key)"
        )
        _say(
            f"  JupyterLab with its kernels and terminals: user {topo.lab.name}, "
            f"pid {self.lab.pid} (no Vault token, no DSN, no audit key)"
        )
        if self.args.root_dir:
            _say(f"notebooks: {layout.notebooks} (your folder: left as it is)")
        elif self.args.keep:
            _say(f"notebooks: {layout.notebooks} (kept after the demo: --keep)")
        else:
            _say(
                f"notebooks: {layout.notebooks} (a temporary folder, removed when the demo "
                "stops; start with --keep to keep it)"
            )
        _say(f"JupyterLab's copy of its audit records (the audit viewer's): {layout.trail}")
        ledger = public_dsn(self.audit_dsn)
        hidden = " (its password not shown)" if dsn_password(self.audit_dsn) else ""
        _say(
            f"audit ledger: {ledger}{hidden} table {LEDGER_TABLE} chain {self.service.chain} "
            f"(public key {layout.public_key})"
        )
        _say(f"logs: {layout.logs}")
        verify = f"jupyter prod-discovery audit verify --dsn {ledger} --chain {self.service.chain}"
        _say(f"verify the trail: {verify} --service {self.service.url}")
        _say(f"  after the demo: {verify} --public-key {layout.public_key}")
        self.verify_after = f"{verify} --public-key {layout.public_key}"
        if not self.args.no_browser:
            _open_browser(self.lab_url)
        _say("Ctrl-C stops everything; Enter prints the URL again")
        self.print_url()

    @property
    def lab_url(self) -> str:
        return f"{self.url}/lab?token={self.token}"

    def print_url(self) -> None:
        """The URL, last on the screen (the token is in it: it goes to the terminal only)."""
        if _console.gone:
            return
        try:
            print(f"\n    {self.lab_url}\n", flush=True)
        except (OSError, ValueError):
            _console.lost()

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> int:
        """Undo what ``start`` did, in order; 1 when something could not be checked.

        Every step runs even when an earlier one failed (reported, status 1): a step left out
        would leave a process, a lease or a role behind.
        """
        status = 0
        _say("stopping")
        try:
            if self.lab is not None:
                _stop_lab(self.lab)
        except Exception as exc:
            _say(f"stopping JupyterLab failed ({exc.__class__.__name__}: {exc})")
            status = 1
        try:
            if self.service is not None and self.service.stop() not in (0, None):
                _say(f"the trusted service exited uncleanly: {self.service.log_tail(300)}")
        except Exception as exc:
            _say(f"stopping the trusted service failed ({exc.__class__.__name__}: {exc})")
            status = 1
        seed, bao = self.seed, self.bao
        if seed and seed.has_database and bao and bao.running and self.cleanup_token:
            try:
                client = hvac.Client(url=bao.address, token=self.cleanup_token, timeout=5)
                revoke_database_leases(client, seed.database_mount or "database")
            except Exception as exc:
                _say(f"revoking leftover leases failed ({exc.__class__.__name__})")
        if seed is not None and seed.role_prefix:
            try:
                dropped = drop_leftover_roles(self.dsn, seed.role_prefix)
            except Exception as exc:
                _say(f"could not check for leftover database roles ({exc.__class__.__name__})")
                status = 1
            else:
                if dropped:
                    _say(f"dropped {len(dropped)} database role(s) Vault had not revoked")
        try:
            if bao is not None:
                bao.stop()
        except Exception as exc:
            _say(f"stopping OpenBao failed ({exc.__class__.__name__}: {exc})")
            status = 1
        self.cleanup_token = ""
        if self.group is not None:
            self.group.kill()  # whatever is left of the demo's children
        if self.layout is not None:
            self.layout.remove_private()
            self._say_what_is_kept(self.layout)
        _say("stopped: no processes, leases or database roles left")
        return status

    def _say_what_is_kept(self, layout: Layout) -> None:
        if not self.args.root_dir and not self.args.keep:
            shutil.rmtree(layout.notebooks, ignore_errors=True)
            _say(f"removed the demo's notebooks folder {layout.notebooks} (--keep keeps it)")
        else:
            _say(f"kept: notebooks in {layout.notebooks}")
        _say(f"kept: logs in {layout.logs}, JupyterLab's audit records in {layout.trail}")
        if self.verify_after:
            _say(f"verify the trail: {self.verify_after}")

    def wait(self) -> int:
        """Until JupyterLab exits by itself (an error: 1); Enter prints the URL again."""
        assert self.lab is not None
        stdin: TextIO | None = sys.stdin
        while self.lab.poll() is None:
            if stdin is None or stdin.closed:
                time.sleep(0.5)
                continue
            try:
                ready, _, _ = select.select([stdin], [], [], 0.5)
                line = stdin.readline() if ready else None
            except (OSError, ValueError):  # no terminal any more: nothing to read
                stdin = None
                continue
            if line == "":  # end of input (/dev/null, a closed pipe): stop watching it
                stdin = None
            elif line is not None:
                self.print_url()
        _say(f"JupyterLab exited with status {self.lab.returncode}")
        return 1


def _make_non_dumpable() -> None:
    """The demo holds the cleanup token (and, briefly, the root token): in same-user mode keep
    other processes of the user (kernels, terminals) out of its memory and environment."""
    import logging

    from ..hardening import make_non_dumpable

    make_non_dumpable(logging.getLogger("prod_discovery.demo"))


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or SIGHUP; the exit status (0 on a clean stop)."""
    dsn: str = args.dsn or os.environ.get("PROD_DISCOVERY_DEMO_DSN") or DEFAULT_DSN
    # Ctrl-C (SIGINT) raises KeyboardInterrupt already; SIGTERM and SIGHUP (the terminal
    # closed) stop the demo the same way.
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    _make_non_dumpable()
    demo = Demo(args, dsn)
    status = 0
    try:
        demo.start()
        status = demo.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:  # DemoError included: the message says what to do
        _say(f"error: {exc}")
        status = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave roles or processes behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            status = demo.stop() or status
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return status
