"""Read, validate and write datasets in the AutoSpeech 2019 layout (SPEC.md, "Dataset layout").

```
<root>/<name>.data/meta.json
<root>/<name>.data/train.pkl        list of 1-D float32 arrays
<root>/<name>.data/test.pkl
<root>/<name>.data/train.solution   one-hot rows, one line per train clip
<root>/<name>.solution              one-hot rows for the test clips
```
Reading checks everything a model or the scorer relies on and raises `DatasetError`
naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DatasetError
from portfolio.checks import is_int, is_number

REQUIRED_META_KEYS = ("class_num", "train_num", "test_num", "time_budget")


@dataclass
class Dataset:
    """One dataset in memory; `y_test` is the hidden solution."""

    name: str
    data_dir: Path
    meta: dict
    x_train: list
    y_train: np.ndarray
    x_test: list
    y_test: np.ndarray


def resolve_data_dir(path: str | os.PathLike) -> Path:
    """Return the `<name>.data` directory given it, or a root that holds exactly one."""
    path = Path(path)
    if path.name.endswith(".data") and path.is_dir():
        return path
    if not path.is_dir():
        raise DatasetError(f"dataset path must be a directory, got {str(path)!r} (not found)")
    candidates = sorted(p for p in path.glob("*.data") if p.is_dir())
    if len(candidates) != 1:
        raise DatasetError(
            f"dataset root {str(path)!r} must hold exactly one <name>.data directory, "
            f"found {len(candidates)}: {[p.name for p in candidates]}"
        )
    return candidates[0]


def solution_path(data_dir: Path) -> Path:
    """The hidden test solution sits beside the `.data` directory."""
    return data_dir.parent / (data_dir.name[: -len(".data")] + ".solution")


def read_json_object(path: Path, what: str = "a JSON object") -> dict:
    """Load a JSON file that must hold an object; DatasetError names the file otherwise."""
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: must hold {what}, got {type(obj).__name__}")
    return obj


def read_meta(data_dir: Path) -> dict:
    """Load and check meta.json (required keys, positive integers)."""
    path = data_dir / "meta.json"
    if not path.is_file():
        raise DatasetError(f"{path}: missing meta.json")
    meta = read_json_object(path)
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise DatasetError(f"{path}: missing keys {missing}")
    for key in ("class_num", "train_num", "test_num"):
        value = meta[key]
        if not is_int(value, 1):
            raise DatasetError(f"{path}: {key} must be a positive integer, got {value!r}")
    if meta["class_num"] < 2:
        raise DatasetError(f"{path}: class_num must be >= 2, got {meta['class_num']!r}")
    budget = meta["time_budget"]
    if not is_number(budget) or budget <= 0:
        raise DatasetError(f"{path}: time_budget must be a positive number, got {budget!r}")
    return meta


def read_clips(path: Path, expected_num: int) -> list:
    """Load a pickled list of clips and check each is a non-empty finite 1-D float array."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    try:
        with open(path, "rb") as handle:
            clips = pickle.load(handle)
    except Exception as error:  # pickle raises many types on corrupt input
        raise DatasetError(f"{path}: cannot unpickle ({type(error).__name__}: {error})") from error
    if not isinstance(clips, (list, tuple)):
        raise DatasetError(f"{path}: must hold a list of clips, got {type(clips).__name__}")
    if len(clips) != expected_num:
        raise DatasetError(f"{path}: holds {len(clips)} clips but meta.json says {expected_num}")
    for index, clip in enumerate(clips):
        check_clip(clip, f"{path}: clip {index}")
    return list(clips)


def check_clip(clip, where: str) -> None:
    """Raise DatasetError unless `clip` is a non-empty, finite, 1-D float array."""
    if not isinstance(clip, np.ndarray):
        raise DatasetError(f"{where} must be a numpy array, got {type(clip).__name__}")
    if clip.ndim != 1:
        raise DatasetError(f"{where} must be 1-D, got shape {clip.shape}")
    if not np.issubdtype(clip.dtype, np.floating):
        raise DatasetError(f"{where} must have a float dtype, got {clip.dtype}")
    if clip.size == 0:
        raise DatasetError(f"{where} is empty (0 samples)")
    if not np.all(np.isfinite(clip)):
        raise DatasetError(f"{where} has non-finite samples (NaN or inf)")


