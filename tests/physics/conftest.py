"""Fixtures of the physics tests' priors (tests/physics/test_priors.py, test_prior_points.py)."""

from pathlib import Path

import pyproj
import pytest

from sarheight import sample_data


@pytest.fixture(scope="module")
def tujunga():
    """Big Tujunga, SRTM 30 m in UTM 11N, EGM96 heights brought to the ellipsoid."""
    return sample_data.bigtujunga_dem()


@pytest.fixture
def isolated_proj(isolated_proj):
    """The shared PROJ without grids (tests/conftest.py), skipping where a geoid grid sits
    in PROJ's user directory, which PROJ always searches."""
    user_dir = Path(pyproj.datadir.get_user_data_dir())
    if user_dir.is_dir() and any("egm" in p.name.lower() for p in user_dir.iterdir()):
        pytest.skip(f"a geoid grid is installed in PROJ's user directory {user_dir}")
    return isolated_proj
