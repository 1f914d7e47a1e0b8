"""Data-parallel training over MPI (mpi4py), and its single-process stand-in.

Launch::

    mpiexec -n 2 python -m mpi4py -m nplstm train --distributed ...

(``-m mpi4py`` makes a rank that raises abort the whole job instead of leaving the others
waiting forever in a collective.) Each rank reads the same global batch and keeps its own
shard of rows (its own streams of the corpus). Gradients are flattened into one contiguous
buffer and summed with one in-place ``Allreduce`` per step (the buffer API: nothing is
pickled). Each rank normalizes its loss by the *global* token count, so the sum is exactly the
gradient of the global batch's mean loss, masked line batches included; every rank then takes
the identical optimizer step and the weights stay bit-identical (checked at the end of a run).
"""
import hashlib
import time

import numpy as np

__all__ = ["Single", "MPIGroup", "make"]


class Single:
    """One process: the same interface as ``MPIGroup``, doing nothing."""
    rank, size, allreduce_seconds = 0, 1, 0.0

    def rows(self, batch_size):
        return slice(0, batch_size)

    def check_same(self, what, text):
        pass

    def bcast_(self, arrays):
        pass

    def allreduce_(self, arrays, extra):
        return extra

    def gather_rows(self, arr):
        return arr

    def gather_states(self, state):
        return [state]

    def assert_identical(self, arrays):
        pass


class MPIGroup:
    """MPI.COMM_WORLD, with the few collectives training needs (all buffer-based)."""

    def __init__(self):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._buf, self.allreduce_seconds = None, 0.0     # time spent in the gradient Allreduce

    def rows(self, batch_size):
        """This rank's rows of a global batch; the rank count must divide the batch."""
        if batch_size % self.size:
            raise ValueError(f"--batch-size {batch_size} is not divisible by the {self.size} MPI ranks; "
                             f"use a multiple of {self.size}")
        n = batch_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def check_same(self, what, text):
        """Fail on every rank, naming the ranks, unless ``text`` is the same on all of them."""
        mine = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8).copy()
        every = np.empty((self.size, mine.size), np.uint8)
        self.comm.Allgather(mine, every)
        differ = [r for r in range(self.size) if not np.array_equal(every[r], every[0])]
        if differ:
            raise ValueError(f"MPI ranks {differ} have a different {what} from rank 0; every rank must be "
                             "started with the same flags and data")

    def _flat(self, arrays, extra=0):
        n = sum(a.size for a in arrays.values()) + extra
        dtype = next(iter(arrays.values())).dtype
        if self._buf is None or self._buf.size != n or self._buf.dtype != dtype:
            self._buf = np.empty(n, dtype)
        return self._buf

    def bcast_(self, arrays):
        """Rank 0's values of ``arrays`` (a dict of same-dtype arrays) on every rank, in place."""
        buf = self._flat(arrays)
        self._pack(arrays, buf)
        self.comm.Bcast(buf, root=0)
        self._unpack(buf, arrays)

    def allreduce_(self, arrays, extra):
        """Sum ``arrays`` over ranks in place, with one Allreduce; ``extra`` (floats) rides along."""
        buf = self._flat(arrays, len(extra))
        self._pack(arrays, buf)
        buf[buf.size - len(extra):] = extra
        t0 = time.perf_counter()
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self.allreduce_seconds += time.perf_counter() - t0
        self._unpack(buf, arrays)
        return [float(v) for v in buf[buf.size - len(extra):]]

    @staticmethod
    def _pack(arrays, buf):
        i = 0
        for a in arrays.values():
            buf[i:i + a.size] = a.ravel()
            i += a.size

    @staticmethod
    def _unpack(buf, arrays):
        i = 0
        for a in arrays.values():
            a[...] = buf[i:i + a.size].reshape(a.shape)
            i += a.size

    def gather_rows(self, arr):
        """Concatenate every rank's shard of batch rows (axis 1), on every rank."""
        arr = np.ascontiguousarray(np.moveaxis(arr, 1, 0))             # rows first, for Allgather
        out = np.empty((self.size,) + arr.shape, arr.dtype)
        self.comm.Allgather(arr, out)
        return np.moveaxis(out.reshape((-1,) + arr.shape[1:]), 0, 1)

    def gather_states(self, state):
        """Every rank's PCG64 generator state (a dict), as a list indexed by rank."""
        mine = np.array([state["state"]["state"] >> 64, state["state"]["state"] & (2**64 - 1),
                         state["state"]["inc"] >> 64, state["state"]["inc"] & (2**64 - 1),
                         state["has_uint32"], state["uinteger"]], np.uint64)
        every = np.empty((self.size, mine.size), np.uint64)
        self.comm.Allgather(mine, every)
        return [{"bit_generator": "PCG64", "state": {"state": (int(v[0]) << 64) | int(v[1]),
                                                     "inc": (int(v[2]) << 64) | int(v[3])},
                 "has_uint32": int(v[4]), "uinteger": int(v[5])} for v in every]

    def assert_identical(self, arrays):
        """Raise on every rank if the weights differ anywhere (they must be bit-identical)."""
        h = hashlib.sha256()
        for k in sorted(arrays):
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        self.check_same("set of weights (they diverged)", h.hexdigest())


def make(distributed):
    """``MPIGroup()`` when ``distributed``, else ``Single()``."""
    if not distributed:
        return Single()
    try:
        return MPIGroup()
    except ImportError as err:
        raise ImportError("--distributed needs mpi4py: pip install 'nplstm[mpi]'") from err
