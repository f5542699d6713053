"""Offline build (joblib and dask alike, resumable, strict about its file) and the portfolio simulation."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.dataset import atomic_write_json
from offline_meta.__main__ import main as offline_main
from offline_meta.build import PROJECT_DIR, BuildError, build, build_cost, code_version, run_order, run_status
from offline_meta.configs import ConfigError, load_configs
from portfolio.meta_db import SCHEMA_VERSION, MetaDbError, config_id, load_db, new_db
from offline_meta.loo import leave_one_source_out, tune_selection
from offline_meta.simulate import (
    Curve, compare_with_real, greedy_portfolio, load_runs, mean_normalized_alc, simulate_alc, steps_to_plan,
)
from portfolio.plans import check_plan
from tests.conftest import make_tone_dataset

FAKE_MEMBERS = {"linear": object, "cnn": object}
# Fields that depend on the clock or the machine, not on what was run.
TIMING_FIELDS = {"alc", "first_prediction_s", "charged_s", "wall_s", "peak_rss_mb", "init_s", "finished"}

# A model.py that honours AUTOSPEECH_PLAN like the real one but needs only numpy: nearest centroid on
# spectra of the first max_s seconds, `rounds` rounds, a sleep of the step's round_s per round, a scripted validation score.
FAKE_MODEL = textwrap.dedent(
    """
    import json, os, time
    import numpy as np

    class Model:
        def __init__(self, metadata):
            with open(os.environ["AUTOSPEECH_PLAN"]) as handle:
                self.step = json.load(handle)["steps"][0]
            self.params = self.step.get("params", {})
            self.rounds_done = 0
            self.done_training = False
            self.validation_score = None

        def _features(self, clips):
            n = int(self.params.get("max_s", 0.5) * 16000)
            return np.array([np.abs(np.fft.rfft(clip[:n], 1024))[:128] for clip in clips])

        def train(self, train_dataset, remaining_time_budget=None):
            time.sleep(self.step.get("round_s", 0.0))
            x, y = train_dataset
            self.centroids = (y.T @ self._features(x)) / y.sum(axis=0)[:, None]
            self.rounds_done += 1
            self.validation_score = 0.5 + 0.1 * self.rounds_done
            self.done_training = self.rounds_done >= self.step.get("rounds", 1)

        def test(self, test_x, remaining_time_budget=None):
            X = self._features(test_x)
            return -((X[:, None, :] - self.centroids[None]) ** 2).sum(axis=-1)
    """
)


def linear_plan(max_s: float, rounds: int = 1, round_s: float | None = None, **params) -> dict:
    """A one-step linear plan; the fake model sleeps `round_s` per round (a real plan's round allowance)."""
    step = {"member": "linear", "params": {"max_s": max_s, **params}, "rounds": rounds}
    return {"steps": [step | ({"round_s": round_s} if round_s is not None else {})]}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """Two tiny datasets of two sources, in task folders as data/suite has them."""
    root = tmp_path / "suite"
    make_tone_dataset(root / "alpha", n_train=24, n_test=12, seed=1, source="src_a")
    make_tone_dataset(root / "beta", n_classes=4, n_train=24, n_test=12, seed=2, source="src_b")
    return root


@pytest.fixture
def fake_code(tmp_path: Path) -> Path:
    code = tmp_path / "fake_code"
    code.mkdir()
    (code / "model.py").write_text(FAKE_MODEL)
    return code


def write_configs(path: Path, configs: list[dict]) -> Path:
    path.write_text(json.dumps(configs))
    return path


def comparable(db: dict) -> list[dict]:
    """The runs without clock-dependent fields, in a fixed order."""
    rows = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in db["runs"]]
    for row in rows:
        row["curve"] = {k: v for k, v in row["curve"].items() if k != "t_s"}
    return sorted(rows, key=lambda r: (r["dataset"], r["config_id"]))


