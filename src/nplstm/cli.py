"""The ``nplstm`` command line."""
import argparse
import sys

from . import __version__


def _cmd_gradcheck(args):
    from .gradcheck import check_lstm_reference
    report = check_lstm_reference(args.n_x, args.n_a, args.n_y, args.m, args.T, seed=args.seed)
    print(f"Reference LSTM, float64 central differences (n_x={args.n_x}, n_a={args.n_a}, "
          f"n_y={args.n_y}, m={args.m}, T_x={args.T}, seed={args.seed})")
    print(report)
    return 0 if report.ok else 1


def build_parser():
    parser = argparse.ArgumentParser(prog="nplstm", description="LSTM networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"nplstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gc = sub.add_parser("gradcheck", help="check the reference LSTM's gradients against finite differences")
    for flag, default, text in (("--n-x", 3, "input size"), ("--n-a", 5, "hidden size"), ("--n-y", 2, "output classes"),
                                ("--m", 4, "batch size"), ("--T", 6, "time steps"), ("--seed", 0, "random seed")):
        gc.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    gc.set_defaults(func=_cmd_gradcheck)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
