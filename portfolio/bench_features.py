"""Throughput of the front ends; run ``python -m portfolio.bench_features``.

Writes a markdown table to ``docs/features_speed.md``: clips per second of
:func:`log_mel` and of the end-to-end ``log_mel_stats`` feature (best of three
runs) on white-noise clips, for 1 and 2 threads.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from portfolio.features import CHUNK_CLIPS, compute_features, log_mel

CASES = ((1000, 3.0), (300, 30.0))
MAX_S = (3.0, 1.0)
N_JOBS = (1, 2)
REPEATS = 3
OUT_PATH = Path("docs/features_speed.md")


def _best_clips_per_s(fn, n_clips: int) -> float:
    """Clips per second of the fastest of ``REPEATS`` calls of ``fn``."""
    best_s = np.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best_s = min(best_s, time.perf_counter() - start)
    return n_clips / best_s


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}; {len(os.sched_getaffinity(0))} usable cores; numpy {np.__version__}; Python {platform.python_version()}"


def main() -> None:
    """Measure every case and write the table."""
    rng = np.random.default_rng(0)
    rows = []
    for n_clips, clip_s in CASES:
        waves = [rng.standard_normal(int(clip_s * 16000), dtype=np.float32) for _ in range(n_clips)]
        for max_s in MAX_S:
            for n_jobs in N_JOBS:
                log_mel(waves[:CHUNK_CLIPS], max_s=max_s, n_jobs=n_jobs)
                mel_rate = _best_clips_per_s(lambda: log_mel(waves, max_s=max_s, n_jobs=n_jobs), n_clips)
                stats_rate = _best_clips_per_s(
                    lambda: compute_features("log_mel_stats", {"max_s": max_s}, waves, n_jobs=n_jobs), n_clips
                )
                row = f"| {n_clips} | {clip_s:g} | {max_s:g} | {n_jobs} | {mel_rate:,.0f} | {stats_rate:,.0f} |"
                print(row, flush=True)
                rows.append(row)
        del waves
    text = "\n".join([
        "# Front-end throughput",
        "",
        "Command: `python -m portfolio.bench_features`  ",
        f"Machine: {_machine()}  ",
        f"Measured: {time.strftime('%Y-%m-%d %H:%M')}; white-noise float32 clips at 16 kHz; "
        f"defaults n_mels=64, n_fft=512, hop_length=160; chunks of {CHUNK_CLIPS} clips; best of {REPEATS}.",
        "",
        "| clips | clip (s) | max_s | n_jobs | log_mel (clips/s) | log_mel_stats end to end (clips/s) |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUT_PATH.write_text(text)
    print(f"wrote {OUT_PATH}")


if __name__ == "__main__":
    main()
