"""The metric pinned to hand-computed values (SPEC.md, "The metric")."""

from math import log

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.scoring import (
    alc,
    column_auc,
    normalized_auc,
    plot_learning_curve,
    plot_learning_curves,
    score_run,
    time_transform,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def one_hot(y, k):
    return np.eye(k)[np.asarray(y)]


# ---------------------------------------------------------------- column_auc


def test_column_auc_ties_are_rank_averaged():
    # scores sorted: 0.1 -> rank 1; 0.5, 0.5 -> ranks 2, 3 averaged to 2.5; 0.9 -> rank 4.
    # positives are rows 0 (0.5, rank 2.5) and 2 (0.9, rank 4): rank sum 6.5.
    # AUC = (6.5 - 2*3/2) / (2*2) = 3.5 / 4 = 0.875
    # (by pairs: 0.5 vs {0.5, 0.1} = 0.5 + 1; 0.9 vs both = 2; 3.5 of 4 pairs).
    assert column_auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.9, 0.1])) == 0.875


def test_column_auc_all_tied_is_one_half():
    # every score equal: every pair is a tie worth 1/2.
    assert column_auc(np.array([1, 0, 0, 1, 0]), np.zeros(5)) == 0.5


def test_column_auc_matches_sklearn_on_random_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, size=200)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 10, size=200) / 10.0  # only 10 values: many ties
        assert column_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_column_auc_rejects_single_valued_labels():
    with pytest.raises(HarnessError, match="labels must contain both 0 and 1"):
        column_auc(np.zeros(3), np.array([0.1, 0.2, 0.3]))


# ------------------------------------------------------------ normalized_auc


