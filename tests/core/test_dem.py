"""Tests of sarheight.dem: opening and validating DEMs, vertical datum, coordinates, slopes.

References: the real DEMs and the EGM96 grid in ../shared/data (see its README), pyproj for
map projections and for PROJ's own geoid interpolation, a numpy twin of geodetic -> ECEF,
and planes whose slope and aspect are known in closed form.
"""

import math
import warnings
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rasterio.transform import from_origin

from sarheight import dem as sdem
from sarheight import sample_data
from sarheight.errors import DatumError, InvalidInputError, MissingInputError, VerticalDatumWarning
from sarheight.kernels import WGS84_A, WGS84_E2, geodetic_to_ecef_grid
from sarheight.raster import metres_per_degree
from twins import geometry as reference_twins

WGS84_B = WGS84_A * math.sqrt(1.0 - WGS84_E2)

# (file, open_dem keywords, README height range (m), expected undulation range (m)).
# The undulation ranges are EGM96 over each DEM's footprint; the glaciers' datum is not
# documented, so they are opened as ellipsoidal (undulation 0).
SHARED_DEMS = [
    ("rome_cop30_egm96.tif", {}, (5, 115), (48.3, 48.9)),
    ("bigtujunga_srtm30_utm11.tif", {"vertical_datum": "egm96"}, (315, 2295), (-36, -32)),
    ("eastern_turkey_srtm3.tif", {"vertical_datum": "egm96"}, (1111, 3270), (28, 31)),
    ("chhota_shigri_94m.tif", {"vertical_datum": "ellipsoid"}, (3321, 6424), (0, 0)),
    ("columbia_100m.tif", {"vertical_datum": "ellipsoid"}, (-148, 3689), (0, 0)),
    ("south_glacier_20m.tif", {"vertical_datum": "ellipsoid"}, (1684, 3166), (0, 0)),
]


# --------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------


def write_geotiff(path, array, transform, crs, nodata=None):
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array)
    return path


def read_raw(path):
    """Heights as stored in the file, NaN where nodata."""
    with rasterio.open(path) as src:
        return src.read(1, masked=True).astype(np.float64).filled(np.nan)


def ecef_twin(lon_deg, lat_deg, height, a=WGS84_A, e2=WGS84_E2):
    """Numpy reference of geodetic (degrees, m) -> ECEF (m)."""
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    return reference_twins.geodetic_to_ecef(lon, lat, height, a, e2)


def plane_dem(p, q, *, dx=30.0, dy=30.0, shape=(20, 24), crs="EPSG:32633", south_up=False):
    """A DEM of the plane z = 500 + p * easting_offset + q * northing_offset (m)."""
    rows, cols = shape
    west, north = 400_000.0, 4_650_000.0
    x = west + dx * (np.arange(cols) + 0.5)
    y = north - dy * (np.arange(rows) + 0.5)
    z = 500.0 + p * (x - west)[np.newaxis, :] + q * (y - north)[:, np.newaxis]
    transform = from_origin(west, north, dx, dy)
    if south_up:
        z = z[::-1]
        transform = Affine(dx, 0.0, west, 0.0, dy, north - rows * dy)
    return z.astype(np.float32), transform, crs


def no_user_warnings(record):
    return [w for w in record if issubclass(w.category, UserWarning)]


@pytest.fixture
def dem_dir(shared_data):
    return shared_data / "dem"


@pytest.fixture
def egm96_gtx(shared_data):
    path = shared_data / "geoid" / "egm96_15.gtx"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


#: Real DEMs of the datum tests (the packaged crops) and the global EGM96 grid that ships
#: with sarheight, present on every clone.
ROME = sample_data.path("rome_cop30_egm96_crop.tif")
TUJUNGA = sample_data.path("bigtujunga_srtm30_utm11_crop.tif")
ROME_GEOID = TUJUNGA_GEOID = sdem.PACKAGED_EGM96


def skip_if_user_proj_has_geoid():
    user_dir = Path(pyproj.datadir.get_user_data_dir())
    if user_dir.is_dir() and any("egm" in p.name.lower() for p in user_dir.iterdir()):
        pytest.skip(f"a geoid grid is installed in PROJ's user directory {user_dir}")


