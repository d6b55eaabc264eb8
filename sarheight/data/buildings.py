"""Building heights from monthly Sentinel-1 and Sentinel-2 images, per city, as tiles.

A root folder holds one folder per city; in each, on one 10 m grid with a CRS:

- ``s1_YYYYMM.tif``: Sentinel-1 sigma0 of the month (dB, float32), two bands described
  "VV" and "VH";
- ``s2_YYYYMM.tif``: Sentinel-2 DNs of the month (uint16), the ten bands of
  :data:`~sarheight.preprocess.sentinel2.S2_BANDS` by description, with tags giving the
  processing baseline or offset (turned into reflectance by
  :func:`~sarheight.preprocess.sentinel2.reflectance`);
- ``height.tif``: the building height (m, float32), 0 where there is no building, its
  nodata declared in the file.

Decisions, in one place:

- **Months are samples.** Each (city, month) with both images is one sample, as in the
  MBHR-Net paper (twelve per location a year); a month with only one of the two images is
  skipped with a warning. The target is the same for every month of a city.
- **In memory.** The cities are read once at :meth:`BuildingHeightDataModule.setup`,
  after every file's grid and bands have been checked: a city of 1000 x 1000 cells and
  twelve months is 576 MB of float32 (12 bands x 12 months), small enough for a few
  cities, and random tiles then cost a slice rather than twelve file reads.
- **Spatial splits.** By city (whole cities to validation and test) or by square blocks
  of ``block_size`` cells (each block to one split in every month). A training tile lies
  inside training cells; validation and test tiles lie inside one region (city or block),
  cut on a fixed grid and padded at the edges (as in :mod:`sarheight.data.terrain`), once
  per month. Random tiles of one city are never split apart: neighbouring tiles share
  their buildings and would leak the answer.
- **Normalisation.** Per-channel mean and standard deviation of the Sentinel-1 (dB) and
  Sentinel-2 (reflectance) channels over the training cells of every month only, applied
  by the LightningModule and kept in its checkpoint. NaN inputs become 0 after
  normalisation.
- **Loss mask.** A cell counts where the height is valid (not nodata, finite) and the
  month's inputs are all finite (an image's nodata gives the model nothing to go on).
- **Height classes** for the metrics (:data:`BUILDING_CLASSES`): no building (height at
  most the footprint threshold, 1 m by default), low-rise (up to 10 m), mid-rise (up to
  30 m), high-rise (above 30 m).
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..dem import FEET_UNITS
from ..errors import InvalidInputError, MissingInputError
from ..io import open_raster
from ..preprocess.align import S1_BANDS
from ..preprocess.sentinel2 import S2_BANDS, band_name, open_bands, reflectance
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

__all__ = [
    "BUILDING_CLASSES",
    "INPUT_GROUPS",
    "S1_BANDS",
    "SENSORS",
    "BuildingHeightDataModule",
    "CityArrays",
    "CityTiles",
    "building_classes",
    "check_city",
    "check_sensors",
    "city_months",
    "read_city",
    "read_height",
]

logger = logging.getLogger(__name__)

#: The input groups of a sample: the name of each tensor of a batch and its channels.
INPUT_GROUPS = {"s1": S1_BANDS, "s2": S2_BANDS}

#: The sensors, by input group name.
SENSORS = tuple(INPUT_GROUPS)

#: The height classes of the per-class metrics, by code (the index).
BUILDING_CLASSES = ("no_building", "low_rise", "mid_rise", "high_rise")

#: The upper bounds (m) of the low-rise and mid-rise classes.
CLASS_BOUNDS_M = (10.0, 30.0)

_MONTH_FILE = re.compile(r"^(s1|s2)_(\d{6})\.tif$")


@dataclass
class CityArrays:
    """One city's arrays, ready for tiling (float32).

    Attributes
    ----------
    name : the city's folder name.
    months : the months with both images ("YYYYMM"), sorted.
    s1 : (M, 2, H, W) Sentinel-1 sigma0 (dB); NaN where missing.
    s2 : (M, 10, H, W) Sentinel-2 reflectance (1); NaN where missing.
    height : (H, W) building height (m); NaN at nodata.
    transform, crs : the grid (rasterio's affine transform and CRS).
    """

    name: str
    months: list[str]
    s1: np.ndarray
    s2: np.ndarray
    height: np.ndarray
    transform: Any
    crs: Any

    @property
    def shape(self) -> tuple[int, int]:
        return self.height.shape[0], self.height.shape[1]

    def loss_mask(self, month: int) -> np.ndarray:
        """(H, W) bool: the cells whose height is valid and whose inputs of ``month`` (an
        index) are all finite."""
        inputs = np.isfinite(self.s1[month]).all(0) & np.isfinite(self.s2[month]).all(0)
        return np.isfinite(self.height) & inputs


def check_sensors(sensors: Sequence[str]) -> tuple[str, ...]:
    """The sensors (input groups) to use, checked: one or both of :data:`SENSORS`, in
    that order."""
    if isinstance(sensors, str) or not set(sensors) <= set(SENSORS) or not sensors:
        raise InvalidInputError(f"data.sensors must name one or both of {list(SENSORS)}, not {sensors!r}")
    return tuple(name for name in SENSORS if name in sensors)


def building_classes(height: np.ndarray, threshold_m: float = 1.0) -> np.ndarray:
    """The codes of :data:`BUILDING_CLASSES` (uint8) of heights (m); NaN heights get the
    code of "no_building" (they are outside every mask)."""
    classes = np.zeros(height.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        classes[height > threshold_m] = 1
        classes[height > CLASS_BOUNDS_M[0]] = 2
        classes[height > CLASS_BOUNDS_M[1]] = 3
    return classes


def city_months(folder: str | os.PathLike[str]) -> list[str]:
    """The months ("YYYYMM", sorted) of a city folder with both ``s1_`` and ``s2_`` images;
    a month with only one of them is skipped with a warning.

    Raises
    ------
    MissingInputError : the folder does not exist, or has no ``height.tif``.
    InvalidInputError : no month has both images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"city folder {str(folder)!r} does not exist: give a folder holding s1_YYYYMM.tif, "
                                "s2_YYYYMM.tif and height.tif")
    found: dict[str, set[str]] = {"s1": set(), "s2": set()}
    for path in folder.iterdir():
        match = _MONTH_FILE.match(path.name)
        if match:
            found[match.group(1)].add(match.group(2))
    for sensor, other in (("s1", "s2"), ("s2", "s1")):
        alone = sorted(found[sensor] - found[other])
        if alone:
            warnings.warn(f"city {folder.name!r}: months {alone} have {sensor}_YYYYMM.tif but no {other}_YYYYMM.tif; "
                          "skipped", stacklevel=2)
    months = sorted(found["s1"] & found["s2"])
    if not months:
        raise InvalidInputError(
            f"city folder {str(folder)!r} has no month with both images (s1 months {sorted(found['s1'])}, s2 months "
            f"{sorted(found['s2'])}): write s1_YYYYMM.tif and s2_YYYYMM.tif of the same months"
        )
    return months


