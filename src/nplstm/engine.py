"""The fused recurrent time loop: forward and backward of one layer in one direction.

One loop serves LSTM, GRU and the plain RNN: what differs between them is a step's
elementwise math, which lives in the small classes of ``KINDS`` (``nplstm._kinds``, with the
packed weights, ``Packed``, that ``pack`` makes). Everything else (layers,
directions, lengths, dropout) composes around ``forward`` and ``backward``.

Shape legend, used in every comment below::

    T  time steps            B  batch              I  input features
    H  hidden size           P  size of h: proj_size if set (LSTM only), else H
    G  gates: 4 for LSTM (engine order [i | f | o | g]), 3 for GRU ([r | z | n]), 1 for RNN

Weights arrive in PyTorch's layout and gate order (LSTM [i | f | g | o], GRU [r | z | n])::

    w_ih (G*H, I)   w_hh (G*H, P)   b_ih, b_hh (G*H,)   w_hr (P, H) or None

Inside the loop every per-step array is feature-major, (features, B), as in the course
notebook's (n_a, m): a gate is then a contiguous block of rows, so each elementwise pass
runs over contiguous memory, and the recurrent GEMM is (G*H, P) @ (P, B).

``pack`` reorders LSTM gate rows to [i | f | o | g], so that the sigmoid gates lead in every
kind, and scales the sigmoid rows by 1/2: with sigma(z) = (1 + tanh(z/2)) / 2, one ``np.tanh``
serves the sigmoid and tanh gates alike, and the sigmoid block is finished with a multiply-add.

Where the time goes: the input side of all T steps is one GEMM before the loop; the loop
holds only the recurrent GEMM and in-place passes over preallocated buffers; the weight
gradients and dx are each one GEMM over all T*B columns after the backward loop.

The loop below, in Python, is the definition and serves every case. With numba, a float32
LSTM without projection runs compiled instead, one Python call per sequence instead of ~10 us
of slicing and dispatch per step, with the same results:

- at batch 1, and at batch > 1 where oneDNN's packed GEMM is in use (``nplstm._blas``), in
  ``_batchmajor``: the same computation laid out batch-major, (B, features) per step, in
  PyTorch's own weight layout; the orientation oneDNN's GEMM runs fastest in, with W_hh packed
  once per sequence (batch 1: numba's own matrix-vector products). Its caches are tagged, and
  ``backward`` and ``activations`` read either kind;
- otherwise (OpenBLAS) in ``_cellmath_numba``'s loops over the buffers below, which call an
  sgemm themselves for each step's GEMM;
- and with ``nplstm.set_num_threads(n)``, over row blocks of the batch, a thread each
  (``_rowblocks``), each block as above; the batch-major forward's blocks (and a small batch's
  two directions) as GIL-free rows, which the pool's threads run in compiled code (``_gilfree``).

A float32 GRU or RNN takes the batch-major loops too, with its own cells
(``_batchmajor_gru_rnn``), and the row blocks, as Python calls on the pool's threads (the
GIL-free rows are the LSTM's).

Arrays: every array here comes from one module ``xp`` (``Packed.xp``, picked from the weights by
``nplstm._xp.array_module``): NumPy on the CPU, CuPy on a GPU, with the same code. The lengths
(``batch_sizes``) stay on the host, so the loop never reads anything back from the device.

Variable lengths use packed-sequence semantics on a batch sorted by decreasing length:
``batch_sizes[t]`` columns are active at step t and they are the first ones, so each step
works on the leading columns only. Columns that have finished (or, in reverse, not yet
started) keep their state untouched.
"""
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from . import _blas, _cellmath, _rowblocks
from ._kinds import KINDS, Packed, pack                  # (the engine's API too: ``__all__``)

__all__ = ["Packed", "pack", "forward", "backward", "forward_segments", "activations", "cell_step", "KINDS", "backends",
           "get_backend", "set_backend", "use_backend"]

_backend = _cellmath.DEFAULT

# A cache made by another path than ``_forward`` starts with a tag naming it, so that ``backward``
# and ``activations`` hand it back to that path (``_tag``); the engine's own cache is untagged.
SEGMENTS = "segments"                 # forward_segments: bounded memory
BATCH_MAJOR = "batch-major"           # _batchmajor: the batch-major float32 loop
BATCH_MAJOR_GRU_RNN = "batch-major-gru-rnn"   # _batchmajor_gru_rnn: the same for GRU and RNN
# _rowblocks.SPLIT ("row-blocks"):      the batch in row blocks, a thread each


