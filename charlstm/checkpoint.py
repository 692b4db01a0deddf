"""Checkpoint files: one typed schema, atomic writes, safe reads.

A checkpoint is one dict of tensors and plain values (never pickled code), whose fields
are those of `Checkpoint` below plus `format` and `format_version`: adding a field is one
edit there. It is written to `name.tmp` in the same folder, flushed, fsynced and renamed, so a crash
leaves either the old file or the new one under the real name, never half of one. It is
read with `weights_only=True`, so opening a file can never run code.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from charlstm.config import Config
from charlstm.data.vocab import Vocab
from charlstm.errors import CheckpointError, ConfigError
from charlstm.model import CharRNN
from charlstm.rundir import BEST, LAST, SAFETENSORS, SAFETENSORS_CONFIG, RunDir

FORMAT = "charlstm-checkpoint"
# 2: every field always present; `rng` (rank 0's random states) is rank_rngs[0] alone.
# 1: the fields added during version 1 (averaged_model, rank_rngs, corpus_key,
#    last_val_loss, schedule_steps) may be missing; `_from_version_1` says what they were.
# 3: `history` (every validation), `lr_scale` and `rollbacks` (training/guard.py);
#    train.max_nonfinite gave way to train.max_rollbacks.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass
class Checkpoint:
    """Everything one checkpoint file holds."""

    config: Config  # the resolved config the run trained with
    vocab: Vocab
    model: dict[str, torch.Tensor]  # the weights training goes on from
    step: int = 0  # optimizer steps taken; the schedule and the data position follow from it
    optimizer: dict[str, Any] | None = None
    # train.ema's average of the weights (what validation, best.pt and inference use)
    averaged_model: dict[str, torch.Tensor] | None = None
    state: list[torch.Tensor] = field(default_factory=list)  # carried state, every stream
    # each rank's random states (torch, numpy, python, cuda), rank 0 first
    rank_rngs: list[dict[str, Any]] = field(default_factory=list)
    corpus_key: str | None = None  # the corpus it trained on (corpus.py's cache key)
    best_val_loss: float = math.inf
    last_val_loss: float = math.nan
    elapsed_seconds: float = 0.0  # training time behind it, over every resumed run
    schedule_steps: int | None = None  # the step count fitted to train.max_seconds
    # [step, training loss, validation loss] of every validation so far (patience and
    # the end-of-run diagnosis read it)
    history: list[list[float]] = field(default_factory=list)
    lr_scale: float = 1.0  # what roll-backs left of the scheduled rate
    rollbacks: int = 0

    @property
    def inference_weights(self) -> dict[str, torch.Tensor]:
        """The weights to run it with: the average of the weights (`train.ema`) when
        training kept one, else the weights themselves."""
        return self.averaged_model if self.averaged_model is not None else self.model

    def to_payload(self) -> dict[str, Any]:
        stored = {f.name: getattr(self, f.name) for f in fields(self)}
        stored.update(config=self.config.to_dict(), vocab=self.vocab.to_dict())
        return stored  # save_checkpoint stamps the format and its version

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: Any = "checkpoint") -> Checkpoint:
        """The checkpoint a payload of any readable version holds; `source` names it in
        errors."""
        try:
            if payload.get("format_version") == 1:
                payload = _from_version_1(payload)
            if payload.get("format_version") in (1, 2):
                payload = _from_version_2(payload)
            stored = {f.name: payload[f.name] for f in fields(cls)}
            stored.update(
                config=Config.from_dict(payload["config"]),
                vocab=Vocab.from_dict(payload["vocab"]),
            )
            return cls(**stored)
        except ConfigError as error:
            raise CheckpointError(
                f"{source} holds a config this charlstm rejects: {error}"
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(
                f"{source} is damaged or inconsistent ({type(error).__name__}: {error})"
            ) from None


def _from_version_1(payload: dict[str, Any]) -> dict[str, Any]:
    """A version 1 payload in version 2's shape: what an absent field meant then."""
    return {
        "averaged_model": None,  # no average kept
        "corpus_key": None,  # not recorded: a resume cannot check the corpus
        "last_val_loss": math.nan,
        "schedule_steps": None,  # no time budget fitted
        **payload,
        "rank_rngs": payload.get("rank_rngs") or [payload["rng"]],  # one process
    }


