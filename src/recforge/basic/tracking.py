"""``torch_rechub.basic.tracking``: experiment loggers. recforge has no Weights & Biases, SwanLab or
tensorboardX client; its trainers write every epoch's metrics to ``model_path/metrics.jsonl`` and,
with ``tensorboard=True``, to TensorBoard. Constructing a logger says so."""

from __future__ import annotations


class _Unavailable:
    service = ""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError(
            f"{type(self).__name__}: recforge has no {self.service} logger; its trainers log every epoch to "
            "model_path/metrics.jsonl, and to TensorBoard with tensorboard=True (drop model_logger=...)"
        )


class WandbLogger(_Unavailable):
    service = "Weights & Biases"


class SwanLabLogger(_Unavailable):
    service = "SwanLab"


class TensorBoardXLogger(_Unavailable):
    service = "tensorboardX"


__all__ = ["SwanLabLogger", "TensorBoardXLogger", "WandbLogger"]
