"""GRU and RNN on the batch-major loop: ``_batchmajor``'s time loops with their cells.

``engine.forward`` and ``backward`` hand a float32 GRU or RNN over here where they would hand an
LSTM to ``_batchmajor`` (``engine._batch_major``): the same step's product (W_hh^T on our
register tiles, or packed once per call for oneDNN, or batch 1's matrix-vector product) and the
same input side (one GEMM before the loop, or made in the loop step by step or chunk by chunk:
``_batchmajor.operands``, ``step_input``, ``step_product``), the same backward products and
weight gradients (``_batchmajor.weight_grads``); only the cells differ. The engine's generic
loop multiplies by W_hh feature-major through an sgemm that packs W_hh again at every step:
measured (1 thread, a step's product, us, sgemm feature-major / oneDNN
packed batch-major): GRU (H, B) = (256, 64) 168 / 148, (512, 64) 703 / 616; RNN (256, 64) 58 /
50, (512, 64) 233 / 196 (benchmarks/RESULTS.md, eighteenth round).

Weights as PyTorch keeps them (``Packed.source``), gate rows GRU [r | z | n], RNN one block::

    A   (T, B, G)   x_t W_ih^T (or one step's, or a chunk's: see ``_batchmajor_loops.forward_loop``);
                    in training the GRU's gates r, z, n then, and the backward's dL/d(input side)
    R   (B, G)      h_{t-1} W_hh^T of the current step, no bias
    hs  (T+1, B, H) h_{t-1} of step t sits at prev(t), h_t at next(t)
    HN  (T, B, H)   GRU training: h_{t-1} W_hn^T + b_hn, kept for the backward
    DR  (T, B, G)   GRU backward: dL/d(recurrent side), which differs from A's on n (times r)

GRU (PyTorch's): r, z = sigma(x W_i^T + b_i + h W_h^T + b_h), n = tanh(x W_in^T + b_in +
r (h W_hn^T + b_hn)), h_t = (1 - z) n + z h_{t-1}; sigma(v) = (1 + tanh(v/2)) / 2, the r and z
biases summed and halved once per call. RNN: h_t = tanh or relu of (x W_ih^T + h W_hh^T + b_ih +
b_hh).
"""
import numba
import numpy as np

from . import _batchmajor as bm
from . import _batchmajor_loops as loops
from ._ftanh import HALF, ftanh
from .engine import BATCH_MAJOR_GRU_RNN as BATCH_MAJOR, _sizes   # (the tag of this path's caches)

GRU, RNN_TANH, RNN_RELU = 0, 1, 2
KINDS = {"gru": GRU, "rnn_tanh": RNN_TANH, "rnn_relu": RNN_RELU}

_jit = numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
_inline = numba.njit(inline="always", fastmath=True, error_model="numpy")


