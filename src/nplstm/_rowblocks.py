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

The directions of a bidirectional layer never meet either (``each``, called by the layers where
``engine.directions_at_once`` says so): a batch of fewer than 2 x 16 rows runs them on two
threads instead of splitting its rows.

The pool's threads (``_Worker``) spin for about a millisecond between jobs, yielding their core
at each round, and then sleep: a layer's next ``each`` (a multi-layer call makes one per layer,
its backward another) finds them awake.
"""
import ctypes
import itertools
import numbers
import os
import threading

import numpy as np

from . import _blas, _threads

__all__ = ["set_num_threads", "get_num_threads", "bounds", "each", "each_if", "forward", "backward", "activations", "SPLIT",
           "MIN_ROWS", "SPIN"]

SPLIT = "row-blocks"        # tags a split cache for engine.backward
MIN_ROWS = 16               # rows a block needs at least (below, a GEMM per step gains little from its rows)
SPIN = 2000                 # rounds a waiting thread spins before it sleeps: ~1 ms (a round is one sched_yield, ~0.55 us)
_wanted = 1
_workers = []               # the pool: n - 1 ``_Worker`` threads, grown on demand
_finished = threading.Condition()   # notified as each call of an ``each`` ends


def _forget_pool():
    global _workers, _finished
    _workers, _finished = [], threading.Condition()      # threads (and a lock's holder) do not survive a fork


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
    and ONNX Runtime's workers do, so that the next ``each`` of a call finds it awake. Measured
    here, from ``each``'s start to the start of the pool thread's call, medians: 73 us back to
    back, against 105 us from the ThreadPoolExecutor used before (whose thread slept); 215
    against 573 us after 3 ms idle, both asleep. On a bidirectional 2-layer call at 2 threads
    (B = 16): 0.80-0.96 of the time with the sleeping pool (benchmarks/RESULTS.md)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.posted = np.zeros(1, np.int64)               # jobs posted so far (an array: the spin reads it)
        self.job = None
        self.thread = threading.Thread(target=self._run, name="nplstm-rows", daemon=True)
        self.thread.start()

    def post(self, job):
        with self.cond:
            self.job = job
            self.posted[0] += 1
            self.cond.notify()

    def _run(self):
        seen = 0
        while True:
            _wait(self.cond, self.posted, seen)
            with self.cond:
                seen, job = int(self.posted[0]), self.job
            job()                                         # (``each``'s take: it catches its blocks' errors)


def each(fn, n):
    """[fn(0), ..., fn(n-1)] at once, on this thread and n - 1 pool threads, BLAS on one thread.
    Each thread takes the next call nobody has taken yet, and this thread waits for the calls,
    not for the pool threads: one that wakes late (its core taken by another library's spinning
    workers, say) takes fewer calls or none, so the whole lasts at worst about one thread's time
    rather than its wake-up plus a call. The same makes calls from several Python threads at
    once, or from inside fn, safe: a pool thread busy elsewhere, or handed a newer call's work
    before it looked, takes none of this call's."""
    while len(_workers) < n - 1:
        _workers.append(_Worker())
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
        for w in _workers[:n - 1]:
            w.post(take)
        take()
        _wait(_finished, done, 0)                         # none still running once BLAS is restored
    for e in errors:
        if e is not None:
            raise e
    return results


def each_if(at_once, fn, n):
    """fn(0), ..., fn(n-1): at once (``each``) if ``at_once``, else one after the other on this thread."""
    return each(fn, n) if at_once else map(fn, range(n))


def forward(one, blocks, x, h0, c0, w, batch_sizes, reverse, train):
    """``engine.forward`` over row blocks; ``one`` runs a block (the engine's forward of one thread)."""
    def run(k):
        r0, r1 = blocks[k]
        sizes = None if batch_sizes is None else np.clip(np.asarray(batch_sizes) - r0, 0, r1 - r0)
        return one(np.ascontiguousarray(x[:, r0:r1]), h0[r0:r1], None if c0 is None else c0[r0:r1], w, sizes,
                   reverse, train)
    parts = each(run, len(blocks))
    return (*_joined(parts), (SPLIT, blocks, [p[3] for p in parts]) if train else None)


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
    """The blocks' first three results with their rows joined again: a (T, B, .) sequence (out or
    dx), then two (B, .) states (h and c, or their gradients; None stays None)."""
    return (np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts]),
            None if parts[0][2] is None else np.concatenate([p[2] for p in parts]))


def activations(one, cache):
    """``engine.activations`` of a split cache: the blocks' activations, rows joined again."""
    parts = [one(c) for c in cache[2]]
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
