"""A dual-polarisation image (VV and VH) as the project simulates it and as a user gives it:
a (polarisation, line, sample) DataArray read as its co-polarised band with the
cross-polarised one beside it, and the land cover's VH/VV ratio read from it."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sarheight.errors import InvalidInputError
from sarheight.ground import LAND_COVER_CLASSES, draw_ground
from sarheight.observation import POLARISATION_DIM, polarisation_bands, resolve_observation
from sarheight.terrain.forward import cross_ratio_feature
from sarheight.terrain.geometry import scene_geometry
from sarheight.terrain.radar_images import radar_image
from sarheight.terrain.scene_options import ObservationSpec
from sarheight.terrain.scene_sets import SceneAxes
from sarheight.terrain.simulated import simulate_observations
from tests.support.scenes import rough_dem


@pytest.fixture(scope="module")
def dual():
    truth = rough_dem(seed=3, rows=96, cols=96, relief=400.0)
    geometry = scene_geometry(truth, "ascending")
    ground = draw_ground(truth, "training", 4)
    spec = ObservationSpec(ground=ground, looks=44.0, cross_polarised=True)
    images, geometries = simulate_observations(truth, geometry, None, spec, seed=1)
    return truth, geometry, ground, images[0], geometries[0]


def test_a_dual_polarisation_simulation_keeps_the_co_polarised_image_and_adds_its_band(dual):
    truth, geometry, ground, image, _ = dual
    assert image.dims == (POLARISATION_DIM, "line", "sample")
    assert list(image[POLARISATION_DIM].values) == ["VV", "VH"] and image.attrs["looks"] == 44.0
    # The co-polarised band is the single-polarisation simulation itself (the same draws):
    # a dual-polarisation scene differs from its single twin by the band alone.
    single, _ = simulate_observations(truth, geometry, None, ObservationSpec(ground=ground, looks=44.0), seed=1)
    np.testing.assert_array_equal(image.sel(polarisation="VV").values, single[0].values)
    # The band is darker where the ground is imaged (beyond it, both are the noise floor).
    bright = image.sel(polarisation="VV").values > 10 ** -1.5
    assert bright.sum() > 1000
    assert float(np.median(image.sel(polarisation="VH").values[bright] / image.sel(polarisation="VV").values[bright])) \
        < 10 ** -0.4


def test_the_ratio_read_from_a_simulated_pair_is_each_class_ratio_beneath_the_noise_floor(dual):
    truth, _, ground, image, geometry = dual
    read = radar_image(truth, image, geometry)
    assert read.cross_image is not None and read.cross_image.shape == read.image.shape
    assert read.nesz_db == -22.0
    ratio = cross_ratio_feature(truth, [read])
    # The floor (-22 dB) lies above the darkest classes' VH: taken off, their ratio is theirs,
    # not the floor's over their brightness (within 1 dB for the classes of many cells).
    checked = 0
    for code, name in enumerate(LAND_COVER_CLASSES):
        here = (ground.classes == code) & np.isfinite(ratio)
        if here.sum() >= 1000:
            assert abs(float(np.median(ratio[here])) - ground.cross_ratios_db[code]) < 1.0, name
            checked += 1
    assert checked >= 3


def test_a_users_dual_polarisation_dataarray_gives_both_bands(dual):
    _, _, _, image, geometry = dual
    observation = resolve_observation(image, geometry)
    assert observation.image.dims == ("line", "sample") and observation.cross_image is not None
    np.testing.assert_array_equal(observation.cross_image.values, image.sel(polarisation="VH").values)
    co, cross = polarisation_bands(image.sel(polarisation=["VV"]))
    assert cross is None and co.attrs["looks"] == 44.0
    # Lower-case names and HH/HV pairs as well.
    named = image.assign_coords({POLARISATION_DIM: ["hh", "hv"]})
    co, cross = polarisation_bands(named, "IW/HH")
    np.testing.assert_array_equal(cross.values, image.sel(polarisation="VH").values)


@pytest.mark.parametrize("change, measurement, match", [
    (lambda image: image.drop_vars(POLARISATION_DIM), "IW/VV", "has no names"),
    (lambda image: image, "IW/HH", "asks for HH"),
    (lambda image: image.sel(polarisation=["VH"]), "IW/VV", "polarisations are VH"),
    (lambda image: xr.DataArray(np.ones((2, 3, 3)), dims=(POLARISATION_DIM, "y", "x")), "IW/VV", "map-grid"),
])
def test_a_dual_polarisation_image_that_cannot_be_read_is_refused(dual, change, measurement, match):
    _, _, _, image, geometry = dual
    with pytest.raises(InvalidInputError, match=match):
        resolve_observation(change(image), geometry, measurement=measurement)


def test_a_scene_set_says_whether_it_is_cross_polarised():
    assert SceneAxes(cross_polarised=True).cross_polarised
    with pytest.raises(InvalidInputError, match="cross_polarised must be True or False"):
        SceneAxes(cross_polarised="yes")
    with pytest.raises(InvalidInputError, match="cross_polarised must be True or False"):
        ObservationSpec(cross_polarised=1)


def test_a_simulated_scene_of_both_polarisations_gives_its_inversion_the_band():
    from sarheight.priors import PriorSpec
    from sarheight.terrain.scene_options import SceneProducts
    from sarheight.terrain.simulated import simulate_scene

    truth = rough_dem(seed=5, rows=48, cols=48, relief=300.0)
    options = {"coarse_factor": 3, "priors": PriorSpec(count=6), "seed": 2, "progress": False,
               "products": SceneProducts(inversion=True)}
    ground = draw_ground(truth, "training", 3)
    scenes = {cross: simulate_scene(truth, scene_geometry(truth, "ascending"),
                                    observation=ObservationSpec(ground=ground, cross_polarised=cross), **options)
              for cross in (False, True)}
    assert scenes[True].attrs["cross_polarised"] == 1 and scenes[False].attrs["cross_polarised"] == 0
    # The co-polarised reading is the same; the inversion, which reads the band, is not.
    np.testing.assert_array_equal(scenes[True]["sar_reconstructed"].values, scenes[False]["sar_reconstructed"].values)
    assert not np.array_equal(scenes[True]["inverted"].values, scenes[False]["inverted"].values, equal_nan=True)


def test_one_image_of_both_polarisations_without_a_method_goes_to_the_inversion():
    from sarheight.dem import open_dem
    from sarheight.raster import cell_size_m
    from sarheight.refinement import DEFAULT_METHODS, refine_dem
    from sarheight.terrain.grid import block_mean
    from sarheight.terrain.method_table import DUAL_POLARISATION_METHOD
    from sarheight.terrain.radar_images import has_cross_polarisation
    from sarheight.terrain.scene_options import Execution

    truth = rough_dem(seed=44, rows=36, cols=36, relief=300.0)
    geometry = scene_geometry(truth, "ascending")
    spec = ObservationSpec(ground=draw_ground(truth, "training", 2), cross_polarised=True)
    image = simulate_observations(truth, geometry, None, spec, seed=3)[0][0]
    assert has_cross_polarisation(image) and not has_cross_polarisation(image.sel(polarisation="VV"))
    assert not has_cross_polarisation([image, image.sel(polarisation="VV")])
    options = {"geometry": geometry, "spacing_m": float(np.sqrt(np.prod(cell_size_m(truth)))),
               "execution": Execution(progress=False)}
    coarse = open_dem(block_mean(truth, 3))
    dual, _ = refine_dem(coarse, image, **options)
    assert dual.attrs["method"] == DUAL_POLARISATION_METHOD
    assert dual.attrs["method_chosen"] == "the best on the validation DEMs for one image of both polarisations"
    single, _ = refine_dem(coarse, image.sel(polarisation="VV"), **options)
    assert single.attrs["method"] == DEFAULT_METHODS["one_image"]
