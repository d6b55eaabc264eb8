"""Refinement of a coarse DEM by the networks: the shipped configurations train as they
are, heights come back in metres from the coarse cell's units, class weights in the loss,
and the real-product path (``sarheight terrain refine``) from a DEM GeoTIFF and a geocoded
sigma0 GeoTIFF to a refined DEM with the ensemble's spread, with its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.dem import PACKAGED_EGM96
from sarheight.errors import InvalidInputError
from sarheight.refinement import refine_dem
from sarheight.terrain.files import open_scene
from sarheight.terrain.scene_options import Execution, SarReading
from sarheight.training import load_checkpoint, masked_loss, predict_height
from tests.support.scenes import fit_tiny_checkpoint, simulate_tiny_scenes

#: No progress bars in the tests.
QUIET = Execution(progress=False)
#: The test products' images are in dB.
IN_DB = SarReading(db=True)

ROOT = Path(__file__).resolve().parents[2]

#: The SAR refinement model's channels (sarheight/configs/terrain_refine.yaml).
CHANNELS = ("coarse_slope_east", "coarse_slope_north", "coarse_curvature", "coarse_factor", "prior_height",
            "prior_mask", "prior_distance", "sar_ratio", "local_incidence_angle", "look_east", "look_north", "layover",
            "shadow")
REFINE = {"reference": "coarse_bicubic", "scale": "coarse_cell", "score_shadow": True}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine_scenes")
    simulate_tiny_scenes(folder, names=("hills-a", "hills-b", "hills-c"), size=40)
    return folder


@pytest.fixture(scope="module")
def checkpoints(scenes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine_checkpoints")
    return [fit_tiny_checkpoint(scenes, folder / f"seed{seed}.ckpt", seed=seed, channels=CHANNELS,
                                data_options={**REFINE, "val_scenes": ["hills-b"], "test_scenes": ["hills-c"]})
            for seed in (0, 1)]


def test_weighted_loss_is_the_weighted_mean():
    generator = torch.Generator().manual_seed(1)
    prediction, target = torch.randn(2, 1, 6, 6, generator=generator), torch.randn(2, 1, 6, 6, generator=generator)
    mask = torch.rand(2, 1, 6, 6, generator=generator) > 0.2
    weights = torch.rand(2, 1, 6, 6, generator=generator) * 4
    for kind in ("l1", "mse", "huber"):
        each = {"l1": (prediction - target).abs(), "mse": (prediction - target) ** 2,
                "huber": torch.nn.functional.huber_loss(prediction, target, reduction="none")}[kind]
        expected = (each * weights)[mask].sum() / weights[mask].sum()
        assert masked_loss(prediction, target, mask, kind, weights=weights).item() == pytest.approx(expected.item())
        assert masked_loss(prediction, target, mask, kind, weights=torch.ones_like(weights)).item() == pytest.approx(
            masked_loss(prediction, target, mask, kind).item())
    with pytest.raises(InvalidInputError, match="weights"):
        masked_loss(prediction, target, mask, "l1", weights=weights[:1])


def test_checkpoint_gives_heights_in_metres_from_the_coarse_cell(scenes, checkpoints):
    model = load_checkpoint(checkpoints[0])
    assert model.scale == "coarse_cell" and model.reference == "coarse_bicubic" and model.channels == CHANNELS
    scene = open_scene(sorted(scenes.glob("hills-c_ascending*.nc"))[0])
    result = predict_height(scene, [checkpoints[0]], tile=64, overlap=0, progress=False)
    # One tile covers the scene: the map is the reference plus the cell size times the output.
    from sarheight.data.terrain import scene_arrays

    arrays = scene_arrays(scene, CHANNELS, reference="coarse_bicubic", scale="coarse_cell")
    output = model(torch.from_numpy(arrays.inputs[None]))[0, 0].numpy()
    expected = arrays.offset + scene.attrs["coarse_cell_m"] * output
    np.testing.assert_allclose(result["height"].values, expected, rtol=1e-5, atol=1e-3)
    # Shadow has no SAR value, yet a refinement predicts there.
    shadow = (scene["shadow"].values == 1) | (scene["shadow"].values == 2)
    assert shadow.any() and np.isfinite(result["height"].values[shadow]).all()


@pytest.mark.parametrize("name", ["terrain_refine", "terrain_refine_nosar"])
def test_shipped_refinement_configs_train_and_test(tmp_path, scenes, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "sarheight" / "configs" / f"{name}.yaml")
    small = ["--data.scenes", str(scenes), "--data.val_scenes", "[hills-b]", "--data.test_scenes", "[hills-c]",
             "--data.tile", "32", "--data.tiles_per_epoch", "4", "--data.batch_size", "2", "--trainer.max_epochs", "1",
             "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--config", config, *small]) == 0
    last = tmp_path / "runs" / name / "checkpoints" / "last.ckpt"
    stored = torch.load(last, weights_only=True)["sarheight"]
    assert stored["scale"] == "coarse_cell" and stored["reference"].startswith("coarse_")
    assert ("sar_ratio" in stored["channels"]) == (name == "terrain_refine")
    assert main(["test", "--config", config, *small, "--ckpt_path", "last"]) == 0
    if name != "terrain_refine":
        return
    # A checkpoint whose weights are NaN scores nothing (test, as validate and resume); one
    # whose weights are finite but absurd predicts no finite height: each one line, exit 2.
    checkpoint = torch.load(last, weights_only=True)
    for tensor in checkpoint["state_dict"].values():
        if tensor.is_floating_point():
            tensor.mul_(1e30)
    torch.save(checkpoint, tmp_path / "absurd.ckpt")
    checkpoint["state_dict"][next(k for k in checkpoint["state_dict"] if k.endswith("weight"))].fill_(float("nan"))
    torch.save(checkpoint, tmp_path / "nan.ckpt")
    capsys.readouterr()
    assert main(["test", "--config", config, *small, "--ckpt_path", "nan.ckpt"]) == 2
    assert "checkpoint 'nan.ckpt' has weights that are not finite" in capsys.readouterr().err
    (scene,) = sorted(scenes.glob("hills-c*.nc"))[:1]
    assert main(["terrain", "predict", "--ckpt", "absurd.ckpt", "--scene", str(scene), "--out", "absurd.tif"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has weights as large as" in err and "absurd.ckpt" in err
    assert not (tmp_path / "absurd.tif").exists()
    assert main(["test", "--config", config, *small, "--ckpt_path", "absurd.ckpt"]) == 2
    assert "checkpoint 'absurd.ckpt' has weights as large as" in capsys.readouterr().err
    # Weights of other shapes (another model's): one line naming the first tensor.
    checkpoint = torch.load(last, weights_only=True)
    name = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
    shape = tuple(checkpoint["state_dict"][name].shape)
    checkpoint["state_dict"][name] = torch.zeros((shape[0] + 1, *shape[1:]))
    torch.save(checkpoint, tmp_path / "shapes.ckpt")
    assert main(["test", "--config", config, *small, "--ckpt_path", "shapes.ckpt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the weights of another model than the configuration builds" in err, err
    assert f"{name} is {(shape[0] + 1, *shape[1:])} in the file, {shape} in the model" in err, err
    # A map whose heights no terrain has is refused whatever made it.
    from sarheight.dem import check_plausible_heights
    from sarheight.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="beyond any on the Earth"):
        check_plausible_heights(np.array([[1.0, 4.9e30]]), None, "a map")
    with pytest.raises(InvalidInputError, match=r"moves the coarse DEM by up to 1\.5e"):
        check_plausible_heights(np.array([[100.0, 2000.0]]), np.array([[100.0, 500.0]]), "a map")
    check_plausible_heights(np.array([[100.0, np.nan]]), np.array([[90.0, 500.0]]), "a map")


def test_class_weights_are_checked_against_the_data(scenes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = ["--data.scenes", str(scenes), "--data.val_scenes", "[hills-b]", "--data.test_scenes", "[hills-c]",
             "--data.tile", "32", "--data.tiles_per_epoch", "4", "--data.batch_size", "2", "--trainer.max_epochs", "1",
             "--trainer.enable_progress_bar", "false"]
    config = str(ROOT / "sarheight" / "configs" / "terrain_refine.yaml")
    assert main(["fit", "--config", config, *small, "--model.class_weights", "{glacier: 3}"]) != 0
    assert "glacier" in capsys.readouterr().err


# The real-product path.


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """A user's 90 m DEM (the real Big Tujunga crop averaged 3x) and a geocoded sigma0
    GeoTIFF (dB) of the real 30 m relief, simulated under a Sentinel-1-like pass."""
    from sarheight import sample_data
    from sarheight.dem import open_dem
    from sarheight.io import write_geotiff
    from sarheight.reconstruction import reconstruct
    from sarheight.simulate import simulate_sar
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.grid import block_mean

    folder = tmp_path_factory.mktemp("product")
    fine = open_dem(sample_data.path("bigtujunga_srtm30_utm11_crop.tif"), vertical_datum="egm96",
                    geoid_grid=PACKAGED_EGM96).isel(y=slice(0, 96), x=slice(0, 96))
    write_geotiff(block_mean(fine, 3).rename("height"), folder / "coarse90.tif")
    geometry = scene_geometry(fine, "ascending")
    observed = reconstruct(fine, simulate_sar(fine, geometry, seed=3), geometry, progress=False)
    write_geotiff((10 * np.log10(observed["geocoded"].where(observed["geocoded"] > 0))).rename("sigma0"),
                  folder / "sigma0_db.tif")
    return {"folder": folder, "fine": fine, "geometry": geometry}


def test_refine_dem_from_a_geocoded_image(product, checkpoints):
    from sarheight.dem import open_dem

    coarse = open_dem(product["folder"] / "coarse90.tif", vertical_datum="ellipsoid")
    refined, scene = refine_dem(coarse, product["folder"] / "sigma0_db.tif", checkpoints, spacing_m=30.0,
                                geometry=product["geometry"], reading=IN_DB, execution=QUIET)
    assert refined["height"].shape == (96, 96) and refined.rio.crs == coarse.rio.crs
    assert np.isfinite(refined["height"].values).all() and (refined["height_std"].values >= 0).all()
    assert refined.attrs["coarse_factor"] == pytest.approx(3.0) and refined.attrs["members"] == 2
    assert "sar_ratio" not in scene and np.isfinite(scene["sar_reconstructed"].values).mean() > 0.9
    # The heights stay near the coarse DEM the model corrects.
    assert np.abs(refined["height"].values - refined["coarse"].values).max() < 200
    with pytest.raises(InvalidInputError, match="already as fine"):
        refine_dem(coarse, product["folder"] / "sigma0_db.tif", checkpoints, spacing_m=90.0,
                   geometry=product["geometry"], reading=IN_DB, execution=QUIET)


def test_a_network_stacking_the_inversion_has_it_made(product, tmp_path):
    """A network reading the inversion's map as a channel: refine_dem runs the inversion
    for it, and predicts from every map."""
    from sarheight.dem import open_dem

    scenes = tmp_path / "scenes"
    simulate_tiny_scenes(scenes, names=("hills-a", "hills-b", "hills-c"), size=36, inversion=True)
    checkpoint = fit_tiny_checkpoint(scenes, tmp_path / "stacked.ckpt",
                                     channels=(*CHANNELS, "coarse_registered", "clinometry", "inverted"),
                                     data_options={"reference": "coarse_refined", "scale": "coarse_cell",
                                                   "score_shadow": True, "val_scenes": ["hills-b"],
                                                   "test_scenes": ["hills-c"]})
    coarse = open_dem(product["folder"] / "coarse90.tif", vertical_datum="ellipsoid")
    refined, scene = refine_dem(coarse, product["folder"] / "sigma0_db.tif", [checkpoint], spacing_m=30.0,
                                geometry=product["geometry"], reading=IN_DB, execution=QUIET)
    assert "inverted" in scene and any(key.startswith("inversion_") for key in refined.attrs)
    assert np.isfinite(refined["height"].values).mean() > 0.9
    assert np.abs(refined["height"].values - refined["coarse"].values).max() < 200


def test_refine_command(product, checkpoints, tmp_path, capsys):
    folder = product["folder"]
    fine = product["fine"]
    points = pd.DataFrame({"x": fine["x"].values[[10, 50, 80]], "y": fine["y"].values[[20, 40, 70]],
                           "height": fine.values[[20, 40, 70], [10, 50, 80]]})
    points.to_csv(tmp_path / "priors.csv", index=False)
    out = tmp_path / "fine.tif"
    base = ["terrain", "refine", "--dem", str(folder / "coarse90.tif"), "--vertical-datum", "ellipsoid",
            "--sar", str(folder / "sigma0_db.tif"), "--sar-db", "--geometry", "synthetic", "--heading", "348",
            "--ckpt", str(checkpoints[0]), "--ckpt", str(checkpoints[1]), "--spacing", "30"]
    assert main([*base, "--priors", str(tmp_path / "priors.csv"), "--priors-crs", "EPSG:32611",
                 "--priors-vertical-datum", "ellipsoid", "--out", str(out), "--quicklook",
                 str(tmp_path / "q.png")]) == 0
    printed = capsys.readouterr().out
    assert "refined 90.0 m cells to 30 m" in printed and "2 checkpoints" in printed
    with rasterio.open(out) as written:
        assert written.descriptions == ("height", "height_std", "coarse") and written.crs.to_epsg() == 32611
        assert written.res == pytest.approx((30.0, 30.0))
    assert (tmp_path / "q.png").stat().st_size > 0
    # Clear errors, before any work.
    assert main([*base[:-1], "300", "--out", str(tmp_path / "a.tif")]) == 2
    assert "already as fine" in capsys.readouterr().err
    no_geometry = [arg for arg in base if arg not in ("--geometry", "synthetic", "--heading", "348")]
    assert main([*no_geometry, "--out", str(tmp_path / "b.tif")]) == 2
    assert "needs --geometry" in capsys.readouterr().err
    far = points.assign(x=points["x"] + 1e6)
    far.to_csv(tmp_path / "far.csv", index=False)
    assert main([*base, "--priors", str(tmp_path / "far.csv"), "--priors-crs", "EPSG:32611",
                 "--priors-vertical-datum", "ellipsoid", "--out", str(tmp_path / "c.tif")]) == 2
    assert "None of the 3 points" in capsys.readouterr().err
    assert main([*base, "--priors-crs", "EPSG:32611", "--out", str(tmp_path / "d.tif")]) == 2
    assert "--priors-crs describe --priors, which is not given" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("a.tif", "c.tif", "d.tif"))


def test_refine_refuses_a_model_that_is_not_a_refinement(product, tmp_path):
    from sarheight.dem import open_dem
    from tests.support.scenes import write_tiny_scenes

    folder = tmp_path / "seed_scenes"
    write_tiny_scenes(folder, count=3, rows=40, cols=40)
    priors_only = fit_tiny_checkpoint(folder, tmp_path / "priors_only.ckpt")
    coarse = open_dem(product["folder"] / "coarse90.tif", vertical_datum="ellipsoid")
    with pytest.raises(InvalidInputError, match="not as a correction of the coarse DEM"):
        refine_dem(coarse, product["folder"] / "sigma0_db.tif", [priors_only], spacing_m=30.0,
                   geometry=product["geometry"], reading=IN_DB, execution=QUIET)


def test_half_export_predicts_as_the_full_checkpoint(scenes, checkpoints, tmp_path):
    from sarheight.training.checkpoints import export_checkpoint

    full = export_checkpoint(checkpoints[0], tmp_path / "full.ckpt")
    half = export_checkpoint(checkpoints[0], tmp_path / "half.ckpt", half=True)
    weights = [torch.load(path, weights_only=True)["state_dict"] for path in (full, half)]
    size = [sum(t.numel() * t.element_size() for t in w.values()) for w in weights]
    assert size[1] < 0.55 * size[0] and weights[1]["model.head.weight"].dtype == torch.float16
    scene = open_scene(sorted(scenes.glob("hills-c_ascending*.nc"))[0])
    heights = [predict_height(scene, [path], progress=False)["height"].values for path in (full, half)]
    change = heights[1] - heights[0]
    assert np.abs(change).max() < 1e-2 * max(np.abs(heights[0] - scene["coarse_bicubic"].values).max(), 1.0)


def test_a_real_product_without_pixels_is_refused(shared_data, tmp_path, capsys):
    """The real GRD annotation over Rome (its measurement an all-zero placeholder): the
    product path reads it, finds nothing to refine with and says so, writing nothing."""
    from sarheight import sample_data
    from sarheight.io import write_geotiff
    from sarheight.terrain.grid import block_mean
    from tests.support.scenes import SAFES, required

    product = required(shared_data / "s1" / SAFES["grd"])
    write_geotiff(block_mean(sample_data.rome_dem(), 3).rename("height"), tmp_path / "rome80.tif")
    out = tmp_path / "refined.tif"
    assert main(["terrain", "refine", "--dem", str(tmp_path / "rome80.tif"), "--vertical-datum", "ellipsoid",
                 "--sar", str(product), "--ckpt", str(sample_data.terrain_demo_checkpoint()), "--spacing", "30",
                 "--out", str(out), "-q"]) == 2
    assert "placeholder or masked product" in capsys.readouterr().err and not out.exists()


def test_refine_never_writes_over_an_input(product, checkpoints, tmp_path, capsys):
    folder = product["folder"]
    base = ["terrain", "refine", "--dem", str(folder / "coarse90.tif"), "--vertical-datum", "ellipsoid",
            "--sar", str(folder / "sigma0_db.tif"), "--sar-db", "--geometry", "synthetic",
            "--ckpt", str(checkpoints[0]), "--ckpt", str(checkpoints[1]), "--spacing", "30", "-q"]
    stamps = {path: path.stat().st_mtime_ns for path in (folder / "coarse90.tif", folder / "sigma0_db.tif",
                                                          checkpoints[1])}
    for target in stamps:
        assert main([*base, "--out", str(target)]) == 2
        assert "an input of this run" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.tif"), "--quicklook", str(checkpoints[1])]) == 2
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_refine_refuses_an_image_without_relief(product, checkpoints, tmp_path):
    """A constant sigma0 GeoTIFF (dB or linear) carries no relief: refused before the
    model runs; a real one's level and spread are in the result's attributes."""
    import rioxarray

    from sarheight.dem import open_dem
    from sarheight.io import write_geotiff

    coarse = open_dem(product["folder"] / "coarse90.tif", vertical_datum="ellipsoid")
    image = rioxarray.open_rasterio(product["folder"] / "sigma0_db.tif").squeeze("band", drop=True)
    for value, in_db in ((-12.0, True), (0.06, False)):
        constant = image.copy(data=np.where(np.isfinite(image.values), value, np.nan).astype(np.float32))
        path = write_geotiff(constant.rename("sigma0"), tmp_path / f"constant_{in_db}.tif")
        with pytest.raises(InvalidInputError, match="constant where the DEM falls"):
            refine_dem(coarse, path, checkpoints, spacing_m=30.0, geometry=product["geometry"],
                       reading=SarReading(db=in_db), execution=QUIET)
    refined, _ = refine_dem(coarse, product["folder"] / "sigma0_db.tif", checkpoints[:1], spacing_m=30.0,
                            geometry=product["geometry"], reading=IN_DB, execution=QUIET)
    assert refined.attrs["observed_spread_db"] > 1.0 and -30 < refined.attrs["observed_median_db"] < 5
    assert 0 < refined.attrs["correction_rms_m"] <= refined.attrs["correction_max_m"]


def test_refine_warns_of_a_flat_dem_and_of_an_implausible_level():
    import xarray as xr

    from sarheight.errors import PlausibilityWarning
    from sarheight.terrain.observed import check_refinement_inputs

    heights = np.full((20, 20), 312.0, dtype=np.float32)
    scene = xr.Dataset({"coarse_height": (("y", "x"), heights)},
                       attrs={"observed_median_db": -11.0, "observed_spread_db": 3.5})
    with pytest.warns(PlausibilityWarning, match="flat"):
        check_refinement_inputs(scene)
    scene["coarse_height"] = (("y", "x"), np.linspace(0.2, 1.7, 400, dtype=np.float32).reshape(20, 20))
    with pytest.warns(PlausibilityWarning, match="kilometres"):
        check_refinement_inputs(scene)
    scene["coarse_height"] = (("y", "x"), np.linspace(200, 1700, 400, dtype=np.float32).reshape(20, 20))
    scene.attrs.update(observed_median_db=27.0)
    with pytest.warns(PlausibilityWarning, match="outside the"):
        check_refinement_inputs(scene)
    scene.attrs.update(observed_median_db=-11.0, other_observed_median_db=-14.0, other_observed_spread_db=0.01)
    with pytest.raises(InvalidInputError, match="opposite pass's SAR image is nearly constant"):
        check_refinement_inputs(scene)


def test_refine_refuses_a_spacing_beyond_ten_times_and_a_grid_too_large(product, checkpoints):
    from sarheight.dem import open_dem
    from sarheight.terrain.grid import refinement_grid

    coarse = open_dem(product["folder"] / "coarse90.tif", vertical_datum="ellipsoid")
    with pytest.raises(InvalidInputError, match="15 times finer"):
        refine_dem(coarse, product["folder"] / "sigma0_db.tif", checkpoints, spacing_m=6.0,
                   geometry=product["geometry"], reading=IN_DB, execution=QUIET)
    import xarray as xr

    big = xr.DataArray(np.full((2000, 3000), 500.0, dtype=np.float32), dims=("y", "x"), name="height",
                       coords={"y": 4e6 - 90.0 * (np.arange(2000) + 0.5), "x": 4e5 + 90.0 * (np.arange(3000) + 0.5)})
    with pytest.raises(InvalidInputError, match="million cells"):
        refinement_grid(big.rio.write_crs(coarse.rio.crs), 10.0)


def test_a_second_pass_for_a_one_pass_model_is_refused(product, checkpoints):
    from sarheight.dem import open_dem

    coarse = open_dem(product["folder"] / "coarse90.tif", vertical_datum="ellipsoid")
    image = product["folder"] / "sigma0_db.tif"
    with pytest.raises(InvalidInputError, match="would be ignored"):
        refine_dem(coarse, image, checkpoints, spacing_m=30.0, geometry=product["geometry"],
                   opposite_pass=(image, product["geometry"]), reading=IN_DB, execution=QUIET)


def test_refine_never_writes_inside_an_input_folder_or_over_code(product, checkpoints, tmp_path, capsys):
    folder = product["folder"]
    safe = tmp_path / "S1A_IW_GRDH_1SDV_X.SAFE"
    (safe / "measurement").mkdir(parents=True)
    image = safe / "measurement" / "s1a-iw-grd-vv.tiff"
    image.write_bytes(b"II*\0")
    before = image.read_bytes()
    base = ["terrain", "refine", "--dem", str(folder / "coarse90.tif"), "--vertical-datum", "ellipsoid",
            "--ckpt", str(checkpoints[0]), "--spacing", "30", "-q"]
    assert main([*base, "--sar", str(safe), "--out", str(image)]) == 2
    assert "lies inside --sar" in capsys.readouterr().err and image.read_bytes() == before
    assert main([*base, "--sar", str(folder / "sigma0_db.tif"), "--sar-db", "--geometry", "synthetic",
                 "--out", str(tmp_path / "hook.py")]) == 2
    assert "program file" in capsys.readouterr().err and not (tmp_path / "hook.py").exists()


def test_priors_on_the_geoid_are_converted_with_the_given_grid(product, checkpoints, tmp_path, capsys):
    """--priors-vertical-datum egm96 with --geoid-grid: the grid reaches the priors (no
    PROJ grid is needed offline); the heights written differ from the ellipsoidal run's
    by about the undulation where the priors hold."""
    from sarheight.dem import geoid_undulation

    folder, fine = product["folder"], product["fine"]
    rows, cols = [20, 40, 70], [10, 50, 80]
    undulation = geoid_undulation(*_lonlat(fine, rows, cols), "egm96", PACKAGED_EGM96)
    points = pd.DataFrame({"x": fine["x"].values[cols], "y": fine["y"].values[rows],
                           "height": fine.values[rows, cols] - undulation})
    points.to_csv(tmp_path / "geoid_priors.csv", index=False)
    out = tmp_path / "fine.tif"
    assert main(["terrain", "refine", "--dem", str(folder / "coarse90.tif"), "--vertical-datum", "ellipsoid",
                 "--sar", str(folder / "sigma0_db.tif"), "--sar-db", "--geometry", "synthetic", "--heading", "348",
                 "--ckpt", str(checkpoints[0]), "--spacing", "30", "--priors", str(tmp_path / "geoid_priors.csv"),
                 "--priors-crs", "EPSG:32611", "--priors-vertical-datum", "egm96", "--geoid-grid",
                 str(PACKAGED_EGM96), "--out", str(out), "-q"]) == 0, \
        capsys.readouterr().err
    assert out.exists()


def _lonlat(dem, rows, cols):
    from pyproj import Transformer

    transformer = Transformer.from_crs(dem.rio.crs, "EPSG:4326", always_xy=True)
    return transformer.transform(dem["x"].values[cols], dem["y"].values[rows])


def test_the_spacing_is_checked_before_the_dem_is_read(product, checkpoints, tmp_path, capsys, monkeypatch):
    import sarheight.dem

    def never(*args, **kwargs):
        raise AssertionError("the DEM was read before the spacing was checked")

    monkeypatch.setattr(sarheight.dem, "open_dem", never)
    folder = product["folder"]
    assert main(["terrain", "refine", "--dem", str(folder / "coarse90.tif"), "--vertical-datum", "ellipsoid",
                 "--sar", str(folder / "sigma0_db.tif"), "--sar-db", "--geometry", "synthetic",
                 "--ckpt", str(checkpoints[0]), "--spacing", "0.01", "--out", str(tmp_path / "fine.tif")]) == 2
    assert "times finer" in capsys.readouterr().err and not (tmp_path / "fine.tif").exists()


@pytest.mark.parametrize("option", ["--checkpoint.dirpath", "--trainer.default_root_dir"])
def test_a_training_never_writes_among_sarheight_own_files(option, scenes, tmp_path, monkeypatch, capsys):
    """Checkpoints, logs and the saved configuration never go into the installed package or
    its kernels: refused in one line before training, nothing made there."""
    from sarheight.paths import OWN_FOLDERS

    monkeypatch.chdir(tmp_path)
    target = Path(OWN_FOLDERS[-1]) / "runs_here"
    small = ["--data.scenes", str(scenes), "--data.val_scenes", "[hills-b]", "--data.test_scenes", "[hills-c]",
             "--data.tile", "32", "--data.tiles_per_epoch", "4", "--data.batch_size", "2", "--trainer.max_epochs", "1",
             "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--config", "terrain_refine", *small, option, str(target)]) == 2
    assert "lies among sarheight's own files" in capsys.readouterr().err
    assert not target.exists()


def test_conflicting_duplicate_priors_are_named(product, tmp_path, capsys):
    """Two points at the very same position with heights 30 m apart (two sources, two
    dates): said in one warning, not read later as a datum's offset."""
    fine = product["fine"]
    points = pd.DataFrame({"x": fine["x"].values[[10, 50, 50]], "y": fine["y"].values[[20, 40, 40]],
                           "height": fine.values[[20, 40, 40], [10, 50, 50]] + np.array([0.0, 0.0, 30.0])})
    points.to_csv(tmp_path / "dup.csv", index=False)
    folder = product["folder"]
    assert main(["terrain", "refine", "--dem", str(folder / "coarse90.tif"), "--vertical-datum", "ellipsoid", "--sar",
                 str(folder / "sigma0_db.tif"), "--sar-db", "--geometry", "synthetic", "--heading", "348",
                 "--spacing", "30", "--method", "back-projection", "--priors", str(tmp_path / "dup.csv"),
                 "--priors-crs", "EPSG:32611", "--priors-vertical-datum", "ellipsoid", "--out",
                 str(tmp_path / "out.tif"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "1 point(s) of" in err and "repeat another's position with a height that differs by up to 30.0 m" in err
