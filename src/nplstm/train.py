"""Training a character-level model: config, presets, the loop, evaluation and checkpoints.

The loop is flat and numbered. Everything a resumed run needs is in the checkpoint (weights,
optimizer state, carried (h, c), the dropout generator, step and metrics), and every batch is
a pure function of (data, seed, step): a run killed at any moment and resumed with
``--resume`` ends with the same weights as one that was never interrupted.
"""
import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import _xp
from . import checkpoint as ckpt
from . import distributed as dist_mod
from .data import LineBatches, StreamBatches, Vocab, load_corpus, read_text, split_lines, split_stream
from .losses import softmax_cross_entropy
from .model import CharModel, ModelConfig, sample
from .optim import OPTIMIZERS, clip_grad_norm, lr_schedule

__all__ = ["TrainConfig", "PRESETS", "TrainingDiverged", "train", "load_model"]


@dataclass
class TrainConfig:
    corpus: str = "dinos"             # a bundled corpus, unless data is given
    data: str | None = None           # path of a UTF-8 text file
    line_mode: bool = True            # one line per sequence (names) instead of a TBPTT stream
    lowercase: bool = True
    embed: int = 32
    hidden: int = 96
    layers: int = 1
    dropout: float = 0.0
    cell: str = "lstm"                # "lstm", "gru" or "rnn"
    seq_len: int = 64                 # stream mode: characters per chunk
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9             # SGD only
    clip: float = 5.0                 # global gradient-norm clip; 0 disables
    schedule: str = "cosine"
    warmup: int = 50
    steps: int = 1200
    time_budget: float | None = None  # seconds; stop early (and checkpoint) when spent
    eval_every: int = 200
    eval_chars: int = 50_000          # stream mode: cap on validation characters per evaluation
    sample_every: int = 400
    sample_length: int = 200
    checkpoint_every: int = 200
    val_fraction: float = 0.1
    seed: int = 0
    dtype: str = "float32"


