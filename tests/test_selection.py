"""Run-time selection: nearest practice datasets vote with their ALCs; any problem falls back to the default."""

from __future__ import annotations

import json
import math
import time

import pytest

from harness.dataset import atomic_write_json
from portfolio.meta_db import SCHEMA_VERSION, new_db
from portfolio.selection import (
    DISTANCE_FEATURES, FEATURE_SETS, MAX_FEATURE_GAP, MetaDbError, SelectionError, choose_plan, choose_plan_or_default,
    load_db,
)

DEFAULT = {"name": "fallback", "steps": [{"member": "linear"}]}
# The hand database's meta-features, on their own scale.
HAND = {"features": {"f1": "linear", "f2": "linear", "flat": "linear"}}


def plan_of(name: str) -> dict:
    return {"name": name, "steps": [{"member": "linear", "params": {"max_s": {"P": 1.0, "Q": 3.0}[name]}}]}


def hand_db() -> dict:
    """Datasets A, B, C (one source each) on two informative features and one constant one."""
    db = new_db()
    db["time_budget"] = 300.0
    db["configs"] = {"idP": {"name": "P", "plan": plan_of("P")}, "idQ": {"name": "Q", "plan": plan_of("Q")}}
    points = {"A": (0.0, 0.0), "B": (10.0, 100.0), "C": (5.0, 50.0)}
    for name, (f1, f2) in points.items():
        db["datasets"][name] = {"source": f"src{name}", "metafeatures": {"f1": f1, "f2": f2, "flat": 7.0}}
    alcs = {("A", "idP"): 0.9, ("A", "idQ"): 0.1, ("B", "idP"): 0.1, ("B", "idQ"): 0.8, ("C", "idP"): 0.5, ("C", "idQ"): 0.4}
    for (dataset, config), alc in alcs.items():
        db["runs"].append({"dataset": dataset, "config_id": config, "time_budget": 300.0, "status": "ok", "alc": alc,
                           "config": db["configs"][config]})
    return db


def test_choose_plan_picks_the_plan_of_the_nearest_dataset():
    plan, info = choose_plan({"f1": 9.0, "f2": 90.0, "flat": 7.0}, hand_db(), k=1, **HAND)
    assert plan == plan_of("Q") and info["config"] == "Q" and info["config_id"] == "idQ"
    assert [n["dataset"] for n in info["neighbours"]] == ["B"]
    # Scaled by the interquartile ranges (5, 50) both features differ by 0.2: RMS 0.2. "flat" does not vary.
    assert info["neighbours"][0]["distance"] == pytest.approx(0.2)
    assert info["features_used"] == 2 and "B" in info["reason"]


def test_choose_plan_weights_neighbours_by_closeness():
    plan, info = choose_plan({"f1": 2.0, "f2": 20.0}, hand_db(), k=3, distance="manhattan", **HAND)
    d = {"A": 0.4, "C": 0.6, "B": 1.6}
    w = {name: 1 / (dist + 0.25) for name, dist in d.items()}  # bounded: at most 4, however near
    expected_p = (w["A"] * 0.9 + w["C"] * 0.5 + w["B"] * 0.1) / sum(w.values())
    # Regret: the gap to the best ALC on each neighbour (A: P 0.9 best, C: P 0.5, B: Q 0.8).
    expected_regret_q = (w["A"] * 0.8 + w["C"] * 0.1 + w["B"] * 0.0) / sum(w.values())
    assert [n["dataset"] for n in info["neighbours"]] == ["A", "C", "B"]
    assert [n["distance"] for n in info["neighbours"]] == pytest.approx([0.4, 0.6, 1.6])
    assert info["scores"]["P"] == pytest.approx(expected_p)
    assert info["regrets"]["Q"] == pytest.approx(expected_regret_q)
    assert plan["name"] == "P"


