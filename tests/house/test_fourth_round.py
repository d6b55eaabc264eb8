"""The stranger's fourth round, typed as a user types the commands: the truth scored in
its datum, swapped inputs refused, outputs that are not plain files refused, the lock of a
checkpoint folder never followed, and one-line argument errors."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import rasterio

from .test_a_strangers_folder import BIG_TUJUNGA, ROME, sarheight, truth_block


@pytest.fixture(scope="module")
def made_once(tmp_path_factory):
    """The user's EGM96 DEM, its simulated images and a coarse copy, made by the commands
    once for the module (they take seconds each)."""
    home = tmp_path_factory.mktemp("made") / "work"
    home.mkdir()
    shutil.copy(ROME, home / "my_dem.tif")
    sarheight(home, "simulate", "--dem", "my_dem.tif", "--geometry", "synthetic", "--out", "sim.tif", "-q")
    sarheight(home, "terrain", "coarsen", "--dem", "my_dem.tif", "--factor", "3", "--out", "coarse.tif", "-q")
    return home


@pytest.fixture
def folder(tmp_path, made_once):
    """A folder outside the clone of the test's own: a copy of :func:`made_once`'s."""
    home = tmp_path / "work"
    shutil.copytree(made_once, home)
    return home


def _srtm_like(folder, name: str) -> None:
    """The user's DEM as an SRTM tile comes: plain EPSG:4326 (no vertical CRS), EGM96
    heights by the tile's convention."""
    with rasterio.open(folder / "my_dem.tif") as src:
        profile, heights = src.profile, src.read(1)
        bounds = src.bounds
        crs = src.crs
    from rasterio.warp import calculate_default_transform, reproject

    transform, width, height = calculate_default_transform(crs, "EPSG:4326", profile["width"], profile["height"],
                                                           *bounds)
    out = np.full((height, width), np.nan, dtype="float32")
    reproject(heights, out, src_transform=profile["transform"], src_crs=crs, dst_transform=transform,
              dst_crs="EPSG:4326", src_nodata=profile.get("nodata"), dst_nodata=np.nan)
    with rasterio.open(folder / name, "w", driver="GTiff", height=height, width=width, count=1, dtype="float32",
                       crs="EPSG:4326", transform=transform, nodata=np.nan) as dst:
        dst.write(out, 1)


def test_a_truth_without_a_vertical_crs_is_read_in_the_dems_datum(folder):
    """An SRTM-like truth (EPSG:4326, EGM96 by convention) beside an EGM96 DEM scores as
    the same truth with its compound CRS; said as ellipsoidal it lies tens of metres off
    and is refused in one line that names the option."""
    _srtm_like(folder, "truth_plain.tif")
    common = ["terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30",
              "--method", "back-projection"]
    plain = truth_block(sarheight(folder, *common, "--truth", "truth_plain.tif", "--out", "a.tif"))
    stated = truth_block(sarheight(folder, *common, "--truth", "truth_plain.tif", "--truth-vertical-datum", "egm96",
                                   "--out", "b.tif"))
    assert plain.splitlines()[0].split(" m by ")[0].rsplit(" ", 1)[1] == \
        stated.splitlines()[0].split(" m by ")[0].rsplit(" ", 1)[1]
    assert "has no vertical datum" not in plain
    out = sarheight(folder, *common, "--truth", "truth_plain.tif", "--truth-vertical-datum", "ellipsoid", "--out",
                    "c.tif", "-q", status=2)
    assert "another vertical datum; say its datum with --truth-vertical-datum" in out and out.count("\n") == 1
    assert not (folder / "c.tif").exists()
    with rasterio.open(folder / "a.tif") as written:
        assert float(written.tags()["truth_rmse_m"]) > 0 and written.tags()["method"] == "back-projection"


def test_the_baselines_are_the_users_own(folder):
    """The coarse DEM as given is scored before any registration, the inversion is in the
    list, and no method names priors that were not given."""
    block = truth_block(sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif",
                                  "--spacing", "30", "--method", "clinometry", "--truth", "my_dem.tif", "--out",
                                  "fine.tif"))
    assert "coarse DEM as given, bilinear: " in block and "inversion (SAR physics): " in block
    assert "priors" not in block


