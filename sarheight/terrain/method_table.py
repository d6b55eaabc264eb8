"""The one table of the methods that refine a coarse DEM (:data:`REFINEMENT_METHODS`):
each method's key (the studies' and the reports'), its labels, the scene variable that
holds its map, what it reads, the name ``refine_dem`` and ``sarheight terrain refine
--method`` know it by, and where its map is made.

Data only, importing nothing of the physics: the command line reads names from it at
start. Everything that lists methods derives its list from here: the non-learned maps of
a scene and the bar a network must clear (:mod:`sarheight.terrain.methods`),
``refine_dem``'s methods (:mod:`sarheight.refinement`), the command's ``--method``, the
studies' tables and the path benchmark. Adding a method is its module (what makes its
map), one row here, and its test.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BAR_METHODS", "BY_KEY", "COMMAND_METHODS", "DEFAULT_METHODS", "DUAL_POLARISATION_METHOD", "INPUT_KINDS",
           "REFINEMENT_METHODS",
           "RefinementMethod", "by_command", "default_methods_in_words"]


@dataclass(frozen=True)
class RefinementMethod:
    """One way of refining a coarse DEM.

    Attributes
    ----------
    key : its key in the studies, their JSON and the reports.
    label : how the reports name it.
    short_label : how a table's column names it.
    variable : the scene variable that holds its map (None: made from the scene when asked,
        or, for a network, predicted).
    reads : what it reads, in words (the coarse DEM, the priors, the images).
    command : its name in :func:`sarheight.refinement.refine_dem` and ``sarheight terrain
        refine --method`` (None: scored by the studies only).
    maker : where its map is made, ``module:function`` below ``sarheight`` (for a map a
        scene does not hold).
    bar : among the non-learned methods of which the best is the bar a network must clear.
    every_scene : every scene gives its map (the inversion's only scenes built with it).
    learned : a trained network.
    """

    key: str
    label: str
    short_label: str
    variable: str | None
    reads: str
    command: str | None = None
    maker: str | None = None
    bar: bool = True
    every_scene: bool = True
    learned: bool = False


#: Every method, in the order the reports list them.
REFINEMENT_METHODS = (
    RefinementMethod("coarse_bilinear", "coarse DEM, bilinear", "bilinear", "coarse_height", "the coarse DEM"),
    RefinementMethod("coarse_bicubic", "coarse DEM, bicubic", "bicubic", "coarse_bicubic", "the coarse DEM"),
    RefinementMethod("coarse_lanczos", "coarse DEM, Lanczos", "Lanczos", "coarse_lanczos", "the coarse DEM"),
    RefinementMethod("registered", "registered to the priors (Lanczos)", "registered (Lanczos)", "coarse_registered",
                     "the coarse DEM and the priors"),
    RefinementMethod("back_projection", "registered, back-projection", "back-projection", "coarse_backprojected",
                     "the coarse DEM and the priors"),
    RefinementMethod("back_projection_priors", "registered, back-projection, kriged priors",
                     "back-projection + kriged priors", "coarse_refined", "the coarse DEM and the priors",
                     command="back-projection"),
    RefinementMethod("clinometry", "clinometry (SAR physics)", "clinometry", None,
                     "the coarse DEM, the priors and one pass's image", command="clinometry",
                     maker="terrain.clinometry:clinometry_heights"),
    RefinementMethod("priors_only", "priors-only interpolation", "priors only", "prior_interpolated", "the priors",
                     bar=False),
    RefinementMethod("inversion", "inversion (SAR physics)", "inversion", "inverted",
                     "the coarse DEM, the priors and every image", command="inversion",
                     maker="terrain.inversion:invert_dem", bar=False, every_scene=False),
    RefinementMethod("network", "refinement network", "network", None,
                     "the coarse DEM, the priors, the images and the non-learned maps", command="network",
                     maker="training.predict:predict_height", bar=False, every_scene=False, learned=True),
)

#: The methods by key.
BY_KEY = {method.key: method for method in REFINEMENT_METHODS}

#: The names :func:`sarheight.refinement.refine_dem` and ``--method`` take: the network,
#: then the physics from the most it reads to the least.
COMMAND_METHODS = ("network", "inversion", "clinometry", "back-projection")

#: What each kind of input is, in words.
INPUT_KINDS = {"one_image": "one image", "one_pass_dates": "one pass of several dates",
               "both_passes": "both passes"}

#: The method :func:`sarheight.refinement.refine_dem` takes where none is named, by what it
#: is given (:data:`INPUT_KINDS`): the one of the lowest RMSE on the validation DEMs of the
#: stack study (``benchmarks/terrain_stack/packaged.json``, its figures of the non-learned
#: methods and of the networks that ship), a network only where it is
#: ``sarheight.refinement.NETWORK_MARGIN`` below the inversion in every condition of that
#: kind (:func:`sarheight.studies.stacking.default_methods`; ``tests/studies`` holds the
#: table to the study's figures).
DEFAULT_METHODS = {"one_image": "clinometry", "one_pass_dates": "inversion", "both_passes": "inversion"}


#: The method :func:`sarheight.refinement.refine_dem` takes where none is named for one
#: image of both polarisations (VV and VH): the lowest mean RMSE without learning on the
#: validation DEMs of the inversion study's ``cover_dual`` condition
#: (``benchmarks/terrain_inversion/inversion.json``: the inversion 0.922 of back-projection
#: with the kriged priors, clinometry 0.962; a test holds this to it). Only the inversion
#: reads the cross-polarised band; the stack study's images, which :data:`DEFAULT_METHODS`
#: follows, have one polarisation.
DUAL_POLARISATION_METHOD = "inversion"


def default_methods_in_words() -> str:
    """:data:`DEFAULT_METHODS` in words, for help texts: ``"clinometry for one image, the
    inversion for one pass of several dates, ..."``."""
    return ", ".join(f"{'the ' if method == 'inversion' else ''}{method} for {INPUT_KINDS[kind]}"
                     for kind, method in DEFAULT_METHODS.items())


#: The non-learned methods among which the best, per DEM and condition, is the bar every
#: network must clear.
BAR_METHODS = tuple(method.key for method in REFINEMENT_METHODS if method.bar)


def by_command(command: str) -> RefinementMethod:
    """The method ``refine_dem`` knows as ``command`` (KeyError for another name)."""
    return next(method for method in REFINEMENT_METHODS if method.command == command)

