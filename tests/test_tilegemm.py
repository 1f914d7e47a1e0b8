"""nplstm._tilegemm: the batch-major LSTM step's own product kernel. The kernel against float64
NumPy; a layer whose steps run on it against the engine's Python loop (an independent path)."""
import numpy as np
import pytest

import nplstm
from nplstm import engine

numba = pytest.importorskip("numba")
from nplstm import _tilegemm as tg  # noqa: E402  (needs numba)


@numba.njit
def _gemm(panels, X, n, Y):
    tg.gemm(panels, X, n, Y)


@pytest.mark.parametrize("N", [64, 192])
@pytest.mark.parametrize("K", [1, 3, 4, 5, 17, 130])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 6, 7, 12, 13, 32])
def test_gemm_equals_the_float64_product(n, K, N):
    """Every row count a tile can have (1-6: n = 7 is tiles of 4 and 3, 13 of 5, 4 and 4), more
    tiles than one, K below, at and past the unrolled loop's 4 and with a remainder, several
    panels; rows past n are left alone (all of them, n = 0)."""
    rng = np.random.default_rng(100 * n + K)
    X = rng.standard_normal((n + 2, K)).astype(np.float32)
    W = rng.standard_normal((K, N)).astype(np.float32)
    Y = np.full((n + 2, N), 7.0, np.float32)
    _gemm(tg.pack(W), X, n, Y)
    want = X[:n].astype(np.float64) @ W.astype(np.float64)
    bound = 2 * K * np.finfo(np.float32).eps * (np.abs(X[:n]) @ np.abs(W)).max(initial=0)   # float32 sums
    assert np.abs(Y[:n] - want).max(initial=0) <= bound                                    # of K products
    assert (Y[n:] == 7).all()


@numba.njit
def _gemm2(panels, X, Hh, kh, n, Y):
    tg.gemm2(panels, X, Hh, kh, n, Y)


@pytest.mark.parametrize("n, K, P, N", [(1, 5, 16, 64), (6, 3, 7, 128), (7, 5, 16, 64), (13, 17, 6, 192)])
def test_gemm2_sums_both_products(n, K, P, N):
    """X @ W1 + H @ W2 on panels of W1 over W2 (``tg.pack(W1, W2)``), every row count of a tile and
    more tiles than one, K and P with and without a remainder of the unrolled loop; kh = 0 reads
    no H and is X @ W1 to the bit, as ``gemm`` on W1's own panels; rows past n are left alone."""
    rng = np.random.default_rng(10 * n + K)
    X, Hh = (rng.standard_normal((n + 2, k)).astype(np.float32) for k in (K, P))
    W1, W2 = (rng.standard_normal((k, N)).astype(np.float32) for k in (K, P))
    panels = tg.pack(W1, W2)
    assert panels.shape == (N // 64, K + P, 64)
    Y = np.full((n + 2, N), 7.0, np.float32)
    _gemm2(panels, X, Hh, P, n, Y)
    XH, W = np.hstack([X, Hh])[:n], np.vstack([W1, W2])
    assert np.abs(Y[:n] - XH.astype(np.float64) @ W.astype(np.float64)).max() <= _float32_bound(XH, W)
    assert (Y[n:] == 7).all()
    Hh[:] = np.nan                                        # kh = 0: H not read
    _gemm2(panels, X, Hh, 0, n, Y)
    alone = np.full((n + 2, N), 7.0, np.float32)
    _gemm(tg.pack(W1), X, n, alone)
    np.testing.assert_array_equal(Y, alone)


@pytest.mark.parametrize("n", [7, 25])
def test_gemms_past_the_prefetch_size_equal_the_float64_product(n):
    """Panels larger than ``FETCH_BYTES`` take the kernel's other code path, whose k loops prefetch
    the next panel: ``gemm`` and ``gemm2`` (its two sources' lines counted on) against float64, on
    two tiles and on five (the fifth prefetches nothing), three panels (the last fetches the first)."""
    N = 192
    K = tg.FETCH_BYTES // (4 * N) + 3                     # just past it, and K % 4 == 3 (the remainder loop)
    K += (3 - K % 4) % 4
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n + 1, K)).astype(np.float32)
    W = rng.standard_normal((K, N)).astype(np.float32)
    Y = np.full((n + 1, N), 7.0, np.float32)
    _gemm(tg.pack(W), X, n, Y)
    assert np.abs(Y[:n] - X[:n].astype(np.float64) @ W.astype(np.float64)).max() <= _float32_bound(X[:n], W)
    assert (Y[n:] == 7).all()
    P = 5
    Hh, W2 = rng.standard_normal((n + 1, P)).astype(np.float32), rng.standard_normal((P, N)).astype(np.float32)
    _gemm2(tg.pack(W, W2), X, Hh, P, n, Y)
    XH, WW = np.hstack([X, Hh])[:n], np.vstack([W, W2])
    assert np.abs(Y[:n] - XH.astype(np.float64) @ WW.astype(np.float64)).max() <= _float32_bound(XH, WW)


