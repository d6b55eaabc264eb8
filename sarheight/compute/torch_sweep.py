"""The torch backend's layover and shadow sweep (:func:`visibility_masks`): each cell judged
in its own zero-Doppler plane against the points of the other DEM columns, and the mixing
of every window line, as whole-tensor operations.

The masks are those of ``kernels.visibility`` (its module docstring states them): a cell
on line l, bracketed by window lines L0 = floor(l) and L0 + 1, is set against every other
column that one of those lines cuts, each cut at l itself on the first pair of valid
neighbouring cells (from row 0) whose lines straddle l. The numba kernel bounds most
cells' margins from two sorted profiles (about log(columns) work a cell); here every
cell's profile is built whole, the construction the kernel's bounds stand for and its
numpy twin evaluates, in the twin's arithmetic: columns x candidate pairs work a cell,
which a GPU runs in parallel over the cells of a line pair and the columns. That costs
O(rows x columns^2) over a DEM (a scene's work, not a whole footprint's; its speed on a
GPU is not measured yet); the kernel's bounds, in tensors (prefix extrema by ``torch.cummax`` over the sorted
profiles, a ``searchsorted`` per cell, the undecided cells built whole), would take it to
O(cells x log columns) for whole footprints.

Mixing: each window line cut at the line itself, the points sorted by cross-track angle
(ties in the kernel's order), shadow as the running maximum of the look angle before each
point (``torch.cummax``), and the runs of illuminated points added to the pixels they
cover through a difference array.

The pairs a cell's cut may lie on are found once: a pair of valid cells whose lines span
[lo, hi] can straddle a line of [L0, L0 + 1) only for L0 from ceil(lo) - 1 to floor(hi),
so each pair is listed under those few keys, and a key's candidates per column (its
"table", in row order) are all the pairs its cells and its line can be cut on.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..kernels.buckets import line_group, median_line_step
from .bundles import ProfileCells
from .torch_blocks import FREE_MEMORY_SHARE, as_tensor, chunk_elements

__all__ = ["sweep_fits", "visibility_masks"]

#: Elements (cells x columns x candidates) of a chunk on the CPU; on a GPU a chunk fills half
#: its free memory at :data:`BYTES_PER_ELEMENT` (the cut's dozen float64 and index arrays).
CHUNK_ELEMENTS = 1 << 24
BYTES_PER_ELEMENT = 128


class _Pairs:
    """The pairs of valid neighbouring cells along the columns, listed by the keys of the
    lines they can straddle (key b: L0 = line0 + b - 1), and each key's candidates per
    column in row order (:attr:`tables`)."""

    def __init__(self, line: torch.Tensor, valid: torch.Tensor, line0: int, n_lines: int):
        rows, cols = line.shape
        where = line.device
        self.cols = cols
        first, second = line[:-1], line[1:]
        self.lo, self.hi = torch.minimum(first, second), torch.maximum(first, second)
        usable = valid[:-1] & valid[1:]
        key_first = (torch.ceil(self.lo) - 1 - line0 + 1).clamp(min=0)
        key_last = (torch.floor(self.hi) - line0 + 1).clamp(max=n_lines)
        usable &= key_first <= key_last
        row, column = torch.nonzero(usable, as_tuple=True)
        first_key = key_first[row, column].to(torch.int64)
        counts = key_last[row, column].to(torch.int64) - first_key + 1
        owner = torch.repeat_interleave(torch.arange(row.numel(), device=where), counts)
        offset = torch.arange(owner.numel(), device=where) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts,
                                                                                      counts)
        key = first_key[owner] + offset
        group = key * cols + column[owner]
        order = torch.argsort(group * rows + row[owner])
        group, row = group[order], row[owner][order]
        # The rank of each entry among the candidates of its key and column, in row order.
        rank = torch.arange(group.numel(), device=where) - torch.searchsorted(group, group)
        width = int(rank.max()) + 1 if rank.numel() else 1
        #: (n_lines + 1, cols, m): per key and column, the first rows of its candidate pairs
        #: in row order, -1 beyond them.
        self.tables = torch.full((n_lines + 1, cols, width), -1, dtype=torch.int64, device=where)
        self.tables[group // cols, group % cols, rank] = row


def _cut(at: torch.Tensor, tables: torch.Tensor, pairs: _Pairs, line: torch.Tensor,
         fields: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Every column cut at each line of ``at`` (n,), on the candidate pairs of its table
    (``tables``: (n, cols, m), or one (cols, m) for all): whether one straddles it, the
    first such pair's first row and the weight of its second cell, and ``fields``
    interpolated there (each (n, cols)), as the numpy twin cuts them."""
    column = torch.arange(pairs.cols, device=at.device)[None, :, None]
    if tables.dim() == 2:
        tables = tables[None]
    rows = tables.clamp(min=0)
    known = tables >= 0
    lo = torch.where(known, pairs.lo[rows, column], math.nan)
    hi = torch.where(known, pairs.hi[rows, column], math.nan)
    target = at[:, None, None]
    straddles = (lo <= target) & (target <= hi)
    found = straddles.any(-1)
    first = torch.argmax(straddles.to(torch.uint8), dim=-1)  # the first of the maxima: the first pair
    i = torch.gather(rows.expand(at.numel(), -1, -1), 2, first[..., None])[..., 0]
    grid = column[..., 0].expand_as(i)
    start, end = line[i, grid], line[i + 1, grid]
    span = end - start
    weight = torch.where(span == 0.0, 0.0, (at[:, None] - start) / torch.where(span == 0.0, 1.0, span))
    values = [(1.0 - weight) * field[i, grid] + weight * field[i + 1, grid] for field in fields]
    return found, i, weight, values


