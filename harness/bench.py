"""Benchmark: run model.py on every dataset of a suite, one after the other, and tabulate.

    python -m harness bench --suite data/suite --time-budget 300 --out results/bench

Each task runs through `run_and_score` into `<out>/<task>/`. After every task the bench
rewrites `<out>/bench.md` (command, machine, date, table), `<out>/bench.csv` and
`<out>/learning_curves.png`, so an interrupted bench still leaves a report. A task whose
`result.json` already exists for the same time budget and code directory is not run
again (unless `--force`); a task the harness cannot run (HarnessError) becomes an error
row and the bench goes on.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from harness.dataset import atomic_write_bytes, atomic_write_json, read_meta, resolve_data_dir
from harness.errors import HarnessError
from harness.evaluate import run_and_score, summary_line
from harness.scoring import plot_learning_curves

CSV_COLUMNS = (
    "task", "alc", "final_score", "first_prediction_s", "n_predictions",
    "status", "wall_s", "peak_rss_mb", "resumed", "error",
)


def suite_tasks(suite: str | Path, names: list[str] | None = None) -> list[str]:
    """The named tasks, or every folder of `suite` that holds a `<name>.data` directory, sorted."""
    if names:
        return list(dict.fromkeys(names))
    suite = Path(suite)
    if not suite.is_dir():
        raise HarnessError(f"suite directory {str(suite)!r} not found; build it with python -m harness.suite build")
    tasks = sorted(
        p.name for p in suite.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.data"))
    )
    if not tasks:
        raise HarnessError(f"suite directory {str(suite)!r} must hold <task>/<name>.data folders, found none")
    return tasks


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo), since ALC at a fixed budget depends on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """Processor, platform, CPUs available to this process and total RAM, in one line."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram_gib = psutil.virtual_memory().total / 2**30
    return (f"{cpu_model()}, {platform.platform()}, {cpus} CPUs, {ram_gib:.1f} GiB RAM, "
            f"Python {platform.python_version()}")


def finished_result(task_out: Path, time_budget: float, code_dir: Path) -> dict | None:
    """The result.json of an earlier run of the same budget and code directory, or None."""
    try:
        result = json.loads((task_out / "result.json").read_text())
        report = json.loads((task_out / "ingestion.json").read_text())
    except (OSError, ValueError):
        return None
    if float(result.get("time_budget", -1)) != float(time_budget) or report.get("code_dir") != str(code_dir):
        return None
    return result


