"""nplstm.LSTM: finite differences, the reference API, a hand-stepped cell, and its own contract."""
import zlib
from contextlib import nullcontext

import numpy as np
import pytest

import nplstm
from nplstm import engine, reference
from nplstm.gradcheck import check_layer

pytestmark = pytest.mark.usefixtures("backend")

I, H, B, T = 3, 5, 4, 6        # distinct sizes: a transposed axis cannot pass
LENGTHS = [6, 3, 1, 5]         # unsorted, with a full row, so sorting and un-sorting are exercised


def randomize(layer):
    """Every weight and bias drawn from U(-0.8, 0.8), larger than torch's init (some gates saturate),
    each from a generator seeded by its name: the same in every process (Python's hash() of a
    str is not, and a test comparing float32 sums ran on other weights at each run)."""
    for k, v in layer.params.items():
        v[...] = np.random.default_rng(zlib.crc32(k.encode())).uniform(-0.8, 0.8, v.shape)
    return layer


def make(seed=0, **kw):
    return randomize(nplstm.LSTM(kw.pop("input_size", I), H, dtype=kw.pop("dtype", "float64"), seed=seed, **kw))


def x_for(lstm, seed=1, unbatched=False):
    shape = (T, I) if unbatched else ((B, T, I) if lstm.batch_first else (T, B, I))
    return np.random.default_rng(seed).standard_normal(shape)


CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(proj_size=2),
    dict(num_layers=2, bidirectional=True, proj_size=3),
    dict(bias=False),
    dict(num_layers=2, dropout=0.4),
]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) or "default" for c in CONFIGS])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_gradcheck(config, lengths):
    lstm = make(**config)
    report = check_layer(lstm, x_for(lstm), lengths=lengths)
    assert set(report.errors) == set(lstm.params) | {"x", "h0", "c0"}
    assert report.max_error <= 1e-7, report


def test_gradcheck_unbatched():
    lstm = make(num_layers=2, bidirectional=True)
    report = check_layer(lstm, x_for(lstm, unbatched=True))
    assert report.max_error <= 1e-7, report


def seed_to_torch_layout(p, n_a):
    """The seed's (f, i, c, o) weights on [a_prev; x] -> PyTorch's packed [i|f|g|o] rows."""
    W = np.concatenate([p["Wi"], p["Wf"], p["Wc"], p["Wo"]])          # (4H, n_a + n_x)
    b = np.concatenate([p["bi"], p["bf"], p["bc"], p["bo"]])[:, 0]
    return {"weight_ih_l0": W[:, n_a:], "weight_hh_l0": W[:, :n_a], "bias_ih_l0": b, "bias_hh_l0": np.zeros_like(b)}


def test_matches_reference_api_forward_and_backward():
    n_x, n_a, m, T_x = I, H, B, T
    params = reference.initialize_parameters(n_x, n_a, 2, seed=3, scale=0.8)
    rng = np.random.default_rng(4)
    x, a0 = rng.standard_normal((n_x, m, T_x)), rng.standard_normal((n_a, m))
    a, _, c, caches = reference.lstm_forward(x, a0, params)
    G = rng.standard_normal((n_a, m, T_x))
    g = reference.lstm_backward(G, caches, return_dc0=True)

    lstm = nplstm.LSTM(n_x, n_a, dtype="float64")
    lstm.load_state_dict(seed_to_torch_layout(params, n_a))
    hx = (a0.T[None], np.zeros((1, m, n_a)))
    out, (h_n, c_n), cache = lstm.forward(x.transpose(2, 1, 0), hx, train=True)
    np.testing.assert_allclose(out, a.transpose(2, 1, 0), atol=1e-13)
    np.testing.assert_allclose(c_n[0], c[:, :, -1].T, atol=1e-13)
    dx, (dh0, dc0), grads = lstm.backward(G.transpose(2, 1, 0), cache)
    np.testing.assert_allclose(dx, g["dx"].transpose(2, 1, 0), atol=1e-13)
    np.testing.assert_allclose(dh0[0], g["da0"].T, atol=1e-13)
    np.testing.assert_allclose(dc0[0], g["dc0"].T, atol=1e-13)
    want = seed_to_torch_layout({k: g["d" + k] for k in reference.GATE_KEYS}, n_a)
    np.testing.assert_allclose(grads["weight_ih_l0"], want["weight_ih_l0"], atol=1e-12)
    np.testing.assert_allclose(grads["weight_hh_l0"], want["weight_hh_l0"], atol=1e-12)
    np.testing.assert_allclose(grads["bias_ih_l0"], want["bias_ih_l0"], atol=1e-12)
    np.testing.assert_allclose(grads["bias_hh_l0"], want["bias_ih_l0"], atol=1e-12)


