"""The demo's children live no longer than the demo: one process group, tied to the demo's life.

Why: the demo stops OpenBao, the trusted service and JupyterLab in order on Ctrl-C, SIGTERM and
SIGHUP. What it cannot do is run that order after a SIGKILL (or an OOM kill, or a crash of the
interpreter): the children would go on holding the Vault token and the database roles. So:

- every child starts through a tiny exec shim that asks Linux for SIGTERM when the demo dies
  (``PR_SET_PDEATHSIG``; set after the switch to the child's OS user, which would clear it, and
  kept across ``exec``), then becomes the real command: JupyterLab shuts its kernels on SIGTERM,
  the service revokes what it issued, OpenBao exits;
- all of them share one process group of their own (not the terminal's foreground group, so
  Ctrl-C reaches the demo alone, which then stops them in order), which the demo kills as its
  very last step, whatever was left.

Elsewhere than Linux the shim is skipped (the group and the ordered stop remain).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

__all__ = ["ChildGroup"]

# argv: <python> -c SHIM <demo pid> <command> <args>...  The shim imports only the standard
# library: it runs as the child's OS user, with that user's interpreter.
_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the demo died before the request took effect\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class ChildGroup:
    """One process group for the demo's children; each of them dies with the demo."""

    def __init__(self, python: str | None = None) -> None:
        #: The interpreter that runs the shim (one the children's OS users can run).
        self.python = python or sys.executable
        self.pgid = 0  # none yet: the first child leads the group
        self._tie = sys.platform.startswith("linux")

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` behind the shim that ties it to this process's life."""
        if not self._tie:
            return list(argv)
        return [self.python, "-c", _SHIM, str(os.getpid()), *argv]

    def popen_kwargs(self) -> dict[str, Any]:
        """``subprocess.Popen`` arguments that put a child into the group."""
        return {"process_group": self.pgid}

    def joined(self, proc: subprocess.Popen[Any]) -> None:
        """Record a started child: the first one's pid is the group's id."""
        if not self.pgid:
            self.pgid = proc.pid

    def kill(self) -> None:
        """SIGKILL whatever is left in the group (the demo's last step)."""
        if self.pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)

    def alive(self) -> bool:
        """Whether any process of the group is left."""
        if not self.pgid:
            return False
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
