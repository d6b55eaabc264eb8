"""Tests of sarheight.geometry: orbits, image grids, radar geometries and backward geocoding.

References, none of them the code under test: the closed form of a straight orbit, numpy
twins of geodetic -> ECEF, and ESA's own solution in the real Sentinel-1 annotations of
../shared/data/s1 (orbit state vectors and geolocation grid tie points, each with its own
zero-Doppler time and slant-range time).
"""

import math
import re
import shutil
import warnings
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pyproj
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as PolygonPath
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

from sarheight import geometry as sgeometry
from sarheight.dem import geodetic_coordinates, open_dem
from sarheight.errors import (
    GeometryError,
    InvalidInputError,
    MissingInputError,
    ProductError,
    SarHeightError,
    UnsupportedProductError,
)
from sarheight.geometry import (
    ImageGrid,
    Orbit,
    RadarGeometry,
    backward_geocode,
    geocode_arrays,
)
from sarheight.kernels import WGS84_A, WGS84_E2
from sarheight.preprocess.sentinel1 import geolocation_grid

C = 299_792_458.0
GM = 3.986004418e14
EARTH_RADIUS = 6_371_000.0

# Every SAFE of ../shared/data/s1 (a test checks that none is missing from this table):
# key -> (directory, measurement, the DEM that overlaps it or None).
SAFES = {
    "san_gabriel_asc_slc": (
        "S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681.SAFE", "IW2/VV",
        "bigtujunga_srtm30_utm11.tif",
    ),
    "san_gabriel_desc_slc": (
        "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.SAFE", "IW2/VV",
        "bigtujunga_srtm30_utm11.tif",
    ),
    "rome_grd": (
        "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE", "IW/VV",
        "rome_cop30_egm96.tif",
    ),
    "rome_slc": (
        "S1A_IW_SLC__1SDV_20220104T170557_20220104T170624_041314_04E951_F1F1.SAFE", "IW/VV", None,
    ),
}


# --------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------


def ecef_twin(lon_deg, lat_deg, height, a=WGS84_A, e2=WGS84_E2):
    """Numpy reference of geodetic (degrees, m) -> ECEF (..., 3) (m)."""
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    height = np.asarray(height, dtype=np.float64)
    n = a / np.sqrt(1.0 - e2 * np.sin(lat) ** 2)
    return np.stack(
        np.broadcast_arrays(
            (n + height) * np.cos(lat) * np.cos(lon),
            (n + height) * np.cos(lat) * np.sin(lon),
            (n * (1.0 - e2) + height) * np.sin(lat),
        ),
        axis=-1,
    )


def local_frame(lon_deg, lat_deg):
    """Unit (east, north, up) vectors (ECEF) of the geodetic frame at a point."""
    lon, lat = math.radians(lon_deg), math.radians(lat_deg)
    east = np.array([-math.sin(lon), math.cos(lon), 0.0])
    north = np.array([-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)])
    up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    return east, north, up


def offset_lon_lat(lon_deg, lat_deg, east_m, north_m):
    """Longitude, latitude (degrees) of a point ``east_m``, ``north_m`` away on a sphere."""
    lat = lat_deg + np.degrees(np.asarray(north_m) / EARTH_RADIUS)
    lon = lon_deg + np.degrees(np.asarray(east_m) / (EARTH_RADIUS * math.cos(math.radians(lat_deg))))
    return lon, lat


def seconds(times, reference):
    return (np.asarray(times, "datetime64[ns]") - np.datetime64(reference, "ns")).astype(np.int64) / 1e9


def closed_form_straight(xyz, p0, v):
    """Zero-Doppler time (s) and slant range (m) of targets ``xyz`` under P(t) = p0 + v t."""
    d = xyz - p0
    t0 = d @ v / (v @ v)
    r = np.linalg.norm(np.cross(d, v), axis=-1) / np.linalg.norm(v)
    return t0, r


def geocode_points(geometry, lon_deg, lat_deg, height):
    """geocode_arrays on scattered points given in degrees (one row)."""
    lon = np.radians(np.atleast_1d(np.asarray(lon_deg, float)))[None, :]
    lat = np.radians(np.atleast_1d(np.asarray(lat_deg, float)))[None, :]
    h = np.broadcast_to(np.asarray(height, float), lon.shape)
    out = geocode_arrays(np.ascontiguousarray(lon), np.ascontiguousarray(lat), np.ascontiguousarray(h), geometry)
    return tuple(o[0] for o in out)


TIE_POINT_FIELDS = {
    "azimuthTime": "datetime64[ns]", "slantRangeTime": float, "line": np.int64, "pixel": np.int64,
    "latitude": float, "longitude": float, "height": float, "incidenceAngle": float,
}


def read_annotation_xml(path):
    """The few annotation values the tests need, read with ElementTree: independent of
    xarray-sentinel and of sarheight's reader."""
    (annotation,) = sorted((path / "annotation").glob("s1*.xml"))
    root = ET.parse(annotation).getroot()

    def column(xpath, dtype=float):
        return np.asarray([element.text for element in root.findall(xpath)], dtype=dtype)

    orbit = "generalAnnotation/orbitList/orbit/"
    point = "geolocationGrid/geolocationGridPointList/geolocationGridPoint/"
    return {
        "range_sampling_rate": float(root.findtext("generalAnnotation/productInformation/rangeSamplingRate")),
        "platform_heading": float(root.findtext("generalAnnotation/productInformation/platformHeading")),
        "azimuth_time_interval": float(root.findtext("imageAnnotation/imageInformation/azimuthTimeInterval")),
        "lines_per_burst": int(root.findtext("swathTiming/linesPerBurst")),
        "burst_times": column("swathTiming/burstList/burst/azimuthTime", "datetime64[ns]"),
        "orbit_times": column(orbit + "time", "datetime64[ns]"),
        "positions": np.stack([column(f"{orbit}position/{axis}") for axis in "xyz"], axis=1),
        "velocities": np.stack([column(f"{orbit}velocity/{axis}") for axis in "xyz"], axis=1),
        "tie_points": {key: column(point + key, dtype) for key, dtype in TIE_POINT_FIELDS.items()},
    }


