"""Practice tasks derived from built suite tasks, the way meta-datasets are made: fewer classes,
fewer training clips, shorter clips, each from a real recording set.

    python -m harness.derive --suite data/suite --spec harness/derived_tasks.json --out data/derived [--dry-run]
    python -m harness.derive --suite data/suite --tasks ravdess_speaker --per-class 1 2 5 --out data/fewshot

A spec is a JSON list of derivations, each an object naming a suite task (its folder under
`--suite`) and the steps to apply, e.g. `{"task": "ravdess_emotion", "classes": 4,
"per_class": 5, "seed": 0}`. Steps run in this order, each drawn with the entry's seed:

- `classes`: a random subset of n classes, in both splits; label columns re-indexed, kept in order;
- `train_fraction`: that fraction of each class's training clips (rounded, at least one);
- `per_class`: at most k training clips per class;
- `crop_s`: every clip, train and test, cut to at most that many seconds (a random window).

The test set loses clips only to the class subset, so tasks of one parent share test clips.
`--tasks/--per-class` is a spec of one `per_class` entry per task and k (seed `--seed`).

Each task is written as `<out>/<name>/<name>.data` (+ `<name>.solution`, and `labels.json`,
`files.json` when the parent has them) in the suite layout, so `python -m harness bench
--suite <out>` and `python -m offline_meta build --suite <out>` run them. The name is the
parent's with the steps appended: `_c<n>`, `_f<percent>`, `_k<k>`, `_crop<s>s`, then `_s<seed>`
unless the seed is 0 (`ravdess_emotion_c4_k5`, `saa_accent_crop3s`). meta.json keeps the
parent's `source` (the hold-out unit of leave-one-source-out; the parent's name when it has
none, so derived tasks are held out with their parent), and adds `derived_from`, `derivation`
(the steps and seed) and a fingerprint of parent and derivation. A rerun skips tasks whose
fingerprint matches. A task is built under `<out>/.partial/` and renamed into place, so a
killed run leaves no half-written task and the next run continues where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.audio_import import stale_folders
from harness.dataset import Dataset, atomic_write_json, read_dataset, read_meta, resolve_data_dir, write_dataset
from harness.errors import DatasetError, HarnessError
from portfolio.checks import is_int, is_number

DERIVE_VERSION = 1  # bump when the same derivation would write different data
STEPS = ("classes", "train_fraction", "per_class", "crop_s")
PARTIAL = ".partial"  # where tasks are built before they are renamed into place


# Allowed values of each spec key: (rule in words, check).
RULES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "classes": ("an int >= 2", lambda v: is_int(v, 2)),
    "train_fraction": ("a number in (0, 1)", lambda v: is_number(v) and 0 < v < 1),
    "per_class": ("an int >= 1", lambda v: is_int(v, 1)),
    "crop_s": ("a number of seconds > 0", lambda v: is_number(v) and v > 0),
    "seed": ("an int >= 0", lambda v: is_int(v, 0)),
}


@dataclass(frozen=True)
class Derivation:
    """One spec entry: the parent task and the steps to apply (None: step not applied)."""

    task: str
    classes: int | None = None
    train_fraction: float | None = None
    per_class: int | None = None
    crop_s: float | None = None
    seed: int = 0

    def record(self) -> dict:
        """The steps applied and the seed, as meta.json's `derivation` holds them."""
        steps = {step: getattr(self, step) for step in STEPS if getattr(self, step) is not None}
        if "crop_s" in steps:
            steps["crop_s"] = float(steps["crop_s"])
        return {**steps, "seed": self.seed}

    def suffix(self) -> str:
        """The name suffix that says what was applied, e.g. `_c4_k5` or `_crop3s_s1`."""
        parts = []
        if self.classes is not None:
            parts.append(f"c{self.classes}")
        if self.train_fraction is not None:
            parts.append(f"f{100 * self.train_fraction:g}")
        if self.per_class is not None:
            parts.append(f"k{self.per_class}")
        if self.crop_s is not None:
            parts.append(f"crop{self.crop_s:g}s")
        if self.seed:
            parts.append(f"s{self.seed}")
        return "".join(f"_{part}" for part in parts)


