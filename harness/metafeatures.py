"""`python -m harness.metafeatures DATASET`: print a dataset's meta-features, one per line, with their meaning."""

from __future__ import annotations

import argparse
import sys
import time

from harness.dataset import read_dataset
from harness.errors import HarnessError
from harness.ingestion import PLATFORM_META_KEYS
from metafeatures.features import compute_metafeatures_detailed, describe


def main(argv: list[str] | None = None) -> int:
    """Print the meta-features of one dataset's training data; 2 when the dataset cannot be read."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.metafeatures",
        description="print a dataset's meta-features, one per line, with their meaning.",
    )
    parser.add_argument("dataset", help="a <name>.data directory or a folder holding exactly one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the acoustic subsample (default 0)")
    args = parser.parse_args(argv)
    try:
        dataset = read_dataset(args.dataset, with_solution=False)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = {k: v for k, v in dataset.meta.items() if k in PLATFORM_META_KEYS}
    start = time.monotonic()
    values, reasons = compute_metafeatures_detailed(dataset.x_train, dataset.y_train, metadata, seed=args.seed)
    elapsed = time.monotonic() - start
    width = max(map(len, values))
    for name, value in values.items():
        note = f"NaN: {reasons[name]}" if name in reasons else describe(name)
        print(f"{name:<{width}}  {value:>12.6g}  {note}")
    print(f"# {dataset.name}: {len(values)} meta-features in {elapsed:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
