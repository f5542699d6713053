"""The AutoSpeech 2019 metric: normalized AUC per prediction, ALC per dataset."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from harness.errors import HarnessError
from portfolio import metric
from portfolio.metric import MetricError, column_aucs

T0_S = 60.0
# Real-time ticks (seconds) shown on the top axis of learning-curve plots.
_SECOND_TICKS = (0, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def column_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of one column by Mann-Whitney with tie-averaged ranks (the runtime's rule)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise HarnessError(
            f"labels and scores must be 1-D of equal length, got shapes {labels.shape} and {scores.shape}"
        )
    n_pos = int(np.count_nonzero(labels == 1))
    if np.all((labels == 0) | (labels == 1)) and n_pos in (0, labels.shape[0]):
        raise HarnessError(
            f"labels must contain both 0 and 1, got {n_pos} positive(s) and {labels.shape[0] - n_pos} negative(s)"
        )
    try:
        return float(column_aucs(labels[:, None], scores[:, None])[0])
    except MetricError as error:
        raise HarnessError(str(error).replace("solution", "labels").replace("prediction", "scores")) from error


def normalized_auc(solution: np.ndarray, prediction: np.ndarray) -> float:
    """Score ``2*AUC - 1`` of one prediction (portfolio.metric), with harness errors.

    Columns whose solution is all-0 or all-1 are skipped; the score is never clipped.
    ``solution`` is one-hot of shape (n, k); ``prediction`` holds scores of shape (n, k).
    """
    try:
        return metric.normalized_auc(solution, prediction)
    except MetricError as error:
        raise HarnessError(str(error)) from error


def _check_time_params(time_budget: float, t0: float) -> None:
    """Raise unless the budget and the transform's t0 are positive and finite."""
    if not (np.isfinite(time_budget) and time_budget > 0):
        raise HarnessError(f"time_budget must be > 0 seconds, got {time_budget!r}")
    if not (np.isfinite(t0) and t0 > 0):
        raise HarnessError(f"t0 must be > 0 seconds, got {t0!r}")


def time_transform(
    t: float | np.ndarray, time_budget: float, t0: float = T0_S
) -> float | np.ndarray:
    """Log-scaled time ``log(1 + t/t0) / log(1 + T/t0)``; 0 at t=0, 1 at t=T."""
    _check_time_params(time_budget, t0)
    t_arr = np.asarray(t, dtype=np.float64)
    if np.any(~np.isfinite(t_arr) | (t_arr < 0)):
        raise HarnessError(f"t must be finite and >= 0 seconds, got {t!r}")
    out = np.log1p(t_arr / t0) / np.log1p(time_budget / t0)
    return float(out) if out.ndim == 0 else out


def _check_timestamps(timestamps: np.ndarray) -> None:
    """Raise unless timestamps are finite, >= 0 and non-decreasing."""
    if not np.all(np.isfinite(timestamps)) or np.any(timestamps < 0):
        raise HarnessError(
            f"timestamps must be finite and >= 0 seconds, got {timestamps.tolist()}"
        )
    if np.any(np.diff(timestamps) < 0):
        raise HarnessError(
            f"timestamps must be non-decreasing, got {timestamps.tolist()}"
        )


def alc(
    timestamps: np.ndarray | list[float],
    scores: np.ndarray | list[float],
    time_budget: float,
    t0: float = T0_S,
) -> float:
    """Area under the step learning curve in transformed time [0, 1].

    The curve is 0 until the first prediction; each score holds until the next one,
    the last until t~=1. Predictions with timestamp > time_budget are dropped.
    """
    _check_time_params(time_budget, t0)
    timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if timestamps.shape != scores.shape:
        raise HarnessError(
            f"scores must have one value per timestamp ({timestamps.size}), "
            f"got {scores.size}"
        )
    if not np.all(np.isfinite(scores)):
        raise HarnessError(f"scores must be finite, got {scores.tolist()}")
    _check_timestamps(timestamps)
    counted = timestamps <= time_budget
    t_tilde = np.append(time_transform(timestamps[counted], time_budget, t0), 1.0)
    return float(np.sum(np.diff(t_tilde) * scores[counted]))