# --------------------------------------------------------------------------------------
# open_dem on the real DEMs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs", "raw_range", "undulation_range"), SHARED_DEMS)
def test_every_shared_dem_opens(dem_dir, egm96_gtx, name, kwargs, raw_range, undulation_range):
    path = dem_dir / name
    kwargs = dict(kwargs)
    if kwargs.get("vertical_datum") != "ellipsoid":
        kwargs["geoid_grid"] = egm96_gtx
    dem = sdem.open_dem(path, **kwargs)

    with rasterio.open(path) as src:
        file_crs = pyproj.CRS.from_wkt(src.crs.to_wkt())
        file_transform = src.transform
        shape = src.shape
    raw = read_raw(path)

    assert dem.dims == ("y", "x")
    assert dem.shape == shape
    assert dem.dtype == np.float32
    horizontal = file_crs.sub_crs_list[0] if file_crs.is_compound else file_crs
    assert pyproj.CRS.from_user_input(dem.rio.crs) == horizontal
    assert dem.rio.transform().almost_equals(file_transform)
    np.testing.assert_allclose(
        dem.x.values, file_transform.c + file_transform.a * (np.arange(shape[1]) + 0.5)
    )
    assert np.array_equal(np.isnan(dem.values), np.isnan(raw))
    assert raw_range[0] - 1 <= np.nanmin(raw) and np.nanmax(raw) <= raw_range[1] + 1
    undulation = dem.values - raw
    assert undulation_range[0] - 0.01 <= np.nanmin(undulation)
    assert np.nanmax(undulation) <= undulation_range[1] + 0.01
    assert dem.attrs["vertical_datum"] == "ellipsoid"
    assert dem.attrs["units"] == "m"


def test_rome_datum_from_compound_crs_converted_with_gtx():
    path = ROME
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 9707  # WGS 84 + EGM96 height: the datum is in the CRS
    dem = sdem.open_dem(path, geoid_grid=ROME_GEOID)
    assert dem.attrs["source_vertical_datum"] == "egm96"
    assert dem.attrs["vertical_datum"] == "ellipsoid"
    assert dem.attrs["geoid_grid"] == str(ROME_GEOID)
    assert pyproj.CRS.from_user_input(dem.rio.crs).to_epsg() == 4326

    raw = read_raw(path)
    row = int(np.abs(dem.y.values - 41.99).argmin())
    col = int(np.abs(dem.x.values - 12.5).argmin())
    assert dem.values[row, col] - raw[row, col] == pytest.approx(48.6, abs=0.5)
    assert 53 <= np.nanmin(dem.values) and np.nanmax(dem.values) <= 165


