"""Each round's validation and test probabilities, on disk, so plans can be replayed offline.

The offline build sets AUTOSPEECH_ROUND_LOG to a folder for every run; `model.py` then
hands the scheduler a `RoundLog`, which writes:

- `validation.npz` once: the validation mode, the validation clips' indices and one-hot
  labels, the scorable class columns, and `prepare_s`, the seconds the first `train` call
  spent before its round (paid once per run, so a replayed later step does not pay it);
- `round_NNNN.npz` per round that predicted test: its label, step index, validation score,
  validation probabilities (float64, so a replayed ensemble
  picks exactly as the runtime did) and test probabilities (float32), and `elapsed_s`, the charged time when its
  test prediction was ready.

`offline_meta/replay.py` rebuilds a plan's learning curve from these, ensembles included.
Writes are atomic; a failed write turns the log off with one warning and never stops the run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

LOG = logging.getLogger("autospeech")
ROUNDS_DIR = "rounds"  # the offline build's log folder inside each run's output folder
VALIDATION_FILE = "validation.npz"
ROUND_PATTERN = "round_*.npz"


class RoundLog:
    """Writes the files above into `folder` (created if missing)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.enabled = True
        self.n_rounds = 0

    def _save(self, name: str, arrays: dict) -> None:
        if not self.enabled:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.folder / f".{name}.partial"
            with open(partial, "wb") as handle:
                np.savez_compressed(handle, **arrays)
            os.replace(partial, self.folder / name)
        except OSError as error:
            self.enabled = False
            LOG.warning("round log in %s turned off: cannot write %s (%s)", self.folder, name, error)

    def validation(self, mode: str, val_idx: np.ndarray, y_val_onehot: np.ndarray, columns: np.ndarray,
                   prepare_s: float) -> None:
        """Once, after the first `train` call has chosen how rounds are validated."""
        self._save(VALIDATION_FILE, {
            "mode": np.array(mode), "val_idx": np.asarray(val_idx), "y_val_onehot": np.asarray(y_val_onehot),
            "columns": np.asarray(columns), "prepare_s": np.array(float(prepare_s)),
        })

    def round(self, label: str, step_index: int, val_score: float, val_proba: np.ndarray,
              test_proba: np.ndarray, elapsed_s: float) -> None:
        """One round whose test probabilities were just computed."""
        self._save(f"round_{self.n_rounds:04d}.npz", {
            "label": np.array(label), "step_index": np.array(int(step_index)), "val_score": np.array(float(val_score)),
            "val_proba": np.asarray(val_proba, dtype=np.float64), "test_proba": np.asarray(test_proba, dtype=np.float32),
            "elapsed_s": np.array(float(elapsed_s)),
        })
        self.n_rounds += 1
