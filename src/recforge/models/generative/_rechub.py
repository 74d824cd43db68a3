"""Torch-RecHub's ``HSTUModel`` call shape over recforge's ``HSTU`` (``torch_rechub.models.generative``).

The keyword constructor is translated (``vocab_size -> num_items``, ``d_model -> embed_dim``,
``n_heads``, ``n_layers``, ``max_seq_len -> max_len``, ``score_norm="l2" -> normalize``; the
features are ``hist_item_id`` sharing the table of ``item_id``), and
``model(seq_tokens, seq_time_diffs)`` returns the logits of every item at every position ``(B, L, V)``
as Torch-RecHub's does; a dict batch still gives recforge's ``TowerOutput``.

Differences: attention uses ``d_model // n_heads`` per head (``dqk``/``dv`` must equal it); input and
output embeddings are tied (``tie_embeddings=False`` is refused); the time bias buckets
``log2(gap in seconds)`` (``time_bucket_fn``/``divisor``/``unit`` are not used) and is on with
``use_time_embedding``; ``use_output_bias`` adds a per-item bias to the ``(B, L, V)`` logits only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.ints import as_int
from recforge.models.generative.hstu import HSTU
from recforge.outputs import TowerOutput


class HSTUModel(HSTU):
    """``HSTU`` built from Torch-RecHub's ``HSTUModel`` arguments (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        n_heads: int = 8,
        n_layers: int = 4,
        dqk: int = 64,
        dv: int = 64,
        max_seq_len: int = 256,
        dropout: float = 0.1,
        use_time_embedding: bool = True,
        num_time_buckets: int = 128,
        time_bucket_fn: str = "sqrt",
        time_bucket_divisor: float = 1.0,
        time_bucket_unit: str = "minutes",
        tie_embeddings: bool = True,
        score_norm: str = "none",
        temperature: float = 1.0,
        use_output_bias: bool = True,
        scale_input_embedding: bool = False,
        l2_norm_eps: float = 1e-6,
    ) -> None:
        d, h = (
            as_int(d_model, "HSTUModel: d_model", minimum=1),
            as_int(n_heads, "HSTUModel: n_heads", minimum=1),
        )
        if as_int(dqk, "HSTUModel: dqk") != d // h or as_int(dv, "HSTUModel: dv") != d // h:
            raise ValueError(
                f"HSTUModel: recforge's HSTU attends with d_model // n_heads = {d // h} per head; pass dqk={d // h}, dv={d // h}"
            )
        if not tie_embeddings:
            raise ValueError(
                "HSTUModel: input and output item embeddings are always tied; pass tie_embeddings=True"
            )
        if score_norm not in ("none", "l2"):
            raise ValueError(f"HSTUModel: score_norm must be 'none' or 'l2', got {score_norm!r}")
        vocab = as_int(vocab_size, "HSTUModel: vocab_size", minimum=2)
        max_len = as_int(max_seq_len, "HSTUModel: max_seq_len", minimum=1)
        item = SparseFeature("item_id", vocab, d, initializer=RandomNormal(std=0.02))
        history = SequenceFeature("hist_item_id", vocab, d, shared_with=item.name, max_len=max_len)
        super().__init__(
            [history],
            [item],
            num_layers=as_int(n_layers, "HSTUModel: n_layers", minimum=1),
            num_heads=h,
            max_len=max_len,
            num_time_buckets=as_int(num_time_buckets, "HSTUModel: num_time_buckets")
            if use_time_embedding
            else 0,
            dropout=dropout,
            normalize=score_norm == "l2",
            temperature=temperature,
        )
        self.vocab_size = vocab
        if not scale_input_embedding:
            self.scale = 1.0
        self.output_bias = nn.Parameter(torch.zeros(self.vocab_size)) if use_output_bias else None

    def forward(  # type: ignore[override]
        self, batch: Mapping[str, Tensor] | Tensor, seq_time_diffs: Tensor | None = None
    ) -> TowerOutput | Tensor:
        """A dict batch -> ``TowerOutput``; Torch-RecHub's ``(seq_tokens (B, L), seq_time_diffs
        (B, L))`` -> logits of every item after every position ``(B, L, V)``."""
        if not isinstance(batch, Tensor):
            return super().forward(batch)
        columns = {self.history_column: batch}
        if self.use_time:
            if seq_time_diffs is None:
                raise ValueError("HSTUModel: use_time_embedding needs seq_time_diffs")
            columns[self.time_column] = seq_time_diffs  # gaps are differences: any offset works
        states = self.sequence_tower(columns)  # (B, L, D)
        items = self.embedding.table_weight(self.item_id)  # (V, D)
        items = F.normalize(items, dim=-1) if self.normalize else items
        logits = states @ items.T / self.temperature  # (B, L, V)
        return logits + self.output_bias if self.output_bias is not None else logits
