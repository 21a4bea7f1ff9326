"""Helpers of the attacker suite against the standalone demo (``tests/test_boundary_demo.py``).

The demo started as root is the separated topology a reader of the README meets first: OpenBao
and the trusted service as ``pd-demo-svc``, JupyterLab with its kernels and terminals as
``pd-demo``. The suite of ``boundary_support`` attacks a ``UserServer``; :class:`DemoLab` points
its kernel and terminal methods at the demo's JupyterLab instead, so that the very same probe runs
from pd-demo's notebook kernel and from pd-demo's terminal.

The rest runs as root and sets the needles: what the trusted side holds, read where it holds it.
Two of those secrets are nowhere on disk or in an environment, only in memory:

- the demo's **cleanup token** (``Demo.cleanup_token``, in the root-owned, non-dumpable demo
  process): every token-shaped string in that process's anonymous memory, kept if OpenBao lets it
  do the one thing the cleanup policy allows (a revoke-prefix that matches no lease);
- OpenBao's **root token**, revoked after seeding and redacted from the log: the demo process
  dropped it, but OpenBao's own heap still holds copies. Token-shaped strings there that are
  neither the service's nor the cleanup token, and that OpenBao refuses (a revoked token is
  refused like any unknown one), are taken for it; read before any kernel exists, so that no
  kernel's child token is among them.
"""

from __future__ import annotations

import contextlib
import os
import re
import runpy
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil
import requests
from boundary_support import PROBE, ReachedServer

from jupyter_prod_discovery.demo.process import DemoProcess

#: Mappings where a process keeps what it was handed at run time (heap, stack, anonymous maps).
_ANONYMOUS = ("[heap]", "[stack", "[anon")
_WORD = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class DemoLab(ReachedServer):
    """The demo's JupyterLab as a ``UserServer``: its URL and token from the demo's banner.

    Nothing is started or stopped here (the demo owns JupyterLab); each instance runs its own
    kernel, started on first use, and shuts it down on ``stop`` (the service revokes its
    credentials).
    """

    def __init__(self, demo: DemoProcess, user: str, log_path: Path) -> None:
        super().__init__(user, log_path)
        self.demo = demo
        self.url, self.token = demo.url, demo.token
        self.port = int(demo.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.demo.parts["lab"][1]

    def kernel_pid(self) -> int:
        """The pid of this instance's kernel: the lab's child with its id on the command line."""
        assert self.kernel_id is not None, "no kernel yet"
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any(self.kernel_id in arg for arg in child.cmdline()):
                    return int(child.pid)
        raise AssertionError(f"kernel {self.kernel_id} is not under JupyterLab {self.pid}")


# --------------------------------------------------------------------------------------------
# memory, read as root


def anonymous_memory(pid: int, cap: int = 1 << 30) -> Iterator[bytes]:
    """The heap, stacks and anonymous mappings of ``pid``, one region per chunk (root only)."""
    regions = []
    with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as maps:
        for line in maps:
            fields = line.split()
            name = fields[5] if len(fields) > 5 else ""
            if fields[1][0] == "r" and (not name or name.startswith(_ANONYMOUS)):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                regions.append((start, end))
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        left = cap
        for start, end in regions:
            with contextlib.suppress(OSError):  # unmapped meanwhile, or a guard page
                chunk = os.pread(fd, min(end - start, left), start)
                left -= len(chunk)
                yield chunk
            if left <= 0:
                return
    finally:
        os.close(fd)


def token_shape(example: str) -> re.Pattern[bytes]:
    """Strings shaped like ``example`` (a token of the same server): same prefix, same length."""
    prefix, _, rest = example.partition(".")
    assert rest, f"not a Vault/OpenBao token: {example[:3]}..."
    return re.compile(re.escape(prefix.encode() + b".") + rb"[A-Za-z0-9_-]{%d}" % len(rest))


def tokens_in_memory(pid: int, shape: re.Pattern[bytes]) -> set[str]:
    """Every token-shaped string in ``pid``'s anonymous memory, standing alone (not the middle
    of a longer identifier, which binaries and libraries are full of)."""
    found = set()
    for chunk in anonymous_memory(pid):
        for m in shape.finditer(chunk):
            before = chunk[m.start() - 1 : m.start()]
            after = chunk[m.end() : m.end() + 1]
            alone_before = not before or before not in _WORD + b"._-"
            alone_after = not after or after not in _WORD
            if alone_before and alone_after:
                found.add(m.group().decode())
    return found


def cleanup_token_of(demo: DemoProcess, shape: re.Pattern[bytes]) -> str | None:
    """The demo's cleanup token, read from the demo process's memory as root (see the module
    docstring); None when no token there passes OpenBao's check."""
    assert demo.proc is not None and demo.bao_port is not None
    address = f"http://127.0.0.1:{demo.bao_port}"
    # A prefix no lease has: the check revokes nothing.
    nothing = f"database/creds/analyst/pd-test-none-{secrets.token_hex(8)}"
    for candidate in sorted(tokens_in_memory(demo.proc.pid, shape)):
        answer = requests.post(
            f"{address}/v1/sys/leases/revoke-prefix/{nothing}",
            headers={"X-Vault-Token": candidate},
            timeout=10,
        )
        if answer.status_code == 204:
            return candidate
    return None


def revoked_tokens_in_openbao(
    demo: DemoProcess, shape: re.Pattern[bytes], known: Iterable[str]
) -> list[str]:
    """Token-shaped strings in OpenBao's heap beyond ``known`` that OpenBao refuses: its revoked
    root token (see the module docstring)."""
    assert demo.bao_port is not None
    address = f"http://127.0.0.1:{demo.bao_port}"
    refused = []
    for candidate in sorted(tokens_in_memory(demo.parts["openbao"][1], shape) - set(known)):
        answer = requests.get(
            f"{address}/v1/auth/token/lookup-self",
            headers={"X-Vault-Token": candidate},
            timeout=10,
        )
        if answer.status_code == 403:
            refused.append(candidate)
    return refused


def held_by(pids: Sequence[int], needles: Mapping[str, str]) -> dict[str, list[int]]:
    """Label -> the pids whose environment or memory holds that needle, read as root.

    What a process holds counts whether or not its own user could read it (a non-dumpable
    JupyterLab is closed to its user's other processes, but still holds what it holds). The
    probe's own scanner does the search: the same notion of "found" as the attacker's.
    """
    probe = runpy.run_path(str(PROBE), run_name="pd_probe_as_root")
    scanner = probe["Needles"]([{"label": k, "hex": v.encode().hex()} for k, v in needles.items()])
    found: dict[str, list[str]] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # exited meanwhile
            scanner.scan(Path(f"/proc/{pid}/environ").read_bytes(), str(pid), found)
            scanner.scan_stream(probe["_read_mem"](pid, 1 << 30), str(pid), found)
    return {label: sorted(int(p) for p in where) for label, where in found.items()}


def real_uids(pids: list[int]) -> dict[int, int]:
    """The real uid of each process still alive: one that exited since it was listed holds nothing.

    A short-lived child (a shell's subprocess, a kernel's helper) can end between the listing and
    this look; skipping it is not a gap, since a process that no longer exists holds no secret.
    """
    owners: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            owners[pid] = psutil.Process(pid).uids().real
    return owners


def lab_tree(demo: DemoProcess) -> list[int]:
    """JupyterLab and every process under it (kernels, terminal shells, what they started)."""
    lab = psutil.Process(demo.parts["lab"][1])
    return [lab.pid, *(p.pid for p in lab.children(recursive=True))]
