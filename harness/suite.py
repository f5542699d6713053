"""Benchmark suite: one AutoSpeech dataset per task of the corpora in `../shared/corpora`.

Each source folder holds `clips/*.ogg`, `manifest.csv` (one row per clip, one column per
label kind) and `tasks.json` (task -> label column, domain, optional `min_per_class`). A
task becomes `<out>/<task>/<task>.data` + `<task>.solution` (so `--dataset <out>/<task>`
resolves to exactly one dataset), plus two files the model never sees, beside the hidden
solution: `labels.json` (class names in column order) and `files.json` (the source clip
of every train/test row, in pickle order).

    python -m harness.suite list
    python -m harness.suite build --out data/suite [--tasks fsdd_digit ...] [--max-per-class 20]

The split is stratified and deterministic: in every class, sorted by file and permuted
with a fixed seed, `max(1, round(0.2 n))` clips go to test and the rest to train. A
fingerprint of the manifest rows used and the split parameters lands in meta.json, so a
rebuild skips datasets that are up to date. A source's audio is decoded once per build,
in parallel, and shared by all its tasks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.audio_io import decode_parallel, read_audio
from harness.dataset import atomic_write_json, check_clip, read_json_object, solution_path, write_dataset
from harness.errors import DatasetError

SUITE_VERSION = 1  # bump when the build changes what a dataset holds for the same inputs
SAMPLE_RATE = 16000
TIME_BUDGET_S = 1800
TEST_FRACTION = 0.2
SEED = 0
N_JOBS = 2
DEFAULT_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
DEFAULT_OUT = Path("data/suite")


class SuiteWarning(UserWarning):
    """Rows or classes of a task were dropped while building the suite."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a source's tasks.json."""

    name: str
    source: str
    source_dir: Path
    label: str
    domain: str
    description: str = ""
    min_per_class: int = 1


@dataclass
class TaskPlan:
    """What one dataset will hold: its classes, train/test rows (in pickle order) and fingerprint."""

    spec: TaskSpec
    classes: list
    train: pd.DataFrame
    test: pd.DataFrame
    fingerprint: str
    params: dict


# --------------------------------------------------------------------------- tasks and manifests


def discover_tasks(corpora: str | Path) -> list[TaskSpec]:
    """Every task of every `<source>/tasks.json` under `corpora`, sorted by source then file order."""
    corpora = Path(corpora)
    if not corpora.is_dir():
        raise DatasetError(f"{corpora}: corpora directory not found")
    specs = []
    for tasks_path in sorted(corpora.glob("*/tasks.json")):
        source_dir = tasks_path.parent
        tasks = read_json_object(tasks_path, "a JSON object of tasks")
        for name, task in tasks.items():
            if not isinstance(task, dict) or "label" not in task:
                raise DatasetError(f"{tasks_path}: task {name!r} must be an object with a 'label' column")
            min_per_class = task.get("min_per_class", 1)
            if not isinstance(min_per_class, int) or min_per_class < 1:
                raise DatasetError(f"{tasks_path}: task {name!r}: min_per_class must be an integer >= 1, got {min_per_class!r}")
            specs.append(
                TaskSpec(
                    name=name,
                    source=source_dir.name,
                    source_dir=source_dir.resolve(),
                    label=str(task["label"]),
                    domain=str(task.get("domain", "")),
                    description=str(task.get("description", "")),
                    min_per_class=min_per_class,
                )
            )
    if not specs:
        raise DatasetError(f"{corpora}: no <source>/tasks.json found")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"{corpora}: task names must be unique across sources, got duplicates {duplicates}")
    return specs


def select_specs(specs: list[TaskSpec], names: list[str] | None) -> list[TaskSpec]:
    """The specs named in `names` (all when None), in discovery order; unknown names are an error."""
    if not names:
        return list(specs)
    known = {spec.name for spec in specs}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DatasetError(f"unknown task(s) {unknown}; available: {sorted(known)}")
    return [spec for spec in specs if spec.name in set(names)]


