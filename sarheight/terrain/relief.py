"""The relief a coarse DEM lost, as the inversion and clinometry model it: the terrain's
power law fitted to the reference and extrapolated to the fine wavenumbers
(:func:`relief_power_law`, :func:`relief_prior_spectrum`), and the sparse operators of a
grid (differences, gradients, the Laplacian, a binomial blur, the coarse-cell mean, the
albedo's interpolation).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sparse
import xarray as xr

from ..errors import InvalidInputError


def _difference(n: int, step: float) -> sparse.csr_matrix:
    """The first derivative along an axis of ``n`` cells ``step`` metres apart: central
    differences inside, one-sided at the ends (``np.gradient``'s)."""
    if n < 2:
        return sparse.csr_matrix((n, n))
    lower, main, upper = np.full(n - 1, -0.5), np.zeros(n), np.full(n - 1, 0.5)
    upper[0], main[0], lower[-1], main[-1] = 1.0, -1.0, -1.0, 1.0
    return sparse.diags([lower, main, upper], [-1, 0, 1], format="csr") / step


def gradient_operators(shape: tuple[int, int], steps: tuple[float, float]) -> tuple[sparse.csr_matrix,
                                                                                   sparse.csr_matrix]:
    """Sparse operators of the height's derivative northward and eastward (m/m) on a grid
    of ``shape`` whose rows and columns are ``steps`` = (north, east) signed metres apart,
    acting on the raveled heights."""
    rows, cols = shape
    north = sparse.kron(_difference(rows, steps[0]), sparse.identity(cols), format="csr")
    east = sparse.kron(sparse.identity(rows), _difference(cols, steps[1]), format="csr")
    return north, east


def _second_difference(n: int) -> sparse.csr_matrix:
    if n < 2:
        return sparse.csr_matrix((n, n))
    main = np.full(n, -2.0)
    main[0] = main[-1] = -1.0
    return sparse.diags([np.ones(n - 1), main, np.ones(n - 1)], [-1, 0, 1], format="csr")


def laplacian(shape: tuple[int, int]) -> sparse.csr_matrix:
    rows, cols = shape
    return (sparse.kron(_second_difference(rows), sparse.identity(cols))
            + sparse.kron(sparse.identity(rows), _second_difference(cols))).tocsr()


def _binomial(n: int) -> sparse.csr_matrix:
    if n < 2:
        return sparse.identity(n, format="csr")
    main = np.full(n, 0.5)
    main[0] = main[-1] = 0.75
    return sparse.diags([np.full(n - 1, 0.25), main, np.full(n - 1, 0.25)], [-1, 0, 1], format="csr")


def blur(shape: tuple[int, int], steps: int) -> sparse.csr_matrix:
    one = sparse.kron(_binomial(shape[0]), _binomial(shape[1]), format="csr")
    out = sparse.identity(shape[0] * shape[1], format="csr")
    for _ in range(steps):
        out = one @ out
    return out.tocsr()


def coarse_mean_operator(grid: xr.DataArray, coarse: xr.DataArray) -> sparse.csr_matrix:
    """The sparse operator (coarse cells x grid cells) of the mean over each cell of
    ``coarse`` of the grid cells, weighted by the area of their overlap (what the coarse
    DEM measures, exact on grids that are not aligned); only the coarse cells the grid
    covers whole. Both on one CRS, neither rotated."""
    return coarse_means(grid, coarse)[0]


def _overlap(fine_edges: np.ndarray, coarse_edges: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Along one axis: the share of each coarse interval each fine interval covers
    (coarse x fine), and whether the fine intervals cover the coarse one whole."""
    fine_low, fine_high = np.minimum(fine_edges[:-1], fine_edges[1:]), np.maximum(fine_edges[:-1], fine_edges[1:])
    coarse_low = np.minimum(coarse_edges[:-1], coarse_edges[1:])
    coarse_high = np.maximum(coarse_edges[:-1], coarse_edges[1:])
    rows, cols, values = [], [], []
    for index, (low, high) in enumerate(zip(coarse_low, coarse_high, strict=True)):
        length = np.minimum(fine_high, high) - np.maximum(fine_low, low)
        inside = np.flatnonzero(length > 1e-9 * (high - low))
        rows.append(np.full(inside.size, index))
        cols.append(inside)
        values.append(length[inside] / (high - low))
    weights = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(coarse_low.size, fine_low.size))
    return weights, np.asarray(weights.sum(axis=1)).ravel() > 1.0 - 1e-6


def coarse_means(grid: xr.DataArray, coarse: xr.DataArray) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """:func:`coarse_mean_operator`, the heights of ``coarse`` in the cells it keeps (m, in
    the operator's row order; NaN where the coarse DEM has none: what the fine heights'
    area means measure) and those cells' flat indices in ``coarse``."""
    if grid.rio.crs != coarse.rio.crs:
        raise InvalidInputError("the coarse DEM and the grid must share a CRS for the coarse-cell means")
    fine_transform, coarse_transform = grid.rio.transform(), coarse.rio.transform()
    if fine_transform.b or fine_transform.d or coarse_transform.b or coarse_transform.d:
        raise InvalidInputError("the coarse-cell means need grids that are not rotated")
    along = []
    for axis, (fine_size, coarse_size) in enumerate(zip(grid.shape, coarse.shape, strict=True)):
        if axis == 0:
            fine_edges = fine_transform.f + fine_transform.e * np.arange(fine_size + 1)
            coarse_edges = coarse_transform.f + coarse_transform.e * np.arange(coarse_size + 1)
        else:
            fine_edges = fine_transform.c + fine_transform.a * np.arange(fine_size + 1)
            coarse_edges = coarse_transform.c + coarse_transform.a * np.arange(coarse_size + 1)
        along.append(_overlap(fine_edges, coarse_edges))
    (row_weights, whole_rows), (col_weights, whole_cols) = along
    operator = sparse.kron(row_weights, col_weights, format="csr")
    whole = np.outer(whole_rows, whole_cols).ravel()
    if not whole.any():
        raise InvalidInputError("no coarse cell lies whole inside the grid: give a coarse DEM of the grid's area")
    kept = np.flatnonzero(whole)
    return operator[kept], np.asarray(coarse.values, dtype=np.float64).ravel()[kept], kept


def albedo_interpolation(shape: tuple[int, int], spacing: float) -> tuple[sparse.csr_matrix, tuple[int, int]]:
    """Bilinear interpolation (cells x nodes) from nodes ``spacing`` cells apart."""
    spacing = max(float(spacing), 1.0)

    def along(n: int) -> tuple[sparse.csr_matrix, int]:
        nodes = math.ceil((n - 1) / spacing) + 1
        position = np.arange(n) / spacing
        first = np.minimum(np.floor(position).astype(np.int64), nodes - 1)
        fraction = position - first
        second = np.minimum(first + 1, nodes - 1)
        index = np.arange(n)
        return sparse.csr_matrix((np.r_[1.0 - fraction, fraction], (np.r_[index, index], np.r_[first, second])),
                                 shape=(n, nodes)), nodes

    rows, node_rows = along(shape[0])
    cols, node_cols = along(shape[1])
    return sparse.kron(rows, cols, format="csr"), (node_rows, node_cols)


def relief_power_law(reference: np.ndarray, steps: tuple[float, float], coarse_cell_m: float, *,
                     min_exponent: float = 3.0) -> tuple[float, float]:
    """(amplitude per cell, exponent) of the power law ``|FFT|^2 / cells = A |k|^-beta``
    (k in rad/m) of the terrain under ``reference`` (plane-detrended, Hann-windowed),
    fitted below a quarter of the coarse Nyquist wavenumber with the block mean's
    attenuation divided out; the exponent within ``min_exponent``..5 (terrain rougher than
    ``|k|^-3`` is a fit to too few wavenumbers), :data:`DEFAULT_SPECTRAL_EXPONENT` where
    fewer than 12 wavenumbers lie in that band."""
    amplitude, beta = _power_law(reference, steps, coarse_cell_m, min_exponent)
    return amplitude / reference.size, beta


def relief_prior_spectrum(power_law: tuple[float, float], steps: tuple[float, float], coarse_cell_m: float,
                          shape: tuple[int, int], *, prior_scale: float = 1.0,
                          coarse_error_m: float = 0.0) -> np.ndarray:
    """The prior power (``E|FFT(d)|^2``, unnormalised FFT on a grid of ``shape``) of what
    the reference misses: the relief a coarse DEM of cells ``coarse_cell_m`` lost (the
    terrain's power law, :func:`relief_power_law`, times ``(1 - T(k))^2``, ``T`` the block
    mean's transfer function, zero where the coarse DEM holds the wavenumber; scaled by
    ``prior_scale``), plus the coarse product's own error, independent from coarse cell to
    coarse cell with ``coarse_error_m`` standard deviation (``n sigma^2 f^2 T(k)^2``, ``n``
    the cells and ``f`` the coarse cell in grid cells): a real product's slope-dependent
    and residual errors, which the image can see and the coarse-cell means cannot."""
    amplitude, beta = power_law
    amplitude *= shape[0] * shape[1]
    fy = np.fft.fftfreq(shape[0], d=steps[0])[:, None]
    fx = np.fft.fftfreq(shape[1], d=steps[1])[None, :]
    k = 2 * math.pi * np.hypot(fy, fx)
    passed = np.sinc(fy * coarse_cell_m) * np.sinc(fx * coarse_cell_m)
    passed = np.where((np.abs(fy) < 0.5 / coarse_cell_m) & (np.abs(fx) < 0.5 / coarse_cell_m), passed, 0.0)
    with np.errstate(divide="ignore"):
        power = np.where(k > 0, amplitude * np.where(k > 0, k, 1.0) ** -beta, 0.0)
    cells = (coarse_cell_m**2) / abs(steps[0] * steps[1])
    return (prior_scale * power * (1.0 - passed) ** 2
            + shape[0] * shape[1] * coarse_error_m**2 * cells * passed**2)


#: The spectral exponent of terrain heights when a reference is too small to fit one
#: (|k|^-beta; 2 (1 + H) with a Hurst exponent H of 0.7-0.9 for most relief).
DEFAULT_SPECTRAL_EXPONENT = 3.6


def _power_law(heights: np.ndarray, steps: tuple[float, float], coarse_cell_m: float,
               min_exponent: float) -> tuple[float, float]:
    """(amplitude, exponent) of ``|FFT|^2 = A |k|^-beta`` of ``heights`` (plane-detrended,
    Hann-windowed), fitted below a quarter of the coarse Nyquist wavenumber with the
    block mean's attenuation divided out."""
    rows, cols = heights.shape
    filled = np.where(np.isfinite(heights), heights, np.nanmean(heights))
    yy, xx = np.mgrid[0:rows, 0:cols]
    design = np.stack([np.ones(rows * cols), yy.ravel(), xx.ravel()], axis=1)
    plane, *_ = np.linalg.lstsq(design, filled.ravel(), rcond=None)
    detrended = filled - (design @ plane).reshape(rows, cols)
    window = np.outer(np.hanning(rows), np.hanning(cols))
    power = np.abs(np.fft.fft2(detrended * window)) ** 2 / max(float(np.mean(window**2)), 1e-12)
    fy = np.fft.fftfreq(rows, d=steps[0])[:, None]
    fx = np.fft.fftfreq(cols, d=steps[1])[None, :]
    k = 2 * math.pi * np.hypot(fy, fx)
    passed = (np.sinc(fy * coarse_cell_m) * np.sinc(fx * coarse_cell_m)) ** 2
    low = 2 * math.pi * 2.0 / min(rows * abs(steps[0]), cols * abs(steps[1]))
    high = 2 * math.pi / (4.0 * coarse_cell_m)
    band = (k > low) & (k < high) & (power > 0) & (passed > 1e-6)
    if not band.any():
        band = (k > 0) & (k < high) & (power > 0) & (passed > 1e-6)
    if not band.any():
        return 0.0, DEFAULT_SPECTRAL_EXPONENT
    log_k, log_power = np.log(k[band]), np.log(power[band] / passed[band])
    beta = DEFAULT_SPECTRAL_EXPONENT
    if band.sum() >= 12:
        beta = float(np.clip(-np.polyfit(log_k, log_power, 1)[0], min_exponent, 5.0))
    return float(np.exp(np.median(log_power + beta * log_k))), beta
