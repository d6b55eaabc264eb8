"""Rasters in and out: inputs opened only in the formats sarheight reads, results written
as atomic, tiled, compressed GeoTIFFs with band names.

Reading. DEMs, geoid grids and images come from anywhere, and GDAL opens whatever it
recognises: a VRT (also one renamed ``.tif``) can present any local file as pixels or
make GDAL fetch a URL. :func:`open_raster` therefore opens a raster only with the drivers
of :data:`READ_DRIVERS`, refuses VRTs by their content before GDAL sees them, and
refuses network paths (``/vsicurl/``, ``/vsis3/``, URLs) unless the environment variable
:data:`ALLOW_NETWORK_ENV` is ``1``. A raster whose declared size needs more memory than
the machine has available is refused before it is read, and a corrupt or truncated file
is an :class:`~sarheight.errors.InvalidInputError` naming it.

Writing. Every file is written under a temporary name in the destination folder and
renamed into place only once complete and checked (flushed to the disk, and a GeoTIFF read
back block by block: GDAL only logs a write that fails when it closes the file), so an
interrupted run or a full disk never leaves a half-written file under the final name; a
write that fails for want of room is an :class:`~sarheight.errors.OutputError` naming the
folder. Temporaries a killed run left (``.NAME.HOST-PID-TOKEN.part``) are removed, with a
warning, by the next write to the same name.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import math
import os
import re
import secrets
import shutil
import socket
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from .errors import InvalidInputError, MissingInputError, OutputError
from .masks import MaskCode
from .paths import check_outputs

#: The formats (GDAL drivers) of the rasters sarheight reads: GeoTIFF (DEMs, images,
#: Sentinel-1 measurements), JPEG 2000 (the bands of Sentinel-2 SAFE products), GTX
#: (geoid grids such as egm96_15.gtx) and SRTM ``.hgt`` tiles.
READ_DRIVERS = ("GTiff", "JP2OpenJPEG", "GTX", "SRTMHGT")
#: Names of the formats of :data:`READ_DRIVERS`, for messages.
READ_FORMATS = "GeoTIFF, JPEG 2000, GTX or SRTM .hgt"
#: Set this environment variable to 1 to let sarheight read rasters over the network.
ALLOW_NETWORK_ENV = "SARHEIGHT_ALLOW_NETWORK"

# GDAL's virtual file systems that reach the network (also nested, as in
# /vsizip//vsicurl/...), and URLs.
_NETWORK_PATH = re.compile(r"/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs|hdfs)|://", re.I)
# GDAL settings while opening inputs: no raw VRT bands (defence in depth: the VRT
# driver is not among READ_DRIVERS), no listing of the input's folder.
_READ_OPTIONS = {"GDAL_VRT_ENABLE_RAWRASTERBAND": "NO", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


#: A temporary file a write leaves until it is renamed: ``.<final name>.<host mark>-<pid>-<random>.part``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]+\.part$")


def network_allowed() -> bool:
    """Whether the user let sarheight read rasters over the network (:data:`ALLOW_NETWORK_ENV`)."""
    return os.environ.get(ALLOW_NETWORK_ENV, "").strip().lower() in ("1", "yes", "true")


def check_raster_path(path: str | os.PathLike[str], what: str) -> str:
    """The path GDAL is to open, after refusing a network path (unless allowed), a file
    that does not exist and a VRT; ``what`` names the input in messages ("DEM")."""
    source = os.fspath(path)
    if _NETWORK_PATH.search(source):
        if not network_allowed():
            raise InvalidInputError(
                f"{what} {source!r} is a network path: sarheight reads local files unless you set "
                f"{ALLOW_NETWORK_ENV}=1 (download the file, or set it if you trust the source)"
            )
        return source
    if source.startswith("/vsi"):
        return source  # inside a local archive (/vsizip/, /vsitar/): GDAL checks that it is there
    local = Path(source).expanduser()
    if not local.exists():
        raise MissingInputError(
            f"{what} {source!r} does not exist. Check the path (relative paths are taken from {os.getcwd()!r})."
        )
    if local.is_dir():
        raise InvalidInputError(f"{what} {source!r} is a folder: give the path of the raster file")
    if local.stat().st_size == 0:
        raise InvalidInputError(f"{what} {source!r} is an empty file: it was not written completely, or not at all")
    with open(local, "rb") as file:
        head = file.read(1024)
    if b"<VRTDataset" in head:
        raise InvalidInputError(
            f"{what} {source!r} is a GDAL VRT, which can present any file or URL as pixels: sarheight does "
            f"not read VRTs. If you trust it, make a GeoTIFF of it (gdal_translate -of GTiff IN OUT.tif)"
        )
    return str(local)


@contextlib.contextmanager
def open_raster(path: str | os.PathLike[str], what: str,
                drivers: Sequence[str] = READ_DRIVERS) -> Iterator[rasterio.DatasetReader]:
    """Open an input raster with one of ``drivers`` only (see the module's docstring).

    Raises
    ------
    MissingInputError
        No such file.
    InvalidInputError
        A network path (unless allowed), a VRT, a format outside ``drivers``, or a file
        GDAL cannot open (truncated, corrupt), each naming ``what`` and the file.
    """
    source = check_raster_path(path, what)
    with rasterio.Env(**_READ_OPTIONS):
        dataset, errors = None, []
        for driver in drivers:
            try:
                dataset = rasterio.open(source, driver=driver)
                break
            except rasterio.errors.RasterioIOError as error:
                errors.append(str(error))
        if dataset is None:
            unrecognised = all("not recognized" in error for error in errors)
            raise InvalidInputError(
                f"{what} {source!r} is not a raster sarheight reads ({READ_FORMATS}): convert it, e.g. "
                "gdal_translate -of GTiff IN OUT.tif" if unrecognised else
                f"{what} {source!r} cannot be read ({errors[0]}): the file is truncated or corrupt"
            )
        with dataset:
            _check_raw_size(dataset, source, what)
            yield dataset


#: Header bytes of the raw formats, whose pixels GDAL reads as zeros past a truncated end.
_RAW_HEADERS = {"GTX": 40, "SRTMHGT": 0}


def _check_raw_size(dataset: rasterio.DatasetReader, source: str, what: str) -> None:
    """Refuse a truncated raw-format file (GTX, .hgt), which GDAL would read as zeros."""
    header = _RAW_HEADERS.get(dataset.driver)
    if header is None or not os.path.isfile(source):
        return
    expected = header + dataset.width * dataset.height * dataset.count * np.dtype(dataset.dtypes[0]).itemsize
    size = os.path.getsize(source)
    if size < expected:
        raise InvalidInputError(
            f"{what} {source!r} is truncated: {size} bytes where its {dataset.height} x {dataset.width} values need "
            f"{expected}; download it again"
        )


def read_band(dataset: rasterio.DatasetReader, what: str, band: int = 1,
              window: rasterio.windows.Window | None = None, masked: bool = False) -> np.ndarray:
    """A band of an open input raster (or its ``window``), refusing one whose size needs more
    memory than is available and turning a read failure (a truncated file) into an
    :class:`~sarheight.errors.InvalidInputError` naming ``what`` and the file."""
    rows, cols = (dataset.height, dataset.width) if window is None else (int(window.height), int(window.width))
    check_memory(rows * cols * (np.dtype(dataset.dtypes[band - 1]).itemsize + 4),
                 f"reading {what} {dataset.name!r} ({rows} x {cols} cells)")
    try:
        return dataset.read(band, window=window, masked=masked)
    except rasterio.errors.RasterioError as error:
        raise InvalidInputError(
            f"{what} {dataset.name!r} cannot be read ({error}): the file is truncated or corrupt"
        ) from error


def available_memory() -> int:
    """Bytes of memory available to new allocations: the system's (``MemAvailable``; the
    physical memory where the system does not say), within the process's own limits where
    it has them: its address-space limit (``ulimit -v``) less what it maps, and its control
    group's limit (a container, a batch job's allocation) less what the group uses. A
    job's limit is what kills a process without a word."""
    import psutil

    available = int(psutil.virtual_memory().available)
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            available = min(available, max(0, soft - psutil.Process().memory_info().vms))
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        with contextlib.suppress(OSError, ValueError):
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                available = min(available, max(0, int(limit) - int(Path(usage_file).read_text().strip())))
                break
    return available


