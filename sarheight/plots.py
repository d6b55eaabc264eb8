"""Quicklook figures (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .io import atomic_path


def save_figure(fig, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (a reader never sees half a file),
    close it and return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _figure(n_panels: int, columns: int = 3):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = int(np.ceil(n_panels / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 4.0 * rows), squeeze=False)
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def hillshade(
    height: np.ndarray,
    cell_size: tuple[float, float] = (1.0, 1.0),
    azimuth_deg: float = 315.0,
    altitude_deg: float = 45.0,
) -> np.ndarray:
    """Unitless shaded relief in [0, 1] of a height grid (m) with cells of (dy, dx) metres."""
    filled = np.nan_to_num(height, nan=float(np.nanmean(height)))
    gy, gx = np.gradient(filled, abs(cell_size[0]), abs(cell_size[1]))
    slope = np.pi / 2 - np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    shaded = np.sin(alt) * np.sin(slope) + np.cos(alt) * np.cos(slope) * np.cos(az - aspect)
    return np.clip(shaded, 0, 1)


def quicklook(
    panels: Sequence[tuple[str, xr.DataArray | np.ndarray, dict]],
    path: str | os.PathLike[str],
    title: str | None = None,
    columns: int = 3,
) -> Path:
    """Save a grid of image panels as a PNG, atomically.

    ``panels`` holds (title, image, imshow keyword arguments) triples; a ``"colorbar"``
    key in the keywords gives the colour bar's label.
    """
    import matplotlib.pyplot as plt

    fig, axes = _figure(len(panels), columns)
    for ax, (name, image, kwargs) in zip(axes, panels, strict=False):
        kwargs = dict(kwargs)
        label = kwargs.pop("colorbar", None)
        values = image.values if isinstance(image, xr.DataArray) else np.asarray(image)
        kwargs.setdefault("interpolation", "nearest")
        im = ax.imshow(values, **kwargs)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if label is not None:
            fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
