"""Data-parallel training under torchrun: one process per device, PyTorch's own DDP.

The global `batch_size` streams are split among the ranks in contiguous blocks: rank r
owns streams [r*B/W, (r+1)*B/W) and carries their hidden state. Each rank's loss is the
mean over its own streams and DDP averages gradients, so with equal shares the update is
the single-process update. Checkpoints store the carried state of all B streams in the
single-process layout (and every rank's RNG state), so a checkpoint does not depend on
how many ranks wrote it.

Outside torchrun (`WORLD_SIZE` unset or 1) everything here is the identity, so the
trainer has one code path.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from charlstm.errors import ConfigError
from charlstm.model import State, state_from_tensors, state_tensors

T = TypeVar("T")

# A rank that stops answering (killed, hung) ends the others' collectives after this.
TIMEOUT = timedelta(minutes=10)


class Ranks:
    """This process's place among the ranks, and the few collectives training needs."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world > 1
        self._host_group = None  # None: the default group (already on the CPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group (gloo on CPU, nccl on CUDA); the device this rank uses."""
        if not self.active:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            # torchrun's store outlives a restart of the worker group, and the addresses
            # the dead group's ranks left in it would be read again: each attempt gets
            # keys of its own.
            store, rank, world = next(dist.rendezvous("env://", timeout=TIMEOUT))
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = dist.PrefixStore(f"charlstm/attempt-{attempt}", store)
            dist.init_process_group(
                backend, store=store, rank=rank, world_size=world, timeout=TIMEOUT
            )
        # Host-side flags (stop now? time up?) are agreed every step: over NCCL that
        # would copy them to the GPU and read them back, waiting for the device each
        # step. A gloo group beside it agrees on them on the CPU instead.
        if dist.get_backend() == "nccl":
            self._host_group = dist.new_group(backend="gloo")

        return device

    def stop(self, finished: bool) -> None:
        """Leave the process group. After a finished run the ranks first wait for each
        other, so none tears its connections down while a peer still uses them (a rank
        that left early could abort at exit); after an error they leave at once, since
        a failed peer would never reach the barrier."""
        if not (self.active and dist.is_initialized()):
            return
        # DDP sits in a reference cycle and holds the group: left to the collector, the
        # group's threads could be torn down while the interpreter exits, and the
        # process aborts ("terminate called without an active exception") after a run
        # that finished well. The caller has dropped its DDP wrapper; collect it now.
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()
        self._host_group = None
        gc.collect()

    def main_first(self, work: Callable[[], T]) -> T:
        """Run `work` on the main rank, then on the others: what the main rank leaves
        behind (an encoded corpus in the cache) the others then find. The main rank
        meets the others even when its work fails, so none waits for a rank that left."""
        if not self.active:
            return work()
        if self.is_main:
            try:
                return work()
            finally:
                dist.barrier()
        dist.barrier()  # collective: waits for the main rank
        return work()

    def my_streams(self, batch_size: int) -> slice:
        if batch_size % self.world:
            raise ConfigError(
                f"config: train.batch_size ({batch_size}) must be divisible by the number of "
                f"ranks ({self.world}): each rank owns an equal share of the streams"
            )
        share = batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def any(self, *flags: bool) -> list[bool]:
        """For each host-side flag: is it true on any rank? One small collective on the
        CPU for all of them; it never waits for the device."""
        values = torch.tensor([float(f) for f in flags])
        if self.active:
            dist.all_reduce(values, op=dist.ReduceOp.MAX, group=self._host_group)
        return [bool(v) for v in values.tolist()]

    def from_main(self, value: int) -> int:
        """The main rank's value of an integer, on every rank (on the CPU)."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(tensor, src=0, group=self._host_group)
        return int(tensor.item())

    def any_on_device(self, flag: torch.Tensor) -> torch.Tensor:
        """1.0 where `flag` is true on any rank, else 0.0, as a float tensor on flag's
        device; unlike `any`, the host does not wait for it."""
        value = flag.float()
        if self.active:
            value = value.to(self._collective_device())
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return value.to(flag.device)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.active:
            value = value.detach().clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world
        return value

    def gather_state(self, state: State, cell: str) -> State:
        """The carried state of all streams, in rank order (the single-process layout)."""
        if not self.active:
            return state
        gathered = []
        for part in state_tensors(state):
            pieces = [torch.empty_like(part) for _ in range(self.world)]
            dist.all_gather(pieces, part.contiguous())
            gathered.append(torch.cat(pieces, dim=1))
        return state_from_tensors(gathered, cell)

    def my_state(self, full: State, batch_size: int, cell: str) -> State:
        streams = self.my_streams(batch_size)
        return state_from_tensors([t[:, streams].contiguous() for t in state_tensors(full)], cell)

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _collective_device(self) -> torch.device:
        return (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )
