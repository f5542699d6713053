"""Bring your own audio: turn a folder per class (or a `path,label` CSV) into an AutoSpeech dataset.

    python -m harness import --audio DIR_OR_CSV --out DATASET_DIR [--test-fraction 0.2] [--seed 0]

Input is a folder with one subfolder per class (files in deeper subfolders belong to their
first-level folder's class) or a CSV with columns `path,label`, paths relative to the CSV's
folder. Every file is decoded (`harness.audio_io.load_clip`: mono, float32, 16 kHz); files
that cannot be used are skipped and listed with their reason (`--strict`: the first one
is an error), classes left with fewer than 2 files are dropped with a warning, and the
rest is split per class as the suite splits (`harness.suite.split_clips`). The result is
`DATASET_DIR/<name>.data` + `<name>.solution`, with `labels.json` (class names in column
order) and `files.json` (the source file of every train and test row) beside the
solution, where the model never sees them, as in the suite.

Nothing is written half-way: the dataset is built in a hidden sibling folder
`.<DATASET_DIR name>.importing-<pid>-<random>` and renamed into place at the end; such a
folder left by a killed import is removed by the next import into the same place.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from harness.audio_io import SAMPLE_RATE, decode_parallel, try_load_clip
from harness.dataset import atomic_write_bytes, atomic_write_json, write_dataset
from harness.errors import HarnessError
from harness.suite import split_clips

IMPORT_VERSION = 1
TEST_FRACTION = 0.2
SEED = 0
TIME_BUDGET_S = 300
N_JOBS = 2
TEMP_MARK = ".importing-"
OLD_MARK = ".replaced-"
MARKER_FILE = "INCOMPLETE_IMPORT.txt"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AudioImportError(HarnessError):
    """The input of `harness import` / `harness predict` cannot make a dataset; the message says why."""


@dataclass(frozen=True)
class SourceFile:
    """One input file: its name as reported (relative to the input root), where it is, its class."""

    file: str
    path: Path
    label: str | None = None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- finding the files


def list_files(root: str | Path) -> list[str]:
    """Every file under `root` (symlinks followed), as sorted POSIX paths relative to it; hidden names skipped."""
    root = Path(root)
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        found += [(base / f).as_posix() for f in files if not f.startswith(".") and (Path(folder) / f).is_file()]
    return sorted(found)


def scan_folder(root: str | Path) -> tuple[list[SourceFile], list[str]]:
    """Files of a folder-per-class tree, labelled by their first-level folder; also the files outside any class folder."""
    root = Path(root)
    sources, outside = [], []
    for file in list_files(root):
        parts = file.split("/")
        if len(parts) == 1:
            outside.append(file)
        else:
            sources.append(SourceFile(file, root / file, parts[0]))
    return sources, outside


def scan_csv(csv_path: str | Path) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """Rows of a `path,label` CSV (paths relative to its folder); rows with an empty cell come back as skipped."""
    csv_path = Path(csv_path)
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise AudioImportError(f"{csv_path}: not a readable CSV ({error})") from error
    missing = [column for column in ("path", "label") if column not in table.columns]
    if missing:
        raise AudioImportError(f"{csv_path}: must have columns 'path' and 'label', missing {missing}; got {list(table.columns)}")
    sources, skipped, rows_of = [], [], {}
    for row, (file, label) in enumerate(zip(table["path"].str.strip(), table["label"].str.strip()), start=2):
        if not file or not label:
            skipped.append((file or f"{csv_path.name} line {row}", f"{csv_path.name} line {row}: empty path or label"))
            continue
        rows_of.setdefault(file, []).append(row)
        sources.append(SourceFile(file, csv_path.parent / file, label))
    repeated = {file: rows for file, rows in rows_of.items() if len(rows) > 1}
    if repeated:
        file, rows = next(iter(repeated.items()))
        raise AudioImportError(
            f"{csv_path}: each path must be listed once, got {len(repeated)} repeated, e.g. {file!r} on lines {rows}"
        )
    return sorted(sources, key=lambda s: s.file), skipped


# --------------------------------------------------------------------------- decoding


def decode_files(
    sources: list[SourceFile],
    *,
    strict: bool = False,
    n_jobs: int = N_JOBS,
    progress: bool = True,
    desc: str = "decoding",
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Decode every source file: ({file: clip}, [(file, reason) of each file skipped]).

    With `strict`, the first file that cannot be used raises AudioImportError naming it.
    """
    clips, skipped = {}, []
    results = decode_parallel([s.path for s in sources], try_load_clip, n_jobs=n_jobs, desc=desc, progress=progress)
    for index, (clip, reason) in enumerate(results):
        source = sources[index]
        if clip is None:
            if strict:
                results.close()
                raise AudioImportError(f"{source.path}: {reason} (--strict stops at the first unusable file)")
            skipped.append((source.file, reason))
        else:
            clips[source.file] = clip
    return clips, skipped


