"""Leave-one-source-out check of run-time selection, from the real ALCs already in the database.

For each practice dataset, `choose_plan` sees the database without every dataset of the
same source (as for a truly new task) and picks a configuration; its recorded ALC on the
held-out dataset is compared with the best recorded there (the oracle) and with a
reference configuration (the default plan).
"""

from __future__ import annotations

from portfolio.meta_db import runs_at_budget
from portfolio.selection import SelectionError, choose_plan


def leave_one_source_out(db: dict, *, reference: str = "default", **kwargs) -> list[dict]:
    """One row per dataset: chosen config, its real ALC there, the oracle's, the reference's (None if not run)."""
    _, runs = runs_at_budget(db)
    alc = {(r["dataset"], r["config_id"]): float(r["alc"]) for r in runs}
    names = {r["config_id"]: r.get("config_name", r["config_id"]) for r in runs}
    names.update({config: entry["name"] for config, entry in db["configs"].items()})
    rows = []
    for dataset, entry in sorted(db["datasets"].items()):
        on_dataset = {config: value for (d, config), value in alc.items() if d == dataset}
        if not on_dataset:
            continue
        reference_alc = next((v for c, v in on_dataset.items() if names[c] == reference), None)
        row = {"dataset": dataset, "oracle": max(on_dataset.values()), "reference": reference_alc}
        try:
            _, info = choose_plan(entry["metafeatures"], db, exclude_sources=(entry.get("source", dataset),), **kwargs)
            row.update(chosen=info["config"], alc=on_dataset.get(info["config_id"]))
        except SelectionError as error:
            row.update(chosen=None, alc=None, why=str(error))
        rows.append(row)
    return rows
