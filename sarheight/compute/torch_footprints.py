"""The torch backend's passes over the cells' own footprints: their ECEF positions
(:func:`cell_ecef`), the share of each footprint that reverses in range and active layover
(:func:`layover_facing_share`, :func:`active_layover`), and the extent in the image of a
block's facets (:func:`facet_extent`).

Each is the numba kernel's arithmetic written as whole-array operations in the same
order (``kernels.facing``, ``kernels.radar_buffers.facet_extent_rows``), so that the
counts, the flags and the extent are the kernels' bit for bit; the positions are those
of torch's own ``cell_geometry``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..kernels.facing import FACING_SUBPOINTS
from .torch_blocks import as_tensor, block_rows, grid_positions

__all__ = ["active_layover", "cell_ecef", "facet_extent", "layover_facing_share"]

#: Bytes of the device's memory a cell of a footprint pass takes at most (the cell's
#: values, its neighbours', a quadrant's corners and determinants; float64).
FOOTPRINT_BYTES_PER_CELL = 512


def cell_ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.cell_ecef` in torch (float64) on ``device``: the positions
    torch's ``cell_geometry`` makes, to the last bit (NaN for void heights)."""
    where = torch.device(device)
    rows, cols = height.shape
    out = np.empty((rows, cols, 3))
    step = block_rows(rows, cols, where)
    for start in range(0, rows, step):
        block = slice(start, min(rows, start + step))
        out[block] = grid_positions(lon_rad, lat_rad, height, block, where).cpu().numpy()
    return out


def _shifted(values: torch.Tensor, dr: int, dc: int, fill: float | bool) -> torch.Tensor:
    """``values`` moved so that each cell holds its neighbour at (row + dr, column + dc);
    ``fill`` beyond the grid."""
    rows, cols = values.shape
    out = torch.full_like(values, fill)
    out[max(0, -dr):rows - max(0, dr), max(0, -dc):cols - max(0, dc)] = \
        values[max(0, dr):rows - max(0, -dr), max(0, dc):cols - max(0, -dc)]
    return out


def _quadrant_reversing(l00: torch.Tensor, l10: torch.Tensor, l01: torch.Tensor, l11: torch.Tensor,
                        s00: torch.Tensor, s10: torch.Tensor, s01: torch.Tensor, s11: torch.Tensor,
                        sign: int) -> torch.Tensor:
    """``kernels.facing._quadrant_reversing`` over whole arrays: of each quadrant's
    sub-points, how many are range-reversing (int64), the corners' shortcut taken where
    the kernel takes it."""
    n = FACING_SUBPOINTS
    d00 = sign * ((l10 - l00) * (s01 - s00) - (l01 - l00) * (s10 - s00))
    d10 = sign * ((l10 - l00) * (s11 - s10) - (l11 - l10) * (s10 - s00))
    d01 = sign * ((l11 - l01) * (s01 - s00) - (l01 - l00) * (s11 - s01))
    d11 = sign * ((l11 - l01) * (s11 - s10) - (l11 - l10) * (s11 - s01))
    bound = 1e-12 * (torch.maximum((l10 - l00).abs(), (l11 - l01).abs())
                     * torch.maximum((s01 - s00).abs(), (s11 - s10).abs())
                     + torch.maximum((l01 - l00).abs(), (l11 - l10).abs())
                     * torch.maximum((s10 - s00).abs(), (s11 - s01).abs()))
    # torch.maximum passes a NaN on, as the kernel's max does not: the shortcut is taken
    # only where every corner compares, which a NaN bound never does.
    facing = (d00 > bound) & (d10 > bound) & (d01 > bound) & (d11 > bound)
    away = (d00 < -bound) & (d10 < -bound) & (d01 < -bound) & (d11 < -bound)
    reversing = torch.zeros(l00.shape, dtype=torch.int64, device=l00.device)
    for p in range(n):
        a = (p + 0.5) / n
        lb = (1.0 - a) * (l01 - l00) + a * (l11 - l10)
        sb = (1.0 - a) * (s01 - s00) + a * (s11 - s10)
        for q in range(n):
            b = (q + 0.5) / n
            la = (1.0 - b) * (l10 - l00) + b * (l11 - l01)
            sa = (1.0 - b) * (s10 - s00) + b * (s11 - s01)
            reversing += (sign * (la * sb - lb * sa) < 0.0).to(torch.int64)
    return torch.where(facing, 0, torch.where(away, n * n, reversing))