def check_city(folder: str | os.PathLike[str], *, needs_height: bool = True) -> list[str]:
    """Check a city folder without reading its pixels: the months' pairing, every file's grid
    (the same shape, transform and CRS as the first, which must have a CRS), the bands'
    descriptions, and ``height.tif`` with its nodata. Returns the months.

    Raises
    ------
    MissingInputError : the folder or ``height.tif`` is missing.
    InvalidInputError : no common month, a grid that differs, wrong band descriptions, a
        height without declared nodata, a grid without a CRS.
    """
    folder = Path(folder)
    months = city_months(folder)
    files = [folder / f"{sensor}_{month}.tif" for month in months for sensor in ("s1", "s2")]
    height = folder / "height.tif"
    if needs_height:
        if not height.is_file():
            raise MissingInputError(f"city {folder.name!r} has no height.tif in {str(folder)!r}: write the building "
                                    "heights (m, 0 = no building) there")
        files.insert(0, height)
    grid = None
    for path in files:
        with open_raster(path, "city raster") as dataset:
            here = (dataset.shape, tuple(dataset.transform)[:6], dataset.crs)
            descriptions = tuple(str(d) for d in dataset.descriptions)
            nodata = dataset.nodata
        if grid is None:
            grid = here
            if here[2] is None:
                raise InvalidInputError(f"{str(path)!r} has no CRS: the city's rasters need one map grid with a CRS")
        elif here != grid:
            raise InvalidInputError(
                f"{str(path)!r} lies on another grid ({here[0]} cells, transform {here[1]}, CRS {here[2]}) than "
                f"{str(files[0])!r} ({grid[0]} cells, transform {grid[1]}, CRS {grid[2]}): resample every image of "
                "the city onto one 10 m grid"
            )
        if path.name.startswith("s1_") and descriptions != S1_BANDS:
            raise InvalidInputError(f"{str(path)!r} has bands described {list(descriptions)}, not {list(S1_BANDS)}: "
                                    "write Sentinel-1 sigma0 (dB) as two bands VV, VH")
        if path.name.startswith("s2_") and not set(S2_BANDS) <= {band_name(d) for d in descriptions}:
            raise InvalidInputError(f"{str(path)!r} has bands described {list(descriptions)}, not the ten "
                                    f"{list(S2_BANDS)}: write the ten Sentinel-2 bands with their names")
        if path.name == "height.tif" and nodata is None:
            raise InvalidInputError(f"{str(path)!r} declares no nodata value: write it (e.g. -9999) so that cells "
                                    "without a height are told from cells without a building (0)")
    return months


