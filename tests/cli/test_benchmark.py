"""``sarheight benchmark``: the table and JSON it writes, the run against another source
tree (alternating worker processes), and its refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sarheight.cli import main
from sarheight.cli.benchmark import timing as benchmark
from sarheight.errors import SarHeightError

REPO = Path(__file__).resolve().parents[2]


def test_terrain_has_the_slope_it_is_scaled_to_at_every_spacing():
    for n, spacing in ((64, 10.0), (48, 30.0)):
        heights = benchmark.mountain_terrain(n, spacing)
        d_row, d_col = np.gradient(heights.astype(np.float64), spacing)
        assert heights.dtype == np.float32 and heights.min() == 0.0
        assert np.sqrt(np.mean(d_row**2 + d_col**2)) == pytest.approx(benchmark.RMS_SLOPE, rel=1e-3)


def test_summary_of_repeated_runs():
    s = benchmark.summary([2.0, 1.0, 4.0], cells=1_000_000)
    assert s["best"] == 1.0 and s["median"] == 2.0
    assert s["spread"] == pytest.approx(1.5) and s["cells_per_second"] == pytest.approx(5e5)


def test_benchmark_against_a_source_tree_writes_its_table_and_json(tmp_path, capsys):
    """Both versions (here the same tree, imported through the source-tree finder) run in
    their own worker processes, in turn: one row per case, projection and step, with
    the speed-up of the medians."""
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["benchmark", "--side", "24", "--coarse-side", "16", "--projection", "exact", "--repeats", "2",
                 "--against", str(REPO), "--no-peer", "--out", str(out), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [(r["case"], r["step"]) for r in rows] == [("pixel", "simulate"), ("pixel", "reconstruct"),
                                                       ("coarse", "simulate"), ("coarse", "reconstruct")]
    labels = list(report["versions"])
    assert labels == ["this version", str(REPO)]
    assert report["versions"][str(REPO)]["source"] == str(REPO / "sarheight")
    for row in rows:
        assert row["cells"] == row["side"] ** 2 and row["threads"] >= 1
        for label in labels:
            assert len(row["versions"][label]["seconds"]) == 2
        # The speed-up is the ratio of the medians of the runs recorded.
        assert row["speedup"] == pytest.approx(statistics.median(row["versions"][labels[1]]["seconds"])
                                               / statistics.median(row["versions"][labels[0]]["seconds"]))
    # The coarse case has about 3 x 3 pixels a cell, the other about one (the radar
    # window adds a margin, large beside DEMs this small).
    pixel, coarse = rows[0], rows[2]
    assert coarse["radar_pixels"] / coarse["cells"] > 4 * pixel["radar_pixels"] / pixel["cells"]
    assert report["peer"] is None and "reference peer" not in printed
    assert "speed-up" in printed and any(line.startswith("coarse") and "16² exact" in line and "reconstruct" in line
                                         for line in printed.splitlines())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the scaling of a second thread needs two cores")
def test_thread_counts_each_run_in_a_worker_and_give_the_efficiency(tmp_path, capsys):
    out = tmp_path / "threads.json"
    assert main(["benchmark", "--side", "24", "--coarse-side", "0", "--projection", "bilinear", "--repeats", "2",
                 "--threads", "1,2", "--no-peer", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["threads"] == [1, 2]
    assert report["versions"]["this version"]["threads"] == 2
    assert report["versions"]["this version, 1 thread"]["threads"] == 1
    for row in report["results"]:
        one, two = (statistics.median(row["versions"][label]["seconds"])
                    for label in ("this version, 1 thread", "this version"))
        assert row["efficiency"]["this version"] == pytest.approx(one / two / 2)
    assert "efficiency" in capsys.readouterr().out


def test_a_device_runs_in_a_worker_of_its_own_and_gives_its_speedup():
    """``--device``: this version also on the device, run by run in turn with the CPU;
    each row its speed-up, the report the card and where each pass ran (here torch on the
    CPU stands in for a GPU, which the command asks for; ``--device cuda`` without one is
    refused)."""
    pytest.importorskip("torch")
    from sarheight.cli.benchmark.timing import run_benchmark

    report = run_benchmark(cases={"pixel": 24}, projections=("bilinear",), repeats=2, peer=False, device="cpu",
                           backend="torch", say=lambda _line: None)
    assert report["device"]["card"] == "torch on cpu"
    on_torch = report["device"]["computed_on"].split("; ")[0]
    assert on_torch.startswith("torch on cpu: cell_geometry, ") and "facet_pass_bilinear" in on_torch
    for row in report["results"]:
        cpu, device = (statistics.median(row["versions"][label]["seconds"])
                       for label in ("this version", "this version on cpu"))
        assert row["device_speedup"] == pytest.approx(cpu / device)


def test_the_reference_peer_is_timed_on_the_same_scene_where_it_is_installed(tmp_path, capsys):
    """With sarsen installed, its terrain correction is timed on each case after this
    version's runs, and the table gives this version's speed over it; without, the
    report and the table say it is not installed."""
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["benchmark", "--side", "24", "--coarse-side", "0", "--repeats", "2", "--out", str(out),
                 "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    peer = report["peer"]
    assert peer["name"] == "sarsen" and peer["method"] == "gamma_bilinear"
    if importlib.util.find_spec("sarsen") is None:
        assert peer["installed"] is False and peer["results"] == []
        assert "sarsen is not installed" in printed
        return
    assert peer["installed"] is True
    (row,) = peer["results"]
    (label,) = row["versions"]
    assert label == f"sarsen {peer['version']}" and row["cells"] == 24 * 24
    timing = row["versions"][label]
    assert len(timing["seconds"]) == 2 and timing["cells_per_second"] > 0
    ours = {(r["step"], r["projection"]): r["versions"]["this version"]["cells_per_second"]
            for r in report["results"]}
    assert row["this_version_over_peer"] == pytest.approx(
        {"reconstruct exact": ours["reconstruct", "exact"] / timing["cells_per_second"],
         "simulate bilinear": ours["simulate", "bilinear"] / timing["cells_per_second"]})
    assert "reference peer: sarsen" in printed and "x (reconstruct exact)" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_peer_reads_the_scene_that_sarheight_simulates():
    """The peer's figure is for the same work: sarsen, given the scene through
    ``peer_product``, geocodes every DEM cell where sarheight does (zero-Doppler time and
    slant range); the product's grid puts those at sarheight's line and sample; and the
    terrain correction reads the observation at the cell's nearest pixel."""
    pytest.importorskip("sarsen", reason="the reference peer (pip install sarsen) is not installed")
    import sarsen.apps
    import sarsen.orbit
    import sarsen.scene

    from sarheight.simulate import simulate
    from sarheight.simulate.cells import cell_geometry

    dem, geometry = benchmark.synthetic_scene(32, 30.0)
    observation = benchmark.speckled(simulate(dem, geometry, projection="bilinear", progress=False))
    product = benchmark.peer_product(geometry, observation, line_spacing_m=benchmark.PIXEL_SPACING)
    orbit = sarsen.orbit.OrbitPolyfitInterpolator.from_position(product.state_vectors())
    south_up = dem.isel(y=slice(None, None, -1))
    acquisition = sarsen.apps.simulate_acquisition(sarsen.scene.convert_to_dem_ecef(south_up), orbit,
                                                   include_variables=["slant_range_time", "azimuth_time"])
    cells = cell_geometry(dem, geometry)
    slant_range_time = acquisition["slant_range_time"].values[::-1]
    azimuth_time = acquisition["azimuth_time"].values[::-1]
    assert np.abs(slant_range_time * benchmark.SPEED_OF_LIGHT / 2 - cells["slant_range"]).max() < 1e-3  # m
    assert np.abs((azimuth_time - cells["azimuth_time"]) / np.timedelta64(1, "s")).max() < 1e-6
    grid = product.grid_parameters((1.0, 1.0))
    sample = (slant_range_time - grid["slant_range_time0"]) / grid["slant_range_time_interval_s"]
    line = (azimuth_time - grid["azimuth_time0"]) / np.timedelta64(1, "s") / grid["azimuth_time_interval_s"]
    assert np.abs(sample - cells["sample"]).max() < 1e-3 and np.abs(line - cells["line"]).max() < 1e-3

    result = benchmark.peer_run(dem, geometry, observation, benchmark.peer_chunks(dem.shape, 2),
                                line_spacing_m=benchmark.PIXEL_SPACING)()
    gamma0, simulated = result["gamma0"].values[::-1], result["simulated_beta0"].values[::-1]
    assert gamma0.shape == dem.shape and np.isfinite(gamma0).mean() > 0.9
    assert (simulated > 0).mean() > 0.9
    # Away from ties between two pixels, the nearest pixel is the one sarheight names.
    clear = (np.abs(cells["line"] % 1 - 0.5) > 0.01) & (np.abs(cells["sample"] % 1 - 0.5) > 0.01) & (simulated > 0)
    nearest = observation.sel(line=xr.DataArray(np.rint(cells["line"][clear]).astype(int)),
                              sample=xr.DataArray(np.rint(cells["sample"][clear]).astype(int))).values
    assert clear.mean() > 0.8
    np.testing.assert_allclose(gamma0[clear] * simulated[clear], nearest, rtol=1e-5)


