"""A whole-sequence LSTM time loop in numba, for a batch of one in float32.

At batch 1 a step's arithmetic is tiny (a 4H x H matrix-vector product and 5H activations)
and the generic loop's ~8 NumPy calls per step cost more than the work itself. These two
kernels run the entire recurrence in one compiled call each: the forward writes exactly the
buffers the engine's generic loop writes, and the backward produces the same dZ, so the
engine's hoisted input GEMM and its after-loop weight-gradient GEMMs are shared unchanged.

tanh is Eigen's rational approximation for float32 (clamped at +-7.9; error of a few ulp),
which vectorizes; libm's scalar tanh would cost more than the whole step. That is why this
path is float32 only: float64 keeps NumPy's tanh and the generic loop.
"""
import numpy as np

try:
    import numba
except ImportError:                                       # the engine then never takes this path
    numba = None

_A = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_B = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def _build():
    # float32 constants throughout: a Python float (or int) would promote every operation to
    # float64 and stop LLVM from vectorizing over 16 float32 lanes
    f32 = np.float32
    a1, a3, a5, a7, a9, a11, a13 = (f32(v) for v in _A)
    b0, b2, b4, b6 = (f32(v) for v in _B)
    lim, half, one = f32(7.90531110763549805), f32(0.5), f32(1.0)

    @numba.njit(inline="always", fastmath=True)
    def ftanh(x):
        x = min(max(x, -lim), lim)
        x2 = x * x
        p = ((((((x2 * a13 + a11) * x2 + a9) * x2 + a7) * x2 + a5) * x2 + a3) * x2 + a1) * x
        q = ((x2 * b6 + b4) * x2 + b2) * x2 + b0
        return p / q

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def forward(A, WhT, hs, cs, tc, reverse):
        """A (4H, T, 1): input side (i, f, o halved), becomes the activated gates [i f o g];
        WhT (H, 4H): the packed, halved W_hh transposed; hs, cs (T+1, H, 1); tc (T, H, 1)."""
        G, T = A.shape[0], A.shape[1]
        H = G // 4
        z, h = np.empty(G, A.dtype), np.empty(H, A.dtype)
        for s in range(T):
            t = T - 1 - s if reverse else s
            prev, nxt = (t + 1, t) if reverse else (t, t + 1)
            for j in range(H):
                h[j] = hs[prev, j, 0]
            for j in range(G):
                z[j] = A[j, t, 0]
            for p in range(H):                            # z += W_hh h, as a sum of columns
                hp = h[p]
                for j in range(G):
                    z[j] += WhT[p, j] * hp
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
            for j in range(G):
                A[j, t, 0] = z[j]

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def backward(A, tc, cs, w_hh, dout, dh, dc, dZ, reverse):
        """dout (T, 1, H); dh (H, 1), dc (H, 1) carries in and out; dZ (4H, T, 1) out; w_hh (4H, H) unscaled."""
        G, T = A.shape[0], A.shape[1]
        H = G // 4
        acc = np.empty(H, A.dtype)
        for s in range(T):
            t = s if reverse else T - 1 - s
            prev = t + 1 if reverse else t
            for j in range(H):
                dh[j, 0] += dout[t, 0, j]
            for j in range(H):
                i, f, o, g = A[j, t, 0], A[H + j, t, 0], A[2 * H + j, t, 0], A[3 * H + j, t, 0]
                tt, d = tc[t, j, 0], dh[j, 0]
                c = dc[j, 0] + d * o * (one - tt * tt)        # through h = o * tanh(c)
                dZ[j, t, 0] = c * g * (i * (one - i))
                dZ[H + j, t, 0] = c * cs[prev, j, 0] * (f * (one - f))
                dZ[2 * H + j, t, 0] = d * tt * (o * (one - o))
                dZ[3 * H + j, t, 0] = c * i * (one - g * g)
                dc[j, 0] = c * f
            for p in range(H):
                acc[p] = f32(0.0)
            for j in range(G):                            # dh_{t-1} = W_hh^T dz, as a sum of rows
                dzj = dZ[j, t, 0]
                for p in range(H):
                    acc[p] += w_hh[j, p] * dzj
            for p in range(H):
                dh[p, 0] = acc[p]

    return forward, backward


KERNELS = _build() if numba is not None else None