def _read_masked(path: Path) -> np.ndarray:
    with open_raster(path, "city raster") as dataset:
        values = dataset.read().astype(np.float32)
        nodata = dataset.nodata
    if nodata is not None and not math.isnan(nodata):
        values[values == np.float32(nodata)] = np.nan
    return values


def read_height(folder: str | os.PathLike[str]) -> np.ndarray:
    """The building height (m, float32 (H, W), nodata as NaN) of a city folder, checked
    first with :func:`check_city`, without reading its images."""
    folder = Path(folder)
    check_city(folder)
    return _read_masked(folder / "height.tif")[0]


#: The median height (m) of a city's buildings above which its heights look like feet:
#: real cities' medians are 5-25 m (Manhattan's about 20), the same in feet 16-80.
FEET_MEDIAN_M = 45.0


def check_building_heights(name: str, path: Path, height: np.ndarray) -> None:
    """Refuse building heights declared in feet, and heights whose buildings' median is
    above :data:`FEET_MEDIAN_M` (feet, most likely), in one line: a model trained or scored
    on them is off by a factor 3.3."""
    with open_raster(path, "city raster") as dataset:
        units = dataset.tags(1).get("units") or dataset.tags().get("units") or ""
    if units.strip().lower() in FEET_UNITS:
        raise InvalidInputError(f"city {name!r}: height.tif is in {units}; write the building heights in metres "
                                "(multiply by 0.3048)")
    buildings = height[np.isfinite(height) & (height > 1.0)]
    if buildings.size >= 20 and float(np.median(buildings)) > FEET_MEDIAN_M:
        raise InvalidInputError(
            f"city {name!r}: its buildings' median height is {float(np.median(buildings)):.0f} m, where real cities' "
            f"are 5-25 m: are the heights in feet (multiply by 0.3048)? Write height.tif in metres")


def warn_if_implausible_city(name: str, s1: np.ndarray, s2_numbers: np.ndarray) -> None:
    """Warn (:class:`~sarheight.errors.PlausibilityWarning`) when a city's rasters hold what
    the model was not trained on: Sentinel-1 in linear power instead of dB (nearly every
    value between 0 and a few, where dB of land are -25 to 0), Sentinel-2 as reflectance
    (0-1) instead of digital numbers (hundreds to thousands)."""
    from ..errors import PlausibilityWarning, user_stacklevel

    radar = s1[np.isfinite(s1)]
    if radar.size and float(np.mean(radar >= 0)) > 0.9 and float(np.percentile(radar, 99)) < 5.0:
        warnings.warn(f"city {name!r}: {100 * float(np.mean(radar >= 0)):.0f} % of its Sentinel-1 values are between "
                      f"0 and {float(np.percentile(radar, 99)):.2g}: linear power, not dB? The model reads dB "
                      "(10 log10 of the power); convert the s1_*.tif rasters", PlausibilityWarning,
                      stacklevel=user_stacklevel())
    optical = s2_numbers[np.isfinite(s2_numbers) & (s2_numbers != 0)]
    if optical.size and float(np.percentile(optical, 99)) < 2.0:
        warnings.warn(f"city {name!r}: its Sentinel-2 values are below {float(np.percentile(optical, 99)):.2g}: "
                      "reflectance, not digital numbers? The s2_*.tif rasters hold the products' DNs (reflectance "
                      "x 10000, plus the baseline's offset); write those", PlausibilityWarning,
                      stacklevel=user_stacklevel())


