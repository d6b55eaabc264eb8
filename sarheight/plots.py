"""Quicklook figures (matplotlib, no display needed)."""

from __future__ import annotations

import itertools
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .io import atomic_path
from .masks import MaskCode
from .raster import gradient

#: The panel keywords of a layover or shadow mask (:class:`sarheight.masks.MaskCode`):
#: one colour per code with a legend of the codes' values and names, not a colour bar;
#: cells outside the image (255) are left blank (give the mask with them as NaN).
#: The colour of each mask code, the same in every figure.
MASK_COLOURS = {int(MaskCode.NONE): "#b8d8b0", int(MaskCode.ACTIVE): "#d62728", int(MaskCode.PASSIVE): "#1f77b4"}

MASK_LEGEND: dict = {"categories": [(int(MaskCode.NONE), "0 none", MASK_COLOURS[int(MaskCode.NONE)]),
                                    (int(MaskCode.ACTIVE), "1 active", MASK_COLOURS[int(MaskCode.ACTIVE)]),
                                    (int(MaskCode.PASSIVE), "2 passive", MASK_COLOURS[int(MaskCode.PASSIVE)])],
                     "blank": "255 outside the image: blank"}

#: What the hatching of a panel means (drawn under its cells without a value).
NO_VALUE_NOTE = "hatched: cells without a value (outside the image, voids)"


def fitted_title(fig, title: str, fontsize: float = 11) -> None:
    """``title`` as the figure's title, wrapped so that no line is wider than the figure
    (a centred line wider than it is clipped at both edges)."""
    width = fig.get_figwidth() * fig.dpi * 0.96
    renderer = fig.canvas.get_renderer()
    for chars in range(max(20, len(title)), 19, -4):
        text = fig.suptitle("\n".join(textwrap.wrap(title, chars)), fontsize=fontsize)
        if text.get_window_extent(renderer).width <= width:
            return


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


def _categorical(ax, values: np.ndarray, categories: Sequence[tuple[int, str, str]], blank: str | None,
                 kwargs: dict) -> None:
    """A categorical image: one colour per value, a legend of them below the panel."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    codes = [value for value, _, _ in categories]
    cmap = ListedColormap([colour for _, _, colour in categories])
    edges = [codes[0] - 0.5, *[(a + b) / 2 for a, b in itertools.pairwise(codes)], codes[-1] + 0.5]
    ax.imshow(values, cmap=cmap, norm=BoundaryNorm(edges, cmap.N), **kwargs)
    handles = [Patch(facecolor=colour, edgecolor="0.4", label=label) for _, label, colour in categories]
    if blank:
        handles.append(Patch(facecolor="white", edgecolor="0.4", label=blank))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8, frameon=False)


def hillshade(
    height: np.ndarray,
    cell_size: tuple[float, float] = (1.0, 1.0),
    azimuth_deg: float = 315.0,
    altitude_deg: float = 45.0,
) -> np.ndarray:
    """Unitless shaded relief in [0, 1] of a height grid (m) with cells of (dy, dx) metres."""
    filled = np.nan_to_num(height, nan=float(np.nanmean(height)))
    gy, gx = gradient(filled, (abs(cell_size[0]), abs(cell_size[1])))
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
    key in the keywords gives the colour bar's label; ``"categories"`` (a list of
    (value, label, colour)) draws a categorical image with a legend instead (as
    :data:`MASK_LEGEND`), ``"blank"`` a legend line for its NaN cells.
    """
    import matplotlib.pyplot as plt

    fig, axes = _figure(len(panels), columns)
    hatched = False
    for ax, (name, image, kwargs) in zip(axes, panels, strict=False):
        kwargs = dict(kwargs)
        label = kwargs.pop("colorbar", None)
        categories = kwargs.pop("categories", None)
        blank = kwargs.pop("blank", None)
        values = image.values if isinstance(image, xr.DataArray) else np.asarray(image)
        kwargs.setdefault("interpolation", "nearest")
        if categories is None and np.issubdtype(np.asarray(values).dtype, np.floating) and np.isnan(values).any():
            # Cells without a value show the axes' hatching, never a colour of the scale
            # (white is the top of the terrain scale).
            ax.set_facecolor("white")
            ax.patch.set_hatch("////")
            ax.patch.set_edgecolor("#b0b0b0")
            hatched = True
        if categories is not None:
            _categorical(ax, values, categories, blank, kwargs)
        else:
            im = ax.imshow(values, **kwargs)
        # Wrapped to the panel's width: a long title would run over its neighbours' or be cut
        # at the figure's edge.
        ax.set_title("\n".join(part for line in name.split("\n") for part in textwrap.wrap(line, 44) or [""]),
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if label is not None and categories is None:
            bar = fig.colorbar(im, ax=ax, shrink=0.8, label=label)
            # One solid band per level, not a stack of thin rectangles with seams.
            bar.solids.set_rasterized(True)
            bar.solids.set_edgecolor("face")
    if title:
        fitted_title(fig, title, fontsize=11)
    if hatched:
        fig.text(0.01, 0.005, NO_VALUE_NOTE, fontsize=8, color="0.35", ha="left", va="bottom")
    # Room for the title above and the note below; each row's titles clear the row above.
    fig.tight_layout(rect=(0, 0.02 if hatched else 0, 1, 0.97 if title else 1), h_pad=1.6)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
