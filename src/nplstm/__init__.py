"""nplstm: LSTM networks in NumPy, with gradients you can check.

- ``nplstm.LSTM``, ``nplstm.GRU``, ``nplstm.RNN``: torch.nn's interfaces and weights on one fused
  NumPy engine (``nplstm.engine``), with explicit ``backward`` and caches instead of autograd.
- ``nplstm.reference``: the course notebook's API (x is (n_x, m, T_x)), LSTM and basic RNN,
  with correct backpropagation through time.
- ``nplstm.gradcheck``: central-difference gradient checking for any explicit backward.
- ``nplstm.train``, ``nplstm.model``, ``nplstm.data``, ``nplstm.optim``, ``nplstm.losses``: the
  character-model toolkit behind ``nplstm train`` / ``nplstm sample``.
- ``nplstm.interop`` (PyTorch, Keras, ONNX), ``nplstm.introspect`` (gates and interpretable
  cells), ``nplstm.distributed`` (data-parallel training over MPI).
- ``device="cuda"`` (or ``.to("cuda")``) on any layer or ``CharModel`` runs the same code on an
  NVIDIA GPU through CuPy (``pip install "nplstm[cuda]"``); ``nplstm.to_device`` / ``to_host``
  move arrays.
- ``nplstm.set_num_threads(n)``: the compiled float32 LSTM splits a batch into row blocks, one
  thread each (``nplstm._rowblocks``); 1 by default.
"""
from . import engine, gradcheck, reference, rnn_utils
from ._rowblocks import get_num_threads, set_num_threads
from ._xp import to_device, to_host
from .layers import GRU, LSTM, RNN, Embedding, Linear

__version__ = "0.1.0"
__all__ = ["LSTM", "GRU", "RNN", "Embedding", "Linear", "engine", "gradcheck", "reference", "rnn_utils",
           "to_device", "to_host", "set_num_threads", "get_num_threads", "__version__"]
