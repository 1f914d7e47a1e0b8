"""The ``nplstm`` command line: train, sample, gradcheck, bench."""
import argparse
import os
import sys

from . import __version__

APP_HINT = "install the app extras: pip install 'nplstm[app]'"


# ---------------------------------------------------------------------------- train
def _add_train(sub):
    p = sub.add_parser("train", help="train a character-level model (default: dinosaur names, ~1 min)",
                       description="Train a character-level LSTM language model. With no flags: the bundled "
                                   "dinosaur names, one name per sequence, a small model, about a minute on 2 cores.")
    p.add_argument("--corpus", choices=["dinos", "shakespeare"], help="bundled corpus (default: dinos)")
    p.add_argument("--data", metavar="PATH", help="train on this UTF-8 text file instead of a bundled corpus")
    p.add_argument("--preset", choices=["dinos", "shakespeare", "tiny"],
                   help="named model and training sizes; explicit flags override it (default: dinos)")
    p.add_argument("--out", metavar="DIR", help="run folder for checkpoint, metrics.csv and loss.png "
                                                "(default: runs/<preset or corpus>)")
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps (default: 1200; shakespeare 5000)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop after this much training time")
    p.add_argument("--seed", type=int, help="seed for weights, batches, dropout and samples (default: 0)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g = p.add_argument_group("model and optimization")
    for flag, typ, text in (("--embed", int, "embedding size"), ("--hidden", int, "LSTM hidden size"),
                            ("--layers", int, "LSTM layers"), ("--dropout", float, "dropout between LSTM layers"),
                            ("--seq-len", int, "characters per TBPTT chunk (stream mode)"),
                            ("--batch-size", int, "sequences per batch"), ("--lr", float, "peak learning rate"),
                            ("--clip", float, "global gradient-norm clip, 0 to disable"),
                            ("--warmup", int, "learning-rate warm-up steps"),
                            ("--eval-every", int, "steps between validation losses"),
                            ("--sample-every", int, "steps between printed samples"),
                            ("--checkpoint-every", int, "steps between checkpoints")):
        g.add_argument(flag, type=typ, help=f"{text} (default: from the preset)")
    g.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="recurrent cell (default: lstm)")
    g.add_argument("--optimizer", choices=["adam", "sgd"], help="optimizer (default: adam)")
    g.add_argument("--schedule", choices=["cosine", "step", "constant"], help="decay after warm-up (default: cosine)")
    g.add_argument("--line-mode", action=argparse.BooleanOptionalAction,
                   help="one line per sequence, padded and masked (default: on for dinos, off otherwise)")
    g.add_argument("--lowercase", action=argparse.BooleanOptionalAction,
                   help="lowercase the text first (default: on for dinos, off otherwise)")
    g.add_argument("--dtype", choices=["float32", "float64"], help="floating-point type (default: float32)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to train: cuda runs the same code on an NVIDIA GPU through CuPy (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: mpiexec -n N python -m mpi4py -m nplstm train --distributed ...")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args):
    from .train import config_from, train
    options = dict(corpus=args.corpus, data=args.data, steps=args.steps, time_budget=args.time_budget,
                   seed=args.seed, embed=args.embed, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
                   seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr, clip=args.clip,
                   warmup=args.warmup, eval_every=args.eval_every, sample_every=args.sample_every,
                   checkpoint_every=args.checkpoint_every, optimizer=args.optimizer, schedule=args.schedule,
                   line_mode=args.line_mode, lowercase=args.lowercase, dtype=args.dtype, cell=args.cell)
    cfg = config_from(args.preset, **options)
    out = args.out or f"runs/{args.preset or args.corpus or 'dinos'}"
    if args.resume:
        cfg = {"steps": args.steps, "time_budget": args.time_budget}
    train(cfg, out, resume=args.resume, progress=not args.quiet, distributed=args.distributed, device=args.device)
    return 0


# ---------------------------------------------------------------------------- sample
def _add_sample(sub):
    p = sub.add_parser("sample", help="generate text from a trained checkpoint")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a checkpoint file, or a run's --out folder (its latest checkpoint)")
    p.add_argument("--prime", default=None, help="text to start from (default: a newline)")
    p.add_argument("--length", type=int, default=200, metavar="N", help="characters to generate (default: 200)")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help="softmax temperature (default: 0.8)")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample from the K likeliest only")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    p.add_argument("--num", type=int, default=1, help="line mode: how many samples (default: 1)")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args):
    from .model import sample
    from .train import load_model
    model, vocab, meta = load_model(args.checkpoint)
    line_mode = meta["config"].get("line_mode", False)
    prime = "\n" if args.prime is None else args.prime
    if meta["config"].get("lowercase") and args.prime is not None:
        prime = prime.lower()
    for i in range(args.num):
        text = sample(model, vocab, prime, args.length, args.temperature, args.top_k, seed=args.seed + i,
                      stop_at="\n" if line_mode else None)
        print((prime.lstrip("\n") + text) if args.prime is not None else text)
    return 0


