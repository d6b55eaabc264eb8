"""Training and prediction of the learning floor: the pixel-wise regression module, its
losses (MBHR-Net's among them) and metrics, atomic checkpoints, the LightningCLI of
``sarheight fit|validate|test``, and tiled prediction with ensembles.

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``): importing this package
without it raises :class:`~sarheight.extras.MissingExtraError` saying so.
"""

from ..extras import require

require("sarheight.training")

from .checkpoints import (  # noqa: E402  (after the check of the extra)
    AtomicCheckpointIO,
    ResumableCheckpoint,
    TrainedModel,
    export_checkpoint,
    read_checkpoint,
)
from .losses import LOSSES, masked_loss, mbhr_loss  # noqa: E402
from .metrics import HeightMetrics  # noqa: E402
from .normalisation import normalise_groups, normalise_inputs  # noqa: E402
from .predict import (  # noqa: E402
    TileBlending,
    buildings_quicklook,
    predict_buildings,
    predict_height,
    prediction_quicklook,
)
from .regression import PixelRegression, RegressionData  # noqa: E402
from .trained import TrainedClassifier, load_checkpoint  # noqa: E402

__all__ = [
    "LOSSES",
    "AtomicCheckpointIO",
    "HeightMetrics",
    "PixelRegression",
    "RegressionData",
    "ResumableCheckpoint",
    "TileBlending",
    "TrainedClassifier",
    "TrainedModel",
    "buildings_quicklook",
    "export_checkpoint",
    "load_checkpoint",
    "masked_loss",
    "mbhr_loss",
    "normalise_groups",
    "normalise_inputs",
    "predict_buildings",
    "predict_height",
    "prediction_quicklook",
    "read_checkpoint",
]
