"""Bench over a suite: table, CSV and plot after each task; resumable; a broken task does not stop it."""

from __future__ import annotations

import csv
import json

import pytest

from harness.__main__ import main as harness_main
from portfolio.plans import PLANS_DIR
from tests.conftest import make_tone_dataset

# Scores each test clip by how close its zero-crossing rate is to each class's mean: quick and better than chance.
FAKE_MODEL = """
import numpy as np

def zcr(wave):
    return np.mean(np.abs(np.diff(np.sign(wave)))) / 2

class Model:
    def __init__(self, metadata):
        self.done_training = False

    def train(self, train_dataset, remaining_time_budget=None):
        x, y = train_dataset
        rates = np.array([zcr(w) for w in x])
        self.centres = np.array([rates[y[:, k] == 1].mean() for k in range(y.shape[1])])

    def test(self, test_x, remaining_time_budget=None):
        self.done_training = True
        rates = np.array([zcr(w) for w in test_x])
        return -np.abs(rates[:, None] - self.centres[None, :])
"""


@pytest.fixture
def tone_suite(tmp_path):
    """A suite root with two small tone datasets, task_a and task_b."""
    root = tmp_path / "suite"
    make_tone_dataset(root / "task_a", n_classes=3, seed=1)
    make_tone_dataset(root / "task_b", n_classes=4, seed=2)
    return root


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_bench_writes_table_csv_png_then_resumes_and_force_reruns(tone_suite, write_model, tmp_path, capsys):
    code_dir = write_model(FAKE_MODEL)
    out = tmp_path / "bench"
    argv = ["bench", "--suite", str(tone_suite), "--code-dir", str(code_dir), "--time-budget", "20", "--out", str(out)]
    assert harness_main(argv) == 0

    markdown = (out / "bench.md").read_text()
    assert markdown.startswith("# Benchmark\n\n- command: `python -m harness bench --suite ")
    assert "CPUs" in markdown and "GiB RAM" in markdown and "- date: " in markdown
    assert "| task_a | " in markdown and "| task_b | " in markdown and "**mean ALC**" in markdown
    rows = read_csv(out / "bench.csv")
    assert [row["task"] for row in rows] == ["task_a", "task_b", "mean"]
    assert all(row["status"] == "done" and int(row["n_predictions"]) == 1 for row in rows[:2])
    assert float(rows[2]["alc"]) == pytest.approx((float(rows[0]["alc"]) + float(rows[1]["alc"])) / 2)
    assert float(rows[0]["alc"]) > 0.2 and float(rows[0]["peak_rss_mb"]) > 0
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = {task: out / task / "result.json" for task in ("task_a", "task_b")}
    mtimes = {task: path.stat().st_mtime_ns for task, path in results.items()}

    capsys.readouterr()
    assert harness_main(argv) == 0  # same budget and code dir: nothing reruns
    assert {task: path.stat().st_mtime_ns for task, path in results.items()} == mtimes
    assert capsys.readouterr().out.count("skipped") == 2
    assert "(2 from earlier runs)" in (out / "bench.md").read_text()
    assert [row["alc"] for row in read_csv(out / "bench.csv")] == [row["alc"] for row in rows]

    assert harness_main([*argv, "--tasks", "task_b", "--force"]) == 0
    assert results["task_a"].stat().st_mtime_ns == mtimes["task_a"]
    assert results["task_b"].stat().st_mtime_ns != mtimes["task_b"]
    assert [row["task"] for row in read_csv(out / "bench.csv")] == ["task_b", "mean"]


def test_bench_records_a_failing_task_and_goes_on(tone_suite, write_model, tmp_path, capsys):
    broken = tone_suite / "a_broken" / "broken.data"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json")
    out = tmp_path / "bench"
    argv = ["bench", "--suite", str(tone_suite), "--code-dir", str(write_model(FAKE_MODEL)),
            "--time-budget", "20", "--out", str(out), "--tasks", "a_broken", "task_a", "missing_task"]
    assert harness_main(argv) == 1
    rows = {row["task"]: row for row in read_csv(out / "bench.csv")}
    assert rows["a_broken"]["status"] == "error" and "not valid JSON" in rows["a_broken"]["error"]
    assert rows["missing_task"]["status"] == "error" and "not found" in rows["missing_task"]["error"]
    assert rows["task_a"]["status"] == "done"
    assert float(rows["mean"]["alc"]) == pytest.approx(float(rows["task_a"]["alc"]) / 3)
    markdown = (out / "bench.md").read_text()
    assert "## Errors" in markdown and "- a_broken (error): " in markdown
    assert json.loads((out / "task_a" / "result.json").read_text())["status"] == "done"


