"""Multi-head attention and the transformer encoder (AutoInt, BST, SASRec, ComiRec-SA build on these)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.layers.dropout import Dropout


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with H heads over ``(B, L, D)`` inputs.

    Args:
        dim: model width D (divisible by ``num_heads``).
        num_heads: H.
        dropout: attention-probability dropout (training only).
        bias: biases in the projections.
    """

    def __init__(self, dim: int, num_heads: int = 1, *, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        key_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """``query (B, Lq, D)``, ``key/value (B, Lk, D)`` (default: query), ``key_mask (B, Lk)`` true
        where a key is real -> ``(B, Lq, D)``. Queries with no visible key give 0."""
        key = query if key is None else key
        value = key if value is None else value
        b, lq, d = query.shape
        lk = key.shape[1]
        h = self.num_heads
        q = self.q(query).view(b, lq, h, d // h).transpose(1, 2)  # (B, H, Lq, D/H)
        k = self.k(key).view(b, lk, h, d // h).transpose(1, 2)  # (B, H, Lk, D/H)
        v = self.v(value).view(b, lk, h, d // h).transpose(1, 2)  # (B, H, Lk, D/H)
        allowed = None
        if key_mask is not None:
            allowed = key_mask[:, None, None, :]  # (B, 1, 1, Lk)
        if causal:
            tri = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril(lk - lq)  # (Lq, Lk)
            allowed = tri if allowed is None else allowed & tri
        if allowed is not None:
            # Rows with no visible key would give NaN: let them see everything, then zero them.
            empty = ~allowed.any(-1, keepdim=True)  # (B|1, 1|H, Lq, 1)
            attn_mask = allowed | empty
        else:
            attn_mask, empty = None, None
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Lq, D/H)
        if empty is not None:
            ctx = ctx.masked_fill(empty, 0.0)
        return self.out(ctx.transpose(1, 2).reshape(b, lq, d))  # (B, Lq, D)


class TransformerBlock(nn.Module):
    """Attention + position-wise feed-forward, each with residual, dropout and LayerNorm.

    ``pre_norm`` normalises before each sub-layer (SASRec's choice); otherwise after (BST, the
    original transformer). ``attention_dropout`` drops attention probabilities (default: ``dropout``;
    on CPU it is a large share of a small model's training time).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        *,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        pre_norm: bool = True,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(
            dim, num_heads, dropout=dropout if attention_dropout is None else attention_dropout
        )
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim or 4 * dim),
            activation(),
            Dropout(dropout),
            nn.Linear(ffn_dim or 4 * dim, dim),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(
        self, x: Tensor, *, key_mask: Tensor | None = None, causal: bool = False, last_only: bool = False
    ) -> Tensor:
        """``x (B, L, D)``, ``key_mask (B, L)`` -> ``(B, L, D)``; with ``last_only`` only the last
        position's output ``(B, 1, D)`` (it still attends to every position)."""
        if self.pre_norm:
            y = self.norm1(x)
            query = y[:, -1:] if last_only else y
            x = (x[:, -1:] if last_only else x) + self.drop(
                self.attn(query, y, key_mask=key_mask, causal=causal)
            )
            return x + self.drop(self.ffn(self.norm2(x)))
        query = x[:, -1:] if last_only else x
        x = self.norm1(query + self.drop(self.attn(query, x, key_mask=key_mask, causal=causal)))
        return self.norm2(x + self.drop(self.ffn(x)))


class TransformerEncoder(nn.Module):
    """A stack of ``TransformerBlock``s; padded positions (``key_mask`` false) output 0.

    Args:
        dim, num_heads, ffn_dim, dropout, attention_dropout, pre_norm: as ``TransformerBlock``.
        num_layers: depth.
        causal: each position attends only to itself and earlier positions (next-item models).
    """

    def __init__(
        self,
        dim: int,
        num_layers: int = 2,
        num_heads: int = 1,
        *,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        pre_norm: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim, num_heads, ffn_dim=ffn_dim, dropout=dropout, attention_dropout=attention_dropout,
                pre_norm=pre_norm,
            )
            for _ in range(num_layers)
        )  # fmt: skip
        self.final_norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.causal = causal

    def forward(self, x: Tensor, key_mask: Tensor | None = None, *, last_only: bool = False) -> Tensor:
        """``x (B, L, D)``, ``key_mask (B, L)`` true at real positions -> ``(B, L, D)``; with
        ``last_only`` the last position's output ``(B, 1, D)``, the last block computed for it alone
        (the earlier blocks still run on every position, which it attends to)."""
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, key_mask=key_mask, causal=self.causal, last_only=last_only and i == last)
        x = self.final_norm(x)
        if key_mask is not None:
            mask = key_mask[:, -x.shape[1] :]  # (B, L) or (B, 1)
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return x


class TransformerDecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to an encoder's output (``memory``), feed-forward;
    pre-norm residual sub-layers (as ``TransformerBlock(pre_norm=True)``).

    ``memory`` may be shared by groups of consecutive rows of ``x`` (the beams of one user): with
    ``x`` of ``B * G`` rows and ``memory`` of ``B``, row ``b * G + g`` reads ``memory[b]``, so the
    memory is never copied per beam. ``past`` holds the block's inputs at earlier positions
    (incremental decoding): the new positions attend to them and to themselves, causally.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        *,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        attn_drop = dropout if attention_dropout is None else attention_dropout
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=attn_drop)
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout=attn_drop)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim or 4 * dim),
            activation(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim or 4 * dim, dim),
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None, past: Tensor | None = None
    ) -> Tensor:
        """``x (B*G, T, D)`` (after ``past (B*G, T0, D)``), ``memory (B, S, D)``, ``memory_mask (B, S)``
        true at real positions -> ``(B*G, T, D)``."""
        y = self.norm1(x)
        keys = y if past is None or past.shape[1] == 0 else torch.cat([self.norm1(past), y], 1)
        x = x + self.drop(self.self_attn(y, keys, causal=True))
        gb, t, d = x.shape
        b = memory.shape[0]
        if gb % b:
            raise ValueError(f"decoder rows {gb} are not a multiple of the memory rows {b}")
        q = self.norm2(x).reshape(b, (gb // b) * t, d)  # (B, G*T, D): queries never interact
        ctx = self.cross_attn(q, memory, key_mask=memory_mask).reshape(gb, t, d)  # (B*G, T, D)
        x = x + self.drop(ctx)
        return x + self.drop(self.ffn(self.norm3(x)))


class TransformerDecoder(nn.Module):
    """A stack of ``TransformerDecoderBlock``s with a final LayerNorm; ``extend`` decodes new
    positions after cached earlier ones (same result as decoding the whole prefix again)."""

    def __init__(
        self,
        dim: int,
        num_layers: int = 2,
        num_heads: int = 1,
        *,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerDecoderBlock(
                dim, num_heads, ffn_dim=ffn_dim, dropout=dropout, attention_dropout=attention_dropout
            )
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None) -> Tensor:
        """``x (B*G, T, D)``, ``memory (B, S, D)``, ``memory_mask (B, S)`` -> ``(B*G, T, D)``."""
        return self.extend(x, memory, memory_mask)[0]

    def extend(
        self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None, past: list[Tensor] | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Decode ``x (B*G, T, D)`` after the cached positions ``past`` (each block's inputs at the
        earlier positions, ``(B*G, T0, D)`` per block, or None) -> the output ``(B*G, T, D)`` and the
        cache extended by ``x``'s positions."""
        cache = []
        for i, block in enumerate(self.blocks):
            prev = past[i] if past is not None else None
            cache.append(x if prev is None else torch.cat([prev, x], 1))
            x = block(x, memory, memory_mask, prev)
        return self.final_norm(x), cache
