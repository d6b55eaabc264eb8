"""Valid inputs that look wrong are named in a warning (not refused); options a geometry would ignore are refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sarheight import sample_data
from sarheight.cli import main
from sarheight.dem import open_dem
from sarheight.errors import PlausibilityWarning
from sarheight.reconstruction import reconstruct
from sarheight.simulate import simulate_sar
from tests.support.scenes import rough_dem, synthetic_geometry


def _plausibility_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PlausibilityWarning)]


@pytest.fixture(scope="module")
def tujunga():
    return sample_data.bigtujunga_dem()


def test_heights_that_look_like_feet_or_kilometres_and_voids_are_named(tujunga):
    transform, crs = tujunga.rio.transform(), tujunga.rio.crs
    cases = {
        "metres": (tujunga.values, []),
        "feet": (tujunga.values * 3.28084, ["steeper than 60 degrees", "feet"]),
        "kilometres": (tujunga.values / 1000.0, ["if they are in kilometres, multiply them by 1000"]),
        "voids": (np.where(np.arange(240)[:, None] < 80, np.nan, tujunga.values), ["33 % of the DEM's cells have "
                                                                                   "no height", "fill_voids=True"]),
    }
    for name, (values, expected) in cases.items():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            open_dem((values.astype(np.float32), transform, crs), vertical_datum="ellipsoid")
        said = " ".join(_plausibility_warnings(record))
        assert all(text in said for text in expected) and (said == "") == (not expected), (name, said)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        holes = np.where(np.arange(240)[:, None] < 80, np.nan, tujunga.values).astype(np.float32)
        open_dem((holes, transform, crs), vertical_datum="ellipsoid", fill_voids=True)
    assert _plausibility_warnings(record) == []
    # A DEM opened once is passed through afterwards, silently.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        open_dem(tujunga)
    assert _plausibility_warnings(record) == []


def test_heights_declared_in_feet_are_named(tujunga, tmp_path):
    path = tmp_path / "feet.tif"
    dem = tujunga.copy()
    dem.attrs = {"units": "ft"}
    dem.rio.to_raster(path)
    with pytest.warns(PlausibilityWarning, match="heights are in ft, not metres"):
        open_dem(path, vertical_datum="ellipsoid")


def test_observations_that_look_wrong_are_named():
    dem = rough_dem(3, rows=24, cols=24, relief=300.0)
    geometry = synthetic_geometry(dem)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        reconstruct(dem, observation, geometry, progress=False)
    assert _plausibility_warnings(record) == []
    with pytest.warns(PlausibilityWarning, match="all zero where the DEM falls"):
        reconstruct(dem, observation * 0, geometry, progress=False)
    with pytest.warns(PlausibilityWarning, match=r"median intensity is \d+"):
        reconstruct(dem, observation * 1e5, geometry, chunks=12, progress=False)  # digital numbers
    sigma0 = dem.copy(data=np.full(dem.shape, 0.05, dtype=np.float32))
    with pytest.warns(PlausibilityWarning, match="given as dB .* is positive everywhere"):
        reconstruct(dem, sigma0, geometry, sar_db=True, progress=False)


def test_options_a_geometry_would_ignore_are_refused(tmp_path, capsys):
    dem = sample_data.path("bigtujunga_srtm30_utm11_crop.tif")
    common = ["--out", str(tmp_path / "g.tif"), "--vertical-datum", "ellipsoid", "-q"]
    assert main(["geocode", str(dem), "--geometry", "synthetic", "--measurement", "IW2/VV", *common]) == 2
    assert "with --geometry synthetic there is none" in capsys.readouterr().err
    assert main(["geocode", str(dem), "--geometry", "synthetic", "--burst", "3", *common]) == 2
    assert "leave them out" in capsys.readouterr().err
    assert main(["geocode", str(dem), "--geometry", str(tmp_path / "S1.SAFE"), "--heading", "192", *common]) == 2
    assert "--heading shape a synthetic geometry" in capsys.readouterr().err
    assert main(["reconstruct", "--sar", str(tmp_path / "S1.SAFE"), "--dem", str(dem), "--geometry", "synthetic",
                 *common]) == 2
    assert "brings its own geometry: leave --geometry out" in capsys.readouterr().err
    assert main(["geocode", str(dem), "--geometry", "synthetic", "--heading", "192", *common]) == 0
