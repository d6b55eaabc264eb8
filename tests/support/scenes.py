"""Scene builders and names of the real reference data, shared by the tests.

No test lives here; every test module imports what it shares from this one (never from
another test module).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from sarheight.dem import open_dem
from sarheight.geometry import RadarGeometry
from sarheight.masks import MASK_ATTRS
from sarheight.raster import metres_per_degree
from sarheight.simulate import texture
from sarheight.terrain.files import write_scene

#: Where the synthetic scenes lie (degrees), and their cell size: about 30 m in latitude.
LON, LAT = 10.0, 45.0
CELL_DEG = 30.0 / 111_320.0

#: The Sentinel-1 products of ../shared/data/s1 that the reconstruction tests use.
SAFES = {
    "ascending": "S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681.SAFE",
    "descending": "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.SAFE",
    "grd": "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE",
}


def required(path: Path) -> Path:
    """``path``, or skip the test where the file is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def cell_metres(rows: int, top_lat: float = LAT) -> tuple[float, float]:
    """(dx, dy): the metres of a cell of :data:`CELL_DEG` of a grid of ``rows`` rows whose
    top edge is at ``top_lat``, as sarheight measures geographic grids (WGS84, at the
    grid's middle latitude)."""
    north, east = metres_per_degree(top_lat - 0.5 * rows * CELL_DEG)
    return CELL_DEG * east, CELL_DEG * north


def plane_dem(rows: int, cols: int, slope_east_deg: float = 0.0, slope_north_deg: float = 0.0,
              base: float = 200.0) -> xr.DataArray:
    """A planar DEM on a geographic grid of ~30 m cells (heights ellipsoidal)."""
    dx, dy = cell_metres(rows)
    x = np.arange(cols) * dx
    y = -np.arange(rows) * dy
    heights = (base + np.tan(math.radians(slope_east_deg)) * x[None, :]
               + np.tan(math.radians(slope_north_deg)) * y[:, None])
    transform = Affine(CELL_DEG, 0, LON, 0, -CELL_DEG, LAT)
    return open_dem((heights.astype(np.float32), transform, "EPSG:4326"), vertical_datum="ellipsoid")


def rough_dem(seed: int, rows: int = 36, cols: int = 36, relief: float = 600.0) -> xr.DataArray:
    """Random rough terrain (a log-normal texture field) of ``relief`` metres on the grid
    of :func:`plane_dem`."""
    field = np.log(texture((rows, cols), seed=seed, correlation_cells=4.0, contrast_db=10.0))
    field = (field - field.min()) / (field.max() - field.min())
    dem = plane_dem(rows, cols)
    return dem.copy(data=(200.0 + relief * field).astype(np.float32))


def synthetic_geometry(dem: xr.DataArray, incidence: float = 35.0, heading: float = 0.0,
                       look_side: str = "right", pixel_spacing: float = 15.0) -> RadarGeometry:
    """A straight-orbit geometry over ``dem``: incidence ``incidence`` +- 2 degrees,
    ``pixel_spacing`` m pixels (line and slant-range sample), 5 km along track."""
    west, south, east, north = dem.rio.bounds()
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east), center_lat=0.5 * (south + north), heading_deg=heading,
        incidence_near_deg=incidence - 2.0, incidence_far_deg=incidence + 2.0,
        line_spacing=pixel_spacing, sample_spacing=pixel_spacing, azimuth_extent=5e3, look_side=look_side,
    )


