"""Replaying plans from round logs: the runtime's ensembles rebuilt offline, and a real plan matched."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.dataset import read_test_solution, write_dataset
from harness.scoring import normalized_auc
from offline_meta.build import build
from offline_meta.configs import load_configs
from offline_meta.replay import (
    ReplayError, compare_replay_with_real, load_trace, replay_alc, replay_curve,
)
from offline_meta.subplans import score_subplans, step_traces
from portfolio.meta_db import load_db
from portfolio.round_log import RoundLog
from tests.conftest import tone_clips

Y_VAL = np.eye(2)[[0, 0, 1, 1]]
Y_TEST = np.eye(2)[[0, 1, 0, 1]]


def write_log(folder, rounds, *, prepare_s=1.0, val_idx=(0, 1, 2, 3)):
    """A round log of (val_score or None for computed, val positive-class column, test positive column, elapsed)."""
    log = RoundLog(folder)
    log.validation("holdout", np.array(val_idx), Y_VAL, np.arange(2), prepare_s)
    for index, (val_p1, test_p1, elapsed_s) in enumerate(rounds):
        val = np.column_stack([1 - np.array(val_p1), val_p1])
        test = np.column_stack([1 - np.array(test_p1), test_p1])
        log.round(f"r{index}", 0, normalized_auc(Y_VAL, val), val, test, elapsed_s)
    return folder


def test_a_later_step_is_ensembled_with_the_earlier_rounds_as_the_runtime_would(tmp_path):
    # A ranks clip 1 above clip 2 wrongly, B ranks clip 0 below clip 3 wrongly; their average ranks all right.
    a = load_trace(write_log(tmp_path / "a", [([0.1, 0.6, 0.5, 0.9], [0.2, 0.5, 0.6, 0.7], 3.0)]), end_s=4.0)
    b = load_trace(write_log(tmp_path / "b", [([0.45, 0.1, 0.3, 0.4], [0.1, 0.9, 0.3, 0.4], 2.5)]), end_s=5.0)
    times, scores = replay_curve([(a, math.inf), (b, math.inf)], Y_TEST, 60.0)
    # B starts when A ends (4 s) and its round comes 2.5 s into its solo run, less the 1 s set-up paid once.
    assert times == pytest.approx([3.0, 4.0 + 1.5])
    a_test, b_test = np.array([0.2, 0.5, 0.6, 0.7]), np.array([0.1, 0.9, 0.3, 0.4])
    expected = [a_test, (a_test + b_test) / 2]  # the greedy ensemble takes both once
    assert normalized_auc(Y_TEST, np.column_stack([1 - a_test, a_test])) < 1.0
    assert scores == pytest.approx([normalized_auc(Y_TEST, np.column_stack([1 - p, p])) for p in expected])
    assert replay_alc([(a, math.inf), (b, math.inf)], Y_TEST, 60.0) > replay_alc([(a, math.inf)], Y_TEST, 60.0)


def test_a_round_that_does_not_beat_the_best_validation_changes_nothing_and_caps_cut_steps(tmp_path):
    good = [0.1, 0.2, 0.8, 0.9]
    a = load_trace(write_log(tmp_path / "a", [(good, [0.2, 0.7, 0.4, 0.6], 1.0), (good, [0.9, 0.1, 0.9, 0.1], 2.0)]),
                   end_s=3.0)
    times, _ = replay_curve([(a, math.inf)], Y_TEST, 60.0)
    assert times == [1.0]  # the equal second round is not delivered
    late = load_trace(write_log(tmp_path / "late", [([0.9, 0.1, 0.2, 0.3], [0.5, 0.5, 0.5, 0.6], 2.0)]), end_s=30.0)
    times, _ = replay_curve([(late, 1.5), (a, math.inf)], Y_TEST, 60.0)
    assert times == [1.5 + 1.0 - 1.0]  # late's round comes after its 1.5 s cap; a starts at 1.5 s


def test_without_validation_every_round_is_delivered_as_the_mean_of_each_steps_latest(tmp_path):
    """One clip per class: the runtime averages each step's latest round, with no vote; the replay must too."""
    def unvalidated_log(folder, rounds):
        log = RoundLog(folder)
        log.validation("none", np.array([], dtype=int), np.zeros((0, 2)), np.arange(2), 1.0)
        for index, (test_p1, elapsed_s) in enumerate(rounds):
            log.round(f"r{index}", 0, math.nan, np.zeros((0, 2)), np.column_stack([1 - np.array(test_p1), test_p1]),
                      elapsed_s)
        return load_trace(folder, end_s=rounds[-1][1] + 1.0)

    a1, a2, b1 = [0.2, 0.5, 0.6, 0.7], [0.9, 0.1, 0.9, 0.1], [0.1, 0.9, 0.3, 0.4]
    a = unvalidated_log(tmp_path / "a", [(a1, 1.0), (a2, 2.0)])
    b = unvalidated_log(tmp_path / "b", [(b1, 1.5)])
    times, scores = replay_curve([(a, math.inf), (b, math.inf)], Y_TEST, 60.0)
    assert times == pytest.approx([1.0, 2.0, 3.0 + 0.5])  # a worse second round is delivered all the same
    expected = [np.array(a1), np.array(a2), (np.array(a2) + np.array(b1)) / 2]
    assert scores == pytest.approx([normalized_auc(Y_TEST, np.column_stack([1 - p, p])) for p in expected])
    assert scores[1] < scores[0]


