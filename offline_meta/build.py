"""The offline build: every (dataset, configuration) through the real ingestion, one record per run.

Each run is `harness.evaluate.run_and_score` on the project's `model.py` with the
configuration's plan handed over in `AUTOSPEECH_PLAN`: the same isolated protocol as a
submission. Runs go through joblib (`prefer="threads"`: the work happens in each run's
own model process, the worker only waits on it), or through a dask cluster when one is
given, with the same code. Only the parent writes the database: each finished run is
appended and the file rewritten atomically at once, so a killed build loses at most
the runs in flight, and a rerun skips every run already recorded. A cell (dataset,
configuration, budget) is run once, or `repeats` times: run-to-run noise (up to 0.02 ALC)
is measured, and averaged over, by repeated runs of one cell.
"""

from __future__ import annotations

import collections
import contextlib
import json
import multiprocessing
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from tqdm import tqdm

from harness.dataset import atomic_write_json, read_dataset, read_meta, resolve_data_dir
from harness.bench import machine_line
from harness.evaluate import run_and_score
from harness.ingestion import PLATFORM_META_KEYS
from metafeatures import VERSION as METAFEATURES_VERSION
from metafeatures import compute_metafeatures_detailed
from portfolio.meta_db import RUN_STATUSES, SCHEMA_VERSION, finite_or_none, load_db, record_key, run_key, utc_now
from portfolio.round_log import ROUNDS_DIR

PROJECT_DIR = Path(__file__).resolve().parents[1]
RUN_ORDERS = ("config", "dataset")
SEED = 0  # model.py runs its scheduler with the default seed; a repeated run differs by timing alone


class BuildError(RuntimeError):
    """The build cannot start or a run cannot be carried out (not a failure of the configuration)."""


@dataclass
class BuildSummary:
    """What one build did."""

    recorded: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)  # "<dataset> <config>: <why>"; not recorded, retried next time


def code_version(root: Path = PROJECT_DIR) -> str | None:
    """Git HEAD of `root`, with "-dirty" when tracked or untracked files differ; None without git.

    Read-only: `--no-optional-locks` keeps `git status` from touching the index.
    """
    try:
        run = {"cwd": root, "capture_output": True, "text": True, "timeout": 30, "check": True}
        sha = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        changes = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if changes else "") if sha else None


# Ingestion status -> database status for the outcomes that need no further look;
# `run_status` handles the two that depend on the run's predictions or error.
HARNESS_TO_RUN_STATUS = {
    "done": "ok",
    "stopped": "ok",
    "timeout": "timeout",
    "init_timeout": "timeout",
    "crash": "crash",
    "bad_prediction": "crash",
}
assert set(HARNESS_TO_RUN_STATUS.values()) <= set(RUN_STATUSES)


def run_status(harness_status: str, n_predictions: int, error: str | None) -> str:
    """Map the ingestion's status to the database's `ok|timeout|memout|crash|other`."""
    # A budget spent between calls, after delivering predictions, is `ok`: anytime members
    # are meant to use the whole budget. A call the ingestion killed for overrunning it is a
    # `timeout`, whatever was delivered before: the runtime promised never to overrun.
    if harness_status == "timeout" and n_predictions and error and "spent before" in error:
        return "ok"
    # A model process that died of SIGKILL (the ingestion's crash message says so)
    # was, in practice, taken by the out-of-memory killer.
    if harness_status == "crash" and error and "SIGKILL" in error:
        return "memout"
    return HARNESS_TO_RUN_STATUS.get(harness_status, "other")


def discover_datasets(suite: Path, tasks: list[str] | None = None) -> dict[str, Path]:
    """Task folder name -> `.data` directory, for each task under `suite` (or the named ones)."""
    suite = Path(suite)
    if not suite.is_dir():
        raise BuildError(f"suite must be a directory, got {str(suite)!r}")
    if tasks:
        missing = [task for task in tasks if not (suite / task).is_dir()]
        if missing:
            raise BuildError(f"tasks not found under {suite}: {missing}")
        folders = [suite / task for task in tasks]
    else:
        # Hidden folders are work in progress (harness.derive builds tasks under .partial/).
        folders = sorted(
            p for p in suite.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.data"))
        )
    if not folders:
        raise BuildError(f"suite {str(suite)!r} holds no dataset folder (<task>/<name>.data)")
    return {folder.name: resolve_data_dir(folder) for folder in folders}


