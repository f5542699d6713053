"""`python -m offline_meta {build,metafeatures,simulate,replay,subplans,tune,greedy} --help`: build meta_db.json, check and use its simulation."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from harness.dataset import atomic_write_json
from harness.errors import HarnessError
from offline_meta.build import RUN_ORDERS, BuildError, build, build_cost, refresh_metafeatures
from offline_meta.configs import ConfigError, load_configs
from portfolio.meta_db import MetaDbError, load_db, utc_now
from offline_meta.loo import SELECTION_GRID, leave_one_source_out, tune_selection
from offline_meta.replay import ReplayError, compare_replay_with_real
from offline_meta.simulate import (
    SimulationError, compare_with_real, format_steps, greedy_portfolio, load_runs, steps_to_plan,
)
from offline_meta.subplans import score_subplans, with_replayed_runs
from portfolio.plans import PlanError, check_plan, default_plan
from portfolio.selection import SelectionError


def build_parser() -> argparse.ArgumentParser:
    """The `build`, `simulate` and `greedy` subcommands and their options."""
    parser = argparse.ArgumentParser(
        prog="python -m offline_meta", description="build meta_db.json, check and use its simulation."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="run every (dataset, configuration) missing from the database")
    build.add_argument("--suite", required=True, help="folder of <task>/<name>.data datasets (data/suite)")
    build.add_argument("--configs", required=True, help="JSON list of {name, plan | plan_file}")
    build.add_argument("--time-budget", type=float, required=True, help="charged seconds per run (T of the ALC)")
    build.add_argument("--out", required=True, help="the database file, created or resumed (meta_db.json)")
    build.add_argument("--jobs", type=int, default=None, help="runs at once (default 1; all workers with --scheduler)")
    build.add_argument("--scheduler", default=None, help="dask scheduler address, or 'local' for an in-process cluster")
    build.add_argument("--tasks", nargs="+", default=None, help="only these task folders of the suite")
    build.add_argument("--only", nargs="+", default=None, metavar="NAME",
                       help="only these configurations of the file, by name (default/2-whisper, default, ...)")
    build.add_argument("--order", choices=RUN_ORDERS, default="config",
                       help="config: each configuration on every dataset in turn (default); dataset: every "
                            "configuration of a dataset before the next, taking the sources in turn")
    build.add_argument("--work", default="results/offline", help="plans and run outputs (default results/offline)")
    build.add_argument("--code-dir", default=None, help="directory with the model.py to run (default: this project)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--repeats", type=int, default=1,
                       help="runs of each dataset and configuration (default 1): rerun with 2 to add a second run")

    refresh = commands.add_parser(
        "metafeatures", help="recompute meta-feature vectors of another metafeatures.VERSION, keeping the runs"
    )
    refresh.add_argument("--db", required=True)
    refresh.add_argument("--suite", nargs="+", required=True, help="suites holding the datasets (data/suite data/derived)")

    simulate = commands.add_parser("simulate", help="simulated vs real ALC of whole plans, and the greedy portfolio")
    simulate.add_argument("--db", required=True)
    simulate.add_argument("--time-budget", type=float, default=None, help="runs of this budget (default: latest build's)")

    replay = commands.add_parser("replay", help="replayed (ensembles included) and simulated vs real ALC of whole plans")
    replay.add_argument("--db", required=True)
    replay.add_argument("--work", default="results/offline", help="the build's work folder, with the runs' round logs")
    replay.add_argument("--suite", required=True, help="the suite the runs were built on (its test solutions)")
    replay.add_argument("--time-budget", type=float, default=None, help="runs of this budget (default: latest build's)")

    subplans = commands.add_parser(
        "subplans", help="score alternatives made of a parent plan's steps by replaying its logged runs"
    )
    subplans.add_argument("--db", required=True)
    subplans.add_argument("--work", default="results/offline", help="the build's work folder, with the runs' round logs")
    subplans.add_argument("--suite", nargs="+", required=True, help="suites holding the runs' datasets (test solutions)")
    subplans.add_argument("--configs", default=None, help="alternatives (a configurations file) beside the database's own")
    subplans.add_argument("--parent", default="default", help="the configuration whose logged runs are cut into steps")
    subplans.add_argument("--time-budget", type=float, default=None, help="runs of this budget (default: the database's)")
    subplans.add_argument("--write-db", default=None,
                          help="write a copy of the database with the replayed alternatives as runs (for tune); an existing "
                               "file's replays of datasets without a round log here are kept")
    subplans.add_argument("--replayed-only", action="store_true",
                          help="with --write-db: keep only the datasets whose alternatives were replayed")

    tune = commands.add_parser("tune", help="choose selection's k and switch margin by leave-one-source-out")
    tune.add_argument("--db", required=True)
    tune.add_argument("--time-budget", type=float, default=None, help="runs of this budget (default: the database's)")
    tune.add_argument("--write", action="store_true",
                      help="store the settings in the database (never while a build writes to it)")

    greedy = commands.add_parser("greedy", help="write the greedy portfolio as a plan file")
    greedy.add_argument("--db", required=True)
    greedy.add_argument("--out", required=True, help="plan file to write (portfolio/plans/greedy.json)")
    greedy.add_argument("--time-budget", type=float, default=None)
    return parser


def run_build(args: argparse.Namespace, argv: list[str]) -> int:
    """Fill the database with the missing runs; 1 when some could not run (they are retried next time)."""
    command = shlex.join([sys.executable, "-m", "offline_meta", *argv])
    configs = load_configs(args.configs)
    summary = build(
        args.suite, configs, args.time_budget, args.out, jobs=args.jobs, scheduler=args.scheduler,
        tasks=args.tasks, only=args.only, order=args.order, work=args.work, command=command,
        progress=not args.no_progress, repeats=args.repeats,
        **({} if args.code_dir is None else {"code_dir": args.code_dir}),
    )
    print(f"{args.out}: {summary.recorded} runs recorded, {summary.skipped} already there, "
          f"{len(summary.failures)} could not run")
    for failure in summary.failures:
        print(f"  not recorded: {failure}")
    return 1 if summary.failures else 0


def run_refresh(args: argparse.Namespace) -> int:
    """Recompute stale meta-feature vectors; 1 when some stay stale (not found, or other data)."""
    report = refresh_metafeatures(args.db, args.suite)
    print(f"{args.db}: {len(report['refreshed'])} vectors recomputed, {len(report['current'])} already current")
    for name in report["not_found"]:
        print(f"  stale, not found in {args.suite}: {name}")
    for name in report["other_data"]:
        print(f"  stale, the folder holds other data than the runs were made on (fingerprint differs): {name}")
    return 1 if report["not_found"] or report["other_data"] else 0


def run_simulate(args: argparse.Namespace) -> int:
    """Print how well the simulation matches real runs, the leave-one-source-out selection and the greedy portfolio."""
    db = load_db(args.db)
    runs = load_runs(db, args.time_budget)
    print(f"{args.db}: time budget {runs.time_budget:g} s, {len(runs.best_alc)} datasets, "
          f"{len(runs.configs)} configurations")
    cost = build_cost(db)
    print(f"holds {cost['datasets']} datasets of {cost['sources']} sources, {cost['datasets_with_runs']} of them "
          f"({cost['sources_with_runs']} sources) with runs; {cost['runs']} runs, {cost['wall_h']:.2f} h of run wall time")
    for name, (n_runs, hours) in cost["by_config"].items():
        print(f"  {name:<28} {n_runs:>4} runs {hours:7.2f} h")
    rows = compare_with_real(runs)
    print("\nsimulated vs real ALC (multi-step configurations that were run):")
    errors = []
    for row in rows:
        if row["simulated"] is None:
            print(f"  {row['config']:<24} {row['dataset']:<22} real {row['real']:.4f}  simulated -  ({row['missing']})")
            continue
        errors.append(abs(row["simulated"] - row["real"]))
        print(f"  {row['config']:<24} {row['dataset']:<22} real {row['real']:.4f}  simulated {row['simulated']:.4f}  "
              f"error {row['simulated'] - row['real']:+.4f}")
    if errors:
        print(f"  mean absolute error {sum(errors) / len(errors):.4f} over {len(errors)} (plan, dataset) pairs")
    else:
        print("  no multi-step configuration could be simulated")
    print("\nrun-time selection, leave one source out (real ALC of the chosen configuration on the held-out dataset):")
    chosen = []
    for row in leave_one_source_out({**db, "time_budget": runs.time_budget}, incumbent=default_plan()):
        if row["alc"] is None:
            print(f"  {row['dataset']:<22} chose {row['chosen']}: {row.get('why', 'not run on this dataset')}")
            continue
        chosen.append(row)
        reference = "-" if row["reference"] is None else f"{row['reference']:.4f}"
        print(f"  {row['dataset']:<22} chose {row['chosen']:<24} ALC {row['alc']:.4f}  best {row['oracle']:.4f}  "
              f"default {reference}")
    if chosen:
        mean = {key: sum(r[key] for r in chosen) / len(chosen) for key in ("alc", "oracle")}
        print(f"  mean over {len(chosen)} datasets: chosen {mean['alc']:.4f}, best {mean['oracle']:.4f}")
    steps, score, datasets = greedy_portfolio(runs)
    print(f"\ngreedy portfolio over {len(datasets)} datasets (simulated mean normalized ALC {score:.4f}):")
    for line in format_steps(steps, runs):
        print(f"  {line}")
    return 0


def run_tune(args: argparse.Namespace, argv: list[str]) -> int:
    """Print nested leave-one-source-out of the selection settings; with --write, store the chosen ones."""
    db = load_db(args.db)
    if args.time_budget is not None:
        db["time_budget"] = args.time_budget
    result = tune_selection(db, incumbent=default_plan())
    print(f"{args.db}: grid {SELECTION_GRID}")
    print("nested leave-one-source-out (settings chosen without the held-out source):")
    for row in result["outer"]:
        alc = "-" if row["alc"] is None else f"{row['alc']:.4f}"
        print(f"  {row['dataset']:<22} {row['settings']}  chose {row['chosen']}  ALC {alc}  best {row['oracle']:.4f}")
    print(f"mean regret: nested {result['nested_regret']:.4f}; the chosen settings in plain leave-one-source-out "
          f"{result['loo_regret']:.4f} (optimistic: tuned on the same sources)")
    scored = [row for row in result["outer"] if row["alc"] is not None]
    if scored:
        print(f"nested mean ALC of the chosen plans over {len(scored)} datasets: "
              f"{sum(r['alc'] for r in scored) / len(scored):.4f} (oracle {sum(r['oracle'] for r in scored) / len(scored):.4f})")
        with_default = [row for row in scored if row["reference"] is not None]
        if with_default:
            print(f"`default` on every one of {len(with_default)} of them: "
                  f"{sum(r['reference'] for r in with_default) / len(with_default):.4f}")
    print(f"chosen on all sources: {result['settings']}")
    if args.write:
        db = load_db(args.db)  # afresh: store the settings, change nothing else
        db["selection"] = {
            **result["settings"], "nested_regret": result["nested_regret"], "loo_regret": result["loo_regret"],
            "command": shlex.join([sys.executable, "-m", "offline_meta", *argv]), "tuned": utc_now(),
        }
        atomic_write_json(Path(args.db), db)
        print(f"{args.db}: selection settings written")
    return 0


def run_greedy(args: argparse.Namespace) -> int:
    """Write the greedy portfolio as a checked plan file."""
    from portfolio.registry import MEMBERS  # loads TensorFlow: only here

    runs = load_runs(load_db(args.db), args.time_budget)
    steps, score, datasets = greedy_portfolio(runs)
    plan = check_plan(steps_to_plan(steps, runs, datasets), MEMBERS, where="greedy plan")
    atomic_write_json(Path(args.out), plan)
    print(f"{args.out}: {len(plan['steps'])} steps, simulated mean normalized ALC {score:.4f} "
          f"over {len(datasets)} datasets")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Print real, simulated and replayed ALC of every whole plan whose steps' solo runs left round logs."""
    rows = compare_replay_with_real(load_db(args.db), args.work, args.suite, args.time_budget)
    methods = ("simulated", "replayed")
    for row in rows:
        cells = [f"{key} -" if row[key] is None else f"{key} {row[key]:.4f} ({row[key] - row['real']:+.4f})"
                 for key in methods]
        note = f"  ({row['replay_missing']})" if row.get("replay_missing") else ""
        print(f"{row['config']:<24} {row['dataset']:<22} real {row['real']:.4f}  {'  '.join(cells)}{note}")
    both = [row for row in rows if row["replayed"] is not None]
    if not both:
        print("no plan could be replayed: its steps' solo runs need round logs (builds since round logging)")
        return 0
    for key in methods:
        values = [abs(row[key] - row["real"]) for row in both]
        print(f"{key}: mean absolute error {sum(values) / len(values):.4f} over the {len(both)} replayed pairs")
    return 0


