"""Whole Sentinel-2 SAFE products (sentinel2.open_product) on tiny made-up ones.

The products have the layout of real ones: ``manifest.safe`` and ``MTD_MSIL1C.xml`` /
``MTD_MSIL2A.xml`` at the top (the elements read modelled on products of baselines 02.09
and 04.00), one granule, lossless JPEG 2000 bands at 10, 20 and 60 m (24, 12 and 4
pixels a side), in L2A the ``R10m`` / ``R20m`` / ``R60m`` folders and the SCL.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from sarheight.errors import InvalidInputError, MissingInputError, ProductError, UnsupportedProductError
from sarheight.preprocess import sentinel2 as s2
from sarheight.preprocess.composite import monthly_composite

# Upper-left corner of the tile (UTM 31N) and the tile's side: 240 m.
LEFT, TOP, SIDE = 399_960.0, 5_700_000.0, 240.0
TILE = "T31UDQ"
#: Product name and datatake sensing start of each baseline's products.
SENSED = {"04.00": ("20220301T105839", "2022-03-01T10:58:39.024Z"),
          "02.09": ("20210611T105031", "2021-06-11T10:50:31.024Z")}
# The thirteen bands a product stores (L2A: all but B10); the stacks are of S2_BANDS.
ALL_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
# SCL classes on the 20 m grid: 4 vegetation, 9 cloud, 3 cloud shadow, 11 snow (not masked by default).
SCL = np.full((12, 12), 4, np.uint8)
SCL[0:3, 0:3] = 9
SCL[6, 6] = 3
SCL[10:, 10:] = 11


def reflectance_of(band: str, resolution: int) -> np.ndarray:
    """The true reflectance of a band on its grid: a ramp, different for each band."""
    size = int(SIDE / resolution)
    rows, cols = np.indices((size, size))
    return 0.05 + 0.01 * ALL_BANDS.index(band) + 0.001 * (resolution // 10) * (rows + 2 * cols)


def file_label(band: str) -> str:
    return band if band in ("B8A", "SCL") else f"B{int(band[1:]):02d}"


def write_jp2(path: Path, values: np.ndarray, resolution: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", height=values.shape[0], width=values.shape[1], count=1,
                       dtype=values.dtype.name, crs="EPSG:32631",
                       transform=Affine(resolution, 0.0, LEFT, 0.0, -resolution, TOP),
                       QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(values, 1)


def metadata(level: str, baseline: str, name: str) -> str:
    """MTD_MSIL1C.xml / MTD_MSIL2A.xml, cut to the elements around the ones read."""
    sensed = SENSED[baseline][1]
    if level == "L1C":
        root, quantification = "Level-1C_User_Product", '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        offsets = ("<Radiometric_Offset_List>"
                   + "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13))
                   + "</Radiometric_Offset_List>")
    else:
        root = "Level-2A_User_Product"
        quantification = ('<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000'
                          '</BOA_QUANTIFICATION_VALUE><AOT_QUANTIFICATION_VALUE unit="none">1000.0'
                          '</AOT_QUANTIFICATION_VALUE><WVP_QUANTIFICATION_VALUE unit="cm">1000.0'
                          "</WVP_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>")
        offsets = ("<BOA_ADD_OFFSET_VALUES_LIST>"
                   + "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
                   + "</BOA_ADD_OFFSET_VALUES_LIST>")
    if baseline < "04.00":
        offsets = ""  # the offset elements came with baseline 04.00
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>'
        f'<n1:{root} xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_{root[:8]}.xsd">'
        "<n1:General_Info><Product_Info>"
        f"<PRODUCT_START_TIME>{sensed}</PRODUCT_START_TIME><PRODUCT_URI>{name}</PRODUCT_URI>"
        f"<PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL><PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
        f'<Datatake datatakeIdentifier="GS2B_{SENSED[baseline][0]}_025929_N{baseline}">'
        "<SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME><DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>"
        f"<DATATAKE_SENSING_START>{sensed}</DATATAKE_SENSING_START></Datatake>"
        "</Product_Info><Product_Image_Characteristics><Special_Values><SPECIAL_VALUE_TEXT>NODATA"
        "</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>"
        f"{quantification}{offsets}</Product_Image_Characteristics></n1:General_Info></n1:{root}>"
    )


def make_product(folder: Path, level: str, baseline: str) -> Path:
    """A SAFE product of ``level`` ("L1C", "L2A") and processing ``baseline`` in ``folder``."""
    stamp = SENSED[baseline][0]
    name = f"S2B_MSI{level}_{stamp}_N{baseline.replace('.', '')}_R094_{TILE}_{stamp[:8]}T141452.SAFE"
    safe = folder / name
    safe.mkdir(parents=True)
    (safe / "manifest.safe").write_text("<xfdu:XFDU/>")
    (safe / f"MTD_MSI{level}.xml").write_text(metadata(level, baseline, name))
    image = safe / "GRANULE" / f"{level}_{TILE}_A034846_{stamp}" / "IMG_DATA"
    offset = 1000 if baseline >= "04.00" else 0
    for band in ALL_BANDS:
        if level == "L2A" and band == "B10":
            continue  # the cirrus band is not in L2A products
        resolution = s2.NATIVE_RESOLUTION[band]
        dn = np.round(offset + 10000 * reflectance_of(band, resolution)).astype(np.uint16)
        if level == "L1C":
            write_jp2(image / f"{TILE}_{stamp}_{file_label(band)}.jp2", dn, resolution)
        else:
            write_jp2(image / f"R{resolution}m" / f"{TILE}_{stamp}_{file_label(band)}_{resolution}m.jp2", dn,
                      resolution)
    if level == "L2A":
        # L2A also keeps the 10 m bands at 20 m: a decoy, which must not be read.
        write_jp2(image / "R20m" / f"{TILE}_{stamp}_B02_20m.jp2", np.full((12, 12), 9999, np.uint16), 20)
        write_jp2(image / "R20m" / f"{TILE}_{stamp}_SCL_20m.jp2", SCL, 20)
    return safe


def zipped(safe: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as file:
        for member in sorted(safe.rglob("*")):
            file.write(member, member.relative_to(safe.parent))
    return archive


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("s2")
    return {(level, baseline): make_product(folder / f"{level}_{baseline}", level, baseline)
            for level in ("L1C", "L2A") for baseline in ("04.00", "02.09")}


@pytest.mark.parametrize("level", ["L1C", "L2A"])
@pytest.mark.parametrize("baseline", ["04.00", "02.09"])
def test_a_product_gives_the_reflectance_of_its_ten_bands_on_the_10_m_grid(products, level, baseline):
    safe = products[(level, baseline)]
    out = s2.open_product(safe, mask=False)
    assert out.dims == ("band", "y", "x") and out.shape == (10, 24, 24) and out.dtype == np.float32
    assert list(out["band"].values) == list(s2.S2_BANDS)
    assert out.rio.crs.to_epsg() == 32631 and out.rio.transform() == Affine(10.0, 0.0, LEFT, 0.0, -10.0, TOP)
    assert out.attrs["product"] == safe.name and out.attrs["level"] == level
    assert out.attrs["PROCESSING_BASELINE"] == baseline and out.attrs["PRODUCT_TYPE"] == f"S2MSI{level[1:]}"
    assert out.attrs["add_offset"] == (-1000.0 if baseline == "04.00" else 0.0)
    assert out["time"].values == np.datetime64(SENSED[baseline][1][:-1], "ns")
    # Bands stored at 10 m: exact (the DNs are 1000 + 10000 r from 04.00 on, 10000 r before).
    for band in ("B2", "B3", "B4", "B8"):
        np.testing.assert_allclose(out.sel(band=band).values, reflectance_of(band, 10), rtol=1e-6)
    # Bands stored at 20 m: bilinear keeps the mean, and the ramp inside the tile.
    for band in ("B5", "B6", "B7", "B8A", "B11", "B12"):
        native = reflectance_of(band, 20)
        assert float(out.sel(band=band).mean()) == pytest.approx(native.mean(), rel=1e-3)
        fine = out.sel(band=band).values
        np.testing.assert_allclose(fine[1:-1:2, 1:-1:2] + fine[2::2, 2::2], native[:-1, :-1] + native[1:, 1:],
                                   rtol=1e-5)


def test_scl_masks_the_clouds_of_an_l2a_product(products):
    safe = products[("L2A", "04.00")]
    out = s2.open_product(safe)
    cloudy = np.kron(np.isin(SCL, s2.SCL_CLOUD_CLASSES), np.ones((2, 2), bool))
    assert cloudy.any() and (~cloudy).any()
    np.testing.assert_array_equal(np.isnan(out.values), np.broadcast_to(cloudy, out.shape))
    np.testing.assert_array_equal(out.values[:, ~cloudy], s2.open_product(safe, mask=False).values[:, ~cloudy])
    assert out.attrs["cloud_mask"] == list(s2.SCL_CLOUD_CLASSES)
    assert out.attrs["cloud_fraction"] == pytest.approx(np.isin(SCL, s2.SCL_CLOUD_CLASSES).mean())
    # L1C products have no SCL: mask=True masks nothing there.
    assert np.isfinite(s2.open_product(products[("L1C", "04.00")]).values).all()


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_the_metadata_file_and_the_zip_read_as_the_folder(products, tmp_path, level):
    safe = products[(level, "04.00")]
    expected = s2.open_product(safe)
    for given in (safe / f"MTD_MSI{level}.xml", safe / "manifest.safe", zipped(safe, tmp_path / "download.zip")):
        out = s2.open_product(given)
        xr.testing.assert_identical(out, expected)


def test_products_stack_in_time_for_monthly_composites(products):
    stack = xr.concat([s2.open_product(products[("L1C", baseline)]) for baseline in ("02.09", "04.00")], dim="time")
    composite = monthly_composite(stack)
    assert composite.sizes["time"] == 2 and composite.sizes["band"] == 10
    # Both baselines give the same reflectance: each product's offset was applied.
    np.testing.assert_allclose(composite.values[0], composite.values[1], rtol=1e-6)


def test_other_bands_and_resolutions(products):
    safe = products[("L2A", "04.00")]
    out = s2.open_product(safe, bands=["B12", "b02"], resolution_m=20, resampling="average", mask=False)
    assert list(out["band"].values) == ["B12", "B2"] and out.shape == (2, 12, 12)
    np.testing.assert_allclose(out.sel(band="B12").values, reflectance_of("B12", 20), rtol=1e-6)
    # The 10 m band averaged to 20 m, not the product's own 20 m copy of it.
    np.testing.assert_allclose(out.sel(band="B2").values, reflectance_of("B2", 10).reshape(12, 2, 12, 2).mean((1, 3)),
                               rtol=1e-5)
    with pytest.raises(InvalidInputError, match=r"\['B13'\] are not Sentinel-2 bands"):
        s2.open_product(safe, bands=["B2", "B13"])
    with pytest.raises(InvalidInputError, match="not a whole number of 25 m cells"):
        s2.open_product(safe, resolution_m=25)
    with pytest.raises(InvalidInputError, match="unknown resampling"):
        s2.open_product(safe, resampling="bilinar")


def test_what_is_not_one_l1c_or_l2a_product_is_refused(products, tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        s2.open_product(tmp_path / "nope.SAFE")
    (tmp_path / "empty.SAFE").mkdir()
    with pytest.raises(ProductError, match=r"not a Sentinel-2 SAFE product \(no manifest.safe\)"):
        s2.open_product(tmp_path / "empty.SAFE")
    sentinel1 = tmp_path / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
    sentinel1.mkdir()
    (sentinel1 / "manifest.safe").write_text("<xfdu:XFDU/>")
    with pytest.raises(ProductError, match="not a Sentinel-2 Level-1C or Level-2A product"):
        s2.open_product(sentinel1)

    def copy(level: str, baseline: str = "04.00") -> Path:
        source = products[(level, baseline)]
        return Path(shutil.copytree(source, tmp_path / f"copy{len(list(tmp_path.iterdir()))}" / source.name))

    level_1b = copy("L1C")
    (level_1b / "MTD_MSIL1C.xml").rename(level_1b / "MTD_MSIL1B.xml")
    with pytest.raises(UnsupportedProductError, match=r"another level \(MTD_MSIL1B.xml\)"):
        s2.open_product(level_1b)

    two = copy("L1C")
    (granule,) = (two / "GRANULE").iterdir()
    shutil.copytree(granule, two / "GRANULE" / granule.name.replace("A034846", "A034847"))
    with pytest.raises(ProductError, match="holds 2 granules"):
        s2.open_product(two)

    incomplete = copy("L2A")
    for path in [*incomplete.rglob("*_B8A_20m.jp2"), *incomplete.rglob("*_B11_20m.jp2")]:
        path.unlink()
    with pytest.raises(ProductError, match=r"lacks the file of bands B8A \(.*R20m/\*_B8A_20m.jp2.*\), B11 "):
        s2.open_product(incomplete)
    no_scl = copy("L2A")
    next(no_scl.rglob("*_SCL_20m.jp2")).unlink()
    with pytest.raises(ProductError, match=r"bands SCL .* pass mask=False"):
        s2.open_product(no_scl)
    assert s2.open_product(no_scl, mask=False).shape == (10, 24, 24)


def test_one_band_file_is_named_by_its_file_name(products):
    """L1C band files end in the band, L2A ones in band and resolution."""
    for level, pattern, band in (("L1C", "*_B8A.jp2", "B8A"), ("L2A", "*_B05_20m.jp2", "B5")):
        safe = next(path for key, path in products.items() if key[0] == level)
        image = s2.open_bands(next(safe.rglob(pattern)))
        assert list(image["band"].values) == [band]