def check_memory(needed: int, what: str, hint: str = "") -> None:
    """Refuse, before any work, ``what`` when it needs more than the available memory."""
    available = available_memory()
    if needed > available:
        raise InvalidInputError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory, more than the {available / 2**30:.1f} GiB "
            f"available{hint}"
        )


#: No-data value of uint8 mask bands: outside the image or no DEM.
MASK_NODATA = int(MaskCode.OUTSIDE)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    with output_set([path]) as (temporary,):
        yield temporary


@contextlib.contextmanager
def output_set(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths`` (the files of one run); check them
    and rename them all into place if the block succeeds, remove them all if it fails.

    A failed run thus leaves the previous files as they were, never a new result beside an
    old masks file. Each temporary is flushed to the disk and, where it is a GeoTIFF, read
    back block by block before any is renamed. Paths must differ and not be symbolic links
    (a link would be replaced by a plain file: give the path it points to).

    Raises
    ------
    OutputError
        A file could not be written whole (no space left, a quota, a file-size limit).
    """
    finals = [Path(path) for path in paths]
    for final in finals:
        if not final.parent.exists():
            raise InvalidInputError(f"output folder {str(final.parent)!r} does not exist: create it first")
    check_outputs([(final, "output") for final in finals])
    for final in finals:
        remove_stale_temporaries(final)
    temporaries: list[Path] = []
    try:
        for final in finals:
            temporaries.append(_exclusive_temporary(final))
        try:
            yield list(temporaries)
            for temporary, final in zip(temporaries, finals, strict=True):
                check_written(temporary, final)
        except OutputError:
            raise
        except Exception as error:
            reason = _no_room(error)
            if reason is None:
                raise
            raise OutputError(_output_message(finals, reason)) from error
        for temporary, final in zip(temporaries, finals, strict=True):
            os.replace(temporary, final)
    finally:
        for temporary in temporaries:
            if temporary.exists():
                temporary.unlink()


#: Error numbers of a write that found no room: no space left, a quota, a file-size limit.
_NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# How GDAL, libtiff and torch's writer say the same in their messages (torch's checkpoint
# writer, cut short, finds its file position behind what it wrote: "unexpected pos").
_NO_ROOM_WORDS = ("no space left", "disk quota", "file too large", "write error", "write failed", "failed writing",
                  "file write failed", "inline_container.cc")


def _no_room(error: BaseException) -> str | None:
    """Why ``error`` (or an error it was raised from) says a write found no room, or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _NO_ROOM_ERRNOS:
            return os.strerror(seen.errno).lower()
        text = str(seen).lower()
        if any(words in text for words in _NO_ROOM_WORDS):
            return "a write error (a full disk, a quota or a file-size limit)"
        seen = seen.__cause__ or seen.__context__
    return None


def _output_message(finals: Sequence[Path], reason: str) -> str:
    folder = finals[0].parent.absolute()
    try:
        free = f"; {shutil.disk_usage(folder).free / 1e6:,.1f} MB free there now"
    except OSError:
        free = ""
    # A temporary written through another (a file of a set): the name it will have.
    names = ", ".join(match["name"] if (match := _TEMPORARY.match(final.name)) else final.name for final in finals)
    return (f"could not write {names} in {str(folder)!r}: {reason}{free}. Nothing was written under "
            f"{'those names' if len(finals) > 1 else 'that name'} (an earlier file there is as it was): free space "
            "or write to another folder, then run the command again")


#: TIFF's first bytes (little- and big-endian, classic and BigTIFF).
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

def check_written(temporary: Path, final: Path) -> None:
    """Flush ``temporary`` to the disk, refuse it empty and, where it is a GeoTIFF, read
    every block of it back; an :class:`OutputError` naming ``final`` where any fails."""
    try:
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            magic = os.pread(descriptor, 4, 0)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise OutputError(_output_message([final], _no_room(error) or str(error))) from error
    tiff_named = is_geotiff_path(final)
    if not magic or (tiff_named and magic not in _TIFF_MAGIC) or (
            len(magic) < 4 and any(known.startswith(magic) for known in _TIFF_MAGIC)):
        # A write cut short by a full disk: a small file can fail whole or after its first
        # bytes, with no error from the writer that buffered it.
        raise OutputError(_output_message([final], f"the file was written {'empty' if not magic else 'cut short'}: "
                                                   "a write error (a full disk, a quota or a file-size limit)"))
    if magic not in _TIFF_MAGIC:
        return
    try:
        with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(temporary) as written:
            for band in written.indexes:
                for _, window in written.block_windows(band):
                    written.read(band, window=window)
    except Exception as error:
        raise OutputError(_output_message([final], "the file read back broken: a write error (a full disk, a "
                                                   "quota or a file-size limit)")) from error


#: The host's mark in temporary names (a run on another host may share the folder).
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove the temporaries of ``final`` that a run on this host left when it was killed
    (its process is gone), with a warning naming them; returns them."""
    removed = []
    for candidate in final.parent.glob(f".{glob.escape(final.name)}.*.part"):
        match = _TEMPORARY.match(candidate.name)
        if match is None or match["name"] != final.name or match["host"] != _HOST or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    if removed:
        warnings.warn(f"removed {len(removed)} unfinished file(s) a killed run left beside {final}: "
                      f"{', '.join(path.name for path in removed)}", stacklevel=3)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exclusive_temporary(final: Path) -> Path:
    """A new empty file beside ``final``, named ``.NAME.HOST-PID-TOKEN.part``."""
    # Not tempfile.mkstemp: it creates the file private (0600), and the rename would keep
    # that; an exclusive open() gives the usual permissions (0666 less the umask).
    while True:
        temporary = final.parent / f".{final.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(6)}.part"
        try:
            with open(temporary, "x"):
                return temporary
        except FileExistsError:
            continue


def _band_array(da: xr.DataArray) -> tuple[np.ndarray, float | int | None]:
    values = da.values
    if values.dtype.kind == "M":
        raise InvalidInputError(
            f"variable {da.name!r} holds times, which GeoTIFF cannot store: convert it to seconds "
            "first (e.g. seconds since a reference) or leave it out"
        )
    if values.dtype == np.uint8:
        return values, MASK_NODATA
    if values.dtype.kind == "b":
        return values.astype(np.uint8), None
    # Geometry (slant range, line, sample, time) needs float64: float32 steps are 6 cm
    # at 850 km. Everything else is stored as float32.
    return values.astype(np.float64 if values.dtype == np.float64 else np.float32, copy=False), float("nan")


#: Largest tile side of the GeoTIFFs written (pixels).
TILE_SIDE = 256


def tile_side(rows: int, cols: int, largest: int = TILE_SIDE) -> int:
    """Tile side for a raster of ``rows`` x ``cols``: ``largest``, or for a smaller raster
    its larger side rounded up to a multiple of 16 (GeoTIFF's rule for tile sizes), so
    that every file is tiled, a small one in a single tile."""
    return min(largest, 16 * max(1, math.ceil(max(rows, cols) / 16)))


def write_geotiff(
    data: xr.Dataset | xr.DataArray,
    path: str | os.PathLike[str],
    variables: Sequence[str] | None = None,
) -> Path:
    """Write variables of a dataset on a map grid as one multi-band GeoTIFF, atomically.

    Parameters
    ----------
    data : Dataset (or DataArray) with dims (y, x) and a rioxarray CRS.
    path : destination file.
    variables : names of the variables to write, in band order; default all 2-D (y, x)
        variables that are not times. Masks (uint8) and floats cannot share one file in
        GeoTIFF's single data type, so floats are written as float32 (float64 when a band
        is float64) and uint8 masks are promoted to float with 255 kept as a value,
        unless every band is uint8.

    Returns
    -------
    The path written. Band descriptions carry the variable names; dataset attributes
    become GeoTIFF tags.
    """
    ds = data.to_dataset(name=data.name or "band") if isinstance(data, xr.DataArray) else data
    if variables is None:
        variables = [
            name for name, var in ds.data_vars.items()
            if var.dims == ("y", "x") and var.dtype.kind != "M"
        ]
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise InvalidInputError(f"variables {missing} are not in the dataset ({list(ds.data_vars)})")
    if not variables:
        raise InvalidInputError("nothing to write: no (y, x) variable selected")
    if ds.rio.crs is None:
        raise InvalidInputError("the dataset has no CRS: write one with ds.rio.write_crs(...) first")
    bands = []
    for name in variables:
        if ds[name].dims != ("y", "x"):
            raise InvalidInputError(f"variable {name!r} has dims {ds[name].dims}, expected ('y', 'x')")
        bands.append(_band_array(ds[name]))
    all_masks = all(arr.dtype == np.uint8 for arr, _ in bands)
    dtype = np.uint8 if all_masks else (np.float64 if any(arr.dtype == np.float64 for arr, _ in bands) else np.float32)
    nodata = MASK_NODATA if all_masks else float("nan")
    rows, cols = bands[0][0].shape
    profile = {
        "driver": "GTiff",
        "height": rows,
        "width": cols,
        "count": len(bands),
        "dtype": np.dtype(dtype).name,
        "crs": ds.rio.crs,
        "transform": ds.rio.transform(),
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 2 if all_masks else 3,
        "tiled": True,
        "blockxsize": tile_side(rows, cols),
        "blockysize": tile_side(rows, cols),
        "BIGTIFF": "IF_SAFER",
    }
    tags = {k: tag_value(v) for k, v in ds.attrs.items() if isinstance(v, (str, int, float, np.number))}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for index, ((arr, _), name) in enumerate(zip(bands, variables, strict=True), start=1):
            dst.write(arr.astype(dtype, copy=False), index)
            dst.set_band_description(index, name)
            units = ds[name].attrs.get("units")
            if units:
                dst.update_tags(index, units=str(units))
        dst.update_tags(**tags)
    return Path(path)


def tag_value(value: Any) -> str:
    """A file's tag for an attribute: an absolute path of a file on this machine (a geoid
    grid in the installation) by its name, so that a file shared carries no folder of the
    machine that wrote it; anything else as text."""
    text = str(value)
    if isinstance(value, str) and os.path.isabs(text) and os.path.isfile(text):
        return Path(text).name
    return text


def write_radar_image(image: xr.DataArray, path: str | os.PathLike[str]) -> Path:
    """Write an image in radar geometry (dims ``(line, sample)``, pixel-centre coordinates)
    as a one-band float32 GeoTIFF, atomically: no map CRS; its transform maps the raster's
    column and row to the pixel's ``sample`` and ``line`` (unit steps from the window's
    first pixel), the band description is the image's name and its attributes are tags."""
    if image.dims != ("line", "sample"):
        raise InvalidInputError(f"a radar image has dims ('line', 'sample'), got {image.dims}")
    lines, samples = image["line"].values, image["sample"].values
    rows, cols = image.shape
    profile = {"driver": "GTiff", "height": rows, "width": cols, "count": 1, "dtype": "float32",
               "transform": rasterio.Affine(1.0, 0.0, float(samples[0]) - 0.5, 0.0, 1.0, float(lines[0]) - 0.5),
               "nodata": float("nan"), "compress": "deflate", "predictor": 3, "tiled": True,
               "blockxsize": tile_side(rows, cols), "blockysize": tile_side(rows, cols), "BIGTIFF": "IF_SAFER"}
    tags = {k: tag_value(v) for k, v in image.attrs.items() if isinstance(v, (str, int, float, np.number))}
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.asarray(image.values, dtype=np.float32), 1)
            dst.set_band_description(1, str(image.name or "image"))
            dst.update_tags(first_line=str(lines[0]), first_sample=str(samples[0]),
                            axes="rows: radar lines (azimuth), columns: radar samples (range)", **tags)
    return Path(path)


