"""Fine-tuning: a new run that starts from a trained model's weights (`train.init_from`).

The model settings come from the checkpoint, since its weights only fit its own shapes:
a config that sets a model key to anything but its default or the checkpoint's value is
an error, not a silent override (model.dropout, a training setting, is the config's).

The vocabulary grows and is never remapped: the checkpoint's characters keep their ids
and their embedding and decoder rows; characters new to this corpus get new rows,
initialised as a fresh model's would be; old characters the corpus lacks stay.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from charlstm.checkpoint import read_checkpoint, resolve_checkpoint
from charlstm.config import Config, ModelConfig
from charlstm.data.vocab import Vocab
from charlstm.errors import CheckpointError, ConfigError
from charlstm.model import CharRNN

# Rows indexed by character id: these grow with the vocabulary.
PER_CHARACTER = ("embedding.weight", "decoder.weight", "decoder.bias")
# Model keys a fine-tune may set for itself.
OWN_MODEL_KEYS = ("dropout",)


@dataclasses.dataclass(frozen=True)
class Base:
    """The checkpoint a fine-tune starts from."""

    path: Path
    weights: dict[str, torch.Tensor]
    vocab: Vocab
    model: ModelConfig


def load_base(init_from: str) -> Base:
    path = resolve_checkpoint(Path(init_from).expanduser())
    try:
        saved = read_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(f"train.init_from: {error}") from None
    return Base(path, saved.inference_weights, saved.vocab, saved.config.model)


def with_model_of(cfg: Config, model: ModelConfig, source: str) -> Config:
    """`cfg` with the model settings of a checkpoint (`source` names it in errors)."""
    defaults = ModelConfig()
    for field in dataclasses.fields(ModelConfig):
        mine, theirs = getattr(cfg.model, field.name), getattr(model, field.name)
        if field.name in OWN_MODEL_KEYS or mine in (theirs, getattr(defaults, field.name)):
            continue
        raise ConfigError(
            f"config: model.{field.name} is {mine!r} but {source} has {theirs!r}: a fine-tune "
            "takes its model settings from the checkpoint (leave them out of the config)"
        )
    own = {k: getattr(cfg.model, k) for k in OWN_MODEL_KEYS}
    return dataclasses.replace(cfg, model=dataclasses.replace(model, **own))


def grown_weights(base: Base, vocab: Vocab, fresh: CharRNN) -> dict[str, Any]:
    """The base model's weights for a model over `vocab` (the base vocabulary grown):
    the fresh model's rows for the new characters, the base's for all the others."""
    if vocab.code_points[: base.vocab.size] != base.vocab.code_points:
        raise CheckpointError("train.init_from: the vocabulary must grow from the checkpoint's")
    weights = dict(base.weights)
    own = fresh.state_dict()
    for name in PER_CHARACTER:
        if name in weights:
            grown = own[name].clone()
            grown[: base.vocab.size] = weights[name]
            weights[name] = grown
    return weights
