"""Audio front ends: batched log-mel, MFCC, pooled statistics and a small cache.

Every front end is a pure module-level function with keyword defaults; ``sr``,
``n_fft``, ``hop_length`` and ``n_mels`` mean what they mean in librosa. Features
derived from a log-mel accept either ``waves`` or the precomputed log-mel ``S=``,
so :class:`FeatureCache` computes one log-mel per front-end setting and derives
the stats, frames and MFCC frames from it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
from collections.abc import Sequence

import librosa.filters
import numpy as np
import scipy.fft
from joblib import Parallel, delayed
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import threadpool_limits

from portfolio.checks import is_int, is_number

MODES = ("tile", "pad")
OFFSETS = ("start", "center", "random", "spread")
CHUNK_CLIPS = 32
# A chunk holds at most this many samples (32 clips of 3 s): with the STFT's frames, spectrum
# and power, a thread's chunk then takes about 60 MB, whatever the crop length.
CHUNK_SAMPLES = 32 * 3 * 16000
LOG_FLOOR = 1e-6
LOG_MEL_PARAMS = ("sr", "n_mels", "n_fft", "hop_length", "max_s", "offset", "n_windows", "mode", "normalize", "rng")


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Threads over chunks of clips: 2 threads run 1.6-1.9x faster than 1 on 2 cores
# (docs/features_speed.md); more threads than cores run slower.
N_JOBS = usable_cores()


class FrontendError(ValueError):
    """A front-end parameter is out of its allowed range."""


def _check(ok: bool, param: str, rule: str, value) -> None:
    if not ok:
        raise FrontendError(f"{param} must be {rule}, got {value!r}")


def _check_positive_int(value, param: str, minimum: int = 1) -> None:
    _check(is_int(value, minimum), param, f"an int > {minimum - 1}", value)


def _check_crop(mode: str, offset: str, n_windows: int = 1) -> None:
    _check(mode in MODES, "mode", f"one of {MODES}", mode)
    _check(offset in OFFSETS, "offset", f"one of {OFFSETS}", offset)
    _check_positive_int(n_windows, "n_windows")
    _check(n_windows == 1 or offset == "spread", "n_windows", 'used with offset="spread" only', n_windows)


def spread_crop(wave: np.ndarray, n_samples: int, n_windows: int) -> np.ndarray:
    """``n_windows`` windows of a long clip, spread evenly from its start to its end, end to end.

    The windows share ``n_samples`` (the last takes the remainder), so a long clip is
    summarized over its whole length at the cost of a ``n_samples`` crop: music and
    long recordings change over minutes, and their first seconds are often an intro.
    """
    n_windows = max(1, min(n_windows, n_samples))
    width = n_samples // n_windows
    lengths = [width] * (n_windows - 1) + [n_samples - width * (n_windows - 1)]
    starts = np.round(np.linspace(0, wave.shape[0] - width, n_windows)).astype(int)
    starts[-1] = wave.shape[0] - lengths[-1]
    return np.concatenate([wave[start:start + length] for start, length in zip(starts, lengths)])


def fix_length(
    wave: np.ndarray,
    n_samples: int,
    *,
    mode: str = "tile",
    offset: str = "start",
    n_windows: int = 1,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Tile (or zero-pad) a short clip, crop a long one, to exactly ``n_samples``.

    Parameters
    ----------
    wave : np.ndarray [shape=(m,)]
        One clip; non-finite samples become 0, an empty clip gives zeros.
    n_samples : int > 0
    mode : "tile" repeats a short clip end to end, "pad" appends zeros.
    offset : where a long clip is cropped: "start", "center", "random", or "spread":
        ``n_windows`` windows spread from start to end (:func:`spread_crop`).
    n_windows : windows of ``offset="spread"`` (1 otherwise).
    rng : generator or seed for ``offset="random"``.

    Returns
    -------
    np.ndarray [shape=(n_samples,), dtype=float32]
    """
    _check_positive_int(n_samples, "n_samples")
    _check_crop(mode, offset, n_windows)
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    m = wave.shape[0]
    if m > n_samples and offset == "spread":
        out = spread_crop(wave, n_samples, n_windows)
    elif m > n_samples:
        if offset == "start":
            start = 0
        elif offset == "center":
            start = (m - n_samples) // 2
        else:
            start = int(np.random.default_rng(rng).integers(0, m - n_samples + 1))
        out = wave[start:start + n_samples].copy()
    elif m == 0:
        return np.zeros(n_samples, dtype=np.float32)
    elif mode == "tile":
        out = np.resize(wave, n_samples)
    else:
        out = np.zeros(n_samples, dtype=np.float32)
        out[:m] = wave
    if not np.isfinite(out).all():
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def chunk_clips(n_samples: int) -> int:
    """Clips per chunk for crops of ``n_samples``: ``CHUNK_CLIPS``, fewer for long crops."""
    return max(1, min(CHUNK_CLIPS, CHUNK_SAMPLES // max(n_samples, 1)))


def _for_chunks(run_chunk, n: int, n_jobs: int, chunk: int = CHUNK_CLIPS) -> None:
    """Call ``run_chunk(lo)`` for each chunk start ``lo`` in ``range(0, n, chunk)`` on ``n_jobs`` threads."""
    starts = range(0, n, chunk)
    if n_jobs == 1 or len(starts) < 2:
        for lo in starts:
            run_chunk(lo)
        return
    # One BLAS thread per worker: BLAS threads on top of workers oversubscribe the cores.
    with threadpool_limits(limits=1, user_api="blas"):
        Parallel(n_jobs=n_jobs, prefer="threads")(delayed(run_chunk)(lo) for lo in starts)


def _map_chunks(fn, S, n_jobs: int, chunk: int = CHUNK_CLIPS) -> np.ndarray:
    """Stack ``fn(S[lo:lo + chunk])`` over chunks of rows (of an array or a list), on ``n_jobs`` threads."""
    parts = {}

    def run_chunk(lo: int) -> None:
        parts[lo] = fn(S[lo:lo + chunk])

    _for_chunks(run_chunk, len(S), n_jobs, chunk)
    if not parts:
        return fn(S)
    return np.concatenate([parts[lo] for lo in sorted(parts)])


@functools.lru_cache(maxsize=16)
def _mel_basis_t(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Transposed, C-contiguous mel filter bank [shape=(1 + n_fft // 2, n_mels)]."""
    mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)
    return np.ascontiguousarray(mel.T)


@functools.lru_cache(maxsize=16)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as librosa's default STFT window."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _log_mel_chunk(
    batch: np.ndarray, out: np.ndarray, *, sr: int, n_fft: int, hop_length: int, n_mels: int
) -> None:
    """Write the log-mel frames of ``batch`` (c, n_samples) into ``out`` (c, t, n_mels)."""
    frames = sliding_window_view(batch, n_fft, axis=-1)[:, ::hop_length] * _hann(n_fft)
    power = np.abs(scipy.fft.rfft(frames, axis=-1))
    power *= power
    np.matmul(power, _mel_basis_t(sr, n_fft, n_mels), out=out)
    out += LOG_FLOOR
    np.log(out, out=out)


def log_mel(
    waves: Sequence[np.ndarray],
    *,
    sr: int = 16000,
    n_mels: int = 64,
    n_fft: int = 512,
    hop_length: int = 160,
    max_s: float = 3.0,
    offset: str = "start",
    n_windows: int = 1,
    mode: str = "tile",
    normalize: bool = True,
    rng: np.random.Generator | int | None = None,
    n_jobs: int = N_JOBS,
) -> np.ndarray:
    """Natural-log mel power spectrogram of a batch of clips, all fixed to ``max_s``.

    Each clip is tiled or cropped to ``round(max_s * sr)`` samples
    (:func:`fix_length`), peak-normalized to max |x| = 1 unless silent
    (``normalize=True``), framed without centering, Hann-windowed and mapped
    through librosa's Slaney mel filter bank; the result is ``log(S + 1e-6)``.
    ``rng`` (a generator or an int seed) draws the crops of ``offset="random"``;
    ``offset="spread"`` takes ``n_windows`` windows spread over a long clip instead.
    Clips are processed in chunks (:func:`chunk_clips`) on ``n_jobs`` threads,
    with one BLAS thread each.

    Returns
    -------
    np.ndarray [shape=(n, n_mels, t), dtype=float32]
        ``t = 1 + (round(max_s * sr) - n_fft) // hop_length``; a transposed
        view of a C-contiguous (n, t, n_mels) array.
    """
    _check_positive_int(sr, "sr")
    _check_positive_int(n_fft, "n_fft", minimum=2)
    _check_positive_int(hop_length, "hop_length")
    _check_positive_int(n_mels, "n_mels")
    _check(is_number(max_s) and max_s * sr >= n_fft, "max_s", f">= n_fft / sr = {n_fft / sr:g}", max_s)
    _check_crop(mode, offset, n_windows)
    n_samples = int(round(max_s * sr))
    # One seed per clip, drawn up front, keeps random crops independent of thread timing.
    seeds = np.random.default_rng(rng).integers(2**31, size=len(waves)) if offset == "random" else [None] * len(waves)
    n_frames = 1 + (n_samples - n_fft) // hop_length
    out = np.empty((len(waves), n_frames, n_mels), dtype=np.float32)

    chunk_size = chunk_clips(n_samples)

    def run_chunk(lo: int) -> None:
        chunk = waves[lo:lo + chunk_size]
        batch = np.empty((len(chunk), n_samples), dtype=np.float32)
        for i, wave in enumerate(chunk):
            batch[i] = fix_length(wave, n_samples, mode=mode, offset=offset, n_windows=n_windows, rng=seeds[lo + i])
        if normalize:
            peak = np.abs(batch).max(axis=1, keepdims=True)
            batch /= np.where(peak > 0, peak, 1.0)
        _log_mel_chunk(batch, out[lo:lo + len(chunk)], sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)

    _for_chunks(run_chunk, len(waves), n_jobs, chunk_size)
    return out.transpose(0, 2, 1)


def mfcc(S_log_mel: np.ndarray, *, n_mfcc: int = 20) -> np.ndarray:
    """MFCCs from a natural-log mel spectrogram: orthonormal DCT-II over the mel axis.

    Parameters
    ----------
    S_log_mel : np.ndarray [shape=(..., n_mels, t)]
    n_mfcc : int, 0 < n_mfcc <= n_mels

    Returns
    -------
    np.ndarray [shape=(..., n_mfcc, t), dtype=float32]
        librosa's ``mfcc`` up to a constant factor, since librosa uses dB.
    """
    n_mels = S_log_mel.shape[-2]
    ok = is_int(n_mfcc, 1) and n_mfcc <= n_mels
    _check(ok, "n_mfcc", f"an int in [1, n_mels={n_mels}]", n_mfcc)
    coeffs = scipy.fft.dct(S_log_mel, type=2, norm="ortho", axis=-2)
    return coeffs[..., :n_mfcc, :].astype(np.float32, copy=False)


def _quantile_sorted(sorted_S: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` in [0, 1] along the last axis of sorted data, interpolated as ``np.quantile``."""
    pos = q * (sorted_S.shape[-1] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, sorted_S.shape[-1] - 1)
    return sorted_S[..., lo] + (sorted_S[..., hi] - sorted_S[..., lo]) * np.float32(pos - lo)


def pooled_stats(S: np.ndarray) -> np.ndarray:
    """Summarize each band of ``S`` over time.

    For every band the statistics are, in this block order: mean, standard
    deviation, max, 10th and 90th percentile (linear interpolation, as
    ``np.percentile``), and mean absolute frame-to-frame difference (0 for a
    single frame).

    Parameters
    ----------
    S : np.ndarray [shape=(n, d, t)]

    Returns
    -------
    np.ndarray [shape=(n, 6 * d), dtype=float32]
    """
    _check(S.ndim == 3 and S.shape[-1] > 0, "S.shape", "(n, d, t) with t > 0", S.shape)
    S = S.astype(np.float32, copy=False)
    # One sort gives max and percentiles; np.sort is much faster than np.percentile's partition.
    sorted_S = np.sort(S, axis=-1)
    mean = sorted_S.mean(axis=-1)
    centered = sorted_S - mean[..., None]
    np.square(centered, out=centered)
    std = np.sqrt(centered.mean(axis=-1))
    if S.shape[-1] > 1:
        delta = S[..., 1:] - S[..., :-1]
        np.abs(delta, out=delta)
        delta = delta.mean(axis=-1)
    else:
        delta = np.zeros_like(mean)
    stats = [mean, std, sorted_S[..., -1], _quantile_sorted(sorted_S, 0.1), _quantile_sorted(sorted_S, 0.9), delta]
    return np.concatenate(stats, axis=1)


def _from_waves(waves, S, n_jobs: int, log_mel_params: dict) -> np.ndarray:
    """Return ``S`` if given, else the log-mel of ``waves``."""
    if S is None:
        _check(waves is not None, "waves", "given when S is None", waves)
        return log_mel(waves, n_jobs=n_jobs, **log_mel_params)
    _check(not log_mel_params, "log-mel params", "absent when S is given", sorted(log_mel_params))
    return S


def log_mel_stats(waves=None, *, S=None, n_mfcc: int = 20, n_jobs: int = N_JOBS, **log_mel_params) -> np.ndarray:
    """Pooled stats of the log-mel and of its MFCCs, for linear models.

    Returns ``np.ndarray [shape=(n, 6 * (n_mels + n_mfcc)), dtype=float32]``:
    :func:`pooled_stats` of the log-mel, then of the MFCCs.
    """

    def stats(S_chunk: np.ndarray) -> np.ndarray:
        return np.concatenate([pooled_stats(S_chunk), pooled_stats(mfcc(S_chunk, n_mfcc=n_mfcc))], axis=1)

    if S is None and waves is not None and log_mel_params.get("offset") != "random":
        # Chunk by chunk from the audio: the whole log-mel of long crops of many clips can
        # take gigabytes, its statistics kilobytes. (Random crops draw their seeds for the
        # whole batch at once, so they take the path below, to give the same features.)
        crop = _defaults(log_mel, ("max_s", "sr")) | log_mel_params
        chunk = chunk_clips(int(round(crop["max_s"] * crop["sr"])))

        def stats_of_waves(waves_chunk: list) -> np.ndarray:
            return stats(log_mel(waves_chunk, n_jobs=1, **log_mel_params))

        return _map_chunks(stats_of_waves, waves, n_jobs, chunk)
    return _map_chunks(stats, _from_waves(waves, S, n_jobs, log_mel_params), n_jobs)


def log_mel_frames(waves=None, *, S=None, n_jobs: int = N_JOBS, **log_mel_params) -> np.ndarray:
    """Log-mel frame sequences for CNNs, shape (n, t, n_mels), C-contiguous."""
    S = _from_waves(waves, S, n_jobs, log_mel_params)
    return np.ascontiguousarray(S.transpose(0, 2, 1))


def mfcc_frames(waves=None, *, S=None, n_mfcc: int = 20, n_jobs: int = N_JOBS, **log_mel_params) -> np.ndarray:
    """MFCC frame sequences for recurrent models, shape (n, t, n_mfcc)."""
    S = _from_waves(waves, S, n_jobs, log_mel_params)
    return _map_chunks(lambda S_chunk: np.ascontiguousarray(mfcc(S_chunk, n_mfcc=n_mfcc).transpose(0, 2, 1)), S, n_jobs)


FEATURES = {
    "log_mel_stats": log_mel_stats,
    "log_mel_frames": log_mel_frames,
    "mfcc_frames": mfcc_frames,
}


def _defaults(fn, names) -> dict:
    """Keyword defaults of ``fn`` for the parameters in ``names``."""
    return {
        k: p.default for k, p in inspect.signature(fn).parameters.items() if k in names and p.default is not p.empty
    }


def _split_params(name: str, params: dict) -> tuple[dict, dict]:
    """Split ``params`` into (log-mel params, the feature's own params), defaults filled in."""
    _check(name in FEATURES, "name", f"one of {sorted(FEATURES)}", name)
    not_params = ("waves", "S", "n_jobs", "log_mel_params")
    own_names = [k for k in inspect.signature(FEATURES[name]).parameters if k not in not_params]
    unknown = sorted(set(params) - set(own_names) - set(LOG_MEL_PARAMS))
    _check(not unknown, f"params of {name}", f"among {sorted(own_names + list(LOG_MEL_PARAMS))}", unknown)
    log_mel_params = _defaults(log_mel, LOG_MEL_PARAMS) | {k: v for k, v in params.items() if k in LOG_MEL_PARAMS}
    own = _defaults(FEATURES[name], own_names) | {k: v for k, v in params.items() if k in own_names}
    return log_mel_params, own


def compute_features(name: str, params: dict, waves: Sequence[np.ndarray], *, n_jobs: int = N_JOBS) -> np.ndarray:
    """Feature matrix ``FEATURES[name]`` of ``waves`` with front-end ``params``."""
    log_mel_params, own = _split_params(name, params)
    return FEATURES[name](waves, n_jobs=n_jobs, **own, **log_mel_params)


def _canonical(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


class FeatureCache:
    """Features computed once per (name, params, subset tag) in a run.

    The log-mel behind a frame feature is cached too, keyed by its own
    parameters, so frame features of different names over the same log-mel
    share its cost (and pooled ones, when it is there); log-mels held for that
    reuse take at most ``max_log_mel_bytes``, the least recently used going
    first. Pooled features of a log-mel not in the cache are computed chunk by
    chunk from the audio, without it: a 30 s crop of thousands of clips is
    gigabytes of log-mel, pooled to kilobytes. Keys hold params with defaults
    filled in, as canonical JSON, so params must be JSON-able (``rng`` an int
    seed). Cached arrays are read-only, since features may share memory with
    their log-mel. ``seconds`` maps every key to the time spent computing it.
    """

    def __init__(self, max_log_mel_bytes: int = 2**30):
        self.max_log_mel_bytes = max_log_mel_bytes
        self.arrays: dict[tuple, np.ndarray] = {}
        self.seconds: dict[tuple, float] = {}
        self._log_mel_use: list[tuple] = []  # log-mel keys, least recently used first

    def _touch_log_mel(self, key: tuple) -> None:
        if key in self._log_mel_use:
            self._log_mel_use.remove(key)
        self._log_mel_use.append(key)

    def _evict_log_mels(self) -> None:
        """Drop least recently used log-mels until those held take at most ``max_log_mel_bytes``."""
        while self._log_mel_use and sum(self.arrays[k].nbytes for k in self._log_mel_use) > self.max_log_mel_bytes:
            oldest = self._log_mel_use.pop(0)
            del self.arrays[oldest], self.seconds[oldest]

    def _get(self, key: tuple, compute) -> np.ndarray:
        if key not in self.arrays:
            start = time.monotonic()
            array = compute()
            array.flags.writeable = False
            self.arrays[key] = array
            self.seconds[key] = time.monotonic() - start
        return self.arrays[key]

    def get(
        self, name: str, params: dict, waves: Sequence[np.ndarray], subset: str, *, n_jobs: int = N_JOBS
    ) -> np.ndarray:
        """Features ``name`` of ``waves``; ``subset`` tags which clips ``waves`` are (e.g. "test")."""
        log_mel_params, own = _split_params(name, params)
        key = (name, _canonical(log_mel_params | own), subset)
        if key in self.arrays:
            return self.arrays[key]
        log_mel_key = ("log_mel", _canonical(log_mel_params), subset)
        if name == "log_mel_stats" and log_mel_key not in self.arrays:
            # Pooled features need no whole log-mel: pool it chunk by chunk from the audio.
            return self._get(key, lambda: log_mel_stats(waves, n_jobs=n_jobs, **own, **log_mel_params))
        S = self._get(log_mel_key, lambda: log_mel(waves, n_jobs=n_jobs, **log_mel_params))
        self._touch_log_mel(log_mel_key)
        features = self._get(key, lambda: FEATURES[name](S=S, n_jobs=n_jobs, **own))
        self._evict_log_mels()
        return features
