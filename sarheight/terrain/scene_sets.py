"""Sets of simulated terrain scenes (:func:`sarheight.terrain.simulated.simulate_scene`),
written as scene files over the axes of :class:`SceneAxes`: passes, look sides, headings,
coarse factors and products, priors, looks, laws, land covers and grounds, dates,
terrain transforms and seeds, every combination or a sample of them, here or on a
cluster; an interrupted set resumes.

Augment by simulating more geometries (passes, headings, incidence ranges, look sides),
prior draws and speckle seeds, never by flipping or rotating the images: a flip changes
the look direction, and with it which slopes are in layover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ..coarse_dem import DEGRADATION_FAMILIES, draw_errors
from ..dem import checked_dem, open_dem
from ..errors import InvalidInputError, PlausibilityWarning, deferred_warnings, user_stacklevel
from ..geometry import LookSide, RadarGeometry
from ..ground import GROUND_FAMILIES, SIGMA0_LAWS, draw_date_conditions, draw_ground
from ..priors import PriorSpec
from .augment import TerrainTransform, crop_window, orient_cells, terrain_on_a_projected_grid, transform_terrain
from .files import write_scene
from .geometry import PASS_HEADINGS, PassDirection, pass_direction, scene_geometry
from .observed import source_name
from .scene_options import ObservationSpec, SceneProducts, finite_number
from .simulated import DEFAULT_PRIORS, DEFAULT_PRODUCTS, simulate_scene

__all__ = ["SceneAxes", "SceneDraw", "is_complete_scene", "scene_file_name", "simulate_scenes", "simulated_scene",
           "synthetic_variants", "transformed_terrain", "write_simulated_scene"]


def _values(values: Any) -> tuple[Any, ...] | None:
    """Any iterable but a string as a tuple (a range, an array, a list); None otherwise."""
    return tuple(values) if isinstance(values, Iterable) and not isinstance(values, (str, bytes)) else None


def _distinct(label: str, values: Any, check: Any, wanted: str) -> tuple[Any, ...]:
    """``values`` as a tuple, refused where empty, repeated or not as ``check`` wants."""
    found = _values(values)
    if not found or not all(check(value) for value in found):
        raise InvalidInputError(f"{label} must be a non-empty tuple of {wanted}, got {values!r}")
    if len(set(found)) != len(found):
        raise InvalidInputError(f"{label} repeats a value ({values!r}): each scene would be made twice")
    return found


@dataclasses.dataclass(frozen=True)
class SceneAxes:
    """The axes of a scene set (:func:`simulate_scenes`): one scene per combination of
    their values (or a sample of the combinations), each axis a tuple of distinct values;
    checked once, when made.

    Attributes
    ----------
    passes, look_sides, heading_offsets_deg, incidence_deg : the synthetic geometries
        (:func:`sarheight.terrain.geometry.scene_geometry`, centred on each DEM): pass
        directions, look sides, heading offsets (degrees) and the incidence at near and far
        range (degrees; one pair for every geometry).
    opposite_passes : whether a scene also observes the opposite pass (True) or its own
        pass alone (False: ``_onepass`` in its name); both give scenes of one image and of
        both passes for a network that takes either.
    coarse_factors : how much coarser each scene's coarse DEM is.
    coarse_families : the families of :data:`sarheight.coarse_dem.DEGRADATION_FAMILIES`
        the coarse DEM's errors are drawn from ("ideal": the block mean).
    priors : the priors (:class:`sarheight.priors.PriorSpec`, one or several, each named in
        the files by its ``label``: its instrument kind or pattern, so no two may share
        one); a kind without errors has them drawn per scene.
    seeds : a seed draws the land cover, the speckle and the priors.
    looks, laws, land_cover_db : the observations: equivalent looks (4.4 a date, 44 a
        composite of ten; None: no speckle), the ground's sigma0 law and the land cover's
        contrast (dB), as :class:`sarheight.terrain.scene_options.ObservationSpec` takes them.
    ground_families : families of :data:`sarheight.ground.GROUND_FAMILIES` the ground
        (land cover following the terrain, a law per class) is drawn from, instead of
        ``laws`` and ``land_cover_db``; None: those.
    dates : the numbers of dates per pass (1: one observation a pass); each date its own
        speckle and its ground's level moved by a moisture drawn with ``moisture_db``
        standard deviation (dB), ``snow_share`` of the dates under wet snow
        (:func:`sarheight.ground.draw_date_conditions`, from the scene's own seed).
    terrain_transforms : new terrain from each DEM (:class:`sarheight.terrain.augment.TerrainTransform`:
        turned, mirrored, scaled on the ground; a geographic DEM on its UTM grid first),
        each with its own geometries simulated over it; named in the files after the DEM
        (``<dem>-r1m``), the scenes' ``dem_name`` the DEM's own (one area, one split).
        Default: the DEM as it is.
    moisture_db, snow_share, nesz_db : the same for every scene: the dates' moisture (dB),
        the share of dates under wet snow, every image's noise floor (dB; None: none).
    cross_polarised : every image also simulated in the cross polarisation (VH beside VV,
        as a dual-polarisation product gives it: ``ObservationSpec.cross_polarised``), so
        that the inversion of each scene reads the land cover's VH/VV ratio.
    """

    passes: tuple[PassDirection, ...] = ("ascending", "descending")
    look_sides: tuple[LookSide, ...] = ("right",)
    heading_offsets_deg: tuple[float, ...] = (0.0,)
    incidence_deg: tuple[float, float] = (30.0, 46.0)
    opposite_passes: tuple[bool, ...] = (True,)
    coarse_factors: tuple[int, ...] = (3,)
    coarse_families: tuple[str, ...] = ("ideal",)
    priors: PriorSpec | Sequence[PriorSpec] = (DEFAULT_PRIORS,)
    seeds: tuple[int, ...] = (0,)
    looks: tuple[float | None, ...] = (4.4,)
    laws: tuple[str, ...] = ("empirical",)
    land_cover_db: tuple[float, ...] = (3.0,)
    ground_families: tuple[str | None, ...] = (None,)
    dates: tuple[int, ...] = (1,)
    terrain_transforms: Sequence[TerrainTransform] = (TerrainTransform(),)
    moisture_db: float = 1.0
    snow_share: float = 0.2
    nesz_db: float | None = -22.0
    cross_polarised: bool = False

    def __post_init__(self) -> None:
        def whole(value: object, least: int) -> bool:
            return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= least

        checked = {
            "passes": _distinct("passes", self.passes, lambda v: v in PASS_HEADINGS, f"{tuple(PASS_HEADINGS)}"),
            "look_sides": _distinct("look_sides", self.look_sides, lambda v: v in ("right", "left"),
                                    "'right' or 'left'"),
            "heading_offsets_deg": _distinct("heading_offsets_deg", self.heading_offsets_deg, finite_number,
                                             "heading offsets (degrees)"),
            "opposite_passes": _distinct("opposite_passes", self.opposite_passes, lambda v: isinstance(v, bool),
                                         "True, False or both"),
            "coarse_factors": _distinct("coarse_factors", self.coarse_factors, lambda v: whole(v, 1),
                                        "whole factors of 1 or more (1: the truth's own grid)"),
            "coarse_families": _distinct("coarse_families", self.coarse_families,
                                         lambda v: v == "ideal" or v in DEGRADATION_FAMILIES,
                                         f"'ideal' or a family of {sorted(DEGRADATION_FAMILIES)}"),
            "seeds": _distinct("seeds", self.seeds, lambda v: whole(v, 0), "whole seeds"),
            "looks": _distinct("looks", self.looks, lambda v: v is None or (finite_number(v) and v > 0),
                               "positive looks or None"),
            "laws": _distinct("laws", self.laws, lambda v: v in SIGMA0_LAWS, f"laws of {sorted(SIGMA0_LAWS)}"),
            "land_cover_db": _distinct("land_cover_db", self.land_cover_db, lambda v: finite_number(v) and 0 <= v < 30,
                                       "contrasts from 0 to 30 dB"),
            "ground_families": _distinct("ground_families", self.ground_families,
                                         lambda v: v is None or v in GROUND_FAMILIES,
                                         f"None or families of {sorted(GROUND_FAMILIES)}"),
            "dates": _distinct("dates", self.dates, lambda v: whole(v, 1), "positive numbers of dates per pass"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        incidence = tuple(self.incidence_deg) if isinstance(self.incidence_deg, (tuple, list)) else ()
        if (len(incidence) != 2 or not all(finite_number(v) for v in incidence)
                or not 0 < incidence[0] < incidence[1] < 90):
            raise InvalidInputError(f"incidence_deg must be (near, far) in degrees, 0 < near < far < 90, got "
                                    f"{self.incidence_deg!r}")
        object.__setattr__(self, "incidence_deg", incidence)
        specs = (self.priors,) if isinstance(self.priors, PriorSpec) else _values(self.priors) or ()
        if not specs or not all(isinstance(spec, PriorSpec) for spec in specs):
            raise InvalidInputError(f"priors={self.priors!r}: give a sequence of PriorSpec, one per priors of the set")
        labels = [spec.label for spec in specs]
        if len(set(labels)) != len(labels):
            raise InvalidInputError(f"two priors share the label of their files ({labels}): give one PriorSpec per "
                                    "pattern or instrument kind")
        object.__setattr__(self, "priors", specs)
        changes = _values(self.terrain_transforms) or ()
        if not changes or not all(isinstance(change, TerrainTransform) for change in changes):
            raise InvalidInputError(f"terrain_transforms={self.terrain_transforms!r}: give a sequence of "
                                    "TerrainTransform (TerrainTransform() is the DEM as it is)")
        if len({change.label for change in changes}) != len(changes):
            raise InvalidInputError(f"terrain_transforms repeats a transform ({[c.label or 'none' for c in changes]})")
        object.__setattr__(self, "terrain_transforms", changes)
        if any(family is not None for family in self.ground_families) and (self.laws != ("empirical",)
                                                                           or self.land_cover_db != (3.0,)):
            raise InvalidInputError("ground_families draw each scene's laws and land cover: leave laws and "
                                    "land_cover_db (--law, --land-cover) at their defaults with them")
        if not finite_number(self.moisture_db) or not 0 <= self.moisture_db <= 5:
            raise InvalidInputError(f"moisture_db must be a standard deviation from 0 to 5 dB, got "
                                    f"{self.moisture_db!r}")
        if not finite_number(self.snow_share) or not 0 <= self.snow_share <= 1:
            raise InvalidInputError(f"snow_share must be a share of the dates in [0, 1], got {self.snow_share!r}")
        if self.nesz_db is not None and not finite_number(self.nesz_db):
            raise InvalidInputError(f"nesz_db must be a noise floor in dB or None, got {self.nesz_db!r}")
        if not isinstance(self.cross_polarised, (bool, np.bool_)):
            raise InvalidInputError(f"cross_polarised must be True or False, got {self.cross_polarised!r}")


class SceneDraw(NamedTuple):
    """One combination of a set's axes: one scene (:func:`write_simulated_scene`)."""

    tag: str
    geometry: RadarGeometry
    opposite_geometry: RadarGeometry | None
    coarse_factor: int
    coarse_family: str
    priors: PriorSpec
    looks: float | None
    law: str
    land_cover_db: float
    ground_family: str | None
    dates: int
    opposite_pass: bool
    seed: int


def _variant_tag(look_side: str, heading_offset: float) -> str:
    tag = "" if look_side == "right" else "_left"
    return tag + (f"_h{heading_offset:+g}" if heading_offset else "")


def _radiometry_tag(looks: float | None, law: str, land_cover_db: float) -> str:
    """The part of a scene's file name that tells its observation's looks, law and land
    cover apart from the default (4.4 looks, the empirical law, 3 dB of land cover)."""
    tag = "" if looks == 4.4 else f"_looks{looks:g}" if looks is not None else "_nospeckle"
    tag += "" if law == "empirical" else f"_{law}"
    return tag + ("" if land_cover_db == 3.0 else f"_cover{land_cover_db:g}")


def transformed_terrain(source: xr.DataArray, projected: xr.DataArray, change: TerrainTransform
                        ) -> tuple[xr.DataArray, str]:
    """A DEM as ``change`` turns it (``projected``: the DEM on a projected grid, which a
    transform needs; the DEM itself without one) and its name in the scenes' names
    (``<dem>-<transform>``)."""
    if not change.label:
        return source, source.attrs["dem_name"]
    return transform_terrain(projected, change), f"{source.attrs['dem_name']}-{change.label}"


def synthetic_variants(truth: xr.DataArray, axes: SceneAxes) -> list[tuple[str, RadarGeometry, RadarGeometry]]:
    """The synthetic geometries of ``axes`` centred on a terrain.

    Parameters
    ----------
    truth : the terrain (a DEM on its grid, ellipsoidal heights, m).
    axes : the set's axes: its passes, look sides, heading offsets (degrees) and incidence
        range (degrees).

    Returns
    -------
    list of (tag, geometry, opposite) : per look side, heading offset and pass, the
        variant's tag (``ascending_left_h+5``), its geometry and the opposite pass's with
        the same look side and offset.
    """
    found = []
    # Checked once for all its geometries.
    checked = checked_dem(truth, copy=False)
    near, far = axes.incidence_deg
    for look_side in axes.look_sides:
        for offset in axes.heading_offsets_deg:
            made = {direction: scene_geometry(checked, direction, incidence_near_deg=near, incidence_far_deg=far,
                                              look_side=look_side, heading_offset_deg=offset)
                    for direction in PASS_HEADINGS}
            for direction in axes.passes:
                other = next(made[d] for d in PASS_HEADINGS if d != direction)
                found.append((direction + _variant_tag(look_side, offset), made[direction], other))
    return found


def scene_file_name(dem_name: str, draw: SceneDraw) -> str:
    """The name of a scene's file (without ``.nc``), from its terrain and its draw of the
    axes; every draw of the scene follows it (see :func:`simulate_scenes`)."""
    radiometry = (_radiometry_tag(draw.looks, draw.law, draw.land_cover_db) if draw.ground_family is None
                  else _radiometry_tag(draw.looks, "empirical", 3.0) + f"_ground-{draw.ground_family}")
    radiometry += (f"_dates{draw.dates}" if draw.dates > 1 else "") + ("" if draw.opposite_pass else "_onepass")
    family = "" if draw.coarse_family == "ideal" else "_" + draw.coarse_family
    return f"{dem_name}_{draw.tag}_c{draw.coarse_factor}{family}_{draw.priors.label}{radiometry}_s{draw.seed}"


def simulate_scenes(
    dems: list[Any],
    out: str | os.PathLike[str],
    *,
    axes: SceneAxes | None = None,
    geometries: list[RadarGeometry] | None = None,
    crop_cells: int | None = None,
    sample: int | None = None,
    unscored: dict[str, Any] | None = None,
    products: SceneProducts = DEFAULT_PRODUCTS,
    client: Any = None,
    progress: bool = True,
) -> list[Path]:
    """Simulate and write one scene file per DEM and combination of the set's ``axes``, or
    a random sample of them.

    Parameters
    ----------
    dems : DEMs (paths or DataArrays from :func:`sarheight.dem.open_dem`; a DataArray's
        ``attrs["dem_name"]`` names its files).
    out : the folder of the scene files (made if missing).
    axes : the axes of the set (:class:`SceneAxes`; default its defaults: both passes, one
        image each, the ideal coarse DEM at 3x, 0.1 % exact priors, one seed).
    geometries : the geometries of real products (each must cover every DEM), instead of
        the synthetic ones of ``axes`` centred on each DEM
        (:func:`sarheight.terrain.geometry.scene_geometry`).
    crop_cells : each scene a window of this many cells a side of its (transformed)
        terrain, drawn per scene (:func:`sarheight.terrain.augment.crop_window`: the draw
        of the most land; ``crop_row``, ``crop_col`` attributes), its geometry the whole
        terrain's (so a crop lies anywhere from near to far range); None: the whole DEM.
    sample : per DEM (and terrain transform), how many scenes to draw at random (without
        repeats, seeded by the DEM's name) from all the combinations of the axes, instead
        of every one: a training set that spans many axes without their product.
    unscored : per DEM name, the cells whose truth its scenes leave out (see
        :func:`sarheight.terrain.simulated.simulate_scene`: the sea).
    products : what every scene makes from its observation (:class:`SceneProducts`).
    client : where the scenes are made: None, one after the other here; ``"local"``, the
        processes of a ``LocalCluster`` on this machine (one per core); a scheduler
        address or a ``dask.distributed.Client`` (:class:`sarheight.distributed.Workers`).
        The scenes are the same wherever they are made (every draw follows a scene's name),
        to the rounding of the kernels' sums, which run on a worker's threads.
    progress : a bar of the scenes made.

    Each scene carries the opposite pass (for synthetic geometries: with the same look
    side and heading offset, also when ``axes.passes`` names one pass; for products: the
    first product of the other direction, if any) as its ``other_*`` variables, unless
    ``axes.opposite_passes`` says otherwise; the scenes of one DEM, factor, priors and seed
    share their priors. Every drawn property (the coarse DEM's errors, an instrument kind's
    errors, the ground and the land cover) is drawn with a seed of its own scene (the
    CRC-32 of its name without the pass): no two scenes share a land cover, except the two
    passes of a pair, which see the same ground. Files are named
    ``<dem>[-<transform>]_<pass>[_left][_h<offset>]_c<factor>[_<coarse family>]_<priors'
    label>[_looks<n>][_<law>][_cover<dB>][_ground-<family>][_dates<n>][_onepass]_s<seed>.nc``
    (:func:`scene_file_name`); a file that exists is kept, so an interrupted run resumes.
    Returns the paths, in order.
    """
    from ..threads import bar as progress_bar

    axes = SceneAxes() if axes is None else axes
    if not isinstance(axes, SceneAxes):
        raise InvalidInputError(f"axes must be a SceneAxes (SceneAxes(coarse_factors=(3, 5))), got "
                                f"{type(axes).__name__}")
    if not isinstance(products, SceneProducts):
        raise InvalidInputError(f"products must be a SceneProducts (SceneProducts(inversion=True)), got "
                                f"{type(products).__name__}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truths = [open_dem(dem).assign_attrs(dem_name=source_name(dem)) for dem in dems]
    names = [truth.attrs["dem_name"] for truth in truths]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"two DEMs share a name ({names}): their scene files would collide; rename one")
    unknown = sorted(set(unscored or {}) - set(names))
    if unknown:
        raise InvalidInputError(f"unscored names DEMs {unknown} that are not among {names}")
    changes = axes.terrain_transforms
    if any(change.label for change in changes):
        # A transformed geographic DEM is put on its UTM grid first, where cells given on
        # its own grid no longer fall.
        projected_only = sorted(name for name, truth in zip(names, truths, strict=True)
                                if not truth.rio.crs.is_projected and (unscored or {}).get(name) is not None)
        if projected_only:
            raise InvalidInputError(
                f"the unscored cells of {projected_only} are on a geographic grid, which a terrain transform "
                "reprojects to its UTM zone: give the DEM on that grid "
                "(sarheight.terrain.augment.terrain_on_a_projected_grid) with its unscored cells on it")
    if crop_cells is not None and (isinstance(crop_cells, bool) or not isinstance(crop_cells, int)
                                   or crop_cells < 16):
        raise InvalidInputError(f"crop_cells must be a number of cells a side (16 or more), got {crop_cells!r}")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise InvalidInputError(f"sample must be a positive number of scenes per DEM, got {sample!r}")
    if client is not None:
        from ..distributed import check_client

        check_client(client)

    def variants(truth: xr.DataArray) -> list[tuple[str, RadarGeometry, RadarGeometry | None]]:
        if geometries is not None:
            found = []
            for index, geometry in enumerate(geometries):
                others = [g for g in geometries if pass_direction(g) != pass_direction(geometry)]
                tag = f"_g{index}" if len(geometries) > 1 else ""
                found.append((f"{pass_direction(geometry)}{tag}", geometry, others[0] if others else None))
            return found
        return synthetic_variants(truth, axes)

    plans: list[tuple[xr.DataArray, str, Any, list[SceneDraw]]] = []
    for source, source_dem_name in zip(truths, names, strict=True):
        # A geographic DEM reprojected once, for all its transforms.
        projected = terrain_on_a_projected_grid(source) if any(change.label for change in changes) else source
        for change in changes:
            # The geometries are made over the terrain as transformed: the physics of the
            # new terrain, not an image turned.
            truth, dem_name = transformed_terrain(source, projected, change)
            cells = (unscored or {}).get(source_dem_name)
            if cells is not None and change.label:
                cells = orient_cells(np.asarray(cells), change, source.rio.transform())
            draws = [SceneDraw(tag, geometry, other, *rest) for (tag, geometry, other), *rest in itertools.product(
                variants(truth), axes.coarse_factors, axes.coarse_families, axes.priors, axes.looks, axes.laws,
                axes.land_cover_db, axes.ground_families, axes.dates, axes.opposite_passes, axes.seeds)]
            if sample is not None and sample < len(draws):
                rng = np.random.default_rng(zlib.crc32(dem_name.encode()))
                draws = [draws[k] for k in sorted(rng.choice(len(draws), sample, replace=False))]
            plans.append((truth, dem_name, cells, draws))
    jobs = [(out / f"{scene_file_name(dem_name, draw)}.nc", (truth, dem_name, cells, draw))
            for truth, dem_name, cells, drawn in plans for draw in drawn]
    missing = [(path, job) for path, job in jobs if not is_complete_scene(path)]
    kept = next((path for path, _ in jobs if all(path != other for other, _ in missing)), None)
    if kept is not None:
        _check_kept_scene(kept, axes)
    # A scene's warnings (a DEM cropped to the image...) after the bar, once each with a count.
    with deferred_warnings(), progress_bar(total=len(jobs), desc="terrain scenes", unit="scene",
                                           enabled=progress) as bar:
        bar.update(len(jobs) - len(missing))
        if client is None:
            for path, job in missing:
                write_simulated_scene(path, *job, axes, crop_cells, products)
                bar.update()
        elif missing:
            from dask.distributed import as_completed

            from ..distributed import Workers, local_client

            with contextlib.ExitStack() as opened:
                if client == "local":
                    # A scene is a task of Python and kernels: a process per core, one thread each.
                    client = opened.enter_context(local_client(process_per_core=True))
                workers = opened.enter_context(Workers.open(client))
                # Each DEM sent to the workers once, not with each of its scenes.
                sent = {id(truth): workers.broadcast(truth) for truth, *_ in plans}
                futures = [workers.submit(write_simulated_scene, path, sent[id(job[0])], *job[1:], axes, crop_cells,
                                          products) for path, job in missing]
                for future in as_completed(futures):
                    future.result()
                    bar.update()
    return [path for path, _ in jobs]


def _check_kept_scene(path: Path, axes: SceneAxes) -> None:
    """Refuse to resume a set whose kept scene (``path``, a whole file) was made with
    other images than ``axes`` asks for (one polarisation or two): its name would not tell
    them apart."""
    import h5py

    with h5py.File(path, "r") as opened:
        made = bool(np.asarray(opened.attrs.get("cross_polarised", 0)).ravel()[0])
    if made != axes.cross_polarised:
        said = {True: "both polarisations", False: "one polarisation"}
        raise InvalidInputError(f"{str(path)!r} holds a scene of {said[made]}, the set asks for "
                                f"{said[axes.cross_polarised]}: make the set in another folder")


def is_complete_scene(path: Path) -> bool:
    """Whether ``path`` holds a whole scene file (a run resuming keeps it); a file cut short
    (a full disk, a copy interrupted) or not a scene is warned of and made again, never read."""
    if not path.exists():
        return False
    import h5py

    try:
        with open(path, "rb") as handle:
            signature = handle.read(8)
        if signature != b"\x89HDF\r\n\x1a\n":
            raise OSError("not an HDF5 file")
        with h5py.File(path, "r") as opened:
            if "sar_reconstructed" not in opened:
                raise OSError("no sar_reconstructed variable")
    except OSError as error:
        warnings.warn(f"{str(path)!r} is not a whole scene file ({error}): it is made again", PlausibilityWarning,
                      stacklevel=user_stacklevel())
        return False
    return True


def write_simulated_scene(path: Path, truth: xr.DataArray, dem_name: str, cells: Any, draw: SceneDraw,
                          axes: SceneAxes, crop_cells: int | None, products: SceneProducts) -> Path:
    """Simulate and write one scene of :func:`simulate_scenes` (:func:`simulated_scene`,
    named after its file)."""
    return write_scene(simulated_scene(path.stem, truth, dem_name, cells, draw, axes, crop_cells, products), path)


def simulated_scene(name: str, truth: xr.DataArray, dem_name: str, cells: Any, draw: SceneDraw, axes: SceneAxes,
                    crop_cells: int | None, products: SceneProducts, *, device: str | None = None) -> xr.Dataset:
    """One scene of a set (:func:`simulate_scene`); every draw follows the scene's name
    (see :func:`simulate_scenes`).

    Parameters
    ----------
    name : the scene's name (a file's stem).
    truth : the terrain (as a terrain transform turned it), ``dem_name`` its name in the
        scenes' names; ``cells``: its cells left unscored (bool, its grid), or None.
    draw : the scene's values of the set's ``axes``.
    crop_cells : the side of the scene (cells), a window of the terrain drawn from the
        name; None: the whole terrain.
    products : what the scene makes from its observation.
    device : where the physics runs (None: the numba kernels; ``"cuda"``: torch there).

    Returns
    -------
    xr.Dataset : the scene, its window's ``crop_row``, ``crop_col`` among its attributes.
    """
    # The two passes of a pair see one ground, one coarse DEM and one set of priors (each
    # holds the other's image): the draws follow the name without the pass.
    pair = draw.tag.removeprefix("ascending").removeprefix("descending")
    name_seed = zlib.crc32(name.replace(f"{dem_name}_{draw.tag}_", f"{dem_name}_pair{pair}_", 1).encode())
    left_out, window = cells, None
    if crop_cells is not None:
        window = crop_window(truth, crop_cells, cells, seed=name_seed + 4)
        rows, cols = slice(window[0], window[0] + window[2]), slice(window[1], window[1] + window[3])
        crop = truth.isel(y=rows, x=cols).assign_attrs(dem_name=truth.attrs["dem_name"])
        # The crop checked once: the ground and the scene take the Dem as checked.
        terrain = checked_dem(crop, vertical_datum="ellipsoid")
        left_out = None if cells is None else np.asarray(cells)[rows, cols]
    else:
        terrain = checked_dem(truth, copy=False)
    observation = ObservationSpec(
        looks=draw.looks, nesz_db=axes.nesz_db, law=draw.law, land_cover_db=draw.land_cover_db,
        land_cover_seed=name_seed,
        ground=draw_ground(terrain, draw.ground_family, name_seed + 2) if draw.ground_family else None,
        date_conditions=draw_date_conditions(draw.dates, name_seed + 3, moisture_db=axes.moisture_db,
                                             snow_dates=round(axes.snow_share * draw.dates))
        if draw.dates > 1 else None, cross_polarised=axes.cross_polarised)
    family = draw.coarse_family
    errors = None if family == "ideal" else draw_errors(draw.coarse_factor, family, name_seed)
    scene = simulate_scene(terrain, draw.geometry, coarse_factor=draw.coarse_factor, seed=draw.seed,
                           coarse_errors=errors,
                           priors=draw.priors.with_errors_drawn(name_seed + 1),
                           opposite_geometry=draw.opposite_geometry if draw.opposite_pass else None,
                           observation=observation, products=products, name=name, unscored=left_out,
                           progress=False, device=device)
    if window is not None:
        scene.attrs.update(crop_row=window[0], crop_col=window[1])
    scene.attrs["coarse_family"] = family
    return scene
