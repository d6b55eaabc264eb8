"""Block-wise reconstruction equals the in-memory one, including layover crossing blocks."""

from __future__ import annotations

import numpy as np
import pytest

from sarheight.distributed import reconstruct_distributed
from sarheight.errors import InvalidInputError
from sarheight.layover import reconstruct
from sarheight.simulate import simulate_sar
from tests.test_layover import _geometry, _rough_dem


@pytest.fixture(scope="module")
def scene():
    # Steep relief at 25 deg incidence: most cells are in layover, and layover runs
    # across every block boundary below.
    dem = _rough_dem(5, rows=64, cols=48, relief=1200.0)
    geometry = _geometry(dem, incidence=25.0)
    observation = simulate_sar(dem, geometry, looks=4.4, nesz_db=-22.0)
    return dem, geometry, observation, reconstruct(observation, dem, geometry)


def _assert_same(result, reference):
    layover = (reference["layover"].values == 1) | (reference["layover"].values == 2)
    assert layover.mean() > 0.3
    for name in ("layover", "shadow", "mixing"):
        assert np.array_equal(result[name].values, reference[name].values), name
    for name in ("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"):
        a, b = result[name].values, reference[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        finite = np.isfinite(b)
        assert np.allclose(a[finite], b[finite], rtol=1e-6, atol=0), name


@pytest.mark.parametrize("rows_per_block", [2, 7, 64])
def test_blocks_on_threads_equal_in_memory(scene, rows_per_block):
    dem, geometry, observation, reference = scene
    _assert_same(reconstruct(observation, dem, geometry, chunks=rows_per_block), reference)


def test_dask_cluster_equals_in_memory(scene):
    from dask.distributed import Client, LocalCluster

    dem, geometry, observation, reference = scene
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        result = reconstruct_distributed(observation, dem, geometry, client=client, rows_per_block=9)
    _assert_same(result, reference)


def test_bad_block_size(scene):
    dem, geometry, observation, _ = scene
    with pytest.raises(InvalidInputError, match="at least 2 rows"):
        reconstruct(observation, dem, geometry, chunks=1)
