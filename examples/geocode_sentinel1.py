"""Backward-geocode a DEM under a real Sentinel-1 geometry and save a GeoTIFF + quicklook.

    python examples/geocode_sentinel1.py DEM.tif PRODUCT.SAFE [--geoid-grid egm96_15.gtx]

With no arguments it uses the reference data beside the repository (../shared/data):
the Big Tujunga SRTM DEM under the descending San Gabriel SLC geometry.
"""

import argparse
from pathlib import Path

from sarheight.dem import open_dem
from sarheight.geometry import RadarGeometry, backward_geocode, geocoding_products
from sarheight.io import write_geotiff
from sarheight.plots import quicklook

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("dem", nargs="?", default=DATA / "dem" / "bigtujunga_srtm30_utm11.tif")
parser.add_argument(
    "product", nargs="?",
    default=DATA / "s1" / "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.SAFE",
)
parser.add_argument("--measurement", default="IW/VV")
parser.add_argument("--geoid-grid", default=DATA / "geoid" / "egm96_15.gtx")
parser.add_argument("--vertical-datum", default="egm96")
parser.add_argument("--out", default="geocoded.tif")
args = parser.parse_args()

dem = open_dem(args.dem, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid)
geometry = RadarGeometry.from_sentinel1(args.product, args.measurement)
print(geometry)
geocoded = backward_geocode(dem, geometry)
print(f"{float(geocoded['line'].notnull().mean()):.1%} of the DEM is inside the image")
write_geotiff(geocoding_products(geocoded), args.out)
quicklook(
    [
        ("slant range (km)", geocoded["slant_range"] / 1e3, {"colorbar": "km"}),
        ("incidence (deg)", geocoded["incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
        ("line", geocoded["line"], {}),
        ("sample", geocoded["sample"], {}),
    ],
    Path(args.out).with_suffix(".png"),
    columns=2,
)
print(f"wrote {args.out} and its .png quicklook")
