"""Leave-one-source-out checks of run-time selection, from the real ALCs already in the database.

For each practice dataset, `choose_plan` sees the database without every dataset of the
same source (as for a truly new task) and picks a configuration; its recorded ALC on the
held-out dataset is compared with the best recorded there (the oracle) and with a
reference configuration (the default plan).

`tune_selection` chooses selection's own settings (k, the switch margin, the incumbent rule, the
distance's feature set, the shrinkage of the vote, which datasets vote on each configuration) the same way, and
measures that choice honestly by nesting: for each held-out source the settings are chosen
on the other sources only.
"""

from __future__ import annotations

import itertools
import math

from portfolio.meta_db import held_out_db, mean_alc_by_cell, runs_at_budget, source_of
from portfolio.selection import COVERAGES, FEATURE_SETS, INCUMBENT_RULES, SWITCH_MARGIN, SelectionError, choose_plan

# The settings tuning tries (data); ties go to the earlier entry, so the defaults come first.
SELECTION_GRID = {"k": [3, 1, 2, 5], "switch_margin": [SWITCH_MARGIN, 0.0, 0.01, 0.05],
                  "incumbent_rule": list(INCUMBENT_RULES), "features": list(FEATURE_SETS),
                  "shrinkage": [0.0, 0.25, 0.5], "coverage": list(COVERAGES)}


def leave_one_source_out(db: dict, *, reference: str = "default", **kwargs) -> list[dict]:
    """One row per dataset: chosen config, its real ALC there, the oracle's, the reference's (None if not run)."""
    _, runs = runs_at_budget(db)
    alc = mean_alc_by_cell(runs)
    names = {r["config_id"]: r.get("config_name", r["config_id"]) for r in runs}
    names.update({config: entry["name"] for config, entry in db["configs"].items()})
    rows = []
    for dataset, entry in sorted(db["datasets"].items()):
        on_dataset = {config: value for (d, config), value in alc.items() if d == dataset}
        if not on_dataset:
            continue
        reference_alc = next((v for c, v in on_dataset.items() if names[c] == reference), None)
        row = {"dataset": dataset, "source": source_of(db, dataset), "oracle": max(on_dataset.values()),
               "reference": reference_alc}
        try:
            _, info = choose_plan(entry["metafeatures"], db, exclude_sources=(source_of(db, dataset),), explain=False,
                                  **kwargs)
            row.update(chosen=info["config"], alc=on_dataset.get(info["config_id"]))
        except SelectionError as error:
            row.update(chosen=None, alc=None, why=str(error))
        rows.append(row)
    return rows


def mean_regret(rows: list[dict]) -> float:
    """Mean gap to the oracle over the rows; a choice never run on its dataset, or none at all,
    counts as the worst recorded there would (the gap is then unknown, so assume the worst)."""
    if not rows:
        return math.inf
    return sum(r["oracle"] - r["alc"] if r["alc"] is not None else r["oracle"] for r in rows) / len(rows)


def _settings(grid: dict) -> list[dict]:
    names = sorted(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]


def best_settings(db: dict, *, grid: dict = SELECTION_GRID, **kwargs) -> tuple[dict, float]:
    """The settings of least leave-one-source-out regret on `db` (first in grid order on ties).
    A setting given in `kwargs` is held fixed: its grid entry is left out."""
    tuned = {name: values for name, values in grid.items() if name not in kwargs}
    scored = [(mean_regret(leave_one_source_out(db, **setting, **kwargs)), index, setting)
              for index, setting in enumerate(_settings(tuned))]
    regret, _, setting = min(scored, key=lambda item: (round(item[0], 9), item[1]))
    return setting, regret


def tune_selection(db: dict, *, grid: dict = SELECTION_GRID, **kwargs) -> dict:
    """Selection settings by leave-one-source-out, and nested leave-one-source-out's estimate of them.

    Returns {"settings": chosen on all sources, "loo_regret": their (optimistic) regret,
    "nested_regret": regret when each source's settings were chosen without it, "outer": one row
    per held-out dataset with the settings used}. `kwargs` go to `choose_plan` (incumbent, features).
    """
    budget, _ = runs_at_budget(db)
    sources = sorted({source_of(db, name) for name in db["datasets"]})
    if len(sources) < 3:
        raise SelectionError(f"nested leave-one-source-out needs datasets of at least 3 sources, got {len(sources)}")
    outer = []
    for source in sources:
        inner_setting, _ = best_settings(held_out_db(db, source, budget), grid=grid, **kwargs)
        rows = leave_one_source_out(db, **inner_setting, **kwargs)
        outer += [{**row, "settings": inner_setting} for row in rows if row["source"] == source]
    settings, loo_regret = best_settings(db, grid=grid, **kwargs)
    return {"settings": settings, "loo_regret": loo_regret, "nested_regret": mean_regret(outer), "outer": outer}
