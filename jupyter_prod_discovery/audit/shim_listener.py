"""Server side of the data-source audit: one collector socket, one secret token per kernel.

The kernel env hook hands each kernel being launched the address of the server's ZMQ PULL socket
on loopback (``PROD_DISCOVERY_AUDIT_SHIM``), a random token of its own
(``PROD_DISCOVERY_AUDIT_SHIM_TOKEN``) and the shim first on PYTHONPATH. The shim sends
``[token, events]``; each message is attributed to the kernel holding that token and to its
owner, never to an identity read from the message, and one without a known token is dropped.
Why a token rather than a socket per kernel: any local process can connect to any loopback port,
so a port identifies nothing, while a kernel only ever learns its own token; and one socket costs
a kernel start nothing (a bound socket per kernel cost a bind and an event-loop registration).
Messages are size-capped and each kernel is rate-limited (a token bucket of
``max_events_per_second``), so a kernel cannot flood the trail; ZMQ queues each connected peer
separately, so one flooding kernel cannot crowd out the others' messages either.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
from zmq.eventloop.zmqstream import ZMQStream

from .kernel_shim import ENV_ADDR, ENV_INTERVAL, ENV_TOKEN

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


class _Kernel:
    __slots__ = ("bucket", "dropped", "kernel_id", "token")

    def __init__(self, kernel_id: str, rate: float) -> None:
        self.kernel_id = kernel_id
        self.token = secrets.token_hex(16)
        self.bucket = _Bucket(rate)
        self.dropped = 0


class ShimListener:
    """The collector socket feeding ``datasource`` events into the trail, by kernel token."""

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
        self._stream: ZMQStream | None = None
        self._address = ""
        self._kernels: dict[str, _Kernel] = {}
        self._by_token: dict[bytes, _Kernel] = {}
        self.unknown_messages = 0  # messages without a known token (dropped)

    def env_hook(self, kernel_id: str, env: dict[str, str]) -> None:
        """Kernel env hook: the collector address, the kernel's token, the shim on PYTHONPATH."""
        env[ENV_ADDR] = self.address()
        env[ENV_TOKEN] = self.token(kernel_id)
        env[ENV_INTERVAL] = str(self.interval)
        current = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        parts = [p for p in current.split(os.pathsep) if p and p != SHIM_SITE]
        env["PYTHONPATH"] = os.pathsep.join([SHIM_SITE, *parts])

    def address(self) -> str:
        """The collector socket's address (bound at server start, on the event loop's thread)."""
        if self._stream is None:
            sock = self._ctx.socket(zmq.PULL)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 100)  # per connected kernel
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            self._stream = ZMQStream(sock)
            self._stream.on_recv(self._on_message)
            self._address = f"tcp://127.0.0.1:{port}"
        return self._address

    def token(self, kernel_id: str) -> str:
        """The kernel's token (the same across restarts, until :meth:`discard`)."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            kernel = self._kernels[kernel_id] = _Kernel(kernel_id, self.rate)
            self._by_token[kernel.token.encode()] = kernel
        return kernel.token

    def _on_message(self, frames: list[bytes]) -> None:
        kernel = self._by_token.get(frames[0]) if len(frames) == 2 else None
        if kernel is None:
            self.unknown_messages += 1
            if self.unknown_messages in (1, 10, 100) or self.unknown_messages % 1000 == 0:
                self.trail.log.warning(
                    "audit shim: %d message(s) without a known kernel token dropped",
                    self.unknown_messages,
                )
            return
        kernel_id, bucket = kernel.kernel_id, kernel.bucket
        try:
            payload = json.loads(frames[1])
            events = payload["events"]
            assert isinstance(events, list)
        except Exception:
            self.trail.log.warning("malformed audit shim message from kernel %s", kernel_id)
            return
        owner = self.owners.get(kernel_id)
        kernel.dropped += len(events[500:])  # a well-behaved shim never sends more
        for event in events[:500]:
            if not isinstance(event, dict) or event.get("kind") not in KINDS:
                continue
            if not bucket.take():
                kernel.dropped += int(event.get("count") or 1)
                continue
            count = int(event.get("count") or 1)
            if event["kind"] == "dropped":
                count += kernel.dropped
                kernel.dropped = 0
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
        if kernel.dropped and now - bucket.last_summary >= 1.0:
            bucket.last_summary = now
            self.trail.record(
                "datasource",
                {
                    "kernel_id": kernel_id,
                    "kind": "dropped",
                    "target": "*",
                    "count": kernel.dropped,
                },
                user=owner,
            )
            kernel.dropped = 0

    def discard(self, kernel_id: str) -> None:
        """The kernel is gone: its token is no longer accepted."""
        kernel = self._kernels.pop(kernel_id, None)
        if kernel is not None:
            self._by_token.pop(kernel.token.encode(), None)

    def close(self) -> None:
        for kernel_id in list(self._kernels):
            self.discard(kernel_id)
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close(linger=0)
