"""Several threads for the compiled float32 LSTM: the batch in row blocks, one thread each (and a
bidirectional layer's two directions at once, where the batch is too small to split).

An LSTM's batch rows never meet, so each block of rows can run the whole sequence, input GEMM,
time loop and weight gradients, on its own core, with no barrier between steps. BLAS given
several threads splits each step's small GEMM instead (a barrier per step) and leaves the cell
math on one core. ``nplstm.set_num_threads(n)`` opts in: a batch of B rows then runs as
min(n, B // MIN_ROWS) blocks, shared out between the calling thread and n - 1 pool threads;
each block runs ``engine.forward``/``backward`` as one thread would (BLAS and oneDNN's OpenMP
on one thread; the compiled loops release the GIL). The results equal one thread's to rounding (a block's
GEMMs sum their rows apart; the weight gradients are the blocks' sums).

The default is 1: inside ``nplstm train`` the split lost (benchmarks/RESULTS.md), because
OpenBLAS's idle workers spin after each multi-threaded GEMM of the rest of the model and take
the core from the block's thread.

The directions of a bidirectional layer never meet either (``engine.forward_each`` and the
layers' backward, where ``engine.directions_at_once`` says so): a batch of fewer than 2 x 16
rows runs them on two threads instead of splitting its rows.

The pool's threads (``_Worker``) spin for about a millisecond between jobs, yielding their core
at each round, and then sleep: a layer's next call (a multi-layer call makes one per layer,
its backward another) finds them awake.

Two kinds of job: Python callables (``each``: the backward, and every path but one), and the
batch-major forward's GIL-free rows (``run_rows``, ``_gilfree``), which a spinning pool thread
runs in compiled code without taking the GIL, so it starts at once instead of waiting for the
calling thread to let the GIL go.
"""
import ctypes
import functools
import itertools
import numbers
import os
import threading

import numpy as np

from . import _blas, _threads

__all__ = ["set_num_threads", "get_num_threads", "bounds", "each", "each_if", "run_rows", "gil_free", "forward",
           "backward", "activations", "SPLIT", "MIN_ROWS", "SPIN"]

SPLIT = "row-blocks"        # tags a split cache for engine.backward
MIN_ROWS = 16               # rows a block needs at least (below, a GEMM per step gains little from its rows)
SPIN = 2000                 # rounds a waiting thread spins before it sleeps: ~1 ms (a round is one sched_yield, ~0.55 us)
_wanted = 1
_workers = []               # the pool: n - 1 ``_Worker`` threads, grown on demand
_finished = threading.Condition()   # notified as each call of an ``each`` ends
_posting = threading.Lock()          # held while a table of GIL-free rows sits in the pool's mailboxes


def _forget_pool():
    global _workers, _finished, _posting
    _workers, _finished, _posting = [], threading.Condition(), threading.Lock()   # threads (and a lock's
                                                                                  # holder) do not survive a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def set_num_threads(n):
    """Threads the compiled float32 LSTM splits a batch over (blocks of >= 16 rows); 1: no split."""
    global _wanted
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    _wanted = int(n)


def get_num_threads():
    return _wanted


