"""Conformance: ports of Linux lib/test_xarray.c (Matthew Wilcox), group by group.

Each test is named after the C function it ports and keeps its loop bounds.  Groups
whose bounds mean millions of operations (check_xa_load's 2M loads, check_xa_mark's
16384/4 calls of check_xa_mark_1, check_get_order's 10M lookups, ...) run their loops
as njit functions that call the same kernels the Python API calls; the others run
through the Python API (:class:`XArray`, :class:`XaState`).  Expected values come from
the C test, not from this implementation.  A failing check raises AssertionError naming
the C check it ports.
"""

from __future__ import annotations

import numpy as np
import pytest

from memdesc._numba import njit
from memdesc.lib import _xarray_kernels as K
from memdesc.lib.xarray import (
    EBUSY,
    EEXIST,
    EINVAL,
    LONG_MAX,
    UINT_MAX,
    ULONG_MAX,
    XA_CHUNK_SIZE,
    XA_FLAGS_ALLOC,
    XA_FLAGS_ALLOC1,
    XA_LIMIT,
    XA_MARK_0,
    XA_MARK_1,
    XA_MARK_2,
    XA_PRESENT,
    XA_RETRY_ENTRY,
    XA_ZERO_ENTRY,
    XAS_BOUNDS,
    XAS_RESTART,
    XaInvalidIndex,
    XArray,
    XaState,
    xa_limit_32b,
)

BITS_PER_LONG = 64
ORDER_LIMIT = BITS_PER_LONG  # CONFIG_XARRAY_MULTI


def mk_index(i: int) -> int:
    """test_xarray.c's xa_mk_index(): xa_mk_value(index & LONG_MAX)."""
    return i & LONG_MAX


def store_index(xa: XArray, i: int):
    return xa.store(i, mk_index(i))


def erase_index(xa: XArray, i: int) -> None:
    assert xa.erase(i) == mk_index(i), f"xa_erase_index({i}): wrong old entry"
    assert xa.load(i) is None, f"xa_erase_index({i}): entry still loads"


def kernel_args(xa: XArray, nodes: int = 4096):
    """Preload ``nodes`` nodes (so njit loops never meet -ENOMEM) and return the kernel
    arguments of ``xa``."""
    xa.pool.supply(nodes)
    return xa.pool.arrays, xa.pool.heads, np.int64(xa.id)


# ---- njit twins of the C helpers --------------------------------------------------------------
PTR = np.int64(4 * 4242)  # a pointer entry (low bits 00), like the C tests' "xa" pointer
PTR2 = np.int64(4 * 4343)
NO_PTR = np.int64(4 * 9999)


@njit
def nb_mk_index(i):
    return K.xa_mk_value(i & K.LONG_MAX)


@njit
def nb_store_index(P, H, xa, i):
    r = K.xa_store_nb(P, H, xa, i, nb_mk_index(i))
    if K.xa_is_err(r):
        raise AssertionError("xa_store_index: error")
    return r


@njit
def nb_erase_index(P, H, xa, i):
    if K.xa_erase_nb(P, H, xa, i) != nb_mk_index(i):
        raise AssertionError("xa_erase_index: wrong old entry")
    if K.xa_load_nb(P, H, xa, i) != 0:
        raise AssertionError("xa_erase_index: entry still loads")


@njit
def nb_store_order(P, H, xa, index, order, entry):
    r = K.xa_store_order_nb(P, H, xa, index, order, entry)
    if K.xa_is_err(r):
        raise AssertionError("xa_store_order: error")
    return r


@njit
def nb_new_xas(xa, index):
    xas = np.zeros(K.X_LEN, np.int64)
    K.xas_init(xas, xa, index)
    return xas


def _check(xa: XArray) -> None:
    xa.check()


# ================================================================================================
# check_xa_err
# ================================================================================================

def test_check_xa_err():
    """check_xa_err: stores and erases report no error.  The user-space harness makes
    GFP_NOWAIT allocations fail with -ENOMEM; the counterpart here is a kernel call on a
    pool with an empty free stack, which must return -ENOMEM twice without changing
    anything, then succeed once nodes are given."""
    xa = XArray()
    assert store_index(xa, 0) is None
    assert xa.erase(0) == 0
    P, H, x = xa.pool.arrays, xa.pool.heads, np.int64(xa.id)
    assert xa.pool.free_count == 0
    snapshot = (P.slots.copy(), P.marks.copy(), P.meta.copy(), P.free.copy(), H.copy())
    enomem = int(K.xa_error_entry(-K.ENOMEM))
    for _ in range(2):
        assert K.xa_store_nb(P, H, x, np.int64(1), K.xa_mk_value(np.int64(1))) == enomem
        for before, now in zip(snapshot, (P.slots, P.marks, P.meta, P.free, H), strict=True):
            assert np.array_equal(before, now)
        assert xa.pool.want == 1 and xa.pool.free_count == 0
    assert store_index(xa, 1) is None  # the API path obtains nodes and retries
    assert xa.store(1, 0) == 1
    assert xa.erase(1) == 0
    assert xa.empty


# ================================================================================================
# check_xas_retry
# ================================================================================================

def test_check_xas_retry():
    """check_xas_retry: a walk that raced with an erase sees XA_RETRY_ENTRY; xas_reset;
    iterating over retry entries."""
    xa = XArray()
    xas = XaState(xa, 0)
    store_index(xa, 0)
    store_index(xa, 1)
    assert xas.find(ULONG_MAX) == 0
    erase_index(xa, 1)
    assert xas.reload() == XA_RETRY_ENTRY  # the freed node holds retry entries
    assert not xas.retry(None)
    assert not xas.retry(0)
    xas.reset()
    assert xas.node == XAS_RESTART
    assert xas.next_entry(ULONG_MAX) == 0
    assert xas.node == -1  # NULL: at the head
    assert store_index(xa, 1) is None
    assert isinstance(xas.reload(), type(XA_ZERO_ENTRY))  # the head is now a node (internal)
    xas.s[K.X_NODE] = XAS_RESTART
    assert xas.next_entry(ULONG_MAX) == 0
    # Make sure we can iterate through retry entries
    xas.set(0)
    xas.store(XA_RETRY_ENTRY)
    xas.set(1)
    xas.store(XA_RETRY_ENTRY)
    xas.set(0)
    for _entry in xas.for_each(ULONG_MAX):
        xas.store(mk_index(xas.index))
    erase_index(xa, 0)
    erase_index(xa, 1)
    assert xa.empty


# ================================================================================================
# check_xa_load
# ================================================================================================

@njit
def _check_xa_load(P, H, xa):
    for i in range(1024):
        for j in range(1024):
            entry = K.xa_load_nb(P, H, xa, np.int64(j))
            if j < i:
                if entry != nb_mk_index(np.int64(j)):
                    raise AssertionError("check_xa_load: stored entry missing")
            elif entry != 0:
                raise AssertionError("check_xa_load: entry not yet stored loads")
        if nb_store_index(P, H, xa, np.int64(i)) != 0:
            raise AssertionError("check_xa_load: store returned an old entry")
    for i in range(1024):
        for j in range(1024):
            entry = K.xa_load_nb(P, H, xa, np.int64(j))
            if j >= i:
                if entry != nb_mk_index(np.int64(j)):
                    raise AssertionError("check_xa_load: entry lost")
            elif entry != 0:
                raise AssertionError("check_xa_load: erased entry loads")
        nb_erase_index(P, H, xa, np.int64(i))
    if not K.xa_empty(H, xa):
        raise AssertionError("check_xa_load: not empty")


def test_check_xa_load():
    """check_xa_load: store 0..1023 one by one, loading all 1024 indices after each step;
    then erase them in order (full bounds, njit loop)."""
    xa = XArray()
    _check_xa_load(*kernel_args(xa))
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_xa_mark
# ================================================================================================

@njit
def _check_xa_mark_1(P, H, xa):
    """check_xa_mark_1 for index = 0, 4, .., 16380."""
    index = np.int64(0)
    while index < 16384:
        _check_xa_mark_1_at(P, H, xa, index)
        index += 4


