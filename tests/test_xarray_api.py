"""The XArray's Python API, node pools and sources, the -ENOMEM protocol, accounting."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from memdesc._numba import njit
from memdesc.errors import InvariantViolation, MemdescError
from memdesc.lib import _xarray_kernels as K
from memdesc.lib.xarray import (
    LONG_MAX,
    NODES_PER_PAGE,
    ULONG_MAX,
    XA_FLAGS_ALLOC,
    XA_MARK_0,
    XA_MARK_1,
    XA_NODE_BYTES,
    XA_RETRY_ENTRY,
    XA_ZERO_ENTRY,
    XaInternal,
    XaInvalidEntry,
    XaInvalidIndex,
    XaNodeSourceError,
    XaNoMemory,
    XaNotPresent,
    XaPool,
    XArray,
    XaState,
    xa_is_value,
    xa_mk_value,
    xa_to_value,
)


class SlabSource:
    """A node source standing in for the modelled slab: hands out ids, counts them, and
    can run dry."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.free_ids: list[int] = []
        self.next_id = 0
        self.live: set[int] = set()
        self.allocs = 0
        self.frees = 0

    def alloc_node(self):
        if self.limit is not None and len(self.live) >= self.limit:
            return None
        nid = self.free_ids.pop() if self.free_ids else self.next_id
        if nid == self.next_id:
            self.next_id += 1
        self.live.add(nid)
        self.allocs += 1
        return nid

    def free_node(self, nid):
        assert nid in self.live, f"node {nid} freed twice or never allocated"
        self.live.remove(nid)
        self.free_ids.append(nid)
        self.frees += 1


# ---- the Pythonic mapping -----------------------------------------------------------------------

def test_mapping_protocol():
    xa = XArray()
    assert not xa and len(xa) == 0 and xa.empty
    xa[3] = "three"
    xa[ULONG_MAX] = "top"
    xa[1 << 40] = 40
    assert xa[3] == "three" and xa[1 << 40] == 40 and xa[ULONG_MAX] == "top"
    assert 3 in xa and 4 not in xa and "x" not in xa and -1 not in xa
    assert len(xa) == 3 and bool(xa)
    assert list(xa) == [3, 1 << 40, ULONG_MAX]
    assert list(xa.values()) == ["three", 40, "top"]
    assert list(xa.items(start=4, max=ULONG_MAX - 1)) == [(1 << 40, 40)]
    assert xa.get(4) is None and xa.get(4, "d") == "d"
    with pytest.raises(XaNotPresent) as ei:
        xa[4]  # noqa: B018
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, MemdescError)
    with pytest.raises(XaNotPresent):
        del xa[4]
    del xa[3]
    xa[1 << 40] = None  # storing NULL erases
    assert list(xa) == [ULONG_MAX]
    del xa[ULONG_MAX]
    assert xa.empty and xa.nodes == 0
    assert "XArray(id=" in repr(xa)


def test_items_across_batches_and_marks():
    """items() refills in batches of 256 (xa_find_after from the last index)."""
    xa = XArray()
    idx = list(range(0, 3000, 3)) + [1 << 50]
    for i in idx:
        xa[i] = i
    for i in idx[::7]:
        xa.set_mark(i, XA_MARK_1)
    assert list(xa.keys()) == idx
    assert list(xa.keys(mark=XA_MARK_1)) == idx[::7]
    assert xa.extract(0, ULONG_MAX, 5) == idx[:5]
    assert xa.extract(10, 20) == [i for i in idx if 10 <= i <= 20]
    xa.check()


def test_value_entries_and_objects():
    xa = XArray()
    big, neg, flag = LONG_MAX + 1, -5, True
    for i, v in enumerate([0, 1, LONG_MAX, (1 << 62) - 1, 1 << 62, np.int64(7), np.uint32(9)]):
        xa[i] = v
        assert xa[i] == int(v) and type(xa[i]) is int
    for i, v in enumerate([big, neg, flag, "s", None.__class__]):
        xa[100 + i] = v
        assert xa[100 + i] is v  # not value entries: stored as objects, identity kept
    xas = XaState(xa, 2)
    assert xas.load() == LONG_MAX
    raw = xa.pool.node(xas.node).slots
    assert raw[xas.offset] == -1  # LONG_MAX as a value entry is (LONG_MAX << 1) | 1, i.e. all ones
    assert xa_mk_value(5) == 5 and xa_to_value(5) == 5 and xa_is_value(LONG_MAX)
    assert not xa_is_value(-1) and not xa_is_value(LONG_MAX + 1) and not xa_is_value("x")
    with pytest.raises(XaInvalidEntry):
        xa_mk_value(-1)
    with pytest.raises(XaInvalidEntry):
        xa_to_value("x")
    xa.check()


