"""Sentinel-2 Level-1C and Level-2A: reflectance from digital numbers, the ten bands of
the models in their order, 20 m → 10 m resampling, and scene-classification cloud masks.

Reflectance. The products store top-of-atmosphere (L1C) or bottom-of-atmosphere (L2A)
reflectance as 16-bit digital numbers (DN):

    ρ = (DN + offset) / quantification

with quantification 10 000 and, from processing baseline 04.00 (products from
25 January 2022 on), an offset of −1000 (``RADIO_ADD_OFFSET`` in L1C metadata,
``BOA_ADD_OFFSET`` in L2A) that lets dark surfaces keep noise below zero. Before 04.00
the offset is 0. A DN of 0 is no data and 65535 saturated; both become NaN. Reflectances
below 0 that the offset allows are kept (clipping them would bias dark-water means).

The processing baseline is read from the product's metadata where it comes with the
DNs (:func:`read_product_metadata` on ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``; or an
attribute ``PROCESSING_BASELINE``, ``BOA_ADD_OFFSET``, ``RADIO_ADD_OFFSET``, or a
product name with its ``_Nxxyy_`` field); where nothing says it, the caller must: a
wrong guess shifts every reflectance by 0.1, so there is no default.

Bands. :data:`S2_BANDS` is the order of the models (MBHR-Net's ten bands): B2, B3, B4,
B8 at 10 m, B5, B6, B7, B8A, B11, B12 at 20 m. Names are matched whatever their spelling
("B02", "b2", "B8A", "B08A").

Products. :func:`open_product` reads a whole L1C or L2A product as downloaded: the
``.SAFE`` folder, its ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``, or its zip (opened with
:func:`~.safe.open_safe`). It finds the JPEG 2000 band files of the product's one granule
(L1C ``GRANULE/*/IMG_DATA/*_B02.jp2``; L2A each band at its native resolution,
``IMG_DATA/R10m/*_B02_10m.jp2``, ``R20m/*_B05_20m.jp2``, and the SCL in ``R20m``),
scales them with the offsets of the metadata, puts them on one grid (10 m by default)
and, for L2A, masks the clouds of the SCL; the datatake's sensing start becomes a scalar
``time`` coordinate, so that products stack into the time series of
:func:`~.composite.monthly_composite`.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.enums
import rasterio.transform
import rasterio.warp
import rioxarray
import xarray as xr

from ..errors import InvalidInputError, MissingInputError, ProductError, UnsupportedProductError
from ..io import check_memory, open_raster
from .safe import SafeProduct, open_safe

__all__ = [
    "NATIVE_RESOLUTION",
    "OFFSET_BASELINE",
    "S2_BANDS",
    "SCL_CLOUD_CLASSES",
    "SCL_SNOW",
    "band_name",
    "mask_clouds",
    "open_bands",
    "open_product",
    "processing_baseline_of",
    "read_product_metadata",
    "reflectance",
    "resample_to",
    "select_bands",
    "stack_bands",
]

#: The ten bands of the models, in their order.
S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")

#: The first processing baseline whose DNs carry the −1000 offset.
OFFSET_BASELINE = (4, 0)

#: Scene classification (SCL) classes masked as cloud: 3 cloud shadow, 8 cloud of medium
#: and 9 of high probability, 10 thin cirrus.
SCL_CLOUD_CLASSES = (3, 8, 9, 10)

#: The SCL class of snow and ice, masked on request.
SCL_SNOW = 11

_BAND = re.compile(r"^B0*(\d{1,2})(A?)$")
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")
_BASELINE = re.compile(r"^\s*(\d{1,2})\.(\d{2})\s*$")
_SATURATED = 65535


def band_name(name: str) -> str:
    """The canonical name of a Sentinel-2 band ("B02" → "B2", "b08a" → "B8A"), or the
    name upper-cased when it is not a spectral band ("SCL", "QA60")."""
    key = str(name).strip().upper()
    match = _BAND.match(key)
    return f"B{int(match.group(1))}{match.group(2)}" if match else key


def processing_baseline_of(value: str) -> tuple[int, int]:
    """(major, minor) of a processing baseline given as "04.00", or found in a product
    name ("S2B_MSIL2A_20220301T..._N0400_R..."); InvalidInputError if neither."""
    text = str(value)
    match = _BASELINE.match(text) or _BASELINE_IN_NAME.search(text)
    if not match:
        raise InvalidInputError(
            f"cannot read a processing baseline from {value!r}: give it as 'NN.NN' (e.g. '04.00', "
            "the PROCESSING_BASELINE of MTD_MSIL1C.xml / MTD_MSIL2A.xml) or a product name with its "
            "_Nxxyy_ field"
        )
    return int(match.group(1)), int(match.group(2))


def read_product_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What reflectance scaling needs from a product's ``MTD_MSIL1C.xml`` or ``MTD_MSIL2A.xml``.

    Parameters
    ----------
    path : the metadata file.

    Returns
    -------
    dict
        ``PROCESSING_BASELINE`` (str, e.g. "04.00"), ``PRODUCT_TYPE`` (e.g. "S2MSI2A"),
        ``QUANTIFICATION`` (float) and, where the product has them, ``ADD_OFFSET``
        (dict of band index → offset, from ``RADIO_ADD_OFFSET`` or ``BOA_ADD_OFFSET``):
        the keys :func:`reflectance` reads from ``attrs``. Also, where the file has them,
        ``PRODUCT_URI`` (the product name), ``SPACECRAFT_NAME`` and
        ``DATATAKE_SENSING_START`` (UTC, e.g. "2022-03-01T10:58:39.024Z"), as strings.

    Raises
    ------
    MissingInputError, ProductError
        no such file; not XML, a document type declaration (entities are not expanded:
        the file is refused), or no processing baseline in it.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise MissingInputError(
            f"Sentinel-2 product metadata {source!r} does not exist: give the MTD_MSIL1C.xml or "
            "MTD_MSIL2A.xml at the top of the .SAFE folder"
        )
    with open(source, "rb") as file:
        return _parse_product_metadata(file.read(16 * 2**20), source)


def _parse_product_metadata(content: bytes, source: str) -> dict[str, Any]:
    """:func:`read_product_metadata` on the bytes of the file (``source`` names it in errors)."""
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        raise ProductError(
            f"{source!r} declares a document type or entities, which Sentinel-2 metadata never does: "
            "refused; use the MTD_MSIL1C.xml / MTD_MSIL2A.xml of the product as downloaded"
        )
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise ProductError(f"{source!r} is not readable XML ({exc}): the file is truncated or corrupt") from exc
    found: dict[str, Any] = {}
    offsets: dict[int, float] = {}
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        text = (element.text or "").strip()
        if tag in ("PROCESSING_BASELINE", "PRODUCT_TYPE", "PRODUCT_URI", "SPACECRAFT_NAME",
                   "DATATAKE_SENSING_START") and text:
            found[tag] = text
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE", "L2A_BOA_QUANTIFICATION_VALUE") and text:
            found["QUANTIFICATION"] = float(text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and text:
            offsets[int(element.get("band_id", "0"))] = float(text)
    if "PROCESSING_BASELINE" not in found:
        raise ProductError(
            f"{source!r} holds no PROCESSING_BASELINE: it is not the metadata of a Sentinel-2 "
            "Level-1C or Level-2A product (MTD_MSIL1C.xml / MTD_MSIL2A.xml)"
        )
    if offsets:
        found["ADD_OFFSET"] = offsets
    return found


def open_bands(path: str | os.PathLike[str], *, bands: Sequence[str] | None = None) -> xr.DataArray:
    """A Sentinel-2 GeoTIFF (one band or many, with band descriptions), or one band file
    of a product (JPEG 2000), as DNs; whole SAFE products are read by :func:`open_product`.

    Parameters
    ----------
    path : the GeoTIFF or JPEG 2000 file. Bands are named by their descriptions ("B2",
        "B02"...); a single-band file without one by its file name's ending
        ("..._B8A.tif", "..._B02.jp2", "..._B05_20m.jp2").
    bands : names to select, in this order (see :func:`select_bands`); all by default.

    Returns
    -------
    xarray.DataArray
        dims ``("band", "y", "x")``, the file's dtype, coordinate ``band`` of canonical
        names, the CRS; attrs hold the file's tags (metadata such as PROCESSING_BASELINE
        where it was written there).

    Raises
    ------
    MissingInputError, InvalidInputError
        no such file, not a GeoTIFF or JPEG 2000, bands without names, bands missing.
    """
    with open_raster(path, "Sentinel-2 raster") as dataset:
        descriptions = list(dataset.descriptions)
        tags = dataset.tags()
        image = rioxarray.open_rasterio(dataset, mask_and_scale=False).load()
    if len(descriptions) == 1 and not descriptions[0]:
        # L1C names end in the band ("..._B02.jp2"), L2A names in band and resolution ("..._B02_10m.jp2").
        parts = os.path.splitext(os.path.basename(os.fspath(path)))[0].split("_")
        descriptions = [parts[-2] if len(parts) > 1 and re.fullmatch(r"\d+m", parts[-1]) else parts[-1]]
    if not all(descriptions):
        raise InvalidInputError(
            f"the bands of {os.fspath(path)!r} have no descriptions, so they cannot be told apart by "
            "name: write them (rasterio's set_band_description) or open the file with rioxarray and "
            "assign the band coordinate yourself"
        )
    image = image.assign_coords(band=[band_name(d) for d in descriptions])
    image.attrs = dict(tags)
    return select_bands(image, bands) if bands is not None else image


def select_bands(image: xr.DataArray, bands: Sequence[str] = S2_BANDS) -> xr.DataArray:
    """The named bands of a multiband image, in the order asked for.

    Parameters
    ----------
    image : dims including ``band``, with band names as the ``band`` coordinate (any
        spelling: "B02", "B2"), or, as rioxarray reads files, band numbers with the
        names in the ``long_name`` attribute.
    bands : the names wanted, in order; :data:`S2_BANDS` by default.

    Returns
    -------
    xarray.DataArray
        The selection, ``band`` coordinate of canonical names.

    Raises
    ------
    InvalidInputError
        no ``band`` dim, bands without names, or a band asked for that is absent.
    """
    if "band" not in image.dims:
        raise InvalidInputError(f"select_bands needs a 'band' dim, the image has dims {image.dims}")
    labels = image["band"].values if "band" in image.coords else np.arange(image.sizes["band"])
    if np.issubdtype(np.asarray(labels).dtype, np.number):
        long_name = image.attrs.get("long_name")
        names = [long_name] if isinstance(long_name, str) else list(long_name or ())
        if len(names) != image.sizes["band"]:
            raise InvalidInputError(
                "the bands of the image have numbers, not names: assign them, e.g. "
                "image.assign_coords(band=['B1', 'B2', ...]) in the order of the file"
            )
        labels = names
    canonical = [band_name(label) for label in labels]
    image = image.assign_coords(band=canonical)
    wanted = [band_name(b) for b in bands]
    missing = [b for b in wanted if b not in canonical]
    if missing:
        raise InvalidInputError(
            f"bands {missing} are not in the image, which has {canonical}: give a product with them, "
            "or ask for other bands"
        )
    return image.sel(band=wanted)


def reflectance(
    dn: xr.DataArray,
    *,
    processing_baseline: str | None = None,
    quantification: float = 10000.0,
    offset: float | None = None,
) -> xr.DataArray:
    """Reflectance of Sentinel-2 L1C (top of atmosphere) or L2A (bottom) digital numbers.

    Parameters
    ----------
    dn : the digital numbers (any dims, integer or float). Its attrs are searched for the
        offset when neither ``offset`` nor ``processing_baseline`` is given:
        ``ADD_OFFSET``, ``BOA_ADD_OFFSET`` or ``RADIO_ADD_OFFSET`` (the offset), then
        ``PROCESSING_BASELINE`` (as from :func:`read_product_metadata`), then a product
        name with its ``_Nxxyy_`` field in ``product``, ``PRODUCT_URI`` or
        ``tile_source``.
    processing_baseline : "NN.NN" (or a product name): −1000 from "04.00" on, else 0.
    quantification : the quantification value (10 000 for every baseline so far).
    offset : the offset added to the DNs, in DN (−1000 or 0); wins over everything else.

    Returns
    -------
    xarray.DataArray
        float32 reflectance (units "1"), same dims, coords and name; NaN where DN is 0
        (no data) or 65535 (saturated) or NaN. attrs: the input's plus ``units``,
        ``add_offset`` and ``quantification`` used.

    Raises
    ------
    InvalidInputError
        nothing gives the offset (pass ``processing_baseline`` or ``offset``), an
        unreadable baseline, a non-positive quantification.
    """
    if not isinstance(dn, xr.DataArray):
        raise InvalidInputError(f"reflectance takes an xarray.DataArray of DNs, got {type(dn).__name__}")
    if not (np.isfinite(quantification) and quantification > 0):
        raise InvalidInputError(f"quantification must be a positive number (10000), got {quantification!r}")
    add = _offset(dn.attrs, processing_baseline, offset)
    values = dn.astype(np.float32)
    invalid = (values == 0) | (values == _SATURATED) | values.isnull()
    out = ((values + np.float32(add)) / np.float32(quantification)).where(~invalid).astype(np.float32)
    out.attrs = {**dn.attrs, "units": "1", "add_offset": float(add), "quantification": float(quantification)}
    out.name = dn.name
    return out


def _offset(attrs: Mapping[str, Any], processing_baseline: str | None, offset: float | None) -> float:
    if offset is not None:
        return float(offset)
    if processing_baseline is not None:
        return -1000.0 if processing_baseline_of(processing_baseline) >= OFFSET_BASELINE else 0.0
    for key in ("ADD_OFFSET", "BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
        if key in attrs:
            value = attrs[key]
            values = set(value.values()) if isinstance(value, Mapping) else {float(value)}
            if len(values) != 1:
                raise InvalidInputError(
                    f"the {key} of the product differs between bands ({value}): scale each band with "
                    "its own offset=..."
                )
            return float(values.pop())
    if "PROCESSING_BASELINE" in attrs:
        return -1000.0 if processing_baseline_of(attrs["PROCESSING_BASELINE"]) >= OFFSET_BASELINE else 0.0
    for key in ("product", "PRODUCT_URI", "tile_source"):
        if key in attrs and _BASELINE_IN_NAME.search(str(attrs[key])):
            return -1000.0 if processing_baseline_of(str(attrs[key])) >= OFFSET_BASELINE else 0.0
    raise InvalidInputError(
        "the processing baseline of these DNs is unknown, and from baseline 04.00 (January 2022) on "
        "they carry an offset of -1000: pass processing_baseline='NN.NN' (the PROCESSING_BASELINE "
        "of MTD_MSIL1C.xml / MTD_MSIL2A.xml, or the _Nxxyy_ of the product name) or offset=0 / -1000"
    )


#: The resamplings rasterio's warp does (all of rasterio's but "gauss"), by name.
RESAMPLINGS = tuple(method.name for method in rasterio.warp.SUPPORTED_RESAMPLING)


def resample_to(image: xr.DataArray, like: xr.DataArray, *, resampling: str = "bilinear") -> xr.DataArray:
    """``image`` on the grid of ``like`` (e.g. a 20 m band on the 10 m grid), with rasterio.

    Parameters
    ----------
    image : float values (NaN for no data) with a CRS; dims ``(..., "y", "x")``.
    like : the target grid (a DataArray with a CRS and ``y``, ``x``).
    resampling : the name of a rasterio resampling ("bilinear", default; "nearest" for
        classes such as SCL; "cubic", "average"...).

    Returns
    -------
    xarray.DataArray
        On ``like``'s grid and CRS, float values; attrs kept, ``resampling`` added. Bilinear
        and cubic leave cells near the image edge without a full neighbourhood, which GDAL
        sets to no data: those take the nearest value, so that the edge of a 20 m band is
        not lost at 10 m.

    Raises
    ------
    InvalidInputError
        an unknown resampling name, or no CRS on either raster.
    """
    if resampling not in RESAMPLINGS:
        raise InvalidInputError(f"unknown resampling {resampling!r}: use one of {', '.join(RESAMPLINGS)} (rasterio's "
                                "names of the warp's resamplings)")
    method = rasterio.enums.Resampling[resampling]
    for name, raster in (("image", image), ("like", like)):
        if raster.rio.crs is None:
            raise InvalidInputError(f"{name} has no CRS: write one with .rio.write_crs(...) before resampling")
    source = image.astype(np.float32 if image.dtype != np.float64 else np.float64).rio.write_nodata(np.nan)
    out = source.rio.reproject_match(like, resampling=method)
    if method not in (rasterio.enums.Resampling.nearest, rasterio.enums.Resampling.mode):
        nearest = source.rio.reproject_match(like, resampling=rasterio.enums.Resampling.nearest)
        out = out.where(out.notnull(), nearest)
    out = out.assign_coords(x=like["x"].values, y=like["y"].values)
    out.attrs = {**image.attrs, "resampling": resampling}
    out.name = image.name
    return out


def stack_bands(
    rasters: Mapping[str, xr.DataArray],
    *,
    bands: Sequence[str] = S2_BANDS,
    like: xr.DataArray | None = None,
    resampling: str = "bilinear",
) -> xr.DataArray:
    """Bands of different resolutions on one grid, stacked in order.

    Parameters
    ----------
    rasters : band name → raster (``("y", "x")`` or a single ``band``), e.g. reflectances
        of the 10 m and 20 m bands of one product; spelling of names as in
        :func:`band_name`.
    bands : the bands to stack, in this order.
    like : the target grid; by default the grid of the finest of the bands (10 m).
    resampling : for the bands on another grid (:func:`resample_to`).

    Returns
    -------
    xarray.DataArray
        dims ``("band", "y", "x")``, ``band`` coordinate of canonical names, float.

    Raises
    ------
    InvalidInputError
        a band missing from ``rasters``, or rasters without CRS.
    """
    named = {band_name(k): (v.squeeze("band", drop=True) if "band" in v.dims else v) for k, v in rasters.items()}
    wanted = [band_name(b) for b in bands]
    missing = [b for b in wanted if b not in named]
    if missing:
        raise InvalidInputError(f"bands {missing} are missing: the rasters given are {sorted(named)}")
    if like is None:
        like = min((named[b] for b in wanted), key=lambda r: abs(r.rio.resolution()[0]))
    layers = []
    for b in wanted:
        raster = named[b]
        same = (raster.shape == like.shape and raster.rio.transform() == like.rio.transform()
                and raster.rio.crs == like.rio.crs)
        layers.append(raster.astype(np.float32) if same else resample_to(raster, like, resampling=resampling))
    stacked = xr.concat([layer.drop_vars("spatial_ref", errors="ignore") for layer in layers], dim="band")
    stacked = stacked.assign_coords(band=wanted).rio.write_crs(like.rio.crs)
    stacked.attrs = {k: v for k, v in layers[0].attrs.items() if k != "resampling"}
    stacked.attrs["resampling"] = resampling
    return stacked


def mask_clouds(
    image: xr.DataArray,
    scl: xr.DataArray | None = None,
    *,
    classes: Sequence[int] = SCL_CLOUD_CLASSES,
    snow: bool = False,
) -> xr.DataArray:
    """Set to NaN the pixels the scene classification (SCL) of an L2A product marks as cloud.

    Parameters
    ----------
    image : reflectance (float), dims ``(..., "y", "x")`` with a CRS.
    scl : the SCL band (20 m classes); resampled to ``image``'s grid by nearest neighbour
        where its grid differs. ``None``: the ``"SCL"`` band of ``image``, which is then
        dropped from the result.
    classes : the SCL classes to mask (3 cloud shadow, 8, 9 cloud, 10 thin cirrus).
    snow : also mask class 11 (snow and ice).

    Returns
    -------
    xarray.DataArray
        ``image`` with NaN where masked; attrs plus ``cloud_mask`` (the classes masked)
        and ``cloud_fraction`` (fraction of the SCL's valid pixels masked).

    Raises
    ------
    InvalidInputError
        no ``scl`` and no SCL band in ``image`` (L1C products have none: mask clouds
        there with another product), or an SCL without CRS where it needs resampling.
    """
    if scl is None:
        has_scl = ("band" in image.dims and "band" in image.coords
                   and "SCL" in [band_name(b) for b in image["band"].values])
        if not has_scl:
            raise InvalidInputError(
                "no SCL band is given and the image has none: Level-1C products carry no scene "
                "classification; give the L2A product's SCL raster as scl="
            )
        image = image.assign_coords(band=[band_name(b) for b in image["band"].values])
        scl, image = image.sel(band="SCL", drop=True), image.drop_sel(band="SCL")
    elif "band" in scl.dims:
        scl = scl.squeeze("band", drop=True)
    codes = tuple(int(c) for c in classes) + ((SCL_SNOW,) if snow else ())
    same = scl.shape[-2:] == image.shape[-2:] and scl.rio.transform() == image.rio.transform()
    if not same:
        scl = resample_to(scl, image, resampling="nearest")
    values = np.asarray(scl.values)
    masked = np.isin(values, codes)
    valid = np.isfinite(values) & (values != 0)
    out = image.where(~xr.DataArray(masked, dims=image.dims[-2:]))
    out.attrs = {**image.attrs, "cloud_mask": list(codes),
                 "cloud_fraction": float(masked[valid].mean()) if valid.any() else 0.0}
    return out


# --------------------------------------------------------------------------------------
# Whole products: a .SAFE folder, its MTD_MSIL1C.xml / MTD_MSIL2A.xml, or a zip of it
# --------------------------------------------------------------------------------------

#: The resolution (m) at which each band is stored; L2A products keep each band at this
#: one in ``IMG_DATA/R10m``, ``R20m`` or ``R60m`` (and coarser copies beside, not read).
NATIVE_RESOLUTION = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
                     "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20}

# The band_id of the offsets in the metadata: the index of the band among the thirteen.
_BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
_LEVELS = {"MTD_MSIL1C.xml": "L1C", "MTD_MSIL2A.xml": "L2A"}
_SENSING_IN_NAME = re.compile(r"^S2[A-D]_MSI\w{3}_(\d{8}T\d{6})_")


def open_product(
    path: str | os.PathLike[str],
    *,
    bands: Sequence[str] = S2_BANDS,
    resolution_m: float = 10.0,
    resampling: str = "bilinear",
    mask: bool = True,
) -> xr.DataArray:
    """The reflectance of a Sentinel-2 Level-1C or Level-2A SAFE product, its bands on one grid.

    Everything is checked before any pixel is read: the product, its level, its single
    granule (tile), the file of every band asked for, the grid and the memory it needs.

    Parameters
    ----------
    path : the ``.SAFE`` folder, its ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` or
        ``manifest.safe``, or the ``.zip`` of the product as downloaded.
    bands : the bands, in this order (spellings as in :func:`band_name`); the ten of
        the models (:data:`S2_BANDS`) by default.
    resolution_m : the cell size of the grid the bands are put on, in metres (10: the
        bands stored at 20 m are resampled; 20: those at 10 m are). It must divide the
        tile's extent (109 800 m): 10, 20 and 60 do.
    resampling : the rasterio resampling of the bands stored at another resolution
        ("bilinear", default; "average" to aggregate to a coarser grid; see
        :func:`resample_to`).
    mask : for L2A products, set to NaN the pixels that the scene classification (SCL,
        20 m, resampled by nearest neighbour) marks as cloud, cloud shadow or cirrus
        (:func:`mask_clouds`). L1C products carry no SCL: nothing is masked there.

    Returns
    -------
    xarray.DataArray
        float32 reflectance (top of atmosphere for L1C, bottom for L2A; units "1"),
        dims ``("band", "y", "x")`` with ``band`` the canonical names in the order asked
        for, the tile's UTM CRS, and a scalar ``time`` coordinate, the datatake's sensing
        start (UTC, datetime64), so that products stack with
        ``xr.concat(products, dim="time")`` for
        :func:`~sarheight.preprocess.composite.monthly_composite`. The DNs are scaled
        with the offset of the product's metadata (−1000 from processing baseline 04.00
        on, 0 before: see :func:`reflectance`). attrs: ``product`` (the SAFE name),
        ``level`` ("L1C" or "L2A"), ``PROCESSING_BASELINE``, ``PRODUCT_TYPE``,
        ``SPACECRAFT_NAME`` and ``DATATAKE_SENSING_START`` where the metadata has them,
        ``add_offset`` (DN), ``quantification``, ``units``, ``resampling``, and for a
        masked L2A product ``cloud_mask`` and ``cloud_fraction``.

    Raises
    ------
    MissingInputError
        ``path`` does not exist.
    ProductError
        not a SAFE product; not Sentinel-2 L1C or L2A (:class:`UnsupportedProductError`
        for another level); a product of several granules, or of none; the file of a
        band missing (each one named); no sensing date in the metadata or the name.
    InvalidInputError
        an unknown band or resampling, a resolution that does not divide the tile, a
        result larger than the memory available, a band file GDAL cannot read.
    """
    wanted = [band_name(b) for b in bands]
    unknown = [b for b in wanted if b not in NATIVE_RESOLUTION]
    if unknown or not wanted:
        raise InvalidInputError(f"bands {unknown or list(bands)} are not Sentinel-2 bands: ask for some of "
                                f"{', '.join(_BAND_IDS)}")
    if resampling not in RESAMPLINGS:
        raise InvalidInputError(f"unknown resampling {resampling!r}: use one of {', '.join(RESAMPLINGS)}")
    if not (np.isfinite(resolution_m) and resolution_m > 0):
        raise InvalidInputError(f"resolution_m must be a positive number of metres (10, 20, 60), got {resolution_m!r}")
    safe, level, metadata_path = _open_level(path)
    metadata = _parse_product_metadata(safe.read(metadata_path, "product metadata"),
                                       f"{safe.name}/{os.path.basename(metadata_path)}")
    sensing = _sensing_time(metadata, safe.name)
    masked = mask and level == "L2A"
    files = _band_files(safe, level, wanted + (["SCL"] if masked else []))
    like = _product_grid(safe, files[wanted[0]], wanted, resolution_m)

    rasters = {}
    for band in wanted:
        # Each band's own offset where the metadata lists them (04.00 on); else the baseline says.
        offset = metadata.get("ADD_OFFSET", {}).get(_BAND_IDS.index(band))
        rasters[band] = reflectance(_read_product_band(safe, files[band], band),
                                    processing_baseline=metadata["PROCESSING_BASELINE"],
                                    quantification=metadata.get("QUANTIFICATION", 10000.0), offset=offset)
    offsets = [rasters[band].attrs["add_offset"] for band in wanted]
    out = stack_bands(rasters, bands=wanted, like=like, resampling=resampling)
    if masked:
        out = mask_clouds(out, _read_product_band(safe, files["SCL"], "SCL"))
    extra = {key: metadata[key] for key in ("PRODUCT_TYPE", "SPACECRAFT_NAME", "DATATAKE_SENSING_START")
             if key in metadata}
    out.attrs = {"product": safe.name, "level": level, "PROCESSING_BASELINE": metadata["PROCESSING_BASELINE"],
                 **extra, "units": "1", "add_offset": offsets[0] if len(set(offsets)) == 1 else offsets,
                 "quantification": rasters[wanted[0]].attrs["quantification"], "resampling": resampling,
                 **{key: out.attrs[key] for key in ("cloud_mask", "cloud_fraction") if key in out.attrs}}
    out.name = "reflectance"
    return out.assign_coords(time=sensing)


def _open_level(path: str | os.PathLike[str]) -> tuple[SafeProduct, str, str]:
    """The opened SAFE of a Sentinel-2 product, its level ("L1C", "L2A") and the path in
    ``fs`` of its MTD_MSIL1C.xml / MTD_MSIL2A.xml."""
    given = Path(path).expanduser()
    # The product metadata stands for its folder, as manifest.safe does.
    safe = open_safe(given.parent if given.name in _LEVELS and given.is_file() else given, mission="Sentinel-2")
    names = {os.path.basename(name.rstrip("/")) for name in safe.fs.ls(safe.directory, detail=False)}
    found = sorted(name for name in names if name in _LEVELS)
    if len(found) == 1:
        return safe, _LEVELS[found[0]], safe.member(found[0])
    if found:
        raise ProductError(f"{safe.name} holds both MTD_MSIL1C.xml and MTD_MSIL2A.xml: a product is of one level; "
                           "this one was altered, use it as downloaded")
    others = sorted(name for name in names if re.fullmatch(r"MTD_MSIL\w+\.xml", name))
    if others:
        raise UnsupportedProductError(
            f"{safe.name} is a Sentinel-2 product of another level ({', '.join(others)}): open_product reads "
            "Level-1C and Level-2A products (MTD_MSIL1C.xml / MTD_MSIL2A.xml)"
        )
    raise ProductError(
        f"{safe.name} is not a Sentinel-2 Level-1C or Level-2A product: it has no MTD_MSIL1C.xml or MTD_MSIL2A.xml "
        "beside its manifest.safe (a Sentinel-1 product is read with sarheight.preprocess.sentinel1)"
    )


def _sensing_time(metadata: Mapping[str, Any], name: str) -> np.datetime64:
    """The datatake's sensing start (UTC) from the metadata, else from the product name."""
    text = str(metadata.get("DATATAKE_SENSING_START", "")).strip().removesuffix("Z")
    if text:
        try:
            return np.datetime64(text, "ns")
        except ValueError as exc:
            raise ProductError(f"the DATATAKE_SENSING_START of {name} is not a time ({text!r}): the metadata is "
                               "damaged; use the product as downloaded") from exc
    match = _SENSING_IN_NAME.match(str(metadata.get("PRODUCT_URI", ""))) or _SENSING_IN_NAME.match(name)
    if not match:
        raise ProductError(f"{name} says nowhere when it was sensed (no DATATAKE_SENSING_START in its metadata, "
                           "no S2x_MSIxxx_YYYYMMDDTHHMMSS_ name): use the product as downloaded, under its name")
    stamp = match.group(1)
    return np.datetime64(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}", "ns")


def _band_files(safe: SafeProduct, level: str, bands: Sequence[str]) -> dict[str, str]:
    """The path in ``fs`` of the file of each band (and "SCL") of the product's one granule:
    ``GRANULE/*/IMG_DATA/*_B02.jp2`` (L1C), ``GRANULE/*/IMG_DATA/R10m/*_B02_10m.jp2`` (L2A)."""
    root = safe.member("GRANULE")
    granules = sorted(os.path.basename(p.rstrip("/")) for p in safe.fs.ls(root, detail=False)
                      if safe.fs.isdir(p)) if safe.fs.isdir(root) else []
    if len(granules) != 1:
        raise ProductError(
            f"{safe.name} holds {len(granules)} granules in GRANULE/ ({', '.join(granules) or 'none'}), where "
            "open_product reads products of one tile, as they are since December 2016: "
            + ("read each granule's band files with open_bands" if granules else
               "this product is incomplete; download it again")
        )
    listed: dict[str, set[str]] = {}
    files, missing = {}, []
    for band in bands:
        resolution = NATIVE_RESOLUTION.get(band, 20)  # SCL is at 20 m
        # File names spell bands with two digits, B8A as it is: _B02, _B8A, _SCL.
        label = band if band in ("SCL", "B8A") else f"B{int(band[1:]):02d}"
        folder = f"GRANULE/{granules[0]}/IMG_DATA" + (f"/R{resolution}m" if level == "L2A" else "")
        suffix = f"_{label}_{resolution}m.jp2" if level == "L2A" else f"_{label}.jp2"
        if folder not in listed:
            member = safe.member(folder)
            listed[folder] = ({os.path.basename(p.rstrip("/")) for p in safe.fs.ls(member, detail=False)}
                              if safe.fs.isdir(member) else set())
        matches = sorted(name for name in listed[folder] if name.endswith(suffix))
        if len(matches) == 1:
            files[band] = safe.member(f"{folder}/{matches[0]}")
        else:
            missing.append(f"{band} ({folder}/*{suffix}: {len(matches)} files)")
    if missing:
        raise ProductError(
            f"{safe.name} lacks the file of bands {', '.join(missing)}: the product is incomplete or was altered; "
            "download it again" + (", or pass mask=False to read it without its SCL" if "SCL" in str(missing) else "")
        )
    return files


def _product_grid(safe: SafeProduct, member: str, bands: Sequence[str], resolution_m: float) -> xr.DataArray:
    """The grid of ``resolution_m`` cells over the tile (from the header of one band file),
    after checking that it divides the tile and that the result fits in memory."""
    with open_raster(safe.gdal_path(member), f"Sentinel-2 band file of {safe.name}") as dataset:
        left, bottom, right, top = dataset.bounds
        crs = dataset.crs
    if crs is None:
        raise ProductError(f"{member!r} of {safe.name} has no CRS: the product was altered; use it as downloaded")
    cols, rows = (right - left) / resolution_m, (top - bottom) / resolution_m
    if not (abs(cols - round(cols)) < 1e-6 and abs(rows - round(rows)) < 1e-6):
        raise InvalidInputError(
            f"the tile of {safe.name} ({right - left:g} m x {top - bottom:g} m) is not a whole number of "
            f"{resolution_m:g} m cells: use 10, 20 or 60, or resample the result with resample_to"
        )
    rows, cols = round(rows), round(cols)
    # The stack of float32 bands and the band being resampled beside it.
    check_memory((len(bands) + 2) * rows * cols * 4,
                 f"reading {safe.name} at {resolution_m:g} m ({rows} x {cols} cells)",
                 "; ask for fewer bands, or a coarser resolution_m")
    transform = rasterio.transform.from_origin(left, top, resolution_m, resolution_m)
    coords = {"y": top - resolution_m * (np.arange(rows) + 0.5), "x": left + resolution_m * (np.arange(cols) + 0.5)}
    # Only the grid is read from it: a broadcast zero takes no memory.
    grid = xr.DataArray(np.broadcast_to(np.float32(0), (rows, cols)), dims=("y", "x"), coords=coords)
    return grid.rio.write_crs(crs).rio.write_transform(transform)


def _read_product_band(safe: SafeProduct, member: str, band: str) -> xr.DataArray:
    """One band file of the product as its DNs (SCL: its classes), dims ``("y", "x")``, with its CRS."""
    what = f"Sentinel-2 band {band} of {safe.name}"
    with open_raster(safe.gdal_path(member), what) as dataset:
        # The grid was checked on one band's header; another could declare any size.
        check_memory(dataset.width * dataset.height * (np.dtype(dataset.dtypes[0]).itemsize + 4),
                     f"reading {what} ({dataset.height} x {dataset.width} cells)")
        image = rioxarray.open_rasterio(dataset, mask_and_scale=False).squeeze("band", drop=True).load()
    image.attrs = {}
    return image.rename(band)
