"""What the Keras members share: TensorFlow setup, augmentation, deadline training."""

from __future__ import annotations

import gc
import math
import time
from abc import abstractmethod

import keras
import numpy as np
import tensorflow as tf

from portfolio.checks import is_int, is_number
from portfolio.base import Member, check_fitted, normalize_proba
from portfolio.features import usable_cores

MIN_BATCHES_PER_FIT = 32
PREDICT_BATCH = 256
STD_FLOOR = 1e-3
STATS_ROWS = 1000
_TF_CONFIGURED = False

# Hyperparameter constraints every KerasMember shares; subclasses merge their own with `|`.
KERAS_CONSTRAINTS = {
    "dropout": (lambda v: is_number(v, 0) and v < 1, "a number in [0, 1)"),
    "lr": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "batch_size": (lambda v: is_int(v, 1), "an int > 0"),
    "spec_augment": (lambda v: isinstance(v, bool), "a bool"),
    "mixup_alpha": (lambda v: is_number(v, 0), "a number >= 0"),
    "span_s": (lambda v: v is None or (is_number(v) and v > 0), "None or a number > 0"),
    "test_crops": (lambda v: is_int(v, 1), "an int >= 1"),
}


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
    X = X.copy()
    X[_bands(rng, b, t, max_frac)] = 0.0
    X.transpose(0, 2, 1)[_bands(rng, b, d, max_frac)] = 0.0
    return X


