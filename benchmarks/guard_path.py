"""The live guard's own CPU per kernel message, without a server around it.

``python -m benchmarks.guard_path [--messages 20000] [--blocks 7]``

One process, one ``GuardedWebsocketConnection`` whose base class's
``handle_outgoing_message`` (the websocket write) is replaced by a no-op, so what is timed is
exactly what the guard adds to each message a server forwards: the type read from the header,
the raw gate, a decode and a scan where the gate does not clear the message. Each message is
a fresh copy of its packed parts (as ZMQ's receive leaves them: in the cache), timed with the
thread's CPU clock (``time.thread_time``, which costs ~0.5 us per message itself). Kinds:

- ``chunk_100kb``: 100 KB of ``'x' * 99 + '\\n'`` per message (``output_10mb``'s chunk);
- ``print_number``: ``print(i)`` (``prints_20k``'s messages);
- ``print_words``: ``print(f"step {i} loss 0.{i}")``: digits and words, scanned in full;
- ``print_clean``: a line without digit or capital, cleared by the raw gate.

Reported per kind: the median over ``--blocks`` blocks of the CPU per message, and the range.
The A/B server benchmark (``python -m benchmarks --only prints_20k,output_10mb``) is the
measure of record; this one is steadier (no second process, no kernel, no websocket) and says
where a change to the hot path lands, to a fraction of a microsecond.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace
from typing import Any

from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from jupyter_prod_discovery.credentials.secrets import SecretRegistry
from jupyter_prod_discovery.guard.connection import GuardedWebsocketConnection
from jupyter_prod_discovery.guard.live import PIIGuard

KINDS = ("chunk_100kb", "print_number", "print_words", "print_clean")


class _Connection(GuardedWebsocketConnection):
    """The guarded connection with only what the outgoing path reads."""

    def __init__(self, guard: PIIGuard) -> None:  # no websocket, no kernel manager
        self._pd_app = SimpleNamespace(pii_guard=guard, audit=None)
        self.__dict__["_pd_kid"] = "k1"
        self.session = Session(key=b"bench")


def _texts(kind: str, n: int) -> list[str]:
    if kind == "chunk_100kb":
        return [("x" * 99 + "\n") * 1000] * n
    if kind == "print_number":
        return [f"{i}\n" for i in range(n)]
    if kind == "print_words":
        return [f"step {i} loss 0.{i}\n" for i in range(n)]
    return ["training step done\n"] * n


def measure(kind: str, messages: int, blocks: int) -> list[float]:
    """CPU seconds per message, one figure per block."""
    registry = SecretRegistry()
    # Two live secrets, as a kernel with credentials has: one with a digit, one without.
    registry.set("k1", ["Tr0ub4dor&3xQ-bench-value", "hvs.CAESIabcdefghijk"])
    conn = _Connection(PIIGuard(secrets=registry))
    session = Session(key=b"bench")
    parent = session.msg_header("execute_request")
    stream = SimpleNamespace(channel="iopub")
    n = messages if kind != "chunk_100kb" else max(messages // 60, 50)
    packed = [
        session.serialize(session.msg("stream", {"name": "stdout", "text": t}, parent=parent))
        for t in _texts(kind, n)
    ]
    clock = time.thread_time
    out: list[float] = []
    for _ in range(blocks):
        total = 0.0
        for parts in packed:
            fresh = [bytes(bytearray(p)) for p in parts]
            t0 = clock()
            conn.handle_outgoing_message(stream, fresh)
            total += clock() - t0
        out.append(total / n)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--only", default=",".join(KINDS))
    args = parser.parse_args(argv)
    sent: list[Any] = []
    # The websocket write is the server's, not the guard's: replaced for this process only.
    ZMQChannelsWebsocketConnection.handle_outgoing_message = (  # type: ignore[method-assign]
        lambda self, stream, msg: sent.append(None)
    )
    for kind in args.only.split(","):
        per = [x * 1e6 for x in measure(kind, args.messages, args.blocks)]
        print(
            f"{kind:14} {statistics.median(per):8.2f} us per message "
            f"(range {min(per):.2f}-{max(per):.2f}, {args.blocks} blocks)"
        )
        sent.clear()


if __name__ == "__main__":
    main()
