"""Contract of every model in ``recforge.models.generative.MODELS``: shapes, gradients, learning,
determinism, state_dict round trip, left-padding invariance (``tests/contract.py``); per-position
training with ``SeqTrainer``; M-FALCON candidate states equal one-candidate-at-a-time. RQ-VAE and
TIGER run the same checks with their own objectives (``tests/test_semantic_ids.py`` has the rest)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _retrieval_helpers import cyclic_log
from contract import check_model_contract, check_padding_invariance, left_pad
from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    catalog_of,
    eval_samples,
    leave_one_out_split,
    sequence_samples,
)
from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.metrics import RankingEvaluator
from recforge.models.defaults import ColumnRoles, default_model, feature_groups
from recforge.models.generative import HLLM, HSTU, MODELS, TIGER, SemanticIDs, tokenize_items
from recforge.objectives import RQVAELoss, semantic_id_loss
from recforge.trainers import SeqTrainer

NUM_ITEMS, L = 30, 8


def _llm_config(vocab: int, width: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip


def _item_tokens(vocab: int = 40, length: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(1, length + 1, (NUM_ITEMS,), generator=g)
    tokens = torch.randint(1, vocab, (NUM_ITEMS, length), generator=g)
    tokens = tokens * (torch.arange(length)[None, :] >= (length - lens)[:, None])  # left padding
    tokens[0] = 0
    return tokens


def id_features(num_items: int = NUM_ITEMS, embed_dim: int = 16, max_len: int = L) -> list:
    """The item id and the history sharing its table."""
    item = SparseFeature("item_id", num_items, embed_dim, initializer=RandomNormal(std=0.02))
    return [
        SequenceFeature("hist_item_id", num_items, embed_dim, shared_with="item_id", max_len=max_len),
        item,
    ]


GROUPS = feature_groups(id_features(), ColumnRoles())
# Small sizes over the registry defaults (``recforge.models.defaults``); a model without an entry
# here is built from its default as it is.
SMALL = {
    "HSTU": lambda: {"num_layers": 2, "num_heads": 2, "dropout": 0.1},
    "HLLM": lambda: {
        "item_tokens": _item_tokens(), "item_llm": _llm_config(40, 16), "user_llm": _llm_config(2, 24), "max_len": L,
    },
    "TIGER": lambda: {
        "semantic_ids": _semantic_ids(), "max_len": L + 4, "num_user_buckets": 7,
        "transformer": dict(
            embed_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, ffn_dim=32, dropout=0.1
        ),
    },
    "RQVAE": lambda: {"input_dim": 12, "dims": (16,), "latent_dim": 4, "num_codes": 4, "num_levels": 2},
}  # fmt: skip


def factory(name: str, **kw: object) -> Callable[[], nn.Module]:
    return lambda: default_model(name, GROUPS, **{**SMALL.get(name, dict)(), **kw})


FACTORIES = {name: factory(name) for name in MODELS}


def _hllm(**kw) -> HLLM:
    model = factory("HLLM", **kw)()
    assert isinstance(model, HLLM)
    return model


def hstu(num_items=NUM_ITEMS, *, embed_dim=16, max_len=L, num_actions=0, **kw) -> HSTU:
    """HSTU over an item history (and an action history when ``num_actions``)."""
    hist, item = id_features(num_items, embed_dim, max_len)
    init = RandomNormal(std=0.02)
    actions = [
        SequenceFeature("hist_action", n, embed_dim, max_len=max_len, initializer=init)
        for n in [num_actions]
        if n
    ]
    return HSTU([hist, *actions], [item], **kw)


def _semantic_ids() -> SemanticIDs:
    g = torch.Generator().manual_seed(2)
    return SemanticIDs.from_codes(torch.randint(0, 4, (NUM_ITEMS - 1, 2), generator=g), num_codes=(4, 4))


def _tiger() -> TIGER:
    model = factory("TIGER")()
    assert isinstance(model, TIGER)
    return model


OBJECTIVES = {"TIGER": semantic_id_loss, "RQVAE": RQVAELoss()}


def _batch(b: int = 32, seed: int = 0, *, actions: bool = False, times: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, L + 1, (b,), generator=g)
    real = torch.arange(L)[None, :] >= (L - lens)[:, None]  # (B, L) left padding
    hist = torch.randint(1, NUM_ITEMS, (b, L), generator=g) * real
    batch = {"hist_item_id": hist, "item_id": hist[:, -1] % (NUM_ITEMS - 1) + 1}  # learnable: next id
    if actions:
        batch["hist_action"] = torch.randint(1, 3, (b, L), generator=g) * real
    if times:
        batch["hist_time"] = torch.cumsum(torch.randint(0, 10_000, (b, L), generator=g), 1) * real
    return batch


def in_batch_loss(out, batch) -> torch.Tensor:
    logits = out.user @ out.item.T  # (B, B)
    return F.cross_entropy(logits, torch.arange(logits.shape[0]))


def _content_batch(b: int = 64, seed: int = 0) -> dict:
    """Content vectors from 4 x 4 planted clusters: a learnable signal for a 2-level quantiser."""
    g = torch.Generator().manual_seed(seed)
    coarse, fine = torch.randn(4, 12, generator=g) * 3, torch.randn(4, 12, generator=g)
    x = coarse[torch.randint(0, 4, (b,), generator=g)] + fine[torch.randint(0, 4, (b,), generator=g)]
    return {"embedding": x + 0.05 * torch.randn(b, 12, generator=g)}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_contract(name) -> None:
    if name == "RQVAE":  # no history: content vectors in, reconstruction and codes out
        check_model_contract(FACTORIES[name], _content_batch(), OBJECTIVES[name], lr=0.01)
        return
    check_model_contract(
        FACTORIES[name],
        _batch(),
        OBJECTIVES.get(name, in_batch_loss),
        sequence_columns=["hist_item_id"],
        lr=0.02,
    )


def test_tiger_user_token_changes_the_output_and_padding_does_not() -> None:
    torch.manual_seed(0)
    model = _tiger().eval()
    batch = _batch(6)
    with_users = dict(batch, user_id=torch.arange(1, 7))
    check_padding_invariance(model, with_users, ["hist_item_id"])
    with torch.no_grad():
        assert not torch.allclose(model(batch).logits, model(with_users).logits)


@pytest.mark.parametrize("positions", [False, True])
def test_contract_with_actions_and_time(positions: bool) -> None:
    factory = lambda: hstu(  # noqa: E731
        num_actions=3, num_time_buckets=16, dropout=0.0, position_embedding=positions
    )
    batch = _batch(actions=True, times=True)
    model = check_model_contract(factory, batch, in_batch_loss, lr=0.02)
    check_padding_invariance(model, batch, ["hist_item_id", "hist_action", "hist_time"])
    # time gaps change the output
    model.eval()
    with torch.no_grad():
        shifted = dict(batch, hist_time=batch["hist_time"] * 7)
        assert not torch.allclose(model.user_tower(batch), model.user_tower(shifted))


def test_sequence_tower_shape_and_padding_zero() -> None:
    model = factory("HSTU")().eval()
    batch = _batch(6)
    h = model.sequence_tower(batch)
    assert h.shape == (6, L, 16)
    assert torch.all(h[batch["hist_item_id"] == 0] == 0)
    assert torch.allclose(model.user_tower(batch), h[:, -1])


@pytest.mark.parametrize("positions", [False, True])
def test_jagged_and_padded_kernels_agree(positions: bool) -> None:
    torch.manual_seed(0)
    kw = dict(num_heads=2, num_time_buckets=8, position_embedding=positions)
    a = hstu(kernel="jagged", **kw).eval()
    b = hstu(kernel="padded", **kw).eval()
    b.load_state_dict(a.state_dict())
    batch = _batch(10, times=True)
    assert torch.allclose(a.sequence_tower(batch), b.sequence_tower(batch), atol=1e-5)


@pytest.mark.parametrize("positions", [False, True])
def test_m_falcon_equals_one_candidate_at_a_time(positions: bool) -> None:
    torch.manual_seed(0)
    model = hstu(
        max_len=L + 1, num_heads=2, num_actions=3, num_time_buckets=8, position_embedding=positions
    ).eval()
    batch = _batch(5, actions=True, times=True)
    cands = torch.randint(1, NUM_ITEMS, (5, 7))
    with torch.no_grad():
        many = model.candidate_states(batch, cands)  # (B, N, D)
        for n in range(cands.shape[1]):
            one = left_pad(batch, [], 0)
            one["hist_item_id"] = torch.cat([batch["hist_item_id"], cands[:, n : n + 1]], 1)
            one["hist_action"] = torch.cat([batch["hist_action"], torch.zeros(5, 1, dtype=torch.long)], 1)
            one["hist_time"] = torch.cat([batch["hist_time"], batch["hist_time"][:, -1:]], 1)
            assert torch.allclose(many[:, n], model.user_tower(one), atol=1e-5), n


def test_seq_trainer_learns_next_item(tmp_path) -> None:
    sp = leave_one_out_split(cyclic_log())
    train = ColumnarDataset(sequence_samples(sp.histories(), 6))
    test = ColumnarDataset(eval_samples(sp.histories("train", "valid"), sp.test, 6))
    ev = RankingEvaluator(catalog_of(sp.num_items), ks=(5,), seen=None)
    torch.manual_seed(0)
    model = hstu(sp.num_items, num_layers=1, max_len=6, dropout=0.0)
    before = ev.evaluate(model, BatchLoader(test, 64))["hr@5"]
    trainer = SeqTrainer(
        model,
        num_items=sp.num_items,
        num_negatives=10,
        n_epoch=10,
        optimizer_params={"lr": 0.02},
        model_path=tmp_path,
        progress=False,
        plot=False,
        evaluator=ev,
    )
    trainer.fit(BatchLoader(train, 32, shuffle=True))
    after = ev.evaluate(model, BatchLoader(test, 64))["hr@5"]
    assert after > before + 0.3, (before, after)


def test_hllm_item_cache_matches_encoder_and_widths_bridge() -> None:
    torch.manual_seed(0)
    model = _hllm().eval()
    ids = torch.tensor([[3, 5], [7, 3]])
    with torch.no_grad():
        fresh = model.item_tower({"item_id": ids})
        hist = {"hist_item_id": torch.tensor([[0, 2, 4], [1, 5, 6]])}
        user = model.user_tower(hist)
        model.cache_items(batch_size=7)
        assert model.item_cache.shape == (NUM_ITEMS, 16)  # item-LLM width; the bridge maps 16 -> 24
        assert torch.allclose(model.item_tower({"item_id": ids}), fresh, atol=1e-5)
        assert torch.allclose(model.user_tower(hist), user, atol=1e-5)
    model.clear_cache()
    assert model.item_cache is None


def test_hllm_rejects_bad_item_tokens() -> None:
    with pytest.raises(ValueError, match="item_tokens"):
        HLLM(torch.zeros(4, 3), item_llm=_llm_config(40, 16), user_llm=_llm_config(2, 16))


def _bert_config(vocab: int, width: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip


def test_hllm_mean_pooling_is_the_masked_mean_and_ignores_left_padding() -> None:
    torch.manual_seed(0)
    model = HLLM(
        _item_tokens(), item_llm=_bert_config(40, 16), user_llm=_llm_config(2, 24), item_pooling="mean"
    ).eval()
    assert model.item_token is None
    ids = torch.tensor([4, 9])
    tokens = model.item_tokens[ids]  # (2, T)
    with torch.no_grad():
        got = model._encode_items(ids)  # (2, 16)
        for row, t in zip(got, tokens):
            text = t[t != 0][None]  # (1, n) no padding at all
            want = model.item_llm(input_ids=text).last_hidden_state.mean(1)[0]
            assert torch.allclose(row, want, atol=1e-5)


def test_hllm_mean_pooling_contract() -> None:
    from transformers import BertModel

    factory = lambda: HLLM(  # noqa: E731  (no pooler: HLLM reads token states, not BERT's pooled output)
        _item_tokens(), item_llm=BertModel(_bert_config(40, 16), add_pooling_layer=False),
        user_llm=_llm_config(2, 24), max_len=L, item_pooling="mean",
    )  # fmt: skip
    check_model_contract(factory, _batch(), in_batch_loss, sequence_columns=["hist_item_id"], lr=0.02)


def test_hllm_frozen_item_llm_trains_the_bridge_through_the_cache() -> None:
    torch.manual_seed(0)
    model = _hllm()
    model.item_llm.requires_grad_(False)
    model.cache_items()
    assert model.item_llm.training  # caching ran in eval mode and restored the mode
    batch = _batch(8)
    out = model(batch)
    in_batch_loss(out, batch).backward()
    assert model.bridge.weight.grad is not None and model.bridge.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.item_llm.parameters())


def test_hllm_rejects_a_bidirectional_user_llm() -> None:
    with pytest.raises(ValueError, match="causal"):
        HLLM(_item_tokens(), item_llm=_llm_config(40, 16), user_llm=_bert_config(2, 16))


def test_hllm_rejects_unknown_pooling() -> None:
    with pytest.raises(ValueError, match="item_pooling"):
        HLLM(_item_tokens(), item_llm=_llm_config(40, 16), user_llm=_llm_config(2, 16), item_pooling="cls")


def test_tokenize_items_left_pads_with_a_padding_row() -> None:
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "toy", "story", "drama", "comedy"]
    tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    tokens = tokenize_items(["Toy Story comedy", "drama"], tok, max_length=4)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert tokens.tolist() == [
        [0, 0, 0, 0],
        [cls, 5, 6, sep],
        [0, cls, 7, sep],
    ]  # truncated to 4, left-padded
    with torch.no_grad():  # the padded row encodes like the unpadded text
        model = HLLM(
            tokens, item_llm=_bert_config(9, 16), user_llm=_llm_config(2, 16), item_pooling="mean"
        ).eval()
        alone = model.item_llm(input_ids=torch.tensor([[cls, 7, sep]])).last_hidden_state.mean(1)[0]
        assert torch.allclose(model._encode_items(torch.tensor([2]))[0], alone, atol=1e-5)
