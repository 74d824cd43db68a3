"""Contract test over the behaviour-sequence ranking models (DIN, DIEN with every GRU type, BST).

The batches come from the planted target-history generator, so "the loss falls" means the model
learned to compare the target with the history.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from contract import check_model_contract, check_padding_invariance
from recforge.datasets.synthetic_behavior import make_behavior_ctr
from recforge.features import SequenceFeature, SparseFeature
from recforge.models import ranking
from recforge.models.defaults import default_model
from recforge.models.ranking import BST, DIEN, DIN
from recforge.objectives import BinaryCrossEntropy
from recforge.outputs import RankingOutput, logits_of
from recforge.trainers import CTRTrainer

D, V, C, L = 8, 60, 6, 8
USER = SparseFeature("user_id", vocab_size=20, embed_dim=D)
TARGETS = [SparseFeature("item_id", V, D), SparseFeature("cate_id", C, D)]
HIST = [
    SequenceFeature(f"hist_{t.name}", t.vocab_size, D, pooling="concat", shared_with=t.name) for t in TARGETS
]
NEG = [
    SequenceFeature(f"neg_hist_{t.name}", t.vocab_size, D, pooling="concat", shared_with=t.name)
    for t in TARGETS
]
SEQ_COLUMNS = [f.name for f in HIST + NEG]
# ReLU in the prediction MLP: with Dice there (the default) 60 steps at lr 1e-2 move the features
# faster than Dice's batch-norm running statistics follow, so eval-mode loss lags train-mode loss.
# The activation units keep their default Dice.
MLP = {"dims": [16], "dropout": 0.1, "activation": "relu"}
ATT = {"dims": [8]}

FEATURES = [USER, *TARGETS, *HIST, *NEG]  # groups: sparse = user + targets, history, target, neg_history


def small(name: str, **params: object) -> Callable[[], nn.Module]:
    """The registry default (``recforge.models.defaults``) with this file's small MLPs."""
    return lambda: default_model(name, FEATURES, mlp_params=MLP, **params)


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "DIN": small("DIN", attention_mlp_params=ATT),
    "DIN[sum]": small("DIN", attention_mlp_params=ATT, softmax_attention=False),  # the paper's weights
    "DIEN[AUGRU]": small("DIEN", attention_mlp_params=ATT),
    "DIEN[AIGRU]": small("DIEN", attention_mlp_params=ATT, gru_type="AIGRU"),
    "DIEN[AGRU]": small("DIEN", attention_mlp_params=ATT, gru_type="AGRU"),
    "BST": small("BST"),
}


def seq_batch(n: int, seed: int, *, deterministic: bool = False) -> dict[str, torch.Tensor]:
    data = make_behavior_ctr(n, num_items=V, num_categories=C, max_len=L, seed=seed)
    batch = {k: torch.from_numpy(v) for k, v in data.columns.items()}
    if deterministic:  # the planted rule without label noise: learnable only from target vs history
        batch["label"] = torch.from_numpy((data.prob > 0.5).astype("float32"))
    batch["user_id"] = torch.randint(1, 20, (n,), generator=torch.Generator().manual_seed(seed))
    return batch


def test_every_sequence_model_is_covered() -> None:
    tested = {name.split("[")[0] for name in FACTORIES}
    assert tested == set(ranking.SEQUENCE_MODELS)
    assert set(ranking.SEQUENCE_MODELS) <= set(ranking.MODELS)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_contract(name: str) -> None:
    model = check_model_contract(
        FACTORIES[name],
        seq_batch(64, seed=1),
        BinaryCrossEntropy(),
        learnable=seq_batch(256, seed=2, deterministic=True),
        sequence_columns=SEQ_COLUMNS,
        steps=60,
    )
    assert {f.name for f in model.features} >= {"item_id", "hist_item_id", "cate_id"}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_rows_do_not_depend_on_other_rows_padding(name: str) -> None:
    """Each row's eval output equals its output alone, where the batch's longest history no longer
    forces extra padding on it (padding is not trimmed away for the short rows)."""
    torch.manual_seed(0)
    model = FACTORIES[name]().eval()
    batch = seq_batch(16, seed=3)
    with torch.no_grad():
        together = logits_of(model(batch))
        for i in range(16):
            row = {k: v[i : i + 1] for k, v in batch.items()}
            assert torch.allclose(logits_of(model(row)), together[i : i + 1], atol=1e-5), f"{name} row {i}"


def test_padding_check_catches_unmasked_attention() -> None:
    """The padding-invariance check used above is not vacuous for these models: an attention
    without a mask (padding embeddings get weight) fails it."""

    class Unmasked(DIN):
        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            ids = batch["hist_item_id"]
            emb = self.embedding.lookup("hist_item_id", ids)  # (B, L, D), padding rows included
            return emb.sum((1, 2))

    torch.manual_seed(0)
    model = Unmasked([USER, *TARGETS], HIST, TARGETS, mlp_params=MLP, attention_mlp_params=ATT)
    with pytest.raises(AssertionError, match="left-padding"):
        check_padding_invariance(model, seq_batch(8, seed=4), SEQ_COLUMNS)


def test_dien_aux_loss_only_in_training_and_trainer_integration(tmp_path: object) -> None:
    torch.manual_seed(0)
    model = FACTORIES["DIEN[AUGRU]"]()
    batch = seq_batch(32, seed=5)
    out = model.train()(batch)
    assert isinstance(out, RankingOutput) and out.aux_loss.item() > 0
    out = model.eval()(batch)
    assert isinstance(out, RankingOutput) and out.aux_loss.item() == 0.0
    # Serving needs no negative histories.
    served = model({k: v for k, v in batch.items() if not k.startswith("neg_")})
    assert torch.equal(served.logits, out.logits)
    from recforge.data import BatchLoader, ColumnarDataset

    data = ColumnarDataset(seq_batch(96, seed=6))
    trainer = CTRTrainer(model, n_epoch=1, model_path=str(tmp_path), progress=False, plot=False)
    trainer.fit(BatchLoader(data, 64, shuffle=True), BatchLoader(data, 64))
    assert trainer.predict(model, BatchLoader(data, 64)).shape == (96,)


def test_bad_feature_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="pair up"):
        DIN([USER], HIST, TARGETS[:1])
    mean = SequenceFeature("hist_item_id", V, D, pooling="mean", shared_with="item_id")
    with pytest.raises(ValueError, match="pooling='concat'"):
        DIN([USER], [mean], TARGETS[:1])
    with pytest.raises(ValueError, match="gru_type"):
        DIEN([USER], HIST, TARGETS, gru_type="LSTM")
    with pytest.raises(ValueError, match="divisible"):
        BST([USER], HIST, TARGETS, nhead=3)
    with pytest.raises(ValueError, match="max_seq_len"):
        BST([USER], HIST, TARGETS, nhead=2, max_seq_len=4).eval()(seq_batch(8, seed=0))
