"""GRU and RNN on the batch-major loops (``nplstm._batchmajor_gru_rnn``), inference and training:
against the engine's own Python loop (an independent path: feature-major, NumPy's matmul, the
engine's gate math), in each of the loop's ways to make a step's product and input side, and
against torch."""
import numpy as np
import pytest

import nplstm
from nplstm import _aligned, _blas, engine

numba = pytest.importorskip("numba")
threadpoolctl = pytest.importorskip("threadpoolctl")
from nplstm import _batchmajor, _batchmajor_gru_rnn, _batchmajor_loops, _tilegemm  # noqa: E402  (need numba)

I, T = 5, 7                    # distinct sizes; hidden sizes and batches below

MAKERS = {"gru": lambda **kw: nplstm.GRU(**kw), "rnn_tanh": lambda **kw: nplstm.RNN(**kw),
          "rnn_relu": lambda **kw: nplstm.RNN(nonlinearity="relu", **kw)}


@pytest.fixture
def calls(monkeypatch):
    """The batch-major path's calls: for each, the ``steps_in`` it ran with (None: A made before the loop)."""
    if engine.get_backend() != "numba" or "onednn" not in _blas.PROVIDERS or _blas._packing is None:
        pytest.skip("the batch-major path needs numba and oneDNN's packed GEMM")
    seen = []
    real = _batchmajor.operands
    monkeypatch.setattr(_batchmajor, "operands", lambda *a: seen.append(real(*a)) or seen[-1])
    return seen


def layer_and_inputs(kind, H, B, **kw):
    layer = MAKERS[kind](input_size=I, hidden_size=H, num_layers=2, bidirectional=True, dtype="float32", seed=3, **kw)
    rng = np.random.default_rng(H + B)
    for k, v in layer.params.items():                     # non-zero biases, saturated gates; W_hh smaller:
        v[...] = rng.uniform(-0.9, 0.9, v.shape) * (0.3 if k.startswith("weight_hh") else 1)   # (*)
    # (*) at 0.9 a tanh RNN of H = 64 is chaotic: float32 rounding grows to ~1e-4 in 7 steps, on
    # the engine's loop as on this one (either is that far from float64)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((4, B, H)).astype(np.float32)
    lengths = [T - 1] + [int(v) for v in rng.integers(1, T, B - 1)]   # the longest shorter than T
    return layer, x, h0, lengths


def assert_close(got, want):
    """float32 against the same sums in another order; relu's values grow to the hundreds."""
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("H, B", [(16, 1), (16, 4), (64, 1), (64, 9), (80, 9)])
def test_inference_equals_the_python_loop(calls, python_loop, kind, H, B):
    """Two layers, both directions, lengths, a non-zero initial state. The step's product on each
    of its ways (G: 3H for the GRU, H for the RNN): batch 1's matrix-vector product (G = 48, 16:
    ``_vecmat``; 192, 64: ``_tilegemm.matvec``); at batch > 1 oneDNN's packed GEMM (G = 48, 16,
    240, 80: not whole panels of 64) or our tiles (G = 192, 64)."""
    layer, x, h0, lengths = layer_and_inputs(kind, H, B)
    with threadpoolctl.threadpool_limits(1):
        got = layer(x, h0, lengths=lengths)
    assert len(calls) == 4                                # every layer-direction took the path
    python_loop()
    assert_close(got, layer(x, h0, lengths=lengths))


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("way", ["steps", "chunks"])
def test_input_side_in_the_loop_equals_the_python_loop(monkeypatch, calls, python_loop, kind, way):
    """The input side made inside the loop (A past a shrunken L2): each step's on our kernel, or a
    chunk of 3 steps at a time on oneDNN (the kernel turned off), the reverse direction's from the
    end, and a plain layer's and a frozen copy's."""
    H, B = (64, 16) if way == "steps" else (16, 4)       # steps: 4H-wide panels (G = 192, 64), A past them
    layer, x, h0, lengths = layer_and_inputs(kind, H, B)
    G = 3 * H if kind == "gru" else H
    if way == "steps":
        monkeypatch.setattr(_tilegemm, "_AVAILABLE", True)    # (the kernel's rule; it runs without AVX-512)
        monkeypatch.setattr(_tilegemm, "L2_BYTES", 4 * T * B * G - 4)
    else:
        monkeypatch.setattr(_tilegemm, "_AVAILABLE", False)
        monkeypatch.setattr(_tilegemm, "L2_BYTES", 4 * 3 * B * G)
    with threadpoolctl.threadpool_limits(1):
        got = [layer(x, h0, lengths=lengths), layer.frozen()(x, h0, lengths=lengths)]
    layer0 = [calls[k][4] for k in (0, 1, 4, 5)]          # steps_in; (layer 1's input is 2H wide: its own rule)
    if way == "steps":
        assert all(s is not None and s[0].shape[0] > 0 for s in layer0)
    else:
        assert all(s is not None and s[3] == 3 for s in layer0)
    python_loop()
    want = layer(x, h0, lengths=lengths)
    for g in got:
        assert_close(g, want)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_without_biases(calls, python_loop, kind):
    layer, x, h0, lengths = layer_and_inputs(kind, 16, 4, bias=False)
    with threadpoolctl.threadpool_limits(1):
        got = layer(x, h0, lengths=lengths)
    assert calls
    python_loop()
    assert_close(got, layer(x, h0, lengths=lengths))