def _footprint_counts(line: torch.Tensor, sample: torch.Tensor, valid: torch.Tensor, orientation: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernels.facing._facing_row`` over a block of rows: of each cell's footprint
    sub-points, how many are range-reversing and how many are sampled (int64; both 0
    where the cell is void)."""
    n = FACING_SUBPOINTS
    reversing = torch.zeros(line.shape, dtype=torch.int64, device=line.device)
    sampled = torch.zeros_like(reversing)
    for quadrant in range(4):
        dr = -1 if quadrant < 2 else 1
        dc = -1 if quadrant % 2 == 0 else 1
        taken = (valid & _shifted(valid, dr, 0, False) & _shifted(valid, 0, dc, False)
                 & _shifted(valid, dr, dc, False))
        l00, s00 = line, sample
        steps = ((dr, 0), (0, dc), (dr, dc))  # the row neighbour, the column neighbour, the corner
        l_row, l_column, l_corner = (_shifted(line, *step, math.nan) for step in steps)
        s_row, s_column, s_corner = (_shifted(sample, *step, math.nan) for step in steps)
        counts = _quadrant_reversing(
            l00, 0.5 * (l00 + l_row), 0.5 * (l00 + l_column), 0.25 * (l00 + l_row + l_column + l_corner),
            s00, 0.5 * (s00 + s_row), 0.5 * (s00 + s_column), 0.25 * (s00 + s_row + s_column + s_corner),
            orientation * dr * dc)
        reversing += torch.where(taken, counts, 0)
        sampled += torch.where(taken, n * n, 0)
    return reversing, sampled


def _own_footprints(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, device: str,
                    finish, dtype: type) -> np.ndarray:
    """A pass over the cells' own footprints on blocks of rows (each with a row of its
    neighbours either side), ``finish(reversing, sampled)`` of each block into a new
    array of ``dtype``."""
    where = torch.device(device)
    rows, cols = line.shape
    out = np.empty((rows, cols), dtype=dtype)
    step = block_rows(rows, cols, where, FOOTPRINT_BYTES_PER_CELL)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        first, last = max(0, start - 1), min(rows, stop + 1)
        block_line, block_sample = (as_tensor(values[first:last], where) for values in (line, sample))
        block_valid = torch.tensor(valid[first:last], dtype=torch.bool, device=where)
        reversing, sampled = _footprint_counts(block_line, block_sample, block_valid, orientation)
        own = slice(start - first, stop - first)
        out[start:stop] = finish(reversing[own], sampled[own]).cpu().numpy()
    return out


def layover_facing_share(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, *,
                         device: str) -> np.ndarray:
    """:func:`sarheight.compute.layover_facing_share` in torch on ``device``: the
    kernel's counts, their share as the kernel divides them (float64, then float32)."""
    def share(reversing: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
        ratio = reversing.to(torch.float64) / sampled.clamp(min=1).to(torch.float64)
        return torch.where(sampled > 0, ratio, math.nan).to(torch.float32)

    return _own_footprints(line, sample, valid, orientation, device, share, np.float32)


def active_layover(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, *,
                   device: str) -> np.ndarray:
    """:func:`sarheight.compute.active_layover` in torch on ``device``: more than half of
    the footprint's sub-points range-reversing, compared in integers as the kernel does."""
    return _own_footprints(line, sample, valid, orientation, device,
                           lambda reversing, sampled: 2 * reversing > sampled, np.bool_)


def _vertices(line: torch.Tensor, sample: torch.Tensor, valid: torch.Tensor, rho: torch.Tensor,
              kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernels.radar_buffers._vertex_at`` over many vertices (fractional rows ``rho``
    and columns ``kappa``): their line and sample, NaN where one of the four centres they
    take is void."""
    rows, cols = line.shape
    i0 = torch.floor(rho).to(torch.int64).clamp(0, rows - 2)
    j0 = torch.floor(kappa).to(torch.int64).clamp(0, cols - 2)
    wr, w = rho - i0.to(torch.float64), kappa - j0.to(torch.float64)
    known = valid[i0, j0] & valid[i0 + 1, j0] & valid[i0, j0 + 1] & valid[i0 + 1, j0 + 1]
    values = []
    for field in (line, sample):
        value = ((1.0 - w) * ((1.0 - wr) * field[i0, j0] + wr * field[i0 + 1, j0])
                 + w * ((1.0 - wr) * field[i0, j0 + 1] + wr * field[i0 + 1, j0 + 1]))
        values.append(torch.where(known, value, math.nan))
    return values[0], values[1]


def facet_extent(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, borders: tuple[bool, bool, bool, bool], *,
                 device: str) -> tuple[float, float, float, float]:
    """:func:`sarheight.compute.facet_extent` in torch on ``device``: the extremes of the
    valid centres and of the vertices the kernel extrapolates along the DEM's borders,
    each vertex made by the kernel's arithmetic, so the extent is the kernel's bit for bit."""
    where = torch.device(device)
    line_t, sample_t = (as_tensor(values, where) for values in (line, sample))
    valid_t = torch.tensor(valid, dtype=torch.bool, device=where)
    rows, cols = line_t.shape
    known = valid_t & ~torch.isnan(line_t) & ~torch.isnan(sample_t)
    if not bool(known.any()):
        return math.nan, math.nan, math.nan, math.nan
    lines, samples = [line_t[known]], [sample_t[known]]
    top, bottom, left, right = borders
    if rows >= 2 and cols >= 2:
        along_row = torch.arange(-1 if left else 0, cols + 1 if right else cols, device=where).to(torch.float64)
        along_row = torch.where(along_row < 0, -0.5, torch.where(along_row == cols, cols - 0.5, along_row))
        along_column = torch.arange(rows, device=where).to(torch.float64)
        edges = [(torch.full_like(along_row, rho), along_row)
                 for rho, border in ((-0.5, top), (rows - 0.5, bottom)) if border]
        edges += [(along_column, torch.full_like(along_column, kappa))
                  for kappa, border in ((-0.5, left), (cols - 0.5, right)) if border]
        for rho, kappa in edges:
            vertex_line, vertex_sample = _vertices(line_t, sample_t, valid_t, rho, kappa)
            kept = ~torch.isnan(vertex_line) & ~torch.isnan(vertex_sample)
            lines.append(vertex_line[kept])
            samples.append(vertex_sample[kept])
    every_line, every_sample = torch.cat(lines), torch.cat(samples)
    return (float(every_line.min()), float(every_line.max()), float(every_sample.min()),
            float(every_sample.max()))