def test_choose_plan_keeps_the_incumbent_unless_beaten_by_more_than_the_margin():
    near_b = {"f1": 9.0, "f2": 90.0}  # nearest: B, where Q scores 0.8 and P 0.1
    incumbent = plan_of("P") | {"name": "renamed P"}  # plans compare by content
    plan, info = choose_plan(near_b, hand_db(), k=1, incumbent=incumbent, switch_margin=0.69, **HAND)
    assert info["config"] == "Q" and "has the least" in info["reason"]
    plan, info = choose_plan(near_b, hand_db(), k=1, incumbent=incumbent, switch_margin=0.71, **HAND)
    assert info["config"] == "P" and plan == plan_of("P")
    assert "kept as the incumbent (Q leads it by only 0.7000)" in info["reason"]
    _, info = choose_plan(near_b, hand_db(), k=1, incumbent={"steps": [{"member": "cnn"}]}, switch_margin=1, **HAND)
    assert info["config"] == "Q"  # an incumbent never run is no candidate


def test_best_mean_incumbent_is_the_databases_single_best_plan_without_the_excluded_sources():
    near_a = {"f1": 1.0, "f2": 10.0}  # nearest: A, where P scores 0.9 and Q 0.1
    # Mean regret over A, B, C: P (0 + 0.7 + 0) / 3 beats Q (0.8 + 0 + 0.1) / 3, so P is the incumbent.
    _, info = choose_plan(near_a, hand_db(), k=1, incumbent=plan_of("Q"), switch_margin=0.9, **HAND)
    assert info["config"] == "Q" and "kept as the incumbent" in info["reason"]  # the given incumbent holds
    _, info = choose_plan(near_a, hand_db(), k=1, incumbent=plan_of("Q"), switch_margin=0.9,
                          incumbent_rule="best_mean", **HAND)
    assert info["config"] == "P"
    # Without source srcA, Q is best on average (B: 0, C: 0.1 against P's 0.7, 0): Q is kept although the
    # nearest dataset left, C, prefers P by 0.1.
    _, info = choose_plan(near_a, hand_db(), k=1, incumbent=plan_of("P"), switch_margin=0.2, exclude_sources=["srcA"],
                          incumbent_rule="best_mean", **HAND)
    assert info["config"] == "Q" and "kept as the incumbent (P leads it by only 0.1000)" in info["reason"]
    with pytest.raises(SelectionError, match="incumbent_rule must be one of"):
        choose_plan(near_a, hand_db(), incumbent_rule="newest", **HAND)


def test_choose_plan_ignores_missing_and_nan_features():
    _, info = choose_plan({"f1": 9.5, "f2": float("nan"), "unknown": 3.0}, hand_db(), k=1, **HAND)
    assert info["neighbours"][0]["dataset"] == "B" and info["neighbours"][0]["features_used"] == 1


def test_choose_plan_exclude_sources_drops_a_source():
    _, info = choose_plan({"f1": 9.0, "f2": 95.0}, hand_db(), k=3, exclude_sources=("srcB",), **HAND)
    assert [n["dataset"] for n in info["neighbours"]] == ["C", "A"]
    assert all(n["source"] != "srcB" for n in info["neighbours"])


def test_choose_plan_without_shared_features_is_an_error():
    with pytest.raises(SelectionError, match="no meta-feature of this dataset is known"):
        choose_plan({"other": 1.0, "f1": float("nan")}, hand_db(), **HAND)


def test_choose_plan_with_nothing_to_separate_datasets_weighs_them_all_equally():
    _, info = choose_plan({"flat": 3.0}, hand_db(), k=1, **HAND)
    assert [n["dataset"] for n in info["neighbours"]] == ["A", "B", "C"]
    assert info["scores"]["P"] == pytest.approx((0.9 + 0.1 + 0.5) / 3)