def training_run(layer, x, h0, lengths, seed):
    """Forward in training, backward with a gradient for every output and for h_n."""
    d = np.random.default_rng(seed).standard_normal(x.shape[:2] + (2 * layer.hidden_size,)).astype(np.float32)
    out, h_n, cache = layer.forward(x, h0, lengths=lengths, train=True)
    dx, dh0, grads = layer.backward(d, cache, h_n)
    return cache["layers"][0][0][0], [out, h_n, dx, dh0, *(grads[k] for k in sorted(grads))]


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("H, B", [(16, 1), (16, 4), (64, 1), (64, 9)])
def test_training_equals_the_python_loop(calls, python_loop, kind, H, B):
    """Forward and backward, every parameter's gradient, dx and dh0, with lengths (padded rows get
    no gradient), both directions, two layers: batch 1's products (``_vecmat``, ``_matvec``), and
    oneDNN's packed GEMM and our tiles forward, oneDNN's backward."""
    layer, x, h0, lengths = layer_and_inputs(kind, H, B)
    with threadpoolctl.threadpool_limits(1):
        tag, got = training_run(layer, x, h0, lengths, H)
    assert tag == _batchmajor_gru_rnn.BATCH_MAJOR and len(calls) == 4
    python_loop()
    tag, want = training_run(layer, x, h0, lengths, H)
    assert not isinstance(tag, str)                       # the engine's own cache
    assert_close(got, want)


def test_activations_refuse_its_caches(calls):
    layer, x, h0, lengths = layer_and_inputs("gru", 16, 4)
    with threadpoolctl.threadpool_limits(1):
        _, _, cache = layer.forward(x, h0, train=True)
    with pytest.raises(ValueError, match="LSTM caches"):
        engine.activations(cache["layers"][0][0])


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_inference_matches_torch(calls, kind):
    """An independent oracle: torch's GRU / RNN on the same weights, float32, both directions,
    packed sequences for the lengths, a non-zero initial state: outputs, h_n, and every weight's
    gradient of the outputs' sum plus h_n weighted at random."""
    torch = pytest.importorskip("torch")
    H, B = 64, 9
    layer, x, h0, lengths = layer_and_inputs(kind, H, B)
    module = (torch.nn.GRU if kind == "gru" else torch.nn.RNN)(I, H, num_layers=2, bidirectional=True)
    with torch.no_grad():
        for k, v in layer.state_dict().items():
            getattr(module, k).copy_(torch.from_numpy(v))
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths),
                                                     enforce_sorted=False)
    out, h = module(packed, torch.from_numpy(h0))
    want, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    dh_n = np.random.default_rng(8).standard_normal(h.shape).astype(np.float32)
    (out.data.sum() + (h * torch.from_numpy(dh_n)).sum()).backward()
    want, h = want.detach(), h.detach()
    with threadpoolctl.threadpool_limits(1):
        got, gh = layer(x, h0, lengths=lengths)
        out_, h_, cache = layer.forward(x, h0, lengths=lengths, train=True)
        _, _, grads = layer.backward(np.ones(out_.shape, np.float32), cache, dh_n)
    assert len(calls) == 8                                # 4 layer-directions, twice
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(gh, h.numpy(), rtol=0, atol=2e-5)
    for k, g in grads.items():                            # d(sum of outputs + weighted h_n) / d(each weight)
        want_g = getattr(module, k).grad.numpy()
        np.testing.assert_allclose(g, want_g, rtol=0, atol=2e-5 * np.abs(want_g).max(), err_msg=k)


def test_kinds_cover_the_engines():
    assert set(_batchmajor_gru_rnn.KINDS) == set(engine.KINDS) - {"lstm"}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("B", [35, 4], ids=["row-blocks", "directions"])
