"""The inversion study: how far inverting the simulator (:mod:`sarheight.terrain.inversion`)
brings a coarse DEM below every refinement that needs no learning, on a plain ground and
on land cover, with one image and with both passes of a stack of dates; how well the image
registers the DEM; and whether more images ever make a method worse.

Scenes are simulated from real DEMs as a user's data would come (:func:`study_case`).
Conditions (:data:`CONDITIONS`), each at coarse factors 3 and 5:

- ``plain``: one image of a ground of one law of the modelled form (SNAP's), no land
  cover, the exact coarse DEM (its block mean, stated exact): where the physics' model
  holds;
- ``plain_stack``: the same ground, coarse DEM and priors seen by both passes x 10 dates
  (each date its own speckle and moisture level, 1 dB);
- ``cover``: one image of land cover (:data:`COVER_FAMILY`: the "outside" family's laws,
  a form the inversion does not assume, land cover following height, slope and aspect and
  patches of the darkest class cutting across it over 34-45 % of the cells, a texture),
  and a realistic coarse product (:mod:`sarheight.coarse_dem`, the "test" family:
  correlated and slope-dependent error, bias, a geolocation shift, a grid not aligned,
  rounding; its stated error the RMS of its vertical errors);
- ``cover_stack``: the same ground, product and priors seen by both passes x 10 dates, two
  of them under wet snow;
- ``cover_dual``: ``cover``'s very image (the same speckle) with its cross-polarised band
  beside it, as a dual-polarisation product gives it (each class its own VH/VV ratio,
  :data:`sarheight.ground.CROSS_RATIO_RANGES_DB`; the band's own speckle; the same noise
  floor): what the land cover's VH/VV ratio adds to one image.

One image is one Sentinel-1 IW GRDH date averaged over the scene's cell
(:func:`sarheight.terrain.radar_images.iw_grdh_looks`: 4.4 looks per 20 x 22 m resolution
cell). The priors are an altimeter's (tracks, their heading and errors drawn per DEM and
factor). A DEM and factor share their coarse product, ground, priors and the speckle of
the first date between a condition and its stack, so that what the stack adds is images
alone (:data:`MORE_IMAGES`). Every draw follows the case's name.

The inversion's settings (:class:`sarheight.terrain.inversion.InversionSettings`) are chosen
on the validation DEMs (a coordinate search over :data:`SEARCH`, by the mean of the RMSE
relative to back-projection with the kriged priors), never on held-out ones; the fair bar
of each condition is the one method without learning (the inversion aside) whose mean
relative RMSE over the validation scenes is lowest, its validation scores kept in the
JSON; the oracle is the best of them per held-out row, chosen with the truth. Each scene
is made as a refinement by the inversion makes it: the coarse DEM registered to the
images, then again on the inversion's surface.

Scored per case: every method of :func:`sarheight.terrain.methods.baseline_maps` and the
inversion, overall and per terrain class, on the same cells; the registration applied
against the drawn shift, and whether a failure was flagged. Per condition and factor: the
reductions per held-out DEM, their mean and least, a paired test over the DEMs (exact
sign flips, Student's t). Results resume from ``cases/``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..coarse_dem import coarse_product, draw_errors
from ..dem import open_dem
from ..errors import InvalidInputError
from ..ground import draw_date_conditions, draw_ground
from ..plots import save_figure
from ..priors import PriorSpec, draw_prior_errors, sample_priors
from ..raster import cell_size_m, grid_steps
from ..scores import rms
from ..terrain.backprojection import shifted
from ..terrain.classes import REFINEMENT_CLASSES
from ..terrain.geometry import scene_geometry
from ..terrain.grid import block_mean
from ..terrain.inversion import InversionSettings, invert_dem
from ..terrain.method_table import BAR_METHODS, BY_KEY
from ..terrain.methods import baseline_maps
from ..terrain.observed import observed_scene
from ..terrain.radar_images import composite_images, iw_grdh_looks, radar_image
from ..terrain.registration import ImageRegistration
from ..terrain.scene_options import Execution, ObservationSpec, SceneProducts
from ..terrain.simulated import simulate_observations
from ..terrain.variables import inversion_reference, refinement_classes, scene_correction
from .refinement_methods import score_map, scoring_mask
from .runs import paired_test, reduction, write_json

logger = logging.getLogger(__name__)

#: The study's conditions: passes, dates (wet-snow ones among them), ground, coarse product.
CONDITIONS: dict[str, dict[str, Any]] = {
    "plain": {"passes": 1, "dates": 1, "snow_dates": 0, "ground": "plain", "coarse": "ideal"},
    "plain_stack": {"passes": 2, "dates": 10, "snow_dates": 0, "ground": "plain", "coarse": "ideal"},
    "cover": {"passes": 1, "dates": 1, "snow_dates": 0, "ground": "cover", "coarse": "test"},
    "cover_stack": {"passes": 2, "dates": 10, "snow_dates": 2, "ground": "cover", "coarse": "test"},
    "cover_dual": {"passes": 1, "dates": 1, "snow_dates": 0, "ground": "cover", "coarse": "test",
                   "cross_polarised": True},
}

#: Each one-image condition and the condition that adds images to it (the same DEM,
#: factor, product, ground, priors and first date).
MORE_IMAGES = {"plain": "plain_stack", "cover": "cover_stack"}

#: Each one-image condition and the condition that adds its cross-polarised band to the
#: same image.
SECOND_POLARISATION = {"cover": "cover_dual"}

#: The priors of every case: an altimeter's tracks (0.1 % of the cells), errors drawn.
PRIOR_KIND = "altimeter"

#: The ground of the land-cover conditions: the "outside" family (laws of a form the
#: inversion does not assume), its darkest class over 34-45 % of the cells in patches
#: that cut across the terrain's classes.
COVER_FAMILY = "outside"
DARK_SHARE = (0.34, 0.45)

#: The standard deviation (dB) of the dates' moisture levels in a stack.
STACK_MOISTURE_DB = 1.0

#: The methods without learning scored beside the inversion (names of baseline_maps).
NON_LEARNED = BAR_METHODS
METHOD_LABELS = {key: BY_KEY[key].short_label for key in (*NON_LEARNED, "inversion")}
#: The method every relative figure is against.
REFERENCE_METHOD = "back_projection_priors"

#: The coordinate search of the settings on the validation scenes: each field in turn,
#: the others at their best so far.
SEARCH: dict[str, tuple[Any, ...]] = {
    "probe_stride": (0, 5, 7),
    "coarse_error_share": (0.5, 1.0, 2.0),
}

#: The settings the search starts from (the defaults, the simulator probed on every
#: image where it probes: a one-image reading as much as a stack's).
SEARCH_START = {"probe_looks": 1.0}

#: Cells per side of the crops the cases take from each DEM (the part with the most land).
CROP_CELLS = 256


#: How much worse (a share of its RMSE) a method may be with more images before it counts
#: as worse: the spread of one scene's scores over speckle draws is about 1 %.
MORE_IMAGES_TOLERANCE = 0.02

#: The issue's targets: reductions (%) against back-projection with the kriged priors per
#: condition, the registration's (metres, share), the time of a million cells (s).
TARGETS = {"plain": 25.0, "plain_stack": 35.0, "cover": 15.0, "cover_stack": 30.0, "cover_dual": 15.0,
           "registration_m": 5.0,
           "registrations_within": 0.9, "seconds_per_million": 60.0}

#: A registration this far (m) off must come with a flag.
UNFLAGGED_M = 20.0


@dataclass(frozen=True)
class Case:
    """One scene of the study: a DEM, a condition, a coarse factor and a prior kind."""

    dem: str
    condition: str
    factor: int
    prior_kind: str

    @property
    def name(self) -> str:
        return f"{self.dem}_{self.condition}_c{self.factor}_{self.prior_kind}"

    def seed(self, what: str) -> int:
        """A seed for ``what`` of this case (the CRC-32 of its name and ``what``)."""
        return zlib.crc32(f"{self.name}/{what}".encode())

    def shared_seed(self, what: str) -> int:
        """A seed shared by every condition and prior kind of this DEM and factor."""
        return zlib.crc32(f"{self.dem}_c{self.factor}/{what}".encode())


def cases(dems: Sequence[str], factors: Sequence[int], conditions: Sequence[str] = tuple(CONDITIONS)) -> list[Case]:
    """Every case of ``dems`` x ``conditions`` x ``factors``."""
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise InvalidInputError(f"unknown conditions {unknown}: use {', '.join(CONDITIONS)}")
    return [Case(dem, condition, int(factor), PRIOR_KIND) for dem in dems for condition in conditions
            for factor in factors]


def land_crop(dem: xr.DataArray, cells: int = CROP_CELLS, sea: np.ndarray | None = None) -> xr.DataArray:
    """The ``cells`` x ``cells`` window of ``dem`` (or all of a smaller side) with the most
    land (cells not in ``sea``), its heights opened as ellipsoidal (they are already)."""
    rows, cols = dem.shape
    height, width = min(cells, rows), min(cells, cols)
    land = np.ones(dem.shape) if sea is None else (~np.asarray(sea, dtype=bool)).astype(np.float64)
    summed = np.pad(land.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = (summed[height:, width:] - summed[:-height, width:] - summed[height:, :-width]
              + summed[:-height, :-width])
    # Ties (all land): the centre.
    centre = np.hypot(*np.meshgrid(np.arange(counts.shape[0]) - (counts.shape[0] - 1) / 2,
                                   np.arange(counts.shape[1]) - (counts.shape[1] - 1) / 2, indexing="ij"))
    best = np.unravel_index(int(np.argmax(counts - 1e-6 * centre)), counts.shape)
    crop = dem.isel(y=slice(best[0], best[0] + height), x=slice(best[1], best[1] + width))
    out = open_dem(crop, vertical_datum="ellipsoid")
    out.attrs["dem_name"] = dem.attrs.get("dem_name", "dem")
    return out


@dataclass
class CaseData:
    """A case simulated: its scene (every method but the inversion), what the inversion
    reads, the truth's sea, and what was drawn."""

    scene: xr.Dataset
    groups: list
    registered: xr.DataArray
    drawn_shift: tuple[float, float]
    seconds: float


