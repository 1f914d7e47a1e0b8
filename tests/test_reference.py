"""nplstm.reference against the seed notebook's own code and against finite differences."""
import warnings

import numpy as np
import pytest

from nplstm import reference as ref
from nplstm.gradcheck import check_lstm_reference, gradcheck
from nplstm.rnn_utils import sigmoid, softmax

N_X, N_A, N_Y, M, T = 3, 5, 7, 4, 6   # distinct, so a transposed axis cannot pass


def problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = ref.initialize_parameters(N_X, N_A, N_Y, seed=seed, scale=0.7, dtype=dtype)
    x = rng.standard_normal((N_X, M, T)).astype(dtype)
    a0 = rng.standard_normal((N_A, M)).astype(dtype)
    return params, x, a0


def test_cell_forward_matches_seed(seed):
    params, x, a0 = problem(1)
    c_prev = np.random.default_rng(2).standard_normal((N_A, M))
    ours = ref.lstm_cell_forward(x[:, :, 0], a0, c_prev, params)
    theirs = seed.lstm_cell_forward(x[:, :, 0], a0, c_prev, params)
    for got, want in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert len(ours[3]) == 10
    for got, want in zip(ours[3][:9], theirs[3][:9]):       # same cache layout, element by element
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert ours[3][9] is params


