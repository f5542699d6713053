"""AutoSpeech submission entry point (SPEC.md, "The interface").

`Model` adapts the platform's protocol to the portfolio runtime: on the first `train` call
it computes the dataset's meta-features, picks a plan from the nearest practice datasets
in `meta_db.json` (or the default plan, with the reason logged), and hands the rounds to
`portfolio.scheduler.Scheduler`. Everything that needs no data (imports, TensorFlow
threads, feature-code warm-up) happens in `__init__`, which the platform does not charge.
Setting AUTOSPEECH_PLAN to a plan file skips selection (the offline build uses this);
AUTOSPEECH_META_DB points selection at another database (leave-one-dataset-out uses this);
AUTOSPEECH_ROUND_LOG names a folder for every round's probabilities (the offline build's replay).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from metafeatures import compute_metafeatures  # noqa: E402
from portfolio.embeddings import measure_rate, speed_key  # noqa: E402
from portfolio.features import log_mel_stats  # noqa: E402
from portfolio.neural import configure_tensorflow  # noqa: E402
from portfolio.plans import default_plan_path, load_plan  # noqa: E402
from portfolio.pretrained import NAMES as PRETRAINED_NAMES  # noqa: E402
from portfolio.pretrained import warm_up_pretrained  # noqa: E402
from portfolio.registry import MEMBERS  # noqa: E402
from portfolio.round_log import RoundLog  # noqa: E402
from portfolio.scheduler import Scheduler  # noqa: E402
from portfolio.selection import choose_plan_or_default  # noqa: E402

LOG = logging.getLogger("autospeech")
META_DB_PATH = ROOT / "meta_db.json"


def warm_up(plan: dict) -> dict:
    """Pay one-off costs before the clock starts: thread pools, FFT plans, mel filters, and
    loading (with its hash check) and first run of the pretrained models the plan uses.

    Returns the embedding speeds of the plan's pretrained steps, measured on this machine.
    """
    configure_tensorflow()
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(16000).astype(np.float32) for _ in range(4)]
    for max_s in (0.5, 1.0, 3.0):
        log_mel_stats(clips, max_s=max_s)
    pretrained = sorted({step["member"] for step in plan["steps"]} & set(PRETRAINED_NAMES))
    reasons = warm_up_pretrained(pretrained)
    for name, reason in reasons.items():
        if reason:
            LOG.warning("%s member unavailable, its steps will be skipped: %s", name, reason)
    rates = {}
    for step in plan["steps"]:
        if step["member"] in reasons and reasons[step["member"]] is None:
            spec = MEMBERS[step["member"]](**step.get("params", {})).feature_spec()
            rates[speed_key(spec["name"], spec["params"])] = measure_rate(spec["name"], spec["params"])
    LOG.info("embedding speeds (s per audio s): %s", {key[0]: round(rate, 4) for key, rate in rates.items()})
    return rates


class Model:
    """The AutoSpeech `Model`: plan selection, then train/test rounds by the portfolio scheduler."""

    def __init__(self, metadata: dict):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.metadata = metadata
        forced_plan_path = os.environ.get("AUTOSPEECH_PLAN")
        # The plan AUTOSPEECH_PLAN forces (selection is skipped), or None.
        self.forced_plan: dict | None = load_plan(forced_plan_path, MEMBERS) if forced_plan_path else None
        # Selection's incumbent and fallback; not needed, so not loaded, when a plan is forced.
        self.default_plan: dict | None = (
            None if self.forced_plan is not None else load_plan(default_plan_path(), MEMBERS)
        )
        self.scheduler: Scheduler | None = None
        self.embedding_rates = warm_up(self.forced_plan or self.default_plan)

    @property
    def done_training(self) -> bool:
        """True once no round of the plan fits the remaining budget, so ingestion stops calling train."""
        return self.scheduler is not None and self.scheduler.done_training

    @property
    def validation_score(self) -> float | None:
        """Validation 2*AUC-1 of the prediction `test` returns (read by the harness, for the record)."""
        if self.scheduler is None or not np.isfinite(self.scheduler.best_score):
            return None
        return float(self.scheduler.best_score)

    def _choose_plan(self, x_train: list, y_train: np.ndarray) -> dict:
        if self.forced_plan is not None:
            LOG.info("plan %s forced by AUTOSPEECH_PLAN", self.forced_plan.get("name"))
            return self.forced_plan
        metafeatures = compute_metafeatures(x_train, y_train, self.metadata)
        db_path = os.environ.get("AUTOSPEECH_META_DB", META_DB_PATH)
        plan, info = choose_plan_or_default(metafeatures, db_path, self.default_plan, members=MEMBERS)
        LOG.info("plan %s: %s (neighbours %s; decisive features %s)", plan.get("name"), info.get("reason"),
                 info.get("neighbours"), info.get("decisive_features"))
        return plan

    def _remaining(self, remaining_time_budget) -> float:
        return float(self.metadata["time_budget"] if remaining_time_budget is None else remaining_time_budget)

    def train(
        self, train_dataset: tuple[list[np.ndarray], np.ndarray], remaining_time_budget: float | None = None
    ) -> None:
        """Run one plan round per call (choosing the plan on the first), so each test can improve early."""
        x_train, y_train = train_dataset
        y_train = np.asarray(y_train)
        if self.scheduler is None:
            plan = self._choose_plan(x_train, y_train)
            log_dir = os.environ.get("AUTOSPEECH_ROUND_LOG")
            self.scheduler = Scheduler(self.metadata, plan, embedding_rates=self.embedding_rates,
                                       round_log=RoundLog(log_dir) if log_dir else None)
        self.scheduler.train(x_train, y_train, self._remaining(remaining_time_budget))

    def test(self, test_x: list[np.ndarray], remaining_time_budget: float | None = None) -> np.ndarray:
        """The best prediction on validation so far, so the learning curve never falls between rounds."""
        if self.scheduler is None:
            raise RuntimeError("Model.test called before Model.train")
        return self.scheduler.test(test_x, self._remaining(remaining_time_budget))
