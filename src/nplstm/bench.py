"""Time nplstm.LSTM against torch.nn.LSTM (training step and inference) and ONNX Runtime (inference).

Needs torch (``pip install torch``) and threadpoolctl; onnxruntime is optional. Run as
``nplstm bench`` or ``python benchmarks/bench_lstm.py`` (the same code).

All in one process, interleaved run by run, reported as ratios (nplstm / other; below 1.0
nplstm is faster): each rep's ratio of its two runs, and the median over the reps with the
quartiles beside it (``paired_ratio``). Each timed run follows a wait until the other libraries' threads
sleep, then 0.1 s of untimed runs of the same implementation (``median_times``): at several
threads the libraries' idle workers spin after a call (ONNX Runtime's for ~55 ms of CPU, longer
in wall time while others run) and take a core from whatever runs next. Same thread count
everywhere: torch.set_num_threads(n), nplstm.set_num_threads(n) (row blocks, directions at
once), BLAS threads via threadpoolctl, ONNX Runtime intra-op threads.

    python benchmarks/bench_lstm.py                    # the grid, table to stdout
    python benchmarks/bench_lstm.py --write            # also writes benchmarks/RESULTS.md
    python benchmarks/bench_lstm.py --memory           # peak RSS of one training step, per implementation
    python benchmarks/bench_lstm.py --memory --threads 2   # the same at 2 threads (default 1)
    nplstm bench --config 64,128,32,50,1,0             # one configuration of your own

A training step is forward + backward with every gradient (weights and x), from a fixed
output gradient. Inference is a forward with no cache (torch: inference_mode), timed twice:
``layer(x)``, which prepares its weights at every call (they may have changed since the last),
and ``layer.frozen()(x)``, a read-only snapshot that prepares them once, as an ONNX Runtime
session does when it is made.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

import nplstm
from nplstm import _blas, _rowblocks

# (input, hidden, batch, T, layers, bidirectional)
GRID = [(32, 64, 1, 100, 1, False), (64, 128, 32, 50, 1, False), (128, 256, 64, 100, 1, False),
        (512, 512, 64, 50, 1, False), (64, 128, 16, 50, 2, True)]


CELLS = {"lstm": ("LSTM", "LSTM"), "gru": ("GRU", "GRU"), "rnn": ("RNN", "RNN")}   # torch.nn name, nplstm name


def make_pair(cfg, seed=0, cell="lstm"):
    import torch
    I, H, B, T, L, bi = cfg
    torch.manual_seed(seed)
    module = getattr(torch.nn, CELLS[cell][0])(I, H, L, bidirectional=bi)
    ours = getattr(nplstm, CELLS[cell][1])(I, H, L, bidirectional=bi)
    ours.load_state_dict({k: v.detach().numpy() for k, v in module.state_dict().items()})
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    G = rng.standard_normal((T, B, (2 if bi else 1) * H)).astype(np.float32)
    return module, ours, x, G


def torch_twin(ours, cell="lstm"):
    """The torch.nn module of ``ours``' kind and sizes, with its weights (``make_pair`` the other way)."""
    import torch
    module = getattr(torch.nn, CELLS[cell][0])(ours.input_size, ours.hidden_size, ours.num_layers,
                                               bidirectional=ours.bidirectional)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return module


def torch_runners(module, x, G, device="cpu"):
    import torch
    xt, Gt = torch.tensor(x, device=device, requires_grad=True), torch.tensor(G, device=device)

    def train():
        for p in module.parameters():
            p.grad = None
        xt.grad = None
        out, _ = module(xt)
        out.backward(Gt)

    def infer():
        with torch.inference_mode():
            module(xt)
    return train, infer


def nplstm_runners(ours, x, G):
    def train():
        out, _, cache = ours.forward(x, train=True)
        ours.backward(G, cache)

    def infer():
        ours(x)
    return train, infer


def onnx_runner(ours, x, threads):
    """ONNX Runtime's LSTM op on the same weights (None when onnx/onnxruntime are missing)."""
    try:
        import onnxruntime as ort
        from nplstm.interop import onnx_model_bytes
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(onnx_model_bytes(ours), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feed)


