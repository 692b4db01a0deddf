"""Which device to run on, and seeding: shared by train, sample, eval and inspect,
without importing the training loop (or TensorBoard) where only inference runs."""

from __future__ import annotations

import random

import numpy as np
import torch

from charlstm.errors import CharlstmError
from charlstm.options import check_device


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
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
