"""Ingestion under faults: every failure ends with a clear report and earlier predictions kept."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from harness.errors import IngestionError
from harness.ingestion import load_predictions, run_ingestion

# A well-behaved model whose round `BAD_ROUND` (0-based) misbehaves as `misbehave()` says.
MODEL_TEMPLATE = """
import os, time
import numpy as np

BAD_ROUND = {bad_round}
TRAIN_S = {train_s}

class Model:
    def __init__(self, metadata):
        self.class_num = metadata["class_num"]
        self.done_training = False
        self.round = 0
        {init_body}

    def train(self, train_dataset, remaining_time_budget=None):
        time.sleep(TRAIN_S)
        if self.round == BAD_ROUND:
            {train_fault}

    def test(self, test_x, remaining_time_budget=None):
        prediction = np.ones((len(test_x), self.class_num)) / self.class_num
        bad = self.round == BAD_ROUND
        self.round += 1
        self.done_training = self.round >= {rounds}
        if bad:
            {test_fault}
        return prediction
"""


def model_source(*, bad_round=99, train_s=0.05, rounds=3, init_body="pass", train_fault="pass", test_fault="pass"):
    return MODEL_TEMPLATE.format(
        bad_round=bad_round, train_s=train_s, rounds=rounds,
        init_body=init_body, train_fault=train_fault, test_fault=test_fault,
    )


def assert_kept_predictions(out_dir, expected_count):
    """The predictions listed in ingestion.json exist on disk, in time order."""
    report, predictions = load_predictions(out_dir)
    assert len(predictions) == expected_count
    times = [t for t, _ in predictions]
    assert times == sorted(times) and all(t > 0 for t in times)
    return report


def test_ingestion_well_behaved_model_runs_to_done(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(rounds=3, train_s=0.2))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "done" and report.error is None
    saved = assert_kept_predictions(tmp_path / "out", 3)
    times = [p["t_s"] for p in saved["predictions"]]
    # Charged time accumulates: three train calls of 0.2 s each.
    assert times[0] == pytest.approx(0.2, abs=0.1)
    assert times[2] == pytest.approx(0.6, abs=0.2)
    assert report.peak_rss_mb > 10


def test_ingestion_crash_in_train_keeps_earlier_predictions(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(bad_round=1, train_fault='raise ValueError("boom in train")'))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "crash"
    assert "during train" in report.error and "ValueError: boom in train" in report.error
    assert_kept_predictions(tmp_path / "out", 1)


def test_ingestion_sleep_past_budget_is_killed_on_time(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(bad_round=1, train_fault="time.sleep(600)"))
    start = time.monotonic()
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=3)
    wall = time.monotonic() - start
    assert report.status == "timeout"
    assert "train call overran the remaining budget" in report.error
    assert report.charged_s == 3
    assert wall < 3 + 15  # budget + child start-up + kill grace; never the 600 s sleep
    assert_kept_predictions(tmp_path / "out", 1)


def test_ingestion_wrong_shape_ends_run_with_clear_message(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(bad_round=1, test_fault="return prediction[:, :1]"))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "bad_prediction"
    assert report.error == "prediction must have shape (12, 3), got (12, 1)"
    assert_kept_predictions(tmp_path / "out", 1)


def test_ingestion_nan_prediction_ends_run(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(bad_round=2, test_fault="prediction[0, 0] = np.nan; return prediction"))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "bad_prediction"
    assert report.error == "prediction must be finite, got 1 non-finite values"
    assert_kept_predictions(tmp_path / "out", 2)


def test_ingestion_never_done_runs_until_budget_with_increasing_timestamps(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(rounds=10**6, train_s=0.3))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=2.5)
    assert report.status == "timeout"
    saved = assert_kept_predictions(tmp_path / "out", len(report.predictions))
    times = [p["t_s"] for p in saved["predictions"]]
    assert 5 <= len(times) <= 8  # 2.5 s / 0.3 s per round
    assert all(t <= 2.5 for t in times)
    assert np.all(np.diff(times) == pytest.approx(0.3, abs=0.1))


def test_ingestion_test_returning_none_stops_cleanly(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(bad_round=1, test_fault="return None"))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "stopped" and report.error == "test returned None"
    assert_kept_predictions(tmp_path / "out", 1)


def test_ingestion_init_is_not_charged_but_limited(tone_dataset, write_model, tmp_path):
    slow_init = write_model(model_source(init_body="time.sleep(1.0)", rounds=1))
    report = run_ingestion(tone_dataset, slow_init, tmp_path / "ok", time_budget=30)
    assert report.status == "done" and report.init_s >= 1.0
    assert report.predictions[0]["t_s"] < 0.5  # the 1 s of __init__ is not in the timestamp

    hanging_init = write_model(model_source(init_body="time.sleep(600)"))
    report = run_ingestion(tone_dataset, hanging_init, tmp_path / "hang", time_budget=30, init_timeout_s=2)
    assert report.status == "init_timeout"
    assert "exceeded 2 s" in report.error


def test_ingestion_hard_exit_of_model_process_is_reported(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(bad_round=1, train_fault="os._exit(3)"))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "crash"
    assert "exit code 3" in report.error
    assert_kept_predictions(tmp_path / "out", 1)


def test_ingestion_report_on_disk_matches_returned_report(tone_dataset, write_model, tmp_path):
    code_dir = write_model(model_source(rounds=2))
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    on_disk = json.loads((tmp_path / "out" / "ingestion.json").read_text())
    assert on_disk["status"] == report.status == "done"
    assert on_disk["predictions"] == report.predictions


def test_ingestion_rejects_code_dir_without_model(tone_dataset, tmp_path):
    with pytest.raises(IngestionError, match="must contain model.py"):
        run_ingestion(tone_dataset, tmp_path, tmp_path / "out", time_budget=5)


def test_ingestion_passes_model_env_and_records_validation_score(tone_dataset, write_model, tmp_path):
    code_dir = write_model(
        model_source(rounds=2, init_body='self.validation_score = float(os.environ["FAKE_VAL"])')
    )
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30, model_env={"FAKE_VAL": "0.25"})
    assert [p["validation_score"] for p in report.predictions] == [0.25, 0.25]


@pytest.mark.parametrize(
    "content, why",
    [('{"status": "done", "predictions": [{"t_s": 1.0, "fi', "not readable JSON"), ('{"status": "done"}', "ingestion report")],
)
def test_load_predictions_names_a_corrupt_ingestion_json(tmp_path, content, why):
    path = tmp_path / "ingestion.json"
    path.write_text(content)
    with pytest.raises(IngestionError, match=why) as raised:
        load_predictions(tmp_path)
    assert str(path) in str(raised.value)


def test_ingestion_model_imports_its_own_copy_of_the_project_packages(tone_dataset, write_model, tmp_path):
    # A code dir from another checkout, with its own `harness` package: the child process that
    # serves the model has imported this checkout's `harness`, and the model must still get its own.
    code_dir = write_model(model_source(
        rounds=1, init_body="import harness; assert harness.MARK == 'theirs', harness.__file__",
    ))
    (code_dir / "harness").mkdir()
    (code_dir / "harness" / "__init__.py").write_text("MARK = 'theirs'\n")
    report = run_ingestion(tone_dataset, code_dir, tmp_path / "out", time_budget=30)
    assert report.status == "done" and report.error is None, report.error
