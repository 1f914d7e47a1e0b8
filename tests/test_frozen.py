"""Layer.frozen(): an inference-only snapshot that prepares its weights once, with the layer's results."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _blas, engine

pytestmark = pytest.mark.usefixtures("backend")

I, H, T = 3, 5, 6              # distinct sizes; batches 4 and 7 below


def lstm_and_inputs(dtype, **kw):
    lstm = nplstm.LSTM(I, H, dtype=dtype, seed=2, **kw)
    rng = np.random.default_rng(3)
    for v in lstm.params.values():                        # non-zero biases, saturated gates
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    xs = [rng.standard_normal((T, b, I)).astype(dtype) for b in (4, 7, 4)]
    return lstm, xs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=2)],
                         ids=["1", "2bi", "proj"])
@pytest.mark.parametrize("threads", [None, 1], ids=["default-threads", "1thread"])
def test_frozen_copy_answers_as_the_layer_at_every_call_and_batch_size(dtype, kw, threads):
    """Batch 4, then 7, then 4 again with lengths, then 1 twice, the second time with a length:
    what the first call kept serves the later ones (oneDNN's W_hh is packed for a row count, kept
    per batch size; on one thread W_ih for the most rows so far), with the layer's own results:
    float64 exactly, float32 to rounding (the copy's input product may run on oneDNN's packed
    kernel where the layer's runs on OpenBLAS's)."""
    lstm, xs = lstm_and_inputs(dtype, **kw)
    xs += [xs[0][:, :1]] * 2
    frozen = lstm.frozen()
    with threadpool_limits(threads):
        for k, x in enumerate(xs):
            lengths = {2: [T, 2, 5, 1], 4: [4]}.get(k)
            want, (h, c) = lstm(x, lengths=lengths)
            got, (fh, fc) = frozen(x, lengths=lengths)
            for a, b in ((got, want), (fh, h), (fc, c)):
                same(a, b, err_msg=f"call {k}")


def same(a, b, err_msg=""):
    """Equal for float64; for float32 to a few ulp of the values (|h|, |c| <= ~3 here)."""
    if a.dtype == np.float64:
        np.testing.assert_array_equal(a, b, err_msg=err_msg)
    else:
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6, err_msg=err_msg)


@pytest.mark.parametrize("B", [7, 1])
def test_frozen_copy_matches_torch(B):
    """An independent oracle for the kept packings (batch 1: h W_hh^T summed by rows of W_hh^T four
    at a time, H = 5 rows of it, the last one alone): torch.nn.LSTM on the same weights, float32."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, 2, bidirectional=True)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.7, 0.7)
    lstm = nplstm.LSTM(I, H, 2, bidirectional=True)
    lstm.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    frozen = lstm.frozen()
    x = np.random.default_rng(4).standard_normal((T, B, I)).astype(np.float32)
    with threadpool_limits(1), torch.no_grad():
        want = module(torch.tensor(x))[0].numpy()
        for _ in range(2):                                # the second call runs on what the first kept
            np.testing.assert_allclose(frozen(x)[0], want, rtol=0, atol=1e-5)


def test_frozen_copy_is_a_read_only_snapshot():
    lstm, (x, *_) = lstm_and_inputs("float64")
    frozen = lstm.frozen()
    before = frozen(x)[0]
    for v in lstm.params.values():                        # training the original afterwards ...
        v *= 0.5
    np.testing.assert_array_equal(frozen(x)[0], before)   # ... does not reach the copy
    assert not np.array_equal(lstm(x)[0], before)
    with pytest.raises(ValueError, match="read-only"):
        frozen.params["weight_hh_l0"][0, 0] = 1.0
    with pytest.raises(TypeError):                        # nor replaced: the kept forms would go stale
        frozen.params["weight_hh_l0"] = lstm.params["weight_hh_l0"]


@pytest.mark.parametrize("call", [
    lambda f, x: f.forward(x, train=True),
    lambda f, x: f.load_state_dict(f.state_dict()),
    lambda f, x: f.to("cpu"),
], ids=["train", "load_state_dict", "to"])
def test_frozen_copy_refuses_what_would_change_or_train_it(call):
    lstm, (x, *_) = lstm_and_inputs("float32")
    with pytest.raises(ValueError, match="frozen"):
        call(lstm.frozen(), x)
    call(lstm, x)                                         # the layer itself still can


