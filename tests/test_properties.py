"""Property-based tests (hypothesis) over random shapes (ones included), dtypes, lengths, layouts and cells."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nplstm  # noqa: E402
from nplstm.data import StreamBatches  # noqa: E402
from nplstm.gradcheck import gradcheck  # noqa: E402
from nplstm.losses import softmax_cross_entropy  # noqa: E402

SETTINGS = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw, dtypes=("float32", "float64")):
    kind = draw(st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"]))
    I, H, T, B, L = (draw(st.integers(1, n)) for n in (4, 4, 5, 4, 2))
    proj = draw(st.integers(0, H - 1)) if kind == "lstm" and H > 1 else 0
    kw = dict(num_layers=L, bidirectional=draw(st.booleans()), batch_first=draw(st.booleans()),
              bias=draw(st.booleans()), dtype=draw(st.sampled_from(dtypes)), seed=draw(st.integers(0, 999)))
    if kind == "lstm":
        layer = nplstm.LSTM(I, H, proj_size=proj, **kw)
    elif kind == "gru":
        layer = nplstm.GRU(I, H, **kw)
    else:
        layer = nplstm.RNN(I, H, nonlinearity=kind[4:], **kw)
    lengths = draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B))
    x = np.random.default_rng(kw["seed"]).standard_normal((B, T, I) if kw["batch_first"] else (T, B, I))
    return layer, x, lengths


def run(layer, x, lengths, train=False):
    if isinstance(layer, nplstm.LSTM):
        out, (h, c), cache = layer.forward(x, lengths=lengths, train=train)
        return out, [h, c], cache
    out, h, cache = layer.forward(x, lengths=lengths, train=train)
    return out, [h], cache


@SETTINGS
@given(cases())
def test_shapes_dtypes_and_finiteness(case):
    layer, x, lengths = case
    out, states, cache = run(layer, x, lengths, train=True)
    T, B = (x.shape[1], x.shape[0]) if layer.batch_first else x.shape[:2]
    D, P = layer.num_directions, layer.output_size
    assert out.shape == ((B, T, D * P) if layer.batch_first else (T, B, D * P))
    assert states[0].shape == (layer.num_layers * D, B, P)
    back = layer.backward(np.ones_like(out), cache)
    dx, grads = back[0], back[-1]
    assert dx.shape == x.shape and set(grads) == set(layer.params)
    for a in (out, *states, dx, *grads.values()):
        assert a.dtype == layer.dtype and np.all(np.isfinite(a))
    for k, g in grads.items():
        assert g.shape == layer.params[k].shape


@SETTINGS
@given(cases())
def test_full_lengths_equal_no_lengths(case):
    layer, x, _ = case
    T = x.shape[1] if layer.batch_first else x.shape[0]
    B = x.shape[0] if layer.batch_first else x.shape[1]
    a, sa, _ = run(layer, x, None)
    b, sb, _ = run(layer, x, [T] * B)
    np.testing.assert_array_equal(a, b)
    for u, v in zip(sa, sb):
        np.testing.assert_array_equal(u, v)


@SETTINGS
@given(cases(dtypes=("float64",)))
def test_a_batch_equals_its_rows_one_at_a_time(case):
    layer, x, lengths = case
    out, states, _ = run(layer, x, lengths)
    B = x.shape[0] if layer.batch_first else x.shape[1]
    T = x.shape[1] if layer.batch_first else x.shape[0]
    for b in range(B):
        n = T if lengths is None else lengths[b]
        row = x[b, :n] if layer.batch_first else x[:n, b]
        o1, s1, _ = run(layer, row, None)                    # unbatched, its own length
        got = out[b, :n] if layer.batch_first else out[:n, b]
        np.testing.assert_allclose(got, o1, atol=1e-12)
        for s, t in zip(states, s1):
            np.testing.assert_allclose(s[:, b], t, atol=1e-12)


# A case CI drew: weight_hh_l0_reverse's gradient is 6e-5 of the largest (T = 2, proj_size=1),
# and on its own scale the finite differences' rounding read as an error of 1.2e-6.
TINY_TENSOR = (nplstm.LSTM(3, 2, num_layers=2, bidirectional=True, proj_size=1, dtype="float64", seed=27),
               np.random.default_rng(27).standard_normal((2, 3, 3)), None)


@settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(cases(dtypes=("float64",)))
@example(TINY_TENSOR)
def test_backward_agrees_with_finite_differences(case):
    layer, x, lengths = case
    out, states, _ = run(layer, x, lengths)
    rng = np.random.default_rng(0)
    G = rng.standard_normal(out.shape)

    def loss():
        layer.rng = np.random.default_rng(1)
        return float(np.sum(G * run(layer, x, lengths, train=True)[0]))

    layer.rng = np.random.default_rng(1)
    _, _, cache = run(layer, x, lengths, train=True)
    back = layer.backward(G, cache)
    report = gradcheck(loss, {**layer.params, "x": x}, {**back[-1], "x": back[0]}, floor=1e-3)
    assert report.max_error <= 1e-6, report               # (floor: a tensor that barely reaches the loss,
                                                          # on its own scale, reads the differences' rounding)


@st.composite
def garbage(draw):
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.complex128, np.float16, object]))
    return np.zeros(shape, dtype=dtype)


@SETTINGS
@given(garbage(), st.one_of(st.none(), garbage()), st.one_of(st.none(), st.lists(st.integers(-3, 9), max_size=5),
                                                            st.lists(st.floats(0, 9), min_size=1, max_size=4)))
def test_bad_input_is_a_clear_error_or_a_valid_answer(x, h0, lengths):
    """Whatever arrives, the layer either answers with finite arrays or raises ValueError/TypeError naming
    the argument -- never IndexError, a NumPy warning, or garbage."""
    layer = nplstm.GRU(3, 2)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out, h = layer(x, h0, lengths=lengths)
        except (ValueError, TypeError) as err:
            assert any(name in str(err) for name in ("x", "h0", "lengths")), str(err)
            return
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(h))


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 4), st.integers(2, 6), st.integers(0, 10))
def test_loss_gradient_sums_to_zero_per_token(T, B, V, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((T, B, V)) * 10
    y = rng.integers(0, V, (T, B))
    loss, d = softmax_cross_entropy(logits, y)
    assert np.isfinite(loss) and loss >= 0
    np.testing.assert_allclose(d.sum(axis=-1), 0, atol=1e-12)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 40))
def test_stream_batches_are_contiguous_streams(B, T, extra):
    ids = np.arange(B * T + 1 + extra)
    batches = StreamBatches(ids, B, T)
    for k in range(batches.chunks):
        x, y = batches.get(k)
        np.testing.assert_array_equal(x[1:], y[:-1])
        np.testing.assert_array_equal(y - x, 1)           # targets are the next character
        if k + 1 < batches.chunks:
            np.testing.assert_array_equal(batches.get(k + 1)[0][0], y[-1])


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4),
       st.sampled_from(["float32", "float64"]), st.integers(0, 99))
def test_reference_api_shapes_dtypes_finite(n_x, n_a, n_y, m, T_x, dtype, seed):
    from nplstm import reference as ref
    p = ref.initialize_parameters(n_x, n_a, n_y, seed=seed, scale=1.0, dtype=dtype)
    rng = np.random.default_rng(seed)
    x, a0 = rng.standard_normal((n_x, m, T_x)).astype(dtype), rng.standard_normal((n_a, m)).astype(dtype)
    a, y, c, caches = ref.lstm_forward(x, a0, p)
    loss, g = ref.softmax_cross_entropy(a, rng.integers(0, n_y, (m, T_x)), p)
    grads = ref.lstm_backward(g["da"], caches, return_dc0=True)
    assert a.shape == c.shape == (n_a, m, T_x) and y.shape == (n_y, m, T_x)
    assert grads["dx"].shape == x.shape and grads["dWf"].shape == (n_a, n_a + n_x) and grads["dbc"].shape == (n_a, 1)
    for v in (a, y, c, *g.values(), *grads.values()):
        assert v.dtype == dtype and np.all(np.isfinite(v))
    np.testing.assert_allclose(y.sum(axis=0), 1, rtol=1e-5)
    pr = ref.initialize_rnn_parameters(n_x, n_a, n_y, seed=seed, dtype=dtype)
    ar, yr, cr = ref.rnn_forward(x, a0, pr)
    gr = ref.rnn_backward(np.ones_like(ar), cr)
    assert all(v.dtype == dtype and np.all(np.isfinite(v)) for v in (ar, yr, *gr.values()))


@SETTINGS
@given(st.sampled_from(["sgd", "adam"]), st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=6),
       st.floats(1e-4, 1.0), st.integers(1, 5))
def test_optimizer_steps_are_finite_and_adam_moves_at_most_lr(name, values, lr, steps):
    from nplstm.optim import OPTIMIZERS
    w0 = np.array(values)
    params = {"w": w0.copy()}
    opt = OPTIMIZERS[name](lr=lr)
    for k in range(steps):
        opt.step(params, {"w": np.cos(w0 + k)})
        assert np.all(np.isfinite(params["w"]))
    if name == "adam":                                    # Adam's step is bounded: lr (1 - b1) / sqrt(1 - b2)
        assert np.all(np.abs(params["w"] - w0) <= lr * steps * 0.1 / np.sqrt(0.001) * (1 + 1e-6))


@SETTINGS
@given(st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.booleans(), st.none(), st.text(max_size=2)),
       st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.booleans()),
       st.one_of(st.integers(-2, 3), st.floats(-1, 2)), st.one_of(st.floats(-1, 2), st.integers(-1, 2)))
def test_constructor_arguments_are_checked(input_size, hidden_size, num_layers, dropout):
    try:
        layer = nplstm.LSTM(input_size, hidden_size, num_layers=num_layers, dropout=dropout)
    except (ValueError, TypeError) as err:
        assert any(n in str(err) for n in ("input_size", "hidden_size", "num_layers", "dropout")), str(err)
        return
    assert layer.input_size >= 1 and layer.hidden_size >= 1 and 0 <= layer.dropout < 1