@pytest.mark.parametrize("skipped_value", [0, 1])
def test_normalized_auc_skips_single_valued_column(skipped_value):
    # column 0: labels [1,0,1,0], scores [0.5,0.5,0.9,0.1] -> AUC 0.875 (see above).
    # column 1: labels [0,1,0,1]; positives 0.8, 0.6 beat negatives 0.2, 0.4 -> AUC 1.
    # column 2: single-valued, skipped whatever its scores.
    # mean AUC = (0.875 + 1) / 2 = 0.9375; score = 2*0.9375 - 1 = 0.875.
    solution = np.array(
        [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=float
    )
    solution[:, 2] = skipped_value
    prediction = np.array(
        [[0.5, 0.2, 0.9], [0.5, 0.8, 0.1], [0.9, 0.4, 0.1], [0.1, 0.6, 0.9]]
    )
    assert normalized_auc(solution, prediction) == pytest.approx(0.875)


def test_normalized_auc_inverted_prediction_is_minus_one():
    # every positive scores below every negative: AUC 0 per column, 2*0 - 1 = -1.
    solution = one_hot([0, 1, 0, 1, 2, 2], 3)
    assert normalized_auc(solution, 1.0 - solution) == -1.0


def test_normalized_auc_partial_negative_score():
    # column 0: positives (rows 0, 2) score 0.2, 0.7; negatives 0.6, 0.8.
    #   0.2 beats neither, 0.7 beats 0.6 only -> 1 of 4 pairs, AUC 0.25.
    # column 1: positives (rows 1, 3) score 0.4, 0.2; negatives 0.8, 0.3.
    #   0.4 beats 0.3 only, 0.2 beats neither -> 1 of 4 pairs, AUC 0.25.
    # score = 2*0.25 - 1 = -0.5 (not clipped).
    solution = one_hot([0, 1, 0, 1], 2)
    prediction = np.array([[0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2]])
    assert normalized_auc(solution, prediction) == pytest.approx(-0.5)


def test_normalized_auc_rejects_wrong_shape():
    with pytest.raises(
        HarnessError, match=r"prediction must have shape \(n, k\) = \(4, 2\), got \(4, 3\)"
    ):
        normalized_auc(one_hot([0, 1, 0, 1], 2), np.zeros((4, 3)))


def test_normalized_auc_rejects_nan():
    prediction = np.full((4, 2), 0.5)
    prediction[2, 1] = np.nan
    with pytest.raises(HarnessError, match="prediction must be finite, got 1 non-finite"):
        normalized_auc(one_hot([0, 1, 0, 1], 2), prediction)


def test_normalized_auc_rejects_no_scorable_column():
    solution = np.array([[1, 0], [1, 0]], dtype=float)
    with pytest.raises(HarnessError, match="solution must have a column with both 0s and 1s"):
        normalized_auc(solution, np.zeros((2, 2)))


# ------------------------------------------------------------ time_transform


def test_time_transform_matches_spec_weights():
    # SPEC: with T = 1800 the first 10 s weigh 4.5 %, the first 60 s 20 %, 300 s 52 %.
    # log(1 + 10/60)/log(31) = 0.15415/3.43399 = 0.0449; log(2)/log(31) = 0.2018;
    # log(6)/log(31) = 0.5218.
    got = time_transform(np.array([0.0, 10.0, 60.0, 300.0, 1800.0]), 1800.0)
    assert got == pytest.approx([0.0, 0.0449, 0.2018, 0.5218, 1.0], abs=1e-4)


def test_time_transform_scalar_returns_float():
    # T = 300, t0 = 60: log(1 + 60/60)/log(1 + 300/60) = log(2)/log(6).
    got = time_transform(60.0, 300.0)
    assert isinstance(got, float)
    assert got == pytest.approx(log(2) / log(6))


def test_time_transform_rejects_nonpositive_budget():
    with pytest.raises(HarnessError, match="time_budget must be > 0 seconds, got 0"):
        time_transform(1.0, 0)


# ----------------------------------------------------------------------- alc


def test_alc_empty_is_zero():
    assert alc([], [], 300.0) == 0.0


@pytest.mark.parametrize(
    "t_s, expected",
    [
        (0.0, 1.0),  # t~(0) = 0
        (60.0, 1 - log(2) / log(6)),  # t~ = log(1 + 60/60)/log(1 + 300/60)
        (150.0, 1 - log(3.5) / log(6)),  # t~ = log(1 + 150/60)/log(6)
        (300.0, 0.0),  # t~(T) = 1: no area left
    ],
)
def test_alc_single_perfect_prediction_is_one_minus_transformed_time(t_s, expected):
    assert alc([t_s], [1.0], 300.0) == pytest.approx(expected)


def test_alc_first_prediction_late_counts_only_area_after_it():
    # T=300: 0 on [0, t~(120)], then 0.8 until 1; t~(120) = log(3)/log(6) ~ 0.6131.
    # ALC = 0.8 * (1 - log(3)/log(6)) ~ 0.8 * 0.3869 = 0.3095
    assert alc([120.0], [0.8], 300.0) == pytest.approx(0.8 * (1 - log(3) / log(6)))


def test_alc_prediction_after_budget_is_dropped():
    # the 0.9 at 400 s > T=300 is dropped: 0.5 holds from t~(60) = log(2)/log(6) to 1.
    # ALC = 0.5 * (1 - log(2)/log(6)) ~ 0.5 * 0.6131 = 0.3066
    assert alc([60.0, 400.0], [0.5, 0.9], 300.0) == pytest.approx(
        0.5 * (1 - log(2) / log(6))
    )


def test_alc_several_predictions_step_integration():
    # T=300, t0=60, log(1 + T/t0) = log(6) = 1.791759.
    # t~(30) = log(1.5)/log(6), t~(60) = log(2)/log(6), t~(180) = log(4)/log(6).
    # ALC = [0.2*(log 2 - log 1.5) + 0.5*(log 4 - log 2) + 0.7*(log 6 - log 4)] / log 6
    #     = [0.2*0.287682 + 0.5*0.693147 + 0.7*0.405465] / 1.791759
    #     = [0.057536 + 0.346574 + 0.283826] / 1.791759 = 0.687936 / 1.791759 = 0.383944
    expected = (
        0.2 * (log(2) - log(1.5)) + 0.5 * (log(4) - log(2)) + 0.7 * (log(6) - log(4))
    ) / log(6)
    got = alc([30.0, 60.0, 180.0], [0.2, 0.5, 0.7], 300.0)
    assert got == pytest.approx(expected)
    assert got == pytest.approx(0.383944, abs=1e-6)


def test_alc_negative_scores_subtract_area():
    # -1 from t=0 to 1: ALC = -1.
    assert alc([0.0], [-1.0], 300.0) == -1.0


def test_alc_rejects_decreasing_timestamps():
    msg = r"timestamps must be non-decreasing, got \[60.0, 30.0\]"
    with pytest.raises(HarnessError, match=msg):
        alc([60.0, 30.0], [0.1, 0.2], 300.0)


# ----------------------------------------------------------------- score_run


def perfect_and_inverted():
    solution = one_hot([0, 1, 2, 0, 1, 2], 3)
    return solution, solution.copy(), 1.0 - solution


def test_score_run_reports_every_prediction_and_alc():
    # scores: inverted -> -1 at 60 s, perfect -> 1 at 180 s, perfect at 400 s > T dropped.
    # ALC = -1*(log 4 - log 2)/log 6 + 1*(log 6 - log 4)/log 6 = (log 6 - 2 log 4 + log 2)/log 6
    solution, perfect, inverted = perfect_and_inverted()
    result = score_run(solution, [(60.0, inverted), (180.0, perfect), (400.0, perfect)], 300.0)
    assert result["alc"] == pytest.approx((log(6) - 2 * log(4) + log(2)) / log(6))
    assert result["final_score"] == 1.0
    assert result["first_prediction_s"] == 60.0
    assert result["n_predictions"] == 3
    assert result["time_budget"] == 300.0
    assert [p["score"] for p in result["predictions"]] == [-1.0, 1.0, 1.0]
    assert [p["counted"] for p in result["predictions"]] == [True, True, False]
    assert [p["t_s"] for p in result["predictions"]] == [60.0, 180.0, 400.0]
    assert result["predictions"][0]["t_transformed"] == pytest.approx(log(2) / log(6))


def test_score_run_without_counted_prediction_has_no_final_score():
    solution, perfect, _ = perfect_and_inverted()
    for predictions in ([], [(301.0, perfect)]):
        result = score_run(solution, predictions, 300.0)
        assert result["alc"] == 0.0
        assert result["final_score"] is None
        assert result["first_prediction_s"] is None
        assert result["n_predictions"] == len(predictions)


def test_score_run_rejects_wrong_shape():
    solution, _, _ = perfect_and_inverted()
    with pytest.raises(HarnessError, match=r"prediction must have shape \(n, k\) = \(6, 3\)"):
        score_run(solution, [(10.0, np.zeros((6, 2)))], 300.0)


def test_score_run_rejects_decreasing_timestamps():
    solution, perfect, _ = perfect_and_inverted()
    with pytest.raises(HarnessError, match="timestamps must be non-decreasing"):
        score_run(solution, [(20.0, perfect), (10.0, perfect)], 300.0)


# ------------------------------------------------------------------- plots


def test_plot_learning_curve_writes_png(tmp_path):
    solution, perfect, inverted = perfect_and_inverted()
    result = score_run(solution, [(10.0, inverted), (100.0, perfect), (900.0, perfect)], 300.0)
    path = tmp_path / "curve.png"
    plot_learning_curve(result, path, "data03")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temp file left


def test_plot_learning_curves_writes_png(tmp_path):
    solution, perfect, inverted = perfect_and_inverted()
    results = {
        "a": score_run(solution, [(5.0, inverted), (50.0, perfect)], 300.0),
        "b": score_run(solution, [], 300.0),
        "c": score_run(solution, [(30.0, perfect)], 1800.0),  # other budget: no seconds axis
    }
    path = tmp_path / "curves.png"
    plot_learning_curves(results, str(path), "benchmark")
    assert path.read_bytes().startswith(PNG_MAGIC)
