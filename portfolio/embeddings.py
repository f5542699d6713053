"""Per-clip embeddings computed once and kept, with a measured cost model for budgeting.

Pretrained encoders are the slowest front ends here, so each clip is embedded once per
setting and reused by every round and member. The scheduler keys clips by any hashable
value (it uses ``("train", i)`` and ``("test", i)``), computes missing ones in chunks
that stop before a deadline, and costs what is left from a measured rate.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Hashable, Sequence

import numpy as np

from portfolio.pretrained import SR, encoded_seconds, whisper_embed, yamnet_embed

EMBEDDERS = {"whisper": whisper_embed, "yamnet": yamnet_embed}
# Parameters that change the speed of an embedding, not its values: left out of the store's key.
SPEED_ONLY_PARAMS = ("n_threads",)
CHUNK_CLIPS = 16
# Seconds per second of encoded audio before any measurement. Source: docs/embedding_speed.md
# (2 shared cores, 2026-12-01): the slowest Whisper setting there, float32 with 8 s windows on
# 1 thread, took 0.011 s per window-second (int8 on 2 threads: 0.003); YAMNet 0.0008. The
# priors are about 4 and 10 times those, for slower or busier machines and short windows.
PRIOR_S_PER_AUDIO_S = {"whisper": 0.045, "yamnet": 0.008}
DEFAULT_PRIOR_S_PER_AUDIO_S = 0.05
# A measured rate is trusted down to half the previous one per update, so one fast chunk
# (a warm cache, an idle machine) does not make the next estimate optimistic.
RATE_DECAY = 0.5


class EmbeddingStoreError(KeyError):
    """Embeddings asked for were never computed."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def full_params(name: str, params: dict) -> dict:
    """``params`` with the embedder's keyword defaults filled in."""
    if name not in EMBEDDERS:
        raise ValueError(f"name must be one of {sorted(EMBEDDERS)}, got {name!r}")
    signature = inspect.signature(EMBEDDERS[name])
    defaults = {
        key: p.default for key, p in signature.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }
    return {**defaults, **params}


def canonical_params(name: str, params: dict) -> str:
    """The store key of an embedding setting: defaults filled in, speed-only params dropped, as sorted JSON."""
    full = full_params(name, params)
    return json.dumps({k: v for k, v in full.items() if k not in SPEED_ONLY_PARAMS}, sort_keys=True)


def speed_key(name: str, params: dict) -> tuple[str, str]:
    """The key of a measured rate: every parameter counts (threads and compute type change the speed)."""
    return name, json.dumps(full_params(name, params), sort_keys=True)


def audio_seconds(waves: Sequence[np.ndarray], params: dict) -> float:
    """Seconds of audio an embedder encodes for ``waves`` under ``params`` (windows, 0.5 s minimum each)."""
    window_s = float(params.get("window_s", 10.0))
    n_windows = int(params.get("n_windows", 1))
    return float(sum(encoded_seconds(np.size(wave), window_s=window_s, n_windows=n_windows) for wave in waves))


