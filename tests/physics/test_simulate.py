"""The simulation (sarheight.simulate): exact area projection against supersampling,
layover and shadow on planes against their closed forms, gamma on flat terrain, the
closed simulation's border, refused parameters, band-by-band tiles and block extents
against the whole, the evenly chosen cells.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.errors import InvalidInputError
from sarheight.geometry import RadarGeometry
from sarheight.ground import empirical_sigma0
from sarheight.kernels import facets, radar_buffers
from sarheight.kernels.projection import gather_triangles, scatter_triangles
from sarheight.reconstruction import reconstruct
from sarheight.simulate import simulate, simulate_sar
from tests.support.scenes import assert_closed_recovery, plane_dem, rough_dem, synthetic_geometry


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


@settings(max_examples=50, deadline=None)
@given(st.floats(-1.5, 7.5), st.floats(-1.5, 7.5), st.floats(0.1, 5.0), st.floats(-3.0, 3.0))
def test_sliver_point_deposit_lands_in_its_pixel_and_is_read_back(line, sample, q0, q1):
    """Footprints too thin for Green's theorem go to their centroid's pixel: the scatter
    adds them to that pixel alone, the gather reads that pixel's ratio (its adjoint)."""
    import numba

    from sarheight.kernels import radar_buffers

    deposit = numba.njit(lambda flat, pixel, a, b: facets.deposit_point(flat, pixel, a, b))
    read = numba.njit(lambda flat, pixel: facets.read_point(flat, pixel))
    acc = np.zeros(radar_buffers.scatter_buffer_shape(6, 6, True))
    width = acc.shape[1]
    row, col = math.floor(line), math.floor(sample)
    inside = 0 <= row < 6 and 0 <= col < 6
    pixel = facets._pixel_offset(line, sample, 6, 6, width)  # -1: off the image, nothing deposited
    assert (pixel >= 0) == inside
    if inside:
        deposit(acc.reshape(-1), pixel, q0, q1)
    sums = np.zeros(radar_buffers.radar_buffer_shape(6, 6))
    radar_buffers.add_tile(acc, True, sums, 0, 0)
    image = sums[radar_buffers.PAD:-radar_buffers.PAD, radar_buffers.PAD:-radar_buffers.PAD].transpose(2, 0, 1)
    expected = np.zeros((2, 6, 6))
    if inside:
        expected[:, row, col] = q0, q1
    assert np.allclose(image, expected, rtol=0, atol=1e-12)
    ratio = np.random.default_rng(1).random((2, 6, 6))
    prefix = np.empty(radar_buffers.radar_buffer_shape(6, 6))
    radar_buffers.prefix_buffer(ratio, 0, 6, True, prefix)
    if inside:
        value = read(prefix.reshape(-1), pixel)
        assert math.isclose(q0 * value[0] + q1 * value[1], float((image * ratio).sum()), rel_tol=1e-12,
                            abs_tol=1e-12)


@pytest.mark.parametrize("slope", [10.0, 34.0, 36.0, 50.0])
def test_planar_fore_slope_layover_iff_steeper_than_incidence(slope):
    # Heading north, right-looking: the radar is west of the scene looking east, so a slope
    # rising towards the east faces it. Layover iff steeper than the incidence (35 deg at
    # the scene; the look angle at the sensor, about 31 deg, is not the threshold): one
    # degree either side tells them apart.
    dem = plane_dem(40, 40, slope_east_deg=slope)
    result = simulate(dem, synthetic_geometry(dem))
    interior = result["layover"].values[5:-5, 5:-5]
    assert np.all(interior != 255)
    layover_fraction = np.mean(interior != 0)
    if slope > 35.0:
        assert layover_fraction > 0.95
        assert np.mean(interior == 1) > 0.5
    else:
        assert layover_fraction == 0.0


@pytest.mark.parametrize("slope", [40.0, 54.0, 56.0, 60.0])
def test_planar_back_slope_active_shadow_iff_steeper_than_complement(slope):
    # A slope falling away from the radar (towards the east) is in active shadow iff
    # steeper than 90 - 35 deg (not 90 minus the look angle, about 59 deg).
    dem = plane_dem(40, 40, slope_east_deg=-slope)
    result = simulate(dem, synthetic_geometry(dem))
    interior = result["shadow"].values[5:-5, 5:-5]
    if slope > 55.0:
        assert np.mean(interior == 1) > 0.95
    else:
        assert np.mean(interior != 0) == 0.0


