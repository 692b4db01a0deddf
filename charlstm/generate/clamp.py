"""Steering: hold a unit's output at a value at every step and watch the text change
(`--clamp L:U=VALUE`, the experiment of the sentiment-neuron work and of LSTMVis).

A unit's h reaches the rest of the network only through matrices: its column of the
layer's own recurrent weights, of the next layer's input weights, or of the decoder.
Holding h at v for every reader, from the start state on, is the same network with
those columns zeroed and v times each column added to its bias, exactly and at full
speed, on every cell (an
LSTM's, a GRU's: its reset gate multiplies a term whose bias takes the share, which is
still exact, and an RNN's). What the unit itself computes then reaches no one, so
nothing else has to change. Units are counted from 0, as `charlstm inspect` counts them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from charlstm.errors import SettingsError
from charlstm.model import CharRNN

Clamp = tuple[int, int, float]  # (layer, unit, value)


def check_clamps(clamps: tuple[Clamp, ...], net: CharRNN) -> None:
    layers, hidden = net.cfg.num_layers, net.cfg.hidden_size
    for layer, unit, _ in clamps:
        if layer >= layers or unit >= hidden:
            raise SettingsError(
                f"`clamp` {layer}:{unit}: this model has layers 0-{layers - 1} and units "
                f"0-{hidden - 1}"
            )


@torch.no_grad()
def clamped(net: CharRNN, clamps: tuple[Clamp, ...]) -> CharRNN:
    """A copy of `net` in which each (layer, unit) reads as its value to every reader."""
    check_clamps(clamps, net)
    held = copy.deepcopy(net)
    if held.cfg.tie_weights:  # the decoder's columns must not change the embedding too
        held.decoder.weight = nn.Parameter(held.embedding.weight.detach().clone())
    last = held.cfg.num_layers - 1
    for layer, unit, value in clamps:
        readers = [
            (getattr(held.rnn, f"weight_hh_l{layer}"), getattr(held.rnn, f"bias_hh_l{layer}"))
        ]
        if layer < last:
            readers.append((getattr(held.rnn, f"weight_ih_l{layer + 1}"),
                            getattr(held.rnn, f"bias_ih_l{layer + 1}")))  # fmt: skip
        else:
            readers.append((held.decoder.weight, held.decoder.bias))
        for weight, bias in readers:
            bias += value * weight[:, unit]
            weight[:, unit] = 0
    return held.eval()


def steered(net: CharRNN, settings) -> CharRNN:
    """The network a generation with these settings runs: clamped when they clamp."""
    return clamped(net, settings.clamp) if settings.clamp else net
