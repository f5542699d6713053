"""AutoSpeech submission entry point (SPEC.md, "The interface").

`Model` is a thin adapter from the platform's protocol to `portfolio.scheduler.Scheduler`,
which runs a plan (portfolio/plans/default.json) one round per `train` call. Everything
that needs no data (imports, TensorFlow threads, feature-code warm-up) happens in
`__init__`, which the platform does not charge.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from portfolio.features import log_mel_stats  # noqa: E402
from portfolio.plans import default_plan_path, load_plan  # noqa: E402
from portfolio.registry import MEMBERS  # noqa: E402
from portfolio.scheduler import Scheduler  # noqa: E402

LOG = logging.getLogger("autospeech")


def warm_up() -> None:
    """Pay one-off costs (FFT plans, mel filters, lazy imports) before the clock starts."""
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(16000).astype(np.float32) for _ in range(4)]
    for max_s in (0.5, 1.0, 3.0):
        log_mel_stats(clips, max_s=max_s)


class Model:
    """The AutoSpeech `Model`: train/test rounds delegated to the portfolio scheduler."""

    def __init__(self, metadata: dict):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.metadata = metadata
        plan = load_plan(os.environ.get("AUTOSPEECH_PLAN", default_plan_path()), MEMBERS)
        LOG.info("plan %s for %s", plan.get("name"), {k: metadata.get(k) for k in ("class_num", "train_num", "test_num")})
        self.scheduler = Scheduler(metadata, plan)
        warm_up()

    @property
    def done_training(self) -> bool:
        return self.scheduler.done_training

    @property
    def validation_score(self) -> float:
        """Validation 2*AUC-1 of the prediction `test` returns (read by the harness, for the record)."""
        return float(self.scheduler.best_score)

    def _remaining(self, remaining_time_budget) -> float:
        return float(self.metadata["time_budget"] if remaining_time_budget is None else remaining_time_budget)

    def train(self, train_dataset, remaining_time_budget=None):
        x_train, y_train = train_dataset
        self.scheduler.train(x_train, np.asarray(y_train), self._remaining(remaining_time_budget))

    def test(self, test_x, remaining_time_budget=None):
        return self.scheduler.test(test_x, self._remaining(remaining_time_budget))
