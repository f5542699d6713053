"""The anytime runtime behind model.py: plan steps as train/test rounds, a curve that never falls.

Each `train` call runs one round of the current plan step (fit a member within a time
allowance, score it on a held-out validation split); the following `test` call returns a
new test prediction only when the round, alone or in an ensemble with the best earlier
rounds, beats the best validation score so far, and otherwise repeats the best prediction.
Every round is costed before it starts and skipped if it would not fit in the remaining
budget, so the ingestion never has to kill a call; the ensemble step is costed too.

How rounds are validated depends on how many clips each class has (`choose_validation`):
a held-out split when classes are well filled; out-of-fold predictions over every training
clip ("crossfit": k fold copies of each member beside the one fit on all clips) when they
are few, so small data is neither wasted on validation nor validated on one class; and no
validation at all when every class has a single clip, where each step's latest round is
averaged instead.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from portfolio.base import COST_MARGIN
from portfolio.embeddings import EmbeddingStore
from portfolio.features import FeatureCache
from portfolio.metric import MetricError, normalized_auc
from portfolio.input_audit import audit_clips, audit_labels, audit_test_lengths
from portfolio.plans import check_plan
from portfolio.registry import MEMBERS
from portfolio.round_log import RoundLog

LOG = logging.getLogger("autospeech")
SR = 16000
# Seconds of compute per second of (fixed-length) audio, before any front end is measured.
PRIOR_FEATURE_S_PER_AUDIO_S = 0.001


@dataclass
class Round:
    """One finished round: where it came from, its validation probabilities and score."""

    label: str
    val_proba: np.ndarray
    val_score: float
    member: object
    step: dict
    step_index: int
    test_proba: np.ndarray | None = None


def stratified_validation_split(
    y: np.ndarray, fraction: float, max_clips: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): about `fraction` of each class to val, capped at `max_clips` in all.

    Classes with a single clip stay entirely in train, so every class can still be learnt.
    """
    rng = np.random.default_rng(seed)
    fraction = min(fraction, max_clips / max(len(y), 1))
    train_idx, val_idx = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(fraction * len(members))) if len(members) >= 2 else 0
        n_val = min(max(n_val, 1 if len(members) >= 2 else 0), len(members) - 1)
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return np.sort(np.array(train_idx, dtype=int)), np.sort(np.array(val_idx, dtype=int))


@dataclass
class Validation:
    """How rounds are scored: which clips, which class columns, and (crossfit) each clip's fold."""

    mode: str  # "holdout", "crossfit" or "none"
    train_idx: np.ndarray  # clips members are fit on
    val_idx: np.ndarray  # clips whose held-out probabilities score a round
    columns: np.ndarray  # class columns that can be scored on val_idx
    folds: np.ndarray | None = None  # crossfit: fold of every clip of val_idx (= train_idx)
    n_folds: int = 0


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of every clip: each class dealt round-robin from a random fold, so folds stay balanced."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        folds[members] = (rng.integers(n_folds) + np.arange(len(members))) % n_folds
    return folds


def choose_validation(y: np.ndarray, class_num: int, config: dict, seed: int) -> Validation:
    """The validation policy for these labels (`config` is the plan's "validation" object).

    Holdout (a stratified `fraction`, at most `max_clips`) when the median class has at least
    `min_holdout_per_class` clips, the held-out clips span two classes or more and number at
    least `min_holdout_clips` (a score on a few dozen clips picks rounds by noise); otherwise,
    up to `max_crossfit_clips` clips, crossfit with up to `folds` folds, scored on the columns
    of classes with two clips or more; with no such column, no validation ("none").
    """
    counts = np.bincount(y, minlength=class_num)
    present = counts[counts > 0]
    train_idx, val_idx = stratified_validation_split(
        y, config.get("fraction", 0.2), config.get("max_clips", 600), seed
    )
    holdout_columns = np.unique(y[val_idx])
    small = (
        np.median(present) < config.get("min_holdout_per_class", 10)
        or len(holdout_columns) < 2
        or len(val_idx) < config.get("min_holdout_clips", 0)
    )
    if not small or len(y) > config.get("max_crossfit_clips", 3000):
        return Validation("holdout", train_idx, val_idx, holdout_columns)
    all_idx = np.arange(len(y))
    columns = np.flatnonzero(counts >= 2)
    if len(columns) == 0:
        return Validation("none", all_idx, np.array([], dtype=int), columns)
    n_folds = int(min(config.get("folds", 3), max(2, present.max())))
    return Validation("crossfit", all_idx, all_idx, columns, stratified_folds(y, n_folds, seed), n_folds)


