"""The clinometric refinement: the slope sensitivity against its closed form, recovery of
fractal terrain from an exact brightness ratio, invariants (hypothesis), and the scene
version against the coarse DEM on a simulated scene."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.dem import PACKAGED_EGM96
from sarheight.errors import InvalidInputError
from sarheight.ground import empirical_sigma0, lambert_sigma0
from sarheight.priors import PriorSpec
from sarheight.terrain.clinometry import (
    anchor_to_priors,
    clinometric_correction,
    clinometry_heights,
    range_slope_sensitivity,
)
from sarheight.terrain.scene_options import ObservationSpec

CELL = 30.0
FACTOR = 4


def fractal(shape: tuple[int, int], beta: float, seed: int) -> np.ndarray:
    """A random field of unit standard deviation whose power falls as |k|^-beta."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    k = np.hypot(fy, fx)
    k[0, 0] = 1.0
    spectrum = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) * k ** (-beta / 2)
    spectrum[0, 0] = 0.0
    field = np.real(np.fft.ifft2(spectrum))
    return field / field.std()


def coarse_of(truth: np.ndarray, factor: int = FACTOR) -> np.ndarray:
    """Block means of ``truth`` resampled back with cubic splines (a coarse DEM on the grid)."""
    from scipy.ndimage import zoom

    rows, cols = truth.shape
    blocks = truth.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    return zoom(blocks, factor, order=3, mode="nearest")


def exact_ratio(truth: np.ndarray, coarse: np.ndarray, incidence: float, look: tuple[float, float],
                law=empirical_sigma0) -> tuple[np.ndarray, np.ndarray]:
    """The ratio (dB) a surface of ``truth`` shows over ``coarse`` under ``incidence``, from
    the brightness ``law(t) / sin(t)`` of the range slopes, and the coarse local incidence."""
    def range_slope(heights: np.ndarray) -> np.ndarray:
        along_rows, along_cols = np.gradient(heights, -CELL, CELL)
        return np.degrees(np.arctan(look[0] * along_cols + look[1] * along_rows))

    def brightness(local: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 10 * np.log10(law(local) / np.sin(np.radians(local)))

    local_coarse = incidence - range_slope(coarse)
    with np.errstate(invalid="ignore"):
        return brightness(incidence - range_slope(truth)) - brightness(local_coarse), local_coarse


def rmse(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values[8:-8, 8:-8] ** 2)))


def test_range_slope_sensitivity_matches_the_closed_form():
    angles = np.linspace(15.0, 75.0, 13)
    t = np.radians(angles)
    a1, a2 = 0.111, 3.0  # the law's a0 scales it and drops out of the derivative
    # d/dt ln(law / sin t) = -tan t - a2 (cos t - a1 sin t) / (sin t + a1 cos t) - cot t
    derivative = -np.tan(t) - a2 * (np.cos(t) - a1 * np.sin(t)) / (np.sin(t) + a1 * np.cos(t)) - 1 / np.tan(t)
    np.testing.assert_allclose(range_slope_sensitivity(angles), -10 / math.log(10) * derivative, rtol=1e-6)
    # Lambert's law: -d(10 log10(cos^2 t / sin t)) = 10/ln10 (2 tan t + cot t).
    np.testing.assert_allclose(range_slope_sensitivity(angles, lambert_sigma0),
                               10 / math.log(10) * (2 * np.tan(t) + 1 / np.tan(t)), rtol=1e-6)
    assert np.isnan(range_slope_sensitivity(np.array([0.0, 90.0, 120.0]))).all()


@pytest.mark.parametrize("look", [(1.0, 0.0), (-0.2, 0.98)])
def test_fractal_terrain_is_recovered_from_an_exact_ratio(look):
    truth = 800 + 150 * fractal((128, 128), 3.6, seed=0)
    coarse = coarse_of(truth)
    ratio, local = exact_ratio(truth, coarse, 38.0, look)
    correction = clinometric_correction(coarse, ratio, local, look, (-CELL, CELL), CELL * FACTOR)
    print(f"look {look}: coarse RMSE {rmse(coarse - truth):.2f} m, refined {rmse(coarse + correction - truth):.2f} m")
    assert rmse(coarse + correction - truth) < 0.85 * rmse(coarse - truth)
    # Speckle of one date (2.2 dB a cell) leaves less, but never worse than the coarse DEM.
    noisy = ratio + np.random.default_rng(1).normal(0.0, 2.2, ratio.shape)
    speckled = clinometric_correction(coarse, noisy, local, look, (-CELL, CELL), CELL * FACTOR)
    assert rmse(coarse + speckled - truth) < rmse(coarse - truth)


