"""TIGER (Rajput et al. 2023, "Recommender Systems with Generative Retrieval", NeurIPS, arXiv
2305.05065): a Transformer encoder-decoder that reads a user's history as semantic-ID tokens and
generates the next item's semantic ID code by code.

Encoder input: one user token (the user id hashed into ``num_user_buckets`` buckets, as in the
paper) followed by the C codes of each of the last ``max_len`` history items. Decoder: a start token
then the target's codes (teacher forcing); position c predicts code c from the codes before it.
``forward`` gives those logits; ``generate`` runs batched beam search constrained to the IDs in the
item table (``constrained_beam_search``) and maps the IDs back to item ids. The item -> ID table is
a buffer, so IDs travel with ``state_dict``; ``add_items`` gives new items IDs through the attached
RQ-VAE without retraining anything.

Deviations: plain PyTorch pre-norm Transformer blocks (GELU, learned absolute positions counted from
the most recent history token, so left padding never changes the output) instead of T5's relative
position buckets; logits at position c cover only position c's codebook; the user id is hashed by
``id mod num_user_buckets``; rows without a user id (column absent, or id 0) get one shared
unknown-user token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from recforge.layers.attention import TransformerDecoder, TransformerEncoder
from recforge.models.generative.rqvae import RQVAE
from recforge.models.generative.semantic_ids import PrefixTrie, SemanticIDs, constrained_beam_search
from recforge.outputs import SemanticIDOutput

PAD, BOS, UNKNOWN_USER = 0, 1, 2


@dataclass(frozen=True)
class TIGERConfig:
    """The encoder-decoder's size (paper: width 128, 4 + 4 layers, 6 heads, feed-forward 1024,
    dropout 0.1). ``attention_dropout`` defaults to ``dropout``."""

    embed_dim: int = 128
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float | None = None

    @classmethod
    def parse(cls, value: TIGERConfig | Mapping[str, Any] | None) -> TIGERConfig:
        if value is None or isinstance(value, TIGERConfig):
            return value or cls()
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(
                f"unknown TIGER transformer setting(s) {sorted(unknown)}; valid: {sorted(known)}"
            )
        return cls(**value)


class GeneratedItems(NamedTuple):
    item_ids: Tensor  # (B, k) best first; 0 where fewer than k items could be generated
    scores: Tensor  # (B, k) log-probability of each item's ID; -inf where no item


class TIGER(nn.Module):
    """Generative retrieval over semantic IDs.

    Args:
        semantic_ids: the item -> ID table (``RQVAE.semantic_ids``); its ``num_codes`` fix the vocabulary.
        transformer: ``TIGERConfig`` (or a dict of its fields).
        max_len: history items read (the most recent ones).
        num_user_buckets: user-id hash buckets (0: no user token).
        rqvae: the tokenizer that made the IDs; needed by ``add_items`` only (frozen, saved with the model).
        history_column, user_column, target_column: batch columns (``(B, L)`` left-padded item ids,
            ``(B,)`` user ids, ``(B,)`` target item ids).
    """

    item_codes: Tensor
    code_offset: Tensor
    head_offset: Tensor
    level_valid: Tensor

    def __init__(
        self,
        semantic_ids: SemanticIDs,
        *,
        transformer: TIGERConfig | Mapping[str, Any] | None = None,
        max_len: int = 20,
        num_user_buckets: int = 2000,
        rqvae: RQVAE | None = None,
        history_column: str = "hist_item_id",
        user_column: str = "user_id",
        target_column: str = "item_id",
    ) -> None:
        super().__init__()
        if not isinstance(semantic_ids, SemanticIDs):
            raise TypeError(
                f"TIGER: semantic_ids must be a recforge SemanticIDs table (SemanticIDs.from_codes, "
                f"RQVAE.semantic_ids or SemanticIDs.load), got {type(semantic_ids).__name__}; Torch-RecHub's "
                "TIGERModel(T5Config) is a transformers T5 subclass: here give the encoder-decoder's size "
                "as transformer={'embed_dim': ..., 'num_encoder_layers': ..., ...}"
            )
        cfg = TIGERConfig.parse(transformer)
        self.config, self.max_len, self.num_user_buckets = cfg, max_len, num_user_buckets
        self.history_column, self.user_column, self.target_column = history_column, user_column, target_column
        self.num_codes = semantic_ids.num_codes
        c, d = len(self.num_codes), cfg.embed_dim
        sizes = torch.tensor(self.num_codes)
        offsets = torch.cumsum(sizes, 0) - sizes  # (C,) first output index of each position
        width = int(sizes.max())
        self.register_buffer("item_codes", semantic_ids.codes.clone())
        self.register_buffer("code_offset", 3 + num_user_buckets + offsets, persistent=False)  # token ids
        self.register_buffer("head_offset", offsets, persistent=False)
        self.register_buffer("level_valid", torch.arange(width)[None, :] < sizes[:, None], persistent=False)
        self.token = nn.Embedding(3 + num_user_buckets + int(sizes.sum()), d, padding_idx=PAD)
        nn.init.normal_(self.token.weight, std=0.02)
        with torch.no_grad():
            self.token.weight[PAD].zero_()
        self.positions = nn.Parameter(torch.randn(max_len * c + 1, d) * 0.02)  # from the end; last: user
        self.decoder_positions = nn.Parameter(torch.randn(c, d) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        kw = dict(ffn_dim=cfg.ffn_dim, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout)
        self.encoder = TransformerEncoder(d, cfg.num_encoder_layers, cfg.num_heads, pre_norm=True, **kw)  # type: ignore[arg-type]
        self.decoder = TransformerDecoder(d, cfg.num_decoder_layers, cfg.num_heads, **kw)  # type: ignore[arg-type]
        self.head = nn.Linear(d, int(sizes.sum()))
        self.rqvae = rqvae.requires_grad_(False) if rqvae is not None else None
        self._trie: PrefixTrie | None = None

    # -- the item table ----------------------------------------------------------------------------
    @property
    def semantic_ids(self) -> SemanticIDs:
        return SemanticIDs(self.item_codes.cpu(), self.num_codes)

    @property
    def trie(self) -> PrefixTrie:
        if self._trie is None:
            self._trie = PrefixTrie(self.semantic_ids).to(self.item_codes.device)
        return self._trie

    @torch.no_grad()
    def add_item_codes(self, codes: Tensor) -> Tensor:
        """New items from quantiser codes ``(n, C - 1)``; returns their ids ``(n,)``."""
        first = self.item_codes.shape[0]
        self.item_codes = self.semantic_ids.extend(codes).codes.to(self.item_codes.device)
        self._trie = None
        return torch.arange(first, self.item_codes.shape[0])

    def add_items(self, content_embeddings: Tensor) -> Tensor:
        """New items from their content vectors ``(n, D_in)`` through the attached RQ-VAE; returns
        their ids. The seq2seq weights are unchanged."""
        if self.rqvae is None:
            raise ValueError("add_items needs the RQ-VAE that built the IDs: TIGER(..., rqvae=...)")
        return self.add_item_codes(self.rqvae.encode(content_embeddings.to(self.item_codes.device)))

    def _load_from_state_dict(
        self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        saved = state_dict.get(prefix + "item_codes")
        if isinstance(saved, Tensor) and saved.shape != self.item_codes.shape:  # items were added
            self.item_codes = torch.empty_like(saved, device=self.item_codes.device)
        self._trie = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    # -- encoder / decoder -------------------------------------------------------------------------
    def encode(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """History (and user) tokens -> encoder states ``(B, S, D)`` and their mask ``(B, S)``."""
        hist = batch[self.history_column][:, -self.max_len :]  # (B, L) left-padded
        width = max(int((hist != 0).sum(1).max()), 1) if hist.numel() else 1
        hist = hist[:, hist.shape[1] - width :]  # drop all-padding columns (no change to the output)
        b, c = hist.shape[0], len(self.num_codes)
        codes = self.item_codes[hist]  # (B, L, C); -1 for padding
        tokens = torch.where(codes >= 0, codes + self.code_offset, PAD).reshape(b, -1)  # (B, L*C)
        n = tokens.shape[1]
        pos = torch.arange(n - 1, -1, -1, device=tokens.device)  # (L*C,) from the most recent
        if self.num_user_buckets:
            users = batch.get(self.user_column)
            if users is None:
                user_tok = torch.full((b,), UNKNOWN_USER, dtype=torch.long, device=tokens.device)
            else:
                user_tok = torch.where(users > 0, 3 + users % self.num_user_buckets, UNKNOWN_USER)  # (B,)
            tokens = torch.cat([user_tok[:, None], tokens], 1)  # (B, 1 + L*C)
            pos = torch.cat([pos.new_full((1,), self.max_len * c), pos])
        mask = tokens != PAD  # (B, S)
        x = self.token(tokens) * self.config.embed_dim**0.5 + self.positions[pos]  # (B, S, D)
        return self.encoder(self.drop(x) * mask[..., None], key_mask=mask), mask

    def _decoder_inputs(self, codes: Tensor, start: int) -> Tensor:
        """Embedded decoder tokens for positions ``start ..``: the start token at 0, then ``codes``
        (B*G, T) at 1.. -> ``(B*G, T', D)``."""
        tokens = codes + self.code_offset[max(start - 1, 0) : max(start - 1, 0) + codes.shape[1]]
        if start == 0:
            bos = torch.full((codes.shape[0], 1), BOS, dtype=torch.long, device=codes.device)
            tokens = torch.cat([bos, tokens], 1)  # (B*G, T + 1)
        pos = self.decoder_positions[start : start + tokens.shape[1]]
        return self.token(tokens) * self.config.embed_dim**0.5 + pos

    def target_codes(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Semantic IDs ``(B, C)`` of ``batch[target_column]`` (-1 where the target is 0)."""
        return self.item_codes[batch[self.target_column]]

    def forward(self, batch: Mapping[str, Tensor]) -> SemanticIDOutput:
        """Teacher forcing: logits ``(B, C, V)`` of each code of the target's ID (``-inf`` beyond a
        position's codebook) and the target codes ``(B, C)``."""
        memory, mask = self.encode(batch)
        codes = self.target_codes(batch)  # (B, C)
        h = self.decoder(
            self.drop(self._decoder_inputs(codes[:, :-1].clamp_min(0), 0)), memory, mask
        )  # (B, C, D)
        scores = self.head(h)  # (B, C, ΣK)
        width = self.level_valid.shape[1]
        idx = (self.head_offset[:, None] + torch.arange(width, device=h.device)).clamp_max(
            scores.shape[-1] - 1
        )
        logits = scores.gather(2, idx.expand(codes.shape[0], -1, -1))  # (B, C, V)
        return SemanticIDOutput(logits.masked_fill(~self.level_valid, -torch.inf), codes)

    @torch.no_grad()
    def generate(
        self,
        batch: Mapping[str, Tensor],
        k: int,
        *,
        beam_width: int | None = None,
        exclude: tuple[Tensor, Tensor] | None = None,
    ) -> GeneratedItems:
        """Top-``k`` items per row by constrained beam search (``beam_width`` beams, default ``k``).

        Args:
            batch: the history (and user) columns.
            k: items returned per row.
            beam_width: beams kept (>= k).
            exclude: ``(row (M,), item (M,))`` pairs never returned (e.g. seen items).
        """
        width = max(k, beam_width or k)
        memory, mask = self.encode(batch)
        v = self.level_valid.shape[1]

        cache: list[Tensor] = []

        def step(prefix: Tensor, parents: Tensor | None) -> Tensor:  # (B, G, t) -> (B, G, V)
            nonlocal cache
            b, g, t = prefix.shape
            if parents is None:  # the start token
                x = self._decoder_inputs(prefix.reshape(b, 0), 0)  # (B, 1, D)
            else:  # reorder the cached beams, then feed the newest code only
                cache = [
                    c.reshape(b, -1, t, c.shape[-1]).gather(1, parents[..., None, None].expand(-1, -1, t, c.shape[-1]))
                    .reshape(b * g, t, c.shape[-1])
                    for c in cache
                ]  # fmt: skip
                x = self._decoder_inputs(prefix[:, :, -1].reshape(b * g, 1), t)  # (B*G, 1, D)
            h, cache = self.decoder.extend(x, memory, mask, cache or None)
            a, k_t = int(self.head_offset[t]), self.num_codes[t]
            logits = nn.functional.linear(
                h[:, -1], self.head.weight[a : a + k_t], self.head.bias[a : a + k_t]
            )
            out = logits.new_full((b * g, v), -torch.inf)
            out[:, :k_t] = torch.log_softmax(logits, -1)  # (B*G, K_t)
            return out.reshape(b, g, v)

        res = constrained_beam_search(step, self.trie, memory.shape[0], beam_width=width, exclude=exclude)
        return GeneratedItems(res.items[:, :k], res.scores[:, :k])


TIGERModel = TIGER  # Torch-RecHub's name
