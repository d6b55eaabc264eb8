"""So2Sat LCZ42: Local Climate Zone classification of 32 x 32 Sentinel-1/2 patches, read
lazily from its HDF5 files.

A root folder holds up to three files (:data:`FILES`): ``training.h5``,
``validation.h5`` and ``testing.h5``, each with three datasets of N rows:

- ``sen1`` (N, 32, 32, 8) float64: the Sentinel-1 channels of :data:`S1_CHANNELS`;
- ``sen2`` (N, 32, 32, 10) float64: the Sentinel-2 reflectances of :data:`S2_CHANNELS`;
- ``label`` (N, 17) float64: one-hot over :data:`LCZ_CLASSES`.

Decisions, in one place:

- **Channels.** A sample is one (18, 32, 32) float32 tensor, channels first, Sentinel-1
  then Sentinel-2 in the files' order (:data:`CHANNELS`); the label is the class code
  (int64, the index of the one in ``label``).
- **Checked at the door.** :func:`check_file` reads the layout (dataset names, shapes,
  the same N in all three) and every label row (exactly one 1, the rest 0), in chunks,
  before a dataset is built: a bad file fails with its name, not as a wrong batch later.
- **Lazy, one handle per process.** :class:`So2SatLCZ42` opens its file on the first
  item read in the current process and keeps that handle for every later item; pickling
  drops it, and a process that finds a handle opened by another (a forked DataLoader
  worker) opens its own. HDF5 handles must not be shared across processes.
- **Statistics from the training rows only.** Per-channel mean and (population)
  standard deviation over the pixels of the training rows, summed in float64 in chunks
  (:func:`channel_statistics`); a constant channel gets a standard deviation of 1. The
  dataset normalises with them when given ``statistics``.
- **Class weights** ``n / n_i`` from the training labels (:func:`class_weights`); a
  class without a training row gets weight 0, with a warning naming it.
- **Two settings** (:data:`SETTINGS`, :func:`setting_indices`):

  - ``"train-val-test"``: the three files as they are. They hold different cities, so
    the test score says how a model does on cities it has not seen: the honest setting.
  - ``"80-10-10"``: a seeded random permutation of ``training.h5``'s rows, cut 80/10/10
    (only that file is needed). Neighbouring patches of the same cities then fall into
    training, validation and test alike; being spatially dependent, the test score is
    optimistic. That is the gap in the fusion-strategy study of Gawlikowski et al.:
    88.9-91.2 % average accuracy in the random setting, at best 53.73 % on the separate
    test file.

- **limit** keeps the first rows of each split's (sorted) indices, for quick runs and
  tests; the statistics and class weights then come from those training rows.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InvalidInputError, MissingInputError, user_stacklevel
from ..io import output_set

__all__ = [
    "CHANNELS",
    "FILES",
    "LAYOUT",
    "LCZ_CLASSES",
    "S1_CHANNELS",
    "S2_CHANNELS",
    "SETTINGS",
    "SPLIT_FILES",
    "ChannelStatistics",
    "So2SatDataModule",
    "So2SatLCZ42",
    "channel_statistics",
    "check_file",
    "class_weights",
    "read_labels",
    "setting_indices",
]

#: The Sentinel-1 channels of ``sen1``, in the files' order.
S1_CHANNELS = ("vh_real", "vh_imag", "vv_real", "vv_imag", "vh_lee_intensity", "vv_lee_intensity",
               "covariance_lee_real", "covariance_lee_imag")

#: The Sentinel-2 bands of ``sen2``, in the files' order.
S2_CHANNELS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")

#: The model's input channels: Sentinel-1 first, then Sentinel-2.
CHANNELS = S1_CHANNELS + S2_CHANNELS

#: The Local Climate Zones, by class code (the column of ``label``).
LCZ_CLASSES = ("compact_high_rise", "compact_mid_rise", "compact_low_rise", "open_high_rise", "open_mid_rise",
               "open_low_rise", "lightweight_low_rise", "large_low_rise", "sparsely_built", "heavy_industry",
               "dense_trees", "scattered_trees", "bush_scrub", "low_plants", "bare_rock_or_paved",
               "bare_soil_or_sand", "water")

#: The files of the dataset, by split name.
FILES = {"training": "training.h5", "validation": "validation.h5", "testing": "testing.h5"}

#: The settings of :func:`setting_indices`.
SETTINGS = ("train-val-test", "80-10-10")

#: The side of a patch (pixels).
PATCH = 32

#: Each dataset of a file: its trailing shape (after N).
LAYOUT = {"sen1": (PATCH, PATCH, len(S1_CHANNELS)), "sen2": (PATCH, PATCH, len(S2_CHANNELS)),
          "label": (len(LCZ_CLASSES),)}

#: The split names of :func:`setting_indices`, and the file each takes in "train-val-test".
SPLIT_FILES = {"train": FILES["training"], "val": FILES["validation"], "test": FILES["testing"]}

_CHUNK = 4096

#: Rows per file of :func:`write_sample` (every class in every file: 17 classes).
SAMPLE_ROWS = {"training": 68, "validation": 34, "testing": 34}


#: The files found good by :func:`check_file`: rows by :func:`_file_key`.
_CHECKED: dict[tuple[str, int, int], int] = {}


def write_sample(root: str | os.PathLike[str], rows: Mapping[str, int] | None = None, *, seed: int = 0) -> Path:
    """Write a tiny So2Sat LCZ42 root folder in the dataset's exact layout, to try the LCZ
    workflow before the real download (about 59 GB: 352 366 training, 24 119 validation and
    24 188 testing rows of 147 kB; from TUM's mediaTUM, linked by
    https://github.com/zhu-xlab/So2Sat-LCZ42).

    Synthetic, not real patches: each row's class cycles through the 17 (every class in
    every file of at least 17 rows), and every channel is a class-dependent mean plus
    Gaussian noise (Sentinel-1 channels around 0, Sentinel-2 reflectances around 0.2),
    so that a network learns the classes in a few epochs. Scores on it say that the
    workflow runs, nothing about Local Climate Zones.

    Parameters
    ----------
    root : the folder (made if missing) of ``training.h5``, ``validation.h5``, ``testing.h5``.
    rows : rows by split name (``training``, ``validation``, ``testing``; default
        :data:`SAMPLE_ROWS`, about 20 MB).
    seed : the draws of classes and noise.

    Returns
    -------
    The folder. The three files are written together, atomically.
    """
    rows = dict(SAMPLE_ROWS if rows is None else rows)
    unknown = sorted(set(rows) - set(FILES))
    if unknown or any(int(count) < 1 for count in rows.values()):
        raise InvalidInputError(f"rows of a So2Sat sample are counts of at least 1 by split among {list(FILES)}, "
                                f"not {rows}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    means = np.random.default_rng(1234).normal(0.0, 2.0, (len(LCZ_CLASSES), len(CHANNELS)))
    with output_set([root / FILES[split] for split in rows]) as temporaries:
        for index, (count, temporary) in enumerate(zip(rows.values(), temporaries, strict=True)):
            rng = np.random.default_rng([seed, index])
            classes = rng.permutation(np.arange(int(count)) % len(LCZ_CLASSES))
            values = means[classes][:, None, None, :] + rng.normal(0.0, 1.0, (int(count), PATCH, PATCH, len(CHANNELS)))
            with h5py.File(temporary, "w") as file:
                file["sen1"] = values[..., :len(S1_CHANNELS)]
                file["sen2"] = values[..., len(S1_CHANNELS):] * 0.1 + 0.2
                file["label"] = np.eye(len(LCZ_CLASSES))[classes]
    return root


def _name(path: Path) -> str:
    return repr(str(path))


def check_file(path: str | os.PathLike[str]) -> int:
    """Check the layout of one So2Sat LCZ42 file and every label row; returns N.

    A file once found good is not read again while its size and modification time stay
    (the labels of the training file are 48 MB, and a data module's setup asks several
    times).

    Raises
    ------
    MissingInputError : the file does not exist.
    InvalidInputError : not an HDF5 file; a dataset of :data:`LAYOUT` missing; a dataset
        of the wrong shape; N differing between the datasets; a label row that is not
        one-hot (the first such row is named).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"So2Sat file {_name(path)} does not exist: give the folder holding "
                                f"{', '.join(FILES.values())} (the So2Sat LCZ42 download)")
    key = _file_key(path)
    if key not in _CHECKED:
        _CHECKED[key] = _check_layout(path)
    return _CHECKED[key]


