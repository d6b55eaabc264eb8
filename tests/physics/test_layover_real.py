"""Layover, shadow and reconstruction on real DEMs under real Sentinel-1 geometries.

Big Tujunga (SRTM 30 m, San Gabriel Mountains) under an ascending and a descending IW2 SLC,
and Rome (Copernicus 30 m, flat) under an IW GRD, all from ``../shared/data`` (the tests
skip where it is absent). Each geometry is read from the product's annotation alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from sarheight.dem import open_dem, terrain_attributes
from sarheight.geometry import RadarGeometry, backward_geocode
from sarheight.ground import empirical_sigma0
from sarheight.observation import intensity_on_window
from sarheight.reallocation import reallocate
from sarheight.reconstruction import reconstruct
from sarheight.simulate import run_simulation, simulate, simulate_sar
from tests.support.scenes import SAFES, assert_closed_recovery, nearer_bound, required


@pytest.fixture(scope="module")
def geometries(shared_data):
    """Loader of the products' geometries, each read once per module."""
    cache = {}

    def load(key):
        if key not in cache:
            cache[key] = RadarGeometry.from_sentinel1(required(shared_data / "s1" / SAFES[key]), "IW/VV")
        return cache[key]

    return load


@pytest.fixture(scope="module")
def geoid(shared_data):
    return required(shared_data / "geoid" / "egm96_15.gtx")


@pytest.fixture(scope="module")
def bigtujunga(shared_data, geoid):
    return open_dem(required(shared_data / "dem" / "bigtujunga_srtm30_utm11.tif"),
                    vertical_datum="egm96", geoid_grid=geoid)


