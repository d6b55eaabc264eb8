"""Preprocessing core shared by the physics and learning parts of sarheight.

``sentinel1``: calibrated (β⁰, σ⁰, γ⁰), optionally thermal-noise-corrected intensity of
Sentinel-1 Level-1 products in radar geometry.
"""
