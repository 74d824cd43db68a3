"""Semantic IDs and TIGER: k-means and the residual quantiser, RQ-VAE training (reconstruction,
code usage, dead-code restarts), disambiguation and its JSON form, the prefix trie, constrained beam
search against brute-force enumeration, IDs stable across save/load and ``add_items``, list metrics
against full ranking, TIGER learning a next-item signal through the one loop, content vectors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from _retrieval_helpers import cyclic_log
from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    SeenItems,
    attribute_embeddings,
    cached,
    eval_samples,
    leave_one_out_split,
    load_item_attributes,
    model_item_embeddings,
    next_item_samples,
    text_embeddings,
)
from recforge.layers.quantize import ResidualQuantizer, VectorQuantizer, kmeans, perplexity
from recforge.metrics import ListRankingEvaluator, RankingAccumulator, full_ranking_metrics, list_ranks
from recforge.models.generative import RQVAE, TIGER, PrefixTrie, SemanticIDs, collision_stats
from recforge.objectives import RQVAELoss, rqvae_losses, semantic_id_loss
from recforge.trainers.loop import Trainer

SMALL = dict(embed_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, ffn_dim=32, dropout=0.0)


def _clusters(n: int = 512, dim: int = 12, seed: int = 0) -> torch.Tensor:
    """Two-level planted structure (8 coarse x 8 fine centres), what residual quantisation models."""
    g = torch.Generator().manual_seed(seed)
    coarse, fine = torch.randn(8, dim, generator=g) * 4, torch.randn(8, dim, generator=g)
    x = coarse[torch.randint(0, 8, (n,), generator=g)] + fine[torch.randint(0, 8, (n,), generator=g)]
    return x + 0.05 * torch.randn(n, dim, generator=g)


# -- quantisers --------------------------------------------------------------------------------------
def test_kmeans_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=g)
    found = kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    dist = torch.cdist(centres, found).amin(1)
    assert bool((dist < 0.2).all()), found


def test_kmeans_with_fewer_points_than_codes() -> None:
    c = kmeans(torch.randn(3, 4), 8)
    assert c.shape == (8, 4) and torch.isfinite(c).all()


def test_vector_quantizer_kmeans_init_on_first_training_batch_only() -> None:
    vq = VectorQuantizer(4, 2)
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]]).repeat(10, 1)
    vq.eval()
    vq(x)
    assert not bool(vq.initialized)  # eval mode changes nothing
    vq.train()
    out = vq(x)
    assert bool(vq.initialized)
    assert torch.allclose(out.codewords, x, atol=1e-3)  # every point is a centre
    before = vq.codebook.detach().clone()
    vq(x + 100)
    assert torch.equal(vq.codebook.detach(), before)  # no second init


def test_dead_codes_restart_on_batch_vectors() -> None:
    vq = VectorQuantizer(4, 2, dead_fraction=0.5, usage_decay=0.5)
    vq.train()
    x = torch.randn(64, 2)
    vq(x)  # k-means init
    with torch.no_grad():
        vq.codebook[3] = torch.tensor([1e3, 1e3])  # far away: never chosen
    for _ in range(4):
        vq(x)
    assert float(vq.codebook[3].detach().abs().max()) < 100  # moved onto a batch vector
    assert perplexity(vq.nearest(x), 4) > 1.5


def test_residual_quantizer_encode_decode_and_straight_through() -> None:
    rq = ResidualQuantizer(12, num_codes=(8, 8))
    x = _clusters(256)
    rq.train()
    out = rq(x.requires_grad_())
    assert out.codes.shape == (256, 2) and out.residuals.shape == (256, 2, 12)
    assert torch.equal(rq.encode(x), out.codes)
    assert torch.allclose(rq.decode(out.codes), out.codewords.sum(1), atol=1e-5)
    assert torch.allclose(out.quantized, out.codewords.sum(1), atol=1e-5)
    out.quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # straight-through
    # the second level quantises what the first left over, so two levels beat one
    err1 = (x - out.codewords[:, 0]).pow(2).sum(1).mean()
    err2 = (x - out.codewords.sum(1)).pow(2).sum(1).mean()
    assert err2 < 0.5 * err1


def test_rqvae_training_improves_reconstruction_and_uses_codes() -> None:
    torch.manual_seed(0)
    x = _clusters(1024)
    model = RQVAE(12, dims=(32,), latent_dim=8, num_codes=8, num_levels=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = RQVAELoss()

    def recon() -> float:
        model.eval()
        with torch.no_grad():
            return float(rqvae_losses(model({"embedding": x})).reconstruction)

    model.train()
    model({"embedding": x[:256]})  # the first batch initialises the codebooks
    first = recon()
    g = torch.Generator().manual_seed(0)
    for _ in range(800):
        model.train()
        batch = {"embedding": x[torch.randint(0, len(x), (128,), generator=g)]}
        loss = loss_fn(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert recon() < 0.5 * first
    ppl = model.code_perplexity(x)
    assert all(p > 4 for p in ppl), ppl  # most of the 8 codes of each level are in use
    ids = model.semantic_ids(torch.cat([torch.zeros(1, 12), x]))
    assert ids.stats_after().collision_rate == 0.0
    assert ids.stats_before().unique >= 32  # most of the 64 planted (coarse, fine) pairs are separated


# -- the ID table ------------------------------------------------------------------------------------
def test_disambiguation_makes_ids_unique_in_item_order() -> None:
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [3, 3], [1, 2], [0, 0]])
    ids = SemanticIDs.from_codes(codes, num_codes=(4, 4))
    assert ids.num_codes == (4, 4, 3)  # capacity = the largest bucket
    assert ids.codes[0].tolist() == [-1, -1, -1]
    assert ids.codes[1:, 2].tolist() == [0, 0, 1, 0, 2, 1]
    before, after = ids.stats_before(), ids.stats_after()
    assert before.items == 6 and before.unique == 3 and before.max_bucket == 3 and before.colliding_items == 5
    assert before.collision_rate == pytest.approx(0.5)
    assert after.collision_rate == 0.0 and after.unique == 6
    assert collision_stats(ids.codes[1:]).max_bucket == 1


def test_extend_continues_buckets_and_respects_capacity() -> None:
    ids = SemanticIDs.from_codes(torch.tensor([[1, 2], [1, 2], [0, 1]]), num_codes=(4, 4), capacity=4)
    more = ids.extend(torch.tensor([[1, 2], [2, 2], [1, 2]]))
    assert torch.equal(more.codes[:4], ids.codes)  # existing IDs unchanged
    assert more.codes[4:].tolist() == [[1, 2, 2], [2, 2, 0], [1, 2, 3]]
    assert more.stats_after().collision_rate == 0.0
    with pytest.raises(ValueError, match="capacity"):
        more.extend(torch.tensor([[1, 2]]))


def test_semantic_ids_json_round_trip(tmp_path) -> None:
    ids = SemanticIDs.from_codes(torch.randint(0, 5, (40, 3)), num_codes=(5, 5, 5), capacity=4)
    ids.save(tmp_path / "ids.json")
    back = SemanticIDs.load(tmp_path / "ids.json")
    assert torch.equal(back.codes, ids.codes) and back.num_codes == ids.num_codes
    json.loads((tmp_path / "ids.json").read_text())  # plain JSON
    with pytest.raises(ValueError, match="format"):
        SemanticIDs.from_dict({"codes": [], "num_codes": []})


def test_trie_children_match_enumeration() -> None:
    ids = SemanticIDs.from_codes(torch.randint(0, 3, (25, 2), generator=torch.Generator().manual_seed(0)),
                                 num_codes=(3, 3))  # fmt: skip
    trie = PrefixTrie(ids)
    valid = {tuple(r) for r in ids.codes[1:].tolist()}
    # walk every prefix: the trie's children are exactly the codes that continue some valid ID
    frontier = {(): 0}
    for depth in range(ids.length):
        nxt = {}
        for prefix, node in frontier.items():
            kids = trie.children(torch.tensor([node]))[0]
            want = sorted({v[depth] for v in valid if v[:depth] == prefix})
            assert torch.nonzero(kids >= 0).squeeze(1).tolist() == want
            for c in want:
                nxt[(*prefix, c)] = int(kids[c])
        frontier = nxt
    assert {p: int(trie.item[n]) for p, n in frontier.items()} == {
        tuple(r): i + 1 for i, r in enumerate(ids.codes[1:].tolist())
    }
    assert int(trie.leaf_count[0]) == 25
    assert (trie.children(torch.tensor([-1])) == -1).all()


def test_trie_rejects_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="share a full"):
        PrefixTrie(SemanticIDs(torch.tensor([[-1, -1], [0, 1], [0, 1]]), (2, 2)))


# -- TIGER decoding ----------------------------------------------------------------------------------
def _small_tiger(seed: int = 0, num_items: int = 19, **kw) -> TIGER:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    ids = SemanticIDs.from_codes(torch.randint(0, 3, (num_items - 1, 2), generator=g), num_codes=(3, 3))
    return TIGER(ids, transformer=SMALL, max_len=6, num_user_buckets=5, **kw).eval()


def _brute_force(model: TIGER, batch: dict, k: int, exclude: tuple | None = None):
    """Score every valid ID of every row by teacher forcing; the top-k."""
    n = model.item_codes.shape[0]
    b = batch["hist_item_id"].shape[0]
    scores = torch.full((b, n), -torch.inf)
    with torch.no_grad():
        for item in range(1, n):
            out = model(dict(batch, item_id=torch.full((b,), item)))
            logp = torch.log_softmax(out.logits, -1).gather(2, out.codes[..., None]).squeeze(2)  # (B, C)
            scores[:, item] = logp.sum(1)
    if exclude is not None:
        scores[exclude[0], exclude[1]] = -torch.inf
    return scores.topk(k, dim=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_constrained_beam_search_equals_brute_force(seed: int) -> None:
    model = _small_tiger(seed)
    g = torch.Generator().manual_seed(seed)
    batch = {"hist_item_id": torch.randint(0, 19, (5, 4), generator=g), "user_id": torch.arange(5)}
    ex = (torch.tensor([0, 0, 3]), torch.tensor([4, 7, 1]))
    for exclude in (None, ex):
        want = _brute_force(model, batch, 6, exclude)
        got = model.generate(batch, 6, beam_width=18, exclude=exclude)  # beam >= every prefix level
        assert torch.equal(got.item_ids, want.indices), (got.item_ids, want.indices)
        assert torch.allclose(got.scores, want.values, atol=1e-4)
    narrow = model.generate(batch, 4, exclude=ex)  # a narrow beam still returns distinct valid items
    for row in narrow.item_ids.tolist():
        assert len(set(row)) == 4 and 0 not in row
    assert not set(narrow.item_ids[0].tolist()) & {4, 7}


def test_generate_pads_when_fewer_items_than_k() -> None:
    model = _small_tiger(num_items=5)
    batch = {"hist_item_id": torch.tensor([[0, 1, 2]])}
    out = model.generate(batch, 6, exclude=(torch.tensor([0]), torch.tensor([3])))
    assert sorted(out.item_ids[0, :3].tolist()) == [1, 2, 4]
    assert out.item_ids[0, 3:].tolist() == [0, 0, 0] and torch.isinf(out.scores[0, 3:]).all()


def test_ids_stable_across_save_load_and_add_items() -> None:
    torch.manual_seed(0)
    content = _clusters(40)
    rq = RQVAE(12, dims=(16,), latent_dim=4, num_codes=4, num_levels=2)
    rq.train()
    rq({"embedding": content})  # k-means init
    table = rq.semantic_ids(torch.cat([torch.zeros(1, 12), content]), capacity=16)
    model = TIGER(table, transformer=SMALL, max_len=6, num_user_buckets=5, rqvae=rq).eval()
    new = model.add_items(content[:2])  # same content as items 1 and 2: same quantiser codes
    assert new.tolist() == [41, 42]
    assert torch.equal(model.item_codes[:41], table.codes)  # old IDs untouched
    assert torch.equal(model.item_codes[41:, :-1], table.codes[1:3, :-1])
    assert model.semantic_ids.stats_after().collision_rate == 0.0
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = TIGER(table, transformer=SMALL, max_len=6, num_user_buckets=5,
                  rqvae=RQVAE(12, dims=(16,), latent_dim=4, num_codes=4, num_levels=2)).eval()  # fmt: skip
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.item_codes, model.item_codes)
    batch = {"hist_item_id": torch.tensor([[0, 3, 41], [5, 6, 42]])}
    a, b = model.generate(batch, 10, beam_width=20), fresh.generate(batch, 10, beam_width=20)
    assert torch.equal(a.item_ids, b.item_ids) and torch.allclose(a.scores, b.scores)
    assert torch.equal(fresh.add_items(content[2:3]), model.add_items(content[2:3]))  # same RQ-VAE after load
    every = fresh.generate(batch, 43, beam_width=43).item_ids  # new items are generated like any other
    assert {41, 42, 43} <= set(every[0].tolist())


def test_add_items_needs_the_rqvae() -> None:
    with pytest.raises(ValueError, match="RQ-VAE"):
        _small_tiger().add_items(torch.randn(1, 12))


# -- list metrics ------------------------------------------------------------------------------------
def test_list_ranks_equal_full_ranking_on_exact_top_k_lists() -> None:
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(30, 8, generator=g), torch.randn(50, 8, generator=g)
    t_rows = torch.arange(30)
    t_items = torch.randint(1, 50, (30,), generator=g)
    seen_rows = torch.randint(0, 30, (90,), generator=g)
    seen_items = torch.randint(1, 50, (90,), generator=g)
    want = full_ranking_metrics(users, items, (t_rows, t_items), ks=(5, 10), exclude=(seen_rows, seen_items))
    scores = users @ items.T
    scores[:, 0] = -torch.inf
    keep_target = torch.zeros_like(scores, dtype=torch.bool)
    keep_target[t_rows, t_items] = True
    masked = scores.clone()
    masked[seen_rows, seen_items] = -torch.inf
    masked = torch.where(keep_target, scores, masked)
    lists = masked.topk(10, dim=1).indices  # what an exact generator returns with exclusion
    acc = RankingAccumulator((5, 10), 50)
    r = list_ranks(lists, (t_rows, t_items), exclude=(seen_rows, seen_items))
    acc.update(r.ranks, t_rows, 30, r.topk_ids)
    got = acc.result()
    for key in ("recall@5", "ndcg@10", "mrr@10", "hr@10", "precision@5"):
        assert got[key] == pytest.approx(want[key]), key
    # a generator that ignores the exclusion is measured with the seen items removed again
    raw = scores.topk(20, dim=1).indices
    r2 = list_ranks(raw, (t_rows, t_items), exclude=(seen_rows, seen_items))
    assert (r2.ranks[r.ranks <= 10] <= 10).all()


def test_list_ranks_misses_and_repeats() -> None:
    r = list_ranks(torch.tensor([[3, 3, 0, 5]]), (torch.tensor([0, 0]), torch.tensor([5, 9])))
    assert r.ranks.tolist() == [2.0, float("inf")]
    assert r.topk_ids.tolist() == [[3, 5, 0, 0]]


# -- TIGER through the one loop ---------------------------------------------------------------------
def test_tiger_learns_next_item_with_trainer_and_list_evaluator(tmp_path) -> None:
    sp = leave_one_out_split(cyclic_log())
    n = sp.num_items
    train = ColumnarDataset(next_item_samples(sp.histories(), 6))
    test_h = sp.histories("train", "valid")
    test = ColumnarDataset(eval_samples(test_h, sp.test, 6))
    g = torch.Generator().manual_seed(0)
    table = SemanticIDs.from_codes(torch.randint(0, 6, (n - 1, 2), generator=g), num_codes=(6, 6))
    torch.manual_seed(0)
    model = TIGER(table, transformer=dict(SMALL, embed_dim=32, ffn_dim=64), max_len=6, num_user_buckets=0)
    ev = ListRankingEvaluator(n, ks=(5,), seen=None)
    before = ev.evaluate(model, BatchLoader(test, 64))["hr@5"]
    trainer = Trainer(model, objective=semantic_id_loss, n_epoch=8, optimizer_params={"lr": 0.01},
                      model_path=tmp_path, progress=False, plot=False)  # fmt: skip
    trainer.fit(BatchLoader(train, 32, shuffle=True, seed=0))
    after = ev.evaluate(model, BatchLoader(test, 64))["hr@5"]
    assert after > before + 0.5, (before, after)
    seen = ListRankingEvaluator(n, ks=(5,), seen=test_h.seen()).evaluate(model, BatchLoader(test, 64))
    assert 0.0 <= seen["hr@5"] <= 1.0


# -- content vectors ---------------------------------------------------------------------------------
def test_attribute_embeddings(tmp_path) -> None:
    path = tmp_path / "item2attributes.json"
    path.write_text(json.dumps({"1": [1, 2], "2": [2], "3": [3, 1]}))
    attrs = load_item_attributes(path)
    assert attrs == {1: [1, 2], 2: [2], 3: [3, 1]}
    x = attribute_embeddings(attrs, 5, idf=False, normalize=False)
    assert x.shape == (5, 4) and x.dtype == np.float32
    assert x[0].sum() == 0 and x[4].sum() == 0 and x[1].tolist() == [0, 1, 1, 0]
    w = attribute_embeddings(attrs, 5)
    assert np.allclose(np.linalg.norm(w[1:4], axis=1), 1.0)
    assert w[3, 3] > w[3, 1]  # attribute 3 is rarer than attribute 1


def test_cached_recomputes_only_when_the_description_changes(tmp_path) -> None:
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(3, 2)

    a = cached(tmp_path / "e.npy", compute, meta={"source": "x", "dims": (3, 2)})
    b = cached(tmp_path / "e.npy", compute, meta={"source": "x", "dims": (3, 2)})
    assert len(calls) == 1 and np.array_equal(a, b)
    cached(tmp_path / "e.npy", compute, meta={"source": "y"})
    assert len(calls) == 2


def test_text_embeddings_with_a_local_encoder(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "lipstick", "blue", "shampoo"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words))
    transformers.BertTokenizer(str(vocab)).save_pretrained(tmp_path / "enc")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, max_position_embeddings=16)  # fmt: skip
    transformers.BertModel(cfg).save_pretrained(tmp_path / "enc")
    texts = ["red lipstick", "blue shampoo", "red lipstick"]
    x = text_embeddings(texts, tmp_path / "enc", batch_size=2, progress=False)
    assert x.shape == (4, 8) and np.all(x[0] == 0)
    assert np.allclose(np.linalg.norm(x[1:], axis=1), 1.0)
    assert np.allclose(x[1], x[3], atol=1e-5) and not np.allclose(x[1], x[2])


def test_model_item_embeddings_are_the_item_tower() -> None:
    from recforge.features import SequenceFeature, SparseFeature
    from recforge.models.generative import HSTU

    item = SparseFeature("item_id", 12, 8)
    model = HSTU([SequenceFeature("hist_item_id", 12, 8, shared_with="item_id", max_len=5)], [item])
    x = model_item_embeddings(model, 12, batch_size=5, progress=False)
    assert x.shape == (12, 8) and np.all(x[0] == 0)
    with torch.no_grad():
        assert np.allclose(x[1:], model.item_tower({"item_id": torch.arange(1, 12)}).numpy())


def test_seen_items_pairs_feed_generate() -> None:
    model = _small_tiger()
    seen = SeenItems.from_lists([[], [1, 2, 3]], num_items=19)
    batch = {"hist_item_id": torch.tensor([[0, 1, 2], [1, 2, 3]]), "user_id": torch.tensor([0, 1])}
    out = model.generate(batch, 15, beam_width=18, exclude=seen.pairs(batch["user_id"]))
    assert not set(out.item_ids[1].tolist()) & {1, 2, 3}
    assert 0 not in out.item_ids[1].tolist()


def test_decoder_extend_equals_full_decoding_with_shared_memory() -> None:
    from recforge.layers import TransformerDecoder

    torch.manual_seed(0)
    dec = TransformerDecoder(8, 2, 2, ffn_dim=16).eval()
    memory, mask = torch.randn(3, 5, 8), torch.rand(3, 5) > 0.3
    mask[:, 0] = True
    x = torch.randn(6, 4, 8)  # 2 beams per memory row
    with torch.no_grad():
        full = dec(x, memory, mask)
        out, cache = dec.extend(x[:, :2], memory, mask)
        for t in range(2, 4):
            step, cache = dec.extend(x[:, t : t + 1], memory, mask, cache)
            out = torch.cat([out, step], 1)
        assert torch.allclose(out, full, atol=1e-5)
        repeated = dec(x, memory.repeat_interleave(2, 0), mask.repeat_interleave(2, 0))
        assert torch.allclose(full, repeated, atol=1e-5)  # row b*G + g reads memory[b]


def test_tiger_refuses_a_t5_config_naming_what_to_pass() -> None:
    from transformers import T5Config

    with pytest.raises(TypeError, match="semantic_ids must be a recforge SemanticIDs"):
        TIGER(T5Config(d_model=16))  # type: ignore[arg-type]
