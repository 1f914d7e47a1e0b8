"""Inference's input side made inside the batch-major loop a chunk of steps at a time, on oneDNN's
packed GEMM (``_batchmajor._chunk``), instead of one GEMM before the loop: against the engine's
Python loop, on one thread and in 2-thread row blocks; and the chunk rule's table."""
import numpy as np
import pytest

import nplstm
from nplstm import _blas, engine

numba = pytest.importorskip("numba")
threadpoolctl = pytest.importorskip("threadpoolctl")
from nplstm import _batchmajor, _rowblocks, _tilegemm  # noqa: E402  (need numba)

I, H, T = 3, 5, 7              # distinct sizes; 7 steps: chunks of 3 leave a chunk of 1


@pytest.fixture
def input_gemms(monkeypatch):
    """The batch-major path with the input side never on the kernel (as where I > 256); returns the
    list of ``_input_side``'s calls, the GEMMs made before the loop."""
    if engine.get_backend() != "numba" or "onednn" not in _blas.PROVIDERS or _blas._packing is None:
        pytest.skip("the batch-major path needs numba and oneDNN's packed GEMM")
    monkeypatch.setattr(_tilegemm, "_AVAILABLE", False)
    before = []
    monkeypatch.setattr(_batchmajor, "_input_side", lambda *a, f=_batchmajor._input_side: before.append(1) or f(*a))
    return before


def lstm_and_input(B, **kw):
    lstm = nplstm.LSTM(I, H, dtype="float32", seed=5, **kw)
    rng = np.random.default_rng(6)
    for v in lstm.params.values():                        # non-zero biases, saturated gates
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return lstm, x, rng.integers(1, T + 1, B)




def assert_same(got, want):
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6)


@pytest.mark.parametrize("frozen", [False, True])
def test_chunks_on_one_thread_equal_the_python_loop(monkeypatch, input_gemms, python_loop, frozen):
    """Both directions (the reverse one takes its chunks from the end), lengths, a last chunk
    shorter than the others; the plain layer packs W_ih^T (for the input's rows) at each call, a
    frozen copy once."""
    B = 4
    lstm, x, lengths = lstm_and_input(B, bidirectional=True)
    monkeypatch.setattr(_tilegemm, "L2_BYTES", 4 * 3 * B * 4 * H)   # a chunk of 3 steps fills it
    packs = []
    monkeypatch.setattr(_blas, "pack_right", lambda R, n, f=_blas.pack_right: packs.append((R.shape, n)) or f(R, n))
    layer = lstm.frozen() if frozen else lstm
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        assert _batchmajor._chunk(x.shape, lstm._packed(0, 0), False, T * B) == 3
        got = [layer(x, lengths=lengths) for _ in range(2)]
    assert not input_gemms                                # no GEMM before the loop
    assert packs.count(((I, 4 * H), T * B)) == 2 * (1 if frozen else 2)   # W_ih^T, per direction (and call)
    python_loop()
    want = lstm(x, lengths=lengths)
    for g in got:
        assert_same(g, want)


@pytest.fixture
def two_threads():
    if not _rowblocks.gil_free():
        pytest.skip("GIL-free row blocks need numba, sched_yield and oneDNN's packed GEMM")
    before = nplstm.get_num_threads()
    nplstm.set_num_threads(2)
    yield
    nplstm.set_num_threads(before)


@pytest.fixture
def packs(monkeypatch):
    """{"now": [...], "later": [...]}: (R's shape, rows) of each packing made on the calling thread
    (``_blas.pack_right``) and of each left to a pack row (``pack_later``)."""
    made = {"now": [], "later": []}
    monkeypatch.setattr(_blas, "pack_right", lambda R, n, f=_blas.pack_right: made["now"].append((R.shape, n)) or f(R, n))
    monkeypatch.setattr(_blas, "pack_later", lambda R, n, later, f=_blas.pack_later:
                        made["later"].append((R.shape, n)) or f(R, n, later))
    return made


@pytest.mark.parametrize("frozen", [False, True])
def test_chunks_in_row_blocks_equal_the_python_loop(monkeypatch, input_gemms, python_loop, two_threads, packs, frozen):
    """At 2 threads a batch of 35 runs as two row blocks (17 and 18 rows); the blocks make the
    input side in chunks of 4 steps (4 + 3) from one W_ih^T packing for both: a frozen copy's,
    kept, or the plain layer's, made in the call by a pack row."""
    lstm, x, lengths = lstm_and_input(35)
    monkeypatch.setattr(_tilegemm, "L2_BYTES", 4 * 4 * 18 * 4 * H)   # 4 steps of either block
    layer = lstm.frozen() if frozen else lstm
    g = _rowblocks._gilfree()
    chunks = []                                           # each row's CHUNK field: what its thread runs
    monkeypatch.setattr(g, "new_row", lambda *a, f=g.new_row: chunks.append(f(*a)) or chunks[-1])
    got = layer(x, lengths=lengths)
    assert [row[g.CHUNK] for row in chunks] == [4, 4] and not input_gemms
    assert packs["later" if not frozen else "now"].count(((I, 4 * H), T * 35)) == 1
    python_loop()
    assert_same(got, lstm(x, lengths=lengths))


