"""The read guard: what the contents API returns is scanned before it reaches the browser.

Files reach the served directory by other ways than the contents API (kernel code writing a
notebook or a CSV, papermill in a terminal, git): each test writes one there directly, then
reads it through the real server as JupyterLab does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from guard_support import Recorder, prod_discovery_extension_config, recorder
from tornado.httpclient import HTTPClientError

__all__ = ["prod_discovery_extension_config", "recorder"]  # the fixtures, imported

SSN, EMAIL = "536-22-1234", "ann.smith@example.com"


def _write_notebook(root: Path, name: str) -> str:
    """A notebook as kernel code or papermill would leave it: PII in an output and in a
    markdown cell, written without the contents API."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"Contact {EMAIL}"))
    code = nbformat.v4.new_code_cell("df.head()")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"ssn {SSN}\n")]
    nb.cells.append(code)
    text = nbformat.writes(nb)
    (root / name).write_text(text)
    return text


async def _get(jp_fetch: Any, path: str, **params: str) -> dict[str, Any]:
    response = await jp_fetch("api", "contents", path, method="GET", params=params)
    return dict(json.loads(response.body))


async def _refused(jp_fetch: Any, path: str, code: int) -> str:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "contents", path, method="GET")
    assert err.value.code == code
    return str(err.value.response.body.decode())  # type: ignore[union-attr]


