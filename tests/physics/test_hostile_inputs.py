"""Hostile and broken input files: refused with one clear line, before GDAL reads what it should not."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

import sarheight.io
from sarheight import sample_data
from sarheight.cli import main
from sarheight.dem import PACKAGED_EGM96, open_dem
from sarheight.errors import InvalidInputError, MissingInputError
from sarheight.geometry import RadarGeometry
from sarheight.reconstruction import reconstruct

VRT_RAW_BAND = """<VRTDataset rasterXSize="16" rasterYSize="16">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>10, 0.001, 0, 45, 0, -0.001</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativetoVRT="0">{source}</SourceFilename>
    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>16</LineOffset>
  </VRTRasterBand>
</VRTDataset>
"""
VRT_REMOTE_SOURCE = """<VRTDataset rasterXSize="16" rasterYSize="16">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>10, 0.001, 0, 45, 0, -0.001</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="0">/vsicurl/{url}</SourceFilename><SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


@pytest.fixture
def server():
    """A web server on this machine that records every request (and serves a GeoTIFF)."""
    requests: list[str] = []
    folder = sample_data.FOLDER

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()


@pytest.fixture
def gdal_opens(monkeypatch):
    """The paths GDAL is asked to open through sarheight's reader."""
    opened: list[str] = []
    original = rasterio.open

    def recording(path, *args, **kwargs):
        opened.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(sarheight.io.rasterio, "open", recording)
    return opened


def _secret(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 16)
    return secret


@pytest.mark.parametrize("suffix", [".vrt", ".tif"])
def test_a_vrt_over_a_local_file_is_refused_unopened(tmp_path, gdal_opens, suffix):
    """A VRTRawRasterBand over any file (here one like /etc/passwd), also renamed .tif: as a
    DEM, a geoid grid or a geocoded observation, refused before GDAL opens it."""
    vrt = tmp_path / f"dem{suffix}"
    vrt.write_text(VRT_RAW_BAND.format(source=_secret(tmp_path)))
    with pytest.raises(InvalidInputError, match="is a GDAL VRT"):
        open_dem(vrt, vertical_datum="ellipsoid")
    with pytest.raises(InvalidInputError, match=r"Geoid grid .* is a GDAL VRT"):
        open_dem(sample_data.path("rome_cop30_egm96_crop.tif"), geoid_grid=vrt)
    dem = sample_data.rome_dem()
    west, south, east, north = dem.rio.bounds()
    geometry = RadarGeometry.synthetic(center_lon=(west + east) / 2, center_lat=(south + north) / 2,
                                       heading_deg=348, incidence_near_deg=30, incidence_far_deg=46,
                                       line_spacing=10, sample_spacing=10)
    if suffix == ".tif":
        with pytest.raises(InvalidInputError, match=r"SAR image .* is a GDAL VRT"):
            reconstruct(dem, vrt, geometry)
    assert str(vrt) not in gdal_opens


def test_a_vrt_with_a_remote_source_fetches_nothing(tmp_path, server):
    url, requests = server
    vrt = tmp_path / "dem.tif"
    vrt.write_text(VRT_REMOTE_SOURCE.format(url=f"{url}/rome_cop30_egm96_crop.tif"))
    with pytest.raises(InvalidInputError, match="is a GDAL VRT"):
        open_dem(vrt, vertical_datum="ellipsoid")
    assert requests == []


def test_network_paths_are_refused_unless_allowed(server, monkeypatch):
    url, requests = server
    for path in (f"/vsicurl/{url}/rome_cop30_egm96_crop.tif", f"{url}/rome_cop30_egm96_crop.tif",
                 f"/vsizip//vsicurl/{url}/samples.zip/rome.tif"):
        with pytest.raises(InvalidInputError, match=r"network path: .*SARHEIGHT_ALLOW_NETWORK=1"):
            open_dem(path)
    assert requests == []
    monkeypatch.setenv("SARHEIGHT_ALLOW_NETWORK", "1")
    remote = open_dem(f"/vsicurl/{url}/rome_cop30_egm96_crop.tif", geoid_grid=PACKAGED_EGM96)
    np.testing.assert_array_equal(remote.values, sample_data.rome_dem().values)
    assert requests


def test_files_that_are_not_rasters_sarheight_reads(tmp_path):
    text = tmp_path / "heights.txt"
    text.write_text("1 2 3\n")
    with pytest.raises(InvalidInputError,
                       match=r"not a raster sarheight reads \(GeoTIFF, JPEG 2000, GTX or SRTM .hgt\)"):
        open_dem(text)
    with pytest.raises(MissingInputError, match="does not exist"):
        open_dem(tmp_path / "nope.tif")
    with pytest.raises(InvalidInputError, match="is a folder"):
        open_dem(tmp_path)


def test_the_command_line_refuses_a_vrt_in_one_line(tmp_path, capsys):
    vrt = tmp_path / "dem.tif"
    vrt.write_text(VRT_RAW_BAND.format(source=_secret(tmp_path)))
    assert main(["simulate", str(vrt), "--geometry", "synthetic", "--out", str(tmp_path / "s.tif")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sarheight simulate: error: DEM") and "GDAL VRT" in error and error.count("\n") == 1
    assert not (tmp_path / "s.tif").exists()


@pytest.mark.parametrize("name, text, said", [
    ("bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(20)),
     "stands for more than 100,000 values once its YAML aliases (*name) are expanded"),
    ("nine.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)),
     "stands for more than 100,000 values"),
    ("loop.yaml", "a: &a\n  b: *a\n", "holds a YAML alias inside the node it names"),
    ("long.yaml", "trainer:\n  callbacks: [" + ",".join(["1"] * 300_000) + "]\n", "holds more than 200,000 YAML items"),
    ("deep.yaml", "model: " + "[" * 100_000 + "]" * 100_000 + "\n", "nests deeper than 50 levels"),
    ("big.yaml", "# " + "x" * (2 << 20) + "\n", "is 2.0 MiB: a configuration is a few kB"),
])
def test_a_configuration_is_bounded_before_it_is_parsed(name, text, said, tmp_path, monkeypatch, capsys):
    """A YAML alias bomb (1.4 kB that expands to billions of nodes), a list of hundreds of
    thousands of items, 100 000 nested brackets and a file of megabytes: each one line and
    exit 2, in well under a second, instead of minutes of parsing or a RecursionError."""
    pytest.importorskip("lightning")
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    started = time.perf_counter()
    assert main(["fit", "--config", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--config {name} {said}" in err, err
    assert time.perf_counter() - started < 10


def test_a_configuration_in_the_environment_or_a_nested_file_is_bounded_too(tmp_path, monkeypatch, capsys):
    """The alias bomb through PL_FIT__CONFIG, and a nested text file over 1 MiB, are refused
    as the same file given with --config is."""
    pytest.importorskip("lightning")
    import time

    monkeypatch.chdir(tmp_path)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    monkeypatch.setenv("PL_FIT__CONFIG", bomb)
    started = time.perf_counter()
    assert main(["fit", "--config", "terrain_refine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PL_FIT__CONFIG stands for more than 100,000 values" in err, err
    assert time.perf_counter() - started < 10
    monkeypatch.delenv("PL_FIT__CONFIG")
    (tmp_path / "nested.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    (tmp_path / "outer.yaml").write_text("trainer: nested.yaml\n")
    assert main(["fit", "--config", "outer.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(nested.yaml) is 2.0 MiB" in err, err
