"""The kernel and locked environment of the notebook, from an allow-list the administrator owns.

Why an allow-list and not the kernelspec: kernelspecs live in directories the notebook's author
can write (``~/.local/share/jupyter/kernels``), so the ``argv[0]`` of a kernelspec is the
author's choice of program. The exporter runs in the trusted domain; running that program there
would run the author's code next to the service's keys. So the notebook's kernel *name* is looked
up in :attr:`KernelAllowList.kernels` (name -> interpreter path) and no kernelspec file is read.

The packages are read by running :mod:`importlib.metadata` in the allow-listed interpreter with
``-I -S``: no ``PYTHON*`` variable, no user site, no ``site`` import, so no ``.pth`` file of that
environment runs; the probe adds the environment's site-packages to ``sys.path`` itself. Only
names and versions are recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from traitlets import Dict, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

__all__ = [
    "EnvironmentError_",
    "KernelAllowList",
    "kernel_info",
    "locked_environment",
    "requirements_txt",
]


class EnvironmentError_(RuntimeError):
    """The kernel's environment could not be read."""


_PROBE = r"""
import json, os, platform, sys, sysconfig
# -S skipped site.py, so find the environment's site-packages as site.py would (a venv's
# pyvenv.cfg), without processing any .pth file.
cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(sys.executable))), "pyvenv.cfg")
prefixes = [sys.prefix]
if os.path.isfile(cfg):
    with open(cfg) as f:
        text = f.read().lower().replace(" ", "")
    prefixes = [os.path.dirname(cfg)] + (
        [sys.prefix] if "include-system-site-packages=true" in text else []
    )
for prefix in prefixes:
    # A venv's own layout by the "venv" scheme: under -S, sys.prefix is the base interpreter's,
    # and Debian's default scheme (posix_local) would look in <venv>/local/.../dist-packages.
    scheme = "venv" if prefix != sys.prefix and "venv" in sysconfig.get_scheme_names() else None
    paths = sysconfig.get_paths(scheme or sysconfig.get_default_scheme(),
                                vars={"base": prefix, "platbase": prefix})
    for key in ("purelib", "platlib"):
        if paths.get(key) and paths[key] not in sys.path:
            sys.path.append(paths[key])
import importlib.metadata as md, importlib.util
mods = json.loads(sys.argv[1])
pk = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name:
        pk[name] = d.version
missing = [m for m in mods if importlib.util.find_spec(m) is None]
print(json.dumps({"python_version": platform.python_version(), "packages": pk, "missing": missing}))
"""


class KernelAllowList(LoggingConfigurable):
    """Kernels a notebook may be exported with, each mapped to an interpreter the admin trusts."""

    kernels = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Kernel names a notebook may be exported with -> absolute path of the Python
        interpreter whose packages are locked into the bundle. The exporter never reads a
        kernelspec (their argv[0] is user-writable) and never runs another interpreter. List only
        interpreters whose environment the notebook's authors cannot write. Default
        {'python3': <the exporter's own interpreter>}.""",
    )
    display_names = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Display name recorded for each allowed kernel (name -> text). Default: the
        kernel name.""",
    )

    @default("kernels")
    def _kernels_default(self) -> dict[str, str]:
        return {"python3": sys.executable}

    @validate("kernels")
    def _validate_kernels(self, proposal: Any) -> dict[str, str]:
        kernels = dict(proposal["value"])
        for name, python in kernels.items():
            if not Path(python).is_absolute():
                raise TraitError(
                    f"KernelAllowList.kernels[{name!r}]: {python!r} is not an absolute path"
                )
        return kernels

    def resolve(self, kernel_name: str) -> dict[str, str]:
        """Name, display name, language and interpreter of an allowed kernel; ValueError if not."""
        allowed = self.kernels
        if kernel_name not in allowed:
            raise ValueError(
                f"the notebook's kernel {kernel_name!r} is not allowed for export "
                f"(allowed: {', '.join(sorted(allowed))}; see KernelAllowList.kernels)"
            )
        return {
            "name": kernel_name,
            "display_name": self.display_names.get(kernel_name, kernel_name),
            "language": "python",
            "python": allowed[kernel_name],
        }


def kernel_info(kernel_name: str, parent: Any = None) -> dict[str, str]:
    """The allow-listed kernel ``kernel_name`` (configured on ``parent``'s config)."""
    return KernelAllowList(parent=parent).resolve(kernel_name)


def locked_environment(python: str, modules: list[str], timeout: float = 60) -> dict[str, Any]:
    """``{"python_version", "packages": {name: version}, "missing": [modules not importable]}``."""
    try:
        proc = subprocess.run(
            [python, "-I", "-S", "-c", _PROBE, json.dumps(modules)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentError_(f"cannot run the kernel's interpreter {python}: {exc}") from None
    if proc.returncode != 0:
        raise EnvironmentError_(f"reading the kernel's packages failed in {python}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def requirements_txt(packages: dict[str, str]) -> str:
    """Pinned requirements, one ``name==version`` a line, sorted case-insensitively."""
    lines = [f"{n}=={v}" for n, v in sorted(packages.items(), key=lambda kv: kv[0].lower())]
    return "# Locked from the Discovery kernel's interpreter by jupyter prod-discovery export\n" + (
        "\n".join(lines) + "\n"
    )
