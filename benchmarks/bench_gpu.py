"""nplstm on CuPy against torch.nn.LSTM on CUDA (cuDNN): training step, inference and memory, float32.

    python benchmarks/bench_gpu.py                  # the grid: hidden 256/512/1024 x batch 64/256, T 100
    python benchmarks/bench_gpu.py --out table.md   # also write the markdown table to a file

Method: the same weights and inputs in both, one process, interleaved runs, medians; every
timed run ends with a device synchronize. torch's TF32 is switched off so that both do float32
arithmetic (cuDNN would otherwise use TF32 tensor cores). Memory: torch's peak allocated bytes
against CuPy's memory pool after one training step started from an emptied pool (which holds
every block the step allocated, so it bounds the peak from above). Input size = hidden size,
one layer, unidirectional.
"""
import argparse
import platform
import sys
import time

import numpy as np

from nplstm.bench import nplstm_runners, torch_runners

GRID = [(H, B, 100) for H in (256, 512, 1024) for B in (64, 256)]


def runners(H, B, T, seed=0):
    import cupy
    import torch

    import nplstm
    torch.manual_seed(seed)
    module = torch.nn.LSTM(H, H).cuda()
    ours = nplstm.LSTM(H, H, device="cuda")
    ours.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    G = rng.standard_normal((T, B, H)).astype(np.float32)
    xc, Gc = cupy.asarray(x), cupy.asarray(G)
    torch_train, torch_infer = (synced(run, torch.cuda.synchronize) for run in torch_runners(module, x, G, "cuda"))
    ours_train, ours_infer = (synced(run, cupy.cuda.Device().synchronize) for run in nplstm_runners(ours, xc, Gc))

    def torch_peak():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        torch_train()
        return torch.cuda.max_memory_allocated()

    def ours_peak():
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()                            # keeps only the blocks in use: weights, x, G
        ours_train()
        return pool.total_bytes()

    return dict(torch_train=torch_train, torch_infer=torch_infer, ours_train=ours_train,
                ours_infer=ours_infer), (ours_peak, torch_peak)


def synced(run, synchronize):
    """``run`` followed by a device synchronize, so that a timing covers the GPU's work."""
    def timed():
        run()
        synchronize()
    return timed


def medians(runs, reps, warmup=2):
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {k: [] for k in runs}
    for _ in range(reps):                                 # interleaved: each rep runs every one in turn
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    import cupy
    import torch

    import nplstm
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    lines = [f"- GPU: {name}; Python {platform.python_version()}, NumPy {np.__version__}, CuPy {cupy.__version__}, "
             f"torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}, TF32 off), nplstm {nplstm.__version__}",
             "- Command: `bash benchmarks/gpu_check.sh` (float32, input = hidden, 1 layer, medians of "
             f"{args.reps} interleaved runs)", "",
             "| hidden | batch | T | train nplstm/cuDNN | infer nplstm/cuDNN | train ms (nplstm / cuDNN) "
             "| infer ms (nplstm / cuDNN) | peak MiB (nplstm / torch) |",
             "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for H, B, T in GRID:
        runs, (ours_peak, torch_peak) = runners(H, B, T)
        m = medians(runs, args.reps)
        peak_o, peak_t = ours_peak(), torch_peak()
        row = (f"| {H} | {B} | {T} | {m['ours_train'] / m['torch_train']:.2f} | "
               f"{m['ours_infer'] / m['torch_infer']:.2f} | {m['ours_train'] * 1e3:.2f} / {m['torch_train'] * 1e3:.2f} | "
               f"{m['ours_infer'] * 1e3:.2f} / {m['torch_infer'] * 1e3:.2f} | "
               f"{peak_o / 2**20:.0f} / {peak_t / 2**20:.0f} |")
        lines.append(row)
        print(row, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
