"""Leave-one-dataset-out: the held-out source never leaks, and every method row equals its hand-computed value."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from harness.__main__ import main as harness_main
from harness.dataset import atomic_write_json
from harness import lodo
from harness.lodo import evaluate_task, load_lodo_db, model_log_choice
from portfolio.meta_db import config_id, held_out_db, new_db
from tests.conftest import make_tone_dataset

T = 5.0
SOURCES = {"a1": "srcA", "a2": "srcA", "b": "srcB", "c": "srcC"}
N_CLASSES = {"a1": 3, "a2": 3, "b": 4, "c": 6}
LINEAR = {"member": "linear", "params": {"max_s": 0.25, "n_mels": 16, "n_mfcc": 8}, "rounds": 1}
PLANS = {
    "linear_only": [LINEAR],
    "linear-fast": [{**LINEAR, "params": {**LINEAR["params"], "max_s": 0.1}}],
    "P": [LINEAR, {**LINEAR, "params": {**LINEAR["params"], "max_s": 0.5}}],
    "Q": [LINEAR, {**LINEAR, "params": {**LINEAR["params"], "C": 0.01}}],
    "linear-then-cnn": [LINEAR, {"member": "cnn", "params": {"max_s": 0.25}, "rounds": 1}],
}
# ALC per dataset and config; linear-then-cnn was not run on c.
ALC = {
    "a1": {"linear_only": 0.5, "linear-fast": 0.4, "P": 0.9, "Q": 0.2, "linear-then-cnn": 0.7},
    "a2": {"linear_only": 0.6, "linear-fast": 0.1, "P": 1.0, "Q": 0.0, "linear-then-cnn": 0.4},
    "b": {"linear_only": 0.4, "linear-fast": 0.45, "P": 0.5, "Q": 0.7, "linear-then-cnn": 0.2},
    "c": {"linear_only": 0.3, "linear-fast": 0.35, "P": 0.2, "Q": 0.6},
}


def cid(name: str) -> str:
    return config_id({"steps": PLANS[name]})


def hand_db() -> dict:
    """Four datasets of three sources (a1 and a2 share srcA), told apart by their class count."""
    db = new_db()
    db["time_budget"] = T
    for name, steps in PLANS.items():
        db["configs"][cid(name)] = {"name": name, "plan": {"name": name, "steps": steps}}
    for dataset, source in SOURCES.items():
        db["datasets"][dataset] = {"source": source, "metafeatures": {"n_classes": float(N_CLASSES[dataset])}}
        for name, alc in ALC[dataset].items():
            db["runs"].append({
                "dataset": dataset, "source": source, "config_id": cid(name), "config_name": name,
                "config": db["configs"][cid(name)], "time_budget": T, "status": "ok", "alc": alc,
                "final_score": alc + 0.05, "first_prediction_s": 1.0,
            })
    return db


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(suite root, database path): one tiny tone dataset per task, meta.json naming its source."""
    root = tmp_path_factory.mktemp("lodo")
    for seed, (task, source) in enumerate(SOURCES.items()):
        make_tone_dataset(root / "suite" / task, n_classes=N_CLASSES[task], n_train=24, n_test=12, seed=seed,
                          source=source)
    atomic_write_json(root / "db.json", hand_db())
    return root / "suite", root / "db.json"


def read_rows(out) -> dict[tuple[str, str], dict]:
    with open(out / "lodo.csv", newline="") as handle:
        return {(r["task"], r["method"]): r for r in csv.DictReader(handle)}


def alc_of(rows, task: str, method: str) -> float | None:
    value = rows[(task, method)]["alc"]
    return float(value) if value else None


def test_held_out_db_drops_every_dataset_and_run_of_the_source():
    held = held_out_db(hand_db(), "srcA", 60.0)
    assert sorted(held["datasets"]) == ["b", "c"] and held["time_budget"] == 60.0
    assert {r["dataset"] for r in held["runs"]} == {"b", "c"}
    assert held["configs"] == hand_db()["configs"]


def test_evaluate_task_neighbours_never_come_from_the_held_out_source(setup, tmp_path):
    suite, db_path = setup
    db = load_lodo_db(db_path)
    for task in SOURCES:
        _, selection = evaluate_task(task, db, suite, tmp_path, time_budget=T, simulate=True, k=3, random_seeds=3,
                                     force=False, log=lambda _: None)
        assert selection["neighbours"] and all(n["source"] != SOURCES[task] for n in selection["neighbours"])
        written = json.loads((tmp_path / task / "meta_db.heldout.json").read_text())
        assert all(entry["source"] != SOURCES[task] for entry in written["datasets"].values())
        assert all(r["source"] != SOURCES[task] for r in written["runs"])
    # a1's nearest remaining dataset is b: log10(4 / 3) over the interquartile range of log10(4), log10(6).
    _, selection = evaluate_task("a1", db, suite, tmp_path, time_budget=T, simulate=True, k=1, random_seeds=3,
                                 force=False, log=lambda _: None)
    assert [(n["dataset"], n["distance"]) for n in selection["neighbours"]] == [("b", pytest.approx(math.log10(4 / 3) / (0.5 * math.log10(6 / 4))))]


