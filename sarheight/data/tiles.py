"""What the tiled data modules share: per-channel statistics summed over the training
cells, and the loaders and statistics that the regression module reads.

:class:`TiledDataModule` is the base of :class:`~sarheight.data.terrain.TerrainDataModule`
and :class:`~sarheight.data.buildings.BuildingHeightDataModule`; each sets up its own
``datasets`` (``train``, ``val``, ``test``) and hands its sums to
:meth:`TiledDataModule.set_statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar, NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InvalidInputError

#: The split codes of the area maps.
SPLITS = ("train", "val", "test")

#: The split code of cells in no split (the padding of an area's grid).
NO_SPLIT = 255


class Window(NamedTuple):
    """A tile's place: area (scene, city) index, first row, first column, rows and
    columns inside the area (at most the tile side; the rest of the tile is padding)."""

    scene: int
    row: int
    col: int
    rows: int
    cols: int


def window_starts(allowed: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(K, 2) first rows and columns of every ``rows`` x ``cols`` window that lies entirely
    in the ``allowed`` cells (a summed-area table: one pass whatever the window)."""
    table = np.pad(allowed.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    inside = table[rows:, cols:] - table[:-rows, cols:] - table[rows:, :-cols] + table[:-rows, :-cols]
    return np.argwhere(inside == rows * cols)


def grid_windows(scene: int, row0: int, col0: int, row1: int, col1: int, tile: int) -> list[Window]:
    """The tiles of a fixed grid over the rectangle [row0, row1) x [col0, col1), the last
    of each row and column cut at the rectangle's edge (and padded to the tile)."""
    return [Window(scene, row, col, min(tile, row1 - row), min(tile, col1 - col))
            for row in range(row0, row1, tile) for col in range(col0, col1, tile)]


class TileSet(Dataset):
    """Tiles over areas held in memory: a fixed list of windows (validation, test) or
    random draws inside allowed cells (training), the part that the terrain and the
    building datasets share; a subclass gives the tensors of a window.

    Parameters
    ----------
    shapes : per area (scene, city), its (rows, cols).
    tile : the side of every tile (cells); windows smaller than it are padded.
    windows : the fixed tiles (:class:`Window`, or what a subclass pairs with one, kept
        as given in ``windows``); or, for random tiles (:meth:`draw`),
    areas : per area, a bool (H, W) map of the cells a random tile may cover, and
    length : the number of random tiles per epoch.

    Random tiles are drawn uniformly over every position where a tile of ``tile`` cells
    (less in an area smaller than that) lies entirely inside the allowed cells. Item
    ``key`` of a random set is the tile drawn with NumPy's generator seeded by ``key``
    (:meth:`random_tile`); :class:`EpochDraws` gives each epoch's keys. A tile thus
    depends on its key alone, not on the worker or process that reads it: one process, or
    several of a distributed run each reading its share of the keys, train on the same
    tiles.
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], tile: int, *, windows: Sequence[Any] | None = None,
                 areas: Sequence[np.ndarray] | None = None, length: int | None = None):
        if (windows is None) == (areas is None):
            raise InvalidInputError("give either windows (fixed tiles) or areas and length (random tiles)")
        self.tile = int(tile)
        self.windows = list(windows) if windows is not None else None
        self.length = int(length or 0)
        self._starts = np.zeros((0, 3), dtype=np.int64)
        self._sizes: list[tuple[int, int]] = []
        if areas is not None:
            if self.length < 1:
                raise InvalidInputError(f"random tiles need a length of at least 1, not {length}")
            starts = []
            for index, (shape, allowed) in enumerate(zip(shapes, areas, strict=True)):
                rows, cols = min(self.tile, shape[0]), min(self.tile, shape[1])
                self._sizes.append((rows, cols))
                found = window_starts(allowed, rows, cols)
                starts.append(np.column_stack([np.full(len(found), index), found]))
            self._starts = np.concatenate(starts) if starts else self._starts
            if not len(self._starts):
                raise InvalidInputError(
                    f"no tile of {self.tile} cells fits inside the training cells: make data.block_size at least "
                    "data.tile, or data.tile smaller"
                )

    def __len__(self) -> int:
        return len(self.windows) if self.windows is not None else self.length

    def random_tile(self, key: int) -> tuple[Window, np.random.Generator]:
        """The random tile of ``key`` (a non-negative integer, from :class:`EpochDraws`)
        inside the allowed cells, and the generator it was drawn with, for what else the
        tile draws (a month)."""
        if self.windows is not None or not 0 <= key:
            raise IndexError(key)
        generator = np.random.default_rng(key)
        area, row, col = (int(v) for v in self._starts[int(generator.integers(len(self._starts)))])
        return Window(area, row, col, *self._sizes[area]), generator

    def check_index(self, index: int) -> None:
        """Raise IndexError for an index of no fixed tile (random sets take any key)."""
        if self.windows is not None and not 0 <= index < len(self.windows):
            raise IndexError(index)


class EpochDraws(Sampler[int]):
    """The keys of one epoch's random tiles (:meth:`TileSet.random_tile`): ``length``
    consecutive integers from ``seed * length``, the seed drawn from torch's generator
    when the epoch starts. Lightning's ``seed_everything`` seeds that generator alike in
    every process, so the processes of a distributed run draw the same seed, and its
    sampler hands each process its share of the keys: together they train on the tiles
    one process would, each once (not the same tiles in every process)."""

    def __init__(self, length: int):
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        seed = int(torch.randint(2**31 - 1, ()).item())
        return iter(range(seed * self.length, (seed + 1) * self.length))


def assign_blocks(blocks: Sequence[Hashable], *, val_fraction: float, test_fraction: float, seed: int,
                  block_size: int, more: str) -> dict[Hashable, str]:
    """The split of each block: a random permutation (``seed``), its first
    ``val_fraction`` of the blocks to validation, the next ``test_fraction`` to test (at
    least one each when the fraction is above 0), the rest to training.

    Raises
    ------
    InvalidInputError : no block would be left for training (``more`` names what to add).
    """
    order = np.random.default_rng(seed).permutation(len(blocks))
    counts = {split: (max(1, round(fraction * len(blocks))) if fraction > 0 else 0)
              for split, fraction in (("val", val_fraction), ("test", test_fraction))}
    if counts["val"] + counts["test"] >= len(blocks):
        raise InvalidInputError(
            f"{len(blocks)} blocks of {block_size} cells leave none for training after {counts['val']} for "
            f"validation and {counts['test']} for test: make data.block_size smaller, or add {more}"
        )
    return {blocks[k]: ("val" if position < counts["val"] else
                        "test" if position < counts["val"] + counts["test"] else "train")
            for position, k in enumerate(order)}


class ChannelSums:
    """Running sums for the per-channel mean and standard deviation of the inputs
    (NaN-aware) and of the target, over arrays added one at a time.

    Parameters
    ----------
    channels : the number of input channels.
    """

    def __init__(self, channels: int):
        self.total = np.zeros(channels)
        self.squares = np.zeros(channels)
        self.count = np.zeros(channels)
        self.target = np.zeros(3)  # count, sum, sum of squares

    def add_inputs(self, values: np.ndarray) -> None:
        """Add (C, n) input values; NaN counts as missing."""
        values = values.astype(np.float64)
        finite = np.isfinite(values)
        values = np.where(finite, values, 0.0)
        self.total += values.sum(axis=1)
        self.squares += (values**2).sum(axis=1)
        self.count += finite.sum(axis=1)

    def add_target(self, values: np.ndarray) -> None:
        """Add target values (all valid)."""
        values = values.astype(np.float64)
        self.target += (values.size, values.sum(), (values**2).sum())

    def input_statistics(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation; a constant channel (or one without
        values) gets a standard deviation of 1: it is only centred, since dividing by ~0
        would blow its rounding noise up to unit variance."""
        channels = self.total.size
        mean = np.divide(self.total, self.count, out=np.zeros(channels), where=self.count > 0)
        mean_square = np.divide(self.squares, self.count, out=np.zeros(channels), where=self.count > 0)
        std = np.sqrt(np.maximum(mean_square - mean**2, 0))
        std = np.where(std > 1e-6 * (1 + np.abs(mean)), std, 1.0)
        return [float(v) for v in mean], [float(v) for v in std]

    def target_statistics(self) -> tuple[float, float]:
        """Mean and standard deviation of the target (1 for a constant one)."""
        count, total, squares = self.target
        mean = total / count
        variance = squares / count - mean**2
        return float(mean), float(math.sqrt(variance)) if variance > 1e-12 else 1.0


class TiledDataModule(L.LightningDataModule):
    """The part of a tiled data module the regression module reads
    (:class:`~sarheight.training.regression.RegressionData`): statistics and loaders.

    A subclass passes the shared options to ``__init__``; its ``setup`` sets
    ``self.data`` (not None once set up), ``self.areas``, ``self.split_scenes``,
    ``self.regions`` and ``self.datasets`` by split, and calls :meth:`set_statistics`.
    """

    #: The option that names the test regions, for the message of an empty test split.
    test_option: ClassVar[str] = "data.test_fraction"

    def __init__(self, *, unit: str, units: str, split: str, named: bool, val_fraction: float, test_fraction: float,
                 block_size: int, tile: int, tiles_per_epoch: int, batch_size: int, num_workers: int,
                 seed: int) -> None:
        """Check and keep the options every tiled data module has: ``split`` (``unit``,
        e.g. "scene", or "block"), whether validation or test ``units`` are ``named``
        (which only ``split=unit`` allows), the fractions, the block and tile sides, tiles
        per epoch, batch size, workers and the seed of the split."""
        if split not in (unit, "block"):
            raise InvalidInputError(f"data.split must be '{unit}' or 'block', not {split!r}")
        if split == "block" and named:
            raise InvalidInputError(f"data.val_{units} and data.test_{units} name {units}, which data.split {unit} "
                                    "uses: with data.split block, blocks are drawn with data.val_fraction and "
                                    "data.test_fraction")
        for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= value < 1:
                raise InvalidInputError(f"data.{option} must lie in [0, 1), not {value}")
        for option, value, least in (("tile", tile, 8), ("block_size", block_size, 1),
                                     ("tiles_per_epoch", tiles_per_epoch, 1), ("batch_size", batch_size, 1),
                                     ("num_workers", num_workers, 0)):
            if int(value) != value or value < least:
                raise InvalidInputError(f"data.{option} must be an integer of at least {least}, not {value}")
        if split == "block" and block_size < tile:
            raise InvalidInputError(f"data.block_size ({block_size}) is smaller than data.tile ({tile}): no "
                                    "training tile would fit inside one block; make the blocks larger")
        super().__init__()
        self.split = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.block_size = block_size
        self.tile = tile
        self.tiles_per_epoch = tiles_per_epoch
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.data: list | None = None
        self.datasets: dict[str, Dataset] = {}
        #: Per area (scene, city), the split code of every cell (0 train, 1 val, 2 test, 255 none).
        self.areas: list[np.ndarray] = []
        #: The area names of each split (with split="block", the areas holding its blocks).
        self.split_scenes: dict[str, list[str]] = {}
        #: Per split, the rectangles (area index, row0, col0, row1, col1) its fixed tiles cover.
        self.regions: dict[str, list[tuple[int, int, int, int, int]]] = {}
        self.statistics: tuple[list[float], list[float]] = ([], [])
        self.target_moments: tuple[float, float] = (0.0, 1.0)

    def set_statistics(self, sums: ChannelSums, no_target: str) -> None:
        """Keep the statistics of ``sums``; ``no_target`` is the error message when the
        training cells held no valid target."""
        if sums.target[0] == 0:
            raise InvalidInputError(no_target)
        self.statistics = sums.input_statistics()
        self.target_moments = sums.target_statistics()

    @property
    def input_statistics(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation over the training cells."""
        self.require_setup()
        return list(self.statistics[0]), list(self.statistics[1])

    @property
    def target_statistics(self) -> tuple[float, float]:
        """Mean and standard deviation of the target over the training cells of the loss
        mask."""
        self.require_setup()
        return self.target_moments

    def require_setup(self) -> None:
        """Raise unless :meth:`setup` has run."""
        if self.data is None:
            raise RuntimeError("the data module is not set up: call setup() first")

    def loader(self, split: str) -> DataLoader:
        """The loader of ``split``: fixed tiles in order, random ones by the keys of
        :class:`EpochDraws`."""
        self.require_setup()
        dataset = self.datasets[split]
        draws = EpochDraws(len(dataset)) if getattr(dataset, "windows", ()) is None else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, sampler=draws,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        self.require_setup()
        if not len(self.datasets["test"]):
            raise InvalidInputError(f"the test split is empty: set data.test_fraction above 0 or name "
                                    f"{self.test_option}")
        return self.loader("test")
