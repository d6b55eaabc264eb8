"""Terrain scenes: what the terrain-height model sees, simulated from a DEM or built from a
real observation, and the scene files they travel in.

A scene is an ``xr.Dataset`` on a map grid (y, x) with a CRS:

- ``sar_reconstructed`` and ``sar_geocoded``: sigma0 (dB) with and without the layover
  reallocation of :func:`sarheight.reconstruction.reconstruct` (NaN in shadow and outside the
  image), so that the two can be compared (the ablation). "Without" is the geocoded
  image with the same radiometric terrain correction, Small's (2011) area-based
  flattening (``flattened`` times the cosine of the local incidence, as sigma0): a
  layover pixel's mixed value goes to all its cells alike. The two differ near layover
  only (by tenths of a dB elsewhere: the reallocation also weighs cells sharing a
  pixel by their modelled contribution); plain ellipsoid-normalised geocoding would
  differ on every slope and mix the terrain correction into the comparison;
- ``local_incidence_angle`` (deg), ``layover`` and ``shadow``
  (:class:`~sarheight.masks.MaskCode`), all from the *coarse* DEM;
- ``prior_height``, ``prior_mask``, ``prior_distance`` and ``prior_interpolated``: the
  sparse known heights, the distance to the nearest one (m) and the priors-only
  interpolation (:mod:`sarheight.priors`);
- ``coarse_height``: the coarse DEM resampled bilinearly to the scene grid (the DEM the
  reconstruction runs on), ``coarse_bicubic`` and ``coarse_lanczos``: resampled with
  sharper kernels (the refinement's reference and baselines), and ``coarse_corrected``:
  the coarse DEM plus the interpolated residuals of the priors from it;
- ``height``: the truth (simulated scenes; observed scenes with a reference DEM);
- optionally ``other_sar_reconstructed``, ``other_sar_geocoded`` and
  ``other_local_incidence_angle``: the opposite pass over the same terrain (ascending and
  descending see the slopes from both sides).

Attributes record the geometry (``heading_deg``, ``look_side``, and ``other_`` ones), the
coarse DEM's cell size ``coarse_cell_m``, the grid's ``grid_cell_m`` and their ratio
``coarse_factor``. :func:`scene_variable` also gives the variables of
:data:`DERIVED_VARIABLES`, computed from these on the fly: the refinement model's
scale-free inputs (the coarse DEM's slopes and curvature, the look direction, the ratio of
observed to simulated sigma0).

No input is computed from the true fine DEM except the observation itself (simulated
from it, as the real one is made by the real terrain) and the priors (known heights are
samples of the truth): the reconstruction, masks and local incidence come from the
coarse DEM a user would have. :func:`simulate_scene` is :func:`observed_scene` applied to
an observation simulated from the fine DEM, so that the two cannot drift apart.

This module names the variables, describes them, and derives the scale-free ones and
the terrain classes of a refinement from the stored ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import (
    InvalidInputError,
)
from ..ground import (
    FittedLaw,
    empirical_sigma0,
    fit_sigma0_law,
)
from ..masks import MaskCode
from ..raster import cell_side_m, gradient, grid_steps
from .classes import REFINEMENT_GROUPS, cell_classes

#: The variables every scene has (``height`` only where the truth is known).
INPUT_VARIABLES = (
    "sar_reconstructed", "sar_geocoded", "local_incidence_angle", "layover", "shadow",
    "prior_height", "prior_mask", "prior_distance", "prior_interpolated", "coarse_height", "coarse_bicubic",
    "coarse_lanczos", "coarse_corrected", "coarse_registered", "coarse_backprojected", "coarse_refined",
    "prior_correction_std",
)


#: The variables of the opposite pass, when a scene has it.
OTHER_PASS_VARIABLES = ("other_sar_reconstructed", "other_sar_geocoded", "other_local_incidence_angle")


VARIABLE_ATTRS = {
    "sar_reconstructed": {"units": "dB", "long_name": "sigma0 reconstructed in layover (reallocated)"},
    "sar_geocoded": {"units": "dB", "long_name": "sigma0 without reallocation (terrain-flattened, as sigma0)"},
    "local_incidence_angle": {"units": "degree", "long_name": "local incidence angle on the coarse DEM"},
    "prior_height": {"units": "m", "long_name": "known heights (WGS84 ellipsoid), NaN where none"},
    "prior_mask": {"long_name": "1 where a height is known"},
    "prior_distance": {"units": "m", "long_name": "distance to the nearest known height"},
    "prior_interpolated": {"units": "m", "long_name": "priors-only interpolation"},
    "coarse_height": {"units": "m", "long_name": "coarse DEM resampled to the scene grid (bilinear)"},
    "coarse_bicubic": {"units": "m", "long_name": "coarse DEM resampled to the scene grid (bicubic)"},
    "coarse_lanczos": {"units": "m", "long_name": "coarse DEM resampled to the scene grid (Lanczos)"},
    "coarse_corrected": {"units": "m", "long_name": "coarse DEM plus the interpolated residuals of the priors"},
    "coarse_registered": {"units": "m", "long_name": "coarse DEM registered to the priors, resampled (Lanczos)"},
    "coarse_backprojected": {"units": "m", "long_name": "coarse DEM registered to the priors, back-projected"},
    "coarse_refined": {"units": "m", "long_name": "coarse DEM back-projected, corrected by the priors (kriged)"},
    "prior_correction_std": {"units": "m", "long_name": "standard deviation of the kriged correction"},
    "inverted": {"units": "m", "long_name": "refined by inverting the simulator against every observation"},
    "clinometry": {"units": "m", "long_name": "coarse DEM registered, corrected by the slopes the image asks for"},
    "inversion_readable": {"long_name": "observations whose ratio the inversion read at the cell"},
    "height": {"units": "m", "long_name": "true height above the WGS84 ellipsoid"},
    "coarse_error_lost_relief": {"units": "m", "long_name": "the coarse DEM's error: the relief its cells lose"},
    "coarse_error_shift": {"units": "m", "long_name": "the coarse DEM's error: its geolocation shift"},
    "coarse_error_correlated": {"units": "m", "long_name": "the coarse DEM's error: its correlated error"},
    "coarse_error_slope": {"units": "m", "long_name": "the coarse DEM's error: its slope-dependent error"},
    "coarse_error_bias": {"units": "m", "long_name": "the coarse DEM's error: its bias"},
    "coarse_error_rounding": {"units": "m", "long_name": "the coarse DEM's error: its heights' rounding"},
}


#: The stored variables the channels of the dates are made from.
DATE_SOURCES = ("sar_dates", "other_sar_dates", "sar_reconstructed", "other_sar_reconstructed",
                "local_incidence_angle", "other_local_incidence_angle", "layover", "shadow")


def variable_description(name: str) -> str:
    """What the scene variable ``name`` holds, in words (its ``long_name``; the name itself
    for a variable without one)."""
    return VARIABLE_ATTRS.get(name, {}).get("long_name", name)


def coarse_cell_size(scene: xr.Dataset) -> float:
    """The cell size (m, the geometric mean of its two sides) of the coarse DEM a scene was
    made from: its ``coarse_cell_m`` attribute, else its ``coarse_factor`` times the
    scene's cell size, else the scene's cell size."""
    if "coarse_cell_m" in scene.attrs:
        return float(scene.attrs["coarse_cell_m"])
    return float(scene.attrs.get("coarse_factor", 1)) * grid_cell_size(scene)


#: Variables a scene gives without storing them (:func:`scene_variable`), by the stored
#: variables each is computed from: the refinement model's scale-free inputs. None reads
#: the truth (``height``).
#:
#: - ``coarse_slope_east``, ``coarse_slope_north``: the gradient of the coarse DEM
#:   (``coarse_bicubic``, m/m), eastward and northward;
#: - ``coarse_curvature``: its Laplacian times the coarse cell size (m/m: the change of
#:   slope across one coarse cell; positive in valleys);
#: - ``coarse_factor``: the coarse cell size over the scene's (constant);
#: - ``look_east``, ``look_north`` (and ``other_``): the unit vector of the ground-range
#:   direction, away from the sensor (constant): which way the radar looks on the map;
#: - ``sar_ratio`` (and ``sar_ratio_geocoded``, ``other_sar_ratio``): the observed sigma0
#:   over a law of the local incidence fitted to the observation itself
#:   (:func:`scene_sigma0_law`), at the coarse DEM's local incidence (dB, its median over
#:   the fitted cells taken out): what the coarse DEM does not explain, whatever law the
#:   ground follows. In layover it is the reconstructed value;
#: - ``sar_slope`` (and ``sar_slope_geocoded``, ``other_sar_slope``): that ratio read as a
#:   change of the range slope (radians, rising away from the sensor) through the fitted
#:   law's sensitivity (:meth:`sarheight.ground.FittedLaw.sensitivity`), clipped at
#:   :data:`RANGE_SLOPE_LIMIT_RAD`; NaN where the law says little (sensitivity below
#:   :data:`MIN_SENSITIVITY_DB`) and in layover and shadow;
#: - ``inverted_filled``: the inversion's map (m), and where it has none (where the images
#:   say nothing) back-projection with the kriged priors (``coarse_refined``): the
#:   reference of a network that corrects the inversion, a height at every cell.
DERIVED_VARIABLES: dict[str, tuple[str, ...]] = {
    "coarse_slope_east": ("coarse_bicubic",),
    "coarse_slope_north": ("coarse_bicubic",),
    "coarse_curvature": ("coarse_bicubic",),
    "coarse_factor": ("coarse_height",),
    "look_east": ("coarse_height",),
    "look_north": ("coarse_height",),
    "other_look_east": ("other_sar_reconstructed",),
    "other_look_north": ("other_sar_reconstructed",),
    "sar_ratio": ("sar_reconstructed", "local_incidence_angle"),
    "sar_ratio_geocoded": ("sar_geocoded", "local_incidence_angle"),
    "other_sar_ratio": ("other_sar_reconstructed", "other_local_incidence_angle"),
    "sar_slope": ("sar_reconstructed", "local_incidence_angle"),
    "sar_slope_geocoded": ("sar_geocoded", "local_incidence_angle"),
    "other_sar_slope": ("other_sar_reconstructed", "other_local_incidence_angle"),
    "inverted_filled": ("inverted", "coarse_refined"),
}


#: The largest range-slope change (radians) one cell's brightness may claim.
RANGE_SLOPE_LIMIT_RAD = math.radians(25.0)


#: The least sensitivity (dB per radian of range slope) at which brightness is read as
#: slope: below it (near grazing, or a ground whose law is flat) a dB of speckle would be
#: tens of degrees.
MIN_SENSITIVITY_DB = 3.0


def _fit_scene_law(scene: xr.Dataset, sar: str = "sar_reconstructed",
                     incidence: str = "local_incidence_angle") -> FittedLaw:
    """The law of :func:`scene_sigma0_law`, fitted."""
    return _fitted_law(scene, scene[sar].values, scene[incidence].values, own=not sar.startswith("other_"))


def _outside_masks(scene: xr.Dataset, own: bool) -> np.ndarray | bool:
    """Where the own pass's layover and shadow leave a cell's brightness to its slope (the
    other pass's masks are not kept: True)."""
    if own and "layover" in scene.data_vars:
        return (scene["layover"].values == MaskCode.NONE) & (scene["shadow"].values == MaskCode.NONE)
    return True


def _fitted_law(scene: xr.Dataset, sigma0: np.ndarray, angles: np.ndarray, own: bool) -> FittedLaw:
    valid = np.isfinite(sigma0) & np.isfinite(angles) & _outside_masks(scene, own)
    try:
        return fit_sigma0_law(sigma0, angles, valid)
    except InvalidInputError:
        grid = np.linspace(5.0, 85.0, 81)
        with np.errstate(divide="ignore"):
            return fit_sigma0_law(10.0 * np.log10(np.repeat(empirical_sigma0(grid), 40)), np.repeat(grid, 40))


def _sar_ratio_and_slope(scene: xr.Dataset, sar: str, incidence: str, slope: bool) -> np.ndarray:
    return _ratio_or_slope(scene, scene[sar].values, scene[incidence].values.astype(np.float64),
                           scene_sigma0_law(scene, sar, incidence), own=not sar.startswith("other_"), slope=slope)


def _ratio_or_slope(scene: xr.Dataset, sigma0: np.ndarray, angles: np.ndarray, law: FittedLaw, own: bool,
                    slope: bool) -> np.ndarray:
    ratio = law.ratio_db(sigma0, angles)
    fitted = np.isfinite(ratio) & _outside_masks(scene, own)
    if fitted.any():
        # The ratio is defined up to a constant (speckle's mean in dB, the fit's level).
        ratio = ratio - np.median(ratio[fitted])
    if not slope:
        return np.where(np.isfinite(ratio), ratio, np.nan).astype(np.float32)
    sensitivity = law.sensitivity(angles)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.clip(ratio / sensitivity, -RANGE_SLOPE_LIMIT_RAD, RANGE_SLOPE_LIMIT_RAD)
        readable = np.isfinite(change) & (sensitivity >= MIN_SENSITIVITY_DB)
    readable &= _outside_masks(scene, own)
    return np.where(readable, change, np.nan).astype(np.float32)


def variable_sources(name: str) -> tuple[str, ...]:
    """The stored variables a scene needs to give ``name`` (itself, unless it is derived;
    none for a date's channel, which a scene without that date gives as empty)."""
    if date_channel(name) is not None:
        return ()
    return DERIVED_VARIABLES.get(name, (name,))


def _make_variable(scene: xr.Dataset, name: str) -> np.ndarray:
    """The values (float32, (y, x)) of a scene's variable ``name``: stored, or derived from
    the stored ones (:data:`DERIVED_VARIABLES`).

    Raises
    ------
    InvalidInputError : a variable it needs is missing, or (for the look direction) the
        scene does not record its heading and look side.
    """
    if name in scene.data_vars:
        return scene[name].values.astype(np.float32)
    if name not in DERIVED_VARIABLES:
        raise InvalidInputError(f"the scene has no variable {name!r}: it has {', '.join(sorted(scene.data_vars))}")
    missing = [source for source in DERIVED_VARIABLES[name] if source not in scene.data_vars]
    if missing:
        raise InvalidInputError(f"{name!r} is computed from {', '.join(missing)}, which the scene lacks: write the "
                                "scene again with this version of sarheight")
    shape = scene[DERIVED_VARIABLES[name][0]].shape
    if name == "inverted_filled":
        inverted, refined = (scene[source].values.astype(np.float32) for source in DERIVED_VARIABLES[name])
        return np.where(np.isfinite(inverted), inverted, refined)
    if name.startswith("coarse_") and name != "coarse_factor":
        return _coarse_terrain(scene, name)
    if name == "coarse_factor":
        return np.full(shape, float(scene.attrs.get("coarse_factor", coarse_cell_size(scene) / grid_cell_size(scene))),
                       dtype=np.float32)
    if name.endswith(("look_east", "look_north")):
        prefix = "other_" if name.startswith("other_") else ""
        heading, side = scene.attrs.get(f"{prefix}heading_deg"), scene.attrs.get(f"{prefix}look_side")
        if heading is None or side not in ("right", "left"):
            raise InvalidInputError(f"{name!r} needs the scene's {prefix}heading_deg and {prefix}look_side attributes:"
                                    " write the scene again with this version of sarheight")
        azimuth = math.radians(float(heading) + (90.0 if side == "right" else -90.0))
        value = math.sin(azimuth) if name.endswith("east") else math.cos(azimuth)
        return np.full(shape, value, dtype=np.float32)
    sar, incidence = DERIVED_VARIABLES[name]
    return _sar_ratio_and_slope(scene, sar, incidence, slope="_slope" in name)


def _make_classes(scene: xr.Dataset) -> np.ndarray:
    """The code (uint8, the index in :data:`~sarheight.terrain.classes.REFINEMENT_CLASSES`: the coarse DEM's layover,
    its shadow, steep slopes outside both and the other cells) of every cell of a scene:
    the refinement's grouping of the one classification from its ``layover`` and
    ``shadow`` masks and the coarse DEM's slope (:mod:`sarheight.terrain.classes`)."""
    slope = np.degrees(np.arctan(np.hypot(scene_variable(scene, "coarse_slope_east"),
                                          scene_variable(scene, "coarse_slope_north"))))
    return REFINEMENT_GROUPS.codes(cell_classes(scene["layover"].values, scene["shadow"].values, slope))


def grid_cell_size(scene: xr.Dataset) -> float:
    return cell_side_m(scene[next(iter(scene.data_vars))])


def _coarse_gradient(scene: xr.Dataset | Scene) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The coarse DEM's gradient on the scene's grid (north, east; m/m) and the grid's
    signed steps (m): one gradient for the slopes and the curvature."""
    heights = scene["coarse_bicubic"]
    steps = grid_steps(heights)
    along_rows, along_cols = gradient(heights.values.astype(np.float64), steps)
    return along_rows, along_cols, steps


def _coarse_terrain(scene: xr.Dataset | Scene, name: str) -> np.ndarray:
    scene = Scene.of(scene)
    along_rows, along_cols, (north_step, east_step) = scene.made(("coarse gradient",), ("coarse_bicubic",),
                                                                 lambda: _coarse_gradient(scene))
    if name == "coarse_slope_east":
        return along_cols.astype(np.float32)
    if name == "coarse_slope_north":
        return along_rows.astype(np.float32)
    steps = (north_step, east_step)
    laplacian = gradient(along_rows, steps, axis=0) + gradient(along_cols, steps, axis=1)
    return (laplacian * coarse_cell_size(scene)).astype(np.float32)


def on_grid(values: xr.DataArray | np.ndarray, grid: xr.DataArray, name: str,
            attrs: dict | None = None) -> xr.DataArray:
    data = values.values if isinstance(values, xr.DataArray) else values
    return xr.DataArray(data, dims=("y", "x"), coords={"y": grid["y"], "x": grid["x"]}, name=name,
                        attrs=dict(attrs if attrs is not None else VARIABLE_ATTRS.get(name, {})))


#: The references the inversion may start from (:attr:`InversionSettings.reference`):
#: the coarse DEM back-projected (which also sharpens a real product's errors) or resampled
#: with a Lanczos kernel, each registered and corrected by the priors' kriged residuals.
INVERSION_REFERENCES = ("back_projection", "lanczos")


def scene_correction(scene: xr.Dataset) -> np.ndarray:
    """What the priors' kriged residuals added to the coarse DEM's back-projection on a
    scene's grid (m, float64; 0 where either has no value): the correction the inversion's
    reference carries and its coarse-cell means keep."""
    kriged = scene["coarse_refined"].values.astype(np.float64) - scene["coarse_backprojected"].values
    return np.where(np.isfinite(kriged), kriged, 0.0)


def inversion_reference(scene: xr.Dataset, reference: str = "back_projection") -> xr.DataArray:
    """The heights the inversion starts from and keeps the coarse-cell means of: the
    scene's ``coarse_refined`` (back-projection, kriged priors) or its Lanczos resampling
    (``coarse_registered``) corrected by the same kriged residuals."""
    if reference not in INVERSION_REFERENCES:
        raise InvalidInputError(f"reference must be one of {', '.join(INVERSION_REFERENCES)}, got {reference!r}")
    if reference == "back_projection":
        return scene["coarse_refined"]
    values = scene["coarse_registered"].values + scene_correction(scene)
    return scene["coarse_registered"].copy(data=values.astype(np.float32))


# ---------------------------------------------------------------------------------------
# Each derived array made once per scene


class Scene:
    """A terrain scene (its Dataset, ``data``) and what has been derived from it, each made
    once (:meth:`made`): the slopes and curvature from one gradient, the fitted law, the
    derived channels, the classes, a method's map. Read as its Dataset is (indexing,
    ``attrs``, ``data_vars``, ``sizes``...: everything not its own is the Dataset's), so the
    functions that read a scene take either; a caller that reads several things of one
    scene wraps it once (:meth:`of`) and hands the Scene on. What is derived lives with the
    Scene, not in a registry of Datasets.
    """

    __slots__ = ("_made", "data")

    def __init__(self, data: xr.Dataset) -> None:
        if not isinstance(data, xr.Dataset):
            raise InvalidInputError(f"a Scene wraps a terrain scene's Dataset, got {type(data).__name__}")
        self.data = data
        self._made: dict[Any, tuple[tuple[Any, ...], Any]] = {}

    @classmethod
    def of(cls, scene: xr.Dataset | Scene) -> Scene:
        """``scene`` itself if it is a Scene, else a new Scene of the Dataset (nothing
        derived yet)."""
        return scene if isinstance(scene, Scene) else cls(scene)

    def made(self, key: Any, sources: tuple[str, ...], make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked, the same object after, while the
        stored variables it reads (``sources``) are the same arrays: a variable replaced
        (``scene[name] = ...``) makes it anew. (Arrays changed in place are not seen: a
        scene is built, then read.) Arrays come back as copies.

        Parameters
        ----------
        key : what is derived (hashable; one key, one thing).
        sources : the stored variables ``make`` reads.
        make : computes it.
        """
        arrays = tuple(self.data[name].variable.data if name in self.data.variables else None for name in sources)
        found = self._made.get(key)
        if found is None or not all(a is b for a, b in zip(found[0], arrays, strict=True)):
            found = (arrays, make())
            self._made[key] = found
        # Arrays are handed out as copies (a reader may change its own): made once, copied in a
        # millisecond.
        return found[1].copy() if isinstance(found[1], np.ndarray) else found[1]

    def __getattr__(self, name: str) -> Any:
        if name in Scene.__slots__ or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.data, name)

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self.data

    def __iter__(self) -> Any:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __getstate__(self) -> tuple[xr.Dataset, dict]:
        return self.data, self._made

    def __setstate__(self, state: tuple[xr.Dataset, dict]) -> None:
        self.data, self._made = state


