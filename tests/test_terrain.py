"""Terrain scenes: variables, the no-leak rule, the coarse DEM, files and the command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

from sarheight.errors import InvalidInputError
from sarheight.masks import MaskCode
from sarheight.priors import sample_priors
from sarheight.simulate import simulate_sar
from sarheight.terrain import (
    INPUT_VARIABLES,
    degrade_dem,
    observed_scene,
    open_scene,
    pass_direction,
    scene_geometry,
    simulate_scene,
    write_scene,
)
from tests.helpers import plane_dem, rough_dem

FACTOR = 3


@pytest.fixture(scope="module")
def truth() -> xr.DataArray:
    dem = rough_dem(seed=3, rows=48, cols=45, relief=700.0)
    # Heights on a 1/16 m step, so that adding +-0.5 m is exact in float32.
    dem = dem.copy(data=(np.round(dem.values * 16) / 16).astype(np.float32))
    dem.attrs["dem_name"] = "rough"
    return dem


@pytest.fixture(scope="module")
def geometry(truth):
    return scene_geometry(truth, "ascending")


@pytest.fixture(scope="module")
def scene(truth, geometry) -> xr.Dataset:
    return simulate_scene(truth, geometry, coarse_factor=FACTOR, prior_fraction=0.02, seed=1,
                          other_geometry=scene_geometry(truth, "descending"), progress=False)


def test_scene_has_every_variable_on_the_dem_grid(scene, truth):
    for name in (*INPUT_VARIABLES, "height", "other_sar_reconstructed", "other_sar_geocoded"):
        assert name in scene.data_vars, name
        assert scene[name].dims == ("y", "x")
        assert scene[name].shape == truth.shape
    assert scene.rio.crs == truth.rio.crs
    np.testing.assert_array_equal(scene["x"], truth["x"])
    assert scene["layover"].dtype == np.uint8 and scene["prior_mask"].dtype == np.uint8
    assert scene["sar_reconstructed"].dtype == np.float32
    np.testing.assert_array_equal(scene["height"].values, truth.values)
    mask = scene["prior_mask"].values.astype(bool)
    assert mask.sum() == round(0.02 * truth.size)
    np.testing.assert_allclose(scene["prior_height"].values[mask], truth.values[mask])
    assert np.isnan(scene["prior_height"].values[~mask]).all()
    assert (scene["prior_distance"].values[mask] == 0).all() and (scene["prior_distance"].values[~mask] > 0).all()
    assert np.isfinite(scene["prior_interpolated"].values).all()
    # The corrected coarse DEM passes through the priors.
    np.testing.assert_allclose(scene["coarse_corrected"].values[mask], truth.values[mask], atol=1e-3)
    attrs = scene.attrs
    assert attrs["kind"] == "simulated" and attrs["pass_direction"] == "ascending"
    assert attrs["other_pass"] == "descending" and attrs["coarse_factor"] == FACTOR and attrs["dem_name"] == "rough"
    # The relief gives the scene layover and shadow to learn from.
    assert (scene["layover"].values == MaskCode.ACTIVE).any() and (scene["shadow"].values != MaskCode.NONE).any()


def test_reconstruction_differs_from_geocoding_only_near_layover(scene):
    layover = scene["layover"].values
    in_layover = (layover == MaskCode.ACTIVE) | (layover == MaskCode.PASSIVE)
    difference = np.abs(scene["sar_reconstructed"].values - scene["sar_geocoded"].values)
    assert np.nanmedian(difference[in_layover]) > 1.0
    # Cells of a pixel shared with layover take part in its reallocation (a pixel is a
    # couple of cells wide here); elsewhere the two differ by the contribution weights
    # of cells within one pixel: tenths of a dB.
    far = ~ndimage.binary_dilation(in_layover, iterations=2) & np.isfinite(difference)
    assert far.sum() > 100
    assert np.median(difference[far]) < 0.2 and np.percentile(difference[far], 90) < 1.0


def _perturbed_below_coarse_resolution(dem: xr.DataArray) -> xr.DataArray:
    """``dem`` with +-0.5 m inside every coarse block, the blocks' means unchanged (exactly:
    the heights are on a 1/16 m step)."""
    rows, cols = dem.shape
    bump = np.zeros((rows, cols), dtype=np.float32)
    for r0 in range(0, rows - rows % FACTOR, FACTOR):
        for c0 in range(0, cols - cols % FACTOR, FACTOR):
            bump[r0, c0], bump[r0 + 1, c0 + 2] = 0.5, -0.5
    out = dem.copy(data=dem.values + bump)
    assert not np.array_equal(out.values, dem.values)
    return out


def test_no_input_is_computed_from_the_fine_dem(truth, geometry):
    """The inputs are unchanged when the fine DEM changes below the coarse DEM's resolution
    (the observation held the same: it is the only input the fine terrain makes)."""
    perturbed = _perturbed_below_coarse_resolution(truth)
    np.testing.assert_array_equal(degrade_dem(perturbed, FACTOR).values, degrade_dem(truth, FACTOR).values)
    observation = simulate_sar(truth, geometry, seed=4)
    priors = sample_priors(truth, count=12, seed=2)
    scenes = [observed_scene(observation, degrade_dem(dem, FACTOR), geometry, priors, progress=False)
              for dem in (truth, perturbed)]
    for name in INPUT_VARIABLES:
        np.testing.assert_array_equal(scenes[0][name].values, scenes[1][name].values, err_msg=name)
    # And simulate_scene takes its masks, incidence and coarse heights from the coarse DEM only.
    a, b = (simulate_scene(dem, geometry, coarse_factor=FACTOR, prior_count=12, seed=2, progress=False)
            for dem in (truth, perturbed))
    for name in ("local_incidence_angle", "layover", "shadow", "coarse_height", "prior_mask"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert not np.array_equal(a["height"].values, b["height"].values)


def test_degrade_dem_averages_blocks_and_keeps_planes():
    dem = plane_dem(30, 33, slope_east_deg=20.0, slope_north_deg=-10.0)
    coarse = degrade_dem(dem, FACTOR)
    assert coarse.shape == dem.shape and np.isfinite(coarse.values).all()
    # Block means of a plane lie on the plane at the block centres; bilinear between them
    # is the plane again (inside the outermost half block).
    inner = (slice(2, -3), slice(2, -3))
    np.testing.assert_allclose(coarse.values[inner], dem.values[inner], atol=0.05)
    np.testing.assert_array_equal(degrade_dem(dem, 1).values, dem.values)
    with pytest.raises(InvalidInputError, match="coarse factor"):
        degrade_dem(dem, 0)
    with pytest.raises(InvalidInputError, match="too small"):
        degrade_dem(dem, 20)


def test_scene_geometry_passes_and_pixels(truth):
    ascending, descending = (scene_geometry(truth, direction) for direction in ("ascending", "descending"))
    assert pass_direction(ascending) == "ascending" and pass_direction(descending) == "descending"
    assert ascending.grid.range_spacing < 30.0  # slant-range pixels of a ~30 m ground cell
    with pytest.raises(InvalidInputError, match="pass_direction"):
        scene_geometry(truth, "sideways")


def test_scene_file_round_trip(scene, tmp_path):
    path = write_scene(scene, tmp_path / "scene.nc")
    assert [p.name for p in tmp_path.iterdir()] == ["scene.nc"]
    opened = open_scene(path)
    assert opened.rio.crs == scene.rio.crs
    for name in scene.data_vars:
        np.testing.assert_array_equal(opened[name].values, scene[name].values, err_msg=name)
    assert opened.attrs["scene_name"] == scene.attrs["scene_name"]
    with pytest.raises(InvalidInputError, match=r"\.nc"):
        write_scene(scene, tmp_path / "scene.tif")


def test_observed_scene_takes_points_and_a_reference(truth, geometry):
    observation = simulate_sar(truth, geometry, seed=5)
    coarse = degrade_dem(truth, FACTOR)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, truth.shape[0], 8), rng.integers(0, truth.shape[1], 8)
    points = pd.DataFrame({"x": truth["x"].values[cols], "y": truth["y"].values[rows],
                           "height": truth.values[rows, cols]})
    scene = observed_scene(observation, coarse, geometry, points, points_crs=truth.rio.crs,
                           points_vertical_datum="ellipsoid", truth=truth,
                           progress=False)
    assert scene.attrs["kind"] == "observed"
    assert int(scene["prior_mask"].sum()) == len({(r, c) for r, c in zip(rows, cols, strict=True)})
    np.testing.assert_array_equal(scene["height"].values, truth.values)
    wrong = sample_priors(truth.isel(y=slice(0, 20)), count=3)
    with pytest.raises(InvalidInputError, match="grid"):
        observed_scene(observation, coarse, geometry, wrong, progress=False)
