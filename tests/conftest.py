"""Shared fixtures of the test suite."""

import importlib.util
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pyproj
import pytest

# Under pytest-xdist (make test runs one worker a core) each worker is one process of
# several sharing the cores: one thread each for Numba's row blocks, torch and BLAS, set
# before any of them is imported, or they oversubscribe the cores (torch's spinning pool
# beside a busy process runs many times slower). A value the environment gives is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")


#: The test files that take longest (a minute or more on one worker on a new install, where
#: they also compile kernels), longest first. They are collected first: pytest-xdist hands
#: each file to the next free worker in collection order, so the long ones start at once and
#: the workers end together, instead of one worker running the last long file alone.
SLOW_FILES = (
    "tests/house/test_a_strangers_folder.py",
    "tests/learning/test_learning_security.py",
    "tests/learning/test_distributed_training.py",
    "tests/kernels/test_kernels_geometry.py",
    "tests/studies/test_refinement_study.py",
    "tests/studies/test_stack_study.py",
    "tests/learning/test_stack_network.py",
    "tests/learning/test_training.py",
    "tests/house/test_demo.py",
    "tests/terrain/test_terrain_refine.py",
    "tests/physics/test_geometry.py",
    "tests/physics/test_layover_masks.py",
    "tests/learning/test_models_mbhr.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parents[1]
    rank = {name: index for index, name in enumerate(SLOW_FILES)}

    def position(item: pytest.Item) -> int:
        try:
            return rank.get(item.path.resolve().relative_to(root).as_posix(), len(rank))
        except ValueError:  # a test outside the repository's folder
            return len(rank)

    # A stable sort: the other files, and the tests within each file, keep their order.
    items.sort(key=position)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The skipped tests as one line per reason, with their count (pytest's ``-rs`` repeats
    a reason once per test)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason", sep="-")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.line(f"{count:4d} skipped: {reason}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference data: the folder ``SARHEIGHT_REFERENCE_DATA`` names, else
    ``../shared/data`` beside the repository (README.md, "Reference data and tests")."""
    named = os.environ.get(REFERENCE_DATA_ENV)
    path = Path(named) if named else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(
            f"{path} is absent: the real-data tests need the reference data (set {REFERENCE_DATA_ENV} to its "
            "folder, or place it at ../shared/data beside the repository)"
        )
    return path


#: The environment variable naming the reference data's folder.
REFERENCE_DATA_ENV = "SARHEIGHT_REFERENCE_DATA"


#: The environment variable naming a bigearthnet-common wheel (it holds real BigEarthNet patches).
BIGEARTHNET_WHEEL_ENV = "SARHEIGHT_BIGEARTHNET_WHEEL"


def _bigearthnet_wheel() -> Path | None:
    """The bigearthnet-common wheel: the one the environment variable names, else the one
    ``make test`` downloads into ``.venv/test-data`` (the newest, where there are several)."""
    named = os.environ.get(BIGEARTHNET_WHEEL_ENV)
    if named:
        return Path(named)
    downloaded = sorted((Path(__file__).resolve().parents[1] / ".venv" / "test-data").glob("bigearthnet_common-*.whl"))
    return downloaded[-1] if downloaded else None


@pytest.fixture(scope="session")
def bigearthnet(tmp_path_factory) -> Path:
    """The BigEarthNet example patches (six Sentinel-1/Sentinel-2 pairs), extracted from the
    bigearthnet-common wheel (:func:`_bigearthnet_wheel`) or the installed package."""
    names = ("BigEarthNet-S1-Example.tar.bz2", "BigEarthNet-S2-Example.tar.bz2")
    wheel = _bigearthnet_wheel()
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            archives = {name: archive.read(f"bigearthnet_common/{name}") for name in names}
    else:
        spec = importlib.util.find_spec("bigearthnet_common")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"no bigearthnet-common wheel in .venv/test-data (make test downloads it), none named by "
                        f"{BIGEARTHNET_WHEEL_ENV}, and the package is not installed: the real BigEarthNet patch "
                        "pairs are inside it")
        folder = Path(next(iter(spec.submodule_search_locations)))
        archives = {name: (folder / name).read_bytes() for name in names}
    if not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no extraction filter (3.10.12+ / 3.11.4+): the archives are not "
                    "unpacked without it")
    root = tmp_path_factory.mktemp("bigearthnet")
    for content in archives.values():
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:bz2") as tar:
            tar.extractall(root, filter="data")
    return root


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