def scene_sigma0_law(scene: xr.Dataset | Scene, sar: str = "sar_reconstructed",
                     incidence: str = "local_incidence_angle") -> FittedLaw:
    """The sigma0 law of the local incidence fitted to a scene's own observation
    (:func:`sarheight.ground.fit_sigma0_law`, robust medians per degree of incidence),
    outside layover and shadow (for the other pass, whose masks a scene does not keep,
    where it is finite: NaN in its shadow). A scene too small to fit one (fewer than 30
    cells in every degree of incidence) falls back to the empirical law, fitted to that
    law's own values. Fitted once per scene and observation."""
    scene = Scene.of(scene)
    return scene.made(("law", sar, incidence), (sar, incidence, "layover", "shadow"),
                      lambda: _fit_scene_law(scene, sar, incidence))


def scene_variable(scene: xr.Dataset | Scene, name: str) -> np.ndarray:
    """The values (float32, (y, x)) of a scene's variable ``name``: stored, or derived from
    the stored ones (:data:`DERIVED_VARIABLES`; each made once per scene).

    Raises
    ------
    InvalidInputError : a variable it needs is missing, or (for the look direction) the
        scene does not record its heading and look side.
    """
    scene = Scene.of(scene)
    if date_channel(name) is not None:
        return scene.made(("date channel", name), DATE_SOURCES, lambda: _date_variable(scene, name))
    if name in scene.data_vars or name not in DERIVED_VARIABLES:
        return _make_variable(scene, name)
    return scene.made(("variable", name), (*DERIVED_VARIABLES[name], "layover", "shadow"),
                      lambda: _make_variable(scene, name))


