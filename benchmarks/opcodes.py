"""Bytecodes per request, plain against the extension: where an overhead is, exactly.

``python -m benchmarks.opcodes [--op get|put] [--requests 200] [--top 40] [--baseline
plain|extension] [--baseline-set S.trait=V ...] [--set S.trait=V ...] [--baseline-pythonpath
DIR] [--no-openbao] [--json FILE]``

Two servers as ``benchmarks.paired`` starts them (side A plain or a baseline, side B the
extension), each with ``opcode_site`` on its ``PYTHONPATH``; after a warm-up the event loop's
thread counts every bytecode it runs (``sys.settrace`` with ``f_trace_opcodes``) over
``--requests`` requests, per function. Printed: bytecodes and Python calls per request on each
side, their ratio, and the functions whose count differs most.

Why beside CPU time, callgrind and py-spy: CPU ratios of one case read 1.04 to 1.08 within a
quarter of an hour on these VMs, so a change of 1 % needs many runs; callgrind is exact but
counts C instructions, where every Python function is ``_PyEval_EvalFrameDefault``, and counts
hashing without SHA-NI (on 6 December 2026 the sha256 of the notebook read made 363k of a GET's
600k extra instructions, a few microseconds natively); py-spy names Python functions but
samples wall time, which it turns into CPU only by proportion. Bytecodes are exact and
repeatable (the same run twice differs by a few per request: timers), name the function, and
follow CPU on this code (6 December 2026: GET 1.044, PUT 1.077 in bytecodes, against CPU ratios
of 1.04-1.08 and 1.08-1.10). What they do not see: C work (hashing, JSON encoding, system
calls), worker threads, and how cold the memory is that a bytecode touches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchmarks.cases  # noqa: F401 - registers the extension's config hooks
from benchmarks.cases.contents import _notebook
from benchmarks.core import BenchServer
from benchmarks.paired import PATH, bench_env, configs, one_request, side_a_env

SITE = Path(__file__).with_name("opcode_site")


@dataclass
class Counts:
    """Bytecodes and calls of one side, by function (``name dir/file.py``).

    Without the line number: a function moved by an edit stays one row when two checkouts are
    compared; functions of one name in one file (``<genexpr>``, ``<lambda>``) share their row.
    """

    ops: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def load(rows: list[list[Any]]) -> Counts:
    """The site module's dump, keyed by function (the last two path parts of its file)."""
    out = Counts()
    for filename, _line, name, ops, calls in rows:
        key = f"{name} {'/'.join(str(filename).split('/')[-2:])}"
        out.ops[key] += int(ops)
        out.calls[key] += int(calls)
    return out


def report(a: Counts, b: Counts, requests: int, top: int) -> str:
    """Per request: the totals of both sides, then the largest differences B - A."""
    n = float(requests)
    ta, tb = a.total_ops / n, b.total_ops / n
    lines = [
        f"bytecodes per request: A {ta:,.0f}, B {tb:,.0f}, B-A {tb - ta:+,.0f} "
        f"(B/A {tb / ta:.3f}); Python calls per request A {a.total_calls / n:,.0f}, "
        f"B {b.total_calls / n:,.0f}"
    ]
    keys = set(a.ops) | set(b.ops) | set(a.calls) | set(b.calls)
    ranked = sorted(keys, key=lambda k: (-abs(b.ops[k] - a.ops[k]), k))[:top]
    lines.append(f"{'B-A':>9} {'B':>9} {'A':>9} {'calls B-A':>9}  function")
    for k in ranked:
        lines.append(
            f"{(b.ops[k] - a.ops[k]) / n:+9.1f} {b.ops[k] / n:9.1f} {a.ops[k] / n:9.1f} "
            f"{(b.calls[k] - a.calls[k]) / n:+9.1f}  {k}"
        )
    return "\n".join(lines)


async def _count(server: BenchServer, op: str, requests: int, body: bytes, out: Path) -> Counts:
    """Warm the server, then count ``requests`` requests of ``op`` on its event loop."""
    await server.request("PUT", PATH, body)
    for _ in range(50):
        await one_request(server, op, body)
    assert server.proc is not None
    pid = server.proc.pid
    dump = Path(f"{out}.{pid}.json")
    os.kill(pid, signal.SIGUSR2)
    await asyncio.sleep(0.2)  # the handler runs at the loop's next bytecode
    for _ in range(requests):
        await one_request(server, op, body)
    os.kill(pid, signal.SIGUSR2)
    for _ in range(200):
        if dump.exists():
            return load(json.loads(dump.read_text()))
        await asyncio.sleep(0.05)
    raise RuntimeError(f"server {pid} wrote no bytecode counts to {dump}")


async def run(args: argparse.Namespace) -> tuple[Counts, Counts]:
    body = json.dumps({"type": "notebook", "content": _notebook(4_000)}).encode()
    counts: dict[str, Counts] = {}
    with bench_env("pd-opcodes-", args.no_openbao) as env:
        a_config, b_config = configs(args, env)
        out = env.workdir / "counts"
        site = {"PYTHONPATH": str(SITE), "PD_OPCODES_OUT": str(out), "PYTHONHASHSEED": "1"}
        a_env = side_a_env(args, env)
        baseline = a_env.get("PYTHONPATH")  # an earlier checkout, imported after the site hook
        a_env.update(site)
        if baseline:
            a_env["PYTHONPATH"] += os.pathsep + baseline
        sides = {
            "A": BenchServer("A", a_config, env.workdir, env=a_env),
            "B": BenchServer("B", b_config, env.workdir, env={**env.extension_env, **site}),
        }
        for label, server in sides.items():
            await server.start()
            try:
                counts[label] = await _count(server, args.op, args.requests, body, out)
            finally:
                await server.stop()
    return counts["A"], counts["B"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.opcodes", description=__doc__)
    p.add_argument("--op", choices=["get", "put"], default="get")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--baseline", choices=["plain", "extension"], default="plain")
    p.add_argument("--baseline-set", action="append", default=[], metavar="S.trait=VALUE")
    p.add_argument("--set", action="append", default=[], metavar="S.trait=VALUE")
    p.add_argument("--baseline-pythonpath", default=None, metavar="DIR")
    p.add_argument("--no-openbao", action="store_true", help="no OpenBao dev server")
    p.add_argument("--json", type=Path, default=None, help="also write both sides' counts here")
    p.set_defaults(aa=False)  # configs() reads it: side A is never B's copy here
    args = p.parse_args(argv)
    if args.requests < 1:
        p.error("--requests must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    a, b = asyncio.run(run(args))
    print(report(a, b, args.requests, args.top))
    if args.json:
        data = {
            side: {"ops": dict(c.ops), "calls": dict(c.calls)} for side, c in (("A", a), ("B", b))
        }
        args.json.write_text(json.dumps({"requests": args.requests, "op": args.op, **data}))


if __name__ == "__main__":
    main()
