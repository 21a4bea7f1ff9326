from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from credentials_support import Warehouse, drop_leftover_roles, make_warehouse
from guard_support import V1
from jupyter_client.provisioning.factory import KernelProvisionerFactory

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture(autouse=True, scope="session")
def _private_jupyter_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Jupyter's data directory of this session, not the runner's home.

    Why: a server a test starts without its own ``JUPYTER_DATA_DIR`` writes there: the audit
    trail's default file (``prod_discovery/audit.jsonl``, whose chains then meet those of other
    tests and of earlier or concurrent runs), the notebook notary's and the file ID manager's
    databases. Tests that need their own directory still set one (pytest-jupyter's fixtures do).
    """
    patch = pytest.MonkeyPatch()
    patch.setenv("JUPYTER_DATA_DIR", str(tmp_path_factory.mktemp("jupyter-data")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _fresh_provisioner_factory() -> Iterator[None]:
    """A process singleton: each test's server must configure its own default provisioner."""
    KernelProvisionerFactory.clear_instance()
    yield
    KernelProvisionerFactory.clear_instance()


@pytest.fixture
def warehouse(openbao: Any, postgres_database: str) -> Iterator[Warehouse]:
    """A seeded database secrets engine over a fresh database; leftover roles dropped after."""
    wh = make_warehouse(openbao, postgres_database)
    try:
        yield wh
    finally:
        drop_leftover_roles(wh)


@pytest.fixture
def jp_server_config(prod_discovery_server_config: dict[str, Any]) -> Any:
    from traitlets.config import Config

    return Config(prod_discovery_server_config)


@pytest.fixture(params=[V1, "legacy"])
def protocol(request: Any) -> str:
    """The kernel websocket protocols every guard test runs in: v1 (binary) and legacy JSON."""
    return str(request.param)


@pytest.fixture
def guard_config() -> dict[str, Any]:
    """Extra server config of a guard test (a module or test overrides it)."""
    return {}