def test_lodo_simulate_rows_equal_the_hand_computed_values(setup, tmp_path, capsys):
    suite, db_path = setup
    out = tmp_path / "lodo"
    argv = ["lodo", "--db", str(db_path), "--suite", str(suite), "--time-budget", str(T), "--out", str(out),
            "--simulate", "--k", "1", "--random-seeds", "3"]
    assert harness_main(argv) == 0
    rows = read_rows(out)

    # Without srcA, Q has the best mean over b and c (0.65); with a2 leaking in, P would (0.567).
    assert rows[("a1", "single best fixed")]["config"] == "Q" and alc_of(rows, "a1", "single best fixed") == 0.2
    assert rows[("c", "single best fixed")]["config"] == "P" and alc_of(rows, "c", "single best fixed") == 0.2
    # linear-then-cnn is missing on c, so it cannot be the single best for b even where it is run.
    assert rows[("b", "single best fixed")]["config"] == "P" and alc_of(rows, "b", "single best fixed") == 0.5
    # k = 1: a1 and c both have b as nearest neighbour, whose best is Q.
    assert rows[("a1", "meta-selected")]["config"] == "Q" and alc_of(rows, "a1", "meta-selected") == 0.2
    assert rows[("c", "meta-selected")]["config"] == "Q" and alc_of(rows, "c", "meta-selected") == 0.6
    assert float(rows[("c", "meta-selected")]["final_score"]) == pytest.approx(0.65)

    for task, best in (("a1", 0.9), ("a2", 1.0), ("b", 0.7), ("c", 0.6)):
        assert alc_of(rows, task, "oracle") == best
    # Linear alone: linear_only or linear-fast, never P (not so named) or linear-then-cnn (a CNN step).
    for task, (name, alc) in {"a1": ("linear_only", 0.5), "b": ("linear-fast", 0.45), "c": ("linear-fast", 0.35)}.items():
        assert rows[(task, "linear alone")]["config"] == name and alc_of(rows, task, "linear alone") == alc
    pool = sorted(cid(name) for name in ALC["c"] if len(PLANS[name]) > 1)  # whole plans only: P and Q
    names = {cid(name): name for name in ALC["c"]}
    expected = sum(ALC["c"][names[random.Random(seed).choice(pool)]] for seed in range(3)) / 3
    assert alc_of(rows, "c", "random") == pytest.approx(expected)

    # Per task, methods ranked by ALC; the mean rows summarize them.
    assert float(rows[("c", "oracle")]["rank"]) == 1.5 and float(rows[("c", "meta-selected")]["rank"]) == 1.5
    assert float(rows[("c", "single best fixed")]["gap_to_oracle"]) == pytest.approx(0.4)
    meta_alcs = [alc_of(rows, task, "meta-selected") for task in SOURCES]
    assert float(rows[("mean", "meta-selected")]["alc"]) == pytest.approx(sum(meta_alcs) / 4)
    markdown = (out / "lodo.md").read_text()
    assert markdown.startswith("# Leave-one-dataset-out evaluation\n\n- command: `python -m harness lodo --db ")
    assert "- a1 (source srcA held out): b (srcB, d = 1.4190); chose Q" in markdown
    assert "| mean gap to oracle |" in markdown and "recorded (simulated)" in markdown
    assert (out / "lodo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lodo_simulate_leaves_out_suite_tasks_without_recorded_runs(setup, tmp_path):
    suite, db_path = setup
    db = hand_db()
    db["runs"] = [r for r in db["runs"] if r["dataset"] != "b"]  # b: meta-features only, like a task not built yet
    atomic_write_json(tmp_path / "db.json", db)
    out = tmp_path / "lodo"
    assert harness_main(["lodo", "--db", str(tmp_path / "db.json"), "--suite", str(suite), "--time-budget", str(T),
                         "--out", str(out), "--simulate", "--k", "1"]) == 0
    assert {task for task, _ in read_rows(out) if task != "mean"} == {"a1", "a2", "c"}


def test_lodo_linear_alone_is_blank_with_a_note_when_no_config_qualifies(setup, tmp_path):
    suite, _ = setup
    db = hand_db()
    db["runs"] = [r for r in db["runs"] if r["config_name"] not in ("linear_only", "linear-fast")]
    atomic_write_json(tmp_path / "db.json", db)
    out = tmp_path / "lodo"
    assert harness_main(["lodo", "--db", str(tmp_path / "db.json"), "--suite", str(suite), "--out", str(out),
                         "--simulate", "--tasks", "a1"]) == 0
    row = read_rows(out)[("a1", "linear alone")]
    assert row["alc"] == "" and row["status"] == "blank" and "no linear-only configuration" in row["note"]


def one_source_db() -> dict:
    db = hand_db()
    for entry in db["datasets"].values():
        entry["source"] = "same"
    return db


@pytest.mark.parametrize(
    ("db_content", "extra", "message"),
    [
        (None, [], "meta-database not found"),
        ("{corrupt", [], "not readable JSON"),
        (one_source_db(), [], "needs datasets of at least 2 sources, got 1"),
        (hand_db(), ["--tasks", "zz"], "tasks must be in both the database and the suite"),
        ({**hand_db(), "datasets": {"x": {"source": "s1"}, "y": {"source": "s2"}}}, [], "holds none of the database's tasks"),
        (hand_db(), ["--time-budget", "300"], "holds no runs at T = 300 s"),
        (hand_db(), ["--k", "1"], "k must be 3 without --simulate"),
    ],
)
def test_lodo_bad_input_is_a_clear_error(setup, tmp_path, capsys, db_content, extra, message):
    suite, _ = setup
    path = tmp_path / "db.json"
    if isinstance(db_content, str):
        path.write_text(db_content)
    elif db_content is not None:
        atomic_write_json(path, db_content)
    assert harness_main(["lodo", "--db", str(path), "--suite", str(suite), "--out", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_model_log_choice_reads_the_last_plan_line(tmp_path):
    log = tmp_path / "model.log"
    log.write_text(
        "2026-11-28 10:00:00,000 INFO autospeech.selection: plan selection: x (0.001 s)\n"
        "2026-11-28 10:00:00,001 INFO autospeech: plan old: first run (neighbours [])\n"
        "2026-11-28 10:05:00,001 INFO autospeech: plan P: P has the best (0.7) over ['b'] (neighbours [{'d': 1}])\n"
    )
    assert model_log_choice(log) == ("P", "P has the best (0.7) over ['b']")
    assert model_log_choice(tmp_path / "missing.log") is None


@pytest.mark.slow
def test_lodo_real_run_gives_model_py_the_held_out_db(setup, tmp_path, capsys):
    suite, db_path = setup
    out = tmp_path / "lodo"
    argv = ["lodo", "--db", str(db_path), "--suite", str(suite), "--time-budget", str(T), "--out", str(out),
            "--tasks", "c"]
    assert harness_main(argv) == 0
    log = (out / "c" / "meta_selected" / "model.log").read_text()
    # k = 3 over a1, a2, b: P's regret is least (0 on a1 and a2, 0.2 on b; Q's 0.7, 1.0, 0).
    assert "autospeech: plan P: P has the least closeness-weighted regret" in log and "'dataset': 'c'" not in log
    assert json.loads((out / "c" / "meta_selected" / "ingestion.json").read_text())["status"] == "done"
    rows = read_rows(out)
    assert rows[("c", "meta-selected")]["config"] == "P" and rows[("c", "meta-selected")]["how"] == "run"
    assert rows[("c", "meta-selected")]["note"] == ""  # model.py and the in-process selection agree
    assert 0.0 < alc_of(rows, "c", "meta-selected") <= 1.0
    # The single best fixed plan is P as well (mean 0.8 over a1, a2, b): the meta-selected run stands for it.
    fixed = rows[("c", "single best fixed")]
    assert fixed["config"] == "P" and alc_of(rows, "c", "single best fixed") == alc_of(rows, "c", "meta-selected")
    assert "the meta-selected run (same plan)" in fixed["note"] and not (out / "c" / "single_best").exists()

    result = out / "c" / "meta_selected" / "result.json"
    mtime = result.stat().st_mtime_ns
    capsys.readouterr()
    assert harness_main(argv) == 0  # same budget: reused, not rerun
    assert result.stat().st_mtime_ns == mtime and capsys.readouterr().out.count("reused") == 1


def test_lodo_real_run_of_a_different_single_best_plan(setup, tmp_path, monkeypatch):
    suite, db_path = setup
    monkeypatch.setattr(lodo, "single_best_fixed", lambda held, time_budget: (cid("Q"), "forced by the test"))
    out = tmp_path / "lodo"
    argv = ["lodo", "--db", str(db_path), "--suite", str(suite), "--time-budget", str(T), "--out", str(out),
            "--tasks", "c"]
    assert harness_main(argv) == 0
    rows = read_rows(out)
    assert rows[("c", "meta-selected")]["config"] == "P" and rows[("c", "single best fixed")]["config"] == "Q"
    assert json.loads((out / "c" / "single_best.plan.json").read_text())["name"] == "Q"
    assert json.loads((out / "c" / "single_best" / "ingestion.json").read_text())["status"] == "done"
    assert 0.0 < alc_of(rows, "c", "single best fixed") <= 1.0 and rows[("c", "single best fixed")]["how"] == "run"
