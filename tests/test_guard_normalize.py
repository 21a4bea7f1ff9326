"""Rendering text as the frontend shows it, and mapping findings back to what was sent."""

from __future__ import annotations

import pytest

from jupyter_prod_discovery.guard.normalize import active_reason, render
from jupyter_prod_discovery.pii import Scanner

SCANNER = Scanner()


@pytest.mark.parametrize(
    ("kind", "sent", "value"),
    [
        ("plain", "ssn 5\u200b36-2\u00ad2-12\u200c34 x", "5\u200b36-2\u00ad2-12\u200c34"),
        ("plain", "ssn \uff15\uff13\uff16\uff0d22-1234", "\uff15\uff13\uff16\uff0d22-1234"),
        ("plain", "ssn \u0665\u0663\u0666-22-1234", "\u0665\u0663\u0666-22-1234"),
        ("plain", "ssn 536\x1b[1m-22-\x1b[0m1234", "536\x1b[1m-22-\x1b[0m1234"),
        ("plain", "ssn 536-22-12X\b34", "536-22-12X\b34"),
        ("plain", "XXX-22-1234\r536", "-22-1234\r536"),  # the X's are overwritten
        ("plain", "ssn 536\u201322\u22121234", "536\u201322\u22121234"),
        ("html", "<p>536-<b></b>22-<!-- c -->1234</p>", "536-<b></b>22-<!-- c -->1234"),
        ("html", "ssn &#53;36-22-1234", "&#53;36-22-1234"),
        ("html", "<svg><text>536-22</text><text>-1234</text></svg>", "536-22</text><text>-1234"),
        ("markdown", "ssn 536\\-**22**-1234", "536\\-**22**-1234"),
        ("latex", r"$5\,3\,6-22-1234$", r"5\,3\,6-22-1234"),
    ],
)
def test_render_finds_value_and_maps_it_to_what_was_sent(kind: str, sent: str, value: str) -> None:
    assert not [f for f in SCANNER.scan(sent) if f.entity_type == "US_SSN"]  # hidden as sent
    shown = render(sent, kind)
    assert shown is not None
    (finding,) = [f for f in SCANNER.scan(shown.text) if f.entity_type == "US_SSN"]
    start, end = shown.source(finding.start, finding.end)
    assert sent[start:end] == value


def test_render_email_with_entity_maps_back() -> None:
    sent = "mail ann.smith&commat;example.com"
    shown = render(sent, "html")
    assert shown is not None and shown.text == "mail ann.smith@example.com"
    (f,) = SCANNER.scan(shown.text)
    assert sent[slice(*shown.source(f.start, f.end))] == "ann.smith&commat;example.com"


def test_plain_ascii_needs_no_rendering() -> None:
    assert render("row 1 of 20\tok\n", "plain") is None


@pytest.mark.parametrize(
    ("kind", "text", "active"),
    [
        ("html", "<b>x</b><table><tr><td>1</td></tr></table>", False),
        ("html", "<style scoped>.dataframe tbody tr th {vertical-align: top;}</style>", False),
        ("html", "<script>x()</script>", True),
        ("html", "<img src=x onerror=alert(1)>", True),
        ("html", "<style>.q::after{content:'x'}</style>", True),
        ("html", "<style>.q::after{cont\\65nt:'x'}</style>", True),
        ("html", '<a href="javascript:x()">a</a>', True),
        ("markdown", "# title\n<iframe src=x></iframe>", True),
        ("latex", r"$\frac{1}{2}$", False),
        ("latex", r"$\unicode{x35}$", True),
    ],
)
def test_active_content_is_recognised(kind: str, text: str, active: bool) -> None:
    assert (active_reason(text, kind) is not None) is active
