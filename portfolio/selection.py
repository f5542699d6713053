"""Run-time plan selection: the configuration that did best on the most similar practice datasets.

Datasets are compared on a few meta-features, one per concept (`DISTANCE_FEATURES`, data):
counts, durations and spectral levels on a log scale (a 30 s clip set should not squeeze
every speech set into one corner), each scaled robustly by the median and interquartile
range over the practice datasets, and each scaled difference capped at `MAX_FEATURE_GAP`
so one odd feature cannot decide alone. The distance is the root mean square (euclidean)
or mean absolute (manhattan) scaled difference over the features both datasets have.

The k nearest datasets vote with bounded weights 1 / (d + `DISTANCE_FLOOR`), on the
configurations run on all k (`coverage` "all"), or each configuration's own k nearest among the
datasets it was run on (`coverage` "own": an alternative run on a few practice datasets only can
then win where those are near). Each votes with
*regret*, the gap between a configuration's ALC there and the best ALC recorded there, so a
hard task (ALC 0.3) and an easy one (0.99) weigh alike. With `shrinkage` s > 0 the vote is
pulled towards each configuration's mean regret over all practice datasets, (1 - s) * local +
s * overall: a plan that wins beside three neighbours but loses badly elsewhere (Whisper alone
on speaker tasks) then needs a larger local lead. The configuration of least weighted
regret wins, unless an incumbent plan is within `switch_margin` of it: two runs of one plan
differ by about that much. The incumbent is model.py's default plan ("given"), or
("best_mean") the configuration of least mean regret over all practice datasets, the
database's own single best fixed plan, which the neighbours must then beat. Storage and
schema: portfolio/meta_db.py.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import numpy as np

from portfolio.meta_db import MetaDbError, config_id, load_db, mean_alc_by_cell, runs_at_budget
from portfolio.plans import check_plan

LOG = logging.getLogger("autospeech.selection")
# ALC lead another configuration needs over the incumbent. Two runs of the default plan at
# T = 300 s differed by up to 0.018 ALC (mean 0.006) over the 9 suite tasks (docs/meta_db.md).
SWITCH_MARGIN = 0.02
DISTANCES = ("euclidean", "manhattan")
INCUMBENT_RULES = ("given", "best_mean")  # see the module docstring
COVERAGES = ("all", "own")  # which datasets vote on a configuration: see _neighbours_of
# The meta-features the distance uses, one per concept, and their scale ("log": log10 of the
# value, floored at LOG_FLOOR; "linear": as is). Size is n_classes x clips_per_class_mean.
DISTANCE_FEATURES = {
    "n_classes": "log",
    "clips_per_class_mean": "log",
    "class_imbalance": "log",
    "duration_p50_s": "log",
    "spectral_centroid_hz": "log",
    "spectral_flatness": "log",
    "level_db_std": "linear",
    "silent_fraction": "linear",
    "voiced_fraction": "linear",
    "centroid_separability": "linear",  # the landmark: speaker-like labels near 1, language-like near 0
}
# Named subsets of DISTANCE_FEATURES that tuning may choose between (offline_meta.loo, by nested
# leave-one-source-out). "task" leaves out the recording-condition features (level spread,
# silent share): each corpus has its own, so with a whole source held out they match a task to
# whichever other corpus was recorded alike rather than to one of its kind.
FEATURE_SETS = {
    "all": DISTANCE_FEATURES,
    "task": {name: scale for name, scale in DISTANCE_FEATURES.items() if name not in ("level_db_std", "silent_fraction")},
}
# The settings of choose_plan that `python -m offline_meta tune --write` stores in the database.
TUNED_SETTINGS = ("k", "switch_margin", "incumbent_rule", "features", "shrinkage", "coverage")
LOG_FLOOR = 1e-4
MAX_FEATURE_GAP = 3.0  # in interquartile ranges
DISTANCE_FLOOR = 0.25  # weights are at most 1 / DISTANCE_FLOOR

__all__ = [
    "DISTANCE_FEATURES", "FEATURE_SETS", "MetaDbError", "SelectionError", "choose_plan", "choose_plan_or_default", "load_db",
    "selection_settings", "single_best_config",
]


class SelectionError(ValueError):
    """No plan can be chosen from this database for these meta-features; the message says why."""


def _number(value) -> float | None:
    """A finite float, or None for missing, null, NaN or non-numbers."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _transformed(metafeatures: dict, features: dict) -> dict:
    """The distance features of one dataset on their distance scale; missing or NaN ones left out."""
    out = {}
    for name, scale in features.items():
        value = _number(metafeatures.get(name))
        if value is not None:
            out[name] = math.log10(max(value, LOG_FLOOR)) if scale == "log" else value
    return out


