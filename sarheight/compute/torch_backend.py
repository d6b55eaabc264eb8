"""The torch backend of the kernel door: the passes as whole-array tensor operations, on a
CUDA GPU or on the CPU (where the tests hold them to the numba kernels).

Geolocation is float64 throughout: an ECEF coordinate is about 6.4e6 m, which float32
holds to half a metre, and a time since the orbit's epoch is tens of seconds, which it
holds to a few microseconds (centimetres along the track). The cells go by blocks of rows
sized from the device's free memory, so that a grid never asks for more than the card has.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..kernels.radar_buffers import PAD
from ..kernels.reallocation import VALID_AREA_FRACTION
from .bundles import (
    CellGeometry,
    GatheredCells,
    Geocoded,
    GeocodingGeometry,
    OrbitPolynomial,
    PixelFields,
    WindowImages,
)
from .torch_blocks import as_tensor, axis_or_grid, block_rows, grid_positions, positions
from .torch_facets import facet_pass_bilinear, facet_pass_exact, facet_tile_cells
from .torch_footprints import active_layover, cell_ecef, facet_extent, layover_facing_share
from .torch_sweep import sweep_fits, visibility_masks

__all__ = ["active_layover", "add_tile_rows", "block_rows", "cell_ecef", "cell_geometry", "clear_residue", "ecef",
           "facet_extent", "facet_pass_bilinear", "facet_pass_exact", "facet_tile_cells", "finish_cells",
           "gather_buffer", "geocode", "intensity_flags", "interpolate_rows", "layover_facing_share", "lee",
           "missing_pixels", "orbit_states", "polynomial_field", "radar_products", "reallocation_ratios",
           "sample_cells", "samples_of_slant_ranges", "sweep_fits", "valid_pixels", "visibility_masks",
           "weighted_mean"]

#: Newton's step (s) below which a zero-Doppler time has converged (as the numba kernel's:
#: the time's error is then about 1e-15 s).
STEP_TOLERANCE = 1e-6
#: Newton iterations at most, from the linearised solution about the orbit's centre (two to
#: four settle a cell of an Earth orbit).
MAX_ITERATIONS = 40
def _orbit_state(coeffs: torch.Tensor, t_center: float, t_scale: float, t: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Position (m), velocity (m/s) and acceleration (m/s^2), each (..., 3), of the
    polynomial orbit at times ``t`` (s): Horner's rule on the polynomial and its two
    derivatives at once."""
    tau = ((t - t_center) / t_scale).unsqueeze(-1)
    degree = coeffs.shape[0] - 1
    position = coeffs[degree].expand(*t.shape, 3)
    velocity = torch.zeros_like(position)
    acceleration = torch.zeros_like(position)
    for k in range(degree - 1, -1, -1):
        acceleration = acceleration * tau + 2.0 * velocity
        velocity = velocity * tau + position
        position = position * tau + coeffs[k]
    return position, velocity / t_scale, acceleration / t_scale**2


