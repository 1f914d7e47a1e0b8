"""The elementwise part of one LSTM, GRU or RNN step, forward and backward: a small registry of backends.

The engine's time loop does the GEMMs; everything elementwise in a step goes through one of
these pairs (forward, backward), per backend and kind of cell (``BACKENDS[name][kind]``):

- ``numpy``: in-place ufuncs on preallocated buffers (always available). The ufuncs are
  NumPy's, which hand CuPy arrays to CuPy's own (NEP 13), so this one runs on any device;
- ``numba``: one compiled pass per step each way, when numba is installed (``pip install
  "nplstm[fast]"``); in float32 the forward's tanh is a vectorizable rational approximation (a
  few ulp), in float64 it stays ``np.tanh`` (SIMD, exact) and the rest is one pass. It wins
  because a step of the backward is ~17 ufunc calls in NumPy and one pass here;
- ``cupy``: the LSTM step in one CUDA kernel launch each way (``cupy.ElementwiseKernel``),
  for CuPy arrays; ``for_module`` picks it, it is not a name for ``engine.set_backend``.

The arguments, n the active columns of this step:

    LSTM forward(A, t, out, ot, rec, c_prev, c, tc, h, ig)
        reads the input side A[:, t, :n] and rec (4H, n), writes the gates into out[:, ot, :n]
        (training: out is A, so they are kept; inference: a one-step scratch), c_t into c,
        tanh(c_t) into tc and o * tanh(c_t) into h; ig is scratch
    LSTM backward(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3)
        reads the gates A[:, t, :n], dr = dL/d(o tanh(c_t)); dc carries dL/dc_t in and
        dL/dc_{t-1} out; writes dL/d(pre-activations) into dZ[:, t, :n] (dZ may be A itself);
        tmp, tmp3 scratch
    GRU forward(A, t, out, ot, rec, h_prev, hn, h) and backward(A, dZ, dR, t, h_prev, hn, dh,
        direct, tmp, tmp2): see ``gru_forward_numpy`` and ``gru_backward_numpy``
    RNN forward(A, t, rec, h, relu) and backward(h, dh, dz, relu): see ``rnn_forward_numpy``

Layout: feature-major, as in the engine: A, out, dZ are (G*H, T, B) with gates in the order
[i | f | o | g] (LSTM) or [r | z | n] (GRU) on axis 0; every other array is (rows, n).
"""
import os

import numpy as np


def _forward(finish):
    """A step forward around ``finish(out, ot, c_prev, c, ig)``, the part after the gates' tanh."""
    def forward(A, t, out, ot, rec, c_prev, c, tc, h, ig):
        H, n = c.shape
        a = out[:, ot, :n]
        np.add(A[:, t, :n], rec, out=a)                   # z / 2 for i, f, o; z for g
        np.tanh(a, out=a)                                 # all four gates in one pass
        finish(out, ot, c_prev, c, ig)                    # i, f, o; c_t = f c + i g
        np.tanh(c, out=tc)
        np.multiply(a[2 * H:3 * H], tc, out=h)            # h_t = o * tanh(c_t)
    return forward


# ---------------------------------------------------------------------------- numpy
def finish_numpy(out, ot, c_prev, c, ig):
    """``out[:, ot]`` holds tanh of the (halved for i, f, o) pre-activations: finish the sigmoids, then c.

    Writes i, f, o there and c_t = f * c_prev + i * g into ``c``; ``ig`` is scratch.
    """
    H, n = c.shape
    a = out[:, ot, :n]
    sig = a[:3 * H]
    sig *= 0.5
    sig += 0.5                                            # i, f, o = (1 + tanh(z/2)) / 2
    np.multiply(a[H:2 * H], c_prev, out=c)
    np.multiply(a[:H], a[3 * H:], out=ig)
    c += ig                                               # c_t = f * c_{t-1} + i * g