def read_city(folder: str | os.PathLike[str], *, needs_height: bool = True) -> CityArrays:
    """Read a city folder (checked first with :func:`check_city`) into memory: Sentinel-1 in
    dB as it is, Sentinel-2 as reflectance, the height with nodata as NaN (all NaN without
    ``needs_height`` and no ``height.tif``)."""
    folder = Path(folder)
    months = check_city(folder, needs_height=needs_height)
    s1 = np.stack([_read_masked(folder / f"s1_{month}.tif") for month in months])
    numbers = [open_bands(folder / f"s2_{month}.tif", bands=S2_BANDS) for month in months]
    warn_if_implausible_city(folder.name, s1, np.stack([dn.values for dn in numbers]))
    s2 = np.stack([reflectance(dn).values for dn in numbers])
    with open_raster(folder / f"s1_{months[0]}.tif", "city raster") as dataset:
        transform, crs, shape = dataset.transform, dataset.crs, dataset.shape
    height_path = folder / "height.tif"
    # check_city has checked the height where there is one: read it without checking again.
    height = _read_masked(height_path)[0] if height_path.is_file() else np.full(shape, np.nan, dtype=np.float32)
    if height_path.is_file():
        check_building_heights(folder.name, height_path, height)
    return CityArrays(name=folder.name, months=months, s1=s1.astype(np.float32), s2=s2.astype(np.float32),
                      height=height, transform=transform, crs=crs)


class CityTiles(TileSet):
    """Tiles of cities held in memory, one month each: a fixed list of (window, month)
    (validation, test) or random draws inside allowed cells and over the months
    (training), with torch's random generator (seeded by ``seed_everything``).

    Each item is a dict of tensors: ``s1`` (2, T, T) and ``s2`` (10, T, T), NaN where
    missing or padding (a sensor not in ``sensors``: 0 channels); ``target`` (1, T, T, m, 0 outside the mask); ``mask``
    (1, T, T,
    bool); ``classes`` (1, T, T, uint8 codes of :data:`BUILDING_CLASSES`); ``city``,
    ``month`` (indices) and ``window`` (row, col, rows, cols).
    """

    def __init__(self, cities: Sequence[CityArrays], tile: int, *, threshold_m: float = 1.0,
                 windows: Sequence[tuple[Window, int]] | None = None,
                 areas: Sequence[np.ndarray] | None = None, length: int | None = None,
                 sensors: Sequence[str] = SENSORS):
        self.sensors = check_sensors(sensors)
        self.cities = list(cities)
        self.threshold_m = float(threshold_m)
        self._classes = [building_classes(city.height, self.threshold_m) for city in self.cities]
        super().__init__([city.shape for city in self.cities], tile, windows=windows, areas=areas, length=length)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.check_index(index)
        if self.windows is not None:
            window, month = self.windows[index]
        else:
            window, generator = self.random_tile(index)
            month = int(generator.integers(len(self.cities[window.scene].months)))
        return self.item(window, month)

    def item(self, window: Window, month: int) -> dict[str, torch.Tensor]:
        """The tensors of one tile of one month (see the class's docstring)."""
        city = self.cities[window.scene]
        tile = self.tile
        rows = slice(window.row, window.row + window.rows)
        cols = slice(window.col, window.col + window.cols)
        inner = (slice(0, window.rows), slice(0, window.cols))
        tensors = {}
        for name, source in (("s1", city.s1), ("s2", city.s2)):
            channels = source.shape[1] if name in self.sensors else 0
            values = np.full((channels, tile, tile), np.nan, dtype=np.float32)
            values[(slice(None), *inner)] = source[month, :channels, rows, cols]
            tensors[name] = torch.from_numpy(values)
        mask = np.zeros((1, tile, tile), dtype=bool)
        target = np.zeros((1, tile, tile), dtype=np.float32)
        classes = np.zeros((1, tile, tile), dtype=np.uint8)
        mask[(0, *inner)] = city.loss_mask(month)[rows, cols]
        target[(0, *inner)] = np.where(mask[(0, *inner)], city.height[rows, cols], 0)
        classes[(0, *inner)] = self._classes[window.scene][rows, cols]
        return {**tensors, "target": torch.from_numpy(target), "mask": torch.from_numpy(mask),
                "classes": torch.from_numpy(classes), "city": torch.tensor(window.scene),
                "month": torch.tensor(month), "window": torch.tensor(window[1:])}


