"""The facet kernel and its helpers against vectorised-numpy twins that share no code with them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.kernels import facets, facing, radar_buffers
from sarheight.kernels.projection import gather_triangles, sample_window, scatter_triangles
from sarheight.reallocation import reallocate, reallocation_ratios
from sarheight.simulate import run_simulation
from sarheight.simulate.contribution import VALID_AREA_FRACTION
from tests.support.scenes import rough_dem, synthetic_geometry
from twins import reallocation as twin


def _state(seed: int, projection: str, oversample, incidence: float = 25.0, heading: float = 10.0,
           pixel_spacing: float = 15.0):
    dem = rough_dem(seed, rows=24, cols=20, relief=700.0)
    geometry = synthetic_geometry(dem, incidence=incidence, heading=heading, pixel_spacing=pixel_spacing)
    return run_simulation(dem, geometry, projection=projection, oversample=oversample)


def _observation(state) -> np.ndarray:
    rng = np.random.default_rng(3)
    simulated = np.nan_to_num(state.images[0] / state.pixel_area)
    return simulated * rng.gamma(4.0, 0.25, simulated.shape)


def _twin_triangles(cells, mode, parameters):
    """The numpy twin's triangles of ``cells`` under a contribution ``mode``, their corners
    (triangle, vertex, line/sample), quantities (contribution, geometry) and the
    triangles of non-zero area."""
    triangles = list(cells.triangles(mode, parameters))
    corners = np.concatenate([np.stack([lines, samples], axis=2) for *_, lines, samples in triangles])
    quantities = np.concatenate([np.stack([c, g], axis=1) for c, g, *_ in triangles])
    with np.errstate(invalid="ignore", divide="ignore"):
        area = 0.5 * ((corners[:, 1, 1] - corners[:, 0, 1]) * (corners[:, 2, 0] - corners[:, 0, 0])
                      - (corners[:, 2, 1] - corners[:, 0, 1]) * (corners[:, 1, 0] - corners[:, 0, 0]))
    return triangles, corners, quantities, area != 0.0


@pytest.mark.parametrize(("oversample", "pixel_spacing"), [(1, 15.0), (2, 15.0), (3, 15.0), (2, 7.0), (1, 4.0),
                                                           (2, 4.0)])
def test_exact_facets_match_triangles_walked_one_by_one(oversample, pixel_spacing):
    """Edges walked once with net scales equal every triangle scattered (and gathered) alone:
    on pixels of 15 m (DEM cells of about one pixel), 7 m and 4 m (cells of 2-8 pixels,
    whose edges cross up to two borders each way on SIMD lanes, or more, walked)."""
    state = _state(5, "exact", oversample, pixel_spacing=pixel_spacing)
    assert (state.layover == 1).any() or (state.layover == 2).any(), "the case must contain layover"
    shadowed = (state.shadow == 1) | (state.shadow == 2)
    cells = twin._Facets(state.cells, shadowed, state.window, state.oversample)
    triangles, corners, quantities, keep = _twin_triangles(cells, twin.MODEL, (0.0118, 0.111, 3.0))
    shape = state.images.shape[1:]
    images = scatter_triangles(corners[keep], quantities[keep], *shape)
    scale = np.abs(images).max()
    np.testing.assert_allclose(state.images, images, rtol=0, atol=1e-9 * scale)
    # Gather: each cell's energy is the sum over its triangles of c times the mean ratio.
    ratios = reallocation_ratios(state, _observation(state))
    means = np.zeros((corners.shape[0], 2))
    means[keep] = gather_triangles(np.ascontiguousarray(corners[keep]), ratios)
    per_cell = cells.i.size
    energy = (quantities[:, 0] * means[:, 0]).reshape(-1, per_cell).sum(axis=0)
    kernel = state.facet_pass(gather=True, ratios=ratios)[0][0][cells.i, cells.j]
    np.testing.assert_allclose(kernel, energy, rtol=1e-9, atol=1e-9 * np.abs(energy).max())
    sigma_area = sum(area_sigma for _, _, area_sigma, *_ in triangles)
    np.testing.assert_allclose(state.per_cell["sigma_area"][cells.i, cells.j], sigma_area, rtol=1e-9)


@pytest.mark.parametrize("oversample", [1, 2, "auto"])
def test_bilinear_facets_match_numpy_twin(oversample):
    state = _state(8, "bilinear", oversample, incidence=30.0, heading=-15.0)
    observed = _observation(state)
    expected = twin.reallocate_bilinear(state, observed, state.pixel_area)
    np.testing.assert_allclose(state.images, expected["images"], rtol=0, atol=1e-10 * np.abs(expected["images"]).max())
    result = reallocate(state, observed)
    np.testing.assert_allclose(np.nan_to_num(result["energy"]), expected["energy"], rtol=1e-9,
                               atol=1e-10 * np.abs(expected["energy"]).max())


def _faces_away_twin(ecef: np.ndarray, look: np.ndarray) -> np.ndarray:
    normal = np.cross(np.gradient(ecef, axis=1), np.gradient(ecef, axis=0))
    outward = np.sign(np.einsum("ijk,ijk->ij", normal, ecef))
    with np.errstate(invalid="ignore"):
        return np.einsum("ijk,ijk->ij", normal, look.astype(np.float64)) * outward <= 0.0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), rows=st.integers(2, 9), cols=st.integers(2, 9))
def test_faces_away_matches_numpy_gradient_twin(seed, rows, cols):
    rng = np.random.default_rng(seed)
    ecef = np.stack(np.meshgrid(np.arange(cols) * 30.0, np.arange(rows) * -30.0), axis=2)
    ecef = np.concatenate([ecef, rng.uniform(0, 80, (rows, cols, 1))], axis=2) + np.array([0.0, 0.0, 6.37e6])
    ecef[rng.random((rows, cols)) < 0.1, 0] = np.nan
    look = rng.normal(size=(rows, cols, 3)).astype(np.float32)
    out = np.zeros((rows, cols), dtype=bool)
    facing.faces_away(ecef, look, 0, rows, out)
    np.testing.assert_array_equal(out, _faces_away_twin(ecef, look))


def _sample_twin(image, line, sample, line0, sample0, nearest):
    n_lines, n_samples = image.shape
    rl, rs = line - line0, sample - sample0
    with np.errstate(invalid="ignore"):
        ok = (rl >= -0.5) & (rl <= n_lines - 0.5) & (rs >= -0.5) & (rs <= n_samples - 0.5)
    if nearest:
        r = np.clip(np.floor(np.where(ok, rl, 0) + 0.5).astype(int), 0, n_lines - 1)
        c = np.clip(np.floor(np.where(ok, rs, 0) + 0.5).astype(int), 0, n_samples - 1)
        return np.where(ok, image[r, c], np.nan)
    lc = np.clip(np.where(ok, rl, 0), 0, n_lines - 1)
    sc = np.clip(np.where(ok, rs, 0), 0, n_samples - 1)
    r0 = np.minimum(np.floor(lc).astype(int), max(n_lines - 2, 0))
    c0 = np.minimum(np.floor(sc).astype(int), max(n_samples - 2, 0))
    wr, wc = np.clip(lc - r0, 0, 1), np.clip(sc - c0, 0, 1)
    r1, c1 = np.minimum(r0 + 1, n_lines - 1), np.minimum(c0 + 1, n_samples - 1)
    value = ((1 - wr) * ((1 - wc) * image[r0, c0] + wc * image[r0, c1])
             + wr * ((1 - wc) * image[r1, c0] + wc * image[r1, c1]))
    return np.where(ok, value, np.nan)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), n_lines=st.integers(1, 6), n_samples=st.integers(1, 6), nearest=st.booleans())
def test_sample_window_matches_numpy_twin(seed, n_lines, n_samples, nearest):
    rng = np.random.default_rng(seed)
    image = rng.random((n_lines, n_samples))
    line = rng.uniform(9, 11 + n_lines, (5, 7))
    sample = rng.uniform(19, 21 + n_samples, (5, 7))
    line[0, 0] = np.nan
    out = np.empty(line.shape)
    sample_window(image, line, sample, 10, 20, nearest, out)
    np.testing.assert_allclose(out, _sample_twin(image, line, sample, 10, 20, nearest), rtol=1e-12, atol=1e-15)


def test_sample_window_analytic():
    """A plane a + b line + c sample is reproduced exactly inside the window's centres."""
    lines, samples = np.mgrid[0:4, 0:5].astype(float)
    image = 2.0 + 0.5 * lines - 0.25 * samples
    line = np.array([[0.3, 2.9], [1.5, -0.6]]) + 100
    sample = np.array([[3.7, 0.0], [2.2, 1.0]]) + 50
    out = np.empty(line.shape)
    sample_window(image, line, sample, 100, 50, False, out)
    expected = 2.0 + 0.5 * (line - 100) - 0.25 * (sample - 50)
    expected[1, 1] = np.nan  # line -0.6 is outside the window
    np.testing.assert_allclose(out, expected, rtol=1e-12)


