"""Alternatives replayed from one logged run of a parent plan (offline_meta/subplans.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.dataset import write_dataset
from harness.scoring import normalized_auc
from offline_meta.__main__ import main
from offline_meta.configs import ConfigError, load_configs
from offline_meta.replay import load_trace, replay_curve
from offline_meta.subplans import _first_rounds, replay_subplan, score_subplans, step_traces, subplan_positions, with_replayed_runs
from portfolio.meta_db import config_id, load_db, new_db
from portfolio.round_log import RoundLog
from tests.conftest import tone_clips

Y_VAL = np.eye(2)[[0, 0, 1, 1]]
Y_TEST = np.eye(2)[[0, 1, 0, 1]]
STEPS = [{"member": "linear", "params": {"max_s": s}, "rounds": 1} for s in (1.0, 3.0, 10.0, 30.0)]
PARENT = {"name": "parent", "pool_size": 4, "steps": STEPS}
# (step index, validation positive column, test positive column, charged time): step 2 delivered nothing.
PARENT_ROUNDS = [
    (0, [0.4, 0.6, 0.5, 0.7], [0.4, 0.6, 0.5, 0.5], 2.0),
    (1, [0.1, 0.2, 0.8, 0.9], [0.2, 0.7, 0.4, 0.6], 5.0),
    (1, [0.1, 0.3, 0.7, 0.9], [0.2, 0.7, 0.3, 0.8], 8.0),
    (3, [0.3, 0.1, 0.9, 0.6], [0.1, 0.9, 0.2, 0.9], 10.0),
]


def write_parent_log(folder, prepare_s=1.0):
    log = RoundLog(folder)
    log.validation("holdout", np.arange(4), Y_VAL, np.arange(2), prepare_s)
    for index, (step, val_p1, test_p1, elapsed_s) in enumerate(PARENT_ROUNDS):
        val = np.column_stack([1 - np.array(val_p1), val_p1])
        test = np.column_stack([1 - np.array(test_p1), test_p1])
        log.round(f"step{step}#{index}", step, normalized_auc(Y_VAL, val), val, test, elapsed_s)
    return folder


def test_steps_are_timed_from_where_they_started_in_the_parent_run(tmp_path):
    steps = step_traces(load_trace(write_parent_log(tmp_path / "log"), end_s=12.0))
    assert sorted(steps) == [0, 1, 3]  # step 2 delivered no round
    # Step 0 keeps the run's times (set-up included); later steps start after the step before them
    # (step 1 at 2 s, step 3 at 8 s) and, as a solo run would, begin with the 1 s set-up.
    assert steps[0].elapsed_s == (2.0,) and steps[0].end_s == 2.0
    assert steps[1].elapsed_s == pytest.approx((4.0, 7.0)) and steps[1].end_s == pytest.approx(7.0)
    assert steps[3].elapsed_s == pytest.approx((3.0,))
    assert [r.step_index for r in steps[1].rounds] == [1, 1]


def test_the_parents_own_order_replays_its_run_and_a_dropped_step_brings_the_next_forward(tmp_path):
    trace = load_trace(write_parent_log(tmp_path / "log"), end_s=12.0)
    steps = step_traces(trace)
    whole_times, whole_scores = replay_curve([(trace, math.inf)], Y_TEST, 60.0)
    cut_times, cut_scores = replay_curve([(steps[i], math.inf) for i in (0, 1, 3)], Y_TEST, 60.0)
    assert cut_times == pytest.approx(whole_times) and cut_scores == pytest.approx(whole_scores)
    times, _ = replay_curve([(steps[0], math.inf), (steps[3], math.inf)], Y_TEST, 60.0)
    assert times == pytest.approx([2.0, 2.0 + 2.0])  # step 3 took 2 s after step 1 ended; now it starts at 2 s
    # A plan that starts with a later step pays the set-up once, at its start.
    first_times, _ = replay_curve([(steps[3], math.inf)], Y_TEST, 60.0)
    assert first_times == pytest.approx([3.0])
    assert replay_subplan(steps, [(2, None)], PARENT, Y_TEST, 60.0) == 0.0  # a step with no round adds nothing


def test_subplan_positions_need_the_parents_steps_and_validation():
    assert subplan_positions({**PARENT, "steps": [STEPS[3], STEPS[0]]}, PARENT) == [(3, None), (0, None)]
    assert subplan_positions({**PARENT, "steps": [STEPS[0], {**STEPS[1], "rounds": 2}]}, PARENT) is None  # more rounds
    # The ensemble's settings may differ (the replay applies them); the validation split may not.
    assert subplan_positions({**PARENT, "pool_size": 8, "pool_per_step": 1, "steps": STEPS[:1]}, PARENT) == [(0, None)]
    assert subplan_positions({**PARENT, "validation": {"fraction": 0.3}, "steps": STEPS[:1]}, PARENT) is None
    assert subplan_positions({**PARENT, "name": "renamed"}, PARENT) == [(0, None), (1, None), (2, None), (3, None)]


def test_a_step_given_fewer_rounds_replays_the_parents_first_rounds(tmp_path):
    parent = {**PARENT, "steps": [STEPS[0], {**STEPS[1], "rounds": 2}, STEPS[2], STEPS[3]]}
    shorter = {**parent, "steps": [STEPS[0], {**STEPS[1], "rounds": 1}, STEPS[3]]}
    assert subplan_positions(shorter, parent) == [(0, None), (1, 1), (3, None)]
    steps = step_traces(load_trace(write_parent_log(tmp_path / "log"), end_s=12.0))
    # Step 1 delivered at 4 s and 7 s of its solo time: one round ends it at 4 s, so the next step starts sooner.
    cut = _first_rounds(steps[1], 1)
    assert cut.elapsed_s == (4.0,) and cut.end_s == 4.0 and len(cut.rounds) == 1
    assert _first_rounds(steps[1], 5) is steps[1] and _first_rounds(steps[1], None) is steps[1]


def test_step_order_in_a_configurations_file_picks_and_orders_the_plan_files_steps(tmp_path):
    (tmp_path / "parent.json").write_text(json.dumps(PARENT))
    (tmp_path / "configs.json").write_text(json.dumps([{"name": "late_first", "plan_file": "parent.json",
                                                        "step_order": [3, 0]}]))
    [config] = load_configs(tmp_path / "configs.json")
    assert config["plan"]["steps"] == [STEPS[3], STEPS[0]] and config["plan"]["pool_size"] == 4
    for order in ([0, 0], [4], [], ["1"], [True]):
        (tmp_path / "bad.json").write_text(json.dumps([{"name": "bad", "plan_file": "parent.json", "step_order": order}]))
        with pytest.raises(ConfigError, match="'bad': step_order must list distinct positions 0-3"):
            load_configs(tmp_path / "bad.json")



def test_step_rounds_in_a_configurations_file_give_steps_fewer_rounds(tmp_path):
    (tmp_path / "parent.json").write_text(json.dumps(PARENT))
    (tmp_path / "configs.json").write_text(json.dumps([{"name": "brief", "plan_file": "parent.json",
                                                        "step_order": [3, 1], "step_rounds": {"1": 2}}]))
    [config] = load_configs(tmp_path / "configs.json")
    assert config["plan"]["steps"] == [STEPS[3], {**STEPS[1], "rounds": 2}]
    for rounds in ({"4": 1}, {"1": 0}, {"1": True}, {}, [1]):
        (tmp_path / "bad.json").write_text(json.dumps([{"name": "bad", "plan_file": "parent.json", "step_rounds": rounds}]))
        with pytest.raises(ConfigError, match="'bad': step_rounds must map positions 0-3"):
            load_configs(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"name": "bad", "plan_file": "parent.json", "each_step": True,
                                                    "step_rounds": {"1": 2}}]))
    with pytest.raises(ConfigError, match="step_rounds goes with plan_file alone or with step_order"):
        load_configs(tmp_path / "bad.json")


def test_step_params_in_a_configurations_file_merge_into_those_steps_params(tmp_path):
    (tmp_path / "parent.json").write_text(json.dumps(PARENT))
    (tmp_path / "configs.json").write_text(json.dumps([{"name": "edited", "plan_file": "parent.json",
                                                        "step_params": {"0": {"C": 0.5}}}]))
    [config] = load_configs(tmp_path / "configs.json")
    first = config["plan"]["steps"][0]
    assert first["params"] == {**STEPS[0].get("params", {}), "C": 0.5} and config["plan"]["steps"][1:] == STEPS[1:]
    for params in ({"4": {"C": 1.0}}, {"0": {}}, {"0": 1.0}, {}):
        (tmp_path / "bad.json").write_text(json.dumps([{"name": "bad", "plan_file": "parent.json", "step_params": params}]))
        with pytest.raises(ConfigError, match="'bad': step_params must map positions 0-3"):
            load_configs(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"name": "bad", "plan_file": "parent.json",
                                                    "step_params": {"0": {"C": -1.0}}}]))
    with pytest.raises(ConfigError, match="C must be"):
        load_configs(tmp_path / "bad.json")


def test_settings_in_a_configurations_file_replace_plan_wide_keys_and_still_replay_as_a_subplan(tmp_path):
    (tmp_path / "parent.json").write_text(json.dumps(PARENT))
    (tmp_path / "configs.json").write_text(json.dumps([{"name": "capped", "plan_file": "parent.json",
                                                        "step_order": [3, 0], "settings": {"pool_per_step": 1}}]))
    [config] = load_configs(tmp_path / "configs.json")
    assert config["plan"] == {**PARENT, "name": "capped", "pool_per_step": 1, "steps": [STEPS[3], STEPS[0]]}
    assert subplan_positions(config["plan"], PARENT) == [(3, None), (0, None)]
    for settings in ({"steps": []}, {}, [1], {"pool_per_step": 0}):
        (tmp_path / "bad.json").write_text(json.dumps([{"name": "bad", "plan_file": "parent.json", "settings": settings}]))
        with pytest.raises(ConfigError, match="'bad'"):
            load_configs(tmp_path / "bad.json")

def logged_db(tmp_path):
    """A database with one logged parent run on a suite task, and a real run of one alternative."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 4)
    write_dataset(tmp_path / "suite" / "task", "task", {"time_budget": 60}, tone_clips(labels, rng),
                  np.eye(2, dtype=int)[labels], tone_clips(np.argmax(Y_TEST, axis=1), rng), Y_TEST.astype(int))
    write_parent_log(tmp_path / "work" / "runs" / "parent" / "rounds")
    db = new_db()
    db["time_budget"] = 60.0
    db["datasets"] = {"task": {"source": "src", "metafeatures": {}}}
    alternative = {"name": "late_first", "pool_size": 4, "steps": [STEPS[3], STEPS[0]]}
    db["configs"] = {config_id(PARENT): {"name": "parent", "plan": PARENT},
                     config_id(alternative): {"name": "late_first", "plan": alternative}}
    run = {"dataset": "task", "source": "src", "time_budget": 60.0, "status": "ok", "charged_s": 12.0}
    db["runs"] = [{**run, "config_id": config_id(PARENT), "alc": 0.5, "out_dir": "runs/parent"},
                  {**run, "config_id": config_id(alternative), "alc": 0.4, "out_dir": "runs/late"}]
    return db


