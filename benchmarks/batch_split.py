"""nplstm.set_num_threads(n): the batch in row blocks, one thread each (``nplstm._rowblocks``),
against one thread's loop with BLAS given the threads instead.

An LSTM's batch rows never meet, so each block of rows can run the whole sequence on its own
core, with no barrier between steps (BLAS given several threads splits each step's GEMM
instead, and leaves the cell on one core).

    python benchmarks/batch_split.py calls 64,128,32,50,1,0 128,256,64,100,1,0   # alone, 2 threads
    python benchmarks/batch_split.py app                                          # nplstm train

``calls``: each mode in its own process, one after the other (interleaving them in one process
measures OpenBLAS's idle workers instead: see ``app``). ``app``: 30 steps of the Shakespeare
preset, split and not, then both again with OPENBLAS_THREAD_TIMEOUT=4. OpenBLAS's workers spin
for ~2^28 cycles after each multi-threaded call (the model's head GEMMs, every step) and take
the second core from the split's thread; with the spin cut, the split wins. Results in
benchmarks/RESULTS.md.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np


def install_split():
    """Row blocks over every core (the library's default is 1: no split)."""
    import nplstm
    nplstm.set_num_threads(os.cpu_count() or 1)


def calls(config, split):
    from threadpoolctl import threadpool_limits

    import nplstm
    from nplstm import bench
    if split:
        install_split()
    cfg = bench._config(config)
    I, H, B, T, L, bi = cfg
    lstm = nplstm.LSTM(I, H, L, bidirectional=bi, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    G = rng.standard_normal((T, B, (2 if bi else 1) * H)).astype(np.float32)
    with threadpool_limits(os.cpu_count()):
        out = []
        for run in bench.nplstm_runners(lstm, x, G):
            for _ in range(3):
                run()
            times = []
            for _ in range(bench.budget_reps(cfg)):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            out.append(np.median(times) * 1e3)
    print(f"{config} split={split}: train {out[0]:.2f} ms, infer {out[1]:.2f} ms", flush=True)


def app():
    train = "from nplstm.cli import main; main(['train', '--preset', 'shakespeare', '--steps', '30', '--quiet', " \
            "'--out', 'runs/batch-split'])"
    for env in ({}, {"OPENBLAS_THREAD_TIMEOUT": "4"}):
        for split in (True, False, True, False):
            code = ("import sys; sys.path.insert(0, 'benchmarks'); import batch_split; batch_split.install_split(); "
                    if split else "") + train
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **env})
            print(f"app {env or 'default'} split={split}: {time.perf_counter() - t0:.2f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    each = sub.add_parser("calls", help="each config split and not, each run in its own process")
    each.add_argument("configs", nargs="+", help="I,H,B,T,layers,bidirectional (0/1)")
    one = sub.add_parser("one", help="one config in this process (what 'calls' runs)")
    one.add_argument("config", help="I,H,B,T,layers,bidirectional (0/1)")
    one.add_argument("split", type=int, choices=[0, 1], help="1: row blocks over every core")
    sub.add_parser("app", help="30 steps of nplstm train's Shakespeare preset, split and not")
    args = ap.parse_args()
    if args.mode == "calls":
        for config in args.configs:
            for split in (True, False, True, False):
                subprocess.run([sys.executable, __file__, "one", config, str(int(split))], check=True)
    elif args.mode == "one":
        calls(args.config, bool(args.split))
    else:
        app()


if __name__ == "__main__":
    main()
