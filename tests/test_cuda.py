"""The CUDA path (cuDNN kernels, bf16 autocast): runs where a GPU is, skips elsewhere."""

import math
from pathlib import Path

import pytest
import torch

from charlstm.checkpoint import load_checkpoint, load_for_inference
from charlstm.evaluate import evaluate_text
from charlstm.generate.sample import draw_texts
from charlstm.options import SampleSettings
from charlstm.training.trainer import Trainer
from tests.conftest import make_text, quiet_console, small_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def train(cfg, log_dir, resume=None) -> Trainer:
    console = quiet_console(log_dir / f"{Path(cfg.train.out_dir).name}.log")
    trainer = Trainer(cfg, resume=resume, console=console, quiet=True)
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    cfg = small_config(
        corpus, root / "run", "train.device=cuda", "train.max_steps=300", "train.precision=bf16"
    )
    train(cfg, root)
    return root / "run"


def test_trains_in_bf16_and_saves_float32_weights_that_open_on_cpu(cuda_run):
    payload = load_checkpoint(cuda_run / "checkpoints" / "best.pt")  # map_location: cpu
    weights = payload["model"].values()
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in weights)
    assert payload["best_val_loss"] < 0.45 * math.log(len(payload["vocab"]["code_points"]))


def test_gpu_and_cpu_read_the_same_weights_alike(cuda_run):
    on_cpu, saved = load_for_inference(cuda_run, "cpu")
    vocab = saved.vocab
    on_gpu, _ = load_for_inference(cuda_run, "cuda")
    text = make_text(lines=60, seed=7)
    cpu, gpu = evaluate_text(on_cpu, vocab, text), evaluate_text(on_gpu, vocab, text)
    assert gpu.loss == pytest.approx(cpu.loss, rel=2e-3)  # cuDNN may use TF32
    settings = SampleSettings(length=200, seed=3, num_samples=4)
    first, again = (draw_texts(on_gpu, vocab, "the ", settings) for _ in range(2))
    assert first == again and all(s.startswith("the ") and len(s) == 204 for s in first)


def test_resume_on_gpu_continues_the_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    common = ("train.device=cuda", "train.checkpoint_every=10", "train.decay_steps=40")
    straight = train(small_config(corpus, tmp_path / "a", "train.max_steps=40", *common), tmp_path)
    split = small_config(corpus, tmp_path / "b", "train.max_steps=20", *common)
    train(split, tmp_path)
    payload = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", map_location="cuda")
    resumed = train(
        small_config(corpus, tmp_path / "b", "train.max_steps=40", *common), tmp_path, payload
    )
    assert resumed.step == 40
    worst = max(
        (a - b).abs().max().item()
        for a, b in zip(
            straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
        )
    )
    print(f"largest weight difference, straight vs resumed on CUDA: {worst:.3g}")
    assert worst < 1e-4


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole"])
def test_every_cell_runs_on_gpu_like_on_cpu(cell, tmp_path):
    from charlstm.config import ModelConfig
    from charlstm.model import CharRNN

    torch.manual_seed(0)
    model = CharRNN(40, ModelConfig(cell=cell, hidden_size=48, num_layers=2, embedding_dim=16))
    ids = torch.randint(0, 40, (3, 50))
    cpu_logits, _ = model(ids)
    gpu_logits, state = model.cuda()(ids.cuda())
    assert (gpu_logits.cpu() - cpu_logits).abs().max() < 1e-2
    gpu_logits.float().logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_autocast_trains_as_well(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    runs = {
        precision: train(
            small_config(
                corpus, tmp_path / precision, "train.device=cuda", f"train.precision={precision}"
            ),
            tmp_path,
        )
        for precision in ("fp32", "bf16")
    }
    assert runs["fp32"].best_val_loss < 0.45 * math.log(runs["fp32"].vocab.size)
    assert runs["bf16"].best_val_loss < 1.1 * runs["fp32"].best_val_loss


def test_rng_states_saved_with_more_gpus_restore_on_fewer():
    from charlstm.checkpoint import capture_rng, restore_rng

    rng = capture_rng()
    extra = torch.cuda.device_count() + 2  # as if saved on a machine with two more GPUs
    rng["cuda"] = [rng["cuda"][0]] * extra
    torch.cuda.manual_seed_all(5)
    restore_rng(rng)
    assert torch.equal(torch.cuda.get_rng_state(0), rng["cuda"][0])
