"""Terrain scenes as tiles for the height model: reading, spatial splits, normalisation.

A terrain scene is one NetCDF4 file (``*.nc``, written by :mod:`sarheight.terrain`) on a
map grid, dims ``(y, x)``: the SAR images (``sar_reconstructed``, ``sar_geocoded``, dB),
``local_incidence_angle`` (deg), the ``layover`` and ``shadow`` codes
(:class:`~sarheight.masks.MaskCode`), the sparse priors (``prior_height``, ``prior_mask``,
``prior_distance`` in m, ``prior_interpolated``: the priors-only interpolation),
``coarse_height``, the truth ``height`` (m) where there is one, and optionally the other
pass's images (``other_sar_reconstructed``, ``other_sar_geocoded``).

Decisions, in one place:

- **Relative to a reference.** The model predicts ``target - reference`` (default
  reference: ``prior_interpolated``). The priors fix the absolute level; what the network
  has to learn is the relief between them, which is what SAR texture (slopes, layover,
  shadow) can tell. Height-valued input channels (:data:`HEIGHT_CHANNELS`) are given
  relative to the reference too, so that the network never sees the absolute level and a
  model trained in the Alps applies at sea level. With a reference, ``prior_height``
  relative to it is zero at the priors (the interpolation passes through them) and says no
  more than ``prior_mask``; it stays in the default channels so that the same list serves
  ``reference=None``, where heights are absolute.
- **The local incidence angle is a default input.** The scene's SAR is sigma0: the
  coarse DEM's facet areas are divided out of it, and with them the brightness of slopes
  facing the radar, the cue height is read from. The local incidence angle of the coarse
  DEM gives that back (see :data:`DEFAULT_CHANNELS`).
- **In memory.** Scenes are read once (:func:`sarheight.terrain.files.open_scene`) at
  :meth:`TerrainDataModule.setup`, after every file's variables have been checked, and
  only their channels kept: they are small (a 1000 x 1000 scene of six channels is
  24 MB), and random tiles then cost a slice, not a file read.
- **Spatial splits.** By scene (whole scenes to validation and test) or by square blocks
  of ``block_size`` cells (each block to one split); the scenes of one area (``dem_name``:
  both passes and every prior draw of one DEM) share their splits. A training tile lies entirely inside
  training cells; validation and test tiles lie inside one region (scene or block) of
  their split, cut on a fixed grid, the last tile of a row or column padded rather than
  shifted, so that every cell is scored once. Padding cells have no inputs (NaN, 0 after
  normalisation) and no loss. Random tiles of one area are never split apart: neighbouring
  tiles share their relief, which would leak the answer into validation.
- **No augmentation.** Flips and rotations would swap the slopes facing the radar with
  those facing away, which layover and shadow tell apart.
- **Normalisation.** Per-channel mean and standard deviation (NaN-aware) over the
  training cells only; applied by the LightningModule, which keeps them in its
  checkpoint, so that the statistics a model was trained with travel with it. NaN inputs
  become 0 after normalisation (the channel's mean).
- **Refinement: in units of the coarse cell.** With ``reference`` a coarse DEM and
  ``scale="coarse_cell"``, the model learns the fine DEM's departure from the coarse one
  divided by the coarse DEM's cell size L (m), and its height and length inputs (prior
  residuals, distances) are divided by L too; with the scale-free channels of
  :data:`sarheight.terrain.variables.DERIVED_VARIABLES` (slopes, curvature times L, the coarse
  factor, the sigma0 ratio) nothing it sees has a unit of length. What a block mean
  leaves out of a DEM grows with L roughly as the slopes do (terrain is close to
  self-similar over 10 m - 1 km), so one model serves DEMs of 10-100 m cells and coarse
  factors 2-10: trained on 90 m DEMs, it is not asked for corrections of 90 m DEMs'
  size on a 30 m one. Heights come back as ``reference + L * output``.
- **Loss mask.** A cell counts where the target and the reference are finite, inside the
  image (``layover != 255``), every input the model needs is there (the SAR image is
  NaN in shadow: a model of it has nothing to go on), and, unless ``score_shadow``,
  not in shadow (``shadow == 0``).
- **Terrain classes** for the metrics (:data:`TERRAIN_CLASSES`): the masks' grouping of
  the one classification of :mod:`sarheight.terrain.classes`: active layover
  (``layover == 1``), passive layover (``layover == 2``), shadow (active or passive),
  shadow-adjacent (within three cells of shadow, not in it), other; layover wins where
  both apply.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from ..errors import InvalidInputError, MissingInputError
from ..masks import MaskCode
from ..terrain.classes import MASK_CLASSES, MASK_GROUPS, cell_classes
from ..terrain.files import open_scene
from ..terrain.methods import channel_sources, scene_channel
from ..terrain.variables import DATE_PRESENCE_CHANNELS, DATE_SEPARATOR, Scene, coarse_cell_size, date_channel
from .tiles import (
    NO_SPLIT,
    SPLITS,
    ChannelSums,
    TiledDataModule,
    TileSet,
    Window,
    assign_blocks,
    grid_windows,
)

logger = logging.getLogger(__name__)

#: The input channels of the ASK-UNet paper (reconstructed SAR, prior heights, prior mask
#: and the distance to the nearest prior) plus the local incidence angle of the coarse
#: DEM. The scene's SAR is sigma0 normalised by the coarse DEM's facet areas, so the
#: terrain's radiometric signature (bright slopes facing the radar, dark ones facing away),
#: the cue a network reads height from, is divided out of it; the local incidence angle
#: gives it back (the image as geocoding would show it is a function of the two). On
#: held-out real DEMs the SAR without it lowered a U-Net's error below the priors-only
#: interpolation by 1 %, with it by 7.5 %, for the same short training.
DEFAULT_CHANNELS = ("sar_reconstructed", "local_incidence_angle", "prior_height", "prior_mask", "prior_distance")

#: Channels holding heights (m): given relative to the reference channel when there is one.
HEIGHT_CHANNELS = frozenset({"prior_height", "prior_interpolated", "coarse_height", "coarse_corrected", "height",
                             "coarse_bicubic", "coarse_lanczos", "coarse_registered", "coarse_backprojected",
                             "coarse_refined", "clinometry", "inverted", "inverted_filled"})

#: Channels of mask codes (:class:`~sarheight.masks.MaskCode`): as inputs, 255 (outside
#: the image) is a missing value.
MASK_CHANNELS = frozenset({"layover", "shadow"})

#: Channels holding lengths (m): given in coarse cells with ``scale="coarse_cell"``.
LENGTH_CHANNELS = frozenset({"prior_distance", "prior_correction_std"})

#: Channels that are NaN by design where they say nothing: the heights of the priors,
#: given only at the priors, the ratios of observed to simulated sigma0 and the range
#: slopes read from them, which shadow leaves without an observation (a refinement still
#: predicts there, from the coarse DEM), the spread of the priors' correction, which
#: a scene without priors lacks, and the maps of the physics methods (clinometry, the
#: inversion), which have none where the image says nothing. A NaN there is no missing input.
SPARSE_CHANNELS = frozenset({"prior_height", "sar_ratio", "sar_ratio_geocoded", "other_sar_ratio", "sar_slope",
                             "sar_slope_geocoded", "other_sar_slope", "prior_correction_std", "clinometry",
                             "inverted"})

#: Sparse channels that a scene may hold no value of at all: the priors' heights and the
#: spread of their correction, in a scene without priors.
EMPTY_CHANNELS = frozenset({"prior_height", "prior_correction_std"})

#: The scales :func:`scene_arrays` can give heights in: metres (None) or the coarse
#: DEM's cell size (``"coarse_cell"``, see the module's docstring).
SCALES = (None, "coarse_cell")

#: The terrain classes of the per-class metrics, by code (the index): what the masks alone
#: tell apart of the one classification of :mod:`sarheight.terrain.classes`.
TERRAIN_CLASSES = MASK_CLASSES

#: The plainest use of the coarse DEM (resampled bilinearly): the baseline every height
#: training scores beside its reference (which may be a refinement of it already).
BASELINE = "coarse_height"


@dataclass
class SceneArrays:
    """One scene's arrays, ready for tiling (float32 unless said).

    Attributes
    ----------
    name : the scene's name (``scene_name`` attribute, else the file's stem).
    inputs : (C, H, W) the input channels in order, height channels relative to the
        reference; NaN where a channel has no value.
    offset : (H, W) the reference (m), added to the model's output to give the height; 0
        without a reference.
    missing : (H, W) bool, where an input other than the sparse ones, or the reference, is
        NaN: the model has nothing to go on there, its prediction is NaN.
    scale : the unit (m) of the heights and lengths: 1, or the coarse cell size with
        ``scale="coarse_cell"``; heights are ``offset + scale * value``.
    target : (H, W) the target relative to the reference (in ``scale``), or None without a
        target.
    loss_mask : (H, W) bool, the cells the loss and the metrics count, or None.
    classes : (H, W) uint8 codes of :data:`TERRAIN_CLASSES`, or None.
    baseline : (H, W) the coarse DEM resampled bilinearly (m, :data:`BASELINE`; NaN where
        it has none), a second baseline the training scores beside the reference, or None
        where the scene lacks it or it is the reference itself.
    """

    name: str
    inputs: np.ndarray
    offset: np.ndarray
    missing: np.ndarray
    scale: float = 1.0
    target: np.ndarray | None = None
    loss_mask: np.ndarray | None = None
    classes: np.ndarray | None = None
    baseline: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.inputs.shape[1], self.inputs.shape[2]


class SceneHeader(NamedTuple):
    """What :func:`scene_header` reads of a scene file: its name, its variables, the area
    it covers (scenes of one area go to one split) and its attributes."""

    name: str
    variables: tuple[str, ...]
    area: str
    attrs: dict[str, Any]


def scene_header(path: str | os.PathLike[str], group_by: str | None = "dem_name") -> SceneHeader:
    """A scene file's name, variables and area, read without its data (to check every scene
    of a set before reading any).

    Parameters
    ----------
    path : the scene file.
    group_by : the attribute naming the area a scene covers (``dem_name``: the scenes of
        one DEM, whatever their pass, priors or seed, see the same terrain); a scene without
        it, or with ``group_by=None``, is an area of its own.

    Raises
    ------
    MissingInputError : the file does not exist.
    InvalidInputError : it is not a NetCDF-4 file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no scene file {str(path)!r}: build scenes with sarheight.terrain")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            name = scene_name(ds, path)
            area = ds.attrs.get(group_by) if group_by else None
            return SceneHeader(name, tuple(str(v) for v in ds.data_vars), str(area) if area else name, dict(ds.attrs))
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{str(path)!r} is not a readable scene file (NetCDF-4): {error}") from None


