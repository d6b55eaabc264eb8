"""Height maps from trained checkpoints: overlapping tiles blended without seams, and
ensembles of checkpoints (seeds, folds) with a per-cell standard deviation; terrain
scenes (:func:`predict_height`) and cities of monthly images (:func:`predict_buildings`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import xarray as xr

from ..data.buildings import read_city
from ..data.terrain import scene_arrays, scene_name
from ..dem import check_plausible_heights
from ..errors import InvalidInputError, deferred_warnings
from ..io import write_geotiff
from ..preprocess.sentinel2 import S2_BANDS
from ..raster import cell_centres
from ..scores import rms
from ..terrain.files import open_scene
from ..terrain.methods import method_heights
from ..terrain.variables import Scene, refinement_classes
from ..threads import bar as progress_bar
from .checkpoints import TrainedModel, moved_to, resolve_device, warn_identical_members
from .losses import LOG_STD_RANGE
from .memory import check_forward_memory
from .trained import load_checkpoint


def load_members(checkpoints: Any, *, tile: int, overlap: int, batch_size: int,
                  device: str | torch.device | None) -> tuple[list[TrainedModel], torch.device]:
    """The checkpoints of a prediction loaded on its device, after the tiling options are
    checked (both predictors: before any tile runs)."""
    given = [checkpoints] if isinstance(checkpoints, (str, os.PathLike, TrainedModel)) else list(checkpoints)
    if not given:
        raise InvalidInputError("no checkpoint given: give at least one .ckpt written by sarheight fit")
    if int(tile) != tile or tile < 8:
        raise InvalidInputError(f"tile must be an integer of at least 8 cells, not {tile}")
    if int(overlap) != overlap or not 0 <= overlap <= tile // 2:
        raise InvalidInputError(f"overlap must be an integer from 0 to tile / 2 ({tile // 2}), not {overlap}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, not {batch_size}")
    torch_device = resolve_device(device)
    # Models loaded already (refine_dem's, checked there) are moved, not read again.
    # kind="height" loads only TrainedModels (a classifier is refused there).
    members = [cast(TrainedModel, load_checkpoint(item, device=torch_device, kind="height"))
               if not isinstance(item, TrainedModel) else moved_to(item, torch_device) for item in given]
    warn_identical_members(members)
    return members, torch_device


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """First cells of the tiles along an axis of ``length`` cells (a multiple of ``align``
    when longer than a tile): tiles of ``tile`` cells, starting at multiples of ``align``,
    spread evenly from 0 to ``length - tile``, as few as keep neighbours overlapping by at
    least ``overlap`` cells; one tile (of ``length`` cells) when the axis is no longer than
    a tile."""
    if length <= tile:
        return [0]
    stride = (tile - overlap) // align * align  # the longest aligned step that keeps the overlap
    count = math.ceil((length - tile) / stride) + 1
    span = (length - tile) // align
    return sorted({align * round(k * span / (count - 1)) for k in range(count)})


def blend_window(size: int, overlap: int, interior_start: bool, interior_end: bool) -> np.ndarray:
    """The blending weights (float64, ``size`` cells) of a tile along an axis.

    At an edge shared with a neighbouring tile (``interior_start``, ``interior_end``), the
    weight is 0 over ``overlap / 4`` cells, where the tile's prediction saw its own edge
    instead of the terrain beyond, then rises along a raised cosine over ``overlap / 2``
    cells to 1; at the raster's borders it stays 1 (no tile sees further there). The
    predictions are divided by the sum of the weights: where two neighbours overlap by
    exactly ``overlap`` cells their weights already sum to 1, and every cell has a tile
    whose weight there is positive as long as neighbours overlap by ``overlap / 2`` or more.
    """
    margin, ramp = overlap / 4, overlap / 2
    distance = np.arange(size) + 0.5
    weight = np.ones(size)
    for interior, inward in ((interior_start, distance), (interior_end, size - distance)):
        if interior and ramp > 0:
            t = np.clip((inward - margin) / ramp, 0.0, 1.0)
            weight *= 0.5 - 0.5 * np.cos(np.pi * t)
    return weight


def model_alignment(member: TrainedModel) -> int:
    """The cells a tile's start must be a multiple of for the model to see the pooling grid
    of a single pass: ``2 ** depth`` for the U-Nets (a tile shifted by one cell pools other
    pairs of cells, and its prediction differs everywhere), ``2 ** (stages + 1)`` for
    MBHR-Net's ResNet encoders (stride 2 of the stem, then 2 per further stage), 1 for a
    model without either."""
    depth = member.model_config.get("depth")
    stages = member.model_config.get("stages")
    if isinstance(depth, int) and depth > 0:
        return 2 ** depth
    return 2 ** (stages + 1) if isinstance(stages, int) and stages > 0 else 1


class TileBlending:
    """Overlapping tiles over a raster of ``shape`` cells and their blending weights, for
    running a model on any raster size without seams (see :func:`predict_height`).

    Axes longer than a tile are padded (by reflection, as the models pad) to a multiple of
    ``align``, so that every tile starts on the pooling grid of cell 0; tiles start where
    :func:`tile_starts` puts them and are weighted by :func:`blend_window`.
    """

    def __init__(self, shape: tuple[int, int], tile: int, overlap: int, align: int = 1):
        self.shape = (int(shape[0]), int(shape[1]))
        self.padded = [n if n <= tile else math.ceil(n / align) * align for n in self.shape]
        self.sizes = [min(tile, n) for n in self.padded]
        axes = []
        for n, size in zip(self.padded, self.sizes, strict=True):
            starts = tile_starts(n, tile, overlap, align)
            axes.append([(start, blend_window(size, overlap, index > 0, index < len(starts) - 1))
                         for index, start in enumerate(starts)])
        #: (first row, first column, weights) of every tile.
        self.windows = [(r, c, np.outer(wr, wc)) for r, wr in axes[0] for c, wc in axes[1]]

    @property
    def count(self) -> int:
        """The number of tiles."""
        return len(self.windows)

    def predict(self, member: TrainedModel, inputs: Sequence[np.ndarray], *, device: torch.device,
                batch_size: int = 4, progress: Any = None) -> np.ndarray:
        """The blended prediction (float64, ``shape``) of ``member`` on ``inputs`` (one (C, H, W)
        float32 array per model input, on the raster's grid); ``progress`` is called with
        the number of tiles done after each batch."""
        return self.predict_outputs(member, inputs, device=device, batch_size=batch_size, progress=progress)[0]

    def predict_outputs(self, member: TrainedModel, inputs: Sequence[np.ndarray], *, device: torch.device,
                        batch_size: int = 4, progress: Any = None) -> np.ndarray:
        """As :meth:`predict`, every output channel of the model: (K, *shape) float64."""
        rows, cols = self.shape
        padded = [np.pad(array, ((0, 0), (0, self.padded[0] - rows), (0, self.padded[1] - cols)), mode="reflect")
                  for array in inputs]
        tensors = [torch.from_numpy(np.ascontiguousarray(array)) for array in padded]
        blended = np.zeros((member.outputs, *self.padded))
        total = np.zeros(self.padded)
        height, width = self.sizes
        for first in range(0, len(self.windows), batch_size):
            batch = self.windows[first:first + batch_size]
            stacks = [torch.stack([tensor[:, r:r + height, c:c + width] for r, c, _ in batch]).to(device)
                      for tensor in tensors]
            output = member(*stacks)[:, :member.outputs].double().cpu().numpy()
            for (r, c, weight), values in zip(batch, output, strict=True):
                blended[:, r:r + height, c:c + width] += weight * values
                total[r:r + height, c:c + width] += weight
            if progress is not None:
                progress(len(batch))
        return (blended / total)[:, :rows, :cols]


def predict_height(
    scene: xr.Dataset | Scene | str | os.PathLike[str],
    checkpoints: str | os.PathLike[str] | TrainedModel | Sequence[str | os.PathLike[str] | TrainedModel],
    *,
    tile: int = 256,
    overlap: int = 64,
    progress: bool = True,
    device: str | None = None,
    batch_size: int = 4,
) -> xr.Dataset:
    """Predict the height of a scene with one or several checkpoints of ``sarheight fit``.

    The scene is cut into overlapping tiles of ``tile`` cells (any raster size: the tiles
    are spread evenly and start on the model's pooling grid, :func:`model_alignment`; a
    raster smaller than a tile is one tile) and the tiles' predictions blended with smooth
    weights (:func:`blend_window`), so the map has no seams. A tile's prediction counts
    only ``overlap / 4`` cells or more inside its edges shared with other tiles; where the
    model's receptive field is no wider than that, the map equals a single pass over the
    whole raster (the plain U-Net of depth 2 sees 24 cells each way, of depth 3, 58; LSK's
    dilated kernels see much further, and ECA's channel attention pools the whole tile:
    their tiles differ slightly near the edges, and the blending hides it).

    Parameters
    ----------
    scene : a scene (Dataset) or its file (see :mod:`sarheight.data.terrain`).
    checkpoints : one or several checkpoints, trained on the same channels with the same
        reference (seeds or folds of one experiment): paths, or models loaded with
        :func:`~sarheight.training.trained.load_checkpoint` (not read again).
    tile : the tile side (cells), a multiple of ``2 ** depth`` of the U-Nets.
    overlap : the least overlap of neighbouring tiles (cells), at most ``tile / 2``.
    progress : show a progress bar (outside a terminal, a line every 30 s).
    device : "cpu", "cuda"... (default: CUDA when there is one).
    batch_size : tiles per forward pass.

    Returns
    -------
    xr.Dataset on the scene's grid (coordinates and CRS kept): ``height`` (float32, m),
    the ensemble mean, NaN where an input the model needs is missing (the reference, or a
    non-sparse channel: the SAR image in shadow and outside the image; fill from
    ``prior_interpolated`` where a full map is needed); ``height_std`` (float32, m), the
    standard deviation of the height's error: with models of a spread head
    (``model_options.uncertainty``), the root of their mean variance plus the members'
    disagreement (sample variance, ddof=1), each member's spread scaled per terrain class
    as its calibration says (:mod:`sarheight.training.calibration`, so that about 68 % of
    the validation cells lie within one standard deviation); with models without that
    head, the members' disagreement alone, and with one such checkpoint there is no
    ``height_std`` (a single network of one output gives no spread, and a map of zeros
    would read as certainty). A calibrated member's correction of its reference is
    scaled per terrain class by its calibration's ``keep`` (1: as trained, 0: the
    reference): where the validation scenes showed the network worse than its reference;
    and where they showed a non-learned map the network stacks better than it (the
    calibration's ``choice``), that map's heights replace the member's in the class
    (:func:`chosen_corrections`).
    Attributes name the checkpoints, channels and reference, and give ``network_share``:
    the mean weight of the members' own corrections over the cells predicted (1 without a
    calibration; near 0, the map is the reference, or the maps chosen, under the network's
    name; :func:`network_weights`).

    Raises
    ------
    InvalidInputError : a checkpoint that is not one of sarheight, checkpoints of
        different channels or references, a scene lacking a channel the checkpoints need,
        bad ``tile``/``overlap``; all checked before any tile runs.
    """
    members, torch_device = load_members(checkpoints, tile=tile, overlap=overlap, batch_size=batch_size,
                                          device=device)
    first = members[0]
    align = max(model_alignment(member) for member in members)
    if tile % align or tile - overlap < align:
        raise InvalidInputError(
            f"tile ({tile}) must be a multiple of {align} (2 ** depth of the model) and exceed overlap ({overlap}) "
            f"by at least {align}: for example tile {max(align, tile // align * align) * 2} and overlap "
            f"{max(align, tile // align * align) // 2}"
        )
    for member in members[1:]:
        if (member.channels, member.reference, member.scale) != (first.channels, first.reference, first.scale):
            raise InvalidInputError(
                f"checkpoints {str(first.path)!r} and {str(member.path)!r} differ in their inputs (channels "
                f"{list(first.channels)} and {list(member.channels)}, references {first.reference!r} and "
                f"{member.reference!r}): an ensemble needs members trained on the same channels"
            )
    source = None if isinstance(scene, (xr.Dataset, Scene)) else Path(scene)
    # Held as a Scene: the channels and the classes share what they are derived from.
    ds = Scene.of(scene if isinstance(scene, (xr.Dataset, Scene)) else open_scene(Path(scene)))
    name = scene_name(ds, source)
    # Inputs (float32), the blend's weights and the ensemble's running sums (float64) over
    # the whole scene, beside one batch of tiles through the largest member.
    cells = ds.sizes["y"] * ds.sizes["x"]
    check_forward_memory(max(members, key=lambda member: sum(p.numel() for p in member.model.parameters())).model,
                         [(batch_size, len(first.channels), tile, tile)],
                         f"predicting scene {name!r} ({ds.sizes['y']} x {ds.sizes['x']} cells) in batches of "
                         f"{batch_size} tiles of {tile} x {tile}", training=False,
                         extra_bytes=cells * (4 * (len(first.channels) + 2) + 8 * 4),
                         hint=": lower --tile, or crop the scene")
    arrays = scene_arrays(ds, first.channels, reference=first.reference, name=name,
                          needed_by=f"checkpoint {first.path.name!r}", scale=first.scale)
    coords = {"y": ds["y"].values, "x": ds["x"].values}
    crs = ds.rio.crs

    rows, cols = arrays.shape
    tiling = TileBlending((rows, cols), tile, overlap, align)
    calibrated = any(member.calibration for member in members)
    spreads = any(member.outputs == 2 for member in members)
    classes = refinement_classes(ds) if calibrated else None
    mean = np.zeros((rows, cols))
    spread = np.zeros((rows, cols))  # Welford's sum of squared deviations across members
    variance = np.zeros((rows, cols))  # the sum of the members' own variances
    own = np.zeros((rows, cols))  # the sum of the weights of the members' own corrections
    with deferred_warnings(), progress_bar(total=len(members) * tiling.count, desc="predicting height", unit="tile",
                                           enabled=progress) as bar:
        for count, member in enumerate(members, start=1):
            outputs = tiling.predict_outputs(member, [arrays.inputs], device=torch_device, batch_size=batch_size,
                                             progress=bar.update)
            correction = arrays.scale * outputs[0]
            if member.calibration and classes is not None:
                correction = correction * np.asarray(member.calibration["keep"], dtype=np.float64)[classes]
                correction = chosen_corrections(ds, member.calibration, classes, correction, arrays.offset)
                own += network_weights(ds, member.calibration, classes)
            else:
                own += 1.0
            if member.outputs == 2:
                std = arrays.scale * np.exp(np.clip(outputs[1], *LOG_STD_RANGE))
                if member.calibration and classes is not None:
                    std = std * np.asarray(member.calibration["std_scale"], dtype=np.float64)[classes]
                variance += std**2
            delta = correction - mean
            mean += delta / count
            spread += delta * (correction - mean)

    height = np.where(arrays.missing, np.nan, mean + arrays.offset).astype(np.float32)
    wanted = ~np.asarray(arrays.missing, dtype=bool)
    if wanted.any() and not np.isfinite(height[wanted]).any():
        # Weights that are finite but absurd (scaled by 1e30) overflow every output.
        raise InvalidInputError(
            f"the model gave no finite height anywhere on {name!r} (its outputs overflow: checkpoint"
            f"{'s' if len(members) > 1 else ''} {', '.join(repr(str(member.path)) for member in members)}): the "
            "weights are broken; give a checkpoint of a training that converged")
    check_plausible_heights(height, None if first.reference is None else arrays.offset,
                            f"the map the checkpoint{'s' if len(members) > 1 else ''} "
                            f"{', '.join(repr(Path(member.path).name) for member in members)} predicted on {name!r}")
    variables = {"height": (("y", "x"), height, {"units": "m", "long_name": "predicted height"
                                                 + (" (ensemble mean)" if len(members) > 1 else "")})}
    if spreads or len(members) > 1:
        # The members' own spreads (their mean variance) and their disagreement.
        total = variance / len(members) + (spread / (len(members) - 1) if len(members) > 1 else 0.0)
        std = np.where(arrays.missing, np.nan, np.sqrt(total)).astype(np.float32)
        what = ("standard deviation of the height's error" + (", calibrated" if calibrated else "")
                if spreads else "standard deviation of the ensemble's heights")
        variables["height_std"] = (("y", "x"), std, {"units": "m", "long_name": what})
    out = xr.Dataset(variables, coords=coords, attrs={
        "scene_name": name,
        "checkpoints": "; ".join(str(member.path) for member in members),
        "members": len(members),
        "model": first.model_name,
        "channels": ", ".join(first.channels),
        "reference": first.reference or "none",
        "tile": int(tile),
        "overlap": int(overlap),
        "calibrated": int(calibrated),
        # Where the calibration hands the reference, or a map it chose, on instead.
        "network_share": float(np.mean(own[wanted]) / len(members)) if wanted.any() else 1.0,
    })
    # The scene's transform travels with the map: a scene of one row or column has no
    # spacing in its coordinates to recompute it from.
    return out.rio.write_crs(crs).rio.write_transform(ds.rio.transform()) if crs is not None else out


def prediction_quicklook(scene: xr.Dataset, result: xr.Dataset, path: str | os.PathLike[str], *,
                         title: str | None = None, baseline: str | None = None) -> Path:
    """A PNG of a prediction (:func:`predict_height`) beside its scene: the truth, the
    baseline the prediction is measured against, the prediction, their errors and the
    ensemble's standard deviation, as far as the scene and the result have them. Heights
    share one colour scale (1st-99th percentile), errors one symmetric scale.

    ``baseline``: the scene's variable shown as the method without a model (default the
    result's reference where it is a coarse DEM, else ``prior_interpolated``)."""
    from ..plots import quicklook

    reference = str(result.attrs.get("reference", ""))
    if baseline is None:
        baseline = reference if reference.startswith("coarse") else "prior_interpolated"
    label = {"prior_interpolated": "priors-only interpolation", "coarse_height": "coarse DEM, bilinear",
             "coarse_bicubic": "coarse DEM, bicubic", "coarse_lanczos": "coarse DEM, Lanczos",
             "coarse_refined": "back-projection + kriged priors"}.get(
        baseline, baseline.replace("_", " "))
    height = result["height"].values
    truth = scene["height"].values if "height" in scene else None
    shown = [values for values in (height, truth) if values is not None]
    low, high = (float(np.nanpercentile(np.concatenate([v.ravel() for v in shown]), p)) for p in (1, 99))
    terrain = {"cmap": "terrain", "vmin": low, "vmax": high, "colorbar": "m"}
    panels = []
    errors = {}
    if truth is not None:
        panels.append(("truth height (m)", truth, terrain))
        errors["prediction"] = height - truth
        if baseline in scene:
            errors["baseline"] = scene[baseline].values - truth
    if baseline in scene:
        panels.append((f"{label} (m){_rmse_title(errors.get('baseline'))}", scene[baseline].values, terrain))
    panels.append((f"predicted height (m){_rmse_title(errors.get('prediction'))}", height, terrain))
    if errors:
        limit = max(float(np.nanpercentile(np.abs(e), 99)) for e in errors.values()) or 1.0
        diverging = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit, "colorbar": "m (red: above the truth)"}
        if "baseline" in errors:
            panels.append((f"{label} - truth (m){_rmse_title(errors['baseline'])}", errors["baseline"], diverging))
        panels.append((f"prediction - truth (m){_rmse_title(errors['prediction'])}", errors["prediction"], diverging))
    if "height_std" in result:
        panels.append((_spread_title(result.attrs["members"]), result["height_std"].values,
                       {"cmap": "magma", "vmin": 0, "colorbar": "m"}))
    return quicklook(panels, path, title=title or f"sarheight terrain predict: {result.attrs['scene_name']}")