SETTLE = 0.1   # s of untimed runs before each timed one, once the other libraries' workers are asleep (wait_quiet)
QUIET = 0.005  # s: a window in which no other thread of the process ran for more than IDLE of it
IDLE = 0.05    # (a spinning worker runs for all of it; a timer thread waking now and then, a sliver)


_SCHEDSTAT = os.path.exists("/proc/self/schedstat")    # Linux, its scheduler statistics compiled in


def _others_cpu_ns(exclude=()):
    """{native thread id: CPU time used so far, ns} of this process's threads other than the
    calling one (and the ids in ``exclude``), from Linux's /proc/self/task/*/schedstat; None
    where that is missing (then nothing is waited for)."""
    if not _SCHEDSTAT:
        return None
    me, used = threading.get_native_id(), {}
    for tid in map(int, os.listdir("/proc/self/task")):
        if tid != me and tid not in exclude:
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    used[tid] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):     # a thread that ended meanwhile
                pass
    return used


def wait_quiet(window=QUIET, limit=0.5):
    """Sleep until no other thread of the process runs for more than ``IDLE`` of a ``window``
    (libraries' workers spin after a parallel call, then sleep), or for ``limit`` s at most;
    returns the seconds waited. Measured here at 2 threads ((64,128,32,50) inference,
    ``benchmarks/settle_check.py``): ONNX Runtime's worker spins for ~55 ms of CPU after its last
    call, and with nplstm's two threads busy on the same two cores that took it 57-160 ms of wall
    time (10th-90th percentiles of four runs), now and then longer: a fixed 0.1 s of untimed runs
    left it spinning into the next library's timed run."""
    t0 = time.perf_counter()
    before = _others_cpu_ns()
    while before is not None and time.perf_counter() - t0 < limit:
        time.sleep(window)
        after = _others_cpu_ns()
        if all(ns - before.get(tid, 0) <= IDLE * window * 1e9 for tid, ns in after.items()):
            break
        before = after
    return time.perf_counter() - t0


def interleaved_times(runners, reps, warmup=2, settle=SETTLE):
    """Interleave: each rep runs every implementation in turn. Returns {name: [seconds of each rep]}.

    Each turn first waits until the other threads of the process are asleep (``wait_quiet``),
    then runs its implementation untimed for ``settle`` seconds (at least once), then times one
    run. The libraries' worker threads keep spinning for a while after their last parallel region
    and take a core from whatever runs next; the wait lets the previous library's go to sleep,
    and the untimed runs wake this one's, so each is timed as a program using only it would see
    it. Measured at 2 threads, (64,128,32,50) inference, CPU time of the other threads after a
    call: ONNX Runtime ~55 ms over the next 60 ms, torch ~7.5 ms, nplstm 0.2 ms. (A single
    untimed run covered torch's spin but not ORT's: whoever followed ORT ran on one core and a
    half. 0.1 s of untimed runs covered it most of the time, not always.) ``settle=0``: no wait,
    and one untimed run.
    """
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {k: [] for k in runners}
    for _ in range(reps):
        for name, run in runners.items():
            if settle > 0:
                wait_quiet()
            until = time.perf_counter() + settle
            run()
            while time.perf_counter() < until:
                run()
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def median_times(runners, reps, warmup=2, settle=SETTLE):
    """``interleaved_times``' medians, in seconds."""
    return {k: float(np.median(v)) for k, v in interleaved_times(runners, reps, warmup, settle).items()}


def paired_ratio(times, a, b):
    """(median, 25th, 75th percentile) of times[a][i] / times[b][i] over the reps i.

    Why pairs: the two runs of one rep are seconds apart, the reps a minute apart, and this shared
    machine's speed drifts by ~10% over minutes (benchmarks/RESULTS.md). A rep's ratio cancels
    the drift that the ratio of the two medians, taken from different reps, keeps; the quartiles
    say how far a single rep's ratio strays."""
    r = np.asarray(times[a]) / np.asarray(times[b])
    return tuple(float(v) for v in np.percentile(r, [50, 25, 75]))


