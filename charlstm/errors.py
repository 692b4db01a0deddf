"""The errors a user can cause. The CLI turns each into one line on stderr and exit code 1.

Anything else that escapes is a bug in charlstm and keeps its traceback.
"""


class CharlstmError(Exception):
    """A mistake in what the user asked for, explained in one line that names the fix."""

    prefix = "error: "
    exit_code = 1


class ConfigError(CharlstmError):
    """A config file or override that cannot be used."""


class CorpusError(CharlstmError):
    """A corpus that is missing, empty, too short or not decodable."""


class VocabError(CharlstmError):
    """Text with characters the model's vocabulary does not have."""


class CheckpointError(CharlstmError):
    """A checkpoint that is missing, corrupt, foreign or cannot be written."""