@pytest.fixture(scope="module")
def s1(shared_data):
    """Loader of the real products, each read once per module: key -> dict."""
    cache = {}

    def load(key):
        if key not in cache:
            name, measurement, dem = SAFES[key]
            path = shared_data / "s1" / name
            if not path.is_dir():
                pytest.skip(f"{path} is absent")
            cache[key] = {
                "path": path,
                "measurement": measurement,
                "dem": dem,
                "geometry": RadarGeometry.from_sentinel1(path, measurement),
                "annotation": read_annotation_xml(path),
                "gcp": geolocation_grid(path, measurement),
            }
        return cache[key]

    return load


@pytest.fixture(scope="module")
def egm96(shared_data):
    path = shared_data / "geoid" / "egm96_15.gtx"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def synthetic(**overrides):
    kwargs = dict(
        center_lon=12.5, center_lat=41.9, heading_deg=192.0, incidence_near_deg=30.0,
        incidence_far_deg=45.0, line_spacing=14.0, sample_spacing=2.33,
    )
    kwargs.update(overrides)
    return RadarGeometry.synthetic(**kwargs)


def test_every_shared_safe_is_tested(shared_data):
    present = {p.name for p in (shared_data / "s1").glob("*.SAFE")}
    assert present == {name for name, _, _ in SAFES.values()}


# --------------------------------------------------------------------------------------
# straight orbit: backward_geocode against the closed form
# --------------------------------------------------------------------------------------

REFERENCE = np.datetime64("2024-05-01T12:00:00", "ns")


def straight_scene(lon0, lat0, heading_deg, altitude, across, along, shape, cell_deg, seed, look_side="right"):
    """A straight orbit, a DEM on EPSG:4326 ``across`` m to the look side of its track, and
    the ECEF of the DEM cells (numpy twin)."""
    rng = np.random.default_rng(seed)
    east, north, up = local_frame(lon0, lat0)
    heading = math.radians(heading_deg)
    forward = math.cos(heading) * north + math.sin(heading) * east
    right = np.cross(forward, up)
    sign = 1.0 if look_side == "right" else -1.0
    p0 = ecef_twin(lon0, lat0, altitude) + along * forward - sign * across * right
    v = math.sqrt(GM / np.linalg.norm(p0)) * forward
    rows, cols = shape
    west, top = lon0 - 0.5 * cols * cell_deg, lat0 + 0.5 * rows * cell_deg
    transform = Affine(cell_deg, 0.0, west, 0.0, -cell_deg, top)
    heights = rng.uniform(-100.0, 4000.0, shape).astype(np.float32)
    if heights.size > 2:
        heights[rng.random(shape) < 0.2] = np.nan
        heights.flat[rng.integers(heights.size)] = 1234.5  # at least one valid cell
    lon = west + cell_deg * (np.arange(cols) + 0.5)
    lat = top - cell_deg * (np.arange(rows) + 0.5)
    xyz = ecef_twin(lon[None, :], lat[:, None], heights)
    return p0, v, (heights, transform, "EPSG:4326"), xyz


def geometry_covering(p0, v, t, r, *, line_interval=0.01, range_spacing=5.0, look_side="right"):
    """A straight-orbit geometry whose image covers the targets of times ``t`` and ranges ``r``."""
    t_ok, r_ok = t[np.isfinite(t)], r[np.isfinite(r)]
    first = float(t_ok.min()) - 5 * line_interval
    lines = int((t_ok.max() - first) / line_interval) + 10
    first_range = float(r_ok.min()) - 5 * range_spacing
    samples = int((r_ok.max() - first_range) / range_spacing) + 10
    orbit = Orbit.straight(REFERENCE, p0, v, first - 60.0, first + lines * line_interval + 60.0)
    first_time = REFERENCE + np.int64(round(first * 1e9)) * np.timedelta64(1, "ns")
    grid = ImageGrid.slant_range_grid(first_time, line_interval, lines, samples, first_range, range_spacing)
    return RadarGeometry(orbit, grid, look_side), first_time, first_range


@settings(max_examples=25, deadline=None)
@given(
    lon0=st.floats(-179.0, 179.0),
    lat0=st.floats(-70.0, 70.0),
    heading_deg=st.floats(0.0, 360.0),
    altitude=st.floats(450e3, 850e3),
    across=st.floats(100e3, 300e3),
    along=st.floats(-40e3, 40e3),
    shape=st.sampled_from([(1, 1), (1, 6), (6, 1), (4, 5), (9, 7)]),
    cell_deg=st.floats(1e-4, 1e-2),
    seed=st.integers(0, 2**32 - 1),
    look_side=st.sampled_from(["right", "left"]),
)
def test_straight_orbit_matches_closed_form(lon0, lat0, heading_deg, altitude, across, along, shape, cell_deg,
                                            seed, look_side):
    p0, v, dem_tuple, xyz = straight_scene(
        lon0, lat0, heading_deg, altitude, across, along, shape, cell_deg, seed, look_side
    )
    t0, r = closed_form_straight(xyz, p0, v)
    geometry, first_time, first_range = geometry_covering(p0, v, t0, r, look_side=look_side)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dem = open_dem(dem_tuple, vertical_datum="ellipsoid")
        ds = backward_geocode(dem, geometry)

    assert ds.azimuth_time.dtype == np.dtype("datetime64[ns]")
    assert ds.azimuth_time.dims == ("y", "x") and ds.azimuth_time.shape == shape
    assert pyproj.CRS.from_user_input(ds.rio.crs).to_epsg() == 4326
    valid = np.isfinite(dem_tuple[0])
    t_got = seconds(ds.azimuth_time.values, REFERENCE)
    assert np.array_equal(np.isnat(ds.azimuth_time.values), ~valid)
    np.testing.assert_allclose(t_got[valid], t0[valid], rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.slant_range.values[valid], r[valid], rtol=0, atol=1e-3)
    # Inside the image by construction: line and sample follow from the closed form too.
    line = (t0 - seconds(first_time, REFERENCE)) / geometry.grid.line_interval
    sample = (r - first_range) / geometry.grid.range_spacing
    np.testing.assert_allclose(ds.line.values[valid], line[valid], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ds.sample.values[valid], sample[valid], rtol=0, atol=1e-5)
    assert np.isnan(ds.line.values[~valid]).all() and np.isnan(ds.slant_range.values[~valid]).all()