def study_case(case: Case, truth: xr.DataArray, sea: np.ndarray | None = None) -> CaseData:
    """Simulate ``case`` on ``truth`` (the cropped fine DEM; ``sea`` its cells left out of
    the scores)."""
    started = time.perf_counter()
    condition = CONDITIONS[case.condition]
    if condition["coarse"] == "ideal":
        coarse = block_mean(truth, case.factor)
        drawn = (0.0, 0.0)
        stated = 0.0
    else:
        errors = draw_errors(case.factor, condition["coarse"], case.shared_seed("coarse"))
        coarse = coarse_product(truth, errors, seed=case.shared_seed("coarse product"))
        drawn = (errors.shift_east_m, errors.shift_north_m)
        stated = errors.stated_error_m(coarse)
    kind = case.prior_kind
    priors = sample_priors(truth, PriorSpec(fraction=1e-3, kind=kind, errors=draw_prior_errors(
        kind, case.shared_seed("prior errors"))), seed=case.shared_seed("priors"))
    geometry = scene_geometry(truth, "ascending")
    other = scene_geometry(truth, "descending") if condition["passes"] == 2 else None
    if condition["ground"] == "plain":
        ground_options: dict[str, Any] = {"law": "empirical", "land_cover_db": 0.0}
    else:
        ground_options = {"ground": draw_ground(truth, COVER_FAMILY, case.shared_seed("ground"),
                                                dark_share=DARK_SHARE)}
    dates = condition["dates"]
    conditions = (draw_date_conditions(dates, case.seed("dates"), moisture_db=STACK_MOISTURE_DB,
                                       snow_dates=condition["snow_dates"]) if dates > 1 else None)
    dy, dx = cell_size_m(truth)
    # The first date's speckle is the one-image condition's: a stack adds images to it.
    observation = ObservationSpec(looks=iw_grdh_looks(dy * dx), dates=dates, date_conditions=conditions,
                                  cross_polarised=bool(condition.get("cross_polarised", False)), **ground_options)
    observations, geometries = simulate_observations(truth, geometry, other, observation,
                                                     seed=case.shared_seed("speckle") % 2**31)
    # As a refinement by the inversion makes its scene: the coarse DEM registered to the
    # images, then again on the inversion's surface (the settings' defaults).
    scene = observed_scene(coarse, observations, geometries, priors, grid=truth, name=case.name,
                           coarse_error_m=stated, products=SceneProducts(inversion=True),
                           execution=Execution(progress=False))
    height = truth.values.astype(np.float32)
    if sea is not None:
        height = np.where(sea, np.float32(np.nan), height)
    scene["height"] = (("y", "x"), height)
    grid = scene["coarse_height"].rio.write_crs(truth.rio.crs)
    groups = composite_images([radar_image(grid, observation, geometry, name=f"{case.name} image {index}")
                               for index, (observation, geometry) in enumerate(zip(observations, geometries,
                                                                                    strict=True))])
    registration = ImageRegistration.from_attrs(scene.attrs)
    east, north = registration.applied_shift() if registration is not None else (0.0, 0.0)
    registered = shifted(coarse, grid, east, north) if (east or north) else coarse
    return CaseData(scene, groups, registered, drawn, time.perf_counter() - started)


