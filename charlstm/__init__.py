"""charlstm: character-level recurrent language models, trained with truncated BPTT.

From Python: `model = charlstm.load(path)`, then `model.sample(...)`, `model.stream(...)`
and `model.score(text)` (see charlstm/api.py). Errors are CharlstmError and its
subclasses.
"""

from charlstm.errors import CharlstmError, CheckpointError, ConfigError, CorpusError, VocabError

__version__ = "0.1.0"


def __getattr__(name: str):
    # The API needs torch; importing charlstm.config or charlstm.data.corpus alone should not.
    if name in ("load", "Model"):
        from charlstm import api

        return getattr(api, name)
    raise AttributeError(f"module 'charlstm' has no attribute {name!r}")


__all__ = [
    "CharlstmError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "Model",
    "VocabError",
    "load",
]