def test_straight_orbit_target_on_the_other_side_is_outside():
    p0, v, dem_tuple, xyz = straight_scene(12.5, 41.9, 192.0, 693e3, 200e3, 0.0, (3, 4), 1e-3, 1)
    t0, r = closed_form_straight(xyz, p0, v)
    right, _, _ = geometry_covering(p0, v, t0, r, look_side="right")
    left, _, _ = geometry_covering(p0, v, t0, r, look_side="left")
    dem = open_dem(dem_tuple, vertical_datum="ellipsoid")
    ds = backward_geocode(dem, right)
    assert np.isfinite(ds.line.values[np.isfinite(dem_tuple[0])]).all()
    # Same times and ranges, but a left-looking radar does not see the scene.
    ds_left = backward_geocode(dem, left, check_overlap=False)
    np.testing.assert_array_equal(ds_left.slant_range.values, ds.slant_range.values)
    assert np.isnan(ds_left.line.values).all() and np.isnan(ds_left.sample.values).all()


# --------------------------------------------------------------------------------------
# (line, sample) <-> (time, range)
# --------------------------------------------------------------------------------------


def _round_trip(geometry, seed=0, n=2000):
    rng = np.random.default_rng(seed)
    lines, samples = geometry.grid.shape
    line = rng.uniform(-0.5, lines - 0.5, n)
    sample = rng.uniform(-0.5, samples - 0.5, n)
    line[:4] = [0, 0, lines - 1, lines - 1]
    sample[:4] = [0, samples - 1, 0, samples - 1]
    time, slant_range = geometry.line_sample_to_time_range(line, sample)
    assert time.dtype == np.dtype("datetime64[ns]") and slant_range.shape == line.shape
    line_back, sample_back = geometry.time_range_to_line_sample(time, slant_range)
    np.testing.assert_allclose(line_back, line, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sample_back, sample, rtol=0, atol=1e-6)
    return line, sample, time, slant_range


@pytest.mark.parametrize("bistatic", [False, True])
def test_round_trip_synthetic(bistatic):
    geometry = synthetic()
    if bistatic:
        grid = geometry.grid
        reference_range = grid.range_sr0[0] + 0.5 * grid.samples * grid.range_spacing
        geometry = RadarGeometry(
            geometry.orbit, ImageGrid.slant_range_grid(
                grid.first_line_time, grid.line_interval, grid.lines, grid.samples, grid.range_sr0[0],
                grid.range_spacing, bistatic_reference_range=reference_range,
            ),
        )
    line, _, time, slant_range = _round_trip(geometry)
    delay = seconds(time, geometry.reference_time) - seconds(geometry.line_to_time(line), geometry.reference_time)
    expected = (slant_range - geometry.grid.bistatic_reference_range) / C if bistatic else 0.0
    np.testing.assert_allclose(delay, expected, rtol=0, atol=1.5e-9)


@pytest.mark.parametrize("key", list(SAFES))
def test_round_trip_real(s1, key):
    product = s1(key)
    geometry = product["geometry"]
    assert geometry.grid.bistatic_reference_range is not None
    line, _, time, slant_range = _round_trip(geometry, seed=list(SAFES).index(key))
    # The bistatic path: zero-Doppler time = line time + (r - r_ref) / c, up to ~0.5 ms.
    delay = seconds(time, geometry.reference_time) - seconds(geometry.line_to_time(line), geometry.reference_time)
    np.testing.assert_allclose(delay, (slant_range - geometry.grid.bistatic_reference_range) / C, rtol=0,
                               atol=1.5e-9)
    assert np.abs(delay).max() > 1e-5


def test_grd_tie_points_line_pixel_to_time_range(s1):
    """The inverse direction on ESA's tie points: (line, pixel) -> (zero-Doppler time, range)."""
    product = s1("rome_grd")
    geometry, gcp = product["geometry"], product["gcp"]
    time, slant_range = geometry.line_sample_to_time_range(gcp.line.values, gcp.pixel.values)
    dt = np.abs(seconds(time, gcp.azimuth_time.values[0]) - seconds(gcp.azimuth_time.values,
                                                                    gcp.azimuth_time.values[0]))
    dtau = np.abs(2 * slant_range / C - gcp.slant_range_time.values)
    rate = product["annotation"]["range_sampling_rate"]
    assert dt.max() < 0.05 * geometry.grid.line_interval, dt.max()
    assert dtau.max() < 0.05 / rate, dtau.max()


def test_crop_keeps_positions(s1):
    geometry = s1("rome_grd")["geometry"]
    l0, s0 = 1000, 2500
    cropped = RadarGeometry(geometry.orbit, geometry.grid.crop(l0, 3000, s0, 9000))
    assert cropped.grid.shape == (2000, 6500)
    line = np.array([0.0, 10.5, 1999.0])
    sample = np.array([0.0, 3000.25, 6499.0])
    t1, r1 = cropped.line_sample_to_time_range(line, sample)
    t2, r2 = geometry.line_sample_to_time_range(line + l0, sample + s0)
    assert np.abs((t1 - t2).astype(np.int64)).max() <= 1
    np.testing.assert_allclose(r1, r2, rtol=0, atol=1e-6)
    with pytest.raises(InvalidInputError, match="not inside"):
        geometry.grid.crop(0, geometry.grid.lines + 1, 0, 10)


# --------------------------------------------------------------------------------------
# Orbit
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(SAFES))
def test_orbit_fit_to_real_state_vectors(s1, key):
    annotation = s1(key)["annotation"]
    times, positions, velocities = (annotation[k] for k in ("orbit_times", "positions", "velocities"))
    assert times.size >= 10
    orbit = Orbit.from_state_vectors(times, positions, velocities)
    assert orbit.degree == 5
    assert orbit.fit_rms < 0.05
    position, velocity, acceleration = orbit.state(times)
    assert np.linalg.norm(position - positions, axis=1).max() < 0.05
    assert np.linalg.norm(velocity - velocities, axis=1).max() < 1e-3
    # Gravity dominates the (ECEF) acceleration: about GM / r^2 = 8.2 m/s^2.
    g = GM / np.linalg.norm(positions, axis=1) ** 2
    assert np.all(np.abs(np.linalg.norm(acceleration, axis=1) / g - 1.0) < 0.2)
    # The geometry read from the product uses the same fit.
    np.testing.assert_allclose(s1(key)["geometry"].orbit.coeffs, orbit.coeffs, rtol=1e-9, atol=1e-6)

    assert orbit.start_time == times[0] and orbit.stop_time == times[-1]
    assert orbit.covers(times[0], times[-1])
    assert not orbit.covers(times[0] - np.timedelta64(1, "s"), times[-1])
    orbit.state(times[[0, -1]])  # the span's ends are inside
    for outside in (times[0] - np.timedelta64(1, "ms"), times[-1] + np.timedelta64(1, "s")):
        with pytest.raises(GeometryError, match="outside the orbit's validity span"):
            orbit.state(np.asarray([outside]))
    with pytest.raises(GeometryError, match="outside the orbit's validity span"):
        orbit.state(orbit.t_max + 1e-3)


