"""Tests of sarheight.priors read from a user's points: points files, their vertical datum,
distance maps, priors-only interpolation.

References: rasterio's ``index`` and pyproj for the cells points land in; open_dem's geoid
conversion of the Big Tujunga DEM for EGM96 point heights; geodesics (pyproj.Geod) and
Euclidean distances from every cell to every prior for the distance map; planes and
scipy's LinearNDInterpolator for the linear interpolation. Sampled patterns and
instrument errors: test_priors.py.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
import warnings

import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
import scipy.ndimage
import scipy.spatial
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from scipy.interpolate import LinearNDInterpolator

from sarheight import sample_data
from sarheight.dem import geoid_undulation, open_dem, split_crs
from sarheight.errors import (
    DatumError,
    InvalidInputError,
    MissingInputError,
    PriorsOutsideWarning,
    VerticalDatumWarning,
)
from sarheight.priors import (
    PATTERNS,
    PriorErrors,
    PriorSpec,
    distance_map,
    draw_prior_errors,
    instrument_priors,
    interpolate_priors,
    sample_priors,
)
from tests.support.priors import TUJUNGA, TUJUNGA_GEOID, geographic_dem, prior_cells, user_warnings, utm_dem
from tests.support.scenes import plane_dem, rough_dem

# --------------------------------------------------------------------------------------
# Points files
# --------------------------------------------------------------------------------------


def _points_on(dem_path, n, seed, geoid_heights=False):
    """Longitude, latitude, height of ``n`` points inside random cells of the DEM file, two
    of them in one cell, and their cells computed with rasterio's ``index``."""
    rng = np.random.default_rng(seed)
    with rasterio.open(dem_path) as src:
        rows = rng.integers(0, src.height, n)
        cols = rng.integers(0, src.width, n)
        rows[1], cols[1] = rows[0], cols[0]
        # Anywhere inside the cell, away from its edges.
        x = src.transform.c + src.transform.a * (cols + rng.uniform(0.05, 0.95, n))
        y = src.transform.f + src.transform.e * (rows + rng.uniform(0.05, 0.95, n))
        to_lonlat = pyproj.Transformer.from_crs(src.crs.to_wkt(), "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(x, y)
        to_grid = pyproj.Transformer.from_crs("EPSG:4326", src.crs.to_wkt(), always_xy=True)
        expected = [src.index(*xy) for xy in zip(*to_grid.transform(lon, lat), strict=True)]
        raw = src.read(1).astype(np.float64)
    height = raw[rows, cols] if geoid_heights else rng.uniform(500.0, 1600.0, n)
    return np.asarray(lon), np.asarray(lat), height, expected


def _expected_heights(expected, height):
    cells = {}
    for cell, h in zip(expected, height, strict=True):
        cells.setdefault(cell, []).append(h)
    return {cell: np.mean(values) for cell, values in cells.items()}


def write_csv(path, lon, lat, height, names=("lon", "lat", "height")):
    pd.DataFrame({names[0]: lon, names[1]: lat, names[2]: height}).to_csv(path, index=False)
    return path


def write_geojson(path, lon, lat, height, *, as_property=False, crs_member=None, multipoint=False):
    if multipoint:
        features = [{"type": "Feature", "properties": {},
                     "geometry": {"type": "MultiPoint",
                                  "coordinates": [[x, y, h] for x, y, h in zip(lon, lat, height, strict=True)]}}]
    else:
        features = [{"type": "Feature", "properties": {"Elevation": h} if as_property else {"name": f"p{i}"},
                     "geometry": {"type": "Point", "coordinates": [x, y] if as_property else [x, y, h]}}
                    for i, (x, y, h) in enumerate(zip(lon, lat, height, strict=True))]
    document = {"type": "FeatureCollection", "features": features}
    if crs_member is not None:
        document["crs"] = {"type": "name", "properties": {"name": crs_member}}
    path.write_text(json.dumps(document))
    return path


def _wkb_point(x, y, z=None, big_endian=False):
    order = ">" if big_endian else "<"
    if z is None:
        return struct.pack(order + "BIdd", 0 if big_endian else 1, 1, x, y)
    return struct.pack(order + "BIddd", 0 if big_endian else 1, 1001, x, y, z)


def _gpkg_blob(wkb, srs_id, envelope=None, big_endian=False):
    """GeoPackage binary: "GP", version 0, flags (byte order bit 0, envelope code bits 1-3),
    srs_id (int32), envelope (doubles), then the WKB (GeoPackage 1.3, 2.1.3.1.1)."""
    order = ">" if big_endian else "<"
    code = 0 if envelope is None else 1
    header = b"GP" + bytes([0, (code << 1) | (0 if big_endian else 1)]) + struct.pack(order + "i", srs_id)
    if envelope is not None:
        header += struct.pack(order + "4d", *envelope)
    return header + wkb


def write_geopackage(path, lon, lat, height, *, z=True, big_endian=False, multipoint=False, tables=("points",),
                     srs=(4326, "EPSG", 4326)):
    """A GeoPackage written with sqlite3 after the GeoPackage 1.3 specification."""
    srs_id, organization, code = srs
    crs = pyproj.CRS.from_epsg(code) if organization == "EPSG" else None
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 1196444487")  # "GPKG"
        db.execute("CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, "
                   "organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, "
                   "description TEXT)")
        db.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", [
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None)])
        if crs is not None:
            db.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                       (crs.name, srs_id, organization, code, crs.to_wkt(), None))
        db.execute("CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT NOT NULL, "
                   "identifier TEXT, description TEXT DEFAULT '', last_change DATETIME, min_x DOUBLE, min_y DOUBLE, "
                   "max_x DOUBLE, max_y DOUBLE, srs_id INTEGER)")
        db.execute("CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, "
                   "geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, "
                   "m TINYINT NOT NULL)")
        for table in tables:
            db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id) VALUES (?, ?, ?, ?)",
                       (table, "features", table, srs_id))
            db.execute("INSERT INTO gpkg_geometry_columns VALUES (?, ?, ?, ?, ?, ?)",
                       (table, "geom", "MULTIPOINT" if multipoint else "POINT", srs_id, int(z), 0))
            db.execute(f'CREATE TABLE "{table}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom BLOB, Height REAL)')
            envelope = (min(lon), max(lon), min(lat), max(lat))
            if multipoint:
                parts = b"".join(_wkb_point(x, y, h if z else None, big_endian)
                                 for x, y, h in zip(lon, lat, height, strict=True))
                order = ">" if big_endian else "<"
                wkb = struct.pack(order + "BII", 0 if big_endian else 1, 1004 if z else 4, len(lon)) + parts
                db.execute(f'INSERT INTO "{table}" (geom, Height) VALUES (?, ?)',
                           (_gpkg_blob(wkb, srs_id, envelope, big_endian), None))
            else:
                db.executemany(f'INSERT INTO "{table}" (geom, Height) VALUES (?, ?)', [
                    (_gpkg_blob(_wkb_point(x, y, h if z else None, big_endian), srs_id,
                                envelope if i % 2 else None, big_endian), None if z else h)
                    for i, (x, y, h) in enumerate(zip(lon, lat, height, strict=True))])
    return path


