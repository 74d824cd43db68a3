"""Synthetic impression -> click -> conversion funnel with known click and conversion propensities.

Used to measure sample-selection bias in post-click conversion (CVR) estimation (the ESMM setting):
items differ in a latent quality that raises both the click and the conversion propensity, and
item popularity is long-tailed, so the clicked impressions over-represent high-quality items and
rare low-quality items are seldom clicked. A CVR model fitted on clicked impressions only learns
little about those items and extrapolates the clicked population's conversion rate to the entire
impression space.

Generative model (``sigma`` the logistic function, ``<.,.>`` a dot product of latent vectors):

    quality_i  = category_effect[category_i] + N(0, item_noise^2)
    ctr(u, i)  = sigma(ctr_bias + ctr_quality * quality_i + <P_u, Q_i>)
    cvr(u, i)  = sigma(cvr_bias + cvr_quality * quality_i + <P_u, R_i> + user_effect_u)
    click      ~ Bernoulli(ctr);  converted_if_clicked ~ Bernoulli(cvr)
    conversion = click * converted_if_clicked

Columns: ``user_id``, ``item_id``, ``item_category`` (ids from 1; 0 stays free for padding),
``click``, ``conversion``, and the ground truth ``true_ctr``, ``true_cvr``,
``converted_if_clicked`` (the counterfactual conversion label of every impression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FunnelConfig:
    """Sizes and effect strengths of ``conversion_funnel``."""

    n_users: int = 2000
    n_items: int = 2000
    n_categories: int = 20
    latent_dim: int = 4
    item_zipf: float = 1.1  # popularity exponent: impressions of item rank r proportional to r^-a
    ctr_bias: float = -2.5
    ctr_quality: float = 1.5
    cvr_bias: float = -1.5
    cvr_quality: float = 1.5
    item_noise: float = 0.7
    interaction_scale: float = 0.5


def conversion_funnel(
    n_samples: int, *, config: FunnelConfig = FunnelConfig(), seed: int = 0
) -> pd.DataFrame:
    """``n_samples`` impressions of the funnel described in the module docstring."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    c = config
    rng = np.random.default_rng(seed)
    category = rng.integers(0, c.n_categories, c.n_items)
    category_effect = rng.normal(0.0, 1.0, c.n_categories)
    quality = category_effect[category] + rng.normal(0.0, c.item_noise, c.n_items)
    scale = c.interaction_scale / np.sqrt(c.latent_dim)
    p_user = rng.normal(0.0, 1.0, (c.n_users, c.latent_dim))
    q_item = rng.normal(0.0, scale, (c.n_items, c.latent_dim))
    r_item = rng.normal(0.0, scale, (c.n_items, c.latent_dim))
    user_effect = rng.normal(0.0, 0.3, c.n_users)

    popularity = 1.0 / np.arange(1, c.n_items + 1) ** c.item_zipf
    popularity = popularity[rng.permutation(c.n_items)]  # popularity independent of quality
    items = rng.choice(c.n_items, n_samples, p=popularity / popularity.sum())
    users = rng.integers(0, c.n_users, n_samples)

    ctr_logit = (
        c.ctr_bias + c.ctr_quality * quality[items] + np.einsum("nd,nd->n", p_user[users], q_item[items])
    )
    cvr_logit = (
        c.cvr_bias
        + c.cvr_quality * quality[items]
        + np.einsum("nd,nd->n", p_user[users], r_item[items])
        + user_effect[users]
    )
    true_ctr = 1.0 / (1.0 + np.exp(-ctr_logit))
    true_cvr = 1.0 / (1.0 + np.exp(-cvr_logit))
    click = rng.random(n_samples) < true_ctr
    converted = rng.random(n_samples) < true_cvr
    return pd.DataFrame(
        {
            "user_id": users + 1,
            "item_id": items + 1,
            "item_category": category[items] + 1,
            "click": click.astype("float32"),
            "conversion": (click & converted).astype("float32"),
            "true_ctr": true_ctr.astype("float32"),
            "true_cvr": true_cvr.astype("float32"),
            "converted_if_clicked": converted.astype("float32"),
        }
    )
