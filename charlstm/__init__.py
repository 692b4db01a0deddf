"""charlstm: character-level recurrent language models, trained with truncated BPTT.

From Python: `model = charlstm.load(path)`, then `model.sample(...)`, `model.stream(...)`
and `model.score(text)` (see charlstm/api.py). Errors are CharlstmError and its
subclasses.
"""

from charlstm.api import Model, load
from charlstm.errors import CharlstmError, CheckpointError, ConfigError, CorpusError, VocabError

__version__ = "0.1.0"
__all__ = [
    "CharlstmError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "Model",
    "VocabError",
    "load",
]
