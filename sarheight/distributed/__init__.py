"""Block-wise reconstruction, on local threads or a dask.distributed cluster, for DEMs too
large to reconstruct in memory (:func:`reconstruct_blockwise`; the steps are described in
:mod:`.blockwise`).

The modules: ``workers`` (threads or a cluster), ``pieces`` (blocks, tiles, bands and the
tasks on them), ``outputs`` (in memory or GeoTIFFs as the pieces come) and ``blockwise``
(the run). Their public entries are importable from here.
"""

from __future__ import annotations

from .blockwise import reconstruct_blockwise
from .outputs import output_files
from .workers import CONNECT_TIMEOUT, Workers, check_client, local_client

__all__ = ["CONNECT_TIMEOUT", "Workers", "check_client", "local_client", "output_files", "reconstruct_blockwise"]
