"""A physical synthetic city: building footprints and heights on a terrain, imaged as
Sentinel-1 and Sentinel-2 would see them over twelve months, for tests, the demo and
pre-training of the building-height model.

One module, not a package: it composes the physics below it (the simulation, the
geometry of :mod:`sarheight.terrain`, the preprocessing core) for one user task, as
:mod:`sarheight.terrain` does for terrain scenes.

- :func:`city_layout`: a street grid and its blocks (low-rise rows, towers, courtyard
  buildings with ring footprints, parks) on a gentle terrain, on a fine projected grid
  (2.5 m cells by default; the products are on a grid ``fine_factor`` times coarser,
  10 m by default).
- :func:`simulate_city`: the surface model (terrain + buildings) imaged by
  :func:`sarheight.simulate.simulate_sar` in a Sentinel-1-like geometry
  (:func:`sarheight.terrain.geometry.scene_geometry`) with radar pixels as fine as the surface
  cells, so that walls fall into layover toward the sensor and roofs cast radar shadow
  behind; geocoded with the *bare terrain* (what a terrain-corrected GRD product uses:
  the buildings are not in its DEM, so their returns stay displaced toward near range)
  and multilooked to the product grid (:func:`sarheight.preprocess.backscatter.multilook`);
  a double-bounce term at the foot of walls facing the radar; speckle and a noise floor;
  VV and VH; and Sentinel-2-like reflectance in the ten bands of
  :data:`sarheight.preprocess.sentinel2.S2_BANDS` with sun shadows, a seasonal
  vegetation cycle and optional clouds (with SCL codes).
- :func:`write_city`: the per-city folder the building data module reads.

Radar. The imaging is linear in sigma0, so the surface is simulated once per scattering
component (urban surfaces, the double-bounce lines, vegetation) without speckle, and
each month's VV and VH image is their combination with that month's vegetation factor,
plus the noise floor (NESZ / sin of the incidence), times gamma speckle of ``looks``
looks per fine pixel, as :func:`~sarheight.simulate.simulate_sar` applies them. The
double bounce: every path radar -> wall -> ground -> radar (or the reverse) has the
slant range of the corner where the wall meets the ground, so its energy is given to the
ground cell at the wall foot (extra sigma0 of ``double_bounce`` times the wall's facing
cosine) and the simulation places it on that cell's range line. Foot cells are ground
cells whose neighbour one cell away from the sensor (along the ground-range look
direction) stands at least ``min_wall_m`` higher.

Optical. Reflectance is a spectral signature per land cover (roofs, asphalt, bare soil,
vegetation mixed with dormant vegetation by a seasonal cycle peaking in July), dimmed to
the diffuse sky fraction in the sun shadows of buildings (cast along the sun vector of
each month at ``latitude_deg`` at 10:30 local solar time, Sentinel-2's overpass), averaged
to the product grid, and quantised as L2A digital numbers of processing baseline >= 04.00
(DN = 10000 * reflectance + 1000), so that :func:`~sarheight.preprocess.sentinel2.reflectance`
reads them back.

What it does not model: multiple scattering other than the one double-bounce line
(no triple bounce, no wall-to-wall paths), roof structures (roofs are flat), building
materials and their dielectric properties (one sigma0 per land cover, independent of the
local incidence angle), facade orientation beyond the facing cosine of the double
bounce, azimuth smearing and the radar's impulse response (a pixel is a box), the
convergence of the UTM grid (the look and sun directions are taken from true north),
a realistic VH (a crude scaling of the components, with vegetation volume scattering
relatively brighter), vegetation structure (seasonal moisture is a scalar factor),
atmosphere (no aerosols, no haze; only clouds, as bright opaque patches without cloud
shadows), adjacency effects, the sensors' spectral responses, bidirectional reflectance,
the 20 m resolution of six of the bands (all ten are simulated at the fine grid and
averaged), and moving objects.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from ._version import __version__
from .dem import open_dem
from .errors import InvalidInputError, PlausibilityWarning, deferred_warnings
from .geometry import RadarGeometry
from .io import write_bands
from .preprocess.align import write_height, write_s1_image, write_s2_image
from .preprocess.backscatter import multilook, to_db
from .preprocess.sentinel2 import S2_BANDS
from .raster import gradient, smooth_random_field
from .simulate import simulate_sar
from .simulate.cells import cell_geometry
from .terrain.geometry import PassDirection, scene_geometry

__all__ = [
    "LAND_COVER",
    "PROCESSING_BASELINE",
    "SPECTRA",
    "city_layout",
    "simulate_city",
    "sun_position",
    "sun_shadow",
    "wall_foot",
    "write_cities",
    "write_city",
]

#: Land-cover codes of :func:`city_layout`.
LAND_COVER = {"street": 1, "building": 2, "vegetation": 3, "bare": 4}

#: The processing baseline written with the Sentinel-2 DNs (offset -1000).
PROCESSING_BASELINE = "05.09"

#: Surface reflectance of each land cover in the bands of S2_BANDS (B2 ... B12);
#: ``vegetation`` at the peak of the season, ``dormant`` in winter.
SPECTRA = {
    "roof": (0.12, 0.13, 0.15, 0.17, 0.19, 0.20, 0.21, 0.22, 0.25, 0.21),
    "street": (0.06, 0.07, 0.08, 0.09, 0.10, 0.10, 0.11, 0.11, 0.13, 0.12),
    "bare": (0.08, 0.11, 0.15, 0.19, 0.22, 0.24, 0.26, 0.27, 0.32, 0.28),
    "vegetation": (0.03, 0.07, 0.04, 0.10, 0.25, 0.33, 0.38, 0.40, 0.20, 0.10),
    "dormant": (0.06, 0.08, 0.10, 0.13, 0.17, 0.19, 0.21, 0.22, 0.28, 0.22),
}

#: Linear sigma0 (VV) of each scattering component; VH as a fraction of VV.
SIGMA0_VV = {"street": 0.02, "building": 0.15, "bare": 0.05, "vegetation": 0.08}
VH_RATIO = {"urban": 0.03, "double_bounce": 0.01, "vegetation": 0.25}

#: Fraction of sunlit reflectance left in a building's sun shadow (diffuse skylight).
SHADOW_FRACTION = 0.3

#: Sentinel-2's mean local solar time at the overpass (hours).
OVERPASS_HOUR = 10.5

#: Scene classification codes written with the reflectance (2: cast shadows, as the
#: L2A processor labels dark shadowed pixels).
SCL = {"vegetation": 4, "not_vegetated": 5, "cast_shadow": 2, "cloud": 9}


def _check_shape(shape: Any) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 16 for n in shape)):
        raise InvalidInputError(f"shape must be (rows, cols) of the product grid, each >= 16 cells, got {shape!r}")
    return int(shape[0]), int(shape[1])


def city_layout(
    shape: tuple[int, int] = (64, 64),
    *,
    cell_size_m: float = 10.0,
    fine_factor: int = 4,
    seed: int = 0,
    crs: str = "EPSG:32632",
    origin: tuple[float, float] = (500_000.0, 5_300_000.0),
    street_width_m: float = 14.0,
    block_size_m: tuple[float, float] = (70.0, 130.0),
    mix: tuple[float, float, float, float] = (0.45, 0.2, 0.2, 0.15),
    tower_heights_m: tuple[float, float] = (30.0, 80.0),
    low_rise_heights_m: tuple[float, float] = (6.0, 18.0),
    terrain_relief_m: float = 6.0,
) -> xr.Dataset:
    """Footprints and heights of a synthetic city on a gentle terrain.

    Parameters
    ----------
    shape : (rows, cols) of the product grid (cells of ``cell_size_m``); the layout's
        grid is ``fine_factor`` times finer.
    cell_size_m : the product grid's cell size (m).
    fine_factor : surface cells per product cell along each axis (4: 2.5 m cells).
    seed : the random seed; the same seed gives the same city.
    crs : a projected CRS in metres (a UTM zone).
    origin : (x, y) of the upper-left corner (m, in ``crs``).
    street_width_m : width of the streets (m).
    block_size_m : range of the blocks' sides between streets (m).
    mix : shares of low-rise, tower, courtyard and park blocks.
    tower_heights_m, low_rise_heights_m : ranges of building heights (m); courtyard
        buildings take the upper half of the low-rise range plus a storey or two.
    terrain_relief_m : amplitude of the terrain's gentle undulation (m).

    Returns
    -------
    xr.Dataset on the fine grid (y, x) with CRS: ``building_height`` (m, 0 where no
    building), ``building_id`` (0 where none), ``land_cover`` (:data:`LAND_COVER`),
    ``terrain_height`` (m, WGS84-ellipsoidal in the simulation) and ``surface_height``
    (terrain + buildings). attrs: ``cell_size_m`` (fine), ``product_cell_size_m``,
    ``fine_factor``, ``seed``.
    """
    rows, cols = _check_shape(shape)
    if not isinstance(fine_factor, (int, np.integer)) or fine_factor < 1:
        raise InvalidInputError(f"fine_factor must be a positive integer, got {fine_factor!r}")
    if not (math.isfinite(cell_size_m) and cell_size_m > 0):
        raise InvalidInputError(f"cell_size_m must be a positive number of metres, got {cell_size_m!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if len(mix) != 4 or min(mix) < 0 or sum(mix) <= 0:
        raise InvalidInputError(f"mix must be four non-negative shares (low-rise, tower, courtyard, park), got {mix!r}")
    rng = np.random.default_rng(seed)
    step = cell_size_m / fine_factor
    ny, nx = rows * fine_factor, cols * fine_factor
    height = np.zeros((ny, nx), dtype=np.float32)
    ident = np.zeros((ny, nx), dtype=np.int32)
    cover = np.full((ny, nx), LAND_COVER["street"], dtype=np.uint8)
    street = max(1, round(street_width_m / step))
    shares = np.asarray(mix, dtype=float) / sum(mix)

    def cuts(n: int) -> list[tuple[int, int]]:
        # Blocks between streets along one axis, as (start, stop) fine cells.
        spans, start = [], street // 2
        while start < n:
            size = max(4, round(rng.uniform(*block_size_m) / step))
            spans.append((start, min(n, start + size)))
            start += size + street
        return spans

    next_id = 1
    for r0, r1 in cuts(ny):
        for c0, c1 in cuts(nx):
            kind = rng.choice(4, p=shares)
            setback = max(1, round(3.0 / step))
            br0, br1, bc0, bc1 = r0 + setback, r1 - setback, c0 + setback, c1 - setback
            cover[r0:r1, c0:c1] = LAND_COVER["bare"] if kind != 3 else LAND_COVER["vegetation"]
            if kind == 3 or br1 - br0 < 4 or bc1 - bc0 < 4:
                cover[r0:r1, c0:c1] = LAND_COVER["vegetation"]
                continue
            if kind == 0:  # rows of low-rise buildings along the block's longer side
                along_rows = (br1 - br0) >= (bc1 - bc0)
                length = br1 - br0 if along_rows else bc1 - bc0
                depth = max(3, round(rng.uniform(10.0, 16.0) / step))
                pieces = [0, *sorted(rng.choice(np.arange(4, max(5, length - 3)), size=min(2, max(0, length // 8)),
                                                replace=False).tolist()), length]
                for a, b in itertools.pairwise(pieces):
                    if b - a < 3:
                        continue
                    h = rng.uniform(*low_rise_heights_m)
                    for side in (0, 1):  # buildings on both long edges, a garden between
                        if along_rows:
                            cs = slice(bc0, bc0 + depth) if side == 0 else slice(bc1 - depth, bc1)
                            sl = (slice(br0 + a, br0 + b - 1), cs)
                        else:
                            rs = slice(br0, br0 + depth) if side == 0 else slice(br1 - depth, br1)
                            sl = (rs, slice(bc0 + a, bc0 + b - 1))
                        height[sl], ident[sl], cover[sl] = h, next_id, LAND_COVER["building"]
                        next_id += 1
                inner = cover[r0:r1, c0:c1]
                inner[inner == LAND_COVER["bare"]] = LAND_COVER["vegetation"]
            elif kind == 1:  # a tower on a plaza
                side = round(rng.uniform(20.0, 35.0) / step)
                side = min(side, br1 - br0, bc1 - bc0)
                tr = br0 + rng.integers(0, br1 - br0 - side + 1)
                tc = bc0 + rng.integers(0, bc1 - bc0 - side + 1)
                sl = (slice(tr, tr + side), slice(tc, tc + side))
                height[sl], ident[sl], cover[sl] = rng.uniform(*tower_heights_m), next_id, LAND_COVER["building"]
                next_id += 1
            else:  # a courtyard building: a ring footprint
                depth = max(3, round(rng.uniform(10.0, 14.0) / step))
                lo, hi = low_rise_heights_m
                h = rng.uniform(0.5 * (lo + hi), hi + 6.0)
                ring = np.zeros((br1 - br0, bc1 - bc0), dtype=bool)
                ring[:, :] = True
                if br1 - br0 > 2 * depth + 2 and bc1 - bc0 > 2 * depth + 2:
                    ring[depth:-depth, depth:-depth] = False
                    court = np.zeros_like(ring)
                    court[depth:-depth, depth:-depth] = True
                    cover[br0:br1, bc0:bc1][court] = LAND_COVER["vegetation"]
                block = (slice(br0, br1), slice(bc0, bc1))
                height[block][ring], ident[block][ring], cover[block][ring] = h, next_id, LAND_COVER["building"]
                next_id += 1
    # A gentle terrain: a tilt and a long undulation, a few metres across the city.
    yy, xx = np.mgrid[0:ny, 0:nx] * step
    phase = rng.uniform(0, 2 * np.pi, size=2)
    extent = max(ny, nx) * step
    terrain = (100.0 + terrain_relief_m * (0.5 * np.sin(2 * np.pi * xx / extent + phase[0])
                                           + 0.5 * np.sin(2 * np.pi * yy / extent + phase[1]))).astype(np.float32)
    x = origin[0] + (np.arange(nx) + 0.5) * step
    y = origin[1] - (np.arange(ny) + 0.5) * step
    coords = {"y": y, "x": x}

    def var(values: np.ndarray, attrs: dict[str, Any]) -> xr.DataArray:
        return xr.DataArray(values, dims=("y", "x"), coords=coords, attrs=attrs)

    layout = xr.Dataset({
        "building_height": var(height, {"units": "m", "long_name": "building height above the terrain, 0: none"}),
        "building_id": var(ident, {"long_name": "building number, 0: none"}),
        "land_cover": var(cover, {"long_name": "land cover", "flag_values": list(LAND_COVER.values()),
                                  "flag_meanings": " ".join(LAND_COVER)}),
        "terrain_height": var(terrain, {"units": "m", "long_name": "terrain height (WGS84 ellipsoid)"}),
        "surface_height": var(terrain + height, {"units": "m", "long_name": "terrain + buildings"}),
    }, attrs={"cell_size_m": step, "product_cell_size_m": float(cell_size_m), "fine_factor": int(fine_factor),
              "seed": int(seed), "sarheight_version": __version__})
    return layout.rio.write_crs(crs)


def sun_position(month: int, latitude_deg: float, hour: float = OVERPASS_HOUR) -> tuple[float, float]:
    """Sun azimuth (clockwise from north) and elevation (degrees) in the middle of
    ``month`` (1-12) at ``latitude_deg`` and local solar time ``hour``: the declination
    of Cooper's (1969) formula, the hour angle 15 degrees per hour from noon."""
    day = 30.4 * (month - 0.5)
    decl = math.radians(23.44 * math.sin(2 * math.pi * (284 + day) / 365.0))
    lat = math.radians(latitude_deg)
    hour_angle = math.radians(15.0 * (hour - 12.0))
    sin_e = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
    elevation = math.asin(sin_e)
    cos_a = (math.sin(decl) - sin_e * math.sin(lat)) / (math.cos(elevation) * math.cos(lat))
    azimuth = math.degrees(math.acos(max(-1.0, min(1.0, cos_a))))
    if hour_angle > 0:
        azimuth = 360.0 - azimuth
    return azimuth, math.degrees(elevation)


