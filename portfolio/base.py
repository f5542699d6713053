"""The interface shared by portfolio members, and its helpers."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

COST_MARGIN = 1.25


class MemberError(ValueError):
    """A member's hyperparameter or input is out of its allowed range."""


def check_fitted(member: BaseEstimator, method: str = "predict_proba", attribute: str = "n_rounds_") -> None:
    """Raise ``NotFittedError`` naming the member's class unless ``attribute`` is set."""
    if not hasattr(member, attribute):
        raise NotFittedError(
            f"This {type(member).__name__} instance is not fitted yet; call 'partial_fit' before '{method}'."
        )


def normalize_proba(proba: np.ndarray) -> np.ndarray:
    """Float64 probabilities with finite, non-negative entries and rows summing to one.

    Rows with no usable mass (all zero or non-finite) become uniform.
    """
    proba = np.nan_to_num(np.asarray(proba, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(proba, 0.0, None, out=proba)
    total = proba.sum(axis=1, keepdims=True)
    uniform = np.full_like(proba, 1.0 / max(proba.shape[1], 1))
    return np.where(total > 0, proba / np.where(total > 0, total, 1.0), uniform)


class Member(BaseEstimator, metaclass=ABCMeta):
    """A portfolio member: one front end, one model, trained in time slices.

    Hyperparameters are constructor keywords stored untouched (JSON-able), so
    ``get_params``/``clone`` rebuild a member from its config. Learned state
    ends in ``_`` and exists only after :meth:`partial_fit`; ``n_rounds_``
    counts its calls. Column ``j`` of :meth:`predict_proba` is class ``j`` of
    the one-hot labels, whether or not class ``j`` was in the training data.

    Subclasses set ``_parameter_constraints`` (name -> (predicate, rule)),
    checked at each ``partial_fit`` (front-end parameters are checked by the
    front end), and ``cost_prior_s`` (kind -> (fixed seconds, seconds per
    clip)), the conservative cost guess used before any measurement.
    """

    _parameter_constraints: dict = {}
    cost_prior_s: dict = {"fit": (1.0, 1e-3), "predict": (1.0, 1e-3)}

    @abstractmethod
    def feature_spec(self) -> dict:
        """The front end this member consumes: ``{"name": str, "params": dict}`` for ``compute_features``."""

    @abstractmethod
    def partial_fit(self, X: np.ndarray, y_onehot: np.ndarray, time_allowance_s: float) -> Member:
        """Train until ``time_allowance_s`` seconds are spent, resuming from earlier rounds."""

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities [shape=(n, class_num)], finite, rows summing to one."""

    def estimate_cost_s(self, n_train: int, n_test: int) -> dict:
        """Seconds the next round will likely need: ``{"fit": s, "predict": s}``.

        ``fit`` is the cost of one unit of progress (one epoch, or one full
        solve), including one-time setup before the first round; the member's
        ``partial_fit`` makes no progress on an allowance much shorter than
        that. Before any measurement this is the class's conservative
        ``cost_prior_s``; afterwards the latest measured unit, scaled linearly
        to the new number of clips, times ``COST_MARGIN``.
        """
        measured = getattr(self, "cost_log_", {})
        estimate = {}
        for kind, n in (("fit", n_train), ("predict", n_test)):
            if kind in measured:
                n_measured, seconds = measured[kind]
                estimate[kind] = float(COST_MARGIN * seconds * max(n, 1) / max(n_measured, 1))
            else:
                fixed_s, per_clip_s = self.cost_prior_s[kind]
                estimate[kind] = float(fixed_s + per_clip_s * max(n, 1))
        return estimate

    def _log_cost(self, kind: str, n: int, seconds: float) -> None:
        """Remember that one unit of ``kind`` ("fit" or "predict") on ``n`` clips took ``seconds``."""
        if not hasattr(self, "cost_log_"):
            self.cost_log_ = {}
        self.cost_log_[kind] = (int(n), float(seconds))

    def _check_params(self) -> None:
        """Check every hyperparameter against ``_parameter_constraints``."""
        for name, (is_valid, rule) in self._parameter_constraints.items():
            value = getattr(self, name)
            try:
                valid = bool(is_valid(value))
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise MemberError(f"{name} must be {rule}, got {value!r}")

    def _check_training_data(self, X: np.ndarray, y_onehot: np.ndarray, time_allowance_s: float) -> np.ndarray:
        """Validate a partial_fit call and return the integer labels."""
        X, y_onehot = np.asarray(X), np.asarray(y_onehot)
        if y_onehot.ndim != 2 or y_onehot.shape[1] < 2:
            raise MemberError(f"y_onehot must be 2-D with at least 2 columns, got shape {y_onehot.shape}")
        if X.shape[0] != y_onehot.shape[0] or X.shape[0] == 0:
            raise MemberError(
                f"X and y_onehot must have the same, nonzero number of rows, got {X.shape[0]} and {y_onehot.shape[0]}"
            )
        if not time_allowance_s >= 0:
            raise MemberError(f"time_allowance_s must be >= 0, got {time_allowance_s!r}")
        if hasattr(self, "n_classes_") and y_onehot.shape[1] != self.n_classes_:
            raise MemberError(
                f"y_onehot must keep the {self.n_classes_} columns of earlier rounds, got {y_onehot.shape[1]}"
            )
        if hasattr(self, "n_features_in_") and X.shape[-1] != self.n_features_in_:
            raise MemberError(f"X.shape[-1] must be {self.n_features_in_} as in earlier rounds, got {X.shape[-1]}")
        return np.argmax(y_onehot, axis=1)