def result_row(task: str, result: dict, *, resumed: bool) -> dict:
    """One table row from a `run_and_score` result."""
    return {
        "task": task,
        "alc": result["alc"],
        "final_score": result["final_score"],
        "first_prediction_s": result["first_prediction_s"],
        "n_predictions": result["n_predictions"],
        "status": result["status"],
        "wall_s": result["wall_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "resumed": resumed,
        "error": result["error"],
    }


def error_row(task: str, error: Exception) -> dict:
    """One table row for a task the harness could not run; it earns no ALC."""
    return {
        "task": task, "alc": None, "final_score": None, "first_prediction_s": None, "n_predictions": 0,
        "status": "error", "wall_s": None, "peak_rss_mb": None, "resumed": False, "error": str(error),
    }


def mean_alc(rows: list[dict]) -> float:
    """Mean ALC over all rows; a task that could not run counts as 0."""
    return sum(row["alc"] or 0.0 for row in rows) / len(rows) if rows else 0.0


def fmt_number(value: float | None, spec: str = ".4f") -> str:
    """`value` formatted by `spec` for a markdown cell; a dash for a missing value, so tables stay aligned."""
    return "–" if value is None else format(value, spec)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip().replace("|", "\\|") if lines else ""


def format_markdown(rows: list[dict], header: dict) -> str:
    """bench.md: command, machine and date, then one row per task and the mean ALC."""
    lines = [
        "# Benchmark",
        "",
        f"- command: `{header['command']}`",
        f"- machine: {header['machine']}",
        f"- date: {header['date']}",
        f"- suite: `{header['suite']}`, code dir: `{header['code_dir']}`, time budget: {header['time_budget']}, plan: {header['plan']}",
        f"- tasks done: {len(rows)} of {header['n_tasks']}"
        + (f" ({sum(r['resumed'] for r in rows)} from earlier runs)" if any(r["resumed"] for r in rows) else ""),
        "",
        "| task | ALC | final 2AUC-1 | first prediction (s) | predictions | status | wall (s) | peak MiB |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {fmt_number(r['alc'])} | {fmt_number(r['final_score'])} | "
            f"{fmt_number(r['first_prediction_s'], '.1f')} | {r['n_predictions']} | {r['status']} | "
            f"{fmt_number(r['wall_s'], '.1f')} | {fmt_number(r['peak_rss_mb'], '.0f')} |"
        )
    lines.append(f"| **mean ALC** ({len(rows)} tasks, errors count 0) | **{mean_alc(rows):.4f}** | | | | | | |")
    notes = [f"- {r['task']} ({r['status']}): {_last_line(r['error'])}" for r in rows if r["error"]]
    if notes:
        lines += ["", "## Errors", "", *notes]
    return "\n".join(lines) + "\n"


def format_csv(rows: list[dict]) -> str:
    """bench.csv: the table's rows plus a `mean` row (ALC only)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "error": _last_line(row["error"])})
    writer.writerow({"task": "mean", "alc": mean_alc(rows)})
    return buffer.getvalue()


def write_reports(out: Path, rows: list[dict], results: dict[str, dict], header: dict) -> None:
    """Rewrite bench.md, bench.csv and learning_curves.png for the tasks done so far."""
    atomic_write_bytes(out / "bench.md", format_markdown(rows, header).encode())
    atomic_write_bytes(out / "bench.csv", format_csv(rows).encode())
    if results:
        plot_learning_curves(results, out / "learning_curves.png", f"{Path(header['suite']).name}: {len(results)} tasks")


def run_bench(
    suite: str | Path,
    out: str | Path,
    *,
    tasks: list[str] | None = None,
    time_budget: float | None = None,
    code_dir: str | Path = ".",
    force: bool = False,
    init_timeout_s: float | None = None,
    plan: str | Path | None = None,
    members: list[str] | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Run and score `code_dir/model.py` on each task of `suite`; return the table rows.

    `plan` (a plan file) is handed to the model as AUTOSPEECH_PLAN; with `members`, only
    those members' steps of it (of the default plan if `plan` is None), e.g. to bench the
    linear member alone. The plan actually run is then written to `out/plan.json`.
    """
    suite, out, code_dir = Path(suite), Path(out), Path(code_dir).resolve()
    names = suite_tasks(suite, tasks)
    out.mkdir(parents=True, exist_ok=True)
    if members:
        plan = write_member_plan(plan, members, out / "plan.json")
    model_env = {"AUTOSPEECH_PLAN": str(Path(plan).resolve())} if plan else None
    header = {
        "command": command or f"python -m harness bench --suite {suite} --out {out}",
        "machine": machine_line(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "suite": str(suite),
        "code_dir": str(code_dir),
        "time_budget": "meta.json's" if time_budget is None else f"{time_budget:g} s",
        "plan": str(plan) if plan else "model.py's own choice, from its meta_db.json without the task's source",
        "n_tasks": len(names),
    }
    rows: list[dict] = []
    results: dict[str, dict] = {}
    for index, task in enumerate(names, 1):
        task_out = out / task
        prefix = f"[{index}/{len(names)}] {task}"
        try:
            data_dir = resolve_data_dir(suite / task)
            budget = read_meta(data_dir)["time_budget"] if time_budget is None else time_budget
            result = None if force else finished_result(task_out, budget, code_dir)
            resumed = result is not None
            if resumed:
                log(f"{prefix}: done before (result.json, T = {budget:g} s), skipped; --force reruns it")
            else:
                (task_out / "result.json").unlink(missing_ok=True)
                log(f"{prefix}: running (T = {budget:g} s) ...")
                start = time.monotonic()
                env = model_env or held_out_selection_env(code_dir, data_dir, task_out, budget)
                result = run_and_score(
                    data_dir, code_dir, task_out, time_budget=time_budget, init_timeout_s=init_timeout_s,
                    model_env=env,
                )
                log(f"{prefix}: {summary_line(result)} ({time.monotonic() - start:.0f} s)")
            rows.append(result_row(task, result, resumed=resumed))
            results[task] = result
        except HarnessError as error:
            log(f"{prefix}: error: {error}")
            rows.append(error_row(task, error))
        write_reports(out, rows, results, header)
    log(f"mean ALC {mean_alc(rows):.4f} over {len(rows)} tasks; wrote {out}/bench.md, bench.csv, learning_curves.png")
    return rows


def held_out_selection_env(code_dir: Path, data_dir: Path, task_out: Path, time_budget: float) -> dict | None:
    """With selection on, model.py must not see runs of the task's own source (its test results
    among them): write the code's meta_db.json without them beside the run, and point model.py at it."""
    from portfolio.meta_db import MetaDbError, held_out_db, load_db

    db_path = code_dir / "meta_db.json"
    if not db_path.is_file():
        return None  # model.py finds no database either and runs its default plan
    try:
        db = load_db(db_path)
    except MetaDbError as error:
        raise HarnessError(str(error)) from error
    source = read_meta(data_dir).get("source", task_out.name)
    held_path = task_out / "meta_db.heldout.json"
    task_out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(held_path, held_out_db(db, source, time_budget))
    return {"AUTOSPEECH_META_DB": str(held_path.resolve())}


def write_member_plan(plan: str | Path | None, members: list[str], path: Path) -> Path:
    """Write the steps of `members` in `plan` (default: the default plan) to `path`, as a plan file."""
    from portfolio.plans import PlanError, default_plan_path, keep_members

    source = Path(plan) if plan else default_plan_path()
    try:
        derived = keep_members(json.loads(source.read_text()), members, where=str(source))
    except (OSError, json.JSONDecodeError, PlanError) as error:
        raise HarnessError(f"cannot derive a plan of {members} from {source}: {error}") from error
    atomic_write_json(path, derived)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m harness bench`."""
    parser.add_argument("--suite", default="data/suite", help="suite root with one <task>/ folder per dataset (default: data/suite)")
    parser.add_argument("--tasks", nargs="+", metavar="NAME", help="only these task folders (default: all in the suite)")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of charged time per task (default: each meta.json's)")
    parser.add_argument("--code-dir", default=".", help="directory with model.py (default: .)")
    parser.add_argument("--init-timeout", type=float, default=None, help="limit on Model.__init__, seconds (default 1200)")
    parser.add_argument("--out", required=True, help="output directory: <task>/ runs, bench.md, bench.csv, learning_curves.png")
    parser.add_argument("--force", action="store_true", help="rerun tasks that already have a result for this budget and code dir")
    parser.add_argument("--plan", default=None, help="plan file handed to model.py as AUTOSPEECH_PLAN (default: its own choice)")
    parser.add_argument(
        "--members", nargs="+", metavar="NAME",
        help="run only these members' steps of --plan (default: of the default plan), e.g. --members linear",
    )


def main(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the bench from parsed arguments; exit status 1 if any task could not run, 2 on bad input."""
    try:
        rows = run_bench(
            args.suite, args.out, tasks=args.tasks, time_budget=args.time_budget, code_dir=args.code_dir,
            force=args.force, init_timeout_s=args.init_timeout, plan=args.plan, members=args.members, command="python -m harness " + shlex.join(argv),
        )
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if any(row["status"] == "error" for row in rows) else 0
