"""Ablation: what a unit does, seen by running the model without it.

`--ablate L:U[,L:U...]` holds those units' h (and c) at 0 at every step. Nothing but the
unit's own gates reads its c, and its h is read only through three sets of weights: its
column of the layer's recurrent matrix, of the next layer's input matrix, and of the
decoder (after the last layer). A copy of the model with those columns at zero is
therefore exactly the model with the unit silenced, and it runs on the fused kernels at
full speed. Layers and units count from 0, as in `charlstm inspect`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charlstm import interrupt
from charlstm.errors import CharlstmError
from charlstm.model import CharRNN, evaluating
from charlstm.options import ScoreSettings, default_of

Unit = tuple[int, int]  # (layer, unit)


def parse_units(spec: str) -> list[Unit]:
    """ "0:5,1:12" -> [(0, 5), (1, 12)]; the shape is checked against a model later."""
    units = []
    for part in spec.split(","):
        found = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if found is None:
            raise CharlstmError(f"--ablate takes LAYER:UNIT[,LAYER:UNIT...] (got {spec!r})")
        units.append((int(found.group(1)), int(found.group(2))))
    return units


def check_units(units: list[Unit], model: CharRNN) -> None:
    layers, hidden = model.cfg.num_layers, model.cfg.hidden_size
    for layer, unit in units:
        if layer >= layers or unit >= hidden:
            raise CharlstmError(
                f"--ablate {layer}:{unit}: this model has layers 0-{layers - 1} and units "
                f"0-{hidden - 1}"
            )


@torch.no_grad()
def ablated(model: CharRNN, units: list[Unit]) -> CharRNN:
    """A copy of the model that runs as if those units' h and c were held at 0."""
    check_units(units, model)
    silent = copy.deepcopy(model)
    if silent.cfg.tie_weights:  # the decoder's columns must not silence the embedding too
        silent.decoder.weight = nn.Parameter(silent.embedding.weight.detach().clone())
    last = silent.cfg.num_layers - 1
    for layer, unit in units:
        getattr(silent.rnn, f"weight_hh_l{layer}")[:, unit] = 0
        reader = (
            silent.decoder.weight
            if layer == last
            else getattr(silent.rnn, f"weight_ih_l{layer + 1}")
        )
        reader[:, unit] = 0
    return silent


@torch.no_grad()
def per_char_loss(
    model: CharRNN, ids: np.ndarray, window: int = default_of(ScoreSettings, "window")
) -> np.ndarray:
    """-log p of each of ids[1:] given everything before it: one in-order pass from a
    zero state, the state carried between windows."""
    device = next(model.parameters()).device
    losses, state = [], None
    tensor = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)[None, :]
    with evaluating(model):
        for start in range(0, tensor.shape[1] - 1, window):
            interrupt.check("ablation")
            chunk = tensor[:, start : start + window + 1]
            logits, state = model(chunk[:, :-1], state)
            losses.append(F.cross_entropy(logits[0].float(), chunk[0, 1:], reduction="none"))
    return torch.cat(losses).cpu().numpy()  # waits for the device


@dataclass(frozen=True)
class Ablation:
    """What silencing one unit changed on a text, character by character."""

    layer: int
    unit: int
    delta: np.ndarray  # per character: loss with the unit held at 0, minus without

    @property
    def mean_change(self) -> float:
        return float(self.delta.mean())

    def to_dict(self) -> dict:
        return {"layer": self.layer, "unit": self.unit, "delta": self.delta.tolist()}


def unit_effects(model: CharRNN, ids: np.ndarray, units: dict[str, Unit]) -> dict[str, Ablation]:
    """For each named unit, the change in each character's loss when it is ablated (the
    first character, predicted from nothing, gets 0)."""
    if len(ids) < 2:
        return {}
    base = per_char_loss(model, ids)
    return {
        name: Ablation(
            layer,
            unit,
            np.concatenate(
                [[0.0], per_char_loss(ablated(model, [(layer, unit)]), ids) - base]
            ).astype(np.float32),
        )
        for name, (layer, unit) in units.items()
    }
