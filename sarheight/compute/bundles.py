"""The typed bundles the passes of :mod:`sarheight.compute` take and give: plain arrays and
numbers, named, checked once where they are made, the same for every backend."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CellGeometry", "FacetLaw", "FacetTile", "GatheredCells", "Geocoded", "GeocodingGeometry",
           "OrbitPolynomial", "PixelFields", "ProfileCells", "WindowImages"]


@dataclasses.dataclass(frozen=True)
class OrbitPolynomial:
    """An orbit as the passes evaluate it: ``coeffs`` (degree + 1, 3), the ECEF polynomial
    (m) in the normalised time ``(t - t_center) / t_scale``, times in seconds."""

    coeffs: np.ndarray
    t_center: float
    t_scale: float


@dataclasses.dataclass(frozen=True)
class GeocodingGeometry:
    """An acquisition as backward geocoding reads it: the orbit, the image's axes and its
    range model, times in seconds since ``reference_ns``
    (:meth:`sarheight.geometry.RadarGeometry.geocoding_geometry` makes it).

    Attributes
    ----------
    orbit_coeffs : (degree + 1, 3) the orbit's ECEF polynomial (m) in the normalised time
        ``(t - orbit_t_center) / orbit_t_scale``.
    orbit_t_center, orbit_t_scale : its centre (s) and scale (s).
    valid_min, valid_max : the span (s) over which the orbit holds.
    first_line_time, line_interval : the image's azimuth axis (s).
    lines, samples : the image's size.
    range_times, range_sr0, range_coeffs, range_spacing : the range model: per entry, its
        azimuth time (s), reference slant range (m) and polynomial of the range-axis
        coordinate (m) in ``slant_range - sr0``; a sample is ``spacing`` metres of it.
    look_sign : +1 for a radar looking right, -1 left.
    bistatic_rate, bistatic_reference_range : a line's time is the zero-Doppler time less
        ``bistatic_rate * (slant_range - bistatic_reference_range)`` (s/m, m); 0 for none.
    reference_ns : the epoch of the times, ns since 1970.
    """

    orbit_coeffs: np.ndarray
    orbit_t_center: float
    orbit_t_scale: float
    valid_min: float
    valid_max: float
    first_line_time: float
    line_interval: float
    lines: int
    samples: int
    range_times: np.ndarray
    range_sr0: np.ndarray
    range_coeffs: np.ndarray
    range_spacing: float
    look_sign: float
    bistatic_rate: float
    bistatic_reference_range: float
    reference_ns: int

    def kernel_arguments(self) -> dict[str, np.ndarray | float | int]:
        """The fields under the names of the kernels' arguments, which their numpy twins
        take too (all but the epoch: the kernels take it as an argument of its own)."""
        return dict(
            coeffs=self.orbit_coeffs, t_center=self.orbit_t_center, t_scale=self.orbit_t_scale,
            t_valid_min=self.valid_min, t_valid_max=self.valid_max, first_line_time=self.first_line_time,
            line_interval=self.line_interval, n_lines=self.lines, n_samples=self.samples, rm_times=self.range_times,
            rm_sr0=self.range_sr0, rm_coeffs=self.range_coeffs, rm_spacing=self.range_spacing,
            look_sign=self.look_sign, bistatic_rate=self.bistatic_rate,
            bistatic_reference_range=self.bistatic_reference_range)


@dataclasses.dataclass(frozen=True)
class Geocoded:
    """Backward geocoding of a grid of cells, each array of the grid's shape.

    Attributes
    ----------
    azimuth_time_ns : int64, the zero-Doppler time in ns since 1970 (int64's least value,
        NaT, where unsolved).
    slant_range : float64 (m); NaN where unsolved.
    line, sample : float64 fractional indices into the image; NaN where unsolved, on the
        side the radar does not look at, or (clipped) outside the image.
    incidence_angle : float32, the ellipsoid's incidence angle (degrees); NaN where unsolved.
    """

    azimuth_time_ns: np.ndarray
    slant_range: np.ndarray
    line: np.ndarray
    sample: np.ndarray
    incidence_angle: np.ndarray


@dataclasses.dataclass(frozen=True)
class CellGeometry:
    """The zero-Doppler geometry of every cell centre of a grid, as the facets and the
    masks read it; each array of the grid's shape (``look`` with a last axis of 3).

    Attributes
    ----------
    azimuth_time_ns : int64, the zero-Doppler time in ns since 1970 (NaT where unsolved).
    slant_range : float64 (m).
    line, sample : float64, unclipped fractional indices into the image.
    look : float32, the unit vector from the cell to the sensor (0 where not valid).
    pixel_area : float32, the slant-plane area of a pixel at the cell (m^2).
    incidence : float32, the ellipsoid's incidence angle (rad).
    look_angle : float64, the cell's off-nadir angle seen from the sensor (rad).
    cross_track : float64, the geocentric angle between the cell and the sensor (rad).
    valid : bool, solved and on the side the radar looks at; the others are NaN.
    faces_away : bool, whether the cell's own surface (the cross product of its central
        differences along the grid's columns and rows, one-sided at the border, in ECEF)
        faces away from the sensor; None unless asked for (``own_surface``).
    """

    azimuth_time_ns: np.ndarray
    slant_range: np.ndarray
    line: np.ndarray
    sample: np.ndarray
    look: np.ndarray
    pixel_area: np.ndarray
    incidence: np.ndarray
    look_angle: np.ndarray
    cross_track: np.ndarray
    valid: np.ndarray
    faces_away: np.ndarray | None = None

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (``faces_away`` where it was made), the time as
        datetime64[ns] (the simulation's cells)."""
        out = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
               if getattr(self, field.name) is not None}
        out["azimuth_time"] = out.pop("azimuth_time_ns").view("datetime64[ns]")
        return out


