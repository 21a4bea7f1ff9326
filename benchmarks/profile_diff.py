"""Compare the event-loop profiles of ``--profile`` runs: where the extension's extra time goes.

``python -m benchmarks.profile_diff DIR [--top N]`` merges ``DIR/plain.r*.prof`` and
``DIR/extension.r*.prof`` and lists the functions whose own time (tottime) grew most from plain
to extension, then the extension's own functions by cumulative time. Why own time: cumulative
times of callers overlap, own times add up to the total, so the differences sum to the overhead.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from pathlib import Path

Key = tuple[str, int, str]


def load(directory: Path, side: str) -> pstats.Stats | None:
    files = sorted(directory.glob(f"{side}.r*.prof"))
    if not files:
        return None
    return pstats.Stats(*map(str, files), stream=sys.stderr)


def own_times(stats: pstats.Stats) -> dict[Key, tuple[int, float]]:
    """Function -> (calls, own seconds)."""
    raw = stats.stats  # type: ignore[attr-defined]
    return {k: (v[1], v[2]) for k, v in raw.items()}


def label(key: Key) -> str:
    file, line, name = key
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else file
    return f"{name} ({short}:{line})"


def report(directory: Path, top: int) -> str:
    plain, ext = load(directory, "plain"), load(directory, "extension")
    if plain is None or ext is None:
        raise SystemExit(f"{directory}: needs plain.r*.prof and extension.r*.prof")
    p, e = own_times(plain), own_times(ext)
    total_p = sum(t for _, t in p.values())
    total_e = sum(t for _, t in e.values())
    lines = [
        f"event-loop own time: plain {total_p * 1e3:.1f} ms, extension {total_e * 1e3:.1f} ms "
        f"(+{(total_e - total_p) * 1e3:.1f} ms); profiler overhead included",
        "",
        f"largest increases of own time (ms), top {top}:",
    ]
    diffs = []
    for key in set(p) | set(e):
        cp, tp = p.get(key, (0, 0.0))
        ce, te = e.get(key, (0, 0.0))
        diffs.append((te - tp, key, cp, ce))
    diffs.sort(reverse=True)
    for d, key, cp, ce in diffs[:top]:
        lines.append(f"  {d * 1e3:+8.2f}  calls {cp:>6} -> {ce:>6}  {label(key)}")
    lines += ["", f"extension's own functions by cumulative time (ms), top {top}:"]
    raw = ext.stats  # type: ignore[attr-defined]
    ours = [(v[3], k, v[1]) for k, v in raw.items() if "jupyter_prod_discovery" in k[0]]
    ours.sort(reverse=True)
    for cum, key, calls in ours[:top]:
        lines.append(f"  {cum * 1e3:8.2f}  calls {calls:>6}  {label(key)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_diff", description=__doc__)
    ap.add_argument("directory", type=Path)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args(argv)
    print(report(args.directory, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
