"""The statement's data sources (service/data_sources.py): merged per (kind, target) with where
each was seen, scrubbed of credentials and issued secrets, without the shim's drop summaries."""

from __future__ import annotations

from jupyter_prod_discovery.service.data_sources import AUTHOR_SESSION, CLEAN_RUN, merge_sources


def test_merge_sources_deduplicates_and_says_where_each_was_seen() -> None:
    merged = merge_sources(
        {
            AUTHOR_SESSION: [
                {"kind": "dbapi", "target": "psycopg postgresql://db:5432/sales", "count": 2},
                {"kind": "dbapi", "target": "psycopg postgresql://db:5432/sales", "count": 1},
                {"kind": "file", "target": "/data/a.csv"},
                {"kind": "dropped", "target": "*", "count": 50},
            ],
            CLEAN_RUN: [{"kind": "dbapi", "target": "psycopg postgresql://db:5432/sales"}],
        }
    )
    assert merged == [
        {
            "kind": "dbapi",
            "target": "psycopg postgresql://db:5432/sales",
            "count": 4,
            "seen_in": [AUTHOR_SESSION, CLEAN_RUN],
        },
        {"kind": "file", "target": "/data/a.csv", "count": 1, "seen_in": [AUTHOR_SESSION]},
    ]


def test_merge_sources_never_lists_a_secret() -> None:
    merged = merge_sources(
        {
            AUTHOR_SESSION: [
                {"kind": "dbapi", "target": "psycopg host=db password=hunter2 user=ann"},
                {"kind": "socket", "target": "https://ann:pa55@api.example/x"},
                {"kind": "file", "target": "/tmp/v-token-s3cr3t-value/out.csv"},
            ]
        },
        secrets=frozenset({"s3cr3t-value"}),
    )
    targets = [m["target"] for m in merged]
    assert "psycopg host=db password=*** user=ann" in targets
    assert "https://ann:***@api.example/x" in targets
    assert "/tmp/v-token-[REDACTED]/out.csv" in targets
    assert not any(s in str(merged) for s in ("hunter2", "pa55", "s3cr3t"))


def test_merge_sources_keeps_the_most_used_within_the_limit() -> None:
    events = [{"kind": "file", "target": f"/f{i}", "count": i + 1} for i in range(10)]
    merged = merge_sources({CLEAN_RUN: events}, limit=3)
    assert [m["target"] for m in merged] == ["/f9", "/f8", "/f7"]
    assert merge_sources({CLEAN_RUN: [{"kind": "file", "target": "/x", "count": "junk"}]}) == [
        {"kind": "file", "target": "/x", "count": 1, "seen_in": [CLEAN_RUN]}
    ]
