"""The compiled half of the batch-major LSTM (``nplstm._batchmajor``): each step's cell and the
time loops, forward and backward, and the products they call. The Python half there chooses the
products' forms (packed weights, panels, chunks), allocates the buffers and hands them here.

Shapes (the engine's legend)::

    A   (T, B, 4H)   input side x_t W_ih^T of every step, then the gates (written over it), then
                     dL/dz (training); (1, B, 4H), one step's, where the loop makes each step's
                     input side itself (inference, ``_batchmajor._steps_in``), there with
                     h_{t-1} W_hh^T added in the same product where both are the kernel's
                     (``step_both``: then no R)
    R   (B, 4H)      recurrent side h_{t-1} W_hh^T of the current step
    hs  (T+1, B, P)  h_{t-1} of step t sits at prev(t), h_t at next(t)
    cs  (T+1, B, H)  the same for c (inference: (2, B, H), c_{t-1} and c_t taking turns);
                     tc (T, B, H): tanh(c_t), kept for the backward

Vectorizing. Each step's cell math is a function compiled on its own (``_cells_*``), called
once per step over the step's rows, one row at a time: inlined into the time loop, LLVM
vectorized the training rows differently and they ran 6-10x slower; compiled per row instead
(a call per row), the calls and each row's loop set-up cost 10-40% of the cell (1 thread,
H = 128-256, B = 32-64). Inside a row, each gate is its own 1-D slice: indexed as
``a[H + j]``, numba checks for a negative index at each element, and that check too keeps LLVM
from vectorizing the loop.
"""
import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from . import _blas, _tilegemm
from ._aligned import ALIGN as _ALIGN
from ._cellmath_numba import _cell_grad, _gates_and_c
from ._ftanh import HALF, ftanh, wide_vectors

_jit = numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
_inline = numba.njit(inline="always", fastmath=True, error_model="numpy")
gemm_packed = numba.njit(inline="always")(_blas.gemm_packed)   # callable from the loops below


def _item(r, key):
    """r[key], or None where r is None (compiled: ``_item_of``)."""


@overload(_item, inline="always")
def _item_of(r, key):
    if isinstance(r, types.NoneType):
        return lambda r, key: None
    return lambda r, key: r[key]


def _plus(a, r, j):
    """a[j] + r[j], or a[j] where r is None (compiled: ``_plus_of``)."""


@overload(_plus, inline="always")
def _plus_of(a, r, j):
    if isinstance(r, types.NoneType):
        return lambda a, r, j: a[j]
    return lambda a, r, j: a[j] + r[j]


@_inline
def _tanh_gates(a, r, b):
    """a <- tanh(z) of the four gates' pre-activations: z = a + r + b for g, z = (a + r)/2 + b for
    the sigmoid gates i, f, o (b is halved there), whose sigma is (1 + tanh(z))/2 after; a: the
    input side x_t W_ih^T, r: the recurrent side h_{t-1} W_hh^T; or r None, where a holds both
    sides' sum (``step_both``: the code for it is compiled apart, with no test per element).
    One vector loop per run of rows: against one loop doing the whole cell at once, where LLVM
    spilled the five tanh's constants, 0.74-0.82 of the cell's time at H = 128-512, B = 32-64."""
    H = a.shape[0] // 4
    a_if, r_if, b_if = a[:2 * H], _item(r, slice(0, 2 * H)), b[:2 * H]   # PyTorch's gate order [i | f | g | o]
    ag, rg, bg = a[2 * H:3 * H], _item(r, slice(2 * H, 3 * H)), b[2 * H:3 * H]
    ao, ro, bo = a[3 * H:], _item(r, slice(3 * H, 4 * H)), b[3 * H:]
    for j in range(2 * H):
        a_if[j] = ftanh(HALF * _plus(a_if, r_if, j) + b_if[j])
    for j in range(H):
        ag[j] = ftanh(_plus(ag, rg, j) + bg[j])
    for j in range(H):
        ao[j] = ftanh(HALF * _plus(ao, ro, j) + bo[j])


