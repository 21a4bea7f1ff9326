"""Raw chained-append throughput of the audit trail, on one core.

``python -m benchmarks.audit_append [--records N]``

1. chain only: seal (canonical JSON, sha256, HMAC-SHA256) of N typical contents records;
2. chain + JSONL sink: the same, written in batches of 1,000 with one fsync per batch (the
   writer thread's loop without the queue);
3. full trail: ``AuditTrail.record`` from the caller's thread until every record is acknowledged
   (schema validation and redaction in the writer thread included).

Goal (issue 4): at least 50,000 chained appends/s on one core for (2).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from traitlets.config import Config

from jupyter_prod_discovery.audit.chain import Chain, verify
from jupyter_prod_discovery.audit.sinks import JSONLSink
from jupyter_prod_discovery.audit.trail import AuditTrail

KEY = b"benchmark-key-0123456789abcdef"


def body(i: int) -> dict:
    return {
        "ts": "2026-11-21T06:00:00.000000Z",
        "event_id": f"{i:032x}",
        "kind": "contents",
        "schema": "https://events.prod-discovery.dev/contents/v1",
        "version": 1,
        "data": {
            "operation": "get",
            "path": f"projects/q3/data-{i % 100}.csv",
            "status": "ok",
            "size": 65536,
            "sha256": "ab" * 32,
            "user": {"username": "ann", "name": "Ann Analyst"},
            "server_id": "host:1234",
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=200_000)
    args = p.parse_args()
    n = args.records
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    bodies = [body(i) for i in range(n)]
    results = {}

    chain = Chain(KEY)
    t0 = time.process_time()
    for b in bodies:
        chain.seal(dict(b))
    results["chain_only_per_s"] = n / (time.process_time() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        sink = JSONLSink(
            path=str(Path(tmp) / "audit.jsonl"), fsync=True, fsync_interval=0, max_bytes=0
        )
        sink.open()
        chain = Chain(KEY)
        w0, t0 = time.perf_counter(), time.process_time()
        for i in range(0, n, 1000):
            sink.write([chain.seal(dict(b)) for b in bodies[i : i + 1000]])
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        sink.close()
        results["chain_jsonl_fsync_per_s_cpu"] = n / cpu
        results["chain_jsonl_fsync_per_s_wall"] = n / wall
        v0 = time.perf_counter()
        assert verify(sink.read_lines(), KEY, [chain.checkpoint()]).ok
        results["verify_per_s"] = n / (time.perf_counter() - v0)

        m = min(n, 20_000)
        config = Config(
            {
                "AuditTrail": {"mac_key": KEY.decode(), "spool_dir": f"{tmp}/spool"},
                "JSONLSink": {"path": f"{tmp}/trail/audit.jsonl"},
            }
        )
        trail = AuditTrail(config=config)
        trail.start()
        w0 = time.perf_counter()
        for i in range(m):
            d = body(i)["data"]
            trail.record(
                "contents",
                {k: v for k, v in d.items() if k not in ("user", "server_id")},
                user="ann",
            )
        caller = time.perf_counter() - w0
        assert trail.flush(300)
        results["trail_record_caller_per_s"] = m / caller
        results["trail_end_to_end_per_s"] = m / (time.perf_counter() - w0)
        trail.stop()
    print(json.dumps({k: round(v) for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
