"""An experiment, not the library's path: an LSTM inference step as one kernel, the recurrent GEMM
in register tiles with each tile's cell finished while its sums are still in registers (what
oneDNN's RNN does, and torch with it). Measured against the layer's own loop; RESULTS.md,
sixteenth round, has the figures and why it was not taken.

The library's step (``_batchmajor_loops.forward_loop``) is oneDNN's packed GEMM, R = h_{t-1} W_hh^T
(B, 4H), then the cell over R and A[t]. Here no R exists: a tile holds, for ROWS rows and UNITS
hidden units, the four gates' sums in 4 * ROWS vector registers (16 lanes, AVX-512), and the
cell runs on them before the next tile starts.

Layout. ``pack(w_hh)`` copies W_hh (4H, P), PyTorch's gate rows [i | f | g | o], into panels
(H / UNITS, P, 4 * UNITS), 64-byte aligned: panel p, row k holds W_hh^T[k] at the columns of
units p*UNITS .. p*UNITS + UNITS-1 of gate i, then of f, g and o: one panel row is four vectors.
A, b and the states stay in ``_batchmajor``'s layouts.

The kernel is LLVM IR written through a numba intrinsic, with explicit 16-lane vectors and FMAs
(numba leaves LLVM's SLP vectorizer off: the same loops in Python stay scalar, RESULTS.md's
thirteenth round). Its cell is ``_batchmajor_loops._row_infer``'s arithmetic with ``_ftanh``'s tanh.
It prints, per step, interleaved medians on one thread: the layer's loop (oneDNN's GEMM, then
the cell), the fused kernel, its GEMM alone (the sums stored, no cell), and the largest
difference from the layer's states.

    python benchmarks/fused_tiles.py                          # (H, B) = (256, 64), (128, 32), (512, 64)
    python benchmarks/fused_tiles.py --config 128,16
"""
import argparse
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from threadpoolctl import threadpool_limits

from nplstm import _aligned, _blas
from nplstm import _batchmajor_loops as loops
from nplstm._ftanh import _A, _B, _LIM, HALF

UNITS = 16                                                # hidden units per panel: one vector of each gate
ROWS = 6                                                  # batch rows per tile: 4 * ROWS accumulators of 32 registers
_F32, _I64, _I32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
_V = ir.VectorType(_F32, UNITS)
_FAST = ("fast",)


