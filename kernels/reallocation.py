"""The per-pixel and per-cell steps of the reallocation around the facet passes.

``ratio_lines`` turns the simulated sums of a block of radar lines into what the
gather reads, in one pass over the radar buffer; ``sample_cells`` reads the radar images
at the cells' positions (conventional geocoding); ``finish_cells`` turns a tile's gathered
energies into backscatter. Polynomial fields of the radar geometry (pixel area,
flat-terrain gamma area) come as coefficient tables ``fields`` (n_fields, n_terms) over
the terms u^p v^q of ``powers`` (n_terms, 2), u and v the line and sample normalised on
the window ``fit`` they were fitted on (``simulate.SmoothFields``).
"""

import math

import numba
import numpy as np

from .projection import bilinear_corners, bilinear_read, clamp_index
from .radar_buffers import PAD
from .zero_doppler import fast_arccos, horner8

#: Terrain-flattening validity: gamma area at least this fraction of flat terrain's (Small 2011).
VALID_AREA_FRACTION = 0.05

# Taylor coefficients of sin x up to x^15: below 1e-11 of absolute error on |x| <= pi / 2.
_SIN = (1.0, -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362880.0, -1.0 / 39916800.0, 1.0 / 6227020800.0,
        -1.0 / 1307674368000.0)
_SIN0, _SIN1, _SIN2, _SIN3, _SIN4, _SIN5, _SIN6, _SIN7 = _SIN


@numba.njit(cache=True, nogil=True, inline="always")
def _sin_quarter(x):
    """sin x for |x| <= pi / 2 (an incidence angle) by its series: multiply-adds, which
    loops run on SIMD lanes, where libm's sin is a call per value."""
    return x * horner8(x * x, _SIN0, _SIN1, _SIN2, _SIN3, _SIN4, _SIN5, _SIN6, _SIN7)


@numba.njit(cache=True, nogil=True, inline="always")
def _line_terms(fields, powers, field, u, out):
    """Coefficients of the polynomial in v of field ``field`` on the line at ``u``:
    out[q] = sum over the terms u^p v^q of coefficient times u^p."""
    for q in range(out.shape[0]):
        out[q] = 0.0
    for t in range(powers.shape[0]):
        p = powers[t, 0]
        value = fields[field, t]
        for _ in range(p):
            value *= u
        out[powers[t, 1]] += value


