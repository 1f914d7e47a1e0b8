"""The eighteenth round's changes, each against what it replaced, interleaved in one process.

``--compare`` picks the pair (old / new); every ratio printed is new / old, the median of each
rep's own ratio with its quartiles (``nplstm.bench.paired_ratio``):

- ``matvec``: batch 1's step product h_{t-1} W_hh^T in the compiled forward loop, ``_vecmat``
  (sums in memory, four rows of W_hh^T a pass) / ``_tilegemm.matvec`` (one row 16 registers
  wide). The loop alone (``forward_sequence``), A made before it; inference and training.
- ``in-place``: the plain layer's small input product x W_ih^T, on W_ih^T packed for the kernel
  at each call / read where the layer holds it (``_tilegemm.gemm_in_place``). Whole inference
  calls.
- ``row-chunks``: the plain layer's 2-thread row blocks, input side in one GEMM before the loop
  / in chunks of steps from one W_ih^T packing per call (``_batchmajor._in_loop``). Whole
  inference calls.
- ``gru-rnn``: GRU and RNN (tanh), the engine's generic loop (feature-major, an sgemm a step) /
  the batch-major loops with their cells (``nplstm._batchmajor_gru_rnn``). Whole inference calls
  and training steps (forward and backward).
- ``column-blocks``: measured and not built. A step at H = 512 as one oneDNN GEMM then every
  cell / as column blocks of [i|f|g|o] for U units at a time, a GEMM and then that block's cells
  while its products are in cache (``--units``). The loop alone.

Float32, 1 thread (``row-chunks``: 2). Results in benchmarks/RESULTS.md (eighteenth round).

    python benchmarks/weights_in_place.py --compare matvec --config 32,64,1,100
    python benchmarks/weights_in_place.py --compare in-place --config 32,64,1,100
    python benchmarks/weights_in_place.py --compare row-chunks --config 512,512,64,50
    python benchmarks/weights_in_place.py --compare gru-rnn --config 128,256,64,100
    python benchmarks/weights_in_place.py --compare column-blocks --config 16,512,64,50 --units 128
"""
import argparse
import types

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _blas, _tilegemm, bench, engine
from nplstm import _batchmajor as bm
from nplstm import _batchmajor_loops as loops
from nplstm._cellmath_numba import _gates_and_c
from nplstm._ftanh import HALF, ftanh, wide_vectors

_jit = numba.njit(nogil=True, fastmath=True, error_model="numpy")


def _loop_without_matvec():
    """``forward_sequence`` compiled again with ``_tilegemm.row_fits`` False: batch 1 on ``_vecmat``.
    Each compiled function on the way down to the step's product is compiled again over the
    patched globals (``step_product`` is a function of its own, not inlined: patching the loops
    alone would leave it the real one)."""
    fake = types.ModuleType("tilegemm_without_matvec")
    fake.__dict__.update(_tilegemm.__dict__)
    fake.row_fits = numba.njit(inline="always")(lambda N: False)
    g = dict(loops.__dict__, _tilegemm=fake)
    for name in ("step_product", "forward_loop", "forward_sequence"):   # callees first
        g[name] = _jit(types.FunctionType(getattr(loops, name).py_func.__code__, g, name))
    return g["forward_sequence"]


def _sequence_runners(lstm, x, train, old_sequence):
    """{old, new}: a run of the batch-1 forward loop over A made once before (a fresh copy each run)."""
    T, B, _ = x.shape
    H = lstm.hidden_size
    w = lstm._packed(0, 0)
    _, _, b_ih, b_hh = w.source
    compute, Wp, W = bm._packed(w, B, True, None)
    A0 = bm._input_side(x, w, None, train, _blas.matmul)
    h0 = np.zeros((B, H), np.float32)

    def runner(sequence):
        def run():
            A, (hs, cs, tc) = A0.copy(), bm._states(T, B, H, H, train)
            sequence(compute, Wp, W, None, None, A, b_ih, b_hh, h0, h0, hs, cs, tc, None, False, train)
        return run
    return {"old": runner(old_sequence), "new": runner(loops.forward_sequence)}


def _call_runners(lstm, x, old_rule):
    """{old, new}: whole inference calls, ``old_rule`` patched in for the old ones."""
    return {"old": bench.with_patched(bm, old_rule, lambda: lstm(x)), "new": lambda: lstm(x)}


# ---- column blocks (not built) -----------------------------------------------------------------
@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _row_block(a, rr, b, cp, c, h, H, j0, U):
    """``_batchmajor_loops._row_infer`` for units j0 .. j0+U of a row; rr: that block's [i|f|g|o] products."""
    wide_vectors()
    for g in (0, 1, 3):                                   # the sigmoid gates, z/2
        ag, rg, bg = a[g * H + j0:g * H + j0 + U], rr[g * U:(g + 1) * U], b[g * H + j0:g * H + j0 + U]
        for j in range(U):
            ag[j] = ftanh(HALF * (ag[j] + rg[j]) + bg[j])
    ag, rg, bg = a[2 * H + j0:2 * H + j0 + U], rr[2 * U:3 * U], b[2 * H + j0:2 * H + j0 + U]
    for j in range(U):
        ag[j] = ftanh(ag[j] + rg[j] + bg[j])
    ai, af, ao = a[j0:j0 + U], a[H + j0:H + j0 + U], a[3 * H + j0:3 * H + j0 + U]
    cpb, cb, hb = cp[j0:j0 + U], c[j0:j0 + U], h[j0:j0 + U]
    for j in range(U):
        i, f, o, cc = _gates_and_c(ai[j], af[j], ao[j], ag[j], cpb[j])
        cb[j], hb[j] = cc, o * ftanh(cc)