@dataclass(frozen=True)
class PlannedTask:
    """A derived task checked against its parent's meta.json, before any audio is read."""

    name: str
    source: str
    parent_dir: Path  # the parent's `<name>.data` directory
    parent_meta: dict
    derivation: Derivation
    fingerprint: str


# --------------------------------------------------------------------------- the steps, on labels and clips


def _draw_per_class(y_onehot: np.ndarray, how_many: Callable[[int], int], seed: int) -> np.ndarray:
    """Sorted indices of a seeded random draw of `how_many(n)` rows of each class that has n rows."""
    y = np.argmax(y_onehot, axis=1)
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(rows)[: how_many(len(rows))] for rows in (np.flatnonzero(y == c) for c in np.unique(y))]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int)


def cap_per_class(y_onehot: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `per_class` rows of each class, drawn at random (seeded)."""
    if not RULES["per_class"][1](per_class):
        raise HarnessError(f"per_class must be an int >= 1, got {per_class!r}")
    return _draw_per_class(y_onehot, lambda n: per_class, seed)


def cap_fraction(y_onehot: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of `fraction` of each class's rows (rounded, at least 1), drawn at random (seeded).

    Unlike `cap_per_class` this keeps the class proportions: a smaller training set of the same shape.
    """
    if not RULES["train_fraction"][1](fraction):
        raise HarnessError(f"train_fraction must be a number in (0, 1), got {fraction!r}")
    return _draw_per_class(y_onehot, lambda n: max(1, math.floor(fraction * n + 0.5)), seed)


def choose_classes(class_num: int, n: int, seed: int) -> np.ndarray:
    """Sorted label columns of a seeded random subset of `n` of `class_num` classes (sorted: the kept keep their order)."""
    if not (is_int(n) and 2 <= n <= class_num):
        raise HarnessError(f"classes must be an int in [2, {class_num}] (the parent's class_num), got {n!r}")
    return np.sort(np.random.default_rng(seed).choice(class_num, size=n, replace=False))


def rows_of_classes(y_onehot: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows whose class is one of `columns`."""
    return np.flatnonzero(np.isin(np.argmax(y_onehot, axis=1), columns))


def select_rows(
    y_train: np.ndarray, y_test: np.ndarray, derivation: Derivation
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train rows, test rows and label columns that `derivation` keeps (its steps on labels; crops aside)."""
    class_num = y_train.shape[1]
    columns = np.arange(class_num)
    if derivation.classes is not None:
        columns = choose_classes(class_num, derivation.classes, derivation.seed)
    train, test = rows_of_classes(y_train, columns), rows_of_classes(y_test, columns)
    if derivation.train_fraction is not None:
        train = train[cap_fraction(y_train[train], derivation.train_fraction, derivation.seed)]
    if derivation.per_class is not None:
        train = train[cap_per_class(y_train[train], derivation.per_class, derivation.seed)]
    return train, test, columns


def crop_offsets(lengths: Sequence[int], max_samples: int, seed: int | Sequence[int]) -> np.ndarray:
    """First sample of each clip's crop: uniform over the starts where `max_samples` fit (0 for shorter clips).

    A random window rather than the start: speech clips often open with silence, and all
    saa_accent speakers read the same passage, so crops at the start would hold silence or
    the same few words in every class. Seeded, so a task is the same on every machine.
    """
    if not is_int(max_samples, 1):
        raise HarnessError(f"max_samples must be an int >= 1, got {max_samples!r}")
    slack = np.maximum(np.asarray(lengths, dtype=np.int64) - max_samples, 0)
    return np.random.default_rng(seed).integers(0, slack + 1)


# --------------------------------------------------------------------------- the spec and the plan


def read_spec(path: str | Path) -> list:
    """The list of derivations in a spec file; HarnessError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: spec file not found")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HarnessError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(spec, list) or not spec:
        raise HarnessError(f"{path}: must hold a non-empty list of derivations, got {type(spec).__name__}")
    return spec


def parse_entry(entry: object, where: str) -> Derivation:
    """A spec entry as a Derivation, every key checked; errors start with `where` and the task."""
    if not isinstance(entry, dict):
        raise HarnessError(f"{where}: must be an object like {{\"task\": \"fsdd_digit\", \"per_class\": 5}}, got {entry!r}")
    task = entry.get("task")
    if not isinstance(task, str) or not task:
        raise HarnessError(f"{where}: 'task' must name a suite task, got {task!r}")
    where = f"{where} ({task})"
    unknown = sorted(set(entry) - {"task", *RULES})
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {unknown}; allowed: {['task', *RULES]}")
    for key, value in entry.items():
        if key != "task" and not RULES[key][1](value):
            raise HarnessError(f"{where}: {key} must be {RULES[key][0]}, got {value!r}")
    if not any(step in entry for step in STEPS):
        raise HarnessError(f"{where}: derives nothing; give at least one of {list(STEPS)}")
    return Derivation(**entry)


def derived_fingerprint(parent_name: str, parent_meta: dict, derivation: Derivation) -> str:
    """Short hash of the parent (its name and build fingerprint) and the derivation: equal means same data."""
    payload = {
        "derive_version": DERIVE_VERSION,
        "parent": parent_name,
        "parent_fingerprint": parent_meta.get("fingerprint"),
        "derivation": derivation.record(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def plan_task(parent_dir: Path, derivation: Derivation, where: str) -> PlannedTask:
    """Check `derivation` against the parent's meta.json (no audio read) and name its task."""
    meta = read_meta(parent_dir)
    if derivation.classes is not None and derivation.classes > meta["class_num"]:
        raise HarnessError(
            f"{where}: classes must be <= {meta['class_num']} (the classes of {parent_dir}), got {derivation.classes}"
        )
    parent_name = parent_dir.name[: -len(".data")]
    return PlannedTask(
        name=parent_name + derivation.suffix(),
        source=str(meta.get("source") or parent_name),
        parent_dir=parent_dir,
        parent_meta=meta,
        derivation=derivation,
        fingerprint=derived_fingerprint(parent_name, meta, derivation),
    )


def parent_data_dir(suite: Path, task: str, where: str) -> Path:
    """The `.data` directory of suite task `task`; HarnessError listing the tasks there otherwise."""
    if not suite.is_dir():
        raise HarnessError(f"{where}: suite folder {str(suite)!r} not found (build it with python -m harness.suite build)")
    folder = suite / task
    if not folder.is_dir():
        available = sorted(p.name for p in suite.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise HarnessError(f"{where}: unknown task {task!r}, no folder {folder}; available: {available}")
    return resolve_data_dir(folder)


def plan_tasks(suite: str | Path, entries: list, where: str) -> list[PlannedTask]:
    """Every entry checked and named, reading only the parents' meta.json: the dry run.

    Errors name `where` (the spec file) and the entry, counted from 1.
    """
    plans: list[PlannedTask] = []
    first_entry: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        at = f"{where}: entry {number}"
        derivation = parse_entry(entry, at)
        at = f"{at} ({derivation.task})"
        try:
            plan = plan_task(parent_data_dir(Path(suite), derivation.task, at), derivation, at)
        except DatasetError as error:  # the parent's folder or meta.json is broken
            raise HarnessError(f"{at}: {error}") from error
        if plan.name in first_entry:
            raise HarnessError(f"{at}: makes task {plan.name!r} again (entry {first_entry[plan.name]})")
        first_entry[plan.name] = number
        plans.append(plan)
    return plans


def estimate_mb(plan: PlannedTask) -> float | None:
    """MiB of float32 clips the task will hold, from the parent's labels.json and files.json (no audio); None without them."""
    root = plan.parent_dir.parent
    try:
        classes = json.loads((root / "labels.json").read_text())
        files = json.loads((root / "files.json").read_text())
        column = {label: index for index, label in enumerate(classes)}
        labels = {split: [column[row["label"]] for row in files[split]] for split in ("train", "test")}
        seconds = np.array([row["duration_s"] for split in ("train", "test") for row in files[split]])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    eye = np.eye(len(classes))
    train, test, _ = select_rows(eye[labels["train"]], eye[labels["test"]], plan.derivation)
    seconds = seconds[np.concatenate([train, len(labels["train"]) + test])]
    if plan.derivation.crop_s is not None:
        seconds = np.minimum(seconds, plan.derivation.crop_s)
    return float(seconds.sum() * plan.parent_meta.get("sample_rate", 16000) * 4 / 2**20)


# --------------------------------------------------------------------------- writing


def _cropped(clips: list, crop_s: float | None, sample_rate: int, seed: Sequence[int]) -> tuple[list, np.ndarray]:
    """The clips cut to at most `crop_s` seconds (all of them when None) and each one's offset in samples."""
    if crop_s is None:
        return clips, np.zeros(len(clips), dtype=np.int64)
    max_samples = max(1, round(crop_s * sample_rate))
    offsets = crop_offsets([len(clip) for clip in clips], max_samples, seed)
    return [clip[start : start + max_samples] for clip, start in zip(clips, offsets)], offsets


def _file_rows(rows: list, picked: np.ndarray, clips: list, offsets: np.ndarray, sample_rate: int) -> list[dict]:
    """The parent's files.json rows of the picked clips, with each crop's offset and duration."""
    return [
        {**rows[index], "offset_s": round(int(start) / sample_rate, 6), "duration_s": round(len(clip) / sample_rate, 4)}
        for index, clip, start in zip(picked, clips, offsets)
    ]


def write_task(parent: Dataset, plan: PlannedTask, root: Path) -> Path:
    """Write `plan`'s task from its parent's data into the task folder `root`; returns its `.data` directory."""
    derivation = plan.derivation
    sample_rate = int(parent.meta.get("sample_rate", 16000))
    train, test, columns = select_rows(parent.y_train, parent.y_test, derivation)
    crop_s, seed = derivation.crop_s, derivation.seed
    x_train, train_offsets = _cropped([parent.x_train[i] for i in train], crop_s, sample_rate, [seed, 0])
    x_test, test_offsets = _cropped([parent.x_test[i] for i in test], crop_s, sample_rate, [seed, 1])
    meta = {
        **parent.meta,
        "task": plan.name,
        "source": plan.source,
        "derived_from": parent.name,
        "derivation": derivation.record(),
        "derive_version": DERIVE_VERSION,
        "fingerprint": plan.fingerprint,
    }
    data_dir = write_dataset(
        root, plan.name, meta,
        x_train, parent.y_train[np.ix_(train, columns)], x_test, parent.y_test[np.ix_(test, columns)],
    )
    parent_root = parent.data_dir.parent
    if (parent_root / "labels.json").is_file():
        classes = json.loads((parent_root / "labels.json").read_text())
        atomic_write_json(root / "labels.json", [classes[c] for c in columns])
    if (parent_root / "files.json").is_file():
        files = json.loads((parent_root / "files.json").read_text())
        atomic_write_json(root / "files.json", {
            "task": plan.name,
            "source": plan.source,
            "derived_from": parent.name,
            "derivation": derivation.record(),
            "train": _file_rows(files["train"], train, x_train, train_offsets, sample_rate),
            "test": _file_rows(files["test"], test, x_test, test_offsets, sample_rate),
        })
    return data_dir


def is_written(plan: PlannedTask, out: Path) -> bool:
    """True when `out` holds the task written from this parent and derivation (its fingerprint matches)."""
    try:
        meta = json.loads((out / plan.name / f"{plan.name}.data" / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("fingerprint") == plan.fingerprint


def publish_task(parent: Dataset, plan: PlannedTask, out: Path) -> Path:
    """Write the task under `<out>/.partial/`, then rename it to `<out>/<name>`, replacing an older one.

    Returns the task's `.data` directory; a kill leaves at most a folder under `.partial/`.
    """
    partial = out / PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{plan.name}-", dir=partial))  # pid first: see stale_folders
    old = None
    final = out / plan.name
    try:
        os.chmod(temp, 0o755)  # mkdtemp makes 0700; datasets are meant to be shared
        write_task(parent, plan, temp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{plan.name}-old-", dir=partial))
            os.replace(final, old / plan.name)
        os.replace(temp, final)
    finally:
        for folder in (temp, old):
            if folder is not None and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
    return final / f"{plan.name}.data"


def derive_all(plans: list[PlannedTask], out: str | Path, *, log: Callable[[str], None] = print) -> None:
    """Write every planned task that `out` does not hold up to date, reading each parent once; one line per task."""
    out = Path(out)
    for leftover in stale_folders(out / PARTIAL, ""):
        shutil.rmtree(leftover, ignore_errors=True)
    by_parent: dict[Path, list[PlannedTask]] = {}
    for plan in plans:
        by_parent.setdefault(plan.parent_dir, []).append(plan)
    for parent_dir, group in by_parent.items():
        parent = None
        for plan in group:
            if is_written(plan, out):
                log(f"up to date {out / plan.name}")
                continue
            if parent is None:
                parent = read_dataset(parent_dir)
            data_dir = publish_task(parent, plan, out)
            meta = read_meta(data_dir)
            log(f"wrote {data_dir} ({meta['class_num']} classes, {meta['train_num']} train, {meta['test_num']} test)")


def derive_few_shot(data_dir: str | Path, per_class: int, out: str | Path, *, seed: int = 0) -> Path:
    """Write the task at `data_dir` with `per_class` training clips per class under `out`; returns its .data dir."""
    parent = read_dataset(data_dir)
    derivation = parse_entry({"task": parent.name, "per_class": per_class, "seed": seed}, str(data_dir))
    return publish_task(parent, plan_task(parent.data_dir, derivation, str(data_dir)), Path(out))


# --------------------------------------------------------------------------- command line


def format_plan_table(plans: list[PlannedTask]) -> str:
    """A markdown table of planned tasks (name, source, parent, derivation, estimated size) and a per-source count."""
    lines = ["| task | source | derived from | derivation | est. MiB |", "|---|---|---|---|---:|"]
    sizes = []
    for plan in plans:
        size = estimate_mb(plan)
        sizes.append(size)
        lines.append(
            f"| {plan.name} | {plan.source} | {plan.parent_dir.name[: -len('.data')]} | "
            f"{json.dumps(plan.derivation.record())} | {'?' if size is None else f'{size:.0f}'} |"
        )
    per_source = Counter(plan.source for plan in plans)
    known = [size for size in sizes if size is not None]
    lines.append(
        f"\n{len(plans)} tasks over {len(per_source)} sources ("
        + ", ".join(f"{source} {n}" for source, n in sorted(per_source.items()))
        + f"); estimated {sum(known) / 1024:.2f} GiB for the {len(known)} with files.json"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m harness.derive` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m harness.derive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="data/suite", help="built suite root (default: data/suite)")
    parser.add_argument("--spec", metavar="FILE", help="JSON list of derivations (e.g. harness/derived_tasks.json)")
    parser.add_argument("--tasks", nargs="+", metavar="NAME", help="task folders of the suite (with --per-class)")
    parser.add_argument("--per-class", nargs="+", type=int, metavar="K", help="training clips per class (with --tasks)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the --tasks draws (default 0)")
    parser.add_argument("--out", help="root of the derived tasks (not needed with --dry-run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the tasks (name, source, derivation, estimated size) without reading audio")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: derive the tasks of a spec (or few-shot tasks); 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.spec and (args.tasks or args.per_class or args.seed is not None):
        parser.error("give either --spec or --tasks/--per-class/--seed, not both (spec entries carry their own seed)")
    if not args.spec and not (args.tasks and args.per_class):
        parser.error("give --spec FILE, or --tasks and --per-class")
    if not (args.out or args.dry_run):
        parser.error("give --out, the root of the derived tasks (or --dry-run)")
    try:
        if args.spec:
            plans = plan_tasks(args.suite, read_spec(args.spec), args.spec)
        else:
            seed = args.seed or 0
            entries = [{"task": task, "per_class": k, "seed": seed} for task in args.tasks for k in args.per_class]
            plans = plan_tasks(args.suite, entries, "--tasks/--per-class")
        if args.dry_run:
            print(format_plan_table(plans))
        else:
            derive_all(plans, args.out)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