def _tag(cache):
    """The tag a cache starts with, or None (the engine's own)."""
    return cache[0] if isinstance(cache[0], str) else None


def backends():
    """Names of the available implementations of a step's elementwise math ("numpy", and "numba" if installed)."""
    return sorted(_cellmath.BACKENDS)


def get_backend():
    return _backend


def set_backend(name):
    """Choose the elementwise backend for every later forward/backward (see ``nplstm._cellmath``)."""
    global _backend
    if name not in _cellmath.BACKENDS:
        raise ValueError(f"backend must be one of {backends()}, got {name!r}")
    _backend = name


@contextmanager
def use_backend(name):
    """``with use_backend("numpy"): ...`` -- set the backend for a block, then restore it."""
    old = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


def forward(x, h0, c0, w, batch_sizes=None, reverse=False, train=True):
    """Run one direction of one layer over the whole sequence.

    Arguments:
        x -- (T, B, I), time-major; with ``batch_sizes`` the batch is sorted by decreasing length
        h0 (B, P), c0 (B, H) or None -- initial state (c only for LSTM)
        w -- ``Packed`` weights
        batch_sizes -- None, or (T,) ints: columns active at each step (non-increasing)
        reverse -- read the sequence from its end (each column from its own last valid step)
        train -- keep what ``backward`` needs; otherwise reuse one step's buffers

    Returns:
        out (T, B, P) -- h_t of each step in time order (padded steps hold stale values:
                         the caller zeroes them)
        h_n (B, P), c_n (B, H) or None -- each row's state after its last processed step
        cache -- for ``backward`` (None unless train)
    """
    blocks = _rowblocks.bounds(x.shape[1])                # nplstm.set_num_threads(n): row blocks, a thread each
    if blocks is not None and _compiled(w, x, _COMPILED):
        return _rowblocks.forward(forward_at_once, blocks, x, h0, c0, w, batch_sizes, reverse, train)
    return _forward_rows(x, h0, c0, w, batch_sizes, reverse, train)


def forward_each(calls, train, at_once=False, every=None):
    """[forward(*c, train=train) for c in calls], c = (x, h0, c0, w, batch_sizes, reverse): one
    after the other, or at once, a thread each (``forward_at_once``); ``forward_segments`` instead
    with ``every`` (training only)."""
    if every is not None:
        return _rowblocks.each_if(at_once, lambda k: forward_segments(*calls[k], every=every), len(calls))
    if at_once:
        return forward_at_once(calls, train)
    return [forward(*c, train=train) for c in calls]


def forward_at_once(calls, train, into=None):
    """``forward`` of several calls at once on the pool's threads (``_rowblocks``): row blocks, or a
    layer's two directions. Where each takes the batch-major path with oneDNN's packed GEMM (batch
    > 1), as GIL-free rows (``_batchmajor.forward_at_once``), which a pool thread starts without
    waiting for the GIL; else as Python calls (``_rowblocks.each``). A call's x may be a view.
    ``into``: for each call, views (out, h_n, c_n) where the thread that ran it copies its results
    (and returns them), or None."""
    with _blas.one_omp_thread():
        if _rowblocks.gil_free() and all(c[0].shape[1] > 1 and _batch_major(c[3], c[0]) for c in calls):
            return _batchmajor().forward_at_once(calls, train, into)

    def run(k):
        out, h, c, cache = _forward_rows(np.ascontiguousarray(calls[k][0]), *calls[k][1:], train)
        if into is None:
            return out, h, c, cache
        for result, view in zip((out, h, c), into[k]):    # land the results (c: None for GRU/RNN)
            if view is not None:
                view[...] = result
        return (*into[k], cache)
    return _rowblocks.each(run, len(calls))


def directions_at_once(w, x):
    """Whether a bidirectional layer may run its two directions at once, a thread each
    (``forward_at_once``, ``_rowblocks.each``): ``nplstm.set_num_threads(n >= 2)``, a compiled LSTM
    (or GRU, RNN), and a batch too small for row blocks (which take the threads instead). w, x:
    one direction's arguments."""
    return (_rowblocks.get_num_threads() >= 2 and _rowblocks.bounds(x.shape[1]) is None
            and _compiled(w, x, _COMPILED))


