"""Logistic regression on pooled log-mel and MFCC statistics."""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from portfolio.checks import is_int, is_number
from portfolio.base import Member, check_fitted, normalize_proba

SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")
ITER_CHUNK = 50


class LinearMember(Member):
    """Standardized features + multinomial logistic regression: fast, first to predict.

    A round solves with warm-started chunks of ``ITER_CHUNK`` solver
    iterations until convergence, ``max_iter`` iterations or the allowance;
    the next round resumes from the coefficients unless the set of classes
    present changed. With a single class present it predicts the smoothed
    class frequencies. BLAS runs on one thread: on these small problems more
    threads spin and can make a solve 10-30 times slower on a busy machine.
    """

    _parameter_constraints = {
        "C": (lambda v: is_number(v) and v > 0, "a number > 0"),
        "solver": (lambda v: v in SOLVERS, f"one of {SOLVERS}"),
        "max_iter": (lambda v: is_int(v, 1), "an int > 0"),
    }
    cost_prior_s = {"fit": (0.5, 2e-3), "predict": (0.05, 2e-5)}

    def __init__(
        self, C=0.03, solver="lbfgs", max_iter=300, max_s=3.0, n_mels=64, n_mfcc=20, offset="start", n_windows=1,
        seed=0,
    ):
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.max_s = max_s
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.offset = offset
        self.n_windows = n_windows
        self.seed = seed

    def feature_spec(self) -> dict:
        """Pooled statistics of the log-mel and its MFCCs over a ``max_s`` crop (``offset="spread"``:
        ``n_windows`` windows spread over a long clip, sharing those ``max_s`` seconds)."""
        params = {
            "max_s": self.max_s, "n_mels": self.n_mels, "n_mfcc": self.n_mfcc, "offset": self.offset,
            "n_windows": self.n_windows,
        }
        return {"name": "log_mel_stats", "params": params}

    def partial_fit(self, X: np.ndarray, y_onehot: np.ndarray, time_allowance_s: float) -> LinearMember:
        """Refit the scaler on ``X``, then solve (warm-started) until converged or out of time."""
        deadline = time.monotonic() + time_allowance_s
        self._check_params()
        y = self._check_training_data(X, y_onehot, time_allowance_s)
        if not hasattr(self, "n_rounds_"):
            self.n_classes_ = y_onehot.shape[1]
            self.n_features_in_ = X.shape[1]
            self.n_rounds_ = 0
            self.n_iter_ = 0
        counts = np.bincount(y, minlength=self.n_classes_)
        self.prior_ = (counts + 1.0) / (counts.sum() + self.n_classes_)
        classes = np.flatnonzero(counts)
        self.scaler_ = StandardScaler().fit(X)
        if len(classes) < 2:
            self.model_ = None
        else:
            if getattr(self, "model_", None) is None or not np.array_equal(self.classes_, classes):
                self.model_ = LogisticRegression(
                    C=self.C, solver=self.solver, warm_start=True, random_state=self.seed
                )
            self._solve(self._scaled(X), y, deadline)
        self.classes_ = classes
        self.n_rounds_ += 1
        return self

    def _solve(self, X_scaled: np.ndarray, y: np.ndarray, deadline: float) -> None:
        """Run solver chunks until convergence, ``max_iter`` or ``deadline``; log the cost of a full solve."""
        start = time.monotonic()
        n_iter, converged = 0, False
        while not converged and n_iter < self.max_iter:
            chunk = min(ITER_CHUNK, self.max_iter - n_iter)
            self.model_.set_params(max_iter=chunk)
            with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
                warnings.simplefilter("ignore", ConvergenceWarning)
                # Many classes with few clips each is normal here (speaker identification).
                warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
                self.model_.fit(X_scaled, y)
            n_iter += int(self.model_.n_iter_[0])
            converged = self.model_.n_iter_[0] < chunk
            if time.monotonic() >= deadline:
                break
        self.n_iter_ += n_iter
        seconds = time.monotonic() - start
        self._log_cost("fit", len(y), seconds if converged else seconds * max(self.max_iter / max(n_iter, 1), 1.0))
        if not converged and n_iter >= self.max_iter:
            warnings.warn(
                f"LinearMember did not converge in max_iter={self.max_iter} iterations", ConvergenceWarning
            )

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return np.nan_to_num(self.scaler_.transform(X), nan=0.0, posinf=0.0, neginf=0.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities [shape=(n, class_num)]; classes absent from the last round get 0."""
        check_fitted(self)
        start = time.monotonic()
        if self.model_ is None:
            proba = np.tile(self.prior_, (len(X), 1))
        else:
            proba = np.zeros((len(X), self.n_classes_))
            with threadpool_limits(limits=1, user_api="blas"):
                proba[:, self.classes_] = self.model_.predict_proba(self._scaled(X))
        self._log_cost("predict", len(X), time.monotonic() - start)
        return normalize_proba(proba)
