"""Leave-one-dataset-out evaluation: does meta-learned plan selection pay on a task it has not seen?

    python -m harness lodo --db meta_db.json --suite data/suite --time-budget 300 --out results/lodo

For each suite task D that the database knows, every dataset of D's source is removed from
the database (datasets and runs) and the rest is written to `<out>/<D>/meta_db.heldout.json`.
Then, on D:

- meta-selected: model.py run with AUTOSPEECH_META_DB = that file (with `--simulate`: the
  recorded ALC on D of the configuration `choose_plan` picks from it);
- single best fixed: the configuration with the best mean recorded ALC over the held-out
  database's datasets (only those recorded on all of them count), run with AUTOSPEECH_PLAN
  (with `--simulate`: its recorded ALC on D);
- oracle: the best recorded ALC on D in the full database (recorded, never rerun);
- random: the mean recorded ALC on D of `--random-seeds` configurations, draw i being
  `random.Random(i).choice` over the sorted ids of the configurations recorded on D;
- linear alone: the best recorded ALC on D of a configuration named like LINEAR_NAME_PATTERNS
  whose steps are all linear.

Recorded values are the database's runs at the evaluation's time budget. After every task
`lodo.md`, `lodo.csv` and `lodo.png` are rewritten; real runs whose result.json holds the same
budget are reused unless `--force` (docs/lodo.md).
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import fnmatch
import inspect
import io
import random
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from harness.bench import finished_result, fmt_number, machine_line, suite_tasks
from harness.dataset import atomic_write_bytes, atomic_write_json
from harness.errors import HarnessError
from harness.evaluate import run_and_score
from portfolio.meta_db import MetaDbError, held_out_db, load_db, runs_at_budget, source_of
from portfolio.plans import default_plan
from portfolio.selection import SelectionError, choose_plan, selection_settings, single_best_config

PROJECT_DIR = Path(__file__).resolve().parents[1]
METHODS = ("meta-selected", "single best fixed", "oracle", "random", "linear alone")
LINEAR_NAME_PATTERNS = ("linear*", "*linear_only*")
# model.py selects with the database's tuned k (offline_meta tune), else choose_plan's default; real
# runs can only be compared at that k.
MODEL_K = inspect.signature(choose_plan).parameters["k"].default
HELD_OUT_DB = "meta_db.heldout.json"
# model.py logs "plan <name>: <reason> (neighbours [...])" once it has chosen (logger "autospeech").
PLAN_LOG_LINE = re.compile(r" autospeech: plan (?P<name>.+?): (?P<reason>.*?)(?: \(neighbours .*\))?$")
CSV_COLUMNS = (
    "task", "method", "config", "alc", "final_score", "first_prediction_s", "rank", "gap_to_oracle", "how",
    "status", "note",
)


class LodoError(HarnessError):
    """The leave-one-dataset-out evaluation cannot start (database, suite or options); the message says why."""


# ----------------------------------------------------------------------------- database views


def load_lodo_db(path: str | Path) -> dict:
    """The database, checked to hold datasets of at least two sources."""
    try:
        db = load_db(path)
    except MetaDbError as error:
        raise LodoError(str(error)) from error
    sources = {source_of(db, name) for name in db["datasets"]}
    if len(sources) < 2:
        raise LodoError(
            f"{path}: leave-one-dataset-out needs datasets of at least 2 sources, got {len(sources)} "
            f"{sorted(sources)}; build it with python -m offline_meta build"
        )
    return db


def config_name(db: dict, config_id: str) -> str:
    """Display name of a configuration: the configs table's, else a run's, else the id."""
    if config_id in db["configs"]:
        return db["configs"][config_id]["name"]
    for record in db["runs"]:
        if record["config_id"] == config_id:
            return record.get("config_name") or record.get("config", {}).get("name") or config_id
    return config_id


def config_plan(db: dict, config_id: str) -> dict | None:
    """The plan of a configuration, named after it as a plan file holds it; None if the database lacks it."""
    config = db["configs"].get(config_id) or next(
        (r["config"] for r in db["runs"] if r["config_id"] == config_id and "config" in r), None
    )
    return None if config is None else {**copy.deepcopy(config["plan"]), "name": config["name"]}


def _mean(values: list) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def recorded(db: dict, time_budget: float) -> dict[str, dict[str, dict]]:
    """dataset -> config_id -> mean `alc`, `final_score`, `first_prediction_s` of its runs at `time_budget`."""
    _, runs = runs_at_budget(db, time_budget)
    grouped: dict[tuple[str, str], list[dict]] = {}
    for record in runs:
        grouped.setdefault((record["dataset"], record["config_id"]), []).append(record)
    table: dict[str, dict[str, dict]] = {}
    for (dataset, config), records in grouped.items():
        table.setdefault(dataset, {})[config] = {
            key: _mean([r.get(key) for r in records]) for key in ("alc", "final_score", "first_prediction_s")
        }
    return table


# ----------------------------------------------------------------------------- the methods


def row(task: str, method: str, *, config: str | None = None, values: dict | None = None, how: str = "recorded",
        status: str = "ok", note: str = "") -> dict:
    """One (task, method) cell of the table; a method without a value has `alc` None and a note."""
    values = values or {}
    return {
        "task": task, "method": method, "config": config, "alc": values.get("alc"),
        "final_score": values.get("final_score"), "first_prediction_s": values.get("first_prediction_s"),
        "rank": None, "gap_to_oracle": None, "how": how,
        "status": "blank" if status == "ok" and values.get("alc") is None else status,
        "note": note,
    }


def single_best_fixed(held: dict, time_budget: float) -> tuple[str | None, str]:
    """The configuration with the best mean ALC over the held-out database's datasets, and why (or why none)."""
    table = recorded(held, time_budget)
    if not table:
        return None, f"the held-out database has no runs at T = {time_budget:g} s"
    found = single_best_config({dataset: {c: v["alc"] for c, v in configs.items()} for dataset, configs in table.items()})
    if found is None:
        return None, f"no configuration is recorded on all {len(table)} remaining datasets"
    best, mean = found
    return best, f"best mean ALC {mean:.4f} over the {len(table)} remaining datasets {sorted(table)}"


