"""psl's errors: every expected failure is a `PslError`, which the `psl` command reports in one
line (exit code 2); anything else is a bug and keeps its traceback.

The subclasses say what went wrong, for callers that handle one kind. Most are ValueErrors
too (a `FileNotFoundError`, `FileExistsError`, `RuntimeError` where that is what they were),
so library code that catches the built-in type still catches them.
"""

from __future__ import annotations


class PslError(Exception):
    """An expected failure; the message says what and names the file, key or value."""


class ConfigError(PslError, ValueError):
    """A config or option that cannot be used; the message names the file and key."""


class DataError(PslError, ValueError):
    """An input that cannot be used: a metadata table, a clip or label store, a checkpoint;
    the message names the file."""


class AudioError(DataError):
    """An audio file that cannot be used. psl.data.audio says why (ingest reports put the
    file beside it); psl.tagging names the file too."""


class IngestError(DataError):
    """An ingest that cannot go on: the layout is wrong or nothing usable remains."""


class LabelMismatch(DataError):
    """A label store (or a model's class list) that does not belong to the data it is used with."""


class CorruptLabels(DataError):
    """A label store whose files disagree with each other or with their recorded checksums."""


class CheckpointError(DataError):
    """A file that is not a usable psl checkpoint (or not the release's teacher)."""


class ReleaseFormatError(CheckpointError):
    """The file is not the release's state dict; the message names the file and the keys."""


class MissingInput(PslError, FileNotFoundError):
    """A file, folder, run or registered model the user named does not exist."""


class OutputExists(PslError, FileExistsError):
    """The output folder already holds work that the command would overwrite."""


class TrackingError(PslError, RuntimeError):
    """The tracking server cannot be used; raised before any work starts."""


class Busy(PslError, RuntimeError):
    """Another process holds the lock; the message names the folder and the holder."""


class TrainingDiverged(PslError, FloatingPointError, ValueError):
    """The loss stopped being finite: the settings (learning rate, precision) are to blame."""
