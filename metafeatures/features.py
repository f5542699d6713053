"""The meta-features: small named functions of one dataset's training data, computed in one call.

Each meta-feature is a module-level function of a `TrainingData` view, whose first
docstring line documents it; `METAFEATURES` (name -> function) is built once and never
changes. The view computes the intermediates several features share (class counts,
clip durations, frame statistics of a random subsample) once per call, so a failure in
one of them turns its dependants into NaN with a reason instead of losing the vector.
Only `x_train`, `y_train` and the platform's metadata are read: the same inputs exist
offline and inside `Model.train`, where this runs on charged time.
"""

from __future__ import annotations

import logging
import time
from types import MappingProxyType
from typing import Callable

import numpy as np

from metafeatures.acoustics import VOICED_PEAK, Frames, analyze, middle_crop
from portfolio.features import log_mel, mfcc

LOG = logging.getLogger("autospeech.metafeatures")
VERSION = 2  # bump when a definition changes: databases built with another version must be rebuilt
N_ACOUSTIC_CLIPS = 64
ACOUSTIC_CROP_S = 1.0
# The landmark's class-stratified subsample: up to this many clips per class, this many in all,
# each the middle LANDMARK_CROP_S (tiled if shorter). A few hundred crops cost about 0.1 s.
LANDMARK_CLIPS_PER_CLASS = 8
LANDMARK_MAX_CLIPS = 256
LANDMARK_CROP_S = 4.0
LANDMARK_N_MFCC = 13
DEFAULT_SR = 16000


