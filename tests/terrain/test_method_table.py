"""The one table of refinement methods (sarheight.terrain.method_table): every list of
methods the package spells is the table's, and every row points at what exists."""

from __future__ import annotations

import importlib

import numpy as np

from sarheight.refinement import METHODS
from sarheight.terrain.method_table import (
    BAR_METHODS,
    BY_KEY,
    COMMAND_METHODS,
    REFINEMENT_METHODS,
    by_command,
)
from sarheight.terrain.methods import BASELINES, NON_LEARNED, baseline_maps
from sarheight.terrain.variables import INPUT_VARIABLES, VARIABLE_ATTRS


def test_every_row_points_at_what_exists():
    assert len(BY_KEY) == len(REFINEMENT_METHODS)
    for method in REFINEMENT_METHODS:
        assert method.label and method.short_label and method.reads, method.key
        assert method.variable is not None or method.maker is not None, method.key
        if method.variable is not None:
            assert method.variable in VARIABLE_ATTRS or method.variable in INPUT_VARIABLES, method.variable
        if method.maker is not None:
            module, function = method.maker.split(":")
            assert callable(getattr(importlib.import_module(f"sarheight.{module}"), function)), method.maker
        assert not (method.learned and method.bar), method.key


def test_the_package_lists_its_methods_from_the_table():
    from sarheight.cli.terrain_refine import METHODS as COMMAND
    from sarheight.studies.inversion import METHOD_LABELS
    from sarheight.studies.stacking import REFINEMENT_METHOD_NAMES

    assert METHODS == COMMAND == COMMAND_METHODS
    assert set(COMMAND_METHODS) == {method.command for method in REFINEMENT_METHODS if method.command}
    assert by_command("back-projection").variable == "coarse_refined" and by_command("network").learned
    assert NON_LEARNED == BAR_METHODS and "priors_only" in BASELINES and "inversion" not in BASELINES
    assert METHOD_LABELS["back_projection_priors"] == "back-projection + kriged priors"
    assert set(REFINEMENT_METHOD_NAMES.values()) == set(COMMAND_METHODS) - {"network"}


def test_a_scene_gives_every_baselines_map():
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.simulated import simulate_scene
    from tests.support.scenes import rough_dem

    dem = rough_dem(seed=3, rows=36, cols=36, relief=200.0)
    scene = simulate_scene(dem, scene_geometry(dem, "ascending"), coarse_factor=3, seed=1, progress=False)
    maps = baseline_maps(scene)
    assert list(maps) == list(BASELINES)
    for key, values in maps.items():
        assert values.shape == dem.shape and np.isfinite(values).mean() > 0.5, key
