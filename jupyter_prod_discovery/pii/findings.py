"""What a scan returns: typed spans with a score, never the matched text itself."""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ALWAYS_REDACTED",
    "CREDENTIAL",
    "SECRET",
    "Finding",
    "looks_like_html",
    "placeholder",
    "redact",
]

# Entity type of an exact match with a credential value the broker issued to the kernel.
SECRET = "SECRET"  # noqa: S105 (an entity type name, not a password)
# Entity type of a credential-shaped string (cloud key, private key, JWT, password=...).
CREDENTIAL = "CREDENTIAL"
# Types never passed in the clear, whatever the policy says.
ALWAYS_REDACTED = frozenset({SECRET, CREDENTIAL})
# The visible mark of a redacted value in HTML: JupyterLab's sanitizer keeps ``class`` and
# these inline styles, so the placeholder shows as a grey, outlined tag in its table cell.
HTML_MARK = (
    '<span class="jp-ProdDiscovery-redacted" title="redacted by the Prod Discovery PII policy" '
    'style="background-color: #eeeeee; color: #b71c1c; border: 1px solid #b71c1c; '
    'border-radius: 3px; padding: 0 3px; font-family: monospace; font-size: 90%;">{}</span>'
)


class Finding(NamedTuple):
    """One detected entity in a text.

    Only positions are kept so that findings can be logged, audited and returned by the CLI
    without ever carrying the personal data they point at. A named tuple (immutable, and
    three times cheaper to build than a frozen dataclass: a table yields thousands).
    """

    entity_type: str
    start: int
    end: int
    score: float

    def shifted(self, offset: int) -> Finding:
        """The same finding in a larger text that starts ``offset`` characters earlier."""
        return Finding(self.entity_type, self.start + offset, self.end + offset, self.score)


def placeholder(entity_type: str, html: bool = False) -> str:
    """``<EMAIL_ADDRESS>`` in text; in HTML the same, escaped, inside a visible styled span."""
    if not html:
        return f"<{entity_type}>"
    return HTML_MARK.format(f"&lt;{entity_type}&gt;")


def looks_like_html(text: str) -> bool:
    """An HTML fragment (a rendered table, a widget's markup), not plain text that holds '<'."""
    head = text.lstrip()[:1]
    return head == "<" and "</" in text


def redact(text: str, findings: list[Finding], html: bool | None = None) -> str:
    """Replace each finding's span by a typed placeholder such as ``<EMAIL_ADDRESS>``.

    Overlapping spans are merged (the first type wins) so that no fragment of a longer match
    survives between two placeholders. With ``html`` the placeholder is escaped and marked
    (see :func:`placeholder`): unescaped, ``<EMAIL_ADDRESS>`` is taken for a tag by the
    browser and the cell shows empty. ``html=None`` decides from the text itself
    (:func:`looks_like_html`), for callers that do not know the MIME type.
    """
    if not findings:
        return text
    if html is None:
        html = looks_like_html(text)
    spans = sorted(findings, key=lambda f: (f.start, -f.end))
    out: list[str] = []
    pos = 0
    cur_start, cur_end, cur_type = spans[0].start, spans[0].end, spans[0].entity_type
    for f in spans[1:]:
        if f.start < cur_end:
            cur_end = max(cur_end, f.end)
            continue
        out.append(text[pos:cur_start])
        out.append(placeholder(cur_type, html))
        pos = cur_end
        cur_start, cur_end, cur_type = f.start, f.end, f.entity_type
    out.append(text[pos:cur_start])
    out.append(placeholder(cur_type, html))
    out.append(text[cur_end:])
    return "".join(out)
