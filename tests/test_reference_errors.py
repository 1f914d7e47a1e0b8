"""Bad input to the reference API: one table, each case must raise with a message naming the argument."""
import numpy as np
import pytest

from nplstm import reference as ref

N_X, N_A, N_Y, M, T = 3, 5, 2, 4, 6


def good():
    rng = np.random.default_rng(0)
    p = ref.initialize_parameters(N_X, N_A, N_Y, seed=0)
    return dict(p=p, x=rng.standard_normal((N_X, M, T)), a0=rng.standard_normal((N_A, M)),
                c=rng.standard_normal((N_A, M)))


def without(p, key):
    return {k: v for k, v in p.items() if k != key}


def replaced(p, key, value):
    return {**p, key: value}


# (id, call, exception, words the message must contain)
CASES = [
    ("x rank 2", lambda g: ref.lstm_forward(g["x"][:, :, 0], g["a0"], g["p"]), ValueError, ["x", "3-D", "(3, 4)"]),
    ("x int", lambda g: ref.lstm_forward(g["x"].astype(int), g["a0"], g["p"]), TypeError, ["x", "int64"]),
    ("x empty batch", lambda g: ref.lstm_forward(g["x"][:, :0], g["a0"][:, :0], g["p"]), ValueError, ["x", "m", "empty"]),
    ("x empty time", lambda g: ref.lstm_forward(g["x"][:, :, :0], g["a0"], g["p"]), ValueError, ["x", "T_x", "empty"]),
    ("x wrong n_x", lambda g: ref.lstm_forward(g["x"][:2], g["a0"], g["p"]), ValueError, ["Wf", "(5, 7)", "(5, 8)"]),
    ("a0 wrong m", lambda g: ref.lstm_forward(g["x"], g["a0"][:, :3], g["p"]), ValueError, ["a0", "(5, 4)", "(5, 3)"]),
    ("a0 float32", lambda g: ref.lstm_forward(g["x"], g["a0"].astype(np.float32), g["p"]), TypeError, ["a0", "float32", "float64"]),
    ("c0 wrong shape", lambda g: ref.lstm_forward(g["x"], g["a0"], g["p"], c0=g["c"].T), ValueError, ["c0", "(5, 4)"]),
    ("missing key", lambda g: ref.lstm_forward(g["x"], g["a0"], without(g["p"], "Wc")), ValueError, ["'Wc'", "missing"]),
    ("missing Wy", lambda g: ref.lstm_cell_forward(g["x"][:, :, 0], g["a0"], g["c"], without(g["p"], "Wy")), ValueError, ["'Wy'"]),
    ("params not dict", lambda g: ref.lstm_forward(g["x"], g["a0"], [1, 2]), TypeError, ["parameters", "dict", "list"]),
    ("inconsistent n_a", lambda g: ref.lstm_forward(g["x"], g["a0"], replaced(g["p"], "Wo", np.ones((6, 9)))), ValueError, ["Wo", "n_a=5", "(6, 9)"]),
    ("bias as seed docstring", lambda g: ref.lstm_forward(g["x"], g["a0"], replaced(g["p"], "bc", np.ones((5, 8)))), ValueError, ["bc", "(5, 1)", "(5, 8)"]),
    ("bias 1-D", lambda g: ref.lstm_forward(g["x"], g["a0"], replaced(g["p"], "bf", np.ones(5))), ValueError, ["bf", "2-D"]),
    ("Wy wrong n_a", lambda g: ref.lstm_forward(g["x"], g["a0"], replaced(g["p"], "Wy", np.ones((2, 4)))), ValueError, ["Wy", "(2, 4)"]),
    ("int weights", lambda g: ref.lstm_forward(g["x"], g["a0"], replaced(g["p"], "Wi", np.ones((5, 8), int))), TypeError, ["Wi", "int64"]),
    ("mixed param dtypes", lambda g: ref.lstm_forward(g["x"], g["a0"], replaced(g["p"], "bi", np.ones((5, 1), np.float32))), TypeError, ["bi", "float32"]),
    ("cell xt rank", lambda g: ref.lstm_cell_forward(g["x"], g["a0"], g["c"], g["p"]), ValueError, ["xt", "2-D"]),
    ("cell c_prev shape", lambda g: ref.lstm_cell_forward(g["x"][:, :, 0], g["a0"], g["c"][:4], g["p"]), ValueError, ["c_prev", "(5, 4)", "(4, 4)"]),
    ("cell bwd bad cache", lambda g: ref.lstm_cell_backward(g["a0"], g["c"], (1, 2)), TypeError, ["cache", "10-tuple", "length 2"]),
    ("cell bwd da shape", lambda g: ref.lstm_cell_backward(g["a0"][:2], g["c"],
                                                           ref.lstm_cell_forward(g["x"][:, :, 0], g["a0"], g["c"], g["p"])[3]), ValueError, ["da_next", "(5, 4)"]),
    ("bwd bad caches", lambda g: ref.lstm_backward(np.zeros((5, 4, 6)), [1]), TypeError, ["caches", "lstm_forward"]),
    ("bwd da shape", lambda g: ref.lstm_backward(np.zeros((5, 4, 5)), ref.lstm_forward(g["x"], g["a0"], g["p"])[3]), ValueError, ["da", "(5, 4, 6)", "(5, 4, 5)"]),
    ("bwd da int", lambda g: ref.lstm_backward(np.zeros((5, 4, 6), int), ref.lstm_forward(g["x"], g["a0"], g["p"])[3]), TypeError, ["da", "int64"]),
    ("bwd dc_final shape", lambda g: ref.lstm_backward(np.zeros((5, 4, 6)), ref.lstm_forward(g["x"], g["a0"], g["p"])[3], dc_final=np.zeros(5)), ValueError, ["dc_final", "2-D"]),
    ("loss Y shape", lambda g: ref.softmax_cross_entropy(np.zeros((5, 4, 6)), np.zeros((6, 4), int), g["p"]), ValueError, ["Y", "(4, 6)", "(6, 4)"]),
    ("loss Y range", lambda g: ref.softmax_cross_entropy(np.zeros((5, 4, 6)), np.full((4, 6), 2), g["p"]), ValueError, ["Y", "[0, 2)"]),
    ("loss Y str", lambda g: ref.softmax_cross_entropy(np.zeros((5, 4, 6)), np.full((4, 6), "a"), g["p"]), TypeError, ["Y", "<U1"]),
    ("loss mask shape", lambda g: ref.softmax_cross_entropy(np.zeros((5, 4, 6)), np.zeros((4, 6), int), g["p"], mask=np.ones(4)), ValueError, ["mask", "(4, 6)"]),
    ("loss a mismatched Wy", lambda g: ref.softmax_cross_entropy(np.zeros((3, 4, 6)), np.zeros((4, 6), int), g["p"]), ValueError, ["Wy", "n_a=3"]),
    ("init sizes", lambda g: ref.initialize_parameters(3, 0, 2), ValueError, ["n_a", ">= 1", "0"]),
    ("init float size", lambda g: ref.initialize_parameters(3.0, 5, 2), TypeError, ["n_x", "int", "float"]),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(call, exc, words):
    with pytest.raises(exc) as info:
        call(good())
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
