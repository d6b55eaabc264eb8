"""Tests of the geometry kernels (sarheight.kernels) against pure-numpy reference twins.

Every kernel has a twin written here with numpy only: geodetic -> ECEF by the textbook
formula, orbits by ``numpy.polynomial.polynomial.polyval``/``polyder``, the range model by
``polyval`` (and ``polyroots`` for its inverse), and the zero-Doppler solve by a vectorised
Newton iteration on the same polynomial orbit. One table (numbagg style) runs each kernel
and its twin on the same inputs; hypothesis then draws random orbits (straight and curved),
targets, DEM shapes, NaN holes and range tables.
"""

import inspect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.polynomial.polynomial as npoly
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight import kernels
from sarheight.kernels import WGS84_A, WGS84_E2
from twins import geometry as reference_twins

C = 299_792_458.0
GM = 3.986004418e14
NAT = np.iinfo(np.int64).min
REFERENCE_NS = np.int64(1_700_000_000_000_000_000)  # an arbitrary epoch (2023-11-14)

# Tolerances of the brief: zero-Doppler time and slant range; range-model round trips.
TIME_TOL = 1e-7  # s
RANGE_TOL = 1e-6  # m
PIXEL_TOL = 1e-6  # pixel


# --------------------------------------------------------------------------------------
# numpy reference twins
# --------------------------------------------------------------------------------------


def twin_geodetic_to_ecef(lon, lat, height, a=WGS84_A, e2=WGS84_E2):
    """ECEF (..., 3) of longitude, latitude (rad) and ellipsoidal height (m)."""
    return reference_twins.geodetic_to_ecef(np.asarray(lon, float), np.asarray(lat, float), height, a, e2)


def twin_orbit_states(coeffs, t_center, t_scale, times):
    """Position, velocity, acceleration (n, 3) by polyval of the polynomial and its polyder."""
    tau = (np.atleast_1d(np.asarray(times, float)) - t_center) / t_scale
    velocity_coeffs = npoly.polyder(coeffs, 1, scl=1.0 / t_scale, axis=0)
    acceleration_coeffs = npoly.polyder(coeffs, 2, scl=1.0 / t_scale, axis=0)
    return tuple(npoly.polyval(tau, c).T for c in (coeffs, velocity_coeffs, acceleration_coeffs))


def twin_zero_doppler(xyz, coeffs, t_center, t_scale, t_min, t_max, iterations=30):
    """Zero-Doppler time (s) and slant range (m) of ECEF points (n, 3), all at once.

    Newton on f(t) = (X - S(t)) . V(t) from the solution linearised about the orbit's
    centre, a fixed number of steps; NaN where it has not converged or leaves [t_min, t_max].
    """
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    s0, v0, _ = twin_orbit_states(coeffs, t_center, t_scale, [t_center])
    t = t_center + ((xyz - s0) @ v0[0]) / (v0[0] @ v0[0])
    step = np.full(t.shape, np.inf)
    for _ in range(iterations):
        s, v, acc = twin_orbit_states(coeffs, t_center, t_scale, t)
        d = xyz - s
        f = np.sum(d * v, axis=1)
        fp = np.sum(d * acc, axis=1) - np.sum(v * v, axis=1)
        step = f / fp
        t = t - step
    s, v, _ = twin_orbit_states(coeffs, t_center, t_scale, t)
    r = np.linalg.norm(xyz - s, axis=1)
    ok = np.isfinite(t) & (np.abs(step) < 1e-9) & (t >= t_min) & (t <= t_max)
    return np.where(ok, t, np.nan), np.where(ok, r, np.nan), s, v


def twin_nearest_entry(t, times):
    """Index of the entry nearest in time (ties to the earlier one)."""
    t = np.atleast_1d(np.asarray(t, float))
    return np.argmin(np.abs(t[:, None] - np.asarray(times, float)[None, :]), axis=1)


def twin_ground_range(t, slant_range, times, sr0, coeffs):
    """Range-axis coordinate (m): polyval of the nearest entry's polynomial."""
    index = twin_nearest_entry(t, times)
    x = np.atleast_1d(np.asarray(slant_range, float)) - sr0[index]
    return npoly.polyval(x, coeffs[index].T, tensor=False)


def twin_slant_range_of_sample(t, sample, times, sr0, coeffs, spacing):
    """Slant range (m) of a sample: the real root of the nearest polynomial nearest its linear guess."""
    out = np.full(np.size(t), np.nan)
    for k, (tk, sk) in enumerate(zip(np.ravel(t), np.ravel(sample), strict=True)):
        if not (np.isfinite(tk) and np.isfinite(sk)):
            continue
        i = int(twin_nearest_entry(tk, times)[0])
        c = coeffs[i].copy()
        c[0] -= sk * spacing
        roots = npoly.polyroots(c)
        real = roots[np.abs(roots.imag) < 1e-6 * (1.0 + np.abs(roots.real))].real
        guess = -c[0] / c[1]
        out[k] = sr0[i] + real[np.argmin(np.abs(real - guess))]
    return out


