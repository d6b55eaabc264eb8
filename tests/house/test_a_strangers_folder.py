"""A stranger's real DEM and own folder, from the command line alone, as a user types the
commands: from an empty folder outside the clone, no network, no configuration or geoid
grid of their own. The wheel carries what these commands read (geoid grid, configurations,
the packaged network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[2]
SARHEIGHT = Path(sys.executable).parent / "sarheight"
#: A real Copernicus DEM on EGM96 (its compound CRS EPSG:9707 says so): the packaged crop.
ROME = ROOT / "sarheight" / "sample_data" / "rome_cop30_egm96_crop.tif"
BIG_TUJUNGA = ROOT / "sarheight" / "sample_data" / "bigtujunga_srtm30_utm11_crop.tif"

pytestmark = pytest.mark.skipif(not SARHEIGHT.is_file(), reason=f"the sarheight command is not installed beside "
                                f"{sys.executable} (pip install -e '.[ml]')")


def sarheight(folder: Path, *arguments: str, status: int = 0, file_limit: int | None = None,
              environment: dict[str, str] | None = None, memory_limit: int | None = None) -> str:
    """``sarheight ARGUMENTS`` run in ``folder`` with no network, as a user types it;
    ``file_limit``: the most bytes a file may take (``ulimit -f``), as a disk that fills
    while the output is written."""
    env = {**os.environ, "PROJ_NETWORK": "OFF", "OMP_NUM_THREADS": "1", **(environment or {})}
    env.pop("PYTHONPATH", None)

    def limited() -> None:
        import resource
        import signal

        # A write past the limit then fails (EFBIG) as one on a full disk fails (ENOSPC),
        # instead of the signal ending the process.
        if file_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
        if memory_limit:  # as a batch job's allocation bounds it
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    done = subprocess.run([str(SARHEIGHT), *arguments], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900, preexec_fn=limited if file_limit or memory_limit else None)
    assert done.returncode == status, f"{arguments}: {done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture
def folder(tmp_path):
    """An empty folder outside the clone holding the user's DEM."""
    home = tmp_path / "work"
    home.mkdir()
    shutil.copy(ROME, home / "my_dem.tif")
    return home


def test_the_wheel_carries_the_geoid_grid_the_configurations_and_the_networks(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"no wheel could be built here: {done.stderr.strip().splitlines()[-1:]}")
    (wheel,) = tmp_path.glob("sarheight-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("sarheight/geoids/egm96_15.tif", "sarheight/configs/terrain_refine.yaml",
                   "sarheight/configs/lcz_fusion.yaml", "sarheight/sample_data/terrain_refine_demo.ckpt",
                   "sarheight/sample_data/terrain_stack_demo.ckpt"):
        assert needed in names, needed


def test_a_real_egm96_dem_is_refined_by_clinometry_and_by_the_packaged_network(folder):
    out = sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif")
    assert "sim_sigma0.tif" in out and (folder / "sim_image.tif").is_file()
    with rasterio.open(folder / "sim_sigma0.tif") as src:
        assert src.crs is not None and src.descriptions == ("sigma0",)
    common = ["--dem", "my_dem.tif", "--sar", "sim_sigma0.tif", "--geometry", "synthetic", "--spacing", "10"]
    out = sarheight(folder, "terrain", "refine", *common, "--method", "clinometry", "--out", "clinometry.tif")
    assert "by clinometry" in out
    out = sarheight(folder, "terrain", "refine", *common, "--method", "network", "--out", "network.tif",
                    "--quicklook", "network.png")
    from sarheight.sample_data import ONE_IMAGE_NETWORK

    assert f"by the packaged {ONE_IMAGE_NETWORK.replace('_', '-')} network" in out
    assert "heights in metres above the EGM96 geoid" in out and "as the DEM came" in out
    for name in ("clinometry.tif", "network.tif"):
        with rasterio.open(folder / name) as src:
            heights = src.read(1)
            # Back on EGM96, as the DEM came (7-85 m), its CRS saying so (WGS 84 + EGM96 height).
            assert src.tags()["method"] in ("clinometry", "network") and src.tags()["vertical_datum"] == "egm96"
            assert src.crs.to_epsg() == 9707
            assert 0 < float(heights.min()) and float(heights.max()) < 100
    out = sarheight(folder, "terrain", "refine", *common, "--method", "clinometry", "--out-vertical-datum", "ellipsoid",
                    "--out", "ellipsoidal.tif")
    assert "heights in metres above the WGS84 ellipsoid; the DEM came in metres above the EGM96 geoid" in out
    with rasterio.open(folder / "ellipsoidal.tif") as src, rasterio.open(folder / "clinometry.tif") as geoid:
        # EGM96's undulation at Rome: about 48.6 m.
        assert 47 < float((src.read(1) - geoid.read(1)).mean()) < 50 and src.tags()["vertical_datum"] == "ellipsoid"
    out = sarheight(folder, "terrain", "refine", *common, "--method", "back-projection", "--ckpt", "x.ckpt", "--out",
                    "no.tif", status=2)
    assert "--ckpt is for --method network" in out and not (folder / "no.tif").exists()


