"""What a careless user gives the command line and the library: each refused in one
line naming the option and what to do (exit 2), before any work and without writing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sarheight.cli import main
from sarheight.dem import open_dem
from sarheight.errors import DatumError

ROOT = Path(__file__).resolve().parents[2]


def test_a_dem_given_as_its_own_geoid_grid_is_refused(tmp_path):
    import numpy as np
    import xarray as xr

    from sarheight.io import write_geotiff

    lat, lon = 46.0 - 0.001 * (np.arange(60) + 0.5), 7.0 + 0.001 * (np.arange(80) + 0.5)
    heights = 1200.0 + 300.0 * np.sin(lon[None, :] * 400.0) * np.cos(lat[:, None] * 300.0)
    dem = xr.DataArray(heights.astype(np.float32), dims=("y", "x"), coords={"y": lat, "x": lon}, name="height")
    path = write_geotiff(dem.rio.write_crs("EPSG:4326"), tmp_path / "alps_egm96.tif")
    with pytest.raises(DatumError, match="not a grid of geoid undulations"):
        open_dem(path, vertical_datum="egm96", geoid_grid=path)


def test_benchmark_sides_beyond_memory_and_outputs_over_code_are_refused(tmp_path, capsys):
    assert main(["benchmark", "--side", "1000000", "--coarse-side", "0", "-q"]) == 2
    err = capsys.readouterr().err
    assert "GiB" in err and "--side 1000000" in err
    version = ROOT / "sarheight" / "_version.py"
    before = version.read_bytes()
    assert main(["benchmark", "--quick", "--out", str(version), "-q"]) == 2
    assert "program file" in capsys.readouterr().err and version.read_bytes() == before


@pytest.mark.parametrize("case", ["missing", "a file", "sample 0"])
def test_the_scene_builder_refuses_what_it_cannot_build_from(tmp_path, case):
    data = {"missing": tmp_path / "absent", "a file": tmp_path / "data.txt", "sample 0": tmp_path}[case]
    if case == "a file":
        data.write_text("not a folder")
    extra = ["--sample", "0"] if case == "sample 0" else []
    if case == "sample 0":
        (tmp_path / "dem").mkdir()
        (tmp_path / "geoid").mkdir()
        (tmp_path / "geoid" / "egm96_15.gtx").write_bytes(b"")
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "build_terrain_scenes.py"), "--data", str(data),
                           "--out", str(tmp_path / "scenes"), *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2 and ("--data" in done.stderr or "--sample" in done.stderr)
    assert not (tmp_path / "scenes").exists()


def test_scenes_in_other_units_are_refused_and_blank_ones_warned():
    import numpy as np
    import xarray as xr

    from sarheight.errors import InvalidInputError, PlausibilityWarning
    from sarheight.terrain.files import check_scene_values

    rng = np.random.default_rng(0)
    sigma0_db = (-11.0 + 3.0 * rng.standard_normal((30, 30))).astype(np.float32)
    incidence = np.full((30, 30), 38.0, dtype=np.float32)

    def scene(sar, angle, units="m"):
        return xr.Dataset({"sar_reconstructed": (("y", "x"), sar), "local_incidence_angle": (("y", "x"), angle),
                           "coarse_height": (("y", "x"), np.full((30, 30), 300.0, dtype=np.float32), {"units": units})})

    check_scene_values(scene(sigma0_db, incidence), "s")
    with pytest.raises(InvalidInputError, match="linear units"):
        check_scene_values(scene((10 ** (sigma0_db / 10)).astype(np.float32), incidence), "s")
    with pytest.raises(InvalidInputError, match="radians"):
        check_scene_values(scene(sigma0_db, np.radians(incidence)), "s")
    with pytest.raises(InvalidInputError, match="feet"):
        check_scene_values(scene(sigma0_db, incidence, units="feet"), "s")
    with pytest.warns(PlausibilityWarning, match="constant"):
        check_scene_values(scene(np.full((30, 30), -12.0, dtype=np.float32), incidence), "s")


def test_priors_far_from_the_coarse_dem_are_refused_warned_or_left_out():
    import numpy as np
    import xarray as xr

    from sarheight.errors import InvalidInputError, PlausibilityWarning
    from sarheight.terrain.observed import check_priors_against

    rng = np.random.default_rng(3)
    coarse = xr.DataArray((800.0 + 200.0 * rng.random((40, 40))).astype(np.float32), dims=("y", "x"))
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[::5, ::5] = 1

    def priors(offset: float) -> xr.Dataset:
        height = np.where(mask > 0, coarse.values + offset + rng.normal(0, 3, coarse.shape), np.nan)
        return xr.Dataset({"prior_height": (("y", "x"), height.astype(np.float32)),
                           "prior_mask": (("y", "x"), mask.copy())})

    kept = check_priors_against(priors(2.0), coarse)
    assert int(kept["prior_mask"].sum()) == int(mask.sum())
    with pytest.warns(PlausibilityWarning, match="median \\+50 m"):
        check_priors_against(priors(50.0), coarse)
    with pytest.raises(InvalidInputError, match="median \\+500 m"):
        check_priors_against(priors(500.0), coarse)
    spiked = priors(2.0)
    spiked["prior_height"].values[10, 10] += 3000.0
    with pytest.warns(PlausibilityWarning, match="1 of the 64 known heights"):
        cleaned = check_priors_against(spiked, coarse)
    assert cleaned["prior_mask"].values[10, 10] == 0 and int(cleaned["prior_mask"].sum()) == int(mask.sum()) - 1
    assert np.isnan(cleaned["prior_height"].values[10, 10])


def test_a_studys_records_are_taken_only_as_it_wrote_them(tmp_path):
    from sarheight.errors import InvalidInputError
    from sarheight.studies.runs import read_sealed_json, write_json

    path = tmp_path / "baselines.json"
    assert read_sealed_json(path) is None
    write_json({"scene": {"overall": 4.2}}, path, sealed=True)
    assert read_sealed_json(path) == {"scene": {"overall": 4.2}}
    path.write_text(path.read_text().replace("4.2", "1.2"))
    with pytest.raises(InvalidInputError, match="changed after the study wrote it"):
        read_sealed_json(path)
    write_json({"scene": {"overall": 4.2}}, path, sealed=True)
    (tmp_path / "baselines.json.sha256").unlink()
    with pytest.raises(InvalidInputError, match=r"seal baselines\.json\.sha256 is missing"):
        read_sealed_json(path)


def test_a_duration_that_is_not_one_is_named(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["terrain", "study", "--scenes", ".", "--test-scenes", ".", "--max-time", "banana", "--out", "x"])
    assert exit_.value.code == 2 and "--max-time" in capsys.readouterr().err


def test_an_lcz_checkpoint_of_lightning_cli_loads_for_combination(tmp_path):
    """``sarheight lcz fit`` (LightningCLI) adds its own entries to the hyper-parameters:
    no option of the classifier, and no sign of an altered file."""
    torch = pytest.importorskip("torch")
    from sarheight import sample_data
    from sarheight.errors import InvalidInputError
    from sarheight.training import TrainedClassifier, load_checkpoint
    from sarheight.training.classification import LCZClassification

    module = LCZClassification("sar", 0, widths=(4, 4, 4, 4, 4, 8))
    hyper = {**dict(module.hparams), "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hyper}, tmp_path / "last.ckpt")
    loaded = load_checkpoint(tmp_path / "last.ckpt")
    assert isinstance(loaded, TrainedClassifier)
    assert loaded.split == "sar" and loaded.stage == 0 and not loaded.module.training
    assert loaded(torch.zeros(2, 18, 32, 32)).shape == (2, loaded.num_classes)
    # One loader, typed: each kind refused where the other is asked for, named.
    with pytest.raises(InvalidInputError, match=r"LCZ classifier .*not of a height model"):
        load_checkpoint(tmp_path / "last.ckpt", kind="height")
    with pytest.raises(InvalidInputError, match="not a checkpoint of an LCZ classifier but of a height model"):
        load_checkpoint(sample_data.path("terrain_refine_demo.ckpt"), kind="lcz")


def test_a_tree_to_compare_with_without_its_kernels_package_is_named(tmp_path, capsys):
    (tmp_path / "sarheight").mkdir()
    (tmp_path / "sarheight" / "__init__.py").write_text("")
    (tmp_path / "kernels").mkdir()
    assert main(["benchmark", "--quick", "--against", str(tmp_path), "-q"]) == 2
    assert "kernels/ folder has no __init__.py" in capsys.readouterr().err


def test_a_prediction_is_never_written_into_the_city_it_reads(tmp_path, capsys):
    """An --out named like a month's Sentinel-1 file inside the city would change what
    the next run of that city reads: refused before the checkpoint is even opened."""
    city = tmp_path / "city"
    city.mkdir()
    (city / "s1_202001.tif").write_bytes(b"month")
    (tmp_path / "model.ckpt").write_bytes(b"not read")
    assert main(["buildings", "predict", "--city", str(city), "--ckpt", str(tmp_path / "model.ckpt"),
                 "--out", str(city / "s1_202002.tif"), "-q"]) == 2
    assert "--out lies inside --city" in capsys.readouterr().err
    assert sorted(path.name for path in city.iterdir()) == ["s1_202001.tif"]
