from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError


@pytest.fixture
def prod_discovery_extension_config(vault_config: dict[str, Any]) -> dict[str, Any]:
    return {**vault_config, "ProdDiscoveryApp": {"environment_name": "Prod Discovery (test)"}}


async def test_get_status_refuses_anonymous(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("prod-discovery", "api", "status", headers={"Authorization": ""})
    assert err.value.code == 403


async def test_get_status_reports_vault_identity(jp_fetch: Any, openbao: Any) -> None:
    response = await jp_fetch("prod-discovery", "api", "status")
    body = json.loads(response.body)
    assert body["environment"]["name"] == "Prod Discovery (test)"
    assert body["vault"]["reachable"] is True
    assert body["vault"]["authenticated"] is True
    assert body["vault"]["identity"]["policies"] == ["root"]
    assert body["guards"]["credentials"] is True
    assert openbao.root_token not in response.body.decode()
