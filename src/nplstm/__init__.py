"""nplstm: LSTM networks in NumPy, with gradients you can check.

- ``nplstm.reference``: the course notebook's API (x is (n_x, m, T_x)), with correct BPTT.
- ``nplstm.gradcheck``: central-difference gradient checking for any explicit backward.
"""
from . import gradcheck, reference, rnn_utils

__version__ = "0.1.0"
__all__ = ["gradcheck", "reference", "rnn_utils", "__version__"]