def test_peer_chunks_keep_the_threads_busy_and_hold_the_overlap():
    assert benchmark.peer_chunks((2048, 2048), 2) == ((1024, 1024), (1024, 1024))
    assert benchmark.peer_chunks((1024, 1024), 2) == ((512, 512), (512, 512))
    assert benchmark.peer_chunks((1100, 300), 1) == ((550, 550), (300,))
    assert benchmark.peer_chunks((24, 24), 4) == ((24,), (24,))
    for shape, threads in (((2049, 1500), 2), ((4096, 3000), 16), ((130, 5000), 3)):
        rows, cols = benchmark.peer_chunks(shape, threads)
        assert sum(rows) == shape[0] and sum(cols) == shape[1]
        assert min(*rows, *cols) >= benchmark.PEER_BOUND and max(*rows, *cols) <= benchmark.PEER_CHUNKS
        assert len(rows) * len(cols) >= threads


def test_the_table_says_where_the_peer_is_not_installed():
    report = {"versions": {"this version": {}}, "results": [],
              "peer": {"name": "sarsen", "method": "gamma_bilinear", "installed": False, "results": []}}
    assert "sarsen is not installed (`pip install sarsen` adds its figure)" in benchmark.format_table(report)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--side", "8"], "at least 16 cells"),
    (["--repeats", "0"], "give 1 or more"),
    (["--side", "0", "--coarse-side", "0"], "leave nothing to time"),
    (["--against", "no-such-revision-or-folder"], "neither a sarheight source tree nor a revision"),
    (["--timeout", "0"], "positive number of seconds"),
    (["--threads", "0,2", "--quick"], "thread counts from 1"),
    (["--threads", "one,two", "--quick"], "separated by commas"),
    (["--device", "cpu", "--quick"], "the CPU is timed already"),
    (["--device", "gpu", "--quick"], "device must be 'cpu', 'cuda' or 'cuda:N'"),
])
def test_benchmark_refuses_bad_options_in_one_line(arguments, message, capsys):
    assert main(["benchmark", "--quick", *arguments] if arguments[0] == "--against" else ["benchmark", *arguments]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]