def backward_numpy(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
    """One step back through the cell. ``dr`` is dL/d(o * tanh(c_t)); ``dc`` (in/out) carries
    dL/dc_t in and dL/dc_{t-1} out; ``dZ[:, t]`` receives dL/d(pre-activations) [i f o g]."""
    H, n = tc.shape
    a, dz = A[:, t, :n], dZ[:, t, :n]
    if dZ is A:                                           # dz overwrites the gates, which are read below
        a = a.copy()
    i, f, o, g = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    di, df, do, dg = dz[:H], dz[H:2 * H], dz[2 * H:3 * H], dz[3 * H:]
    np.multiply(dr, tc, out=do)                           # backprop through h = o * tanh(c)
    np.multiply(tc, tc, out=tmp)
    np.subtract(1, tmp, out=tmp)
    tmp *= o
    tmp *= dr
    dc += tmp                                             # backprop through tanh(c)
    np.multiply(dc, g, out=di)                            # backprop through c = f * c_prev + i * g
    np.multiply(dc, c_prev, out=df)
    np.multiply(dc, i, out=dg)
    np.subtract(1, a[:3 * H], out=tmp3)
    tmp3 *= a[:3 * H]
    dz[:3 * H] *= tmp3                                    # backprop through sigmoid: s (1 - s)
    np.multiply(g, g, out=tmp)
    np.subtract(1, tmp, out=tmp)
    dg *= tmp                                             # backprop through tanh: 1 - g^2
    dc *= f                                               # dc_{t-1}


def gru_forward_numpy(A, t, out, ot, rec, h_prev, hn, h):
    """GRU step (gates [r | z | n], r and z rows pre-halved): gates into out[:, ot, :n],
    W_hn h_{t-1} + b_hn (rec's n block) into ``hn``, h_t into ``h``."""
    H, n = h.shape
    src, a = A[:, t, :n], out[:, ot, :n]
    rz, an = a[:2 * H], a[2 * H:]
    np.add(src[:2 * H], rec[:2 * H], out=rz)
    if out is not A:                                      # inference: the n block goes to the scratch
        an[...] = src[2 * H:]
    np.tanh(rz, out=rz)
    rz *= 0.5
    rz += 0.5                                             # r, z = (1 + tanh(z/2)) / 2
    hn[...] = rec[2 * H:]
    np.multiply(rz[:H], hn, out=h)                        # r * (W_hn h + b_hn), h as scratch
    an += h
    np.tanh(an, out=an)                                   # n
    np.subtract(h_prev, an, out=h)
    h *= rz[H:]
    h += an                                               # h_t = n + z (h_{t-1} - n)


def gru_backward_numpy(A, dZ, dR, t, h_prev, hn, dh, direct, tmp, tmp2):
    """GRU step back: dZ[:, t] (input side), dR[:, t] (recurrent side) and the direct term
    dh * z of dL/dh_{t-1}, from the gates A[:, t] and dL/dh_t ``dh``."""
    H, n = dh.shape
    a, dz, drec = A[:, t, :n], dZ[:, t, :n], dR[:, t, :n]
    r, z, nn = a[:H], a[H:2 * H], a[2 * H:]
    dr, dzz, dn = dz[:H], dz[H:2 * H], dz[2 * H:]
    np.subtract(h_prev, nn, out=tmp)
    np.multiply(dh, tmp, out=dzz)                         # dL/dz = dh (h_{t-1} - n)
    np.subtract(1, z, out=tmp)
    np.multiply(dh, tmp, out=dn)                          # dL/dn = dh (1 - z)
    np.multiply(nn, nn, out=tmp)
    np.subtract(1, tmp, out=tmp)
    dn *= tmp                                             # backprop through tanh: dL/d(n pre-activation)
    np.multiply(dn, hn, out=dr)                           # dL/dr = dn_pre (W_hn h + b_hn)
    np.subtract(1, a[:2 * H], out=tmp2)
    tmp2 *= a[:2 * H]
    dz[:2 * H] *= tmp2                                    # backprop through sigmoid: s (1 - s)
    drec[:2 * H] = dz[:2 * H]                             # the recurrent side sees r, z as the input side does
    np.multiply(dn, r, out=drec[2 * H:])                  # but its n part is scaled by r
    np.multiply(dh, z, out=direct)                        # h_t = ... + z h_{t-1}


def rnn_forward_numpy(A, t, rec, h, relu):
    """Vanilla RNN step: h_t = act(A[:, t, :n] + rec), act relu or tanh (no gates buffer)."""
    np.add(A[:, t, :h.shape[1]], rec, out=h)
    if relu:
        np.maximum(h, 0, out=h)
    else:
        np.tanh(h, out=h)


def rnn_backward_numpy(h, dh, dz, relu):
    """dL/d(pre-activation) into dz, from h_t itself and dL/dh_t."""
    if relu:
        np.multiply(dh, h > 0, out=dz)                    # backprop through relu
    else:
        np.multiply(h, h, out=dz)
        np.subtract(1, dz, out=dz)
        dz *= dh                                          # backprop through tanh


BACKENDS = {"numpy": {"lstm": (_forward(finish_numpy), backward_numpy),
                      "gru": (gru_forward_numpy, gru_backward_numpy),
                      "rnn": (rnn_forward_numpy, rnn_backward_numpy)}}


# ---------------------------------------------------------------------------- numba
def _numba_backend():
    from . import _cellmath_numba as nb                   # ImportError without numba
    forward64 = _forward(nb.finish)                       # float64: NumPy's tanh, exact to the last ulp

    def forward_numba(A, t, out, ot, rec, c_prev, c, tc, h, ig):
        if A.dtype == np.float32:                         # the whole step in one pass, rational tanh
            (nb.step_train32 if out is A else nb.step_infer32)(A, t, out, ot, rec, c_prev, c, tc, h)
        else:
            forward64(A, t, out, ot, rec, c_prev, c, tc, h, ig)

    def backward_numba(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
        (nb.backward_in_place if dZ is A else nb.backward)(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3)

    def gru_forward_numba(A, t, out, ot, rec, h_prev, hn, h):
        if A.dtype == np.float32:                         # the whole step in one pass, rational tanh
            (nb.gru_step_train32 if out is A else nb.gru_step_infer32)(A, t, out, ot, rec, h_prev, hn, h)
        else:
            gru_forward_numpy(A, t, out, ot, rec, h_prev, hn, h)

    def rnn_forward_numba(A, t, rec, h, relu):
        if A.dtype == np.float32 and not relu:            # tanh: one pass with the rational tanh
            nb.rnn_tanh_step32(A, t, rec, h)
        else:
            rnn_forward_numpy(A, t, rec, h, relu)

    return {"lstm": (forward_numba, backward_numba), "gru": (gru_forward_numba, nb.gru_backward),
            "rnn": (rnn_forward_numba, rnn_backward_numpy)}


# ---------------------------------------------------------------------------- cupy
def _cupy_backend():
    """One fused CUDA kernel each way; the gate blocks are passed as (H, n) views of the (4H, n) buffers."""
    import cupy

    fwd = cupy.ElementwiseKernel(
        "T si, T sf, T so, T sg, T ri, T rf, T ro, T rg, T cp",
        "T ai, T af, T ao, T ag, T c, T tc, T h",
        """
        ai = (T)0.5 + (T)0.5 * tanh(si + ri);   // sigma(z) = (1 + tanh(z/2)) / 2: the rows are pre-halved
        af = (T)0.5 + (T)0.5 * tanh(sf + rf);
        ao = (T)0.5 + (T)0.5 * tanh(so + ro);
        ag = tanh(sg + rg);
        c = af * cp + ai * ag;                  // c_t = f c_{t-1} + i g
        tc = tanh(c);
        h = ao * tc;                            // h_t = o tanh(c_t)
        """, "nplstm_lstm_forward")
    bwd = cupy.ElementwiseKernel(
        "T gi, T gf, T go, T gg, T t, T d, T cp",
        "T di, T df, T dout, T dg, T dc",
        """
        T dct = dc + d * go * (1 - t * t);      // backprop through h = o tanh(c), plus what step t+1 sent
        di = dct * gg * (gi * (1 - gi));        // through c = f c_prev + i g, then the sigmoid
        df = dct * cp * (gf * (1 - gf));
        dout = d * t * (go * (1 - go));
        dg = dct * gi * (1 - gg * gg);          // through tanh
        dc = dct * gf;                          // dL/dc_{t-1}
        """, "nplstm_lstm_backward")

    def blocks(x, H):
        return x[:H], x[H:2 * H], x[2 * H:3 * H], x[3 * H:]

    def forward_cupy(A, t, out, ot, rec, c_prev, c, tc, h, ig):
        H, n = c.shape
        fwd(*blocks(A[:, t, :n], H), *blocks(rec, H), c_prev, *blocks(out[:, ot, :n], H), c, tc, h)

    def backward_cupy(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
        H, n = tc.shape
        bwd(*blocks(A[:, t, :n], H), tc, dr, c_prev, *blocks(dZ[:, t, :n], H), dc)

    return forward_cupy, backward_cupy


_CUPY = []                                                # the cupy pair, compiled on first use


def for_module(xp, name):
    """The pairs {kind: (forward, backward)} for arrays of module ``xp``: backend ``name`` for
    NumPy; for CuPy the LSTM's fused kernels (unless ``name`` is "numpy") and plain ufuncs for
    the GRU; plain ufuncs (which dispatch to any array module) otherwise."""
    if xp is np:
        return BACKENDS[name]
    if getattr(xp, "__name__", "") == "cupy" and name != "numpy":
        if not _CUPY:
            _CUPY.append(_cupy_backend())
        return {**BACKENDS["numpy"], "lstm": _CUPY[0]}
    return BACKENDS["numpy"]


if os.environ.get("NPLSTM_BACKEND", "") != "numpy":
    try:
        BACKENDS["numba"] = _numba_backend()
    except ImportError:
        pass

DEFAULT = os.environ.get("NPLSTM_BACKEND") or ("numba" if "numba" in BACKENDS else "numpy")
if DEFAULT not in BACKENDS:
    raise ImportError(f"NPLSTM_BACKEND={DEFAULT!r} is not available; choose from {sorted(BACKENDS)}")