def _forward_rows(x, h0, c0, w, batch_sizes, reverse, train):
    """``forward`` on the calling thread."""
    if not _batch_major(w, x, kinds=_COMPILED):           # float32, compiled: the same, batch-major
        return _forward(x, h0, c0, w, batch_sizes, reverse, train)
    if w.kind == "lstm":
        return _batchmajor().forward(x, h0, c0, w, batch_sizes, reverse, train)
    return _batchmajor_gru_rnn().forward(x, h0, w, batch_sizes, reverse, train)   # the same loops, their cells


def _forward(x, h0, c0, w, batch_sizes, reverse, train):
    cell, xp = KINDS[w.kind], w.xp
    T, B, _ = x.shape
    H, P = w.H, w.source[1].shape[1]
    dtype = x.dtype
    looped = _compiled_loop(w, x)
    A = _matmul(xp)(w.Wx, x.reshape(T * B, -1).T)        # (G*H, T*B): input side of every step
    if not looped:                                        # (the compiled loop adds the bias as it reads A)
        A += w.bx
    A = A.reshape(-1, T, B)                              # becomes the activated gates, step by step
    hs = xp.empty((T + 1, P, B), dtype)                  # states; h_{t-1} of step t sits at prev(t)
    cs = xp.empty((T + 1, H, B), dtype) if cell.has_c else None
    ext = cell.buffers(T if train else 1, H, B, dtype, w, _backend)
    slot = None if train else xp.empty(A.shape[:1] + (1, B), dtype)   # inference: one step's gates, contiguous
    rec = xp.empty(A.shape[:1] + (B,), dtype)            # recurrent GEMM result
    first = T if reverse else 0
    hs[first] = h0.T
    if cell.has_c:
        cs[first] = c0.T
    if looped:                                            # batch > 1: the loop in numba, GEMMs through BLAS
        from ._cellmath_numba import lstm_forward_loop32
        lstm_forward_loop32(_blas.gemm(), A, w.bx, w.Wh, hs, cs, ext["tc"], _sizes(batch_sizes), reverse,
                            train)
    steps = () if looped else (range(T - 1, -1, -1) if reverse else range(T))   # else the generic loop
    step_mm = _step_matmul(xp)
    for t in steps:
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else int(batch_sizes[t])
        if n < B:                                         # finished / not yet started columns carry over
            hs[nxt, :, n:] = hs[prev, :, n:]
            if cell.has_c:
                cs[nxt, :, n:] = cs[prev, :, n:]
        step_mm(w.Wh, hs[prev, :, :n], rec[:, :n])      # W_hh h_{t-1}
        if w.bh is not None:
            rec[:, :n] += w.bh
        if cell.needs_h_prev:
            ext["h_prev"] = hs[prev, :, :n]
        # training: gates in place in A, kept for backward; inference: a contiguous scratch (faster passes)
        cell.forward(A, t, A if train else slot, t if train else 0, rec[:, :n], hs[nxt, :, :n],
                     cs[prev, :, :n] if cell.has_c else None,
                     cs[nxt, :, :n] if cell.has_c else None, ext, t if train else 0, w, n)
    last = 0 if reverse else T
    out = (hs[0:T] if reverse else hs[1:T + 1]).transpose(0, 2, 1)   # (T, B, P) view
    ext.pop("h_prev", None)
    cache = (x, A, hs, cs, ext, w, batch_sizes, reverse) if train else None
    return out, hs[last].T, (cs[last].T if cell.has_c else None), cache


def backward(dout, dh_n, dc_n, cache):
    """Backward of ``forward``.

    Arguments:
        dout (T, B, P) -- gradient w.r.t. ``out`` (ignored at padded steps)
        dh_n (B, P), dc_n (B, H) -- gradient w.r.t. the final state, or None for zero
        cache -- from ``forward(..., train=True)``; used up: the LSTM's and RNN's backward write
                 dL/dz over the gates it holds (the layers refuse a second backward on one cache)

    Returns:
        dx (T, B, I), dh0 (B, P), dc0 (B, H) or None
        grads -- dict with keys w_ih, w_hh, b_ih, b_hh, w_hr (None without projection);
                 in PyTorch's layout and gate order
    """
    tag = _tag(cache)
    if tag == SEGMENTS:
        return _backward_segments(dout, dh_n, dc_n, cache)
    if tag == _rowblocks.SPLIT:
        return _rowblocks.backward(backward, dout, dh_n, dc_n, cache)
    if tag == BATCH_MAJOR:
        return _batchmajor().backward(dout, dh_n, dc_n, cache)
    if tag == BATCH_MAJOR_GRU_RNN:
        return _batchmajor_gru_rnn().backward(dout, dh_n, cache)
    return _backward(dout, dh_n, dc_n, cache)


