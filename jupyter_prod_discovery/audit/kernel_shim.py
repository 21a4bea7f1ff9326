"""Kernel side of the data-source audit: PEP 578 audit hooks, summarized, sent to the server.

Loaded into every kernel by ``shim_site/sitecustomize.py`` (first on the kernel's PYTHONPATH,
set by the server's kernel env hook) when ``PROD_DISCOVERY_AUDIT_SHIM`` holds the address of
the server's collector socket and ``PROD_DISCOVERY_AUDIT_SHIM_TOKEN`` this kernel's token. Kept
free of heavy imports: it runs at interpreter start in every kernel and every Python subprocess a
kernel starts.

What it sees
------------
- ``open`` of files by Python code (builtins.open, io.open, os.open, pandas/pyarrow readers that
  open through Python), except the interpreter's own files (stdlib, site-packages, bytecode,
  /proc, /sys, /dev, IPython's profile directory);
- ``sqlite3.connect`` (the database path);
- ``socket.connect`` from Python sockets (host:port, or the AF_UNIX path): HTTP clients,
  requests, pure-Python database drivers (pymysql, pg8000, ...);
- DB-API ``connect`` of psycopg, psycopg2, pymysql, mysql.connector, oracledb, cx_Oracle,
  pyodbc and snowflake.connector when imported after start (the target without the password;
  for psycopg and psycopg2 the server and database libpq actually reached,
  ``postgresql://host:port/dbname``, which names the database even when the arguments are
  empty and libpq read ``PG*`` variables);
- the same in Python subprocesses started by the kernel (they inherit the environment).

What it cannot see
------------------
- I/O done in C without a Python audit event: libpq's own sockets (hence the psycopg wrapper),
  native readers that open files in C++ (some pyarrow/duckdb paths), ctypes/cffi calls;
- non-Python subprocesses (``!curl``, ``!psql``) and anything outside the kernel process tree;
- a user determined to evade it: kernel code runs as the same OS user and can stop the flusher
  thread, patch this module or send nothing. It is a tripwire for honest and accidental access,
  not a sandbox. It cannot make the server attribute events to another kernel or user: the
  server attributes each message to the kernel whose random token (128 bits, given to that
  kernel alone) it carries, drops messages without a known token and ignores any identity in
  the message (but kernels of one OS user can read each other's environment, so the boundary
  between users is the single-user server JupyterHub gives each of them).

Volume is bounded: events are counted per (kind, target, mode) and sent every ``interval``
seconds as one message with at most ``max_targets`` entries; the rest is counted as ``dropped``.
"""

# os.path on purpose: the hook runs on every open(); Path objects would cost several times more.
# ruff: noqa: PTH100, PTH111, PTH118, PTH120

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from typing import Any

__all__ = ["ENV_ADDR", "ENV_INTERVAL", "ENV_TOKEN", "Collector", "install", "scrub_target"]

ENV_ADDR = "PROD_DISCOVERY_AUDIT_SHIM"
ENV_TOKEN = "PROD_DISCOVERY_AUDIT_SHIM_TOKEN"  # noqa: S105 - a variable name
ENV_INTERVAL = "PROD_DISCOVERY_AUDIT_SHIM_INTERVAL"
DBAPI_MODULES = frozenset(
    {
        "psycopg",
        "psycopg2",
        "pymysql",
        "mysql.connector",
        "oracledb",
        "cx_Oracle",
        "pyodbc",
        "snowflake.connector",
    }
)
_EVENTS = frozenset({"open", "sqlite3.connect", "sqlite3.connect/handle", "socket.connect"})
_SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token")


def _ignored_prefixes() -> tuple[str, ...]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev"}
    home = os.path.expanduser("~")
    prefixes.add(os.environ.get("IPYTHONDIR", os.path.join(home, ".ipython")))
    prefixes.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(p.rstrip("/") + "/" for p in prefixes if p)


def scrub_target(target: str) -> str:
    """A connection target without credentials (key=value pairs and URL user:pass@)."""
    out = []
    for part in target.split():
        key = part.split("=", 1)[0].lower()
        out.append(f"{key}=***" if "=" in part and key in _SECRET_KEYS else part)
    text = " ".join(out)
    if "://" in text and "@" in text:
        scheme, rest = text.split("://", 1)
        creds, host = rest.split("@", 1) if "@" in rest.split("/", 1)[0] else ("", rest)
        if creds:
            text = f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return text[:500]