def test_orbit_from_state_vectors_of_a_straight_line_is_exact():
    t = np.arange(0, 60, 10.0)
    times = REFERENCE + (t * 1e9).astype(np.int64).astype("timedelta64[ns]")
    p0, v = np.array([7.0e6, 1.0e5, -2.0e5]), np.array([10.0, 7.5e3, 1.0])
    orbit = Orbit.from_state_vectors(times, p0 + t[:, None] * v, np.tile(v, (t.size, 1)), degree=3)
    assert orbit.fit_rms < 1e-6
    query = times[0] + np.array([12_300_000_000, 45_600_000_000]).astype("timedelta64[ns]")
    pos, vel, acc = orbit.state(query)
    np.testing.assert_allclose(pos, p0 + np.array([12.3, 45.6])[:, None] * v, rtol=0, atol=1e-5)
    np.testing.assert_allclose(vel, np.tile(v, (2, 1)), atol=1e-8)
    np.testing.assert_allclose(acc, 0.0, atol=1e-8)


@pytest.mark.parametrize(
    ("times", "positions", "match"),
    [
        (["2024-01-01T00:00:00"], [[7e6, 0, 0]], "at least two"),
        (["2024-01-01T00:00:10", "2024-01-01T00:00:00"], [[7e6, 0, 0], [7e6, 1, 0]], "increasing"),
        (["2024-01-01T00:00:00", "2024-01-01T00:00:10"], [[7e6, 0, 0]], "shape"),
        (["2024-01-01T00:00:00", "2024-01-01T00:00:10"], [[7e6, 0, 0], [np.nan, 0, 0]], "non-finite"),
        (["not a time", "2024-01-01T00:00:10"], [[7e6, 0, 0], [7e6, 1, 0]], "as times"),
    ],
)
def test_orbit_from_state_vectors_refuses_bad_input(times, positions, match):
    with pytest.raises(InvalidInputError, match=match):
        Orbit.from_state_vectors(times, positions)


# --------------------------------------------------------------------------------------
# RadarGeometry.synthetic
# --------------------------------------------------------------------------------------

SYNTHETIC_CASES = [
    dict(center_lon=12.5, center_lat=41.9, heading_deg=192.0, incidence_near_deg=30.0,
         incidence_far_deg=45.0, line_spacing=14.0, sample_spacing=2.33),
    dict(center_lon=-118.0, center_lat=34.3, heading_deg=348.0, incidence_near_deg=20.0,
         incidence_far_deg=46.0, line_spacing=20.0, sample_spacing=10.0, look_side="left"),
    dict(center_lon=100.0, center_lat=-75.0, heading_deg=10.0, incidence_near_deg=30.0,
         incidence_far_deg=35.0, line_spacing=5.0, sample_spacing=5.0, altitude=500e3),
    dict(center_lon=-60.0, center_lat=5.0, heading_deg=100.0, incidence_near_deg=40.0,
         incidence_far_deg=42.0, line_spacing=10.0, sample_spacing=3.0, azimuth_extent=5e3),
]


def _across_track_line(kwargs, distances):
    """Ground points (lon, lat, degrees) through the scene centre, ``distances`` (m) to the right."""
    heading = math.radians(kwargs["heading_deg"])
    return offset_lon_lat(kwargs["center_lon"], kwargs["center_lat"], distances * math.cos(heading),
                          -distances * math.sin(heading))


def _incidence_twin(geometry, lon, lat, height=0.0):
    """Ellipsoid incidence angle (degrees) of points under the geometry's straight orbit."""
    xyz = ecef_twin(lon, lat, height).reshape(-1, 3)
    p0, v = geometry.orbit.coeffs[0], geometry.orbit.coeffs[1]
    assert geometry.orbit.degree == 1 and geometry.orbit.t_center == 0.0 and geometry.orbit.t_scale == 1.0
    t0, r = closed_form_straight(xyz, p0, v)
    sensor = p0 + t0[:, None] * v
    normal = ecef_twin(lon, lat, 1.0, a=0.0, e2=0.0).reshape(-1, 3)
    return np.degrees(np.arccos(np.sum(normal * (sensor - xyz), axis=1) / r)), t0


