"""The inversion's weights and regularisation (:class:`InversionSettings`), chosen on the
validation DEMs of the inversion study, and the least error a coarse-cell mean is kept
within."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import InvalidInputError

#: The least standard deviation (m) the coarse-cell means are kept within, whatever the
#: product states: an exact block mean is kept to a few centimetres, not to nothing (the
#: means of the cells whose centres lie in a coarse cell are not its exact area mean on a
#: grid not aligned with it).
COARSE_ERROR_FLOOR_M = 0.1


@dataclasses.dataclass(frozen=True)
class InversionSettings:
    """The inversion's weights and regularisation: the defaults are those the inversion
    study chose on its validation DEMs (``benchmarks/terrain_inversion/settings.json``,
    written by ``examples/inversion_study.py``).

    Attributes
    ----------
    prior_scale : the relief prior's power relative to the coarse DEM's extrapolated
        spectrum (1: as extrapolated).
    coarse_error_m : the standard deviation (m) of the coarse product's error the image
        may correct where the product states none (:func:`invert_dem`'s
        ``coarse_error_m``): the coarse-cell means of the result keep the product's within
        it, and the relief prior allows it.
    prior_error_m : the standard deviation (m) of a known height, when the priors do not
        say theirs.
    albedo_spacing, albedo_spacing_passes : the albedo's node spacing (coarse cells) for
        one acquisition geometry, and for several (both passes see the same albedo, so it
        can be finer).
    albedo_smoothness : the weight of the albedo's roughness (its nodes' Laplacian).
    rounds : Gauss-Newton rounds (each simulates the current surface under every image).
    model_blur : binomial steps of the blur of a cell's ratio in the local linearisation
        (0: none).
    tolerance : the conjugate gradients' relative residual.
    translation : the local linearisation includes a cell's move in the image.
    probe_stride : probe the linearisation with the simulator itself (0: the local one):
        ``probe_stride**2`` simulations a probe and image, each raising every
        ``probe_stride``-th cell (:func:`probed_jacobian`).
    probe_looks : probe only images (or groups of dates) of at least this many looks.
    reference : what a scene's inversion starts from (:func:`sarheight.terrain.variables.inversion_reference`):
        ``"back_projection"`` or ``"lanczos"``, each registered and kriged.
    unread_error_m : the standard deviation (m) within which cells no image reads
        (layover, shadow) keep the reference.
    model_error_nepers : the standard deviation of the simulator's own error in a cell's
        log-ratio (nepers), beside speckle's.
    reprobe : probe the derivative again every round (else once, kept).
    coarse_error_share : the share of the product's stated error the coarse-cell means are
        kept within.
    registration_share : the share of the registration's error (m) that, times a coarse
        cell's slope, widens how far its mean may move (0: the coarse cells held as the
        product states them, whatever the registration).
    robust_k : Huber's threshold (standard deviations) of the data's loss.
    land_cover_classes : the most classes the images are told apart into (1: one law for
        the whole ground).
    land_cover_smoothing : the smoothing (cells) of the features the classes are told
        apart by.
    """

    prior_scale: float = 0.5
    coarse_error_m: float = 3.0
    prior_error_m: float = 1.0
    albedo_spacing: float = 2.0
    albedo_spacing_passes: float = 2.0
    albedo_smoothness: float = 10.0
    rounds: int = 2
    model_blur: int = 1
    tolerance: float = 1e-3
    translation: bool = True
    probe_stride: int = 7
    probe_looks: float = 1.0
    reference: str = "back_projection"
    unread_error_m: float = 1.0
    model_error_nepers: float = 0.03
    reprobe: bool = True
    coarse_error_share: float = 0.5
    registration_share: float = 1.0
    robust_k: float = 2.0
    land_cover_classes: int = 4
    land_cover_smoothing: float = 1.0

    def __post_init__(self) -> None:
        for name in ("prior_scale", "coarse_error_m", "prior_error_m", "albedo_spacing", "albedo_spacing_passes",
                     "albedo_smoothness", "tolerance", "probe_looks", "unread_error_m", "model_error_nepers",
                     "coarse_error_share", "robust_k", "land_cover_smoothing"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
                raise InvalidInputError(f"InversionSettings.{name} must be a positive number, got {value!r}")
        share = self.registration_share
        if isinstance(share, bool) or not (isinstance(share, (int, float, np.number)) and math.isfinite(share)
                                           and share >= 0):
            raise InvalidInputError(f"InversionSettings.registration_share must be a number >= 0, got "
                                    f"{self.registration_share!r}")
        for name, least in (("rounds", 1), ("model_blur", 0), ("probe_stride", 0), ("land_cover_classes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise InvalidInputError(f"InversionSettings.{name} must be an integer >= {least}, got {value!r}")

    def to_attrs(self, prefix: str = "inversion_") -> dict[str, float | int | str]:
        """Attributes of a result: every setting, prefixed."""
        return {f"{prefix}{key}": value for key, value in dataclasses.asdict(self).items()}
