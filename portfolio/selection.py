"""Run-time plan selection: the configuration that did best on the most similar practice datasets.

Meta-features are min-max scaled with the ranges of the database's datasets (a feature
with zero range, or missing or NaN on either side, is left out of that comparison); the
distance between two datasets is the root mean square (euclidean) or mean absolute
(manhattan) scaled difference over the features they share, so datasets with different
missing features stay comparable. When no feature separates the practice datasets (one
dataset, or all alike), they all count equally. The k nearest datasets vote: every configuration run on
all of them scores its closeness-weighted mean ALC (weights 1/(d + eps)) and the best one's
plan is returned, unless an incumbent plan (model.py's default) scores within
`switch_margin` of it: two runs of one plan can differ by about that much, so smaller
leads are noise. Storage and schema live in portfolio/meta_db.py (docs/meta_db.md).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

from portfolio.meta_db import MetaDbError, config_id, load_db, runs_at_budget
from portfolio.plans import check_plan

LOG = logging.getLogger("autospeech.selection")
EPS = 1e-6
# ALC lead another configuration needs over the incumbent. Two runs of the default plan at
# T = 300 s differed by up to 0.018 ALC (mean 0.006) over the 9 suite tasks (docs/meta_db.md).
SWITCH_MARGIN = 0.02
DISTANCES = ("euclidean", "manhattan")

__all__ = ["MetaDbError", "SelectionError", "choose_plan", "choose_plan_or_default", "load_db"]


class SelectionError(ValueError):
    """No plan can be chosen from this database for these meta-features; the message says why."""


def _number(value) -> float | None:
    """A finite float, or None for missing, null, NaN or non-numbers."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _distance(a: dict, b: dict, ranges: dict, distance: str) -> tuple[float, int]:
    """Scaled distance over the features both have, and how many there were."""
    diffs = []
    for name, (low, span) in ranges.items():
        x, y = _number(a.get(name)), _number(b.get(name))
        if x is not None and y is not None:
            diffs.append(abs(x - y) / span)
    if not diffs:
        return math.inf, 0
    if distance == "euclidean":
        return math.sqrt(sum(d * d for d in diffs) / len(diffs)), len(diffs)
    return sum(diffs) / len(diffs), len(diffs)


