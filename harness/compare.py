"""Put several bench results side by side, with the 2019 winner's figures from ANCHORS.md.

    python -m harness.compare full=results/bench linear=results/bench-linear \
        --anchors ../shared/ANCHORS.md

Each LABEL=DIR names a `harness bench` output folder (its bench.csv), or, as
LABEL=FILE.json:CONFIG, the runs of one configuration in a meta-database built by
`python -m offline_meta build` (the same ingestion, so the same figures; FILE.json:CONFIG@SINCE
keeps the runs finished at or after SINCE, an ISO date or time, e.g. the runs of one machine), or, as
LABEL=FILE.csv:METHOD, one method's rows of a `harness lodo` table (its real runs of
model.py). Several runs of one method join with `+` (LABEL=DIR1+DIR2+FILE.json:CONFIG):
the label's ALC and final score are then the means over its runs on each task, with the
number of runs and the ALC's standard deviation beside them. The table has one row per
task: the anchor's ALC and final score, then each label's; a last row holds the means over
the tasks every column has. `--versus A B` adds the per-task ALC difference A - B and counts
the tasks where A is above, equal (to 4 decimals) and below B.
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
SOURCE_FORMS = "LABEL=DIR, LABEL=FILE.json:CONFIG[@SINCE] or LABEL=FILE.csv:METHOD"


def read_anchors(path: str | Path) -> pd.DataFrame:
    """The anchor table of ANCHORS.md: task -> ALC, first prediction, final score."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: anchors file missing")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise HarnessError(f"{path}: anchors file not readable ({error})") from error
    rows = [m.groups() for line in text.splitlines() if (m := ANCHOR_ROW.match(line))]
    if not rows:
        raise HarnessError(f"{path}: no table rows of the form | task | ALC | first | final |")
    frame = pd.DataFrame(rows, columns=["task", "alc", "first_prediction_s", "final_score"]).set_index("task")
    return frame.astype(float)


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A results csv with `columns`, ALC and final score numeric; anything else is a HarnessError naming it."""
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise HarnessError(f"{path}: not a readable csv ({error})") from error
    missing = [column for column in columns if column not in frame]
    if missing:
        raise HarnessError(f"{path}: lacks columns {missing}; it has {list(frame.columns)}")
    for column in ("alc", "final_score"):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise HarnessError(f"{path}: column {column!r} must hold numbers")
    return frame


def read_bench(directory: str | Path) -> pd.DataFrame:
    """A bench's bench.csv without its mean row, indexed by task."""
    path = Path(directory) / "bench.csv"
    if not path.is_file():
        raise HarnessError(f"{path}: missing; run `python -m harness bench --out {directory}` first")
    frame = _read_table(path, ("task", "alc", "final_score"))
    return frame[frame["task"] != "mean"].set_index("task")


def read_db_config(db_path: str | Path, config_name: str, since: str | None = None) -> pd.DataFrame:
    """The runs of configuration `config_name` at the database's time budget, indexed by task like a bench;
    with `since` (an ISO date or time), only those finished at or after it."""
    from portfolio.meta_db import MetaDbError, load_db, runs_at_budget

    try:
        budget, runs = runs_at_budget(load_db(db_path))
    except MetaDbError as error:
        raise HarnessError(str(error)) from error
    rows = [run for run in runs if run["config_name"] == config_name]
    if not rows:
        names = sorted({run["config_name"] for run in runs})
        raise HarnessError(f"{db_path}: no run of configuration {config_name!r} at {budget} s; it has {names}")
    if since is not None:
        rows = [run for run in rows if str(run.get("finished") or "") >= since]
        if not rows:
            raise HarnessError(f"{db_path}: no run of configuration {config_name!r} finished at or after {since!r}")
    frame = pd.DataFrame(rows).rename(columns={"dataset": "task"})
    return frame.set_index("task")[["alc", "final_score", "first_prediction_s"]]


def read_lodo_method(csv_path: str | Path, method: str) -> pd.DataFrame:
    """One method's rows of a `harness lodo` table (lodo.csv), indexed by task like a bench."""
    path = Path(csv_path)
    if not path.is_file():
        raise HarnessError(f"{path}: missing; run `python -m harness lodo --out {path.parent}` first")
    frame = _read_table(path, ("task", "method", "alc", "final_score", "first_prediction_s"))
    rows = frame[(frame["method"] == method) & (frame["task"] != "mean") & frame["alc"].notna()]
    if rows.empty:
        raise HarnessError(f"{path}: no row of method {method!r} with an ALC; it has {sorted(set(frame['method']))}")
    return rows.set_index("task")[["alc", "final_score", "first_prediction_s"]]


def read_source(spec: str) -> pd.DataFrame:
    """A bench folder (DIR), a configuration of a meta-database (FILE.json:CONFIG) or a lodo method (FILE.csv:METHOD)."""
    path, _, config_name = spec.partition(".json:")
    if config_name:
        config_name, _, since = config_name.partition("@")
        return read_db_config(path + ".json", config_name, since or None)
    path, _, method = spec.partition(".csv:")
    return read_lodo_method(path + ".csv", method) if method else read_bench(spec)


def read_runs(spec: str) -> pd.DataFrame:
    """Several runs of one method (sources joined by `+`): mean ALC and final score per task, run count, ALC sd."""
    frames = [read_source(part) for part in spec.split("+")]
    runs = pd.concat(frames).reindex(columns=["alc", "final_score", "first_prediction_s"]).astype(float)
    grouped = runs.groupby(level=0)
    summary = grouped[["alc", "final_score"]].mean()
    summary["first_prediction_s"] = grouped["first_prediction_s"].median()
    summary["runs"] = grouped["alc"].count()
    summary["alc_sd"] = grouped["alc"].std(ddof=1)
    return summary