@pytest.mark.parametrize("proj_size", [0, 2])
def test_sequence_equals_stepping_the_cell(proj_size):
    lstm = make(num_layers=2, bidirectional=True, proj_size=proj_size)
    x = x_for(lstm)
    rng = np.random.default_rng(5)
    P = proj_size or H
    h0, c0 = rng.standard_normal((4, B, P)), rng.standard_normal((4, B, H))
    out, (h_n, c_n) = lstm(x, (h0, c0))
    inp = x
    for layer in range(2):
        outs = []
        for d, steps in enumerate((range(T), range(T - 1, -1, -1))):
            k, sfx = 2 * layer + d, f"_l{layer}" + ("_reverse" if d else "")
            w = [lstm.params.get(n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
            h, c, hs = h0[k], c0[k], [None] * T
            for t in steps:
                h, c = engine.cell_step(inp[t], h, c, *w)
                hs[t] = h
            np.testing.assert_allclose(h_n[k], h, atol=1e-13)
            np.testing.assert_allclose(c_n[k], c, atol=1e-13)
            outs.append(np.stack(hs))
        inp = np.concatenate(outs, axis=2)
    np.testing.assert_allclose(out, inp, atol=1e-13)


def test_lengths_match_running_each_row_alone():
    lstm = make(num_layers=2, bidirectional=True)
    x = x_for(lstm)
    out, (h_n, c_n) = lstm(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        o1, (h1, c1) = lstm(x[:n, b])                     # unbatched, truncated to its own length
        np.testing.assert_allclose(out[:n, b], o1, atol=1e-13)
        np.testing.assert_allclose(h_n[:, b], h1, atol=1e-13)
        np.testing.assert_allclose(c_n[:, b], c1, atol=1e-13)
        assert np.all(out[n:, b] == 0)


def test_full_lengths_equal_no_lengths_and_padding_gets_no_gradient():
    lstm = make(bidirectional=True)
    x = x_for(lstm)
    np.testing.assert_array_equal(lstm(x, lengths=[T] * B)[0], lstm(x)[0])
    out, _, cache = lstm.forward(x, lengths=LENGTHS, train=True)
    G = np.ones_like(out)
    dx, _, grads = lstm.backward(G, cache)
    G2 = G.copy()
    for b, n in enumerate(LENGTHS):
        G2[n:, b] = 1e6                                   # garbage on padded steps is ignored
        assert np.all(dx[n:, b] == 0)
    dx2, _, grads2 = lstm.backward(G2, lstm.forward(x, lengths=LENGTHS, train=True)[2])
    np.testing.assert_array_equal(dx, dx2)


def test_a_cache_serves_one_backward():
    """The backward writes dL/dz over the cached gates, so a second one on the same cache is refused."""
    lstm = make()
    out, _, cache = lstm.forward(x_for(lstm), train=True)
    lstm.backward(np.ones_like(out), cache)
    with pytest.raises(ValueError, match="cache was already used by a backward"):
        lstm.backward(np.ones_like(out), cache)


@pytest.mark.parametrize("cls", [nplstm.LSTM, nplstm.GRU, nplstm.RNN])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True), "unbatched"])
def test_d_output_none_is_a_loss_on_the_final_state_alone(cls, kw):
    """d_output=None: the gradient of a loss on h_n (and c_n) alone, as an explicit zero d_output gives."""
    unbatched = kw == "unbatched"
    layer = randomize(cls(I, H, dtype="float64", seed=0, **({} if unbatched else kw)))
    x = x_for(layer, unbatched=unbatched)

    def run(zeros):
        out, state, cache = layer.forward(x, lengths=None if unbatched else LENGTHS, train=True)
        rng = np.random.default_rng(3)                    # the same d_state both times
        d_state = (tuple(rng.standard_normal(s.shape) for s in state) if cls is nplstm.LSTM
                   else rng.standard_normal(state.shape))
        got = layer.backward(np.zeros_like(out) if zeros else None, cache, d_state)
        return [got[0], *(got[1] if cls is nplstm.LSTM else (got[1],)), *got[2].values()]
    got, want = run(zeros=False), run(zeros=True)
    assert any(np.abs(w).max() > 0 for w in want)         # (the state's gradient reaches everything)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_float32_layer():
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, seed=0)
    assert all(v.dtype == np.float32 for v in lstm.params.values())
    x = x_for(lstm)                                       # float64 input is cast once
    out, (h, c), cache = lstm.forward(x, train=True)
    dx, (dh0, dc0), grads = lstm.backward(np.ones(out.shape), cache)
    assert all(a.dtype == np.float32 for a in (out, h, c, dx, dh0, dc0, *grads.values()))
    ref64 = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, dtype="float64")
    ref64.load_state_dict(lstm.state_dict())
    np.testing.assert_allclose(out, ref64(x)[0], atol=1e-5)
    for lengths in (None, LENGTHS):                       # inference too, with and without padding
        np.testing.assert_allclose(lstm(x, lengths=lengths)[0], ref64(x, lengths=lengths)[0], atol=1e-5)
    ref_dx, _, ref_grads = ref64.backward(np.ones(out.shape), ref64.forward(x, train=True)[2])
    np.testing.assert_allclose(dx, ref_dx, atol=1e-4)
    for k in grads:
        np.testing.assert_allclose(grads[k], ref_grads[k], atol=1e-4, err_msg=k)