def pair_lines(times, pairs, unit="ms"):
    """The report of a benchmarks/ script's interleaved runs: "  a / b 0.950 (0.930-0.970)" for each
    (a, b) of ``pairs`` that ``times`` has both of (``paired_ratio``), then every run's median
    in ``unit`` ("ms" or "us")."""
    scale, digits = {"ms": (1e3, 2), "us": (1e6, 1)}[unit]
    lines = [f"  {a} / {b} {r:.3f} ({lo:.3f}-{hi:.3f})" for a, b in pairs if a in times and b in times
             for r, lo, hi in [paired_ratio(times, a, b)]]
    return lines + [f"  {unit}: " + ", ".join(f"{k} {np.median(v) * scale:.{digits}f}" for k, v in times.items())]


def new_over_old(runners, reps):
    """Time {"old": run, "new": run} interleaved (no settling: one library, one thread) and say
    "new / old 0.950 (0.930-0.970); us old 100.0, new 95.0": the paired ratio, its quartiles and
    the medians. The A/B line of the benchmarks/ scripts that compare a change with what it replaced."""
    times = interleaved_times(runners, reps, settle=0)
    ratio, lo, hi = paired_ratio(times, "new", "old")
    return (f"new / old {ratio:.3f} ({lo:.3f}-{hi:.3f}); "
            f"us old {np.median(times['old']) * 1e6:.1f}, new {np.median(times['new']) * 1e6:.1f}")


def with_patched(module, patch, run):
    """A function that calls run() with ``module``'s attributes set from ``patch`` ({name: value})
    and puts them back after: a change's old side, for ``new_over_old``."""
    def patched_run():
        saved = {k: getattr(module, k) for k in patch}
        for k, v in patch.items():
            setattr(module, k, v)
        try:
            return run()
        finally:
            for k, v in saved.items():
                setattr(module, k, v)
    return patched_run


