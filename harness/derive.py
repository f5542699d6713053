"""Tasks derived from built suite tasks: fewer training clips per class, the test set kept whole.

`python -m harness.derive --suite data/suite --tasks ravdess_speaker --per-class 1 2 5 --out data/fewshot`
writes `<out>/<task>_k<k>/<task>_k<k>.data` for each task and k, in the suite layout, so
`python -m harness bench --suite <out>` runs them. The training clips are a seeded,
class-balanced draw; the test clips and their labels are the source task's own, so a
score on a derived task is comparable across k.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from harness.dataset import read_dataset, write_dataset
from harness.errors import HarnessError


def cap_per_class(y_onehot: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `per_class` rows of each class, drawn at random (seeded)."""
    if per_class < 1:
        raise HarnessError(f"per_class must be an int >= 1, got {per_class!r}")
    y = np.argmax(y_onehot, axis=1)
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == label))[:per_class] for label in np.unique(y)]
    return np.sort(np.concatenate(picked))


def derive_few_shot(data_dir: str | Path, per_class: int, out: str | Path, *, seed: int = 0) -> Path:
    """Write the task at `data_dir` with `per_class` training clips per class under `out`; returns its .data dir."""
    dataset = read_dataset(data_dir)
    keep = cap_per_class(dataset.y_train, per_class, seed)
    name = f"{dataset.name}_k{per_class}"
    meta = {**dataset.meta, "train_num": len(keep)}
    return write_dataset(
        Path(out) / name, name, meta,
        [dataset.x_train[i] for i in keep], dataset.y_train[keep], dataset.x_test, dataset.y_test,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: derive few-shot tasks; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m harness.derive", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="data/suite", help="built suite root (default: data/suite)")
    parser.add_argument("--tasks", nargs="+", required=True, metavar="NAME", help="task folders of the suite")
    parser.add_argument("--per-class", nargs="+", type=int, required=True, metavar="K", help="training clips per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="root of the derived tasks")
    args = parser.parse_args(argv)
    try:
        for task in args.tasks:
            for k in args.per_class:
                data_dir = derive_few_shot(Path(args.suite) / task, k, args.out, seed=args.seed)
                print(f"wrote {data_dir}")
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