def read_manifest(source_dir: str | Path) -> pd.DataFrame:
    """A source's manifest.csv with every column as a string (labels like '05' stay '05')."""
    path = Path(source_dir) / "manifest.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: missing manifest.csv")
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    if "file" not in manifest.columns:
        raise DatasetError(f"{path}: must have a 'file' column, got {list(manifest.columns)}")
    if manifest["file"].isna().any() or manifest["file"].duplicated().any():
        raise DatasetError(f"{path}: the 'file' column must be filled and unique")
    return manifest


def _class_rng(seed: int, label: str, salt: int) -> np.random.Generator:
    """A generator that depends only on the seed, the class and the purpose, not on other classes."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), salt])


def select_clips(
    spec: TaskSpec, manifest: pd.DataFrame, *, max_per_class: int | None = None, seed: int = SEED
) -> pd.DataFrame:
    """The manifest rows a task uses, sorted by file: labelled, `min_per_class` honoured, capped, splittable."""
    if spec.label not in manifest.columns:
        raise DatasetError(
            f"{spec.source_dir / 'manifest.csv'}: task {spec.name} needs label column {spec.label!r}, "
            f"got columns {list(manifest.columns)}"
        )
    rows = manifest.sort_values("file", kind="mergesort")
    unlabelled = rows[spec.label].isna()
    if unlabelled.any():
        warnings.warn(f"{spec.name}: dropped {int(unlabelled.sum())} clip(s) with no {spec.label!r} label", SuiteWarning, stacklevel=2)
        rows = rows[~unlabelled]
    counts = rows[spec.label].value_counts()
    rows = rows[rows[spec.label].isin(counts.index[counts >= spec.min_per_class])]
    if max_per_class is not None:
        if max_per_class < 2:
            raise DatasetError(f"max_per_class must be >= 2 (one train and one test clip), got {max_per_class!r}")
        kept = []
        for label, group in rows.groupby(spec.label, sort=True):
            if len(group) > max_per_class:
                pick = np.sort(_class_rng(seed, label, 0).permutation(len(group))[:max_per_class])
                group = group.iloc[pick]
            kept.append(group)
        rows = pd.concat(kept) if kept else rows.iloc[:0]
    counts = rows[spec.label].value_counts()
    lonely = sorted(counts.index[counts < 2])
    if lonely:
        warnings.warn(
            f"{spec.name}: dropped {len(lonely)} class(es) with a single clip (cannot be in both train and test): {lonely}",
            SuiteWarning,
            stacklevel=2,
        )
        rows = rows[~rows[spec.label].isin(lonely)]
    if rows[spec.label].nunique() < 2:
        raise DatasetError(
            f"{spec.source_dir / 'manifest.csv'}: task {spec.name} must keep at least 2 classes of >= "
            f"{max(2, spec.min_per_class)} clips, got {rows[spec.label].nunique()}"
        )
    return rows.sort_values("file", kind="mergesort").reset_index(drop=True)


def split_clips(
    selection: pd.DataFrame,
    label: str,
    *,
    where: str = "selection",
    test_fraction: float = TEST_FRACTION,
    seed: int = SEED,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified deterministic split: per class `max(1, round(f n))` test clips; both parts shuffled.

    `where` names the clips' origin (e.g. manifest and task) in errors, so a failing build says where to look.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    train_parts, test_parts = [], []
    selection = selection.sort_values("file", kind="mergesort")  # the split must not depend on row order
    for name, group in selection.groupby(label, sort=True):
        n = len(group)
        if n < 2:
            raise DatasetError(f"{where}: class {name!r} must have >= 2 clips to be split, got {n}")
        n_test = min(n - 1, max(1, math.floor(test_fraction * n + 0.5)))
        order = _class_rng(seed, name, 1).permutation(n)
        test_parts.append(group.iloc[np.sort(order[:n_test])])
        train_parts.append(group.iloc[np.sort(order[n_test:])])
    train, test = pd.concat(train_parts), pd.concat(test_parts)
    rng = np.random.default_rng([seed, 2])
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    test = test.iloc[rng.permutation(len(test))].reset_index(drop=True)
    return train, test


def task_fingerprint(spec: TaskSpec, selection: pd.DataFrame, params: dict) -> str:
    """Short hash of the manifest rows used, the task definition and the split/meta parameters."""
    payload = {
        "suite_version": SUITE_VERSION,
        "task": [spec.name, spec.source, spec.label, spec.domain, spec.min_per_class],
        "params": params,
        "columns": list(selection.columns),
        "rows": selection.fillna("").to_numpy().tolist(),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def plan_task(
    spec: TaskSpec,
    manifest: pd.DataFrame,
    *,
    time_budget: float = TIME_BUDGET_S,
    max_per_class: int | None = None,
    test_fraction: float = TEST_FRACTION,
    seed: int = SEED,
) -> TaskPlan:
    """Select, split and fingerprint one task without touching audio."""
    selection = select_clips(spec, manifest, max_per_class=max_per_class, seed=seed)
    train, test = split_clips(
        selection,
        spec.label,
        where=f"{spec.source_dir / 'manifest.csv'}: task {spec.name}",
        test_fraction=test_fraction,
        seed=seed,
    )
    params = {
        "time_budget": time_budget,
        "max_per_class": max_per_class,
        "test_fraction": test_fraction,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
    }
    classes = sorted(selection[spec.label].unique())
    return TaskPlan(spec, classes, train, test, task_fingerprint(spec, selection, params), params)


# --------------------------------------------------------------------------- on-disk layout


def task_dir(out: str | Path, name: str) -> Path:
    """The folder of one task's dataset: `<out>/<name>` holding `<name>.data` and `<name>.solution`."""
    return Path(out) / name


