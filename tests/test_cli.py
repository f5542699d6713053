"""End to end through the command line: synth dataset -> model.py -> ALC + PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.__main__ import main as harness_main
from harness.dataset import read_dataset
from harness.synth import main as synth_main

PROJECT_DIR = Path(__file__).resolve().parents[1]


def test_synth_writes_valid_dataset_with_wide_clip_lengths(tmp_path):
    synth_main(["--out", str(tmp_path), "--train", "40", "--test", "20", "--classes", "4", "--max-s", "31"])
    dataset = read_dataset(tmp_path)
    durations = [len(clip) / 16000 for clip in dataset.x_train + dataset.x_test]
    assert min(durations) < 0.5 and max(durations) > 20
    assert dataset.y_train.sum(axis=0).min() >= 1 and dataset.y_test.sum(axis=0).min() >= 1


def test_harness_run_cli_scores_project_model(tmp_path, capsys):
    synth_main(["--out", str(tmp_path / "data"), "--train", "36", "--test", "18", "--classes", "3", "--max-s", "4"])
    out = tmp_path / "out"
    code = harness_main(
        ["run", "--dataset", str(tmp_path / "data"), "--code-dir", str(PROJECT_DIR), "--time-budget", "20", "--out", str(out)]
    )
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["n_predictions"] >= 1 and result["alc"] > 0.2
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ALC" in capsys.readouterr().out


def test_harness_cli_bad_dataset_is_a_clear_error(tmp_path, capsys):
    code = harness_main(["run", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "error: dataset path must be a directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["score", "--help"]])
def test_harness_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        harness_main(argv)
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
