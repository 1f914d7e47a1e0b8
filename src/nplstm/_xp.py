"""Which array module (NumPy or CuPy) an array belongs to, and moving arrays between devices.

The engine, the layers, the losses and the optimizers are written against an array module
``xp`` picked from their inputs, never against ``numpy`` by name, so one code path runs on
the CPU (NumPy) and on an NVIDIA GPU (CuPy, ``pip install "nplstm[cuda]"``).

Why our own ``array_module`` and not ``array_api_compat.array_namespace``: the engine's speed
comes from in-place ufuncs with ``out=`` on preallocated buffers, which NumPy and CuPy share but
the array API standard leaves out; and ``cupy.get_array_module`` would import CuPy (slow, and
absent on most machines) just to learn that an array is a NumPy one. Here CuPy is imported only
once a CuPy array or ``device="cuda"`` shows up.

Devices are named as in torch: "cpu" and "cuda". ``register`` adds another (the tests register
a strict fake device that runs on the CPU but refuses any host array mixed into its arrays,
which is how the CPU-only test suite checks that nothing in the time loop falls back to NumPy).
"""
import numpy as np

__all__ = ["array_module", "device_of", "module_for", "to_device", "to_host", "as_array", "register", "DEVICES",
           "OnDevice"]


def _cupy():
    try:
        import cupy
    except ImportError as err:
        raise ImportError('device="cuda" needs CuPy: pip install "nplstm[cuda]" (cupy-cuda12x), '
                          "or the cupy build for your CUDA version") from err
    return cupy


DEVICES = {"cpu": lambda: np, "cuda": _cupy}     # device name -> function returning its array module
_ARRAY_TYPES = []                                 # (array type, device name) from ``register``


def register(device, module_factory, array_type):
    """Add a device: ``module_factory()`` returns its array module, whose arrays are ``array_type``."""
    DEVICES[device] = module_factory
    _ARRAY_TYPES.append((array_type, device))


def device_of(arr):
    """"cpu", "cuda" or a registered device name, from the array's type (no import of CuPy for NumPy arrays)."""
    t = type(arr)
    if t is np.ndarray or arr is None or np.isscalar(arr):
        return "cpu"
    for array_type, device in _ARRAY_TYPES:
        if isinstance(arr, array_type):
            return device
    if t.__module__.split(".")[0] == "cupy":
        return "cuda"
    return "cpu"


def module_for(device):
    """The array module of a device name; a clear error for an unknown name or a missing CuPy."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(repr(d) for d in DEVICES)}, got {device!r}")
    return DEVICES[device]()


def array_module(*arrays):
    """The array module of the first non-NumPy array among ``arrays`` (None and scalars are skipped), else NumPy."""
    for arr in arrays:
        device = device_of(arr)
        if device != "cpu":
            return DEVICES[device]()
    return np


def as_array(value):
    """``value`` itself if it is an array of any device, else ``np.asarray(value)`` (lists, scalars)."""
    return value if isinstance(value, np.ndarray) or device_of(value) != "cpu" else np.asarray(value)


def to_device(arr, device):
    """``arr`` as an array of ``device`` (a no-op when it is one already); copies go through the host."""
    if device_of(arr) == device:
        return arr
    host = to_host(arr)
    return host if device == "cpu" else module_for(device).asarray(host)


class OnDevice:
    """Mixin for layers: ``self.params`` (a dict of arrays) lives on ``self.device``, whose module is ``self.xp``."""
    device, xp = "cpu", np

    def to(self, device):
        """Move the weights to ``device`` ("cpu", or "cuda" with CuPy installed) and return the layer.

        Inputs must then live there too (``nplstm.to_device``); outputs, caches and grads do.
        """
        xp = module_for(device)
        self.params = {k: to_device(v, device) for k, v in self.params.items()}
        self.device, self.xp = device, xp
        return self


def to_host(arr):
    """A NumPy array with the contents of ``arr`` (a copy from the device; ``arr`` itself on the CPU)."""
    if device_of(arr) == "cpu":
        return np.asarray(arr)
    return array_module(arr).asnumpy(arr)
