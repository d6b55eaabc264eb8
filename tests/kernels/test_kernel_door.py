"""The kernel door (:mod:`sarheight.compute`): the device a caller names, checked before any
work; and each pass behind the door the same on every backend: torch (on the CPU here, the
code a GPU runs) and the numpy twin held to the numba kernels, on inputs with large offsets
(UTM grids, heights on a geoid, times a day from the epoch) where a silent float32 shows."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from sarheight import sample_data
from sarheight.compute import (
    BACKENDS,
    Compute,
    OrbitPolynomial,
    cell_geometry,
    compute_for,
    ecef,
    geocode,
    intensity_flags,
    interpolate_rows,
    lee,
    orbit_states,
    refined_lee,
    samples_of_slant_ranges,
    slant_ranges_of_samples,
    weighted_mean,
)
from sarheight.dem import geodetic_coordinates
from sarheight.errors import GeometryError, InvalidInputError
from sarheight.geometry import ImageGrid, Orbit, RadarGeometry, backward_geocode

torch = pytest.importorskip("torch")

#: The devices the torch passes are held to the numba kernels on: the CPU (in CI), and a
#: CUDA GPU where torch sees one (benchmarks/gpu_check.sh runs this file there).
TORCH_DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
#: Every backend other than the numba kernels, as (backend, device).
OTHER_BACKENDS = [*(("torch", device) for device in TORCH_DEVICES), ("numpy", "cpu")]

#: What parity means for the geometry: the slant range and the range axis within a
#: millimetre, the line's time within 0.1 microseconds (under a millimetre along the
#: track), the zero-Doppler time within a nanosecond (its rounding), the incidence within
#: 1e-5 degrees (a float32 of 45 degrees steps by 4e-6); and the same cells solved.
SLANT_RANGE_M = 1e-3
RANGE_AXIS_M = 1e-3
LINE_TIME_S = 1e-7
AZIMUTH_NS = 1
INCIDENCE_DEG = 1e-5


def _curved_ground_range_geometry(dem, look_side: str = "right") -> RadarGeometry:
    """An acquisition over ``dem`` with what the synthetic one lacks: a curved orbit
    (degree 5, fitted to state vectors on an arc), its epoch a day before the image (times
    of 86,400 s, which float32 holds to 8 ms), a ground-range grid of three range
    polynomials (the nearest in time serves) and a bistatic delay."""
    lon, lat = float(dem.x.mean()), float(dem.y.mean())
    if dem.rio.crs is not None and not dem.rio.crs.is_geographic:
        longitudes, latitudes = geodetic_coordinates(dem)
        lon, lat = float(np.mean(longitudes)), float(np.mean(latitudes))
    base = RadarGeometry.synthetic(center_lon=lon, center_lat=lat, heading_deg=192.0, incidence_near_deg=30.0,
                                   incidence_far_deg=45.0, line_spacing=14.0, sample_spacing=2.33,
                                   look_side=look_side)
    position, velocity, _ = base.orbit.state(np.array([0.0]))
    radius, speed = np.linalg.norm(position[0]), np.linalg.norm(velocity[0])
    along = velocity[0] / speed
    out = position[0] / radius
    # An arc of the circle through the straight orbit's centre, tangent to it.
    seconds = np.linspace(-60.0, 60.0, 13)
    angle = speed / radius * seconds
    positions = radius * (np.cos(angle)[:, None] * out + np.sin(angle)[:, None] * along)
    velocities = speed * (-np.sin(angle)[:, None] * out + np.cos(angle)[:, None] * along)
    epoch = base.reference_time - np.timedelta64(1, "D")
    times = base.reference_time + (seconds * 1e9).astype("timedelta64[ns]")
    orbit = Orbit.from_state_vectors(times, positions, velocities, degree=5, reference_time=epoch)
    grid = base.grid
    near = float(grid.range_sr0[0])
    entry_times = np.array([grid.first_line_time, base.reference_time, grid.last_line_time], dtype="datetime64[ns]")
    # Ground range a little faster than slant range, bent, each entry a little other.
    coeffs = [[0.0, 1.0 / np.sin(np.radians(37.0)) * (1 + 0.001 * k), -2e-7, 1e-12] for k in range(3)]
    spacing = 10.0
    width = grid.samples * grid.range_spacing / np.sin(np.radians(37.0)) / spacing
    image = ImageGrid.ground_range_grid(grid.first_line_time, grid.line_interval, grid.lines, int(width) + 1,
                                        spacing, entry_times, [near] * 3, coeffs,
                                        bistatic_reference_range=near + 20e3)
    return RadarGeometry(orbit, image, look_side)


def _cells(dem):
    lon, lat = geodetic_coordinates(dem, radians=True)
    return lon, lat, np.ascontiguousarray(dem.values)


def _assert_same(expected, actual, geometry, what):
    g = geometry.geocoding_geometry()
    for name in ("slant_range", "line", "sample", "incidence_angle"):
        left, right = getattr(expected, name), getattr(actual, name)
        assert np.array_equal(np.isnan(left), np.isnan(right)), f"{what}: {name} solved at other cells"
    solved = expected.azimuth_time_ns != np.iinfo(np.int64).min
    assert np.array_equal(solved, actual.azimuth_time_ns != np.iinfo(np.int64).min), what
    assert solved.mean() > 0.9, f"{what}: too few cells solved to compare ({solved.mean():.0%})"
    assert np.abs(expected.azimuth_time_ns[solved] - actual.azimuth_time_ns[solved]).max() <= AZIMUTH_NS, what
    assert np.nanmax(np.abs(expected.slant_range - actual.slant_range)) <= SLANT_RANGE_M, what
    inside = np.isfinite(expected.line)
    assert inside.mean() > 0.5, f"{what}: too few cells inside the image to compare ({inside.mean():.0%})"
    assert np.nanmax(np.abs(expected.line - actual.line)) * g.line_interval <= LINE_TIME_S, what
    assert np.nanmax(np.abs(expected.sample - actual.sample)) * g.range_spacing <= RANGE_AXIS_M, what
    assert np.nanmax(np.abs(expected.incidence_angle - actual.incidence_angle)) <= INCIDENCE_DEG, what
    for name in ("slant_range", "line", "sample"):
        assert getattr(actual, name).dtype == np.float64, f"{what}: {name} is not float64"


@pytest.fixture(scope="module")
def grids():
    """A UTM grid (Big Tujunga, SRTM) and a geographic one on the EGM96 geoid (Rome), each
    with the curved ground-range acquisition over it."""
    out = {}
    for name, dem in (("utm", sample_data.bigtujunga_dem()), ("geoid", sample_data.rome_dem())):
        out[name] = (dem, _curved_ground_range_geometry(dem))
    return out


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
@pytest.mark.parametrize("grid", ["utm", "geoid"])
@pytest.mark.parametrize("clip", [True, False])
def test_geocoding_is_the_same_on_every_backend(grids, backend, device, grid, clip):
    dem, geometry = grids[grid]
    lon, lat, height = _cells(dem)
    bundle = geometry.geocoding_geometry()
    assert bundle.first_line_time > 80_000, "the epoch is not a day before the image"
    expected = geocode(lon, lat, height, bundle, clip=clip)
    actual = geocode(lon, lat, height, bundle, clip=clip, compute=compute_for(device, backend=backend))
    _assert_same(expected, actual, geometry, f"{backend} on {device}, the {grid} grid (clip {clip})")


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_geocoding_of_broadcast_axes_left_looking_with_voids(grids, device):
    """A geographic grid passes broadcast views of its axes (every backend reads them
    without making them whole); voids stay unsolved; a radar looking left."""
    dem, _ = grids["geoid"]
    geometry = _curved_ground_range_geometry(dem, look_side="left")
    lon, lat, height = _cells(dem)
    assert lon.strides[0] == 0 and lat.strides[1] == 0, "the geographic grid's axes are not broadcast"
    height = height.copy()
    height[5:9, 3:40] = np.nan
    bundle = geometry.geocoding_geometry()
    expected = geocode(lon, lat, height, bundle)
    actual = geocode(lon, lat, height, bundle, compute=compute_for(device, backend="torch"))
    assert np.isnan(actual.slant_range[5:9, 3:40]).all()
    _assert_same(expected, actual, geometry, "torch, looking left, with voids")


def test_the_torch_blocks_give_the_whole(grids, monkeypatch):
    """Blocks of rows (sized from a GPU's free memory) change nothing: a block of 7 rows."""
    from sarheight.compute import torch_backend, torch_blocks

    dem, geometry = grids["utm"]
    lon, lat, height = _cells(dem)
    bundle = geometry.geocoding_geometry()
    whole = geocode(lon, lat, height, bundle, compute=compute_for(backend="torch"))
    monkeypatch.setattr(torch_blocks, "CPU_BLOCK_CELLS", 7 * height.shape[1])
    assert torch_backend.block_rows(*height.shape, torch.device("cpu")) == 7
    blocks = geocode(lon, lat, height, bundle, compute=compute_for(backend="torch"))
    for field in dataclasses.fields(whole):
        np.testing.assert_array_equal(getattr(whole, field.name), getattr(blocks, field.name))


def test_backward_geocode_takes_the_device(grids):
    dem, geometry = grids["utm"]
    on_cpu = backward_geocode(dem, geometry)
    assert on_cpu["slant_range"].notnull().mean() > 0.5
    with pytest.raises(InvalidInputError, match="device must be"):
        backward_geocode(dem, geometry, device="gpu")


def test_the_device_is_checked_before_any_work():
    assert compute_for() == Compute("numba", "cpu") == compute_for("CPU")
    assert compute_for(backend="torch") == Compute("torch", "cpu")
    assert set(BACKENDS) == {"numba", "torch", "numpy"}
    for device, backend, message in (("gpu", None, "device must be 'cpu', 'cuda' or 'cuda:N'"),
                                     ("cuda:x", None, "device must be"), (3, None, "device must be"),
                                     ("cpu", "jax", "backend must be one of numba, torch, numpy"),
                                     ("cuda", "numba", "only the torch backend runs there")):
        with pytest.raises(InvalidInputError, match=message):
            compute_for(device, backend)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="asks for a CUDA GPU and torch sees none on this machine"):
            compute_for("cuda")