def test_build_with_joblib_and_with_dask_gives_the_same_rows(suite, fake_code, tmp_path):
    configs_path = write_configs(tmp_path / "configs.json", [
        {"name": "short", "plan": linear_plan(0.25)},
        {"name": "long", "plan": linear_plan(0.5, rounds=2)},
    ])
    configs = load_configs(configs_path, FAKE_MEMBERS)
    common = {"jobs": 2, "code_dir": fake_code, "progress": False}
    joblib_summary = build(suite, configs, 5, tmp_path / "joblib.json", work=tmp_path / "w1", command="joblib", **common)
    dask_summary = build(
        suite, configs, 5, tmp_path / "dask.json", work=tmp_path / "w2", scheduler="local", command="dask", **common
    )
    assert joblib_summary.recorded == dask_summary.recorded == 4
    assert not joblib_summary.failures and not dask_summary.failures
    by_joblib, by_dask = load_db(tmp_path / "joblib.json"), load_db(tmp_path / "dask.json")
    assert comparable(by_joblib) == comparable(by_dask)

    runs = {(r["dataset"], r["config_name"]): r for r in by_joblib["runs"]}
    long_alpha = runs[("alpha", "long")]
    assert long_alpha["status"] == "ok" and long_alpha["harness_status"] == "done"
    assert long_alpha["source"] == "src_a" and long_alpha["config_id"] == config_id(linear_plan(0.5, rounds=2))
    assert long_alpha["curve"]["validation_score"] == [0.6, 0.7] and len(long_alpha["curve"]["t_s"]) == 2
    assert long_alpha["alc"] > 0 and long_alpha["time_budget"] == 5.0
    # Relative to the work folder (w1 and w2 here): the same on every machine.
    assert long_alpha["out_dir"] == f"runs/T5/alpha/{long_alpha['config_id']}"
    assert (tmp_path / "w1" / long_alpha["out_dir"] / "ingestion.json").is_file()
    assert by_joblib["command"] == "joblib" and by_joblib["time_budget"] == 5.0
    assert set(by_joblib["configs"]) == {c["config_id"] for c in configs}
    assert by_joblib["datasets"]["beta"]["source"] == "src_b"
    assert by_joblib["datasets"]["beta"]["metafeatures"]["n_classes"] == 4.0


def test_a_renamed_plan_keeps_its_runs_under_its_new_name(suite, fake_code, tmp_path):
    """The old default kept as "spectral": its recorded runs are reused, not rerun, and carry the new name."""
    plan = linear_plan(0.25)
    common = {"jobs": 1, "code_dir": fake_code, "progress": False, "work": tmp_path / "w"}
    first = load_configs(write_configs(tmp_path / "a.json", [{"name": "default", "plan": plan}]), FAKE_MEMBERS)
    build(suite, first, 5, tmp_path / "db.json", command="first", **common)
    renamed = load_configs(write_configs(tmp_path / "b.json", [{"name": "spectral", "plan": plan}]), FAKE_MEMBERS)
    summary = build(suite, renamed, 5, tmp_path / "db.json", command="second", **common)
    db = load_db(tmp_path / "db.json")
    assert summary.recorded == 0 and len(db["runs"]) == 2
    assert {r["config_name"] for r in db["runs"]} == {"spectral"}
    assert {r["config"]["name"] for r in db["runs"]} == {"spectral"}
    assert db["configs"][config_id(plan)]["name"] == "spectral"


def test_repeats_add_runs_to_a_cell_in_their_own_folders_and_a_rerun_adds_none(suite, fake_code, tmp_path, capsys):
    configs = load_configs(write_configs(tmp_path / "configs.json", [{"name": "short", "plan": linear_plan(0.25)}]),
                           FAKE_MEMBERS)
    common = {"jobs": 1, "code_dir": fake_code, "progress": False, "work": tmp_path / "w"}
    assert build(suite, configs, 5, tmp_path / "db.json", **common).recorded == 2  # one run per dataset
    summary = build(suite, configs, 5, tmp_path / "db.json", repeats=2, **common)
    assert (summary.recorded, summary.skipped) == (2, 2)
    runs = load_db(tmp_path / "db.json")["runs"]
    cid = configs[0]["config_id"]
    assert sorted(r["out_dir"] for r in runs if r["dataset"] == "alpha") == [f"runs/T5/alpha/{cid}",
                                                                           f"runs/T5/alpha/{cid}-r2"]
    assert all((tmp_path / "w" / r["out_dir"] / "ingestion.json").is_file() for r in runs)
    assert build(suite, configs, 5, tmp_path / "db.json", repeats=2, **common).recorded == 0
    with pytest.raises(BuildError, match="repeats must be an int >= 1"):
        build(suite, configs, 5, tmp_path / "db.json", repeats=0, **common)
    assert len(load_db(tmp_path / "db.json")["runs"]) == 4