def test_nothing_observed_changes_nothing():
    truth = 500 + 80 * fractal((64, 96), 3.6, seed=2)
    coarse = coarse_of(truth)
    local = np.full(coarse.shape, 38.0)
    steps, cell = (-CELL, CELL), CELL * FACTOR
    assert not clinometric_correction(coarse, np.zeros(coarse.shape), local, (1, 0), steps, cell).any()
    # A uniform offset of the ratio (calibration, the mean land cover) is no slope.
    assert np.abs(clinometric_correction(coarse, np.full(coarse.shape, 3.0), local, (1, 0), steps, cell)).max() < 1e-9
    # No usable cell (all in layover or shadow): no correction.
    ratio, _ = exact_ratio(truth, coarse, 38.0, (1, 0))
    assert not clinometric_correction(coarse, ratio, local, (1, 0), steps, cell,
                                      valid=np.zeros(coarse.shape, bool)).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), level=st.floats(-400.0, 8000.0), noise=st.floats(0.0, 3.0),
       azimuth=st.floats(0.0, 2 * math.pi), incidence=st.floats(25.0, 50.0))
def test_correction_invariants(seed, level, noise, azimuth, incidence):
    """Finite, on the grid, blind to the heights' absolute level, and odd in the ratio's
    sign about the coarse DEM only through the data (no correction without a ratio)."""
    truth = 100 * fractal((48, 64), 3.6, seed)
    coarse = coarse_of(truth)
    look = (math.sin(azimuth), math.cos(azimuth))
    ratio, local = exact_ratio(truth, coarse, incidence, look)
    ratio = ratio + np.random.default_rng(seed).normal(0.0, noise, ratio.shape)
    correction = clinometric_correction(coarse, ratio, local, look, (-CELL, CELL), CELL * FACTOR)
    assert correction.shape == coarse.shape and np.isfinite(correction).all()
    moved = clinometric_correction(coarse + level, ratio, local, look, (-CELL, CELL), CELL * FACTOR)
    np.testing.assert_allclose(moved, correction, atol=1e-6 * (1 + np.abs(correction).max()))


def test_priors_anchor_their_cells_and_fade():
    heights = np.zeros((40, 40))
    priors = np.full((40, 40), np.nan)
    mask = np.zeros((40, 40), dtype=np.uint8)
    priors[10, 10], mask[10, 10] = 5.0, 1
    priors[30, 25], mask[30, 25] = -2.0, 1
    anchored = anchor_to_priors(heights, priors, mask, (-30.0, 30.0), radius_m=60.0)
    assert anchored[10, 10] == pytest.approx(5.0) and anchored[30, 25] == pytest.approx(-2.0)
    assert abs(anchored[10, 14]) < 5.0 * math.exp(-0.5 * 4) + 1e-9  # two radii away
    assert anchored[0, 39] == 0.0  # far from both
    assert np.array_equal(anchor_to_priors(heights, priors, np.zeros_like(mask), (-30.0, 30.0), 60.0), heights)


def test_correction_refuses_mismatched_arrays():
    with pytest.raises(InvalidInputError, match="one grid"):
        clinometric_correction(np.zeros((8, 8)), np.zeros((8, 9)), np.zeros((8, 8)), (1, 0), (-30, 30), 90.0)
    with pytest.raises(InvalidInputError, match="coarse_cell_m"):
        clinometric_correction(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8)), (1, 0), (-30, 30), 0.0)


@pytest.mark.parametrize(("looks", "land_cover_db", "gain"), [(None, 0.0, 0.85), (4.4, 3.0, 1.0)])
def test_scene_refinement_beats_the_coarse_dem_on_real_relief(looks, land_cover_db, gain):
    """On the real Big Tujunga crop (SRTM 30 m) under 3x coarser heights: clearly better
    than the best resampling without speckle or land cover, still better with one date's
    speckle and 3 dB of land cover."""
    from sarheight import sample_data
    from sarheight.dem import open_dem
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.simulated import simulate_scene

    dem = open_dem(sample_data.path("bigtujunga_srtm30_utm11_crop.tif"), vertical_datum="egm96",
                   geoid_grid=PACKAGED_EGM96)
    observation = ObservationSpec(looks=looks, nesz_db=None if looks is None else -22.0, land_cover_db=land_cover_db)
    scene = simulate_scene(dem, scene_geometry(dem, "ascending"), coarse_factor=3, priors=PriorSpec(count=6),
                           observation=observation, progress=False)
    refined = clinometry_heights(scene)
    assert refined.dims == ("y", "x") and refined.rio.crs == scene.rio.crs
    truth = scene["height"].values
    errors = {name: float(np.sqrt(np.mean((values - truth) ** 2)))
              for name, values in (("lanczos", scene["coarse_lanczos"].values), ("clinometry", refined.values))}
    print(errors)
    assert errors["clinometry"] < gain * errors["lanczos"]
    with pytest.raises(InvalidInputError, match="lacks"):
        clinometry_heights(scene.drop_vars(["coarse_registered", "coarse_lanczos"]))