POINT_SOURCES = {
    "csv": lambda tmp, lon, lat, h: ({"points": write_csv(tmp / "gnss.csv", lon, lat, h), "crs": "EPSG:4979"}),
    "csv-aliases": lambda tmp, lon, lat, h: (
        {"points": write_csv(tmp / "atl06.csv", lon, lat, h, names=("Longitude", "LATITUDE", "h_li")),
         "crs": "EPSG:4326", "vertical_datum": "ellipsoid"}),
    "dataframe": lambda tmp, lon, lat, h: (
        {"points": pd.DataFrame({"x": lon, "y": lat, "z": h}), "crs": "EPSG:4326", "vertical_datum": "ellipsoid"}),
    "geojson": lambda tmp, lon, lat, h: {"points": write_geojson(tmp / "gnss.geojson", lon, lat, h)},
    "geojson-multipoint": lambda tmp, lon, lat, h: {
        "points": write_geojson(tmp / "gnss.json", lon, lat, h, multipoint=True)},
    "geojson-property": lambda tmp, lon, lat, h: {
        "points": write_geojson(tmp / "gnss.geojson", lon, lat, h, as_property=True), "vertical_datum": "ellipsoid"},
    "gpkg": lambda tmp, lon, lat, h: {"points": write_geopackage(tmp / "gnss.gpkg", lon, lat, h),
                                      "vertical_datum": "ellipsoid"},
    "gpkg-big-endian-multipoint": lambda tmp, lon, lat, h: {
        "points": write_geopackage(tmp / "gnss.gpkg", lon, lat, h, big_endian=True, multipoint=True),
        "vertical_datum": "ellipsoid"},
    "gpkg-height-column": lambda tmp, lon, lat, h: {
        "points": write_geopackage(tmp / "gnss.gpkg", lon, lat, h, z=False), "vertical_datum": "ellipsoid"},
}


@pytest.mark.parametrize("source", sorted(POINT_SOURCES))
def test_points_in_lonlat_land_in_the_cells_rasterio_gives(tmp_path, tujunga, source):
    lon, lat, height, expected = _points_on(TUJUNGA, 40, seed=5)
    kwargs = POINT_SOURCES[source](tmp_path, lon, lat, height)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        priors = sample_priors(tujunga, **kwargs)
    assert user_warnings(record) == []  # every point inside, every datum declared
    wanted = _expected_heights(expected, height)
    assert prior_cells(priors) == set(wanted)
    assert priors.attrs["count"] == len(wanted) == 39  # two points share a cell
    assert priors.attrs["pattern"] == "points" and priors.attrs["points"] == 40
    assert priors.attrs["points_left_out"] == 0 and "1 cells had several" in priors.attrs["points_per_cell"]
    got = priors["prior_height"].values
    for (row, col), value in wanted.items():
        assert got[row, col] == pytest.approx(value, abs=1e-3)  # float32 of the mean