def _from_version_2(payload: dict[str, Any]) -> dict[str, Any]:
    """A version 2 payload in version 3's shape: no validations recorded, no roll-back."""
    config = {**payload["config"], "train": dict(payload["config"].get("train", {}))}
    config["train"].pop("max_nonfinite", None)  # a skip then; a roll-back now
    return {"history": [], "lr_scale": 1.0, "rollbacks": 0, **payload, "config": config}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a payload (Checkpoint.to_payload) atomically, stamped with the format."""
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
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this charlstm reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    return payload


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """A checkpoint file (or an exported model.safetensors), read safely and typed."""
    if path.name == SAFETENSORS:
        return read_safetensors(path.parent, map_location)
    return Checkpoint.from_payload(load_checkpoint(path, map_location), path)


# -- the exchange format: safetensors (no code runs on load; every language reads it) --
SAFETENSORS_FORMAT = 1


def write_safetensors(folder: Path, saved: Checkpoint) -> int:
    """The checkpoint's inference weights as folder/model.safetensors, and beside it
    config.json with what inference needs: the model settings, the vocabulary, the
    step, the best validation loss (the layout of Hugging Face's PyTorchModelHubMixin).
    Returns the bytes written."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = saved.inference_weights
    tensors = {name: t.detach().float().contiguous().cpu() for name, t in weights.items()}
    save_file(tensors, str(folder / SAFETENSORS), metadata={"format": "pt"})
    best = saved.best_val_loss
    described = {
        "charlstm_format": SAFETENSORS_FORMAT,
        "config": saved.config.to_dict(),
        "vocab": saved.vocab.to_dict(),
        "step": saved.step,
        "best_val_loss": best if math.isfinite(best) else None,
        "corpus_key": saved.corpus_key,
    }
    (folder / SAFETENSORS_CONFIG).write_text(json.dumps(described, indent=1), encoding="utf-8")
    return sum(f.stat().st_size for f in (folder / SAFETENSORS, folder / SAFETENSORS_CONFIG))


# config.json holds a config and a vocabulary: kilobytes, a megabyte with a large one.
MAX_CONFIG_BYTES = 64 << 20


def read_safetensors(folder: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """An exported model as a Checkpoint that holds its weights (and no training state)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        described_file = folder / SAFETENSORS_CONFIG
        if described_file.stat().st_size > MAX_CONFIG_BYTES:  # before it is read
            raise ValueError(f"{SAFETENSORS_CONFIG} is over {MAX_CONFIG_BYTES >> 20} MB")
        described = json.loads(described_file.read_text(encoding="utf-8"))
        if described.get("charlstm_format") != SAFETENSORS_FORMAT:
            raise ValueError(f"charlstm_format {described.get('charlstm_format')!r}")
        weights = load_file(str(folder / SAFETENSORS), device=str(map_location))
        best = described.get("best_val_loss")
        return Checkpoint(
            config=Config.from_dict(described["config"]),
            vocab=Vocab.from_dict(described["vocab"]),
            model=weights,
            step=int(described.get("step", 0)),
            corpus_key=described.get("corpus_key"),
            best_val_loss=math.inf if best is None else float(best),
        )
    except OSError as err:
        raise CheckpointError(
            f"{folder}: cannot read the exported model ({err.strerror})"
        ) from None
    except (ValueError, KeyError, TypeError, SafetensorError, ConfigError) as err:
        raise CheckpointError(
            f"{folder} is not a charlstm model in safetensors ({type(err).__name__}: {err})"
        ) from None


def resolve_checkpoint(path: Path | None, runs_dir: Path = Path("runs")) -> Path:
    """A checkpoint file, a run folder (its best.pt, else last.pt), or None: the newest run."""
    if path is None:
        newest = RunDir.newest(runs_dir)
        if newest is None:
            raise CheckpointError(
                f"no checkpoint given and no runs under {runs_dir}/ (pass --checkpoint)"
            )
        path = newest.root
    if path.is_dir():
        run = RunDir(path)
        found = run.for_inference()
        if found is None:
            raise CheckpointError(f"no {BEST} or {LAST} in {path} or {run.checkpoints}")
        return found
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def restore_model(saved: Checkpoint, device: str | torch.device = "cpu") -> CharRNN:
    """The model a checkpoint holds, with its inference weights, in eval mode."""
    weights = saved.inference_weights
    for name, tensor in weights.items():  # NaN weights would write nonsense, silently
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not tensor.isfinite().all():
            raise CheckpointError(f"checkpoint holds non-finite weights ({name}): it cannot run")
    try:
        model = CharRNN(saved.vocab.size, saved.config.model)
        model.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        detail = " ".join(str(err).split())[:300]  # load_state_dict names keys and shapes
        raise CheckpointError(
            f"checkpoint is damaged or inconsistent ({type(err).__name__}: {detail})"
        ) from None
    return model.to(device).eval()


class Trained(Protocol):
    """What the inspector and the exporters need of a trained model (charlstm.Model has
    it): the network, its vocabulary, the config it was trained with and its step. They
    take this, not the API's Model, so the layers below the API never name it."""

    net: CharRNN
    vocab: Vocab
    config: Config
    step: int


def load_for_inference(path: Path | None, device: str | torch.device = "cpu"):
    """Resolve, read and restore a checkpoint: (model, Checkpoint)."""
    saved = read_checkpoint(resolve_checkpoint(path), map_location=device)
    return restore_model(saved, device), saved


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