def test_choose_plan_is_fast():
    db = hand_db()
    for i in range(9):
        db["datasets"][f"d{i}"] = {"source": f"s{i}", "metafeatures": {f"f{j}": float(i * j) for j in range(25)}}
        for config in ("idP", "idQ"):
            db["runs"].append({"dataset": f"d{i}", "config_id": config, "time_budget": 300.0, "status": "ok", "alc": 0.5})
    start = time.monotonic()
    choose_plan({f"f{j}": 3.0 * j for j in range(25)}, db, features={f"f{j}": "log" for j in range(25)})
    assert time.monotonic() - start < 0.05


def test_load_db_corrupt_or_newer_schema_is_a_clear_error(tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"schema": 1, "runs": [')
    with pytest.raises(MetaDbError, match=r"corrupt\.json: meta-database is not readable JSON"):
        load_db(corrupt)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": SCHEMA_VERSION + 1}))
    with pytest.raises(MetaDbError, match=rf"newer\.json: schema {SCHEMA_VERSION + 1} is newer"):
        load_db(newer)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "meta-database not found"),
        ("{not json", "not readable JSON"),
        (new_db(), "no datasets or no runs"),
        ({**hand_db(), "time_budget": 60.0}, "no dataset of the meta-database has runs at T = 60.0 s"),
        ({"schema": 99}, "schema 99 is newer"),
    ],
)
def test_choose_plan_or_default_falls_back_with_a_reason(tmp_path, caplog, content, reason):
    path = tmp_path / "meta_db.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        atomic_write_json(path, content)
    plan, info = choose_plan_or_default({"f1": 1.0}, path, DEFAULT)
    assert plan is DEFAULT and info["fallback"] is True
    assert reason in info["reason"] and info["reason"].startswith("default plan:")
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "plan selection failed" in r.message]
    assert len(warnings) == 1 and warnings[0].exc_info is not None and reason in str(warnings[0].exc_info[1])


def test_choose_plan_or_default_selects_and_checks_the_plan(tmp_path):
    path = tmp_path / "meta_db.json"
    atomic_write_json(path, hand_db())
    default = plan_of("P")
    plan, info = choose_plan_or_default({"f1": 0.5, "f2": 1.0}, path, default, members={"linear": object}, k=1, **HAND)
    assert plan["name"] == "P" and info["fallback"] is False and math.isfinite(info["elapsed_s"])
    plan, info = choose_plan_or_default({"f1": 0.5, "f2": 1.0}, path, default, members={"cnn": object}, **HAND)
    assert plan is default and "PlanError" in info["reason"]
    # The default plan is the incumbent: near B, Q leads the default (P's plan) by 0.7, far beyond the margin;
    # near C, P leads Q by only 0.1, and a margin of 0.2 keeps Q when Q is the default.
    plan, info = choose_plan_or_default({"f1": 9.0, "f2": 90.0}, path, plan_of("P"), k=1, **HAND)
    assert info["config"] == "Q"
    plan, info = choose_plan_or_default({"f1": 5.0, "f2": 50.0}, path, plan_of("Q"), k=1, switch_margin=0.2, **HAND)
    assert info["config"] == "Q" and "kept as the incumbent" in info["reason"]


def test_edited_default_plan_is_not_replaced_by_the_old_one_stored(caplog):
    db = hand_db()
    for config in db["configs"].values():  # the database's "default" is what P was when it was built
        if config["name"] == "P":
            config["name"] = "default"
    near_a = {"f1": 0.5, "f2": 1.0}  # P's best neighbourhood
    edited = {"name": "default", "steps": [{"member": "linear", "params": {"C": 0.5}}]}
    _, info = choose_plan(near_a, db, k=1, incumbent=edited, **HAND)
    assert info["config"] != "default"
    assert "holds a default plan other than today's" in caplog.text
    _, info = choose_plan(near_a, db, k=1, incumbent=plan_of("P"), **HAND)  # today's default is the stored one
    assert info["config"] == "default"