@njit
def _check_xa_mark_1_at(P, H, xa, index):
    m1 = np.int64(-1)
    if K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_xa_mark_1: NULL entry has a mark")
    K.xa_set_mark_nb(P, H, xa, index, 0)
    if K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_xa_mark_1: NULL entry took a mark")
    if nb_store_index(P, H, xa, index) != 0:
        raise AssertionError("check_xa_mark_1: store")
    if K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_xa_mark_1: storing made a mark appear")
    K.xa_set_mark_nb(P, H, xa, index, 0)
    if not K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_xa_mark_1: mark not set")
    if K.xa_get_mark_nb(P, H, xa, index + 1, 0):
        raise AssertionError("check_xa_mark_1: mark set on the neighbour")
    if K.xa_get_mark_nb(P, H, xa, index, 1):
        raise AssertionError("check_xa_mark_1: another mark set")
    nb_erase_index(P, H, xa, index)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_xa_mark_1: not empty after erase")
    if K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_xa_mark_1: erase kept the mark")
    K.xa_set_mark_nb(P, H, xa, index, 0)
    if K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_xa_mark_1: erased entry took a mark")
    xas = nb_new_xas(xa, index)
    for order in range(2, 8):
        base = index & ~((np.int64(1) << order) - 1)
        nxt = base + (np.int64(1) << order)
        if nb_store_index(P, H, xa, index + 1) != 0:
            raise AssertionError("check_xa_mark_1: store index+1")
        K.xa_set_mark_nb(P, H, xa, index + 1, 0)
        if nb_store_index(P, H, xa, index + 2) != 0:
            raise AssertionError("check_xa_mark_1: store index+2")
        K.xa_set_mark_nb(P, H, xa, index + 2, 2)
        if nb_store_index(P, H, xa, nxt) != 0:
            raise AssertionError("check_xa_mark_1: store next")
        nb_store_order(P, H, xa, index, np.int64(order), nb_mk_index(index))
        for i in range(base, nxt):
            if not K.xa_get_mark_nb(P, H, xa, i, 0):
                raise AssertionError("check_xa_mark_1: union lost MARK_0")
            if K.xa_get_mark_nb(P, H, xa, i, 1):
                raise AssertionError("check_xa_mark_1: union has MARK_1")
            if not K.xa_get_mark_nb(P, H, xa, i, 2):
                raise AssertionError("check_xa_mark_1: union lost MARK_2")
            K.xas_init(xas, xa, i)
            seen = 0
            entry = K.xas_find(P, H, xas, m1)
            while entry != 0:
                seen += 1
                entry = K.xas_next_entry(P, H, xas, m1)
            if seen != 2:
                raise AssertionError("check_xa_mark_1: expected two elements")
            K.xas_set(xas, 0)
            seen = 0
            entry = K.xas_find_marked(P, H, xas, m1, 0)
            while entry != 0:
                seen += 1
                entry = K.xas_next_marked(P, H, xas, m1, 0)
            if seen != 1:
                raise AssertionError("check_xa_mark_1: expected one marked element")
        for m in range(3):
            if K.xa_get_mark_nb(P, H, xa, nxt, m):
                raise AssertionError("check_xa_mark_1: next is marked")
        nb_erase_index(P, H, xa, index)
        nb_erase_index(P, H, xa, nxt)
        if not K.xa_empty(H, xa):
            raise AssertionError("check_xa_mark_1: not empty")
    if not K.xa_empty(H, xa):
        raise AssertionError("check_xa_mark_1: not empty at the end")




def test_check_xa_mark():
    """check_xa_mark: check_xa_mark_1 for every index 0..16380 step 4 (njit loop, full
    bounds; includes the union of marks under a multi-index store for orders 2..7), then
    check_xa_mark_2 and check_xa_mark_3 through the Python API."""
    xa = XArray()
    _check_xa_mark_1(*kernel_args(xa))
    assert xa.empty
    # check_xa_mark_2
    xas = XaState(xa, 0)
    store_index(xa, 0)
    xa.set_mark(0, XA_MARK_0)
    xas.load()
    xas.init_marks()
    assert not xa.get_mark(0, XA_MARK_0)
    for index in range(3500, 4500):
        store_index(xa, index)
        xa.set_mark(index, XA_MARK_0)
    xas.reset()
    assert sum(1 for _ in xas.for_each_marked(ULONG_MAX, XA_MARK_0)) == 1000
    for _entry in xas.for_each(ULONG_MAX):
        xas.init_marks()
        assert xa.get_mark(xas.index, XA_MARK_0)
        assert xas.get_mark(XA_MARK_0)
    _check(xa)
    xa.destroy()
    # check_xa_mark_3
    xas = XaState(xa, 0x41)
    xa.store_order(0x40, 2, mk_index(0x40))
    xa.set_mark(0x41, XA_MARK_0)
    count = 0
    for entry in xas.for_each_marked(ULONG_MAX, XA_MARK_0):
        count += 1
        assert entry == mk_index(0x40)
    assert count == 1
    xa.destroy()
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_xa_shrink
# ================================================================================================

def test_check_xa_shrink():
    """check_xa_shrink: erasing index 1 shrinks the tree to a head entry (the freed node
    keeps a retry entry, the xa_state goes to XAS_BOUNDS); storing at ULONG_MAX grows the
    tree over an order-N entry at 0 and erasing it shrinks back to the same top node."""
    xa = XArray()
    xas = XaState(xa, 1)
    assert xa.empty
    assert store_index(xa, 0) is None
    assert store_index(xa, 1) is None
    assert xas.load() == 1
    node = xas.node
    assert xa.pool.node(node).slots[0] == K.xa_mk_value(np.int64(0))
    assert xas.store(None) == 1
    assert xa.load(1) is None
    assert xas.node == XAS_BOUNDS
    assert xa.pool.node(node).slots[0] == K.XA_RETRY_ENTRY
    assert xas.load() is None
    assert xa.load(0) == 0
    erase_index(xa, 0)
    assert xa.empty
    for order in range(15):
        mx = (1 << order) - 1
        xa.store_order(0, order, 0)
        assert xa.load(mx) == 0
        assert xa.load(mx + 1) is None
        node = xa.head
        assert store_index(xa, ULONG_MAX) is None
        assert xa.head != node
        assert xa.load(mx + 1) is None
        erase_index(xa, ULONG_MAX)
        assert xa.head == node
        erase_index(xa, 0)
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_xas_erase
# ================================================================================================

def test_check_xas_erase():
    """check_xas_erase: store [i, 2i+17) and ULONG_MAX, erase ULONG_MAX, then erase the
    rest while iterating (i < 200)."""
    xa = XArray()
    xas = XaState(xa, 0)
    for i in range(200):
        for j in range(i, 2 * i + 17):
            xas.set(j)
            xas.store(mk_index(j))
        xas.set(ULONG_MAX)
        xas.store(0)
        xas.store(None)
        xas.set(0)
        j = i
        for entry in xas.for_each(ULONG_MAX):
            assert entry == mk_index(j)
            xas.store(None)
            j += 1
        assert xa.empty
    assert xa.nodes == 0


# ================================================================================================
# check_insert
# ================================================================================================

def test_check_insert():
    """check_insert: xa_insert at 0..1023, at 2^i and 2^i - 1 (i = 10..63) and at ~0UL
    leaves the neighbours NULL."""
    xa = XArray()
    for i in range(1024):
        assert xa.insert(i, mk_index(i)) == 0
        assert xa.load((i - 1) & ULONG_MAX) is None
        assert xa.load(i + 1) is None
        erase_index(xa, i)
    for i in range(10, BITS_PER_LONG):
        assert xa.insert(1 << i, mk_index(1 << i)) == 0
        assert xa.load((1 << i) - 1) is None
        assert xa.load((1 << i) + 1) is None
        erase_index(xa, 1 << i)
        assert xa.insert((1 << i) - 1, mk_index((1 << i) - 1)) == 0
        assert xa.load((1 << i) - 2) is None
        assert xa.load(1 << i) is None
        erase_index(xa, (1 << i) - 1)
    assert xa.insert(ULONG_MAX, mk_index(ULONG_MAX)) == 0
    assert xa.load(0) is None
    assert xa.load(ULONG_MAX - 1) is None
    erase_index(xa, ULONG_MAX)
    assert xa.empty


# ================================================================================================
# check_cmpxchg, check_cmpxchg_order
# ================================================================================================

def test_check_cmpxchg():
    """check_cmpxchg: cmpxchg returns the old entry and only stores if it matches; insert
    on an occupied index is -EBUSY."""
    xa = XArray()
    FIVE, SIX, LOTS = 5, 6, 12345678
    assert xa.empty
    assert store_index(xa, 12345678) is None
    assert xa.insert(12345678, xa) == -EBUSY
    assert xa.cmpxchg(12345678, SIX, FIVE) == LOTS
    assert xa.cmpxchg(12345678, LOTS, FIVE) == LOTS
    assert xa.cmpxchg(12345678, FIVE, LOTS) == FIVE
    assert xa.cmpxchg(5, FIVE, None) is None
    assert xa.cmpxchg(5, None, FIVE) is None
    assert xa.insert(5, FIVE) == -EBUSY
    assert xa.cmpxchg(5, FIVE, None) == FIVE
    assert xa.insert(5, FIVE) != -EBUSY
    erase_index(xa, 12345678)
    erase_index(xa, 5)
    assert xa.empty


def test_check_cmpxchg_order():
    """check_cmpxchg_order: an order-3 entry has order 3 at all 8 indices; cmpxchg to NULL
    at 0 erases all of it; the order-3 entry next to it keeps its order."""
    xa = XArray()
    FIVE, order = 5, 3
    assert xa.store_order(0, order, FIVE) is None
    assert xa.get_order(FIVE) == order
    for i in range(1 << order):
        assert xa.load(i) == FIVE
        assert xa.get_order(i) == order
    assert xa.load(1 << order) is None
    assert xa.store_order(1 << order, order, FIVE) is None
    for i in range(1 << order, (1 << order) + (1 << order) - 1):
        assert xa.load(i) == FIVE
        assert xa.get_order(i) == order
    assert xa.cmpxchg(0, FIVE, None) == FIVE
    assert xa.get_order(FIVE) == 0
    for i in range(1 << order):
        assert xa.load(i) is None
        assert xa.get_order(i) == 0
    for i in range(1 << order, (1 << order) + (1 << order) - 1):
        assert xa.load(i) == FIVE
        assert xa.get_order(i) == order
    xa.store_order(0, BITS_PER_LONG - 1, None)
    assert xa.empty


