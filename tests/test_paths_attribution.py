"""Who ran it, through which path: request-time statements claimed at send time."""

from __future__ import annotations

from jupyter_prod_discovery.guard.attribution import Attributions, mark_via, unmark


def test_claim_matches_code_before_order() -> None:
    a = Attributions()
    a.expect("k", "rest:one", "ann", code="x = 1")
    a.expect("k", "rest:two", "bob", code="x = 2")
    assert a.claim("k", "x = 2").user == "bob"
    assert a.claim("k", "x = 1").user == "ann"


def test_claim_without_code_in_order_and_counted() -> None:
    a = Attributions()
    a.expect("k", "server-side:docs", "ann", count=2)
    a.expect("k", "server-side:docs", "bob")
    assert [a.claim("k", c).user for c in ("a", "b", "c")] == ["ann", "ann", "bob"]
    assert a.claim("k", "d").via == "server"  # nothing stated: unattributed


def test_claim_other_kernel_unattributed() -> None:
    a = Attributions()
    a.expect("k1", "rest:one", "ann", code="1")
    who = a.claim("k2", "1")
    assert who.via == "server" and who.user is None


def test_withdrawn_statement_not_claimed() -> None:
    a = Attributions()
    stated = a.expect("k", "rest:one", "ann", code="1")
    a.withdraw("k", stated)
    assert a.claim("k", "1").user is None


def test_mark_outside_a_live_request_ignored() -> None:
    a = Attributions()
    token = mark_via("mcp:execute_code", "ann")
    try:
        # No request is being served in this context: the mark could be a stale copy.
        assert a.claim("k", "1").via == "server"
    finally:
        unmark(token)