def mixup(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Mix each row of ``X`` and ``y`` with a random partner, weights drawn from Beta(alpha, alpha)."""
    lam = rng.beta(alpha, alpha, size=len(X)).astype(np.float32)
    partner = rng.permutation(len(X))
    mixed = []
    for A in (X, y):
        # lam * A + (1 - lam) * A[partner], with a single temporary array.
        out = A[partner]
        out -= A
        out *= (1 - lam).reshape((-1,) + (1,) * (A.ndim - 1))
        out += A
        mixed.append(out)
    return mixed[0], mixed[1]


def random_crops(X: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """One window of ``n_frames`` per row of ``X`` [shape=(n, t, d)], each at its own random start."""
    starts = rng.integers(0, X.shape[1] - n_frames + 1, size=len(X))
    return X[np.arange(len(X))[:, None], starts[:, None] + np.arange(n_frames)]


def spread_crops(X: np.ndarray, n_frames: int, n_crops: int) -> list[np.ndarray]:
    """``n_crops`` windows of ``n_frames`` spread evenly from the start to the end of every row."""
    starts = np.unique(np.linspace(0, X.shape[1] - n_frames, n_crops).round().astype(int))
    return [X[:, start:start + n_frames] for start in starts]


def batched(X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> tf.data.Dataset:
    """Shuffled mini-batches of (X, y) as a dataset without tf.data autotuning.

    Keras's own pipeline for arrays autotunes, and tearing it down after a full
    epoch can stall for seconds with the CPU idle; this one tears down at once.
    """
    order = rng.permutation(len(X))
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensor_slices((X[order], y[order])).batch(batch_size).prefetch(2)
    return dataset.with_options(options)


class DeadlineCallback(keras.callbacks.Callback):
    """Stop training after the batch during which a ``time.monotonic()`` deadline passes.

    After ``fit``, ``batch_s`` holds the seconds of every batch it trained and
    ``reached`` tells whether the deadline stopped it.
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.batch_s, self.reached = [], False

    def on_train_begin(self, logs=None):
        self.batch_s = []
        self.reached = False

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        self.batch_s.append(now - self._batch_start)
        if now >= self.deadline:
            self.reached = True
            self.model.stop_training = True


class KerasMember(Member):
    """A Keras classifier on standardized frame sequences (n, t, d), trained against a deadline.

    The first round fixes per-feature standardization from its data, builds
    the model (``_build``) and compiles it with Adam; every round then trains
    epochs of shuffled mini-batches, each epoch freshly SpecAugment-masked and
    mixed up if enabled, until the allowance is spent. The deadline is checked
    after every batch, so a round overruns by at most one batch, plus graph
    tracing in the first round; at least one batch is trained per round.
    ``n_epochs_`` counts epochs, fractional.

    Whole clips, not just their first seconds: with ``span_s`` longer than
    ``max_s``, the front end covers ``span_s`` seconds of each clip, every
    epoch trains on a fresh random ``max_s`` window of each, and predictions
    average ``test_crops`` windows spread over the span.
    Subclasses define hyperparameters ``dropout``, ``lr``, ``batch_size``,
    ``spec_augment``, ``mixup_alpha``, ``max_s``, ``span_s``, ``test_crops``,
    ``seed`` (checked by merging
    ``KERAS_CONSTRAINTS`` into their ``_parameter_constraints``), plus
    ``feature_spec`` and ``_build``.
    """

    def feature_span_s(self) -> float:
        """Seconds of each clip the front end covers: the crop, or the longer span crops are drawn from."""
        return max(self.max_s, self.span_s or self.max_s)

    def _crop_frames(self, n_frames: int) -> int:
        """Frames of one ``max_s`` window in features that cover ``feature_span_s`` in ``n_frames``."""
        return max(1, min(n_frames, round(n_frames * self.max_s / self.feature_span_s())))

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
            # Standardization statistics from at most STATS_ROWS clips: as good, without a copy of all of X.
            rows = np.asarray(X[:: max(1, len(X) // STATS_ROWS)], dtype=np.float32)
            rows = np.nan_to_num(rows)
            self.mean_ = rows.mean(axis=(0, 1))
            self.std_ = np.maximum(rows.std(axis=(0, 1)), STD_FLOOR)
            self.n_classes_ = y_onehot.shape[1]
            self.n_features_in_ = X.shape[-1]
            keras.utils.set_random_seed(self.seed)  # seeds Python's, NumPy's and TensorFlow's global generators
            self.model_ = self._build((None, X.shape[-1]), self.n_classes_)
            self.model_.compile(optimizer=keras.optimizers.Adam(self.lr), loss="categorical_crossentropy")
            self.n_rounds_ = 0
            self.n_epochs_ = 0.0
        rng = np.random.default_rng([self.seed, self.n_rounds_])
        X, y = self._inputs(X), np.asarray(y_onehot, dtype=np.float32)
        crop_frames = self._crop_frames(X.shape[1])
        steps_per_epoch = math.ceil(len(X) / self.batch_size)
        # Small data: several freshly augmented epochs per fit call, to amortize its setup.
        epochs_per_fit = math.ceil(MIN_BATCHES_PER_FIT / steps_per_epoch)
        deadline = DeadlineCallback(start + time_allowance_s)
        batch_s = []
        while not deadline.reached:
            parts = [self._augmented(X, y, rng, crop_frames) for _ in range(epochs_per_fit)]
            X_fit, y_fit = (np.concatenate(p) for p in zip(*parts)) if epochs_per_fit > 1 else parts[0]
            dataset = batched(X_fit, y_fit, self.batch_size, rng)  # already shuffled
            self.model_.fit(dataset, epochs=1, shuffle=False, callbacks=[deadline], verbose=0)
            batch_s += deadline.batch_s
            self.n_epochs_ += min(len(deadline.batch_s) * self.batch_size, len(X_fit)) / len(X)
        # A fit stopped mid-epoch leaves its dataset iterator, and with it a copy of the
        # training data, in a reference cycle: collect it now, not rounds later.
        del dataset
        gc.collect()
        self.n_rounds_ += 1
        # One epoch at the typical batch speed, leaving out the round's first batch (it may carry
        # graph tracing); with no other batch, earlier measurements or the prior stand.
        if len(batch_s) > 1:
            self._log_cost("fit", len(X), float(np.median(batch_s[1:])) * steps_per_epoch)
        return self

    def _augmented(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, crop_frames: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One epoch of training data: random windows, SpecAugment-masked and mixed up as configured."""
        if crop_frames < X.shape[1]:
            X = random_crops(X, crop_frames, rng)
        if self.spec_augment:
            X = spec_augment(X, rng)
        if self.mixup_alpha > 0:
            X, y = mixup(X, y, rng, self.mixup_alpha)
        return X, y

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities [shape=(n, class_num)] from the softmax output."""
        check_fitted(self)
        if len(X) == 0:
            return np.zeros((0, self.n_classes_))
        start = time.monotonic()
        X = self._inputs(X)
        crops = spread_crops(X, self._crop_frames(X.shape[1]), self.test_crops)
        proba = sum(
            np.concatenate(
                [self.model_.predict_on_batch(crop[lo:lo + PREDICT_BATCH]) for lo in range(0, len(crop), PREDICT_BATCH)]
            )
            for crop in crops
        ) / len(crops)
        self._log_cost("predict", len(X), time.monotonic() - start)
        return normalize_proba(proba)
