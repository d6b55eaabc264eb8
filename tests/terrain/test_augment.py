"""Terrain turned, mirrored and scaled before a geometry is simulated over it."""

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sarheight.dem import open_dem
from sarheight.errors import InvalidInputError
from sarheight.raster import cell_size_m, gradient
from sarheight.terrain.augment import (
    ORIENTATIONS,
    TerrainTransform,
    terrain_on_a_projected_grid,
    transform_terrain,
)
from sarheight.terrain.files import open_scene

UTM = "EPSG:32611"


def _dem(heights, dx=30.0, dy=20.0, name="hills"):
    dem = open_dem((np.asarray(heights, dtype=np.float32), Affine(dx, 0, 500_000.0, 0, -dy, 4_000_000.0), UTM),
                   vertical_datum="ellipsoid")
    dem.attrs["dem_name"] = name
    return dem


def _downslope_bearing(dem) -> float:
    """The bearing (degrees clockwise from north) the terrain falls towards, from its mean gradient."""
    dy, dx = cell_size_m(dem)
    rise_south, rise_east = gradient(dem.values.astype(np.float64), (dy, dx))
    north, east = float(np.nanmean(rise_south)), -float(np.nanmean(rise_east))  # downhill components
    return float(np.degrees(np.arctan2(east, north)) % 360.0)


def test_a_slope_facing_east_faces_north_after_a_quarter_turn_and_west_when_mirrored():
    columns = np.arange(40, dtype=np.float32)
    east_facing = _dem(np.broadcast_to(1000.0 - 5.0 * columns, (30, 40)))
    assert _downslope_bearing(east_facing) == pytest.approx(90.0)
    turned = transform_terrain(east_facing, TerrainTransform(quarter_turns=1))
    bearing = _downslope_bearing(turned)
    assert bearing == pytest.approx(0.0, abs=1e-6) or bearing == pytest.approx(360.0)
    assert _downslope_bearing(transform_terrain(east_facing, TerrainTransform(quarter_turns=2))) == pytest.approx(270.0)
    assert _downslope_bearing(transform_terrain(east_facing, TerrainTransform(mirror=True))) == pytest.approx(270.0)
    # The cells' sizes on the ground follow the turn: 20 m rows and 30 m columns become 30 m rows, 20 m columns.
    assert cell_size_m(turned) == pytest.approx((30.0, 20.0))
    assert turned.shape == (40, 30)


def test_scaling_keeps_every_slope_and_the_lowest_height():
    rng = np.random.default_rng(3)
    dem = _dem(800.0 + np.cumsum(rng.normal(0, 1, (25, 33)), axis=1))
    bigger = transform_terrain(dem, TerrainTransform(scale=1.5))
    assert cell_size_m(bigger) == pytest.approx((30.0, 45.0))
    assert float(bigger.min()) == pytest.approx(float(dem.min()))
    assert float(bigger.max() - bigger.min()) == pytest.approx(1.5 * float(dem.max() - dem.min()), rel=1e-5)
    for before, after in zip(gradient(dem.values.astype(np.float64), cell_size_m(dem)),
                             gradient(bigger.values.astype(np.float64), cell_size_m(bigger)), strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)  # float32 heights


@settings(max_examples=30, deadline=None)
@given(heights=hnp.arrays(np.float32, st.tuples(st.integers(2, 9), st.integers(2, 9)),
                          elements=st.floats(-400, 8000, width=32)),
       first=st.sampled_from(ORIENTATIONS), second=st.sampled_from(ORIENTATIONS))
def test_orientations_reorder_the_heights_and_compose_like_the_square_s_symmetries(heights, first, second):
    dem = _dem(heights)
    once = transform_terrain(dem, first)
    np.testing.assert_array_equal(np.sort(once.values, axis=None), np.sort(dem.values, axis=None))
    twice = transform_terrain(once, second)
    # The same symmetry of the square reached in one step.
    mirrored = first.mirror != second.mirror
    turns = ((-first.quarter_turns if second.mirror else first.quarter_turns) + second.quarter_turns) % 4
    np.testing.assert_array_equal(twice.values, transform_terrain(dem, TerrainTransform(turns, mirrored)).values)
    assert twice.attrs["dem_name"] == "hills"
    assert cell_size_m(twice) == pytest.approx(cell_size_m(dem) if turns % 2 == 0 else cell_size_m(dem)[::-1])