def test_build_only_runs_the_named_configurations_and_refuses_unknown_names(suite, fake_code, tmp_path, capsys):
    configs_path = write_configs(tmp_path / "configs.json", [
        {"name": "short", "plan": linear_plan(0.25)},
        {"name": "long", "plan": linear_plan(0.5, rounds=2)},
    ])
    common = ["build", "--suite", str(suite), "--configs", str(configs_path), "--time-budget", "5",
              "--out", str(tmp_path / "db.json"), "--work", str(tmp_path / "w"), "--code-dir", str(fake_code),
              "--no-progress"]
    assert offline_main([*common, "--only", "long"]) == 0
    assert {r["config_name"] for r in load_db(tmp_path / "db.json")["runs"]} == {"long"}
    assert offline_main([*common, "--only", "lng"]) != 0
    assert "no configuration named ['lng']" in capsys.readouterr().err
    assert len(load_db(tmp_path / "db.json")["runs"]) == 2
    assert offline_main([*common, "--only", "short"]) == 0
    # "short" renamed in the file: a build of other configurations still renames its runs.
    write_configs(configs_path, [
        {"name": "brief", "plan": linear_plan(0.25)},
        {"name": "long", "plan": linear_plan(0.5, rounds=2)},
    ])
    assert offline_main([*common, "--only", "long"]) == 0
    runs = load_db(tmp_path / "db.json")["runs"]
    assert sorted(r["config_name"] for r in runs) == ["brief", "brief", "long", "long"]


def test_dataset_order_finishes_each_dataset_and_takes_the_sources_in_turn():
    configs = [{"name": "default"}, {"name": "spectral"}]
    datasets = {name: Path(name) for name in ("a1", "a2", "a3", "b1", "c1", "c2")}
    rows = {name: {"source": name[0]} for name in datasets}
    by_dataset = [(config["name"], name) for config, name in run_order(configs, datasets, rows, "dataset")]
    assert [name for _, name in by_dataset[::2]] == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert by_dataset[:2] == [("default", "a1"), ("spectral", "a1")]
    by_config = [(config["name"], name) for config, name in run_order(configs, datasets, rows, "config")]
    assert by_config[:6] == [("default", name) for name in datasets] and sorted(by_config) == sorted(by_dataset)


