"""Who ran it, through which path: request-time statements claimed at send time."""

from __future__ import annotations

import pytest

from jupyter_prod_discovery.guard.attribution import Attributions, mark_via, murmur2, unmark


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


@pytest.mark.parametrize("source", ["", "a", "ab", "abc", "abcd", "print('é ü')\n" * 7])
def test_murmur2_is_the_hash_jupyter_server_documents_states(source: str) -> None:
    from paths_support import need

    need("jupyter_server_documents")
    from jupyter_server_documents.rooms.ynotebook_room import _source_hash

    assert murmur2(source) == _source_hash(source)


def test_claim_cells_by_source_not_by_order() -> None:
    a = Attributions()
    a.expect("k", "server-side:docs", "ann", cells=[("c1", murmur2("x = 1"))])
    a.expect("k", "server-side:docs", "bob", cells=[("c2", murmur2("x = 2"))])
    bob = a.claim("k", "x = 2")  # Bob's cell runs first
    assert (bob.user, bob.cell_id) == ("bob", "c2")
    ann = a.claim("k", "x = 1")
    assert (ann.user, ann.cell_id) == ("ann", "c1")


def test_cell_edited_after_it_was_queued_is_unattributed() -> None:
    a = Attributions()
    a.expect("k", "server-side:docs", "ann", cells=[("c1", murmur2("x = 1"))])
    # The source that runs is not the one Ann approved: nobody's statement names it.
    assert a.claim("k", "x = 1  # edited by bob").user is None
