"""The annotation of one Sentinel-1 measurement: what the geometry needs.

Everything here goes through xarray-sentinel's own parsers (manifest, annotation,
orbit, geolocation grid, coordinate conversion); nothing parses XML by hand. The
annotation is enough: products whose measurement TIFFs are absent still give their
geometry.
"""

from __future__ import annotations

import io
import os
from typing import Any, TypedDict

import numpy as np
import xarray as xr
from xarray_sentinel import esa_safe, sentinel1

from ...errors import ProductError
from ..safe import open_safe
from .product import check_identity, find_measurement, level1_product_type, read_manifest

__all__ = ["Sentinel1Annotation", "geolocation_grid", "read_annotation"]


class _AnnotationFields(TypedDict):
    """The keys of every annotation (:class:`Sentinel1Annotation` adds the SLC-only ones)."""

    product_type: str
    group: str
    annotation: str
    annotation_content: bytes
    product: dict[str, Any]
    image: dict[str, Any]
    orbit: xr.Dataset
    gcp: xr.Dataset
    coordinate_conversion: xr.Dataset | None
    geolocation_points: list[dict[str, Any]]
    bistatic_reference_range: float | None
    attrs: dict[str, Any]


class Sentinel1Annotation(_AnnotationFields, total=False):
    """What :func:`read_annotation` reads: a plain dict with these keys.

    Attributes
    ----------
    product_type : str
        "SLC" or "GRD".
    group : str
        The measurement group read, e.g. "IW/VV" (GRD) or "IW2/VV" (SLC).
    annotation : str
        Path of the annotation XML in the product's file system.
    annotation_content : bytes
        The annotation XML itself.
    product, image : dict
        The annotation's ``productInformation`` (``radarFrequency``, Hz,
        ``rangeSamplingRate``, Hz, ...) and ``imageInformation``
        (``productFirstLineUtcTime``, ``azimuthTimeInterval``, s, ``slantRangeTime``, s,
        two-way, ``rangePixelSpacing``, m, ``numberOfLines``, ``numberOfSamples``, ...)
        as xarray-sentinel parses them.
    orbit : xarray.Dataset
        The annotated state vectors: ``position`` (m) and ``velocity`` (m/s), ECEF, on
        ``azimuth_time``.
    gcp : xarray.Dataset
        The geolocation grid as xarray-sentinel's gcp group.
    coordinate_conversion : xarray.Dataset or None
        Slant-to-ground range polynomials (GRD); None for an SLC.
    geolocation_points : list of dict
        The annotation's ``geolocationGridPoint`` entries (:func:`geolocation_grid`
        makes them a dataset).
    bistatic_reference_range : float or None
        Slant range (m) at which line time equals zero-Doppler time; None without a
        geolocation grid.
    attrs : dict
        A description of the product for outputs: ``product`` (name), ``mission``,
        ``product_type``, ``mode``, ``measurement``, ``polarisation``, ``pass``,
        ``relative_orbit``, ``absolute_orbit``, ``start_time``.
    slc_first_line_time : numpy.datetime64
        SLC only: time (ns) of the first line of the grid, the whole sub-swath as one
        continuous grid or the one burst selected.
    slc_lines : int
        SLC only: lines of that grid, ``azimuthTimeInterval`` apart.
    """

    slc_first_line_time: np.datetime64
    slc_lines: int