def test_flat_terrain_gamma_is_beta_tan_incidence():
    dem = plane_dem(30, 30)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry,
                               backscatter=lambda theta: np.full_like(theta, 0.1) * 0 + empirical_sigma0(theta),
                               looks=None, nesz_db=None)
    result = reconstruct(dem, observation, geometry, contribution="gamma", output="gamma0")
    incidence = np.radians(simulate(dem, geometry)["incidence_angle"].values)
    beta = result["geocoded"].values / np.sin(incidence)
    interior = (slice(4, -4), slice(4, -4))
    ratio = result["backscatter"].values[interior] / (beta[interior] * np.tan(incidence[interior]))
    assert np.nanmax(np.abs(ratio - 1)) < 2e-3
    # Flattened gamma0 and gamma-contribution reallocation are the same thing.
    assert np.allclose(result["flattened"].values[interior], result["backscatter"].values[interior], rtol=1e-6)


@pytest.mark.parametrize(("relief", "heading", "line_spacing", "sample_spacing", "blocks"), [
    (300.0, 193.0, 14.0, 2.3, True),  # Sentinel-1 IW pixels, descending: the grid turned 13 deg
    (300.0, 15.0, 4.0, 4.0, True),
    (0.0, 0.0, 4.0, 4.0, True),  # grid and radar aligned: whole edges, not only corners
    (0.0, 45.0, 2.0, 2.0, False),  # both cell steps large: a corner reaches a whole step out
])
def test_closed_simulation_recovers_the_dem_border_and_corners(relief, heading, line_spacing, sample_spacing,
                                                               blocks):
    """DEM cells larger than the radar pixels (30 m cells, 2-14 m pixels): the facets of
    the border cells reach half a cell step beyond the outermost centres, at a corner
    along both axes, several pixels. Nothing lies beyond the DEM in a closed simulation:
    the border and corner cells are recovered as exactly as the interior, in memory and
    block-wise (the radar window and the tiles' reach and sub-windows hold their whole
    footprints)."""
    dem = rough_dem(3, rows=40, cols=40, relief=relief) if relief else plane_dem(40, 40)
    west, south, east, north = dem.rio.bounds()
    geometry = RadarGeometry.synthetic(
        center_lon=0.5 * (west + east), center_lat=0.5 * (south + north), heading_deg=heading,
        incidence_near_deg=33.0, incidence_far_deg=37.0, line_spacing=line_spacing,
        sample_spacing=sample_spacing, azimuth_extent=5e3,
    )
    assert_closed_recovery(dem, geometry, chunks=(None, (8, 8)) if blocks else (None,))


def test_fields_on_another_grid_and_bad_simulation_parameters_are_refused():
    dem = plane_dem(20, 20)
    geometry = synthetic_geometry(dem)
    weights = dem.copy(data=np.ones(dem.shape))
    moved = weights.assign_coords(y=weights["y"] + 0.5)
    with pytest.raises(InvalidInputError, match="not on the DEM grid"):
        simulate(dem, geometry, contribution=moved)
    with pytest.raises(InvalidInputError, match="not on the DEM grid"):
        simulate_sar(dem, geometry, backscatter=moved * 0.1)
    with pytest.raises(InvalidInputError, match="dims"):
        simulate(dem, geometry, contribution=weights.rename(y="row"))
    # The same grid with its axes swapped is the same field.
    swapped = simulate(dem, geometry, contribution=weights.transpose("x", "y"))["simulated_area"].values
    np.testing.assert_array_equal(swapped, simulate(dem, geometry, contribution=weights)["simulated_area"].values)
    with pytest.raises(InvalidInputError, match=r"backscatter .*infinite"):
        simulate_sar(dem, geometry, backscatter=weights * np.inf)
    for name, value in (("nesz_db", float("nan")), ("seed", -1), ("looks", 0.0)):
        with pytest.raises(InvalidInputError, match=name):
            simulate_sar(dem, geometry, **{name: value})


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 7), st.integers(0, 5), st.integers(0, 4), st.booleans(),
       st.lists(st.integers(-3, 12), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_a_tile_added_band_by_band_equals_the_tile_added_at_once(rows, cols, line_offset, sample_offset, exact,
                                                                 cuts, seed):
    """The scatter adds its tiles band of lines by band (a lock per band): the rows in any
    partition, cut anywhere (beyond the tile's ends too), add up to the whole tile."""
    acc = np.random.default_rng(seed).random(radar_buffers.scatter_buffer_shape(rows, cols, exact))
    shape = radar_buffers.radar_buffer_shape(rows + line_offset + 2, cols + sample_offset + 2)
    whole, banded = np.zeros(shape), np.zeros(shape)
    radar_buffers.add_tile(acc, exact, whole, line_offset, sample_offset)
    edges = sorted({-5, rows + 5, *cuts})
    for start, stop in itertools.pairwise(edges):
        radar_buffers.add_tile_rows(acc, exact, banded, line_offset, sample_offset, start, stop)
    np.testing.assert_array_equal(banded, whole)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 7), st.lists(st.integers(0, 9), max_size=4), st.floats(0.0, 0.6),
       st.integers(0, 2**31 - 1))
