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
    assert (
        result.exit_code == 0
        and "model.safetensors, config.json and the tokenizer" in result.output
    )
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


def _altered(exported, tmp_path, change_config=None, change_weights=None):
    """A copy of the exported folder with its config.json or its weights changed."""
    import json

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "altered"
    folder.mkdir()
    described = json.loads((exported / "config.json").read_text())
    weights = load_file(str(exported / "model.safetensors"))
    if change_config is not None:
        change_config(described)
    if change_weights is not None:
        change_weights(weights)
    (folder / "config.json").write_text(json.dumps(described))
    save_file(weights, str(folder / "model.safetensors"))
    return folder


def _set_point(at, value):
    def change(described):
        described["vocab"]["code_points"][at] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set_point(0, -5), "vocabulary entry -5 is no char symbol"),
        (_set_point(0, 0xD800 + 0x110000), "is no char symbol"),
        (_set_point(1, "a"), "vocabulary entry 'a' is no char symbol"),
        (lambda d: d["vocab"]["code_points"].__setitem__(1, d["vocab"]["code_points"][0]),
         "the vocabulary holds a symbol twice"),
        (lambda d: d["vocab"].__setitem__("code_points", list(range(2_000_000))),
         "at most one entry per character"),
    ],
)  # fmt: skip
def test_a_vocabulary_from_elsewhere_is_checked_entry_by_entry(exported, tmp_path, change, message):
    folder = _altered(exported, tmp_path, change_config=change)
    result = invoke("sample", "-c", folder)
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_non_finite_weights_are_refused_by_name(exported, tmp_path):
    def poison(weights):
        name = sorted(weights)[0]
        weights[name] = weights[name].clone()
        weights[name].view(-1)[3] = float("nan")

    folder = _altered(exported, tmp_path, change_weights=poison)
    result = invoke("sample", "-c", folder)
    assert result.exit_code == 1 and "holds non-finite weights (" in result.stderr, result.stderr


def test_an_oversized_config_is_refused_before_it_is_read(exported, tmp_path, monkeypatch):
    from charlstm import checkpoint

    monkeypatch.setattr(checkpoint, "MAX_CONFIG_BYTES", 100)
    result = invoke("sample", "-c", exported)
    assert result.exit_code == 1 and "config.json is over" in result.stderr, result.stderr