def test_score_subplans_replays_every_alternative_of_the_parents_steps_and_keeps_real_alcs(tmp_path):
    db = logged_db(tmp_path)
    only_one = {"name": "only_one", "pool_size": 4, "steps": [STEPS[1], STEPS[0]]}
    foreign = {"name": "foreign", "pool_size": 4, "steps": [{**STEPS[0], "rounds": 3}]}
    alternatives = [{"name": p["name"], "config_id": config_id(p), "plan": p} for p in (only_one, foreign)]
    rows = {r["config"]: r for r in score_subplans(db, tmp_path / "work", [tmp_path / "suite"], alternatives,
                                                   parent="parent")}
    assert set(rows) == {"parent", "late_first", "only_one"}  # the foreign step is no parent step
    assert rows["late_first"]["real"] == 0.4 and rows["only_one"]["real"] is None
    assert all(0 < r["replayed"] <= 1 for r in rows.values())

    augmented = with_replayed_runs(db, list(rows.values()), 60.0)
    added = augmented["runs"][len(db["runs"]):]
    assert [(r["config_name"], r["alc"], r["replayed_from"]) for r in added] == [
        ("only_one", rows["only_one"]["replayed"], config_id(PARENT))]  # real runs are never replaced
    assert augmented["configs"][config_id(only_one)]["plan"] == only_one and len(db["runs"]) == 2
    db["datasets"]["unlogged"] = {"source": "other", "metafeatures": {}}
    db["runs"].append({**db["runs"][0], "dataset": "unlogged", "source": "other"})
    assert set(with_replayed_runs(db, list(rows.values()), 60.0)["datasets"]) == {"task", "unlogged"}
    # A task with no validation replays nothing but its empty steps (0 ALC, one step each): not kept.
    empty_step = {"dataset": "unlogged", "config": "parent/2", "plan": {"steps": [STEPS[2]]}, "replayed": 0.0,
                  "real": None}
    narrowed = with_replayed_runs(db, [*rows.values(), empty_step], 60.0, replayed_only=True)
    assert set(narrowed["datasets"]) == {"task"} and {r["dataset"] for r in narrowed["runs"]} == {"task"}


