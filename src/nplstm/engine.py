"""The fused LSTM time loop: forward and backward of one layer in one direction.

Everything else (layers, directions, lengths, dropout) composes around these two functions.

Shape legend, used in every comment below::

    T  time steps            B  batch              I  input features
    H  hidden size           P  output size of a step: proj_size if set, else H
    4H the four gates, in the engine's internal order [i | f | o | g]

Weights arrive in PyTorch's layout and gate order [i | f | g | o]::

    w_ih (4H, I)   w_hh (4H, P)   b_ih, b_hh (4H,)   w_hr (P, H) or None

Inside the loop every per-step array is feature-major, (features, B), as in the course
notebook's (n_a, m): a gate is then a contiguous block of rows, so each elementwise pass
runs over contiguous memory, and the recurrent GEMM is (4H, P) @ (P, B).

``pack`` reorders the gate rows to [i | f | o | g], so the three sigmoid gates form one
block, and scales those rows by 1/2: with sigma(z) = (1 + tanh(z/2)) / 2, one ``np.tanh``
over all 4H rows serves every gate, and the sigmoid block is finished with one multiply-add.

Equations of step t (PyTorch's)::

    z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh          (4H, B)
    i, f, o = sigmoid(z_i, z_f, z_o)    g = tanh(z_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                 (then h_t = W_hr h_t with a projection)

Where the time goes: the input side of all T steps is one GEMM before the loop; the loop
holds only the recurrent GEMM and in-place passes over preallocated buffers; the weight
gradients and dx are each one GEMM over all T*B columns after the backward loop.

Variable lengths use packed-sequence semantics on a batch sorted by decreasing length:
``batch_sizes[t]`` columns are active at step t and they are the first ones, so each step
works on the leading columns only. Columns that have finished (or, in reverse, not yet
started) keep their state untouched.
"""
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import _cellmath

__all__ = ["Packed", "pack", "forward", "backward", "cell_step", "backends", "get_backend", "set_backend",
           "use_backend"]

_backend = _cellmath.DEFAULT


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


def gate_permutation(H):
    """Row indices taking PyTorch's [i | f | g | o] to the engine's [i | f | o | g]."""
    return np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]


@dataclass
class Packed:
    """One layer-direction's weights, packed for the engine (see ``pack``)."""
    Wx: np.ndarray            # (4H, I)  w_ih, gates [i f o g], sigmoid rows halved
    Wh: np.ndarray            # (4H, P)  w_hh, the same
    b: np.ndarray             # (4H, 1)  b_ih + b_hh, the same
    w_ih: np.ndarray          # (4H, I)  rows in [i f o g] order, unscaled: for dx
    w_hh: np.ndarray          # (4H, P)  the same: for dh_{t-1}
    w_hr: np.ndarray | None   # (P, H)   projection, or None
    perm: np.ndarray          # (4H,)    gate_permutation(H)

    @property
    def H(self):
        return self.w_ih.shape[0] // 4


