"""``python -m benchmarks``: run the registered cases A/B and report server CPU per operation.

Two real ``jupyter server`` subprocesses on loopback: "plain" (this extension disabled) and
"extension" (enabled; by default against a fresh OpenBao dev server so the credential guard is on).
IOPub rate limits are off on both, otherwise the output cases would measure the limiter. With
--service the extension side is a client of a real trusted service, whose CPU is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .cases import load_all
from .core import (
    CASES,
    CONFIG_HOOKS,
    BenchEnv,
    BenchServer,
    Case,
    Measure,
    Sample,
    merge_config,
    pin_cpus,
)
from .service import SERVICE_SECTIONS, BenchService
from .stats import bootstrap_ci, pair_ratios

EXTENSION = "jupyter_prod_discovery"
RESULTS = Path(__file__).parent / "results" / "latest.json"

BASE_CONFIG: dict[str, dict[str, Any]] = {
    # Rate limits off: the default 1,000 msg/s and 1 MB/s would drop output and cap the cases.
    "ServerApp": {"iopub_msg_rate_limit": 0.0, "iopub_data_rate_limit": 0.0},
    "ZMQChannelsWebsocketConnection": {
        "iopub_msg_rate_limit": 0.0,
        "iopub_data_rate_limit": 0.0,
        "limit_rate": False,
    },
    "MappingKernelManager": {"cull_idle_timeout": 0},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", action="append", default=[], help="case name (repeatable, or a,b)")
    p.add_argument("--repeat", type=int, default=3, help="measured runs per side (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs per side (default 1)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fresh pairs of server processes, each running every case --repeat times "
        "(default 1); the medians pool all rounds",
    )
    p.add_argument("--list", action="store_true", help="list the registered cases and exit")
    p.add_argument(
        "--no-openbao",
        action="store_true",
        help="do not start an OpenBao dev server for the extension side (Vault not configured)",
    )
    p.add_argument(
        "--ext-config",
        action="append",
        default=[],
        metavar="FILE.json",
        help="extra traitlets config {Section: {trait: value}} for the extension side",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="Section.trait=VALUE",
        help="one extra trait for the extension side; VALUE is JSON, or else a string",
    )
    p.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the servers' temp dirs and logs (always kept when a case failed)",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="run both servers under valgrind's callgrind and report instructions per op too "
        "(exact and independent of machine noise, but ~50x slower; needs valgrind)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile each server's event-loop thread with cProfile inside the measured blocks "
        "and write DIR/<side>.r<round>.prof (one case at a time: stats accumulate per process); "
        "also prints CPU per op by thread name. Compare the sides with "
        "'python -m benchmarks.profile_diff DIR'. CPU figures of such a run include the "
        "profiler's cost",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the client and the servers to separate CPUs",
    )
    p.add_argument(
        "--aa",
        action="store_true",
        help="A/A check of the harness: the 'extension' side runs without the extension too, "
        "so every ratio should be 1 within its interval (a bias here is the harness's)",
    )
    p.add_argument(
        "--service",
        nargs="?",
        const="round",
        choices=["round", "run"],
        help="the extension side is a client of a real trusted service (jupyter prod-discovery "
        "service, its own process, PostgreSQL ledger in a throw-away database, least-privilege "
        "Vault token): credentials issued and audit records sealed there. Started once per "
        "round (default) or once per run (--service=run). The service's CPU per op is reported "
        "and added to the extension side's in a second ratio",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = p.parse_args(argv)
    if args.service and (args.aa or args.no_openbao):
        p.error("--service needs OpenBao and the extension (not with --aa or --no-openbao)")
    return args


def extra_config(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {}
    for path in args.ext_config:
        merge_config(config, json.loads(Path(path).read_text()))
    for item in args.set:
        key, sep, raw = item.partition("=")
        section, dot, trait = key.rpartition(".")
        if not sep or not dot:
            raise SystemExit(f"--set expects Section.trait=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        config.setdefault(section, {})[trait] = value
    return config


def server_config_for(
    extension: bool,
    env: BenchEnv | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """A side's server config: the base, the extension on or off, and for the extension the
    capabilities' hooks (which need ``env``) and ``extra`` on top."""
    config: dict[str, dict[str, Any]] = json.loads(json.dumps(BASE_CONFIG))
    merge_config(config, {"ServerApp": {"jpserver_extensions": {EXTENSION: extension}}})
    if extension:
        assert env is not None
        for hook in CONFIG_HOOKS:
            merge_config(config, hook(env))
        merge_config(config, extra or {})
    return config


