"""Behaviour-sequence layers: DIN's target attention, DIEN's GRU interest extractor and its
attention-driven interest evolution (AUGRU / AIGRU / AGRU).

Sequences are ``(B, L, D)`` with a boolean ``mask (B, L)`` true at real items. Padded positions
never change an output: attention gives them exactly zero weight, and the recurrent layers run on
the real items only (they are moved to the front of each row with ``front_pack`` and either packed
for ``nn.GRU`` or frozen by a masked update).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recforge.choices import Choice
from recforge.layers.mlp import MLP, MLPConfig


class GRUType(Choice):
    """DIEN's interest-evolution cell (arXiv 1809.03672, section 4.3)."""

    AUGRU = "AUGRU"  # attention scales the update gate
    AIGRU = "AIGRU"  # attention scales the GRU input
    AGRU = "AGRU"  # attention replaces the update gate


def front_pack(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Order that moves each row's real positions to the front, keeping their order.

    Args:
        mask: ``(B, L)`` true at real items (any layout: left padding, holes).

    Returns:
        ``order (B, L)`` to ``gather`` along dim 1, and ``lengths (B,)``.
    """
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, L)
    return order, mask.sum(1)


def gather_steps(x: Tensor, order: Tensor) -> Tensor:
    """``x (B, L, D)`` reordered along L by ``order (B, L')`` -> ``(B, L', D)``."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, L', D)


def trim_padding(mask: Tensor) -> slice:
    """The column range of ``mask (B, L)`` that holds any real item (left padding dropped)."""
    cols = mask.any(0).nonzero()
    if cols.numel() == 0:
        return slice(mask.shape[1] - 1, mask.shape[1])  # keep one all-padding column
    return slice(int(cols[0]), mask.shape[1])


class TargetAttention(nn.Module):
    """DIN's activation unit (arXiv 1706.06978, Fig. 2): an MLP over ``[q, k, q - k, q * k]`` scores
    every key against the query.

    The scores are used as is (the paper keeps the intensity of interest and does not normalise),
    or softmax-normalised over the real keys with ``softmax=True``. Padded keys get exactly zero
    weight, and the MLP only sees real keys, so padding never reaches Dice's batch statistics.

    Args:
        dim: D, the width of query and keys.
        mlp_params: the scoring MLP (default ``{"dims": [36], "activation": "dice"}``); its
            output layer is always ``Linear(., 1)`` (without bias under softmax).
        softmax: normalise the weights over the real keys.
    """

    def __init__(
        self, dim: int, mlp_params: MLPConfig | Mapping[str, object] | None = None, *, softmax: bool = False
    ) -> None:
        super().__init__()
        cfg = MLPConfig.parse(mlp_params, dims=(36,), activation="dice")
        self.mlp = MLP(4 * dim, cfg, output_layer=False)
        # Under softmax a constant shift of every score changes nothing, so that bias is dropped.
        self.score = nn.Linear(self.mlp.output_dim, 1, bias=not softmax)
        self.softmax = softmax

    def weights(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """``query (B, D)``, ``keys (B, L, D)``, ``mask (B, L)`` -> weights ``(B, L)``, 0 at padding."""
        q = query.unsqueeze(1).expand_as(keys)  # (B, L, D)
        feats = torch.cat([q, keys, q - keys, q * keys], -1)[mask]  # (ΣL, 4D)
        scores = keys.new_zeros(mask.shape)  # (B, L)
        if feats.shape[0]:
            scores = scores.masked_scatter(mask, self.score(self.mlp(feats)).squeeze(-1).to(scores.dtype))
        if not self.softmax:
            return scores
        # A finite fill keeps all-padding rows free of NaN (their weights are zeroed after).
        filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return filled.softmax(-1).masked_fill(~mask, 0.0)  # (B, L)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """``query (B, D)``, ``keys (B, L, D)``, ``mask (B, L)`` -> weighted sum of keys ``(B, D)``."""
        w = self.weights(query, keys, mask)  # (B, L)
        return (w.unsqueeze(-1) * keys).sum(1)  # (B, D)


def _packed_gru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``gru`` on front-packed ``x (B, L, D)`` with ``lengths (B,)``: outputs ``(B, L, H)``
    (0 past each length) and the final states ``(B, H)`` (0 for empty rows)."""
    packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
    out, h_n = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, L, H)
    nonempty = (lengths > 0).unsqueeze(-1).to(out.dtype)  # (B, 1)
    return out * nonempty.unsqueeze(1), h_n[-1] * nonempty


class InterestExtractor(nn.Module):
    """DIEN's interest extractor: a GRU over the behaviour sequence (arXiv 1809.03672, eq. 1-4).

    Input must be front-packed (``front_pack``): real steps first, ``lengths`` of them per row.
    """

    def __init__(self, input_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim or input_dim
        self.gru = nn.GRU(input_dim, self.hidden_dim, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``x (B, L, D)``, ``lengths (B,)`` -> interest states ``(B, L, H)``, 0 past each length."""
        return _packed_gru(self.gru, x, lengths)[0]


class InterestEvolution(nn.Module):
    """DIEN's interest-evolving layer: a GRU whose steps are weighted by attention to the target.

    ``AUGRU`` scales the update gate by the attention ``a_t`` (eq. 16-17), ``AGRU`` uses ``a_t`` as
    the update gate (eq. 15) and ``AIGRU`` scales the input by ``a_t`` (eq. 14). Steps past a row's
    length leave its state unchanged, so the final state equals that of the unpadded sequence.

    Args:
        input_dim: width of the interest states fed in.
        hidden_dim: H (default ``input_dim``).
        gru_type: ``GRUType`` or its name.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int | None = None, *, gru_type: GRUType | str = "AUGRU"
    ) -> None:
        super().__init__()
        self.gru_type = GRUType.parse(gru_type)
        self.hidden_dim = hidden_dim or input_dim
        if self.gru_type is GRUType.AIGRU:
            self.gru = nn.GRU(input_dim, self.hidden_dim, batch_first=True)
        else:
            gates = 2 if self.gru_type is GRUType.AGRU else 3  # reset, [update,] candidate
            self.x2h = nn.Linear(input_dim, gates * self.hidden_dim)
            self.h2h = nn.Linear(self.hidden_dim, gates * self.hidden_dim)

    def forward(self, x: Tensor, attention: Tensor, lengths: Tensor) -> Tensor:
        """``x (B, L, D)`` front-packed, ``attention (B, L)``, ``lengths (B,)`` -> final state ``(B, H)``."""
        if self.gru_type is GRUType.AIGRU:
            return _packed_gru(self.gru, x * attention.unsqueeze(-1), lengths)[1]
        b, steps, _ = x.shape
        h = x.new_zeros(b, self.hidden_dim)  # (B, H)
        gx_all = self.x2h(x)  # (B, L, G*H), all input projections at once
        for t in range(min(steps, int(lengths.max()) if b else 0)):
            gx = gx_all[:, t]  # (B, G*H)
            gh = self.h2h(h)  # (B, G*H)
            a = attention[:, t : t + 1]  # (B, 1)
            if self.gru_type is GRUType.AGRU:
                xr, xn = gx.chunk(2, -1)
                hr, hn = gh.chunk(2, -1)
                r = torch.sigmoid(xr + hr)
                n = torch.tanh(xn + r * hn)
                new = (1 - a) * h + a * n
            else:
                xr, xu, xn = gx.chunk(3, -1)
                hr, hu, hn = gh.chunk(3, -1)
                r = torch.sigmoid(xr + hr)
                u = a * torch.sigmoid(xu + hu)
                n = torch.tanh(xn + r * hn)
                new = (1 - u) * h + u * n
            h = torch.where((t < lengths).unsqueeze(-1), new, h)  # (B, H)
        return h
