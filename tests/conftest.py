"""Shared fixtures of the test suite."""

import os
from pathlib import Path

import pyproj
import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference data beside the repository (``../shared/data``)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(
            "../shared/data is absent: real-data tests need the shared reference data "
            "beside the repository"
        )
    return path


@pytest.fixture
def isolated_proj(tmp_path):
    """PROJ with its database and no grid, network off; restored afterwards.

    PROJ always searches its user directory as well, so tests that need PROJ to lack a grid
    skip when one is installed there.
    """
    original_dir = pyproj.datadir.get_data_dir()
    original_network = pyproj.network.is_network_enabled()
    data_dir = tmp_path / "proj"
    data_dir.mkdir()
    (data_dir / "proj.db").symlink_to(Path(original_dir.split(os.pathsep)[0]) / "proj.db")
    pyproj.datadir.set_data_dir(data_dir)
    pyproj.network.set_network_enabled(False)
    try:
        yield data_dir
    finally:
        pyproj.datadir.set_data_dir(original_dir)
        pyproj.network.set_network_enabled(original_network)