def test_build_killed_at_random_points_resumes_without_losing_or_duplicating_runs(suite, fake_code, tmp_path):
    """kill -9 the build at seeded random moments, several times, then let it finish."""
    configs_path = write_configs(tmp_path / "configs.json", [
        {"name": name, "plan": linear_plan(max_s, round_s=1.0)} for name, max_s in (("a", 0.25), ("b", 0.5), ("c", 0.75))
    ])
    out = tmp_path / "meta_db.json"
    command = [
        sys.executable, "-m", "offline_meta", "build", "--suite", str(suite), "--configs", str(configs_path),
        "--time-budget", "10", "--out", str(out), "--jobs", "1", "--work", str(tmp_path / "work"),
        "--code-dir", str(fake_code), "--no-progress",
    ]
    rng = random.Random(7)
    delays = [rng.uniform(0.5, 3.0) for _ in range(4)]  # seconds after each start has begun
    history, kills = [], 0
    for started, delay in enumerate(delays, 1):
        build_process = subprocess.Popen(command, cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # This start has begun once it has appended its entry to the database's builds.
        while not (out.exists() and len(load_db(out)["builds"]) >= started) and build_process.poll() is None:
            assert time.monotonic() < deadline, "the build did not start"
            time.sleep(0.05)
        time.sleep(delay)
        if build_process.poll() is None:
            os.kill(build_process.pid, signal.SIGKILL)
            kills += 1
        build_process.wait()
        runs = load_db(out)["runs"]  # readable after every kill: writes are atomic
        keys = [(r["dataset"], r["config_id"]) for r in runs]
        assert len(keys) == len(set(keys)), "a run was recorded twice"
        assert runs[: len(history)] == history, "a recorded run was lost"
        history = runs
    assert kills >= 2, "the trials must interrupt the build more than once"

    final = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr
    assert f"{len(history)} already there" in final.stdout
    after = load_db(out)
    keys = [(r["dataset"], r["config_id"]) for r in after["runs"]]
    assert len(keys) == len(set(keys)) == 6
    assert after["runs"][: len(history)] == history
    assert len(after["builds"]) == len(delays) + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"schema": 1, "runs": [', "is not readable JSON"), (json.dumps({"schema": SCHEMA_VERSION + 1}), "is newer")],
)
def test_build_refuses_a_corrupt_or_newer_database(suite, fake_code, tmp_path, content, message):
    out = tmp_path / "meta_db.json"
    out.write_text(content)
    configs = load_configs(write_configs(tmp_path / "c.json", [{"name": "a", "plan": linear_plan(0.25)}]), FAKE_MEMBERS)
    with pytest.raises(MetaDbError, match=rf"meta_db\.json: .*{message}"):
        build(suite, configs, 5, out, code_dir=fake_code, work=tmp_path / "w", progress=False)
    assert out.read_text() == content


def test_load_configs_rejects_duplicates_and_unknown_members(tmp_path):

    twice = write_configs(tmp_path / "twice.json", [{"name": "a", "plan": linear_plan(1)}, {"name": "b", "plan": linear_plan(1)}])
    with pytest.raises(ConfigError, match="'b': same plan as 'a'"):
        load_configs(twice, FAKE_MEMBERS)
    unknown = write_configs(tmp_path / "unknown.json", [{"name": "x", "plan": {"steps": [{"member": "svm"}]}}])
    with pytest.raises(ConfigError, match="member must be one of"):
        load_configs(unknown, FAKE_MEMBERS)


def test_project_configs_run_the_default_plan_and_each_of_its_steps_alone():
    members = FAKE_MEMBERS | {"lstm_attention": object, "whisper": object, "yamnet": object}
    configs = load_configs(PROJECT_DIR / "offline_meta" / "configs.json", members)
    default = json.loads((PROJECT_DIR / "portfolio" / "plans" / "default.json").read_text())
    spectral = json.loads((PROJECT_DIR / "portfolio" / "plans" / "spectral.json").read_text())
    by_name = {c["name"]: c for c in configs}
    assert by_name["default"]["config_id"] == config_id(default)
    assert by_name["spectral"]["config_id"] == config_id(spectral) != config_id(default)
    solo = [c["plan"] for c in configs if len(c["plan"]["steps"]) == 1]
    assert all(any(p["steps"] == [step] for p in solo) for step in default["steps"])  # so it can be simulated
    settings = {k: v for k, v in default.items() if k not in ("name", "steps")}
    assert all({k: v for k, v in p.items() if k not in ("name", "steps")} == settings for p in solo)


def test_load_configs_expands_plan_files(tmp_path):
    steps = [{"member": "linear"}, {"member": "cnn"}, {"member": "linear", "rounds": 2}]
    base = {"name": "base", "min_improvement": 0.01, "steps": steps}
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "base.json").write_text(json.dumps(base))
    path = write_configs(tmp_path / "configs.json", [
        {"name": "whole", "plan_file": "plans/base.json"},
        {"name": "solo", "plan_file": "plans/base.json", "each_step": True},
        {"name": "other", "plan_file": "plans/base.json", "steps": [{"member": "cnn", "params": {"max_s": 1.0}}]},
        {"name": "linear_only", "plan_file": "plans/base.json", "members": ["linear"]},
    ])
    configs = load_configs(path, FAKE_MEMBERS)
    names = ["whole", "solo/0-linear", "solo/1-cnn", "solo/2-linear", "other", "linear_only"]
    assert [c["name"] for c in configs] == names
    assert configs[5]["plan"]["steps"] == [{"member": "linear"}, {"member": "linear", "rounds": 2}]
    assert configs[5]["plan"]["min_improvement"] == 0.01
    assert configs[1]["plan"] == {"name": "solo/0-linear", "min_improvement": 0.01, "steps": [{"member": "linear"}]}
    assert configs[4]["plan"]["min_improvement"] == 0.01 and configs[4]["plan"]["steps"][0]["params"] == {"max_s": 1.0}
    with pytest.raises(ConfigError, match="no step of members"):
        load_configs(write_configs(tmp_path / "bad.json", [{"name": "x", "plan_file": "plans/base.json", "members": ["svm"]}]), FAKE_MEMBERS)


def test_code_version_is_none_outside_git(tmp_path):
    assert code_version(tmp_path) is None


