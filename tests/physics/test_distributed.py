"""Block-wise reconstruction equals the in-memory one, including layover crossing blocks."""

from __future__ import annotations

import numpy as np
import pytest

from sarheight.errors import InvalidInputError
from sarheight.reconstruction import reconstruct
from sarheight.simulate import simulate_sar
from tests.support.scenes import rough_dem, synthetic_geometry

# Partial sums add up in another order block-wise: the float32 outputs agree to a few
# units in the last place (1.2e-7 relative is one), up to about 5 for a cell that takes
# part of its energy from pixels the DEM barely fills (grazing incidence at the DEM's
# border; the noise floor over a tiny simulated sum): in the rotated scene, cell
# (49, 0) moves by 4.5e-7 in memory alone when only the tiles' size changes.
FLOAT32_ROUNDING = 1e-6
# ... except values that are themselves rounding residue: a pixel that a facet barely
# touches holds the difference of the exact projection's row sums, about 1e-16 of the
# row's deposits (measured: 6e-10 in a scene whose largest value is 2.6, 3e-16 apart
# between two tilings). Agreement is required to this fraction of the largest value.
RESIDUE_OF_LARGEST = 1e-12


@pytest.fixture(scope="module")
def scene():
    # Steep relief at 25 deg incidence: most cells are in layover. Flying north-east
    # (heading 35 deg; block-wise runs need DEM rows more along track than across), the
    # radar looks south-east: layover runs obliquely across DEM rows, so across the
    # boundaries of the row blocks below (and of the column tiles).
    dem = rough_dem(5, rows=64, cols=48, relief=1200.0)
    geometry = synthetic_geometry(dem, incidence=25.0, heading=35.0)
    observation = simulate_sar(dem, geometry, looks=4.4, nesz_db=-22.0)
    return dem, geometry, observation, reconstruct(dem, observation, geometry)


