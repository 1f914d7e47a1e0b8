"""The kinds of recurrent cell the engine's loop serves (``KINDS``: LSTM, GRU, RNN), and one
layer-direction's weights as the loop uses them (``Packed``, made by ``pack``).

The engine's time loop (``nplstm.engine``) is the same for every kind; what differs is a step's
elementwise math and the buffers it keeps, which each kind's class below supplies, and the
order of its gate rows. Shape legend and layouts: ``nplstm.engine``'s.
"""
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from . import _blas, _cellmath, _xp

__all__ = ["LSTMCell", "GRUCell", "RNNCell", "KINDS", "Packed", "pack"]


# ---------------------------------------------------------------------------- the kinds of cell
# Each kind says how many gate blocks it has (the leading ``sigmoid_gates`` of them sigmoids),
# whether it carries a cell state c, whether b_hh can be folded into the input-side bias,
# whether its forward reads h_{t-1} itself (``ext["h_prev"]``), and whether its backward may
# write dL/dz over the gates of the same step (``dz_in_place``: it reads a step's gates only
# before writing that step's dz), which saves a (G*H, T, B) buffer and its page faults.
# Its two step functions work on step t of the (G*H, T, B) buffers and on (features, n) views
# of the current step, n the active columns. The buffers come whole, with t, because a compiled
# backend vectorizes only over arrays it knows to be contiguous (a view A[:, t] is strided):
#
#   forward(A, t, out, ot, rec, h_next, c_prev, c_next, ext, k, w, n)
#       A[:, t, :n]: input side W_ih x_t + b; out[:, ot, :n]: where the activated gates go (A
#       itself in training, to be kept; a one-step scratch in inference); rec: W_hh h_{t-1}
#       (+ b_hh); writes h_next (and c_next); ext: the kind's own per-step buffers, slot k.
#   backward(dh, dc, A, dZ, dR, t, h_prev, c_prev, ext, w, scratch, n) -> (drec, direct)
#       dh: dL/dh_t in; dc: dL/dc_t in, dL/dc_{t-1} out (LSTM); writes dZ[:, t, :n] = dL/d(input
#       side) and returns the gradient of the recurrent side (dZ's step itself where both sides
#       see the same sum) and a direct dL/dh_{t-1} term, if any (GRU's z h_{t-1}).
class LSTMCell:
    """c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)  (then W_hr h_t with a projection)."""
    gates, sigmoid_gates, has_c, fold_bias, needs_h_prev, dz_in_place = 4, 3, True, True, False, True

    @staticmethod
    def perm(H):
        return np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]  # PyTorch [i f g o] -> [i f o g]

    @staticmethod
    def buffers(T, H, B, dtype, w, backend):
        xp = w.xp
        ext = {"tc": xp.empty((T, H, B), dtype), "ig": xp.empty((H, B), dtype),   # tanh(c_t); scratch
               "math": _cellmath.for_module(xp, backend)["lstm"]}   # the elementwise backend, chosen once
        if w.w_hr is not None:                            # o * tanh(c_t) before the projection; zeros, because
            ext["r"] = xp.zeros((T, H, B), dtype)        # padded steps enter dW_hr's GEMM (times a zero dh)
        return ext

    @staticmethod
    def forward(A, t, out, ot, rec, h_next, c_prev, c_next, ext, k, w, n):
        r = h_next if w.w_hr is None else ext["r"][k, :, :n]
        # gates into out[:, ot], c_t into c_next, tanh(c_t) kept, r = o * tanh(c_t)  (one backend call)
        ext["math"][0](A, t, out, ot, rec, c_prev, c_next, ext["tc"][k, :, :n], r, ext["ig"][:, :n])
        if w.w_hr is not None:
            w.xp.matmul(w.w_hr, r, out=h_next)            # h_t = W_hr (o * tanh(c_t))

    @staticmethod
    def backward(dh, dc, A, dZ, dR, t, h_prev, c_prev, ext, w, scratch, n):
        """dZ: dL/d(pre-activations); the recurrent side's gradient is the same (one sum feeds both GEMMs)."""
        if w.w_hr is not None:
            scratch["dH"][t, :, :n] = dh
            dh = w.xp.matmul(w.w_hr.T, dh, out=scratch["dr"][:, :n])   # backprop through the projection
        ext["math"][1](A, dZ, t, ext["tc"][t, :, :n], c_prev, dh, dc, scratch["tmp"][:, :n], scratch["tmp3"][:, :n])
        return dZ[:, t, :n], None