@dataclasses.dataclass(frozen=True)
class PixelFields:
    """The smooth fields of a simulation's radar window as the per-pixel passes evaluate
    them (:meth:`sarheight.simulate.engine.SmoothFields.pixel_fields` makes it).

    Attributes
    ----------
    coefficients : (2, terms) the polynomials of the pixel area (m^2) and of the flat
        terrain's gamma area, in the window's normalised line and sample.
    powers : (terms, 2) int64, each term's powers of the line and the sample.
    fitted : False where no cell was there to fit them (the areas are 0 then).
    fit_window : (first line, lines, first sample, samples) the fit normalises over.
    line0, sample0 : the absolute line and sample of the window's pixel (0, 0).
    thresholds : (2,) per unit of pixel area, the sums (contribution, gamma area) below
        which a pixel's simulated sum is rounding residue.
    """

    coefficients: np.ndarray
    powers: np.ndarray
    fitted: bool
    fit_window: tuple[int, int, int, int]
    line0: int
    sample0: int
    thresholds: np.ndarray


@dataclasses.dataclass(frozen=True)
class WindowImages:
    """The radar window's images read at each cell: the observed beta0 and the simulated
    image (lines, samples; float), the mixing (uint16) and the window's first line and
    sample."""

    observed: np.ndarray
    simulated: np.ndarray
    mixing: np.ndarray
    line0: int
    sample0: int


@dataclasses.dataclass(frozen=True)
class GatheredCells:
    """What the gather gave a tile of cells: ``energy`` (2, rows, cols) the reallocated
    energy of the model's and the gamma contribution (m^2), the sigma and gamma areas
    (m^2) and the cosine of the local incidence angle, each (rows, cols)."""

    energy: np.ndarray
    sigma_area: np.ndarray
    gamma_area: np.ndarray
    cos_local: np.ndarray


@dataclasses.dataclass(frozen=True)
class ProfileCells:
    """The cells as the layover and shadow sweep reads them, DEM rows along track (the
    caller transposes a DEM whose columns run along track), each (rows, cols):
    ``line``, ``sample`` (fractional, absolute), ``slant_range`` (m), ``look_angle`` and
    ``cross_track`` (rad), float64; ``faces_away`` (the cell's surface faces away from
    the sensor), ``active_layover`` (its own surface lays over) and ``valid``, bool."""

    line: np.ndarray
    sample: np.ndarray
    slant_range: np.ndarray
    look_angle: np.ndarray
    cross_track: np.ndarray
    faces_away: np.ndarray
    active_layover: np.ndarray
    valid: np.ndarray

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in the order of the fields (the sweep kernels' order)."""
        return tuple(getattr(self, field.name) for field in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class FacetLaw:
    """What each facet carries, as the facet passes take it
    (:class:`sarheight.simulate.contribution.FacetContribution` makes it).

    Attributes
    ----------
    code : :data:`sarheight.compute.CONTRIBUTION_MODEL` (a sigma0 law of the local
        incidence times the sigma area), ``CONTRIBUTION_GAMMA`` (the gamma area),
        ``CONTRIBUTION_USER`` (per-cell weights) or ``CONTRIBUTION_CELL_LAW`` (a law per
        class of each cell, times a factor per cell).
    law : (3,) the empirical law's coefficients, used where ``table`` has under 2 entries.
    table : a law tabulated over 0..90 degrees of local incidence (linear sigma0).
    class_tables : (classes, n + 1) each class's law so tabulated (``CONTRIBUTION_CELL_LAW``).
    """

    code: int
    law: np.ndarray
    table: np.ndarray
    class_tables: np.ndarray


@dataclasses.dataclass(frozen=True)
class FacetTile:
    """A tile of DEM cells with its halo of one cell, as the facet passes read it, each
    (rows, cols) but ``ecef`` and ``look`` (rows, cols, 3): the cells' ECEF positions (m,
    NaN for voids), fractional line and sample, look vectors (float32), whether valid and
    whether shadowed (contributing nothing), and the per-cell weights and classes of the
    contribution (tile-shaped, or (1, 1) placeholders where the law needs none).
    ``own``: the tile's own cells (first row, last row + 1, first column, last column + 1),
    within the arrays; the halo's facets belong to the neighbouring tiles."""

    ecef: np.ndarray
    line: np.ndarray
    sample: np.ndarray
    look: np.ndarray
    valid: np.ndarray
    shadowed: np.ndarray
    user_weight: np.ndarray
    cell_class: np.ndarray
    own: tuple[int, int, int, int]