def test_a_copernicus_dem_says_a_vertical_datum_that_overrides_its_crs(folder):
    out = sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--vertical-datum", "ellipsoid",
                    "--out", "sim.tif", "-q")
    assert "overrides the CRS of the DEM" in out and "EGM96" in out


def test_training_by_name_reports_metres_and_where_its_curves_are(folder):
    from tests.support.scenes import simulate_tiny_scenes

    simulate_tiny_scenes(folder / "scenes", size=40)
    out = sarheight(folder, "fit", "--config", "terrain_refine", "--help")
    head = "\n".join(out.splitlines()[:40])
    assert "terrain_refine" in head and "--data.scenes" in head and "--model.model" in head
    out = sarheight(folder, "fit", "--config", "terrain_refine", "--data.scenes", "scenes", "--data.val_scenes",
                    "[hills-b]", "--data.tile", "32", "--data.tiles_per_epoch", "8", "--data.batch_size", "4",
                    "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false")
    assert "validation RMSE: the model" in out and "(coarse_refined)" in out and "(coarse_height)" in out
    assert "epoch 1/1:" in out
    # Two steps an epoch: the loss is logged within it, without Lightning's warning.
    assert "logging interval" not in out
    assert "curves:" in out and (folder / "runs" / "terrain_refine" / "checkpoints" / "last.ckpt").is_file()
    assert "terrain_refine " in sarheight(folder, "configs")
    sarheight(folder, "configs", "--copy", "terrain_refine")
    assert (folder / "terrain_refine.yaml").read_text() == (ROOT / "sarheight" / "configs" /
                                                            "terrain_refine.yaml").read_text()


def test_an_interrupted_training_says_how_to_resume(folder):
    import signal
    import time

    from tests.support.scenes import simulate_tiny_scenes

    simulate_tiny_scenes(folder / "scenes", size=40)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    run = subprocess.Popen([str(SARHEIGHT), "fit", "--config", "terrain_refine", "--data.scenes", "scenes",
                            "--data.val_scenes", "[hills-b]", "--data.tile", "32", "--data.tiles_per_epoch", "8",
                            "--data.batch_size", "4", "--trainer.max_epochs", "1000",
                            "--checkpoint.every_n_train_steps",
                            "2", "--trainer.enable_progress_bar", "false"], cwd=folder, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = folder / "runs" / "terrain_refine" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    run.send_signal(signal.SIGTERM)  # as a scheduler stops a job; Ctrl-C takes the same path
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert f"its last checkpoint {last} holds step" in err and "run the same command again with --ckpt_path last" in err


def test_a_listing_whose_reader_went_away_ends_quietly(monkeypatch, capsys):
    """``sarheight configs | head -1`` where head is gone before the listing is written:
    status 141 (as a shell reports SIGPIPE), no error and no traceback."""
    from sarheight.cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w", buffering=1) as closed:  # line-buffered: each line reaches the pipe
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["configs"]) == 141
    assert capsys.readouterr().err == ""


