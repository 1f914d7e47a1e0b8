"""The plain layer's packings as pack rows (``_gilfree``), against packing on the calling thread.

A plain ``nplstm.LSTM`` packs its weights for oneDNN at every call (they may have changed since
the last). On row blocks at (512,512,64,50) that is W_hh^T and W_ih^T, 4 MiB each, 0.56 and
0.62 ms one after the other on the calling thread before any block starts. As pack rows, first
in the call's table, the two threads take one packing each (``_gilfree.drain``). Whole inference
calls, interleaved in one process with torch.nn.LSTM at the same thread count; ratios are the
median of each rep's own ratio with its quartiles (``nplstm.bench.paired_ratio``):

    python benchmarks/pack_rows.py --config 512,512,64,50 --threads 2

Results in benchmarks/RESULTS.md (twentieth round).
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _batchmajor, _blas, bench


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="512,512,64,50", help="I,H,B,T (one layer, one direction)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    import torch
    I, H, B, T = (int(v) for v in args.config.split(","))
    torch.set_num_threads(args.threads)
    nplstm.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        lstm = nplstm.LSTM(I, H, seed=0)
        x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
        ref = torch.nn.LSTM(I, H)
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
        xt = torch.from_numpy(x)

        def torch_infer():
            with torch.no_grad():
                ref(xt)
        old = bench.with_patched(_batchmajor, {"_pack": lambda R, n, later: _blas.pack_right(R, n)}, lambda: lstm(x))
        np.testing.assert_array_equal(old()[0], lstm(x)[0])
        times = bench.interleaved_times({"old": old, "new": lambda: lstm(x), "torch": torch_infer}, args.reps)
    print(f"({args.config}), {args.threads} threads, inference, paired medians of {args.reps}:")
    for a, b in (("new", "old"), ("old", "torch"), ("new", "torch")):
        ratio, lo, hi = bench.paired_ratio(times, a, b)
        print(f"  {a} / {b} {ratio:.3f} ({lo:.3f}-{hi:.3f})")
    print("  ms: " + ", ".join(f"{k} {np.median(v) * 1e3:.2f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
