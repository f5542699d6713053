import json

import librosa
import numpy as np
import pytest

from portfolio.features import (
    CHUNK_CLIPS,
    FEATURES,
    FeatureCache,
    FrontendError,
    chunk_clips,
    compute_features,
    fix_length,
    log_mel,
    log_mel_stats,
    mfcc,
    pooled_stats,
)

SR = 16000


def tone(seconds, freq=440.0, amplitude=0.3, seed=0):
    """A sine tone with a little noise, float32 at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * noise).astype(np.float32)


def test_fix_length_tiles_short_clip():
    out = fix_length(np.array([1, 2, 3], dtype=np.float32), 7)
    np.testing.assert_array_equal(out, [1, 2, 3, 1, 2, 3, 1])
    assert out.dtype == np.float32


def test_fix_length_pads_short_clip():
    out = fix_length(np.array([1, 2, 3], dtype=np.float32), 5, mode="pad")
    np.testing.assert_array_equal(out, [1, 2, 3, 0, 0])


@pytest.mark.parametrize("offset, expected", [("start", [0, 1, 2]), ("center", [3, 4, 5])])
def test_fix_length_crops_long_clip_at_offset(offset, expected):
    np.testing.assert_array_equal(fix_length(np.arange(9, dtype=np.float32), 3, offset=offset), expected)


def test_fix_length_random_offset_is_a_seeded_window():
    wave = np.arange(100, dtype=np.float32)
    out = fix_length(wave, 10, offset="random", rng=3)
    np.testing.assert_array_equal(out, np.arange(out[0], out[0] + 10))
    np.testing.assert_array_equal(out, fix_length(wave, 10, offset="random", rng=3))


def test_fix_length_spread_takes_windows_from_start_to_end():
    # 3 windows share 10 samples (3, 3, 4): the first at the start, the last ending at the clip's end.
    out = fix_length(np.arange(100, dtype=np.float32), 10, offset="spread", n_windows=3)
    np.testing.assert_array_equal(out, [0, 1, 2, 48, 49, 50, 96, 97, 98, 99])


def test_fix_length_spread_tiles_a_clip_that_fits_like_any_offset():
    short = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(short, 6, offset="spread", n_windows=3), fix_length(short, 6))


def test_spread_crop_pools_what_a_start_crop_misses():
    # A clip that turns from a low tone to a high one halfway: a 2 s start crop never hears the
    # high tone, two spread windows do, so their pooled stats tell the two clips apart.
    low_high = np.concatenate([tone(10, freq=300), tone(10, freq=3000)])
    low = tone(20, freq=300)
    start = log_mel_stats([low_high, low], max_s=2.0)
    spread = log_mel_stats([low_high, low], max_s=2.0, offset="spread", n_windows=2)
    assert np.abs(start[0] - start[1]).max() < 1.0 < np.abs(spread[0] - spread[1]).max()


def test_fix_length_empty_clip_gives_zeros():
    np.testing.assert_array_equal(fix_length(np.zeros(0, dtype=np.float32), 4), np.zeros(4))


def test_fix_length_replaces_non_finite_samples():
    out = fix_length(np.array([1, np.nan, np.inf, -np.inf], dtype=np.float32), 6)
    np.testing.assert_array_equal(out, [1, 0, 0, 0, 1, 0])


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"n_samples": 0}, "n_samples must be an int > 0, got 0"),
        ({"n_samples": 4, "mode": "wrap"}, r"mode must be one of \('tile', 'pad'\), got 'wrap'"),
        ({"n_samples": 4, "n_windows": 2}, r'n_windows must be used with offset="spread" only, got 2'),
        ({"n_samples": 4, "offset": "spread", "n_windows": 0}, "n_windows must be an int > 0, got 0"),
        ({"n_samples": 4, "offset": "end"}, r"offset must be one of \('start', 'center', 'random', 'spread'\), got 'end'"),
    ],
)
def test_fix_length_rejects_bad_params(kwargs, msg):
    with pytest.raises(FrontendError, match=msg):
        fix_length(np.ones(3, dtype=np.float32), **kwargs)


def test_log_mel_shapes_for_all_clip_lengths():
    waves = [tone(0.05), tone(1.0), tone(5.0), np.zeros(0, dtype=np.float32), np.zeros(SR, dtype=np.float32)]
    S = log_mel(waves, n_mels=40, max_s=1.0)
    assert S.shape == (5, 40, 1 + (SR - 512) // 160)
    assert S.dtype == np.float32
    assert np.isfinite(S).all()


def test_log_mel_matches_librosa_melspectrogram():
    wave = tone(1.0)
    S = log_mel([wave], max_s=1.0, normalize=False)[0]
    reference = librosa.feature.melspectrogram(y=wave, sr=SR, n_fft=512, hop_length=160, n_mels=64, center=False)
    np.testing.assert_allclose(S, np.log(reference + 1e-6), atol=1e-3)


def test_log_mel_silent_clip_is_the_log_floor():
    S = log_mel([np.zeros(SR, dtype=np.float32)], max_s=0.5)
    np.testing.assert_allclose(S, np.log(1e-6), rtol=1e-6)


def test_log_mel_int16_scaled_input_matches_float_input():
    wave = tone(0.5)
    np.testing.assert_allclose(log_mel([wave * 32767], max_s=0.5), log_mel([wave], max_s=0.5), atol=1e-3)


def test_log_mel_non_finite_samples_count_as_zero():
    wave = tone(0.5)
    broken, zeroed = wave.copy(), wave.copy()
    broken[100:200], zeroed[100:200] = np.nan, 0.0
    broken[300] = np.inf
    zeroed[300] = 0.0
    np.testing.assert_array_equal(log_mel([broken], max_s=0.5), log_mel([zeroed], max_s=0.5))


def test_log_mel_threads_match_serial_with_random_crops():
    waves = [tone(0.3, freq=200 + 10 * i, seed=i) for i in range(CHUNK_CLIPS + 5)]
    kwargs = {"max_s": 0.1, "offset": "random", "rng": 7}
    np.testing.assert_array_equal(log_mel(waves, n_jobs=1, **kwargs), log_mel(waves, n_jobs=2, **kwargs))


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"sr": 0}, "sr must be an int > 0, got 0"),
        ({"n_fft": 1}, "n_fft must be an int > 1, got 1"),
        ({"hop_length": 0}, "hop_length must be an int > 0, got 0"),
        ({"n_mels": 0}, "n_mels must be an int > 0, got 0"),
        ({"max_s": 0.01}, "max_s must be >= n_fft / sr = 0.032, got 0.01"),
    ],
)
def test_log_mel_rejects_bad_params(kwargs, msg):
    with pytest.raises(FrontendError, match=msg):
        log_mel([tone(0.1)], **kwargs)


def test_mfcc_matches_librosa_dct_of_the_same_log_mel():
    S = log_mel([tone(0.5)], max_s=0.5)[0]
    np.testing.assert_allclose(mfcc(S, n_mfcc=13), librosa.feature.mfcc(S=S, n_mfcc=13), rtol=1e-4, atol=1e-3)


def test_mfcc_rejects_more_coefficients_than_bands():
    with pytest.raises(FrontendError, match=r"n_mfcc must be an int in \[1, n_mels=8\], got 9"):
        mfcc(np.zeros((8, 5), dtype=np.float32), n_mfcc=9)


def test_pooled_stats_matches_numpy_definitions():
    S = np.random.default_rng(0).standard_normal((3, 4, 11)).astype(np.float32)
    expected = np.concatenate(
        [
            S.mean(-1),
            S.std(-1),
            S.max(-1),
            np.percentile(S, 10, axis=-1),
            np.percentile(S, 90, axis=-1),
            np.abs(np.diff(S, axis=-1)).mean(-1),
        ],
        axis=1,
    )
    np.testing.assert_allclose(pooled_stats(S), expected, atol=1e-5)


def test_pooled_stats_single_frame_has_zero_delta():
    stats = pooled_stats(np.ones((2, 3, 1), dtype=np.float32))
    np.testing.assert_array_equal(stats[:, -3:], 0.0)


@pytest.mark.parametrize(
    "name, params, shape",
    [
        ("log_mel_stats", {"n_mels": 32, "n_mfcc": 10}, (3, 6 * (32 + 10))),
        ("log_mel_frames", {"n_mels": 32}, (3, 47, 32)),
        ("mfcc_frames", {"n_mels": 32, "n_mfcc": 10}, (3, 47, 10)),
    ],
)
def test_compute_features_shapes(name, params, shape):
    waves = [tone(0.05), tone(2.0), np.zeros(100, dtype=np.float32)]
    X = compute_features(name, {"max_s": 0.5, **params}, waves)
    assert X.shape == shape
    assert X.dtype == np.float32 and X.flags.c_contiguous and np.isfinite(X).all()


def test_compute_features_rejects_unknown_name_and_params():
    with pytest.raises(FrontendError, match="name must be one of"):
        compute_features("spectrogram", {}, [tone(0.1)])
    with pytest.raises(FrontendError, match=r"params of log_mel_frames must be among .*, got \['n_mfcc'\]"):
        compute_features("log_mel_frames", {"n_mfcc": 13}, [tone(0.1)])


def test_feature_cache_computes_each_log_mel_once():
    waves = [tone(0.2, seed=i) for i in range(3)]
    cache = FeatureCache()
    frames = cache.get("log_mel_frames", {"max_s": 0.2}, waves, "test")
    stats = cache.get("log_mel_stats", {"max_s": 0.2}, waves, "test")  # pooled from the cached log-mel
    assert cache.get("log_mel_stats", {"max_s": 0.2, "n_mfcc": 20}, waves, "test") is stats
    assert [key[0] for key in cache.arrays] == ["log_mel", "log_mel_frames", "log_mel_stats"]
    assert not frames.flags.writeable and not stats.flags.writeable
    assert set(cache.seconds) == set(cache.arrays)
    np.testing.assert_array_equal(stats, compute_features("log_mel_stats", {"max_s": 0.2}, waves))
    np.testing.assert_array_equal(frames, compute_features("log_mel_frames", {"max_s": 0.2}, waves))
    cache.get("log_mel_frames", {"max_s": 0.2}, waves, "train")
    assert len(cache.arrays) == 5


def test_feature_cache_drops_least_recently_used_log_mels_beyond_its_byte_cap():
    waves = [tone(0.2, seed=i) for i in range(3)]
    log_mel_bytes = compute_features("log_mel_frames", {"max_s": 0.2}, waves).nbytes
    cache = FeatureCache(max_log_mel_bytes=2 * log_mel_bytes)  # room for the 0.2 s or the 0.3 s log-mel, not both

    def held():
        return [json.loads(key[1])["max_s"] for key in cache.arrays if key[0] == "log_mel"]

    cache.get("log_mel_frames", {"max_s": 0.2}, waves, "test")
    mfccs = cache.get("mfcc_frames", {"max_s": 0.3}, waves, "test")
    assert held() == [0.3]
    cache.get("mfcc_frames", {"max_s": 0.2}, waves, "test")
    assert held() == [0.2]
    assert cache.get("mfcc_frames", {"max_s": 0.3}, waves, "test") is mfccs  # features themselves stay
    assert set(cache.seconds) == set(cache.arrays)


def test_log_mel_stats_from_audio_chunk_by_chunk_matches_stats_of_the_whole_log_mel():
    waves = [tone(0.3 + 0.4 * i, seed=i) for i in range(CHUNK_CLIPS + 5)]
    assert chunk_clips(4 * 16000) < CHUNK_CLIPS  # 4 s crops: smaller chunks, several of them
    streamed = log_mel_stats(waves, max_s=4.0)
    np.testing.assert_allclose(streamed, log_mel_stats(S=log_mel(waves, max_s=4.0)), rtol=1e-4, atol=1e-4)


def test_feature_cache_pools_features_without_holding_their_log_mel():
    waves = [tone(0.3, seed=i) for i in range(4)]
    cache = FeatureCache()
    stats = cache.get("log_mel_stats", {"max_s": 0.3}, waves, "train")
    assert [key[0] for key in cache.arrays] == ["log_mel_stats"]
    np.testing.assert_allclose(stats, compute_features("log_mel_stats", {"max_s": 0.3}, waves), rtol=1e-4, atol=1e-4)


def test_features_registry_names():
    assert sorted(FEATURES) == ["log_mel_frames", "log_mel_stats", "mfcc_frames"]