def test_a_disk_that_fills_loses_nothing(folder):
    """The disk fills while the refined DEM is written (GDAL only logs the failed write when
    it closes the file): one line naming the folder, exit 2, nothing under the final name,
    the earlier output untouched; a temporary a killed run left is removed, with a word."""
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif", "-q")
    common = ["terrain", "refine", "--dem", "my_dem.tif", "--sar", "sim_sigma0.tif", "--geometry", "synthetic",
              "--spacing", "10", "--method", "back-projection"]
    sarheight(folder, *common, "--out", "refined.tif")
    good = (folder / "refined.tif").read_bytes()
    out = sarheight(folder, *common, "--out", "refined.tif", status=2, file_limit=len(good) // 3)
    assert f"could not write refined.tif in '{folder}'" in out and "free space or write to another folder" in out
    assert "wrote" not in out and "Traceback" not in out
    assert (folder / "refined.tif").read_bytes() == good
    assert not list(folder.glob(".*.part"))
    sarheight(folder, *common, "--out", "new.tif", status=2, file_limit=len(good) // 3)
    assert not (folder / "new.tif").exists() and not list(folder.glob(".*.part"))
    # A run killed (SIGKILL) while writing leaves its temporary; the next write removes it.
    killed = subprocess.Popen([sys.executable, "-c", "import time\nfrom sarheight.io import atomic_path\n"
                               "with atomic_path('refined.tif') as temporary:\n    print(temporary, flush=True)\n"
                               "    time.sleep(120)"], cwd=folder, stdout=subprocess.PIPE, text=True)
    stale = folder / killed.stdout.readline().strip()
    killed.kill()
    killed.wait()
    assert stale.is_file()
    out = sarheight(folder, *common, "--out", "refined.tif")
    assert f"removed 1 unfinished file(s) a killed run left beside refined.tif: {stale.name}" in out
    assert not stale.exists() and not list(folder.glob(".*.part"))


def test_the_first_run_says_it_compiles_the_kernels(folder, tmp_path):
    """On a new installation (nothing compiled in the kernels' cache) a command says, before
    its minutes of compiling, what it is doing, how long it takes and how to do it ahead;
    with the kernels compiled it says nothing of it."""
    import signal

    env = {**os.environ, "PROJ_NETWORK": "OFF", "NUMBA_CACHE_DIR": str(tmp_path / "new-cache")}
    env.pop("PYTHONPATH", None)
    run = subprocess.Popen([str(SARHEIGHT), "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif"],
                           cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = run.stderr.readline()
    run.send_signal(signal.SIGTERM)  # no need to wait for the compilation
    run.communicate(timeout=300)
    assert first.startswith("sarheight: compiling the numerical kernels (about three minutes"), first
    assert f"cached in {tmp_path / 'new-cache'}" in first and "`sarheight compile` does it ahead of time" in first
    out = sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif")
    assert "compiling" not in out


def test_an_observation_carries_the_geometry_it_was_made_under(folder):
    """A descending observation refined under the default (ascending) geometry is refused
    in one line that spells the geometry it was made under; the simulation's hint spells
    it in full."""
    out = sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--heading", "192", "--out", "d.tif")
    assert "--sar d_sigma0.tif --geometry synthetic --heading 192 --spacing M --out refined.tif" in out
    assert "..." not in out
    with rasterio.open(folder / "d_sigma0.tif") as src:
        tags = src.tags()
    assert tags["geometry_options"] == "--geometry synthetic --heading 192" and tags["geometry_look_side"] == "right"
    assert tags["dem_source_vertical_datum"] == "egm96"
    with rasterio.open(folder / "d_image.tif") as src:
        assert src.tags()["geometry_heading_deg"] == tags["geometry_heading_deg"]
    out = sarheight(folder, "terrain", "refine", "--dem", "my_dem.tif", "--sar", "d_sigma0.tif", "--geometry",
                    "synthetic", "--spacing", "10", "--method", "back-projection", "--out", "r.tif", status=2)
    (error,) = [line for line in out.splitlines()
                if not line.startswith("sarheight terrain refine: ") or ": error: " in line]  # not the progress
    assert "the SAR image 'd_sigma0.tif' was made under a synthetic geometry" in error
    assert "the heading differs" in out and "(--geometry synthetic --heading 192)" in out
    assert not (folder / "r.tif").exists()


def test_a_log_hears_from_a_long_command(folder):
    """Outside a terminal (a log, a pipe, a batch job) a command says each stage as it ends
    and, while one runs, that it is still working (every 30 s; here every fifth of a second, well within the
    refinement's stage of a second or two)."""
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif", "-q")
    out = sarheight(folder, "terrain", "refine", "--dem", "my_dem.tif", "--sar", "sim_sigma0.tif", "--geometry",
                    "synthetic", "--spacing", "10", "--method", "back-projection", "--out", "inverted.tif",
                    environment={"SARHEIGHT_PROGRESS_SECONDS": "0.2"})
    lines = out.splitlines()
    assert any(line.startswith("sarheight terrain refine: read the DEM and the geometry (1/3), ") for line in lines)
    assert any(line.startswith("sarheight terrain refine: working (1/3 stages done, the last: read the DEM")
               for line in lines)
    assert any(line.startswith("sarheight terrain refine: wrote outputs (3/3), ") for line in lines)
    quiet = sarheight(folder, "terrain", "refine", "--dem", "my_dem.tif", "--sar", "sim_sigma0.tif", "--geometry",
                      "synthetic", "--spacing", "10", "--method", "back-projection", "--out", "bp.tif", "-q",
                      environment={"SARHEIGHT_PROGRESS_SECONDS": "1"})
    assert "sarheight terrain refine:" not in quiet


def test_the_readme_chain_scores_a_coarse_copy_against_the_dem_it_came_from(folder):
    """The README's own-DEM chain: a coarse copy of the user's DEM (a realistic product,
    in the DEM's datum), refined at the DEM's cell size and scored against it beside every
    method that needs no learning."""
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif", "-q")
    out = sarheight(folder, "terrain", "coarsen", "--dem", "my_dem.tif", "--factor", "3", "--product", "realistic",
                    "--out", "coarse.tif")
    assert "3x coarser than my_dem.tif (a realistic product: shifted" in out and "(egm96)" in out
    with rasterio.open(folder / "coarse.tif") as coarse, rasterio.open(folder / "my_dem.tif") as fine:
        assert coarse.crs.to_epsg() == 9707 and coarse.res[0] == pytest.approx(3 * fine.res[0])
        # Heights on EGM96 as the DEM's (7-85 m at Rome), not ellipsoidal (48 m more).
        assert abs(float(coarse.read(1).mean()) - float(fine.read(1).mean())) < 5
    out = sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_sigma0.tif", "--geometry",
                    "synthetic", "--spacing", "26.7", "--truth", "my_dem.tif", "--out", "fine.tif")
    block = truth_block(out)
    # Without --method, the method of one image's default; with --truth, the inversion among the others.
    from sarheight.refinement import DEFAULT_METHODS

    assert f"m by {DEFAULT_METHODS['one_image']}. Without learning:" in block
    assert "clinometry (SAR physics)" in block
    assert "coarse DEM as given, bilinear" in block and "inversion (SAR physics)" in block
    # No priors were given: no method is named for them.
    assert "priors" not in block and "the best of them" in block
    out = sarheight(folder, "terrain", "coarsen", "--dem", "my_dem.tif", "--factor", "1", "--out", "x.tif", status=2)
    assert "--factor 1: give an integer of 2 or more" in out and not (folder / "x.tif").exists()


def truth_block(out: str) -> str:
    """The lines ``--truth`` prints: from "RMSE against" to "This map is"."""
    lines = out.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("RMSE against "))
    end = next(index for index, line in enumerate(lines) if line.startswith("This map is "))
    return "\n".join(lines[start:end + 1])


def _rmses(block: str) -> dict[str, float]:
    """The RMSE of every method a ``--truth`` block names (metres), the map's as "map"."""
    import re

    lines = block.splitlines()
    scores = {"map": float(re.search(r": ([0-9.]+) m by ", lines[0]).group(1))}
    for line in lines[1:]:
        found = re.fullmatch(r"  (.+): ([0-9.]+) m", line)
        if found:
            scores[found.group(1)] = float(found.group(2))
    return scores


def test_the_readme_two_pass_chain_gains_on_the_big_tujunga_sample(folder):
    """The README's chain on the packaged Big Tujunga crop, radar-geometry images as a SAFE
    gives them: the opposite pass lowers the refined map's RMSE by at least 5 %, below
    every method without learning, and raises no method's beyond 2 %."""
    shutil.copy(BIG_TUJUNGA, folder / "my_dem.tif")
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--vertical-datum", "ellipsoid",
              "--out", "sim.tif", "-q")
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--heading", "192", "--vertical-datum",
              "ellipsoid", "--out", "desc.tif", "-q")
    sarheight(folder, "terrain", "coarsen", "--dem", "my_dem.tif", "--vertical-datum", "ellipsoid", "--factor", "3",
              "--product", "realistic", "--out", "coarse.tif")
    out = sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--geometry",
                    "synthetic", "--spacing", "30", "--out", "x.tif", status=2)
    assert "bring their own geometry: leave --geometry out" in out and not (folder / "x.tif").exists()
    lines = {}
    for name, images in (("fine.tif", ["--sar", "sim_image.tif"]),
                         ("both.tif", ["--sar", "sim_image.tif", "--sar", "desc_image.tif"])):
        out = sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", *images, "--spacing", "30", "--truth",
                        "my_dem.tif", "--out", name)
        lines[name] = truth_block(out)
    one, both = _rmses(lines["fine.tif"]), _rmses(lines["both.tif"])
    assert both["map"] < 0.95 * one["map"], (lines["fine.tif"], lines["both.tif"])
    assert "below the best of them" in lines["both.tif"], lines["both.tif"]
    for method, value in one.items():
        assert both[method] <= 1.02 * value, (method, lines["fine.tif"], lines["both.tif"])


