"""nplstm: LSTM networks in NumPy, with gradients you can check.

- ``nplstm.LSTM``: torch.nn.LSTM's interface and weights on a fused NumPy engine, with an
  explicit ``backward``.
- ``nplstm.reference``: the course notebook's API (x is (n_x, m, T_x)), with correct BPTT.
- ``nplstm.gradcheck``: central-difference gradient checking for any explicit backward.
"""
from . import engine, gradcheck, reference, rnn_utils
from .layers import GRU, LSTM, RNN

__version__ = "0.1.0"
__all__ = ["LSTM", "GRU", "RNN", "engine", "gradcheck", "reference", "rnn_utils", "__version__"]
