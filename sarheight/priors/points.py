"""Known heights read from points (GNSS, ICESat-2 and others): CSV, GeoJSON and GeoPackage
files or a DataFrame of x, y and height, in any CRS and vertical datum, put on a grid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import affine
import numpy as np
import pandas as pd
import pyproj

from ..dem import (
    VERTICAL_DATUMS,
    geoid_source,
    geoid_undulation,
    split_crs,
)
from ..dem.geoid import UNSPECIFIED_DATUM
from ..errors import (
    DatumError,
    InvalidInputError,
    MissingInputError,
    PlausibilityWarning,
    PriorsOutsideWarning,
    VerticalDatumWarning,
    user_stacklevel,
)
from ..io import check_memory

logger = logging.getLogger(__name__)


#: Column names (any case) of a points table: x or longitude, y or latitude, height.
X_COLUMNS = ("x", "lon", "longitude", "easting")


Y_COLUMNS = ("y", "lat", "latitude", "northing")


HEIGHT_COLUMNS = ("height", "h", "z", "elevation", "elev", "h_li", "h_te_best_fit")


#: File suffixes of the points formats.
POINT_FORMATS = {".csv": "CSV", ".txt": "CSV", ".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage"}


# Each call concerns other points: never show the warning only once per code location.
warnings.filterwarnings("always", category=PriorsOutsideWarning)


@dataclass
class _Points:
    """Points as read: coordinates and heights (float64), the CRS and vertical datum their
    source declares (None where it declares none), what they came from, for messages."""

    x: np.ndarray
    y: np.ndarray
    height: np.ndarray
    crs: Any
    vertical_datum: str | None
    source: str


def priors_from_points(points: Any, crs: Any, vertical_datum: str | None, geoid_grid: Any, layer: str | None,
                        valid: np.ndarray, transform: affine.Affine,
                        grid_crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray, dict]:
    """The prior cells (flat indices, ascending), their heights (the mean of the points in
    each, ellipsoidal) and the attributes that describe them."""
    read = _read_points(points, layer)
    if crs is not None:
        if read.crs is not None:
            logger.info("crs=%r overrides the CRS %r of %s", crs, read.crs, read.source)
        read.crs, read.vertical_datum = crs, None
    if read.crs is None:
        raise InvalidInputError(
            f"{read.source} does not say which CRS its coordinates are in: pass crs=, e.g. crs='EPSG:4326' for "
            "longitude/latitude (GNSS, ICESat-2) or the UTM zone of eastings/northings ('EPSG:326xx')."
        )
    horizontal, crs_datum = split_crs(read.crs)
    datum = _points_datum(vertical_datum, crs_datum, read.vertical_datum, geoid_grid, read.source)

    to_grid = pyproj.Transformer.from_crs(horizontal, grid_crs, always_xy=True)
    grid_x, grid_y = (np.asarray(v, dtype=np.float64) for v in to_grid.transform(read.x, read.y))
    # open_dem refuses rotated grids: the transform is a scale and an offset per axis.
    col, row = (grid_x - transform.c) / transform.a, (grid_y - transform.f) / transform.e
    rows, cols = valid.shape
    with np.errstate(invalid="ignore"):
        col = np.floor(np.where(np.isfinite(col), col, -1.0))
        row = np.floor(np.where(np.isfinite(row), row, -1.0))
    inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    cells = (np.where(inside, row, 0) * cols + np.where(inside, col, 0)).astype(np.int64)
    usable = inside & valid.ravel()[cells]
    _refuse_if_none_usable(read, inside, usable, valid.shape, transform, grid_crs)

    heights = read.height[usable]
    attrs: dict[str, Any] = {"source": read.source, "source_vertical_datum": datum}
    if datum in ("egm96", "egm2008"):
        # Only the points on the grid: a geoid grid cropped to the DEM covers them.
        to_lonlat = pyproj.Transformer.from_crs(horizontal, "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(read.x[usable], read.y[usable])
        source = geoid_source(datum, geoid_grid, subject="point set")
        heights = heights + geoid_undulation(lon, lat, datum, None if source == "PROJ" else source,
                                             subject="point set")
        attrs["geoid_grid"] = source
    elif geoid_grid is not None:
        logger.info("geoid_grid is not used: the points' heights are already ellipsoidal")
    _warn_left_out(read, inside, usable, valid.shape, transform, grid_crs)
    _warn_conflicting_duplicates(read.x[usable], read.y[usable], heights, read.source)
    unique, inverse, per_cell = np.unique(cells[usable], return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=heights, minlength=unique.size) / per_cell
    attrs.update(
        points=int(read.x.size),
        points_left_out=int(read.x.size - usable.sum()),
        points_per_cell=f"the mean of the points in a cell ({int((per_cell > 1).sum())} cells had several)",
    )
    return unique, means, attrs


#: Heights (m) of points at one position that differ by more than this are in conflict.
DUPLICATE_CONFLICT_M = 1.0


def _warn_conflicting_duplicates(x: np.ndarray, y: np.ndarray, heights: np.ndarray, source: str) -> None:
    """Warn (:class:`~sarheight.errors.PlausibilityWarning`) of points at the very same
    position whose heights disagree by more than :data:`DUPLICATE_CONFLICT_M`: they are
    averaged per cell, and a later check of the priors against the DEM would read their
    disagreement as a datum's offset."""
    if x.size < 2:
        return
    order = np.lexsort((y, x))
    same = (x[order][1:] == x[order][:-1]) & (y[order][1:] == y[order][:-1])
    if not same.any():
        return
    differences = np.abs(np.diff(heights[order]))[same]
    conflicting = differences > DUPLICATE_CONFLICT_M
    if conflicting.any():
        warnings.warn(f"{int(conflicting.sum())} point(s) of {source} repeat another's position with a height that "
                      f"differs by up to {float(differences.max()):.1f} m (duplicates from two sources or dates?): "
                      "each cell takes the mean of its points; remove the ones you do not trust",
                      PlausibilityWarning, stacklevel=user_stacklevel())


