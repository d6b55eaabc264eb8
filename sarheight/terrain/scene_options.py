"""The option groups of a terrain scene: how a simulated scene's observation is made
(:class:`ObservationSpec`), how a user's observations are read (:class:`SarReading`),
what a scene makes from its observations (:class:`SceneProducts`), and where and how the
work runs (:class:`Execution`).

Each is checked once, when it is made, as :class:`sarheight.priors.PriorSpec` is for the
priors: the functions that take one (:func:`sarheight.terrain.simulated.simulate_scene`,
:func:`sarheight.terrain.simulated.simulate_observations`,
:func:`sarheight.terrain.scene_sets.simulate_scenes`,
:func:`sarheight.terrain.observed.observed_scene`, :func:`sarheight.refinement.refine_dem`)
take it as checked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from ..errors import InvalidInputError
from ..ground import SIGMA0_LAWS, DateCondition, Ground
from ..observation import QUANTITIES
from .inversion_settings import InversionSettings

__all__ = ["Execution", "ObservationSpec", "SarReading", "SceneProducts", "finite_number", "option_group"]


Group = TypeVar("Group")


def option_group(label: str, group: Group | None, kind: type[Group]) -> Group:
    """``group`` as given, or ``kind()`` where it is None: the entries' one check of an
    option group.

    Raises
    ------
    InvalidInputError : ``group`` is not a ``kind`` (a dict of its fields, say).
    """
    if group is None:
        return kind()
    if not isinstance(group, kind):
        raise InvalidInputError(f"{label} must be a {kind.__name__}, got {type(group).__name__}")
    return group


def finite_number(value: object) -> bool:
    """Whether ``value`` is a finite real number (not a bool): the groups' test of a number."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
    """How a scene's images are simulated (:func:`sarheight.simulate.simulate_sar`).

    Attributes
    ----------
    looks, nesz_db : speckle looks and noise floor (dB) of each image (None: no speckle,
        no noise); a temporal composite of N dates of 4.4 looks is ``looks=4.4 * N``.
    law, land_cover_db : the ground's sigma0 law (a name of :data:`sarheight.ground.SIGMA0_LAWS`) and its
        land-cover contrast (dB); both passes see the same land cover.
    land_cover_seed : the seed of that land cover (None: the scene's seed).
    ground : the ground's sigma0 per terrain class (:func:`sarheight.ground.draw_ground`),
        instead of ``law`` and ``land_cover_db``.
    dates, date_conditions : a stack: ``dates`` observations per pass, each with its own
        speckle, the ground of each as its :class:`sarheight.ground.DateCondition` says
        (moisture, wet snow; :func:`sarheight.ground.draw_date_conditions` draws them);
        without conditions, ``dates`` dates of the same ground.
    projection : as :func:`sarheight.simulate.simulate` takes it.
    cross_polarised : also simulate the cross-polarised image of each date (VH beside VV:
        the ground's laws moved by each class's ratio,
        :meth:`sarheight.ground.Ground.cross_polarised`, its own speckle, the same noise
        floor), as a dual-polarisation product gives it.
    """

    looks: float | None = 4.4
    nesz_db: float | None = -22.0
    law: str = "empirical"
    land_cover_db: float = 3.0
    land_cover_seed: int | None = None
    ground: Ground | None = None
    dates: int = 1
    date_conditions: Sequence[DateCondition] | None = None
    projection: Literal["exact", "bilinear"] = "exact"
    cross_polarised: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cross_polarised, (bool, np.bool_)):
            raise InvalidInputError(f"cross_polarised must be True or False, got {self.cross_polarised!r}")
        if self.looks is not None and not (finite_number(self.looks) and self.looks > 0):
            raise InvalidInputError(f"looks must be a positive number or None (no speckle), got {self.looks!r}")
        if self.nesz_db is not None and not finite_number(self.nesz_db):
            raise InvalidInputError(f"nesz_db must be a number of dB or None (no noise), got {self.nesz_db!r}")
        if self.law not in SIGMA0_LAWS:
            raise InvalidInputError(f"law must be one of {', '.join(SIGMA0_LAWS)}, got {self.law!r}")
        if not (finite_number(self.land_cover_db) and self.land_cover_db >= 0):
            raise InvalidInputError(f"land_cover_db must be a contrast of 0 dB or more, got {self.land_cover_db!r}")
        if self.ground is not None and not isinstance(self.ground, Ground):
            raise InvalidInputError(f"ground must be a Ground (draw_ground(dem, family, seed)), got "
                                    f"{type(self.ground).__name__}")
        if self.projection not in ("exact", "bilinear"):
            raise InvalidInputError(f"projection must be 'exact' or 'bilinear', got {self.projection!r}")
        if self.date_conditions is None:
            if isinstance(self.dates, bool) or not isinstance(self.dates, (int, np.integer)) or self.dates < 1:
                raise InvalidInputError(f"dates must be a positive integer, got {self.dates!r}")
        else:
            conditions = tuple(self.date_conditions)
            if not conditions or not all(isinstance(condition, DateCondition) for condition in conditions):
                raise InvalidInputError("date_conditions must be DateConditions, one per date (draw_date_conditions "
                                        "makes them)")
            object.__setattr__(self, "date_conditions", conditions)
            object.__setattr__(self, "dates", len(conditions))

    @property
    def conditions(self) -> tuple[DateCondition, ...]:
        """The ground's condition on each date of a pass (one: a single observation)."""
        if self.date_conditions is None:
            return (DateCondition(),) * int(self.dates)
        return tuple(self.date_conditions)

    @property
    def is_stack(self) -> bool:
        """Several dates, or one under a condition other than the ground's own."""
        conditions = self.conditions
        return len(conditions) > 1 or conditions[0] != DateCondition()


