"""The synthetic conversion funnel: a known CVR and a real selection effect on clicks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.datasets import FunnelConfig, conversion_funnel


def test_funnel_is_consistent_and_seeded() -> None:
    df = conversion_funnel(20_000, seed=3)
    assert (df["conversion"] <= df["click"]).all()  # a conversion needs a click
    np.testing.assert_array_equal(df["conversion"], df["click"] * df["converted_if_clicked"])
    assert df[["user_id", "item_id", "item_category"]].min().min() >= 1  # 0 stays free for padding
    pd.testing.assert_frame_equal(df, conversion_funnel(20_000, seed=3))
    assert not df.equals(conversion_funnel(20_000, seed=4))


def test_clicked_impressions_are_a_biased_sample_of_cvr() -> None:
    """Quality raises both propensities, so clicked impressions convert more than average: the
    bias a CVR model fitted on clicks inherits."""
    df = conversion_funnel(50_000, seed=0)
    clicked = df[df["click"] > 0]
    assert clicked["true_cvr"].mean() > 1.5 * df["true_cvr"].mean()
    # Empirical conversion among clicks matches the known CVR of those impressions.
    assert abs(clicked["conversion"].mean() - clicked["true_cvr"].mean()) < 0.02
    # Without the shared quality effect the selection effect disappears.
    flat = conversion_funnel(50_000, seed=0, config=FunnelConfig(ctr_quality=0.0, cvr_quality=0.0))
    flat_clicked = flat[flat["click"] > 0]
    assert abs(flat_clicked["true_cvr"].mean() - flat["true_cvr"].mean()) < 0.02


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="n_samples"):
        conversion_funnel(0)
