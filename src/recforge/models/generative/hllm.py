"""HLLM (Chen et al. 2024, "HLLM: Enhancing Sequential Recommendations via Hierarchical Large
Language Models", arXiv 2409.12740).

Two language models: the *item LLM* reads each item's text tokens followed by a learned item token
and its last hidden state is the item embedding; the *user LLM* reads the sequence of item
embeddings (as ``inputs_embeds``) and its state at each position predicts the next item's
embedding. Trained with ``SeqTrainer``'s sampled softmax (InfoNCE) on L2-normalised vectors.
Either LLM is any Hugging Face ``transformers`` base model: a model path/name
(``AutoModel.from_pretrained``), a config (``AutoModel.from_config``) or a module. Requires the
``generative`` extra (``transformers``).

Deviations: the item text is given as a fixed ``(num_items, T)`` token tensor, left-padded with
``pad_token_id`` (tokenise once, outside the model); a linear map joins the two LLMs when their
widths differ; ``item_pooling="mean"`` reads an item as the mean of its text tokens' states (the
readout a pretrained sentence encoder such as all-MiniLM-L6-v2 was trained with) instead of the
learned item token; ``cache_items`` stores every item's item-LLM output once (no gradient reaches
the item LLM while the cache is set, the bridge still trains), which is how a frozen item LLM is
trained cheaply. The user LLM must be causal: a bidirectional one would see the items it predicts,
so the constructor checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.features import SequenceFeature, SparseFeature
from recforge.models.matching.base import TwoTowerModel


class ItemPooling(Choice):
    ITEM_TOKEN = "item_token"  # the paper: the state of a learned token appended to the text
    MEAN = "mean"  # mean of the text tokens' states (sentence-encoder readout, no new token)


def load_language_model(spec: str | object) -> nn.Module:
    """A ``transformers`` base model from a path/name, a ``PretrainedConfig`` or a module."""
    if isinstance(spec, nn.Module):
        return spec
    try:
        from transformers import AutoModel, PretrainedConfig
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("HLLM needs transformers: pip install 'recforge[generative]'") from e
    if isinstance(spec, str):
        return AutoModel.from_pretrained(spec, use_safetensors=True)  # never a pickled .bin
    if isinstance(spec, Mapping):  # a config written as data: {"type": "llama", "hidden_size": 64, ...}
        from transformers import AutoConfig

        settings = dict(spec)
        kind = settings.pop("type", None)
        if not isinstance(kind, str):
            raise ValueError(
                f"a language model given as a mapping needs its 'type' (e.g. 'llama'), got {spec!r}"
            )
        return AutoModel.from_config(AutoConfig.for_model(kind, **settings))
    if isinstance(spec, PretrainedConfig):
        return AutoModel.from_config(spec)
    raise TypeError(
        f"expected a model path, a transformers config (object or mapping with a 'type') or an nn.Module, "
        f"got {type(spec).__name__}"
    )


def item_text_tokens(texts: Sequence[str], item_llm: str, *, max_length: int = 32) -> tuple[Tensor, int]:
    """``tokenize_items`` with the tokenizer saved beside a local item LLM (``item_llm`` path):
    the ``item_tokens`` and ``pad_token_id`` of an ``HLLM`` over that LLM."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(item_llm)
    return tokenize_items(texts, tokenizer, max_length=max_length), int(tokenizer.pad_token_id)


class Tokenizer(Protocol):
    """What ``tokenize_items`` needs of a ``transformers`` tokenizer."""

    pad_token_id: int | None

    def __call__(self, text: list[str], **kwargs: object) -> Mapping[str, Tensor]: ...


def tokenize_items(texts: Sequence[str], tokenizer: Tokenizer, *, max_length: int = 32) -> Tensor:
    """HLLM's ``item_tokens``: ``texts[i]`` is item id ``i + 1``'s text -> ``(len(texts) + 1, T)``
    token ids, left-padded with ``tokenizer.pad_token_id``, truncated to ``max_length``; row 0 (the
    padding item) is all padding. Pass the same ``pad_token_id`` to ``HLLM``."""
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError("tokenize_items: the tokenizer has no pad_token_id; set tokenizer.pad_token first")
    enc = tokenizer(
        list(texts), padding="longest", truncation=True, max_length=max_length, padding_side="left",
        return_tensors="pt",
    )  # fmt: skip
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()  # (N - 1, T)
    if bool((ids[mask] == pad).any()):
        raise ValueError(f"tokenize_items: a text token equals the padding id {pad}; use another pad token")
    ids = ids.masked_fill(~mask, pad)
    return torch.cat([torch.full((1, ids.shape[1]), pad, dtype=torch.long), ids.long()])  # (N, T)


