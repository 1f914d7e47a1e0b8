"""Per-step cost against fixed cost: nplstm.LSTM and ONNX Runtime's LSTM op at several sequence lengths.

Inference, float32, one thread each, interleaved, medians. A straight line through (T, time)
splits each library's time into a cost per step (the slope: the recurrent GEMM and the cell) and
a cost per call (the intercept: argument checks, buffers, packing W_hh, dispatch). Where the
slopes match and nplstm still loses, what it loses on is the call, not the loop.

    python benchmarks/ort_slope.py 64,128,16 32,64,1        # I,H,B per configuration
    python benchmarks/ort_slope.py 32,64,1 --frozen --lengths 1,10,25,50,100,200   # a frozen() copy
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import bench


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="I,H,B")
    parser.add_argument("--lengths", default="25,50,100,200", help="sequence lengths T (comma-separated)")
    parser.add_argument("--reps", type=int, default=100, help="interleaved timed runs per length")
    parser.add_argument("--frozen", action="store_true", help="time the layer's frozen() copy instead of the layer")
    args = parser.parse_args()
    lengths = [int(t) for t in args.lengths.split(",")]
    with threadpool_limits(1):
        for config in args.configs:
            I, H, B = (int(v) for v in config.split(","))
            lstm = nplstm.LSTM(I, H, seed=0)
            layer = lstm.frozen() if args.frozen else lstm
            ours, theirs = [], []
            for T in lengths:
                x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
                ort = bench.onnx_runner(lstm, x, 1)
                if ort is None:
                    raise SystemExit("needs onnx and onnxruntime: pip install 'nplstm[onnx]'")
                m = bench.median_times({"nplstm": lambda: layer(x), "ort": ort}, args.reps)
                ours.append(m["nplstm"] * 1e3)
                theirs.append(m["ort"] * 1e3)
                print(f"({I},{H},{B}) T={T}: nplstm {ours[-1]:.3f} ms, ORT {theirs[-1]:.3f} ms, "
                      f"ratio {ours[-1] / theirs[-1]:.2f}")
            (s1, c1), (s2, c2) = np.polyfit(lengths, ours, 1), np.polyfit(lengths, theirs, 1)
            print(f"({I},{H},{B}) per step: nplstm {s1 * 1e3:.1f} us, ORT {s2 * 1e3:.1f} us (ratio {s1 / s2:.2f}); "
                  f"per call: nplstm {c1:.3f} ms, ORT {c2:.3f} ms")


if __name__ == "__main__":
    main()