def scene_footprint(path: str | os.PathLike[str]) -> tuple[float, float, float, float]:
    """The ground a scene file covers: its grid's bounds as (west, south, east, north),
    degrees of longitude and latitude (WGS84), read from its coordinates and CRS without
    its data (the data module has read and checked the file already)."""
    with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as scene:
        return tuple(float(value) for value in scene.rio.transform_bounds("EPSG:4326"))  # type: ignore[return-value]


def scene_files(scenes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], option: str) -> list[Path]:
    """The scene files ``scenes`` names (a folder, a file, a glob pattern such as
    ``scenes/*_c3_random_*.nc``, or a list of them), folders and patterns expanded to
    their ``*.nc``, sorted, each once; ``option`` names where they were given
    in messages.

    Raises
    ------
    MissingInputError : a path does not exist, or a folder holds no scene file.
    """
    given = [scenes] if isinstance(scenes, (str, os.PathLike)) else list(scenes)
    files: list[Path] = []
    for entry in given:
        path = Path(entry)
        if not path.exists() and glob.has_magic(str(entry)):
            # A pattern (``scenes/*_c3_random_*.nc``) picks some scenes of a folder.
            found = sorted(Path(match) for match in glob.glob(str(entry)) if match.endswith(".nc"))
            if not found:
                raise MissingInputError(f"{option} pattern {str(entry)!r} matches no scene file (*.nc): check the "
                                        "folder and the pattern")
            files += found
        elif path.is_dir():
            found = sorted(path.glob("*.nc"))
            if not found:
                raise MissingInputError(f"no scene file (*.nc) in {str(path)!r}: write scenes there with "
                                        f"sarheight.terrain, or point {option} elsewhere")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MissingInputError(f"{option} names {str(path)!r}, which does not exist: give a folder of "
                                    "scene files or the files")
    return list(dict.fromkeys(files))


