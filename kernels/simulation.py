"""Radar imaging of a DEM: cell geometry, facets, layover/shadow sweep.

Pass A (``cell_geometry``) solves the zero-Doppler condition once per DEM cell centre
and keeps what the facets need: ECEF position, (line, sample) without clipping, their
Jacobian with respect to the ECEF position, the unit look vector, the local slant-plane
pixel area, and the sweep coordinates (look angle, cross-track angle).

Facets. Each DEM cell is split into ``k x k`` sub-quads (the DEM upsampled ``k`` times,
heights bilinear between cell centres), each into two triangles. Sub-vertex positions
are bilinear interpolations of the neighbouring cell centres' ECEF positions (exact for
the bilinear surface up to the Earth's curvature over a cell, ~1e-5 m); their radar
coordinates are the first-order expansion about the nearest solved centre, whose error
is second order in the offset, under 1 mm for 30 m cells against a 10 m pixel.

Masks (``visibility_profiles``): for every radar line, the terrain profile in its
zero-Doppler plane is cut out of the DEM (interpolated between the cells on either side
of the line) and ordered by cross-track angle from the ground track. Shadow: the running
maximum of the look angle from near to far; a point at or below it is in shadow, active
if it faces away from the sensor, passive otherwise. Layover: a forward pass (running
maximum of slant range) and a backward pass (running minimum); flagged by both = active,
by one = passive.
"""

import math

import numba
import numpy as np

from .orbit import orbit_state
from .projection import (
    gather_bilinear,
    scatter_bilinear,
    triangle_signed_area,
    walk_edge,
)
from .radar_grid import _ground_range_and_derivative
from .zero_doppler import _first_guess, _solve_zero_doppler

NONE = 0
ACTIVE = 1
PASSIVE = 2
OUTSIDE = 255

CONTRIBUTION_MODEL = 0
CONTRIBUTION_GAMMA = 1
CONTRIBUTION_USER = 2


