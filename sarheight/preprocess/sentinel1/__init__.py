"""Sentinel-1 Level-1 products (SLC and GRD), read with xarray-sentinel.

``product``
    the manifest, the measurement groups of a product ("IW/VV", "IW2/VH") and their
    files: :func:`read_manifest`, :func:`available_groups`, :func:`select_measurement`,
    :func:`group_files`.
``annotation``
    what the geometry needs from one measurement (:func:`read_annotation`, used by
    ``RadarGeometry.from_sentinel1``) and its geolocation grid (:func:`geolocation_grid`).
``intensity``
    calibrated (β⁰, σ⁰, γ⁰), optionally thermal-noise-corrected intensity in radar
    geometry (:func:`read_intensity`).

Products are opened with :func:`sarheight.preprocess.safe.open_safe`. The names are
imported from their module on first use, so that reading an annotation does not load
what reading pixels needs (dask, tqdm).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .annotation import Sentinel1Annotation, geolocation_grid, read_annotation
    from .intensity import CALIBRATIONS, read_intensity
    from .product import (
        ManifestFiles,
        available_groups,
        cross_polarised_measurement,
        group_files,
        level1_product_type,
        read_manifest,
        select_measurement,
    )

__all__ = [
    "CALIBRATIONS",
    "ManifestFiles",
    "Sentinel1Annotation",
    "available_groups",
    "cross_polarised_measurement",
    "geolocation_grid",
    "group_files",
    "level1_product_type",
    "read_annotation",
    "read_intensity",
    "read_manifest",
    "select_measurement",
]

#: The module of each public name.
_MODULES = {
    "CALIBRATIONS": "intensity",
    "ManifestFiles": "product",
    "Sentinel1Annotation": "annotation",
    "available_groups": "product",
    "cross_polarised_measurement": "product",
    "geolocation_grid": "annotation",
    "group_files": "product",
    "level1_product_type": "product",
    "read_annotation": "annotation",
    "read_intensity": "intensity",
    "read_manifest": "product",
    "select_measurement": "product",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
