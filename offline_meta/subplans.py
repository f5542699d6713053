"""Alternative plans scored from one logged run of a parent plan: any of its steps, in any order.

A run of the parent plan (e.g. `default`) logs every round of every step
(`portfolio/round_log.py`). Cut into steps, that log says what each step delivered and
when, so a plan made of some of the parent's steps, in any order, can be replayed
(`offline_meta/replay.py`, ensembles included) without being run: one real run per task
scores many alternatives, which is what makes many tasks times many plans affordable.
A step may also be given fewer rounds than in the parent (less budget for that member):
its first rounds are the parent's, as round sizes do not depend on the round count.

In the parent run a step starts when the step before it delivered its last round and
ends with its own last round. Not modelled, beyond the replay's own limits: a step the
parent run cut short for lack of time (its last steps) cannot run longer in a plan that
starts it earlier, and a step that delivered no round in the parent run adds nothing.
Both make a replayed alternative pessimistic; where an alternative was also run for
real, `score_subplans` rows carry both ALCs, which measures it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.dataset import read_test_solution
from offline_meta.replay import ENSEMBLE_SETTINGS, ReplayError, Trace, load_trace, replay_alc
from portfolio.meta_db import canonical_json, mean_alc_by_cell, runs_at_budget, source_of
from portfolio.round_log import ROUNDS_DIR, VALIDATION_FILE

PLAN_SETTINGS = ("validation",)  # must match the parent's: it decides the clips every logged round is scored on


def step_traces(trace: Trace) -> dict[int, Trace]:
    """A whole-plan run's round log as one trace per step that delivered a round, each timed as a solo run.

    A solo run's times include the run's one-off set-up (`prepare_s`), which the replay takes
    off every step but a plan's first; so a step other than the parent's first gets its
    rounds' times relative to its start in the parent run, plus that set-up.
    """
    positions: dict[int, list[int]] = {}
    for position, round_ in enumerate(trace.rounds):
        positions.setdefault(round_.step_index, []).append(position)
    steps, start_s = {}, 0.0
    for number, (step_index, members) in enumerate(sorted(positions.items())):
        offset = 0.0 if number == 0 else trace.prepare_s - start_s
        elapsed = tuple(trace.elapsed_s[p] + offset for p in members)
        steps[step_index] = replace(trace, rounds=tuple(trace.rounds[p] for p in members), elapsed_s=elapsed,
                                    end_s=elapsed[-1], crashed=False)
        start_s = trace.elapsed_s[members[-1]]
    return steps


def _rounds_aside(step: dict) -> str:
    return canonical_json({key: value for key, value in step.items() if key != "rounds"})


def subplan_positions(plan: dict, parent: dict) -> list[tuple[int, int | None]] | None:
    """(position in `parent`'s steps, rounds cap or None) of each of `plan`'s steps; None if a step is
    not a parent step with at most its rounds, or the plan-wide settings that shape ensembles and
    validation differ."""
    if any(plan.get(key) != parent.get(key) for key in PLAN_SETTINGS):
        return None
    exact = {canonical_json(step): index for index, step in enumerate(parent["steps"])}
    loose = {_rounds_aside(step): index for index, step in enumerate(parent["steps"])}
    positions = []
    for step in plan["steps"]:
        key = canonical_json(step)
        if key in exact:
            positions.append((exact[key], None))
            continue
        index = loose.get(_rounds_aside(step))
        if index is None or step.get("rounds", 1) > parent["steps"][index].get("rounds", 1):
            return None
        positions.append((index, step.get("rounds", 1)))
    return positions


def _first_rounds(trace: Trace, n: int | None) -> Trace:
    """The step trace cut to its first `n` rounds (all of them for None)."""
    if n is None or n >= len(trace.rounds):
        return trace
    return replace(trace, rounds=trace.rounds[:n], elapsed_s=trace.elapsed_s[:n], end_s=trace.elapsed_s[n - 1])


def replay_subplan(steps: dict[int, Trace], positions: list[tuple[int, int | None]], plan: dict,
                   y_test: np.ndarray, time_budget: float) -> float:
    """ALC of the plan whose steps are the parent's at `positions` (rounds capped where given),
    from the parent's step traces."""
    chosen = [(_first_rounds(steps[p], n), math.inf) for p, n in positions if p in steps]
    settings = {key: plan[key] for key in ENSEMBLE_SETTINGS if key in plan}
    return replay_alc(chosen, y_test, time_budget, **settings) if chosen else 0.0


def _solution(dataset: str, suites: list[Path]) -> np.ndarray:
    for suite in suites:
        if (suite / dataset).is_dir():
            return read_test_solution(suite / dataset)
    raise ReplayError(f"dataset {dataset!r} is in none of the suites {[str(s) for s in suites]}")


def score_subplans(db: dict, work: str | Path, suites: list[str | Path], alternatives: list[dict], *,
                   parent: str = "default", time_budget: float | None = None) -> list[dict]:
    """One row per (dataset with a logged run of `parent`, alternative that is a parent subplan).

    `alternatives` are `{"name", "config_id", "plan"}` (offline_meta.configs.load_configs); the
    database's own configurations are added. A row holds dataset, source, config (name),
    config_id, plan, `replayed` ALC (None, with `why`, when the log cannot be replayed), `real`
    (the recorded ALC of that plan there, or None) and `parent_real`.
    """
    budget, runs = runs_at_budget(db, time_budget)
    candidates = {c["config_id"]: {"name": c["name"], "plan": c["plan"]} for c in alternatives}
    candidates.update(db["configs"])
    real = mean_alc_by_cell(runs)
    rows = []
    parents = [r for r in runs if db["configs"].get(r["config_id"], {}).get("name") == parent and r["status"] == "ok"]
    for record in sorted(parents, key=lambda r: r["dataset"]):
        parent_plan = db["configs"][record["config_id"]]["plan"]
        base = {"dataset": record["dataset"], "source": source_of(db, record["dataset"]),
                "parent_real": float(record["alc"]), "parent_id": record["config_id"]}
        folder = Path(work) / record["out_dir"] / ROUNDS_DIR
        try:
            if not (folder / VALIDATION_FILE).is_file():
                raise ReplayError(f"no round log in {folder} (a run from before round logging, or from another work folder)")
            trace = load_trace(folder, record["charged_s"])
            steps = step_traces(trace)
            y_test = _solution(record["dataset"], [Path(s) for s in suites])
        except ReplayError as error:
            rows.append({**base, "config": parent, "config_id": record["config_id"], "plan": parent_plan,
                         "replayed": None, "real": float(record["alc"]), "why": str(error)})
            continue
        for cid, entry in sorted(candidates.items(), key=lambda item: item[1]["name"]):
            positions = subplan_positions(entry["plan"], parent_plan)
            if positions is None:
                continue
            row = {**base, "config": entry["name"], "config_id": cid, "plan": entry["plan"],
                   "real": real.get((record["dataset"], cid))}
            try:
                row["replayed"] = replay_subplan(steps, positions, entry["plan"], y_test, budget)
            except ReplayError as error:
                row.update(replayed=None, why=str(error))
            rows.append(row)
    return rows


def with_replayed_runs(db: dict, rows: list[dict], time_budget: float, *, replayed_only: bool = False,
                       earlier: dict | None = None, parent: str = "default") -> dict:
    """A copy of `db` with a run row for every replayed multi-step alternative not run for real there,
    marked `"replayed_from"` (the parent's config_id), so selection and its checks can choose among them.
    One-step alternatives are left out: the simulation of plans reads their curves, which a replay lacks.
    `replayed_only` keeps only the datasets with replayed multi-step rows, so that every dataset offers
    every alternative (selection votes only with configurations run on all the neighbours); a one-step
    row does not count (a step that delivered nothing replays as 0 even where nothing can be replayed).

    `earlier`, a database this function wrote before, gives its replayed rows back for the datasets
    that `rows` does not replay (round logs do not travel between machines; their replays do), as long
    as they were replayed from today's `parent` configuration and that cell has no real run now."""
    fresh = [row for row in rows if row["replayed"] is not None and len(row["plan"]["steps"]) >= 2]
    replayed_now = {row["dataset"] for row in fresh}
    carried = _carried_rows(db, earlier, parent, replayed_now) if earlier else []
    out = copy.deepcopy(db)
    if replayed_only:
        keep = replayed_now | {record["dataset"] for record in carried}
        out["datasets"] = {name: entry for name, entry in out["datasets"].items() if name in keep}
        out["runs"] = [record for record in out["runs"] if record["dataset"] in keep]
    for row in fresh:
        if row["real"] is not None:
            continue
        config = {"name": row["config"], "plan": row["plan"]}
        out["configs"].setdefault(row["config_id"], config)
        out["runs"].append({
            "schema": db.get("schema", 1), "dataset": row["dataset"], "source": row["source"],
            "config_id": row["config_id"], "config_name": row["config"], "config": config,
            "time_budget": float(time_budget), "status": "ok", "alc": row["replayed"],
            "replayed_from": row["parent_id"],
        })
    for record in carried:
        out["configs"].setdefault(record["config_id"], earlier["configs"][record["config_id"]])
        out["runs"].append(copy.deepcopy(record))
    return out


def _carried_rows(db: dict, earlier: dict, parent: str, replayed_now: set[str]) -> list[dict]:
    """`earlier`'s replayed rows that `with_replayed_runs` keeps (see there)."""
    parent_ids = {cid for cid, entry in db["configs"].items() if entry.get("name") == parent}
    real_cells = {(record["dataset"], record["config_id"]) for record in db["runs"] if "replayed_from" not in record}
    return [record for record in earlier.get("runs", [])
            if record.get("replayed_from") in parent_ids and record["dataset"] in db["datasets"]
            and record["dataset"] not in replayed_now and (record["dataset"], record["config_id"]) not in real_cells
            and record["config_id"] in earlier.get("configs", {})]