def built_fingerprint(out: str | Path, name: str) -> str | None:
    """The fingerprint of the complete dataset built for `name`, or None if absent or incomplete."""
    root = task_dir(out, name)
    data_dir = root / f"{name}.data"
    needed = [data_dir / f for f in ("train.pkl", "test.pkl", "train.solution")]
    needed += [solution_path(data_dir), root / "labels.json", root / "files.json"]
    if not all(path.is_file() for path in needed):
        return None
    try:
        meta = json.loads((data_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("fingerprint") if isinstance(meta, dict) else None


def is_up_to_date(plan: TaskPlan, out: str | Path) -> bool:
    """True when the dataset on disk was built from exactly this plan's rows and parameters."""
    return built_fingerprint(out, plan.spec.name) == plan.fingerprint


# --------------------------------------------------------------------------- decoding


def decode_clip(path: str | Path) -> np.ndarray:
    """One clip as a 1-D float32 array; DatasetError naming the file if missing, corrupt, not 16 kHz mono."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing clip file")
    wave, sr = read_audio(path)
    if sr != SAMPLE_RATE:
        raise DatasetError(f"{path}: sample rate must be {SAMPLE_RATE} Hz, got {sr}")
    if wave.ndim == 2:
        if wave.shape[1] != 1:
            raise DatasetError(f"{path}: must be mono, got {wave.shape[1]} channels")
        wave = wave[:, 0]
    check_clip(wave, str(path))
    return np.ascontiguousarray(wave, dtype=np.float32)


def decode_clips(
    paths: list[str | Path], *, n_jobs: int = N_JOBS, desc: str = "decoding", progress: bool = True
) -> list[np.ndarray]:
    """Decode clips in parallel processes over chunks of files, in order, with a progress bar."""
    return list(decode_parallel(paths, decode_clip, n_jobs=n_jobs, desc=desc, progress=progress))


# --------------------------------------------------------------------------- building


def _rows_record(rows: pd.DataFrame, label: str, audio: dict[str, np.ndarray]) -> list[dict]:
    return [
        {"file": file, "label": value, "duration_s": round(len(audio[file]) / SAMPLE_RATE, 4)}
        for file, value in zip(rows["file"], rows[label])
    ]


def write_task(plan: TaskPlan, out: str | Path, audio: dict[str, np.ndarray]) -> Path:
    """Write one planned dataset from decoded audio (file -> wave); meta.json is written last."""
    spec = plan.spec
    root = task_dir(out, spec.name)
    data_dir = root / f"{spec.name}.data"
    (data_dir / "meta.json").unlink(missing_ok=True)  # incomplete until write_dataset finishes
    column = {label: index for index, label in enumerate(plan.classes)}
    eye = np.eye(len(plan.classes), dtype=int)
    y_train = eye[[column[value] for value in plan.train[spec.label]]]
    y_test = eye[[column[value] for value in plan.test[spec.label]]]
    atomic_write_json(root / "labels.json", list(plan.classes))
    atomic_write_json(
        root / "files.json",
        {
            "task": spec.name,
            "source": spec.source,
            "source_dir": str(spec.source_dir),
            "label": spec.label,
            "fingerprint": plan.fingerprint,
            "train": _rows_record(plan.train, spec.label, audio),
            "test": _rows_record(plan.test, spec.label, audio),
        },
    )
    meta = {
        "class_num": len(plan.classes),
        "train_num": len(plan.train),
        "test_num": len(plan.test),
        "time_budget": plan.params["time_budget"],
        "sample_rate": SAMPLE_RATE,
        "task": spec.name,
        "source": spec.source,
        "domain": spec.domain,
        "label": spec.label,
        "suite_version": SUITE_VERSION,
        "fingerprint": plan.fingerprint,
        "split": {k: plan.params[k] for k in ("test_fraction", "seed", "max_per_class")},
    }
    return write_dataset(
        root,
        spec.name,
        meta,
        [audio[file] for file in plan.train["file"]],
        y_train,
        [audio[file] for file in plan.test["file"]],
        y_test,
    )


def dataset_summary(out: str | Path, name: str) -> dict:
    """Counts and clip durations of one built dataset, from its meta.json and files.json."""
    root = task_dir(out, name)
    meta = json.loads((root / f"{name}.data" / "meta.json").read_text())
    files = json.loads((root / "files.json").read_text())
    durations = np.array([row["duration_s"] for row in files["train"] + files["test"]])
    return {
        "task": name,
        "source": meta.get("source", ""),
        "domain": meta.get("domain", ""),
        "classes": meta["class_num"],
        "train": meta["train_num"],
        "test": meta["test_num"],
        "hours": float(durations.sum() / 3600),
        "dur_min_s": float(durations.min()),
        "dur_median_s": float(np.median(durations)),
        "dur_max_s": float(durations.max()),
    }


def _build_source(
    plans: list[TaskPlan], out: Path, *, force: bool, n_jobs: int, progress: bool
) -> dict[str, str]:
    """Build the stale plans of one source, decoding the union of their clips once; name -> status."""
    stale = [plan for plan in plans if force or not is_up_to_date(plan, out)]
    status = {plan.spec.name: "up to date" for plan in plans}
    if not stale:
        return status
    source = stale[0].spec.source
    source_dir = stale[0].spec.source_dir
    files = sorted(set().union(*(set(plan.train["file"]) | set(plan.test["file"]) for plan in stale)))
    waves = decode_clips(
        [source_dir / file for file in files], n_jobs=n_jobs, desc=f"{source}: {len(files)} clips", progress=progress
    )
    audio = dict(zip(files, waves))
    for plan in stale:
        write_task(plan, out, audio)
        status[plan.spec.name] = "built"
    return status


def build_suite(
    corpora: str | Path = DEFAULT_CORPORA,
    out: str | Path = DEFAULT_OUT,
    *,
    tasks: list[str] | None = None,
    time_budget: float = TIME_BUDGET_S,
    max_per_class: int | None = None,
    force: bool = False,
    n_jobs: int = N_JOBS,
    progress: bool = True,
) -> list[dict]:
    """Build every (or every named) task's dataset, one source at a time; return one summary row each."""
    out = Path(out)
    specs = select_specs(discover_tasks(corpora), tasks)
    rows = []
    for source in dict.fromkeys(spec.source for spec in specs):
        group = [spec for spec in specs if spec.source == source]
        manifest = read_manifest(group[0].source_dir)
        plans = [plan_task(s, manifest, time_budget=time_budget, max_per_class=max_per_class) for s in group]
        start = time.monotonic()
        status = _build_source(plans, out, force=force, n_jobs=n_jobs, progress=progress)
        elapsed = time.monotonic() - start
        for spec in group:
            rows.append({**dataset_summary(out, spec.name), "status": status[spec.name], "source_build_s": elapsed})
    return rows


# --------------------------------------------------------------------------- tables and CLI


def format_build_table(rows: list[dict]) -> str:
    """A markdown table of built datasets: source, domain, classes, counts, hours, clip durations."""
    lines = [
        "| task | source | domain | classes | train | test | hours | clip s min / median / max | status |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['task']} | {row['source']} | {row['domain']} | {row['classes']} | {row['train']} | "
            f"{row['test']} | {row['hours']:.2f} | {row['dur_min_s']:.2f} / {row['dur_median_s']:.2f} / "
            f"{row['dur_max_s']:.2f} | {row['status']} |"
        )
    return "\n".join(lines)


def list_tasks(
    corpora: str | Path = DEFAULT_CORPORA,
    out: str | Path = DEFAULT_OUT,
    *,
    time_budget: float = TIME_BUDGET_S,
    max_per_class: int | None = None,
) -> list[dict]:
    """Every available task with its size and whether `out` holds it built and up to date."""
    rows = []
    manifests: dict[Path, pd.DataFrame] = {}
    for spec in discover_tasks(corpora):
        if spec.source_dir not in manifests:
            manifests[spec.source_dir] = read_manifest(spec.source_dir)
        plan = plan_task(spec, manifests[spec.source_dir], time_budget=time_budget, max_per_class=max_per_class)
        built = built_fingerprint(out, spec.name)
        rows.append(
            {
                "task": spec.name,
                "source": spec.source,
                "domain": spec.domain,
                "label": spec.label,
                "classes": len(plan.classes),
                "clips": len(plan.train) + len(plan.test),
                "built": "up to date" if built == plan.fingerprint else ("not built" if built is None else "stale"),
            }
        )
    return rows


def format_list_table(rows: list[dict]) -> str:
    """A markdown table of the tasks `list_tasks` found."""
    lines = ["| task | source | domain | label | classes | clips | built |", "|---|---|---|---|---:|---:|---|"]
    lines += [
        f"| {r['task']} | {r['source']} | {r['domain']} | {r['label']} | {r['classes']} | {r['clips']} | {r['built']} |"
        for r in rows
    ]
    return "\n".join(lines)


def _budget(text: str) -> float | int:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"time budget must be > 0 seconds, got {text!r}")
    return int(value) if value.is_integer() else value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpora", default=str(DEFAULT_CORPORA), help="folder of <source>/ corpora (default: ../shared/corpora)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="suite root: one <task>/ folder per dataset (default: data/suite)")
    parser.add_argument("--time-budget", type=_budget, default=TIME_BUDGET_S, help="meta.json time_budget, seconds (default 1800)")
    parser.add_argument("--max-per-class", type=int, default=None, metavar="N", help="cap clips per class, deterministic (default: no cap)")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m harness.suite` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m harness.suite", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or bring up to date) one dataset per task",
                                description="Build one AutoSpeech dataset per task; datasets already up to date are skipped.")
    _add_common(build)
    build.add_argument("--tasks", nargs="+", metavar="NAME", help="only these tasks (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even datasets that are up to date")
    build.add_argument("--jobs", type=int, default=N_JOBS, help=f"decoding processes (default {N_JOBS})")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    listing = commands.add_parser("list", help="show every available task and whether it is built and up to date",
                                  description="List every task of the corpora; 'up to date' means build would skip it "
                                  "with the same --time-budget and --max-per-class.")
    _add_common(listing)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            print(format_list_table(list_tasks(args.corpora, args.out, time_budget=args.time_budget,
                                               max_per_class=args.max_per_class)))
            return 0
        start = time.monotonic()
        rows = build_suite(
            args.corpora, args.out, tasks=args.tasks, time_budget=args.time_budget, max_per_class=args.max_per_class,
            force=args.force, n_jobs=args.jobs, progress=not args.no_progress,
        )
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    built = sum(row["status"] == "built" for row in rows)
    print(format_build_table(rows))
    print(f"\n{built} built, {len(rows) - built} up to date, in {time.monotonic() - start:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
