"""Dataset validation: each way a dataset can be broken gives its own error naming the file."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from harness.dataset import read_dataset, resolve_data_dir, solution_path
from harness.errors import DatasetError


def rewrite_clips(path, mutate):
    clips = pickle.loads(path.read_bytes())
    mutate(clips)
    path.write_bytes(pickle.dumps(clips))


def test_read_dataset_round_trips_what_was_written(tone_dataset):
    dataset = read_dataset(tone_dataset.parent)
    assert dataset.name == "tones"
    assert dataset.meta["class_num"] == 3 and dataset.meta["train_num"] == 30
    assert len(dataset.x_train) == 30 and dataset.y_train.shape == (30, 3)
    assert dataset.y_test.shape == (12, 3)
    assert all(clip.dtype == np.float32 for clip in dataset.x_train)


def test_read_dataset_missing_file_is_named(tone_dataset):
    (tone_dataset / "test.pkl").unlink()
    with pytest.raises(DatasetError, match=r"test\.pkl: missing file"):
        read_dataset(tone_dataset)


def test_read_dataset_missing_meta(tone_dataset):
    (tone_dataset / "meta.json").unlink()
    with pytest.raises(DatasetError, match=r"meta\.json: missing meta\.json"):
        read_dataset(tone_dataset)


def test_read_dataset_meta_missing_keys(tone_dataset):
    meta = json.loads((tone_dataset / "meta.json").read_text())
    del meta["test_num"]
    (tone_dataset / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"meta\.json: missing keys \['test_num'\]"):
        read_dataset(tone_dataset)


def test_read_dataset_train_count_disagrees_with_meta(tone_dataset):
    rewrite_clips(tone_dataset / "train.pkl", lambda clips: clips.pop())
    with pytest.raises(DatasetError, match=r"train\.pkl: holds 29 clips but meta\.json says 30"):
        read_dataset(tone_dataset)


def test_read_dataset_truncated_pickle(tone_dataset):
    path = tone_dataset / "train.pkl"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"train\.pkl: cannot unpickle"):
        read_dataset(tone_dataset)


def test_read_dataset_solution_not_one_hot(tone_dataset):
    path = tone_dataset / "train.solution"
    lines = path.read_text().splitlines()
    lines[4] = "1 1 0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"train\.solution: row 5 is not one-hot"):
        read_dataset(tone_dataset)


def test_read_dataset_solution_wrong_width(tone_dataset):
    path = solution_path(tone_dataset)
    lines = path.read_text().splitlines()
    lines[0] = "0 1 0 0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"tones\.solution: rows must have class_num = 3 values"):
        read_dataset(tone_dataset)


def test_read_dataset_solution_wrong_row_count(tone_dataset):
    path = solution_path(tone_dataset)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(DatasetError, match=r"tones\.solution: has 10 rows but meta\.json says 12"):
        read_dataset(tone_dataset)


def test_read_dataset_clip_not_1d(tone_dataset):
    def make_2d(clips):
        clips[3] = np.stack([clips[3], clips[3]])

    rewrite_clips(tone_dataset / "train.pkl", make_2d)
    with pytest.raises(DatasetError, match=r"train\.pkl: clip 3 must be 1-D, got shape \(2, \d+\)"):
        read_dataset(tone_dataset)


def test_read_dataset_clip_not_float(tone_dataset):
    def make_int(clips):
        clips[0] = (clips[0] * 1000).astype(np.int16)

    rewrite_clips(tone_dataset / "test.pkl", make_int)
    with pytest.raises(DatasetError, match=r"test\.pkl: clip 0 must have a float dtype, got int16"):
        read_dataset(tone_dataset)


def test_read_dataset_non_finite_samples(tone_dataset):
    def poison(clips):
        clips[7][10] = np.inf

    rewrite_clips(tone_dataset / "train.pkl", poison)
    with pytest.raises(DatasetError, match=r"train\.pkl: clip 7 has non-finite samples"):
        read_dataset(tone_dataset)


def test_read_dataset_empty_clip(tone_dataset):
    def empty(clips):
        clips[2] = np.zeros(0, dtype=np.float32)

    rewrite_clips(tone_dataset / "test.pkl", empty)
    with pytest.raises(DatasetError, match=r"test\.pkl: clip 2 is empty"):
        read_dataset(tone_dataset)


def test_resolve_data_dir_needs_exactly_one_dataset(tmp_path, tone_dataset):
    assert resolve_data_dir(tone_dataset.parent) == tone_dataset
    with pytest.raises(DatasetError, match="not found"):
        resolve_data_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="must hold exactly one <name>.data directory, found 0"):
        resolve_data_dir(tmp_path / "empty")