def dataset_entry(data_dir: Path) -> dict:
    """A dataset's row of the database: its source, sizes and meta-features (on train data only)."""
    dataset = read_dataset(data_dir, with_solution=False)
    platform_meta = {k: v for k, v in dataset.meta.items() if k in PLATFORM_META_KEYS}
    values, reasons = compute_metafeatures_detailed(dataset.x_train, dataset.y_train, platform_meta, seed=SEED)
    return {
        "source": dataset.meta.get("source", dataset.name),
        "class_num": dataset.meta["class_num"],
        "train_num": dataset.meta["train_num"],
        "test_num": dataset.meta["test_num"],
        "fingerprint": dataset.meta.get("fingerprint"),
        "metafeatures_version": METAFEATURES_VERSION,
        "metafeatures": {name: finite_or_none(value) for name, value in values.items()},
        "metafeature_issues": reasons,
    }


def make_record(job: dict, result: dict, report: dict) -> dict:
    """One run as stored: identity, outcome, learning curve and cost."""
    counted = [p for p in result["predictions"] if p["counted"]]
    validation = [p.get("validation_score") for p in report["predictions"][: len(counted)]]
    return {
        "schema": SCHEMA_VERSION,
        "dataset": job["dataset"],
        "source": job["source"],
        "config_id": job["config_id"],
        "config_name": job["config"]["name"],
        "config": job["config"],
        "seed": SEED,
        "time_budget": job["time_budget"],
        "status": run_status(result["status"], len(counted), result["error"]),
        "harness_status": result["status"],
        "alc": float(result["alc"]),
        "final_score": result["final_score"],
        "first_prediction_s": result["first_prediction_s"],
        "n_predictions": len(counted),
        "charged_s": report["charged_s"],
        "curve": {
            "t_s": [p["t_s"] for p in counted],
            "score": [p["score"] for p in counted],
            "validation_score": [finite_or_none(v) for v in validation],
        },
        "wall_s": result["wall_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "init_s": result["init_s"],
        "error": result["error"],
        "code_version": job["code_version"],
        "finished": utc_now(),
        "out_dir": job["record_dir"],
    }


def run_one(job: dict) -> dict:
    """Worker side: one isolated run -> `{"record": ...}`, or `{"failure": why}` if it could not run."""
    try:
        if multiprocessing.current_process().daemon:
            raise BuildError(
                "this worker is a daemonic process and cannot start the model's process; start dask "
                "workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
            )
        result = run_and_score(
            job["data_dir"], job["code_dir"], job["out_dir"],
            time_budget=job["time_budget"],
            # Every round's probabilities, for replaying plans offline (offline_meta/replay.py).
            model_env={"AUTOSPEECH_PLAN": job["plan_path"], "AUTOSPEECH_ROUND_LOG": str(Path(job["out_dir"]) / ROUNDS_DIR)},
        )
        report = json.loads((Path(job["out_dir"]) / "ingestion.json").read_text())
        return {"record": make_record(job, result, report)}
    except Exception as error:  # noqa: BLE001 - reported by the parent, never recorded as the config's fault
        return {"failure": f"{job['dataset']} {job['config']['name']}: {type(error).__name__}: {error}"}


@contextlib.contextmanager
def _backend(scheduler: str | None, n_jobs: int):
    """Joblib's default backends, or dask on `scheduler` ("local": an in-process LocalCluster).

    Yields how many runs can be in flight at once.
    """
    if scheduler is None:
        yield effective_n_jobs(n_jobs)
        return
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            # Threads, not processes: dask's worker processes are daemons, which may not start the model's.
            cluster = stack.enter_context(
                LocalCluster(processes=False, n_workers=effective_n_jobs(n_jobs), threads_per_worker=1)
            )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler))
            except (OSError, TimeoutError) as error:
                raise BuildError(f"cannot reach the dask scheduler at {scheduler!r} ({error})") from error
        stack.enter_context(parallel_config("dask"))
        threads = sum(client.nthreads().values())
        yield threads if n_jobs < 0 else min(threads, n_jobs)