def scene_name(ds: xr.Dataset | Scene, path: str | os.PathLike[str] | None = None) -> str:
    """A scene's name: its ``scene_name`` attribute, else the file's stem, else "the scene"."""
    name = ds.attrs.get("scene_name")
    if name:
        return str(name)
    return Path(path).stem if path is not None else "the scene"


def check_scene(variables: Sequence[str], needed: Sequence[str], name: str, needed_by: str) -> None:
    """Refuse a scene whose ``variables`` lack one of ``needed``.

    Raises
    ------
    InvalidInputError : naming the scene, the variables missing and those it has.
    """
    missing = [variable for variable in dict.fromkeys(needed) if variable not in variables]
    if missing:
        raise InvalidInputError(
            f"scene {name!r} lacks {', '.join(repr(v) for v in missing)}, which {needed_by} needs; it has "
            f"{', '.join(sorted(variables))}: write the scene with them, or choose channels it has"
        )


def scene_arrays(ds: xr.Dataset | Scene, channels: Sequence[str], *, reference: str | None, target: str | None = None,
                 name: str | None = None, needed_by: str = "the model", scale: str | None = None,
                 score_shadow: bool = False) -> SceneArrays:
    """Read a scene's inputs (and with ``target``, its target, loss mask and classes).

    Parameters
    ----------
    ds : the scene (see the module's docstring for its variables).
    channels : the input channels, in order: stored variables or derived ones
        (:data:`sarheight.terrain.variables.DERIVED_VARIABLES`).
    reference : the height channel (m) the model predicts relative to, or None.
    target : the height to learn (m), or None to read the inputs only (prediction).
    name : the scene's name in messages; default :func:`scene_name`.
    needed_by : who needs the channels, in messages ("the data module", "checkpoint A.ckpt").
    scale : None (heights in metres) or ``"coarse_cell"`` (heights relative to the
        reference and lengths in units of the coarse DEM's cell size; see the module's
        docstring).
    score_shadow : count shadow cells in the loss mask (where the inputs are there).

    Returns
    -------
    SceneArrays (see there for what each array holds).

    Raises
    ------
    InvalidInputError : a variable is missing (named, with those the scene has), before
        anything is read.
    """
    name = name or scene_name(ds)
    if scale not in SCALES:
        raise InvalidInputError(f"scale must be None or 'coarse_cell', not {scale!r}")
    if scale is not None and reference is None:
        raise InvalidInputError("a scale of heights needs a reference to measure them from: set data.reference "
                                "(coarse_bicubic) or data.scale null")
    needed = [*channels, *([reference] if reference else []), *([target, "layover", "shadow"] if target else [])]
    sources = [source for variable in needed for source in channel_sources(variable)]
    check_scene([str(v) for v in ds.data_vars], sources, name, needed_by)
    for variable in dict.fromkeys(sources):
        if ds[variable].dims != ("y", "x"):
            raise InvalidInputError(f"variable {variable!r} of scene {name!r} has dims {ds[variable].dims}, not "
                                    "('y', 'x'): every channel must lie on the scene's grid")
    unit = coarse_cell_size(ds) if scale == "coarse_cell" else 1.0
    # The channels share what they are derived from (one fitted law, one gradient): made once.
    ds = Scene.of(ds)
    offset = scene_channel(ds, reference) if reference else None
    inputs = np.empty((len(channels), ds.sizes["y"], ds.sizes["x"]), dtype=np.float32)
    missing = ~np.isfinite(offset) if offset is not None else np.zeros(inputs.shape[1:], dtype=bool)
    for index, channel in enumerate(channels):
        values = scene_channel(ds, channel)
        if channel in MASK_CHANNELS:
            # Outside the image is no code but a missing value.
            values[values == MaskCode.OUTSIDE] = np.nan
        if offset is not None and channel in HEIGHT_CHANNELS:
            values = values - offset
        if channel in HEIGHT_CHANNELS | LENGTH_CHANNELS and unit != 1.0:
            values = values / np.float32(unit)
        dated = date_channel(channel) is not None
        if channel not in EMPTY_CHANNELS and not dated and not np.isfinite(values).any():
            # (A scene without priors has no prior height anywhere; every other channel
            # all NaN or infinite is a broken input, which would give a map of nothing.)
            raise InvalidInputError(f"channel {channel!r} of scene {name!r} has no finite value: the scene is broken "
                                    "(a SAR image of NaN, an empty product); write it again from valid inputs")
        inputs[index] = values
        if channel not in SPARSE_CHANNELS and not dated:
            # (A date's channel has no value where the date or its pass is missing: a
            # stack's network takes any number of dates.)
            missing |= ~np.isfinite(values)
    if offset is None:
        offset = np.zeros(inputs.shape[1:], dtype=np.float32)
    arrays = SceneArrays(name=name, inputs=inputs, offset=np.where(np.isfinite(offset), offset, 0).astype(np.float32),
                         missing=missing, scale=float(unit))
    if target:
        layover = ds["layover"].values
        shadow = ds["shadow"].values
        relative = (ds[target].values.astype(np.float32) - (offset if reference else 0)) / np.float32(unit)
        arrays.target = relative.astype(np.float32)
        arrays.loss_mask = (np.isfinite(relative) & (layover != MaskCode.OUTSIDE) & np.isfinite(offset) & ~missing)
        if not score_shadow:
            arrays.loss_mask &= shadow == MaskCode.NONE
        arrays.classes = terrain_classes(layover, shadow)
        if BASELINE in ds.data_vars and reference not in (None, BASELINE):
            arrays.baseline = ds[BASELINE].values.astype(np.float32)
    return arrays


