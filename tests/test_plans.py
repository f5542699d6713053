"""Plan checking: a bad plan stops before it runs, with a message naming the plan, the step and the value."""

from __future__ import annotations

import json

import numpy as np
import pytest

from portfolio.features import compute_features
from portfolio.plans import PLANS_DIR, PlanError, check_plan, default_plan, keep_members, load_plan
from portfolio.registry import MEMBERS


def plan_with(params: dict, member: str = "linear") -> dict:
    return {"name": "p", "steps": [{"member": "linear", "params": {"max_s": 1.0}}, {"member": member, "params": params}]}


def test_the_default_plan_and_its_member_subsets_pass():
    plan = default_plan()
    assert check_plan(plan, MEMBERS) is plan
    for member in ("linear", "cnn", "lstm_attention", "whisper", "yamnet"):
        check_plan(keep_members(plan, [member]), MEMBERS)


@pytest.mark.parametrize("path", sorted(PLANS_DIR.glob("*.json")), ids=lambda path: path.name)
def test_every_shipped_plan_loads_and_its_spectral_front_ends_take_their_params(path):
    # Front-end parameters (crop, offset, windows) are checked when features are computed, not at
    # load: compute each spectral step's features of two clips, one longer than any crop.
    plan = load_plan(path, MEMBERS)
    clips = [np.zeros(8000, dtype=np.float32), np.ones(16000 * 40, dtype=np.float32)]
    for step in plan["steps"]:
        spec = MEMBERS[step["member"]](**step.get("params", {})).feature_spec()
        if not spec.get("per_clip"):
            assert np.isfinite(compute_features(spec["name"], spec["params"], clips)).all()


@pytest.mark.parametrize("member, params, message", [
    ("linear", {"max_secs": 3.0}, "unexpected keyword argument 'max_secs'"),
    ("linear", {"C": -1.0}, "C must be"),
    ("cnn", {"lr": 0.0}, "lr must be"),
    ("lstm_attention", {"batch_size": "big"}, "batch_size must be"),
])
def test_a_bad_hyperparameter_names_the_step_and_the_value(member, params, message):
    with pytest.raises(PlanError) as caught:
        check_plan(plan_with(params, member), MEMBERS, where="my_plan.json")
    text = str(caught.value)
    assert text.startswith(f"my_plan.json: step 1 ({member}) params {params!r}") and message in text


def test_load_plan_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(plan_with({"n_mel": 40})))
    with pytest.raises(PlanError, match=r"bad\.json: step 1 \(linear\) params .*n_mel"):
        load_plan(path, MEMBERS)


@pytest.mark.parametrize("bad", [0, 1.5, True, "3"])
def test_check_plan_names_a_bad_pool_per_step(bad):
    with pytest.raises(PlanError, match=rf"pool_per_step must be an int >= 1 or null, got {bad!r}"):
        check_plan({"pool_per_step": bad, "steps": [{"member": "linear"}]}, {"linear": object})
    assert check_plan({"pool_per_step": 2, "steps": [{"member": "linear"}]}, {"linear": object})["pool_per_step"] == 2


def test_check_plan_names_an_unknown_validation_key():
    with pytest.raises(PlanError, match=r"validation must be an object with keys among .*got \{'fold': 3\}"):
        check_plan({"validation": {"fold": 3}, "steps": [{"member": "linear"}]}, {"linear": object})
