"""The LSTM step's recurrent product, h_{t-1} (n, P) @ W_hh^T (P, 4H), in register tiles of our own.

Why. In the batch-major loop (``_batchmajor``) each step multiplies the batch's h_{t-1} by the
same W_hh^T, a product too small for a general GEMM's blocking and dispatch to pay off. This
kernel does only that shape: W_hh^T is packed once per call into panels of 64 columns, and a
tile of ROWS rows by one panel keeps its 24 sums in AVX-512 registers over the whole k loop
(per k: four aligned loads of the panel's row, one broadcast of h[i, k] per row, 24 FMAs).
Measured against oneDNN's sgemm_compute on its own packing (1 thread, 50 steps from a numba
loop; our time / oneDNN's): (n, P) = (64, 256) 0.93-0.95, (32, 256) 0.94-0.96, (16, 128)
0.90-0.92, (64, 128) 0.96-0.97, (64, 64) 0.88-0.92, (3, 128) 0.74 (benchmarks/RESULTS.md,
sixteenth round).

Prefetch. Past L2 the kernel lost: at (32x512) @ (512x2048) 1.06 of oneDNN's time, 4 MiB of
panels streamed from L3 at every step, each panel's first tile waiting on it (with the panels
in L2, (32x512) @ (512x512), it ran at 226 GFLOP/s, oneDNN 193). Where the panels outgrow
``FETCH_BYTES`` (3/4 of L2), each of a panel's first four tiles asks, one line per k, for a
quarter of the next panel into L2 (prefetcht1; after the last panel, the first: the next
step's) while it computes: then (n x 512) @ (512 x 2048) n = 16 / 32 / 64 0.80 / 0.91 / 0.91
of oneDNN's time, (32x1024) @ (1024x4096) 0.86, (32x768) @ (768x3072) 0.86; but within L2 the
prefetches cost 2-5%, so smaller panels go without (benchmarks/RESULTS.md, twenty-third round).
``suits`` takes every P. The same kernel multiplies a
call's input side x W_ih^T where that product is small (``_batchmajor._input_side``), there
read in place where the layer holds W_ih^T row-major (``gemm_in_place``). At batch 1 a tile of
one row by one panel is four FMA chains, latency-bound when the next step waits for this one's
h (measured: no gain over ``_batchmajor_loops._vecmat`` in the loop); ``matvec`` holds one row 16
registers wide instead, 16 independent chains. Not in the backward, whose product is K = 4H deep.

The same sums in the same order as a plain k loop (one FMA per k), so a row's results do not
depend on the batch size or the tile it falls in.

Layout. ``pack(W)`` copies W (K, N), N a multiple of COLS, into panels (N / COLS, K, COLS),
64-byte aligned: panel p holds columns p*COLS .. p*COLS + COLS-1, row by row. ``gemm_in_place``
and ``matvec`` read W (K, N) itself instead, row-major and 64-byte aligned, its rows N apart.

Written in LLVM IR through a numba intrinsic (explicit 16-lane vectors and ``llvm.fma``):
numba leaves LLVM's SLP vectorizer off, so the same loops in Python stay scalar (RESULTS.md,
thirteenth round). On CPUs without AVX-512 LLVM splits each vector in two and runs out of
registers: correct, slower, so ``suits`` says no there.
"""
from pathlib import Path

import numba
from llvmlite import binding as llvm, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _aligned

LANES = 16                                                # float32 in one AVX-512 register
LINE = 16                                                 # float32 in one 64-byte cache line
COLS = 4 * LANES                                          # a panel's columns: four registers (four lines)
ROWS = 6                                                  # a tile's rows: 4 * ROWS of the 32 registers hold sums
UNROLL = 4                                                # k steps per loop pass (measured: 4-7% faster than 1)
_F32, _I64, _I32, _I8 = ir.FloatType(), ir.IntType(64), ir.IntType(32), ir.IntType(8)
_V = ir.VectorType(_F32, LANES)


def available():
    """Whether numba compiles for AVX-512F, which the kernel's 16-lane vectors need to run at
    speed: the host's features, or those numba is told to use (``NUMBA_CPU_FEATURES``); False
    where numba targets another named CPU (``NUMBA_CPU_NAME``) or LLVM cannot tell."""
    if numba.config.CPU_FEATURES:
        return "+avx512f" in numba.config.CPU_FEATURES.split(",")
    if numba.config.CPU_NAME not in (None, "", "host"):
        return False
    try:
        return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")
    except RuntimeError:                                  # (llvmlite: host features unknown here)
        return False


