"""XArray walks the ``radix`` design needs and lib/xarray.c does not have.

Theory
------
A deque kept in XArrays needs "the present entry nearest to an index" in both
directions: ``xa_find`` gives the next entry at or *above* an index; the ``radix``
design also needs the previous entry at or *below* one (the new first entry of a list
after its first is removed, ``list_next`` on the head side).  :func:`xa_find_le_nb`
is that reverse search: it descends from the top node towards ``index``; in a node
with no entry at or below the offset it wants, it climbs to the parent and continues
at the slot before the one it came from (``M_OFFSET - 1``); once it has stepped below
``index`` it takes the highest slot at every level.  Cost: O(height * 64) slot reads
in the worst case, one leaf scan in the common case (the entry just below).

:func:`xa_find_ge_nb` is the forward search specialised the same way: it is
``xa_find(xa, &index, ULONG_MAX, XA_PRESENT)`` for trees that hold only value entries
and nodes (no multi-index, sibling, retry or zero entries, which the design never
stores), and it avoids the general xa_state machinery.

Both read the pool arrays of :mod:`memdesc.lib._xarray_kernels` and never modify them.
They take the pool's arrays and are compiled without NRT reference counting (they never
allocate): every use of an array in a reference-counted function costs calls of
NRT_incref/NRT_decref, which made these walks several times slower.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit as _njit
from memdesc.lib._xarray_kernels import (
    C_FREE_TOP,
    H_HEAD,
    M_COUNT,
    M_NRVAL,
    M_OFFSET,
    M_PARENT,
    M_SHIFT,
    XA_CHUNK_MASK,
    XA_CHUNK_SHIFT,
    XA_RETRY_ENTRY,
    xa_mk_node,
    xa_node_free,
    xa_node_take,
)


def njit(fn=None, **kw):
    """These walks never allocate: compiled without NRT reference counting (every access to
    an array field of the state would otherwise call NRT_incref/NRT_decref)."""
    if fn is None:
        return lambda f: _njit(_nrt=False, **kw)(f)
    return _njit(_nrt=False)(fn)


@njit(inline="always")
def _is_node(e):
    return (e & 3) == 2 and e > 4096


@njit(inline="always")
def _to_node(e):
    return (e >> 2) - 1024


@njit(inline="always")
def xa_find_le_nb(slots, meta, heads, xa, index):
    """(entry, index) of the present entry with the highest index <= ``index``; (0, -1) if none."""
    if index < 0:
        return np.int64(0), np.int64(-1)
    head = heads[xa, H_HEAD]
    if head == 0:
        return np.int64(0), np.int64(-1)
    if not _is_node(head):
        return head, np.int64(0)  # a lone entry lives in the head, at index 0
    node = _to_node(head)
    shift = meta[node, M_SHIFT]
    if shift + XA_CHUNK_SHIFT < 63 and index >= (np.int64(XA_CHUNK_MASK + 1) << shift):
        index = (np.int64(XA_CHUNK_MASK + 1) << shift) - 1
    base = np.int64(0)
    below = False  # stepped below index: take the highest slot from here on
    off = (index >> shift) & XA_CHUNK_MASK
    while True:
        o = off
        while o >= 0 and slots[node, o] == 0:
            o -= 1
        if o >= 0:
            e = slots[node, o]
            if o < off:
                below = True
            if shift == 0:
                return e, base + o
            if not _is_node(e):
                return e, base + (np.int64(o) << shift)
            base += np.int64(o) << shift
            node = _to_node(e)
            shift -= XA_CHUNK_SHIFT
            off = XA_CHUNK_MASK if below else (index >> shift) & XA_CHUNK_MASK
            continue
        # nothing at or below off here: continue before this node in its parent
        while True:
            parent = meta[node, M_PARENT]
            if parent < 0:
                return np.int64(0), np.int64(-1)
            oc = meta[node, M_OFFSET]
            shift += XA_CHUNK_SHIFT
            base -= np.int64(oc) << shift
            node = parent
            if oc > 0:
                off = oc - 1
                below = True
                break


@njit(inline="always")
def xa_find_ge_nb(slots, meta, heads, xa, index):
    """(entry, index) of the present entry with the lowest index >= ``index``; (0, -1) if none."""
    if index < 0:
        index = np.int64(0)
    head = heads[xa, H_HEAD]
    if head == 0:
        return np.int64(0), np.int64(-1)
    if not _is_node(head):
        if index == 0:
            return head, np.int64(0)
        return np.int64(0), np.int64(-1)
    node = _to_node(head)
    shift = meta[node, M_SHIFT]
    if shift + XA_CHUNK_SHIFT < 63 and index >= (np.int64(XA_CHUNK_MASK + 1) << shift):
        return np.int64(0), np.int64(-1)
    base = np.int64(0)
    above = False
    off = (index >> shift) & XA_CHUNK_MASK
    while True:
        o = off
        while o <= XA_CHUNK_MASK and slots[node, o] == 0:
            o += 1
        if o <= XA_CHUNK_MASK:
            e = slots[node, o]
            if o > off:
                above = True
            if shift == 0:
                return e, base + o
            if not _is_node(e):
                return e, base + (np.int64(o) << shift)
            base += np.int64(o) << shift
            node = _to_node(e)
            shift -= XA_CHUNK_SHIFT
            off = 0 if above else (index >> shift) & XA_CHUNK_MASK
            continue
        while True:
            parent = meta[node, M_PARENT]
            if parent < 0:
                return np.int64(0), np.int64(-1)
            oc = meta[node, M_OFFSET]
            shift += XA_CHUNK_SHIFT
            base -= np.int64(oc) << shift
            node = parent
            if oc < XA_CHUNK_MASK:
                off = oc + 1
                above = True
                break


# ------------------------------------------------------------------ fast paths
# The common cases of xa_store / xa_erase on these trees, without the xa_state machinery
# (``xas_create``/``xas_expand``/``xas_store``/``update_node``/``xas_delete_node``/
# ``xas_shrink``).  Each does exactly what those functions do in the cases it accepts, and
# returns False having changed nothing otherwise, so the caller falls back to them:
#
# * store: into an empty array at index 0 (the entry goes in the head); into a one-entry
#   array (its entry at index 0, in the head) at an index < 64 -- ``xas_expand`` makes one
#   leaf holding both; into an empty slot of an existing leaf (count, nr_values + 1);
# * erase: the lone entry in the head; an entry whose leaf keeps others; the last entry of
#   a top leaf (the leaf is freed, the head becomes NULL: ``xas_delete_node``); an entry
#   that leaves a top leaf with only slot 0 (``xas_shrink`` moves it to the head and frees
#   the leaf).
#
# Node bookkeeping goes through the pool's own xa_node_take / xa_node_free.  The trees
# hold only value entries and carry no marks, so no mark needs updating.


@njit(inline="always")
def _leaf_of(slots, meta, heads, xa, index):
    """The leaf node holding ``index`` (every node on the path present), or -1."""
    head = heads[xa, H_HEAD]
    if not _is_node(head):
        return np.int64(-1)
    node = _to_node(head)
    shift = meta[node, M_SHIFT]
    if shift + XA_CHUNK_SHIFT < 63 and index >= (np.int64(XA_CHUNK_MASK + 1) << shift):
        return np.int64(-1)
    while shift > 0:
        e = slots[node, (index >> shift) & XA_CHUNK_MASK]
        if not _is_node(e):
            return np.int64(-1)
        node = _to_node(e)
        shift -= XA_CHUNK_SHIFT
    return node


#: results of the fast paths besides success
FAST_NO = -1  # not a case they handle: nothing changed
FAST_GONE = -2  # erased, and the entry's leaf is no longer in the tree (or there was none)
FAST_NEEDS_NODE = -3  # handled by xa_expand_head_nb / xa_erase_top_nb, which take the pool


@njit(inline="always")
def xa_store_fast_nb(slots, meta, heads, xa, index, entry):
    """Store value entry ``entry`` at the empty index ``index``: 0 when done, FAST_NEEDS_NODE for
    a one-entry array (call xa_expand_head_nb), FAST_NO otherwise."""
    head = heads[xa, H_HEAD]
    if head == 0:
        if index != 0:
            return FAST_NO
        heads[xa, H_HEAD] = entry
        return 0
    if not _is_node(head):
        if index == 0 or index > XA_CHUNK_MASK:
            return FAST_NO
        return FAST_NEEDS_NODE
    leaf = _leaf_of(slots, meta, heads, xa, index)
    if leaf < 0:
        return FAST_NO
    off = index & XA_CHUNK_MASK
    if slots[leaf, off] != 0:
        return FAST_NO
    slots[leaf, off] = entry
    meta[leaf, M_COUNT] += 1
    meta[leaf, M_NRVAL] += 1
    return 0


@njit
def xa_expand_head_nb(P, heads, xa, index, entry):
    """xas_expand + store for a one-entry array (entry at 0 in the head) and 0 < index < 64:
    one leaf holds both.  False (nothing changed) if the pool has no spare node."""
    if P.ctl[C_FREE_TOP] == 0:
        return False
    node = xa_node_take(P, heads, xa)
    P.meta[node, M_SHIFT] = 0
    P.meta[node, M_COUNT] = 2
    P.meta[node, M_NRVAL] = 2
    P.slots[node, 0] = heads[xa, H_HEAD]
    P.slots[node, index] = entry
    heads[xa, H_HEAD] = xa_mk_node(node)
    return True


@njit(inline="always")
def xa_erase_fast_nb(slots, meta, heads, xa, index):
    """Erase the value entry at ``index``: the leaf that held it when it stays in the tree,
    FAST_GONE when the lone head entry went, FAST_NEEDS_NODE when a top leaf must be freed
    (call xa_erase_top_nb), FAST_NO (nothing changed) otherwise."""
    head = heads[xa, H_HEAD]
    if not _is_node(head):
        if head == 0 or index != 0:
            return FAST_NO
        heads[xa, H_HEAD] = 0
        return FAST_GONE
    leaf = _leaf_of(slots, meta, heads, xa, index)
    if leaf < 0:
        return FAST_NO
    off = index & XA_CHUNK_MASK
    if slots[leaf, off] == 0:
        return FAST_NO
    count = meta[leaf, M_COUNT]
    if meta[leaf, M_PARENT] >= 0:
        if count <= 1:
            return FAST_NO
    elif count == 1 or (count == 2 and off != 0 and slots[leaf, 0] != 0):
        return FAST_NEEDS_NODE
    slots[leaf, off] = 0
    meta[leaf, M_COUNT] = count - 1
    meta[leaf, M_NRVAL] -= 1
    return leaf


@njit
def xa_erase_top_nb(P, heads, xa, index):
    """Erase from a top leaf that then holds nothing (xas_delete_node: the head becomes NULL)
    or only its slot 0 (xas_shrink: that entry moves to the head); the leaf is freed."""
    slots = P.slots
    meta = P.meta
    leaf = _to_node(heads[xa, H_HEAD])
    off = index & XA_CHUNK_MASK
    slots[leaf, off] = 0
    if meta[leaf, M_COUNT] == 1:
        heads[xa, H_HEAD] = 0
    else:
        heads[xa, H_HEAD] = slots[leaf, 0]
        slots[leaf, 0] = XA_RETRY_ENTRY
    meta[leaf, M_COUNT] = 0
    meta[leaf, M_NRVAL] = 0
    xa_node_free(P, heads, leaf)