class EmbeddingStore:
    """Embeddings of clips by (embedder name, canonical params) and clip key, each computed once."""

    def __init__(self):
        self.rows: dict[tuple[str, str], dict[Hashable, np.ndarray]] = {}
        self.rates: dict[tuple[str, str], float] = {}  # speed_key -> seconds per encoded audio second
        self.spent_s: dict[str, float] = {}  # name -> seconds spent embedding, all settings

    def _table(self, name: str, params: dict) -> dict:
        return self.rows.setdefault((name, canonical_params(name, params)), {})

    def missing(self, name: str, params: dict, keys: Sequence[Hashable]) -> list:
        """The keys (in order, without repeats) whose embeddings are not stored yet."""
        table = self._table(name, params)
        return list(dict.fromkeys(key for key in keys if key not in table))

    def rate(self, name: str, params: dict) -> float:
        """Seconds per encoded audio second of this setting: measured if it ran, else the name's prior."""
        prior = PRIOR_S_PER_AUDIO_S.get(name, DEFAULT_PRIOR_S_PER_AUDIO_S)
        return self.rates.get(speed_key(name, params), prior)

    def estimate_s(self, name: str, params: dict, waves: Sequence[np.ndarray]) -> float:
        """Seconds to embed ``waves`` (all of them, stored or not) under ``params``."""
        return self.rate(name, params) * audio_seconds(waves, params)

    def compute(
        self,
        name: str,
        params: dict,
        keys: Sequence[Hashable],
        waves: Sequence[np.ndarray],
        deadline: float | None = None,
    ) -> int:
        """Embed the clips of ``keys`` not stored yet, in chunks; return how many were embedded.

        ``waves[i]`` is the clip of ``keys[i]``. Before each chunk of ``CHUNK_CLIPS`` clips the
        chunk's cost is estimated; the call stops before a chunk that would end after
        ``deadline`` (a ``time.monotonic()`` value; None = no limit). The rate is updated after
        each chunk. Embedder errors (e.g. ``PretrainedUnavailable``) propagate.
        """
        if len(keys) != len(waves):
            raise ValueError(f"keys and waves must have the same length, got {len(keys)} and {len(waves)}")
        table = self._table(name, params)
        todo = {}
        for key, wave in zip(keys, waves):
            if key not in table:
                todo.setdefault(key, wave)
        todo_keys = list(todo)
        embed = EMBEDDERS[name]
        done = 0
        for lo in range(0, len(todo_keys), CHUNK_CLIPS):
            chunk_keys = todo_keys[lo:lo + CHUNK_CLIPS]
            chunk = [todo[key] for key in chunk_keys]
            chunk_audio_s = audio_seconds(chunk, params)
            if deadline is not None and time.monotonic() + self.rate(name, params) * chunk_audio_s > deadline:
                break
            start = time.monotonic()
            rows = np.asarray(embed(chunk, **params), dtype=np.float32)
            seconds = time.monotonic() - start
            if rows.shape[0] != len(chunk):
                raise ValueError(f"{name} returned {rows.shape[0]} rows for {len(chunk)} clips")
            for key, row in zip(chunk_keys, rows):
                table[key] = row
            done += len(chunk)
            self._measure(name, params, seconds, chunk_audio_s)
        return done

    def _measure(self, name: str, params: dict, seconds: float, audio_s: float) -> None:
        """Update the setting's rate from one chunk: ``seconds`` for ``audio_s`` seconds of audio."""
        key = speed_key(name, params)
        measured = seconds / max(audio_s, 1e-3)
        previous = self.rates.get(key)
        self.rates[key] = measured if previous is None else max(measured, RATE_DECAY * previous)
        self.spent_s[name] = self.spent_s.get(name, 0.0) + seconds

    def get(self, name: str, params: dict, keys: Sequence[Hashable]) -> np.ndarray:
        """The stored embeddings of ``keys`` [shape=(len(keys), d), float32]; raises if any is missing."""
        table = self._table(name, params)
        absent = [key for key in keys if key not in table]
        if absent:
            raise EmbeddingStoreError(
                f"{len(absent)} of {len(keys)} clips have no {name} embedding for "
                f"{canonical_params(name, params)} (first: {absent[0]!r}); call compute first"
            )
        if not keys:
            dim = next(iter(table.values())).shape[0] if table else 0
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([table[key] for key in keys])


def measure_rate(name: str, params: dict, *, n_clips: int = 4, seed: int = 0) -> float:
    """Seconds per encoded audio second of one setting, timed on `n_clips` noise clips that fill its windows.

    Run where time is free (``Model.__init__``) and handed to the scheduler's store, so the
    first embedding round is sized from this machine's speed, not from a cautious prior.
    """
    full = full_params(name, params)
    clip_n = int(SR * float(full.get("window_s", 10.0)) * int(full.get("n_windows", 1)))
    rng = np.random.default_rng(seed)
    waves = [0.1 * rng.standard_normal(clip_n).astype(np.float32) for _ in range(n_clips)]
    EMBEDDERS[name](waves[:1], **params)  # the first call may load the model: not timed
    start = time.monotonic()
    EMBEDDERS[name](waves, **params)
    return (time.monotonic() - start) / max(audio_seconds(waves, full), 1e-3)
