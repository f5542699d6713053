"""Derived few-shot tasks: the training clips capped per class, the test set kept whole."""

from __future__ import annotations

import numpy as np
import pytest

from harness.dataset import read_dataset
from harness.derive import cap_per_class, derive_few_shot, main
from harness.errors import HarnessError
from tests.conftest import make_tone_dataset


def test_cap_per_class_takes_at_most_k_of_each_class():
    y = np.eye(3)[np.repeat([0, 1, 2], [5, 1, 3])]
    keep = cap_per_class(y, 2, seed=0)
    assert np.bincount(np.argmax(y[keep], axis=1)).tolist() == [2, 1, 2]
    assert keep.tolist() == sorted(set(keep.tolist()))
    with pytest.raises(HarnessError, match="per_class must be an int >= 1, got 0"):
        cap_per_class(y, 0, seed=0)


def test_derive_few_shot_keeps_the_test_set(tmp_path):
    source = make_tone_dataset(tmp_path / "src", n_classes=3, n_train=30, n_test=12)
    assert main(["--suite", str(tmp_path), "--tasks", "src", "--per-class", "1", "--out", str(tmp_path / "out")]) == 0
    derived = read_dataset(tmp_path / "out" / "tones_k1")
    original = read_dataset(source)
    assert derived.meta["train_num"] == 3 and np.bincount(np.argmax(derived.y_train, axis=1)).tolist() == [1, 1, 1]
    assert np.array_equal(derived.y_test, original.y_test) and len(derived.x_test) == 12
    kept = derive_few_shot(source, 2, tmp_path / "again")
    assert read_dataset(kept).meta["train_num"] == 6 and kept.name == "tones_k2.data"
