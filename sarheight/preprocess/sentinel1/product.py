"""What a Sentinel-1 product holds: its manifest, its measurement groups and their files.

A measurement group is one swath and polarisation, named as xarray-sentinel names it:
"IW/VV" for a GRD, "IW2/VH" for one sub-swath of an SLC. The manifest is read with
xarray-sentinel's parser; a group counts only where its files exist, so products
downloaded without their measurement TIFFs still list the groups their annotation
describes.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

import numpy as np
from xarray_sentinel import esa_safe, sentinel1

from ...errors import ProductError, UnsupportedProductError
from ..safe import SafeProduct, open_safe

__all__ = [
    "ManifestFiles",
    "available_groups",
    "check_identity",
    "find_measurement",
    "group_files",
    "level1_product_type",
    "listed_but_missing",
    "read_manifest",
    "select_measurement",
]

#: The data objects of a manifest as xarray-sentinel lists them: href (relative to the
#: product folder) -> (file type, e.g. "s1Level1CalibrationSchema"; file name prefix, e.g.
#: "calibration-" or ""; swath; polarisation; start time), names in lower case.
ManifestFiles = dict[str, tuple[str, str, str, str, str]]

_GROUP = re.compile(r"^(?P<swath>[A-Za-z]+\d?)/(?P<pol>[A-Za-z]{2})(?:/(?P<burst>\d+))?$")

_FILE_KINDS = {
    "s1Level1MeasurementSchema": "measurement",
    "s1Level1ProductSchema": "annotation",
    "s1Level1CalibrationSchema": "calibration",
    "s1Level1NoiseSchema": "noise",
}


def read_manifest(safe: SafeProduct) -> tuple[dict[str, Any], ManifestFiles]:
    """The product description and file list of a Sentinel-1 manifest.

    Parameters
    ----------
    safe : the opened product (:func:`sarheight.preprocess.safe.open_safe`).

    Returns
    -------
    attrs : dict
        xarray-sentinel's product attributes: ``product_type`` ("SLC", "GRD", ...),
        ``mode``, ``number`` (the unit, "A", "B", ...), ``pass``, ``orbit_number``,
        ``relative_orbit_number``, ``start_time``, ``stop_time``, ...
    files : ManifestFiles
        The product's annotated files by href.

    Raises
    ------
    ProductError
        the manifest is unreadable, or not that of a Sentinel-1 product.
    """
    content = safe.read(safe.manifest, "the manifest")
    try:
        attrs, files = esa_safe.parse_manifest_sentinel1(io.BytesIO(content))
    except Exception as exc:  # xarray-sentinel raises ValueError, ParseError, KeyError...
        raise ProductError(
            f"could not read the Sentinel-1 manifest {safe.manifest!r} ({exc}): the file is truncated, "
            "not a Sentinel-1 product, or from an unsupported mission"
        ) from exc
    for href in files:
        safe.member(href)  # refuses a file outside the product
    return attrs, files


def level1_product_type(attrs: dict[str, Any]) -> str:
    """The product type of a manifest's attributes (``read_manifest``), "SLC" or "GRD";
    UnsupportedProductError for the others (RAW, OCN: sarheight reads Level-1 only)."""
    product_type = attrs["product_type"]
    if product_type not in ("SLC", "GRD"):
        raise UnsupportedProductError(
            f"product type {product_type!r} is not supported: sarheight reads Level-1 SLC and GRD "
            "products (IW, EW, SM)"
        )
    return product_type


def available_groups(safe: SafeProduct) -> dict[str, list[str]]:
    """xarray-sentinel's groups of a product, restricted to files that exist.

    Parameters
    ----------
    safe : the opened product.

    Returns
    -------
    dict
        Group name -> paths in ``safe.fs`` of the files that hold it, as
        ``xarray_sentinel.sentinel1.find_available_groups`` gives them: a measurement
        group ("IW/VV", "IW2/VH") lists its measurement TIFF (when present) and then its
        annotation, which is last; metadata groups ("IW/VV/orbit", "IW/VV/calibration",
        ...) list the annotation file they are read from.

    Raises
    ------
    ProductError
        the manifest is unreadable.
    """
    attrs, files = read_manifest(safe)
    return sentinel1.find_available_groups(
        files, safe.directory, attrs["product_type"], check_files_exist=True, fs=safe.fs
    )


def select_measurement(
    groups: dict[str, list[str]], measurement: str, *, product_type: str, burst: int | None = None
) -> tuple[str, int | None]:
    """The measurement group and burst that a user's measurement names.

    Parameters
    ----------
    groups : the product's groups (:func:`available_groups`).
    measurement : "SWATH/POL" or "SWATH/POL/BURST", case-insensitive, e.g. "IW/VV",
        "IW2/VH", "iw2/vv/3". For an SLC, a swath without its number ("IW/VV") names
        the sub-swath when the product has annotation for only one.
    product_type : "SLC" or "GRD" (the manifest's ``product_type``).
    burst : SLC burst index (0-based, xarray-sentinel's numbering); may repeat the
        burst of ``measurement`` but not contradict it.

    Returns
    -------
    group : str
        The group, as in ``groups``, e.g. "IW2/VV".
    burst : int or None
        The burst index, from ``burst`` or from ``measurement``; None for the whole
        (debursted) sub-swath or a GRD. Its range is not checked here.

    Raises
    ------
    ProductError
        a malformed measurement or burst, a group without annotation in the product, an
        ambiguous sub-swath, two different bursts, a burst on a non-SLC product.
    """
    if not isinstance(measurement, str):
        raise ProductError(
            f"measurement must be a string of the form SWATH/POL[/BURST], e.g. 'IW/VV', not {measurement!r}"
        )
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, (int, np.integer))):
        raise ProductError(f"burst must be an integer burst number, not {burst!r}")
    match = _GROUP.match(measurement.strip("/"))
    if match is None:
        raise ProductError(
            f"measurement {measurement!r} is not of the form SWATH/POL[/BURST], e.g. 'IW/VV', 'IW2/VH'"
        )
    swath, pol = match["swath"].upper(), match["pol"].upper()
    if match["burst"] is not None:
        if burst is not None and burst != int(match["burst"]):
            raise ProductError(f"burst given twice and differently: {measurement!r} and burst={burst}")
        burst = int(match["burst"])
    measurement_groups = sorted(
        g for g in groups if g.count("/") == 1 and f"{g}/orbit" in groups
    )
    group = f"{swath}/{pol}"
    if group not in measurement_groups and product_type == "SLC" and not swath[-1].isdigit():
        # "IW/VV" on an SLC means the sub-swath of IW VV, when only one is present.
        candidates = [g for g in measurement_groups if re.fullmatch(rf"{swath}\d/{pol}", g)]
        if len(candidates) == 1:
            group = candidates[0]
        elif candidates:
            raise ProductError(
                f"{measurement!r} is ambiguous for this SLC, which holds {candidates}: name the "
                "sub-swath, e.g. measurement='IW2/VV'"
            )
    if group not in measurement_groups:
        raise ProductError(
            f"unknown measurement group {measurement!r}: this product has annotation for "
            f"{measurement_groups}"
        )
    if burst is not None and product_type != "SLC":
        raise ProductError(f"burst selection applies to SLC products only, this one is {product_type}")
    return group, burst


def group_files(safe: SafeProduct, files: ManifestFiles, group: str) -> dict[str, str]:
    """Existing files of one swath/polarisation, by kind, as the manifest types them.

    Parameters
    ----------
    safe : the opened product.
    files : its manifest's files (:func:`read_manifest`).
    group : a measurement group, e.g. "IW/VV" or "IW2/VH" (:func:`select_measurement`).

    Returns
    -------
    dict
        Kind -> path in ``safe.fs``, for those of "measurement" (the TIFF),
        "annotation", "calibration" and "noise" that the manifest lists and that exist.
    """
    swath, pol = group.lower().split("/")
    found: dict[str, str] = {}
    for href, (file_type, _prefix, file_swath, file_pol, _date) in files.items():
        kind = _FILE_KINDS.get(file_type)
        if kind is None or file_swath.lower() != swath or file_pol.lower() != pol:
            continue
        # The same join xarray-sentinel's find_available_groups does, inside the product.
        abspath = safe.member(href)
        if safe.fs.exists(abspath):
            found[kind] = abspath
    return found


def listed_but_missing(safe: SafeProduct, files: ManifestFiles, group: str, kind: str = "annotation") -> list[str]:
    """The files of ``kind`` of a measurement group that the manifest lists but the product
    lacks (an incomplete download)."""
    swath, pol = group.lower().split("/")
    missing = []
    for href, (file_type, _prefix, file_swath, file_pol, _date) in files.items():
        if (_FILE_KINDS.get(file_type) == kind and file_pol.lower() == pol
                and (file_swath.lower() == swath or file_swath.lower().rstrip("0123456789") == swath)
                and not safe.fs.exists(safe.member(href))):
            missing.append(href)
    return sorted(missing)


def find_measurement(safe: SafeProduct, files: ManifestFiles, measurement: str, *, product_type: str,
                     burst: int | None = None) -> tuple[str, int | None, dict[str, list[str]]]:
    """:func:`select_measurement` on the product's groups, which it also returns; where the
    group is absent because its annotation file is missing, the error names that file."""
    groups = available_groups(safe)
    try:
        group, burst = select_measurement(groups, measurement, product_type=product_type, burst=burst)
    except ProductError:
        match = _GROUP.match(measurement.strip("/")) if isinstance(measurement, str) else None
        missing = listed_but_missing(safe, files, f"{match['swath']}/{match['pol']}") if match else []
        if missing:
            raise ProductError(
                f"{safe.name} lacks {', '.join(missing)}, which its manifest lists for {measurement!r}: the product "
                "is incomplete; download it again"
            ) from None
        raise
    return group, burst, groups


#: The cross polarisation of each co-polarisation.
CROSS_POLARISATIONS = {"VV": "VH", "HH": "HV"}


def cross_polarised_measurement(path: str | os.PathLike[str], measurement: str) -> str | None:
    """The measurement of the cross polarisation beside the co-polarised ``measurement``
    (``"IW/VH"`` beside ``"IW/VV"``, ``"IW2/HV/3"`` beside ``"IW2/HH/3"``) where the
    product at ``path`` holds it with its pixels (a dual-polarisation product), else None
    (a single-polarisation product, a cross-polarised ``measurement``)."""
    match = _GROUP.match(measurement.strip("/")) if isinstance(measurement, str) else None
    if match is None or match["pol"].upper() not in CROSS_POLARISATIONS:
        return None
    safe = open_safe(path, mission="Sentinel-1")
    attrs, _ = read_manifest(safe)
    groups = available_groups(safe)
    try:
        group, _ = select_measurement(groups, f"{match['swath']}/{CROSS_POLARISATIONS[match['pol'].upper()]}",
                                      product_type=level1_product_type(attrs))
    except ProductError:
        return None
    # A measurement group lists its TIFF first and its annotation last: two files where the pixels are there.
    if len(groups[group]) < 2:
        return None
    return group + (f"/{match['burst']}" if match["burst"] is not None else "")


#: Seconds by which a file's start time may lie outside the product's (sub-swaths start later).
_TIME_SLACK = 10.0


def check_identity(content: bytes, attrs: dict[str, Any], group: str, what: str, safe: SafeProduct) -> None:
    """Refuse a metadata file (annotation, calibration, noise) whose header names another
    product than the manifest: another mission unit, mode, product type, orbit, swath or
    polarisation, or a start time outside the product's."""
    try:
        header = esa_safe.parse_tag(io.BytesIO(content), "//adsHeader")
    except Exception as exc:
        raise ProductError(f"{what} of {safe.name} has no readable header ({type(exc).__name__}: {exc}): the file "
                           "is truncated or not a Sentinel-1 annotation") from exc
    swath, pol = group.split("/")
    expected = {
        "missionId": f"S1{attrs.get('number', '')}", "mode": attrs.get("mode"),
        "productType": attrs.get("product_type"), "absoluteOrbitNumber": str(attrs.get("orbit_number", "")),
        "swath": swath, "polarisation": pol,
    }
    found = {key: str(header.get(key, "")) for key in expected}
    wrong = [key for key, value in expected.items() if value and found[key].upper() != str(value).upper()]
    start = np.datetime64(header.get("startTime", "NaT"))
    first = np.datetime64(attrs.get("start_time", "NaT")) - np.timedelta64(int(_TIME_SLACK), "s")
    last = np.datetime64(attrs.get("stop_time", "NaT")) + np.timedelta64(int(_TIME_SLACK), "s")
    if not np.isnat(first) and not (first <= start <= last):
        wrong.append("startTime")
        expected["startTime"], found["startTime"] = f"{attrs.get('start_time')}..{attrs.get('stop_time')}", str(start)
    if wrong:
        said = ", ".join(f"{key} {found[key]!r} where the manifest says {expected[key]!r}" for key in wrong)
        raise ProductError(f"{what} of {safe.name} belongs to another product ({said}): this product was altered; "
                           "use one as downloaded")

