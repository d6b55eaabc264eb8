"""The built-in demo (``sarheight demo``, ``make demo``) end to end on the real Jacksboro DEM."""

import contextlib
import io
import json

import numpy as np
import pytest
import rasterio

from sarheight.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo run once, as ``sarheight demo --quiet`` (it takes minutes): its folder and
    the figures it wrote; what it printed is kept in ``figures["printed"]``."""
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--out", str(out), "--quiet"]) == 0
    figures = json.loads((out / "figures.json").read_text())
    return out, {**figures, "printed": printed.getvalue()}


def test_demo_writes_georeferenced_products_and_quicklooks(demo_run):
    out, figures = demo_run
    for name in ("jacksboro_geocoding.tif", "jacksboro_reconstruction.tif", "jacksboro_masks.tif"):
        with rasterio.open(out / name) as src:
            assert src.crs is not None and src.crs.to_epsg() == 4326
            assert all(src.descriptions), f"{name} has unnamed bands"
    with rasterio.open(out / "jacksboro_masks.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
    for name in ("jacksboro_geocoding.png", "jacksboro_reconstruction.png"):
        assert (out / name).stat().st_size > 50_000
    assert figures["inside_image_fraction"] == 1.0
    assert 30.0 < figures["incidence_deg"][0] < figures["incidence_deg"][1] < 46.0


def test_demo_scene_has_layover_and_shadow_and_reconstruction_beats_the_alternatives(demo_run):
    _, figures = demo_run
    rec = figures["reconstruction"]
    print(f"demo: layover {rec['layover_fraction']:.2%}, shadow {rec['shadow_fraction']:.2%}, RMSE in layover "
          + ", ".join(f"{k} {v:.2f} dB" for k, v in rec["rmse_db_in_layover"].items()))
    assert rec["layover_fraction"] > 0.05
    assert rec["shadow_fraction"] > 0.001
    assert rec["layover_cells"] > 500
    rmse = rec["rmse_db_in_layover"]
    assert np.isfinite(list(rmse.values())).all()
    assert rmse["reconstructed"] < rmse["flattened"] < rmse["geocoded"]


def test_demo_terrain_step_refines_the_coarse_dem_with_the_shipped_model(demo_run):
    """The packaged one-image network on a realistic scene of a DEM it neither trained nor
    was calibrated on (the Big Tujunga crop, held out of the refinement study) with one
    date: a GeoTIFF and a quicklook, heights wherever the coarse product reaches, every
    non-learned method (the inversion of the same image among them) scored beside it on the
    same cells; the network well below the coarse DEM and within 10 % of the best of them."""
    out, figures = demo_run
    terrain = figures["terrain"]
    rmse = terrain["rmse_m"]
    print("demo terrain: " + ", ".join(f"{name} {value:.2f} m" for name, value in rmse.items()))
    assert terrain["dem"].startswith("Big Tujunga")
    with rasterio.open(out / "bigtujunga_height.tif") as src:
        assert src.crs.to_epsg() == 32611 and src.descriptions == ("height",) and src.shape == (240, 240)
        height = src.read(1)
    # The shifted product on its own grid stops short of the DEM's edges; inside it every
    # cell has a height.
    assert terrain["scored_cells"] > 0.9 * 240 * 240
    assert np.isfinite(height).sum() >= terrain["scored_cells"] and 600 < np.nanmedian(height) < 1700
    assert (out / "bigtujunga_height.png").stat().st_size > 50_000
    assert terrain["priors"] > 0 and terrain["prior_error_rms_m"] > 0
    assert {"coarse DEM, bilinear", "coarse DEM, Lanczos", "clinometry (SAR physics)",
            "inversion (SAR physics, one image)"} <= set(rmse)
    model = next(value for name, value in rmse.items() if name.endswith("refinement"))
    best = min(value for name, value in rmse.items() if not name.endswith("refinement"))
    assert np.isfinite(list(rmse.values())).all()
    assert model < 0.9 * rmse["coarse DEM, bilinear"] and model < 1.1 * best
    low, high = terrain["within_std"]
    assert 0.4 < low < high <= 1.0


def test_demo_stack_step_refines_with_every_date_of_both_passes(demo_run):
    """The packaged stack network (it ships) on the same DEM with ten dates of each pass:
    every method reads the same images, the inversion all twenty; the network below the
    coarse DEM and the back-projection, within 5 % of the best method without learning."""
    out, figures = demo_run
    stack = figures["terrain"]["stack"]
    rmse = stack["rmse_m"]
    print("demo stack: " + ", ".join(f"{name} {value:.2f} m" for name, value in rmse.items()))
    assert stack["checkpoint"] == "terrain_stack_demo.ckpt" and stack["images"] == "10 Sentinel-1 dates of each pass"
    assert "inversion (SAR physics, both passes x 10 dates)" in rmse and "ask_unet_stack refinement" in rmse
    with rasterio.open(out / "bigtujunga_stack_height.tif") as src:
        assert src.crs.to_epsg() == 32611 and src.shape == (240, 240)
        assert np.isfinite(src.read(1)).sum() >= stack["scored_cells"]
    assert (out / "bigtujunga_stack_height.png").stat().st_size > 50_000
    model = rmse["ask_unet_stack refinement"]
    best = min(value for name, value in rmse.items() if not name.endswith("refinement"))
    assert np.isfinite(list(rmse.values())).all()
    assert model < rmse["coarse DEM, bilinear"] and model < rmse["registered, back-projection, kriged priors"]
    assert model < 1.05 * best
    low, high = stack["within_std"]
    assert 0.4 < low < high <= 1.0


def test_demo_building_step_beats_the_mean_height_with_the_shipped_model(demo_run):
    """The packaged MBHR-Net (trained on other synthetic cities) on the demo's city: a
    GeoTIFF and a quicklook, and a lower error than the training cities' mean height."""
    out, figures = demo_run
    buildings = figures["buildings"]
    scores = buildings["scores"]
    print(f"demo buildings: RMSE mean height {scores['mean_height']['rmse']:.2f} m, model "
          f"{scores['model']['rmse']:.2f} m, IoU {scores['model']['iou']:.2f}")
    with rasterio.open(out / "demo_city_height.tif") as src:
        assert src.crs.to_epsg() == 32632 and src.descriptions == ("height",) and src.shape == (96, 96)
        assert src.res == (10.0, 10.0)
        height = src.read(1)
    assert np.isfinite(height).all() and height.min() >= 0
    assert (out / "demo_city_height.png").stat().st_size > 50_000
    assert buildings["scored_cells"] == 96 * 96 and buildings["building_cells"] > 500
    assert scores["model"]["rmse"] < scores["mean_height"]["rmse"]
    assert scores["model"]["iou"] > 0.5


def test_cli_demo_quiet(demo_run):
    out, figures = demo_run
    assert figures["printed"] == ""
    assert (out / "jacksboro_reconstruction.tif").is_file()


def test_cli_compile_runs_the_demo_on_a_corner_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """``sarheight compile`` (run by the install step) compiles through the demo's own calls
    on a corner of its DEM, in a temporary folder it removes."""
    import tempfile

    from sarheight import demo
    from sarheight.cli import compile_kernels

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []
    real = demo.run_demo
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: calls.append(k["dem"].shape) or real(*a, **k))
    assert main(["compile"]) == 0
    assert calls == [(compile_kernels.COMPILE_CELLS, compile_kernels.COMPILE_CELLS)]
    captured = capsys.readouterr()
    assert "compiled and cached in" in captured.out
    assert "warning" not in captured.err  # the warm-up's own inputs are nothing to warn the user of
    # Nothing of ours is left (Lightning's import makes torch's own cache folder there).
    assert [path.name for path in tmp_path.iterdir() if not path.name.startswith("torchinductor")] == []