def test_dropout_only_in_training():
    lstm = make(num_layers=2, dropout=0.5)
    plain = make(num_layers=2)
    x = x_for(lstm)
    np.testing.assert_array_equal(lstm(x)[0], plain(x)[0])
    assert not np.allclose(lstm.forward(x, train=True)[0], plain(x)[0])


def test_init_and_forget_bias():
    lstm = nplstm.LSTM(7, 16, num_layers=2, seed=0, forget_bias=1.0)
    bound = 1 / 4
    for k, v in lstm.params.items():
        if k.startswith("bias_ih"):
            assert np.all(v[16:32] == 1.0)
        elif k.startswith("bias_hh"):
            assert np.all(v[16:32] == 0.0)
        assert np.all(np.abs(v[32:] if k.startswith("bias") else v) <= bound)
    w = nplstm.LSTM(7, 16, seed=0).params["weight_hh_l0"]
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)          # U(-b, b)
    np.testing.assert_array_equal(w, nplstm.LSTM(7, 16, seed=0).params["weight_hh_l0"])
    assert not np.array_equal(w, nplstm.LSTM(7, 16, seed=1).params["weight_hh_l0"])


def test_state_dict_round_trip_and_key_order():
    lstm = make(num_layers=2, bidirectional=True, proj_size=2)
    keys = list(lstm.state_dict())
    assert keys[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert keys[5] == "weight_ih_l0_reverse" and lstm.params["weight_ih_l1"].shape == (4 * H, 4)
    other = make(seed=9, num_layers=2, bidirectional=True, proj_size=2)
    other.load_state_dict(lstm.state_dict())
    x = x_for(lstm)
    np.testing.assert_array_equal(other(x)[0], lstm(x)[0])


def test_single_blas_thread_sets_one_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from nplstm import _threads

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        with _threads.single_blas_thread():
            assert blas_threads() and all(n == 1 for n in blas_threads())
        assert blas_threads() == before


def test_the_batch_of_one_path_runs_blas_on_one_thread(monkeypatch):
    """Its GEMMs are tiny; split over busy cores they were measured 100x slower (see nplstm._threads).
    Training sets BLAS to one thread for the forward and the backward; inference only around an
    input side that is BLAS's GEMM (4H = 4 x 5 is not whole panels of our kernel), not where the
    whole call is compiled (4H = 64 on AVX-512: the kernel's input side, the matrix-vector loop)."""
    if engine.get_backend() != "numba":
        pytest.skip("the batch-of-one path is the numba backend's")
    from nplstm import _threads, _tilegemm
    calls = []
    real = _threads.single_blas_thread
    monkeypatch.setattr(_threads, "single_blas_thread", lambda: calls.append(1) or real())
    lstm = nplstm.LSTM(I, H, seed=0)                      # float32, batch 1: _batchmajor's matrix-vector loop
    out, _, cache = lstm.forward(np.ones((T, 1, I), np.float32), train=True)
    lstm.backward(np.ones_like(out), cache)
    assert len(calls) == 2
    lstm(np.ones((T, 1, I), np.float32))                  # inference: the input side's GEMM
    assert len(calls) == 3
    lstm(np.ones((T, 2, I), np.float32))                  # batch 2: the generic loop, BLAS as set
    assert len(calls) == 3
    wide = nplstm.LSTM(I, 16, seed=0)
    wide(np.ones((T, 1, I), np.float32))
    assert len(calls) == (3 if _tilegemm.suits(I, 64) else 4)


@pytest.mark.parametrize("provider", ["openblas", "onednn"])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)], ids=["1", "2bi"])
@pytest.mark.parametrize("lengths", [None, LENGTHS, [2, 3, 1, 4]], ids=["full", "lengths", "all-short"])
def test_compiled_time_loop_equals_the_python_loop(monkeypatch, kw, lengths, provider):
    """float32 at batch > 1 runs the whole time loop in numba, calling an sgemm itself (nplstm._blas:
    NumPy's OpenBLAS or oneDNN's); the Python loop over the same step kernels, with np.matmul, is
    the reference."""
    from nplstm import _blas
    if engine.get_backend() != "numba" or provider not in _blas.PROVIDERS:
        pytest.skip(f"the compiled loop needs numba and the {provider} sgemm")
    lstm = make(dtype="float32", **kw)
    x = x_for(lstm).astype(np.float32)
    rng = np.random.default_rng(4)
    L = lstm.num_layers * lstm.num_directions
    h0, c0 = (rng.standard_normal((L, B, H)).astype(np.float32) for _ in range(2))

    def run():
        out, (h, c), cache = lstm.forward(x, (h0, c0), lengths=lengths, train=True)
        G = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
        dx, (dh0, dc0), grads = lstm.backward(G, cache, (h0, c0))
        return [out, h, c, dx, dh0, dc0, lstm(x, (h0, c0), lengths)[0], *grads.values()]
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1), _blas.use(provider):   # oneDNN is used on one thread only
        assert _blas.provider() == provider
        got = run()
        tag = lstm.forward(x, train=True)[2]["layers"][0][0][0]
        # oneDNN with its packed GEMM: the batch-major path (nplstm._batchmajor), else the engine's own
        assert isinstance(tag, str) == (provider == "onednn" and _blas.packed_compute() is not None)
    monkeypatch.setattr(_blas, "gemm", lambda: None)
    want = run()
    for k, (a, b) in enumerate(zip(got, want)):                # float32 sums in another order: a few ulp of
        atol = 2e-6 * max(1.0, float(np.abs(b).max()))            # the largest value (gradients summed over T*B)
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=str(k))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_pack_halves_the_sigmoid_rows_and_unscales_exactly(kind):
    """Wx/Wh carry the sigmoid rows halved; the backward's w_ih/w_hh (made on first use) are the
    original rows in engine order, bit for bit."""
    rng = np.random.default_rng(7)
    G = engine.KINDS[kind].gates
    w_ih, w_hh = rng.standard_normal((G * H, I)), rng.standard_normal((G * H, H))
    w = engine.pack(w_ih, w_hh, rng.standard_normal(G * H), rng.standard_normal(G * H), kind=kind)
    perm, s = engine.KINDS[kind].perm(H), engine.KINDS[kind].sigmoid_gates * H
    np.testing.assert_array_equal(w.w_ih, w_ih[perm])
    np.testing.assert_array_equal(w.w_hh, w_hh[perm])
    np.testing.assert_array_equal(w.Wx[:s], w_ih[perm][:s] / 2)
    np.testing.assert_array_equal(w.Wx[s:], w_ih[perm][s:])
    np.testing.assert_array_equal(w.Wh[:s], w_hh[perm][:s] / 2)