def test_the_packaged_grid_gives_proj_s_heights(isolated_proj, tmp_path):
    """PROJ, given the same grid under its legacy name egm96_15.gtx, converts the heights
    as the packaged grid does: two independent interpolations of one grid."""
    with rasterio.open(sdem.PACKAGED_EGM96) as src:
        profile = {**src.profile, "driver": "GTX", "dtype": "float32"}
        for key in ("compress", "predictor", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        with rasterio.open(isolated_proj / "egm96_15.gtx", "w", **profile) as dst:
            dst.write((src.read(1) * src.scales[0]).astype(np.float32), 1)
    packaged = sdem.open_dem(ROME)
    assert packaged.attrs["geoid_grid"] == str(sdem.PACKAGED_EGM96)
    lon, lat = np.meshgrid(packaged.x.values, packaged.y.values)
    proj = pyproj.Transformer.from_crs("EPSG:4326+5773", "EPSG:4979", always_xy=True)
    _, _, through_proj = proj.transform(lon, lat, read_raw(ROME).astype(np.float64))
    np.testing.assert_allclose(packaged.values, through_proj, atol=1e-3)
    assert (packaged.values - read_raw(ROME)).mean() == pytest.approx(48.6, abs=0.5)


def test_geoid_heights_convert_offline_with_no_proj_grid(isolated_proj):
    """No PROJ grid, no network: EGM96 through the packaged grid; EGM2008 through it too,
    with a warning that says so and how to get EGM2008's own grid."""
    skip_if_user_proj_has_geoid()
    dem = sdem.open_dem(ROME)
    assert dem.attrs["source_vertical_datum"] == "egm96"
    with pytest.warns(VerticalDatumWarning, match=r"EGM2008.*EGM96's undulation.*us_nga_egm08_25\.tif"):
        egm2008 = sdem.open_dem(TUJUNGA, vertical_datum="egm2008")
    np.testing.assert_allclose(egm2008.values, sdem.open_dem(TUJUNGA, vertical_datum="egm96").values)
    assert egm2008.attrs["source_vertical_datum"] == "egm2008"


def test_a_keyword_overriding_the_crs_is_warned_naming_both():
    with pytest.warns(VerticalDatumWarning,
                      match=r"overrides the CRS of the DEM.*, which says its heights are on EGM96"):
        dem = sdem.open_dem(ROME, vertical_datum="ellipsoid")
    np.testing.assert_array_equal(dem.values, read_raw(ROME).astype(np.float32))


def test_bigtujunga_egm96_keyword_converts():
    path = TUJUNGA
    dem = sdem.open_dem(path, vertical_datum="egm96", geoid_grid=TUJUNGA_GEOID)
    undulation = dem.values - read_raw(path)
    # EGM96 in the San Gabriel Mountains is about -33 m.
    assert -36.5 < np.nanmin(undulation) and np.nanmax(undulation) < -31.0
    assert np.nanmax(undulation) - np.nanmin(undulation) < 2.0
    assert dem.attrs["source_vertical_datum"] == "egm96"
    assert dem.attrs["geoid_grid"] == str(TUJUNGA_GEOID)


def test_2d_crs_without_datum_warns_and_keeps_heights():
    path = TUJUNGA
    with pytest.warns(UserWarning, match="no vertical datum"):
        dem = sdem.open_dem(path)
    assert dem.attrs["source_vertical_datum"] == "unspecified (taken as ellipsoid)"
    assert dem.attrs["vertical_datum"] == "ellipsoid"
    assert dem.attrs["vertical_datum_assumed"] == 1
    assert "geoid_grid" not in dem.attrs
    np.testing.assert_array_equal(dem.values, read_raw(path).astype(np.float32))


def test_missing_datum_warning_is_shown_for_every_dem_and_points_at_the_caller(tmp_path):
    """Python shows a warning once per code location by default: this one must never go
    quiet, or the second DEM opened with a 2-D CRS would be silently 30-100 m off."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text(
        "import sys\n"
        "from sarheight.dem import open_dem\n"
        "for _ in range(3):\n"
        "    open_dem(sys.argv[1])\n"
    )
    done = subprocess.run([sys.executable, str(script), str(TUJUNGA)],
                          capture_output=True, text=True, check=True)
    warning_lines = [line for line in done.stderr.splitlines() if "VerticalDatumWarning" in line]
    assert len(warning_lines) == 3, done.stderr
    assert all(line.startswith(str(script)) for line in warning_lines), warning_lines


def test_geoid_grid_without_datum_is_refused():
    with pytest.raises(DatumError, match="vertical_datum='egm96'"):
        sdem.open_dem(TUJUNGA, geoid_grid=TUJUNGA_GEOID)


def test_ellipsoid_override_means_no_conversion_and_no_warning():
    # TUJUNGA's CRS says nothing of heights (ROME's compound CRS makes the keyword an
    # override, warned: test_a_keyword_overriding_the_crs_is_warned_naming_both).
    for path in (TUJUNGA,):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            dem = sdem.open_dem(path, vertical_datum="ellipsoid")
        assert no_user_warnings(record) == []
        np.testing.assert_array_equal(dem.values, read_raw(path).astype(np.float32))
        assert dem.attrs["source_vertical_datum"] == "ellipsoid"
        assert "geoid_grid" not in dem.attrs


def test_opened_dem_passes_through_without_reconversion():
    dem = sdem.open_dem(ROME, geoid_grid=ROME_GEOID)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = sdem.open_dem(dem)
    assert no_user_warnings(record) == []
    np.testing.assert_array_equal(again.values, dem.values)
    assert again.attrs["source_vertical_datum"] == "egm96"
    assert again.attrs["geoid_grid"] == str(ROME_GEOID)
    assert again.rio.crs == dem.rio.crs
    same = sdem.open_dem(dem, vertical_datum="ellipsoid")
    assert same.attrs["source_vertical_datum"] == "egm96"
    np.testing.assert_array_equal(same.values, dem.values)
    with pytest.raises(DatumError, match="already ellipsoidal"):
        sdem.open_dem(dem, vertical_datum="egm96", geoid_grid=ROME_GEOID)


def test_a_dem_is_checked_once_and_what_is_derived_from_it_again(monkeypatch):
    heights = np.linspace(100.0, 900.0, 64 * 48, dtype=np.float32).reshape(64, 48)
    dem = sdem.checked_dem((heights, Affine(30.0, 0, 500_000.0, 0, -30.0, 4_000_000.0), "EPSG:32611"),
                           vertical_datum="ellipsoid")
    assert isinstance(dem, sdem.Dem) and dem.shape == (64, 48) and dem.grid.size_m == (30.0, 30.0)
    scans = []
    real = sdem.opening.validated_heights
    monkeypatch.setattr(sdem.opening, "validated_heights", lambda *a, **k: scans.append(1) or real(*a, **k))
    # A Dem passes through: the same heights without a copy, or a copy, and no scan.
    assert sdem.open_dem(dem, copy=False) is dem.heights and sdem.checked_dem(dem, copy=False) is dem
    again = sdem.checked_dem(dem)
    assert again is not dem and not np.shares_memory(again.heights.values, dem.heights.values)
    xr.testing.assert_identical(again.heights, dem.heights)
    assert sdem.open_dem(dem, vertical_datum="ellipsoid", copy=False) is dem.heights
    assert scans == []
    # Its heights as a DataArray, and anything derived from them, are a DEM like any: scanned,
    # and arithmetic that leaves the range is refused.
    for derived in (dem.heights, dem.heights + 1.0, dem.heights.isel(x=slice(0, 20))):
        sdem.open_dem(derived, copy=False)
    assert len(scans) == 3
    with pytest.raises(InvalidInputError, match="outside"):
        sdem.open_dem(dem.heights * 1e6)
    # Asking for work (a conversion, filled voids) is never skipped.
    with pytest.raises(DatumError, match="already ellipsoidal"):
        sdem.open_dem(dem, vertical_datum="egm96")
    assert sdem.checked_dem(dem, fill_voids=True) is not dem


# --------------------------------------------------------------------------------------
# open_dem on synthetic inputs
# --------------------------------------------------------------------------------------


def test_path_dataarray_and_tuple_sources_agree(tmp_path):
    z, transform, crs = plane_dem(0.1, -0.05)
    z[3, 4] = -32768
    path = write_geotiff(tmp_path / "dem.tif", z.astype(np.int16), transform, crs, nodata=-32768)
    kwargs = {"vertical_datum": "ellipsoid"}
    from_path = sdem.open_dem(path, **kwargs)
    from_tuple = sdem.open_dem(
        (np.where(z == -32768, np.nan, z.astype(np.int16)), transform, crs), **kwargs
    )
    as_dataarray = xr.DataArray(
        from_tuple.values, dims=("y", "x"), coords={"y": from_tuple.y, "x": from_tuple.x}
    ).rio.write_crs(crs)
    from_dataarray = sdem.open_dem(as_dataarray, **kwargs)
    for dem in (from_path, from_tuple, from_dataarray):
        assert dem.dtype == np.float32
        assert np.isnan(dem.values[3, 4])
        assert np.isnan(dem.values).sum() == 1
        assert dem.rio.transform().almost_equals(transform)
        np.testing.assert_array_equal(dem.values, from_path.values)


@pytest.mark.parametrize("shape", [(300, 280), (40, 30)])
def test_geodetic_coordinates_of_a_window_are_those_of_the_whole_grid(shape):
    """A projected DEM's longitude and latitude come from interpolation between nodes of
    the grid's own lattice: a window (a block of a block-wise run) gets exactly what the
    whole DEM gets for its cells, and both are within 1 mm of PROJ's transformation."""
    z, transform, crs = plane_dem(0.1, -0.05, shape=shape)
    dem = sdem.open_dem((z, transform, crs), vertical_datum="ellipsoid")
    lon, lat = sdem.geodetic_coordinates(dem)
    exact_lon, exact_lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        *np.meshgrid(dem["x"].values, dem["y"].values))
    metres = metres_per_degree(float(exact_lat.mean()))[0]  # the larger: latitude's
    assert np.abs(lat - exact_lat).max() * metres < 1e-3
    assert np.abs(lon - exact_lon).max() * metres < 1e-3
    for rows, cols in ((slice(7, None), slice(13, None)), (slice(0, 16), slice(None)), (slice(5, 9), slice(3, 20))):
        window_lon, window_lat = sdem.geodetic_coordinates(dem.isel(y=rows, x=cols))
        np.testing.assert_array_equal(window_lon, lon[rows, cols])
        np.testing.assert_array_equal(window_lat, lat[rows, cols])


