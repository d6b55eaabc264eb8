"""The inversion's forward model: the project's simulator as the scenes are made with it,
read where the observation is read.

- :class:`Sampling` (:func:`sampling_of`): where the reference surface puts each cell in an
  image, the box of pixels a cell covers and the observation read there, fixed through an
  inversion (the observation is never re-read at moved positions, whose speckle would be
  other speckle);
- :func:`simulated_reading`: the simulation of a surface under an image's geometry with a
  ground of classes (each facet its cell's class law of its own local incidence times
  the cell's albedo, one pass of the facet kernel, :class:`sarheight.ground.CellLaws`), the image's
  noise floor added, read as the observation is (:func:`sample_log`);
- :func:`probed_jacobian`: the reading's derivative in the heights, probed with the
  simulator itself;
- the laws it evaluates: fitted ones (:func:`refit_law`) and known ones
  (:class:`KnownLaw`), as linear laws (:func:`linear_law`) and grounds
  (:func:`ground_cover`);
- :func:`model_images`: the images a surface and its ground simulate, each image's class
  laws fitted to it, on each image's window (what the registration correlates with
  the observations once an inversion has told the ground apart).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sparse
import xarray as xr

from ..dem import Dem, checked_dem
from ..errors import InvalidInputError
from ..geometry import RadarWindow
from ..ground import CellLaws, FittedLaw, empirical_sigma0, fit_sigma0_law
from ..masks import MaskCode
from ..observation import intensity_on_window
from ..raster import Grid, nan_box_mean
from ..simulate import Simulation, noise_floor, resimulated, run_simulation
from ..simulate.cells import cell_geometry, visibility_masks
from ..threads import map_tasks
from .radar_images import NEPER_PER_DB, InversionImage

__all__ = [
    "BORDER_CELLS",
    "CROSS_FLOOR_SHARE",
    "PROBE_M",
    "BilinearReads",
    "KnownLaw",
    "Sampling",
    "box_filtered",
    "class_laws",
    "cross_ratio_feature",
    "ground_cover",
    "image_noise_floor",
    "law_of",
    "linear_law",
    "model_images",
    "probed_jacobian",
    "refit_law",
    "sample_log",
    "sampling_of",
    "simulated_intensity",
    "simulated_reading",
]


@dataclasses.dataclass(frozen=True)
class KnownLaw:
    """A known sigma0 law (linear, of the local incidence in degrees) as the inversion
    evaluates laws: in dB, with its slope (dB per degree), as a
    :class:`sarheight.ground.FittedLaw` is evaluated; never refitted."""

    law: Callable[[np.ndarray], np.ndarray]

    def __call__(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        t = np.asarray(local_incidence_deg, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = 10.0 * np.log10(np.asarray(self.law(np.clip(np.nan_to_num(t, nan=45.0), 0.0, 90.0)),
                                                dtype=np.float64))
        return np.where(np.isfinite(t) & (t >= 0) & (t < 90), values, np.nan)

    def slope_db_per_deg(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        t = np.asarray(local_incidence_deg, dtype=np.float64)
        step = 0.01
        return (self(np.clip(t + step, 0.0, 89.99)) - self(np.clip(t - step, 0.0, 89.99))) / (2 * step)


def law_of(law: Callable[[np.ndarray], np.ndarray]) -> KnownLaw:
    """A known law (linear sigma0 of the local incidence, degrees) as the inversion
    evaluates it (:class:`KnownLaw`), checked: positive at every local incidence of 5-85
    degrees."""
    angles = np.linspace(5.0, 85.0, 161)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(np.asarray(law(angles), dtype=np.float64))
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("a known law must give a positive sigma0 at every local incidence of 5-85 degrees")
    return KnownLaw(law)


def refit_law(sigma0_db: np.ndarray, theta: np.ndarray, valid: np.ndarray,
              current: FittedLaw | KnownLaw | None) -> FittedLaw | KnownLaw:
    """The law fitted to ``sigma0_db`` of the local incidence ``theta``: in bins of a
    degree (:func:`sarheight.ground.fit_sigma0_law`), of five degrees on small grids, else
    the current law (or the empirical one)."""
    for bin_deg, min_cells in ((1.0, 30), (5.0, 10)):
        try:
            return fit_sigma0_law(sigma0_db, theta, valid, bin_deg=bin_deg, min_cells=min_cells)
        except InvalidInputError:
            continue
    return current if current is not None else law_of(empirical_sigma0)


def linear_law(law: FittedLaw | KnownLaw) -> Callable[[np.ndarray], np.ndarray]:
    """A fitted law (dB) as the linear contribution law a simulation takes."""
    if isinstance(law, KnownLaw):
        return law.law

    def linear(angles: np.ndarray) -> np.ndarray:
        return 10.0 ** (law(np.clip(angles, 0.01, 89.99)) / 10.0)

    return linear



@dataclasses.dataclass(frozen=True)
class BilinearReads:
    """Where cells read an image bilinearly, fixed once their positions are: the cells that
    have a position in it, and for each the flat indices of its four pixels and their
    weights (the pixels beyond the image's last line or sample weigh 0)."""

    cells: np.ndarray
    pixels: np.ndarray
    weights: np.ndarray

    @classmethod
    def at(cls, line: np.ndarray, sample: np.ndarray, shape: tuple[int, int]) -> BilinearReads:
        """The reads at fractional ``line``, ``sample`` (per cell, NaN where the cell has no
        position; else within the image) of an image of ``shape``."""
        cells = np.flatnonzero(np.isfinite(line))
        pixels, weights = [], []
        axes = []
        for positions, size in ((line[cells], shape[0]), (sample[cells], shape[1])):
            first = np.clip(np.floor(positions), 0, max(size - 2, 0)).astype(np.int64)
            fraction = positions - first
            axes.append((first, np.minimum(first + 1, size - 1), fraction))
        (l0, l1, fl), (s0, s1, fs) = axes
        for line_index, line_weight in ((l0, 1.0 - fl), (l1, fl)):
            for sample_index, sample_weight in ((s0, 1.0 - fs), (s1, fs)):
                pixels.append(line_index * shape[1] + sample_index)
                weights.append(line_weight * sample_weight)
        return cls(cells, np.stack(pixels), np.stack(weights))

    def read(self, image: np.ndarray) -> np.ndarray:
        """``image`` (flat or of the image's shape) read at each cell that has a position."""
        flat = np.asarray(image).ravel()
        return np.einsum("kn,kn->n", self.weights, flat[self.pixels])


@dataclasses.dataclass
class Sampling:
    """How one image is read on the grid, fixed for the whole inversion: where the
    reference surface puts each cell in the image, the box of pixels a cell covers, the
    bilinear reads there, and the observation read there."""

    window: RadarWindow
    line: np.ndarray
    sample: np.ndarray
    box: tuple[int, int]
    observed: np.ndarray
    usable: np.ndarray
    reads: BilinearReads


#: Cells of the grid's border left out of the data: their pixels hold terrain beyond the
#: DEM, which the simulation of the DEM does not have.
BORDER_CELLS = 2


def box_filtered(values: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """The mean over a box of pixels around each pixel, of the positive ones; NaN where
    they are half the box or fewer."""
    positive = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    if box == (1, 1):
        return positive
    return nan_box_mean(positive, box, least_share=0.5)


def sample_log(image: np.ndarray, sampling: Sampling) -> np.ndarray:
    """ln of ``image`` (on the sampling's window) box-filtered and read bilinearly at the
    cells; NaN where it has no value."""
    filtered = box_filtered(np.asarray(image, dtype=np.float64), sampling.box)
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(filtered)
    window = sampling.window
    if logs.shape != (window.lines, window.samples):
        raise InvalidInputError(f"an image of {logs.shape} pixels read on a window of {window.lines} x "
                                f"{window.samples}: give it on the sampling's window (intensity_on_window)")
    finite = np.isfinite(logs)
    out = np.full(sampling.line.shape, np.nan)
    reads = sampling.reads
    values = reads.read(np.where(finite, logs, 0.0))
    weight = reads.read(finite.astype(np.float64))
    out[reads.cells] = np.where(weight > 0.999, values, np.nan)
    return out


def sampling_of(image: InversionImage, reference: xr.DataArray) -> Sampling:
    """Where ``reference`` puts every cell in ``image`` (fixed through the inversion: the
    observation is read once, never re-read at moved positions, whose speckle would be
    other speckle), its masks there, and the observation read over each cell's box."""
    cells = cell_geometry(reference, image.geometry)
    window = image.window
    layover, shadow, _ = visibility_masks(cells, cells["faces_away"], cells["active_layover"], window,
                                          every_line=False)
    line = (cells["line"] - window.line0).ravel()
    sample = (cells["sample"] - window.sample0).ravel()
    inside = (cells["valid"].ravel() & (line >= 0) & (line <= window.lines - 1) & (sample >= 0)
              & (sample <= window.samples - 1))
    line, sample = np.where(inside, line, np.nan), np.where(inside, sample, np.nan)
    # A cell covers about this many pixels along each axis of the image.
    steps = [np.nanmedian(np.abs(np.diff(cells[name], axis=axis))) for name in ("line", "sample") for axis in (0, 1)]
    box = (max(1, round(max(steps[0], steps[1]))), max(1, round(max(steps[2], steps[3]))))
    sampling = Sampling(window, line, sample, box, np.empty(0), np.empty(0, dtype=bool),
                        BilinearReads.at(line, sample, (window.lines, window.samples)))
    observed = sample_log(intensity_on_window(image.image, window), sampling)
    border = np.zeros(reference.shape, dtype=bool)
    border[BORDER_CELLS:-BORDER_CELLS or None, BORDER_CELLS:-BORDER_CELLS or None] = True
    usable = (np.isfinite(observed) & inside & border.ravel() & (layover.ravel() == MaskCode.NONE)
              & (shadow.ravel() == MaskCode.NONE))
    return dataclasses.replace(sampling, observed=observed, usable=usable)



def simulated_intensity(image: InversionImage, surface: xr.DataArray | Dem, cover: CellLaws, *,
                        base: Simulation | None = None, cells: dict[str, np.ndarray] | None = None
                        ) -> tuple[xr.DataArray, np.ndarray | None, Simulation]:
    """The project's simulation of ``surface`` under ``image``'s geometry as the scenes make
    it (each facet its cell's class law of its own local incidence times the cell's albedo,
    one pass of the facet kernel; the image's noise floor added): the intensity (linear, on the
    simulation's radar window, absolute coordinates), each cell's local incidence (degrees,
    per cell, raveled: that of its summed area vector, about which its facets' laws were
    evaluated), and the simulation. With
    ``base`` (a simulation of a surface a little different, with the same ground): that
    simulation's masks and window kept (:func:`sarheight.simulate.resimulated`, which takes
    ``cells``, the cells' geometry of ``surface`` where the caller has it), no incidence."""
    if base is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = run_simulation(surface, image.geometry, contribution=cover, every_line=False,
                                   compute=image.compute)
    else:
        # No warnings' filters touched: probes run on several threads at once, and
        # catch_warnings is process-wide state.
        state = resimulated(base, surface, cells=cells)
    theta = None
    # A probe keeps base's smooth fields (resimulated), so its pixels' areas and incidences
    # are base's, evaluated once for all probes.
    fields = state if base is None else base
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(fields.pixel_area > 0, state.images[0] / fields.pixel_area, 0.0)
        if image.nesz_db is not None:
            intensity = intensity + noise_floor(image.nesz_db, fields.sin_incidence)
        if base is None:
            theta = np.degrees(np.arccos(np.clip(state.per_cell["cos_local_incidence"], -1.0, 1.0))).ravel()
    return xr.DataArray(intensity, dims=("line", "sample"), coords=state.window.coords()), theta, state


def simulated_reading(image: InversionImage, sampling: Sampling, surface: xr.DataArray | Dem, cover: CellLaws
                      ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simulated_intensity` read where the observation was read (ln, per cell), and
    each cell's own local incidence (degrees)."""
    simulated, theta, _ = simulated_intensity(image, surface, cover)
    return sample_log(intensity_on_window(simulated, sampling.window), sampling), theta


def class_laws(image: InversionImage, sampling: Sampling, surface: xr.DataArray | Dem, classes: np.ndarray,
               albedo: np.ndarray, laws: Sequence[FittedLaw | KnownLaw]) -> list[FittedLaw | KnownLaw]:
    """Each class's law fitted to ``image`` on ``surface``: the observation over the
    simulation with ``laws`` (one per class) read at each usable cell, binned by the cell's
    own local incidence (:func:`refit_law`); a class too small to fit keeps its law."""
    model, theta = simulated_reading(image, sampling, surface, ground_cover(classes, laws, albedo))
    ratio = sampling.observed - model
    valid = sampling.usable & np.isfinite(ratio) & np.isfinite(theta)
    fitted = []
    flat = classes.ravel()
    for code, law in enumerate(laws):
        members = flat == code
        with np.errstate(invalid="ignore"):
            target = (law(theta[members]) * NEPER_PER_DB + ratio[members]) / NEPER_PER_DB
        fitted.append(refit_law(target, theta[members], valid[members], law))
    return fitted


def brightness_features(surface: xr.DataArray | Dem, images: Sequence[InversionImage],
                        samplings: Sequence[Sampling] | None = None) -> list[np.ndarray]:
    """Per image, the log ratio (dB) of the observation over the simulation of ``surface``
    with one law fitted to it, at every cell it reads (NaN elsewhere), on ``surface``'s
    grid: what the relief ``surface`` holds does not explain (land cover, the relief it
    lacks, speckle), the features the classes of
    :func:`sarheight.terrain.land_cover.estimate_land_cover` are told apart by.
    ``samplings``: each image's :func:`sampling_of` ``surface``, where the caller has them."""
    # Checked once: every simulation of it below takes the Dem as checked.
    checked = checked_dem(surface, copy=False)
    surface = checked.heights
    classes = np.zeros(surface.shape, dtype=np.int64)
    albedo = np.zeros(surface.size)
    out = []
    for image, sampling in zip(images, samplings or [sampling_of(image, surface) for image in images], strict=True):
        laws = class_laws(image, sampling, checked, classes, albedo, [law_of(empirical_sigma0)])
        model, _ = simulated_reading(image, sampling, checked, ground_cover(classes, laws, albedo))
        ratio = np.where(sampling.usable & np.isfinite(model), sampling.observed - model, np.nan)
        if np.isfinite(ratio).any():
            ratio = ratio - np.nanmean(ratio)
        out.append((ratio / NEPER_PER_DB).reshape(surface.shape))
    return out


#: What is left of a band at least once its noise floor is taken off, as a share of the
#: floor: a box mean at or below the floor is read as this far below it (about -13 dB).
CROSS_FLOOR_SHARE = 0.05


def image_noise_floor(image: InversionImage, surface: xr.DataArray | Dem) -> xr.DataArray:
    """The additive noise floor of ``image`` (linear beta0 on the radar window of the
    simulation of ``surface``: :func:`sarheight.simulate.noise_floor` of its ``nesz_db``
    at each pixel's ellipsoid incidence, as :func:`sarheight.simulate.simulate_sar` adds
    it); zero where the image has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = run_simulation(surface, image.geometry, every_line=False, compute=image.compute)
    if image.nesz_db is None:
        values = np.zeros(state.window.shape)
    else:
        values = noise_floor(image.nesz_db, state.sin_incidence)
    return xr.DataArray(values, dims=("line", "sample"), coords=state.window.coords())


def cross_ratio_feature(surface: xr.DataArray, images: Sequence[InversionImage],
                        samplings: Sequence[Sampling] | None = None) -> np.ndarray | None:
    """The ratio (dB) of the cross-polarised image to the co-polarised one (VH/VV), read at
    every cell as :func:`brightness_features` reads an image and averaged over the images
    that have one, on ``surface``'s grid (NaN where none reads the cell); None where no
    image has a cross-polarised one. A slope scales both polarisations alike, so the ratio
    hardly follows the relief; a land cover sets it (volume scattering of vegetation
    raises it, bare rock and wet snow lower it): a feature classes are told apart by
    (:func:`sarheight.terrain.land_cover.estimate_land_cover`). ``samplings`` as
    :func:`brightness_features` takes them."""
    ratios = []
    for index, image in enumerate(images):
        if image.cross_image is None:
            continue
        sampling = samplings[index] if samplings else sampling_of(image, surface)
        cross = sample_log(intensity_on_window(image.cross_image, sampling.window), sampling)
        co = sampling.observed
        if image.nesz_db is not None:
            # A noise floor the image carries (a simulation's) lifts the dark cross-polarised
            # band most: read it where the bands are read, and take it off both (box means,
            # linear) before the ratio, so that a dark class's ratio does not follow its slope.
            floor_image = intensity_on_window(image_noise_floor(image, surface), sampling.window)
            floor = np.exp(sample_log(floor_image, sampling))
            least = CROSS_FLOOR_SHARE * floor
            with np.errstate(invalid="ignore"):
                cross = np.log(np.maximum(np.exp(cross) - floor, least))
                co = np.log(np.maximum(np.exp(co) - floor, least))
        ratios.append(np.where(sampling.usable & np.isfinite(cross) & np.isfinite(co), cross - co, np.nan)
                      / NEPER_PER_DB)
    if not ratios:
        return None
    stack = np.stack(ratios)
    counted = np.isfinite(stack).sum(axis=0)
    mean = np.where(counted > 0, np.nansum(stack, axis=0) / np.maximum(counted, 1), np.nan)
    return mean.reshape(surface.shape)


def model_images(surface: xr.DataArray, images: Sequence[InversionImage], classes: np.ndarray,
                 albedo_db: np.ndarray | None = None) -> list[np.ndarray]:
    """The images ``surface`` simulates with its ground (``classes`` on its grid, each
    image's class laws fitted to that image, :func:`class_laws`, twice; ``albedo_db`` per
    cell, or none), each on its image's window (linear intensity, NaN where the simulation
    has no pixel): what the registration correlates with the observations once an
    inversion has told the ground apart."""
    albedo = (np.zeros(surface.size) if albedo_db is None
              else np.nan_to_num(np.asarray(albedo_db, dtype=np.float64).ravel()) * NEPER_PER_DB)
    count = int(classes.max()) + 1
    out = []
    for image in images:
        sampling = sampling_of(image, surface)
        laws: list[FittedLaw | KnownLaw] = [law_of(empirical_sigma0)] * count
        for _ in range(2):
            laws = class_laws(image, sampling, surface, classes, albedo, laws)
        simulated, _, _ = simulated_intensity(image, surface, ground_cover(classes, laws, albedo))
        out.append(np.asarray(intensity_on_window(simulated, image.window), dtype=np.float64))
    return out


def ground_cover(classes: np.ndarray, laws: Sequence[FittedLaw | KnownLaw], albedo: np.ndarray) -> CellLaws:
    """The ground the inversion simulates: each cell's class law (dB fitted laws, linear
    here) times its albedo (nepers, per cell)."""
    return CellLaws(classes, tuple(linear_law(law) for law in laws), np.exp(albedo.reshape(classes.shape)))



#: The height (m) each probe of :func:`probed_jacobian` raises its cells by.
PROBE_M = 0.5


def probed_jacobian(image: InversionImage, sampling: Sampling, surface: xr.DataArray, base: Simulation,
                    model: np.ndarray, stride: int) -> sparse.csr_matrix:
    """The residual's derivative in the heights, probed with the simulator itself: the
    cells of one class of ``stride`` x ``stride`` (every ``stride``-th row and column,
    ``stride**2`` classes) are raised by :data:`PROBE_M` together, the surface simulated and
    read, and each reading's change is the derivative in the height of the class's cell
    nearest to it (within half a stride: a cell's footprint, its move in the image and the
    reading's box reach its neighbours, not farther). Every effect the simulator has
    (local incidence, compression, translation, layover near its cell) is in it, but for a
    cell moving into or out of shadow: each probe keeps ``base``'s masks (the simulation of
    ``surface`` that read ``model``)."""
    rows, cols = surface.shape
    heights = np.asarray(surface.values, dtype=np.float64)
    half = stride // 2

    def owners(first: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Along one axis: the class's cell each index belongs to (the nearest), and whether
        it has one within half a stride."""
        index = np.arange(size)
        owner = first + stride * np.round((index - first) / stride).astype(np.int64)
        return owner, (owner >= 0) & (owner < size) & (np.abs(index - owner) <= half)

    # A cell's zero-Doppler geometry is of its own height alone: a probe's cells take theirs
    # from the surface as it is, or raised everywhere, each computed once for all probes.
    level, lifted = (cell_geometry(surface.copy(data=(heights + rise).astype(np.float32)), image.geometry,
                                   own_surface=False) for rise in (0.0, PROBE_M))

    def probe_geometry(raised: np.ndarray, probe: xr.DataArray) -> dict[str, np.ndarray]:
        out = {name: np.where(raised if values.ndim == 2 else raised[..., None], lifted[name], values)
               for name, values in level.items() if name not in ("lon", "lat", "height")}
        return {**out, "lon": level["lon"], "lat": level["lat"], "height": np.ascontiguousarray(probe.values)}

    # A probe is the surface raised by PROBE_M at some cells: a DEM on its grid that needs no
    # check of its own.
    grid = Grid.of(surface)

    def probed(first: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One class's probe: the readings it moves (raveled cells), the cells that moved
        them, and the residual's derivatives."""
        first_row, first_col = first
        owner_row, row_owned = owners(first_row, rows)
        owner_col, col_owned = owners(first_col, cols)
        raised = ((np.arange(rows) % stride) == first_row)[:, None] & ((np.arange(cols) % stride) == first_col)
        probe = surface.copy(data=(heights + PROBE_M * raised).astype(np.float32))
        simulated = simulated_intensity(image, Dem(probe, grid), base.contribution, base=base,
                                        cells=probe_geometry(raised, probe))[0]
        change = ((sample_log(intensity_on_window(simulated, sampling.window), sampling) - model) / PROBE_M
                  ).reshape(rows, cols)
        inside = row_owned[:, None] & col_owned[None, :] & np.isfinite(change)
        cell_rows, cell_cols = np.nonzero(inside)
        # The residual is the observation less the model: its derivative is the model's, negated.
        return cell_rows * cols + cell_cols, owner_row[cell_rows] * cols + owner_col[cell_cols], -change[inside]

    # The probes are many small independent simulations: one a thread, not each split in rows.
    readings, owners_of, entries = zip(*map_tasks(probed, [(r, c) for r in range(stride) for c in range(stride)]),
                                       strict=True)
    cells = rows * cols
    return sparse.csr_matrix((np.concatenate(entries), (np.concatenate(readings), np.concatenate(owners_of))),
                             shape=(cells, cells))


