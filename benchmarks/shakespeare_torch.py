"""The Tiny Shakespeare char model in PyTorch, for comparison with `nplstm train --preset shakespeare`.

Same data, split, vocabulary, batches and evaluation (taken from nplstm.data and nplstm.train),
same model (embedding 64, 2-layer LSTM 256, linear head), Adam 3e-3, global-norm clip 5,
constant learning rate, same wall-clock budget. Writes metrics.csv like nplstm's.

    python benchmarks/shakespeare_torch.py --time-budget 600 --out runs/shakespeare-torch
    nplstm train --preset shakespeare --schedule constant --warmup 0 --steps 1000000 \\
        --time-budget 600 --out runs/shakespeare-nplstm --quiet
    python benchmarks/plot_shakespeare.py runs/shakespeare-nplstm runs/shakespeare-torch
"""
import argparse
import csv
import time
from pathlib import Path

import torch

from nplstm.train import config_from, prepare_data


class CharModel(torch.nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(embed, hidden, layers)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x), state)
        return self.head(out), state


def evaluate(model, batches):
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in batches:
            logits, state = model(torch.from_numpy(x), state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
            total, count = total + loss.item() * y.size, count + y.size
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-budget", type=float, default=600)
    ap.add_argument("--out", default="runs/shakespeare-torch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = config_from("shakespeare", seed=args.seed)
    vocab, train_batches, val_batches, split = prepare_data(cfg)
    print(f"vocab {len(vocab)}, {split}")
    model = CharModel(len(vocab), cfg.embed, cfg.hidden, cfg.layers)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, state, step, chars, t0 = [], None, 0, 0, time.perf_counter()
    while True:
        x, y = train_batches.get(step)
        if train_batches.chunk_index(step) == 0:
            state = None
        logits, state = model(torch.from_numpy(x), state)
        state = tuple(s.detach() for s in state)          # truncated BPTT: stop at the chunk boundary
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), torch.from_numpy(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step, chars = step + 1, chars + y.size
        elapsed = time.perf_counter() - t0
        done = elapsed >= args.time_budget
        row = dict(step=step, train_loss=round(loss.item(), 5), val_loss="", grad_norm=round(norm.item(), 4),
                   lr=cfg.lr, chars_per_s=round(chars / elapsed), elapsed_s=round(elapsed, 2))
        if step % cfg.eval_every == 0 or done:
            row["val_loss"] = round(evaluate(model, val_batches), 5)
            print(f"step {step}: train {loss.item():.4f}, val {row['val_loss']:.4f}, {row['chars_per_s']} chars/s, "
                  f"{elapsed:.0f}s", flush=True)
        rows.append(row)
        if done:
            break
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
