"""The one classification of terrain cells (``sarheight.terrain.classes``) and its two
groupings: each the former scheme of its reader, cell for cell, on random masks and slopes
(the masks' classes of the training's metrics; the refinement's of the studies), every cell
class in one group of each."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import binary_dilation

from sarheight.data.terrain import TERRAIN_CLASSES, terrain_classes
from sarheight.masks import MaskCode
from sarheight.terrain.classes import (
    CELL_CLASSES,
    MASK_GROUPS,
    REFINEMENT_CLASSES,
    REFINEMENT_GROUPS,
    ClassGrouping,
    cell_classes,
)

CODES = np.array([MaskCode.NONE, MaskCode.ACTIVE, MaskCode.PASSIVE, MaskCode.OUTSIDE], dtype=np.uint8)


def _masks_twin(layover, shadow):
    """The training's classes as the data module defined them: layover over shadow over
    the cells within three of shadow over the rest."""
    in_shadow = (shadow == MaskCode.ACTIVE) | (shadow == MaskCode.PASSIVE)
    near = binary_dilation(in_shadow, np.ones((3, 3), dtype=bool), iterations=3) & ~in_shadow
    codes = np.full(layover.shape, TERRAIN_CLASSES.index("other"), dtype=np.uint8)
    codes[near] = TERRAIN_CLASSES.index("shadow_adjacent")
    codes[in_shadow] = TERRAIN_CLASSES.index("shadow")
    codes[layover == MaskCode.PASSIVE] = TERRAIN_CLASSES.index("passive_layover")
    codes[layover == MaskCode.ACTIVE] = TERRAIN_CLASSES.index("active_layover")
    return codes


def _refinement_twin(layover, shadow, slope):
    """The refinement's classes as the studies defined them: layover over shadow over a
    coarse slope of 20 degrees or more over the rest."""
    codes = np.full(layover.shape, REFINEMENT_CLASSES.index("other"), dtype=np.uint8)
    codes[slope >= 20.0] = REFINEMENT_CLASSES.index("steep")
    codes[(shadow == MaskCode.ACTIVE) | (shadow == MaskCode.PASSIVE)] = REFINEMENT_CLASSES.index("shadow")
    codes[(layover == MaskCode.ACTIVE) | (layover == MaskCode.PASSIVE)] = REFINEMENT_CLASSES.index("layover")
    return codes


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 30), cols=st.integers(1, 30),
       share=st.floats(0.0, 0.5))
def test_each_grouping_is_its_readers_former_scheme(seed, rows, cols, share):
    rng = np.random.default_rng(seed)
    layover = np.where(rng.random((rows, cols)) < share, rng.choice(CODES, (rows, cols)), MaskCode.NONE)
    shadow = np.where(rng.random((rows, cols)) < share, rng.choice(CODES, (rows, cols)), MaskCode.NONE)
    slope = rng.uniform(0.0, 45.0, (rows, cols))
    slope[rng.random((rows, cols)) < 0.1] = np.nan
    cells = cell_classes(layover, shadow, slope)
    np.testing.assert_array_equal(MASK_GROUPS.codes(cells), _masks_twin(layover, shadow))
    np.testing.assert_array_equal(REFINEMENT_GROUPS.codes(cells), _refinement_twin(layover, shadow, slope))
    # The masks' grouping does not need the slope: a scene without a coarse DEM has it.
    np.testing.assert_array_equal(terrain_classes(layover, shadow), _masks_twin(layover, shadow))
    np.testing.assert_array_equal(MASK_GROUPS.codes(cell_classes(layover, shadow)), _masks_twin(layover, shadow))


def test_every_cell_class_is_in_one_group_of_each_grouping():
    assert TERRAIN_CLASSES == MASK_GROUPS.names
    for grouping in (MASK_GROUPS, REFINEMENT_GROUPS):
        united = [cell for name in grouping.names for cell in grouping.members[name]]
        assert sorted(united) == sorted(CELL_CLASSES)
    with pytest.raises(ValueError, match="every cell class once"):
        ClassGrouping(("layover", "rest"), {"layover": ("active_layover",), "rest": ("other",)})
