"""Tests of sarheight.priors drawn on a DEM: sampled patterns and instrument errors.

References: the DEM's own heights and cells; planes and parabolas for the instrument errors
(slope times displacement, the footprint's second moment against a disc's, computed on a
lattice). Points files, datums, distance maps and interpolation: test_prior_points.py.
"""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import scipy.ndimage
import scipy.spatial
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.errors import (
    VerticalDatumWarning,
)
from sarheight.priors import (
    PATTERNS,
    PRIOR_KINDS,
    PriorErrors,
    distance_map,
    draw_prior_errors,
    instrument_priors,
    sample_priors,
)
from tests.support.priors import TUJUNGA, prior_cells, utm_dem
from tests.support.scenes import plane_dem, rough_dem

# --------------------------------------------------------------------------------------
# Sampled priors: counts, seeds, noise, the output
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_count_and_fraction_give_that_many_priors_on_cells_with_a_height(pattern):
    dem = rough_dem(3, rows=50, cols=60)
    values = dem.values.copy()
    values[10:20, 5:25] = np.nan  # a void: no prior may land there
    dem = dem.copy(data=values)
    n_valid = int(np.isfinite(values).sum())
    for kwargs, expected in (({"count": 137}, 137), ({"fraction": 0.02}, round(0.02 * n_valid)),
                             ({"fraction": 1e-6}, 1), ({"count": n_valid}, n_valid)):
        priors = sample_priors(dem, pattern=pattern, seed=4, **kwargs)
        mask = priors["prior_mask"].values.astype(bool)
        height = priors["prior_height"].values
        assert mask.sum() == expected == priors.attrs["count"], kwargs
        assert priors.attrs["fraction"] == pytest.approx(expected / n_valid)
        assert np.array_equal(np.isfinite(height), mask)
        assert np.isfinite(values[mask]).all()
        np.testing.assert_array_equal(height[mask], values[mask])