def test_points_in_the_dems_projected_crs_and_a_legacy_geojson_crs(tmp_path, tujunga):
    lon, lat, height, expected = _points_on(TUJUNGA, 25, seed=8)
    x, y = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32611", always_xy=True).transform(lon, lat)
    path = write_geojson(tmp_path / "utm.geojson", x, y, height, crs_member="urn:ogc:def:crs:EPSG::32611")
    priors = sample_priors(tujunga, points=path, vertical_datum="ellipsoid")
    assert prior_cells(priors) == set(_expected_heights(expected, height))
    frame = pd.DataFrame({"easting": x, "northing": y, "elevation": height})
    frame.attrs["crs"] = "EPSG:32611"
    assert prior_cells(sample_priors(tujunga, points=frame, vertical_datum="ellipsoid")) == prior_cells(priors)


def test_points_outside_the_grid_or_on_voids_are_counted_in_the_warning(tmp_path, tujunga):
    lon, lat, height, expected = _points_on(TUJUNGA, 30, seed=9)
    void_row, void_col = expected[5]
    values = tujunga.values.copy()
    values[void_row, void_col] = np.nan
    dem = tujunga.copy(data=values)
    # Three points kilometres beyond the grid's edges.
    lon = np.concatenate([lon, [lon.min() - 0.2, lon.max() + 0.2, lon.mean()]])
    lat = np.concatenate([lat, [lat.mean(), lat.mean(), lat.max() + 0.3]])
    height = np.concatenate([height, [900.0, 900.0, 900.0]])
    path = write_csv(tmp_path / "gnss.csv", lon, lat, height)
    with pytest.warns(PriorsOutsideWarning) as record:
        priors = sample_priors(dem, points=path, crs="EPSG:4979")
    message = str(next(w.message for w in record if w.category is PriorsOutsideWarning))
    assert "4 of the 33 points" in message and "3 outside" in message and "1 on cells without height" in message
    west, _, _, north = tujunga.rio.bounds()
    assert f"{west:.10g}" in message and f"{north:.10g}" in message
    kept = set(expected) - {(void_row, void_col)}
    assert prior_cells(priors) == kept
    assert priors.attrs["points_left_out"] == 4


def test_points_all_outside_are_refused_before_any_work(tmp_path, tujunga):
    lon, lat, height, _ = _points_on(TUJUNGA, 10, seed=1)
    path = write_csv(tmp_path / "swapped.csv", lat, lon, height)  # latitude and longitude swapped
    with pytest.raises(InvalidInputError, match=r"None of the 10 points.*swapped"):
        sample_priors(tujunga, points=path, crs="EPSG:4979")


# --------------------------------------------------------------------------------------
# Vertical datum of the points
# --------------------------------------------------------------------------------------


def test_egm96_point_heights_are_brought_to_the_ellipsoid(tmp_path, tujunga):
    """Points at cell centres carrying the file's EGM96 heights must get the heights that
    open_dem gives those cells (the same geoid grid, two ways)."""
    lon, lat, height, expected = _points_on(TUJUNGA, 30, seed=3, geoid_heights=True)
    path = write_csv(tmp_path / "levelled.csv", lon, lat, height)
    for kwargs in ({"crs": "EPSG:4326", "vertical_datum": "egm96"}, {"crs": "EPSG:9707"}):
        priors = sample_priors(tujunga, points=path, geoid_grid=TUJUNGA_GEOID, **kwargs)
        assert priors.attrs["source_vertical_datum"] == "egm96"
        assert priors.attrs["geoid_grid"] == str(TUJUNGA_GEOID)
        rows, cols = np.array(sorted(set(expected))).T
        got = priors["prior_height"].values[rows, cols]
        undulation = got - np.array([_expected_heights(expected, height)[cell] for cell in zip(rows, cols,
                                                                                                 strict=True)])
        # EGM96 is about -33 m in the San Gabriel Mountains; the points are up to 21 m from
        # their cell's centre, over which the geoid changes by well under a centimetre.
        assert np.all((-36.5 < undulation) & (undulation < -31.0))
        np.testing.assert_allclose(undulation, tujunga.values[rows, cols] - _raw(TUJUNGA)[rows, cols], atol=0.01)


def _raw(path):
    with rasterio.open(path) as src:
        return src.read(1).astype(np.float64)