def test_sequence_forward_matches_seed(seed):
    params, x, a0 = problem(3)
    a, y, c, caches = ref.lstm_forward(x, a0, params)
    a_s, y_s, c_s, caches_s = seed.lstm_forward(x, a0, params)
    for got, want in ((a, a_s), (y, y_s), (c, c_s)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert isinstance(caches, tuple) and len(caches) == 2
    assert isinstance(caches[0], list) and len(caches[0]) == T and caches[1] is x


def test_cell_backward_matches_seed_cell(seed):
    # The seed's single-step backward is right; only its sequence loop is wrong.
    params, x, a0 = problem(4)
    rng = np.random.default_rng(5)
    *_, cache = ref.lstm_cell_forward(x[:, :, 0], a0, rng.standard_normal((N_A, M)), params)
    da, dc = rng.standard_normal((N_A, M)), rng.standard_normal((N_A, M))
    ours, theirs = ref.lstm_cell_backward(da, dc, cache), seed.lstm_cell_backward(da, dc, cache)
    assert list(ours) == list(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=0, atol=1e-12, err_msg=key)


def test_cell_backward_gradcheck():
    params, x, a0 = problem(6)
    rng = np.random.default_rng(7)
    xt, c_prev = x[:, :, 0].copy(), rng.standard_normal((N_A, M))
    Ga, Gc = rng.standard_normal((N_A, M)), rng.standard_normal((N_A, M))

    def loss():
        a, c, *_ = ref.lstm_cell_forward(xt, a0, c_prev, params)
        return float(np.sum(Ga * a) + np.sum(Gc * c))

    *_, cache = ref.lstm_cell_forward(xt, a0, c_prev, params)
    g = ref.lstm_cell_backward(Ga, Gc, cache)
    tensors = {k: params[k] for k in ref.GATE_KEYS} | {"xt": xt, "a_prev": a0, "c_prev": c_prev}
    analytic = {k: g["d" + k] for k in ref.GATE_KEYS} | {"xt": g["dxt"], "a_prev": g["da_prev"], "c_prev": g["dc_prev"]}
    report = gradcheck(loss, tensors, analytic)
    assert report.ok, report


@pytest.mark.parametrize("sizes,seed_", [((3, 5, 2, 4, 6), 0), ((4, 3, 6, 5, 7), 1), ((1, 2, 3, 1, 1), 2)])
def test_lstm_backward_gradcheck(sizes, seed_):
    report = check_lstm_reference(*sizes, seed=seed_)
    assert set(report.errors) == set(ref.GATE_KEYS) | {"Wy", "by", "x", "a0", "c0"}
    assert report.max_error <= 1e-7, report


def _seed_style_gradcheck(backward):
    """Loss sum(G * a) over every step; check lstm_backward's dx, da0 and weights."""
    params, x, a0 = problem(8)
    G = np.random.default_rng(9).standard_normal((N_A, M, T))
    loss = lambda: float(np.sum(G * ref.lstm_forward(x, a0, params)[0]))
    g = backward(G, ref.lstm_forward(x, a0, params)[3])
    keys = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
    return gradcheck(loss, {**{k: params[k] for k in keys}, "x": x, "a0": a0},
                     {**{k: g["d" + k] for k in keys}, "x": g["dx"], "a0": g["da0"]})


def test_fixed_backward_passes_where_seed_fails(seed):
    assert _seed_style_gradcheck(ref.lstm_backward).max_error <= 1e-7
    seed_report = _seed_style_gradcheck(seed.lstm_backward)
    assert seed_report.max_error > 0.05, seed_report        # the seed never carries da_prev / dc_prev


def test_truncated_bptt_equals_full_sequence():
    params, x, a0 = problem(10)
    G = np.random.default_rng(11).standard_normal((N_A, M, T))
    full = ref.lstm_backward(G, ref.lstm_forward(x, a0, params)[3])
    k = 2                                                    # split into steps [0, k) and [k, T)
    a1, _, c1, caches1 = ref.lstm_forward(x[:, :, :k], a0, params)
    _, _, _, caches2 = ref.lstm_forward(x[:, :, k:], a1[:, :, -1], params, c0=c1[:, :, -1])
    g2 = ref.lstm_backward(G[:, :, k:], caches2, return_dc0=True)
    G1 = G[:, :, :k].copy()
    G1[:, :, -1] += g2["da0"]
    g1 = ref.lstm_backward(G1, caches1, dc_final=g2["dc0"])
    np.testing.assert_allclose(np.concatenate([g1["dx"], g2["dx"]], axis=2), full["dx"], atol=1e-12)
    np.testing.assert_allclose(g1["da0"], full["da0"], atol=1e-12)
    for key in ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"):
        np.testing.assert_allclose(g1[key] + g2[key], full[key], atol=1e-12, err_msg=key)


def test_float32_stays_float32():
    params, x, a0 = problem(12, dtype=np.float32)
    a, y, c, caches = ref.lstm_forward(x, a0, params)
    assert a.dtype == y.dtype == c.dtype == np.float32
    loss, og = ref.softmax_cross_entropy(a, np.zeros((M, T), int), params)
    g = ref.lstm_backward(og["da"], caches, return_dc0=True)
    assert all(v.dtype == np.float32 for v in (*og.values(), *g.values()))
    a64 = ref.lstm_forward(x.astype(np.float64), a0.astype(np.float64),
                           {k: v.astype(np.float64) for k, v in params.items()})[0]
    np.testing.assert_allclose(a, a64, atol=1e-5)


def test_helpers_are_stable():
    big = np.array([[-1e4, 0.0, 1e4], [1e4, -1e4, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            s, p = sigmoid(big), softmax(big)
            s32 = sigmoid(big.astype(np.float32))
    np.testing.assert_array_equal(s, [[0, 0.5, 1], [1, 0, 0.5]])
    assert s32.dtype == np.float32
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=0), 1)
    np.testing.assert_allclose(p, [[0, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(sigmoid(np.array([0.3, -2.0])), 1 / (1 + np.exp(-np.array([0.3, -2.0]))), rtol=1e-15)


def test_loss_value_against_seed_probabilities(seed):
    params, x, a0 = problem(13)
    rng = np.random.default_rng(14)
    Y = rng.integers(0, N_Y, (M, T))
    mask = (rng.random((M, T)) > 0.3).astype(float)
    a, y, _, _ = seed.lstm_forward(x, a0, params)             # the seed's own softmax outputs
    want = -sum(mask[b, t] * np.log(y[Y[b, t], b, t]) for b in range(M) for t in range(T)) / M
    loss, _ = ref.softmax_cross_entropy(a, Y, params, mask=mask)
    assert loss == pytest.approx(want, rel=1e-12)
    onehot = np.eye(N_Y)[Y].transpose(2, 0, 1)
    assert ref.softmax_cross_entropy(a, onehot, params, mask=mask)[0] == pytest.approx(want, rel=1e-12)


def test_loss_gradcheck_with_mask():
    params, x, a0 = problem(15)
    rng = np.random.default_rng(16)
    a = rng.standard_normal((N_A, M, T))
    Y = rng.integers(0, N_Y, (M, T))
    mask = rng.random((M, T)) > 0.4
    loss = lambda: ref.softmax_cross_entropy(a, Y, params, mask=mask)[0]
    _, g = ref.softmax_cross_entropy(a, Y, params, mask=mask)
    report = gradcheck(loss, {"a": a, "Wy": params["Wy"], "by": params["by"]}, {"a": g["da"], "Wy": g["dWy"], "by": g["dby"]})
    assert report.ok, report
    assert np.all(g["da"][:, ~mask] == 0)                     # padded steps send no gradient


def test_training_on_delayed_copy_drives_loss_down():
    """Predict the symbol seen `delay` steps ago: needs memory across steps, so BPTT must be right."""
    n_sym, delay, m, T_x, n_a = 4, 2, 16, 8, 16
    rng = np.random.default_rng(0)
    params = ref.initialize_parameters(n_sym, n_a, n_sym, seed=0, scale=0.3)
    mask = np.ones((m, T_x))
    mask[:, :delay] = 0                                       # nothing to copy yet

    def batch():
        s = rng.integers(0, n_sym, (m, T_x))
        x = np.eye(n_sym)[s].transpose(2, 0, 1)               # one-hot (n_x, m, T_x)
        Y = np.zeros_like(s)
        Y[:, delay:] = s[:, :-delay]
        return x, Y

    losses = []
    for step in range(600):
        x, Y = batch()
        a, _, _, caches = ref.lstm_forward(x, np.zeros((n_a, m)), params)
        loss, out = ref.softmax_cross_entropy(a, Y, params, mask=mask)
        grads = ref.lstm_backward(out["da"], caches)
        ref.update_parameters(params, {**grads, "dWy": out["dWy"], "dby": out["dby"]}, learning_rate=0.1)
        losses.append(loss / (T_x - delay))                   # per predicted step
    start, end = np.mean(losses[:20]), np.mean(losses[-20:])
    assert start > 0.9 * np.log(n_sym)
    assert end < 0.25 * start, (start, end)


def _tiny_beside_large(scale_w2=1.0):
    """A loss near 1 whose W2 barely reaches it: dW2 is 1e-6 of dW1. Exact gradients, times
    ``scale_w2`` for W2's (1.3: a 30% error)."""
    rng = np.random.default_rng(20)
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((5, 2))
    A, B = rng.uniform(0.5, 1, W1.shape), rng.uniform(0.5, 1, W2.shape)
    loss = lambda: float(1 + np.sum(A * W1) + 1e-6 * np.sum(B * W2))   # noqa: E731
    return loss, {"W1": W1, "W2": W2}, {"W1": A, "W2": 1e-6 * B * scale_w2}


def test_gradcheck_floor_measures_a_tiny_tensor_on_the_others_scale():
    """On its own scale W2's exact gradient reads the finite differences' rounding (~1e-11 of a
    loss near 1) as an error of ~1e-5; with floor=1e-3 it is measured against 1e-3 of the largest
    gradient, where that rounding is ~1e-7 or less; and a 30% error in W2 still fails there.
    W1's error is its own either way."""
    loss, tensors, grads = _tiny_beside_large()
    own, floored = gradcheck(loss, tensors, grads), gradcheck(loss, tensors, grads, floor=1e-3)
    assert own.errors["W2"] > 1e-6, own
    assert floored.errors["W2"] < own.errors["W2"] / 100 and floored.max_error <= 1e-6, floored
    assert floored.errors["W1"] == own.errors["W1"]
    loss, tensors, grads = _tiny_beside_large(scale_w2=1.3)
    assert gradcheck(loss, tensors, grads, floor=1e-3).errors["W2"] > 1e-4


@pytest.mark.parametrize("floor, exc", [("0.1", TypeError), (True, TypeError), (None, TypeError),
                                        (-0.1, ValueError), (1.0, ValueError), (float("nan"), ValueError)])
def test_gradcheck_rejects_a_bad_floor(floor, exc):
    loss, tensors, grads = _tiny_beside_large()
    with pytest.raises(exc, match="floor"):
        gradcheck(loss, tensors, grads, floor=floor)