def test_two_threads_equal_the_python_loop(calls, python_loop, kind, B):
    """``nplstm.set_num_threads(2)``: a batch of 35 as two row blocks (17 and 18 rows), a thread each;
    a batch of 4, too small to split, with the two directions at once. Training (every gradient)
    and inference against the engine's Python loop on one thread."""
    from nplstm import _rowblocks
    layer, x, h0, lengths = layer_and_inputs(kind, 16, B)
    before = nplstm.get_num_threads()
    try:
        nplstm.set_num_threads(2)
        tag, got = training_run(layer, x, h0, lengths, B)
        _, _, cache = layer.forward(x, h0, lengths=lengths, train=True)
        got.append(layer(x, h0, lengths=lengths)[0])
    finally:
        nplstm.set_num_threads(before)
    if B == 35:
        assert tag == _rowblocks.SPLIT and _rowblocks.bounds(35) is None   # (bounds: back to 1 thread)
    else:
        assert tag == _batchmajor_gru_rnn.BATCH_MAJOR and cache["together"] == [True, True]
    assert calls
    python_loop()
    want = training_run(layer, x, h0, lengths, B)[1] + [layer(x, h0, lengths=lengths)[0]]
    assert_close(got, want)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_weight_gradients_through_onednn_equal_the_python_loop(calls, python_loop, sgemm_calls, monkeypatch, kind):
    """Past ~4M multiply-adds the weight gradients dZ^T X and dZ^T H are oneDNN's, made the other
    way round (``_blas.matmul_tn``: (X^T dZ)^T), and the bias gradients one sum (the LSTM's two
    are the same sum, handed out as two arrays); against the Python loop's np.matmul."""
    monkeypatch.setattr(_blas, "_avx512", True)          # the rule, on any CPU oneDNN runs on
    Hk, Bk, Tk, Ik = 64, 32, 40, 19                       # T*B = 1280 rows; 19 * G * 1280 > 2^22 (G = 3H, 4H)
    layer = (nplstm.LSTM if kind == "lstm" else nplstm.GRU)(Ik, Hk, dtype="float32", seed=5)
    rng = np.random.default_rng(6)
    for v in layer.params.values():
        v[...] = rng.uniform(-0.3, 0.3, v.shape)
    x = rng.standard_normal((Tk, Bk, Ik)).astype(np.float32)
    d = rng.standard_normal((Tk, Bk, Hk)).astype(np.float32)

    def run():
        out, _, cache = layer.forward(x, train=True)
        dx, _, grads = layer.backward(d, cache)
        return [dx, *grads.values()], grads
    with threadpoolctl.threadpool_limits(1):
        got, grads = run()
    G = layer.gates * Hk
    assert (Ik, G, Tk * Bk) in sgemm_calls and (Hk, G, Tk * Bk) in sgemm_calls   # (M, N, K): X^T dZ, H^T dZ
    assert grads["bias_ih_l0"] is not grads["bias_hh_l0"]
    python_loop()
    want, _ = run()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("way", ["tiles", "onednn", "batch 1", "both"])
def test_a_step_from_zeros_skips_its_product(way):
    """``step_product`` from h[:n] = 0 (hx=None's first step) writes R[:n] = 0 without multiplying:
    with an inf in W_hh, 0 * inf would be NaN. Rows past n are not looked at; any other value in
    h[:n] (a tiny one) multiplies as before, every way of the product. ``step_both`` (the input
    side and the product in one) the same: from zeros, x_t W_ih^T alone."""
    if way == "both":
        return _step_both_from_zeros()
    P, G, B, n = 5, 4 * 16, 4, 3                          # (tiles: 4H a multiple of the kernel's columns)
    rng = np.random.default_rng(8)
    Wt = rng.standard_normal((P, G)).astype(np.float32)   # W_hh^T
    Wt[2, 7] = np.inf
    compute = Wp = W = panels = None
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        if way == "tiles":
            if not _tilegemm.suits(P, G):
                pytest.skip("our kernel needs AVX-512")
            panels = _tilegemm.pack(Wt)
        elif way == "onednn":
            if _blas.packed_compute() is None:
                pytest.skip("needs oneDNN's packed GEMM")
            compute, Wp = _blas.packed_compute(), _blas.pack_right(Wt, B)
        else:
            W, B, n = _aligned.copy(Wt), 1, 1
        hs = np.zeros((2, B, P), np.float32)
        hs[0, n:] = 1                                     # past n: not looked at
        R = np.full((B, G), 7, np.float32)
        _batchmajor_loops.step_product(compute, Wp, W, panels, hs, 0, n, R)
        assert (R[:n] == 0).all()
        hs[0, n - 1, 2] = 1e-30
        _batchmajor_loops.step_product(compute, Wp, W, panels, hs, 0, n, R)
    assert np.isnan(R[n - 1, 7]) or np.isinf(R[n - 1, 7])