def test_run_status_maps_the_ingestion_outcomes():
    assert run_status("done", 3, None) == run_status("stopped", 1, "test returned None") == "ok"
    assert run_status("timeout", 2, "budget of 300 s spent before train") == "ok"
    assert run_status("timeout", 0, "train call overran") == "timeout"
    assert run_status("timeout", 4, "test call overran the remaining budget of 2.10 s and was killed") == "timeout"
    assert run_status("init_timeout", 0, "exceeded") == "timeout"
    assert run_status("crash", 1, "model process was killed (SIGKILL, exit code -9; out of memory?)") == "memout"
    assert run_status("crash", 0, "Traceback ...") == run_status("bad_prediction", 0, "shape") == "crash"


@pytest.mark.slow
def test_build_runs_the_project_model_with_the_plan(suite, tmp_path):
    configs = load_configs(write_configs(tmp_path / "c.json", [
        {"name": "tiny-linear", "plan": linear_plan(0.25, n_mels=16, n_mfcc=8)},
    ]), FAKE_MEMBERS)
    summary = build(suite, configs, 10, tmp_path / "db.json", jobs=2, work=tmp_path / "w", progress=False)
    assert summary.recorded == 2 and not summary.failures
    for record in load_db(tmp_path / "db.json")["runs"]:
        assert record["status"] == "ok" and record["alc"] > 0.5, record
        # Few clips per class: crossfit; a first round with no time for its fold copies goes unvalidated.
        scores = record["curve"]["validation_score"]
        assert scores[-1] is not None and all(math.isfinite(v) for v in scores if v is not None), scores


# ----------------------------------------------------------------------------- simulation

T = 100.0
STEP_A = {"member": "linear", "params": {"max_s": 1.0}, "rounds": 1}
STEP_B = {"member": "cnn", "params": {}, "rounds": 5, "round_s": 10.0}


def t_tilde(t: float) -> float:
    return math.log(1 + t / 60) / math.log(1 + T / 60)


def hand_db() -> dict:
    """One dataset, two solo members A and B, and the whole plan A then B run for real."""
    db = new_db()
    db["time_budget"] = T
    plans = {"A": {"steps": [STEP_A]}, "B": {"steps": [STEP_B]}, "AB": {"steps": [STEP_A, STEP_B]}}
    curves = {
        "A": ([10.0, 30.0], [0.4, 0.6], [0.5, 0.7], 40.0),
        "B": ([5.0, 20.0, 50.0], [0.3, 0.8, 0.9], [0.6, 0.9, 0.85], 60.0),
        "AB": ([10.0, 30.0, 60.0], [0.4, 0.6, 0.8], [0.5, 0.7, 0.9], 100.0),
    }
    real_alc = {"A": 0.5, "B": 0.6, "AB": 0.55}
    for name, plan in plans.items():
        db["configs"][name] = {"name": name, "plan": plan}
        t_s, score, validation, end = curves[name]
        db["runs"].append({
            "dataset": "d", "config_id": name, "config": db["configs"][name], "time_budget": T, "status": "ok",
            "alc": real_alc[name], "charged_s": end, "curve": {"t_s": t_s, "score": score, "validation_score": validation},
        })
    return db


def test_simulate_alc_matches_the_hand_computed_value():
    runs = load_runs(hand_db())
    curves = {"A": runs.curves[("d", "A")], "B": runs.curves[("d", "B")]}
    # A runs to its end at 40 s (delivers 0.4 at 10 s, 0.6 at 30 s); B starts at 40 s: its 0.3 (validation
    # 0.6 < 0.7) is not delivered, its 0.8 at 40 + 20 s is, its 0.9 (validation 0.85 < 0.9) is not.
    expected = 0.4 * (t_tilde(30) - t_tilde(10)) + 0.6 * (t_tilde(60) - t_tilde(30)) + 0.8 * (1 - t_tilde(60))
    assert simulate_alc([("A", math.inf), ("B", math.inf)], curves, T) == pytest.approx(expected, abs=1e-12)
    # Capped at 20 s, A delivers only 0.4; B from 20 s: 0.3 at 25 s (validation 0.6 > 0.5), 0.8 at 40 s.
    expected = 0.4 * (t_tilde(25) - t_tilde(10)) + 0.3 * (t_tilde(40) - t_tilde(25)) + 0.8 * (1 - t_tilde(40))
    assert simulate_alc([("A", 20.0), ("B", math.inf)], curves, T) == pytest.approx(expected, abs=1e-12)


