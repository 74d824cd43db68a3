"""Objectives of generative retrieval: the RQ-VAE that builds semantic IDs and the next-ID
cross-entropy of TIGER (Rajput et al. 2023, arXiv 2305.05065)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from recforge.outputs import RQVAEOutput, SemanticIDOutput


class RQVAELosses(NamedTuple):
    reconstruction: Tensor  # mean over rows of ||x - x_hat||²
    codebook: Tensor  # Σ_levels mean ||sg[r_l] - e_l||²: moves the codewords
    commitment: Tensor  # Σ_levels mean ||r_l - sg[e_l]||²: keeps the encoder near its codes


def rqvae_losses(outputs: RQVAEOutput) -> RQVAELosses:
    """The three terms of the RQ-VAE loss (un-weighted)."""
    recon = (outputs.reconstruction - outputs.input).pow(2).sum(-1).mean()
    codebook = (outputs.residuals.detach() - outputs.codewords).pow(2).sum(-1).mean(0).sum()
    commitment = (outputs.residuals - outputs.codewords.detach()).pow(2).sum(-1).mean(0).sum()
    return RQVAELosses(recon, codebook, commitment)


class RQVAELoss:
    """``reconstruction + codebook + beta * commitment`` (the paper's beta is 0.25)."""

    def __init__(self, beta: float = 0.25) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = beta

    def __call__(self, outputs: RQVAEOutput, batch: Mapping[str, Tensor]) -> Tensor:
        del batch
        parts = rqvae_losses(outputs)
        return parts.reconstruction + parts.codebook + self.beta * parts.commitment


def semantic_id_loss(outputs: SemanticIDOutput, batch: Mapping[str, Tensor]) -> Tensor:
    """Cross-entropy of every code of each row's target semantic ID (teacher forcing), averaged
    over the codes of rows that have a target."""
    del batch
    logits, codes = outputs.logits, outputs.codes  # (B, C, V), (B, C)
    if logits.shape[:2] != codes.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match target codes {tuple(codes.shape)}")
    keep = codes >= 0  # (B, C)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], codes[keep])