def test_a_degenerate_dem_is_refused_with_the_memory_it_would_need(folder):
    """A DEM of 2 x 20 000 cells (600 km long, 60 m wide) spans a radar window of hundreds
    of millions of pixels: within a job's memory limit it is refused before any work, in one
    line with the figure, instead of being killed minutes later without a word."""
    import numpy as np
    from rasterio.transform import from_origin

    heights = (500 + 5 * np.random.default_rng(0).normal(size=(2, 20000))).astype("float32")
    with rasterio.open(folder / "thin.tif", "w", driver="GTiff", height=2, width=20000, count=1, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(300000, 5000000, 30, 30)) as dst:
        dst.write(heights, 1)
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif", "-q")
    out = sarheight(folder, "terrain", "refine", "--dem", "thin.tif", "--vertical-datum", "ellipsoid", "--sar",
                    "sim_sigma0.tif", "--geometry", "synthetic", "--spacing", "10", "--method", "back-projection",
                    "--out", "thin_refined.tif", "-q", status=2, memory_limit=4 << 30)
    assert out.count("\n") == 1 and "radar pixels needs about" in out and "GiB available" in out, out


def test_a_file_of_the_user_beside_out_is_never_replaced(folder):
    """simulate --out X.tif also writes X_masks.tif, X_image.tif and X_sigma0.tif: one of
    the user's that bears such a name, with no X.tif beside it, is kept (one line, exit 2);
    a second run to the same --out replaces its own set."""
    (folder / "X_sigma0.tif").write_text("the user's own")
    out = sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "X.tif", "-q", status=2)
    assert "--out 'X.tif' would also write X_sigma0.tif, which exist(s) from elsewhere" in out
    assert (folder / "X_sigma0.tif").read_text() == "the user's own" and not (folder / "X.tif").exists()
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "Y.tif", "-q")
    sarheight(folder, "simulate", "my_dem.tif", "--geometry", "synthetic", "--out", "Y.tif", "-q")