def test_cmpxchg_identity_and_equality():
    xa = XArray()
    a, b = ["a"], ["a"]
    xa[1] = a
    assert xa.cmpxchg(1, b, "new") is a  # equal but not identical: no exchange
    assert xa[1] is a
    assert xa.cmpxchg(1, a, "new") is a
    assert xa[1] == "new"
    xa[2] = 10
    assert xa.cmpxchg(2, 10, 11) == 10 and xa[2] == 11  # value entries compare by value


def test_zero_and_retry_entries_through_normal_api():
    xa = XArray()
    assert xa.store(5, XA_ZERO_ENTRY) is None  # storing XA_ZERO_ENTRY is xa_reserve
    assert xa.load(5) is None and not xa.empty and len(xa) == 0
    with pytest.raises(XaInvalidEntry):
        xa.store(6, XA_RETRY_ENTRY)  # an "advanced" entry: xa_store returns -EINVAL
    with pytest.raises(XaInvalidEntry):
        xa.store(6, XaInternal(K.xa_mk_sibling(3)))
    with pytest.raises(XaInvalidEntry):
        xa.store_range(1, 2, XA_RETRY_ENTRY)
    xa.erase(5)
    assert xa.empty


# ---- argument validation --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 1 << 64, 1.5, "3", None])
def test_bad_index(bad):
    xa = XArray()
    with pytest.raises(XaInvalidIndex) as ei:
        xa.store(bad, 1)
    assert isinstance(ei.value, ValueError)
    with pytest.raises(XaInvalidIndex):
        xa.load(bad)
    with pytest.raises(XaInvalidIndex):
        XaState(xa, bad)


def test_bad_marks_orders_limits_flags():
    xa = XArray()
    xa[0] = 1
    for bad in (-1, 3, 8.0, "m"):
        with pytest.raises(XaInvalidIndex):
            xa.set_mark(0, bad)
    with pytest.raises(XaInvalidIndex):
        xa.find(0, ULONG_MAX, 5)
    for bad in (-1, 64, "2"):
        with pytest.raises(XaInvalidIndex):
            xa.store_order(0, bad, 1)
    a = XArray(XA_FLAGS_ALLOC)
    with pytest.raises(XaInvalidIndex):
        a.alloc(1, (0, 1 << 32))
    with pytest.raises(XaInvalidIndex):
        a.alloc_cyclic(1, (0, 10), -1)
    with pytest.raises(XaInvalidIndex):
        XArray(1 << 40)
    with pytest.raises(XaInvalidIndex):
        XArray("ALLOC")
    with pytest.raises(XaInvalidIndex):
        xa.store_range(10, 9, 1)
    with pytest.raises(XaInvalidIndex):
        XaState(xa, 0).set_err(5)
    with pytest.raises(XaInvalidIndex):
        xa.pool.node(xa.pool.capacity)


# ---- accounting ------------------------------------------------------------------------------------

def test_node_accounting():
    """Node counts follow from the geometry: 64 slots per node, one node per level."""
    assert NODES_PER_PAGE == 7 and XA_NODE_BYTES == 576
    xa = XArray()
    xa[0] = 1
    assert xa.nodes == 0  # a single entry at index 0 lives in the head
    xa[63] = 1
    assert xa.nodes == 1  # one leaf covers 0..63
    xa[64] = 1
    assert xa.nodes == 3  # top (shift 6) + two leaves
    xa.destroy()
    xa[ULONG_MAX] = 1
    assert xa.nodes == 11  # shifts 60, 54, .., 0
    assert xa.memory_bytes == 11 * 576 == xa.pool.memory_bytes
    before = xa.pool.nr_allocated
    del xa[ULONG_MAX]
    assert xa.nodes == 0 and xa.pool.live_nodes == 0
    assert xa.pool.nr_freed == xa.pool.nr_allocated == before
    xa.check()