@pytest.mark.parametrize(("dem", "sar", "said"), [
    ("sim_sigma0.tif", "sim_sigma0.tif", "holds sigma0 (a SAR image): its band is named 'sigma0', not heights"),
    ("sim_masks.tif", "sim_sigma0.tif", "holds a layover/shadow mask"),
    ("sim_image.tif", "sim_sigma0.tif", "holds an image in radar geometry"),
    ("coarse.tif", "coarse.tif", "holds heights (its band is named 'height'), not backscatter"),
    ("coarse.tif", "my_dem.tif", "holds heights (its CRS has a vertical datum), not backscatter"),
])
def test_swapped_inputs_are_refused_in_one_line(folder, dem, sar, said):
    out = sarheight(folder, "terrain", "refine", "--dem", dem, "--sar", sar, "--geometry", "synthetic",
                    "--spacing", "30", "--out", "x.tif", "-q", status=2)
    assert said in out and out.count("\n") == 1, out
    assert not (folder / "x.tif").exists()


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null on this system")
def test_an_output_that_is_a_device_or_a_fifo_or_the_truth_is_refused(folder):
    common = ["terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30", "--method",
              "back-projection"]
    out = sarheight(folder, *common, "--out", "/dev/null", status=2)
    assert "is not a plain file (a device, a FIFO or a socket)" in out
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    os.mkfifo(folder / "pipe.tif")
    out = sarheight(folder, *common, "--out", "fine.tif", "--quicklook", "pipe.tif", status=2)
    assert "is not a plain file" in out
    before = (folder / "my_dem.tif").read_bytes()
    out = sarheight(folder, *common, "--truth", "my_dem.tif", "--out", "my_dem.tif", status=2)
    assert "is --truth, an input of this run" in out and (folder / "my_dem.tif").read_bytes() == before


def test_argument_errors_are_one_line_and_simulate_takes_dem_as_every_command(folder):
    out = sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30",
                    "--method", "kriging", "--out", "x.tif", status=2)
    assert out.count("\n") == 1 and "usage:" not in out and "invalid choice: 'kriging'" in out
    assert "(the options: sarheight terrain refine --help)" in out
    help_text = sarheight(folder, "terrain", "refine", "--help")
    assert "inversion" in help_text.split("options:")[0]
    sarheight(folder, "simulate", "--dem", "my_dem.tif", "--geometry", "synthetic", "--out", "again.tif", "-q")
    out = sarheight(folder, "simulate", "my_dem.tif", "--dem", "coarse.tif", "--geometry", "synthetic", "--out",
                    "two.tif", status=2)
    assert "two DEMs are given" in out


def test_heights_asked_above_egm2008_without_its_grid_are_refused_before_the_work(folder):
    from sarheight.dem import output_geoid_source
    from sarheight.errors import DatumError

    try:
        output_geoid_source("egm2008")
        pytest.skip("PROJ has an EGM2008 grid on this machine: EGM2008 heights can be written")
    except DatumError:
        pass
    out = sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30",
                    "--method", "back-projection", "--out-vertical-datum", "egm2008", "--out", "x.tif", "-q",
                    status=2)
    assert out.count("\n") == 1 and "need an EGM2008 grid" in out and "--geoid-grid" in out, out
    assert "(--geoid-grid" not in out and not (folder / "x.tif").exists()


def test_the_lock_of_a_checkpoint_folder_is_never_followed(tmp_path):
    from sarheight.errors import InvalidInputError
    from sarheight.training.cli import LOCK_NAME, hold_folder, release_folders

    victim = tmp_path / "precious.txt"
    victim.write_text("the user's own")
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(victim)
    with pytest.raises(InvalidInputError, match="is a symbolic link"):
        hold_folder(folder, "--trainer.default_root_dir")
    assert victim.read_text() == "the user's own"
    (folder / LOCK_NAME).unlink()
    (folder / LOCK_NAME).symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="is a symbolic link"):
        hold_folder(folder, "--trainer.default_root_dir")
    assert not (tmp_path / "nowhere").exists()
    (folder / LOCK_NAME).unlink()
    (folder / LOCK_NAME).mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        hold_folder(folder, "--trainer.default_root_dir")
    (folder / LOCK_NAME).rmdir()
    os.mkfifo(folder / LOCK_NAME)
    with pytest.raises(InvalidInputError, match="not a plain file"):
        hold_folder(folder, "--trainer.default_root_dir")
    (folder / LOCK_NAME).unlink()
    hold_folder(folder, "--trainer.default_root_dir")
    release_folders()
    assert "process" in (folder / LOCK_NAME).read_text()