# ================================================================================================
# check_reserve
# ================================================================================================

@pytest.mark.parametrize("flags", [0, XA_FLAGS_ALLOC], ids=["array", "xa0-alloc"])
def test_check_reserve(flags):
    """check_reserve (on `array` and on the allocating `xa0`): a reserved entry makes the
    array non-empty but loads NULL; xa_release frees it unless it was stored to; cmpxchg
    sees XA_ZERO_ENTRY; insert is -EBUSY; iteration skips it; alloc reuses a released id."""
    xa = XArray(flags)
    assert xa.empty
    assert xa.reserve(12345678) == 0
    assert not xa.empty
    assert xa.load(12345678) is None
    xa.release(12345678)
    assert xa.empty
    # Releasing a used entry does nothing
    assert xa.reserve(12345678) == 0
    assert store_index(xa, 12345678) is None
    xa.release(12345678)
    erase_index(xa, 12345678)
    assert xa.empty
    # cmpxchg sees a reserved entry as ZERO
    assert xa.reserve(12345678) == 0
    assert xa.cmpxchg(12345678, XA_ZERO_ENTRY, mk_index(12345678)) is None
    xa.release(12345678)
    erase_index(xa, 12345678)
    assert xa.empty
    # xa_insert treats it as busy
    assert xa.reserve(12345678) == 0
    assert xa.insert(12345678, mk_index(12345678)) == -EBUSY
    assert not xa.empty
    assert xa.erase(12345678) is None
    assert xa.empty
    # Can iterate through a reserved entry
    store_index(xa, 5)
    assert xa.reserve(6) == 0
    store_index(xa, 7)
    seen = [index for index, _ in xa.items()]
    assert seen == [5, 7]
    # If we free a reserved entry, we should be able to allocate it
    if flags & XA_FLAGS_ALLOC == XA_FLAGS_ALLOC:
        assert xa.alloc(8, XA_LIMIT(5, 10)) == (0, 8)
        xa.release(6)
        assert xa.alloc(6, XA_LIMIT(5, 10)) == (0, 6)
    _check(xa)
    xa.destroy()
    assert xa.empty


# ================================================================================================
# check_multi_store (+ _1, _2, _3)
# ================================================================================================

@njit
def _check_multi_store_pairs(P, H, xa, max_order):
    zero = np.int64(0)
    for i in range(max_order):
        for j in range(max_order):
            nb_store_order(P, H, xa, zero, np.int64(i), nb_mk_index(np.int64(i)))
            nb_store_order(P, H, xa, zero, np.int64(j), nb_mk_index(np.int64(j)))
            for k in range(max_order):
                entry = K.xa_load_nb(P, H, xa, (np.int64(1) << k) - 1)
                if i < k and j < k:
                    if entry != 0:
                        raise AssertionError("check_multi_store: entry beyond both orders")
                elif entry != nb_mk_index(np.int64(j)):
                    raise AssertionError("check_multi_store: entry of the second store missing")
            K.xa_erase_nb(P, H, xa, zero)
            if not K.xa_empty(H, xa):
                raise AssertionError("check_multi_store: erase(0) did not empty the array")


def _check_multi_store_1(xa: XArray, index: int, order: int) -> None:
    xas = XaState(xa, index)
    mn = index & ~((1 << order) - 1)
    mx = mn + (1 << order)
    xa.store_order(index, order, mk_index(index))
    assert xa.load(mn) == mk_index(index)
    assert xa.load(mx - 1) == mk_index(index)
    assert xa.load(mx) is None
    assert xa.load((mn - 1) & ULONG_MAX) is None
    assert xas.store(mk_index(mn)) == mk_index(index)
    assert xa.load(mn) == mk_index(mn)
    assert xa.load(mx - 1) == mk_index(mn)
    assert xa.load(mx) is None
    assert xa.load((mn - 1) & ULONG_MAX) is None
    erase_index(xa, mn)
    assert xa.empty


def _check_multi_store_2(xa: XArray, index: int, order: int) -> None:
    xas = XaState(xa, index)
    xa.store_order(index, order, 0)
    assert xas.store(1) == 0
    assert xas.index == index
    assert xas.store(None) == 1
    assert xa.empty


def _check_multi_store_3(xa: XArray, index: int, order: int) -> None:
    xas = XaState(xa, 0)
    xa.store_order(index, order, mk_index(index))
    n = 0
    for entry in xas.for_each(ULONG_MAX):
        assert entry == mk_index(index)
        n += 1
    assert n == 1
    xas.set(index + 1)
    for entry in xas.for_each(ULONG_MAX):
        assert entry == mk_index(index)
        n += 1
    assert n == 2
    xa.destroy()


def test_check_multi_store():
    """check_multi_store: an order-1 entry covers 0 and 1 (node count/nr_values 2), a
    neighbour does not change it, order-2 overwrites, an order-63 NULL store empties the
    array; every pair of orders (i, j) < 60 stored at 0 (njit loop); then
    check_multi_store_1/2/3."""
    xa = XArray()
    pool = xa.pool
    xa.store_order(0, 1, 0)
    assert xa.load(0) == 0 and xa.load(1) == 0 and xa.load(2) is None
    top = pool.node(xa.head_node)
    assert top.count == 2 and top.nr_values == 2
    xa.store(3, xa)
    assert xa.load(0) == 0 and xa.load(1) == 0 and xa.load(2) is None
    top = pool.node(xa.head_node)
    assert top.count == 3 and top.nr_values == 2
    xa.store_order(0, 2, 1)
    for i in range(4):
        assert xa.load(i) == 1
    assert xa.load(4) is None
    top = pool.node(xa.head_node)
    assert top.count == 4 and top.nr_values == 4
    xa.store_order(0, BITS_PER_LONG - 1, None)
    assert xa.empty
    # Even when the first slot is empty but the others aren't
    store_index(xa, 1)
    store_index(xa, 2)
    xa.store_order(0, 2, None)
    assert xa.empty
    _check_multi_store_pairs(*kernel_args(xa), 60)
    for i in range(20):
        _check_multi_store_1(xa, 200, i)
        _check_multi_store_1(xa, 0, i)
        _check_multi_store_1(xa, (1 << i) + 1, i)
    _check_multi_store_2(xa, 4095, 9)
    for i in range(1, 20):
        _check_multi_store_3(xa, 0, i)
        _check_multi_store_3(xa, 1 << i, i)
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_multi_store_advanced
# ================================================================================================

@njit
def _adv_add(P, H, xa, index, order, p):
    xas = nb_new_xas(xa, index)
    K.xas_set_order(xas, index, order)
    K.xas_store(P, H, xas, p)
    if K.xas_error(xas) != 0:
        raise AssertionError("check_xa_multi_store_adv_add: error")
    if K.xa_load_nb(P, H, xa, index) != p:
        raise AssertionError("check_xa_multi_store_adv_add: entry not stored")


@njit
def _adv_delete(P, H, xa, index, order):
    xas = nb_new_xas(xa, index)
    K.xas_set_order(xas, index, order)
    K.xas_store(P, H, xas, np.int64(0))
    K.xas_init_marks(P, H, xas)


@njit
def _adv_expect(P, H, xa, base, n, p):
    for i in range(n):
        if K.xa_load_nb(P, H, xa, base + i) != p:
            raise AssertionError("check_xa_multi_store_adv: wrong entry")


@njit
def _check_xa_multi_store_adv(P, H, xa, pos, order, v1, v2):
    nrpages = np.int64(1) << order
    index = K.lsr(pos, 12)  # PAGE_SHIFT
    base = index & ~(nrpages - 1)
    next_index = (base + nrpages) & ~(nrpages - 1)
    next_next_index = (next_index + nrpages) & ~(nrpages - 1)
    _adv_add(P, H, xa, base, order, v1)
    _adv_expect(P, H, xa, base, nrpages, v1)
    _adv_expect(P, H, xa, next_index, 1, 0)
    _adv_add(P, H, xa, next_index, 0, v2)
    _adv_expect(P, H, xa, next_index, 1, v2)
    _adv_delete(P, H, xa, next_index, 0)
    _adv_add(P, H, xa, next_index, order, v2)
    _adv_expect(P, H, xa, next_index, nrpages, v2)
    _adv_delete(P, H, xa, next_index, order)
    _adv_delete(P, H, xa, base, order)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_xa_multi_store_adv: not empty")
    _adv_add(P, H, xa, next_index, order, v2)
    _adv_expect(P, H, xa, base, nrpages, 0)
    _adv_expect(P, H, xa, next_index, nrpages, v2)
    _adv_expect(P, H, xa, next_next_index, nrpages, 0)
    _adv_delete(P, H, xa, next_index, order)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_xa_multi_store_adv: not empty (hole at base and next_next)")
    _adv_add(P, H, xa, next_next_index, order, v2)
    _adv_expect(P, H, xa, base, nrpages, 0)
    _adv_expect(P, H, xa, next_index, nrpages, 0)
    _adv_expect(P, H, xa, next_next_index, nrpages, v2)
    _adv_delete(P, H, xa, next_next_index, order)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_xa_multi_store_adv: not empty (hole at base and next)")


