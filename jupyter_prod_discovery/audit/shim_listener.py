"""Server side of the data-source audit: one collector socket per kernel.

The kernel env hook binds a ZMQ PULL socket on loopback for the kernel being launched and hands
its address to the kernel (``PROD_DISCOVERY_AUDIT_SHIM``) with the shim first on PYTHONPATH.
Whatever arrives on that socket is attributed to that kernel and its owner: the identity is
fixed by the server, never read from the message. Messages are size-capped and each kernel is
rate-limited (a token bucket of ``max_events_per_second``), so a kernel cannot flood the trail.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
from zmq.eventloop.zmqstream import ZMQStream

from .kernel_shim import ENV_ADDR, ENV_INTERVAL

if TYPE_CHECKING:
    from .trail import AuditTrail

__all__ = ["SHIM_SITE", "ShimListener"]

SHIM_SITE = str(Path(__file__).resolve().parent / "shim_site")
MAX_MESSAGE_BYTES = 256 * 1024
KINDS = frozenset({"file", "sqlite", "socket", "dbapi", "dropped"})


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()
        self.last_summary = -1e9

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ShimListener:
    """Per-kernel collector sockets feeding ``datasource`` events into the trail."""

    def __init__(
        self,
        trail: AuditTrail,
        owners: dict[str, str],
        interval: float = 2.0,
        max_events_per_second: float = 50.0,
    ) -> None:
        self.trail = trail
        self.owners = owners
        self.interval = interval
        self.rate = max_events_per_second
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._kernels: dict[str, tuple[ZMQStream, str, _Bucket, list[int]]] = {}

    def env_hook(self, kernel_id: str, env: dict[str, str]) -> None:
        """Kernel env hook: the collector address and the shim first on PYTHONPATH."""
        env[ENV_ADDR] = self.address(kernel_id)
        env[ENV_INTERVAL] = str(self.interval)
        current = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        parts = [p for p in current.split(os.pathsep) if p and p != SHIM_SITE]
        env["PYTHONPATH"] = os.pathsep.join([SHIM_SITE, *parts])

    def address(self, kernel_id: str) -> str:
        """The kernel's collector address (the same across restarts)."""
        if kernel_id in self._kernels:
            return self._kernels[kernel_id][1]
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        stream = ZMQStream(sock)
        stream.on_recv(functools.partial(self._on_message, kernel_id))
        addr = f"tcp://127.0.0.1:{port}"
        self._kernels[kernel_id] = (stream, addr, _Bucket(self.rate), [0])
        return addr

    def _on_message(self, kernel_id: str, frames: list[bytes]) -> None:
        entry = self._kernels.get(kernel_id)
        if entry is None:
            return
        _stream, _addr, bucket, dropped = entry
        try:
            payload = json.loads(frames[-1])
            events = payload["events"]
            assert isinstance(events, list)
        except Exception:
            self.trail.log.warning("malformed audit shim message from kernel %s", kernel_id)
            return
        owner = self.owners.get(kernel_id)
        dropped[0] += len(events[500:])  # a well-behaved shim never sends more
        for event in events[:500]:
            if not isinstance(event, dict) or event.get("kind") not in KINDS:
                continue
            if not bucket.take():
                dropped[0] += int(event.get("count") or 1)
                continue
            count = int(event.get("count") or 1) + (dropped[0] if event["kind"] == "dropped" else 0)
            if event["kind"] == "dropped":
                dropped[0] = 0
            self.trail.record(
                "datasource",
                {
                    "kernel_id": kernel_id,
                    "kind": event["kind"],
                    "target": str(event.get("target", ""))[:500],
                    "mode": str(event.get("mode") or "") or None,
                    "count": count,
                },
                user=owner,
            )
        # One summary of what the bucket refused, at most once a second per kernel (the rest
        # carries over to the next message), so that refusals are visible but cannot flood.
        now = time.monotonic()
        if dropped[0] and now - bucket.last_summary >= 1.0:
            bucket.last_summary = now
            self.trail.record(
                "datasource",
                {"kernel_id": kernel_id, "kind": "dropped", "target": "*", "count": dropped[0]},
                user=owner,
            )
            dropped[0] = 0

    def discard(self, kernel_id: str) -> None:
        """The kernel is gone: close its socket."""
        entry = self._kernels.pop(kernel_id, None)
        if entry is not None:
            entry[0].close(linger=0)

    def close(self) -> None:
        for kernel_id in list(self._kernels):
            self.discard(kernel_id)