def oracle_row(task: str, db: dict, on_task: dict[str, dict]) -> dict:
    """Best recorded ALC on the task in the full database."""
    if not on_task:
        return row(task, "oracle", note="no run recorded on this task at this budget")
    best = max(sorted(on_task), key=lambda c: on_task[c]["alc"])
    return row(task, "oracle", config=config_name(db, best), values=on_task[best],
               note="best recorded ALC in the full database, not rerun")


def random_row(task: str, db: dict, on_task: dict[str, dict], seeds: int) -> dict:
    """Mean recorded ALC of `seeds` whole plans drawn with random.Random(0..seeds-1) from those on the task.

    Whole plans have more than one step: a draw among single members run alone (the build's
    `default/3-cnn`, say) would be a crippled baseline that no one would deploy.
    """
    pool = sorted(c for c in on_task if len((config_plan(db, c) or {}).get("steps") or []) > 1)
    if not pool:
        return row(task, "random", note="no whole plan (more than one step) recorded on this task at this budget")
    draws = [random.Random(seed).choice(pool) for seed in range(seeds)]
    values = {key: _mean([on_task[c][key] for c in draws]) for key in ("alc", "final_score", "first_prediction_s")}
    names = ", ".join(config_name(db, c) for c in draws)
    return row(task, "random", config=f"mean of {seeds}: {names}", values=values,
               note=f"seeds 0..{seeds - 1} over {len(pool)} recorded whole plans")


def is_linear_alone(db: dict, config_id: str) -> bool:
    """Named like LINEAR_NAME_PATTERNS, with only linear steps."""
    name = config_name(db, config_id)
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in LINEAR_NAME_PATTERNS):
        return False
    steps = (config_plan(db, config_id) or {}).get("steps") or []
    return bool(steps) and all(step.get("member") == "linear" for step in steps)


def linear_row(task: str, db: dict, on_task: dict[str, dict]) -> dict:
    """Best recorded ALC on the task among the linear-only configurations."""
    linear = [c for c in sorted(on_task) if is_linear_alone(db, c)]
    if not linear:
        patterns = " or ".join(f"`{p}`" for p in LINEAR_NAME_PATTERNS)
        return row(task, "linear alone", note=f"no linear-only configuration named {patterns} recorded on this task")
    best = max(linear, key=lambda c: on_task[c]["alc"])
    return row(task, "linear alone", config=config_name(db, best), values=on_task[best],
               note=f"best of {len(linear)} linear-only configurations" if len(linear) > 1 else "")