@njit
def _check_multi_store_advanced(P, H, xa, positions, v1, v2):
    for pos in positions:
        for i in range(20):
            _check_xa_multi_store_adv(P, H, xa, pos, np.int64(i), v1, v2)
            _check_xa_multi_store_adv(P, H, xa, pos + 157, np.int64(i), v1, v2)


def test_check_multi_store_advanced():
    """check_multi_store_advanced: page-cache-like adds of aligned order-N entries
    (N < 20) with holes before and after, at pos = 7, pos*pos+564, ... < ULONG_MAX/2
    (unsigned long arithmetic), and pos+157; njit loop, full bounds."""
    positions = []
    pos = 7
    while pos < ULONG_MAX // 2:
        positions.append(pos)
        pos = (pos * pos + 564) & ULONG_MAX
    xa = XArray()
    _check_multi_store_advanced(*kernel_args(xa), np.array(positions, np.int64), PTR, PTR2)
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_get_order, check_xas_get_order, check_xas_conflict_get_order
# ================================================================================================

@njit
def _check_get_order(P, H, xa):
    for i in range(3):
        if K.xa_get_order_nb(P, H, xa, np.int64(i)) != 0:
            raise AssertionError("check_get_order: order of an empty index")
    for order in range(20):
        for i in range(10):
            start = np.int64(i) << order
            nb_store_order(P, H, xa, start, np.int64(order), nb_mk_index(start))
            for j in range(start, np.int64(i + 1) << order):
                if K.xa_get_order_nb(P, H, xa, j) != order:
                    raise AssertionError("check_get_order: wrong order")
            K.xa_erase_nb(P, H, xa, start)


@njit
def _check_xas_get_order(P, H, xa):
    xas = nb_new_xas(xa, np.int64(0))
    for order in range(20):
        for i in range(10):
            start = np.int64(i) << order
            K.xas_set_order(xas, start, np.int64(order))
            K.xas_store(P, H, xas, K.xa_mk_value(np.int64(i)))
            if K.xas_error(xas) != 0:
                raise AssertionError("check_xas_get_order: store error")
            for j in range(start, np.int64(i + 1) << order):
                K.xas_set_order(xas, j, np.int64(0))
                K.xas_load(P, H, xas)
                if K.xas_get_order(P, xas) != order:
                    raise AssertionError("check_xas_get_order: wrong order")
            K.xas_set_order(xas, start, np.int64(order))
            K.xas_store(P, H, xas, np.int64(0))


@njit
def _one_conflict(P, H, xas, expect, order):
    """xas_for_each_conflict must see exactly one entry, ``expect``, of ``order``."""
    only_once = 0
    while True:
        entry = K.xas_find_conflict(P, H, xas)
        if entry == 0:
            break
        if entry != expect:
            raise AssertionError("check_xas_conflict_get_order: wrong conflicting entry")
        if K.xas_get_order(P, xas) != order:
            raise AssertionError("check_xas_conflict_get_order: wrong order")
        only_once += 1
    if only_once != 1:
        raise AssertionError("check_xas_conflict_get_order: not exactly one conflict")


@njit
def _check_xas_conflict_get_order(P, H, xa, max_order):
    xas = nb_new_xas(xa, np.int64(0))
    for order in range(max_order):
        for i in range(10):
            start = np.int64(i) << order
            K.xas_set_order(xas, start, np.int64(order))
            K.xas_store(P, H, xas, K.xa_mk_value(np.int64(i)))
            if K.xas_error(xas) != 0:
                raise AssertionError("check_xas_conflict_get_order: store error")
            for k in range(order):
                K.xas_set_order(xas, start + (np.int64(1) << k), np.int64(k))
                _one_conflict(P, H, xas, K.xa_mk_value(np.int64(i)), order)
            if order < max_order - 1:
                K.xas_set_order(xas, (np.int64(i) & ~np.int64(1)) << order, np.int64(order + 1))
                _one_conflict(P, H, xas, K.xa_mk_value(np.int64(i)), order)
            K.xas_set_order(xas, start, np.int64(order))
            K.xas_store(P, H, xas, np.int64(0))


def test_check_get_order():
    """check_get_order: xa_get_order at every index of order-N entries (N < 20, ten per
    order); njit loop, full bounds."""
    xa = XArray()
    _check_get_order(*kernel_args(xa))
    assert xa.empty


def test_check_xas_get_order():
    """check_xas_get_order: xas_get_order after xas_load at every index (N < 20)."""
    xa = XArray()
    _check_xas_get_order(*kernel_args(xa))
    assert xa.empty


def test_check_xas_conflict_get_order():
    """check_xas_conflict_get_order: xas_for_each_conflict inside an order-N entry finds it
    exactly once and xas_get_order reports N (N < 20)."""
    xa = XArray()
    _check_xas_conflict_get_order(*kernel_args(xa), 20)
    assert xa.empty


# ================================================================================================
# check_xa_alloc
# ================================================================================================

def alloc_index(xa: XArray, index: int) -> None:
    assert xa.alloc(mk_index(index), xa_limit_32b) == (0, index)


def _check_xa_alloc_1(xa: XArray, base: int) -> None:
    assert xa.empty
    alloc_index(xa, base)
    erase_index(xa, base)
    assert xa.empty
    alloc_index(xa, base)
    for i in range(base + 1, 2 * XA_CHUNK_SIZE):
        alloc_index(xa, i)
    for i in range(base, 2 * XA_CHUNK_SIZE):
        erase_index(xa, i)
    alloc_index(xa, base)
    xa.destroy()
    alloc_index(xa, base)
    alloc_index(xa, base + 1)
    erase_index(xa, base + 1)
    store_index(xa, base + 1)
    alloc_index(xa, base + 2)
    erase_index(xa, base)
    alloc_index(xa, base)
    erase_index(xa, base + 1)
    erase_index(xa, base + 2)
    for i in range(1, 5000):
        alloc_index(xa, base + i)
    _check(xa)
    xa.destroy()
    # Check that we fail properly at the limit of allocation
    assert xa.alloc(mk_index(UINT_MAX - 1), XA_LIMIT(UINT_MAX - 1, UINT_MAX)) == (0, 0xFFFFFFFE)
    assert xa.alloc(mk_index(UINT_MAX), XA_LIMIT(UINT_MAX - 1, UINT_MAX)) == (0, 0xFFFFFFFF)
    assert xa.alloc(mk_index(0), XA_LIMIT(UINT_MAX - 1, UINT_MAX)) == (-EBUSY, None)
    xa.destroy()
    assert xa.alloc(mk_index(10), XA_LIMIT(10, 5)) == (-EBUSY, None)
    assert store_index(xa, 3) is None
    assert xa.alloc(mk_index(10), XA_LIMIT(10, 5)) == (-EBUSY, None)
    erase_index(xa, 3)
    assert xa.empty


def _check_xa_alloc_2(xa: XArray, base: int) -> None:
    assert xa.empty
    assert xa.alloc(None, xa_limit_32b) == (0, base)
    assert not xa.empty
    assert xa.erase(base) is None
    assert xa.empty
    assert xa.alloc(None, xa_limit_32b) == (0, base)
    assert not xa.empty
    xa.destroy()
    assert xa.empty
    for i in range(base, base + 10):
        assert xa.alloc(None, xa_limit_32b) == (0, i)
    assert xa.store(3, mk_index(3)) is None
    assert xa.store(4, mk_index(4)) is None
    assert xa.store(4, None) == mk_index(4)
    assert xa.erase(5) is None
    assert xa.alloc(None, xa_limit_32b) == (0, 5)
    for index, _entry in list(xa.items()):
        erase_index(xa, index)
    for i in range(base, base + 9):
        assert xa.erase(i) is None
        assert not xa.empty
    assert xa.erase(8) is None
    assert not xa.empty
    assert xa.erase(base + 9) is None
    assert xa.empty
    xa.destroy()


def _check_xa_alloc_3(xa: XArray, base: int) -> None:
    limit = XA_LIMIT(1, 0x3FFF)
    nxt = 0
    ret, ident, nxt = xa.alloc_cyclic(mk_index(1), limit, nxt)
    assert max(ret, 0) == 0 and ret >= 0 and ident == 1
    nxt = 0x3FFD
    ret, ident, nxt = xa.alloc_cyclic(mk_index(0x3FFD), limit, nxt)
    assert ret == 0 and ident == 0x3FFD
    erase_index(xa, 0x3FFD)
    erase_index(xa, 1)
    assert xa.empty
    for i in range(0x3FFE, 0x4003):
        entry = mk_index(i) if i < 0x4000 else mk_index(i - 0x3FFF)
        ret, ident, nxt = xa.alloc_cyclic(entry, limit, nxt)
        assert ret >= 0  # xa_alloc_cyclic() returns 0 for both 0 and 1
        assert mk_index(ident) == entry
    # Check wrap-around is handled correctly
    if base != 0:
        erase_index(xa, base)
    erase_index(xa, base + 1)
    nxt = UINT_MAX
    ret, ident, nxt = xa.alloc_cyclic(mk_index(UINT_MAX), xa_limit_32b, nxt)
    assert ret >= 0 and ident == UINT_MAX
    ret, ident, nxt = xa.alloc_cyclic(mk_index(base), xa_limit_32b, nxt)
    assert ret >= 0 and ident == base
    ret, ident, nxt = xa.alloc_cyclic(mk_index(base + 1), xa_limit_32b, nxt)
    assert ret >= 0 and ident == base + 1
    for index, _entry in list(xa.items()):
        erase_index(xa, index)
    assert xa.empty
    # check wrap-around return of __xa_alloc_cyclic()
    nxt = UINT_MAX
    ret, ident, nxt = xa.alloc_cyclic(mk_index(UINT_MAX), xa_limit_32b, nxt)
    assert ret >= 0
    ret, ident, nxt = xa.alloc_cyclic(mk_index(base), xa_limit_32b, nxt)
    assert ret == 1
    for index, _entry in list(xa.items()):
        erase_index(xa, index)
    assert xa.empty


