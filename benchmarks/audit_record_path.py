"""CPU a server pays per audited record it waits for, by the way the record reaches its store.

``python -m benchmarks.audit_record_path [--records 200] [--blocks 10]
[--dsn postgresql://postgres@127.0.0.1:5432/postgres]``

One process plays the server: three ``AuditTrail`` objects on one event loop, each awaiting
``record_acknowledged`` for a typical contents record, as an audited contents request does:

- ``channel``: a client of a real ``jupyter prod-discovery service`` (PostgreSQL ledger in a
  throw-away database), records sent over the audit channel;
- ``http``: the same service, ``ServiceSink.channel = False`` (the writer thread ships each
  record with one HTTP request, as before the channel);
- ``local``: a local JSONL file (inline, fsync deferred): the topology without a service.

Blocks of ``--records`` records alternate between the three, ``--blocks`` times each; the CPU
of this whole process (every thread: ``time.process_time``) per record is reported as the median
over blocks and its range. The service's own CPU is not counted (it is not the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from traitlets.config import Config

from benchmarks.standalone_service import DEFAULT_DSN, ledger_service

DATA = {
    "operation": "get",
    "path": "projects/q3/small.ipynb",
    "status": "ok",
    "content_type": "notebook",
    "size": 4096,
    "sha256": "ab" * 32,
}


def trail_for(kind: str, tmp: Path, url: str) -> Any:
    from jupyter_prod_discovery.audit.sinks import JSONLSink, ServiceSink
    from jupyter_prod_discovery.audit.trail import AuditTrail

    sections: dict[str, Any] = {
        "AuditTrail": {
            "mac_key": "k" * 32,
            "spool_dir": str(tmp / kind / "spool"),
            "server_id": f"bench-{kind}",
            "sink_classes": [JSONLSink if kind == "local" else ServiceSink],
        },
        "JSONLSink": {"path": str(tmp / kind / "audit.jsonl")},
        "ServiceSink": {"url": url, "channel": kind == "channel"},
    }
    return AuditTrail(config=Config(sections))


async def run(url: str, tmp: Path, records: int, blocks: int) -> dict[str, Any]:
    trails = {kind: trail_for(kind, tmp, url) for kind in ("channel", "http", "local")}
    for trail in trails.values():
        trail.start()
    cpu: dict[str, list[float]] = {kind: [] for kind in trails}
    try:
        for trail in trails.values():  # warm: connections open, caches filled
            for _ in range(50):
                assert await trail.record_acknowledged("contents", DATA, user="bench")
        for _ in range(blocks):
            for kind, trail in trails.items():
                t0 = time.process_time()
                for _ in range(records):
                    assert await trail.record_acknowledged("contents", DATA, user="bench")
                cpu[kind].append((time.process_time() - t0) / records)
    finally:
        for trail in trails.values():
            trail.stop()
    out: dict[str, Any] = {}
    for kind, samples in cpu.items():
        us = sorted(s * 1e6 for s in samples)
        out[kind] = {
            "cpu_us_per_record_median": round(statistics.median(us), 1),
            "range": [round(us[0], 1), round(us[-1], 1)],
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=200)
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--dsn", default=DEFAULT_DSN)
    args = p.parse_args()
    with ledger_service(args.dsn) as (svc, tmp):
        result = asyncio.run(run(svc.url, tmp, args.records, args.blocks))
    print(json.dumps({"records_per_block": args.records, **result}, indent=1))


if __name__ == "__main__":
    main()
