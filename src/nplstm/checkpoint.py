"""Checkpoints: one safetensors file of arrays, with JSON metadata in its header.

- Arrays: model weights (``model.*``), optimizer state (``optim.*``), carried state (``state.*``).
- Metadata (``__metadata__["nplstm"]``, JSON): format version, step, config, vocabulary,
  optimizer step count, RNG states, metrics history, and a SHA-256 checksum of the arrays.
- Written atomically: temp file in the same folder, fsync, rename, fsync of the folder. A
  crash leaves either the old checkpoint or the new one, never a torn file.
- Read without pickle, ever. ``.pt``/``.pth``/``.pkl`` files are refused with a hint.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from ._io import atomic_write

__all__ = ["FORMAT_VERSION", "FILENAME", "CheckpointError", "save", "load", "resolve", "atomic_write"]

FORMAT_VERSION = 1
FILENAME = "checkpoint.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or of another format version."""


def _checksum(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _safetensors():
    try:
        from safetensors import numpy as st
    except ImportError as err:
        raise ImportError("checkpoints need safetensors: pip install 'nplstm[app]'") from err
    return st


def save(path, arrays, meta):
    """Save ``arrays`` (name -> ndarray) and ``meta`` (JSON-able dict) to ``path`` atomically."""
    st = _safetensors()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    meta = {**meta, "format_version": FORMAT_VERSION, "checksum": _checksum(arrays)}
    atomic_write(path, st.save(arrays, metadata={"nplstm": json.dumps(meta)}))


def resolve(path):
    """A checkpoint file, or a run folder meaning the checkpoint in it."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if path.suffix in (".pt", ".pth", ".pkl", ".pickle"):
        raise CheckpointError(f"{path}: nplstm never unpickles files. Convert it once in PyTorch: "
                              "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def load(path):
    """Return ``(arrays, meta)``; raises CheckpointError for anything but an intact checkpoint."""
    st = _safetensors()
    path = resolve(path)
    raw = path.read_bytes()
    try:
        arrays = st.load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
        meta = json.loads(header["__metadata__"]["nplstm"])
    except Exception as err:                              # any parser failure means a damaged file
        raise CheckpointError(f"{path} is not a readable nplstm checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        got = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} has format version {got!r}; this nplstm reads version {FORMAT_VERSION}")
    if meta.get("checksum") != _checksum(arrays):
        raise CheckpointError(f"{path} is corrupt: its arrays do not match the stored checksum")
    return arrays, meta
