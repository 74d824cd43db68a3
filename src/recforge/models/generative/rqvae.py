"""RQ-VAE semantic-ID tokenizer as in TIGER (Rajput et al. 2023, "Recommender Systems with
Generative Retrieval", arXiv 2305.05065, section 3.1; residual quantisation from Lee et al. 2022,
arXiv 2203.01941).

An MLP encoder maps an item's content vector to a latent ``z``; ``ResidualQuantizer`` turns ``z``
into L codes (L codebooks of K codes); an MLP decoder reconstructs the content vector from the
quantised latent. The paper's setting: encoder 512-256-128 with ReLU, latent 32, 3 levels of 256
codes, beta 0.25, k-means initialisation on the first batch. ``semantic_ids`` encodes a whole
catalogue and appends the disambiguation code (``SemanticIDs.from_codes``).

Deviations: dead-code restarts (a code that stops being used is moved onto a batch vector; off with
``dead_fraction=0``); the loss is ``recforge.objectives.RQVAELoss``, not part of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.layers.mlp import MLP, MLPConfig
from recforge.layers.quantize import ResidualQuantizer, perplexity
from recforge.models.generative.semantic_ids import SemanticIDs
from recforge.outputs import RQVAEOutput


def _mlp(input_dim: int, dims: Sequence[int], output_dim: int, dropout: float) -> nn.Sequential:
    hidden = MLP(input_dim, MLPConfig(dims=tuple(dims), dropout=dropout, output_layer=False))
    return nn.Sequential(hidden, nn.Linear(hidden.output_dim, output_dim))


class RQVAE(nn.Module):
    """Content vector -> L semantic codes -> reconstructed content vector.

    Args:
        input_dim: width of the content vectors.
        dims: encoder hidden widths (the decoder mirrors them).
        latent_dim: width of ``z`` and of every codeword.
        num_codes: K per level (an int, or one per level). num_levels: L.
        dropout: in the encoder/decoder MLPs.
        kmeans_init, dead_fraction: see ``recforge.layers.quantize``.
        embedding_column: the batch column holding content vectors ``(B, input_dim)``.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        dims: Sequence[int] = (512, 256, 128),
        latent_dim: int = 32,
        num_codes: int | Sequence[int] = 256,
        num_levels: int = 3,
        dropout: float = 0.0,
        kmeans_init: bool = True,
        dead_fraction: float = 0.03,
        embedding_column: str = "embedding",
    ) -> None:
        super().__init__()
        self.input_dim, self.embedding_column = input_dim, embedding_column
        self.encoder = _mlp(input_dim, dims, latent_dim, dropout)
        self.quantizer = ResidualQuantizer(
            latent_dim, num_codes=num_codes, num_levels=num_levels, kmeans_init=kmeans_init,
            dead_fraction=dead_fraction,
        )  # fmt: skip
        self.decoder = _mlp(latent_dim, list(reversed(dims)), input_dim, dropout)

    @property
    def num_codes(self) -> tuple[int, ...]:
        return self.quantizer.num_codes

    def forward(self, batch: Mapping[str, Tensor]) -> RQVAEOutput:
        """``batch[embedding_column] (B, input_dim)`` -> reconstruction, residuals/codewords
        ``(B, L, latent_dim)`` and codes ``(B, L)``."""
        x = batch[self.embedding_column].float()  # (B, D_in)
        q = self.quantizer(self.encoder(x))
        return RQVAEOutput(self.decoder(q.quantized), x, q.residuals, q.codewords, q.codes)

    @torch.no_grad()
    def encode(self, embeddings: Tensor, *, batch_size: int = 8192) -> Tensor:
        """Codes ``(N, L)`` of content vectors ``(N, input_dim)`` (eval-mode encoder, no state change)."""
        was = self.training
        self.eval()
        try:
            parts = [self.quantizer.encode(self.encoder(x.float())) for x in embeddings.split(batch_size)]
        finally:
            self.train(was)
        return torch.cat(parts) if parts else torch.zeros(0, len(self.num_codes), dtype=torch.long)

    def code_perplexity(self, embeddings: Tensor) -> list[float]:
        """Per level, ``exp(entropy)`` of the codes used by ``embeddings (N, input_dim)``."""
        codes = self.encode(embeddings)
        return [perplexity(codes[:, i], k) for i, k in enumerate(self.num_codes)]

    def semantic_ids(self, embeddings: Tensor, *, capacity: int | None = None) -> SemanticIDs:
        """The catalogue's semantic IDs from ``embeddings (num_items, input_dim)`` (row ``i`` = item
        id ``i``, row 0 = padding, ignored): the L codes plus the disambiguation code. ``capacity``
        sizes the disambiguation position (see ``SemanticIDs.from_codes``)."""
        return SemanticIDs.from_codes(
            self.encode(embeddings[1:]), num_codes=self.num_codes, capacity=capacity
        )


RQVAEModel = RQVAE  # Torch-RecHub's name
