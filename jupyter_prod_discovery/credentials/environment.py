"""Which of the server's environment variables kernels and terminals inherit: an allow-list.

Why: jupyter_client starts a kernel with a copy of the server's whole ``os.environ``, and
jupyter_server_terminals does the same for every shell. Whatever the server was started with (the
hub API token, the audit MAC key, a cloud key, the server's own Vault token) was therefore one
``os.environ`` away from notebook code. Removing known names cannot keep up with what a deployment
puts in the server's environment; building the child's environment from the few names a kernel
needs can. The deny list is the second line: it stops names that look like secrets even when an
allow pattern (or a deployment's ``"*"``) would pass them.

This is defence in depth, not a boundary: kernel code runs as the server's OS user. See
``hardening.py`` for the rest (a non-dumpable server, private runtime files).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from traitlets import List, TraitError, Unicode, observe, validate
from traitlets.config import LoggingConfigurable
from traitlets.utils.importstring import import_item

__all__ = ["DEFAULT_ALLOW", "DEFAULT_DENY", "KernelEnvironment", "link"]

#: What a kernel or a shell needs to work, and nothing that usually holds a secret.
DEFAULT_ALLOW = (
    # the POSIX basics: programs, home, user, locale, time zone, terminal, temporary files
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "TMPDIR",
    "TEMP",
    "TMP",
    "XDG_*",
    "EDITOR",
    "VISUAL",
    "PAGER",
    # Python and its environments (the kernel's interpreter may depend on them)
    "PYTHON*",
    "VIRTUAL_ENV",
    "CONDA_*",
    "LD_LIBRARY_PATH",
    # Jupyter: what jupyter_client/the session manager set for the kernel (JPY_SESSION_NAME;
    # JPY_PARENT_PID and JPY_INTERRUPT_EVENT are added after the provisioner), and the path
    # settings jupyter_core and IPython read
    "JPY_*",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_CONFIG_PATH",
    "JUPYTER_DATA_DIR",
    "JUPYTER_PATH",
    "JUPYTER_RUNTIME_DIR",
    "JUPYTER_PLATFORM_DIRS",
    "JUPYTER_PREFER_ENV_PATH",
    "JUPYTER_NO_CONFIG",
    "IPYTHONDIR",
    "MPLBACKEND",
    "MPLCONFIGDIR",
    # TLS trust for clients in the kernel (Vault, databases behind a corporate CA)
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    # thread counts and GPUs of numerical libraries
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    # Windows: without SYSTEMROOT Python cannot even open a socket
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "USERPROFILE",
    "USERNAME",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
    "PROGRAMFILES",
    "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE",
)

#: Names that say their value is a secret (the guard redacts the server's values of these).
SECRET_NAMES = (
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "*KEY*",
    "*CREDENTIAL*",
    "*PRIVATE*",
    "*_DSN",
    "DATABASE_URL",
)

#: Names never inherited, whatever ``allow`` says (matched without regard to case).
DEFAULT_DENY = (
    *SECRET_NAMES,
    "VAULT_*",
    "BAO_*",
    "JUPYTERHUB_*",
    "JUPYTER_TOKEN",
    "PROD_DISCOVERY_*",
    "AWS_*",
    "AZURE_*",
)

_PATTERN = re.compile(r"[^\s=\x00]+")


def _compile(patterns: Iterable[str], flags: int) -> re.Pattern[str]:
    """One regular expression for a list of globs (``fnmatch`` syntax), matching whole names."""
    parts = [fnmatch.translate(p) for p in patterns]
    # An empty list matches nothing (not everything, which "(?:)" would).
    return re.compile("|".join(parts) if parts else r"(?!)", flags)


class KernelEnvironment(LoggingConfigurable):
    """The server's environment variables that kernels and terminals inherit.

    Configure it as ``c.KernelEnvironment.<trait>``. Variables set explicitly for the child (a
    kernelspec's ``env``, whose ``${VAR}`` templates are filled from the filtered environment; the
    credentials issued to a kernel; the audit shim's variables; the terminal's own
    ``TERM``/``COLUMNS``/``LINES`` and ``extra_env``) are not subject to it.
    """

    allow = List(
        Unicode(),
        default_value=list(DEFAULT_ALLOW),
        config=True,
        help="""Environment variables of the server that kernels and terminals inherit: names or
        glob patterns ('LC_*', 'CONDA_*'; case-sensitive except on Windows). Everything else in
        the server's environment is withheld. Default: what a kernel or a shell needs to work
        (PATH, HOME, USER, LANG, LC_*, TZ, TERM, TMPDIR, XDG_*, PYTHON*, VIRTUAL_ENV, CONDA_*,
        JPY_*, Jupyter's path variables, TLS trust files, thread counts, Windows essentials).
        To pass more without repeating this list, use KernelEnvironment.pass_through. Names
        matched by KernelEnvironment.deny are never passed.""",
    )
    pass_through = List(
        Unicode(),
        config=True,
        help="""Further server environment variables to pass to kernels and terminals, on top of
        KernelEnvironment.allow (names or glob patterns), e.g.
        c.KernelEnvironment.pass_through = ["MY_TEAM_SETTING", "HTTPS_PROXY"]. Default: none.
        KernelEnvironment.deny still wins: a name it matches is withheld, and a warning at start
        says which pattern withholds it.""",
    )
    deny = List(
        Unicode(),
        default_value=list(DEFAULT_DENY),
        config=True,
        help="""Server environment variables never passed to kernels and terminals, even when
        allow or pass_through match them: names or glob patterns, matched without regard to case.
        Default: names that look like secrets (*TOKEN*, *SECRET*, *PASSWORD*, *PASSWD*,
        *PASSPHRASE*, *KEY*, *CREDENTIAL*, *PRIVATE*, *_DSN, DATABASE_URL) and the variables of
        Vault/OpenBao (VAULT_*, BAO_*), JupyterHub (JUPYTERHUB_*), this extension
        (PROD_DISCOVERY_*), JUPYTER_TOKEN, AWS_* and AZURE_*. Variables set explicitly for a
        kernel (its kernelspec's env, its issued credentials) are not filtered, but a kernelspec's
        ${VAR} templates are filled from the filtered environment only.""",
    )

    _allow_re: re.Pattern[str] | None = None
    _deny_re: re.Pattern[str] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._matchers()  # compiled now, so that a withheld pass_through is reported at start

    @validate("allow", "pass_through", "deny")
    def _valid_patterns(self, proposal: Any) -> list[str]:
        name = proposal["trait"].name
        for pattern in proposal["value"]:
            if not _PATTERN.fullmatch(pattern):
                raise TraitError(
                    f"KernelEnvironment.{name}: {pattern!r} is not an environment variable name "
                    "or glob pattern (non-empty, without '=', whitespace or NUL)"
                )
        return list(proposal["value"])

    @observe("allow", "pass_through", "deny")
    def _patterns_changed(self, change: Any) -> None:
        self._allow_re = self._deny_re = None

    def _matchers(self) -> tuple[re.Pattern[str], re.Pattern[str]]:
        if self._allow_re is None or self._deny_re is None:
            case = re.IGNORECASE if os.name == "nt" else 0
            self._allow_re = _compile([*self.allow, *self.pass_through], case)
            self._deny_re = _compile(self.deny, re.IGNORECASE)
            for pattern in self.pass_through:
                denied_by = [d for d in self.deny if _compile([d], re.IGNORECASE).match(pattern)]
                if denied_by:
                    self.log.warning(
                        "KernelEnvironment.pass_through %r is withheld: KernelEnvironment.deny "
                        "matches it with %s (remove that from deny to pass it)",
                        pattern,
                        ", ".join(repr(d) for d in denied_by),
                    )
        return self._allow_re, self._deny_re

    def passes(self, name: str) -> bool:
        """Whether the server's variable ``name`` may be inherited (allowed and not denied)."""
        allow, deny = self._matchers()
        return allow.match(name) is not None and deny.match(name) is None

    def build(
        self, inherited: Mapping[str, str], explicit: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The child's environment: the inherited variables that pass, then the explicit ones.

        ``inherited`` is what the child would otherwise get (a copy of the server's environment);
        ``explicit`` holds what was set for this child on purpose and is kept as it is.
        """
        allow, deny = self._matchers()
        env = {
            k: v for k, v in inherited.items() if allow.match(k) is not None and not deny.match(k)
        }
        if explicit:
            env.update(explicit)
        return env


def link(serverapp: Any) -> None:
    """Terminals get the same allow-list: our terminal manager, unless one is configured.

    Runs in ``_link_jupyter_server_extension``, before jupyter_server_terminals (linked after us,
    in name order) reads ``TerminalsExtensionApp.terminal_manager_class`` from the config.
    """
    section = serverapp.config.get("TerminalsExtensionApp", {})
    if "terminal_manager_class" in section:
        if _filters(section["terminal_manager_class"]):
            return
        serverapp.log.warning(
            "TerminalsExtensionApp.terminal_manager_class is configured: terminals are not "
            "given the KernelEnvironment allow-list (derive the class from "
            "jupyter_prod_discovery._compat.FilteredTerminalManager to keep it)"
        )
        return
    try:
        from .._compat import FilteredTerminalManager
    except ImportError as exc:  # terminals not installed: nothing to filter
        serverapp.log.debug("terminals not filtered: %s", exc)
        return
    serverapp.config.TerminalsExtensionApp.terminal_manager_class = FilteredTerminalManager


def _filters(configured: Any) -> bool:
    """Whether a configured terminal manager class (or its import string) is ours or derived."""
    try:
        from .._compat import FilteredTerminalManager

        klass = import_item(configured) if isinstance(configured, str) else configured
    except Exception:  # not importable: the terminals extension will say so itself
        return False
    return isinstance(klass, type) and issubclass(klass, FilteredTerminalManager)
