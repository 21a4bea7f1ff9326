"""What a scan returns: typed spans with a score, never the matched text itself."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SECRET", "Finding", "redact"]

# Entity type of an exact match with a credential value the broker issued to the kernel.
SECRET = "SECRET"  # noqa: S105 (an entity type name, not a password)


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected entity in a text.

    Only positions are kept so that findings can be logged, audited and returned by the CLI
    without ever carrying the personal data they point at.
    """

    entity_type: str
    start: int
    end: int
    score: float

    def shifted(self, offset: int) -> Finding:
        """The same finding in a larger text that starts ``offset`` characters earlier."""
        return Finding(self.entity_type, self.start + offset, self.end + offset, self.score)


def redact(text: str, findings: list[Finding]) -> str:
    """Replace each finding's span by a typed placeholder such as ``<EMAIL_ADDRESS>``.

    Overlapping spans are merged (the first type wins) so that no fragment of a longer match
    survives between two placeholders.
    """
    if not findings:
        return text
    spans = sorted(findings, key=lambda f: (f.start, -f.end))
    out: list[str] = []
    pos = 0
    cur_start, cur_end, cur_type = spans[0].start, spans[0].end, spans[0].entity_type
    for f in spans[1:]:
        if f.start < cur_end:
            cur_end = max(cur_end, f.end)
            continue
        out.append(text[pos:cur_start])
        out.append(f"<{cur_type}>")
        pos = cur_end
        cur_start, cur_end, cur_type = f.start, f.end, f.entity_type
    out.append(text[pos:cur_start])
    out.append(f"<{cur_type}>")
    out.append(text[cur_end:])
    return "".join(out)
