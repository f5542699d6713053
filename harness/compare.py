"""Put several bench results side by side, with the 2019 winner's figures from ANCHORS.md.

    python -m harness.compare full=results/bench linear=results/bench-linear \
        --anchors ../shared/ANCHORS.md --out docs/comparison.md

Each LABEL=DIR names a `harness bench` output folder (its bench.csv), or, as
LABEL=FILE.json:CONFIG, the runs of one configuration in a meta-database built by
`python -m offline_meta build` (the same ingestion, so the same figures). The table has
one row per task: the anchor's ALC and final score, then each source's; a last row holds
the means over the tasks every column has.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from harness.dataset import atomic_write_bytes
from harness.errors import HarnessError

ANCHOR_ROW = re.compile(r"^\|\s*([a-z0-9_]+)\s*\|\s*([0-9.]+)\s*\|\s*([0-9.]+)\s*\|\s*([0-9.]+)\s*\|")


def read_anchors(path: str | Path) -> pd.DataFrame:
    """The anchor table of ANCHORS.md: task -> ALC, first prediction, final score."""
    rows = [m.groups() for line in Path(path).read_text().splitlines() if (m := ANCHOR_ROW.match(line))]
    if not rows:
        raise HarnessError(f"{path}: no table rows of the form | task | ALC | first | final |")
    frame = pd.DataFrame(rows, columns=["task", "alc", "first_prediction_s", "final_score"]).set_index("task")
    return frame.astype(float)


def read_bench(directory: str | Path) -> pd.DataFrame:
    """A bench's bench.csv without its mean row, indexed by task."""
    path = Path(directory) / "bench.csv"
    if not path.is_file():
        raise HarnessError(f"{path}: missing; run `python -m harness bench --out {directory}` first")
    frame = pd.read_csv(path)
    return frame[frame["task"] != "mean"].set_index("task")


def read_db_config(db_path: str | Path, config_name: str) -> pd.DataFrame:
    """The runs of configuration `config_name` at the database's time budget, indexed by task like a bench."""
    from offline_meta.db import MetaDbError, load_db, runs_at_budget

    try:
        budget, runs = runs_at_budget(load_db(db_path))
    except MetaDbError as error:
        raise HarnessError(str(error)) from error
    rows = [run for run in runs if run["config_name"] == config_name]
    if not rows:
        names = sorted({run["config_name"] for run in runs})
        raise HarnessError(f"{db_path}: no run of configuration {config_name!r} at {budget} s; it has {names}")
    frame = pd.DataFrame(rows).rename(columns={"dataset": "task"})
    return frame.set_index("task")[["alc", "final_score", "first_prediction_s"]]


def read_source(spec: str) -> pd.DataFrame:
    """A bench folder (DIR) or one configuration of a meta-database (FILE.json:CONFIG)."""
    path, _, config_name = spec.partition(".json:")
    return read_db_config(path + ".json", config_name) if config_name else read_bench(spec)


def comparison_table(benches: dict[str, pd.DataFrame], anchors: pd.DataFrame | None) -> pd.DataFrame:
    """Columns `<label> ALC` and `<label> final` per source, tasks as rows, plus a mean row."""
    sources = ({"2019 winner": anchors} if anchors is not None else {}) | benches
    columns = {}
    for label, frame in sources.items():
        columns[f"{label} ALC"] = frame["alc"]
        columns[f"{label} final"] = frame["final_score"]
    table = pd.DataFrame(columns)
    table = table.loc[sorted(set().union(*(frame.index for frame in benches.values())))]
    table.loc["mean"] = table.dropna().mean()
    return table


def to_markdown(table: pd.DataFrame) -> str:
    header = "| task | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    lines = [header, rule]
    for task, row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.4f}" for v in row]
        name = f"**{task}**" if task == "mean" else task
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "benches", nargs="+", metavar="LABEL=SOURCE",
        help="a bench output folder, or FILE.json:CONFIG for one configuration of a meta-database",
    )
    parser.add_argument("--anchors", default=None, help="ANCHORS.md with the 2019 winner's table")
    parser.add_argument("--out", default=None, help="write the markdown table here (default: print it)")
    args = parser.parse_args(argv)
    try:
        pairs = [item.split("=", 1) for item in args.benches]
        if any(len(pair) != 2 for pair in pairs):
            raise HarnessError(f"each source must be LABEL=DIR or LABEL=FILE.json:CONFIG, got {args.benches!r}")
        benches = {label: read_source(source) for label, source in pairs}
        anchors = read_anchors(args.anchors) if args.anchors else None
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = to_markdown(comparison_table(benches, anchors))
    if args.out:
        atomic_write_bytes(Path(args.out), markdown.encode())
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
