"""Layers with explicit forward/backward and params dicts: Embedding, Linear, and the recurrent ones.

The recurrent layers (``LSTM``, ``GRU``, ``RNN``) live in ``nplstm.recurrent``; they are
re-exported here so that every layer is one import away.
"""
import numpy as np

from . import _checks, _xp
from ._checks import layer_dtype as _layer_dtype
from .recurrent import GRU, LSTM, RNN

__all__ = ["LSTM", "GRU", "RNN", "Embedding", "Linear"]


class Embedding(_xp.OnDevice):
    """Lookup table (V, E), torch.nn.Embedding's init N(0, 1). ``forward(idx)`` -> (*idx.shape, E)."""

    def __init__(self, num_embeddings, embedding_dim, dtype="float32", seed=None, device="cpu"):
        V = _checks.positive_int("num_embeddings", num_embeddings)
        E = _checks.positive_int("embedding_dim", embedding_dim)
        self.dtype = _layer_dtype(dtype)
        self.params = {"weight": np.random.default_rng(seed).standard_normal((V, E)).astype(self.dtype)}
        self.to(device)

    def forward(self, idx):
        """Returns ``out, cache``; the cache is the index array."""
        idx = _xp.as_array(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx must be integer token ids, got dtype {idx.dtype}")
        _checks.same_device("idx", idx, self.device)
        V = self.params["weight"].shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= V):
            raise ValueError(f"idx must lie in [0, {V}), got values from {idx.min()} to {idx.max()}")
        return self.params["weight"][idx], idx

    def backward(self, d_out, cache):
        """Returns ``grads`` ({"weight"}): rows of d_out summed into the rows they were read from."""
        W, xp = self.params["weight"], self.xp
        dW = xp.zeros_like(W)
        xp.add.at(dW, cache.ravel(), xp.asarray(d_out, W.dtype).reshape(-1, W.shape[1]))   # repeated ids add up
        return {"weight": dW}


class Linear(_xp.OnDevice):
    """y = x W^T + b over the last axis; torch.nn.Linear's init U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features, out_features, bias=True, dtype="float32", seed=None, device="cpu"):
        n_in = _checks.positive_int("in_features", in_features)
        n_out = _checks.positive_int("out_features", out_features)
        self.dtype = _layer_dtype(dtype)
        rng, bound = np.random.default_rng(seed), 1 / np.sqrt(n_in)
        self.params = {"weight": rng.uniform(-bound, bound, (n_out, n_in)).astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-bound, bound, n_out).astype(self.dtype)
        self.to(device)

    def forward(self, x):
        """Returns ``y, cache`` for x of shape (..., in_features)."""
        W = self.params["weight"]
        x = _checks.float_array_on("x", x, self.device, self.dtype)
        if x.ndim < 1 or x.shape[-1] != W.shape[1]:
            raise ValueError(f"x must have {W.shape[1]} features on its last axis, got shape {x.shape}")
        y = x @ W.T
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, d_out, cache):
        """Returns ``dx, grads``."""
        x, W = cache, self.params["weight"]
        d2 = self.xp.asarray(d_out, W.dtype).reshape(-1, W.shape[0])    # (N, out)
        grads = {"weight": d2.T @ x.reshape(-1, W.shape[1])}        # (out, in)
        if "bias" in self.params:
            grads["bias"] = d2.sum(axis=0)
        return (d2 @ W).reshape(x.shape), grads