@numba.njit(cache=True, nogil=True)
def cell_geometry(
    lon, lat, height, a, e2,
    coeffs, t_center, t_scale, t_valid_min, t_valid_max,
    first_line_time, line_interval,
    rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign, bistatic_rate, bistatic_reference_range,
    ecef, time, slant_range, line, sample, jacobian, look, pixel_area, incidence,
    look_angle, cross_track, valid,
):
    """Zero-Doppler geometry of every DEM cell centre (pass A), into the given outputs.

    ``lon``, ``lat`` (rad) as in ``zero_doppler.geocode_grid`` (broadcast views allowed);
    outputs are arrays of the shapes below, pre-filled by the caller (NaN, zeros, False)
    and written where the cell is solved. Serial, GIL released: callers run row blocks
    (views) on threads.

    Outputs
    -------
    ecef : (rows, cols, 3) float64, m (NaN for void cells)
    time : (rows, cols) float64, zero-Doppler time (s since the orbit reference)
    slant_range : (rows, cols) float64, m
    line, sample : (rows, cols) float64, unclipped fractional indices
    jacobian : (rows, cols, 2, 3) float32, d(line, sample)/d(ECEF) (1/m)
    look : (rows, cols, 3) float32, unit vector from the cell to the sensor
    pixel_area : (rows, cols) float32, slant-plane pixel area at the cell (m^2)
    incidence : (rows, cols) float32, ellipsoid incidence angle (rad)
    look_angle : (rows, cols) float64, off-nadir angle of the cell seen from the sensor (rad)
    cross_track : (rows, cols) float64, geocentric angle between the cell and the sensor (rad)
    valid : (rows, cols) bool, solved and on the looked-at side
    """
    rows, cols = height.shape
    above = np.full(cols, math.nan)
    above2 = np.full(cols, math.nan)
    if rows > 0:
        for i in range(rows):
            for j in range(cols):
                h = np.float64(height[i, j])
                seed = above[j]
                if above2[j] == above2[j]:
                    seed = 2.0 * above[j] - above2[j]
                above2[j] = above[j]
                above[j] = math.nan
                if h != h:
                    continue
                lo = lon[i, j]
                la = lat[i, j]
                cos_lat = math.cos(la)
                sin_lat = math.sin(la)
                cos_lon = math.cos(lo)
                sin_lon = math.sin(lo)
                pv = a / math.sqrt(1.0 - e2 * sin_lat * sin_lat)
                x = (pv + h) * cos_lat * cos_lon
                y = (pv + h) * cos_lat * sin_lon
                z = (pv * (1.0 - e2) + h) * sin_lat
                ecef[i, j, 0] = x
                ecef[i, j, 1] = y
                ecef[i, j, 2] = z
                if seed != seed:
                    seed = _first_guess(x, y, z, coeffs, t_center, t_scale)
                t, r, sx, sy, sz, vx, vy, vz, ok = _solve_zero_doppler(x, y, z, seed, coeffs, t_center, t_scale)
                if not ok or t < t_valid_min or t > t_valid_max:
                    continue
                above[j] = t
                side = (x - sx) * (vy * sz - vz * sy) + (y - sy) * (vz * sx - vx * sz) + (z - sz) * (vx * sy - vy * sx)
                if side * look_sign <= 0.0:
                    continue
                s = orbit_state(coeffs, t_center, t_scale, t)
                dx = x - s[0]
                dy = y - s[1]
                dz = z - s[2]
                speed2 = s[3] * s[3] + s[4] * s[4] + s[5] * s[5]
                fprime = dx * s[6] + dy * s[7] + dz * s[8] - speed2
                line_time = t - bistatic_rate * (r - bistatic_reference_range)
                ground, dground = _ground_range_and_derivative(line_time, r, rm_times, rm_sr0, rm_coeffs)
                time[i, j] = t
                slant_range[i, j] = r
                line[i, j] = (line_time - first_line_time) / line_interval
                sample[i, j] = ground / rm_spacing
                # dt/dX = -V / f'; dr/dX = (X - S) / r
                for axis in range(3):
                    d_axis = dx if axis == 0 else (dy if axis == 1 else dz)
                    dt_dx = -s[3 + axis] / fprime
                    dr_dx = d_axis / r
                    jacobian[i, j, 0, axis] = (dt_dx - bistatic_rate * dr_dx) / line_interval
                    jacobian[i, j, 1, axis] = dground * dr_dx / rm_spacing
                    look[i, j, axis] = -d_axis / r
                # Along-track spacing at the target per line is -f'/|V| * interval; range
                # spacing per sample is spacing / (d ground / d r).
                pixel_area[i, j] = (-fprime / math.sqrt(speed2)) * line_interval * rm_spacing / dground
                cos_inc = (cos_lat * cos_lon * (-dx) + cos_lat * sin_lon * (-dy) + sin_lat * (-dz)) / r
                incidence[i, j] = math.acos(np.float32(min(1.0, max(-1.0, cos_inc))))
                sensor_norm = math.sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2])
                cos_look = -(s[0] * dx + s[1] * dy + s[2] * dz) / (sensor_norm * r)
                look_angle[i, j] = math.acos(min(1.0, max(-1.0, cos_look)))
                target_norm = math.sqrt(x * x + y * y + z * z)
                cos_ct = (s[0] * x + s[1] * y + s[2] * z) / (sensor_norm * target_norm)
                cross_track[i, j] = math.acos(min(1.0, max(-1.0, cos_ct)))
                valid[i, j] = True


