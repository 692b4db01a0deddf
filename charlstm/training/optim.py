"""The optimizer and its schedule, beside the loop rather than inside it (nanoGPT keeps
its parameter groups by the model, torchtune its schedules in their own module): AdamW
with weight decay on the matrices only, a learning rate that is a pure function of the
step, and the conversions that let any saved optimizer state load.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from charlstm.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig, budget_steps: int | None = None) -> float:
    """Linear warm-up, then cosine decay to lr * final_lr_fraction: a pure function of the
    step (and, for a time budget, of the step count fitted to it: see budget.py)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.decay_steps or budget_steps or cfg.max_steps
    if decay_steps is None:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.final_lr_fraction
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - floor)


def fused_optimizer_state(saved: dict[str, Any]) -> dict[str, Any]:
    """An AdamW state dict set to load as the fused optimizer, whatever it was saved as
    (loading keeps the saved group options, and only the fused kernel skips on the
    device); its step counters then move to the parameters' device, as fused needs."""
    groups = [{**g, "fused": True, "foreach": None} for g in saved["param_groups"]]
    return {**saved, "param_groups": groups}


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's parameter groups: weight decay on the matrices (embedding, recurrent and
    decoder weights), none on biases and peephole vectors, as nanoGPT does: shrinking a
    bias towards 0 regularises nothing. The decayed group comes first."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def regrouped_optimizer_state(
    saved: dict[str, Any], model: torch.nn.Module, groups: list[dict[str, Any]]
) -> dict[str, Any]:
    """An optimizer state saved with every parameter in one group (checkpoint format 1)
    laid out as `groups`: each parameter keeps its moments, each group the saved options
    but its own weight decay. A state already in that layout comes back as it is."""
    if len(saved["param_groups"]) == len(groups):
        return saved
    (old_group,) = saved["param_groups"]
    old_index = {id(p): i for i, p in enumerate(model.parameters())}
    state, param_groups, at = {}, [], 0
    for group in groups:
        indices = []
        for p in group["params"]:
            if old_index[id(p)] in saved["state"]:
                state[at] = saved["state"][old_index[id(p)]]
            indices.append(at)
            at += 1
        param_groups.append({**old_group, "weight_decay": group["weight_decay"], "params": indices})
    return {"state": state, "param_groups": param_groups}


class MuonAndAdamW:
    """Muon on the recurrent and input-to-hidden matrices of the recurrent layers, AdamW
    (fused, weight decay on matrices only) on the embedding, decoder, biases and
    peepholes, as one optimizer to the loop: one set of groups for the schedule, one
    state dict (checkpoints, roll-backs), one step. Muon's update is scaled to AdamW's
    RMS ("match_rms_adamw"), so the same rate and weight decay serve both (Moonshot's
    recipe for Muon at scale). A step the loop flags as non-finite is skipped by both:
    AdamW on the device, Muon by reading the flag."""

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float):
        rnn = {id(p) for name, p in model.named_parameters()
               if name.startswith("rnn.weight_") and p.dim() == 2}  # fmt: skip
        matrices = [p for p in model.parameters() if id(p) in rnn]
        rest = [p for p in model.parameters() if id(p) not in rnn]
        self.adamw = torch.optim.AdamW(
            [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay},
             {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
            lr=lr, fused=True,
        )  # fmt: skip
        self.muon = torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay,
                                     adjust_lr_fn="match_rms_adamw")  # fmt: skip
        self.found_inf: torch.Tensor | None = None

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.adamw.param_groups + self.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.adamw.found_inf = self.found_inf
        self.adamw.step()
        if self.found_inf is None or not bool(self.found_inf):  # waits for the device
            self.muon.step()

    def state_dict(self) -> dict[str, Any]:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.adamw.load_state_dict(fused_optimizer_state(saved["adamw"]))
        self.muon.load_state_dict(saved["muon"])


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, groups: list[dict[str, Any]]):
    """The run's optimizer (train.optimizer)."""
    if cfg.optimizer == "muon":
        return MuonAndAdamW(model, cfg.lr, cfg.weight_decay)
    # fused: one kernel for all parameters, and it can skip an update on the device
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
