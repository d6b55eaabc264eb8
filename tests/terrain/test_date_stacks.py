"""Stacks of dates in terrain scenes: each date kept (``sar_dates``), the channels of each
date (``sar_ratio@k``, ``sar_present@k``...), and scenes of one pass or both."""

from __future__ import annotations

import numpy as np
import pytest

from sarheight.errors import InvalidInputError
from sarheight.ground import DateCondition, draw_date_conditions
from sarheight.reconstruction import reconstruct
from sarheight.simulate import simulate_sar
from sarheight.terrain.files import open_scene, write_scene
from sarheight.terrain.geometry import scene_geometry
from sarheight.terrain.grid import block_mean
from sarheight.terrain.observed import observed_scene
from sarheight.terrain.scene_options import Execution, ObservationSpec, SceneProducts
from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes
from sarheight.terrain.simulated import simulate_scene
from sarheight.terrain.variables import date_channel, pass_dates, scene_variable
from tests.support.scenes import rough_dem

#: No progress bars in the tests.
QUIET = Execution(progress=False)


@pytest.fixture(scope="module")
def truth():
    return rough_dem(seed=31, rows=40, cols=40, relief=300.0)


@pytest.fixture(scope="module")
def stack(truth):
    """A scene of both passes x 3 dates, each date kept."""
    return simulate_scene(truth, scene_geometry(truth, "ascending"),
                          opposite_geometry=scene_geometry(truth, "descending"),
                          observation=ObservationSpec(date_conditions=draw_date_conditions(3, 5, moisture_db=1.0,
                                                                                           snow_dates=0)),
                          progress=False)


def test_each_date_is_kept_and_reconstructed_alone(truth):
    geometry = scene_geometry(truth, "ascending")
    images = [simulate_sar(truth, geometry, seed=seed) for seed in (1, 2, 3)]
    coarse = block_mean(truth, 3)
    scene = observed_scene(coarse, images, geometry, None, grid=truth,
                           products=SceneProducts(keep_dates=True, register=False), execution=QUIET)
    assert scene["sar_dates"].dims == ("date", "y", "x") and scene["sar_dates"].sizes["date"] == 3
    assert "other_sar_dates" not in scene and scene.attrs["dates"] == 3
    grid = scene["coarse_height"].rio.write_crs(scene.rio.crs)
    for index, image in enumerate(images):
        alone = reconstruct(grid, image, geometry, progress=False)["backscatter"].values
        with np.errstate(divide="ignore", invalid="ignore"):
            twin = 10.0 * np.log10(np.where(alone > 0, alone, np.nan))
        np.testing.assert_allclose(scene["sar_dates"].values[index], twin, rtol=1e-5, atol=1e-4, equal_nan=True)
    # Kept by default for a pass of several dates, not where declined; a pass of one date
    # is its composite.
    default = observed_scene(coarse, images, geometry, None, grid=truth, products=SceneProducts(register=False),
                             execution=QUIET)
    np.testing.assert_array_equal(default["sar_dates"].values, scene["sar_dates"].values)
    plain = observed_scene(coarse, images, geometry, None, grid=truth,
                           products=SceneProducts(keep_dates=False, register=False), execution=QUIET)
    assert "sar_dates" not in plain
    np.testing.assert_array_equal(plain["sar_reconstructed"].values, scene["sar_reconstructed"].values)
    one = observed_scene(coarse, images[0], geometry, None, grid=truth,
                         products=SceneProducts(keep_dates=True, register=False), execution=QUIET)
    assert "sar_dates" not in one and pass_dates(one) == 1


def test_a_simulated_stack_keeps_its_dates_through_its_file(stack, tmp_path):
    assert stack["sar_dates"].sizes["date"] == 3 and stack["other_sar_dates"].sizes["date"] == 3
    # Each date its own speckle.
    assert not np.allclose(stack["sar_dates"].values[0], stack["sar_dates"].values[1], equal_nan=True)
    opened = open_scene(write_scene(stack, tmp_path / "stack.nc"))
    np.testing.assert_array_equal(opened["sar_dates"].values, stack["sar_dates"].values)
    assert pass_dates(opened) == 3 and pass_dates(opened, "other_") == 3
    # One date of one pass: nothing kept beside the image.
    single = simulate_scene(stack["height"].rio.write_crs(stack.rio.crs), scene_geometry(stack["height"], "ascending"),
                            progress=False)
    assert "sar_dates" not in single and pass_dates(single, "other_") == 0