def test_geoid_undulation_matches_open_dems_conversion(tujunga):
    x, y = np.meshgrid(tujunga["x"].values[::37], tujunga["y"].values[::41])
    lon, lat = pyproj.Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True).transform(x, y)
    undulation = geoid_undulation(lon, lat, "egm96", TUJUNGA_GEOID)
    np.testing.assert_allclose(undulation, (tujunga.values - _raw(TUJUNGA))[::41, ::37], atol=2e-3)
    with pytest.raises(InvalidInputError, match="not a geoid"):
        geoid_undulation(lon, lat, "ellipsoid")


def test_split_crs_reads_the_datum_of_compound_and_3d_crss():
    assert split_crs("EPSG:9707")[1] == "egm96"
    assert split_crs("EPSG:9518")[1] == "egm2008"
    assert split_crs("EPSG:4979")[1] == "ellipsoid"
    assert split_crs("EPSG:32611")[1] is None
    assert split_crs("EPSG:5498")[1] == "North American Vertical Datum 1988"
    assert split_crs("EPSG:9707")[0] == pyproj.CRS("EPSG:4326")


def test_geoid_heights_without_a_proj_grid_convert_offline(tmp_path, tujunga, isolated_proj):
    lon, lat, height, _ = _points_on(TUJUNGA, 5, seed=3)
    path = write_csv(tmp_path / "levelled.csv", lon, lat, height)
    on_egm96 = sample_priors(tujunga, points=path, crs="EPSG:9707")
    assert on_egm96.attrs["geoid_grid"] == "PROJ" or "egm96_15" in on_egm96.attrs["geoid_grid"]
    with pytest.warns(VerticalDatumWarning, match="EGM2008"):
        on_egm2008 = sample_priors(tujunga, points=path, crs="EPSG:4326", vertical_datum="egm2008")
    np.testing.assert_allclose(on_egm2008["prior_height"].values, on_egm96["prior_height"].values, equal_nan=True)
    with pytest.raises(MissingInputError, match="does not exist"):
        sample_priors(tujunga, points=path, crs="EPSG:9707", geoid_grid=tmp_path / "nowhere.gtx")


def test_undeclared_and_unconvertible_datums(tmp_path, tujunga):
    lon, lat, height, _ = _points_on(TUJUNGA, 5, seed=3)
    path = write_csv(tmp_path / "points.csv", lon, lat, height)
    with pytest.warns(VerticalDatumWarning, match="taken as WGS84 ellipsoidal"):
        priors = sample_priors(tujunga, points=path, crs="EPSG:4326")
    assert priors.attrs["source_vertical_datum"] == "unspecified (taken as ellipsoid)"
    with pytest.raises(DatumError, match="North American Vertical Datum 1988"):
        sample_priors(tujunga, points=path, crs="EPSG:5498")
    with pytest.raises(DatumError, match="vertical_datum='egm96'"):
        sample_priors(tujunga, points=path, crs="EPSG:4326", geoid_grid=TUJUNGA_GEOID)
    # RFC 7946: a GeoJSON third coordinate is an ellipsoidal height, a property is not declared.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sample_priors(tujunga, points=write_geojson(tmp_path / "z.geojson", lon, lat, height))
    assert user_warnings(record) == []
    with pytest.warns(VerticalDatumWarning):
        sample_priors(tujunga, points=write_geojson(tmp_path / "p.geojson", lon, lat, height, as_property=True))


# --------------------------------------------------------------------------------------
# distance_map
# --------------------------------------------------------------------------------------


