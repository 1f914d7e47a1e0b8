"""Each step's input side made inside the loop, beside oneDNN's step product: the rule as it is
(``_batchmajor._input_in_loop``) against the rule before the seventeenth round, which took the
input side into the loop only where the step's product was ``_tilegemm``'s too (H <= 256).

Inference, float32, plain layer and ``frozen()``, both rules interleaved in one process (the
rule is switched per call); prints the medians and the median of each rep's ratio (new / old)
with its quartiles. Results in benchmarks/RESULTS.md (seventeenth round).

    python benchmarks/input_in_loop.py --config 64,512,64,50 --config 16,512,64,50 --threads 1
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _batchmajor


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", help="I,H,B,T[,1 for bidirectional] (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    rule = _batchmajor._input_in_loop
    now = {"new": True}

    def either(shape, w, panels, train):                  # the old rule: only beside the kernel's product
        return rule(shape, w, panels, train) and (now["new"] or panels is not None)
    _batchmajor._input_in_loop = either
    nplstm.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        for cfg in args.config or ["64,512,64,50", "16,512,64,50", "128,512,64,50", "128,384,64,50"]:
            I, H, B, T, *bi = map(int, cfg.split(","))
            lstm = nplstm.LSTM(I, H, bidirectional=bool(bi and bi[0]), seed=0)
            frozen = lstm.frozen()
            x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
            runs = {(name, new): (lambda m=m, new=new: (now.__setitem__("new", new), m(x)))
                    for name, m in (("plain", lstm), ("frozen", frozen)) for new in (False, True)}
            for run in runs.values():
                run()
            times = {k: [] for k in runs}
            for _ in range(args.reps):
                for k, run in runs.items():
                    run()                                 # untimed: this rule's buffers warm
                    t0 = time.perf_counter()
                    run()
                    times[k].append(time.perf_counter() - t0)
            out = []
            for name in ("plain", "frozen"):
                old, new = np.array(times[name, False]), np.array(times[name, True])
                mid, lo, hi = np.percentile(new / old, [50, 25, 75])
                out.append(f"{name} {np.median(old) * 1e3:.2f} -> {np.median(new) * 1e3:.2f} ms, "
                           f"new/old {mid:.3f} ({lo:.3f}-{hi:.3f})")
            print(f"{args.threads} thread(s) ({cfg}): " + " | ".join(out), flush=True)
    _batchmajor._input_in_loop = rule


if __name__ == "__main__":
    main()