def test_the_facet_extent_of_row_blocks_combines_into_the_whole(rows, cols, cuts, voids, seed):
    """``radar_window`` takes the facets' extent on row blocks in threads: the extremes of
    the blocks' extents are the whole DEM's, bit for bit, borders and voids included."""
    from sarheight.compute import facet_extent

    rng = np.random.default_rng(seed)
    line = np.cumsum(rng.random((rows, cols)) + 0.2, axis=0) + rng.random((1, cols))
    sample = np.cumsum(rng.random((rows, cols)) + 0.2, axis=1) + rng.random((rows, 1))
    valid = rng.random((rows, cols)) >= voids
    whole = np.array(radar_buffers.facet_extent(line, sample, valid, True, True, True, True))
    parts = np.array([radar_buffers.facet_extent_rows(line, sample, valid, start, stop, True, True, True, True)
                      for start, stop in itertools.pairwise(sorted({0, rows, *(c for c in cuts if c < rows)}))])
    if np.all(np.isnan(whole)):
        assert np.all(np.isnan(parts))
        return
    combined = [np.nanmin(parts[:, 0]), np.nanmax(parts[:, 1]), np.nanmin(parts[:, 2]), np.nanmax(parts[:, 3])]
    np.testing.assert_array_equal(combined, whole)
    np.testing.assert_array_equal(facet_extent(line, sample, valid), whole)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.floats(0.0, 1.0), st.integers(1, 80), st.integers(0, 2**31 - 1))
def test_evenly_chosen_cells_are_those_of_the_listing_of_every_cell(rows, cols, share, samples, seed):
    """``flat_orientation`` picks its cells through per-row counts: the same cells as
    listing every True cell and taking evenly spaced ones from it."""
    from sarheight.simulate.cells import evenly_chosen

    mask = np.random.default_rng(seed).random((rows, cols)) < share
    listed = np.flatnonzero(mask)
    chosen = evenly_chosen(mask, samples)
    if listed.size == 0:
        assert chosen[0].size == 0 and chosen[1].size == 0
        return
    expected = np.divmod(listed[np.linspace(0, listed.size - 1, min(samples, listed.size)).astype(np.int64)], cols)
    np.testing.assert_array_equal(chosen[0], expected[0])
    np.testing.assert_array_equal(chosen[1], expected[1])
    # A view with strides (the cells with a right and a lower neighbour), as flat_orientation passes.
    view = np.random.default_rng(seed + 1).random((rows + 1, cols + 1)) < share
    listed = np.flatnonzero(view[:-1, :-1])
    if listed.size:
        expected = np.divmod(listed[np.linspace(0, listed.size - 1, min(samples, listed.size)).astype(np.int64)],
                             cols)
        chosen = evenly_chosen(view[:-1, :-1], samples)
        np.testing.assert_array_equal(chosen[0], expected[0])
        np.testing.assert_array_equal(chosen[1], expected[1])


@pytest.mark.parametrize("entry", ["simulate", "simulate_sar", "reconstruct"])
@pytest.mark.parametrize(("options", "match"), [({"projection": "nearest"}, "projection must be"),
                                                ({"oversample": 0}, "oversample")])
def test_each_entry_refuses_bad_simulation_options_before_it_reads_the_dem(entry, options, match, monkeypatch):
    """The simulation's options are checked at the user's entries, once, before the DEM is
    read; the inner pass (``run_simulation``) takes them as checked."""
    import sarheight.reconstruction
    import sarheight.simulate.images

    dem = rough_dem(seed=3, rows=12, cols=12)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None) if entry == "reconstruct" else None

    def no_reading(*args, **kwargs):
        raise AssertionError("the DEM was read before the options were checked")

    for module in (sarheight.simulate.images, sarheight.reconstruction):
        monkeypatch.setattr(module, "checked_dem", no_reading)
    with pytest.raises(InvalidInputError, match=match):
        if entry == "reconstruct":
            reconstruct(dem, observation, geometry, **options)
        else:
            {"simulate": simulate, "simulate_sar": simulate_sar}[entry](dem, geometry, **options)
