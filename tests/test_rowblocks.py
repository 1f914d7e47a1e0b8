"""nplstm.set_num_threads(n): the compiled float32 LSTM runs a batch as row blocks, one thread each,
with the results of one thread (to rounding: each block's GEMMs sum over its own rows)."""
import os
import threading
import time

import numpy as np
import pytest

import nplstm
from nplstm import _rowblocks, engine

I, H, T = 3, 5, 6              # distinct sizes; batches of 35 and more rows: blocks of >= 16


@pytest.fixture
def threads():
    """set_num_threads for one test, restored after."""
    before = nplstm.get_num_threads()
    yield nplstm.set_num_threads
    nplstm.set_num_threads(before)


@pytest.fixture
def compiled():
    if engine.get_backend() != "numba":
        pytest.skip("row blocks and directions at once are the compiled LSTM's")


@pytest.fixture
def each_calls(monkeypatch):
    """How many calls each split or directions-at-once ran at once: as Python calls
    (``_rowblocks.each``) or as GIL-free rows (``run_rows``: its blocks, not its pack rows)."""
    calls, each, run_rows = [], _rowblocks.each, _rowblocks.run_rows

    def blocks(table):
        g = _rowblocks._gilfree()
        return int((table[:, g.KIND] == g.BLOCK).sum())
    monkeypatch.setattr(_rowblocks, "each", lambda fn, n: calls.append(n) or each(fn, n))
    monkeypatch.setattr(_rowblocks, "run_rows", lambda table: calls.append(blocks(table)) or run_rows(table))
    return calls


@pytest.fixture
def rows_ran_here(monkeypatch):
    """How many GIL-free rows the calling thread ran at each ``run_rows`` (the pool's threads ran the rest)."""
    if not _rowblocks.gil_free():
        pytest.skip("GIL-free rows need numba, sched_yield and oneDNN's packed GEMM")
    here, run_rows = [], _rowblocks.run_rows
    monkeypatch.setattr(_rowblocks, "run_rows", lambda table: here.append(run_rows(table)) or here[-1])
    return here


def everything(lstm, x, lengths, G):
    """Tag of the first cache, then outputs, states, input and state gradients, weight gradients,
    inference output and the first layer's activations."""
    out, (h, c), cache = lstm.forward(x, lengths=lengths, train=True)
    acts = {k: v.copy() for k, v in engine.activations(cache["layers"][0][0]).items()}   # (the backward writes
    dx, (dh0, dc0), grads = lstm.backward(G, cache, (h, c))   # dL/dz over the gates)
    return cache["layers"][0][0][0], [out, h, c, dx, dh0, dc0, *grads.values(), lstm(x, lengths=lengths)[0],
                                      *acts.values()]


@pytest.mark.parametrize("B, n, blocks, python_jobs", [(35, 2, 2, False), (50, 3, 3, False), (50, 8, 3, False),
                                                      (35, 2, 2, True)])
@pytest.mark.parametrize("kw, lengths", [
    (dict(), None),
    (dict(num_layers=2, bidirectional=True, batch_first=True), "mixed"),
], ids=["1", "2bi-lengths"])
def test_row_blocks_answer_as_one_thread(compiled, threads, monkeypatch, B, n, blocks, python_jobs, kw, lengths):
    if python_jobs:                                       # the blocks as Python calls, not GIL-free rows
        monkeypatch.setattr(_rowblocks, "gil_free", lambda: False)
    lstm = nplstm.LSTM(I, H, seed=0, **kw)
    rng = np.random.default_rng(1)
    for v in lstm.params.values():                        # non-zero biases, saturated gates
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    x = rng.standard_normal((B, T, I) if lstm.batch_first else (T, B, I)).astype(np.float32)
    G = rng.standard_normal(x.shape[:2] + (lstm.num_directions * H,)).astype(np.float32)
    lengths = None if lengths is None else rng.integers(1, T + 1, B)   # some blocks idle at some steps
    tag, want = everything(lstm, x, lengths, G)
    assert tag != _rowblocks.SPLIT
    threads(n)
    assert _rowblocks.bounds(B) is not None and len(_rowblocks.bounds(B)) == blocks   # min(n, B // 16)
    tag, got = everything(lstm, x, lengths, G)
    assert tag == _rowblocks.SPLIT
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, k
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=str(k))


