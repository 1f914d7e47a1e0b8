"""Corpora, the character vocabulary, and deterministic batches.

Every batch is a pure function of (data, seed, step), so a run resumed from a checkpoint
reads exactly the batches the uninterrupted run would have read.

Two modes:
- stream (truncated BPTT): batch row b reads its own contiguous stretch of the text, chunk
  after chunk; the caller carries (h, c) from one chunk to the next.
- lines: one line per sequence (e.g. a dinosaur name), input "\\n" + line, target line + "\\n",
  padded to the longest in the batch and masked by length.
"""
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["CORPORA", "DataError", "read_text", "load_corpus", "Vocab", "StreamBatches", "LineBatches"]

CORPORA = {"dinos": "dinos.txt", "shakespeare": "tinyshakespeare.txt"}   # bundled, in nplstm/corpora/


class DataError(ValueError):
    """Text that cannot be used for training; the message says which file and why."""


def read_text(path):
    """Read a UTF-8 text file, with clear errors for a missing, empty or non-UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(f"{path} is not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start} "
                        f"(line {line}, column {col})") from None
    if not text.strip():
        raise DataError(f"{path} is empty")
    return text


def load_corpus(name):
    """The text of a bundled corpus ("dinos" or "shakespeare")."""
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; bundled corpora: {', '.join(sorted(CORPORA))}")
    return resources.files("nplstm").joinpath("corpora", CORPORA[name]).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Vocab:
    """Characters in sorted (code point) order; id i is chars[i]. Stored in every checkpoint."""
    chars: tuple

    @classmethod
    def from_text(cls, text):
        return cls(tuple(sorted(set(text))))

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise DataError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


class StreamBatches:
    """Truncated-BPTT batches: (x, y) of shape (seq_len, batch_size), row b a contiguous stream."""

    def __init__(self, ids, batch_size, seq_len, what="text"):
        ids = np.asarray(ids)
        self.B, self.T = batch_size, seq_len
        per_row = (len(ids) - 1) // batch_size           # each row needs one extra id for its last target
        self.chunks = per_row // seq_len
        if self.chunks < 1:
            need = batch_size * seq_len + 1
            raise DataError(f"{what} is too short for one batch: {len(ids)} characters, need at least {need} "
                            f"(batch_size={batch_size} x seq_len={seq_len} + 1); lower --batch-size or --seq-len")
        span = self.chunks * seq_len
        self.rows = np.stack([ids[b * per_row: b * per_row + span + 1] for b in range(batch_size)])   # (B, span+1)

    def chunk_index(self, step):
        """Which chunk of the streams ``step`` reads; 0 starts a new pass (and a fresh state)."""
        return step % self.chunks

    def get(self, step):
        k = self.chunk_index(step) * self.T
        x = self.rows[:, k:k + self.T].T                  # (T, B)
        y = self.rows[:, k + 1:k + self.T + 1].T
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def __iter__(self):
        """One pass over every chunk in order (for evaluation)."""
        return (self.get(k) for k in range(self.chunks))


class LineBatches:
    """One line per sequence: x = "\\n" + line, y = line + "\\n", padded, with lengths and mask."""

    def __init__(self, lines, vocab, batch_size, seed, what="text"):
        self.lines = [vocab.encode("\n" + line + "\n") for line in lines if line]
        if len(self.lines) < 1:
            raise DataError(f"{what} has no non-empty line")
        self.B, self.seed = min(batch_size, len(self.lines)), seed
        self.per_epoch = max(len(self.lines) // self.B, 1)

    def _pack(self, seqs):
        lengths = np.array([len(s) - 1 for s in seqs])
        T = int(lengths.max())
        x = np.zeros((T, len(seqs)), np.int64)
        y = np.zeros((T, len(seqs)), np.int64)
        for b, s in enumerate(seqs):
            x[:lengths[b], b], y[:lengths[b], b] = s[:-1], s[1:]
        mask = np.arange(T)[:, None] < lengths[None, :]
        return x, y, lengths, mask

    def get(self, step):
        """Batch ``step``: lines in a fresh shuffled order each epoch, from (seed, epoch)."""
        epoch, k = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.lines))
        return self._pack([self.lines[i] for i in order[k * self.B:(k + 1) * self.B]])

    def __iter__(self):
        """Every line once, in order (for evaluation)."""
        return (self._pack(self.lines[i:i + self.B]) for i in range(0, len(self.lines), self.B))


def split_lines(text, val_fraction, seed=1234):
    """Shuffle the non-empty lines with a fixed seed, then hold out the last val_fraction of them."""
    lines = [line for line in text.splitlines() if line.strip()]
    order = np.random.default_rng(seed).permutation(len(lines))
    n_val = max(1, int(round(len(lines) * val_fraction)))
    if len(lines) - n_val < 1:
        raise DataError(f"need at least 2 non-empty lines for a train/val split, got {len(lines)}")
    shuffled = [lines[i] for i in order]
    return shuffled[:-n_val], shuffled[-n_val:]


def split_stream(text, val_fraction):
    """The first (1 - val_fraction) of the text for training, the rest for validation."""
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]