def test_batch_major_path_reads_pytorch_weights_as_given():
    """float32 on oneDNN (nplstm._batchmajor) multiplies PyTorch's arrays themselves: the engine's
    packed copies (gathered, halved) are never made, in training or inference."""
    from nplstm import _blas
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(8)
    w = engine.pack(*(rng.standard_normal(s).astype(np.float32) for s in ((4 * H, I), (4 * H, H), 4 * H, 4 * H)))
    x, h0, c0 = (rng.standard_normal(s).astype(np.float32) for s in ((T, B, I), (B, H), (B, H)))
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn") if "onednn" in _blas.PROVIDERS else nullcontext():
        if engine.get_backend() != "numba" or _blas.packed_compute() is None:
            pytest.skip("the batch-major path needs numba and oneDNN's packed GEMM")
        out, h, c, cache = engine.forward(x, h0, c0, w, train=True)
        engine.backward(np.ones_like(out), None, None, cache)
        engine.forward(x, h0, c0, w, train=False)
    assert isinstance(cache[0], str) and "_packed" not in vars(w)


@pytest.mark.parametrize("hidden, batch, path", [(5, 4, "batch-major"), (176, 17, "engine")])
def test_at_two_threads_small_steps_run_on_one_thread(monkeypatch, python_loop, hidden, batch, path):
    """With oneDNN's OpenMP at 2 threads, a step's product below ~2M multiply-adds is too small to
    split: the batch-major path runs it on one OpenMP thread (restored after), and equals the
    Python loop; 17 x 176 x 704 = 2.1M stays on the engine's OpenBLAS loop."""
    from nplstm import _blas
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if engine.get_backend() != "numba" or "onednn" not in _blas.PROVIDERS or _blas._packing is None:
        pytest.skip("the batch-major path needs numba and oneDNN's packed GEMM")
    lstm = nplstm.LSTM(I, hidden, bidirectional=True, seed=3)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((T, batch, I)).astype(np.float32)
    G = rng.standard_normal((T, batch, 2 * hidden)).astype(np.float32)

    def run():
        out, (h, c), cache = lstm.forward(x, lengths=[T] + [2] * (batch - 1), train=True)
        assert _blas._omp_threads() == 2                  # the path's one thread does not leak out
        dx, _, grads = lstm.backward(G, cache)
        assert _blas._omp_threads() == 2
        return cache["layers"][0][0][0], [out, h, c, dx, *grads.values()]
    with threadpoolctl.threadpool_limits(2, user_api="openmp"), _blas.use("onednn"):
        tag, got = run()
    assert tag == path if path == "batch-major" else not isinstance(tag, str)
    python_loop()
    with threadpoolctl.threadpool_limits(2, user_api="openmp"):
        _, want = run()
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6, err_msg=str(k))