def test_nodes_needed_matches_allocation():
    """nodes_needed (the preload count) is what the store then takes from the pool."""
    xa = XArray()
    assert xa.nodes_needed(0) == 1  # worst case over entries: one that may not sit in the head
    assert xa.nodes_needed(ULONG_MAX) == 11
    xa[64] = 1
    cases = {65: 0, 200: 1, 4096: 3, (1 << 20) + 5: 5, ULONG_MAX: 19}
    for index, expected in cases.items():
        assert xa.nodes_needed(index) == expected
        before = xa.pool.nr_allocated
        xa[index] = 2
        assert xa.pool.nr_allocated - before == expected
        del xa[index]
        xa.check()
    # an order-12 entry at 0 goes into slot 0 of a new shift-12 top (one node), replacing
    # the old tree below it
    assert xa.nodes_needed(0, order=12) == 1
    before = xa.pool.nr_allocated
    xa.store_order(0, 12, "big")
    assert xa.pool.nr_allocated - before == 1 and xa[4095] == "big" and xa[64] == "big"
    xa.check()


def test_shared_pool_many_arrays():
    """200 arrays in one pool (a page allocator's free lists): each stays consistent and
    the pool's live nodes are the sum of the arrays' nodes."""
    pool = XaPool(capacity=8, max_xarrays=2)
    arrays = [XArray(pool=pool) for _ in range(200)]
    assert len({a.id for a in arrays}) == 200
    rng = np.random.default_rng(5)
    present = [set() for _ in arrays]
    for _ in range(6000):
        k = int(rng.integers(200))
        i = int(rng.integers(0, 5000))
        if i in present[k]:
            assert arrays[k].erase(i) == i
            present[k].discard(i)
        else:
            assert arrays[k].store(i, i) is None
            present[k].add(i)
    for a, p in zip(arrays, present, strict=True):
        a.check()
        assert set(a.keys()) == p
    assert pool.live_nodes == sum(a.nodes for a in arrays)
    for a in arrays:
        a.destroy()
    assert pool.live_nodes == 0 and pool.nr_freed == pool.nr_allocated


def test_released_array_frees_nodes_and_id():
    pool = XaPool()
    xa = XArray(pool=pool)
    xa[1 << 30] = object()
    xid = xa.id
    assert pool.live_nodes > 0
    del xa
    gc.collect()
    assert pool.live_nodes == 0
    assert XArray(pool=pool).id == xid  # the heads row is reused


def test_check_catches_corruption():
    """check() is not vacuous: it sees a wrong count, a lost mark and a stale sibling."""
    xa = XArray()
    for i in (1, 2, 100):
        xa[i] = i
    xa.set_mark(100, XA_MARK_0)
    xa.check()
    meta = xa.pool.arrays.meta
    leaf = xa.pool.arrays.slots[xa.head_node, 0] >> 2
    leaf -= K.XA_NODE_BIAS
    meta[leaf, K.M_COUNT] += 1
    with pytest.raises(InvariantViolation, match="count"):
        xa.check()
    meta[leaf, K.M_COUNT] -= 1
    saved = xa.pool.arrays.marks[xa.head_node, XA_MARK_0]
    xa.pool.arrays.marks[xa.head_node, XA_MARK_0] = 0  # the top no longer says "marked below"
    with pytest.raises(InvariantViolation, match="mark"):
        xa.check()
    xa.pool.arrays.marks[xa.head_node, XA_MARK_0] = saved
    xa.check()
    xa.pool.arrays.slots[leaf, 3] = K.xa_mk_sibling(np.int64(5))
    meta[leaf, K.M_COUNT] += 1
    with pytest.raises(InvariantViolation, match="sibling"):
        xa.check()


# ---- node sources and -ENOMEM ----------------------------------------------------------------------

def test_pluggable_source_every_node_is_an_allocation():
    src = SlabSource()
    pool = XaPool(capacity=2, source=src)
    xa = XArray(pool=pool)
    for i in range(0, 40000, 7):
        xa[i] = i
        assert len(src.live) == xa.nodes  # nothing cached on the pool's free stack
    assert pool.free_count == 0
    for i in range(0, 40000, 7):
        del xa[i]
    assert xa.nodes == 0 and not src.live
    assert src.allocs == src.frees > 0