@pytest.mark.parametrize("kwargs", SYNTHETIC_CASES, ids=lambda k: f"{k['center_lat']}N-{k['heading_deg']}deg")
def test_synthetic_geometry_matches_request(kwargs):
    geometry = RadarGeometry.synthetic(**kwargs)
    lines, samples = geometry.grid.shape
    sign = 1.0 if kwargs.get("look_side", "right") == "right" else -1.0

    # Near and far range: walk the ground line across the track through the centre.
    d = sign * np.linspace(-400e3, 400e3, 160_001)
    lon, lat = _across_track_line(kwargs, d)
    sample = geocode_points(geometry, lon, lat, 0.0)[3]
    inside = np.isfinite(sample)
    assert inside.any()
    order = np.argsort(sample[inside])
    d_edges = np.interp([0.0, samples - 1.0], sample[inside][order], d[inside][order])
    lon_e, lat_e = _across_track_line(kwargs, d_edges)
    incidence, _ = _incidence_twin(geometry, lon_e, lat_e)
    assert incidence[0] == pytest.approx(kwargs["incidence_near_deg"], abs=0.2)
    assert incidence[1] == pytest.approx(kwargs["incidence_far_deg"], abs=0.2)

    # The scene centre: mid image in azimuth, mid incidence in range (as documented).
    _, _, line_c, sample_c, incidence_c = geocode_points(geometry, kwargs["center_lon"], kwargs["center_lat"], 0.0)
    assert line_c[0] == pytest.approx(0.5 * (lines - 1), abs=1.0)
    assert 0 < sample_c[0] < samples - 1
    mid = 0.5 * (kwargs["incidence_near_deg"] + kwargs["incidence_far_deg"])
    assert _incidence_twin(geometry, kwargs["center_lon"], kwargs["center_lat"])[0][0] == pytest.approx(mid, abs=0.05)
    assert incidence_c[0] == pytest.approx(mid, abs=0.05)
    # Look side: the swath lies on the look side of the sensor's ground track.
    east, north, up = local_frame(kwargs["center_lon"], kwargs["center_lat"])
    heading = math.radians(kwargs["heading_deg"])
    forward = math.cos(heading) * north + math.sin(heading) * east
    right = np.cross(forward, up)
    centre = ecef_twin(kwargs["center_lon"], kwargs["center_lat"], 0.0)
    nadir_offset = (geometry.orbit.coeffs[0] - centre) @ right
    assert sign * nadir_offset < -100e3  # the sensor flies on the other side of the scene
    assert np.all(sign * (d[inside] - nadir_offset) > 0)

    # Heading: the velocity at the scene centre points along the requested heading ...
    v = geometry.orbit.coeffs[1]
    heading_at_centre = math.degrees(math.atan2(v @ east, v @ north)) % 360
    assert (heading_at_centre - kwargs["heading_deg"] + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-6)
    # ... and RadarGeometry.heading() is that velocity seen from the sub-satellite point.
    p = geometry.orbit.coeffs[0]
    nadir_lon = math.degrees(math.atan2(p[1], p[0]))
    nadir_lat = math.degrees(math.atan2(p[2], math.hypot(p[0], p[1])))
    e_n, n_n, _ = local_frame(nadir_lon, nadir_lat)
    heading_at_nadir = math.degrees(math.atan2(v @ e_n, v @ n_n)) % 360
    assert (geometry.heading() - heading_at_nadir + 180) % 360 - 180 == pytest.approx(0.0, abs=0.05)
    # Lines run along the heading: a point ahead of the centre comes later.
    ahead_lon, ahead_lat = offset_lon_lat(kwargs["center_lon"], kwargs["center_lat"],
                                          1e3 * math.sin(heading), 1e3 * math.cos(heading))
    line_ahead = geocode_points(geometry, ahead_lon, ahead_lat, 0.0)[2]
    assert line_ahead[0] > line_c[0] + 1.0


@pytest.mark.parametrize("kwargs", [SYNTHETIC_CASES[0], SYNTHETIC_CASES[3]], ids=["rome", "short"])
def test_synthetic_line_spacing_is_on_the_ground(kwargs):
    geometry = RadarGeometry.synthetic(**kwargs)
    heading = math.radians(kwargs["heading_deg"])
    along = np.array([-1.0, 1.0]) * 0.5 * kwargs.get("azimuth_extent", 20e3)
    lon, lat = offset_lon_lat(kwargs["center_lon"], kwargs["center_lat"], along * math.sin(heading),
                              along * math.cos(heading))
    line = geocode_points(geometry, lon, lat, 0.0)[2]
    # Two ground points `along` metres apart on the track through the centre are
    # (difference / line_spacing) lines apart.
    assert line[1] - line[0] == pytest.approx((along[1] - along[0]) / kwargs["line_spacing"], rel=0.01)


def test_synthetic_look_sides_are_mirror_images():
    right = synthetic(look_side="right")
    left = synthetic(look_side="left")
    kwargs = dict(center_lon=12.5, center_lat=41.9, heading_deg=192.0)
    d = np.linspace(-400e3, 400e3, 8001)
    lon, lat = _across_track_line(kwargs, d)
    sample_right = geocode_points(right, lon, lat, 0.0)[3]
    sample_left = geocode_points(left, lon, lat, 0.0)[3]
    seen_right, seen_left = d[np.isfinite(sample_right)], d[np.isfinite(sample_left)]
    assert seen_right.size and seen_left.size
    # The centre is seen by both; the swaths extend to opposite sides of it, by the same amount.
    assert seen_right.min() < 0 < seen_right.max() and seen_left.min() < 0 < seen_left.max()
    assert seen_right.min() == pytest.approx(-seen_left.max(), abs=2e3)
    assert seen_right.max() == pytest.approx(-seen_left.min(), abs=2e3)
    assert right.grid.shape == left.grid.shape
    # Right-looking: near range (small samples) lies left of the far range, and vice versa.
    ok_r, ok_l = np.isfinite(sample_right), np.isfinite(sample_left)
    assert np.all(np.diff(sample_right[ok_r]) > 0) and np.all(np.diff(sample_left[ok_l]) < 0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(incidence_near_deg=45.0, incidence_far_deg=30.0), "incidence"),
        (dict(line_spacing=0.0), "positive"),
        (dict(center_lat=90.0), "center_lat"),
        (dict(look_side="up"), "look_side"),
    ],
)
def test_synthetic_refuses_bad_parameters(overrides, match):
    with pytest.raises(InvalidInputError, match=match):
        synthetic(**overrides)


# --------------------------------------------------------------------------------------
# Real, independent check: ESA's geolocation grid
# --------------------------------------------------------------------------------------


