"""The torch backend's facet passes (:func:`facet_pass_bilinear`, :func:`facet_pass_exact`):
a tile's facets scattered into, or gathered from, the radar buffer as whole-tile tensor
operations, in the numba kernel's arithmetic (``kernels.facets``, ``kernels.facet_table``).

Both build the same facets: the sub-quads' vertices interpolated from the cell centres
(ECEF and window coordinates), each facet's vector area turned outward, its sigma and
gamma areas and what it carries (the model law, the gamma area, a user's law or weights,
a law per class). Bilinear splatting takes each sub-quad whole (its vector area from the
diagonals) and splats it on the four pixel centres nearest its centre. Exact projection
splits each sub-quad into two triangles (P Q R and P R S) and spreads what each carries
over the pixels it covers in proportion to the overlap, by Green's theorem: every edge of
the upsampled grid is walked once across the pixel borders it crosses, each piece
depositing its extent in L times the net scale of the triangles on either side (what a
triangle carries over its area in the image) with its mean S, which ``add_tile_rows``
turns into the pixels' overlaps; triangles of (almost) no area go as points. The gather is
the adjoint: each edge's integral of the ratio images' row prefix sums, each triangle's
from its three edges.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..kernels.facet_table import CONTRIBUTION_CELL_LAW, CONTRIBUTION_GAMMA, CONTRIBUTION_MODEL, CONTRIBUTION_USER
from ..kernels.facets import SLIVER_AREA
from ..kernels.radar_buffers import PAD
from .bundles import FacetLaw, FacetTile
from .torch_blocks import as_tensor, chunk_elements

__all__ = ["facet_pass_bilinear", "facet_pass_exact", "facet_tile_cells", "sigma0_model", "tabulated",
           "tabulated_rows"]

#: Pieces (edges x cuts) of one batch of the exact projection's edges on the CPU; on a GPU a
#: batch fills half its free memory at :data:`BYTES_PER_PIECE` (a piece's dozen float64s).
PIECE_ELEMENTS = 1 << 22
BYTES_PER_PIECE = 128


#: Cells of a tile of the facet passes on the CPU (torch's reference runs), and the bytes a
#: cell of a tile takes on a GPU at most (its facets' vertices, triangles and tables at
#: oversample 3, their edges' pieces: float64), from which a GPU's tiles are sized.
CPU_TILE_CELLS = 1 << 17
BYTES_PER_TILE_CELL = 16384


def facet_tile_cells(*, device: str) -> int:
    """Cells of a tile of the torch facet passes: on a GPU half its free memory at
    :data:`BYTES_PER_TILE_CELL` a cell, on the CPU :data:`CPU_TILE_CELLS`; the tiles run
    one after the other (a GPU runs a tile's cells in parallel)."""
    return chunk_elements(torch.device(device), BYTES_PER_TILE_CELL, CPU_TILE_CELLS)


def tabulated(cosine: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """A law tabulated at k * 90 / n degrees, linearly interpolated at ``cosine``; 0 facing
    away (``kernels.facet_table.tabulated``)."""
    return tabulated_rows(cosine, table[None, :], torch.zeros(cosine.shape, dtype=torch.int64, device=cosine.device))


def tabulated_rows(cosine: torch.Tensor, tables: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """:func:`tabulated` with each value's own table, row ``code`` of ``tables``."""
    theta = torch.arccos(cosine.clamp(-1.0, 1.0)) * (2.0 / math.pi) * (tables.shape[1] - 1)
    index = theta.to(torch.int64).clamp(0, tables.shape[1] - 2)
    weight = theta - index
    value = (1.0 - weight) * tables[code, index] + weight * tables[code, index + 1]
    return torch.where(cosine <= 0.0, 0.0, value)


def sigma0_model(cosine: torch.Tensor, a0: float, a1: float, a2: float) -> torch.Tensor:
    """The empirical law a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear), 0 facing away."""
    sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=0.0))
    base = sine + a1 * cosine
    return torch.where(cosine <= 0.0, 0.0, a0 * cosine / base**a2)


@dataclasses.dataclass
class _Tile:
    """A tile's own rows on the device: their cells (``usable``: valid, own columns, the
    3 x 3 neighbourhood solved), their vertices (own rows, k + 1, k cols + 1, 5: ECEF x, y,
    z and window L, S), and per sub-column its cell (``cell_of``)."""

    where: torch.device
    k: int
    cols: int
    own: torch.Tensor
    own_rows: slice
    usable: torch.Tensor
    vertices: torch.Tensor
    cell_of: torch.Tensor
    ecef: torch.Tensor
    look: torch.Tensor
    shadowed: torch.Tensor


def _tile(tile: FacetTile, origin: tuple[int, int], k: int, where: torch.device) -> _Tile:
    """The tile's own rows and their vertices, as the kernel's ``usable_cells``,
    ``column_weights`` and ``vertex_row`` make them."""
    rows, cols = tile.valid.shape
    first_row, stop_row, first_col, stop_col = tile.own
    line, sample = as_tensor(tile.line, where), as_tensor(tile.sample, where)
    ecef = as_tensor(tile.ecef, where)
    look = torch.as_tensor(np.ascontiguousarray(tile.look), device=where).to(torch.float64)
    valid = torch.as_tensor(np.ascontiguousarray(tile.valid), device=where)
    shadowed = torch.as_tensor(np.ascontiguousarray(tile.shadowed), device=where)
    own = torch.arange(first_row, stop_row, device=where)
    columns = torch.arange(cols, device=where)
    solved = ~torch.isnan(line)
    usable = valid[own] & (columns >= first_col) & (columns < stop_col)
    for di in (-1, 0, 1):
        near_rows = (own + di).clamp(0, rows - 1)
        for dj in (-1, 0, 1):
            usable &= solved[near_rows][:, (columns + dj).clamp(0, cols - 1)]
    # The vertex rows rho = i - 0.5 + a / k of each own row i, bilinear between the cells;
    # the window coordinates as the kernel forms them: the interpolated index less the
    # origin, plus half a pixel, before the columns' interpolation.
    steps = torch.arange(k + 1, device=where, dtype=torch.float64) / k
    rho = (own.to(torch.float64) - 0.5)[:, None] + steps[None, :]
    low = rho.floor().clamp(0, rows - 2).to(torch.int64)
    weight = (rho - low)[..., None]
    values = torch.cat([ecef, torch.stack([line, sample], dim=-1)], dim=-1)
    along_rows = (1.0 - weight[..., None]) * values[low] + weight[..., None] * values[low + 1]
    offsets = torch.tensor([float(origin[0]), float(origin[1])], dtype=torch.float64, device=where)
    along_rows[..., 3:] = along_rows[..., 3:] - offsets + 0.5
    kappa = torch.arange(k * cols + 1, device=where, dtype=torch.float64) / k - 0.5
    left = kappa.floor().clamp(0, cols - 2).to(torch.int64)
    column_weight = (kappa - left)[:, None]
    vertices = (1.0 - column_weight) * along_rows[:, :, left] + column_weight * along_rows[:, :, left + 1]
    return _Tile(where, k, cols, own, slice(first_row, stop_row), usable, vertices,
                 torch.arange(k * cols, device=where) // k, ecef, look, shadowed)


@dataclasses.dataclass
class _Facets:
    """The facets of a tile's own rows, (own rows, faces, k, k cols) each: the outward
    vector area (..., 3), sigma area, projected area (both 0 where the cell is not usable),
    what each carries and its gamma weight (0 unless lit), and whether its cell is usable."""

    normal: torch.Tensor
    sigma: torch.Tensor
    projected: torch.Tensor
    contribution: torch.Tensor
    gamma: torch.Tensor
    ok: torch.Tensor


def _facets(t: _Tile, e1: torch.Tensor, e2: torch.Tensor, law: FacetLaw) -> _Facets:
    """``kernels.facet_table._facet`` (then ``law_contributions``) of facets whose edges
    from their first vertex are ``e1``, ``e2`` ((own rows, faces, k, k cols, 3), ECEF)."""
    normal = 0.5 * torch.stack([e1[..., 1] * e2[..., 2] - e1[..., 2] * e2[..., 1],
                                e1[..., 2] * e2[..., 0] - e1[..., 0] * e2[..., 2],
                                e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]], dim=-1)
    centre = t.ecef[t.own][:, t.cell_of][:, None, None]
    toward = t.look[t.own][:, t.cell_of][:, None, None]
    outward = (normal[..., 0] * centre[..., 0] + normal[..., 1] * centre[..., 1]) + normal[..., 2] * centre[..., 2]
    normal = torch.where((outward < 0.0)[..., None], -normal, normal)
    sigma2 = (normal[..., 0] * normal[..., 0] + normal[..., 1] * normal[..., 1]) + normal[..., 2] * normal[..., 2]
    sigma = torch.sqrt(sigma2)
    projected = (normal[..., 0] * toward[..., 0] + normal[..., 1] * toward[..., 1]) + normal[..., 2] * toward[..., 2]
    a0, a1 = float(law.law[0]), float(law.law[1])
    across = torch.sqrt((sigma2 - projected * projected).clamp(min=0.0)) + a1 * projected
    model = a0 * projected * sigma2 * sigma / (across * across * across)
    carried = model if law.code == CONTRIBUTION_MODEL else (projected if law.code == CONTRIBUTION_GAMMA else sigma)
    ok = t.usable[:, t.cell_of][:, None, None].expand_as(sigma)
    dark = t.shadowed[t.own][:, t.cell_of][:, None, None].expand_as(sigma)
    lit = ok & (projected > 0.0) & ~dark
    zero = torch.zeros((), dtype=torch.float64, device=t.where)
    sigma_out = torch.where(ok, sigma, zero)
    projected_out = torch.where(ok, projected, zero)
    contribution = torch.where(lit, carried, zero)
    table = torch.as_tensor(np.asarray(law.table, dtype=np.float64), device=t.where)
    if table.numel() > 1 or (law.code == CONTRIBUTION_MODEL and float(law.law[2]) != 3.0):
        cosine = torch.where(sigma_out > 0.0, projected_out / torch.where(sigma_out > 0.0, sigma_out, 1.0), zero)
        value = tabulated(cosine, table) if table.numel() > 1 else sigma0_model(cosine, a0, a1, float(law.law[2]))
        contribution = torch.where(contribution != 0.0, value * sigma_out, contribution)
    return _Facets(torch.where(ok[..., None], normal, zero), sigma_out, projected_out, contribution,
                   torch.where(lit, projected, zero), ok)


def _cell_sums(t: _Tile, f: _Facets, tile: FacetTile, law: FacetLaw, keep_sums: bool,
               per_cell: list[np.ndarray]) -> None:
    """The per-cell sums over each cell's facets (faces, then sub-rows, then its k
    sub-columns, the kernel's order): the outputs, and a user's weights shared among a
    cell's lit facets or each facet's class law (``f.contribution`` updated in place)."""
    if not (keep_sums or law.code in (CONTRIBUTION_USER, CONTRIBUTION_CELL_LAW)):
        return
    n_own, faces, k = f.sigma.shape[0], f.sigma.shape[1], t.k
    cols, where = t.cols, t.where
    zero = torch.zeros((), dtype=torch.float64, device=where)
    parts = [f.normal[..., 0], f.normal[..., 1], f.normal[..., 2], f.sigma, f.projected.clamp(min=0.0),
             f.contribution]
    per_sub = [part[:, 0, 0] for part in parts]
    for face in range(faces):
        for a in range(k):
            if face == 0 and a == 0:
                continue
            per_sub = [total + part[:, face, a] for total, part in zip(per_sub, parts, strict=True)]
    cell = [total.reshape(n_own, cols, k) for total in per_sub]
    sums = [part[..., 0] for part in cell]
    for m in range(1, k):
        sums = [total + part[..., m] for total, part in zip(sums, cell, strict=True)]
    ax, ay, az, cell_sigma, cell_gamma, cell_c = sums
    norm = torch.sqrt((ax * ax + ay * ay) + az * az)
    own_look = t.look[t.own]
    dot = (ax * own_look[..., 0] + ay * own_look[..., 1]) + az * own_look[..., 2]
    cos_cell = torch.where(norm > 0.0, dot / torch.where(norm > 0.0, norm, 1.0), zero)
    in_shadow = t.shadowed[t.own]
    if law.code == CONTRIBUTION_USER:
        weights = as_tensor(np.asarray(tile.user_weight, dtype=np.float64), where)[t.own]
        share = torch.where(cell_c > 0.0, weights / torch.where(cell_c > 0.0, cell_c, 1.0), zero)
        share = torch.where(in_shadow, 1.0, share)
        f.contribution = f.contribution * share[:, t.cell_of][:, None, None]
        cell_c = cell_c * share
    elif law.code == CONTRIBUTION_CELL_LAW:
        classes_of = torch.as_tensor(np.asarray(tile.cell_class, dtype=np.int64), device=where)[t.own]
        tables = torch.as_tensor(np.asarray(law.class_tables, dtype=np.float64), device=where)
        known = (classes_of >= 0) & (classes_of < tables.shape[0]) & ~in_shadow
        factor = as_tensor(np.asarray(tile.user_weight, dtype=np.float64), where)[t.own]
        code = classes_of.clamp(0, tables.shape[0] - 1)[:, t.cell_of][:, None, None].expand_as(f.sigma)
        cosine = f.projected / torch.where(f.sigma > 0.0, f.sigma, 1.0)
        value = factor[:, t.cell_of][:, None, None] * tabulated_rows(cosine, tables, code) * f.sigma
        keep = known[:, t.cell_of][:, None, None] & (f.contribution != 0.0) & (f.sigma > 0.0)
        f.contribution = torch.where(keep, value, zero)
        cell_c = _by_cell_sequential(f.contribution, k, cols)
    if keep_sums:
        sigma_area, gamma_area, contrib_cell, cos_local = per_cell
        written = t.usable.cpu().numpy()
        for target, source in ((sigma_area, cell_sigma), (gamma_area, cell_gamma), (contrib_cell, cell_c)):
            block = target[t.own_rows]
            block[written] = source.cpu().numpy()[written]
        block = cos_local[t.own_rows]
        with_normal = written & (norm > 0.0).cpu().numpy()
        block[with_normal] = cos_cell.cpu().numpy()[with_normal]


def facet_pass_bilinear(tile: FacetTile, law: FacetLaw, buffer: np.ndarray, origin: tuple[int, int], *,
                        oversample: int, gather: bool, energy: np.ndarray, per_cell: list[np.ndarray],
                        device: str) -> None:
    """:func:`sarheight.compute.facet_pass` with bilinear splatting, in torch (float64) on
    ``device``: each sub-quad's vector area from its diagonals, what it carries splatted
    on (or read from) the four nearest pixel centres. The scatter adds into ``buffer`` in
    place."""
    rows, cols = tile.valid.shape
    first_row, stop_row, _, _ = tile.own
    if stop_row <= first_row or rows < 2 or cols < 2:
        return
    k = int(oversample)
    t = _tile(tile, origin, k, torch.device(device))
    top, bottom = t.vertices[:, :-1], t.vertices[:, 1:]  # (own rows, k, sub-columns + 1, 5)
    e1 = (bottom[:, :, 1:, :3] - top[:, :, :-1, :3])[:, None]
    e2 = (bottom[:, :, :-1, :3] - top[:, :, 1:, :3])[:, None]
    f = _facets(t, e1, e2, law)
    _cell_sums(t, f, tile, law, gather or per_cell[0].shape[0] > 0, per_cell)
    centre_l = 0.25 * (((top[..., :-1, 3] + top[..., 1:, 3]) + bottom[..., :-1, 3]) + bottom[..., 1:, 3])
    centre_s = 0.25 * (((top[..., :-1, 4] + top[..., 1:, 4]) + bottom[..., :-1, 4]) + bottom[..., 1:, 4])
    _bilinear_splat(buffer, centre_l, centre_s, f.contribution[:, 0], f.gamma[:, 0], f.ok[:, 0], gather, energy,
                    t)


def _bilinear_splat(buffer: np.ndarray, centre_l: torch.Tensor, centre_s: torch.Tensor, contribution: torch.Tensor,
                    gamma: torch.Tensor, usable: torch.Tensor, gather: bool, energy: np.ndarray, t: _Tile) -> None:
    """The sub-quads' contribution and gamma area splatted on the four pixel centres
    nearest their centre (window coordinates ``centre_l``, ``centre_s``, pixel (r, c) at
    r + 0.5), positions whose four pixels lie off the image going to the padding; or, with
    ``gather``, the ratio images read there into the cells' ``energy``."""
    where = t.where
    n_lines, n_samples = buffer.shape[0] - 2 * PAD, buffer.shape[1] - 2 * PAD
    width = buffer.shape[1]
    lc, sc = centre_l - 0.5, centre_s - 0.5
    r0, c0 = lc.floor(), sc.floor()
    wl, ws = lc - r0, sc - c0
    r0 = torch.where(r0 < -1.0, -2.0, torch.where(r0 > n_lines - 1.0, float(n_lines), r0))
    c0 = torch.where(c0 < -1.0, -2.0, torch.where(c0 > n_samples - 1.0, float(n_samples), c0))
    pixel = ((r0 + PAD) * width + (c0 + PAD)).to(torch.int64)
    corners = [(pixel, (1.0 - wl) * (1.0 - ws)), (pixel + 1, (1.0 - wl) * ws), (pixel + width, wl * (1.0 - ws)),
               (pixel + width + 1, wl * ws)]
    if gather:
        flat = torch.as_tensor(np.ascontiguousarray(buffer), device=where).reshape(-1, 2)
        safe = [torch.where(usable, index, 0) for index, _ in corners]
        v0 = sum(weight * flat[index, 0] for index, (_, weight) in zip(safe, corners, strict=True))
        v1 = sum(weight * flat[index, 1] for index, (_, weight) in zip(safe, corners, strict=True))
        zero = torch.zeros((), dtype=torch.float64, device=where)
        read0 = torch.where(usable, contribution * v0, zero)[:, None]
        read1 = torch.where(usable, gamma * v1, zero)[:, None]
        energy[0, t.own_rows] = _by_cell_sequential(read0, t.k, t.cols).cpu().numpy()
        energy[1, t.own_rows] = _by_cell_sequential(read1, t.k, t.cols).cpu().numpy()
        return
    chosen = usable.reshape(-1)
    deposits = torch.zeros(buffer.size, dtype=torch.float64, device=where)
    for index, weight in corners:
        at = index.reshape(-1)[chosen] * 2
        deposits.index_add_(0, at, (contribution * weight).reshape(-1)[chosen])
        deposits.index_add_(0, at + 1, (gamma * weight).reshape(-1)[chosen])
    buffer += deposits.reshape(buffer.shape).cpu().numpy()


def _by_cell_sequential(values: torch.Tensor, k: int, cols: int) -> torch.Tensor:
    """Values per facet (own rows, faces, k, k cols) added per cell one facet after the
    other (faces, sub-rows, sub-columns), as the kernel adds a cell's energy."""
    rows = values.shape[0]
    by_cell = values.reshape(rows, values.shape[1], k, cols, k)
    total = torch.zeros((rows, cols), dtype=torch.float64, device=values.device)
    for face in range(values.shape[1]):
        for a in range(k):
            for m in range(k):
                total = total + by_cell[:, face, a, :, m]
    return total


# --------------------------------------------------------------------------- exact projection


def _triangles(t: _Tile) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two triangles of every sub-quad (P Q R, P R S with P, Q the top vertices left
    and right, R, S the bottom ones right and left): their ECEF edges from P ((own rows,
    2, k, k cols, 3) each) and signed areas in the window (0.5 (s1 l2 - s2 l1))."""
    top, bottom = t.vertices[:, :-1], t.vertices[:, 1:]
    p, q = top[:, :, :-1], top[:, :, 1:]
    r, s = bottom[:, :, 1:], bottom[:, :, :-1]
    first = torch.stack([q - p, r - p], dim=1)   # T0: Q - P, R - P
    second = torch.stack([r - p, s - p], dim=1)  # T1: R - P, S - P
    l1, s1 = first[..., 3], first[..., 4]
    l2, s2 = second[..., 3], second[..., 4]
    area = 0.5 * (s1 * l2 - s2 * l1)
    return first[..., :3], second[..., :3], area


def _grid(t: _Tile) -> torch.Tensor:
    """The vertices of the tile's own rows as one grid ((own rows x k + 1, k cols + 1, 5):
    a row's last vertex row is the next row's first)."""
    n_own = t.vertices.shape[0]
    return torch.cat([t.vertices[:, :-1].reshape(n_own * t.k, -1, 5), t.vertices[-1:, -1]], 0)


def _edges(grid: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The edges of the grid's triangles, each once: H (along each vertex row), V (down
    each vertex column), D (from each vertex to the one below right), as (start, end)
    window coordinates ((..., 2): L, S)."""
    window = grid[..., 3:]
    return [(window[:, :-1], window[:, 1:]), (window[:-1], window[1:]), (window[:-1, :-1], window[1:, 1:])]


