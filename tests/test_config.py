from pathlib import Path

import pytest

from charlstm.config import Config, load_config
from charlstm.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_valid_and_round_trip():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_yaml_then_overrides_typed_by_field(tmp_path):
    path = write(tmp_path, "model:\n  hidden_size: 32\ntrain:\n  lr: 2e-3\n  max_steps: null\n")
    cfg = load_config(
        path,
        [
            "train.batch_size=4",
            "model.tie_weights=false",
            "data.include=['*.py', '*.md']",
            "train.max_seconds=1.5",
            "data.path=123",
        ],
    )
    assert cfg.model.hidden_size == 32
    assert cfg.train.lr == pytest.approx(2e-3)  # YAML 1.1 reads 2e-3 as a string
    assert cfg.train.max_steps is None
    assert cfg.train.batch_size == 4 and isinstance(cfg.train.batch_size, int)
    assert cfg.data.include == ("*.py", "*.md")
    assert cfg.data.path == "123"  # strings stay verbatim
    assert cfg.train.max_seconds == 1.5


def test_later_override_wins():
    cfg = Config.from_dict({}, ["train.lr=1e-3", "train.lr=5e-4"])
    assert cfg.train.lr == pytest.approx(5e-4)


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("train.lrr=1", "train.lr"),
        ("model.hidden=3", "model.hidden_size"),
        ("trian.bptt=3", "train.bptt"),
    ],
)
def test_unknown_key_suggests_closest(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        Config.from_dict({}, [override])


def test_unknown_key_in_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'model.num_layer'.*'model.num_layers'"):
        load_config(write(tmp_path, "model:\n  num_layer: 2\n"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.hidden_size=0", "model.hidden_size must be > 0"),
        ("model.num_layers=0", "model.num_layers must be >= 1"),
        ("model.dropout=1", r"model.dropout must be in \[0, 1\)"),
        ("model.dropout=-0.1", r"model.dropout must be in \[0, 1\)"),
        ("train.bptt=0", "train.bptt must be >= 1"),
        ("train.batch_size=0", "train.batch_size must be >= 1"),
        ("data.val_fraction=0", r"data.val_fraction must be in \(0, 1\)"),
        ("data.val_fraction=1", r"data.val_fraction must be in \(0, 1\)"),
        ("train.lr=0", "train.lr must be > 0"),
        ("train.lr=-1", "train.lr must be > 0"),
        ("model.cell=transformer", "model.cell must be one of lstm, gru, rnn"),
        ("train.device=tpu", "train.device must be auto, cpu, cuda, cuda:N or mps"),
        ("data.vocab=word", "data.vocab must be one of char, byte"),
    ],
)
def test_out_of_range_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({}, [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=abc", "train.batch_size must be an integer"),
        ("train.batch_size=2.5", "train.batch_size must be an integer"),
        ("train.lr=fast", "train.lr must be a number"),
        ("model.tie_weights=maybe", "model.tie_weights must be true or false"),
        ("train.max_steps=true", "train.max_steps must be an integer"),
        ("data.include=3", "data.include must be a list of strings"),
    ],
)
def test_wrong_types_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({}, [override])


def test_tie_weights_needs_matching_sizes():
    with pytest.raises(
        ConfigError, match="tie_weights needs model.embedding_dim == model.hidden_size"
    ):
        Config.from_dict(
            {}, ["model.tie_weights=true", "model.embedding_dim=8", "model.hidden_size=16"]
        )
    cfg = Config.from_dict(
        {}, ["model.tie_weights=true", "model.embedding_dim=16", "model.hidden_size=16"]
    )
    assert cfg.model.tie_weights


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML in .*c.yaml at line 3"):
        load_config(write(tmp_path, "model:\n  hidden_size: [1,\n"))


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "model: 3\n", "nonsense: {}\n"])
def test_wrong_shapes_are_config_errors(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))


def test_malformed_override():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        Config.from_dict({}, ["train.lr"])


def test_shipped_configs_are_valid():
    for path in sorted(Path(__file__).parent.parent.glob("configs/*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# charlstm train --config configs/"), path
        load_config(path)


def test_the_docs_config_reference_is_the_one_the_code_describes():
    """Each key's help lives on its dataclass field; the docs' table is made from it
    (`python -m charlstm.config`), so the two cannot drift apart."""
    from charlstm.config import all_keys, reference_table

    page = Path(__file__).parent.parent / "docs" / "pages" / "config.md"
    readme = page.read_text(encoding="utf-8")
    start = readme.index("<!-- config reference:")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- end of config reference -->")
    assert readme[start:end] == reference_table(), "run: python -m charlstm.config"
    assert len(reference_table().splitlines()) == 2 + len(all_keys())