def choose_plan(
    metafeatures: dict,
    db: dict | None,
    *,
    k: int = 3,
    distance: str = "euclidean",
    exclude_sources: tuple | list | set = (),
    incumbent: dict | None = None,
    switch_margin: float = SWITCH_MARGIN,
) -> tuple[dict, dict]:
    """Plan of the configuration with the best closeness-weighted mean ALC over the k nearest datasets.

    Parameters
    ----------
    metafeatures : name -> float of the new dataset (metafeatures.compute_metafeatures)
    db : a loaded meta-database (load_db)
    k : int > 0, neighbours that vote
    distance : "euclidean" (RMS over shared features) or "manhattan" (mean absolute)
    exclude_sources : practice datasets of these sources are ignored (leave-one-source-out)
    incumbent : a plan kept, if it was run on all neighbours, unless the best beats it by more than
        ``switch_margin`` (plans compare by ``config_id``: content, names aside)

    Returns
    -------
    (plan, info): a copy of the plan; info holds "config", "config_id", "neighbours"
    ([{dataset, source, distance, weight}]), "scores" (config name -> weighted ALC),
    "features_used" and "reason".
    """
    if not isinstance(k, int) or k < 1:
        raise SelectionError(f"k must be an int >= 1, got {k!r}")
    if distance not in DISTANCES:
        raise SelectionError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if not db or not db.get("datasets") or not db.get("runs"):
        raise SelectionError("the meta-database holds no datasets or no runs")
    budget, runs = runs_at_budget(db)
    with_runs = {record["dataset"] for record in runs}
    excluded = set(exclude_sources)
    practice = {
        name: entry.get("metafeatures") or {}
        for name, entry in db["datasets"].items()
        if entry.get("source", name) not in excluded and name in with_runs
    }
    if not practice:
        raise SelectionError(
            f"no dataset of the meta-database has runs at T = {budget} s outside the excluded sources {sorted(excluded)}"
        )

    ranges = {}
    names = {name for features in practice.values() for name in features}
    for name in sorted(names):
        values = [v for v in (_number(f.get(name)) for f in practice.values()) if v is not None]
        if values and max(values) > min(values):
            ranges[name] = (min(values), max(values) - min(values))
    known = {name for name in names if _number(metafeatures.get(name)) is not None}
    if not known:
        raise SelectionError("no meta-feature of this dataset is known in the database")
    if not known & set(ranges):
        # Nothing separates the practice datasets (e.g. there is only one): all are equally near.
        neighbours = sorted((0.0, dataset, 0) for dataset in practice)
    else:
        scored = []
        for dataset, features in practice.items():
            d, n_used = _distance(metafeatures, features, ranges, distance)
            if math.isfinite(d):
                scored.append((d, dataset, n_used))
        neighbours = sorted(scored)[:k]

    alc = {}  # (dataset, config_id) -> list of ALCs (repetitions are averaged)
    for record in runs:
        alc.setdefault((record["dataset"], record["config_id"]), []).append(float(record["alc"]))
    scores = {}
    for config in {config for _, config in alc}:
        if all((dataset, config) in alc for _, dataset, _ in neighbours):
            weighted = [
                (1.0 / (d + EPS), sum(alc[(dataset, config)]) / len(alc[(dataset, config)]))
                for d, dataset, _ in neighbours
            ]
            scores[config] = sum(w * a for w, a in weighted) / sum(w for w, _ in weighted)
    if not scores:
        raise SelectionError(f"no configuration was run on all of the nearest datasets {[n for _, n, _ in neighbours]}")
    configs = {r["config_id"]: r["config"] for r in runs if "config" in r} | db.get("configs", {})
    incumbent_id = config_id(incumbent) if incumbent else None
    stale = sorted(
        c for c in scores
        if incumbent_id is not None and configs[c]["name"] == "default" and config_id(configs[c]["plan"]) != incumbent_id
    )
    if stale:
        # The database's "default" is an older default plan: never run it in place of today's.
        LOG.warning("meta-database %s holds a default plan other than today's (edited after the build?): "
                    "left out of selection; rebuild with python -m offline_meta build", stale)
        scores = {c: v for c, v in scores.items() if c not in stale}
        if not scores:
            raise SelectionError(f"only a stale default plan {stale} was run on the nearest datasets")
    best = max(sorted(scores), key=lambda config: scores[config])
    kept = next((c for c in sorted(scores) if config_id(configs[c]["plan"]) == incumbent_id), None)
    why = "has the best"
    if kept is not None and kept != best and scores[best] - scores[kept] <= switch_margin:
        lead = scores[best] - scores[kept]
        why = f"is kept as the incumbent ({configs[best]['name']} leads it by only {lead:.4f}); its"
        best = kept
    config = configs[best]
    plan = copy.deepcopy(config["plan"])
    plan["name"] = config["name"]
    info = {
        "config": config["name"],
        "config_id": best,
        "neighbours": [
            {"dataset": dataset, "source": db["datasets"][dataset].get("source", dataset), "distance": d,
             "weight": 1.0 / (d + EPS), "features_used": n_used}
            for d, dataset, n_used in neighbours
        ],
        "scores": {configs[c]["name"]: s for c, s in sorted(scores.items(), key=lambda item: -item[1])},
        "features_used": len(known & set(ranges)),
        "reason": (
            f"{config['name']} {why} closeness-weighted mean ALC ({scores[best]:.4f}) over the "
            f"{len(neighbours)} nearest practice datasets {[n for _, n, _ in neighbours]}"
        ),
    }
    return plan, info


def choose_plan_or_default(
    metafeatures: dict,
    db_path: str | Path,
    default_plan: dict,
    *,
    members: dict | None = None,
    **kwargs,
) -> tuple[dict, dict]:
    """`choose_plan` on the database at `db_path`, `default_plan` its incumbent, or `default_plan`
    itself with the reason in info["reason"]; never raises.

    With `members` (the portfolio registry), the chosen plan is also checked against the plan
    schema, and a plan that fails the check falls back too. info["fallback"] says which happened.
    """
    start = time.monotonic()
    try:
        plan, info = choose_plan(metafeatures, load_db(db_path), incumbent=default_plan, **kwargs)
        if members is not None:
            check_plan(plan, members, where=f"plan {info['config']!r} of {db_path}")
        info["fallback"] = False
    except Exception as error:  # noqa: BLE001 - any failure means: run the default plan, and say why
        plan = default_plan
        info = {"fallback": True, "reason": f"default plan: {type(error).__name__}: {error}"}
        LOG.warning("plan selection failed, running the default plan", exc_info=error)
    info["elapsed_s"] = time.monotonic() - start
    LOG.info("plan selection: %s (%.3f s)", info["reason"], info["elapsed_s"])
    return plan, info