@pytest.mark.parametrize("layer", [nplstm.GRU, nplstm.RNN])
def test_frozen_gru_and_rnn(layer):
    net = layer(I, H, num_layers=2, bidirectional=True, seed=5)
    x = np.random.default_rng(6).standard_normal((T, 4, I)).astype(np.float32)
    frozen = net.frozen()
    for _ in range(2):
        got, want = frozen(x), net(x)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_frozen_copy_packs_its_weights_once(monkeypatch):
    """Where the batch-major path packs W_hh for oneDNN, a frozen copy does it at its first call
    only (and W_ih); the layer itself packs W_hh at every call (its weights may
    have changed in between), and not W_ih, whose packing costs more than one call saves."""
    if engine.get_backend() != "numba" or "onednn" not in _blas.PROVIDERS or _blas._packing is None:
        pytest.skip("packing is the batch-major path's (numba and oneDNN)")
    packs = []
    real = _blas.pack_right
    monkeypatch.setattr(_blas, "pack_right", lambda *a: packs.append(1) or real(*a))
    lstm, (x, *_) = lstm_and_inputs("float32", bidirectional=True)
    frozen = lstm.frozen()
    with threadpool_limits(1), _blas.use("onednn"):
        for _ in range(3):
            frozen(x)
        assert len(packs) == 4                            # W_hh and W_ih, per direction
        frozen(x[:, :2])                                  # fewer rows: W_hh again for them, W_ih kept
        assert len(packs) == 6
        frozen(np.concatenate([x, x], axis=1))            # more rows than W_ih was packed for: both again
        assert len(packs) == 10
        for _ in range(3):
            lstm(x)
        assert len(packs) == 10 + 3 * 2                   # W_hh only


def test_frozen_row_blocks_share_one_packing_of_w_ih(monkeypatch, python_loop):
    """At 2 threads a batch of 35 runs as two GIL-free row blocks (``_gilfree``). A frozen copy
    packs W_ih^T for oneDNN at its first call only, and both blocks' input GEMMs multiply by that
    packing; the results are the engine's Python loop's."""
    from nplstm import _rowblocks
    if engine.get_backend() != "numba" or not _rowblocks.gil_free():
        pytest.skip("GIL-free row blocks need numba, sched_yield and oneDNN's packed GEMM")
    shapes = []
    real = _blas.pack_right
    monkeypatch.setattr(_blas, "pack_right", lambda R, n: shapes.append(R.shape) or real(R, n))
    lstm, _ = lstm_and_inputs("float32")
    x = np.random.default_rng(4).standard_normal((T, 35, I)).astype(np.float32)
    frozen = lstm.frozen()
    before = nplstm.get_num_threads()
    try:
        nplstm.set_num_threads(2)
        assert _rowblocks.bounds(35) == [(0, 17), (17, 35)]
        got = [frozen(x) for _ in range(3)]
    finally:
        nplstm.set_num_threads(before)
    assert shapes.count((H, 4 * H)) == 2                  # W_hh^T, once per block size (17 and 18 rows)
    assert shapes.count((I, 4 * H)) == 1                  # W_ih^T, once for both blocks and all calls
    python_loop()
    want, (h, c) = lstm(x)
    for out, (fh, fc) in got:
        for a, b in ((out, want), (fh, h), (fc, c)):
            same(a, b)


def test_frozen_copy_serves_several_threads_at_once():
    """The compiled loops release the GIL, so a server may call one frozen copy from several
    threads: every call allocates its own buffers, and what the copy keeps is read-only."""
    from concurrent.futures import ThreadPoolExecutor
    lstm = nplstm.LSTM(I, 32, num_layers=2, bidirectional=True, seed=1)
    frozen = lstm.frozen()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((T, b, I)).astype(np.float32) for b in (1, 4, 7, 16) * 2]
    with threadpool_limits(1):
        want = [lstm(x)[0] for x in xs]
        with ThreadPoolExecutor(4) as pool:
            for _ in range(3):
                for got, w in zip(pool.map(lambda x: frozen(x)[0], xs), want):
                    same(got, w)
