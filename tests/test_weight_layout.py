"""How a layer holds weight_ih and weight_hh in memory, and that the answers do not depend on it.

A float32 LSTM without projection holds both column-major and 64-byte aligned (``_Recurrent._held``):
torch's (4H, I) and (4H, P), as views of W_ih^T (I, 4H) and W_hh^T (P, 4H), which the compiled
products read with no transpose or copy per call (the batch-1 loop's W_hh^T, a small input side's
W_ih^T; ``nplstm._aligned``: why aligned). Whatever puts weights in must keep that, and a row-major
or misaligned weight put in by hand must still give the same results, through a copy.
"""
import numpy as np
import pytest

import nplstm
from nplstm.model import CharModel, ModelConfig
from nplstm.optim import SGD, Adam

I, H, T = 3, 5, 6              # distinct sizes; batches 1 and 4 below


HELD = ("weight_ih", "weight_hh")                     # the weights held column-major


def column_major(layer):
    return {k: v.T.flags.c_contiguous for k, v in layer.params.items() if k.startswith(HELD)}


def aligned(layer):
    return {k: v.ctypes.data % 64 == 0 for k, v in layer.params.items() if k.startswith(HELD)}


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
def test_a_float32_lstm_holds_weight_ih_and_weight_hh_column_major(make):
    layer = make()
    assert len(column_major(layer)) == 2 * layer.num_layers * layer.num_directions
    assert all(column_major(layer).values())
    assert all(aligned(layer).values())
    for k, v in layer.params.items():
        assert v.shape == layer.param_shapes()[k]
    assert all(v.flags.c_contiguous for v in layer.state_dict().values())   # what users get: torch's layout


def test_the_held_weights_are_aligned_however_they_came():
    """Twelve weight_ih and weight_hh of a 3-layer bidirectional LSTM, each 64-byte aligned (NumPy's
    own allocations are 16-byte aligned: all aligned by chance about once in 4^12): at init, frozen,
    loaded, moved and stepped."""
    lstm = nplstm.LSTM(I, H, num_layers=3, bidirectional=True, seed=0)
    for layer in (lstm, lstm.frozen(), loaded3(lstm), lstm.to("cpu"), stepped(lstm, Adam(1e-2))):
        assert len(aligned(layer)) == 12 and all(aligned(layer).values()), aligned(layer)


def loaded3(lstm):
    lstm.load_state_dict(rows_of(nplstm.LSTM(I, H, num_layers=3, bidirectional=True, seed=1).state_dict()))
    return lstm


@pytest.mark.parametrize("make", [
    lambda: nplstm.LSTM(I, H, dtype="float64", seed=0),
    lambda: nplstm.LSTM(I, H, proj_size=2, seed=0),
    lambda: nplstm.GRU(I, H, seed=0),
    lambda: nplstm.RNN(I, H, seed=0),
], ids=["float64", "proj", "gru", "rnn"])
def test_other_layers_hold_every_weight_row_major(make):
    """Their loops gather the weights' rows into the engine's order, 3-24x slower from column-major."""
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


def misaligned_columns(state):
    """Column-major copies of the held weights in ``state`` that start 16 bytes past a 64-byte boundary."""
    out = {}
    for k, v in state.items():
        if k.startswith(HELD):
            buf = np.empty(v.size + 16, np.float32)
            start = ((-buf.ctypes.data // 4) % 16 + 4) % 16
            out[k] = buf[start:start + v.size].reshape(v.shape[::-1]).T
            out[k][...] = v
            assert out[k].ctypes.data % 64 == 16 and out[k].T.flags.c_contiguous
    return out


@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("lengths", [None, "short"])
@pytest.mark.parametrize("put_in", [rows_of, misaligned_columns], ids=["row-major", "misaligned"])
def test_a_row_major_weight_gives_the_same_answers(B, lengths, put_in):
    """Forward, backward and inference with weight_ih and weight_hh put into params row-major, or
    column-major but not 64-byte aligned, by hand equal those of the layer holding them column-major
    and aligned, exactly: the same products, after one copy (or packing)."""
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
    lstm.params.update(put_in(lstm.params))
    assert not any(column_major(lstm)[k] and aligned(lstm)[k] for k in aligned(lstm))
    for k, (a, b) in enumerate(zip(run(), want)):
        np.testing.assert_array_equal(a, b, err_msg=str(k))


@pytest.mark.parametrize("put_in", [rows_of, misaligned_columns], ids=["row-major", "misaligned"])
def test_the_batch_of_one_loop_multiplies_by_an_aligned_copy(put_in):
    """What the batch-1 loop multiplies by, W_hh^T: the held weight itself (no copy) where it is
    column-major and aligned, else an aligned row-major copy of it."""
    pytest.importorskip("numba")
    from nplstm import _batchmajor, engine
    lstm = nplstm.LSTM(I, H, seed=0)
    held = lstm.params["weight_hh_l0"]
    W = _batchmajor._packed(engine.pack(*(lstm.params[k] for k in ("weight_ih_l0", "weight_hh_l0")), None, None),
                            1, True, None)[2]
    assert np.shares_memory(W, held) and W.flags.c_contiguous
    lstm.params.update(put_in(lstm.params))
    given = lstm.params["weight_hh_l0"]
    W = _batchmajor._packed(engine.pack(lstm.params["weight_ih_l0"], given, None, None), 1, True, None)[2]
    assert W.flags.c_contiguous and W.ctypes.data % 64 == 0 and not np.shares_memory(W, given)
    np.testing.assert_array_equal(W, given.T)