def select(args: argparse.Namespace) -> list[Case]:
    names = [n for item in args.only for n in item.split(",") if n]
    if not names:
        return [c for c in CASES.values() if c.default]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {sorted(CASES)}")
    return [CASES[n] for n in names]


def postgres_dsn() -> str | None:
    dsn = os.environ.get("PROD_DISCOVERY_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("select 1")
    except Exception:
        return None
    return dsn


#: Runs that lost output are retried this many times: plain jupyter-server drops iopub messages
#: past its ZMQ queue limit under bursts, and a run without every message measures nothing.
DROP_RETRIES = 3
DROPPED: dict[str, int] = {}
#: --profile: case/side -> thread name -> CPU per op of each run.
THREADS: dict[str, dict[str, list[float]]] = {}


async def run_once(c: Case, server: BenchServer) -> Sample:
    assert server.ps is not None
    for attempt in range(DROP_RETRIES + 1):
        measure = Measure(
            server.ps,
            server.callgrind_dir,
            profile=server.profile is not None,
            companions=server.companions,
        )
        try:
            await c.fn(server, measure)
        except (TimeoutError, RuntimeError) as exc:
            dropped = "dropped" in str(exc)
            if not dropped or attempt == DROP_RETRIES:
                raise RuntimeError(f"{server.label} server: {exc}") from None
            key = f"{c.name}/{server.label}"
            DROPPED[key] = DROPPED.get(key, 0) + 1
            print(f"  {server.label} server lost output, run again", file=sys.stderr)
            continue
        break
    if measure.sample is None:
        raise RuntimeError(f"case {c.name} never entered its measure() block")
    for name, cpu in measure.threads.items():
        THREADS.setdefault(f"{c.name}/{server.label}", {}).setdefault(name, []).append(cpu)
    for companion, split in measure.companion_threads.items():
        for name, cpu in split.items():
            key = f"{c.name}/{server.label}: {companion}"
            THREADS.setdefault(key, {}).setdefault(name, []).append(cpu)
    return measure.sample


#: --service: the companions whose CPU is added to the extension side's in the second ratio (the
#: service: the work that moved there), and in a third (the ledger's PostgreSQL backend too).
WITH_SERVICE = ("service",)
WITH_SERVICE_DB = ("service", "ledger-db")


def summarize(samples: list[Sample]) -> dict[str, Any]:
    cpu = [s.cpu for s in samples]
    wall = [s.wall for s in samples]
    instr = [s.instructions for s in samples if s.instructions is not None]
    loop = [s.loop_cpu for s in samples if s.loop_cpu is not None]
    out: dict[str, Any] = {
        **({"instructions_median": statistics.median(instr)} if instr else {}),
        **({"loop_cpu_median_s": statistics.median(loop)} if loop else {}),
        "cpu_median_s": statistics.median(cpu),
        "cpu_min_s": min(cpu),
        "wall_median_s": statistics.median(wall),
        "cpu_samples_s": cpu,
        "wall_samples_s": wall,
        "ops_per_run": samples[0].ops,
    }
    names = sorted({n for s in samples for n in s.companions})
    if names:
        companions: dict[str, Any] = {}
        for name in names:
            values = [s.companions.get(name, 0.0) for s in samples]
            loops = [s.companion_loops[name] for s in samples if name in s.companion_loops]
            companions[name] = {
                "cpu_median_s": statistics.median(values),
                "cpu_samples_s": values,
                **({"loop_cpu_median_s": statistics.median(loops)} if loops else {}),
            }
        out["companions"] = companions
        for key, counted in (("with_service", WITH_SERVICE), ("with_service_db", WITH_SERVICE_DB)):
            total = [s.cpu + sum(s.companions.get(n, 0.0) for n in counted) for s in samples]
            out[key] = {"cpu_median_s": statistics.median(total), "cpu_samples_s": total}
    return out


def pair_summary(plain: list[float], other: list[float]) -> dict[str, Any]:
    """Median and 95 % bootstrap interval of the side-by-side ratios ``other / plain``."""
    pairs = pair_ratios(plain, other)
    if not pairs:
        return {}
    return {
        "pairs": len(pairs),
        "median": statistics.median(pairs),
        "ci95": bootstrap_ci(pairs),
    }


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def table(results: dict[str, Any]) -> str:
    head = (
        f"{'case':<20} {'unit':<7} {'plain CPU':>11} {'ext CPU':>11} {'CPU ratio':>9}"
        f" {'plain wall':>11} {'ext wall':>11} {'wall ratio':>10}"
    )
    lines = [head, "-" * len(head)]
    for name, r in results["cases"].items():
        if "error" in r:
            lines.append(f"{name:<20} ERROR: {r['error']}")
            continue
        p, e = r["plain"], r["extension"]
        cr = r["cpu_ratio"]
        wr = r["wall_ratio"]
        lines.append(
            f"{name:<20} {r['unit']:<7} {fmt_time(p['cpu_median_s']):>11}"
            f" {fmt_time(e['cpu_median_s']):>11} {(f'{cr:.2f}' if cr else 'n/a'):>9}"
            f" {fmt_time(p['wall_median_s']):>11} {fmt_time(e['wall_median_s']):>11}"
            f" {(f'{wr:.2f}' if wr else 'n/a'):>10}"
        )
    for name, r in results["cases"].items():
        if "cpu_pair_ratio_ci95" in r:
            lo, hi = r["cpu_pair_ratio_ci95"]
            lines.append(
                f"{name:<20} CPU ratio of side-by-side pairs: median {r['cpu_pair_ratio']:.3f}"
                f" of {r['cpu_pairs']}, 95% CI {lo:.3f}-{hi:.3f}"
            )
    for name, r in results["cases"].items():
        if "instructions_ratio" in r:
            p, e = r["plain"]["instructions_median"], r["extension"]["instructions_median"]
            lines.append(
                f"{name:<20} instructions per op: plain {p:,.0f}, extension {e:,.0f}, "
                f"ratio {r['instructions_ratio']:.3f}"
            )
    for name, r in results["cases"].items():
        p, e = r.get("plain", {}), r.get("extension", {})
        if "loop_cpu_median_s" in p and "loop_cpu_median_s" in e:
            pl, el = p["loop_cpu_median_s"], e["loop_cpu_median_s"]
            lines.append(
                f"{name:<20} CPU split per op: event loop {fmt_time(pl)} -> {fmt_time(el)}, "
                f"other threads {fmt_time(p['cpu_median_s'] - pl)} -> "
                f"{fmt_time(e['cpu_median_s'] - el)}"
            )
    lines.append("(medians per op of server-process CPU and wall time; ratio = extension / plain)")
    if results.get("service"):
        lines += ["", service_table(results)]
    return "\n".join(lines)


def _ratio_ci(r: dict[str, Any]) -> str:
    if not r:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['median']:.3f} [{lo:.3f}-{hi:.3f}]"