def run_subplans(args: argparse.Namespace) -> int:
    """Print each alternative's replayed ALC per dataset (and the real one where it ran); optionally write the db."""
    db = load_db(args.db)
    budget = args.time_budget if args.time_budget is not None else db["time_budget"]
    alternatives = load_configs(args.configs) if args.configs else []
    rows = score_subplans(db, args.work, args.suite, alternatives, parent=args.parent, time_budget=budget)
    if not rows:
        print(f"no run of {args.parent!r} at T = {budget} s in {args.db}")
        return 0
    errors: dict[str, list[float]] = {}
    for row in rows:
        replayed = "-" if row["replayed"] is None else f"{row['replayed']:.4f}"
        real = "" if row["real"] is None else f"  real {row['real']:.4f}"
        if row["replayed"] is not None and row["real"] is not None:
            errors.setdefault(row["config"], []).append(row["replayed"] - row["real"])
            real += f" ({row['replayed'] - row['real']:+.4f})"
        why = f"  ({row['why']})" if row.get("why") else ""
        print(f"{row['dataset']:<28} {row['config']:<24} replayed {replayed}{real}{why}")
    for config, values in sorted(errors.items()):
        print(f"{config}: replayed - real over {len(values)} datasets: mean {sum(values) / len(values):+.4f}, "
              f"mean absolute {sum(abs(v) for v in values) / len(values):.4f}")
    if args.write_db:
        earlier = load_db(args.write_db) if Path(args.write_db).is_file() else None
        out = with_replayed_runs(db, rows, budget, replayed_only=args.replayed_only, earlier=earlier,
                                 parent=args.parent)
        atomic_write_json(Path(args.write_db), out)
        added = sum("replayed_from" in record for record in out["runs"])
        replayed_here = {row["dataset"] for row in rows if row["replayed"] is not None}
        kept = sum("replayed_from" in record and record["dataset"] not in replayed_here for record in out["runs"])
        print(f"{args.write_db}: {len(out['datasets'])} datasets, {added} replayed runs added"
              f" ({kept} of them kept from the file's earlier replays)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry; 2 on a known error, so scripts can tell bad input from a crash."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "build":
            return run_build(args, argv)
        if args.command == "metafeatures":
            return run_refresh(args)
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "replay":
            return run_replay(args)
        if args.command == "subplans":
            return run_subplans(args)
        if args.command == "tune":
            return run_tune(args, argv)
        return run_greedy(args)
    except (MetaDbError, HarnessError, ConfigError, BuildError, SimulationError, PlanError, SelectionError,
            ReplayError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
