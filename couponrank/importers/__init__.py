"""Import real campaign logs into the raw schema: one adapter module per source.

An adapter is a module of this package that defines ``ADAPTER``, an
:class:`~couponrank.importers.base.Adapter`; its command-line name is the module's
name with ``-`` for ``_``. The interface and the report are in ``base.py``, the
schema check and the atomic folder write in ``writer.py``; docs/import.md describes
the layout written and each adapter's mapping. Only an adapter module names its data.
"""

from __future__ import annotations

import importlib
import pkgutil

# base.py (pandas, pyarrow) is imported on first use, so that building the CLI's parser,
# which lists the adapters, stays cheap.
_FROM_BASE = {"Adapter", "Imported", "ImportReport", "SourceError"}
__all__ = ["Adapter", "Imported", "ImportReport", "SourceError", "adapter_names", "get_adapter"]

_NOT_ADAPTERS = {"base", "writer"}


def adapter_names() -> list[str]:
    """The adapters' command-line names, found without importing them."""
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
                  if m.name not in _NOT_ADAPTERS and not m.name.startswith("_"))


def __getattr__(name: str):
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_adapter(name: str):
    """The ``Adapter`` of that command-line name."""
    from couponrank.importers.base import SourceError

    if name not in adapter_names():
        raise SourceError(f"unknown adapter {name!r}; known: {', '.join(adapter_names())}")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}").ADAPTER