def stack_channels(dates: int, passes: int, date_channels: Sequence[str]) -> list[str]:
    """The channels of the stacks, pass by pass and date by date (see
    :class:`TerrainDataModule`'s ``dates``, ``passes`` and ``date_channels``).

    Raises
    ------
    InvalidInputError : a number of dates or passes out of range, or stacks without a
        channel of the date.
    """
    if isinstance(dates, bool) or not isinstance(dates, int) or dates < 0:
        raise InvalidInputError(f"data.dates must be a number of dates per pass (0: no stack), got {dates!r}")
    if passes not in (1, 2) or isinstance(passes, bool):
        raise InvalidInputError(f"data.passes must be 1 (the own pass) or 2 (with the opposite one), got {passes!r}")
    if not dates:
        if date_channels:
            raise InvalidInputError("data.date_channels were given without data.dates: give the dates per pass")
        return []
    names = list(date_channels)
    if not names or any(name.startswith("other_") or date_channel(name) for name in names):
        raise InvalidInputError(f"data.date_channels {names}: name at least one channel of a date, of the own pass "
                                "(sar_ratio, local_incidence_angle): the opposite pass's follow with other_")
    return [f"{prefix}{name}{DATE_SEPARATOR}{date}" for prefix in ("", "other_")[:passes] for date in range(dates)
            for name in ("sar_present", *names)]