PRESETS = {
    "dinos": {},                      # the defaults: well under a minute on 2 cores
    "shakespeare": dict(corpus="shakespeare", line_mode=False, lowercase=False, embed=64, hidden=256, layers=2,
                        seq_len=64, batch_size=32, lr=3e-3, clip=5.0, steps=5000, eval_every=250,
                        eval_chars=20_000, sample_every=500, checkpoint_every=250, warmup=100),
    "tiny": dict(hidden=32, embed=16, steps=60, eval_every=20, sample_every=30, checkpoint_every=20,
                 sample_length=40),
}


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf or exploded; the message says at which step and suggests a fix."""


# ---------------------------------------------------------------------------- data
def prepare_data(cfg):
    """Text -> (vocab, train batches, val batches, a one-line description of the split)."""
    text = read_text(cfg.data) if cfg.data else load_corpus(cfg.corpus)
    if cfg.lowercase:
        text = text.lower()
    vocab = Vocab.from_text(text)
    if cfg.line_mode:
        train_lines, val_lines = split_lines(text, cfg.val_fraction)
        train = LineBatches(train_lines, vocab, cfg.batch_size, cfg.seed, "training text")
        val = LineBatches(val_lines, vocab, cfg.batch_size, cfg.seed, "validation text")
        split = f"{len(train_lines)} train / {len(val_lines)} val lines"
    else:
        train_text, val_text = split_stream(text, cfg.val_fraction)
        train = StreamBatches(vocab.encode(train_text), cfg.batch_size, cfg.seq_len, "training text")
        val_ids = vocab.encode(val_text)[:cfg.eval_chars + 1]
        val = StreamBatches(val_ids, min(cfg.batch_size, max((len(val_ids) - 1) // (cfg.seq_len + 1), 1)),
                            cfg.seq_len, "validation text")
        split = f"{len(train_text)} train / {len(val_text)} val characters"
    return vocab, train, val, split


def batch_loss(model, batch, state, line_mode, train):
    """Forward one batch (host arrays: they go to the model's device here; the lengths stay on the host).

    Returns (loss, dlogits, new state, cache, tokens)."""
    dev = model.device
    if line_mode:
        x, y, lengths, mask = batch
        n = int(mask.sum())
        logits, state, cache = model.forward(_xp.to_device(x, dev), None, lengths=lengths, train=train)
        mask = _xp.to_device(mask, dev)
    else:
        (x, y), mask = batch, None
        n = y.size
        logits, state, cache = model.forward(_xp.to_device(x, dev), state, train=train)
    loss, dlogits = softmax_cross_entropy(logits, _xp.to_device(y, dev), mask)
    return loss, dlogits, state, cache, n


def evaluate(model, batches, line_mode):
    """Mean validation loss per character; stream mode carries the state across chunks."""
    total, count, state = 0.0, 0, None
    for batch in batches:
        loss, _, state, _, n = batch_loss(model, batch, state, line_mode, train=False)
        total, count = total + loss * n, count + n
    return total / count


# ---------------------------------------------------------------------------- checkpoints
def _save(out, model, opt, state, step, cfg, vocab, history, rngs):
    arrays = {f"model.{k}": v for k, v in model.params.items()}
    arrays.update({f"optim.{k}": v for k, v in opt.state.items()})
    for name, part in zip("hc", state or ()):
        arrays[f"state.{name}"] = part
    arrays = {k: _xp.to_host(v) for k, v in arrays.items()}   # checkpoints hold host arrays, whatever the device
    meta = dict(step=step, config=asdict(cfg), model=model.config_dict(), vocab="".join(vocab.chars),
                optim_t=opt.t, dropout_rng=rngs[0], history=history, ranks=len(rngs))
    if len(rngs) > 1:
        meta["dropout_rngs"] = rngs                      # one generator per MPI rank
    ckpt.save(Path(out) / ckpt.FILENAME, arrays, meta)
    _write_metrics(out, history)


_MAX_SIZE = 1 << 20                                      # no real char model has a dimension near this


def check_model_meta(model_meta, arrays, path):
    """Validate a checkpoint's model description against its arrays *before* building anything.

    A crafted header cannot make nplstm allocate more than the file already holds: every size
    must be a sane int, and the implied weight shapes must be the ones stored in the file.
    """
    fail = lambda why: ckpt.CheckpointError(f"{path}: checkpoint metadata is invalid: {why}")   # noqa: E731
    if not isinstance(model_meta, dict):
        raise fail("'model' is not a mapping")
    known = {f.name for f in fields(ModelConfig)}
    if set(model_meta) - known:
        raise fail(f"unknown model fields {sorted(set(model_meta) - known)}")
    for key in ("vocab_size", "embed", "hidden", "layers"):
        v = model_meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= _MAX_SIZE:
            raise fail(f"model.{key} must be an int in [1, {_MAX_SIZE}], got {v!r}")
    cell, dtype = model_meta.get("cell", "lstm"), model_meta.get("dtype", "float32")
    if cell not in ("lstm", "gru", "rnn") or dtype not in ("float32", "float64"):
        raise fail(f"unsupported cell {cell!r} or dtype {dtype!r}")
    if not isinstance(model_meta.get("dropout", 0.0), (int, float)) or not 0 <= model_meta.get("dropout", 0.0) < 1:
        raise fail(f"model.dropout must be in [0, 1), got {model_meta.get('dropout')!r}")
    V, E, H, L = (model_meta[k] for k in ("vocab_size", "embed", "hidden", "layers"))
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    want = {"model.embedding.weight": (V, E), "model.head.weight": (V, H), f"model.{cell}.weight_hh_l{L - 1}": (G * H, H)}
    for key, shape in want.items():
        got = arrays.get(key)
        if got is None or got.shape != shape:
            raise fail(f"{key} is {None if got is None else got.shape}, the metadata implies {shape}")
    if f"model.{cell}.weight_ih_l{L}" in arrays:
        raise fail(f"the file holds more layers than model.layers={L}")


def load_model(path):
    """Load a checkpoint for inference: returns (model, vocab, meta)."""
    arrays, meta = ckpt.load(path)
    check_model_meta(meta.get("model"), arrays, path)
    try:
        model = CharModel(ModelConfig(**meta["model"]))
        model.load_params(_section(arrays, "model."))
        vocab = Vocab(tuple(meta["vocab"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ckpt.CheckpointError(f"{path}: checkpoint contents do not describe a char model ({err})") from None
    return model, vocab, meta


def _section(arrays, prefix):
    """The checkpoint arrays under ``prefix`` ("model.", "optim."), with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _write_metrics(out, history):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "train_loss", "val_loss", "grad_norm", "lr", "chars_per_s",
                                             "elapsed_s"])
    writer.writeheader()
    writer.writerows(history)
    ckpt.atomic_write(Path(out) / "metrics.csv", buf.getvalue().encode())


