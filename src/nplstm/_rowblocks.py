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
"""
import itertools
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _blas, _threads

__all__ = ["set_num_threads", "get_num_threads", "bounds", "each", "each_if", "forward", "backward", "activations", "SPLIT",
           "MIN_ROWS"]

SPLIT = "row-blocks"        # tags a split cache for engine.backward
MIN_ROWS = 16               # rows a block needs at least (below, a GEMM per step gains little from its rows)
_wanted = 1
_pool = None


def _forget_pool():
    global _pool
    _pool = None                                          # its threads do not survive a fork: a child starts its own


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


def each(fn, n):
    """[fn(0), ..., fn(n-1)] at once, on this thread and n - 1 pool threads, BLAS on one thread.
    Each thread takes the next call nobody has taken yet, and this thread waits for the calls,
    not for the pool threads: one that wakes late (its core taken by another library's spinning
    workers, say) takes fewer calls or none, so the whole lasts at worst about one thread's time
    rather than its wake-up plus a call. fn must not call ``each`` itself (the pool has n - 1
    workers)."""
    global _pool
    if _pool is None or _pool._max_workers < n - 1:
        if _pool is not None:
            _pool.shutdown(wait=False)                    # its threads end once idle
        _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="nplstm-rows")
    results, errors = [None] * n, [None] * n
    done = [threading.Event() for _ in range(n)]
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
                    done[k].set()
                k = next(untaken)
    with _threads.single_blas_thread():                   # OpenBLAS's: process-wide, so set here once
        for _ in range(n - 1):
            _pool.submit(take)
        take()
        for d in done:
            d.wait()                                      # none still running once BLAS is restored
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
    out = np.concatenate([p[0] for p in parts], axis=1)   # (T, B, P)
    h_n = np.concatenate([p[1] for p in parts])           # (B, P)
    c_n = None if c0 is None else np.concatenate([p[2] for p in parts])
    return out, h_n, c_n, ((SPLIT, blocks, [p[3] for p in parts]) if train else None)


def backward(one, dout, dh_n, dc_n, cache):
    """``engine.backward`` of a split cache: each block's backward (``one``), then the sums of the
    blocks' weight gradients."""
    _, blocks, caches = cache

    def run(k):
        r0, r1 = blocks[k]
        return one(np.ascontiguousarray(dout[:, r0:r1]), None if dh_n is None else dh_n[r0:r1],
                   None if dc_n is None else dc_n[r0:r1], caches[k])
    parts = each(run, len(blocks))
    dx = np.concatenate([p[0] for p in parts], axis=1)    # (T, B, I)
    dh0 = np.concatenate([p[1] for p in parts])
    dc0 = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
    grads = parts[0][3]                                   # the first block's, fresh arrays: summed into in place
    for p in parts[1:]:
        for k, g in grads.items():
            if g is not None:
                g += p[3][k]
    return dx, dh0, dc0, grads


def activations(one, cache):
    """``engine.activations`` of a split cache: the blocks' activations, rows joined again."""
    parts = [one(c) for c in cache[2]]
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