class GRUCell:
    """r, z = sigma(...), n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h_t = (1 - z) n + z h_{t-1} (PyTorch's)."""
    gates, sigmoid_gates, has_c, fold_bias, needs_h_prev = 3, 2, False, False, True   # h_t mixes in h_{t-1}
    dz_in_place = False                                   # its backward reads r, z, n after writing dz

    @staticmethod
    def perm(H):
        return np.arange(3 * H)                           # already [r z n]: the sigmoid gates lead

    @staticmethod
    def buffers(T, H, B, dtype, w, backend):
        return {"hn": w.xp.empty((T, H, B), dtype),       # W_hn h_{t-1} + b_hn, kept for the backward
                "math": _cellmath.for_module(w.xp, backend)["gru"]}

    @staticmethod
    def forward(A, t, out, ot, rec, h_next, c_prev, c_next, ext, k, w, n):
        ext["math"][0](A, t, out, ot, rec, ext["h_prev"], ext["hn"][k, :, :n], h_next)   # one backend call

    @staticmethod
    def backward(dh, dc, A, dZ, dR, t, h_prev, c_prev, ext, w, scratch, n):
        direct = scratch["direct"][:, :n]
        ext["math"][1](A, dZ, dR, t, h_prev, ext["hn"][t, :, :n], dh, direct, scratch["tmp"][:, :n],
                       scratch["tmp2"][:, :n])
        return dR[:, t, :n], direct                       # h_t = ... + z h_{t-1}: the direct term


class RNNCell:
    """h_t = act(W_ih x + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu."""
    gates, sigmoid_gates, has_c, fold_bias, needs_h_prev, dz_in_place = 1, 0, False, True, False, True

    def __init__(self, nonlinearity):
        self.relu = nonlinearity == "relu"

    @staticmethod
    def perm(H):
        return np.arange(H)

    @staticmethod
    def buffers(T, H, B, dtype, w, backend):
        return {"math": _cellmath.for_module(w.xp, backend)["rnn"]}

    def forward(self, A, t, out, ot, rec, h_next, c_prev, c_next, ext, k, w, n):
        ext["math"][0](A, t, rec, h_next, self.relu)      # no gates buffer: h_t is the activation itself

    def backward(self, dh, dc, A, dZ, dR, t, h_prev, c_prev, ext, w, scratch, n):
        dz = dZ[:, t, :n]
        ext["math"][1](ext["h_next"], dh, dz, self.relu)  # the activation is h_t itself
        return dz, None


KINDS = {"lstm": LSTMCell(), "gru": GRUCell(), "rnn_tanh": RNNCell("tanh"), "rnn_relu": RNNCell("relu")}