def _nets(scales: torch.Tensor) -> list[torch.Tensor]:
    """Per edge of :func:`_edges`, the net scale of the triangles either side (``scales``:
    (channels, sub-rows, 2, k cols), T0 and T1 of each sub-quad): H +T0 of the sub-quad
    below, -T1 of the one above; V +T0 of the sub-quad to its left, -T1 of the one to its
    right; D +T1 - T0 of its sub-quad."""
    channels, n_rows, _, n_sub = scales.shape
    t0, t1 = scales[:, :, 0], scales[:, :, 1]
    zero_row = torch.zeros((channels, 1, n_sub), dtype=scales.dtype, device=scales.device)
    zero_col = torch.zeros((channels, n_rows, 1), dtype=scales.dtype, device=scales.device)
    h = torch.cat([t0, zero_row], 1) + torch.cat([zero_row, -t1], 1)
    v = torch.cat([zero_col, t0], 2) - torch.cat([t1, zero_col], 2)
    return [h, v, t1 - t0]


def _pieces(start: torch.Tensor, end: torch.Tensor, n_lines: int, n_samples: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges (start, end: (E, 2) window L, S) cut at the pixel borders they cross, as the
    kernel's walk cuts them: per piece (E, P) its row and column (clamped to one beyond
    the image), its extent in L and f (its mean S less the column); pieces beyond an
    edge's end have no extent."""
    l0, s0 = start[:, 0], start[:, 1]
    dl, ds = end[:, 0] - l0, end[:, 1] - s0
    fl0, fl1 = torch.floor(l0), torch.floor(end[:, 0])
    fs0, fs1 = torch.floor(s0), torch.floor(end[:, 1])
    rows_crossed, cols_crossed = (fl1 - fl0).abs(), (fs1 - fs0).abs()
    most_rows, most_cols = int(rows_crossed.max()) if l0.numel() else 0, int(cols_crossed.max()) if l0.numel() else 0
    cuts = []
    for count, low, origin, delta, most in ((rows_crossed, torch.minimum(fl0, fl1), l0, dl, most_rows),
                                            (cols_crossed, torch.minimum(fs0, fs1), s0, ds, most_cols)):
        step = torch.arange(most, device=start.device, dtype=torch.float64)
        border = low[:, None] + 1.0 + step[None, :]
        fraction = (border - origin[:, None]) / delta[:, None]
        cuts.append(torch.where(step[None, :] < count[:, None], fraction, 2.0))
    ends = torch.sort(torch.cat(cuts, 1), dim=1).values.clamp(max=1.0)
    zero = torch.zeros((l0.numel(), 1), dtype=torch.float64, device=start.device)
    one = torch.ones_like(zero)
    u = torch.cat([zero, ends], 1)
    u_end = torch.cat([ends, one], 1)
    mid = 0.5 * (u + u_end)
    s_mid = s0[:, None] + ds[:, None] * mid
    row = torch.floor(l0[:, None] + dl[:, None] * mid).clamp(-1.0, float(n_lines))
    col = torch.floor(s_mid).clamp(-1.0, float(n_samples))
    extent = torch.where(u_end > u, dl[:, None] * (u_end - u), 0.0)
    return row, col, extent, s_mid - col


