"""Two long-lived servers, many alternated blocks: small differences in contents CPU, resolved.

``python -m benchmarks.paired [--op get|put] [--pairs 100] [--ops 200] [--rounds 2] [--settle S]
[--baseline plain|extension] [--baseline-set Section.trait=VALUE ...] [--set ...]
[--baseline-pythonpath DIR] [--aa] [--no-openbao]``

Why beside ``python -m benchmarks``: the main harness starts fresh server processes every round
(a process's memory layout and hash seed shift its speed by a few percent, which one pair of
processes would report as overhead), so a run of 90 pairs takes minutes and still leaves an
interval of +-2-4 % on these VMs: too wide to see a change of 1-2 % to the audited contents path.
Here each of ``--rounds`` pairs of servers (2; pinned to one CPU, the client to the other;
started A first, then B first, since the server started first runs slower: one pair's A/A read
0.985 over 100 pairs) answers alternated blocks of ``--ops`` requests (200), ``--pairs`` blocks
per side in all; each side's CPU per request is read from every thread's schedstat around its
block (as the main harness reads it: its coarse total when a thread exited meanwhile), and the
median of the per-block ratios B/A is reported with its bootstrap interval.

What it compares: side A is plain jupyter-server (``--baseline plain``, the default) or the
extension with ``--baseline-set`` on top; side B the extension with ``--set``. An earlier checkout
of the code runs on side A with ``--baseline-pythonpath`` (a ``git worktree`` of that commit: its
package is imported before the installed one). ``--aa`` runs side A exactly as side B, to read
the harness's own bias before trusting a small difference.

``--op get`` saves the notebook then reads it ``--ops`` times per block (as ``contents_get_small``
does; ``--settle`` waits that long between the save and the reads, for a notebook read some
seconds after its save); ``--op put`` saves it ``--ops`` times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import benchmarks.cases  # noqa: F401 - registers the extension's config hooks
from benchmarks.__main__ import extra_config, server_config_for
from benchmarks.cases.contents import _notebook
from benchmarks.core import BenchEnv, BenchServer, cpu_between, cpu_reading, pin_cpus
from benchmarks.stats import bootstrap_ci, pair_ratios

PATH = "/api/contents/paired.ipynb"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paired", description=__doc__)
    p.add_argument("--op", choices=["get", "put"], default="get")
    p.add_argument("--pairs", type=int, default=100, help="alternated blocks per side")
    p.add_argument("--ops", type=int, default=200, help="requests per block")
    p.add_argument(
        "--rounds", type=int, default=2, help="fresh pairs of servers, start order alternated"
    )
    p.add_argument("--settle", type=float, default=0.0, help="seconds between save and reads")
    p.add_argument("--baseline", choices=["plain", "extension"], default="plain")
    p.add_argument("--baseline-set", action="append", default=[], metavar="S.trait=VALUE")
    p.add_argument("--set", action="append", default=[], metavar="S.trait=VALUE")
    p.add_argument("--baseline-pythonpath", default=None, metavar="DIR")
    p.add_argument("--aa", action="store_true", help="side A configured exactly as side B")
    p.add_argument("--no-openbao", action="store_true", help="no OpenBao dev server")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.pairs < 2 * args.rounds or args.ops < 1:
        p.error("--pairs must be at least twice --rounds, --rounds and --ops at least 1")
    return args


def configs(args: argparse.Namespace, env: BenchEnv) -> tuple[dict[str, Any], dict[str, Any]]:
    """Side A's and side B's server config (as the main harness builds them)."""

    def extension(sets: list[str]) -> dict[str, Any]:
        return server_config_for(
            True, env, extra_config(argparse.Namespace(ext_config=[], set=sets))
        )

    b = extension(args.set)
    if args.aa:
        return json.loads(json.dumps(b)), b
    if args.baseline == "extension":
        return extension(args.baseline_set), b
    return server_config_for(False), b


async def one_request(server: BenchServer, op: str, body: bytes) -> None:
    """The operation measured: a read of the notebook with its content, or a save of ``body``."""
    if op == "get":
        await server.request("GET", PATH + "?content=1")
    else:
        await server.request("PUT", PATH, body)


async def block(server: BenchServer, args: argparse.Namespace, body: bytes) -> float:
    """Server CPU (us) per request over one block."""
    if args.op == "get":
        await server.request("PUT", PATH, body)
        if args.settle:
            await asyncio.sleep(args.settle)
    ps = server.ps
    assert ps is not None, "the server is not started"
    start = cpu_reading(ps)
    for _ in range(args.ops):
        await one_request(server, args.op, body)
    return cpu_between(start, cpu_reading(ps)) / args.ops * 1e6


@contextlib.contextmanager
def bench_env(prefix: str, no_openbao: bool) -> Iterator[BenchEnv]:
    """A fresh work directory for two servers and, unless ``no_openbao``, an OpenBao dev server
    whose address and token go into the extension side's environment; both go at the end. The
    directory (the servers' logs, audit trails and databases) stays when the run failed, as the
    main harness keeps it, and its path is printed."""
    env = BenchEnv(workdir=Path(tempfile.mkdtemp(prefix=prefix)), postgres_dsn=None)
    openbao = None
    try:
        if not no_openbao:
            from jupyter_prod_discovery.demo.openbao import DevServer

            openbao = DevServer().start()
            env.openbao = openbao
            env.extension_env.update(
                {"VAULT_ADDR": openbao.address, "VAULT_TOKEN": openbao.root_token}
            )
        yield env
    except BaseException:
        print(f"work directory kept: {env.workdir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(env.workdir, ignore_errors=True)
    finally:
        if openbao is not None:
            openbao.stop()


def side_a_env(args: argparse.Namespace, env: BenchEnv) -> dict[str, str]:
    """Side A's environment: the extension's when A runs it, an earlier checkout's package
    first on ``PYTHONPATH`` with ``--baseline-pythonpath``."""
    a_env = dict(env.extension_env) if args.aa or args.baseline == "extension" else {}
    if args.baseline_pythonpath:
        a_env["PYTHONPATH"] = str(Path(args.baseline_pythonpath).resolve())
    return a_env


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pin_cpus()
    samples: dict[str, list[float]] = {"A": [], "B": []}
    body = json.dumps({"type": "notebook", "content": _notebook(4_000)}).encode()
    with bench_env("pd-paired-", args.no_openbao) as env:
        a_config, b_config = configs(args, env)
        a_env = side_a_env(args, env)
        for rnd in range(args.rounds):
            # Fresh processes each round, started in turn A first then B first: the server
            # started first runs measurably slower (A/A runs of one pair read 0.985 here).
            seed = {"PYTHONHASHSEED": str(rnd + 1)}
            workdir = env.workdir / f"r{rnd}"
            sides = {
                "A": BenchServer("A", a_config, workdir, env={**a_env, **seed}),
                "B": BenchServer("B", b_config, workdir, env={**env.extension_env, **seed}),
            }
            order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
            try:
                for label in order:
                    await sides[label].start()
                for server in sides.values():  # warm: caches, the chain, the notary's db
                    await server.request("PUT", PATH, body)
                    for _ in range(50):
                        await server.request("GET", PATH + "?content=1")
                for i in range(args.pairs // args.rounds):
                    for label in ("A", "B") if i % 2 == 0 else ("B", "A"):
                        samples[label].append(await block(sides[label], args, body))
            finally:
                for server in sides.values():
                    await server.stop()
    ratios = pair_ratios(samples["A"], samples["B"])
    lo, hi = bootstrap_ci(ratios)
    return {
        "op": args.op,
        "pairs": len(ratios),
        "ops": args.ops,
        "a_us": statistics.median(samples["A"]),
        "b_us": statistics.median(samples["B"]),
        "diff_us": statistics.median(
            b - a for a, b in zip(samples["A"], samples["B"], strict=True)
        ),
        "ratio": statistics.median(ratios),
        "ci": (lo, hi),
    }


def main(argv: list[str] | None = None) -> None:
    r = asyncio.run(run(parse(argv)))
    print(
        f"{r['op']}: A {r['a_us']:.1f} us, B {r['b_us']:.1f} us per request (medians); "
        f"B/A {r['ratio']:.3f} [{r['ci'][0]:.3f}-{r['ci'][1]:.3f}] over {r['pairs']} pairs of "
        f"{r['ops']}; B-A {r['diff_us']:+.1f} us"
    )


if __name__ == "__main__":
    main()