def model_log_choice(log_path: Path) -> tuple[str, str] | None:
    """(plan name, reason) that model.py last logged on choosing its plan (the log is appended to), or None."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    matches = [match for line in lines if (match := PLAN_LOG_LINE.search(line))]
    return (matches[-1]["name"], matches[-1]["reason"]) if matches else None


def run_row(task: str, method: str, config: str | None, dataset: Path, run_out: Path, time_budget: float,
            model_env: dict, *, force: bool, note: str = "",
            log: Callable[[str], None] = print) -> dict:
    """A method's row from a run of model.py into `run_out`, or from its result.json of the same budget.

    A run the harness cannot carry out becomes an error row.
    """
    result = None if force else finished_result(run_out, time_budget, PROJECT_DIR)
    if result is not None:
        log(f"  {run_out}: done before (T = {time_budget:g} s), reused; --force reruns it")
    else:
        (run_out / "result.json").unlink(missing_ok=True)
        log(f"  {run_out}: running model.py (T = {time_budget:g} s) ...")
        try:
            result = run_and_score(dataset, PROJECT_DIR, run_out, time_budget=time_budget, model_env=model_env)
        except HarnessError as error:
            return row(task, method, config=config, how="run", status="error", note=str(error))
    values = {key: result[key] for key in ("alc", "final_score", "first_prediction_s")}
    return row(task, method, config=config, values=values, how="run", status=result["status"], note=note)


def simulated_rows(task: str, db: dict, on_task: dict[str, dict], selection: dict, best_fixed: str | None,
                   fixed_reason: str) -> list[dict]:
    """Meta-selected and single best fixed rows from the recorded ALCs on the task."""
    how = "recorded (simulated)"
    chosen = selection.get("config_id")
    if chosen is None:
        meta = row(task, "meta-selected", how=how, note=selection["reason"])
    else:
        meta = row(task, "meta-selected", config=selection["config"], values=on_task.get(chosen), how=how,
                   note="" if chosen in on_task else "chosen configuration not recorded on this task")
    if best_fixed is not None and best_fixed not in on_task:
        fixed_reason += "; not recorded on this task"
    fixed = row(task, "single best fixed", config=best_fixed and config_name(db, best_fixed),
                values=on_task.get(best_fixed), how=how, note=fixed_reason)
    return [meta, fixed]


def real_rows(task: str, db: dict, suite: Path, task_out: Path, selection: dict, best_fixed: str | None,
              fixed_reason: str, *, time_budget: float, force: bool,
              log: Callable[[str], None] = print) -> list[dict]:
    """Meta-selected and single best fixed rows from runs of model.py (the held-out database is written)."""
    dataset, run_out = suite / task, task_out / "meta_selected"
    # An empty AUTOSPEECH_PLAN keeps a plan forced in the caller's environment from skipping selection.
    env = {"AUTOSPEECH_META_DB": str((task_out / HELD_OUT_DB).resolve()), "AUTOSPEECH_PLAN": ""}
    meta = run_row(task, "meta-selected", None, dataset, run_out, time_budget, env, force=force, log=log)
    if meta["status"] != "error":
        selection["model_log"] = model_log_choice(run_out / "model.log")
        meta["config"] = selection["model_log"][0] if selection["model_log"] else None
        if meta["config"] is None:
            meta["note"] = "model.log has no plan line"
        elif meta["config"] != selection["config"]:
            meta["note"] = f"in-process selection chose {selection['config'] or selection['reason']}"

    if best_fixed is not None and meta["status"] != "error" and best_fixed == selection.get("config_id") \
            and meta["config"] == selection["config"]:
        # model.py ran the single best fixed plan itself: a second run would only measure run-to-run noise.
        fixed = {**meta, "method": "single best fixed", "config": config_name(db, best_fixed),
                 "note": "; ".join(filter(None, [fixed_reason, "the meta-selected run (same plan)"]))}
        return [meta, fixed]
    plan = None if best_fixed is None else config_plan(db, best_fixed)
    if plan is None:
        note = fixed_reason if best_fixed is None else f"{fixed_reason}; the database holds no plan for it"
        return [meta, row(task, "single best fixed", config=best_fixed, how="run", note=note)]
    plan_path = task_out / "single_best.plan.json"
    atomic_write_json(plan_path, plan)
    fixed = run_row(task, "single best fixed", plan["name"], dataset, task_out / "single_best", time_budget,
                    {"AUTOSPEECH_PLAN": str(plan_path.resolve())}, force=force, note=fixed_reason, log=log)
    return [meta, fixed]


def evaluate_task(task: str, db: dict, suite: Path, out: Path, *, time_budget: float, simulate: bool, k: int,
                  random_seeds: int, force: bool,
                  log: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """The five method rows on one task, and the selection made for it (neighbours, distances)."""
    source = source_of(db, task)
    held = held_out_db(db, source, time_budget)
    atomic_write_json(out / task / HELD_OUT_DB, held)
    on_task = recorded(db, time_budget).get(task, {})
    # The same inputs model.py has: the task's meta-features (as the database holds them) and the held-out db.
    selection = {"task": task, "source": source, "neighbours": [], "config": None, "reason": "", "model_log": None}
    try:
        metafeatures = db["datasets"][task].get("metafeatures") or {}
        stored = {key: value for key, value in selection_settings(db).items() if key != "k"}
        _, info = choose_plan(metafeatures, held, k=k, incumbent=default_plan(), **stored)
        selection.update(config=info["config"], config_id=info["config_id"], neighbours=info["neighbours"],
                         reason=info["reason"])
    except SelectionError as error:
        selection["reason"] = f"selection failed: {error}"
    best_fixed, fixed_reason = single_best_fixed(held, time_budget)
    if simulate:
        rows = simulated_rows(task, db, on_task, selection, best_fixed, fixed_reason)
    else:
        rows = real_rows(task, db, suite, out / task, selection, best_fixed, fixed_reason, time_budget=time_budget,
                         force=force, log=log)
    rows += [oracle_row(task, db, on_task), random_row(task, db, on_task, random_seeds), linear_row(task, db, on_task)]
    return rows, selection


# ----------------------------------------------------------------------------- summary and reports


def rank_rows(rows: list[dict]) -> None:
    """Fill each task's `rank` (1 = best ALC among methods with one; ties averaged) and `gap_to_oracle`."""
    for task in dict.fromkeys(r["task"] for r in rows):
        cells = [r for r in rows if r["task"] == task]
        known = [r["alc"] for r in cells if r["alc"] is not None]
        oracle = next((r["alc"] for r in cells if r["method"] == "oracle"), None)
        for r in cells:
            if r["alc"] is None:
                continue
            better = sum(v > r["alc"] for v in known)
            equal = sum(v == r["alc"] for v in known)
            r["rank"] = 1 + better + (equal - 1) / 2
            r["gap_to_oracle"] = None if oracle is None else oracle - r["alc"]


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Per method over the tasks where it has a value: n, mean ALC, mean rank, mean gap to the oracle."""
    summary = {}
    for method in METHODS:
        cells = [r for r in rows if r["method"] == method and r["alc"] is not None]
        gaps = [r["gap_to_oracle"] for r in cells if r["gap_to_oracle"] is not None]
        summary[method] = {
            "n": len(cells),
            "alc": _mean([r["alc"] for r in cells]),
            "rank": _mean([r["rank"] for r in cells]),
            "gap_to_oracle": sum(gaps) / len(gaps) if gaps else None,
        }
    return summary


def _cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def format_markdown(rows: list[dict], selections: list[dict], header: dict) -> str:
    """lodo.md: how it was run, the per-method summary, the task × method table, the neighbours chosen."""
    summary = summarize(rows)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = [
        "# Leave-one-dataset-out evaluation",
        "",
        f"- command: `{header['command']}`",
        f"- machine: {header['machine']}",
        f"- date: {header['date']}",
        f"- database: `{header['db']}` ({header['n_sources']} sources), suite: `{header['suite']}`, "
        f"time budget: {header['time_budget']:g} s, k: {header['k']}, random seeds: {header['random_seeds']}",
        f"- mode: {header['mode']}",
        f"- tasks done: {len(tasks)} of {header['n_tasks']}",
        "- oracle, random and linear alone are recorded ALCs of the full database (never rerun); each task is "
        "held out with every dataset of its source.",
        "",
        "## Per method",
        "",
        "| method | tasks | mean ALC | mean rank | mean gap to oracle |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {s['n']} | {fmt_number(s['alc'])} | {fmt_number(s['rank'], '.2f')} | "
            f"{fmt_number(s['gap_to_oracle'])} |"
        )
    lines += [
        "",
        "Means are over the tasks where the method has a value; ranks are among the methods with a value on the task "
        "(1 = best, ties averaged).",
        "",
        "## ALC, task × method",
        "",
        "| task | " + " | ".join(METHODS) + " |",
        "|---|" + "---:|" * len(METHODS),
    ]
    for task in tasks:
        cells = {r["method"]: r for r in rows if r["task"] == task}
        lines.append(f"| {task} | " + " | ".join(fmt_number(cells[m]["alc"]) for m in METHODS) + " |")
    lines += [
        "",
        "## Every cell",
        "",
        "| task | method | config | ALC | final 2AUC-1 | first prediction (s) | rank | gap to oracle | how | status | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {_cell(r['config'])} | {fmt_number(r['alc'])} | "
            f"{fmt_number(r['final_score'])} | {fmt_number(r['first_prediction_s'], '.1f')} | "
            f"{fmt_number(r['rank'], '.1f')} | {fmt_number(r['gap_to_oracle'])} | "
            f"{r['how']} | {r['status']} | {_cell(r['note'])} |"
        )
    lines += ["", "## Neighbours chosen (held-out database, in-process `choose_plan`)", ""]
    for s in selections:
        neighbours = ", ".join(f"{n['dataset']} ({n['source']}, d = {n['distance']:.4f})" for n in s["neighbours"])
        lines.append(f"- {s['task']} (source {s['source']} held out): {neighbours or 'none'}; "
                     f"chose {s['config'] or '–'}: {_cell(s['reason'])}")
        if s["model_log"]:
            lines.append(f"  - model.log: plan {_cell(s['model_log'][0])}: {_cell(s['model_log'][1])}")
    return "\n".join(lines) + "\n"


def format_csv(rows: list[dict]) -> str:
    """lodo.csv: one row per task and method, then one `mean` row per method."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    for method, s in summarize(rows).items():
        writer.writerow({"task": "mean", "method": method, "alc": s["alc"], "rank": s["rank"],
                         "gap_to_oracle": s["gap_to_oracle"], "note": f"{s['n']} tasks"})
    return buffer.getvalue()


