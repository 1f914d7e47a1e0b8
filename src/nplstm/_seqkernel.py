"""A whole-sequence LSTM time loop in numba, for a batch of one in float32.

At batch 1 a step's arithmetic is tiny (a 4H x H matrix-vector product and 5H activations)
and the generic loop's ~8 NumPy calls per step cost more than the work itself. These two
kernels run the entire recurrence in one compiled call each: the forward writes exactly the
buffers the engine's generic loop writes, and the backward produces the same dZ, so the
engine's hoisted input GEMM and its after-loop weight-gradient GEMMs are shared unchanged.

tanh is Eigen's rational approximation for float32 (``ftanh``: clamped at +-7.9; error of a
few ulp), which vectorizes; libm's scalar tanh would cost more than the whole step. That is why
this path is float32 only: float64 keeps NumPy's tanh and the generic loop. Every kernel here is
compiled with ``error_model="numpy"``: numba's default checks each division for zero, and
that check alone keeps LLVM from vectorizing the division (measured: 7x slower per tanh).
"""
import numpy as np

try:
    import numba
except ImportError:                                       # the engine then never takes this path
    numba = None

_A = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_B = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


# float32 constants throughout: a Python float (or int) would promote every operation to
# float64 and stop LLVM from vectorizing over 16 float32 lanes
_f32 = np.float32
_a1, _a3, _a5, _a7, _a9, _a11, _a13 = (_f32(v) for v in _A)
_b0, _b2, _b4, _b6 = (_f32(v) for v in _B)
_LIM, HALF, ONE = _f32(7.90531110763549805), _f32(0.5), _f32(1.0)


def _ftanh(x):
    """tanh for float32, Eigen's rational approximation: vectorizable (no branch, one division)."""
    x = min(max(x, -_LIM), _LIM)
    x2 = x * x
    p = ((((((x2 * _a13 + _a11) * x2 + _a9) * x2 + _a7) * x2 + _a5) * x2 + _a3) * x2 + _a1) * x
    q = ((x2 * _b6 + _b4) * x2 + _b2) * x2 + _b0
    return p / q


ftanh = numba.njit(inline="always", fastmath=True, error_model="numpy")(_ftanh) if numba else None


def _build():
    half, one = HALF, ONE

    @numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
    def forward(At, Wh, hs, cs, tc, reverse):
        """At (T, 4H): input side of each step (i, f, o halved), a contiguous row per step; it
        becomes the activated gates [i f o g]. Wh (4H, H): the packed, halved W_hh;
        hs, cs (T+1, H, 1); tc (T, H, 1)."""
        T, G = At.shape
        H = G // 4
        h = np.empty(H, At.dtype)
        for s in range(T):
            t = T - 1 - s if reverse else s
            prev, nxt = (t + 1, t) if reverse else (t, t + 1)
            z = At[t]
            for j in range(H):
                h[j] = hs[prev, j, 0]
            for j in range(G):                            # z = input side + W_hh h, a dot product per row
                acc = z[j]
                for p in range(H):
                    acc += Wh[j, p] * h[p]
                z[j] = acc
            for j in range(3 * H):
                z[j] = half * ftanh(z[j]) + half         # sigma(z) = (1 + tanh(z/2)) / 2
            for j in range(3 * H, G):
                z[j] = ftanh(z[j])
            for j in range(H):
                c = z[H + j] * cs[prev, j, 0] + z[j] * z[3 * H + j]
                cs[nxt, j, 0] = c
                tt = ftanh(c)
                tc[t, j, 0] = tt
                hs[nxt, j, 0] = z[2 * H + j] * tt

    @numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
    def backward(At, tc, cs, w_hh, dout, dh, dc, reverse):
        """At (T, 4H): the gates, overwritten step by step with dL/dz; dout (T, 1, H); dh (H, 1),
        dc (H, 1) carries in and out; w_hh (4H, H) unscaled."""
        T, G = At.shape
        H = G // 4
        acc = np.empty(H, At.dtype)
        for s in range(T):
            t = s if reverse else T - 1 - s
            prev = t + 1 if reverse else t
            a = At[t]
            for j in range(H):
                dh[j, 0] += dout[t, 0, j]
            for j in range(H):
                i, f, o, g = a[j], a[H + j], a[2 * H + j], a[3 * H + j]
                tt, d = tc[t, j, 0], dh[j, 0]
                c = dc[j, 0] + d * o * (one - tt * tt)        # through h = o * tanh(c)
                a[j] = c * g * (i * (one - i))
                a[H + j] = c * cs[prev, j, 0] * (f * (one - f))
                a[2 * H + j] = d * tt * (o * (one - o))
                a[3 * H + j] = c * i * (one - g * g)
                dc[j, 0] = c * f
            for p in range(H):
                acc[p] = one - one
            for j in range(G):                            # dh_{t-1} = W_hh^T dz, as a sum of rows
                dzj = a[j]
                for p in range(H):
                    acc[p] += w_hh[j, p] * dzj
            for p in range(H):
                dh[p, 0] = acc[p]

    return forward, backward


KERNELS = _build() if numba is not None else None
