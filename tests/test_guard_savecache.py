"""The save guard's memo of text scans (``guard/scancache.py``): a save from the cache is the
save a fresh scan makes, and nothing stale is ever returned."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import nbformat
import pytest
from tornado.web import HTTPError

from jupyter_prod_discovery.credentials.secrets import SecretRegistry
from jupyter_prod_discovery.guard.live import PIIGuard
from jupyter_prod_discovery.guard.save import Job, SaveScanner

SSN, EMAIL, IP = "536-22-1234", "ann.smith@example.com", "10.20.30.40"
# Clean to the scanner (lowercase letters only) until it is issued as a secret.
TOKEN = "qwertyuiopasdfghzx"
HIDDEN = "ssn &#53;36-22-1234"  # an SSN once the character reference is displayed


def _notebook(*texts: str, pii: str = EMAIL) -> dict[str, Any]:
    """Every kind of place the save guard scans, with ``texts`` in outputs and ``pii`` in the
    notebook's and cells' own text."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["note"] = f"owner {pii}"
    nb.cells.append(nbformat.v4.new_markdown_cell(f"Contact {pii} or call about {SSN}"))
    for i, t in enumerate(texts):
        cell = nbformat.v4.new_code_cell(f"show({i})", metadata={"tags": [f"by {pii}"]})
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=t),
            nbformat.v4.new_output(
                "execute_result",
                data={"text/plain": t, "text/html": f"<table><tr><td>{t}</td></tr></table>"},
                metadata={"source": f"row of {pii}"},
                execution_count=1,
            ),
            nbformat.v4.new_output("display_data", data={"application/json": {"v": t}}),
            nbformat.v4.new_output(
                "error", ename="ValueError", evalue=t, traceback=[f"line {t}", "end"]
            ),
        ]
        nb.cells.append(cell)
    return dict(nbformat.from_dict(nb))


def _guard(chars: int = 1_000_000, secrets: SecretRegistry | None = None) -> PIIGuard:
    return PIIGuard(
        secrets=secrets if secrets is not None else SecretRegistry(), save_cache_chars=chars
    )


class Counting:
    """Counts the texts ``guard.text`` really scans (a cache hit does not call it)."""

    def __init__(self, guard: PIIGuard, hook: Callable[[str], None] | None = None) -> None:
        self.texts: list[str] = []
        self._text = guard.text
        self._hook = hook
        guard.text = self  # type: ignore[method-assign]

    def __call__(self, text: str, kernel_id: str | None, kind: str = "plain") -> Any:
        self.texts.append(text)
        if self._hook is not None:
            self._hook(text)
        return self._text(text, kernel_id, kind=kind)


def _save(guard: PIIGuard, nb: dict[str, Any]) -> tuple[Any, list[Any], dict[str, int]]:
    """(saved content, records, blocked counts) of one save of a copy of ``nb``."""
    model = {"type": "notebook", "content": copy.deepcopy(nb)}
    job = Job()
    try:
        SaveScanner(guard, None).scan_model(model, "n.ipynb", job)
    except HTTPError as exc:
        assert exc.status_code == 403
    records = [(where, v.action, dict(v.entities), list(v.findings)) for where, v in job.records]
    return model["content"], records, dict(job.blocked)


def test_save_from_cache_equals_fresh_save() -> None:
    # The last text is clean as plain text and an SSN as HTML (application/json strings with
    # '&' are displayed as HTML): the stream's scan is no answer for the JSON value.
    nb = _notebook("clean text", f"ssn {SSN}", f"mail {EMAIL} from {IP}", "clean text", HIDDEN)
    fresh = _save(_guard(0), nb)
    stream, value = (fresh[0]["cells"][5]["outputs"][i] for i in (0, 2))
    assert stream["text"] == HIDDEN and "<US_SSN>" in value["data"]["application/json"]["v"]
    guard = _guard()
    count = Counting(guard)
    first = _save(guard, nb)
    scanned = len(count.texts)
    second = _save(guard, nb)
    assert first == fresh and second == fresh
    assert scanned > 0 and len(count.texts) == scanned  # the second save scanned nothing
    content, records, _ = second
    assert SSN not in str(content) and EMAIL not in str(content)
    assert {r[0]["cell"] for r in records} >= {1, 3, 4}


def test_cached_records_carry_this_saves_cell_numbers() -> None:
    guard = _guard()
    _save(guard, _notebook(f"ssn {SSN}", "clean"))
    # Two cells inserted above: the same outputs are now cells 4 and 5, not 2 and 3.
    moved = _notebook("other", "more", f"ssn {SSN}", "clean")
    count = Counting(guard)
    assert _save(guard, moved) == _save(_guard(0), moved)
    assert f"ssn {SSN}" not in count.texts  # a hit, yet numbered for this save
    cells = {r[0]["cell"] for r in _save(guard, moved)[1] if r[0].get("output") == 1}
    assert 4 in cells and 2 not in cells


def test_new_live_secret_invalidates() -> None:
    secrets = SecretRegistry()
    guard = _guard(secrets=secrets)
    nb = _notebook(f"build {TOKEN} done")
    before, records, _ = _save(guard, nb)
    assert TOKEN in str(before) and not any(r[2].get("SECRET") for r in records)
    secrets.set("k1", [TOKEN])
    after, records, _ = _save(guard, nb)
    assert TOKEN not in str(after) and "<SECRET>" in str(after)
    assert any(r[2].get("SECRET") for r in records)
    assert _save(guard, nb) == _save(_guard(0, secrets), nb)
    secrets.discard("k1")  # revoked: the text is clean again, as a fresh scan says
    assert TOKEN in str(_save(guard, nb)[0])