def _backward(dout, dh_n, dc_n, cache):
    x, A, hs, cs, ext, w, batch_sizes, reverse = cache
    cell, xp = KINDS[w.kind], w.xp
    T, B, I = x.shape
    H, P = w.H, w.Wh.shape[1]
    GH = A.shape[0]
    dtype = x.dtype
    if cell.dz_in_place:                                  # d input-side pre-activations, over the gates
        dZ = A
    else:
        dZ = (xp.empty if batch_sizes is None else xp.zeros)((GH, T, B), dtype)
    separate = not cell.fold_bias                         # GRU: the recurrent side gets its own gradient
    dR = (xp.empty if batch_sizes is None else xp.zeros)((GH, T, B), dtype) if separate else dZ
    # the carries, backwards; C order, because the compiled loop hands dh to BLAS as a row-major matrix
    dh = xp.zeros((P, B), dtype) if dh_n is None else xp.array(dh_n.T, dtype, order="C")
    dc = (xp.zeros((H, B), dtype) if dc_n is None else xp.array(dc_n.T, dtype, order="C")) if cell.has_c else None
    scratch = {k: xp.empty((rows, B), dtype) for k, rows in
               (("tmp", H), ("tmp2", 2 * H), ("tmp3", 3 * H), ("dr", H), ("direct", P))}
    if w.w_hr is not None:
        scratch["dH"] = xp.zeros((T, P, B), dtype)        # total dh_t, for dW_hr
    looped = _compiled_loop(w, x)
    if looped:                                            # batch > 1: the loop in numba, GEMMs through BLAS
        from ._cellmath_numba import lstm_backward_loop32
        lstm_backward_loop32(_blas.gemm(), A, ext["tc"], cs, w.w_hh, dout, dh, dc, _sizes(batch_sizes), reverse)
    steps = () if looped else (range(T) if reverse else range(T - 1, -1, -1))   # else the generic loop
    step_mm = _step_matmul(xp)
    w_hh_t = _blas.c_contiguous(w.w_hh.T) if steps and xp is np else w.w_hh.T   # (P, G*H), row-major on the CPU
    for t in steps:
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else int(batch_sizes[t])
        if n < B and dZ is A:
            dZ[:, t, n:] = 0                              # padded columns: no gradient (and no stale gates)
        dhn = dh[:, :n]
        dhn += dout[t, :n].T                              # this step's output plus what step t+1 sent
        ext["h_next"] = hs[nxt, :, :n]
        drec, direct = cell.backward(dhn, dc[:, :n] if cell.has_c else None, A, dZ, dR, t, hs[prev, :, :n],
                                     cs[prev, :, :n] if cell.has_c else None, ext, w, scratch, n)
        step_mm(w_hh_t, drec, dhn)                        # dh_{t-1}: backprop through W_hh h_{t-1}
        if direct is not None:
            dhn += direct                                 # GRU: h_t = ... + z h_{t-1}
    ext.pop("h_next", None)
    Z, R = dZ.reshape(GH, T * B), dR.reshape(GH, T * B)  # (G*H, T*B), no copy
    h_prev = (hs[1:] if reverse else hs[:T]).transpose(0, 2, 1).reshape(T * B, P)   # h_{t-1} of each step
    inv = xp.argsort(w.perm)                              # back to PyTorch's gate order
    b_ih = Z.sum(axis=1)[inv]
    mm = _matmul(xp)
    grads = {
        "w_ih": mm(Z, x.reshape(T * B, I))[inv],          # (G*H, I)  one GEMM over all T*B columns
        "w_hh": mm(R, h_prev)[inv],                       # (G*H, P)
        "b_ih": b_ih,                                     # (G*H,)
        "b_hh": R.sum(axis=1)[inv] if separate else b_ih.copy(),
        "w_hr": None if w.w_hr is None else xp.tensordot(scratch["dH"], ext["r"], axes=([0, 2], [0, 2])),  # (P, H)
    }
    dx = mm(Z.T, w.w_ih).reshape(T, B, I)                 # backprop through W_ih x
    return dx, dh.T, (dc.T if cell.has_c else None), grads