#: The tags :func:`write_radar_image` writes that say a GeoTIFF is in radar geometry.
RADAR_IMAGE_TAGS = ("first_line", "first_sample")


#: The file suffixes of a GeoTIFF, as the readers and writers tell one from a product.
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def is_geotiff_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named as a GeoTIFF (its suffix, any case): what a GeoTIFF
    observation is told from a Sentinel-1 product by, before any reading."""
    return Path(path).suffix.lower() in GEOTIFF_SUFFIXES


def is_radar_image(tags: dict[str, str]) -> bool:
    """Whether a GeoTIFF's tags say it is an image in radar geometry (:func:`write_radar_image`)."""
    return all(key in tags for key in RADAR_IMAGE_TAGS)


def read_radar_image(dataset: Any, name: str) -> xr.DataArray:
    """An image :func:`write_radar_image` wrote, from its open rasterio ``dataset``: a
    ``(line, sample)`` DataArray of absolute pixel coordinates, its tags as attributes
    (numbers as numbers), named ``name``.

    Raises
    ------
    InvalidInputError : tags that do not place the image (not integers).
    """
    tags = dataset.tags()
    try:
        line0, sample0 = int(tags["first_line"]), int(tags["first_sample"])
    except (KeyError, ValueError):
        raise InvalidInputError(f"{name}: its first_line and first_sample tags must be integers (the pixel the "
                                "image starts at): write it with sarheight simulate, or give the product") from None
    values = dataset.read(1, masked=True).filled(np.nan).astype(np.float32)
    attrs: dict[str, Any] = {}
    for key, value in tags.items():
        if key in (*RADAR_IMAGE_TAGS, "axes", "AREA_OR_POINT"):
            continue
        try:
            attrs[key] = float(value)
        except ValueError:
            attrs[key] = value
    return xr.DataArray(values, dims=("line", "sample"), name=name, attrs=attrs,
                        coords={"line": line0 + np.arange(values.shape[0]),
                                "sample": sample0 + np.arange(values.shape[1])})