def _random_mask(shape, count, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    mask.ravel()[rng.choice(mask.size, count, replace=False)] = 1
    return mask


@pytest.mark.parametrize(("lat_north", "cell_deg", "shape"), [(55.0, 0.001, (40, 50)), (60.0, 1 / 60, (60, 45))])
def test_distance_on_a_geographic_grid_is_the_geodesic_to_the_nearest_prior(lat_north, cell_deg, shape):
    dem = geographic_dem(*shape, lat_north, cell_deg)
    mask = dem.copy(data=_random_mask(shape, 6, seed=int(lat_north))).astype(np.uint8)
    distance = distance_map(mask)
    lon, lat = np.meshgrid(dem["x"].values, dem["y"].values)
    rows, cols = np.nonzero(mask.values)
    geod = pyproj.Geod(ellps="WGS84")
    reference = np.full(shape, np.inf)
    for row, col in zip(rows, cols, strict=True):
        _, _, metres = geod.inv(lon, lat, np.full(shape, lon[row, col]), np.full(shape, lat[row, col]))
        reference = np.minimum(reference, metres)
    assert distance.dtype == np.float32 and distance.attrs["units"] == "m"
    # Within float32 rounding (1e-7 relative) and 1 mm, over 5 km (first grid) to 1 degree.
    np.testing.assert_allclose(distance.values, reference, rtol=2e-7, atol=1e-3)
    # The degrees of the grid are not metres: east-west cells are shorter than north-south.
    row, col = rows[0], cols[0]
    if 0 < col < shape[1] - 1 and mask.values[row, col + 1] == 0:
        assert distance.values[row, col + 1] < 0.65 * 111_000 * cell_deg


def test_distance_on_real_geographic_dem_matches_geodesics():
    rome = sample_data.rome_dem()[::8, ::8]  # 20 x 20 cells of 8 arc seconds, 42 degrees north
    rome = rome.rio.write_transform(rome.rio.transform(recalc=True))
    priors = sample_priors(rome, count=5, pattern="clusters", seed=2)
    distance = distance_map(priors)
    lon, lat = np.meshgrid(rome["x"].values, rome["y"].values)
    geod = pyproj.Geod(ellps="WGS84")
    reference = np.min([geod.inv(lon, lat, np.full(lon.shape, lon[r, c]), np.full(lon.shape, lat[r, c]))[2]
                        for r, c in prior_cells(priors)], axis=0)
    np.testing.assert_allclose(distance.values, reference, rtol=2e-7, atol=1e-3)


@pytest.mark.parametrize(("crs", "metres_per_unit"), [("EPSG:32611", 1.0), ("EPSG:2229", 1200 / 3937)])
def test_distance_on_a_projected_grid_is_euclidean_in_metres(crs, metres_per_unit):
    shape = (30, 41)
    dem = utm_dem(np.full(shape, 50.0), cell=25.0, west=6_400_000.0, north=1_900_000.0, crs=crs) \
        if crs == "EPSG:2229" else utm_dem(np.full(shape, 50.0), cell=25.0)
    mask = dem.copy(data=_random_mask(shape, 9, seed=3)).astype(np.uint8)
    distance = distance_map(mask)
    rows, cols = np.nonzero(mask.values)
    grid_rows, grid_cols = np.indices(shape)
    reference = np.min([np.hypot(grid_rows - r, grid_cols - c) for r, c in zip(rows, cols, strict=True)], axis=0)
    np.testing.assert_allclose(distance.values, reference * 25.0 * metres_per_unit, rtol=1e-6)
    assert pyproj.CRS(distance.rio.crs) == pyproj.CRS(crs)


@pytest.mark.parametrize(("mask", "match"), [
    (np.zeros((5, 6), np.uint8), "no prior"),
    (np.full((5, 6), 2, np.uint8), "only 0"),
    (np.full((5, 6), np.nan), "only 0"),
])
def test_distance_map_refuses_masks_without_priors_or_of_other_values(mask, match):
    dem = utm_dem(np.zeros((5, 6)))
    with pytest.raises(InvalidInputError, match=match):
        distance_map(dem.copy(data=mask))


def test_distance_map_needs_a_crs_and_a_mask():
    dem = utm_dem(np.zeros((5, 6)))
    bare = dem.copy(data=np.ones((5, 6), np.uint8)).drop_vars("spatial_ref")
    bare.attrs.pop("grid_mapping", None)
    with pytest.raises(InvalidInputError, match="no CRS"):
        distance_map(bare)
    with pytest.raises(InvalidInputError, match="no 'prior_mask'"):
        distance_map(dem.to_dataset(name="height"))


# --------------------------------------------------------------------------------------
# interpolate_priors
# --------------------------------------------------------------------------------------


def _hull_mask(shape, rows, cols):
    """Cells inside the convex hull of the prior cells (Qhull's facets as the reference)."""
    hull = scipy.spatial.ConvexHull(np.column_stack((cols, rows)).astype(float))
    grid_rows, grid_cols = np.indices(shape)
    offsets = hull.equations[:, :2] @ np.vstack((grid_cols.ravel(), grid_rows.ravel())) + hull.equations[:, 2:]
    return (offsets <= 1e-9).all(axis=0).reshape(shape)


@pytest.mark.parametrize("geographic", [False, True])
def test_linear_is_exact_on_a_plane_inside_the_hull(geographic):
    if geographic:
        dem = plane_dem(45, 50, slope_east_deg=8.0, slope_north_deg=-5.0)
    else:
        x = np.arange(50) * 30.0
        y = np.arange(45) * 30.0
        dem = utm_dem(300.0 + 0.12 * x[np.newaxis, :] - 0.07 * y[:, np.newaxis])
    for pattern in PATTERNS:
        priors = sample_priors(dem, count=60, pattern=pattern, seed=5)
        result = interpolate_priors(priors, "linear")
        rows, cols = np.nonzero(priors["prior_mask"].values)
        inside = _hull_mask(dem.shape, rows, cols)
        assert result.attrs["method"] == "linear", result.attrs.get("note")
        np.testing.assert_allclose(result.values[inside], dem.values[inside], atol=2e-3)
        assert np.isfinite(result.values).all()


def test_linear_equals_scipys_linear_interpolator_inside_the_hull(tujunga):
    priors = sample_priors(tujunga, count=120, pattern="clusters", seed=3)
    result = interpolate_priors(priors, "linear")
    rows, cols = np.nonzero(priors["prior_mask"].values)
    points = np.column_stack((cols * 30.0, rows * 30.0))
    reference = LinearNDInterpolator(points, priors["prior_height"].values[rows, cols].astype(np.float64))
    grid_rows, grid_cols = np.indices(tujunga.shape)
    expected = reference(np.column_stack((grid_cols.ravel() * 30.0, grid_rows.ravel() * 30.0))).reshape(tujunga.shape)
    inside = np.isfinite(expected)
    assert inside.mean() > 0.1
    np.testing.assert_allclose(result.values[inside], expected[inside], atol=1e-3)
    outside = result.values[~inside]
    assert np.isfinite(outside).all()
    assert result.attrs["method"] == "linear" and result.attrs["requested_method"] == "linear"


@st.composite
def prior_grids(draw):
    rows, cols = draw(st.integers(2, 14)), draw(st.integers(2, 14))
    n = draw(st.integers(1, min(25, rows * cols)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    cells = rng.choice(rows * cols, n, replace=False)
    heights = np.full(rows * cols, np.nan, dtype=np.float32)
    heights[cells] = draw(st.lists(st.floats(-400.0, 8000.0, width=32), min_size=n, max_size=n))
    geographic = draw(st.booleans())
    transform = from_origin(10.0, 50.0, 0.0005, 0.0003) if geographic else from_origin(500_000.0, 5e6, 30.0, 20.0)
    crs = "EPSG:4326" if geographic else "EPSG:32632"
    array = open_dem((np.zeros((rows, cols), np.float32), transform, crs), vertical_datum="ellipsoid")
    return array.copy(data=heights.reshape(rows, cols))


@settings(max_examples=60, deadline=None)
@given(heights=prior_grids(), method=st.sampled_from(["linear", "idw", "nearest"]))
def test_interpolation_keeps_the_priors_fills_every_cell_and_stays_within_their_range(heights, method):
    result = interpolate_priors(heights, method)
    known = np.isfinite(heights.values)
    assert result.dtype == np.float32 and result.shape == heights.shape
    assert np.isfinite(result.values).all()
    np.testing.assert_array_equal(result.values[known], heights.values[known])
    assert result.values.min() >= heights.values[known].min()
    assert result.values.max() <= heights.values[known].max()


def test_collinear_priors_and_too_few_fall_back_to_idw():
    dem = utm_dem(np.zeros((30, 30)))
    along_a_beam = np.full((30, 30), np.nan, np.float32)
    along_a_beam[:, 7] = np.linspace(100.0, 300.0, 30)  # one altimeter beam, north-south
    diagonal = np.full((30, 30), np.nan, np.float32)
    diagonal[np.arange(30), np.arange(30)] = np.arange(30.0)
    two = np.full((30, 30), np.nan, np.float32)
    two[3, 4], two[20, 25] = 10.0, 20.0
    for heights, note in ((along_a_beam, "one line"), (diagonal, "one line"), (two, "three priors")):
        result = interpolate_priors(dem.copy(data=heights), "linear")
        assert result.attrs["method"] == "idw" and note in result.attrs["note"]
        assert np.isfinite(result.values).all()
        np.testing.assert_array_equal(result.values[np.isfinite(heights)], heights[np.isfinite(heights)])


def test_a_single_track_interpolates_without_holes(tujunga):
    """One beam cut from a track: its cells step sideways, so Qhull triangulates slivers."""
    priors = sample_priors(tujunga, count=150, pattern="tracks", seed=0)
    for method in ("linear", "idw", "nearest"):
        result = interpolate_priors(priors, method)
        assert np.isfinite(result.values).all(), method
        mask = priors["prior_mask"].values.astype(bool)
        np.testing.assert_array_equal(result.values[mask], priors["prior_height"].values[mask])


def test_idw_and_nearest_against_a_brute_force_reference():
    heights = np.full((12, 15), np.nan, np.float32)
    rng = np.random.default_rng(4)
    cells = rng.choice(heights.size, 10, replace=False)
    heights.ravel()[cells] = rng.uniform(0, 1000, 10)
    grid = utm_dem(np.zeros((12, 15)), cell=30.0).copy(data=heights)
    rows, cols = np.divmod(cells, 15)
    grid_rows, grid_cols = np.indices(heights.shape)
    d = np.stack([np.hypot((grid_rows - r) * 30.0, (grid_cols - c) * 30.0) for r, c in zip(rows, cols, strict=True)])
    values = heights.ravel()[cells].astype(np.float64)
    order = np.argsort(d, axis=0, kind="stable")
    ranked = np.take_along_axis(d, order, axis=0)
    # Cells where two priors are equally near have no one nearest, nor one set of 4 nearest.
    unique_nearest = ranked[0] < ranked[1]
    nearest = values[order[0]]
    result = interpolate_priors(grid, "nearest")
    np.testing.assert_allclose(result.values[unique_nearest], nearest[unique_nearest], rtol=1e-6)
    for k in (4, 10):
        with np.errstate(divide="ignore", invalid="ignore"):
            w = 1.0 / ranked[:k] ** 2
            idw = np.where(ranked[0] == 0, values[order[0]], (w * values[order[:k]]).sum(axis=0) / w.sum(axis=0))
        definite = ranked[k - 1] < ranked[k] if k < len(cells) else np.ones(heights.shape, bool)
        assert definite.mean() > 0.5
        result = interpolate_priors(grid, "idw", neighbours=k)
        np.testing.assert_allclose(result.values[definite], idw[definite], rtol=1e-6)
        assert result.attrs["neighbours"] == k and result.attrs["power"] == 2.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "kriging"}, "not one of"),
    ({"method": "idw", "power": 0}, "power"),
    ({"method": "idw", "neighbours": 0}, "neighbours"),
])
def test_interpolation_refuses_bad_keywords(kwargs, match):
    priors = sample_priors(rough_dem(1), count=10)
    with pytest.raises(InvalidInputError, match=match):
        interpolate_priors(priors, **kwargs)


