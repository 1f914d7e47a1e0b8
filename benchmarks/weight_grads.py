"""The nineteenth round's changes, each against what it replaced, interleaved in one process.

``--compare`` picks the pair (old / new); every ratio printed is new / old, the median of each
rep's own ratio with its quartiles (``nplstm.bench.paired_ratio``):

- ``tn``: the weight gradients after the backward loop (``_batchmajor.weight_grads``), dZ^T X
  and dZ^T H through np.matmul (OpenBLAS) and the bias gradient summed twice / through
  ``_blas.matmul_tn`` (oneDNN, (X^T dZ)^T) and summed once. Whole training steps (forward and
  backward), and the weight gradients alone.

Float32, 1 thread (``--threads 2``: the training step on the layer's two row blocks, each
block's weight gradients on its own thread). Results in benchmarks/RESULTS.md (nineteenth round).

    python benchmarks/weight_grads.py --compare tn --config 64,128,32,50
    python benchmarks/weight_grads.py --compare tn --config 64,128,32,50 --threads 2
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _blas, bench
from nplstm import _batchmajor as bm


def _weight_grads_before(x, A, AR, hs, w, reverse, matmul):
    """``_batchmajor.weight_grads`` before the nineteenth round."""
    T, B, I = x.shape
    G, P = w.source[1].shape
    Z, ZR = A.reshape(T * B, G), AR.reshape(T * B, G)
    h_prev = (hs[1:] if reverse else hs[:T]).reshape(T * B, P)
    b_ih, b_hh = Z.sum(axis=0), ZR.sum(axis=0)
    grads = {"w_ih": matmul(Z.T, x.reshape(T * B, I)), "w_hh": matmul(ZR.T, h_prev),
             "b_ih": b_ih, "b_hh": b_hh.copy() if AR is A else b_hh, "w_hr": None}
    dx = matmul(Z, w.source[0]).reshape(T, B, I)
    return dx, grads


def _tn_runners(I, H, B, T, rng, threads):
    """[(what, {old, new})]: whole training steps, and on one thread the weight gradients alone (at
    two, a row block's run on one thread inside the step; alone here they would meet OpenBLAS's two)."""
    lstm = nplstm.LSTM(I, H, seed=0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    d = np.ones((T, B, H), np.float32)

    def step():
        _, _, cache = lstm.forward(x, train=True)
        lstm.backward(d, cache)
    A = rng.standard_normal((T, B, 4 * H)).astype(np.float32)
    hs = rng.standard_normal((T + 1, B, H)).astype(np.float32)
    w = lstm._packed(0, 0)
    alone = ("weight_grads", {"old": lambda: _weight_grads_before(x, A, A, hs, w, False, _blas.matmul),
                              "new": lambda: bm.weight_grads(x, A, A, hs, w, False, _blas.matmul)})   # (oneDNN)
    return [("train", {"old": bench.with_patched(bm, {"weight_grads": _weight_grads_before}, step), "new": step})] + (
        [alone] if threads == 1 else [])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", choices=["tn"], default="tn")
    ap.add_argument("--config", action="append", help="I,H,B,T (repeatable)")
    ap.add_argument("--reps", type=int, default=101)
    ap.add_argument("--threads", type=int, default=1, help="for every library (2: the layer's row blocks)")
    args = ap.parse_args(argv)
    nplstm.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with threadpool_limits(args.threads):                 # (as the bench: OpenBLAS and oneDNN's OpenMP alike)
        for cfg in args.config or ["64,128,32,50"]:
            I, H, B, T = map(int, cfg.split(","))
            for what, runners in {"tn": _tn_runners}[args.compare](I, H, B, T, rng, args.threads):
                print(f"({I},{H},{B},{T}) {what}: {bench.new_over_old(runners, args.reps)}", flush=True)


if __name__ == "__main__":
    main()
