"""The AutoSpeech per-prediction score (SPEC.md, "The metric"), for the runtime's own validation.

The runtime scores every round and every ensemble candidate with it, so it is vectorised
over columns: tie-averaged ranks of all columns at once by ``scipy.stats.rankdata``, then
the Mann-Whitney statistic per column. The harness scores test predictions with the same
functions (harness/scoring.py), so validation and test can never disagree on the rule.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


class MetricError(ValueError):
    """A solution or prediction cannot be scored; the message names the rule and the value."""


def column_aucs(solution: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """ROC AUC of every column [shape=(k,)] by Mann-Whitney with tie-averaged ranks.

    Columns that are all-0 or all-1 in ``solution`` get NaN (they cannot be scored).
    """
    solution = np.asarray(solution)
    prediction = np.asarray(prediction)
    if solution.ndim != 2:
        raise MetricError(f"solution must be 2-D (n, k), got shape {solution.shape}")
    if prediction.shape != solution.shape:
        raise MetricError(f"prediction must have shape (n, k) = {solution.shape}, got {prediction.shape}")
    if not np.issubdtype(prediction.dtype, np.number) or prediction.dtype == np.bool_:
        raise MetricError(f"prediction must be numeric, got dtype {prediction.dtype}")
    if not np.all(np.isfinite(prediction)):
        raise MetricError(
            f"prediction must be finite, got {np.count_nonzero(~np.isfinite(prediction))} non-finite value(s)"
        )
    if not np.all((solution == 0) | (solution == 1)):
        raise MetricError(f"solution must be 0 or 1, got values {np.unique(solution)!r}")
    positive = solution == 1
    n_pos = positive.sum(axis=0)
    n_neg = solution.shape[0] - n_pos
    ranks = rankdata(prediction.astype(np.float64), method="average", axis=0)
    rank_sums = np.where(positive, ranks, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        aucs = (rank_sums - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), aucs, np.nan)


def normalized_auc(solution: np.ndarray, prediction: np.ndarray) -> float:
    """Score ``2*AUC - 1`` of one prediction, AUC averaged over scorable columns; never clipped.

    ``solution`` is one-hot [shape=(n, k)]; ``prediction`` holds scores of the same shape.
    """
    aucs = column_aucs(solution, prediction)
    scorable = np.isfinite(aucs)
    if not scorable.any():
        raise MetricError(
            f"solution must have a column with both 0s and 1s, got none among {aucs.shape[0]} column(s)"
        )
    return float(2.0 * aucs[scorable].mean() - 1.0)
