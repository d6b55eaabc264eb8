"""``sarheight benchmark``: the table and JSON it writes, the run against another source
tree (alternating worker processes), and its refusals."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sarheight import benchmark
from sarheight.cli import main

REPO = Path(__file__).resolve().parents[1]


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
                 "--against", str(REPO), "--out", str(out), "--plot", str(plot)]) == 0
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
    assert "speed-up" in printed and any(line.startswith("coarse") and "16² exact" in line and "reconstruct" in line
                                         for line in printed.splitlines())


@pytest.mark.parametrize(("arguments", "message"), [
    (["--side", "8"], "at least 16 cells"),
    (["--repeats", "0"], "give 1 or more"),
    (["--side", "0", "--coarse-side", "0"], "leave nothing to time"),
    (["--against", "no-such-revision-or-folder"], "neither a sarheight source tree nor a revision"),
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


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a git checkout")
def test_a_git_revision_is_checked_out_for_the_run_and_removed_after():
    with benchmark.reference_tree("HEAD", REPO) as (label, tree):
        assert (tree / "sarheight" / "__init__.py").is_file() and (tree / "kernels").is_dir()
        assert label.startswith("HEAD (")
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert str(tree) not in listed and not tree.exists()
