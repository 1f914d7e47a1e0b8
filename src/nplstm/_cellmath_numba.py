"""The numba kernels of ``_cellmath``'s "numba" backend: one compiled pass per LSTM step each way.

Same arguments as the NumPy backend (see ``_cellmath``). Three things make them fast:

- they index the whole (4H, T, B) buffers at step t, so numba knows the inner axis is
  contiguous and vectorizes over b (a strided view A[:, t] measured 8x slower);
- ``error_model="numpy"``: numba's default checks every division for zero, and that check
  alone keeps LLVM from vectorizing the rational tanh (measured 7x slower);
- float32 constants (``HALF``, ``ONE``): a Python 0.5 or 1 would promote float32 arithmetic to
  float64 and halve the SIMD lanes; float64 data promotes them exactly.

The kernels are module-level functions (no closures) so that ``cache=True`` finds them again
in a new process instead of compiling them for a second each time.
"""
import numba
import numpy as np

from ._blas import sgemm
from ._ftanh import HALF, ONE, ftanh, wide_vectors

ZERO = np.float32(0.0)

_jit = numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _gates_and_c(ti, tf, to, g, cp):
    """tanh(z/2) of the gates i, f, o, g = tanh(z_g) and c_{t-1} -> the sigmoid gates and c_t."""
    i = HALF * ti + HALF                                  # sigma(z) = (1 + tanh(z/2)) / 2
    f = HALF * tf + HALF
    o = HALF * to + HALF
    return i, f, o, f * cp + i * g                        # c_t = f c_{t-1} + i g


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _cell(zi, zf, zo, zg, cp):
    """Pre-activations (halved for i, f, o) and c_{t-1} -> gates, c_t and tanh(c_t), float32."""
    g = ftanh(zg)
    i, f, o, c = _gates_and_c(ftanh(zi), ftanh(zf), ftanh(zo), g, cp)
    return i, f, o, g, c, ftanh(c)


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _step32(A, t, dst, s, rec, c_prev, c, tc, h):
    H, n = c.shape
    for j in range(H):
        for b in range(n):
            i, f, o, g, cc, th = _cell(A[j, t, b] + rec[j, b], A[H + j, t, b] + rec[H + j, b],
                                       A[2 * H + j, t, b] + rec[2 * H + j, b],
                                       A[3 * H + j, t, b] + rec[3 * H + j, b], c_prev[j, b])
            dst[j, s, b], dst[H + j, s, b], dst[2 * H + j, s, b], dst[3 * H + j, s, b] = i, f, o, g
            c[j, b], tc[j, b], h[j, b] = cc, th, o * th   # h_t = o tanh(c_t)


@_jit
def step_infer32(A, t, out, ot, rec, c_prev, c, tc, h):
    """Forward step, float32, gates into the scratch ``out[:, ot]``."""
    _step32(A, t, out, ot, rec, c_prev, c, tc, h)


@_jit
def step_train32(A, t, out, ot, rec, c_prev, c, tc, h):
    """Forward step, float32, gates back into A[:, t] (``out`` is A). A compilation of its own:
    passing A twice would make LLVM's runtime alias check fail and fall back to scalar code."""
    _step32(A, t, A, t, rec, c_prev, c, tc, h)


