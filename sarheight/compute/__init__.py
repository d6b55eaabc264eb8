"""The kernel door: the passes of the physics on the backend a caller asks for.

A caller names a device (``device=`` on the user's functions, ``--device`` on the
commands); :func:`compute_for` turns it into a :class:`Compute`, a backend of
:data:`BACKENDS` and the device it runs on, checked before any work. Each pass here takes
typed bundles (:mod:`sarheight.compute.bundles`) and dispatches on it:

- ``numba``: the compiled CPU kernels (``sarheight.kernels``) on threads, the default;
- ``torch``: the same passes in torch, float64 wherever geolocation needs it: on a CUDA
  GPU (``device="cuda"``), or on the CPU, where the tests hold it to the numba kernels;
- ``numpy``: the pure-numpy twins (``twins/`` of a source checkout), the reference.

Every pass of the physics goes through the door (``tests/house/test_architecture.py``
holds that no physics module calls a kernel itself): geodetic positions to ECEF
(:func:`ecef`, and the ellipsoid's constants, :data:`WGS84_A`, :data:`WGS84_E2`), the
orbit's state (:func:`orbit_states`), the range axis both ways
(:func:`samples_of_slant_ranges`, :func:`slant_ranges_of_samples`), the speckle filters
(:func:`lee`, :func:`refined_lee`), the rows of a separable interpolation
(:func:`interpolate_rows`), a survey of an image's values (:func:`intensity_flags`), a
weighted mean per pixel (:func:`weighted_mean`), backward geocoding (:func:`geocode`), the
zero-Doppler geometry of the cells the simulation reads (:func:`cell_geometry`, their own
surface with it; :func:`cell_ecef`), the cells' own layover (:func:`layover_facing_share`,
:func:`active_layover`), the layover and shadow sweep (:func:`visibility_masks`), the extent
of a block's facets in the image (:func:`facet_extent`), the facets' scatter and gather
(:func:`facet_pass`, a tile at a time, with :func:`add_tile_rows` and
:func:`gather_buffer`; a backend's own tiles where it wants them,
:func:`facet_tile_cells`), the window's per-pixel fields (:func:`polynomial_field`,
:func:`radar_products`, :func:`valid_pixels`) and the reallocation's per-pixel and per-cell
passes (:func:`clear_residue`, :func:`reallocation_ratios`, :func:`missing_pixels`,
:func:`sample_cells`, :func:`finish_cells`). The torch backend has every pass a
simulation or a reconstruction runs; it lacks the refined Lee filter and the range axis
from sample to slant range, which a run on a GPU (:func:`compute_for_run`) takes on the
numba kernels, and a pass asked of torch alone refuses in one line. A whole run on torch
also takes a sweep too large for torch's whole profiles on the numba kernels
(``torch_sweep.sweep_fits``; :attr:`Compute.taken_on_numba`, and so
:meth:`Compute.where`, says so).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..kernels import WGS84_A, WGS84_E2
from ..kernels.facet_table import (
    CONTRIBUTION_CELL_LAW,
    CONTRIBUTION_GAMMA,
    CONTRIBUTION_MODEL,
    CONTRIBUTION_USER,
)
from ..kernels.radar_buffers import PAD as RADAR_BUFFER_PAD
from ..kernels.radar_buffers import radar_buffer_shape, scatter_buffer_shape
from ..kernels.reallocation import VALID_AREA_FRACTION
from .bundles import (
    CellGeometry,
    FacetLaw,
    FacetTile,
    GatheredCells,
    Geocoded,
    GeocodingGeometry,
    OrbitPolynomial,
    PixelFields,
    ProfileCells,
    WindowImages,
)

__all__ = ["BACKENDS", "CONTRIBUTION_CELL_LAW", "CONTRIBUTION_GAMMA", "CONTRIBUTION_MODEL", "CONTRIBUTION_USER",
           "RADAR_BUFFER_PAD", "VALID_AREA_FRACTION", "WGS84_A", "WGS84_E2", "CellGeometry", "Compute", "FacetLaw",
           "FacetTile", "GatheredCells", "Geocoded", "GeocodingGeometry", "OrbitPolynomial", "PixelFields",
           "ProfileCells", "WindowImages", "active_layover", "add_tile_rows", "cell_ecef", "cell_geometry",
           "clear_residue", "compute_for", "compute_for_run", "ecef", "facet_extent", "facet_pass",
           "facet_tile_cells", "finish_cells", "gather_buffer", "geocode", "intensity_flags", "interpolate_rows",
           "layover_facing_share", "lee", "missing_pixels", "orbit_states", "polynomial_field", "radar_buffer_shape",
           "radar_products", "reallocation_ratios", "refined_lee", "sample_cells", "samples_of_slant_ranges",
           "scatter_buffer_shape", "slant_ranges_of_samples", "valid_pixels", "visibility_masks", "weighted_mean"]

#: The backends: what each runs on, and the module of its passes (loaded on first use,
#: so that neither torch nor the twins are imported by a run that does not ask for them).
BACKENDS: dict[str, dict[str, str]] = {
    "numba": {"runs_on": "the CPU's cores (threads)", "module": "sarheight.compute.numba_backend"},
    "torch": {"runs_on": "a CUDA GPU, or the CPU", "module": "sarheight.compute.torch_backend"},
    "numpy": {"runs_on": "the CPU, one thread (the reference)", "module": "sarheight.compute.numpy_backend"},
}


@dataclasses.dataclass(frozen=True)
class Compute:
    """Where a pass runs: a backend of :data:`BACKENDS` and a device (``"cpu"``, or
    ``"cuda"``/``"cuda:N"`` for torch); ``fallback``: a pass the backend does not have
    runs on the numba kernels on the CPU (a user's whole run on a GPU) instead of being
    refused (a pass asked of one backend). Made by :func:`compute_for`, which checks it."""

    backend: str = "numba"
    device: str = "cpu"
    fallback: bool = False
    #: The passes this run took on the numba kernels although its backend has them (a
    #: sweep too large for torch's whole profiles): :meth:`where` says so.
    taken_on_numba: set[str] = dataclasses.field(default_factory=set, compare=False, repr=False)

    def describe(self) -> str:
        """The backend and device in words."""
        if self.backend == "torch" and self.device.startswith("cuda"):
            import torch

            index = torch.device(self.device).index
            return f"torch on {torch.cuda.get_device_name(0 if index is None else index)} ({self.device})"
        return f"{self.backend} on {self.device}"

    def where(self, passes: Sequence[str]) -> str:
        """Where each of ``passes`` (names of the door's passes) runs, in words: on this
        backend, or, for those it lacks with ``fallback`` (and those a run took there,
        :attr:`taken_on_numba`), on the numba kernels."""
        own = [name for name in passes if _has(self.backend, name) and name not in self.taken_on_numba]
        other = [name for name in passes if name not in own]
        parts = [f"{self.describe()}: {', '.join(own)}"] if own else []
        if other:
            parts.append(f"numba on cpu: {', '.join(other)}")
        return "; ".join(parts)


def compute_for(device: str | Compute | None = None, backend: str | None = None, *, fallback: bool | None = None
                ) -> Compute:
    """The :class:`Compute` for a user's ``device`` (None or ``"cpu"``: the numba kernels;
    ``"cuda"``, ``"cuda:N"``: torch on that GPU, the passes torch does not have yet on the
    numba kernels), or an explicit ``backend`` (``"torch"`` on ``device="cpu"`` runs the
    GPU's code on the CPU; its missing passes are refused unless ``fallback``). Refused in
    one line, before any work, where the machine lacks what it asks for. A
    :class:`Compute` is checked again and returned."""
    if isinstance(device, Compute):
        return compute_for(device.device, device.backend, fallback=device.fallback)
    if device is not None and not isinstance(device, str):
        raise InvalidInputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    name = (device or "cpu").strip().lower()
    if backend is not None and backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise InvalidInputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    chosen = backend or ("numba" if name == "cpu" else "torch")
    if name != "cpu" and chosen != "torch":
        raise InvalidInputError(f"device {device!r} is a GPU: only the torch backend runs there, not {chosen!r}")
    if chosen == "torch":
        if importlib.util.find_spec("torch") is None:
            raise InvalidInputError(f"device {device or 'cpu'!r} with torch needs torch, which is not installed: "
                                    "pip install 'sarheight[ml]', or leave device unset for the CPU kernels")
        if name != "cpu":
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(name[5:]) if ":" in name else 0
            if index >= count:
                raise InvalidInputError(
                    f"device {device!r} asks for a CUDA GPU and torch sees "
                    f"{'none' if count == 0 else f'{count} (cuda:0 to cuda:{count - 1})'} on this machine: "
                    "leave device unset (or 'cpu') for the CPU kernels")
    if chosen == "numpy" and importlib.util.find_spec("twins") is None:
        raise InvalidInputError("the numpy backend runs the twins of a source checkout (twins/), which this "
                                "installation lacks: use the numba or torch backend")
    if fallback is None:
        fallback = backend is None and chosen == "torch"
    return Compute(chosen, name, bool(fallback))


def compute_for_run(device: str | Compute | None = None) -> Compute:
    """The :class:`Compute` of a whole run (``reconstruct``, ``simulate``) on ``device``
    (:func:`compute_for`): the passes its backend does not have yet run on the numba
    kernels, so that a run on torch (a GPU, or the CPU) goes through, and its result
    says which ran where (:meth:`Compute.where`)."""
    compute = compute_for(device)
    return compute if compute.backend == "numba" else dataclasses.replace(compute, fallback=True)


def _backend(compute: Compute, name: str):
    """The pass ``name`` of ``compute``'s backend: where it has none, the numba kernels'
    on the CPU with ``compute.fallback``, else refused in one line."""
    module = importlib.import_module(BACKENDS[compute.backend]["module"])
    if not hasattr(module, name) and compute.fallback:
        return functools.partial(_on_the_cpu, getattr(importlib.import_module(BACKENDS["numba"]["module"]), name))
    if not hasattr(module, name):
        others = [other for other in BACKENDS if other != compute.backend and _has(other, name)]
        raise InvalidInputError(f"the {compute.backend} backend has no {name} pass: use {' or '.join(others)}")
    return getattr(module, name)


def _on_the_cpu(numba_pass: Callable[..., Any], *args: Any, device: str, **options: Any) -> Any:
    """A numba pass run on the CPU whatever device the caller names."""
    del device  # the numba kernels run on the CPU
    return numba_pass(*args, device="cpu", **options)


def _has(backend: str, name: str) -> bool:
    """Whether ``backend`` has the pass ``name`` (False where its module cannot load here)."""
    try:
        return hasattr(importlib.import_module(BACKENDS[backend]["module"]), name)
    except ImportError:
        return False


def _check_grid(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, name: str) -> None:
    if not (np.shape(lon_rad) == np.shape(lat_rad) == np.shape(height) and np.ndim(height) == 2):
        raise InvalidInputError(f"{name} takes lon, lat and height of one 2-D shape, got {np.shape(lon_rad)}, "
                                f"{np.shape(lat_rad)} and {np.shape(height)}")


def ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, compute: Compute | None = None
         ) -> np.ndarray:
    """Earth-centred Earth-fixed (WGS84) positions (m), float64, of the shape of ``height``
    with a last axis of 3, of points given by longitude, latitude (rad; broadcast views of
    a grid's axes are read as they are) and ellipsoidal height (m; NaN propagates)."""
    compute = compute or Compute()
    lon_rad, lat_rad, height = (np.asarray(values) for values in (lon_rad, lat_rad, height))
    if not np.shape(lon_rad) == np.shape(lat_rad) == np.shape(height):
        raise InvalidInputError(f"ecef takes lon, lat and height of one shape, got {np.shape(lon_rad)}, "
                                f"{np.shape(lat_rad)} and {np.shape(height)}")
    return _backend(compute, "ecef")(lon_rad, lat_rad, height, device=compute.device)


def orbit_states(orbit: OrbitPolynomial, seconds: np.ndarray, *, compute: Compute | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position (m), velocity (m/s) and acceleration (m/s^2) of ``orbit`` at ``seconds``
    (float64, any shape), each of that shape with a last axis of 3, float64, on the host."""
    compute = compute or Compute()
    seconds = np.asarray(seconds, dtype=np.float64)
    return _backend(compute, "orbit_states")(orbit, seconds, device=compute.device)


def _check_pairs(first: np.ndarray, second: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    first, second = (np.asarray(values, dtype=np.float64) for values in (first, second))
    if first.shape != second.shape:
        raise InvalidInputError(f"{name} takes two arrays of one shape, got {first.shape} and {second.shape}")
    return first, second


def samples_of_slant_ranges(line_time: np.ndarray, slant_range: np.ndarray, geometry: GeocodingGeometry, *,
                            compute: Compute | None = None) -> np.ndarray:
    """The fractional sample (float64) of each slant range (m) on the line of time
    ``line_time`` (s; the range polynomial nearest in time), through the image's range
    model; NaN where either is NaN."""
    compute = compute or Compute()
    line_time, slant_range = _check_pairs(line_time, slant_range, "samples_of_slant_ranges")
    return _backend(compute, "samples_of_slant_ranges")(line_time, slant_range, geometry, device=compute.device)


def slant_ranges_of_samples(line_time: np.ndarray, sample: np.ndarray, geometry: GeocodingGeometry, *,
                            compute: Compute | None = None) -> np.ndarray:
    """The slant range (m, float64) of each fractional sample on the line of time
    ``line_time`` (s): the inverse of :func:`samples_of_slant_ranges`; NaN where either is
    NaN."""
    compute = compute or Compute()
    line_time, sample = _check_pairs(line_time, sample, "slant_ranges_of_samples")
    return _backend(compute, "slant_ranges_of_samples")(line_time, sample, geometry, device=compute.device)


def interpolate_rows(along: np.ndarray, row_node: np.ndarray, row_weight: np.ndarray, scale: float, *,
                     out: np.ndarray | None = None, compute: Compute | None = None) -> np.ndarray:
    """The second half of a separable bilinear interpolation: row ``i`` of the result is
    ``scale * (along[k] * (1 - w) + along[k + 1] * w)`` with ``k = row_node[i]`` and
    ``w = row_weight[i]``, ``along`` (nodes, cols) the first half (each node row
    interpolated to every column); float64 (rows, cols), written into ``out`` if given."""
    compute = compute or Compute()
    along = np.asarray(along, dtype=np.float64)
    row_node, row_weight = np.asarray(row_node, dtype=np.int64), np.asarray(row_weight, dtype=np.float64)
    if along.ndim != 2 or row_node.shape != row_weight.shape or row_node.ndim != 1:
        raise InvalidInputError(f"interpolate_rows takes a 2-D node table and one node and weight per row, got "
                                f"{along.shape}, {row_node.shape} and {row_weight.shape}")
    if out is None:
        out = np.empty((row_node.size, along.shape[1]))
    _backend(compute, "interpolate_rows")(along, row_node, row_weight, float(scale), out, device=compute.device)
    return out


def intensity_flags(image: np.ndarray, *, compute: Compute | None = None) -> tuple[bool, bool, bool, bool]:
    """Whether a 2-D float image holds an infinite value, a negative one (NaN is neither),
    a finite one and a NaN: one pass over it (a whole product's image)."""
    compute = compute or Compute()
    image = _check_image(image, "intensity_flags")
    return _backend(compute, "intensity_flags")(image, device=compute.device)


def weighted_mean(weighted_sum: np.ndarray, weight_sum: np.ndarray, *, compute: Compute | None = None
                  ) -> np.ndarray:
    """``weighted_sum / weight_sum`` (2-D, float64) where the weight is positive, NaN
    elsewhere: the area-weighted mean of a map-grid observation in each radar pixel."""
    compute = compute or Compute()
    weighted_sum, weight_sum = _check_pairs(weighted_sum, weight_sum, "weighted_mean")
    if weighted_sum.ndim != 2:
        raise InvalidInputError(f"weighted_mean takes 2-D sums, got {weighted_sum.ndim} dims")
    return _backend(compute, "weighted_mean")(weighted_sum, weight_sum, device=compute.device)


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.float32, np.float64):
        raise InvalidInputError(f"{name} takes a 2-D float32 or float64 image, got {image.ndim} dims of "
                                f"{image.dtype}")
    return image


def lee(image: np.ndarray, window: int, looks: float, *, compute: Compute | None = None) -> np.ndarray:
    """Lee's (1980) estimate of every pixel of a linear intensity image (2-D, NaN where
    missing) from the valid pixels of the ``window`` x ``window`` square around it (odd;
    shrunk at the image's edges), under speckle of ``looks`` looks: float64, NaN where the
    image is NaN."""
    compute = compute or Compute()
    image = _check_image(image, "lee")
    return _backend(compute, "lee")(image, int(window), float(looks), device=compute.device)


def refined_lee(image: np.ndarray, looks: float, *, compute: Compute | None = None) -> np.ndarray:
    """Refined Lee (1981): the estimate of :func:`lee` over the edge-aligned half of each
    pixel's 7 x 7 window (``kernels/speckle.py`` says which half), float64."""
    compute = compute or Compute()
    image = _check_image(image, "refined_lee")
    return _backend(compute, "refined_lee")(image, float(looks), device=compute.device)


def geocode(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
            clip: bool = True, compute: Compute | None = None) -> Geocoded:
    """Backward (zero-Doppler) geocoding of every cell of a grid.

    Parameters
    ----------
    lon_rad, lat_rad : longitude and latitude (rad) of the cells, the shape of ``height``;
        a grid regular in longitude and latitude passes broadcast views of its axes
        (``np.broadcast_to``), which every backend reads without making them whole.
    height : the cells' heights above the WGS84 ellipsoid (m); NaN cells stay unsolved.
    geometry : the acquisition (:class:`GeocodingGeometry`).
    clip : NaN line and sample outside the image (else only where unsolved or on the side
        the radar does not look at).
    compute : where it runs (:func:`compute_for`); the numba kernels by default.

    Returns
    -------
    :class:`Geocoded`, on the host whatever the device.
    """
    compute = compute or Compute()
    _check_grid(lon_rad, lat_rad, height, "geocode")
    return _backend(compute, "geocode")(lon_rad, lat_rad, height, geometry, clip=clip, device=compute.device)


def cell_ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, compute: Compute | None = None
              ) -> np.ndarray:
    """ECEF positions (m, (rows, cols, 3) float64; NaN for void heights) of a block of grid
    cells with the arithmetic of :func:`cell_geometry`, so that they are its positions to
    the last bit: the facet passes make them again per block of rows instead of keeping
    24 bytes per cell. ``lon_rad``, ``lat_rad`` as :func:`geocode` takes them."""
    compute = compute or Compute()
    _check_grid(lon_rad, lat_rad, height, "cell_ecef")
    return _backend(compute, "cell_ecef")(lon_rad, lat_rad, height, device=compute.device)


def cell_geometry(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
                  own_surface: bool = False, compute: Compute | None = None, blocks: int | None = None
                  ) -> CellGeometry:
    """The zero-Doppler geometry of every cell centre of a grid (:class:`CellGeometry`):
    where the radar sees it (unclipped), the look vector, the pixel's area, the incidence,
    look and cross-track angles.

    Parameters
    ----------
    lon_rad, lat_rad, height : as :func:`geocode` takes them.
    geometry : the acquisition.
    own_surface : also whether each cell's own surface faces away from the sensor
        (``faces_away``; the grid's neighbouring rows and columns make the surface).
    compute : where it runs (numba by default; torch; the numpy twins have none).
    blocks : row blocks of the numba backend (its threads' work; default one per thread);
        torch sizes its blocks from the device's memory.
    """
    compute = compute or Compute()
    _check_grid(lon_rad, lat_rad, height, "cell_geometry")
    options = {"blocks": blocks} if compute.backend == "numba" else {}
    return _backend(compute, "cell_geometry")(lon_rad, lat_rad, height, geometry, own_surface=bool(own_surface),
                                              device=compute.device, **options)


def _check_radar_buffer(sums: np.ndarray, observed: np.ndarray, name: str) -> None:
    """Refuse a radar buffer that is not the one of ``observed``'s window (the kernels read
    it without bounds checks)."""
    if np.ndim(observed) != 2 or np.shape(sums) != radar_buffer_shape(*np.shape(observed)):
        raise InvalidInputError(f"{name} takes a 2-D observed image and the radar buffer of its window, got "
                                f"{np.shape(observed)} and {np.shape(sums)}")


def _check_window_images(first: np.ndarray, second: np.ndarray, name: str) -> None:
    if first.ndim != 2 or first.shape != second.shape[-2:]:
        raise InvalidInputError(f"{name} takes images of one window, got {first.shape} and {second.shape}")


def clear_residue(images: np.ndarray, fields: PixelFields, *, compute: Compute | None = None) -> None:
    """Clear in place the rounding residue of simulated sums ``images`` (channels, lines,
    samples; the sums of the contribution and of the gamma area): a pixel's sum below
    ``fields.thresholds`` times its area is set to 0 (``simulate.engine.clear_residue``
    says why)."""
    compute = compute or Compute()
    if np.ndim(images) != 3:
        raise InvalidInputError(f"clear_residue takes (channels, lines, samples) sums, got {np.shape(images)}")
    _backend(compute, "clear_residue")(images, fields, device=compute.device)


def reallocation_ratios(sums: np.ndarray, observed: np.ndarray, fields: PixelFields, *, prefix: bool,
                        compute: Compute | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn a radar buffer of simulated sums (``sums``: padded, the two channels side by
    side, ``simulate.radar_sums``) into the reallocation's ratios in place: I a / sum(w c)
    and I a / sum(w A_gamma) (0 where nothing was simulated), as their padded row prefix
    sums with ``prefix`` (the exact projection's gather reads them).

    Returns
    -------
    The simulated image sum(w c) / a (float32, NaN where the area is not positive), the
    pixels valid for terrain flattening (bool: gamma area at least
    :data:`VALID_AREA_FRACTION` of flat terrain's), and how many pixels the facets reach
    that ``observed`` (lines, samples, beta0) lacks.
    """
    compute = compute or Compute()
    _check_radar_buffer(sums, observed, "reallocation_ratios")
    return _backend(compute, "reallocation_ratios")(sums, observed, fields, prefix=prefix, device=compute.device)


def missing_pixels(observed: np.ndarray, sums: np.ndarray, *, compute: Compute | None = None) -> np.ndarray:
    """The pixels (bool, the observed image's shape) that the facets reach (either sum of
    the radar buffer ``sums`` positive) but the observation lacks (NaN)."""
    compute = compute or Compute()
    _check_radar_buffer(sums, observed, "missing_pixels")
    return _backend(compute, "missing_pixels")(observed, sums, device=compute.device)


def sample_cells(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, incidence: np.ndarray,
                 images: WindowImages, *, out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 compute: Compute | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window's images read at each cell (``line``, ``sample``: fractional, absolute;
    ``incidence``: the ellipsoid's, rad): the observed beta0 interpolated bilinearly times
    the sine of the incidence (conventional geocoding's sigma0, float32), the simulated
    image (float32) and the nearest pixel's mixing (uint16; 0 for invalid cells), NaN off
    the window; written into ``out`` where given."""
    compute = compute or Compute()
    if not line.shape == sample.shape == valid.shape == incidence.shape:
        raise InvalidInputError(f"sample_cells takes cells of one shape, got {line.shape}, {sample.shape}, "
                                f"{valid.shape} and {incidence.shape}")
    _check_window_images(images.observed, images.simulated, "sample_cells")
    _check_window_images(images.observed, images.mixing, "sample_cells")
    if out is None:
        out = (np.empty(line.shape, np.float32), np.empty(line.shape, np.float32), np.empty(line.shape, np.uint16))
    _backend(compute, "sample_cells")(line, sample, valid, incidence, images, out, device=compute.device)
    return out


def finish_cells(gathered: GatheredCells, line: np.ndarray, sample: np.ndarray, valid: np.ndarray,
                 shadow: np.ndarray, valid_pixels: np.ndarray, origin: tuple[int, int], *, use_sigma: bool,
                 codes: tuple[int, int, int, int], out: tuple[np.ndarray, np.ndarray, np.ndarray],
                 compute: Compute | None = None) -> None:
    """A tile's cells from the energies the gather gave them (written into ``out``:
    backscatter, flattened, local incidence, float32): the energy over the sigma area
    (``use_sigma``) or the gamma area; the gamma energy over the gamma area (NaN where the
    cell's nearest pixel, of ``valid_pixels`` on the window whose first line and sample
    are ``origin``, is not valid for flattening); both NaN where ``shadow`` holds a code of
    ``codes`` (none, active, passive, outside) other than none; the local incidence
    (degrees) from the cosine of the mean normal, NaN for invalid cells."""
    compute = compute or Compute()
    shapes = {array.shape for array in (gathered.cos_local, gathered.sigma_area, gathered.gamma_area, line, sample,
                                        valid, shadow)}
    if len(shapes) != 1 or gathered.energy.shape != (2, *line.shape):
        raise InvalidInputError("finish_cells takes a tile's cells of one shape and their energies (2, rows, cols)")
    _backend(compute, "finish_cells")(gathered, line, sample, valid, shadow, valid_pixels, origin, use_sigma, codes,
                                      out, device=compute.device)


def facet_extent(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, *,
                 borders: tuple[bool, bool, bool, bool] = (True, True, True, True),
                 compute: Compute | None = None) -> tuple[float, float, float, float]:
    """The extent in the image of the facets of a block of cells (``line``, ``sample``:
    their centres' fractional indices; ``valid``): (smallest line, largest line, smallest
    sample, largest sample) over the facets' vertices, NaN where no cell is valid. At
    the DEM's border the vertices reach half a cell beyond the outermost centres;
    ``borders``: whether the block's first row, last row, first column and last column
    are the DEM's border (elsewhere its edge is a halo of neighbours)."""
    compute = compute or Compute()
    _check_cells(line, sample, valid, "facet_extent")
    return _backend(compute, "facet_extent")(line, sample, valid, tuple(bool(border) for border in borders),
                                             device=compute.device)


def _check_cells(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, name: str) -> None:
    if not line.shape == sample.shape == valid.shape or line.ndim != 2:
        raise InvalidInputError(f"{name} takes 2-D cells of one shape, got {line.shape}, {sample.shape} and "
                                f"{valid.shape}")


def layover_facing_share(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, *,
                         compute: Compute | None = None) -> np.ndarray:
    """The share (0..1, float32) of each cell's own footprint (``line``, ``sample``: the
    cells' fractional image positions) that is range-reversing in its zero-Doppler plane,
    NaN where the cell is void; ``orientation``: the sign (+1, -1) of flat terrain's
    Jacobian determinant d(line, sample) / d(row, column)."""
    compute = compute or Compute()
    _check_cells(line, sample, valid, "layover_facing_share")
    return _backend(compute, "layover_facing_share")(line, sample, valid, int(orientation), device=compute.device)


def active_layover(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, *,
                   compute: Compute | None = None) -> np.ndarray:
    """Whether each cell is in active layover (bool): more than half of its own footprint
    range-reversing (:func:`layover_facing_share` above 1/2)."""
    compute = compute or Compute()
    _check_cells(line, sample, valid, "active_layover")
    return _backend(compute, "active_layover")(line, sample, valid, int(orientation), device=compute.device)


def visibility_masks(cells: ProfileCells, window: tuple[int, int, int, int], *, range_tolerance: float,
                     codes: tuple[int, int, int, int], judged: np.ndarray | None = None,
                     every_line: bool = True, compute: Compute | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layover and shadow sweep: every valid cell's layover and shadow code (uint8,
    ``codes``: none, active, passive, outside) judged in its own zero-Doppler plane
    against the profiles of the lines of ``window`` (first line, lines, first sample,
    samples), and the mixing of the window's pixels (uint16, lines x samples).

    Parameters
    ----------
    cells : the cells, rows along track (:class:`ProfileCells`).
    range_tolerance : how far (m) terrain must lay over a cell to count.
    judged : judge only these cells (bool; the others lend their points to the profiles).
    every_line : cut every line for the mixing (else only the lines that bound the
        sweep's groups; the masks are the same).
    """
    compute = compute or Compute()
    if len({array.shape for array in cells.arrays()}) != 1 or cells.line.ndim != 2:
        raise InvalidInputError("visibility_masks takes 2-D cells of one shape")
    if not (math.isfinite(range_tolerance) and range_tolerance >= 0):
        raise InvalidInputError(f"range_tolerance must be a non-negative number of metres, got {range_tolerance!r}")
    window = tuple(int(value) for value in window)
    chosen = compute
    if compute.backend == "torch" and compute.fallback and not _backend(compute, "sweep_fits")(
            cells.line, cells.valid, window, device=compute.device):
        # Torch builds every cell's profile whole (rows x columns^2 work): a whole run on a
        # GPU takes a window too large for that on the numba kernels' bounds, and says so.
        chosen = Compute()
        compute.taken_on_numba.add("visibility_masks")
    return _backend(chosen, "visibility_masks")(cells, window, float(range_tolerance), judged, bool(every_line), codes,
                                                device=chosen.device)


def facet_pass(tile: FacetTile, law: FacetLaw, buffer: np.ndarray, origin: tuple[int, int], *, oversample: int,
               exact: bool, gather: bool, energy: np.ndarray, per_cell: list[np.ndarray],
               compute: Compute | None = None) -> None:
    """The facets of a tile's own cells: each cell split into ``oversample`` x
    ``oversample`` sub-quads projected into the image (their exact overlap with the pixels
    with ``exact``, else bilinear splats of their centres), scattering what they carry
    (``law``) into ``buffer`` (a tile's, :func:`scatter_buffer_shape`, its pixel (0, 0) at
    the absolute line and sample ``origin``), or, with ``gather``, gathering the ratio
    images of ``buffer`` (:func:`gather_buffer`) into ``energy`` (2, rows, cols). Per cell
    (``per_cell``: sigma area, gamma area, contribution, cosine of the local incidence,
    each (rows, cols), or (0, 0) arrays where a scatter keeps none), written for the own
    cells. Runs on the caller's thread: the caller runs the tiles on its threads."""
    compute = compute or Compute()
    if tile.line.ndim != 2 or tile.ecef.shape != (*tile.line.shape, 3):
        raise InvalidInputError("facet_pass takes a tile's 2-D cells and their (rows, cols, 3) positions")
    _backend(compute, "facet_pass_exact" if exact else "facet_pass_bilinear")(
        tile, law, buffer, origin, oversample=int(oversample), gather=bool(gather), energy=energy, per_cell=per_cell,
        device=compute.device)


def facet_tile_cells(compute: Compute | None = None) -> int | None:
    """The cells of a tile of :func:`facet_pass` on ``compute``'s backend, where it wants
    its own (torch: large tiles, one at a time, so that a GPU's launches and copies are few
    and its memory full; sized from a GPU's free memory), or None: the caller's tiles,
    sized for the CPU's caches and run on its threads (numba)."""
    compute = compute or Compute()
    if not _has(compute.backend, "facet_tile_cells"):
        return None
    return int(_backend(compute, "facet_tile_cells")(device=compute.device))


def add_tile_rows(tile_buffer: np.ndarray, sums: np.ndarray, origin: tuple[int, int], rows: tuple[int, int], *,
                  exact: bool, compute: Compute | None = None) -> None:
    """Add the pixel rows ``rows`` of a tile's scatter buffer to the radar buffer ``sums``
    of the window, the tile's pixel (0, 0) at the window's pixel ``origin``: for exact
    projection each pixel gets its own term plus those of every column right of it (the
    difference sums of Green's theorem). Row by row, so that tiles may add different
    lines at once (the caller's lock per band of lines)."""
    compute = compute or Compute()
    _backend(compute, "add_tile_rows")(tile_buffer, sums, origin, rows, exact=bool(exact), device=compute.device)


def gather_buffer(images: np.ndarray, exact: bool, out: np.ndarray | None = None, *,
                  compute: Compute | None = None) -> np.ndarray:
    """The radar buffer a gather reads, from ratio images (2, lines, samples): their padded
    row prefix sums for exact projection, the images for bilinear; in place when ``out`` is
    the buffer ``images`` views."""
    compute = compute or Compute()
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] != 2:
        raise InvalidInputError(f"gather_buffer takes (2, lines, samples) images, got {images.shape}")
    if out is None:
        out = np.empty(radar_buffer_shape(images.shape[1], images.shape[2]))
    if out.shape != radar_buffer_shape(images.shape[1], images.shape[2]):
        raise InvalidInputError(f"gather_buffer writes the radar buffer of its images, got {out.shape} for "
                                f"{images.shape}")
    _backend(compute, "gather_buffer")(images, bool(exact), out, device=compute.device)
    return out


def polynomial_field(row_terms: np.ndarray, column_terms: np.ndarray, *, compute: Compute | None = None
                     ) -> np.ndarray:
    """A separable field (lines, samples; float64): the sum over the terms of the product
    of each term's row factor (``row_terms``, (terms, lines)) and column factor
    (``column_terms``, (terms, samples)), accumulated term after term."""
    compute = compute or Compute()
    if row_terms.ndim != 2 or column_terms.ndim != 2 or row_terms.shape[0] != column_terms.shape[0]:
        raise InvalidInputError(f"polynomial_field takes (terms, lines) and (terms, samples) factors, got "
                                f"{row_terms.shape} and {column_terms.shape}")
    out = np.empty((row_terms.shape[1], column_terms.shape[1]))
    _backend(compute, "polynomial_field")(row_terms, column_terms, out, device=compute.device)
    return out


def radar_products(images: np.ndarray, area_terms: tuple[np.ndarray, np.ndarray],
                   flat_terms: tuple[np.ndarray, np.ndarray], fraction: float, *,
                   compute: Compute | None = None) -> dict[str, np.ndarray]:
    """The radar outputs of a simulation's sums ``images`` (2, lines, samples) in one pass,
    the pixel area and the flat terrain's gamma area evaluated per pixel from their
    separable terms (:func:`polynomial_field`'s): ``simulated_area``,
    ``simulated_gamma_area`` (the sums over the pixel area, NaN where it is not positive),
    ``pixel_area`` (m^2), float32, and ``valid`` (gamma area at least ``fraction`` of flat
    terrain's)."""
    compute = compute or Compute()
    if np.ndim(images) != 3:
        raise InvalidInputError(f"radar_products takes (2, lines, samples) sums, got {np.shape(images)}")
    shape = images.shape[1:]
    out = {name: np.empty(shape, dtype=np.float32) for name in ("simulated_area", "simulated_gamma_area", "pixel_area")}
    out["valid"] = np.empty(shape, dtype=bool)
    _backend(compute, "radar_products")(images, area_terms, flat_terms, float(fraction), out, device=compute.device)
    return out


def valid_pixels(gamma_image: np.ndarray, flat_gamma_area: np.ndarray, fraction: float, *,
                 compute: Compute | None = None) -> np.ndarray:
    """Whether each pixel's simulated gamma area reaches ``fraction`` of flat terrain's
    (bool)."""
    compute = compute or Compute()
    _check_window_images(gamma_image, flat_gamma_area, "valid_pixels")
    return _backend(compute, "valid_pixels")(gamma_image, flat_gamma_area, float(fraction), device=compute.device)