@numba.njit
def _gemm_in_place(W, X, n, Y):
    tg.gemm_in_place(W, X, n, Y)


@numba.njit
def _matvec(x, W, y):
    tg.matvec(x, W, y)


def _held_t(rng, K, N):
    """W (K, N) as a layer holds W_ih^T and W_hh^T: the transposed view of a column-major (N, K)
    weight, 64-byte aligned (``recurrent._Recurrent._held``)."""
    from nplstm import _aligned
    W = _aligned.copy(rng.standard_normal((N, K)).astype(np.float32), order="F").T
    assert W.flags.c_contiguous and W.ctypes.data % 64 == 0
    return W


def _float32_bound(X, W):
    """What float32 sums of K products may be off by, at most (K: W's rows)."""
    return 2 * W.shape[0] * np.finfo(np.float32).eps * (np.abs(X) @ np.abs(W)).max()


@pytest.mark.parametrize("N", [64, 192])
@pytest.mark.parametrize("K", [1, 5, 17])
@pytest.mark.parametrize("n", [1, 6, 7, 13])
def test_gemm_in_place_equals_the_float64_product(n, K, N):
    """W read where it lies, its rows N apart (a panel is 64 of them): rows of tiles 1-6 and more
    tiles than one, K with and without a remainder of the unrolled loop, several panels."""
    rng = np.random.default_rng(100 * n + K)
    X = rng.standard_normal((n + 2, K)).astype(np.float32)
    W = _held_t(rng, K, N)
    Y = np.full((n + 2, N), 7.0, np.float32)
    _gemm_in_place(W, X, n, Y)
    assert np.abs(Y[:n] - X[:n].astype(np.float64) @ W.astype(np.float64)).max() <= _float32_bound(X[:n], W)
    assert (Y[n:] == 7).all()


@pytest.mark.parametrize("N", [64, 128, 192, 256, 320, 576, 1024])
@pytest.mark.parametrize("K", [1, 3, 4, 5, 64])
def test_matvec_equals_the_float64_product(K, N):
    """Batch 1's step product, 4 to 16 registers of sums at a time: every width (64-256 columns),
    and more blocks than one (320 = 256 + 64, 576, 1024)."""
    rng = np.random.default_rng(10 * K + N)
    x = rng.standard_normal(K).astype(np.float32)
    W = _held_t(rng, K, N)
    y = np.full(N + 3, 7.0, np.float32)
    _matvec(x, W, y[:N])
    assert np.abs(y[:N] - x.astype(np.float64) @ W.astype(np.float64)).max() <= _float32_bound(x[None], W)
    assert (y[N:] == 7).all()


@pytest.mark.parametrize("H", [16, 48, 64, 80])
def test_batch_of_one_on_the_row_kernel_equals_the_python_loop(python_loop, H):
    """float32 at batch 1, 4H = 64, 192, 256 and 320 (each a width of ``matvec``, and two blocks at
    320), two layers, both directions, a sequence shorter than T, non-zero biases and initial
    state: training forward, backward and inference against the engine's Python loop."""
    if engine.get_backend() != "numba" or not tg.row_fits.py_func(4 * H):
        pytest.skip("the row kernel needs numba and AVX-512")
    T, I = 7, 5
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float32", seed=4)
    rng = np.random.default_rng(H)
    x = rng.standard_normal((T, 1, I)).astype(np.float32)
    hx = tuple(rng.standard_normal((4, 1, H)).astype(np.float32) for _ in range(2))
    G = rng.standard_normal((T, 1, 2 * H)).astype(np.float32)
    got = _layer_runs(lstm, x, [5], G, hx)
    python_loop()
    want = _layer_runs(lstm, x, [5], G, hx)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6, err_msg=str(k))


