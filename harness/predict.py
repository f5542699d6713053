"""Label new recordings: train model.py on a whole labelled dataset, predict a folder of audio files.

    python -m harness predict --dataset DATASET_DIR --audio NEW_DIR --time-budget 300 --out OUT

Every train and test clip of DATASET_DIR (labels from its two solution files) becomes
training data; every decodable file under NEW_DIR (recursively, sorted, decoded as
`harness import` decodes) becomes the test set of a temporary dataset in OUT, which has
no solution file at all, so nothing can score it. The usual ingestion runs model.py on it
(`harness.ingestion.run_ingestion`, into `OUT/ingestion/`), and the last prediction it
saved becomes `OUT/predictions.csv`: `file` (relative to NEW_DIR), `predicted` (a class
name of labels.json), then one score column per class. `OUT/predict.json` records which
prediction that was, the ingestion's status and the files skipped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.audio_import import (
    N_JOBS, AudioImportError, SourceFile, decode_files, format_skipped, list_files, stale_folders,
)
from harness.dataset import atomic_write_bytes, atomic_write_json, read_dataset, solution_path, write_dataset
from harness.errors import HarnessError
from harness.ingestion import INIT_TIMEOUT_S, load_predictions, run_ingestion

TEMP_PREFIX = ".predict-dataset-"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def class_names(data_dir: Path, class_num: int, log: Callable[[str], None] = _log) -> list[str]:
    """The class of each label column: labels.json beside the solution (or in the .data folder), else "0".."k-1"."""
    for path in (data_dir.parent / "labels.json", data_dir / "labels.json"):
        if path.is_file():
            try:
                names = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise AudioImportError(f"{path}: not readable JSON ({error})") from error
            if not (isinstance(names, list) and len(names) == class_num and all(isinstance(n, str) for n in names)):
                raise AudioImportError(f"{path}: must be a list of {class_num} class names (one per label column), got {names!r}")
            return names
    log(f"note: no labels.json beside {data_dir}; classes are named by column number")
    return [str(index) for index in range(class_num)]


def predictions_csv(files: list[str], classes: list[str], scores: np.ndarray) -> bytes:
    """`file,predicted,<class>...` rows: the arg-max class name and every score, one row per file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "predicted", *classes])
    for file, row in zip(files, scores):
        writer.writerow([file, classes[int(np.argmax(row))], *(format(float(v), ".6g") for v in row)])
    return buffer.getvalue().encode()