def _rmse_title(error: np.ndarray | None) -> str:
    """", RMSE x.xx m" of an error map, for a panel's title ("" without one)."""
    if error is None or not np.isfinite(error).any():
        return ""
    return f"\nRMSE {rms(error):.2f} m"


def _spread_title(members: int) -> str:
    return f"std of {members} checkpoints (m)" if members > 1 else "the model's calibrated spread (m)"


def buildings_quicklook(city_folder: str | os.PathLike[str], result: xr.Dataset, path: str | os.PathLike[str], *,
                        title: str | None = None) -> Path:
    """A PNG of a building-height prediction (:func:`predict_buildings`) beside its city:
    Sentinel-2 true colour and Sentinel-1 VV of the first month, the truth where the folder
    has ``height.tif``, the prediction, its error and the ensemble's standard deviation.
    Heights share one colour scale (0 to the 99.5th percentile)."""
    from ..plots import quicklook

    city = read_city(city_folder, needs_height=False)
    height = result["height"].values
    truth = city.height if np.isfinite(city.height).any() else None
    shown = np.concatenate([v[np.isfinite(v)] for v in (height, truth) if v is not None])
    top = float(np.percentile(shown, 99.5)) if shown.size else 1.0
    heights = {"cmap": "viridis", "vmin": 0.0, "vmax": top or 1.0, "colorbar": "m"}
    rgb = city.s2[0][[S2_BANDS.index(band) for band in ("B4", "B3", "B2")]].transpose(1, 2, 0)
    # A plain linear stretch of reflectance to its 98th percentile: what a true-colour view does.
    rgb = np.clip(np.nan_to_num(rgb / max(float(np.nanpercentile(rgb, 98)), 1e-6)), 0.0, 1.0)
    vv = city.s1[0][0]
    low, high = (float(np.nanpercentile(vv, p)) for p in (2, 98))
    panels = [(f"Sentinel-2 true colour ({city.months[0]})", rgb, {}),
              (f"Sentinel-1 VV (dB, {city.months[0]})", vv, {"cmap": "gray", "vmin": low, "vmax": high,
                                                            "colorbar": "dB"})]
    error = height - truth if truth is not None else None
    if truth is not None:
        panels.append(("true building height (m)", truth, heights))
    panels.append((f"predicted height (m, mean of {len(city.months)} months){_rmse_title(error)}", height, heights))
    if error is not None:
        limit = float(np.nanpercentile(np.abs(error), 99)) or 1.0
        panels.append((f"prediction - truth (m){_rmse_title(error)}", error,
                       {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit, "colorbar": "m (red: above the truth)"}))
    if "height_std" in result:
        panels.append((_spread_title(result.attrs["members"]), result["height_std"].values,
                       {"cmap": "magma", "vmin": 0, "colorbar": "m"}))
    return quicklook(panels, path, title=title or f"sarheight buildings predict: {city.name}")