def _per_chunk(width: int, where: torch.device) -> int:
    """Items of ``width`` elements each in a chunk (at least one): :data:`CHUNK_ELEMENTS`
    on the CPU, half the free memory on a GPU."""
    return max(1, chunk_elements(where, BYTES_PER_ELEMENT, CHUNK_ELEMENTS) // max(width, 1))


def _line_profiles(cells: dict[str, torch.Tensor], pairs: _Pairs, line0: int, n_lines: int
                   ) -> dict[str, torch.Tensor]:
    """Each window line's profile: per column, whether the line cuts it, and the point's
    cross-track angle, look angle, slant range, sample and whether it faces away (the
    nearer cell's flag), (n_lines, cols)."""
    line = cells["line"]
    fields = [cells[name] for name in ("cross_track", "look_angle", "slant_range", "sample")]
    width = pairs.cols * pairs.tables.shape[2]
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ("found", "ct", "eta", "rng", "smp", "away")}
    column = torch.arange(pairs.cols, device=line.device)
    step = _per_chunk(width, line.device)
    for first in range(0, n_lines, step):
        lines = torch.arange(first, min(first + step, n_lines), device=line.device)
        at = (line0 + lines).to(torch.float64)
        found, i, weight, values = _cut(at, pairs.tables[lines + 1], pairs, line, fields)
        parts["found"].append(found)
        for name, value in zip(("ct", "eta", "rng", "smp"), values, strict=True):
            parts[name].append(value)
        parts["away"].append(cells["faces_away"][torch.where(weight < 0.5, i, i + 1), column.expand_as(i)])
    return {name: torch.cat(values) for name, values in parts.items()}


def _mixing(profiles: dict[str, torch.Tensor], sample0: int, n_samples: int, range_tolerance: float
            ) -> torch.Tensor:
    """``kernels.visibility._add_mixing`` of every window line at once: per pixel, the
    separate runs of illuminated points (int64, (n_lines, n_samples))."""
    found = profiles["found"]
    n_lines, cols = found.shape
    where = found.device
    if n_lines == 0 or cols == 0:
        return torch.zeros((n_lines, n_samples), dtype=torch.int64, device=where)
    column = torch.arange(cols, device=where).expand(n_lines, cols)
    # The kernel's insertion sort starts in column order, or reversed where the last found
    # point lies before the first: ties keep that order, as a stable sort of it does.
    first = torch.where(found, column, cols).amin(1)
    last = torch.where(found, column, -1).amax(1)
    ct = profiles["ct"]
    counted = found.sum(1)
    descending = (counted > 1) & (torch.gather(ct, 1, last.clamp(min=0)[:, None])[:, 0]
                                  < torch.gather(ct, 1, first.clamp(max=cols - 1)[:, None])[:, 0])
    start = torch.where(descending[:, None], cols - 1 - column, column)
    keys = torch.where(found, ct, math.inf)
    keys = torch.gather(keys, 1, start)
    order = torch.gather(start, 1, torch.sort(keys, dim=1, stable=True).indices)
    eta, rng, smp, away, point_found = (torch.gather(profiles[name], 1, order)
                                        for name in ("eta", "rng", "smp", "away", "found"))
    # The largest look angle before each point (the kernel starts it at -1 rad).
    running = torch.cummax(torch.where(point_found, eta, -1.0), dim=1).values
    before = torch.cat([torch.full((n_lines, 1), -1.0, dtype=eta.dtype, device=where), running[:, :-1]], 1)
    before = before.clamp(min=-1.0)
    shaded = away | (eta <= before - range_tolerance / rng)
    lit = point_found & ~shaded
    pixel = torch.floor(smp + 0.5).to(torch.int64) - sample0
    none = torch.full((n_lines, 1), False, device=where)
    previous_lit = torch.cat([none, lit[:, :-1]], 1)
    previous = torch.cat([torch.zeros((n_lines, 1), dtype=torch.int64, device=where), pixel[:, :-1]], 1)
    counts = lit & ~(previous_lit & (pixel == previous))
    alone = ~previous_lit | ((pixel - previous).abs() <= 1)
    low = torch.where(alone, pixel, torch.where(pixel > previous, previous + 1, pixel))
    high = torch.where(alone, pixel, torch.where(pixel > previous, pixel, previous - 1))
    low, high = low.clamp(min=0), high.clamp(max=n_samples - 1)
    counts &= low <= high
    difference = torch.zeros((n_lines, n_samples + 1), dtype=torch.int64, device=where)
    line_index = torch.arange(n_lines, device=where)[:, None].expand_as(low)
    ones = counts.to(torch.int64)
    difference.index_put_((line_index[counts], low[counts]), ones[counts], accumulate=True)
    difference.index_put_((line_index[counts], high[counts] + 1), -ones[counts], accumulate=True)
    return torch.cumsum(difference, 1)[:, :n_samples]