@_jit
def _loop_blocks(compute, Wps, A, b, hs, cs, U):
    T, B, G = A.shape
    H, P = G // 4, hs.shape[2]
    Rb = np.empty((B, 4 * U), np.float32)
    for t in range(T):
        for k in range(H // U):
            loops.gemm_packed(compute, Wps[k], B, 4 * U, P, hs[t].ctypes.data, P, Rb.ctypes.data, 4 * U)
            for r in range(B):
                _row_block(A[t, r], Rb[r], b, cs[t & 1, r], cs[(t + 1) & 1, r], hs[t + 1, r], H, k * U, U)  # c: 2 steps


def _block_runners(lstm, x, U):
    T, B, I = x.shape
    H = lstm.hidden_size
    w_ih, w_hh, b_ih, b_hh = lstm._packed(0, 0).source
    compute = _blas.packed_compute()
    Wt = np.ascontiguousarray(w_hh.T)                     # (P, 4H)
    Wp = _blas.pack_right(Wt, B)
    cols = [np.concatenate([np.arange(g * H + k * U, g * H + (k + 1) * U) for g in range(4)]) for k in range(H // U)]
    Wps = numba.typed.List([_blas.pack_right(np.ascontiguousarray(Wt[:, c]), B) for c in cols])
    A0 = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, 4 * H)
    b = b_ih + b_hh
    b[:2 * H] *= HALF
    b[3 * H:] *= HALF

    def runner(blocks):
        def run():
            A, (hs, cs, tc) = A0.copy(), bm._states(T, B, H, H, False)
            hs[0], cs[0] = 0, 0
            if blocks:
                _loop_blocks(compute, Wps, A, b, hs, cs, U)
            else:
                loops.forward_loop(compute, Wp, None, None, None, A, b, hs, cs, tc, None, False, False)
        return run
    return {"old": runner(False), "new": runner(True)}


def _family_runners(cls, I, H, x, train):
    """{old, new}: inference calls, or training steps (forward and backward), of a GRU or RNN on
    the engine's generic loop / the batch-major one."""
    layer = cls(I, H, seed=0)
    real = engine._batch_major
    d = np.ones(x.shape[:2] + (H,), np.float32)

    def generic_loop(w, x, kinds=("lstm",)):              # the LSTM's way as it was, no GRU/RNN
        return w.kind == "lstm" and real(w, x, kinds)

    def runner(batch_major):
        def run():
            engine._batch_major = real if batch_major else generic_loop
            try:
                if train:
                    out, _, cache = layer.forward(x, train=True)
                    layer.backward(d, cache)
                else:
                    layer(x)
            finally:
                engine._batch_major = real
        return run
    return {"old": runner(False), "new": runner(True)}


def _plain_rows_do_not_chunk(shape, w, panels, train, forms, rows):
    """``_in_loop`` before the eighteenth round: a row block (its rows fewer than the input's) of the
    plain layer made its input side in one GEMM before the loop."""
    T, B, _ = shape
    plan = _IN_LOOP(shape, w, panels, train, forms, rows)
    return None if plan is not None and plan[2] and not w.kept and rows > T * B else plan


_IN_LOOP = bm._in_loop


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", choices=["matvec", "in-place", "row-chunks", "gru-rnn", "column-blocks"],
                    default="matvec")
    ap.add_argument("--config", action="append", help="I,H,B,T (repeatable)")
    ap.add_argument("--units", type=int, default=128, help="column-blocks: units a block")
    ap.add_argument("--reps", type=int, default=201)
    args = ap.parse_args(argv)
    threads = 2 if args.compare == "row-chunks" else 1
    nplstm.set_num_threads(threads)
    old_sequence = _loop_without_matvec() if args.compare == "matvec" else None
    rng = np.random.default_rng(0)
    with threadpool_limits(threads), _blas.one_omp_thread():
        for cfg in args.config or ["32,64,1,100"]:
            I, H, B, T = map(int, cfg.split(","))
            lstm = nplstm.LSTM(I, H, seed=0)
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            cases = {
                "matvec": lambda: [("infer", _sequence_runners(lstm, x, False, old_sequence)),
                                   ("train", _sequence_runners(lstm, x, True, old_sequence))],
                "in-place": lambda: [("infer", _call_runners(lstm, x, {"_in_place": lambda w, rows: False}))],
                "row-chunks": lambda: [("infer", _call_runners(lstm, x, {"_in_loop": _plain_rows_do_not_chunk}))],
                "gru-rnn": lambda: [(f"{cls.__name__} {what}", _family_runners(cls, I, H, x, what == "train"))
                                    for cls in (nplstm.GRU, nplstm.RNN) for what in ("infer", "train")],
                "column-blocks": lambda: [(f"U = {args.units}", _block_runners(lstm, x, args.units))],
            }[args.compare]()
            for what, runners in cases:
                print(f"({I},{H},{B},{T}) {what}: {bench.new_over_old(runners, args.reps)}", flush=True)


if __name__ == "__main__":
    main()
