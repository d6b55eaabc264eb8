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
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import rasterio.enums
import rasterio.warp
import rioxarray
import xarray as xr

from ..errors import InvalidInputError, MissingInputError, ProductError
from ..io import open_raster

__all__ = [
    "OFFSET_BASELINE",
    "S2_BANDS",
    "SCL_CLOUD_CLASSES",
    "SCL_SNOW",
    "band_name",
    "mask_clouds",
    "open_bands",
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
        the keys :func:`reflectance` reads from ``attrs``.

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
        content = file.read(16 * 2**20)
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
        if tag == "PROCESSING_BASELINE" and text:
            found["PROCESSING_BASELINE"] = text
        elif tag == "PRODUCT_TYPE" and text:
            found["PRODUCT_TYPE"] = text
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and text:
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
    """A Sentinel-2 GeoTIFF (one band or many, with band descriptions) as DNs.

    Parameters
    ----------
    path : the GeoTIFF. Bands are named by their descriptions ("B2", "B02"...); a
        single-band file without one by its file name's ending ("..._B8A.tif").
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
        no such file, not a GeoTIFF, bands without names, bands missing.
    """
    with open_raster(path, "Sentinel-2 raster") as dataset:
        descriptions = list(dataset.descriptions)
        tags = dataset.tags()
        image = rioxarray.open_rasterio(dataset, mask_and_scale=False).load()
    if len(descriptions) == 1 and not descriptions[0]:
        descriptions = [os.path.splitext(os.path.basename(os.fspath(path)))[0].rsplit("_", 1)[-1]]
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
        same = raster.shape == like.shape and raster.rio.transform() == like.rio.transform() and raster.rio.crs == like.rio.crs
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
        has_scl = "band" in image.dims and "band" in image.coords and "SCL" in [band_name(b) for b in image["band"].values]
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
