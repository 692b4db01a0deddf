"""The errors a user can cause, and the check that a settings field holds what its type
says. The CLI turns each error into one line on stderr and exit code 1.

Anything else that escapes is a bug in charlstm and keeps its traceback.
"""

import dataclasses


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


# What a settings field's annotation admits (the Python API and the server hand values
# over as they come: 2.5 characters, or "3" samples, must be one line, not a TypeError
# further down).
_ADMITS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
}


_SAID = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
         "None": "null"}  # fmt: skip


def check_types(settings) -> None:
    """Each field of a settings object holds a value its annotation admits, else one line
    naming the option (as the command line spells it)."""
    for f in dataclasses.fields(settings):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not all(k in _ADMITS for k in kinds):
            continue  # tuples, literals: checked by the rules that read them
        value = getattr(settings, f.name)
        if not any(_ADMITS[k](value) for k in kinds):
            wanted = " or ".join(_SAID[k] for k in kinds)
            option = "--" + f.name.replace("_", "-")
            raise CharlstmError(f"{option} must be {wanted} (got {value!r})")