def _grid_bounds(shape: tuple[int, int], transform: affine.Affine, grid_crs: pyproj.CRS) -> str:
    rows, cols = shape
    west, east = transform.c, transform.c + transform.a * cols
    north, south = transform.f, transform.f + transform.e * rows
    return (f"x {min(west, east):.10g}..{max(west, east):.10g}, y {min(south, north):.10g}..{max(south, north):.10g} "
            f"in {grid_crs.name}")


def _refuse_if_none_usable(read: _Points, inside: np.ndarray, usable: np.ndarray, shape: tuple[int, int],
                           transform: affine.Affine, grid_crs: pyproj.CRS) -> None:
    if not usable.any():
        outside, on_voids = int((~inside).sum()), int((inside & ~usable).sum())
        raise InvalidInputError(
            f"None of the {read.x.size} points of {read.source} lies on a DEM cell with a height ({outside} outside "
            f"the grid, {on_voids} on cells without height; the grid spans {_grid_bounds(shape, transform, grid_crs)})."
            " Check the points' CRS (crs=; longitude and latitude swapped?) and that they cover the DEM."
        )


def _warn_left_out(read: _Points, inside: np.ndarray, usable: np.ndarray, shape: tuple[int, int],
                   transform: affine.Affine, grid_crs: pyproj.CRS) -> None:
    """Warn with the count of the points left out, and where the grid is."""
    n, outside, on_voids = read.x.size, int((~inside).sum()), int((inside & ~usable).sum())
    bounds = _grid_bounds(shape, transform, grid_crs)
    if outside or on_voids:
        warnings.warn(
            f"{outside + on_voids} of the {n} points of {read.source} are left out: {outside} outside the DEM "
            f"grid ({bounds}), {on_voids} on cells without height.",
            PriorsOutsideWarning, stacklevel=user_stacklevel())