def activations(cache):
    """What an LSTM training cache of ``forward`` holds, in time order, as views: {"i", "f", "g", "o"}:
    the gates after their nonlinearity, "c": c_t, each (T, B, H), and "h": h_t (T, B, P)."""
    tag = _tag(cache)
    if tag == SEGMENTS:
        raise ValueError("a checkpointed cache (forward_segments) keeps no gates: run forward without checkpointing")
    if tag == BATCH_MAJOR_GRU_RNN:
        raise ValueError("activations reads LSTM caches; this one is a GRU's or an RNN's")
    if tag == _rowblocks.SPLIT:
        return _rowblocks.activations(activations, cache)
    if tag == BATCH_MAJOR:                                # (T, B, 4H), PyTorch's gate order
        _, x, A, hs, cs, _, w, _, reverse = cache
        gates = {g: A[:, :, k * w.H:(k + 1) * w.H] for k, g in enumerate("ifgo")}
        c, h = cs, hs
    else:                                                 # the engine's: (4H, T, B), engine order [i f o g]
        x, A, hs, cs, _, w, _, reverse = cache
        gates = {g: A[k * w.H:(k + 1) * w.H].transpose(1, 2, 0) for k, g in enumerate("ifog")}
        c, h = cs.transpose(0, 2, 1), hs.transpose(0, 2, 1)
    steps = slice(0, -1) if reverse else slice(1, None)   # the state after each step
    return {**gates, "c": c[steps], "h": h[steps]}


# ---------------------------------------------------------------------------- bounded memory
def forward_segments(x, h0, c0, w, batch_sizes=None, reverse=False, every=1000):
    """``forward`` for training in memory that does not grow with T: gradient checkpointing.

    Runs the sequence as segments of ``every`` steps in inference mode, keeping only each
    segment's starting state; ``backward`` then recomputes one segment at a time (one extra
    forward pass in all) and frees it before the next. Same return values as ``forward``.
    """
    T = x.shape[0]
    bounds = [(t, min(t + every, T)) for t in range(0, T, every)]
    order = bounds[::-1] if reverse else bounds           # the order in which the segments are read
    out, starts, h, c = w.xp.empty(x.shape[:2] + (w.source[1].shape[1],), x.dtype), [], h0, c0   # (T, B, P)
    for t0, t1 in order:
        starts.append((h.copy(), None if c is None else c.copy()))
        seg = None if batch_sizes is None else batch_sizes[t0:t1]
        out[t0:t1], h, c, _ = forward(x[t0:t1], h, c, w, seg, reverse, train=False)
    cache = (SEGMENTS, x, w, batch_sizes, reverse, order, starts)
    return out, h, c, cache


def _matmul(xp):
    """The big GEMMs' function: ``_blas.matmul`` on the CPU (oneDNN's sgemm in float32 where installed)."""
    return _blas.matmul if xp is np else xp.matmul


def _step_matmul(xp):
    """The generic loop's per-step product, out[...] = a @ b: ``_blas.matmul_into`` on the CPU
    (oneDNN's sgemm in float32 where it is faster), else xp.matmul."""
    return _blas.matmul_into if xp is np else (lambda a, b, out: xp.matmul(a, b, out=out))


_COMPILED = ("lstm", "gru", "rnn_tanh", "rnn_relu")      # the kinds with compiled batch-major loops


def _compiled(w, x, kinds=("lstm",)):
    """What the compiled loops need: numba backend, NumPy arrays, a cell of ``kinds`` (the LSTM's
    two loops; the GRU and RNN have the batch-major one) without projection, float32 input and
    weights (biases None or float32)."""
    if not (_backend == "numba" and w.xp is np and w.kind in kinds and w.w_hr is None and x.ndim == 3):
        return False
    w_ih, w_hh, b_ih, b_hh = w.source
    return (x.dtype == w_ih.dtype == w_hh.dtype == np.float32 and (b_ih is None or b_ih.dtype == np.float32)
            and (b_hh is None or b_hh.dtype == np.float32))


