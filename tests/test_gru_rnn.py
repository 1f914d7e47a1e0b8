"""nplstm.GRU and nplstm.RNN: finite differences, stepping a plain cell by hand, torch, bad input."""
import numpy as np
import pytest

import nplstm
from nplstm.gradcheck import gradcheck

pytestmark = pytest.mark.usefixtures("backend")
I, H, B, T = 3, 5, 4, 6
LENGTHS = [6, 3, 1, 5]


def make(cls, seed=0, **kw):
    layer = cls(I, H, dtype=kw.pop("dtype", "float64"), seed=seed, **kw)
    for k, v in layer.params.items():
        v[...] = np.random.default_rng([seed, len(k), v.size]).uniform(-0.8, 0.8, v.shape)
    return layer


def check(layer, x, lengths=None, seed=0):
    """gradcheck of every weight, x and h0 for a hidden-only layer."""
    rng = np.random.default_rng(seed)
    out, h_n = layer(x, lengths=lengths)
    h0 = rng.standard_normal(h_n.shape)
    G, G_h = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)

    def run():
        layer.rng = np.random.default_rng(seed + 1)
        return layer.forward(x, h0, lengths=lengths, train=True)

    def loss():
        out, h_n, _ = run()
        return float(np.sum(G * out) + np.sum(G_h * h_n))

    _, _, cache = run()
    dx, dh0, grads = layer.backward(G, cache, G_h)
    return gradcheck(loss, {**layer.params, "x": x, "h0": h0}, {**grads, "x": dx, "h0": dh0})


CLASSES = [(nplstm.GRU, {}), (nplstm.RNN, {}), (nplstm.RNN, {"nonlinearity": "relu"})]
CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(bias=False, batch_first=True),
           dict(num_layers=2, dropout=0.3)]