def _robust_scales(practice: dict) -> dict:
    """Feature -> spread to divide differences by: the interquartile range over the practice
    datasets, or their whole range where the quartiles coincide; features all alike are left out."""
    scales = {}
    for name in sorted({name for features in practice.values() for name in features}):
        values = np.array([features[name] for features in practice.values() if name in features])
        if len(values) and values.max() > values.min():
            q25, q75 = np.percentile(values, [25, 75])
            scales[name] = float(q75 - q25) if q75 > q25 else float(values.max() - values.min())
    return scales


def _gaps(a: dict, b: dict, scales: dict) -> dict:
    """Feature -> capped scaled difference, over the features both datasets have."""
    return {
        name: min(abs(a[name] - b[name]) / scale, MAX_FEATURE_GAP)
        for name, scale in scales.items() if name in a and name in b
    }


def _distance(gaps: dict, distance: str) -> float:
    if not gaps:
        return math.inf
    values = np.array(list(gaps.values()))
    return float(np.sqrt(np.mean(values**2)) if distance == "euclidean" else np.mean(values))


def _overall_regret(on_dataset: dict) -> dict:
    """Config -> its mean regret over the datasets of `on_dataset` (dataset -> config -> ALC) it ran on."""
    gaps: dict[str, list] = {}
    for alcs in on_dataset.values():
        best = max(alcs.values())
        for config, value in alcs.items():
            gaps.setdefault(config, []).append(best - value)
    return {config: sum(values) / len(values) for config, values in gaps.items()}


def _vote(neighbours_of: dict, on_dataset: dict, overall: dict, shrinkage: float = 0.0) -> tuple[dict, dict]:
    """Closeness-weighted mean ALC and mean regret of each configuration over its neighbours, the
    regret shrunk by `shrinkage` towards the configuration's `overall` regret (_overall_regret).

    `neighbours_of` maps config -> its voting (distance, dataset) pairs; `on_dataset` maps
    dataset -> config -> mean ALC.
    """
    alc, regret = {}, {}
    for config, neighbours in neighbours_of.items():
        weights = [1.0 / (d + DISTANCE_FLOOR) for d, _ in neighbours]
        total = sum(weights)
        alc[config] = sum(w * on_dataset[ds][config] for w, (_, ds) in zip(weights, neighbours)) / total
        local = sum(
            w * (max(on_dataset[ds].values()) - on_dataset[ds][config]) for w, (_, ds) in zip(weights, neighbours)
        ) / total
        regret[config] = (1 - shrinkage) * local + shrinkage * overall[config]
    return alc, regret


def _neighbours_of(ranked: list, on_dataset: dict, k: int, coverage: str) -> dict:
    """Config -> the (distance, dataset) pairs that vote on it: with coverage "all" the k nearest
    datasets, for the configurations run on all of them; with "own" each configuration's k nearest
    among the datasets it was run on (a configuration run on fewer than k of them has no vote), so
    an alternative run on a few datasets only can still be chosen where those datasets are near."""
    if coverage == "all":
        nearest = ranked[:k]
        common = set.intersection(*(set(on_dataset[dataset]) for _, dataset in nearest)) if nearest else set()
        return {config: nearest for config in common}
    neighbours_of: dict[str, list] = {}
    for item in ranked:
        for config in on_dataset[item[1]]:
            neighbours_of.setdefault(config, []).append(item)
    return {config: items[:k] for config, items in neighbours_of.items() if len(items) >= k}


def single_best_config(on_dataset: dict, left_out: set | frozenset = frozenset()) -> tuple[str, float] | None:
    """The configuration of best mean ALC over every dataset of `on_dataset` (dataset -> config -> ALC),
    among those run on all of them (`left_out` aside), with that mean; None if no configuration qualifies.

    Over datasets every candidate ran on, best mean ALC is also least mean regret.
    """
    common = set.intersection(*(set(configs) for configs in on_dataset.values())) - set(left_out)
    if not common:
        return None
    means = {config: sum(configs[config] for configs in on_dataset.values()) / len(on_dataset) for config in common}
    best = max(sorted(means), key=lambda config: means[config])
    return best, means[best]