def test_tiles_share_the_rows_out_evenly():
    """As few tiles as ROWS allows, none more than one row longer than another: no tile of one or
    two rows after full ones (``tg.tile_rows``)."""
    def rows_of_each_tile(n):
        tiles, fewer, more = tg.tile_rows(n)
        return [fewer + 1] * more + [fewer] * (tiles - more)
    assert tg.tile_rows(0) == (0, 0, 0)                   # (a row block whose sequences have all ended)
    for n in range(1, 80):
        rows = rows_of_each_tile(n)
        assert sum(rows) == n and len(rows) == -(-n // tg.ROWS) and max(rows) <= tg.ROWS, (n, rows)
        assert max(rows) - min(rows) <= 1, (n, rows)
    assert rows_of_each_tile(32) == [6, 6, 5, 5, 5, 5]


def test_pack_puts_64_columns_in_each_aligned_panel():
    W = np.arange(3 * 128, dtype=np.float32).reshape(3, 128)
    panels = tg.pack(W)
    assert panels.shape == (2, 3, 64) and panels.ctypes.data % 64 == 0
    np.testing.assert_array_equal(panels[1, 2], W[2, 64:])
    np.testing.assert_array_equal(panels[0, :, 5], W[:, 5])


@pytest.mark.parametrize("K, N, avx512, want", [
    (256, 1024, True, True), (1, 64, True, True), (16, 64, True, True),
    (512, 2048, True, True), (1024, 4096, True, True),   # past L2: the next panel prefetched
    (257, 1028, True, False), (16, 96, True, False),      # N not whole panels
    (0, 64, True, False), (256, 1024, False, False)])     # no AVX-512: LLVM would split every vector
def test_suits(monkeypatch, K, N, avx512, want):
    monkeypatch.setattr(tg, "_AVAILABLE", avx512)
    assert tg.suits(K, N) is want


@pytest.fixture
def packings(monkeypatch):
    """The kernel forced on (AVX-512 or not) for a test of the batch-major path, which needs numba
    and oneDNN's packed GEMM; the list of the shapes ``_tilegemm.pack`` packed (matrices stacked:
    their rows summed), and (K, N, "row") for each room made for a row block's pack row to fill
    (``_tilegemm.empty_panels``)."""
    from nplstm import _blas
    pytest.importorskip("threadpoolctl")
    if engine.get_backend() != "numba" or "onednn" not in _blas.PROVIDERS or _blas._packing is None:
        pytest.skip("the batch-major path needs numba and oneDNN's packed GEMM")
    monkeypatch.setattr(tg, "_AVAILABLE", True)
    shapes = []
    monkeypatch.setattr(tg, "pack", lambda *Ws, pack=tg.pack: shapes.append((sum(W.shape[0] for W in Ws),
                                                                              Ws[0].shape[1])) or pack(*Ws))
    monkeypatch.setattr(tg, "empty_panels", lambda K, N, f=tg.empty_panels: shapes.append((K, N, "row")) or f(K, N))
    return shapes


@pytest.mark.parametrize("features, name, want", [
    ("+avx2,+fma", None, False), ("+avx2,+avx512f,+fma", None, True),
    ("", "haswell", False), ("", "generic", False)])      # a named target: not the host's features
def test_available_follows_numbas_target(monkeypatch, features, name, want):
    monkeypatch.setattr(numba.config, "CPU_FEATURES", features)
    monkeypatch.setattr(numba.config, "CPU_NAME", name)
    assert tg.available() is want


def _layer_runs(lstm, x, lengths, G, hx=None):
    out, (h, c), cache = lstm.forward(x, hx, lengths=lengths, train=True)
    dx, (dh0, dc0), grads = lstm.backward(G, cache)
    inference = lstm(x, hx, lengths=lengths)
    return [out, h, c, dx, dh0, dc0, *grads.values(), inference[0], *inference[1]]


@pytest.mark.parametrize("batch, longest", [(2, 7), (9, 7), (9, 5)])
def test_a_layer_on_the_kernel_equals_the_python_loop(monkeypatch, packings, python_loop, batch, longest):
    """float32, H = 16 (4H = 64: one panel), two layers, both directions, lengths (the longest
    shorter than T: steps with no row), non-zero biases and initial state, batches of one tile
    and of two (6 + 3 rows): training forward, backward and inference through ``_batchmajor``
    with the step's product on ``_tilegemm`` (forced on, AVX-512 or not), against the engine's
    Python loop."""
    import threadpoolctl
    from nplstm import _blas
    T, I, H = 7, 5, 16
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float32", seed=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, batch, I)).astype(np.float32)
    lengths = [longest] + [int(v) for v in rng.integers(1, longest + 1, batch - 1)]
    hx = tuple(rng.standard_normal((4, batch, H)).astype(np.float32) for _ in range(2))
    G = rng.standard_normal((T, batch, 2 * H)).astype(np.float32)
    monkeypatch.setattr(tg, "L2_BYTES", 8 << 10)          # layer 0's inference at batch 9: the input side in the loop
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        got = _layer_runs(lstm, x, lengths, G, hx)
    # each of 4 layer-directions, in training and in inference: W_hh^T; but where layer 0's inference
    # makes the input side in the loop (A past L2: batch 9), W_ih^T over W_hh^T instead, for both
    # products of a step in one (``_batchmajor._xh_panels``); W_ih^T else read in place (``_in_place``)
    packed = [(H, 4 * H)] * 6 + [(I + H, 4 * H)] * 2 if batch == 9 else [(H, 4 * H)] * 8
    assert sorted(packings) == sorted(packed)
    python_loop()
    want = _layer_runs(lstm, x, lengths, G, hx)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6, err_msg=str(k))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_layer_past_l2_steps_on_the_kernel(packings, python_loop, threads):
    """H = 320: W_hh^T's panels (1.6 MiB) past ``FETCH_BYTES`` on this project's machines, so the
    step's product prefetches. The kernel takes it at any P now (it was oneDNN's past 256): the
    forward, backward and inference of a float32 layer, non-zero biases and initial state, on one
    thread and in 2-thread row blocks (W_hh^T's panels there packed by a pack row of the table),
    against the engine's Python loop."""
    import threadpoolctl
    from nplstm import _blas, _rowblocks
    if threads == 2 and not _rowblocks.gil_free():
        pytest.skip("GIL-free rows need numba, sched_yield and oneDNN's packed GEMM")
    T, B, I, H = 3, 35, 5, 320
    lstm = nplstm.LSTM(I, H, seed=2)
    rng = np.random.default_rng(11)
    for v in lstm.params.values():                        # non-zero biases
        v[...] = rng.uniform(-0.1, 0.1, v.shape)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    hx = tuple(rng.standard_normal((1, B, H)).astype(np.float32) for _ in range(2))
    G = rng.standard_normal((T, B, H)).astype(np.float32)
    was = nplstm.get_num_threads()
    try:
        nplstm.set_num_threads(threads)
        with threadpoolctl.threadpool_limits(threads), _blas.use("onednn"):
            got = _layer_runs(lstm, x, None, G, hx)
    finally:
        nplstm.set_num_threads(was)
    # W_hh^T's panels for training's forward and for inference: by the calling thread (1 thread), or
    # by a pack row of each call's table (2 threads)
    assert packings == ([(H, 4 * H)] * 2 if threads == 1 else [(H, 4 * H, "row")] * 2)
    python_loop()
    want = _layer_runs(lstm, x, None, G, hx)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5, err_msg=str(k))


