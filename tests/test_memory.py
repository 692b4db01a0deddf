"""Sizes that cannot fit are refused in one line, before anything is allocated."""

import re

import pytest
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.errors import ConfigError
from charlstm.memory import check_scoring_fits, parameter_count
from charlstm.model import CharRNN
from tests.conftest import small_config


@pytest.mark.parametrize(
    "model",
    [
        ModelConfig(),
        ModelConfig(cell="gru", num_layers=3, hidden_size=40, embedding_dim=12),
        ModelConfig(cell="rnn", num_layers=1, hidden_size=7, embedding_dim=5),
        ModelConfig(cell="peephole", num_layers=2, hidden_size=9, embedding_dim=4),
        ModelConfig(hidden_size=32, embedding_dim=32, tie_weights=True),
    ],
)
def test_the_parameter_count_is_exact_without_building_the_model(model):
    assert parameter_count(71, model) == CharRNN(71, model).num_parameters()


def test_a_model_too_large_for_the_machine_is_one_line(corpus_file, tmp_path):
    cfg = small_config(corpus_file, tmp_path / "run", "model.hidden_size=1000000000")
    sets = [a for k, v in _flat(cfg) for a in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(app, ["train", *sets])
    assert result.exit_code == 1
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.output
    assert re.search(r"a 2x1000000000 lstm over \d+ symbols has [\d,]{25,} parameters", line)
    assert "needs about" in line and "free: lower model.hidden_size" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_scoring_settings_too_large_are_one_line():
    with pytest.raises(
        ConfigError, match=r"scoring 1000000 streams x 1000000 characters .* lower --streams"
    ):
        check_scoring_fits(50, ModelConfig(), 10**6, 10**6, "cpu")
    check_scoring_fits(50, ModelConfig(), 16, 512, "cpu")  # the defaults fit anywhere


def _flat(cfg):
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            if value is not None and not isinstance(value, list):
                yield f"{section}.{key}", value
