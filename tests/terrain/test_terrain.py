"""Terrain scenes: variables, the no-leak rule, the coarse DEM, files and the command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

from sarheight.errors import InvalidInputError
from sarheight.ground import DateCondition
from sarheight.masks import MaskCode
from sarheight.priors import PriorSpec, sample_priors
from sarheight.simulate import simulate_sar
from sarheight.terrain.backprojection import upsample
from sarheight.terrain.files import open_scene, write_scene
from sarheight.terrain.geometry import pass_direction, scene_geometry
from sarheight.terrain.grid import block_mean, degrade_dem, refinement_grid
from sarheight.terrain.observed import observed_scene
from sarheight.terrain.scene_options import Execution, ObservationSpec, SarReading, SceneProducts
from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes
from sarheight.terrain.simulated import simulate_scene
from sarheight.terrain.variables import DERIVED_VARIABLES, INPUT_VARIABLES, coarse_cell_size, scene_variable
from tests.support.scenes import plane_dem, rough_dem

#: No progress bars in the tests.
QUIET = Execution(progress=False)

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
    return simulate_scene(truth, geometry, coarse_factor=FACTOR, priors=PriorSpec(fraction=0.02), seed=1,
                          opposite_geometry=scene_geometry(truth, "descending"), progress=False)


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
    scenes = [observed_scene(degrade_dem(dem, FACTOR), observation, geometry, priors, execution=QUIET)
              for dem in (truth, perturbed)]
    for name in (*INPUT_VARIABLES, *DERIVED_VARIABLES):
        if name.startswith("other_") or name == "inverted_filled":
            continue  # (the opposite pass's, and the inversion's: not in a scene of one image without it)
        np.testing.assert_array_equal(scene_variable(scenes[0], name), scene_variable(scenes[1], name), err_msg=name)
    # And simulate_scene takes its masks, incidence and coarse heights from the coarse DEM only.
    a, b = (simulate_scene(dem, geometry, coarse_factor=FACTOR, priors=PriorSpec(count=12), seed=2, progress=False)
            for dem in (truth, perturbed))
    for name in ("local_incidence_angle", "layover", "shadow", "coarse_height", "coarse_bicubic", "coarse_lanczos",
                 "prior_mask", "coarse_slope_east", "coarse_slope_north", "coarse_curvature", "coarse_factor",
                 "look_east", "look_north"):
        np.testing.assert_array_equal(scene_variable(a, name), scene_variable(b, name), err_msg=name)
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
    # A flag (the inversion's settings) has no NetCDF type: it is written as 0 or 1.
    flagged = write_scene(scene.assign_attrs(inversion_translation=True, other_flag=np.bool_(False)),
                          tmp_path / "flagged.nc")
    attrs = open_scene(flagged).attrs
    assert attrs["inversion_translation"] == 1 and attrs["other_flag"] == 0


def test_observed_scene_takes_points_and_a_reference(truth, geometry):
    observation = simulate_sar(truth, geometry, seed=5)
    coarse = degrade_dem(truth, FACTOR)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, truth.shape[0], 8), rng.integers(0, truth.shape[1], 8)
    points = pd.DataFrame({"x": truth["x"].values[cols], "y": truth["y"].values[rows],
                           "height": truth.values[rows, cols]})
    scene = observed_scene(coarse, observation, geometry,
                           PriorSpec(points=points, crs=truth.rio.crs, vertical_datum="ellipsoid"), truth=truth,
                           execution=QUIET)
    assert scene.attrs["kind"] == "observed"
    assert int(scene["prior_mask"].sum()) == len({(r, c) for r, c in zip(rows, cols, strict=True)})
    np.testing.assert_array_equal(scene["height"].values, truth.values)
    wrong = sample_priors(truth.isel(y=slice(0, 20)), count=3)
    with pytest.raises(InvalidInputError, match="grid"):
        observed_scene(coarse, observation, geometry, wrong, execution=QUIET)
    # One spelling of known heights: a PriorSpec of points, refused otherwise before any work.
    with pytest.raises(InvalidInputError, match=r"give the known heights as PriorSpec\(points="):
        observed_scene(coarse, observation, geometry, points, execution=QUIET)
    with pytest.raises(InvalidInputError, match="draws known heights from the DEM"):
        observed_scene(coarse, observation, geometry, PriorSpec(count=5), execution=QUIET)
    # Checked once: what the check returns passes it again as it is (refine_dem checks them
    # before its own work and hands the result on).
    from sarheight.terrain.observed import GivenPriors, check_priors_given

    given = check_priors_given(None)
    assert isinstance(given, GivenPriors) and given.known is None and check_priors_given(given) is given
    with pytest.raises(InvalidInputError, match="priors of type int"):
        GivenPriors(5)


def test_a_scenes_options_come_in_checked_groups(truth, geometry, tmp_path):
    """How a scene's images are made and what it makes from them are each one group, checked
    when it is made, before any simulation."""
    for bad, match in (({"looks": 0}, "looks must be a positive number"), ({"law": "snap"}, "law must be one of"),
                       ({"land_cover_db": -1.0}, "land_cover_db"), ({"dates": 0}, "dates must be a positive"),
                       ({"date_conditions": ()}, "DateConditions"), ({"projection": "nearest"}, "projection")):
        with pytest.raises(InvalidInputError, match=match):
            ObservationSpec(**bad)
    assert ObservationSpec(date_conditions=[DateCondition()] * 3).dates == 3
    assert not ObservationSpec().is_stack and ObservationSpec(dates=2).is_stack
    with pytest.raises(InvalidInputError, match="True or False"):
        SceneProducts(inversion="yes")
    with pytest.raises(InvalidInputError, match="ObservationSpec and a SceneProducts"):
        simulate_scene(truth, geometry, observation={"looks": 4.4}, progress=False)
    with pytest.raises(InvalidInputError, match="products must be a SceneProducts"):
        simulate_scenes([truth], tmp_path, products={"inversion": True}, progress=False)
    assert not list(tmp_path.iterdir())
    # A user's observations: how they are read and where the work runs, each a group too.
    for make, bad, match in ((SarReading, {"quantity": "sigma1"}, "quantity must be one of"),
                             (SarReading, {"db": "yes"}, "db must be True or False"),
                             (SarReading, {"projection": "nearest"}, "projection"),
                             (Execution, {"tile": 4}, "tile must be an integer of at least 8"),
                             (Execution, {"overlap": 200}, "overlap must be an integer from 0 to tile / 2"),
                             (Execution, {"blocks": 8}, "blocks must be at least 16"),
                             (Execution, {"progress": None}, "progress must be True or False")):
        with pytest.raises(InvalidInputError, match=match):
            make(**bad)
    assert Execution(client="local").in_blocks and not Execution().in_blocks
    coarse = block_mean(truth, 3)
    observation = simulate_sar(truth, geometry, seed=1)
    with pytest.raises(InvalidInputError, match="reading must be a SarReading"):
        observed_scene(coarse, observation, geometry, None, reading={"db": True}, execution=QUIET)
    with pytest.raises(InvalidInputError, match="an observed scene has none"):
        observed_scene(coarse, observation, geometry, None, products=SceneProducts(error_sources=True),
                       execution=QUIET)


def test_scene_builders_take_one_priors_specification(truth, geometry, tmp_path):
    with pytest.raises(InvalidInputError, match="give a PriorSpec"):
        simulate_scene(truth, geometry, priors={"count": 4}, progress=False)
    with pytest.raises(InvalidInputError, match="share the label"):
        SceneAxes(priors=(PriorSpec(count=4), PriorSpec(count=8)))
    # An instrument kind names its files and draws its errors per scene, one draw for both passes.
    paths = simulate_scenes([truth], tmp_path, axes=SceneAxes(priors=PriorSpec(count=6, kind="lidar"), looks=(None,),
                                                              nesz_db=None), progress=False)
    assert [path.name for path in paths] == ["rough_ascending_c3_lidar_nospeckle_s0.nc",
                                             "rough_descending_c3_lidar_nospeckle_s0.nc"]
    ascending, descending = (open_scene(path) for path in paths)
    assert ascending.attrs["prior_kind"] == "lidar" and ascending.attrs["prior_pattern"] == "tracks"
    assert ascending.attrs["prior_geolocation_m"] == descending.attrs["prior_geolocation_m"] > 0
    assert not list(tmp_path.glob("*random*"))


def test_scenes_command_writes_both_passes_and_resumes(truth, tmp_path):
    from sarheight.cli import main
    from sarheight.io import write_geotiff

    dem_path = write_geotiff(truth.to_dataset(name="height"), tmp_path / "hills.tif")
    out = tmp_path / "scenes"
    arguments = ["terrain", "scenes", "--dem", str(dem_path), "--out", str(out), "--vertical-datum", "ellipsoid",
                 "--prior-count", "6", "--prior-pattern", "random", "--prior-pattern", "tracks", "-q"]
    assert main(arguments) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"hills_{direction}_c3_{pattern}_s0.nc" for direction in ("ascending", "descending")
                     for pattern in ("random", "tracks")]
    ascending = open_scene(out / "hills_ascending_c3_random_s0.nc")
    descending = open_scene(out / "hills_descending_c3_random_s0.nc")
    assert ascending.attrs["pass_direction"] == "ascending" and ascending.attrs["dem_name"] == "hills"
    # The files of a pair hold each other's image, and share their priors.
    np.testing.assert_array_equal(ascending["other_sar_reconstructed"].values, descending["sar_reconstructed"].values)
    np.testing.assert_array_equal(ascending["prior_mask"].values, descending["prior_mask"].values)
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(arguments) == 0
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert main(["terrain", "scenes", "--dem", str(dem_path), "--out", str(tmp_path / "x"), "--geometry",
                 "synthetic", "--geometry", "synthetic", "-q"]) == 2
    assert main(["terrain", "scenes", "--dem", str(dem_path), "--out", str(tmp_path / "y"), "--prior-kind", "gnss",
                 "--prior-pattern", "tracks", "-q"]) == 2
    assert not (tmp_path / "y").exists() or not any((tmp_path / "y").iterdir())


def test_coarse_resamplings_keep_planes_and_fill_the_edges():
    dem = plane_dem(40, 36, slope_east_deg=15.0, slope_north_deg=8.0)
    coarse = block_mean(dem, 4)
    assert coarse.shape == (10, 9) and coarse.attrs["coarse_factor"] == 4
    assert coarse.rio.transform().a == pytest.approx(4 * dem.rio.transform().a)
    inner = (slice(4, -5), slice(4, -5))
    for method in ("bilinear", "bicubic", "lanczos"):
        fine = upsample(coarse, dem, method)
        assert fine.shape == dem.shape and np.isfinite(fine.values).all(), method
        # Bilinear and cubic convolution reproduce a plane; a windowed sinc only nearly (its
        # weights are not exactly linear-preserving: metres of ripple on a 15 degree slope).
        np.testing.assert_allclose(fine.values[inner], dem.values[inner], atol=0.1 if method != "lanczos" else 4.0,
                                   err_msg=method)
    np.testing.assert_array_equal(degrade_dem(dem, 4).values, upsample(coarse, dem, "bilinear").values)
    with pytest.raises(InvalidInputError, match="upsampling"):
        upsample(coarse, dem, "nearest-ish")


def test_derived_variables_of_a_plane(truth):
    """On a plane the coarse DEM's slopes are the plane's, its curvature nil; the look
    direction follows the heading and the look side; the ratio is the SAR over the law."""
    dem = plane_dem(60, 60, slope_east_deg=12.0, slope_north_deg=-5.0)
    geometry = scene_geometry(dem, "descending")
    scene = simulate_scene(dem, geometry, coarse_factor=FACTOR, priors=PriorSpec(count=5),
                           observation=ObservationSpec(looks=None, nesz_db=None, land_cover_db=0.0), progress=False)
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(scene_variable(scene, "coarse_slope_east")[inner], np.tan(np.radians(12.0)), rtol=1e-3)
    np.testing.assert_allclose(scene_variable(scene, "coarse_slope_north")[inner], -np.tan(np.radians(5.0)),
                               rtol=1e-2)
    assert np.abs(scene_variable(scene, "coarse_curvature")[inner]).max() < 1e-4
    assert coarse_cell_size(scene) == pytest.approx(FACTOR * scene.attrs["grid_cell_m"])
    assert (scene_variable(scene, "coarse_factor") == FACTOR).all()
    # Descending and right-looking: heading ~192 degrees, the radar looks west.
    east, north = scene_variable(scene, "look_east")[0, 0], scene_variable(scene, "look_north")[0, 0]
    assert east < -0.95 and abs(north) < 0.3 and east**2 + north**2 == pytest.approx(1.0, abs=1e-6)
    # No speckle, no land cover, the reconstruction's own law: the plane is what the coarse
    # DEM predicts, the ratio 0 dB.
    assert np.nanmax(np.abs(scene_variable(scene, "sar_ratio")[inner])) < 0.05
    with pytest.raises(InvalidInputError, match="lacks"):
        scene_variable(scene.drop_vars("coarse_bicubic"), "coarse_slope_east")
    with pytest.raises(InvalidInputError, match="no variable"):
        scene_variable(scene, "nonsense")


def test_land_cover_law_and_the_unscored_sea(truth, geometry):
    sea = np.zeros(truth.shape, dtype=bool)
    sea[:, :5] = True
    # Not registered to the images: each scene would move its coarse DEM by its own
    # estimate, and their ratios would differ by more than the land cover.
    unregistered = SceneProducts(register=False)
    clean = simulate_scene(truth, geometry, priors=PriorSpec(count=4),
                           observation=ObservationSpec(looks=None, nesz_db=None, land_cover_db=0.0),
                           opposite_geometry=scene_geometry(truth, "descending"), unscored=sea, products=unregistered,
                           progress=False)
    covered = simulate_scene(truth, geometry, priors=PriorSpec(count=4),
                             observation=ObservationSpec(looks=None, nesz_db=None, land_cover_db=3.0),
                             opposite_geometry=scene_geometry(truth, "descending"), products=unregistered,
                             progress=False)
    lambert = simulate_scene(truth, geometry, priors=PriorSpec(count=4),
                             observation=ObservationSpec(looks=None, nesz_db=None, land_cover_db=0.0, law="lambert"),
                             products=unregistered, progress=False)
    assert np.isnan(clean["height"].values[sea]).all() and np.isfinite(clean["height"].values[~sea]).all()
    assert clean.attrs["land_cover_db"] == 0.0 and lambert.attrs["sigma0_law"] == "lambert"
    # The land cover adds its patches (3 dB, somewhat smoothed by the pixels) to the ratio.
    cover = scene_variable(covered, "sar_ratio") - scene_variable(clean, "sar_ratio")
    assert 1.5 < np.nanstd(cover) < 4.0, np.nanstd(cover)
    assert not np.allclose(scene_variable(lambert, "sar_ratio"), scene_variable(clean, "sar_ratio"), equal_nan=True)
    # Both passes see one land cover: its patches agree where both see the ground (in the
    # observations themselves: each scene's ratio also carries a law fitted to it).
    own_cover = (covered["sar_reconstructed"] - clean["sar_reconstructed"]).values
    other_cover = (covered["other_sar_reconstructed"] - clean["other_sar_reconstructed"]).values
    both = np.isfinite(own_cover) & np.isfinite(other_cover)
    assert np.corrcoef(own_cover[both], other_cover[both])[0, 1] > 0.5
    with pytest.raises(InvalidInputError, match="unscored"):
        simulate_scene(truth, geometry, priors=PriorSpec(count=4), unscored=sea[:-1], progress=False)


def test_refinement_grid_and_a_scene_without_priors(truth, geometry):
    coarse = block_mean(truth, FACTOR)
    grid = refinement_grid(coarse, 30.0)
    dy, dx = (abs(v) for v in (grid.rio.transform().e, grid.rio.transform().a))
    assert grid.rio.crs == coarse.rio.crs and grid.shape[0] == pytest.approx(coarse.shape[0] * FACTOR, abs=2)
    west, _, _, north = coarse.rio.bounds()
    assert grid["x"].values[0] == pytest.approx(west + dx / 2) and grid["y"].values[0] == pytest.approx(north - dy / 2)
    with pytest.raises(InvalidInputError, match="already as fine"):
        refinement_grid(coarse, 120.0)
    with pytest.raises(InvalidInputError, match="positive"):
        refinement_grid(coarse, -3.0)
    observation = simulate_sar(truth, geometry, seed=2)
    scene = observed_scene(coarse, observation, geometry, None, grid=grid, execution=QUIET)
    assert scene.sizes == {"y": grid.shape[0], "x": grid.shape[1]}
    assert not scene["prior_mask"].values.any() and np.isnan(scene["prior_height"].values).all()
    assert (scene["prior_distance"].values > 1000).all()
    np.testing.assert_array_equal(scene["coarse_corrected"].values, scene["coarse_height"].values)
    # The grid is geographic: cells of 30 x 21 m, so the coarse DEM's are 76 m, 2.5 of 30 m.
    assert scene.attrs["coarse_cell_m"] == pytest.approx(FACTOR * np.sqrt(30.0 * 30.0 * np.cos(np.radians(45))),
                                                         rel=0.01)
    assert scene.attrs["coarse_factor"] == pytest.approx(scene.attrs["coarse_cell_m"] / 30.0, rel=0.01)


def test_scene_sets_sample_their_axes_and_pair_one_pass(truth, tmp_path):
    axes = SceneAxes(look_sides=("right", "left"), heading_offsets_deg=(-10.0, 0.0, 10.0), coarse_factors=(2, 3),
                     looks=(4.4, 44.0), land_cover_db=(0.0, 3.0), priors=PriorSpec(count=4))
    paths = simulate_scenes([truth], tmp_path / "a", axes=axes, sample=5, progress=False)
    again = simulate_scenes([truth], tmp_path / "b", axes=axes, sample=5, progress=False)
    assert len(paths) == 5 and [p.name for p in paths] == [p.name for p in again]  # seeded by the DEM's name
    one = simulate_scenes([truth], tmp_path / "c", axes=SceneAxes(passes=("ascending",), laws=("lambert",),
                                                                  priors=PriorSpec(count=4)), progress=False)
    assert [p.name for p in one] == ["rough_ascending_c3_random_lambert_s0.nc"]
    scene = open_scene(one[0])
    assert "other_sar_ratio" not in scene and np.isfinite(scene_variable(scene, "other_sar_ratio")).any()
    assert scene.attrs["other_look_side"] == "right" and scene.attrs["sigma0_law"] == "lambert"
    assert scene.attrs["cross_polarised"] == 0
    # A set of both polarisations is not resumed from scenes of one (the names are the same).
    with pytest.raises(InvalidInputError, match="holds a scene of one polarisation, the set asks for both"):
        simulate_scenes([truth], tmp_path / "c", axes=SceneAxes(passes=("ascending",), laws=("lambert",),
                                                                priors=PriorSpec(count=4), cross_polarised=True),
                        progress=False)
    with pytest.raises(InvalidInputError, match="sample"):
        simulate_scenes([truth], tmp_path / "d", sample=0, progress=False)
    with pytest.raises(InvalidInputError, match="unscored"):
        simulate_scenes([truth], tmp_path / "d", unscored={"elsewhere": None}, progress=False)
    with pytest.raises(InvalidInputError, match="axes must be a SceneAxes"):
        simulate_scenes([truth], tmp_path / "d", axes={"passes": ("ascending",)}, progress=False)
    # Each axis is checked when the set's axes are made, before any DEM is read.
    for bad, match in (({"passes": ("north",)}, "passes must be a non-empty tuple"),
                       ({"coarse_factors": (0,)}, "coarse_factors"), ({"coarse_factors": (3, 3)}, "repeats"),
                       ({"looks": ()}, "looks must be a non-empty"), ({"laws": ("flat",)}, "laws"),
                       ({"coarse_families": ("blurry",)}, "coarse_families"),
                       ({"ground_families": ("moon",)}, "ground_families"),
                       ({"incidence_deg": (46.0, 30.0)}, "incidence_deg"),
                       ({"ground_families": ("training",), "laws": ("lambert",)}, "leave laws"),
                       ({"snow_share": 2.0}, "snow_share"), ({"moisture_db": 6.0}, "moisture_db"),
                       ({"land_cover_db": (40.0,)}, "land_cover_db"), ({"passes": "ascending"}, "passes"),
                       ({"nesz_db": "low"}, "nesz_db"), ({"seeds": (-1,)}, "seeds")):
        with pytest.raises(InvalidInputError, match=match):
            SceneAxes(**bad)
    assert SceneAxes(priors=PriorSpec(count=4), coarse_factors=[3, 5]).coarse_factors == (3, 5)
    # Any iterable but a string is an axis: a range, an array.
    assert SceneAxes(seeds=range(3), coarse_factors=np.array([1, 3])).seeds == (0, 1, 2)
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


def test_a_land_cover_map_without_a_method_goes_to_the_inversion():
    """The one method without learning that reads a land-cover map takes it where no method
    is named, whatever the default for what is given (one image: clinometry)."""
    from sarheight.dem import open_dem
    from sarheight.raster import cell_size_m
    from sarheight.refinement import DEFAULT_METHODS, default_method, refine_dem

    fine = rough_dem(seed=43, rows=36, cols=36, relief=300.0)
    geometry = scene_geometry(fine, "ascending")
    assert default_method([geometry])[0] == DEFAULT_METHODS["one_image"]
    assert default_method([geometry], land_cover=True) == ("inversion",
                                                            "a land-cover map was given, which the inversion reads")
    cover = fine.copy(data=(np.arange(fine.size).reshape(fine.shape) % 2).astype(np.int16))
    refined, _ = refine_dem(open_dem(block_mean(fine, 3)), simulate_sar(fine, geometry, seed=1), geometry=geometry,
                            spacing_m=float(np.sqrt(np.prod(cell_size_m(fine)))), land_cover=cover, execution=QUIET)
    assert refined.attrs["method"] == "inversion"
    assert refined.attrs["method_chosen"] == "a land-cover map was given, which the inversion reads"