def test_compare_with_real_and_greedy_on_the_hand_database(capsys, tmp_path):
    runs = load_runs(hand_db())
    (row,) = compare_with_real(runs)
    assert row["config"] == "AB" and row["real"] == 0.55
    assert row["simulated"] == pytest.approx(simulate_alc([("A", math.inf), ("B", math.inf)],
                                                          {m: runs.curves[("d", m)] for m in "AB"}, T))
    steps, score, datasets = greedy_portfolio(runs)
    assert datasets == ["d"] and score == pytest.approx(mean_normalized_alc(steps, runs, datasets))
    assert score >= max(mean_normalized_alc([(m, math.inf)], runs, datasets) for m in "AB")
    plan = check_plan(steps_to_plan(steps, runs, datasets), FAKE_MEMBERS)
    assert plan["name"] == "greedy" and len(plan["steps"]) == len(steps)

    atomic_write_json(tmp_path / "db.json", hand_db())
    assert offline_main(["simulate", "--db", str(tmp_path / "db.json")]) == 0
    out = capsys.readouterr().out
    assert f"mean absolute error {abs(row['simulated'] - 0.55):.4f} over 1" in out and "greedy portfolio" in out


def test_build_cost_counts_datasets_sources_runs_and_wall_time():
    db = hand_db()
    db["datasets"] = {"d": {"source": "s"}, "d2": {"source": "s"}, "e": {}}  # e has no source: its own
    for record, wall_s in zip(db["runs"], (1800.0, 3600.0, None)):
        record["wall_s"] = wall_s
    cost = build_cost(db)
    assert (cost["datasets"], cost["datasets_with_runs"], cost["sources"], cost["sources_with_runs"]) == (3, 1, 2, 1)
    assert cost["runs"] == 3 and cost["wall_h"] == pytest.approx(1.5)
    assert cost["by_config"] == {"A": (1, 0.5), "AB": (1, 0.0), "B": (1, 1.0)}


def test_simulate_alc_stops_the_plan_where_a_member_crashed():
    crashed_a = Curve((10.0,), (0.4,), (0.5,), end_s=20.0, crashed=True)
    b = load_runs(hand_db()).curves[("d", "B")]
    alone = 0.4 * (1 - t_tilde(10))
    assert simulate_alc([("A", math.inf), ("B", math.inf)], {"A": crashed_a, "B": b}, T) == pytest.approx(alone)
    # Switched away before the crash: B runs.
    assert simulate_alc([("A", 15.0), ("B", math.inf)], {"A": crashed_a, "B": b}, T) > alone


def test_leave_one_source_out_never_sees_the_held_out_source():
    db = new_db()
    db["time_budget"] = T
    alcs = {"A": {"P": 0.9, "Q": 0.1}, "B": {"P": 0.8, "Q": 0.2}, "C": {"P": 0.1, "Q": 0.7}}
    for name, f in (("A", 0.0), ("B", 1.0), ("C", 10.0)):
        db["datasets"][name] = {"source": f"src{name}", "metafeatures": {"f": f}}
        for config, alc in alcs[name].items():
            db["configs"][config] = {"name": config, "plan": {"steps": [{"member": "linear"}]}}
            db["runs"].append({"dataset": name, "config_id": config, "config_name": config, "time_budget": T,
                               "status": "ok", "alc": alc})
    rows = {row["dataset"]: row for row in leave_one_source_out(db, k=1, reference="Q", features={"f": "linear"})}
    # C's nearest other dataset is B, which favours P: C gets P's 0.1, not its own best (Q, 0.7).
    assert (rows["C"]["chosen"], rows["C"]["alc"], rows["C"]["oracle"], rows["C"]["reference"]) == ("P", 0.1, 0.7, 0.7)
    assert rows["A"]["chosen"] == rows["B"]["chosen"] == "P"


