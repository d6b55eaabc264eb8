"""The share of a cell's own footprint that faces the radar in layover
(``kernels.facing.layover_facing_share``, ``simulate.layover_facing_share``) and the
active-layover flag it gives (``kernels.facing.active_layover``): against a
vectorised-numpy twin, analytic mappings, and an independent reference written here from
first principles (sub-points on the bilinear surface in ECEF, their surface normal, the
look vector and the along-track direction), on synthetic terrain and a real DEM under a
real orbit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sarheight.dem import open_dem
from sarheight.geometry import RadarGeometry
from sarheight.kernels import facing
from sarheight.masks import MaskCode
from sarheight.simulate import simulate
from sarheight.simulate.cells import (
    active_layover,
    cell_geometry,
    flat_orientation,
    layover_facing_share,
    radar_window,
    visibility_masks,
)
from tests.support.scenes import SAFES, plane_dem, required, rough_dem, synthetic_geometry
from twins.geometry import FACING_OFFSETS as OFFSETS
from twins.geometry import (
    geodetic_to_ecef,
    layover_facing_share_twin,
    quadrant_reversing_twin,
    quadrant_values,
)

N = facing.FACING_SUBPOINTS


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 9), cols=st.integers(1, 9),
       orientation=st.sampled_from([-1, 1]),
       nan=st.booleans())
def test_the_kernel_matches_its_numpy_twin(seed, rows, cols, orientation, nan):
    """Random surfaces, folds included (the quadrants whose corners differ in sign are
    counted point by point, the others at once); with ``nan``, a valid cell with a NaN
    line or sample among them."""
    assert len(OFFSETS) == N  # the twin samples the kernel's sub-points
    rng = np.random.default_rng(seed)
    line = rng.normal(size=(rows, cols)).cumsum(axis=0)
    sample = rng.normal(size=(rows, cols)).cumsum(axis=1)
    valid = rng.random((rows, cols)) > 0.15
    if nan:
        (line if rng.random() < 0.5 else sample)[rng.integers(rows), rng.integers(cols)] = np.nan
    out = np.empty((rows, cols), dtype=np.float32)
    facing.layover_facing_share(line, sample, valid, orientation, 0, rows, out)
    twin = layover_facing_share_twin(line, sample, valid, orientation)
    np.testing.assert_allclose(out, twin.astype(np.float32), equal_nan=True)
    flags = np.empty((rows, cols), dtype=bool)
    facing.active_layover(line, sample, valid, orientation, 0, rows, flags)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(flags, twin > 0.5)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(-3, 3), d=st.floats(-3, 3))
def test_an_affine_mapping_is_all_or_nothing(a, b, c, d):
    """line = a row + b col, sample = c row + d col: the determinant ad - bc everywhere, so
    every cell is range-reversing against the other orientation and none against its own."""
    determinant = a * d - b * c
    if abs(determinant) < 1e-6:
        return
    rows, cols = np.mgrid[0:5, 0:6].astype(float)
    line, sample = a * rows + b * cols, c * rows + d * cols
    valid = np.ones(line.shape, dtype=bool)
    own = 1 if determinant > 0 else -1
    cells = {"line": line, "sample": sample, "valid": valid}
    np.testing.assert_array_equal(layover_facing_share(cells, own), 0.0)
    np.testing.assert_array_equal(layover_facing_share(cells, -own), 1.0)
    assert not active_layover(cells, own).any() and active_layover(cells, -own).all()


def test_voids_and_a_single_cell():
    line = np.array([[0.0, 1.0], [1.0, np.nan]])  # a void in one corner of a 2 x 2 DEM
    valid = np.isfinite(line)
    cells = {"line": np.nan_to_num(line), "sample": np.array([[0.0, 0.0], [1.0, 0.0]]), "valid": valid}
    share = layover_facing_share(cells, orientation=1)
    # Each cell's only quadrant holds the void: nothing is sampled anywhere.
    assert np.isnan(share).all()
    single = {"line": np.zeros((1, 1)), "sample": np.zeros((1, 1)), "valid": np.ones((1, 1), bool)}
    assert np.isnan(layover_facing_share(single, 1)[0, 0])
    assert not active_layover(single, 1)[0, 0]


def _median_determinant_sign(cells):
    line, sample, valid = cells["line"], cells["sample"], cells["valid"]
    determinant = ((line[1:, :-1] - line[:-1, :-1]) * (sample[:-1, 1:] - sample[:-1, :-1])
                   - (line[:-1, 1:] - line[:-1, :-1]) * (sample[1:, :-1] - sample[:-1, :-1]))
    usable = valid[1:, :-1] & valid[:-1, 1:] & valid[:-1, :-1]
    return 1 if np.median(determinant[usable]) > 0 else -1


@pytest.mark.parametrize("heading, look_side", [(0.0, "right"), (100.0, "right"), (190.0, "left"), (280.0, "left")])
def test_the_flat_orientation_comes_from_the_grid_and_geometry_not_the_terrain(heading, look_side):
    """On terrain that is mostly not range-reversing, the level-patch sign is the median
    determinant's; on a DEM that is one steep wall facing the sensor (most cells in
    layover, where the median flips), it stays the same, and the wall's cells are active."""
    dem = rough_dem(5, rows=20, cols=20, relief=200.0)
    geometry = synthetic_geometry(dem, incidence=35.0, heading=heading, look_side=look_side)
    cells = cell_geometry(dem, geometry)
    own = flat_orientation(cells, geometry)
    assert own == _median_determinant_sign(cells)
    # The same grid, heights rising 80 m per cell (about 70 degrees) away from the
    # sensor, the way the sample grows on level ground: a slope facing it, all in layover.
    flat = cell_geometry(plane_dem(20, 20), geometry)
    gradient = np.array([np.mean(np.diff(flat["sample"], axis=0)), np.mean(np.diff(flat["sample"], axis=1))])
    gradient /= np.linalg.norm(gradient)
    rows, cols = np.mgrid[0:20, 0:20].astype(float)
    heights = 80.0 * (gradient[0] * rows + gradient[1] * cols)
    wall = cell_geometry(plane_dem(20, 20).copy(data=(heights - heights.min()).astype(np.float32)), geometry)
    assert _median_determinant_sign(wall) == -own  # the median is fooled
    assert flat_orientation(wall, geometry) == own
    assert wall["active_layover"][1:-1, 1:-1].all()


