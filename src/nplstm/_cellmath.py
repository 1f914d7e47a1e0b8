"""The elementwise part of one LSTM step, forward and backward: a small registry of backends.

The engine's time loop does the GEMMs and ``np.tanh``; everything else elementwise in a step
goes through one of these functions. Two implementations, with the same arguments:

- ``numpy``: in-place ufuncs on preallocated buffers (always available);
- ``numba``: the same arithmetic fused into one compiled pass, when numba is installed
  (``pip install "nplstm[fast]"``). It has no transcendental functions, so it vectorizes;
  it wins because a step of the backward is ~17 ufunc calls in NumPy and one pass here.

Layout: feature-major, as in the engine. ``a`` (4H, n) holds the gates in order
[i | f | o | g]; every other array is (H, n).
"""
import os

import numpy as np


# ---------------------------------------------------------------------------- numpy
def forward_numpy(a, c_prev, c, ig):
    """``a`` holds tanh of the (halved for i, f, o) pre-activations: finish the sigmoids, then c.

    Writes i, f, o into ``a`` and c_t = f * c_prev + i * g into ``c``; ``ig`` is scratch.
    """
    H = c.shape[0]
    sig = a[:3 * H]
    sig *= 0.5
    sig += 0.5                                            # i, f, o = (1 + tanh(z/2)) / 2
    np.multiply(a[H:2 * H], c_prev, out=c)
    np.multiply(a[:H], a[3 * H:], out=ig)
    c += ig                                               # c_t = f * c_{t-1} + i * g


def backward_numpy(a, tc, c_prev, dr, dc, dz, tmp, tmp3):
    """One step back through the cell. ``dr`` is dL/d(o * tanh(c_t)); ``dc`` (in/out) carries
    dL/dc_t in and dL/dc_{t-1} out; ``dz`` receives dL/d(pre-activations) [i f o g]."""
    H = tc.shape[0]
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


BACKENDS = {"numpy": (forward_numpy, backward_numpy)}


# ---------------------------------------------------------------------------- numba
def _numba_backend():
    import numba

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def forward_numba(a, c_prev, c, ig):
        H, n = c.shape
        for j in range(H):
            for b in range(n):
                i = 0.5 * a[j, b] + 0.5
                f = 0.5 * a[H + j, b] + 0.5
                a[j, b], a[H + j, b] = i, f
                a[2 * H + j, b] = 0.5 * a[2 * H + j, b] + 0.5
                c[j, b] = f * c_prev[j, b] + i * a[3 * H + j, b]

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def backward_numba(a, tc, c_prev, dr, dc, dz, tmp, tmp3):
        H, n = tc.shape
        for j in range(H):
            for b in range(n):
                i, f, o, g = a[j, b], a[H + j, b], a[2 * H + j, b], a[3 * H + j, b]
                t, d = tc[j, b], dr[j, b]
                c = dc[j, b] + d * o * (1 - t * t)        # through h = o * tanh(c)
                dz[j, b] = c * g * (i * (1 - i))
                dz[H + j, b] = c * c_prev[j, b] * (f * (1 - f))
                dz[2 * H + j, b] = d * t * (o * (1 - o))
                dz[3 * H + j, b] = c * i * (1 - g * g)
                dc[j, b] = c * f

    return forward_numba, backward_numba


if os.environ.get("NPLSTM_BACKEND", "") != "numpy":
    try:
        BACKENDS["numba"] = _numba_backend()
    except ImportError:
        pass

DEFAULT = os.environ.get("NPLSTM_BACKEND") or ("numba" if "numba" in BACKENDS else "numpy")
if DEFAULT not in BACKENDS:
    raise ImportError(f"NPLSTM_BACKEND={DEFAULT!r} is not available; choose from {sorted(BACKENDS)}")