class TrainingData:
    """One dataset's training clips and labels, with shared intermediates computed at most once."""

    def __init__(self, x_train: list, y_train: np.ndarray, metadata: dict, *, seed: int = 0):
        self.x_train = x_train
        self.y_train = y_train
        self.sr = int(metadata.get("sample_rate") or DEFAULT_SR)
        self.seed = seed
        self._memo: dict = {}

    def _shared(self, name: str, compute: Callable):
        """`compute()` once; a raised error is kept and raised again for every dependant."""
        if name not in self._memo:
            try:
                self._memo[name] = (True, compute())
            except Exception as error:  # noqa: BLE001 - reported per dependant feature, never lost
                self._memo[name] = (False, error)
        ok, value = self._memo[name]
        if not ok:
            raise value
        return value

    def class_counts(self) -> np.ndarray:
        """Training clips per class [shape=(class_num,)]."""

        def compute():
            y = np.asarray(self.y_train)
            if y.ndim != 2 or y.shape[1] < 1 or y.shape[0] == 0:
                raise ValueError(f"y_train must be one-hot of shape (n, class_num), got shape {y.shape}")
            return y.sum(axis=0).astype(np.float64)

        return self._shared("class_counts", compute)

    def durations_s(self) -> np.ndarray:
        """Clip lengths in seconds [shape=(n,)]."""

        def compute():
            if len(self.x_train) == 0:
                raise ValueError("x_train must hold at least one clip, got none")
            return np.array([np.size(wave) for wave in self.x_train], dtype=np.float64) / self.sr

        return self._shared("durations_s", compute)

    def frames(self) -> Frames:
        """Frame statistics of the middle second of up to N_ACOUSTIC_CLIPS random clips."""

        def compute():
            n = len(self.x_train)
            rng = np.random.default_rng(self.seed)
            picked = np.sort(rng.choice(n, size=min(N_ACOUSTIC_CLIPS, n), replace=False))
            crop = int(ACOUSTIC_CROP_S * self.sr)
            return analyze([middle_crop(self.x_train[i], crop) for i in picked], sr=self.sr)

        return self._shared("frames", compute)

    def sounding(self) -> Frames:
        """The non-silent frames only (what spectral shape and pitch are measured on)."""

        def compute():
            frames = self.frames()
            keep = ~frames.silent
            if not keep.any():
                raise ValueError("every frame of the acoustic subsample is silent")
            return Frames(*(getattr(frames, f)[keep] for f in Frames.__dataclass_fields__))

        return self._shared("sounding", compute)

    def landmark_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Clip indices and class labels of a class-stratified subsample: classes with >= 2 clips,
        at most LANDMARK_CLIPS_PER_CLASS each and LANDMARK_MAX_CLIPS in all (then a random set of classes)."""

        def compute():
            counts = self.class_counts()
            labels = np.argmax(np.asarray(self.y_train), axis=1)
            rng = np.random.default_rng(self.seed)
            classes = np.flatnonzero(counts >= 2)
            if classes.size < 2:
                raise ValueError(f"needs 2 classes with >= 2 clips each, got {classes.size}")
            per_class = max(2, min(LANDMARK_CLIPS_PER_CLASS, LANDMARK_MAX_CLIPS // classes.size))
            if classes.size * per_class > LANDMARK_MAX_CLIPS:
                classes = np.sort(rng.choice(classes, size=LANDMARK_MAX_CLIPS // per_class, replace=False))
            picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
            index = np.concatenate(picked)
            return index, labels[index]

        return self._shared("landmark_sample", compute)


# ----------------------------------------------------------------------------- labels


def n_classes(data: TrainingData) -> float:
    """Number of classes (columns of y_train)."""
    return float(data.class_counts().shape[0])


def n_train(data: TrainingData) -> float:
    """Number of training clips."""
    return float(len(data.x_train))


def log10_n_train(data: TrainingData) -> float:
    """log10 of the number of training clips."""
    return float(np.log10(max(len(data.x_train), 1)))


def clips_per_class_min(data: TrainingData) -> float:
    """Training clips of the rarest class."""
    return float(data.class_counts().min())


def clips_per_class_mean(data: TrainingData) -> float:
    """Mean training clips per class."""
    return float(data.class_counts().mean())


def clips_per_class_max(data: TrainingData) -> float:
    """Training clips of the most frequent class."""
    return float(data.class_counts().max())


def class_imbalance(data: TrainingData) -> float:
    """Largest over smallest class count (an empty class counts as 1)."""
    counts = data.class_counts()
    return float(counts.max() / max(counts.min(), 1.0))


# ----------------------------------------------------------------------------- durations


def duration_mean_s(data: TrainingData) -> float:
    """Mean clip duration, seconds."""
    return float(data.durations_s().mean())


def duration_std_s(data: TrainingData) -> float:
    """Standard deviation of clip durations, seconds."""
    return float(data.durations_s().std())


def duration_min_s(data: TrainingData) -> float:
    """Shortest clip, seconds."""
    return float(data.durations_s().min())


def duration_p5_s(data: TrainingData) -> float:
    """5th percentile of clip durations (linear interpolation), seconds."""
    return float(np.percentile(data.durations_s(), 5))


def duration_p50_s(data: TrainingData) -> float:
    """Median clip duration, seconds."""
    return float(np.percentile(data.durations_s(), 50))


def duration_p95_s(data: TrainingData) -> float:
    """95th percentile of clip durations (linear interpolation), seconds."""
    return float(np.percentile(data.durations_s(), 95))


def duration_max_s(data: TrainingData) -> float:
    """Longest clip, seconds."""
    return float(data.durations_s().max())


def total_hours(data: TrainingData) -> float:
    """Total training audio, hours."""
    return float(data.durations_s().sum() / 3600.0)


# ----------------------------------------------------------------------------- acoustics


def spectral_centroid_hz(data: TrainingData) -> float:
    """Mean spectral centroid of non-silent frames, Hz (noise and fricatives high, voiced speech low)."""
    return float(np.mean(data.sounding().centroid_hz))


def spectral_rolloff_hz(data: TrainingData) -> float:
    """Mean frequency below which 85 % of the magnitude lies, non-silent frames, Hz."""
    return float(np.mean(data.sounding().rolloff_hz))


def spectral_flatness(data: TrainingData) -> float:
    """Mean spectral flatness of non-silent frames, 0 (tonal) to 1 (white noise)."""
    return float(np.mean(data.sounding().flatness))


def zero_crossing_rate(data: TrainingData) -> float:
    """Mean fraction of samples where the sign changes, non-silent frames."""
    return float(np.mean(data.sounding().zcr))


def level_db_std(data: TrainingData) -> float:
    """Within-clip std of frame level (dB), averaged over clips: speech pulses with syllables, music holds."""
    frames = data.frames()
    counts = np.bincount(frames.clip)
    multi = np.flatnonzero(counts >= 2)
    if multi.size == 0:
        raise ValueError("no subsampled clip spans two frames")
    sums = np.bincount(frames.clip, frames.level_db)
    squares = np.bincount(frames.clip, frames.level_db**2)
    variance = squares[multi] / counts[multi] - (sums[multi] / counts[multi]) ** 2
    return float(np.mean(np.sqrt(np.maximum(variance, 0.0))))


def silent_fraction(data: TrainingData) -> float:
    """Fraction of frames 40 dB below their clip's loudest frame or below -60 dBFS."""
    return float(np.mean(data.frames().silent))