def predict_buildings(
    city_folder: str | os.PathLike[str],
    checkpoints: str | os.PathLike[str] | TrainedModel | Sequence[str | os.PathLike[str] | TrainedModel],
    *,
    tile: int = 64,
    overlap: int = 16,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    device: str | None = None,
    batch_size: int = 4,
) -> xr.Dataset:
    """Predict the building height of a city folder with one or several checkpoints of
    ``sarheight fit`` trained on :class:`~sarheight.data.buildings.BuildingHeightDataModule`.

    Every month of the folder (``s1_YYYYMM.tif`` with ``s2_YYYYMM.tif``; see
    :mod:`sarheight.data.buildings`, ``height.tif`` not needed) is predicted on overlapping
    tiles blended without seams (:class:`TileBlending`, any raster size), and a member's
    map is the mean over the months whose inputs are all finite at a cell (the months are
    samples of one truth: their mean averages out clouds and speckle). With several
    checkpoints the result is the members' mean, with their standard deviation.

    Parameters
    ----------
    city_folder : the city's folder.
    checkpoints : one or several checkpoints with the same input groups (paths, or models
        loaded with :func:`~sarheight.training.trained.load_checkpoint`).
    tile : the tile side (cells), a multiple of ``2 ** (stages + 1)`` of MBHR-Net.
    overlap : the least overlap of neighbouring tiles (cells), at most ``tile / 2``.
    out : a GeoTIFF to write the result to (bands ``height`` and, with an ensemble,
        ``height_std``), atomically, its folder made if missing; None for none.
    progress : show a progress bar (outside a terminal, a line every 30 s).
    device : "cpu", "cuda"... (default: CUDA when there is one).
    batch_size : tiles per forward pass.

    Returns
    -------
    xr.Dataset on the city's grid with its CRS: ``height`` (float32, m, the mean over
    months and members; NaN where no month has all inputs), with several checkpoints
    ``height_std`` (float32, m, sample standard deviation of the members' maps); attrs
    name the city, months, checkpoints, tile and overlap.

    Raises
    ------
    MissingInputError, InvalidInputError : a missing folder or checkpoint, a checkpoint
        without Sentinel-1/2 input groups, members of different inputs, unpaired or
        mismatched rasters, bad ``tile``/``overlap``; all before any tile runs.
    """
    members, torch_device = load_members(checkpoints, tile=tile, overlap=overlap, batch_size=batch_size,
                                          device=device)
    first = members[0]
    for member in members:
        if list(member.input_groups or {}) != ["s1", "s2"]:
            raise InvalidInputError(f"checkpoint {str(member.path)!r} takes the inputs "
                                    f"{member.input_groups or 'inputs'}"
                                    ", not Sentinel-1 and Sentinel-2 (s1, s2): give a building-height checkpoint "
                                    "(sarheight fit --config buildings_mbhr)")
        if member.channels != first.channels or member.input_groups != first.input_groups:
            raise InvalidInputError(f"checkpoints {str(first.path)!r} and {str(member.path)!r} differ in their "
                                    f"channels ({list(first.channels)} and {list(member.channels)})")
    align = max(model_alignment(member) for member in members)
    if tile % align or tile - overlap < align:
        raise InvalidInputError(f"tile ({tile}) must be a multiple of {align} (2 ** (stages + 1) of the model) and "
                                f"exceed overlap ({overlap}) by at least {align}")
    city = read_city(city_folder, needs_height=False)
    tiling = TileBlending(city.shape, tile, overlap, align)
    # A single-sensor model (a group of 0 channels) gets that sensor's input without
    # channels, and predicts wherever its own sensor is valid.
    groups = first.input_groups or {}
    images = {name: [image[:groups[name]] for image in source] for name, source in (("s1", city.s1), ("s2", city.s2))}
    for name in groups:
        for channel in range(groups[name]):
            if not any(np.isfinite(image[channel]).any() for image in images[name]):
                raise InvalidInputError(f"city {city.name!r}: {name.upper()} channel {channel} has no finite value in "
                                        "any month (NaN or infinite everywhere): the folder's rasters are broken; "
                                        "write them again from valid products")
    valid = [np.logical_and.reduce([np.isfinite(images[name][k]).all(0) for name in groups if groups[name]])
             for k in range(len(city.months))]
    months_counted = np.sum(valid, axis=0)
    mean = np.zeros(city.shape)
    spread = np.zeros(city.shape)
    with deferred_warnings(), progress_bar(total=len(members) * len(city.months) * tiling.count,
                                           desc="predicting building height", unit="tile", enabled=progress) as bar:
        for count, member in enumerate(members, start=1):
            summed = np.zeros(city.shape)
            for month in range(len(city.months)):
                values = tiling.predict(member, [images["s1"][month], images["s2"][month]], device=torch_device,
                                        batch_size=batch_size, progress=bar.update)
                summed += np.where(valid[month], values, 0.0)
            monthly = summed / np.maximum(months_counted, 1)
            delta = monthly - mean
            mean += delta / count
            spread += delta * (monthly - mean)
    missing = months_counted == 0
    rows, cols = city.shape
    transform = city.transform
    centre_y, centre_x = cell_centres(transform, (rows, cols))
    coords = {"y": centre_y, "x": centre_x}
    variables = {"height": (("y", "x"), np.where(missing, np.nan, mean).astype(np.float32),
                            {"units": "m", "long_name": "predicted building height (mean over months"
                             + (" and checkpoints)" if len(members) > 1 else ")")})}
    if len(members) > 1:
        std = np.where(missing, np.nan, np.sqrt(spread / (len(members) - 1))).astype(np.float32)
        variables["height_std"] = (("y", "x"), std, {"units": "m", "long_name": "standard deviation of the "
                                                     "ensemble's building heights"})
    result = xr.Dataset(variables, coords=coords, attrs={
        "city": city.name, "months": ", ".join(city.months), "checkpoints": "; ".join(str(m.path) for m in members),
        "members": len(members), "model": first.model_name, "tile": int(tile), "overlap": int(overlap),
    })
    result = result.rio.write_crs(city.crs).rio.write_transform(transform)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_geotiff(result, out)
    return result


