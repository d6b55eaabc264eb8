"""The simulated ground (sarheight.ground): sigma0 law forms, land cover that follows the
terrain, families of grounds, the law fitted to an observation, and simulate_sar's ground."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sarheight.dem import open_dem
from sarheight.errors import InvalidInputError
from sarheight.ground import (
    CROSS_RATIO_DB,
    CROSS_RATIO_RANGES_DB,
    GROUND_FAMILIES,
    LAMBERT_LAW,
    LAND_COVER_CLASSES,
    NO_CLASS,
    SNAP_LAW,
    DateCondition,
    Ground,
    Sigma0Law,
    draw_ground,
    empirical_sigma0,
    fit_sigma0_law,
    lambert_sigma0,
    lognormal_texture,
    terrain_land_cover,
)
from sarheight.simulate import simulate, simulate_sar, texture
from sarheight.terrain.clinometry import range_slope_sensitivity
from tests.support.scenes import CELL_DEG, LAT, LON, cell_metres, plane_dem, rough_dem, synthetic_geometry

ROCK, SOIL, VEGETATION, SNOW = range(4)
ANGLES = np.linspace(0.0, 90.0, 901)


def cone(n: int = 41, slope_deg: float = 25.0, lat: float = LAT, base: float = 200.0) -> tuple:
    """A cone of constant slope on a geographic grid of ~30 m cells, and the cells' distance
    east and north of its apex (m): the aspect of every cell is known (downslope = away
    from the apex)."""
    dx, dy = cell_metres(n, lat + n * CELL_DEG / 2)
    east = (np.arange(n) - n // 2)[None, :] * dx * np.ones((n, 1))
    north = -(np.arange(n) - n // 2)[:, None] * dy * np.ones((1, n))
    heights = base + math.tan(math.radians(slope_deg)) * (n // 2 * dy - np.hypot(east, north))
    transform = Affine(CELL_DEG, 0, LON, 0, -CELL_DEG, lat + n * CELL_DEG / 2)
    dem = open_dem((heights.astype(np.float32), transform, "EPSG:4326"), vertical_datum="ellipsoid")
    return dem, east, north


@functools.cache
def family_dem():
    return cone(33)[0]


# --- laws ---------------------------------------------------------------------------------


LAWS = [SNAP_LAW, Sigma0Law("cosine", (0.1, 1.0)), LAMBERT_LAW, Sigma0Law("exponential_db", (-10.0, -0.15)),
        Sigma0Law.with_level("snow", -20.0, 0.1, 4.0), Sigma0Law.with_level("empirical", -8.0, 0.05, 3.5)]


@pytest.mark.parametrize("law", LAWS, ids=lambda law: law.name)
def test_every_law_is_finite_non_negative_and_zero_facing_away(law):
    values = law(ANGLES)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(values[:-1] > 0)
    np.testing.assert_array_equal(law(np.array([90.0, 95.0, 180.0])), 0.0)
    assert np.isnan(law(np.array([np.nan]))[0])
    assert np.all(np.diff(values) <= 0)  # every form falls with the incidence


def test_law_values_against_their_formulas_and_the_simulators_laws():
    t = np.radians(np.array([5.0, 23.0, 40.0, 61.0, 85.0]))
    degrees = np.degrees(t)
    a0, a1, a2 = 0.03, 0.2, 2.5
    np.testing.assert_allclose(Sigma0Law("empirical", (a0, a1, a2))(degrees),
                               a0 * np.cos(t) / (np.sin(t) + a1 * np.cos(t)) ** a2, rtol=1e-12)
    np.testing.assert_allclose(Sigma0Law("snow", (a0, a1, a2))(degrees),
                               a0 * np.cos(t) / (np.sin(t) + a1 * np.cos(t)) ** a2, rtol=1e-12)
    np.testing.assert_allclose(Sigma0Law("cosine", (0.2, 1.3))(degrees), 0.2 * np.cos(t) ** 1.3, rtol=1e-12)
    np.testing.assert_allclose(Sigma0Law("exponential_db", (-9.0, -0.2)).db(degrees), -9.0 - 0.2 * (degrees - 40.0),
                               rtol=1e-12)
    # SNAP's law and Lambert's are the simulator's.
    np.testing.assert_allclose(SNAP_LAW(ANGLES), empirical_sigma0(ANGLES), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(LAMBERT_LAW(ANGLES), lambert_sigma0(ANGLES), rtol=1e-12, atol=1e-15)
    # cos^1: constant gamma0 = sigma0 / cos t below 90 degrees.
    gamma0 = Sigma0Law("cosine", (0.07, 1.0))(ANGLES[:-1]) / np.cos(np.radians(ANGLES[:-1]))
    np.testing.assert_allclose(gamma0, 0.07, rtol=1e-12)
    # with_level puts sigma0 at 40 degrees where asked, whatever the form.
    for form, shape in (("empirical", (0.1, 2.0)), ("snow", (0.05, 4.0)), ("cosine", (1.1,)),
                        ("exponential_db", (-0.2,))):
        assert Sigma0Law.with_level(form, -13.5, *shape).level_db == pytest.approx(-13.5, abs=1e-9)
    assert SNAP_LAW.to_attrs()["sigma0_law_form"] == "empirical"
    assert SNAP_LAW.name == "empirical(a0=0.0118, a1=0.111, a2=3)"


@pytest.mark.parametrize("form, parameters", [("quadratic", (1.0,)), ("empirical", (0.01, 0.1)),
                                              ("empirical", (0.01, 0.0, 3.0)), ("cosine", (0.1, -1.0)),
                                              ("exponential_db", (-10.0, float("nan")))])
def test_bad_laws_are_refused(form, parameters):
    with pytest.raises(InvalidInputError):
        Sigma0Law(form, parameters)


def test_the_texture_is_the_simulators():
    np.testing.assert_array_equal(lognormal_texture((20, 30), seed=4, contrast_db=2.0),
                                  texture((20, 30), seed=4, contrast_db=2.0))


# --- land cover ---------------------------------------------------------------------------


def test_snow_lies_above_the_snowline_lower_on_shaded_slopes():
    dem, east, north = cone()
    classes = terrain_land_cover(dem, seed=0, treeline_quantile=-1.0, snowline_quantile=0.7, rock_slope_deg=60.0,
                                 aspect_snow_shift=0.15, irregularity=0.0, slope_irregularity_deg=0.0)
    quantile = (stats.rankdata(dem.values.ravel()).reshape(dem.shape) - 0.5) / dem.size
    aspect = np.arctan2(east, north)  # downslope: away from the apex, from north
    expected = quantile > 0.7 - 0.15 * np.cos(aspect)
    off_apex = np.hypot(east, north) > 60.0
    assert np.mean((classes == SNOW)[off_apex] == expected[off_apex]) > 0.99
    assert set(np.unique(classes)) <= {SNOW, SOIL}
    north_facing, south_facing = off_apex & (np.cos(aspect) > 0.7), off_apex & (np.cos(aspect) < -0.7)
    assert np.mean(classes[north_facing] == SNOW) > np.mean(classes[south_facing] == SNOW) + 0.1
    # In the southern hemisphere the shaded slopes face south.
    dem_south, _, _ = cone(lat=-45.0)
    south = terrain_land_cover(dem_south, seed=0, treeline_quantile=-1.0, snowline_quantile=0.7,
                               rock_slope_deg=60.0, aspect_snow_shift=0.15, irregularity=0.0,
                               slope_irregularity_deg=0.0)
    assert np.mean(south[south_facing] == SNOW) > np.mean(south[north_facing] == SNOW) + 0.1


def test_rock_on_steep_slopes_and_vegetation_low():
    # h = a x^2 across the columns: the slope is atan(2 a x), exactly what central differences give.
    dem = plane_dem(24, 40)
    dx = cell_metres(24)[0]
    x = np.arange(40) * dx
    a = math.tan(math.radians(65.0)) / (2 * x[-1])
    dem = dem.copy(data=np.broadcast_to(100.0 + a * x**2, dem.shape).astype(np.float32))
    slope = np.degrees(np.arctan(2 * a * x))
    classes = terrain_land_cover(dem, seed=1, treeline_quantile=0.3, snowline_quantile=2.0, rock_slope_deg=40.0,
                                 aspect_snow_shift=0.0, irregularity=0.0, slope_irregularity_deg=0.0)
    inner = slice(1, -1)
    steep = np.broadcast_to(slope > 40.0, dem.shape)[:, inner]
    np.testing.assert_array_equal(classes[:, inner] == ROCK, steep)
    quantile = (stats.rankdata(dem.values.ravel()).reshape(dem.shape) - 0.5) / dem.size
    np.testing.assert_array_equal((classes == VEGETATION)[:, inner], (quantile < 0.3)[:, inner] & ~steep)
    assert not np.any(classes == SNOW)


def test_boundaries_are_irregular_and_relative_to_the_dems_own_heights():
    dem, east, north = cone(49)
    options = {"treeline_quantile": 0.35, "snowline_quantile": 0.8, "rock_slope_deg": 60.0,
               "aspect_snow_shift": 0.0}
    classes = terrain_land_cover(dem, seed=3, **options)
    quantile = (stats.rankdata(dem.values.ravel()).reshape(dem.shape) - 0.5) / dem.size
    # Not iso-lines: cells of one height band near the treeline are of both kinds...
    band = np.abs(quantile - 0.35) < 0.02
    assert {VEGETATION, SOIL} <= set(np.unique(classes[band]))
    # ... yet the classes follow height: vegetation low, soil above, snow on top.
    means = [quantile[classes == code].mean() for code in (VEGETATION, SOIL, SNOW)]
    assert means[0] < means[1] < means[2]
    # The same map 4000 m higher (thresholds are height quantiles), another map with another seed.
    np.testing.assert_array_equal(terrain_land_cover(dem + 4000.0, seed=3, **options), classes)
    assert not np.array_equal(terrain_land_cover(dem, seed=4, **options), classes)
    # Voids have no class.
    holed = dem.copy(data=np.where(np.hypot(east, north) < 40.0, np.nan, dem.values))
    assert np.all(terrain_land_cover(holed, seed=3, **options)[np.isnan(holed.values)] == NO_CLASS)


# --- families -----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), family=st.sampled_from(["training", "test-family", "outside"]))
def test_draws_lie_inside_their_family(seed, family):
    ground = draw_ground(family_dem(), family, seed)
    assert GROUND_FAMILIES[family].contains(ground)
    assert ground.family == family and ground.seed == seed
    assert 0.0 <= ground.texture_db <= 3.0
    for law in ground.laws:
        values = law(ANGLES)
        assert np.all(np.isfinite(values)) and np.all(values >= 0) and values[-1] == 0
    if family != "outside":
        assert [law.form for law in ground.laws] == ["empirical", "empirical", "cosine", "snow"]
        assert 0.8 <= ground.law_of("vegetation").parameters[1] <= 1.3
        for name in ("rock", "soil"):
            a1, a2 = ground.law_of(name).shape_parameters
            assert 0.05 <= a1 <= 0.3 and 1.5 <= a2 <= 3.5 and -14.0 <= ground.law_of(name).level_db <= -6.0
        assert ground.law_of("snow").level_db <= -18.0


def test_the_outside_family_uses_forms_training_does_not():
    training, outside = GROUND_FAMILIES["training"], GROUND_FAMILIES["outside"]
    training_forms = {training.form(name) for name in LAND_COVER_CLASSES}
    for name in LAND_COVER_CLASSES:
        assert outside.form(name) not in training_forms
    grounds = [draw_ground(family_dem(), "outside", seed) for seed in range(5)]
    assert all(not training.contains(ground) for ground in grounds)
    # The single laws: every class the same, the simulator's laws by name.
    lambert = draw_ground(family_dem(), "lambert", 0)
    assert set(lambert.laws) == {LAMBERT_LAW}
    assert set(draw_ground(family_dem(), "empirical", 0).laws) == {SNAP_LAW}


def test_same_seed_same_ground_and_scenes_from_one_class_to_mixed():
    dem = family_dem()
    assert draw_ground(dem, "training", 7) == draw_ground(dem, "training", 7)
    assert draw_ground(dem, "training", 7) != draw_ground(dem, "training", 8)
    # test-family seed k is another ground than training seed k, from the same ranges.
    other = draw_ground(dem, "test-family", 7)
    assert other != draw_ground(dem, "training", 7)
    assert GROUND_FAMILIES["training"].contains(other)
    largest = [max(draw_ground(dem, "training", seed).class_shares().values()) for seed in range(40)]
    assert max(largest) > 0.9 and min(largest) < 0.6
    attrs = draw_ground(dem, "training", 7).to_attrs()
    assert attrs["ground"] == "ground:training" and attrs["ground_seed"] == 7
    assert all(isinstance(value, (str, int, float)) for value in attrs.values())


@pytest.mark.parametrize("call, match", [
    (lambda: draw_ground(family_dem(), "unknown", 0), "unknown ground family"),
    (lambda: draw_ground(family_dem(), "training", -1), "seed"),
    (lambda: Ground((SNAP_LAW,) * 3, np.zeros((2, 2), np.uint8)), "one Sigma0Law per class"),
    (lambda: Ground((SNAP_LAW,) * 4, np.full((2, 2), 7, np.uint8)), "class codes"),
    (lambda: Ground.uniform(SNAP_LAW, (3, 3)).sigma0(np.zeros((2, 2))), "shape"),
])
def test_bad_grounds_are_refused(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


# --- the fitted law -----------------------------------------------------------------------


def incidence_sample(seed: int, cells: int = 40_000) -> np.ndarray:
    """Local incidence angles of a realistic scene: 10-80 degrees, most 25-55."""
    rng = np.random.default_rng(seed)
    return np.r_[np.clip(rng.normal(40.0, 10.0, cells), 10.0, 80.0), rng.uniform(10.0, 80.0, cells // 10)]


FITTED = [SNAP_LAW, Sigma0Law("cosine", (0.1, 1.0)), Sigma0Law("exponential_db", (-10.0, -0.15))]


@pytest.mark.parametrize("outliers", [0.0, 0.1])
@pytest.mark.parametrize("law", FITTED, ids=lambda law: law.form)
def test_the_fit_recovers_a_known_law_from_speckled_samples(law, outliers):
    rng = np.random.default_rng(11)
    t = incidence_sample(12)
    speckled = law(t) * rng.gamma(4.4, 1 / 4.4, t.size) * lognormal_texture((1, t.size), seed=3, contrast_db=1.5,
                                                                             correlation_cells=0.5)[0]
    observed = 10 * np.log10(speckled)
    bad = rng.random(t.size) < outliers
    observed[bad] = rng.uniform(-35.0, 10.0, bad.sum())
    layover = rng.random(t.size) < 0.05
    observed[layover] = 5.0  # bright layover, left out by valid
    fitted = fit_sigma0_law(observed, t, valid=~layover)
    core = np.arange(25.0, 55.1, 1.0)
    np.testing.assert_allclose(fitted.sensitivity(core), range_slope_sensitivity(core, law), rtol=0.15)
    ratio = fitted.ratio_db(law.db(core), core)  # the true law over the fitted: a constant (speckle's offset)
    assert np.ptp(ratio) < 0.5
    assert np.all(np.diff(fitted(np.linspace(0.5, 89.5, 300))) <= 1e-9)  # never rises
    assert fitted.to_attrs()["fitted_law_cells"] == int((~layover).sum())


@pytest.mark.parametrize("law", [*FITTED, LAMBERT_LAW, Sigma0Law.with_level("snow", -21.0, 0.05, 4.5)],
                         ids=lambda law: law.name)
def test_the_ratio_of_a_laws_own_values_is_constant(law):
    t = incidence_sample(2)
    fitted = fit_sigma0_law(law.db(t), t)
    grid = np.arange(20.0, 70.1, 0.5)
    ratio = fitted.ratio_db(law.db(grid), grid)
    assert np.ptp(ratio) < 0.1
    assert np.abs(ratio).max() < 0.1
    # Beyond the populated range the law goes on with the slope at its end; nothing at 90 and beyond.
    low, high = fitted.range_deg
    assert fitted(high + 5.0) - fitted(high) == pytest.approx(5.0 * fitted.slope_db_per_deg(high), abs=1e-9)
    assert fitted(low - 5.0) - fitted(low) == pytest.approx(-5.0 * fitted.slope_db_per_deg(low), abs=1e-9)
    assert np.isnan(fitted(90.0)) and np.isnan(fitted.sensitivity(0.0))


def test_bad_fits_are_refused():
    t = incidence_sample(0, 1000)
    with pytest.raises(InvalidInputError, match="shape"):
        fit_sigma0_law(np.zeros(5), np.zeros(6))
    with pytest.raises(InvalidInputError, match="no bin"):
        fit_sigma0_law(SNAP_LAW.db(t), t, valid=np.zeros(t.size, dtype=bool))
    with pytest.raises(InvalidInputError, match="bin_deg"):
        fit_sigma0_law(SNAP_LAW.db(t), t, bin_deg=0.0)


# --- simulate_sar with a ground ------------------------------------------------------------


@pytest.mark.parametrize("law", [SNAP_LAW, Sigma0Law.with_level("snow", -21.0, 0.05, 4.5),
                                 Sigma0Law("exponential_db", (-10.0, -0.2))], ids=lambda law: law.form)
def test_a_one_class_ground_is_its_law_as_backscatter(law):
    # The callable path evaluates the law per facet, the ground per cell (at the angle of
    # the cell's summed area vector): on a plane every facet of a cell has the cell's
    # normal, so the two agree to float32 and the law table's interpolation (a few 1e-6),
    # edges included. On curved terrain they differ at second order in the spread of the
    # facet normals within a cell (Jensen: about 1 % a cell on a 150 m hill of 30 m cells).
    dem = plane_dem(24, 24, slope_east_deg=12.0, slope_north_deg=-7.0)
    geometry = synthetic_geometry(dem)
    ground = Ground.uniform(law, dem.shape)
    observed, truth = simulate_sar(dem, geometry, looks=None, nesz_db=None, ground=ground, return_truth=True)
    reference, reference_truth = simulate_sar(dem, geometry, looks=None, nesz_db=None, backscatter=law,
                                              return_truth=True)
    assert observed.shape == reference.shape and np.count_nonzero(reference.values) > 500
    np.testing.assert_allclose(observed.values, reference.values, rtol=2e-5, atol=0)
    np.testing.assert_allclose(truth.values, reference_truth.values, rtol=2e-5)
    assert observed.attrs["sigma0_law"] == f"ground:uniform:{law.form}"


def test_a_drawn_ground_gives_each_cell_its_class_law_and_texture():
    dem = plane_dem(24, 24, slope_east_deg=8.0, slope_north_deg=5.0)
    geometry = synthetic_geometry(dem)
    ground = draw_ground(dem, "training", 5)
    observed, truth = simulate_sar(dem, geometry, ground=ground, return_truth=True, seed=2)
    incidence = simulate(dem, geometry, progress=False)["local_incidence_angle"].values
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(truth.values[inner], ground.sigma0(incidence)[inner], rtol=1e-4)
    assert observed.attrs["sigma0_law"] == "ground:training"
    assert observed.attrs["ground_law_snow"] == ground.law_of("snow").name
    assert observed.attrs["land_cover_db"] == ground.texture_db


@pytest.mark.parametrize("options, match", [
    ({"backscatter": SNAP_LAW}, "without backscatter"),
    ({"law": "lambert"}, "without law"),
    ({"land_cover_db": 1.0}, "without land_cover_db"),
    ({"land_cover_seed": 2}, "without land_cover_seed"),
])
def test_a_ground_with_another_ground_description_is_refused(options, match):
    dem = plane_dem(6, 6)
    with pytest.raises(InvalidInputError, match=match):
        simulate_sar(dem, synthetic_geometry(dem), ground=Ground.uniform(SNAP_LAW, dem.shape), **options)


def test_a_ground_off_the_dem_or_not_a_ground_is_refused():
    dem = plane_dem(6, 6)
    geometry = synthetic_geometry(dem)
    with pytest.raises(InvalidInputError, match="shape"):
        simulate_sar(dem, geometry, ground=Ground.uniform(SNAP_LAW, (5, 6)))
    with pytest.raises(InvalidInputError, match="Ground"):
        simulate_sar(dem, geometry, ground="training")


def test_patches_cut_across_the_terrains_classes_and_a_dark_share_is_held():
    dem = rough_dem(4, rows=80, cols=80, relief=800.0)
    plain = terrain_land_cover(dem, seed=3)
    patched = terrain_land_cover(dem, seed=3, patch_share=0.3, patch_class=3)
    moved = patched != plain
    # The patches take their share of the cells, whatever the terrain decided there, in
    # patches (not single cells): most of a patch cell's neighbours are patch cells too.
    assert 0.2 < float(np.mean(patched == 3)) - float(np.mean(plain == 3)) <= 0.31
    inner = moved[1:-1, 1:-1]
    neighbours = sum(np.roll(np.roll(moved, dy, 0), dx, 1)[1:-1, 1:-1]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
    assert float(np.mean(neighbours[inner])) > 5.0
    # Every class under the patches: they cut across rock, soil and vegetation alike.
    assert len(set(plain[moved].tolist())) >= 2
    ground = draw_ground(dem, "outside", 5, dark_share=(0.34, 0.45))
    darkest = int(np.argmin([law.level_db for law in ground.laws]))
    assert ground.rule.patch_class == darkest and float(np.mean(ground.classes == darkest)) >= 0.34
    with pytest.raises(InvalidInputError, match="patch_share"):
        terrain_land_cover(dem, seed=3, patch_share=1.5)
    with pytest.raises(InvalidInputError, match="dark_share"):
        draw_ground(dem, "outside", 5, dark_share=(0.5, 0.2))


def test_the_cross_polarised_ground_moves_each_class_law_by_its_ratio():
    dem = plane_dem(24, 24, slope_east_deg=8.0, slope_north_deg=5.0)
    ground = draw_ground(dem, "training", 5)
    for name, ratio in zip(LAND_COVER_CLASSES, ground.cross_ratios_db, strict=True):
        low, high = CROSS_RATIO_RANGES_DB[name]
        assert low <= ratio <= high
    cross = ground.cross_polarised()
    assert np.array_equal(cross.classes, ground.classes) and cross.texture_db == ground.texture_db
    angles = np.linspace(20.0, 60.0, 9)
    for law, moved, ratio in zip(ground.laws, cross.laws, ground.cross_ratios_db, strict=True):
        np.testing.assert_allclose(moved.db(angles) - law.db(angles), ratio, atol=1e-9)
    # Wet snow on the cross-polarised ground: every class the snow law of that polarisation.
    snowed = DateCondition(wet_snow=True).apply(cross)
    assert all(law == cross.law_of("snow") for law in snowed.laws)
    # The same seed draws the same ground, ratios and all; another seed other ratios.
    assert draw_ground(dem, "training", 5) == ground
    assert draw_ground(dem, "training", 6).cross_ratios_db != ground.cross_ratios_db
    assert Ground.uniform(SNAP_LAW, (4, 4)).cross_ratios_db == CROSS_RATIO_DB
    with pytest.raises(InvalidInputError, match="cross_ratios_db takes one ratio"):
        Ground((SNAP_LAW,) * 4, np.zeros((4, 4), dtype=np.uint8), cross_ratios_db=(-10.0, 3.0, -8.0, -9.0))
