"""Throughput of the front ends; run ``python -m harness.bench_features``.

Writes a markdown table to the project's ``docs/features_speed.md``: clips per wall-clock
second and per CPU second of :func:`log_mel` and of the end-to-end
``log_mel_stats`` feature on white-noise clips, for 1 and 2 threads. On a
machine shared with other jobs the wall-clock rates vary from run to run; the
CPU-second rates much less.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from harness.dataset import atomic_write_bytes
from portfolio.features import CHUNK_CLIPS, compute_features, log_mel, usable_cores

CASES = ((1000, 3.0), (300, 30.0))
MAX_S = (3.0, 1.0)
N_JOBS = (1, 2)
REPEATS = 3
MIN_TOTAL_S = 2.0
# Anchored to the project, not the cwd, so the table lands in docs/ wherever it is run from.
OUT_PATH = Path(__file__).resolve().parents[1] / "docs" / "features_speed.md"


def _rates(fn, n_clips: int) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second) of the fastest call of ``fn``.

    ``fn`` runs at least ``REPEATS`` times and at least ``MIN_TOTAL_S`` seconds.
    """
    runs = []
    while len(runs) < REPEATS or sum(wall_s for wall_s, _ in runs) < MIN_TOTAL_S:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall_start, time.process_time() - cpu_start))
    wall_s, cpu_s = min(runs)
    return n_clips / wall_s, n_clips / max(cpu_s, 1e-9)


def cpu_line() -> str:
    """CPU model, usable cores and the load average now (speed tables are read beside it)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}; {usable_cores()} usable cores (load average {load} at the end: shared with other jobs); "
        f"numpy {np.__version__}; Python {platform.python_version()}"
    )


def main() -> None:
    """Measure every case and write the table."""
    rng = np.random.default_rng(0)
    rows = []
    for n_clips, clip_s in CASES:
        waves = [rng.standard_normal(int(clip_s * 16000), dtype=np.float32) for _ in range(n_clips)]
        for max_s in MAX_S:
            for n_jobs in N_JOBS:
                log_mel(waves[:CHUNK_CLIPS], max_s=max_s, n_jobs=n_jobs)
                mel = _rates(lambda: log_mel(waves, max_s=max_s, n_jobs=n_jobs), n_clips)
                stats = _rates(
                    lambda: compute_features("log_mel_stats", {"max_s": max_s}, waves, n_jobs=n_jobs), n_clips
                )
                row = (
                    f"| {n_clips} | {clip_s:g} | {max_s:g} | {n_jobs} "
                    f"| {mel[0]:,.0f} | {mel[1]:,.0f} | {stats[0]:,.0f} | {stats[1]:,.0f} |"
                )
                print(row, flush=True)
                rows.append(row)
        del waves
    text = "\n".join([
        "# Front-end throughput",
        "",
        "Command: `python -m harness.bench_features`  ",
        f"Machine: {cpu_line()}  ",
        f"Measured: {time.strftime('%Y-%m-%d %H:%M')}; white-noise float32 clips at 16 kHz; "
        f"defaults n_mels=64, n_fft=512, hop_length=160; chunks of {CHUNK_CLIPS} clips; "
        f"fastest of at least {REPEATS} runs and {MIN_TOTAL_S:g} s.",
        "",
        "| clips | clip (s) | max_s | n_jobs | log_mel (clips/s) | log_mel (clips/CPU-s) "
        "| log_mel_stats end to end (clips/s) | log_mel_stats (clips/CPU-s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    atomic_write_bytes(OUT_PATH, text.encode())
    print(f"wrote {OUT_PATH}")


if __name__ == "__main__":
    main()
