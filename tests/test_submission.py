"""The Codalab zip: complete, minimal, and runnable when it is the only code on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from harness.evaluate import run_and_score
from harness.submission import build_submission
from tests.conftest import make_tone_dataset

pytestmark = pytest.mark.slow

# Imports the unpacked model with only the unpacked folder and the installed packages on
# sys.path, runs one train/test round on tones, and reports where project modules came from.
ISOLATED_RUN = """
import json, sys
import numpy as np
code_dir = sys.argv[1]
sys.path = [code_dir] + [p for p in sys.path if "site-packages" in p or not p.startswith("{project}")]
import model
rng = np.random.default_rng(0)
labels = np.resize(np.arange(3), 24)
clips = [np.sin(2 * np.pi * 200 * (k + 1) * np.arange(8000) / 16000).astype(np.float32)
         + 0.1 * rng.standard_normal(8000).astype(np.float32) for k in labels]
meta = {{"class_num": 3, "train_num": 24, "test_num": 24, "time_budget": 60}}
m = model.Model(meta)
m.train((clips, np.eye(3)[labels]), remaining_time_budget=60)
prediction = m.test(clips, remaining_time_budget=55)
origins = {{name: mod.__file__ for name, mod in sys.modules.items()
           if name.split(".")[0] in ("model", "portfolio", "metafeatures", "harness", "offline_meta")}}
print(json.dumps({{"shape": list(prediction.shape), "origins": origins}}))
"""


@pytest.fixture(scope="module")
def unpacked_submission(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "submission.zip"
    files = build_submission(out)
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(out) as archive:
        archive.extractall(target)
    return out, [f.as_posix() for f in files], target


def test_submission_zip_holds_model_modules_and_data_only(unpacked_submission):
    out, files, _ = unpacked_submission
    assert "model.py" in files and "meta_db.json" in files and "portfolio/plans/default.json" in files
    assert "portfolio/scheduler.py" in files and "metafeatures/__init__.py" in files
    assert not any(f.startswith(("tests/", "data/", "results/", "docs/", ".")) for f in files)
    assert not any("site-packages" in f for f in files)
    # The runtime stands alone: the platform brings its own ingestion, and the tools stay home.
    assert not any(f.startswith(("harness/", "offline_meta/")) for f in files), files


def test_submission_imports_in_a_folder_of_its_own(unpacked_submission):
    _, _, target = unpacked_submission
    done = subprocess.run(
        [sys.executable, "-c", "import model; print(model.__file__)"], capture_output=True, text=True, cwd=target,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(target))


def test_submission_runs_alone_on_the_code_path(unpacked_submission):
    from harness.submission import PROJECT_DIR

    _, _, target = unpacked_submission
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED_RUN.format(project=PROJECT_DIR), str(target)],
        capture_output=True, text=True, cwd=target, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [24, 3]
    assert all(path.startswith(str(target)) for path in report["origins"].values()), report["origins"]


def test_submission_runs_through_the_harness(unpacked_submission, tmp_path):
    _, _, target = unpacked_submission
    data_dir = make_tone_dataset(tmp_path / "data", n_train=45, n_test=18)
    result = run_and_score(data_dir, target, tmp_path / "out", time_budget=15)
    assert result["n_predictions"] >= 1 and result["alc"] > 0.3
