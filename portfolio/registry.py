"""Member names to classes."""

from __future__ import annotations

from portfolio.base import Member, MemberError
from portfolio.cnn import CnnMember
from portfolio.linear import LinearMember
from portfolio.lstm_attention import LstmAttentionMember
from portfolio.pretrained_members import WhisperMember, YamnetMember

MEMBERS = {
    "linear": LinearMember,
    "cnn": CnnMember,
    "lstm_attention": LstmAttentionMember,
    "whisper": WhisperMember,
    "yamnet": YamnetMember,
}


def make_member(name: str, params: dict | None = None) -> Member:
    """A new member ``MEMBERS[name](**params)``."""
    if name not in MEMBERS:
        raise MemberError(f"name must be one of {sorted(MEMBERS)}, got {name!r}")
    return MEMBERS[name](**(params or {}))