def predict_folder(
    dataset: str | Path,
    audio: str | Path,
    out: str | Path,
    *,
    code_dir: str | Path = ".",
    time_budget: float | None = None,
    init_timeout_s: float = INIT_TIMEOUT_S,
    strict: bool = False,
    n_jobs: int = N_JOBS,
    progress: bool = True,
    model_env: dict | None = None,
    log: Callable[[str], None] = _log,
) -> dict:
    """Train on all of `dataset`, predict every decodable file under `audio`; write OUT/predictions.csv.

    Returns the summary also written to OUT/predict.json.
    """
    labelled = read_dataset(dataset)
    classes = class_names(labelled.data_dir, labelled.meta["class_num"], log)
    audio, out = Path(audio), Path(out)
    if not audio.is_dir():
        raise AudioImportError(f"--audio {str(audio)!r} must be a folder of audio files")
    files = list_files(audio)
    if not files:
        raise AudioImportError(f"--audio {str(audio)!r} holds no files")
    clips, skipped = decode_files(
        [SourceFile(file, audio / file) for file in files], strict=strict, n_jobs=n_jobs, progress=progress,
        desc="decoding new files",
    )
    if not clips:
        raise AudioImportError(f"--audio {str(audio)!r}: none of its {len(files)} file(s) could be decoded\n{format_skipped(skipped)}")
    decoded = [file for file in files if file in clips]
    budget = float(labelled.meta["time_budget"] if time_budget is None else time_budget)

    out.mkdir(parents=True, exist_ok=True)
    for stale in ("predictions.csv", "predict.json"):
        (out / stale).unlink(missing_ok=True)
    for leftover in stale_folders(out, TEMP_PREFIX):  # left by a killed predict
        shutil.rmtree(leftover, ignore_errors=True)
    temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=out))
    try:
        name = f"{labelled.name}_predict"
        data_dir = write_dataset(
            temp, name, {"time_budget": budget, "sample_rate": 16000},
            labelled.x_train + labelled.x_test, np.vstack([labelled.y_train, labelled.y_test]).astype(int),
            [clips[file] for file in decoded], np.zeros((len(decoded), len(classes)), dtype=int),
        )
        solution_path(data_dir).unlink()  # no labels exist for the new files: nothing may score them
        report = run_ingestion(temp, code_dir, out / "ingestion", time_budget=budget,
                               init_timeout_s=init_timeout_s, model_env=model_env)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    _, predictions = load_predictions(out / "ingestion")
    if not predictions:
        last_line = (report.error or "").strip().splitlines()[-1:] or ["no error recorded"]
        raise HarnessError(
            f"model.py made no prediction (ingestion status {report.status}: {last_line[0]}); "
            f"see {out / 'ingestion' / 'model.log'}"
        )
    t_s, scores = predictions[-1]
    atomic_write_bytes(out / "predictions.csv", predictions_csv(decoded, classes, scores))
    summary = {
        "dataset": str(labelled.data_dir),
        "audio": str(audio.resolve()),
        "code_dir": report.code_dir,
        "time_budget": budget,
        "train_num": len(labelled.x_train) + len(labelled.x_test),
        "classes": classes,
        "files": len(decoded),
        "prediction": {**report.predictions[-1], "t_s": t_s},
        "n_predictions": len(predictions),
        "ingestion_status": report.status,
        "ingestion_error": report.error,
        "skipped": [{"file": file, "reason": reason} for file, reason in skipped],
    }
    atomic_write_json(out / "predict.json", summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m harness predict`."""
    parser.add_argument("--dataset", required=True, help="a labelled dataset (e.g. from harness import): all its clips train the model")
    parser.add_argument("--audio", required=True, help="folder of new audio files to label (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder: predictions.csv, predict.json, ingestion/")
    parser.add_argument("--code-dir", default=".", help="directory with model.py (default: .)")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of charged time (default: the dataset's meta.json)")
    parser.add_argument("--init-timeout", type=float, default=INIT_TIMEOUT_S, help="limit on Model.__init__, seconds (default 1200)")
    parser.add_argument("--strict", action="store_true", help="stop (exit 2) at the first file that cannot be decoded")
    parser.add_argument("--jobs", type=int, default=N_JOBS, help=f"decoding processes (default {N_JOBS})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the prediction from parsed arguments; exit status 2 on bad input or a model that predicted nothing."""
    try:
        summary = predict_folder(
            args.dataset, args.audio, args.out, code_dir=args.code_dir, time_budget=args.time_budget,
            init_timeout_s=args.init_timeout, strict=args.strict, n_jobs=args.jobs, progress=not args.no_progress,
        )
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary["skipped"]:
        _log(format_skipped([(row["file"], row["reason"]) for row in summary["skipped"]]))
    if summary["ingestion_status"] in ("crash", "bad_prediction", "init_timeout"):
        error = (summary["ingestion_error"] or "").strip().splitlines()[-1:] or [""]
        _log(f"note: the run ended with status {summary['ingestion_status']} ({error[0]}); the last prediction "
             f"before that is used (model log: {args.out}/ingestion/model.log)")
    prediction = summary["prediction"]
    print(
        f"wrote {args.out}/predictions.csv: {summary['files']} files, {len(summary['classes'])} classes, "
        f"prediction {prediction['index'] + 1} of {summary['n_predictions']} (at {prediction['t_s']:.1f} s charged)"
    )
    return 0
