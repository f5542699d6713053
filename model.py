"""AutoSpeech submission entry point (SPEC.md, "The interface").

Baseline until the portfolio runtime lands: logistic regression on per-band mean/std of
the log-mel spectrogram of each clip's first seconds. One round, then done.
"""

from __future__ import annotations

import time

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CROP_S = 5.0
SR = 16000


def pooled_log_mel(wave: np.ndarray, *, sr: int = SR, n_mels: int = 40, crop_s: float = CROP_S) -> np.ndarray:
    """Per-band mean and std of the log-mel spectrogram of the first `crop_s` seconds."""
    wave = np.nan_to_num(np.asarray(wave, dtype=np.float32)[: int(crop_s * sr)])
    if wave.size < 512:
        wave = np.pad(wave, (0, 512 - wave.size))
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=wave, sr=sr, n_mels=n_mels, n_fft=512, hop_length=256))
    return np.concatenate([S.mean(axis=1), S.std(axis=1)])


class Model:
    """Single-round logistic-regression baseline."""

    def __init__(self, metadata: dict):
        self.metadata = metadata
        self.class_num = int(metadata["class_num"])
        self.done_training = False
        self.classifier_ = None

    def train(self, train_dataset, remaining_time_budget=None):
        x_train, y_train = train_dataset
        start = time.monotonic()
        X = np.stack([pooled_log_mel(w) for w in x_train])
        y = np.argmax(y_train, axis=1)
        self.classifier_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
        self.classifier_.fit(X, y)
        self.train_s_ = time.monotonic() - start
        self.done_training = True

    def test(self, test_x, remaining_time_budget=None):
        X = np.stack([pooled_log_mel(w) for w in test_x])
        scores = np.zeros((len(test_x), self.class_num))
        scores[:, self.classifier_.classes_] = self.classifier_.predict_proba(X)
        return scores