def test_check_xa_alloc():
    """check_xa_alloc: check_xa_alloc_1/2/3 on DEFINE_XARRAY_ALLOC (base 0) and
    DEFINE_XARRAY_ALLOC1 (base 1): ids from base, reuse after erase and destroy, 5000
    sequential ids, limits (-EBUSY when full or empty), NULL allocations, cyclic
    allocation and its wrap-around (__xa_alloc_cyclic returns 1)."""
    xa0, xa1 = XArray(XA_FLAGS_ALLOC), XArray(XA_FLAGS_ALLOC1)
    _check_xa_alloc_1(xa0, 0)
    _check_xa_alloc_1(xa1, 1)
    _check_xa_alloc_2(xa0, 0)
    _check_xa_alloc_2(xa1, 1)
    _check_xa_alloc_3(xa0, 0)
    _check_xa_alloc_3(xa1, 1)
    assert xa0.nodes == 0 and xa1.nodes == 0
    assert XArray().alloc(1) == (-EINVAL, None)  # not an allocating array


# ================================================================================================
# check_find (find_1..4, multi_find_1..3)
# ================================================================================================

@njit
def _check_find_1(P, H, xa):
    m1 = np.int64(-1)
    for i in range(100):
        if nb_store_index(P, H, xa, np.int64(i)) != 0:
            raise AssertionError("check_find_1: store i")
        K.xa_set_mark_nb(P, H, xa, np.int64(i), 0)
        for j in range(i):
            if nb_store_index(P, H, xa, np.int64(j)) != 0:
                raise AssertionError("check_find_1: store j")
            K.xa_set_mark_nb(P, H, xa, np.int64(j), 0)
            for k in range(100):
                for filt in (np.int64(K.XA_PRESENT), np.int64(0)):
                    entry, index = K.xa_find_nb(P, H, xa, np.int64(k), m1, filt)
                    if k <= j:
                        if index != j:
                            raise AssertionError("check_find_1: expected j")
                    elif k <= i:
                        if index != i:
                            raise AssertionError("check_find_1: expected i")
                    elif entry != 0:
                        raise AssertionError("check_find_1: expected nothing")
            nb_erase_index(P, H, xa, np.int64(j))
            if K.xa_get_mark_nb(P, H, xa, np.int64(j), 0):
                raise AssertionError("check_find_1: mark of erased j")
            if not K.xa_get_mark_nb(P, H, xa, np.int64(i), 0):
                raise AssertionError("check_find_1: mark of i lost")
        nb_erase_index(P, H, xa, np.int64(i))
        if K.xa_get_mark_nb(P, H, xa, np.int64(i), 0):
            raise AssertionError("check_find_1: mark of erased i")
    if not K.xa_empty(H, xa):
        raise AssertionError("check_find_1: not empty")


@njit
def _check_find_2_by_i(P, H, xa):
    """check_find_2 as evidently intended: store i, then xa_for_each sees 0..i in order."""
    m1 = np.int64(-1)
    for i in range(1024):
        nb_store_index(P, H, xa, np.int64(i))
        j = 0
        entry, index = K.xa_find_nb(P, H, xa, np.int64(0), m1, np.int64(K.XA_PRESENT))
        while entry != 0:
            if entry != nb_mk_index(index) or index != j:
                raise AssertionError("check_find_2: iteration order")
            j += 1
            entry, index = K.xa_find_after_nb(P, H, xa, index, m1, np.int64(K.XA_PRESENT))
        if j != i + 1:
            raise AssertionError("check_find_2: iteration missed entries")
    K.xa_destroy_nb(P, H, xa)


@njit
def _check_find_3(P, H, xa):
    xas = nb_new_xas(xa, np.int64(0))
    for i in range(100):
        for j in range(100):
            for k in range(100):
                K.xas_set(xas, np.int64(j))
                entry = K.xas_find_marked(P, H, xas, np.int64(k), 0)
                while entry != 0:
                    entry = K.xas_next_marked(P, H, xas, np.int64(k), 0)
                if j > k and xas[K.X_NODE] != K.XAS_RESTART:
                    raise AssertionError("check_find_3: max < start must leave XAS_RESTART")
        nb_store_index(P, H, xa, np.int64(i))
        K.xa_set_mark_nb(P, H, xa, np.int64(i), 0)
    K.xa_destroy_nb(P, H, xa)


def _check_multi_find_1(xa: XArray, order: int) -> None:
    multi = 3 << order
    nxt = 4 << order
    xa.store_order(multi, order, multi)
    assert store_index(xa, nxt) is None
    assert store_index(xa, nxt + 1) is None
    assert xa.find(0, ULONG_MAX, XA_PRESENT) == (multi, multi)
    entry, index = xa.find(multi + 1, ULONG_MAX, XA_PRESENT)
    assert entry == multi and multi <= index < nxt
    entry, index = xa.find_after(index, ULONG_MAX, XA_PRESENT)
    assert (entry, index) == (nxt, nxt)
    assert xa.find_after(index, nxt, XA_PRESENT) == (None, nxt)
    erase_index(xa, multi)
    erase_index(xa, nxt)
    erase_index(xa, nxt + 1)
    assert xa.empty


def _check_multi_find_2(xa: XArray) -> None:
    for i in range(10):
        index = 1 << i
        for j in range(index):
            xas = XaState(xa, j + index)
            store_index(xa, index - 1)
            xa.store_order(index, i, mk_index(index))
            for _entry in xas.for_each(ULONG_MAX):
                erase_index(xa, index)
            erase_index(xa, index - 1)
            assert xa.empty


def _check_multi_find_3(xa: XArray) -> None:
    for order in range(5, ORDER_LIMIT):
        index = 1 << (order - 5)
        assert xa.empty
        xa.store_order(0, order - 4, mk_index(0))
        assert xa.find_after(index, ULONG_MAX, XA_PRESENT)[0] is None
        erase_index(xa, 0)


def test_check_find():
    """check_find: xa_find / xa_find_after over all pairs 0..99 with XA_PRESENT and
    XA_MARK_0 (njit), xa_for_each order (literal port, plus the store-i variant),
    xas_for_each_marked with max < start leaves XAS_RESTART (njit), xa_find_after at
    ULONG_MAX, and the multi-index finds check_multi_find_1 (orders 2..9), _2, _3."""
    xa = XArray()
    _check_find_1(*kernel_args(xa))
    # check_find_2, literal: `index` is the xa_for_each cursor left from the last loop
    index = 0
    for _ in xa.items():
        raise AssertionError("check_find_2: empty array iterated")
    for _i in range(1024):
        store_index(xa, index)
        j = 0
        for index, entry in xa.items():  # noqa: B007  (the C test reuses it)
            assert mk_index(index) == entry
            assert index == j
            j += 1
    xa.destroy()
    _check_find_2_by_i(*kernel_args(xa))
    _check_find_3(*kernel_args(xa))
    # check_find_4
    store_index(xa, ULONG_MAX)
    assert xa.find_after(0, ULONG_MAX, XA_PRESENT) == (mk_index(ULONG_MAX), ULONG_MAX)
    assert xa.find_after(ULONG_MAX, ULONG_MAX, XA_PRESENT)[0] is None
    erase_index(xa, ULONG_MAX)
    for i in range(2, 10):
        _check_multi_find_1(xa, i)
    _check_multi_find_2(xa)
    _check_multi_find_3(xa)
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_find_entry, check_pause
# ================================================================================================

@njit
def _xa_find_entry(P, H, xa, item):
    xas = nb_new_xas(xa, np.int64(0))
    checked = 0
    m1 = np.int64(-1)
    entry = K.xas_find(P, H, xas, m1)
    while entry != 0:
        if K.xa_is_zero(entry):
            pass
        elif K.xa_is_retry(entry):
            xas[K.X_NODE] = K.XAS_RESTART
        elif entry == item:
            break
        else:
            checked += 1
            if checked % 4 == 0:
                K.xas_pause(P, xas)
        entry = K.xas_next_entry(P, H, xas, m1)
    return xas[K.X_INDEX] if entry != 0 else np.int64(-1)