class Builder:
    """Holds the database file and its content; the only writer."""

    def __init__(self, out: Path, command: str, time_budget: float, version: str | None):
        self.out = Path(out)
        self.db = load_db(self.out, missing_ok=True)
        now = utc_now()
        self.db.update(command=command, time_budget=float(time_budget), updated=now)
        self.db["builds"].append(
            {"command": command, "cwd": str(Path.cwd()), "time_budget": float(time_budget), "started": now,
             "code_version": version, "machine": machine_line()}
        )
        self.done = collections.Counter(record_key(r) for r in self.db["runs"])  # runs per cell

    def save(self) -> None:
        """Rewrite the file atomically, so a killed build loses nothing already recorded."""
        self.db["updated"] = utc_now()
        atomic_write_json(self.out, self.db)

    def add_configs(self, configs: list[dict]) -> None:
        """Store each configuration's name and plan under its id, so runs can be read back without the configs file.

        A plan renamed in the configs file (the old default kept as "spectral", say) keeps its
        runs, which take the new name too.
        """
        named = {config["config_id"]: {"name": config["name"], "plan": config["plan"]} for config in configs}
        self.db["configs"].update(named)
        for record in self.db["runs"]:
            if record["config_id"] in named:
                record["config_name"] = named[record["config_id"]]["name"]
                record["config"] = named[record["config_id"]]
        self.save()

    def ensure_dataset(self, name: str, data_dir: Path) -> None:
        """Compute a dataset's row unless it is there, from the same data and meta-feature version."""
        entry = self.db["datasets"].get(name)
        fingerprint = read_meta(data_dir).get("fingerprint")
        current = (METAFEATURES_VERSION, fingerprint)
        if entry and (entry.get("metafeatures_version"), entry.get("fingerprint")) == current:
            return
        self.db["datasets"][name] = dataset_entry(data_dir)
        self.save()

    def add_record(self, record: dict) -> None:
        """Append a finished run and save at once, so a rerun skips it."""
        self.db["runs"].append(record)
        self.done[record_key(record)] += 1
        self.save()


def refresh_metafeatures(db_path: str | Path, suites: list[str | Path]) -> dict[str, list[str]]:
    """Recompute the stale meta-feature vectors of a database's datasets, keeping every run.

    A vector is stale when it was computed by another `metafeatures.VERSION`. The dataset is
    looked up by name in each suite folder; one whose fingerprint differs from the stored one
    is other data than its runs were made on, and is left as it is, as is one not found.
    The file is rewritten atomically after each dataset, so a killed refresh loses nothing.

    Returns {"refreshed": [...], "current": [...], "not_found": [...], "other_data": [...]}, by name.
    """
    db_path = Path(db_path)
    db = load_db(db_path)
    report: dict[str, list[str]] = {"refreshed": [], "current": [], "not_found": [], "other_data": []}
    for name, entry in sorted(db["datasets"].items()):
        if entry.get("metafeatures_version") == METAFEATURES_VERSION:
            report["current"].append(name)
            continue
        folder = next((Path(suite) / name for suite in suites if (Path(suite) / name).is_dir()), None)
        if folder is None:
            report["not_found"].append(name)
            continue
        data_dir = resolve_data_dir(folder)
        if read_meta(data_dir).get("fingerprint") != entry.get("fingerprint"):
            report["other_data"].append(name)
            continue
        db["datasets"][name] = dataset_entry(data_dir)
        db["updated"] = utc_now()
        atomic_write_json(db_path, db)
        report["refreshed"].append(name)
    return report


def build_cost(db: dict) -> dict:
    """What a database holds and what its runs cost: datasets and sources (all, and those with runs),
    runs, and run wall time in hours, in all and per configuration name (runs without a wall time count 0)."""
    sources = {name: entry.get("source") or name for name, entry in db["datasets"].items()}
    with_runs = {r["dataset"] for r in db["runs"]}
    by_config: dict[str, list] = {}
    for record in db["runs"]:
        name = record.get("config_name") or db["configs"].get(record["config_id"], {}).get("name", record["config_id"])
        entry = by_config.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += float(record.get("wall_s") or 0.0) / 3600
    return {
        "datasets": len(sources), "datasets_with_runs": len(with_runs & set(sources)),
        "sources": len(set(sources.values())), "sources_with_runs": len({sources[d] for d in with_runs if d in sources}),
        "runs": len(db["runs"]), "wall_h": sum(hours for _, hours in by_config.values()),
        "by_config": {name: tuple(value) for name, value in sorted(by_config.items())},
    }


def run_order(configs: list[dict], datasets: dict[str, Path], rows: dict, order: str) -> list[tuple[dict, str]]:
    """(configuration, dataset) pairs in the order they should run.

    "config": a build stopped part-way leaves whole configurations, which selection and the
    simulation of plans from solo runs can use. "dataset": it leaves whole datasets, each
    with every plan to choose between, spread over the sources (the first dataset of each
    source, then the second, ...), which is what leave-one-source-out selection can use.
    """
    if order == "config":
        return [(config, name) for config in configs for name in datasets]
    rank_in_source: dict[str, int] = {}
    ranked = []
    for name in datasets:
        source = rows[name]["source"]
        ranked.append((rank_in_source.get(source, 0), source, name))
        rank_in_source[source] = rank_in_source.get(source, 0) + 1
    return [(config, name) for _, _, name in sorted(ranked) for config in configs]


