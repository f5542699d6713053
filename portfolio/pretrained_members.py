"""Linear heads over pretrained embeddings: Whisper base and YAMNet as portfolio members.

The members consume per-clip embeddings (``feature_spec()["per_clip"]``), which the
scheduler computes once per clip through :class:`portfolio.embeddings.EmbeddingStore`;
the head is :class:`portfolio.linear.LinearMember`'s standardization and warm-started
multinomial logistic regression.
"""

from __future__ import annotations

from portfolio.base import MemberError
from portfolio.checks import is_int, is_number
from portfolio.linear import LinearMember
from portfolio.pretrained import COMPUTE_TYPES, OFFSETS, POOLINGS, WHISPER_MAX_S, availability


_HEAD_CONSTRAINTS = {k: LinearMember._parameter_constraints[k] for k in ("C", "solver", "max_iter")}
_WINDOW_CONSTRAINTS = {
    "n_windows": (lambda v: is_int(v, 1), "an int >= 1"),
    "offset": (lambda v: v in OFFSETS, f"one of {OFFSETS} (a single window's place; several spread)"),
    "pooling": (lambda v: v in POOLINGS, f"one of {POOLINGS}"),
    "n_threads": (lambda v: is_int(v, 1), "an int >= 1"),
}


class _EmbeddingHead(LinearMember):
    """A linear head over the embeddings of ``embedder``; subclasses list the embedding's parameters."""

    embedder = ""
    embedding_params: tuple = ()

    def feature_spec(self) -> dict:
        """The embedding this head reads, per clip, from the scheduler's embedding store."""
        params = {name: getattr(self, name) for name in self.embedding_params}
        return {"name": self.embedder, "params": params, "per_clip": True}

    def _check_params(self) -> None:
        """Each parameter's own rule, and an offset only where it has a single window to place."""
        super()._check_params()
        if self.offset != "start" and self.n_windows != 1:
            raise MemberError(f"offset {self.offset!r} places a single window, got n_windows={self.n_windows!r}")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this member cannot run in this process (model package missing, wrong hash...), or None."""
        return availability(cls.embedder)


class WhisperMember(_EmbeddingHead):
    """Whisper base encoder mean (and std) over 20 ms frames of up to ``n_windows`` windows + linear head.

    Trained on 680k hours of multilingual speech: strong on language and accent, useful on
    speaker and emotion; ``language_probs`` adds the language-detection head's 99 outputs.
    """

    embedder = "whisper"
    embedding_params = ("window_s", "n_windows", "offset", "pooling", "language_probs", "compute_type", "n_threads")
    _parameter_constraints = {
        **_HEAD_CONSTRAINTS,
        **_WINDOW_CONSTRAINTS,
        "window_s": (lambda v: is_number(v, 0.1, WHISPER_MAX_S), f"a number in [0.1, {WHISPER_MAX_S:g}]"),
        "language_probs": (lambda v: isinstance(v, bool), "True or False"),
        "compute_type": (lambda v: v in COMPUTE_TYPES, f"one of {COMPUTE_TYPES}"),
    }
    # A solve on 1024 standardized dimensions took 0.02-0.07 s for about 220 clips of 22 classes
    # on 2 shared cores (lbfgs); the prior is well above that.
    cost_prior_s = {"fit": (0.5, 3e-3), "predict": (0.05, 2e-5)}

    def __init__(
        self,
        C=0.1,
        solver="lbfgs",
        max_iter=300,
        window_s=8.0,
        n_windows=1,
        offset="start",
        pooling="mean_std",
        language_probs=False,
        compute_type="int8",
        n_threads=2,
        seed=0,
    ):
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.window_s = window_s
        self.n_windows = n_windows
        self.offset = offset
        self.pooling = pooling
        self.language_probs = language_probs
        self.compute_type = compute_type
        self.n_threads = n_threads
        self.seed = seed


class YamnetMember(_EmbeddingHead):
    """YAMNet 1024-d patch embeddings, mean (and std) over 0.96 s patches + linear head.

    Trained on AudioSet's 521 sound classes: general sound events and music, less speech detail.
    """

    embedder = "yamnet"
    embedding_params = ("window_s", "n_windows", "offset", "pooling", "n_threads")
    _parameter_constraints = {
        **_HEAD_CONSTRAINTS,
        **_WINDOW_CONSTRAINTS,
        "window_s": (lambda v: is_number(v, 0.1), "a number >= 0.1"),
    }
    # 2048 dimensions: 0.07-0.44 s for the same clips.
    cost_prior_s = {"fit": (0.5, 5e-3), "predict": (0.05, 4e-5)}

    def __init__(self, C=0.1, solver="lbfgs", max_iter=300, window_s=10.0, n_windows=1, offset="start",
                 pooling="mean_std", n_threads=2, seed=0):
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.window_s = window_s
        self.n_windows = n_windows
        self.offset = offset
        self.pooling = pooling
        self.n_threads = n_threads
        self.seed = seed