def test_a_small_output_on_a_full_disk_is_refused_and_the_earlier_file_kept(folder):
    common = ["terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30", "--method",
              "back-projection", "--out", "fine.tif"]
    sarheight(folder, *common, "-q")
    before = (folder / "fine.tif").read_bytes()
    out = sarheight(folder, *common, status=2, file_limit=1)
    assert "could not write fine.tif" in out and "wrote" not in out
    assert (folder / "fine.tif").read_bytes() == before


def test_a_partial_scene_file_is_made_again_not_read(tmp_path):
    shutil.copy(BIG_TUJUNGA, tmp_path / "dem.tif")
    common = ["terrain", "scenes", "--dem", "dem.tif", "--vertical-datum", "ellipsoid", "--crop", "48", "--out",
              "scenes", "-q"]
    sarheight(tmp_path, *common)
    (first,) = sorted((tmp_path / "scenes").glob("*.nc"))[:1]
    whole = first.read_bytes()
    first.write_bytes(whole[: len(whole) // 3])
    out = sarheight(tmp_path, *common[:-1])
    assert "is not a whole scene file" in out
    assert first.stat().st_size > len(whole) // 3


def test_environments_that_would_fail_midway_are_named(tmp_path):
    from sarheight.cli import check_environment
    from sarheight.errors import SarHeightError

    with pytest.raises(SarHeightError, match="NUMBA_THREADING_LAYER='bogus': Numba knows default"):
        check_environment({"NUMBA_THREADING_LAYER": "bogus"})
    with pytest.raises(SarHeightError, match="PROJ_DATA is set but empty"):
        check_environment({"PROJ_DATA": ""})
    check_environment({"NUMBA_THREADING_LAYER": "workqueue"})
    (tmp_path / "dask").mkdir()
    (tmp_path / "dask" / "bad.yaml").write_text("distributed:\n  comm: [unclosed\n")
    with pytest.raises(SarHeightError, match=r"the dask configuration file .*bad\.yaml' is not valid YAML"):
        check_environment({"DASK_CONFIG": str(tmp_path / "dask")})
    (tmp_path / "dask" / "bad.yaml").write_text("- a list\n")
    with pytest.raises(SarHeightError, match="holds a list, where dask reads a mapping"):
        check_environment({"DASK_CONFIG": str(tmp_path / "dask" / "bad.yaml")})
    (tmp_path / "dask" / "bad.yaml").write_text("distributed:\n  comm:\n    retry: 2\n")
    check_environment({"DASK_CONFIG": str(tmp_path / "dask")})


def test_deeply_nested_geojson_priors_are_named(folder):
    (folder / "deep.geojson").write_text("[" * 100_000 + "]" * 100_000)
    out = sarheight(folder, "terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30",
                    "--method", "back-projection", "--priors", "deep.geojson", "--out", "x.tif", "-q", status=2)
    error = out.strip().splitlines()[-1]
    assert "nests its JSON thousands of levels deep" in error and out.count("error:") == 1, out


def test_a_checkpoint_that_cannot_be_resumed_is_named_before_lightning_reads_it(tmp_path):
    pytest.importorskip("lightning")
    import torch

    from sarheight import sample_data
    from sarheight.errors import InvalidInputError
    from sarheight.training.checkpoints import check_resume_checkpoint

    packaged = sample_data.path("terrain_stack_demo.ckpt")
    with pytest.raises(InvalidInputError, match="holds a model's weights only"):
        check_resume_checkpoint(packaged, "--ckpt_path")
    with pytest.raises(InvalidInputError, match="'hpc' resumes the checkpoint a SLURM requeue saves"):
        check_resume_checkpoint("hpc", "--ckpt_path")
    checkpoint = torch.load(packaged, weights_only=True)
    checkpoint.update({"pytorch-lightning_version": "2.5.0", "hyper_parameters": {
        "model": "ask_unet", "model_options": {"depth": 1_000_000}}})
    torch.save(checkpoint, tmp_path / "deep.ckpt")
    with pytest.raises(InvalidInputError, match="depth=1000000, beyond what sarheight trains"):
        check_resume_checkpoint(tmp_path / "deep.ckpt", "--ckpt_path")


def _date_like(folder, source: str, name: str, change) -> None:
    """A copy of a radar-geometry image (its tags and geometry kept) with its values changed."""
    with rasterio.open(folder / source) as src:
        profile, values, tags = src.profile, src.read(1), src.tags()
        description = src.descriptions[0]
    with rasterio.open(folder / name, "w", **profile) as dst:
        dst.write(change(values).astype(values.dtype), 1)
        dst.update_tags(**tags)
        dst.set_band_description(1, description)


def test_every_date_given_has_its_level_checked(folder):
    """A constant date among the dates is refused, a date scaled by 1e30 warned of, each
    named, before the dates are composited."""
    sarheight(folder, "simulate", "--dem", "my_dem.tif", "--geometry", "synthetic", "--seed", "1", "--out",
              "second.tif", "-q")
    _date_like(folder, "second_image.tif", "flat_image.tif", lambda values: np.where(np.isfinite(values), 0.05, values))
    _date_like(folder, "second_image.tif", "huge_image.tif", lambda values: values * 1e30)
    common = ["terrain", "refine", "--dem", "coarse.tif", "--sar", "sim_image.tif", "--spacing", "30", "--method",
              "inversion"]
    out = sarheight(folder, *common, "--sar", "flat_image.tif", "--out", "x.tif", "-q", status=2)
    assert "the observation observation 2 of 2 (flat_image) is constant" in out and out.count("\n") == 1, out
    common[-1] = "back-projection"
    out = sarheight(folder, *common, "--sar", "huge_image.tif", "--out", "y.tif")
    assert "(huge_image)'s median under the DEM is" in out, out


def test_a_refinement_too_large_for_memory_is_refused_before_the_work(folder):
    """A 1500 x 1500 DEM refined 3x finer by the inversion asks for 20 M cells: within an
    8 GiB job it is refused in one line with the figure, before any array is made."""
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    heights = (800 + np.cumsum(rng.normal(size=(1500, 1500)), axis=1)).astype("float32")
    with rasterio.open(folder / "large.tif", "w", driver="GTiff", height=1500, width=1500, count=1,
                       dtype="float32", crs="EPSG:32633", transform=from_origin(300000, 5000000, 30, 30)) as dst:
        dst.write(heights, 1)
    out = sarheight(folder, "terrain", "refine", "--dem", "large.tif", "--vertical-datum", "ellipsoid", "--sar",
                    "sim_image.tif", "--spacing", "10", "--method", "inversion", "--out", "large_fine.tif", "-q",
                    status=2, memory_limit=8 << 30)
    assert "refining a grid of 20,250,000 cells by the inversion needs about" in out and out.count("\n") == 1, out
    assert "--blocks 256" in out and not (folder / "large_fine.tif").exists()


def _changed_copy(folder, source: str, name: str, change) -> None:
    """A copy of a DEM with its heights, or its transform, changed: ``change(values,
    transform)`` returns both."""
    with rasterio.open(folder / source) as src:
        profile, values = src.profile, src.read(1)
    values, profile["transform"] = change(values.copy(), profile["transform"])
    with rasterio.open(folder / name, "w", **profile) as dst:
        dst.write(values, 1)


def test_a_dem_off_the_image_or_full_of_voids_is_named_not_the_image(folder):
    """A DEM 20 cells off the image (its georeferencing wrong) is said not to match the
    image, though both hold a pattern; a DEM of holes is named for its voids, not the
    image for its missing values."""
    from affine import Affine

    _changed_copy(folder, "coarse.tif", "off.tif", lambda values, t: (values, t * Affine.translation(20, 0)))
    out = sarheight(folder, "terrain", "refine", "--dem", "off.tif", "--sar", "sim_image.tif", "--spacing", "30",
                    "--method", "back-projection", "--out", "off_fine.tif", "-q")
    assert "matches the DEM's simulated image nowhere within 90 m" in out and "though both hold a pattern" in out, out
    assert "too little pattern" not in out and "check the DEM's CRS and georeferencing" in out, out

    def holes(values, transform):
        values[::2, ::2] = np.nan
        return values, transform

    _changed_copy(folder, "coarse.tif", "holes.tif", holes)
    out = sarheight(folder, "terrain", "refine", "--dem", "holes.tif", "--sar", "sim_image.tif", "--spacing", "30",
                    "--out", "holes_fine.tif", "-q", status=2)
    error = out.strip().splitlines()[-1]
    assert error.startswith("sarheight terrain refine: error: the DEM gives a surface in"), out
    assert "--fill-voids" in error and "observation" not in error and not (folder / "holes_fine.tif").exists()


def test_a_mountain_dem_in_feet_is_refused_by_terrain_refine(folder):
    """Big Tujunga's heights in feet: 14 % of its steps steeper than 60 degrees, refused
    before the refinement (opening it only warns)."""
    shutil.copy(BIG_TUJUNGA, folder / "mountains.tif")
    _changed_copy(folder, "mountains.tif", "feet.tif", lambda values, t: (values / 0.3048, t))
    out = sarheight(folder, "terrain", "refine", "--dem", "feet.tif", "--vertical-datum", "ellipsoid", "--sar",
                    "sim_image.tif", "--spacing", "10", "--out", "feet_fine.tif", "-q", status=2)
    error = out.strip().splitlines()[-1]
    assert error.startswith("sarheight terrain refine: error: 14 % of the coarse DEM's cell steps are steeper"), out
    assert "look like feet (multiply them by 0.3048" in error and not (folder / "feet_fine.tif").exists()
    # One line: the opening's warning of the same steps is not printed before it.
    assert out.count("steeper than 60 degrees") == 1, out


def test_a_gentle_dem_in_feet_is_named_by_the_registration(folder):
    """Rome's heights in feet (no step steeper than 60 degrees): the registration to the
    image finds the terrain's image moved along the range, and says what height error
    that is and why it may be."""
    _changed_copy(folder, "my_dem.tif", "feet.tif", lambda values, t: (values / 0.3048, t))
    out = sarheight(folder, "terrain", "refine", "--dem", "feet.tif", "--sar", "sim_image.tif", "--spacing", "10",
                    "--method", "back-projection", "--out", "feet_fine.tif", "-q")
    assert "the DEM was not registered to the image: a shift of" in out, out
    assert re.search(r"along the range: as the DEM's heights would be \d+ m too high \(heights in feet", out), out


@pytest.mark.parametrize("dem", ["my_dem.tif", "coarse.tif"])
def test_a_dem_registered_to_its_own_image_stays_within_the_stated_error(folder, dem):
    """The DEM the image was simulated from (and its exact coarse copy) registered to that
    image: not moved, or moved within 2.5 times the stated error on each axis."""
    sarheight(folder, "terrain", "refine", "--dem", dem, "--sar", "sim_image.tif", "--spacing",
              "10" if dem == "my_dem.tif" else "30", "--method", "back-projection", "--out", "self.tif", "-q")
    with rasterio.open(folder / "self.tif") as written:
        tags = written.tags()
    if int(tags["image_registration_applied"]):
        for axis in ("east", "north"):
            shift, error = (float(tags[f"image_registration_{kind}_{axis}_m"]) for kind in ("shift", "error"))
            assert abs(shift) <= 2.5 * error, (axis, shift, error)


def test_the_priors_datum_advice_names_the_priors_options():
    from sarheight.cli import build_parser
    from sarheight.cli.options import in_command_words

    said = in_command_words("pass PriorSpec(vertical_datum='egm96') or 'egm2008' to convert them, or "
                            "PriorSpec(vertical_datum='ellipsoid'); the DEM's: vertical_datum='egm96'", build_parser())
    assert said == ("pass --priors-vertical-datum 'egm96' or 'egm2008' to convert them, or --priors-vertical-datum "
                    "'ellipsoid'; the DEM's: --vertical-datum 'egm96'")