def _file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a file's contents here: its resolved path, size and modification time."""
    status = path.stat()
    return str(path.resolve()), status.st_size, status.st_mtime_ns


#: The statistics :func:`channel_statistics` computed, by :func:`_file_key` and the rows' digest.
_STATISTICS: dict[tuple[tuple[str, int, int], str], ChannelStatistics] = {}


def _check_layout(path: Path) -> int:
    if not h5py.is_hdf5(path):
        raise InvalidInputError(f"{_name(path)} is not an HDF5 file: give the So2Sat LCZ42 .h5 files as downloaded")
    try:
        return _check_rows(path)
    except OSError as error:
        # A download cut short opens as HDF5 but cannot be read to its end.
        reason = str(error).split("(")[-1].rstrip(")") if "(" in str(error) else str(error)
        raise InvalidInputError(f"{_name(path)} cannot be read ({reason}): the file is truncated or damaged; download "
                                "it again (its size is in the So2Sat LCZ42 listing)") from None


def _check_rows(path: Path) -> int:
    with h5py.File(path, "r") as file:
        missing = [name for name in LAYOUT if not isinstance(file.get(name), h5py.Dataset)]
        if missing:
            raise InvalidInputError(f"{_name(path)} lacks the dataset(s) {missing} (it holds {sorted(file)}): a "
                                    f"So2Sat LCZ42 file has {list(LAYOUT)}")
        rows = {}
        for name, tail in LAYOUT.items():
            shape = file[name].shape
            if len(shape) != 1 + len(tail) or tuple(shape[1:]) != tail:
                expected = ", ".join(["N", *(str(v) for v in tail)])
                raise InvalidInputError(f"{_name(path)}: dataset {name!r} has shape {tuple(shape)}, not the expected "
                                        f"({expected}): write {name} in the So2Sat LCZ42 layout")
            rows[name] = shape[0]
        if len(set(rows.values())) > 1:
            raise InvalidInputError(f"{_name(path)}: the datasets hold different numbers of rows ({rows}): each row "
                                    "of sen1, sen2 and label is one patch, so they must agree")
        count = rows["label"]
        labels = file["label"]
        for start in range(0, count, _CHUNK):
            block = np.asarray(labels[start:start + _CHUNK], dtype=np.float64)
            good = ((block == 0) | (block == 1)).all(axis=1) & (block.sum(axis=1) == 1)
            if not good.all():
                row = start + int(np.argmin(good))
                raise InvalidInputError(
                    f"{_name(path)}: label row {row} is not one-hot ({block[row - start].tolist()}): each row must "
                    f"hold one 1 (the class) and {len(LCZ_CLASSES) - 1} zeros"
                )
    return int(count)


