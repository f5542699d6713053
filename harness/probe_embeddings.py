"""How much a pretrained embedding setting carries, outside the runtime: ``python -m harness.probe_embeddings``.

For each dataset and each setting (keyword arguments of :func:`portfolio.pretrained.whisper_embed`
or :func:`~portfolio.pretrained.yamnet_embed`), every training and test clip is embedded
once, a standardized logistic regression is fit on all training clips for each ``C``, and its
test 2AUC-1 is reported with the embedding's wall-clock seconds. No budget, no validation
split, no ensemble: it compares front ends (window length, count, place) before a plan pays
for one in real runs. Prints a markdown table and, with ``--out``, writes it atomically.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from harness.dataset import Dataset, atomic_write_bytes, read_dataset
from harness.scoring import normalized_auc


def probe(dataset: Dataset, embed: Callable, settings: dict, Cs: list[float]) -> dict:
    """Test 2AUC-1 per C of a linear head on ``embed(waves, **settings)``, and the embedding seconds."""
    start = time.monotonic()
    X_train = embed(dataset.x_train, **settings)
    X_test = embed(dataset.x_test, **settings)
    seconds = time.monotonic() - start
    y_train = np.argmax(dataset.y_train, axis=1)
    scores = {}
    for C in Cs:
        head = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300)).fit(X_train, y_train)
        proba = np.zeros((len(X_test), dataset.y_train.shape[1]))
        proba[:, head.classes_] = head.predict_proba(X_test)
        scores[C] = normalized_auc(dataset.y_test, proba)
    return {"scores": scores, "embed_s": seconds}


def table(rows: list[tuple[str, str, dict]], Cs: list[float]) -> str:
    """Markdown: one line per (dataset, setting)."""
    lines = ["| task | setting | " + " | ".join(f"C = {C:g}" for C in Cs) + " | embedding s (train + test) |",
             "|---|---|" + "---:|" * (len(Cs) + 1)]
    for task, setting, result in rows:
        scores = " | ".join(f"{result['scores'][C]:.4f}" for C in Cs)
        lines.append(f"| {task} | `{setting}` | {scores} | {result['embed_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.probe_embeddings", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, required=True, help="folder of datasets (harness.suite build)")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--embedder", choices=("whisper", "yamnet"), default="whisper")
    parser.add_argument("--settings", nargs="+", required=True, help='JSON objects, e.g. \'{"window_s": 4.0}\'')
    parser.add_argument("--C", nargs="+", type=float, default=[0.03, 0.1], dest="Cs")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    settings = []
    for text in args.settings:
        try:
            setting = json.loads(text)
        except json.JSONDecodeError as error:
            parser.error(f"--settings {text!r} is not JSON: {error}")
        if not isinstance(setting, dict):
            parser.error(f"--settings {text!r} must be a JSON object")
        settings.append(setting)
    from portfolio.pretrained import availability, whisper_embed, yamnet_embed

    reason = availability(args.embedder)
    if reason:
        parser.error(reason)
    embed = {"whisper": whisper_embed, "yamnet": yamnet_embed}[args.embedder]
    rows = []
    for task in args.tasks:
        dataset = read_dataset(args.suite / task)
        for setting in settings:
            result = probe(dataset, embed, setting, args.Cs)
            rows.append((task, json.dumps(setting, sort_keys=True), result))
            print(task, rows[-1][1], {C: round(s, 4) for C, s in result["scores"].items()}, f"{result['embed_s']:.0f} s",
                  flush=True)
    text = table(rows, args.Cs)
    print(text)
    if args.out:
        atomic_write_bytes(args.out, text.encode())


if __name__ == "__main__":
    main()
