"""What the Keras members share: TensorFlow setup, augmentation, deadline training."""

from __future__ import annotations

import math
import os
import time
from abc import abstractmethod

import keras
import numpy as np
import tensorflow as tf

from portfolio.base import Member, check_fitted, normalize_proba

MAX_EPOCHS_PER_ROUND = 1_000_000
PREDICT_BATCH = 256
STD_FLOOR = 1e-3
_TF_CONFIGURED = False


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure_tensorflow(n_threads: int | None = None) -> None:
    """Set TensorFlow's intra- and inter-op thread pools once (default: usable cores).

    Must run before TensorFlow executes its first op; later calls do nothing.
    A visible GPU is used automatically.
    """
    global _TF_CONFIGURED
    if _TF_CONFIGURED:
        return
    n_threads = n_threads or usable_cores()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    except RuntimeError:  # TensorFlow already initialized by someone else: keep its pools.
        pass
    _TF_CONFIGURED = True


def _bands(rng: np.random.Generator, n_rows: int, size: int, max_frac: float) -> np.ndarray:
    """One random band per row [shape=(n_rows, size)], width uniform in [0, max(1, max_frac * size)]."""
    width = rng.integers(0, max(1, int(max_frac * size)) + 1, size=n_rows)
    first = rng.integers(0, size, size=n_rows)
    index = np.arange(size)
    return (index >= first[:, None]) & (index < (first + width)[:, None])


def spec_augment(X: np.ndarray, rng: np.random.Generator, *, max_frac: float = 0.125) -> np.ndarray:
    """Copy of ``X`` [shape=(b, t, d)] with one time band and one feature band per row set to 0.

    ``X`` is assumed standardized, so 0 is the mean.
    """
    b, t, d = X.shape
    keep = ~_bands(rng, b, t, max_frac)[:, :, None] & ~_bands(rng, b, d, max_frac)[:, None, :]
    return X * keep


def mixup(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Mix each row of ``X`` and ``y`` with a random partner, weights drawn from Beta(alpha, alpha)."""
    lam = rng.beta(alpha, alpha, size=len(X)).astype(np.float32)
    partner = rng.permutation(len(X))
    lam_x = lam.reshape((-1,) + (1,) * (X.ndim - 1))
    return lam_x * X + (1 - lam_x) * X[partner], lam[:, None] * y + (1 - lam[:, None]) * y[partner]


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled mini-batches with optional SpecAugment masking and mixup, reshuffled every epoch."""

    def __init__(self, X, y, batch_size, rng, spec_augment_on, mixup_alpha):
        super().__init__()
        self.X, self.y, self.batch_size, self.rng = X, y, batch_size, rng
        self.spec_augment_on, self.mixup_alpha = spec_augment_on, mixup_alpha
        self.order = rng.permutation(len(X))

    def __len__(self):
        return math.ceil(len(self.X) / self.batch_size)

    def __getitem__(self, i):
        rows = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        X, y = self.X[rows], self.y[rows]
        if self.spec_augment_on:
            X = spec_augment(X, self.rng)
        if self.mixup_alpha > 0:
            X, y = mixup(X, y, self.rng, self.mixup_alpha)
        return X, y

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.X))


class DeadlineCallback(keras.callbacks.Callback):
    """Stop training after the batch during which a ``time.monotonic()`` deadline passes.

    ``batch_s`` holds the seconds of every batch trained.
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_train_begin(self, logs=None):
        self.batch_s = []

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        self.batch_s.append(now - self._batch_start)
        if now >= self.deadline:
            self.model.stop_training = True


class KerasMember(Member):
    """A Keras classifier on standardized frame sequences (n, t, d), trained against a deadline.

    The first round fixes per-feature standardization from its data, builds
    the model (``_build``) and compiles it with Adam; every round then trains
    shuffled mini-batches (optionally SpecAugment-masked and mixed up) until
    the allowance is spent, checked after every batch, so a round overruns by
    at most one batch, plus graph tracing in the first round. At least one
    batch is trained per round. ``n_epochs_`` counts epochs, fractional.
    Subclasses define hyperparameters ``lr``, ``batch_size``, ``spec_augment``,
    ``mixup_alpha``, ``seed``, plus ``feature_spec`` and ``_build``.
    """

    @abstractmethod
    def _build(self, input_shape: tuple, n_classes: int):
        """Uncompiled Keras model mapping (t, d) sequences to class probabilities."""

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """Standardized float32 model inputs."""
        X = (np.asarray(X, dtype=np.float32) - self.mean_) / self.std_
        return np.nan_to_num(X, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def partial_fit(self, X: np.ndarray, y_onehot: np.ndarray, time_allowance_s: float) -> KerasMember:
        """Train until ``time_allowance_s`` is spent (at least one batch); resume if fitted."""
        start = time.monotonic()
        self._check_params()
        self._check_training_data(X, y_onehot, time_allowance_s)
        configure_tensorflow()
        if not hasattr(self, "n_rounds_"):
            X32 = np.nan_to_num(np.asarray(X, dtype=np.float32))
            self.mean_ = X32.mean(axis=(0, 1))
            self.std_ = np.maximum(X32.std(axis=(0, 1)), STD_FLOOR)
            self.n_classes_ = y_onehot.shape[1]
            self.n_features_in_ = X.shape[-1]
            keras.utils.set_random_seed(self.seed)
            self.model_ = self._build((None, X.shape[-1]), self.n_classes_)
            self.model_.compile(optimizer=keras.optimizers.Adam(self.lr), loss="categorical_crossentropy")
            self.n_rounds_ = 0
            self.n_epochs_ = 0.0
        rng = np.random.default_rng([self.seed, self.n_rounds_])
        batches = AugmentedBatches(
            self._inputs(X), np.asarray(y_onehot, dtype=np.float32), self.batch_size, rng,
            self.spec_augment, self.mixup_alpha,
        )
        deadline = DeadlineCallback(start + time_allowance_s)
        self.model_.fit(batches, epochs=MAX_EPOCHS_PER_ROUND, callbacks=[deadline], verbose=0)
        self.n_epochs_ += len(deadline.batch_s) / len(batches)
        self.n_rounds_ += 1
        # One epoch at the typical batch speed; the first batch of a round carries tracing.
        typical_s = float(np.median(deadline.batch_s[1:] or deadline.batch_s))
        self._log_cost("fit", len(X), typical_s * len(batches))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities [shape=(n, class_num)] from the softmax output."""
        check_fitted(self)
        if len(X) == 0:
            return np.zeros((0, self.n_classes_))
        start = time.monotonic()
        proba = self.model_.predict(self._inputs(X), batch_size=PREDICT_BATCH, verbose=0)
        self._log_cost("predict", len(X), time.monotonic() - start)
        return normalize_proba(proba)
