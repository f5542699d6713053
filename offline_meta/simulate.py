"""Portfolio simulation: the ALC a sequence of members would earn, from their recorded solo curves.

A simulated plan is a list of steps `(config_id, cap_s)`: run that one-step configuration
for at most `cap_s` seconds of charged time (`inf`: until it finishes), then start the
next step. On a dataset, a step lasts `min(cap_s, charged_s)` where `charged_s` is when
the member's solo run ended, and the member's recorded predictions arrive shifted by the
step's start; a member whose solo run crashed before its cap ends the plan there, as a
crash ends a real run. As in the runtime, a prediction is delivered only when its recorded
validation score beats the best delivered so far by `min_improvement`; the curve then
takes its test score. The ALC is the harness's (`harness.scoring.alc`).

Not modelled: ensembles across steps (the runtime may average the best rounds), front
ends shared between steps, and rounds a shorter remaining budget would have skipped.
`compare_with_real` measures how much that matters on plans that were also run.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from harness.scoring import alc
from portfolio.meta_db import canonical_json, runs_at_budget

INF = math.inf
CAP_FRACTIONS = (0.05, 0.1, 0.2, 0.4, INF)  # switch-point grid, as fractions of the time budget
MIN_IMPROVEMENT = 1e-4  # the runtime's default (portfolio/plans/default.json)
MAX_GREEDY_STEPS = 6


class SimulationError(ValueError):
    """The database lacks what a simulation needs; the message says what."""


@dataclass(frozen=True)
class Curve:
    """One solo run: predictions (charged time, test score, validation score or None), its end, and
    whether it ended by crashing (which, inside a plan, ends the whole run)."""

    t_s: tuple
    score: tuple
    validation: tuple
    end_s: float
    crashed: bool = False


@dataclass
class Runs:
    """The runs of one time budget, indexed for simulation."""

    time_budget: float
    curves: dict  # (dataset, config_id) -> Curve, one-step configs only
    alc: dict  # (dataset, config_id) -> real ALC, every config
    configs: dict  # config_id -> {"name", "plan"}
    best_alc: dict  # dataset -> best real ALC recorded on it


def load_runs(db: dict, time_budget: float | None = None) -> Runs:
    """Index a database's runs at one time budget (default: its latest build's)."""
    budget, runs = runs_at_budget(db, time_budget)
    if budget is None or not runs:
        raise SimulationError(f"no runs at time budget {budget!r} in the database")
    configs = dict(db["configs"])
    curves, alcs = {}, {}
    for record in runs:
        configs.setdefault(record["config_id"], record.get("config"))
        key = (record["dataset"], record["config_id"])
        alcs[key] = float(record["alc"])
        if len(configs[record["config_id"]]["plan"]["steps"]) == 1:
            curve = record["curve"]
            end_s = record.get("charged_s")
            curves[key] = Curve(
                tuple(curve["t_s"]), tuple(curve["score"]), tuple(curve["validation_score"]),
                float(budget if end_s is None else end_s), record["status"] in ("crash", "memout"),
            )
    best = {}
    for (dataset, _), value in alcs.items():
        best[dataset] = max(best.get(dataset, -INF), value)
    return Runs(budget, curves, alcs, configs, best)


def simulate_alc(steps: list[tuple[str, float]], curves: dict, time_budget: float, *,
                 min_improvement: float = MIN_IMPROVEMENT) -> float:
    """Simulated ALC of `steps` on one dataset, given that dataset's solo curves (config_id -> Curve)."""
    start, best_validation = 0.0, -INF
    delivered_t, delivered_score = [], []
    for config, cap_s in steps:
        if start >= time_budget:
            break
        curve = curves[config]
        duration = min(cap_s, curve.end_s)
        for t, score, validation in zip(curve.t_s, curve.score, curve.validation):
            at = start + t
            if t > duration or at > time_budget:
                break
            validation = score if validation is None else validation  # no validation recorded: optimistic
            if validation > best_validation + min_improvement or not delivered_t:
                delivered_t.append(at)
                delivered_score.append(score)
                best_validation = validation
        if curve.crashed and curve.end_s <= cap_s:
            break  # the member takes the model process down with it: later steps never run
        start += duration
    return alc(delivered_t, delivered_score, time_budget) if delivered_t else 0.0


def complete_datasets(runs: Runs, members: list[str]) -> list[str]:
    """Datasets where every one of `members` has a solo curve and some run earned a positive ALC."""
    datasets = sorted(runs.best_alc)
    return [d for d in datasets if runs.best_alc[d] > 0 and all((d, m) in runs.curves for m in members)]