def _circular_mean(degrees: np.ndarray) -> float:
    angle = np.radians(degrees)
    return math.degrees(math.atan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360.0


def _angle_between(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_bigtujunga_layover_faces_each_sensor(bigtujunga, geometries):
    ascending, descending = geometries("ascending"), geometries("descending")
    # The ascending IW2 sees only the DEM's eastern edge: geocode first and keep the
    # bounding box of the cells that both images cover.
    covered = np.ones(bigtujunga.shape, dtype=bool)
    for geometry in (ascending, descending):
        covered &= np.isfinite(backward_geocode(bigtujunga, geometry)["line"].values)
    rows, cols = np.nonzero(covered.any(axis=1))[0], np.nonzero(covered.any(axis=0))[0]
    window = bigtujunga.isel(y=slice(rows.min(), rows.max() + 1), x=slice(cols.min(), cols.max() + 1))
    assert covered.sum() > 20_000
    aspect = terrain_attributes(window)["aspect"].values  # downslope direction, clockwise from north

    layover = {}
    for name, geometry in (("ascending", ascending), ("descending", descending)):
        masks = simulate(window, geometry, oversample=1)  # masks are cell-level: no facets needed
        code = masks["layover"].values
        inside = code != 255
        flagged = (code != 0) & inside
        layover[name] = flagged
        fraction = flagged.sum() / inside.sum()
        # A slope facing a right-looking radar falls towards it: aspect = heading - 90.
        facing = (geometry.heading() - 90.0) % 360.0
        mean = _circular_mean(aspect[flagged & np.isfinite(aspect)])
        print(f"Big Tujunga {window.shape}, {name} (heading {geometry.heading():.1f}): layover "
              f"{100 * fraction:.2f} % of {inside.sum()} cells (active {100 * (code == 1).sum() / inside.sum():.2f} "
              f"%), "
              f"shadow {100 * np.mean(masks['shadow'].values[inside] != 0):.2f} %; mean aspect of layover "
              f"{mean:.0f} deg, slopes facing the sensor {facing:.0f} deg")
        assert fraction > 0.005
        assert _angle_between(mean, facing) < 30.0
    # Ascending looks east-north-east, descending west-north-west: opposite slopes.
    both = layover["ascending"] | layover["descending"]
    shared = layover["ascending"] & layover["descending"]
    print(f"   cells in layover in both: {shared.sum()} of {both.sum()}")
    assert shared.sum() < 0.05 * both.sum()


def test_rome_grd_flat_terrain(shared_data, geoid, geometries):
    grd = geometries("grd")
    assert grd.grid.projection == "ground_range"
    dem = open_dem(required(shared_data / "dem" / "rome_cop30_egm96.tif"), geoid_grid=geoid)  # EPSG:9707
    assert dem.attrs["source_vertical_datum"] == "egm96"
    result = simulate(dem, grd)
    layover, shadow = result["layover"].values, result["shadow"].values
    inside = layover != 255
    assert inside.mean() > 0.99
    layover_fraction = np.mean(layover[inside] != 0)
    shadow_fraction = np.mean(shadow[inside] != 0)
    # Pixels inside the DEM's footprint, on the GRD's 10 m ground-range grid.
    reached = result["mixing"].values > 0
    inner = binary_erosion(reached, iterations=2)
    valid = result["valid"].values[inner].mean()
    # Flat terrain: gamma area per slant-plane pixel area is cot(incidence) (Small 2011).
    cot = 1.0 / np.tan(np.radians(result["incidence_angle"].values))
    ratio = np.median(result["simulated_gamma_area"].values[inner]) / np.median(cot)
    print(f"Rome under the GRD: layover {100 * layover_fraction:.3f} %, shadow {100 * shadow_fraction:.3f} %, "
          f"valid {100 * valid:.2f} % of {inner.sum()} inner pixels, single-segment "
          f"{100 * np.mean(result['mixing'].values[inner] == 1):.2f} %, gamma area / cot(theta) {ratio:.4f}")
    assert layover_fraction < 0.005
    assert shadow_fraction == 0.0
    assert valid > 0.99
    assert abs(ratio - 1.0) < 0.02


def test_reconstruction_under_the_descending_slc(bigtujunga, geometries):
    descending = geometries("descending")
    window = bigtujunga.isel(y=slice(250, 400), x=slice(450, 600))  # steep east-facing slopes

    def law(theta):
        return 2.0 * empirical_sigma0(theta)

    observation = simulate_sar(window, descending, backscatter=law, looks=None, nesz_db=None)
    result = reconstruct(window, observation, descending, contribution=law)
    state = run_simulation(window, descending, contribution=law)
    truth = state.per_cell["contribution"] / state.per_cell["sigma_area"]
    backscatter = result["backscatter"].values
    inner = np.zeros(backscatter.shape, dtype=bool)
    inner[2:-2, 2:-2] = True  # border cells miss part of their neighbours' facets
    lit = inner & np.isfinite(backscatter)
    in_layover = lit & (result["layover"].values != 0) & (result["layover"].values != 255)
    error = np.abs(backscatter[lit] / truth[lit] - 1)
    # Energy conservation: what the cells receive is what the pixels hold.
    observed = intensity_on_window(observation, state.window)
    energy = np.nansum(reallocate(state, observed)["energy"])
    pixel_energy = np.nansum(np.where(state.images[0] > 0, observed * state.pixel_area, 0.0))
    print(f"reconstruction under the descending SLC ({observation.shape[0]} x {observation.shape[1]} pixels): "
          f"{lit.sum()} cells recovered ({in_layover.sum()} in layover), max relative error {error.max():.2e}; "
          f"energy {energy:.6e} vs {pixel_energy:.6e} m2")
    assert lit.sum() > 0.9 * inner.sum()
    assert in_layover.sum() > 50
    assert error.max() < 1e-5
    assert math.isclose(energy, pixel_energy, rel_tol=1e-9)


def test_closed_simulation_recovers_the_border_of_a_real_dem(bigtujunga, geometries):
    """A 444 x 582 crop of Big Tujunga under the descending IW2: 30 m cells span about 8
    slant-range samples, so the facets of the border cells reach several samples beyond
    the outermost centres (at the corners, where the grid, turned 13 degrees against the
    radar's, meets the bounds of the radar window). Nothing lies beyond the DEM in a
    closed simulation: every lit cell is recovered, the corners included, in memory and
    block-wise."""
    descending = geometries("descending")
    window = bigtujunga.isel(y=slice(199, 643), x=slice(400, 982))
    assert_closed_recovery(window, descending, chunks=(None, 64), lit_border=0.95)


def test_block_wise_equals_in_memory_under_a_real_orbit(bigtujunga, geometries):
    """A projected DEM under a real orbit, in blocks of 128 rows: the masks are identical
    and the values agree to float32 rounding (7e-7 relative), but for cells whose energy
    comes from pixels the DEM barely fills (grazing incidence beside shadow), within 1e-7
    of the largest value."""
    descending = geometries("descending")
    window = bigtujunga.isel(y=slice(200, 500), x=slice(400, 700))
    observation = simulate_sar(window, descending, looks=4.4, nesz_db=-22.0)
    reference = reconstruct(window, observation, descending, progress=False)
    blocks = reconstruct(window, observation, descending, chunks=128, progress=False)
    assert (reference["layover"].values != 0).mean() > 0.002
    for name in ("layover", "shadow", "mixing"):
        np.testing.assert_array_equal(blocks[name].values, reference[name].values)
    for name in ("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"):
        a, b = np.asarray(blocks[name].values, dtype=np.float64), reference[name].values.astype(np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        finite = np.isfinite(b)
        relative = np.abs(a[finite] - b[finite]) / np.maximum(np.abs(b[finite]), 1e-30)
        largest = np.abs(b[finite]).max()
        print(f"{name}: max relative difference {relative.max():.2g}, {np.sum(relative > 7e-7)} cells above 7e-7")
        assert np.all(np.abs(a[finite] - b[finite]) <= 7e-7 * np.abs(b[finite]) + 1e-7 * largest), name
        assert np.mean(relative > 7e-7) < 1e-3, name


# The reference data's measurement TIFF is a placeholder without the GCPs a product's has.
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_reconstruct_from_a_safe_product_path(shared_data, geoid):
    """A SAFE path: geometry from the annotation, beta0 from the calibration LUTs and the
    measurement TIFF (an all-zero placeholder in the reference data), read for the
    DEM's window only."""
    safe = required(shared_data / "s1" / SAFES["grd"])
    dem = open_dem(required(shared_data / "dem" / "rome_cop30_egm96.tif"), geoid_grid=geoid)
    from sarheight.errors import PlausibilityWarning

    with pytest.warns(PlausibilityWarning, match="all zero where the DEM falls: a placeholder product"):
        result = reconstruct(dem, safe, measurement="IW/VV", progress=False)
    inside = result["layover"].values != 255
    assert inside.mean() > 0.99
    assert np.all(result["geocoded"].values[inside] == 0.0)
    assert np.nanmax(np.abs(result["backscatter"].values)) == 0.0
    assert result.attrs["product"].startswith("S1B_IW_GRDH")


def test_closed_simulation_recovers_the_corners_of_the_sample_dem():
    """The packaged Big Tujunga crop (30 m cells, runs on a clean clone) under an
    ascending IW-SLC-like geometry (14 m lines, 2.3 m slant-range samples): its border
    cells' facets reach many samples beyond the outermost centres. Every lit cell comes
    back, the corners included, in memory and block-wise (with a window cut at the
    centres, cells at three corners were 16-22 % low)."""
    from sarheight.sample_data import bigtujunga_dem

    dem = bigtujunga_dem()
    west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
    geometry = RadarGeometry.synthetic(center_lon=(west + east) / 2, center_lat=(south + north) / 2,
                                       heading_deg=348, incidence_near_deg=30, incidence_far_deg=46,
                                       line_spacing=14, sample_spacing=2.3)
    assert_closed_recovery(dem, geometry, chunks=(None, 64), lit_border=0.95)


def test_sweep_of_the_bounding_lines_under_the_grd_on_alpine_relief(shared_data, geoid, geometries):
    """The sweep that cuts only the lines bounding its groups (``every_line=False``, what
    ``simulate_sar`` runs) gives the masks of the full sweep bit for bit, and every line
    the mixing of the bounding line nearest to it, on a DEM coarser than the pixels under
    the real GRD: the SRTM 3" heights of eastern Turkey placed on the Rome DEM's 1" grid
    (23 m x 31 m cells, slopes 3x steeper: Alpine relief), as the benchmark's mountains."""
    import rasterio

    from sarheight.kernels.buckets import line_group

    grd = geometries("grd")
    with rasterio.open(required(shared_data / "dem" / "rome_cop30_egm96.tif")) as source:
        transform = source.transform
    with rasterio.open(required(shared_data / "dem" / "eastern_turkey_srtm3.tif")) as source:
        relief = source.read(1, window=((0, 240), (0, 240))).astype(np.float32)
    dem = open_dem((relief, transform, "EPSG:4326"), vertical_datum="egm96", geoid_grid=geoid)
    full = run_simulation(dem, grd, keep_per_cell=False)
    bounds = run_simulation(dem, grd, keep_per_cell=False, every_line=False)
    group = line_group(full.cells["line"], full.cells["valid"])
    assert group >= 2  # 2-3 lines per DEM row: the lines between the bounds are not cut
    layover = (full.layover == 1) | (full.layover == 2)
    assert layover.mean() > 0.02 and (full.shadow == 2).any()
    assert np.array_equal(bounds.layover, full.layover) and np.array_equal(bounds.shadow, full.shadow)
    assert np.array_equal(bounds.mixing, full.mixing[nearer_bound(full.window.lines, group)])
    mixed = (full.mixing > 1) | (bounds.mixing > 1)
    print(f"group {group}: mixing differs from the full sweep's in {np.mean(full.mixing != bounds.mixing):.2%} of "
          f"the pixels, {np.mean(full.mixing[mixed] != bounds.mixing[mixed]):.1%} of those mixing several segments")