_SPECIAL = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 2.5])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 7), cols=st.integers(1, 7), special=_SPECIAL,
       fraction=st.sampled_from([0.0, 0.05, 1.0]))
def test_per_pixel_outputs_match_their_numpy_expressions(seed, rows, cols, special, fraction):
    """The radar outputs of a simulation in one threaded pass equal the whole-image numpy
    expressions they replace, NaN, infinities, zero and negative areas included."""
    rng = np.random.default_rng(seed)
    image, area, flat = (rng.normal(1.0, 2.0, (rows, cols)) for _ in range(3))
    for array in (image, area, flat):
        array[rng.random((rows, cols)) < 0.3] = special
    out = np.empty((rows, cols), dtype=np.float32)
    radar_buffers.per_pixel_area(image, area, 0, rows, out)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        expected = np.where(area > 0, image / area, np.nan).astype(np.float32)
    np.testing.assert_array_equal(out, expected)
    valid = np.empty((rows, cols), dtype=bool)
    radar_buffers.valid_pixels(image, flat, fraction, 0, rows, valid)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(valid, np.nan_to_num(image) >= fraction * np.nan_to_num(flat, nan=np.inf))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lines=st.integers(1, 7), samples=st.integers(1, 7), terms=st.integers(0, 6),
       special=_SPECIAL, fraction=st.sampled_from([0.0, 0.05, 1.0]))
