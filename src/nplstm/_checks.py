"""Argument checks shared by every public entry point.

Each check names the argument and says what was expected and what arrived, so that a
wrong call fails at the boundary with a readable message instead of deep inside NumPy.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(name, value, ndim=None):
    """Return ``value`` as a float32/float64 ndarray of rank ``ndim`` (no copy, no upcast)."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a float32 or float64 array, got {type(value).__name__}") from err
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {arr.ndim}-D array of shape {arr.shape}")
    return arr


def check_shape(name, arr, expected, legend=""):
    """Require ``arr.shape == expected``; ``None`` in ``expected`` matches any size."""
    ok = arr.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want}{legend}, got {arr.shape}")


def check_nonempty(name, arr, axes_names):
    """Reject zero-sized axes, naming the axis (e.g. the batch m or the time T_x)."""
    for size, axis_name in zip(arr.shape, axes_names):
        if axis_name and size == 0:
            raise ValueError(f"{name} has an empty {axis_name} axis (shape {arr.shape}); need at least one")


def same_dtype(named_arrays):
    """All arrays must share one float dtype: float32 stays float32, and nothing is mixed silently."""
    items = list(named_arrays.items())
    first_name, first = items[0]
    for name, arr in items[1:]:
        if arr.dtype != first.dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {first_name} has {first.dtype}; "
                "pass every array in one float dtype (float32 or float64)")
    return first.dtype


def finite(name, arr):
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")


def positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