def _points_datum(vertical_datum: str | None, crs_datum: str | None, file_datum: str | None, geoid_grid: Any,
                  source: str) -> str:
    """The datum of the points' heights, by open_dem's rules: the keyword, else the CRS's,
    else the file format's, else ellipsoidal with a warning; refused where unconvertible."""
    if vertical_datum is not None:
        key = vertical_datum.strip().lower() if isinstance(vertical_datum, str) else None
        if key not in VERTICAL_DATUMS:
            raise InvalidInputError(
                f"vertical_datum={vertical_datum!r} is not understood. Use one of "
                f"{', '.join(map(repr, VERTICAL_DATUMS))}, or None to read it from the CRS."
            )
        return key
    if crs_datum is not None:
        if crs_datum not in VERTICAL_DATUMS:
            raise DatumError(
                f"The heights of {source} are on {crs_datum!r}, which sarheight cannot convert to WGS84 "
                "ellipsoidal heights. Convert them first, or pass PriorSpec(vertical_datum='egm96'), 'egm2008' or "
                "'ellipsoid' if you know better."
            )
        return crs_datum
    if file_datum is not None:
        return file_datum
    if geoid_grid is not None:
        raise DatumError(
            f"geoid_grid={str(geoid_grid)!r} was given but nothing says which geoid the heights of {source} refer "
            "to. Say it with PriorSpec(vertical_datum='egm96') or 'egm2008' (or 'ellipsoid'), or a compound crs= such "
            "as "
            "'EPSG:9707' (WGS 84 + EGM96 height)."
        )
    warnings.warn(
        f"Nothing says which vertical datum the heights of {source} are on: they are taken as WGS84 "
        "ellipsoidal (as GNSS and ICESat-2 heights are). Heights on a geoid (levelled, from a map or a DEM) are "
        "30-100 m off that way: pass PriorSpec(vertical_datum='egm96') or 'egm2008' to convert them, or "
        "PriorSpec(vertical_datum='ellipsoid') to silence this warning.",
        VerticalDatumWarning, stacklevel=user_stacklevel())
    return UNSPECIFIED_DATUM


def _read_points(points: Any, layer: str | None) -> _Points:
    if isinstance(points, pd.DataFrame):
        if layer is not None:
            raise InvalidInputError("layer= names a GeoPackage table; points= is a DataFrame.")
        return _points_from_table(points, "the DataFrame", points.attrs.get("crs"))
    if not isinstance(points, (str, os.PathLike)):
        raise InvalidInputError(
            f"points= is a CSV, GeoJSON or GeoPackage file or a pandas DataFrame, not {type(points).__name__}."
        )
    path = Path(points).expanduser()
    if not path.exists():
        raise MissingInputError(
            f"The points file {str(points)!r} does not exist. Check the path (relative paths are taken from "
            f"{os.getcwd()!r})."
        )
    if not path.is_file():
        raise InvalidInputError(f"The points file {str(points)!r} is not a file.")
    kind = POINT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"The points file {path.name!r} has no known suffix: {', '.join(POINT_FORMATS)} "
            "(CSV, GeoJSON, GeoPackage). Convert it, e.g. ogr2ogr -f GPKG points.gpkg IN."
        )
    if layer is not None and kind != "GeoPackage":
        raise InvalidInputError(f"layer= names a GeoPackage table; {path.name!r} is {kind}.")
    # Parsed tables and JSON take several times their file size in memory.
    check_memory(10 * path.stat().st_size, f"the points file {path.name!r}")
    if kind == "CSV":
        try:
            table = pd.read_csv(path, comment="#", skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"The points file {path.name!r} is not a readable CSV table ({error}).") from error
        return _points_from_table(table, repr(path.name), None)
    if kind == "GeoJSON":
        return _read_geojson(path)
    return _read_geopackage(path, layer)


def _column(names: list[str], aliases: tuple[str, ...], what: str, source: str) -> str:
    """The one column of ``names`` that is one of ``aliases`` (any case)."""
    found = [name for name in names if str(name).strip().lower() in aliases]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidInputError(
            f"{source} has no {what} column: expected one named {', '.join(aliases)} (any case); its columns are "
            f"{', '.join(map(str, names)) or 'none'}."
        )
    raise InvalidInputError(
        f"{source} has several {what} columns ({', '.join(map(str, found))}): keep one, or rename the others."
    )


def _numbers(values: Any, what: str, source: str) -> np.ndarray:
    """Float64 values of a column, refused where any is missing or not a number."""
    numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numeric))
    if bad.size:
        raise InvalidInputError(
            f"{bad.size} {what} values of {source} are missing or not finite numbers (rows "
            f"{', '.join(str(i) for i in bad[:5])}{', ...' if bad.size > 5 else ''}): fix or drop those points."
        )
    return numeric


def _points_from_table(table: pd.DataFrame, source: str, crs: Any) -> _Points:
    names = list(table.columns)
    x = _column(names, X_COLUMNS, "x (or longitude)", source)
    y = _column(names, Y_COLUMNS, "y (or latitude)", source)
    height = _column(names, HEIGHT_COLUMNS, "height", source)
    if not len(table):
        raise InvalidInputError(f"{source} holds no points.")
    return _Points(_numbers(table[x], x, source), _numbers(table[y], y, source),
                   _numbers(table[height], height, source), crs, None, source)