def score_methods(data: CaseData, maps: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Every map of ``maps`` scored on the case's cells (NaN cells of a map take the
    Lanczos resampling, as :func:`sarheight.refinement.refine_dem` keeps the coarse DEM
    where a method has no value)."""
    scene = data.scene
    mask = scoring_mask(scene)
    classes = refinement_classes(scene)
    fallback = scene["coarse_lanczos"].values
    return {name: score_map(np.where(np.isfinite(values), values, fallback), scene, mask, classes)
            for name, values in maps.items()}


def inversion_map(data: CaseData, settings: InversionSettings) -> tuple[np.ndarray, dict[str, Any], float]:
    """The inversion of a case with ``settings``: heights, its attributes and its time (s)."""
    scene = data.scene
    started = time.perf_counter()
    result = invert_dem(inversion_reference(scene, settings.reference).rio.write_crs(scene.rio.crs), data.registered,
                        data.groups,
                        prior_height=scene["prior_height"].values, prior_mask=scene["prior_mask"].values,
                        coarse_cell_m=float(scene.attrs["coarse_cell_m"]),
                        coarse_error_m=scene.attrs.get("coarse_stated_error_m"),
                        registration_error_m=scene.attrs.get("registration_error_m"),
                        correction=scene_correction(scene),
                        settings=settings)
    return result["height"].values, dict(result.attrs), time.perf_counter() - started


def _relative(scores: dict[str, dict[str, float]], method: str) -> float:
    return scores[method]["overall"] / scores[REFERENCE_METHOD]["overall"]


def _silent(line: str) -> None:
    """No progress line."""


def search_settings(validation: Sequence[CaseData], *, say: Callable[[str], None] = logger.info
                    ) -> tuple[InversionSettings, list[dict[str, Any]]]:
    """The settings of :data:`SEARCH` with the lowest mean RMSE relative to
    back-projection with the kriged priors over the validation cases (a coordinate
    search), and every evaluation."""
    references = [score_methods(data, {REFERENCE_METHOD: data.scene["coarse_refined"].values})[REFERENCE_METHOD]
                  ["overall"] for data in validation]
    evaluations: list[dict[str, Any]] = []
    cache: dict[tuple, float] = {}

    def evaluate(settings: InversionSettings) -> float:
        key = tuple(sorted(asdict(settings).items()))
        if key not in cache:
            ratios = []
            for data, reference in zip(validation, references, strict=True):
                heights, _, _ = inversion_map(data, settings)
                ratios.append(score_methods(data, {"inversion": heights})["inversion"]["overall"] / reference)
            cache[key] = float(np.mean(ratios))
            evaluations.append({"settings": asdict(settings), "mean_relative_rmse": cache[key]})
            say(f"validation: {asdict(settings)} -> {cache[key]:.4f}")
        return cache[key]

    best = replace(InversionSettings(), **SEARCH_START)
    best_score = evaluate(best)
    for field, values in SEARCH.items():
        for value in values:
            candidate = replace(best, **{field: value})
            score = evaluate(candidate)
            if score < best_score - 1e-6:
                best, best_score = candidate, score
    return best, evaluations


#: The parts of a height error :func:`error_sources` tells apart.
ERROR_SOURCES = ("coarse_scale", "lost_along_range", "lost_across_range", "lost_oblique")


def error_sources(error: np.ndarray, scene: xr.Dataset) -> dict[str, float]:
    """Where a map's squared error lies (shares of it, Hann-windowed spectrum): at the
    wavenumbers the coarse DEM holds (below its Nyquist on both axes: its correlated
    error, bias and shift, and what the priors could not correct), and in the relief it
    lost, along the ground range (the wavevectors within 45 degrees of the look: what
    one pass's brightness reads), across it (within 45 degrees of the track: what it
    cannot read) and between."""
    values = np.where(np.isfinite(error), error, 0.0)
    values = values - values[np.isfinite(error)].mean() if np.isfinite(error).any() else values
    rows, cols = values.shape
    power = np.abs(np.fft.fft2(values * np.outer(np.hanning(rows), np.hanning(cols)))) ** 2
    north, east = grid_steps(scene["coarse_height"])
    fy = np.fft.fftfreq(rows, d=north)[:, None]
    fx = np.fft.fftfreq(cols, d=east)[None, :]
    cell = float(scene.attrs["coarse_cell_m"])
    held = (np.abs(fy) < 0.5 / cell) & (np.abs(fx) < 0.5 / cell)
    heading = math.radians(float(scene.attrs.get("heading_deg", scene.attrs.get("geometry_heading_deg", 0.0))))
    side = 1.0 if scene.attrs.get("look_side", "right") == "right" else -1.0
    look_east, look_north = math.sin(heading + side * math.pi / 2), math.cos(heading + side * math.pi / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        alignment = np.abs(look_east * fx + look_north * fy) / np.hypot(fx, fy)
    total = float(power.sum()) or 1.0
    parts = {"coarse_scale": held, "lost_along_range": ~held & (alignment >= math.cos(math.pi / 4)),
             "lost_across_range": ~held & (alignment <= math.sin(math.pi / 8)),
             "lost_oblique": ~held & (alignment < math.cos(math.pi / 4)) & (alignment > math.sin(math.pi / 8))}
    return {name: float(power[where].sum()) / total for name, where in parts.items()}


def case_record(case: Case, data: CaseData, settings: InversionSettings) -> dict[str, Any]:
    """A case's scores, registrations and inversion attributes (JSON-ready)."""
    maps = {name: values for name, values in baseline_maps(data.scene).items() if name in NON_LEARNED}
    heights, attrs, seconds = inversion_map(data, settings)
    maps["inversion"] = heights
    scene = data.scene
    registration = ImageRegistration.from_attrs(scene.attrs)
    east, north = registration.applied_shift() if registration is not None else (0.0, 0.0)
    priors_east = float(scene.attrs.get("coregistration_shift_east_m", 0.0))
    priors_north = float(scene.attrs.get("coregistration_shift_north_m", 0.0))
    relief = float(np.nanpercentile(scene["height"].values, 95) - np.nanpercentile(scene["height"].values, 5))
    truth = scene["height"].values.astype(np.float64)
    sources = {name: error_sources(maps[name] - truth, scene) for name in (REFERENCE_METHOD, "inversion")}
    return {
        "case": asdict(case), "name": case.name, "scores": score_methods(data, maps), "error_sources": sources,
        "relief_m": relief,
        "registration": {
            "drawn_east_m": data.drawn_shift[0], "drawn_north_m": data.drawn_shift[1],
            "image_east_m": registration.shift_east_m if registration else math.nan,
            "image_north_m": registration.shift_north_m if registration else math.nan,
            "image_error_east_m": registration.error_east_m if registration else math.nan,
            "image_error_north_m": registration.error_north_m if registration else math.nan,
            "image_applied": bool(registration.applied) if registration else False,
            "image_applied_east_m": east, "image_applied_north_m": north,
            "image_miss_m": math.hypot(east - data.drawn_shift[0], north - data.drawn_shift[1]),
            "image_estimate_miss_m": (math.hypot(registration.shift_east_m - data.drawn_shift[0],
                                                 registration.shift_north_m - data.drawn_shift[1])
                                      if registration else math.nan),
            # The priors' estimate: applied where the image's was not, a second opinion
            # of what the image's left where it was.
            "priors_east_m": priors_east, "priors_north_m": priors_north,
            "priors_applied": bool(int(scene.attrs.get("coregistration_applied", 1))),
            "priors_miss_m": (math.hypot(priors_east - data.drawn_shift[0], priors_north - data.drawn_shift[1])
                              if not (registration and registration.applied) else
                              math.hypot(east + priors_east - data.drawn_shift[0],
                                         north + priors_north - data.drawn_shift[1])),
            "flag": registration.flag if registration else "",
            "halves_apart_m": registration.halves_apart_m if registration else math.nan,
            "rounds": registration.rounds if registration else 0,
            # How far the registration may be off (a flagged one: more than it states).
            "error_m": registration.error_m if registration else math.nan,
        },
        "inversion": {key: (value if isinstance(value, (int, float, str)) else str(value))
                      for key, value in attrs.items()},
        "seconds": {"scene": data.seconds, "inversion": seconds},
        "images": int(scene.attrs.get("images", 1)), "image_groups": int(scene.attrs.get("image_groups", 1)),
    }