def test_the_plain_layers_packings_are_pack_rows_first_in_the_table(monkeypatch, input_gemms, python_loop,
                                                                    two_threads, packs):
    """The plain layer packs its weights at every call; on row blocks each packing is a pack row,
    listed before the blocks, so that the call's threads take one each: W_ih^T once for both
    blocks, W_hh^T for 17 rows and for 18. None is made on the calling thread before the table
    runs, each ran (DONE, status 0), and the results are the engine's Python loop's."""
    lstm, x, lengths = lstm_and_input(35)
    monkeypatch.setattr(_tilegemm, "L2_BYTES", 4 * 4 * 18 * 4 * H)
    g, tables = _rowblocks._gilfree(), []
    monkeypatch.setattr(_rowblocks, "run_rows", lambda t, f=_rowblocks.run_rows: tables.append(t) or f(t))
    got = [lstm(x, lengths=lengths) for _ in range(2)]
    assert not packs["now"]
    assert sorted(packs["later"]) == sorted(2 * [((H, 4 * H), 17), ((H, 4 * H), 18), ((I, 4 * H), T * 35)])
    for table in tables:
        assert list(table[:, g.KIND]) == [g.PACK] * 3 + [g.BLOCK] * 2
        assert list(table[:, g.STATE]) == [g.DONE] * 5 and not table[:3, g.STATUS].any()
    python_loop()
    want = lstm(x, lengths=lengths)
    for g_ in got:
        assert_same(g_, want)


def test_a_failing_pack_row_raises_naming_the_matrix(monkeypatch, input_gemms, two_threads):
    """A packing oneDNN refuses (here: a negative size slipped into its operands) is an error once
    the table has run, as ``pack_right``'s is; the blocks do not run on the unfilled buffer (whose
    missing header crashed oneDNN's product)."""
    lstm, x, _ = lstm_and_input(35)

    def broken(R, n, later, f=_blas.pack_later):
        buf = f(R, n, later)
        later[-1][1][2][0] = -1                           # dims: M
        return buf
    monkeypatch.setattr(_blas, "pack_later", broken)
    with pytest.raises(RuntimeError, match=f"sgemm_pack of a {H}x{4 * H} matrix failed with dnnl_status_t"):
        lstm(x)


def test_a_block_waits_for_every_pack_row(input_gemms):
    """``wait_packs``, which a block calls first: it spins while a pack row another thread took is
    not DONE, and returns once it is (rows of other kinds not waited for)."""
    import threading
    import time
    g = _rowblocks._gilfree()
    table = np.zeros((3, g.FIELDS), np.int64)
    table[:, g.KIND] = g.PACK, g.PACK, g.BLOCK
    table[:, g.STATE] = g.DONE, g.TAKEN, g.POSTED
    table[0, g.STATUS] = 0
    pause = _rowblocks._spinner()[1]
    ok = []
    waiter = threading.Thread(target=lambda: ok.append(g.wait_packs(table, pause)))   # (compiled without the GIL)
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()
    table[1, g.STATE] = g.DONE
    waiter.join(timeout=10)
    assert not waiter.is_alive() and ok == [True]
    table[1, g.STATUS] = 2                                # a failed packing: no block may run
    assert not g.wait_packs(table, pause)


@pytest.mark.parametrize("T_, B, I_, kept, train, L2, rows, want", [
    (50, 64, 7, False, False, 2 << 20, None, 4),    # H = 512, B = 64: a step's A is 512 KiB, 4 of them fill L2
    (50, 32, 7, False, False, 2 << 20, None, 8),
    (50, 64, 7, False, True, 2 << 20, None, 0),     # training keeps A for the backward
    (50, 1, 7, False, False, 2 << 20, None, 0),     # batch 1: no GEMM in its loop
    (4, 64, 7, False, False, 2 << 20, None, 0),     # A (2 MiB) fits L2 as it is
    (5, 64, 7, False, False, 8 << 20, None, 0),
    (3, 512, 7, False, False, 2 << 20, None, 1),    # a step's A alone outgrows L2: a step at a time
    (50, 64, 1024, False, False, 2 << 20, None, 0),  # the layer's packing of W_ih^T, for too few rows
    (50, 64, 1024, True, False, 2 << 20, None, 4),  # a frozen copy's is made once
    (50, 64, 800, False, False, 2 << 20, None, 4),  # T * B = 3200 >= 4 * 800
    (50, 32, 800, False, False, 2 << 20, 3200, 8),  # a row block of that input: its packing serves 3200 rows
    (50, 32, 800, False, False, 2 << 20, 1600, 0),  # the whole input: 1600 rows
])
def test_chunk_rule(monkeypatch, T_, B, I_, kept, train, L2, rows, want):
    """``rows``: the input's, which one packing serves (None: T * B, a call on one thread)."""
    if "onednn" not in _blas.PROVIDERS or _blas._packing is None:
        pytest.skip("the chunks are oneDNN's packed GEMM's")
    monkeypatch.setattr(_tilegemm, "L2_BYTES", L2)
    w = engine.pack(np.zeros((2048, I_), np.float32), np.zeros((2048, 512), np.float32), kept=kept)
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        assert _batchmajor._chunk((T_, B, I_), w, train, T_ * B if rows is None else rows) == want


def test_chunks_match_torch(monkeypatch, input_gemms):
    """An independent oracle: torch.nn.LSTM on the same weights (float32, both directions, packed
    sequences for the lengths), against inference made in chunks of 3 steps."""
    torch = pytest.importorskip("torch")
    B = 4
    lstm, x, lengths = lstm_and_input(B, bidirectional=True)
    module = torch.nn.LSTM(I, H, bidirectional=True)
    with torch.no_grad():
        for k, v in lstm.state_dict().items():
            getattr(module, k).copy_(torch.from_numpy(v))
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                     enforce_sorted=False)
    with torch.no_grad():
        out, (h, c) = module(packed)
    want, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    monkeypatch.setattr(_tilegemm, "L2_BYTES", 4 * 3 * B * 4 * H)
    with threadpoolctl.threadpool_limits(1), _blas.use("onednn"):
        got, (gh, gc) = lstm.frozen()(x, lengths=lengths)
    assert not input_gemms
    for a, b in ((got, want), (gh, h), (gc, c)):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-5)
