"""Preprocessing core shared by the physics and learning parts of sarheight.

Reading products and making model-ready images from them, one subpackage or module per
source:

``safe``
    the SAFE container of Sentinel-1 and Sentinel-2 products: a ``.SAFE`` directory, its
    ``manifest.safe`` or a zip of it, opened as one :class:`~.safe.SafeProduct`.
``sentinel1``
    Sentinel-1 Level-1 SLC and GRD products: manifest and measurement groups, the
    annotation that the radar geometry is built from, and calibrated (β⁰, σ⁰, γ⁰),
    optionally thermal-noise-corrected intensity in radar geometry.

``backscatter``
    linear power and dB (:func:`~.backscatter.to_db`, :func:`~.backscatter.from_db`),
    the check that processing in linear power runs on it, and multilooking.
``speckle``
    the Lee (1980) and refined Lee (1981) speckle filters on DataArrays, NaN-aware.
``composite``
    monthly median composites of image time series (a ``time`` dim).
``sentinel2``
    Sentinel-2 L1C/L2A: whole SAFE products (folder, metadata file or zip, JPEG 2000
    bands) read as reflectance on one grid; reflectance from DNs with the
    processing-baseline offset, the ten bands of the models by name, 20 m → 10 m
    resampling, SCL cloud masks.
``align``
    Sentinel-1, Sentinel-2 and reference rasters on one 10 m grid (the UTM zone of the
    footprint by default), σ⁰ resampled in linear power; the per-city folder of monthly
    composites that the building data module reads, written from real products.

To come, beside these: normalisation and tiling for the learning models.

Importing this package imports none of its modules.
"""
