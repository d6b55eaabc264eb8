"""The terrain classes: one classification of a scene's cells, from what a user knows of
them (the layover and shadow masks, and the coarse DEM's slope where there is one, never
the truth), and the groupings of it that each reader takes.

Every cell falls in one of :data:`CELL_CLASSES`, by precedence: layover (active, then
passive) over shadow (active or passive) over the cells within
:data:`SHADOW_ADJACENT_CELLS` of shadow (split by their slope) over steep cells (a coarse
slope of :data:`STEEP_SLOPE_DEG` or more) over the rest. Two groupings read it:

- :data:`MASK_CLASSES` (:data:`MASK_GROUPS`): what the masks alone tell apart, the
  classes of the training's per-class metrics and loss weights (the slope is not asked
  for: a scene without a coarse DEM has them too);
- :data:`REFINEMENT_CLASSES` (:data:`REFINEMENT_GROUPS`): layover, shadow, steep and
  the rest, the classes the studies score refinements by and calibration gates the
  network's correction on.

Both are unions of the cell classes, so that one cell's class is the same fact in every
table; a new reader adds a grouping here, not a classification of its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import binary_dilation

from ..masks import MaskCode

__all__ = ["CELL_CLASSES", "MASK_CLASSES", "MASK_GROUPS", "REFINEMENT_CLASSES", "REFINEMENT_GROUPS",
           "SHADOW_ADJACENT_CELLS", "STEEP_SLOPE_DEG", "ClassGrouping", "cell_classes"]

#: The classes of a cell, by code (the index), in order of precedence.
CELL_CLASSES = ("active_layover", "passive_layover", "shadow", "steep_shadow_adjacent", "shadow_adjacent", "steep",
                "other")

#: How near shadow (cells, in any direction) a cell counts as shadow-adjacent.
SHADOW_ADJACENT_CELLS = 3

#: The coarse slope (degrees) from which a cell outside layover and shadow is steep: about
#: where global DEMs' errors double (their error grows with the tangent of the slope).
STEEP_SLOPE_DEG = 20.0


@dataclasses.dataclass(frozen=True)
class ClassGrouping:
    """A grouping of :data:`CELL_CLASSES`: its classes' ``names`` (code = index) and, per
    name, the cell classes it unites (every cell class in exactly one)."""

    names: tuple[str, ...]
    members: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        united = sorted(cell for name in self.names for cell in self.members[name])
        if united != sorted(CELL_CLASSES):
            raise ValueError(f"a grouping must take every cell class once, got {united}")

    def codes(self, cell_codes: np.ndarray) -> np.ndarray:
        """The codes (uint8, the index in :attr:`names`) of cells of ``cell_codes`` (codes
        of :data:`CELL_CLASSES`)."""
        table = np.empty(len(CELL_CLASSES), dtype=np.uint8)
        for code, name in enumerate(self.names):
            for cell in self.members[name]:
                table[CELL_CLASSES.index(cell)] = code
        return table[np.asarray(cell_codes)]


#: The classes the masks alone tell apart: the training's per-class metrics and weights.
MASK_CLASSES = ("active_layover", "passive_layover", "shadow", "shadow_adjacent", "other")
MASK_GROUPS = ClassGrouping(MASK_CLASSES, {
    "active_layover": ("active_layover",), "passive_layover": ("passive_layover",), "shadow": ("shadow",),
    "shadow_adjacent": ("steep_shadow_adjacent", "shadow_adjacent"), "other": ("steep", "other")})

#: The classes refinements are scored by and calibration gates on.
REFINEMENT_CLASSES = ("layover", "shadow", "steep", "other")
REFINEMENT_GROUPS = ClassGrouping(REFINEMENT_CLASSES, {
    "layover": ("active_layover", "passive_layover"), "shadow": ("shadow",),
    "steep": ("steep_shadow_adjacent", "steep"), "other": ("shadow_adjacent", "other")})


def cell_classes(layover: np.ndarray, shadow: np.ndarray, slope_deg: np.ndarray | None = None) -> np.ndarray:
    """The class of every cell (uint8, the index in :data:`CELL_CLASSES`).

    Parameters
    ----------
    layover, shadow : (rows, cols) mask codes (:class:`~sarheight.masks.MaskCode`).
    slope_deg : (rows, cols) the coarse DEM's slope (degrees), or None where the scene has
        no coarse DEM: no cell is then steep (the groupings of the masks alone are the same
        either way).

    Returns
    -------
    np.ndarray : (rows, cols) uint8 codes.
    """
    in_shadow = (shadow == MaskCode.ACTIVE) | (shadow == MaskCode.PASSIVE)
    near_shadow = binary_dilation(in_shadow, np.ones((3, 3), dtype=bool), iterations=SHADOW_ADJACENT_CELLS) & ~in_shadow
    steep = (np.zeros(layover.shape, dtype=bool) if slope_deg is None
             else np.asarray(slope_deg) >= STEEP_SLOPE_DEG)  # NaN slopes are not steep
    codes = np.full(layover.shape, CELL_CLASSES.index("other"), dtype=np.uint8)
    codes[steep] = CELL_CLASSES.index("steep")
    codes[near_shadow] = CELL_CLASSES.index("shadow_adjacent")
    codes[near_shadow & steep] = CELL_CLASSES.index("steep_shadow_adjacent")
    codes[in_shadow] = CELL_CLASSES.index("shadow")
    codes[layover == MaskCode.PASSIVE] = CELL_CLASSES.index("passive_layover")
    codes[layover == MaskCode.ACTIVE] = CELL_CLASSES.index("active_layover")
    return codes