def _debursted_lines(annotation, gcp_lines):
    """Line index on the continuous (debursted) SLC axis of annotated tie-point line numbers."""
    per_burst, starts = annotation["lines_per_burst"], annotation["burst_times"]
    dt = annotation["azimuth_time_interval"]
    burst = np.minimum(gcp_lines // per_burst, starts.size - 1)
    label = seconds(starts[burst], starts[0]) + (gcp_lines - burst * per_burst) * dt
    return label / dt


@pytest.mark.parametrize("key", list(SAFES))
def test_geolocation_grid_reads_every_tie_point(s1, key):
    product = s1(key)
    gcp, expected = product["gcp"], product["annotation"]["tie_points"]
    names = {"azimuthTime": "azimuth_time", "slantRangeTime": "slant_range_time", "incidenceAngle": "incidence_angle"}
    assert gcp.sizes["point"] == expected["line"].size > 50
    for key_xml, values in expected.items():
        got = gcp[names.get(key_xml, key_xml)].values
        assert got.dtype.kind == values.dtype.kind, key_xml
        np.testing.assert_array_equal(got, values, err_msg=key_xml)
    assert gcp.attrs["product"] == product["path"].name


@pytest.mark.parametrize("key", list(SAFES))
def test_geocoding_reproduces_annotated_geolocation_grid(s1, key):
    product = s1(key)
    geometry, gcp, annotation = product["geometry"], product["gcp"], product["annotation"]
    az, slant_range, line, sample, incidence = geocode_points(
        geometry, gcp.longitude.values, gcp.latitude.values, gcp.height.values
    )
    reference = gcp.azimuth_time.values[0]
    dt = np.abs(seconds(az, reference) - seconds(gcp.azimuth_time.values, reference))
    dtau = np.abs(2.0 * slant_range / C - gcp.slant_range_time.values)
    rate = annotation["range_sampling_rate"]
    if geometry.grid.projection == "ground_range":
        expected_line = gcp.line.values.astype(float)
    else:
        expected_line = _debursted_lines(annotation, gcp.line.values)
    dline = np.abs(line - expected_line)
    dpixel = np.abs(sample - gcp.pixel.values)
    dinc = np.abs(incidence - gcp.incidence_angle.values)
    report = (
        f"{key} ({gcp.sizes['point']} tie points): max |dt| = {dt.max() * 1e6:.3f} us "
        f"(half line {0.5e6 * geometry.grid.line_interval:.0f} us), max |d slant-range time| = "
        f"{dtau.max() * 1e9:.4f} ns = {dtau.max() * C / 2 * 1e3:.3f} mm (half sample {0.5e9 / rate:.2f} ns), "
        f"max |d line| = {np.nanmax(dline):.4f}, max |d pixel| = {np.nanmax(dpixel):.4f}, "
        f"max |d incidence| = {dinc.max():.4f} deg"
    )
    print(report)
    assert np.isfinite(dt).all() and np.isfinite(dtau).all(), report
    assert dt.max() < 0.5 * geometry.grid.line_interval, report
    assert dtau.max() < 0.5 / rate, report
    # Every tie point lies in the image (NaN would mean "outside"), at its annotated position.
    assert np.isfinite(line).all() and np.isfinite(sample).all(), report
    assert np.nanmax(dline) < 0.5 and np.nanmax(dpixel) < 0.5, report
    assert dinc.max() < 0.1, report


# --------------------------------------------------------------------------------------
# DEMs under real geometries
# --------------------------------------------------------------------------------------


def _footprint_reference(gcp, dem, margin_m=60.0, stride=2):
    """Which DEM cells (every ``stride``-th row and column) the annotation says are inside /
    outside the image by more than ``margin_m``, and the fraction inside.

    Independent of the geocoder: each tie point and each DEM cell is moved along the range
    direction to the ellipsoid point of the same slant range (height h shifts it by
    h / tan(incidence) towards the sensor), and cells are tested against the polygon of the
    tie grid's border there.
    """
    lines = np.unique(gcp.line.values).size
    pixels = np.unique(gcp.pixel.values).size
    grid = {k: gcp[k].values.reshape(lines, pixels) for k in ("longitude", "latitude", "height", "incidence_angle")}
    lat0 = math.radians(float(np.mean(grid["latitude"])))
    deg = math.radians(1.0) * EARTH_RADIUS
    east = np.gradient(grid["longitude"], axis=1) * deg * math.cos(lat0)
    north = np.gradient(grid["latitude"], axis=1) * deg
    norm = np.hypot(east, north)
    ue, un = east / norm, north / norm  # ground-range direction, away from the sensor

    def to_ellipsoid(lon, lat, height, ue, un, incidence):
        shift = height / np.tan(np.radians(incidence))
        return lon - shift * ue / (deg * math.cos(lat0)), lat - shift * un / deg

    glon, glat = to_ellipsoid(grid["longitude"], grid["latitude"], grid["height"], ue, un, grid["incidence_angle"])
    ring = np.concatenate([
        np.c_[glon[0], glat[0]], np.c_[glon[1:, -1], glat[1:, -1]],
        np.c_[glon[-1, -2::-1], glat[-1, -2::-1]], np.c_[glon[-2::-1, 0], glat[-2::-1, 0]],
    ])
    polygon = PolygonPath(ring)
    points = np.c_[grid["longitude"].ravel(), grid["latitude"].ravel()]
    fields = np.c_[ue.ravel(), un.ravel(), grid["incidence_angle"].ravel()]
    linear, nearest = LinearNDInterpolator(points, fields), NearestNDInterpolator(points, fields)
    lon, lat = (np.ravel(a[::stride, ::stride]) for a in np.broadcast_arrays(*geodetic_coordinates(dem)))
    heights = dem.values[::stride, ::stride]
    query = np.c_[lon, lat]
    values = linear(query)
    missing = np.isnan(values[:, 0])
    values[missing] = nearest(query[missing])
    clon, clat = to_ellipsoid(lon, lat, heights.ravel().astype(float), values[:, 0], values[:, 1], values[:, 2])
    offsets = [(0, 0), (margin_m, 0), (-margin_m, 0), (0, margin_m), (0, -margin_m)]
    inside = np.array([
        polygon.contains_points(np.c_[clon + dx / (deg * math.cos(lat0)), clat + dy / deg]) for dx, dy in offsets
    ])
    return inside.all(axis=0).reshape(heights.shape), (~inside.any(axis=0)).reshape(heights.shape), inside[0].mean()


@pytest.mark.parametrize(
    ("key", "min_fraction"),
    [("san_gabriel_asc_slc", 0.03), ("san_gabriel_desc_slc", 0.5), ("rome_grd", 0.99)],
)
def test_real_dem_under_real_geometry(s1, shared_data, egm96, key, min_fraction):
    product = s1(key)
    geometry, gcp = product["geometry"], product["gcp"]
    path = shared_data / "dem" / product["dem"]
    kwargs = {"vertical_datum": "egm96"} if "bigtujunga" in path.name else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dem = open_dem(path, geoid_grid=egm96, **kwargs)
        ds = backward_geocode(dem, geometry)

    assert ds.azimuth_time.dtype == np.dtype("datetime64[ns]")
    for name in ("azimuth_time", "slant_range", "line", "sample", "incidence_angle"):
        assert ds[name].dims == ("y", "x") and ds[name].shape == dem.shape
    assert ds.rio.crs == dem.rio.crs
    np.testing.assert_array_equal(ds.x.values, dem.x.values)
    np.testing.assert_array_equal(ds.y.values, dem.y.values)
    assert ds.attrs["vertical_datum"] == "ellipsoid"

    # Every cell has a zero-Doppler solution (the product's orbit spans the whole DEM).
    assert not np.isnat(ds.azimuth_time.values).any() and np.isfinite(ds.slant_range.values).all()
    inside = np.isfinite(ds.line.values)
    assert np.array_equal(inside, np.isfinite(ds.sample.values))
    fraction = inside.mean()
    lines, samples = geometry.grid.shape
    assert np.all((ds.line.values[inside] >= -0.5) & (ds.line.values[inside] <= lines - 0.5))
    assert np.all((ds.sample.values[inside] >= -0.5) & (ds.sample.values[inside] <= samples - 0.5))

    # NaN exactly where the (unclipped) position is outside the image.
    raw_line, raw_sample = geometry.time_range_to_line_sample(ds.azimuth_time.values, ds.slant_range.values)
    outside = (raw_line < -0.5) | (raw_line > lines - 0.5) | (raw_sample < -0.5) | (raw_sample > samples - 0.5)
    border = np.minimum.reduce([np.abs(raw_line + 0.5), np.abs(raw_line - lines + 0.5),
                                np.abs(raw_sample + 0.5), np.abs(raw_sample - samples + 0.5)]) < 1e-6
    assert np.array_equal(inside[~border], ~outside[~border])

    # Against ESA's footprint: no NaN deep inside it, nothing found deep outside it.
    deep_inside, deep_outside, predicted = _footprint_reference(gcp, dem, stride=2)
    inside = inside[::2, ::2]
    report = (
        f"{key}: {fraction:.4f} of the DEM inside (annotation footprint: {predicted:.4f}); of "
        f"{inside.size} cells checked, {int(deep_inside.sum())} deep inside and {int(deep_outside.sum())} "
        f"deep outside the footprint; {int((deep_inside & ~inside).sum())} NaN cells deep inside, "
        f"{int((deep_outside & inside).sum())} found cells deep outside"
    )
    print(report)
    assert fraction >= min_fraction, report
    assert abs(fraction - predicted) < 0.01, report
    assert not (deep_inside & ~inside).any(), report
    assert not (deep_outside & inside).any(), report


# --------------------------------------------------------------------------------------
# bad input: clear errors, raised before any work
# --------------------------------------------------------------------------------------


def _refuse(*args, **kwargs):
    pytest.fail("the work started before the input was refused")


@pytest.fixture
def no_geocoding(monkeypatch):
    """Make the geocoding engine fail loudly: input errors must come before it."""
    monkeypatch.setattr(sgeometry.geocoding, "geocode_arrays", _refuse)


@pytest.fixture
def no_orbit_fit(monkeypatch):
    """Make the orbit fit fail loudly: product errors must come before it."""
    monkeypatch.setattr(sgeometry.Orbit, "from_state_vectors", classmethod(_refuse))


def test_missing_product(tmp_path, no_orbit_fit):
    with pytest.raises(MissingInputError, match="does not exist") as info:
        RadarGeometry.from_sentinel1(tmp_path / "nope.SAFE")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, SarHeightError)