_AVAILABLE = available()


def _l2_bytes():
    """One core's L2 cache, from Linux's sysfs; 1 MiB where that cannot be read."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip()       # e.g. "2048K"
                return int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20}[size[-1]]
        except (OSError, ValueError, KeyError):
            break
    return 1 << 20


L2_BYTES = _l2_bytes()
FETCH_BYTES = L2_BYTES * 3 // 4                            # panels past this: prefetched (``_by_panels``)


def suits(K, N):
    """Whether ``gemm`` is the faster product for (n, K) @ (K, N) here (module note)."""
    return _AVAILABLE and N % COLS == 0 and K > 0


def pack(W, *below):
    """W (K, N) float32, any strides (W_ih^T and W_hh^T are views) -> panels (N / COLS, K, COLS),
    64-byte aligned; with ``below``, more such matrices (K', N), their rows under W's (``gemm2``)."""
    N = W.shape[1]
    panels = _aligned.empty((N // COLS, sum(M.shape[0] for M in (W, *below)), COLS))
    k = 0
    for M in (W, *below):                                 # (K, panel, col) -> (panel, K, col)
        panels[:, k:k + M.shape[0]] = M.reshape(M.shape[0], N // COLS, COLS).transpose(1, 0, 2)
        k += M.shape[0]
    return panels


def empty_panels(K, N):
    """Room for the panels of a (K, N) matrix, 64-byte aligned, for ``pack_into`` to fill later."""
    return _aligned.empty((N // COLS, K, COLS))


@numba.njit(nogil=True)
def pack_into(W, panels):
    """``pack``'s copy of one matrix, compiled, for a row block's pack row (``_gilfree.run_pack``):
    W (K, N) -> panels (N / COLS, K, COLS). Row by row of W, read once in order: 311 us at (512,
    2048), as fast as ``pack``'s NumPy copy (318); panel by panel, W's columns strided, 441-743."""
    for k in range(panels.shape[1]):
        for p in range(panels.shape[0]):
            for c in range(COLS):
                panels[p, k, c] = W[k, p * COLS + c]


# ---- the tile, in LLVM IR ----------------------------------------------------------------------

def _const(value):
    return ir.Constant(_I64, value)


def _k_loop(b, fma, rows, w, ldw, k0, k1, unroll, sums, vectors=4, fetch=None):
    """sums[i][g] += x[i, k] * panel[k, g*LANES:(g+1)*LANES] for k0 <= k < k1 ((k1 - k0) % unroll
    == 0); rows: the tile's row pointers into x; returns the new sums. ``fetch``: None, or
    (llvm.prefetch, pf): each k also asks for the cache line k lines past pf into L2 (``_by_panels``)."""
    undef = ir.Constant(_V, ir.Undefined)
    lane0, splat = ir.Constant(_I32, 0), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    before = b.block
    loop, done = b.append_basic_block("k_loop"), b.append_basic_block("k_done")
    b.cbranch(b.icmp_signed("<", k0, k1), loop, done)
    b.position_at_end(loop)                               # for k in range(k0, k1, unroll):
    k = b.phi(_I64)
    phis = [[b.phi(_V) for _ in row] for row in sums]
    acc, kk = phis, k
    for _ in range(unroll):
        if fetch is not None:                             # (read, locality 2: prefetcht1, data)
            line = b.bitcast(b.gep(fetch[1], [b.mul(kk, _const(LINE))]), _I8.as_pointer())
            b.call(fetch[0], [line, ir.Constant(_I32, 0), ir.Constant(_I32, 2), ir.Constant(_I32, 1)])
        wk = b.gep(w, [b.mul(kk, ldw)])                   # the panel's row k: four registers
        wv = [b.load(b.bitcast(b.gep(wk, [_const(g * LANES)]), _V.as_pointer()), align=64) for g in range(vectors)]
        xk = [b.shuffle_vector(b.insert_element(undef, b.load(b.gep(row, [kk]), align=4), lane0), undef, splat)
              for row in rows]                            # x[i, k] in every lane
        acc = [[b.call(fma, [xk[i], wv[g], acc[i][g]]) for g in range(vectors)] for i in range(len(rows))]
        kk = b.add(kk, _const(1))
    end = b.block
    b.cbranch(b.icmp_signed("<", kk, k1), loop, done)
    k.add_incoming(k0, before)
    k.add_incoming(kk, end)
    b.position_at_end(done)
    out = [[b.phi(_V) for _ in row] for row in sums]
    for i, row in enumerate(sums):
        for g, s in enumerate(row):
            phis[i][g].add_incoming(s, before)
            phis[i][g].add_incoming(acc[i][g], end)
            out[i][g].add_incoming(s, before)
            out[i][g].add_incoming(acc[i][g], end)
    return out


def _tile_rows(b, fma, m, sources, ldw, y, ldy, vectors=4, fetch=None):
    """Y[:m, panel] = sum of X[:m] @ W over ``sources``, (x, ldx, w, K) each (X (m, K) from x, rows ldx
    apart; W (K, COLS) the panel's rows from w), for one tile of m rows, ``vectors`` registers
    wide: per source, an unrolled k loop, then the K % UNROLL rest, onto the same sums. ``fetch``:
    (llvm.prefetch, pf) where each k of the sources, counted on from one to the next, prefetches
    the line that many lines past pf (``_k_loop``)."""
    sums = [[ir.Constant(_V, [0.0] * LANES)] * vectors for _ in range(m)]
    for x, ldx, w, K in sources:
        rows = [b.gep(x, [b.mul(_const(i), ldx)]) for i in range(m)]
        k4 = b.and_(K, _const(-UNROLL))                   # K rounded down to a multiple of UNROLL
        sums = _k_loop(b, fma, rows, w, ldw, _const(0), k4, UNROLL, sums, vectors, fetch)
        sums = _k_loop(b, fma, rows, w, ldw, k4, K, 1, sums, vectors, fetch)
        if fetch is not None:                             # the next source's k's fetch the lines after
            fetch = fetch[0], b.gep(fetch[1], [b.mul(K, _const(LINE))])
    for i in range(m):
        yi = b.gep(y, [b.mul(_const(i), ldy)])
        for g in range(vectors):
            b.store(sums[i][g], b.bitcast(b.gep(yi, [_const(g * LANES)]), _V.as_pointer()), align=4)


def _kernel_setup(builder, addresses):
    """The function's attributes (16 lanes as one register: ``_ftanh``'s note), llvm.fma, and the
    addresses as float pointers."""
    for attribute in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
        set.add(builder.function.attributes, attribute)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V, [_V] * 3), f"llvm.fma.v{LANES}f32")
    return fma, [builder.inttoptr(v, _F32.as_pointer()) for v in addresses]


def _tile_cases(builder, m, pf, tile_rows):
    """``tile_rows(rows, fetch)`` for a tile of m rows, 1 <= m <= ROWS: with fetch (llvm.prefetch,
    pf as a pointer) where pf is an address, None where it is 0."""
    prefetch = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]), "llvm.prefetch.p0i8")
    fetch = (prefetch, builder.inttoptr(pf, _F32.as_pointer()))
    fetching = builder.zext(builder.icmp_unsigned("!=", pf, _const(0)), _I64)
    _cases(builder, fetching, (0, 1), lambda f: _cases(builder, m, range(1, ROWS + 1),
                                                       lambda rows: tile_rows(rows, fetch if f else None)))


def _cases(builder, selector, choices, emit):
    """A code path for each of ``choices`` (ints), emit(choice), taken where selector equals it
    (else the last one's)."""
    blocks = [builder.append_basic_block(f"case_{c}") for c in choices]
    after = builder.append_basic_block("after")
    switch = builder.switch(selector, blocks[-1])
    for c, block in zip(choices, blocks):
        switch.add_case(_const(c), block)
        builder.position_at_end(block)
        emit(c)
        builder.branch(after)
    builder.position_at_end(after)


def _codegen(context, builder, signature, args):
    m, x, ldx, w, ldw, K, y, ldy, pf = args
    fma, (x, w, y) = _kernel_setup(builder, (x, w, y))
    _tile_cases(builder, m, pf, lambda rows, fetch: _tile_rows(builder, fma, rows, [(x, ldx, w, K)], ldw, y, ldy,
                                                               fetch=fetch))
    return context.get_dummy_value()


@intrinsic
def _tile(typingctx, m, x, ldx, w, ldw, K, y, ldy, pf):
    """tile(m, x, ldx, w, ldw, K, y, ldy, pf): Y (m, COLS) = X (m, K) @ panel (K, COLS), 1 <= m <= ROWS;
    x, w, y addresses (w's 64-byte aligned, as is each of its rows), ldx, ldw and ldy row lengths
    in floats; pf: 0, or the address of K cache lines to prefetch into L2, one a k (``_by_panels``)."""
    return types.void(*[types.int64] * 9), _codegen


def _codegen2(context, builder, signature, args):
    m, x, ldx, K, h, ldh, Kh, w, ldw, y, ldy, pf = args
    fma, (x, h, w, y) = _kernel_setup(builder, (x, h, w, y))
    wh = builder.gep(w, [builder.mul(K, ldw)])            # the panel's rows K.. multiply h
    _tile_cases(builder, m, pf, lambda rows, fetch: _tile_rows(builder, fma, rows, [(x, ldx, w, K), (h, ldh, wh, Kh)],
                                                               ldw, y, ldy, fetch=fetch))
    return context.get_dummy_value()


@intrinsic
def _tile2(typingctx, m, x, ldx, K, h, ldh, Kh, w, ldw, y, ldy, pf):
    """tile2(m, x, ldx, K, h, ldh, Kh, w, ldw, y, ldy, pf): Y (m, COLS) = X (m, K) @ panel[:K] + H (m, Kh)
    @ panel[K:K + Kh], the sums of both in the same registers (``_tile``'s, with a second source;
    pf: K + Kh lines)."""
    return types.void(*[types.int64] * 12), _codegen2


@numba.njit(inline="always")
def gemm(panels, X, n, Y):
    """Y[:n] = X[:n] @ W, W (K, N) packed into ``panels``; X (B, K), Y (B, N) C-contiguous float32.
    Panel by panel, its tiles down the rows: a panel is read from L1/L2 by each of its tiles."""
    npan, K, _ = panels.shape
    _by_panels(panels.ctypes.data, K * COLS, COLS, npan, K, X, n, Y)


@numba.njit(inline="always")
def gemm_in_place(W, X, n, Y):
    """The same product read from W (K, N) itself, row-major and 64-byte aligned: panel p is
    W[:, p*COLS:(p+1)*COLS], its rows N apart, so no packing. For a product made once per call
    (``_batchmajor._input_side``): measured (1 thread, us, (n x K) @ (K x N); packing / the
    packed product / in place): (100x32)@(32x256) 3.7 / 9.7 / 10.6, (400x32)@(32x256) 3.7 / 39.8
    / 40.5, (200x64)@(64x512) 6.5 / 72.8 / 78.7, (50x128)@(128x512) 10.3 / 36.7 / 37.8; but
    (800x64)@(64x512) 6.6 / 313 / 332 and (3200x128)@(128x1024) 18 / 5089 / 5814, where rows N
    apart keep a panel from L1. Where the same W serves many products (each step's), pack."""
    K, N = W.shape
    _by_panels(W.ctypes.data, COLS, N, N // COLS, K, X, n, Y)


@numba.njit(inline="always")
def gemm2(panels, X, Hh, kh, n, Y):
    """Y[:n] = X[:n] @ W[:K] + Hh[:n, :kh] @ W[K:K + kh], W (K + P, N) packed into ``panels``; X (B, K),
    Hh (B, P), Y (B, N) C-contiguous float32; kh P, or 0 (then Hh is not read). The LSTM step's
    two products in one, x_t W_ih^T + h_{t-1} W_hh^T, W = [W_ih^T; W_hh^T] (``_batchmajor._in_loop``):
    one pass over the sums instead of two products and a buffer for each."""
    npan, KP, _ = panels.shape
    K = KP - Hh.shape[1]
    _by_panels(panels.ctypes.data, KP * COLS, COLS, npan, K, X, n, Y, Hh, kh)


@numba.njit(inline="always")
def tile_rows(n):
    """(tiles, fewer, more): n rows shared out evenly over as few tiles as ROWS allows, the first
    ``more`` tiles of fewer + 1 rows, the rest of ``fewer`` (32 rows: 6, 6, 5, 5, 5, 5; not 6 x 5
    and 2). A tile of one or two rows reads the whole panel from L2 for few FMAs a line, faster
    than L2 delivers it. Measured, 1 thread, 50 products, even tiles / ROWS then the rest (paired
    medians of 25): (32x512) @ (512x2048) 0.955, (16x512) 0.954, (20x512) 0.856, (32x256) @
    (256x1024) 0.971, (20x256) 0.957; 0.99-1.01 where the rest was 4 rows or more
    (benchmarks/RESULTS.md, twenty-fourth round). No rows (a row block whose sequences have all
    ended, with lengths): no tiles."""
    tiles = (n + ROWS - 1) // ROWS
    return tiles, n // max(tiles, 1), n % max(tiles, 1)


@numba.njit(inline="always")
def _by_panels(w0, panel_step, ldw, npan, K, X, n, Y, Hh=None, kh=0):
    """``gemm``'s loop: panel p starts panel_step floats after panel p - 1, its rows ldw apart; with
    ``Hh``, ``gemm2``'s (its first kh columns times the panel's rows K..). Tiles of ``tile_rows``."""
    N = Y.shape[1]
    x0, y0 = X.ctypes.data, Y.ctypes.data
    h0, P = (0, 0) if Hh is None else (Hh.ctypes.data, Hh.shape[1])
    fetch = ldw == COLS and 4 * npan * panel_step > FETCH_BYTES   # packed panels too big for L2 to keep
    line_rows = panel_step // COLS                        # a quarter of a panel: as many lines as it has rows
    tiles, fewer, more = tile_rows(n)
    for p in range(npan):
        w = w0 + 4 * p * panel_step
        ahead = w0 if p == npan - 1 else w + 4 * panel_step   # the next panel (after the last: the first,
        for t in range(tiles):                                # the next step's), a quarter a tile
            r, pf = t * fewer + min(t, more), ahead + 4 * LINE * t * line_rows if fetch and t < 4 else 0
            m = min(ROWS, n - r, fewer + (t < more))          # (the bounds change nothing but what LLVM
            if kh > 0:                                        # knows: without them, 2-4% slower at K = 256)
                _tile2(m, x0 + 4 * r * K, K, K, h0 + 4 * r * P, P, kh, w, ldw, y0 + 4 * (r * N + p * COLS), N, pf)
            else:
                _tile(m, x0 + 4 * r * K, K, w, ldw, K, y0 + 4 * (r * N + p * COLS), N, pf)


# ---- batch 1: one row, up to 16 registers wide ------------------------------------------------

def _row_codegen(context, builder, signature, args):
    x, w, ldw, K, y, vectors = args
    fma, (x, w, y) = _kernel_setup(builder, (x, w, y))
    _cases(builder, vectors, _ROW_VECTORS,
           lambda v: _tile_rows(builder, fma, 1, [(x, _const(0), w, K)], ldw, y, _const(0), v))
    return context.get_dummy_value()


_ROW_VECTORS = (4, 8, 12, 16)


@intrinsic
def _row(typingctx, x, w, ldw, K, y, vectors):
    """row(x, w, ldw, K, y, vectors): y (1, V) = x (1, K) @ W[:, :V], V = vectors * LANES, vectors
    one of _ROW_VECTORS; W's rows ldw floats apart, each 64-byte aligned."""
    return types.void(*[types.int64] * 6), _row_codegen


@numba.njit(inline="always")
def row_fits(N):
    """Whether ``matvec`` takes a product N wide (AVX-512, as ``suits``; compiled in, so fixed
    per machine)."""
    return _AVAILABLE and N % COLS == 0


@numba.njit(inline="always")
def matvec(x, W, y):
    """y (N,) = x (K,) @ W (K, N), W row-major and 64-byte aligned, N a multiple of COLS: batch 1's
    step product h_{t-1} W_hh^T (``_batchmajor_loops.forward_loop``), in blocks of up to 16 registers of
    sums (256 columns), each held over the whole k loop. Against ``_batchmajor_loops._vecmat``, which
    keeps its sums in memory, a pass over them for every four rows of W (1 thread, a step's
    product and a tanh over h in a loop of 100, us a step, this / ``_vecmat``; (K, N)): (32, 128)
    0.12 / 0.19, (64, 256) 0.62 / 0.69, (128, 512) 2.17 / 2.45, (256, 1024) 11.3 / 12.7. Whole
    forward loops at batch 1 (paired medians of 2001; (I,H,T)): (16,32,100) 0.88, (32,64,100)
    0.97-0.98, (64,128,100) 0.95-0.96, (128,256,50) 0.95. At H = 64 the step's product is bound by
    reading W_hh^T (64 KiB) from L2, not by its FMAs."""
    K, N = W.shape
    w0, x0, y0 = W.ctypes.data, x.ctypes.data, y.ctypes.data
    for j in range(0, N, 16 * LANES):
        _row(x0, w0 + 4 * j, N, K, y0 + 4 * j, min(16, (N - j) // LANES))