# --------------------------------------------------------------------------------------
# the independent reference: the surface itself, its normal, the look and along-track
# --------------------------------------------------------------------------------------


def reference_share(cells: dict[str, np.ndarray], geometry: RadarGeometry) -> np.ndarray:
    """Per cell, the share of sub-points (the kernel's positions on the bilinear surface,
    built here from ECEF positions) where moving away from the sensor in ground range,
    along the surface and across track, brings the surface closer to the sensor."""
    ecef = geodetic_to_ecef(cells["lon"], cells["lat"], cells["height"])
    valid = cells["valid"]
    look = cells["look"].astype(np.float64)
    look /= np.linalg.norm(look, axis=-1, keepdims=True)
    _, velocity, *_ = geometry.orbit.state(cells["azimuth_time"].ravel())
    along = (velocity / np.linalg.norm(velocity, axis=-1, keepdims=True)).reshape(look.shape)
    up = ecef / np.linalg.norm(ecef, axis=-1, keepdims=True)
    toward = look - np.einsum("...k,...k->...", look, up)[..., None] * up  # the sensor's side, horizontal
    reversing = np.zeros(valid.shape)
    sampled = np.zeros(valid.shape)
    for dr in (-1, 1):
        for dc in (-1, 1):
            parts = [quadrant_values(ecef[..., k], valid, dr, dc) for k in range(3)]
            ok = parts[0][0]
            p00, p10, p01, p11 = (np.stack([part[m] for part in parts], axis=-1) for m in range(1, 5))
            count = np.zeros(valid.shape)
            for a in OFFSETS:
                for b in OFFSETS:
                    d_rows = ((1 - b) * (p10 - p00) + b * (p11 - p01)) * dr  # along +row
                    d_cols = ((1 - a) * (p01 - p00) + a * (p11 - p10)) * dc  # along +column
                    normal = np.cross(d_cols, d_rows)
                    normal *= np.sign(np.einsum("...k,...k->...", normal, up))[..., None]  # outward
                    tangent = np.cross(normal, along)  # in the surface, across track
                    tangent *= -np.sign(np.einsum("...k,...k->...", tangent, toward))[..., None]  # away from it
                    with np.errstate(invalid="ignore"):
                        count += np.einsum("...k,...k->...", look, tangent) > 0.0
            reversing += np.where(ok, count, 0)
            sampled += np.where(ok, N * N, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid & (sampled > 0), reversing / sampled, np.nan)