@pytest.mark.parametrize("cls,extra", CLASSES, ids=["gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) or "default" for c in CONFIGS])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_gradcheck(cls, extra, config, lengths):
    layer = make(cls, **extra, **config)
    x = np.random.default_rng(1).standard_normal((B, T, I) if layer.batch_first else (T, B, I))
    report = check(layer, x, lengths)
    assert set(report.errors) == set(layer.params) | {"x", "h0"}
    assert report.max_error <= 1e-7, report


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """torch.nn.GRU's equations, written plainly."""
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    r = 1 / (1 + np.exp(-(gi[:, :H] + gh[:, :H])))
    z = 1 / (1 + np.exp(-(gi[:, H:2 * H] + gh[:, H:2 * H])))
    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, relu=False):
    z = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return np.maximum(z, 0) if relu else np.tanh(z)


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
def test_sequence_equals_stepping_the_cell(kind):
    layer = make(nplstm.GRU) if kind == "gru" else make(nplstm.RNN, nonlinearity=kind[4:])
    step = gru_step if kind == "gru" else (lambda *a: rnn_step(*a, relu=kind == "rnn_relu"))
    x = np.random.default_rng(2).standard_normal((T, B, I))
    h0 = np.random.default_rng(3).standard_normal((1, B, H))
    out, h_n = layer(x, h0)
    h, hs = h0[0], []
    for t in range(T):
        h = step(x[t], h, *(layer.params[k + "_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        hs.append(h)
    np.testing.assert_allclose(out, np.stack(hs), atol=1e-13)
    np.testing.assert_allclose(h_n[0], h, atol=1e-13)


@pytest.mark.parametrize("cls", [nplstm.GRU, nplstm.RNN])
def test_lengths_match_running_each_row_alone(cls):
    layer = make(cls, num_layers=2, bidirectional=True)
    x = np.random.default_rng(4).standard_normal((T, B, I))
    out, h_n = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        o1, h1 = layer(x[:n, b])
        np.testing.assert_allclose(out[:n, b], o1, atol=1e-13)
        np.testing.assert_allclose(h_n[:, b], h1, atol=1e-13)
        assert np.all(out[n:, b] == 0)


@pytest.mark.parametrize("cls", [nplstm.GRU, nplstm.RNN])
def test_float32_layer_matches_float64(cls):
    """float32 runs its own kernels (numba: a fused step with a rational tanh); float64 is the reference."""
    ours = make(cls, num_layers=2, bidirectional=True, dtype="float32")
    ref = make(cls, num_layers=2, bidirectional=True)
    ref.load_state_dict(ours.state_dict())
    x = np.random.default_rng(2).standard_normal((T, B, I))
    for lengths in (None, LENGTHS):
        np.testing.assert_allclose(ours(x, lengths=lengths)[0], ref(x, lengths=lengths)[0], atol=1e-5)
        out, _, cache = ours.forward(x, lengths=lengths, train=True)
        out64, _, cache64 = ref.forward(x, lengths=lengths, train=True)
        np.testing.assert_allclose(out, out64, atol=1e-5)
        dx, _, grads = ours.backward(np.ones(out.shape), cache)
        dx64, _, grads64 = ref.backward(np.ones(out.shape), cache64)
        np.testing.assert_allclose(dx, dx64, atol=1e-4)
        for k in grads:
            np.testing.assert_allclose(grads[k], grads64[k], atol=1e-4, err_msg=k)


@pytest.mark.parametrize("cls", [nplstm.GRU, nplstm.RNN])
def test_float32_steps_through_onednn_match_float64(monkeypatch, cls, sgemm_calls):
    """The engine's generic loop (where the batch-major one is not taken: ``_batchmajor_gru_rnn``,
    switched off here) at 1 thread, with oneDNN installed: a step's product from ~2M multiply-adds
    goes through oneDNN's sgemm, forward and backward (``_blas.matmul_into``); lengths make the
    active columns a strided block. The same layer in float64 (np.matmul) is the reference."""
    from threadpoolctl import threadpool_limits
    from nplstm import _blas, engine
    if "onednn" not in _blas.PROVIDERS or engine.get_backend() != "numba":
        pytest.skip("oneDNN's sgemm and the numba kernels are what this checks")
    monkeypatch.setattr(engine, "_batch_major", lambda w, x, kinds=None: False)
    I, H, B, T = 6, 192, 64, 3                            # GRU: 576 x 192 x 64 = 7.1M; RNN: 2.4M
    ours = cls(I, H, dtype="float32", seed=1)
    ref = cls(I, H, seed=1)
    ref.load_state_dict(ours.state_dict())
    rng = np.random.default_rng(3)
    x, d = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    lengths = rng.integers(1, T + 1, B)
    with threadpool_limits(1), _blas.use("onednn"):
        out, h_n, cache = ours.forward(x, lengths=lengths, train=True)
        dx, dh0, grads = ours.backward(d, cache)
    out64, h_n64, cache64 = ref.forward(x, lengths=lengths, train=True)
    dx64, dh064, grads64 = ref.backward(d, cache64)
    G = 3 * H if cls is nplstm.GRU else H
    assert (G, B, H) in sgemm_calls and (H, B, G) in sgemm_calls      # (M, N, K): forward's W_hh h, backward's W_hh^T dz
    for got, want in ((out, out64), (h_n, h_n64), (dx, dx64), (dh0, dh064), *((grads[k], grads64[k]) for k in grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("kind,bi,layers,lengths", [("gru", True, 2, True), ("gru", False, 1, False),
                                                    ("rnn_tanh", True, 2, True), ("rnn_relu", False, 2, True)])
def test_matches_torch(kind, bi, layers, lengths, dtype, tol):
    check_against_torch(kind, (I, H, B, T, layers, bi, True, False), LENGTHS if lengths else None, dtype, tol)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(9))
def test_random_configurations_match_torch(seed):
    """Random sizes (up to ~70), batches (1-33), batch_first, bias, lengths and 1-2 threads
    (nplstm.set_num_threads), weights from PyTorch's U(-1/sqrt(H), 1/sqrt(H)); tolerances scale
    with each result's size."""
    rng = np.random.default_rng(seed)
    kind = ("gru", "rnn_tanh", "rnn_relu")[seed % 3]
    h = int(rng.integers(2, 70))
    config = (int(rng.integers(1, 40)), h, int(rng.choice([1, 2, 3, 5, 16, 17, 33])), int(rng.integers(1, 25)),
              int(rng.integers(1, 4)), bool(rng.integers(2)), bool(rng.random() < 0.85), bool(rng.integers(2)))
    lengths = rng.integers(1, config[3] + 1, config[2]) if rng.random() < 0.4 else None
    dtype, threads = ("float32", "float64")[int(rng.random() < 0.3)], int(rng.integers(1, 3))
    before = nplstm.get_num_threads()
    nplstm.set_num_threads(threads)
    try:
        check_against_torch(kind, config, lengths, dtype, 1e-9 if dtype == "float64" else 2e-5, threads=threads,
                            scaled=True, bound=h ** -0.5)
    finally:
        nplstm.set_num_threads(before)


def check_against_torch(kind, config, lengths, dtype, tol, threads=None, scaled=False, bound=0.6):
    """Forward and backward (and a frozen() copy's inference) against torch.nn.GRU/RNN on the same
    weights, every parameter from U(-bound, bound); config (I, H, B, T, layers, bidirectional,
    bias, batch_first); tolerance tol (x10 for parameter gradients), times max |expected| if scaled."""
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_limits
    I, H, B, T, layers, bi, bias, bf = config
    torch.manual_seed(0)
    kw = dict(bias=bias, batch_first=bf, bidirectional=bi)
    if kind == "gru":
        module, ours = torch.nn.GRU(I, H, layers, **kw), nplstm.GRU(I, H, layers, dtype=dtype, **kw)
    else:
        nl = kind[4:]
        module = torch.nn.RNN(I, H, layers, nonlinearity=nl, **kw)
        ours = nplstm.RNN(I, H, layers, nonlinearity=nl, dtype=dtype, **kw)
    module = module.to(getattr(torch, dtype))
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-bound, bound)
    ours.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    rng = np.random.default_rng(5)
    D = 2 if bi else 1
    x = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((layers * D, B, H)).astype(dtype)
    lens = None if lengths is None else np.array(lengths)
    G = rng.standard_normal((B, T, D * H) if bf else (T, B, D * H)).astype(dtype)
    G_h = rng.standard_normal(h0.shape).astype(dtype)
    if lens is not None:                                  # torch's padded output is 0 there; give no gradient
        for b, n in enumerate(lens):
            (G[b, n:] if bf else G[n:, b])[...] = 0
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    if lens is None:
        out_t, h_t = module(xt, h0t)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lens), batch_first=bf, enforce_sorted=False)
        out_t, h_t = module(packed, h0t)
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=bf, total_length=T)
    ((out_t * torch.tensor(G)).sum() + (h_t * torch.tensor(G_h)).sum()).backward()
    with threadpool_limits(threads):
        out, h_n, cache = ours.forward(x, h0, lengths=lens, train=True)
        dx, dh0, grads = ours.backward(G, cache, G_h)
        frozen_out, frozen_h_n = ours.frozen()(x, h0, lengths=lens)

    def close(got, want, name, factor=1):
        want = want.detach().numpy()
        atol = tol * factor * (max(1.0, float(np.abs(want).max())) if scaled else 1)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)
    for name, got, want in (("output", out, out_t), ("h_n", h_n, h_t), ("dx", dx, xt.grad), ("dh0", dh0, h0t.grad),
                            ("frozen output", frozen_out, out_t), ("frozen h_n", frozen_h_n, h_t)):
        close(got, want, name)
    for k, p in module.named_parameters():
        close(grads[k], p.grad, k, factor=10)


@pytest.mark.parametrize("call,exc,word", [
    (lambda: nplstm.GRU(3, 5)(np.zeros((6, 4, 3)), (np.zeros((1, 4, 5)), np.zeros((1, 4, 5)))), TypeError, "h alone"),
    (lambda: nplstm.GRU(3, 5)(np.zeros((6, 4, 3)), np.zeros((2, 4, 5))), ValueError, "h0"),
    (lambda: nplstm.RNN(3, 5, nonlinearity="sigmoid"), ValueError, "nonlinearity"),
    (lambda: nplstm.GRU(3, 5).backward(np.zeros((6, 4, 5)), nplstm.LSTM(3, 5).forward(np.zeros((6, 4, 3)), train=True)[2]),
     TypeError, "GRU.forward"),
    (lambda: nplstm.GRU(3, 5).load_state_dict(nplstm.LSTM(3, 5).state_dict()), ValueError, "(15, 3)"),
])
def test_bad_input(call, exc, word):
    with pytest.raises(exc, match=word.replace("(", r"\(").replace(")", r"\)")):
        call()