def _moving(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Which edges (start, end: (E, 2) window L, S) carry anything: both ends known and an
    extent in L (the kernel's walk stops at once where ``dl`` is 0)."""
    return torch.isfinite(start).all(1) & torch.isfinite(end).all(1) & (end[:, 0] != start[:, 0])


def _walk(start: torch.Tensor, end: torch.Tensor, n_lines: int, n_samples: int, width: int, visit) -> None:
    """The edges' pieces (:func:`_pieces`), in batches that keep a batch within
    :data:`PIECE_ELEMENTS` (on a GPU, half its free memory), each batch handed to ``visit(edges, pixel, extent, f)``
    (``edges`` the batch's indices, ``pixel`` flat radar-buffer indices)."""
    if start.shape[0] == 0:
        return
    crossed = ((torch.floor(end[:, 0]) - torch.floor(start[:, 0])).abs()
               + (torch.floor(end[:, 1]) - torch.floor(start[:, 1])).abs())
    order = torch.argsort(crossed)
    # Edges in order of their crossings: a batch is as wide as its last (widest) edge.
    pieces_of = (crossed[order] + 1.0).cpu().numpy()
    budget = chunk_elements(start.device, BYTES_PER_PIECE, PIECE_ELEMENTS)
    first, total = 0, order.numel()
    while first < total:
        count = min(total - first, budget)
        while count > 1 and count * pieces_of[first + count - 1] > budget:
            count //= 2
        edges = order[first:first + count]
        row, col, extent, f = _pieces(start[edges], end[edges], n_lines, n_samples)
        pixel = ((row + PAD) * width + (col + PAD)).to(torch.int64)
        visit(edges, pixel, extent, f)
        first += count


def facet_pass_exact(tile: FacetTile, law: FacetLaw, buffer: np.ndarray, origin: tuple[int, int], *,
                     oversample: int, gather: bool, energy: np.ndarray, per_cell: list[np.ndarray],
                     device: str) -> None:
    """:func:`sarheight.compute.facet_pass` with exact projection, in torch (float64) on
    ``device``: each sub-quad's two triangles, every edge of the tile's grid walked once
    across the pixel borders (see the module's docstring), slivers as points. The scatter
    adds into ``buffer`` (``scatter_buffer_shape(..., exact=True)``) in place; the gather
    reads a radar buffer of the ratio images' row prefix sums."""
    rows, cols = tile.valid.shape
    first_row, stop_row, _, _ = tile.own
    if stop_row <= first_row or rows < 2 or cols < 2:
        return
    k = int(oversample)
    where = torch.device(device)
    t = _tile(tile, origin, k, where)
    e1, e2, window_area = _triangles(t)
    f = _facets(t, e1, e2, law)
    _cell_sums(t, f, tile, law, gather or per_cell[0].shape[0] > 0, per_cell)
    area = torch.where(f.ok & ~torch.isnan(window_area), window_area, 0.0)
    carries = (f.contribution != 0.0) | (f.gamma != 0.0)
    sliver = (area.abs() < SLIVER_AREA) & carries
    inverse = torch.where((area != 0.0) & ~sliver, 1.0 / torch.where(area != 0.0, area, 1.0), 0.0)
    n_own, n_sub = area.shape[0], area.shape[3]
    # By the tile's sub-rows (own row and a together), as the edges of _grid run.
    scales = torch.stack([f.contribution * inverse, f.gamma * inverse]).permute(0, 1, 3, 2, 4).reshape(
        2, n_own * k, 2, n_sub)
    n_lines, n_samples = buffer.shape[0] - 2 * PAD, buffer.shape[1] - 2 * PAD
    width = buffer.shape[1]
    edges = _edges(_grid(t))
    points, pixel = _slivers(t, sliver, n_lines, n_samples, width)
    if gather:
        _gather_exact(t, edges, scales, f, points, pixel, buffer, energy, n_lines, n_samples, width)
        return
    deposits = torch.zeros(buffer.size, dtype=torch.float64, device=where)
    for (start, end), net in zip(edges, _nets(scales), strict=True):
        start, end, net = start.reshape(-1, 2), end.reshape(-1, 2), net.reshape(2, -1)
        chosen = torch.nonzero(_moving(start, end) & ((net[0] != 0.0) | (net[1] != 0.0)), as_tuple=True)[0]

        def deposit(batch: torch.Tensor, at: torch.Tensor, extent: torch.Tensor, fraction: torch.Tensor,
                    chosen: torch.Tensor = chosen, net: torch.Tensor = net) -> None:
            v0 = extent * net[0, chosen[batch]][:, None]
            v1 = extent * net[1, chosen[batch]][:, None]
            for slot, value in enumerate((v0, v1, v0 * fraction, v1 * fraction)):
                deposits.index_add_(0, at.reshape(-1) * 4 + slot, value.reshape(-1))

        _walk(start[chosen], end[chosen], n_lines, n_samples, width, deposit)
    # Slivers as points: what they carry added to their pixel alone (v f with no v).
    deposits.index_add_(0, pixel * 4 + 2, f.contribution[points])
    deposits.index_add_(0, pixel * 4 + 3, f.gamma[points])
    buffer += deposits.reshape(buffer.shape).cpu().numpy()


def _slivers(t: _Tile, sliver: torch.Tensor, n_lines: int, n_samples: int, width: int
             ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The triangles of (almost) no area in the window that carry something and whose
    centroid lies in the image (``kernels.facets._slivers``): their indices into the
    facets and the flat radar-buffer index of their centroid's pixel."""
    top, bottom = t.vertices[:, :-1], t.vertices[:, 1:]
    p, q = top[:, :, :-1, 3:], top[:, :, 1:, 3:]
    r, s = bottom[:, :, 1:, 3:], bottom[:, :, :-1, 3:]
    centroid = torch.stack([((p + q) + r) / 3.0, ((p + r) + s) / 3.0], dim=1)
    row, col = torch.floor(centroid[..., 0]), torch.floor(centroid[..., 1])
    inside = (row >= 0) & (row < n_lines) & (col >= 0) & (col < n_samples)  # False for NaN
    points = torch.nonzero(sliver & inside, as_tuple=True)
    pixel = ((row[points] + PAD) * width + (col[points] + PAD)).to(torch.int64)
    return points, pixel


def _gather_exact(t: _Tile, edges: list[tuple[torch.Tensor, torch.Tensor]], scales: torch.Tensor, f: _Facets,
                  points: tuple[torch.Tensor, ...], pixel: torch.Tensor, buffer: np.ndarray, energy: np.ndarray,
                  n_lines: int, n_samples: int, width: int) -> None:
    """The exact projection's gather (``kernels.facets._gather_row``): each edge's integral
    of the ratio images' row prefix sums, each triangle's integral from its three edges
    times its scales, summed per cell, the slivers read at their pixel; into ``energy``."""
    where = t.where
    prefix = torch.as_tensor(np.ascontiguousarray(buffer), device=where).reshape(-1, 2)
    integrals = []
    for start, end in edges:
        shape = start.shape[:-1]
        start, end = start.reshape(-1, 2), end.reshape(-1, 2)
        total = torch.zeros((2, start.shape[0]), dtype=torch.float64, device=where)
        chosen = torch.nonzero(_moving(start, end), as_tuple=True)[0]

        def integrate(batch: torch.Tensor, at: torch.Tensor, extent: torch.Tensor, fraction: torch.Tensor,
                      chosen: torch.Tensor = chosen, total: torch.Tensor = total) -> None:
            left, right = prefix[at - 1], prefix[at]
            for channel in range(2):
                read = extent * (left[..., channel] + fraction * (right[..., channel] - left[..., channel]))
                total[channel, chosen[batch]] = read.sum(1)

        _walk(start[chosen], end[chosen], n_lines, n_samples, width, integrate)
        integrals.append(total.reshape(2, *shape))
    h, v, d = integrals
    t0 = h[:, :-1] + v[:, :, 1:] - d
    t1 = d - h[:, 1:] - v[:, :, :-1]
    n_own, k = t.vertices.shape[0], t.k
    per_facet = (scales[:, :, 0] * t0 + scales[:, :, 1] * t1).reshape(2, n_own, k, -1)
    per_sub = per_facet[:, :, 0]
    for a in range(1, k):
        per_sub = per_sub + per_facet[:, :, a]
    cells = per_sub.reshape(2, n_own, t.cols, k)
    total = torch.zeros((2, n_own, t.cols), dtype=torch.float64, device=where)
    if points[0].numel():
        # The slivers read as points (the ratio at their pixel: the prefix sums' step).
        value = prefix[pixel] - prefix[pixel - 1]
        cell = t.cell_of[points[3]]
        total[0].index_put_((points[0], cell), f.contribution[points] * value[:, 0], accumulate=True)
        total[1].index_put_((points[0], cell), f.gamma[points] * value[:, 1], accumulate=True)
    for m in range(k):
        total = total + cells[..., m]
    energy[:, t.own_rows] = total.cpu().numpy()