def _nearest_entry(times: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Index of the entry of ``times`` (s, sorted) nearest to each ``t`` (s), the earlier of
    two equally near (as ``kernels.radar_grid.nearest_entry``)."""
    n = times.shape[0]
    if n == 1:
        return torch.zeros(t.shape, dtype=torch.int64, device=t.device)
    later = torch.searchsorted(times, t.contiguous(), right=True).clamp(1, n - 1)
    earlier = later - 1
    return torch.where(t - times[earlier] <= times[later] - t, earlier, later)


class _Acquisition:
    """A :class:`GeocodingGeometry`'s arrays as float64 tensors on one device, and the
    orbit's state at its centre (the linearised first guess)."""

    def __init__(self, geometry: GeocodingGeometry, device: torch.device) -> None:
        self.geometry = geometry
        self.device = device
        self.coeffs, self.range_times, self.range_sr0, self.range_coeffs = (
            as_tensor(np.asarray(values), device)
            for values in (geometry.orbit_coeffs, geometry.range_times, geometry.range_sr0, geometry.range_coeffs))
        centre = torch.tensor(geometry.orbit_t_center, dtype=torch.float64, device=device)
        self.centre, self.centre_velocity, _ = self.state(centre)

    def state(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _orbit_state(self.coeffs, self.geometry.orbit_t_center, self.geometry.orbit_t_scale, t)

    def range_axis(self, line_time: torch.Tensor, slant_range: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The range-axis coordinate (m) of each slant range and its derivative in it, from
        the range polynomial nearest in time."""
        return _range_axis(self.range_times, self.range_sr0, self.range_coeffs, line_time, slant_range)


def _range_axis(range_times: torch.Tensor, range_sr0: torch.Tensor, range_coeffs: torch.Tensor,
                line_time: torch.Tensor, slant_range: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The range-axis coordinate (m) of each slant range and its derivative in it, from the
    range polynomial (``range_coeffs``, in ``slant_range - range_sr0``) nearest in time."""
    entry = _nearest_entry(range_times, torch.nan_to_num(line_time))
    across = slant_range - range_sr0[entry]
    coeffs = range_coeffs[entry]
    value = coeffs[..., -1]
    slope = torch.zeros_like(value)
    for k in range(range_coeffs.shape[1] - 2, -1, -1):
        slope = slope * across + value
        value = value * across + coeffs[..., k]
    return value, slope


def intensity_flags(image: np.ndarray, *, device: str) -> tuple[bool, bool, bool, bool]:
    """:func:`sarheight.compute.intensity_flags` in torch (the image in its own precision)."""
    values = torch.as_tensor(np.ascontiguousarray(image), device=torch.device(device))
    flags = (torch.isinf(values).any(), (values < 0).any(), torch.isfinite(values).any(), torch.isnan(values).any())
    return tuple(bool(flag) for flag in flags)  # type: ignore[return-value]


def weighted_mean(weighted_sum: np.ndarray, weight_sum: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.weighted_mean` in torch, float64."""
    where = torch.device(device)
    weighted, weight = as_tensor(weighted_sum, where), as_tensor(weight_sum, where)
    return torch.where(weight > 0, weighted / weight, torch.nan).cpu().numpy()


def interpolate_rows(along: np.ndarray, row_node: np.ndarray, row_weight: np.ndarray, scale: float,
                     out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.interpolate_rows` in torch, float64, the kernel's operations
    in its order."""
    where = torch.device(device)
    nodes = as_tensor(along, where)
    node = torch.as_tensor(row_node, dtype=torch.int64, device=where)
    weight = as_tensor(row_weight, where)[:, None]
    out[...] = ((nodes[node] * (1.0 - weight) + nodes[node + 1] * weight) * scale).cpu().numpy()


def lee(image: np.ndarray, window: int, looks: float, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.lee` in torch, float64: each window's sums of the valid
    pixels, their squares and their count by one convolution each (zero padding shrinks
    the window at the edges), then Lee's estimate as the kernel makes it."""
    where = torch.device(device)
    intensity = as_tensor(image, where)
    valid = ~torch.isnan(intensity)
    values = torch.where(valid, intensity, 0.0)
    ones = torch.ones((1, 1, window, window), dtype=torch.float64, device=where)

    def window_sum(plane: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(plane[None, None], ones, padding=window // 2)[0, 0]

    total, total_sq, count = window_sum(values), window_sum(values * values), window_sum(valid.to(torch.float64))
    mean = total / count
    variance = total_sq / count - mean * mean
    noise = 1.0 / looks
    weight = ((variance - mean * mean * noise) / (1.0 + noise) / variance).clamp(0.0, 1.0)
    estimate = torch.where(variance > 0, mean + weight * (intensity - mean), mean)
    return torch.where(valid, estimate, torch.nan).cpu().numpy()


def orbit_states(orbit: OrbitPolynomial, seconds: np.ndarray, *, device: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sarheight.compute.orbit_states` in torch, float64 (Horner's rule)."""
    where = torch.device(device)
    states = _orbit_state(as_tensor(np.asarray(orbit.coeffs), where), float(orbit.t_center), float(orbit.t_scale),
                          as_tensor(seconds, where))
    return tuple(state.cpu().numpy() for state in states)  # type: ignore[return-value]


def samples_of_slant_ranges(line_time: np.ndarray, slant_range: np.ndarray, geometry: GeocodingGeometry, *,
                            device: str) -> np.ndarray:
    """:func:`sarheight.compute.samples_of_slant_ranges` in torch, float64."""
    where = torch.device(device)
    times, sr0, coeffs = (as_tensor(np.asarray(values), where)
                          for values in (geometry.range_times, geometry.range_sr0, geometry.range_coeffs))
    t, r = as_tensor(line_time, where), as_tensor(slant_range, where)
    value, _ = _range_axis(times, sr0, coeffs, t, r)
    known = torch.isfinite(t) & torch.isfinite(r)
    return torch.where(known, value / geometry.range_spacing, torch.nan).cpu().numpy()


def ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.ecef` in torch (float64) on ``device``."""
    where = torch.device(device)
    lon, lat, h = (as_tensor(values, where) for values in (lon_rad, lat_rad, height))
    return positions(lon, lat, h)[0].cpu().numpy()


def _solve(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, rows: slice, acquisition: _Acquisition
           ) -> dict[str, torch.Tensor]:
    """The zero-Doppler solution of the cells of ``rows``: their ECEF positions and
    ellipsoid normals, time (s), the sensor's state there, slant range, whether solved and
    on the looked-at side, the line time and the range axis (unclipped line and sample)."""
    g, where = acquisition.geometry, acquisition.device
    lon, lat = axis_or_grid(lon_rad, rows, where), axis_or_grid(lat_rad, rows, where)
    target, normal = positions(lon, lat, as_tensor(height[rows], where))
    # The linearised solution about the orbit's centre, then Newton on all cells at once.
    velocity = acquisition.centre_velocity
    t = g.orbit_t_center + ((target - acquisition.centre) * velocity).sum(-1) / (velocity**2).sum()
    step = torch.full_like(t, math.inf)
    for _ in range(MAX_ITERATIONS):
        position, velocity, acceleration = acquisition.state(t)
        offset = target - position
        step = (offset * velocity).sum(-1) / ((offset * acceleration).sum(-1) - (velocity * velocity).sum(-1))
        t = t - step
        # NaN steps (void heights) compare False: they do not hold the loop.
        if not bool((step.abs() >= STEP_TOLERANCE).any()):
            break
    position, velocity, acceleration = acquisition.state(t)
    offset = target - position
    slant_range = torch.linalg.vector_norm(offset, dim=-1)
    solved = (step.abs() < STEP_TOLERANCE) & (t >= g.valid_min) & (t <= g.valid_max)
    # (X - S) . (V x S) > 0 for a target to the right of the track.
    side = (offset * torch.linalg.cross(velocity, position, dim=-1)).sum(-1) * g.look_sign
    line_time = t - g.bistatic_rate * (slant_range - g.bistatic_reference_range)
    ground, slope = acquisition.range_axis(line_time, slant_range)
    return {"target": target, "normal": normal, "t": t, "position": position, "velocity": velocity,
            "acceleration": acceleration, "offset": offset, "slant_range": slant_range, "solved": solved,
            "looked_at": solved & (side > 0), "line": (line_time - g.first_line_time) / g.line_interval,
            "sample": ground / g.range_spacing, "slope": slope}


def _nanoseconds(t: torch.Tensor, solved: torch.Tensor, reference_ns: int) -> np.ndarray:
    """Times (s since the epoch ``reference_ns``) as int64 ns since 1970, NaT where unsolved."""
    nanoseconds = reference_ns + torch.round(torch.where(solved, t, 0.0) * 1e9).to(torch.int64)
    return torch.where(solved, nanoseconds, torch.iinfo(torch.int64).min).cpu().numpy()


def _host(values: torch.Tensor, keep: torch.Tensor, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """``values`` where ``keep``, else NaN, as a host array of ``dtype``."""
    return torch.where(keep, values, math.nan).to(dtype).cpu().numpy()


def geocode(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
            clip: bool, device: str) -> Geocoded:
    """:func:`sarheight.compute.geocode` in torch (float64) on ``device``."""
    acquisition = _Acquisition(geometry, torch.device(device))
    g = geometry
    rows, cols = height.shape
    out_ns = np.empty((rows, cols), dtype=np.int64)
    out_range, out_line, out_sample = (np.empty((rows, cols)) for _ in range(3))
    out_incidence = np.empty((rows, cols), dtype=np.float32)
    step_rows = block_rows(rows, cols, acquisition.device)
    for start in range(0, rows, step_rows):
        block = slice(start, min(rows, start + step_rows))
        cells = _solve(lon_rad, lat_rad, height, block, acquisition)
        solved, line, sample = cells["solved"], cells["line"], cells["sample"]
        cos_incidence = (-(cells["offset"] * cells["normal"]).sum(-1) / cells["slant_range"]).clamp(-1.0, 1.0)
        inside = cells["looked_at"]
        if clip:
            inside = inside & (line >= -0.5) & (line <= g.lines - 0.5) & (sample >= -0.5) & (sample <= g.samples - 0.5)
        out_range[block] = _host(cells["slant_range"], solved)
        out_incidence[block] = _host(torch.rad2deg(torch.arccos(cos_incidence)), solved, torch.float32)
        out_line[block] = _host(line, inside)
        out_sample[block] = _host(sample, inside)
        out_ns[block] = _nanoseconds(cells["t"], solved, g.reference_ns)
    return Geocoded(out_ns, out_range, out_line, out_sample, out_incidence)


def cell_geometry(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
                  own_surface: bool, device: str) -> CellGeometry:
    """:func:`sarheight.compute.cell_geometry` in torch (float64; the look vector, pixel
    area and incidence float32, as the numba kernel gives them) on ``device``."""
    acquisition = _Acquisition(geometry, torch.device(device))
    g = geometry
    rows, cols = height.shape
    out_ns = np.empty((rows, cols), dtype=np.int64)
    out_range, out_line, out_sample, out_look_angle, out_cross = (np.empty((rows, cols)) for _ in range(5))
    out_area, out_incidence = (np.empty((rows, cols), dtype=np.float32) for _ in range(2))
    out_look = np.empty((rows, cols, 3), dtype=np.float32)
    out_valid = np.empty((rows, cols), dtype=bool)
    out_away = np.empty((rows, cols), dtype=bool) if own_surface else None
    step_rows = block_rows(rows, cols, acquisition.device)
    for start in range(0, rows, step_rows):
        block = slice(start, min(rows, start + step_rows))
        cells = _solve(lon_rad, lat_rad, height, block, acquisition)
        valid, offset, r = cells["looked_at"], cells["offset"], cells["slant_range"]
        position, velocity, target = cells["position"], cells["velocity"], cells["target"]
        speed2 = (velocity * velocity).sum(-1)
        derivative = (offset * cells["acceleration"]).sum(-1) - speed2
        # Along track a line is -f'/|V| * interval at the target; a sample is
        # spacing / (d ground / d r) along the range.
        area = (-derivative / torch.sqrt(speed2)) * (g.line_interval * g.range_spacing) / cells["slope"]
        sensor = torch.linalg.vector_norm(position, dim=-1)

        def angle(cosine: torch.Tensor) -> torch.Tensor:
            return torch.arccos(cosine.clamp(-1.0, 1.0))

        incidence = angle(-(cells["normal"] * offset).sum(-1) / r)
        look_angle = angle(-(position * offset).sum(-1) / (sensor * r))
        cross_track = angle((position * target).sum(-1) / (sensor * torch.linalg.vector_norm(target, dim=-1)))
        out_ns[block] = _nanoseconds(cells["t"], cells["solved"], g.reference_ns)
        out_range[block] = _host(r, cells["solved"])
        out_line[block] = _host(cells["line"], valid)
        out_sample[block] = _host(cells["sample"], valid)
        look = torch.where(valid[..., None], -offset / r[..., None], 0.0).to(torch.float32)
        out_look[block] = look.cpu().numpy()
        if out_away is not None:
            out_away[block] = _faces_away(lon_rad, lat_rad, height, block, target, look, acquisition.device)
        out_area[block] = _host(area, valid, torch.float32)
        out_incidence[block] = _host(incidence, valid, torch.float32)
        out_look_angle[block] = _host(look_angle, valid)
        out_cross[block] = _host(cross_track, valid)
        out_valid[block] = valid.cpu().numpy()
    return CellGeometry(out_ns, out_range, out_line, out_sample, out_look, out_area, out_incidence, out_look_angle,
                        out_cross, out_valid, out_away)


def _faces_away(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, block: slice, target: torch.Tensor,
                look: torch.Tensor, device: torch.device) -> np.ndarray:
    """Whether each cell of the rows ``block`` faces away from the sensor, as
    ``kernels.facing.faces_away`` judges it: the normal the cross product of the central
    differences of the ECEF positions along columns and rows (one-sided at the grid's
    border), turned outward; away where it has no positive component along the look
    vector (float32, as the kernel reads it); False where a position is void. ``target``:
    the block's positions; the rows either side are made here."""
    rows = height.shape[0]
    first, last = max(0, block.start - 1), min(rows, block.stop + 1)
    parts = [target]
    if first < block.start:
        parts.insert(0, grid_positions(lon_rad, lat_rad, height, slice(first, block.start), device))
    if last > block.stop:
        parts.append(grid_positions(lon_rad, lat_rad, height, slice(block.stop, last), device))
    ring = torch.cat(parts) if len(parts) > 1 else target
    own = torch.arange(block.start, block.stop, device=device) - first
    below, above = (own - 1).clamp(min=0), (own + 1).clamp(max=ring.shape[0] - 1)
    along_rows = (ring[above] - ring[below]) / (above - below).clamp(min=1).to(torch.float64)[:, None, None]
    cols = ring.shape[1]
    column = torch.arange(cols, device=device)
    left, right = (column - 1).clamp(min=0), (column + 1).clamp(max=cols - 1)
    centre = ring[own]
    along_columns = (centre[:, right] - centre[:, left]) / (right - left).clamp(min=1).to(torch.float64)[None, :, None]
    normal = torch.linalg.cross(along_columns, along_rows, dim=-1)
    outward = (normal * centre).sum(-1)
    towards = (normal * look.to(torch.float64)).sum(-1)
    away = torch.where(outward > 0.0, towards, -towards) <= 0.0
    away = torch.where(outward == 0.0, True, away)
    return torch.where(torch.isnan(outward) | torch.isnan(towards), False, away).cpu().numpy()


def _pixel_field(fields: PixelFields, field: int, shape: tuple[int, int], where: torch.device) -> torch.Tensor:
    """Field ``field`` of ``fields`` (0: the pixel area, 1: the flat terrain's gamma area)
    at every pixel of a window of ``shape`` whose pixel (0, 0) is ``fields.line0``,
    ``fields.sample0``, as ``kernels.reallocation`` evaluates it: the polynomial in the
    sample of each line's coefficients, by Horner's rule."""
    n_lines, n_samples = shape
    fit_line0, fit_lines, fit_sample0, fit_samples = fields.fit_window
    u = ((fields.line0 + torch.arange(n_lines, device=where, dtype=torch.float64)) - fit_line0
         - 0.5 * fit_lines) / max(fit_lines, 1)
    v = ((fields.sample0 + torch.arange(n_samples, device=where, dtype=torch.float64)) - fit_sample0
         - 0.5 * fit_samples) / max(fit_samples, 1)
    powers = np.asarray(fields.powers)
    degree = int(powers[:, 1].max()) if powers.size else 0
    terms = torch.zeros((degree + 1, n_lines), dtype=torch.float64, device=where)
    for term, (p, q) in enumerate(powers):
        value = torch.full_like(u, float(fields.coefficients[field, term]))
        for _ in range(int(p)):
            value = value * u
        terms[int(q)] = terms[int(q)] + value
    out = torch.zeros((n_lines, n_samples), dtype=torch.float64, device=where)
    for q in range(degree, -1, -1):
        out = out * v[None, :] + terms[q][:, None]
    return out


def _window_fields(fields: PixelFields, shape: tuple[int, int], where: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel area (0 where not known) and the flat terrain's gamma area (infinite
    where not known) on the window, as the per-pixel kernels read them."""
    if not fields.fitted:
        return (torch.zeros(shape, dtype=torch.float64, device=where),
                torch.full(shape, math.inf, dtype=torch.float64, device=where))
    area, flat = _pixel_field(fields, 0, shape, where), _pixel_field(fields, 1, shape, where)
    return torch.where(torch.isnan(area), 0.0, area), torch.where(torch.isnan(flat), math.inf, flat)


def clear_residue(images: np.ndarray, fields: PixelFields, *, device: str) -> None:
    """:func:`sarheight.compute.clear_residue` in torch on ``device``."""
    where = torch.device(device)
    area, _ = _window_fields(fields, images.shape[1:], where)
    for q in range(images.shape[0]):
        image = torch.as_tensor(np.ascontiguousarray(images[q]), device=where)
        images[q] = torch.where(image < float(fields.thresholds[q]) * area, 0.0, image).cpu().numpy()


def reallocation_ratios(sums: np.ndarray, observed: np.ndarray, fields: PixelFields, *, prefix: bool, device: str
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`sarheight.compute.reallocation_ratios` in torch on ``device`` (float64; the row
    prefix sums as a scan)."""
    where = torch.device(device)
    shape = observed.shape
    area, flat = _window_fields(fields, shape, where)
    inner = torch.as_tensor(np.ascontiguousarray(sums[PAD:PAD + shape[0], PAD:PAD + shape[1]]), device=where)
    contribution, gamma = inner[..., 0], inner[..., 1]
    contribution = torch.where(contribution < float(fields.thresholds[0]) * area, 0.0, contribution)
    gamma = torch.where(gamma < float(fields.thresholds[1]) * area, 0.0, gamma)
    simulated = torch.where(area > 0.0, contribution / torch.where(area > 0.0, area, 1.0), math.nan)
    valid = torch.where(torch.isnan(gamma), 0.0, gamma) >= VALID_AREA_FRACTION * flat
    intensity = torch.as_tensor(np.asarray(observed, dtype=np.float64), device=where)
    known = ~torch.isnan(intensity)
    missing = int((~known & ((contribution > 0.0) | (gamma > 0.0))).sum())
    energy = torch.where(known, intensity * area, 0.0)
    ratios = torch.stack([torch.where(part > 0.0, energy / torch.where(part > 0.0, part, 1.0), 0.0)
                          for part in (contribution, gamma)], dim=-1)
    sums[...] = _padded(ratios, prefix, sums.shape).cpu().numpy()
    return simulated.to(torch.float32).cpu().numpy(), valid.cpu().numpy(), missing


def missing_pixels(observed: np.ndarray, sums: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.missing_pixels` in torch on ``device``."""
    where = torch.device(device)
    shape = observed.shape
    inner = torch.as_tensor(np.ascontiguousarray(sums[PAD:PAD + shape[0], PAD:PAD + shape[1]]), device=where)
    unknown = torch.isnan(torch.as_tensor(np.asarray(observed), device=where))
    return (unknown & ((inner[..., 0] > 0.0) | (inner[..., 1] > 0.0))).cpu().numpy()


def gather_buffer(images: np.ndarray, exact: bool, out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.gather_buffer` in torch on ``device``."""
    planes = torch.as_tensor(np.ascontiguousarray(images), device=torch.device(device)).permute(1, 2, 0)
    out[...] = _padded(planes, exact, out.shape).cpu().numpy()


def _padded(images: torch.Tensor, prefix: bool, shape: tuple[int, ...]) -> torch.Tensor:
    """The radar buffer of ``shape`` a gather reads from ``images`` (lines, samples, 2):
    with ``prefix`` their inclusive row prefix sums (0 left of the image, the row's sum
    right of it), else the images (0 around); the padding rows 0
    (``kernels.radar_buffers.prefix_buffer``)."""
    n_lines, n_samples = images.shape[:2]
    buffer = torch.zeros(shape, dtype=torch.float64, device=images.device)
    if prefix:
        running = torch.cumsum(images, dim=1)
        buffer[PAD:PAD + n_lines, PAD:PAD + n_samples] = running
        buffer[PAD:PAD + n_lines, PAD + n_samples:] = running[:, -1:]
    else:
        buffer[PAD:PAD + n_lines, PAD:PAD + n_samples] = images
    return buffer


def _corners(rl: torch.Tensor, rs: torch.Tensor, n_lines: int, n_samples: int) -> tuple[torch.Tensor, ...]:
    """``kernels.projection.bilinear_corners`` of every position: whether inside the
    window, the four nearest pixel centres clamped to it and the weights of r1 and c1."""
    inside = (rl >= -0.5) & (rl <= n_lines - 0.5) & (rs >= -0.5) & (rs <= n_samples - 0.5)
    lc = torch.nan_to_num(rl, nan=0.0).clamp(0.0, n_lines - 1.0)
    sc = torch.nan_to_num(rs, nan=0.0).clamp(0.0, n_samples - 1.0)
    r0 = lc.clamp(max=float(max(n_lines - 2, 0))).to(torch.int64)
    c0 = sc.clamp(max=float(max(n_samples - 2, 0))).to(torch.int64)
    return (inside, r0, c0, (r0 + 1).clamp(max=n_lines - 1), (c0 + 1).clamp(max=n_samples - 1),
            (lc - r0).clamp(max=1.0), (sc - c0).clamp(max=1.0))


def _bilinear(image: torch.Tensor, r0: torch.Tensor, c0: torch.Tensor, r1: torch.Tensor, c1: torch.Tensor,
              wr: torch.Tensor, wc: torch.Tensor) -> torch.Tensor:
    """``kernels.projection.bilinear_read``."""
    return ((1.0 - wr) * ((1.0 - wc) * image[r0, c0] + wc * image[r0, c1])
            + wr * ((1.0 - wc) * image[r1, c0] + wc * image[r1, c1]))


def sample_cells(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, incidence: np.ndarray,
                 images: WindowImages, out: tuple[np.ndarray, np.ndarray, np.ndarray], *, device: str) -> None:
    """:func:`sarheight.compute.sample_cells` in torch on ``device``."""
    where = torch.device(device)
    observed = torch.as_tensor(np.asarray(images.observed, dtype=np.float64), device=where)
    simulated = torch.as_tensor(np.asarray(images.simulated, dtype=np.float64), device=where)
    mixing = torch.as_tensor(np.asarray(images.mixing, dtype=np.int64), device=where)
    rl = as_tensor(line, where) - images.line0
    rs = as_tensor(sample, where) - images.sample0
    inside, r0, c0, r1, c1, wr, wc = _corners(rl, rs, *observed.shape)
    sine = torch.sin(torch.as_tensor(np.asarray(incidence), device=where).to(torch.float64))
    geocoded, simulated_out, mixing_out = out
    geocoded[...] = torch.where(inside, _bilinear(observed, r0, c0, r1, c1, wr, wc) * sine, math.nan).to(
        torch.float32).cpu().numpy()
    simulated_out[...] = torch.where(inside, _bilinear(simulated, r0, c0, r1, c1, wr, wc), math.nan).to(
        torch.float32).cpu().numpy()
    nearest_row = torch.nan_to_num(rl + 0.5, nan=0.0).clamp(0.0, mixing.shape[0] - 1.0).to(torch.int64)
    nearest_col = torch.nan_to_num(rs + 0.5, nan=0.0).clamp(0.0, mixing.shape[1] - 1.0).to(torch.int64)
    chosen = torch.where(torch.as_tensor(np.asarray(valid), device=where), mixing[nearest_row, nearest_col], 0)
    mixing_out[...] = chosen.cpu().numpy().astype(mixing_out.dtype)


def finish_cells(gathered: GatheredCells, line: np.ndarray, sample: np.ndarray, valid: np.ndarray,
                 shadow: np.ndarray, valid_pixels: np.ndarray, origin: tuple[int, int], use_sigma: bool,
                 codes: tuple[int, int, int, int], out: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                 device: str) -> None:
    """:func:`sarheight.compute.finish_cells` in torch on ``device``."""
    where = torch.device(device)
    _, active, passive, outside = codes
    code = torch.as_tensor(np.asarray(shadow), device=where)
    excluded = (code == active) | (code == passive) | (code == outside)
    energy = as_tensor(gathered.energy, where)
    sigma_area, gamma_area = as_tensor(gathered.sigma_area, where), as_tensor(gathered.gamma_area, where)
    area = sigma_area if use_sigma else gamma_area
    backscatter = torch.where((area > 0.0) & ~excluded, energy[0] / torch.where(area > 0.0, area, 1.0), math.nan)
    rl, rs = as_tensor(line, where) - origin[0], as_tensor(sample, where) - origin[1]
    n_lines, n_samples = valid_pixels.shape
    on_window = (rl >= -0.5) & (rl <= n_lines - 0.5) & (rs >= -0.5) & (rs <= n_samples - 0.5)
    row = torch.nan_to_num(rl + 0.5, nan=0.0).floor().clamp(0, n_lines - 1).to(torch.int64)
    col = torch.nan_to_num(rs + 0.5, nan=0.0).floor().clamp(0, n_samples - 1).to(torch.int64)
    flat_ok = on_window & torch.as_tensor(np.asarray(valid_pixels), device=where)[row, col]
    flattened = torch.where((gamma_area > 0.0) & flat_ok & ~excluded,
                            energy[1] / torch.where(gamma_area > 0.0, gamma_area, 1.0), math.nan)
    cosine = as_tensor(gathered.cos_local, where)
    known = torch.as_tensor(np.asarray(valid), device=where) & ~torch.isnan(cosine)
    incidence = torch.where(known, torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0))), math.nan)
    for target, values in zip(out, (backscatter, flattened, incidence), strict=True):
        target[...] = values.to(torch.float32).cpu().numpy()


def _separable(row_terms: np.ndarray, column_terms: np.ndarray, where: torch.device) -> torch.Tensor:
    """The sum over the terms of row factor times column factor, term after term
    (``kernels.radar_buffers.polynomial_field``'s order)."""
    rows, columns = as_tensor(row_terms, where), as_tensor(column_terms, where)
    out = torch.zeros((rows.shape[1], columns.shape[1]), dtype=torch.float64, device=where)
    for term in range(rows.shape[0]):
        out = out + rows[term][:, None] * columns[term][None, :]
    return out


def polynomial_field(row_terms: np.ndarray, column_terms: np.ndarray, out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.polynomial_field` in torch on ``device``."""
    out[...] = _separable(row_terms, column_terms, torch.device(device)).cpu().numpy()


def _reaches(gamma: torch.Tensor, flat: torch.Tensor, fraction: float) -> torch.Tensor:
    """``kernels.radar_buffers.valid_pixels``' test: a NaN image counts as 0, a NaN flat
    area as unreachable, infinities as the largest finite values."""
    big = float(np.finfo(np.float64).max)
    g = torch.nan_to_num(gamma, nan=0.0).clamp(-big, big)
    f = torch.where(torch.isnan(flat), math.inf, flat.clamp(-big, big))
    return g >= fraction * f


def valid_pixels(gamma_image: np.ndarray, flat_gamma_area: np.ndarray, fraction: float, *, device: str
                 ) -> np.ndarray:
    """:func:`sarheight.compute.valid_pixels` in torch on ``device``."""
    where = torch.device(device)
    return _reaches(as_tensor(gamma_image, where), as_tensor(flat_gamma_area, where), fraction).cpu().numpy()


def radar_products(images: np.ndarray, area_terms: tuple[np.ndarray, np.ndarray],
                   flat_terms: tuple[np.ndarray, np.ndarray], fraction: float, out: dict[str, np.ndarray], *,
                   device: str) -> None:
    """:func:`sarheight.compute.radar_products` in torch on ``device``."""
    where = torch.device(device)
    area, flat = _separable(*area_terms, where), _separable(*flat_terms, where)
    sums = as_tensor(images, where)
    positive = area > 0.0
    safe = torch.where(positive, area, 1.0)
    out["pixel_area"][...] = area.to(torch.float32).cpu().numpy()
    out["simulated_area"][...] = torch.where(positive, sums[0] / safe, math.nan).to(torch.float32).cpu().numpy()
    out["simulated_gamma_area"][...] = torch.where(positive, sums[1] / safe, math.nan).to(
        torch.float32).cpu().numpy()
    out["valid"][...] = _reaches(sums[1], flat, fraction).cpu().numpy()


def add_tile_rows(tile_buffer: np.ndarray, sums: np.ndarray, origin: tuple[int, int], rows: tuple[int, int], *,
                  exact: bool, device: str) -> None:
    """:func:`sarheight.compute.add_tile_rows` in torch on ``device`` (exact projection: each
    pixel its own term plus the sum of the terms right of it, as a reversed scan)."""
    where = torch.device(device)
    n_rows, n_cols = tile_buffer.shape[0] - 2 * PAD, tile_buffer.shape[1] - 2 * PAD
    first, stop = max(rows[0], 0), min(rows[1], n_rows)
    if stop <= first:
        return
    source = torch.as_tensor(np.ascontiguousarray(tile_buffer[first + PAD:stop + PAD]), device=where)
    if exact:
        # The terms right of each pixel's column, the padding included.
        suffix = torch.flip(torch.cumsum(torch.flip(source[..., :2], dims=[1]), dim=1), dims=[1])
        right = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], dim=1)
        added = source[:, PAD:PAD + n_cols, 2:4] + right[:, PAD:PAD + n_cols]
    else:
        added = source[:, PAD:PAD + n_cols, :2]
    line, sample = origin
    target = (slice(line + first + PAD, line + stop + PAD), slice(sample + PAD, sample + PAD + n_cols))
    sums[target] += added.cpu().numpy()
