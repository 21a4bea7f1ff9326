"""The labextension's own unit tests (vitest, ``labextension/test/``) as part of the suite, so
that ``bash scripts/test.sh`` and CI run the same tests: the components' pure logic (lease
health, TTLs, PII markers) and their rendering in jsdom against a stubbed REST client."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jupyter_prod_discovery.pytest_plugin import require

LABEXTENSION = Path(__file__).resolve().parents[1] / "labextension"


def test_labextension_unit_tests_pass() -> None:
    jlpm = shutil.which("jlpm")
    require(jlpm is not None, "jlpm (JupyterLab's yarn) is not on PATH: activate .venv")
    require(
        (LABEXTENSION / "node_modules" / ".bin" / "vitest").exists(),
        "labextension/node_modules lacks vitest: run `bash scripts/install.sh`",
    )
    assert jlpm is not None
    done = subprocess.run(
        [jlpm, "test"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]
