"""The input side made inside the batch-major loop (``_batchmajor._steps_in``), inference: two of its
rules against each other, interleaved call by call in one process.

``--compare`` picks the pair (old / new):

- ``beside``: each step's x_t W_ih^T on ``_tilegemm``'s kernel only where the step's product is
  the kernel's too (H <= 256), the rule before the seventeenth round / also beside oneDNN's
  product (the rule now). Chunks off in both.
- ``chunks``: the rule now without / with the chunks: where the kernel does not take the input
  side, one GEMM before the loop / a chunk of steps at a time on oneDNN (``_batchmajor._chunk``).
- ``kernel-chunks``: where both could, each step's on the kernel / chunks on oneDNN.

Float32, plain layer and ``frozen()``; prints the medians and the median of each rep's ratio
(new / old) with its quartiles. Results in benchmarks/RESULTS.md (seventeenth round).

    python benchmarks/input_in_loop.py --compare beside --config 64,512,64,50 --threads 1
    python benchmarks/input_in_loop.py --compare chunks --config 512,512,64,50 --threads 2
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _batchmajor

_in_loop, _chunk = _batchmajor._input_in_loop, _batchmajor._chunk


def _kernel_only_beside_kernel(shape, w, kernel_step, train):
    return kernel_step and _in_loop(shape, w, kernel_step, train)


RULES = {   # name: ((old in-loop rule, old chunk rule), (new ...))
    "beside": ((_kernel_only_beside_kernel, lambda *a: 0), (_in_loop, lambda *a: 0)),
    "chunks": ((_in_loop, lambda *a: 0), (_in_loop, _chunk)),
    "kernel-chunks": ((_in_loop, _chunk), (lambda *a: False, _chunk)),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", choices=sorted(RULES), default="chunks")
    ap.add_argument("--config", action="append", help="I,H,B,T[,1 for bidirectional] (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    rules = RULES[args.compare]
    now = {"rules": rules[1]}
    _batchmajor._input_in_loop = lambda *a: now["rules"][0](*a)
    _batchmajor._chunk = lambda *a: now["rules"][1](*a)
    nplstm.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads):
            for cfg in args.config or ["512,512,64,50"]:
                _compare(cfg, rules, now, args)
    finally:
        _batchmajor._input_in_loop, _batchmajor._chunk = _in_loop, _chunk


def _compare(cfg, rules, now, args):
    I, H, B, T, *bi = map(int, cfg.split(","))
    lstm = nplstm.LSTM(I, H, bidirectional=bool(bi and bi[0]), seed=0)
    frozen = lstm.frozen()
    x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
    runs = {(name, k): (lambda m=m, k=k: (now.__setitem__("rules", rules[k]), m(x)))
            for name, m in (("plain", lstm), ("frozen", frozen)) for k in (0, 1)}
    for run in runs.values():
        run()
    times = {k: [] for k in runs}
    for _ in range(args.reps):
        for k, run in runs.items():
            run()                                         # untimed: this rule's buffers warm
            t0 = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t0)
    out = []
    for name in ("plain", "frozen"):
        old, new = np.array(times[name, 0]), np.array(times[name, 1])
        mid, lo, hi = np.percentile(new / old, [50, 25, 75])
        out.append(f"{name} {np.median(old) * 1e3:.2f} -> {np.median(new) * 1e3:.2f} ms, "
                   f"new/old {mid:.3f} ({lo:.3f}-{hi:.3f})")
    print(f"{args.compare}, {args.threads} thread(s) ({cfg}): " + " | ".join(out), flush=True)


if __name__ == "__main__":
    main()