def test_a_version_that_fails_to_import_stops_the_run_in_one_line(tmp_path, capfd):
    """A worker that dies (here: another tree whose sarheight cannot be imported) ends the
    run with one line naming it, its error printed above by the worker itself."""
    tree = tmp_path / "broken"
    (tree / "sarheight").mkdir(parents=True)
    (tree / "kernels").mkdir()
    (tree / "sarheight" / "__init__.py").write_text("raise ImportError('a broken checkout')\n")
    (tree / "kernels" / "__init__.py").write_text("")
    assert main(["benchmark", "--side", "16", "--coarse-side", "0", "--projection", "exact", "--repeats", "1",
                 "--against", str(tree)]) == 2
    error = capfd.readouterr().err  # the worker's own stderr too
    assert "a broken checkout" in error
    assert error.strip().splitlines()[-1].startswith("sarheight benchmark: error: the benchmark's worker for")


def test_a_hung_worker_is_stopped_after_its_timeout(tmp_path):
    """A worker that does not answer (here: another tree whose import never ends) is
    killed after the timeout, and the run stops with one line saying so."""
    tree = tmp_path / "hung"
    (tree / "sarheight").mkdir(parents=True)
    (tree / "kernels").mkdir()
    (tree / "sarheight" / "__init__.py").write_text("import time\ntime.sleep(600)\n")
    (tree / "kernels" / "__init__.py").write_text("")
    worker = benchmark.Worker("the hung tree", tree, timeout=1.0)
    try:
        with pytest.raises(SarHeightError, match=r"the hung tree gave no answer in 1 s \(to prepare pixel 16 exact\)"):
            worker.ask(op="prepare", case="pixel", side=16, projection="exact")
    finally:
        worker.close()
    assert worker.process.returncode is not None


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a git checkout")
def test_a_git_revision_is_checked_out_for_the_run_and_removed_after():
    with benchmark.reference_tree("HEAD", REPO) as (label, tree):
        assert (tree / "sarheight" / "__init__.py").is_file() and (tree / "kernels").is_dir()
        assert label.startswith("HEAD (")
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert str(tree) not in listed and not tree.exists()
