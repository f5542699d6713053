"""The linear probe of embedding settings: informative features score high, noise does not."""

import numpy as np

from harness.dataset import Dataset
from harness.probe_embeddings import probe, table


def level_dataset(n_per_class: int = 20, seed: int = 0) -> Dataset:
    """Three classes that differ only in their level; labels one-hot."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    waves = [rng.standard_normal(800).astype(np.float32) * 0.1 + 0.2 * label for label in labels]
    y = np.eye(3)[labels]
    return Dataset("levels", None, {}, waves[::2], y[::2], waves[1::2], y[1::2])


def fake_embed(waves, *, informative=True):
    rng = np.random.default_rng(1)
    if informative:
        return np.array([[np.mean(w), np.std(w)] for w in waves])
    return rng.standard_normal((len(waves), 2))


def test_probe_scores_what_the_setting_carries():
    data = level_dataset()
    good = probe(data, fake_embed, {"informative": True}, [1.0, 10.0])
    noise = probe(data, fake_embed, {"informative": False}, [1.0])
    assert min(good["scores"].values()) > 0.9 and abs(noise["scores"][1.0]) < 0.5
    assert good["embed_s"] >= 0
    text = table([("levels", '{"informative": true}', good)], [1.0, 10.0])
    assert text.splitlines()[0].startswith("| task | setting | C = 1 | C = 10 |")
    assert f"{good['scores'][10.0]:.4f}" in text.splitlines()[2]
