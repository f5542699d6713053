"""Bring your own audio: `harness import` (folder per class or CSV -> AutoSpeech dataset) and `harness predict`.

Every test writes its own audio files. `make_tone_folder` builds the example folder of
the README: one subfolder per class of noisy tones whose pitch depends on the class.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from harness.__main__ import main as harness_main
from harness.audio_import import MARKER_FILE, TEMP_MARK, AudioImportError, import_audio, leftover_folders
from harness.audio_io import load_clip
from harness.dataset import read_dataset, resolve_data_dir
from harness.predict import predict_folder, predictions_csv

PROJECT_DIR = Path(__file__).resolve().parents[1]
PITCH_HZ = {"high": 1600.0, "low": 250.0, "mid": 700.0}


def tone(freq_hz: float, seconds: float, sr: int, *, amplitude: float = 0.5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A sine of `freq_hz` with optional white noise, float32 in [-1, 1]."""
    t = np.arange(int(round(seconds * sr))) / sr
    wave = amplitude * np.sin(2 * np.pi * freq_hz * t)
    if noise:
        wave = wave + noise * np.random.default_rng(seed).standard_normal(len(t))
    return np.clip(wave, -1, 1).astype(np.float32)


def write_tone(path: Path, freq_hz: float, *, seconds: float = 0.5, sr: int = 16000, seed: int = 0, **kwargs) -> Path:
    """Write a noisy tone file (format from the suffix unless given in `kwargs`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, tone(freq_hz, seconds, sr, noise=0.1, seed=seed), sr, **kwargs)
    return path


def make_tone_folder(root: Path, counts: dict[str, int], *, sr: int = 22050, seed: int = 0) -> Path:
    """A folder per class of `counts[class]` WAV tones at `sr` Hz, 0.4-1.2 s long, pitch by class."""
    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        for index in range(n):
            write_tone(root / label / f"{label}{index:02d}.wav", PITCH_HZ.get(label, 400.0) * rng.uniform(0.95, 1.05),
                       seconds=rng.uniform(0.4, 1.2), sr=sr, seed=int(rng.integers(1 << 30)))
    return root


def run_cli(*argv) -> int:
    return harness_main([str(a) for a in argv])


def dominant_hz(wave: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


# --------------------------------------------------------------------------- decoding


def _write_wav_stereo_int16(path: Path) -> tuple[float, float]:
    left = tone(440.0, 1.5, 44100, amplitude=0.8)
    soundfile.write(path, np.stack([left, left], axis=1), 44100, subtype="PCM_16")
    return 1.5, 0.8


def _write_flac_8k(path: Path) -> tuple[float, float]:
    soundfile.write(path, tone(440.0, 2.0, 8000, amplitude=0.5), 8000)
    return 2.0, 0.5


def _write_ogg_vorbis(path: Path) -> tuple[float, float]:
    soundfile.write(path, tone(440.0, 1.0, 22050, amplitude=0.5), 22050, format="OGG", subtype="VORBIS")
    return 1.0, 0.5


def _write_mp3(path: Path) -> tuple[float, float]:
    if not soundfile.check_format("MP3", "MPEG_LAYER_III"):
        pytest.skip(f"the installed libsndfile {soundfile.__libsndfile_version__} cannot write MP3")
    soundfile.write(path, tone(440.0, 1.0, 44100, amplitude=0.5), 44100, format="MP3", subtype="MPEG_LAYER_III")
    return 1.0, 0.5


@pytest.mark.parametrize(
    "name, write",
    [
        ("stereo44k.wav", _write_wav_stereo_int16),
        ("narrow8k.flac", _write_flac_8k),
        ("vorbis22k.ogg", _write_ogg_vorbis),
        ("layer3.mp3", _write_mp3),
    ],
)
def test_load_clip_gives_16k_mono_float32(tmp_path, name, write):
    seconds, amplitude = write(tmp_path / name)
    wave = load_clip(tmp_path / name)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - seconds * 16000) <= 0.03 * 16000  # lossy codecs pad a few ms
    assert np.all(np.isfinite(wave))
    assert amplitude * 0.85 < np.abs(wave).max() < amplitude * 1.2  # int16 scaled to [-1, 1), channels averaged
    assert abs(dominant_hz(wave) - 440.0) < 5.0  # the pitch survives resampling


def test_load_clip_averages_the_channels(tmp_path):
    left = tone(440.0, 0.5, 16000, amplitude=0.6)
    soundfile.write(tmp_path / "half.wav", np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_clip(tmp_path / "half.wav"), left / 2, atol=1e-6)


# --------------------------------------------------------------------------- import: the dataset


def test_import_writes_a_valid_stratified_dataset(tmp_path, capsys):
    audio = make_tone_folder(tmp_path / "tones", {"low": 5, "mid": 4, "high": 2})
    out = tmp_path / "imported"
    assert run_cli("import", "--audio", audio, "--out", out, "--jobs", 1, "--no-progress", "--time-budget", 60) == 0
    assert "imported 11 clips of 3 classes" in capsys.readouterr().out
    dataset = read_dataset(out)  # validates meta.json, pickles and both solutions
    assert dataset.name == "tones" and resolve_data_dir(out) == out / "tones.data"
    assert (dataset.meta["time_budget"], dataset.meta["sample_rate"], dataset.meta["class_num"]) == (60, 16000, 3)
    labels = json.loads((out / "labels.json").read_text())
    assert labels == ["high", "low", "mid"]  # sorted: column j is labels[j]
    # per class max(1, round(0.2 n)) test clips, at least one train clip: 5 -> 4/1, 4 -> 3/1, 2 -> 1/1
    np.testing.assert_array_equal(dataset.y_train.sum(axis=0), [1, 4, 3])
    np.testing.assert_array_equal(dataset.y_test.sum(axis=0), [1, 1, 1])
    files = json.loads((out / "files.json").read_text())
    assert files["form"] == "folder" and files["skipped"] == [] and files["dropped_classes"] == {}
    for part, clips, y in [("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)]:
        assert len(files[part]) == len(clips)
        for row, clip, onehot in zip(files[part], clips, y):
            assert row["file"].split("/")[0] == row["label"] == labels[int(np.argmax(onehot))]
            assert clip.dtype == np.float32 and row["duration_s"] == round(len(clip) / 16000, 4)
            np.testing.assert_array_equal(clip, load_clip(audio / row["file"]))
    every = [row["file"] for part in ("train", "test") for row in files[part]]
    assert sorted(every) == sorted(p.relative_to(audio).as_posix() for p in audio.rglob("*.wav"))
    assert not list(tmp_path.glob(f".*{TEMP_MARK}*"))


def test_import_split_is_deterministic_and_follows_seed(tmp_path):
    audio = make_tone_folder(tmp_path / "tones", {"low": 10, "mid": 10})
    rows = {}
    for out, seed in [("a", 0), ("b", 0), ("c", 1)]:
        import_audio(audio, tmp_path / out, seed=seed, n_jobs=1, progress=False, log=lambda _: None)
        files = json.loads((tmp_path / out / "files.json").read_text())
        rows[out] = [r["file"] for r in files["test"]]
    assert rows["a"] == rows["b"] and set(rows["a"]) != set(rows["c"]) and len(rows["a"]) == 4


def test_import_nested_subfolders_belong_to_the_first_level_class(tmp_path, capsys):
    audio = tmp_path / "audio"
    for index, rel in enumerate(["cat/a.wav", "cat/indoor/b.wav", "cat/indoor/night/c.flac", "dog/d.wav", "dog/x/y/e.ogg"]):
        write_tone(audio / rel, 300.0 + 100 * index)
    write_tone(audio / "stray.wav", 500.0)  # not in a class folder: ignored, said so
    (audio / "cat" / ".hidden.wav").write_text("editor swap file")  # hidden names are not looked at
    summary = import_audio(audio, tmp_path / "out", n_jobs=1, progress=False)
    assert summary["class_counts"] == {"cat": 3, "dog": 2}
    assert summary["outside_class_folders"] == ["stray.wav"] and summary["skipped"] == []
    assert "warning: ignored 1 file(s) outside the class folders" in capsys.readouterr().err
    files = json.loads((tmp_path / "out" / "files.json").read_text())
    labelled = {r["file"]: r["label"] for part in ("train", "test") for r in files[part]}
    assert labelled == {"cat/a.wav": "cat", "cat/indoor/b.wav": "cat", "cat/indoor/night/c.flac": "cat",
                        "dog/d.wav": "dog", "dog/x/y/e.ogg": "dog"}


def test_import_csv_labels_paths_relative_to_its_folder(tmp_path):
    root = tmp_path / "project"
    for index in range(6):
        write_tone(root / "recordings" / ("day1" if index < 3 else "day2") / f"r{index}.wav", 300.0 + 200 * index)
    rows = [("recordings/day1/r0.wav", "yes"), ("recordings/day1/r1.wav", "no"), ("recordings/day1/r2.wav", "yes"),
            ("recordings/day2/r3.wav", "no"), ("recordings/day2/r4.wav", "yes"), ("recordings/day2/r5.wav", "no"),
            ("recordings/day2/absent.wav", "no")]
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "note"])
        writer.writerows([(path, label, "x") for path, label in rows])
    out = tmp_path / "out"
    assert run_cli("import", "--audio", root / "labels.csv", "--out", out, "--jobs", 1, "--no-progress") == 0
    dataset = read_dataset(out)
    assert dataset.name == "project" and json.loads((out / "labels.json").read_text()) == ["no", "yes"]
    files = json.loads((out / "files.json").read_text())
    assert files["form"] == "csv" and files["root"] == str(root.resolve())
    got = {r["file"]: r["label"] for part in ("train", "test") for r in files[part]}
    assert got == dict(rows[:6])
    assert files["skipped"] == [{"file": "recordings/day2/absent.wav", "reason": "file not found"}]


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,label\na.wav,x\n", r"labels\.csv: must have columns 'path' and 'label', missing \['path'\]"),
        ("path,label\na.wav,x\nb.wav,y\na.wav,y\n",
         r"labels\.csv: each path must be listed once, got 1 repeated, e\.g\. 'a\.wav' on lines \[2, 4\]"),
    ],
)
def test_import_csv_bad_table_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(AudioImportError, match=message):
        import_audio(tmp_path / "labels.csv", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- import: bad files and classes


def _write_corrupt_flac(path: Path) -> None:
    soundfile.write(path.with_suffix(".tmp.flac"), tone(440.0, 1.0, 16000), 16000)
    good = path.with_suffix(".tmp.flac").read_bytes()
    path.with_suffix(".tmp.flac").unlink()
    path.write_bytes(good[:200] + np.random.default_rng(0).bytes(4000))  # a FLAC header, then garbage


BAD_FILES = [
    ("corrupt.flac", _write_corrupt_flac, r"cannot decode \(LibsndfileError: "),
    ("empty.wav", lambda path: path.write_bytes(b""), r"empty file \(0 bytes\)"),
    ("notes.wav", lambda path: path.write_text("a text file, not audio\n"), r"cannot decode \(LibsndfileError: .*Format not recognised"),
    ("silent.wav", lambda path: soundfile.write(path, np.zeros(0, np.float32), 16000), r"no audio samples \(0 frames at 16000 Hz\)"),
]


@pytest.mark.parametrize("name, write, reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_import_skips_an_unusable_file_and_lists_its_reason(tmp_path, capsys, name, write, reason):
    audio = make_tone_folder(tmp_path / "audio", {"low": 3, "mid": 3})
    write(audio / "low" / name)
    out = tmp_path / "out"
    assert run_cli("import", "--audio", audio, "--out", out, "--jobs", 1, "--no-progress") == 0
    captured = capsys.readouterr()
    assert "skipped 1 file(s) that could not be used:" in captured.err
    (line,) = [line for line in captured.err.splitlines() if line.startswith(f"  low/{name}: ")]
    assert re.search(reason, line), line
    files = json.loads((out / "files.json").read_text())
    assert [row["file"] for row in files["skipped"]] == [f"low/{name}"]
    meta = read_dataset(out).meta
    assert meta["train_num"] + meta["test_num"] == 6


@pytest.mark.parametrize("name, write, reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_import_strict_stops_at_an_unusable_file(tmp_path, capsys, name, write, reason):
    audio = make_tone_folder(tmp_path / "audio", {"low": 3, "mid": 3})
    write(audio / "low" / name)
    message = rf"low/{name}: {reason}.*\(--strict stops at the first unusable file\)"
    with pytest.raises(AudioImportError, match=message):
        import_audio(audio, tmp_path / "out", strict=True, n_jobs=1, progress=False)
    assert run_cli("import", "--audio", audio, "--out", tmp_path / "out", "--strict", "--jobs", 1, "--no-progress") == 2
    assert f"low/{name}: " in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*"))  # no dataset, no temp folder


def test_import_drops_a_single_file_class_with_a_warning(tmp_path, capsys):
    audio = make_tone_folder(tmp_path / "audio", {"low": 3, "mid": 3, "solo": 1, "high": 1})
    (audio / "high" / "broken.wav").write_text("not audio")  # 2 files, 1 usable: dropped too
    (audio / "ghost").mkdir()
    (audio / "ghost" / "a.wav").write_bytes(b"")  # no usable file at all
    summary = import_audio(audio, tmp_path / "out", n_jobs=1, progress=False)
    assert ("warning: dropped 3 class(es) with fewer than 2 usable files: 'ghost' (0 usable files), "
            "'high' (1 usable file), 'solo' (1 usable file)") in capsys.readouterr().err
    assert summary["dropped_classes"] == {"ghost": 0, "high": 1, "solo": 1}
    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == ["low", "mid"]
    assert read_dataset(tmp_path / "out").meta["class_num"] == 2


def test_import_fewer_than_two_classes_is_an_error(tmp_path, capsys):
    audio = make_tone_folder(tmp_path / "audio", {"low": 4, "solo": 1})
    message = r"audio: at least 2 classes with >= 2 usable files each are needed, got 1 \(5 usable file\(s\) in 2 class\(es\), 0 skipped\)"
    with pytest.raises(AudioImportError, match=message):
        import_audio(audio, tmp_path / "out", n_jobs=1, progress=False)
    assert run_cli("import", "--audio", audio, "--out", tmp_path / "out", "--jobs", 1, "--no-progress") == 2
    assert "error: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    "setup, argv, message",
    [
        (lambda tmp: None, ["--audio", "{tmp}/nowhere"], r"--audio '.*nowhere' not found"),
        (lambda tmp: (tmp / "audio").mkdir(), ["--audio", "{tmp}/audio"], r"audio: no class subfolders with files"),
        (lambda tmp: None, ["--test-fraction", "1"], r"--test-fraction must lie in \(0, 1\), got 1\.0"),
        (lambda tmp: None, ["--name", "bad/name"], r"--name must be letters, digits"),
        (lambda tmp: None, ["--out", "{tmp}/tones"], r"--out '.*tones' must lie outside the input '.*tones'"),
        (lambda tmp: None, ["--out", "{tmp}/tones/low"], r"--out '.*low' must lie outside the input '.*tones'"),
    ],
)
def test_import_bad_arguments_are_clear_errors(tmp_path, capsys, setup, argv, message):
    make_tone_folder(tmp_path / "tones", {"low": 2, "mid": 2})
    setup(tmp_path)
    args = {"--audio": str(tmp_path / "tones"), "--out": str(tmp_path / "out")}
    args.update(zip(argv[::2], (a.format(tmp=tmp_path) for a in argv[1::2])))
    assert run_cli("import", *[x for pair in args.items() for x in pair], "--jobs", 1, "--no-progress") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err


def test_import_refuses_an_existing_out_unless_force(tmp_path):
    audio = make_tone_folder(tmp_path / "tones", {"low": 2, "mid": 2})
    out = tmp_path / "out"
    import_audio(audio, out, n_jobs=1, progress=False)
    with pytest.raises(AudioImportError, match=r"out exists already; pass --force to replace it"):
        import_audio(audio, out, n_jobs=1, progress=False)
    make_tone_folder(audio, {"high": 2})
    summary = import_audio(audio, out, force=True, n_jobs=1, progress=False)
    assert read_dataset(out).meta["class_num"] == 3 == len(summary["classes"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tones"]  # no temp or replaced folders left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(AudioImportError, match=r"notes exists and does not hold an AutoSpeech dataset"):
        import_audio(audio, tmp_path / "notes", force=True, n_jobs=1, progress=False)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_import_killed_midway_leaves_no_dataset_and_the_next_import_cleans_up(tmp_path):
    source = tmp_path / "few"
    for label in ("low", "mid"):
        for index in range(4):
            write_tone(source / f"{label}{index}.wav", PITCH_HZ[label] + index, seconds=6.0, sr=44100, seed=index)
    audio = tmp_path / "many"
    for label in ("low", "mid"):
        (audio / label).mkdir(parents=True)
        for index in range(300):  # 600 files of 6 s at 44.1 kHz: seconds of work, cheap to create
            (audio / label / f"{index:03d}.wav").symlink_to(source / f"{label}{index % 4}.wav")
    out = tmp_path / "data" / "mine"
    command = [sys.executable, "-m", "harness", "import", "--audio", str(audio), "--out", str(out), "--jobs", "1"]
    process = subprocess.Popen(command, cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".mine{TEMP_MARK}*/{MARKER_FILE}")) and process.poll() is None:
        assert time.monotonic() < deadline, "the import never created its temporary folder"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not out.exists()
    (leftover,) = out.parent.iterdir()
    assert leftover.name.startswith(f".mine{TEMP_MARK}{process.pid}-") and (leftover / MARKER_FILE).is_file()
    assert leftover_folders(out) == [leftover]
    with pytest.raises(Exception, match=r"must hold exactly one <name>\.data directory, found 0"):
        resolve_data_dir(out.parent)  # the leftover is not mistaken for a dataset
    summary = import_audio(audio, out, n_jobs=1, progress=False, log=lambda _: None)
    assert summary["train_num"] + summary["test_num"] == 600
    assert [p.name for p in out.parent.iterdir()] == ["mine"]
    read_dataset(out)


# --------------------------------------------------------------------------- predict


def test_predictions_csv_names_the_best_class_and_every_score():
    text = predictions_csv(["a.wav", "x/b.wav"], ["cat", "dog"], np.array([[0.9, 0.1], [0.25, 0.75]])).decode()
    assert text.splitlines() == ["file,predicted,cat,dog", "a.wav,cat,0.9,0.1", "x/b.wav,dog,0.25,0.75"]


def test_predict_folder_without_decodable_audio_is_an_error(tmp_path):
    audio = make_tone_folder(tmp_path / "tones", {"low": 2, "mid": 2})
    import_audio(audio, tmp_path / "dataset", n_jobs=1, progress=False)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "readme.txt").write_text("nothing to hear")
    message = r"--audio '.*new': none of its 1 file\(s\) could be decoded\n.*\n  readme\.txt: cannot decode"
    with pytest.raises(AudioImportError, match=message):
        predict_folder(tmp_path / "dataset", tmp_path / "new", tmp_path / "out", n_jobs=1, progress=False)
    assert not (tmp_path / "out" / "ingestion").exists()


@pytest.mark.slow
def test_predict_labels_a_new_folder_with_class_names(tmp_path, capsys):
    audio = make_tone_folder(tmp_path / "tones", {"low": 8, "mid": 8, "high": 8})
    assert run_cli("import", "--audio", audio, "--out", tmp_path / "dataset", "--jobs", 1, "--no-progress") == 0
    new = tmp_path / "new"
    rng = np.random.default_rng(7)
    truth = {}
    for index in range(9):
        label = ["low", "mid", "high"][index % 3]
        rel = f"batch{index % 2}/clip{index}.{['wav', 'flac', 'ogg'][index % 3]}"
        write_tone(new / rel, PITCH_HZ[label] * rng.uniform(0.95, 1.05), seconds=rng.uniform(0.5, 1.0), sr=44100, seed=100 + index)
        truth[rel] = label
    (new / "batch0" / "broken.wav").write_text("not audio")
    out = tmp_path / "out"
    code = run_cli("predict", "--dataset", tmp_path / "dataset", "--audio", new, "--time-budget", 25,
                   "--out", out, "--code-dir", PROJECT_DIR, "--jobs", 1, "--no-progress")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "  batch0/broken.wav: cannot decode" in captured.err
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == sorted(truth)
    assert list(rows[0]) == ["file", "predicted", "high", "low", "mid"]
    for row in rows:
        scores = {label: float(row[label]) for label in ("high", "low", "mid")}
        assert row["predicted"] == max(scores, key=scores.get)
    right = sum(row["predicted"] == truth[row["file"]] for row in rows)
    assert right >= 7, rows
    summary = json.loads((out / "predict.json").read_text())
    report = json.loads((out / "ingestion" / "ingestion.json").read_text())
    assert summary["prediction"]["index"] == len(report["predictions"]) - 1  # the last prediction saved
    assert summary["train_num"] == 24 and summary["files"] == 9
    assert summary["skipped"] == [{"file": "batch0/broken.wav", "reason": summary["skipped"][0]["reason"]}]
    # nothing scored, and no labels for the new files exist anywhere
    assert not (out / "ingestion" / "result.json").exists() and not list(out.rglob("*.solution"))
    assert sorted(p.name for p in out.iterdir()) == ["ingestion", "predict.json", "predictions.csv"]
    assert "wrote" in captured.out and "predictions.csv: 9 files, 3 classes" in captured.out


@pytest.mark.parametrize("command", ["import", "predict"])
def test_harness_cli_help_of_import_and_predict(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        harness_main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--audio" in capsys.readouterr().out
