"""The demo as a child process, the way a user runs it: for tests and scripts.

``DemoProcess`` runs ``jupyter prod-discovery demo`` in a process group of its own, reads what it
prints (URL with token, OpenBao address, database role prefix, the topology with each part's OS
user and pid, the ledger and the command that verifies it) and stops it with the signal a user
would send (SIGINT = Ctrl-C). ``user`` runs it as another OS user (from the users venv, which that
user can run): started as a normal user, the demo runs in same-user mode. ``piped`` runs it the
way the README's ``bash scripts/demo.sh | tee demo.log`` does: its output goes through ``tee``
in the same process group, so that the signal a terminal sends (Ctrl-C, SIGHUP on close) ends
``tee`` too and the demo's stop has no stdout left to write to.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

__all__ = ["DemoProcess"]

_URL = re.compile(r"(http://127\.0\.0\.1:(\d+))/lab\?token=([0-9a-f]+)")
_BAO = re.compile(r"OpenBao dev server at http://127\.0\.0\.1:(\d+)")
_PREFIX = re.compile(r"role prefix (v-pd[0-9a-f]+-)")
_PART = re.compile(
    r"^\[prod-discovery demo\]\s+(OpenBao dev server|trusted service|JupyterLab)\b"
    r"[^:]*: user (\S+), pid (\d+)",
    re.M,
)
_SOCKET = re.compile(r"trusted service: .* unix:(\S+)")
_WORKDIR = re.compile(r"^\[prod-discovery demo\] work dir: (\S+)", re.M)
_NOTEBOOKS = re.compile(r"^\[prod-discovery demo\] notebooks: (\S+)", re.M)
_VERIFY = re.compile(r"verify the trail: (jupyter prod-discovery audit verify .*)$", re.M)
_VERIFY_AFTER = re.compile(r"after the demo: (jupyter prod-discovery audit verify .*)$", re.M)
_PARTS = {"OpenBao dev server": "openbao", "trusted service": "service", "JupyterLab": "lab"}


class DemoProcess:
    """``jupyter prod-discovery demo --port PORT --no-browser`` as a subprocess."""

    def __init__(
        self,
        port: int,
        extra_args: list[str] | None = None,
        *,
        user: str | None = None,
        piped: bool = False,
        command: list[str] | None = None,
    ) -> None:
        """``command``: run this instead (e.g. ``bash scripts/demo.sh`` as the README says); the
        port is then read from the URL it prints (``port`` 0)."""
        self.port = port
        self.piped = piped
        self.tee: subprocess.Popen[bytes] | None = None
        self.user = pwd.getpwnam(user) if user else None
        python = sys.executable
        if self.user is not None:
            from .topology import users_venv

            python = str(users_venv() / "bin" / "python")
        self.args = [
            python,
            "-m",
            "jupyter_prod_discovery.cli",
            "demo",
            "--port",
            str(port),
            "--no-browser",
            *(extra_args or []),
        ]
        if command is not None:
            self.args = [*command, *(extra_args or [])]
        self._out = tempfile.NamedTemporaryFile(prefix="demo-", suffix=".out", delete=False)  # noqa: SIM115
        self._out.close()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.bao_port: int | None = None
        self.role_prefix: str | None = None
        self.returncode: int | None = None
        #: "openbao", "service", "lab" -> (OS user, pid), from the banner
        self.parts: dict[str, tuple[str, int]] = {}
        self.socket_path = ""
        self.workdir = ""
        self.notebooks = ""
        self.verify_command: list[str] = []  # while it runs: with the service's signed head
        self.verify_after_command: list[str] = []  # afterwards: with the saved public key

    @property
    def output(self) -> str:
        return Path(self._out.name).read_text(errors="replace")

    def _environment(self) -> dict[str, str]:
        if self.user is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        else:  # what a login gives that user, nothing of ours
            env = {
                "HOME": self.user.pw_dir,
                "USER": self.user.pw_name,
                "LOGNAME": self.user.pw_name,
                "PATH": f"{Path(self.args[0]).parent}:/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8",
            }
            if "PROD_DISCOVERY_DEMO_DSN" in os.environ:
                env["PROD_DISCOVERY_DEMO_DSN"] = os.environ["PROD_DISCOVERY_DEMO_DSN"]
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _parse(self, text: str, match: re.Match[str]) -> None:
        self.url, self.token = match.group(1), match.group(3)
        self.port = int(match.group(2))
        b = _BAO.search(text)
        self.bao_port = int(b.group(1)) if b else None
        p = _PREFIX.search(text)
        self.role_prefix = p.group(1) if p else None
        self.parts = {
            _PARTS[m.group(1)]: (m.group(2), int(m.group(3))) for m in _PART.finditer(text)
        }
        for pattern, attr in ((_SOCKET, "socket_path"), (_WORKDIR, "workdir")):
            found = pattern.search(text)
            setattr(self, attr, found.group(1) if found else "")
        n = _NOTEBOOKS.search(text)
        self.notebooks = n.group(1) if n else ""
        v = _VERIFY.search(text)
        self.verify_command = shlex.split(v.group(1)) if v else []
        a = _VERIFY_AFTER.search(text)
        self.verify_after_command = shlex.split(a.group(1)) if a else []

    def _parse_partial(self) -> None:
        """What a demo that failed before serving printed: its work dir and OpenBao port."""
        if self.url or not Path(self._out.name).exists():
            return
        text = self.output
        found = _WORKDIR.search(text)
        self.workdir = self.workdir or (found.group(1) if found else "")
        b = _BAO.search(text)
        self.bao_port = self.bao_port or (int(b.group(1)) if b else None)

    def start(self, timeout: float = 30.0) -> DemoProcess:
        """Start the demo; return once it printed its URL (JupyterLab serves), or raise."""
        user: dict[str, Any] = {}
        if self.user is not None:
            user = {
                "user": self.user.pw_uid,
                "group": self.user.pw_gid,
                "extra_groups": [],
                "cwd": self.user.pw_dir,
            }
        if self.piped:
            self.proc = subprocess.Popen(
                self.args,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                process_group=0,  # a group of its own in this session, which tee can join
                **user,
            )
            assert self.proc.stdout is not None
            # tee joins the demo's process group: a signal to the group reaches both, as a
            # terminal's Ctrl-C reaches every process of its foreground pipeline.
            self.tee = subprocess.Popen(
                ["tee", self._out.name],
                stdin=self.proc.stdout,
                stdout=subprocess.DEVNULL,
                process_group=self.proc.pid,
            )
            self.proc.stdout.close()  # tee is the pipe's only reader
        else:
            with open(self._out.name, "wb") as out:
                self.proc = subprocess.Popen(
                    self.args,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self._environment(),
                    start_new_session=True,
                    **user,
                )
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output
            m = _URL.search(text)
            if m:
                self._parse(text, m)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"the demo did not serve within {timeout}s:\n{self.output[-3000:]}")

    def tree(self) -> list[psutil.Process]:
        """The demo's descendants now: OpenBao, the service, JupyterLab, kernels, terminals."""
        if self.proc is None:
            return []
        try:
            return list(psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            return []

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the demo to exit by itself; its exit status."""
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def stop(
        self, sig: int = signal.SIGINT, timeout: float = 60.0, *, group: bool = False
    ) -> int | None:
        """Send ``sig`` to the demo and wait. ``group``: to its process group (the demo and, when
        piped, tee), as a terminal does; the demo's own children are in another group, which
        the demo stops itself."""
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.returncode = proc.returncode
        self.proc = None
        if self.tee is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.tee.wait(10)
        return self.returncode

    def demo_log(self) -> str:
        """What the demo said after its stdout was gone too (``<work dir>/logs/demo.log``)."""
        self._parse_partial()
        try:
            return (Path(self.workdir) / "logs" / "demo.log").read_text(errors="replace")
        except OSError:
            return ""

    def leftover_processes(self) -> list[psutil.Process]:
        """Processes of this demo still alive: OpenBao, the service, JupyterLab and kernels."""
        self._parse_partial()
        marks = [f"--ServerApp.port={self.port}"] if self.port else []
        if self.bao_port is not None:
            marks.append(f"127.0.0.1:{self.bao_port}")
        if self.workdir:  # the service's socket and state, the kernels' connection files
            marks.append(self.workdir)
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if any(m in cmd for m in marks) and "pytest" not in cmd:
                found.append(p)
        return found

    def cleanup(self, remove_workdir: bool = True) -> None:
        """Kill anything left (after a failed test), remove the output file and, unless asked
        to keep it, the demo's work dir (its logs and notebooks)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop(signal.SIGKILL, 10)
        if self.tee is not None and self.tee.poll() is None:
            self.tee.kill()
            self.tee.wait(10)
        for p in self.leftover_processes():
            with contextlib.suppress(psutil.Error):
                p.kill()
        self._parse_partial()
        Path(self._out.name).unlink(missing_ok=True)
        # Only a directory the demo made (never a --root-dir of the caller's: it is elsewhere).
        if remove_workdir and Path(self.workdir).name.startswith("prod-discovery-demo-"):
            shutil.rmtree(self.workdir, ignore_errors=True)
