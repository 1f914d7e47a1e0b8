"""GIL-free forward jobs for the row-block pool: a batch-major LSTM forward (``_batchmajor``) that a
pool thread runs in compiled code, from a row of numbers, without ever taking the GIL.

Why. ``_rowblocks.each`` hands a pool thread a Python callable. The pool thread waits for it
spinning without the GIL, but to start it must take the GIL, which the calling thread holds
while it prepares its own block: the pool thread sleeps in the GIL's wait until the caller
releases it, wakes 0.1-0.4 ms into the call, runs its own Python, and only then its block
(timelines in benchmarks/RESULTS.md). Here the calling thread prepares every block first
(``_batchmajor._prepare``: buffers, packed weights), writes each as one row of a table (its sizes
and the addresses of its arrays), and posts the table to the pool's mailboxes. A pool thread,
spinning in ``serve``, claims rows and runs them (``run_row``: the input GEMM, then the time
loop) in compiled code; so does the calling thread (``drain``), and it waits for every row
before it reads the results. The caller keeps the arrays alive until then.

A row, int64 (``FIELDS`` of them; the names below index it)::

    STATE                      POSTED, then TAKEN by the one thread that won its compare-and-swap, then DONE
    T, B, I, G, P, B_FULL      sizes; the block is B rows of an input of B_FULL rows
    REVERSE, TRAIN, TC_T       flags; tc's first axis (T if training, else 1); CS_T: cs's (T+1, or 2)
    X_FULL, X                  addresses: the block's first row in the layer's input (T, B_FULL, I),
                               and the block's copy of its rows (T, B, I); the same where B == B_FULL
                               (no copy). (Read from X_FULL as (T, B_FULL, I), the array runs past
                               the input's end by the rows before the block; only [:, :B] is read.)
    W_IH_T, B_IH, B_HH         W_ih^T (I, G), row-major (a view of the weight torch keeps as (G, I),
                               held column-major: ``recurrent._Recurrent._held``); (G,), (G,)
                               (zeros for bias=False)
    WP, WP_BYTES               W_hh^T packed for oneDNN (``_blas.pack_right``), or empty where
    PANELS                     W_hh^T packed for ``_tilegemm`` (G / COLS, P, COLS) is the product, else 0
    PANELS_IH, IH_ROWS         W_ih^T packed for it (G / COLS, I, COLS) where the loop makes each step's
                               input side (then A is (1, B, G): ``_batchmajor._steps_in``), else 0;
                               IH_ROWS their rows: I, or I + P where W_hh^T's lie under them
                               (``_batchmajor_loops.one_product``: then PANELS is 0)
    WP_IH, WP_IH_BYTES         W_ih^T packed for oneDNN for at least T * B rows (one for all blocks:
                               ``_batchmajor._ih_packed``), or 0: the row's input GEMM before the loop
                               multiplies by it where CHUNK is 0 (a frozen copy's)
    CHUNK                      > 0: the loop makes the input side from WP_IH, CHUNK steps at a time
                               (then A is (CHUNK, B, G): ``_batchmajor._chunk``)
    H0, C0, A, HS, CS, TC      (B, P), (B, H), (T, B, G), (T+1, B, P), (CS_T, B, H), (TC_T, B, H)
    SIZES                      (T,) int64 batch_sizes of the block, or 0: every row at every step
    OUT, OUT_ROWS, OUT_LD      where the row lands its results, or OUT 0: its block of the caller's
    HN, CN                     joined output (T, B, P), read as (T, OUT_ROWS, OUT_LD)[:, :B, :P]
                               like X_FULL, and h_n (B, P), c_n (B, H) (``_rowblocks.forward``)

A pack row (KIND = PACK; a block's KIND is BLOCK) packs one weight for oneDNN
(``_blas.pack_later``): SRC, DST, FLAGS, DIMS the addresses of sgemm_pack's operands, STATUS
what it returned; or, FLAGS 0, into ``_tilegemm``'s panels (``_tilegemm.pack``): SRC W (PK, PN)
row-major, DST the panels (PN / COLS, PK, COLS). A table lists its pack rows first, and a block
waits for every one to be DONE before it starts: so a plain layer's two packings (W_hh^T and
W_ih^T, 0.56 and 0.62 ms at H = 512 one after the other in the calling thread's Python) can run
on two threads at once, and in a table claimed in order a block's wait never waits for a
packing nobody has taken. (A pool thread that slept since its last call wakes ~0.2 ms late, and
then the calling thread has often taken both: benchmarks/RESULTS.md, twenty-third round.)

A pool thread's mailbox, int64: ACTIVE (1 while a table is posted), TABLE (its address), ROWS,
and LOCK (1 while the thread reads the table). The caller retracts a table once every row is
done: it clears ACTIVE, then waits for LOCK to clear, so that no pool thread reads the table
after the caller has let it go. LOCK is taken, ACTIVE cleared and (by the pool thread, holding
LOCK, before it reads TABLE and ROWS) confirmed with compare-and-swap, which orders every read
and write around it (x86's ``lock cmpxchg``; LLVM's seq_cst).
"""
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _blas
from ._batchmajor_loops import c_slot, forward_sequence, gemm_packed
from ._tilegemm import COLS, pack_into

