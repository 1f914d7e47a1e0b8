"""The course's basic RNN in nplstm.reference: finite differences, torch, and bad input."""
import numpy as np
import pytest

from nplstm import reference as ref
from nplstm.gradcheck import gradcheck

N_X, N_A, N_Y, M, T = 3, 5, 7, 4, 6


def problem(seed=0):
    rng = np.random.default_rng(seed)
    p = ref.initialize_rnn_parameters(N_X, N_A, N_Y, seed=seed, scale=0.7)
    return p, rng.standard_normal((N_X, M, T)), rng.standard_normal((N_A, M))


def test_rnn_backward_gradcheck():
    p, x, a0 = problem(1)
    G = np.random.default_rng(2).standard_normal((N_A, M, T))
    loss = lambda: float(np.sum(G * ref.rnn_forward(x, a0, p)[0]))
    g = ref.rnn_backward(G, ref.rnn_forward(x, a0, p)[2])
    assert set(g) == {"dx", "da0", "dWax", "dWaa", "dba"}
    report = gradcheck(loss, {"Wax": p["Wax"], "Waa": p["Waa"], "ba": p["ba"], "x": x, "a0": a0},
                       {"Wax": g["dWax"], "Waa": g["dWaa"], "ba": g["dba"], "x": g["dx"], "a0": g["da0"]})
    assert report.max_error <= 1e-7, report


def test_rnn_cell_backward_gradcheck_and_cache():
    p, x, a0 = problem(3)
    xt = x[:, :, 0].copy()
    G = np.random.default_rng(4).standard_normal((N_A, M))
    a_next, y, cache = ref.rnn_cell_forward(xt, a0, p)
    assert len(cache) == 4 and cache[0] is a_next and cache[1] is a0 and cache[3] is p
    np.testing.assert_allclose(y.sum(axis=0), 1)
    g = ref.rnn_cell_backward(G, cache)
    loss = lambda: float(np.sum(G * ref.rnn_cell_forward(xt, a0, p)[0]))
    report = gradcheck(loss, {"xt": xt, "a_prev": a0, "Wax": p["Wax"], "Waa": p["Waa"], "ba": p["ba"]},
                       {"xt": g["dxt"], "a_prev": g["da_prev"], "Wax": g["dWax"], "Waa": g["dWaa"], "ba": g["dba"]})
    assert report.ok, report


def test_rnn_forward_matches_torch():
    torch = pytest.importorskip("torch")
    p, x, a0 = problem(5)
    rnn = torch.nn.RNN(N_X, N_A).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(p["Wax"]))
        rnn.weight_hh_l0.copy_(torch.tensor(p["Waa"]))
        rnn.bias_ih_l0.copy_(torch.tensor(p["ba"][:, 0]))
        rnn.bias_hh_l0.zero_()
    out, _ = rnn(torch.tensor(x.transpose(2, 1, 0)), torch.tensor(a0.T[None]))
    a, y, _ = ref.rnn_forward(x, a0, p)
    np.testing.assert_allclose(a, out.detach().numpy().transpose(2, 1, 0), atol=1e-13)
    z = np.einsum("ya,amt->ymt", p["Wya"], a) + p["by"][:, :, None]
    np.testing.assert_allclose(y, np.exp(z) / np.exp(z).sum(0), atol=1e-13)


@pytest.mark.parametrize("call,exc,words", [
    (lambda p, x, a0: ref.rnn_forward(x[:, :, 0], a0, p), ValueError, ["x", "3-D"]),
    (lambda p, x, a0: ref.rnn_forward(x, a0[:2], p), ValueError, ["a0", "(5, 4)"]),
    (lambda p, x, a0: ref.rnn_forward(x, a0, {k: v for k, v in p.items() if k != "Waa"}), ValueError, ["'Waa'"]),
    (lambda p, x, a0: ref.rnn_forward(x, a0, {**p, "Wax": np.ones((5, 2))}), ValueError, ["Wax", "(5, 3)", "(5, 2)"]),
    (lambda p, x, a0: ref.rnn_forward(x.astype(int), a0, p), TypeError, ["x", "int64"]),
    (lambda p, x, a0: ref.rnn_backward(np.zeros((5, 4, 2)), ref.rnn_forward(x, a0, p)[2]), ValueError, ["da", "(5, 4, 6)"]),
    (lambda p, x, a0: ref.rnn_cell_backward(a0, (1, 2)), TypeError, ["cache", "4-tuple"]),
])
def test_rnn_bad_input(call, exc, words):
    p, x, a0 = problem(0)
    with pytest.raises(exc) as info:
        call(p, x, a0)
    for w in words:
        assert w in str(info.value), str(info.value)