#: The work (cells x columns x candidate pairs) a sweep takes on torch at most in a whole
#: run on a GPU (an estimate: not measured on one yet) and on the CPU (about half a minute
#: on two cores, from benchmarks/kernel_door/sweep_cpu.json): beyond it the run takes the
#: sweep on the numba kernels (:func:`sweep_fits`).
SWEEP_WORK_GPU = 2e11
SWEEP_WORK_CPU = 2e9
#: Bytes per window line, column and candidate pair of the profiles and candidate tables,
#: and per cell of the pairs' lists, that the sweep holds at once.
BYTES_PER_LINE_COLUMN = 32
BYTES_PER_CELL = 160


def sweep_fits(line: np.ndarray, valid: np.ndarray, window: tuple[int, int, int, int], *, device: str) -> bool:
    """Whether the sweep of cells (``line``: their fractional lines, rows along track;
    ``valid``) over ``window`` (first line, lines, first sample, samples) suits torch's
    whole profiles.

    Its work is about cells x columns x m, m the candidate pairs of a column and a key:
    one more than the DEM rows a line spans (the median step of the line along a column,
    inverted). It fits where that work is within :data:`SWEEP_WORK_GPU` on a GPU
    (:data:`SWEEP_WORK_CPU` on the CPU) and, on a GPU, the tables and profiles it holds
    (:data:`BYTES_PER_LINE_COLUMN` per window line and column and candidate,
    :data:`BYTES_PER_CELL`) within half the free memory.

    Returns
    -------
    bool : True where torch should run the sweep.
    """
    rows, cols = line.shape
    n_lines = window[1]
    where = torch.device(device)
    step = median_line_step(line, valid)
    candidates = 1.0 + (math.ceil(1.0 / step) if step else 1)
    work = float(rows) * cols * cols * candidates
    if where.type != "cuda":
        return work <= SWEEP_WORK_CPU
    held = n_lines * cols * candidates * BYTES_PER_LINE_COLUMN + rows * cols * BYTES_PER_CELL
    free, _ = torch.cuda.mem_get_info(where)
    return work <= SWEEP_WORK_GPU and held <= FREE_MEMORY_SHARE * free


def _nearer_bounds(n_lines: int, group: int, where: torch.device) -> torch.Tensor:
    """Per window line, the nearer of the sweep's bounding lines (every group-th from the
    first, and the last; the earlier at equal distance), whose mixing it takes when only
    those are cut (``kernels.visibility.visibility_lines`` without ``cut_all``)."""
    bounds = torch.tensor(sorted({*range(0, n_lines, group), n_lines - 1}), device=where)
    lines = torch.arange(n_lines, device=where)
    after = torch.searchsorted(bounds, lines)
    before = bounds[(after - 1).clamp(min=0)]
    after = bounds[after.clamp(max=bounds.numel() - 1)]
    return torch.where(lines - before <= after - lines, before, after)