def _assert_same(result, reference):
    layover = (reference["layover"].values == 1) | (reference["layover"].values == 2)
    assert layover.mean() > 0.3
    for name in ("layover", "shadow", "mixing"):
        assert np.array_equal(result[name].values, reference[name].values), name
    for name in ("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"):
        a, b = result[name].values, reference[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        finite = np.isfinite(b)
        atol = RESIDUE_OF_LARGEST * float(np.max(np.abs(b[finite]), initial=0.0))
        assert np.allclose(a[finite], b[finite], rtol=FLOAT32_ROUNDING, atol=atol), name


@pytest.mark.parametrize("rows_per_block", [2, 7, 64])
def test_blocks_on_threads_equal_in_memory(scene, rows_per_block):
    dem, geometry, observation, reference = scene
    _assert_same(reconstruct(dem, observation, geometry, chunks=rows_per_block), reference)


@pytest.mark.parametrize(("rows_per_block", "cols_per_tile"), [(7, 5), (16, 13), (3, 40), (5, 48), (11, 9)])
def test_tiles_of_rows_and_columns_equal_in_memory(scene, rows_per_block, cols_per_tile):
    """Facets by tiles of a few columns, masks by bands of a few lines, in any combination."""
    dem, geometry, observation, reference = scene
    result = reconstruct(dem, observation, geometry, chunks=(rows_per_block, cols_per_tile))
    _assert_same(result, reference)


def test_dask_cluster_equals_in_memory(scene):
    from dask.distributed import Client, LocalCluster

    dem, geometry, observation, reference = scene
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        result = reconstruct(dem, observation, geometry, client=client, chunks=(9, 17))
    _assert_same(result, reference)


def test_bad_block_size(scene):
    dem, geometry, observation, _ = scene
    for chunks in (1, 0, 2.5, "16", True, (16, 1), (16, 16, 16), ()):
        with pytest.raises(InvalidInputError, match=r"chunks .*at least 2"):
            reconstruct(dem, observation, geometry, chunks=chunks)
    with pytest.raises(InvalidInputError, match="client must be"):
        reconstruct(dem, observation, geometry, client=42)
    with pytest.raises(InvalidInputError, match="block by block"):
        reconstruct(dem, observation, geometry, out="rec.tif")


def test_written_block_by_block_to_geotiffs_equals_in_memory(scene, tmp_path):
    """With ``out``, nothing of the DEM's size is held: the blocks go to GeoTIFFs, read back lazily."""
    import dask.array

    dem, geometry, observation, reference = scene
    result = reconstruct(dem, observation, geometry, chunks=9, out=tmp_path / "rec.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.tif", "rec_geometry.tif", "rec_masks.tif"]
    assert isinstance(result["backscatter"].data, dask.array.Array)
    assert result.rio.crs == reference.rio.crs
    loaded = result.compute()
    _assert_same(loaded, reference)
    # Newton is seeded afresh in each block: the geometry agrees to far below a millimetre.
    np.testing.assert_allclose(loaded["slant_range"].values, reference["slant_range"].values, rtol=1e-12)
    time = loaded["azimuth_time"].values
    assert np.array_equal(np.isnat(time), np.isnat(reference["azimuth_time"].values))
    assert np.abs((time - reference["azimuth_time"].values)[~np.isnat(time)]).max() <= np.timedelta64(1, "us")


def test_failed_block_run_leaves_no_file(scene, tmp_path):
    dem, geometry, observation, _ = scene
    bad = observation.copy(data=np.full(observation.shape, np.nan, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="does not cover"):
        reconstruct(dem, bad, geometry, chunks=9, out=tmp_path / "rec.tif")
    assert list(tmp_path.iterdir()) == []


def test_lazy_observation_and_repeated_runs_on_one_client(scene):
    """A dask-backed observation is read window by window; a client serves several runs."""
    from dask.distributed import Client, LocalCluster

    dem, geometry, observation, reference = scene
    lazy = observation.chunk({"line": 16, "sample": 16})
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for _ in range(2):
            result = reconstruct(dem, lazy, geometry, client=client, chunks=(16, 24))
            _assert_same(result, reference)
    _assert_same(reconstruct(dem, lazy, geometry), reference)


@pytest.fixture(scope="module")
def rotated_scene():
    """Lines crossing the DEM at 10 degrees to its columns (a Sentinel-1 track over a
    north-up grid): bands of lines are sheared strips of the DEM."""
    dem = rough_dem(9, rows=56, cols=60, relief=1000.0)
    geometry = synthetic_geometry(dem, incidence=28.0, heading=350.0)
    observation = simulate_sar(dem, geometry, looks=4.4, nesz_db=-22.0)
    return dem, geometry, observation, reconstruct(dem, observation, geometry)


@pytest.mark.parametrize(("rows_per_block", "cols_per_tile"), [(16, 64), (6, 14), (9, 31)])
def test_rotated_grid_tiles_and_bands_equal_in_memory(rotated_scene, rows_per_block, cols_per_tile):
    dem, geometry, observation, reference = rotated_scene
    result = reconstruct(dem, observation, geometry, chunks=(rows_per_block, cols_per_tile))
    _assert_same(result, reference)


def test_voids_across_band_edges_and_the_image_start_equal_in_memory():
    """DEM voids at the edges of the bands of lines, and a DEM reaching before the image's
    first line: every cell is judged by exactly one band, as in memory."""
    dem = rough_dem(21, rows=64, cols=40, relief=900.0)
    heights = dem.values.copy()
    heights[14:20, 5:30] = np.nan  # across the edge between the first two bands
    heights[33:35, :] = np.nan
    dem = dem.copy(data=heights)
    geometry = synthetic_geometry(dem, incidence=27.0, heading=355.0)
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    # Start the image a third of the way into the DEM's lines.
    first = int(observation["line"].values[0] + observation.shape[0] // 3)
    lines, samples = geometry.grid.shape
    import dataclasses

    cut = dataclasses.replace(geometry, grid=geometry.grid.crop(first, lines, 0, samples))
    shifted = observation.sel(line=observation["line"] >= first).assign_coords(
        line=lambda o: o["line"] - first)
    reference = reconstruct(dem, shifted, cut)
    assert (reference["layover"].values == 255).mean() > 0.2
    for rows_per_block in (8, 13):
        result = reconstruct(dem, shifted, cut, chunks=(rows_per_block, 16))
        for name in ("layover", "shadow", "mixing"):
            assert np.array_equal(result[name].values, reference[name].values), (rows_per_block, name)
        for name in ("backscatter", "flattened"):
            a, b = result[name].values, reference[name].values
            assert np.array_equal(np.isnan(a), np.isnan(b)), name
            assert np.allclose(a[np.isfinite(b)], b[np.isfinite(b)], rtol=1e-5), name


def test_bilinear_oversampling_chosen_as_in_memory():
    """``oversample="auto"`` for bilinear splatting is decided from the whole DEM's cell
    steps: blocks of flat and of steep terrain (whose own choices differ) together pick
    the in-memory factor, so the results agree."""
    from sarheight.simulate import simulate

    dem = rough_dem(5, rows=64, cols=48, relief=1200.0)
    geometry = synthetic_geometry(dem, incidence=25.0)
    dem.values[:32] = float(np.nanmean(dem.values))  # flat top half
    factors = [simulate(part, geometry, projection="bilinear").attrs["oversample"] for part in (dem[:32], dem[32:])]
    assert factors[0] != factors[1]
    observation = simulate_sar(dem, geometry, looks=None, nesz_db=None)
    reference = reconstruct(dem, observation, geometry, projection="bilinear")
    result = reconstruct(dem, observation, geometry, chunks=8, projection="bilinear")
    assert result.attrs["oversample"] == reference.attrs["oversample"]
    for name in ("layover", "shadow", "mixing"):
        assert np.array_equal(result[name].values, reference[name].values), name
    for name in ("backscatter", "flattened", "simulated"):
        a, b = result[name].values, reference[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        finite = np.isfinite(b)
        atol = RESIDUE_OF_LARGEST * float(np.max(np.abs(b[finite]), initial=0.0))
        assert np.allclose(a[finite], b[finite], rtol=FLOAT32_ROUNDING, atol=atol), name


def test_a_partial_image_warns_block_wise_too(scene):
    from sarheight.errors import PartialCoverageWarning

    dem, geometry, observation, _ = scene
    half = observation.where(observation["sample"] < observation["sample"][observation.sizes["sample"] // 2])
    with pytest.warns(PartialCoverageWarning, match="tiles reach"):
        result = reconstruct(dem, half, geometry, chunks=16)
    assert "missing_pixels" not in result.attrs