@pytest.mark.parametrize("lengths", [None, [4]], ids=["full", "short"])
def test_batch_of_one_equals_the_python_loop(monkeypatch, lengths):
    """float32 at batch 1 (numba) runs nplstm._batchmajor with numba's own matrix-vector products;
    the engine's Python loop over the same weights is the reference, with a non-zero initial state,
    both directions, and a sequence shorter than T."""
    if engine.get_backend() != "numba":
        pytest.skip("the batch-of-one path is the numba backend's")
    lstm = make(dtype="float32", num_layers=2, bidirectional=True)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((4, 1, H)).astype(np.float32) for _ in range(2))
    G = rng.standard_normal((T, 1, 2 * H)).astype(np.float32)

    def run():
        out, (h, c), cache = lstm.forward(x, (h0, c0), lengths=lengths, train=True)
        tag = cache["layers"][0][0][0]
        dx, (dh0, dc0), grads = lstm.backward(G, cache, (h0, c0))
        return tag, [out, h, c, dx, dh0, dc0, lstm(x, (h0, c0), lengths)[0], *grads.values()]
    tag, got = run()
    assert tag == "batch-major"
    monkeypatch.setattr(engine, "_batch_major", lambda w, x, kinds=None: False)
    tag, want = run()
    assert not isinstance(tag, str)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6, err_msg=str(k))


