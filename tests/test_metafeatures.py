"""Meta-features: exact label and duration statistics, acoustic statistics that separate kinds of sound."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from metafeatures import METAFEATURES, compute_metafeatures, compute_metafeatures_detailed, describe
from harness.metafeatures import main as metafeatures_main

SR = 16000
DOCS = Path(__file__).resolve().parents[1] / "docs" / "meta_db.md"


def speech_like(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """Glottal pulses at a wandering 90-150 Hz through three formants, in 4 Hz syllables with pauses."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    pulses = (np.diff(np.floor(np.cumsum(f0 / SR)), prepend=0) > 0).astype(float)
    voiced = pulses
    for formant_hz, bandwidth_hz in ((700, 130), (1220, 70), (2600, 160)):
        r, theta = np.exp(-np.pi * bandwidth_hz / SR), 2 * np.pi * formant_hz / SR
        voiced = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], voiced)
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    envelope *= np.sin(2 * np.pi * 0.5 * t) > -0.5
    wave = voiced / np.abs(voiced).max() * envelope + 0.001 * rng.standard_normal(t.size)
    return (0.5 * wave).astype(np.float32)


def tone(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * rng.uniform(150, 800) * t)).astype(np.float32)


def white_noise(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def labels(n: int, n_classes: int = 4) -> np.ndarray:
    return np.eye(n_classes)[np.arange(n) % n_classes]


def features_of(make, n: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return compute_metafeatures([make(rng) for _ in range(n)], labels(n), {"sample_rate": SR})


def test_metafeatures_duration_stats_are_exact():
    lengths = np.array([800, 16000, 4000, 48000, 24000, 8000, 160000, 1600])
    x_train = [np.zeros(n, dtype=np.float32) + 0.1 for n in lengths]
    values = compute_metafeatures(x_train, labels(len(lengths), 2), {"sample_rate": SR})
    seconds = lengths / SR
    assert values["duration_mean_s"] == pytest.approx(seconds.mean(), rel=1e-12)
    assert values["duration_std_s"] == pytest.approx(seconds.std(), rel=1e-12)
    assert values["duration_min_s"] == 0.05 and values["duration_max_s"] == 10.0
    for q in (5, 50, 95):
        assert values[f"duration_p{q}_s"] == pytest.approx(np.percentile(seconds, q), rel=1e-12)
    assert values["total_hours"] == pytest.approx(seconds.sum() / 3600, rel=1e-12)


def test_metafeatures_class_counts_are_exact():
    y = np.eye(3)[[0] * 5 + [1] * 3 + [2] * 2]
    values = compute_metafeatures([np.ones(1600, np.float32)] * 10, y, {})
    assert (values["n_classes"], values["n_train"]) == (3.0, 10.0)
    assert values["log10_n_train"] == 1.0
    assert (values["clips_per_class_min"], values["clips_per_class_max"]) == (2.0, 5.0)
    assert values["clips_per_class_mean"] == pytest.approx(10 / 3)
    assert values["class_imbalance"] == 2.5


def test_metafeatures_acoustics_tell_speech_tone_and_noise_apart():
    speech, pure, noise = features_of(speech_like), features_of(tone), features_of(white_noise)
    # Noise is flat and aperiodic, a tone is the opposite.
    assert noise["spectral_flatness"] > 0.3 > 0.05 > pure["spectral_flatness"]
    assert noise["voiced_fraction"] < 0.1 and pure["voiced_fraction"] > 0.9
    assert noise["zero_crossing_rate"] > 2 * max(speech["zero_crossing_rate"], pure["zero_crossing_rate"])
    assert noise["spectral_centroid_hz"] > 2 * pure["spectral_centroid_hz"]
    # Speech comes in syllables and pauses, mostly voiced.
    assert speech["level_db_std"] > 5 > max(pure["level_db_std"], noise["level_db_std"])
    assert speech["silent_fraction"] > 0.2 and pure["silent_fraction"] == noise["silent_fraction"] == 0
    assert speech["voiced_fraction"] > 0.5


def test_metafeatures_silent_empty_and_nan_clips_keep_the_vector_finite():
    rng = np.random.default_rng(0)
    odd = [np.zeros(8000, np.float32), np.zeros(0, np.float32), np.full(4000, np.nan, np.float32)]
    x_train = odd + [tone(rng) for _ in range(5)]
    values, reasons = compute_metafeatures_detailed(x_train, labels(len(x_train), 2), {})
    assert list(values) == list(METAFEATURES) and not reasons
    assert all(math.isfinite(v) for v in values.values())
    assert values["duration_min_s"] == 0.0


def test_metafeatures_all_silent_data_gives_nan_with_reasons_not_a_lost_vector():
    x_train = [np.zeros(16000, np.float32), np.zeros(3, np.float32)] * 3
    values, reasons = compute_metafeatures_detailed(x_train, labels(6, 2), {})
    assert list(values) == list(METAFEATURES)
    assert values["silent_fraction"] == 1.0 and values["voiced_fraction"] == 0.0
    for name in ("spectral_centroid_hz", "spectral_flatness", "spectral_rolloff_hz", "zero_crossing_rate"):
        assert math.isnan(values[name]) and "silent" in reasons[name]
    assert set(reasons) == {"spectral_centroid_hz", "spectral_flatness", "spectral_rolloff_hz", "zero_crossing_rate"}


def test_metafeatures_bad_labels_fail_only_their_features():
    rng = np.random.default_rng(0)
    values, reasons = compute_metafeatures_detailed([tone(rng) for _ in range(4)], np.array([0, 1, 0, 1]), {})
    assert math.isnan(values["n_classes"]) and "one-hot" in reasons["n_classes"]
    assert values["n_train"] == 4.0 and math.isfinite(values["spectral_flatness"])


def test_metafeatures_3000_clips_take_under_2_s():
    rng = np.random.default_rng(0)
    x_train = [rng.standard_normal(int(rng.uniform(0.3, 3.0) * SR)).astype(np.float32) for _ in range(3000)]
    y_train = labels(3000, 20)
    start = time.monotonic()
    compute_metafeatures(x_train, y_train, {"sample_rate": SR})
    assert time.monotonic() - start < 2.0


def test_metafeatures_are_documented_here_and_in_docs():
    table = DOCS.read_text()
    for name in METAFEATURES:
        assert describe(name) and f"`{name}`" in table


def test_metafeatures_cli_prints_every_feature(tone_dataset, capsys):
    assert metafeatures_main([str(tone_dataset)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in METAFEATURES) and "23 meta-features" in out


def test_centroid_separability_is_high_when_classes_differ_in_timbre_and_near_chance_when_they_do_not():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    pitches = (200, 450, 900, 1800)
    # Each class its own harmonic timbre (a fundamental per class), a little noise per clip.
    distinct = [np.sin(2 * np.pi * pitches[i % 4] * t * (1 + 0.01 * rng.standard_normal()))
                + 0.05 * rng.standard_normal(t.size) for i in range(32)]
    separable = compute_metafeatures([w.astype(np.float32) for w in distinct], labels(32), {"sample_rate": SR})
    assert separable["centroid_separability"] > 0.9
    # The same sound for every class: labels carry nothing a centroid could find.
    alike = compute_metafeatures([white_noise(rng) for _ in range(64)], labels(64), {"sample_rate": SR})
    assert abs(alike["centroid_separability"]) < 0.35


def test_centroid_separability_is_nan_with_a_reason_for_one_clip_per_class():
    rng = np.random.default_rng(1)
    values, reasons = compute_metafeatures_detailed([tone(rng) for _ in range(4)], labels(4), {"sample_rate": SR})
    assert math.isnan(values["centroid_separability"]) and "2 classes with >= 2 clips" in reasons["centroid_separability"]
    assert math.isfinite(values["duration_mean_s"])
