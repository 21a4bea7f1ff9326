"""``benchmarks.opcodes``: the site hook counts exactly, and the report ranks what differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.opcodes import SITE, load, report

PROGRAM = """
import os, signal

def work(n):
    total = 0
    for i in range(n):
        total += i
    return total

def other():
    return sum([1, 2, 3])

os.kill(os.getpid(), signal.SIGUSR2)
for _ in range({calls}):
    work(10)
other()
os.kill(os.getpid(), signal.SIGUSR2)
"""


def _count(tmp_path: Path, calls: int) -> dict[str, tuple[int, int]]:
    out = tmp_path / f"counts{calls}"
    env = {**os.environ, "PYTHONPATH": str(SITE), "PD_OPCODES_OUT": str(out)}
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(calls=calls)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (dump,) = tmp_path.glob(f"counts{calls}.*.json")
    rows = json.loads(dump.read_text())
    return {name: (ops, n) for _file, _line, name, ops, n in rows}


def test_counts_are_exact_and_per_function(tmp_path: Path) -> None:
    one, ten = _count(tmp_path, 1), _count(tmp_path, 10)
    assert one["work"][1] == 1 and ten["work"][1] == 10
    assert one["work"][0] > 20
    assert ten["work"][0] == 10 * one["work"][0]  # the same code counts the same, every time
    assert one["other"] == ten["other"]
    assert "_toggle" not in one  # the hook does not count itself


def test_load_and_report_rank_the_largest_differences() -> None:
    a = load([["/x/pkg/mod.py", 1, "same", 100, 2], ["/x/pkg/mod.py", 9, "gone", 40, 1]])
    moved = load([["/x/pkg/mod.py", 3, "same", 100, 2]])  # the same function, two lines down
    assert report(a, moved, requests=1, top=1).splitlines()[2].startswith("    -40.0")
    b = load(
        [
            ["/x/pkg/mod.py", 1, "same", 100, 2],
            ["/y/ext/rec.py", 5, "record", 300, 3],
            ["/y/ext/rec.py", 20, "small", 10, 1],
        ]
    )
    assert a.total_ops == 140 and b.total_ops == 410
    text = report(a, b, requests=10, top=3)
    lines = text.splitlines()
    assert lines[0].startswith("bytecodes per request: A 14, B 41, B-A +27 (B/A 2.929)")
    assert "record ext/rec.py" in lines[2] and "+30.0" in lines[2]
    assert "gone pkg/mod.py" in lines[3] and "-4.0" in lines[3]
    assert "small ext/rec.py" in lines[4]
    assert all("same" not in line for line in lines)  # top 3: the unchanged one is left out