def test_committed_meta_db_holds_todays_default_plan_on_every_dataset_with_runs():
    """A derived-task build runs `default` first on each dataset, so even one stopped part-way passes."""
    from pathlib import Path

    from portfolio.meta_db import config_id, load_db, runs_at_budget
    from portfolio.plans import default_plan

    db = load_db(Path(__file__).resolve().parents[1] / "meta_db.json")
    _, runs = runs_at_budget(db)
    default_id = config_id(default_plan())
    assert {r["dataset"] for r in runs if r["config_id"] == default_id} == {r["dataset"] for r in runs}


def music_and_speech_db() -> dict:
    """Digits (0.4 s clips), emotions (3 s) and music (30 s, steady level); P wins on digits, Q elsewhere."""
    db = new_db()
    db["time_budget"] = 300.0
    db["configs"] = {"idP": {"name": "P", "plan": plan_of("P")}, "idQ": {"name": "Q", "plan": plan_of("Q")}}
    points = {"digits": (0.4, 8.0), "emotion": (3.0, 7.0), "music": (30.0, 3.0)}
    for name, (duration, level) in points.items():
        db["datasets"][name] = {"source": name, "metafeatures": {"duration_p50_s": duration, "level_db_std": level}}
        for config, alc in (("idP", 0.9 if name == "digits" else 0.5), ("idQ", 0.5 if name == "digits" else 0.9)):
            db["runs"].append({"dataset": name, "config_id": config, "time_budget": 300.0, "status": "ok",
                               "alc": alc, "config": db["configs"][config]})
    return db


def test_durations_compare_on_a_log_scale_so_long_clips_do_not_squeeze_short_ones():
    # On min-max scaled seconds, 0.45 s differs from 0.4 s and 3 s alike (both ~0.1 of 0.4-30 s), and
    # the level feature makes emotions the nearest; on a log scale the digits are.
    _, info = choose_plan({"duration_p50_s": 0.45, "level_db_std": 7.0}, music_and_speech_db(), k=1)
    assert info["neighbours"][0]["dataset"] == "digits" and info["config"] == "P"
    # Only the duration carries this decision: without the level, digits stay nearest; without the duration, not.
    assert info["decisive_features"] == ["duration_p50_s"]


def test_one_feature_far_off_counts_at_most_max_feature_gap():
    db = music_and_speech_db()
    far = {"duration_p50_s": 3.0, "level_db_std": 7.0 + 1000.0}  # emotion's duration, an absurd level
    _, info = choose_plan(far, db, k=3)
    emotion = next(n for n in info["neighbours"] if n["dataset"] == "emotion")
    assert emotion["distance"] == pytest.approx(math.sqrt(MAX_FEATURE_GAP**2 / 2))


def test_the_database_tuned_k_applies_unless_the_caller_gives_one(tmp_path):
    near_c = {"f1": 7.0, "f2": 70.0}  # nearest C (P best there); B, then A, not far behind
    path = tmp_path / "meta_db.json"
    atomic_write_json(path, hand_db())
    assert choose_plan_or_default(near_c, path, DEFAULT, **HAND)[1]["config"] == "Q"  # k = 3: B and A outvote C
    atomic_write_json(path, {**hand_db(), "selection": {"k": 1, "switch_margin": 0.0}})
    assert choose_plan_or_default(near_c, path, DEFAULT, **HAND)[1]["config"] == "P"
    assert choose_plan_or_default(near_c, path, DEFAULT, k=3, **HAND)[1]["config"] == "Q"


def test_shrinkage_pulls_the_vote_towards_each_plans_regret_over_all_datasets():
    near_b = {"f1": 9.0, "f2": 90.0}  # nearest: B (Q best: regret P 0.7, Q 0)
    overall = {"P": (0.0 + 0.7 + 0.0) / 3, "Q": (0.8 + 0.0 + 0.1) / 3}  # over A, B, C
    _, info = choose_plan(near_b, hand_db(), k=1, shrinkage=0.5, **HAND)
    assert info["regrets"]["P"] == pytest.approx(0.5 * 0.7 + 0.5 * overall["P"])
    assert info["regrets"]["Q"] == pytest.approx(0.5 * overall["Q"]) and info["config"] == "Q"
    _, info = choose_plan(near_b, hand_db(), k=1, shrinkage=1.0, **HAND)
    assert info["config"] == "P"  # the neighbours no longer count: the plan of least overall regret
    with pytest.raises(SelectionError, match="shrinkage must be in"):
        choose_plan(near_b, hand_db(), shrinkage=1.5, **HAND)


