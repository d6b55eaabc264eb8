"""The SAFE container opener (sarheight.preprocess.safe) on small made-up products.

Only the container is checked, so a manifest.safe that says nothing will do; reading
real products is tested in test_preprocess_sentinel1.py and test_geometry.py.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sarheight.errors import MissingInputError, ProductError
from sarheight.preprocess.safe import SafeProduct, open_safe

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

NAME = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
TIFF = "measurement/s1b-iw-grd-vv.tiff"
PIXELS = np.arange(6, dtype=np.uint16).reshape(2, 3)


@pytest.fixture
def safe_dir(tmp_path: Path) -> Path:
    """A SAFE folder: a manifest and one small measurement TIFF."""
    folder = tmp_path / NAME
    (folder / "measurement").mkdir(parents=True)
    (folder / "manifest.safe").write_text("<xfdu:XFDU/>")
    with rasterio.open(
        folder / TIFF, "w", driver="GTiff", height=2, width=3, count=1, dtype="uint16"
    ) as tiff:
        tiff.write(PIXELS, 1)
    return folder


def _zip(folder: Path, archive: Path, root: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as file:
        for member in sorted(folder.rglob("*")):
            file.write(member, member.relative_to(root))
    return archive


def _pixels(safe: SafeProduct) -> np.ndarray:
    with rasterio.open(safe.gdal_path(os.path.join(safe.directory, TIFF))) as tiff:
        return tiff.read(1)


@pytest.mark.parametrize("given", ["directory", "manifest"])
def test_directory_and_its_manifest(safe_dir: Path, given: str) -> None:
    safe = open_safe(safe_dir if given == "directory" else safe_dir / "manifest.safe", mission="Sentinel-1")
    assert safe.archive is None
    assert Path(safe.manifest) == safe_dir / "manifest.safe"
    assert safe.name == NAME
    assert safe.fs.cat_file(safe.manifest) == b"<xfdu:XFDU/>"
    np.testing.assert_array_equal(_pixels(safe), PIXELS)


def test_zip(safe_dir: Path, tmp_path: Path) -> None:
    archive = _zip(safe_dir, tmp_path / "download.zip", safe_dir.parent)
    safe = open_safe(archive, mission="Sentinel-1")
    assert safe.archive == archive.resolve()
    assert safe.manifest == f"{NAME}/manifest.safe"
    assert safe.name == NAME
    assert safe.fs.cat_file(safe.manifest) == b"<xfdu:XFDU/>"
    assert safe.gdal_path(f"{NAME}/{TIFF}") == f"/vsizip/{archive.resolve()}/{NAME}/{TIFF}"
    np.testing.assert_array_equal(_pixels(safe), PIXELS)


def test_zip_with_the_safe_at_its_root(safe_dir: Path, tmp_path: Path) -> None:
    archive = _zip(safe_dir, tmp_path / "download.zip", safe_dir)
    safe = open_safe(archive, mission="Sentinel-1")
    assert safe.manifest == "manifest.safe"
    assert safe.name == "download.zip"
    np.testing.assert_array_equal(_pixels(safe), PIXELS)


@pytest.mark.parametrize("mission", ["Sentinel-1", "Sentinel-2"])
@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("nope.SAFE", MissingInputError, r"{mission} product '.*nope\.SAFE' does not exist"),
        ("empty.SAFE", ProductError, r"is not a {mission} SAFE product \(no manifest.safe\)"),
        ("readme.txt", ProductError, r"is not a {mission} SAFE product \(no manifest.safe\)"),
        ("other.zip", ProductError, r"holds 0 manifest\.safe files: expected one zipped {mission} SAFE"),
        ("two.zip", ProductError, r"holds 2 manifest\.safe files: expected one zipped {mission} SAFE"),
    ],
)
def test_refuses_what_is_not_one_safe(
    tmp_path: Path, mission: str, name: str, error: type[Exception], match: str
) -> None:
    (tmp_path / "empty.SAFE").mkdir()
    (tmp_path / "readme.txt").write_text("not a product")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as file:
        file.writestr("readme.txt", "not a product")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as file:
        file.writestr("A.SAFE/manifest.safe", "<xfdu:XFDU/>")
        file.writestr("B.SAFE/manifest.safe", "<xfdu:XFDU/>")
    with pytest.raises(error, match=match.format(mission=mission)):
        open_safe(tmp_path / name, mission=mission)
