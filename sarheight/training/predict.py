"""Height maps from trained checkpoints: overlapping tiles blended without seams, and
ensembles of checkpoints (seeds, folds) with a per-cell standard deviation."""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ..data.terrain import scene_arrays, scene_name
from ..errors import InvalidInputError, MissingInputError
from ..io import atomic_path
from ..models import build
from ..terrain import open_scene
from .regression import CHECKPOINT_FORMAT, CHECKPOINT_KEY, normalise_inputs


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with what it needs to run: its channels and their statistics.

    Calling it on raw inputs (N, C, H, W; NaN where missing) gives the prediction (N, 1,
    H, W) in metres, relative to ``reference`` when there is one.
    """

    path: Path
    model: torch.nn.Module
    model_name: str
    model_config: dict[str, Any]
    channels: tuple[str, ...]
    reference: str | None
    target: str
    input_mean: torch.Tensor
    input_std: torch.Tensor

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(normalise_inputs(inputs, self.input_mean, self.input_std))


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> TrainedModel:
    """Load a checkpoint of ``sarheight fit`` with ``torch.load(weights_only=True)`` (no
    code runs from the file) and rebuild its model through :func:`sarheight.models.build`.

    Parameters
    ----------
    path : the checkpoint (``.ckpt``).
    device : where the model runs.

    Returns
    -------
    TrainedModel, in evaluation mode.

    Raises
    ------
    MissingInputError : the file does not exist.
    InvalidInputError : it is not a PyTorch checkpoint, holds more than tensors and plain
        values, or is not one of sarheight (no channel list and statistics).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"checkpoint {str(path)!r} does not exist: give a .ckpt written by sarheight fit")
    # torch.save writes a zip archive; anything else is no checkpoint (the unpickler would
    # report a text file as unsafe code).
    if not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{str(path)!r} is not a PyTorch checkpoint (no zip archive of torch.save): give a "
                                ".ckpt written by sarheight fit")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise InvalidInputError(f"{str(path)!r} holds Python objects beyond tensors and plain values: it is not a "
                                "sarheight checkpoint (those load with weights_only=True)") from None
    except Exception as error:
        raise InvalidInputError(f"{str(path)!r} is not a readable PyTorch checkpoint ({type(error).__name__}: "
                                f"{error}): give a .ckpt written by sarheight fit") from None
    stored = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(stored, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise InvalidInputError(f"{str(path)!r} is a PyTorch checkpoint but not of sarheight: it lacks the channel "
                                "list and normalisation statistics prediction needs; train with sarheight fit")
    if int(stored.get("format", 0)) > CHECKPOINT_FORMAT:
        raise InvalidInputError(f"{str(path)!r} was written by a newer sarheight (checkpoint format "
                                f"{stored.get('format')}): upgrade sarheight")
    missing = [key for key in ("channels", "input_mean", "input_std", "model", "model_config", "target")
               if stored.get(key) is None]
    if missing:
        raise InvalidInputError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}: it was saved before training "
                                "started; use a checkpoint written during or after sarheight fit")
    model = build(stored["model"], **stored["model_config"])
    weights = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()
               if key.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise InvalidInputError(f"the weights of {str(path)!r} do not fit its model {stored['model']!r} "
                                f"{stored['model_config']}: {str(error).splitlines()[0]}") from None
    model.to(device).eval()
    channels = tuple(stored["channels"])
    if len(stored["input_mean"]) != len(channels) or len(stored["input_std"]) != len(channels):
        raise InvalidInputError(f"checkpoint {str(path)!r} has statistics of {len(stored['input_mean'])} channels for "
                                f"{len(channels)} channels: the file is inconsistent, train again")
    return TrainedModel(
        path=path, model=model, model_name=str(stored["model"]), model_config=dict(stored["model_config"]),
        channels=channels, reference=stored.get("reference"), target=str(stored["target"]),
        input_mean=torch.tensor(stored["input_mean"], dtype=torch.float32, device=device),
        input_std=torch.tensor(stored["input_std"], dtype=torch.float32, device=device),
    )