def write_bands(
    data: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: Any,
    transform: Any,
    descriptions: Sequence[str],
    tags: dict[str, Any] | None = None,
    nodata: float | int | None = None,
) -> Path:
    """Write an array of bands as one GeoTIFF in the array's own dtype, atomically.

    Where :func:`write_geotiff` stores variables as float (or uint8 masks), this keeps
    the dtype given: integer products (Sentinel-2 DNs as uint16, class codes as uint8)
    stay as the product stores them.

    Parameters
    ----------
    data : (bands, rows, cols) values, any GeoTIFF dtype.
    path : destination file.
    crs, transform : the map grid (a rasterio CRS or anything it reads; an Affine).
    descriptions : one name per band (band descriptions), in band order.
    tags : dataset tags (values written as strings).
    nodata : the no-data value to declare, or None for none.

    Returns
    -------
    The path written.

    Raises
    ------
    InvalidInputError
        ``data`` is not 3-D, or the descriptions do not name every band.
    """
    if data.ndim != 3:
        raise InvalidInputError(f"write_bands takes (bands, rows, cols), got an array of shape {data.shape}")
    if len(descriptions) != data.shape[0]:
        raise InvalidInputError(f"{len(descriptions)} band descriptions for {data.shape[0]} bands: name every band")
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "compress": "deflate"}
    if nodata is not None:
        profile["nodata"] = nodata
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(descriptions, start=1):
            dst.set_band_description(index, str(name))
        dst.update_tags(**{key: tag_value(value) for key, value in (tags or {}).items()})
    return Path(path)


