"""Loads the audit shim into this interpreter, then runs the sitecustomize it shadows."""

# os.path keeps interpreter start cheap.
# ruff: noqa: PTH100, PTH120

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    from jupyter_prod_discovery.audit.kernel_shim import install

    install()
except Exception:  # noqa: S110 - never prevent a kernel from starting
    pass

try:
    import importlib.machinery
    import importlib.util

    _spec = importlib.machinery.PathFinder.find_spec(
        "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here]
    )
    if _spec is not None and _spec.loader is not None:
        _module = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_module)
except Exception:  # noqa: S110 - a broken sitecustomize elsewhere is not ours to report
    pass
