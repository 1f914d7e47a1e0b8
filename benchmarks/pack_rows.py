"""The twentieth round's changes, each against what it replaced, interleaved in one process.

``--compare`` picks the pair (old / new); every ratio printed is new / old, the median of each
rep's own ratio with its quartiles (``nplstm.bench.paired_ratio``). Whole inference calls of a
plain ``nplstm.LSTM`` (one layer, one direction), float32:

- ``pack-rows``: the plain layer packs its weights for oneDNN at every call (they may have
  changed since the last); on row blocks at (512,512,64,50) that is W_hh^T and W_ih^T, 4 MiB
  each, 0.56 and 0.62 ms. Packed one after the other on the calling thread before any block
  starts / as pack rows first in the call's table, one a thread (``_gilfree.drain``). Also
  timed, interleaved with both: torch.nn.LSTM at the same thread count.
- ``ring``: inference's c kept for every step, cs (T+1, B, H) / two steps of it taking turns,
  (2, B, H) (``_batchmajor._states``).
- ``zero-step``: the first step's product from h0 = 1e-30 (multiplied) / from hx=None, h0 = 0,
  where the loop writes zeros instead (``_batchmajor_loops.step_product``): one step's product less.

    python benchmarks/pack_rows.py --compare pack-rows --config 512,512,64,50 --threads 2
    python benchmarks/pack_rows.py --compare ring --config 64,128,32,50 --threads 1
    python benchmarks/pack_rows.py --compare zero-step --config 512,512,64,50 --threads 2

Results in benchmarks/RESULTS.md (twentieth round).
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _batchmajor, _blas, bench


def _all_steps_of_c(T, B, H, P, train):
    """``_batchmajor._states`` before the ring: cs (T+1, B, H) in inference too."""
    return (np.empty((T + 1, B, P), np.float32), np.empty((T + 1, B, H), np.float32),
            np.empty((T if train else 1, B, H), np.float32))


def runners(compare, lstm, x):
    """{"old": run, "new": run} for ``compare``; each side patched the same way where one is, so
    that both pay the patching."""
    call = lambda: lstm(x)                                # noqa: E731
    if compare == "pack-rows":
        return {"old": bench.with_patched(_batchmajor, {"_pack": lambda R, n, later: _blas.pack_right(R, n)}, call),
                "new": call}
    if compare == "ring":
        return {"old": bench.with_patched(_batchmajor, {"_states": _all_steps_of_c}, call),
                "new": bench.with_patched(_batchmajor, {"_states": _batchmajor._states}, call)}
    T, B, _ = x.shape
    h0, c0 = np.full((1, B, lstm.hidden_size), 1e-30, np.float32), np.zeros((1, B, lstm.hidden_size), np.float32)
    return {"old": lambda: lstm(x, (h0, c0)), "new": call}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", choices=["pack-rows", "ring", "zero-step"], default="pack-rows")
    ap.add_argument("--config", default="512,512,64,50", help="I,H,B,T (one layer, one direction)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    I, H, B, T = (int(v) for v in args.config.split(","))
    nplstm.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        lstm = nplstm.LSTM(I, H, seed=0)
        x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
        run = runners(args.compare, lstm, x)
        if args.compare != "zero-step":
            np.testing.assert_array_equal(run["old"]()[0], run["new"]()[0])
        if args.compare == "pack-rows":
            import torch
            torch.set_num_threads(args.threads)
            ref, xt = bench.torch_twin(lstm), torch.from_numpy(x)

            def torch_infer():
                with torch.no_grad():
                    ref(xt)
            run["torch"] = torch_infer
        times = bench.interleaved_times(run, args.reps, settle=bench.SETTLE if "torch" in run else 0)
    print(f"{args.compare}, ({args.config}), {args.threads} thread(s), inference, paired medians of {args.reps}:")
    print("\n".join(bench.pair_lines(times, (("new", "old"), ("old", "torch"), ("new", "torch")))))


if __name__ == "__main__":
    main()