class GeoTiffBlockWriter:
    """A multi-band GeoTIFF written block of rows by block of rows, atomically.

    For results too large to hold: each block's rows go to disk as they are computed.
    The file is written under a temporary name and renamed into place when the ``with``
    block ends without an error; on an error it is removed.

    Parameters
    ----------
    path : destination file.
    names : band names, in band order (band descriptions).
    dtype : numpy dtype of every band.
    like : a (y, x) DataArray or Dataset with a CRS: the grid (shape, transform, CRS).
    nodata : no-data value (default NaN for floats, 255 for uint8 masks, none otherwise).
    tags : dataset tags; units : per-band ``units`` tags, by band name.
    block_shape : (rows, cols) of the file's tiles, multiples of 16: write in blocks that
        cover whole tiles, or GDAL reads back, and compresses again, the tiles written in
        parts.
    """

    #: GDAL block cache while writing (MB).
    CACHE_MB = 64

    def __init__(self, path: str | os.PathLike[str], names: Sequence[str], dtype: Any, like: xr.DataArray | xr.Dataset,
                 *, nodata: float | int | None = None, tags: dict[str, Any] | None = None,
                 units: dict[str, str] | None = None, block_shape: tuple[int, int] = (256, 256)):
        self.path = Path(path)
        self.names = list(names)
        self.dtype = np.dtype(dtype)
        if like.rio.crs is None:
            raise InvalidInputError("the grid has no CRS: write one with .rio.write_crs(...) first")
        if nodata is None:
            nodata = float("nan") if self.dtype.kind == "f" else (MASK_NODATA if self.dtype == np.uint8 else None)
        rows, cols = like.rio.height, like.rio.width
        self.profile = {
            "driver": "GTiff", "height": rows, "width": cols, "count": len(self.names), "dtype": self.dtype.name,
            "crs": like.rio.crs, "transform": like.rio.transform(), "nodata": nodata, "compress": "deflate",
            "predictor": 3 if self.dtype.kind == "f" else 2,
            # Band by band: each band is written on its own, a whole tile at a time.
            "interleave": "band", "BIGTIFF": "IF_SAFER",
        }
        block_rows, block_cols = block_shape
        if rows < block_rows or cols < block_cols:
            block_rows = block_cols = tile_side(rows, cols, min(block_shape))
        self.profile.update(tiled=True, blockysize=block_rows, blockxsize=block_cols)
        self.tags = {k: tag_value(v) for k, v in (tags or {}).items() if isinstance(v, (str, int, float, np.number))}
        self.units = units or {}
        self._stack = contextlib.ExitStack()
        self._dst = None

    def __enter__(self) -> GeoTiffBlockWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        # GDAL keeps written blocks in its cache (by default 5 % of the RAM) until it
        # needs the room: bound it, so that memory follows the block size, not the file.
        self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=self.CACHE_MB))
        self._dst = self._stack.enter_context(rasterio.open(tmp, "w", **self.profile))
        for index, name in enumerate(self.names, start=1):
            self._dst.set_band_description(index, name)
            if name in self.units:
                self._dst.update_tags(index, units=str(self.units[name]))
        self._dst.update_tags(**self.tags)
        return self

    def write(self, name: str, row_start: int, col_start: int, values: np.ndarray) -> None:
        """Write ``values`` (rows, cols) into band ``name`` from row ``row_start``, column ``col_start``."""
        window = rasterio.windows.Window(col_start, row_start, values.shape[1], values.shape[0])
        self._dst.write(np.asarray(values).astype(self.dtype, copy=False), self.names.index(name) + 1, window=window)

    def __exit__(self, *exc_info) -> bool:
        return self._stack.__exit__(*exc_info)