@dataclasses.dataclass(frozen=True)
class SceneProducts:
    """What a simulated scene makes from its observation, as
    :func:`sarheight.terrain.observed.observed_scene` makes it for a user's.

    Attributes
    ----------
    register : the coarse DEM registered to the images.
    inversion, inversion_settings : the inversion's map (``inverted``) and its settings
        (None: the study's defaults).
    keep_dates : keep each date of a stack (``sar_dates``, ``other_sar_dates``); None: for
        a stack of several dates.
    error_sources : also keep the coarse DEM's error taken apart on the scene's grid
        (:data:`sarheight.terrain.simulated.ERROR_SOURCE_VARIABLES`), to tell where a
        refinement's error comes from.
    """

    register: bool = True
    inversion: bool = False
    inversion_settings: InversionSettings | None = None
    keep_dates: bool | None = None
    error_sources: bool = False

    def __post_init__(self) -> None:
        for name in ("register", "inversion", "error_sources"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"SceneProducts.{name} must be True or False, got {getattr(self, name)!r}")
        if self.keep_dates is not None and not isinstance(self.keep_dates, bool):
            raise InvalidInputError(f"SceneProducts.keep_dates must be True, False or None, got {self.keep_dates!r}")
        if self.inversion_settings is not None and not isinstance(self.inversion_settings, InversionSettings):
            raise InvalidInputError(f"inversion_settings must be InversionSettings, got "
                                    f"{type(self.inversion_settings).__name__}")