class BuildingHeightDataModule(TiledDataModule):
    """Cities of monthly Sentinel-1/2 images and building heights as tiles, split spatially,
    for :class:`~sarheight.training.PixelRegression` with MBHR-Net.

    Parameters
    ----------
    root : the folder of city folders (see the module's docstring).
    cities : the city folders to use, by name; default every folder of ``root``.
    split : "city" (whole cities to validation and test) or "block" (square blocks of
        ``block_size`` cells of every city).
    val_cities, test_cities : with ``split="city"``, the validation and test cities by
        name; a split not named is drawn from the other cities with its fraction.
    val_fraction, test_fraction : the share of cities (or blocks) drawn for validation
        and test with ``seed``; at least one each when above 0.
    block_size : the side of the blocks of ``split="block"`` (cells), at least ``tile``.
    tile : the side of the tiles (cells); a multiple of ``2 ** (stages + 1)`` of MBHR-Net.
    tiles_per_epoch : random training tiles (each of one month) per epoch.
    batch_size : tiles per batch.
    num_workers : DataLoader worker processes (0: in the main process).
    seed : the seed of the split (the tiles follow Lightning's ``seed_everything``).
    height_threshold_m : the height (m) above which a cell is a building footprint, for
        the footprint IoU and the class "no_building".
    sensors : the sensors the model reads, ``["s1", "s2"]`` by default; one of them for a
        single-sensor model (MBHR-Net with the other's channels 0: ``in_channels`` gives
        that group 0 channels and its tensors have none). The scored cells stay those
        where every image of the folder is valid, whichever sensors are read, so that
        models of different sensors are compared on the same cells.
    """

    test_option = "data.test_cities"

    def __init__(
        self,
        root: str = "cities",
        *,
        cities: list[str] | None = None,
        split: Literal["city", "block"] = "city",
        val_cities: list[str] | None = None,
        test_cities: list[str] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        block_size: int = 128,
        tile: int = 64,
        tiles_per_epoch: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        height_threshold_m: float = 1.0,
        sensors: list[str] | None = None,
    ):
        checked_sensors = check_sensors(SENSORS if sensors is None else sensors)
        super().__init__(unit="city", units="cities", split=split, named=bool(val_cities or test_cities),
                         val_fraction=val_fraction, test_fraction=test_fraction, block_size=block_size, tile=tile,
                         tiles_per_epoch=tiles_per_epoch, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.sensors = checked_sensors
        if not (math.isfinite(height_threshold_m) and height_threshold_m >= 0):
            raise InvalidInputError(f"data.height_threshold_m must be a number >= 0 (m), not {height_threshold_m}")
        self.save_hyperparameters()
        self.root = Path(root)
        self.cities = list(cities) if cities is not None else None
        self.val_cities = list(val_cities or [])
        self.test_cities = list(test_cities or [])
        self.height_threshold_m = float(height_threshold_m)
        self.channels = [band for name in self.sensors for band in INPUT_GROUPS[name]]
        self.target = "height"
        self.reference: str | None = None

    # What the regression module reads (sarheight.training.regression.RegressionData).

    @property
    def in_channels(self) -> dict[str, int]:
        """The channels of each input group (linked to the model's ``in_channels``)."""
        return {name: len(bands) if name in self.sensors else 0 for name, bands in INPUT_GROUPS.items()}

    @property
    def class_names(self) -> tuple[str, ...]:
        """The height classes of the per-class metrics."""
        return BUILDING_CLASSES

    # Reading, splitting, normalising.

    def city_folders(self) -> list[Path]:
        """The city folders: those named by ``cities``, or every folder of ``root``, sorted."""
        if not self.root.is_dir():
            raise MissingInputError(f"data.root {str(self.root)!r} is not a folder: give the folder of city folders")
        if self.cities is None:
            folders = sorted(path for path in self.root.iterdir() if path.is_dir())
            if not folders:
                raise MissingInputError(f"data.root {str(self.root)!r} holds no city folder")
            return folders
        missing = [name for name in self.cities if not (self.root / name).is_dir()]
        if missing:
            raise MissingInputError(f"data.cities names {missing}, which are not folders of {str(self.root)!r}")
        return [self.root / name for name in self.cities]

    def setup(self, stage: str | None = None) -> None:
        """Check every city folder, then read them (once), split them and compute the
        normalisation statistics from the training cells."""
        if self.data is not None:
            return
        folders = self.city_folders()
        for folder in folders:
            check_city(folder)
        data = [read_city(folder) for folder in folders]
        if self.split == "city":
            self._split_cities(data)
        else:
            self._split_blocks(data)
        self._statistics(data)
        self.data = data
        train = [area == SPLITS.index("train") for area in self.areas]
        self.datasets = {"train": CityTiles(data, self.tile, threshold_m=self.height_threshold_m, areas=train,
                                            length=self.tiles_per_epoch, sensors=self.sensors)}
        for split in ("val", "test"):
            windows = [(window, month) for region in self.regions[split] for window in grid_windows(*region, self.tile)
                       for month in range(len(data[window.scene].months))]
            self.datasets[split] = CityTiles(data, self.tile, threshold_m=self.height_threshold_m, windows=windows,
                                             sensors=self.sensors)
        logger.info("cities: %s; %d validation and %d test tiles", self.split_scenes, len(self.datasets["val"]),
                    len(self.datasets["test"]))

    def _split_cities(self, data: list[CityArrays]) -> None:
        names = [city.name for city in data]
        unknown = [name for name in self.val_cities + self.test_cities if name not in names]
        if unknown:
            raise InvalidInputError(f"data.val_cities/test_cities name {unknown}, which are not cities ({names})")
        both = set(self.val_cities) & set(self.test_cities)
        if both:
            raise InvalidInputError(f"cities {sorted(both)} are named for both validation and test: name each once")
        chosen = {"val": list(self.val_cities), "test": list(self.test_cities)}
        rest = [name for name in names if name not in chosen["val"] + chosen["test"]]
        rest = [rest[k] for k in np.random.default_rng(self.seed).permutation(len(rest))]
        for split, fraction in (("val", self.val_fraction), ("test", self.test_fraction)):
            if not chosen[split] and fraction > 0:
                count = max(1, round(fraction * len(names)))
                chosen[split], rest = rest[:count], rest[count:]
        if not rest:
            raise InvalidInputError(f"no city is left for training among {names} (validation {chosen['val']}, test "
                                    f"{chosen['test']}): add cities, lower data.val_fraction/test_fraction, or set "
                                    f"data.split to block")
        chosen["train"] = rest
        self.split_scenes = {split: sorted(chosen[split]) for split in SPLITS}
        code = {name: SPLITS.index(split) for split, cities in chosen.items() for name in cities}
        self.areas = [np.full(city.shape, code[city.name], dtype=np.uint8) for city in data]
        self.regions = {split: [(index, 0, 0, *city.shape) for index, city in enumerate(data)
                                if city.name in chosen[split]] for split in SPLITS}

    def _split_blocks(self, data: list[CityArrays]) -> None:
        size = self.block_size
        blocks = [(index, row, col) for index, city in enumerate(data)
                  for row in range(0, city.shape[0], size) for col in range(0, city.shape[1], size)]
        split_of = assign_blocks(blocks, val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                                 seed=self.seed, block_size=size, more="cities")
        self.areas = [np.full(city.shape, NO_SPLIT, dtype=np.uint8) for city in data]
        self.regions = {split: [] for split in SPLITS}
        for (index, row, col), split in split_of.items():
            row1, col1 = min(row + size, data[index].shape[0]), min(col + size, data[index].shape[1])
            self.areas[index][row:row1, col:col1] = SPLITS.index(split)
            self.regions[split].append((index, row, col, row1, col1))
        self.split_scenes = {split: sorted({data[index].name for index, *_ in regions})
                             for split, regions in self.regions.items()}

    def _statistics(self, data: list[CityArrays]) -> None:
        sums = ChannelSums(len(self.channels))
        for city, area in zip(data, self.areas, strict=True):
            train = area == SPLITS.index("train")
            for month in range(len(city.months)):
                images = {"s1": city.s1[month], "s2": city.s2[month]}
                sums.add_inputs(np.concatenate([images[name][:, train] for name in self.sensors]))
                sums.add_target(city.height[train & city.loss_mask(month)])
        self.set_statistics(sums, "the training cells hold no valid height with finite inputs: check the cities' "
                            "height.tif (nodata) and images")
