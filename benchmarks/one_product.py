"""A step's two products in one (``_batchmajor_loops.step_both``) against two, interleaved in one process.

Where inference makes each step's input side in the loop on ``_tilegemm``'s kernel and the step's
product h W_hh^T is the kernel's too, the loop now makes x_t W_ih^T + h_{t-1} W_hh^T as one
product over the panels [W_ih^T; W_hh^T] (``_tilegemm.gemm2``), into the one buffer the cell
reads. Old: the two products, each into its own buffer, the cell reading both (``_xh_panels``
patched to hand out W_ih^T's panels alone, as before). Whole inference calls of the plain layer
and of ``frozen()``, float32, both sides patched the same way (``bench.with_patched``); torch.nn.LSTM
at the same thread count in the same interleave. Prints new / old and each / torch (paired
medians, quartiles in brackets: ``bench.paired_ratio``).

    python benchmarks/one_product.py --config 128,256,64,100 --threads 1
    python benchmarks/one_product.py --config 64,128,32,50 --config 128,256,64,100 --threads 2

Results in benchmarks/RESULTS.md (twenty-second round).
"""
import argparse
import importlib.util

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _batchmajor, bench


def runners(lstm, frozen, x):
    """{name: run}: old and new, plain and frozen, and torch's call where torch is installed."""
    two = {"_xh_panels": lambda w, forms: _batchmajor._ih_panels(w, forms)}
    one = {"_xh_panels": _batchmajor._xh_panels}
    runs = {f"{kind} {side}": bench.with_patched(_batchmajor, patch, lambda m=m: m(x))
            for kind, m in (("plain", lstm), ("frozen", frozen)) for side, patch in (("old", two), ("new", one))}
    if importlib.util.find_spec("torch") is None:
        return runs
    G = np.zeros((*x.shape[:2], lstm.hidden_size), np.float32)   # (torch_runners' training side: not run)
    runs["torch"] = bench.torch_runners(bench.torch_twin(lstm), x, G)[1]
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", help="I,H,B,T (repeatable; default 128,256,64,100)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    nplstm.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    with threadpool_limits(args.threads):
        for cfg in args.config or ["128,256,64,100"]:
            I, H, B, T = (int(v) for v in cfg.split(","))
            lstm = nplstm.LSTM(I, H, seed=0)
            x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
            runs = runners(lstm, lstm.frozen(), x)
            times = bench.interleaved_times(runs, args.reps, settle=bench.SETTLE if "torch" in runs else 0)
            print(f"({cfg}), {args.threads} thread(s), inference, paired medians of {args.reps}:")
            pairs = [(f"{k} new", f"{k} old") for k in ("plain", "frozen")]
            pairs += [(f"{k} {s}", "torch") for k in ("plain", "frozen") for s in ("old", "new")]
            print("\n".join(bench.pair_lines(times, pairs)))


if __name__ == "__main__":
    main()