def test_geocode_refuses_arrays_of_other_shapes(grids):
    dem, geometry = grids["utm"]
    lon, lat, height = _cells(dem)
    with pytest.raises(InvalidInputError, match="one 2-D shape"):
        geocode(lon, lat[:-1], height, geometry.geocoding_geometry())


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU: the refusal is for one without")
@pytest.mark.parametrize("command", ["geocode", "reconstruct", "simulate"])
def test_the_commands_refuse_a_gpu_they_do_not_have(tmp_path, command):
    """``sarheight geocode``, ``reconstruct`` and ``simulate`` with ``--device cuda``
    without a GPU: one line, exit 2, nothing written."""
    dem = tmp_path / "dem.tif"
    sample_data.rome_dem().rio.to_raster(dem)
    out = tmp_path / "out.tif"
    given = {"geocode": [str(dem), "--geometry", "synthetic"], "simulate": [str(dem), "--geometry", "synthetic"],
             "reconstruct": ["--dem", str(dem), "--sar", str(dem), "--geometry", "synthetic"]}[command]
    run = subprocess.run([sys.executable, "-m", "sarheight", command, *given, "--vertical-datum", "ellipsoid",
                          "--device", "cuda", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "asks for a CUDA GPU" in run.stderr and not out.exists()


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("grid", ["utm", "geoid"])
def test_the_cells_geometry_is_the_same_on_torch(grids, grid, device):
    """The zero-Doppler geometry of the cells the simulation reads (unclipped line and
    sample, look vector, pixel area, incidence, look and cross-track angles): torch held to
    the numba kernel, the float32 outputs to their precision."""
    dem, geometry = grids[grid]
    lon, lat, height = _cells(dem)
    height = height.copy()
    height[2:4, 5:9] = np.nan
    bundle = geometry.geocoding_geometry()
    expected = cell_geometry(lon, lat, height, bundle)
    actual = cell_geometry(lon, lat, height, bundle, compute=compute_for(device, backend="torch"))
    np.testing.assert_array_equal(expected.valid, actual.valid)
    valid = expected.valid
    assert valid.mean() > 0.9 and not valid[2:4, 5:9].any()
    for name in ("slant_range", "line", "sample", "pixel_area", "incidence", "look_angle", "cross_track"):
        left, right = getattr(expected, name), getattr(actual, name)
        assert np.array_equal(np.isnan(left), np.isnan(right)), f"{name} defined at other cells"
    assert np.abs(expected.azimuth_time_ns[valid] - actual.azimuth_time_ns[valid]).max() <= AZIMUTH_NS
    assert np.nanmax(np.abs(expected.slant_range - actual.slant_range)) <= SLANT_RANGE_M
    assert np.nanmax(np.abs(expected.line - actual.line)) * bundle.line_interval <= LINE_TIME_S
    assert np.nanmax(np.abs(expected.sample - actual.sample)) * bundle.range_spacing <= RANGE_AXIS_M
    np.testing.assert_allclose(actual.look, expected.look, rtol=0, atol=2e-7)
    np.testing.assert_allclose(actual.pixel_area[valid], expected.pixel_area[valid], rtol=2e-6)
    for name in ("incidence", "look_angle", "cross_track"):
        atol = 2e-7 if name == "incidence" else 1e-10  # float32 radians, float64 ones
        np.testing.assert_allclose(getattr(actual, name)[valid], getattr(expected, name)[valid], rtol=0, atol=atol,
                                   err_msg=name)


def test_the_numpy_backend_has_no_cell_geometry_and_says_so(grids):
    dem, geometry = grids["utm"]
    with pytest.raises(InvalidInputError, match="the numpy backend has no cell_geometry pass: use numba or torch"):
        cell_geometry(*_cells(dem), geometry.geocoding_geometry(), compute=compute_for(backend="numpy"))


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
def test_ecef_is_the_same_on_every_backend(grids, backend, device):
    """Geodetic positions to ECEF: a grid with broadcast axes and voids, and scattered
    points, each backend within a micrometre of the numba kernels."""
    dem, _ = grids["geoid"]
    lon, lat, height = _cells(dem)
    height = height.copy()
    height[3, 4] = np.nan
    rng = np.random.default_rng(1)
    points = (rng.uniform(-np.pi, np.pi, 50), rng.uniform(-1.5, 1.5, 50), rng.uniform(-400, 9000, 50))
    for case in ((lon, lat, height), points):
        expected = ecef(*case)
        actual = ecef(*case, compute=compute_for(device, backend=backend))
        assert expected.shape == actual.shape == (*case[2].shape, 3) and actual.dtype == np.float64
        assert np.array_equal(np.isnan(expected), np.isnan(actual))
        assert np.nanmax(np.abs(expected - actual)) <= 1e-6


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
def test_the_orbits_state_is_the_same_on_every_backend(grids, backend, device):
    """The curved orbit (degree 5, its epoch a day before the image) at times across its
    span, in a 2-D shape: positions within a millimetre, velocities within a micrometre a
    second, of the numba kernels."""
    _, geometry = grids["utm"]
    orbit = geometry.orbit
    polynomial = OrbitPolynomial(orbit.coeffs, orbit.t_center, orbit.t_scale)
    seconds = np.linspace(orbit.t_min, orbit.t_max, 24).reshape(4, 6)
    expected = orbit_states(polynomial, seconds)
    actual = orbit_states(polynomial, seconds, compute=compute_for(device, backend=backend))
    for name, want, got, tolerance in zip(("position", "velocity", "acceleration"), expected, actual,
                                          (SLANT_RANGE_M, 1e-6, 1e-9), strict=True):
        assert got.shape == (4, 6, 3) and got.dtype == np.float64, name
        assert np.max(np.abs(want - got)) <= tolerance, name
    assert np.allclose(orbit.state(seconds)[0], expected[0], rtol=0, atol=0)


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
def test_the_range_axis_is_the_same_on_every_backend(grids, backend, device):
    """Slant ranges to samples through the three range polynomials of the ground-range
    grid (the nearest in time serves), voids kept: each backend within a millimetre of the
    numba kernels; and samples back to slant ranges on the backends that have the inverse."""
    _, geometry = grids["utm"]
    bundle = geometry.geocoding_geometry()
    rng = np.random.default_rng(3)
    line_time = bundle.first_line_time + rng.uniform(0, bundle.lines, (5, 40)) * bundle.line_interval
    slant_range = bundle.range_sr0[0] + rng.uniform(0, 60_000, (5, 40))
    line_time[0, 3], slant_range[1, 7] = np.nan, np.nan
    compute = compute_for(device, backend=backend)
    expected = samples_of_slant_ranges(line_time, slant_range, bundle)
    actual = samples_of_slant_ranges(line_time, slant_range, bundle, compute=compute)
    assert actual.shape == (5, 40) and np.array_equal(np.isnan(expected), np.isnan(actual))
    assert np.nanmax(np.abs(expected - actual)) * bundle.range_spacing <= RANGE_AXIS_M
    back = slant_ranges_of_samples(line_time, expected, bundle)
    assert np.nanmax(np.abs(back - slant_range)) <= SLANT_RANGE_M
    if backend != "numba":
        with pytest.raises(InvalidInputError, match=f"the {backend} backend has no slant_ranges_of_samples pass"):
            slant_ranges_of_samples(line_time, expected, bundle, compute=compute)
    with pytest.raises(InvalidInputError, match="two arrays of one shape"):
        samples_of_slant_ranges(line_time, slant_range[:, :3], bundle)


def test_a_dem_on_the_side_the_radar_does_not_look_at_is_refused(grids):
    """The overlap check geocodes a sample of the cells through the door: a DEM behind the
    radar's look is refused in one line, before the whole grid is geocoded."""
    dem, geometry = grids["utm"]
    mirrored = RadarGeometry(geometry.orbit, geometry.grid, "left" if geometry.look_side == "right" else "right")
    with pytest.raises(GeometryError, match="the side the radar does not look at"):
        backward_geocode(dem, mirrored)


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
def test_the_speckle_filters_are_the_same_on_every_backend(backend, device):
    """Lee's estimate on a speckled image with voids and a bright edge, windows shrunk at
    the image's edges: each backend within 1e-9 relative of the numba kernels, NaN where
    the image is; refined Lee on the backends that have it, the others refusing in one line."""
    rng = np.random.default_rng(5)
    truth = np.where(np.arange(40)[None, :] < 17, 0.05, 0.4) * np.ones((33, 40))
    image = (truth * rng.gamma(4.4, 1 / 4.4, truth.shape)).astype(np.float32)
    image[5, 6] = image[0, 0] = np.nan
    compute = compute_for(device, backend=backend)
    for window in (3, 7):
        expected = lee(image, window, 4.4)
        actual = lee(image, window, 4.4, compute=compute)
        assert actual.shape == image.shape and np.array_equal(np.isnan(actual), np.isnan(image))
        assert np.nanmax(np.abs(actual - expected) / expected) <= 1e-9, window
    if backend == "torch":
        with pytest.raises(InvalidInputError, match="the torch backend has no refined_lee pass"):
            refined_lee(image, 4.4, compute=compute)
    else:
        assert np.allclose(refined_lee(image, 4.4, compute=compute), refined_lee(image, 4.4), rtol=1e-9,
                           equal_nan=True)
    with pytest.raises(InvalidInputError, match="2-D float32 or float64 image"):
        lee(image[None], 3, 4.4)


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
def test_the_rows_of_an_interpolation_are_the_same_on_every_backend(backend, device):
    """The second half of the separable interpolation of a projected DEM's longitudes (UTM
    metres to degrees, nodes a hundred metres apart): every backend bit for bit the
    kernel's, its operations in the kernel's order; into a given buffer or a new one."""
    rng = np.random.default_rng(11)
    along = -118.2 + rng.uniform(-0.05, 0.05, (6, 50)).cumsum(axis=1) * 1e-3
    row_node = np.sort(rng.integers(0, 5, 37))
    row_weight = rng.uniform(0.0, 1.0, 37)
    expected = interpolate_rows(along, row_node, row_weight, np.pi / 180)
    out = np.full((37, 50), np.nan)
    actual = interpolate_rows(along, row_node, row_weight, np.pi / 180, out=out,
                              compute=compute_for(device, backend=backend))
    assert actual is out and np.max(np.abs(actual - expected)) <= 1e-15
    with pytest.raises(InvalidInputError, match="one node and weight per row"):
        interpolate_rows(along, row_node, row_weight[:-1], 1.0)


@pytest.mark.parametrize(("backend", "device"), OTHER_BACKENDS)
def test_an_images_survey_and_the_pixels_weighted_mean_are_the_same_on_every_backend(backend, device):
    """What an observed image holds (infinite, negative, finite, NaN), on images that hold
    each or none; and the weighted mean of a map-grid observation in each radar pixel, NaN
    where no weight reached it: every backend the numba kernels'."""
    compute = compute_for(device, backend=backend)
    base = np.full((9, 11), 0.25, dtype=np.float32)
    for row, col, value in ((None, None, None), (2, 3, np.inf), (4, 5, -1.0), (6, 7, np.nan)):
        image = base.copy()
        if row is not None:
            image[row, col] = value
        assert intensity_flags(image, compute=compute) == intensity_flags(image)
    assert intensity_flags(np.full((3, 3), np.nan)) == (False, False, False, True)
    rng = np.random.default_rng(9)
    weight = np.where(rng.uniform(size=(9, 11)) < 0.3, 0.0, rng.uniform(0.1, 2.0, (9, 11)))
    weighted = weight * rng.uniform(0.01, 0.5, (9, 11))
    expected = weighted_mean(weighted, weight)
    actual = weighted_mean(weighted, weight, compute=compute)
    assert np.array_equal(np.isnan(expected), weight <= 0) and np.array_equal(np.isnan(actual), np.isnan(expected))
    assert np.nanmax(np.abs(actual - expected)) == 0.0


def test_a_pass_a_backend_lacks_is_refused_or_taken_on_numba():
    """A pass the numpy twins lack is refused in one line, naming the backends that have
    it, or, with ``fallback``, taken on the numba kernels (as a run on a GPU takes what
    torch lacks); torch has every pass but the refined Lee filter and the range axis from
    sample to slant range, which no simulation or reconstruction runs."""
    from sarheight import compute

    with pytest.raises(InvalidInputError, match=r"the numpy backend has no cell_geometry pass: use numba or torch$"):
        compute._backend(Compute("numpy", "cpu"), "cell_geometry")
    taken = compute._backend(Compute("numpy", "cpu", fallback=True), "cell_geometry")
    assert taken.args[0].__module__ == "sarheight.compute.numba_backend"
    passes = [name for name in compute.__all__ if callable(getattr(compute, name)) and name not in (
        "compute_for", "compute_for_run", "radar_buffer_shape", "scatter_buffer_shape", "facet_pass")]
    passes += ["facet_pass_exact", "facet_pass_bilinear"]
    lacking = [name for name in passes if name[0].islower() and not compute._has("torch", name)]
    assert lacking == ["refined_lee", "slant_ranges_of_samples"]


def test_the_facets_extent_is_the_same_in_blocks_as_whole():
    """The extent of a block's facets, taken on row blocks in threads and combined, is the
    kernel's over the whole block, bit for bit, whichever borders are the DEM's."""
    from sarheight.compute import facet_extent
    from sarheight.kernels import radar_buffers

    rng = np.random.default_rng(3)
    # More cells than a block holds: the extent is taken on row blocks in threads.
    line = np.cumsum(rng.uniform(0.5, 1.5, (700, 200)), axis=0) + 1.0e4
    sample = np.cumsum(rng.uniform(0.5, 1.5, (700, 200)), axis=1) + 2.0e4
    valid = rng.random((700, 200)) > 0.1
    for borders in ((True, True, True, True), (False, True, False, True)):
        whole = radar_buffers.facet_extent(line, sample, valid, *borders)
        assert facet_extent(line, sample, valid, borders=borders) == tuple(float(value) for value in whole)
    assert all(np.isnan(facet_extent(line, sample, np.zeros_like(valid))))


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("grid", ["utm", "geoid"])
def test_the_cells_own_surface_is_the_same_on_torch_in_blocks(grids, grid, device, monkeypatch):
    """Whether each cell's surface faces away from the sensor (the normals from the
    neighbouring rows, which a block takes from beyond its own): torch, in blocks of a few
    rows, held to the numba kernel on its threads, on terrain with slopes both ways and a
    void."""
    from sarheight.compute import torch_blocks

    dem, geometry = grids[grid]
    lon, lat, height = _cells(dem)
    rows, cols = height.shape
    # Ridges steeper than the incidence, facing both ways, on the grid's heights.
    height = height + 400.0 * np.abs(np.sin(np.arange(cols) / 3.0))[None, :] * np.ones((rows, 1))
    height[2:4, 5:9] = np.nan
    bundle = geometry.geocoding_geometry()
    expected = cell_geometry(lon, lat, height, bundle, own_surface=True, blocks=3)
    monkeypatch.setattr(torch_blocks, "CPU_BLOCK_CELLS", 4 * cols)
    actual = cell_geometry(lon, lat, height, bundle, own_surface=True, compute=compute_for(device, backend="torch"))
    assert expected.faces_away is not None and actual.faces_away is not None
    assert 0.05 < expected.faces_away.mean() < 0.95
    np.testing.assert_array_equal(actual.faces_away, expected.faces_away)
    assert cell_geometry(lon, lat, height, bundle).faces_away is None


@pytest.mark.parametrize("projection", ["exact", "bilinear"])
def test_a_reconstruction_on_torch_is_the_numba_one(projection):
    """``reconstruct(device=)`` with torch on the CPU (the GPU's code, every pass of the
    reconstruction on torch): the same masks, the backscatter
    within 1e-6 relative on 99 % of the cells and within 1e-3 on all, and the result says
    where each pass ran. (The cells' positions agree to 2e-10 pixels; a facet seen almost
    edge-on, at 88-89 degrees of local incidence, and the layover cells that share its
    pixel, turn that into up to 2e-4 of their backscatter with exact projection.)"""
    from sarheight.reconstruction import reconstruct
    from sarheight.simulate import simulate_sar
    from tests.support.scenes import rough_dem, synthetic_geometry

    dem = rough_dem(7, rows=48, cols=48, relief=900.0)
    geometry = synthetic_geometry(dem, 35.0, 350.0, "right")
    observation = simulate_sar(dem, geometry, seed=3)
    expected = reconstruct(dem, observation, geometry, projection=projection, progress=False)
    # A torch Compute as it is named: the run takes what torch lacks on the numba kernels.
    actual = reconstruct(dem, observation, geometry, projection=projection, progress=False,
                         device=compute_for("cpu", backend="torch"))
    assert ((expected["layover"] > 0) & (expected["layover"] < 255)).any()
    for mask in ("layover", "shadow", "mixing"):
        np.testing.assert_array_equal(actual[mask].values, expected[mask].values, err_msg=mask)
    for name in ("backscatter", "flattened", "geocoded", "simulated"):
        left, right = actual[name].values, expected[name].values
        np.testing.assert_array_equal(np.isnan(left), np.isnan(right), err_msg=name)
        compared = np.isfinite(right) & (right != 0)
        relative = np.abs(left[compared] / right[compared] - 1.0)
        assert np.percentile(relative, 99) <= 1e-6 and relative.max() <= 1e-3, name
    facets = f"facet_pass_{projection}"
    assert actual.attrs["computed_on"] == (
        f"torch on cpu: cell_geometry, active_layover, visibility_masks, facet_extent, cell_ecef, {facets}, "
        "add_tile_rows, reallocation_ratios, sample_cells, finish_cells"), facets
    assert "computed_on" not in expected.attrs


def test_a_reconstruction_on_a_gpu_is_refused_where_there_is_none_and_block_wise():
    from sarheight.reconstruction import reconstruct
    from tests.support.scenes import rough_dem

    dem = rough_dem(7, rows=8, cols=8)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="asks for a CUDA GPU and torch sees none"):
            reconstruct(dem, np.ones((4, 4)), None, device="cuda")
    with pytest.raises(InvalidInputError, match="runs the reconstruction in memory"):
        reconstruct(dem, np.ones((4, 4)), None, chunks=16, device=compute_for("cpu", backend="torch"))


def test_a_simulation_on_torch_is_the_numba_one():
    """``simulate(device=)`` with torch on the CPU: the same masks, the simulated image
    within 1e-6 relative on 99 % of the pixels (1e-3 on all: facets seen edge-on), and the
    result says where each pass ran."""
    from sarheight.simulate import simulate
    from tests.support.scenes import rough_dem, synthetic_geometry

    dem = rough_dem(11, rows=40, cols=40, relief=800.0)
    geometry = synthetic_geometry(dem, 38.0, 190.0, "right")
    expected = simulate(dem, geometry, progress=False)
    actual = simulate(dem, geometry, progress=False, device=compute_for("cpu", backend="torch"))
    for mask in ("layover", "shadow", "mixing"):
        np.testing.assert_array_equal(actual[mask].values, expected[mask].values, err_msg=mask)
    np.testing.assert_array_equal(actual["valid"].values, expected["valid"].values)
    np.testing.assert_allclose(actual["pixel_area"].values, expected["pixel_area"].values, rtol=1e-6)
    for name in ("simulated_area", "simulated_gamma_area"):
        left, right = actual[name].values, expected[name].values
        compared = np.isfinite(right) & (right > 0)
        relative = np.abs(left[compared] / right[compared] - 1.0)
        assert np.percentile(relative, 99) <= 1e-6 and relative.max() <= 1e-3, name
    assert actual.attrs["computed_on"] == ("torch on cpu: cell_geometry, active_layover, visibility_masks, "
                                           "facet_extent, cell_ecef, facet_pass_exact, add_tile_rows, clear_residue, "
                                           "radar_products")


@pytest.mark.parametrize("projection", ["bilinear", "exact"])
@pytest.mark.parametrize("contribution", ["model", "gamma", "law", "weights", "classes"])
def test_the_facet_passes_are_the_same_on_torch(contribution, projection):
    """The facets' scatter with bilinear splatting and with exact projection (every
    contribution: the model law, the gamma area, a user's law, per-cell weights, a law per
    class) and its gather: torch held to the numba kernel, the per-cell sums and the radar
    sums within 1e-9 relative
    (the cells' positions are torch's own, a few 1e-10 m from the kernel's at 6.4e6 m,
    which moves a facet's area by about 1e-10 of it; the scatter adds in another order),
    the gathered energy likewise."""
    from sarheight.ground import CellLaws
    from sarheight.simulate import run_simulation
    from tests.support.scenes import rough_dem, synthetic_geometry

    dem = rough_dem(5, rows=36, cols=30, relief=700.0)
    geometry = synthetic_geometry(dem, 34.0, 350.0, "right")
    rng = np.random.default_rng(2)
    given = {"model": "model", "gamma": "gamma",
             "law": lambda degrees: 0.3 * np.cos(np.radians(degrees)) ** 1.5,
             "weights": dem.copy(data=rng.uniform(0.5, 2.0, dem.shape)),
             "classes": CellLaws(rng.integers(0, 2, dem.shape).astype(np.uint8),
                                 (lambda d: 0.2 * np.cos(np.radians(d)), lambda d: 0.05 + 0.0 * d),
                                 rng.uniform(0.5, 1.5, dem.shape))}[contribution]
    # One simulation's cells, their facets on each backend.
    state = run_simulation(dem, geometry, contribution=given, projection=projection, oversample=3)
    states = [state, dataclasses.replace(state, compute=compute_for("cpu", backend="torch"))]
    facets = f"facet_pass_{projection}"
    assert states[1].compute.where((facets,)) == f"torch on cpu: {facets}"
    scattered = [each.facet_pass(gather=False) for each in states]
    for name, expected, actual in zip(("sigma_area", "gamma_area", "contribution", "cos_local", "sums"),
                                      scattered[0][1:], scattered[1][1:], strict=True):
        scale = np.nanmax(np.abs(expected))
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-10 * scale, err_msg=name)
    assert np.count_nonzero(scattered[0][-1]) > 100
    ratios = rng.uniform(0.5, 2.0, (2, state.window.lines, state.window.samples))
    gathered = [each.facet_pass(gather=True, ratios=ratios)[0] for each in states]
    np.testing.assert_allclose(gathered[1], gathered[0], rtol=1e-9, atol=1e-10 * np.abs(gathered[0]).max())