def _step_both_from_zeros():
    P, I, G, B, n, t = 5, 3, 4 * 16, 4, 3, 1
    if not _tilegemm.suits(P, G):
        pytest.skip("our kernel needs AVX-512")
    rng = np.random.default_rng(9)
    Wi, Wh = rng.standard_normal((I, G)).astype(np.float32), rng.standard_normal((P, G)).astype(np.float32)
    Wh[2, 7] = np.inf                                     # W_hh^T
    xs = rng.standard_normal((2, B, I)).astype(np.float32)
    steps_in = (_tilegemm.pack(Wi, Wh), xs, np.empty(0, np.uint8), 0)
    hs = np.zeros((2, B, P), np.float32)
    hs[0, n:] = 1                                         # past n: not looked at
    Z = np.full((B, G), 7, np.float32)
    _batchmajor_loops.step_both(steps_in, hs, 0, t, n, Z)
    want = xs[t, :n].astype(np.float64) @ Wi
    np.testing.assert_allclose(Z[:n], want, rtol=0, atol=1e-5)
    hs[0, n - 1, 2] = 1e-30
    _batchmajor_loops.step_both(steps_in, hs, 0, t, n, Z)
    assert np.isnan(Z[n - 1, 7]) or np.isinf(Z[n - 1, 7])


@pytest.mark.parametrize("T_", [6, 7])
@pytest.mark.parametrize("B", [1, 5])
def test_lstm_inference_keeps_two_steps_of_c(calls, python_loop, T_, B):
    """Inference's cs is (2, B, H), c_{t-1} and c_t taking turns (``_batchmajor._states``); with an
    even and an odd T, both directions (the reverse one starts at the other end of the ring),
    lengths (finished rows carry their c across turns) and a non-zero c0, h_n and c_n and the
    output are the engine's Python loop's. Training keeps every step's c for the backward."""
    assert _batchmajor._states(T_, B, 4, 3, train=False)[1].shape == (2, B, 4)
    assert _batchmajor._states(T_, B, 4, 3, train=True)[1].shape == (T_ + 1, B, 4)
    H = 16
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float32", seed=4)
    rng = np.random.default_rng(T_ + B)
    for v in lstm.params.values():
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((T_, B, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((4, B, H)).astype(np.float32) for _ in range(2))
    lengths = [T_] + [int(v) for v in rng.integers(1, T_ + 1, B - 1)]
    with threadpoolctl.threadpool_limits(1):
        out, (h, c) = lstm(x, (h0, c0), lengths=lengths)
    assert calls                                          # (the batch-major path ran)
    python_loop()
    want, (wh, wc) = lstm(x, (h0, c0), lengths=lengths)
    assert_close((out, h, c), (want, wh, wc))


@pytest.mark.parametrize("H", [16, 7])
@pytest.mark.parametrize("hx", [False, True], ids=["h0=0", "h0"])
def test_lstm_batch_of_one_inference_equals_the_python_loop(calls, python_loop, H, hx):
    """Batch 1's inference loop (``_batchmajor_loops._one_row_loop``: 4H = 64, whole rows of
    ``_tilegemm.matvec``; 4H = 28 takes the general loop): both directions of two layers, from
    hx=None (the first step's product skipped) and from a non-zero state, against the engine's
    Python loop; and a sequence with lengths (the general loop) the same."""
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float32", seed=5)
    rng = np.random.default_rng(H)
    for v in lstm.params.values():
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    state = tuple(rng.standard_normal((4, 1, H)).astype(np.float32) for _ in range(2)) if hx else None
    with threadpoolctl.threadpool_limits(1):
        got = [lstm(x, state), lstm(x, state, lengths=[T - 2])]
    assert calls
    python_loop()
    want = [lstm(x, state), lstm(x, state, lengths=[T - 2])]
    for (out, (h, c)), (w_out, (w_h, w_c)) in zip(got, want):
        assert_close((out, h, c), (w_out, w_h, w_c))


def test_batch_of_one_loop_skips_the_product_from_zeros():
    """``_one_row_loop``'s first step from h = 0 writes R = 0 (as ``step_product``): with an inf in
    W_hh^T the step stays finite; from any other h it multiplies, and 0 * inf = NaN comes through."""
    H, G = 16, 64
    if not _tilegemm.row_fits(G):
        pytest.skip("batch 1's loop needs AVX-512 (whole rows of _tilegemm.matvec)")
    rng = np.random.default_rng(2)
    W = _aligned.copy(rng.standard_normal((H, G)).astype(np.float32))   # W_hh^T (P, 4H)
    W[3, 5] = np.inf
    b = rng.standard_normal(G).astype(np.float32)
    for first, finite in ((0.0, True), (1e-30, False)):
        A = rng.standard_normal((2, 1, G)).astype(np.float32)
        hs, cs = np.zeros((3, 1, H), np.float32), np.zeros((2, 1, H), np.float32)
        hs[0, 0, 0] = first                               # (h[3] = 0 meets the inf)
        _batchmajor_loops._one_row_loop(W, A, b, hs, cs, False)
        assert np.isfinite(hs[1]).all() == finite
