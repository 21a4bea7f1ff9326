"""The attacker probe: run as the data scientist, try every way to a secret of the trusted side.

The boundary tests run this file as a real, unprivileged OS user (alice) from wherever she can run
code: inside her notebook kernel (``runpy.run_path(...)["main"]([...])``) and from her terminal
(``python probe.py --config FILE --out FILE``). It uses the standard library only, because it must
run in any interpreter alice has, and it never needs the secrets themselves: the config names
*needles*, short distinctive substrings of each secret under a label, and the report says which
labels each probe found, never the bytes. A probe that reads nothing would look exactly like a
boundary that holds, so every probe also reports what it could open (``access``): the tests put a
decoy that alice owns into the same run and require each probe to find the decoy's needles.

Probes (each reports ``{"name", "obtained", "found", "access", "refused", "detail"}``):

``own_environ``
    the probe's own environment (what the kernel or terminal was handed).
``proc_cmdline``, ``proc_environ``, ``proc_mem``, ``proc_fd``, ``ptrace_attach``
    every process not owned by the probe's uid, plus the config's extra ``pids``: argv,
    ``/proc/<pid>/environ``, its anonymous/heap/stack/writable memory through ``/proc/<pid>/mem``,
    every regular file its descriptors point at, and ``PTRACE_SEIZE``.
``own_server_environ``, ``own_server_memory``, ``own_server_fd``
    the same for the probe's own ancestors of the same uid (the Jupyter server, the terminal's
    shell): readable, unless the process made itself non-dumpable (the tests expect per topology).
``files``
    every file under the config's ``paths`` (runtime and config dirs, the trusted state dir).
``unix_socket``, ``tcp``
    connect to each configured endpoint, send its request, search the answer.

Config (JSON)::

    {"needles": [{"label": "trusted:env", "hex": "..."}],
     "pids": [1234], "paths": ["/run/..."],
     "unix": [{"path": "/run/.../sock", "request_hex": "..."}],
     "tcp": [{"host": "127.0.0.1", "port": 8200, "request_hex": "..."}],
     "mem_cap": 67108864}

The report also names the probe's ``uid``, its ``ancestors``, the ``foreign`` pids it found (other
users' processes) and all the ``targets`` it attacked. Refuses to run as root: as root every probe succeeds trivially and ``ptrace`` would reach every
process on the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import json
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

PTRACE_SEIZE = 0x4206
CHUNK = 1 << 20
MEM_CAP = 64 << 20  # per process: enough for any real heap holding a token, keeps a run < 20 s
FILE_CAP = 4 << 20  # per file
FILES_MAX = 5000  # per configured path
SOCKET_READ_CAP = 1 << 20
SOCKET_TIMEOUT = 3.0
LIST_MAX = 50  # entries of access/refused lists kept in the report

_MAPS = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")
_SKIP_MAPPINGS = (b"[vvar]", b"[vvar_vclock]", b"[vdso]", b"[vsyscall]")


class Needles:
    """The substrings to look for, by label; scans buffers and streams of chunks."""

    def __init__(self, spec: Iterable[dict[str, str]]) -> None:
        self.items = [(d["label"], bytes.fromhex(d["hex"])) for d in spec]
        self.items = [(label, needle) for label, needle in self.items if needle]
        self.overlap = max((len(n) for _, n in self.items), default=1) - 1

    def scan(self, data: bytes, where: str, found: dict[str, list[str]]) -> None:
        for label, needle in self.items:
            if needle in data:
                places = found.setdefault(label, [])
                if where not in places and len(places) < LIST_MAX:
                    places.append(where)

    def scan_stream(self, chunks: Iterable[bytes], where: str, found: dict[str, list[str]]) -> int:
        """Scan chunks as one stream (a needle may straddle two); returns the bytes seen."""
        tail = b""
        total = 0
        for chunk in chunks:
            if not chunk:  # a gap in the stream: nothing straddles it
                tail = b""
                continue
            total += len(chunk)
            self.scan(tail + chunk, where, found)
            tail = chunk[-self.overlap :] if self.overlap else b""
        return total


class Probe:
    """One probe's findings, serialised into the report."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found: dict[str, list[str]] = {}
        self.access: list[str] = []
        self.refused = 0
        self.errors: dict[str, int] = {}
        self.notes: list[str] = []
        self.attached = False  # ptrace only: "obtained" is the attach itself
        self.bytes_read = 0

    def ok(self, target: object) -> None:
        if len(self.access) < LIST_MAX:
            self.access.append(str(target))

    def denied(self, exc: OSError) -> None:
        if exc.errno in (errno.EACCES, errno.EPERM):
            self.refused += 1
        else:
            key = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            self.errors[key] = self.errors.get(key, 0) + 1

    def report(self) -> dict[str, Any]:
        detail = [f"refused {self.refused}", f"read {self.bytes_read} bytes"]
        detail += [f"{k} {v}" for k, v in sorted(self.errors.items())]
        detail += self.notes
        return {
            "name": self.name,
            "obtained": bool(self.found) or self.attached,
            "found": self.found,
            "access": self.access,
            "refused": self.refused,
            "detail": "; ".join(detail),
        }


