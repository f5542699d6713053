"""Cheap frame statistics of a few clips: enough to tell speech from music from noise, not to classify.

One pass over short crops gives, per frame, the spectral shape (centroid, roll-off,
flatness), the zero-crossing rate, the level in dB and the strength of the best
autocorrelation peak at a pitch lag (60-400 Hz). Everything is vectorized over all
frames of all crops at once, so 64 one-second crops cost a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

FRAME = 1024  # 64 ms at 16 kHz: holds more than one period of a 60 Hz voice
HOP = 1024  # no overlap: these are averages, and half the frames cost half the time
LEVEL_FLOOR_DB = -80.0
SILENCE_REL_DB = 40.0  # a frame this far below its clip's loudest frame is silent
SILENCE_ABS_DB = -60.0  # and so is any frame below this level (dB re full scale 1.0)
PITCH_HZ = (60.0, 400.0)
VOICED_PEAK = 0.5  # normalized autocorrelation peak above which a frame counts as periodic
ROLLOFF = 0.85


class AcousticsError(ValueError):
    """An argument of the frame analysis is out of range."""


@dataclass(frozen=True)
class Frames:
    """Per-frame statistics [shape=(n_frames,)] of a set of crops; `clip` maps frames to crops."""

    clip: np.ndarray
    level_db: np.ndarray
    silent: np.ndarray
    centroid_hz: np.ndarray
    rolloff_hz: np.ndarray
    flatness: np.ndarray
    zcr: np.ndarray
    pitch_peak: np.ndarray


def middle_crop(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """The middle `n_samples` of a clip (the whole clip if shorter, zero-padded to one frame); finite float32."""
    wave = np.asarray(wave).reshape(-1)
    if wave.shape[0] > n_samples:
        start = (wave.shape[0] - n_samples) // 2
        wave = wave[start:start + n_samples]
    wave = np.nan_to_num(wave.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if wave.shape[0] < FRAME:
        wave = np.pad(wave, (0, FRAME - wave.shape[0]))
    return wave


def frame_crops(crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All frames of all crops [shape=(n_frames, FRAME)] and the crop index of each frame."""
    frames = [sliding_window_view(crop, FRAME)[::HOP] for crop in crops]
    clip = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    return np.concatenate(frames).astype(np.float32), clip


def analyze(crops: list[np.ndarray], *, sr: int = 16000) -> Frames:
    """Frame statistics of finite 1-D crops, each at least FRAME samples long."""
    if sr <= 2 * PITCH_HZ[1]:
        raise AcousticsError(f"sr must be > {2 * PITCH_HZ[1]:.0f} Hz, got {sr!r}")
    if not crops:
        raise AcousticsError("crops must hold at least one clip, got none")
    frames, clip = frame_crops(crops)
    frames = frames - frames.mean(axis=1, keepdims=True)  # DC offset is no level, no pitch

    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    level_db = 20.0 * np.log10(np.maximum(rms, 10.0 ** (LEVEL_FLOOR_DB / 20.0)))
    loudest_db = np.full(clip.max() + 1, LEVEL_FLOOR_DB)
    np.maximum.at(loudest_db, clip, level_db)
    silent = (level_db < loudest_db[clip] - SILENCE_REL_DB) | (level_db < SILENCE_ABS_DB)

    window = np.hanning(FRAME + 1)[:-1].astype(np.float32)
    magnitude = np.abs(scipy.fft.rfft(frames * window, axis=1))
    freqs = np.arange(magnitude.shape[1]) * sr / FRAME
    total = magnitude.sum(axis=1)
    safe_total = np.where(total > 0, total, 1.0)
    centroid_hz = np.where(total > 0, magnitude @ freqs / safe_total, 0.0)
    cumulative = np.cumsum(magnitude, axis=1)
    rolloff_bin = np.argmax(cumulative >= ROLLOFF * safe_total[:, None], axis=1)
    rolloff_hz = np.where(total > 0, freqs[rolloff_bin], 0.0)
    power = magnitude.astype(np.float64) ** 2 + 1e-10
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)

    signs = np.signbit(frames)
    zcr = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)

    return Frames(clip, level_db, silent, centroid_hz, rolloff_hz, flatness, zcr, pitch_peaks(frames, sr=sr))


def pitch_peaks(frames: np.ndarray, *, sr: int = 16000) -> np.ndarray:
    """Height of the highest local autocorrelation peak at a lag of 60-400 Hz, per frame, in [-1, 1].

    The autocorrelation is normalized by its lag-0 value and by the overlap (N / (N - lag)),
    so a perfectly periodic frame peaks near 1 at any pitch. A local maximum is required:
    low-frequency noise has a high but smooth, decaying autocorrelation, and no peak.
    """
    n = frames.shape[1]
    spectrum = scipy.fft.rfft(frames, n=2 * n, axis=1)  # zero-padded: no wrap-around
    acf = scipy.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :n]
    energy = acf[:, :1]
    lo, hi = int(sr / PITCH_HZ[1]), int(np.ceil(sr / PITCH_HZ[0]))
    lags = np.arange(lo - 1, hi + 2)
    normalized = np.where(energy > 0, acf[:, lags] / np.where(energy > 0, energy, 1.0), 0.0) * (n / (n - lags))
    inner = normalized[:, 1:-1]
    is_peak = (inner > normalized[:, :-2]) & (inner >= normalized[:, 2:])
    return np.max(np.where(is_peak, inner, -1.0), axis=1)
