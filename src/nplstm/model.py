"""A character-level language model: Embedding -> LSTM (or GRU, RNN) stack -> Linear, explicit backward.

Parameter names (``CharModel.params``) are the PyTorch module names of the same model::

    embedding.weight (V, E)    <cell>.<torch.nn.LSTM/GRU/RNN keys>    head.weight (V, H), head.bias (V,)

where <cell> is "lstm", "gru" or "rnn". The recurrent state is a tuple: (h, c) for the LSTM,
(h,) for GRU and RNN.
"""
from dataclasses import asdict, dataclass

import numpy as np

from . import _xp
from .layers import GRU, LSTM, RNN, Embedding, Linear
from .losses import log_softmax

__all__ = ["ModelConfig", "CharModel", "sample"]


@dataclass
class ModelConfig:
    vocab_size: int
    embed: int = 32
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.0
    dtype: str = "float32"
    cell: str = "lstm"                 # "lstm", "gru" or "rnn" (tanh)


CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


class CharModel:
    """The layers of ``config``, on ``device`` ("cpu", or "cuda" through CuPy; ``to`` moves them).

    Token ids, targets and masks passed in must live on the model's device (``nplstm.to_device``).
    """

    def __init__(self, config, seed=0, device="cpu"):
        self.config = config
        seeds = np.random.SeedSequence(seed).spawn(3)
        c = config
        self.embedding = Embedding(c.vocab_size, c.embed, dtype=c.dtype, seed=seeds[0])
        if c.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {c.cell!r}")
        self.recurrent = CELLS[c.cell](c.embed, c.hidden, c.layers, dropout=c.dropout, dtype=c.dtype, seed=seeds[1])
        self.head = Linear(c.hidden, c.vocab_size, dtype=c.dtype, seed=seeds[2])
        self.layers = {"embedding": self.embedding, c.cell: self.recurrent, "head": self.head}
        self.to(device)

    @property
    def device(self):
        return self.embedding.device

    def to(self, device):
        for layer in self.layers.values():
            layer.to(device)
        return self

    @property
    def params(self):
        """Every weight, by PyTorch-style name; the arrays are the layers' own (update them in place)."""
        return {f"{name}.{k}": v for name, layer in self.layers.items() for k, v in layer.params.items()}

    def load_params(self, params):
        for name, layer in self.layers.items():
            own = {k.split(".", 1)[1]: v for k, v in params.items() if k.split(".", 1)[0] == name}
            if layer is self.recurrent:
                layer.load_state_dict(own)
            else:
                missing = sorted(set(layer.params) - set(own))
                if missing:
                    raise ValueError(f"missing {name}.{missing[0]}")
                for k in layer.params:
                    if own[k].shape != layer.params[k].shape:
                        raise ValueError(f"{name}.{k} has shape {own[k].shape}, expected {layer.params[k].shape}")
                    layer.params[k] = _xp.to_device(_xp.to_host(own[k]).astype(layer.dtype), layer.device)

    def forward(self, x, state=None, lengths=None, train=False):
        """x (T, B) token ids -> logits (T, B, V), the final state tuple, and the cache for backward."""
        emb, e_cache = self.embedding.forward(x)                               # (T, B, E)
        if self.config.cell == "lstm":
            out, state, l_cache = self.recurrent.forward(emb, state, lengths=lengths, train=train)   # (T, B, H)
        else:
            out, h_n, l_cache = self.recurrent.forward(emb, None if state is None else state[0], lengths, train)
            state = (h_n,)
        logits, h_cache = self.head.forward(out)                               # (T, B, V)
        return logits, tuple(state), (e_cache, l_cache, h_cache)

    def backward(self, dlogits, cache):
        """Gradients of every parameter, by name; the incoming state gets none (truncated BPTT)."""
        e_cache, l_cache, h_cache = cache
        d_out, g_head = self.head.backward(dlogits, h_cache)
        d_emb, _, g_rec = self.recurrent.backward(d_out, l_cache)
        g_emb = self.embedding.backward(d_emb, e_cache)
        cell = self.config.cell
        return {**{f"embedding.{k}": v for k, v in g_emb.items()}, **{f"{cell}.{k}": v for k, v in g_rec.items()},
                **{f"head.{k}": v for k, v in g_head.items()}}

    def config_dict(self):
        return asdict(self.config)


def sample(model, vocab, prime="\n", length=200, temperature=1.0, top_k=None, seed=0, stop_at="\n"):
    """Generate ``length`` characters after ``prime`` (stopping early at ``stop_at`` if given).

    Deterministic for a given seed: the draws come from ``numpy.random.default_rng(seed)``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not prime:
        raise ValueError("prime must hold at least one character")
    rng = np.random.default_rng(seed)
    ids = vocab.encode(prime)
    logits, state, _ = model.forward(_xp.to_device(ids[:, None], model.device))   # read the prime
    out = []
    for _ in range(length):
        z = _xp.to_host(logits[-1, 0]).astype(np.float64) / temperature
        if top_k is not None and top_k < z.size:
            z[z < np.partition(z, -top_k)[-top_k]] = -np.inf                  # keep the k largest
        p = np.exp(log_softmax(z))
        nxt = min(int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right")), len(p) - 1)
        char = vocab.chars[nxt]
        if stop_at is not None and char == stop_at:
            break
        out.append(char)
        logits, state, _ = model.forward(_xp.to_device(np.array([[nxt]]), model.device), state)
    return "".join(out)
