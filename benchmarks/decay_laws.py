"""How often harness.core.analysis.decay_law names the law a synthetic profile was drawn from.

    python benchmarks/decay_laws.py            # the confusion table the README shows

Profiles ln-norm(k) for k = 0..T with T in {100, 300, 1000}: exponential (rate U[-0.3, -0.01]),
power (exponent U[-2, -0.2]) and flat (constant), plus Gaussian noise of sd 0.01 or 0.1 nats per
point; 200 of each law at each noise level. tests/test_decay_laws.py asserts on the same recipe.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.core.analysis import fit_profile

LAWS = ("exponential", "power", "flat")


def synthetic(law: str, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(lag, log10_norm) of one synthetic profile."""
    seq_len = int(rng.choice([100, 300, 1000]))
    lag = np.arange(seq_len + 1, dtype=float)
    if law == "exponential":
        ln_norm = rng.uniform(-0.3, -0.01) * lag
    elif law == "power":
        ln_norm = rng.uniform(-2.0, -0.2) * np.log1p(lag)
    else:
        ln_norm = np.zeros_like(lag)
    ln_norm = ln_norm + rng.normal(0, noise, lag.shape)
    return lag, ln_norm / math.log(10)


def confusion(per_law: int = 200, noises: tuple[float, ...] = (0.01, 0.1), seed: int = 0) -> pd.DataFrame:
    """Rows: the law drawn (and the noise); columns: the law named; entries: counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for noise in noises:
        for law in LAWS:
            for _ in range(per_law):
                named = fit_profile(*synthetic(law, rng, noise))["decay_law"]
                rows.append({"noise": noise, "drawn": law, "named": named})
    table = pd.crosstab(
        [pd.Series([r["noise"] for r in rows], name="noise"), pd.Series([r["drawn"] for r in rows], name="drawn")],
        pd.Series([r["named"] for r in rows], name="named"),
    )
    return table.reindex(columns=[*LAWS, "undetermined"], fill_value=0)


if __name__ == "__main__":
    print(confusion().to_string())