@_jit
def finish(out, ot, c_prev, c, ig):
    """After np.tanh over the gates (float64): finish the sigmoids, then c_t = f c_{t-1} + i g."""
    H, n = c.shape
    for j in range(H):
        for b in range(n):
            i = HALF * out[j, ot, b] + HALF
            f = HALF * out[H + j, ot, b] + HALF
            out[j, ot, b], out[H + j, ot, b] = i, f
            out[2 * H + j, ot, b] = HALF * out[2 * H + j, ot, b] + HALF
            c[j, b] = f * c_prev[j, b] + i * out[3 * H + j, ot, b]


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _cell_grad(i, f, o, g, th, d, cp, dc):
    """One unit back through the cell: gates, tanh(c_t), dL/dh_t, c_{t-1}, dL/dc_t ->
    dL/dz for [i f o g] and dL/dc_{t-1}."""
    wide_vectors()                                        # (the kernel it is inlined in: 16 lanes on AVX-512)
    c = dc + d * o * (ONE - th * th)                      # through h = o * tanh(c)
    return (c * g * (i * (ONE - i)), c * cp * (f * (ONE - f)),   # through c = f c_prev + i g, then sigma
            d * th * (o * (ONE - o)), c * i * (ONE - g * g), c * f)   # ..., through tanh; dL/dc_{t-1}


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _backward(A, dZ, t, tc, c_prev, dr, dc):
    H, n = tc.shape
    for j in range(H):
        for b in range(n):
            dZ[j, t, b], dZ[H + j, t, b], dZ[2 * H + j, t, b], dZ[3 * H + j, t, b], dc[j, b] = _cell_grad(
                A[j, t, b], A[H + j, t, b], A[2 * H + j, t, b], A[3 * H + j, t, b], tc[j, b], dr[j, b],
                c_prev[j, b], dc[j, b])