def test_the_channels_of_each_date(stack):
    for date in range(3):
        present = scene_variable(stack, f"sar_present@{date}")
        image = stack["sar_dates"].values[date]
        np.testing.assert_array_equal(present, np.isfinite(image).astype(np.float32))
        ratio = scene_variable(stack, f"sar_ratio@{date}")
        assert np.isfinite(ratio).mean() > 0.8 and abs(float(np.nanmedian(ratio))) < 0.5
        np.testing.assert_array_equal(scene_variable(stack, f"other_local_incidence_angle@{date}"),
                                      stack["other_local_incidence_angle"].values.astype(np.float32))
    # The dates differ by their speckle: their ratios too.
    assert not np.allclose(scene_variable(stack, "sar_ratio@0"), scene_variable(stack, "sar_ratio@2"), equal_nan=True)
    # A slot beyond the scene's dates is empty.
    assert not scene_variable(stack, "sar_present@3").any()
    assert np.isnan(scene_variable(stack, "other_sar_ratio@7")).all()
    assert np.isnan(scene_variable(stack, "local_incidence_angle@5")).all()


def test_a_scene_of_one_image_is_its_first_date(truth):
    scene = simulate_scene(truth, scene_geometry(truth, "ascending"), seed=4, progress=False)
    # Its only date's ratio is the scene's ratio (the same law fitted to the same image).
    np.testing.assert_allclose(scene_variable(scene, "sar_ratio@0"), scene_variable(scene, "sar_ratio"),
                               rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(scene_variable(scene, "sar_slope@0"), scene_variable(scene, "sar_slope"),
                               rtol=1e-6, atol=1e-6, equal_nan=True)
    # The opposite pass it lacks is empty, not an error.
    assert not scene_variable(scene, "other_sar_present@0").any()
    assert np.isnan(scene_variable(scene, "other_sar_ratio@0")).all()


@pytest.mark.parametrize(("name", "found"), [("sar_ratio@0", ("sar_ratio", 0)),
                                             ("other_sar_present@12", ("other_sar_present", 12)),
                                             ("coarse_slope_east", None)])
def test_date_channel_names(name, found):
    assert date_channel(name) == found


@pytest.mark.parametrize("name", ["sar_ratio@", "sar_ratio@x", "@3"])
def test_malformed_date_channels_are_refused(name):
    with pytest.raises(InvalidInputError, match="date number"):
        date_channel(name)


def test_scene_sets_of_one_pass_and_of_both(truth, tmp_path):
    paths = simulate_scenes([truth.assign_attrs(dem_name="hill")], tmp_path,
                            axes=SceneAxes(passes=("ascending",), opposite_passes=(True, False), dates=(1, 2)),
                            progress=False)
    names = sorted(path.stem for path in paths)
    assert names == ["hill_ascending_c3_random_dates2_onepass_s0", "hill_ascending_c3_random_dates2_s0",
                     "hill_ascending_c3_random_onepass_s0", "hill_ascending_c3_random_s0"]
    for path in paths:
        scene = open_scene(path)
        one_pass = "_onepass" in path.stem
        assert ("other_sar_reconstructed" in scene) != one_pass
        assert pass_dates(scene) == (2 if "_dates2" in path.stem else 1)
        assert pass_dates(scene, "other_") == (0 if one_pass else pass_dates(scene))
    with pytest.raises(InvalidInputError, match="opposite_passes"):
        SceneAxes(opposite_passes=(True, True))
    with pytest.raises(InvalidInputError, match="opposite_passes"):
        SceneAxes(opposite_passes=())


def test_a_stack_of_one_condition_is_kept_as_asked(truth):
    scene = simulate_scene(truth, scene_geometry(truth, "ascending"),
                           observation=ObservationSpec(date_conditions=(DateCondition(), DateCondition())),
                           products=SceneProducts(keep_dates=False), progress=False)
    assert "sar_dates" not in scene and scene.attrs["dates"] == 2


def test_crops_of_a_terrain_each_scene_its_own(tmp_path):
    from sarheight.terrain.augment import crop_window

    dem = rough_dem(seed=33, rows=60, cols=70, relief=300.0)
    sea = np.zeros(dem.shape, dtype=bool)
    sea[:, :35] = True  # the west half is sea
    row, col, rows, cols = crop_window(dem, 32, sea, seed=1)
    assert (rows, cols) == (32, 32) and 0 <= row <= 28 and 0 <= col <= 38
    # Of its draws, the window with the most land.
    assert sea[row:row + rows, col:col + cols].mean() < 0.5
    assert crop_window(dem, 32, sea, seed=1) == (row, col, rows, cols)
    assert crop_window(dem, 100)[2:] == (60, 70)
    with pytest.raises(InvalidInputError, match="16 or more"):
        crop_window(dem, 8)
    paths = simulate_scenes([dem.assign_attrs(dem_name="hill")], tmp_path, axes=SceneAxes(seeds=(0, 1)),
                            crop_cells=36, unscored={"hill": sea}, progress=False)
    windows = set()
    for path in paths:
        scene = open_scene(path)
        assert scene.sizes["y"] == scene.sizes["x"] == 36 and scene.attrs["dem_name"] == "hill"
        window = (int(scene.attrs["crop_row"]), int(scene.attrs["crop_col"]))
        windows.add(window)
        # The truth is the DEM's in the window, the sea left out.
        expected = np.where(sea, np.nan, dem.values)[window[0]:window[0] + 36, window[1]:window[1] + 36]
        np.testing.assert_allclose(scene["height"].values, expected, rtol=1e-6, equal_nan=True)
    assert len(windows) > 1
    with pytest.raises(InvalidInputError, match="crop_cells"):
        simulate_scenes([dem], tmp_path, crop_cells=4, progress=False)


@pytest.mark.filterwarnings("ignore")
def test_scenes_made_on_a_cluster_are_the_scenes_made_here(tmp_path):
    dems = [rough_dem(seed=50 + k, rows=36, cols=36, relief=300.0).assign_attrs(dem_name=f"hill{k}") for k in (0, 1)]
    options = {"axes": SceneAxes(passes=("ascending",), dates=(1, 2)), "crop_cells": 30, "progress": False}
    here = simulate_scenes(dems, tmp_path / "here", **options)
    there = simulate_scenes(dems, tmp_path / "there", client="local", **options)
    assert [path.name for path in here] == [path.name for path in there] and len(here) == 4
    for first, second in zip(here, there, strict=True):
        a, b = open_scene(first), open_scene(second)
        assert set(a.data_vars) == set(b.data_vars)
        for name in a.data_vars:
            # The same draws; the kernels' sums on other threads (rounding).
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-4, equal_nan=True,
                                       err_msg=f"{first.name}: {name}")
    # A set that is there already is not made again, wherever it would be; a cluster opened
    # once serves many calls (a process per core, one thread each).
    from sarheight.distributed import local_client
    from sarheight.threads import thread_count

    before = [path.stat().st_mtime_ns for path in there]
    simulate_scenes(dems, tmp_path / "there", client="local", **options)
    assert [path.stat().st_mtime_ns for path in there] == before
    with local_client(process_per_core=True) as client:
        assert list(client.nthreads().values()) == [1] * thread_count()
        for lost in (0, 3):
            # A scene lost between two calls on the one cluster is made again, the same.
            there[lost].unlink()
            simulate_scenes(dems, tmp_path / "there", client=client, **options)
            again, made_here = open_scene(there[lost]), open_scene(here[lost])
            np.testing.assert_allclose(again["sar_reconstructed"].values, made_here["sar_reconstructed"].values,
                                       rtol=1e-5, atol=1e-4, equal_nan=True)
    with pytest.raises(InvalidInputError, match="scheduler address"):
        simulate_scenes(dems, tmp_path / "x", client="nowhere", **options)