def read_solution(path: Path, expected_rows: int, class_num: int) -> np.ndarray:
    """Load one-hot rows and check their count, width and one-hotness."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(rows) != expected_rows:
        raise DatasetError(f"{path}: has {len(rows)} rows but meta.json says {expected_rows}")
    widths = {len(row) for row in rows}
    if widths != {class_num}:
        raise DatasetError(f"{path}: rows must have class_num = {class_num} values, got widths {sorted(widths)}")
    try:
        solution = np.array(rows, dtype=float)
    except ValueError as error:
        raise DatasetError(f"{path}: rows must be space-separated numbers ({error})") from error
    one_hot = np.all((solution == 0) | (solution == 1), axis=1) & (solution.sum(axis=1) == 1)
    if not one_hot.all():
        bad = int(np.flatnonzero(~one_hot)[0])
        raise DatasetError(f"{path}: row {bad + 1} is not one-hot: {rows[bad]}")
    return solution


def read_test_solution(path: str | os.PathLike) -> np.ndarray:
    """Only the hidden test labels of a dataset (given its `.data` directory or a root holding one)."""
    data_dir = resolve_data_dir(path)
    meta = read_meta(data_dir)
    return read_solution(solution_path(data_dir), meta["test_num"], meta["class_num"])


def read_dataset(path: str | os.PathLike, *, with_solution: bool = True) -> Dataset:
    """Read and validate a whole dataset; `with_solution=False` skips the hidden test labels."""
    data_dir = resolve_data_dir(path)
    meta = read_meta(data_dir)
    x_train = read_clips(data_dir / "train.pkl", meta["train_num"])
    y_train = read_solution(data_dir / "train.solution", meta["train_num"], meta["class_num"])
    x_test = read_clips(data_dir / "test.pkl", meta["test_num"])
    y_test = (
        read_solution(solution_path(data_dir), meta["test_num"], meta["class_num"])
        if with_solution
        else np.zeros((0, meta["class_num"]))
    )
    return Dataset(data_dir.name[: -len(".data")], data_dir, meta, x_train, y_train, x_test, y_test)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old or the new content, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and datasets are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def format_solution(y_onehot: np.ndarray) -> bytes:
    """One-hot rows as space-separated integers, one line per clip."""
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in y_onehot).encode()


def _as_float32(clips: list) -> list:
    return [np.asarray(clip, dtype=np.float32) for clip in clips]


def write_dataset(
    root: str | os.PathLike,
    name: str,
    meta: dict,
    x_train: list,
    y_train: np.ndarray,
    x_test: list,
    y_test: np.ndarray,
) -> Path:
    """Write a dataset in the AutoSpeech layout and return its `.data` directory.

    The meta.json counts are filled in from the arrays; it is written last so a
    half-written dataset never looks complete.
    """
    data_dir = Path(root) / f"{name}.data"
    y_train = np.asarray(y_train)
    y_test = np.asarray(y_test)
    if y_train.shape != (len(x_train), y_test.shape[1]) or y_test.shape[0] != len(x_test):
        raise DatasetError(
            f"labels must have one row per clip and equal widths, got y_train {y_train.shape} "
            f"for {len(x_train)} train clips and y_test {y_test.shape} for {len(x_test)} test clips"
        )
    full_meta = {
        **meta,
        "class_num": int(y_train.shape[1]),
        "train_num": len(x_train),
        "test_num": len(x_test),
    }
    full_meta.setdefault("time_budget", 1800)
    full_meta.setdefault("sample_rate", 16000)
    (data_dir / "meta.json").unlink(missing_ok=True)
    atomic_write_bytes(data_dir / "train.pkl", pickle.dumps(_as_float32(x_train), protocol=4))
    atomic_write_bytes(data_dir / "test.pkl", pickle.dumps(_as_float32(x_test), protocol=4))
    atomic_write_bytes(data_dir / "train.solution", format_solution(y_train))
    atomic_write_bytes(solution_path(data_dir), format_solution(y_test))
    atomic_write_json(data_dir / "meta.json", full_meta)
    return data_dir