@numba.njit(cache=True, nogil=True, inline="always")
def _sigma0_model(cos_theta, a0, a1, a2):
    """Empirical sigma0 law a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear), 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta * cos_theta))
    return a0 * cos_theta / (sin_theta + a1 * cos_theta) ** a2


@numba.njit(cache=True, nogil=True, inline="always")
def _tabulated(cos_theta, table):
    """A law tabulated at k * 90 / n degrees, linearly interpolated; 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    theta = math.acos(np.float32(min(1.0, cos_theta))) * (2.0 / math.pi) * (table.shape[0] - 1)
    k = min(int(theta), table.shape[0] - 2)
    w = theta - k
    return (1.0 - w) * table[k] + w * table[k + 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _corner(ecef, i, j, rows, cols, rho, kappa, out):
    """Bilinear (extrapolated at the border) ECEF position at fractional cell position."""
    i0 = min(max(int(math.floor(rho)), 0), rows - 2)
    j0 = min(max(int(math.floor(kappa)), 0), cols - 2)
    wr = rho - i0
    wc = kappa - j0
    for axis in range(3):
        out[axis] = ((1.0 - wr) * ((1.0 - wc) * ecef[i0, j0, axis] + wc * ecef[i0, j0 + 1, axis])
                     + wr * ((1.0 - wc) * ecef[i0 + 1, j0, axis] + wc * ecef[i0 + 1, j0 + 1, axis]))


@numba.njit(cache=True, nogil=True)
def _cell_edges(k):
    """The edges of a cell's k x k sub-quads and how its triangles use them.

    Vertices are (a, b), a, b = 0..k. Sub-quad (a, b) holds triangles
    T0 = (a,b) -> (a,b+1) -> (a+1,b+1) and T1 = (a,b) -> (a+1,b+1) -> (a+1,b).
    Returns ``edges`` (n_edges, 4): start (a, b) and end (a, b) of each canonical edge,
    and ``use`` (2 k^2, 3, 2): for each triangle, its three edges as (edge id, +1/-1).
    Walking each shared edge once with the net scale of its two triangles halves the work.
    """
    n_h = (k + 1) * k
    n_v = k * (k + 1)
    edges = np.empty((n_h + n_v + k * k, 4), dtype=np.int64)
    for a in range(k + 1):
        for b in range(k):
            edges[a * k + b] = (a, b, a, b + 1)
    for a in range(k):
        for b in range(k + 1):
            edges[n_h + a * (k + 1) + b] = (a, b, a + 1, b)
    for a in range(k):
        for b in range(k):
            edges[n_h + n_v + a * k + b] = (a, b, a + 1, b + 1)
    use = np.empty((2 * k * k, 3, 2), dtype=np.int64)
    for a in range(k):
        for b in range(k):
            t = 2 * (a * k + b)
            use[t, 0] = (a * k + b, 1)  # H(a, b)
            use[t, 1] = (n_h + a * (k + 1) + b + 1, 1)  # V(a, b + 1)
            use[t, 2] = (n_h + n_v + a * k + b, -1)  # -D(a, b)
            use[t + 1, 0] = (n_h + n_v + a * k + b, 1)  # D(a, b)
            use[t + 1, 1] = ((a + 1) * k + b, -1)  # -H(a + 1, b)
            use[t + 1, 2] = (n_h + a * (k + 1) + b, -1)  # -V(a, b)
    return edges, use


@numba.njit(cache=True, nogil=True)
def facet_pass(
    ecef, line, sample, jacobian, look, pixel_area, incidence, valid, shadowed, user_weight,
    oversample, contribution, law, law_table, exact, gather,
    line0, sample0, n_lines, n_samples,
    ratios, prefix, row_start, row_stop,
    energy, sigma_area, gamma_area, contrib_cell, cos_local, partial, cover, plain,
):
    """Facet loop: scatter contributions to the radar window, or gather ratios back.

    Parameters
    ----------
    ecef, line, sample, jacobian, look, pixel_area, incidence, valid : from ``cell_geometry``.
    shadowed : (rows, cols) bool, cells in shadow contribute nothing.
    user_weight : (rows, cols) float64 per-cell weights for ``contribution`` 2 (else unused),
        shared among a cell's facets in proportion to their area.
    oversample : k, sub-quads per cell side.
    contribution : 0 model law, 1 gamma area, 2 user weights.
    law : (3,) float64 coefficients (a0, a1, a2) of the empirical sigma0 law
        a0 cos(t) / (sin(t) + a1 cos(t))^a2, used when ``law_table`` has fewer than 2 entries.
    law_table : (n + 1,) float64 sigma0 at local incidence k * 90 / n degrees, k = 0..n,
        for any other law (linear interpolation).
    exact : True for exact overlap, False for bilinear splatting of facet centres.
    gather : False to scatter, True to gather ``ratios``.
    line0, sample0, n_lines, n_samples : the radar window.
    ratios : (2, n_lines, n_samples) images gathered by channel 0 (weighted by the
        contribution c) and channel 1 (weighted by the gamma area), and ``prefix`` their
        row prefix sums (``projection.row_prefix_sums``); unused when scattering.
    row_start, row_stop : the DEM rows this call handles (neighbours are read around them).

    Outputs (written for the rows handled)
    --------------------------------------
    energy (2, rows, cols): gather only, sum over the cell's facets of c_f, resp.
    A_gamma,f, times the mean ratio over the facet's footprint; sigma_area, gamma_area
    (m^2), contrib_cell (sum of c_f), cos_local (cosine of the local incidence angle).
    Scatter only, accumulated: ``partial`` (2, n_lines, n_samples) and ``cover`` (2,
    n_lines, n_samples + 1) of sum w*c and sum w*A_gamma (``projection.resolve_cover``
    turns them into images; for bilinear projection ``partial`` holds the images), and
    ``plain`` (3, n_lines, n_samples): splatted per-cell sum(A_sigma), sum(A_sigma * pixel
    area), sum(A_sigma * sin(ellipsoid incidence)). Serial, GIL released: callers run row
    blocks on threads, each with its own scatter buffers.
    """
    rows, cols = valid.shape
    k = oversample
    edges, use = _cell_edges(k)
    n_edges = edges.shape[0]
    n_tri = 2 * k * k
    a0 = law[0]
    a1 = law[1]
    a2 = law[2]
    n_table = law_table.shape[0]
    if row_stop > row_start:
        vx = np.empty((k + 1, k + 1, 3))
        vl = np.empty((k + 1, k + 1))
        vs = np.empty((k + 1, k + 1))
        corner = np.empty(3)
        tri_c = np.empty(n_tri)
        tri_g = np.empty(n_tri)
        tri_area = np.empty(n_tri)
        net0 = np.empty(n_edges)
        net1 = np.empty(n_edges)
        dummy = np.empty((2, 1, 1))
        for i in range(row_start, row_stop):
            for j in range(cols):
                if not valid[i, j]:
                    continue
                # Sub-vertices need the neighbouring centres: skip cells next to voids.
                usable = True
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        ii = min(max(i + di, 0), rows - 1)
                        jj = min(max(j + dj, 0), cols - 1)
                        if ecef[ii, jj, 0] != ecef[ii, jj, 0]:
                            usable = False
                if not usable:
                    continue
                for a in range(k + 1):
                    for b in range(k + 1):
                        rho = i - 0.5 + a / k
                        kappa = j - 0.5 + b / k
                        _corner(ecef, i, j, rows, cols, rho, kappa, corner)
                        # Radar coordinates by first-order expansion about the nearest centre.
                        ri = min(max(int(math.floor(rho + 0.5)), 0), rows - 1)
                        rj = min(max(int(math.floor(kappa + 0.5)), 0), cols - 1)
                        if not valid[ri, rj]:
                            ri = i
                            rj = j
                        dl = line[ri, rj]
                        ds = sample[ri, rj]
                        for axis in range(3):
                            d = corner[axis] - ecef[ri, rj, axis]
                            dl += jacobian[ri, rj, 0, axis] * d
                            ds += jacobian[ri, rj, 1, axis] * d
                            vx[a, b, axis] = corner[axis]
                        vl[a, b] = dl - line0 + 0.5
                        vs[a, b] = ds - sample0 + 0.5
                ux = np.float64(look[i, j, 0])
                uy = np.float64(look[i, j, 1])
                uz = np.float64(look[i, j, 2])
                cx = ecef[i, j, 0]
                cy = ecef[i, j, 1]
                cz = ecef[i, j, 2]
                cell_sigma = 0.0
                cell_gamma = 0.0
                cell_c = 0.0
                ax_sum = 0.0
                ay_sum = 0.0
                az_sum = 0.0
                for a in range(k):
                    for b in range(k):
                        for tri in range(2):
                            t = 2 * (a * k + b) + tri
                            a1_, b1_, a2_, b2_ = (a, b + 1, a + 1, b + 1) if tri == 0 else (a + 1, b + 1, a + 1, b)
                            e1x = vx[a1_, b1_, 0] - vx[a, b, 0]
                            e1y = vx[a1_, b1_, 1] - vx[a, b, 1]
                            e1z = vx[a1_, b1_, 2] - vx[a, b, 2]
                            e2x = vx[a2_, b2_, 0] - vx[a, b, 0]
                            e2y = vx[a2_, b2_, 1] - vx[a, b, 1]
                            e2z = vx[a2_, b2_, 2] - vx[a, b, 2]
                            nx = 0.5 * (e1y * e2z - e1z * e2y)
                            ny = 0.5 * (e1z * e2x - e1x * e2z)
                            nz = 0.5 * (e1x * e2y - e1y * e2x)
                            # Outward: the area vector points away from the Earth's centre.
                            if nx * cx + ny * cy + nz * cz < 0.0:
                                nx = -nx
                                ny = -ny
                                nz = -nz
                            area_sigma = math.sqrt(nx * nx + ny * ny + nz * nz)
                            projected = nx * ux + ny * uy + nz * uz
                            area_gamma = projected if projected > 0.0 else 0.0
                            ax_sum += nx
                            ay_sum += ny
                            az_sum += nz
                            cell_sigma += area_sigma
                            cell_gamma += area_gamma
                            tri_c[t] = area_sigma  # provisional, finished below
                            tri_g[t] = 0.0 if shadowed[i, j] else area_gamma
                            cos_t = projected / area_sigma if area_sigma > 0.0 else 0.0
                            if shadowed[i, j]:
                                tri_c[t] = 0.0
                            elif contribution == CONTRIBUTION_MODEL:
                                if n_table > 1:
                                    tri_c[t] = _tabulated(cos_t, law_table) * area_sigma
                                else:
                                    tri_c[t] = _sigma0_model(cos_t, a0, a1, a2) * area_sigma
                            elif contribution == CONTRIBUTION_GAMMA:
                                tri_c[t] = area_gamma
                            tri_area[t] = triangle_signed_area(
                                vl[a, b], vs[a, b], vl[a1_, b1_], vs[a1_, b1_], vl[a2_, b2_], vs[a2_, b2_]
                            )
                if contribution == CONTRIBUTION_USER:
                    for t in range(n_tri):
                        tri_c[t] = user_weight[i, j] * tri_c[t] / cell_sigma if cell_sigma > 0.0 else 0.0
                for t in range(n_tri):
                    cell_c += tri_c[t]
                sigma_area[i, j] = cell_sigma
                gamma_area[i, j] = cell_gamma
                contrib_cell[i, j] = cell_c
                norm = math.sqrt(ax_sum * ax_sum + ay_sum * ay_sum + az_sum * az_sum)
                if norm > 0.0:
                    cos_local[i, j] = (ax_sum * ux + ay_sum * uy + az_sum * uz) / norm
                if exact:
                    if gather:
                        em = 0.0
                        eg = 0.0
                        for e in range(n_edges):
                            net0[e], net1[e] = walk_edge(
                                vl[edges[e, 0], edges[e, 1]], vs[edges[e, 0], edges[e, 1]],
                                vl[edges[e, 2], edges[e, 3]], vs[edges[e, 2], edges[e, 3]],
                                0.0, 0.0, dummy, dummy, prefix, ratios, True,
                            )
                        for t in range(n_tri):
                            if tri_area[t] == 0.0 or tri_area[t] != tri_area[t]:
                                continue
                            g0 = 0.0
                            g1 = 0.0
                            for m in range(3):
                                g0 += use[t, m, 1] * net0[use[t, m, 0]]
                                g1 += use[t, m, 1] * net1[use[t, m, 0]]
                            em += tri_c[t] * g0 / tri_area[t]
                            eg += tri_g[t] * g1 / tri_area[t]
                        energy[0, i, j] = em
                        energy[1, i, j] = eg
                    else:
                        for e in range(n_edges):
                            net0[e] = 0.0
                            net1[e] = 0.0
                        for t in range(n_tri):
                            if tri_area[t] == 0.0 or tri_area[t] != tri_area[t]:
                                continue
                            for m in range(3):
                                net0[use[t, m, 0]] += use[t, m, 1] * tri_c[t] / tri_area[t]
                                net1[use[t, m, 0]] += use[t, m, 1] * tri_g[t] / tri_area[t]
                        for e in range(n_edges):
                            if net0[e] != 0.0 or net1[e] != 0.0:
                                walk_edge(
                                    vl[edges[e, 0], edges[e, 1]], vs[edges[e, 0], edges[e, 1]],
                                    vl[edges[e, 2], edges[e, 3]], vs[edges[e, 2], edges[e, 3]],
                                    net0[e], net1[e], partial, cover, dummy, dummy, False,
                                )
                else:
                    em = 0.0
                    eg = 0.0
                    for a in range(k):
                        for b in range(k):
                            for tri in range(2):
                                t = 2 * (a * k + b) + tri
                                a1_, b1_, a2_, b2_ = (a, b + 1, a + 1, b + 1) if tri == 0 else (a + 1, b + 1, a + 1, b)
                                lc = (vl[a, b] + vl[a1_, b1_] + vl[a2_, b2_]) / 3.0
                                sc = (vs[a, b] + vs[a1_, b1_] + vs[a2_, b2_]) / 3.0
                                if gather:
                                    em += tri_c[t] * gather_bilinear(lc, sc, ratios[0])
                                    eg += tri_g[t] * gather_bilinear(lc, sc, ratios[1])
                                else:
                                    scatter_bilinear(lc, sc, tri_c[t], partial[0])
                                    scatter_bilinear(lc, sc, tri_g[t], partial[1])
                    energy[0, i, j] = em
                    energy[1, i, j] = eg
                if not gather:
                    # Coverage, pixel area and incidence are smooth: one splat per cell.
                    lc = line[i, j] - line0 + 0.5
                    sc = sample[i, j] - sample0 + 0.5
                    scatter_bilinear(lc, sc, cell_sigma, plain[0])
                    scatter_bilinear(lc, sc, cell_sigma * np.float64(pixel_area[i, j]), plain[1])
                    scatter_bilinear(lc, sc, cell_sigma * math.sin(np.float64(incidence[i, j])), plain[2])


@numba.njit(cache=True, nogil=True)
def visibility_profiles(line, sample, slant_range, look_angle, cross_track, faces_away, valid,
                        line0, sample0, n_lines, n_samples, range_tolerance):
    """Layover and shadow masks along exact zero-Doppler lines, and the mixing degree.

    For every radar line L of the window, each DEM column is cut where the cells' line
    crosses L (rows must run along track: the caller transposes the DEM otherwise) and
    the slant range, look angle and cross-track angle are interpolated there: the terrain
    profile in that zero-Doppler plane. The profile is ordered by cross-track angle and
    swept as in ISCE3: shadow where the look angle is at or below the running maximum from
    near to far (active where the surface faces away), layover where the slant range is
    below the running maximum (forward) or above the running minimum (backward), active
    when both. Each cell takes the flags of the profile point nearest to it along track.
    Mixing counts, per pixel, the separate runs of illuminated profile points in it.

    Parameters
    ----------
    line, sample, slant_range, look_angle, cross_track : (rows, cols) float64 from
        ``cell_geometry``; rows must run along track.
    faces_away : (rows, cols) bool, the cell's surface faces away from the sensor.
    valid : (rows, cols) bool.
    line0, sample0, n_lines, n_samples : the radar window (absolute first line/sample, size).
    range_tolerance : slant-range difference (m) below which two profile points count as
        level, so that interpolation noise never reads as layover or shadow.

    Returns
    -------
    layover, shadow : (rows, cols) uint8 (0 none, 1 active, 2 passive, 255 no profile
        reached the cell)
    mixing : (n_lines, n_samples) uint16
    """
    rows, cols = line.shape
    layover = np.full((rows, cols), OUTSIDE, dtype=np.uint8)
    shadow = np.full((rows, cols), OUTSIDE, dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)
    best = np.full((rows, cols), np.inf)
    pointer = np.zeros(cols, dtype=np.int64)
    ct = np.empty(cols)
    eta = np.empty(cols)
    rng = np.empty(cols)
    smp = np.empty(cols)
    away = np.zeros(cols, dtype=np.bool_)
    near_row = np.empty(cols, dtype=np.int64)
    column = np.empty(cols, dtype=np.int64)
    distance = np.empty(cols)
    if rows < 2:
        return layover, shadow, mixing
    for b in range(n_lines):
        target = line0 + b
        n = 0
        for j in range(cols):
            # Move this column's bracket (i, i + 1) to the pair whose lines straddle target.
            i = pointer[j]
            found = False
            for _ in range(rows):
                if valid[i, j] and valid[i + 1, j]:
                    lo = min(line[i, j], line[i + 1, j])
                    hi = max(line[i, j], line[i + 1, j])
                    if lo <= target <= hi:
                        found = True
                        break
                    ahead = target > hi
                    if (line[i + 1, j] > line[i, j]) == ahead:
                        if i + 2 < rows:
                            i += 1
                        else:
                            break
                    else:
                        if i > 0:
                            i -= 1
                        else:
                            break
                else:
                    if i + 2 < rows:
                        i += 1
                    else:
                        break
            pointer[j] = i
            if not found:
                continue
            span = line[i + 1, j] - line[i, j]
            f = 0.0 if span == 0.0 else (target - line[i, j]) / span
            ct[n] = (1.0 - f) * cross_track[i, j] + f * cross_track[i + 1, j]
            eta[n] = (1.0 - f) * look_angle[i, j] + f * look_angle[i + 1, j]
            rng[n] = (1.0 - f) * slant_range[i, j] + f * slant_range[i + 1, j]
            smp[n] = (1.0 - f) * sample[i, j] + f * sample[i + 1, j]
            r_near = i if f < 0.5 else i + 1
            away[n] = faces_away[r_near, j]
            near_row[n] = r_near
            column[n] = j
            distance[n] = abs(target - line[r_near, j])
            n += 1
        if n == 0:
            continue
        order = np.argsort(ct[:n])
        flags = np.zeros(n, dtype=np.uint8)
        shade = np.zeros(n, dtype=np.uint8)
        max_look = -1.0
        for k in range(n):
            p = order[k]
            if away[p]:
                shade[k] = ACTIVE
            elif eta[p] <= max_look - range_tolerance / rng[p]:
                shade[k] = PASSIVE
            if eta[p] > max_look:
                max_look = eta[p]
        max_range = -1.0
        for k in range(n):
            r = rng[order[k]]
            if r < max_range - range_tolerance:
                flags[k] |= 1
            elif r > max_range:
                max_range = r
        min_range = math.inf
        for k in range(n - 1, -1, -1):
            r = rng[order[k]]
            if r > min_range + range_tolerance:
                flags[k] |= 2
            elif r < min_range:
                min_range = r
        previous = -(1 << 30)
        for k in range(n):
            p = order[k]
            i = near_row[p]
            j = column[p]
            if distance[p] < best[i, j]:
                best[i, j] = distance[p]
                layover[i, j] = ACTIVE if flags[k] == 3 else (PASSIVE if flags[k] != 0 else NONE)
                shadow[i, j] = shade[k]
            if shade[k] != NONE:
                previous = -(1 << 30)
                continue
            c = int(math.floor(smp[p] + 0.5)) - sample0
            if c == previous:
                continue
            if previous == -(1 << 30) or abs(c - previous) <= 1:
                first = c
                last = c
            elif c > previous:
                first = previous + 1
                last = c
            else:
                first = c
                last = previous - 1
            for cc in range(max(first, 0), min(last, n_samples - 1) + 1):
                if mixing[b, cc] < 65535:
                    mixing[b, cc] += 1
            previous = c
    return layover, shadow, mixing
