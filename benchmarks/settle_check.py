"""Does ``bench.median_times`` keep ONNX Runtime's spinning workers out of the next timed run? Inference, float32.

1. After a burst of ORT calls, nplstm's ``frozen()`` calls back to back for 0.4 s, their times
   grouped by how long after ORT's last call each started, and when the process's other threads
   (ORT's) last used CPU. ORT's idle workers spin for a while and take a core; a call that
   overlaps them runs on a core and a half.
2. The interleaved ratios against ORT as the bench times them (each turn waits for the other
   threads to sleep, ``bench.wait_quiet``, then runs ``bench.SETTLE`` s untimed) and without the
   wait (as before), in alternating processes. The plain layer follows ORT in each round.

    python benchmarks/settle_check.py                      # 64,128,32,50 at 2 threads
    python benchmarks/settle_check.py --config 64,128,16,50 --threads 1
"""
import argparse
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _rowblocks, bench


def setup(config, threads):
    I, H, B, T = (int(v) for v in config.split(","))
    lstm = nplstm.LSTM(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    nplstm.set_num_threads(threads)
    ort = bench.onnx_runner(lstm, x, threads)
    if ort is None:
        raise SystemExit("needs onnx and onnxruntime: pip install 'nplstm[onnx]'")
    return lstm, x, ort


def after_ort(lstm, x, ort, bursts=30, bucket_ms=25):
    frozen, times, spin_ends = lstm.frozen(), {}, []
    for _ in range(50):
        ort(), frozen(x)
    for _ in range(bursts):
        for _ in range(20):
            ort()
        t0 = time.perf_counter()
        pool = {w.thread.native_id for w in _rowblocks._workers}   # nplstm's: not ORT's
        cpu = bench._others_cpu_ns(pool)
        others, busy = (None if cpu is None else sum(cpu.values())), 0.0
        while (start := time.perf_counter()) - t0 < 0.4:
            frozen(x)
            times.setdefault(int((start - t0) * 1000) // bucket_ms * bucket_ms, []).append(time.perf_counter() - start)
            if others is not None:
                now = sum(bench._others_cpu_ns(pool).values())
                busy, others = (time.perf_counter() - t0 if now > others + 1e6 else busy), now
        spin_ends.append(busy * 1e3)
    steady = np.median(np.concatenate([v for k, v in times.items() if k >= 200]))
    for k in sorted(times):
        v = np.array(times[k])
        print(f"  {k:3d}-{k + bucket_ms} ms after ORT's last call: frozen() median {np.median(v) * 1e6:6.0f} us, "
              f"{np.mean(v > 1.3 * steady):.2f} of calls over 1.3 x the steady median")
    print("  the last call during which ORT's threads used over 1 ms of CPU ended, ms after ORT's last call "
          f"(10th/50th/90th percentile, max): {np.percentile(spin_ends, [10, 50, 90, 100]).round(0)}")


def ratios(lstm, x, ort, wait):
    frozen = lstm.frozen()
    if not wait:
        bench.wait_quiet = lambda: 0.0                   # the bench as it was: untimed runs only
    m = bench.median_times({"plain": lambda: lstm(x), "frozen": lambda: frozen(x), "ort": ort}, 40)
    print(f"{'with' if wait else 'without'} the wait: plain/ORT {m['plain'] / m['ort']:.3f}, "
          f"frozen()/ORT {m['frozen'] / m['ort']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="64,128,32,50", help="I,H,B,T")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3, help="pairs of alternating processes in check 2")
    parser.add_argument("--wait", type=int, choices=(0, 1), help=argparse.SUPPRESS)   # (one process of check 2)
    args = parser.parse_args()
    with threadpool_limits(args.threads):
        lstm, x, ort = setup(args.config, args.threads)
        if args.wait is not None:
            return ratios(lstm, x, ort, args.wait)
        print(f"1. frozen() calls after ORT's ({args.config}, {args.threads} threads):")
        after_ort(lstm, x, ort)
    print("2. interleaved ratios, alternating processes:")
    for _ in range(args.pairs):
        for wait in (1, 0):
            subprocess.run([sys.executable, __file__, "--config", args.config, "--threads", str(args.threads),
                            "--wait", str(wait)], check=True)


if __name__ == "__main__":
    main()