class Collector:
    """Counts audit events; a daemon thread sends a summary every ``interval`` seconds."""

    def __init__(self, send: Any, interval: float = 2.0, max_targets: int = 200) -> None:
        self._send = send
        self.interval = interval
        self.max_targets = max_targets
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._dropped = 0
        self._local = threading.local()
        self._ignored = _ignored_prefixes()
        self._stop = threading.Event()

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        """The PEP 578 hook: microseconds, never raises, ignores its own activity."""
        if event not in _EVENTS or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            found = self._classify(event, args)
            if found is not None:
                self._count(found)
        except Exception:  # noqa: S110 - an audit hook must never break the user's code
            pass
        finally:
            self._local.busy = False

    def _classify(self, event: str, args: tuple[Any, ...]) -> tuple[str, str, str] | None:
        if event == "open":
            path, mode = args[0], args[1] if len(args) > 1 else "r"
            if isinstance(path, int) or path is None:
                return None
            path = os.fsdecode(path)
            full = os.path.abspath(path)
            if full.startswith(self._ignored) or full.endswith((".py", ".pyc", ".so")):
                return None
            if "__pycache__" in full or "site-packages" in full:
                return None
            return ("file", full, str(mode) if mode is not None else "")
        if event.startswith("sqlite3.connect"):
            if event != "sqlite3.connect":
                return None
            database = os.fsdecode(args[0]) if args and args[0] is not None else ""
            if database.startswith(self._ignored):
                return None
            return ("sqlite", database, "")
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and len(address) >= 2:
            return ("socket", f"{address[0]}:{address[1]}", "")
        if isinstance(address, str | bytes):
            return ("socket", os.fsdecode(address), "")
        return None

    def _count(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            if key in self._counts:
                self._counts[key] += 1
            elif len(self._counts) < self.max_targets:
                self._counts[key] = 1
            else:
                self._dropped += 1

    def record_dbapi(self, module: str, target: str) -> None:
        self._count(("dbapi", f"{module} {scrub_target(target)}", ""))

    def reset(self) -> None:
        """Forget what was counted (the clean run calls it once the kernel has started: the
        kernel's own start-up reads are not the notebook's)."""
        with self._lock:
            self._counts, self._dropped = {}, 0

    def flush(self) -> None:
        """Send what was counted since the last flush (one message, bounded size)."""
        with self._lock:
            counts, dropped = self._counts, self._dropped
            self._counts, self._dropped = {}, 0
        if not counts and not dropped:
            return
        events = [
            {"kind": k, "target": t, "mode": m, "count": n} for (k, t, m), n in counts.items()
        ]
        if dropped:
            events.append({"kind": "dropped", "target": "*", "mode": "", "count": dropped})
        self._local.busy = True
        try:
            self._send(json.dumps({"v": 1, "events": events}).encode())
        except Exception:  # noqa: S110 - the server may be gone; the kernel must go on
            pass
        finally:
            self._local.busy = False

    def run(self) -> None:
        self._local.busy = True  # this thread's own I/O is not the user's
        while not self._stop.wait(self.interval):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self.flush()


class _DBAPIFinder:
    """Meta path finder wrapping ``connect`` of DB-API modules right after they load."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in DBAPI_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _wrapping(  # type: ignore[method-assign]
                    spec.loader.exec_module, name, self.collector
                )
                return spec
        return None


def _wrapping(exec_module: Any, name: str, collector: Collector) -> Any:
    def exec_and_wrap(module: Any) -> None:
        exec_module(module)
        _wrap_connect(module, name, collector)

    return exec_and_wrap


def _wrap_connect(module: Any, name: str, collector: Collector) -> None:
    original = getattr(module, "connect", None)
    if original is None or getattr(original, "_prod_discovery", False):
        return

    def connect(*args: Any, **kwargs: Any) -> Any:
        parts = [str(a) for a in args[:1]]
        parts += [f"{k}={v}" for k, v in kwargs.items() if k.lower() not in _SECRET_KEYS]
        try:
            conn = original(*args, **kwargs)
        except BaseException:
            collector.record_dbapi(name, " ".join(parts))  # the attempt, as it was asked for
            raise
        collector.record_dbapi(name, _where(conn) or " ".join(parts))
        return conn

    connect._prod_discovery = True  # type: ignore[attr-defined]
    connect.__doc__ = original.__doc__
    module.connect = connect


def _where(conn: Any) -> str | None:
    """A PostgreSQL connection's server and database as libpq resolved them.

    Why: notebooks usually connect with ``psycopg.connect("")`` and let libpq read ``PG*``
    variables (the credentials a kernel is issued), so the arguments name nothing; the
    connection's ``info`` names the database actually reached. No user (each kernel's database
    user is a fresh one) and no password.
    """
    try:
        info = conn.info
        host, port, dbname = info.host, info.port, info.dbname
    except Exception:
        return None
    if not dbname:
        return None
    return f"postgresql://{host}:{port}/{dbname}"


def _zmq_sender(address: str, token: str) -> Any:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 500)
    sock.setsockopt(zmq.SNDHWM, 100)
    sock.connect(address)
    frame = token.encode()

    def send(payload: bytes) -> None:
        sock.send_multipart([frame, payload], zmq.NOBLOCK)

    return send


def install() -> Collector | None:
    """Install once per process when the server gave this process a collector address."""
    address = os.environ.get(ENV_ADDR)
    token = os.environ.get(ENV_TOKEN)
    if not address or not token or getattr(sys, "_prod_discovery_shim", None) is not None:
        return None
    try:
        interval = float(os.environ.get(ENV_INTERVAL, "2"))
        collector = Collector(_zmq_sender(address, token), interval=interval)
    except Exception:
        return None
    sys._prod_discovery_shim = collector  # type: ignore[attr-defined]
    for name in DBAPI_MODULES & set(sys.modules):
        _wrap_connect(sys.modules[name], name, collector)
    sys.meta_path.insert(0, _DBAPIFinder(collector))
    sys.addaudithook(collector.hook)
    threading.Thread(target=collector.run, name="prod-discovery-audit-shim", daemon=True).start()
    atexit.register(collector.stop)
    return collector
