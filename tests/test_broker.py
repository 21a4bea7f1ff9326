"""A real ``jupyter server`` process: SIGTERM revokes, SIGKILL leaves orphans that the next
start revokes. Real OpenBao and PostgreSQL; the kernels exit on their own when the server dies
(ipykernel polls its parent)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from credentials_support import Warehouse

from jupyter_prod_discovery.demo.openbao import free_even_port


class Server:
    """One ``python -m jupyter_server`` with the extension, configured through a config dir."""

    def __init__(self, tmp: Path, openbao: Any, warehouse: Warehouse) -> None:
        self.tmp = tmp
        self.token = "t-" + os.urandom(8).hex()
        self.profiles = warehouse.profiles()
        (tmp / "root").mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "VAULT_ADDR": openbao.address,
            "VAULT_TOKEN": openbao.root_token,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._choose_port()

    def _choose_port(self) -> None:
        """A free port, written into the server's config (the only place it reads it from)."""
        self.port = free_even_port(30000, 40000)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.tmp / f"server-{self.port}.log"
        config = {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_prod_discovery": True},
                "port": self.port,
                "port_retries": 0,
                "allow_root": True,
                "open_browser": False,
                "root_dir": str(self.tmp / "root"),
            },
            "IdentityProvider": {"token": self.token},
            "CredentialBroker": {"profiles": self.profiles},
        }
        config_dir = self.tmp / "config"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))

    def start(self) -> Server:
        """Start the server; on another port when its port was taken before it could listen.

        Why: the port is free when chosen, but it lies in the ephemeral range, where an outgoing
        connection (the server's own to OpenBao, made before it listens) may take it first; the
        server then exits with "port ... is not available" (seen once in CI, 6 December 2026).
        """
        for _ in range(3):
            if self._launch():
                return self
            self._choose_port()
        raise AssertionError("no free port for jupyter server: " + self.log.read_text()[-3000:])

    def _launch(self) -> bool:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log.read_text()
                assert f"port {self.port} is not available" in text, text[-3000:]
                return False
            try:
                if self.get("/api/status").status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("jupyter server did not start: " + self.log.read_text()[-3000:])

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=10)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def start_kernel(self) -> str:
        r = requests.post(
            self.base + "/api/kernels", headers=self.headers, json={"name": "python3"}, timeout=60
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(60)

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_server_sigterm_revokes_and_sigkill_orphans_are_revoked_at_next_start(
    tmp_path: Path, openbao: Any, warehouse: Warehouse
) -> None:
    servers: list[Server] = []
    try:
        # A clean stop (SIGTERM) revokes everything before the process exits.
        first = Server(tmp_path, openbao, warehouse).start()
        servers.append(first)
        first.start_kernel()
        assert len(warehouse.roles()) == 1
        first.stop(signal.SIGTERM)
        assert warehouse.roles() == set()
        assert warehouse.leases() == []

        # SIGKILL runs nothing: the leases stay, listed in the state file (ids only).
        second = Server(tmp_path, openbao, warehouse).start()
        servers.append(second)
        listing = second.get("/prod-discovery/api/credentials").json()
        assert listing["active"] is True
        second.start_kernel()
        second.start_kernel()
        assert len(warehouse.roles()) == 2
        state_files = list((tmp_path / "runtime").glob("prod-discovery-credentials-*.jsonl"))
        assert len(state_files) == 1
        state = state_files[0].read_text()
        assert openbao.root_token not in state
        for lease in warehouse.leases():
            assert lease in state
        second.stop(signal.SIGKILL)
        assert len(warehouse.roles()) == 2
        assert len(warehouse.leases()) == 2

        # The next start revokes the orphans and removes the dead server's state file.
        third = Server(tmp_path, openbao, warehouse).start()
        servers.append(third)
        wait_until(lambda: not warehouse.roles(), "orphaned roles dropped")
        assert warehouse.leases() == []
        assert not state_files[0].exists()
        for server in servers:
            assert openbao.root_token not in server.log.read_text()
        third.stop(signal.SIGTERM)
    finally:
        for server in servers:
            server.kill_if_running()


def test_server_helper_moves_to_another_port_when_its_port_is_taken(
    tmp_path: Path, openbao: Any, warehouse: Warehouse
) -> None:
    server = Server(tmp_path, openbao, warehouse)
    taken = server.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", taken))
        s.listen()
        try:
            server.start()
            assert server.port != taken
            assert server.get("/api/status").status_code == 200
            assert (
                f"port {taken} is not available" in (tmp_path / f"server-{taken}.log").read_text()
            )
        finally:
            server.kill_if_running()