@pytest.mark.parametrize(
    ("key", "measurement", "match"),
    [
        ("rome_grd", "IW/HH", r"unknown measurement group 'IW/HH'.*\['IW/VV'\]"),
        ("san_gabriel_desc_slc", "EW1/VV", r"unknown measurement group 'EW1/VV'.*\['IW2/VV'\]"),
        ("san_gabriel_desc_slc", "IW3/VV", r"lacks .*iw3-slc-vv.*which its manifest lists for 'IW3/VV'"),
        ("san_gabriel_desc_slc", "VV", "not of the form SWATH/POL"),
    ],
)
def test_unknown_measurement_group(shared_data, no_orbit_fit, key, measurement, match):
    with pytest.raises(ProductError, match=match):
        RadarGeometry.from_sentinel1(shared_data / "s1" / SAFES[key][0], measurement)


@pytest.mark.parametrize(
    ("key", "measurement", "burst", "match"),
    [
        ("san_gabriel_desc_slc", "IW2/VV", 99, r"burst 99 does not exist: this sub-swath has 9 bursts"),
        ("san_gabriel_desc_slc", "IW2/VV/3", 4, "burst given twice"),
        ("rome_grd", "IW/VV", 1, "SLC products only"),
    ],
)
def test_burst_out_of_range(shared_data, no_orbit_fit, key, measurement, burst, match):
    with pytest.raises(ProductError, match=match):
        RadarGeometry.from_sentinel1(shared_data / "s1" / SAFES[key][0], measurement, burst=burst)


def test_burst_grid_reproduces_its_tie_points(s1):
    product = s1("san_gabriel_desc_slc")
    per_burst = product["annotation"]["lines_per_burst"]
    burst = 3
    geometry = RadarGeometry.from_sentinel1(product["path"], f"IW2/VV/{burst}")
    assert geometry.grid.lines == per_burst
    assert geometry.grid.first_line_time == product["annotation"]["burst_times"][burst]
    gcp = product["gcp"]
    mine = (gcp.line.values >= burst * per_burst) & (gcp.line.values < (burst + 1) * per_burst)
    assert mine.any()
    _, _, line, sample, _ = geocode_points(
        geometry, gcp.longitude.values[mine], gcp.latitude.values[mine], gcp.height.values[mine]
    )
    np.testing.assert_allclose(line, gcp.line.values[mine] - burst * per_burst, atol=0.5)
    np.testing.assert_allclose(sample, gcp.pixel.values[mine], atol=0.5)


def test_unsupported_product_type(shared_data, tmp_path, no_orbit_fit):
    source = shared_data / "s1" / SAFES["san_gabriel_desc_slc"][0]
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    manifest = copy / "manifest.safe"
    text = manifest.read_text()
    assert text.count("<s1sarl1:productType>SLC</s1sarl1:productType>") == 1
    manifest.write_text(text.replace("<s1sarl1:productType>SLC<", "<s1sarl1:productType>RAW<"))
    with pytest.raises(UnsupportedProductError, match="product type 'RAW' is not supported") as info:
        RadarGeometry.from_sentinel1(copy)
    assert isinstance(info.value, ProductError)