def test_the_transformed_terrain_keeps_its_place_its_name_and_says_what_was_done():
    dem = _dem(np.arange(12, dtype=np.float32).reshape(3, 4) + 100.0)
    turned = transform_terrain(dem, TerrainTransform(quarter_turns=3, mirror=True, scale=2.0))
    assert turned.rio.crs == dem.rio.crs
    assert turned.rio.transform().c == dem.rio.transform().c and turned.rio.transform().f == dem.rio.transform().f
    assert turned.attrs["dem_name"] == "hills" and turned.attrs["terrain_transform"] == "r3mx2"
    assert turned.attrs["vertical_datum"] == "ellipsoid"
    assert [change.label for change in ORIENTATIONS] == ["", "r1", "r2", "r3", "m", "r1m", "r2m", "r3m"]


def test_a_geographic_dem_is_refused_and_can_be_put_on_its_utm_grid():
    heights = 500.0 + 50.0 * np.sin(np.linspace(0, 3, 40 * 50)).reshape(40, 50)
    geographic = open_dem((heights.astype(np.float32), Affine(1 / 3600, 0, -117.5, 0, -1 / 3600, 34.3), "EPSG:4326"),
                          vertical_datum="ellipsoid")
    with pytest.raises(InvalidInputError, match=r"projected grid.*estimate_utm_crs"):
        transform_terrain(geographic, TerrainTransform(quarter_turns=1))
    projected = terrain_on_a_projected_grid(geographic)
    assert projected.rio.crs.is_projected and projected.rio.crs.to_epsg() == 32611
    dy, dx = cell_size_m(projected)
    assert dy == pytest.approx(dx) and dy == pytest.approx(np.sqrt(30.87 * 25.5), rel=0.02)
    assert float(projected.max()) <= float(geographic.max()) + 1e-3
    assert transform_terrain(projected, TerrainTransform(quarter_turns=1)).rio.crs == projected.rio.crs


@pytest.mark.parametrize("kwargs, match", [({"quarter_turns": 4}, "0, 1, 2 or 3"), ({"quarter_turns": 1.0}, "0, 1"),
                                           ({"scale": 3.0}, "0.5-2"), ({"scale": 0.1}, "0.5-2")])
