import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from portfolio.base import Member, MemberError
from portfolio.embeddings import EMBEDDERS
from portfolio.features import compute_features
from portfolio.linear import LinearMember
from portfolio.neural import mixup, spec_augment
from portfolio.registry import MEMBERS, make_member

SR = 16000
# Tiny but complete configurations, so every member trains in about a second.
TINY = {
    "linear": {"max_s": 0.5, "n_mels": 32, "n_mfcc": 13},
    "cnn": {"filters": [8, 16], "input_pool": [2, 2], "batch_size": 16, "lr": 3e-3, "max_s": 0.5, "n_mels": 32},
    "lstm_attention": {"units": 16, "batch_size": 16, "lr": 3e-3, "max_s": 0.5, "n_mels": 32, "n_mfcc": 13},
    "whisper": {"window_s": 1.0},
    "yamnet": {"window_s": 1.0},
}
ALLOWANCE_S = 0.3


def tone(seconds, freq, seed=0):
    """A sine tone with a little noise, float32 at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def onehot(labels, n_classes):
    return np.eye(n_classes)[labels]


def features(member, waves):
    spec = member.feature_spec()
    if spec.get("per_clip"):  # pretrained embeddings: what the scheduler's embedding store computes
        return EMBEDDERS[spec["name"]](waves, **spec["params"])
    return compute_features(spec["name"], spec["params"], waves)


def check_predictions(proba, n_rows, n_classes):
    assert proba.shape == (n_rows, n_classes)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def odd_clips():
    """A 0.05 s clip, a 10-minute clip, a silent clip and an empty one."""
    return [tone(0.05, 500), np.resize(tone(1.0, 700), 600 * SR), np.zeros(SR, np.float32), np.zeros(0, np.float32)]


def sixty_class_data():
    """60 classes: class 59 absent from training, class 58 with one clip, odd clips in train and test."""
    labels = [k for k in range(58) for _ in range(2)] + [58]
    waves = [tone(0.3, 100 + 40 * k, seed=i) for i, k in enumerate(labels)]
    waves[:4] = odd_clips()
    test = odd_clips() + [tone(0.3, 100 + 40 * k, seed=99) for k in (0, 30, 58, 59)]
    return waves, onehot(labels, 60), test


def check_member_contract(name, params):
    """The Member interface, on the awkward data a run can meet."""
    member = make_member(name, params)
    assert isinstance(member, Member)
    assert json.dumps(member.get_params()) and member.get_params() == clone(member).get_params()
    not_fitted = f"This {type(member).__name__} instance is not fitted yet; call 'partial_fit' before 'predict_proba'"
    with pytest.raises(NotFittedError, match=not_fitted):
        member.predict_proba(np.zeros((1, 1)))
    prior = member.estimate_cost_s(100, 50)
    assert member.estimate_cost_s(2000, 1000)["fit"] > prior["fit"] > 0 and prior["predict"] > 0

    waves, y_onehot, test = sixty_class_data()
    X, X_test = features(member, waves), features(member, test)
    assert member.partial_fit(X, y_onehot, ALLOWANCE_S) is member
    check_predictions(member.predict_proba(X_test), len(test), 60)
    model = member.model_
    member.partial_fit(X, y_onehot, ALLOWANCE_S)
    assert member.n_rounds_ == 2 and member.model_ is model  # resumed, not rebuilt
    check_predictions(member.predict_proba(X_test), len(test), 60)
    cost = member.estimate_cost_s(len(X), len(X_test))
    assert set(cost) == {"fit", "predict"} and all(isinstance(s, float) and s > 0 for s in cost.values())

    fresh = clone(member)
    assert not hasattr(fresh, "n_rounds_")
    binary = [tone(0.3, 300, seed=i) for i in range(4)] + [tone(0.3, 3000, seed=i) for i in range(4)]
    fresh.partial_fit(features(fresh, binary), onehot([0] * 4 + [1] * 4, 2), ALLOWANCE_S)
    check_predictions(fresh.predict_proba(features(fresh, binary[:3])), 3, 2)


def member_param(name: str):
    """A member name for parametrize: slow unless linear; skipped when its pretrained model is not installed."""
    reason = getattr(MEMBERS[name], "unavailable_reason", lambda: None)()
    marks = ([] if name == "linear" else [pytest.mark.slow]) + ([pytest.mark.skip(reason=reason)] if reason else [])
    return pytest.param(name, marks=marks)


NAMES = [member_param(name) for name in sorted(MEMBERS)]


@pytest.mark.parametrize("name", NAMES)
def test_member_contract(name):
    check_member_contract(name, TINY[name])


@pytest.mark.parametrize("name", NAMES)
def test_member_learns_easy_three_tone_task(name):
    freqs = (300.0, 1200.0, 4000.0)
    labels = np.arange(30) % 3
    member = make_member(name, TINY[name])
    X = features(member, [tone(0.3 + 0.02 * i, freqs[k], seed=i) for i, k in enumerate(labels)])
    member.partial_fit(X, onehot(labels, 3), ALLOWANCE_S)  # neural members: graph tracing and a batch
    member.partial_fit(X, onehot(labels, 3), 2.0)
    test_labels = np.arange(15) % 3
    X_test = features(member, [tone(0.2 + 0.05 * i, freqs[k], seed=100 + i) for i, k in enumerate(test_labels)])
    accuracy = np.mean(member.predict_proba(X_test).argmax(axis=1) == test_labels)
    assert accuracy > 0.9


def test_linear_member_predicts_class_frequencies_when_one_class_is_present():
    X = np.random.default_rng(0).standard_normal((3, 5))
    member = LinearMember().partial_fit(X, onehot([1, 1, 1], 3), 1.0)
    proba = member.predict_proba(X[:2])
    check_predictions(proba, 2, 3)
    np.testing.assert_allclose(proba[0], [1 / 6, 4 / 6, 1 / 6])


@pytest.mark.parametrize("params, message", [
    ({"C": -1}, "C must be a number > 0, got -1"),
    ({"C": True}, "C must be a number > 0, got True"),  # JSON `true` is not a number here
    ({"max_iter": True}, "max_iter must be an int > 0, got True"),
])
def test_linear_member_rejects_bad_hyperparameter(params, message):
    with pytest.raises(MemberError, match=message):
        LinearMember(**params).partial_fit(np.zeros((2, 3)), onehot([0, 1], 2), 1.0)


def test_linear_member_rejects_changed_class_count_on_resume():
    X = np.random.default_rng(0).standard_normal((4, 3))
    member = LinearMember().partial_fit(X, onehot([0, 1, 0, 1], 2), 1.0)
    with pytest.raises(MemberError, match="y_onehot must keep the 2 columns of earlier rounds, got 3"):
        member.partial_fit(X, onehot([0, 1, 2, 1], 3), 1.0)


def test_make_member_rejects_unknown_name():
    with pytest.raises(MemberError, match=r"name must be one of \['cnn', 'linear', 'lstm_attention', 'whisper', 'yamnet'\], got 'svm'"):
        make_member("svm", {})


def test_spec_augment_zeroes_one_band_per_axis():
    X = np.ones((50, 40, 16), dtype=np.float32)
    out = spec_augment(X, np.random.default_rng(0))
    assert (X == 1).all() and out.shape == X.shape
    masked = out == 0
    assert masked.any()
    assert (masked.all(axis=2).sum(axis=1) <= 40 // 8).all() and (masked.all(axis=1).sum(axis=1) <= 16 // 8).all()


def test_mixup_mixes_inputs_and_labels_with_the_same_weights():
    X = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 2, 3), dtype=np.float32)
    y = np.eye(6, dtype=np.float32)
    X_mixed, y_mixed = mixup(X, y, np.random.default_rng(0), alpha=0.4)
    np.testing.assert_allclose(y_mixed.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(X_mixed[:, 0, 0], y_mixed @ np.arange(6), atol=1e-5)


def test_random_crops_and_spread_crops_cover_the_span():
    from portfolio.neural import random_crops, spread_crops

    X = np.arange(2 * 10 * 1, dtype=np.float32).reshape(2, 10, 1)
    crops = random_crops(X, 4, np.random.default_rng(0))
    assert crops.shape == (2, 4, 1)
    for row, crop in zip(X, crops):  # each crop is a contiguous window of its own row
        start = int(crop[0, 0] - row[0, 0])
        np.testing.assert_array_equal(crop, row[start:start + 4])
    spread = spread_crops(X, 4, 3)
    assert [int(c[0, 0, 0]) for c in spread] == [0, 3, 6]  # start, middle, end


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "lstm_attention"])
def test_keras_member_trains_on_windows_of_the_whole_clip(name):
    # The class is in the last second of 3 s clips: crops of the first second alone cannot see it.
    rng = np.random.default_rng(0)
    labels = np.resize([0, 1], 24)
    waves = []
    for label in labels:
        wave = 0.02 * rng.standard_normal(3 * SR).astype(np.float32)
        wave[2 * SR:] += tone(1.0, 300 if label == 0 else 1200, seed=int(rng.integers(1000)))
        waves.append(wave)
    member = make_member(name, {**TINY[name], "max_s": 1.0, "span_s": 3.0, "test_crops": 3})
    assert member.feature_spec()["params"]["max_s"] == 3.0
    X = features(member, waves)
    # 12 s: enough epochs on a machine four times slower than the one this was tuned on.
    member.partial_fit(X, onehot(labels, 2), time_allowance_s=12.0)
    proba = member.predict_proba(X)
    check_predictions(proba, len(waves), 2)
    assert np.mean(np.argmax(proba, axis=1) == labels) > 0.7
