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
from typing import ClassVar

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..errors import InvalidInputError

#: The split code of cells in no split (the padding of an area's grid).
NO_SPLIT = 255


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

    A subclass sets ``self.data`` (not None once set up), ``self.datasets`` by split,
    ``self.batch_size`` and ``self.num_workers``, and calls :meth:`set_statistics`.
    """

    #: The option that names the test regions, for the message of an empty test split.
    test_option: ClassVar[str] = "data.test_fraction"

    def __init__(self) -> None:
        super().__init__()
        self.data: list | None = None
        self.datasets: dict[str, Dataset] = {}
        self.batch_size = 1
        self.num_workers = 0
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
        """The loader of ``split``, in order (training tiles are drawn at random by the
        dataset itself)."""
        self.require_setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        self.require_setup()
        if not len(self.datasets["test"]):
            raise InvalidInputError(f"the test split is empty: set data.test_fraction above 0 or name {self.test_option}")
        return self.loader("test")
