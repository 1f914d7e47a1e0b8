"""Argument checks shared by every public entry point.

Each check names the argument and says what was expected and what arrived, so that a
wrong call fails at the boundary with a readable message instead of deep inside NumPy.
"""
import numbers

import numpy as np

from . import _xp

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(name, value, ndim=None):
    """Return ``value`` as a float32/float64 array of rank ``ndim`` (no copy, no upcast, no device change)."""
    try:
        arr = _xp.as_array(value)
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
    if arr.size:
        return
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


def same_device(name, arr, device):
    """Arrays are not moved between devices behind the caller's back (a copy per call would hide the cost)."""
    where = _xp.device_of(arr)
    if where != device:
        raise ValueError(f"{name} is on device {where!r} but the layer's weights are on {device!r}; "
                         f"move it with nplstm.to_device({name}, {device!r}) or the layer with .to({where!r})")


def float_array_on(name, value, device, dtype):
    """A layer's float input: a float32/float64 array already on ``device``, cast once to ``dtype``."""
    arr = float_array(name, value)
    same_device(name, arr, device)
    return arr if arr.dtype == dtype else arr.astype(dtype)   # the other float dtype: cast once, here


def finite(name, arr):
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")


def positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def layer_dtype(dtype):
    """A layer's dtype argument: "float32"/"float64" (or the numpy dtypes), anything else a TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from err
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def sequence_caches(caches, da, producer):
    """Check a reference API's ``(list_of_caches, x)`` and the incoming ``da`` (n_a, m, T_x).

    Returns ``(step_caches, x, da)``; ``producer`` names the function that made the caches.
    """
    if not isinstance(caches, tuple) or len(caches) != 2 or not isinstance(caches[0], list):
        raise TypeError(f"caches must be the (list_of_caches, x) tuple returned by {producer}, "
                        f"got {type(caches).__name__}")
    step_caches, x = caches
    n_x, m, T_x = x.shape
    n_a = step_caches[0][0].shape[0]
    da = float_array("da", da, ndim=3)
    check_shape("da", da, (n_a, m, T_x), f" = (n_a, m, T_x) for n_a={n_a}, m={m}, T_x={T_x}")
    return step_caches, x, da


def parameter_arrays(parameters, keys):
    """The reference API's parameter dict: every key present, each a 2-D float array.

    Returns {"parameters['K']": array} for the messages of later shape checks.
    """
    from collections.abc import Mapping
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict, got {type(parameters).__name__}")
    for key in keys:
        if key not in parameters:
            raise ValueError(f"parameters is missing key {key!r}; expected keys {', '.join(keys)}")
    return {f"parameters[{k!r}]": float_array(f"parameters[{k!r}]", parameters[k], ndim=2) for k in keys}