def _pick(regret: dict, incumbent_id: str | None, configs: dict, switch_margin: float) -> tuple[str, str]:
    """The configuration of least regret, or the incumbent when it trails by at most `switch_margin`."""
    best = min(sorted(regret), key=lambda config: regret[config])
    kept = next((c for c in sorted(regret) if config_id(configs[c]["plan"]) == incumbent_id), None)
    if kept is not None and kept != best and regret[kept] - regret[best] <= switch_margin:
        lead = regret[kept] - regret[best]
        return kept, f"is kept as the incumbent ({configs[best]['name']} leads it by only {lead:.4f}); its"
    return best, "has the least"


def choose_plan(
    metafeatures: dict,
    db: dict | None,
    *,
    k: int = 3,
    distance: str = "euclidean",
    exclude_sources: tuple | list | set = (),
    incumbent: dict | None = None,
    switch_margin: float = SWITCH_MARGIN,
    incumbent_rule: str = "given",
    features: dict | str | None = None,
    shrinkage: float = 0.0,
    coverage: str = "all",
    explain: bool = True,
) -> tuple[dict, dict]:
    """Plan of the configuration with the least closeness-weighted regret over the k nearest datasets.

    Parameters
    ----------
    metafeatures : name -> float of the new dataset (metafeatures.compute_metafeatures)
    db : a loaded meta-database (load_db)
    k : int > 0, neighbours that vote
    distance : "euclidean" (RMS over shared features) or "manhattan" (mean absolute)
    exclude_sources : practice datasets of these sources are ignored (leave-one-source-out)
    incumbent : a plan kept, if it was run on all neighbours, unless the best's regret is lower by more
        than ``switch_margin`` (plans compare by ``config_id``: content, names aside)
    incumbent_rule : "given" (``incumbent``) or "best_mean" (the configuration of least mean regret
        over the practice datasets left after ``exclude_sources``; ``incumbent`` if none was run on all)
    features : meta-feature -> "log" | "linear", the distance's features, or the name of one of
        FEATURE_SETS (default DISTANCE_FEATURES)
    shrinkage : in [0, 1], weight of each configuration's mean regret over all practice datasets
        in its vote (0: the neighbours alone)
    coverage : "all" (the k nearest datasets vote, on the configurations run on all of them) or
        "own" (each configuration's k nearest among the datasets it was run on)
    explain : find the decisive features (one more choice per feature); leave-one-out tuning,
        which only needs the choice, turns it off

    Returns
    -------
    (plan, info): a copy of the plan; info holds "config", "config_id", "neighbours"
    ([{dataset, source, distance, weight, features_used}]), "scores" (config name -> weighted ALC),
    "regrets" (config name -> weighted regret), "features_used", "decisive_features" (those
    whose removal alone changes the choice; empty unless ``explain``) and "reason". "neighbours"
    are those that voted on the chosen configuration.
    """
    if not isinstance(k, int) or k < 1:
        raise SelectionError(f"k must be an int >= 1, got {k!r}")
    if distance not in DISTANCES:
        raise SelectionError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if incumbent_rule not in INCUMBENT_RULES:
        raise SelectionError(f"incumbent_rule must be one of {INCUMBENT_RULES}, got {incumbent_rule!r}")
    if not db or not db.get("datasets") or not db.get("runs"):
        raise SelectionError("the meta-database holds no datasets or no runs")
    if isinstance(features, str):
        if features not in FEATURE_SETS:
            raise SelectionError(f"features must be a dict or one of {sorted(FEATURE_SETS)}, got {features!r}")
        features = FEATURE_SETS[features]
    if coverage not in COVERAGES:
        raise SelectionError(f"coverage must be one of {COVERAGES}, got {coverage!r}")
    if not 0.0 <= shrinkage <= 1.0:
        raise SelectionError(f"shrinkage must be in [0, 1], got {shrinkage!r}")
    features = DISTANCE_FEATURES if features is None else features
    budget, runs = runs_at_budget(db)
    excluded = set(exclude_sources)
    sources = {name: entry.get("source", name) for name, entry in db["datasets"].items()}
    configs = {r["config_id"]: r["config"] for r in runs if "config" in r} | db.get("configs", {})
    incumbent_id = config_id(incumbent) if incumbent else None
    stale = {
        c for c in configs
        if incumbent_id is not None and configs[c]["name"] == "default" and config_id(configs[c]["plan"]) != incumbent_id
    }
    alcs = mean_alc_by_cell(r for r in runs if r["dataset"] in sources and sources[r["dataset"]] not in excluded)
    if not alcs:
        raise SelectionError(
            f"no dataset of the meta-database has runs at T = {budget} s outside the excluded sources {sorted(excluded)}"
        )
    on_dataset = {}  # dataset -> config -> mean ALC
    for (dataset, config), value in alcs.items():
        on_dataset.setdefault(dataset, {})[config] = value
    overall = _overall_regret(on_dataset)  # the same for every vote below
    single_best = single_best_config(on_dataset, stale) if incumbent_rule == "best_mean" else None
    if single_best is not None:
        incumbent_id = config_id(configs[single_best[0]]["plan"])
    practice = {name: _transformed(db["datasets"][name].get("metafeatures") or {}, features) for name in on_dataset}
    target = _transformed(metafeatures, features)
    if not target:
        raise SelectionError("no meta-feature of this dataset is known in the database")
    scales = _robust_scales(practice)

    def decide(scales_used: dict) -> tuple[dict, dict, dict, str, str]:
        if set(target) & set(scales_used):
            scored = [(_distance(_gaps(target, features_, scales_used), distance), name)
                      for name, features_ in practice.items()]
            order, n_voting = sorted(item for item in scored if math.isfinite(item[0])), k
        else:
            # Nothing separates the practice datasets (e.g. there is only one): all are equally near, all vote.
            order = [(0.0, dataset) for dataset in sorted(practice)]
            n_voting = len(order)
        neighbours_of = _neighbours_of(order, on_dataset, n_voting, coverage)
        alc, regret = _vote(neighbours_of, on_dataset, overall, shrinkage)
        if not regret:
            raise SelectionError(
                f"no configuration was run on all of the nearest datasets {[n for _, n in order[:n_voting]]}"
                if coverage == "all" else f"no configuration was run on {n_voting} or more of the practice datasets"
            )
        usable = {c: r for c, r in regret.items() if c not in stale}
        if not usable:
            raise SelectionError(f"only a stale default plan {sorted(stale)} was run on the nearest datasets")
        best, why = _pick(usable, incumbent_id, configs, switch_margin)
        return neighbours_of, alc, regret, best, why

    neighbours_of, alc, regret, best, why = decide(scales)
    neighbours = neighbours_of[best]
    if stale & set(regret):
        # The database's "default" is an older default plan: never run it in place of today's.
        LOG.warning("meta-database %s holds a default plan other than today's (edited after the build?): "
                    "left out of selection; rebuild with python -m offline_meta build", sorted(stale & set(regret)))
    decisive = []
    for name in sorted(set(target) & set(scales)) if explain else ():
        try:
            if decide({f: s for f, s in scales.items() if f != name})[3] != best:
                decisive.append(name)
        except SelectionError:
            decisive.append(name)
    config = configs[best]
    plan = copy.deepcopy(config["plan"])
    plan["name"] = config["name"]
    info = {
        "config": config["name"],
        "config_id": best,
        "neighbours": [
            {"dataset": dataset, "source": sources[dataset], "distance": d, "weight": 1.0 / (d + DISTANCE_FLOOR),
             "features_used": len(_gaps(target, practice[dataset], scales))}
            for d, dataset in neighbours
        ],
        "scores": {configs[c]["name"]: alc[c] for c in sorted(alc, key=lambda c: regret[c])},
        "regrets": {configs[c]["name"]: regret[c] for c in sorted(regret, key=lambda c: regret[c])},
        "features_used": len(set(target) & set(scales)),
        "decisive_features": decisive,
        "reason": (
            f"{config['name']} {why} closeness-weighted regret ({regret[best]:.4f}; mean ALC {alc[best]:.4f}) "
            f"over the {len(neighbours)} nearest practice datasets{' it was run on' if coverage == 'own' else ''} "
            f"{[n for _, n in neighbours]}"
        ),
    }
    return plan, info


def selection_settings(db: dict) -> dict:
    """The selection settings stored by `python -m offline_meta tune --write`, if any."""
    stored = db.get("selection") or {}
    return {key: stored[key] for key in TUNED_SETTINGS if key in stored}


def choose_plan_or_default(
    metafeatures: dict,
    db_path: str | Path,
    default_plan: dict,
    *,
    members: dict | None = None,
    **kwargs,
) -> tuple[dict, dict]:
    """`choose_plan` on the database at `db_path`, `default_plan` its incumbent, or `default_plan`
    itself with the reason in info["reason"]; never raises. Settings the database stores (its
    tuned k and switch margin) apply unless `kwargs` give them.

    With `members` (the portfolio registry), the chosen plan is also checked against the plan
    schema, and a plan that fails the check falls back too. info["fallback"] says which happened.
    """
    start = time.monotonic()
    try:
        db = load_db(db_path)
        plan, info = choose_plan(metafeatures, db, incumbent=default_plan, **{**selection_settings(db), **kwargs})
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
