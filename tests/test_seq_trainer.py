"""End-to-end: SeqTrainer trains a per-position model on a learnable next-item signal with each
loss (sampled softmax, full CE, BCE) and beats its untrained full-ranking HR@5."""

from __future__ import annotations

import pytest
import torch

from _retrieval_helpers import MeanPoolSeq, cyclic_log
from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    catalog_of,
    eval_samples,
    leave_one_out_split,
    sequence_samples,
)
from recforge.metrics import RankingEvaluator
from recforge.trainers import SeqTrainer


@pytest.mark.parametrize(
    ("loss", "l2"), [("sampled_softmax", False), ("full", False), ("bce", False), ("sampled_softmax", True)]
)
def test_seq_trainer_learns(loss, l2, tmp_path) -> None:
    sp = leave_one_out_split(cyclic_log())
    h = sp.histories()
    train = ColumnarDataset(sequence_samples(h, 6))
    test = ColumnarDataset(eval_samples(sp.histories("train", "valid"), sp.test, 6))
    ev = RankingEvaluator(catalog_of(sp.num_items), ks=(5,), seen=None, normalize=l2)
    torch.manual_seed(0)
    model = MeanPoolSeq(sp.num_items, dim=16, max_len=6)
    before = ev.evaluate(model, BatchLoader(test, 64))["hr@5"]
    trainer = SeqTrainer(
        model,
        num_items=sp.num_items,
        loss=loss,
        num_negatives=10,
        n_epoch=30,
        optimizer_params={"lr": 0.02},
        model_path=tmp_path,
        progress=False,
        plot=False,
        evaluator=ev,
        l2_normalize=l2,
        temperature=0.1 if l2 else 1.0,
    )
    trainer.fit(BatchLoader(train, 32, shuffle=True))
    after = ev.evaluate(model, BatchLoader(test, 64))["hr@5"]
    assert after > before + 0.3, (before, after)