# ---------------------------------------------------------------------------- gradcheck, bench
def _add_gradcheck(sub):
    gc = sub.add_parser("gradcheck", help="check the reference LSTM's gradients against finite differences")
    for flag, default, text in (("--n-x", 3, "input size"), ("--n-a", 5, "hidden size"), ("--n-y", 2, "output classes"),
                                ("--m", 4, "batch size"), ("--T", 6, "time steps"), ("--seed", 0, "random seed")):
        gc.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    gc.set_defaults(func=_cmd_gradcheck)


def _cmd_gradcheck(args):
    from .gradcheck import check_lstm_reference
    report = check_lstm_reference(args.n_x, args.n_a, args.n_y, args.m, args.T, seed=args.seed)
    print(f"Reference LSTM, float64 central differences (n_x={args.n_x}, n_a={args.n_a}, "
          f"n_y={args.n_y}, m={args.m}, T_x={args.T}, seed={args.seed})")
    print(report)
    return 0 if report.ok else 1


def _add_export(sub):
    p = sub.add_parser("export", help="export a trained char model to ONNX or a PyTorch-named safetensors file")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint file or a run folder")
    p.add_argument("--to", required=True, metavar="FILE",
                   help="*.onnx (a whole-model ONNX graph: tokens -> logits) or *.safetensors "
                        "(weights under PyTorch module names: embedding.*, lstm.*, head.*)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args):
    from . import interop
    from .train import load_model
    model, _, _ = load_model(args.checkpoint)
    if args.to.endswith(".onnx"):
        interop.export_onnx(model, args.to)
    elif args.to.endswith(".safetensors"):
        interop.save_torch_state_dict(model, args.to)
    else:
        raise ValueError(f"--to must end in .onnx or .safetensors, got {args.to!r}")
    print(f"wrote {args.to}")
    return 0


def _add_inspect(sub):
    p = sub.add_parser("inspect", help="gates and cell states of a trained LSTM char model, as a PNG and an HTML page")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint file or a run folder")
    p.add_argument("--text", required=True, help="the text to read (characters of the model's vocabulary)")
    p.add_argument("--out", default=".", metavar="DIR", help="where to write inspect.png and inspect.html (default: .)")
    p.add_argument("--cells", type=int, default=16, help="cells in the heatmap, the most active first (default: 16)")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args):
    from pathlib import Path

    from . import introspect
    from .train import load_model
    model, vocab, meta = load_model(args.checkpoint)
    if model.config.cell != "lstm":
        raise ValueError(f"inspect reads LSTM gates; this checkpoint's cell is {model.config.cell}")
    text = args.text.lower() if meta["config"].get("lowercase") else args.text
    ids = vocab.encode(text)
    model.recurrent.dropout = 0.0                         # read the model as it runs at inference
    _, _, (_, cache, _) = model.forward(ids[:, None], train=True)
    acts = introspect.activations(model.recurrent, cache)
    ranking = introspect.rank_cells(acts, text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    last = f"l{model.config.layers - 1}"
    introspect.heatmap_png(acts, text, out / "inspect.png", key=last, cells=args.cells)
    from ._io import atomic_write
    atomic_write(out / "inspect.html", introspect.html_page(acts, text, ranking).encode("utf-8"))
    for key, sat in introspect.saturation(acts).items():
        print(f"{key} saturation (<0.1 / >0.9): " + ", ".join(f"{g} {lo:.0%}/{hi:.0%}" for g, (lo, hi) in sat.items()))
    for feature, rows in ranking.items():
        print(f"{feature}: " + ", ".join(f"{k} cell {u} (r = {c:+.2f})" for k, u, c in rows[:3]))
    print(f"wrote {out / 'inspect.png'} and {out / 'inspect.html'}")
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="time nplstm.LSTM against torch.nn.LSTM (needs torch)", add_help=False)
    p.set_defaults(func=None)


def build_parser():
    parser = argparse.ArgumentParser(prog="nplstm", description="LSTM networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"nplstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_sample, _add_gradcheck, _add_export, _add_inspect, _add_bench):
        add(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:                             # its own parser: nplstm bench --help
        from .bench import main as bench_main
        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .checkpoint import CheckpointError
    from .data import DataError
    from .train import TrainingDiverged
    if os.environ.get("NPLSTM_DEBUG"):                    # full tracebacks, for bug reports
        return args.func(args)
    try:
        return args.func(args)
    except (DataError, CheckpointError, TrainingDiverged) as err:
        print(f"nplstm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:
        hint = "" if "nplstm[" in str(err) else f"; {APP_HINT}"   # the message may name its own extra
        print(f"nplstm {args.command}: error: {err}{hint}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as err:
        print(f"nplstm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:                                # disk full, read-only or missing folder, ...
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"nplstm {args.command}: error: cannot read or write a file{where}: {err.strerror or err}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