def test_radar_products_equal_their_numpy_expressions(seed, lines, samples, terms, special, fraction):
    """A simulation's radar outputs in one pass, the smooth fields evaluated per pixel,
    equal the whole-image numpy expressions they replace (the fields accumulated term
    after term, then the images over the pixel area, the area as float32, the validity),
    NaN, infinities, zero and negative areas included."""
    rng = np.random.default_rng(seed)
    images = rng.normal(1.0, 2.0, (2, lines, samples))
    images[rng.random(images.shape) < 0.3] = special
    fields = []
    for _ in range(2):
        rows, columns = rng.normal(0.0, 2.0, (terms, lines)), rng.uniform(-1.0, 1.0, (terms, samples))
        rows[rng.random(rows.shape) < 0.2] = special
        fields.append((rows, columns))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        area, flat = (sum((rows[k][:, None] * columns[k][None, :] for k in range(terms)),
                          np.zeros((lines, samples))) for rows, columns in fields)
        expected = {"simulated_area": np.where(area > 0, images[0] / area, np.nan).astype(np.float32),
                    "simulated_gamma_area": np.where(area > 0, images[1] / area, np.nan).astype(np.float32),
                    "pixel_area": area.astype(np.float32),
                    "valid": np.nan_to_num(images[1]) >= fraction * np.nan_to_num(flat, nan=np.inf)}
    out = {name: np.empty((lines, samples), dtype=np.float32) for name in list(expected)[:3]}
    out["valid"] = np.empty((lines, samples), dtype=bool)
    radar_buffers.radar_products(images, *fields[0], *fields[1], fraction, 0, lines, *out.values())
    for name, values in expected.items():
        np.testing.assert_array_equal(out[name], values, err_msg=name)


