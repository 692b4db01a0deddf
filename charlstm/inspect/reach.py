"""How far back a model remembers (`charlstm inspect --reach`): the user's answer to "how
much context does my model use, and would a longer bptt help?".

Two curves over the distance k, at the same positions of a text:

- the loss when the model reads only the last k characters (its state reset before each
  window), for k = 1, 2, 4, ... up to a bound, beside the loss with the whole carried
  state (one pass from the text's start): where the curve meets the line, more context
  stops helping;
- the mean size of the gradient of log p(next character) with respect to the input k
  characters back (the input embedding's gradient norm), for k = 1 .. the bound: how
  strongly the prediction still depends on what lay that far back (the gradient
  connectivity of Distill's memorization article).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charlstm.errors import CharlstmError
from charlstm.inspect.ablation import per_char_loss
from charlstm.model import CharRNN, evaluating

MAX_DISTANCE = 256  # the longest window read
POSITIONS = 256  # positions of the text every curve is measured at
GRADIENT_ROWS = 64  # positions per backward pass


@dataclass
class Reach:
    distances: list[int]  # k of each windowed loss
    loss: list[float]  # nats/char reading only the last k characters
    full_loss: float  # nats/char with the whole carried state, at the same positions
    gradient: list[float]  # per k = 1 .. max_distance: mean |d log p / d input k back|
    positions: int

    def to_dict(self) -> dict:
        return dict(vars(self))


def _positions(length: int, bound: int, count: int) -> np.ndarray:
    if length < bound + 2:
        raise CharlstmError(
            f"--reach needs a text longer than its longest window ({bound} characters; "
            f"this one has {length})"
        )
    return np.unique(np.linspace(bound, length - 1, count).astype(np.int64))


def _windows(ids: np.ndarray, at: np.ndarray, k: int) -> torch.Tensor:
    return torch.as_tensor(np.stack([ids[t - k : t] for t in at]).astype(np.int64))


@torch.no_grad()
def _window_loss(net: CharRNN, ids: np.ndarray, at: np.ndarray, k: int) -> float:
    device = next(net.parameters()).device
    logits, _ = net(_windows(ids, at, k).to(device))
    targets = torch.as_tensor(ids[at].astype(np.int64), device=device)
    return float(F.cross_entropy(logits[:, -1].float(), targets))


def _gradients(net: CharRNN, ids: np.ndarray, at: np.ndarray, bound: int) -> np.ndarray:
    """Mean gradient norm of log p(ids[t]) with respect to each of the `bound` inputs
    before t (index 0: the input just before), over the positions."""
    device = next(net.parameters()).device
    total = np.zeros(bound)
    for start in range(0, len(at), GRADIENT_ROWS):
        rows = at[start : start + GRADIENT_ROWS]
        x = net.embedding(_windows(ids, rows, bound).to(device)).detach().requires_grad_(True)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN's RNN backward needs train mode
            out, _ = net.rnn(x)
            log_p = F.log_softmax(net.decoder(out[:, -1]).float(), dim=-1)
        targets = torch.as_tensor(ids[rows].astype(np.int64), device=device)
        (grad,) = torch.autograd.grad(log_p.gather(1, targets[:, None]).sum(), x)
        total += grad.norm(dim=-1).sum(dim=0).flip(0).cpu().numpy()
    return total / len(at)


def reach(net: CharRNN, ids: np.ndarray, bound: int = MAX_DISTANCE,
          positions: int = POSITIONS) -> Reach:  # fmt: skip
    """Both curves at `positions` evenly spaced positions of ids (see the module)."""
    ids = np.asarray(ids)
    at = _positions(len(ids), bound, positions)
    distances = [1 << i for i in range(bound.bit_length()) if 1 << i <= bound]
    with evaluating(net):
        losses = [_window_loss(net, ids, at, k) for k in distances]
        full = per_char_loss(net, ids)[at - 1]  # per_char_loss[i] scores ids[i + 1]
        gradient = _gradients(net, ids, at, bound)
    return Reach(distances, losses, float(full.mean()), gradient.tolist(), len(at))
