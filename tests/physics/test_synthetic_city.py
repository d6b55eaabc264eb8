"""The synthetic city: its layout, the radar's layover, shadow and double bounce on one
tall building, the optical sun shadows and seasons, and the per-city folder read back
through the Sentinel-2 reflectance path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rioxarray
import xarray as xr
from scipy import ndimage

from sarheight.city import (
    LAND_COVER,
    city_layout,
    simulate_city,
    sun_position,
    sun_shadow,
    write_city,
)
from sarheight.errors import InvalidInputError
from sarheight.preprocess.sentinel2 import S2_BANDS, reflectance

TOWER_M = 40.0
#: The tower's footprint on the 2.5 m grid (rows, cols): product cells 20..29.
FOOTPRINT = (slice(80, 120), slice(80, 120))


def one_tower(shape: tuple[int, int] = (48, 48)) -> xr.Dataset:
    """A layout with a single 100 m x 100 m, 40 m tall building on flat bare ground."""
    layout = city_layout(shape, seed=0)
    layout["terrain_height"][:] = 100.0
    layout["building_height"][:] = 0.0
    layout["building_id"][:] = 0
    layout["land_cover"][:] = LAND_COVER["bare"]
    layout["building_height"][FOOTPRINT] = TOWER_M
    layout["building_id"][FOOTPRINT] = 1
    layout["land_cover"][FOOTPRINT] = LAND_COVER["building"]
    return layout


@pytest.fixture(scope="module")
def tower_radar() -> dict[float, xr.Dataset]:
    """The tower in July, nearly without speckle, with and without double bounce."""
    layout = one_tower()
    return {strength: simulate_city(layout, months=(7,), looks=1e4, nesz_db=-30.0, double_bounce=strength)
            for strength in (10.0, 0.0)}


@pytest.fixture(scope="module")
def city() -> xr.Dataset:
    return simulate_city(city_layout((32, 32), seed=3), months=(1, 7), cloud_fraction=0.1, seed=5)


def test_layout_is_deterministic_per_seed_and_plausible():
    first, again, other = city_layout((64, 64), seed=7), city_layout((64, 64), seed=7), city_layout((64, 64), seed=8)
    xr.testing.assert_identical(first, again)
    assert not np.array_equal(first["building_height"].values, other["building_height"].values)
    assert first.rio.crs.to_epsg() == 32632
    assert first.sizes == {"y": 256, "x": 256} and first.attrs["cell_size_m"] == 2.5
    height, ident, cover = (first[name].values for name in ("building_height", "building_id", "land_cover"))
    assert np.array_equal(height > 0, ident > 0) and np.array_equal(height > 0, cover == LAND_COVER["building"])
    shares = {name: float(np.mean(cover == code)) for name, code in LAND_COVER.items()}
    assert 0.1 < shares["street"] < 0.4 and 0.1 < shares["building"] < 0.6 and shares["vegetation"] > 0.05
    assert 3.0 <= height[height > 0].min() and height.max() <= 90.0
    # Courtyards: some footprint encloses open ground.
    rings = [k for k in np.unique(ident[ident > 0])
             if ndimage.binary_fill_holes(ident == k).sum() > (ident == k).sum()]
    assert rings
    assert np.ptp(first["terrain_height"].values) < 20.0


def test_layout_refuses_a_bad_shape():
    with pytest.raises(InvalidInputError, match="shape"):
        city_layout((4, 64))


def test_tower_lays_over_toward_the_sensor_and_shadows_behind(tower_radar):
    radar = tower_radar[0.0]
    # Ascending, right-looking: the sensor is to the west; the footprint spans columns 20..29.
    assert radar.attrs["look_side"] == "right" and math.cos(math.radians(radar.attrs["heading_deg"])) > 0
    vv = radar["s1"].sel(polarisation="VV").isel(time=0).values[23:29]
    ground = np.median(vv[:, :8])
    incidence = math.radians(38.0)  # mid-swath of scene_geometry's 30..46 degrees
    tilt = math.radians(abs(radar.attrs["heading_deg"] - 360.0))  # ground range vs the x axis
    layover_cells = TOWER_M / math.tan(incidence) / math.cos(tilt) / 10.0
    near = vv[:, 20 - int(layover_cells):20]
    assert np.median(near) > ground + 4.0
    # Behind: shadow from the far edge of the footprint for about h tan(theta).
    behind = vv[:, 30:]
    shadow_cells = np.mean(np.argmax(behind > ground - 6.0, axis=1))
    expected = TOWER_M * math.tan(incidence) / math.cos(tilt) / 10.0
    assert abs(shadow_cells - expected) <= 1.5, (shadow_cells, expected)
    assert np.all(vv[:, 26:30] < ground - 10.0)  # the far part of the roof is hidden too


def test_descending_pass_sees_the_tower_from_the_east():
    layout = one_tower()
    first = simulate_city(layout, months=(7,), pass_direction="descending", looks=1e4, nesz_db=-30.0)
    xr.testing.assert_identical(first, simulate_city(layout, months=(7,), pass_direction="descending",
                                                     looks=1e4, nesz_db=-30.0))
    vv = first["s1"].sel(polarisation="VV").isel(time=0).values[23:29]
    ground = np.median(vv[:, :8])
    # Heading ~192 degrees, right-looking: the sensor is to the east, the layover too, the
    # shadow west of the footprint (columns 20..29).
    assert np.median(vv[:, 30:34]) > ground + 4.0
    assert np.all(vv[:, 18:22] < ground - 10.0)


def test_double_bounce_line_at_the_wall_foot(tower_radar):
    with_line = tower_radar[10.0]["s1"].sel(polarisation="VV").isel(time=0).values[23:29]
    without = tower_radar[0.0]["s1"].sel(polarisation="VV").isel(time=0).values[23:29]
    # The wall facing the radar is the western one; its foot lies in column 19.
    assert np.all(with_line[:, 19] > without[:, 19] + 6.0)
    assert np.all(with_line[:, 19] > with_line[:, 15:19].max(axis=1) + 3.0)
    assert np.all(without[:, 19] < np.median(without[:, 15:19], axis=1) + 3.0)
    # Elsewhere the two are the same.
    assert np.allclose(with_line[:, :14], without[:, :14], atol=0.1)


def test_sun_shadow_length_is_height_over_tan_elevation():
    surface = np.zeros((120, 60))
    surface[80:90, 20:40] = TOWER_M
    for elevation in (25.0, 45.0, 60.0):
        shadow = sun_shadow(surface, 2.5, azimuth_deg=180.0, elevation_deg=elevation)
        column = shadow[:80, 30]  # the sun in the south: the shadow falls north
        length = column[::-1].argmin() * 2.5
        assert abs(length - TOWER_M / math.tan(math.radians(elevation))) <= 2.5
        assert not shadow[90:, :].any() and not shadow[:, :15].any()


def test_sun_position_at_noon():
    azimuth, elevation = sun_position(6, 48.0, hour=12.0)
    assert azimuth == pytest.approx(180.0, abs=1.0) and elevation == pytest.approx(90 - 48 + 23.3, abs=1.0)
    assert sun_position(12, 48.0, hour=12.0)[1] == pytest.approx(90 - 48 - 23.3, abs=1.0)
    assert sun_position(6, 48.0)[0] < 180.0  # the morning overpass: the sun in the south-east


def test_optical_shadow_on_the_anti_sun_side():
    layout = one_tower()
    city = simulate_city(layout, months=(6,), looks=1e4)
    nir = city["s2"].sel(band="B8").isel(time=0).values
    assert city.attrs["latitude_deg"] == pytest.approx(47.8, abs=0.1)  # the default origin's, in UTM 32N
    azimuth, elevation = sun_position(6, city.attrs["latitude_deg"])
    assert 90.0 < azimuth < 180.0 and 40.0 < elevation < 70.0  # a June morning: the sun in the south-east
    # The shadow falls north-west: on the cells along the footprint's (rows, cols 20..29)
    # northern and western edges, not on its southern and eastern ones.
    north, south, west, east = nir[19, 21:29], nir[30, 21:29], nir[21:29, 19], nir[21:29, 30]
    assert np.all(north < 0.6 * south) and np.all(west < 0.6 * east)


def test_vegetation_greener_in_summer_and_clouds_coded(city):
    veg = city["land_cover"].values == LAND_COVER["vegetation"]
    clear = city["scl"].values != 9
    red, nir = city["s2"].sel(band="B4"), city["s2"].sel(band="B8")
    ndvi = ((nir - red) / (nir + red)).values
    winter, summer = ndvi[0][veg & clear[0]].mean(), ndvi[1][veg & clear[1]].mean()
    assert summer > winter + 0.2
    assert 0.05 < np.mean(~clear) < 0.2
    s1 = city["s1"]
    assert np.isfinite(s1.values).all() and (s1.sel(polarisation="VH") < s1.sel(polarisation="VV")).mean() > 0.9
    # Each month has its own speckle, also where nothing changes with the seasons.
    street = city["land_cover"].values == LAND_COVER["street"]
    vv = s1.sel(polarisation="VV").values
    assert np.abs(vv[0][street] - vv[1][street]).mean() > 0.5
    # VH: vegetation's volume scattering keeps more of the VV power than the buildings do
    # (the streets' VH is at the noise floor).
    ratio = s1.sel(polarisation="VH").values[1] - vv[1]
    buildings = city["land_cover"].values == LAND_COVER["building"]
    assert np.median(ratio[veg]) > np.median(ratio[buildings]) + 3.0


def test_write_city_round_trip(city, tmp_path):
    paths = write_city(city, tmp_path / "city")
    names = sorted(path.name for path in paths)
    assert names == ["height.tif", "s1_202301.tif", "s1_202307.tif", "s2_202301.tif", "s2_202307.tif",
                     "scl_202301.tif", "scl_202307.tif"]
    s2 = rioxarray.open_rasterio(tmp_path / "city" / "s2_202307.tif").load()
    assert s2.dtype == np.uint16 and s2.attrs["long_name"] == tuple(S2_BANDS)
    assert s2.rio.crs.to_epsg() == 32632 and s2.rio.resolution() == (10.0, -10.0)
    back = reflectance(s2)  # the offset from the file's own tags
    assert np.abs(back.values - city["s2"].isel(time=1).values).max() <= 0.5e-4 + 1e-6
    s1 = rioxarray.open_rasterio(tmp_path / "city" / "s1_202301.tif").load()
    assert s1.attrs["long_name"] == ("VV", "VH") and s1.dtype == np.float32
    np.testing.assert_allclose(s1.values, city["s1"].isel(time=0).values, rtol=0, atol=1e-5)
    height = rioxarray.open_rasterio(tmp_path / "city" / "height.tif", masked=True).load()
    assert np.isnan(height.rio.encoded_nodata)
    np.testing.assert_array_equal(height.values[0], city["height"].values)
    assert np.allclose(height.rio.transform(), s2.rio.transform())
