"""The torch layover and shadow sweep (``sarheight.compute.torch_sweep``) held to the numba
kernel on the CPU (and on a CUDA GPU where torch sees one): the same masks and the same
mixing, every line cut or only the groups' bounds, a selection of cells judged, on rough
terrain under both look sides, rows across track, lines cut short, voids, several cells of
a column between two lines and many lines per cell."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.compute import ProfileCells, compute_for, visibility_masks
from sarheight.masks import kernel_codes
from sarheight.simulate.cells import cell_geometry, radar_window, rows_run_along_track
from tests.support.scenes import SWEEP_CASES, masks_geometry, sweep_dem

torch = pytest.importorskip("torch")

TORCH_DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _profile_cells(seed, heading, look_side, window, line_spacing):
    """The cells of a rough DEM as the sweep reads them (rows along track), the window and
    the tolerance, as the twin's test makes them."""
    dem = sweep_dem(seed, window)
    geometry = masks_geometry(dem, 30.0, heading, look_side, line_spacing=line_spacing)
    cells = cell_geometry(dem, geometry)
    line0, n_lines, sample0, n_samples = radar_window(cells["line"], cells["sample"], cells["valid"], geometry)
    if window == "middle":
        line0, n_lines = line0 + n_lines // 3, n_lines // 3
    arrays = [cells[name] for name in ("line", "sample", "slant_range", "look_angle", "cross_track")]
    arrays += [cells["faces_away"], cells["active_layover"], cells["valid"]]
    if not rows_run_along_track(cells["line"]):
        arrays = [np.ascontiguousarray(a.T) for a in arrays]
    return ProfileCells(*arrays), (line0, n_lines, sample0, n_samples), 0.05 * geometry.grid.range_spacing


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize(("seed", "heading", "look_side", "window", "line_spacing"), SWEEP_CASES)
def test_the_sweep_on_torch_is_the_numba_one(device, seed, heading, look_side, window, line_spacing):
    cells, box, tolerance = _profile_cells(seed, heading, look_side, window, line_spacing)
    compute = compute_for(device, backend="torch")
    for every_line in (True, False):
        expected = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(),
                                    every_line=every_line)
        actual = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(),
                                  every_line=every_line, compute=compute)
        for name, left, right in zip(("layover", "shadow", "mixing"), actual, expected, strict=True):
            assert left.dtype == right.dtype and left.shape == right.shape, name
            np.testing.assert_array_equal(left, right, err_msg=f"{name}, every line {every_line}")
    layover, shadow, mixing = expected
    inside = cells.valid & (layover != 255)
    assert np.mean(layover[inside] == 2) > 0.01 and np.any(shadow == 2) and mixing.max() >= 2


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 1000), heading=st.floats(0.0, 359.0), look_side=st.sampled_from(["right", "left"]),
       line_spacing=st.sampled_from([5.0, 15.0, 30.0]))
def test_the_sweep_on_torch_is_the_numba_one_on_any_terrain(seed, heading, look_side, line_spacing):
    cells, box, tolerance = _profile_cells(seed, heading, look_side, "full", line_spacing)
    expected = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes())
    actual = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(),
                              compute=compute_for("cpu", backend="torch"))
    for name, left, right in zip(("layover", "shadow", "mixing"), actual, expected, strict=True):
        np.testing.assert_array_equal(left, right, err_msg=name)


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_a_selection_of_cells_is_judged_alone_on_torch(device):
    cells, box, tolerance = _profile_cells(11, 10.0, "right", "full", 15.0)
    judged = np.zeros_like(cells.valid)
    judged[::2, 1::3] = True
    compute = compute_for(device, backend="torch")
    expected = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(), judged=judged)
    actual = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(), judged=judged,
                              compute=compute)
    for left, right in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(left, right)


def test_the_sweep_in_small_chunks_is_the_sweep_whole(monkeypatch):
    """Chunks of a few cells and lines (a GPU's chunks follow its free memory) give the
    same masks and mixing."""
    from sarheight.compute import torch_sweep

    cells, box, tolerance = _profile_cells(16, 40.0, "right", "full", 45.0)
    compute = compute_for("cpu", backend="torch")
    whole = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(), compute=compute)
    monkeypatch.setattr(torch_sweep, "CHUNK_ELEMENTS", 3 * cells.line.shape[1])
    chunked = visibility_masks(cells, box, range_tolerance=tolerance, codes=kernel_codes(), compute=compute)
    for left, right in zip(chunked, whole, strict=True):
        np.testing.assert_array_equal(left, right)


def test_a_run_takes_a_sweep_too_large_for_torch_on_numba_and_says_so(monkeypatch):
    """A whole run on torch (as on a GPU) whose window is beyond what torch's whole
    profiles should take runs the sweep on the numba kernels, the same masks, and its
    ``computed_on`` says so; below the limit the sweep is torch's."""
    from sarheight.compute import torch_sweep
    from sarheight.reconstruction import reconstruct
    from sarheight.simulate import simulate_sar
    from tests.support.scenes import synthetic_geometry

    dem = sweep_dem(11, "full")
    geometry = synthetic_geometry(dem, 35.0, 350.0, "right")
    observation = simulate_sar(dem, geometry, seed=3)
    expected = reconstruct(dem, observation, geometry, projection="bilinear", progress=False)
    run = compute_for("cpu", backend="torch", fallback=True)
    on_torch = reconstruct(dem, observation, geometry, projection="bilinear", progress=False, device=run)
    assert "visibility_masks" in on_torch.attrs["computed_on"].split("; ")[0]
    monkeypatch.setattr(torch_sweep, "SWEEP_WORK_CPU", 0.0)
    too_large = reconstruct(dem, observation, geometry, projection="bilinear", progress=False, device=run)
    assert too_large.attrs["computed_on"].endswith("; numba on cpu: visibility_masks")
    for mask in ("layover", "shadow", "mixing"):
        np.testing.assert_array_equal(too_large[mask].values, expected[mask].values)
        np.testing.assert_array_equal(on_torch[mask].values, expected[mask].values)


def test_a_dem_of_one_row_has_its_initial_masks_on_torch():
    cells, box, tolerance = _profile_cells(11, 10.0, "right", "full", 15.0)
    one = ProfileCells(*(array[:1] for array in cells.arrays()))
    expected = visibility_masks(one, box, range_tolerance=tolerance, codes=kernel_codes())
    actual = visibility_masks(one, box, range_tolerance=tolerance, codes=kernel_codes(),
                              compute=compute_for("cpu", backend="torch"))
    for left, right in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(left, right)