@njit
def _check_find_entry(P, H, xa, ptr):
    for order in range(20):
        step = np.int64(1) << order
        offset = np.int64(0)
        while offset < (np.int64(1) << (order + 3)):
            index = np.int64(0)
            while index < (np.int64(1) << (order + 5)):
                nb_store_order(P, H, xa, index, np.int64(order), nb_mk_index(index))
                if K.xa_load_nb(P, H, xa, index) != nb_mk_index(index):
                    raise AssertionError("check_find_entry: load")
                if _xa_find_entry(P, H, xa, nb_mk_index(index)) != index:
                    raise AssertionError("check_find_entry: wrong index")
                index += step
            if _xa_find_entry(P, H, xa, ptr) != -1:
                raise AssertionError("check_find_entry: found an absent entry")
            K.xa_destroy_nb(P, H, xa)
            offset += step
    if _xa_find_entry(P, H, xa, ptr) != -1:
        raise AssertionError("check_find_entry: found in an empty array")
    nb_store_index(P, H, xa, np.int64(-1))
    if _xa_find_entry(P, H, xa, ptr) != -1:
        raise AssertionError("check_find_entry: found an absent entry (ULONG_MAX)")
    if _xa_find_entry(P, H, xa, nb_mk_index(np.int64(-1))) != -1:
        raise AssertionError("check_find_entry: entry at ULONG_MAX")
    nb_erase_index(P, H, xa, np.int64(-1))
    if not K.xa_empty(H, xa):
        raise AssertionError("check_find_entry: not empty")


def test_check_find_entry():
    """check_find_entry: find the index of an entry with xas_for_each and an xas_pause
    every 4 entries, for order-N entries (N < 20) -- mm/shmem.c's find_swap_entry()."""
    xa = XArray()
    _check_find_entry(*kernel_args(xa), NO_PTR)
    assert xa.empty


def test_check_pause():
    """check_pause: iterate entries of orders 0..63 (ascending, then descending) with and
    without xas_pause, including from an unaligned start."""
    xa = XArray()
    index = 1
    for order in range(ORDER_LIMIT):
        assert xa.store_order(index, order, mk_index(index)) is None
        index += 1 << order
        index &= ULONG_MAX
    xas = XaState(xa, 0)
    count = 0
    for entry in xas.for_each(ULONG_MAX):
        assert entry == mk_index(1 << count)
        count += 1
    assert count == ORDER_LIMIT
    count = 0
    xas.set(0)
    for entry in xas.for_each(ULONG_MAX):
        assert entry == mk_index(1 << count)
        count += 1
        xas.pause()
    assert count == ORDER_LIMIT
    _check(xa)
    xa.destroy()
    index = 0
    for order in range(ORDER_LIMIT - 1, -1, -1):
        assert xa.store_order(index, order, mk_index(index)) is None
        index += 1 << order
    index = count = 0
    xas.set(0)
    for entry in xas.for_each(ULONG_MAX):
        assert entry == mk_index(index)
        index += 1 << (ORDER_LIMIT - count - 1)
        count += 1
    assert count == ORDER_LIMIT
    index = count = 0
    xas.set(1 % (1 << (ORDER_LIMIT - 1)))  # test unaligned index
    for entry in xas.for_each(ULONG_MAX):
        assert entry == mk_index(index)
        index += 1 << (ORDER_LIMIT - count - 1)
        count += 1
        xas.pause()
    assert count == ORDER_LIMIT
    xa.destroy()
    assert xa.empty


# ================================================================================================
# check_account
# ================================================================================================

def test_check_account():
    """check_account: node count / nr_values with pointer and value multi-index entries
    (orders 1..11) -- siblings of values count as values."""
    xa = XArray()
    pool = xa.pool
    for order in range(1, 12):
        xas = XaState(xa, 1 << order)
        xa.store_order(0, order, xa)
        xas.load()
        node = pool.node(xas.node)
        assert node.count != 0
        assert node.count <= 1 << order
        assert node.nr_values == 0
        xa.store_order(1 << order, order, mk_index(1 << order))
        node = pool.node(xas.node)
        assert node.count == node.nr_values * 2
        xa.erase(1 << order)
        assert pool.node(xas.node).nr_values == 0
        xa.erase(0)
        assert xa.empty


# ================================================================================================
# check_destroy
# ================================================================================================

def test_check_destroy():
    """check_destroy: xa_destroy of an empty array, of one entry at 0..999, of an entry at
    ULONG_MAX and of an order-11 entry; every node is freed."""
    xa = XArray()
    assert xa.empty
    xa.destroy()
    assert xa.empty
    for index in range(1000):
        store_index(xa, index)
        assert not xa.empty
        xa.destroy()
        assert xa.empty
    xa.store(ULONG_MAX, xa)
    assert not xa.empty
    xa.destroy()
    assert xa.empty
    xa.store_order(1 << 11, 11, xa)
    assert not xa.empty
    xa.destroy()
    assert xa.empty
    assert xa.nodes == 0 and xa.pool.live_nodes == 0
    assert xa.pool.nr_allocated == xa.pool.nr_freed


# ================================================================================================
# check_move
# ================================================================================================

@njit
def _check_move(P, H, xa):
    xas = nb_new_xas(xa, np.int64((1 << 16) - 1))
    for i in range(1 << 16):
        if nb_store_index(P, H, xa, np.int64(i)) != 0:
            raise AssertionError("check_move: store")
    i = np.int64(1 << 16)
    while True:
        entry = K.xas_prev(P, H, xas)
        i -= 1
        if entry != nb_mk_index(i) or i != xas[K.X_INDEX]:
            raise AssertionError("check_move: xas_prev over a full range")
        if i == 0:
            break
    if K.xas_prev(P, H, xas) != 0 or xas[K.X_INDEX] != -1:
        raise AssertionError("check_move: xas_prev at 0 must wrap to ULONG_MAX")
    while True:
        entry = K.xas_next(P, H, xas)
        if entry != nb_mk_index(i) or i != xas[K.X_INDEX]:
            raise AssertionError("check_move: xas_next over a full range")
        i += 1
        if i >= (1 << 16):
            break
    for k in range(1 << 8, 1 << 15):
        nb_erase_index(P, H, xa, np.int64(k))
    i = xas[K.X_INDEX]
    while True:
        entry = K.xas_prev(P, H, xas)
        i -= 1
        if i < (1 << 8) or i >= (1 << 15):
            if entry != nb_mk_index(i):
                raise AssertionError("check_move: xas_prev over a hole (entry)")
        elif entry != 0:
            raise AssertionError("check_move: xas_prev over a hole (NULL)")
        if i != xas[K.X_INDEX]:
            raise AssertionError("check_move: xas_prev over a hole (index)")
        if i == 0:
            break
    if K.xas_prev(P, H, xas) != 0 or xas[K.X_INDEX] != -1:
        raise AssertionError("check_move: xas_prev wrap after the hole")
    while True:
        entry = K.xas_next(P, H, xas)
        if i < (1 << 8) or i >= (1 << 15):
            if entry != nb_mk_index(i):
                raise AssertionError("check_move: xas_next over a hole (entry)")
        elif entry != 0:
            raise AssertionError("check_move: xas_next over a hole (NULL)")
        if i != xas[K.X_INDEX]:
            raise AssertionError("check_move: xas_next over a hole (index)")
        i += 1
        if i >= (1 << 16):
            break
    K.xa_destroy_nb(P, H, xa)


@njit
def _check_move_small(P, H, xa, idx):
    xas = nb_new_xas(xa, np.int64(0))
    nb_store_index(P, H, xa, np.int64(0))
    nb_store_index(P, H, xa, idx)
    i = np.int64(0)
    while i < idx * 4:
        entry = K.xas_next(P, H, xas)
        if i <= idx and xas[K.X_NODE] == K.XAS_RESTART:
            raise AssertionError("check_move_small: xas_next left the tree")
        if xas[K.X_INDEX] != i:
            raise AssertionError("check_move_small: xas_next index")
        if i == 0 or i == idx:
            if entry != nb_mk_index(i):
                raise AssertionError("check_move_small: xas_next entry")
        elif entry != 0:
            raise AssertionError("check_move_small: xas_next NULL")
        i += 1
    K.xas_next(P, H, xas)
    if xas[K.X_INDEX] != i:
        raise AssertionError("check_move_small: xas_next past the end")
    while True:
        entry = K.xas_prev(P, H, xas)
        i -= 1
        if i <= idx and xas[K.X_NODE] == K.XAS_RESTART:
            raise AssertionError("check_move_small: xas_prev left the tree")
        if xas[K.X_INDEX] != i:
            raise AssertionError("check_move_small: xas_prev index")
        if i == 0 or i == idx:
            if entry != nb_mk_index(i):
                raise AssertionError("check_move_small: xas_prev entry")
        elif entry != 0:
            raise AssertionError("check_move_small: xas_prev NULL")
        if i <= 0:
            break
    K.xas_set(xas, np.int64(-1))
    if K.xas_next(P, H, xas) != 0 or xas[K.X_INDEX] != -1:
        raise AssertionError("check_move_small: xas_next at ULONG_MAX")
    if K.xas_next(P, H, xas) != K.xa_mk_value(np.int64(0)) or xas[K.X_INDEX] != 0:
        raise AssertionError("check_move_small: xas_next wraps to 0")
    if K.xas_prev(P, H, xas) != 0 or xas[K.X_INDEX] != -1:
        raise AssertionError("check_move_small: xas_prev wraps to ULONG_MAX")
    nb_erase_index(P, H, xa, np.int64(0))
    nb_erase_index(P, H, xa, idx)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_move_small: not empty")


