"""GRU and RNN inference on the batch-major loop: ``_batchmajor``'s time loop with their cells.

``engine.forward`` hands a float32 GRU or RNN over here in inference where it would hand an
LSTM to ``_batchmajor`` (``engine._batch_major``): the same step's product (W_hh^T on our
register tiles, or packed once per call for oneDNN, or batch 1's matrix-vector product) and the
same input side (one GEMM before the loop, or made in the loop step by step or chunk by chunk:
``_batchmajor.operands``, ``step_input``, ``step_product``); only the cell differs. The engine's
generic loop, which training keeps, multiplies by W_hh feature-major through an sgemm that packs
W_hh again at every step: measured (1 thread, a step's product, us, sgemm feature-major / oneDNN
packed batch-major): GRU (H, B) = (256, 64) 168 / 148, (512, 64) 703 / 616; RNN (256, 64) 58 /
50, (512, 64) 233 / 196 (benchmarks/RESULTS.md, eighteenth round).

Weights as PyTorch keeps them (``Packed.source``), gate rows GRU [r | z | n], RNN one block::

    A   (T, B, G)   x_t W_ih^T (or one step's, or a chunk's: see ``_batchmajor.forward_loop``)
    R   (B, G)      h_{t-1} W_hh^T of the current step, no bias
    hs  (T+1, B, H) h_{t-1} of step t sits at prev(t), h_t at next(t)

GRU (PyTorch's): r, z = sigma(x W_i^T + b_i + h W_h^T + b_h), n = tanh(x W_in^T + b_in +
r (h W_hn^T + b_hn)), h_t = (1 - z) n + z h_{t-1}; sigma(v) = (1 + tanh(v/2)) / 2, the r and z
biases summed and halved once per call. RNN: h_t = tanh or relu of (x W_ih^T + h W_hh^T + b_ih +
b_hh).
"""
import numba
import numpy as np

from . import _batchmajor as bm
from ._ftanh import HALF, ftanh
from .engine import _sizes

GRU, RNN_TANH, RNN_RELU = 0, 1, 2
KINDS = {"gru": GRU, "rnn_tanh": RNN_TANH, "rnn_relu": RNN_RELU}

_jit = numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
_inline = numba.njit(inline="always", fastmath=True, error_model="numpy")


@_inline
def _row_gru(a, r, b, b_hn, hp, h):
    """One row's GRU cell: a, r (3H,) the step's input and recurrent sides (a is written over),
    b (3H,) the biases (r and z: b_i + b_h, halved; n: b_in), hp: h_{t-1}, h: h_t."""
    H = h.shape[0]
    for j in range(2 * H):                                # tanh(v/2) of r and z
        a[j] = ftanh(HALF * (a[j] + r[j]) + b[j])
    az, an, rn, bn = a[H:2 * H], a[2 * H:], r[2 * H:], b[2 * H:]
    for j in range(H):
        rg, zg = HALF * a[j] + HALF, HALF * az[j] + HALF
        n = ftanh(an[j] + bn[j] + rg * (rn[j] + b_hn[j]))
        h[j] = n + zg * (hp[j] - n)                       # (1 - z) n + z h_{t-1}


@_inline
def _row_rnn(a, r, b, h, relu):
    H = h.shape[0]
    for j in range(H):
        v = a[j] + r[j] + b[j]
        h[j] = max(v, np.float32(0)) if relu else ftanh(v)


@_jit
def _cells(kind, A, R, b, b_hn, hp, h, n):
    """One step's cell over its first n rows (A, R (B, G); hp, h (B, H))."""
    for r in range(n):
        if kind == GRU:
            _row_gru(A[r], R[r], b, b_hn, hp[r], h[r])
        else:
            _row_rnn(A[r], R[r], b, h[r], kind == RNN_RELU)


@_jit
def forward_sequence(kind, compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, hs, batch_sizes, reverse):
    """The biases, the first state and the time loop in one compiled call (see
    ``_batchmajor.forward_sequence``); fills hs. Biases None: bias=False."""
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
    R = bm._empty_aligned(B, G)
    lo = 0
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else batch_sizes[t]  # rows n.. carry their state over
        hs[nxt, n:] = hs[prev, n:]
        a, lo = bm.step_input(compute, steps_in, A, s, t, lo, n, reverse)
        bm.step_product(compute, Wp, W, panels, hs[prev], n, R)
        _cells(kind, A[a], R, b, b_hn, hs[prev], hs[nxt], n)


def forward(x, h0, w, batch_sizes, reverse):
    """``engine.forward`` in inference for a GRU or RNN: (out (T, B, H), h_n, None, None); out and
    h_n are views of the states."""
    threads, matmul = bm._threads_for(x.shape[1])
    with threads:
        T, B, _ = x.shape
        _, _, b_ih, b_hh = w.source
        compute, Wp, W, panels, steps_in, A = bm.operands(x, w, False, matmul)
        hs = np.empty((T + 1, B, h0.shape[1]), np.float32)
        forward_sequence(KINDS[w.kind], compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, hs,
                         _sizes(batch_sizes), reverse)
    out, last = (hs[:T], 0) if reverse else (hs[1:], T)
    return out, hs[last], None, None
