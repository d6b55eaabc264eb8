"""Terrain refinement: a coarse DEM made finer with SAR, priors and physics, then a network.

One concept a module, lowest first (each imports only those before it, and the physics
below the package; ``docs/architecture.md`` places them among the other floors):

- ``backprojection``: the coarse DEM refined without SAR or learning: resampling
  (bilinear, bicubic, Lanczos), iterative back-projection, registration to the priors,
  the priors' residuals kriged (:func:`refined_without_sar`);
- ``geometry``: a scene's pass, and the Sentinel-1-like geometry of simulated scenes;
- ``grid``: block means (what a coarser DEM measures), degraded DEMs, the refinement grid;
- ``files``: scene files (NetCDF-4, written atomically, checked when opened);
- ``radar_images``: every observation read in radar geometry over the DEM, dates
  composited;
- ``relief``: the power law of a terrain's relief (what a coarse cell loses), the sparse
  operators of a grid (the coarse cells' exact area means among them);
- ``land_cover``: the ground as classes, told apart by the images (or a user's map);
- ``forward``: the inversion's forward model: the project's simulator as the scenes are
  made with it, read where the observation is, and its probed derivative;
- ``registration``: the coarse DEM registered to the images (flagged where it may have
  failed);
- ``inversion``: the physics refinement (the fine DEM whose simulated observations match
  the observed ones);
- ``classes``: the terrain classes: one classification of the cells (the masks and the
  coarse slope) and the groupings the training and the studies read;
- ``variables``: what a scene holds and derives (the model's scale-free inputs, the
  refinement's grouping of the terrain classes);
- ``observed``: a scene from a user's observations, DEM and priors, with its checks;
- ``augment``: new terrain from a DEM (turned, mirrored, scaled; crops of it);
- ``simulated``: scenes simulated from fine DEMs;
- ``scene_sets``: sets of them as files over the axes of a set (here or on a dask
  cluster);
- ``clinometry``: the inversion's one-step case (a Wiener solve of the brightness);
- ``methods``: the non-learned methods' maps on a scene, and the channels a network
  that stacks them reads.

The workflow a user calls, :func:`sarheight.refinement.refine_dem`, is on its own floor
above the learning one (it runs the network when given checkpoints), not in this package.
The package's entries are importable from here (``from sarheight.terrain import
invert_dem``); they are loaded on first use, so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The user entries of terrain refinement, by the module that holds each.
ENTRIES = {
    "observed_scene": "observed",
    "simulate_scene": "simulated",
    "simulate_scenes": "scene_sets",
    "SceneAxes": "scene_sets",
    "ObservationSpec": "scene_options",
    "SceneProducts": "scene_options",
    "Scene": "variables",
    "SarReading": "scene_options",
    "Execution": "scene_options",
    "scene_geometry": "geometry",
    "open_scene": "files",
    "write_scene": "files",
    "block_mean": "grid",
    "degrade_dem": "grid",
    "refinement_grid": "grid",
    "scene_variable": "variables",
    "refinement_classes": "variables",
    "REFINEMENT_CLASSES": "classes",
    "CELL_CLASSES": "classes",
    "MASK_CLASSES": "classes",
    "cell_classes": "classes",
    "invert_dem": "inversion",
    "InversionSettings": "inversion",
    "register_to_images": "registration",
    "clinometry_heights": "clinometry",
    "back_project": "backprojection",
    "upsample": "backprojection",
}

__all__ = sorted(ENTRIES)


def __getattr__(name: str) -> Any:
    if name in ENTRIES:
        return getattr(importlib.import_module(f".{ENTRIES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(ENTRIES))