def test_bench_empty_suite_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "suite").mkdir()
    assert harness_main(["bench", "--suite", str(tmp_path / "suite"), "--out", str(tmp_path / "out")]) == 2
    assert "must hold <task>/<name>.data folders" in capsys.readouterr().err


def test_bench_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        harness_main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--force" in capsys.readouterr().out


DEFAULT_PLAN = json.loads((PLANS_DIR / "default.json").read_text())
N_LINEAR_STEPS = sum(step["member"] == "linear" for step in DEFAULT_PLAN["steps"])
ENV_MODEL = FAKE_MODEL.replace(
    "        self.done_training = False\n",
    "        self.done_training = False\n"
    "        import json, os\n"
    "        with open(os.environ['AUTOSPEECH_PLAN']) as handle:\n"
    f"            assert [s['member'] for s in json.load(handle)['steps']] == ['linear'] * {N_LINEAR_STEPS}\n",
)


def test_bench_members_runs_only_those_steps_of_the_default_plan(tone_suite, write_model, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--suite", str(tone_suite), "--code-dir", str(write_model(ENV_MODEL)), "--out", str(out)]
    assert harness_main([*argv, "--tasks", "task_a", "--members", "linear"]) == 0
    assert read_csv(out / "bench.csv")[0]["status"] == "done"  # the model's assert on the plan held
    plan = json.loads((out / "plan.json").read_text())
    assert plan["name"] == "default[linear]" and {s["member"] for s in plan["steps"]} == {"linear"}
    assert harness_main([*argv, "--members", "svm"]) == 2
    assert "no step of members ['svm']" in capsys.readouterr().err


def test_bench_with_selection_on_hides_the_tasks_own_source_from_model_py(tmp_path, write_model):
    """model.py selects from the code's meta_db.json, less every run of the benched task's source."""
    from harness.dataset import atomic_write_json
    from portfolio.meta_db import load_db, new_db

    root = tmp_path / "suite"
    make_tone_dataset(root / "task_a", n_classes=3, seed=1, source="src_a")
    make_tone_dataset(root / "task_b", n_classes=4, seed=2, source="src_b")
    code_dir = write_model(FAKE_MODEL.replace(
        "        self.done_training = False\n",
        "        self.done_training = False\n"
        "        import os\n"
        "        with open(os.path.join(os.path.dirname(__file__), 'seen.txt'), 'a') as handle:\n"
        "            handle.write(os.environ.get('AUTOSPEECH_META_DB', '-') + '\\n')\n",
    ))
    db = new_db()
    db["time_budget"] = 20.0
    for name, source in (("task_a", "src_a"), ("a_twin", "src_a"), ("task_b", "src_b")):
        db["datasets"][name] = {"source": source, "metafeatures": {"n_classes": 3.0}}
        db["runs"].append({"dataset": name, "source": source, "config_id": "c", "time_budget": 20.0,
                           "status": "ok", "alc": 0.5})
    atomic_write_json(code_dir / "meta_db.json", db)
    out = tmp_path / "bench"
    assert harness_main(["bench", "--suite", str(root), "--code-dir", str(code_dir), "--time-budget", "20",
                         "--out", str(out)]) == 0
    seen = (code_dir / "seen.txt").read_text().split()
    assert seen == [str((out / task / "meta_db.heldout.json").resolve()) for task in ("task_a", "task_b")]
    assert sorted(load_db(seen[0])["datasets"]) == ["task_b"]
    assert sorted(load_db(seen[1])["datasets"]) == ["a_twin", "task_a"]
    assert "without the task's source" in (out / "bench.md").read_text()
