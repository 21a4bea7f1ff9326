"""The trusted service as a real process for tests: started, probed, stopped, killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac

from jupyter_prod_discovery.credentials.profiles import parse_profiles
from jupyter_prod_discovery.service.client import ServiceClient, ServiceError
from jupyter_prod_discovery.service.vault_policy import service_policy


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
    parsed = parse_profiles(profiles)
    client.sys.create_or_update_policy("prod-discovery-service", service_policy(parsed))
    extra = sorted({p for prof in parsed for p in prof.policies})
    token = client.auth.token.create(
        policies=["prod-discovery-service", *extra], ttl="1h", renewable=True, no_parent=True
    )
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
) -> ServiceProcess:
    """Start the service and wait until it answers on its socket."""
    socket_dir = socket_dir or tmp
    socket_path = str(socket_dir / "service.sock")
    state_dir = str(tmp / "service-state")
    config = tmp / "service_config.json"
    config.write_text(json.dumps({"CredentialBroker": {"profiles": profiles or []}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["PROD_DISCOVERY_SERVICE_DSN"] = dsn
    if vault_addr:
        env["VAULT_ADDR"] = vault_addr
        env["VAULT_TOKEN"] = vault_token
    log_path = tmp / "service.log"
    argv = [
        sys.executable,
        "-m",
        "jupyter_prod_discovery.cli",
        "service",
        f"--ProdDiscoveryService.socket_path={socket_path}",
        f"--ProdDiscoveryService.state_dir={state_dir}",
        f"--config={config}",
        "--CredentialDesk.server_timeout=3",
        *args,
    ]
    user_kwargs: dict[str, Any] = {}
    if preexec_user is not None:
        user_kwargs = {"user": preexec_user[0], "group": preexec_user[1], "extra_groups": []}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0, **user_kwargs
        )
    service = ServiceProcess(proc, socket_path, state_dir, dsn, log_path)
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
