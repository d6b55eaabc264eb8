"""What the torch backend's passes share: blocks of rows sized from the device's memory,
float64 tensors of the caller's arrays, and the cells' ECEF positions."""

from __future__ import annotations

import numpy as np
import torch

from ..kernels import WGS84_A, WGS84_E2

__all__ = ["BYTES_PER_CELL", "CPU_BLOCK_CELLS", "FREE_MEMORY_SHARE", "as_tensor", "axis_or_grid", "block_rows",
           "chunk_elements", "grid_positions", "positions"]


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


def chunk_elements(device: torch.device, bytes_per_element: int, on_the_cpu: int) -> int:
    """Elements of a chunk of a pass's work: on a GPU, as many as half its free memory
    holds at ``bytes_per_element`` each; on the CPU, ``on_the_cpu``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, int(free * FREE_MEMORY_SHARE) // bytes_per_element)
    return on_the_cpu


def axis_or_grid(values: np.ndarray, rows: slice, device: torch.device) -> torch.Tensor:
    """Rows ``rows`` of a (rows, cols) array as a float64 tensor; a broadcast view of one
    axis is sent as that axis alone and expanded on the device."""
    block = values[rows]
    if block.strides[0] == 0:  # one row repeated (the columns' longitudes)
        return as_tensor(block[:1], device).expand(block.shape)
    if block.strides[1] == 0:  # one value per row (the rows' latitudes)
        return as_tensor(block[:, :1], device).expand(block.shape)
    return as_tensor(block, device)


def as_tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float64 copy of ``values`` on ``device`` (a copy: the arrays sarheight passes are
    often read-only views, which torch does not share)."""
    return torch.tensor(values, dtype=torch.float64, device=device)


def positions(lon: torch.Tensor, lat: torch.Tensor, height: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ECEF positions (m, (..., 3)) and ellipsoid normals of geodetic points (rad, m)."""
    cos_lat, sin_lat = torch.cos(lat), torch.sin(lat)
    prime_vertical = WGS84_A / torch.sqrt(1.0 - WGS84_E2 * sin_lat * sin_lat)
    normal = torch.stack((cos_lat * torch.cos(lon), cos_lat * torch.sin(lon), sin_lat), dim=-1)
    target = torch.stack(((prime_vertical + height) * normal[..., 0], (prime_vertical + height) * normal[..., 1],
                          (prime_vertical * (1.0 - WGS84_E2) + height) * sin_lat), dim=-1)
    return target, normal


def grid_positions(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, rows: slice,
                   device: torch.device) -> torch.Tensor:
    """ECEF positions (m) of the grid's cells of ``rows``."""
    return positions(axis_or_grid(lon_rad, rows, device), axis_or_grid(lat_rad, rows, device),
                     as_tensor(height[rows], device))[0]