@pytest.mark.parametrize("make, B", [
    (lambda: nplstm.LSTM(I, H, seed=0), 31),                        # fewer than 2 x 16 rows
    (lambda: nplstm.LSTM(I, H, dtype="float64", seed=0), 40),       # not the compiled LSTM
    (lambda: nplstm.LSTM(I, H, proj_size=2, seed=0), 40),
    (lambda: nplstm.GRU(I, H, dtype="float64", seed=0), 40),      # (a float32 GRU or RNN is split:
])                                                                  # tests/test_batchmajor_gru_rnn.py)
def test_what_is_not_split(threads, make, B):
    threads(4)
    layer = make()
    x = np.ones((T, B, I), layer.dtype)
    cache = layer.forward(x, train=True)[-1]
    assert not (isinstance(cache["layers"][0][0][0], str) and cache["layers"][0][0][0] == _rowblocks.SPLIT)


@pytest.mark.parametrize("n, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("2", TypeError), (None, TypeError)])
def test_set_num_threads_refuses_what_is_not_a_positive_int(threads, n, error):
    with pytest.raises(error, match="n must"):
        nplstm.set_num_threads(n)
    assert nplstm.get_num_threads() >= 1


def busy_pool():
    """Keep each of the pool's threads busy in a Python job, for up to 10 s or until the returned
    event is set; returns once every thread is in it (a job posted before its thread takes it is
    replaced by the next post, so the job is not enough: it must have started)."""
    release, started = threading.Event(), [threading.Event() for _ in _rowblocks._workers]
    for w, s in zip(_rowblocks._workers, started):
        w.post(lambda s=s: (s.set(), release.wait(10)))
    for s in started:
        assert s.wait(10)
    return release


def test_a_late_pool_thread_does_not_hold_up_the_call(threads):
    """``each`` shares its calls out rather than handing each its thread: while the pool's threads
    are busy (as when another library's spinning workers hold their cores), the calling thread runs
    every call itself and returns without waiting for them."""
    threads(2)
    _rowblocks.each(lambda k: k, 2)                       # the pool exists (kept from a bigger n, maybe)
    release = busy_pool()
    try:
        ran_on = _rowblocks.each(lambda k: threading.get_ident(), 2)
    finally:
        release.set()
    assert ran_on == [threading.get_ident()] * 2          # (before: [this thread, the pool's], 10 s later)


@pytest.mark.parametrize("spin", [True, False], ids=["spinning", "sleeping at once"])
def test_the_pool_runs_calls_on_its_threads(monkeypatch, spin):
    """The pool's thread does take calls: with each call long enough for it to wake, both threads
    ran one (each call waits until the other has started, up to 10 s). Also where the waits cannot
    spin (no numba, or no sched_yield) and sleep on their condition at once."""
    if not spin:
        monkeypatch.setattr(_rowblocks, "_spin", False)
    time.sleep(0.05)                                      # the pool's thread, if any, past its spin: asleep
    started = [threading.Event(), threading.Event()]

    def call(k):
        started[k].set()
        started[1 - k].wait(10)
        return threading.get_ident()
    ran_on = _rowblocks.each(call, 2)
    assert len(set(ran_on)) == 2 and threading.get_ident() in ran_on   # (on one thread: 10 s, then this one twice)


def test_calls_from_several_threads_at_once_all_return_right():
    """Several Python threads call ``each`` at once, and each call calls it again: every result is
    right, whichever thread ran it."""
    results, go = {}, threading.Barrier(3)

    def user(u):
        go.wait()
        results[u] = [_rowblocks.each(lambda k: (u, k, _rowblocks.each(lambda j: j * 10, 2)), 2) for _ in range(50)]
    users = [threading.Thread(target=user, args=(u,)) for u in range(3)]
    for t in users:
        t.start()
    for t in users:
        t.join(30)
    assert {u: r[0] for u, r in results.items()} == {u: [(u, 0, [0, 10]), (u, 1, [0, 10])] for u in range(3)}
    assert all(r == [r[0]] * 50 for r in results.values())


def long_split_call(lstm, B=40):
    """A split inference call whose blocks each take ~10 ms or more: time for any pool thread to wake."""
    x = np.random.default_rng(6).standard_normal((3000, B, lstm.input_size)).astype(np.float32)
    return lambda: lstm(x)[0]


def test_an_asleep_pool_thread_wakes_for_gil_free_rows(compiled, threads, rows_ran_here):
    """A split forward posts its blocks as GIL-free rows; the pool's thread, asleep, is woken and
    runs one while the calling thread runs the other, with one thread's results. (Up to five
    tries: on a loaded machine the pool thread may wake after the caller has taken both.)"""
    lstm = nplstm.LSTM(3, 64, seed=0)
    call = long_split_call(lstm)
    want = call()
    threads(2)
    call()                                                # the pool exists, its wait compiled (or loaded)
    for _ in range(5):
        time.sleep(0.05)                                  # past its spin: asleep
        got = call()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        if rows_ran_here[-1] == 1:
            break
    assert rows_ran_here[-1] == 1, rows_ran_here          # (a pool thread left asleep: [.., 2, 2, 2, 2, 2])


def test_a_busy_pool_thread_leaves_its_rows_to_the_caller(compiled, threads, rows_ran_here):
    """While the pool's thread runs a Python job, the calling thread claims every row itself and
    returns without waiting for it."""
    lstm = nplstm.LSTM(3, 64, seed=0)
    call = long_split_call(lstm)
    threads(2)
    _rowblocks.each(lambda k: k, 2)
    release = busy_pool()
    try:
        t0 = time.perf_counter()
        call()
        took = time.perf_counter() - t0
    finally:
        release.set()
    assert rows_ran_here == [2] and took < 5


def test_split_calls_from_several_threads_at_once_all_return_right(compiled, threads):
    """Several Python threads make split calls at once: one table at a time sits in the pool's
    mailboxes, the other callers run their rows themselves, and every result is right."""
    lstm = nplstm.LSTM(3, 7, num_layers=2, bidirectional=True, seed=0)
    xs = [np.random.default_rng(u).standard_normal((9, 40 - 8 * u, 3)).astype(np.float32) for u in range(3)]
    want = [lstm(x)[0] for x in xs]                       # 40, 32 rows: split; 24: directions at once
    threads(2)
    results, go = {}, threading.Barrier(3)

    def user(u):
        go.wait()
        results[u] = [lstm(xs[u])[0] for _ in range(30)]
    users = [threading.Thread(target=user, args=(u,)) for u in range(3)]
    for t in users:
        t.start()
    for t in users:
        t.join(60)
    for u in range(3):
        assert len(results[u]) == 30
        for got in results[u]:
            np.testing.assert_allclose(got, want[u], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads a thread's CPU time from /proc")
def test_an_idle_pool_thread_sleeps_after_spinning_a_while():
    """A pool thread waiting for work spins for ~1 ms (``SPIN`` rounds), then sleeps: half a second
    after a call it has used next to no CPU time."""
    _rowblocks.each(lambda k: k, 2)
    time.sleep(0.1)                                       # past the spin (~1 ms here)

    def cpu_ns(w):                                        # schedstat's first field: ns spent on a CPU
        with open(f"/proc/self/task/{w.thread.native_id}/schedstat") as f:
            return int(f.read().split()[0])
    before = [cpu_ns(w) for w in _rowblocks._workers]
    time.sleep(0.5)
    used = [cpu_ns(w) - b for w, b in zip(_rowblocks._workers, before)]
    assert max(used) < 20e6, used                         # ns; spinning on, it would be ~0.5 s


def test_a_failing_block_raises_and_leaves_blas_as_it_was(compiled, threads, monkeypatch):
    """An error in any block run as a Python call (``each``: not GIL-free rows, which cannot raise)
    reaches the caller, after every block has stopped and the BLAS thread setting is restored."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    threads(2)
    monkeypatch.setattr(_rowblocks, "gil_free", lambda: False)
    lstm = nplstm.LSTM(I, H, seed=0)
    real = engine._forward_rows

    def second_block_fails(x, *args):
        if x.shape[1] == 20:
            raise RuntimeError("block failed")
        return real(x, *args)
    monkeypatch.setattr(engine, "_forward_rows", second_block_fails)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        with pytest.raises(RuntimeError, match="block failed"):
            lstm(np.ones((T, 39, I), np.float32))         # blocks of 19 and 20 rows
        assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] == before


@pytest.mark.parametrize("kw", [dict(), dict(lengths="mixed"), dict(checkpoint_every=4)], ids=["full", "lengths",
                                                                                              "checkpointed"])
def test_a_small_batch_runs_its_two_directions_at_once(compiled, threads, each_calls, kw):
    """Below 2 x 16 rows a bidirectional layer runs its directions on two threads instead (forward
    and backward, every layer), with one thread's results."""
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(2)
    for v in lstm.params.values():
        v[...] = rng.uniform(-0.9, 0.9, v.shape)
    B = 7
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    G = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B) if kw.pop("lengths", None) else None

    def run():
        out, (h, c), cache = lstm.forward(x, lengths=lengths, train=True, **kw)
        dx, (dh0, dc0), grads = lstm.backward(G, cache, (h, c))
        return [out, h, c, dx, dh0, dc0, *grads.values(), lstm(x, lengths=lengths)[0]]
    want = run()
    threads(2)
    got = run()
    assert each_calls == [2] * 6                          # 2 layers: forward, backward, inference
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=str(k))