def mean_normalized_alc(steps: list[tuple[str, float]], runs: Runs, datasets: list[str]) -> float:
    """Mean over `datasets` of simulated ALC / best real ALC on that dataset."""
    values = []
    for dataset in datasets:
        curves = {config: runs.curves[(dataset, config)] for config, _ in steps}
        values.append(simulate_alc(steps, curves, runs.time_budget) / runs.best_alc[dataset])
    return sum(values) / len(values)


def member_configs(runs: Runs) -> list[str]:
    """Config ids of the one-step configurations with solo curves, by name."""
    ids = {config for _, config in runs.curves}
    return sorted(ids, key=lambda c: runs.configs[c]["name"])


def greedy_portfolio(
    runs: Runs, *, cap_fractions: tuple[float, ...] = CAP_FRACTIONS, max_steps: int = MAX_GREEDY_STEPS
) -> tuple[list[tuple[str, float]], float, list[str]]:
    """Steps chosen one at a time, each the (member, cap) that most raises the mean normalized ALC.

    Returns `(steps, score, datasets)`; ties go to the member listed first and the shortest cap.
    """
    members = member_configs(runs)
    datasets = complete_datasets(runs, members)
    if not members or not datasets:
        raise SimulationError("greedy needs one-step configurations run on at least one common dataset")
    caps = [fraction * runs.time_budget for fraction in cap_fractions]
    steps, score = [], 0.0
    while len(steps) < max_steps:
        best = None
        for member in members:
            for cap in caps:
                candidate = steps + [(member, cap)]
                value = mean_normalized_alc(candidate, runs, datasets)
                if best is None or value > best[1] + 1e-12:
                    best = (candidate, value)
        if best[1] <= score + 1e-9:
            break
        steps, score = best
    return steps, score, datasets


def plan_as_member_steps(plan: dict, runs: Runs) -> list[tuple[str, float]] | None:
    """A whole plan as simulation steps (each step run to its end), or None if a step has no solo config."""
    by_step = {}
    for config in member_configs(runs):
        by_step[canonical_json(runs.configs[config]["plan"]["steps"][0])] = config
    steps = [by_step.get(canonical_json(step)) for step in plan["steps"]]
    return None if None in steps else [(config, INF) for config in steps]


def compare_with_real(runs: Runs) -> list[dict]:
    """Simulated against real ALC for every multi-step config run for real whose steps all ran solo."""
    rows = []
    for config, entry in sorted(runs.configs.items(), key=lambda item: item[1]["name"]):
        if len(entry["plan"]["steps"]) < 2:
            continue
        steps = plan_as_member_steps(entry["plan"], runs)
        for dataset in sorted(runs.best_alc):
            if (dataset, config) not in runs.alc:
                continue
            row = {"config": entry["name"], "dataset": dataset, "real": runs.alc[(dataset, config)], "simulated": None}
            if steps is None:
                row["missing"] = "a step has no one-step configuration"
            elif any((dataset, member) not in runs.curves for member, _ in steps):
                row["missing"] = "a member has no solo run on this dataset"
            else:
                curves = {member: runs.curves[(dataset, member)] for member, _ in steps}
                min_improvement = entry["plan"].get("min_improvement", MIN_IMPROVEMENT)
                row["simulated"] = simulate_alc(steps, curves, runs.time_budget, min_improvement=min_improvement)
            rows.append(row)
    return rows


def rounds_by(curve: Curve, cap_s: float) -> int:
    """Rounds a solo run had finished by `cap_s`: one prediction per round."""
    return sum(1 for t in curve.t_s if t <= cap_s)


def steps_to_plan(steps: list[tuple[str, float]], runs: Runs, datasets: list[str], name: str = "greedy") -> dict:
    """A plan file (portfolio/plans schema) for simulated steps.

    A capped time-sliced step keeps the median, over datasets, of the rounds its solo run
    had finished by the cap (at least 1): the plan schema counts rounds, not seconds.
    Plan-wide settings come from the first step's configuration.
    """
    if not steps:
        raise SimulationError("an empty sequence of steps is no plan")
    first = runs.configs[steps[0][0]]["plan"]
    plan = {key: value for key, value in first.items() if key != "steps"}
    plan["name"] = name
    plan["steps"] = []
    for config, cap_s in steps:
        step = dict(runs.configs[config]["plan"]["steps"][0])
        if math.isfinite(cap_s) and step.get("round_s"):
            done = [rounds_by(runs.curves[(d, config)], cap_s) for d in datasets]
            step["rounds"] = max(1, min(step.get("rounds", 1), int(statistics.median(done))))
        plan["steps"].append(step)
    return plan


def format_steps(steps: list[tuple[str, float]], runs: Runs) -> list[str]:
    """Human lines, one per step."""
    return [
        f"{i + 1}. {runs.configs[config]['name']} ({config}) "
        f"{'until it finishes' if math.isinf(cap) else f'for at most {cap:g} s'}"
        for i, (config, cap) in enumerate(steps)
    ]
