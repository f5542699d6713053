"""Errors of the harness: one root, so callers can catch every harness failure at once."""


class HarnessError(Exception):
    """Root of every error the harness raises on bad input or a failed run."""


class DatasetError(HarnessError):
    """A dataset on disk breaks the AutoSpeech layout (SPEC.md); the message names the file."""


class IngestionError(HarnessError):
    """A model run could not be carried out (bad code directory, broken child process)."""