def score_run(
    solution: np.ndarray,
    predictions: list[tuple[float, np.ndarray]],
    time_budget: float,
    t0: float = T0_S,
) -> dict[str, Any]:
    """Score every ``(timestamp_s, prediction)`` of one run and its ALC.

    Returns a JSON-able dict: ``alc``; ``final_score`` (score of the last counted
    prediction, None if none); ``first_prediction_s`` (timestamp of the first counted
    prediction, None if none); ``n_predictions`` (all received, counted or not);
    ``time_budget``; ``t0``; ``predictions``: one ``{"t_s", "score", "t_transformed",
    "counted"}`` per prediction, where ``counted`` is False past the budget.
    """
    _check_time_params(time_budget, t0)
    timestamps = np.array([float(t) for t, _ in predictions], dtype=np.float64)
    _check_timestamps(timestamps)
    scores = [normalized_auc(solution, prediction) for _, prediction in predictions]
    t_tilde = time_transform(timestamps, time_budget, t0)
    rows = [
        {
            "t_s": float(t),
            "score": s,
            "t_transformed": float(tt),
            "counted": bool(t <= time_budget),
        }
        for t, s, tt in zip(timestamps, scores, t_tilde)
    ]
    counted = [row for row in rows if row["counted"]]
    return {
        "alc": alc(timestamps, scores, time_budget, t0),
        "final_score": counted[-1]["score"] if counted else None,
        "first_prediction_s": counted[0]["t_s"] if counted else None,
        "n_predictions": len(rows),
        "time_budget": float(time_budget),
        "t0": float(t0),
        "predictions": rows,
    }


def _draw_step_curve(ax: Any, result: dict[str, Any], label: str | None, alpha: float) -> None:
    """Draw one run's step curve on ``ax`` and shade the area it earns."""
    counted = [row for row in result["predictions"] if row["counted"]]
    x = [0.0] + [row["t_transformed"] for row in counted] + [1.0]
    y = [0.0] + [row["score"] for row in counted]
    y.append(y[-1])
    (line,) = ax.step(x, y, where="post", label=label)
    ax.fill_between(x, y, step="post", color=line.get_color(), alpha=alpha)


def _add_seconds_axis(ax: Any, time_budget: float, t0: float) -> None:
    """Label the top axis with real seconds at their transformed positions."""
    scale = np.log1p(time_budget / t0)

    def to_seconds(x: np.ndarray) -> np.ndarray:
        return t0 * np.expm1(np.asarray(x, dtype=np.float64) * scale)

    def to_transformed(t: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(np.asarray(t, dtype=np.float64), 0.0) / t0) / scale

    top = ax.secondary_xaxis("top", functions=(to_seconds, to_transformed))
    ticks = [s for s in _SECOND_TICKS if s <= 0.9 * time_budget] + [time_budget]
    top.set_xticks(ticks)
    top.set_xticklabels([f"{s:g}" for s in ticks], fontsize=8)
    top.set_xlabel("charged time (s)")


def _new_axes(title: str) -> tuple[Any, Any]:
    """A standalone Agg figure with axes set up for learning curves."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("transformed time t~ = log(1 + t/t0) / log(1 + T/t0)")
    ax.set_ylabel("score 2*AUC - 1")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return fig, ax


def _save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG atomically, so a reader never sees a half-written plot."""
    # Imported here: the runtime imports this module, and the submission zip carries
    # only the modules the runtime loads.
    from harness.dataset import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def plot_learning_curve(
    result: dict[str, Any], path: str | os.PathLike[str], title: str
) -> None:
    """Plot one ``score_run`` result as a shaded step curve, written to a PNG."""
    fig, ax = _new_axes(f"{title} (ALC = {result['alc']:.4f})")
    _draw_step_curve(ax, result, label=None, alpha=0.3)
    _add_seconds_axis(ax, result["time_budget"], result.get("t0", T0_S))
    _save_png(fig, path)


def plot_learning_curves(
    results: dict[str, dict[str, Any]], path: str | os.PathLike[str], title: str
) -> None:
    """Plot several ``score_run`` results (dataset name -> result) on one PNG."""
    if not results:
        raise HarnessError("results must hold at least one dataset, got none")
    fig, ax = _new_axes(title)
    for name, result in results.items():
        _draw_step_curve(ax, result, label=f"{name} (ALC {result['alc']:.3f})", alpha=0.1)
    budgets = {(r["time_budget"], r.get("t0", T0_S)) for r in results.values()}
    if len(budgets) == 1:  # real seconds only mean one thing if all runs share T, t0
        _add_seconds_axis(ax, *budgets.pop())
    ax.legend(fontsize=8, loc="lower right")
    _save_png(fig, path)