def agreement(share: np.ndarray, reference: np.ndarray) -> dict[str, tuple[float, float, int]]:
    """Precision and recall of share > 1/2 against reference > 1/2, on all cells and on
    the unambiguous ones (reference below 1/4 or above 3/4), with the positives counted."""
    found = {}
    both = np.isfinite(share) & np.isfinite(reference)
    for name, where in (("all", both), ("unambiguous", both & (np.abs(reference - 0.5) > 0.25))):
        predicted, actual = (share > 0.5) & where, (reference > 0.5) & where
        hits = (predicted & actual).sum()
        found[name] = (hits / max(predicted.sum(), 1), hits / max(actual.sum(), 1), int(actual.sum()))
    return found


def mask_agreement(layover: np.ndarray, reference: np.ndarray) -> dict[str, tuple[float, float, int]]:
    """:func:`agreement` of the active layover code, and the share of the layover-facing
    cells (reference above 1/2) that the layover mask holds, active or passive
    (``"covered"``: (share, 1, count)), over the cells inside the image."""
    inside = (layover != MaskCode.OUTSIDE) & np.isfinite(reference)
    active = np.where(inside, (layover == MaskCode.ACTIVE).astype(float), np.nan)
    found = agreement(active, np.where(inside, reference, np.nan))
    facing_cells = inside & (reference > 0.5)
    found["covered"] = (float(np.isin(layover[facing_cells], (MaskCode.ACTIVE, MaskCode.PASSIVE)).mean()), 1.0,
                        int(facing_cells.sum()))
    return found


def check_masks(found: dict[str, tuple[float, float, int]]) -> None:
    """The issue's bars: precision and recall of active layover >= 0.95 on unambiguous
    cells and >= 0.85 on all; the layover mask holds >= 99 % of the layover-facing cells."""
    for name, least in (("unambiguous", 0.95), ("all", 0.85)):
        precision, recall, _ = found[name]
        assert precision >= least and recall >= least, (name, found)
    assert found["covered"][0] >= 0.99, found


def test_a_slope_one_cell_wide_is_range_reversing_in_that_cell():
    """A wall facing the sensor across track, steep over one cell's footprint (heights
    rising over the two facets around it): that cell is wholly range-reversing, its two
    neighbours half, flat cells not at all; the reference says the same."""
    dem = plane_dem(9, 15)
    heights = dem.values.copy()
    heights[:, 8:] += 120.0  # cell column 7: 60 m up over each of its half-cells (30 m): 63 degrees
    heights[:, 7] += 60.0
    dem = dem.copy(data=heights)
    geometry = synthetic_geometry(dem, incidence=35.0, heading=0.0)  # flying north, looking east: at the wall
    cells = cell_geometry(dem, geometry)
    share = layover_facing_share(cells, flat_orientation(cells, geometry))
    reference = reference_share(cells, geometry)
    np.testing.assert_array_equal(cells["active_layover"], share > 0.5)
    np.testing.assert_array_equal(share[1:-1, 7], 1.0)
    np.testing.assert_array_equal(share[1:-1, [6, 8]], 0.5)
    np.testing.assert_array_equal(share[1:-1, [3, 11]], 0.0)
    np.testing.assert_array_equal(share, reference)
    # The masks: that cell is in active layover (overlain from both sides it is not: the
    # profile reverses on its near side only, so the old both-sides rule left such a
    # slope without an active cell), the flat cells in front of and behind it passive.
    layover = simulate(dem, geometry, oversample=1)["layover"].values
    assert np.all(layover[1:-1, 7] == MaskCode.ACTIVE)
    assert not np.any(layover[:, [6, 8]] == MaskCode.ACTIVE)
    assert np.any(layover[1:-1, :7] == MaskCode.PASSIVE) and np.any(layover[1:-1, 8:] == MaskCode.PASSIVE)
    check_masks(mask_agreement(layover, reference))


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("heading, look_side", [(0.0, "right"), (190.0, "right"), (20.0, "left")])
def test_agreement_with_the_reference_on_rough_terrain(seed, heading, look_side):
    dem = rough_dem(seed, rows=40, cols=40, relief=900.0)
    geometry = synthetic_geometry(dem, incidence=32.0, heading=heading, look_side=look_side)
    cells = cell_geometry(dem, geometry)
    share, reference = layover_facing_share(cells, flat_orientation(cells, geometry)), reference_share(cells, geometry)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(cells["active_layover"], share > 0.5)
    found = agreement(share, reference)
    assert found["all"][2] > 20, "the case must hold range-reversing cells"
    for name, least in (("unambiguous", 0.95), ("all", 0.85)):
        precision, recall, _ = found[name]
        assert precision >= least and recall >= least, (name, found)
    check_masks(mask_agreement(simulate(dem, geometry, oversample=1)["layover"].values, reference))


def test_agreement_with_the_reference_on_a_real_dem_under_a_real_orbit(shared_data):
    geoid = required(shared_data / "geoid" / "egm96_15.gtx")
    dem = open_dem(required(shared_data / "dem" / "bigtujunga_srtm30_utm11.tif"), vertical_datum="egm96",
                   geoid_grid=geoid)
    # The ascending pass looks east at the San Gabriel Mountains' west-facing slopes: 5148
    # cells more than half range-reversing (the descending pass: 272).
    geometry = RadarGeometry.from_sentinel1(required(shared_data / "s1" / SAFES["ascending"]), "IW/VV")
    cells = cell_geometry(dem, geometry)
    share, reference = layover_facing_share(cells, flat_orientation(cells, geometry)), reference_share(cells, geometry)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(cells["active_layover"], share > 0.5)
    found = agreement(share, reference)
    print("layover-facing share against the reference (precision, recall, positives):", found)
    assert found["all"][2] > 1000
    for name, least in (("unambiguous", 0.95), ("all", 0.85)):
        precision, recall, _ = found[name]
        assert precision >= least and recall >= least, (name, found)
    # The masks of these cells (the SLC's window is large: its profiles are cut here
    # without the facet scatter of a whole simulation).
    window = radar_window(cells["line"], cells["sample"], cells["valid"], geometry)
    layover, _, _ = visibility_masks(cells, cells["faces_away"], cells["active_layover"], window)
    masks = mask_agreement(layover, reference)
    print("active layover against the reference, and the facing cells the layover mask holds:", masks)
    check_masks(masks)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-3, 3), min_size=8, max_size=8), nan_at=st.integers(-1, 7),
       sign=st.sampled_from([-1, 1]))
@example(values=[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], nan_at=7, sign=-1)  # min and max would pass over it
def test_a_quadrant_counted_at_once_equals_its_sub_points(values, nan_at, sign):
    """The corner-sign shortcut of a quadrant's count equals counting its sub-points one by
    one, a NaN corner value (``nan_at``) included: no sub-point with NaN is range-reversing."""
    if nan_at >= 0:
        values[nan_at] = float("nan")
    assert facing._quadrant_reversing(*values, sign) == quadrant_reversing_twin(*values, sign)