def format_skipped(skipped: list[tuple[str, str]]) -> str:
    """The files skipped and why, one per line, for the end of a command's output."""
    lines = [f"skipped {len(skipped)} file(s) that could not be used:"]
    return "\n".join(lines + [f"  {file}: {reason}" for file, reason in skipped])


# --------------------------------------------------------------------------- the output folder


def stale_folders(parent: str | Path, prefix: str) -> list[Path]:
    """Folders `<parent>/<prefix><pid>-*` whose process `pid` is gone: what a killed command left behind."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    stale = []
    for folder in sorted(parent.glob(glob.escape(prefix) + "*")):
        match = re.match(r"(\d+)-", folder.name[len(prefix):])
        if folder.is_dir() and match and not psutil.pid_exists(int(match.group(1))):
            stale.append(folder)
    return stale


def leftover_folders(out: str | Path) -> list[Path]:
    """Temporary folders that a killed import into `out` left behind (their process is gone)."""
    out = Path(out)
    return stale_folders(out.parent, f".{out.name}{TEMP_MARK}") + stale_folders(out.parent, f".{out.name}{OLD_MARK}")


def _is_replaceable(out: Path) -> bool:
    """True for an empty folder or one that holds a `<name>.data` dataset folder (what --force may replace)."""
    return out.is_dir() and (not any(out.iterdir()) or any(p.is_dir() for p in out.glob("*.data")))


def check_out(out: Path, audio: Path, *, force: bool) -> None:
    """Refuse to write over or into the input, or over an existing folder (unless --force and it holds a dataset)."""
    resolved, source = out.resolve(), audio.resolve()
    if resolved == source or resolved in source.parents or (audio.is_dir() and source in resolved.parents):
        raise AudioImportError(f"--out {str(out)!r} must lie outside the input {str(audio)!r}")
    check_replaceable(out, force=force)


def check_replaceable(out: Path, *, force: bool) -> None:
    """Refuse an existing `out` unless --force is given and it is empty or holds a `<name>.data` folder."""
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise AudioImportError(f"{out} exists already; pass --force to replace it, or choose another --out")
    if out.is_symlink() or not _is_replaceable(out):
        raise AudioImportError(f"{out} exists and does not hold an AutoSpeech dataset; --force replaces only a dataset folder")


def _publish(temp: Path, out: Path, *, force: bool) -> None:
    """Rename the finished temp folder to `out`, moving a --force'd old dataset aside first."""
    old = None
    if out.exists():
        check_replaceable(out, force=force)  # the rule of the start again: it may have appeared meanwhile
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}{OLD_MARK}{os.getpid()}-", dir=out.parent))
        os.replace(out, old / "dataset")
    os.replace(temp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_name(audio: Path) -> str:
    """The dataset name when --name is not given: the input folder's name (the CSV's folder for a CSV)."""
    folder = audio.resolve() if audio.is_dir() else audio.resolve().parent
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", folder.name).strip("_")
    return name or "audio"


# --------------------------------------------------------------------------- the import


def _rows_record(rows: pd.DataFrame, clips: dict[str, np.ndarray]) -> list[dict]:
    return [
        {"file": file, "label": label, "duration_s": round(len(clips[file]) / SAMPLE_RATE, 4)}
        for file, label in zip(rows["file"], rows["label"])
    ]


def import_audio(
    audio: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    test_fraction: float = TEST_FRACTION,
    seed: int = SEED,
    time_budget: float = TIME_BUDGET_S,
    strict: bool = False,
    force: bool = False,
    n_jobs: int = N_JOBS,
    progress: bool = True,
    log: Callable[[str], None] = _log,
) -> dict:
    """Import `audio` (class folders or a `path,label` CSV) as the dataset `out`; return a summary dict.

    Returns `{"data_dir", "name", "classes", "train_num", "test_num", "skipped": [(file, reason)],
    "dropped_classes": {label: n_files}, "outside_class_folders": [file], "seconds"}`.
    """
    start = time.monotonic()
    audio, out = Path(audio), Path(out)
    name = name or default_name(audio)
    if not NAME_PATTERN.match(name) or name.endswith(".data"):
        raise AudioImportError(f"--name must be letters, digits, '_', '-' or '.' (not ending in .data), got {name!r}")
    if not 0.0 < test_fraction < 1.0:
        raise AudioImportError(f"--test-fraction must lie in (0, 1), got {test_fraction!r}")
    if not (math.isfinite(time_budget) and time_budget > 0):
        raise AudioImportError(f"--time-budget must be > 0 seconds, got {time_budget!r}")
    if not audio.exists():
        raise AudioImportError(f"--audio {str(audio)!r} not found")
    check_out(out, audio, force=force)

    outside, skipped = [], []
    if audio.is_dir():
        form = "folder"
        sources, outside = scan_folder(audio)
        if outside:
            log(f"warning: ignored {len(outside)} file(s) outside the class folders of {audio}: {outside[:5]}"
                + (" ..." if len(outside) > 5 else ""))
    else:
        form = "csv"
        sources, skipped = scan_csv(audio)
        if skipped and strict:
            raise AudioImportError(f"{audio}: {skipped[0][1]} (--strict stops at the first unusable file)")
    if not sources:
        where = "no class subfolders with files" if form == "folder" else "no rows"
        raise AudioImportError(f"{audio}: {where}; expected one subfolder per class, or a CSV with columns path,label")

    out.parent.mkdir(parents=True, exist_ok=True)
    for leftover in leftover_folders(out):
        shutil.rmtree(leftover, ignore_errors=True)
        log(f"removed {leftover}, left by an import that did not finish")
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMP_MARK}{os.getpid()}-", dir=out.parent))
    try:
        os.chmod(temp, 0o755)  # mkdtemp makes 0700; datasets are meant to be shared
        atomic_write_bytes(
            temp / MARKER_FILE,
            f"An unfinished `python -m harness import` into {out} (process {os.getpid()}); safe to delete.\n".encode(),
        )
        clips, bad = decode_files(sources, strict=strict, n_jobs=n_jobs, progress=progress, desc=f"{name}: decoding")
        skipped += bad
        labels = {s.file: s.label for s in sources if s.file in clips}
        counts = Counter(labels.values())
        dropped = {label: counts[label] for label in sorted({s.label for s in sources}) if counts[label] < 2}
        if dropped:
            log(f"warning: dropped {len(dropped)} class(es) with fewer than 2 usable files: "
                + ", ".join(f"{label!r} ({n} usable file{'' if n == 1 else 's'})" for label, n in dropped.items()))
        kept = {file: label for file, label in labels.items() if label not in dropped}
        classes = sorted(set(kept.values()))
        if len(classes) < 2:
            raise AudioImportError(
                f"{audio}: at least 2 classes with >= 2 usable files each are needed, got {len(classes)} "
                f"({len(labels)} usable file(s) in {len(counts)} class(es), {len(skipped)} skipped)"
            )
        selection = pd.DataFrame({"file": list(kept), "label": list(kept.values())})
        train, test = split_clips(selection, "label", where=str(audio), test_fraction=test_fraction, seed=seed)
        column = {label: index for index, label in enumerate(classes)}
        eye = np.eye(len(classes), dtype=int)
        meta = {
            "time_budget": int(time_budget) if float(time_budget).is_integer() else time_budget,
            "sample_rate": SAMPLE_RATE,
            "source": str(audio.resolve()),
            "import_version": IMPORT_VERSION,
            "split": {"test_fraction": test_fraction, "seed": seed},
        }
        data_dir = write_dataset(
            temp, name, meta,
            [clips[file] for file in train["file"]], eye[[column[v] for v in train["label"]]],
            [clips[file] for file in test["file"]], eye[[column[v] for v in test["label"]]],
        )
        atomic_write_json(temp / "labels.json", classes)
        atomic_write_json(
            temp / "files.json",
            {
                "source": str(audio.resolve()),
                "form": form,
                "root": str((audio if form == "folder" else audio.parent).resolve()),
                "train": _rows_record(train, clips),
                "test": _rows_record(test, clips),
                "skipped": [{"file": file, "reason": reason} for file, reason in skipped],
                "dropped_classes": dropped,
                "outside_class_folders": outside,
            },
        )
        (temp / MARKER_FILE).unlink()
        _publish(temp, out, force=force)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return {
        "data_dir": out / data_dir.name,
        "name": name,
        "classes": classes,
        "class_counts": {label: int(n) for label, n in sorted(Counter(kept.values()).items())},
        "train_num": len(train),
        "test_num": len(test),
        "skipped": skipped,
        "dropped_classes": dropped,
        "outside_class_folders": outside,
        "seconds": time.monotonic() - start,
    }