@pytest.mark.parametrize("case", ["long edges", "slivers"])
def test_the_exact_facets_long_edges_and_slivers_are_the_same_on_torch(case, monkeypatch):
    """Exact projection where its edges cross many pixel borders (30 m cells over 4 m
    pixels: up to a dozen) and where triangles have no area in the image (a block of
    cells at one sample: they go as points): torch held to the numba kernel, scatter and
    gather, within 1e-9."""
    from sarheight.compute import torch_facets
    from sarheight.simulate import run_simulation
    from tests.support.scenes import rough_dem, synthetic_geometry

    dem = rough_dem(5, rows=30, cols=30, relief=700.0 if case == "long edges" else 300.0)
    geometry = synthetic_geometry(dem, 34.0, 350.0, "right", pixel_spacing=4.0 if case == "long edges" else 15.0)
    state = run_simulation(dem, geometry, projection="exact", oversample=1 if case == "long edges" else 2)
    if case == "slivers":
        sample = state.cells["sample"].copy()
        sample[8:16, :] = sample[12, 12]
        state = dataclasses.replace(state, cells={**state.cells, "sample": sample})
    slivers, crossings = [], []
    original_slivers, original_pieces = torch_facets._slivers, torch_facets._pieces

    def counted_slivers(t, sliver, *args):
        slivers.append(int(sliver.sum()))
        return original_slivers(t, sliver, *args)

    def counted_pieces(start, end, *args):
        found = original_pieces(start, end, *args)
        crossings.append(found[0].shape[1] - 1)
        return found

    monkeypatch.setattr(torch_facets, "_slivers", counted_slivers)
    monkeypatch.setattr(torch_facets, "_pieces", counted_pieces)
    # Batches of a few hundred pieces: the edges go in many batches, the widest alone.
    monkeypatch.setattr(torch_facets, "PIECE_ELEMENTS", 300)
    states = [state, dataclasses.replace(state, compute=compute_for("cpu", backend="torch"))]
    sums = [each.facet_pass(gather=False)[-1] for each in states]
    np.testing.assert_allclose(sums[1], sums[0], rtol=1e-9, atol=1e-10 * np.abs(sums[0]).max())
    ratios = np.random.default_rng(0).uniform(0.5, 2.0, (2, state.window.lines, state.window.samples))
    gathered = [each.facet_pass(gather=True, ratios=ratios)[0] for each in states]
    np.testing.assert_allclose(gathered[1], gathered[0], rtol=1e-9, atol=1e-10 * np.nanmax(np.abs(gathered[0])))
    if case == "slivers":
        assert sum(slivers) > 100
    else:
        assert max(crossings) >= 8


