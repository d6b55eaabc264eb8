"""Shared fixtures of the test suite."""

from pathlib import Path

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
