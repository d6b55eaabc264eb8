"""Broken files and impossible requests end in one clear line, before the work, never a traceback."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import sarheight.cli.simulate
import sarheight.io
from sarheight import sample_data
from sarheight.cli import main
from sarheight.dem import PACKAGED_EGM96, open_dem
from sarheight.errors import InvalidInputError
from sarheight.geometry import RadarGeometry

SYNTHETIC = ["--geometry", "synthetic", "--vertical-datum", "ellipsoid", "-q"]


@pytest.fixture(scope="module")
def dem_tif(tmp_path_factory) -> Path:
    """A real DEM crop as an uncompressed GeoTIFF (so that cutting it loses pixels)."""
    path = tmp_path_factory.mktemp("errors") / "dem.tif"
    dem = sample_data.jacksboro_dem().isel(y=slice(100, 160), x=slice(150, 210))
    dem.rio.to_raster(path, tiled=False, compress=None)
    return path


def _truncated(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _one_line_error(capsys, argv: list[str], status: int = 2) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_truncated_and_empty_files_name_themselves(dem_tif, tmp_path, capsys):
    cut = _truncated(dem_tif, tmp_path / "cut.tif")
    with pytest.raises(InvalidInputError, match=r"DEM '.*cut.tif' cannot be read .*truncated or corrupt"):
        open_dem(cut, vertical_datum="ellipsoid")
    err = _one_line_error(capsys, ["simulate", str(cut), "--out", str(tmp_path / "s.tif"), *SYNTHETIC])
    assert "cut.tif" in err and "truncated" in err
    geoid = _truncated(PACKAGED_EGM96, tmp_path / "geoid.tif", 0.1)  # Rome lies at a quarter of its rows
    with pytest.raises(InvalidInputError, match=r"geoid grid '.*geoid.tif' .*truncated"):
        open_dem(sample_data.path("rome_cop30_egm96_crop.tif"), geoid_grid=geoid)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    for sar in (empty, cut):
        err = _one_line_error(capsys, ["reconstruct", "--sar", str(sar), "--dem", str(dem_tif), "--out",
                                       str(tmp_path / "r.tif"), *SYNTHETIC])
        assert sar.name in err and ("empty" in err or "truncated" in err), err
    assert not (tmp_path / "s.tif").exists() and not (tmp_path / "r.tif").exists()


def test_a_dem_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    """A small sparse file declaring 200000 x 200000 cells (75 GiB of int16), refused at once."""
    huge = tmp_path / "huge.tif"
    profile = {"driver": "GTiff", "width": 200_000, "height": 200_000, "count": 1, "dtype": "int16",
               "crs": "EPSG:4326", "transform": Affine(1e-4, 0, 10, 0, -1e-4, 45), "tiled": True,
               "SPARSE_OK": "TRUE", "BIGTIFF": "YES"}
    with rasterio.open(huge, "w", **profile):
        pass
    assert huge.stat().st_size < 2**24
    with pytest.raises(InvalidInputError, match=r"needs about \d+\.\d GiB of memory, more than .*crop it"):
        open_dem(huge, vertical_datum="ellipsoid")
    # Whatever the machine: 1 GiB available refuses a 50000 x 50000 DEM.
    monkeypatch.setattr(sarheight.io, "available_memory", lambda: 2**30)
    with rasterio.open(tmp_path / "large.tif", "w", **{**profile, "width": 50_000, "height": 50_000}):
        pass
    with pytest.raises(InvalidInputError, match="GiB of memory"):
        open_dem(tmp_path / "large.tif", vertical_datum="ellipsoid")


def test_a_radar_window_too_large_for_memory_is_refused_before_the_passes(dem_tif, tmp_path, capsys, monkeypatch):
    """Centimetre pixels under a 60 x 60-cell DEM: hundreds of GiB of radar window."""
    import sarheight.simulate.engine as simulation

    def no_work(*args, **kwargs):
        raise AssertionError("the masks were computed before the memory was checked")

    monkeypatch.setattr(simulation, "visibility_masks", no_work)
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", str(tmp_path / "s.tif"), "--line-spacing",
                                   "0.01", "--sample-spacing", "0.01", *SYNTHETIC])
    assert "GiB of memory" in err and "--chunks 256" in err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--sample-spacing", "inf", "--sample-spacing inf: must be a finite number"),
    ("--line-spacing", "nan", "--line-spacing nan: must be a finite number"),
    ("--heading", "nan", "--heading nan: must be a finite number"),
    ("--line-spacing", "0", "must be positive"),
])
def test_a_synthetic_geometry_needs_finite_numbers(dem_tif, tmp_path, capsys, option, value, message):
    err = _one_line_error(capsys, ["geocode", str(dem_tif), "--out", str(tmp_path / "g.tif"), option, value,
                                   *SYNTHETIC])
    assert message in err, err
    with pytest.raises(InvalidInputError):
        RadarGeometry.synthetic(center_lon=10, center_lat=45, heading_deg=0, incidence_near_deg=30,
                                incidence_far_deg=40, line_spacing=10, sample_spacing=float(value) or 0.0)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(dem_tif, tmp_path, capsys):
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", "", *SYNTHETIC])
    assert "empty" in err
    # /proc takes no new files, whoever runs the tests.
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", "/proc/sarheight-test.tif", *SYNTHETIC])
    assert "cannot be written" in err and "not writable" in err
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", str(tmp_path / "s.tif"), "--quicklook",
                                   "/proc/sarheight-test.png", *SYNTHETIC])
    assert "--quicklook" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_scheduler_is_refused_before_any_work(dem_tif, tmp_path, capsys):
    err = _one_line_error(capsys, ["reconstruct", "--sar", str(dem_tif), "--dem", str(dem_tif), "--out",
                                   str(tmp_path / "r.tif"), "--scheduler", "tcp://127.0.0.1:1"])
    assert "leave them out" in err  # a geocoded GeoTIFF is refused first
    from sarheight.reconstruction import reconstruct

    with pytest.raises(InvalidInputError, match="no dask scheduler answers there"):
        reconstruct(dem_tif, np.zeros((2, 2)), None, client="tcp://127.0.0.1:1")
    with pytest.raises(InvalidInputError, match="not a scheduler address"):
        reconstruct(dem_tif, np.zeros((2, 2)), None, client="my-cluster")


@pytest.mark.parametrize("greeting", [b"", b"SSH-2.0-OpenSSH_9.6\r\n"])
def test_a_server_that_is_not_a_dask_scheduler_is_named_at_once(greeting, monkeypatch):
    """A web server (silent until asked) or another protocol at the address: dask's client
    would wait for minutes or read the bytes as a huge frame."""
    import socket
    import threading

    import sarheight.distributed.workers as workers
    from sarheight.distributed import check_client

    monkeypatch.setattr(workers, "CONNECT_TIMEOUT", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(greeting)
                connection.settimeout(2.0)
                with contextlib.suppress(OSError):
                    connection.recv(1)
        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(InvalidInputError, match="a server answers there, but not a dask scheduler") as caught:
            check_client(address)
        thread.join(5.0)
    assert ("said nothing" in str(caught.value)) == (not greeting)


def test_a_db_image_given_as_linear_is_refused_before_the_simulation(tmp_path, monkeypatch):
    import sarheight.simulate.engine as simulation
    from sarheight.reconstruction import reconstruct

    dem = sample_data.rome_dem()
    db = dem.copy(data=np.full(dem.shape, -12.0, dtype=np.float32))
    west, south, east, north = dem.rio.bounds()
    geometry = RadarGeometry.synthetic(center_lon=(west + east) / 2, center_lat=(south + north) / 2,
                                       heading_deg=348, incidence_near_deg=30, incidence_far_deg=46,
                                       line_spacing=10, sample_spacing=10)

    def no_work(*args, **kwargs):
        raise AssertionError("the DEM was simulated before the observation was checked")

    monkeypatch.setattr(simulation, "cell_geometry", no_work)
    with pytest.raises(InvalidInputError, match="negative values: give linear power, or sar_db=True"):
        reconstruct(dem, db, geometry)


def test_an_unexpected_failure_is_one_line_unless_verbose(dem_tif, tmp_path, capsys, monkeypatch):
    import sarheight.geometry

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(sarheight.geometry, "backward_geocode", broken)
    err = _one_line_error(capsys, ["geocode", str(dem_tif), "--out", str(tmp_path / "g.tif"), *SYNTHETIC], 1)
    assert "unexpected RuntimeError: something nobody foresaw" in err and "--verbose" in err
    with pytest.raises(RuntimeError):
        main(["--verbose", "geocode", str(dem_tif), "--out", str(tmp_path / "g.tif"), *SYNTHETIC])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sarheight.geometry, "backward_geocode", interrupted)
    assert "interrupted" in _one_line_error(capsys, ["geocode", str(dem_tif), "--out", str(tmp_path / "g.tif"),
                                                     *SYNTHETIC], 130)
    assert not shutil.which("nonexistent-sarheight-helper")


# --- outputs that cannot clobber -------------------------------------------------------


def test_outputs_never_replace_an_input_or_each_other(dem_tif, tmp_path, capsys):
    out = tmp_path / "x.tif"
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", str(out), "--quicklook", str(out),
                                   *SYNTHETIC])
    assert "--quicklook and --out name the same file" in err
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", str(out), "--quicklook",
                                   str(tmp_path / "x_masks.tif"), *SYNTHETIC])
    assert "masks file" in err and "same file" in err
    copy = tmp_path / "dem.tif"
    copy.write_bytes(dem_tif.read_bytes())
    err = _one_line_error(capsys, ["simulate", str(copy), "--out", str(copy), *SYNTHETIC])
    assert "is the DEM, an input of this run" in err
    assert copy.read_bytes() == dem_tif.read_bytes()
    link = tmp_path / "link.tif"
    link.symlink_to(tmp_path / "target.tif")
    err = _one_line_error(capsys, ["geocode", str(dem_tif), "--out", str(link), *SYNTHETIC])
    assert "symbolic link" in err and link.is_symlink()
    from sarheight.reconstruction import reconstruct

    with pytest.raises(InvalidInputError, match="is the DEM, an input of this run"):
        reconstruct(copy, np.zeros((2, 2)), None, chunks=16, out=copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dem.tif", "link.tif"]


def test_a_run_s_files_are_written_together_or_not_at_all(dem_tif, tmp_path, capsys, monkeypatch):
    """The result and its companion files are one set: a failure while writing the masks
    leaves the previous set as it was."""
    import sarheight.cli.options

    out = tmp_path / "s.tif"
    assert main(["simulate", str(dem_tif), "--out", str(out), *SYNTHETIC]) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert sorted(before) == ["s.tif", "s_image.tif", "s_masks.tif", "s_sigma0.tif"]

    def failing(result, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sarheight.cli.options, "write_masks", failing)
    monkeypatch.setattr(sarheight.cli.simulate, "write_masks", failing)
    err = _one_line_error(capsys, ["simulate", str(dem_tif), "--out", str(out), "--heading", "192", *SYNTHETIC])
    assert f"could not write s.tif, s_masks.tif, s_image.tif, s_sigma0.tif in '{tmp_path}': no space left" in err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_sigterm_removes_the_temporary_files(dem_tif, tmp_path):
    """SIGTERM (as timeout, SLURM or docker stop send) while the outputs are being written:
    the command stops with status 143 and leaves no .part file and no output."""
    import signal
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        import sarheight.cli.simulate as command
        from sarheight.cli import main

        def slow_masks(result, path):
            path.write_bytes(b"partial")
            print("writing", flush=True)
            time.sleep(60)

        command.write_masks = slow_masks
        sys.exit(main(["simulate", {str(dem_tif)!r}, "--out", {str(tmp_path / "out" / "s.tif")!r},
                       "--geometry", "synthetic", "--vertical-datum", "ellipsoid", "-q"]))
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "writing"
    assert any(p.name.endswith(".part") for p in (tmp_path / "out").iterdir())
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip() == "sarheight simulate: error: terminated"
    assert not (tmp_path / "out").exists()  # made for the outputs, removed with the temporaries


def test_an_unreachable_scheduler_on_the_command_line(shared_data, tmp_path, capsys):
    from tests.support.scenes import SAFES, required

    safe = required(shared_data / "s1" / SAFES["grd"])
    dem = required(shared_data / "dem" / "rome_cop30_egm96.tif")
    geoid = required(shared_data / "geoid" / "egm96_15.gtx")
    err = _one_line_error(capsys, ["reconstruct", "--sar", str(safe), "--dem", str(dem), "--geoid-grid", str(geoid),
                                   "--out", str(tmp_path / "r.tif"), "--scheduler", "tcp://127.0.0.1:1", "-q"])
    assert "--scheduler 'tcp://127.0.0.1:1': no dask scheduler answers there" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_dem_fix_is_given_for_a_file_too(tmp_path, capsys):
    import rasterio
    from rasterio.transform import from_origin

    from sarheight.cli import main

    path = tmp_path / "nodata_undeclared.tif"
    heights = np.full((20, 20), 500.0, dtype=np.float32)
    heights[:3] = -32768.0
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="float32", crs="EPSG:32611",
                       transform=from_origin(400000, 3800000, 30, 30)) as dst:
        dst.write(heights, 1)
    assert main(["simulate", str(path), "--geometry", "synthetic", "--vertical-datum", "ellipsoid", "--out",
                 str(tmp_path / "s.tif")]) == 2
    err = capsys.readouterr().err
    assert "rio edit-info --nodata VALUE FILE.tif" in err
