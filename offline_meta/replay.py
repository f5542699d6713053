"""Replay a plan from its steps' solo runs, ensembles included: the curve the runtime would have made.

`offline_meta/simulate.py` can only shift each solo run's recorded scores in time; the
runtime also averages the best rounds of all steps so far, which is where most of that
simulation's error comes from. With the round logs of the solo runs
(`portfolio/round_log.py`: each round's validation and test probabilities and when they
were ready), a replay makes the runtime's own decisions: the same pool of best rounds
(`updated_pool`), the same greedy ensemble (`greedy_ensemble`), the same rule for when a
new prediction replaces the best one, each prediction scored on the test solution as the
harness scores it.

Timing: a step starts when the previous one ends, lasts min(cap, its solo run's charged
end), and its rounds arrive at their solo times, less the first `train` call's set-up
(`prepare_s`) for every step but the first, since a plan pays it once. Not modelled: front
ends shared between steps, and ensembles cut short for lack of time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.dataset import read_test_solution
from harness.scoring import alc, normalized_auc
from offline_meta.simulate import compare_with_real, load_runs, plan_as_member_steps
from portfolio.meta_db import runs_at_budget
from portfolio.round_log import ROUND_PATTERN, ROUNDS_DIR, VALIDATION_FILE
from portfolio.scheduler import Round, greedy_ensemble, updated_pool


# The plan settings the replay applies (the ensemble's); the others shape the logged rounds themselves.
ENSEMBLE_SETTINGS = ("pool_size", "pool_per_step", "ensemble_size", "min_improvement")


class ReplayError(ValueError):
    """A round log is missing, unreadable or does not fit the others; the message names it."""


@dataclass(frozen=True)
class Trace:
    """One solo run's round log, with when the run ended and whether it crashed."""

    folder: Path
    mode: str
    val_idx: np.ndarray
    y_val_onehot: np.ndarray
    columns: np.ndarray
    prepare_s: float
    rounds: tuple  # Round, with test_proba, in the order they were logged
    elapsed_s: tuple  # charged time at which each round's test prediction was ready
    end_s: float
    crashed: bool = False


def load_trace(folder: str | Path, end_s: float, crashed: bool = False) -> Trace:
    """Read a round log written by `portfolio.round_log.RoundLog`."""
    folder = Path(folder)
    try:
        with np.load(folder / VALIDATION_FILE) as v:
            header = {key: v[key] for key in ("mode", "val_idx", "y_val_onehot", "columns", "prepare_s")}
        rounds, elapsed = [], []
        for path in sorted(folder.glob(ROUND_PATTERN)):
            with np.load(path) as r:
                rounds.append(Round(str(r["label"]), r["val_proba"], float(r["val_score"]), None, {},
                                    int(r["step_index"]), r["test_proba"]))
                elapsed.append(float(r["elapsed_s"]))
    except (OSError, KeyError, ValueError) as error:
        raise ReplayError(f"round log {folder}: {type(error).__name__}: {error}") from error
    return Trace(folder, str(header["mode"]), header["val_idx"], header["y_val_onehot"], header["columns"],
                 float(header["prepare_s"]), tuple(rounds), tuple(elapsed), float(end_s), crashed)


def _check_same_validation(traces: list[Trace]) -> None:
    first = traces[0]
    for trace in traces[1:]:
        if trace.mode != first.mode or not np.array_equal(trace.val_idx, first.val_idx):
            raise ReplayError(f"round logs {first.folder} and {trace.folder} were validated on different clips")


def replay_curve(
    steps: list[tuple[Trace, float]], y_test: np.ndarray, time_budget: float, *,
    pool_size: int = 12, ensemble_size: int = 8, min_improvement: float = 1e-4, pool_per_step: int | None = None,
) -> tuple[list[float], list[float]]:
    """Charged times and test scores of the predictions the plan `steps` ((trace, cap_s)) would make."""
    _check_same_validation([trace for trace, _ in steps])
    unvalidated = steps[0][0].mode == "none"
    columns = steps[0][0].columns
    y_val = steps[0][0].y_val_onehot[:, columns]
    pool, best_score, best_prediction = [], -math.inf, None
    latest_by_step = {}  # validation "none": the runtime averages each step's latest round
    times, scores = [], []
    start = 0.0
    for index, (trace, cap_s) in enumerate(steps):
        if start >= time_budget:
            break
        set_up = trace.prepare_s if index > 0 else 0.0
        duration = min(cap_s, trace.end_s - set_up)
        for round_, elapsed in zip(trace.rounds, trace.elapsed_s):
            at = start + elapsed - set_up
            if elapsed - set_up > duration or at > time_budget:
                break
            if unvalidated:
                latest_by_step[index] = round_.test_proba
                best_prediction = sum(latest_by_step.values()) / len(latest_by_step)
            elif not math.isfinite(round_.val_score):  # the runtime returns an unvalidated round as it is
                best_prediction = round_.test_proba
            else:
                pool = updated_pool(pool, round_, pool_size, pool_per_step)
                if len(pool) == 1:
                    weights, score = np.ones(1), pool[0].val_score
                else:
                    weights, score = greedy_ensemble([r.val_proba[:, columns] for r in pool], y_val, ensemble_size)
                if best_prediction is not None and score <= best_score + min_improvement:
                    continue
                best_prediction = sum(w * r.test_proba for w, r in zip(weights, pool) if w > 0)
                best_score = score
            times.append(at)
            scores.append(normalized_auc(y_test, best_prediction))
        if trace.crashed and trace.end_s <= cap_s:
            break  # the member takes the model process down with it: later steps never run
        start += duration
    return times, scores


def replay_alc(steps: list[tuple[Trace, float]], y_test: np.ndarray, time_budget: float, **settings) -> float:
    """ALC of the replayed curve (0 when no prediction fits in the budget)."""
    times, scores = replay_curve(steps, y_test, time_budget, **settings)
    return alc(times, scores, time_budget) if times else 0.0


def compare_replay_with_real(db: dict, work: str | Path, suite: str | Path, time_budget: float | None = None) -> list[dict]:
    """`simulate.compare_with_real`'s rows, each with `replayed` too where every step's solo run left a round log.

    Round logs are looked up in `<work>/<out_dir>/rounds` of each solo run's record; a row
    without them keeps `replayed` None and says why in `replay_missing`.
    """
    runs = load_runs(db, time_budget)
    records = {(r["dataset"], r["config_id"]): r for r in runs_at_budget(db, runs.time_budget)[1]}
    by_name = {entry["name"]: entry for entry in runs.configs.values()}
    solutions = {}
    rows = compare_with_real(runs)
    for row in rows:
        row["replayed"] = None
        plan = by_name[row["config"]]["plan"]
        steps = plan_as_member_steps(plan, runs)
        if row["simulated"] is None or steps is None:
            row["replay_missing"] = row.get("missing", "a step has no solo run")
            continue
        traces = []
        for member, cap_s in steps:
            record = records[(row["dataset"], member)]
            folder = Path(work) / record["out_dir"] / ROUNDS_DIR
            if not (folder / VALIDATION_FILE).is_file():
                row["replay_missing"] = f"no round log in {folder}"
                break
            traces.append((load_trace(folder, record["charged_s"], record["status"] in ("crash", "memout")), cap_s))
        else:
            if row["dataset"] not in solutions:
                solutions[row["dataset"]] = read_test_solution(Path(suite) / row["dataset"])
            settings = {key: plan[key] for key in ENSEMBLE_SETTINGS if key in plan}
            row["replayed"] = replay_alc(traces, solutions[row["dataset"]], runs.time_budget, **settings)
    return rows
