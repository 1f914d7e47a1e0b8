"""A lead for several threads, not in the library: the batch split into row blocks, one thread each.

An LSTM's batch rows never meet, so each block of rows can run the whole sequence on its own
core, with no barrier between steps (BLAS given several threads splits each step's GEMM
instead, and leaves the cell on one core). This script patches ``engine.forward``/``backward``
to do that for the compiled float32 LSTM (blocks of >= 16 rows, each on one BLAS/OpenMP
thread; the numba loops release the GIL), then times it against the library as it is.

    python benchmarks/batch_split.py calls 64,128,32,50,1,0 128,256,64,100,1,0   # alone, 2 threads
    python benchmarks/batch_split.py app                                          # nplstm train

``calls``: each mode in its own process, one after the other (interleaving them in one process
measures OpenBLAS's idle workers instead: see ``app``). ``app``: 30 steps of the Shakespeare
preset, split and not, then both again with OPENBLAS_THREAD_TIMEOUT=4. OpenBLAS's workers spin
for ~2^28 cycles after each multi-threaded call (the model's head GEMMs, every step) and take
the second core from the split's thread; with the spin cut, the split wins. Results in
benchmarks/RESULTS.md.
"""
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MIN_ROWS = 16


def install_split():
    """Patch nplstm.engine so that forward/backward of a compiled LSTM run in row blocks."""
    from nplstm import _blas, _threads, engine
    forward_one, backward_one = engine.forward, engine.backward
    pool = ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) - 1)

    def run_parts(fn, n):
        def one_thread(k):
            with _blas.one_omp_thread():                  # per calling thread
                return fn(k)
        with _threads.single_blas_thread():
            futures = [pool.submit(one_thread, k) for k in range(1, n)]
            return [one_thread(0)] + [f.result() for f in futures]

    def forward(x, h0, c0, w, batch_sizes=None, reverse=False, train=True):
        B = x.shape[1]
        n = min(os.cpu_count() or 1, B // MIN_ROWS)
        if not engine._compiled_lstm(w, x) or n < 2:
            return forward_one(x, h0, c0, w, batch_sizes, reverse, train)
        edges = [B * k // n for k in range(n + 1)]
        bounds = list(zip(edges[:-1], edges[1:]))

        def run(k):
            r0, r1 = bounds[k]
            sizes = None if batch_sizes is None else np.clip(np.asarray(batch_sizes) - r0, 0, r1 - r0)
            return forward_one(np.ascontiguousarray(x[:, r0:r1]), h0[r0:r1], c0[r0:r1], w, sizes, reverse, train)
        res = run_parts(run, n)
        cat = [np.concatenate([r[i] for r in res], axis=1 if i == 0 else 0) for i in range(3)]
        return (*cat, ("split", bounds, [r[3] for r in res]) if train else None)

    def backward(dout, dh_n, dc_n, cache):
        if not (isinstance(cache[0], str) and cache[0] == "split"):
            return backward_one(dout, dh_n, dc_n, cache)
        _, bounds, caches = cache

        def run(k):
            r0, r1 = bounds[k]
            return backward_one(np.ascontiguousarray(dout[:, r0:r1]), None if dh_n is None else dh_n[r0:r1],
                                None if dc_n is None else dc_n[r0:r1], caches[k])
        res = run_parts(run, len(bounds))
        cat = [np.concatenate([r[i] for r in res], axis=1 if i == 0 else 0) for i in range(3)]
        grads = {k: None if v is None else v + sum(r[3][k] for r in res[1:]) for k, v in res[0][3].items()}
        return (*cat, grads)
    engine.forward, engine.backward = forward, backward


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


if __name__ == "__main__":
    if sys.argv[1:2] == ["calls"]:
        for config in sys.argv[2:]:
            for split in (True, False, True, False):
                subprocess.run([sys.executable, __file__, "one", config, str(int(split))], check=True)
    elif sys.argv[1:2] == ["one"]:
        calls(sys.argv[2], bool(int(sys.argv[3])))
    elif sys.argv[1:2] == ["app"]:
        app()
    else:
        sys.exit(__doc__)