def test_interpolation_refuses_no_prior_and_a_mask_that_disagrees():
    priors = sample_priors(rough_dem(1), count=10)
    with pytest.raises(InvalidInputError, match="no prior"):
        interpolate_priors(priors["prior_height"] * np.nan)
    edited = priors.copy(deep=True)
    edited["prior_mask"][0, 0] = 1 - edited["prior_mask"][0, 0]
    with pytest.raises(InvalidInputError, match="disagree"):
        interpolate_priors(edited)


# --------------------------------------------------------------------------------------
# Bad requests: clear errors before any work
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "exactly one of"),
    ({"fraction": 0.1, "count": 5}, "exactly one of"),
    ({"fraction": 0.0}, r"\(0, 1\]"),
    ({"fraction": 1.5}, r"\(0, 1\]"),
    ({"fraction": float("nan")}, r"\(0, 1\]"),
    ({"count": 0}, "at least 1"),
    ({"count": True}, "whole number"),
    ({"count": 2.5}, "whole number"),
    ({"count": 10**6}, "only 1296 cells"),
    ({"count": 5, "pattern": "grid"}, "not one of"),
    ({"count": 5, "noise_m": -1.0}, "noise_m"),
    ({"count": 5, "seed": -3}, "seed"),
    ({"count": 5, "crs": "EPSG:4326"}, "describe points="),
    ({"count": 5, "geoid_grid": TUJUNGA_GEOID}, "describe points="),
])
def test_bad_requests_are_refused(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        sample_priors(rough_dem(0), **kwargs)


def test_bad_points_are_refused_with_what_to_do(tmp_path, tujunga):
    lon, lat, height, _ = _points_on(TUJUNGA, 4, seed=0)
    with pytest.raises(MissingInputError, match="does not exist"):
        sample_priors(tujunga, points=tmp_path / "none.csv", crs="EPSG:4326")
    with pytest.raises(InvalidInputError, match="no known suffix"):
        sample_priors(tujunga, points=write_csv(tmp_path / "p.dat", lon, lat, height), crs="EPSG:4326")
    with pytest.raises(InvalidInputError, match="pass crs="):
        sample_priors(tujunga, points=write_csv(tmp_path / "p.csv", lon, lat, height))
    with pytest.raises(InvalidInputError, match="pattern="):
        sample_priors(tujunga, points=tmp_path / "p.csv", pattern="tracks", crs="EPSG:4326")
    with pytest.raises(InvalidInputError, match=r"no height column: expected one named height, h, z, elevation"):
        sample_priors(tujunga, points=write_csv(tmp_path / "q.csv", lon, lat, height, names=("lon", "lat", "alt")),
                      crs="EPSG:4326")
    with pytest.raises(InvalidInputError, match="several x"):
        sample_priors(tujunga, points=pd.DataFrame({"x": lon, "lon": lon, "y": lat, "h": height}), crs="EPSG:4326")
    table = pd.DataFrame({"x": lon, "y": lat, "h": height.astype(object)})
    table.loc[2, "h"] = "n/a"
    with pytest.raises(InvalidInputError, match=r"1 h values .* not finite numbers \(rows 2\)"):
        sample_priors(tujunga, points=table, crs="EPSG:4326")
    line = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}]}
    (tmp_path / "line.geojson").write_text(json.dumps(line))
    with pytest.raises(InvalidInputError, match=r"LineString.*Point"):
        sample_priors(tujunga, points=tmp_path / "line.geojson")
    (tmp_path / "broken.geojson").write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid GeoJSON"):
        sample_priors(tujunga, points=tmp_path / "broken.geojson")
    (tmp_path / "fake.gpkg").write_bytes(b"not a database at all" * 50)
    with pytest.raises(InvalidInputError, match="not a readable GeoPackage"):
        sample_priors(tujunga, points=tmp_path / "fake.gpkg")
    two = write_geopackage(tmp_path / "two.gpkg", lon, lat, height, tables=("campaign_a", "campaign_b"))
    with pytest.raises(InvalidInputError, match=r"2 feature tables.*layer="):
        sample_priors(tujunga, points=two)
    priors = sample_priors(tujunga, points=two, layer="campaign_b", vertical_datum="ellipsoid")
    assert priors.attrs["count"] == 3  # two of the four points share a cell
    undefined = write_geopackage(tmp_path / "undefined.gpkg", lon, lat, height, srs=(0, "NONE", 0))
    with pytest.raises(InvalidInputError, match="pass crs="):
        sample_priors(tujunga, points=undefined)