def _shift(values: np.ndarray, d_row: float, d_col: float, order: int = 1) -> np.ndarray:
    """``values`` sampled at (row + d_row, col + d_col); edges take the nearest cell."""
    rows, cols = np.mgrid[0:values.shape[0], 0:values.shape[1]].astype(np.float64)
    return ndimage.map_coordinates(values, [rows + d_row, cols + d_col], order=order, mode="nearest")


def sun_shadow(surface: np.ndarray, cell_size_m: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Cells of ``surface`` (heights, m, north up) in the cast shadow of the sun at
    ``azimuth_deg`` / ``elevation_deg``: some surface toward the sun rises above the ray
    from the cell to the sun (steps of half a cell up to the highest relief)."""
    az, tan_e = math.radians(azimuth_deg), math.tan(math.radians(max(elevation_deg, 1.0)))
    # Toward the sun: east is +col, north is -row.
    d_col, d_row = math.sin(az), -math.cos(az)
    relief = float(surface.max() - surface.min())
    shadow = np.zeros(surface.shape, dtype=bool)
    n_steps = math.ceil(relief / tan_e / (0.5 * cell_size_m)) + 1
    for k in range(1, n_steps + 1):
        dist = 0.5 * k
        ahead = _shift(surface, dist * d_row, dist * d_col, order=0)
        shadow |= ahead - surface > dist * cell_size_m * tan_e + 0.5
    return shadow


def _season(month: int) -> float:
    """Vegetation vigour 0 (winter) .. 1 (peak, mid-July) of ``month``."""
    return 0.5 + 0.5 * math.cos(2 * math.pi * (month - 7) / 12.0)


def _ground_look(geometry: RadarGeometry) -> tuple[float, float]:
    """(d_row, d_col) of the unit ground-range direction away from the sensor, on a
    north-up grid: a right-looking sensor sees the ground to the right of its heading."""
    heading = math.radians(geometry.heading())
    away = heading + (math.pi / 2 if geometry.look_side == "right" else -math.pi / 2)
    return -math.cos(away), math.sin(away)


def _aggregate(values: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = values.shape[-2] // factor, values.shape[-1] // factor
    blocks = values[..., :rows * factor, :cols * factor].reshape(*values.shape[:-2], rows, factor, cols, factor)
    return blocks.mean(axis=(-3, -1))


def simulate_city(
    layout: xr.Dataset,
    *,
    months: tuple[int, ...] = tuple(range(1, 13)),
    year: int = 2023,
    pass_direction: PassDirection = "ascending",
    incidence_deg: tuple[float, float] = (30.0, 46.0),
    looks: float = 4.4,
    nesz_db: float = -22.0,
    double_bounce: float = 10.0,
    min_wall_m: float = 3.0,
    latitude_deg: float | None = None,
    cloud_fraction: float = 0.0,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """Sentinel-1 and Sentinel-2-like monthly images of a city from :func:`city_layout`.

    Parameters
    ----------
    layout : the city (:func:`city_layout`).
    months : the months (1-12) to image, one acquisition each.
    year : the year of the dates.
    pass_direction : the Sentinel-1 pass (:func:`sarheight.terrain.geometry.scene_geometry`).
    incidence_deg : the swath's near and far incidence (degrees).
    looks : equivalent number of looks of the speckle of a product cell; each fine radar
        pixel gets ``looks / fine_factor**2`` so that the multilooked cell has ``looks``.
    nesz_db : noise-equivalent sigma0 (dB) of the noise floor.
    double_bounce : linear sigma0 added at the foot of a wall facing the radar (times
        the facing cosine); 0: no double bounce.
    min_wall_m : the least height step (m) counted as a wall for the double bounce.
    latitude_deg : latitude of the sun's course (degrees north); default the city's own.
    cloud_fraction : share of each month's scene under cloud (0: clear skies).
    seed : seeds the speckle, noise and clouds (months get their own draws).
    on_step : called with the name of each step as it starts (a progress bar's text).

    Returns
    -------
    xr.Dataset on the product grid (y, x) with CRS: ``s1`` (time, polarisation=VV/VH, y, x)
    sigma0 in dB (VH: the components scaled by :data:`VH_RATIO`, vegetation's volume
    scattering the least weakened, under the same noise floor, so noisier); ``s2``
    (time, band=B2..B12, y, x) reflectance; ``scl`` (time, y, x) scene classification; ``height`` (m, building height:
    the mean height of the
    buildings of a cell where they cover at least half of it, else 0); ``land_cover``
    (the most common class of the cell). attrs record the parameters and geometry.
    """
    if not isinstance(layout, xr.Dataset) or "surface_height" not in layout:
        raise InvalidInputError("simulate_city takes the Dataset of city_layout(...)")
    bad = [m for m in months if not (isinstance(m, (int, np.integer)) and 1 <= m <= 12)]
    if bad or not months:
        raise InvalidInputError(f"months must be month numbers 1..12, got {months!r}")
    if not (math.isfinite(double_bounce) and double_bounce >= 0):
        raise InvalidInputError(f"double_bounce must be a non-negative linear sigma0, got {double_bounce!r}")
    if not (0.0 <= cloud_fraction < 1.0):
        raise InvalidInputError(f"cloud_fraction must be in [0, 1), got {cloud_fraction!r}")
    if not (math.isfinite(looks) and looks > 0):
        raise InvalidInputError(f"looks must be a positive number, got {looks!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    factor = int(layout.attrs["fine_factor"])
    step = float(layout.attrs["cell_size_m"])
    if latitude_deg is None:
        _, south, _, north = layout.rio.transform_bounds("EPSG:4326")
        latitude_deg = 0.5 * (south + north)
    cover = layout["land_cover"].values
    building = layout["building_height"].values.astype(np.float64)
    surface_height = layout["terrain_height"].values.astype(np.float64) + building
    with warnings.catch_warnings():
        # Walls are vertical on purpose: the plausibility check of terrain does not apply.
        warnings.simplefilter("ignore", PlausibilityWarning)
        surface = open_dem(layout["terrain_height"].copy(data=surface_height), vertical_datum="ellipsoid")
    terrain = open_dem(layout["terrain_height"].astype(np.float64), vertical_datum="ellipsoid")
    geometry = scene_geometry(surface, pass_direction, incidence_near_deg=incidence_deg[0],
                              incidence_far_deg=incidence_deg[1], pixel_spacing_m=step)

    # Scattering components (linear sigma0 per fine cell).
    urban = np.zeros(cover.shape)
    for name in ("street", "building", "bare"):
        urban[cover == LAND_COVER[name]] = SIGMA0_VV[name]
    vegetation = np.where(cover == LAND_COVER["vegetation"], SIGMA0_VV["vegetation"], 0.0)
    foot = wall_foot(surface_height, building, _ground_look(geometry), min_wall_m=min_wall_m)
    components = {"urban": urban, "vegetation": vegetation}
    say = on_step or (lambda name: None)
    images = {}
    for name, sigma0 in components.items():
        if sigma0.any():
            say(f"Sentinel-1: the {name} scattering")
            images[name] = simulate_sar(surface, geometry, backscatter=surface.copy(data=sigma0), looks=None,
                                        nesz_db=None, seed=seed)
    if not images:
        raise InvalidInputError("the layout has no land cover that scatters: give one from city_layout(...)")
    window = next(iter(images.values()))
    if double_bounce > 0 and foot.any():
        say("Sentinel-1: the double bounce")
        # On the surface model the foot cell's own facets climb half-way up the wall and
        # would carry its energy into layover; on the bare terrain the foot is flat ground
        # and its energy lands at the corner's slant range, where every wall-ground path does.
        corner = simulate_sar(terrain, geometry, backscatter=terrain.copy(data=double_bounce * foot), looks=None,
                              nesz_db=None, seed=seed)
        images["double_bounce"] = corner.reindex_like(window, fill_value=0.0)
    # The bare terrain's radar position of each cell: the geocoding of a GRD product.
    cells = cell_geometry(terrain, geometry, own_surface=False)
    line = cells["line"] - float(window["line"].values[0])
    sample = cells["sample"] - float(window["sample"].values[0])
    sin_inc = np.sin(cells["incidence"].astype(np.float64))
    rng = np.random.default_rng([seed, 1])
    fine_looks = looks / factor**2
    # The noise floor in beta0 (NESZ is a sigma0): over a city the incidence hardly varies.
    noise = 10 ** (nesz_db / 10) / float(np.mean(sin_inc))
    s1 = np.empty((len(months), 2, cover.shape[0] // factor, cover.shape[1] // factor), dtype=np.float32)
    for t, month in enumerate(months):
        say(f"Sentinel-1: month {month}")
        moisture = 0.7 + 0.6 * _season(month)  # leafier, wetter canopy in summer
        for b, pol in enumerate(("VV", "VH")):
            weights = {"urban": 1.0, "double_bounce": 1.0, "vegetation": moisture}
            if pol == "VH":
                weights = {name: weight * VH_RATIO[name] for name, weight in weights.items()}
            beta0 = sum(weights[name] * image.values.astype(np.float64) for name, image in images.items())
            beta0 = (beta0 + noise) * rng.gamma(fine_looks, 1.0 / fine_looks, size=beta0.shape)
            # Bilinear sampling of the radar image, as terrain correction does by default.
            sigma0 = ndimage.map_coordinates(beta0, [line, sample], order=1, mode="nearest") * sin_inc
            fine = xr.DataArray(sigma0.astype(np.float32), dims=("y", "x"), name=pol,
                                coords={"y": layout["y"], "x": layout["x"]}, attrs={"units": "1"})
            s1[t, b] = to_db(multilook(fine, factor, factor)).values
    coarse_y = layout["y"].values[: (cover.shape[0] // factor) * factor].reshape(-1, factor).mean(axis=1)
    coarse_x = layout["x"].values[: (cover.shape[1] // factor) * factor].reshape(-1, factor).mean(axis=1)

    say("Sentinel-2: the months")
    s2, scl = _optical(layout, months, latitude_deg, cloud_fraction, seed)
    is_building = (building > 0).astype(np.float64)
    coverage = _aggregate(is_building, factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_height = _aggregate(building, factor) / coverage
    height = np.where(coverage >= 0.5, mean_height, 0.0).astype(np.float32)
    classes = np.stack([_aggregate((cover == code).astype(np.float64), factor) for code in LAND_COVER.values()])
    majority = np.asarray(list(LAND_COVER.values()), dtype=np.uint8)[classes.argmax(axis=0)]
    times = np.array([np.datetime64(f"{year}-{m:02d}-15", "ns") for m in months])
    coords = {"time": times, "y": coarse_y, "x": coarse_x}
    city = xr.Dataset(
        {
            "s1": xr.DataArray(s1, dims=("time", "polarisation", "y", "x"),
                               coords={**coords, "polarisation": ["VV", "VH"]},
                               attrs={"units": "dB", "long_name": "sigma0 (dB)"}),
            "s2": xr.DataArray(s2, dims=("time", "band", "y", "x"), coords={**coords, "band": list(S2_BANDS)},
                               attrs={"units": "1", "long_name": "surface reflectance (L2A-like)"}),
            "scl": xr.DataArray(scl, dims=("time", "y", "x"), coords=coords,
                                attrs={"long_name": "scene classification (SCL codes)"}),
            "height": xr.DataArray(height, dims=("y", "x"), coords={"y": coarse_y, "x": coarse_x},
                                   attrs={"units": "m", "long_name": "building height, 0: no building"}),
            "land_cover": xr.DataArray(majority, dims=("y", "x"), coords={"y": coarse_y, "x": coarse_x},
                                       attrs=dict(layout["land_cover"].attrs)),
        },
        attrs={
            "seed": int(seed), "layout_seed": int(layout.attrs["seed"]), "pass_direction": pass_direction,
            "heading_deg": float(geometry.heading()), "look_side": geometry.look_side,
            "looks": float(looks), "nesz_db": float(nesz_db), "double_bounce": float(double_bounce),
            "latitude_deg": float(latitude_deg), "cloud_fraction": float(cloud_fraction),
            "sarheight_version": __version__,
        },
    )
    return city.rio.write_crs(layout.rio.crs)


def wall_foot(surface: np.ndarray, building: np.ndarray, away: tuple[float, float], *,
              min_wall_m: float = 3.0) -> np.ndarray:
    """Facing cosine (0..1) of a wall whose foot is each ground cell: the ground cells
    (no building) whose neighbour one cell away from the sensor along the ground-range
    direction ``away`` = (d_row, d_col) stands at least ``min_wall_m`` higher. The
    cosine is that between the wall's normal (the height gradient) and the direction to
    the sensor; 0 elsewhere."""
    d_row, d_col = away
    ahead = _shift(surface, d_row, d_col, order=1)
    step = ahead - surface
    grad_row, grad_col = gradient(_shift(surface, 0.5 * d_row, 0.5 * d_col, order=1))
    norm = np.hypot(grad_row, grad_col)
    with np.errstate(invalid="ignore", divide="ignore"):
        facing = np.where(norm > 0, (grad_row * d_row + grad_col * d_col) / norm, 0.0)
    return np.where((building <= 0) & (step >= min_wall_m), np.clip(facing, 0.0, 1.0), 0.0)


def _optical(layout: xr.Dataset, months: tuple[int, ...], latitude_deg: float, cloud_fraction: float,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    factor = int(layout.attrs["fine_factor"])
    step = float(layout.attrs["cell_size_m"])
    cover = layout["land_cover"].values
    surface = layout["terrain_height"].values.astype(np.float64) + layout["building_height"].values
    rng = np.random.default_rng([seed, 2])
    spectra = {name: np.asarray(values, dtype=np.float64)[:, None, None] for name, values in SPECTRA.items()}
    rows, cols = cover.shape[0] // factor, cover.shape[1] // factor
    s2 = np.empty((len(months), len(S2_BANDS), rows, cols), dtype=np.float32)
    scl = np.empty((len(months), rows, cols), dtype=np.uint8)
    veg = cover == LAND_COVER["vegetation"]
    for t, month in enumerate(months):
        vigour = _season(month)
        green = vigour * spectra["vegetation"] + (1 - vigour) * spectra["dormant"]
        rho = np.zeros((len(S2_BANDS), *cover.shape))
        rho += np.where(cover == LAND_COVER["building"], spectra["roof"], 0.0)
        rho += np.where(cover == LAND_COVER["street"], spectra["street"], 0.0)
        rho += np.where(cover == LAND_COVER["bare"], spectra["bare"], 0.0)
        rho += np.where(veg, green, 0.0)
        azimuth, elevation = sun_position(month, latitude_deg)
        shadow = sun_shadow(surface, step, azimuth, elevation)
        rho = np.where(shadow, SHADOW_FRACTION * rho, rho)
        coarse = _aggregate(rho, factor) + rng.normal(0.0, 0.003, size=(len(S2_BANDS), rows, cols))
        codes = np.where(_aggregate(veg.astype(np.float64), factor) >= 0.5, SCL["vegetation"], SCL["not_vegetated"])
        codes = np.where(_aggregate(shadow.astype(np.float64), factor) >= 0.5, SCL["cast_shadow"], codes)
        if cloud_fraction > 0:
            field = smooth_random_field((rows, cols), seed=rng, correlation_cells=max(rows, cols) / 8,
                                        boundary="reflect")
            cloud = field > np.quantile(field, 1 - cloud_fraction)
            coarse = np.where(cloud, 0.55 + rng.normal(0.0, 0.02, size=coarse.shape), coarse)
            codes = np.where(cloud, SCL["cloud"], codes)
        s2[t] = coarse
        scl[t] = codes
    return s2, scl.astype(np.uint8)


def write_city(city: xr.Dataset, folder: str | os.PathLike[str]) -> list[Path]:
    """Write a city (:func:`simulate_city`) as the folder the building data module reads.

    Files, all on the product grid with the city's CRS, each written atomically:

    - ``s1_YYYYMM.tif``: 2 float32 bands, sigma0 (dB), descriptions "VV", "VH"; nodata NaN
      (:func:`sarheight.preprocess.align.write_s1_image`);
    - ``s2_YYYYMM.tif``: 10 uint16 bands, L2A-like digital numbers (DN = 10000 reflectance
      + 1000; 0 no data), descriptions B2 ... B12, tags ``ADD_OFFSET`` (-1000),
      ``QUANTIFICATION_VALUE`` (10000) and ``PROCESSING_BASELINE``
      (:func:`sarheight.preprocess.align.write_s2_image`);
    - ``scl_YYYYMM.tif``: the scene classification (uint8, SCL codes);
    - ``height.tif``: float32 building height (m), 0 where no building; nodata NaN
      (:func:`sarheight.preprocess.align.write_height`).

    Returns the paths written, in that order per month, ``height.tif`` last.
    """
    missing = {"s1", "s2", "scl", "height"} - set(city.data_vars)
    if missing:
        raise InvalidInputError(f"the city lacks {sorted(missing)}: give the Dataset of simulate_city(...)")
    if city.rio.crs is None:
        raise InvalidInputError("the city has no CRS: write one with city.rio.write_crs(...) first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crs = city.rio.crs
    transform = city["height"].rio.transform(recalc=True)
    tags = {"PROCESSING_BASELINE": PROCESSING_BASELINE, "PRODUCT_LEVEL": "L2A-like (synthetic)"}
    paths = []
    for t, time in enumerate(city["time"].values):
        stamp = str(np.datetime_as_string(time, unit="M")).replace("-", "")
        month = {name: city[name].isel(time=t, drop=True).rio.write_crs(crs) for name in ("s1", "s2")}
        paths.append(write_s1_image(month["s1"], folder / f"s1_{stamp}.tif"))
        paths.append(write_s2_image(month["s2"], folder / f"s2_{stamp}.tif", tags=tags))
        paths.append(write_bands(city["scl"].isel(time=t).values[None].astype(np.uint8), folder / f"scl_{stamp}.tif",
                                 crs=crs, transform=transform, descriptions=["SCL"]))
    paths.append(write_height(city["height"].rio.write_crs(crs), folder / "height.tif"))
    return paths


def write_cities(out: str | os.PathLike[str], *, count: int = 4, size: int = 128, cloud_fraction: float = 0.1,
                 first_seed: int = 0, progress: bool = True) -> list[Path]:
    """Simulate and write ``count`` cities of ``size`` x ``size`` product cells into
    ``out/city_000``, ``out/city_001``... (:func:`city_layout`, :func:`simulate_city`,
    :func:`write_city`), each of its own seed (``first_seed + index``), the passes
    alternating between ascending and descending. A city whose ``height.tif`` exists is
    kept (an interrupted run resumes). Returns the city folders."""
    from .threads import bar as progress_bar

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInputError(f"count must be a positive integer, got {count!r}")
    folders = []
    with deferred_warnings(), progress_bar(total=count, desc="simulating cities", unit="city",
                                           enabled=progress) as bar:
        for index in range(count):
            seed = first_seed + index
            folder = Path(out) / f"city_{seed:03d}"
            if not (folder / "height.tif").is_file():
                def step(name: str, city: str = folder.name) -> None:
                    bar.set_postfix_str(f"{city}: {name}")  # the bar moves within a city too

                step("the layout")
                city = simulate_city(city_layout((size, size), seed=seed),
                                     pass_direction="ascending" if seed % 2 == 0 else "descending",
                                     cloud_fraction=cloud_fraction, seed=seed, on_step=step)
                step("writing")
                write_city(city, folder)
            folders.append(folder)
            bar.update(1)
    return folders
