"""charlstm: character-level recurrent language models, trained with truncated BPTT."""

__version__ = "0.1.0"
