"""Bidirectional LSTM with attention pooling on MFCC sequences."""

from __future__ import annotations

import keras
from keras import layers, ops

from portfolio.checks import is_int
from portfolio.neural import KERAS_CONSTRAINTS, KerasMember


class AttentionPooling(layers.Layer):
    """Weighted mean over time: a Dense layer scores each frame, softmax over time gives the weights."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.score = layers.Dense(1)

    def build(self, input_shape):
        self.score.build(input_shape)

    def call(self, h):
        weights = ops.softmax(self.score(h), axis=1)
        return ops.sum(weights * h, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def build_lstm_attention(
    input_shape: tuple, n_classes: int, units: int = 64, time_stride: int = 4, dropout: float = 0.3
) -> keras.Model:
    """Uncompiled model from (t, n_mfcc) sequences to class probabilities.

    Mean-pools ``time_stride`` frames into one step (for speed), then a
    bidirectional LSTM, :class:`AttentionPooling`, dropout and a softmax layer.
    """
    inputs = keras.Input(shape=input_shape, name="mfcc")
    x = inputs
    if time_stride > 1:
        x = layers.AveragePooling1D(time_stride, padding="same")(x)
    x = layers.Bidirectional(layers.LSTM(units, return_sequences=True))(x)
    x = AttentionPooling()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="proba")(x)
    return keras.Model(inputs, outputs, name="lstm_attention")


class LstmAttentionMember(KerasMember):
    """Bidirectional LSTM + attention pooling on per-coefficient standardized MFCC frames."""

    _parameter_constraints = {
        "units": (lambda v: is_int(v, 1), "an int > 0"),
        "time_stride": (lambda v: is_int(v, 1), "an int > 0"),
    } | KERAS_CONSTRAINTS
    cost_prior_s = {"fit": (6.0, 2e-2), "predict": (1.0, 4e-3)}

    def __init__(
        self,
        units=64,
        time_stride=4,
        dropout=0.3,
        lr=1e-3,
        batch_size=32,
        spec_augment=False,
        mixup_alpha=0.0,
        max_s=3.0,
        span_s=None,
        test_crops=1,
        n_mels=64,
        n_mfcc=20,
        seed=0,
    ):
        self.units = units
        self.time_stride = time_stride
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.spec_augment = spec_augment
        self.mixup_alpha = mixup_alpha
        self.max_s = max_s
        self.span_s = span_s
        self.test_crops = test_crops
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.seed = seed

    def feature_spec(self) -> dict:
        """MFCC frame sequences (n, t, n_mfcc)."""
        return {"name": "mfcc_frames", "params": {"max_s": self.feature_span_s(), "n_mels": self.n_mels, "n_mfcc": self.n_mfcc}}

    def _build(self, input_shape: tuple, n_classes: int) -> keras.Model:
        return build_lstm_attention(
            input_shape, n_classes, units=self.units, time_stride=self.time_stride, dropout=self.dropout
        )
