"""Bad input to nplstm.LSTM: one table; each case raises with a message naming the argument."""
import numpy as np
import pytest

import nplstm

I, H, B, T = 3, 5, 4, 6


def lstm(**kw):
    return nplstm.LSTM(I, H, seed=0, **kw)


X = np.zeros((T, B, I), np.float32)

CASES = [
    ("x feature size", lambda: lstm()(np.zeros((T, B, 4))), ValueError, ["x", "3 features", "(6, 4, 4)"]),
    ("x rank 4", lambda: lstm()(np.zeros((T, B, I, 1))), ValueError, ["x", "4-D"]),
    ("x int", lambda: lstm()(np.zeros((T, B, I), int)), TypeError, ["x", "int64"]),
    ("x empty batch", lambda: lstm()(np.zeros((T, 0, I))), ValueError, ["x", "B", "empty"]),
    ("x empty time", lambda: lstm()(np.zeros((0, B, I))), ValueError, ["x", "T", "empty"]),
    ("x strings", lambda: lstm()([["a"]]), TypeError, ["x", "<U1"]),
    ("h0 shape", lambda: lstm()(X, (np.zeros((1, B, 4)), np.zeros((1, B, H)))), ValueError, ["h0", "(1, 4, 5)", "(1, 4, 4)"]),
    ("c0 shape layers", lambda: lstm(num_layers=2)(X, (np.zeros((2, B, H)), np.zeros((1, B, H)))), ValueError, ["c0", "(2, 4, 5)"]),
    ("h0 with proj", lambda: lstm(proj_size=2)(X, (np.zeros((1, B, H)), np.zeros((1, B, H)))), ValueError, ["h0", "(1, 4, 2)"]),
    ("hx not tuple", lambda: lstm()(X, np.zeros((1, B, H))), TypeError, ["hx", "(h0, c0)"]),
    ("lengths float", lambda: lstm()(X, lengths=[6.0, 2.0, 3.0, 1.0]), TypeError, ["lengths", "integers", "float64"]),
    ("lengths too long", lambda: lstm()(X, lengths=[7, 2, 3, 1]), ValueError, ["lengths", "[1, T=6]", "7"]),
    ("lengths zero", lambda: lstm()(X, lengths=[0, 2, 3, 1]), ValueError, ["lengths", "0"]),
    ("lengths count", lambda: lstm()(X, lengths=[6, 2]), ValueError, ["lengths", "(4,)", "(2,)"]),
    ("backward bad cache", lambda: lstm().backward(X, None), TypeError, ["cache", "train=True"]),
    ("backward d_output shape", lambda: lstm().backward(np.zeros((T, B, 4)), lstm().forward(X, train=True)[2]), ValueError, ["d_output", "(6, 4, 5)"]),
    ("backward dh_n shape", lambda: lstm().backward(np.zeros((T, B, H)), lstm().forward(X, train=True)[2], (np.zeros((B, H)), None)), ValueError, ["dh_n", "(1, 4, 5)", "(4, 5)"]),
    ("load missing", lambda: lstm().load_state_dict({}), ValueError, ["missing", "'weight_ih_l0'", "(20, 3)"]),
    ("load unexpected", lambda: lstm().load_state_dict({**lstm().state_dict(), "foo": np.zeros(1)}), ValueError, ["unexpected", "'foo'"]),
    ("load shape", lambda: lstm().load_state_dict({**lstm().state_dict(), "bias_hh_l0": np.zeros(5)}), ValueError, ["'bias_hh_l0'", "(5,)", "(20,)"]),
    ("load NaN", lambda: lstm().load_state_dict({**lstm().state_dict(), "weight_hh_l0": np.full((20, 5), np.nan)}), ValueError, ["'weight_hh_l0'", "NaN"]),
    ("load int", lambda: lstm().load_state_dict({**lstm().state_dict(), "bias_ih_l0": np.zeros(20, int)}), ValueError, ["'bias_ih_l0'", "int64"]),
    ("hidden size 0", lambda: nplstm.LSTM(3, 0), ValueError, ["hidden_size", ">= 1"]),
    ("input size float", lambda: nplstm.LSTM(3.5, 5), TypeError, ["input_size", "int"]),
    ("proj too big", lambda: nplstm.LSTM(3, 5, proj_size=5), ValueError, ["proj_size", "hidden_size=5"]),
    ("dropout 1", lambda: nplstm.LSTM(3, 5, dropout=1.0), ValueError, ["dropout", "[0, 1)"]),
    ("dtype int", lambda: nplstm.LSTM(3, 5, dtype="int32"), TypeError, ["dtype", "'int32'"]),
    ("dtype float16", lambda: nplstm.LSTM(3, 5, dtype=np.float16), TypeError, ["dtype", "float16"]),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_load_state_dict_reports_every_problem_and_changes_nothing():
    layer = lstm()
    before = layer.state_dict()
    bad = {**before, "bias_hh_l0": np.zeros(5), "extra": np.zeros(1)}
    del bad["weight_ih_l0"]
    with pytest.raises(ValueError) as info:
        layer.load_state_dict(bad)
    assert all(w in str(info.value) for w in ("weight_ih_l0", "bias_hh_l0", "extra"))
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
