"""Run a model on one dataset through the ingestion, then score it: the unit every benchmark repeats."""

from __future__ import annotations

import os
from pathlib import Path

from harness.dataset import atomic_write_json, read_test_solution
from harness.ingestion import load_predictions, run_ingestion
from harness.scoring import plot_learning_curve, score_run


def score_out_dir(dataset: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Score the predictions an ingestion left in `out_dir`; write result.json and learning_curve.png."""
    solution = read_test_solution(dataset)
    report, predictions = load_predictions(out_dir)
    result = score_run(solution, predictions, report["time_budget"])
    result.update(
        dataset=report["dataset"],
        status=report["status"],
        error=report["error"],
        wall_s=report["wall_s"],
        peak_rss_mb=report["peak_rss_mb"],
        init_s=report["init_s"],
    )
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "result.json", result)
    plot_learning_curve(result, out_dir / "learning_curve.png", f"{report['dataset']} (T = {report['time_budget']:.0f} s)")
    return result


def run_and_score(
    dataset: str | os.PathLike,
    code_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    time_budget: float | None = None,
    init_timeout_s: float | None = None,
    model_env: dict | None = None,
) -> dict:
    """Ingest then score; the result dict also lands in `<out_dir>/result.json`."""
    extra = {} if init_timeout_s is None else {"init_timeout_s": init_timeout_s}
    run_ingestion(dataset, code_dir, out_dir, time_budget=time_budget, model_env=model_env, **extra)
    return score_out_dir(dataset, out_dir)


def summary_line(result: dict) -> str:
    """One human line per run, for the CLI."""
    first = result["first_prediction_s"]
    final = result["final_score"]
    return (
        f"{result['dataset']}: ALC {result['alc']:.4f} | final 2AUC-1 "
        f"{'-' if final is None else f'{final:.4f}'} | first prediction "
        f"{'-' if first is None else f'{first:.1f} s'} | {result['n_predictions']} predictions | "
        f"status {result['status']} | wall {result['wall_s']:.1f} s | peak {result['peak_rss_mb']:.0f} MiB"
    )