@pytest.mark.parametrize("projection", ["exact", "bilinear"])
def test_radar_products_of_a_simulation_equal_the_separate_passes(projection):
    """On a simulation, the one-pass radar outputs equal the smooth fields evaluated over
    the window followed by the per-pixel passes, to the bit."""
    state = _state(5, projection, "auto")
    products = state.radar_products()
    images = state.images
    pixel_area = state.smooth_fields.evaluate("pixel_area")
    flat = state.smooth_fields.evaluate("flat_gamma_area")
    for name, image in (("simulated_area", images[0]), ("simulated_gamma_area", images[1])):
        out = np.empty(image.shape, dtype=np.float32)
        radar_buffers.per_pixel_area(image, pixel_area, 0, image.shape[0], out)
        np.testing.assert_array_equal(products[name], out)
    np.testing.assert_array_equal(products["pixel_area"], pixel_area.astype(np.float32))
    valid = np.empty(images.shape[1:], dtype=bool)
    radar_buffers.valid_pixels(images[1], flat, VALID_AREA_FRACTION, 0, valid.shape[0], valid)
    np.testing.assert_array_equal(products["valid"], valid)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), lines=st.integers(1, 9), samples=st.integers(1, 9), terms=st.integers(0, 10))
def test_polynomial_field_equals_the_numpy_accumulation(seed, lines, samples, terms):
    """The smooth fields' polynomial in one pass: term after term as the numpy sum of
    whole-image terms (c u^p) v^q did, so equal to the bit."""
    rng = np.random.default_rng(seed)
    uu, vv = rng.uniform(-0.5, 0.5, lines), rng.uniform(-0.5, 0.5, samples)
    powers = rng.integers(0, 4, (terms, 2))
    coefficients = rng.normal(0, 100, terms)
    expected = np.zeros((lines, samples))
    for (p, q), c in zip(powers, coefficients, strict=True):
        expected += c * uu[:, None] ** p * vv[None, :] ** q
    row_terms = np.array([c * uu**p for (p, _), c in zip(powers, coefficients, strict=True)]).reshape(terms, lines)
    column_terms = np.array([vv**q for _, q in powers]).reshape(terms, samples)
    out = np.empty((lines, samples))
    radar_buffers.polynomial_field(row_terms, column_terms, 0, lines, out)
    np.testing.assert_array_equal(out, expected)


_coordinate = st.one_of(st.floats(-1.5, 9.5), st.integers(-1, 9).map(float), st.just(float("nan")))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), ends=st.lists(st.tuples(_coordinate, _coordinate, st.floats(-3.5, 3.5),
                                                              st.floats(-3.5, 3.5)), min_size=1, max_size=12),
       wide=st.booleans())