def assert_closed_recovery(dem: xr.DataArray, geometry: RadarGeometry, chunks: tuple = (None,),
                           tolerance: float = 1e-5, lit_border: float = 0.9) -> None:
    """Reconstruct a closed simulation of ``dem`` (the empirical sigma0 law, no speckle,
    no noise: nothing lies beyond the DEM) in memory (``None``) and with each of
    ``chunks``, and require every lit cell back within ``tolerance`` relative: the 3 x 3
    cells at each corner (all lit), the outer ring (``lit_border`` of it lit) and the
    interior."""
    from sarheight.ground import empirical_sigma0
    from sarheight.reconstruction import reconstruct
    from sarheight.simulate import simulate_sar

    observation, truth = simulate_sar(dem, geometry, backscatter=empirical_sigma0, looks=None, nesz_db=None,
                                      return_truth=True)
    border = np.ones(dem.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    corners = np.zeros(dem.shape, dtype=bool)
    for rows in (slice(0, 3), slice(-3, None)):
        for cols in (slice(0, 3), slice(-3, None)):
            corners[rows, cols] = True
    for size in chunks:
        result = reconstruct(dem, observation, geometry, contribution=empirical_sigma0, chunks=size, progress=False)
        backscatter = result["backscatter"].values.astype(np.float64)
        lit = np.isfinite(backscatter)
        error = np.abs(backscatter / truth.values - 1)
        print(f"chunks={size}: largest relative error at the corners {np.nanmax(error[corners]):.1e}, on the "
              f"border {np.nanmax(error[border]):.1e}, inside {np.nanmax(error[~border]):.1e}")
        assert lit[corners].all() and lit[border].mean() > lit_border, size
        for part, where in (("corners", corners), ("border", border), ("interior", ~border)):
            assert np.nanmax(error[where]) < tolerance, (size, part, np.unravel_index(
                np.nanargmax(np.where(where, error, np.nan)), error.shape))


def write_tiny_scene(path: str | Path, *, rows: int = 64, cols: int = 64, seed: int = 0, name: str | None = None,
                     cell: float = 30.0, relief: float = 400.0, incidence: float = 35.0, priors: int = 12,
                     truth: bool = True, other_pass: bool = False, drop: tuple[str, ...] = (),
                     outside_corner: int = 6, origin: tuple[float, float] = (500_000.0, 5_000_000.0),
                     crs: str = "EPSG:32632", dem_name: str | None = None) -> Path:
    """Write a terrain scene file with :func:`sarheight.terrain.files.write_scene` from analytic
    terrain, without physics.

    The height is a sum of sinusoids of random wavelengths (8-40 cells), directions and
    phases; the SAR images are an empirical sigma0 law of the local incidence (radar looking
    east for the ascending pass, west for the other) with 4-look speckle; layover and shadow
    come from slope thresholds along the range direction (active) and two cells beside
    them (passive); a triangle of ``outside_corner`` cells at the top left lies outside the
    image (255, SAR NaN); ``priors`` cells sampled from the truth give the prior height,
    mask and distance (Euclidean, metres) and the priors-only interpolation (linear,
    nearest outside the hull). ``drop`` leaves variables out; ``truth=False`` leaves out
    ``height`` (an observed scene without a reference). ``dem_name`` (default
    ``sinusoids-SEED``) names the area: scenes sharing it go to one split.

    Returns
    -------
    The path written.
    """
    from scipy.interpolate import griddata
    from scipy.ndimage import binary_dilation, distance_transform_edt, gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    height = np.full((rows, cols), 600.0)
    for amplitude in relief * rng.dirichlet(np.ones(5)):
        wavelength = rng.uniform(8.0, 40.0)
        direction = rng.uniform(0.0, np.pi)
        phase = rng.uniform(0.0, 2 * np.pi)
        height += 0.5 * amplitude * np.sin(2 * np.pi * (xx * np.cos(direction) + yy * np.sin(direction)) / wavelength
                                           + phase)
    dz_dy, dz_dx = np.gradient(height, cell)
    dz_dy = -dz_dy  # rows run south
    outside = (yy + xx) < outside_corner

    def image(look_east: bool, speckle_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Local incidence (deg), layover and shadow codes, and sigma0 (dB) for one pass."""
        theta = np.radians(incidence)
        # Slope rising away from the radar along the range direction (the radar sits west
        # of the scene when it looks east).
        range_slope = dz_dx if look_east else -dz_dx
        cos_local = (np.cos(theta) - np.sin(theta) * range_slope) / np.sqrt(1 + dz_dx**2 + dz_dy**2)
        local = np.degrees(np.arccos(np.clip(cos_local, -1.0, 1.0)))
        steepness = np.degrees(np.arctan(range_slope))
        active_layover = steepness < -incidence
        active_shadow = steepness > 90.0 - incidence - 25.0
        step = 1 if look_east else -1
        layover = np.where(active_layover, 1, np.where(binary_dilation(active_layover, np.ones((1, 5), bool)), 2, 0))
        behind = binary_dilation(active_shadow, np.ones((1, 3), bool), origin=(0, -step))
        shadow = np.where(active_shadow, 1, np.where(behind, 2, 0))
        layover = np.where(outside, 255, layover).astype(np.uint8)
        shadow = np.where(outside, 255, shadow).astype(np.uint8)
        speckle = np.random.default_rng(speckle_seed).gamma(4.0, 1 / 4.0, (rows, cols))
        sigma0 = 0.3 * np.clip(np.cos(np.radians(local)), 1e-3, None) ** 2 * speckle
        db = 10 * np.log10(sigma0)
        db = np.where((shadow != 0) | outside, np.nan, db)
        return local.astype(np.float32), layover, shadow, db.astype(np.float32)

    local, layover, shadow, reconstructed = image(True, seed + 1)
    # The geocoded image sums the layover energy (brighter by about 3 dB there); the
    # reconstruction gives each cell its own share back.
    geocoded = np.where(layover != 0, reconstructed + 3.0, reconstructed).astype(np.float32)
    cells = np.flatnonzero(~outside.ravel())
    chosen = rng.choice(cells, size=priors, replace=False)
    prior_mask = np.zeros(rows * cols, dtype=np.uint8)
    prior_mask[chosen] = 1
    prior_mask = prior_mask.reshape(rows, cols)
    prior_height = np.where(prior_mask == 1, height, np.nan).astype(np.float32)
    prior_distance = (distance_transform_edt(prior_mask == 0) * cell).astype(np.float32)
    points = np.column_stack(np.nonzero(prior_mask))
    values = height[prior_mask == 1]
    interpolated = griddata(points, values, (yy, xx), method="linear")
    nearest = griddata(points, values, (yy, xx), method="nearest")
    interpolated = np.where(np.isfinite(interpolated), interpolated, nearest).astype(np.float32)
    variables = {
        "sar_reconstructed": (reconstructed, "dB"),
        "sar_geocoded": (geocoded, "dB"),
        "local_incidence_angle": (np.where(outside, np.nan, local).astype(np.float32), "deg"),
        "layover": (layover, None),
        "shadow": (shadow, None),
        "prior_height": (prior_height, "m"),
        "prior_mask": (prior_mask, None),
        "prior_distance": (prior_distance, "m"),
        "prior_interpolated": (interpolated, "m"),
        "coarse_height": (gaussian_filter(height, 3.0).astype(np.float32), "m"),
    }
    coarse = variables["coarse_height"][0]
    residual = griddata(points, values - coarse[prior_mask == 1], (yy, xx), method="nearest")
    variables["coarse_corrected"] = ((coarse + residual).astype(np.float32), "m")
    if truth:
        variables["height"] = (height.astype(np.float32), "m")
    if other_pass:
        _, other_layover, _, other = image(False, seed + 2)
        variables["other_sar_reconstructed"] = (other, "dB")
        variables["other_sar_geocoded"] = (np.where(other_layover != 0, other + 3.0, other).astype(np.float32), "dB")
    x = origin[0] + (np.arange(cols) + 0.5) * cell
    y = origin[1] - (np.arange(rows) + 0.5) * cell
    ds = xr.Dataset(
        {key: (("y", "x"), values, MASK_ATTRS if key in ("layover", "shadow") else {"units": units} if units else {})
         for key, (values, units) in variables.items() if key not in drop},
        coords={"y": y, "x": x},
        attrs={"scene_name": name or Path(path).stem, "dem_name": dem_name or f"sinusoids-{seed}",
               "pass_direction": "ascending", "kind": "simulated" if truth else "observed",
               "prior_pattern": "random", "coarse_factor": 3},
    ).rio.write_crs(crs)
    return write_scene(ds, path)


def simulate_tiny_scenes(folder: str | Path, names: tuple[str, ...] = ("hills-a", "hills-b", "hills-c"), *,
                         size: int = 48, relief: float = 400.0, prior_kinds: tuple[str, ...] = (),
                         **axes) -> list[Path]:
    """Refinement scenes simulated with the physics (:func:`sarheight.terrain.scene_sets.simulate_scenes`:
    both passes, each with the other, coarse DEM 3x, 6 random priors) from a rough DEM of
    ``size`` cells per name (seeded by its position), into ``folder``; ``prior_kinds`` the
    instruments of the priors instead (6 each); ``axes`` are passed on (``coarse_factors``,
    ``looks``, ``land_cover_db``...: :class:`sarheight.terrain.scene_sets.SceneAxes`), the
    fields of :class:`sarheight.terrain.scene_options.SceneProducts` as what the scenes make."""
    from sarheight.priors import PriorSpec
    from sarheight.terrain.scene_options import SceneProducts
    from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes

    dems = []
    for seed, name in enumerate(names):
        dem = rough_dem(seed=20 + seed, rows=size, cols=size, relief=relief)
        dem.attrs["dem_name"] = name
        dems.append(dem)
    priors = tuple(PriorSpec(count=6, kind=kind) for kind in prior_kinds) or (PriorSpec(count=6),)
    # What the scenes make from their observations (inversion=True, register=False...) is one group.
    made = {name: axes.pop(name) for name in [field.name for field in dataclasses.fields(SceneProducts)]
            if name in axes}
    return simulate_scenes(dems, folder, axes=SceneAxes(priors=priors, **axes), products=SceneProducts(**made),
                           progress=False)


def write_tiny_scenes(folder: str | Path, count: int = 4, **options) -> list[Path]:
    """``count`` scenes ``s0.nc``, ``s1.nc``... of :func:`write_tiny_scene` (seeds 0, 1...)
    in ``folder`` (made if missing), each ``options`` passed on; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_tiny_scene(folder / f"s{k}.nc", seed=k, **options) for k in range(count)]


def fit_tiny_checkpoint(scenes: str | Path, path: str | Path, *, seed: int = 0, model: str = "unet",
                        channels: tuple[str, ...] | None = None, steps: int = 2, tile: int = 32,
                        data_options: dict | None = None, **model_options) -> Path:
    """Train a small model (``base_channels`` 4, ``depth`` 2 unless given) for ``steps``
    steps on the scenes of ``scenes`` through the Python API (``data_options`` passed to
    the data module: ``reference``, ``scale``...), and save its checkpoint at ``path``;
    returns the path."""
    import lightning as L

    from sarheight.data import DEFAULT_CHANNELS, TerrainDataModule
    from sarheight.training import AtomicCheckpointIO, PixelRegression

    L.seed_everything(seed, verbose=False)
    data = TerrainDataModule(scenes=str(scenes), channels=list(channels or DEFAULT_CHANNELS), tile=tile,
                             tiles_per_epoch=4 * steps, batch_size=4, **(data_options or {}))
    module = PixelRegression(model=model, model_options={"base_channels": 4, "depth": 2, **model_options},
                             in_channels=data.in_channels, scheduler="none")
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()], default_root_dir=Path(path).parent)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(path)
    return Path(path)


