"""Models of the learning floor (torch only): terrain height (ASK-UNet), building height
(MBHR-Net) and Local Climate Zone fusion networks, with their shared blocks.

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``): importing this package
without PyTorch raises :class:`~sarheight.extras.MissingExtraError` saying so.
"""

from ..extras import require

require("sarheight.models", "torch")
