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

from ._seqkernel import HALF, ONE, ftanh

_jit = numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _cell(zi, zf, zo, zg, cp):
    """Pre-activations (halved for i, f, o) and c_{t-1} -> gates, c_t and tanh(c_t), float32."""
    i = HALF * ftanh(zi) + HALF                           # sigma(z) = (1 + tanh(z/2)) / 2
    f = HALF * ftanh(zf) + HALF
    o = HALF * ftanh(zo) + HALF
    g = ftanh(zg)
    c = f * cp + i * g                                    # c_t = f c_{t-1} + i g
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
def _backward(A, dZ, t, tc, c_prev, dr, dc):
    H, n = tc.shape
    for j in range(H):
        for b in range(n):
            i, f, o, g = A[j, t, b], A[H + j, t, b], A[2 * H + j, t, b], A[3 * H + j, t, b]
            th, d = tc[j, b], dr[j, b]
            c = dc[j, b] + d * o * (ONE - th * th)        # through h = o * tanh(c)
            dZ[j, t, b] = c * g * (i * (ONE - i))         # through c = f c_prev + i g, then the sigmoid
            dZ[H + j, t, b] = c * c_prev[j, b] * (f * (ONE - f))
            dZ[2 * H + j, t, b] = d * th * (o * (ONE - o))
            dZ[3 * H + j, t, b] = c * i * (ONE - g * g)   # through tanh
            dc[j, b] = c * f                              # dL/dc_{t-1}


@_jit
def backward(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
    """Backward step, any float dtype: dZ[:, t] from the gates A[:, t]; dc carried in and out."""
    _backward(A, dZ, t, tc, c_prev, dr, dc)


@_jit
def backward_in_place(A, dZ, t, tc, c_prev, dr, dc, tmp, tmp3):
    """The same with dZ = A: each element's gates are read before its dz is written over them
    (a compilation of its own, for the same reason as ``step_train32``)."""
    _backward(A, A, t, tc, c_prev, dr, dc)


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
def gru_backward(A, dZ, dR, t, h_prev, hn, dh, direct):
    """GRU backward step, any float dtype: dZ[:, t] (input side), dR[:, t] (recurrent side) and
    the direct term dh * z of dL/dh_{t-1}, from the gates A[:, t] and dL/dh_t."""
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
