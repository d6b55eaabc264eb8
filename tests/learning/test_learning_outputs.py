"""The learning commands never write over what they read: checkpoints, scene files, the
files of a city folder or of So2Sat; refused before any work, the inputs untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarheight.cli import main


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Files standing for each input (the check comes before anything is read)."""
    city = tmp_path / "city_000"
    city.mkdir()
    so2sat = tmp_path / "so2sat"
    so2sat.mkdir()
    found = {"ckpt": tmp_path / "model.ckpt", "scene": tmp_path / "scene.nc", "s1": city / "s1_202301.tif",
             "height": city / "height.tif", "testing": so2sat / "testing.h5", "city": city, "so2sat": so2sat}
    for name, path in found.items():
        if name not in ("city", "so2sat"):
            path.write_bytes(b"input " + name.encode())
    return found


@pytest.mark.parametrize("case", [
    ("terrain", "predict", "--ckpt", "{ckpt}", "--scene", "{scene}", "--out", "{ckpt}"),
    ("terrain", "predict", "--ckpt", "{ckpt}", "--scene", "{scene}", "--out", "{scene}"),
    ("terrain", "predict", "--ckpt", "{ckpt}", "--scene", "{scene}", "--out", "{tmp}/h.tif", "--quicklook", "{ckpt}"),
    ("terrain", "export", "--ckpt", "{ckpt}", "--out", "{ckpt}"),
    ("buildings", "predict", "--ckpt", "{ckpt}", "--city", "{city}", "--out", "{ckpt}"),
    ("buildings", "predict", "--ckpt", "{ckpt}", "--city", "{city}", "--out", "{s1}"),
    ("buildings", "predict", "--ckpt", "{ckpt}", "--city", "{city}", "--out", "{height}"),
    ("buildings", "export", "--ckpt", "{ckpt}", "--out", "{ckpt}"),
    ("lcz", "combine", "{ckpt}", "--data", "{so2sat}", "--out", "{ckpt}"),
    ("lcz", "combine", "{ckpt}", "--data", "{so2sat}", "--out", "{testing}"),
])
def test_an_output_over_an_input_is_refused_before_any_work(inputs, tmp_path, capsys, case):
    values = {name: str(path) for name, path in inputs.items()} | {"tmp": str(tmp_path)}
    stamps = {path: path.read_bytes() for path in inputs.values() if path.is_file()}
    assert main([part.format(**values) for part in case]) == 2
    assert "an input of this run" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in stamps} == stamps
