"""Vectorised-numpy twin of the reconstruction's core for bilinear projection.

The twin of ``kernels.facets.facet_pass`` (bilinear splatting, contributions "model"
or "gamma") followed by the energy reallocation of ``sarheight.layover.reallocate``:

1. facets: every usable DEM cell is split into ``k x k`` sub-quads; sub-vertex ECEF
   positions and radar coordinates are bilinear between the cell centres' (the kernel's
   construction);
2. scatter: each sub-quad's contribution c_f (empirical sigma0 law of its vector area x
   sigma area, or the gamma area) and gamma area are splatted at the sub-quad's centre on
   the four nearest pixel centres with ``np.add.at``;
3. ratios: observed energy I_p a_p over the simulated image, per pixel;
4. gather: each sub-quad reads the ratio image back with the same bilinear weights (fancy
   indexing) and the cell's energy is the sum of c_f times what its sub-quads read.

It works on the cell geometry that ``sarheight.simulate.run_simulation`` computed (the
``Simulation``: cells, shadow mask, window, oversample factor), vectorised over all
cells and looping in Python over the ``k^2`` sub-quads of a cell. It shares no code with
the Numba kernels, so agreement means something; it is written for clarity, not speed.
Used by the tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from twins import geometry as reference_twins

MODEL, GAMMA, CELL_LAW = "model", "gamma", "cell_law"


def usable_cells(cells: dict[str, np.ndarray]) -> np.ndarray:
    """Valid cells whose 3 x 3 neighbourhood (clamped at the border) is solved."""
    finite = np.isfinite(cells["line"])
    padded = np.pad(finite, 1, mode="edge")
    rows, cols = finite.shape
    ok = cells["valid"].copy()
    for di in range(3):
        for dj in range(3):
            ok &= padded[di:di + rows, dj:dj + cols]
    return ok


def sigma0_model(cos_theta: np.ndarray, law: tuple[float, float, float]) -> np.ndarray:
    """Empirical law a0 cos / (sin + a1 cos)^a2 of the cosine of the local incidence, 0 facing away."""
    a0, a1, a2 = law
    sin_theta = np.sqrt(np.maximum(0.0, 1.0 - cos_theta * cos_theta))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = a0 * cos_theta / (sin_theta + a1 * cos_theta) ** a2
    return np.where(cos_theta > 0.0, value, 0.0)


class _Facets:
    """The cells' geometry gathered for the usable cells (1-D arrays of length m).

    Vectors are kept as separate x, y, z arrays: numpy is slow on a trailing axis of 3.
    """

    def __init__(self, cells: dict[str, np.ndarray], shadowed: np.ndarray, window, k: int):
        self.rows, self.cols = cells["valid"].shape
        # Positions from the cells' longitude, latitude and height, by the numpy twin.
        ecef = reference_twins.geodetic_to_ecef(cells["lon"], cells["lat"], cells["height"])
        self.ecef = [np.ascontiguousarray(ecef[..., axis]).reshape(-1) for axis in range(3)]
        self.line, self.sample = cells["line"].reshape(-1), cells["sample"].reshape(-1)
        self.valid = cells["valid"].reshape(-1)
        self.k = k
        self.line0, self.sample0 = window[0], window[2]
        self.i, self.j = np.nonzero(usable_cells(cells))
        at = self.i * self.cols + self.j
        self.centre = [component[at] for component in self.ecef]
        look = cells["look"].reshape(-1, 3)
        self.look = [look[at, axis].astype(np.float64) for axis in range(3)]
        self.shadowed = shadowed.reshape(-1)[at]

    def vertex(self, a: int, b: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """ECEF [x, y, z] (m,) and window coordinates L, S (m,) of sub-vertex (a, b) of every cell."""
        k, rows, cols = self.k, self.rows, self.cols
        rho = self.i - 0.5 + a / k
        kappa = self.j - 0.5 + b / k
        i0 = np.clip(np.floor(rho), 0, rows - 2).astype(np.int64)
        j0 = np.clip(np.floor(kappa), 0, cols - 2).astype(np.int64)
        wr, wc = rho - i0, kappa - j0
        at = i0 * cols + j0
        corner = [(1.0 - wr) * ((1.0 - wc) * e[at] + wc * e[at + 1])
                  + wr * ((1.0 - wc) * e[at + cols] + wc * e[at + cols + 1]) for e in self.ecef]
        dl, ds = ((1.0 - wr) * ((1.0 - wc) * e[at] + wc * e[at + 1])
                  + wr * ((1.0 - wc) * e[at + cols] + wc * e[at + cols + 1]) for e in (self.line, self.sample))
        return corner, dl - self.line0 + 0.5, ds - self.sample0 + 0.5

    def sub_quads(self) -> Iterator[tuple[tuple, tuple, tuple, tuple]]:
        """Corners (v00, v01, v11, v10) of each of the k x k sub-quads of every cell, as
        ``vertex`` gives them, row by row of sub-vertices."""
        k = self.k
        below = [self.vertex(0, b) for b in range(k + 1)]
        for a in range(k):
            above = [self.vertex(a + 1, b) for b in range(k + 1)]
            for b in range(k):
                yield below[b], below[b + 1], above[b + 1], above[b]
            below = above

    def quads(self, contribution: str, law) -> Iterator[tuple[np.ndarray, ...]]:
        """Per sub-quad of every cell: (c, gamma weight, sigma area, L centre, S centre)."""
        for v00, v01, v11, v10 in self.sub_quads():
            # The sub-quad's vector area: half the cross product of its diagonals.
            c, g, area_sigma = self._contribution(
                [v11[0][q] - v00[0][q] for q in range(3)], [v10[0][q] - v01[0][q] for q in range(3)],
                contribution, law)
            lc = (v00[1] + v01[1] + v11[1] + v10[1]) / 4.0
            sc = (v00[2] + v01[2] + v11[2] + v10[2]) / 4.0
            yield c, g, area_sigma, lc, sc

    def triangles(self, contribution: str, law) -> Iterator[tuple[np.ndarray, ...]]:
        """Per triangle of every cell (exact projection: two per sub-quad, T0 = (a, b) ->
        (a, b + 1) -> (a + 1, b + 1), T1 = (a, b) -> (a + 1, b + 1) -> (a + 1, b)): (c,
        gamma weight, sigma area, L (m, 3), S (m, 3) of its vertices in window coordinates)."""
        for v00, v01, v11, v10 in self.sub_quads():
            for v0, v1, v2 in ((v00, v01, v11), (v00, v11, v10)):
                e1 = [v1[0][q] - v0[0][q] for q in range(3)]
                e2 = [v2[0][q] - v0[0][q] for q in range(3)]
                c, g, area_sigma = self._contribution(e1, e2, contribution, law)
                yield (c, g, area_sigma, np.stack([v0[1], v1[1], v2[1]], axis=1),
                       np.stack([v0[2], v1[2], v2[2]], axis=1))

    def _contribution(self, e1, e2, contribution: str, law):
        """(c, gamma weight, sigma area) of the area vector e1 x e2 / 2, turned outward."""
        cx, cy, cz = self.centre
        ux, uy, uz = self.look
        nx = 0.5 * (e1[1] * e2[2] - e1[2] * e2[1])
        ny = 0.5 * (e1[2] * e2[0] - e1[0] * e2[2])
        nz = 0.5 * (e1[0] * e2[1] - e1[1] * e2[0])
        # Outward: the area vector points away from the Earth's centre.
        sign = np.where(nx * cx + ny * cy + nz * cz < 0.0, -1.0, 1.0)
        nx, ny, nz = nx * sign, ny * sign, nz * sign
        area_sigma = np.sqrt(nx * nx + ny * ny + nz * nz)
        projected = nx * ux + ny * uy + nz * uz
        area_gamma = np.maximum(projected, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_t = np.where(area_sigma > 0.0, projected / area_sigma, 0.0)
        if contribution == MODEL:
            c = sigma0_model(cos_t, law) * area_sigma
        elif contribution == CELL_LAW:
            # law: (each usable cell's class, its factor, the classes' laws as callables).
            classes, factor, laws = law
            angles = np.degrees(np.arccos(np.clip(cos_t, -1.0, 1.0)))
            value = np.zeros(cos_t.shape)
            for code, each in enumerate(laws):
                here = (classes == code) & (projected > 0.0)
                value[here] = each(angles[here])
            c = value * factor * area_sigma
        else:
            c = area_gamma
        return np.where(self.shadowed, 0.0, c), np.where(self.shadowed, 0.0, area_gamma), area_sigma


def _bilinear(lc: np.ndarray, sc: np.ndarray, shape: tuple[int, int]):
    """The four (rows, cols, weights, inside) of bilinear weights at window positions."""
    lc, sc = lc - 0.5, sc - 0.5
    r0 = np.floor(lc).astype(np.int64)
    c0 = np.floor(sc).astype(np.int64)
    wl, ws = lc - r0, sc - c0
    for dr, w_row in ((0, 1.0 - wl), (1, wl)):
        for dc, w_col in ((0, 1.0 - ws), (1, ws)):
            r, c = r0 + dr, c0 + dc
            inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
            yield r, c, w_row * w_col, inside


def scatter(facets: _Facets, shape: tuple[int, int], contribution: str, law) -> tuple[np.ndarray, np.ndarray]:
    """Simulated images (2, lines, samples) of sum w c and sum w A_gamma, and the cells' sigma area."""
    images = np.zeros((2, *shape))
    sigma_area = np.zeros(facets.i.size)
    for c, g, area_sigma, lc, sc in facets.quads(contribution, law):
        sigma_area += area_sigma
        for r, col, w, inside in _bilinear(lc, sc, shape):
            np.add.at(images[0], (r[inside], col[inside]), (c * w)[inside])
            np.add.at(images[1], (r[inside], col[inside]), (g * w)[inside])
    return images, sigma_area


