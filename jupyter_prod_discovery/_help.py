"""List this extension's options in ``jupyter server --help-all``.

jupyter_server prints ``--help-all`` from ``ServerApp.classes`` before any extension is loaded,
so extension options never appear there. A one-line ``.pth`` file installed with the package
checks ``sys.argv`` at interpreter start-up and, only for ``--help-all``, imports this module,
which adds a tiny import hook that appends our configurable classes to ``ServerApp.classes`` right after
``jupyter_server.serverapp`` is imported.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGET = "jupyter_server.serverapp"


def _add_classes(module: ModuleType) -> None:
    from .extension import ProdDiscoveryApp

    server_app: Any = module.ServerApp
    for cls in [ProdDiscoveryApp, *ProdDiscoveryApp.classes]:
        if cls not in server_app.classes:
            server_app.classes.append(cls)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        # Help output must never break the server, whatever our import does.
        with contextlib.suppress(Exception):
            _add_classes(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Install the hook when this process was asked for help (called from the .pth file)."""
    argv = list(getattr(sys, "argv", None) or getattr(sys, "orig_argv", None) or [])
    if "--help-all" in argv and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
