"""The benchmark machinery: a case registry, real server subprocesses, clients and measurement.

Why server CPU and not wall time: on a shared 2-core box wall time mostly measures the neighbours.
The CPU time the *server process* spends (summed over its threads, before/after the block) is
what the extension adds to every request and every kernel message, and it is what a deployment
pays. Wall time is reported too, for orientation. Kernels are child processes of the server and are
not counted: the extension's overhead lives in the server.

A case is an async function ``case(server, measure)``: it prepares what it needs (unmeasured),
then wraps exactly the operation under test in ``async with measure(ops=N):``. The runner calls it
on the plain server and on the extension server alternately (A/B, then B/A), so slow drifts of the
machine hit both sides equally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

__all__ = [
    "CASES",
    "CONFIG_HOOKS",
    "BenchEnv",
    "BenchServer",
    "Case",
    "Companion",
    "Kernel",
    "Measure",
    "case",
    "profiled_command",
    "server_config",
]

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"

#: (client CPU, server CPU) when pinning is on (``pin_cpus``), else None.
PIN_CPUS: tuple[int, int] | None = None


def pin_cpus() -> tuple[int, int] | None:
    """Pin this process (the client) to one CPU and the servers started later to another.

    Why: on a 2-core machine the scheduler moves the client and the server between cores at
    will, and which core a server lands on changes its speed by several percent; with fixed
    cores both servers run under the same conditions. Kernels inherit their server's CPU.
    """
    global PIN_CPUS
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(cpus) < 2:
        return None
    PIN_CPUS = (cpus[0], cpus[1])
    os.sched_setaffinity(0, {cpus[0]})
    return PIN_CPUS


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

CaseFn = Callable[["BenchServer", "Measure"], Awaitable[None]]


@dataclass
class Case:
    """One registered benchmark case."""

    name: str
    fn: CaseFn
    description: str
    unit: str = "op"
    # Cases in the default set run without --only; heavy or experimental ones can opt out.
    default: bool = True


CASES: dict[str, Case] = {}


def case(
    name: str, *, description: str = "", unit: str = "op", default: bool = True
) -> Callable[[CaseFn], CaseFn]:
    """Register ``fn`` as benchmark case ``name`` (a module in ``benchmarks/cases/`` does this)."""

    def register(fn: CaseFn) -> CaseFn:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} is registered twice")
        CASES[name] = Case(name, fn, description or (fn.__doc__ or "").strip(), unit, default)
        return fn

    return register


@dataclass
class BenchEnv:
    """What config hooks may use to build the extension server's config."""

    openbao: Any | None = None  # jupyter_prod_discovery.demo.openbao.DevServer, when started
    postgres_dsn: str | None = None  # reachable PostgreSQL superuser DSN, when any
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    # Values put here reach the extension server's environment only (never written to disk).
    extension_env: dict[str, str] = field(default_factory=dict)
    # Run after both servers stopped, before OpenBao stops (e.g. revoke leases, drop roles).
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # --service: the trusted service's address ('unix:/...') the extension side is a client of;
    # None otherwise. Hooks leave out what such a server does not do itself (a local trail).
    service_url: str | None = None


ConfigHook = Callable[[BenchEnv], dict[str, dict[str, Any]]]
CONFIG_HOOKS: list[ConfigHook] = []


def server_config(fn: ConfigHook) -> ConfigHook:
    """Register a hook returning extra traitlets config (``{Section: {trait: value}}``) for the
    extension side. Capabilities use it to turn their guard on in the benchmark."""
    CONFIG_HOOKS.append(fn)
    return fn