def _job(name: str, data_dir: Path, config: dict, run_dir: Path, builder: "Builder", plan_paths: dict,
         work: Path, time_budget: float, code_dir: str | Path) -> dict:
    """What a worker needs for one run (plain data, so it travels to a dask worker)."""
    return {
        "dataset": name,
        "source": builder.db["datasets"][name]["source"],
        "data_dir": str(data_dir.resolve()),
        "config_id": config["config_id"],
        "config": {"name": config["name"], "plan": config["plan"]},
        "plan_path": str(plan_paths[config["config_id"]]),
        "out_dir": str(work / run_dir),
        # Recorded relative to the work folder: the database must mean the same on any machine.
        "record_dir": run_dir.as_posix(),
        "time_budget": float(time_budget),
        "code_dir": str(Path(code_dir).resolve()),
        "code_version": builder.db["builds"][-1]["code_version"],
    }


def build(
    suite: str | Path,
    configs: list[dict],
    time_budget: float,
    out: str | Path,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    tasks: list[str] | None = None,
    only: list[str] | None = None,
    order: str = "config",
    work: str | Path = "results/offline",
    code_dir: str | Path = PROJECT_DIR,
    command: str = "",
    progress: bool = True,
    repeats: int = 1,
) -> BuildSummary:
    """Run every missing (dataset, config) at `time_budget` and record it in the database `out`.

    `configs` come from `offline_meta.configs.load_configs`; with `only` (config names), just
    those run, but every configuration's name and plan is recorded, so a renamed plan's runs
    take its new name whichever configurations run. `order` is "config" (every dataset of
    one configuration before the next) or "dataset" (every configuration of one dataset
    before the next, the datasets taken in turn from each source). `jobs` runs at once (default 1,
    or every worker thread of a dask cluster). Paths given to workers are absolute: with
    a remote scheduler, `suite`, `work` and `code_dir` must be on a filesystem they share.
    With `repeats`, each cell is run until it has that many runs; the n-th run of a cell
    (n >= 2) writes to `<config_id>-r<n>` beside the first's folder.
    """
    if not time_budget > 0:
        raise BuildError(f"time_budget must be > 0 seconds, got {time_budget!r}")
    if jobs == 0:
        raise BuildError("jobs must be a positive number of runs, or negative for all cores or workers, got 0")
    if order not in RUN_ORDERS:
        raise BuildError(f"order must be one of {RUN_ORDERS}, got {order!r}")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise BuildError(f"repeats must be an int >= 1 (runs per dataset and configuration), got {repeats!r}")
    if only is not None:
        unknown = sorted(set(only) - {config["name"] for config in configs})
        if unknown:
            raise BuildError(f"no configuration named {unknown}; the configs are {[c['name'] for c in configs]}")
    datasets = discover_datasets(Path(suite), tasks)
    builder = Builder(Path(out), command, time_budget, code_version(Path(code_dir)))
    builder.add_configs(configs)
    if only is not None:
        configs = [config for config in configs if config["name"] in only]
    for name, data_dir in datasets.items():
        builder.ensure_dataset(name, data_dir)

    work = Path(work).resolve()
    plan_paths = {}
    for config in configs:
        plan_paths[config["config_id"]] = work / "plans" / f"{config['config_id']}.json"
        atomic_write_json(plan_paths[config["config_id"]], config["plan"])
    summary = BuildSummary()
    job_list = []
    for config, name in run_order(configs, datasets, builder.db["datasets"], order):
        data_dir = datasets[name]
        have = builder.done[run_key(name, config["config_id"], time_budget)]
        summary.skipped += min(have, repeats)
        for repeat in range(have + 1, repeats + 1):
            folder = config["config_id"] if repeat == 1 else f"{config['config_id']}-r{repeat}"
            run_dir = Path("runs") / f"T{time_budget:g}" / name / folder
            job_list.append(_job(name, data_dir, config, run_dir, builder, plan_paths, work, time_budget, code_dir))
    if not job_list:
        return summary

    n_jobs = jobs if jobs is not None else (-1 if scheduler else 1)
    with (
        _backend(scheduler, n_jobs) as slots,
        tqdm(total=len(job_list), unit="run", desc="runs", disable=not progress, file=sys.stderr) as bar,
    ):
        bar.set_postfix(running=min(slots, len(job_list)), left=len(job_list))
        results = Parallel(n_jobs=n_jobs, prefer="threads", batch_size=1, return_as="generator_unordered")(
            delayed(run_one)(job) for job in job_list
        )
        for outcome in results:
            if "record" in outcome:
                builder.add_record(outcome["record"])
                summary.recorded += 1
            else:
                summary.failures.append(outcome["failure"])
                bar.write(f"not recorded: {outcome['failure']}")
            bar.update(1)
            left = len(job_list) - bar.n
            bar.set_postfix(running=min(slots, left), left=left)
    return summary

