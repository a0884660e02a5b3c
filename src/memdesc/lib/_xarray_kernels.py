"""numba core of the XArray (Linux ``lib/xarray.c``, ``include/linux/xarray.h``).

Theory statement
----------------
An XArray maps every unsigned long index ``0 .. 2**64-1`` to an *entry*; all
entries start NULL.  It is a radix tree of 64-slot *nodes* (``XA_CHUNK_SHIFT``
= 6).  A node with ``shift`` s maps slot ``o`` to the indices whose bits
``[s, s+6)`` equal ``o``; leaves have shift 0; the top node has the largest
shift and no parent.  The head of the array (``xa_head``) is NULL, a single
entry for index 0, or the top node.  Invariants kept by every operation (and
checked by :func:`xa_check_nb`):

* ``count`` of a node is the number of non-NULL slots (entries, sibling
  entries, retry/zero entries and child nodes); ``nr_values`` is the number of
  slots holding a value entry or a sibling of one.  A node whose count drops to
  0 is freed (``xas_delete_node``); a top node with a single entry in slot 0 is
  replaced by that entry (``xas_shrink``), so the tree is as short as it can be.
* A *multi-index* entry of order ``k`` is stored at the node level
  ``k - k % 6`` in its canonical slot, followed by ``2**(k % 6) - 1`` *sibling*
  entries that name the canonical slot.  Marks live on the canonical slot only.
* Three marks (``XA_MARK_0..2``) are per-slot bitmaps in every node; the bit of
  a slot that holds a child node is set iff some slot of the child has it, and
  the array-wide flag (``xa_marked``) is set iff the top level has it: "marks
  propagate to the root".  Allocating arrays (``XA_FLAGS_TRACK_FREE``) use
  ``XA_MARK_0`` inverted, as ``XA_FREE_MARK`` (set on free slots).

The functions below are line-by-line ports of the kernel's ``xas_*`` and
``xa_*`` functions: ``xas_create``/``xas_expand``/``xas_store``/
``xas_shrink``/``xas_delete_node``/``xas_free_nodes``, ``xas_find``,
``xas_find_marked``, ``xas_find_conflict``, ``__xas_next``/``__xas_prev``,
``xas_split``/``xas_try_split``, ``xas_create_range``, ``xa_store_range``,
``__xa_alloc``/``__xa_alloc_cyclic`` etc.  Where they differ it is said in the
function.

Memory model
------------
Nodes live in one *pool* (:class:`XaPool`, numpy arrays) that serves many
XArrays; an XArray is a row of the ``heads`` array (head entry, flags, node
count).  A node is one row of ``slots`` (int64[cap, 64]), ``marks``
(int64[cap, 3], one 64-bit bitmap per mark) and ``meta`` (shift, offset,
count, nr_values, parent, owning array, state).  Kernels never allocate
memory: a node comes from the pool's free stack (``free[:ctl[C_FREE_TOP]]``);
before mutating anything an operation checks that the stack holds the nodes it
will need (exactly, or a stated worst case for range operations) and otherwise
returns ``-ENOMEM`` with ``ctl[C_WANT]`` set and *nothing changed* -- the
``xas_nomem()`` protocol: the caller obtains nodes outside (grows the pool, or
asks the modelled slab) and retries.  Nodes freed by shrinking/deletion go back
on the stack.  Freed nodes keep their contents (retry entries, as RCU readers
would see them) until they are handed out again.

Entries are int64 bit patterns of the kernel's ``void *``: NULL 0; value
entries ``(v << 1) | 1``; internal entries ``(v << 2) | 2`` (siblings 0..62,
retry 256, zero 257, node pointers ``((node + 1024) << 2) | 2`` > 4096, errors
negative); pointer entries (Python objects, via the facade's table) ``tag <<
2``.  Indices are the int64 bit patterns of unsigned longs; ``lsr``/``ult``/
``ule`` give unsigned shifts and comparisons (numba promotes mixed
int64/uint64 arithmetic to float64, so uint64 is never used).  The
``xa_state`` is an int64[8] array (fields ``X_*``); its ``xa_node`` is a node
id or one of ``NODE_NULL`` (the head), ``XAS_BOUNDS``, ``XAS_RESTART`` or an
error code.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload

from memdesc._numba import JIT_DISABLED
from memdesc._numba import njit as _njit


def njit(fn):
    """Kernels here never allocate, so they are compiled without NRT reference counting:
    a pool is a tuple of arrays, and counting its references at every call of a small
    helper would cost more than the helper (16 atomic operations per call)."""
    return _njit(_nrt=False)(fn)


# --- geometry (include/linux/xarray.h) --------------------------------------------------------
XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 64
XA_CHUNK_MASK = 63
XA_MAX_MARKS = 3
XA_NODE_BYTES = 576  # sizeof(struct xa_node) on 64-bit: 7 per 4 KiB page
XA_MAX_PATH = 11  # nodes on a root-to-leaf path of a 64-bit index: shifts 0, 6, .., 60

XA_MARK_0 = 0
XA_MARK_1 = 1
XA_MARK_2 = 2
XA_MARK_MAX = 2
XA_PRESENT = 8
XA_FREE_MARK = XA_MARK_0

# --- xa_flags ---------------------------------------------------------------------------------
XA_FLAGS_LOCK_IRQ = 1
XA_FLAGS_LOCK_BH = 2
XA_FLAGS_TRACK_FREE = 4
XA_FLAGS_ZERO_BUSY = 8
XA_FLAGS_ALLOC_WRAPPED = 16
XA_FLAGS_ACCOUNT = 32
GFP_BITS_SHIFT = 26  # __GFP_BITS_SHIFT: the marks sit above the gfp bits
XA_FLAGS_MARK_0 = 1 << GFP_BITS_SHIFT
XA_FLAGS_ALLOC = XA_FLAGS_TRACK_FREE | XA_FLAGS_MARK_0
XA_FLAGS_ALLOC1 = XA_FLAGS_TRACK_FREE | XA_FLAGS_ZERO_BUSY

# --- errno (Linux values) ---------------------------------------------------------------------
ENOMEM = 12
EBUSY = 16
EEXIST = 17
EINVAL = 22
ENOSPC = 28

# --- entry encoding ---------------------------------------------------------------------------
XA_RETRY_ENTRY = (256 << 2) | 2  # xa_mk_internal(256)
XA_ZERO_ENTRY = (257 << 2) | 2  # xa_mk_internal(257)
XA_NODE_BIAS = 1024  # node id n is the internal entry ((n + 1024) << 2) | 2, always > 4096
XA_SIBLING_LIMIT = ((XA_CHUNK_SIZE - 1) << 2) | 2  # xa_mk_sibling(63): siblings are below
SIGN = -9223372036854775808  # bit 63; x ^ SIGN maps unsigned order onto signed order
LONG_MAX = 9223372036854775807
ULONG_MAX = 18446744073709551615

# --- xa_state fields (int64[8]) and xa_node encodings -------------------------------------------
X_XA = 0
X_INDEX = 1
X_SHIFT = 2
X_SIBS = 3
X_OFFSET = 4
X_NODE = 5
X_LEN = 8
NODE_NULL = -1  # xas->xa_node == NULL: operating on the head
XAS_BOUNDS = -2
XAS_RESTART = -3
XAS_ERROR_BASE = -100000  # xas->xa_node = XA_ERROR(err) is XAS_ERROR_BASE + err (err < 0)

# --- node meta columns, node states -------------------------------------------------------------
M_SHIFT = 0
M_OFFSET = 1
M_COUNT = 2
M_NRVAL = 3
M_PARENT = 4  # -1 for the top node
M_ARRAY = 5  # owning xarray id, -1 when not in a tree
M_STATE = 6
M_LEN = 8
NS_OUT = 0  # not handed to the pool (or given back to the node source)
NS_FREE = 1  # on the pool's free stack
NS_LIVE = 2  # in a tree

# --- pool control words ---------------------------------------------------------------------------
C_FREE_TOP = 0  # nodes on the free stack
C_NR_ALLOC = 1  # nodes taken off the stack, ever
C_NR_FREED = 2  # nodes put back on the stack by deletion, ever
C_LIVE = 3  # nodes in trees now
C_WANT = 4  # nodes the last -ENOMEM asked for
C_LEN = 8

# --- heads columns ---------------------------------------------------------------------------------
H_HEAD = 0
H_FLAGS = 1
H_NODES = 2
H_INUSE = 3
H_LEN = 4


class XaPool(NamedTuple):
    """The node pool: numpy arrays shared by every XArray of one pool."""

    slots: np.ndarray  # int64[cap, 64]
    marks: np.ndarray  # int64[cap, 3] one bitmap per mark
    meta: np.ndarray  # int64[cap, M_LEN]
    free: np.ndarray  # int64[cap] free-node stack
    ctl: np.ndarray  # int64[C_LEN]
    xas: np.ndarray  # int64[X_LEN] scratch xa_state of the normal (xa_*) API


def new_pool_arrays(capacity: int) -> XaPool:
    meta = np.zeros((capacity, M_LEN), np.int64)
    meta[:, M_PARENT] = -1
    meta[:, M_ARRAY] = -1
    return XaPool(np.zeros((capacity, XA_CHUNK_SIZE), np.int64), np.zeros((capacity, XA_MAX_MARKS), np.int64),
                  meta, np.zeros(capacity, np.int64), np.zeros(C_LEN, np.int64), np.zeros(X_LEN, np.int64))


def grow_pool_arrays(pool: XaPool, capacity: int) -> XaPool:
    new = new_pool_arrays(capacity)
    n = pool.slots.shape[0]
    new.slots[:n] = pool.slots
    new.marks[:n] = pool.marks
    new.meta[:n] = pool.meta
    new.free[:n] = pool.free
    new.ctl[:] = pool.ctl
    new.xas[:] = pool.xas
    return new


def new_heads(n: int) -> np.ndarray:
    return np.zeros((n, H_LEN), np.int64)


# =============================================================================================
# unsigned helpers, bit helpers
# =============================================================================================

def ctz64(x):
    """Trailing zeros of a non-zero int64 (``__ffs``)."""
    x = int(x) & 0xFFFFFFFFFFFFFFFF
    return (x & -x).bit_length() - 1


@overload(ctz64)
def _ctz64_jit(x):
    def impl(x):
        return trailing_zeros(x)
    return impl


@njit
def lsr(x, s):
    """Logical (unsigned) right shift of an int64 bit pattern."""
    if s <= 0:
        return x
    if s >= 64:
        return np.int64(0)
    return (x >> s) & ~(np.int64(-1) << (64 - s))


@njit
def ult(a, b):
    return (a ^ SIGN) < (b ^ SIGN)


@njit
def ule(a, b):
    return (a ^ SIGN) <= (b ^ SIGN)


@njit
def low_bits(n):
    """A mask of the low ``n`` bits (0 <= n <= 64)."""
    if n >= 64:
        return np.int64(-1)
    return ~(np.int64(-1) << n)


# =============================================================================================
# entries (include/linux/xarray.h)
# =============================================================================================

@njit
def xa_mk_value(v):
    return (v << 1) | 1


@njit
def xa_to_value(e):
    return lsr(e, 1)


@njit
def xa_is_value(e):
    return (e & 1) == 1


@njit
def xa_mk_internal(v):
    return (v << 2) | 2


@njit
def xa_is_internal(e):
    return (e & 3) == 2


@njit
def xa_is_node(e):
    return (e & 3) == 2 and e > 4096


@njit
def xa_mk_node(n):
    return ((n + XA_NODE_BIAS) << 2) | 2


@njit
def xa_to_node(e):
    return (e >> 2) - XA_NODE_BIAS


@njit
def xa_mk_sibling(offset):
    return (offset << 2) | 2


@njit
def xa_is_sibling(e):
    return (e & 3) == 2 and e >= 0 and e < XA_SIBLING_LIMIT


@njit
def xa_is_zero(e):
    return e == XA_ZERO_ENTRY


@njit
def xa_is_retry(e):
    return e == XA_RETRY_ENTRY


@njit
def xa_is_err(e):
    return (e & 3) == 2 and e < 0


@njit
def xa_err(e):
    if xa_is_err(e):
        return e >> 2
    return np.int64(0)


@njit
def xa_error_entry(err):
    """``XA_ERROR(err)`` as an entry (err is a negative errno)."""
    return (np.int64(err) << 2) | 2


@njit
def xa_is_advanced(e):
    return (e & 3) == 2 and e >= 0 and e <= XA_RETRY_ENTRY


@njit
def xa_zero_to_null(e):
    if e == XA_ZERO_ENTRY:
        return np.int64(0)
    return e


# =============================================================================================
# xa_state encodings
# =============================================================================================

@njit
def xas_error(xas):
    node = xas[X_NODE]
    if node < XAS_ERROR_BASE + 4096 and node > XAS_ERROR_BASE - 4096:
        return node - XAS_ERROR_BASE
    return np.int64(0)


@njit
def xas_set_err(xas, err):
    xas[X_NODE] = XAS_ERROR_BASE + err


@njit
def xas_invalid(xas):
    return xas[X_NODE] < NODE_NULL


@njit
def xas_valid(xas):
    return xas[X_NODE] >= NODE_NULL


@njit
def xas_is_node(xas):
    return xas[X_NODE] >= 0


@njit
def node_is_top(node):
    """``xas_top()``: the head, XAS_BOUNDS or XAS_RESTART."""
    return node <= NODE_NULL and node >= XAS_RESTART


@njit
def node_not_node(node):
    return node < 0


@njit
def node_frozen(node):
    """``xas_frozen()``: XAS_RESTART or an error."""
    return node == XAS_RESTART or node < XAS_RESTART


@njit
def xas_init(xas, xa, index):
    """``XA_STATE(xas, xa, index)``."""
    xas[X_XA] = xa
    xas[X_INDEX] = index
    xas[X_SHIFT] = 0
    xas[X_SIBS] = 0
    xas[X_OFFSET] = 0
    xas[X_NODE] = XAS_RESTART


@njit
def xas_set(xas, index):
    xas[X_INDEX] = index
    xas[X_NODE] = XAS_RESTART


@njit
def xas_set_order(xas, index, order):
    if order < 64:
        xas[X_INDEX] = lsr(index, order) << order
    else:
        xas[X_INDEX] = 0
    xas[X_SHIFT] = order - (order % XA_CHUNK_SHIFT)
    xas[X_SIBS] = (1 << (order % XA_CHUNK_SHIFT)) - 1
    xas[X_NODE] = XAS_RESTART


@njit
def xas_size(xas):
    return (xas[X_SIBS] + 1) << xas[X_SHIFT]


# =============================================================================================
# heads and flags
# =============================================================================================

@njit
def xa_flags_mark(mark):
    return np.int64(1) << (GFP_BITS_SHIFT + mark)


@njit
def xa_track_free(H, xa):
    return (H[xa, H_FLAGS] & XA_FLAGS_TRACK_FREE) != 0


@njit
def xa_zero_busy(H, xa):
    return (H[xa, H_FLAGS] & XA_FLAGS_ZERO_BUSY) != 0


@njit
def xa_marked(H, xa, mark):
    return (H[xa, H_FLAGS] & xa_flags_mark(mark)) != 0


@njit
def xa_mark_set(H, xa, mark):
    H[xa, H_FLAGS] |= xa_flags_mark(mark)


@njit
def xa_mark_clear(H, xa, mark):
    H[xa, H_FLAGS] &= ~xa_flags_mark(mark)


@njit
def xa_empty(H, xa):
    return H[xa, H_HEAD] == 0


# =============================================================================================
# nodes and node marks
# =============================================================================================

@njit
def get_offset(index, shift):
    return lsr(index, shift) & XA_CHUNK_MASK


@njit
def node_get_mark(P, node, offset, mark):
    return ((P.marks[node, mark] >> offset) & 1) != 0


@njit
def node_set_mark(P, node, offset, mark):
    """Returns True if the bit was already set."""
    bit = np.int64(1) << offset
    was = (P.marks[node, mark] & bit) != 0
    P.marks[node, mark] |= bit
    return was


@njit
def node_clear_mark(P, node, offset, mark):
    """Returns True if the bit was set."""
    bit = np.int64(1) << offset
    was = (P.marks[node, mark] & bit) != 0
    P.marks[node, mark] &= ~bit
    return was


@njit
def node_any_mark(P, node, mark):
    return P.marks[node, mark] != 0


@njit
def node_mark_all(P, node, mark):
    P.marks[node, mark] = -1


@njit
def max_index(P, entry):
    """The maximum index that the tree headed by ``entry`` holds without expanding."""
    if not xa_is_node(entry):
        return np.int64(0)
    return (np.int64(XA_CHUNK_SIZE) << P.meta[xa_to_node(entry), M_SHIFT]) - 1


@njit
def xa_node_take(P, H, xa):
    """Take a node off the free stack for array ``xa`` (-1 if the stack is empty)."""
    top = P.ctl[C_FREE_TOP]
    if top == 0:
        return np.int64(-1)
    top -= 1
    node = P.free[top]
    P.ctl[C_FREE_TOP] = top
    for i in range(XA_CHUNK_SIZE):
        P.slots[node, i] = 0
    for m in range(XA_MAX_MARKS):
        P.marks[node, m] = 0
    P.meta[node, M_STATE] = NS_LIVE
    P.meta[node, M_ARRAY] = xa
    P.meta[node, M_PARENT] = -1
    P.meta[node, M_OFFSET] = 0
    P.ctl[C_NR_ALLOC] += 1
    P.ctl[C_LIVE] += 1
    H[xa, H_NODES] += 1
    return node


@njit
def xa_node_free(P, H, node):
    """Return a node to the free stack (``xa_node_free``); its slots are left as they are."""
    xa = P.meta[node, M_ARRAY]
    if xa >= 0:
        H[xa, H_NODES] -= 1
    P.meta[node, M_ARRAY] = -1
    P.meta[node, M_STATE] = NS_FREE
    P.free[P.ctl[C_FREE_TOP]] = node
    P.ctl[C_FREE_TOP] += 1
    P.ctl[C_LIVE] -= 1
    P.ctl[C_NR_FREED] += 1


@njit
def pool_give_node_nb(P, node):
    """Put a node obtained from a node source on the free stack.  0, or -EINVAL if it
    is out of range or already in the pool."""
    if node < 0 or node >= P.slots.shape[0]:
        return -EINVAL
    if P.meta[node, M_STATE] != NS_OUT:
        return -EINVAL
    P.meta[node, M_STATE] = NS_FREE
    P.meta[node, M_ARRAY] = -1
    P.free[P.ctl[C_FREE_TOP]] = node
    P.ctl[C_FREE_TOP] += 1
    return 0


@njit
def pool_give_range_nb(P, first, n):
    """Give nodes ``first .. first+n-1`` (fresh ids) to the pool; returns how many were given."""
    given = 0
    for node in range(first, first + n):
        if pool_give_node_nb(P, node) == 0:
            given += 1
    return given


@njit
def pool_take_free_nb(P):
    """Take one node off the free stack to hand back to the node source (-1 if none)."""
    top = P.ctl[C_FREE_TOP]
    if top == 0:
        return np.int64(-1)
    top -= 1
    node = P.free[top]
    P.ctl[C_FREE_TOP] = top
    P.meta[node, M_STATE] = NS_OUT
    return node


@njit
def pool_free_count(P):
    return P.ctl[C_FREE_TOP]


@njit
def _set_slot(P, H, xa, node, offset, entry):
    if node < 0:
        H[xa, H_HEAD] = entry
    else:
        P.slots[node, offset] = entry


# =============================================================================================
# walking (xas_start, xas_descend, xas_load, xas_reload)
# =============================================================================================

@njit
def xas_reload(P, H, xas):
    node = xas[X_NODE]
    if node < 0:
        return H[xas[X_XA], H_HEAD]
    offset = get_offset(xas[X_INDEX], P.meta[node, M_SHIFT])
    entry = P.slots[node, offset]
    if not xa_is_sibling(entry):
        return entry
    return P.slots[node, entry >> 2]


@njit
def set_bounds(xas):
    xas[X_NODE] = XAS_BOUNDS
    return np.int64(0)


@njit
def xas_start(P, H, xas):
    if xas_valid(xas):
        return xas_reload(P, H, xas)
    if xas_error(xas) != 0:
        return np.int64(0)
    entry = H[xas[X_XA], H_HEAD]
    if not xa_is_node(entry):
        if xas[X_INDEX] != 0:
            return set_bounds(xas)
    else:
        if ult(np.int64(XA_CHUNK_MASK), lsr(xas[X_INDEX], P.meta[xa_to_node(entry), M_SHIFT])):
            return set_bounds(xas)
    xas[X_NODE] = NODE_NULL
    return entry


@njit
def xas_descend(P, xas, node):
    shift = P.meta[node, M_SHIFT]
    offset = get_offset(xas[X_INDEX], shift)
    entry = P.slots[node, offset]
    xas[X_NODE] = node
    while xa_is_sibling(entry):
        offset = entry >> 2
        entry = P.slots[node, offset]
        if shift != 0 and xa_is_node(entry):
            entry = np.int64(XA_RETRY_ENTRY)
    xas[X_OFFSET] = offset
    return entry


@njit
def xas_load(P, H, xas):
    entry = xas_start(P, H, xas)
    while xa_is_node(entry):
        node = xa_to_node(entry)
        if xas[X_SHIFT] > P.meta[node, M_SHIFT]:
            break
        entry = xas_descend(P, xas, node)
        if P.meta[node, M_SHIFT] == 0:
            break
    return entry


@njit
def xas_set_offset(P, xas):
    xas[X_OFFSET] = get_offset(xas[X_INDEX], P.meta[xas[X_NODE], M_SHIFT])


@njit
def xas_move_index(P, xas, offset):
    shift = P.meta[xas[X_NODE], M_SHIFT]
    xas[X_INDEX] = (xas[X_INDEX] & (np.int64(~XA_CHUNK_MASK) << shift)) + (np.int64(offset) << shift)


@njit
def xas_next_offset(P, xas):
    xas[X_OFFSET] += 1
    xas_move_index(P, xas, xas[X_OFFSET])


# =============================================================================================
# node allocation, deletion, shrinking (xas_alloc, xas_shrink, xas_delete_node, xas_free_nodes)
# =============================================================================================

@njit
def xas_alloc(P, H, xas, shift):
    parent = xas[X_NODE]
    if xas_invalid(xas):
        return np.int64(-1)
    node = xa_node_take(P, H, xas[X_XA])
    if node < 0:
        P.ctl[C_WANT] = 1
        xas_set_err(xas, -ENOMEM)
        return np.int64(-1)
    if parent >= 0:
        P.meta[node, M_OFFSET] = xas[X_OFFSET]
        P.meta[parent, M_COUNT] += 1
        P.meta[node, M_PARENT] = parent
    else:
        P.meta[node, M_PARENT] = -1
    P.meta[node, M_SHIFT] = shift
    P.meta[node, M_COUNT] = 0
    P.meta[node, M_NRVAL] = 0
    return node


@njit
def xas_max(xas):
    mx = xas[X_INDEX]
    if xas[X_SHIFT] != 0 or xas[X_SIBS] != 0:
        mask = ((xas[X_SIBS] + 1) << xas[X_SHIFT]) - 1
        mx = mx | mask
        if mask == mx:
            mx = mx + 1
    return mx


@njit
def xas_shrink(P, H, xas):
    xa = xas[X_XA]
    node = xas[X_NODE]
    while True:
        if P.meta[node, M_COUNT] != 1:
            break
        entry = P.slots[node, 0]
        if entry == 0:
            break
        if not xa_is_node(entry) and P.meta[node, M_SHIFT] != 0:
            break
        if xa_zero_busy(H, xa):
            entry = xa_zero_to_null(entry)
        xas[X_NODE] = XAS_BOUNDS
        H[xa, H_HEAD] = entry
        if xa_track_free(H, xa) and not node_get_mark(P, node, 0, XA_FREE_MARK):
            xa_mark_clear(H, xa, XA_FREE_MARK)
        P.meta[node, M_COUNT] = 0
        P.meta[node, M_NRVAL] = 0
        if not xa_is_node(entry):
            P.slots[node, 0] = XA_RETRY_ENTRY
        xa_node_free(P, H, node)
        if not xa_is_node(entry):
            break
        node = xa_to_node(entry)
        P.meta[node, M_PARENT] = -1


@njit
def xas_delete_node(P, H, xas):
    xa = xas[X_XA]
    node = xas[X_NODE]
    while True:
        if P.meta[node, M_COUNT] != 0:
            break
        parent = P.meta[node, M_PARENT]
        xas[X_NODE] = parent
        xas[X_OFFSET] = P.meta[node, M_OFFSET]
        xa_node_free(P, H, node)
        if parent < 0:
            H[xa, H_HEAD] = 0
            xas[X_NODE] = XAS_BOUNDS
            return
        P.slots[parent, xas[X_OFFSET]] = 0
        P.meta[parent, M_COUNT] -= 1
        node = parent
    if P.meta[node, M_PARENT] < 0:
        xas_shrink(P, H, xas)


@njit
def xas_free_nodes(P, H, xas, top):
    offset = 0
    node = top
    while True:
        entry = P.slots[node, offset]
        if P.meta[node, M_SHIFT] != 0 and xa_is_node(entry):
            node = xa_to_node(entry)
            offset = 0
            continue
        if entry != 0:
            P.slots[node, offset] = XA_RETRY_ENTRY
        offset += 1
        while offset == XA_CHUNK_SIZE:
            parent = P.meta[node, M_PARENT]
            offset = P.meta[node, M_OFFSET] + 1
            P.meta[node, M_COUNT] = 0
            P.meta[node, M_NRVAL] = 0
            xa_node_free(P, H, node)
            if node == top:
                return
            node = parent


# =============================================================================================
# creating slots (xas_expand, xas_create) and the node budget
# =============================================================================================

@njit
def _peek_descend(P, node, index):
    """``xas_descend`` without moving an xa_state."""
    shift = P.meta[node, M_SHIFT]
    entry = P.slots[node, get_offset(index, shift)]
    while xa_is_sibling(entry):
        entry = P.slots[node, entry >> 2]
        if shift != 0 and xa_is_node(entry):
            entry = np.int64(XA_RETRY_ENTRY)
    return entry


@njit
def _descend_need(P, entry, shift, order, index):
    need = 0
    while shift > order:
        shift -= XA_CHUNK_SHIFT
        if entry == 0:
            need += 1
        elif xa_is_node(entry):
            entry = _peek_descend(P, xa_to_node(entry), index)
        else:
            break
    return need


@njit
def xas_create_need(P, H, xas, allow_root):
    """The number of nodes ``xas_create(xas, allow_root)`` would allocate now (it mirrors
    xas_expand and xas_create without changing anything)."""
    xa = xas[X_XA]
    node = xas[X_NODE]
    order = xas[X_SHIFT]
    index = xas[X_INDEX]
    if xas_error(xas) != 0:
        return 0
    if node_is_top(node):
        head = H[xa, H_HEAD]
        if head == 0 and xa_zero_busy(H, xa):
            head = np.int64(XA_ZERO_ENTRY)
        mx = xas_max(xas)
        if head == 0:
            shift = 0
            if mx != 0:
                while not ult(lsr(mx, shift), np.int64(XA_CHUNK_SIZE)):
                    shift += XA_CHUNK_SHIFT
                shift += XA_CHUNK_SHIFT
            if shift == 0 and not allow_root:
                shift = XA_CHUNK_SHIFT
            need = 0
            while shift > order:
                shift -= XA_CHUNK_SHIFT
                need += 1
            return need
        if xa_is_node(head):
            shift = P.meta[xa_to_node(head), M_SHIFT] + XA_CHUNK_SHIFT
        else:
            shift = 0
        mi = max_index(P, head)
        nexp = 0
        while ult(mi, mx):
            mi = (np.int64(XA_CHUNK_SIZE) << shift) - 1
            shift += XA_CHUNK_SHIFT
            nexp += 1
        if shift == 0 and not allow_root:
            shift = XA_CHUNK_SHIFT
        need = nexp
        for _ in range(nexp):
            if shift <= order:
                return need
            shift -= XA_CHUNK_SHIFT
            if get_offset(index, shift) != 0:  # a new top node's other slots are empty
                while shift > order:
                    shift -= XA_CHUNK_SHIFT
                    need += 1
                return need
        return need + _descend_need(P, head, shift, order, index)
    if node >= 0:
        return _descend_need(P, P.slots[node, xas[X_OFFSET]], P.meta[node, M_SHIFT], order, index)
    return _descend_need(P, H[xa, H_HEAD], 0, order, index)


@njit
def _nomem(P, xas, need):
    """Fail with -ENOMEM unless ``need`` nodes are on the free stack."""
    if need > P.ctl[C_FREE_TOP]:
        P.ctl[C_WANT] = need
        xas_set_err(xas, -ENOMEM)
        return True
    return False


@njit
def xas_expand(P, H, xas, head):
    xa = xas[X_XA]
    node = np.int64(-1)
    shift = 0
    mx = xas_max(xas)
    if head == 0:
        if mx == 0:
            return 0
        while not ult(lsr(mx, shift), np.int64(XA_CHUNK_SIZE)):
            shift += XA_CHUNK_SHIFT
        return shift + XA_CHUNK_SHIFT
    elif xa_is_node(head):
        node = xa_to_node(head)
        shift = P.meta[node, M_SHIFT] + XA_CHUNK_SHIFT
    xas[X_NODE] = NODE_NULL
    while ult(max_index(P, head), mx):
        node = xas_alloc(P, H, xas, shift)
        if node < 0:
            return -ENOMEM
        P.meta[node, M_COUNT] = 1
        if xa_is_value(head):
            P.meta[node, M_NRVAL] = 1
        P.slots[node, 0] = head
        # Propagate the aggregated mark info to the new child
        for mark in range(XA_MAX_MARKS):
            if xa_track_free(H, xa) and mark == XA_FREE_MARK:
                node_mark_all(P, node, XA_FREE_MARK)
                if not xa_marked(H, xa, XA_FREE_MARK):
                    node_clear_mark(P, node, 0, XA_FREE_MARK)
                    xa_mark_set(H, xa, XA_FREE_MARK)
            elif xa_marked(H, xa, mark):
                node_set_mark(P, node, 0, mark)
        if xa_is_node(head):
            P.meta[xa_to_node(head), M_OFFSET] = 0
            P.meta[xa_to_node(head), M_PARENT] = node
        head = xa_mk_node(node)
        H[xa, H_HEAD] = head
        shift += XA_CHUNK_SHIFT
    xas[X_NODE] = node
    return shift


@njit
def xas_create(P, H, xas, allow_root):
    """Create the slot for ``xas`` (returns its current entry).  Unlike the kernel, which
    allocates node by node and may stop half way, this first checks that the free stack
    holds every node it will need and otherwise fails with -ENOMEM having changed nothing."""
    xa = xas[X_XA]
    node = xas[X_NODE]
    order = xas[X_SHIFT]
    if xas_error(xas) != 0:
        return np.int64(0)
    if P.ctl[C_FREE_TOP] < XA_MAX_PATH:
        if _nomem(P, xas, xas_create_need(P, H, xas, allow_root)):
            return np.int64(0)
    snode = np.int64(-1)
    soff = np.int64(0)
    if node_is_top(node):
        entry = H[xa, H_HEAD]
        xas[X_NODE] = NODE_NULL
        if entry == 0 and xa_zero_busy(H, xa):
            entry = np.int64(XA_ZERO_ENTRY)
        shift = xas_expand(P, H, xas, entry)
        if shift < 0:
            return np.int64(0)
        if shift == 0 and not allow_root:
            shift = XA_CHUNK_SHIFT
        entry = H[xa, H_HEAD]
    elif node >= 0:
        soff = xas[X_OFFSET]
        shift = P.meta[node, M_SHIFT]
        entry = P.slots[node, soff]
        snode = node
    else:
        shift = 0
        entry = H[xa, H_HEAD]
    while shift > order:
        shift -= XA_CHUNK_SHIFT
        if entry == 0:
            node = xas_alloc(P, H, xas, shift)
            if node < 0:
                break
            if xa_track_free(H, xa):
                node_mark_all(P, node, XA_FREE_MARK)
            _set_slot(P, H, xa, snode, soff, xa_mk_node(node))
        elif xa_is_node(entry):
            node = xa_to_node(entry)
        else:
            break
        entry = xas_descend(P, xas, node)
        snode = node
        soff = xas[X_OFFSET]
    return entry


@njit
def xas_create_range_need(P, H, xas):
    """Worst case of the nodes ``xas_create_range`` allocates: every node at every level
    that covers the range, plus the expansion of the top."""
    lo = xas[X_INDEX]
    hi = lo | (((xas[X_SIBS] + 1) << xas[X_SHIFT]) - 1)
    top = 0
    while not ult(lsr(hi, top), np.int64(XA_CHUNK_SIZE)):
        top += XA_CHUNK_SHIFT
    need = 0
    s = 0
    while s <= top:
        need += lsr(hi, s + XA_CHUNK_SHIFT) - lsr(lo, s + XA_CHUNK_SHIFT) + 1
        s += XA_CHUNK_SHIFT
    return need + XA_MAX_PATH


@njit
def xas_create_range(P, H, xas):
    index = xas[X_INDEX]
    shift = xas[X_SHIFT]
    sibs = xas[X_SIBS]
    if xas_error(xas) != 0:
        return
    if P.ctl[C_FREE_TOP] < xas_create_range_need(P, H, xas):
        if _nomem(P, xas, xas_create_range_need(P, H, xas)):
            return
    xas[X_INDEX] = xas[X_INDEX] | (((sibs + 1) << shift) - 1)
    if xas_is_node(xas) and P.meta[xas[X_NODE], M_SHIFT] == xas[X_SHIFT]:
        xas[X_OFFSET] = xas[X_OFFSET] | sibs
    xas[X_SHIFT] = 0
    xas[X_SIBS] = 0
    while True:
        xas_create(P, H, xas, True)
        if xas_error(xas) != 0:
            xas[X_SHIFT] = shift
            xas[X_SIBS] = sibs
            xas[X_INDEX] = index
            return
        if ule(xas[X_INDEX], index | XA_CHUNK_MASK):
            break
        xas[X_INDEX] = xas[X_INDEX] - XA_CHUNK_SIZE
        while True:
            node = xas[X_NODE]
            if node < 0 or P.meta[node, M_SHIFT] >= shift:
                break
            xas[X_NODE] = P.meta[node, M_PARENT]
            xas[X_OFFSET] = P.meta[node, M_OFFSET] - 1
            if P.meta[node, M_OFFSET] != 0:
                break
    xas[X_INDEX] = index
    if xas[X_NODE] >= 0:
        xas_set_offset(P, xas)


# =============================================================================================
# marks (xas_get_mark, xas_set_mark, xas_clear_mark, xas_init_marks, xas_squash_marks)
# =============================================================================================

@njit
def xas_get_mark(P, H, xas, mark):
    if xas_invalid(xas):
        return False
    node = xas[X_NODE]
    if node < 0:
        return xa_marked(H, xas[X_XA], mark)
    return node_get_mark(P, node, xas[X_OFFSET], mark)


@njit
def xas_set_mark(P, H, xas, mark):
    node = xas[X_NODE]
    offset = xas[X_OFFSET]
    if xas_invalid(xas):
        return
    while node >= 0:
        if node_set_mark(P, node, offset, mark):
            return
        offset = P.meta[node, M_OFFSET]
        node = P.meta[node, M_PARENT]
    if not xa_marked(H, xas[X_XA], mark):
        xa_mark_set(H, xas[X_XA], mark)


@njit
def xas_clear_mark(P, H, xas, mark):
    node = xas[X_NODE]
    offset = xas[X_OFFSET]
    if xas_invalid(xas):
        return
    while node >= 0:
        if not node_clear_mark(P, node, offset, mark):
            return
        if node_any_mark(P, node, mark):
            return
        offset = P.meta[node, M_OFFSET]
        node = P.meta[node, M_PARENT]
    if xa_marked(H, xas[X_XA], mark):
        xa_mark_clear(H, xas[X_XA], mark)


@njit
def xas_init_marks(P, H, xas):
    for mark in range(XA_MAX_MARKS):
        if xa_track_free(H, xas[X_XA]) and mark == XA_FREE_MARK:
            xas_set_mark(P, H, xas, mark)
        else:
            xas_clear_mark(P, H, xas, mark)


@njit
def xas_squash_marks(P, xas):
    node = xas[X_NODE]
    offset = xas[X_OFFSET]
    sibs = xas[X_SIBS]
    above = low_bits(sibs) << (offset + 1)
    for mark in range(XA_MAX_MARKS):
        if (P.marks[node, mark] & above) != 0:
            P.marks[node, mark] = (P.marks[node, mark] | (np.int64(1) << offset)) & ~above


# =============================================================================================
# storing (xas_store, update_node)
# =============================================================================================

@njit
def update_node(P, H, xas, node, count, values):
    if node < 0 or (count == 0 and values == 0):
        return
    P.meta[node, M_COUNT] += count
    P.meta[node, M_NRVAL] += values
    if count < 0:
        xas_delete_node(P, H, xas)


@njit
def xas_store(P, H, xas, entry):
    """Store ``entry`` at the range of ``xas``; returns the old entry (for a multi-index
    store, the last one replaced, as in the kernel).

    One change from the kernel: storing into part of a larger multi-index entry (an
    order-0 store at one of its indices) rewrites only its canonical slot, and the
    kernel's ``values`` count covers only the rewritten slots, so when the entry changes
    between value and pointer the sibling slots left in place are miscounted and
    ``nr_values`` drifts from its definition ("a value entry or a sibling of one"; a later
    erase can even take it below 0).  Here the siblings left in place are counted too."""
    xa = xas[X_XA]
    value = xa_is_value(entry)
    if entry != 0:
        allow_root = not xa_is_node(entry) and not xa_is_zero(entry)
        first = xas_create(P, H, xas, allow_root)
    else:
        first = xas_load(P, H, xas)
    if xas_invalid(xas):
        return first
    node = xas[X_NODE]
    if node >= 0 and xas[X_SHIFT] < P.meta[node, M_SHIFT]:
        xas[X_SIBS] = 0
    sibs = xas[X_SIBS]
    if first == entry and sibs == 0:
        return first
    nxt = first
    offset = xas[X_OFFSET]
    mx = offset + sibs
    if node >= 0 and sibs != 0:
        xas_squash_marks(P, xas)
    if entry == 0:
        xas_init_marks(P, H, xas)
    count = 0
    values = 0
    replaced = first
    while True:
        _set_slot(P, H, xa, node, offset, entry)
        if xa_is_node(nxt) and (node < 0 or P.meta[node, M_SHIFT] != 0):
            xas_free_nodes(P, H, xas, xa_to_node(nxt))
        if node < 0:
            break
        count += int(nxt == 0) - int(entry == 0)
        values += int(not xa_is_value(first)) - int(not value)
        if entry != 0:
            if offset == mx:
                break
            if not xa_is_sibling(entry):
                entry = xa_mk_sibling(xas[X_OFFSET])
        else:
            if offset == XA_CHUNK_MASK:
                break
        offset += 1
        nxt = P.slots[node, offset]
        if not xa_is_sibling(nxt):
            if entry == 0 and offset > mx:
                break
            first = nxt
    if node >= 0 and entry != 0 and value != xa_is_value(replaced):
        values += _siblings_left(P, node, offset + 1, xas[X_OFFSET]) * (1 if value else -1)
    update_node(P, H, xas, node, count, values)
    return first


@njit
def _siblings_left(P, node, offset, canon):
    """The sibling slots of ``canon`` from ``offset`` on."""
    n = 0
    sib = xa_mk_sibling(canon)
    while offset < XA_CHUNK_SIZE and P.slots[node, offset] == sib:
        n += 1
        offset += 1
    return n


# =============================================================================================
# iteration (xas_pause, xas_next, xas_prev, xas_find, xas_find_marked, xas_find_conflict)
# =============================================================================================

@njit
def xas_pause(P, xas):
    node = xas[X_NODE]
    if xas_invalid(xas):
        return
    xas[X_NODE] = XAS_RESTART
    if node >= 0:
        offset = xas[X_OFFSET]
        o = offset + 1
        while o < XA_CHUNK_SIZE:
            if not xa_is_sibling(P.slots[node, o]):
                break
            o += 1
        shift = P.meta[node, M_SHIFT]
        xas[X_INDEX] = xas[X_INDEX] & (np.int64(-1) << shift)
        xas[X_INDEX] = xas[X_INDEX] + (np.int64(o - offset) << shift)
        if xas[X_INDEX] == 0:
            xas[X_NODE] = XAS_BOUNDS
    else:
        xas[X_INDEX] = xas[X_INDEX] + 1


@njit
def _xas_step(P, H, xas, step):
    """The kernel's ``__xas_next`` (step 1) and ``__xas_prev`` (step -1), which differ
    only in the direction."""
    node = xas[X_NODE]
    if not node_frozen(node):
        xas[X_INDEX] = xas[X_INDEX] + step
    if node == NODE_NULL:
        return set_bounds(xas)
    if node_not_node(node):
        return xas_load(P, H, xas)
    if xas[X_OFFSET] != get_offset(xas[X_INDEX], P.meta[node, M_SHIFT]):
        xas[X_OFFSET] += step
    edge = XA_CHUNK_SIZE if step > 0 else -1
    while xas[X_OFFSET] == edge:
        xas[X_OFFSET] = P.meta[xas[X_NODE], M_OFFSET] + step
        xas[X_NODE] = P.meta[xas[X_NODE], M_PARENT]
        if xas[X_NODE] < 0:
            return set_bounds(xas)
    while True:
        entry = P.slots[xas[X_NODE], xas[X_OFFSET]]
        if not xa_is_node(entry):
            return entry
        xas[X_NODE] = xa_to_node(entry)
        xas_set_offset(P, xas)


@njit
def xas_prev(P, H, xas):
    node = xas[X_NODE]
    if node < 0 or P.meta[node, M_SHIFT] != 0 or xas[X_OFFSET] == 0:
        return _xas_step(P, H, xas, -1)
    xas[X_INDEX] = xas[X_INDEX] - 1
    xas[X_OFFSET] -= 1
    return P.slots[node, xas[X_OFFSET]]


@njit
def xas_next(P, H, xas):
    node = xas[X_NODE]
    if node < 0 or P.meta[node, M_SHIFT] != 0 or xas[X_OFFSET] == XA_CHUNK_MASK:
        return _xas_step(P, H, xas, 1)
    xas[X_INDEX] = xas[X_INDEX] + 1
    xas[X_OFFSET] += 1
    return P.slots[node, xas[X_OFFSET]]


@njit
def xas_find(P, H, xas, mx):
    if xas_error(xas) != 0 or xas[X_NODE] == XAS_BOUNDS:
        return np.int64(0)
    if ult(mx, xas[X_INDEX]):
        return set_bounds(xas)
    node = xas[X_NODE]
    if node == NODE_NULL:
        xas[X_INDEX] = 1
        return set_bounds(xas)
    elif node == XAS_RESTART:
        entry = xas_load(P, H, xas)
        if entry != 0 or node_not_node(xas[X_NODE]):
            return entry
    elif xas[X_OFFSET] != get_offset(xas[X_INDEX], P.meta[node, M_SHIFT]):
        if P.meta[node, M_SHIFT] == 0:
            xas[X_OFFSET] = ((xas[X_INDEX] - 1) & XA_CHUNK_MASK) + 1
        else:
            xas[X_OFFSET] = get_offset(xas[X_INDEX], P.meta[node, M_SHIFT])
    xas_next_offset(P, xas)
    while xas[X_NODE] >= 0 and ule(xas[X_INDEX], mx):
        node = xas[X_NODE]
        if xas[X_OFFSET] == XA_CHUNK_SIZE:
            xas[X_OFFSET] = P.meta[node, M_OFFSET] + 1
            xas[X_NODE] = P.meta[node, M_PARENT]
            continue
        entry = P.slots[node, xas[X_OFFSET]]
        if xa_is_node(entry):
            xas[X_NODE] = xa_to_node(entry)
            xas[X_OFFSET] = 0
            continue
        if entry != 0 and not xa_is_sibling(entry):
            return entry
        xas_next_offset(P, xas)
    if xas[X_NODE] < 0:
        xas[X_NODE] = XAS_BOUNDS
    return np.int64(0)


@njit
def xas_next_entry(P, H, xas, mx):
    """The inline fast path of ``xas_for_each``."""
    node = xas[X_NODE]
    if node < 0 or P.meta[node, M_SHIFT] != 0 or xas[X_OFFSET] != (xas[X_INDEX] & XA_CHUNK_MASK):
        return xas_find(P, H, xas, mx)
    while True:
        if ule(mx, xas[X_INDEX]):
            return xas_find(P, H, xas, mx)
        if xas[X_OFFSET] == XA_CHUNK_MASK:
            return xas_find(P, H, xas, mx)
        entry = P.slots[node, xas[X_OFFSET] + 1]
        if xa_is_internal(entry):
            return xas_find(P, H, xas, mx)
        xas[X_OFFSET] += 1
        xas[X_INDEX] = xas[X_INDEX] + 1
        if entry != 0:
            return entry


@njit
def xas_find_chunk(P, xas, advance, mark):
    data = P.marks[xas[X_NODE], mark]
    offset = xas[X_OFFSET]
    if advance:
        offset += 1
    if offset < XA_CHUNK_SIZE:
        data = data & (np.int64(-1) << offset)
        if data != 0:
            return np.int64(ctz64(data))
    return np.int64(XA_CHUNK_SIZE)


@njit
def _marked_max(xas):
    """The ``max:`` label of xas_find_marked: nothing up to max."""
    xas[X_NODE] = XAS_RESTART
    return np.int64(0)


@njit
def _marked_out(xas, mx):
    """The ``out:`` label of xas_find_marked: past the end of the tree."""
    if ult(mx, xas[X_INDEX]):
        return _marked_max(xas)
    return set_bounds(xas)


@njit
def xas_find_marked(P, H, xas, mx, mark):
    """``xas_find_marked``.  One change: where the kernel ``continue``s on a NULL or
    sibling slot whose mark bit is set (which only a broken tree has), this advances
    instead of spinning on the same slot."""
    xa = xas[X_XA]
    advance = True
    if xas_error(xas) != 0:
        return np.int64(0)
    if ult(mx, xas[X_INDEX]):
        return _marked_max(xas)
    node = xas[X_NODE]
    if node == NODE_NULL:
        xas[X_INDEX] = 1
        return _marked_out(xas, mx)
    elif node_is_top(node):
        advance = False
        entry = H[xa, H_HEAD]
        xas[X_NODE] = NODE_NULL
        if ult(max_index(P, entry), xas[X_INDEX]):
            return _marked_out(xas, mx)
        if not xa_is_node(entry):
            if xa_marked(H, xa, mark):
                return entry
            xas[X_INDEX] = 1
            return _marked_out(xas, mx)
        xas[X_NODE] = xa_to_node(entry)
        xas[X_OFFSET] = lsr(xas[X_INDEX], P.meta[xas[X_NODE], M_SHIFT])
    while ule(xas[X_INDEX], mx):
        node = xas[X_NODE]
        if xas[X_OFFSET] == XA_CHUNK_SIZE:
            xas[X_OFFSET] = P.meta[node, M_OFFSET] + 1
            xas[X_NODE] = P.meta[node, M_PARENT]
            if xas[X_NODE] < 0:
                break
            advance = False
            continue
        if not advance:
            entry = P.slots[node, xas[X_OFFSET]]
            if xa_is_sibling(entry):
                xas[X_OFFSET] = entry >> 2
                xas_move_index(P, xas, xas[X_OFFSET])
        offset = xas_find_chunk(P, xas, advance, mark)
        if offset > xas[X_OFFSET]:
            advance = False
            xas_move_index(P, xas, offset)
            # Mind the wrap
            if ule(mx, xas[X_INDEX] - 1):
                return _marked_max(xas)
            xas[X_OFFSET] = offset
            if offset == XA_CHUNK_SIZE:
                continue
        entry = P.slots[node, xas[X_OFFSET]]
        if entry == 0 and not (xa_track_free(H, xa) and mark == XA_FREE_MARK):
            advance = True
            continue
        if xa_is_sibling(entry):
            advance = True
            continue
        if not xa_is_node(entry):
            return entry
        xas[X_NODE] = xa_to_node(entry)
        xas_set_offset(P, xas)
    return _marked_out(xas, mx)


@njit
def xas_next_marked(P, H, xas, mx, mark):
    """The inline fast path of ``xas_for_each_marked``."""
    node = xas[X_NODE]
    if node < 0 or P.meta[node, M_SHIFT] != 0:
        return xas_find_marked(P, H, xas, mx, mark)
    offset = xas_find_chunk(P, xas, True, mark)
    xas[X_OFFSET] = offset
    xas[X_INDEX] = (xas[X_INDEX] & ~np.int64(XA_CHUNK_MASK)) + offset
    if ult(mx, xas[X_INDEX]):
        return np.int64(0)
    if offset == XA_CHUNK_SIZE:
        return xas_find_marked(P, H, xas, mx, mark)
    entry = P.slots[node, offset]
    if entry == 0:
        return xas_find_marked(P, H, xas, mx, mark)
    return entry


@njit
def xas_find_conflict(P, H, xas):
    if xas_error(xas) != 0:
        return np.int64(0)
    if xas[X_NODE] == NODE_NULL:
        return np.int64(0)
    if node_is_top(xas[X_NODE]):
        curr = xas_start(P, H, xas)
        if curr == 0:
            return np.int64(0)
        while xa_is_node(curr):
            curr = xas_descend(P, xas, xa_to_node(curr))
        if curr != 0:
            return curr
    if xas[X_NODE] < 0:  # a single entry at the head was not a conflict
        return np.int64(0)
    if P.meta[xas[X_NODE], M_SHIFT] > xas[X_SHIFT]:
        return np.int64(0)
    while True:
        node = xas[X_NODE]
        if P.meta[node, M_SHIFT] == xas[X_SHIFT]:
            if (xas[X_OFFSET] & xas[X_SIBS]) == xas[X_SIBS]:
                break
        elif xas[X_OFFSET] == XA_CHUNK_MASK:
            xas[X_OFFSET] = P.meta[node, M_OFFSET]
            xas[X_NODE] = P.meta[node, M_PARENT]
            if xas[X_NODE] < 0:
                break
            continue
        xas[X_OFFSET] += 1
        curr = P.slots[node, xas[X_OFFSET]]
        if xa_is_sibling(curr):
            continue
        while xa_is_node(curr):
            xas[X_NODE] = xa_to_node(curr)
            xas[X_OFFSET] = 0
            curr = P.slots[xas[X_NODE], 0]
        if curr != 0:
            return curr
    xas[X_OFFSET] = xas[X_OFFSET] - xas[X_SIBS]
    return np.int64(0)


@njit
def xas_get_order(P, xas):
    node = xas[X_NODE]
    if node < 0:
        return np.int64(0)
    order = 0
    while True:
        slot = xas[X_OFFSET] + (1 << order)
        if slot >= XA_CHUNK_SIZE:
            break
        if not xa_is_sibling(P.slots[node, slot]):
            break
        order += 1
    return order + P.meta[node, M_SHIFT]


# =============================================================================================
# splitting (xas_split, xas_try_split)
# =============================================================================================

@njit
def node_get_marks(P, node, offset):
    marks = 0
    for mark in range(XA_MAX_MARKS):
        if node_get_mark(P, node, offset, mark):
            marks |= 1 << mark
    return marks


@njit
def node_mark_slots(P, node, sibs, mark):
    if sibs == 0:
        node_mark_all(P, node, mark)
    else:
        i = 0
        while i < XA_CHUNK_SIZE:
            node_set_mark(P, node, i, mark)
            i += sibs + 1


@njit
def node_set_marks(P, node, offset, child, sibs, marks):
    for mark in range(XA_MAX_MARKS):
        if marks & (1 << mark):
            node_set_mark(P, node, offset, mark)
            if child >= 0:
                node_mark_slots(P, child, sibs, mark)


@njit
def __xas_init_node_for_split(P, xas, node, entry):
    mask = xas[X_SIBS]
    sibling = np.int64(0)
    P.meta[node, M_ARRAY] = xas[X_XA]
    for i in range(XA_CHUNK_SIZE):
        if (i & mask) == 0:
            P.slots[node, i] = entry
            sibling = xa_mk_sibling(np.int64(i))
        else:
            P.slots[node, i] = sibling


@njit
def xas_split_need(xas, order):
    """Nodes ``xas_split`` needs to split an ``order`` entry to the order of ``xas``
    (``xas_split_alloc``); -EINVAL for a split of more than one level."""
    if xas[X_SHIFT] + 2 * XA_CHUNK_SHIFT <= order:
        return -EINVAL
    if xas[X_SHIFT] + XA_CHUNK_SHIFT > order:
        return 0
    return 1 << (order % XA_CHUNK_SHIFT)


@njit
def _split_child(P, H, xas, node, offset, entry, curr, marks):
    child = xa_node_take(P, H, xas[X_XA])
    __xas_init_node_for_split(P, xas, child, entry)
    P.meta[child, M_SHIFT] = P.meta[node, M_SHIFT] - XA_CHUNK_SHIFT
    P.meta[child, M_OFFSET] = offset
    P.meta[child, M_COUNT] = XA_CHUNK_SIZE
    P.meta[child, M_NRVAL] = XA_CHUNK_SIZE if xa_is_value(entry) else 0
    P.meta[child, M_PARENT] = node
    node_set_marks(P, node, offset, child, xas[X_SIBS], marks)
    P.slots[node, offset] = xa_mk_node(child)
    return -1 if xa_is_value(curr) else 0


@njit
def _split_here(P, xas, node, offset, entry, curr, marks):
    canon = offset - xas[X_SIBS]
    node_set_marks(P, node, canon, np.int64(-1), 0, marks)
    P.slots[node, canon] = entry
    while offset > canon:
        P.slots[node, offset] = xa_mk_sibling(canon)
        offset -= 1
    return (int(xa_is_value(entry)) - int(xa_is_value(curr))) * (xas[X_SIBS] + 1), offset


@njit
def _xas_split(P, H, xas, entry, order, one_node):
    sibs = (1 << (order % XA_CHUNK_SHIFT)) - 1
    curr = xas_load(P, H, xas)
    node = xas[X_NODE]
    if node_is_top(node) or node < 0:
        return
    if one_node:
        if xas[X_SHIFT] < P.meta[node, M_SHIFT]:
            expected_sibs = (1 << ((order - 1) % XA_CHUNK_SHIFT)) - 1
            if sibs != 0 or xas[X_SIBS] != expected_sibs:
                xas_set_err(xas, -EINVAL)
                return
            if _nomem(P, xas, 1):
                return
    else:
        need = xas_split_need(xas, order)
        if need < 0:
            xas_set_err(xas, need)
            return
        if _nomem(P, xas, need):
            return
    marks = node_get_marks(P, node, xas[X_OFFSET])
    offset = xas[X_OFFSET] + sibs
    values = 0
    while True:
        if xas[X_SHIFT] < P.meta[node, M_SHIFT]:
            values += _split_child(P, H, xas, node, offset, entry, curr, marks)
        else:
            v, offset = _split_here(P, xas, node, offset, entry, curr, marks)
            values += v
        if not offset > xas[X_OFFSET]:
            break
        offset -= 1
    P.meta[node, M_NRVAL] += values


@njit
def xas_split(P, H, xas, entry, order):
    """Split the ``order`` entry at ``xas`` into entries of the order of ``xas``, each
    ``entry``.  The nodes the kernel gets from ``xas_split_alloc`` are taken from the free
    stack; if it holds too few this fails with -ENOMEM having changed nothing."""
    _xas_split(P, H, xas, entry, order, False)


@njit
def xas_try_split_min_order(order):
    if order % XA_CHUNK_SHIFT == 0:
        return 0 if order == 0 else order - 1
    return order - (order % XA_CHUNK_SHIFT)


@njit
def xas_try_split(P, H, xas, entry, order):
    """``xas_try_split``: split using at most one new node (taken from the free stack);
    -EINVAL if the split needs more."""
    _xas_split(P, H, xas, entry, order, True)


# =============================================================================================
# the normal API (xa_*) on the pool's scratch xa_state
# =============================================================================================

@njit
def xas_result(xas, curr):
    """The result of a normal-API store: ``curr``, or the error entry.  (Callers turn zero
    entries into NULL themselves, as the kernel does since xa_zero_to_null() was added.)"""
    if xas_error(xas) != 0:
        return xa_error_entry(xas_error(xas))
    return curr


@njit
def xa_load_nb(P, H, xa, index):
    """``xa_load``; a retry entry (only the advanced API stores one) is returned as it is
    instead of being waited for."""
    xas = P.xas
    xas_init(xas, xa, index)
    return xa_zero_to_null(xas_load(P, H, xas))


@njit
def xa_erase_nb(P, H, xa, index):
    xas = P.xas
    xas_init(xas, xa, index)
    return xas_result(xas, xa_zero_to_null(xas_store(P, H, xas, np.int64(0))))


@njit
def xa_store_nb(P, H, xa, index, entry):
    """``__xa_store``: the old entry, or XA_ERROR(-EINVAL / -ENOMEM)."""
    if xa_is_advanced(entry):
        return xa_error_entry(-EINVAL)
    if xa_track_free(H, xa) and entry == 0:
        entry = np.int64(XA_ZERO_ENTRY)
    xas = P.xas
    xas_init(xas, xa, index)
    curr = xas_store(P, H, xas, entry)
    if xa_track_free(H, xa):
        xas_clear_mark(P, H, xas, XA_FREE_MARK)
    return xas_result(xas, xa_zero_to_null(curr))


@njit
def xa_store_order_nb(P, H, xa, index, order, entry):
    """Store ``entry`` as an order-``order`` entry (test_xarray.c's ``xa_store_order``,
    the page cache's way of adding a folio): the old entry or an error entry."""
    xas = P.xas
    xas_init(xas, xa, 0)
    xas_set_order(xas, index, order)
    curr = xas_store(P, H, xas, entry)
    if xas_error(xas) != 0:
        return xa_error_entry(xas_error(xas))
    return curr


@njit
def xa_cmpxchg_raw_nb(P, H, xa, index, old, entry):
    if xa_is_advanced(entry):
        return xa_error_entry(-EINVAL)
    xas = P.xas
    xas_init(xas, xa, index)
    curr = xas_load(P, H, xas)
    if curr == old:
        xas_store(P, H, xas, entry)
        if xa_track_free(H, xa) and entry != 0 and curr == 0:
            xas_clear_mark(P, H, xas, XA_FREE_MARK)
    return xas_result(xas, curr)


@njit
def xa_cmpxchg_nb(P, H, xa, index, old, entry):
    return xa_zero_to_null(xa_cmpxchg_raw_nb(P, H, xa, index, old, entry))


@njit
def xa_insert_nb(P, H, xa, index, entry):
    """``__xa_insert``: 0, -EBUSY, -EINVAL or -ENOMEM."""
    if entry == 0:
        entry = np.int64(XA_ZERO_ENTRY)
    curr = xa_cmpxchg_raw_nb(P, H, xa, index, np.int64(0), entry)
    err = xa_err(curr)
    if err != 0:
        return err
    return np.int64(-EBUSY) if curr != 0 else np.int64(0)


@njit
def xa_reserve_nb(P, H, xa, index):
    return xa_err(xa_cmpxchg_nb(P, H, xa, index, np.int64(0), np.int64(XA_ZERO_ENTRY)))


@njit
def xa_release_nb(P, H, xa, index):
    xa_cmpxchg_nb(P, H, xa, index, np.int64(XA_ZERO_ENTRY), np.int64(0))


@njit
def xas_set_range(xas, first, last):
    shift = 0
    sibs = last - first
    offset = XA_CHUNK_MASK
    xas_set(xas, first)
    while (first & XA_CHUNK_MASK) == 0:
        if ult(sibs, np.int64(XA_CHUNK_MASK)):
            break
        if sibs == XA_CHUNK_MASK and offset < XA_CHUNK_MASK:
            break
        shift += XA_CHUNK_SHIFT
        if offset == XA_CHUNK_MASK:
            offset = sibs & XA_CHUNK_MASK
        sibs = lsr(sibs, XA_CHUNK_SHIFT)
        first = lsr(first, XA_CHUNK_SHIFT)
    offset = first & XA_CHUNK_MASK
    if ult(np.int64(XA_CHUNK_MASK), offset + sibs):  # unsigned long in C
        sibs = XA_CHUNK_MASK - offset
    if ult(last, (((first + sibs + 1) << shift) - 1)):
        sibs -= 1
    xas[X_SHIFT] = shift
    xas[X_SIBS] = sibs


@njit
def xa_store_range_nb(P, H, xa, first, last, entry):
    """``xa_store_range``: 0 (NULL) or an error entry (-EINVAL also for the whole index
    space 0 .. ULONG_MAX, which the kernel cannot store).  Before changing anything it checks
    that the free stack holds the nodes of the two root-to-leaf paths of ``first`` and
    ``last`` (a worst case: every node it creates lies on them)."""
    if xa_is_internal(entry):
        return xa_error_entry(-EINVAL)
    if ult(last, first):
        return xa_error_entry(-EINVAL)
    if first == 0 and last == -1:
        # the whole index space: its single piece, 16 << 60, wraps to 0 (the kernel's
        # loop would not end) and an order-64 entry cannot be stored (xas_max wraps)
        return xa_error_entry(-EINVAL)
    xas = P.xas
    if entry != 0:
        xas_init(xas, xa, first)
        need = xas_create_need(P, H, xas, True)
        xas_init(xas, xa, last)
        need += xas_create_need(P, H, xas, True)
        if _nomem(P, xas, need):
            return xa_error_entry(-ENOMEM)
    xas_init(xas, xa, 0)
    if entry != 0:
        order = 64
        if last + 1 != 0:
            order = ctz64(last + 1)
        xas_set_order(xas, last, order)
        xas_create(P, H, xas, True)
        if xas_error(xas) != 0:
            return xa_error_entry(xas_error(xas))
    while True:
        xas_set_range(xas, first, last)
        xas_store(P, H, xas, entry)
        if xas_error(xas) != 0:
            return xa_error_entry(xas_error(xas))
        step = xas_size(xas)
        nxt = first + step
        if step == 0 or ule(nxt, first):  # the last piece ends at ULONG_MAX
            break
        first = nxt
        if ult(last, first):
            break
    return np.int64(0)


@njit
def xa_get_order_nb(P, H, xa, index):
    xas = P.xas
    xas_init(xas, xa, index)
    entry = xas_load(P, H, xas)
    if entry != 0:
        return xas_get_order(P, xas)
    return np.int64(0)


@njit
def __xa_alloc(P, H, xa, lmin, lmax, entry):
    """``__xa_alloc`` (limits are u32): returns (err, id)."""
    if xa_is_advanced(entry):
        return np.int64(-EINVAL), np.int64(0)
    if not xa_track_free(H, xa):
        return np.int64(-EINVAL), np.int64(0)
    if entry == 0:
        entry = np.int64(XA_ZERO_ENTRY)
    xas = P.xas
    xas_init(xas, xa, lmin)
    ident = np.int64(0)
    xas_find_marked(P, H, xas, lmax, XA_FREE_MARK)
    if xas[X_NODE] == XAS_RESTART:
        xas_set_err(xas, -EBUSY)
    else:
        ident = xas[X_INDEX]
    xas_store(P, H, xas, entry)
    xas_clear_mark(P, H, xas, XA_FREE_MARK)
    return xas_error(xas), ident


@njit
def xa_alloc_nb(P, H, xa, lmin, lmax, entry):
    return __xa_alloc(P, H, xa, lmin, lmax, entry)


@njit
def xa_alloc_cyclic_nb(P, H, xa, lmin, lmax, nxt, entry):
    """``__xa_alloc_cyclic``: returns (ret, id, next); ret is 1 if the allocation wrapped."""
    mn = lmin
    start = lmin if lmin > nxt else nxt
    ret, ident = __xa_alloc(P, H, xa, start, lmax, entry)
    if ret == -ENOMEM:
        return ret, ident, nxt
    if (H[xa, H_FLAGS] & XA_FLAGS_ALLOC_WRAPPED) != 0 and ret == 0:
        H[xa, H_FLAGS] &= ~np.int64(XA_FLAGS_ALLOC_WRAPPED)
        ret = np.int64(1)
    if ret < 0 and start > mn:
        ret, ident = __xa_alloc(P, H, xa, mn, lmax, entry)
        if ret == 0:
            ret = np.int64(1)
    if ret >= 0:
        nxt = (ident + 1) & 0xFFFFFFFF
        if nxt == 0:
            H[xa, H_FLAGS] |= XA_FLAGS_ALLOC_WRAPPED
    return ret, ident, nxt


@njit
def xa_change_mark_nb(P, H, xa, index, mark, set_it):
    """``__xa_set_mark`` (set_it) and ``__xa_clear_mark``: no effect on a NULL entry."""
    xas = P.xas
    xas_init(xas, xa, index)
    if xas_load(P, H, xas) != 0:
        if set_it:
            xas_set_mark(P, H, xas, mark)
        else:
            xas_clear_mark(P, H, xas, mark)


@njit
def xa_set_mark_nb(P, H, xa, index, mark):
    xa_change_mark_nb(P, H, xa, index, mark, True)


@njit
def xa_clear_mark_nb(P, H, xa, index, mark):
    xa_change_mark_nb(P, H, xa, index, mark, False)


@njit
def xa_get_mark_nb(P, H, xa, index, mark):
    xas = P.xas
    xas_init(xas, xa, index)
    entry = xas_start(P, H, xas)
    while xas_get_mark(P, H, xas, mark):
        if not xa_is_node(entry):
            return True
        entry = xas_descend(P, xas, xa_to_node(entry))
    return False


@njit
def _find(P, H, xas, mx, filt):
    if filt < XA_MAX_MARKS:
        return xas_find_marked(P, H, xas, mx, filt)
    return xas_find(P, H, xas, mx)


@njit
def xa_find_nb(P, H, xa, start, mx, filt):
    """``xa_find``: (entry, index) of the first entry at or after ``start`` and at most
    ``mx`` that has mark ``filt`` (or is present, XA_PRESENT); (0, start) if none.
    Zero (reserved) and retry entries are skipped."""
    xas = P.xas
    xas_init(xas, xa, start)
    while True:
        entry = _find(P, H, xas, mx, filt)
        if not (xa_is_zero(entry) or xa_is_retry(entry)):
            break
    if entry != 0:
        return entry, xas[X_INDEX]
    return np.int64(0), start


@njit
def xas_sibling(P, xas):
    node = xas[X_NODE]
    if node < 0:
        return False
    shift = P.meta[node, M_SHIFT]
    mask = (np.int64(XA_CHUNK_SIZE) << shift) - 1
    return ult(xas[X_OFFSET] << shift, xas[X_INDEX] & mask)


@njit
def xa_find_after_nb(P, H, xa, index, mx, filt):
    """``xa_find_after``: like xa_find_nb, for entries above ``index``."""
    xas = P.xas
    xas_init(xas, xa, index + 1)
    if xas[X_INDEX] == 0:
        return np.int64(0), index
    while True:
        entry = _find(P, H, xas, mx, filt)
        if xas_invalid(xas):
            break
        if xas_sibling(P, xas):
            continue
        if not (xa_is_zero(entry) or xa_is_retry(entry)):
            break
    if entry != 0:
        return entry, xas[X_INDEX]
    return np.int64(0), index


@njit
def xa_destroy_nb(P, H, xa):
    xas = P.xas
    xas_init(xas, xa, 0)
    xas[X_NODE] = NODE_NULL
    entry = H[xa, H_HEAD]
    H[xa, H_HEAD] = 0
    xas_init_marks(P, H, xas)
    if xa_zero_busy(H, xa):
        xa_mark_clear(H, xa, XA_FREE_MARK)
    if xa_is_node(entry):
        xas_free_nodes(P, H, xas, xa_to_node(entry))


@njit
def xa_nodes_needed_nb(P, H, xa, index, order=0):
    """Nodes a store of an order-``order`` entry at ``index`` could need right now (the
    worst case over entry kinds: an entry that may not sit in the head), for preloading.
    Any single-index store needs at most XA_MAX_PATH (11)."""
    xas = P.xas
    xas_init(xas, xa, 0)
    xas_set_order(xas, index, order)
    return xas_create_need(P, H, xas, False)


# =============================================================================================
# bulk helpers for the facade (counting, extracting, object-table sweeps, checking)
# =============================================================================================

@njit
def xa_extract_nb(P, H, xa, index, mx, filt, after, out_index, out_entry):
    """Fill ``out_*`` with the (index, entry) pairs ``xa_for_each_range`` visits, starting
    with ``xa_find(index)`` (or ``xa_find_after(index)`` if ``after``).  Returns the count;
    fewer than ``len(out_index)`` means the iteration is over."""
    n = 0
    cap = out_index.shape[0]
    while n < cap:
        if after:
            entry, index = xa_find_after_nb(P, H, xa, index, mx, filt)
        else:
            entry, index = xa_find_nb(P, H, xa, index, mx, filt)
        if entry == 0:
            break
        out_index[n] = index
        out_entry[n] = entry
        n += 1
        after = True
    return n


@njit
def xa_count_nb(P, H, xa):
    """The number of entries ``xa_for_each`` visits (multi-index entries once)."""
    n = 0
    xas = P.xas
    xas_init(xas, xa, 0)
    entry = xas_find(P, H, xas, np.int64(-1))
    while entry != 0:
        if not (xa_is_zero(entry) or xa_is_retry(entry)):
            n += 1
        entry = xas_next_entry(P, H, xas, np.int64(-1))
    return n


@njit
def xa_collect_pointers_nb(P, H, xa, out):
    """Write the pointer entries (low bits 00) of the tree into ``out`` (duplicates
    possible); returns how many there are, even if more than fit."""
    n = 0
    head = H[xa, H_HEAD]
    if not xa_is_node(head):
        if head != 0 and (head & 3) == 0:
            if n < out.shape[0]:
                out[n] = head
            n += 1
        return n
    top = xa_to_node(head)
    node = top
    offset = 0
    while True:
        entry = P.slots[node, offset]
        if P.meta[node, M_SHIFT] != 0 and xa_is_node(entry):
            node = xa_to_node(entry)
            offset = 0
            continue
        if entry != 0 and (entry & 3) == 0:
            if n < out.shape[0]:
                out[n] = entry
            n += 1
        offset += 1
        while offset == XA_CHUNK_SIZE:
            if node == top:
                return n
            offset = P.meta[node, M_OFFSET] + 1
            node = P.meta[node, M_PARENT]


# xa_check_nb error codes (facade turns them into messages)
CHK_OK = 0
CHK_COUNT = 1
CHK_NR_VALUES = 2
CHK_PARENT = 3
CHK_SHIFT = 4
CHK_ARRAY = 5
CHK_EMPTY_NODE = 6
CHK_SHRINKABLE = 7
CHK_SIBLING = 8
CHK_MARK_PROPAGATION = 9
CHK_MARK_ON_NULL = 10
CHK_ROOT_MARK = 11
CHK_NODE_COUNT = 12
CHK_STATE = 13
CHK_HEAD = 14


@njit
def xa_check_nb(P, H, xa, allow_empty, shrunk):
    """Check the structural invariants of one tree.  Returns (code, node, offset, mark),
    code CHK_OK if all hold.  ``allow_empty`` admits empty nodes (xas_create_range makes
    them on purpose).  ``shrunk`` also requires a top node that xas_shrink would not
    replace: the kernel shrinks only when entries go, so this fails after a reserved (or
    node) entry at index 0, which needs a node, is replaced by an ordinary entry."""
    head = H[xa, H_HEAD]
    track_free = xa_track_free(H, xa)
    if xa_is_sibling(head) or xa_is_err(head) or xa_is_retry(head):
        return CHK_HEAD, -1, -1, -1
    if not xa_is_node(head):
        if head == 0:
            for m in range(XA_MAX_MARKS):
                if xa_marked(H, xa, m) and not (track_free and m == XA_FREE_MARK):
                    return CHK_ROOT_MARK, -1, -1, m
        if H[xa, H_NODES] != 0:
            return CHK_NODE_COUNT, -1, -1, -1
        return CHK_OK, -1, -1, -1
    top = xa_to_node(head)
    if P.meta[top, M_PARENT] != -1:
        return CHK_PARENT, top, -1, -1
    for m in range(XA_MAX_MARKS):
        if track_free and m == XA_FREE_MARK:
            continue
        if xa_marked(H, xa, m) != node_any_mark(P, top, m):
            return CHK_ROOT_MARK, top, -1, m
    s0 = P.slots[top, 0]
    if (P.meta[top, M_COUNT] == 1 and s0 != 0 and not xa_is_zero(s0)
            and (xa_is_node(s0) or P.meta[top, M_SHIFT] == 0) and shrunk):
        return CHK_SHRINKABLE, top, 0, -1
    nodes = 0
    node = top
    offset = 0
    while True:
        if offset == 0:  # first visit of this node: check it whole
            nodes += 1
            if P.meta[node, M_STATE] != NS_LIVE:
                return CHK_STATE, node, -1, -1
            if P.meta[node, M_ARRAY] != xa:
                return CHK_ARRAY, node, -1, -1
            shift = P.meta[node, M_SHIFT]
            cnt = 0
            nval = 0
            for o in range(XA_CHUNK_SIZE):
                e = P.slots[node, o]
                if e == 0:
                    for m in range(XA_MAX_MARKS):
                        if node_get_mark(P, node, o, m) and not (track_free and m == XA_FREE_MARK):
                            return CHK_MARK_ON_NULL, node, o, m
                    continue
                cnt += 1
                resolved = e
                if xa_is_sibling(e):
                    canon = e >> 2
                    if canon >= o:
                        return CHK_SIBLING, node, o, -1
                    resolved = P.slots[node, canon]
                    if resolved == 0 or xa_is_sibling(resolved) or xa_is_node(resolved):
                        return CHK_SIBLING, node, o, -1
                    for k in range(canon + 1, o):
                        if P.slots[node, k] != e:
                            return CHK_SIBLING, node, o, -1
                    for m in range(XA_MAX_MARKS):
                        if node_get_mark(P, node, o, m) and not (track_free and m == XA_FREE_MARK):
                            return CHK_MARK_ON_NULL, node, o, m
                if xa_is_value(resolved):
                    nval += 1
                if xa_is_node(e):
                    child = xa_to_node(e)
                    if shift == 0:
                        return CHK_SHIFT, node, o, -1
                    if P.meta[child, M_PARENT] != node or P.meta[child, M_OFFSET] != o:
                        return CHK_PARENT, child, o, -1
                    if P.meta[child, M_SHIFT] != shift - XA_CHUNK_SHIFT:
                        return CHK_SHIFT, child, o, -1
                    for m in range(XA_MAX_MARKS):
                        if track_free and m == XA_FREE_MARK:
                            continue
                        if node_get_mark(P, node, o, m) != node_any_mark(P, child, m):
                            return CHK_MARK_PROPAGATION, node, o, m
            if cnt != P.meta[node, M_COUNT]:
                return CHK_COUNT, node, -1, -1
            if nval != P.meta[node, M_NRVAL]:
                return CHK_NR_VALUES, node, -1, -1
            if cnt == 0 and not allow_empty:
                return CHK_EMPTY_NODE, node, -1, -1
        entry = P.slots[node, offset]
        if P.meta[node, M_SHIFT] != 0 and xa_is_node(entry):
            node = xa_to_node(entry)
            offset = 0
            continue
        offset += 1
        while offset == XA_CHUNK_SIZE:
            if node == top:
                if nodes != H[xa, H_NODES]:
                    return CHK_NODE_COUNT, -1, -1, -1
                return CHK_OK, -1, -1, -1
            offset = P.meta[node, M_OFFSET] + 1
            node = P.meta[node, M_PARENT]


# =============================================================================================
# hot paths
# =============================================================================================
# The normal-API entry points a page allocator calls in its inner loops are compiled as
# single functions: the hot-path functions they call are inlined into them at numba IR
# level.  (numba passes a tuple of arrays to a called function by value -- some 60 machine
# words for a pool -- which costs more than most of these functions do.)  The inlined
# copies are "twins" compiled from the same source with inline="always" in a namespace of
# their own, so every other caller gets the ordinary functions and compiles them once;
# inlining everywhere would triple the compile time.

HOT_ENTRIES = ("xa_store_nb", "xa_erase_nb", "xa_load_nb", "xa_find_nb")
# the functions LLVM does not inline by itself (the small ones it does)
HOT_FUNCTIONS = ("xas_load", "xas_expand", "xas_create", "xas_store", "update_node", "xas_delete_node",
                 "xas_init_marks", "xas_set_mark", "xas_clear_mark", "_find", "xas_find", "xas_find_marked")


def _recompile(fn, namespace, name, **options):
    py = getattr(fn, "py_func", fn)
    twin = types.FunctionType(py.__code__, namespace, name, py.__defaults__, py.__closure__)
    twin.__qualname__ = name
    twin.__module__ = __name__
    twin.__doc__ = py.__doc__
    return _njit(_nrt=False, **options)(twin)


def _build_hot_paths():
    if JIT_DISABLED:
        return
    g = globals()
    ns = dict(g)
    for name in HOT_FUNCTIONS:
        ns[name] = _recompile(g[name], ns, name + "__inlined", inline="always")
    for name in HOT_ENTRIES:
        g[name] = ns[name] = _recompile(g[name], ns, name)


_build_hot_paths()
