"""Plot validation loss against wall-clock time for runs' metrics.csv files, and print a summary.

    python benchmarks/plot_shakespeare.py runs/shakespeare-nplstm runs/shakespeare-torch [--out FILE.png]
"""
import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="benchmarks/shakespeare_val_loss.png")
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in args.runs:
        rows = list(csv.DictReader(open(Path(run) / "metrics.csv")))
        pts = [(float(r["elapsed_s"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
        ax.plot(*zip(*pts), marker="o", markersize=3, label=Path(run).name)
        last = rows[-1]
        print(f"{Path(run).name}: {last['step']} steps in {float(last['elapsed_s']):.0f} s, "
              f"final val {pts[-1][1]:.4f}, best val {min(p[1] for p in pts):.4f}, {last['chars_per_s']} chars/s")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("validation loss (nats / character)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