def twin_geocode_grid(lon, lat, height, a, e2, coeffs, t_center, t_scale, t_valid_min, t_valid_max,
                      first_line_time, line_interval, n_lines, n_samples,
                      rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign, bistatic_rate,
                      bistatic_reference_range, reference_ns, n_blocks):
    """Everything ``geocode_grid`` returns, in numpy (azimuth time as float seconds)."""
    del reference_ns, n_blocks  # the twin works in seconds and in one piece
    shape = np.shape(height)
    xyz = twin_geodetic_to_ecef(lon, lat, height, a, e2).reshape(-1, 3)
    t, r, s, v = twin_zero_doppler(xyz, coeffs, t_center, t_scale, t_valid_min, t_valid_max)
    line_time = t - bistatic_rate * (r - bistatic_reference_range)
    raw_line = (line_time - first_line_time) / line_interval
    raw_sample = twin_ground_range(np.nan_to_num(line_time), r, rm_times, rm_sr0, rm_coeffs) / rm_spacing
    side = np.sum((xyz - s) * np.cross(v, s), axis=1)
    with np.errstate(invalid="ignore"):
        inside = (
            (raw_line >= -0.5) & (raw_line <= n_lines - 0.5)
            & (raw_sample >= -0.5) & (raw_sample <= n_samples - 0.5)
            & (side * look_sign > 0)
        )
    up = twin_geodetic_to_ecef(lon, lat, np.ones(shape), 0.0, 0.0).reshape(-1, 3)  # unit normal
    incidence = np.degrees(np.arccos(np.clip(np.sum(up * (s - xyz), axis=1) / r, -1.0, 1.0)))
    line = np.where(inside, raw_line, np.nan)
    sample = np.where(inside, raw_sample, np.nan)
    # Distance (pixels) to the image border, where kernel and twin may round differently.
    border = np.minimum.reduce(
        [np.abs(raw_line + 0.5), np.abs(raw_line - (n_lines - 0.5)),
         np.abs(raw_sample + 0.5), np.abs(raw_sample - (n_samples - 0.5))]
    )
    return {
        "t": t.reshape(shape), "slant_range": r.reshape(shape), "line": line.reshape(shape),
        "sample": sample.reshape(shape), "incidence": incidence.reshape(shape),
        "border": np.nan_to_num(border, nan=np.inf).reshape(shape),
    }


# --------------------------------------------------------------------------------------
# scenes: orbits, targets and range tables
# --------------------------------------------------------------------------------------


@dataclass
class Scene:
    """A polynomial orbit and what the kernels need to geocode under it."""

    coeffs: np.ndarray
    t_center: float
    t_scale: float
    t_min: float
    t_max: float
    lon0: float  # rad, the orbit's nadir at t_center
    lat0: float
    heading: float  # rad, clockwise from north
    speed: float  # m/s along the ground at nadir

    def ground_points(self, along, across):
        """Longitude, latitude (rad) of points ``along`` / ``across`` (m, + to the right) of nadir."""
        along, across = np.broadcast_arrays(np.asarray(along, float), np.asarray(across, float))
        north = along * math.cos(self.heading) - across * math.sin(self.heading)
        east = along * math.sin(self.heading) + across * math.cos(self.heading)
        radius = WGS84_A
        lat = np.clip(self.lat0 + north / radius, -1.55, 1.55)
        lon = self.lon0 + east / (radius * np.maximum(np.cos(lat), 0.05))
        return lon, lat


def make_scene(lon0_deg, lat0_deg, heading_deg, altitude, degree, t_center, t_scale, perturbation,
               rng) -> Scene:
    """An orbit through ``altitude`` above (lon0, lat0) at ``t_center``, flying along ``heading``.

    Degree 1 is the tangent line; higher degrees are the Taylor expansion of the circular
    orbit plus random terms of degree >= 3 with accelerations of up to about
    ``perturbation`` m/s^2 (a real orbit fit departs from the circle by much less; far
    larger terms make the zero-Doppler condition ambiguous, with several roots in the span).
    """
    lon0, lat0, heading = (math.radians(v) for v in (lon0_deg, lat0_deg, heading_deg))
    up = twin_geodetic_to_ecef(lon0, lat0, 1.0, 0.0, 0.0)
    ground = twin_geodetic_to_ecef(lon0, lat0, 0.0)
    east = np.array([-math.sin(lon0), math.cos(lon0), 0.0])
    north = np.cross(up, east)
    forward = math.cos(heading) * north + math.sin(heading) * east
    position = ground + altitude * up
    radius = float(np.linalg.norm(position))
    speed = math.sqrt(GM / radius)
    omega = speed / radius
    # Circular motion about the Earth's centre: derivatives of p cos(w t) + (v/w) sin(w t).
    derivatives = [position, speed * forward, -(omega**2) * position, -(omega**2) * speed * forward,
                   omega**4 * position, omega**4 * speed * forward]
    coeffs = np.zeros((degree + 1, 3))
    for k in range(degree + 1):
        coeffs[k] = derivatives[k] * t_scale**k / math.factorial(k)
        if k >= 3:
            coeffs[k] += rng.uniform(-1.0, 1.0, 3) * perturbation * t_scale**2 / (k * (k - 1))
    half = 1.0 * t_scale
    return Scene(coeffs, t_center, t_scale, t_center - half, t_center + half, lon0, lat0, heading,
                 speed * WGS84_A / radius)


