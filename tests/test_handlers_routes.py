"""Our routes are only tried for paths under our prefix, and still serve every endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado import web
from tornado.routing import HostMatches

from jupyter_prod_discovery.handlers import API, PrefixMatches, narrow_routes


@pytest.fixture
def prod_discovery_extension_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "AuditTrail": {"mac_key": "k" * 32, "spool_dir": str(tmp_path / "spool")},
        "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
    }


def _our_rules(web_app: Any) -> list[Any]:
    return [r for r in web_app.default_router.rules if isinstance(r.matcher, PrefixMatches)]


async def test_narrow_routes_serves_endpoints_under_base_url(
    jp_serverapp: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    # pytest-jupyter's base URL holds an escaped character ("/a%40b/"): the prefix is the raw path.
    (rule,) = _our_rules(jp_serverapp.web_app)
    assert rule.matcher.prefix == f"{jp_base_url.rstrip('/')}{API}/"
    status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
    assert "guards" in status
    # Every one of our patterns is still reachable (a wrong prefix would leave them 404).
    for route in rule.target.rules:
        assert route.matcher.regex.pattern.startswith(rule.matcher.prefix)
    # The server's own routes are unaffected.
    listing = json.loads((await jp_fetch("api", "contents")).body)
    assert listing["type"] == "directory"


class _Handler(web.RequestHandler):
    pass


def test_narrow_routes_leaves_unexpected_shapes_alone() -> None:
    app = web.Application()
    before = list(app.default_router.rules)
    app.add_handlers(".*$", [("/prod-discovery/api/x", _Handler), ("/elsewhere", _Handler)])
    # A pattern outside the prefix: narrowing would make it unreachable.
    assert not narrow_routes(app, before, "/prod-discovery/api/")
    assert all(not isinstance(r.matcher, PrefixMatches) for r in app.default_router.rules)

    before = list(app.default_router.rules)
    app.add_handlers(".*$", [("/prod-discovery/api/a", _Handler)])
    app.add_handlers(".*$", [("/prod-discovery/api/b", _Handler)])
    assert not narrow_routes(app, before, "/prod-discovery/api/")  # two rules: not ours alone

    before = list(app.default_router.rules)
    app.add_handlers("example\\.com$", [("/prod-discovery/api/c", _Handler)])
    assert not narrow_routes(app, before, "/prod-discovery/api/")  # a host-specific rule
    assert isinstance(app.default_router.rules[-2].matcher, HostMatches)

    before = list(app.default_router.rules)
    app.add_handlers(".*$", [("/prod-discovery/api/d", _Handler)])
    assert narrow_routes(app, before, "/prod-discovery/api/")
    assert len(_our_rules(app)) == 1
