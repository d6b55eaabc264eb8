"""Optional parts of the install: the learning floor needs the ``ml`` extra.

``pip install sarheight`` is the physics (geocoding, simulation, reconstruction); the
models, their data modules and their training need PyTorch, Lightning, torchmetrics,
jsonargparse and h5py, which ``pip install 'sarheight[ml]'`` adds. The packages that
need them call :func:`require` first, so that a missing extra is named, not a module.
"""

from __future__ import annotations

import importlib

#: The modules the ``ml`` extra provides, by import name.
ML_MODULES = ("torch", "lightning", "torchmetrics", "jsonargparse", "h5py")


class MissingExtraError(ImportError):
    """A part of sarheight was imported without the optional dependencies it needs."""


def require(part: str, *modules: str, extra: str = "ml") -> None:
    """Import ``modules`` (default: all of the ``ml`` extra's), or raise
    :class:`MissingExtraError` naming ``part``, the extra and how to install it."""
    missing = []
    for name in modules or ML_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(
            f"{part} needs {', '.join(missing)}, which the {extra!r} extra installs: pip install 'sarheight[{extra}]'"
        )
