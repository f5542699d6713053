"""Plans as data: which members run in which order, on which data, for how long.

A plan is a JSON object:

    {"name": str,
     "validation": {"fraction": 0.2, "max_clips": 600,     # held-out split scored each round, when
                    "min_holdout_per_class": 10,          #   the median class has this many clips
                    "min_holdout_clips": 0,               #   and the split this many;
                    "folds": 3, "max_crossfit_clips": 3000},  # else out-of-fold (scheduler.choose_validation)
     "pool_size": 12,              # rounds kept (best by validation) for ensembling
     "pool_per_step": 3,           # optional: at most this many of them from one step (default: no cap)
     "ensemble_size": 8,           # greedy forward selection (with replacement) of that many picks
     "min_improvement": 1e-4,      # a new prediction needs this much validation gain
     "margin_s": 3.0, "margin_fraction": 0.05,             # budget kept free of rounds
     "refit_members": ["linear"],  # optional: with a holdout, these members' rounds predict test from
                                   #   a copy refit on training and validation clips (default: none)
     "steps": [{"member": "linear", "params": {...},       # a registry name and its kwargs
                "max_per_class": 20,                        # optional class-balanced train cap
                "rounds": 1,                                # partial_fit calls in this step
                "round_s": 10.0, "round_growth": 1.0,       # fit allowance of round k: round_s*growth**k
                "patience": 3}]}                            # leave the step after k rounds w/o gain
"""

from __future__ import annotations

import json
from pathlib import Path

from portfolio.checks import is_int

PLANS_DIR = Path(__file__).resolve().parent
STEP_KEYS = {"member", "params", "max_per_class", "rounds", "round_s", "round_growth", "patience"}
VALIDATION_KEYS = {"fraction", "max_clips", "min_holdout_per_class", "min_holdout_clips", "folds",
                   "max_crossfit_clips"}
PLAN_KEYS = {"name", "validation", "pool_size", "pool_per_step", "ensemble_size", "min_improvement", "margin_s",
             "margin_fraction", "refit_members", "steps"}


class PlanError(ValueError):
    """A plan breaks the schema above; the message names the plan and the field."""


def check_plan(plan: dict, members: dict, where: str = "plan") -> dict:
    """Return `plan` unchanged if it follows the schema, else raise PlanError."""
    if not isinstance(plan, dict):
        raise PlanError(f"{where} must be a JSON object, got {type(plan).__name__}")
    unknown = set(plan) - PLAN_KEYS
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}")
    validation = plan.get("validation", {})
    if not isinstance(validation, dict) or set(validation) - VALIDATION_KEYS:
        raise PlanError(f"{where}: validation must be an object with keys among {sorted(VALIDATION_KEYS)}, got {validation!r}")
    per_step = plan.get("pool_per_step")
    if per_step is not None and not is_int(per_step, 1):
        raise PlanError(f"{where}: pool_per_step must be an int >= 1 or null, got {per_step!r}")
    refit = plan.get("refit_members", [])
    if not isinstance(refit, list) or not set(refit) <= set(members):
        raise PlanError(f"{where}: refit_members must be a list of members among {sorted(members)}, got {refit!r}")
    steps = plan.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PlanError(f"{where}: steps must be a non-empty list, got {steps!r}")
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("member") not in members:
            raise PlanError(f"{where}: step {index} member must be one of {sorted(members)}, got {step!r}")
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise PlanError(f"{where}: step {index} has unknown keys {sorted(unknown)}")
        if not isinstance(step.get("params", {}), dict):
            raise PlanError(f"{where}: step {index} params must be an object, got {step['params']!r}")
        check_step_params(members[step["member"]], step.get("params", {}), f"{where}: step {index} ({step['member']})")
    return plan


def check_step_params(member_class: type, params: dict, where: str) -> None:
    """Build the member with `params` and check them, so a misspelled or out-of-range hyperparameter
    stops the plan before it runs instead of failing at the step's first round mid-run.

    Classes without declared constraints (no `_check_params`, e.g. test stand-ins) are not built.
    """
    if not hasattr(member_class, "_check_params"):
        return
    try:
        member_class(**params)._check_params()
    except (TypeError, ValueError) as error:  # unknown keyword; MemberError (a ValueError) for a bad value
        raise PlanError(f"{where} params {params!r}: {error}") from error


def load_plan(path: str | Path, members: dict) -> dict:
    """Read and check a plan file."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PlanError(f"{path}: cannot read plan ({error})") from error
    return check_plan(plan, members, where=str(path))


def keep_members(plan: dict, members: list[str], where: str = "plan") -> dict:
    """The plan with only the steps of `members`, in their order: e.g. the linear member alone.

    Deriving such plans from one file (rather than copying its steps into another) keeps
    them in step with it.
    """
    steps = [step for step in plan["steps"] if step.get("member") in members]
    if not steps:
        present = sorted({step.get("member") for step in plan["steps"]})
        raise PlanError(f"{where}: no step of members {sorted(members)}; its steps use {present}")
    return {**plan, "name": f"{plan.get('name', 'plan')}[{'+'.join(members)}]", "steps": steps}


def default_plan_path() -> Path:
    return PLANS_DIR / "default.json"


def default_plan() -> dict:
    """The default plan as stored (model.py's plan when selection has nothing better)."""
    return json.loads(default_plan_path().read_text())