def test_one_specification_of_the_priors(tujunga, tmp_path):
    """PriorSpec is the one spelling: its fields are sample_priors' keywords, a kind gives
    the instrument's pattern, layout and errors, and every misuse is refused when made."""
    spec = PriorSpec(count=60, pattern="tracks", noise_m=0.2)
    xr.testing.assert_identical(sample_priors(tujunga, spec, seed=3),
                                sample_priors(tujunga, count=60, pattern="tracks", noise_m=0.2, seed=3))
    lidar = PriorSpec(count=400, kind="lidar")
    assert (lidar.pattern, lidar.track_layout, lidar.label) == ("tracks", "gedi", "lidar")
    xr.testing.assert_identical(sample_priors(tujunga, PriorSpec(count=400, kind="altimeter"), seed=21),
                                instrument_priors(tujunga, "altimeter", count=400, seed=21))
    drawn = lidar.with_errors_drawn(7)
    assert drawn.errors == draw_prior_errors("lidar", 7) and drawn.with_errors_drawn(8) is drawn
    assert PriorSpec(fraction=1e-3).label == "random"
    path = write_csv(tmp_path / "p.csv", *_points_on(TUJUNGA, 4, seed=0)[:3])
    points = PriorSpec(points=path, crs="EPSG:4326")
    assert (points.label, points.source) == ("points", "p.csv")
    for bad, words in (({}, "exactly one of"), ({"count": 5, "fraction": 0.1}, "exactly one of"),
                       ({"count": 5, "crs": "EPSG:4326"}, "crs describe points="),
                       ({"points": path, "kind": "gnss"}, "kind= describe priors drawn from a DEM"),
                       ({"count": 5, "kind": "sonar"}, "not one of 'altimeter'"),
                       ({"count": 5, "noise_m": -1}, "noise_m=-1"), ({"points": 3}, "must be a CSV")):
        with pytest.raises(InvalidInputError, match=words):
            PriorSpec(**bad)
    with pytest.raises(InvalidInputError, match="not both"):
        sample_priors(tujunga, spec, count=5)
    with pytest.raises(InvalidInputError, match="points_crs=, which is not a field of PriorSpec"):
        sample_priors(tujunga, points=path, points_crs="EPSG:4326")
    with pytest.raises(InvalidInputError, match="must be a PriorSpec"):
        sample_priors(tujunga, {"count": 5})


