"""Run-time selection: nearest practice datasets vote with their ALCs; any problem falls back to the default."""

from __future__ import annotations

import json
import math
import time

import pytest

from harness.dataset import atomic_write_json
from portfolio.meta_db import SCHEMA_VERSION, new_db
from portfolio.selection import MetaDbError, SelectionError, choose_plan, choose_plan_or_default, load_db

DEFAULT = {"name": "fallback", "steps": [{"member": "linear"}]}


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
    plan, info = choose_plan({"f1": 9.0, "f2": 90.0, "flat": 7.0}, hand_db(), k=1)
    assert plan == plan_of("Q") and info["config"] == "Q" and info["config_id"] == "idQ"
    assert [n["dataset"] for n in info["neighbours"]] == ["B"]
    # Scaled by the ranges (10, 100) both features differ by 0.1: RMS 0.1. "flat" has zero range.
    assert info["neighbours"][0]["distance"] == pytest.approx(0.1)
    assert info["features_used"] == 2 and "B" in info["reason"]


def test_choose_plan_weights_neighbours_by_closeness():
    plan, info = choose_plan({"f1": 2.0, "f2": 20.0}, hand_db(), k=3, distance="manhattan")
    d = {"A": 0.2, "C": 0.3, "B": 0.8}
    w = {name: 1 / (dist + 1e-6) for name, dist in d.items()}
    expected_p = (w["A"] * 0.9 + w["C"] * 0.5 + w["B"] * 0.1) / sum(w.values())
    assert [n["dataset"] for n in info["neighbours"]] == ["A", "C", "B"]
    assert info["scores"]["P"] == pytest.approx(expected_p)
    assert plan["name"] == "P"


def test_choose_plan_keeps_the_incumbent_unless_beaten_by_more_than_the_margin():
    near_b = {"f1": 9.0, "f2": 90.0}  # nearest: B, where Q scores 0.8 and P 0.1
    incumbent = plan_of("P") | {"name": "renamed P"}  # plans compare by content
    plan, info = choose_plan(near_b, hand_db(), k=1, incumbent=incumbent, switch_margin=0.69)
    assert info["config"] == "Q" and "has the best" in info["reason"]
    plan, info = choose_plan(near_b, hand_db(), k=1, incumbent=incumbent, switch_margin=0.71)
    assert info["config"] == "P" and plan == plan_of("P")
    assert "kept as the incumbent (Q leads it by only 0.7000)" in info["reason"]
    _, info = choose_plan(near_b, hand_db(), k=1, incumbent={"steps": [{"member": "cnn"}]}, switch_margin=1)
    assert info["config"] == "Q"  # an incumbent never run is no candidate


def test_choose_plan_ignores_missing_and_nan_features():
    _, info = choose_plan({"f1": 9.5, "f2": float("nan"), "unknown": 3.0}, hand_db(), k=1)
    assert info["neighbours"][0]["dataset"] == "B" and info["neighbours"][0]["features_used"] == 1


def test_choose_plan_exclude_sources_drops_a_source():
    _, info = choose_plan({"f1": 9.0, "f2": 95.0}, hand_db(), k=3, exclude_sources=("srcB",))
    assert [n["dataset"] for n in info["neighbours"]] == ["C", "A"]
    assert all(n["source"] != "srcB" for n in info["neighbours"])


def test_choose_plan_without_shared_features_is_an_error():
    with pytest.raises(SelectionError, match="no meta-feature of this dataset is known"):
        choose_plan({"other": 1.0, "f1": float("nan")}, hand_db())


def test_choose_plan_with_nothing_to_separate_datasets_weighs_them_all_equally():
    _, info = choose_plan({"flat": 3.0}, hand_db(), k=1)
    assert [n["dataset"] for n in info["neighbours"]] == ["A", "B", "C"]
    assert info["scores"]["P"] == pytest.approx((0.9 + 0.1 + 0.5) / 3)


def test_choose_plan_is_fast():
    db = hand_db()
    for i in range(9):
        db["datasets"][f"d{i}"] = {"source": f"s{i}", "metafeatures": {f"f{j}": float(i * j) for j in range(25)}}
        for config in ("idP", "idQ"):
            db["runs"].append({"dataset": f"d{i}", "config_id": config, "time_budget": 300.0, "status": "ok", "alc": 0.5})
    start = time.monotonic()
    choose_plan({f"f{j}": 3.0 * j for j in range(25)}, db)
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
    plan, info = choose_plan_or_default({"f1": 0.5, "f2": 1.0}, path, default, members={"linear": object}, k=1)
    assert plan["name"] == "P" and info["fallback"] is False and math.isfinite(info["elapsed_s"])
    plan, info = choose_plan_or_default({"f1": 0.5, "f2": 1.0}, path, default, members={"cnn": object})
    assert plan is default and "PlanError" in info["reason"]
    # The default plan is the incumbent: near B, Q leads the default (P's plan) by 0.7, far beyond the margin;
    # near C, P leads Q by only 0.1, and a margin of 0.2 keeps Q when Q is the default.
    plan, info = choose_plan_or_default({"f1": 9.0, "f2": 90.0}, path, plan_of("P"), k=1)
    assert info["config"] == "Q"
    plan, info = choose_plan_or_default({"f1": 5.0, "f2": 50.0}, path, plan_of("Q"), k=1, switch_margin=0.2)
    assert info["config"] == "Q" and "kept as the incumbent" in info["reason"]


def test_edited_default_plan_is_not_replaced_by_the_old_one_stored(caplog):
    db = hand_db()
    for config in db["configs"].values():  # the database's "default" is what P was when it was built
        if config["name"] == "P":
            config["name"] = "default"
    near_a = {"f1": 0.5, "f2": 1.0}  # P's best neighbourhood
    edited = {"name": "default", "steps": [{"member": "linear", "params": {"C": 0.5}}]}
    _, info = choose_plan(near_a, db, k=1, incumbent=edited)
    assert info["config"] != "default"
    assert "holds a default plan other than today's" in caplog.text
    _, info = choose_plan(near_a, db, k=1, incumbent=plan_of("P"))  # today's default is the stored one
    assert info["config"] == "default"


def test_committed_meta_db_holds_todays_default_plan_on_every_dataset():
    from pathlib import Path

    from portfolio.meta_db import config_id, load_db, runs_at_budget
    from portfolio.plans import default_plan

    db = load_db(Path(__file__).resolve().parents[1] / "meta_db.json")
    _, runs = runs_at_budget(db)
    default_id = config_id(default_plan())
    assert {r["dataset"] for r in runs if r["config_id"] == default_id} == set(db["datasets"])