def test_edge_pieces_on_simd_lanes_equal_the_walk_border_by_border(seed, ends, wide):
    """The cut of edges into pieces on SIMD lanes, up to five (``wide``: two row and two
    column borders crossed) or three, deposits and integrates what walking each edge
    border by border does: edges of up to 3.5 pixels each way, on and off the image,
    ends on pixel borders, void (NaN) ends: nothing deposited, integrals 0."""
    n_lines, n_samples = 7, 8
    edges = np.array([(l0, s0, l0 + dl, s0 + ds) for l0, s0, dl, ds in ends])
    l0, s0, l1, s1 = (np.ascontiguousarray(edges[:, k]) for k in range(4))
    n = len(edges)
    rng = np.random.default_rng(seed)
    net0, net1 = rng.normal(size=n), rng.normal(size=n)
    pieces = np.empty((facets._PIECE_ROWS, n))
    dummy = np.empty(n)
    shape = radar_buffers.scatter_buffer_shape(n_lines, n_samples, True)
    width = shape[1]
    on_lanes, walked = np.zeros(shape), np.zeros(shape)
    facets._edges(l0, s0, l1, s1, n, False, net0, net1, dummy, dummy, pieces, on_lanes.reshape(-1), width,
                  n_lines, n_samples, wide)
    finite = np.isfinite(edges).all(axis=1) & (l1 != l0)
    for q in range(n):
        if finite[q]:
            facets._walk_long(l0[q], s0[q], l1[q], s1[q], False, net0[q], net1[q], walked.reshape(-1), width,
                              n_lines, n_samples)
    # Compared as the image they add up to: an edge along a pixel border (an end on it, the
    # other a subnormal away) may be deposited in the pixel either side of it, which adds
    # the same to the image.
    images = []
    for deposited in (on_lanes, walked):
        images.append(np.zeros(radar_buffers.radar_buffer_shape(n_lines, n_samples)))
        radar_buffers.add_tile_rows(deposited, True, images[-1], 0, 0, 0, n_lines)
    np.testing.assert_allclose(images[0], images[1], rtol=0, atol=1e-12 * max(1.0, np.abs(walked).max()))
    # Gather: the integrals along each edge of two channels' row prefix sums.
    prefix = rng.normal(size=radar_buffers.radar_buffer_shape(n_lines, n_samples))
    out0, out1 = np.empty(n), np.empty(n)
    facets._edges(l0, s0, l1, s1, n, True, dummy, dummy, out0, out1, pieces, prefix.reshape(-1), width, n_lines,
                  n_samples, wide)
    for q in range(n):
        expected = (facets._walk_long(l0[q], s0[q], l1[q], s1[q], True, 0.0, 0.0, prefix.reshape(-1), width, n_lines,
                                      n_samples) if finite[q] else (0.0, 0.0))
        np.testing.assert_allclose((out0[q], out1[q]), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("oversample", [1, 2])
def test_a_law_per_class_matches_its_numpy_twin_triangle_by_triangle(oversample):
    """The kernel's law per class (each lit facet its cell's class law of the facet's own
    local incidence, times its sigma area and the cell's factor) against the numpy twin's
    triangles scattered one by one: rough relief with layover and shadow, four classes, a
    texture, a class code that carries nothing. With one class and no factor it is the
    law's own contribution."""
    from sarheight.ground import CellLaws, draw_ground

    state = _state(5, "exact", oversample)
    dem = state.dem
    ground = draw_ground(dem, "training", 4)
    classes = ground.classes.astype(np.int64).copy()
    classes[:3, :3] = 9  # no law: nothing
    factor = ground.texture()
    one = run_simulation(dem, state.geometry, contribution=CellLaws(classes, ground.laws, factor),
                         oversample=oversample)
    assert ((one.shadow == 1) | (one.shadow == 2)).any() and ((one.layover == 1) | (one.layover == 2)).any()
    shadowed = (one.shadow == 1) | (one.shadow == 2)
    cells = twin._Facets(one.cells, shadowed, one.window, one.oversample)
    at = (cells.i, cells.j)
    _, corners, quantities, keep = _twin_triangles(cells, twin.CELL_LAW, (classes[at], factor[at], ground.laws))
    images = scatter_triangles(corners[keep], quantities[keep], *one.images.shape[1:])
    # The kernel interpolates each law in a table of 90,000 steps over 90 degrees.
    np.testing.assert_allclose(one.images, images, rtol=0, atol=1e-6 * np.abs(images).max())
    assert np.all(one.per_cell["contribution"][:3, :3] == 0.0)
    law = ground.laws[1]
    single = run_simulation(dem, state.geometry, contribution=CellLaws(np.zeros(dem.shape, np.int64), (law,)),
                            oversample=oversample)
    reference = run_simulation(dem, state.geometry, contribution=law, oversample=oversample)
    np.testing.assert_allclose(single.images, reference.images, rtol=0, atol=1e-6 * np.abs(reference.images).max())
