"""benchmarks.own_cpu: which py-spy samples are the package's own CPU."""

from __future__ import annotations

import pytest

from benchmarks.own_cpu import own_cpu, report

LOOP = "<module> (x.py:1);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
PD = "jupyter_prod_discovery/audit"


def stack(*frames: str, n: int = 1, loop: bool = True) -> str:
    return (
        ";".join(([LOOP] if loop else ["Thread.run (threading.py:982)"]) + list(frames)) + f" {n}"
    )


def test_own_only_when_the_innermost_package_frame_calls_no_server_code() -> None:
    lines = [
        stack(f"wrapper ({PD}/recording.py:255)", "stat (os.py:1)", n=3),
        stack(
            f"wrapper ({PD}/recording.py:255)", "get (jupyter_server/x/filemanager.py:978)", n=10
        ),
        stack(
            f"wrapper ({PD}/recording.py:255)",
            "get (jupyter_server/x/filemanager.py:978)",
            "_get_hash (jupyter_prod_discovery/_compat.py:150)",
            n=2,
        ),
        stack("RequestHandler.finish (tornado/web.py:1)", n=5),
        stack("EpollSelector.select (selectors.py:468)", n=100),
        stack(f"_write_loop ({PD}/trail.py:656)", n=50, loop=False),
    ]
    got = own_cpu(lines)
    assert (got.busy, got.own) == (20, 5)
    assert got.by_frame == {"wrapper recording.py:255": 3, "_get_hash _compat.py:150": 2}
    assert "25.00 %" in report(got, 2000.0, 5)
    every = own_cpu(lines, all_threads=True)
    assert (every.busy, every.own) == (70, 55)


def test_not_raw_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="raw format"):
        own_cpu(["a;b c"])
