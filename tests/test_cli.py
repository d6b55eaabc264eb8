"""The ``sarheight`` command: help, version, geocode, simulate, reconstruct and its errors."""

import numpy as np
import pytest
import rasterio

from sarheight import __version__
from sarheight.cli import main
from sarheight.sample_data import jacksboro_dem


@pytest.fixture(scope="module")
def dem_tif(tmp_path_factory):
    """A 90 x 100-cell window of the real Jacksboro DEM as a GeoTIFF (heights declared ellipsoidal)."""
    path = tmp_path_factory.mktemp("cli") / "dem.tif"
    dem = jacksboro_dem().isel(y=slice(100, 190), x=slice(150, 250))
    dem.rio.to_raster(path)
    return path


def test_help_version_and_bare_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for command in ("demo", "geocode", "simulate", "reconstruct"):
        assert command in out
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_geocode_simulate_reconstruct_on_a_real_dem(dem_tif, tmp_path, capsys):
    common = ["--geometry", "synthetic", "--vertical-datum", "ellipsoid", "--incidence-near", "20",
              "--incidence-far", "45", "-q"]
    assert main(["geocode", str(dem_tif), "--out", str(tmp_path / "geo.tif"), *common]) == 0
    with rasterio.open(tmp_path / "geo.tif") as src:
        assert "slant_range" in src.descriptions
        slant_range = src.read(src.descriptions.index("slant_range") + 1)
    assert np.isfinite(slant_range).all() and 600e3 < slant_range.min() < slant_range.max() < 1000e3

    assert main(["simulate", str(dem_tif), "--out", str(tmp_path / "sim.tif"),
                 "--quicklook", str(tmp_path / "sim.png"), *common]) == 0
    with rasterio.open(tmp_path / "sim_masks.tif") as src:
        assert src.descriptions == ("layover", "shadow", "isce3_mask") and src.dtypes[0] == "uint8"
    assert (tmp_path / "sim.png").stat().st_size > 10_000

    # An observation geocoded to the DEM's grid: uniform sigma0 of 0.05.
    with rasterio.open(dem_tif) as src:
        profile = src.profile | {"dtype": "float32", "nodata": None, "count": 1}
    with rasterio.open(tmp_path / "sigma0.tif", "w", **profile) as dst:
        dst.write(np.full((profile["height"], profile["width"]), 0.05, dtype=np.float32), 1)
    assert main(["reconstruct", "--sar", str(tmp_path / "sigma0.tif"), "--dem", str(dem_tif),
                 "--out", str(tmp_path / "rec.tif"), "--quicklook", str(tmp_path / "rec.png"), *common]) == 0
    with rasterio.open(tmp_path / "rec.tif") as src:
        names = src.descriptions
        geocoded = src.read(names.index("geocoded") + 1)
    assert "backscatter" in names and "flattened" in names
    # Flat-terrain sigma0 comes back where the DEM is inside the image.
    assert np.nanmedian(geocoded) == pytest.approx(0.05, rel=0.05)
    assert capsys.readouterr().out == ""


def test_errors_are_one_clear_line_and_exit_status_2(dem_tif, tmp_path, capsys):
    assert main(["geocode", str(tmp_path / "absent.tif"), "--geometry", "synthetic", "--out",
                 str(tmp_path / "x.tif")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarheight geocode: error:") and "absent.tif" in err
    assert main(["reconstruct", "--sar", str(dem_tif), "--dem", str(dem_tif), "--out", str(tmp_path / "y.tif")]) == 2
    assert "needs --geometry" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()