def plot_losses(out, history):
    """loss.png: train and validation loss against steps (skipped without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = [(h["step"], h[key]) for h in history if h.get(key) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=label, marker="o" if key == "val_loss" else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / character)")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    ckpt.atomic_write(Path(out) / "loss.png", buf.getvalue())
    return Path(out) / "loss.png"


# ---------------------------------------------------------------------------- the loop
def train(cfg, out, resume=False, log=print, progress=True, distributed=False, device="cpu"):
    """Train as ``cfg`` says, writing checkpoint, metrics.csv and loss.png into ``out``; returns the model.

    With ``resume``, the configuration comes from the checkpoint in ``out``; only ``steps`` and
    ``time_budget`` are taken from ``cfg`` (a dict of those, or a TrainConfig). With
    ``distributed``, this is one rank of an MPI job (see ``nplstm.distributed``): rank 0 alone
    logs and writes files. ``device`` ("cpu" or "cuda") is where the model trains; checkpoints do
    not depend on it, so a run may resume on another device.
    """
    _xp.module_for(device)                                # an unknown device or a missing CuPy fails first
    if distributed and device != "cpu":
        raise ValueError(f"device={device!r} with distributed=True is not supported: the MPI Allreduce here "
                         "moves host buffers; train on the GPU with one process")
    dist = dist_mod.make(distributed)
    if dist.rank != 0:
        log, progress = (lambda *args: None), None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # 0. data, model, optimizer; or all of them from the checkpoint
    step, history, state = 0, [], None
    if resume:
        arrays, meta = ckpt.load(out)
        extend = cfg if isinstance(cfg, dict) else {"steps": cfg.steps, "time_budget": cfg.time_budget}
        check_model_meta(meta.get("model"), arrays, out)
        try:
            cfg = TrainConfig(**{**meta["config"], **{k: v for k, v in extend.items() if v is not None}})
        except TypeError as err:
            raise ckpt.CheckpointError(f"{out}: checkpoint metadata is invalid: {err}") from None
        if {k: getattr(cfg, k) for k in ("embed", "hidden", "layers", "cell", "dtype")} != \
                {k: meta["model"].get(k, v) for k, v in (("embed", 0), ("hidden", 0), ("layers", 0),
                                                          ("cell", "lstm"), ("dtype", "float32"))}:
            raise ckpt.CheckpointError(f"{out}: checkpoint metadata is invalid: config and model sizes disagree")
    vocab, train_batches, val_batches, split = prepare_data(cfg)
    dist.check_same("configuration or vocabulary", json.dumps(asdict(cfg), sort_keys=True) + "".join(vocab.chars))
    rows = dist.rows(cfg.batch_size)                      # this rank's shard of every batch
    model = CharModel(ModelConfig(len(vocab), cfg.embed, cfg.hidden, cfg.layers, cfg.dropout, cfg.dtype, cfg.cell),
                      cfg.seed, device=device)
    if dist.size > 1:
        model.recurrent.rng = np.random.default_rng([cfg.seed, dist.rank])   # dropout differs by rank
    opt = OPTIMIZERS[cfg.optimizer](lr=cfg.lr, **({"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}))
    if resume:
        if "".join(vocab.chars) != meta["vocab"]:
            raise ckpt.CheckpointError("the checkpoint's vocabulary differs from the data's; resume on the same data")
        if meta.get("ranks", 1) != dist.size:
            raise ckpt.CheckpointError(f"the checkpoint was written by a run of {meta.get('ranks', 1)} rank(s); "
                                       f"resume it with the same number, not {dist.size}")
        model.load_params(_section(arrays, "model."))
        opt.state = {k: _xp.to_device(v.copy(), device) for k, v in _section(arrays, "optim.").items()}
        opt.t, step, history = meta["optim_t"], meta["step"], meta["history"]
        model.recurrent.rng.bit_generator.state = meta.get("dropout_rngs", [meta["dropout_rng"]])[dist.rank]
        if "state.h" in arrays:
            state = tuple(_xp.to_device(arrays[f"state.{k}"][:, rows].copy(), device)
                          for k in "hc" if f"state.{k}" in arrays)
        log(f"resumed from {out / ckpt.FILENAME} at step {step}")
    dist.bcast_(model.params)                             # every rank starts from rank 0's weights
    start = step
    n_params = sum(v.size for v in model.params.values())
    log(f"data: {cfg.data or cfg.corpus} ({'lines' if cfg.line_mode else 'stream'} mode), vocab {len(vocab)}, "
        f"{split}; model: {n_params:,} parameters")
    bar = _progress(progress, start, cfg.steps)
    t0, chars, loss = time.perf_counter(), 0, float("nan")
    while step < cfg.steps:
        # 1. the batch for this step, this rank's rows of it (a new pass over the streams starts from zero)
        batch, n_global = _shard(train_batches.get(step), rows, cfg.line_mode)
        if not cfg.line_mode and train_batches.chunk_index(step) == 0:
            state = None
        # 2. forward, loss, backward; the carried state is a constant, so gradients stop at the chunk boundary
        loss, dlogits, new_state, cache, n = batch_loss(model, batch, state, cfg.line_mode, train=True)
        if n != n_global:                                 # weight this shard's mean by its share of tokens
            loss, dlogits = loss * n / n_global, dlogits * (n / n_global)
        grads = model.backward(dlogits, cache)
        over = float(cfg.time_budget is not None and time.perf_counter() - t0 >= cfg.time_budget)
        loss, over = dist.allreduce_(grads, [loss, over])  # sum over ranks: the global batch's gradient
        _guard(loss, step, len(vocab))
        # 3. clip and update
        try:
            norm = clip_grad_norm(grads, cfg.clip)
        except FloatingPointError as err:
            raise TrainingDiverged(f"{err} (step {step + 1}); lower --lr or keep --clip on") from None
        lr = lr_schedule(step, cfg.lr, cfg.steps, cfg.warmup, cfg.schedule)
        opt.step(model.params, grads, lr)
        state = None if cfg.line_mode else new_state
        step += 1
        # 4. log; every so often evaluate, sample and checkpoint
        chars += n_global
        elapsed = time.perf_counter() - t0
        row = dict(step=step, train_loss=round(loss, 5), val_loss="", grad_norm=round(norm, 4), lr=f"{lr:.3g}",
                   chars_per_s=round(chars / max(elapsed, 1e-9)), elapsed_s=round(elapsed, 2))
        done = step == cfg.steps or over > 0
        if (step % cfg.eval_every == 0 or done) and dist.rank == 0:
            row["val_loss"] = round(evaluate(model, val_batches, cfg.line_mode), 5)
            bar.write(f"step {step}: train {loss:.4f}, val {row['val_loss']:.4f}, grad norm {norm:.3f}")
        history.append(row)
        if (step % cfg.sample_every == 0 or done) and dist.rank == 0:
            bar.write("sample: " + _sample_text(model, vocab, cfg, step))
        if step % cfg.checkpoint_every == 0 or done:       # the gathers are collective: every rank takes part
            full = None if state is None else tuple(dist.gather_rows(part) for part in state)
            rngs = dist.gather_states(model.recurrent.rng.bit_generator.state)
            if dist.rank == 0:
                _save(out, model, opt, full, step, cfg, vocab, history, rngs)
        bar.set_postfix(loss=f"{loss:.3f}", chars_s=row["chars_per_s"], refresh=False)
        bar.update(1)
        if done:
            break
    bar.close()
    if step == start:
        log(f"nothing to do: the checkpoint is at step {start} of {cfg.steps}")
    dist.assert_identical(model.params)
    if dist.size > 1:
        total, steps_run = time.perf_counter() - t0, max(step - start, 1)
        log(f"weights bit-identical on all {dist.size} ranks; Allreduce {dist.allreduce_seconds / steps_run * 1e3:.2f} "
            f"ms/step, {100 * dist.allreduce_seconds / total:.1f}% of training time "
            f"({sum(v.nbytes for v in model.params.values()) / 2**20:.2f} MiB of gradients per step)")
    plot = plot_losses(out, history) if history and dist.rank == 0 else None
    log(f"done: step {step}, train loss {loss:.4f}; wrote {out / ckpt.FILENAME}, {out / 'metrics.csv'}"
        + (f", {plot}" if plot else ""))
    return model


def _shard(batch, rows, line_mode):
    """This rank's rows of a global batch, and the global batch's token count."""
    if line_mode:
        x, y, lengths, mask = batch
        return (x[:, rows], y[:, rows], lengths[rows], mask[:, rows]), int(mask.sum())
    x, y = batch
    return (np.ascontiguousarray(x[:, rows]), np.ascontiguousarray(y[:, rows])), y.size


def _guard(loss, step, vocab_size):
    if not math.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss} at step {step + 1}; lower --lr or keep --clip on")
    if loss > 4 * math.log(vocab_size) + 5:
        raise TrainingDiverged(f"loss exploded to {loss:.2f} at step {step + 1} (uniform guessing gives "
                               f"{math.log(vocab_size):.2f}); lower --lr or --clip")


def _sample_text(model, vocab, cfg, step):
    prime = "\n" if cfg.line_mode or "\n" in vocab.chars else vocab.chars[0]
    stop = "\n" if cfg.line_mode else None
    text = sample(model, vocab, prime, cfg.sample_length, temperature=0.8, seed=cfg.seed + step, stop_at=stop)
    return text if cfg.line_mode else "\n" + text


class _PlainBar:
    """Stand-in for tqdm when it is not installed or progress is off."""

    def write(self, s):
        print(s, flush=True)

    def set_postfix(self, **kw):
        pass

    def update(self, n):
        pass

    def close(self):
        pass


class _SilentBar(_PlainBar):
    """Ranks other than 0 of an MPI job print nothing."""

    def write(self, s):
        pass


def _progress(enabled, start, total):
    if enabled is None:
        return _SilentBar()
    if not enabled:
        return _PlainBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar()
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


CORPUS_DEFAULTS = {"dinos": dict(line_mode=True, lowercase=True),        # the course's 27-character names
                   "shakespeare": dict(line_mode=False, lowercase=False),
                   None: dict(line_mode=False, lowercase=False)}          # --data: a stream, as written


def config_from(preset=None, **overrides):
    """A TrainConfig: the preset, then the corpus' defaults, then explicit overrides (None = not given)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown training option {unknown[0]!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = dict(PRESETS[preset or "dinos"])
    values.update(given)
    corpus = None if values.get("data") else values.get("corpus", TrainConfig.corpus)
    for k, v in CORPUS_DEFAULTS.get(corpus, CORPUS_DEFAULTS[None]).items():
        if k not in given and k not in PRESETS[preset or "dinos"]:
            values[k] = v
    return TrainConfig(**values)
