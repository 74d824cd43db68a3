"""Layers used by the matching models: masked GRU, capsule routing, interests, frequency estimator."""

from __future__ import annotations

import pytest
import torch

from recforge.features import SequenceFeature, SparseFeature
from recforge.layers.capsule import Bilinear, CapsuleRouting, squash
from recforge.layers.frequency import StreamingFrequency
from recforge.layers.interest import SelfAttentiveInterests
from recforge.layers.recurrent import MaskedGRU
from recforge.models.matching import MIND, SASRec, YoutubeDNN


def test_masked_gru_matches_a_gru_on_each_unpadded_row() -> None:
    torch.manual_seed(0)
    gru = MaskedGRU(4, 5, num_layers=2)
    x = torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 2, 0])
    mask = torch.arange(6).unsqueeze(0) >= (6 - lengths).unsqueeze(1)  # left padding
    out = gru(x, mask)
    for row, n in enumerate(lengths.tolist()):
        if n:
            ref, _ = gru.gru(x[row : row + 1, 6 - n :])
            torch.testing.assert_close(out[row, 6 - n :], ref[0])
        assert out[row, : 6 - n].abs().sum() == 0


def _routing_reference(caps: CapsuleRouting, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dynamic routing written out behaviour by behaviour, interest by interest (forward only)."""
    b, length, d = seq.shape
    k = caps.num_interests
    out = torch.zeros(b, k, d)
    for row in range(b):
        mapped = seq[row] @ caps.weight  # (L, D) or (L, K*D)
        u = [[mapped[i, : d] if caps.bilinear is Bilinear.SHARED else mapped[i, j * d : (j + 1) * d]
              for i in range(length)] for j in range(k)]  # fmt: skip
        logit = caps.init_logits[:, caps.max_len - length :].clone()  # (K, L)
        for it in range(caps.iters):
            w = torch.softmax(logit, dim=0)
            for j in range(k):
                z = sum(w[j, i] * u[j][i] for i in range(length) if mask[row, i])
                out[row, j] = squash(torch.as_tensor(z).reshape(d))
            if it < caps.iters - 1:
                for j in range(k):
                    for i in range(length):
                        logit[j, i] = logit[j, i] + u[j][i] @ out[row, j]
    return out


def test_capsule_routing_matches_reference_ignores_padding_and_squashes() -> None:
    torch.manual_seed(0)
    seq, mask = torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)
    mask[1, :3] = False
    for bilinear in Bilinear:
        caps = CapsuleRouting(4, 3, 8, bilinear=bilinear, random_init=bilinear is Bilinear.SHARED)
        out = caps(seq, mask)
        assert out.shape == (2, 3, 4)
        with torch.no_grad():
            torch.testing.assert_close(out, _routing_reference(caps, seq, mask))
        assert (out.norm(dim=-1) < 1).all()  # squashed
        other = seq.clone()
        other[1, :3] = 100.0  # padded positions must not matter
        torch.testing.assert_close(caps(other, mask)[1], out[1])
    with pytest.raises(ValueError, match="exceeds"):
        CapsuleRouting(4, 3, 4)(seq, mask)
    with pytest.raises(ValueError, match="bilinear must be one of"):
        CapsuleRouting(4, 3, 8, bilinear="diagonal")
    z = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(squash(z).norm(), torch.tensor(25.0 / 26.0))


def test_self_attentive_interests_ignore_padding() -> None:
    torch.manual_seed(0)
    layer = SelfAttentiveInterests(4, 2)
    seq, mask = torch.randn(1, 4, 4), torch.tensor([[False, True, True, True]])
    out = layer(seq, mask)
    torch.testing.assert_close(layer(seq[:, 1:], mask[:, 1:]), out)
    assert layer(seq, torch.zeros_like(mask)).abs().sum() == 0


def test_streaming_frequency_tracks_batch_frequency() -> None:
    est = StreamingFrequency(10, alpha=0.1)
    for step in range(400):
        ids = torch.tensor([1, 2]) if step % 4 == 0 else torch.tensor([1])
        est.update(ids)
    q = est.log_prob(torch.tensor([1, 2, 3])).exp()
    assert q[0] == pytest.approx(1.0, rel=0.05)  # item 1 is in every batch
    assert q[1] == pytest.approx(0.25, rel=0.1)  # item 2 in one batch of four
    assert q[2] == pytest.approx(0.1)  # never seen: the 1 / num_buckets prior


def test_mind_dynamic_interests_follow_history_length() -> None:
    item = SparseFeature("item_id", 20, 4)
    hist = SequenceFeature("hist", 20, 4, pooling="concat", shared_with="item_id")
    model = MIND([], [hist], [item], max_length=8, interest_num=4, dynamic_interest=True).eval()
    h = torch.zeros(3, 8, dtype=torch.long)
    h[0, -1:] = 1
    h[1, -4:] = torch.tensor([1, 2, 3, 4])
    h[2, :] = torch.arange(1, 9)
    active = model.active_interests({"hist": h})
    assert active.sum(1).tolist() == [1, 2, 3]
    user = model.user_tower({"hist": h})
    torch.testing.assert_close(user[0, 1], user[0, 0])  # inactive interests repeat the first


def test_bad_specs_are_refused() -> None:
    item = SparseFeature("item_id", 20, 4)
    own = SequenceFeature("hist", 20, 4, pooling="concat")
    with pytest.raises(ValueError, match="must share the item table"):
        SASRec([own], [item])
    with pytest.raises(ValueError, match="must end at the item embed_dim"):
        YoutubeDNN([own], [item], {"dims": [8]})
    hist = SequenceFeature("hist", 20, 4, pooling="concat", shared_with="item_id")
    with pytest.raises(ValueError, match="exceeds max_len"):
        SASRec([hist], [item], max_len=3).user_tower({"hist": torch.ones(2, 5, dtype=torch.long)})


def test_youtube_dnn_without_user_mlp_is_the_normalised_mean_of_the_history() -> None:
    item = SparseFeature("item_id", 20, 4)
    bag = SequenceFeature("hist", 20, 4, pooling="mean", shared_with="item_id")
    model = YoutubeDNN([bag], [item], {"dims": []})
    assert not any(p.dim() == 2 and p.shape[0] != 20 for p in model.parameters())  # embeddings only
    hist = torch.tensor([[0, 3, 5], [2, 2, 7]])
    table = model.item_tower({"item_id": torch.arange(20)})  # normalised rows
    raw = model.embedding.lookup("item_id", torch.arange(20))
    expected = torch.nn.functional.normalize(
        torch.stack([raw[[3, 5]].mean(0), raw[[2, 2, 7]].mean(0)]), dim=-1
    )
    torch.testing.assert_close(model.user_tower({"hist": hist}), expected)
    assert table.shape == (20, 4)
    with pytest.raises(ValueError, match="user tower of width 8"):
        YoutubeDNN(
            [bag, SequenceFeature("h2", 20, 4, pooling="mean", shared_with="item_id")], [item], {"dims": []}
        )