def pack(w_hh):
    """W_hh (4H, P) float32 -> panels (H / UNITS, P, 4 * UNITS), 64-byte aligned (module note)."""
    G, P = w_hh.shape
    H = G // 4
    panels = _aligned.empty((H // UNITS, P, 4 * UNITS))
    # (4, H/U, U, P): gate, panel, unit, k  ->  (H/U, P, 4, U): panel, k, gate, unit
    panels[...] = w_hh.reshape(4, H // UNITS, UNITS, P).transpose(1, 3, 0, 2).reshape(panels.shape)
    return panels


# ---- the kernel, in LLVM IR --------------------------------------------------------------------

def _splat(value):
    return ir.Constant(_V, [float(np.float32(value))] * UNITS)


class _Emit:
    """IR helpers over one builder: vector loads and stores at float offsets, fma, tanh."""

    def __init__(self, builder):
        self.b = builder
        self.fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V, [_V] * 3), "llvm.fma.v16f32")

    def at(self, base, offset):                           # base: float*, offset: i64 (floats)
        return self.b.bitcast(self.b.gep(base, [offset]), _V.as_pointer())

    def load(self, base, offset, align=4):
        return self.b.load(self.at(base, offset), align=align)

    def store(self, value, base, offset):
        self.b.store(value, self.at(base, offset), align=4)

    def madd(self, x, y, z):                              # x * y + z, one rounding
        return self.b.call(self.fma, [x, y, z])

    def tanh(self, xs):
        """``_ftanh`` of each vector in xs, step by step across them (independent chains for the
        core to overlap): clamp to +-7.9, then an odd degree-13 over an even degree-6 polynomial."""
        b = self.b
        lim, neg = _splat(_LIM), _splat(-_LIM)
        xs = [b.select(b.fcmp_ordered(">", x, lim), lim, x) for x in xs]
        xs = [b.select(b.fcmp_ordered("<", x, neg), neg, x) for x in xs]
        x2 = [b.fmul(x, x, flags=_FAST) for x in xs]
        a1, a3, a5, a7, a9, a11, a13 = (_splat(v) for v in _A)
        ps = [a13] * len(xs)
        for a in (a11, a9, a7, a5, a3, a1):
            ps = [self.madd(p, y, a) for p, y in zip(ps, x2)]
        ps = [b.fmul(p, x, flags=_FAST) for p, x in zip(ps, xs)]
        b0, b2, b4, b6 = (_splat(v) for v in _B)
        qs = [b6] * len(xs)
        for c in (b4, b2, b0):
            qs = [self.madd(q, y, c) for q, y in zip(qs, x2)]
        return [b.fdiv(p, q, flags=_FAST) for p, q in zip(ps, qs)]


def _products(e, m, h, ldh, w, K):
    """The tile's sums: acc[i][g] = sum_k h[i, k] * panel[k, g*UNITS:(g+1)*UNITS], i < m, over k < K."""
    b = e.b
    zero = _splat(0.0)
    undef = ir.Constant(_V, ir.Undefined)
    lane0, broadcast = ir.Constant(_I32, 0), ir.Constant(ir.VectorType(_I32, UNITS), [0] * UNITS)
    rows = [b.gep(h, [b.mul(ir.Constant(_I64, i), ldh)]) for i in range(m)]
    before = b.block
    loop, done = b.append_basic_block("tile_k"), b.append_basic_block("tile_done")
    b.cbranch(b.icmp_signed(">", K, ir.Constant(_I64, 0)), loop, done)
    b.position_at_end(loop)                               # for k in range(K):
    k = b.phi(_I64)
    phis = [[b.phi(_V) for _ in range(4)] for _ in range(m)]
    wk = [e.load(w, b.add(b.mul(k, ir.Constant(_I64, 4 * UNITS)), ir.Constant(_I64, g * UNITS)), align=64)
          for g in range(4)]                              # panel row k: the four gates' vectors
    acc = []
    for i in range(m):
        hik = b.insert_element(undef, b.load(b.gep(rows[i], [k]), align=4), lane0)
        hik = b.shuffle_vector(hik, undef, broadcast)     # h[i, k] in every lane
        acc.append([e.madd(hik, wk[g], phis[i][g]) for g in range(4)])
    k_next = b.add(k, ir.Constant(_I64, 1))
    end = b.block
    b.cbranch(b.icmp_signed("<", k_next, K), loop, done)
    k.add_incoming(ir.Constant(_I64, 0), before)
    k.add_incoming(k_next, end)
    b.position_at_end(done)
    sums = [[b.phi(_V) for _ in range(4)] for _ in range(m)]
    for i in range(m):
        for g in range(4):
            phis[i][g].add_incoming(zero, before)
            phis[i][g].add_incoming(acc[i][g], end)
            sums[i][g].add_incoming(zero, before)
            sums[i][g].add_incoming(acc[i][g], end)
    return sums


def _cell(e, sums, a, lda, gap, bias, cp, cn, hn, ldc, ldo):
    """``_batchmajor_loops._row_infer`` on the tile's rows: the gates from A + the sums + b, then c_t and
    h_t, stored; a, bias, cp, cn, hn point at the tile's first row and unit. The sums go to a
    stack buffer and a loop runs the rows (unrolled, the code outgrew the core's op cache); a
    row's four gates are its independent chains (``_Emit.tanh``)."""
    b, m = e.b, len(sums)
    half = _splat(HALF)
    buf = cgutils.alloca_once(b, ir.ArrayType(_V, 4 * ROWS))
    for i in range(m):
        for g in range(4):
            b.store(sums[i][g], b.gep(buf, [ir.Constant(_I32, 0), ir.Constant(_I32, 4 * i + g)]))
    at = [b.mul(ir.Constant(_I64, g), gap) for g in range(4)]   # gate g's offset in a row of A and in b
    bg = [e.load(bias, at[g]) for g in range(4)]
    with cgutils.for_range(b, ir.Constant(_I64, m)) as loop:
        i = loop.index
        r = [b.load(b.gep(buf, [ir.Constant(_I32, 0), b.add(b.mul(i, ir.Constant(_I64, 4)), ir.Constant(_I64, g))]))
             for g in range(4)]
        row_a = b.mul(i, lda)
        z = [b.fadd(e.load(a, b.add(row_a, at[g])), r[g], flags=_FAST) for g in range(4)]
        # sigma(z) = (1 + tanh(z/2)) / 2 for i, f, o; b is halved there
        ti, tf, to, tg = e.tanh([e.madd(half, z[0], bg[0]), e.madd(half, z[1], bg[1]), e.madd(half, z[3], bg[3]),
                                 b.fadd(z[2], bg[2], flags=_FAST)])
        i_, f_, o_ = (e.madd(half, t, half) for t in (ti, tf, to))
        state = b.mul(i, ldc)
        c = e.madd(f_, e.load(cp, state), b.fmul(i_, tg, flags=_FAST))   # c_t = f c_{t-1} + i g
        e.store(c, cn, state)
        e.store(b.fmul(o_, e.tanh([c])[0], flags=_FAST), hn, b.mul(i, ldo))   # h_t = o tanh(c_t)


def _codegen(context, builder, signature, args, cell=True):
    """tile(m, h, ldh, w, K, a, lda, gap, bias, cp, cn, hn, ldc, ldo), addresses and float counts:
    one tile of m rows, 1 <= m <= ROWS (``_products``, then ``_cell``), a code path for each m."""
    m, h, ldh, w, K, a, lda, gap, bias, cp, cn, hn, ldc, ldo = args
    for attribute in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
        set.add(builder.function.attributes, attribute)   # 16 lanes as one register (``_ftanh``'s note)
    e = _Emit(builder)
    h, w, a, bias, cp, cn, hn = (builder.inttoptr(v, _F32.as_pointer()) for v in (h, w, a, bias, cp, cn, hn))
    cases = [builder.append_basic_block(f"tile_rows{rows}") for rows in range(1, ROWS + 1)]
    after = builder.append_basic_block("tile_after")
    switch = builder.switch(m, cases[-1])
    for rows, block in enumerate(cases, 1):
        switch.add_case(ir.Constant(_I64, rows), block)
        builder.position_at_end(block)
        sums = _products(e, rows, h, ldh, w, K)
        if cell:
            _cell(e, sums, a, lda, gap, bias, cp, cn, hn, ldc, ldo)
        else:                                             # the sums alone, into hn's rows (4 * UNITS wide)
            for i in range(rows):
                for g in range(4):
                    e.store(sums[i][g], hn, builder.add(builder.mul(ir.Constant(_I64, i), ldo),
                                                        ir.Constant(_I64, g * UNITS)))
        builder.branch(after)
    builder.position_at_end(after)
    return context.get_dummy_value()


@intrinsic
def _tile(typingctx, m, h, ldh, w, K, a, lda, gap, bias, cp, cn, hn, ldc, ldo):
    return types.void(*[types.int64] * 14), _codegen


@intrinsic
def _tile_sums(typingctx, m, h, ldh, w, K, a, lda, gap, bias, cp, cn, hn, ldc, ldo):
    """The same tile's GEMM alone: its sums stored at hn (rows ldo apart), no cell."""
    return types.void(*[types.int64] * 14), lambda *args: _codegen(*args, cell=False)


@numba.njit(inline="always")
def step(panels, A, b, hp, cp, cn, hn, n, cell):
    """One inference step over rows :n: cn, hn (B, H), (B, P) from A[t] (B, 4H), the bias b (halved
    on i, f, o), hp = h_{t-1} (B, P), cp = c_{t-1} (B, H). Panel by panel, rows by tiles of ROWS,
    so a panel is read from L1/L2 by every tile of the step; C-contiguous float32 throughout."""
    npan, P, _ = panels.shape
    G = A.shape[1]
    H = G // 4
    w0, a0, b0 = panels.ctypes.data, A.ctypes.data, b.ctypes.data
    h0, cp0, cn0, hn0 = hp.ctypes.data, cp.ctypes.data, cn.ctypes.data, hn.ctypes.data
    for p in range(npan):
        w = w0 + 4 * p * P * 4 * UNITS
        j = p * UNITS                                     # the panel's first unit
        for r in range(0, n, ROWS):
            m = min(ROWS, n - r)
            if cell:
                _tile(m, h0 + 4 * r * P, P, w, P, a0 + 4 * (r * G + j), G, H, b0 + 4 * j,
                      cp0 + 4 * (r * H + j), cn0 + 4 * (r * H + j), hn0 + 4 * (r * P + j), H, P)
            else:                                         # hn: R (B, 4H), the panel's columns
                _tile_sums(m, h0 + 4 * r * P, P, w, P, 0, 0, 0, 0, 0, 0, hn0 + 4 * (r * G + 4 * j), 0, G)


@numba.njit(fastmath=True, error_model="numpy")
def fused_loop(panels, A, b, hs, cs, R, cell):
    """T steps of ``step``; cell False: the GEMM alone, into R (B, 4H) at every step."""
    T, B, _ = A.shape
    for t in range(T):
        step(panels, A[t], b, hs[t], cs[t], cs[t + 1], hs[t + 1] if cell else R, B, cell)


def compare(H, B, T, reps):
    G, rng = 4 * H, np.random.default_rng(0)
    A0 = rng.standard_normal((T, B, G)).astype(np.float32)
    b_ih, b_hh = (rng.uniform(-0.5, 0.5, G).astype(np.float32) for _ in range(2))
    w_hh = rng.uniform(-H ** -0.5, H ** -0.5, (G, H)).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    b = b_ih + b_hh                                       # halved on i, f, o, as the layer's loop does
    b[:2 * H] *= HALF
    b[3 * H:] *= HALF
    panels = pack(w_hh)
    states = [np.zeros((T + 1, B, H), np.float32) for _ in range(4)]
    hs1, cs1, hs2, cs2 = states
    hs2[0], cs2[0] = h0, c0
    A, R, tc = A0.copy(), np.zeros((B, G), np.float32), np.zeros((1, B, H), np.float32)
    with _blas.one_omp_thread(), threadpool_limits(1):
        compute, Wp = _blas.packed_compute(), _blas.pack_right(np.ascontiguousarray(w_hh.T), B)
        runs = {"layer's loop": lambda: loops.forward_sequence(compute, Wp, None, None, None, A, b_ih, b_hh, h0, c0, hs1, cs1, tc,
                                                            None, False, False),
                "fused": lambda: fused_loop(panels, A0, b, hs2, cs2, R, True),
                "fused, GEMM alone": lambda: fused_loop(panels, A0, b, hs2, cs2, R, False)}
        times = {name: [] for name in runs}
        for rep in range(reps + 1):                       # (the first: compilation and warm-up)
            for name, run in runs.items():
                A[...] = A0                               # (the layer's loop writes its gates over A)
                t0 = time.perf_counter()
                run()
                if rep:
                    times[name].append(time.perf_counter() - t0)
            if rep == 0:
                fused_loop(panels, A0, b, hs2, cs2, R, True)
                diff = max(np.abs(hs1 - hs2).max(), np.abs(cs1 - cs2).max())
    us = {name: np.median(t) / T * 1e6 for name, t in times.items()}
    ratio = us["fused"] / us["layer's loop"]
    print(f"(H,B) = ({H},{B}), us a step: " + ", ".join(f"{k} {v:.1f}" for k, v in us.items())
          + f"; fused / layer's {ratio:.3f}; largest state difference {diff:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="H,B (repeatable)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    with _blas.one_omp_thread():
        if _blas.packed_compute() is None:
            raise SystemExit('needs oneDNN\'s packed GEMM (pip install "nplstm[fast]")')
    for config in args.config or ["256,64", "128,32", "512,64"]:
        H, B = (int(v) for v in config.split(","))
        if H % UNITS:
            raise SystemExit(f"--config: H must be a multiple of {UNITS}, got {H}")
        compare(H, B, args.steps, args.reps)


if __name__ == "__main__":
    main()
