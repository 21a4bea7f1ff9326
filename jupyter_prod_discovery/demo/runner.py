"""``jupyter prod-discovery demo``: OpenBao, a sample production database and JupyterLab.

Order of start: OpenBao dev server, seeding (see ``seed.py``), a throw-away Jupyter config
directory, then JupyterLab as a child process in its own process group. The Vault address and
token reach JupyterLab through its environment only; nothing secret is written to disk.

Order of stop (Ctrl-C or SIGTERM), so that nothing is left behind:

1. JupyterLab gets SIGTERM: its kernels shut down and the extension revokes their leases;
   whatever is left in its process group (kernels, terminals) is then killed.
2. Every lease still under the database mount is revoked (``sys/leases/revoke-prefix``), which
   drops the PostgreSQL roles Vault created; any role of this demo still present afterwards
   (``v-pd<tag>-...``) is dropped directly.
3. OpenBao is stopped.

The sample database ``prod_discovery_demo`` is kept: it holds only synthetic data, it is reused
by the next demo (and may be in use by another demo sharing the PostgreSQL), and no login can
reach it once the demo's roles are gone. Drop it with ``DROP DATABASE prod_discovery_demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from .openbao import DevServer
from .seed import SeedResult, drop_leftover_roles, revoke_database_leases, seed_vault

__all__ = ["DEFAULT_DSN", "run_demo"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_TIMEOUT = 60.0

WELCOME = """\
# Prod Discovery demo

This JupyterLab runs with the Prod Discovery guardrails against a throw-away OpenBao.
Each kernel gets its own short-lived credentials as environment variables, revoked when the
kernel stops. Try:

```python
import os
sorted(k for k in os.environ if k.startswith(("PG", "PROD_", "WAREHOUSE", "VAULT")))
```

and, when the demo found PostgreSQL:

```python
import psycopg
with psycopg.connect(os.environ["PROD_DB_URL"]) as conn:
    print(conn.execute("select * from customers limit 5").fetchall())
```
"""


def _say(msg: str) -> None:
    print(f"[prod-discovery demo] {msg}", flush=True)


def _broker_has_profiles() -> bool:
    """Whether this installation's credential broker takes ``profiles`` (a later capability)."""
    try:
        from ..credentials.broker import CredentialBroker
    except ImportError:
        return False
    return "profiles" in CredentialBroker.class_trait_names()


def demo_config(seed: SeedResult, root_dir: Path) -> dict[str, Any]:
    """The Jupyter config of the demo's JupyterLab (holds no secret: Vault comes from the env)."""
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


def _wait_until_serving(
    url: str, token: str, proc: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {proc.returncode} while starting")
        with contextlib.suppress(requests.RequestException):
            r = requests.get(
                f"{url}/api/status", headers={"Authorization": f"token {token}"}, timeout=1
            )
            if r.status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"JupyterLab did not serve within {timeout:.0f}s")


def _stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the leader (JupyterLab shuts its kernels and revokes), then kill the group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _say("JupyterLab did not stop in time: killing it")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def lab_command(port: int) -> list[str]:
    """The JupyterLab command of the demo (and of the UI tests): loopback only, fixed port."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers run as root; the server is loopback-only
    return cmd


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or SIGTERM; returns the exit status (0 on a clean stop)."""
    port: int = args.port
    dsn: str = args.dsn or os.environ.get("PROD_DISCOVERY_DEMO_DSN") or DEFAULT_DSN
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="prod-discovery-demo-"))
    bao = DevServer(log_path=str(workdir / "openbao.log"))
    lab: subprocess.Popen[bytes] | None = None
    seed: SeedResult | None = None
    status = 0
    started = time.monotonic()
    try:
        bao.start()
        _say(f"OpenBao dev server at {bao.address} (in memory, stopped with the demo)")
        seed = seed_vault(bao.client(), dsn=dsn)
        for note in seed.notes:
            _say(note)
        if seed.has_database:
            _say(
                f"sample database {seed.database!r}: {seed.customers} customers with synthetic "
                f"PII; database credentials from {seed.database_mount}/creds/"
                f"{seed.database_role} (role prefix {seed.role_prefix})"
            )
        root_dir = Path(args.root_dir) if args.root_dir else workdir / "notebooks"
        root_dir.mkdir(parents=True, exist_ok=True)
        if not args.root_dir:  # never write into a directory the user chose
            (root_dir / "WELCOME.md").write_text(WELCOME)
        config_dir = workdir / "config"
        config_dir.mkdir()
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps(demo_config(seed, root_dir), indent=1)
        )
        token = secrets.token_hex(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env.update(
            {
                "VAULT_ADDR": bao.address,
                "VAULT_TOKEN": bao.root_token,  # the child's environment only, never a file
                "JUPYTER_CONFIG_DIR": str(config_dir),
                "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
                "JUPYTER_TOKEN": token,  # not on the command line, where `ps` would show it
            }
        )
        cmd = lab_command(port)
        lab = subprocess.Popen(
            cmd,
            env=env,
            cwd=root_dir,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
        )
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url, token, lab, STARTUP_TIMEOUT)
        _say(f"JupyterLab is serving after {time.monotonic() - started:.1f}s")
        print(f"\n    {url}/lab?token={token}\n", flush=True)
        _say("press Ctrl-C to stop everything")
        while lab.poll() is None:
            time.sleep(0.5)
        _say(f"JupyterLab exited with status {lab.returncode}")
        status = 1
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        _say(f"error: {exc}")
        status = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave roles or processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _say("stopping")
            if lab is not None:
                _stop_process_group(lab)
            if seed is not None and seed.has_database and bao.running:
                try:
                    revoke_database_leases(bao.client(), seed.database_mount or "database")
                except Exception as exc:
                    _say(f"revoking leftover leases failed ({exc.__class__.__name__})")
            if seed is not None and seed.role_prefix:
                try:
                    dropped = drop_leftover_roles(dsn, seed.role_prefix)
                except Exception as exc:
                    _say(f"could not check for leftover database roles ({exc.__class__.__name__})")
                    status = status or 1
                else:
                    if dropped:
                        _say(f"dropped {len(dropped)} database role(s) Vault had not revoked")
            bao.stop()
            for sub in ("config", "runtime"):
                shutil.rmtree(workdir / sub, ignore_errors=True)
            _say("stopped: no processes, leases or database roles left")
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous_term)
    return status
