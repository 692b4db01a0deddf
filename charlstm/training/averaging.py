"""An exponential moving average of the weights (`train.ema`), for evaluation.

Training moves the weights along a noisy path; their recent average sits nearer the
bottom of the valley than the last point. A decay d averages over about the last
1 / (1 - d) steps (200 for 0.995), fewer early in a run, where WARMUP caps d. In a
180 s tiny-Shakespeare run (1,300 steps, d capped near 0.993, so about 150 steps) the
average scored 0.012 nats/char better than the weights it averages (bench/RESULTS.md),
for one small lerp per step.

The trainer keeps training the raw weights (resume needs them); validation, best.pt's
choice and sampling during training use the average, and a checkpoint carries it under
`averaged_model`, which every inference path (sample, eval, inspect, export, the Python
API, fine-tuning) prefers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# The average starts short: at step t it weighs the newest weights by at least
# 9 / (10 + t), so the first steps' random weights are soon forgotten.
WARMUP = 10


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = model
        self.decay = decay
        self.params = list(model.parameters())
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Blend in the weights after `step` (on the device, without waiting for it)."""
        decay = min(self.decay, (1 + step) / (WARMUP + step))
        torch._foreach_lerp_(self.average, self.params, 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own after it."""
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, own)

    def state_dict(self) -> dict[str, Any]:
        """The model's state dict with the averaged weights in place of its own."""
        with self.applied():
            return {name: t.detach().clone() for name, t in self.model.state_dict().items()}

    @torch.no_grad()
    def load_state_dict(self, averaged: dict[str, torch.Tensor]) -> None:
        names = [name for name, _ in self.model.named_parameters()]
        torch._foreach_copy_(self.average, [averaged[name] for name in names])
