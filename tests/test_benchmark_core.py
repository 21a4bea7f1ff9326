"""``benchmarks.core``: each benchmark server runs in directories of its own.

Why a test: the servers once shared the data directory of whoever ran the benchmark (no
``JUPYTER_DATA_DIR``), so both sides of a comparison, and every earlier run, appended to one
audit trail there and shared the notary's and file ID manager's databases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.core import BenchServer


def test_every_jupyter_directory_is_the_servers_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", "/somewhere/shared")
    monkeypatch.setenv("JUPYTER_PATH", "/somewhere/else")
    monkeypatch.setenv("VAULT_TOKEN", "not-for-the-server")
    a = BenchServer("A", {}, tmp_path).server_env()
    b = BenchServer("B", {}, tmp_path, env={"EXTRA": "1"}).server_env()
    for label, env in (("A", a), ("B", b)):
        own = tmp_path / label
        assert env["JUPYTER_DATA_DIR"] == str(own / "data")
        assert env["JUPYTER_CONFIG_DIR"] == str(own / "config")
        assert env["JUPYTER_RUNTIME_DIR"] == str(own / "runtime")
        assert "JUPYTER_PATH" not in env
        assert "VAULT_TOKEN" not in env
    assert b["EXTRA"] == "1"
    assert a["JUPYTER_TOKEN"] != b["JUPYTER_TOKEN"]
