"""The wheel carries the prebuilt labextension and the server config: installing it needs no Node."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from jupyter_prod_discovery.pytest_plugin import require

PREFIX = "jupyter_prod_discovery-0.1.0.data/data/"


def _wheel() -> Path:
    path = os.environ.get("PROD_DISCOVERY_WHEEL", "")
    require(bool(path) and Path(path).is_file(), "no wheel built (set PROD_DISCOVERY_WHEEL)")
    return Path(path)


def test_wheel_contains_prebuilt_labextension() -> None:
    names = set(zipfile.ZipFile(_wheel()).namelist())
    ext = PREFIX + "share/jupyter/labextensions/jupyter-prod-discovery/"
    assert ext + "package.json" in names
    assert ext + "install.json" in names
    assert any(n.startswith(ext + "static/remoteEntry.") for n in names)
    assert ext + "schemas/jupyter-prod-discovery/plugin.json" in names


def test_wheel_enables_server_extension() -> None:
    wheel = zipfile.ZipFile(_wheel())
    config = PREFIX + "etc/jupyter/jupyter_server_config.d/jupyter_prod_discovery.json"
    assert config in wheel.namelist()
    assert b'"jupyter_prod_discovery": true' in wheel.read(config)


def test_wheel_declares_entry_points() -> None:
    wheel = zipfile.ZipFile(_wheel())
    ep = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(ep).decode()
    assert "jupyter-prod-discovery = jupyter_prod_discovery.cli:main" in text
    assert "[jupyter_client.kernel_provisioners]" in text


def test_wheel_has_no_sources_of_secrets() -> None:
    names = zipfile.ZipFile(_wheel()).namelist()
    assert not any(n.endswith((".env", ".vault-token", "yarn.lock")) for n in names)
    assert not any("node_modules" in n for n in names)
