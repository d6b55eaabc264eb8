"""The ``sarheight`` command: help, version, geocode, simulate, reconstruct and its errors."""

from pathlib import Path

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


def test_bad_paths_and_options_are_refused_before_any_work(dem_tif, tmp_path, capsys):
    common = ["--geometry", "synthetic", "--vertical-datum", "ellipsoid", "-q"]

    def error(argv):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err  # one line, no traceback
        return err

    folder = tmp_path / "existing"
    folder.mkdir()
    assert "is a folder" in error(["simulate", str(dem_tif), "--out", str(folder), *common])
    assert "is a file, not a folder" in error(["simulate", str(dem_tif), "--out", str(dem_tif / "x.tif"), *common])
    assert "is a file, not a folder" in error(["simulate", str(dem_tif), "--out", str(tmp_path / "s.tif"),
                                               "--quicklook", str(dem_tif / "q.png"), *common])
    assert "is a file" in error(["demo", "--out", str(dem_tif), "-q"])
    # A failing command leaves no folder it made for its outputs.
    assert "absent.tif" in error(["simulate", str(tmp_path / "absent.tif"), "--out",
                                  str(tmp_path / "new" / "deeper" / "s.tif"), *common])
    assert not (tmp_path / "new").exists()
    assert "no such GeoTIFF" in error(["reconstruct", "--sar", str(tmp_path / "nope.tif"), "--dem", str(dem_tif),
                                       "--out", str(tmp_path / "r.tif"), *common])
    assert "'Synthetic '" in error(["simulate", str(dem_tif), "--out", str(tmp_path / "s.tif"), "--geometry",
                                    "Synthetic ", "--vertical-datum", "ellipsoid"])
    assert "leave them out" in error(["reconstruct", "--sar", str(dem_tif), "--dem", str(dem_tif), "--out",
                                      str(tmp_path / "r.tif"), "--chunks", "40", *common])
    # Library messages name the command's options, not Python keyword arguments.
    err = error(["simulate", str(dem_tif), "--out", str(tmp_path / "s.tif"), "--geometry", "synthetic",
                 "--geoid-grid", str(tmp_path / "absent.gtx"), "--vertical-datum", "egm96"])
    assert "geoid_grid" not in err and "vertical_datum" not in err, err


