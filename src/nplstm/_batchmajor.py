"""The float32 LSTM's fastest CPU path: a batch-major time loop in PyTorch's own weight layout.

``engine.forward``/``backward`` hand a layer-direction over to ``forward``/``backward`` here
when ``engine._batch_major`` says so: numba, float32 NumPy arrays, LSTM without projection,
and batch 1, or oneDNN's packed GEMM in use (``nplstm._blas.packed_compute()``), or one
step's product too small to split over threads. Same arguments, same results (to rounding),
same contract as the engine's. At batch 1 each step's product is our own matrix-vector
product (``_tilegemm.matvec``, or ``_vecmat``), cheaper than a GEMM call at that size, in
inference in a loop of its own (``_batchmajor_loops._one_row_loop``), and BLAS runs on one
thread (``nplstm._threads``, ``_threads_for``); at batch > 1 oneDNN's OpenMP does
(``_blas.one_omp_thread``).

Why another layout. The engine's loop is feature-major, (features, B) per step. On oneDNN
the recurrent GEMM is faster with the batch as rows, h_{t-1} (B, P) @ W_hh^T (P, 4H), and
faster again from weights packed once per sequence into the kernel's blocked layout (an
sgemm re-packs its operands at every call). Measured on this project's machine (1 thread,
GFLOP/s, the per-step GEMM in a loop): 4H x H = 512 x 128 at B = 16: 112 against 82
feature-major; 1024 x 256 at B = 64: 106-108 against 104. Then the outputs need no
transpose: the rows of h are PyTorch's (T, B, P) already. (OpenBLAS is faster feature-major,
so the engine keeps that loop for it.) Faster still, where the CPU has AVX-512 (and 4H whole
panels of 64), the forward's step product is our own register-tiled kernel for exactly that
shape (``_tilegemm``: 3-25% under oneDNN's time; the whole inference call ~5% at
(128,256,64,100); past L2 it prefetches the next panel, ~3% at (512,512,64,50)); the backward's
stays oneDNN's.

And no packing of the engine's own: the weights are used as PyTorch keeps them
(``Packed.source``), gates in PyTorch's order [i | f | g | o], so the gradients come out in
that order too. For sigma(z) = (1 + tanh(z/2)) / 2 the rows take z/2 as HALF * z + b/2,
one multiply-add, with the bias halved once per call instead of the weights.

The compiled half, the cells and the time loops with the shape legend, is
``nplstm._batchmajor_loops``; this module is the Python half: which path and forms a call
takes, its buffers, the row blocks' tables, and the weight gradients after the loop.
"""
import contextlib

import numpy as np

from . import _aligned, _blas, _rowblocks, _threads, _tilegemm
from ._batchmajor_loops import (_times_in_place, _times_packed, _times_tiles, aligned, backward_loop, c_slot,
                                forward_sequence, one_product)
from .engine import BATCH_MAJOR, _sizes


def _threads_for(B, train=True):
    """This path's threads for a call: (a context manager, the function for its big GEMMs). At
    batch 1, BLAS on one thread (``nplstm._threads``): for the call, or in inference only around
    the input side's GEMM where that is BLAS's (the loop calls no BLAS, and setting the threads
    and back costs ~0.6 us of a ~36-80 us call at (16,32,1,100)-(32,64,1,100)). At batch > 1,
    oneDNN's OpenMP on one thread for the per-step products; where that lowers its count
    (``engine._batch_major`` chose this path for steps too small to split), the big GEMMs go to
    NumPy's OpenBLAS, which keeps its threads."""
    if B == 1 and not train:
        return _NO_SWITCH, _matmul_one_blas_thread
    if B == 1:
        return _threads.single_blas_thread(), _blas.matmul
    threads = _blas.one_omp_thread()
    return threads, (np.matmul if _blas.omp_threads() > 1 else _blas.matmul)


_NO_SWITCH = contextlib.nullcontext()