def refinement_classes(scene: xr.Dataset | Scene) -> np.ndarray:
    """The code (uint8, the index in :data:`~sarheight.terrain.classes.REFINEMENT_CLASSES`) of every cell of a
    scene, from its ``layover`` and ``shadow`` masks and the coarse DEM's slope: what a
    user knows, never the truth. Made once per scene."""
    scene = Scene.of(scene)
    return scene.made(("classes",), ("layover", "shadow", "coarse_bicubic"), lambda: _make_classes(scene))


# ---------------------------------------------------------------------------------------
# The channels of each date of a stack

#: What separates a channel's name from the date it is of: ``sar_ratio@3`` is the fourth
#: date's ratio of the own pass, ``other_sar_ratio@0`` the first of the opposite pass's.
DATE_SEPARATOR = "@"

#: The channels read from each date's own image (its law fitted to it alone): the ratio
#: and the range slope of :data:`DERIVED_VARIABLES`, of either pass.
DATE_IMAGE_CHANNELS = ("sar_ratio", "sar_slope", "other_sar_ratio", "other_sar_slope")

#: The presence flag of a date: 1 where the date has a sigma0 at the cell, 0 where it has
#: none (shadow, outside its image) or the scene has no such date or pass.
DATE_PRESENCE_CHANNELS = ("sar_present", "other_sar_present")