# --------------------------------------------------------------------------- command line


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"time budget must be > 0 seconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m harness import`."""
    parser.add_argument("--audio", required=True, help="a folder with one subfolder per class, or a CSV with columns path,label")
    parser.add_argument("--out", required=True, help="dataset folder to create: <name>.data, <name>.solution, labels.json, files.json")
    parser.add_argument("--name", default=None, help="dataset name (default: the input folder's name)")
    parser.add_argument("--test-fraction", type=float, default=TEST_FRACTION, help=f"share of each class in test (default {TEST_FRACTION})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"split seed (default {SEED})")
    parser.add_argument("--time-budget", type=positive_seconds, default=TIME_BUDGET_S,
                        help=f"meta.json time_budget, seconds (default {TIME_BUDGET_S})")
    parser.add_argument("--strict", action="store_true", help="stop (exit 2) at the first file that cannot be used, instead of skipping it")
    parser.add_argument("--force", action="store_true", help="replace --out if it already holds a dataset")
    parser.add_argument("--jobs", type=int, default=N_JOBS, help=f"decoding processes (default {N_JOBS})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the import from parsed arguments; exit status 2 on bad input."""
    try:
        summary = import_audio(
            args.audio, args.out, name=args.name, test_fraction=args.test_fraction, seed=args.seed,
            time_budget=args.time_budget, strict=args.strict, force=args.force, n_jobs=args.jobs,
            progress=not args.no_progress,
        )
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary["skipped"]:
        _log(format_skipped(summary["skipped"]))
    counts = ", ".join(f"{label} {n}" for label, n in summary["class_counts"].items())
    print(
        f"imported {summary['train_num'] + summary['test_num']} clips of {len(summary['classes'])} classes "
        f"({counts}): {summary['train_num']} train, {summary['test_num']} test, {len(summary['skipped'])} skipped, "
        f"in {summary['seconds']:.1f} s -> {summary['data_dir']}"
    )
    return 0