def gather(facets: _Facets, ratios: np.ndarray, contribution: str, law) -> np.ndarray:
    """Energy (2, m) of each usable cell: sum over its sub-quads of c (resp. A_gamma) x ratio read back."""
    energy = np.zeros((2, facets.i.size))
    shape = ratios.shape[1:]
    for c, g, _, lc, sc in facets.quads(contribution, law):
        read = np.zeros((2, c.size))
        for r, col, w, inside in _bilinear(lc, sc, shape):
            ri, ci = np.where(inside, r, 0), np.where(inside, col, 0)
            read += np.where(inside, w, 0.0) * ratios[:, ri, ci]
        energy[0] += c * read[0]
        energy[1] += g * read[1]
    return energy


def reallocate_bilinear(state, observed: np.ndarray, pixel_area: np.ndarray,
                        contribution: str = MODEL, law=(0.0118, 0.111, 3.0)) -> dict[str, np.ndarray]:
    """Scatter, ratio and gather of the bilinear reconstruction, from a ``Simulation``.

    ``observed``: the observation on the state's window (linear, NaN as 0); ``pixel_area``:
    the window's slant-plane pixel areas (``state.pixel_area``, NaN as 0). Returns
    ``images`` (2, lines, samples), ``energy`` (rows, cols; reallocated I a, channel 0),
    ``sigma0`` (NaN in shadow and outside) and ``sigma_area`` on the DEM grid.
    """
    shadow = state.shadow
    shadowed = (shadow == 1) | (shadow == 2)
    facets = _Facets(state.cells, shadowed, state.window, state.oversample)
    shape = (state.window[1], state.window[3])
    images, sigma_area_cells = scatter(facets, shape, contribution, law)
    for channel in (0, 1):  # as run_simulation: rounding residue is made exactly empty
        floor = 1e-10 * max(float(np.abs(images[channel]).max()), 1e-300)
        images[channel][images[channel] < floor] = 0.0
    observed = np.nan_to_num(observed, nan=0.0)
    pixel_area = np.nan_to_num(pixel_area)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(images > 0, observed * pixel_area / images, 0.0)
    energy_cells = gather(facets, ratios, contribution, law)
    grid = state.cells["valid"].shape
    energy = np.zeros(grid)
    sigma_area = np.zeros(grid)
    energy[facets.i, facets.j] = energy_cells[0]
    sigma_area[facets.i, facets.j] = sigma_area_cells
    excluded = shadowed | (shadow == 255)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma0 = np.where((sigma_area > 0) & ~excluded, energy / sigma_area, np.nan)
    return {"images": images, "ratios": ratios, "energy": energy, "sigma0": sigma0, "sigma_area": sigma_area}