def test_compound_crs_on_a_tuple_converts_and_keeps_horizontal_crs(egm96_gtx):
    z = np.full((4, 5), 100.0)
    transform = from_origin(12.45, 42.05, 0.01, 0.01)
    dem = sdem.open_dem((z, transform, "EPSG:4326+5773"), geoid_grid=egm96_gtx)
    assert pyproj.CRS.from_user_input(dem.rio.crs).to_epsg() == 4326
    assert dem.attrs["source_vertical_datum"] == "egm96"
    assert np.all(np.abs(dem.values - 148.6) < 0.6)


def test_egm2008_and_3d_crs_are_recognised(isolated_proj):
    skip_if_user_proj_has_geoid()
    z = np.full((3, 3), 10.0)
    transform = from_origin(12.0, 42.0, 0.01, 0.01)
    for crs in ("EPSG:9518", "EPSG:4326+3855"):
        with pytest.warns(VerticalDatumWarning, match="EGM2008"):
            assert sdem.open_dem((z, transform, crs)).attrs["source_vertical_datum"] == "egm2008"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dem = sdem.open_dem((z, transform, "EPSG:4979"))
    assert no_user_warnings(record) == []
    assert dem.attrs["source_vertical_datum"] == "ellipsoid"
    assert pyproj.CRS.from_user_input(dem.rio.crs).to_epsg() == 4326
    np.testing.assert_array_equal(dem.values, z)