def test_check_move():
    """check_move: xas_prev/xas_next over 65536 entries, over the hole 256..32767, and the
    wrap at 0 / ULONG_MAX (njit); check_move_tiny and check_move_max (Python API);
    check_move_small for 2^i (i < 16) and 2^i - 1 (2 <= i < 16) (njit)."""
    xa = XArray()
    _check_move(*kernel_args(xa))
    assert xa.empty
    # check_move_tiny
    xas = XaState(xa, 0)
    assert xas.next() is None
    assert xas.next() is None
    store_index(xa, 0)
    xas.set(0)
    assert xas.next() == 0
    assert xas.next() is None
    xas.set(0)
    assert xas.prev() == 0
    assert xas.prev() is None
    erase_index(xa, 0)
    assert xa.empty
    # check_move_max
    xas = XaState(xa, 0)
    store_index(xa, ULONG_MAX)
    assert xas.find(ULONG_MAX) == mk_index(ULONG_MAX)
    assert xas.find(ULONG_MAX) is None
    xas.set(0)
    assert xas.find(ULONG_MAX) == mk_index(ULONG_MAX)
    xas.pause()
    assert xas.find(ULONG_MAX) is None
    erase_index(xa, ULONG_MAX)
    assert xa.empty
    P, H, x = kernel_args(xa)
    for i in range(16):
        _check_move_small(P, H, x, np.int64(1 << i))
    for i in range(2, 16):
        _check_move_small(P, H, x, np.int64((1 << i) - 1))
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_create_range
# ================================================================================================

@njit
def _xa_store_many_order(P, H, xa, index, order):
    xas = nb_new_xas(xa, index)
    K.xas_set_order(xas, index, order)
    if K.xas_find_conflict(P, H, xas) != 0:
        raise AssertionError("xa_store_many_order: conflict")
    K.xas_create_range(P, H, xas)
    if K.xas_error(xas) != 0:
        raise AssertionError("xa_store_many_order: xas_create_range error")
    for i in range(np.int64(1) << order):
        if K.xas_store(P, H, xas, nb_mk_index(index + i)) != 0:
            raise AssertionError("xa_store_many_order: slot not empty")
        K.xas_next(P, H, xas)


@njit
def _create_range_1(P, H, xa, index, order):
    _xa_store_many_order(P, H, xa, index, order)
    for i in range(index, index + (np.int64(1) << order)):
        nb_erase_index(P, H, xa, i)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_create_range_1: not empty")


@njit
def _create_range_2(P, H, xa, order):
    nr = np.int64(1) << order
    i = np.int64(0)
    while i < nr * nr:
        _xa_store_many_order(P, H, xa, i, order)
        i += nr
    for k in range(nr * nr):
        nb_erase_index(P, H, xa, np.int64(k))
    if not K.xa_empty(H, xa):
        raise AssertionError("check_create_range_2: not empty")


@njit
def _create_range_4(P, H, xa, index, order):
    xas = nb_new_xas(xa, index)
    K.xas_set_order(xas, index, order)
    base = xas[K.X_INDEX]
    nb_store_index(P, H, xa, index)
    K.xas_create_range(P, H, xas)
    if K.xas_error(xas) != 0:
        raise AssertionError("check_create_range_4: xas_create_range error")
    for i in range(np.int64(1) << order):
        old = K.xas_store(P, H, xas, nb_mk_index(base + i))
        if xas[K.X_INDEX] == index:
            if old != nb_mk_index(base + i):
                raise AssertionError("check_create_range_4: lost the entry at index")
        elif old != 0:
            raise AssertionError("check_create_range_4: slot not empty")
        K.xas_next(P, H, xas)
    for i in range(base, base + (np.int64(1) << order)):
        nb_erase_index(P, H, xa, i)
    if not K.xa_empty(H, xa):
        raise AssertionError("check_create_range_4: not empty")


@njit
def _create_range_5(P, H, xa, index, order):
    xas = nb_new_xas(xa, index)
    K.xas_set_order(xas, index, order)
    nb_store_order(P, H, xa, index, order, nb_mk_index(index))
    for _ in range(order + 10):
        K.xas_create_range(P, H, xas)
        if K.xas_error(xas) != 0:
            raise AssertionError("check_create_range_5: xas_create_range error")
    K.xa_destroy_nb(P, H, xa)


@njit
def _check_create_range(P, H, xa):
    for order in range(12):
        o = np.int64(order)
        one = np.int64(1)
        for idx in (np.int64(0), one << o, np.int64(2) << o, np.int64(3) << o, one << 24):
            _create_range_1(P, H, xa, idx, o)
        if order < 10:
            _create_range_2(P, H, xa, o)
        for idx in (np.int64(0), one << o, np.int64(2) << o, np.int64(3) << o, one << 24, one,
                    (one << o) + 1, (np.int64(2) << o) + 1, (np.int64(2) << o) - 1, (np.int64(3) << o) + 1,
                    (np.int64(3) << o) - 1, (one << 24) + 1):
            _create_range_4(P, H, xa, idx, o)
        _create_range_5(P, H, xa, np.int64(0), o)
        _create_range_5(P, H, xa, one << o, o)


def test_check_create_range():
    """check_create_range: xas_create_range for orders 0..11 at aligned and unaligned
    bases including 1<<24, with stores through the created slots (njit); an xa_state in an
    error state stays in it (check_create_range_3)."""
    xa = XArray()
    _check_create_range(*kernel_args(xa, 8192))
    assert xa.empty and xa.nodes == 0
    xas = XaState(xa, 0)
    xas.set_err(-EEXIST)
    xas.create_range()
    assert xas.error == -EEXIST


# ================================================================================================
# check_store_range
# ================================================================================================

@njit
def _check_store_range(P, H, xa):
    for i in range(128):
        for j in range(i, 128):
            for base in (0, 128, 4095, 4096, 123456, 1 << 24):
                first = np.int64(base + i)
                last = np.int64(base + j)
                _store_range_1(P, H, xa, first, last)


@njit
def _store_range_1(P, H, xa, first, last):
    r = K.xa_store_range_nb(P, H, xa, first, last, nb_mk_index(first))
    if r != 0:
        raise AssertionError("__check_store_range: xa_store_range error")
    if K.xa_load_nb(P, H, xa, first) != nb_mk_index(first):
        raise AssertionError("__check_store_range: first")
    if K.xa_load_nb(P, H, xa, last) != nb_mk_index(first):
        raise AssertionError("__check_store_range: last")
    if K.xa_load_nb(P, H, xa, first - 1) != 0:
        raise AssertionError("__check_store_range: first - 1")
    if K.xa_load_nb(P, H, xa, last + 1) != 0:
        raise AssertionError("__check_store_range: last + 1")
    K.xa_store_range_nb(P, H, xa, first, last, np.int64(0))
    if not K.xa_empty(H, xa):
        raise AssertionError("__check_store_range: not empty")


def test_check_store_range():
    """check_store_range: xa_store_range(first, last) for all 0 <= i <= j < 128 at offsets
    0, 128, 4095, 4096, 123456 and 1<<24: first and last load the entry, first-1 and
    last+1 do not, a NULL range store empties the array (njit, full bounds)."""
    xa = XArray()
    _check_store_range(*kernel_args(xa))
    assert xa.empty and xa.nodes == 0


def test_store_range_edges():
    """xa_store_range at the ends of the index space (not in test_xarray.c): a range up to
    ULONG_MAX, and the whole range; -EINVAL for last < first."""
    xa = XArray()
    xa.store_range(ULONG_MAX - 200, ULONG_MAX, "top")
    assert xa.load(ULONG_MAX) == "top" and xa.load(ULONG_MAX - 200) == "top"
    assert xa.load(ULONG_MAX - 201) is None
    _check(xa)
    xa.store_range(ULONG_MAX - 200, ULONG_MAX, None)
    assert xa.empty
    xa.store_range(5, 1000, 7)
    assert [xa.load(i) for i in (4, 5, 1000, 1001)] == [None, 7, 7, None]
    _check(xa)
    xa.store_range(0, 2000, None)
    assert xa.empty
    xa[5] = 5
    with pytest.raises(XaInvalidIndex):
        xa.store_range(0, ULONG_MAX, "everything")
    P, H = xa.pool.arrays, xa.pool.heads
    assert K.xa_store_range_nb(P, H, np.int64(xa.id), np.int64(0), np.int64(-1), np.int64(3)) == \
        K.xa_error_entry(-EINVAL)
    assert xa[5] == 5 and len(xa) == 1
    xa.store_range(1, ULONG_MAX, "all but 0")
    assert [xa.load(i) for i in (0, 1, 5, 1 << 63, ULONG_MAX)] == [None] + ["all but 0"] * 4
    _check(xa)
    # the last piece is one entry in top-level slots 1..15 (15 << 60 indices); xas_get_order
    # assumes power-of-two entries: from slot 1 it sees siblings at 2, 3, 5, 9 -> 60 + 4
    assert xa.get_order(ULONG_MAX) == 64
    xa.store_range(0, ULONG_MAX - 1, None)  # erasing part of that entry erases all of it
    assert xa.empty


# ================================================================================================
# check_store_iter
# ================================================================================================

