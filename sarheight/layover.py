"""The reconstruction under the name scripts first imported it by:
``from sarheight.layover import reconstruct`` is :func:`sarheight.reconstruction.reconstruct`
(also ``sarheight.reconstruct``). New code imports it from :mod:`sarheight.reconstruction`."""

from __future__ import annotations

from .reconstruction import RECONSTRUCTION_BANDS, SIMULATION_BANDS, reconstruct, to_geotiff, to_isce3_mask

__all__ = ["RECONSTRUCTION_BANDS", "SIMULATION_BANDS", "reconstruct", "to_geotiff", "to_isce3_mask"]
