"""Memory and time of one LSTM training step on a long sequence (batch 1, hidden 128, float32).

    python benchmarks/long_sequence.py            # T = 10k, 30k, 100k, each in a fresh process,
                                                  # plain and with checkpoint_every=1000
"""
import argparse
import json
import subprocess
import sys
import time


def child(T, every):
    import numpy as np

    import nplstm
    lstm = nplstm.LSTM(8, 128, seed=0)
    small = np.zeros((2, 1, 8), np.float32)
    out, _, cache = lstm.forward(small, train=True)       # warm up (numba compile) outside the measurement
    lstm.backward(np.ones_like(out), cache)
    x = np.random.default_rng(0).standard_normal((T, 1, 8)).astype(np.float32)
    rss = lambda f: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(f)) * 1024  # noqa
    open("/proc/self/clear_refs", "w").write("5")
    base, t0 = rss("VmRSS:"), time.perf_counter()
    out, _, cache = lstm.forward(x, train=True, checkpoint_every=every)
    lstm.backward(np.ones_like(out), cache)
    print(json.dumps({"T": T, "seconds": time.perf_counter() - t0, "peak_bytes": rss("VmHWM:") - base}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("T", nargs="?", type=int, help="(internal) one step of T steps in this process")
    ap.add_argument("every", nargs="?", default="none", help="(internal) checkpoint_every, or none")
    args = ap.parse_args()
    if args.T is not None:
        child(args.T, None if args.every == "none" else int(args.every))
        return
    for every in ("none", "1000"):
        for T in (10_000, 30_000, 100_000):
            r = json.loads(subprocess.run([sys.executable, __file__, str(T), every], capture_output=True,
                                          text=True, check=True).stdout)
            print(f"checkpoint_every={every:>5}  T={r['T']:>7,}: {r['seconds']:.2f} s, "
                  f"peak {r['peak_bytes'] / 2**20:.0f} MiB, {r['peak_bytes'] / r['T']:.0f} bytes/step")


if __name__ == "__main__":
    main()
