"""Audited events per second the trusted service seals and stores, from 8 servers at once.

``python -m benchmarks.service_throughput [--servers 8] [--events 20000] [--batch 200]
[--dsn postgresql://postgres@127.0.0.1:5432/postgres]``

A real ``jupyter prod-discovery service`` (own process, unix socket, PostgreSQL ledger in a
throw-away database) receives, from N client processes each acting as one server, the chained
lines a server's audit writer ships (``ServiceClient.ship``, batches of ``--batch`` events, one
request in flight per server, as the writer thread does). Reported: events/s over the wall time
(all servers started together, until the last one's last batch is acknowledged), the service's
CPU seconds per 1,000 events, and whether the ledger then verifies with the public key.

Goal (issue 15): >= 20,000 audited events/s from 8 concurrent servers on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
import uuid
from pathlib import Path

from benchmarks.standalone_service import DEFAULT_DSN, ledger_service


def body(seq: int, user: str) -> dict[str, object]:
    """A typical contents event as a server's trail records it."""
    return {
        "kind": "contents",
        "schema": "https://events.prod-discovery.dev/contents/v1",
        "event_id": uuid.uuid4().hex,
        "ts": "2026-12-05T10:00:00.000000Z",
        "version": 1,
        "data": {
            "action": "get",
            "path": f"projects/q3/data-{seq % 100}.csv",
            "status": "ok",
            "size": 65536,
            "sha256": "ab" * 32,
            "user": {"username": user},
            "server_id": f"{user}-server",
        },
    }


def server(url: str, index: int, events: int, batch: int, start: mp.Event, out: mp.Queue) -> None:
    from jupyter_prod_discovery.audit.chain import Chain
    from jupyter_prod_discovery.service.client import ServiceClient

    client = ServiceClient(url, f"bench-server-{index}")
    # Sealed as a server's trail does, with the key the service issued for this stream, so
    # the service checks every record as it does a real server's.
    chain = Chain(client.session_key())
    lines = [chain.seal(body(s, f"user{index}")) for s in range(1, events + 1)]
    batches = [lines[i : i + batch] for i in range(0, events, batch)]
    client.stream_position()  # connection warm
    start.wait()
    t0 = time.perf_counter()
    for b in batches:
        client.ship(b)
    out.put((index, time.perf_counter(), time.perf_counter() - t0))
    client.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--servers", type=int, default=8)
    p.add_argument("--events", type=int, default=20000, help="events per server")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--dsn", default=DEFAULT_DSN)
    args = p.parse_args()
    from jupyter_prod_discovery.audit.signed_chain import verify_signed
    from jupyter_prod_discovery.service.client import ServiceClient
    from jupyter_prod_discovery.service.ledger import read_checkpoints, read_lines
    from jupyter_prod_discovery.service.signing import PublicKeys

    with ledger_service(args.dsn) as (svc, _):
        start, out = mp.Event(), mp.Queue()
        procs = [
            mp.Process(target=server, args=(svc.url, i, args.events, args.batch, start, out))
            for i in range(args.servers)
        ]
        for proc in procs:
            proc.start()
        time.sleep(2.0)  # every client has built its batches and connected
        cpu0 = cpu_seconds(svc.proc.pid)
        t0 = time.perf_counter()
        start.set()
        ends = [out.get(timeout=600) for _ in procs]
        wall = max(end for _, end, _ in ends) - t0
        cpu = cpu_seconds(svc.proc.pid) - cpu0
        for proc in procs:
            proc.join()
        total = args.servers * args.events
        probe = ServiceClient(svc.url, "bench-verify")
        keys = PublicKeys([probe.public_key()["public_key_pem"]])
        result = verify_signed(
            read_lines(svc.dsn), read_checkpoints(svc.dsn), keys, chain="main", head=probe.head()
        )
        probe.close()
        print(
            json.dumps(
                {
                    "servers": args.servers,
                    "events": total,
                    "batch": args.batch,
                    "wall_s": round(wall, 2),
                    "events_per_s": round(total / wall),
                    "service_cpu_s_per_1000": round(1000 * cpu / total, 3),
                    "verify": result.summary(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