def _read_geojson(path: Path) -> _Points:
    source = repr(path.name)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"The points file {source} is not valid GeoJSON ({error}).") from error
    except RecursionError:
        raise InvalidInputError(f"The points file {source} nests its JSON thousands of levels deep: a GeoJSON of "
                                "points is a few levels deep; mend or export the file again") from None
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection" and isinstance(document.get("features"), list):
        features = document["features"]
    elif kind == "Feature":
        features = [document]
    else:
        raise InvalidInputError(
            f"{source} is not a GeoJSON FeatureCollection or Feature (type {kind!r}): give point features."
        )
    coordinates, properties_heights = [], []
    for index, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        geometry_type = geometry.get("type") if isinstance(geometry, dict) else None
        if geometry_type == "Point":
            positions = [geometry.get("coordinates")]
        elif geometry_type == "MultiPoint":
            positions = geometry.get("coordinates")
        else:
            raise InvalidInputError(
                f"Feature {index} of {source} is a {geometry_type or 'feature without geometry'}: priors are Point "
                "or MultiPoint features."
            )
        if not isinstance(positions, list) or not all(
                isinstance(p, list) and len(p) >= 2 and all(isinstance(v, (int, float)) for v in p)
                for p in positions):
            raise InvalidInputError(f"Feature {index} of {source} has coordinates that are not [x, y(, z)] numbers.")
        raw = feature.get("properties")
        properties = raw if isinstance(raw, dict) else {}
        named = [key for key in properties if str(key).strip().lower() in HEIGHT_COLUMNS]
        for position in positions:
            coordinates.append(position)
            properties_heights.append(properties[named[0]] if len(named) == 1 else None)
    if not coordinates:
        raise InvalidInputError(f"{source} holds no points.")
    with_z = [len(p) >= 3 for p in coordinates]
    if all(with_z):
        # RFC 7946: the third coordinate is the height above the WGS 84 ellipsoid.
        height, file_datum = np.array([p[2] for p in coordinates], dtype=np.float64), "ellipsoid"
    elif not any(with_z):
        missing = [i for i, h in enumerate(properties_heights) if h is None]
        if missing:
            raise InvalidInputError(
                f"{len(missing)} points of {source} have no height: give it as the third coordinate or as one "
                f"property named {', '.join(HEIGHT_COLUMNS)}."
            )
        height, file_datum = _numbers(properties_heights, "height", source), None
    else:
        raise InvalidInputError(
            f"Some points of {source} have a third coordinate and others not: give every height the same way."
        )
    crs = _geojson_crs(document, source)
    return _Points(np.array([p[0] for p in coordinates], dtype=np.float64),
                   np.array([p[1] for p in coordinates], dtype=np.float64),
                   height, crs if crs is not None else "OGC:CRS84",
                   file_datum if crs is None else None, source)


def _geojson_crs(document: dict, source: str) -> str | None:
    """The CRS named by a legacy (2008) GeoJSON ``crs`` member, None without one."""
    member = document.get("crs")
    if member is None:
        return None
    name = member.get("properties", {}).get("name") if isinstance(member, dict) else None
    if not isinstance(member, dict) or member.get("type") != "name" or not isinstance(name, str):
        raise InvalidInputError(
            f"{source} has a 'crs' member that does not name a CRS ({member!r}): remove it (RFC 7946 GeoJSON is "
            "longitude/latitude on WGS 84) or pass crs=."
        )
    return name


# GeoPackage geometry types of points in WKB (ISO codes, and the EWKB flags some writers use).
_WKB_POINT, _WKB_MULTIPOINT = 1, 4