def class_interleaved_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of `y`'s indices that takes one clip of each class in turn (shuffled within classes)."""
    rng = np.random.default_rng(seed)
    rank = np.empty(len(y))
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        rank[members] = np.arange(len(members)) + rng.random()  # ties between classes broken at random
    return np.argsort(rank, kind="stable")


def class_balanced_subset(y: np.ndarray, max_per_class: int, seed: int) -> np.ndarray:
    """Up to `max_per_class` indices of each class, sorted."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == label))[:max_per_class] for label in np.unique(y)]
    return np.sort(np.concatenate(picked))


def validation_score(y_val_onehot: np.ndarray, proba: np.ndarray) -> float:
    """2*AUC-1 on validation, as the platform scores test; -1 where nothing is scorable.

    Callers pass only the scorable columns (`Validation.columns`) of both arrays.
    """
    try:
        return normalized_auc(y_val_onehot, proba)
    except MetricError as error:  # e.g. no scorable column when validation holds one class
        LOG.warning("validation score unavailable: %s", error)
        return -1.0


def greedy_ensemble(val_probas: list[np.ndarray], y_val_onehot: np.ndarray, max_size: int) -> tuple[np.ndarray, float]:
    """Forward selection with replacement of the average that scores best on validation.

    Returns the weights (summing to one) over `val_probas` and the ensemble's score; the
    best single model is the first pick, so the ensemble never scores below it.
    """
    counts = np.zeros(len(val_probas))
    total = np.zeros_like(val_probas[0])
    best_counts, best_score = counts.copy(), -np.inf
    for size in range(1, max_size + 1):
        scores = [validation_score(y_val_onehot, (total + proba) / size) for proba in val_probas]
        pick = int(np.argmax(scores))
        counts[pick] += 1
        total += val_probas[pick]
        if scores[pick] > best_score:
            best_counts, best_score = counts.copy(), scores[pick]
    return best_counts / best_counts.sum(), best_score


def updated_pool(pool: list[Round], candidate: Round, pool_size: int, per_step: int | None = None) -> list[Round]:
    """The ensemble's candidates after a new round: the best `pool_size` by validation score, at most
    `per_step` of them from one plan step (None: no cap).

    Without the cap one step's many similar rounds can fill the pool and shut out a member that
    scores a little lower on a small validation split but would add to the average.
    """
    ranked = sorted(pool + [candidate], key=lambda r: r.val_score, reverse=True)
    if per_step is not None:
        kept: dict[int, int] = {}
        capped = []
        for round_ in ranked:
            kept[round_.step_index] = kept.get(round_.step_index, 0) + 1
            if kept[round_.step_index] <= per_step:
                capped.append(round_)
        ranked = capped
    return ranked[:pool_size]


class Scheduler:
    """Runs a plan (plain data, see portfolio/plans/) one round per `train` call.

    `members` maps the plan's member names to classes (default: the portfolio registry);
    `embedding_rates` are embedding speeds measured in advance (`embeddings.measure_rate`,
    keyed by `embeddings.speed_key`); `round_log`, if given, receives every round's
    probabilities for offline replay (`portfolio/round_log.py`).
    """

    def __init__(
        self, metadata: dict, plan: dict, *, members: dict | None = None, seed: int = 0,
        embedding_rates: dict | None = None, round_log: RoundLog | None = None,
    ):
        self.class_num = int(metadata["class_num"])
        self.time_budget = float(metadata.get("time_budget") or np.nan)  # to stamp logged rounds
        self.round_log = round_log
        self.n_test = int(metadata["test_num"])
        self.members = MEMBERS if members is None else members
        self.plan = check_plan(plan, self.members)
        self.seed = seed
        self.done_training = False
        self.cache = FeatureCache()
        self.store = EmbeddingStore()  # per-clip pretrained embeddings, by ("train"|"test", index)
        self.store.rates.update(embedding_rates or {})  # speeds measured before the clock started
        self.test_x: list | None = None  # the test clips, once `test` has been called
        self.feature_rates = {}  # front-end name -> measured seconds per audio second
        self._computed = set()  # feature keys (see _feature_key) already in the cache
        self.step_index = 0
        self.step_rounds = 0
        self.step_stale_rounds = 0
        self.step_best_score = -np.inf  # best validation score of the current step's member
        self.step_member = None
        self.step_fold_members: list = []  # crossfit: the step member's copy for each fold
        self.step_complete = False  # all its clips embedded, or a round that changed nothing
        self.step_last_val_proba: np.ndarray | None = None  # the current step's previous round, on validation
        self.pending: Round | None = None
        self.ensemble_pool: list[Round] = []  # best rounds by validation (up to pool_size), with test probabilities
        self.ensemble_weights: dict[str, float] = {}  # round label -> weight in the returned prediction
        self.latest_by_step: dict[int, Round] = {}  # validation "none": each step's latest round, averaged
        self.best_score = -np.inf
        self.best_prediction = None
        self.score_call_s = 1e-3  # measured seconds of one validation score (the ensemble's unit of work)
        self.validation: Validation | None = None  # set on the first train call
        self.validate_round = True  # False: the current round fits no fold copies (crossfit only)
        self.test_audited = False

    # ------------------------------------------------------------------ data views

    def _prepare(self, x_train: list, y_train: np.ndarray) -> None:
        """First call only: labels, the validation policy, and the training subsets of the plan."""
        self.x_train = x_train
        self.y = np.argmax(y_train, axis=1)
        self.validation = choose_validation(self.y, self.class_num, self.plan.get("validation", {}), self.seed)
        self.y_val_onehot = np.eye(self.class_num)[self.y[self.validation.val_idx]]
        durations_s = np.array([np.size(wave) for wave in x_train]) / SR
        self.duration_cap_s = max(0.5, float(np.ceil(np.percentile(durations_s, 95) * 10) / 10))
        self.train_max_s = float(durations_s.max())
        for finding in audit_clips(x_train, "training", seed=self.seed) + audit_labels(y_train):
            LOG.warning("input: %s", finding)
        v = self.validation
        LOG.info(
            "validation %s: %d train, %d validation clips, %d scorable classes%s", v.mode, len(v.train_idx),
            len(v.val_idx), len(v.columns), f", {v.n_folds} folds" if v.folds is not None else "",
        )

    def _score(self, proba: np.ndarray) -> float:
        """Validation score of held-out probabilities on the scorable columns; NaN without validation."""
        if self.validation.mode == "none" or not np.isfinite(proba).all():
            return float("nan")
        columns = self.validation.columns
        start = time.monotonic()
        score = validation_score(self.y_val_onehot[:, columns], proba[:, columns])
        self.score_call_s = 0.5 * self.score_call_s + 0.5 * (time.monotonic() - start)
        return score

    def _subset_indices(self, step: dict) -> tuple[str, np.ndarray]:
        """The training clips a step uses: all non-validation clips, or a class-balanced cap."""
        train_idx = self.validation.train_idx
        cap = step.get("max_per_class")
        if not cap:
            return "train", train_idx
        picked = class_balanced_subset(self.y[train_idx], cap, self.seed)
        return f"train_cap{cap}", train_idx[picked]

    @staticmethod
    def _feature_key(member, subset: str) -> tuple:
        """Which cached feature matrix a member needs for a subset: front end, its params, subset."""
        spec = member.feature_spec()
        return spec["name"], json.dumps(spec["params"], sort_keys=True), subset

    def _clips(self, subset: str, idx) -> tuple[list, list]:
        """Waves and store keys of training clips `idx` (subset "test": test clips, `idx` their list)."""
        if subset == "test":
            return list(idx), [("test", i) for i in range(len(idx))]
        return [self.x_train[i] for i in idx], [("train", int(i)) for i in idx]

    def _features(self, member, subset: str, waves: list, keys: list) -> np.ndarray:
        """The member's features of `waves` (cached), measuring the front end's speed when computed.

        Per-clip front ends (pretrained embeddings) go through the embedding store, by clip key,
        so a clip embedded for one step or subset is never embedded again.
        """
        spec = member.feature_spec()
        if spec.get("per_clip"):
            self.store.compute(spec["name"], spec["params"], keys, waves)
            return self.store.get(spec["name"], spec["params"], keys)
        key = self._feature_key(member, subset)
        start = time.monotonic()
        X = self.cache.get(spec["name"], spec["params"], waves, subset)
        if key not in self._computed:
            self._computed.add(key)
            audio_s = len(waves) * spec["params"].get("max_s", 3.0)
            rate = (time.monotonic() - start) / max(audio_s, 1e-3)
            self.feature_rates[spec["name"]] = max(rate, self.feature_rates.get(spec["name"], 0.0) * 0.5)
        return X

    def _feature_cost_s(self, member, subset: str, waves: list, keys: list) -> float:
        """Seconds to compute the member's features of a subset; 0 once cached (or embedded)."""
        spec = member.feature_spec()
        if spec.get("per_clip"):
            missing = set(self.store.missing(spec["name"], spec["params"], keys))
            return self.store.estimate_s(spec["name"], spec["params"], [w for w, k in zip(waves, keys) if k in missing])
        if self._feature_key(member, subset) in self._computed:
            return 0.0
        rate = self.feature_rates.get(spec["name"], PRIOR_FEATURE_S_PER_AUDIO_S)
        return len(waves) * spec["params"].get("max_s", 3.0) * rate

    def _test_clips(self) -> tuple[list, list]:
        """Test waves and keys once `test` has seen them; before, training clips standing in for their lengths."""
        if self.test_x is not None:
            return self._clips("test", self.test_x)
        stand_ins = [self.x_train[i] for i in np.resize(np.arange(len(self.x_train)), self.n_test)]
        return stand_ins, [("test", i) for i in range(self.n_test)]

    # ------------------------------------------------------------------ planning

    def _round_allowance_s(self, step: dict) -> float:
        """Fit time of the next round: `round_s`, growing by `round_growth` each round."""
        return step.get("round_s", 10.0) * step.get("round_growth", 1.0) ** self.step_rounds

    def _ensemble_pick_s(self, pool_len: int) -> float:
        """Seconds of one greedy pick over `pool_len` rounds: one validation score per candidate."""
        return COST_MARGIN * pool_len * self.score_call_s

    def _ensemble_cost_s(self, pool_len: int) -> float:
        """Seconds of the greedy ensemble over `pool_len` rounds (none without validation)."""
        if self.validation.mode == "none":
            return 0.0
        return self.plan.get("ensemble_size", 8) * self._ensemble_pick_s(pool_len)

    def _plan_round(self, step: dict, member, n_train: int, available_s: float, n_folds: int) -> float | None:
        """Fit allowance of the step's next round (for each of its fits), or None if it cannot fit.

        Features not yet cached, predictions on validation and test, and the ensemble step
        that follows are paid first; crossfit fits `1 + n_folds` copies of the member, which
        share a time-sliced round and each need a full fit otherwise (`n_folds` 0: the full
        fit alone). A time-sliced step (`round_s`) gets its allowance cut to
        what is left (less the set-up of a member's first round), as long as at least half
        its nominal round is left (members stop at their deadline, mid-epoch if need be);
        other steps need a full fit.
        """
        n_val = len(self.validation.val_idx)
        n_fits = 1 + n_folds + int(self._refits(step))
        estimate = member.estimate_cost_s(n_train, self.n_test + n_val)
        subset, subset_idx = self._subset_indices(step)
        incremental = self._embeds_incrementally(member)
        if self.validation.mode == "crossfit":  # one feature matrix of all clips serves fits and validation
            data_s = self._feature_cost_s(member, "train", *self._clips("train", self.validation.train_idx))
        else:
            data_s = self._feature_cost_s(member, "val", *self._clips("val", self.validation.val_idx))
            if not incremental:
                data_s += self._feature_cost_s(member, subset, *self._clips(subset, subset_idx))
        fixed_s = (
            data_s
            + self._feature_cost_s(member, "test", *self._test_clips())
            + estimate["predict"]
            + self._ensemble_cost_s(min(len(self.ensemble_pool) + 1, self.plan.get("pool_size", 12)))
        )
        left_s = (available_s - fixed_s) / n_fits
        if incremental:
            # The round's allowance is embedding time for new training clips; the head's fit is paid first.
            todo_s = self._feature_cost_s(member, subset, *self._clips(subset, subset_idx))
            allowance_s = min(self._round_allowance_s(step), todo_s, left_s - estimate["fit"])
            return allowance_s if allowance_s >= min(0.5 * self._round_allowance_s(step), todo_s) else None
        if step.get("round_s"):
            # A member's first round also builds and traces its model: its prior fit cost.
            setup_s = 0.0 if hasattr(member, "n_rounds_") else estimate["fit"]
            nominal_s = self._round_allowance_s(step) / n_fits  # crossfit fits share the round
            allowance_s = min(nominal_s, left_s - setup_s)
            return allowance_s if allowance_s >= 0.5 * nominal_s else None
        return estimate["fit"] if estimate["fit"] <= left_s else None

    def _make_member(self, step: dict):
        """The step's member, its crops (`max_s`, `span_s`) capped at what the clips need.

        Crops longer than the 95th percentile of training durations would only tile short
        clips again and again, at a cost and with nothing to learn from.
        """
        # Not registry.make_member: `self.members` may be another mapping (tests pass duck-typed
        # stand-ins, which need not have get_params).
        member = self.members[step["member"]](**step.get("params", {}))
        params = member.get_params() if hasattr(member, "get_params") else {}
        capped = {k: self.duration_cap_s for k in ("max_s", "span_s") if params.get(k) and params[k] > self.duration_cap_s}
        if capped:
            member.set_params(**capped)
        return member

    def _advance_step(self) -> None:
        self.step_index += 1
        self.step_rounds = 0
        self.step_stale_rounds = 0
        self.step_best_score = -np.inf
        self.step_member = None
        self.step_fold_members = []
        self.step_complete = False
        self.step_last_val_proba = None

    def _unavailable_reason(self, step: dict) -> str | None:
        """Why the step's member cannot run here (e.g. its pretrained model is not installed), or None."""
        check = getattr(self.members[step["member"]], "unavailable_reason", None)
        return check() if check else None

    def _refits(self, step: dict) -> bool:
        """Whether the step's rounds predict test from a copy refit on validation clips too.

        The held-out clips are lost to training otherwise: a fifth of a small dataset. The
        round's validation score (of the fit without them) still decides its ensemble weight.
        """
        return self.validation.mode == "holdout" and step["member"] in self.plan.get("refit_members", [])

    def _embeds_incrementally(self, member) -> bool:
        """Per-clip front ends on a holdout split embed new training clips round by round, within each allowance."""
        return bool(member.feature_spec().get("per_clip")) and self.validation.mode != "crossfit"

    def _current_step(self, remaining_s: float):
        """The next step with a round that fits the remaining budget: (step, member, fit allowance)."""
        steps = self.plan["steps"]
        margin = self.plan.get("margin_s", 3.0) + self.plan.get("margin_fraction", 0.05) * remaining_s
        while self.step_index < len(steps):
            step = steps[self.step_index]
            if (
                self.step_rounds >= step.get("rounds", 1)
                or self.step_stale_rounds >= step.get("patience", 10**9)
                or self.step_complete
            ):
                self._advance_step()
                continue
            reason = self._unavailable_reason(step)
            if reason:
                LOG.warning("skip step %d (%s): %s", self.step_index, step["member"], reason)
                self._advance_step()
                continue
            if self.step_member is None:
                self.step_member = self._make_member(step)
                self.step_fold_members = [self._make_member(step) for _ in range(self.validation.n_folds)]
            _, subset_idx = self._subset_indices(step)
            allowance_s = self._plan_round(
                step, self.step_member, len(subset_idx), remaining_s - margin, self.validation.n_folds
            )
            self.validate_round = allowance_s is not None
            if allowance_s is None and self.validation.n_folds and self.best_prediction is None:
                # No fold copies fit, and nothing is predicted yet: the full fit alone, unvalidated.
                allowance_s = self._plan_round(step, self.step_member, len(subset_idx), remaining_s - margin, 0)
            if allowance_s is not None:
                return step, self.step_member, allowance_s
            LOG.info("skip step %d (%s): its round does not fit in %.1f s", self.step_index, step["member"], remaining_s)
            self._advance_step()
        return None, None, 0.0

    # ------------------------------------------------------------------ protocol

    def _fit_and_validate(self, step: dict, member, allowance_s: float) -> tuple[np.ndarray, object]:
        """Fit the round's member(s); return held-out probabilities of the validation clips and the
        member that predicts test (`member`, or its copy refit on validation clips too)."""
        subset, subset_idx = self._subset_indices(step)
        if self.validation.mode != "crossfit":
            if self._embeds_incrementally(member):
                subset_idx = self._embed_some(member, subset_idx, allowance_s)
            X = self._features(member, subset, *self._clips(subset, subset_idx))
            member.partial_fit(X, np.eye(self.class_num)[self.y[subset_idx]], time_allowance_s=allowance_s)
            if self.validation.mode == "none":
                return np.zeros((0, self.class_num)), member
            X_val = self._features(member, "val", *self._clips("val", self.validation.val_idx))
            test_member = member
            if self._refits(step):
                test_member = self._make_member(step)
                y_all = self.y[np.concatenate([subset_idx, self.validation.val_idx])]
                test_member.partial_fit(np.concatenate([X, X_val]), np.eye(self.class_num)[y_all],
                                        time_allowance_s=allowance_s)
            return member.predict_proba(X_val), test_member
        # Crossfit: every clip is a training and a validation clip; features of all clips once.
        X_all = self._features(member, "train", *self._clips("train", np.arange(len(self.y))))
        folds = self.validation.folds
        in_subset = np.zeros(len(self.y), dtype=bool)
        in_subset[subset_idx] = True
        member.partial_fit(X_all[in_subset], np.eye(self.class_num)[self.y[in_subset]], time_allowance_s=allowance_s)
        proba = np.zeros((len(self.y), self.class_num))
        outside = ~in_subset
        if outside.any():  # clips a capped step never trains on are held out from its full fit
            proba[outside] = member.predict_proba(X_all[outside])
        if not self.validate_round:
            return np.full((len(self.y), self.class_num), np.nan), member
        for fold, fold_member in enumerate(self.step_fold_members):
            fit_rows = in_subset & (folds != fold)
            held_rows = in_subset & (folds == fold)
            if not held_rows.any() or not fit_rows.any():
                continue
            fold_member.partial_fit(X_all[fit_rows], np.eye(self.class_num)[self.y[fit_rows]], time_allowance_s=allowance_s)
            proba[held_rows] = fold_member.predict_proba(X_all[held_rows])
        return proba, member

    def _embed_some(self, member, subset_idx: np.ndarray, allowance_s: float) -> np.ndarray:
        """Embed training clips for `allowance_s` seconds, classes in turn; return the embedded ones.

        Clips go in a class-interleaved order, so whatever is embedded by the deadline is as
        balanced as it can be; the step is complete once all of its clips are in.
        """
        spec = member.feature_spec()
        order = subset_idx[class_interleaved_order(self.y[subset_idx], self.seed)]
        waves, keys = self._clips("train", order)
        missing = set(self.store.missing(spec["name"], spec["params"], keys))
        todo_keys = [k for k in keys if k in missing]
        todo_waves = [w for w, k in zip(waves, keys) if k in missing]
        # An allowance that covers all that is left (as planned) sets no deadline: the estimate is that cost.
        covers_all = allowance_s >= self.store.estimate_s(spec["name"], spec["params"], todo_waves)
        deadline = None if covers_all else time.monotonic() + allowance_s
        n_new = self.store.compute(spec["name"], spec["params"], todo_keys, todo_waves, deadline=deadline)
        left = set(self.store.missing(spec["name"], spec["params"], keys))
        # Done when all clips are in, or when a round could add none (what is left no longer fits).
        self.step_complete = not left or (n_new == 0 and len(left) < len(keys))
        embedded = np.array([i for i, k in zip(order, keys) if k not in left], dtype=int)
        if len(embedded) == 0:  # not even one chunk fitted: embed one clip of each class anyway
            embedded = order[: max(1, len(np.unique(self.y[order])))]
            first_waves, first_keys = self._clips("train", embedded)
            self.store.compute(spec["name"], spec["params"], first_keys, first_waves)
        LOG.info("%s: %d of %d training clips embedded", spec["name"], len(embedded), len(order))
        return np.sort(embedded)

    def _repeats_last_round(self, val_proba: np.ndarray) -> bool:
        """Whether this round's validation predictions are the step's previous round's exactly.

        A pretrained head on clips that are all embedded already (always so out-of-fold) refits
        the same converged model each round: the copies would cost time and crowd the ensemble
        pool. Without validation (one clip per class) there is nothing to compare.
        """
        return (
            self.validation.mode != "none"
            and self.step_last_val_proba is not None
            and np.array_equal(val_proba, self.step_last_val_proba)
        )

    def train(self, x_train: list, y_train: np.ndarray, remaining_s: float) -> None:
        """Run one round of the plan (or declare training done when nothing fits)."""
        if self.validation is None:
            start = time.monotonic()
            self._prepare(x_train, y_train)
            if self.round_log is not None:
                v = self.validation
                self.round_log.validation(v.mode, v.val_idx, self.y_val_onehot, v.columns, time.monotonic() - start)
        step, member, allowance_s = self._current_step(remaining_s)
        if step is None:
            self.done_training = True
            return
        val_proba, test_member = self._fit_and_validate(step, member, allowance_s)
        if self._repeats_last_round(val_proba):
            LOG.info("step %d (%s): a round changed nothing (same clips, converged fit); next step",
                     self.step_index, step["member"])
            self.step_complete = True
            return
        self.step_last_val_proba = val_proba
        score = self._score(val_proba)
        label = f"step{self.step_index}:{step['member']}#{self.step_rounds}"
        self.pending = Round(label, val_proba, score, test_member, step, self.step_index)
        self.step_rounds += 1
        improved = score > self.step_best_score or not np.isfinite(score)
        self.step_stale_rounds = 0 if improved else self.step_stale_rounds + 1
        self.step_best_score = max(score, self.step_best_score) if np.isfinite(score) else self.step_best_score
        LOG.info("%s: validation 2AUC-1 %.4f (best so far %.4f)", label, score, self.best_score)

    def test(self, test_x: list, remaining_s: float) -> np.ndarray:
        """The best prediction so far, refreshed when the last round lifts the ensemble's validation."""
        if not self.test_audited and self.validation is not None:
            self.test_audited = True
            for finding in audit_clips(test_x, "test", seed=self.seed) + audit_test_lengths(test_x, self.train_max_s):
                LOG.warning("input: %s", finding)
        call_start = time.monotonic()
        candidate, self.pending = self.pending, None
        if candidate is None:
            return self._fallback(len(test_x))
        member = candidate.member
        margin_s = self.plan.get("margin_s", 3.0)
        self.test_x = test_x
        cost = self._feature_cost_s(member, "test", *self._clips("test", test_x))
        cost += member.estimate_cost_s(0, len(test_x))["predict"]
        if self.best_prediction is not None and cost > remaining_s - margin_s:
            LOG.info("no time to predict test with %s (~%.1f s, %.1f s left)", candidate.label, cost, remaining_s)
            return self.best_prediction
        start = time.monotonic()
        candidate.test_proba = member.predict_proba(self._features(member, "test", *self._clips("test", test_x)))
        if self.round_log is not None:
            elapsed_s = self.time_budget - remaining_s + (time.monotonic() - call_start)
            self.round_log.round(candidate.label, candidate.step_index, candidate.val_score, candidate.val_proba,
                                 candidate.test_proba, elapsed_s)
        if self.validation.mode == "none":
            return self._unvalidated_average(candidate)
        if not np.isfinite(candidate.val_score):  # an unvalidated first round: better than priors, not pooled
            self.best_prediction = candidate.test_proba
            LOG.info("first prediction from %s, not validated (no time for its fold copies)", candidate.label)
            return self.best_prediction
        self.ensemble_pool = updated_pool(self.ensemble_pool, candidate, self.plan.get("pool_size", 12),
                                          self.plan.get("pool_per_step"))
        weights, score = self._ensemble(remaining_s - margin_s - (time.monotonic() - start))
        if self.best_prediction is not None and score <= self.best_score + self.plan.get("min_improvement", 1e-4):
            return self.best_prediction
        self.best_prediction = sum(w * r.test_proba for w, r in zip(weights, self.ensemble_pool) if w > 0)
        self.best_score = score
        self.ensemble_weights = {r.label: w for w, r in zip(weights, self.ensemble_pool) if w > 0}
        LOG.info(
            "new best: validation %.4f with %s", score, {k: round(w, 3) for k, w in self.ensemble_weights.items()}
        )
        return self.best_prediction

    def _ensemble(self, available_s: float) -> tuple[np.ndarray, float]:
        """Greedy ensemble weights over the pool and their score, cut to the picks `available_s` pays for.

        With no time for even one pass over the pool, the best single round (the pool is
        sorted by validation score) stands alone.
        """
        pool = self.ensemble_pool
        per_pick_s = self._ensemble_pick_s(len(pool))
        size = min(self.plan.get("ensemble_size", 8), int(available_s / per_pick_s) if per_pick_s > 0 else 10**9)
        if size < 1 or len(pool) == 1:
            weights = np.zeros(len(pool))
            weights[0] = 1.0
            return weights, pool[0].val_score
        if size < self.plan.get("ensemble_size", 8):
            LOG.info("ensemble cut to %d picks to fit %.1f s", size, available_s)
        start = time.monotonic()
        columns = self.validation.columns
        weights, score = greedy_ensemble(
            [r.val_proba[:, columns] for r in pool], self.y_val_onehot[:, columns], size
        )
        self.score_call_s = (time.monotonic() - start) / max(1, len(pool) * size)
        return weights, score

    def _unvalidated_average(self, candidate: Round) -> np.ndarray:
        """No validation possible: the mean of each step's latest round, so later steps count without a vote."""
        self.latest_by_step[candidate.step_index] = candidate
        rounds = list(self.latest_by_step.values())
        self.best_prediction = sum(r.test_proba for r in rounds) / len(rounds)
        self.ensemble_weights = {r.label: 1.0 / len(rounds) for r in rounds}
        LOG.info("no validation possible: averaging %s", sorted(self.ensemble_weights))
        return self.best_prediction

    def _fallback(self, n_test: int) -> np.ndarray:
        """Before any round has finished: class priors (a valid, finite prediction)."""
        if self.best_prediction is not None:
            return self.best_prediction
        priors = np.bincount(self.y, minlength=self.class_num) / len(self.y) if self.validation is not None else np.ones(self.class_num)
        return np.tile(priors, (n_test, 1))