#: The tiny cities' grid: UTM zone 33N, 10 m cells.
CITY_CRS = "EPSG:32633"
CITY_NODATA = -9999.0


def write_tiny_city(folder: str | Path, *, rows: int = 40, cols: int = 48, months: tuple[str, ...] = ("202301",
                    "202302", "202303"), seed: int = 0, nodata_cells: int = 5) -> Path:
    """A city folder of random but consistent rasters: ``height.tif`` (blocks of buildings
    0-40 m, ``nodata_cells`` cells of nodata in the first row), and per month
    ``s1_YYYYMM.tif`` (VV, VH in dB, brighter over taller buildings) and ``s2_YYYYMM.tif``
    (ten bands of uint16 DNs with processing baseline 05.10, i.e. offset -1000); returns
    the folder."""
    import rasterio
    from rasterio.transform import from_origin

    from sarheight.preprocess.sentinel2 import S2_BANDS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    transform = from_origin(400_000.0 + 1000 * seed, 5_000_000.0, 10.0, 10.0)
    profile = {"driver": "GTiff", "height": rows, "width": cols, "crs": CITY_CRS, "transform": transform}
    blocks = rng.choice([0.0, 0.0, 6.0, 15.0, 35.0], size=(rows // 8 + 1, cols // 8 + 1))
    height = np.kron(blocks, np.ones((8, 8)))[:rows, :cols].astype(np.float32)
    height[0, :nodata_cells] = CITY_NODATA
    with rasterio.open(folder / "height.tif", "w", count=1, dtype="float32", nodata=CITY_NODATA, **profile) as dst:
        dst.write(height, 1)
    built = np.where(height == CITY_NODATA, 0, height)
    for month in months:
        s1 = np.stack([-12 + 0.2 * built, -19 + 0.15 * built]) + rng.normal(0, 1, (2, rows, cols))
        with rasterio.open(folder / f"s1_{month}.tif", "w", count=2, dtype="float32", **profile) as dst:
            dst.write(s1.astype(np.float32))
            dst.descriptions = ("VV", "VH")
        reflect = 0.05 + 0.01 * np.arange(10)[:, None, None] + 0.002 * built + rng.uniform(0, 0.02, (10, rows, cols))
        with rasterio.open(folder / f"s2_{month}.tif", "w", count=10, dtype="uint16", **profile) as dst:
            dst.write(np.round(reflect * 10000 + 1000).astype(np.uint16))
            dst.descriptions = S2_BANDS
            dst.update_tags(PROCESSING_BASELINE="05.10")
    return folder


def write_tiny_cities(root: str | Path, count: int = 3, **options) -> list[Path]:
    """``count`` city folders ``city0``, ``city1``... of :func:`write_tiny_city` (seeds 0,
    1...) in ``root``; returns their paths."""
    return [write_tiny_city(Path(root) / f"city{k}", seed=k, **options) for k in range(count)]


#: The rows of the tiny So2Sat LCZ42 files, by file name.
SO2SAT_ROWS = {"training.h5": 60, "validation.h5": 20, "testing.h5": 20}


def write_tiny_so2sat(root: str | Path, rows: dict[str, int] | None = None, *, seed: int = 0) -> Path:
    """A So2Sat LCZ42 root folder of tiny files (:func:`sarheight.data.so2sat.write_sample`),
    N by file name from ``rows`` (default :data:`SO2SAT_ROWS`). Returns the folder."""
    from sarheight.data.so2sat import write_sample

    rows = rows or SO2SAT_ROWS
    return write_sample(root, {name.removesuffix(".h5"): count for name, count in rows.items()}, seed=seed)


def nearer_bound(n_lines: int, group: int) -> np.ndarray:
    """Per window line, the nearer of the sweep's bounding lines around it (every group-th
    line from the first, and the last; the earlier at equal distance): whose mixing a
    sweep that cuts only the bounding lines gives it."""
    bounds = np.array(sorted({*range(0, n_lines, group), n_lines - 1}))
    lines = np.arange(n_lines)
    after = np.searchsorted(bounds, lines)  # the first bound at or after the line
    before = bounds[np.maximum(after - 1, 0)]
    after = bounds[np.minimum(after, bounds.size - 1)]
    return np.where(lines - before <= after - lines, before, after)


#: The sweep's test cases (seed, heading, look side, window, line spacing): rough terrain
#: under both look sides, rows across track, lines cut short, voids, several cells of a
#: column between two lines and many lines per cell (:func:`masks_geometry`).
SWEEP_CASES = [
    (11, 10.0, "right", "full", 15.0),
    (12, 200.0, "left", "full", 15.0),
    (13, 100.0, "right", "full", 15.0),    # rows across track: the DEM is transposed
    (14, 350.0, "right", "middle", 15.0),  # lines cut short: cells with one bracketing profile or none
    (15, 30.0, "left", "holes", 15.0),     # void cells: columns broken between two lines
    (16, 40.0, "right", "full", 45.0),     # several cells of a column between two lines
    (17, 190.0, "left", "full", 3.0),      # many lines per cell
]


def masks_geometry(dem: xr.DataArray, incidence: float, heading: float, look_side: str,
                   line_spacing: float = 15.0) -> RadarGeometry:
    """A synthetic geometry over ``dem`` for the masks' tests: incidence +-2 degrees,
    15 m samples, ``line_spacing`` m lines, 3 km along track."""
    west, south, east, north = dem.rio.bounds()
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east), center_lat=0.5 * (south + north), heading_deg=heading,
        incidence_near_deg=incidence - 2.0, incidence_far_deg=incidence + 2.0,
        line_spacing=line_spacing, sample_spacing=15.0, look_side=look_side, azimuth_extent=3e3,
    )


def sweep_dem(seed: int, window: str) -> xr.DataArray:
    """The rough DEM of a case of :data:`SWEEP_CASES` (24 x 24 cells, 650 m of relief),
    with voids where its window is ``"holes"``."""
    dem = rough_dem(seed, 24, 24, 650.0)
    if window == "holes":
        heights = dem.values.copy()
        heights[5:8, 9:11] = np.nan
        heights[15, 3:6] = np.nan
        dem = dem.copy(data=heights)
    return dem