def _row_train(a, r, b, cp, c, tc, h):
    """One row: pre-activations a + r (+ the bias b, halved on i, f, o) -> the gates (over a),
    c_t, tanh(c_t) and h_t."""
    H = c.shape[0]
    _tanh_gates(a, r, b)
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    for j in range(H):
        i, f, o, cc = _gates_and_c(ai[j], af[j], ao[j], ag[j], cp[j])
        th = ftanh(cc)
        ai[j], af[j], ao[j] = i, f, o
        c[j], tc[j], h[j] = cc, th, o * th                # h_t = o tanh(c_t)


def _row_infer(a, r, b, cp, c, h):
    """The same without keeping anything for a backward."""
    H = c.shape[0]
    _tanh_gates(a, r, b)
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    for j in range(H):
        i, f, o, cc = _gates_and_c(ai[j], af[j], ao[j], ag[j], cp[j])
        c[j], h[j] = cc, o * ftanh(cc)


def _row_backward(a, th, d, cp, dc):
    """One row back through the cell: the gates in ``a`` become dL/dz; d: dL/dh_t; dc carries
    dL/dc in and out."""
    H = dc.shape[0]
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    for j in range(H):
        ai[j], af[j], ao[j], ag[j], dc[j] = _cell_grad(ai[j], af[j], ao[j], ag[j], th[j], d[j], cp[j], dc[j])


# Each row function twice: compiled on its own, called where a step has one row (batch 1: 0.02-0.03
# us a step less than a call of the step functions below, 2-3% of a call at H = 64, T = 100); and
# inlined into those, which run a step's rows.
_one_row_train, _one_row_infer, _one_row_backward = (_jit(f) for f in (_row_train, _row_infer, _row_backward))
_row_train, _row_infer, _row_backward = (_inline(f) for f in (_row_train, _row_infer, _row_backward))


@_jit
def _cells_train(A, R, b, cp, c, tc, h, n):
    """One step's cell over its first n rows (A, R (B, 4H); cp, c, tc (B, H); h (B, P))."""
    for r in range(n):
        _row_train(A[r], R[r], b, cp[r], c[r], tc[r], h[r])


@_jit
def _cells_infer(A, R, b, cp, c, h, n):
    """The same in inference; R None where A holds both sides (``step_both``)."""
    for r in range(n):
        _row_infer(A[r], _item(R, r), b, cp[r], c[r], h[r])


@_inline
def _matvec(W, h, z):
    """z = W h, one dot product per row of W (N, K): numba vectorizes each row's sum. Batch 1's
    backward W_hh^T dz, whose rows are 4H long."""
    wide_vectors()                                        # (the loop it is inlined in: 16 lanes on AVX-512)
    N, K = W.shape
    for j in range(N):
        acc = np.float32(0)
        for k in range(K):
            acc += W[j, k] * h[k]
        z[j] = acc


@_inline
def _vecmat(v, M, out):
    """out += v M: the rows of M (K, N) weighted by v (K,) and summed, four rows a pass, so that out
    is read and written once per four rows (each pass one vector loop over N). Batch 1's forward
    h W_hh^T where ``_tilegemm.matvec`` does not fit (no AVX-512, or 4H not a multiple of 64).
    Against ``_matvec``'s dot product per row of W_hh, whose rows are only P long, measured at 1
    thread (us a step, T = 100; 4H x P): 256x64 0.98 against 1.58, 512x128 4.6 against 6.1,
    1024x256 21.2 against 21.4."""
    wide_vectors()
    K, N = M.shape
    k = 0
    while k + 4 <= K:
        v0, v1, v2, v3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        m0, m1, m2, m3 = M[k], M[k + 1], M[k + 2], M[k + 3]
        for j in range(N):
            out[j] += (m0[j] * v0 + m1[j] * v1) + (m2[j] * v2 + m3[j] * v3)
        k += 4
    for k in range(k, K):                                 # the last K % 4 rows
        vk, mk = v[k], M[k]
        for j in range(N):
            out[j] += mk[j] * vk