@njit
def _check_store_iter_1(P, H, xa, start, order, present, check_empty):
    xas = nb_new_xas(xa, start)
    K.xas_set_order(xas, start, order)
    count = 0
    lo = nb_mk_index(start)
    hi = nb_mk_index(start + (np.int64(1) << order) - 1)
    while True:
        entry = K.xas_find_conflict(P, H, xas)
        if entry == 0:
            break
        if not K.xa_is_value(entry) or entry < lo or entry > hi:
            raise AssertionError("__check_store_iter: wrong conflicting entry")
        count += 1
    K.xas_store(P, H, xas, nb_mk_index(start))
    if K.xas_error(xas) != 0:
        raise AssertionError("__check_store_iter: store error")
    if count != present:
        raise AssertionError("__check_store_iter: wrong number of conflicts")
    if K.xa_load_nb(P, H, xa, start) != nb_mk_index(start):
        raise AssertionError("__check_store_iter: start")
    if K.xa_load_nb(P, H, xa, start + (np.int64(1) << order) - 1) != nb_mk_index(start):
        raise AssertionError("__check_store_iter: end")
    nb_erase_index(P, H, xa, start)
    if check_empty and not K.xa_empty(H, xa):
        raise AssertionError("check_store_iter: not empty")


@njit
def _check_store_iter(P, H, xa):
    for i in range(20):
        o = np.int64(i)
        mn = np.int64(1) << o
        mx = (np.int64(2) << o) - 1
        _check_store_iter_1(P, H, xa, np.int64(0), o, 0, True)
        _check_store_iter_1(P, H, xa, mn, o, 0, True)
        nb_store_index(P, H, xa, mn)
        _check_store_iter_1(P, H, xa, mn, o, 1, True)
        nb_store_index(P, H, xa, mx)
        _check_store_iter_1(P, H, xa, mn, o, 1, True)
        for j in range(mn):
            nb_store_index(P, H, xa, np.int64(j))
        _check_store_iter_1(P, H, xa, np.int64(0), o, mn, True)
        for j in range(mn):
            nb_store_index(P, H, xa, mn + j)
        _check_store_iter_1(P, H, xa, mn, o, mn, True)
    nb_store_index(P, H, xa, np.int64(63))
    nb_store_index(P, H, xa, np.int64(65))
    _check_store_iter_1(P, H, xa, np.int64(64), np.int64(2), 1, False)
    nb_erase_index(P, H, xa, np.int64(63))
    if not K.xa_empty(H, xa):
        raise AssertionError("check_store_iter: not empty at the end")


def test_check_store_iter():
    """check_store_iter: xas_for_each_conflict under an order-N store (N < 20) counts the
    entries already there (njit, full bounds)."""
    xa = XArray()
    _check_store_iter(*kernel_args(xa, 16384))
    assert xa.empty and xa.nodes == 0


# ================================================================================================
# check_align
# ================================================================================================

def test_check_align():
    """check_align: pointers of any alignment (here: distinct objects) are allocated ids
    0..7 and iterate back unchanged; storing after xa_reserve needs no memory."""
    xa = XArray(XA_FLAGS_ALLOC)
    name = "Motorola 68000"
    for shift in range(4):
        objs = [name[shift + i:] for i in range(8)]
        for i in range(8):
            assert xa.alloc(objs[i], xa_limit_32b) == (0, i)
        assert [e for _, e in xa.items()] == objs
        xa.destroy()
    assert xa.empty
    objs = [object() for _ in range(8)]
    for o in objs:
        assert xa.store(0, o) is None
        xa.erase(0)
    for o in objs:
        assert xa.reserve(0) == 0
        free_before = xa.pool.free_count
        want_before = xa.pool.nr_allocated
        assert xa.store(0, o) is None
        assert xa.pool.nr_allocated == want_before and xa.pool.free_count == free_before
        xa.erase(0)
    assert xa.empty


# ================================================================================================
# check_split
# ================================================================================================

@njit
def _check_split_tail(P, H, xa, xas, index, order, new_order):
    i = np.int64(0)
    while i < (np.int64(1) << order):
        K.xas_set_order(xas, index + i, new_order)
        K.xas_store(P, H, xas, nb_mk_index(index + i))
        if K.xas_error(xas) != 0:
            raise AssertionError("check_split: store after split needed memory")
        i += np.int64(1) << new_order
    for k in range(np.int64(1) << order):
        val = index + (k & ~((np.int64(1) << new_order) - 1))
        if K.xa_load_nb(P, H, xa, index + k) != nb_mk_index(val):
            raise AssertionError("check_split: wrong entry after split")
    K.xa_set_mark_nb(P, H, xa, index, 0)
    if not K.xa_get_mark_nb(P, H, xa, index, 0):
        raise AssertionError("check_split: mark not set")
    K.xas_set_order(xas, index, np.int64(0))
    found = 0
    entry = K.xas_find_marked(P, H, xas, np.int64(-1), 1)
    while entry != 0:
        found += 1
        if K.xa_is_internal(entry):
            raise AssertionError("check_split: internal entry marked")
        entry = K.xas_next_marked(P, H, xas, np.int64(-1), 1)
    if found != (1 << (order - new_order)):
        raise AssertionError("check_split: marks did not reach every new entry")
    i = np.int64(0)
    while i < (np.int64(1) << order):
        K.xa_erase_nb(P, H, xa, index + i)
        i += np.int64(1) << new_order
    if not K.xa_empty(H, xa):
        raise AssertionError("check_split: not empty")


@njit
def _check_split_12(P, H, xa, index, order, new_order, ptr, try_split):
    """check_split_1 (xas_split) or, with try_split, check_split_2 (xas_try_split)."""
    xas = nb_new_xas(xa, index)
    K.xas_set_order(xas, index, new_order)
    nb_store_order(P, H, xa, index, order, ptr)
    K.xa_set_mark_nb(P, H, xa, index, 1)
    if not try_split:
        K.xas_split(P, H, xas, ptr, order)
        if K.xas_error(xas) != 0:
            raise AssertionError("check_split_1: xas_split error")
        _check_split_tail(P, H, xa, xas, index, order, new_order)
    else:
        K.xas_try_split(P, H, xas, ptr, order)
        if (new_order // 6) < (order // 6) and new_order < order - 1:
            if K.xas_error(xas) != -K.EINVAL:
                raise AssertionError("check_split_2: xas_try_split must refuse a split needing 2 nodes")
        else:
            if K.xas_error(xas) != 0:
                raise AssertionError("check_split_2: xas_try_split error")
            _check_split_tail(P, H, xa, xas, index, order, new_order)
    K.xa_destroy_nb(P, H, xa)


@njit
def _check_split(P, H, xa, ptr):
    for order in range(1, 2 * K.XA_CHUNK_SHIFT):
        o = np.int64(order)
        for new_order in range(order):
            no = np.int64(new_order)
            for index in (np.int64(0), np.int64(1) << o, np.int64(3) << o):
                _check_split_12(P, H, xa, index, o, no, ptr, False)
                _check_split_12(P, H, xa, index, o, no, ptr, True)


def test_check_split():
    """check_split: xas_split (check_split_1) and xas_try_split (check_split_2) of order-N
    entries (1 <= N < 12) into every smaller order at 0, 1<<N and 3<<N; the marks of the
    entry reach all 1 << (N - new) pieces; try_split refuses splits needing two nodes."""
    xa = XArray()
    _check_split(*kernel_args(xa), PTR)
    assert xa.empty and xa.nodes == 0


def test_split_through_api():
    """xas_split_alloc + xas_split through XaState, as mm/huge_memory.c uses them."""
    xa = XArray()
    payload = object()
    xa.store_order(768, 8, payload)
    xa.set_mark(768, XA_MARK_2)
    xas = XaState(xa, 768, order=2)
    xas.split_alloc(payload, 8)
    assert xas.error == 0
    xas.split(payload, 8)
    assert xas.error == 0
    _check(xa)
    assert xa.get_order(768) == 2
    assert [xa.get_mark(768 + 4 * k, XA_MARK_2) for k in range(64)] == [True] * 64
    assert all(xa.load(768 + k) is payload for k in range(256))
    xas2 = XaState(xa, 0, order=0)
    xas2.split_alloc(payload, 20)  # more than two levels: the kernel WARNs and fails
    assert xas2.error == -K.ENOMEM
    xa.destroy()
    assert xa.nodes == 0


def test_marks_api_basics():
    """The three marks are independent, XA_PRESENT finds unmarked entries, xa_marked
    follows the marks of the whole array."""
    xa = XArray()
    xa.store(10, "a")
    xa.store(4000, "b")
    xa.set_mark(4000, XA_MARK_1)
    assert xa.marked(XA_MARK_1) and not xa.marked(XA_MARK_0) and not xa.marked(XA_MARK_2)
    assert xa.find(0, ULONG_MAX, XA_MARK_1) == ("b", 4000)
    assert xa.find(0, ULONG_MAX, XA_PRESENT) == ("a", 10)
    assert [i for i, _ in xa.items(mark=XA_MARK_1)] == [4000]
    xa.clear_mark(4000, XA_MARK_1)
    assert not xa.marked(XA_MARK_1)
    assert xa.find(0, ULONG_MAX, XA_MARK_1) == (None, 0)
    _check(xa)
