"""meta_db.json: the versioned store of offline runs and dataset meta-features (docs/meta_db.md).

Only reading, checking, creating and keying live here, with nothing heavier than the
standard library, so the runtime (portfolio/selection.py) can read a database without
pulling in the offline build's dependencies.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from portfolio.checks import is_int

SCHEMA_VERSION = 1
RUN_STATUSES = ("ok", "timeout", "memout", "crash", "not_applicable", "other")


class MetaDbError(ValueError):
    """A meta-database file is missing, unreadable, corrupt or of an unknown schema; the message names it."""


def utc_now() -> str:
    """ISO-8601 UTC timestamp, second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def new_db() -> dict:
    """An empty database of the current schema."""
    now = utc_now()
    return {
        "schema": SCHEMA_VERSION,
        "created": now,
        "updated": now,
        "command": None,
        "time_budget": None,
        "builds": [],
        "configs": {},
        "datasets": {},
        "runs": [],
    }


def canonical_json(obj) -> str:
    """Key-sorted, whitespace-free JSON: equal objects give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_id(plan: dict) -> str:
    """Short hash of a plan without its display name: renaming a config keeps its runs."""
    content = {key: value for key, value in plan.items() if key != "name"}
    return hashlib.sha1(canonical_json(content).encode()).hexdigest()[:10]


def run_key(dataset: str, config_id_: str, time_budget: float) -> tuple[str, str, float]:
    """What identifies a run for resuming: the same key is never run twice."""
    return dataset, config_id_, float(time_budget)


def record_key(record: dict) -> tuple[str, str, float]:
    """`run_key` of a stored run."""
    return run_key(record["dataset"], record["config_id"], record["time_budget"])


def _check_structure(db, path: Path) -> dict:
    """Fill keys a minimal (e.g. placeholder) database may lack; reject wrong types and schemas."""
    if not isinstance(db, dict):
        raise MetaDbError(f"{path}: must hold a JSON object, got {type(db).__name__}")
    schema = db.get("schema")
    if not is_int(schema, 1):
        raise MetaDbError(f"{path}: schema must be a positive integer, got {schema!r}")
    if schema > SCHEMA_VERSION:
        raise MetaDbError(
            f"{path}: schema {schema} is newer than this code knows ({SCHEMA_VERSION}); update the code, "
            "or build a new database"
        )
    full = {**new_db(), **db}
    for key, kind in (("builds", list), ("configs", dict), ("datasets", dict), ("runs", list)):
        if not isinstance(full[key], kind):
            raise MetaDbError(f"{path}: {key} must be a JSON {kind.__name__}, got {type(full[key]).__name__}")
    for index, record in enumerate(full["runs"]):
        missing = [key for key in ("dataset", "config_id", "time_budget", "status", "alc") if key not in record]
        if missing:
            raise MetaDbError(f"{path}: run {index} lacks keys {missing}")
    return full


def load_db(path: str | Path, *, missing_ok: bool = False) -> dict:
    """Read and check a database; a missing file gives a new one only when `missing_ok`."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return new_db()
        raise MetaDbError(f"{path}: meta-database not found")
    try:
        db = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetaDbError(f"{path}: meta-database is not readable JSON ({error}); fix or remove the file") from error
    return _check_structure(db, path)


def finite_or_none(value) -> float | None:
    """JSON has no NaN: a missing or non-finite number is stored as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def runs_at_budget(db: dict, time_budget: float | None = None) -> tuple[float | None, list[dict]]:
    """The runs made with one time budget (default: the database's latest build's) and that budget."""
    budget = db.get("time_budget") if time_budget is None else time_budget
    if budget is None:
        return None, list(db["runs"])
    return float(budget), [r for r in db["runs"] if float(r["time_budget"]) == float(budget)]


def mean_alc_by_cell(runs) -> dict[tuple[str, str], float]:
    """Mean recorded ALC per (dataset, config_id): repeated runs of one cell are averaged."""
    values: dict[tuple[str, str], list[float]] = {}
    for record in runs:
        values.setdefault((record["dataset"], record["config_id"]), []).append(float(record["alc"]))
    return {cell: sum(alcs) / len(alcs) for cell, alcs in values.items()}


def source_of(db: dict, dataset: str) -> str:
    """A dataset's source, the hold-out unit (docs/meta_db.md: the task name when unset)."""
    return db["datasets"][dataset].get("source") or dataset


def held_out_db(db: dict, source: str, time_budget: float) -> dict:
    """A copy of `db` without any dataset or run of `source`, selecting on runs of `time_budget`:
    what selection may see when a dataset of `source` is the task being measured."""
    dropped = {name for name in db["datasets"] if source_of(db, name) == source}
    held = copy.deepcopy(db)
    held["datasets"] = {name: entry for name, entry in held["datasets"].items() if name not in dropped}
    held["runs"] = [r for r in held["runs"] if r["dataset"] not in dropped and r.get("source") != source]
    held["time_budget"] = float(time_budget)
    return held