def merge_config(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> None:
    """Merge ``extra`` into ``base`` one section deep (later hooks win per trait)."""
    for section, values in extra.items():
        base.setdefault(section, {}).update(values)


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    cpu: float  # server CPU seconds per op
    wall: float  # wall seconds per op
    ops: int
    instructions: float | None = None  # server instructions per op (--instructions only)
    # CPU of the main thread (the event loop) per op; the rest of ``cpu`` is other threads
    # (the audit writer, ZMQ I/O, the PII guard's scanner). None when the coarse total was used.
    loop_cpu: float | None = None
    # CPU per op of the server's companion processes (--service: "service", "ledger-db"), by
    # name, measured around the same block; not included in ``cpu``.
    companions: dict[str, float] = field(default_factory=dict)
    # ... and of their main threads (the service's event loop), where known.
    companion_loops: dict[str, float] = field(default_factory=dict)


@dataclass
class Companion:
    """A process outside the server that does part of the server's work (--service: the
    trusted service, its ledger's PostgreSQL backend): its CPU is read around the same measured
    blocks and reported beside the server's, by ``name`` (several processes of one name add up).
    """

    name: str
    process: psutil.Process
    # Runs under the --profile wrapper (it gets the profiler's on/off signals; a process without
    # the wrapper's handlers would be killed by them).
    profiled: bool = False


def _thread_cpu(pid: int) -> dict[int, int] | None:
    """On-CPU nanoseconds of each live thread of ``pid`` (Linux ``/proc/<pid>/task/*/schedstat``).

    Why: ``cpu_times()`` counts 10 ms clock ticks, too coarse for a request of a few ms; the
    scheduler's own run-time account is exact to the nanosecond. None where it is unavailable.
    """
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return None
    out: dict[int, int] = {}
    for tid in tids:
        try:
            with open(f"{base}/{tid}/schedstat", "rb") as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread exited between listing and reading
    return out


#: One reading of a process's CPU: per-thread nanoseconds (None without schedstat) and the
#: coarse process total in seconds.
CpuReading = tuple[dict[int, int] | None, float]


def cpu_reading(process: psutil.Process) -> CpuReading:
    """A reading for :func:`cpu_between`: each thread's exact run time and the coarse total."""
    t = process.cpu_times()
    return _thread_cpu(process.pid), float(t.user + t.system)


def cpu_between(before: CpuReading, after: CpuReading) -> float:
    """CPU seconds of the process between two readings: the threads' exact run times, or the
    coarse total (10 ms ticks, which keeps what exited threads ran) when a thread exited in
    between or schedstat is missing."""
    (fine0, coarse0), (fine1, coarse1) = before, after
    if fine0 is None or fine1 is None or set(fine0) - set(fine1):
        return coarse1 - coarse0
    return sum(ns - fine0.get(tid, 0) for tid, ns in fine1.items()) / 1e9


def _main_thread_cpu(
    pid: int, before: dict[int, int] | None, after: dict[int, int] | None
) -> float | None:
    """Seconds the main thread (tid == pid: the event loop) ran between two readings."""
    if before is None or after is None or pid not in before or pid not in after:
        return None
    return (after[pid] - before[pid]) / 1e9


def _by_thread_name(
    pid: int, before: dict[int, int], after: dict[int, int], ops: int
) -> dict[str, float]:
    """CPU seconds per op of each thread name (numbered pool threads grouped by prefix)."""
    out: dict[str, float] = {}
    for tid, ns in after.items():
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = "event loop" if tid == pid else f.read().strip().rstrip("0123456789_-")
        except OSError:
            name = "?"
        out[name] = out.get(name, 0.0) + (ns - before.get(tid, 0)) / 1e9 / ops
    return out


class Measure:
    """``async with measure(ops=N):`` records server CPU and wall time of the block, per op.

    CPU is the scheduler's per-thread run time (ns) summed over the server's threads; a thread
    that exits inside the block would take its share with it, so then (and where schedstat is
    missing) the coarse process total (10 ms ticks, which includes exited threads) is used.
    """

    def __init__(
        self,
        process: psutil.Process,
        callgrind_dir: Path | None = None,
        profile: bool = False,
        companions: list[Companion] | None = None,
    ) -> None:
        self._process = process
        self._callgrind_dir = callgrind_dir
        self._profile = profile
        self._companions = companions or []
        self.sample: Sample | None = None
        self.threads: dict[str, float] = {}  # --profile: CPU seconds per op by thread name
        # --profile: the same for each companion, by companion name.
        self.companion_threads: dict[str, dict[str, float]] = {}

    def _cpu(self, process: psutil.Process | None = None) -> CpuReading:
        return cpu_reading(process or self._process)

    def _signal_profilers(self, sig: int) -> None:
        if not self._profile:
            return
        self._process.send_signal(sig)
        for c in self._companions:
            if c.profiled:
                with contextlib.suppress(psutil.Error):
                    c.process.send_signal(sig)

    @contextlib.asynccontextmanager
    async def __call__(self, ops: int = 1) -> AsyncIterator[None]:
        if self.sample is not None:
            raise RuntimeError("a benchmark case may measure only one block per run")
        self._signal_profilers(PROFILE_ON)
        # Let the server settle (finish writing previous responses) before the first reading.
        await asyncio.sleep(0.05 if self._callgrind_dir is None else 1.0)
        if self._callgrind_dir is not None:
            await _callgrind_control("-z", self._process.pid)
            await _callgrind_control("-i", "on", self._process.pid)
        cpu0, wall0 = self._cpu(), time.perf_counter()
        side0 = [self._cpu(c.process) for c in self._companions]
        yield
        wall1 = time.perf_counter()
        # The last response may still be leaving the server.
        await asyncio.sleep(0.02 if self._callgrind_dir is None else 1.0)
        cpu1 = self._cpu()
        side1 = [self._cpu(c.process) for c in self._companions]
        cpu = cpu_between(cpu0, cpu1)
        loop_cpu = _main_thread_cpu(self._process.pid, cpu0[0], cpu1[0])
        if self._profile and cpu0[0] is not None and cpu1[0] is not None:
            self.threads = _by_thread_name(self._process.pid, cpu0[0], cpu1[0], ops)
        companions: dict[str, float] = {}
        companion_loops: dict[str, float] = {}
        for c, before, after in zip(self._companions, side0, side1, strict=True):
            pid = c.process.pid
            companions[c.name] = companions.get(c.name, 0.0) + cpu_between(before, after) / ops
            c_loop = _main_thread_cpu(pid, before[0], after[0])
            if c_loop is not None:
                companion_loops[c.name] = companion_loops.get(c.name, 0.0) + c_loop / ops
            if c.profiled and before[0] is not None and after[0] is not None:
                split = self.companion_threads.setdefault(c.name, {})
                for name, v in _by_thread_name(pid, before[0], after[0], ops).items():
                    split[name] = split.get(name, 0.0) + v
        self._signal_profilers(PROFILE_OFF)
        instructions = None
        if self._callgrind_dir is not None:
            await _callgrind_control("-i", "off", self._process.pid)
            instructions = await _callgrind_dump(self._callgrind_dir, self._process.pid) / ops
        self.sample = Sample(
            cpu=cpu / ops,
            wall=(wall1 - wall0) / ops,
            ops=ops,
            instructions=instructions,
            loop_cpu=None if loop_cpu is None else loop_cpu / ops,
            companions=companions,
            companion_loops=companion_loops,
        )


# --profile: the server (and with --service the service) runs under this wrapper, which profiles
# its main thread (the event loop, where requests, websocket messages and audit records are
# handled) with cProfile between the two signals and writes the accumulated stats to
# $BENCH_PROFILE_OUT after each measured block. The variable is removed at once so that kernels
# do not inherit it. The module to run and its argv[0] follow the code (profiled_command).
PROFILE_ON = signal.SIGRTMIN + 1
PROFILE_OFF = signal.SIGRTMIN + 2
_PROFILED = """
import cProfile, ctypes, os, runpy, signal, sys, threading, time
_libc = ctypes.CDLL(None)
_inner = threading.Thread._bootstrap_inner
def _named(self):  # the kernel's thread name (/proc/.../comm) = the Python name, for --profile
    _libc.prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    _inner(self)
threading.Thread._bootstrap_inner = _named
_prof = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU time of the thread, not wall time
_out = os.environ.pop("BENCH_PROFILE_OUT")
def _on(*_):
    _prof.enable()
def _off(*_):
    _prof.disable()
    _prof.dump_stats(_out)
signal.signal(signal.SIGRTMIN + 1, _on)
signal.signal(signal.SIGRTMIN + 2, _off)
sys.argv[0] = _ARGV0
runpy.run_module(_MODULE, run_name="__main__", alter_sys=True)
"""


def profiled_command(module: str, argv0: str, args: list[str]) -> list[str]:
    """The command running ``python -m module args`` under the --profile wrapper."""
    code = f"_MODULE, _ARGV0 = {module!r}, {argv0!r}\n{_PROFILED}"
    return [sys.executable, "-c", code, *args]


async def _callgrind_control(*args: object) -> None:
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control",
        *map(str, args),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"callgrind_control {args}: {err.decode(errors='replace')[-300:]}")


