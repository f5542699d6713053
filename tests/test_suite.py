"""Benchmark suite build: datasets from ../shared/corpora, traceable, stratified, deterministic, resumable."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

import harness.suite as suite
from harness.dataset import read_dataset, resolve_data_dir
from harness.errors import DatasetError

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
FSDD_TASKS = ["fsdd_speaker", "fsdd_digit"]
needs_corpora = pytest.mark.skipif(
    not (CORPORA / "fsdd" / "tasks.json").is_file(),
    reason=f"needs the fsdd corpus at {CORPORA} (../shared/corpora beside the repository)",
)


def build_fsdd(out: Path, **kwargs) -> list[dict]:
    return suite.build_suite(CORPORA, out, tasks=FSDD_TASKS, max_per_class=4, progress=False, **kwargs)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fsdd_suite(tmp_path_factory) -> Path:
    """fsdd_speaker and fsdd_digit at 4 clips per class, built through the command line; stdout in build.out."""
    out = tmp_path_factory.mktemp("suite")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = suite.main(["build", "--corpora", str(CORPORA), "--out", str(out), "--tasks", *FSDD_TASKS,
                           "--max-per-class", "4", "--no-progress"])
    assert code == 0
    (out.parent / "build.out").write_text(stdout.getvalue())
    return out


@needs_corpora
def test_suite_build_writes_one_valid_dataset_per_task(fsdd_suite):
    manifest = suite.read_manifest(CORPORA / "fsdd")
    for task, column in [("fsdd_speaker", "speaker"), ("fsdd_digit", "digit")]:
        assert resolve_data_dir(fsdd_suite / task).name == f"{task}.data"
        dataset = read_dataset(fsdd_suite / task)  # validates meta.json against pickles and solutions
        meta = dataset.meta
        assert meta["class_num"] == manifest[column].nunique()
        assert meta["train_num"] + meta["test_num"] == 4 * meta["class_num"]
        assert meta["time_budget"] == 1800 and meta["sample_rate"] == 16000
        assert (meta["task"], meta["source"], meta["label"]) == (task, "fsdd", column)
        assert meta["suite_version"] == suite.SUITE_VERSION and len(meta["fingerprint"]) == 16
        labels = json.loads((fsdd_suite / task / "labels.json").read_text())
        assert labels == sorted(manifest[column].unique())
    printed = (fsdd_suite.parent / "build.out").read_text()
    assert "| fsdd_digit | fsdd | other | 10 | 30 | 10 |" in printed and "2 built, 0 up to date" in printed


@needs_corpora
def test_suite_labels_and_audio_match_manifest_rows(fsdd_suite):
    manifest = suite.read_manifest(CORPORA / "fsdd").set_index("file")
    dataset = read_dataset(fsdd_suite / "fsdd_speaker")
    labels = json.loads((fsdd_suite / "fsdd_speaker" / "labels.json").read_text())
    files = json.loads((fsdd_suite / "fsdd_speaker" / "files.json").read_text())
    for part, x, y in [("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)]:
        rows = files[part]
        assert len(rows) == len(x)
        for row, onehot in zip(rows, y):
            assert labels[int(np.argmax(onehot))] == row["label"] == manifest.loc[row["file"], "speaker"]
        for index in (0, len(rows) // 2, len(rows) - 1):
            wave, sr = soundfile.read(CORPORA / "fsdd" / rows[index]["file"], dtype="float32")
            assert sr == 16000
            np.testing.assert_array_equal(x[index], wave)


@needs_corpora
def test_suite_split_is_stratified_with_every_class_in_both_parts(fsdd_suite):
    for task in FSDD_TASKS:
        dataset = read_dataset(fsdd_suite / task)
        train_counts, test_counts = dataset.y_train.sum(axis=0), dataset.y_test.sum(axis=0)
        assert train_counts.min() >= 1 and test_counts.min() >= 1
        np.testing.assert_array_equal(test_counts, 1)  # round(0.2 * 4) = 1 test clip per class
        files = json.loads((fsdd_suite / task / "files.json").read_text())
        assert not {r["file"] for r in files["train"]} & {r["file"] for r in files["test"]}


def test_split_clips_keeps_80_20_per_class_and_is_deterministic():
    selection = pd.DataFrame({
        "file": [f"clips/{i:03d}.ogg" for i in range(130)],
        "kind": ["a"] * 50 + ["b"] * 70 + ["c"] * 10,
    })
    train, test = suite.split_clips(selection, "kind")
    assert test["kind"].value_counts().to_dict() == {"a": 10, "b": 14, "c": 2}
    assert train["kind"].value_counts().to_dict() == {"a": 40, "b": 56, "c": 8}
    assert set(train["file"]).isdisjoint(test["file"]) and len(train) + len(test) == 130
    again_train, again_test = suite.split_clips(selection.iloc[::-1], "kind")
    assert list(again_train["file"]) == list(train["file"]) and list(again_test["file"]) == list(test["file"])
    assert list(train["kind"]) != sorted(train["kind"])  # order is shuffled, not grouped by class


def test_split_clips_names_the_task_of_a_single_clip_class():
    selection = pd.DataFrame({"file": ["a0.ogg", "a1.ogg", "b0.ogg"], "kind": ["a", "a", "b"]})
    with pytest.raises(DatasetError, match=r"^src/manifest.csv: task t: class 'b' must have >= 2 clips"):
        suite.split_clips(selection, "kind", where="src/manifest.csv: task t")


def test_select_clips_honours_min_per_class_and_drops_single_clip_classes(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    rows = ["file,speaker"] + [f"c{i}.ogg,05" for i in range(5)] + [f"d{i}.ogg,7" for i in range(3)] + ["e.ogg,x", "f.ogg,"]
    (source / "manifest.csv").write_text("\n".join(rows) + "\n")
    manifest = suite.read_manifest(source)
    spec = suite.TaskSpec("t", "src", source, "speaker", "speaker")
    with pytest.warns(suite.SuiteWarning) as caught:
        selected = suite.select_clips(spec, manifest)
    messages = [str(w.message) for w in caught]
    assert any("1 clip(s) with no 'speaker' label" in m for m in messages)
    assert any("1 class(es) with a single clip" in m and "['x']" in m for m in messages)
    assert sorted(selected["speaker"].unique()) == ["05", "7"]  # labels stay strings
    strict = suite.TaskSpec("t", "src", source, "speaker", "speaker", min_per_class=4)
    with pytest.raises(DatasetError, match="at least 2 classes"), pytest.warns(suite.SuiteWarning):
        suite.select_clips(strict, manifest)


@needs_corpora
def test_suite_build_is_deterministic(fsdd_suite, tmp_path):
    build_fsdd(tmp_path / "again", n_jobs=1)
    assert all_files(tmp_path / "again") == all_files(fsdd_suite)


@needs_corpora
def test_suite_rebuild_skips_up_to_date_and_rebuilds_changed(tmp_path):
    out = tmp_path / "suite"
    assert [row["status"] for row in build_fsdd(out)] == ["built", "built"]
    meta_path = out / "fsdd_digit" / "fsdd_digit.data" / "meta.json"
    before = meta_path.stat().st_mtime_ns
    assert [row["status"] for row in build_fsdd(out)] == ["up to date", "up to date"]
    assert meta_path.stat().st_mtime_ns == before
    listed = {row["task"]: row["built"] for row in suite.list_tasks(CORPORA, out, max_per_class=4)}
    assert listed["fsdd_digit"] == "up to date" and listed["saa_accent"] == "not built"
    assert {row["task"]: row["built"] for row in suite.list_tasks(CORPORA, out)}["fsdd_digit"] == "stale"
    rows = suite.build_suite(CORPORA, out, tasks=["fsdd_digit"], max_per_class=4, time_budget=300, progress=False)
    assert rows[0]["status"] == "built"
    assert json.loads(meta_path.read_text())["time_budget"] == 300


@needs_corpora
def test_suite_decodes_a_shared_source_once(tmp_path, monkeypatch):
    calls = []
    real = suite.decode_clips

    def counting(paths, **kwargs):
        calls.append(len(paths))
        return real(paths, **kwargs)

    monkeypatch.setattr(suite, "decode_clips", counting)
    build_fsdd(tmp_path / "suite")
    speaker = json.loads((tmp_path / "suite" / "fsdd_speaker" / "files.json").read_text())
    digit = json.loads((tmp_path / "suite" / "fsdd_digit" / "files.json").read_text())
    union = {r["file"] for part in (speaker, digit) for r in part["train"] + part["test"]}
    assert calls == [len(union)]


def make_fake_corpus(root: Path, extra_clip: str, write_extra) -> Path:
    """A one-task corpus of four copies of two real fsdd clips plus one extra clip made by `write_extra`."""
    clips = root / "fake" / "clips"
    clips.mkdir(parents=True)
    for index, name in enumerate(["00000.ogg", "00001.ogg", "00000.ogg", "00001.ogg"]):
        shutil.copy(CORPORA / "fsdd" / "clips" / name, clips / f"real{index}.ogg")
    if write_extra is not None:
        write_extra(clips / extra_clip)
    rows = ["file,duration_s,kind,original_path"]
    rows += [f"clips/real{i}.ogg,0.4,{'ab'[i // 2]},x" for i in range(4)] + [f"clips/{extra_clip},0.4,b,x"]
    (root / "fake" / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "fake" / "tasks.json").write_text(json.dumps({"fake_kind": {"label": "kind", "domain": "other"}}))
    return root


@needs_corpora
@pytest.mark.parametrize(
    "extra, write_extra, message",
    [
        ("corrupt.ogg", lambda path: path.write_bytes(b"not an ogg file " * 64), r"corrupt\.ogg: cannot decode"),
        ("absent.ogg", None, r"absent\.ogg: missing clip file"),
        ("slow.wav", lambda path: soundfile.write(path, np.zeros(8000, np.float32), 8000), r"slow\.wav: sample rate must be 16000 Hz, got 8000"),
        ("stereo.wav", lambda path: soundfile.write(path, np.zeros((800, 2), np.float32), 16000), r"stereo\.wav: must be mono"),
    ],
)
def test_suite_bad_clip_is_an_error_naming_the_file(tmp_path, extra, write_extra, message):
    corpora = make_fake_corpus(tmp_path / "corpora", extra, write_extra)
    with pytest.raises(DatasetError, match=message):
        suite.build_suite(corpora, tmp_path / "out", progress=False)
    assert suite.main(["build", "--corpora", str(corpora), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert suite.built_fingerprint(tmp_path / "out", "fake_kind") is None


@needs_corpora
def test_suite_unknown_task_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown task\(s\) \['nope'\]; available: \["):
        suite.build_suite(CORPORA, tmp_path, tasks=["nope"])


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["list", "--help"]])
def test_suite_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        suite.main(argv)
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