def _matmul_one_blas_thread(a, b):
    with _threads.single_blas_thread():
        return _blas.matmul(a, b)


def forward(x, h0, c0, w, batch_sizes, reverse, train):
    """``engine.forward`` for this path: out (T, B, P) and h_n are views of the states (no copy)."""
    threads, matmul = _threads_for(x.shape[1], train)
    with threads:
        return _forward(x, h0, c0, w, batch_sizes, reverse, train, matmul)


def _forward(x, h0, c0, w, batch_sizes, reverse, train, matmul):
    T, B, _ = x.shape
    _, w_hh, b_ih, b_hh = w.source
    G = w_hh.shape[0]
    compute, Wp, W, panels, steps_in, A = operands(x, w, train, matmul)
    hs, cs, tc = _states(T, B, G // 4, h0.shape[1], train)
    forward_sequence(compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, c0, hs, cs, tc, _sizes(batch_sizes),
                     reverse, train)
    return _result(x, A, hs, cs, tc, w, batch_sizes, reverse, train)


def operands(x, w, train, matmul):
    """``forward_loop``'s (compute, Wp, W, panels, steps_in, A) for x (T, B, I) and the Packed w,
    of any gate count G: the step's product (W_hh^T on our kernel, or else packed for oneDNN, or
    at batch 1 as it is), the input side's way, and A: every step's input side made by one GEMM
    (the bias is added in the loop), or room for the step's or the chunk's the loop makes."""
    B, G = x.shape[1], w.source[1].shape[0]
    forms = None if train else w.gemm_forms
    steps_in = _steps_in(x, w, _kernel_step(w, B), forms, train, matmul)
    both = steps_in is not None and one_product.py_func(steps_in[0], x.shape[2])
    panels = None if both else _panels(w, B, forms)       # W_hh^T, every step: our kernel's, or else
    compute, Wp, W = (None, None, None) if panels is not None or both else _packed(w, B, transpose=True, forms=forms)
    if steps_in is None:
        A = _input_side(x, w, forms, train, matmul)
    else:
        A = np.empty((max(steps_in[3], 1), B, G), np.float32)
        compute = _blas.packed_compute()                  # (the loop's chunks are oneDNN's, whatever W_hh's is)
    return compute, Wp, W, panels, steps_in, A


def _steps_in(x, w, kernel_step, forms, train, matmul):
    """``forward_loop``'s steps_in on one thread: (W_ih^T's panels, x as C-contiguous, W_ih^T
    packed for oneDNN, chunk) where inference makes the input side inside the loop (``_in_loop``),
    each unused part empty; else None."""
    T, B, _ = x.shape
    if matmul is np.matmul or B == 1:                     # (batch 1: never, ``_in_loop``)
        return None
    plan = _in_loop(x.shape, w, kernel_step, train, forms, T * B)
    if plan is None:
        return None
    ih_panels, wp_ih, chunk = plan
    return (_NO_PANELS if ih_panels is None else ih_panels, np.ascontiguousarray(x),
            _NO_PACKING if wp_ih is None else wp_ih, chunk)


def _in_loop(shape, w, kernel_step, train, forms, rows, later=None):
    """(W_ih^T's panels, W_ih^T packed for oneDNN, chunk) where inference on x of ``shape`` makes the
    input side inside the loop instead of one GEMM before it, the unused part None; else None.
    Then A (T, B, 4H), most of which lives in DRAM between the GEMM that writes it and the step
    that reads it, never exists. For one thread's call (``_steps_in``) and a row block's
    (``_prepare``); ``kernel_step``: whether the step's product h W_hh^T is ``_tilegemm``'s
    (``_kernel_step``); ``rows``: the whole input's, which one packing serves (a block is some of
    them). Two ways:

    - each step's x_t W_ih^T on ``_tilegemm``'s kernel (panels, None, 0), where that product is the
      kernel's and the panels each step reads fit L2 with room to spare (``_input_in_loop``).
      Measured (1 thread, inference, ms; (I,H,B,T), before / inside, the loops alone):
      (128,256,64,100) 34.29-34.72 / 31.43-31.94, (192,256,64,100) 38.41 / 36.14, (64,128,32,50)
      2.22 / 2.08; but (256,256,64,100), 2 MiB of panels, 43.68 / 44.22. An LSTM whose step
      product is the kernel's too makes both in one (the panels [W_ih^T; W_hh^T]: ``_xh_panels``);
    - else a chunk of steps' at a time on oneDNN's packed GEMM (None, packing, chunk > 0:
      ``_chunk``). Not on the kernel: a chunk's product, (256x512) @ (512x2048), took 0.974 of
      oneDNN's time alone, but whole calls at 2 threads 1.06-1.09 (benchmarks/RESULTS.md,
      twenty-third round); the kernel goes panel by panel over all of a chunk's rows, and the
      chunk's output pushes its rows out of L2 before the next panel."""
    if _input_in_loop(shape, w, kernel_step, train):
        return (_xh_panels(w, forms) if kernel_step and w.kind == "lstm" else _ih_panels(w, forms)), None, 0
    chunk = _chunk(shape, w, train, rows)
    return (None, _ih_packed(w, rows, later), chunk) if chunk else None


def _chunk(shape, w, train, rows):
    """Steps a chunk of the input side holds where inference makes it in the loop on oneDNN, chunk
    by chunk (``forward_loop``), or 0: one GEMM before the loop. Inference at batch > 1 with
    oneDNN's packed GEMM, and A larger than L2; a chunk as many steps as fill L2 (one at least).
    The chunk's GEMM has chunk * B rows, as efficient as one of T * B, and the cells read its
    output from L2, not DRAM. Measured (GEMMs and cells, 1 thread, ms, one GEMM before the loop,
    W_ih^T prepacked / chunks of 2, 4, 8 steps; benchmarks/RESULTS.md, seventeenth round):
    (512,512,64,50) 0.956 / 0.942 / 0.956; (512,512,32,50) 0.990 / 0.975 / 0.953; (512,256,64,100)
    0.957 / 0.942 / 0.947; (1024,512,64,50) 0.983 / 0.967 / 0.998; (512,1024,64,30) 0.986 /
    0.978 / 0.989. The plain layer (not ``w.kept``) packs W_ih^T at each call for it, which pays
    over enough rows, ``rows`` >= 4 I (the whole input's, T * B, which one packing serves: a row
    block is some of them): whole calls, chunks / one GEMM, (512,512,64,50) 0.962,
    (256,512,64,50) 0.971, but (1024,512,64,50) 1.004; a frozen copy 0.955, 0.940, 0.973. The
    plain layer's row blocks at 2 threads (paired medians of 31-61): (512,512,64,50) 0.978,
    (256,512,64,50) 0.981, (512,256,64,100) 0.975."""
    T, B, I = shape
    G = w.source[1].shape[0]
    L2 = _tilegemm.L2_BYTES
    if train or B == 1 or 4 * T * B * G <= L2 or (rows < 4 * I and not w.kept) or _blas.packed_compute() is None:
        return 0
    return max(1, L2 // (4 * B * G))                      # (fewer than T: A outgrows L2)


def _input_in_loop(shape, w, kernel_step, train):
    """``_steps_in``'s rule, on one thread, for x of ``shape``: inference at batch > 1; W_ih^T on the
    kernel, its panels (and W_hh^T's, where the step's product is the kernel's: ``kernel_step``)
    within 7/8 of L2; and A larger than L2, so that it would go through DRAM. (A that fits L2 gained
    nothing in the loop: (64,128,16,50), A 1.6 MiB, 0.99-1.00 at 1 thread; and two directions at
    once at 2 threads, one a thread, took 1.10 of the time.) Where W_hh^T's panels do not fit
    beside them they stream through L2 at every step anyway, and taking A's DRAM trip away still
    paid (with W_hh^T then oneDNN's): H = 512,
    B = 64, T = 50, 1 thread, whole inference calls, in the loop / before it (paired medians of 15
    interleaved): I = 16 0.94, 64 0.87, 128 0.93-0.95 (benchmarks/RESULTS.md, seventeenth round)."""
    T, B, I = shape
    G, P = w.source[1].shape
    held = I + (P if kernel_step else 0)                  # rows of panels every step reads
    L2 = _tilegemm.L2_BYTES
    return (not train and B > 1 and _kernel_input(I, G) and 4 * held * G <= L2 * 7 // 8 and 4 * T * B * G > L2)


def _kernel_input(I, G):
    """Whether the input side x W_ih^T may run on ``_tilegemm``'s kernel (``_input_side``,
    ``_input_in_loop``): where the kernel suits the product and I <= 256, the sizes those rules
    were measured at. The kernel takes the step's product at any P (``_tilegemm.suits``), but
    the input side in the loop at I = 512 lost: (512,128,32,50), 1 thread, inference against
    the chunks before it, 1.018 of the time (median of 5 processes, ``benchmarks/prefetch_panels.py``).
    Since the kernel's tiles share the rows out evenly (``_tilegemm.tile_rows``) it is mixed at
    I = 512, 0.925-0.95 at H = 64 and 0.97-1.005 at H = 128, and 1.02 at I = 768
    (benchmarks/RESULTS.md, twenty-fourth round): a wider rule wants more shapes measured."""
    return _tilegemm.suits(I, G) and I <= 256


def _ih_panels(w, forms):
    """W_ih^T packed for ``_tilegemm``, kept in ``forms`` as W_hh^T's panels are (``_panels``)."""
    return _kept(forms, "tiles_ih", lambda: _tilegemm.pack(w.source[0].T))


def _xh_panels(w, forms):
    """W_ih^T over W_hh^T, (I + P, 4H), packed for ``_tilegemm.gemm2``: each step's x_t W_ih^T +
    h_{t-1} W_hh^T in one product (``_batchmajor_loops.step_both``), its sums in registers over both,
    where each would be a product of its own on the kernel, written to a buffer of its own and
    read back by the cell. Kept in ``forms`` as the others are. Measured (1 thread, (64x128) and
    (64x256) @ (., 1024), 100 steps, us a step): 224.4 against 235.5 for the two products (which
    take 73.0 and 146.3 alone: their panels, 1.5 MiB together, contend for L2)."""
    return _kept(forms, "tiles_xh", lambda: _tilegemm.pack(w.source[0].T, w.source[1].T))


def _input_side(x, w, forms, train, matmul):
    """x_t W_ih^T of every step, (T, B, 4H): one GEMM. On one thread, a small one (up to 2^25
    multiply-adds, I <= 256) runs on ``_tilegemm``'s kernel, W_ih^T packed for it at each call (a
    frozen copy: once, kept in ``Packed.gemm_forms``); or, up to 2^23 and where the layer holds
    weight_ih column-major (W_ih^T row-major, ``recurrent._Recurrent._held``), read in place, with
    no packing (``_in_place``). Measured, 1 thread, us: (100x32)@(32x256) _blas.matmul 26, oneDNN
    packed 14, the kernel 10-11 (+4-5 to pack); (800x64)@(64x512) 326 / 294 / 279-285; but
    (6400x128)@(128x1024) 9931 / 9814 / 11166 (its panels re-read all of x).
    Larger products: a frozen copy's inference on one thread multiplies by W_ih^T packed for
    oneDNN once and kept (``Packed.kept``, ``_ih_packed``; its row blocks at several threads
    share it too), as an ONNX Runtime session prepacks its weights.
    Measured (1 thread, us; _blas.matmul against packed): (6400x128)@(128x1024) 9710 / 9431,
    (3200x512)@(512x2048) 38852 / 38199. Packing costs more than one call saves (16 and 51 us at
    (100x32)@(32x256) and (800x64)@(64x512)), so a layer whose weights may change between calls
    multiplies as it is. Packed for up to n rows, n the most a call has had: a call with more
    packs again."""
    T, B, I = x.shape
    w_ih = w.source[0]
    G = w_ih.shape[0]
    one_thread = matmul is not np.matmul                  # (np.matmul: BLAS's threads in use, ``_threads_for``)
    if one_thread and _kernel_input(I, G) and T * B * I * G <= _SMALL_INPUT:
        A = np.empty((T, B, G), np.float32)
        X, Y = np.ascontiguousarray(x).reshape(T * B, I), A.reshape(T * B, G)
        if _in_place(w, T * B):
            _times_in_place(w_ih.T, X, Y)
        else:
            _times_tiles(_ih_panels(w, forms), X, Y)
        return A
    compute = _blas.packed_compute() if w.kept and not train and one_thread else None
    if compute is None:
        return matmul(x.reshape(T * B, I), w_ih.T).reshape(T, B, G)
    Wp = _ih_packed(w, T * B)
    A = np.empty((T, B, G), np.float32)
    with _blas.one_omp_thread():                          # (batch 1 holds BLAS, not OpenMP, to one thread)
        _times_packed(compute, Wp, np.ascontiguousarray(x).reshape(T * B, I), A.reshape(T * B, G))
    return A


_SMALL_INPUT = 1 << 25                                    # multiply-adds
_IN_PLACE = 1 << 23


def _in_place(w, rows):
    """Whether ``_input_side``'s kernel reads W_ih^T in place (``_tilegemm.gemm_in_place``) for a
    product of ``rows`` rows, rather than packed: where packing would be made for this call alone
    (not a frozen copy's, which keeps its panels), the product is small (up to ``_IN_PLACE``
    multiply-adds), and the layer holds W_ih^T row-major and 64-byte aligned. Whole inference calls
    of the plain layer, in place / packed (1 thread, paired medians of 400 interleaved; (I,H,B,T)):
    (32,64,1,100) 0.964, (64,128,1,100) 0.981; at batch > 1 within noise, (16,64,16,100) 1.006,
    (32,128,8,50) 0.998, (64,128,4,100) 1.000 (``_tilegemm.gemm_in_place``: the product alone)."""
    w_ih = w.source[0]
    G, I = w_ih.shape
    return (not w.kept and rows * I * G <= _IN_PLACE and w_ih.T.flags.c_contiguous and aligned(w_ih))


def _ih_packed(w, rows, later=None):
    """W_ih^T packed for oneDNN for up to ``rows`` rows (at least the most a call has had), kept in
    ``w.gemm_forms`` ("ih"): for good in a frozen copy's (its input GEMM before the loop, and the
    loop's chunks), for the call in the plain layer's (the chunks), and shared by the row blocks
    (``_prepare``) either way. ``later``: see ``_packed``."""
    n, Wp = w.gemm_forms.get("ih", (0, None))
    if rows > n:
        n, Wp = rows, _pack(_blas.c_contiguous(w.source[0].T), rows, later)
        w.gemm_forms["ih"] = n, Wp
    return Wp


def _states(T, B, H, P, train):
    """hs (T+1, B, P); cs (T+1, B, H) in training, for the backward, else (2, B, H), c_{t-1} and c_t
    taking turns (``forward_loop``); and tc: tanh(c_t) of every step (T, B, H) for the backward,
    or one step's (1, B, H) in inference. Filled by the loop: arrays made inside numba would cost
    ~1 us each to hand back to Python. (NumPy's own allocations, not 64-byte aligned ones: aligned,
    the cell alone ran 7-14% faster at (H, B) = (256, 64), but a step with its GEMM 0.6%, within
    the noise of whole calls, and an aligned allocation costs ~1.5 us against np.empty's 0.2.)
    Inference's c in two steps instead of T + 1: whole calls at 1 thread, new / old, paired medians
    (``benchmarks/pack_rows.py --compare ring``): see benchmarks/RESULTS.md, twentieth round."""
    return (np.empty((T + 1, B, P), np.float32), np.empty((T + 1 if train else 2, B, H), np.float32),
            np.empty((T if train else 1, B, H), np.float32))


def _result(x, A, hs, cs, tc, w, batch_sizes, reverse, train, into=None):
    """``forward``'s return values; out (T, B, P) and h_n are views of the states (no copy), or
    ``into`` (out, h_n, c_n) where the results were landed."""
    T = x.shape[0]
    out, last = (hs[:T], 0) if reverse else (hs[1:], T)
    cache = (BATCH_MAJOR, x, A, hs, cs, tc, w, batch_sizes, reverse) if train else None
    c_n = cs[c_slot.py_func(cs, last)]                   # (the plain function: no numba dispatch from Python)
    return (*(into or (out, hs[last], c_n)), cache)


_NO_PACKING = np.empty(0, np.uint8)                       # a row's WP where its product is ``_tilegemm``'s
_NO_PANELS = np.empty((0, 1, _tilegemm.COLS), np.float32)  # steps_in's panels where the input side is oneDNN's


def forward_at_once(calls, train, into=None):
    """``forward`` of several calls at once (``engine.forward_at_once``), c = (x, h0, c0, w,
    batch_sizes, reverse): each prepared here as a row of a ``_gilfree`` table, then run on this
    thread and the pool's without the GIL (``_rowblocks.run_rows``). Batch > 1 and oneDNN's packed
    GEMM on this thread (``_blas.one_omp_thread``). A call's x may be some rows of a C-contiguous
    input, a view: its row copies them out itself, on its thread. ``into``: for each call, views
    (out, h_n, c_n) where its row lands its results, on its thread, or None. The packings made for
    this call alone (not a frozen copy's, kept) are pack rows ahead of the blocks (``_pack``)."""
    g = _rowblocks._gilfree()
    packings, later = {}, []                              # training: one per weights for this call only
    jobs = [_prepare(*c, train, c[3].gemm_forms if not train else packings.setdefault(id(c[3]), {}),
                     None if into is None else into[k],  # (equal blocks share one packing either way)
                     None if c[3].kept else later)        # this call's packings: pack rows, first in the table
            for k, c in enumerate(calls)]
    packs = [g.pack_row(*p) for p in later]
    table = np.array(packs + [row for row, _, _ in jobs])
    _rowblocks.run_rows(table)
    for (buf, (R, *_)), status in zip(later, table[:len(packs), g.STATUS]):
        _blas.check_packed(status, R.shape)               # (panels: status 0)
    return [_result(*result) for _, _, result in jobs]


def _prepare(x, h0, c0, w, batch_sizes, reverse, train, forms, into, later=None):
    """A ``_gilfree`` row for ``forward(x, h0, ...)``; the arrays it points into, which the caller
    keeps alive until the row is done; and ``_result``'s arguments once it is. ``forms``: where
    W_hh's packing is kept (``_packed``); ``into``: (out, h_n, c_n) to land the results in, or None
    (out: a view with contiguous rows, such as a block of rows or a direction's columns);
    ``later``: a list, where the packings it makes are left for pack rows (``_blas.pack_later``)."""
    g = _rowblocks._gilfree()                            # (imported on first use: it imports this module)
    T, B, I = x.shape
    w_ih, w_hh, b_ih, b_hh = w.source
    G, P = w_hh.shape[0], h0.shape[1]
    if not (x.flags.c_contiguous or x.strides[1:] == (4 * I, 4) and x.strides[0] % (4 * I) == 0):
        x = np.ascontiguousarray(x)
    xb = x if x.flags.c_contiguous else np.empty((T, B, I), np.float32)   # the block's rows, copied by the row
    zeros = np.zeros(G, np.float32)                       # bias=False
    w_ih_t = _blas.c_contiguous(w_ih.T)                   # (I, G): no copy where weight_ih is held column-major
    b_ih, b_hh = (np.ascontiguousarray(a) for a in (zeros if b_ih is None else b_ih, zeros if b_hh is None else b_hh))
    rows = T * (x.strides[0] // (4 * I))                  # the whole input's (a block is a view of it)
    ih_panels, wp_ih, chunk = _in_loop(x.shape, w, _kernel_step(w, B), train, forms, rows, later) or (None, None, 0)
    both = ih_panels is not None and one_product.py_func(ih_panels, I)
    panels = None if both else _panels(w, B, forms, later)   # (its rows share it, and W_ih, b, ...)
    Wp = _NO_PACKING if panels is not None or both else _packed(w, B, transpose=True, forms=forms, later=later)[1]
    h0, c0 = np.ascontiguousarray(h0), np.ascontiguousarray(c0)
    if wp_ih is None and ih_panels is None and w.kept and not train:
        wp_ih = _ih_packed(w, rows)                       # a frozen copy's GEMM before the loop, on its packing
    A = np.empty((1 if ih_panels is not None else chunk or T, B, G), np.float32)
    hs, cs, tc = _states(T, B, G // 4, P, train)
    sizes = _sizes(batch_sizes)
    row = g.new_row(x, xb, w_ih_t, b_ih, b_hh, Wp, panels, ih_panels, wp_ih, chunk, h0, c0, A, hs, cs, tc,
                    0 if sizes is None else sizes.ctypes.data, reverse, train, *(into or (None, None, None)))
    return row, (x, w_ih_t, b_ih, b_hh, Wp, panels, ih_panels, wp_ih, h0, c0, sizes), (xb, A, hs, cs, tc, w,
                                                                                batch_sizes, reverse, train, into)


def backward(dout, dh_n, dc_n, cache):
    """``engine.backward`` for a cache from ``forward`` above (used up: dL/dz replaces the gates)."""
    threads, matmul = _threads_for(cache[1].shape[1])
    with threads:
        return _backward(dout, dh_n, dc_n, cache, matmul)


def _backward(dout, dh_n, dc_n, cache, matmul):
    _, x, A, hs, cs, tc, w, batch_sizes, reverse = cache
    B = x.shape[1]
    G, P = w.source[1].shape
    dh = np.zeros((B, P), np.float32) if dh_n is None else np.array(dh_n, np.float32)   # carries, own copies
    dc = np.zeros((B, G // 4), np.float32) if dc_n is None else np.array(dc_n, np.float32)
    compute, Wp, W = _packed(w, B, transpose=False, forms=None)   # W_hh (batch 1: W_hh^T)
    backward_loop(compute, Wp, W, A, tc, cs, dout, dh, dc, _sizes(batch_sizes), reverse)
    dx, grads = weight_grads(x, A, A, hs, w, reverse, matmul)
    return dx, dh, dc, grads


def weight_grads(x, A, AR, hs, w, reverse, matmul):
    """(dx, grads) after the backward loop, each one GEMM over all T*B rows: A (T, B, G) holds
    dL/d(input side) of every step, AR dL/d(recurrent side) (A itself where one sum feeds both,
    as in the LSTM, whose two bias gradients are then one sum; the GRU's n differs). dZ^T X and
    dZ^T H through ``_blas.matmul_tn`` where ``matmul`` is ``_blas.matmul`` (one thread), else
    ``matmul``'s own (OpenBLAS's threads: ``_threads_for``)."""
    T, B, I = x.shape
    G, P = w.source[1].shape
    Z, ZR = A.reshape(T * B, G), AR.reshape(T * B, G)    # a row per (t, b)
    h_prev = (hs[1:] if reverse else hs[:T]).reshape(T * B, P)   # h_{t-1} of each step, no copy
    tn = _blas.matmul_tn if matmul is _blas.matmul else (lambda a, b: matmul(a.T, b))
    b_ih = Z.sum(axis=0)
    grads = {"w_ih": tn(Z, x.reshape(T * B, I)),         # (G, I)
             "w_hh": tn(ZR, h_prev),                     # (G, P)
             "b_ih": b_ih, "b_hh": b_ih.copy() if AR is A else ZR.sum(axis=0), "w_hr": None}
    dx = matmul(Z, w.source[0]).reshape(T, B, I)          # backprop through x W_ih^T
    return dx, grads


def _kernel_step(w, B):
    """Whether the step's product h W_hh^T is ``_tilegemm``'s: where it is the forward's faster
    (batch > 1, ``_tilegemm.suits``)."""
    G, P = w.source[1].shape
    return B > 1 and _tilegemm.suits(P, G)


def _panels(w, B, forms, later=None):
    """W_hh^T packed for ``_tilegemm``'s kernel where it is the step's product (``_kernel_step``), else
    None; kept in ``forms`` (see ``_packed``) where that is a dict. ``later``: None, or a list
    (``_packed``'s): see ``_pack_panels``."""
    return _kept(forms, "tiles", lambda: _pack_panels(w.source[1].T, later)) if _kernel_step(w, B) else None


def _pack_panels(W, later):
    """W's panels (``_tilegemm.pack``), now where ``later`` is None or W is not C-contiguous (not
    held column-major); else their room, for a pack row of the call's table to fill
    (``_gilfree.pack_row``), its entry appended to ``later``: the plain layer's packing of W_hh^T
    (330 us at H = 512) on a thread of the call's, while the other may pack W_ih^T, instead of
    in this thread's Python before the table is posted."""
    if later is None or not W.flags.c_contiguous:
        return _tilegemm.pack(W)
    panels = _tilegemm.empty_panels(*W.shape)
    later.append((panels, (W,)))
    return panels


def _kept(forms, key, make):
    """make(), kept in ``forms[key]`` and taken from there at later uses where forms is a dict (a
    Packed's ``gemm_forms``: a frozen copy keeps its Packed), else made for this call only."""
    value = None if forms is None else forms.get(key)
    if value is None:
        value = make()
        if forms is not None:
            forms[key] = value
    return value


def _packed(w, B, transpose, forms, later=None):
    """(compute, Wp, W): how the loops multiply by W_hh. Batch 1: no GEMM (None, None) and W =
    W_hh^T (P, 4H), C-contiguous and 64-byte aligned (``_aligned``), the operand of numba's own
    products both ways; free where the layer holds weight_hh so, column-major, as an LSTM does
    (``recurrent``), else a copy.
    Batch > 1: oneDNN's sgemm_compute and Wp, W_hh (W_hh^T: ``transpose``) packed for it, and W
    None. ``forms``: a dict to keep the packing in and take it from at later uses, or None. The
    forward in inference passes the Packed w's ``gemm_forms`` (a frozen layer keeps its Packed,
    so it packs once). Training does not keep it there: the cache would hold it through the
    backward, which packs W_hh its own way, and that raised a bidirectional step's peak memory
    by 3.5 MiB. ``later``: None, or a list: then the packing is left to a ``_gilfree`` pack row
    (``_pack``)."""
    w_hh = w.source[1]
    if B == 1:
        W = w_hh.T
        return None, None, W if W.flags.c_contiguous and aligned(W) else _aligned.copy(W)
    compute = _blas.packed_compute()
    if compute is None:                                   # engine._batch_major checked it; threads changed since?
        raise RuntimeError("the batch-major LSTM path needs oneDNN's packed GEMM on one thread")
    Wp = _kept(forms, (B, transpose), lambda: _pack(_blas.c_contiguous(w_hh.T if transpose else w_hh), B, later))
    return compute, Wp, None


def _pack(R, n, later):
    """R packed for oneDNN for n rows (``_blas.pack_right``), now where ``later`` is None; else its
    buffer, filled by a pack row of the call's table (``forward_at_once``). The plain layer packs
    its weights at every call, and a row-block call's two packings then run on two threads at
    once instead of one after the other before the blocks start."""
    return _blas.pack_right(R, n) if later is None else _blas.pack_later(R, n, later)