def _token_table(llm: nn.Module) -> nn.Embedding:
    return cast(nn.Embedding, llm.get_input_embeddings())  # type: ignore[operator]


def _width(llm: nn.Module) -> int:
    return int(_token_table(llm).weight.shape[1])


@torch.no_grad()
def _check_causal(llm: nn.Module, width: int) -> None:
    """Raise if a later input changes an earlier output (a bidirectional encoder would leak the
    targets of all-position training)."""
    was = llm.training
    llm.eval()
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, width, generator=g).repeat(2, 1, 1)  # (2, 3, D): two sequences...
        x[1, -1] = torch.randn(
            width, generator=g
        )  # ...differing in the last input only (not a shift: LayerNorm)
        mask, pos = torch.ones(2, 3, dtype=torch.long), torch.arange(3).expand(2, 3)
        first = llm(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state[:, 0]  # (2, D)
        a, b = first[0], first[1]
    finally:
        llm.train(was)
    if not torch.allclose(a, b, atol=1e-5):
        raise ValueError(
            f"user_llm must be causal (decoder-only, e.g. Llama/GPT-2): the first output of "
            f"{type(llm).__name__} changed when a later input changed"
        )


def _refresh_cache(module: nn.Module, _keys: object) -> None:
    module.cache_items()  # type: ignore[operator]


class HLLM(TwoTowerModel):
    """Item LLM -> item embeddings; user LLM over them -> next-item states.

    From a config, ``data.item_text`` names the item-table columns whose text the item LLM reads
    (``item_text_tokens`` tokenises them with the LLM's own tokenizer) and ``item_llm`` is a local
    path; ``user_llm`` may be a mapping such as ``{type: llama, hidden_size: 64, ...}``.

    Args:
        item_tokens: ``(num_items, T)`` token ids of each item's text, left-padded with
            ``pad_token_id`` (row 0 = padding item).
        item_llm, user_llm: model path/name, ``transformers`` config, or module; ``user_llm``
            must be causal.
        pad_token_id: padding token in ``item_tokens``.
        item_pooling: ``"item_token"`` (the paper's learned token) or ``"mean"`` (mean of the
            text tokens' states; use it with a pretrained sentence encoder, frozen or not).
        max_len: longest history. l2_normalize: unit-norm output vectors. temperature: divides scores.
        history_column, item_column: batch column names.
        freeze_item_llm: keep the item LLM's weights fixed and encode every item once
            (``cache_items``); the bridge and the user LLM train on top.
    """

    item_tokens: Tensor

    def __init__(
        self,
        item_tokens: Tensor,
        *,
        item_llm: str | object,
        user_llm: str | object,
        pad_token_id: int = 0,
        item_pooling: ItemPooling | str = ItemPooling.ITEM_TOKEN,
        max_len: int = 50,
        l2_normalize: bool = True,
        temperature: float = 1.0,
        history_column: str = "hist_item_id",
        item_column: str = "item_id",
        freeze_item_llm: bool = False,
    ) -> None:
        super().__init__()
        if item_tokens.dim() != 2 or item_tokens.dtype != torch.long:
            raise ValueError(
                f"item_tokens must be an int64 (num_items, T) tensor, got {item_tokens.dtype} {tuple(item_tokens.shape)}"
            )
        num_items = item_tokens.shape[0]
        self.item_llm, self.user_llm = load_language_model(item_llm), load_language_model(user_llm)
        # The user LLM reads item embeddings, never its own token table: freeze the unused table.
        _token_table(self.user_llm).weight.requires_grad_(False)
        width = _width(self.user_llm)
        _check_causal(self.user_llm, width)
        self.item_pooling = ItemPooling.parse(item_pooling, where="item_pooling")
        self.history_column, self.pad_token_id = history_column, pad_token_id
        self.user_features = [
            SequenceFeature(
                history_column, num_items, embed_dim=width, shared_with=item_column, max_len=max_len
            )
        ]
        self.item_features = [SparseFeature(item_column, num_items, embed_dim=width)]
        self.temperature, self.l2_normalize = temperature, l2_normalize
        self.register_buffer("item_tokens", item_tokens.clone(), persistent=False)
        self.item_token = (  # the learned [ITEM] token
            nn.Parameter(torch.randn(_width(self.item_llm)) * 0.02)
            if self.item_pooling is ItemPooling.ITEM_TOKEN
            else None
        )
        self.bridge = (
            nn.Linear(_width(self.item_llm), width) if _width(self.item_llm) != width else nn.Identity()
        )
        self.item_cache: Tensor | None = None
        self.freeze_item_llm = freeze_item_llm
        if freeze_item_llm:
            self.item_llm.requires_grad_(False)
            if self.item_token is not None:
                self.item_token.requires_grad_(False)
            self.cache_items()
            # restored weights (a run directory's best.pt) must be what the cache encodes
            self.register_load_state_dict_post_hook(_refresh_cache)

    def _encode_items(self, ids: Tensor) -> Tensor:
        """Item LLM over the text of ``ids (N,)`` -> ``(N, H)`` (before the bridge)."""
        tokens = self.item_tokens[ids]  # (N, T) left-padded
        mask = tokens != self.pad_token_id
        emb = _token_table(self.item_llm)(tokens)  # (N, T, H)
        if self.item_token is not None:
            emb = torch.cat([emb, self.item_token.expand(len(ids), 1, -1)], 1)  # (N, T + 1, H)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)  # (N, T + 1)
        pos = (mask.long().cumsum(1) - 1).clamp_min(0)  # positions ignore the padding
        out = self.item_llm(inputs_embeds=emb, attention_mask=mask.long(), position_ids=pos).last_hidden_state
        if self.item_token is not None:
            return out[:, -1]  # (N, H)
        m = mask.unsqueeze(-1).to(out.dtype)  # (N, T, 1)
        return (out * m).sum(1) / m.sum(1).clamp_min(1.0)  # (N, H)

    def _items(self, ids: Tensor) -> Tensor:
        if self.item_cache is not None:
            return self.bridge(self.item_cache[ids])  # (..., D)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        return self.bridge(self._encode_items(uniq))[inverse]  # (..., D)

    @torch.no_grad()
    def cache_items(self, batch_size: int = 256) -> Tensor:
        """Encode every item once (item LLM in eval mode) and serve ``item_tower`` and history
        inputs from the cache ``(num_items, H)`` until ``clear_cache``; the bridge still trains."""
        self.item_cache = None
        was = self.item_llm.training
        self.item_llm.eval()
        try:
            ids = torch.arange(self.item_tokens.shape[0], device=self.item_tokens.device)
            self.item_cache = torch.cat([self._encode_items(c) for c in ids.split(batch_size)])  # (N, H)
        finally:
            self.item_llm.train(was)
        return self.item_cache

    def clear_cache(self) -> None:
        self.item_cache = None

    def sequence_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """User-LLM state after each history position ``(B, L, D)`` (0 at padding)."""
        ids = batch[self.history_column]  # (B, L) left-padded
        mask = ids != 0
        x = self._items(ids) * mask.unsqueeze(-1)  # (B, L, D)
        pos = (mask.long().cumsum(1) - 1).clamp_min(0)  # (B, L)
        h = self.user_llm(inputs_embeds=x, attention_mask=mask.long(), position_ids=pos).last_hidden_state
        h = F.normalize(h, dim=-1) if self.l2_normalize else h
        return h * mask.unsqueeze(-1)  # (B, L, D)

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.sequence_tower(batch)[:, -1]  # (B, D)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        v = self._items(batch[self.item_id])  # (..., D)
        return F.normalize(v, dim=-1) if self.l2_normalize else v


HLLMModel = HLLM  # Torch-RecHub's name (torch_rechub.models.generative.hllm.HLLMModel)