def test_tune_selection_picks_k_by_leave_one_source_out_and_nests_it_honestly():
    """Two pairs of datasets: P is best on the a's (by 0.1), Q on the b's (by 0.5). With k >= 2 the far b's
    outvote an a's twin; only k = 1 is right everywhere. Without a1's source, a2 has no twin, so nothing
    tells the k's apart and the first in grid order (3) is kept: a1 is then wrong, and the nested regret shows it."""
    db = new_db()
    db["time_budget"] = T
    alcs = {"a1": (0.6, 0.5), "a2": (0.6, 0.5), "b1": (0.2, 0.7), "b2": (0.2, 0.7)}
    positions = {"a1": 0.0, "a2": 1.0, "b1": 10.0, "b2": 11.0}
    for name, (p, q) in alcs.items():
        db["datasets"][name] = {"source": name, "metafeatures": {"f": positions[name]}}
        for config, alc in (("P", p), ("Q", q)):
            step = {"member": "linear", "params": {"C": 0.1 if config == "P" else 1.0}}
            db["configs"][config] = {"name": config, "plan": {"steps": [step]}}
            db["runs"].append({"dataset": name, "config_id": config, "config_name": config, "time_budget": T,
                               "status": "ok", "alc": alc})
    result = tune_selection(db, features={"f": "linear"})
    assert result["settings"]["k"] == 1 and result["loo_regret"] == 0.0
    outer = {row["dataset"]: row for row in result["outer"]}
    assert outer["a1"]["settings"]["k"] == 3 and outer["a1"]["chosen"] == "Q"
    assert result["nested_regret"] > result["loo_regret"]


def test_committed_meta_db_names_every_run_as_the_configs_file_does():
    """Every run of the committed database is of a configuration in offline_meta/configs.json, under its name
    there: no run is left under a stale name (an old default's step) after the plans change."""
    configs = {c["config_id"]: c["name"] for c in load_configs(PROJECT_DIR / "offline_meta" / "configs.json")}
    db = load_db(PROJECT_DIR / "meta_db.json")
    stale = {(r["config_name"], r["config_id"]) for r in db["runs"] if configs.get(r["config_id"]) != r["config_name"]}
    assert not stale


def test_derived_tasks_configs_are_configurations_of_the_main_file():
    """The derived tasks' build runs whole plans of configs.json under the same names and ids, so their runs
    join the suite's in selection and leave-one-source-out."""
    main = {c["config_id"]: c["name"] for c in load_configs(PROJECT_DIR / "offline_meta" / "configs.json")}
    derived = {c["config_id"]: c["name"] for c in load_configs(PROJECT_DIR / "offline_meta" / "configs-derived.json")}
    assert derived and all(main.get(cid) == name for cid, name in derived.items())


def test_metafeatures_refresh_recomputes_stale_vectors_keeps_runs_and_skips_other_data(suite, fake_code, tmp_path, capsys):
    from metafeatures import VERSION
    configs = load_configs(write_configs(tmp_path / "configs.json", [{"name": "short", "plan": linear_plan(0.25)}]),
                           FAKE_MEMBERS)
    out = tmp_path / "db.json"
    build(suite, configs, 5, out, jobs=1, code_dir=fake_code, work=tmp_path / "w", progress=False)
    db = load_db(out)
    for entry in db["datasets"].values():  # as an older metafeatures.VERSION left them
        entry["metafeatures_version"] = VERSION - 1
        entry["metafeatures"] = {"n_classes": -1.0}
    db["datasets"]["beta"]["fingerprint"] = "not-the-data-on-disk"
    db["datasets"]["gamma"] = {**db["datasets"]["alpha"], "source": "src_c"}
    runs_before = db["runs"]
    atomic_write_json(out, db)

    code = offline_main(["metafeatures", "--db", str(out), "--suite", str(tmp_path / "nowhere"), str(suite)])

    assert code == 1  # beta and gamma stay stale
    printed = capsys.readouterr().out
    assert "1 vectors recomputed" in printed and "not found" in printed and "gamma" in printed
    assert "fingerprint differs" in printed and "beta" in printed
    after = load_db(out)
    assert after["runs"] == runs_before
    alpha = after["datasets"]["alpha"]
    assert alpha["metafeatures_version"] == VERSION and alpha["metafeatures"]["n_classes"] == 3.0  # make_tone_dataset default
    assert "centroid_separability" in alpha["metafeatures"]
    assert after["datasets"]["beta"]["metafeatures"] == {"n_classes": -1.0}
    assert after["datasets"]["gamma"]["metafeatures_version"] == VERSION - 1


def test_every_tuned_setting_is_one_the_runtime_reads_back_from_the_database():
    from offline_meta.loo import SELECTION_GRID
    from portfolio.selection import TUNED_SETTINGS
    assert set(SELECTION_GRID) == set(TUNED_SETTINGS)


@pytest.mark.parametrize("path", sorted((PROJECT_DIR / "offline_meta").glob("configs*.json")), ids=lambda p: p.name)
def test_every_committed_configurations_file_loads_with_distinct_names(path):
    configs = load_configs(path)
    assert configs and len({c["name"] for c in configs}) == len(configs)
