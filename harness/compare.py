"""Put several bench results side by side, with the 2019 winner's figures from ANCHORS.md.

    python -m harness.compare full=results/bench linear=results/bench-linear \
        --anchors ../shared/ANCHORS.md --out docs/comparison.md

Each LABEL=DIR names a `harness bench` output folder (its bench.csv). The table has one
row per task: the anchor's ALC and final score, then each bench's; a last row holds the
means over the tasks every column has.
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
    parser.add_argument("benches", nargs="+", metavar="LABEL=DIR", help="bench output folders to compare")
    parser.add_argument("--anchors", default=None, help="ANCHORS.md with the 2019 winner's table")
    parser.add_argument("--out", default=None, help="write the markdown table here (default: print it)")
    args = parser.parse_args(argv)
    try:
        pairs = [item.split("=", 1) for item in args.benches]
        if any(len(pair) != 2 for pair in pairs):
            raise HarnessError(f"each bench must be LABEL=DIR, got {args.benches!r}")
        benches = {label: read_bench(directory) for label, directory in pairs}
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
