"""Plain-words findings about the data a run receives, for the log.

The runtime copes with awkward input on its own (non-finite samples become 0, empty
clips become silence, crops fix every length), so nothing here changes the data: these
checks only say what was found, so that a user reading the log of a weak run can see
that the input, not the model, was at fault. They are cheap: lengths of every clip, and
value checks on a random sample of clips that holds at most `sample_samples` samples.
"""

from __future__ import annotations

import numpy as np

SR = 16000
INT16_PEAK = 50.0  # float audio peaking this far above 1 is no loud recording: likely raw int16 values


def _sample_clips(waves: list, sample_samples: int, seed: int) -> np.ndarray:
    """Indices of a random set of clips whose lengths add up to at most `sample_samples` (at least one)."""
    order = np.random.default_rng(seed).permutation(len(waves))
    lengths = np.fromiter((np.size(waves[i]) for i in order), dtype=np.int64, count=len(order))
    keep = np.cumsum(lengths) <= sample_samples
    keep[:1] = True
    return np.sort(order[keep])


def _examples(indices) -> str:
    shown = ", ".join(str(int(i)) for i in list(indices)[:5])
    return shown + (", ..." if len(indices) > 5 else "")


def audit_clips(waves: list, what: str, *, sample_samples: int = 50_000_000, seed: int = 0) -> list[str]:
    """Findings about clips: empty ones, non-finite samples, silence, values outside [-1, 1].

    Parameters
    ----------
    waves : list of np.ndarray [shape=(n,)]
    what : how the findings name the set, e.g. "training" or "test".
    sample_samples : int > 0, how many samples the value checks may read.
    """
    findings = []
    if not len(waves):
        return [f"the {what} set holds no clips"]
    lengths = np.fromiter((np.size(w) for w in waves), dtype=np.int64, count=len(waves))
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        findings.append(
            f"{len(empty)} of {len(waves)} {what} clips are empty (e.g. {_examples(empty)}); read as silence"
        )
    checked = [i for i in _sample_clips(waves, sample_samples, seed) if lengths[i]]
    non_finite, silent, peaks = [], [], []
    for i in checked:
        wave = np.asarray(waves[i])
        high, low = float(np.max(wave)), float(np.min(wave))
        if not (np.isfinite(high) and np.isfinite(low)):
            non_finite.append(i)
        elif high == low == 0.0:
            silent.append(i)
        else:
            peaks.append(max(high, -low))
    sampled = "" if len(checked) == int(np.count_nonzero(lengths)) else f" (in a sample of {len(checked)})"
    if non_finite:
        findings.append(
            f"{len(non_finite)} {what} clips{sampled} hold NaN or infinite samples (e.g. {_examples(non_finite)}); "
            "those samples are read as 0"
        )
    if silent:
        findings.append(f"{len(silent)} {what} clips{sampled} are all zeros (e.g. {_examples(silent)})")
    if peaks and max(peaks) > INT16_PEAK:
        findings.append(
            f"{what} clips peak at {max(peaks):.4g}, not within [-1, 1] (int16-scaled audio?); "
            "each clip is peak-normalized before its features, so the scale does not matter"
        )
    if len(silent) + len(non_finite) + len(empty) >= len(waves) and not sampled:
        findings.append(f"no {what} clip holds usable audio: predictions can only follow the class frequencies")
    return findings


def audit_labels(y_onehot: np.ndarray) -> list[str]:
    """Findings about training labels: rows that are not one-hot, classes with no or one clip."""
    y_onehot = np.asarray(y_onehot)
    findings = []
    per_row = y_onehot.sum(axis=1)
    odd_rows = np.flatnonzero(per_row != 1)
    if len(odd_rows):
        findings.append(
            f"{len(odd_rows)} training label rows do not hold exactly one 1 (e.g. {_examples(odd_rows)}); "
            "their largest entry is taken as the class"
        )
    counts = np.bincount(np.argmax(y_onehot, axis=1), minlength=y_onehot.shape[1])
    absent = np.flatnonzero(counts == 0)
    if len(absent):
        findings.append(
            f"{len(absent)} classes have no training clip (e.g. {_examples(absent)}): "
            "they get low scores on every test clip"
        )
    single = np.flatnonzero(counts == 1)
    if len(single):
        findings.append(
            f"{len(single)} classes have a single training clip (e.g. {_examples(single)}): "
            "they are kept out of validation, so validation says nothing about them"
        )
    return findings


def audit_test_lengths(test_waves: list, train_max_s: float) -> list[str]:
    """A finding when test clips are much longer than any training clip (only their crop is used)."""
    durations_s = np.array([np.size(wave) for wave in test_waves]) / SR
    longest_s = float(durations_s.max()) if len(durations_s) else 0.0
    if longest_s > 2 * train_max_s and longest_s > 1.0:
        n_long = int(np.count_nonzero(durations_s > 2 * train_max_s))
        return [
            f"{n_long} test clips are over twice as long as the longest training clip "
            f"({longest_s:.1f} s against {train_max_s:.1f} s); each is cropped like the training clips"
        ]
    return []
