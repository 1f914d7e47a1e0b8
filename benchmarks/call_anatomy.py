"""Where one inference call's time goes, against ONNX Runtime: the per-step GEMM, and the call's timeline.

Float32, one thread (but see ``--threads``), medians; what it prints backs the "what bounds it" column of RESULTS.md.

1. The recurrent GEMM of one step, h (B, P) @ W_hh^T (P, 4H), 50 times: ours (oneDNN's
   sgemm_compute on W_hh packed once, called from a numba loop, as ``_batchmajor`` does) against
   ONNX Runtime's MatMul (MLAS, its constant weight prepacked by the session) in a graph of 50
   MatMul -> Slice links, less a one-link graph's time. Interleaved in one process.
2. A ``frozen()`` call's timeline: timestamps at the entry and exit of the engine's calls (the
   input GEMM, the compiled time loop), so that what is left is Python around them.
3. The whole call against ORT's LSTM op (``bench.onnx_runner``), interleaved.

With ``--threads n`` (n >= 2) it times row blocks instead (``nplstm._rowblocks``), for the plain
layer and ``frozen()``: timestamps where the calling thread starts and ends its own block
(``_gilfree.drain``) and stops waiting for the pool's (``wait_done``); then both calls against
ORT's on n threads, interleaved, with a third: the same rows prepared once, the floor of a call
with no layer Python (``floor_call``).

    python benchmarks/call_anatomy.py                 # I,H,B,T = 64,128,16,50
    python benchmarks/call_anatomy.py --config 64,128,32,50
    python benchmarks/call_anatomy.py --config 64,128,32,50 --threads 2
"""
import argparse
import importlib.util
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _blas, _rowblocks, bench, engine
from nplstm import _batchmajor as bm
from nplstm import _batchmajor_loops as loops


@numba.njit
def _steps(compute, Wp, B, G, P, h, R, steps):
    for _ in range(steps):
        loops.gemm_packed(compute, Wp, B, G, P, h.ctypes.data, P, R.ctypes.data, G)