def test_geoid_grid_longitudes_wrap_around(tmp_path, egm96_gtx):
    # The same EGM96 grid stored 0..360 (as some GTX files are) and cropped to a region.
    with rasterio.open(egm96_gtx) as src:
        grid = src.read(1)
        transform = src.transform
    half = grid.shape[1] // 2
    east_first = write_geotiff(
        tmp_path / "egm96_0_360.tif",
        np.roll(grid, -half, axis=1),
        Affine(transform.a, 0, transform.c + half * transform.a, 0, transform.e, transform.f),
        "EPSG:4326",
    )
    regional = write_geotiff(
        tmp_path / "egm96_italy.tif",
        grid[180:220, 760:800],
        transform @ Affine.translation(760, 180),
        "EPSG:4326",
    )
    z = np.zeros((6, 8))
    for west, north in [(12.45, 42.05), (-118.4, 34.4), (-0.02, 51.5), (179.98, -16.0)]:
        tile = (z, from_origin(west, north, 0.005, 0.005), "EPSG:4326")
        reference = sdem.open_dem(tile, vertical_datum="egm96", geoid_grid=egm96_gtx)
        wrapped = sdem.open_dem(tile, vertical_datum="egm96", geoid_grid=east_first)
        np.testing.assert_allclose(wrapped.values, reference.values, atol=1e-4)
        assert np.all(np.isfinite(reference.values))
    rome = (z, from_origin(12.45, 42.05, 0.005, 0.005), "EPSG:4326")
    np.testing.assert_allclose(
        sdem.open_dem(rome, vertical_datum="egm96", geoid_grid=regional).values,
        sdem.open_dem(rome, vertical_datum="egm96", geoid_grid=egm96_gtx).values,
        atol=1e-4,
    )
    with pytest.raises(DatumError, match="outside geoid grid"):
        sdem.open_dem(
            (z, from_origin(-118.4, 34.4, 0.005, 0.005), "EPSG:4326"),
            vertical_datum="egm96",
            geoid_grid=regional,
        )


def _no_crs_dataarray(tmp_path):
    return xr.DataArray(
        np.ones((4, 5)), dims=("y", "x"), coords={"y": np.arange(4.0)[::-1], "x": np.arange(5.0)}
    )


def _multiband_file(tmp_path):
    z, transform, crs = plane_dem(0.1, 0.1, shape=(5, 6))
    return write_geotiff(tmp_path / "two_bands.tif", np.stack([z, z]), transform, crs)


def _text_file(tmp_path):
    path = tmp_path / "not_a_raster.tif"
    path.write_text("this is not a GeoTIFF")
    return path


GRID = from_origin(400_000.0, 4_650_000.0, 30.0, 30.0)
BAD_INPUTS = [
    ("missing path", lambda t: t / "missing.tif", {}, MissingInputError, "does not exist"),
    (
        "missing geoid grid",
        lambda t: (np.ones((3, 3)), GRID, "EPSG:32633"),
        {"vertical_datum": "egm96", "geoid_grid": "/nonexistent/egm96_15.gtx"},
        MissingInputError,
        "does not exist",
    ),
    ("no CRS (DataArray)", _no_crs_dataarray, {}, InvalidInputError, "write_crs"),
    ("no CRS (tuple)", lambda t: (np.ones((3, 3)), GRID, None), {}, InvalidInputError, "no CRS"),
    (
        "all NaN",
        lambda t: (np.full((3, 3), np.nan), GRID, "EPSG:32633"),
        {},
        InvalidInputError,
        "no valid height",
    ),
    ("3-D array", lambda t: (np.ones((2, 3, 3)), GRID, "EPSG:32633"), {}, InvalidInputError, "2-D"),
    ("multi-band raster", _multiband_file, {}, InvalidInputError, "2 bands"),
    (
        "unknown vertical datum",
        lambda t: (np.ones((3, 3)), GRID, "EPSG:32633"),
        {"vertical_datum": "navd88"},
        InvalidInputError,
        "'egm96', 'egm2008', 'ellipsoid'",
    ),
    (
        "complex heights",
        lambda t: (np.ones((3, 3), np.complex64), GRID, "EPSG:32633"),
        {},
        InvalidInputError,
        "real numbers",
    ),
    (
        "string heights",
        lambda t: (np.full((3, 3), "1"), GRID, "EPSG:32633"),
        {},
        InvalidInputError,
        "real numbers",
    ),
    (
        "boolean heights",
        lambda t: (np.ones((3, 3), bool), GRID, "EPSG:32633"),
        {},
        InvalidInputError,
        "real numbers",
    ),
    (
        "undeclared nodata",
        lambda t: (np.array([[1, 2], [-32768, 4]], np.int16), GRID, "EPSG:32633"),
        {},
        InvalidInputError,
        "nodata",
    ),
    (
        "infinite heights",
        lambda t: (np.array([[1.0, np.inf], [3.0, 4.0]]), GRID, "EPSG:32633"),
        {},
        InvalidInputError,
        "infinite",
    ),
    (
        "rotated grid",
        lambda t: (np.ones((3, 3)), GRID @ Affine.rotation(10), "EPSG:32633"),
        {},
        InvalidInputError,
        "rotated",
    ),
    ("not a raster", _text_file, {}, InvalidInputError, "not a raster sarheight reads"),
    ("not a DEM at all", lambda t: [[1.0, 2.0]], {}, InvalidInputError, "DataArray"),
    (
        "bad CRS",
        lambda t: (np.ones((3, 3)), GRID, "EPSG:999999"),
        {},
        InvalidInputError,
        "not a CRS",
    ),
]


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "match"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_refused_with_a_helpful_message(tmp_path, source, kwargs, error, match):
    with pytest.raises(error, match=match):
        sdem.open_dem(source(tmp_path), **kwargs)


