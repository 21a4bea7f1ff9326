"""How the policy's verdicts are written into notebook outputs: shared by the save hook and the
CLI. Saved outputs are rewritten by the live guard's own walk (``PIIGuard.content``), so that a
saved output is what the browser was shown; :func:`rewrite_output` (the policy applied to one
output directly) has no caller in the package any more and is kept only with its tests.

- One output is one value: the text/plain and text/html of a DataFrame are judged together and
  each entity counts once per value (``PIIPolicy.scan_bundle``), in the output's
  ``metadata.prod_discovery`` and in the audit trail.
- In text/html the placeholder is escaped and wrapped in a visible, styled span, so a redacted
  cell shows ``<EMAIL_ADDRESS>`` instead of an empty cell (an unescaped ``<EMAIL_ADDRESS>`` is
  a tag to the browser).
- Every other place of a notebook (sources, markdown, metadata, attachments) is judged with the
  same policy (``pii.notebook``), so the save guard reports what ``scan`` and the export gate
  find; it never rewrites the user's own text, only outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..pii import Finding, PIIPolicy, Verdict
from ..pii.notebook import SCANNED_MIME, places, scan_notebook
from .live import NOTICE, PIIGuard, map_strings, summary
from .scancache import Memo

__all__ = ["Located", "apply_to_notebook", "iter_texts", "locate", "rewrite_output"]

Secrets = Callable[[str], list[Finding]]
_RANK = {"allow": 0, "warn": 1, "redact": 2, "block": 3}


@dataclass(frozen=True)
class Located:
    """A finding with where it is: cell (None for the notebook or a text file), output index
    (None outside outputs) and field (a MIME type, ``text``, ``source``, ``metadata``...)."""

    cell: int | None
    output: int | None
    field: str
    finding: Finding


def iter_texts(nb: dict[str, Any]) -> Any:
    """(cell index, output index, field, text) for every scannable output text."""
    for place, bundle in places(nb):
        if place.part == "output":
            for field, text in bundle.items():
                yield place.cell, place.output, field, text


def _secrets(guard: PIIGuard | None, kernel_id: str | None = None) -> Secrets | None:
    if guard is None or guard.secrets is None:
        return None
    return guard.matcher(kernel_id).find


def locate(guard: PIIGuard, nb: dict[str, Any] | None, text: str | None) -> list[Located]:
    """Findings kept by the policy in every place of a notebook, or in a text."""
    out: list[Located] = []
    secrets = _secrets(guard)
    if nb is not None:
        for judged in scan_notebook(guard.policy, nb, secrets):
            p = judged.place
            for field, findings in judged.fields.items():
                out.extend(Located(p.cell, p.output, field, f) for f in findings)
    if text is not None:
        verdict = guard.policy.scan(text, secrets(text) if secrets else ())
        out.extend(Located(None, None, "text", f) for f in verdict.findings)
    return out


def _text(value: Any) -> str:
    return "".join(map(str, value)) if isinstance(value, list) else str(value)


def rewrite_output(
    policy: PIIPolicy, output: dict[str, Any], secrets: Secrets | None = None
) -> tuple[Verdict, dict[str, Any] | None]:
    """The verdict on one output (counts per value) and the output rewritten by policy.

    The rewritten output is None when nothing changes (allow, or warn: then only the verdict
    matters). Display outputs get ``metadata.prod_discovery = {action, entities}``. Works on
    nbformat outputs and on iopub message contents alike (``output_type`` or ``msg_type``
    given as the ``output_type`` key).
    """
    kind = output.get("output_type")

    def extra(text: str) -> list[Finding]:
        return secrets(text) if secrets else []

    new = dict(output)
    if kind == "stream":
        text = _text(output.get("text", ""))
        verdict = policy.scan(text, extra(text))
        new["text"] = policy.redact_text(text, verdict)
    elif kind == "error":
        evalue = str(output.get("evalue", ""))
        verdict = policy.scan(evalue, extra(evalue))
        new["evalue"] = policy.redact_text(evalue, verdict)
        lines: list[str] = []
        tb_verdict = Verdict("allow", [])
        for line in output.get("traceback") or []:
            v = policy.scan(str(line), extra(str(line)))
            tb_verdict.merge(v)
            lines.append(policy.redact_text(str(line), v))
        new["traceback"] = lines
        verdict.merge(tb_verdict, per_value=True)  # the traceback repeats the error's value
    else:
        data = dict(output.get("data") or {})
        texts = {m: _text(data[m]) for m in SCANNED_MIME if isinstance(data.get(m), str | list)}
        verdict, redacted = policy.scan_bundle(texts, {m: extra(t) for m, t in texts.items()})
        data.update(redacted)
        for mime in SCANNED_MIME:
            if mime in data and mime not in texts:  # JSON values: every string inside
                json_verdict = Verdict("allow", [])

                def fn(s: str, acc: Verdict = json_verdict) -> str:
                    v = policy.scan(s, extra(s))
                    acc.merge(v)
                    return policy.redact_text(s, v) if v.action in ("redact", "block") else s

                data[mime] = map_strings(data[mime], fn)
                verdict.merge(json_verdict, per_value=True)
        new["data"] = data
    if not verdict.entities:
        return verdict, None
    if verdict.action == "block":
        new = _blocked(output, verdict.entities)
    elif verdict.action in ("allow", "warn"):
        new = dict(output)
    if kind not in ("stream", "error"):
        meta = dict(new.get("metadata") or {})
        meta["prod_discovery"] = {"action": verdict.action, "entities": dict(verdict.entities)}
        new["metadata"] = meta
    return verdict, new


def _blocked(output: dict[str, Any], entities: dict[str, int]) -> dict[str, Any]:
    notice = NOTICE.format(summary(entities))
    kind = output.get("output_type")
    if kind == "stream":
        return {**output, "text": notice + "\n"}
    if kind == "error":
        return {**output, "evalue": notice, "traceback": [notice]}
    return {**output, "data": {"text/plain": notice}}


def apply_to_notebook(
    guard: PIIGuard, nb: dict[str, Any], memo: Memo | None = None
) -> list[tuple[int | None, int | str | None, str, dict[str, int]]]:
    """Rewrite outputs in place by policy; report every place with findings.

    Returns (cell, output, action, entities) per place: ``output`` is the output index, or the
    part's name (``source``, ``metadata``, ``attachment``) for the user's own text, which is
    reported with its action but never rewritten. ``memo`` (the save guard's) gives the scans
    of texts an earlier save scanned (``scancache``).
    """
    policy = guard.policy
    secrets = _secrets(guard)

    def judge(text: str) -> Verdict:
        return policy.scan(text, secrets(text) if secrets else ())

    results: list[tuple[int | None, int | str | None, str, dict[str, int]]] = []
    for place, bundle in places(nb, outputs=False):  # outputs: below, as the live guard does
        verdict = Verdict("allow", [])
        for text in bundle.values():
            verdict.merge(memo.scan(text, judge) if memo is not None else judge(text))
        if verdict.entities:
            results.append((place.cell, place.part, verdict.action, dict(verdict.entities)))
    for ci, cell in enumerate(nb.get("cells") or []):
        outputs = cell.get("outputs") or []
        for oi, out in enumerate(outputs):
            kind = out.get("output_type")
            if kind not in ("stream", "error", "execute_result", "display_data"):
                continue
            # The live guard's own scan (normalised as rendered, active content by policy,
            # counts per value), so that a saved output is what the browser was shown.
            content = dict(out)
            if kind == "stream":
                content["text"] = _text(out.get("text", ""))
            elif kind != "error":
                data = dict(out.get("data") or {})
                for mime, value in data.items():
                    if isinstance(value, list) and all(isinstance(x, str) for x in value):
                        data[mime] = "".join(value)
                content["data"] = data
            scan = guard.content(kind, content, None, memo)
            if not scan.verdict.entities:
                continue
            results.append((ci, oi, scan.verdict.action, dict(scan.verdict.entities)))
            if scan.content is not None and _RANK[scan.verdict.action] >= _RANK["redact"]:
                new = scan.content
                outputs[oi] = type(out)(new) if isinstance(out, dict) else new
    return results
