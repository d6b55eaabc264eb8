"""The torch passes over the cells' own footprints (``sarheight.compute.torch_footprints``),
held to the numba kernels on the CPU (and on a CUDA GPU where torch sees one): the cells'
positions, the share of each footprint that reverses in range and active layover, the
extent of a block's facets; in blocks of a few rows as whole."""

from __future__ import annotations

import numpy as np
import pytest

from sarheight import sample_data
from sarheight.compute import active_layover, cell_ecef, compute_for, facet_extent, layover_facing_share
from sarheight.dem import geodetic_coordinates

torch = pytest.importorskip("torch")

TORCH_DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _folded_cells(seed: int, rows: int = 40, cols: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image positions of a grid folded by relief (the sample runs back where the terrain
    rises faster than the range spreads), at the offsets of a real image (lines and
    samples in the tens of thousands), with voids, a flat patch and a patch of one line
    (determinants of exactly zero)."""
    rng = np.random.default_rng(seed)
    row, column = np.mgrid[0:rows, 0:cols].astype(np.float64)
    relief = 2.5 * np.sin(0.9 * column + 0.3 * row) + rng.normal(0.0, 0.3, (rows, cols))
    line = 1.3 * row + 0.2 * np.sin(column / 3.0) + 1.2e4
    sample = column - 0.6 * relief + 2.3e4
    sample[5:12, 30:40] = column[5:12, 30:40] + 2.3e4
    line[20:24, 10:16] = line[20, 10]
    valid = rng.random((rows, cols)) > 0.05
    valid[30:33, 2:6] = False
    return line, sample, valid


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("orientation", [1, -1])
def test_the_cells_own_layover_is_the_numba_one(device, seed, orientation, monkeypatch):
    """The share of each footprint that reverses in range, and active layover, equal the
    numba kernels' to the bit, in blocks of three rows as whole."""
    from sarheight.compute import torch_blocks

    line, sample, valid = _folded_cells(seed)
    compute = compute_for(device, backend="torch")
    expected_share = layover_facing_share(line, sample, valid, orientation)
    expected_active = active_layover(line, sample, valid, orientation)
    assert 0.05 < expected_active.mean() < 0.95 and np.isnan(expected_share).any()
    assert ((expected_share > 0) & (expected_share < 1)).any()
    for block_cells in (None, 3 * line.shape[1]):
        if block_cells is not None:
            monkeypatch.setattr(torch_blocks, "CPU_BLOCK_CELLS", block_cells)
        share = layover_facing_share(line, sample, valid, orientation, compute=compute)
        active = active_layover(line, sample, valid, orientation, compute=compute)
        assert share.dtype == np.float32 and active.dtype == np.bool_
        np.testing.assert_array_equal(share, expected_share)
        np.testing.assert_array_equal(active, expected_active)


def test_a_dem_of_one_cell_has_no_footprint_on_torch():
    compute = compute_for("cpu", backend="torch")
    one = np.ones((1, 1))
    assert np.isnan(layover_facing_share(one, one, one > 0, 1, compute=compute)).all()
    assert not active_layover(one, one, one > 0, 1, compute=compute).any()


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_the_facets_extent_is_the_numba_one(device):
    """The extent of a block's facets, for every combination of the DEM's borders, on
    folded cells with voids (at the corners too), one row, one column and none valid."""
    compute = compute_for(device, backend="torch")
    line, sample, valid = _folded_cells(3)
    valid[0, 0] = valid[-1, -1] = False
    cases = [(line, sample, valid), (line[:1], sample[:1], valid[:1]), (line[:, :1], sample[:, :1], valid[:, :1]),
             (line, sample, np.zeros_like(valid))]
    for case in cases:
        for code in range(16):
            borders = tuple(bool(code >> k & 1) for k in range(4))
            expected = facet_extent(*case, borders=borders)
            actual = facet_extent(*case, borders=borders, compute=compute)
            np.testing.assert_array_equal(actual, expected, err_msg=f"{case[0].shape}, borders {borders}")
    assert np.isnan(facet_extent(*cases[-1], compute=compute)).all()


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_the_cells_positions_are_the_numba_ones(device, monkeypatch):
    """The cells' ECEF positions on a geoid's geographic grid with voids: within a
    micrometre of the numba kernel, NaN at the same cells, in blocks as whole."""
    from sarheight.compute import torch_blocks

    dem = sample_data.rome_dem()
    lon, lat = geodetic_coordinates(dem, radians=True)
    height = np.array(dem.values, dtype=np.float64)
    height[3, 4:9] = np.nan
    expected = cell_ecef(lon, lat, height)
    compute = compute_for(device, backend="torch")
    whole = cell_ecef(lon, lat, height, compute=compute)
    monkeypatch.setattr(torch_blocks, "CPU_BLOCK_CELLS", 5 * height.shape[1])
    blocks = cell_ecef(lon, lat, height, compute=compute)
    assert whole.shape == (*height.shape, 3) and whole.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(expected))
    assert np.nanmax(np.abs(whole - expected)) <= 1e-6
    np.testing.assert_array_equal(blocks, whole)