def test_batch_major_path_refuses_to_run_without_its_gemm(monkeypatch):
    """Called for batch > 1 when oneDNN's packed GEMM is gone (threads changed in between): an error,
    not a loop that would multiply only the first row."""
    pytest.importorskip("numba")
    from nplstm import _batchmajor, _blas
    monkeypatch.setattr(_blas, "packed_compute", lambda: None)
    rng = np.random.default_rng(9)
    w = engine.pack(*(rng.standard_normal(s).astype(np.float32) for s in ((4 * H, I), (4 * H, H), 4 * H, 4 * H)))
    x, h0 = rng.standard_normal((T, 2, I)).astype(np.float32), np.zeros((2, H), np.float32)
    with pytest.raises(RuntimeError, match="packed GEMM"):
        _batchmajor.forward(x, h0, h0, w, None, False, False)


@pytest.mark.parametrize("trial", range(12))
def test_batch_major_path_equals_the_python_loop_on_random_configurations(monkeypatch, trial):
    """Random sizes (H = 1, 7, 33; B = 1, 2, 17; T = 1, 3, 8), layers, directions, batch_first,
    bias, lengths and initial state: the float32 path on one thread (nplstm._batchmajor where it
    applies) against the engine's Python loop."""
    if engine.get_backend() != "numba":
        pytest.skip("the compiled paths are the numba backend's")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(100 + trial)
    I_, H_, B_, T_ = int(rng.integers(1, 9)), int(rng.choice([1, 7, 33])), int(rng.choice([1, 2, 17])), \
        int(rng.choice([1, 3, 8]))
    L, bi, bf, bias = int(rng.integers(1, 3)), bool(rng.integers(2)), bool(rng.integers(2)), bool(rng.integers(2))
    D = 2 if bi else 1
    lstm = nplstm.LSTM(I_, H_, L, bias=bias, batch_first=bf, bidirectional=bi, seed=trial)
    x = rng.standard_normal((B_, T_, I_) if bf else (T_, B_, I_)).astype(np.float32)
    h0, c0 = (rng.standard_normal((L * D, B_, H_)).astype(np.float32) for _ in range(2))
    lengths = rng.integers(1, T_ + 1, B_) if rng.integers(2) else None
    G = rng.standard_normal((B_, T_, D * H_) if bf else (T_, B_, D * H_)).astype(np.float32)

    def run():
        out, (h, c), cache = lstm.forward(x, (h0, c0), lengths=lengths, train=True)
        dx, (dh0, dc0), grads = lstm.backward(G, cache, (h0, c0))
        return [out, h, c, dx, dh0, dc0, lstm(x, (h0, c0), lengths)[0], *grads.values()]
    with threadpoolctl.threadpool_limits(1):
        got = run()
    monkeypatch.setattr(engine, "_batch_major", lambda w, x, kinds=None: False)
    want = run()
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5, err_msg=str(k))
