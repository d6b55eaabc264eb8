"""Simulation and reconstruction: exact projection, invariants, analytic cases, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.errors import GeometryError, InvalidInputError
from sarheight.geometry import RadarGeometry
from sarheight.kernels.projection import gather_triangles, scatter_triangles
from sarheight.layover import reconstruct, to_isce3_mask
from sarheight.simulate import _run_simulation, empirical_sigma0, simulate, simulate_sar

LON, LAT = 10.0, 45.0
CELL_DEG = 30.0 / 111_320.0  # about 30 m in latitude


def _brute_force_weights(triangle: np.ndarray, n_rows: int, n_cols: int, n: int = 200) -> np.ndarray:
    """Overlap fractions of a triangle with unit pixels by supersampling (reference twin)."""
    (l0, s0), (l1, s1), (l2, s2) = triangle
    grid_l, grid_s = np.meshgrid((np.arange(n_rows * n) + 0.5) / n, (np.arange(n_cols * n) + 0.5) / n, indexing="ij")

    def edge(la, sa, lb, sb):
        return (sb - sa) * (grid_l - la) - (grid_s - sa) * (lb - la)

    e0, e1, e2 = edge(l0, s0, l1, s1), edge(l1, s1, l2, s2), edge(l2, s2, l0, s0)
    inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    area = abs(0.5 * ((s1 - s0) * (l2 - l0) - (s2 - s0) * (l1 - l0)))
    return inside.reshape(n_rows, n, n_cols, n).sum(axis=(1, 3)) / n**2 / area


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.1, 5.9), min_size=6, max_size=6))
def test_exact_projection_matches_supersampling_and_sums_to_one(coords):
    triangle = np.array(coords).reshape(1, 3, 2)
    area = 0.5 * abs((triangle[0, 1, 1] - triangle[0, 0, 1]) * (triangle[0, 2, 0] - triangle[0, 0, 0])
                     - (triangle[0, 2, 1] - triangle[0, 0, 1]) * (triangle[0, 1, 0] - triangle[0, 0, 0]))
    if area < 0.05:
        return  # supersampling cannot resolve slivers
    image = scatter_triangles(triangle, np.array([[1.0, 2.0]]), 6, 6)
    reference = _brute_force_weights(triangle[0], 6, 6)
    assert abs(image[0].sum() - 1.0) < 1e-12
    assert np.allclose(image[1], 2 * image[0])
    assert np.abs(image[0] - reference).max() < 0.02 / area + 1e-3
    # Gather is the adjoint of scatter: <scatter(q), R> = q * gather(R).
    ratio = np.random.default_rng(0).random((2, 6, 6))
    gathered = gather_triangles(triangle, ratio)[0]
    assert math.isclose(gathered[0], float((image[0] * ratio[0]).sum()), rel_tol=1e-10, abs_tol=1e-12)


def _plane_dem(rows: int, cols: int, slope_east_deg: float = 0.0, slope_north_deg: float = 0.0,
               base: float = 200.0) -> xr.DataArray:
    """A planar DEM on a geographic grid of ~30 m cells (heights ellipsoidal)."""
    from sarheight.dem import open_dem

    dx = CELL_DEG * math.cos(math.radians(LAT)) * 111_320.0
    dy = CELL_DEG * 111_320.0
    x = np.arange(cols) * dx
    y = -np.arange(rows) * dy
    heights = base + np.tan(math.radians(slope_east_deg)) * x[None, :] + np.tan(math.radians(slope_north_deg)) * y[:, None]
    transform = Affine(CELL_DEG, 0, LON, 0, -CELL_DEG, LAT)
    return open_dem((heights.astype(np.float32), transform, "EPSG:4326"), vertical_datum="ellipsoid")


def _geometry(dem: xr.DataArray, incidence: float = 35.0, heading: float = 0.0) -> RadarGeometry:
    west, south, east, north = dem.rio.bounds()
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east), center_lat=0.5 * (south + north), heading_deg=heading,
        incidence_near_deg=incidence - 2.0, incidence_far_deg=incidence + 2.0,
        line_spacing=15.0, sample_spacing=15.0, azimuth_extent=5e3,
    )


@pytest.mark.parametrize("slope", [10.0, 30.0, 40.0, 50.0])
def test_planar_fore_slope_layover_iff_steeper_than_incidence(slope):
    # Heading north, right-looking: the radar is west of the scene looking east, so a slope
    # rising towards the east faces it. Layover iff steeper than the incidence (35 deg).
    dem = _plane_dem(40, 40, slope_east_deg=slope)
    result = simulate(dem, _geometry(dem))
    interior = result["layover"].values[5:-5, 5:-5]
    assert np.all(interior != 255)
    layover_fraction = np.mean(interior != 0)
    if slope > 35.0:
        assert layover_fraction > 0.95
        assert np.mean(interior == 1) > 0.5
    else:
        assert layover_fraction == 0.0


@pytest.mark.parametrize("slope", [40.0, 50.0, 60.0])
def test_planar_back_slope_active_shadow_iff_steeper_than_complement(slope):
    # A slope falling away from the radar (towards the east) is in active shadow iff
    # steeper than 90 - 35 deg.
    dem = _plane_dem(40, 40, slope_east_deg=-slope)
    result = simulate(dem, _geometry(dem))
    interior = result["shadow"].values[5:-5, 5:-5]
    if slope > 55.0:
        assert np.mean(interior == 1) > 0.95
    else:
        assert np.mean(interior != 0) == 0.0


def test_flat_terrain_gamma_is_beta_tan_incidence():
    dem = _plane_dem(30, 30)
    geometry = _geometry(dem)
    observation = simulate_sar(dem, geometry, backscatter=lambda theta: np.full_like(theta, 0.1) * 0 + empirical_sigma0(theta),
                               looks=None, nesz_db=None)
    result = reconstruct(observation, dem, geometry, contribution="gamma", output="gamma0")
    incidence = np.radians(simulate(dem, geometry)["incidence_angle"].values)
    beta = result["geocoded"].values / np.sin(incidence)
    interior = (slice(4, -4), slice(4, -4))
    ratio = result["backscatter"].values[interior] / (beta[interior] * np.tan(incidence[interior]))
    assert np.nanmax(np.abs(ratio - 1)) < 2e-3
    # Flattened gamma0 and gamma-contribution reallocation are the same thing.
    assert np.allclose(result["flattened"].values[interior], result["backscatter"].values[interior], rtol=1e-6)


def _rough_dem(seed: int, rows: int = 36, cols: int = 36, relief: float = 600.0) -> xr.DataArray:
    from sarheight.simulate import texture

    field = np.log(texture((rows, cols), seed=seed, correlation_cells=4.0, contrast_db=10.0))
    field = (field - field.min()) / (field.max() - field.min())
    dem = _plane_dem(rows, cols)
    return dem.copy(data=(200.0 + relief * field).astype(np.float32))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), incidence=st.floats(20.0, 45.0), projection=st.sampled_from(["exact", "bilinear"]))
def test_reconstruction_invariants_on_random_terrain(seed, incidence, projection):
    dem = _rough_dem(seed)
    geometry = _geometry(dem, incidence=incidence)

    def law(theta):
        return 3.0 * empirical_sigma0(theta)

    # Exact recovery of a scene that follows the contribution model, layover included.
    observation = simulate_sar(dem, geometry, backscatter=law, looks=None, nesz_db=None, projection=projection)
    result = reconstruct(observation, dem, geometry, contribution=law, projection=projection)
    state = _run_simulation(dem, geometry, law, projection, "auto")
    truth = state.per_cell["contribution"] / state.per_cell["sigma_area"]
    lit = np.isfinite(result["backscatter"].values)
    assert lit.sum() > 0.5 * dem.size
    assert np.nanmax(np.abs(result["backscatter"].values[lit] / truth[lit] - 1)) < 1e-5
    # Energy conservation.
    from sarheight.layover import _observation_on_window, reallocate

    observed = _observation_on_window(observation, geometry, state.window)
    energy = np.nansum(reallocate(state, observed)["energy"])
    pixel_energy = np.nansum(np.where(state.images[0] > 0, observed * state.pixel_area, 0.0))
    assert math.isclose(energy, pixel_energy, rel_tol=1e-9)
    # Shadow cells receive no energy and are NaN.
    shadow = (result["shadow"].values == 1) | (result["shadow"].values == 2)
    assert np.all(np.isnan(result["backscatter"].values[shadow]))


def test_textured_truth_in_layover_reconstruction_beats_flattening_beats_geocoding():
    dem = _rough_dem(3, rows=60, cols=60, relief=900.0)
    geometry = _geometry(dem, incidence=25.0)
    observation, truth = simulate_sar(dem, geometry, looks=None, nesz_db=None, return_truth=True)
    result = reconstruct(observation, dem, geometry)
    layover = (result["layover"].values == 1) | (result["layover"].values == 2)
    layover &= np.isfinite(result["backscatter"].values) & np.isfinite(result["flattened"].values)
    assert layover.sum() > 50

    def rmse(values):
        error = 10 * np.log10(values[layover]) - 10 * np.log10(truth.values[layover])
        return float(np.sqrt(np.nanmean(error**2)))

    flattened_sigma = result["flattened"].values * np.cos(np.radians(result["local_incidence_angle"].values))
    errors = (rmse(result["backscatter"].values), rmse(flattened_sigma), rmse(result["geocoded"].values))
    print(f"RMSE in layover: reconstructed {errors[0]:.2f} dB, flattened {errors[1]:.2f} dB, geocoded {errors[2]:.2f} dB")
    assert errors[0] < errors[1] < errors[2]


def test_isce3_mask_codes():
    dem = _plane_dem(30, 30, slope_east_deg=45.0)
    result = reconstruct(simulate_sar(dem, _geometry(dem), looks=None, nesz_db=None), dem, _geometry(dem))
    mask = to_isce3_mask(result).values
    layover = result["layover"].values
    assert np.all(mask[(layover == 1) & (result["shadow"].values == 0)] == 2)
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 255}


def test_bad_input_gives_clear_errors():
    dem = _plane_dem(20, 20)
    geometry = _geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    with pytest.raises(InvalidInputError, match="contribution"):
        reconstruct(observation, dem, geometry, contribution="lambertian")
    with pytest.raises(InvalidInputError, match="negative"):
        reconstruct(-observation, dem, geometry)
    with pytest.raises(InvalidInputError, match="shape"):
        reconstruct(np.ones((3, 3)), dem, geometry)
    with pytest.raises(InvalidInputError, match="geometry"):
        reconstruct(observation.values, dem)
    far_away = _plane_dem(20, 20).assign_coords(x=lambda d: d.x + 40.0)
    far_away = far_away.rio.write_transform(far_away.rio.transform(recalc=True))
    with pytest.raises(GeometryError):
        simulate(far_away, geometry)
    empty = observation.copy(data=np.full(observation.shape, np.nan, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="does not cover"):
        reconstruct(empty, dem, geometry)