(STATE, T_, B_, I_, G_, P_, B_FULL, REVERSE, TRAIN, TC_T, X_FULL, X, W_IH_T, B_IH, B_HH, WP, WP_BYTES, PANELS,
 PANELS_IH, WP_IH, WP_IH_BYTES, CHUNK, H0, C0, A_, HS, CS, TC, SIZES, OUT, OUT_ROWS, OUT_LD, HN, CN,
 KIND, SRC, DST, FLAGS, DIMS, STATUS, CS_T, IH_ROWS, PK, PN) = range(44)
FIELDS = 44
POSTED, TAKEN, DONE = 1, 2, 3
BLOCK, PACK = 0, 1                                        # a row's KIND
ACTIVE, TABLE, ROWS, LOCK = range(4)                     # a mailbox's fields
MAILBOX = 4

_jit = numba.njit(cache=True, nogil=True)


def _pointer(numba_type):
    """A compiled cast from an address (int64) to a pointer to ``numba_type``, for numba.carray."""
    @intrinsic
    def cast(typingctx, address):
        sig = types.CPointer(numba_type)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
        return sig, codegen
    return cast


_f32, _u8, _i64 = _pointer(types.float32), _pointer(types.uint8), _pointer(types.int64)


@intrinsic
def _cas(typingctx, array, index, expected, new):
    """array[index] = new if it equals expected, atomically; returns the value found (1-D int64)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64 and array.ndim == 1):
        return None
    sig = types.int64(array, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [args[1]])
        return builder.extract_value(builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst"), 0)
    return sig, codegen


@_jit
def new_row(x_full, x, w_ih_t, b_ih, b_hh, wp, panels, ih_panels, wp_ih, chunk, h0, c0, a, hs, cs, tc, sizes, reverse,
            train, out, h_n, c_n):
    """A posted row for these arrays (``_batchmajor._prepare`` made them; x_full: the block's rows
    of the layer's input, a view; sizes: the address of the int64 batch_sizes, or 0; out, h_n,
    c_n: views where the row lands its results, or None). Here, and not in Python, where an
    array's address costs ~3 us (``.ctypes``), a tenth of a row's setup."""
    T, B, I = x.shape
    row = np.zeros(FIELDS, np.int64)
    row[STATE], row[T_], row[B_], row[I_], row[G_], row[P_] = POSTED, T, B, I, w_ih_t.shape[1], h0.shape[1]
    row[B_FULL], row[REVERSE], row[TRAIN], row[TC_T] = x_full.strides[0] // (4 * I), reverse, train, tc.shape[0]
    row[CS_T] = cs.shape[0]
    row[X_FULL], row[X], row[W_IH_T], row[B_IH], row[B_HH] = (x_full.ctypes.data, x.ctypes.data, w_ih_t.ctypes.data,
                                                              b_ih.ctypes.data, b_hh.ctypes.data)
    row[WP], row[WP_BYTES], row[H0], row[C0] = wp.ctypes.data, wp.size, h0.ctypes.data, c0.ctypes.data
    if panels is not None:
        row[PANELS] = panels.ctypes.data
    if ih_panels is not None:
        row[PANELS_IH], row[IH_ROWS] = ih_panels.ctypes.data, ih_panels.shape[1]
    if wp_ih is not None:
        row[WP_IH], row[WP_IH_BYTES], row[CHUNK] = wp_ih.ctypes.data, wp_ih.size, chunk
    row[A_], row[HS], row[CS], row[TC] = a.ctypes.data, hs.ctypes.data, cs.ctypes.data, tc.ctypes.data
    row[SIZES] = sizes
    if out is not None:
        row[OUT], row[OUT_ROWS], row[OUT_LD] = out.ctypes.data, out.strides[0] // out.strides[1], out.strides[1] // 4
        row[HN], row[CN] = h_n.ctypes.data, c_n.ctypes.data
    return row


@_jit
def run_row(row, gemm, compute):
    """One block's forward: copy its rows of x (if a part), the input GEMM (or none: the loop makes
    each step's), the time loop."""
    T, B, I, G, P = row[T_], row[B_], row[I_], row[G_], row[P_]
    H = G // 4
    x = numba.carray(_f32(row[X]), (T, B, I))
    if row[X] != row[X_FULL]:                             # a row block: its rows of the whole input
        x[:] = numba.carray(_f32(row[X_FULL]), (T, row[B_FULL], I))[:, :B]
    in_loop, chunk = row[PANELS_IH] != 0, row[CHUNK]      # each step's x_t W_ih^T made in the loop, or each chunk's
    wp_ih = numba.carray(_u8(row[WP_IH]), (row[WP_IH_BYTES],))
    if row[WP_IH] != 0 and chunk == 0:                    # A = x W_ih^T, W_ih^T prepacked (a frozen copy's)
        gemm_packed(compute, wp_ih, T * B, G, I, row[X], I, row[A_], G)
    elif not in_loop and chunk == 0:
        _blas.sgemm(gemm, False, False, T * B, G, I, row[X], I, row[W_IH_T], G, row[A_], G)   # A = x W_ih^T
    hs, cs = numba.carray(_f32(row[HS]), (T + 1, B, P)), numba.carray(_f32(row[CS]), (row[CS_T], B, H))
    panels = numba.carray(_f32(row[PANELS]), (G // COLS if row[PANELS] != 0 else 0, P, COLS))   # (0, ..): unused
    ih_panels = numba.carray(_f32(row[PANELS_IH]), (G // COLS, row[IH_ROWS], COLS) if in_loop else (0, I, COLS))
    args = (compute, numba.carray(_u8(row[WP]), (row[WP_BYTES],)), None, panels, (ih_panels, x, wp_ih, chunk),
            numba.carray(_f32(row[A_]), (1 if in_loop else chunk if chunk else T, B, G)),
            numba.carray(_f32(row[B_IH]), (G,)), numba.carray(_f32(row[B_HH]), (G,)),
            numba.carray(_f32(row[H0]), (B, P)), numba.carray(_f32(row[C0]), (B, H)),
            hs, cs, numba.carray(_f32(row[TC]), (row[TC_T], B, H)))
    reverse, train = row[REVERSE] != 0, row[TRAIN] != 0
    if row[SIZES] != 0:
        forward_sequence(*args, numba.carray(_i64(row[SIZES]), (T,)), reverse, train)
    else:
        forward_sequence(*args, None, reverse, train)
    if row[OUT] != 0:                                     # land the results in the caller's joined arrays,
        first, last = (0, 0) if reverse else (1, T)       # on this thread (the rows copy at once)
        numba.carray(_f32(row[OUT]), (T, row[OUT_ROWS], row[OUT_LD]))[:, :B, :P] = hs[first:first + T]
        numba.carray(_f32(row[HN]), (B, P))[:] = hs[last]
        numba.carray(_f32(row[CN]), (B, H))[:] = cs[c_slot(cs, last)]


@_jit
def run_pack(row, pack):
    """A pack row: oneDNN's sgemm_pack on its operands, its status into STATUS; or (FLAGS 0)
    ``_tilegemm``'s panels, status 0."""
    f, d = row[FLAGS], row[DIMS]
    if f == 0:
        K, N = row[PK], row[PN]
        pack_into(numba.carray(_f32(row[SRC]), (K, N)), numba.carray(_f32(row[DST]), (N // COLS, K, COLS)))
        row[STATUS] = 0
    else:
        row[STATUS] = pack(f, f + 1, f + 2, d, d + 8, d + 16, d + 24, d + 32, row[SRC], row[DST])


@_jit
def wait_packs(table, pause):
    """Spin until every pack row is DONE, yielding the core at each round (``pause``: sched_yield,
    as ``wait_done``: with more threads than cores the packing thread may need this one's);
    returns whether each packing succeeded (status 0: else a block must not run, its product
    would read an unfilled buffer). Called before a block: the table's rows are claimed in order
    and its pack rows come first, so each is taken by then (by this thread, done, or by another,
    running) and ends. (The compare-and-swap that never swaps reads STATE atomically; STATUS is
    written before DONE.)"""
    ok = True
    for r in range(table.shape[0]):
        if table[r, KIND] == PACK:
            while _cas(table[r], STATE, -1, -1) != DONE:
                pause()
            ok &= table[r, STATUS] == 0
    return ok


@_jit
def drain(table, gemm, compute, pack, pause):
    """Claim every row still posted and run it; returns how many this thread ran."""
    ran = 0
    for r in range(table.shape[0]):
        row = table[r]
        if row[STATE] == POSTED and _cas(row, STATE, POSTED, TAKEN) == POSTED:
            if row[KIND] == PACK:
                run_pack(row, pack)
            elif wait_packs(table, pause):               # (a failed packing: the caller raises)
                run_row(row, gemm, compute)
            _cas(row, STATE, TAKEN, DONE)                # (atomic: the results are written before it)
            ran += 1
    return ran


def pack_row(buf, operands):
    """A posted pack row filling ``buf``: ``_blas.pack_later``'s buffer and operands (R, flags,
    dims), or ``_tilegemm``'s panels and (W,), W (K, N) C-contiguous; the caller keeps them alive
    until the row is done."""
    row = np.zeros(FIELDS, np.int64)
    row[STATE], row[KIND], row[SRC], row[DST] = POSTED, PACK, operands[0].ctypes.data, buf.ctypes.data
    if len(operands) == 1:                                # FLAGS 0: panels
        row[PK], row[PN] = operands[0].shape
    else:
        row[FLAGS], row[DIMS] = operands[1].ctypes.data, operands[2].ctypes.data
    return row


@_jit
def wait_done(table, pause):
    """Spin until every row is DONE (each round yields the core: ``pause`` is sched_yield). Every
    row is taken by then, so each is running and ends."""
    for r in range(table.shape[0]):
        while table[r, STATE] != DONE:
            pause()


@_jit
def retract(mailbox, pause):
    """Take a posted table back: no pool thread reads it once this returns."""
    _cas(mailbox, ACTIVE, 1, 0)
    while mailbox[LOCK] != 0:
        pause()


@_jit
def serve(mailbox, posted, seen, gemm, compute, pack, pause, rounds):
    """A pool thread's wait: run the rows of tables posted to ``mailbox`` as they come; return once
    ``posted`` moves past ``seen`` (a Python job: ``_rowblocks.each``) or after ``rounds`` idle
    rounds (``pause`` each: sched_yield)."""
    idle = 0
    while idle < rounds and posted[0] == seen:
        if mailbox[ACTIVE] != 0 and _cas(mailbox, LOCK, 0, 1) == 0:
            ran = 0
            if _cas(mailbox, ACTIVE, 1, 1) == 1:         # not retracted meanwhile: the table is alive
                                                          # (atomic: TABLE and ROWS are read after it)
                ran = drain(numba.carray(_i64(mailbox[TABLE]), (mailbox[ROWS], FIELDS)), gemm, compute, pack,
                            pause)
            _cas(mailbox, LOCK, 1, 0)
            if ran:
                idle = 0
                continue
        pause()
        idle += 1
