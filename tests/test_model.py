import pytest
import torch

from charlstm.config import ModelConfig
from charlstm.model import CharRNN, detach_state
from charlstm.peephole import PeepholeLSTM


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole"])
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


def test_peephole_without_peepholes_is_nn_lstm_and_learns_with_them():
    torch.manual_seed(0)
    peephole, lstm = PeepholeLSTM(5, 7, 2), torch.nn.LSTM(5, 7, 2, batch_first=True)
    with torch.no_grad():
        for name, weight in peephole.named_parameters():
            weight.copy_(getattr(lstm, name) if hasattr(lstm, name) else torch.zeros_like(weight))
    x = torch.randn(3, 11, 5)
    (out, (h, c)), (ref, (ref_h, ref_c)) = peephole(x), lstm(x)
    for mine, theirs in ((out, ref), (h, ref_h), (c, ref_c)):
        assert torch.allclose(mine, theirs, atol=1e-6)
    out.sum().backward()
    assert all(peephole.get_parameter(f"peephole_{g}_l0").grad.abs().sum() > 0 for g in "ifo")
