import pytest
import torch

from charlstm.config import ModelConfig
from charlstm.model import CharRNN, detach_state


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_shapes_and_carried_state(cell):
    model = CharRNN(
        30, ModelConfig(cell=cell, embedding_dim=8, hidden_size=16, num_layers=3, dropout=0.1)
    )
    ids = torch.randint(0, 30, (4, 7))
    logits, state = model(ids, model.init_state(4, "cpu"))
    assert logits.shape == (4, 7, 30)
    for s in state if isinstance(state, tuple) else (state,):
        assert s.shape == (3, 4, 16)
    # two windows with the state carried equal one long window (eval mode: no dropout)
    model.eval()
    whole, _ = model(ids)
    first, mid = model(ids[:, :3])
    second, _ = model(ids[:, 3:], detach_state(mid))
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)


def test_tied_weights_share_storage():
    model = CharRNN(20, ModelConfig(embedding_dim=16, hidden_size=16, tie_weights=True))
    assert model.decoder.weight is model.embedding.weight
    untied = CharRNN(20, ModelConfig(embedding_dim=16, hidden_size=16))
    assert model.num_parameters() == untied.num_parameters() - 20 * 16