@_inline
def _gru_sigmoids(a, r, b):
    """a[:2H] <- tanh(v/2) of r and z, v their pre-activations (b: b_i + b_h, halved)."""
    for j in range(a.shape[0] * 2 // 3):
        a[j] = ftanh(HALF * (a[j] + r[j]) + b[j])


@_inline
def _row_gru(a, r, b, b_hn, hp, h):
    """One row's GRU cell in inference: a, r (3H,) the step's input and recurrent sides (a is
    written over), b (3H,) the biases (r and z: b_i + b_h, halved; n: b_in), hp: h_{t-1}, h: h_t."""
    H = h.shape[0]
    _gru_sigmoids(a, r, b)
    az, an, rn, bn = a[H:2 * H], a[2 * H:], r[2 * H:], b[2 * H:]
    for j in range(H):
        rg, zg = HALF * a[j] + HALF, HALF * az[j] + HALF
        n = ftanh(an[j] + bn[j] + rg * (rn[j] + b_hn[j]))
        h[j] = n + zg * (hp[j] - n)                       # h_t = (1 - z) n + z h_{t-1}


@_inline
def _row_gru_train(a, r, b, b_hn, hp, h, hn):
    """The same, keeping for the backward the gates r, z, n (in a) and W_hn h + b_hn (in hn), a
    loop for each array written. (Written in inference's one loop, those stores through views of
    a kept LLVM from vectorizing it: GRU inference took 1.3x the time, and training as one loop
    1.03-1.05x this one's.)"""
    H = h.shape[0]
    _gru_sigmoids(a, r, b)
    a_rz, ar, az, an, rn, bn = a[:2 * H], a[:H], a[H:2 * H], a[2 * H:], r[2 * H:], b[2 * H:]
    for j in range(2 * H):                                # one array written a loop: each vectorizes
        a_rz[j] = HALF * a_rz[j] + HALF                   # r, z
    for j in range(H):
        hn[j] = rn[j] + b_hn[j]
    for j in range(H):
        an[j] = ftanh(an[j] + bn[j] + ar[j] * hn[j])      # n
    for j in range(H):
        h[j] = an[j] + az[j] * (hp[j] - an[j])            # h_t = (1 - z) n + z h_{t-1}


@_inline
def _row_gru_back(a, dr, hn, hp, dh, direct):
    """One row back through the GRU cell: the gates r, z, n in a become dL/d(input side), dr gets
    dL/d(recurrent side), direct the term z dh of dL/dh_{t-1} that skips W_hh. A loop for each
    array written, in an order that reads each gate before it is written over (as
    ``_row_gru_train``: one loop writing through several views of a row stays scalar)."""
    H = dh.shape[0]
    ar, az, an, a_rz = a[:H], a[H:2 * H], a[2 * H:], a[:2 * H]
    d_r, d_z, d_n, d_rz = dr[:H], dr[H:2 * H], dr[2 * H:], dr[:2 * H]
    for j in range(H):
        direct[j] = dh[j] * az[j]                         # h_t = ... + z h_{t-1}
    for j in range(H):                                    # backprop through (1 - z) n and tanh
        d_n[j] = dh[j] * (1 - az[j]) * (1 - an[j] * an[j])
    for j in range(H):                                    # through z h_{t-1} - z n and sigma
        d_z[j] = dh[j] * (hp[j] - an[j]) * az[j] * (1 - az[j])
    for j in range(H):                                    # through r (W_hn h + b_hn) and sigma
        d_r[j] = d_n[j] * hn[j] * ar[j] * (1 - ar[j])
    for j in range(H):
        an[j] = d_n[j]
    for j in range(H):                                    # the recurrent side's n is inside r (...)
        d_n[j] *= ar[j]
    for j in range(2 * H):                                # r and z: one sum feeds both sides
        a_rz[j] = d_rz[j]


@_inline
def _row_rnn(a, r, b, h, relu):
    H = h.shape[0]
    for j in range(H):
        v = a[j] + r[j] + b[j]
        h[j] = max(v, np.float32(0)) if relu else ftanh(v)


@_inline
def _row_rnn_back(a, h, dh, relu):
    """dL/dz of one row into a, from h_t (the activation itself)."""
    for j in range(h.shape[0]):
        a[j] = (dh[j] if h[j] > 0 else np.float32(0)) if relu else dh[j] * (1 - h[j] * h[j])


@_jit
def _cells(kind, A, R, b, b_hn, hp, h, hn, n):
    """One step's cell over its first n rows (A, R (B, G); hp, h (B, H); hn (B, H) or (B, 0))."""
    for r in range(n):
        if kind == GRU and hn.shape[1] > 0:
            _row_gru_train(A[r], R[r], b, b_hn, hp[r], h[r], hn[r])
        elif kind == GRU:
            _row_gru(A[r], R[r], b, b_hn, hp[r], h[r])
        else:
            _row_rnn(A[r], R[r], b, h[r], kind == RNN_RELU)


@_jit
def _cells_back(kind, A, DR, HN, hp, h, dh, direct, n):
    for r in range(n):
        if kind == GRU:
            _row_gru_back(A[r], DR[r], HN[r], hp[r], dh[r], direct[r])
        else:
            _row_rnn_back(A[r], h[r], dh[r], kind == RNN_RELU)


@_jit
def forward_sequence(kind, compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, hs, HN, batch_sizes, reverse):
    """The biases, the first state and the time loop in one compiled call (see
    ``_batchmajor_loops.forward_sequence``); fills hs, and HN (T, B, H) in a GRU's training (else
    (1, B, 0)). Biases None: bias=False."""
    T, B, G = hs.shape[0] - 1, A.shape[1], A.shape[2]
    H = hs.shape[2]
    b, b_hn = np.zeros(G, np.float32), np.zeros(H, np.float32)
    if b_ih is not None:
        b += b_ih
    if b_hh is not None and kind == GRU:                  # b_hn stays inside r (...)
        b[:2 * H] += b_hh[:2 * H]
        b_hn[:] = b_hh[2 * H:]
    elif b_hh is not None:
        b += b_hh
    if kind == GRU:
        b[:2 * H] *= HALF
    hs[T if reverse else 0] = h0
    R = loops._empty_aligned(B, G)
    lo = 0
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else batch_sizes[t]
        if n < B:                                         # rows n.. carry their state over
            hs[nxt, n:] = hs[prev, n:]
        a = t
        if steps_in is not None:
            a, lo = loops.step_input(compute, steps_in, A, s, t, lo, n, reverse)
        loops.step_product(compute, Wp, W, panels, hs, prev, n, R)
        _cells(kind, A[a], R, b, b_hn, hs[prev], hs[nxt], HN[t if HN.shape[0] > 1 else 0], n)


@_jit
def backward_loop(kind, compute, Wp, W, A, DR, HN, hs, dout, dh, batch_sizes, reverse):
    """The backward time loop (``_batchmajor_loops.backward_loop``'s, with these cells); dh (B, H)
    carried; Wp: W_hh packed (or None at batch 1, and W = W_hh^T (H, G))."""
    T, B, G = A.shape
    H = dh.shape[1]
    direct = np.zeros((B, H), np.float32)                 # the GRU's z dh (the RNN has none)
    for s in range(T):
        t = s if reverse else T - 1 - s
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else batch_sizes[t]
        A[t, n:] = 0                                      # padded rows: no gradient
        DR[t, n:] = 0
        dh[:n] += dout[t, :n]                             # this step's output plus what step t+1 sent
        _cells_back(kind, A[t], DR[t], HN[t], hs[prev], hs[nxt], dh, direct, n)
        Z = DR[t]                                         # dh_{t-1} = dL/d(recurrent side) W_hh (+ z dh)
        if Wp is not None:
            loops.gemm_packed(compute, Wp, n, H, G, Z.ctypes.data, G, dh.ctypes.data, H)
        elif W is not None and n > 0:
            loops._matvec(W, Z[0], dh[0])
        if kind == GRU:
            dh[:n] += direct[:n]


def forward(x, h0, w, batch_sizes, reverse, train):
    """``engine.forward`` for a GRU or RNN: (out (T, B, H), h_n, None, cache); out and h_n are views
    of the states."""
    threads, matmul = bm._threads_for(x.shape[1], train)
    with threads:
        T, B, _ = x.shape
        _, _, b_ih, b_hh = w.source
        compute, Wp, W, panels, steps_in, A = bm.operands(x, w, train, matmul)
        H = h0.shape[1]
        hs = np.empty((T + 1, B, H), np.float32)
        HN = np.empty((T, B, H) if train and w.kind == "gru" else (1, B, 0), np.float32)
        forward_sequence(KINDS[w.kind], compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, hs, HN,
                         _sizes(batch_sizes), reverse)
    out, last = (hs[:T], 0) if reverse else (hs[1:], T)
    cache = (BATCH_MAJOR, x, A, hs, HN, w, batch_sizes, reverse) if train else None
    return out, hs[last], None, cache


def backward(dout, dh_n, cache):
    """``engine.backward`` for a cache from ``forward`` above (used up: the gradients replace the
    gates): dx, dh0, None, grads."""
    _, x, A, hs, HN, w, batch_sizes, reverse = cache
    T, B, _ = x.shape
    threads, matmul = bm._threads_for(B)
    with threads:
        dh = np.zeros((B, hs.shape[2]), np.float32) if dh_n is None else np.array(dh_n, np.float32)
        DR = np.empty_like(A) if w.kind == "gru" else A  # the RNN's one sum feeds both sides
        HN = HN if w.kind == "gru" else np.empty((T, B, 0), np.float32)
        compute, Wp, W = bm._packed(w, B, transpose=False, forms=None)   # W_hh (batch 1: W_hh^T)
        backward_loop(KINDS[w.kind], compute, Wp, W, A, DR, HN, hs, dout, dh, _sizes(batch_sizes), reverse)
        dx, grads = bm.weight_grads(x, A, DR, hs, w, reverse, matmul)
    return dx, dh, None, grads
