"""Calibrated Sentinel-1 intensity (sarheight.preprocess.sentinel1) on real products.

The shared products' measurement TIFFs are all-zero placeholders (or absent), so the
calibration arithmetic is checked on copies made in tmp_path: the real manifest and
annotation (calibration and noise LUTs included) next to a full-size *sparse* GeoTIFF
that holds known DNs in a few rows and nothing elsewhere (a few MB). The expected values
are computed here independently: LUTs read with xarray-sentinel, interpolated with
scipy's RegularGridInterpolator, combined as ESA's (|DN|² − η) / K².
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import dask.array
import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.windows import Window
from scipy.interpolate import RegularGridInterpolator
from xarray_sentinel import esa_safe
from xarray_sentinel import sentinel1 as xs1

from sarheight.errors import InvalidInputError, MissingInputError, ProductError
from sarheight.preprocess.sentinel1 import read_intensity

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

GRD = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
SLC_ROME = "S1A_IW_SLC__1SDV_20220104T170557_20220104T170624_041314_04E951_F1F1.SAFE"
SLC_SAN_GABRIEL = (
    "S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681.SAFE",
    "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.SAFE",
)
GRD_SHAPE = (16705, 26102)
#: Rows of the synthetic GRD that hold DNs; they contain geolocation grid line 8020.
GRD_ROWS = (8000, 8064)
GRD_WINDOW = (7996, 8068, 0, GRD_SHAPE[1])  # four all-zero rows on each side
#: Burst 2 of the Rome IW1 SLC spans raster lines 3002 .. 4502 (1501 lines per burst).
SLC_DN_WINDOW = (3550, 3700, 1000, 1400)


# --------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------


def _copy_without_pixels(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """Manifest and annotation of a SAFE in dst (plain copies, writable), no measurement."""
    target = dst / src.name
    for file in src.rglob("*"):
        relative = file.relative_to(src)
        if not file.is_file() or relative.parts[0] == "measurement" or any(s in file.name for s in skip):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target / relative)
    (target / "measurement").mkdir()
    return target


def _write_sparse_measurement(src: Path, target: Path, row: int, col: int, values: np.ndarray) -> None:
    """A measurement TIFF of the product's name and size holding only ``values``.

    Tiles never written are not stored (GDAL's SPARSE_OK) and read as zeros, so a
    16705 x 26102 image costs a few MB.
    """
    (tiff,) = (src / "measurement").glob("*.tiff")
    with rasterio.open(tiff) as reference:
        height, width, dtype = reference.height, reference.width, reference.dtypes[0]
    with rasterio.open(
        target / "measurement" / tiff.name,
        "w",
        driver="GTiff",
        height=height,
        width=width,
        count=1,
        dtype=dtype,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        SPARSE_OK=True,
    ) as out:
        out.write(values.astype(dtype), 1, window=Window(col, row, values.shape[1], values.shape[0]))


def _lut_reference(lut, lines: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Bilinear LUT values on lines x samples, with scipy."""
    interpolator = RegularGridInterpolator(
        (lut["line"].values.astype(float), lut["pixel"].values.astype(float)), lut.values.astype(float)
    )
    grid_lines, grid_samples = np.meshgrid(lines, samples, indexing="ij")
    return interpolator(np.stack([grid_lines, grid_samples], axis=-1))


def _noise_reference(noise_xml: Path, lines: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """η = range noise LUT x the azimuth noise LUT of each (sub-swath) block."""
    noise = _lut_reference(xs1.open_noise_range_dataset(noise_xml, attrs={})["noiseRangeLut"], lines, samples)
    for vector in esa_safe.parse_tag_as_list(noise_xml, "//noiseAzimuthVector", "noise"):
        rows = (lines >= vector["firstAzimuthLine"]) & (lines <= vector["lastAzimuthLine"])
        cols = (samples >= vector["firstRangeSample"]) & (samples <= vector["lastRangeSample"])
        node_lines = np.array(vector["line"]["$"].split(), float)
        node_values = np.array(vector["noiseAzimuthLut"]["$"].split(), float)
        noise[np.ix_(rows, cols)] *= np.interp(lines[rows], node_lines, node_values)[:, None]
    return noise


@pytest.fixture(scope="module")
def s1(shared_data: Path) -> Path:
    return shared_data / "s1"


@pytest.fixture(scope="module")
def grd(s1: Path) -> Path:
    return s1 / GRD


@pytest.fixture(scope="module")
def slc_rome(s1: Path) -> Path:
    return s1 / SLC_ROME


@pytest.fixture(scope="module")
def synthetic_grd(grd: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The Rome GRD with random DNs (1 .. 399, plus some 0) in rows 8000 .. 8063.

    The DN range puts |DN|² on both sides of the thermal noise (η up to ~2600 DN²), so
    noise removal both subtracts and clips. Reads are cached: each costs ~1 s of XML.
    """
    target = _copy_without_pixels(grd, tmp_path_factory.mktemp("grd"))
    rng = np.random.default_rng(20211223)
    dn = rng.integers(1, 400, size=(GRD_ROWS[1] - GRD_ROWS[0], GRD_SHAPE[1]))
    dn[:, 5::97] = 0  # misses the geolocation grid columns
    _write_sparse_measurement(grd, target, GRD_ROWS[0], 0, dn)
    full_dn = np.zeros((GRD_WINDOW[1] - GRD_WINDOW[0], GRD_SHAPE[1]))
    full_dn[GRD_ROWS[0] - GRD_WINDOW[0] : GRD_ROWS[1] - GRD_WINDOW[0]] = dn
    cache: dict = {}

    def read(calibration: str, remove_noise: bool):
        key = (calibration, remove_noise)
        if key not in cache:
            cache[key] = read_intensity(
                target, calibration=calibration, remove_noise=remove_noise, window=GRD_WINDOW
            )
        return cache[key]

    (noise_xml,) = (target / "annotation" / "calibration").glob("noise-*.xml")
    (calibration_xml,) = (target / "annotation" / "calibration").glob("calibration-*.xml")
    return {
        "path": target,
        "dn": full_dn,
        "read": read,
        "noise_xml": noise_xml,
        "calibration": xs1.open_calibration_dataset(calibration_xml, attrs={}),
    }


@pytest.fixture(scope="module")
def synthetic_slc(slc_rome: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The Rome IW1 SLC with random complex DNs in a block of burst 2."""
    target = _copy_without_pixels(slc_rome, tmp_path_factory.mktemp("slc"))
    rng = np.random.default_rng(20220104)
    line0, line1, sample0, sample1 = SLC_DN_WINDOW
    shape = (line1 - line0, sample1 - sample0)
    dn = (rng.normal(0, 80, shape) + 1j * rng.normal(0, 80, shape)).astype(np.complex64)
    _write_sparse_measurement(slc_rome, target, line0, sample0, dn)
    (calibration_xml,) = (target / "annotation" / "calibration").glob("calibration-*.xml")
    return {
        "path": target,
        "dn": dn,
        "calibration": xs1.open_calibration_dataset(calibration_xml, attrs={}),
    }


# --------------------------------------------------------------------------------------
# GRD
# --------------------------------------------------------------------------------------


def test_grd_placeholder_window(grd: Path) -> None:
    window = (1000, 1100, 2000, 2300)
    result = read_intensity(grd, window=window)

    assert result.dims == ("line", "sample")
    assert result.shape == (100, 300)
    assert result.dtype == np.float32
    assert isinstance(result.data, np.ndarray)
    np.testing.assert_array_equal(result["line"].values, np.arange(1000, 1100))
    np.testing.assert_array_equal(result["sample"].values, np.arange(2000, 2300))
    # Zero DN minus positive noise, clipped: exactly zero.
    assert np.all(result.values == 0.0)
    assert result.attrs["calibration"] == "beta0"
    assert result.attrs["units"] == "1"
    assert result.attrs["noise_removed"] == 1
    assert result.attrs["product"] == GRD
    assert result.attrs["measurement"] == "IW/VV"
    assert result.attrs["product_type"] == "GRD"

    # Line times: the annotation's first and last line times, evenly spaced (GRD lines
    # are resampled onto a regular azimuth grid).
    (annotation,) = (grd / "annotation").glob("*.xml")
    image = esa_safe.parse_tag(annotation, "//imageInformation")
    first = np.datetime64(image["productFirstLineUtcTime"], "ns")
    last = np.datetime64(image["productLastLineUtcTime"], "ns")
    step = (last - first) / np.timedelta64(1, "ns") / (GRD_SHAPE[0] - 1)
    expected = first + np.round(result["line"].values * step).astype("timedelta64[ns]")
    error = np.abs((result["azimuth_time"].values - expected).astype(np.int64))
    assert error.max() <= 1_000  # ns


def test_grd_calibration_matches_lut_reference(synthetic_grd: dict) -> None:
    """(|DN|² − η) / K² for β⁰, σ⁰, γ⁰, with and without noise, against scipy."""
    lines = np.arange(GRD_WINDOW[0], GRD_WINDOW[1], dtype=float)
    samples = np.arange(GRD_WINDOW[2], GRD_WINDOW[3], dtype=float)
    power = synthetic_grd["dn"] ** 2
    noise = _noise_reference(synthetic_grd["noise_xml"], lines, samples)
    for calibration, variable in [("beta", "betaNought"), ("sigma", "sigmaNought"), ("gamma", "gamma")]:
        gain = _lut_reference(synthetic_grd["calibration"][variable], lines, samples)
        for remove_noise in (False, True):
            if calibration == "gamma" and remove_noise:
                continue  # four combinations cover every term; each read parses the XML
            expected = np.maximum(power - noise, 0.0) if remove_noise else power
            expected = expected / gain**2
            result = synthetic_grd["read"](calibration, remove_noise)
            assert result.attrs["calibration"] == f"{calibration}0"
            assert result.attrs["noise_removed"] == int(remove_noise)
            np.testing.assert_allclose(result.values, expected, rtol=2e-6, atol=1e-12)


def test_grd_without_noise_matches_xarray_sentinel(synthetic_grd: dict) -> None:
    """The reference tool: xarray-sentinel's calibrate_intensity on the same DNs."""
    line0, line1, sample0, sample1 = GRD_WINDOW
    dn = xr.DataArray(
        synthetic_grd["dn"].astype(np.float32),
        dims=("line", "pixel"),
        coords={"line": np.arange(line0, line1), "pixel": np.arange(sample0, sample1)},
    )
    for calibration, variable in [("beta", "betaNought"), ("sigma", "sigmaNought")]:
        expected = xs1.calibrate_intensity(dn, synthetic_grd["calibration"][variable]).values
        result = synthetic_grd["read"](calibration, False)
        np.testing.assert_allclose(result.values, expected, rtol=1e-5, atol=1e-12)


def test_grd_noise_removal_subtracts_and_clips(synthetic_grd: dict) -> None:
    raw = synthetic_grd["read"]("beta", False).values
    denoised = synthetic_grd["read"]("beta", True).values
    rows = slice(GRD_ROWS[0] - GRD_WINDOW[0], GRD_ROWS[1] - GRD_WINDOW[0])
    dn = synthetic_grd["dn"][rows]
    assert np.all(denoised >= 0.0)
    assert np.all(denoised <= raw)
    assert np.all(raw[rows][dn > 0] > 0.0)
    # Both regimes occur: noise above the measured power (clipped to 0) and below it.
    clipped = (denoised[rows] == 0.0) & (dn > 0)
    assert 0.01 < clipped.mean() < 0.5
    assert np.all(denoised[rows][dn == 0] == 0.0)


def test_grd_sigma_gamma_beta_follow_incidence(synthetic_grd: dict, grd: Path) -> None:
    """σ⁰ = β⁰ sin θ and γ⁰ = β⁰ tan θ at the annotated geolocation grid points.

    The LUTs use the ellipsoid incidence, the grid the incidence at its point: IW1's
    ratios sit up to 1 % (σ⁰) and 1.4 % (γ⁰) off over the whole product, IW2 and IW3's
    within 0.5 %.
    """
    # The grid as sarheight.preprocess.sentinel1.geolocation_grid gives it, read with the same
    # xarray-sentinel parser but without the rest of the annotation (~1.5 s less).
    (annotation,) = (grd / "annotation").glob("*.xml")
    grid = esa_safe.parse_tag_as_list(annotation, "//geolocationGridPoint")
    points = [p for p in grid if p["line"] == 8020]
    assert len(points) == 21
    beta = synthetic_grd["read"]("beta", False)
    sigma = synthetic_grd["read"]("sigma", False)
    gamma = synthetic_grd["read"]("gamma", False)
    where = {
        "line": xr.DataArray([p["line"] for p in points], dims="point"),
        "sample": xr.DataArray([p["pixel"] for p in points], dims="point"),
    }
    b, s, g = (da.sel(where).values.astype(float) for da in (beta, sigma, gamma))
    assert np.all(b > 0)
    incidence = np.deg2rad([p["incidenceAngle"] for p in points])
    np.testing.assert_allclose(s / b, np.sin(incidence), rtol=0.01)
    np.testing.assert_allclose(g / b, np.tan(incidence), rtol=0.015)


def test_grd_lazy_read_equals_eager(synthetic_grd: dict) -> None:
    window = (GRD_ROWS[0] - 3, GRD_ROWS[0] + 37, 8800, 9000)  # crosses the IW1/IW2 seam
    result = read_intensity(
        synthetic_grd["path"], calibration="sigma0", window=window, chunks={"line": 16, "sample": 64}
    )
    assert isinstance(result.data, dask.array.Array)
    assert result.chunks == ((16, 16, 8), (64, 64, 64, 8))
    # Twelve blocks, each a windowed read: nothing in the graph touches the other rows.
    assert len(dict(result.data.__dask_graph__())) < 60
    eager = synthetic_grd["read"]("sigma", True).sel(line=slice(window[0], window[1] - 1))
    np.testing.assert_array_equal(result.values, eager.sel(sample=slice(8800, 8999)).values)


def test_grd_zipped_product(synthetic_grd: dict, tmp_path: Path) -> None:
    archive = tmp_path / f"{GRD[:-5]}.zip"
    with zipfile.ZipFile(archive, "w") as file:
        for member in synthetic_grd["path"].rglob("*"):
            if member.is_file():
                file.write(member, member.relative_to(synthetic_grd["path"].parent))
    window = (GRD_ROWS[0], GRD_ROWS[0] + 8, 17600, 17800)
    result = read_intensity(archive, window=window, remove_noise=False)
    expected = synthetic_grd["read"]("beta", False).sel(line=slice(window[0], window[1] - 1))
    np.testing.assert_array_equal(result.values, expected.sel(sample=slice(17600, 17799)).values)
    assert result.attrs["product"] == GRD


def test_grd_calibration_annotation_missing(grd: Path, tmp_path: Path) -> None:
    target = _copy_without_pixels(grd, tmp_path, skip=("calibration-",))
    with pytest.raises(ProductError, match="no measurement TIFF"):
        read_intensity(target, window=(0, 1, 0, 1))
    (tiff,) = (grd / "measurement").glob("*.tiff")
    shutil.copyfile(tiff, target / "measurement" / tiff.name)
    with pytest.raises(ProductError, match="no calibration annotation"):
        read_intensity(target, window=(0, 1, 0, 1))


def test_grd_measurement_of_the_wrong_size(grd: Path, tmp_path: Path) -> None:
    """A TIFF smaller than the annotation says (cut short, or a stand-in) is refused."""
    target = _copy_without_pixels(grd, tmp_path)
    (tiff,) = (grd / "measurement").glob("*.tiff")
    with rasterio.open(
        target / "measurement" / tiff.name,
        "w",
        driver="GTiff",
        height=100,
        width=100,
        count=1,
        dtype="uint16",
    ) as out:
        out.write(np.ones((1, 100, 100), np.uint16))
    with pytest.raises(ProductError, match="size differs"):
        read_intensity(target, window=(0, 10, 0, 10))


def test_grd_noise_annotation_missing(grd: Path, tmp_path: Path) -> None:
    target = _copy_without_pixels(grd, tmp_path, skip=("noise-",))
    (tiff,) = (grd / "measurement").glob("*.tiff")
    shutil.copyfile(tiff, target / "measurement" / tiff.name)
    with pytest.raises(ProductError, match="remove_noise=False"):
        read_intensity(target, window=(0, 1, 0, 1))


# --------------------------------------------------------------------------------------
# SLC
# --------------------------------------------------------------------------------------


def test_slc_burst_window(slc_rome: Path) -> None:
    window = (3100, 3200, 100, 400)
    # "IW/VV" names IW1/VV, the only sub-swath whose annotation this product holds.
    result = read_intensity(slc_rome, "IW/VV", burst=2, window=window, remove_noise=False)
    assert result.dims == ("line", "sample")
    assert result.shape == (100, 300)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result["line"].values, np.arange(3100, 3200))
    np.testing.assert_array_equal(result["sample"].values, np.arange(100, 400))
    assert np.all(result.values == 0.0)
    assert result.attrs["measurement"] == "IW1/VV/2"
    assert result.attrs["product_type"] == "SLC"
    # Burst lines are evenly spaced from the burst's annotated start time.
    (annotation,) = (slc_rome / "annotation").glob("*.xml")
    dt_ns = float(esa_safe.parse_tag(annotation, "//imageInformation")["azimuthTimeInterval"]) * 1e9
    start = esa_safe.parse_tag(annotation, "//swathTiming")["burstList"]["burst"][2]["azimuthTime"]
    offsets = (result["line"].values - 2 * 1501) * dt_ns
    expected = np.datetime64(start, "ns") + np.round(offsets).astype("timedelta64[ns]")
    error = np.abs((result["azimuth_time"].values - expected).astype(np.int64))
    assert error.max() <= 1_000  # ns


def test_slc_synthetic_burst_calibration(synthetic_slc: dict) -> None:
    line0, line1, sample0, sample1 = SLC_DN_WINDOW
    window = (line0 - 2, line1, sample0, sample1 + 2)
    result = read_intensity(
        synthetic_slc["path"], "IW1/VV", calibration="sigma", burst=2, window=window, remove_noise=False
    )
    lines = np.arange(window[0], window[1], dtype=float)
    samples = np.arange(window[2], window[3], dtype=float)
    dn = np.zeros((lines.size, samples.size), np.complex64)
    dn[2:, :-2] = synthetic_slc["dn"]
    gain = _lut_reference(synthetic_slc["calibration"]["sigmaNought"], lines, samples)
    np.testing.assert_allclose(result.values, np.abs(dn.astype(complex)) ** 2 / gain**2, rtol=2e-6)

    # Away from the burst overlaps the deburst keeps burst 2's lines as they are.
    debursted = read_intensity(
        synthetic_slc["path"], "IW1/VV", calibration="sigma", window=window, remove_noise=False
    )
    np.testing.assert_array_equal(debursted["line"].values, result["line"].values)
    np.testing.assert_array_equal(debursted.values, result.values)


def test_slc_debursted_window_across_a_seam(slc_rome: Path) -> None:
    window = (1300, 1700, 0, 200)
    result = read_intensity(slc_rome, "IW1/VV", window=window, remove_noise=False)
    # mosaic_slc_iw keeps each burst (1501 lines here) less 90 lines at either end.
    kept = np.concatenate([np.arange(b * 1501 + 90, (b + 1) * 1501 - 90) for b in range(9)])
    expected = kept[(kept >= window[0]) & (kept < window[1])]
    np.testing.assert_array_equal(result["line"].values, expected)
    assert result.shape == (expected.size, 200)
    # The 90 lines cropped at each burst edge exceed the overlap: rows jump in time at
    # the seam, so no azimuth_time coordinate.
    assert np.diff(expected).max() > 1
    assert "azimuth_time" not in result.coords
    assert result.attrs["measurement"] == "IW1/VV"


def test_slc_noise_annotation_missing(slc_rome: Path) -> None:
    with pytest.raises(ProductError, match="remove_noise=False"):
        read_intensity(slc_rome, "IW1/VV", burst=2, window=(3100, 3110, 0, 10))


def test_slc_window_outside_burst(slc_rome: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"burst 2 of IW1/VV, raster lines 3002 \.\. 4502"):
        read_intensity(slc_rome, "IW1/VV", burst=2, window=(2990, 3010, 0, 10), remove_noise=False)


def test_slc_burst_out_of_range(slc_rome: Path) -> None:
    with pytest.raises(ProductError, match="burst 9"):
        read_intensity(slc_rome, "IW1/VV/9", window=(0, 1, 0, 1), remove_noise=False)


@pytest.mark.parametrize("name", SLC_SAN_GABRIEL)
def test_slc_without_measurement(s1: Path, name: str) -> None:
    with pytest.raises(ProductError, match="download the full product"):
        read_intensity(s1 / name, "IW2/VV", remove_noise=False)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_missing_product(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="does not exist"):
        read_intensity(tmp_path / "S1A_nothing.SAFE")


@pytest.mark.parametrize(("measurement", "message"), [
    ("IW/HH", "unknown measurement group 'IW/HH'"),
    # VH is listed in the manifest but its files are not in the shared copy: say which.
    ("IW/VH", r"lacks \./annotation/s1b-iw-grd-vh-.*\.xml, which its manifest lists for 'IW/VH'"),
    ("EW/VV", "unknown measurement group"),
    ("IW-VV", "not of the form SWATH/POL"),
])
def test_unknown_measurement(grd: Path, measurement: str, message: str) -> None:
    with pytest.raises(ProductError, match=message):
        read_intensity(grd, measurement)


def test_burst_on_grd(grd: Path) -> None:
    with pytest.raises(ProductError, match="SLC products only"):
        read_intensity(grd, burst=1)


@pytest.mark.parametrize("calibration", ["dn", "beta nought", "", "sigma_0"])
def test_unknown_calibration(grd: Path, calibration: str) -> None:
    with pytest.raises(InvalidInputError, match="unknown calibration"):
        read_intensity(grd, calibration=calibration)


@pytest.mark.parametrize(
    "window",
    [
        (0, GRD_SHAPE[0] + 1, 0, 10),
        (0, 10, 26000, GRD_SHAPE[1] + 1),
        (10, 10, 0, 5),
        (-1, 5, 0, 5),
        (0, 1, 2),
        (0.0, 1, 2, 3),
        "0:10,0:10",
    ],
)
def test_bad_window(grd: Path, window: object) -> None:
    with pytest.raises(InvalidInputError, match="window"):
        read_intensity(grd, window=window)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunks", [{"y": 10}, 1.5, [10, 10]])
def test_bad_chunks(grd: Path, chunks: object) -> None:
    with pytest.raises(InvalidInputError, match="chunks"):
        read_intensity(grd, window=(0, 1, 0, 1), chunks=chunks)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Altered and hostile products
# --------------------------------------------------------------------------------------


def _annotation_href(product: Path) -> str:
    manifest = (product / "manifest.safe").read_text()
    (name,) = {p.name for p in (product / "annotation").glob("s1*-vv-*.xml")}
    return next(part.split('"')[1] for part in manifest.split("href=")[1:] if name in part.split('"')[1])


def test_a_manifest_href_outside_the_product_is_refused(grd: Path, tmp_path: Path) -> None:
    from sarheight.geometry import RadarGeometry

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for index, folder in enumerate(("../../elsewhere", str(outside))):
        product = _copy_without_pixels(grd, tmp_path / f"copy{index}")
        href = _annotation_href(product)
        name = Path(href).name
        target = f"{folder}/{name}"
        shutil.copyfile(product / href, outside / name)
        manifest = product / "manifest.safe"
        manifest.write_text(manifest.read_text().replace(f'href="{href}"', f'href="{target}"'))
        with pytest.raises(ProductError, match="outside the product"):
            RadarGeometry.from_sentinel1(product)
    # A link inside the product that leads out of it.
    product = _copy_without_pixels(grd, tmp_path / "linked")
    href = _annotation_href(product)
    (product / href).unlink()
    (product / href).symlink_to(outside / Path(href).name)
    with pytest.raises(ProductError, match=r"is a link to .*outside the product"):
        RadarGeometry.from_sentinel1(product)


def test_another_product_s_annotation_is_refused(s1: Path, tmp_path: Path) -> None:
    """The descending SLC with the ascending one's IW2 annotation under its own name."""
    from sarheight.geometry import RadarGeometry

    descending = _copy_without_pixels(s1 / SLC_SAN_GABRIEL[1], tmp_path)
    (foreign,) = (s1 / SLC_SAN_GABRIEL[0] / "annotation").glob("s1a-iw2-slc-vv-*.xml")
    (own,) = (descending / "annotation").glob("s1a-iw2-slc-vv-*.xml")
    shutil.copyfile(foreign, own)
    with pytest.raises(ProductError, match=r"belongs to another product \(absoluteOrbitNumber '45461' where the "
                                           r"manifest says '46693'.*startTime"):
        RadarGeometry.from_sentinel1(descending, "IW2/VV")


def test_a_missing_annotation_is_named(grd: Path, tmp_path: Path) -> None:
    from sarheight.geometry import RadarGeometry

    product = _copy_without_pixels(grd, tmp_path)
    href = _annotation_href(product)
    (product / href).unlink()
    with pytest.raises(ProductError, match=rf"lacks {re.escape(href)}, which its manifest lists for 'IW/VV': the "
                                           "product is incomplete"):
        RadarGeometry.from_sentinel1(product)


def test_a_small_zip_holding_a_huge_annotation_is_refused_unread(grd: Path, tmp_path: Path) -> None:
    """A few hundred KB of zip whose annotation inflates to 80 MB: refused by its declared
    size, before it is read."""
    from sarheight.geometry import RadarGeometry

    product = _copy_without_pixels(grd, tmp_path)
    href = _annotation_href(product)
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for file in product.rglob("*"):
            if file.is_file() and file.name != Path(href).name:
                bomb.write(file, f"{product.name}/{file.relative_to(product)}")
        with bomb.open(f"{product.name}/{href[2:] if href.startswith('./') else href}", "w") as member:
            block = b" " * 2**20
            for _ in range(80):
                member.write(block)
    assert archive.stat().st_size < 2**20
    with pytest.raises(ProductError, match=r"is 80 MB, more than the 64 MB a product's metadata file ever needs"):
        RadarGeometry.from_sentinel1(archive)