def linear_range_table(t0, first_range, spacing):
    """The SLC range model: one entry, ground range = slant range - first_range."""
    return np.array([t0]), np.array([first_range]), np.array([[0.0, 1.0]]), spacing


def srgr_table(times, altitude, first_range, swath, spacing, rng, degree=4):
    """A GRD-like table: degree-``degree`` fits of the ground range of a sphere, one per time."""
    n = len(times)
    sr0 = first_range + rng.uniform(-50.0, 50.0, n)
    coeffs = np.zeros((n, degree + 1))
    radius = WGS84_A
    for i in range(n):
        h = altitude * (1.0 + rng.uniform(-0.002, 0.002))
        r = np.linspace(sr0[i], sr0[i] + swath, 64)
        # Ground range along the sphere of a target at slant range r from height h.
        orbit_radius = radius + h
        beta = np.arccos((radius**2 + orbit_radius**2 - r**2) / (2 * radius * orbit_radius))
        beta0 = np.arccos((radius**2 + orbit_radius**2 - sr0[i] ** 2) / (2 * radius * orbit_radius))
        coeffs[i] = npoly.polyfit(r - sr0[i], radius * (beta - beta0), degree)
    return np.sort(np.asarray(times, float)), sr0, coeffs, spacing


# --------------------------------------------------------------------------------------
# one table of cases: every kernel against its twin
# --------------------------------------------------------------------------------------

RNG_SEED = 20240611


def _table_scene(rng, degree=5):
    return make_scene(12.5, 41.9, 192.0, 693e3, degree, 3.0, 40.0, 0.05, rng)


def _scattered_targets(scene, rng, n, side=1.0):
    lon, lat = scene.ground_points(rng.uniform(-150e3, 150e3, n), side * rng.uniform(30e3, 300e3, n))
    height = rng.uniform(-400.0, 8800.0, n)
    height[rng.random(n) < 0.1] = np.nan
    return lon, lat, height


def _case_geodetic_to_ecef(rng):
    lon = rng.uniform(-math.pi, math.pi, 500)
    lat = rng.uniform(-math.pi / 2, math.pi / 2, 500)
    height = rng.uniform(-12e3, 9e3, 500)
    height[::17] = np.nan
    args = (lon, lat, height, WGS84_A, WGS84_E2)
    return args, lambda *a: (kernels.geodetic_to_ecef(*a),), lambda *a: (twin_geodetic_to_ecef(*a),)


def _case_geodetic_to_ecef_sphere(rng):
    lon = rng.uniform(-math.pi, math.pi, 50)
    lat = rng.uniform(-math.pi / 2, math.pi / 2, 50)
    height = rng.uniform(0.0, 1e3, 50)
    args = (lon, lat, height, 6_371_000.0, 0.0)
    return args, lambda *a: (kernels.geodetic_to_ecef(*a),), lambda *a: (twin_geodetic_to_ecef(*a),)


def _case_geodetic_to_ecef_grid(rng):
    lon = rng.uniform(-math.pi, math.pi, (7, 9))
    lat = rng.uniform(-1.5, 1.5, (7, 9))
    height = rng.uniform(-100.0, 5e3, (7, 9)).astype(np.float32)
    height[2, 3] = np.nan
    args = (lon, lat, height, WGS84_A, WGS84_E2)
    return args, lambda *a: (kernels.geodetic_to_ecef_grid(*a),), lambda *a: (twin_geodetic_to_ecef(*a),)


def _case_orbit_states(rng):
    scene = _table_scene(rng)
    times = rng.uniform(scene.t_min, scene.t_max, 300)
    args = (scene.coeffs, scene.t_center, scene.t_scale, times)
    return args, kernels.orbit_states, twin_orbit_states


def _case_ground_range_of(rng):
    rm = srgr_table(rng.uniform(-10, 10, 6), 693e3, 800e3, 250e3, 10.0, rng)
    t, r = float(rng.uniform(-12, 12)), float(800e3 + rng.uniform(0, 250e3))
    args = (t, r, *rm[:3])
    return args, lambda *a: (kernels.ground_range_of(*a),), lambda *a: (twin_ground_range(*a)[0],)


def _case_samples_of_slant_ranges(rng):
    rm = srgr_table(rng.uniform(-10, 10, 6), 693e3, 800e3, 250e3, 10.0, rng)
    t = rng.uniform(-12.0, 12.0, 400)
    r = 800e3 + rng.uniform(0, 250e3, 400)
    t[::13] = np.nan
    r[::11] = np.nan
    args = (t, r, *rm)

    def twin(t, r, times, sr0, coeffs, spacing):
        out = twin_ground_range(np.nan_to_num(t), r, times, sr0, coeffs) / spacing
        return (np.where(np.isnan(t) | np.isnan(r), np.nan, out),)

    return args, lambda *a: (kernels.samples_of_slant_ranges(*a),), twin


