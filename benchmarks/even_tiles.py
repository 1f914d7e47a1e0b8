"""Our kernel's tiles with the rows shared out evenly, against full tiles and then the rest.

``_tilegemm`` multiplies a panel by tiles of up to ROWS = 6 rows. Before, n rows were tiles of 6
and then what was left: 32 rows as 6, 6, 6, 6, 6, 2. The last tile reads the whole panel from L2
for two rows' FMAs, faster than L2 delivers it. Now the rows are shared out evenly over as few
tiles (``_tilegemm.tile_rows``): 6, 6, 5, 5, 5, 5. A row's sums do not depend on its tile, so
the results are the same to the bit.

Two parts:

1. ``--products`` (default): the product alone, (n x K) @ (K x N) 50-200 times from a numba loop,
   old (the loop before, rebuilt here) against new (``_tilegemm.gemm``), one thread, paired
   medians interleaved in one process (``bench.new_over_old``).
2. ``--calls OLD_SRC``: whole calls, this checkout's nplstm against OLD_SRC's (another
   checkout's ``src``, e.g. ``git worktree add /tmp/old <commit>``), whose package is copied and
   imported beside it as ``nplstm_old`` (compiled code cannot be patched in a process). Each of
   ``--processes`` processes times the plain layer's inference, ``frozen()``'s and a training
   step of both, and torch.nn.LSTM's, interleaved, and prints the paired ratios; the import
   order alternates (the same code imported twice measured 0.997-1.012 of itself); then the
   medians over the processes (one process's ratios differ from another's by a few percent).

    python benchmarks/even_tiles.py --products 32,16,20,64
    python benchmarks/even_tiles.py --calls /tmp/old/src --threads 2 --config 512,512,64,50 --processes 4

Results in benchmarks/RESULTS.md (twenty-fourth round).
"""
import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _aligned, bench
from nplstm import _tilegemm as tg


@numba.njit
def _old(panels, X, n, Y, steps):
    """``_tilegemm.gemm`` as it was: tiles of ROWS, then the rest."""
    npan, K, _ = panels.shape
    N, panel_step = Y.shape[1], K * tg.COLS
    w0, x0, y0 = panels.ctypes.data, X.ctypes.data, Y.ctypes.data
    fetch, line_rows = 4 * npan * panel_step > tg.FETCH_BYTES, K
    for _ in range(steps):
        for p in range(npan):
            w = w0 + 4 * p * panel_step
            ahead = w0 if p == npan - 1 else w + 4 * panel_step
            for t in range((n + tg.ROWS - 1) // tg.ROWS):
                r, pf = t * tg.ROWS, ahead + 4 * tg.LINE * t * line_rows if fetch and t < 4 else 0
                tg._tile(min(tg.ROWS, n - r), x0 + 4 * r * K, K, w, tg.COLS, K, y0 + 4 * (r * N + p * tg.COLS), N, pf)


@numba.njit
def _new(panels, X, n, Y, steps):
    for _ in range(steps):
        tg.gemm(panels, X, n, Y)


def products(rows):
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for K, N in [(512, 2048), (256, 1024), (128, 512)]:
            W = rng.standard_normal((K, N)).astype(np.float32)
            panels = tg.pack(W)
            for n in rows:
                X = _aligned.empty((n, K))
                X[:] = rng.standard_normal((n, K))
                Y, Y_old = _aligned.empty((n, N)), _aligned.empty((n, N))
                steps = 50 if K == 512 else 200
                _old(panels, X, n, Y_old, 1)
                _new(panels, X, n, Y, 1)
                assert np.array_equal(Y, Y_old)               # the same sums, to the bit
                line = bench.new_over_old({"old": lambda: _old(panels, X, n, Y_old, steps),
                                           "new": lambda: _new(panels, X, n, Y, steps)}, 25)
                print(f"({n}x{K}) @ ({K}x{N}), {steps} products, tiles {_tiles(n)}: {line}")


def _tiles(n):
    tiles, fewer, more = tg.tile_rows(n)
    return [fewer + 1] * more + [fewer] * (tiles - more)


def child(threads, configs, old_package, old_first):
    """One process's A/B: this checkout's nplstm against the old one, imported side by side as
    ``nplstm_old`` (a copy of its package in ``old_package``), and torch.nn.LSTM, interleaved."""
    import torch
    sys.path.insert(0, old_package)
    old_nplstm = importlib.import_module("nplstm_old")
    sides = {"old": old_nplstm, "new": nplstm} if old_first else {"new": nplstm, "old": old_nplstm}
    for lib in sides.values():
        lib.set_num_threads(threads)
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        for cfg in configs:
            I, H, B, T = (int(v) for v in cfg.split(","))
            rng = np.random.default_rng(1)
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            G = rng.standard_normal((T, B, H)).astype(np.float32)
            runs = {}
            for side, lib in sides.items():
                lstm = lib.LSTM(I, H, seed=0)
                frozen = lstm.frozen()
                runs[f"train {side}"], runs[f"plain {side}"] = bench.nplstm_runners(lstm, x, G)
                runs[f"frozen {side}"] = (lambda f: lambda: f(x))(frozen)
            runs["torch train"], runs["torch"] = bench.torch_runners(bench.torch_twin(lstm, "lstm"), x, G)
            times = bench.interleaved_times(runs, 11)
            pairs = [(f"{k} new", f"{k} old") for k in ("plain", "frozen", "train")]
            pairs += [(f"{k} {s}", "torch") for k in ("plain", "frozen") for s in ("new", "old")]
            print("RESULT", cfg, " ".join(f"{bench.paired_ratio(times, a, b)[0]:.3f}" for a, b in pairs), flush=True)


def calls(old_src, threads, configs, processes):
    """Processes, each timing both sides (``child``), the import order alternating; the medians of
    their paired ratios."""
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(Path(old_src) / "nplstm", Path(tmp) / "nplstm_old",
                        ignore=shutil.ignore_patterns("__pycache__"))
        got = {}
        for k in range(processes):
            out = subprocess.run([sys.executable, __file__, "--child", tmp, "--threads", str(threads),
                                  *(["--old-first"] if k % 2 else []), *sum((["--config", c] for c in configs), [])],
                                 capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                if line.startswith("RESULT"):
                    _, cfg, *r = line.split()
                    got.setdefault(cfg, []).append([float(v) for v in r])
                    print(line, flush=True)
    print(f"{threads} thread(s), medians over {processes} processes: new / old (plain, frozen(), training); "
          "plain new, old / torch; frozen() new, old / torch:")
    for cfg in configs:
        m = np.median(got[cfg], axis=0)
        print(f"  ({cfg}) " + " ".join(f"{v:.3f}" for v in m[:3]) + "; " + " ".join(f"{v:.3f}" for v in m[3:5])
              + "; " + " ".join(f"{v:.3f}" for v in m[5:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", default="32,16,20,64", help="row counts n of the products")
    ap.add_argument("--calls", metavar="OLD_SRC", help="whole calls: this checkout's src against OLD_SRC")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", action="append", help="I,H,B,T (repeatable; default 512,512,64,50)")
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--old-first", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configs = args.config or ["512,512,64,50"]
    if args.child:
        child(args.threads, configs, args.child, args.old_first)
    elif args.calls:
        if importlib.util.find_spec("torch") is None:
            sys.exit("--calls times against torch: pip install torch")
        calls(args.calls, args.threads, configs, args.processes)
    else:
        products([int(v) for v in args.products.split(",")])


if __name__ == "__main__":
    main()