def plot_bars(rows: list[dict], path: Path, title: str) -> None:
    """lodo.png: per task a group of bars, one per method (a blank cell leaves a gap)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    alc = {(r["task"], r["method"]): r["alc"] for r in rows}
    fig = Figure(figsize=(max(6.0, 1.3 * len(tasks) + 2.0), 4.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(METHODS)
    for index, method in enumerate(METHODS):
        heights = [alc.get((task, method)) for task in tasks]
        ax.bar([t + (index - (len(METHODS) - 1) / 2) * width for t in range(len(tasks))],
               [float("nan") if h is None else h for h in heights], width, label=method)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ALC")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def write_reports(out: Path, rows: list[dict], selections: list[dict], header: dict) -> None:
    """Rewrite lodo.md, lodo.csv and lodo.png for the tasks done so far."""
    rank_rows(rows)
    atomic_write_bytes(out / "lodo.md", format_markdown(rows, selections, header).encode())
    atomic_write_bytes(out / "lodo.csv", format_csv(rows).encode())
    plot_bars(rows, out / "lodo.png", f"leave one dataset out, T = {header['time_budget']:g} s ({header['mode']})")


# ----------------------------------------------------------------------------- driver


def lodo_tasks(db: dict, suite: Path, names: list[str] | None) -> list[str]:
    """The database's tasks present in the suite (or the named ones, which must be both)."""
    in_suite = set(suite_tasks(suite))
    if names:
        missing = [n for n in names if n not in db["datasets"] or n not in in_suite]
        if missing:
            raise LodoError(f"tasks must be in both the database and the suite {str(suite)!r}, got {missing}")
        return list(dict.fromkeys(names))
    tasks = sorted(set(db["datasets"]) & in_suite)
    if not tasks:
        raise LodoError(
            f"suite {str(suite)!r} holds none of the database's tasks {sorted(db['datasets'])}"
        )
    return tasks


