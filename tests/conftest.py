from __future__ import annotations

from typing import Any

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(prod_discovery_server_config: dict[str, Any]) -> Any:
    from traitlets.config import Config

    return Config(prod_discovery_server_config)
