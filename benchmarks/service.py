"""``--service``: the trusted service as a real process beside the extension server.

The extension side then runs as a client of ``jupyter prod-discovery service`` over a unix socket
(``ProdDiscoveryApp.service_url``): kernel credentials are issued by the service, with a
least-privilege Vault token (the policy its profiles need, no root), and audit records are shipped
to it and sealed into its PostgreSQL ledger, a database of its own created for the run and dropped
after it. The work that moved out of the server is measured where it now runs: the service
process (all its threads) and the ledger connection's PostgreSQL backend are *companions* of the
extension server, read around the same measured blocks (``core.Measure``).

Mirrors ``tests/service_support.py`` (``service_token``, ``start_service``) rather than importing
it: the tests directory is not a package and its helpers may change under the tests' needs. The
Vault policies come from the package itself (``install_policies``), so they follow the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from . import core
from .core import Companion, profiled_command

__all__ = ["SERVICE_SECTIONS", "BenchService"]

#: Config sections that belong to the service, not to a server that is its client: the runner
#: moves them from the extension side's config (demo profiles, ``--set``, ``--ext-config``) into
#: the service's ``--config`` file.
SERVICE_SECTIONS = (
    "CredentialBroker",
    "VaultClient",
    "CredentialDesk",
    "AuditLedger",
    "KeyFileSigner",
    "PeerCredentials",
    "ProdDiscoveryService",
)

SERVICE_MODULE = "jupyter_prod_discovery.cli"


class BenchService:
    """One service for the run: its ledger database, Vault token and config; started and
    stopped by the runner once per round or once per run."""

    def __init__(self, workdir: Path, admin_dsn: str) -> None:
        self.dir = workdir / "service"
        self.dir.mkdir(parents=True, exist_ok=True)
        # A unix socket path is limited to 107 bytes: the temp workdir keeps it short.
        self.socket_path = self.dir / "service.sock"
        self.state_dir = self.dir / "state"  # signing key and lease journal: kept for the run
        self.config_file = self.dir / "service_config.json"
        self.log_path = self.dir / "service.log"
        self.admin_dsn = admin_dsn
        self.database = "pd_bench_ledger_" + uuid.uuid4().hex[:8]
        self.dsn = ""
        self.vault_addr = ""
        self.vault_token = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.profile: Path | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"unix:{self.socket_path}"

    # -- set-up once per run ---------------------------------------------------------------------

    def prepare(self, config: dict[str, dict[str, Any]], openbao: Any) -> None:
        """Create the ledger database, the service's Vault token and its config file."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        params = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = self.database
        self.dsn = make_conninfo(**params)  # type: ignore[arg-type]
        profiles = list(config.get("CredentialBroker", {}).get("profiles") or [])
        self.vault_addr = openbao.address
        self.vault_token = service_token(openbao, profiles)
        # Profiles and options only, no secret: the token reaches the service by its environment.
        self.config_file.write_text(json.dumps(config, indent=1))

    def drop_store(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    # -- process ---------------------------------------------------------------------------------

    async def start(self, seed: str, profile: Path | None = None, timeout: float = 60.0) -> None:
        """Start the service and wait until it answers on its socket."""
        if self.proc is not None:
            return
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "JUPYTER"))
        }
        env.update(
            {
                "PROD_DISCOVERY_SERVICE_DSN": self.dsn,
                "VAULT_ADDR": self.vault_addr,
                "VAULT_TOKEN": self.vault_token,
                "PYTHONHASHSEED": seed,
                "PYTHONUNBUFFERED": "1",
            }
        )
        args = [
            "service",
            f"--ProdDiscoveryService.socket_path={self.socket_path}",
            f"--ProdDiscoveryService.state_dir={self.state_dir}",
            f"--config={self.config_file}",
        ]
        command = [sys.executable, "-m", SERVICE_MODULE, *args]
        self.profile = profile
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
            env["BENCH_PROFILE_OUT"] = str(profile)
            command = profiled_command(SERVICE_MODULE, "jupyter-prod-discovery", args)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left by a service that was killed
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,
            )
        self.ps = psutil.Process(self.proc.pid)
        if core.PIN_CPUS is not None:
            # The servers' CPU: the service is server-side work, as the audit writer was.
            self.ps.cpu_affinity([core.PIN_CPUS[1]])
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the service exited ({self.proc.returncode}): {self.log_tail()}"
                )
            if self.socket_path.exists() and await asyncio.to_thread(self._answers):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the service did not answer in {timeout} s: {self.log_tail()}")

    def _answers(self) -> bool:
        from jupyter_prod_discovery.service.client import ServiceClient, ServiceError

        probe = ServiceClient(self.url, "bench-probe")
        try:
            probe.head()
            return True
        except ServiceError:
            return False
        finally:
            probe.close()

    async def stop(self) -> None:
        """SIGTERM (revoke what is left, flush the ledger) and wait; SIGKILL after 30 s."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            for _ in range(300):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.proc = None
        self.ps = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # -- what the measured blocks read -----------------------------------------------------------

    def companions(self) -> list[Companion]:
        """The service process and its ledger connection's PostgreSQL backend(s)."""
        if self.ps is None:
            return []
        found = [Companion("service", self.ps, profiled=self.profile is not None)]
        for pid in self._ledger_backends():
            with contextlib.suppress(psutil.Error):
                found.append(Companion("ledger-db", psutil.Process(pid)))
        return found

    def _ledger_backends(self) -> list[int]:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        return [int(pid) for (pid,) in rows]

    def ledger_kinds(self) -> dict[str, int]:
        """Records sealed in the ledger so far, by kind (a check that the audit went there)."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT kind, count(*) FROM prod_discovery_service_audit GROUP BY kind ORDER BY 2 DESC"
            ).fetchall()
        return {str(kind): int(n) for kind, n in rows}


def service_token(openbao: Any, profiles: list[dict[str, Any]]) -> str:
    """A least-privilege Vault token for the service: the policies ``install_policies`` writes
    for its profiles (its own, the kernel tokens' policy, the token profiles'), no root."""
    from jupyter_prod_discovery.credentials.profiles import parse_profiles
    from jupyter_prod_discovery.service.vault_policy import install_policies

    client = openbao.client()
    policies = install_policies(client, parse_profiles(profiles))
    token = client.auth.token.create(policies=policies, ttl="2h", renewable=True, no_parent=True)
    return str(token["auth"]["client_token"])