@_jit
def backward(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
    """Backward step, any float dtype: dZ[:, t] from the gates A[:, t]; dc carried in and out."""
    _backward(A, dZ, t, tc, c_prev, dr, dc)


@_jit
def backward_in_place(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
    """The same with dZ = A: each element's gates are read before its dz is written over them
    (a compilation of its own, for the same reason as ``step_train32``)."""
    _backward(A, A, t, tc, c_prev, dr, dc)


# ---------------------------------------------------------------------------- RNN
@_jit
def rnn_tanh_step32(A, t, rec, h):
    """Vanilla RNN forward step, float32: h = tanh(A[:, t] + rec), one pass (NumPy's float32 tanh
    measured 3.2 ns an element on an AVX2 core: its SIMD version needs AVX-512)."""
    H, n = h.shape
    for j in range(H):
        for b in range(n):
            h[j, b] = ftanh(A[j, t, b] + rec[j, b])


# ---------------------------------------------------------------------------- GRU
@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _gru_step32(A, t, dst, s, rec, h_prev, hn, h):
    H, n = h.shape
    for j in range(H):
        for b in range(n):
            r = HALF * ftanh(A[j, t, b] + rec[j, b]) + HALF           # sigma, rows pre-halved
            z = HALF * ftanh(A[H + j, t, b] + rec[H + j, b]) + HALF
            hnv = rec[2 * H + j, b]                                   # W_hn h_{t-1} + b_hn
            nn = ftanh(A[2 * H + j, t, b] + r * hnv)                  # n = tanh(W_in x + b_in + r (...))
            dst[j, s, b], dst[H + j, s, b], dst[2 * H + j, s, b] = r, z, nn
            hn[j, b] = hnv
            h[j, b] = nn + z * (h_prev[j, b] - nn)                    # h_t = (1 - z) n + z h_{t-1}


@_jit
def gru_step_infer32(A, t, out, ot, rec, h_prev, hn, h):
    """GRU forward step, float32: gates into the scratch ``out[:, ot]``, W_hn h + b_hn into hn."""
    _gru_step32(A, t, out, ot, rec, h_prev, hn, h)


@_jit
def gru_step_train32(A, t, out, ot, rec, h_prev, hn, h):
    """The same with the gates back into A[:, t] (``out`` is A; see ``step_train32``)."""
    _gru_step32(A, t, A, t, rec, h_prev, hn, h)


@_jit
def gru_backward(A, dZ, dR, t, h_prev, hn, dh, direct, tmp, tmp2):
    """GRU backward step, any float dtype: dZ[:, t] (input side), dR[:, t] (recurrent side) and
    the direct term dh * z of dL/dh_{t-1}, from the gates A[:, t] and dL/dh_t."""
    wide_vectors()
    H, n = dh.shape
    for j in range(H):
        for b in range(n):
            r, z, nn = A[j, t, b], A[H + j, t, b], A[2 * H + j, t, b]
            d = dh[j, b]
            dn = d * (ONE - z) * (ONE - nn * nn)                      # through h = n + z (h_prev - n), then tanh
            dr = dn * hn[j, b] * (r * (ONE - r))                      # through r (W_hn h + b_hn), then sigma
            dzz = d * (h_prev[j, b] - nn) * (z * (ONE - z))
            dZ[j, t, b], dZ[H + j, t, b], dZ[2 * H + j, t, b] = dr, dzz, dn
            dR[j, t, b], dR[H + j, t, b], dR[2 * H + j, t, b] = dr, dzz, dn * r
            direct[j, b] = d * z


# ---------------------------------------------------------------------------- the whole time loop
# For float32 LSTM layers without projection at batch > 1: each step's GEMM through ``gemm``
# (``nplstm._blas.gemm()``, OpenBLAS's or oneDNN's sgemm, a ctypes function passed in, so the
# loop still caches; ``_blas.sgemm`` speaks either's convention), and the
# step's elementwise math as above, indexed over the whole buffers; one Python call per sequence.
@_jit
def lstm_forward_loop32(gemm, A, bx, Wh, hs, cs, tc, batch_sizes, reverse, train):
    """The forward time loop; the same buffers and meaning as ``engine.forward``'s generic loop,
    except that A comes without its bias bx (G*H, 1), added here as A is read (a pass over A
    fewer). The gates go into A in training and inference alike (A is the call's own buffer)."""
    G, T, B = A.shape
    H, P = G // 4, Wh.shape[1]
    rec = np.empty((G, B), A.dtype)                       # W_hh h_{t-1}
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else batch_sizes[t]
        for j in range(H):                                # finished / not yet started columns carry over
            for b in range(n, B):
                hs[nxt, j, b], cs[nxt, j, b] = hs[prev, j, b], cs[prev, j, b]
        sgemm(gemm, False, False, G, n, P, Wh.ctypes.data, P, hs[prev].ctypes.data, B, rec.ctypes.data, B)
        k = t if train else 0
        for j in range(H):
            for b in range(n):
                i, f, o, g, cc, th = _cell(A[j, t, b] + rec[j, b] + bx[j, 0],
                                           A[H + j, t, b] + rec[H + j, b] + bx[H + j, 0],
                                           A[2 * H + j, t, b] + rec[2 * H + j, b] + bx[2 * H + j, 0],
                                           A[3 * H + j, t, b] + rec[3 * H + j, b] + bx[3 * H + j, 0], cs[prev, j, b])
                A[j, t, b], A[H + j, t, b], A[2 * H + j, t, b], A[3 * H + j, t, b] = i, f, o, g
                cs[nxt, j, b], tc[k, j, b], hs[nxt, j, b] = cc, th, o * th


@_jit
def lstm_backward_loop32(gemm, A, tc, cs, w_hh, dout, dh, dc, batch_sizes, reverse):
    """The backward time loop: dL/dz over the gates in A, step by step; dh, dc carried (H, B)."""
    G, T, B = A.shape
    H = G // 4
    for s in range(T):
        t = s if reverse else T - 1 - s
        prev = t + 1 if reverse else t
        n = B if batch_sizes is None else batch_sizes[t]
        for j in range(G):                                # padded columns: no gradient
            for b in range(n, B):
                A[j, t, b] = ZERO
        for b in range(n):                                # this step's output plus what step t+1 sent
            for j in range(H):                            # (a pass of its own: dout is (T, B, H))
                dh[j, b] += dout[t, b, j]
        for j in range(H):
            for b in range(n):
                A[j, t, b], A[H + j, t, b], A[2 * H + j, t, b], A[3 * H + j, t, b], dc[j, b] = _cell_grad(
                    A[j, t, b], A[H + j, t, b], A[2 * H + j, t, b], A[3 * H + j, t, b], tc[t, j, b], dh[j, b],
                    cs[prev, j, b], dc[j, b])
        # dh_{t-1} = W_hh^T dz_t: dz_t is A[:, t, :n], rows T*B apart
        sgemm(gemm, True, False, H, n, G, w_hh.ctypes.data, H, A.ctypes.data + t * B * A.itemsize, T * B,
              dh.ctypes.data, B)