def _read_geopackage(path: Path, layer: str | None) -> _Points:
    source = repr(path.name)
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            tables = connection.execute(
                "SELECT table_name, column_name, srs_id FROM gpkg_geometry_columns").fetchall()
            if layer is not None:
                tables = [t for t in tables if t[0] == layer]
                if not tables:
                    raise InvalidInputError(f"{source} has no feature table {layer!r}.")
            if len(tables) != 1:
                raise InvalidInputError(
                    f"{source} has {len(tables)} feature tables ({', '.join(t[0] for t in tables) or 'none'}): "
                    "name the one with the points with layer=."
                )
            table, geometry_column, srs_id = tables[0]
            crs = _geopackage_crs(connection, srs_id, source)
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({_quoted(table)})")]
            height_columns = [c for c in columns if str(c).strip().lower() in HEIGHT_COLUMNS
                              and c != geometry_column]
            selected = [geometry_column, *height_columns[:1]]
            rows = connection.execute(
                f"SELECT {', '.join(map(_quoted, selected))} FROM {_quoted(table)}").fetchall()
    except sqlite3.DatabaseError as error:
        raise InvalidInputError(f"The points file {source} is not a readable GeoPackage ({error}).") from error
    coordinates, column_heights = [], []
    for index, row in enumerate(rows):
        for point in _geopackage_points(row[0], f"feature {index} of {source}"):
            coordinates.append(point)
            column_heights.append(row[1] if len(row) > 1 else None)
    if not coordinates:
        raise InvalidInputError(f"{source} holds no points.")
    with_z = [len(p) == 3 for p in coordinates]
    if all(with_z):
        height = np.array([p[2] for p in coordinates], dtype=np.float64)
    elif height_columns and not any(with_z):
        height = _numbers(column_heights, height_columns[0], source)
    else:
        raise InvalidInputError(
            f"The points of {source} have no height: give them Z coordinates or a column named "
            f"{', '.join(HEIGHT_COLUMNS)}."
        )
    return _Points(np.array([p[0] for p in coordinates], dtype=np.float64),
                   np.array([p[1] for p in coordinates], dtype=np.float64), height, crs, None, source)


def _quoted(identifier: str) -> str:
    """An SQL identifier in double quotes (names come from the file)."""
    return '"' + str(identifier).replace('"', '""') + '"'


def _geopackage_crs(connection: sqlite3.Connection, srs_id: int, source: str) -> Any:
    """The CRS of GeoPackage spatial reference ``srs_id``; None for the undefined ones."""
    found = connection.execute(
        "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?",
        (srs_id,)).fetchone()
    if found is None:
        raise InvalidInputError(f"{source} names spatial reference {srs_id}, which its gpkg_spatial_ref_sys lacks.")
    organization, code, definition = found
    if srs_id in (0, -1) or str(definition).strip().lower() == "undefined":
        return None
    if str(organization).strip().upper() == "EPSG" and code is not None and int(code) > 0:
        return f"EPSG:{int(code)}"
    return definition


def _geopackage_points(blob: Any, what: str) -> list[tuple[float, ...]]:
    """The (x, y[, z]) of a GeoPackage geometry blob: the GeoPackage binary header
    (GeoPackage 1.3, section 2.1.3), then a WKB Point or MultiPoint in either byte order."""
    if not isinstance(blob, bytes) or len(blob) < 8 or blob[:2] != b"GP":
        raise InvalidInputError(f"The geometry of {what} is not a GeoPackage geometry blob.")
    flags = blob[3]
    if flags & 0b10_0000:
        raise InvalidInputError(f"The geometry of {what} is of an extension type: priors are points.")
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get((flags >> 1) & 0b111)
    if envelope is None:
        raise InvalidInputError(f"The geometry header of {what} has an invalid envelope code.")
    if flags & 0b1_0000:
        return []  # an empty geometry: no point
    points, _ = _wkb_points(blob, 8 + envelope, what, top=True)
    return points


def _wkb_points(blob: bytes, offset: int, what: str, top: bool) -> tuple[list[tuple[float, ...]], int]:
    """Points of the WKB geometry at ``offset`` and the offset after it."""
    if offset + 5 > len(blob) or blob[offset] not in (0, 1):
        raise InvalidInputError(f"The WKB geometry of {what} is truncated or corrupt.")
    order = "<" if blob[offset] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", blob, offset + 1)
    offset += 5
    has_z = bool(code & 0x8000_0000) or (code & 0xFFFF) // 1000 in (1, 3)
    has_m = bool(code & 0x4000_0000) or (code & 0xFFFF) // 1000 in (2, 3)
    kind = (code & 0xFFFF) % 1000
    if kind == _WKB_POINT:
        n_values = 2 + has_z + has_m
        if offset + 8 * n_values > len(blob):
            raise InvalidInputError(f"The WKB point of {what} is truncated.")
        values = struct.unpack_from(order + "d" * n_values, blob, offset)
        offset += 8 * n_values
        if all(math.isnan(v) for v in values[:2]):
            return [], offset  # WKB's empty point
        return [tuple(values[:3] if has_z else values[:2])], offset
    if kind == _WKB_MULTIPOINT and top:
        (n,) = struct.unpack_from(order + "I", blob, offset)
        offset += 4
        points = []
        for _ in range(n):
            part, offset = _wkb_points(blob, offset, what, top=False)
            points += part
        return points, offset
    raise InvalidInputError(f"The geometry of {what} is WKB type {code}, not a Point or MultiPoint.")