def voiced_fraction(data: TrainingData) -> float:
    """Fraction of non-silent frames with an autocorrelation peak > 0.5 at a 60-400 Hz pitch lag."""
    frames = data.frames()
    sounding = ~frames.silent
    if not sounding.any():
        return 0.0
    return float(np.mean(frames.pitch_peak[sounding] > VOICED_PEAK))


# ----------------------------------------------------------------------------- landmark


def centroid_separability(data: TrainingData) -> float:
    """Leave-one-out nearest-centroid accuracy on per-clip MFCC mean and std, 0 = chance, 1 = perfect.

    A landmark: how far the cheapest statistics already separate the labels. Speaker sets
    score near 1, language and accent sets near 0, so it tells label kinds apart that share
    clip lengths and spectra. Needs 2 classes with >= 2 clips; a class-stratified subsample.
    """
    index, labels = data.landmark_sample()
    clips = [data.x_train[i] for i in index]
    S = log_mel(clips, sr=data.sr, n_mels=40, max_s=LANDMARK_CROP_S, offset="center", n_jobs=1)
    coefficients = mfcc(S, n_mfcc=LANDMARK_N_MFCC)
    x = np.concatenate([coefficients.mean(axis=-1), coefficients.std(axis=-1)], axis=1).astype(np.float64)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-8)
    classes, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y).astype(np.float64)
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, y, x)
    centroids = sums / counts[:, None]
    distances = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)
    # Each clip's own class centroid without the clip itself (leave-one-out).
    own = (sums[y] - x) / (counts[y] - 1)[:, None]
    distances[np.arange(len(y)), y] = ((x - own) ** 2).sum(axis=-1)
    accuracy = float(np.mean(np.argmin(distances, axis=1) == y))
    chance = 1.0 / classes.size
    return (accuracy - chance) / (1.0 - chance)


METAFEATURES: MappingProxyType = MappingProxyType(
    {
        fn.__name__: fn
        for fn in (
            n_classes, n_train, log10_n_train,
            clips_per_class_min, clips_per_class_mean, clips_per_class_max, class_imbalance,
            duration_mean_s, duration_std_s, duration_min_s, duration_p5_s, duration_p50_s,
            duration_p95_s, duration_max_s, total_hours,
            spectral_centroid_hz, spectral_rolloff_hz, spectral_flatness, zero_crossing_rate,
            level_db_std, silent_fraction, voiced_fraction,
            centroid_separability,
        )
    }
)


def describe(name: str) -> str:
    """The one-line documentation of a meta-feature."""
    return METAFEATURES[name].__doc__.strip().splitlines()[0]


def compute_metafeatures_detailed(
    x_train: list, y_train: np.ndarray, metadata: dict, *, seed: int = 0
) -> tuple[dict[str, float], dict[str, str]]:
    """Every meta-feature as a float (NaN where it failed) and, for each NaN, the reason."""
    data = TrainingData(x_train, y_train, metadata, seed=seed)
    values, reasons = {}, {}
    for name, fn in METAFEATURES.items():
        try:
            value = float(fn(data))
            if not np.isfinite(value):
                raise ValueError(f"value is not finite ({value!r})")
        except Exception as error:  # noqa: BLE001 - a failing feature must not lose the vector
            value = float("nan")
            reasons[name] = f"{type(error).__name__}: {error}"
            LOG.warning("meta-feature %s is NaN: %s", name, reasons[name])
        values[name] = value
    return values, reasons


def compute_metafeatures(x_train: list, y_train: np.ndarray, metadata: dict, *, seed: int = 0) -> dict[str, float]:
    """Meta-features of a training set (name -> float, NaN where one failed; reasons are logged).

    Parameters
    ----------
    x_train : list of np.ndarray [shape=(n_samples,)], the clips (any length, even empty)
    y_train : np.ndarray [shape=(n, class_num)], one-hot
    metadata : the platform's meta.json dict; only `sample_rate` (default 16000) is read
    seed : which clips the acoustic subsample draws

    Returns
    -------
    dict of str -> float, one entry per name in METAFEATURES, in that order
    """
    start = time.monotonic()
    values, _ = compute_metafeatures_detailed(x_train, y_train, metadata, seed=seed)
    LOG.info("%d meta-features in %.3f s", len(values), time.monotonic() - start)
    return values
