"""Multi-task models: ``model(batch) -> (B, T)`` logits (one per task, in the model's task order),
or a named output carrying them (``MultiTaskOutput``, ``ESMMOutput``; see ``recforge.outputs``)."""

from recforge.models.multi_task.aitm import AITM
from recforge.models.multi_task.esmm import ESMM
from recforge.models.multi_task.mmoe import MMOE
from recforge.models.multi_task.ple import PLE
from recforge.models.multi_task.shared_bottom import SharedBottom

MODELS = {"SharedBottom": SharedBottom, "ESMM": ESMM, "MMOE": MMOE, "PLE": PLE, "AITM": AITM}

__all__ = ["AITM", "ESMM", "MMOE", "MODELS", "PLE", "SharedBottom"]