@dataclasses.dataclass(frozen=True)
class SarReading:
    """How a user's observations are read, as :func:`sarheight.reconstruction.reconstruct`
    reads one (the opposite pass's alike).

    Attributes
    ----------
    measurement : the swath and polarisation of a SAFE product (``"IW/VV"``).
    quantity, db : what a geocoded (map-grid) observation holds: ``"sigma0"``,
        ``"beta0"`` or ``"gamma0"``, in dB or linear.
    projection : ``"exact"`` (the facets' areas projected onto the radar grid) or
        ``"bilinear"``, as :func:`sarheight.reconstruction.reconstruct` takes it.
    """

    measurement: str = "IW/VV"
    quantity: str = "sigma0"
    db: bool = False
    projection: Literal["exact", "bilinear"] = "exact"

    def __post_init__(self) -> None:
        if not isinstance(self.measurement, str) or not self.measurement:
            raise InvalidInputError(f"measurement must be a string such as 'IW/VV', got {self.measurement!r}")
        if self.quantity not in QUANTITIES:
            raise InvalidInputError(f"quantity must be one of {', '.join(QUANTITIES)}, got {self.quantity!r}")
        if not isinstance(self.db, bool):
            raise InvalidInputError(f"db must be True or False, got {self.db!r}")
        if self.projection not in ("exact", "bilinear"):
            raise InvalidInputError(f"projection must be 'exact' or 'bilinear', got {self.projection!r}")


@dataclasses.dataclass(frozen=True)
class Execution:
    """Where and how a refinement's work runs; none of it changes the result beyond
    rounding.

    Attributes
    ----------
    device : the torch device of a network (None: a GPU where there is one); a GPU named
        here (``"cuda"``, ``"cuda:N"``) also runs the physics' passes
        (:attr:`physics_device`).
    tile, overlap : a network's tiles and their overlap (cells), as
        :func:`sarheight.training.predict.predict_height` takes them.
    blocks, client : the inversion block by block (fine cells a side of a block) on threads
        or a dask.distributed cluster (None, "local", a scheduler address or a Client),
        for grids larger than memory, as :func:`sarheight.terrain.inversion.invert_dem`
        takes them.
    progress : show progress bars (outside a terminal, a line every 30 s).
    """

    device: str | None = None
    tile: int = 256
    overlap: int = 64
    blocks: int | None = None
    client: Any = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.device is not None and not isinstance(self.device, str):
            raise InvalidInputError(f"device must be a torch device name ('cpu', 'cuda') or None, got {self.device!r}")
        if isinstance(self.tile, bool) or not isinstance(self.tile, (int, np.integer)) or self.tile < 8:
            raise InvalidInputError(f"tile must be an integer of at least 8 cells, got {self.tile!r}")
        if (isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, np.integer))
                or not 0 <= self.overlap <= self.tile // 2):
            raise InvalidInputError(f"overlap must be an integer from 0 to tile / 2 ({self.tile // 2}), got "
                                    f"{self.overlap!r}")
        if self.blocks is not None and (isinstance(self.blocks, bool) or not isinstance(self.blocks, (int, np.integer))
                                        or self.blocks < 16):
            raise InvalidInputError(f"blocks must be at least 16 fine cells a side, or None, got {self.blocks!r}")
        if not isinstance(self.progress, bool):
            raise InvalidInputError(f"progress must be True or False, got {self.progress!r}")

    @property
    def physics_device(self) -> str | None:
        """Where the physics' passes run (``device=`` of :func:`sarheight.reconstruct` and
        :func:`sarheight.simulate.simulate_sar`): the GPU that ``device`` names
        (``"cuda"``, ``"cuda:N"``), else None, the numba kernels on the CPU."""
        device = (self.device or "").strip().lower()
        return device if device == "cuda" or device.startswith("cuda:") else None

    @property
    def in_blocks(self) -> bool:
        """Whether the inversion is asked to run block by block (blocks or a cluster)."""
        return self.blocks is not None or self.client is not None

    def check_method(self, method: str, why: str = "") -> None:
        """Refuse blocks or a cluster for a refinement ``method`` other than the inversion,
        the one that runs block by block; ``why`` says how the method was chosen. The one
        rule of :func:`sarheight.refinement.refine_dem` and the command line."""
        if self.in_blocks and method != "inversion":
            chosen = f" ({why})" if why else ""
            raise InvalidInputError(f"blocks and a cluster (--blocks, --scheduler) run the inversion block by block: "
                                    f"the method is {method}{chosen}, which has none; leave them out, or give the "
                                    "method inversion")