def test_source_exhaustion_raises_and_changes_nothing():
    src = SlabSource(limit=3)
    xa = XArray(pool=XaPool(source=src))
    xa[5] = "a"
    xa[70] = "b"  # top + 2 leaves = 3 nodes
    assert len(src.live) == 3
    with pytest.raises(XaNoMemory) as ei:
        xa[1 << 20] = "c"  # needs an expansion and new leaves
    assert isinstance(ei.value, MemdescError) and isinstance(ei.value, MemoryError)
    assert xa.load(1 << 20) is None and xa[5] == "a" and xa[70] == "b"
    assert len(src.live) == 3 and xa.pool.free_count == 0  # nodes got for the try went back
    xa.check()
    xs = XaState(xa, 1 << 21)
    with pytest.raises(XaNoMemory):
        xs.store("d")
    assert xa.load(1 << 21) is None
    xa[6] = "fits"  # same leaf: no node needed
    assert xa[6] == "fits"


def test_bad_source_ids():
    class Dup(SlabSource):
        def alloc_node(self):
            self.live.add(0)
            return 0

    xa = XArray(pool=XaPool(source=Dup()))
    with pytest.raises(XaNodeSourceError):
        xa[1 << 12] = 1  # the second node it hands out is node 0 again

    class Neg(SlabSource):
        def alloc_node(self):
            return -3

    with pytest.raises(XaNodeSourceError):
        XArray(pool=XaPool(source=Neg()))[64] = 1

    class Junk(SlabSource):
        def alloc_node(self):
            return "n"

    with pytest.raises(XaNodeSourceError):
        XArray(pool=XaPool(source=Junk()))[64] = 1


