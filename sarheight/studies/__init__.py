"""The comparison studies, above the training floor: the terrain-height ablation and
refinement study, the building-height comparison and the LCZ fusion sweep, with what they
share: one scorer of height maps (:mod:`.scoring`) and one way to run a training of a fixed
budget over seeds (:mod:`.runs`).

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``).
"""

from ..extras import require

require("sarheight.studies")