def _rows(indices: Any, count: int, what: str) -> np.ndarray:
    """``indices`` checked as row numbers of a file of ``count`` rows (int64, order kept)."""
    rows = np.asarray(indices)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise InvalidInputError(f"{what}: indices must be a 1-D sequence of integer row numbers, not "
                                f"an array of shape {rows.shape} and dtype {rows.dtype}")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= count):
        raise InvalidInputError(f"{what}: indices must lie in [0, {count}) (the file's rows), not "
                                f"[{rows.min()}, {rows.max()}]")
    return rows


def _blocks(dataset: h5py.Dataset, rows: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions in ``rows``' unique sorted values, values) of ``dataset`` over the sorted
    unique ``rows``, a block of at most ``chunk`` file rows at a time: a slice when the
    block's rows are dense, h5py's (increasing) fancy indexing when they are sparse."""
    unique = np.unique(rows)
    for start in range(0, dataset.shape[0], chunk):
        first, last = np.searchsorted(unique, [start, start + chunk])
        if first == last:
            continue
        wanted = unique[first:last]
        span = int(wanted[-1]) + 1 - int(wanted[0])
        if len(wanted) == span:
            values = dataset[int(wanted[0]):int(wanted[-1]) + 1]
        elif 4 * len(wanted) >= span:
            values = dataset[int(wanted[0]):int(wanted[-1]) + 1][wanted - wanted[0]]
        else:
            values = dataset[wanted]
        yield np.arange(first, last), np.asarray(values)
        del values  # one block in memory at a time: the next is read after this is dropped


@dataclass(frozen=True)
class ChannelStatistics:
    """Per-channel mean and standard deviation of :data:`CHANNELS` (the files' units:
    Sentinel-1 complex and intensity values, Sentinel-2 reflectance).

    Checked on construction: 18 finite values each, standard deviations >= 0; a
    standard deviation of 0 (a constant channel) becomes 1, so that the channel is only
    centred.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            try:
                values = tuple(float(v) for v in values)
            except (TypeError, ValueError) as error:
                raise InvalidInputError(f"channel statistics: {name} must be {len(CHANNELS)} numbers, not "
                                        f"{values!r}") from error
            if len(values) != len(CHANNELS):
                raise InvalidInputError(f"channel statistics: {name} has {len(values)} values, not one per channel "
                                        f"of {list(CHANNELS)}")
            bad = [CHANNELS[k] for k, v in enumerate(values) if not math.isfinite(v)]
            if bad:
                raise InvalidInputError(f"channel statistics: {name} is not finite for channels {bad}: the rows "
                                        "they came from hold NaN or infinite values")
            object.__setattr__(self, name, values)
        negative = [CHANNELS[k] for k, v in enumerate(self.std) if v < 0]
        if negative:
            raise InvalidInputError(f"channel statistics: std is negative for channels {negative}")
        object.__setattr__(self, "std", tuple(v if v > 0 else 1.0 for v in self.std))

    def to_dict(self) -> dict[str, list]:
        """A plain dict (channels, mean, std) for a checkpoint or a JSON file."""
        return {"channels": list(CHANNELS), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ChannelStatistics:
        """The statistics of :meth:`to_dict`'s dict (``channels`` may be left out, but if
        given must be :data:`CHANNELS`)."""
        missing = [key for key in ("mean", "std") if key not in values]
        if missing:
            raise InvalidInputError(f"channel statistics lack {missing}: give a dict with 'mean' and 'std' lists")
        channels = values.get("channels")
        if channels is not None and tuple(channels) != CHANNELS:
            raise InvalidInputError(f"channel statistics are of the channels {list(channels)}, not "
                                    f"{list(CHANNELS)}: compute them again for this dataset")
        return cls(mean=tuple(values["mean"]), std=tuple(values["std"]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation as float64 (18, 1, 1) arrays, to broadcast over a
        channels-first patch."""
        return (np.asarray(self.mean, dtype=np.float64)[:, None, None],
                np.asarray(self.std, dtype=np.float64)[:, None, None])


def channel_statistics(path: str | os.PathLike[str], indices: Sequence[int] | np.ndarray | None = None,
                       chunk: int = _CHUNK) -> ChannelStatistics:
    """Per-channel mean and population standard deviation of :data:`CHANNELS` over the
    pixels of the given rows (all by default) of one file.

    Read ``chunk`` rows at a time (in increasing order, whatever the order of
    ``indices``); each chunk's mean and sum of squared deviations are summed in float64
    and merged (Chan et al.), which keeps the variance exact for large means. One block of
    one dataset is in memory at a time: ``chunk`` x 80 KiB of ``sen2`` (335 MB at 4096
    rows). A row given twice counts twice. The file is checked first (:func:`check_file`).
    The statistics of the same rows of an unchanged file are computed once per process.
    """
    path = Path(path)
    count = check_file(path)
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise InvalidInputError(f"chunk must be an integer of at least 1 (rows), not {chunk}")
    rows = np.arange(count, dtype=np.int64) if indices is None else _rows(indices, count, "channel_statistics")
    if not rows.size:
        raise InvalidInputError(f"channel_statistics over {_name(path)}: no rows given; give at least one")
    # The same rows of an unchanged file are not read again (each seed of a sweep's
    # train-val-test setting asks for the training file's statistics, 52 GB of it).
    key = (_file_key(path), hashlib.sha1(np.sort(rows).tobytes()).hexdigest())
    if key not in _STATISTICS:
        weights = np.bincount(np.searchsorted(np.unique(rows), rows)).astype(np.float64)
        with h5py.File(path, "r") as file:
            moments = [_moments(file[name], rows, weights, int(chunk)) for name in ("sen1", "sen2")]
        mean = np.concatenate([m[0] for m in moments])
        variance = np.concatenate([m[1] for m in moments])
        _STATISTICS[key] = ChannelStatistics(mean=tuple(mean), std=tuple(np.sqrt(variance)))
    return _STATISTICS[key]


def _moments(dataset: h5py.Dataset, rows: np.ndarray, weights: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (last axis) mean and population variance of ``dataset`` over the
    pixels of ``rows``, each unique row counted ``weights`` times: per block, its mean and
    sum of squared deviations (in place, one block in memory), merged in float64."""
    channels = dataset.shape[-1]
    total, mean, squares = 0.0, np.zeros(channels), np.zeros(channels)
    for positions, values in _blocks(dataset, rows, chunk):
        values = values.astype(np.float64, copy=False)
        weight = weights[positions]
        n = weight.sum() * values.shape[1] * values.shape[2]
        block_mean = np.einsum("k,khwc->c", weight, values) / n
        values -= block_mean
        np.square(values, out=values)
        block_squares = np.einsum("k,khwc->c", weight, values)
        delta = block_mean - mean
        merged = total + n
        mean = mean + delta * n / merged
        squares = squares + block_squares + delta**2 * total * n / merged
        total = merged
        del values
    return mean, squares / total


def read_labels(path: str | os.PathLike[str], indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """The class codes (int64, indices of :data:`LCZ_CLASSES`) of the given rows (all by
    default) of one file, in the order of ``indices``; read in chunks after
    :func:`check_file`."""
    path = Path(path)
    count = check_file(path)
    rows = np.arange(count, dtype=np.int64) if indices is None else _rows(indices, count, "read_labels")
    unique = np.unique(rows)
    codes = np.zeros(len(unique), dtype=np.int64)
    with h5py.File(path, "r") as file:
        for positions, values in _blocks(file["label"], rows, _CHUNK):
            codes[positions] = np.argmax(values, axis=1)
    return codes[np.searchsorted(unique, rows)]


def class_weights(labels: Sequence[int] | np.ndarray, num_classes: int = len(LCZ_CLASSES)) -> np.ndarray:
    """Per-class weights ``n / n_i`` (float64, ``num_classes`` values) of class codes: ``n``
    labels, ``n_i`` of class ``i``. A class without a label gets weight 0 and a warning
    naming it (an LCZ name with the 17 classes)."""
    if int(num_classes) != num_classes or num_classes < 1:
        raise InvalidInputError(f"num_classes must be an integer of at least 1, not {num_classes}")
    codes = np.asarray(labels)
    if codes.ndim != 1 or not codes.size or not np.issubdtype(codes.dtype, np.integer):
        raise InvalidInputError(f"class_weights needs a non-empty 1-D array of integer class codes, not an array of "
                                f"shape {codes.shape} and dtype {codes.dtype}")
    if codes.min() < 0 or codes.max() >= num_classes:
        raise InvalidInputError(f"class codes must lie in [0, {num_classes}), not [{codes.min()}, {codes.max()}]")
    counts = np.bincount(codes, minlength=int(num_classes))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        names = [LCZ_CLASSES[k] if num_classes == len(LCZ_CLASSES) else str(k) for k in empty]
        warnings.warn(f"classes {names} have no label among the {codes.size}: their weight is 0",
                      stacklevel=user_stacklevel())
    return np.divide(float(codes.size), counts, out=np.zeros(len(counts)), where=counts > 0)


def _check_root(root: str | os.PathLike[str], setting: str) -> Path:
    """The root folder, checked to hold the files ``setting`` needs."""
    if setting not in SETTINGS:
        raise InvalidInputError(f"setting must be one of {list(SETTINGS)}, not {setting!r}")
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"So2Sat root {str(root)!r} is not a folder: give the folder holding "
                                f"{', '.join(FILES.values())}")
    needed = list(FILES.values()) if setting == "train-val-test" else [FILES["training"]]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise MissingInputError(f"So2Sat root {str(root)!r} lacks {missing}, which the {setting!r} setting needs"
                                + (": put them there, or use the 80-10-10 setting (training.h5 only: --setting "
                                   "80-10-10 on the "
                                   "command line, data.setting in a configuration)"
                                   if setting == "train-val-test" else ": put it there"))
    return root


def _check_seed(seed: Any, option: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"{option} must be an integer >= 0, not {seed!r}")
    return int(seed)


def setting_indices(root: str | os.PathLike[str], setting: str, seed: int = 0,
                    fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, tuple[str, np.ndarray]]:
    """The rows of each split of a setting: ``{"train" | "val" | "test": (file name,
    sorted int64 row indices)}``.

    ``"train-val-test"``: every row of ``training.h5``, ``validation.h5`` and
    ``testing.h5``. ``"80-10-10"``: the rows of ``training.h5`` permuted with
    ``numpy.random.default_rng(seed)``, the first ``fractions[0]`` (rounded) to training,
    the next ``fractions[1]`` to validation and the rest to test (see the module's
    docstring for why that setting is optimistic). The files are checked
    (:func:`check_file`).
    """
    root = _check_root(root, setting)
    seed = _check_seed(seed)
    if setting == "train-val-test":
        return {split: (name, np.arange(check_file(root / name), dtype=np.int64))
                for split, name in SPLIT_FILES.items()}
    try:
        parts = [float(v) for v in fractions]
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"fractions must be three numbers, not {fractions!r}") from error
    if len(parts) != 3 or not all(0 < v < 1 for v in parts) or not math.isclose(sum(parts), 1.0, abs_tol=1e-9):
        raise InvalidInputError(f"fractions must be three numbers in (0, 1) summing to 1 (train, val, test), not "
                                f"{fractions!r}")
    name = FILES["training"]
    count = check_file(root / name)
    n_train, n_val = round(parts[0] * count), round(parts[1] * count)
    if min(n_train, n_val, count - n_train - n_val) < 1:
        raise InvalidInputError(f"{str(root / name)!r} has {count} rows: too few to give every split of "
                                f"{list(parts)} at least one")
    order = np.random.default_rng(seed).permutation(count)
    cuts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {split: (name, np.sort(rows).astype(np.int64)) for split, rows in cuts.items()}


class So2SatLCZ42(Dataset):
    """The patches of one So2Sat LCZ42 file, read lazily.

    Parameters
    ----------
    root : the folder holding the files of :data:`FILES`.
    split : which file: a key of :data:`FILES` ("training", "validation", "testing").
    indices : the rows to serve, in this order (default: all); item ``i`` is row
        ``indices[i]``.
    statistics : normalise each channel with ``(x - mean) / std`` when given.

    Each item is ``(x, label)``: ``x`` a float32 (18, 32, 32) tensor of :data:`CHANNELS`
    (channels first, Sentinel-1 then Sentinel-2), ``label`` an int64 scalar tensor (the
    class code). The file is checked at construction (:func:`check_file`) and opened on
    the first item read in each process (see the module's docstring).
    """

    channels = CHANNELS

    def __init__(self, root: str | os.PathLike[str], split: str = "training", *,
                 indices: Sequence[int] | np.ndarray | None = None, statistics: ChannelStatistics | None = None):
        if split not in FILES:
            raise InvalidInputError(f"split must be one of {list(FILES)}, not {split!r}")
        if statistics is not None and not isinstance(statistics, ChannelStatistics):
            raise InvalidInputError(f"statistics must be a ChannelStatistics (or None), not {type(statistics).__name__}"
                                    ": build one with channel_statistics() or ChannelStatistics.from_dict()")
        root = Path(root)
        if not root.is_dir():
            raise MissingInputError(f"So2Sat root {str(root)!r} is not a folder: give the folder holding "
                                    f"{', '.join(FILES.values())}")
        self.split = split
        self.path = root / FILES[split]
        count = check_file(self.path)
        self.indices = (np.arange(count, dtype=np.int64) if indices is None
                        else _rows(indices, count, f"So2SatLCZ42({split!r})"))
        self.statistics = statistics
        self._normalise = statistics.arrays() if statistics is not None else None
        self._handle: h5py.File | None = None
        self._datasets: tuple[h5py.Dataset, ...] = ()
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def is_open(self) -> bool:
        """Whether this process holds an open handle of the file."""
        return self._handle is not None and self._pid == os.getpid()

    def _open(self) -> tuple[h5py.Dataset, ...]:
        """sen1, sen2 and label of this process's handle, opened if needed."""
        if not self.is_open:
            # A handle from another process (a fork) is left alone: that process owns it.
            self._handle = h5py.File(self.path, "r")
            self._datasets = tuple(self._handle[name] for name in LAYOUT)
            self._pid = os.getpid()
        return self._datasets

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches")
        row = int(self.indices[index])
        sen1, sen2, labels = self._open()
        x = np.concatenate([sen1[row], sen2[row]], axis=-1).transpose(2, 0, 1)
        if not np.isfinite(x).all():
            # Every split's rows, not only the training ones the statistics read: a NaN
            # patch would be scored as whatever its NaN logits arg-max to.
            raise InvalidInputError(f"{str(self.path)!r} row {row} holds NaN or infinite values: the file is damaged; "
                                    "mend or drop the row (rows, or --limit, select others)")
        if self._normalise is not None:
            mean, std = self._normalise
            x = (x - mean) / std
        label = int(np.argmax(labels[row]))
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.tensor(label, dtype=torch.int64)

    def close(self) -> None:
        """Close this process's handle of the file (reopened by the next item read)."""
        if self.is_open:
            self._handle.close()
        self._handle, self._datasets, self._pid = None, (), None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_datasets"], state["_pid"] = None, (), None
        return state


class So2SatDataModule(L.LightningDataModule):
    """So2Sat LCZ42 for a patch classifier: the splits of a setting, statistics and class
    weights from the training rows. The loaders give raw patches; the classifier
    (:class:`~sarheight.training.classification.LCZClassification`) takes the statistics
    from :attr:`statistics` and normalises.

    Parameters
    ----------
    root : the folder holding the files of :data:`FILES` (``training.h5`` alone for
        ``setting="80-10-10"``).
    setting : one of :data:`SETTINGS` (see the module's docstring: "train-val-test" is the
        honest one).
    seed : the seed of the 80-10-10 permutation and of the training loader's shuffling.
    batch_size : patches per batch.
    num_workers : DataLoader worker processes (0: in the main process); kept alive
        between epochs when above 0.
    limit : at most this many rows per split (the first of its sorted indices), for
        quick runs; None for all.
    """

    in_channels = len(CHANNELS)
    num_classes = len(LCZ_CLASSES)
    channels = CHANNELS
    class_names = LCZ_CLASSES

    def __init__(self, root: str, setting: str = "train-val-test", seed: int = 0, batch_size: int = 32,
                 num_workers: int = 0, limit: int | None = None):
        if setting not in SETTINGS:
            raise InvalidInputError(f"data.setting must be one of {list(SETTINGS)}, not {setting!r}")
        _check_seed(seed, "data.seed")
        for option, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise InvalidInputError(f"data.{option} must be an integer of at least {least}, not {value!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
            raise InvalidInputError(f"data.limit must be an integer of at least 1 (rows per split) or None (all), "
                                    f"not {limit!r}")
        _check_root(root, setting)
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.setting = setting
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.limit = None if limit is None else int(limit)
        self.datasets: dict[str, So2SatLCZ42] = {}
        self._statistics: ChannelStatistics | None = None
        self._class_weights: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        """Check the files, take the setting's rows (cut to ``limit``), compute the
        statistics and class weights from the training rows and build the three
        datasets; once (later calls do nothing)."""
        if self.datasets:
            return
        splits = setting_indices(self.root, self.setting, self.seed)
        if self.limit is not None:
            splits = {split: (name, rows[:self.limit]) for split, (name, rows) in splits.items()}
        name, train_rows = splits["train"]
        statistics = channel_statistics(self.root / name, train_rows)
        weights = class_weights(read_labels(self.root / name, train_rows), self.num_classes)
        key = {file: split for split, file in FILES.items()}
        # Raw patches: the classifier normalises with these statistics and keeps them in
        # its checkpoint, so that it classifies raw patches alone.
        self.datasets = {split: So2SatLCZ42(self.root, key[name], indices=rows)
                         for split, (name, rows) in splits.items()}
        self._statistics = statistics
        self._class_weights = weights

    def _require_setup(self) -> None:
        if not self.datasets:
            raise RuntimeError("the So2Sat data module is not set up: call setup() first")

    @property
    def statistics(self) -> ChannelStatistics:
        """Per-channel mean and standard deviation over the training rows."""
        self._require_setup()
        return self._statistics

    @property
    def class_weights(self) -> np.ndarray:
        """The class weights ``n / n_i`` (float64, 17) of the training labels."""
        self._require_setup()
        return self._class_weights.copy()

    def _loader(self, split: str, **options: Any) -> DataLoader:
        self._require_setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=False, **options)

    def train_dataloader(self) -> DataLoader:
        """The training rows, shuffled with a generator seeded by ``seed``."""
        return self._loader("train", shuffle=True, generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