def test_frozen_packs_for_the_kernel_once(packings):
    """A frozen copy keeps its panels, W_ih^T's and W_hh^T's (``Packed.gemm_forms``); the plain
    layer packs W_hh^T at each call, since its weights may change between calls, and reads its
    W_ih^T (held column-major) in place for the small input product."""
    import threadpoolctl
    from nplstm import _blas
    lstm = nplstm.LSTM(3, 16, dtype="float32", seed=2)
    frozen = lstm.frozen()
    x = np.random.default_rng(3).standard_normal((4, 6, 3)).astype(np.float32)
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        for _ in range(3):
            frozen(x)
        assert sorted(packings) == [(3, 64), (16, 64)]
        for _ in range(3):
            lstm(x)
        assert sorted(packings) == [(3, 64)] + [(16, 64)] * 4


@pytest.mark.parametrize("T, kernel", [(64, True), (65, False)])
def test_the_input_side_is_the_kernels_up_to_2_25_multiply_adds(packings, T, kernel):
    """x (T*B, I) @ W_ih^T (I, 4H) before the loop (training), on one thread: on the kernel while
    small (T*B*I*4H <= 2^25: 64*32*256*64), where it beats oneDNN's and OpenBLAS's; theirs for
    larger products."""
    import threadpoolctl
    from nplstm import _blas
    lstm = nplstm.LSTM(256, 16, dtype="float32", seed=2)
    x = np.random.default_rng(3).standard_normal((T, 32, 256)).astype(np.float32)
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        got = lstm.forward(x, train=True)[0]
    assert ((256, 64) in packings) is kernel
    want = nplstm.LSTM(256, 16, dtype="float64", seed=2)(x.astype(np.float64))[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("spare, inside", [(8, True), (-1, False)])
def test_inference_makes_each_steps_input_side_in_the_loop_where_the_panels_fit_l2(monkeypatch, packings, python_loop,
                                                                                    spare, inside):
    """Inference with both products on the kernel takes x_t W_ih^T step by step inside the loop
    (``_batchmajor._steps_in``), in one product with h_{t-1} W_hh^T (``_batchmajor_loops.step_both``),
    where W_ih^T's and W_hh^T's panels fit 7/8 of L2; else, A being
    larger than L2, a chunk of steps at a time on oneDNN (``_chunk``); the same outputs either way
    as the engine's Python loop. Layer 2 (its input H wide: its panels with W_hh^T's never fit,
    and too few rows for the layer to pack W_ih^T for chunks, T * B < 4H) makes its input side
    before the loop."""
    import threadpoolctl
    from nplstm import _batchmajor, _blas
    T, B, I, H = 6, 9, 5, 16
    panels = 4 * (I + H) * 4 * H                          # bytes
    monkeypatch.setattr(tg, "L2_BYTES", panels * 8 // 7 + spare)
    before = []
    monkeypatch.setattr(_batchmajor, "_input_side", lambda *a, f=_batchmajor._input_side: before.append(1) or f(*a))
    lstm = nplstm.LSTM(I, H, num_layers=2, seed=6)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        got = lstm(x, lengths=lengths)
    assert len(before) == 1 and ((I + H, 4 * H) in packings) is inside   # W_ih^T's over W_hh^T's: layer 1's
    python_loop()
    want = lstm(x, lengths=lengths)
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6)


def test_row_blocks_on_the_kernel_equal_the_python_loop(monkeypatch, packings, python_loop):
    """At 2 threads a batch of 35 runs as two GIL-free row blocks (``_gilfree``), each block's
    steps on the kernel (one packing shared by both blocks; in inference each step's input side
    too, made in the loop), against the engine's Python loop."""
    from nplstm import _rowblocks
    if not _rowblocks.gil_free():
        pytest.skip("GIL-free rows need numba, sched_yield and oneDNN's packed GEMM")
    T, B, I, H = 6, 35, 5, 16
    monkeypatch.setattr(tg, "L2_BYTES", 8 << 10)          # the panels fit (5 KiB), a block's A (26 KiB) not
    lstm = nplstm.LSTM(I, H, seed=1)
    rng = np.random.default_rng(7)
    for v in lstm.params.values():                        # non-zero biases, saturated gates
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)                   # some rows idle at some steps
    G = rng.standard_normal((T, B, H)).astype(np.float32)
    before = nplstm.get_num_threads()
    try:
        nplstm.set_num_threads(2)
        assert lstm.forward(x, lengths=lengths, train=True)[2]["layers"][0][0][0] == _rowblocks.SPLIT
        packings.clear()
        got = _layer_runs(lstm, x, lengths, G)
        # W_hh^T for training's forward (by a pack row, on one thread), then for inference W_ih^T over
        # W_hh^T (each step's two products in one)
        assert sorted(packings) == [(H, 4 * H, "row"), (I + H, 4 * H)]
        nplstm.set_num_threads(1)
        python_loop()
        want = _layer_runs(lstm, x, lengths, G)
    finally:
        nplstm.set_num_threads(before)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6, err_msg=str(k))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_input_side_in_the_loop_beside_onednns_step_product(monkeypatch, packings, python_loop, threads):
    """Where the step's product h W_hh^T is oneDNN's (P past the kernel's reach: here the kernel is
    told it suits only K = I) and W_ih^T's panels fit L2, inference still makes each step's x_t
    W_ih^T in the loop; on one thread and in the 2-thread row blocks, the outputs equal the
    engine's Python loop."""
    import threadpoolctl
    from nplstm import _batchmajor, _blas, _rowblocks
    if threads == 2 and not _rowblocks.gil_free():
        pytest.skip("GIL-free rows need numba, sched_yield and oneDNN's packed GEMM")
    T, B, I, H = 6, 35, 5, 16
    monkeypatch.setattr(tg, "suits", lambda K, N: K == I and N % tg.COLS == 0)
    monkeypatch.setattr(tg, "L2_BYTES", 4 * I * 4 * H * 8 // 7 + 8)   # W_ih^T's panels fit, A not
    before = []
    monkeypatch.setattr(_batchmajor, "_input_side", lambda *a, f=_batchmajor._input_side: before.append(1) or f(*a))
    lstm = nplstm.LSTM(I, H, seed=3)
    rng = np.random.default_rng(9)
    for v in lstm.params.values():                        # non-zero biases
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    was = nplstm.get_num_threads()
    try:
        nplstm.set_num_threads(threads)
        with threadpoolctl.threadpool_limits(threads), _blas.use("onednn"):
            got = lstm(x, lengths=lengths)
    finally:
        nplstm.set_num_threads(was)
    assert packings == [(I, 4 * H)] and not before      # W_ih^T on the kernel, in the loop; W_hh^T oneDNN's
    python_loop()
    want = lstm(x, lengths=lengths)
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6)