@numba.njit(cache=True, nogil=True, inline="always")
def _v_terms(powers):
    """A zeroed array for the coefficients of a polynomial in v of the highest power of v."""
    degree = 0
    for t in range(powers.shape[0]):
        degree = max(degree, powers[t, 1])
    return np.zeros(degree + 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _normalised(index, first, fit_first, fit_count):
    """u or v of absolute line or sample ``first + index`` on a fit's window."""
    return (first + index - fit_first - 0.5 * fit_count) / max(fit_count, 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _horner_along(terms, v, out):
    """The polynomial in v of coefficients ``terms`` (lowest power first) at every v[c],
    into ``out``, by Horner's rule: a loop over the samples per coefficient, on SIMD lanes."""
    for c in range(v.shape[0]):
        out[c] = 0.0
    for q in range(terms.shape[0] - 1, -1, -1):
        term = terms[q]
        for c in range(v.shape[0]):
            out[c] = out[c] * v[c] + term


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ratio_lines(buffer, observed, line_start, line_stop, exact, fields, powers, fitted, fit,
                line0, sample0, thresholds, simulated, valid):
    """Radar lines ``line_start:line_stop`` of the radar buffer ``buffer`` (the simulated
    sums of ``kernels.facets``: sum w c, sum w A_gamma), turned in place into what the
    gather reads: the ratios I_p a_p / sum(w c) and I_p a_p / sum(w A_gamma) (0 where
    nothing was simulated), as their padded row prefix sums for exact projection
    (``radar_buffers.prefix_buffer``), as they are for bilinear.

    Parameters
    ----------
    observed : (lines, samples) observed intensity I_p on the window, NaN where unknown.
    fields, powers, fit : polynomials of the pixel area a_p (field 0, m^2) and of the
        flat-terrain gamma area a_p cot(theta) (field 1), see the module docstring;
        ``fitted`` False where no cell was available to fit them (a_p = 0 then).
    line0, sample0 : absolute line and sample of pixel (0, 0) of the window.
    thresholds : (2,) the sums below ``thresholds[q]`` a_p are rounding residue, read as 0
        (``clear_residue``, in this pass: clearing the sums first gives the same).
    simulated : (lines, samples) float32 out: sum(w c) / a_p, NaN where a_p is not positive.
    valid : (lines, samples) bool out: gamma area at least ``VALID_AREA_FRACTION`` of flat terrain's.

    Returns
    -------
    int, the pixels that the facets reach and the observation lacks (NaN).
    """
    n_samples = observed.shape[1]
    width = buffer.shape[1]
    fit_line0, fit_lines, fit_sample0, fit_samples = fit
    area_terms = _v_terms(powers)
    flat_terms = _v_terms(powers)
    # Per line: the fields along it, each a loop of its own over the samples, and the
    # ratios in a loop without a carried sum: both on SIMD lanes (one loop carrying the
    # prefix sums ran a pixel at a time, divisions included); the prefix sums after.
    v = np.empty(n_samples)
    for c in range(n_samples):
        v[c] = _normalised(c, sample0, fit_sample0, fit_samples)
    area = np.empty(n_samples)
    flat = np.empty(n_samples)
    missing = 0
    for r in range(line_start, line_stop):
        u = _normalised(r, line0, fit_line0, fit_lines)
        _line_terms(fields, powers, 0, u, area_terms)
        _line_terms(fields, powers, 1, u, flat_terms)
        if fitted:
            _horner_along(area_terms, v, area)
            _horner_along(flat_terms, v, flat)
            for c in range(n_samples):
                area[c] = area[c] if area[c] == area[c] else 0.0
                flat[c] = flat[c] if flat[c] == flat[c] else math.inf
        else:
            area[:] = 0.0
            flat[:] = math.inf
        row = buffer[r + PAD]
        observed_row = observed[r]
        simulated_row = simulated[r]
        valid_row = valid[r]
        for c in range(n_samples):
            k = c + PAD
            a = area[c]
            contribution = row[k, 0]
            gamma = row[k, 1]
            contribution = 0.0 if contribution < thresholds[0] * a else contribution
            gamma = 0.0 if gamma < thresholds[1] * a else gamma
            simulated_row[c] = contribution / a if a > 0.0 else math.nan
            valid_row[c] = (gamma if gamma == gamma else 0.0) >= VALID_AREA_FRACTION * flat[c]
            intensity = observed_row[c]
            known = intensity == intensity
            missing += 1 if not known and (contribution > 0.0 or gamma > 0.0) else 0
            energy = intensity * a if known else 0.0
            row[k, 0] = energy / contribution if contribution > 0.0 else 0.0
            row[k, 1] = energy / gamma if gamma > 0.0 else 0.0
        running0 = 0.0
        running1 = 0.0
        if exact:
            for k in range(PAD, PAD + n_samples):
                running0 += row[k, 0]
                running1 += row[k, 1]
                row[k, 0] = running0
                row[k, 1] = running1
        for k in range(PAD):
            row[k, 0] = 0.0
            row[k, 1] = 0.0
        for k in range(PAD + n_samples, width):
            row[k, 0] = running0
            row[k, 1] = running1
    if line_start == 0:
        for r in range(PAD):
            buffer[r] = 0.0
    if line_stop == observed.shape[0]:
        for r in range(PAD + observed.shape[0], buffer.shape[0]):
            buffer[r] = 0.0
    return missing


@numba.njit(cache=True, nogil=True, error_model="numpy")
def sample_cells(line, sample, valid, incidence, observed, simulated, mixing, line0, sample0,
                 geocoded_out, simulated_out, mixing_out):
    """Per cell of a block: the window images read at the cell's (line, sample).

    ``geocoded_out`` (float32): conventional geocoding, the observed beta0 interpolated
    bilinearly times the sine of the cell's ellipsoid incidence angle (``incidence``,
    rad): sigma0; ``simulated_out`` (float32): the simulated image, bilinear; ``mixing_out``
    (uint16): the mixing of the nearest pixel (clamped to the window), 0 for invalid
    cells. NaN off the window (as ``projection.sample_at``). Branch-free, on SIMD lanes;
    both images are read at the same corners.
    """
    rows, cols = line.shape
    n_lines, n_samples = observed.shape
    if simulated.shape != observed.shape:
        raise ValueError("sample_cells: the observed and simulated images differ in shape")
    last_line = float(mixing.shape[0] - 1)
    last_sample = float(mixing.shape[1] - 1)
    for i in range(rows):
        for j in range(cols):
            rl = line[i, j] - line0
            rs = sample[i, j] - sample0
            inside, r0, c0, r1, c1, wr, wc = bilinear_corners(rl, rs, n_lines, n_samples)
            beta = bilinear_read(observed, r0, c0, r1, c1, wr, wc)
            geocoded_out[i, j] = beta * _sin_quarter(np.float64(incidence[i, j])) if inside else math.nan
            simulated_out[i, j] = bilinear_read(simulated, r0, c0, r1, c1, wr, wc) if inside else math.nan
            nearest = mixing[int(clamp_index(rl + 0.5, last_line)), int(clamp_index(rs + 0.5, last_sample))]
            mixing_out[i, j] = nearest if valid[i, j] else 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def finish_cells(energy, sigma_area, gamma_area, cos_local, shadow, cell_valid, line, sample, valid_pixels,
                 line0, sample0, use_sigma, codes, backscatter, flattened, local_incidence):
    """A tile's cells from the energies it gathered.

    ``backscatter`` = energy[0] / (sigma or gamma area, ``use_sigma``), ``flattened`` =
    energy[1] / gamma area (Small 2011; NaN where the cell's nearest pixel is not valid
    for flattening: its gamma area would divide by almost nothing), both NaN in shadow,
    outside the image (``shadow`` code active, passive or outside) or where the area is
    not positive; ``local_incidence`` (degrees) from the cosine of the mean normal, NaN
    for invalid cells. ``codes``: the mask codes (none, active, passive, outside), int,
    the caller's (``masks.MaskCode``). All outputs float32 (rows, cols).
    """
    _, active, passive, outside = codes
    rows, cols = cos_local.shape
    n_lines, n_samples = valid_pixels.shape
    for i in range(rows):
        for j in range(cols):
            code = shadow[i, j]
            excluded = code == active or code == passive or code == outside
            area = sigma_area[i, j] if use_sigma else gamma_area[i, j]
            backscatter[i, j] = energy[0, i, j] / area if area > 0.0 and not excluded else math.nan
            rl = line[i, j] - line0
            rs = sample[i, j] - sample0
            flat_ok = False
            if -0.5 <= rl <= n_lines - 0.5 and -0.5 <= rs <= n_samples - 0.5:
                r = min(max(int(math.floor(rl + 0.5)), 0), n_lines - 1)
                c = min(max(int(math.floor(rs + 0.5)), 0), n_samples - 1)
                flat_ok = valid_pixels[r, c]
            gamma = gamma_area[i, j]
            flattened[i, j] = energy[1, i, j] / gamma if gamma > 0.0 and flat_ok and not excluded else math.nan
            cosine = cos_local[i, j]
            if cell_valid[i, j] and cosine == cosine:
                local_incidence[i, j] = math.degrees(fast_arccos(min(max(cosine, -1.0), 1.0)))
            else:
                local_incidence[i, j] = math.nan


@numba.njit(cache=True, nogil=True, error_model="numpy")
def clear_residue(images, line_start, line_stop, fields, powers, fitted, fit, line0, sample0, thresholds):
    """Clear, on lines ``line_start:line_stop`` of ``images`` (channels, lines, samples),
    the sums below ``thresholds[q]`` times the pixel area (field 0 of the polynomials, as
    in ``ratio_lines``; 0 where not fitted): rounding residue, see ``simulate.clear_residue``."""
    n_samples = images.shape[2]
    fit_line0, fit_lines, fit_sample0, fit_samples = fit
    area_terms = _v_terms(powers)
    # As in ratio_lines: the pixel area along the line first, then a loop without
    # branches over the pixels, both on SIMD lanes.
    v = np.empty(n_samples)
    for c in range(n_samples):
        v[c] = _normalised(c, sample0, fit_sample0, fit_samples)
    area = np.zeros(n_samples)
    for r in range(line_start, line_stop):
        _line_terms(fields, powers, 0, _normalised(r, line0, fit_line0, fit_lines), area_terms)
        if fitted:
            _horner_along(area_terms, v, area)
        for q in range(images.shape[0]):
            threshold = thresholds[q]
            line = images[q, r]
            for c in range(n_samples):
                a = area[c] if area[c] == area[c] else 0.0
                line[c] = 0.0 if line[c] < threshold * a else line[c]


@numba.njit(cache=True, nogil=True)
def intensity_problems(values, row_start, row_stop):
    """What rows ``row_start:row_stop`` of an observed image hold, in one pass: an infinite
    value, a negative one (NaN is neither), a finite one, a NaN (unknown)."""
    infinite = False
    negative = False
    finite = False
    unknown = False
    for i in range(row_start, row_stop):
        for j in range(values.shape[1]):
            value = values[i, j]
            infinite |= math.isinf(value)
            negative |= value < 0.0
            finite |= math.isfinite(value)
            unknown |= value != value
    return infinite, negative, finite, unknown


@numba.njit(cache=True, nogil=True)
def missing_pixels(observed, buffer, line_start, line_stop, out):
    """Lines ``line_start:line_stop`` of the pixels that the facets reach but the
    observation lacks: ``isnan(observed) & ((sum w c > 0) | (sum w A_gamma > 0))``, the
    sums read from the radar buffer ``buffer`` (padded, channels side by side)."""
    for r in range(line_start, line_stop):
        row = buffer[r + PAD]
        for c in range(observed.shape[1]):
            value = observed[r, c]
            out[r, c] = value != value and (row[c + PAD, 0] > 0.0 or row[c + PAD, 1] > 0.0)


@numba.njit(cache=True, nogil=True)
def weighted_mean(weighted_sum, weight_sum, line_start, line_stop, out):
    """Lines ``line_start:line_stop`` of ``weighted_sum / weight_sum`` where the weight is
    positive, NaN elsewhere (no cell with a weight reached the pixel): the area-weighted
    mean of a map-grid observation in each radar pixel."""
    for r in range(line_start, line_stop):
        for c in range(out.shape[1]):
            weight = weight_sum[r, c]
            out[r, c] = weighted_sum[r, c] / weight if weight > 0.0 else math.nan