def test_bad_errors_are_refused(tmp_path, tujunga):
    lon, lat, height, _ = _points_on(TUJUNGA, 4, seed=0)
    path = write_csv(tmp_path / "p.csv", lon, lat, height)
    with pytest.raises(InvalidInputError,
                       match="errors= describe priors drawn from a DEM; given points= lie where they were measured"):
        sample_priors(tujunga, points=path, crs="EPSG:4326", errors=draw_prior_errors("gnss", 0))
    with pytest.raises(InvalidInputError, match="must be a PriorErrors"):
        sample_priors(tujunga, count=5, errors={"vertical_m": 1.0})
    with pytest.raises(InvalidInputError, match=r"'sonar' is not one of 'altimeter', 'lidar', 'gnss', 'exact'"):
        draw_prior_errors("sonar", 0)
    with pytest.raises(InvalidInputError, match="not one of"):
        instrument_priors(tujunga, "GEDI", count=5)
    with pytest.raises(InvalidInputError, match="seed"):
        draw_prior_errors("lidar", -1)
    with pytest.raises(InvalidInputError, match="track_layout='gedi' lays out pattern='tracks'"):
        sample_priors(tujunga, count=5, track_layout="gedi")
    with pytest.raises(InvalidInputError, match="not one of 'icesat2', 'gedi'"):
        sample_priors(tujunga, count=5, pattern="tracks", track_layout="gedi2")
    for kwargs, match in (({"vertical_m": -1.0}, "vertical_m=-1.0"), ({"footprint_m": math.inf}, "footprint_m"),
                          ({"slope_bias": 1.5}, "between 0 and 1"), ({"geolocation_m": True}, "geolocation_m")):
        with pytest.raises(InvalidInputError, match=match):
            PriorErrors("test", **kwargs)
    with pytest.raises(InvalidInputError, match="name the instrument"):
        PriorErrors("")