@pytest.mark.parametrize("projection", ["exact", "bilinear"])
def test_the_reallocations_pixel_passes_are_the_same_on_torch(projection):
    """The rounding residue cleared, the reallocation's ratios (as prefix sums for exact
    projection) with the simulated image and the pixels valid for flattening, and the
    pixels the facets reach but the observation lacks: torch held to the numba kernels on
    one simulation's sums, an observation with a hole."""
    from sarheight import compute
    from sarheight.simulate import run_simulation
    from sarheight.simulate.cells import channels
    from tests.support.scenes import rough_dem, synthetic_geometry

    dem = rough_dem(9, rows=40, cols=36, relief=800.0)
    geometry = synthetic_geometry(dem, 36.0, 190.0, "right")
    state = run_simulation(dem, geometry, projection=projection, clear=False)
    on_torch = compute_for("cpu", backend="torch", fallback=True)
    fields = state.smooth_fields.pixel_fields(state.window, state.contribution)
    observed = np.random.default_rng(4).uniform(0.01, 0.5, (state.window.lines, state.window.samples))
    observed[5:9, 10:20] = np.nan
    cleared = [state.sums.copy() for _ in range(2)]
    for sums, where in zip(cleared, (None, on_torch), strict=True):
        compute.clear_residue(channels(sums), fields, compute=where)
    np.testing.assert_array_equal(cleared[1], cleared[0])
    if projection == "exact":  # the difference sums leave residue where no facet reaches
        assert not np.array_equal(cleared[0], state.sums)
    assert np.array_equal(compute.missing_pixels(observed, state.sums, compute=on_torch),
                          compute.missing_pixels(observed, state.sums))
    buffers = [state.sums.copy() for _ in range(2)]
    answers = [compute.reallocation_ratios(sums, observed, fields, prefix=projection == "exact", compute=where)
               for sums, where in zip(buffers, (None, on_torch), strict=True)]
    np.testing.assert_allclose(buffers[1], buffers[0], rtol=1e-12, atol=1e-12 * np.abs(buffers[0]).max())
    np.testing.assert_allclose(answers[1][0], answers[0][0], rtol=1e-6)
    np.testing.assert_array_equal(answers[1][1], answers[0][1])
    assert answers[1][2] == answers[0][2] > 0
    images = np.random.default_rng(5).uniform(0.0, 2.0, (2, 7, 9))
    np.testing.assert_allclose(compute.gather_buffer(images, projection == "exact", compute=on_torch),
                               compute.gather_buffer(images, projection == "exact"), rtol=1e-14, atol=0)
    terms = state.smooth_fields.separable_terms("pixel_area", state.window)
    np.testing.assert_array_equal(compute.polynomial_field(*terms, compute=on_torch), compute.polynomial_field(*terms))