def test_output_is_on_the_dem_grid_with_its_crs(tujunga):
    priors = sample_priors(tujunga, count=50, pattern="tracks", noise_m=1.5, seed=7)
    assert priors["prior_height"].dtype == np.float32
    assert priors["prior_mask"].dtype == np.uint8
    assert set(np.unique(priors["prior_mask"].values)) == {0, 1}
    np.testing.assert_array_equal(priors["x"].values, tujunga["x"].values)
    np.testing.assert_array_equal(priors["y"].values, tujunga["y"].values)
    for item in (priors, priors["prior_height"], priors["prior_mask"]):
        assert pyproj.CRS(item.rio.crs) == pyproj.CRS("EPSG:32611")
        assert item.rio.transform().almost_equals(tujunga.rio.transform())
    attrs = priors.attrs
    assert (attrs["pattern"], attrs["count"], attrs["seed"], attrs["noise_m"]) == ("tracks", 50, 7, 1.5)
    assert attrs["vertical_datum"] == "ellipsoid" and attrs["source_vertical_datum"] == "egm96"
    assert 2.0 <= attrs["track_heading_deg"] <= 12.0
    assert priors["prior_height"].attrs["units"] == "m"
    with pytest.warns(VerticalDatumWarning):
        from_file = sample_priors(TUJUNGA, count=5)
    assert TUJUNGA.name in from_file.attrs["source"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_same_seed_gives_the_same_priors_and_another_seed_others(tujunga, pattern):
    first = sample_priors(tujunga, count=200, pattern=pattern, seed=11)
    again = sample_priors(tujunga, count=200, pattern=pattern, seed=11)
    other = sample_priors(tujunga, count=200, pattern=pattern, seed=12)
    assert prior_cells(first) == prior_cells(again)
    np.testing.assert_array_equal(first["prior_height"].values, again["prior_height"].values)
    assert prior_cells(first) != prior_cells(other)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_noise_has_the_asked_statistics_and_moves_no_prior(pattern):
    dem = plane_dem(120, 120, slope_east_deg=5.0)
    clean = sample_priors(dem, count=6000, pattern=pattern, seed=2)
    noisy = sample_priors(dem, count=6000, pattern=pattern, seed=2, noise_m=4.0)
    assert prior_cells(clean) == prior_cells(noisy)
    mask = clean["prior_mask"].values.astype(bool)
    error = noisy["prior_height"].values[mask].astype(np.float64) - clean["prior_height"].values[mask]
    # 6000 draws: the mean within 4 standard errors (0.2 m), the deviation within 5 %.
    assert abs(error.mean()) < 4 * 4.0 / math.sqrt(error.size)
    assert error.std() == pytest.approx(4.0, rel=0.05)


# --------------------------------------------------------------------------------------
# The patterns are what they imitate
# --------------------------------------------------------------------------------------


def _principal_angle_from_north(rows, cols, step_n, step_e):
    """Angle (degrees, 0..90) between north and the principal axis of cells (metres)."""
    east = (cols - cols.mean()) * step_e
    north = (rows - rows.mean()) * step_n
    _, vectors = np.linalg.eigh(np.cov(np.vstack((east, north))))
    axis = vectors[:, -1]
    return math.degrees(math.atan2(abs(axis[0]), abs(axis[1])))


@pytest.mark.parametrize("seed", range(4))
def test_tracks_are_thin_near_meridional_lines_in_beam_pairs(tujunga, seed):
    priors = sample_priors(tujunga, count=900, pattern="tracks", seed=seed)
    mask = priors["prior_mask"].values.astype(bool)
    labels, n = scipy.ndimage.label(mask, structure=np.ones((3, 3)))
    lines = 0
    for label in range(1, n + 1):
        rows, cols = np.nonzero(labels == label)
        if rows.size < 40:
            continue  # a beam's end, cut to meet the count, or a corner of the grid
        lines += 1
        angle = _principal_angle_from_north(rows, cols, 30.0, 30.0)
        # The heading drawn (2-12 degrees), plus the staircase of the cells.
        assert angle < 15.0, (label, angle)
        # One cell wide (two where the line steps sideways): at most 2 cells a row.
        assert np.bincount(rows).max() <= 2
    assert lines >= 2
    # Beams come in pairs 90 m (3 cells) apart: gaps of 2-4 columns between priors of a row.
    assert any(np.any(np.isin(np.diff(np.flatnonzero(row)), (2, 3, 4))) for row in mask)


def _relief(heights, window=33):
    """Height above the mean of the window x window cells around (33 x 30 m: 1 km)."""
    return heights - scipy.ndimage.uniform_filter(heights.astype(np.float64), size=window, mode="nearest")


def _neighbour_grades(heights, mask, cell=30.0):
    """|height difference| / distance between every two 8-neighbours both in ``mask``."""
    rows, cols = heights.shape
    grades = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        c0, c1 = max(0, -dc), cols - max(0, dc)
        a = (slice(0, rows - dr), slice(c0, c1))
        b = (slice(dr, rows), slice(c0 + dc, c1 + dc))
        both = mask[a] & mask[b]
        grades.append(np.abs(heights[a] - heights[b])[both] / (cell * math.hypot(dr, dc)))
    return np.concatenate(grades)


def test_clusters_are_paths_on_low_ground_along_gentle_grades(tujunga):
    heights = tujunga.values.astype(np.float64)
    relief = _relief(heights)
    terrain_grade = _neighbour_grades(heights, np.ones(heights.shape, bool)).mean()
    relief_cluster, relief_random = [], []
    for seed in range(6):
        clusters = sample_priors(tujunga, count=400, pattern="clusters", seed=seed)
        random = sample_priors(tujunga, count=400, pattern="random", seed=seed)
        mask = clusters["prior_mask"].values.astype(bool)
        assert 2 <= clusters.attrs["clusters"] <= 20
        # A path: almost every prior has another one among its 8 neighbours.
        neighbours = scipy.ndimage.convolve(mask.astype(int), np.ones((3, 3), int), mode="constant") - 1
        assert np.mean(neighbours[mask] >= 1) > 0.97
        # Road-like: the grade between neighbouring priors is well below the terrain's
        # (Big Tujunga: 0.30 on average, 0.15-0.18 along the paths).
        assert _neighbour_grades(heights, mask).mean() < 0.75 * terrain_grade
        relief_cluster.append(relief[mask].mean())
        relief_random.append(relief[random["prior_mask"].values.astype(bool)].mean())
    # Lower than their surroundings (valleys), seed after seed.
    assert np.mean(relief_cluster) < np.mean(relief_random) - 20.0
    assert sum(c < r for c, r in zip(relief_cluster, relief_random, strict=True)) >= 5


def test_tracks_cross_the_terrain_whatever_its_grade(tujunga):
    """The altimeter ignores the terrain: along its lines, grades are the terrain's."""
    heights = tujunga.values.astype(np.float64)
    terrain_grade = _neighbour_grades(heights, np.ones(heights.shape, bool)).mean()
    mask = sample_priors(tujunga, count=1000, pattern="tracks", seed=0)["prior_mask"].values.astype(bool)
    assert _neighbour_grades(heights, mask).mean() == pytest.approx(terrain_grade, rel=0.25)


def test_patterns_leave_gaps_that_random_priors_do_not(tujunga):
    """Uniform priors are the easy case: tracks and clusters leave most cells far away."""
    median = {pattern: float(np.median(distance_map(sample_priors(tujunga, fraction=0.01, pattern=pattern,
                                                                  seed=1)).values))
              for pattern in PATTERNS}
    assert median["tracks"] > 3 * median["random"]
    assert median["clusters"] > 3 * median["random"]


# --------------------------------------------------------------------------------------
# Instrument errors
# --------------------------------------------------------------------------------------


def _field_dem(field, rows=80, cols=80, cell=30.0):
    """A projected DEM of ``field(east, north)`` (m, from the grid's north-west corner; north
    negative down the grid) at the cell centres, and the heights it holds."""
    east = (np.arange(cols) + 0.5) * cell
    north = -(np.arange(rows) + 0.5) * cell
    dem = utm_dem(field(east[None, :], north[:, None]) + np.zeros((rows, cols)), cell=cell)
    return dem, dem.values.astype(np.float64)


def _errors_of(priors, heights):
    """Prior minus the DEM's height at every prior's cell (m)."""
    mask = priors["prior_mask"].values.astype(bool)
    return priors["prior_height"].values[mask].astype(np.float64) - heights[mask]


@pytest.mark.parametrize(("grade_e", "grade_n"), [(0.3, 0.0), (0.2, -0.25), (0.0, 0.0)])
def test_geolocation_error_on_a_plane_is_the_displacement_times_the_slope(grade_e, grade_n):
    """h(p + d) - h(p) = grade . d: with d Gaussian of g per axis, its std is g |grade|."""
    dem, heights = _field_dem(lambda e, n: 500.0 + grade_e * e + grade_n * n)
    priors = sample_priors(dem, count=4000, seed=5, errors=PriorErrors("test", geolocation_m=6.0))
    error = _errors_of(priors, heights)
    expected = 6.0 * math.hypot(grade_e, grade_n)
    # 4000 draws: the deviation within 5 % (its standard error is 1.1 %), the mean within 4
    # standard errors; the priors on the edge cells too (the slope continues past the edge).
    assert error.std() == pytest.approx(expected, rel=0.05, abs=1e-3)
    assert abs(error.mean()) < 4 * expected / math.sqrt(error.size) + 1e-3


def test_geolocation_error_on_a_geographic_grid_is_in_metres():
    """plane_dem's ~30 m cells in degrees: the displacement (m) reaches the right cells."""
    dem = plane_dem(80, 80, slope_east_deg=10.0)
    priors = sample_priors(dem, count=4000, seed=6, errors=PriorErrors("test", geolocation_m=5.0))
    error = _errors_of(priors, dem.values.astype(np.float64))
    assert error.std() == pytest.approx(5.0 * math.tan(math.radians(10.0)), rel=0.05)


def test_footprint_average_keeps_a_plane_and_raises_a_parabola_by_its_curvature():
    """A Gaussian footprint of sigma = D / 4, like the disc of diameter D, has E[dx^2] =
    r^2 / 4 (r = D / 2): on h = (c_e e^2 + c_n n^2) / 2 it adds (c_e + c_n) r^2 / 8."""
    footprint = PriorErrors("test", footprint_m=25.0)
    dem, heights = _field_dem(lambda e, n: 300.0 + 0.2 * e - 0.1 * n)
    np.testing.assert_allclose(_errors_of(sample_priors(dem, count=500, seed=1, errors=footprint), heights),
                               0.0, atol=2e-3)
    # 2 m cells: the bilinear interpolant lies above the parabola by c/2 t (1 - t) cell^2 at
    # most (0.004 m), under 1 % of the expected 0.6 m.
    c_e, c_n, r = 0.008, 0.004, 20.0
    dem, heights = _field_dem(lambda e, n: 100.0 + 0.5 * (c_e * (e - 200.0) ** 2 + c_n * (n + 200.0) ** 2),
                              rows=200, cols=200, cell=2.0)
    priors = sample_priors(dem, count=2000, seed=1, errors=PriorErrors("test", footprint_m=2 * r))
    # Past the edge the terrain goes on by odd reflection, not as the parabola: only priors
    # whose footprint (its outer ring at 2.6 sigma = 26 m) stays on the grid.
    inside = np.zeros(heights.shape, bool)
    inside[14:-14, 14:-14] = True
    error = (priors["prior_height"].values - heights)[(priors["prior_mask"].values == 1) & inside]
    assert error.size > 1000
    disc = _disc_mean_offset(c_e, c_n, r)
    assert disc == pytest.approx((c_e + c_n) * r**2 / 8, rel=1e-3)
    np.testing.assert_allclose(error, disc, rtol=0.01)


def _disc_mean_offset(c_e, c_n, r, n=801):
    """Mean of (c_e x^2 + c_n y^2) / 2 over the disc of radius r, on an n x n lattice."""
    x = np.linspace(-r, r, n)
    xx, yy = np.meshgrid(x, x)
    inside = xx**2 + yy**2 <= r**2
    return float(np.mean(0.5 * (c_e * xx**2 + c_n * yy**2)[inside]))


@pytest.mark.parametrize(("grade_e", "grade_n"), [(0.3, 0.0), (-0.2, 0.4), (0.0, 0.0)])
def test_slope_bias_lowers_sloping_footprints_only(grade_e, grade_n):
    dem, heights = _field_dem(lambda e, n: 800.0 + grade_e * e + grade_n * n)
    errors = PriorErrors("test", footprint_m=25.0, slope_bias=0.5)
    error = _errors_of(sample_priors(dem, count=500, seed=2, errors=errors), heights)
    np.testing.assert_allclose(error, -0.5 * 12.5 * math.hypot(grade_e, grade_n), atol=2e-3)


def test_vertical_noise_has_its_deviation_and_no_bias():
    dem, heights = _field_dem(lambda e, n: 400.0 + 0.3 * e)
    priors = sample_priors(dem, count=4000, seed=3, errors=PriorErrors("test", vertical_m=2.0))
    error = _errors_of(priors, heights)
    assert error.std() == pytest.approx(2.0, rel=0.05)
    assert abs(error.mean()) < 4 * 2.0 / math.sqrt(error.size)
    assert priors.attrs["prior_error_rms_m"] == pytest.approx(math.sqrt(np.mean(error**2)), rel=1e-6)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_exact_errors_are_todays_priors(pattern):
    dem = rough_dem(2, rows=50, cols=50)
    today = sample_priors(dem, count=300, pattern=pattern, noise_m=0.5, seed=9)
    exact = sample_priors(dem, count=300, pattern=pattern, noise_m=0.5, seed=9,
                          errors=draw_prior_errors("exact", 4))
    np.testing.assert_array_equal(exact["prior_height"].values, today["prior_height"].values)
    assert exact.attrs["prior_kind"] == "exact"
    assert exact.attrs["prior_error_rms_m"] == today.attrs["prior_error_rms_m"] > 0
    np.testing.assert_array_equal(instrument_priors(dem, "exact", count=300, seed=9)["prior_height"].values,
                                  sample_priors(dem, count=300, seed=9)["prior_height"].values)
    assert sample_priors(dem, count=300, pattern=pattern, seed=9).attrs["prior_error_rms_m"] == 0.0


@pytest.mark.parametrize("kind", ["altimeter", "lidar", "gnss"])
def test_errors_never_move_the_cells_and_the_same_seed_gives_the_same_priors(tujunga, kind):
    spec = PRIOR_KINDS[kind]
    first = instrument_priors(tujunga, kind, count=400, seed=21)
    again = instrument_priors(tujunga, kind, count=400, seed=21)
    exact = sample_priors(tujunga, count=400, seed=21, pattern=spec["pattern"],
                          track_layout=spec.get("track_layout", "icesat2"))
    np.testing.assert_array_equal(first["prior_height"].values, again["prior_height"].values)
    assert first.attrs == again.attrs
    assert prior_cells(first) == prior_cells(exact)
    assert first.attrs["pattern"] == spec["pattern"]
    error = _errors_of(first, tujunga.values.astype(np.float64))
    assert first.attrs["prior_error_rms_m"] == pytest.approx(math.sqrt(np.mean(error**2)), rel=1e-6)
    # float32 storage rounds a few GNSS errors (centimetres on 1-2 km heights) to nothing.
    assert np.mean(error != 0) > 0.95
    if kind == "lidar":
        # Big Tujunga's slopes (tan ~0.6 on average): the slope bias lowers the priors by metres.
        assert error.mean() < -1.0


def test_gedi_tracks_have_a_footprint_every_60_m_at_the_iss_heading(tujunga):
    gedi = sample_priors(tujunga, count=300, pattern="tracks", track_layout="gedi", seed=3)
    icesat = sample_priors(tujunga, count=300, pattern="tracks", seed=3)
    assert 38.0 <= gedi.attrs["track_heading_deg"] <= 62.0 and gedi.attrs["track_layout"] == "gedi"
    assert icesat.attrs["track_layout"] == "icesat2"

    def nearest(priors):
        rows, cols = np.nonzero(priors["prior_mask"].values)
        points = np.column_stack((rows, cols)) * 30.0
        return scipy.spatial.cKDTree(points).query(points, k=2)[0][:, 1]

    # 60 m along the track, which the cells round to 42-67 m; ICESat-2's 20 m give neighbours.
    assert np.mean(nearest(gedi) < 40.0) < 0.05
    assert 40.0 <= np.median(nearest(gedi)) <= 70.0
    assert np.median(nearest(icesat)) == 30.0


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(PRIOR_KINDS)), seed=st.integers(0, 2**63 - 1))
def test_drawn_errors_lie_in_their_kinds_ranges(kind, seed):
    errors = draw_prior_errors(kind, seed)
    assert errors == draw_prior_errors(kind, seed)
    assert errors.kind == kind
    for name in ("vertical_m", "geolocation_m", "footprint_m", "slope_bias"):
        low, high = PRIOR_KINDS[kind][name]
        assert low <= getattr(errors, name) <= high, name
    assert PRIOR_KINDS[kind]["pattern"] in PATTERNS


def test_error_model_is_written_in_the_attrs_and_survives_netcdf(tmp_path):
    errors = PriorErrors("lidar", vertical_m=1, geolocation_m=np.float32(8.5), footprint_m=25, slope_bias=0.5)
    attrs = errors.to_attrs()
    assert attrs == {"prior_kind": "lidar", "prior_vertical_m": 1.0, "prior_geolocation_m": 8.5,
                     "prior_footprint_m": 25.0, "prior_slope_bias": 0.5}
    assert all(type(value) in (float, str) for value in attrs.values())
    assert errors.to_attrs(prefix="gedi_")["gedi_kind"] == "lidar"
    priors = sample_priors(rough_dem(1), count=50, seed=0, errors=errors)
    assert attrs.items() <= priors.attrs.items()
    priors.to_netcdf(tmp_path / "priors.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "priors.nc", engine="h5netcdf") as opened:
        for name, value in {**attrs, "prior_error_rms_m": priors.attrs["prior_error_rms_m"]}.items():
            assert opened.attrs[name] == value
