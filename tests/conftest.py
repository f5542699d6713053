"""Shared fixtures: tiny datasets written on the fly, and fake model directories."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.dataset import write_dataset


def tone_clips(labels: np.ndarray, rng: np.random.Generator, *, min_s: float = 0.2, max_s: float = 1.5) -> list:
    """Noisy tones whose pitch depends on the label: an easy task for quick end-to-end tests."""
    clips = []
    for label in labels:
        n = int(rng.uniform(min_s, max_s) * 16000)
        t = np.arange(n) / 16000
        tone = np.sin(2 * np.pi * 200.0 * (label + 1) * t)
        clips.append((tone + 0.3 * rng.standard_normal(n)).astype(np.float32))
    return clips


def make_tone_dataset(root: Path, *, n_classes: int = 3, n_train: int = 30, n_test: int = 12, seed: int = 0, **meta):
    rng = np.random.default_rng(seed)
    y_train = np.resize(np.arange(n_classes), n_train)
    y_test = np.resize(np.arange(n_classes), n_test)
    eye = np.eye(n_classes, dtype=int)
    return write_dataset(
        root, "tones", {"time_budget": 60, **meta},
        tone_clips(y_train, rng), eye[y_train], tone_clips(y_test, rng), eye[y_test],
    )


@pytest.fixture
def tone_dataset(tmp_path: Path) -> Path:
    """A valid 3-class dataset of 30 train / 12 test short clips; returns its .data directory."""
    return make_tone_dataset(tmp_path / "dataset")


@pytest.fixture
def write_model(tmp_path: Path):
    """Write a model.py (source text, dedented) into a fresh code directory and return the directory."""

    def write(source: str) -> Path:
        code_dir = tmp_path / "code"
        code_dir.mkdir(exist_ok=True)
        (code_dir / "model.py").write_text(textwrap.dedent(source))
        return code_dir

    return write
