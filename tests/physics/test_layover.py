"""The reconstruction (sarheight.reconstruction): invariants on random terrain, textured truth
in layover, shadow, residue, ISCE3 mask codes, partial images, every kind of input, bad
input refused before any work, GeoTIFF outputs, the ratio passes against their twin."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.errors import GeometryError, InvalidInputError
from sarheight.ground import empirical_sigma0
from sarheight.kernels import radar_buffers
from sarheight.kernels import reallocation as reallocation_kernels
from sarheight.observation import intensity_flags
from sarheight.reallocation import reallocate
from sarheight.reconstruction import reconstruct, to_isce3_mask
from sarheight.simulate import run_simulation, simulate, simulate_sar
from sarheight.simulate.cells import channels
from sarheight.simulate.engine import clear_residue
from sarheight.terrain.scene_options import Execution
from tests.support.scenes import plane_dem, rough_dem, synthetic_geometry

#: No progress bars in the tests.
QUIET = Execution(progress=False)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), incidence=st.floats(20.0, 45.0), heading=st.floats(0.0, 360.0),
       look_side=st.sampled_from(["right", "left"]), projection=st.sampled_from(["exact", "bilinear"]))
def test_reconstruction_invariants_on_random_terrain(seed, incidence, heading, look_side, projection):
    dem = rough_dem(seed)
    geometry = synthetic_geometry(dem, incidence, heading, look_side)

    def law(theta):
        return 3.0 * empirical_sigma0(theta)

    # Exact recovery of a scene that follows the contribution model, layover included.
    observation = simulate_sar(dem, geometry, backscatter=law, looks=None, nesz_db=None, projection=projection)
    result = reconstruct(dem, observation, geometry, contribution=law, projection=projection)
    state = run_simulation(dem, geometry, contribution=law, projection=projection)
    truth = state.per_cell["contribution"] / state.per_cell["sigma_area"]
    lit = np.isfinite(result["backscatter"].values)
    assert lit.sum() > 0.5 * dem.size
    # Recovered cells include layover: the cells that share pixels with others.
    assert (lit & (result["layover"].values != 0)).sum() > 20
    assert np.nanmax(np.abs(result["backscatter"].values[lit] / truth[lit] - 1)) < 1e-5
    # Energy conservation.
    from sarheight.observation import intensity_on_window
    from sarheight.reallocation import reallocate

    observed = intensity_on_window(observation, state.window)
    energy = np.nansum(reallocate(state, observed)["energy"])
    pixel_energy = np.nansum(np.where(state.images[0] > 0, observed * state.pixel_area, 0.0))
    assert math.isclose(energy, pixel_energy, rel_tol=1e-9)
    # Shadow cells receive no energy and are NaN.
    shadow = (result["shadow"].values == 1) | (result["shadow"].values == 2)
    assert np.all(np.isnan(result["backscatter"].values[shadow]))


@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), incidence=st.floats(20.0, 40.0), heading=st.floats(0.0, 360.0),
       look_side=st.sampled_from(["right", "left"]))
def test_textured_truth_in_layover_reconstruction_beats_flattening_beats_geocoding(seed, incidence, heading,
                                                                                   look_side):
    dem = rough_dem(seed, rows=60, cols=60, relief=900.0)
    geometry = synthetic_geometry(dem, incidence, heading, look_side)
    observation, truth = simulate_sar(dem, geometry, looks=None, nesz_db=None, return_truth=True)
    result = reconstruct(dem, observation, geometry)
    layover = (result["layover"].values == 1) | (result["layover"].values == 2)
    layover &= np.isfinite(result["backscatter"].values) & np.isfinite(result["flattened"].values)
    assert layover.sum() > 50

    def rmse(values):
        error = 10 * np.log10(values[layover]) - 10 * np.log10(truth.values[layover])
        return float(np.sqrt(np.nanmean(error**2)))

    flattened_sigma = result["flattened"].values * np.cos(np.radians(result["local_incidence_angle"].values))
    errors = (rmse(result["backscatter"].values), rmse(flattened_sigma), rmse(result["geocoded"].values))
    print(f"RMSE in layover: reconstructed {errors[0]:.2f} dB, flattened {errors[1]:.2f} dB, geocoded {errors[2]:.2f} "
          f"dB")
    assert errors[0] < errors[1] < errors[2]


@pytest.mark.parametrize("projection", ["exact", "bilinear"])
@pytest.mark.parametrize("contribution", ["model", "gamma"])
def test_shadow_never_divides_by_zero(contribution, projection):
    """A scene all in active shadow: no warning (division by zero, invalid value), no
    infinity; its cells are NaN and say why."""
    dem = plane_dem(24, 24, slope_east_deg=-60.0)
    geometry = synthetic_geometry(dem)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        observation = simulate_sar(dem, geometry, looks=None, nesz_db=-22.0, projection=projection)
        result = reconstruct(dem, observation, geometry, contribution=contribution, projection=projection)
    interior = (slice(3, -3), slice(3, -3))
    assert np.all(result["shadow"].values[interior] == 1)
    for name in ("backscatter", "flattened"):
        assert np.isnan(result[name].values[interior]).all(), name
        assert not np.isinf(result[name].values).any(), name


@pytest.mark.parametrize("projection", ["exact", "bilinear"])
@pytest.mark.parametrize("unknown", [False, True])
def test_residue_cleared_as_the_ratios_read_the_sums_equals_clearing_them_first(projection, unknown):
    """``reconstruct`` leaves the sums' rounding residue to the ratio pass, which clears it
    as it reads them: every product is the one of sums cleared first, with and without
    pixels the observation lacks (NaN: their mask reads the sums too)."""
    dem = rough_dem(4, rows=30, cols=26, relief=900.0)
    geometry = synthetic_geometry(dem, incidence=30.0, heading=15.0)
    # One state for both (threads add the tiles in any order: two runs differ by rounding).
    state = run_simulation(dem, geometry, projection=projection, keep_per_cell=False, clear=False)
    rng = np.random.default_rng(2)
    observed = np.nan_to_num(state.images[0] / state.pixel_area) * rng.gamma(4.0, 0.25, state.images.shape[1:])
    if unknown:
        observed[:, : observed.shape[1] // 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_read = reallocate(state, observed.copy())  # on a copy of the sums, residue and all
        raw = state.images.copy()
        clear_residue(state.images, state.window, state.smooth_fields, state.contribution)
        if projection == "exact":
            assert (state.images != raw).any(), "the case must leave residue for the test to see"
        cleared_first = reallocate(state, observed.copy())
    assert as_read["missing_pixels"] == cleared_first["missing_pixels"]
    assert (as_read["missing_pixels"] > 0) == unknown
    for name in ("backscatter", "flattened", "geocoded", "simulated", "mixing", "energy"):
        np.testing.assert_array_equal(as_read[name], cleared_first[name], err_msg=name)


def test_isce3_mask_codes():
    dem = plane_dem(30, 30, slope_east_deg=45.0)
    result = reconstruct(dem, simulate_sar(dem, synthetic_geometry(dem), looks=None, nesz_db=None),
                         synthetic_geometry(dem))
    mask = to_isce3_mask(result).values
    layover = result["layover"].values
    assert np.all(mask[(layover == 1) & (result["shadow"].values == 0)] == 2)
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 255}
    # Every combination, set by hand: 1 shadow, 2 layover, 3 both, 255 outside.
    codes = result.copy()
    codes["layover"].values[:] = np.array([0, 1, 2, 0, 1, 255], dtype=np.uint8).repeat(150)[:900].reshape(30, 30)
    codes["shadow"].values[:] = np.array([0, 0, 0, 2, 1, 255], dtype=np.uint8).repeat(150)[:900].reshape(30, 30)
    assert list(np.unique(to_isce3_mask(codes).values, return_counts=True)[0]) == [0, 1, 2, 3, 255]
    assert to_isce3_mask(codes).values[0, 0] == 0 and to_isce3_mask(codes).values[29, 29] == 255
    assert to_isce3_mask(codes).values.reshape(-1)[450] == 1
    assert to_isce3_mask(codes).values.reshape(-1)[600] == 3


def test_image_covering_part_of_the_dem_gives_nan_where_it_is_missing():
    """Cells whose facets reach a pixel the image lacks get NaN, not a value biased low."""
    dem = rough_dem(7, rows=40, cols=40, relief=300.0)
    geometry = synthetic_geometry(dem, incidence=35.0)
    observation = simulate_sar(dem, geometry, backscatter=empirical_sigma0, looks=None, nesz_db=None)
    full = reconstruct(dem, observation, geometry)
    cut = int(observation["sample"].values[observation.shape[1] // 2])
    partial = observation.where(observation["sample"] < cut)
    result = reconstruct(dem, partial, geometry)
    sample = full["geocoded"].copy(data=simulate(dem, geometry)["radar_sample"].values)
    beyond = (sample > cut + 1.5).values
    before = (sample < cut - 1.5).values & np.isfinite(full["backscatter"].values)
    assert beyond.sum() > 200 and before.sum() > 200
    for name in ("backscatter", "flattened", "geocoded"):
        assert np.isnan(result[name].values[beyond]).all(), name
    # Away from the cut the cells keep exactly what they had.
    np.testing.assert_allclose(result["backscatter"].values[before], full["backscatter"].values[before], rtol=1e-9)
    assert np.nanmin(result["backscatter"].values) > 0


_SPECIAL = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 2.5])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 7), cols=st.integers(1, 7), special=_SPECIAL,
       dtype=st.sampled_from([np.float32, np.float64]))
def test_observation_checks_in_one_pass_equal_their_numpy_expressions(seed, rows, cols, special, dtype):
    """The flags of an observation in one threaded pass, the pixels the facets reach but
    the observation lacks, and the map-grid observation's weighted mean per pixel equal
    the numpy expressions they replace (NaN and infinities in the image and in the sums)."""
    rng = np.random.default_rng(seed)
    observed = rng.normal(1.0, 1.0, (rows, cols)).astype(dtype)
    observed[rng.random(observed.shape) < 0.3] = special
    flags = intensity_flags(observed)
    with np.errstate(invalid="ignore"):
        expected = (bool(np.isinf(observed).any()), bool((observed < 0).any()), bool(np.isfinite(observed).any()),
                    bool(np.isnan(observed).any()))
    assert flags == expected
    sums = np.zeros(radar_buffers.radar_buffer_shape(rows, cols))
    images = channels(sums)
    images[:] = rng.normal(0.0, 1.0, images.shape)
    images[rng.random(images.shape) < 0.3] = special
    missing = np.empty((rows, cols), dtype=bool)
    reallocation_kernels.missing_pixels(observed, sums, 0, rows, missing)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(missing, np.isnan(observed) & ((images[0] > 0) | (images[1] > 0)))
    # The map-grid observation's area-weighted mean per pixel.
    weighted, weight = np.ascontiguousarray(images[0]), np.ascontiguousarray(images[1])
    mean = np.empty((rows, cols))
    reallocation_kernels.weighted_mean(weighted, weight, 0, rows, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(mean, np.where(weight > 0, weighted / weight, np.nan))


def test_inputs_of_every_kind_give_the_same_reconstruction(tmp_path):
    """numpy array of the product grid, DataArray window, xarray-sentinel layout, dask array,
    and the radar-geometry GeoTIFF ``sarheight simulate`` writes (its tags read back)."""
    from sarheight.io import write_radar_image
    from sarheight.observation import resolve_observation

    dem = rough_dem(11, rows=30, cols=30, relief=500.0)
    geometry = synthetic_geometry(dem, incidence=30.0)
    observation = simulate_sar(dem, geometry, looks=4.4, nesz_db=-22.0, seed=3)
    reference = reconstruct(dem, observation, geometry)
    grid = np.full(geometry.grid.shape, np.nan, dtype=np.float32)
    grid[observation["line"].values[0]:observation["line"].values[-1] + 1,
         observation["sample"].values[0]:observation["sample"].values[-1] + 1] = observation.values
    times = geometry.grid.first_line_time + (observation["line"].values * geometry.grid.line_interval * 1e9).astype(
        "timedelta64[ns]")
    sentinel_like = xr.DataArray(
        observation.values, dims=("azimuth_time", "slant_range_time"),
        coords={"azimuth_time": times, "slant_range_time": observation["sample"].values * 1e-8,
                "line": ("azimuth_time", observation["line"].values),
                "pixel": ("slant_range_time", observation["sample"].values)},
    )
    path = write_radar_image(observation.rename("beta0").assign_attrs(looks=4.4, nesz_db=-22.0),
                             tmp_path / "image.tif")
    read = resolve_observation(path, geometry).image
    assert read.dims == ("line", "sample") and read.attrs["looks"] == 4.4 and read.attrs["nesz_db"] == -22.0
    np.testing.assert_array_equal(read["line"].values, observation["line"].values)
    for sar in (grid, sentinel_like, observation.chunk({"line": 7, "sample": 9}), path):
        result = reconstruct(dem, sar, geometry)
        for name in ("backscatter", "geocoded", "flattened"):
            np.testing.assert_array_equal(result[name].values, reference[name].values)


def test_map_grid_observation_rebuilds_the_radar_pixels():
    """An image geocoded to the DEM's grid: flat terrain comes back exactly; on rough terrain
    the rebuilt pixels reconstruct close to the radar-geometry input outside layover."""
    flat = plane_dem(30, 30)
    geometry = synthetic_geometry(flat, incidence=35.0)
    sigma0 = flat.copy(data=np.full(flat.shape, 0.08, dtype=np.float32))
    result = reconstruct(flat, sigma0, geometry)
    inside = result["layover"].values != 255
    np.testing.assert_allclose(result["geocoded"].values[inside], 0.08, rtol=1e-3)
    # Pixels at the DEM's edge are only partly covered by its cells, which then take their
    # whole energy: the interior is exact.
    interior = np.zeros_like(inside)
    interior[2:-2, 2:-2] = inside[2:-2, 2:-2]
    np.testing.assert_allclose(result["backscatter"].values[interior], 0.08, rtol=1e-3)

    dem = rough_dem(13, rows=40, cols=40, relief=250.0)
    geometry = synthetic_geometry(dem, incidence=35.0)
    observation = simulate_sar(dem, geometry, backscatter=empirical_sigma0, looks=None, nesz_db=None)
    direct = reconstruct(dem, observation, geometry)
    rebuilt = reconstruct(dem, direct["geocoded"], geometry)
    plain = (direct["layover"].values == 0) & (direct["shadow"].values == 0)
    plain &= np.isfinite(direct["backscatter"].values) & np.isfinite(rebuilt["backscatter"].values)
    error = np.abs(10 * np.log10(rebuilt["backscatter"].values[plain] / direct["backscatter"].values[plain]))
    print(f"map-grid input, outside layover and shadow: median {np.median(error):.2f} dB, "
          f"95th percentile {np.percentile(error, 95):.2f} dB from the radar-geometry input")
    assert plain.sum() > 500 and np.median(error) < 0.5


def test_bad_input_gives_clear_errors():
    dem = plane_dem(20, 20)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    with pytest.raises(InvalidInputError, match="contribution"):
        reconstruct(dem, observation, geometry, contribution="lambertian")
    with pytest.raises(InvalidInputError, match="negative"):
        reconstruct(dem, -observation, geometry)
    with pytest.raises(InvalidInputError, match="shape"):
        reconstruct(dem, np.ones((3, 3)), geometry)
    with pytest.raises(InvalidInputError, match="geometry"):
        reconstruct(dem, observation.values)
    far_away = plane_dem(20, 20).assign_coords(x=lambda d: d.x + 40.0)
    far_away = far_away.rio.write_transform(far_away.rio.transform(recalc=True))
    with pytest.raises(GeometryError):
        simulate(far_away, geometry)
    empty = observation.copy(data=np.full(observation.shape, np.nan, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="does not cover"):
        reconstruct(dem, empty, geometry)
    infinite = observation.copy(data=np.where(observation.values > 0, np.inf, 0).astype(np.float32))
    with pytest.raises(InvalidInputError, match="infinite"):
        reconstruct(dem, infinite, geometry)
    with pytest.raises(GeometryError):
        reconstruct(far_away, observation, geometry)
    with pytest.raises(InvalidInputError, match="output"):
        reconstruct(dem, observation, geometry, output="beta0")


def test_observations_that_cannot_be_one_are_refused_before_any_work(monkeypatch):
    """Wrong kinds of values, shapes, grids and coverage are refused before the masks and
    facets are computed (those passes are replaced here by one that fails)."""
    import sarheight.simulate.engine as simulation

    dem = plane_dem(20, 20)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)

    def no_work(*args, **kwargs):
        raise AssertionError("the masks were computed before the input was checked")

    monkeypatch.setattr(simulation, "visibility_masks", no_work)
    grid = np.ones(geometry.grid.shape)
    # A geocoded image of another place: the DEM's grid moved 10 degrees east.
    elsewhere = dem.copy(data=np.full(dem.shape, 0.05, dtype=np.float32)).assign_coords(x=dem["x"] + 10.0)
    cases = [
        (elsewhere, r"does not overlap the DEM \(west -?\d+\.\d{5}, .*EPSG:4326\): give a DEM of the imaged area"),
        (grid.astype(complex), "complex"),
        (observation.astype(np.complex64), "complex"),
        (grid.astype(bool), "real numbers"),
        (np.full(geometry.grid.shape, "a"), "real numbers"),
        (xr.DataArray(observation.values, dims=("line", "sample")), "coordinate"),
        (observation.values, "shape"),
        (observation.assign_coords(line=observation["line"] + 100_000), "does not cover"),
        (-grid.astype(np.int16), "negative"),
    ]
    for sar, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            reconstruct(dem, sar, geometry)
    monkeypatch.undo()
    # Integer intensities are intensities: the same result as the floats.
    counts = np.zeros(geometry.grid.shape, dtype=np.uint16)
    line0, sample0 = int(observation["line"][0]), int(observation["sample"][0])
    scaled = np.round(observation.values * 1000).astype(np.uint16)
    counts[line0:line0 + scaled.shape[0], sample0:sample0 + scaled.shape[1]] = scaled
    as_float = observation.copy(data=scaled.astype(np.float32))
    from sarheight.errors import PlausibilityWarning

    with pytest.warns(PlausibilityWarning, match="looks like amplitude, digital numbers or dB"):
        from_counts = reconstruct(dem, counts, geometry)["backscatter"].values
        from_floats = reconstruct(dem, as_float, geometry)["backscatter"].values
    np.testing.assert_allclose(from_counts, from_floats, rtol=1e-6)


def test_an_image_covering_part_of_the_dem_warns():
    from sarheight.errors import PartialCoverageWarning

    dem = plane_dem(20, 20)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    half = observation.where(observation["sample"] < observation["sample"][observation.sizes["sample"] // 2])
    with pytest.warns(PartialCoverageWarning, match="no value"):
        reconstruct(dem, half, geometry)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PartialCoverageWarning)
        reconstruct(dem, observation, geometry)


def test_to_geotiff_writes_the_products_of_a_simulation_or_a_reconstruction(tmp_path):
    import rasterio

    from sarheight.reconstruction import RECONSTRUCTION_BANDS, SIMULATION_BANDS, to_geotiff

    dem = plane_dem(20, 20)
    geometry = synthetic_geometry(dem)
    simulation = simulate(dem, geometry)
    result = reconstruct(dem, simulate_sar(dem, geometry, looks=None, nesz_db=None), geometry)
    for dataset, bands in ((simulation, SIMULATION_BANDS), (result, RECONSTRUCTION_BANDS)):
        with rasterio.open(to_geotiff(dataset, tmp_path / "out.tif")) as src:
            assert src.descriptions == bands
    with pytest.raises(InvalidInputError, match="not in the dataset"):
        to_geotiff(result, tmp_path / "other.tif", ["backscatter", "nope"])


def _twin_fields(fields, powers, fitted, fit, line0, sample0, r, n_samples):
    """Pixel area and flat-terrain gamma area along window line ``r``, as
    ``kernels.reallocation`` evaluates them (the same operations in the same order)."""
    fit_line0, fit_lines, fit_sample0, fit_samples = fit
    u = (line0 + r - fit_line0 - 0.5 * fit_lines) / max(fit_lines, 1)
    v = (sample0 + np.arange(n_samples) - fit_sample0 - 0.5 * fit_samples) / max(fit_samples, 1)
    out = []
    for field, void in ((0, 0.0), (1, math.inf)):
        if not fitted:
            out.append(np.full(n_samples, void))
            continue
        coefficients = np.zeros(int(powers[:, 1].max()) + 1)
        for t, (p, q) in enumerate(powers):
            value = fields[field, t]
            for _ in range(p):
                value *= u
            coefficients[q] += value
        value = np.zeros(n_samples)
        for q in range(coefficients.size - 1, -1, -1):
            value = value * v + coefficients[q]
        out.append(np.where(np.isnan(value), void, value))
    return out


def _twin_ratio_lines(buffer, observed, start, stop, exact, fields, powers, fitted, fit, line0, sample0,
                      thresholds):
    """Numpy twin of ``kernels.reallocation.ratio_lines`` (on a copy of ``buffer``)."""
    buffer = buffer.copy()
    pad = radar_buffers.PAD
    n_lines, n_samples = observed.shape
    simulated = np.full(observed.shape, -1.0, dtype=np.float32)
    valid = np.zeros(observed.shape, dtype=bool)
    missing = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for r in range(start, stop):
            area, flat = _twin_fields(fields, powers, fitted, fit, line0, sample0, r, n_samples)
            row = buffer[r + pad]
            contribution, gamma = row[pad:pad + n_samples, 0], row[pad:pad + n_samples, 1]
            contribution = np.where(contribution < thresholds[0] * area, 0.0, contribution)
            gamma = np.where(gamma < thresholds[1] * area, 0.0, gamma)
            simulated[r] = np.where(area > 0.0, contribution / area, np.nan)
            valid[r] = np.where(np.isnan(gamma), 0.0, gamma) >= reallocation_kernels.VALID_AREA_FRACTION * flat
            known = ~np.isnan(observed[r])
            missing += int(np.sum(~known & ((contribution > 0.0) | (gamma > 0.0))))
            energy = np.where(known, observed[r] * area, 0.0)
            ratios = [np.where(sums > 0.0, energy / sums, 0.0) for sums in (contribution, gamma)]
            for q in range(2):
                line = np.cumsum(ratios[q]) if exact else ratios[q]
                row[:pad, q] = 0.0
                row[pad:pad + n_samples, q] = line
                row[pad + n_samples:, q] = line[-1] if exact else 0.0
    if start == 0:
        buffer[:pad] = 0.0
    if stop == n_lines:
        buffer[pad + n_lines:] = 0.0
    return buffer, simulated, valid, missing


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.booleans(), st.booleans(), st.integers(0, 2),
       st.floats(0.0, 0.6), st.integers(0, 2**31 - 1))
def test_the_ratio_and_residue_passes_match_their_numpy_twin(n_lines, n_samples, exact, fitted, degree, unknown,
                                                             seed):
    """``ratio_lines`` (the reallocation's ratios, and their prefix sums for exact
    projection) and ``clear_residue`` against numpy twins that evaluate the fields and
    divide the same way: equal bit for bit, residue, voids, pixels without area and lines
    of any block included."""
    rng = np.random.default_rng(seed)
    powers = np.array([(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)], dtype=np.int64)
    fields = rng.normal(size=(2, powers.shape[0])) * np.array([[40.0], [60.0]])
    fields[:, 0] += np.array([100.0, 150.0])  # mostly positive areas, some not
    fit = (int(rng.integers(-3, 3)), n_lines + int(rng.integers(0, 4)), int(rng.integers(-3, 3)),
           n_samples + int(rng.integers(0, 4)))
    line0, sample0 = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    buffer = rng.random(radar_buffers.radar_buffer_shape(n_lines, n_samples)) * 200.0
    buffer[rng.random(buffer.shape) < 0.2] = 0.0
    observed = rng.random((n_lines, n_samples)).astype(np.float32)
    observed[rng.random(observed.shape) < unknown] = np.nan
    thresholds = np.array([0.3, 0.5])  # a quarter or so of the sums read as residue
    start = int(rng.integers(0, n_lines))
    stop = int(rng.integers(start + 1, n_lines + 1))
    twin = _twin_ratio_lines(buffer, observed, start, stop, exact, fields, powers, fitted, fit, line0, sample0,
                             thresholds)
    simulated = np.full(observed.shape, -1.0, dtype=np.float32)
    valid = np.zeros(observed.shape, dtype=bool)
    missing = reallocation_kernels.ratio_lines(buffer, observed, start, stop, exact, fields, powers, fitted, fit,
                                               line0, sample0, thresholds, simulated, valid)
    np.testing.assert_array_equal(buffer, twin[0])
    np.testing.assert_array_equal(simulated, twin[1])
    np.testing.assert_array_equal(valid, twin[2])
    assert missing == twin[3]
    images = rng.random((2, n_lines, n_samples)) * 200.0
    images[0, 0, 0] = np.nan
    expected = images.copy()
    for r in range(start, stop):
        area, _ = _twin_fields(fields, powers, fitted, fit, line0, sample0, r, n_samples)
        for q in range(2):
            expected[q, r] = np.where(expected[q, r] < thresholds[q] * area, 0.0, expected[q, r])
    reallocation_kernels.clear_residue(images, start, stop, fields, powers, fitted, fit, line0, sample0, thresholds)
    np.testing.assert_array_equal(images, expected)


def test_an_observation_where_the_dem_goes_is_refused_with_the_order():
    """Every entry takes the DEM first, then the observation(s), then the geometry: an
    observation given first (an array in radar geometry, a SAFE product) is refused
    before any work, naming the order."""
    from sarheight.terrain.observed import observed_scene

    dem = plane_dem(20, 20)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    with pytest.raises(InvalidInputError, match=r"DEM first.*reconstruct\(dem, sar, geometry\)"):
        reconstruct(observation, dem, geometry)
    with pytest.raises(InvalidInputError, match="DEM first"):
        reconstruct("S1A_IW_SLC__1SDV_20221016T015043.SAFE", dem, geometry)
    with pytest.raises(InvalidInputError, match=r"observed_scene\(coarse_dem, sar, geometry, priors\)"):
        observed_scene(observation, dem, geometry, None, execution=QUIET)