def keep_tasks(frame: pd.DataFrame, tasks: list[str], label: str) -> pd.DataFrame:
    """The rows of `frame` for `tasks`; an error naming the label when none of them is there."""
    kept = frame[frame.index.isin(tasks)]
    if kept.empty:
        raise HarnessError(f"{label}: none of the tasks {tasks} among its tasks {sorted(frame.index)}")
    return kept


FIRST_NOTE = "first s: median first-prediction time over the runs; on the mean row, the median over those tasks"


def comparison_table(
    benches: dict[str, pd.DataFrame], anchors: pd.DataFrame | None, first: bool = False
) -> pd.DataFrame:
    """Columns `<label> ALC` and `<label> final` per source (and `runs`, `ALC sd` where a label has several runs;
    `first s` with `first`), tasks as rows, plus a mean row over the tasks every ALC and final column has
    (for `first s`, the median over them: one slow start should not hide a typical one)."""
    sources = ({"2019 winner": anchors} if anchors is not None else {}) | benches
    columns, value_columns, first_columns = {}, [], []
    for label, frame in sources.items():
        columns[f"{label} ALC"] = frame["alc"]
        columns[f"{label} final"] = frame["final_score"]
        value_columns += [f"{label} ALC", f"{label} final"]
        if first:
            columns[f"{label} first s"] = frame["first_prediction_s"]
            first_columns.append(f"{label} first s")
        if "runs" in frame and (frame["runs"] > 1).any():
            columns[f"{label} runs"] = frame["runs"]
            columns[f"{label} ALC sd"] = frame["alc_sd"]
    table = pd.DataFrame(columns)
    table = table.loc[sorted(set().union(*(frame.index for frame in benches.values())))]
    # Run counts and spreads have no meaningful mean: their cells stay empty in the mean row.
    covered = table.dropna(subset=value_columns)
    table.loc["mean", value_columns] = covered[value_columns].mean()
    if first_columns:
        table.loc["mean", first_columns] = covered[first_columns].median()
    return table


def add_versus(table: pd.DataFrame, first: str, second: str) -> str:
    """Add the column `<first> - <second> ALC` (per task, and for the means) to `table`; return a one-line
    count of the tasks where `first` is above, equal (to 4 decimals) and below `second`."""
    for label in (first, second):
        if f"{label} ALC" not in table:
            raise HarnessError(f"--versus: no label {label!r}; the labels are {[c[:-4] for c in table if c.endswith(' ALC')]}")
    difference = (table[f"{first} ALC"] - table[f"{second} ALC"]).round(4)
    table[f"{first} - {second} ALC"] = difference
    per_task = difference.drop(index="mean").dropna()
    above, equal, below = int((per_task > 0).sum()), int((per_task == 0).sum()), int((per_task < 0).sum())
    worst = f"; largest shortfall {-per_task.min():.4f} ({per_task.idxmin()})" if below else ""
    return (f"{first} - {second} ALC over {len(per_task)} tasks: above on {above}, equal on {equal}, "
            f"below on {below}{worst}")


def to_markdown(table: pd.DataFrame) -> str:
    """The comparison as a markdown table: counts as integers, seconds to 2 decimals, scores to 4, the mean row bold."""
    header = "| task | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    lines = [header, rule]
    for task, row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.0f}" if column.endswith(" runs")
                 else f"{v:.2f}" if column.endswith(" first s") else f"{v:.4f}" for column, v in row.items()]
        name = f"**{task}**" if task == "mean" else task
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: print (and with --out write) the comparison; 2 on a HarnessError."""
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "benches", nargs="+", metavar="LABEL=SOURCE",
        help="a bench output folder, FILE.json:CONFIG[@SINCE] (a meta-database configuration, runs finished "
             "since an ISO date or time) or FILE.csv:METHOD "
             "(a lodo method); several runs joined by +",
    )
    parser.add_argument("--versus", nargs=2, metavar=("A", "B"), help="add the per-task ALC difference A - B")
    parser.add_argument("--anchors", default=None, help="ANCHORS.md with the 2019 winner's table")
    parser.add_argument("--tasks", nargs="+", metavar="NAME", help="only these tasks (default: every task of any source)")
    parser.add_argument("--first", action="store_true", help="add each label's first-prediction time (median of runs)")
    parser.add_argument("--out", default=None, help="write the markdown table here (default: print it)")
    args = parser.parse_args(argv)
    try:
        pairs = [item.split("=", 1) for item in args.benches]
        for item, pair in zip(args.benches, pairs):
            if len(pair) != 2:
                raise HarnessError(f"each source must be {SOURCE_FORMS}, got {item!r}")
        benches = {label: read_runs(source) for label, source in pairs}
        if args.tasks:
            benches = {label: keep_tasks(frame, args.tasks, label) for label, frame in benches.items()}
        anchors = read_anchors(args.anchors) if args.anchors else None
        table = comparison_table(benches, anchors, first=args.first)
        summary = add_versus(table, *args.versus) if args.versus else None
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    notes = [note for note in (summary, FIRST_NOTE if args.first else None) if note]
    markdown = to_markdown(table) + "".join(f"\n{note}\n" for note in notes)
    if args.out:
        atomic_write_bytes(Path(args.out), markdown.encode())
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