def _snapshot(pool, heads):
    return [pool.slots.copy(), pool.marks.copy(), pool.meta.copy(), pool.free.copy(), heads.copy(),
            pool.ctl[:K.C_WANT].copy()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_kernels_fail_with_enomem_without_changing_anything():
    """The xas_nomem protocol: with too few nodes on the free stack every allocating kernel
    returns -ENOMEM, says how many nodes it wants, and leaves pool and heads unchanged."""
    xa = XArray()
    for i in (0, 1, 1000):
        xa[i] = i
    xa.store_order(4096 * 3, 12, "big")
    xa.set_mark(1, XA_MARK_1)
    P, H, x = xa.pool.arrays, xa.pool.heads, np.int64(xa.id)
    while xa.pool.free_count:  # empty the free stack
        K.pool_take_free_nb(P)
    enomem = int(K.xa_error_entry(-K.ENOMEM))
    one = np.int64(1)

    def xas_at(index, order=0):
        s = np.zeros(K.X_LEN, np.int64)
        K.xas_init(s, x, np.int64(index))
        K.xas_set_order(s, np.int64(index), np.int64(order))
        return s

    calls = {
        "xa_store": lambda: int(K.xa_store_nb(P, H, x, np.int64(1 << 40), one)) == enomem,
        "xa_store_order": lambda: int(K.xa_store_order_nb(P, H, x, np.int64(1 << 20), np.int64(3), one))
        == enomem,
        "xa_insert": lambda: int(K.xa_insert_nb(P, H, x, np.int64(5000), one)) == -K.ENOMEM,
        "xa_store_range": lambda: int(K.xa_store_range_nb(P, H, x, np.int64(70), np.int64(900), one))
        == enomem,
        "xas_split": lambda: (K.xas_split(P, H, s := xas_at(4096 * 3, 6), one, np.int64(12)),
                              K.xas_error(s) == -K.ENOMEM)[1],
        "xas_try_split": lambda: (K.xas_try_split(P, H, s := xas_at(4096 * 3, 11), one, np.int64(12)),
                                  K.xas_error(s) == -K.ENOMEM)[1],
        "xas_create_range": lambda: (K.xas_create_range(P, H, s := xas_at(1 << 16, 8)),
                                     K.xas_error(s) == -K.ENOMEM)[1],
        "xa_alloc_cyclic": None,
    }
    before = _snapshot(P, H)
    for name, call in calls.items():
        if call is None:
            continue
        assert call(), name
        assert _same(before, _snapshot(P, H)), f"{name} changed the pool before failing"
        assert xa.pool.want >= 1
    xa.check()
    # the API obtains the nodes and retries
    xa.store_range(70, 900, "r")
    assert xa[70] == "r" and xa[900] == "r" and xa[1000] == 1000
    xa.check()


def test_xas_nomem_explicit():
    """xas_nomem(): after a failed store, get nodes and retry (check_split_2's pattern)."""
    xa = XArray()
    xa[0] = 0
    xas = XaState(xa, 1 << 30)
    xas.set_err(-K.ENOMEM)
    xa.pool.arrays.ctl[K.C_WANT] = 3
    assert xas.nomem()
    assert xas.node == K.XAS_RESTART and xa.pool.free_count >= 3
    assert not xas.nomem()  # no error: nothing to do
    xas.store("x")
    assert xa[1 << 30] == "x"


# ---- the object table ------------------------------------------------------------------------------

class Payload:
    pass


def test_overwritten_objects_are_released():
    """Objects no slot refers to any more are dropped from the table (swept when it
    outgrows the tree), so the array does not keep them alive."""
    xa = XArray()
    first = Payload()
    ref = weakref.ref(first)
    xa[7] = first
    del first
    for _ in range(3000):
        xa[7] = Payload()
    gc.collect()
    assert ref() is None
    assert len(xa._objs) <= 2049
    keep = xa[7]
    assert isinstance(keep, Payload)
    xa.store_order(1 << 12, 12, keep)  # the same object in two entries: one tag
    assert xa[5000] is keep
    xa._sweep()
    assert xa[7] is keep and xa[5000] is keep


def test_destroy_drops_objects():
    xa = XArray()
    p = Payload()
    ref = weakref.ref(p)
    xa[1] = p
    del p
    xa.destroy()
    gc.collect()
    assert ref() is None and xa.empty


@njit
def _store_run(P, H, xa, first, n):
    """A design's inner loop: store value entries first .. first+n-1; stop at the first
    -ENOMEM and return how many were stored."""
    for k in range(n):
        i = first + k
        enough = K.xa_nodes_needed_nb(P, H, xa, i) <= K.pool_free_count(P)
        r = K.xa_store_nb(P, H, xa, i, K.xa_mk_value(i))
        if K.xa_is_err(r):
            if K.xa_err(r) != -K.ENOMEM or enough:
                raise AssertionError("a store failed although nodes_needed nodes were there")
            return k
        if r != 0:
            raise AssertionError("store replaced an entry")
    return n


def test_njit_caller_resumes_after_enomem():
    """The protocol a design's njit loop follows: nodes_needed says when a store would
    fail, the store then fails with -ENOMEM having changed nothing, Python supplies
    pool.want nodes and the loop resumes; no entry is lost or stored twice."""
    xa = XArray(pool=XaPool(capacity=1))
    done, rounds = 0, 0
    total = 70000
    while done < total:
        P, H = xa.pool.arrays, xa.pool.heads  # supply() may have grown the arrays
        done += _store_run(P, H, np.int64(xa.id), np.int64(done), np.int64(total - done))
        if done < total:
            rounds += 1
            assert xa.pool.want >= 1
            xa.pool.supply(xa.pool.want)
    assert rounds > 100  # it really ran out of nodes along the way
    assert len(xa) == total and xa[0] == 0 and xa[total - 1] == total - 1
    assert xa.nodes == xa.pool.nr_allocated == xa.pool.live_nodes
    xa.check(shrunk=True)


def test_items_while_changing_the_array():
    """Like xa_for_each, items() never yields an entry erased before the walk reaches it
    and does yield one stored ahead of it, even within one fetched batch."""
    xa = XArray()
    for i in range(600):
        xa[i] = i
    seen = []
    for index, _entry in xa.items():
        seen.append(index)
        if index == 10:
            for j in range(11, 300):
                del xa[j]
            xa[299] = "new"
        if index == 400:
            xa.store_order(1 << 20, 4, "late")
    assert seen == list(range(11)) + [299] + list(range(300, 600)) + [1 << 20]
    assert xa[299] == "new"
    marked = []
    for i in range(0, 600, 2):
        xa.set_mark(i, XA_MARK_1)
    for index, _ in xa.items(mark=XA_MARK_1):
        marked.append(index)
        if index == 0:
            for j in range(2, 300, 2):
                xa.clear_mark(j, XA_MARK_1)
    assert marked == [0] + list(range(300, 600, 2))