def test_subcommand_help_describes_every_option(capsys):
    for command in ("simulate", "reconstruct"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        for option in ("--contribution", "--projection", "--geometry"):
            assert option in out
        assert "empirical sigma0 law" in out and "exact overlap" in out
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    assert "geocoded GeoTIFF" in capsys.readouterr().out



def test_warnings_are_one_line_in_the_command_s_words(tmp_path):
    import subprocess
    import sys

    # A DEM whose CRS says nothing of its vertical datum: taken as ellipsoidal, with a warning.
    dem = jacksboro_dem().isel(y=slice(100, 140), x=slice(150, 190))
    plain = dem.copy(data=dem.values)
    plain.attrs = {}
    plain.rio.write_crs("EPSG:4326", inplace=True).rio.to_raster(tmp_path / "plain.tif")
    done = subprocess.run([sys.executable, "-m", "sarheight.cli", "geocode", str(tmp_path / "plain.tif"),
                           "--geometry", "synthetic", "--out", str(tmp_path / "g.tif"), "-q"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("sarheight: warning:") and done.stderr.count("\n") == 1, done.stderr
    assert "vertical_datum=" not in done.stderr and "--vertical-datum" in done.stderr, done.stderr


def test_simulate_under_a_real_product_and_a_wrong_measurement(shared_data, tmp_path, capsys):
    """The geometry read from a Sentinel-1 SAFE on the command line (real annotation), and
    a swath/polarisation the product lacks refused in one line."""
    from sarheight.dem import open_dem
    from tests.support.scenes import SAFES

    safe = shared_data / "s1" / SAFES["descending"]
    source = shared_data / "dem" / "bigtujunga_srtm30_utm11.tif"
    geoid = shared_data / "geoid" / "egm96_15.gtx"
    for path in (safe, source, geoid):
        if not path.exists():
            pytest.skip(f"{path} is absent")
    crop = tmp_path / "bigtujunga_crop.tif"
    dem = open_dem(source, vertical_datum="egm96", geoid_grid=geoid)
    dem.isel(y=slice(250, 330), x=slice(1100, 1180)).rio.to_raster(crop)
    out = tmp_path / "sim.tif"
    assert main(["simulate", str(crop), "--geometry", str(safe), "--vertical-datum", "ellipsoid",
                 "--out", str(out), "-q"]) == 0
    with rasterio.open(out) as src:
        incidence = src.read(src.descriptions.index("incidence_angle") + 1)
    assert 25.0 < np.nanmedian(incidence) < 50.0
    assert main(["simulate", str(crop), "--geometry", str(safe), "--measurement", "IW9/VV",
                 "--vertical-datum", "ellipsoid", "--out", str(tmp_path / "other.tif"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarheight simulate: error:") and "IW9" in err and err.count("\n") == 1, err


def test_every_command_says_what_it_does_and_refuses_what_it_would_ignore(tmp_path, monkeypatch, capsys):
    """A newcomer's small surprises: each command's --help opens with what it does;
    validate and test say they score a checkpoint; --quick refuses the sizes it would
    ignore; copying a configuration twice names the file, not an --out never typed."""
    from sarheight.cli import main

    for command in ("compile", "configs", "benchmark"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        printed = capsys.readouterr().out
        assert printed.split("\n\n")[1].strip().endswith("."), printed
    assert main(["benchmark", "--quick", "--side", "300", "--repeats", "3"]) == 2
    assert "would ignore --side, --repeats: leave out --quick" in capsys.readouterr().err
    pytest.importorskip("lightning")
    for command, said in (("validate", "a checkpoint scored on the validation split"),
                          ("test", "a checkpoint scored on the test split")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert capsys.readouterr().out.startswith(f"sarheight {command}: {said}")
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "--copy", "terrain_refine"]) == 0
    assert main(["configs", "--copy", "terrain_refine"]) == 2
    err = capsys.readouterr().err
    assert "'terrain_refine.yaml' exists here (copied before?)" in err and "--out '" not in err


@pytest.mark.parametrize("variable, value, said", [
    ("NUMBA_NUM_THREADS", "0", "NUMBA_NUM_THREADS='0': Numba takes a whole number of threads of 1 or more"),
    ("NUMBA_DISABLE_JIT", "1", "NUMBA_DISABLE_JIT='1' would run the kernels as plain Python"),
    ("PROJ_DATA", "/nonexistent", "PROJ_DATA='/nonexistent' holds no proj.db"),
    ("JSONARGPARSE_DEBUG", "1", "JSONARGPARSE_DEBUG='1': jsonargparse reads true or false there"),
])
def test_an_environment_that_would_break_a_run_is_named_in_one_line(variable, value, said, tmp_path):
    """Environment variables that break Numba, PROJ or jsonargparse midway (a traceback, or
    'unexpected ... please report it'): named before any work, as a user meets them."""
    import os
    import subprocess
    import sys

    env = {**os.environ, variable: value}
    done = subprocess.run([sys.executable, "-m", "sarheight", "simulate", "dem.tif", "--geometry", "synthetic",
                           "--out", "out.tif"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr[-2000:]


def test_a_checkout_imported_without_its_kernels_is_named(monkeypatch, capsys):
    """``python -m sarheight`` in the root of a checkout never installed imports its
    ``sarheight/`` without ``sarheight.kernels`` (only the install maps ``kernels/`` there):
    named in one line before any work, not as an unexpected ImportError."""
    import importlib.util

    from sarheight.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "sarheight.kernels" else find_spec(name, *args))
    assert main(["configs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no kernels (sarheight.kernels)" in err and "pip install -e ." in err


def test_the_command_line_names_the_methods_of_the_refinement():
    from sarheight.cli.terrain_refine import METHODS as COMMAND_METHODS
    from sarheight.refinement import METHODS

    assert COMMAND_METHODS == METHODS


def test_a_two_band_dem_and_a_device_as_priors_are_named(tmp_path, capsys):
    """A DEM of two bands and --priors /dev/zero: one line each with the right cause (they
    gave 'unexpected ValueError' and 'no such file')."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from sarheight.cli import main

    with rasterio.open(tmp_path / "two.tif", "w", driver="GTiff", height=60, width=60, count=2, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(300000, 5000000, 30, 30)) as dst:
        dst.write(np.full((2, 60, 60), 500, dtype="float32"))
    (tmp_path / "sigma0.tif").write_bytes((tmp_path / "two.tif").read_bytes())
    common = ["terrain", "refine", "--sar", str(tmp_path / "sigma0.tif"), "--geometry", "synthetic", "--spacing", "10",
              "--method", "back-projection", "--out", str(tmp_path / "out.tif")]
    assert main([*common, "--dem", str(tmp_path / "two.tif")]) == 2
    assert "The DEM has 2 bands; a DEM has one" in capsys.readouterr().err
    if Path("/dev/zero").exists():
        assert main([*common, "--dem", str(tmp_path / "two.tif"), "--priors", "/dev/zero"]) == 2
        assert "--priors '/dev/zero': not a file (a folder or a device)" in capsys.readouterr().err
