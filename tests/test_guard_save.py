"""The save guard (pre-save hook) through the real contents API, and the scan CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from guard_support import Recorder
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.cli import main

SSN, EMAIL = "536-22-1234", "ann.smith@example.com"


@pytest.fixture
def guard_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def prod_discovery_extension_config(guard_config: dict[str, Any]) -> dict[str, Any]:
    return guard_config


@pytest.fixture
def recorder(jp_serverapp: Any) -> Iterator[Recorder]:
    app = jp_serverapp.web_app.settings["prod_discovery"]
    original, app.audit = app.audit, Recorder()
    yield app.audit
    app.audit = original


def _notebook(*texts: str) -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    for t in texts:
        cell = nbformat.v4.new_code_cell("show()")
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=t),
            nbformat.v4.new_output("execute_result", data={"text/plain": t}, execution_count=1),
        ]
        nb.cells.append(cell)
    return dict(nb)


async def _put(jp_fetch: Any, path: str, model: dict[str, Any]) -> Any:
    return await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(model))


async def test_save_redacts_notebook_outputs(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    nb = _notebook("clean", f"ssn {SSN}")
    await _put(jp_fetch, "a.ipynb", {"type": "notebook", "content": nb})
    saved = (jp_root_dir / "a.ipynb").read_text()
    assert SSN not in saved and "<US_SSN>" in saved
    events = recorder.of("pii")
    assert [(e["cell"], e["output"], e["action"]) for e in events] == [
        (1, 0, "redact"),
        (1, 1, "redact"),
    ]
    assert events[0]["entities"] == {"US_SSN": 1} and events[0]["path"] == "a.ipynb"


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_save_refuses_blocked_notebook(jp_fetch: Any, jp_root_dir: Path) -> None:
    with pytest.raises(HTTPClientError) as err:
        await _put(jp_fetch, "b.ipynb", {"type": "notebook", "content": _notebook(SSN)})
    assert err.value.code == 403
    body = err.value.response.body.decode()  # type: ignore[union-attr]
    assert "US_SSN x2" in body and SSN not in body
    assert not (jp_root_dir / "b.ipynb").exists()


async def test_save_redacts_text_file(jp_fetch: Any, jp_root_dir: Path) -> None:
    model = {"type": "file", "format": "text", "content": f"id,email\n1,{EMAIL}\n"}
    await _put(jp_fetch, "c.csv", model)
    assert (jp_root_dir / "c.csv").read_text() == "id,email\n1,<EMAIL_ADDRESS>\n"


@pytest.mark.parametrize("guard_config", [{"PIIGuard": {"enabled": False}}])
async def test_save_passes_when_guard_disabled(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    await _put(jp_fetch, "d.txt", {"type": "file", "format": "text", "content": EMAIL})
    assert (jp_root_dir / "d.txt").read_text() == EMAIL
    cm = jp_serverapp.contents_manager
    assert not cm._pre_save_hooks  # no hook to run (and debug-log) on every save
    # Turned on while the server runs: saves are guarded from then on.
    jp_serverapp.web_app.settings["prod_discovery"].pii_guard.enabled = True
    await _put(jp_fetch, "d2.txt", {"type": "file", "format": "text", "content": EMAIL})
    assert (jp_root_dir / "d2.txt").read_text() == "<EMAIL_ADDRESS>"
    assert len(cm._pre_save_hooks) == 1


async def test_save_redacts_injected_secret(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    jp_serverapp.web_app.settings["prod_discovery"].secrets.set("k1", ["pw-abcdefgh123"])
    await _put(jp_fetch, "e.txt", {"type": "file", "format": "text", "content": "x pw-abcdefgh123"})
    assert (jp_root_dir / "e.txt").read_text() == "x <SECRET>"


def test_scan_cli_reports_json_findings(tmp_path: Path, capsys: Any) -> None:
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps(_notebook("clean", f"mail {EMAIL}")))
    log = tmp_path / "app.log"
    log.write_text(f"user ssn {SSN}\n")
    assert main(["scan", str(nb), str(log), "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)["findings"]
    assert rows[0] == {
        "path": str(nb),
        "cell": 1,
        "output": 0,
        "field": "text",
        "entity_type": "EMAIL_ADDRESS",
        "start": 5,
        "end": 26,
        "score": 1.0,
        "action": "redact",
    }
    assert rows[-1]["path"] == str(log) and rows[-1]["entity_type"] == "US_SSN"
    assert rows[-1]["cell"] is None


def test_scan_cli_exits_zero_when_clean(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "clean.txt"
    f.write_text("nothing to see, 12.5 rows\n")
    assert main(["scan", str(f)]) == 0
    assert "0 finding(s)" in capsys.readouterr().out


def test_scan_cli_applies_policy_file(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "a.txt"
    f.write_text(f"{EMAIL} {SSN}\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("entities: [US_SSN]\nactions: {US_SSN: block}\n")
    assert main(["scan", str(f), "--policy", str(policy)]) == 1
    out = capsys.readouterr().out
    assert "US_SSN" in out and "-> block" in out and "EMAIL" not in out
    allow = tmp_path / "allow.json"
    allow.write_text(json.dumps({"allow_list": [EMAIL, SSN]}))
    assert main(["scan", str(f), "--policy", str(allow)]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"\xff\xfe\x00binary", "not a UTF-8"),
        (b"{not json", "not a notebook (invalid JSON)"),
        (b'{"metadata": {}}', "not a notebook (no cells)"),
    ],
)
def test_scan_cli_rejects_bad_input(
    tmp_path: Path, capsys: Any, content: bytes | None, message: str
) -> None:
    path = tmp_path / "x.ipynb"
    if content is not None:
        path.write_bytes(content)
    assert main(["scan", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("actions: {US_SSN: shred}\n", "PIIPolicy.actions"),
        ("- a list\n", "mapping"),
        ("actions: [unclosed\n", "not valid"),
        ("colour: red\n", "unknown policy keys"),
    ],
)
def test_scan_cli_rejects_bad_policy(
    tmp_path: Path, capsys: Any, policy: str, message: str
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    p = tmp_path / "p.yaml"
    p.write_text(policy)
    assert main(["scan", str(f), "--policy", str(p)]) == 2
    assert message in capsys.readouterr().err
    assert main(["scan", str(f), "--policy", str(tmp_path / "missing.yaml")]) == 2


def test_scan_cli_scans_a_folder_recursively(tmp_path: Path, capsys: Any) -> None:
    project = tmp_path / "project"
    (project / "reports" / "2026").mkdir(parents=True)
    (project / ".ipynb_checkpoints").mkdir()
    (project / "reports" / "2026" / "n.ipynb").write_text(
        json.dumps(_notebook("clean", f"mail {EMAIL}"))
    )
    (project / "notes.txt").write_text(f"ssn {SSN}\n")
    (project / "clean.md").write_text("nothing here\n")
    (project / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")  # skipped: not text
    (project / ".ipynb_checkpoints" / "n-checkpoint.ipynb").write_text(
        json.dumps(_notebook("clean", f"mail {EMAIL}"))
    )  # skipped: hidden
    assert main(["scan", str(project), "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)["findings"]
    found = {(Path(r["path"]).relative_to(project).as_posix(), r["entity_type"]) for r in rows}
    assert found == {("notes.txt", "US_SSN"), ("reports/2026/n.ipynb", "EMAIL_ADDRESS")}
    assert main(["scan", str(project)]) == 1
    assert f"{len(rows)} finding(s) in 3 file(s)" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scan", str(empty)]) == 0
