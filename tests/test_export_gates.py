"""Unit tests of the gates' judgement and of the CLI's exit statuses."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from export_helpers import HMAC_KEY, make_notebook, signing_key, statement_fields

from jupyter_prod_discovery.cli import main
from jupyter_prod_discovery.export.gates import (
    ExportContext,
    NoInteractiveGate,
    NoPIIGate,
    OutputsStrippedGate,
)
from jupyter_prod_discovery.export.notebook import parse_param, prepare_notebook, to_script
from jupyter_prod_discovery.export.pii_scan import PatternPIIScanner


def _ctx(tmp_path: Path, source: str, outputs: list[dict[str, str]] | None = None) -> ExportContext:
    nb = nbformat.read(make_notebook(tmp_path / "n.ipynb", [(source, outputs or [])]), 4)
    return ExportContext(tmp_path / "n.ipynb", nb, prepare_notebook(nb, {}), {}, "ada", "")


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("%matplotlib inline\nx = 1", True),
        ("%%time\nx = 1", True),
        ("files = !ls", False),
        ("%env TOKEN=x", False),
        ("from getpass import getpass\npw = getpass()", False),
        ("import getpass\npw = getpass.getpass('pw')", False),
        ("get_ipython().system('ls')", False),
        ("def f():\n    return input()", False),
        ("text = 'input() in a string is fine'", True),
    ],
)
def test_judge_interactive_constructs(tmp_path: Path, source: str, allowed: bool) -> None:
    result = NoInteractiveGate().check(_ctx(tmp_path, source))
    assert result.passed is allowed, result.reason


def test_judge_pii_with_fallback_scanner(tmp_path: Path) -> None:
    gate = NoPIIGate(scanner_class=PatternPIIScanner)
    ctx = _ctx(
        tmp_path, "print(row)", [{"output_type": "stream", "name": "stdout", "text": "a@b.io"}]
    )
    result = gate.check(ctx)
    assert not result.passed
    assert result.reason == "PII found: EMAIL_ADDRESS in cell 1 output 1"
    assert PatternPIIScanner().scan("card 4111 1111 1111 1111")[0]["entity_type"] == "CREDIT_CARD"
    assert PatternPIIScanner().scan("4111 1111 1111 1112") == []  # fails the Luhn check


def test_prepare_notebook_appends_missing_parameters(tmp_path: Path) -> None:
    nb = nbformat.read(make_notebook(tmp_path / "n.ipynb", [("y", [])], params="x = 1"), 4)
    out = prepare_notebook(nb, {"x": 5, "day": "2026-01-01"})
    assert out.cells[0].source == "x = 1\nday = '2026-01-01'"
    assert "# %% cell 1 [parameters]" in to_script(out)
    assert parse_param("n=3") == ("n", 3)
    assert parse_param("s=abc") == ("s", "abc")
    with pytest.raises(ValueError, match="identifier"):
        parse_param("1x=2")


def test_cli_export_and_verify_exit_statuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROD_DISCOVERY_EXPORT_HMAC_KEY", HMAC_KEY)
    key, public = signing_key(tmp_path)
    clean = make_notebook(tmp_path / "clean.ipynb", [("result = n * 2\nresult", [])], "n = 1")
    out = tmp_path / "bundle"
    signer = ["--signer", "ed25519", "--signing-key-file", str(key)]
    argv = ["export", str(clean), "--target", "papermill", "-o", str(out), "--param", "n=4"]
    assert main([*argv, *signer]) == 0
    assert statement_fields(out)["parameters"] == {"n": 4}
    assert main(["export", "verify", str(out), "--public-key", str(public)]) == 0
    assert main(["export", "verify", str(out)]) == 2  # no key: a usage error, not "valid"
    assert "needs the signer's public key" in capsys.readouterr().err
    assert main(["export", "verify", str(tmp_path / "nowhere"), "--public-key", str(public)]) == 2
    assert "no bundle folder" in capsys.readouterr().err
    (out / "run.py").write_text("print('pwned')\n")
    assert main(["export", "verify", str(out), "--public-key", str(public)]) == 1
    assert "changed file: run.py" in capsys.readouterr().err

    dev = tmp_path / "dev-bundle"
    assert main(["export", str(clean), "-o", str(dev)]) == 0  # HMAC: the development signer
    assert main(["export", "verify", str(dev), "--dev-hmac"]) == 0
    assert main(["export", "verify", str(dev), "--public-key", str(public)]) == 1
    assert "not signed by a pinned key" in capsys.readouterr().err

    bad = make_notebook(tmp_path / "bad.ipynb", [("name = input()", [])])
    assert main(["export", str(bad), "-o", str(tmp_path / "b2")]) == 1
    assert "[FAIL] no_interactive" in capsys.readouterr().err
    assert (
        main(["export", str(bad), "-o", str(tmp_path / "b3"), "--override", "no_interactive"]) == 2
    )
    assert main(["export", str(bad), "-o", str(tmp_path / "b4"), "--param", "oops"]) == 2
    monkeypatch.delenv("PROD_DISCOVERY_EXPORT_HMAC_KEY")
    assert main(["export", "verify", str(dev), "--dev-hmac"]) == 1


def test_gates_number_cells_as_jupyterlab_shows_them(tmp_path: Path) -> None:
    """1-based, counting the source notebook's cells, never the parameters cell the export adds."""
    path = make_notebook(tmp_path / "n.ipynb", [("x = 1", []), ("name = input()", [])])
    nb = nbformat.read(path, 4)
    bundled = prepare_notebook(nb, {"n": 1})  # inserts a parameters cell first
    assert len(bundled.cells) == 3
    ctx = ExportContext(path, nb, bundled, {"n": 1}, "ada", "")
    assert NoInteractiveGate().check(ctx).reason.endswith("cell 2 line 1: input()")
    bundled.cells[2].outputs = [nbformat.v4.new_output("stream", text="left")]
    stripped = OutputsStrippedGate().check(ctx)
    assert stripped.reason == "outputs left in the bundled notebook: cell 2"
    script = to_script(bundled)
    assert "# %% the parameters cell added by the export [parameters]" in script
    assert "# %% cell 1\nx = 1" in script
    assert "# %% cell 2\nname = input()" in script


def test_cli_export_verify_missing_folder_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROD_DISCOVERY_EXPORT_HMAC_KEY", HMAC_KEY)
    assert main(["export", "verify", str(tmp_path / "no-such-bundle")]) == 2
    assert f"no bundle folder at {tmp_path / 'no-such-bundle'}" in capsys.readouterr().err