def test_zipped_product_gives_the_same_geometry(s1, tmp_path):
    product = s1("san_gabriel_desc_slc")
    source = product["path"]
    archive = tmp_path / source.name.replace(".SAFE", ".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(source.rglob("*")):
            zf.write(file, file.relative_to(source.parent))
    zipped = RadarGeometry.from_sentinel1(archive, product["measurement"])
    geometry = product["geometry"]
    for field in ("first_line_time", "line_interval", "lines", "samples", "range_spacing", "projection",
                  "bistatic_reference_range"):
        assert getattr(zipped.grid, field) == getattr(geometry.grid, field), field
    for field in ("range_times", "range_sr0", "range_coeffs"):
        np.testing.assert_array_equal(getattr(zipped.grid, field), getattr(geometry.grid, field))
    np.testing.assert_array_equal(zipped.orbit.coeffs, geometry.orbit.coeffs)
    assert zipped.to_attrs() == geometry.to_attrs()


ROME_TRANSFORM = Affine(1e-3, 0.0, 12.45, 0.0, -1e-3, 41.95)


@pytest.mark.parametrize(
    ("dem", "match"),
    [
        ((np.full((4, 4), 50.0, np.float32), ROME_TRANSFORM, None), "no CRS"),
        ((np.full((4, 4), np.nan, np.float32), ROME_TRANSFORM, "EPSG:4326"), "no valid height"),
        ((np.full((4, 4), 50.0, np.float32), ROME_TRANSFORM, "EPSG:4326", "extra"), "got 4 items"),
    ],
    ids=["no-crs", "all-nan", "bad-tuple"],
)
def test_bad_dem(no_geocoding, dem, match):
    geometry = synthetic()
    with pytest.raises(InvalidInputError, match=match):
        backward_geocode(dem, geometry)


def test_dem_without_crs_dataarray(no_geocoding):
    import xarray as xr

    dem = xr.DataArray(np.ones((4, 4)), dims=("y", "x"), coords={"y": np.arange(4.0), "x": np.arange(4.0)})
    with pytest.raises(InvalidInputError, match="no CRS"):
        backward_geocode(dem, synthetic())


def test_geometry_must_be_a_radar_geometry(no_geocoding):
    with pytest.raises(InvalidInputError, match="must be a RadarGeometry"):
        backward_geocode((np.ones((2, 2), np.float32), ROME_TRANSFORM, "EPSG:4326"), "S1A.SAFE")


def _far_dem(lon, lat):
    return open_dem(
        (np.full((20, 20), 50.0, np.float32), Affine(1e-3, 0.0, lon, 0.0, -1e-3, lat), "EPSG:4326"),
        vertical_datum="ellipsoid",
    )


def test_dem_outside_real_image(s1, shared_data, egm96, monkeypatch):
    grd, slc = s1("rome_grd")["geometry"], s1("rome_slc")["geometry"]
    dem = open_dem(shared_data / "dem" / "rome_cop30_egm96.tif", geoid_grid=egm96)
    monkeypatch.setattr(sgeometry.geocoding, "geocode_arrays", _refuse)
    with pytest.raises(GeometryError, match="do not overlap"):
        backward_geocode(_far_dem(151.2, -33.8), grd)  # Sydney under Rome
    # The Rome DEM under the Rome SLC, whose only sub-swath (IW1) misses the city.
    with pytest.raises(GeometryError, match=r"entirely outside the radar image.*the sub-swath"):
        backward_geocode(dem, slc)


@pytest.mark.parametrize(("lon", "lat", "match"), [
    (151.2, -33.8, "do not overlap"),  # Sydney: no zero-Doppler time in the orbit span
    (16.5, 41.9, "entirely outside the radar image"),  # 4 degrees east: far beyond far range
    (12.5, 42.5, "entirely outside the radar image"),  # 67 km north: beyond the last line
])
def test_dem_outside_synthetic_image(no_geocoding, lon, lat, match):
    with pytest.raises(GeometryError, match=match):
        backward_geocode(_far_dem(lon, lat), synthetic(azimuth_extent=50e3))


def test_orbit_not_covering_the_image():
    grid = ImageGrid.slant_range_grid("2024-01-01T00:00:00", 0.002, 1000, 100, 850e3, 2.33)
    orbit = Orbit.straight("2024-01-01T00:00:00", [7.0e6, 0.0, 0.0], [0.0, 0.0, 7.5e3], 0.0, 1.0)
    with pytest.raises(GeometryError, match=r"does not cover the image"):
        RadarGeometry(orbit, grid)
    # The same orbit with a long enough span is accepted.
    RadarGeometry(Orbit.straight("2024-01-01T00:00:00", [7.0e6, 0.0, 0.0], [0.0, 0.0, 7.5e3], 0.0, 2.0), grid)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Orbit.straight("2024-01-01", [7e6, 0, 0], [0, 0, 7.5e3], 1.0, 1.0), "span is empty"),
        (lambda: Orbit("2024-01-01", np.zeros((1, 3)), 0.0, 1.0, 0.0, 1.0), "degree >= 1"),
        (lambda: ImageGrid.slant_range_grid("2024-01-01", 0.0, 10, 10, 8e5, 2.3), "positive"),
        (lambda: ImageGrid.slant_range_grid("2024-01-01", 0.01, 0, 10, 8e5, 2.3), "positive"),
        (lambda: RadarGeometry(synthetic().orbit, synthetic().grid, look_side="up"), "look_side"),
    ],
)
def test_invalid_geometry_parts(build, match):
    with pytest.raises(InvalidInputError, match=match):
        build()


@pytest.mark.parametrize("key", list(SAFES))
def test_heading_matches_annotated_platform_heading(s1, key):
    product = s1(key)
    annotated = product["annotation"]["platform_heading"] % 360.0
    heading = product["geometry"].heading()
    assert (heading - annotated + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=0.1)
    ascending = product["gcp"].attrs["pass"].upper().startswith("ASC")
    assert (heading > 270.0) if ascending else (150.0 < heading < 210.0)


def test_to_attrs_is_flat(s1):
    attrs = s1("rome_grd")["geometry"].to_attrs()
    assert all(isinstance(v, (str, int, float, bool, np.integer, np.floating)) for v in attrs.values())
    assert attrs["look_side"] == "right" and attrs["range_projection"] == "ground_range"
    assert attrs["product_type"] == "GRD" and re.fullmatch(r"S1B_IW_GRDH_.*\.SAFE", attrs["product"])
    assert 193.0 < attrs["heading_deg"] < 195.0  # descending