def date_channel(name: str) -> tuple[str, int] | None:
    """``(channel, date)`` of a date's channel name (``"sar_ratio@3"`` -> ``("sar_ratio",
    3)``), None for a channel of the whole scene.

    Raises
    ------
    InvalidInputError : a name with the separator but no date number after it.
    """
    if DATE_SEPARATOR not in name:
        return None
    base, _, index = name.rpartition(DATE_SEPARATOR)
    if not base or not index.isdigit():
        raise InvalidInputError(f"channel {name!r}: a date's channel is <channel>{DATE_SEPARATOR}<date number>, "
                                f"such as sar_ratio{DATE_SEPARATOR}0")
    return base, int(index)


def pass_dates(scene: xr.Dataset, prefix: str = "") -> int:
    """How many dates a scene holds of its own pass (``prefix=""``) or of the opposite one
    (``"other_"``): the dates kept one by one (``sar_dates``), else 1 for a pass of one
    image, 0 for a pass the scene lacks."""
    if f"{prefix}sar_dates" in scene.data_vars:
        return int(scene[f"{prefix}sar_dates"].sizes["date"])
    return int(f"{prefix}sar_reconstructed" in scene.data_vars)


def date_image(scene: xr.Dataset, prefix: str, date: int) -> np.ndarray:
    """The sigma0 (dB, (y, x)) of a pass's ``date`` (0 the first): the dates kept, else the
    pass's one image."""
    if f"{prefix}sar_dates" in scene.data_vars:
        return scene[f"{prefix}sar_dates"].values[date]
    return scene[f"{prefix}sar_reconstructed"].values


def _date_variable(scene: xr.Dataset, name: str) -> np.ndarray:
    """The values (float32, (y, x)) of a date's channel (:func:`date_channel`): NaN where
    the scene lacks the date (its presence flag 0)."""
    base, date = date_channel(name)
    prefix = "other_" if base.startswith("other_") else ""
    shape = (scene.sizes["y"], scene.sizes["x"])
    there = date < pass_dates(scene, prefix)
    if base in DATE_PRESENCE_CHANNELS:
        if not there:
            return np.zeros(shape, dtype=np.float32)
        return np.isfinite(date_image(scene, prefix, date)).astype(np.float32)
    if not there:
        return np.full(shape, np.nan, dtype=np.float32)
    if base in DATE_IMAGE_CHANNELS:
        sigma0 = date_image(scene, prefix, date)
        angles = scene[f"{prefix}local_incidence_angle"].values.astype(np.float64)
        law = _fitted_law(scene, sigma0, angles, own=not prefix)
        return _ratio_or_slope(scene, sigma0, angles, law, own=not prefix, slope=base.endswith("_slope"))
    # A channel of the pass (its local incidence, its look): the same for each of its dates.
    return scene_variable(scene, base)
