"""Derived practice tasks: class subsets, training caps, crops, provenance in meta.json, resumable writes, the spec."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from harness.dataset import read_dataset
from harness.derive import (
    cap_fraction,
    cap_per_class,
    choose_classes,
    crop_offsets,
    derive_few_shot,
    main,
    plan_tasks,
    read_spec,
)
from harness.errors import HarnessError
from tests.conftest import make_tone_dataset

SPEC = Path(__file__).resolve().parents[1] / "harness" / "derived_tasks.json"
SUITE_CLASSES = {  # the built suite's tasks: classes and source
    "ased_emotion": (5, "ased"), "ased_speaker": (40, "ased"), "emotify_genre": (4, "emotify"),
    "fsdd_digit": (10, "fsdd"), "fsdd_speaker": (6, "fsdd"), "ravdess_emotion": (8, "ravdess"),
    "ravdess_speaker": (24, "ravdess"), "saa_accent": (9, "saa"), "voxlingua_language": (22, "voxlingua"),
}


def tone_suite(tmp_path: Path, *, n_classes: int = 5, **meta) -> Path:
    """A suite folder holding one task `tones` (30 train / 20 test clips of 0.2-1.5 s) with labels.json and files.json."""
    suite = tmp_path / "suite"
    dataset = read_dataset(make_tone_dataset(suite / "tones", n_classes=n_classes, n_train=30, n_test=20, **meta))
    (suite / "tones" / "labels.json").write_text(json.dumps([f"class{c}" for c in range(n_classes)]))
    files = {
        split: [{"file": f"{split}{i}.ogg", "label": f"class{np.argmax(y)}", "duration_s": len(x) / 16000}
                for i, (x, y) in enumerate(zip(clips, labels))]
        for split, clips, labels in (("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test))
    }
    (suite / "tones" / "files.json").write_text(json.dumps(files))
    return suite


def derive_spec(tmp_path: Path, suite: Path, entries: list, *extra: str) -> int:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(entries))
    return main(["--suite", str(suite), "--spec", str(spec), "--out", str(tmp_path / "out"), *extra])


def same_clip(clip: np.ndarray, clips: list) -> int:
    """Index of the clip of `clips` equal to `clip` (each tone clip has its own noise)."""
    return next(i for i, other in enumerate(clips) if len(other) == len(clip) and np.array_equal(other, clip))


def test_cap_per_class_takes_at_most_k_of_each_class():
    y = np.eye(3)[np.repeat([0, 1, 2], [5, 1, 3])]
    keep = cap_per_class(y, 2, seed=0)
    assert np.bincount(np.argmax(y[keep], axis=1)).tolist() == [2, 1, 2]
    assert keep.tolist() == sorted(set(keep.tolist()))
    with pytest.raises(HarnessError, match="per_class must be an int >= 1, got 0"):
        cap_per_class(y, 0, seed=0)


def test_cap_fraction_keeps_class_proportions_and_one_of_each():
    y = np.eye(3)[np.repeat([0, 1, 2], [40, 2, 10])]
    keep = cap_fraction(y, 0.25, seed=0)
    assert np.bincount(np.argmax(y[keep], axis=1)).tolist() == [10, 1, 3]
    assert not np.array_equal(keep, cap_fraction(y, 0.25, seed=1))
    with pytest.raises(HarnessError, match=r"train_fraction must be a number in \(0, 1\), got 1"):
        cap_fraction(y, 1, seed=0)


def test_derive_few_shot_keeps_the_test_set(tmp_path):
    source = make_tone_dataset(tmp_path / "src", n_classes=3, n_train=30, n_test=12)
    assert main(["--suite", str(tmp_path), "--tasks", "src", "--per-class", "1", "--out", str(tmp_path / "out")]) == 0
    derived = read_dataset(tmp_path / "out" / "tones_k1")
    original = read_dataset(source)
    assert derived.meta["train_num"] == 3 and np.bincount(np.argmax(derived.y_train, axis=1)).tolist() == [1, 1, 1]
    assert np.array_equal(derived.y_test, original.y_test) and len(derived.x_test) == 12
    kept = derive_few_shot(source, 2, tmp_path / "again")
    assert read_dataset(kept).meta["train_num"] == 6 and kept.name == "tones_k2.data"


def test_class_subset_reindexes_labels_in_both_splits(tmp_path):
    suite = tone_suite(tmp_path)
    assert derive_spec(tmp_path, suite, [{"task": "tones", "classes": 3, "per_class": 2, "seed": 4}]) == 0
    parent = read_dataset(suite / "tones")
    derived = read_dataset(tmp_path / "out" / "tones_c3_k2_s4")
    columns = choose_classes(5, 3, seed=4)
    assert derived.meta["class_num"] == 3 and derived.y_train.shape == (6, 3) and derived.y_test.shape[1] == 3
    assert np.bincount(np.argmax(derived.y_train, axis=1)).tolist() == [2, 2, 2]
    parent_test = np.argmax(parent.y_test, axis=1)
    assert derived.meta["test_num"] == int(np.isin(parent_test, columns).sum())  # every test clip of a kept class
    files = json.loads((tmp_path / "out" / "tones_c3_k2_s4" / "files.json").read_text())
    for split, clips, y, parent_clips, parent_y in (
        ("train", derived.x_train, derived.y_train, parent.x_train, parent.y_train),
        ("test", derived.x_test, derived.y_test, parent.x_test, parent.y_test),
    ):
        for clip, row, file_row in zip(clips, y, files[split]):  # column j is class columns[j] of the parent
            index = same_clip(clip, parent_clips)
            assert np.argmax(parent_y[index]) == columns[np.argmax(row)] and file_row["file"] == f"{split}{index}.ogg"
    labels = json.loads((tmp_path / "out" / "tones_c3_k2_s4" / "labels.json").read_text())
    assert labels == [f"class{c}" for c in columns]


def test_crop_offsets_are_random_windows_that_fit():
    lengths = np.array([100, 1000, 1000, 1000, 5000, 50])
    offsets = crop_offsets(lengths, 200, seed=0)
    assert np.all(offsets >= 0) and np.all(offsets + np.minimum(lengths, 200) <= lengths)
    assert offsets[0] == 0 and offsets[-1] == 0 and offsets[1:5].any()  # random, not the start
    assert np.array_equal(offsets, crop_offsets(lengths, 200, seed=0))


def test_crop_cuts_every_train_and_test_clip(tmp_path):
    suite = tone_suite(tmp_path)
    assert derive_spec(tmp_path, suite, [{"task": "tones", "crop_s": 0.5}]) == 0
    parent = read_dataset(suite / "tones")
    derived = read_dataset(tmp_path / "out" / "tones_crop0.5s")
    assert len(derived.x_train) == 30 and len(derived.x_test) == 20
    assert np.array_equal(derived.y_test, parent.y_test)
    files = json.loads((tmp_path / "out" / "tones_crop0.5s" / "files.json").read_text())
    for split, clips, parent_clips in (("train", derived.x_train, parent.x_train), ("test", derived.x_test, parent.x_test)):
        assert any(len(p) > 8000 for p in parent_clips) and any(len(p) < 8000 for p in parent_clips)
        assert [len(c) for c in clips] == [min(len(p), 8000) for p in parent_clips]
        for clip, whole, row in zip(clips, parent_clips, files[split]):  # the window files.json names
            start = round(row["offset_s"] * 16000)
            assert np.array_equal(whole[start : start + len(clip)], clip)
            assert row["duration_s"] == pytest.approx(len(clip) / 16000, abs=1e-4)


def test_meta_keeps_the_source_and_says_what_was_derived(tmp_path):
    suite = tone_suite(tmp_path, source="tonesrc", domain="pitch")
    entries = [{"task": "tones", "classes": 4, "train_fraction": 0.5, "crop_s": 1}, {"task": "tones", "per_class": 1}]
    assert derive_spec(tmp_path, suite, entries) == 0
    meta = read_dataset(tmp_path / "out" / "tones_c4_f50_crop1s").meta
    assert meta["source"] == "tonesrc" and meta["domain"] == "pitch"
    assert meta["derived_from"] == "tones" and meta["task"] == "tones_c4_f50_crop1s"
    assert meta["derivation"] == {"classes": 4, "train_fraction": 0.5, "crop_s": 1.0, "seed": 0}
    assert meta["train_num"] == 12  # half of the 6 training clips of each of 4 classes

    from offline_meta.build import dataset_entry, discover_datasets

    datasets = discover_datasets(tmp_path / "out")  # what `python -m offline_meta build --suite out` reads
    assert sorted(datasets) == ["tones_c4_f50_crop1s", "tones_k1"]
    assert dataset_entry(datasets["tones_k1"])["source"] == "tonesrc"


def test_a_parent_without_source_lends_its_name(tmp_path):
    suite = tone_suite(tmp_path)
    assert derive_spec(tmp_path, suite, [{"task": "tones", "per_class": 1}]) == 0
    assert read_dataset(tmp_path / "out" / "tones_k1").meta["source"] == "tones"


def test_rerun_skips_written_tasks_and_replaces_stale_ones(tmp_path, capsys):
    suite = tone_suite(tmp_path)
    entries = [{"task": "tones", "per_class": 1}, {"task": "tones", "classes": 2}]
    leftover = tmp_path / "out" / ".partial" / f"{2**22 + 12345}-tones_k1-x"  # a killed run's (no such pid)
    leftover.mkdir(parents=True)
    assert derive_spec(tmp_path, suite, entries) == 0
    assert not leftover.exists()
    meta_path = tmp_path / "out" / "tones_k1" / "tones_k1.data" / "meta.json"
    written = meta_path.stat().st_mtime_ns
    stale = tmp_path / "out" / "tones_c2" / "tones_c2.data" / "meta.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "fingerprint": "older"}))
    capsys.readouterr()
    assert derive_spec(tmp_path, suite, entries) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("up to date") and lines[0].endswith("tones_k1")
    assert lines[1].startswith("wrote") and "tones_c2.data (2 classes" in lines[1]
    assert meta_path.stat().st_mtime_ns == written
    assert json.loads(stale.read_text())["fingerprint"] != "older"
    assert sorted(os.listdir(tmp_path / "out" / ".partial")) == []


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"task": "nope", "per_class": 1}, r"entry 2 \(nope\): unknown task 'nope'.*available: \['tones'\]"),
        ({"task": "tones", "classes": 6}, r"entry 2 \(tones\): classes must be <= 5 .* got 6"),
        ({"task": "tones", "per_class": 0}, r"entry 2 \(tones\): per_class must be an int >= 1, got 0"),
        ({"task": "tones", "crop_s": 0}, r"entry 2 \(tones\): crop_s must be a number of seconds > 0, got 0"),
        ({"task": "tones", "k": 5}, r"entry 2 \(tones\): unknown key\(s\) \['k'\]"),
        ({"task": "tones"}, r"entry 2 \(tones\): derives nothing"),
        ({"task": "tones", "per_class": 2}, r"entry 2 \(tones\): makes task 'tones_k2' again \(entry 1\)"),
    ],
)
def test_bad_spec_entries_exit_2_naming_the_entry(tmp_path, capsys, entry, message):
    suite = tone_suite(tmp_path)
    assert derive_spec(tmp_path, suite, [{"task": "tones", "per_class": 2}, entry]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'spec.json'}: ")
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_missing_suite_and_bad_spec_file_exit_2(tmp_path, capsys):
    assert derive_spec(tmp_path, tmp_path / "no_suite", [{"task": "tones", "per_class": 1}]) == 2
    assert "suite folder" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"task": "tones"}')
    assert main(["--spec", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")]) == 2
    assert "must hold a non-empty list of derivations, got dict" in capsys.readouterr().err


def meta_only_suite(root: Path) -> Path:
    """The built suite's meta.json files and nothing else: a dry run must not need audio."""
    for task, (classes, source) in SUITE_CLASSES.items():
        data_dir = root / task / f"{task}.data"
        data_dir.mkdir(parents=True)
        meta = {"class_num": classes, "train_num": 100, "test_num": 25, "time_budget": 1800, "source": source}
        (data_dir / "meta.json").write_text(json.dumps(meta))
    return root


def test_shipped_spec_gives_40_tasks_over_all_sources(tmp_path, capsys):
    suite = meta_only_suite(tmp_path / "suite")
    plans = plan_tasks(suite, read_spec(SPEC), str(SPEC))
    assert len({plan.name for plan in plans}) == len(plans) >= 40
    assert {plan.source for plan in plans} == {"ased", "emotify", "fsdd", "ravdess", "saa", "voxlingua"}
    assert {plan.derivation.per_class for plan in plans} >= {1, 2, 5}
    assert any(plan.derivation.classes for plan in plans) and any(plan.derivation.train_fraction for plan in plans)
    assert all(1 <= plan.derivation.crop_s <= 3 for plan in plans if plan.derivation.crop_s)
    assert main(["--suite", str(suite), "--spec", str(SPEC), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(plans)} tasks over 6 sources" in out and "| ravdess_emotion_c4_k5 | ravdess |" in out
