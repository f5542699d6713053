"""Command line of the harness: `python -m harness {run,score,bench,lodo,import,predict} --help`."""

from __future__ import annotations

import argparse
import sys

from harness import audio_import, bench, lodo, predict
from harness.errors import HarnessError
from harness.evaluate import run_and_score, score_out_dir, summary_line


def build_parser() -> argparse.ArgumentParser:
    """The `run`, `score`, `bench`, `lodo`, `import` and `predict` subcommands and their options."""
    parser = argparse.ArgumentParser(prog="python -m harness", description="Local AutoSpeech ingestion and scoring.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run model.py on one dataset, then score it")
    run.add_argument("--dataset", required=True, help="a <name>.data directory or a root holding one")
    run.add_argument("--code-dir", default=".", help="directory with model.py (default: .)")
    run.add_argument("--time-budget", type=float, default=None, help="seconds of charged time (default: meta.json's)")
    run.add_argument("--init-timeout", type=float, default=None, help="limit on Model.__init__, seconds (default 1200)")
    run.add_argument("--out", required=True, help="output directory (predictions, ingestion.json, result.json, PNG)")

    score = commands.add_parser("score", help="score the predictions already in an output directory")
    score.add_argument("--dataset", required=True)
    score.add_argument("--out", required=True)

    bench.add_arguments(
        commands.add_parser(
            "bench", help="run model.py on every dataset of a suite and tabulate ALC",
            description="Run model.py on each dataset of a suite (python -m harness.suite build) in turn; "
            "writes <out>/<task>/, bench.md, bench.csv and learning_curves.png after every task.",
        )
    )
    lodo.add_arguments(
        commands.add_parser(
            "lodo", help="leave-one-dataset-out: meta-selected plan vs fixed choices on each held-out task",
            description="Hold out each suite task's source from the meta-database, run (or --simulate) the "
            "meta-selected plan and compare it with the single best fixed plan, the oracle, random plans and "
            "linear alone; writes <out>/<task>/, lodo.md, lodo.csv and lodo.png after every task.",
        )
    )
    audio_import.add_arguments(
        commands.add_parser(
            "import", help="turn a folder per class (or a path,label CSV) of audio files into an AutoSpeech dataset",
            description="Decode every file (mono, float32, resampled to 16 kHz), skip and list unusable ones, drop "
            "classes of fewer than 2 files, split each class into train and test, and write DATASET_DIR with "
            "labels.json and files.json; nothing is left half-written if the import is interrupted.",
        )
    )
    predict.add_arguments(
        commands.add_parser(
            "predict", help="train model.py on a whole labelled dataset and label a folder of new audio files",
            description="Train model.py through the usual ingestion on every clip of --dataset and write "
            "<out>/predictions.csv (file, predicted class, one score column per class) from its last prediction "
            "on the decodable files under --audio.",
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry; 2 on a HarnessError, so scripts can tell bad input from a crash."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return bench.main(args, argv)
    if args.command == "lodo":
        return lodo.main(args, argv)
    if args.command == "import":
        return audio_import.main(args, argv)
    if args.command == "predict":
        return predict.main(args, argv)
    try:
        if args.command == "run":
            result = run_and_score(
                args.dataset, args.code_dir, args.out, time_budget=args.time_budget, init_timeout_s=args.init_timeout
            )
        else:
            result = score_out_dir(args.dataset, args.out)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_line(result))
    if result["error"]:
        print(f"run ended with: {result['error'].strip().splitlines()[-1]}")
    print(f"wrote {args.out}/result.json and {args.out}/learning_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