def test_features_may_name_a_feature_set_and_the_tuned_one_applies_from_the_database(tmp_path):
    assert set(FEATURE_SETS["task"]) < set(FEATURE_SETS["all"]) == set(DISTANCE_FEATURES)
    with pytest.raises(SelectionError, match="one of"):
        choose_plan({"f1": 1.0}, hand_db(), features="no such set")
    near_b = {"f1": 9.0, "f2": 90.0}
    path = tmp_path / "meta_db.json"
    atomic_write_json(path, {**hand_db(), "selection": {"k": 1, "shrinkage": 1.0}})
    assert choose_plan_or_default(near_b, path, DEFAULT, **HAND)[1]["config"] == "P"
    # A named set of the real meta-features: none of them is in the hand database, so selection fails.
    atomic_write_json(path, {**hand_db(), "selection": {"features": "task"}})
    _, info = choose_plan_or_default(near_b, path, DEFAULT)
    assert info["fallback"] and "no meta-feature of this dataset is known" in info["reason"]


def sparse_db() -> dict:
    """hand_db plus an alternative R run on the far dataset B only, where it is best."""
    db = hand_db()
    db["configs"]["idR"] = {"name": "R", "plan": plan_of("Q") | {"name": "R", "ensemble_size": 2}}
    db["runs"].append({"dataset": "B", "config_id": "idR", "time_budget": 300.0, "status": "ok", "alc": 0.95,
                       "config": db["configs"]["idR"]})
    return db


def test_coverage_own_lets_an_alternative_run_on_few_datasets_vote_from_its_own_nearest():
    near_a = {"f1": 1.0, "f2": 10.0}  # nearest A, then C; R was run on B only
    _, info = choose_plan(near_a, sparse_db(), k=1, **HAND)
    assert info["config"] == "P" and "R" not in info["regrets"]
    _, info = choose_plan(near_a, sparse_db(), k=1, coverage="own", **HAND)
    # R's own nearest dataset is B, where it is best (regret 0); P's is A (regret 0 too): the tie goes to P.
    assert info["regrets"]["R"] == pytest.approx(0.0) and info["config"] == "P"
    _, info = choose_plan({"f1": 9.0, "f2": 90.0}, sparse_db(), k=1, coverage="own", **HAND)
    assert info["config"] == "R" and [n["dataset"] for n in info["neighbours"]] == ["B"]
    assert "it was run on" in info["reason"]
    # With k = 2 R has too few datasets to vote on.
    _, info = choose_plan(near_a, sparse_db(), k=2, coverage="own", **HAND)
    assert "R" not in info["regrets"] and set(info["regrets"]) == {"P", "Q"}
    with pytest.raises(SelectionError, match="coverage must be one of"):
        choose_plan(near_a, sparse_db(), coverage="nearest", **HAND)


def test_explain_off_skips_the_decisive_features_but_not_the_choice():
    odd = {"f1": 9.0, "f2": 10.0}  # nearest C (P); by f1 alone B (Q), by f2 alone A (P)
    _, explained = choose_plan(odd, hand_db(), k=1, **HAND)
    _, quiet = choose_plan(odd, hand_db(), k=1, explain=False, **HAND)
    assert quiet["config"] == explained["config"] and quiet["regrets"] == explained["regrets"]
    assert explained["config"] == "P" and explained["decisive_features"] == ["f2"]
    assert quiet["decisive_features"] == []
