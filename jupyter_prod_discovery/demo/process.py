"""The demo as a child process, the way a user runs it: for tests and scripts.

``DemoProcess`` runs ``jupyter prod-discovery demo`` in a process group of its own, reads what it
prints (URL with token, OpenBao address, database role prefix) and stops it with the signal a
user would send (SIGINT = Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

__all__ = ["DemoProcess"]

_URL = re.compile(r"(http://127\.0\.0\.1:(\d+))/lab\?token=([0-9a-f]+)")
_BAO = re.compile(r"OpenBao dev server at http://127\.0\.0\.1:(\d+)")
_PREFIX = re.compile(r"role prefix (v-pd[0-9a-f]+-)")


class DemoProcess:
    """``jupyter prod-discovery demo --port PORT --no-browser`` as a subprocess."""

    def __init__(self, port: int, extra_args: list[str] | None = None) -> None:
        self.port = port
        self.args = [
            sys.executable,
            "-m",
            "jupyter_prod_discovery.cli",
            "demo",
            "--port",
            str(port),
            "--no-browser",
            *(extra_args or []),
        ]
        self._out = tempfile.NamedTemporaryFile(prefix="demo-", suffix=".out", delete=False)  # noqa: SIM115
        self._out.close()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.bao_port: int | None = None
        self.role_prefix: str | None = None
        self.returncode: int | None = None

    @property
    def output(self) -> str:
        return Path(self._out.name).read_text(errors="replace")

    def start(self, timeout: float = 30.0) -> DemoProcess:
        """Start the demo; return once it printed its URL (JupyterLab serves), or raise."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self._out.name, "wb") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output
            m = _URL.search(text)
            if m:
                self.url, self.token = m.group(1), m.group(3)
                b = _BAO.search(text)
                self.bao_port = int(b.group(1)) if b else None
                p = _PREFIX.search(text)
                self.role_prefix = p.group(1) if p else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"the demo did not serve within {timeout}s:\n{self.output[-3000:]}")

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the demo to exit by itself; its exit status."""
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int | None:
        """Send ``sig`` to the demo (not its group: it stops its children itself) and wait."""
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.returncode = proc.returncode
        self.proc = None
        return self.returncode

    def leftover_processes(self) -> list[psutil.Process]:
        """Processes of this demo still alive: its OpenBao and its JupyterLab (and kernels)."""
        marks = [f"--ServerApp.port={self.port}"]
        if self.bao_port is not None:
            marks.append(f"127.0.0.1:{self.bao_port}")
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if any(m in cmd for m in marks) and "pytest" not in cmd:
                found.append(p)
        return found

    def cleanup(self) -> None:
        """Kill anything left (after a failed test) and remove the output file."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop(signal.SIGKILL, 10)
        for p in self.leftover_processes():
            with contextlib.suppress(psutil.Error):
                p.kill()
        Path(self._out.name).unlink(missing_ok=True)
