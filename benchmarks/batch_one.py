"""Batch 1's inference call, the twenty-first round's changes against what they replaced,
interleaved in one process.

Whole inference calls of ``nplstm.LSTM`` (the plain layer, or ``--frozen``), float32, one layer,
one direction, on one thread. ``--compare`` picks the pair (old / new):

- ``loop``: ``forward_sequence`` always running ``forward_loop``, whose steps call
  ``step_input`` and ``step_product`` (compiled on their own) and branch for chunks, lengths and
  rows / batch 1's own loop (``_batchmajor_loops._one_row_loop``).
- ``trims``: BLAS set to one thread and back around the whole call, and the weights' alignment
  read through ``a.ctypes`` / the switch only around a GEMM of BLAS's (none at these sizes), and
  the alignment read by a compiled function (``_batchmajor._threads_for``, ``_batchmajor_loops.aligned``).

Also timed, interleaved with both: ONNX Runtime's LSTM op and torch.nn.LSTM (each where
installed). Every ratio is the median of each rep's own ratio, with its quartiles
(``nplstm.bench.paired_ratio``).

    python benchmarks/batch_one.py                       # I,H,T = 32,64,100 (the bench's tiny point)
    python benchmarks/batch_one.py --config 64,128,100 --frozen
    python benchmarks/batch_one.py --compare trims --config 16,32,100

Results in benchmarks/RESULTS.md (twenty-first round).
"""
import argparse
import importlib.util

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _aligned, _batchmajor, bench
from nplstm import _batchmajor_loops as loops


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _general_loop_sequence(compute, Wp, W, panels, steps_in, A, b_ih, b_hh, h0, c0, hs, cs, tc, batch_sizes,
                           reverse, train):
    """``loops.forward_sequence`` before batch 1's own loop: the bias, the states, ``forward_loop``."""
    T, G = hs.shape[0] - 1, A.shape[2]
    b = loops.cell_bias(b_ih, b_hh, G)
    first = T if reverse else 0
    hs[first], cs[loops.c_slot(cs, first)] = h0, c0
    loops.forward_loop(compute, Wp, W, panels, steps_in, A, b, hs, cs, tc, batch_sizes, reverse, train)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", choices=["loop", "trims"], default="loop")
    ap.add_argument("--config", default="32,64,100", help="I,H,T (batch 1)")
    ap.add_argument("--frozen", action="store_true", help="time a frozen() copy instead of the plain layer")
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    I, H, T = (int(v) for v in args.config.split(","))
    with_torch = importlib.util.find_spec("torch") is not None
    if with_torch:                                        # torch's module with the same weights
        module, lstm, x, G = bench.make_pair((I, H, 1, T, 1, False))
    else:
        lstm = nplstm.LSTM(I, H, seed=0)
        x = np.random.default_rng(0).standard_normal((T, 1, I)).astype(np.float32)
    layer = lstm.frozen() if args.frozen else lstm
    with threadpool_limits(1):
        call = lambda: layer(x)                           # noqa: E731
        if args.compare == "loop":
            new = bench.with_patched(_batchmajor, {"forward_sequence": loops.forward_sequence}, call)
            old = bench.with_patched(_batchmajor, {"forward_sequence": _general_loop_sequence}, call)
        else:
            threads_for = _batchmajor._threads_for
            new = bench.with_patched(_batchmajor, {"_threads_for": threads_for, "aligned": loops.aligned}, call)
            old = bench.with_patched(_batchmajor, {"_threads_for": lambda B, train=True: threads_for(B),
                                                   "aligned": _aligned.is_aligned}, call)
        if not np.array_equal(new()[0], old()[0]):
            raise SystemExit("the two loops' outputs differ")
        runs = {"old": old, "new": new}
        ort = bench.onnx_runner(lstm, x, 1)                # (None without onnx and onnxruntime)
        if ort is not None:
            runs["ort"] = ort
        if with_torch:
            import torch
            torch.set_num_threads(1)
            runs["torch"] = bench.torch_runners(module, x, G)[1]
        times = bench.interleaved_times(runs, args.reps * 50, settle=0)
    name = "frozen()" if args.frozen else "plain layer"
    print(f"--compare {args.compare}, (I,H,B,T) = ({I},{H},1,{T}), {name}, 1 thread, {args.reps * 50} reps:")
    pairs = [("new", "old")] + [(side, other) for other in ("ort", "torch") for side in ("old", "new")]
    print("\n".join(bench.pair_lines(times, pairs, unit="us")))


if __name__ == "__main__":
    main()