def bounds(B):
    """The row blocks [(r0, r1), ...] of a batch of B rows, or None: one block, no split."""
    n = min(_wanted, B // MIN_ROWS)
    if n < 2:
        return None
    edges = [B * k // n for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


# ------------------------------------------------------------------ waiting: spin a while, then sleep
def _spin_while(flags, value, rounds, pause):
    """Spin while any of ``flags`` equals ``value``, for up to ``rounds`` rounds; each round calls
    ``pause`` (sched_yield: any other runnable thread gets the core). Compiled without the GIL,
    so that the thread the spinner waits for can run Python. The opaque call in each round also
    makes the compiler read ``flags`` again instead of keeping it in a register."""
    for _ in range(rounds):
        waiting = False
        for f in flags:
            waiting |= f == value
        if not waiting:
            return
        pause()


_spin = None                # (compiled _spin_while, sched_yield): made at the first wait; False where unavailable


def _spinner():
    global _spin
    if _spin is None:
        _spin = False                                     # no numba, no sched_yield (not POSIX): waits sleep at once
        try:
            import numba
            pause = ctypes.CDLL(None).sched_yield
            pause.restype, pause.argtypes = ctypes.c_int, []
            spin = numba.njit(nogil=True, cache=True)(_spin_while)
            spin(np.ones(1, np.int64), 0, 1, pause)       # compiled (or loaded from the cache) and tried once
            _spin = spin, pause
        except Exception:
            pass
    return _spin


@functools.lru_cache(maxsize=None)
def _gilfree():
    """The ``_gilfree`` module (compiled on first use), or None without numba."""
    try:
        from . import _gilfree
    except ImportError:
        return None
    return _gilfree


def gil_free():
    """Whether ``run_rows`` can run: numba and sched_yield (``_spinner``), oneDNN with its packing."""
    return bool(_spinner()) and _gilfree() is not None and _blas.onednn_functions() is not None


def _wait(cond, flags, value):
    """Return once no element of ``flags`` equals ``value``; they change under ``cond``, notified."""
    spin = _spinner()
    if spin:
        spin[0](flags, value, SPIN, spin[1])
    with cond:
        while (flags == value).any():
            cond.wait()


class _Worker:
    """A pool thread. Waiting for a job, it spins for ~1 ms (``SPIN``) before it sleeps, as OpenMP's
    and ONNX Runtime's workers do, so that the next call finds it awake. Measured here, from
    ``each``'s start to the start of the pool thread's call, medians: 73 us back to back, against
    105 us from the ThreadPoolExecutor used before (whose thread slept); 215 against 573 us after
    3 ms idle, both asleep. On a bidirectional 2-layer call at 2 threads (B = 16): 0.80-0.96 of
    the time with the sleeping pool (benchmarks/RESULTS.md). While it spins it also runs the
    GIL-free rows posted to its ``mailbox`` (``_gilfree.serve``)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.posted = np.zeros(1, np.int64)               # jobs posted so far (an array: the spin reads it)
        self.job = None
        self.mailbox = np.zeros(4, np.int64)              # _gilfree's ACTIVE, TABLE, ROWS, LOCK
        self.serving = False                              # tables offered: wait in _gilfree.serve (compiled
        self.sleeping = False                             # at the first, ~15 s without numba's cache)
        self.thread = threading.Thread(target=self._run, name="nplstm-rows", daemon=True)
        self.thread.start()

    def post(self, job):
        with self.cond:
            self.job = job
            self.posted[0] += 1
            self.cond.notify()

    def offer(self, table):
        """Post a table of GIL-free rows (``run_rows`` retracts it)."""
        g, m = _gilfree(), self.mailbox
        m[g.TABLE], m[g.ROWS] = table.ctypes.data, table.shape[0]
        m[g.ACTIVE] = 1                                   # last: the table is in place when it is seen
        self.serving = True
        with self.cond:
            if self.sleeping:
                self.cond.notify()

    def _run(self):
        _blas.one_omp_thread_for_good()                   # oneDNN's GEMMs of this thread's jobs: on it alone
        seen = 0
        while True:
            self._wait_for_job(seen)
            with self.cond:
                seen, job = int(self.posted[0]), self.job
            job()                                         # (``each``'s take: it catches its blocks' errors)

    def _wait_for_job(self, seen):
        """Return once ``posted`` moves past ``seen``: spin ~1 ms, running GIL-free rows as they
        come, then sleep until a job or a table arrives; again."""
        spin = _spinner()
        while True:
            if self.serving and gil_free():
                _gilfree().serve(self.mailbox, self.posted, seen, *_blas.onednn_functions(), spin[1], SPIN)
            elif spin:
                spin[0](self.posted, seen, SPIN, spin[1])
            with self.cond:
                self.sleeping = True
                while self.posted[0] == seen and not self.mailbox[0]:   # (mailbox[0]: ACTIVE)
                    self.cond.wait()
                self.sleeping = False
                if self.posted[0] != seen:
                    return


def _helpers(n):
    """The pool threads that join this thread in a call on n threads: n - 1, the pool grown to them."""
    while len(_workers) < n - 1:
        _workers.append(_Worker())
    return _workers[:n - 1]


def each(fn, n):
    """[fn(0), ..., fn(n-1)] at once, on this thread and n - 1 pool threads, BLAS on one thread.
    Each thread takes the next call nobody has taken yet, and this thread waits for the calls,
    not for the pool threads: one that wakes late (its core taken by another library's spinning
    workers, say) takes fewer calls or none, so the whole lasts at worst about one thread's time
    rather than its wake-up plus a call. The same makes calls from several Python threads at
    once, or from inside fn, safe: a pool thread busy elsewhere, or handed a newer call's work
    before it looked, takes none of this call's."""
    helpers = _helpers(n)
    results, errors = [None] * n, [None] * n
    done = np.zeros(n, np.int64)                          # 1 once call k has ended
    untaken = itertools.count()                           # next() is atomic (the GIL): each k is taken once

    def take():
        with _blas.one_omp_thread():                      # oneDNN's OpenMP: the calling thread's setting
            k = next(untaken)
            while k < n:
                try:
                    results[k] = fn(k)
                except BaseException as e:                # raised on the calling thread, below
                    errors[k] = e
                finally:
                    with _finished:
                        done[k] = 1
                        _finished.notify_all()
                k = next(untaken)
    with _threads.single_blas_thread():                   # OpenBLAS's: process-wide, so set here once
        for w in helpers:
            w.post(take)
        take()
        _wait(_finished, done, 0)                         # none still running once BLAS is restored
    for e in errors:
        if e is not None:
            raise e
    return results


def run_rows(table):
    """Run a ``_gilfree`` table's rows at once: this thread and up to n - 1 pool threads claim them
    (compare-and-swap: each row runs once, on whichever thread claims it first; a late pool thread
    claims none) and run them without the GIL. Returns once every row is done and no pool thread
    reads the table any longer; returns how many rows this thread ran. One table at a time: a
    call made while another's table is posted runs its rows on its own thread."""
    g, fns, pause = _gilfree(), _blas.onednn_functions(), _spinner()[1]
    n = min(_wanted, table.shape[0])
    if n < 2 or not _posting.acquire(blocking=False):
        return g.drain(table, *fns, pause)
    try:
        helpers = _helpers(n)
        for w in helpers:
            w.offer(table)
        ran = g.drain(table, *fns, pause)
        g.wait_done(table, pause)                         # the rows others took: running, so they end
        for w in helpers:
            g.retract(w.mailbox, pause)
        return ran
    finally:
        _posting.release()


def each_if(at_once, fn, n):
    """fn(0), ..., fn(n-1): at once (``each``) if ``at_once``, else one after the other on this thread."""
    return each(fn, n) if at_once else map(fn, range(n))


def forward(at_once, blocks, x, h0, c0, w, batch_sizes, reverse, train):
    """``engine.forward`` over row blocks; ``at_once`` runs the blocks' calls (``engine.forward_at_once``),
    and each lands its rows of out, h_n and c_n in the joined arrays on its own thread."""
    x = np.ascontiguousarray(x)                           # a block's x: a view of its rows
    T, B, _ = x.shape
    out, h, c = (np.empty((T, B, h0.shape[1]), x.dtype), np.empty(h0.shape, x.dtype),
                 None if c0 is None else np.empty(c0.shape, x.dtype))
    calls = [(x[:, r0:r1], h0[r0:r1], None if c0 is None else c0[r0:r1], w,
              None if batch_sizes is None else np.clip(np.asarray(batch_sizes) - r0, 0, r1 - r0), reverse)
             for r0, r1 in blocks]
    into = [(out[:, r0:r1], h[r0:r1], None if c is None else c[r0:r1]) for r0, r1 in blocks]
    parts = at_once(calls, train, into)
    return out, h, c, (SPLIT, blocks, [p[3] for p in parts]) if train else None


def backward(one, dout, dh_n, dc_n, cache):
    """``engine.backward`` of a split cache: each block's backward (``one``), then the sums of the
    blocks' weight gradients."""
    _, blocks, caches = cache

    def run(k):
        r0, r1 = blocks[k]
        return one(np.ascontiguousarray(dout[:, r0:r1]), None if dh_n is None else dh_n[r0:r1],
                   None if dc_n is None else dc_n[r0:r1], caches[k])
    parts = each(run, len(blocks))
    grads = parts[0][3]                                   # the first block's, fresh arrays: summed into in place
    for p in parts[1:]:
        for k, g in grads.items():
            if g is not None:
                g += p[3][k]
    return (*_joined(parts), grads)


def _joined(parts):
    """The blocks' first three results with their rows joined again: a (T, B, .) sequence (dx), then
    two (B, .) states (their gradients; None stays None)."""
    return (np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts]),
            None if parts[0][2] is None else np.concatenate([p[2] for p in parts]))


def activations(one, cache):
    """``engine.activations`` of a split cache: the blocks' activations, rows joined again."""
    parts = [one(c) for c in cache[2]]
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
