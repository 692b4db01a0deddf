"""CharRNN: embedding -> multi-layer LSTM / GRU / RNN -> dropout -> linear decoder.

`forward(ids, state) -> (logits, state)`; the loss is computed by the caller. The
recurrent layers are PyTorch's fused modules (cuDNN on GPU, oneDNN on CPU): no Python
loop over time steps anywhere in training. The one exception is `peephole`, a cell from
the literature that no fused kernel implements (charlstm/peephole.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from charlstm.config import ModelConfig
from charlstm.peephole import PeepholeLSTM

# LSTM state is (h, c); GRU and RNN state is h alone. Each is (num_layers, batch, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "peephole": PeepholeLSTM}


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in evaluation mode (no dropout) for the work inside, then back in the
    mode it was in, even when that work fails or is stopped. Gradients are the caller's
    to turn off (`torch.no_grad` on the function: a generator keeps it across yields)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def bits_per_char(nats: float) -> float:
    """A loss in nats per character as bits per character (the number papers report)."""
    return nats / math.log(2)


def has_cell_state(cell: str) -> bool:
    """Whether the cell carries a memory c beside its output h."""
    return cell in ("lstm", "peephole")


class CharRNN(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim)
        self.rnn = CELLS[cfg.cell](
            cfg.embedding_dim,
            cfg.hidden_size,
            num_layers=cfg.num_layers,
            # nn.LSTM applies dropout between layers only; it warns when there is one layer.
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.decoder = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids: (batch, time) int64 -> logits (batch, time, vocab) and the final state."""
        x = self.embedding(ids)
        out, state = self.rnn(x, state)
        return self.decoder(self.dropout(out)), state

    def init_state(self, batch_size: int, device: torch.device | str) -> State:
        shape = (self.cfg.num_layers, batch_size, self.cfg.hidden_size)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros_like(h)) if has_cell_state(self.cfg.cell) else h

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    """Cut the graph at a window edge: the values carry on, the gradients stop."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def keep_if(flag: torch.Tensor, old: State, new: State) -> State:
    """`old` where flag (a 0-d tensor) is nonzero, else `new`: chosen on the device."""
    keep = flag.bool()
    if isinstance(new, tuple):
        return tuple(torch.where(keep, o, n) for o, n in zip(old, new, strict=True))
    return torch.where(keep, old, new)


def state_tensors(state: State) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def state_from_tensors(tensors: list[torch.Tensor], cell: str) -> State:
    return (tensors[0], tensors[1]) if has_cell_state(cell) else tensors[0]
