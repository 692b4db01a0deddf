"""Checkpoint files: atomic writes, safe reads, one format version.

A checkpoint is one dict of tensors and plain values (never pickled code):
    format, format_version, model, optimizer, step, position, state (carried hidden
    state), rng, vocab, config, best_val_loss
It is written to `name.tmp` in the same folder, flushed, fsynced and renamed, so a crash
leaves either the old file or the new one under the real name, never half of one. It is
read with `weights_only=True`, so opening a file can never run code.
"""

from __future__ import annotations

import os
import pickle
import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charlstm.config import Config
from charlstm.errors import CharlstmError, CheckpointError
from charlstm.model import CharRNN
from charlstm.vocab import Vocab

FORMAT = "charlstm-checkpoint"
FORMAT_VERSION = 1
LAST, BEST = "last.pt", "best.pt"


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (OSError, RuntimeError) as err:  # a full disk can surface as either
        tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise CheckpointError(
            f"could not write checkpoint {path}: {str(reason).splitlines()[0]}; "
            "the previous checkpoint (if any) is intact"
        ) from None


def host_copy(obj: Any) -> Any:
    """A copy of a payload whose tensors are new CPU tensors: what training goes on to
    change in place (weights, optimizer moments) stays as it was at the save."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: host_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(host_copy(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints on a background thread, so training goes on while the disk
    catches up (the fsync of a large checkpoint takes most of a second; measured in
    bench/RESULTS.md). Each write is still atomic and they happen in order. A failed
    write is raised by the next call to `write` or `wait`, and its file is left as it was.
    At most two writes wait at a time (best.pt and last.pt of one step): a third waits for
    the oldest, which bounds the host memory held by copies."""

    MAX_PENDING = 2

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: list[Future] = []

    def write(self, path: Path, payload: dict[str, Any]) -> None:
        self._collect(keep=self.MAX_PENDING - 1)
        self._pending.append(self._pool.submit(save_checkpoint, path, host_copy(payload)))

    def wait(self) -> None:
        """Until every write is on disk; raises the first that failed."""
        self._collect(keep=0)

    def close(self) -> None:
        """Finish the writes without raising (for cleanup while an error propagates)."""
        for future in self._pending:
            future.exception()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def _collect(self, keep: int) -> None:
        while len(self._pending) > keep or (self._pending and self._pending[0].done()):
            self._pending.pop(0).result()


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, never essential.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; tensors land on `map_location` (GPU files load on CPU)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"  # torch.save's format is a zip archive
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror}") from None
    if not is_zip:
        raise CheckpointError(f"cannot read {path}: not a checkpoint (not a torch.save file)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise CheckpointError(
                f"refused {path}: it holds objects other than tensors and plain values, "
                "and loading it could run code"
            ) from None
        raise CheckpointError(f"cannot read {path}: corrupt or not a checkpoint") from None
    except Exception as err:  # a damaged file can fail in any layer: zip, pickle, storage
        raise CheckpointError(
            f"cannot read {path}: truncated, corrupt or not a checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a charlstm checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this charlstm reads version "
            f"{FORMAT_VERSION}"
        )
    return payload


def resolve_checkpoint(path: Path | None, runs_dir: Path = Path("runs")) -> Path:
    """A checkpoint file, a run folder (its best.pt, else last.pt), or None: the newest run."""
    if path is None:
        candidates = sorted(runs_dir.glob(f"*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise CheckpointError(
                f"no checkpoint given and no runs under {runs_dir}/ (pass --checkpoint)"
            )
        path = candidates[-1].parent.parent
    if path.is_dir():
        for folder in (checkpoint_dir(path), path):
            for name in (BEST, LAST):
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(f"no {BEST} or {LAST} in {path} or {checkpoint_dir(path)}")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def inference_weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to run a checkpoint with: the average of the weights (`train.ema`)
    when training kept one, else the weights themselves."""
    return payload.get("averaged_model") or payload["model"]


def restore_model(payload: dict[str, Any], device: str | torch.device = "cpu"):
    """The model (eval mode), vocabulary and config stored in a checkpoint."""
    try:
        config = Config.from_dict(payload["config"])
        vocab = Vocab.from_dict(payload["vocab"])
        model = CharRNN(vocab.size, config.model)
        model.load_state_dict(inference_weights(payload))
    except CharlstmError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint is damaged or inconsistent ({type(err).__name__})"
        ) from None
    return model.to(device).eval(), vocab, config


def load_for_inference(path: Path | None, device: str | torch.device = "cpu"):
    """Resolve, read and restore a checkpoint: (model, vocab, config, payload)."""
    payload = load_checkpoint(resolve_checkpoint(path), map_location=device)
    return (*restore_model(payload, device), payload)


def capture_rng() -> dict[str, Any]:
    """Every random state training touches, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of capture_rng, wherever the payload was loaded to (map_location may have
    put its tensors on a GPU)."""
    torch.set_rng_state(rng["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in rng and torch.cuda.is_available():
        # Saved on a machine with more GPUs (or fewer): the GPUs both have get theirs.
        for index, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.cpu(), index)