def _case_slant_ranges_of_samples(rng):
    rm = srgr_table(rng.uniform(-10, 10, 6), 693e3, 800e3, 250e3, 10.0, rng)
    t = rng.uniform(-12.0, 12.0, 200)
    sample = rng.uniform(0.0, 25_000.0, 200)
    t[::13] = np.nan
    sample[::11] = np.nan
    args = (t, sample, *rm)
    return args, lambda *a: (kernels.slant_ranges_of_samples(*a),), lambda *a: (twin_slant_range_of_sample(*a),)


def _case_geocode_cells(rng):
    scene = _table_scene(rng)
    lon, lat, height = _scattered_targets(scene, rng, 300)
    xyz = twin_geodetic_to_ecef(lon, lat, height)
    x, y, z = (np.ascontiguousarray(xyz[:, k]) for k in range(3))
    args = (x, y, z, scene.coeffs, scene.t_center, scene.t_scale, scene.t_min, scene.t_max)

    def twin(x, y, z, *orbit):
        return twin_zero_doppler(np.stack([x, y, z], axis=1), *orbit)[:2]

    return args, kernels.geocode_cells, twin


def _grid_arguments(scene, lon, lat, height, rm, *, look_sign=1.0, bistatic=False, lines=None,
                    samples=None, first_line_time=None, line_interval=0.002, n_blocks=4):
    """The inputs of ``geocode_grid`` and a number of row blocks (see ``call_geocode_grid``); the
    image covers the middle of the targets by default."""
    xyz = twin_geodetic_to_ecef(lon, lat, height).reshape(-1, 3)
    t, r, _, _ = twin_zero_doppler(xyz, scene.coeffs, scene.t_center, scene.t_scale, scene.t_min, scene.t_max)
    finite = np.isfinite(t)
    if first_line_time is None:
        first_line_time = float(np.quantile(t[finite], 0.2)) if finite.any() else 0.0
    if lines is None:
        span = float(np.ptp(t[finite])) if finite.any() else 1.0
        lines = max(1, round(0.6 * span / line_interval))
    if samples is None:
        samples = 20_000
    ref = float(np.nanmean(r)) if finite.any() else 0.0
    return (
        lon, lat, height, WGS84_A, WGS84_E2,
        scene.coeffs, float(scene.t_center), float(scene.t_scale), float(scene.t_min), float(scene.t_max),
        float(first_line_time), float(line_interval), int(lines), int(samples),
        np.ascontiguousarray(rm[0], dtype=float), np.ascontiguousarray(rm[1], dtype=float),
        np.ascontiguousarray(rm[2], dtype=float), float(rm[3]), float(look_sign),
        1.0 / C if bistatic else 0.0, ref, REFERENCE_NS, int(n_blocks),
    )


def call_geocode_grid(*args):
    """``kernels.geocode_grid`` on ``args``: its inputs, then a number of row blocks.

    The kernel fills output arrays passed to it; callers run it on row blocks (views), each
    seeded afresh, as ``sarheight.geometry.geocode_arrays`` does on threads. (Its earlier
    form took the number of blocks itself and returned the outputs.)
    """
    *inputs, n_blocks = args
    if "n_blocks" in inspect.signature(kernels.geocode_grid.py_func).parameters:
        return kernels.geocode_grid(*inputs, n_blocks)
    # The arrays as sarheight.geometry passes them (writeable, C-ordered, float64 positions;
    # heights in their own float type) and ``clip`` given: each other layout (a broadcast,
    # read-only view) or an omitted argument is a signature Numba compiles anew, seconds
    # each, which no user's call needs.
    lon, lat = (np.array(values, dtype=np.float64, order="C") for values in inputs[:2])
    height = np.array(inputs[2], order="C")
    shape = np.shape(height)
    outputs = (np.empty(shape, np.int64), np.empty(shape), np.empty(shape), np.empty(shape),
               np.empty(shape, np.float32))
    edges = np.linspace(0, shape[0], max(1, min(n_blocks, shape[0])) + 1).round().astype(int)
    for start, stop in itertools.pairwise(edges):
        rows = slice(start, stop)
        kernels.geocode_grid(lon[rows], lat[rows], height[rows], *inputs[3:], *(o[rows] for o in outputs), True)
    return outputs


def _geocode_grid_kernel(*args):
    az_ns, r, line, sample, incidence = call_geocode_grid(*args)
    t = np.where(az_ns == NAT, np.nan, (az_ns - REFERENCE_NS) / 1e9)
    return t, r, line, sample, incidence


def _geocode_grid_twin(*args):
    out = twin_geocode_grid(*args)
    return out["t"], out["slant_range"], out["line"], out["sample"], out["incidence"]


