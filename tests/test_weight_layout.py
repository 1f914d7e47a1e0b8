"""How a layer holds weight_hh in memory, and that the answers do not depend on it.

A float32 LSTM without projection holds weight_hh column-major (``_Recurrent._held``): torch's
(4H, P), as a view of W_hh^T (P, 4H), which the batch-1 loop multiplies by with no transpose
per call. Whatever puts weights in must keep that, and a row-major weight_hh put in by hand must
still give the same results, through a transposed copy.
"""
import numpy as np
import pytest

import nplstm
from nplstm.model import CharModel, ModelConfig
from nplstm.optim import SGD, Adam

I, H, T = 3, 5, 6              # distinct sizes; batches 1 and 4 below


def column_major(layer):
    return {k: v.T.flags.c_contiguous for k, v in layer.params.items() if k.startswith("weight_hh")}


def rows_of(state):
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


@pytest.mark.parametrize("make", [
    lambda: nplstm.LSTM(I, H, seed=0),
    lambda: nplstm.LSTM(I, H, seed=0).frozen(),
    lambda: nplstm.LSTM(I, H, seed=0).to("cpu"),
    lambda: loaded(nplstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=0)),
    lambda: stepped(nplstm.LSTM(I, H, seed=0), Adam(1e-2)),
    lambda: stepped(nplstm.LSTM(I, H, seed=0), SGD(0.1, momentum=0.9)),
    lambda: model_loaded().recurrent,
], ids=["init", "frozen", "to", "load_state_dict", "adam", "sgd", "model"])
def test_a_float32_lstm_holds_weight_hh_column_major(make):
    layer = make()
    assert column_major(layer) and all(column_major(layer).values())
    for k, v in layer.params.items():
        assert v.shape == layer.param_shapes()[k]
    assert all(v.flags.c_contiguous for v in layer.state_dict().values())   # what users get: torch's layout


@pytest.mark.parametrize("make", [
    lambda: nplstm.LSTM(I, H, dtype="float64", seed=0),
    lambda: nplstm.LSTM(I, H, proj_size=2, seed=0),
    lambda: nplstm.GRU(I, H, seed=0),
    lambda: nplstm.RNN(I, H, seed=0),
], ids=["float64", "proj", "gru", "rnn"])
def test_other_layers_hold_every_weight_row_major(make):
    """Their loops gather weight_hh's rows into the engine's order, 3-24x slower from column-major."""
    assert all(v.flags.c_contiguous for v in make().params.values())


def loaded(lstm):
    lstm.load_state_dict(rows_of(nplstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=1).state_dict()))
    return lstm


def stepped(lstm, opt):
    out, _, cache = lstm.forward(np.ones((T, 2, I), np.float32), train=True)
    grads = lstm.backward(np.ones_like(out), cache)[2]
    for _ in range(2):
        opt.step(lstm.params, grads)
    return lstm


def model_loaded():
    model = CharModel(ModelConfig(vocab_size=7, embed=I, hidden=H), seed=0)
    model.load_params(rows_of(CharModel(ModelConfig(vocab_size=7, embed=I, hidden=H), seed=1).params))
    return model


@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("lengths", [None, "short"])
def test_a_row_major_weight_hh_gives_the_same_answers(B, lengths):
    """Forward, backward and inference with weight_hh put into params row-major by hand equal those
    of the layer holding it column-major, exactly: the same products, after one transposed copy."""
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=2)
    rng = np.random.default_rng(3)
    for v in lstm.params.values():                        # non-zero biases, saturated gates
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    G = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
    lengths = None if lengths is None else [4, T, 2, 5][:B]

    def run():
        out, (h, c), cache = lstm.forward(x, lengths=lengths, train=True)
        dx, (dh0, dc0), grads = lstm.backward(G, cache)
        return [out, h, c, dx, dh0, dc0, lstm(x, lengths=lengths)[0], *grads.values()]
    want = run()
    assert all(column_major(lstm).values())
    lstm.params.update(rows_of(lstm.params))
    assert not any(column_major(lstm).values())
    for k, (a, b) in enumerate(zip(run(), want)):
        np.testing.assert_array_equal(a, b, err_msg=str(k))
