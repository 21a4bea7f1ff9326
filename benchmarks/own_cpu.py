"""This package's own CPU per request, from a py-spy sample of a running server.

``python -m benchmarks.own_cpu RAW --us-per-request US [--top N] [--package NAME] [--all-threads]``

``RAW`` is ``py-spy record --format raw`` of one server (for example the extension's side of a
``python -m benchmarks.paired`` run: ``py-spy record -p PID -r 500 -d 60 -f raw -o RAW``; py-spy
is not a dependency of this project: ``pip install py-spy`` into any environment). Only the event
loop's thread is counted (py-spy reports threads blocked on a lock as active, so the audit
writer's idle wait would count; ``--all-threads`` keeps them), and not while it waits in
``select``; of the rest, a sample is the package's own when its
innermost frame of the package calls nothing of jupyter_server, tornado or jupyter_events (what
the package's code runs itself, including the standard library and C calls it makes). Shares are
turned into microseconds with ``--us-per-request`` (the server's CPU per request, from the same
run's ``paired`` output).

Why beside ``--profile``: cProfile charges every call its own overhead, which inflates exactly
the many small calls an audit record is made of, and it cannot see them cold, as they run after
jupyter_server's own handling of a request; a sampler attached from outside does neither (6
December 2026: a read's 81 us and a save's 173 us of own CPU, in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: Frames of these mean the package called back into the server: not its own CPU.
SERVER_PARTS = ("jupyter_server/", "tornado/", "jupyter_events/")
IDLE = "EpollSelector.select"
LOOP = "_run_once"


@dataclass
class OwnCPU:
    """Samples of one server: busy ones, the package's own, and its own by innermost frame."""

    busy: int = 0
    own: int = 0
    by_frame: Counter[str] = field(default_factory=Counter)

    def share(self) -> float:
        return self.own / self.busy if self.busy else 0.0


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:line)`` as ``func file.py:line``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    return f"{name} {where.rsplit('/', 1)[-1]}" if where else name


def own_cpu(
    lines: list[str], package: str = "jupyter_prod_discovery", all_threads: bool = False
) -> OwnCPU:
    """Count ``lines`` of py-spy's raw format (``frame;frame;... count``, outermost first)."""
    out = OwnCPU()
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            raise ValueError(f"not py-spy's raw format: {line[:80]!r}")
        n = int(count)
        frames = stack.split(";")
        if any(IDLE in f for f in frames):
            continue
        if not all_threads and not any(LOOP in f for f in frames):
            continue
        out.busy += n
        ours = [i for i, f in enumerate(frames) if package in f]
        if not ours:
            continue
        inner = ours[-1]
        if any(part in f for f in frames[inner + 1 :] for part in SERVER_PARTS):
            continue
        out.own += n
        out.by_frame[frame_name(frames[inner])] += n
    return out


def report(result: OwnCPU, us_per_request: float, top: int) -> str:
    rows = [
        f"busy samples {result.busy}, own {result.own} ({result.share() * 100:.2f} %): "
        f"{result.share() * us_per_request:.1f} us of {us_per_request:.0f} us per request"
    ]
    for name, n in result.by_frame.most_common(top):
        rows.append(f"{n / result.busy * us_per_request:8.1f} us  {n:6d}  {name}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.own_cpu", description=__doc__)
    p.add_argument("raw", type=Path, help="py-spy record --format raw output")
    p.add_argument("--us-per-request", type=float, required=True)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--package", default="jupyter_prod_discovery")
    p.add_argument("--all-threads", action="store_true", help="not only the event loop's")
    args = p.parse_args(argv)
    lines = args.raw.read_text().splitlines()
    print(report(own_cpu(lines, args.package, args.all_threads), args.us_per_request, args.top))


if __name__ == "__main__":
    main()
