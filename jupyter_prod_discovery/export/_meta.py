"""Metaclass for plug-in bases that are both ABCs and configurables (as jupyter_server_fileid)."""

from __future__ import annotations

from abc import ABCMeta

from traitlets.traitlets import MetaHasTraits

__all__ = ["ABCConfigurableMeta"]


class ABCConfigurableMeta(ABCMeta, MetaHasTraits):
    """Lets ``@abstractmethod`` work on LoggingConfigurable subclasses."""
