"""CPU the trusted service's ledger spends per shipped event, without HTTP or the event loop.

``python -m benchmarks.ledger_ingest [--servers 8] [--events 5000] [--batch 200] [--profile]
[--dsn postgresql://postgres@127.0.0.1:5432/postgres]``

What ``service_throughput`` measures end to end (8 servers, HTTP, a busy 2-core machine) moves
with the machine's load; this isolates the ledger's own share, in one thread: each round takes
one batch from every server, parses it as ``AuditLedger.append`` does (``_parse``: JSON, the
checks, the server's seal) and commits it as the ledger's writer does (``_commit_all``: the
stream's MAC checked with its session key, sealed into the chain, one COPY and one signed
checkpoint in a throw-away PostgreSQL database). Reported: this thread's CPU per event for
each part (the PostgreSQL backend's CPU is not counted). ``--profile`` prints a cProfile of
both parts (CPU time) by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

from benchmarks.service_throughput import body
from benchmarks.standalone_service import DEFAULT_DSN
from jupyter_prod_discovery.pytest_plugin import throwaway_database


def run(dsn: str, servers: int, events: int, batch: int, profile: bool) -> dict[str, object]:
    from jupyter_prod_discovery.audit.chain import Chain
    from jupyter_prod_discovery.service.ledger import AuditLedger, Principal, _Request
    from jupyter_prod_discovery.service.signing import KeyFileSigner

    with tempfile.TemporaryDirectory() as tmp:
        ledger = AuditLedger(KeyFileSigner(key_file=str(Path(tmp) / "key.pem")), dsn=dsn)
        ledger.open()
        streams = []
        for i in range(servers):
            who = Principal(f"user{i}", f"srv{i}", (), "peer-uid")
            key = ledger._store_session_key(who.username, who.server)
            ledger._session_keys[(who.username, who.server)] = key
            chain = Chain(key)  # sealed as the server's trail does, with the stream's key
            lines = [chain.seal(body(s, who.username)) for s in range(1, events + 1)]
            streams.append((who, lines))
        prof = cProfile.Profile(time.thread_time_ns, 1e-9) if profile else None
        parse_s = commit_s = 0.0
        total = 0
        for at in range(0, events, batch):
            t0 = time.thread_time()
            if prof is not None:
                prof.enable()
            taken = [
                _Request(
                    who, who.server, [ledger._parse(ln) for ln in lines[at : at + batch]], None
                )
                for who, lines in streams
            ]
            t1 = time.thread_time()
            ledger._commit_all(taken)
            if prof is not None:
                prof.disable()
            parse_s += t1 - t0
            commit_s += time.thread_time() - t1
            total += sum(len(r.events) for r in taken)
        ledger._conn.close()
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return {
        "events": total,
        "parse_us_per_event": round(parse_s / total * 1e6, 1),
        "commit_us_per_event": round(commit_s / total * 1e6, 1),
        "committed": ledger.committed,
        "alerts": ledger.alerts,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--servers", type=int, default=8)
    p.add_argument("--events", type=int, default=5000, help="events per server")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--dsn", default=DEFAULT_DSN)
    args = p.parse_args()
    with throwaway_database(args.dsn, prefix="pd_bench_") as dsn:
        result = run(dsn, args.servers, args.events, args.batch, args.profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
