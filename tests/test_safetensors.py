"""A model to share: safetensors beside config.json, opened by every command and by
charlstm.load as a run folder is, with the same text and numbers as its checkpoint."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app

safetensors = pytest.importorskip("safetensors.torch")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared") / "model"
    result = invoke("export", "-c", trained_run, "--format", "safetensors", "--out", folder)
    assert result.exit_code == 0 and "model.safetensors and config.json" in result.output
    return folder


def test_the_folder_is_the_ecosystems_layout(exported, trained_run):
    weights = safetensors.load_file(str(exported / "model.safetensors"))
    model = charlstm.load(trained_run)
    assert set(weights) == set(model.net.state_dict())
    described = json.loads((exported / "config.json").read_text())
    assert described["config"]["model"]["cell"] == "lstm" and described["step"] == model.step
    assert described["vocab"] == model.vocab.to_dict()


def test_every_command_gives_what_the_checkpoint_gives(exported, trained_run):
    args = ["--prime", "the ", "--length", 60, "--seed", 4]
    assert (
        invoke("sample", "-c", exported, *args).output
        == invoke("sample", "-c", trained_run, *args).output
    )
    text = (trained_run.parent / "corpus.txt").read_text()[:3000]
    assert charlstm.load(exported).score(text).loss == charlstm.load(trained_run).score(text).loss
    info = invoke("info", "-c", exported)
    assert info.exit_code == 0 and "step: 300" in info.output


def test_a_damaged_folder_is_one_line(exported, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    (broken / "config.json").write_text("{not json")
    result = invoke("sample", "-c", broken)
    assert result.exit_code == 1 and "is not a charlstm model in safetensors" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