@dataclass
class Packed:
    """One layer-direction's weights: PyTorch's arrays as given, and the engine's packed forms of
    them, made on first use (see ``pack``; ``_batchmajor`` reads the originals and packs W_hh for
    oneDNN instead, kept in ``gemm_forms``). Every form is made from the weights as they are then:
    a Packed must not outlive a change to them (``LSTM`` makes one per call, and its ``frozen()``
    copy keeps them for good, over weights made read-only)."""
    kind: str                 # a key of KINDS
    source: tuple             # (w_ih, w_hh, b_ih, b_hh): PyTorch's layout and gate order; biases may be None
    w_hr: np.ndarray | None   # (P, H)    LSTM projection, or None
    xp: object = np           # the array module of all of these: numpy, or cupy on a GPU
    gemm_forms: dict = field(default_factory=dict, repr=False, compare=False)   # _batchmajor's packings
    kept: bool = False        # a frozen copy's: used for many calls, so forms that only pay off
                              # over several calls are worth making (``_batchmajor._input_side``)

    @cached_property
    def _packed(self):
        """(Wx, Wh, bx, bh, perm), gathered into engine order once (a copy each), sigmoid rows halved."""
        cell, (w_ih, w_hh, b_ih, b_hh), xp, H = KINDS[self.kind], self.source, self.xp, self.H
        gpu = getattr(getattr(w_ih, "device", None), "id", None)   # CuPy: which GPU the arrays live on
        perm, scale = _gate_layout(self.kind, H, w_ih.dtype, xp, gpu)
        w_ih, w_hh = _blas.c_contiguous(w_ih), _blas.c_contiguous(w_hh)   # row-major: a float32 LSTM holds
                                                          # them column-major, and rows gathered from that
                                                          # come 3-24x slower
        Wx, Wh = w_ih[perm], w_hh[perm]                  # one gather each (copies), then halved in place:
        Wx[:cell.sigmoid_gates * H] *= 0.5                # a pass over the sigmoid rows, no second copy
        Wh[:cell.sigmoid_gates * H] *= 0.5
        zero = xp.zeros(cell.gates * H, w_ih.dtype)
        bi = (zero if b_ih is None else b_ih[perm])[:, None]
        bh = (zero if b_hh is None else b_hh[perm])[:, None]
        if cell.fold_bias:
            bi, bh = bi + bh, None
        return Wx, Wh, bi * scale, None if bh is None else bh * scale, perm

    # The packed forms. bh is None unless the recurrent-side bias must stay apart (GRU: b_hn sits
    # inside r * (...)); elsewhere b_hh is folded into bx.
    Wx = property(lambda self: self._packed[0])     # (G*H, I)  w_ih, engine gate order, sigmoid rows halved
    Wh = property(lambda self: self._packed[1])     # (G*H, P)  w_hh, the same
    bx = property(lambda self: self._packed[2])     # (G*H, 1)  input-side bias
    bh = property(lambda self: self._packed[3])     # (G*H, 1)  recurrent-side bias, or None
    perm = property(lambda self: self._packed[4])   # (G*H,)    PyTorch rows -> engine rows

    # Unscaled copies for the backward only (dx, dh_{t-1}), made on first use: inference never
    # pays for them. Halving and doubling are exact, so they equal the original weights.
    @cached_property
    def w_ih(self):           # (G*H, I)  engine gate order, unscaled
        return self._unscaled(self.Wx)

    @cached_property
    def w_hh(self):           # (G*H, P)  the same
        return self._unscaled(self.Wh)

    def _unscaled(self, W):
        W = W.copy()
        W[:KINDS[self.kind].sigmoid_gates * self.H] *= 2
        return W

    @property
    def H(self):
        return self.source[0].shape[0] // KINDS[self.kind].gates


@lru_cache(maxsize=256)
def _gate_layout(kind, H, dtype, xp, gpu):
    """Row permutation PyTorch -> engine order, and the per-row scale (1/2 on sigmoid rows): (G*H,), (G*H, 1).

    Cached: they depend on the shape only (and, with CuPy, on the GPU ``gpu`` they are made on),
    and building them is a good part of packing a small layer.
    """
    cell = KINDS[kind]
    scale = np.ones((cell.gates * H, 1), dtype)
    scale[:cell.sigmoid_gates * H] = 0.5                  # sigma(z) = (1 + tanh(z/2)) / 2
    with (nullcontext() if gpu is None else xp.cuda.Device(gpu)):
        perm, scale = xp.asarray(cell.perm(H)), xp.asarray(scale)
    if xp is np:                                          # shared by every pack of this shape: never written
        perm.flags.writeable = scale.flags.writeable = False
    return perm, scale


def pack(w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, kind="lstm", kept=False):
    """Wrap PyTorch-layout weights for ``forward``/``backward``; biases may be None (bias=False).
    The packed forms are made when a loop first asks for them (``Packed``); ``kept``: the Packed
    will serve many calls on unchanging weights (a frozen copy's)."""
    return Packed(kind=kind, source=(w_ih, w_hh, b_ih, b_hh), w_hr=w_hr, xp=_xp.array_module(w_ih), kept=kept)
