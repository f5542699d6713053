"""Generate the project's default dataset: synthetic clips whose classes differ in structure.

Each class is a recipe of a pitch, a harmonic profile, an amplitude-modulation rate and a
noise band; every clip draws its own jitter, loudness and background noise, so the task is
learnable but not trivial. Clip lengths are log-uniform over a wide range (by default
0.3 s to 35 s) so the demo and the tests exercise tiling and cropping.

    python -m harness.synth --out data/synth --classes 6 --train 240 --test 80
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness.dataset import write_dataset

SR = 16000


def class_recipes(n_classes: int, rng: np.random.Generator) -> list[dict]:
    """One recipe per class, spread over pitch, timbre, rhythm and noise colour."""
    pitches = np.geomspace(110.0, 880.0, n_classes)
    rng.shuffle(pitches)
    return [
        {
            "pitch_hz": float(pitches[k]),
            "harmonic_decay": float(rng.uniform(0.3, 0.9)),
            "am_hz": float(rng.choice([0.0, 2.0, 4.0, 8.0])),
            "noise_band_hz": (float(lo), float(lo * rng.uniform(1.5, 3.0))),
            "chirp": float(rng.choice([-0.3, 0.0, 0.3])),
        }
        for k, lo in enumerate(rng.uniform(300.0, 3000.0, n_classes))
    ]


def band_noise(n: int, low_hz: float, high_hz: float, rng: np.random.Generator) -> np.ndarray:
    """White noise filtered to [low_hz, high_hz] in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SR)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def render_clip(recipe: dict, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Render one clip of a class with per-clip jitter, as float32 in [-1, 1]."""
    n = max(int(duration_s * SR), 1)
    t = np.arange(n) / SR
    pitch = recipe["pitch_hz"] * rng.uniform(0.94, 1.06)
    sweep = 1.0 + recipe["chirp"] * np.minimum(t, 2.0) / 2.0
    phase = 2 * np.pi * np.cumsum(pitch * sweep) / SR
    tone = sum(recipe["harmonic_decay"] ** h * np.sin((h + 1) * phase) for h in range(5))
    if recipe["am_hz"]:
        tone *= 0.6 + 0.4 * np.sin(2 * np.pi * recipe["am_hz"] * t + rng.uniform(0, 2 * np.pi))
    signal = tone / (np.abs(tone).max() + 1e-9)
    signal += 0.5 * band_noise(n, *recipe["noise_band_hz"], rng)
    signal += rng.uniform(0.05, 0.4) * rng.standard_normal(n)
    signal *= rng.uniform(0.05, 0.9) / (np.abs(signal).max() + 1e-9)
    return signal.astype(np.float32)


def make_split(
    recipes: list[dict], n_clips: int, min_s: float, max_s: float, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Balanced labels (every class at least once when n_clips allows), shuffled order."""
    n_classes = len(recipes)
    labels = np.resize(np.arange(n_classes), n_clips)
    rng.shuffle(labels)
    durations = np.exp(rng.uniform(np.log(min_s), np.log(max_s), n_clips))
    clips = [render_clip(recipes[k], d, rng) for k, d in zip(labels, durations)]
    return clips, np.eye(n_classes, dtype=int)[labels]


def make_synth_dataset(
    out: str | Path,
    *,
    name: str = "synth",
    n_classes: int = 6,
    n_train: int = 240,
    n_test: int = 80,
    min_s: float = 0.3,
    max_s: float = 35.0,
    time_budget: float = 1800,
    seed: int = 0,
) -> Path:
    """Write a synthetic AutoSpeech dataset under `out` and return its `.data` directory."""
    rng = np.random.default_rng(seed)
    recipes = class_recipes(n_classes, rng)
    x_train, y_train = make_split(recipes, n_train, min_s, max_s, rng)
    x_test, y_test = make_split(recipes, n_test, min_s, max_s, rng)
    meta = {"time_budget": time_budget, "sample_rate": SR, "file_format": "synthetic"}
    return write_dataset(out, name, meta, x_train, y_train, x_test, y_test)


def main(argv: list[str] | None = None) -> None:
    """Command line: write one synthetic dataset with the given sizes and seed."""
    parser = argparse.ArgumentParser(prog="python -m harness.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/synth", help="root directory to write <name>.data into")
    parser.add_argument("--name", default="synth")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--train", type=int, default=240, help="number of training clips")
    parser.add_argument("--test", type=int, default=80, help="number of test clips")
    parser.add_argument("--min-s", type=float, default=0.3, help="shortest clip, seconds")
    parser.add_argument("--max-s", type=float, default=35.0, help="longest clip, seconds")
    parser.add_argument("--time-budget", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data_dir = make_synth_dataset(
        args.out, name=args.name, n_classes=args.classes, n_train=args.train, n_test=args.test,
        min_s=args.min_s, max_s=args.max_s, time_budget=args.time_budget, seed=args.seed,
    )
    print(f"wrote {data_dir}")


if __name__ == "__main__":
    main()