def _chain(P, G, B, links, W):
    """An ORT session computing h -> (h W)[:, :P], ``links`` times over."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    consts = [numpy_helper.from_array(W, "W")] + [numpy_helper.from_array(np.array([v], np.int64), n)
                                                  for n, v in (("start", 0), ("end", P), ("axis", 1))]
    nodes, cur = [], "h"
    for k in range(links):
        nodes += [helper.make_node("MatMul", [cur, "W"], [f"r{k}"]),
                  helper.make_node("Slice", [f"r{k}", "start", "end", "axis"], [f"h{k}"])]
        cur = f"h{k}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("h", TensorProto.FLOAT, [B, P])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [B, P])], consts)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)   # as nplstm's export: older ORTs load it
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def step_gemm(P, G, B, steps=50, reps=200):
    """(ours, ORT's) microseconds a step."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((P, G)) * 0.05).astype(np.float32)   # h W, W = W_hh^T (P, 4H)
    h, R = rng.standard_normal((B, P)).astype(np.float32), np.empty((B, G), np.float32)
    Wp, compute = _blas.pack_right(W, B), _blas.packed_compute()   # (main: oneDNN, on one OpenMP thread)
    long, one = _chain(P, G, B, steps, W), _chain(P, G, B, 1, W)
    runs = {"ours": lambda: _steps(compute, Wp, B, G, P, h, R, steps),
            "ort": lambda: long.run(None, {"h": h}), "ort1": lambda: one.run(None, {"h": h})}
    m = bench.median_times(runs, reps, settle=0)
    return m["ours"] / steps * 1e6, (m["ort"] - m["ort1"]) / (steps - 1) * 1e6


def stamped(marks, name, fn):
    """fn, writing the times of its entry and exit into marks[name + ">"] and marks[name + "<"]."""
    def call(*args):
        marks[name + ">"] = time.perf_counter()
        out = fn(*args)
        marks[name + "<"] = time.perf_counter()
        return out
    return call


def timeline(I, H, B, T, calls=300):
    """Medians (us) of the spans of a frozen() call between the engine's calls (wrapped here)."""
    layer = nplstm.LSTM(I, H, seed=0).frozen()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    marks = {}
    # (the input side whichever way it multiplies: a frozen copy's packed W_ih^T, or a matmul)
    sequence, input_side = bm.forward_sequence, bm._input_side
    bm.forward_sequence, bm._input_side = stamped(marks, "loop", sequence), stamped(marks, "gemm", input_side)
    try:
        spans = []
        for k in range(calls + 50):
            marks.clear()
            t0 = time.perf_counter()
            layer(x)
            t1 = time.perf_counter()
            if k >= 50:                                   # (the first 50: warm-up)
                m = marks                                 # (no input GEMM where the loop makes the input
                m.setdefault("gemm>", m["loop>"])         # side itself, step by step: ``_batchmajor._steps_in``;
                m.setdefault("gemm<", m["loop>"])         # then its span is 0 and the loop's holds it)
                spans.append([m["gemm>"] - t0, m["gemm<"] - m["gemm>"], m["loop>"] - m["gemm<"],
                              m["loop<"] - m["loop>"], t1 - m["loop<"], t1 - t0])
    finally:
        bm.forward_sequence, bm._input_side = sequence, input_side
    return dict(zip(["Python before the input GEMM", "input GEMM (ctypes call included)",
                     "Python between", "time loop (numba call included)", "Python after", "whole call"],
                    np.median(np.array(spans), axis=0) * 1e6))


def rows_timeline(layer, x, calls=300):
    """Medians (us) of a row-block call's spans, from stamps where the calling thread's block
    starts and ends (``_gilfree.drain``) and where it stops waiting for the pool's (``wait_done``)."""
    g, marks = _rowblocks._gilfree(), {}
    # The pool thread's compiled wait (serve) calls drain: compile it now, while drain is numba's,
    # or the pool thread, compiling it at its first table, finds the wrapper below there and dies.
    g.serve(np.zeros(g.MAILBOX, np.int64), np.zeros(1, np.int64), 1, *_blas.onednn_functions(),
            _rowblocks._spinner()[1], 0)                  # (posted 0 != seen 1: it returns at once)
    drain, wait_done = g.drain, g.wait_done
    g.drain, g.wait_done = stamped(marks, "row", drain), stamped(marks, "wait", wait_done)
    try:
        spans = []
        for k in range(calls + 50):
            marks.clear()
            t0 = time.perf_counter()
            layer(x)
            t1 = time.perf_counter()
            if k >= 50 and "wait<" in marks:              # (the first 50: warm-up; a call that split)
                m = marks
                spans.append([m["row>"] - t0, m["row<"] - m["row>"], m["wait<"] - m["row<"], t1 - m["wait<"], t1 - t0])
    finally:
        g.drain, g.wait_done = drain, wait_done
    if not spans:
        raise SystemExit("the call ran no row blocks (a batch of fewer than 2 x 16 rows, or no GIL-free path)")
    return dict(zip(["Python before this thread's block", "this thread's block", "waiting for the pool's",
                     "Python after", "whole call"], np.median(np.array(spans), axis=0) * 1e6))


def floor_call(layer, x):
    """A call of one-layer ``layer`` (frozen) on x's shape with no Python above ``run_rows``: its row
    blocks prepared once into a table, of which each call rewrites only the addresses of x and of
    fresh out, h_n and c_n. What a call would cost if the layer's Python took no time: the floor
    of any leaner call path (a compiled call plan, say)."""
    g, (T, B, I), H = _rowblocks._gilfree(), x.shape, layer.hidden_size
    w, blocks = layer._packed(0, 0), _rowblocks.bounds(B)
    zeros, out, h, c = np.zeros((B, H), np.float32), *(np.empty(s, np.float32) for s in ((T, B, H), (B, H), (B, H)))
    with _blas.one_omp_thread():
        jobs = [bm._prepare(x[:, r0:r1], zeros[r0:r1], zeros[r0:r1], w, None, False, False, w.gemm_forms,
                            (out[:, r0:r1], h[r0:r1], c[r0:r1])) for r0, r1 in blocks]
    table, first = np.array([row for row, _, _ in jobs]), np.array([r0 for r0, _ in blocks])

    def call(x):
        out, h, c = np.empty((T, B, H), np.float32), np.empty((B, H), np.float32), np.empty((B, H), np.float32)
        table[:, g.STATE] = g.POSTED
        table[:, g.X_FULL] = x.ctypes.data + first * 4 * I
        for field, a in ((g.OUT, out), (g.HN, h), (g.CN, c)):
            table[:, field] = a.ctypes.data + first * 4 * H
        with _blas.one_omp_thread():
            _rowblocks.run_rows(table)
        return out, h, c
    call.jobs = jobs                                      # the arrays the rows point into, kept alive
    other = np.ascontiguousarray(x[::-1])                 # another input than the one the rows were made on
    ours, (h_n, c_n) = layer(other)
    if not all(np.array_equal(a, b) for a, b in zip(call(other), (ours, h_n[0], c_n[0]))):
        raise SystemExit("the prebuilt table's call does not reproduce the layer's")
    return call


def row_blocks(I, H, B, T, threads):
    lstm = nplstm.LSTM(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    frozen = lstm.frozen()
    with threadpool_limits(threads):
        for name, layer in (("plain layer", lstm), ("frozen()", frozen)):
            print(f"{name}, {threads} threads:")
            for span, us in rows_timeline(layer, x).items():
                print(f"  {span:34s} {us:8.1f} us")
        floor = floor_call(frozen, x)
        m = bench.median_times({"plain": lambda: lstm(x), "frozen": lambda: frozen(x), "floor": lambda: floor(x),
                                "ort": bench.onnx_runner(lstm, x, threads)}, 100)
    print(f"whole call, interleaved: plain {m['plain'] * 1e6:.1f} us, frozen() {m['frozen'] * 1e6:.1f} us, "
          f"no layer Python (prebuilt rows) {m['floor'] * 1e6:.1f} us, ORT's LSTM {m['ort'] * 1e6:.1f} us "
          f"(ratios {m['plain'] / m['ort']:.2f}, {m['frozen'] / m['ort']:.2f}, {m['floor'] / m['ort']:.2f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="64,128,16,50", help="I,H,B,T")
    parser.add_argument("--threads", type=int, default=1, help="n >= 2: the row blocks' timeline on n threads")
    args = parser.parse_args()
    I, H, B, T = (int(v) for v in args.config.split(","))
    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        raise SystemExit("needs onnx and onnxruntime: pip install 'nplstm[onnx]'")
    if args.threads > 1:
        nplstm.set_num_threads(args.threads)
        return row_blocks(I, H, B, T, args.threads)
    nplstm.set_num_threads(1)
    with threadpool_limits(1), _blas.use("onednn"), _blas.one_omp_thread():
        if not engine._batch_major(nplstm.LSTM(I, H).frozen()._packed(0, 0), np.zeros((1, B, I), np.float32)):
            raise SystemExit("needs numba and oneDNN's packed GEMM (the batch-major path)")
        ours, ort = step_gemm(H, 4 * H, B)
        print(f"one step's GEMM ({B}x{H}) @ ({H}x{4 * H}): ours {ours:.2f} us, ORT's MatMul {ort:.2f} us "
              f"(ratio {ours / ort:.2f})")
        for name, us in timeline(I, H, B, T).items():
            print(f"{name:36s} {us:8.1f} us")
        lstm = nplstm.LSTM(I, H, seed=0)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        frozen = lstm.frozen()
        m = bench.median_times({"frozen": lambda: frozen(x), "ort": bench.onnx_runner(lstm, x, 1)}, 100)
        print(f"whole call, interleaved: frozen() {m['frozen'] * 1e6:.1f} us, ORT's LSTM {m['ort'] * 1e6:.1f} us "
              f"(ratio {m['frozen'] / m['ort']:.2f})")


if __name__ == "__main__":
    main()
