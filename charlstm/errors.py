"""The errors a user can cause, and the check that a settings field holds what its type
says. The CLI turns each error into one line on stderr and exit code 1.

Anything else that escapes is a bug in charlstm and keeps its traceback.
"""

import dataclasses
import re


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


# A field named in a settings error's message: `top_p`
_FIELD = re.compile(r"`(\w+)`")


class SettingsError(CharlstmError):
    """A settings value the rules refuse. The message names each field as `field`: the
    Python API and the server say the field's name (`top_p must be in (0, 1]`), the
    command line its flag (`--top-p must be in (0, 1]`)."""

    def __init__(self, marked: str):
        self.marked = marked
        found = _FIELD.search(marked)
        self.param = found[1] if found else None  # the first field named (OpenAI's `param`)
        super().__init__(_FIELD.sub(r"\1", marked))

    def with_flags(self) -> str:
        return _FIELD.sub(lambda m: "--" + m[1].replace("_", "-"), self.marked)


class UnknownCharacters(SettingsError, VocabError):
    """Characters the vocabulary lacks, in a text the `unknown` setting says to refuse
    (a settings error too: its message names that setting)."""


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
    naming the field."""
    for f in dataclasses.fields(settings):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not all(k in _ADMITS for k in kinds):
            continue  # tuples, literals: checked by the rules that read them
        value = getattr(settings, f.name)
        if not any(_ADMITS[k](value) for k in kinds):
            wanted = " or ".join(_SAID[k] for k in kinds)
            raise SettingsError(f"`{f.name}` must be {wanted} (got {value!r})")