def test_round_logs_that_do_not_fit_are_refused_by_name(tmp_path):
    a = load_trace(write_log(tmp_path / "a", [([0.1, 0.2, 0.8, 0.9], [0.2, 0.7, 0.4, 0.6], 1.0)]), end_s=2.0)
    other = load_trace(write_log(tmp_path / "other", [([0.1, 0.2, 0.8, 0.9], [0.2, 0.7, 0.4, 0.6], 1.0)],
                                 val_idx=(4, 5, 6, 7)), end_s=2.0)
    with pytest.raises(ReplayError, match="validated on different clips"):
        replay_curve([(a, math.inf), (other, math.inf)], Y_TEST, 60.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayError, match="empty"):
        load_trace(tmp_path / "empty", end_s=1.0)


def test_a_round_log_that_cannot_be_written_turns_itself_off_with_one_warning(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    log = RoundLog(blocked / "rounds")
    log.validation("holdout", np.arange(4), Y_VAL, np.arange(2), 0.5)  # must not raise
    log.round("r0", 0, 0.5, np.full((4, 2), 0.5), np.full((4, 2), 0.5), 1.0)
    assert not log.enabled
    assert [r.message for r in caplog.records if "round log" in r.message][0].startswith(f"round log in {blocked}")
    assert len([r for r in caplog.records if "round log" in r.message]) == 1


@pytest.mark.slow
def test_a_plan_replayed_from_its_steps_solo_runs_delivers_the_real_runs_predictions(tmp_path):
    """The build runs model.py on two linear steps as one plan and each alone: the replay makes the same predictions."""
    rng = np.random.default_rng(0)
    labels = np.resize(np.arange(3), 150)
    noisy = np.where(rng.random(150) < 0.3, rng.integers(0, 3, 150), labels)  # label noise: scores stay below 1
    eye = np.eye(3, dtype=int)
    data_dir = write_dataset(tmp_path / "suite" / "noisy", "noisy", {"time_budget": 60}, tone_clips(labels[:120], rng),
                             eye[noisy[:120]], tone_clips(labels[120:], rng), eye[noisy[120:]])
    # The second step validates better on these clips, so the plan makes two different predictions.
    steps = [{"member": "linear", "params": {"max_s": 1.5, "C": 1.0}, "rounds": 1},
             {"member": "linear", "params": {"max_s": 0.3, "C": 0.01}, "rounds": 1}]
    (tmp_path / "configs.json").write_text(json.dumps([
        {"name": "whole", "plan": {"steps": steps}},
        {"name": "first", "plan": {"steps": steps[:1]}},
        {"name": "second", "plan": {"steps": steps[1:]}},
    ]))
    summary = build(tmp_path / "suite", load_configs(tmp_path / "configs.json"), 60, tmp_path / "db.json",
                    work=tmp_path / "work", progress=False)
    assert summary.recorded == 3 and not summary.failures
    db = load_db(tmp_path / "db.json")
    runs = {r["config_name"]: r for r in db["runs"]}
    traces = [(load_trace(tmp_path / "work" / runs[name]["out_dir"] / "rounds", runs[name]["charged_s"]), math.inf)
              for name in ("first", "second")]
    _, replayed = replay_curve(traces, read_test_solution(data_dir), 60.0)
    real = runs["whole"]["curve"]["score"]
    real_changes = [s for i, s in enumerate(real) if i == 0 or s != real[i - 1]]
    assert len(replayed) == 2 and replayed == pytest.approx(real_changes, abs=1e-6)
    assert max(replayed) < 1.0  # the noisy labels leave room for the ensemble to matter

    [row] = compare_replay_with_real(db, tmp_path / "work", tmp_path / "suite")
    assert row["config"] == "whole" and row["replayed"] > 0 and row["simulated"] is not None

    # The whole plan's own log, cut into steps, replays each step alone as its solo run predicted.
    steps_of_whole = step_traces(load_trace(tmp_path / "work" / runs["whole"]["out_dir"] / "rounds",
                                            runs["whole"]["charged_s"]))
    assert sorted(steps_of_whole) == [0, 1]
    for index, name in enumerate(("first", "second")):
        _, from_whole = replay_curve([(steps_of_whole[index], math.inf)], read_test_solution(data_dir), 60.0)
        solo = runs[name]["curve"]["score"]
        assert from_whole == pytest.approx([s for i, s in enumerate(solo) if i == 0 or s != solo[i - 1]], abs=1e-6)
    rows = {r["config"]: r for r in score_subplans(db, tmp_path / "work", [tmp_path / "suite"], [], parent="whole")}
    assert set(rows) == {"whole", "first", "second"}
    assert rows["whole"]["replayed"] == pytest.approx(rows["whole"]["real"], abs=0.02)
    assert rows["second"]["replayed"] == pytest.approx(rows["second"]["real"], abs=0.02)