def reference_step_time(cfg):
    """Seed-layout reference (float64, four gate matrices, per-step loop): one training step."""
    from nplstm import reference
    I, H, B, T, L, bi = cfg
    if L != 1 or bi:
        return None
    p = reference.initialize_parameters(I, H, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((I, B, T))
    t0 = time.perf_counter()
    a, _, _, caches = reference.lstm_forward(x, np.zeros((H, B)), p)
    reference.lstm_backward(np.ones_like(a), caches)
    return time.perf_counter() - t0


def budget_reps(cfg):
    I, H, B, T, L, bi = cfg
    work = T * B * H * (I + H) * L * (2 if bi else 1)
    return int(np.clip(1.5e9 / max(work, 1), 11, 51))


def run_grid(grid, threads, reps=None, cell="lstm"):
    import torch
    torch.set_num_threads(threads)
    before = nplstm.get_num_threads()
    nplstm.set_num_threads(threads)
    try:
        return _run_configs(grid, threads, reps, cell)
    finally:
        nplstm.set_num_threads(before)


def _run_configs(grid, threads, reps, cell):
    from threadpoolctl import threadpool_limits
    rows = []
    with threadpool_limits(threads):
        for cfg in grid:
            module, ours, x, G = make_pair(cfg, cell=cell)
            t_train, t_infer = torch_runners(module, x, G)
            n_train, n_infer = nplstm_runners(ours, x, G)
            r = reps or budget_reps(cfg)
            train = interleaved_times({"nplstm": n_train, "torch": t_train}, r)
            frozen = ours.frozen()                        # prepared once, as ORT's session is
            infer_runners = {"nplstm": n_infer, "frozen": lambda: frozen(x), "torch": t_infer}
            ort_run = onnx_runner(ours, x, threads) if cell == "lstm" else None
            if ort_run is not None:
                infer_runners["onnxruntime"] = ort_run
            infer = interleaved_times(infer_runners, r)
            small = cfg[2] * cfg[3] * cfg[1] <= 32 * 50 * 128
            ref = reference_step_time(cfg) if small and cell == "lstm" else None
            rows.append(dict(cfg=cfg, reps=r, train=train, infer=infer, reference=ref, cell=cell))
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    """A table row from ``_run_configs``' times: ratios as ``paired_ratio``'s median (and its
    quartiles), times as medians."""
    I, H, B, T, L, bi = row["cfg"]
    tr, inf = row["train"], row["infer"]

    def ratio(times, a, b):
        if b not in times:
            return "n/a"
        mid, lo, hi = paired_ratio(times, a, b)
        return f"{mid:.2f} ({lo:.2f}-{hi:.2f})"

    def ms(times, k):
        return f"{np.median(times[k]) * 1e3:.2f}"
    ref = f"{row['reference'] / np.median(tr['nplstm']):.0f}x" if row["reference"] else "-"
    cell = "" if row.get("cell", "lstm") == "lstm" else row["cell"].upper() + " "
    return (f"| {cell}({I},{H},{B},{T},{L},{'yes' if bi else 'no'}) | {ratio(tr, 'nplstm', 'torch')} | "
            f"{ratio(inf, 'nplstm', 'torch')} | {ratio(inf, 'nplstm', 'onnxruntime')} | "
            f"{ratio(inf, 'frozen', 'torch')} / {ratio(inf, 'frozen', 'onnxruntime')} | "
            f"{ms(tr, 'nplstm')} / {ms(tr, 'torch')} | {ms(inf, 'nplstm')} / {ms(inf, 'torch')} | {ref} |")


HEADER = ("Ratios: the median over the reps of each rep's ratio (its two runs interleaved, seconds apart), "
          "in brackets the 25th-75th percentiles (`bench.paired_ratio`); times: medians.\n\n"
          "| config (I,H,B,T,layers,bidir) | train nplstm/torch | infer nplstm/torch | infer nplstm/ORT | "
          "infer frozen() / torch, / ORT | train ms (nplstm / torch) | infer ms (nplstm / torch) | "
          "speed-up over reference |\n|---|---|---|---|---|---|---|---|")


# ---------------------------------------------------------------------------- memory
def _memory_child(impl, cfg, threads, cell="lstm"):
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(threads)                        # the same count each, as in the speed tables
    nplstm.set_num_threads(threads)
    threadpool_limits(threads)
    module, ours, x, G = make_pair(cfg, cell=cell)
    runners = torch_runners if impl == "torch" else nplstm_runners
    # Warm up on a 2-step input with few rows only: that pays one-time costs (numba's compiler and
    # cache loads, oneDNN's set-up) without leaving this size's pages in the allocator, which would
    # make the peak read near zero for both. 2 rows run the generic loop's kernels, not batch 1's;
    # at several threads 2 x MIN_ROWS rows split, so that the thread pools start here too. The
    # figure is the first full step's rise in RSS.
    rows = min(2 if threads == 1 else 2 * _rowblocks.MIN_ROWS, x.shape[1])
    runners(module if impl == "torch" else ours, x[:2, :rows], G[:2, :rows])[0]()
    run = runners(module if impl == "torch" else ours, x, G)[0]

    def rss(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024
    with open("/proc/self/clear_refs", "w") as f:          # reset the peak (VmHWM) to the current RSS
        f.write("5")
    base = rss("VmRSS:")
    run()
    print(json.dumps({"peak_bytes": rss("VmHWM:") - base}))


def run_memory(grid, threads=1, cell="lstm"):
    rows = []
    for cfg in grid:
        peaks = {}
        for impl in ("nplstm", "torch"):
            out = subprocess.run([sys.executable, "-m", "nplstm.bench", "--memory-child", impl, json.dumps(cfg),
                                  str(threads), cell], capture_output=True, text=True, check=True)
            peaks[impl] = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]
        rows.append((cfg, peaks))
        print(f"{cfg}: nplstm {peaks['nplstm'] / 2**20:.1f} MiB, torch {peaks['torch'] / 2**20:.1f} MiB", flush=True)
    return rows


# ---------------------------------------------------------------------------- report
def environment(threads):
    import torch
    from nplstm import engine
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}", f"torch {torch.__version__}"]
    try:
        import numba
        versions.append(f"numba {numba.__version__}")
    except ImportError:
        pass
    try:
        import onnxruntime
        versions.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    cpu = _cpu()
    from threadpoolctl import threadpool_info, threadpool_limits
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')})" for i in threadpool_info())
    with threadpool_limits(threads):                      # the provider depends on the thread count (nplstm._blas)
        gemm = _gemm_name()
    return (f"- Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}\n"
            f"- Versions: {', '.join(versions)}, nplstm {nplstm.__version__} (elementwise backend: "
            f"{engine.get_backend()}; float32 GEMMs: {gemm}); BLAS: {blas}\n"
            f"- Threads: {threads} for every implementation\n")