def export_checkpoint(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write the part of a training checkpoint that prediction needs: the model's weights,
    its channels, statistics and configuration (no optimiser state, about a third of the
    size), written atomically.

    Parameters
    ----------
    source : a checkpoint of ``sarheight fit`` (checked as :func:`load_checkpoint` does).
    target : the file to write (``.ckpt``); it loads with :func:`load_checkpoint`.

    Returns
    -------
    Path of ``target``.
    """
    load_checkpoint(source)  # the same clear errors as prediction, before writing anything
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    kept = {key: checkpoint[key] for key in ("state_dict", CHECKPOINT_KEY, "epoch", "global_step")
            if key in checkpoint}
    kept["state_dict"] = {key: value for key, value in kept["state_dict"].items() if key.startswith("model.")}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        torch.save(kept, temporary)
    return target


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
    pairs of cells, and its prediction differs everywhere), 1 for a model without ``depth``."""
    depth = member.model_config.get("depth")
    return 2 ** depth if isinstance(depth, int) and depth > 0 else 1


def predict_height(
    scene: xr.Dataset | str | os.PathLike[str],
    checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
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
        reference (seeds or folds of one experiment).
    tile : the tile side (cells), a multiple of ``2 ** depth`` of the U-Nets.
    overlap : the least overlap of neighbouring tiles (cells), at most ``tile / 2``.
    progress : show a progress bar (tqdm; silent when not a terminal).
    device : "cpu", "cuda"... (default: CUDA when there is one).
    batch_size : tiles per forward pass.

    Returns
    -------
    xr.Dataset on the scene's grid (coordinates and CRS kept): ``height`` (float32, m),
    the ensemble mean, NaN where an input the model needs is missing (the reference, or a
    non-sparse channel: the SAR image in shadow and outside the image; fill from
    ``prior_interpolated`` where a full map is needed); with several checkpoints
    ``height_std`` (float32, m), the per-cell standard deviation of the members'
    predictions (sample, ddof=1), an uncertainty none of the priors gives. With one
    checkpoint there is no ``height_std``: a single network gives no spread, and a map of
    zeros would read as certainty. Attributes name the checkpoints, channels and reference.

    Raises
    ------
    InvalidInputError : a checkpoint that is not one of sarheight, checkpoints of
        different channels or references, a scene lacking a channel the checkpoints need,
        bad ``tile``/``overlap``; all checked before any tile runs.
    """
    paths = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    if not paths:
        raise InvalidInputError("no checkpoint given: give at least one .ckpt written by sarheight fit")
    if int(tile) != tile or tile < 8:
        raise InvalidInputError(f"tile must be an integer of at least 8 cells, not {tile}")
    if int(overlap) != overlap or not 0 <= overlap <= tile // 2:
        raise InvalidInputError(f"overlap must be an integer from 0 to tile / 2 ({tile // 2}), not {overlap}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, not {batch_size}")
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    members = [load_checkpoint(path, device=torch_device) for path in paths]
    first = members[0]
    align = max(model_alignment(member) for member in members)
    if tile % align or tile - overlap < align:
        raise InvalidInputError(
            f"tile ({tile}) must be a multiple of {align} (2 ** depth of the model) and exceed overlap ({overlap}) "
            f"by at least {align}: for example tile {max(align, tile // align * align) * 2} and overlap "
            f"{max(align, tile // align * align) // 2}"
        )
    for member in members[1:]:
        if member.channels != first.channels or member.reference != first.reference:
            raise InvalidInputError(
                f"checkpoints {str(first.path)!r} and {str(member.path)!r} differ in their inputs (channels "
                f"{list(first.channels)} and {list(member.channels)}, references {first.reference!r} and "
                f"{member.reference!r}): an ensemble needs members trained on the same channels"
            )
    source = None if isinstance(scene, xr.Dataset) else Path(scene)
    ds = scene if source is None else open_scene(source)
    name = scene_name(ds, source)
    arrays = scene_arrays(ds, first.channels, reference=first.reference, name=name,
                          needed_by=f"checkpoint {first.path.name!r}")
    coords = {"y": ds["y"].values, "x": ds["x"].values}
    crs = ds.rio.crs

    rows, cols = arrays.shape
    # Longer axes are padded (by reflection, as the models pad) to a multiple of the
    # alignment, so that every tile starts on the pooling grid of cell 0.
    padded = [n if n <= tile else math.ceil(n / align) * align for n in (rows, cols)]
    inputs = np.pad(arrays.inputs, ((0, 0), (0, padded[0] - rows), (0, padded[1] - cols)), mode="reflect")
    inputs = torch.from_numpy(inputs)
    sizes = [min(tile, n) for n in padded]
    axes = []
    for n, size in zip(padded, sizes, strict=True):
        starts = tile_starts(n, tile, overlap, align)
        axes.append([(start, blend_window(size, overlap, index > 0, index < len(starts) - 1))
                     for index, start in enumerate(starts)])
    windows = [(r, c, np.outer(wr, wc)) for r, wr in axes[0] for c, wc in axes[1]]
    mean = np.zeros(padded)
    spread = np.zeros(padded)  # Welford's sum of squared deviations across members
    with tqdm(total=len(members) * len(windows), desc="predicting height", unit="tile",
              disable=None if progress else True) as bar:
        for count, member in enumerate(members, start=1):
            blended = np.zeros(padded)
            total = np.zeros(padded)
            for first_window in range(0, len(windows), batch_size):
                batch = windows[first_window:first_window + batch_size]
                stack = torch.stack([inputs[:, r:r + sizes[0], c:c + sizes[1]] for r, c, _ in batch])
                output = member(stack.to(torch_device))[:, 0].double().cpu().numpy()
                for (r, c, weight), values in zip(batch, output, strict=True):
                    blended[r:r + sizes[0], c:c + sizes[1]] += weight * values
                    total[r:r + sizes[0], c:c + sizes[1]] += weight
                bar.update(len(batch))
            blended /= total
            delta = blended - mean
            mean += delta / count
            spread += delta * (blended - mean)
    mean, spread = mean[:rows, :cols], spread[:rows, :cols]

    height = np.where(arrays.missing, np.nan, mean + arrays.offset).astype(np.float32)
    variables = {"height": (("y", "x"), height, {"units": "m", "long_name": "predicted height"
                                                 + (" (ensemble mean)" if len(members) > 1 else "")})}
    if len(members) > 1:
        std = np.where(arrays.missing, np.nan, np.sqrt(spread / (len(members) - 1))).astype(np.float32)
        variables["height_std"] = (("y", "x"), std, {"units": "m", "long_name": "standard deviation of the "
                                                     "ensemble's heights"})
    out = xr.Dataset(variables, coords=coords, attrs={
        "scene_name": name,
        "checkpoints": "; ".join(str(member.path) for member in members),
        "members": len(members),
        "model": first.model_name,
        "channels": ", ".join(first.channels),
        "reference": first.reference or "none",
        "tile": int(tile),
        "overlap": int(overlap),
    })
    return out.rio.write_crs(crs) if crs is not None else out


def prediction_quicklook(scene: xr.Dataset, result: xr.Dataset, path: str | os.PathLike[str], *,
                         title: str | None = None) -> Path:
    """A PNG of a prediction (:func:`predict_height`) beside its scene: the truth, the
    prediction, its error, the ensemble's standard deviation, the priors-only
    interpolation and its error, as far as the scene and the result have them. Heights
    share one colour scale (1st-99th percentile), errors one symmetric scale."""
    from ..plots import quicklook

    height = result["height"].values
    truth = scene["height"].values if "height" in scene else None
    shown = [values for values in (height, truth) if values is not None]
    low, high = (float(np.nanpercentile(np.concatenate([v.ravel() for v in shown]), p)) for p in (1, 99))
    terrain = {"cmap": "terrain", "vmin": low, "vmax": high, "colorbar": "m"}
    panels = []
    if truth is not None:
        panels.append(("truth height (m)", truth, terrain))
    if "prior_interpolated" in scene:
        panels.append(("priors-only interpolation (m)", scene["prior_interpolated"].values, terrain))
    panels.append(("predicted height (m)", height, terrain))
    if truth is not None:
        errors = [height - truth]
        if "prior_interpolated" in scene:
            errors.append(scene["prior_interpolated"].values - truth)
        limit = max(float(np.nanpercentile(np.abs(e), 99)) for e in errors) or 1.0
        diverging = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit, "colorbar": "m"}
        if len(errors) > 1:
            panels.append(("priors only - truth (m)", errors[1], diverging))
        panels.append(("prediction - truth (m)", errors[0], diverging))
    if "height_std" in result:
        panels.append((f"std of {result.attrs['members']} checkpoints (m)", result["height_std"].values,
                       {"cmap": "magma", "vmin": 0, "colorbar": "m"}))
    return quicklook(panels, path, title=title or f"sarheight terrain predict: {result.attrs['scene_name']}")