def pool_date_statistics(channels: Sequence[str], sums: ChannelSums) -> None:
    """Give every date's slot of one channel (``sar_ratio@0``, ``sar_ratio@1``...) the
    statistics of all of them together, in place: the dates of a stack are not told apart
    by their position, and a network pooled over them must see each normalised alike."""
    groups: dict[str, list[int]] = {}
    for index, channel in enumerate(channels):
        found = date_channel(channel)
        if found:
            groups.setdefault(found[0], []).append(index)
    for members in groups.values():
        for array in (sums.total, sums.squares, sums.count):
            array[members] = array[members].sum()


def add_scene_cells(sums: ChannelSums, scene: SceneArrays, cells: np.ndarray) -> None:
    """Add the inputs of a scene's ``cells`` (bool, (H, W)) and their valid targets (those
    of the loss mask; in the scene's unit of height) to the sums of the normalisation
    statistics ``sums``, in place."""
    sums.add_inputs(scene.inputs[:, cells])
    sums.add_target(scene.target[cells & scene.loss_mask])


def terrain_classes(layover: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """The codes of :data:`TERRAIN_CLASSES` (uint8) from the layover and shadow masks: the
    masks' grouping of the terrain classes (:data:`sarheight.terrain.classes.MASK_GROUPS`)."""
    return MASK_GROUPS.codes(cell_classes(layover, shadow))


class TerrainScenes(TileSet):
    """Tiles of terrain scenes held in memory: a fixed list (validation, test) or random
    draws inside allowed cells (training).

    Parameters
    ----------
    scenes : the scenes, with targets (:func:`scene_arrays`).
    tile : the side of every tile (cells); windows smaller than it are padded.
    windows : the fixed tiles; or, for random tiles,
    areas : per scene, a bool (H, W) map of the cells a random tile may cover, and
    length : the number of random tiles per epoch.

    Random tiles are drawn as :class:`~sarheight.data.tiles.TileSet` draws them.

    Each item is a dict of tensors: ``inputs`` (C, T, T, NaN where missing or padding),
    ``target`` (1, T, T, relative to the reference, 0 outside the mask), ``mask`` (1, T, T,
    bool), ``offset`` (1, T, T, the reference), ``scale`` (1, 1, 1: heights are ``offset +
    scale * value``), ``classes`` (1, T, T, uint8), ``scene``
    (the scene's index) and ``window`` (row, col, rows, cols).
    """

    def __init__(self, scenes: Sequence[SceneArrays], tile: int, *, windows: Sequence[Window] | None = None,
                 areas: Sequence[np.ndarray] | None = None, length: int | None = None):
        self.scenes = list(scenes)
        # Tiles carry the coarse-DEM baseline only where every scene has it, so that the
        # batches of a run share their keys.
        self.with_baseline = all(scene.baseline is not None for scene in self.scenes)
        super().__init__([scene.shape for scene in self.scenes], tile, windows=windows, areas=areas, length=length)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.check_index(index)
        return self.item(self.windows[index] if self.windows is not None else self.random_tile(index)[0])

    def item(self, window: Window) -> dict[str, torch.Tensor]:
        """The tensors of one tile (see the class's docstring)."""
        scene = self.scenes[window.scene]
        tile = self.tile
        rows = slice(window.row, window.row + window.rows)
        cols = slice(window.col, window.col + window.cols)
        inner = (slice(0, window.rows), slice(0, window.cols))
        inputs = np.full((scene.inputs.shape[0], tile, tile), np.nan, dtype=np.float32)
        inputs[(slice(None), *inner)] = scene.inputs[:, rows, cols]
        target = np.zeros((1, tile, tile), dtype=np.float32)
        mask = np.zeros((1, tile, tile), dtype=bool)
        offset = np.zeros((1, tile, tile), dtype=np.float32)
        classes = np.full((1, tile, tile), TERRAIN_CLASSES.index("other"), dtype=np.uint8)
        mask[(0, *inner)] = scene.loss_mask[rows, cols]
        target[(0, *inner)] = np.where(mask[(0, *inner)], scene.target[rows, cols], 0)
        offset[(0, *inner)] = scene.offset[rows, cols]
        classes[(0, *inner)] = scene.classes[rows, cols]
        item = {
            "inputs": torch.from_numpy(inputs), "target": torch.from_numpy(target), "mask": torch.from_numpy(mask),
            "offset": torch.from_numpy(offset), "classes": torch.from_numpy(classes),
            "scale": torch.full((1, 1, 1), scene.scale, dtype=torch.float32),
            "scene": torch.tensor(window.scene), "window": torch.tensor(window[1:]),
        }
        if self.with_baseline:
            baseline = np.full((1, tile, tile), np.nan, dtype=np.float32)
            baseline[(0, *inner)] = scene.baseline[rows, cols]
            item["baseline"] = torch.from_numpy(baseline)
        return item


class TerrainDataModule(TiledDataModule):
    """Terrain scenes as tiles, split spatially, for the pixel-wise height regression.

    Parameters
    ----------
    scenes : a folder of scene files (``*.nc``), or a list of files and folders.
    channels : the input channels, in order (default :data:`DEFAULT_CHANNELS`); any
        variable of the scenes: ``local_incidence_angle``, ``layover``, ``shadow``,
        ``coarse_height``, ``coarse_corrected``, ``prior_interpolated``, ``sar_geocoded``, and the other pass's
        ``other_sar_reconstructed`` (ascending and descending together see the slopes from
        both sides).
    target : the height to learn (m).
    reference : the height channel the model predicts relative to (see the module's
        docstring), or None for absolute heights.
    scale : None (heights in metres) or ``"coarse_cell"``: heights relative to the
        reference, and lengths, in units of the coarse DEM's cell size (the refinement;
        see the module's docstring).
    score_shadow : count shadow cells in the loss and the metrics, where the model has its
        inputs (a refinement predicts there from the coarse DEM).
    split : "scene" (whole scenes to validation and test) or "block" (square blocks of
        ``block_size`` cells).
    val_scenes, test_scenes : with ``split="scene"``, the validation and test scenes, by
        scene name or area name (e.g. a DEM's); a scene brings the other scenes of its area
        with it. A split not named is drawn from the other areas with its fraction.
    group_by : the scene attribute naming the area a scene covers (default ``dem_name``):
        the scenes of one area (both passes, every prior draw and seed of one DEM see the
        same terrain) go to one split, and with ``split="block"`` a block goes to one split
        in all of them. None: every scene is an area of its own.
    val_fraction, test_fraction : the share of areas (or blocks) drawn for validation and
        test with ``seed``; at least one each when the fraction is above 0.
    block_size : the side of the blocks of ``split="block"`` (cells); at least ``tile``,
        so that training tiles fit inside one block.
    tile : the side of the tiles (cells).
    tiles_per_epoch : random training tiles per epoch.
    batch_size : tiles per batch.
    num_workers : DataLoader worker processes (0: in the main process).
    seed : the seed of the split (the tiles follow Lightning's ``seed_everything``).
    dates, passes, date_channels : the stacks of a network over every image
        (:mod:`sarheight.models.stack`): ``dates`` slots per pass (0: none), of the own pass
        and with ``passes=2`` the opposite one, each the date's presence flag and its
        ``date_channels`` (``sar_ratio``, ``local_incidence_angle``: the other pass's named
        with ``other_``), appended to ``channels`` as ``sar_present@0``, ``sar_ratio@0``...
        (:func:`sarheight.terrain.variables.date_channel`). A scene of fewer dates, or of
        one pass, leaves the other slots empty.
    """

    test_option = "data.test_scenes"
    #: Whether training reads tiles of the files (a data module that draws every training
    #: tile fresh needs none of them for training).
    training_needs_files = True

    def __init__(
        self,
        scenes: str | list[str] = "scenes",
        channels: Sequence[str] = DEFAULT_CHANNELS,
        target: str = "height",
        reference: str | None = "prior_interpolated",
        scale: Literal["coarse_cell"] | None = None,
        score_shadow: bool = False,
        split: Literal["scene", "block"] = "scene",
        val_scenes: list[str] | None = None,
        test_scenes: list[str] | None = None,
        group_by: str | None = "dem_name",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        block_size: int = 256,
        tile: int = 128,
        tiles_per_epoch: int = 512,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        dates: int = 0,
        passes: int = 1,
        date_channels: Sequence[str] = (),
    ):
        channels = list(channels)
        if not channels:
            raise InvalidInputError("data.channels is empty: name at least one input channel")
        dated = [channel for channel in channels if date_channel(channel)]
        if dated:
            raise InvalidInputError(f"data.channels names dates' channels ({', '.join(dated)}): give the stacks with "
                                    "data.dates, data.passes and data.date_channels")
        stacked = stack_channels(dates, passes, date_channels)
        if len(set(channels)) != len(channels):
            raise InvalidInputError(f"data.channels {channels} names a channel twice: name each once")
        if target in channels:
            raise InvalidInputError(f"the target {target!r} is among data.channels: the model would be given the "
                                    "answer; remove it from the channels")
        if reference is not None and reference == target:
            raise InvalidInputError(f"data.reference is the target {target!r}: choose another height channel "
                                    "(prior_interpolated, coarse_height) or null")
        super().__init__(unit="scene", units="scenes", split=split, named=bool(val_scenes or test_scenes),
                         val_fraction=val_fraction, test_fraction=test_fraction, block_size=block_size, tile=tile,
                         tiles_per_epoch=tiles_per_epoch, batch_size=batch_size, num_workers=num_workers, seed=seed)
        if val_fraction + test_fraction >= 1:
            raise InvalidInputError(f"data.val_fraction + data.test_fraction is {val_fraction + test_fraction}: "
                                    "keep it below 1, training needs the rest")
        self.save_hyperparameters()
        #: The stacks' layout (:attr:`date_layout`).
        self.stacks = (int(dates), int(passes), len(date_channels) + 1) if dates else None
        self.scenes = [scenes] if isinstance(scenes, (str, os.PathLike)) else list(scenes)
        # (save_hyperparameters keeps the channels as given, the stacks apart.)
        self.channels = channels + stacked
        self.target = target
        self.reference = reference
        if scale not in SCALES:
            raise InvalidInputError(f"data.scale must be null or coarse_cell, not {scale!r}")
        if scale is not None and reference is None:
            raise InvalidInputError("data.scale coarse_cell measures heights from a reference: set data.reference "
                                    "(e.g. coarse_bicubic) or data.scale null")
        self.scale = scale
        self.score_shadow = bool(score_shadow)
        self.val_scenes = list(val_scenes or [])
        self.test_scenes = list(test_scenes or [])
        self.group_by = group_by
        #: Per scene, the area it covers (its ``group_by`` attribute).
        self.scene_areas: list[str] = []

    # What the regression module reads (sarheight.training.regression.RegressionData).

    @property
    def in_channels(self) -> int:
        """The number of input channels (linked to the model's ``in_channels``)."""
        return len(self.channels)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The terrain classes of the per-class metrics."""
        return TERRAIN_CLASSES

    @property
    def date_layout(self) -> dict[str, int] | None:
        """The stacks after the static channels, as a stack network is built for them
        (``passes``, ``dates``, ``date_channels`` with the presence flag), or None."""
        if self.stacks is None:
            return None
        dates, passes, per_date = self.stacks
        return {"passes": passes, "dates": dates, "date_channels": per_date}

    # Reading, splitting, normalising.

    def scene_files(self) -> list[Path]:
        """The scene files named by ``scenes``, folders expanded to their ``*.nc``, sorted."""
        return scene_files(self.scenes, "data.scenes")

    def split_files(self, split: str) -> list[Path]:
        """The scene files of a split ("train", "val", "test") after :meth:`setup` (with
        ``split="scene"``; block splits share their files between splits: none)."""
        if self.split != "scene" or not getattr(self, "split_scenes", None):
            return []
        wanted = set(self.split_scenes.get(split, ()))
        return [path for path in self.scene_files() if scene_header(path, self.group_by).name in wanted]

    def setup(self, stage: str | None = None) -> None:
        """Read the scenes (once), split them and compute the normalisation statistics from
        the training cells; every scene is checked for every variable before any is read."""
        if self.data is not None:
            return
        files = self.scene_files()
        headers = [scene_header(path, self.group_by) for path in files]
        names = [header.name for header in headers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidInputError(f"scene names {duplicates} occur more than once among {len(files)} scene files: "
                                    "give each scene a unique scene_name")
        needed = self.needed_variables()
        for header in headers:
            check_scene(header.variables, needed, header.name,
                        "the data module (data.channels, data.target, data.reference)")
        self.scene_areas = [header.area for header in headers]
        data = []
        for path, name in zip(files, names, strict=True):
            scene = open_scene(path)
            data.append(scene_arrays(scene, self.channels, reference=self.reference, target=self.target, name=name,
                                     scale=self.scale, score_shadow=self.score_shadow))
            scene.close()
        if self.split == "scene":
            self._split_scenes(data)
        else:
            self._split_blocks(data)
        self.set_statistics(self.training_sums(data), "the training cells hold no valid target (finite, outside "
                            f"shadow, inside the image): check the scenes' {self.target!r} and masks")
        self.pin_date_presence()
        self.data = data
        self.datasets = {"train": self.training_tiles(data)}
        for split in ("val", "test"):
            windows = [window for region in self.regions[split] for window in grid_windows(*region, self.tile)]
            self.datasets[split] = TerrainScenes(data, self.tile, windows=windows)
        logger.info("terrain scenes: %s; %d validation and %d test tiles", {k: len(v) for k, v in
                    self.split_scenes.items()}, len(self.datasets["val"]), len(self.datasets["test"]))

    def _split_scenes(self, data: list[SceneArrays]) -> None:
        names = [scene.name for scene in data]
        members: dict[str, list[str]] = {}
        for name, area in zip(names, self.scene_areas, strict=True):
            members.setdefault(area, []).append(name)
        area_of = dict(zip(names, self.scene_areas, strict=True))

        def areas(given: list[str]) -> list[str]:
            unknown = [name for name in given if name not in members and name not in area_of]
            if unknown:
                raise InvalidInputError(f"data.val_scenes/test_scenes name {unknown}, which are neither scenes "
                                        f"({', '.join(names)}) nor areas ({', '.join(members)})")
            return list(dict.fromkeys(name if name in members else area_of[name] for name in given))

        chosen = {"val": areas(self.val_scenes), "test": areas(self.test_scenes)}
        both = set(chosen["val"]) & set(chosen["test"])
        if both:
            raise InvalidInputError(f"the scenes of {sorted(both)} are named for both validation and test (scenes of "
                                    f"one {self.group_by} go to one split): name each area once")
        rest = [area for area in members if area not in chosen["val"] + chosen["test"]]
        rest = [rest[k] for k in np.random.default_rng(self.seed).permutation(len(rest))]
        for split, fraction in (("val", self.val_fraction), ("test", self.test_fraction)):
            if not chosen[split] and fraction > 0:
                count = max(1, round(fraction * len(members)))
                chosen[split], rest = rest[:count], rest[count:]
        if not rest and self.training_needs_files:
            raise InvalidInputError(
                f"no area is left for training among {len(members)} (validation {chosen['val']}, test "
                f"{chosen['test']}; scenes of one {self.group_by} go to one split): add scenes, lower "
                "data.val_fraction/test_fraction, or set data.split to block"
            )
        chosen["train"] = rest
        self.split_scenes = {split: sorted(name for area in chosen[split] for name in members[area])
                             for split in SPLITS}
        code = {name: SPLITS.index(split) for split, scenes in self.split_scenes.items() for name in scenes}
        self.areas = [np.full(scene.shape, code[scene.name], dtype=np.uint8) for scene in data]
        self.regions = {split: [(index, 0, 0, *scene.shape) for index, scene in enumerate(data)
                                 if scene.name in self.split_scenes[split]] for split in ("val", "test")}

    def _split_blocks(self, data: list[SceneArrays]) -> None:
        size = self.block_size
        shapes: dict[str, tuple[int, int]] = {}
        for scene, area in zip(data, self.scene_areas, strict=True):
            if shapes.setdefault(area, scene.shape) != scene.shape:
                raise InvalidInputError(
                    f"the scenes of {self.group_by} {area!r} lie on grids of different shapes ({shapes[area]} and "
                    f"{scene.shape}): blocks of one area must match across its scenes; use split='scene'"
                )
        # A block of an area goes to one split in all the scenes of that area (both passes
        # of one DEM see the same terrain).
        blocks = [(area, row, col) for area, (rows, cols) in shapes.items()
                  for row in range(0, rows, size) for col in range(0, cols, size)]
        split_of = assign_blocks(blocks, val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                                 seed=self.seed, block_size=size, more="scenes")
        self.areas = [np.full(scene.shape, NO_SPLIT, dtype=np.uint8) for scene in data]
        self.regions = {split: [] for split in SPLITS}
        for index, (scene, area) in enumerate(zip(data, self.scene_areas, strict=True)):
            for row in range(0, scene.shape[0], size):
                for col in range(0, scene.shape[1], size):
                    split = split_of[(area, row, col)]
                    row1, col1 = min(row + size, scene.shape[0]), min(col + size, scene.shape[1])
                    self.areas[index][row:row1, col:col1] = SPLITS.index(split)
                    self.regions[split].append((index, row, col, row1, col1))
        self.split_scenes = {split: sorted({data[index].name for index, *_ in regions})
                             for split, regions in self.regions.items()}

    def needed_variables(self) -> list[str]:
        """The scene variables the channels, the reference, the target and the classes
        are read from."""
        return [source for variable in [*self.channels, *([self.reference] if self.reference else []), self.target,
                                        "layover", "shadow"] for source in channel_sources(variable)]

    def training_tiles(self, data: list[SceneArrays]) -> Dataset:
        """The training tiles: random ones inside the training cells of the scenes."""
        train_areas = [area == SPLITS.index("train") for area in self.areas]
        return TerrainScenes(data, self.tile, areas=train_areas, length=self.tiles_per_epoch)

    def training_sums(self, data: list[SceneArrays], drawn: Sequence[SceneArrays] = ()) -> ChannelSums:
        """The sums of the normalisation statistics: every training cell's inputs and
        valid target (of the files' scenes, and every cell of the ``drawn`` ones), the
        dates' channels pooled."""
        sums = ChannelSums(len(self.channels))
        for scene, area in zip(data, self.areas, strict=True):
            add_scene_cells(sums, scene, area == SPLITS.index("train"))
        for scene in drawn:
            add_scene_cells(sums, scene, np.ones(scene.shape, dtype=bool))
        pool_date_statistics(self.channels, sums)
        return sums

    def pin_date_presence(self) -> None:
        """Give the dates' presence flags the statistics that leave them 0 or 1."""
        if any(date_channel(channel) for channel in self.channels):
            means, stds = self.statistics
            for index, channel in enumerate(self.channels):
                found = date_channel(channel)
                if found and found[0] in DATE_PRESENCE_CHANNELS:
                    # A presence flag reaches the model as it is, 0 or 1: the stack network
                    # pools over the dates flagged present.
                    means[index], stds[index] = 0.0, 1.0