def _cpu():
    """"AMD EPYC (AVX2)": the model name and the widest vector extension, which decide the GEMM
    kernels (the same model name has come with AVX-512 and without it here, and the ratios moved)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "?"
    flags = set(info.get("flags", "").split())
    isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags),
               "no AVX")
    return f"{info.get('model name', '?')} ({isa})"


def _gemm_name():
    from importlib import metadata
    name = _blas.provider()
    if name == "onednn":
        name += f" (onednn-cpu-gomp {metadata.version('onednn-cpu-gomp')})"
    return name or "numpy.matmul"


def _config(text):
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 6:
        raise argparse.ArgumentTypeError("expected I,H,B,T,layers,bidirectional, e.g. 64,128,32,50,1,0")
    return (*parts[:5], bool(parts[5]))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="nplstm bench", description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=_config, action="append", help="I,H,B,T,layers,bidirectional "
                    "(repeatable; default: the standard grid)")
    ap.add_argument("--results", default="benchmarks/RESULTS.md", help="file that --write updates")
    ap.add_argument("--cell", choices=sorted(CELLS), default="lstm", help="which layer to time (default: lstm)")
    ap.add_argument("--threads", type=int, help="threads for every implementation (default: every core; "
                    "with --memory, 1)")
    ap.add_argument("--reps", type=int, default=None, help="timed runs per implementation (default: by size)")
    ap.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    ap.add_argument("--memory", action="store_true", help="measure peak RSS of a training step instead")
    ap.add_argument("--gemm", choices=sorted(_blas.PROVIDERS), help="sgemm provider for nplstm's float32 GEMMs (default: the fastest installed; "
                    "see nplstm._blas)")
    ap.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.gemm:
        _blas.set_provider(args.gemm)
    grid = args.config or GRID
    if args.memory_child:
        impl, cfg, threads, cell = args.memory_child
        return _memory_child(impl, tuple(json.loads(cfg)), int(threads), cell)
    if args.memory:
        threads = args.threads or 1
        rows = run_memory(grid, threads, args.cell)
        if args.write:
            lines = ["| config (I,H,B,T,layers,bidir) | nplstm MiB | torch MiB | ratio |", "|---|---|---|---|"]
            lines += [f"| {cfg} | {p['nplstm'] / 2**20:.1f} | {p['torch'] / 2**20:.1f} | "
                      f"{p['nplstm'] / max(p['torch'], 1):.2f} |" for cfg, p in rows]
            key, flag = ("memory", "") if threads == 1 else (f"memory-threads{threads}", f" --threads {threads}")
            if args.cell != "lstm":
                key, flag = f"{key}-{args.cell}", f"{flag} --cell {args.cell}"
            _write_section(key, f"Peak memory of one training step (rise in RSS), {threads} thread(s), "
                           f"{CELLS[args.cell][1]}",
                           f"python benchmarks/bench_lstm.py --memory{flag} --write", "\n".join(lines), threads,
                           args.results)
        return None                                       # (sys.exit(main()): a returned list would exit 1)
    threads = args.threads or os.cpu_count()
    print(environment(threads))
    print(HEADER)
    rows = run_grid(grid, threads, args.reps, args.cell)
    if args.write:
        write_results(rows, threads, args.results, args.cell, args.gemm)


def write_results(rows, threads, path, cell="lstm", gemm=None):
    table = "\n".join([HEADER, *map(format_row, rows)])
    name = ("" if cell == "lstm" else f"-{cell}") + (f"-{gemm}" if gemm else "")
    flag = f" --gemm {gemm}" if gemm else ""
    _write_section(f"threads{threads}{name}", f"Speed, float32, {threads} thread(s), {CELLS[cell][1]}{flag}",
                   f"python benchmarks/bench_lstm.py --threads {threads} --cell {cell}{flag} --write", table, threads,
                   path)


def _write_section(key, title, command, body, threads, path):
    """Replace this run's section of the results file (between its markers), atomically."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (f"<!-- {key} -->\n### {title} ({stamp})\n\n{environment(threads)}- Command: `{command}` "
               f"(with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)\n\n{body}\n<!-- /{key} -->")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    start, end = text.find(f"<!-- {key} -->"), text.find(f"<!-- /{key} -->")
    text = (text[:start] + section + text[end + len(f"<!-- /{key} -->"):]) if start >= 0 and end > start \
        else text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print(f"\nwrote {path} [{key}]")


if __name__ == "__main__":
    sys.exit(main())