def network_weights(scene: xr.Dataset | Scene, calibration: dict[str, Any], classes: np.ndarray) -> np.ndarray:
    """Per cell, how much of a calibrated member's own correction its height holds: the
    class's ``keep``, 0 where the class chose a non-learned map that has a value there
    (:func:`chosen_corrections`)."""
    weights = np.asarray(calibration["keep"], dtype=np.float64)[classes]
    for cells, _ in _chosen_maps(scene, calibration, classes):
        weights[cells] = 0.0
    return weights


def _chosen_maps(scene: xr.Dataset | Scene, calibration: dict[str, Any], classes: np.ndarray
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per non-learned map a calibration chose for some terrain classes: the cells where it
    replaces the network (those classes, where the map has a value) and its heights (m)."""
    for name in sorted(set(calibration.get("choice") or ()) - {"network"}):
        codes = [index for index, chosen in enumerate(calibration["choice"]) if chosen == name]
        heights = method_heights(scene, name)
        yield np.isin(classes, codes) & np.isfinite(heights), heights


def chosen_corrections(scene: xr.Dataset | Scene, calibration: dict[str, Any], classes: np.ndarray,
                       correction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A member's correction of its ``reference`` (m) with, in each terrain class whose
    calibration chose a non-learned map over the network (``calibration["choice"]``,
    :mod:`sarheight.training.calibration`), that map's departure from the reference
    instead, where the map has a value."""
    choice = calibration.get("choice")
    if not choice or all(name == "network" for name in choice):
        return correction
    result = np.array(correction, dtype=np.float64)
    for cells, heights in _chosen_maps(scene, calibration, classes):
        result[cells] = heights[cells] - reference[cells]
    return result