def _case_geocode_grid(rng):
    scene = _table_scene(rng)
    along = np.linspace(-60e3, 60e3, 23)[:, None]
    across = np.linspace(20e3, 280e3, 31)[None, :]
    lon, lat = scene.ground_points(along, across)
    height = rng.uniform(-300.0, 4000.0, lon.shape).astype(np.float32)
    height[5:8, 10:14] = np.nan
    rm = linear_range_table(0.0, 690e3, 2.33)
    args = _grid_arguments(scene, lon, lat, height, rm, bistatic=True, samples=200_000)
    return args, _geocode_grid_kernel, _geocode_grid_twin


def _case_geocode_grid_regular_lon_lat(rng):
    # Zero-stride (broadcast) longitude/latitude: the kernel's one-sine-per-row path.
    scene = _table_scene(rng, degree=3)
    lon_c, lat_c = scene.ground_points(0.0, 120e3)
    lon = np.broadcast_to(lon_c + np.linspace(-0.4, 0.4, 17)[None, :], (13, 17))
    lat = np.broadcast_to((lat_c + np.linspace(0.3, -0.3, 13))[:, None], (13, 17))
    height = rng.uniform(0.0, 3000.0, (13, 17))
    height[0, 0] = height[12, 16] = np.nan
    rm = srgr_table(np.linspace(-30.0, 30.0, 7), 693e3, 700e3, 400e3, 10.0, rng)
    args = _grid_arguments(scene, lon, lat, height, rm, samples=40_000, n_blocks=3)
    return args, _geocode_grid_kernel, _geocode_grid_twin


# (case, tolerances of each output: absolute, or (absolute, relative)).
KERNEL_CASES: list[tuple[Callable[[np.random.Generator], Any], tuple[float, ...]]] = [
    (_case_geodetic_to_ecef, (1e-6,)),
    (_case_geodetic_to_ecef_sphere, (1e-6,)),
    (_case_geodetic_to_ecef_grid, (1e-6,)),
    (_case_orbit_states, (1e-6, 1e-9, 1e-12)),
    (_case_ground_range_of, (1e-6,)),
    (_case_samples_of_slant_ranges, (PIXEL_TOL,)),
    (_case_slant_ranges_of_samples, (RANGE_TOL,)),
    (_case_geocode_cells, (TIME_TOL, RANGE_TOL)),
    (_case_geocode_grid, (TIME_TOL, RANGE_TOL, PIXEL_TOL, PIXEL_TOL, 1e-3)),
    (_case_geocode_grid_regular_lon_lat, (TIME_TOL, RANGE_TOL, PIXEL_TOL, PIXEL_TOL, 1e-3)),
]


@pytest.mark.parametrize(("case", "tolerances"), KERNEL_CASES, ids=[c.__name__[6:] for c, _ in KERNEL_CASES])
def test_kernel_matches_numpy_twin(case, tolerances):
    args, kernel, twin = case(np.random.default_rng(RNG_SEED))
    got = kernel(*args)
    expected = twin(*args)
    assert len(got) == len(expected) == len(tolerances)
    for k, (g, e, tol) in enumerate(zip(got, expected, tolerances, strict=True)):
        g = np.asarray(g, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        assert g.shape == e.shape, f"output {k}: shape {g.shape} != {e.shape}"
        assert np.array_equal(np.isnan(g), np.isnan(e)), f"output {k}: NaN patterns differ"
        np.testing.assert_allclose(g, e, rtol=0, atol=tol, equal_nan=True, err_msg=f"output {k}")
        assert np.isfinite(e).any(), f"output {k}: the case tests nothing (all NaN)"


# --------------------------------------------------------------------------------------
# orbit_state: Horner with derivatives vs polyval/polyder
# --------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    degree=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
    magnitude=st.floats(1.0, 1e7),
    t_center=st.floats(-1e4, 1e4),
    t_scale=st.floats(1e-3, 1e4),
    tau=st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=8),
)
def test_orbit_state_matches_polyval_and_polyder(degree, seed, magnitude, t_center, t_scale, tau):
    rng = np.random.default_rng(seed)
    coeffs = rng.uniform(-magnitude, magnitude, (degree + 1, 3))
    times = t_center + t_scale * np.asarray(tau)
    position, velocity, acceleration = twin_orbit_states(coeffs, t_center, t_scale, times)
    # Rounding scale of each output: the polynomial of |coefficients| at |tau|.
    scale = npoly.polyval(np.abs(np.asarray(tau)) + 1e-3, np.abs(coeffs)).T.max(axis=1, keepdims=True)
    for k, t in enumerate(times):
        s = kernels.orbit_state(coeffs, t_center, t_scale, t)
        assert len(s) == 9
        tol = 1e-12 * float(scale[k, 0]) * degree**2
        np.testing.assert_allclose(s[0:3], position[k], rtol=0, atol=tol)
        np.testing.assert_allclose(s[3:6], velocity[k], rtol=0, atol=tol / t_scale)
        np.testing.assert_allclose(s[6:9], acceleration[k], rtol=0, atol=tol / t_scale**2)
    p, v, a = kernels.orbit_states(coeffs, t_center, t_scale, times)
    np.testing.assert_allclose(p, position, rtol=0, atol=1e-12 * float(scale.max()) * degree**2)
    assert p.shape == v.shape == a.shape == (len(times), 3)