def test_subplans_command_prints_errors_against_real_runs_and_writes_the_augmented_db(tmp_path, capsys):
    db_path = tmp_path / "db.json"
    db_path.write_text(json.dumps(logged_db(tmp_path)))
    out = tmp_path / "augmented.json"
    code = main(["subplans", "--db", str(db_path), "--work", str(tmp_path / "work"), "--suite", str(tmp_path / "suite"),
                 "--parent", "parent", "--write-db", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "late_first: replayed - real over 1 datasets" in printed
    assert f"{out}: 1 datasets, 0 replayed runs added" in printed  # the database's own alternative was run for real
    assert len(load_db(out)["runs"]) == 2


def test_replays_written_before_are_kept_for_datasets_without_a_round_log_here(tmp_path):
    """Round logs stay on the machine that ran them; a replayed database written there carries them on."""
    db = logged_db(tmp_path)
    only_one = {"name": "only_one", "pool_size": 4, "steps": [STEPS[1], STEPS[0]]}
    alternatives = [{"name": "only_one", "config_id": config_id(only_one), "plan": only_one}]
    rows = score_subplans(db, tmp_path / "work", [tmp_path / "suite"], alternatives, parent="parent")
    earlier = with_replayed_runs(db, rows, 60.0, replayed_only=True, parent="parent")
    replayed = [r for r in earlier["runs"] if "replayed_from" in r]
    assert [r["config_name"] for r in replayed] == ["only_one"]

    # Elsewhere: the same database plus a new logged-less task, and no round log at all.
    db["datasets"]["new"] = {"source": "other", "metafeatures": {}}
    db["runs"].append({**db["runs"][0], "dataset": "new", "source": "other"})
    carried = with_replayed_runs(db, [], 60.0, replayed_only=True, earlier=earlier, parent="parent")
    assert set(carried["datasets"]) == {"task"}
    assert [r for r in carried["runs"] if "replayed_from" in r] == replayed
    assert carried["configs"][config_id(only_one)]["plan"] == only_one
    # Replays from another parent configuration (the plan was edited since) are stale: dropped.
    assert not any("replayed_from" in r for r in with_replayed_runs(db, [], 60.0, earlier=earlier, parent="late_first")["runs"])
    # A cell that has a real run now keeps the real run only.
    db["runs"].append({**db["runs"][0], "config_id": config_id(only_one), "alc": 0.3})
    assert not any("replayed_from" in r for r in with_replayed_runs(db, [], 60.0, earlier=earlier, parent="parent")["runs"])