def fair_bars(validation_records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per condition, the method without learning (the inversion aside) of the lowest mean
    RMSE relative to back-projection with the kriged priors over the validation cases,
    with every method's mean."""
    bars: dict[str, dict[str, Any]] = {}
    for condition in CONDITIONS:
        records = [record for record in validation_records if record["case"]["condition"] == condition]
        if not records:
            continue
        means = {method: float(np.mean([_relative(record["scores"], method) for record in records]))
                 for method in (*NON_LEARNED, "inversion")}
        chosen = min(NON_LEARNED, key=lambda method: means[method])
        bars[condition] = {"method": chosen, "validation_mean_relative_rmse": means, "validation_cases": len(records)}
    return bars


def _per_dem(records: Sequence[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> dict[str, float]:
    """``value`` of each record, averaged per DEM."""
    out: dict[str, list[float]] = {}
    for record in records:
        out.setdefault(record["case"]["dem"], []).append(value(record))
    return {dem: float(np.mean(values)) for dem, values in sorted(out.items())}


def summarise(records: Sequence[dict[str, Any]], bars: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per condition and factor: the inversion's reduction (%) against the fair bar, the
    oracle (the best method without learning per DEM, with the truth) and back-projection
    with the kriged priors, per held-out DEM, their mean and least; paired tests over the
    DEMs of the inversion's RMSE against the fair bar's and back-projection's; the worst
    terrain class against back-projection with the kriged priors; the registrations'
    misses."""
    rows = []
    for condition, factor in itertools.product(CONDITIONS, sorted({r["case"]["factor"] for r in records})):
        chosen = [r for r in records if r["case"]["condition"] == condition and r["case"]["factor"] == factor]
        if not chosen or condition not in bars:
            continue
        bar = bars[condition]["method"]

        def oracle(record: dict[str, Any]) -> float:
            return min(record["scores"][method]["overall"] for method in NON_LEARNED)

        dems = {key: _per_dem(chosen, figure) for key, figure in (
            ("fair", lambda r, bar=bar: reduction(r["scores"]["inversion"]["overall"], r["scores"][bar]["overall"])),
            ("oracle", lambda r: reduction(r["scores"]["inversion"]["overall"], oracle(r))),
            ("reference", lambda r: reduction(r["scores"]["inversion"]["overall"],
                                              r["scores"][REFERENCE_METHOD]["overall"])))}
        rmse = {name: _per_dem(chosen, lambda r, name=name: r["scores"][name]["overall"])
                for name in ("inversion", bar, REFERENCE_METHOD)}
        names = list(rmse["inversion"])
        worst_class: list[tuple[float, str, str]] = []
        for record in chosen:
            scores = record["scores"]
            for name in REFINEMENT_CLASSES:
                ours, theirs = scores["inversion"][name], scores[REFERENCE_METHOD][name]
                if math.isfinite(ours) and math.isfinite(theirs) and scores["inversion"][f"count_{name}"] >= 50:
                    worst_class.append((100.0 * (ours / theirs - 1.0), record["case"]["dem"], name))
        worst = max(worst_class) if worst_class else (math.nan, "", "")
        misses = [r["registration"]["image_miss_m"] for r in chosen]
        rows.append({
            "condition": condition, "factor": factor, "fair_bar": bar,
            "dems": {dem: {key: dems[key][dem] for key in dems} for dem in names},
            **{f"{key}_mean": float(np.mean(list(dems[key].values()))) for key in dems},
            **{f"{key}_least": float(np.min(list(dems[key].values()))) for key in dems},
            "paired_fair": paired_test([rmse["inversion"][dem] for dem in names], [rmse[bar][dem] for dem in names]),
            "paired_reference": paired_test([rmse["inversion"][dem] for dem in names],
                                            [rmse[REFERENCE_METHOD][dem] for dem in names]),
            "worst_class_above_reference_pct": worst[0], "worst_class": f"{worst[1]} {worst[2]}".strip(),
            "registration_miss_max_m": float(np.max(misses)), "registration_miss_median_m": float(np.median(misses)),
            "cases": len(chosen),
        })
    return rows


def more_images(records: Sequence[dict[str, Any]], pairs: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per held-out DEM, factor and method, its RMSE with one image and with the stack that
    adds images to it (``pairs``, default :data:`MORE_IMAGES`: the same scene otherwise;
    :data:`SECOND_POLARISATION`: the same image with its cross-polarised band), the change
    (%), and whether it is worse beyond :data:`MORE_IMAGES_TOLERANCE` (and 5 cm)."""
    pairs = MORE_IMAGES if pairs is None else pairs
    found = {(r["case"]["dem"], r["case"]["condition"], r["case"]["factor"]): r for r in records}
    rows = []
    for (dem, condition, factor), record in sorted(found.items()):
        if condition not in pairs or (dem, pairs[condition], factor) not in found:
            continue
        more = found[(dem, pairs[condition], factor)]
        for method in (*NON_LEARNED, "inversion"):
            one, many = record["scores"][method]["overall"], more["scores"][method]["overall"]
            change = 100.0 * (many / one - 1.0)
            rows.append({"dem": dem, "condition": condition, "more": pairs[condition], "factor": factor,
                         "method": method, "one_m": one, "more_m": many, "change_pct": change,
                         "worse": bool(change > 100.0 * MORE_IMAGES_TOLERANCE and many - one > 0.05)})
    return rows


def registration_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The registrations applied on the held-out scenes with relief (5-95 % above 50 m):
    how far each lies from the drawn shift (unapplied: the shift left), the share within
    :data:`TARGETS`' metres, and those beyond :data:`UNFLAGGED_M` without a flag."""
    related = [r for r in records if r["relief_m"] > 50.0]
    misses = np.array([r["registration"]["image_miss_m"] for r in related])
    flagged = [bool(r["registration"]["flag"]) for r in related]
    silent = [r["name"] for r, miss, flag in zip(related, misses, flagged, strict=True)
              if miss > UNFLAGGED_M and not flag]
    return {"scenes": len(related), "within_m": TARGETS["registration_m"],
            "within": int(np.sum(misses <= TARGETS["registration_m"])),
            "share_within": float(np.mean(misses <= TARGETS["registration_m"])) if misses.size else math.nan,
            "median_miss_m": float(np.median(misses)) if misses.size else math.nan,
            "max_miss_m": float(np.max(misses)) if misses.size else math.nan,
            "flagged": int(np.sum(flagged)), "beyond_unflagged": silent,
            "applied": int(sum(r["registration"]["image_applied"] for r in related)),
            "registered_again": int(sum(r["registration"]["rounds"] == 2 for r in related)),
            "miss_over_error": {
                kind: _median_ratio([r for r, flag in zip(related, flagged, strict=True)
                                     if flag == (kind == "flagged") and r["registration"]["image_applied"]])
                for kind in ("flagged", "not_flagged")}}


def _median_ratio(records: Sequence[dict[str, Any]]) -> float:
    """The median of each applied registration's miss over the error it is said to have
    (:attr:`ImageRegistration.error_m`; about 1.2 where that error is a calibrated
    standard error per component: the miss is the length of two); NaN without records or
    errors."""
    ratios = [r["registration"]["image_miss_m"] / r["registration"]["error_m"] for r in records
              if math.isfinite(r["registration"].get("error_m", math.nan)) and r["registration"]["error_m"] > 0]
    return float(np.median(ratios)) if ratios else math.nan


def target_lines(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each measured (from the study's JSON)."""
    lines = []
    for row in results["summary"]:
        condition, factor = row["condition"], row["factor"]
        target = TARGETS[condition]
        figure, least = row["reference_mean"], row["reference_least"]
        below = [dem for dem, figures in row["dems"].items() if figures["reference"] < target]
        verdict = ("met on every DEM" if not below else
                   f"{'met in the mean' if figure >= target else f'missed by {target - figure:.1f} points'}, "
                   f"below it on {len(below)} of {len(row['dems'])} DEMs")
        lines.append(f"{condition}, {factor}x: inversion {figure:+.1f} % against back-projection + kriged priors "
                     f"(target >= {target:g} % on every DEM): {verdict}; least DEM {least:+.1f} %; against the fair "
                     f"bar ({METHOD_LABELS[row['fair_bar']]}) {row['fair_mean']:+.1f} % (paired sign-flip p "
                     f"{row['paired_fair']['sign_flip_p']:.4f})")
    reg = results["registration"]
    lines.append(f"registration: within {reg['within_m']:g} m of the drawn shift on {reg['within']} of {reg['scenes']} "
                 f"held-out scenes with relief ({100 * reg['share_within']:.0f} %; target >= "
                 f"{100 * TARGETS['registrations_within']:.0f} %): "
                 f"{'met' if reg['share_within'] >= TARGETS['registrations_within'] else 'missed'}; median miss "
                 f"{reg['median_miss_m']:.1f} m, largest {reg['max_miss_m']:.1f} m; "
                 + (f"{len(reg['beyond_unflagged'])} off by more than {UNFLAGGED_M:g} m without a warning "
                    f"({', '.join(reg['beyond_unflagged'])}): missed" if reg["beyond_unflagged"] else
                    f"none off by more than {UNFLAGGED_M:g} m without a warning: met"))
    worse = [row for row in results["more_images"] if row["worse"]]
    lines.append(f"more images never worse: {len(worse)} of {len(results['more_images'])} DEM x factor x method pairs "
                 f"worse with the stack beyond {100 * MORE_IMAGES_TOLERANCE:g} % "
                 + ("(" + "; ".join(f"{row['method']} on {row['dem']} {row['factor']}x {row['condition']} "
                                   f"{row['change_pct']:+.1f} %" for row in worse) + "): missed" if worse else ": met"))
    return lines


def error_budget(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the error lies, per condition and factor: for back-projection + kriged priors
    and the inversion, the RMS (m) of each part of :data:`ERROR_SOURCES` over the held-out
    cases (each case's squared RMSE times the part's share of its spectrum)."""
    budget = []
    for row in results["summary"]:
        records = [r for r in results["held_out"] if r["case"]["condition"] == row["condition"]
                   and r["case"]["factor"] == row["factor"]]
        parts = {method: {source: rms([r["scores"][method]["overall"] * math.sqrt(r["error_sources"][method][source])
                                       for r in records])
                          for source in ERROR_SOURCES}
                 for method in (REFERENCE_METHOD, "inversion")}
        budget.append({"condition": row["condition"], "factor": row["factor"], "rms_m": parts})
    return budget


def results_section(results: dict[str, Any], speed: dict[str, Any] | None = None) -> str:
    """The study's figures as Markdown (the generated part of the documents): the DEMs,
    the settings and fair bars chosen on validation, the reductions per condition and
    factor, more images, the registration, and the targets, measured; with ``speed``
    (``benchmarks/inversion_speed.py``'s JSON), the command's time on a million cells."""
    bars = ", ".join(f"{condition}: {METHOD_LABELS[bar['method']]} (validation mean "
                     f"{bar['validation_mean_relative_rmse'][bar['method']]:.3f} of back-projection + kriged priors; "
                     f"inversion {bar['validation_mean_relative_rmse']['inversion']:.3f})"
                     for condition, bar in results["fair_bars"].items())
    chosen = ", ".join(f"{key} {value:g}" if isinstance(value, (int, float)) else f"{key} {value}"
                       for key, value in results["settings"].items()
                       if key in SEARCH)
    seconds = [record["seconds"]["inversion"] for record in results["held_out"]]
    lines = [f"Validation DEMs (settings and fair bars chosen there): {', '.join(results['validation_dems'])}; held "
             f"out: {', '.join(results['held_out_dems'])}; crops of at most {results['crop_cells']} cells a side, "
             f"coarse factors {', '.join(f'{f}x' for f in results['factors'])}; {len(results['held_out'])} held-out "
             f"and "
             f"{len(results['validation'])} validation scenes. Settings chosen on validation ({len(results['search'])} "
             f"evaluated): {chosen}. Fair bars: {bars}. An inversion took {min(seconds):.1f}-{max(seconds):.1f} s on "
             "these crops.", "",
             "Reduction of the RMSE (%) by the inversion (mean over the held-out DEMs, in brackets the least DEM; "
             "positive: below it). The oracle is the best method without learning per DEM, chosen with the truth; "
             "p: the exact sign-flip test over the DEMs of the inversion's RMSE against the fair bar's.", "",
             "| condition | factor | fair bar | vs fair bar | p | vs oracle | vs back-projection + kriged priors "
             "| worst class vs it | registration miss (median, max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in results["summary"]:
        lines.append(f"| {row['condition']} | {row['factor']}x | {METHOD_LABELS[row['fair_bar']]} | "
                     f"{row['fair_mean']:+.1f} ({row['fair_least']:+.1f}) | {row['paired_fair']['sign_flip_p']:.4f} | "
                     f"{row['oracle_mean']:+.1f} ({row['oracle_least']:+.1f}) | {row['reference_mean']:+.1f} "
                     f"({row['reference_least']:+.1f}) | {row['worst_class_above_reference_pct']:+.1f} "
                     f"({row['worst_class']}) | {row['registration_miss_median_m']:.1f}, "
                     f"{row['registration_miss_max_m']:.1f} m |")
    lines += ["", "More images: each method's RMSE with both passes x 10 dates against one image of the same scene "
              "(change %, mean over the held-out DEMs, in brackets the largest; positive: worse with more "
              "images).", "",
              "| condition | factor | " + " | ".join(METHOD_LABELS[m] for m in (*NON_LEARNED, "inversion")) + " |",
              "|---|---|" + "---|" * (len(NON_LEARNED) + 1)]
    for condition, factor in sorted({(row["condition"], row["factor"]) for row in results["more_images"]}):
        cells = []
        for method in (*NON_LEARNED, "inversion"):
            changes = [row["change_pct"] for row in results["more_images"] if row["condition"] == condition
                       and row["factor"] == factor and row["method"] == method]
            cells.append(f"{np.mean(changes):+.1f} ({np.max(changes):+.1f})")
        lines.append(f"| {condition} -> {MORE_IMAGES[condition]} | {factor}x | " + " | ".join(cells) + " |")
    second = results.get("second_polarisation", [])
    if second:
        lines += ["", "The second polarisation: the inversion's RMSE with one image's cross-polarised band beside it "
                  "(VH/VV: the land cover's classes told apart by it) against the same image alone (change %, mean "
                  "over the held-out DEMs, in brackets the least and the largest; negative: better with it; the "
                  "methods that read the image's brightness alone change only through the registration, which the "
                  "inversion's surface moves).", "",
                  "| factor | inversion | back-projection + kriged priors | sign-flip p (inversion) |",
                  "|---|---|---|---|"]
        for factor in sorted({row["factor"] for row in second}):
            cells = []
            for method in ("inversion", REFERENCE_METHOD):
                changes = [row["change_pct"] for row in second if row["factor"] == factor and row["method"] == method]
                cells.append(f"{np.mean(changes):+.1f} ({np.min(changes):+.1f}, {np.max(changes):+.1f})")
            chosen = [row for row in second if row["factor"] == factor and row["method"] == "inversion"]
            test = paired_test([row["more_m"] for row in chosen], [row["one_m"] for row in chosen])
            lines.append(f"| {factor}x | " + " | ".join(cells) + f" | {test['sign_flip_p']:.4f} |")
    lines += ["", "Where the error lies: the RMS (m) of each part of the error's spectrum over the held-out cases, "
              "back-projection + kriged priors -> the inversion. Coarse scale: the wavenumbers the coarse grid holds "
              "(the product's correlated error and shift, and what its block means and the resampling attenuate "
              "below its Nyquist); lost relief: beyond them, along the ground range (what one pass's brightness "
              "reads), across it (what it cannot read) and between.", "",
              "| condition | factor | " + " | ".join(source.replace("_", " ") for source in ERROR_SOURCES) + " |",
              "|---|---|" + "---|" * len(ERROR_SOURCES)]
    for row in error_budget(results):
        before, after = row["rms_m"][REFERENCE_METHOD], row["rms_m"]["inversion"]
        lines.append(f"| {row['condition']} | {row['factor']}x | "
                     + " | ".join(f"{before[source]:.2f} -> {after[source]:.2f}" for source in ERROR_SOURCES) + " |")
    reg = results["registration"]
    lines += ["", f"Registration (held-out scenes with relief): the image's estimate applied on {reg['applied']} of "
              f"{reg['scenes']}, measured again on the inversion's surface and moved on {reg['registered_again']}, "
              f"flagged on {reg['flagged']}; an applied one's miss over the error it is said to have (median; about "
              f"1.2 where that error is calibrated): "
              f"{reg.get('miss_over_error', {}).get('flagged', math.nan):.2f} flagged, "
              f"{reg.get('miss_over_error', {}).get('not_flagged', math.nan):.2f} not.", "",
              "The targets, measured:", ""] + [f"- {line}" for line in target_lines(results)]
    if speed is not None:
        best = speed["best_seconds"]["inversion"]
        runs = len(speed["seconds"]["inversion"])
        target = speed["target_seconds"]
        verdict = "met" if best <= target else f"missed by {best / target:.1f}x"
        plural = "s" if runs > 1 else ""
        warm = (f"warm run{plural}" if speed.get("warm_up_run", True)
                else f"run{plural} with the kernels' cache warm from earlier runs")
        lines.append(f"- `sarheight terrain refine --method inversion` on {speed['grid_cells']:,} cells "
                     f"({speed['dem']}, "
                     f"coarse factor {speed['coarse_factor']}, {speed.get('images', 'one geocoded image')}): "
                     f"{best:.1f} s, best of {runs} {warm} on {speed['machine']['cpus']} cores "
                     f"(target <= {speed['target_seconds']:g} s): "
                     f"{verdict}; clinometry {speed['best_seconds']['clinometry']:.1f} s, back-projection "
                     f"{speed['best_seconds']['back-projection']:.1f} s on the same grid; "
                     f"RMSE against the fine DEM: "
                     + ", ".join(f"{method} {value:.2f} m"
                                 for method, value in speed.get("rmse_m_against_the_fine_dem", {}).items()))
    else:
        lines.append("- `sarheight terrain refine --method inversion` on a million cells with these settings: not "
                     "measured (`python benchmarks/inversion_speed.py` writes it)")
    note = results["note"]
    lines += ["", f"{note[0].upper()}{note[1:]}."]
    return "\n".join(lines)


def write_table(results: dict[str, Any], path: str | Path, speed: dict[str, Any] | None = None) -> Path:
    """The study's table (Markdown) from its results (and the speed's, where given)."""
    path = Path(path)
    path.write_text("# Terrain refinement by inverting the simulator\n\n" + results_section(results, speed) + "\n")
    return path


def plot_study(results: dict[str, Any], path: str | Path) -> Path:
    """Bars: each method's RMSE relative to back-projection + kriged priors per condition
    and factor (mean over held-out cases); the registration's miss against the relief."""
    import matplotlib.pyplot as plt

    rows = [(r["condition"], r["factor"]) for r in results["summary"]]
    methods = (*NON_LEARNED, "inversion")
    fig, (bars_axis, reg_axis) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(methods)
    for index, method in enumerate(methods):
        values = []
        for condition, factor in rows:
            records = [r for r in results["held_out"] if r["case"]["condition"] == condition
                       and r["case"]["factor"] == factor]
            values.append(float(np.mean([_relative(r["scores"], method) for r in records])))
        bars_axis.bar(np.arange(len(rows)) + index * width, values, width, label=METHOD_LABELS[method],
                      color="black" if method == "inversion" else None)
    bars_axis.axhline(1.0, color="grey", lw=0.8)
    bars_axis.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, [f"{c.replace('_', ' ')}\n{f}x" for c, f in rows])
    bars_axis.set_ylabel("RMSE / back-projection + kriged priors")
    bars_axis.set_title("held-out DEMs: RMSE relative to back-projection + kriged priors (lower is better)",
                        fontsize=9)
    bars_axis.legend(fontsize=7, ncol=2)
    related = [r for r in results["held_out"] if r["relief_m"] > 50.0]
    flagged = np.array([bool(r["registration"]["flag"]) for r in related], dtype=bool)
    misses = np.array([r["registration"]["image_miss_m"] for r in related])
    reliefs = np.array([r["relief_m"] for r in related])
    reg_axis.scatter(reliefs[~flagged], misses[~flagged], s=12, label="not flagged")
    reg_axis.scatter(reliefs[flagged], misses[flagged], s=18, marker="x", color="red", label="flagged")
    reg_axis.axhline(TARGETS["registration_m"], color="red", lw=0.8, ls="--",
                     label=f"{TARGETS['registration_m']:g} m")
    reg_axis.set_xlabel("relief (m, 5-95 %)")
    reg_axis.set_ylabel("|applied - drawn shift| (m)")
    reg_axis.set_title("registration on the held-out scenes", fontsize=9)
    reg_axis.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def run_inversion_study(
    dems: dict[str, tuple[xr.DataArray, np.ndarray | None]],
    validation_dems: Sequence[str],
    held_out_dems: Sequence[str],
    out: str | Path,
    *,
    factors: Sequence[int] = (3, 5),
    conditions: Sequence[str] = tuple(CONDITIONS),
    crop_cells: int = CROP_CELLS,
    search: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the study and write ``inversion.json``, ``inversion.md`` and ``inversion.png``
    in ``out`` (cases' records in ``out/cases``: a rerun resumes from them).

    Parameters
    ----------
    dems : by name, the fine DEM (ellipsoidal heights) and its sea (bool cells, or None).
    validation_dems, held_out_dems : names of ``dems``: the settings and the fair bars are
        chosen on the first, the figures measured on the second.
    factors, conditions : the coarse factors and the conditions of :data:`CONDITIONS`.
    crop_cells : cells a side of each DEM's crop (:func:`land_crop`).
    search : search the settings on the validation cases (else the defaults).
    progress : print a line per step (a case simulated, a validation setting, a case scored).
    """
    say = print if progress else _silent
    overlap = set(validation_dems) & set(held_out_dems)
    if overlap:
        raise InvalidInputError(f"{sorted(overlap)} are both validation and held-out DEMs: keep them apart")
    out = Path(out)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    crops = {name: land_crop(dems[name][0], crop_cells, dems[name][1]) for name in (*validation_dems, *held_out_dems)}
    seas = {}
    for name in crops:
        sea = dems[name][1]
        if sea is None:
            seas[name] = None
        else:
            full = dems[name][0]
            rows = np.flatnonzero(np.isin(full["y"].values, crops[name]["y"].values))
            cols = np.flatnonzero(np.isin(full["x"].values, crops[name]["x"].values))
            seas[name] = np.asarray(sea)[np.ix_(rows, cols)]

    def simulate(case: Case) -> CaseData:
        data = study_case(case, crops[case.dem], seas[case.dem])
        say(f"simulated {case.name} ({data.seconds:.0f} s, {data.scene.attrs.get('images', 1)} images)")
        return data

    validation_cases = cases(validation_dems, factors, conditions)
    settings = InversionSettings()
    evaluations: list[dict[str, Any]] = []
    settings_path = out / "settings.json"
    if settings_path.exists():
        saved = json.loads(settings_path.read_text())
        settings, evaluations = InversionSettings(**saved["settings"]), saved["evaluations"]
        validation_data = None
    else:
        validation_data = [simulate(case) for case in validation_cases]
        if search:
            settings, evaluations = search_settings(validation_data, say=say)
        write_json({"settings": asdict(settings), "evaluations": evaluations}, settings_path)
    validation_records = []
    for index, case in enumerate(validation_cases):
        record_path = out / "cases" / f"validation_{case.name}.json"
        if not record_path.exists():
            # A case missing after the search (a condition added): that case alone simulated.
            data = simulate(case) if validation_data is None else validation_data[index]
            write_json(case_record(case, data, settings), record_path)
            del data
        validation_records.append(json.loads(record_path.read_text()))
    del validation_data
    bars = fair_bars(validation_records)
    held_out_records = []
    for case in cases(held_out_dems, factors, conditions):
        record_path = out / "cases" / f"held_out_{case.name}.json"
        if not record_path.exists():
            data = simulate(case)
            write_json(case_record(case, data, settings), record_path)
            del data
        record = json.loads(record_path.read_text())
        held_out_records.append(record)
        say(f"{case.name}: inversion {record['scores']['inversion']['overall']:.2f} m, back-projection + kriged "
                 f"priors {record['scores'][REFERENCE_METHOD]['overall']:.2f} m")
    results = {
        "validation_dems": list(validation_dems), "held_out_dems": list(held_out_dems), "factors": list(factors),
        "conditions": {name: CONDITIONS[name] for name in conditions}, "crop_cells": crop_cells,
        "settings": asdict(settings), "search": evaluations, "fair_bars": bars,
        "validation": validation_records, "held_out": held_out_records,
        "summary": summarise(held_out_records, bars),
        "more_images": more_images(held_out_records),
        "second_polarisation": more_images(held_out_records, SECOND_POLARISATION),
        "registration": registration_summary(held_out_records),
        "note": "simulated SAR: the figures are an upper bound of what real data give",
    }
    results["targets"] = target_lines(results)
    write_json(results, out / "inversion.json")
    write_table(results, out / "inversion.md")
    plot_study(results, out / "inversion.png")
    return results