async def _callgrind_dump(directory: Path, pid: int) -> int:
    """Dump the counters since the last dump and return the instructions they hold.

    Why instructions: they do not depend on what else the machine is doing, so an overhead of
    a few percent is measured exactly, where CPU time on a shared VM varies by 10-20 % between
    runs. valgrind's CPU lacks some extensions (SHA-NI, so hashing counts far more instructions
    than it costs natively); read the ratio as an upper bound for hash-heavy cases.
    """
    before = set(directory.glob(f"cg.{pid}.*"))
    await _callgrind_control("-d", pid)
    for _ in range(100):
        new = set(directory.glob(f"cg.{pid}.*")) - before
        if new:
            dump = max(new, key=lambda p: int(p.suffix[1:]))
            text = dump.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no callgrind dump of {pid} in {directory}")


# ---------------------------------------------------------------------------------------------
# Server processes and clients
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    """A real ``jupyter server`` subprocess on loopback, with its own dirs, token and config."""

    def __init__(
        self,
        label: str,
        config: dict[str, dict[str, Any]],
        workdir: Path,
        env: dict[str, str] | None = None,
        callgrind: bool = False,
        profile: Path | None = None,
    ) -> None:
        self.label = label
        self.config = config
        self.dir = workdir / label
        self.root_dir = self.dir / "root"
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self._extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.http = AsyncHTTPClient(max_body_size=512 * 1024 * 1024)
        # --instructions: the server runs under callgrind, instrumented only inside measure().
        self.callgrind_dir = self.dir / "callgrind" if callgrind else None
        # --profile: cProfile stats of the event-loop thread inside measure() go to this file.
        self.profile = profile
        # Processes doing part of this server's work (--service), read around every measure().
        self.companions: list[Companion] = []

    def server_env(self) -> dict[str, str]:
        """The server's environment: this process's, less every Jupyter, Vault and OpenBao
        setting, with the server's own directories and token."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "JUPYTER"))
        }
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(self.dir / "config"),
                # Its own data directory, as every user's server has: the audit trail, the
                # notebook notary's and the file ID manager's databases are the server's own,
                # not shared with the other side of the comparison (or with earlier runs).
                "JUPYTER_DATA_DIR": str(self.dir / "data"),
                "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
                "JUPYTER_TOKEN": self.token,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self._extra_env)
        return env

    async def start(self, timeout: float = 60.0) -> None:
        for d in ("root", "config", "data", "runtime"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        config = json.loads(json.dumps(self.config))
        sa = config.setdefault("ServerApp", {})
        sa.update(
            {
                "ip": "127.0.0.1",
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "root_dir": str(self.root_dir),
                "allow_unauthenticated_access": False,
                "allow_root": True,  # containers and CI run as root
            }
        )
        cfg_file = self.dir / "config" / "jupyter_server_config.json"
        cfg_file.write_text(json.dumps(config, indent=1))
        env = self.server_env()
        self._log = (self.dir / "server.log").open("wb")
        command = [sys.executable, "-m", "jupyter_server", f"--config={cfg_file}"]
        if self.profile is not None:
            self.profile.parent.mkdir(parents=True, exist_ok=True)
            env["BENCH_PROFILE_OUT"] = str(self.profile)
            command = profiled_command("jupyter_server", "jupyter-server", [f"--config={cfg_file}"])
        if self.callgrind_dir is not None:
            self.callgrind_dir.mkdir(parents=True, exist_ok=True)
            command = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={self.callgrind_dir}/cg.%p",
                *command,
            ]
            timeout *= 10
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.root_dir,
            start_new_session=True,  # a process group of its own: kernels die with it
        )
        self.ps = psutil.Process(self.proc.pid)
        if PIN_CPUS is not None:
            self.ps.cpu_affinity([PIN_CPUS[1]])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} server exited: {self.log_tail()}")
            with contextlib.suppress(OSError, Exception):
                r = await self.request("GET", "/api/status", raise_error=False)
                if r.code == 200:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.label} server did not start in {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.dir / "server.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def loaded_extension(self, name: str) -> bool:
        """Whether the server log says extension ``name`` was loaded (a sanity check of A/B)."""
        return f"{name} | extension was successfully loaded" in self.log_tail(10**7)

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            for _ in range(150):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in its group (kernels)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self._log.close()
        self.proc = None

    # -- HTTP -----------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raise_error: bool = True,
        timeout: float = 120.0,
    ) -> HTTPResponse:
        """An authenticated REST call; ``body`` (not bytes) is sent as JSON."""
        data: bytes | None
        if body is None:
            data = b"{}" if method in ("POST", "PUT", "PATCH") else None
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        req = HTTPRequest(
            self.url + path,
            method=method,
            body=data,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            request_timeout=timeout,
            allow_nonstandard_methods=True,
        )
        return await self.http.fetch(req, raise_error=raise_error)

    async def json(self, method: str, path: str, body: Any = None) -> Any:
        r = await self.request(method, path, body)
        return json.loads(r.body) if r.body else None

    # -- kernels --------------------------------------------------------------------------------

    async def start_kernel(self, name: str = "python3") -> Kernel:
        """POST /api/kernels and open its websocket (JupyterLab's v1 protocol)."""
        model = await self.json("POST", "/api/kernels", {"name": name})
        k = Kernel(self, model["id"])
        await k.connect()
        return k


class Kernel:
    """A kernel reached the way JupyterLab reaches it: one websocket, v1 subprotocol."""

    def __init__(self, server: BenchServer, kernel_id: str) -> None:
        self.server = server
        self.id = kernel_id
        self.session = uuid.uuid4().hex
        self.ws: WebSocketClientConnection | None = None

    async def connect(self) -> None:
        s = self.server
        req = HTTPRequest(
            f"ws://127.0.0.1:{s.port}/api/kernels/{self.id}/channels?session_id={self.session}",
            headers={"Authorization": f"token {s.token}"},
        )
        self.ws = await websocket_connect(
            req, subprotocols=[V1_PROTOCOL], max_message_size=512 * 1024 * 1024
        )

    def _send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "bench",
            "date": "2026-01-01T00:00:00.000000Z",
            "version": "5.3",
        }
        parts = [json.dumps(x).encode() for x in (header, {}, {}, content)]
        assert self.ws is not None
        self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        return msg_id

    async def _recv(self) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

        assert self.ws is not None
        raw = await self.ws.read_message()
        if raw is None:
            raise ConnectionError("kernel websocket closed")
        if isinstance(raw, str):
            raise ValueError("expected a binary v1 websocket message")
        channel, parts = deserialize_msg_from_ws_v1(raw)
        header, parent, _meta, content = (json.loads(p) for p in parts[:4])
        return channel, header, parent, content

    async def kernel_info(self, timeout: float = 60.0) -> dict[str, Any]:
        """Send kernel_info_request until a reply arrives (the first ones may be lost at start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = self._send("shell", "kernel_info_request", {})
            try:
                while True:
                    _channel, header, parent, content = await asyncio.wait_for(self._recv(), 1.0)
                    if header["msg_type"] == "kernel_info_reply" and parent.get("msg_id") == msg_id:
                        return content
            except TimeoutError:
                continue
        raise TimeoutError("no kernel_info_reply")

    async def execute(
        self, code: str, timeout: float = 600.0, stall: float = 60.0
    ) -> dict[str, int]:
        """Run ``code`` and wait for its idle status; returns counts of output messages/bytes.

        Raises TimeoutError when nothing arrives for ``stall`` seconds: a server that drops
        messages (the idle status among them) must fail the case, not hang the runner.
        """
        msg_id = self._send(
            "shell",
            "execute_request",
            {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
        )
        stats = {"messages": 0, "stream_bytes": 0}
        replied = idle = False
        errors: list[str] = []

        async def pump() -> None:
            nonlocal replied, idle
            while not (replied and idle):
                try:
                    _channel, header, parent, content = await asyncio.wait_for(self._recv(), stall)
                except TimeoutError:
                    raise TimeoutError(
                        f"no message for {stall:.0f}s (reply={replied}, idle={idle}, "
                        f"{stats['messages']} messages, {stats['stream_bytes']} bytes so far): "
                        "output dropped or the server stalled"
                    ) from None
                if parent.get("msg_id") != msg_id:
                    continue
                mt = header["msg_type"]
                stats["messages"] += 1
                if mt == "stream":
                    stats["stream_bytes"] += len(content.get("text", ""))
                elif mt == "error":
                    errors.append(f"{content.get('ename')}: {content.get('evalue')}")
                elif mt == "execute_reply":
                    replied = True
                elif mt == "status" and content.get("execution_state") == "idle":
                    idle = True

        await asyncio.wait_for(pump(), timeout)
        if errors:
            raise RuntimeError(f"benchmark code failed in the kernel: {errors[0]}")
        return stats

    async def shutdown(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
        await self.server.request("DELETE", f"/api/kernels/{self.id}", raise_error=False)
