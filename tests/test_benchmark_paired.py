"""``benchmarks.paired.bench_env``: the work directory of a run goes with it, unless it failed.

Why a test: ``paired`` and ``opcodes`` left every run's directory in the temp directory (each
server's root, logs, audit trail and databases; ~10 MB for a run of ``paired``), where the main
harness removes its own unless a case failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.paired import bench_env


def test_the_work_directory_goes_after_a_run() -> None:
    with bench_env("pd-test-paired-", no_openbao=True) as env:
        workdir: Path = env.workdir
        (workdir / "A").mkdir()
        (workdir / "A" / "server.log").write_text("log")
        assert env.openbao is None
        assert "VAULT_TOKEN" not in env.extension_env
    assert not workdir.exists()


def test_the_work_directory_stays_when_the_run_failed(capsys: pytest.CaptureFixture[str]) -> None:
    workdir: Path | None = None
    with (
        pytest.raises(RuntimeError, match="a case failed"),
        bench_env("pd-test-paired-", no_openbao=True) as env,
    ):
        workdir = env.workdir
        raise RuntimeError("a case failed")
    assert workdir is not None
    try:
        assert workdir.is_dir()
        assert f"work directory kept: {workdir}" in capsys.readouterr().err
    finally:
        workdir.rmdir()