def read_annotation(
    path: str | os.PathLike[str], measurement: str = "IW/VV", *, burst: int | None = None
) -> Sentinel1Annotation:
    """What the geometry needs from one measurement of a Sentinel-1 product.

    Parameters
    ----------
    path : a ``.SAFE`` directory, its ``manifest.safe``, or a ``.zip`` of the SAFE. The
        measurement TIFF is not needed.
    measurement : swath and polarisation, e.g. "IW/VV" (GRD), "IW2/VV" (SLC; "IW/VV"
        picks the sub-swath when the product has annotation for only one). A trailing
        "/N" selects SLC burst N, as ``burst=N`` does.
    burst : SLC burst index (0-based, xarray-sentinel's numbering). Without it an SLC
        sub-swath is one continuous (debursted) grid.

    Returns
    -------
    Sentinel1Annotation
        A dict with ``product_type`` ("SLC" or "GRD"), ``group``, ``product``
        (productInformation), ``image`` (imageInformation), ``orbit`` and ``gcp``
        datasets, ``coordinate_conversion`` (GRD), ``slc_first_line_time`` and
        ``slc_lines`` (SLC: the whole sub-swath as one continuous grid, or one burst),
        ``bistatic_reference_range`` (m) and ``attrs`` (a product description for
        outputs); see :class:`Sentinel1Annotation`.

    Raises
    ------
    MissingInputError
        the product does not exist.
    UnsupportedProductError
        a product type other than SLC and GRD.
    ProductError
        not a SAFE, an unreadable manifest or annotation, an unknown measurement group or
        burst.
    """
    safe = open_safe(path, mission="Sentinel-1")
    attrs, files = read_manifest(safe)
    product_type = level1_product_type(attrs)
    group, burst, groups = find_measurement(safe, files, measurement, product_type=product_type, burst=burst)
    annotation = groups[group][-1]
    content = safe.read(annotation, "the annotation")
    check_identity(content, attrs, group, f"the annotation {annotation!r}", safe)
    try:
        # Each parser reads from the start: give each its own stream.
        product = esa_safe.parse_tag(io.BytesIO(content), "//productInformation")
        image = esa_safe.parse_tag(io.BytesIO(content), "//imageInformation")
        swath_timing = esa_safe.parse_tag(io.BytesIO(content), "//swathTiming")
        orbit = sentinel1.open_orbit_dataset(io.BytesIO(content))
        gcp = sentinel1.open_gcp_dataset(io.BytesIO(content))
        points = esa_safe.parse_tag_as_list(io.BytesIO(content), "//geolocationGridPoint")
        coordinate_conversion = (
            sentinel1.open_coordinate_conversion_dataset(io.BytesIO(content))
            if product_type == "GRD"
            else None
        )
    except Exception as exc:
        raise ProductError(
            f"could not read the annotation {annotation!r} ({type(exc).__name__}: {exc}): the file "
            "is truncated or not a Sentinel-1 Level-1 annotation"
        ) from exc
    slc_axis = _slc_time_axis(image, swath_timing, burst) if product_type == "SLC" else None
    mission = f"S1{attrs.get('number', '')}"
    info: Sentinel1Annotation = {
        "product_type": product_type,
        "group": group,
        "annotation": annotation,
        "annotation_content": content,
        "product": product,
        "image": image,
        "orbit": orbit,
        "gcp": gcp,
        "coordinate_conversion": coordinate_conversion,
        "geolocation_points": points,
        "bistatic_reference_range": _bistatic_reference_range(image, swath_timing, points),
        "attrs": {
            "product": safe.name,
            "mission": mission,
            "product_type": product_type,
            "mode": attrs.get("mode", ""),
            "measurement": group if burst is None else f"{group}/{burst}",
            "polarisation": group.split("/")[1],
            "pass": attrs.get("pass", ""),
            "relative_orbit": int(attrs.get("relative_orbit_number", -1)),
            "absolute_orbit": int(attrs.get("orbit_number", -1)),
            "start_time": attrs.get("start_time", ""),
        },
    }
    if slc_axis is not None:
        info["slc_first_line_time"], info["slc_lines"] = slc_axis
    return info


def _slc_time_axis(
    image: dict[str, Any], swath_timing: dict[str, Any], burst: int | None
) -> tuple[np.datetime64, int]:
    """First line time (datetime64[ns]) and number of lines of an SLC grid: one burst, or
    the whole sub-swath."""
    dt = float(image["azimuthTimeInterval"])
    bursts = swath_timing.get("burstList", {}).get("burst", []) or []
    if burst is not None:
        if not 0 <= burst < len(bursts):
            raise ProductError(
                f"burst {burst} does not exist: this sub-swath has {len(bursts)} bursts, numbered "
                f"0 .. {len(bursts) - 1}"
            )
        return np.datetime64(bursts[burst]["azimuthTime"], "ns"), int(swath_timing["linesPerBurst"])
    first = np.datetime64(image["productFirstLineUtcTime"], "ns")
    last = np.datetime64(image["productLastLineUtcTime"], "ns")
    if bursts:
        # TOPS bursts overlap; the debursted sub-swath is one regular axis from the first
        # line of the first burst to the last line of the last.
        first = np.datetime64(bursts[0]["azimuthTime"], "ns")
        last = np.datetime64(bursts[-1]["azimuthTime"], "ns") + np.int64(
            round((int(swath_timing["linesPerBurst"]) - 1) * dt * 1e9)
        ) * np.timedelta64(1, "ns")
    lines = round((last - first) / np.timedelta64(1, "ns") / 1e9 / dt) + 1
    return first, lines


