"""Sentinel-1 SAFE products: the reader at the edge.

Everything here goes through xarray-sentinel's own parsers (manifest, annotation,
orbit, geolocation grid, coordinate conversion); nothing parses XML by hand. The
annotation is enough: products whose measurement TIFFs are absent still give their
geometry.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

import numpy as np
import xarray as xr
from xarray_sentinel import esa_safe, sentinel1

from .errors import ProductError, UnsupportedProductError
from .preprocess.safe import SafeProduct, open_safe

_GROUP = re.compile(r"^(?P<swath>[A-Za-z]+\d?)/(?P<pol>[A-Za-z]{2})(?:/(?P<burst>\d+))?$")


def read_manifest(safe: SafeProduct) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        with safe.fs.open(safe.manifest) as file:
            return esa_safe.parse_manifest_sentinel1(file)
    except Exception as exc:  # xarray-sentinel raises ValueError, ParseError, KeyError...
        raise ProductError(
            f"could not read the Sentinel-1 manifest {safe.manifest!r} ({exc}): the file is truncated, "
            "not a Sentinel-1 product, or from an unsupported mission"
        ) from exc


def available_groups(safe: SafeProduct) -> dict[str, list[str]]:
    """xarray-sentinel's groups of a product, restricted to files that exist."""
    attrs, files = read_manifest(safe)
    return sentinel1.find_available_groups(
        files, safe.directory, attrs["product_type"], check_files_exist=True, fs=safe.fs
    )


def _select_group(
    groups: dict[str, list[str]], measurement: str, product_type: str, burst: int | None
) -> tuple[str, int | None]:
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


def read_annotation(
    path: str | os.PathLike[str], measurement: str = "IW/VV", *, burst: int | None = None
) -> dict[str, Any]:
    """What the geometry needs from one measurement of a Sentinel-1 product.

    Returns a dict with ``product_type`` ("SLC" or "GRD"), ``group``, ``product``
    (productInformation), ``image`` (imageInformation), ``orbit`` and ``gcp`` datasets,
    ``coordinate_conversion`` (GRD), ``slc_first_line_time`` and ``slc_lines`` (SLC: the
    whole sub-swath as one continuous grid, or one burst), and ``attrs`` (a product
    description for outputs).
    """
    safe = open_safe(path, mission="Sentinel-1")
    attrs, _files = read_manifest(safe)
    product_type = attrs["product_type"]
    if product_type not in ("SLC", "GRD"):
        raise UnsupportedProductError(
            f"product type {product_type!r} is not supported: sarheight reads Level-1 SLC and GRD "
            "products (IW, EW, SM)"
        )
    groups = available_groups(safe)
    group, burst = _select_group(groups, measurement, product_type, burst)
    annotation = groups[group][-1]
    try:
        with safe.fs.open(annotation) as file:
            content = file.read()
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
    info: dict[str, Any] = {
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
    }
    if product_type == "SLC":
        info.update(_slc_time_axis(image, swath_timing, burst))
    info["bistatic_reference_range"] = _bistatic_reference_range(image, swath_timing, points)
    mission = f"S1{attrs.get('number', '')}"
    info["attrs"] = {
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
    }
    return info


def _slc_time_axis(image: dict[str, Any], swath_timing: dict[str, Any], burst: int | None) -> dict[str, Any]:
    dt = float(image["azimuthTimeInterval"])
    bursts = swath_timing.get("burstList", {}).get("burst", []) or []
    if burst is not None:
        if not 0 <= burst < len(bursts):
            raise ProductError(
                f"burst {burst} does not exist: this sub-swath has {len(bursts)} bursts, numbered "
                f"0 .. {len(bursts) - 1}"
            )
        return {
            "slc_first_line_time": np.datetime64(bursts[burst]["azimuthTime"], "ns"),
            "slc_lines": int(swath_timing["linesPerBurst"]),
        }
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
    return {"slc_first_line_time": first, "slc_lines": lines}


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

    Variables on a ``point`` dimension: ``azimuth_time`` (datetime64[ns]),
    ``slant_range_time`` (s, two-way), ``line``, ``pixel``, ``latitude``, ``longitude``
    (deg), ``height`` (m, ellipsoidal), ``incidence_angle`` (deg). Each point keeps its
    own times: in GRD products they vary along both axes, which a grid indexed by the
    first line's and first column's times would lose. Used to check geocoding against
    ESA's own solution.
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