def run_lodo(
    db_path: str | Path,
    suite: str | Path,
    out: str | Path,
    *,
    time_budget: float | None = None,
    simulate: bool = False,
    tasks: list[str] | None = None,
    k: int | None = None,
    random_seeds: int = 3,
    force: bool = False,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Evaluate the five methods on every task held out in turn; return the rows (also in lodo.md/csv/png)."""
    suite, out = Path(suite), Path(out)
    if random_seeds < 1:
        raise LodoError(f"random seeds must be >= 1, got {random_seeds}")
    db = load_lodo_db(db_path)
    model_k = selection_settings(db).get("k", MODEL_K)
    k = model_k if k is None else k
    if not simulate and k != model_k:
        raise LodoError(f"k must be {model_k} without --simulate (model.py selects with the database's k, "
                        f"else choose_plan's default), got {k}")
    if time_budget is None:
        if db.get("time_budget") is None:
            raise LodoError(f"{db_path}: records no time_budget; pass --time-budget")
        time_budget = float(db["time_budget"])
    names = lodo_tasks(db, suite, tasks)
    runs = runs_at_budget(db, time_budget)[1]
    if simulate and not tasks:  # recorded values only: a task without runs has none to show
        with_runs = {r["dataset"] for r in runs}
        names = [name for name in names if name in with_runs] or names
    if not runs:
        budgets = sorted({float(r["time_budget"]) for r in db["runs"]})
        raise LodoError(f"{db_path}: holds no runs at T = {time_budget:g} s (its runs are at {budgets})")
    header = {
        "command": command or f"python -m harness lodo --db {db_path} --suite {suite} --out {out}",
        "machine": machine_line(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "db": str(db_path), "suite": str(suite), "time_budget": time_budget, "k": k, "random_seeds": random_seeds,
        "n_sources": len({source_of(db, n) for n in db["datasets"]}), "n_tasks": len(names),
        "mode": "simulated from recorded ALCs" if simulate else "meta-selected and single best fixed run for real",
    }
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    selections: list[dict] = []
    for index, task in enumerate(names, 1):
        log(f"[{index}/{len(names)}] {task}: holding out source {source_of(db, task)}")
        task_rows, selection = evaluate_task(task, db, suite, out, time_budget=time_budget, simulate=simulate, k=k,
                                             random_seeds=random_seeds, force=force, log=log)
        rows += task_rows
        selections.append(selection)
        write_reports(out, rows, selections, header)
        log("  " + " | ".join(f"{r['method']} {fmt_number(r['alc'])}" for r in task_rows))
    log(f"wrote {out}/lodo.md, lodo.csv, lodo.png")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m harness lodo`."""
    parser.add_argument("--db", default="meta_db.json", help="meta-database (default: meta_db.json)")
    parser.add_argument("--suite", default="data/suite",
                        help="suite root with one <task>/ folder per dataset (default: data/suite)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of charged time; recorded ALCs are taken at this T (default: the database's)")
    parser.add_argument("--out", required=True,
                        help="output directory: <task>/ runs and held-out databases, lodo.md, lodo.csv, lodo.png")
    parser.add_argument("--simulate", action="store_true",
                        help="take the meta-selected and single best plans' recorded ALCs instead of running model.py")
    parser.add_argument("--tasks", nargs="+", metavar="NAME",
                        help="only these tasks (default: every database task in the suite)")
    parser.add_argument("--k", type=int, default=None,
                        help=f"neighbours that vote (default: the database's tuned k, else {MODEL_K}; "
                             "other values only with --simulate)")
    parser.add_argument("--random-seeds", type=int, default=3,
                        help="configurations drawn for the random row (default 3)")
    parser.add_argument("--force", action="store_true", help="rerun real runs that already have a result for this budget")


def main(args: argparse.Namespace, argv: list[str]) -> int:
    """Run from parsed arguments; exit status 1 if a real run could not be carried out, 2 on bad input."""
    try:
        rows = run_lodo(
            args.db, args.suite, args.out, time_budget=args.time_budget, simulate=args.simulate, tasks=args.tasks,
            k=args.k, random_seeds=args.random_seeds, force=args.force,
            command="python -m harness " + shlex.join(argv),
        )
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if any(r["status"] == "error" for r in rows) else 0