@lru_cache(maxsize=None)
def _batchmajor():
    """The ``_batchmajor`` module, imported on first use (it needs numba), once."""
    from . import _batchmajor
    return _batchmajor


@lru_cache(maxsize=None)
def _batchmajor_gru_rnn():
    """The ``_batchmajor_gru_rnn`` module, imported on first use (it needs numba), once."""
    from . import _batchmajor_gru_rnn
    return _batchmajor_gru_rnn


def _compiled_loop(w, x):
    """Take ``_cellmath_numba``'s time loop for batch > 1, which calls BLAS itself (``nplstm._blas``):
    a compiled LSTM (above) and an sgemm found."""
    return _compiled(w, x) and x.shape[1] > 1 and _blas.gemm() is not None


def _batch_major(w, x, kinds=("lstm",)):
    """Hand the call to ``_batchmajor`` (see there): a compiled LSTM (above) at batch 1; with
    oneDNN's packed GEMM in use; or, while oneDNN's OpenMP has more threads, when one step's
    product is too small to split over threads (``_one_thread_step``): then ``_batchmajor`` runs
    the steps on one thread and NumPy's OpenBLAS keeps its threads for the big GEMMs. The same
    for a GRU or RNN (``kinds``; ``_batchmajor_gru_rnn``)."""
    if not _compiled(w, x, kinds):
        return False
    B = x.shape[1]
    if B == 1 or _blas.packed_compute() is not None:
        return True
    G, P = w.source[1].shape
    return _blas.packing_preferred() and _one_thread_step(B, P * G)


def _one_thread_step(B, weights):
    """Whether a step's h (B, P) @ W_hh^T (P, 4H) runs faster on one thread (oneDNN, packed W)
    than split by OpenBLAS: below 2M multiply-adds, or below 32M with at most 16 rows. Measured
    alone in a process at 2 threads, this path against the OpenBLAS loop (time ratio, inference /
    training, +-5% noise; ``python benchmarks/one_thread_steps.py``; benchmarks/RESULTS.md),
    (I,H,B): (64,128,16) 0.46-0.49 / 0.55-0.64, (32,96,32) 0.80-0.81 / 0.83-0.86, (64,64,64)
    0.83 / 0.95, (128,512,16) 0.75 / 0.68; forced on for bigger steps, it ties from 2.1M with 32
    rows or more ((64,128,32) 0.95-1.01 / 0.99-1.13) and loses from 8.4M ((64,256,32) 1.14 /
    1.06) and at (256,1024,16) (1.04 / 0.92)."""
    work = B * weights
    return work < 1 << 21 or (B <= 16 and work < 1 << 25)


def _sizes(batch_sizes):
    """The compiled loops' batch_sizes: None (every column at every step: numba compiles the
    check out) or int64."""
    return None if batch_sizes is None else np.asarray(batch_sizes, np.int64)


def _backward_segments(dout, dh_n, dc_n, cache):
    _, x, w, batch_sizes, reverse, order, starts = cache
    dx, grads = w.xp.empty_like(x), None
    dh, dc = dh_n, dc_n
    for (t0, t1), (h, c) in zip(reversed(order), reversed(starts)):   # the last segment read comes first
        seg = None if batch_sizes is None else batch_sizes[t0:t1]
        *_, seg_cache = forward(x[t0:t1], h, c, w, seg, reverse, train=True)   # recompute, keep for backward
        dx[t0:t1], dh, dc, g = backward(dout[t0:t1], dh, dc, seg_cache)
        grads = g if grads is None else {k: None if v is None else v + g[k] for k, v in grads.items()}
    return dx, dh, dc, grads


def cell_step(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """One LSTM step written plainly, in PyTorch's layout: (x (B, I), h, c) -> (h, c).

    The readable definition the engine must agree with; no fusion, no tricks.
    """
    z = x @ w_ih.T + h @ w_hh.T                            # (B, 4H), gates [i f g o]
    if b_ih is not None:
        z = z + b_ih + b_hh
    H = w_ih.shape[0] // 4
    i, f = 1 / (1 + np.exp(-z[:, :H])), 1 / (1 + np.exp(-z[:, H:2 * H]))
    g, o = np.tanh(z[:, 2 * H:3 * H]), 1 / (1 + np.exp(-z[:, 3 * H:]))
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h if w_hr is None else h @ w_hr.T), c