def _line_times(image: dict[str, Any], swath_timing: dict[str, Any], lines: np.ndarray) -> np.ndarray:
    """Time labels (datetime64[ns]) of product line numbers, burst by burst for TOPS SLCs."""
    dt_ns = float(image["azimuthTimeInterval"]) * 1e9
    bursts = swath_timing.get("burstList", {}).get("burst", []) or []
    if bursts and int(swath_timing.get("linesPerBurst", 0)) > 0:
        per_burst = int(swath_timing["linesPerBurst"])
        starts = np.asarray([b["azimuthTime"] for b in bursts], dtype="datetime64[ns]")
        index = np.minimum(lines // per_burst, len(bursts) - 1)
        offset = np.round((lines - index * per_burst) * dt_ns).astype(np.int64)
        return starts[index] + offset.astype("timedelta64[ns]")
    first = np.datetime64(image["productFirstLineUtcTime"], "ns")
    return first + np.round(lines * dt_ns).astype(np.int64).astype("timedelta64[ns]")


def _bistatic_reference_range(
    image: dict[str, Any], swath_timing: dict[str, Any], points: list[dict[str, Any]]
) -> float | None:
    """Slant range (m) at which line time equals zero-Doppler time.

    Sentinel-1 labels image lines with the zero-Doppler time less the bistatic delay
    (tau - tau_ref) / 2 (tau: two-way range time). The annotation gives no tau_ref, but
    its geolocation grid holds true zero-Doppler times; tau_ref is their least-squares
    fit with the slope fixed at 1/2 (residuals are about a microsecond; tau_ref comes out
    near IW2's mid-swath range time for every IW product).
    """
    if not points:
        return None
    lines = np.asarray([p["line"] for p in points], dtype=np.int64)
    zero_doppler = np.asarray([p["azimuthTime"] for p in points], dtype="datetime64[ns]")
    tau = np.asarray([p["slantRangeTime"] for p in points], dtype=np.float64)
    offset = (zero_doppler - _line_times(image, swath_timing, lines)).astype(np.int64) / 1e9
    return float(np.mean(tau - 2.0 * offset)) * 299_792_458.0 / 2.0


def geolocation_grid(path: str | os.PathLike[str], measurement: str = "IW/VV") -> xr.Dataset:
    """The annotated geolocation grid (tie points) of a measurement, one entry per point.

    Each point keeps its own times: in GRD products they vary along both axes, which a
    grid indexed by the first line's and first column's times would lose. Used to check
    geocoding against ESA's own solution.

    Parameters
    ----------
    path : a ``.SAFE`` directory, its ``manifest.safe``, or a ``.zip`` of the SAFE.
    measurement : swath and polarisation, as :func:`read_annotation` takes it.

    Returns
    -------
    xarray.Dataset
        Variables on a ``point`` dimension: ``azimuth_time`` (datetime64[ns]),
        ``slant_range_time`` (s, two-way), ``line``, ``pixel``, ``latitude``,
        ``longitude`` (deg), ``height`` (m, ellipsoidal), ``incidence_angle`` (deg);
        attrs: the product description of :func:`read_annotation`.

    Raises
    ------
    ProductError
        as :func:`read_annotation`, and when the annotation has no geolocation grid.
    """
    info = read_annotation(path, measurement)
    points = info["geolocation_points"]
    if not points:
        raise ProductError(f"the annotation {info['annotation']!r} has no geolocation grid")

    def column(key: str, dtype: Any = np.float64) -> np.ndarray:
        return np.asarray([point[key] for point in points], dtype=dtype)

    return xr.Dataset(
        {
            "azimuth_time": ("point", column("azimuthTime", "datetime64[ns]")),
            "slant_range_time": ("point", column("slantRangeTime"), {"units": "s"}),
            "line": ("point", column("line", np.int64)),
            "pixel": ("point", column("pixel", np.int64)),
            "latitude": ("point", column("latitude"), {"units": "degree"}),
            "longitude": ("point", column("longitude"), {"units": "degree"}),
            "height": ("point", column("height"), {"units": "m"}),
            "incidence_angle": ("point", column("incidenceAngle"), {"units": "degree"}),
        },
        attrs=info["attrs"],
    )