def test_errors_are_also_builtin_exceptions(tmp_path):
    with pytest.raises(FileNotFoundError):
        sdem.open_dem(tmp_path / "missing.tif")
    with pytest.raises(ValueError, match="vertical_datum='geoid' is not understood"):
        sdem.open_dem((np.ones((3, 3)), GRID, "EPSG:32633"), vertical_datum="geoid")


def test_fill_voids_only_when_asked(tmp_path):
    z, transform, crs = plane_dem(0.2, 0.1)
    z[8:11, 9:12] = np.nan
    path = write_geotiff(tmp_path / "holes.tif", z, transform, crs, nodata=np.nan)

    kept = sdem.open_dem(path, vertical_datum="ellipsoid")
    assert np.isnan(kept.values[8:11, 9:12]).all()
    assert np.isnan(kept.values).sum() == 9

    filled = sdem.open_dem(path, vertical_datum="ellipsoid", fill_voids=True)
    assert np.isfinite(filled.values).all()
    ring = z[7:12, 8:13]
    hole = filled.values[8:11, 9:12]
    assert np.nanmin(ring) <= hole.min() and hole.max() <= np.nanmax(ring)
    valid = np.isfinite(z)
    np.testing.assert_array_equal(filled.values[valid], z[valid])


# --------------------------------------------------------------------------------------
# coordinates
# --------------------------------------------------------------------------------------


def test_geodetic_coordinates_of_a_geographic_dem_are_zero_stride_views(dem_dir):
    dem = sdem.open_dem(dem_dir / "eastern_turkey_srtm3.tif", vertical_datum="ellipsoid")
    lon, lat = sdem.geodetic_coordinates(dem)
    assert lon.shape == lat.shape == dem.shape
    assert lon.dtype == lat.dtype == np.float64
    assert lon.strides[0] == 0 and lat.strides[1] == 0
    np.testing.assert_array_equal(lon[0], dem.x.values)
    np.testing.assert_array_equal(lon[-1], dem.x.values)
    np.testing.assert_array_equal(lat[:, 0], dem.y.values)
    np.testing.assert_array_equal(lat[:, -1], dem.y.values)


