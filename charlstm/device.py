"""Which device to run on, and seeding: shared by train, sample, eval and inspect,
without importing the training loop (or TensorBoard) where only inference runs."""

from __future__ import annotations

import random

import numpy as np
import torch

from charlstm.errors import CharlstmError, ConfigError
from charlstm.options import check_device, seed32


def pick_device(name: str, option: str = "--device") -> torch.device:
    """The torch device for a (checked) name; one line naming `option` when it is not
    available here."""
    check_device(name, option)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise CharlstmError(f"{option}={name} but this machine has {have} (use auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CharlstmError(f"{option}={name} but no mps device is available (use auto or cpu)")
    return device


def training_precision(precision: str, device: torch.device) -> str:
    """fp32 or bf16: what `train.precision` means on this device. `auto` takes bf16 only
    on CPUs that compute in it natively (AVX512-BF16 or AMX: on such a CPU, 1.25x the
    steps of fp32 for the Shakespeare GRU recipe and 1.65x for make demo's LSTM, at the
    same loss per step); emulated bf16 is slower than fp32 or has no LSTM kernel at all,
    and on CUDA TF32 was as fast (bench/RESULTS.md)."""
    if precision != "auto":
        return precision
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if device.type == "cpu" and native else "fp32"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed32(seed))
    torch.manual_seed(seed)


def check_bf16_runs(model: torch.nn.Module, device: torch.device, setting: str, cell: str) -> None:
    """Some CPUs have no bfloat16 kernel for the recurrent layers at all (oneDNN fails to
    build one): found out with a two-character forward pass, before any training time is
    spent, rather than as a traceback at the first step."""
    probe = torch.zeros(1, 2, dtype=torch.long, device=device)
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            model(probe, model.init_state(1, device))
    except RuntimeError:
        raise ConfigError(
            f"config: train.precision={setting} chose bf16, but this {device.type} cannot run "
            f"a {cell} in bfloat16: use train.precision=fp32"
        ) from None