async def test_notebook_written_outside_is_returned_redacted(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    on_disk = _write_notebook(jp_root_dir, "report.ipynb")
    model = await _get(jp_fetch, "report.ipynb")
    body = json.dumps(model)
    assert SSN not in body and EMAIL not in body
    assert "<US_SSN>" in body and "<EMAIL_ADDRESS>" in body
    # Redacted in what was returned only: the file is left as it was written.
    assert (jp_root_dir / "report.ipynb").read_text() == on_disk
    events = recorder.of("pii")
    assert {(e["source"], e["path"], e["cell"]) for e in events} == {
        ("read", "report.ipynb", 1),
        ("read", "report.ipynb", 2),
    }


@pytest.mark.parametrize("fmt", ["text", "base64"])
async def test_text_file_written_outside_is_returned_redacted(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder, fmt: str
) -> None:
    import base64

    (jp_root_dir / "extract.csv").write_text(f"name,email\nAnn,{EMAIL}\n")
    model = await _get(jp_fetch, "extract.csv", type="file", format=fmt)
    content = model["content"]
    text = base64.b64decode(content).decode() if fmt == "base64" else content
    assert EMAIL not in text and "<EMAIL_ADDRESS>" in text
    assert [e["source"] for e in recorder.of("pii")] == ["read"]


async def test_metadata_only_reads_are_not_scanned(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    _write_notebook(jp_root_dir, "report.ipynb")
    model = await _get(jp_fetch, "report.ipynb", content="0")
    assert model["content"] is None
    listing = await _get(jp_fetch, "")
    assert "report.ipynb" in {m["name"] for m in listing["content"]}
    assert recorder.of("pii") == []


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_read_of_blocked_values_is_refused(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    _write_notebook(jp_root_dir, "report.ipynb")
    body = await _refused(jp_fetch, "report.ipynb", 403)
    assert "Read refused by the Prod Discovery PII policy" in body and "US_SSN x1" in body
    assert SSN not in body and EMAIL not in body
    assert {e["action"] for e in recorder.of("pii") if e["cell"] == 2} == {"block"}


async def test_malformed_notebook_read_is_refused(jp_fetch: Any, jp_root_dir: Path) -> None:
    """A structure the scan cannot walk is refused (400 naming it), never returned unscanned."""
    nb = json.loads(nbformat.writes(nbformat.v4.new_notebook()))
    nb["cells"] = [
        {"id": "a", "cell_type": "markdown", "metadata": {}, "source": "notes", "outputs": [None]},
        {
            "id": "b",
            "cell_type": "code",
            "metadata": {},
            "source": "x",
            "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": f"ssn {SSN}"}],
        },
    ]
    (jp_root_dir / "m.ipynb").write_text(json.dumps(nb))
    body = await _refused(jp_fetch, "m.ipynb", 400)
    assert "Read refused" in body and "could not be scanned" in body and "cell 1" in body
    assert SSN not in body


async def test_a_failing_scan_refuses_the_read(
    jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_prod_discovery.guard.save import SaveScanner

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("scanner bug")

    monkeypatch.setattr(SaveScanner, "_notebook", broken)
    _write_notebook(jp_root_dir, "report.ipynb")
    body = await _refused(jp_fetch, "report.ipynb", 400)
    assert "could not be scanned for PII (RuntimeError)" in body and SSN not in body


@pytest.mark.parametrize("guard_config", [{"PIIGuard": {"scan_reads": False}}])
async def test_scan_reads_off_returns_the_file_as_written(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder
) -> None:
    _write_notebook(jp_root_dir, "report.ipynb")
    body = json.dumps(await _get(jp_fetch, "report.ipynb"))
    assert SSN in body and EMAIL in body
    assert recorder.of("pii") == []


async def test_nbconvert_of_a_notebook_written_outside_is_redacted(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    """jupyter_server's nbconvert handler reads through the contents manager: the HTML it
    renders for the browser holds the redacted outputs."""
    _write_notebook(jp_root_dir, "report.ipynb")
    response = await jp_fetch("nbconvert", "html", "report.ipynb", method="GET")
    html = response.body.decode()
    assert SSN not in html and EMAIL not in html and "US_SSN" in html


async def test_rename_still_scans_and_redacts_the_file_on_disk(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    """A rename into a scanned name rewrites the file itself (the save guard's own read, not
    the read guard's, whose redaction never reaches the disk)."""
    (jp_root_dir / "notes.dat").write_text(f"ssn {SSN}\n")
    await jp_fetch(
        "api", "contents", "notes.dat", method="PATCH", body=json.dumps({"path": "notes.txt"})
    )
    on_disk = (jp_root_dir / "notes.txt").read_text()
    assert SSN not in on_disk and "<US_SSN>" in on_disk


@pytest.fixture
def read_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose reads were scanned (the read guard's calls of ``scan_model``)."""
    from jupyter_prod_discovery.guard.save import SaveScanner

    scanned: list[str] = []
    real = SaveScanner.scan_model

    def spy(self: Any, model: Any, path: str, job: Any, *, reading: bool = False) -> None:
        if reading:
            scanned.append(path)
        real(self, model, path, job, reading=reading)

    monkeypatch.setattr(SaveScanner, "scan_model", spy)
    return scanned


def _clean_notebook() -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("df.describe()")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="count 12.5\n")]
    nb.cells.append(code)
    return dict(nb)


async def test_bytes_scanned_clean_are_not_scanned_again(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any, read_scans: list[str]
) -> None:
    """A notebook read clean once is read again without a scan, as long as its bytes, the
    policy and the live secrets are what they were; any change of either scans again."""
    body = json.dumps({"type": "notebook", "content": _clean_notebook()})
    await jp_fetch("api", "contents", "clean.ipynb", method="PUT", body=body)
    await _get(jp_fetch, "clean.ipynb")
    await _get(jp_fetch, "clean.ipynb")
    assert read_scans == ["clean.ipynb"]  # scanned once: the same bytes since
    # Rewritten outside the server, with PII: the digest differs, the read is scanned, and
    # every read of it again (findings are never taken as known).
    _write_notebook(jp_root_dir, "clean.ipynb")
    assert SSN not in json.dumps(await _get(jp_fetch, "clean.ipynb"))
    assert SSN not in json.dumps(await _get(jp_fetch, "clean.ipynb"))
    assert read_scans == ["clean.ipynb"] * 3
    # Back to clean bytes written outside: scanned once, then known clean.
    (jp_root_dir / "clean.ipynb").write_text(nbformat.writes(nbformat.from_dict(_clean_notebook())))
    await _get(jp_fetch, "clean.ipynb")
    await _get(jp_fetch, "clean.ipynb")
    assert read_scans == ["clean.ipynb"] * 4
    # A policy change is a new generation: scanned again.
    guard = jp_serverapp.web_app.settings["prod_discovery"].pii_guard
    guard.policy.allow_list = [*guard.policy.allow_list, "nobody@example.com"]
    await _get(jp_fetch, "clean.ipynb")
    assert read_scans == ["clean.ipynb"] * 5


async def test_a_file_with_findings_is_scanned_on_every_read(
    jp_fetch: Any, jp_root_dir: Path, recorder: Recorder, read_scans: list[str]
) -> None:
    _write_notebook(jp_root_dir, "report.ipynb")
    for _ in range(2):
        assert SSN not in json.dumps(await _get(jp_fetch, "report.ipynb"))
    assert read_scans == ["report.ipynb"] * 2
    assert len([e for e in recorder.of("pii") if e["source"] == "read"]) == 4  # 2 places x 2


async def test_scan_reads_and_enabled_switched_at_run_time(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    guard = jp_serverapp.web_app.settings["prod_discovery"].pii_guard
    _write_notebook(jp_root_dir, "report.ipynb")
    guard.scan_reads = False
    assert SSN in json.dumps(await _get(jp_fetch, "report.ipynb"))
    guard.scan_reads = True
    assert SSN not in json.dumps(await _get(jp_fetch, "report.ipynb"))
    guard.enabled = False
    assert SSN in json.dumps(await _get(jp_fetch, "report.ipynb"))


async def test_active_content_is_a_finding_on_every_read(
    jp_fetch: Any, jp_root_dir: Path, read_scans: list[str]
) -> None:
    """Active content in metadata is dropped and recorded (ACTIVE_CONTENT): a read with it is
    scanned, and rewritten, every time."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "x = 1", metadata={"view": {"application/javascript": "document.title = 'x'"}}
        )
    )
    (jp_root_dir / "active.ipynb").write_text(nbformat.writes(nb))
    for _ in range(2):
        assert "document.title" not in json.dumps(await _get(jp_fetch, "active.ipynb"))
    assert read_scans == ["active.ipynb"] * 2


async def test_a_read_rewritten_without_a_finding_is_not_taken_as_clean(
    jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch, read_scans: list[str]
) -> None:
    """Should the guard ever rewrite a value without reporting it, that read is not noted as
    clean: the next read of the same bytes is scanned (and rewritten) again."""
    from jupyter_prod_discovery.guard.live import PIIGuard, Scan
    from jupyter_prod_discovery.pii import Verdict

    def rewrites_silently(self: Any, value: Any, *args: Any, **kwargs: Any) -> Scan:
        return Scan(Verdict("allow", []), {"rewritten": True})

    monkeypatch.setattr(PIIGuard, "data", rewrites_silently)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["kept?"]}))
    (jp_root_dir / "silent.ipynb").write_text(nbformat.writes(nb))
    for _ in range(2):
        model = await _get(jp_fetch, "silent.ipynb")
        assert model["content"]["cells"][0]["metadata"] == {"rewritten": True}
    assert read_scans == ["silent.ipynb"] * 2