def test_orbit_state_straight_line_is_exact():
    coeffs = np.array([[7.0e6, -1.0e5, 2.0e5], [7.5e3, 1.0, -2.0]])
    for t in (-3.0, 0.0, 0.5, 100.0):
        s = kernels.orbit_state(coeffs, 0.0, 1.0, t)
        np.testing.assert_array_equal(s[0:3], coeffs[0] + coeffs[1] * t)
        np.testing.assert_array_equal(s[3:6], coeffs[1])
        np.testing.assert_array_equal(s[6:9], 0.0)


# --------------------------------------------------------------------------------------
# geocode_grid / geocode_cells vs the numpy Newton twin on random scenes
# --------------------------------------------------------------------------------------


@st.composite
def scenes(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    degree = draw(st.sampled_from([1, 3, 4, 5]))
    scene = make_scene(
        draw(st.floats(-180.0, 180.0)),
        draw(st.floats(-80.0, 80.0)),
        draw(st.floats(0.0, 360.0)),
        draw(st.floats(400e3, 900e3)),
        degree,
        draw(st.floats(-100.0, 100.0)),
        draw(st.floats(2.0, 60.0)),
        draw(st.floats(0.0, 0.1)) if degree >= 3 else 0.0,
        np.random.default_rng(seed),
    )
    return scene, seed


@st.composite
def dem_shapes(draw):
    return draw(st.sampled_from([(1, 1), (1, 7), (7, 1), (2, 2), (5, 8), (9, 4)]))


# 40 examples: the regular and the scattered grids, GRD and SLC, both look sides and the
# blocks each come up several times (80 took 70-110 s of a full test run).
@settings(max_examples=40, deadline=None)
@given(
    scene_seed=scenes(),
    shape=dem_shapes(),
    regular=st.booleans(),
    look_side=st.sampled_from([1.0, -1.0]),
    targets_side=st.sampled_from([1.0, 1.0, -1.0]),
    bistatic=st.booleans(),
    grd=st.booleans(),
    holes=st.floats(0.0, 0.5),
    n_blocks=st.integers(1, 5),
    data=st.data(),
)
def test_geocode_grid_matches_twin(scene_seed, shape, regular, look_side, targets_side, bistatic, grd,
                                   holes, n_blocks, data):
    scene, seed = scene_seed
    rng = np.random.default_rng(seed)
    rows, cols = shape
    # Targets within the orbit's span along track, 10-300 km across on one side.
    along_max = 0.8 * scene.speed * scene.t_scale
    side = look_side * targets_side
    if regular:
        centre_along = rng.uniform(-0.5, 0.5) * along_max
        centre_across = side * rng.uniform(60e3, 250e3)
        lon_c, lat_c = scene.ground_points(centre_along, centre_across)
        spacing = rng.uniform(10.0, 5e3) / WGS84_A
        lon = np.broadcast_to(lon_c + spacing * np.arange(cols)[None, :], shape)
        lat = np.broadcast_to((lat_c - spacing * np.arange(rows))[:, None], shape)
    else:
        lon, lat = scene.ground_points(
            rng.uniform(-along_max, along_max, shape), side * rng.uniform(10e3, 300e3, shape)
        )
    height = rng.uniform(-400.0, 8800.0, shape)
    height[rng.random(shape) < holes] = np.nan
    if data.draw(st.booleans(), label="float32 heights"):
        height = height.astype(np.float32)
    # A range axis covering the middle of the targets' slant ranges (some cells fall outside).
    xyz = twin_geodetic_to_ecef(lon, lat, height).reshape(-1, 3)
    r_all = twin_zero_doppler(xyz, scene.coeffs, scene.t_center, scene.t_scale, scene.t_min, scene.t_max)[1]
    r_ok = r_all[np.isfinite(r_all)]
    near, far = np.quantile(r_ok, [0.2, 0.8]) if r_ok.size else (700e3, 700e3)
    width = max(far - near, 1e3)
    spacing = rng.uniform(1.0, 20.0)
    if grd:
        times = np.sort(rng.uniform(scene.t_min, scene.t_max, rng.integers(1, 8)))
        rm = srgr_table(times, 0.8 * near, near, 3 * width + 20e3, spacing, rng)
        samples = npoly.polyval(width, rm[2][0]) / spacing + 1
    else:
        rm = linear_range_table(scene.t_center, near, spacing)
        samples = width / spacing + 1
    line_interval = data.draw(st.floats(1e-3, 0.05), label="line interval")
    args = _grid_arguments(
        scene, lon, lat, height, rm, look_sign=look_side, bistatic=bistatic,
        samples=max(1, int(samples)), line_interval=line_interval, n_blocks=n_blocks,
    )
    twin = twin_geocode_grid(*args)
    t, r, line, sample, incidence = _geocode_grid_kernel(*args)

    assert t.shape == r.shape == line.shape == sample.shape == incidence.shape == shape
    assert incidence.dtype == np.float32
    # A solution within TIME_TOL of the orbit span's ends may fall either side in each.
    at_end = (np.abs(twin["t"] - scene.t_min) < TIME_TOL) | (np.abs(twin["t"] - scene.t_max) < TIME_TOL)
    assert np.array_equal(np.isnan(t)[~at_end], np.isnan(twin["t"])[~at_end])
    np.testing.assert_allclose(t[~at_end], twin["t"][~at_end], rtol=0, atol=TIME_TOL)
    np.testing.assert_allclose(r[~at_end], twin["slant_range"][~at_end], rtol=0, atol=RANGE_TOL)
    np.testing.assert_allclose(incidence[~at_end], twin["incidence"][~at_end], rtol=0, atol=1e-3)
    clear = (twin["border"] > PIXEL_TOL) & ~at_end  # away from the image border and the span's ends
    for got, expected in ((line, twin["line"]), (sample, twin["sample"])):
        assert np.array_equal(np.isnan(got)[clear], np.isnan(expected)[clear])
        both = np.isfinite(got) & np.isfinite(expected)
        np.testing.assert_allclose(got[both], expected[both], rtol=0, atol=PIXEL_TOL)
    if targets_side < 0:
        assert np.isnan(line).all() and np.isnan(sample).all()
    assert np.array_equal(np.isnan(t), np.isnan(r))
    assert np.all(np.isnan(t)[np.isnan(height)])


@settings(max_examples=60, deadline=None)
@given(scene_seed=scenes(), n=st.integers(1, 40), holes=st.floats(0.0, 0.5))
def test_geocode_cells_matches_twin(scene_seed, n, holes):
    scene, seed = scene_seed
    rng = np.random.default_rng(seed)
    # Targets on both sides, some beyond the orbit's span (they must come back NaN).
    along_max = 1.3 * scene.speed * scene.t_scale
    lon, lat = scene.ground_points(rng.uniform(-along_max, along_max, n), rng.uniform(-300e3, 300e3, n))
    xyz = twin_geodetic_to_ecef(lon, lat, rng.uniform(-400.0, 8800.0, n))
    xyz[rng.random(n) < holes] = np.nan
    x, y, z = (np.ascontiguousarray(xyz[:, k]) for k in range(3))
    orbit = (scene.coeffs, scene.t_center, scene.t_scale, scene.t_min, scene.t_max)
    t, r = kernels.geocode_cells(x, y, z, *orbit)
    t_twin, r_twin, _, _ = twin_zero_doppler(xyz, *orbit)
    # A solution exactly at the span's end may fall either side in each implementation.
    clear = ~(np.abs(t_twin - scene.t_min) < TIME_TOL) & ~(np.abs(t_twin - scene.t_max) < TIME_TOL)
    assert np.array_equal(np.isnan(t)[clear], np.isnan(t_twin)[clear])
    np.testing.assert_allclose(t, t_twin, rtol=0, atol=TIME_TOL)
    np.testing.assert_allclose(r, r_twin, rtol=0, atol=RANGE_TOL)
    assert np.array_equal(np.isnan(t), np.isnan(r))


# --------------------------------------------------------------------------------------
# explicit edge cases of geocode_grid
# --------------------------------------------------------------------------------------


def _small_grid_args(look_sign=1.0, across=120e3, heights=None):
    rng = np.random.default_rng(7)
    scene = make_scene(-118.0, 34.3, 348.0, 693e3, 5, 0.0, 30.0, 0.05, rng)
    along = np.linspace(-20e3, 20e3, 4)[:, None]
    lon, lat = scene.ground_points(along, across + np.linspace(-10e3, 10e3, 5)[None, :])
    height = np.full(lon.shape, 500.0) if heights is None else heights
    rm = linear_range_table(0.0, 700e3, 2.33)
    return _grid_arguments(scene, lon, lat, height, rm, look_sign=look_sign, first_line_time=-10.0,
                           lines=10_000, samples=200_000)


def test_geocode_grid_nan_height_gives_nat_and_nan():
    heights = np.full((4, 5), 800.0)
    heights[1, 2] = heights[0, 0] = heights[3, 4] = np.nan
    az_ns, r, line, sample, incidence = call_geocode_grid(*_small_grid_args(heights=heights))
    holes = np.isnan(heights)
    assert (az_ns[holes] == NAT).all()
    assert np.isnan(az_ns[holes].view("datetime64[ns]")).all()  # NaT at the surface
    for out in (r, line, sample, incidence):
        assert np.isnan(out[holes]).all()
        assert np.isfinite(out[~holes]).all()
    assert (az_ns[~holes] != NAT).all()


@pytest.mark.parametrize(("look_sign", "across", "inside"), [
    (1.0, 120e3, True),  # right-looking, target on the right
    (1.0, -120e3, False),  # right-looking, target on the left: folded into the image by range alone
    (-1.0, -120e3, True),  # left-looking, target on the left
    (-1.0, 120e3, False),
])
def test_geocode_grid_wrong_side_is_outside(look_sign, across, inside):
    args = _small_grid_args(look_sign=look_sign, across=across)
    az_ns, r, line, sample, _ = call_geocode_grid(*args)
    # Time and range exist on both sides; only the image position depends on the look side.
    assert (az_ns != NAT).all() and np.isfinite(r).all()
    twin = twin_geocode_grid(*args)
    np.testing.assert_allclose(r, twin["slant_range"], rtol=0, atol=RANGE_TOL)
    assert np.isfinite(line).all() == inside and np.isfinite(sample).all() == inside
    assert np.isnan(line).all() != inside and np.isnan(sample).all() != inside


def test_geocode_grid_outside_orbit_span_is_nat():
    args = list(_small_grid_args())
    # Shrink the orbit's validity to the first few seconds: later targets get NaT.
    args[8], args[9] = -30.0, -1.0
    az_ns, r, line, sample, incidence = call_geocode_grid(*args)
    twin = twin_geocode_grid(*args)
    late = np.isnan(twin["t"])
    assert late.any() and (~late).any()
    assert (az_ns[late] == NAT).all()
    for out in (r, line, sample, incidence):
        assert np.isnan(out[late]).all()
    assert (az_ns[~late] != NAT).all()


# --------------------------------------------------------------------------------------
# range model: sample -> slant range -> sample
# --------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    first_range=st.floats(300e3, 1.2e6),
    spacing=st.floats(0.5, 50.0),
    t=st.floats(-1e3, 1e3),
    samples=st.lists(st.floats(-0.5, 70_000.0), min_size=1, max_size=20),
)
def test_range_model_round_trip_linear_table(first_range, spacing, t, samples):
    times, sr0, coeffs, spacing = linear_range_table(0.0, first_range, spacing)
    sample = np.asarray(samples)
    ts = np.full(sample.shape, t)
    r = kernels.slant_ranges_of_samples(ts, sample, times, sr0, coeffs, spacing)
    np.testing.assert_allclose(r, first_range + sample * spacing, rtol=1e-14, atol=1e-6)
    back = kernels.samples_of_slant_ranges(ts, r, times, sr0, coeffs, spacing)
    np.testing.assert_allclose(back, sample, rtol=0, atol=PIXEL_TOL)
    for k in range(min(3, sample.size)):
        r1 = kernels.slant_range_of_sample(t, sample[k], times, sr0, coeffs, spacing)
        assert r1 == pytest.approx(r[k], abs=1e-9)
        assert kernels.sample_of_slant_range(t, r1, times, sr0, coeffs, spacing) == pytest.approx(
            sample[k], abs=PIXEL_TOL
        )


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_entries=st.integers(1, 12),
    altitude=st.floats(500e3, 800e3),
    swath=st.floats(50e3, 400e3),
    spacing=st.floats(2.0, 40.0),
    n=st.integers(1, 30),
)
def test_range_model_round_trip_polynomial_table(seed, n_entries, altitude, swath, spacing, n):
    rng = np.random.default_rng(seed)
    first_range = altitude / math.cos(math.radians(rng.uniform(15.0, 30.0)))
    times, sr0, coeffs, spacing = srgr_table(rng.uniform(-20.0, 20.0, n_entries), altitude, first_range,
                                             swath, spacing, rng)
    t = rng.uniform(-25.0, 25.0, n)  # including times before and after the table
    last = npoly.polyval(swath, coeffs.T).min() / spacing
    sample = rng.uniform(0.0, last, n)
    r = kernels.slant_ranges_of_samples(t, sample, times, sr0, coeffs, spacing)
    np.testing.assert_allclose(r, twin_slant_range_of_sample(t, sample, times, sr0, coeffs, spacing),
                               rtol=0, atol=1e-6)
    back = kernels.samples_of_slant_ranges(t, r, times, sr0, coeffs, spacing)
    np.testing.assert_allclose(back, sample, rtol=0, atol=PIXEL_TOL)
    np.testing.assert_allclose(back, twin_ground_range(t, r, times, sr0, coeffs) / spacing, rtol=0,
                               atol=PIXEL_TOL)


def test_range_model_uses_nearest_entry_in_time():
    # Two entries whose polynomials differ by a constant: the sample jumps at the midpoint.
    times = np.array([0.0, 10.0])
    sr0 = np.array([800e3, 800e3])
    coeffs = np.array([[0.0, 1.0], [100.0, 1.0]])
    r = 800e3 + 1000.0
    for t, expected in ((-5.0, 1000.0), (4.999, 1000.0), (5.0, 1000.0), (5.001, 1100.0), (30.0, 1100.0)):
        assert kernels.ground_range_of(t, r, times, sr0, coeffs) == pytest.approx(expected)
        assert twin_ground_range(t, r, times, sr0, coeffs)[0] == pytest.approx(expected)


def test_range_model_nan_stays_nan():
    times, sr0, coeffs, spacing = linear_range_table(0.0, 800e3, 2.33)
    t = np.array([0.0, np.nan, 0.0])
    values = np.array([np.nan, 10.0, 10.0])
    for f in (kernels.samples_of_slant_ranges, kernels.slant_ranges_of_samples):
        out = f(t, values, times, sr0, coeffs, spacing)
        assert np.isnan(out[:2]).all() and np.isfinite(out[2])
