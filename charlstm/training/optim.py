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
