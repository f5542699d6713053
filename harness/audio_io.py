"""Decoding audio files into clips: shared by the suite build, `harness import` and `harness predict`.

`read_audio` is the one place that calls libsndfile (through `soundfile`): wav, flac,
ogg/vorbis, ogg/opus, and mp3 where the installed libsndfile supports it. `load_clip`
turns any such file into what a model expects (SPEC.md): a 1-D float32 array at 16 kHz,
the mean of the channels, resampled with soxr (scipy's polyphase filter if soxr is
missing). `decode_parallel` maps a decoder over many files in worker processes, in order,
with a progress bar on stderr.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
from joblib import Parallel, delayed
from tqdm import tqdm

from harness.errors import DatasetError

try:
    import soxr
except ImportError:  # pragma: no cover - soxr comes with librosa; scipy is the fallback
    soxr = None

SAMPLE_RATE = 16000


class AudioDecodeError(DatasetError):
    """A file could not be turned into a clip; `reason` says why without the path."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # rebuilt from (path, reason) when a worker process sends it back
        return type(self), (self.path, self.reason)


def read_audio(path: str | Path, *, always_2d: bool = False) -> tuple[np.ndarray, int]:
    """Decode a file as float32 in [-1, 1): (wave, sr); wave is (n,) or (n, channels) as soundfile gives it."""
    try:
        return soundfile.read(path, dtype="float32", always_2d=always_2d)
    except Exception as error:  # libsndfile raises several types on corrupt input
        raise AudioDecodeError(path, f"cannot decode ({type(error).__name__}: {error})") from None


def to_mono(wave: np.ndarray) -> np.ndarray:
    """The mean of the channels of a (n, channels) array, as a 1-D float32 array; 1-D input is returned as is."""
    if wave.ndim == 1:
        return wave
    return wave.mean(axis=1, dtype=np.float32) if wave.shape[1] > 1 else wave[:, 0]


def resample(wave: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """A 1-D clip at `sr` Hz resampled to `target_sr` Hz (soxr, high quality), float32."""
    if sr <= 0:
        raise DatasetError(f"sample rate must be > 0 Hz, got {sr!r}")
    if sr == target_sr:
        return wave
    if soxr is not None:
        return soxr.resample(wave, sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    divisor = math.gcd(int(sr), int(target_sr))
    return resample_poly(wave, target_sr // divisor, int(sr) // divisor).astype(np.float32)


def load_clip(path: str | Path, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Any readable audio file as a 1-D float32 clip at `sr` Hz, mono (mean of channels).

    Raises `AudioDecodeError` (a `DatasetError`) naming the file: missing, empty file,
    not decodable, no samples, non-finite samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    wave, file_sr = read_audio(path, always_2d=True)
    if wave.shape[0] == 0:
        raise AudioDecodeError(path, f"no audio samples (0 frames at {file_sr} Hz)")
    wave = resample(to_mono(wave), file_sr, sr)
    if wave.size == 0:
        raise AudioDecodeError(path, f"too short: {len(wave)} samples at {sr} Hz after resampling")
    if not np.all(np.isfinite(wave)):
        raise AudioDecodeError(path, "has non-finite samples (NaN or inf)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def try_load_clip(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """`load_clip` that returns (clip, None), or (None, reason) for a file it cannot use."""
    try:
        return load_clip(path), None
    except AudioDecodeError as error:
        return None, error.reason


def _map_chunk(decode: Callable, paths: list[str]) -> list:
    return [decode(path) for path in paths]


def decode_parallel(
    paths: list[str | Path], decode: Callable, *, n_jobs: int = 2, desc: str = "decoding", progress: bool = True
):
    """Yield `decode(path)` for every path, in order, from `n_jobs` processes over chunks of files.

    `decode` must be a module-level function (it is sent to the workers); an exception it
    raises reaches the caller. A progress bar goes to stderr unless `progress` is False.
    """
    paths = [str(path) for path in paths]
    if not paths:
        return
    chunk_size = max(1, min(64, math.ceil(len(paths) / (max(1, n_jobs) * 8))))
    chunks = [paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)]
    with tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress, mininterval=1.0, file=sys.stderr) as bar:
        results = Parallel(n_jobs=n_jobs, prefer="processes", return_as="generator")(
            delayed(_map_chunk)(decode, chunk) for chunk in chunks
        )
        for chunk_results in results:
            bar.update(len(chunk_results))
            yield from chunk_results
