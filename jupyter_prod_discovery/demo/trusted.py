"""The demo's trusted side: Vault handed over without the root token, and the service process.

Why the root token ends here: after seeding, nothing in the demo needs more than two narrow
tokens, both orphans (so that revoking the root token does not take them along):

- the **service token**: the policy :func:`~..service.vault_policy.service_policy` derives from
  the credential profiles (their read paths, lease and token bookkeeping) plus the policies the
  service gives kernels' child tokens (a child token can only carry policies its parent holds):
  :func:`~..service.vault_policy.install_policies` writes and lists them.
  It goes into the service's environment and nowhere else; the demo drops its copy.
- the **cleanup token**: ``sys/leases/revoke-prefix`` on the database mount's ``creds/`` only,
  kept in the demo's memory for the last step of a stop (leases the service could not revoke).

The root token is then revoked in OpenBao, so whatever copy of it might survive in memory opens
nothing; the demo process forgets it (CPython cannot wipe a string, but a revoked token is inert).

The service keeps its signed ledger in a PostgreSQL database of its own
(``prod_discovery_demo_audit``, created when missing), one chain per demo run: every run has its
own signing key, and a chain signed by two keys would not verify with either.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac

from ..credentials.profiles import parse_profiles
from ..service.client import ServiceClient, ServiceError
from ..service.vault_policy import install_policies
from .lifetime import ChildGroup
from .seed import _host_port, _with_dbname, export_signing_policy

__all__ = [
    "AUDIT_DATABASE",
    "CLEANUP_POLICY",
    "EXPORT_SIGNING_POLICY",
    "SERVICE_POLICY",
    "DemoService",
    "VaultHandover",
    "dsn_password",
    "ensure_audit_database",
    "hand_over_vault",
    "public_dsn",
]

AUDIT_DATABASE = "prod_discovery_demo_audit"
SERVICE_POLICY = "prod-discovery-demo-service"
EXPORT_SIGNING_POLICY = "prod-discovery-demo-export-signing"
CLEANUP_POLICY = "prod-discovery-demo-cleanup"
LEDGER_TABLE = "prod_discovery_service_audit"


@dataclass
class VaultHandover:
    """The tokens that replace the root token (never printed: kept out of repr)."""

    service_token: str = field(repr=False)
    cleanup_token: str = field(repr=False)
    service_policies: list[str] = field(default_factory=list)


def _cleanup_policy(database_mount: str) -> str:
    return f"""
# The demo's last step at stop: revoke what the service could not, on the database mount only.
# (The request path loses its trailing slash: "creds" itself must be granted.)
path "sys/leases/revoke-prefix/{database_mount}/creds" {{
  capabilities = ["update", "sudo"]
}}
path "sys/leases/revoke-prefix/{database_mount}/creds/*" {{
  capabilities = ["update", "sudo"]
}}
"""


def hand_over_vault(
    root: hvac.Client,
    profiles: list[dict[str, Any]],
    database_mount: str = "database",
    export_key: tuple[str, str] | None = None,
) -> VaultHandover:
    """Create the service and cleanup tokens with ``root``, then revoke ``root``'s token.

    Raises whatever hvac raises; the root token is revoked only once both tokens exist.
    """
    # The service's policy, the kernels' self-management policy and the token profiles' own
    # policies: all of them, since a child token's policies must be its parent's.
    policies = install_policies(root, parse_profiles(profiles), SERVICE_POLICY)
    if export_key is not None:  # the service signs promoted bundles with the transit key
        root.sys.create_or_update_policy(
            name=EXPORT_SIGNING_POLICY, policy=export_signing_policy(*export_key)
        )
        policies.append(EXPORT_SIGNING_POLICY)
    root.sys.create_or_update_policy(name=CLEANUP_POLICY, policy=_cleanup_policy(database_mount))
    # Orphans: they must outlive the root token. The service renews its own; its TTL bounds how
    # long a killed demo's token stays usable (OpenBao dies with the demo anyway).
    service = root.auth.token.create(
        policies=policies, ttl="1h", renewable=True, no_parent=True, display_name="pd-demo-svc"
    )
    cleanup = root.auth.token.create(
        policies=[CLEANUP_POLICY],
        ttl="24h",
        renewable=True,
        no_parent=True,
        no_default_policy=True,
        display_name="pd-demo-cleanup",
    )
    handover = VaultHandover(
        service_token=str(service["auth"]["client_token"]),
        cleanup_token=str(cleanup["auth"]["client_token"]),
        service_policies=policies,
    )
    root.auth.token.revoke_self()
    root.token = ""
    return handover


def ensure_audit_database(dsn: str, database: str = AUDIT_DATABASE) -> str:
    """Create the ledger's database unless present; the service's DSN for it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent demo
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return _with_dbname(dsn, database)