def _judge(members: torch.Tensor, key: int, pairs: _Pairs, line: torch.Tensor, fields: list[torch.Tensor],
           flat: dict[str, torch.Tensor], allowed: torch.Tensor, range_tolerance: float,
           codes: tuple[int, int, int, int], out_layover: torch.Tensor, out_shadow: torch.Tensor) -> None:
    """The masks of cells ``members`` (flat indices) of key ``key``, each set against the
    columns ``allowed`` (cols,) cut at its own line, into ``out_layover``, ``out_shadow``."""
    none, active, passive, _ = codes
    cols = pairs.cols
    found, _, _, (ct, r, eta) = _cut(flat["line"][members], pairs.tables[key], pairs, line, fields)
    use = found & allowed[None] & (torch.arange(cols, device=line.device)[None] != (members % cols)[:, None])
    cross, r_cell, eta_cell = (flat[name][members] for name in ("cross_track", "slant_range", "look_angle"))
    nearer = use & (ct < cross[:, None])
    farther = use & (ct >= cross[:, None])
    forward = torch.where(nearer, r, -math.inf).amax(1) - r_cell
    backward = r_cell - torch.where(farther, r, math.inf).amin(1)
    shade = torch.where(nearer, eta, -math.inf).amax(1) - eta_cell
    overlain = (forward > range_tolerance) | (backward > range_tolerance)
    shaded = shade >= range_tolerance / r_cell
    out_layover[members] = torch.where(flat["active_layover"][members], active,
                                       torch.where(overlain, passive, none)).to(torch.uint8)
    out_shadow[members] = torch.where(flat["faces_away"][members], active,
                                      torch.where(shaded, passive, none)).to(torch.uint8)


def visibility_masks(cells: ProfileCells, window: tuple[int, int, int, int], range_tolerance: float,
                     judged: np.ndarray | None, every_line: bool, codes: tuple[int, int, int, int], *,
                     device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sarheight.compute.visibility_masks` in torch on ``device``: every judged
    cell's profile built whole (see the module's docstring); the same masks as the numba
    kernel, the same mixing."""
    where = torch.device(device)
    line0, n_lines, sample0, n_samples = window
    none, active, _, outside = codes
    t = {name: as_tensor(getattr(cells, name), where) for name in ("line", "sample", "slant_range", "look_angle",
                                                                   "cross_track")}
    for name in ("faces_away", "active_layover", "valid"):
        t[name] = torch.tensor(getattr(cells, name), dtype=torch.bool, device=where)
    valid = t["valid"]
    layover = torch.where(valid, torch.where(t["active_layover"], active, none), outside).to(torch.uint8)
    shadow = torch.where(valid, torch.where(t["faces_away"], active, none), outside).to(torch.uint8)
    rows, cols = valid.shape
    if rows < 2 or n_lines < 1:
        return (layover.cpu().numpy(), shadow.cpu().numpy(), np.zeros((n_lines, n_samples), dtype=np.uint16))
    line = t["line"]
    pairs = _Pairs(line, valid, line0, n_lines)
    profiles = _line_profiles(t, pairs, line0, n_lines)
    mixing = _mixing(profiles, sample0, n_samples, range_tolerance).clamp(max=65535)
    if not every_line:
        mixing = mixing[_nearer_bounds(n_lines, line_group(cells.line, cells.valid), where)]
    chosen = valid if judged is None else valid & torch.tensor(judged, dtype=torch.bool, device=where)
    key = torch.floor(line) - line0 + 1
    chosen &= (key >= 0) & (key <= n_lines)
    index = torch.nonzero(chosen.ravel(), as_tuple=True)[0]
    cell_key = key.ravel()[index].to(torch.int64)
    flat = {name: t[name].ravel() for name in ("line", "slant_range", "look_angle", "cross_track",
                                               "active_layover", "faces_away")}
    fields = [t["cross_track"], t["slant_range"], t["look_angle"]]
    # The columns that line L0 = line0 + key - 1 or L0 + 1 of the window cuts, per key.
    cut = torch.zeros((n_lines + 2, cols), dtype=torch.bool, device=where)
    cut[1:n_lines + 1] = profiles["found"]
    allowed = cut[:-1] | cut[1:]
    out_layover, out_shadow = layover.ravel().clone(), shadow.ravel().clone()
    # The cells by key: a key's cells share its table (broadcast, not gathered per cell).
    order = torch.argsort(cell_key, stable=True)
    index, cell_key = index[order], cell_key[order]
    bounds = torch.searchsorted(cell_key, torch.arange(n_lines + 2, device=where)).tolist()
    step = _per_chunk(cols * pairs.tables.shape[2], where)
    for bucket in range(n_lines + 1):
        for first in range(bounds[bucket], bounds[bucket + 1], step):
            members = index[first:min(first + step, bounds[bucket + 1])]
            _judge(members, bucket, pairs, line, fields, flat, allowed[bucket], range_tolerance, codes, out_layover,
                   out_shadow)
    return (out_layover.reshape(rows, cols).cpu().numpy(), out_shadow.reshape(rows, cols).cpu().numpy(),
            mixing.to(torch.int32).cpu().numpy().astype(np.uint16))