@_inline
def _empty_aligned(B, G):
    """np.empty((B, G), float32) starting on a 64-byte boundary (``nplstm._aligned``; numba's
    own are 32-byte aligned)."""
    buf = np.empty(B * G + 16, np.float32)
    start = (-(buf.ctypes.data // 4)) % 16
    return buf[start:start + B * G].reshape((B, G))


@_jit
def aligned(a):
    """``nplstm._aligned.is_aligned`` compiled: 0.13 us a call from Python against 0.76 through
    ``a.ctypes`` (batch 1's call checks two weights, ~2% of it at (32,64,1,100))."""
    return a.ctypes.data % _ALIGN == 0


@_inline
def c_slot(cs, t):
    """Where c of step t sits in ``cs``: at t where cs keeps every step's (T + 1, training), else at
    t & 1, two steps taking turns (inference, ``_batchmajor._states``). (& 1, not % 2: a division
    a step cost batch 1's call ~2%. With T = 1 in training both are t.)"""
    return t & 1 if cs.shape[0] == 2 else t


@_inline
def cell_bias(b_ih, b_hh, G):
    """The cell's bias: b_ih + b_hh (either None: bias=False), halved on the sigmoid gates i, f, o,
    for sigma(z) = (1 + tanh(z/2)) / 2."""
    H = G // 4
    b = np.zeros(G, np.float32)
    if b_ih is not None:
        b += b_ih
    if b_hh is not None:
        b += b_hh
    b[:2 * H] *= HALF
    b[3 * H:] *= HALF
    return b


@_jit
def forward_sequence(compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, c0, hs, cs, tc, batch_sizes, reverse,
                     train):
    """One direction's forward after the input-side GEMM (A; or see ``forward_loop``'s steps_in):
    the bias, the states and the time loop in one compiled call (set up from Python, the same
    took ~25 us a call: a quarter of a short sequence's time at batch 1). Fills hs, cs and tc,
    allocated by the caller: arrays made here would cost ~1 us each to hand back to Python.
    Biases None: bias=False; batch_sizes None: every row runs every step."""
    T, G = hs.shape[0] - 1, A.shape[2]
    b = cell_bias(b_ih, b_hh, G)
    first = T if reverse else 0
    hs[first], cs[c_slot(cs, first)] = h0, c0
    if W is not None and A.shape[1] == 1 and not train and steps_in is None and batch_sizes is None \
            and _tilegemm.row_fits(G):
        _one_row_loop(W, A, b, hs, cs, reverse)           # batch 1's inference: its own loop
    else:
        forward_loop(compute, Wp, W, panels, steps_in, A, b, hs, cs, tc, batch_sizes, reverse, train)


@_jit
def forward_loop(compute, Wp, W, panels, steps_in, A, b, hs, cs, tc, batch_sizes, reverse, train):
    """The time loop: R = h_{t-1} W_hh^T, then each active row's cell over A[t] and R. The product
    one of three ways, the others None: ``panels``, W_hh^T packed for ``_tilegemm``'s kernel
    (batch > 1, where it is the faster); oneDNN's ``compute`` on its packed Wp (batch > 1); or,
    batch 1, our own product with W = W_hh^T (P, 4H) (``_tilegemm.matvec``, else ``_vecmat``),
    which costs less than a GEMM call at that size (``step_product``). (The GEMM writes R, beta =
    0, rather than adding onto A[t]: 3-17% faster, oneDNN at 1 thread, B = 16-64, H = 128-512.)
    ``steps_in`` (``step_input``): None where A holds every step's input
    side already; else (W_ih^T's panels, x (T, B, I), W_ih^T packed for oneDNN, chunk), and the
    input side is made here, in inference, just before the cells read it from L2 (``_batchmajor._steps_in``):
    each step's x_t W_ih^T on the kernel, into A[0] (A (1, B, 4H)), where there are panels; else
    ``chunk`` steps' at a time on oneDNN, into A (chunk, B, 4H), where chunk > 0; or where the
    panels are W_ih^T over W_hh^T (I + P rows: ``one_product``), both sides of the
    step in one product into A[0] (``step_both``), and the cells read it alone. (A ``_gilfree``
    row passes (no panels, x, no packing, 0) where its A holds every step's.)"""
    T, B, G = hs.shape[0] - 1, A.shape[1], A.shape[2]
    R = _empty_aligned(B, G)                              # the recurrent side of the current step
    lo = 0                                                # the first step A holds (chunks)
    both = steps_in is not None and one_product(steps_in[0], steps_in[1].shape[2])   # ``step_both``
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        n = B if batch_sizes is None else batch_sizes[t]  # rows n.. have finished (or not yet started):
        cp, c = c_slot(cs, prev), c_slot(cs, nxt)         # c_{t-1}'s and c_t's index in cs
        if n < B:                                         # their state carries over
            hs[nxt, n:] = hs[prev, n:]
            cs[c, n:] = cs[cp, n:]
        if both:                                          # (inference) A[0] = x_t W_ih^T + h_{t-1} W_hh^T
            step_both(steps_in, hs, prev, t, n, A[0])
            if n == 1:
                _one_row_infer(A[0, 0], None, b, cs[cp, 0], cs[c, 0], hs[nxt, 0])
            else:
                _cells_infer(A[0], None, b, cs[cp], cs[c], hs[nxt], n)
            continue
        a = t
        if steps_in is not None:
            a, lo = step_input(compute, steps_in, A, s, t, lo, n, reverse)
        step_product(compute, Wp, W, panels, hs, prev, n, R)
        if n == 1 and train:
            _one_row_train(A[a, 0], R[0], b, cs[cp, 0], cs[c, 0], tc[t, 0], hs[nxt, 0])
        elif n == 1:
            _one_row_infer(A[a, 0], R[0], b, cs[cp, 0], cs[c, 0], hs[nxt, 0])
        elif train:
            _cells_train(A[a], R, b, cs[cp], cs[c], tc[t], hs[nxt], n)
        else:
            _cells_infer(A[a], R, b, cs[cp], cs[c], hs[nxt], n)


@_jit
def _one_row_loop(W, A, b, hs, cs, reverse):
    """``forward_loop`` at batch 1 in inference (``forward_sequence`` chooses it), each step's input
    side in A already and the product ``_tilegemm.matvec``'s: the same steps with the product
    inlined, and no branch for the other ways (chunks, lengths, rows), whose calls pass each array
    with a reference count up and down. At batch 1 a step is ~0.5 us, and those were ~0.1 of it:
    the loop alone at (32,64,1,100), 1 thread, 52-53 us against 61-62 (benchmarks/RESULTS.md,
    twenty-first round)."""
    T, G = hs.shape[0] - 1, A.shape[2]
    R = _empty_aligned(1, G)[0]                           # (4H,) the recurrent side of the current step
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        if s == 0 and _zeros(hs[prev], 1):               # h0 = 0: no product (``step_product``)
            R[:] = 0
        else:
            _tilegemm.matvec(hs[prev, 0], W, R)
        _one_row_infer(A[t, 0], R, b, cs[c_slot(cs, prev), 0], cs[c_slot(cs, nxt), 0], hs[nxt, 0])


@_jit
def step_input(compute, steps_in, A, s, t, lo, n, reverse):
    """(a, lo): A[a] holds step t's input side (the s-th step the loop runs), made here where
    ``steps_in`` says so (``forward_loop``); lo: the first step A holds (chunks), carried.
    (This and ``step_product`` are compiled on their own, not inlined by numba: inlined, each
    array argument took a reference count up and down at every step, and batch 1's call at
    (32,64,1,100) took 90 us instead of 87.)"""
    a = t
    if steps_in is not None:
        ih_panels, xs, wp_ih, chunk = steps_in
        T, B, G, I = xs.shape[0], A.shape[1], A.shape[2], xs.shape[2]
        if ih_panels.shape[0] > 0:                        # this step's x_t W_ih^T, into L2 for the cell
            a = 0
            _tilegemm.gemm(ih_panels, xs[t], n, A[0])
        elif chunk > 0:                                   # the next chunk of steps' x_t W_ih^T, into L2
            if s % chunk == 0:
                c = min(chunk, T - s)
                lo = t - c + 1 if reverse else t          # x[lo:lo + c]: c * B rows, one GEMM
                gemm_packed(compute, wp_ih, c * B, G, I, xs[lo].ctypes.data, I, A.ctypes.data, G)
            a = t - lo
    return a, lo


@_inline
def one_product(ih_panels, I):
    """Whether steps_in's panels (``_batchmajor._in_loop``) hold W_hh^T under W_ih^T
    (``_batchmajor._xh_panels``), for ``step_both``: more rows than x has features."""
    return ih_panels.shape[1] > I


@_jit
def step_both(steps_in, hs, prev, t, n, Z):
    """Z[:n] = x_t W_ih^T + h_{t-1} W_hh^T, h_{t-1} = hs[prev], in one product (``_tilegemm.gemm2``,
    steps_in's panels W_ih^T over W_hh^T); x_t's alone where h[:n] is zeros (``step_product``).
    Compiled on its own for the reason ``step_input`` is."""
    xh_panels, xs = steps_in[0], steps_in[1]
    _tilegemm.gemm2(xh_panels, xs[t], hs[prev], 0 if _zeros(hs[prev], n) else hs.shape[2], n, Z)


@_inline
def _zeros(h, n):
    """Whether h[:n] is all zeros: a first step from hx=None. It stops at the first other value, so
    at any later step it costs a read or two."""
    for r in range(n):
        for j in range(h.shape[1]):
            if h[r, j] != 0:
                return False
    return True


@_jit
def step_product(compute, Wp, W, panels, hs, prev, n, R):
    """R[:n] = h[:n] W_hh^T, h = hs[prev], the step's product, one of ``forward_loop``'s three
    ways; or zeros, without the product, where h[:n] is zeros (h0 = 0, the default): one step's
    product less, ~1% of a 50-step call at H = 512. The same R for finite weights (0 w = 0, and
    a + 0 = a in the cell); with an inf or NaN in W_hh, torch's first step would be NaN."""
    G, P = R.shape[1], hs.shape[2]
    if _zeros(hs[prev], n):
        R[:n] = 0
    elif panels is not None and panels.shape[0] > 0:     # (a ``_gilfree`` row's unused panels: none)
        _tilegemm.gemm(panels, hs[prev], n, R)
    elif Wp is not None:
        gemm_packed(compute, Wp, n, G, P, hs[prev].ctypes.data, P, R.ctypes.data, G)
    elif W is not None and n > 0 and _tilegemm.row_fits(G):   # batch 1: 16 vectors of sums at once
        _tilegemm.matvec(hs[prev, 0], W, R[0])
    elif W is not None and n > 0:                         # batch 1, by rows of W_hh^T
        R[0] = 0
        _vecmat(hs[prev, 0], W, R[0])


@_jit
def _cells_backward(A, tc, d, cp, dc, n):
    """One step's first n rows back through the cell (A (B, 4H); tc, cp, dc (B, H); d (B, P))."""
    for r in range(n):
        _row_backward(A[r], tc[r], d[r], cp[r], dc[r])


@_jit
def backward_loop(compute, Wp, W, A, tc, cs, dout, dh, dc, batch_sizes, reverse):
    """The backward time loop over the gates in A; dh (B, P), dc (B, H) carried; Wp: W_hh packed
    (or None at batch 1, and W = W_hh^T (P, 4H))."""
    T, B, G = A.shape
    P = dh.shape[1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        prev = t + 1 if reverse else t
        n = B if batch_sizes is None else batch_sizes[t]
        A[t, n:] = 0                                      # padded rows: no gradient
        dh[:n] += dout[t, :n]                             # this step's output plus what step t+1 sent
        if n == 1:
            _one_row_backward(A[t, 0], tc[t, 0], dh[0], cs[prev, 0], dc[0])
        else:
            _cells_backward(A[t], tc[t], dh, cs[prev], dc, n)
        # dh_{t-1} = dz_t W_hh: backprop through h_{t-1} W_hh^T
        if Wp is not None:
            gemm_packed(compute, Wp, n, P, G, A[t].ctypes.data, G, dh.ctypes.data, P)
        elif W is not None and n > 0:                     # batch 1: W_hh^T dz, a dot product per row of W_hh^T
            _matvec(W, A[t, 0], dh[0])


@_jit
def _times_tiles(panels, X, Y):
    """Y = X @ W, W packed into ``panels`` (``_tilegemm``)."""
    _tilegemm.gemm(panels, X, X.shape[0], Y)


@_jit
def _times_in_place(W, X, Y):
    """Y = X @ W, W (K, N) read as it is (``_tilegemm.gemm_in_place``)."""
    _tilegemm.gemm_in_place(W, X, X.shape[0], Y)


@_jit
def _times_packed(compute, Wp, X, Y):
    """Y (n, M) = X (n, K) @ R, R (K, M) packed in Wp: from numba, where the call costs ~12 us less
    than through ctypes from Python at (100x32)@(32x256)."""
    n, K = X.shape
    gemm_packed(compute, Wp, n, Y.shape[1], K, X.ctypes.data, K, Y.ctypes.data, Y.shape[1])
