"""The trusted service as a real process for tests: started, probed, stopped, killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac

from jupyter_prod_discovery.credentials.profiles import parse_profiles
from jupyter_prod_discovery.service.client import ServiceClient, ServiceError
from jupyter_prod_discovery.service.vault_policy import install_policies


@dataclass
class ServiceProcess:
    """One ``jupyter prod-discovery service`` listening on a unix socket."""

    proc: subprocess.Popen[bytes]
    socket_path: str
    state_dir: str
    dsn: str
    log_path: Path
    clients: list[ServiceClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"unix:{self.socket_path}"

    def client(self, server_id: str = "test-server") -> ServiceClient:
        client = ServiceClient(self.url, server_id)
        self.clients.append(client)
        return client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM (revoke, flush) and wait; returns the exit status."""
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def service_token(openbao: Any, profiles: list[dict[str, Any]]) -> str:
    """A least-privilege Vault token for the service: the policy its profiles need, no root."""
    client: hvac.Client = openbao.client()
    policies = install_policies(client, parse_profiles(profiles))
    token = client.auth.token.create(policies=policies, ttl="1h", renewable=True, no_parent=True)
    return str(token["auth"]["client_token"])


def start_service(
    tmp: Path,
    dsn: str,
    *,
    vault_addr: str = "",
    vault_token: str = "",
    profiles: list[dict[str, Any]] | None = None,
    args: tuple[str, ...] = (),
    preexec_user: tuple[int, int] | None = None,
    socket_dir: Path | None = None,
    timeout: float = 30.0,
    python: str | None = None,
    base_env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    log_path: Path | None = None,
    server_timeout: float = 3.0,
    extra_config: dict[str, Any] | None = None,
) -> ServiceProcess:
    """Start the service and wait until it answers on its socket.

    ``tmp`` holds the config file (and, unless given elsewhere, the socket, the state dir and the
    log). A service under another OS user (``preexec_user``) needs ``python`` runnable by that
    user, ``tmp`` readable by it, and ``base_env`` instead of the test runner's environment (which
    would hand it root's variables); its ``log_path`` belongs where only root reads. A server
    silent for ``server_timeout`` seconds is presumed dead and its kernels are revoked.
    """
    socket_dir = socket_dir or tmp
    socket_path = str(socket_dir / "service.sock")
    state = str(state_dir or tmp / "service-state")
    config = tmp / "service_config.json"
    config.write_text(
        json.dumps({"CredentialBroker": {"profiles": profiles or []}, **(extra_config or {})})
    )
    # Profiles (and, in the export tests, a signing key the service's user must read): the
    # test runner writes it, the service reads it; no notebook user ever gets this path.
    config.chmod(0o644)
    source = os.environ if base_env is None else base_env
    env = {k: v for k, v in source.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["PROD_DISCOVERY_SERVICE_DSN"] = dsn
    if vault_addr:
        env["VAULT_ADDR"] = vault_addr
        env["VAULT_TOKEN"] = vault_token
    log_path = log_path or tmp / "service.log"
    argv = [
        python or sys.executable,
        "-m",
        "jupyter_prod_discovery.cli",
        "service",
        f"--ProdDiscoveryService.socket_path={socket_path}",
        f"--ProdDiscoveryService.state_dir={state}",
        f"--config={config}",
        f"--CredentialDesk.server_timeout={server_timeout:g}",
        *args,
    ]
    user_kwargs: dict[str, Any] = {}
    if preexec_user is not None:
        # The runner's cwd may be a directory the service's user cannot enter.
        user_kwargs = {
            "user": preexec_user[0],
            "group": preexec_user[1],
            "extra_groups": [],
            "cwd": str(tmp),
        }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0, **user_kwargs
        )
    service = ServiceProcess(proc, socket_path, state, dsn, log_path)
    deadline = time.monotonic() + timeout
    probe = ServiceClient(service.url, "probe")
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited ({proc.returncode}):\n{service.log()}")
            if Path(socket_path).exists():
                try:
                    probe.head()
                    return service
                except ServiceError:
                    pass
            if time.monotonic() > deadline:
                service.kill()
                raise RuntimeError(f"the service did not answer in {timeout} s:\n{service.log()}")
            time.sleep(0.05)
    finally:
        probe.close()
