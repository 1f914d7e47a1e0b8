"""The step's product on our own kernel with the next panel prefetched, against oneDNN's, in one process.

``_tilegemm``'s kernel reads W_hh^T panel by panel. Where the panels outgrow L2 (H = 512: 4 MiB),
every step streams them from L3, and the kernel lost to oneDNN's packed sgemm (1.06 of its time
at (32x512) @ (512x2048)), so it took the step's product only up to P = 256. Now each of a
panel's first four row tiles prefetches a quarter of the next panel into L2 while it computes
(``_tilegemm._by_panels``), and the kernel takes the product at every P (``_tilegemm.suits``).
Old: ``suits`` patched back to P <= 256, so the step's product is oneDNN's packed sgemm as before.
Whole calls, float32, interleaved (``bench.with_patched`` on both sides): inference of the plain
layer and of ``frozen()``, and a training step (forward and backward); torch.nn.LSTM at the
same thread count in the same interleave. Prints new / old and each / torch (paired medians,
quartiles in brackets: ``bench.paired_ratio``).

    python benchmarks/prefetch_panels.py --config 512,512,64,50 --threads 1
    python benchmarks/prefetch_panels.py --config 512,512,64,50 --threads 2
    python benchmarks/prefetch_panels.py --config 512,512,64,50 --cell gru

Results in benchmarks/RESULTS.md (twenty-third round).
"""
import argparse
import importlib.util

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _tilegemm, bench


_new_suits = _tilegemm.suits


def _old_suits(K, N):
    return _new_suits(K, N) and K <= 256


def runners(lstm, x, G, cell):
    """{name: run}: old and new for the plain layer's inference, frozen()'s and a training step, and
    torch's inference and training step where torch is installed."""
    frozen = lstm.frozen()
    train, infer = bench.nplstm_runners(lstm, x, G)
    calls = {"plain": infer, "frozen": lambda: frozen(x), "train": train}
    runs = {f"{kind} {side}": bench.with_patched(_tilegemm, patch, run)
            for kind, run in calls.items() for side, patch in (("old", {"suits": _old_suits}), ("new", {}))}
    if importlib.util.find_spec("torch") is not None:
        runs["torch train"], runs["torch"] = bench.torch_runners(bench.torch_twin(lstm, cell), x, G)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", help="I,H,B,T (repeatable; default 512,512,64,50)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cell", choices=sorted(bench.CELLS), default="lstm")
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()
    nplstm.set_num_threads(args.threads)
    if importlib.util.find_spec("torch") is not None:
        import torch
        torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        for cfg in args.config or ["512,512,64,50"]:
            I, H, B, T = (int(v) for v in cfg.split(","))
            lstm = getattr(nplstm, bench.CELLS[args.cell][0])(I, H, seed=0)
            rng = np.random.default_rng(1)
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            G = rng.standard_normal((T, B, H)).astype(np.float32)
            runs = runners(lstm, x, G, args.cell)
            times = bench.interleaved_times(runs, args.reps, settle=bench.SETTLE if "torch" in runs else 0)
            print(f"{args.cell} ({cfg}), {args.threads} thread(s), paired medians of {args.reps}:")
            pairs = [(f"{k} new", f"{k} old") for k in ("plain", "frozen", "train")]
            pairs += [(f"{k} {s}", "torch") for k in ("plain", "frozen") for s in ("old", "new")]
            pairs += [(f"train {s}", "torch train") for s in ("old", "new")]
            print("\n".join(bench.pair_lines(times, pairs)))


if __name__ == "__main__":
    main()
