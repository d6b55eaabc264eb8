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

from ..kernels import WGS84_A, WGS84_E2
from .bundles import Geocoded, GeocodingGeometry

__all__ = ["block_rows", "geocode"]

#: Newton's step (s) below which a zero-Doppler time has converged (as the numba kernel's:
#: the time's error is then about 1e-15 s).
STEP_TOLERANCE = 1e-6
#: Newton iterations at most, from the linearised solution about the orbit's centre (two to
#: four settle a cell of an Earth orbit).
MAX_ITERATIONS = 40
#: Bytes of the device's memory a cell of a block takes at most (inputs, the Newton state,
#: the outputs; float64), and the share of the free memory the blocks may take.
BYTES_PER_CELL = 480
FREE_MEMORY_SHARE = 0.5
#: Cells of a block on the CPU.
CPU_BLOCK_CELLS = 1 << 21


def block_rows(rows: int, cols: int, device: torch.device, bytes_per_cell: int = BYTES_PER_CELL) -> int:
    """Rows of a block of a ``rows`` x ``cols`` grid: on a GPU, as many as half its free
    memory holds (at least one); on the CPU, about :data:`CPU_BLOCK_CELLS` cells."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cells = int(free * FREE_MEMORY_SHARE) // bytes_per_cell
    else:
        cells = CPU_BLOCK_CELLS
    return max(1, min(rows, cells // max(cols, 1)))


def _axis_or_grid(values: np.ndarray, rows: slice, device: torch.device) -> torch.Tensor:
    """Rows ``rows`` of a (rows, cols) array as a float64 tensor; a broadcast view of one
    axis is sent as that axis alone and expanded on the device."""
    block = values[rows]
    if block.strides[0] == 0:  # one row repeated (the columns' longitudes)
        return _tensor(block[:1], device).expand(block.shape)
    if block.strides[1] == 0:  # one value per row (the rows' latitudes)
        return _tensor(block[:, :1], device).expand(block.shape)
    return _tensor(block, device)


def _tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float64 copy of ``values`` on ``device`` (a copy: the arrays sarheight passes are
    often read-only views, which torch does not share)."""
    return torch.tensor(values, dtype=torch.float64, device=device)


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


def geocode(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
            clip: bool, device: str) -> Geocoded:
    """:func:`sarheight.compute.geocode` in torch (float64) on ``device``."""
    where = torch.device(device)
    g = geometry
    rows, cols = height.shape
    out_ns = np.empty((rows, cols), dtype=np.int64)
    out_range = np.empty((rows, cols))
    out_line = np.empty((rows, cols))
    out_sample = np.empty((rows, cols))
    out_incidence = np.empty((rows, cols), dtype=np.float32)
    f64 = {"dtype": torch.float64, "device": where}
    coeffs, range_times, range_sr0, range_coeffs = (
        _tensor(np.asarray(values), where) for values in (g.orbit_coeffs, g.range_times, g.range_sr0, g.range_coeffs))
    centre, centre_velocity, _ = _orbit_state(coeffs, g.orbit_t_center, g.orbit_t_scale,
                                              torch.tensor(g.orbit_t_center, **f64))
    step_rows = block_rows(rows, cols, where)
    for start in range(0, rows, step_rows):
        block = slice(start, min(rows, start + step_rows))
        lon = _axis_or_grid(lon_rad, block, where)
        lat = _axis_or_grid(lat_rad, block, where)
        h = _tensor(height[block], where)
        cos_lat, sin_lat = torch.cos(lat), torch.sin(lat)
        cos_lon, sin_lon = torch.cos(lon), torch.sin(lon)
        prime_vertical = WGS84_A / torch.sqrt(1.0 - WGS84_E2 * sin_lat * sin_lat)
        normal = torch.stack((cos_lat * cos_lon, cos_lat * sin_lon, sin_lat), dim=-1)
        target = torch.stack(((prime_vertical + h) * normal[..., 0], (prime_vertical + h) * normal[..., 1],
                              (prime_vertical * (1.0 - WGS84_E2) + h) * sin_lat), dim=-1)
        # The linearised solution about the orbit's centre, then Newton on all cells at once.
        t = g.orbit_t_center + ((target - centre) * centre_velocity).sum(-1) / (centre_velocity**2).sum()
        step = torch.full_like(t, math.inf)
        for _ in range(MAX_ITERATIONS):
            position, velocity, acceleration = _orbit_state(coeffs, g.orbit_t_center, g.orbit_t_scale, t)
            offset = target - position
            f = (offset * velocity).sum(-1)
            derivative = (offset * acceleration).sum(-1) - (velocity * velocity).sum(-1)
            step = f / derivative
            t = t - step
            # NaN steps (void heights) compare False: they do not hold the loop.
            if not bool((step.abs() >= STEP_TOLERANCE).any()):
                break
        position, velocity, _ = _orbit_state(coeffs, g.orbit_t_center, g.orbit_t_scale, t)
        offset = target - position
        slant_range = torch.linalg.vector_norm(offset, dim=-1)
        solved = (step.abs() < STEP_TOLERANCE) & (t >= g.valid_min) & (t <= g.valid_max)
        cos_incidence = (-(offset * normal).sum(-1) / slant_range).clamp(-1.0, 1.0)
        incidence = torch.rad2deg(torch.arccos(cos_incidence))
        # (X - S) . (V x S) > 0 for a target to the right of the track.
        side = (offset * torch.linalg.cross(velocity, position, dim=-1)).sum(-1) * g.look_sign
        line_time = t - g.bistatic_rate * (slant_range - g.bistatic_reference_range)
        entry = _nearest_entry(range_times, torch.nan_to_num(line_time))
        across = slant_range - range_sr0[entry]
        entry_coeffs = range_coeffs[entry]
        ground = entry_coeffs[..., -1]
        for k in range(range_coeffs.shape[1] - 2, -1, -1):
            ground = ground * across + entry_coeffs[..., k]
        line = (line_time - g.first_line_time) / g.line_interval
        sample = ground / g.range_spacing
        inside = solved & (side > 0)
        if clip:
            inside = inside & (line >= -0.5) & (line <= g.lines - 0.5) & (sample >= -0.5) & (sample <= g.samples - 0.5)
        nan = torch.tensor(math.nan, **f64)
        out_range[block] = torch.where(solved, slant_range, nan).cpu().numpy()
        out_incidence[block] = torch.where(solved, incidence, nan).to(torch.float32).cpu().numpy()
        out_line[block] = torch.where(inside, line, nan).cpu().numpy()
        out_sample[block] = torch.where(inside, sample, nan).cpu().numpy()
        nanoseconds = g.reference_ns + torch.round(torch.where(solved, t, 0.0) * 1e9).to(torch.int64)
        out_ns[block] = torch.where(solved, nanoseconds, torch.iinfo(torch.int64).min).cpu().numpy()
    return Geocoded(out_ns, out_range, out_line, out_sample, out_incidence)