def test_a_transform_out_of_range_is_refused(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        TerrainTransform(**kwargs)


def test_only_a_transform_is_taken():
    with pytest.raises(InvalidInputError, match="TerrainTransform"):
        transform_terrain(_dem(np.ones((3, 3))), 1)  # type: ignore[arg-type]


# The sea left out and a registration too small to tell are warned about; they are this test's setting.
@pytest.mark.filterwarnings("ignore::sarheight.errors.PlausibilityWarning")
def test_a_scene_set_simulates_each_transformed_terrain_under_its_own_geometry(tmp_path):
    from sarheight.priors import PriorSpec
    from sarheight.terrain.files import open_scene
    from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes
    from tests.support.scenes import rough_dem

    source = rough_dem(seed=5, rows=40, cols=40, relief=600.0)
    source.attrs["dem_name"] = "rough"
    dem = terrain_on_a_projected_grid(source)
    sea = np.zeros(dem.shape, dtype=bool)
    sea[:3, :5] = True  # the north-west corner
    quarter = TerrainTransform(quarter_turns=1)
    axes = SceneAxes(passes=("ascending",), priors=PriorSpec(count=4), terrain_transforms=(TerrainTransform(), quarter))
    paths = simulate_scenes([dem], tmp_path, axes=axes, unscored={"rough": sea}, progress=False)
    assert [path.name for path in paths] == ["rough_ascending_c3_random_s0.nc", "rough-r1_ascending_c3_random_s0.nc"]
    plain, turned = (open_scene(path) for path in paths)
    # One area, one split: the turned terrain's scenes keep their DEM's name.
    assert plain.attrs["dem_name"] == turned.attrs["dem_name"] == "rough"
    # The truth is the terrain turned, the sea turned with it (to the south-west corner).
    expected = np.rot90(np.where(sea, np.nan, dem.values), 1)
    np.testing.assert_array_equal(turned["height"].values, expected.astype(np.float32))
    # The image is not the image turned: the pass and its heading are the same, the
    # slopes facing the radar are others.
    assert turned.attrs["heading_deg"] == pytest.approx(plain.attrs["heading_deg"])
    rotated_image = np.rot90(plain["sar_geocoded"].values, 1)
    assert not np.allclose(turned["sar_geocoded"].values, rotated_image, equal_nan=True)
    with pytest.raises(InvalidInputError, match="repeats"):
        SceneAxes(terrain_transforms=(quarter, quarter))
    with pytest.raises(InvalidInputError, match="TerrainTransform"):
        SceneAxes(terrain_transforms=(1,))


@pytest.mark.filterwarnings("ignore::sarheight.errors.PlausibilityWarning")
def test_the_scenes_command_makes_more_terrain_from_a_geographic_dem(tmp_path):
    from sarheight.cli import main
    from sarheight.io import write_geotiff
    from tests.support.scenes import rough_dem

    dem_path = write_geotiff(rough_dem(seed=2, rows=24, cols=24, relief=300.0).to_dataset(name="height"),
                             tmp_path / "hills.tif")
    common = ["terrain", "scenes", "--dem", str(dem_path), "--vertical-datum", "ellipsoid", "--pass", "ascending",
              "--prior-count", "4", "-q"]
    assert main([*common, "--out", str(tmp_path / "a"), "--terrain-scale", "1", "--terrain-scale", "1.5"]) == 0
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == [
        "hills-x1.5_ascending_c3_random_s0.nc", "hills_ascending_c3_random_s0.nc"]
    assert main([*common, "--out", str(tmp_path / "b"), "--orientations"]) == 0
    names = sorted(path.name.split("_")[0] for path in (tmp_path / "b").iterdir())
    assert names == sorted(f"hills{'-' + change.label if change.label else ''}" for change in ORIENTATIONS)
    assert main([*common, "--out", str(tmp_path / "c"), "--terrain-scale", "3"]) == 2
    # Crops, and scenes of the own pass alone beside those of both, with the dates kept.
    assert main([*common, "--out", str(tmp_path / "d"), "--crop", "18", "--opposite-pass", "both",
                 "--dates", "2"]) == 0
    assert sorted(path.name for path in (tmp_path / "d").iterdir()) == [
        "hills_ascending_c3_random_dates2_onepass_s0.nc", "hills_ascending_c3_random_dates2_s0.nc"]
    scene = open_scene(tmp_path / "d" / "hills_ascending_c3_random_dates2_s0.nc")
    assert scene.sizes["y"] == 18 and scene["other_sar_dates"].sizes["date"] == 2
    assert main([*common, "--out", str(tmp_path / "e"), "--crop", "4"]) == 2


def test_unscored_cells_of_a_geographic_dem_that_a_transform_reprojects_are_refused_before_any_work(tmp_path):
    from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes
    from tests.support.scenes import rough_dem

    dem = rough_dem(seed=1, rows=20, cols=20)
    dem.attrs["dem_name"] = "rough"
    with pytest.raises(InvalidInputError, match="terrain_on_a_projected_grid"):
        simulate_scenes([dem], tmp_path / "out", axes=SceneAxes(terrain_transforms=(TerrainTransform(mirror=True),)),
                        unscored={"rough": np.zeros(dem.shape, dtype=bool)}, progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