def test_a_simulated_product_short_of_the_edges_is_no_void_to_warn_of(truth, recwarn):
    from sarheight.coarse_dem import draw_errors

    scene = simulate_scene(truth, scene_geometry(truth, "ascending"), coarse_errors=draw_errors(3, "test", 7), seed=7,
                           progress=False)
    # The product stops short of the grid's edges (its shift and its own grid)...
    assert np.isnan(scene["coarse_height"].values).any()
    # ...and no warning calls those cells voids.
    assert not [w for w in recwarn if "have no height" in str(w.message)]


def test_images_without_speckle_are_judged_where_the_dem_falls(tmp_path):
    """Without speckle, the margin of an image's window holds the noise floor alone, one
    value at every pixel, and on a small DEM that is most of the window: each image's
    level and spread are judged over the DEM's own pixels, so a pair of speckle-free
    images of rough terrain is accepted (over the whole window it read as nearly
    constant, 0.01 dB, and was refused)."""
    from sarheight.terrain.scene_draws import SceneDrawer

    path = tmp_path / "ridges.tif"
    rough_dem(seed=40, rows=56, cols=56, relief=500.0).rio.to_raster(path)
    scene = SceneDrawer([path], SceneAxes(looks=(None,)), crop_cells=32).draw(0)
    assert scene.attrs["looks"] == "none" and scene.attrs["other_pass"] != "none"
    assert np.nanstd(scene["sar_reconstructed"].values) > 1.0
