"""2-D CNN on log-mel patches."""

from __future__ import annotations

import keras
from keras import layers

from portfolio.checks import is_int
from portfolio.neural import KERAS_CONSTRAINTS, KerasMember


def conv_block(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    """3x3 convolution, batch norm, ReLU, then 2x2 max pooling ("same", so any size >= 1 works).

    Batch-norm momentum 0.9 (not 0.99) lets its inference statistics settle
    within tens of batches, so the first short rounds already predict well.
    """
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.Activation("relu")(x)
    return layers.MaxPooling2D(2, padding="same")(x)


def build_cnn(
    input_shape: tuple,
    n_classes: int,
    filters: tuple = (16, 32, 64, 128),
    dropout: float = 0.3,
    input_pool: tuple = (2, 1),
) -> keras.Model:
    """Uncompiled CNN from (t, n_mels) log-mel patches to class probabilities.

    Average pooling by ``input_pool`` (frames, bands) first, for speed; then
    one :func:`conv_block` per entry of ``filters``, global average pooling
    (so any number of frames ``t`` works), dropout and a softmax layer.
    """
    inputs = keras.Input(shape=input_shape, name="log_mel")
    x = layers.Reshape((-1, input_shape[-1], 1))(inputs)
    if tuple(input_pool) != (1, 1):
        x = layers.AveragePooling2D(tuple(input_pool), padding="same")(x)
    for n_filters in filters:
        x = conv_block(x, n_filters)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="proba")(x)
    return keras.Model(inputs, outputs, name="cnn")


class CnnMember(KerasMember):
    """2-D CNN on per-band standardized log-mel frames, optionally with SpecAugment and mixup.

    Both augmentations default to off: on RAVDESS emotion (1152 training clips,
    2 busy cores) either one lowered validation 2AUC-1 over the first 60 s.
    """

    _parameter_constraints = {
        "filters": (
            lambda v: len(v) > 0 and all(is_int(f, 1) for f in v), "a non-empty list of ints > 0"
        ),
        "input_pool": (lambda v: len(v) == 2 and all(is_int(p, 1) for p in v), "two ints > 0"),
    } | KERAS_CONSTRAINTS
    cost_prior_s = {"fit": (6.0, 2e-2), "predict": (1.0, 4e-3)}

    def __init__(
        self,
        filters=(16, 32, 64, 128),
        dropout=0.3,
        input_pool=(2, 1),
        lr=1e-3,
        batch_size=32,
        spec_augment=False,
        mixup_alpha=0.0,
        max_s=3.0,
        span_s=None,
        test_crops=1,
        n_mels=64,
        seed=0,
    ):
        self.filters = filters
        self.dropout = dropout
        self.input_pool = input_pool
        self.lr = lr
        self.batch_size = batch_size
        self.spec_augment = spec_augment
        self.mixup_alpha = mixup_alpha
        self.max_s = max_s
        self.span_s = span_s
        self.test_crops = test_crops
        self.n_mels = n_mels
        self.seed = seed

    def feature_spec(self) -> dict:
        """Log-mel frame sequences (n, t, n_mels)."""
        return {"name": "log_mel_frames", "params": {"max_s": self.feature_span_s(), "n_mels": self.n_mels}}

    def _build(self, input_shape: tuple, n_classes: int) -> keras.Model:
        return build_cnn(
            input_shape, n_classes, filters=tuple(self.filters), dropout=self.dropout, input_pool=tuple(self.input_pool)
        )