def pack(w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """Pack PyTorch-layout weights for ``forward``/``backward``; biases may be None (bias=False)."""
    H = w_ih.shape[0] // 4
    perm = gate_permutation(H)
    scale = np.ones((4 * H, 1), w_ih.dtype)
    scale[:3 * H] = 0.5                                   # sigma(z) = (1 + tanh(z/2)) / 2
    w_ih, w_hh = w_ih[perm], w_hh[perm]
    b = np.zeros((4 * H, 1), w_ih.dtype)
    for bias in (b_ih, b_hh):
        if bias is not None:
            b += bias[perm, None]
    return Packed(Wx=w_ih * scale, Wh=w_hh * scale, b=b * scale, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, perm=perm)


def forward(x, h0, c0, w, batch_sizes=None, reverse=False, train=True):
    """Run one direction of one layer over the whole sequence.

    Arguments:
        x -- (T, B, I), time-major; with ``batch_sizes`` the batch is sorted by decreasing length
        h0 (B, P), c0 (B, H) -- initial state
        w -- ``Packed`` weights
        batch_sizes -- None, or (T,) ints: columns active at each step (non-increasing)
        reverse -- read the sequence from its end (each column from its own last valid step)
        train -- keep what ``backward`` needs; otherwise reuse one step's buffers

    Returns:
        out (T, B, P) -- h_t of each step in time order (padded steps hold stale values:
                         the caller zeroes them)
        h_n (B, P), c_n (B, H) -- each row's state after its last processed step
        cache -- for ``backward`` (None unless train)
    """
    T, B, _ = x.shape
    H, P = w.H, w.Wh.shape[1]
    dtype = x.dtype
    A = np.matmul(w.Wx, x.reshape(T * B, -1).T)          # (4H, T*B): input side of every step
    A += w.b
    A = A.reshape(4 * H, T, B)                           # becomes the activated gates, step by step
    hs = np.empty((T + 1, P, B), dtype)                  # states; h_{t-1} of step t sits at prev(t)
    cs = np.empty((T + 1, H, B), dtype)
    keep = T if train else 1                             # inference reuses slot 0
    slot = None if train else np.empty((4 * H, B), dtype)   # inference: gates of one step, contiguous
    tc = np.empty((keep, H, B), dtype)                   # tanh(c_t)
    r = np.empty((keep, H, B), dtype) if w.w_hr is not None else None   # o * tanh(c_t) before projection
    rec = np.empty((4 * H, B), dtype)                    # recurrent GEMM result
    ig = np.empty((H, B), dtype)
    cell_forward = _cellmath.BACKENDS[_backend][0]
    first = T if reverse else 0
    hs[first], cs[first] = h0.T, c0.T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        k = t if train else 0
        n = B if batch_sizes is None else int(batch_sizes[t])
        if n < B:                                         # finished / not yet started columns carry over
            hs[nxt, :, n:], cs[nxt, :, n:] = hs[prev, :, n:], cs[prev, :, n:]
        np.matmul(w.Wh, hs[prev, :, :n], out=rec[:, :n])
        if train:                                         # gates in place, kept for backward
            a = A[:, t, :n]                               # (4H, n)
            a += rec[:, :n]                               # z / 2 for i, f, o; z for g
        else:                                             # contiguous scratch: faster passes
            a = np.add(rec[:, :n], A[:, t, :n], out=slot[:, :n])
        np.tanh(a, out=a)                                 # all four gates in one pass
        c = cs[nxt, :, :n]
        cell_forward(a, cs[prev, :, :n], c, ig[:, :n])    # i, f, o = (1 + tanh(z/2)) / 2; c_t = f c_{t-1} + i g
        tct = tc[k, :, :n]
        np.tanh(c, out=tct)
        o = a[2 * H:3 * H]
        if r is None:
            np.multiply(o, tct, out=hs[nxt, :, :n])       # h_t = o * tanh(c_t)
        else:
            np.multiply(o, tct, out=r[k, :, :n])
            np.matmul(w.w_hr, r[k, :, :n], out=hs[nxt, :, :n])   # h_t = W_hr (o * tanh(c_t))
    last = 0 if reverse else T
    out = (hs[0:T] if reverse else hs[1:T + 1]).transpose(0, 2, 1)   # (T, B, P) view
    cache = (x, A, hs, cs, tc, r, w, batch_sizes, reverse) if train else None
    return out, hs[last].T, cs[last].T, cache


def backward(dout, dh_n, dc_n, cache):
    """Backward of ``forward``.

    Arguments:
        dout (T, B, P) -- gradient w.r.t. ``out`` (ignored at padded steps)
        dh_n (B, P), dc_n (B, H) -- gradient w.r.t. the final state, or None for zero
        cache -- from ``forward(..., train=True)``

    Returns:
        dx (T, B, I), dh0 (B, P), dc0 (B, H)
        grads -- dict with keys w_ih, w_hh, b (the bias gradient, for both b_ih and b_hh),
                 w_hr (None without projection); in PyTorch's layout and gate order
    """
    x, A, hs, cs, tc, r, w, batch_sizes, reverse = cache
    T, B, I = x.shape
    H, P = w.H, w.Wh.shape[1]
    dtype = x.dtype
    dZ = (np.empty if batch_sizes is None else np.zeros)((4 * H, T, B), dtype)  # d pre-activations
    dH = np.zeros((T, P, B), dtype) if r is not None else None                # total dh_t, for dW_hr
    dh = np.zeros((P, B), dtype) if dh_n is None else np.array(dh_n.T, dtype)  # carries, backwards
    dc = np.zeros((H, B), dtype) if dc_n is None else np.array(dc_n.T, dtype)
    dr_buf, tmp, tmp3 = np.empty((H, B), dtype), np.empty((H, B), dtype), np.empty((3 * H, B), dtype)
    cell_backward = _cellmath.BACKENDS[_backend][1]                          # dz and dc of one step
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        prev = t + 1 if reverse else t
        n = B if batch_sizes is None else int(batch_sizes[t])
        dhn = dh[:, :n]
        dhn += dout[t, :n].T                              # this step's output plus what step t+1 sent
        if r is None:
            dr = dhn
        else:
            dH[t, :, :n] = dhn
            dr = np.matmul(w.w_hr.T, dhn, out=dr_buf[:, :n])   # backprop through the projection
        dz = dZ[:, t, :n]
        cell_backward(A[:, t, :n], tc[t, :, :n], cs[prev, :, :n], dr, dc[:, :n], dz, tmp[:, :n], tmp3[:, :n])
        np.matmul(w.w_hh.T, dz, out=dhn)                  # dh_{t-1}: backprop through W_hh h_{t-1}
    Z = dZ.reshape(4 * H, T * B)                          # (4H, T*B), no copy
    h_prev = (hs[1:] if reverse else hs[:T]).transpose(0, 2, 1).reshape(T * B, P)   # h_{t-1} of each step
    inv = np.argsort(w.perm)                              # back to PyTorch's [i f g o]
    grads = {
        "w_ih": (Z @ x.reshape(T * B, I))[inv],           # (4H, I)  one GEMM over all T*B columns
        "w_hh": (Z @ h_prev)[inv],                        # (4H, P)
        "b": Z.sum(axis=1)[inv],                          # (4H,)
        "w_hr": None if r is None else np.tensordot(dH, r, axes=([0, 2], [0, 2])),   # (P, H)
    }
    dx = (Z.T @ w.w_ih).reshape(T, B, I)                  # backprop through W_ih x
    return dx, dh.T, dc.T, grads


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