@pytest.mark.parametrize("shape, kernel_step, train, want", [
    ((50, 64, 64), False, False, True),                   # H = 512: W_hh^T not the kernel's; W_ih^T's 0.5 MiB fit
    ((50, 64, 64), True, False, False),                   # both on the kernel: 4.5 MiB do not
    ((50, 64, 64), False, True, False),                   # training keeps A for the backward
    ((2000, 1, 64), False, False, False),                 # batch 1: one row per step
    ((50, 64, 256), False, False, False),                 # W_ih^T's 2 MiB panels fill L2
    ((50, 64, 512), False, False, False),                 # I past 256 (``_batchmajor._kernel_input``)
    ((2, 64, 64), False, False, False)])                  # A (1 MiB) fits L2 as it is
def test_input_in_loop_rule(monkeypatch, shape, kernel_step, train, want):
    from nplstm import _batchmajor
    monkeypatch.setattr(tg, "_AVAILABLE", True)
    monkeypatch.setattr(tg, "L2_BYTES", 2 << 20)
    H = 512
    w = engine.pack(np.zeros((4 * H, shape[2]), np.float32), np.zeros((4 * H, H), np.float32))
    assert _batchmajor._input_in_loop(shape, w, kernel_step, train) is want


def _weight_ih(layout):
    """A (4H, I) = (64, 5) weight_ih: held (column-major, aligned), row-major, or column-major 16
    bytes past a 64-byte boundary."""
    from nplstm import _aligned
    W = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    if layout == "held":
        return _aligned.copy(W, order="F")
    if layout == "rows":
        return _aligned.copy(W)
    buf = np.empty(W.size + 16, np.float32)
    start = ((-buf.ctypes.data // 4) % 16 + 4) % 16
    out = buf[start:start + W.size].reshape(5, 64).T
    out[...] = W
    return out


@pytest.mark.parametrize("layout, kept, rows, want", [
    ("held", False, 100, True),
    ("held", False, (1 << 23) // (5 * 64), True),         # 2^23 multiply-adds at most
    ("held", False, (1 << 23) // (5 * 64) + 1, False),
    ("held", True, 100, False),                            # a frozen copy keeps its panels
    ("rows", False, 100, False),                           # weight_ih put in row-major: W_ih^T is not
    ("misaligned", False, 100, False)])
def test_in_place_rule(layout, kept, rows, want):
    from nplstm import _batchmajor
    w = engine.pack(_weight_ih(layout), np.zeros((64, 16), np.float32), kept=kept)
    assert _batchmajor._in_place(w, rows) is want
