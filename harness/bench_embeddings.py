"""Speed of the pretrained embeddings; run ``python -m harness.bench_embeddings``.

Writes a markdown table to the project's ``docs/embedding_speed.md``: for Whisper base
(int8 and float32, 4 s and 8 s windows) and YAMNet, at 1 and 2 threads, the clips per
second, encoded audio seconds per second and milliseconds per window of
:func:`portfolio.pretrained.whisper_embed` / :func:`~portfolio.pretrained.yamnet_embed`
end to end (front end included) on real speech clips, plus Whisper's encoder alone on a
full 30 s input (what padding every window to 30 s would cost). The clips are the first
VoxLingua clips of at least 10 s under ``../shared/corpora/voxlingua``, so every window is
full. On a machine shared with other jobs the wall-clock rates vary from run to run.

"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.bench_features import cpu_line
from harness.dataset import atomic_write_bytes
from portfolio.pretrained import (
    SR,
    availability,
    clear_cache,
    encoded_seconds,
    load_whisper,
    load_yamnet,
    whisper_embed,
    yamnet_embed,
)

ROOT = Path(__file__).resolve().parents[1]
OUT_PATH = ROOT / "docs" / "embedding_speed.md"
CORPUS = ROOT.parent / "shared" / "corpora" / "voxlingua"
N_CLIPS = 32
MIN_CLIP_S = 10.0
REPEATS = 3
THREADS = (1, 2)
CASES = (
    ("whisper", {"window_s": 4.0, "compute_type": "int8"}),
    ("whisper", {"window_s": 8.0, "compute_type": "int8"}),
    ("whisper", {"window_s": 8.0, "compute_type": "int8", "language_probs": True}),
    ("whisper", {"window_s": 4.0, "compute_type": "float32"}),
    ("whisper", {"window_s": 8.0, "compute_type": "float32"}),
    ("yamnet", {"window_s": 4.0}),
    ("yamnet", {"window_s": 8.0}),
)
EMBED = {"whisper": whisper_embed, "yamnet": yamnet_embed}


def load_clips(corpus: Path, n_clips: int, min_s: float) -> list[np.ndarray]:
    """The first ``n_clips`` clips of at least ``min_s`` seconds of a corpus folder, as float32 at 16 kHz."""
    with open(corpus / "manifest.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if float(row["duration_s"]) >= min_s][:n_clips]
    clips = []
    for row in rows:
        wave, sr = sf.read(corpus / row["file"], dtype="float32")
        if sr != SR:
            raise ValueError(f"{row['file']} must be sampled at {SR} Hz, got {sr}")
        clips.append(wave if wave.ndim == 1 else wave.mean(axis=1))
    return clips


def _fastest(fn) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest of ``REPEATS`` calls of ``fn``."""
    runs = []
    for _ in range(REPEATS):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall_start, time.process_time() - cpu_start))
    return min(runs)


def _load_s(name: str, params: dict, n_threads: int) -> float:
    """Seconds to read, hash-check and load the model for this setting, from scratch."""
    clear_cache()
    start = time.perf_counter()
    if name == "whisper":
        load_whisper(n_threads, params["compute_type"])
    else:
        load_yamnet(n_threads)
    return time.perf_counter() - start


def embed_row(name: str, params: dict, n_threads: int, clips: list) -> str:
    """One table row: load time, then the end-to-end rates of the embedding on ``clips``."""
    load_s = _load_s(name, params, n_threads)
    embed = EMBED[name]
    embed(clips[:2], **params, n_threads=n_threads)  # first-call set-up
    wall_s, cpu_s = _fastest(lambda: embed(clips, **params, n_threads=n_threads))
    audio_s = sum(encoded_seconds(wave.size, window_s=params["window_s"]) for wave in clips)
    setting = ", ".join(f"{k}={v}" for k, v in params.items())
    return (
        f"| {name} | {setting} | {n_threads} | {load_s:.2f} | {len(clips) / wall_s:,.1f} | {audio_s / wall_s:,.0f} "
        f"| {1000 * wall_s / len(clips):,.1f} | {1000 * cpu_s / len(clips):,.1f} |"
    )


def padded_row(compute_type: str, n_threads: int) -> str:
    """One table row: Whisper's encoder alone on one 30 s input (3000 mel frames)."""
    import ctranslate2

    model = load_whisper(n_threads, compute_type)
    features = ctranslate2.StorageView.from_array(np.zeros((1, 80, 3000), dtype=np.float32))
    model.encode(features, to_cpu=True)
    wall_s, cpu_s = _fastest(lambda: model.encode(features, to_cpu=True))
    return (
        f"| whisper encoder alone | 30 s input, compute_type={compute_type} | {n_threads} | - | {1 / wall_s:,.1f} "
        f"| {30 / wall_s:,.0f} | {1000 * wall_s:,.1f} | {1000 * cpu_s:,.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    """Measure every available case and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder with manifest.csv and clips/")
    parser.add_argument("--clips", type=int, default=N_CLIPS)
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    args = parser.parse_args(argv)
    clips = load_clips(args.corpus, args.clips, MIN_CLIP_S)
    rows, skipped = [], []
    for name, params in CASES:
        reason = availability(name)
        if reason is not None:
            skipped.append(f"{name} {params}: {reason}")
            continue
        for n_threads in THREADS:
            rows.append(embed_row(name, params, n_threads, clips))
            print(rows[-1], flush=True)
    if availability("whisper") is None:
        for compute_type in ("int8", "float32"):
            for n_threads in THREADS:
                rows.append(padded_row(compute_type, n_threads))
                print(rows[-1], flush=True)
    text = "\n".join([
        "# Pretrained embedding throughput",
        "",
        f"Command: `python -m harness.bench_embeddings --clips {args.clips}`  ",
        f"Machine: {cpu_line()}  ",
        f"Measured: {time.strftime('%Y-%m-%d %H:%M')}; the first {len(clips)} VoxLingua clips of at least "
        f"{MIN_CLIP_S:g} s (16 kHz Opus, decoded once), one window per clip, so every window is full; "
        f"end to end (cleaning, log-mel, encoder, pooling); fastest of {REPEATS} runs after one warm-up call. "
        "Load = reading, sha256-checking and loading the model the first time in the process.",
        "",
        "| model | setting | threads | load (s) | clips/s | audio s/s | ms per window | CPU ms per window |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *(f"Skipped: {line}  " for line in skipped),
        "",
    ])
    atomic_write_bytes(Path(args.out), text.encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