def test_secret_issued_during_a_save_is_not_cached_for_the_next() -> None:
    secrets = SecretRegistry()
    guard = _guard(secrets=secrets)
    nb = _notebook(f"build {TOKEN} done", "later output")

    def issue(text: str) -> None:
        if text == "later output" and not secrets.all():
            secrets.set("k1", [TOKEN])  # after the token's text was scanned as clean

    Counting(guard, issue)
    assert TOKEN in str(_save(guard, nb)[0])
    assert len(guard._save_cache) == 0  # that save's scans were not kept
    assert "<SECRET>" in str(_save(guard, nb)[0])


@pytest.mark.parametrize(
    "change",
    [
        lambda g: setattr(g.policy, "actions", {"IP_ADDRESS": "redact"}),
        lambda g: g.policy.actions.update({"IP_ADDRESS": "redact"}),  # in place: no event
        lambda g: setattr(g.policy, "actions", {"IP_ADDRESS": "block"}),
        lambda g: setattr(g, "policy", type(g.policy)(actions={"IP_ADDRESS": "redact"})),
    ],
    ids=["trait", "in-place", "block", "new-policy"],
)
def test_policy_change_invalidates(change: Callable[[PIIGuard], None]) -> None:
    guard = _guard()
    nb = _notebook(f"from {IP} ok", pii="nobody")
    before, records, _ = _save(guard, nb)
    assert IP in str(before) and {r[1] for r in records if "IP_ADDRESS" in r[2]} == {"warn"}
    change(guard)
    after, records, blocked = _save(guard, nb)
    assert IP not in str(after)
    assert {r[1] for r in records if "IP_ADDRESS" in r[2]} <= {"redact", "block"}
    # What a guard configured so from the start saves.
    fresh = _guard(0)
    fresh.policy = guard.policy
    fresh.scanner = guard.scanner
    assert (after, records, blocked) == _save(fresh, nb)


def test_bound_evicts_oldest() -> None:
    a, b, c = ("alpha " * 400, "bravo " * 400, "charlie " * 300)  # ~2,400 characters each
    guard = _guard(6_000)
    cache = guard._save_cache
    count = Counting(guard)
    for t in (a, b, c):
        _save(guard, {"cells": [_stream(t)], "metadata": {}})
        assert cache.chars <= 6_000
    count.texts.clear()
    _save(guard, {"cells": [_stream(c)], "metadata": {}})
    assert c not in count.texts  # the newest stayed
    _save(guard, {"cells": [_stream(a)], "metadata": {}})
    assert a in count.texts  # the oldest was evicted: scanned again
    big = "x" * 7_000  # larger than the whole bound: never kept
    _save(guard, {"cells": [_stream(big)], "metadata": {}})
    count.texts.clear()
    _save(guard, {"cells": [_stream(big)], "metadata": {}})
    assert big in count.texts and cache.chars <= 6_000


def _stream(text: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "metadata": {},
        "source": "",
        "outputs": [{"output_type": "stream", "name": "stdout", "text": text}],
    }


def test_cache_off_scans_every_save() -> None:
    nb = _notebook(f"ssn {SSN}", "clean")
    guard = _guard(0)
    assert guard.save_memo() is None
    count = Counting(guard)
    first = _save(guard, nb)
    n = len(count.texts)
    assert _save(guard, nb) == first and len(count.texts) == 2 * n
    on = _guard()
    _save(on, nb)
    assert len(on._save_cache) > 0
    on.save_cache_chars = 0  # turned off while running: emptied, and no longer used
    assert len(on._save_cache) == 0 and on.save_memo() is None
    assert _save(on, nb) == first


def test_failed_save_is_not_cached() -> None:
    guard = _guard()

    def fail(text: str) -> None:
        if text == "boom":
            raise RuntimeError("scanner failure")

    count = Counting(guard, fail)
    nb = _notebook(f"ssn {SSN}", "boom")
    with pytest.raises(HTTPError) as err:
        SaveScanner(guard, None).scan_model(
            {"type": "notebook", "content": copy.deepcopy(nb)}, "n.ipynb", Job()
        )
    assert err.value.status_code == 400 and len(guard._save_cache) == 0
    count.texts.clear()
    with pytest.raises(HTTPError):
        SaveScanner(guard, None).scan_model(
            {"type": "notebook", "content": copy.deepcopy(nb)}, "n.ipynb", Job()
        )
    assert f"ssn {SSN}" in count.texts  # scanned again: nothing of the failed save was kept


def test_concurrent_saves_match_fresh_saves() -> None:
    notebooks = [_notebook(f"n{i} ssn {SSN}", f"n{i} mail {EMAIL}", "shared") for i in range(6)]
    expected = [_save(_guard(0), nb) for nb in notebooks]
    guard = _guard(8_000)  # small: saves evict each other's entries while they run
    errors: list[str] = []

    def run(k: int) -> None:
        for r in range(8):
            i = (k + r) % len(notebooks)
            if _save(guard, notebooks[i]) != expected[i]:
                errors.append(f"thread {k} notebook {i}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and guard._save_cache.chars <= 8_000