@pytest.mark.parametrize("name", ["bigtujunga_srtm30_utm11.tif", "columbia_100m.tif"])
def test_geodetic_coordinates_of_a_projected_dem_match_pyproj(dem_dir, name):
    dem = sdem.open_dem(dem_dir / name, vertical_datum="ellipsoid")
    lon, lat = sdem.geodetic_coordinates(dem)
    assert lon.shape == dem.shape and lon.flags.c_contiguous
    to_lonlat = pyproj.Transformer.from_crs(dem.rio.crs, "EPSG:4326", always_xy=True)
    for row, col in [(0, 0), (0, -1), (dem.shape[0] // 2, dem.shape[1] // 3), (-1, -1)]:
        expected = to_lonlat.transform(float(dem.x[col]), float(dem.y[row]))
        assert (lon[row, col], lat[row, col]) == pytest.approx(expected, abs=1e-9)


def test_geodetic_coordinates_refuses_coordinates_off_the_transform():
    z, transform, crs = plane_dem(0.0, 0.0, shape=(4, 5))
    dem = sdem.open_dem((z, transform, crs), vertical_datum="ellipsoid")
    bent = dem.assign_coords(x=dem.x.values + np.array([0.0, 0.0, 7.0, 0.0, 0.0]))
    with pytest.raises(InvalidInputError, match="cell centres"):
        sdem.geodetic_coordinates(bent)


def test_ecef_coordinates_match_numpy_twin(dem_dir):
    dem = sdem.open_dem(dem_dir / "bigtujunga_srtm30_utm11.tif", vertical_datum="ellipsoid")
    ecef = sdem.ecef_coordinates(dem)
    assert ecef.dims == ("y", "x", "xyz") and ecef.dtype == np.float64
    assert list(ecef.xyz.values) == ["x", "y", "z"]
    lon, lat = sdem.geodetic_coordinates(dem)
    np.testing.assert_allclose(ecef.values, ecef_twin(lon, lat, dem.values), rtol=0, atol=1e-6)
    # Every point lies within a few km of the ellipsoid surface.
    radius = np.linalg.norm(ecef.values, axis=-1)
    assert np.all((radius > WGS84_B - 1e3) & (radius < WGS84_A + 1e4))


def test_ecef_coordinates_of_a_geographic_dem_and_nan(dem_dir, egm96_gtx):
    dem = sdem.open_dem(dem_dir / "rome_cop30_egm96.tif", geoid_grid=egm96_gtx)
    dem[5, 7] = np.nan
    ecef = sdem.ecef_coordinates(dem)
    lon, lat = sdem.geodetic_coordinates(dem)
    np.testing.assert_allclose(ecef.values, ecef_twin(lon, lat, dem.values), rtol=0, atol=1e-6)
    assert np.isnan(ecef.values[5, 7]).all()
    assert np.isfinite(ecef.values).sum() == 3 * (dem.size - 1)


def test_ecef_analytic_points():
    # A 3 x 3 DEM whose centre cell is at lon 0, lat 0, height 0.
    z = np.zeros((3, 3))
    ecef = sdem.ecef_coordinates((z, from_origin(-1.5, 1.5, 1.0, 1.0), "EPSG:4979"))
    np.testing.assert_allclose(ecef.values[1, 1], [WGS84_A, 0.0, 0.0], atol=1e-6)

    lon = np.radians([[0.0, 90.0, 45.0]])
    lat = np.radians([[0.0, 0.0, 90.0]])
    height = np.array([[0.0, 100.0, 0.0]])
    out = geodetic_to_ecef_grid(lon, lat, height, WGS84_A, WGS84_E2)
    np.testing.assert_allclose(out[0, 0], [WGS84_A, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [0.0, WGS84_A + 100.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 2], [0.0, 0.0, WGS84_B], atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
    data=st.data(),
)
def test_geodetic_to_ecef_kernel_matches_numpy_twin(shape, data):
    def field(low, high):
        return data.draw(
            hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False))
        )

    lon = field(-180.0, 360.0)
    lat = field(-90.0, 90.0)
    height = field(-500.0, 9000.0)
    out = geodetic_to_ecef_grid(np.radians(lon), np.radians(lat), height, WGS84_A, WGS84_E2)
    np.testing.assert_allclose(out, ecef_twin(lon, lat, height), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------
# terrain attributes
# --------------------------------------------------------------------------------------


def _circular_difference(a, b):
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


@pytest.mark.parametrize(
    ("p", "q", "dx", "dy", "south_up"),
    [
        (-math.tan(math.radians(20)), 0.0, 30.0, 30.0, False),  # rises westward: faces east
        (-math.tan(math.radians(20)), 0.0, 30.0, 30.0, True),
        (0.0, 0.3, 30.0, 60.0, False),  # rises northward: faces south
        (0.15, 0.25, 20.0, 45.0, True),
        (0.2, -0.1, 90.0, 30.0, False),
    ],
)
def test_terrain_attributes_of_planes(p, q, dx, dy, south_up):
    z, transform, crs = plane_dem(p, q, dx=dx, dy=dy, south_up=south_up)
    dem = sdem.open_dem((z, transform, crs), vertical_datum="ellipsoid")
    attributes = sdem.terrain_attributes(dem)
    slope, aspect = attributes["slope"].values, attributes["aspect"].values
    assert slope.dtype == aspect.dtype == np.float32
    assert attributes["slope"].dims == ("y", "x")
    expected_slope = math.degrees(math.atan(math.hypot(p, q)))
    # Downslope direction: east component -p, north component -q, azimuth from north.
    expected_aspect = math.degrees(math.atan2(-p, -q)) % 360.0
    interior = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(slope[interior], expected_slope, atol=1e-3)
    assert _circular_difference(aspect[interior], expected_aspect).max() < 1e-2
    # The border has no complete 3 x 3 window.
    for edge in (slope[0], slope[-1], slope[:, 0], slope[:, -1]):
        assert np.isnan(edge).all()
    assert attributes.rio.crs == dem.rio.crs


def test_twenty_degree_east_facing_plane():
    z, transform, crs = plane_dem(-math.tan(math.radians(20)), 0.0)
    attributes = sdem.terrain_attributes(
        sdem.open_dem((z, transform, crs), vertical_datum="ellipsoid")
    )
    assert np.nanmean(attributes["slope"].values) == pytest.approx(20.0, abs=1e-3)
    assert np.nanmean(attributes["aspect"].values) == pytest.approx(90.0, abs=1e-3)


def test_terrain_attributes_nan_policy_and_flat_aspect():
    z, transform, crs = plane_dem(-math.tan(math.radians(20)), 0.0, shape=(10, 12))
    z[4, 5] = np.nan
    attributes = sdem.terrain_attributes(
        sdem.open_dem((z, transform, crs), vertical_datum="ellipsoid")
    )
    slope = attributes["slope"].values
    assert np.isnan(slope[3:6, 4:7]).all()  # the void and every cell whose window touches it
    assert np.isfinite(slope[1:-1, 1:-1]).sum() == 8 * 10 - 9
    np.testing.assert_allclose(slope[7:-1, 1:-1], 20.0, atol=1e-3)

    flat = np.full((5, 6), 250.0, np.float32)
    attributes = sdem.terrain_attributes(
        sdem.open_dem((flat, transform, crs), vertical_datum="ellipsoid")
    )
    np.testing.assert_array_equal(attributes["slope"].values[1:-1, 1:-1], 0.0)
    assert np.isnan(attributes["aspect"].values).all()


def test_terrain_attributes_convert_feet_cells_to_metres():
    # California zone 5 in US survey feet; heights in metres.
    foot = 1200.0 / 3937.0
    dx_ft = 100.0
    p = -math.tan(math.radians(30))  # per metre east
    rows, cols = 6, 7
    x_m = dx_ft * foot * (np.arange(cols) + 0.5)
    z = np.tile(1000.0 + p * x_m, (rows, 1)).astype(np.float32)
    transform = from_origin(6_400_000.0, 1_900_000.0, dx_ft, dx_ft)
    dem = sdem.open_dem((z, transform, "EPSG:2229"), vertical_datum="ellipsoid")
    slope = sdem.terrain_attributes(dem)["slope"].values
    np.testing.assert_allclose(slope[1:-1, 1:-1], 30.0, atol=1e-3)


def test_terrain_attributes_of_bigtujunga(dem_dir):
    dem = sdem.open_dem(dem_dir / "bigtujunga_srtm30_utm11.tif", vertical_datum="ellipsoid")
    attributes = sdem.terrain_attributes(dem)
    slope = attributes["slope"].values[1:-1, 1:-1]
    aspect = attributes["aspect"].values[1:-1, 1:-1]
    assert np.isfinite(slope).all()
    assert slope.min() >= 0.0 and slope.max() < 90.0
    assert 15.0 < np.median(slope) < 45.0  # steep mountains
    finite_aspect = aspect[np.isfinite(aspect)]
    assert finite_aspect.size > 0.99 * aspect.size
    assert finite_aspect.min() >= 0.0 and finite_aspect.max() < 360.0


def test_terrain_attributes_refuse_geographic_dems(dem_dir):
    dem = sdem.open_dem(dem_dir / "eastern_turkey_srtm3.tif", vertical_datum="ellipsoid")
    with pytest.raises(InvalidInputError, match="estimate_utm_crs"):
        sdem.terrain_attributes(dem)


def test_geodetic_coordinates_of_a_sheared_strip_are_those_of_the_whole_grid():
    """The cells of a strip whose rows shift from column to column (a band of radar lines
    crossing the DEM at an angle, as block-wise runs cut them) get exactly the whole
    grid's longitude and latitude."""
    z, transform, crs = plane_dem(0.1, -0.05, shape=(300, 280))
    dem = sdem.open_dem((z, transform, crs), vertical_datum="ellipsoid")
    lon, lat = sdem.geodetic_coordinates(dem)
    columns = np.arange(280)
    rows = np.clip(40 + columns // 4 + np.arange(12)[:, None], 0, 299)  # 12 rows, sheared
    strip_lon, strip_lat = sdem.geodetic_at_rows(dem["x"].values, dem["y"].values, rows,
                                                 pyproj.CRS.from_user_input(crs))
    np.testing.assert_array_equal(strip_lon, lon[rows, columns])
    np.testing.assert_array_equal(strip_lat, lat[rows, columns])
    for row in (0, 57, 299):  # strips of one row, the grid's edges included
        single = np.full((1, 280), row)
        strip_lon, strip_lat = sdem.geodetic_at_rows(dem["x"].values, dem["y"].values, single,
                                                     pyproj.CRS.from_user_input(crs))
        np.testing.assert_array_equal(strip_lon, lon[single, columns])
        np.testing.assert_array_equal(strip_lat, lat[single, columns])


def test_heights_go_back_to_the_datum_they_came_in_and_read_back_the_same(tmp_path):
    """open_dem brings EGM96 heights to the ellipsoid; heights_in_datum takes them back with
    the same grid, and the file written with the compound CRS reads back as the same
    ellipsoidal heights."""
    import rasterio

    from sarheight.dem import crs_with_datum, heights_in_datum, open_dem, output_datum
    from sarheight.io import write_geotiff

    source = Path(__file__).resolve().parents[2] / "sarheight" / "sample_data" / "rome_cop30_egm96_crop.tif"
    dem = open_dem(source)
    assert output_datum(dem) == "egm96"
    with rasterio.open(source) as src:
        original = src.read(1).astype(np.float64)
    back = heights_in_datum(dem.rename("height"), "egm96")
    np.testing.assert_allclose(back.values, original, atol=1e-3)
    assert back.attrs["vertical_datum"] == "egm96" and back.attrs["geoid_grid"].endswith("egm96_15.tif")
    assert np.array_equal(heights_in_datum(dem, "ellipsoid").values, dem.values)
    path = write_geotiff(back.to_dataset().rio.write_crs(crs_with_datum(dem.rio.crs, "egm96").to_wkt()),
                         tmp_path / "back.tif")
    again = open_dem(path)
    assert again.attrs["source_vertical_datum"] == "egm96"
    np.testing.assert_allclose(again.values, dem.values, atol=1e-3)
    with pytest.raises(InvalidInputError, match="give one of ellipsoid, egm96, egm2008"):
        heights_in_datum(dem, "navd88")