def dsn_password(dsn: str) -> str:
    """The password in ``dsn`` ('' when none, e.g. trust or peer authentication)."""
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(dsn).get("password") or "")


def public_dsn(dsn: str) -> str:
    """``dsn`` as a URL without its password: what the banner may print."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    user = params.get("user") or "postgres"
    return f"postgresql://{user}@{_host_port(dsn)}/{params.get('dbname') or user}"


class DemoService:
    """``jupyter prod-discovery service`` as the demo's child, on a unix socket."""

    def __init__(
        self,
        *,
        python: str,
        socket_path: Path,
        state_dir: Path,
        config_path: Path,
        log_path: Path,
        chain: str,
    ) -> None:
        self.python = python
        self.socket_path = socket_path
        self.state_dir = state_dir
        self.config_path = config_path
        self.log_path = log_path
        self.chain = chain
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix:{self.socket_path}"

    def write_config(
        self, profiles: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> None:
        """The profiles and the export settings (no secret): readable by the service's user."""
        config = {
            "CredentialBroker": {"profiles": profiles, "deny_without_profile": False},
            **(extra or {}),
        }
        self.config_path.write_text(json.dumps(config, indent=1) + "\n")
        self.config_path.chmod(0o644)

    def argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "jupyter_prod_discovery.cli",
            "service",
            f"--ProdDiscoveryService.socket_path={self.socket_path}",
            f"--ProdDiscoveryService.state_dir={self.state_dir}",
            f"--AuditLedger.chain={self.chain}",
            "--ProdDiscoveryService.log_level=INFO",
            f"--config={self.config_path}",
        ]

    def start(
        self,
        env: dict[str, str],
        secrets: dict[str, str],
        popen_user: dict[str, Any],
        timeout: float = 60.0,
        group: ChildGroup | None = None,
        launcher: list[str] | None = None,
    ) -> DemoService:
        """Start it with ``env`` plus ``secrets`` (its environment only) and wait for its socket.

        ``group``: the demo's group of children (Ctrl-C reaches the demo only, which stops this
        in order; it dies with the demo); default a session of its own. ``launcher`` prefixes
        the command (``setpriv`` switching to the service's user with the capabilities it needs
        to start clean runs as the sandbox user) instead of ``popen_user``.
        """
        argv = self.argv()
        detach: dict[str, Any] = {"start_new_session": True}
        if group is not None:
            argv, detach = group.argv(argv), group.popen_kwargs()
        # The launcher goes first: a uid change clears the parent-death signal the group's shim
        # sets, so the shim must run after setpriv switched users.
        argv = [*(launcher or []), *argv]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                env={**env, **secrets, "PYTHONUNBUFFERED": "1"},
                cwd=str(self.state_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **detach,
                **popen_user,
            )
        if group is not None:
            group.joined(self.process)
        probe = ServiceClient(self.url, "prod-discovery-demo")
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the trusted service exited with status {self.process.returncode}: "
                        f"{self.log_tail()}"
                    )
                if self.socket_path.exists():
                    with contextlib.suppress(ServiceError):
                        probe.head()
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the trusted service did not answer within {timeout:.0f}s")
                time.sleep(0.1)
        finally:
            probe.close()

    def public_key(self) -> str:
        """The ledger's public key (PEM), for verifying the trail after the demo."""
        client = ServiceClient(self.url, "prod-discovery-demo")
        try:
            return str(client.public_key()["public_key_pem"])
        finally:
            client.close()

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (it revokes what is left and flushes the ledger), SIGKILL after ``timeout``."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    proc.kill()  # itself: the group it may share is the demo's to end
                proc.wait(10)
        self.process = None
        return proc.returncode