def service_table(results: dict[str, Any]) -> str:
    """--service: the service's CPU per op, and the extension side with it, against plain."""
    head = (
        f"{'case':<20} {'plain CPU':>10} {'ext CPU':>10} {'svc CPU':>10} {'svc loop':>10}"
        f" {'ledger db':>10} {'ext+svc':>10}  {'ext/plain pairs [95% CI]':<25}"
        f" {'(ext+svc)/plain pairs':<25} {'(ext+svc+db)/plain':<25}"
    )
    lines = [head, "-" * len(head)]
    for name, r in results["cases"].items():
        if "error" in r:
            continue
        p, e = r["plain"], r["extension"]
        comp = e.get("companions", {})
        svc, db = comp.get("service", {}), comp.get("ledger-db", {})
        svc_loop = svc.get("loop_cpu_median_s")

        def t(x: float | None) -> str:
            return "n/a" if x is None else fmt_time(x)

        lines.append(
            f"{name:<20} {t(p['cpu_median_s']):>10} {t(e['cpu_median_s']):>10}"
            f" {t(svc.get('cpu_median_s')):>10} {t(svc_loop):>10} {t(db.get('cpu_median_s')):>10}"
            f" {t(e.get('with_service', {}).get('cpu_median_s')):>10}"
            f"  {_ratio_ci(r.get('cpu_pair', {})):<25}"
            f" {_ratio_ci(r.get('cpu_with_service_pair', {})):<25}"
            f" {_ratio_ci(r.get('cpu_with_service_db_pair', {})):<25}"
        )
    lines.append(
        "(--service: medians per op; svc = the trusted service process, all threads (svc loop: its"
        " event loop); ledger db = the PostgreSQL backend of its ledger connection; ratios are"
        " medians of side-by-side pairs with 95 % bootstrap intervals)"
    )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    cases = select(args)
    workdir = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    env = BenchEnv(workdir=workdir, postgres_dsn=postgres_dsn())
    openbao = None
    servers: list[BenchServer] = []
    service: BenchService | None = None
    store_created = False
    try:
        if args.service:
            if env.postgres_dsn is None:
                raise SystemExit(
                    "--service needs PostgreSQL for the service's ledger "
                    "(PROD_DISCOVERY_TEST_DSN, default postgresql://postgres@127.0.0.1:5432)"
                )
            service = BenchService(workdir, env.postgres_dsn)
            env.service_url = service.url
        if not args.no_openbao:
            from jupyter_prod_discovery.demo.openbao import DevServer

            openbao = DevServer().start()
            env.openbao = openbao
            if service is None:
                # The token reaches the extension server through its environment, never a file.
                # A client of the service holds none: Vault is the service's business.
                env.extension_env.update(
                    {"VAULT_ADDR": openbao.address, "VAULT_TOKEN": openbao.root_token}
                )
        plain_cfg = server_config_for(False)
        if args.aa:  # the capabilities' hooks (seeding OpenBao, database roles) are not run
            ext_cfg = json.loads(json.dumps(plain_cfg))
        else:
            ext_cfg = server_config_for(True, env, extra_config(args))
        if service is not None:
            # What the service configures (the profiles, Vault) moves to its config file; the
            # server keeps only the service's address.
            svc_cfg = {s: ext_cfg.pop(s) for s in SERVICE_SECTIONS if s in ext_cfg}
            merge_config(ext_cfg, {"ProdDiscoveryApp": {"service_url": service.url}})
            store_created = True
            service.prepare(svc_cfg, openbao)

        cg = args.instructions
        pinned = None if args.no_pin else pin_cpus()
        results: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "repeat": args.repeat,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "started_first": [],  # per round, the side started first
            "pinned_cpus": pinned,
            "instructions": cg,
            "aa": args.aa,
            "service": args.service,
            "openbao": openbao is not None,
            "extension_config_sections": sorted(ext_cfg),
            "cases": {},
        }
        samples: dict[str, dict[str, list[Sample]]] = {
            c.name: {"plain": [], "extension": []} for c in cases
        }
        errors: dict[str, str] = {}
        for rnd in range(args.rounds):
            # Fresh server processes each round, with a hash seed shared by both sides: one
            # process's memory layout and hash seed shift its speed by a few percent, which
            # a single pair of servers would report as overhead (or as a gain).
            base = workdir if args.rounds == 1 else workdir / f"round{rnd + 1}"
            seed = {"PYTHONHASHSEED": str(rnd + 1)}
            prof = {
                side: args.profile / f"{side}.r{rnd + 1}.prof" if args.profile else None
                for side in ("plain", "extension", "service")
            }
            if service is not None and (args.service == "round" or rnd == 0):
                # Before both servers (the client opens its stream at start), and outside their
                # alternating start order: it serves one side only.
                await service.start(seed=str(rnd + 1), profile=prof["service"])
            plain = BenchServer(
                "plain", plain_cfg, base, env=seed, callgrind=cg, profile=prof["plain"]
            )
            ext = BenchServer(
                "extension",
                ext_cfg,
                base,
                env={**env.extension_env, **seed},
                callgrind=cg,
                profile=prof["extension"],
            )
            if service is not None:
                ext.companions = service.companions()
            servers = [plain, ext]
            # The server started first runs its requests measurably slower (about 10 % in A/A
            # runs of two identical plain servers on these VMs, whichever of the two was started
            # first), so the sides take turns at starting first, round by round.
            order = servers if rnd % 2 == 0 else servers[::-1]
            results["started_first"].append(order[0].label)
            for s in order:
                await s.start()
            if plain.loaded_extension(EXTENSION) or ext.loaded_extension(EXTENSION) == args.aa:
                raise RuntimeError(
                    "A/A setup wrong: the extension must load on neither side"
                    if args.aa
                    else "A/B setup wrong: the extension must load on one side only"
                )
            if service is not None and "client of the trusted service" not in ext.log_tail(10**7):
                raise RuntimeError(
                    "--service setup wrong: the extension is not the service's client"
                )
            if args.rounds > 1:
                print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for c in cases:
                if c.name in errors:
                    continue
                print(f"· {c.name}: {c.description}", file=sys.stderr, flush=True)
                try:
                    for _ in range(args.warmup):
                        for s in servers:
                            await run_once(c, s)
                    for r in range(args.repeat):
                        # ABBA interleaving: drifts of the machine hit both sides alike.
                        for s in servers if r % 2 == 0 else servers[::-1]:
                            samples[c.name][s.label].append(await run_once(c, s))
                except Exception as exc:
                    errors[c.name] = f"{exc.__class__.__name__}: {exc}"[:500]
                    print(f"  failed: {exc}", file=sys.stderr)
            for s in servers:
                await s.stop()
            servers = []
            if service is not None:
                kinds = await asyncio.to_thread(service.ledger_kinds)
                split = ", ".join(f"{k} {n}" for k, n in kinds.items())
                print(
                    f"  service ledger: {sum(kinds.values())} records sealed so far ({split})",
                    file=sys.stderr,
                )
                results.setdefault("service_ledger", []).append(kinds)
                if args.service == "round":
                    await service.stop()
        if service is not None:
            results["service_starts"] = service.starts
        for c in cases:
            if c.name in errors:
                results["cases"][c.name] = {"error": errors[c.name]}
                continue
            p, e = summarize(samples[c.name]["plain"]), summarize(samples[c.name]["extension"])
            results["cases"][c.name] = {
                "description": c.description,
                "unit": c.unit,
                "plain": p,
                "extension": e,
                "cpu_ratio": ratio(e["cpu_median_s"], p["cpu_median_s"]),
                "wall_ratio": ratio(e["wall_median_s"], p["wall_median_s"]),
            }
            pairs = pair_ratios(p["cpu_samples_s"], e["cpu_samples_s"])
            if pairs:
                results["cases"][c.name]["cpu_pairs"] = len(pairs)
                results["cases"][c.name]["cpu_pair_ratio"] = statistics.median(pairs)
                results["cases"][c.name]["cpu_pair_ratio_ci95"] = bootstrap_ci(pairs)
            if "with_service" in e:
                r = results["cases"][c.name]
                r["cpu_pair"] = pair_summary(p["cpu_samples_s"], e["cpu_samples_s"])
                for key in ("with_service", "with_service_db"):
                    r[f"cpu_{key}_ratio"] = ratio(e[key]["cpu_median_s"], p["cpu_median_s"])
                    r[f"cpu_{key}_pair"] = pair_summary(p["cpu_samples_s"], e[key]["cpu_samples_s"])
            if "instructions_median" in p and "instructions_median" in e:
                results["cases"][c.name]["instructions_ratio"] = ratio(
                    e["instructions_median"], p["instructions_median"]
                )
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                await s.stop()
        if service is not None:
            # Before the cleanups and OpenBao: the service revokes what it issued as it stops.
            with contextlib.suppress(Exception):
                await service.stop()
        for cleanup in env.cleanups:
            try:
                cleanup()
            except Exception as exc:
                print(f"cleanup failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        if openbao is not None:
            openbao.stop()
        if service is not None and store_created:
            try:
                service.drop_store()
            except Exception as exc:
                print(f"dropping the ledger database failed: {exc}", file=sys.stderr)

    # Which side lost output how often (runs retried): a property of the server, not noise.
    results["dropped_runs"] = dict(DROPPED)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    for key, names in sorted(THREADS.items()):
        split = ", ".join(
            f"{n} {fmt_time(statistics.median(v))}"
            for n, v in sorted(names.items(), key=lambda kv: -statistics.median(kv[1]))
        )
        print(f"CPU per op by thread, {key}: {split}")
    for key, n in sorted(DROPPED.items()):
        print(f"lost output (run repeated): {key} x{n}")
    print(f"JSON: {args.output}", file=sys.stderr)
    failed = any("error" in r for r in results["cases"].values())
    if failed or args.keep_workdir:
        print(f"server logs: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_all()
    if args.list:
        for c in CASES.values():
            print(f"{c.name:<24} {'' if c.default else '(opt-in) '}{c.description}")
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