def _uids(pid: int) -> tuple[int, ...] | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return tuple(int(x) for x in line.split()[1:4])
    except OSError:
        return None
    return None


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # The command name may hold spaces and parentheses: fields resume after the last ')'.
        return int(data[data.rindex(b")") + 2 :].split()[1])
    except (OSError, ValueError):
        return 0


def processes() -> tuple[list[int], list[int]]:
    """(foreign pids, own ancestors): not all of real/effective/saved uid ours, and our parents."""
    me, mine = os.getpid(), os.getuid()
    foreign = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        uids = _uids(int(entry))
        if uids is not None and any(u != mine for u in uids):
            foreign.append(int(entry))
    ancestors = []
    pid = os.getppid()
    while pid > 1:
        uids = _uids(pid)
        if uids is None or any(u != mine for u in uids):
            break
        ancestors.append(pid)
        pid = _ppid(pid)
    return foreign, ancestors


def read_file(path: str, cap: int) -> Iterator[bytes]:
    """Chunks of a regular file up to ``cap`` bytes (never blocks on FIFOs or devices)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        left = cap
        while left > 0:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


def probe_read(
    probe: Probe, needles: Needles, path: str, where: str, cap: int, *, empty_is_access: bool = True
) -> None:
    """Read and scan one file.

    ``/proc/<pid>/environ`` of a kernel thread or a zombie opens for anyone and reads empty:
    with ``empty_is_access=False`` that does not count as access.
    """
    try:
        seen = needles.scan_stream(read_file(path, cap), where, probe.found)
    except OSError as exc:
        probe.denied(exc)
        return
    probe.bytes_read += seen
    if seen or empty_is_access:
        probe.ok(where)


def _regions(pid: int) -> list[tuple[int, int]]:
    """Where secrets live in a process: anonymous, heap, stack, memfd and writable mappings.

    Read-only file mappings are code and constants of files on disk (the ``files`` probe's job);
    skipping them keeps a Jupyter server's scan within the time budget.
    """
    out: list[tuple[int, int, int]] = []
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            m = _MAPS.match(line.rstrip(b"\n"))
            if not m or m.group(3)[0:1] != b"r":
                continue
            name = m.group(4).strip()
            if name in _SKIP_MAPPINGS:
                continue
            wanted = (
                not name
                or name.startswith((b"[heap]", b"[stack", b"[anon", b"/memfd:"))
                or m.group(3)[1:2] == b"w"
            )
            if wanted:
                rank = 0 if name.startswith(b"[stack") else 1 if name == b"[heap]" else 2
                out.append((int(m.group(1), 16), int(m.group(2), 16), rank))
    # The stack (environment, argv) and the heap first, then small mappings before large ones
    # (Python's object arenas before data buffers): the cap cuts from the tail.
    out.sort(key=lambda r: (r[2], r[1] - r[0]))
    return [(start, end) for start, end, _ in out]


def _read_mem(pid: int, cap: int) -> Iterator[bytes]:
    regions = _regions(pid)  # PermissionError for a process we may not ptrace
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        left = cap
        for start, end in regions:
            addr = start
            while addr < end and left > 0:
                size = min(CHUNK, end - addr, left)
                try:
                    chunk = os.pread(fd, size, addr)
                except OSError:
                    break  # unmapped in between or a guard page: next region
                if not chunk:
                    break
                left -= len(chunk)
                addr += len(chunk)
                yield chunk
            yield b""  # regions are not contiguous: reset the straddle window
            if left <= 0:
                break
    finally:
        os.close(fd)


def probe_mem(probe: Probe, needles: Needles, pid: int, cap: int) -> None:
    try:
        seen = needles.scan_stream(_read_mem(pid, cap), str(pid), probe.found)
    except OSError as exc:
        probe.denied(exc)
        return
    if seen:  # a kernel thread or a zombie has no memory to read, whoever asks
        probe.ok(pid)
        probe.bytes_read += seen


def probe_fds(probe: Probe, needles: Needles, pid: int) -> None:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError as exc:
        probe.denied(exc)
        return
    probe.ok(pid)
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if stat.S_ISREG(os.stat(path).st_mode):  # pipes and sockets: never steal their data
                chunks = read_file(path, FILE_CAP)
                probe.bytes_read += needles.scan_stream(chunks, f"{pid} fd {fd}", probe.found)
        except OSError as exc:
            probe.denied(exc)


def probe_ptrace(probe: Probe, pids: list[int]) -> None:
    """``PTRACE_SEIZE`` each pid from a forked child that then exits.

    The same permission check as ``PTRACE_ATTACH``, but the tracee is never stopped, and the
    child's exit detaches it: an attach that succeeds disturbs nothing.
    """
    if not pids:
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    ptrace = libc.ptrace
    ptrace.restype = ctypes.c_long
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(r)
            lines = []
            for pid in pids:
                rc = ptrace(PTRACE_SEIZE, pid, None, None)
                lines.append(f"{pid} {0 if rc == 0 else ctypes.get_errno()}")
            data = "\n".join(lines).encode()
            while data:
                data = data[os.write(w, data) :]
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(child, 0)
    for line in out.splitlines():
        pid_s, err_s = line.split()
        err = int(err_s)
        if err == 0:
            probe.attached = True
            probe.ok(pid_s)
        else:
            probe.denied(OSError(err, os.strerror(err)))


def probe_files(probe: Probe, needles: Needles, roots: list[str]) -> None:
    seen: set[str] = set()  # a configured dir may hold another configured path
    for root in roots:
        if not os.path.lexists(root):
            probe.notes.append(f"absent {root}")
            continue
        paths: list[str] = []
        if os.path.isdir(root):

            def refused(exc: OSError) -> None:
                probe.denied(exc)

            for top, dirs, files in os.walk(root, onerror=refused):
                dirs.sort()
                paths.extend(os.path.join(top, f) for f in sorted(files))
                if len(paths) >= FILES_MAX:
                    probe.notes.append(f"stopped after {FILES_MAX} files under {root}")
                    break
        else:
            paths.append(root)
        for path in paths[:FILES_MAX]:
            if path in seen:
                continue
            seen.add(path)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue
            except OSError as exc:
                probe.denied(exc)
                continue
            probe_read(probe, needles, path, path, FILE_CAP)


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.settimeout(SOCKET_TIMEOUT)
    if request:
        sock.sendall(request)
    data = b""
    try:
        while len(data) < SOCKET_READ_CAP:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


def probe_sockets(
    probe: Probe, needles: Needles, endpoints: list[dict[str, Any]], family: int
) -> None:
    for ep in endpoints:
        if family == socket.AF_UNIX:
            address: Any = ep["path"]
            where = str(ep["path"])
        else:
            address = (ep["host"], int(ep["port"]))
            where = f"{ep['host']}:{ep['port']}"
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(SOCKET_TIMEOUT)
                sock.connect(address)
                answer = _exchange(sock, bytes.fromhex(ep.get("request_hex", "")))
        except OSError as exc:
            probe.denied(exc)
            continue
        probe.ok(where)
        probe.bytes_read += len(answer)
        needles.scan(answer, where, probe.found)


def run(config: dict[str, Any]) -> dict[str, Any]:
    """Every probe once; the report (JSON-serialisable) names labels and targets, never bytes."""
    started = time.monotonic()
    needles = Needles(config.get("needles", []))
    mem_cap = int(config.get("mem_cap", MEM_CAP))
    foreign, ancestors = processes()
    extra = [int(p) for p in config.get("pids", []) if int(p) != os.getpid()]
    targets = sorted(set(foreign) | set(extra))

    own_env = Probe("own_environ")
    environ = b"\0".join(k + b"=" + v for k, v in os.environb.items())
    needles.scan(environ, "os.environ", own_env.found)
    own_env.ok("os.environ")
    own_env.bytes_read = len(environ)

    cmdline, env, mem, fds = (
        Probe(n) for n in ("proc_cmdline", "proc_environ", "proc_mem", "proc_fd")
    )
    for pid in targets:
        probe_read(cmdline, needles, f"/proc/{pid}/cmdline", str(pid), FILE_CAP)
        probe_read(env, needles, f"/proc/{pid}/environ", str(pid), FILE_CAP, empty_is_access=False)
        probe_mem(mem, needles, pid, mem_cap)
        probe_fds(fds, needles, pid)
    trace = Probe("ptrace_attach")
    probe_ptrace(trace, targets)

    server_env, server_mem, server_fds = (
        Probe(n) for n in ("own_server_environ", "own_server_memory", "own_server_fd")
    )
    for pid in ancestors:
        probe_read(
            server_env,
            needles,
            f"/proc/{pid}/environ",
            str(pid),
            FILE_CAP,
            empty_is_access=False,
        )
        probe_mem(server_mem, needles, pid, mem_cap)
        probe_fds(server_fds, needles, pid)

    files = Probe("files")
    probe_files(files, needles, [str(p) for p in config.get("paths", [])])
    unix = Probe("unix_socket")
    probe_sockets(unix, needles, config.get("unix", []), socket.AF_UNIX)
    tcp = Probe("tcp")
    probe_sockets(tcp, needles, config.get("tcp", []), socket.AF_INET)

    probes = [own_env, cmdline, env, mem, fds, trace, server_env, server_mem, server_fds]
    probes += [files, unix, tcp]
    return {
        "uid": os.getuid(),
        "pid": os.getpid(),
        "ancestors": ancestors,
        "foreign": foreign,
        "targets": targets,
        "seconds": round(time.monotonic() - started, 3),
        "probes": [p.report() for p in probes],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the probes with ``--config``; write the report to ``--out``, print a summary."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON config (see the module docstring)")
    parser.add_argument("--out", required=True, help="where to write the JSON report")
    args = parser.parse_args(argv)
    if os.geteuid() == 0 or os.getuid() == 0:
        print("probe: refusing to run as root", file=sys.stderr)
        return 2
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    report = run(config)
    tmp = f"{args.out}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, args.out)
    for p in report["probes"]:
        print(f"probe {p['name']}: obtained={p['obtained']} found={sorted(p['found'])}")
    print(f"probe done in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