def test_row_blocks_under_gradient_checkpointing(compiled, threads, each_calls):
    """forward(..., checkpoint_every=k) splits each segment into row blocks, forward and recomputed."""
    lstm = nplstm.LSTM(I, H, bidirectional=True, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, 40, I)).astype(np.float32)
    G = rng.standard_normal((T, 40, 2 * H)).astype(np.float32)
    lengths = rng.integers(1, T + 1, 40)

    def run():
        out, state, cache = lstm.forward(x, lengths=lengths, train=True, checkpoint_every=4)
        dx, _, grads = lstm.backward(G, cache, state)
        return [out, *state, dx, *grads.values()]
    want = run()
    threads(2)
    got = run()
    assert each_calls == [2] * 12                         # 2 directions x 2 segments x (forward, recompute, backward)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=str(k))


# Python 3.12+ warns when a multi-threaded process forks: forking one is what this test is about
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_splits_on_its_own_threads(compiled, threads):
    """The pool's threads do not survive a fork; a child made after a split call makes its own pool
    (with the parent's, its calling thread would run every block itself)."""
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    threads(2)
    lstm = nplstm.LSTM(I, H, seed=0)
    x = np.random.default_rng(5).standard_normal((T, 40, I)).astype(np.float32)
    want = lstm(x)[0]                                     # the parent's pool now exists
    _inherited[:] = [lstm, x]                             # (a layer does not pickle; a forked child inherits it)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_split_call).get(timeout=60)
    np.testing.assert_array_equal(got, want)


_inherited = []


def _split_call():
    lstm, x = _inherited
    assert _rowblocks.bounds(x.shape[1]) is not None
    out = lstm(x)[0]
    assert _rowblocks._workers and all(w.thread.is_alive() for w in _rowblocks._workers)
    return out
