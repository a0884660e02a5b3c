"""Tests of the slab allocator (memdesc.mm.slab): numba layer, facade, i386 lowmem, /proc/slabinfo.

Expected values come from the kernel sources (SLUB's formulas, slab_common.c's format
strings), from real /proc/slabinfo lines, or from a reference model kept in plain Python.
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as hst
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memdesc._numba import njit
from memdesc.errors import ConfigError, DoubleFree
from memdesc.mm import gfp
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc.dispatch import pa_alloc, pa_free
from memdesc.mm.slab import (
    CF_ORDER,
    E_BAD_CACHE,
    E_DOUBLE_FREE,
    E_EMPTY,
    E_FOREIGN,
    E_MISALIGNED,
    E_NOCAP_HASH,
    E_NOCAP_OBJS,
    E_NOCAP_SLABS,
    E_NOT_DIRECT,
    E_PFN_ALIGN,
    E_PFN_BUSY,
    E_WRONG_CACHE,
    L_EMPTY,
    OK,
    SLAB_FREE_DISCARD,
    SLABINFO_HEADER,
    InvalidObject,
    KmemCache,
    SlabAllocator,
    calculate_min_partial,
    calculate_size,
    format_slabinfo_line,
    free_path_allocations,
    kmem_cache_add_slab_nb,
    kmem_cache_alloc_nb,
    kmem_cache_free_nb,
    kmem_cache_preload_nb,
    kmem_cache_shrink_nb,
    new_slab_state,
    objects_free_nb,
    refill_from_pages,
    slab_check,
    slab_enter_free_path_nb,
    slab_leave_free_path_nb,
    slab_state_add_cache,
    slab_state_call,
    slab_state_grow,
    slab_state_reserve,
    virt_to_cache_nb,
    virt_to_slab_nb,
)
from nojit import jsonable, run_json

PAGE = 4096
i64 = np.int64


def snapshot(st):
    return tuple(np.array(a, copy=True) for a in st)


def same(st, snap, ignore_cstat=False):
    for i, (a, b) in enumerate(zip(st, snap, strict=True)):
        if ignore_cstat and i == 1:
            continue
        if not np.array_equal(a, b):
            return False
    return True


# ------------------------------------------------------------------ geometry


@pytest.mark.parametrize("size,align,expect", [(1, 16, 16), (16, 16, 16), (17, 16, 32), (576, 16, 576),
                                               (100, 64, 128), (8, 8, 16), (1256, 8, 1264)])
def test_size_rounding(size, align, expect):
    # memdescs need 16-byte alignment: the effective alignment is max(align, 16)
    assert calculate_size(size, align) == expect


@pytest.mark.parametrize("size,expect", [(16, 5), (576, 5), (1024, 5), (4096, 6), (1 << 20, 10),
                                         (1 << 30, 10)])
def test_min_partial_is_slub_formula(size, expect):
    # kmem_cache_open(): min_partial = clamp(ilog2(size) / 2, MIN_PARTIAL=5, MAX_PARTIAL=10)
    assert calculate_min_partial(size) == expect


def test_objects_per_slab_radix_tree_node():
    st, c = slab_state_add_cache(new_slab_state(), 576)
    assert int(st.caches[c, 4]) == 7  # 4096 // 576: "7 per 4 KiB page"
    st, c2 = slab_state_add_cache(st, 4096, order=2)
    assert int(st.caches[c2, 4]) == 4


@pytest.mark.parametrize("kw,match", [
    (dict(size=0), "at least 1 byte"), (dict(size=5000), "use order >= 1"),
    (dict(size=16, order=11), "MAX_PAGE_ORDER"), (dict(size=64, align=24), "power of two"),
    (dict(size=16, order=7), "MAX_OBJS_PER_PAGE"), (dict(size=16, min_partial=-1), "min_partial"),
    (dict(size=2.5), "integer"),
])
def test_bad_geometry(kw, match):
    with pytest.raises(ConfigError, match=match):
        slab_state_add_cache(new_slab_state(), **kw)


# ------------------------------------------------------------------ numba layer without a machine


def test_alloc_empty_cache_does_not_touch_pages():
    st, c = slab_state_add_cache(new_slab_state(), 64)
    snap = snapshot(st)
    assert kmem_cache_alloc_nb(st, i64(c)) == E_EMPTY
    assert same(st, snap, ignore_cstat=True)
    assert kmem_cache_alloc_nb(st, i64(5)) == E_BAD_CACHE


def test_slab_layout_freelist_order_and_errors():
    st, c = slab_state_add_cache(new_slab_state(), 1000)  # 1008-byte objects, 4 per page, 64-byte tail
    pfn = 0x1234
    assert kmem_cache_add_slab_nb(st, i64(c), i64(pfn)) >= 0
    addrs = [int(kmem_cache_alloc_nb(st, i64(c))) for _ in range(4)]
    # a new slab's freelist is 0, 1, 2, ... (no freelist randomisation)
    assert addrs == [(pfn << 12) + j * 1008 for j in range(4)]
    assert kmem_cache_alloc_nb(st, i64(c)) == E_EMPTY
    snap = snapshot(st)
    base = pfn << 12
    for bad, code in [(base + 8, E_MISALIGNED), (base + 4 * 1008, E_MISALIGNED), ((pfn + 1) << 12, E_FOREIGN),
                      (-5, E_FOREIGN)]:
        assert kmem_cache_free_nb(st, i64(c), i64(bad)) == code
        assert same(st, snap, ignore_cstat=True)
    assert int(st.cstat[c, 8]) == 4  # free_rejected
    assert kmem_cache_free_nb(st, i64(c), i64(addrs[2])) == OK
    snap = snapshot(st)
    assert kmem_cache_free_nb(st, i64(c), i64(addrs[2])) == E_DOUBLE_FREE
    assert same(st, snap, ignore_cstat=True)
    # LIFO: the object just freed is the next one handed out
    assert kmem_cache_alloc_nb(st, i64(c)) == addrs[2]
    assert slab_check(st) == "ok"


def test_wrong_cache_and_kfree_lookup():
    st, a = slab_state_add_cache(new_slab_state(), 64)
    st, b = slab_state_add_cache(st, 128, order=1)
    assert kmem_cache_add_slab_nb(st, i64(a), i64(10)) >= 0
    assert kmem_cache_add_slab_nb(st, i64(b), i64(12)) >= 0
    x = int(kmem_cache_alloc_nb(st, i64(b)))
    y = int(kmem_cache_alloc_nb(st, i64(b)))
    assert virt_to_cache_nb(st, i64(x)) == b
    assert virt_to_cache_nb(st, i64((13 << 12) + 5)) == b  # second page of the order-1 slab
    assert virt_to_slab_nb(st, i64(11 << 12)) == -1
    assert kmem_cache_free_nb(st, i64(a), i64(x)) == E_WRONG_CACHE
    assert kmem_cache_free_nb(st, i64(-1), i64(x)) >= 0  # kfree(): any cache
    assert kmem_cache_free_nb(st, i64(b), i64(y)) >= 0
    assert slab_check(st) == "ok"


def test_add_slab_rejects_misaligned_and_busy_pfns():
    st, c = slab_state_add_cache(new_slab_state(), 64, order=2)
    snap = snapshot(st)
    assert kmem_cache_add_slab_nb(st, i64(c), i64(6)) == E_PFN_ALIGN
    assert kmem_cache_add_slab_nb(st, i64(c), i64(-4)) == E_PFN_ALIGN
    assert same(st, snap)
    assert kmem_cache_add_slab_nb(st, i64(c), i64(8)) >= 0
    st, d = slab_state_add_cache(st, 64)
    snap = snapshot(st)
    assert kmem_cache_add_slab_nb(st, i64(d), i64(10)) == E_PFN_BUSY  # inside the order-2 slab at 8
    assert same(st, snap)


def test_capacity_codes_change_nothing_and_grow():
    st = new_slab_state(caches=1, slabs=1, objects=8, hash_slots=16)
    st, c = slab_state_add_cache(st, 512)  # 8 objects per slab
    assert kmem_cache_add_slab_nb(st, i64(c), i64(100)) >= 0
    seen = set()
    pfn = 200
    for _ in range(40):
        snap = snapshot(st)
        rc = int(kmem_cache_add_slab_nb(st, i64(c), i64(pfn)))
        if rc in (E_NOCAP_SLABS, E_NOCAP_OBJS, E_NOCAP_HASH):
            assert same(st, snap)
            seen.add(rc)
            st = slab_state_grow(st, rc)
            continue
        assert rc >= 0
        pfn += 1
    assert seen == {E_NOCAP_SLABS, E_NOCAP_OBJS, E_NOCAP_HASH}
    assert slab_check(st) == "ok"
    # caches grow too
    for _ in range(3):
        st, _c = slab_state_add_cache(st, 32)
    assert st.caches.shape[0] >= 4 and slab_check(st) == "ok"
    with pytest.raises(ConfigError):
        slab_state_grow(st, E_EMPTY)


def test_one_grow_makes_room_for_a_high_order_slab():
    st, c = slab_state_add_cache(new_slab_state(hash_slots=16), 1 << 20, order=10)
    assert kmem_cache_add_slab_nb(st, i64(c), i64(1 << 10)) == E_NOCAP_HASH  # 1024 pages, 16 slots
    st = slab_state_grow(st, E_NOCAP_HASH)
    assert kmem_cache_add_slab_nb(st, i64(c), i64(1 << 10)) >= 0
    assert virt_to_cache_nb(st, i64(((1 << 10) + 1023) << 12)) == c
    for code in (E_NOCAP_SLABS, E_NOCAP_OBJS, E_NOCAP_HASH):
        before = (st.slabs.shape[0], st.objnext.shape[0], st.hkey.shape[0])
        st = slab_state_grow(st, code)
        assert (st.slabs.shape[0], st.objnext.shape[0], st.hkey.shape[0]) > before  # always grows
    assert slab_check(st) == "ok"


def test_reserve_avoids_capacity_codes():
    st, c = slab_state_add_cache(new_slab_state(caches=1, slabs=1, objects=1, hash_slots=16), 16, order=1)
    st = slab_state_reserve(st, c, 500)
    for k in range(500):
        assert kmem_cache_add_slab_nb(st, i64(c), i64(2 * k + 1000)) >= 0
    assert slab_check(st) == "ok"


@given(hst.lists(hst.integers(0, 1500), min_size=1, max_size=300, unique=True), hst.randoms())
@settings(max_examples=40, deadline=None)
def test_hash_insert_delete_random_order(pfns, rnd):
    """virt_to_slab stays exact through random slab adds and discards (backward-shift deletion)."""
    st, c = slab_state_add_cache(new_slab_state(hash_slots=16), 2048, min_partial=0)
    live = set()
    out = np.zeros(1, np.int64)
    for p in pfns:
        st, rc = slab_state_call(st, kmem_cache_add_slab_nb, i64(c), i64(p))
        assert rc >= 0
        live.add(p)
        if rnd.random() < 0.4:
            # shrink one slab: the tail of the empty list is the oldest empty slab
            victim = int(st.slabs[st.caches[c, 13 + L_EMPTY], 0])
            assert kmem_cache_shrink_nb(st, i64(c), out, i64(0)) == 1
            assert int(out[0]) == victim
            live.remove(victim)
    for p in range(0, 1501):
        s = int(virt_to_slab_nb(st, i64(p << 12)))
        assert (s >= 0) == (p in live)
        if s >= 0:
            assert int(st.slabs[s, 0]) == p
    assert slab_check(st) == "ok"


def test_shrink_keep_policy_and_discard_hint():
    st, c = slab_state_add_cache(new_slab_state(), 2048, min_partial=2)  # 2 objects per slab
    for k in range(6):
        assert kmem_cache_add_slab_nb(st, i64(c), i64(k)) >= 0
    objs = [int(kmem_cache_alloc_nb(st, i64(c))) for _ in range(12)]
    # empty the slabs one by one: the first two keep (fewer than min_partial others), then hints
    rcs = []
    for k in range(6):
        kmem_cache_free_nb(st, i64(c), i64(objs[2 * k]))
        rcs.append(int(kmem_cache_free_nb(st, i64(c), i64(objs[2 * k + 1]))))
    assert rcs == [OK, OK, SLAB_FREE_DISCARD, SLAB_FREE_DISCARD, SLAB_FREE_DISCARD, SLAB_FREE_DISCARD]
    out = np.zeros(16, np.int64)
    assert kmem_cache_shrink_nb(st, i64(c), out, i64(-1)) == 4  # down to min_partial
    assert kmem_cache_shrink_nb(st, i64(c), out, i64(-1)) == 0
    assert kmem_cache_shrink_nb(st, i64(c), out[:1], i64(0)) == 1  # bounded by the output array
    assert kmem_cache_shrink_nb(st, i64(c), out, i64(0)) == 1
    assert objects_free_nb(st, i64(c)) == 0
    assert slab_check(st) == "ok"


def test_check_detects_corruption():
    st, c = slab_state_add_cache(new_slab_state(), 64)
    kmem_cache_add_slab_nb(st, i64(c), i64(7))
    a = int(kmem_cache_alloc_nb(st, i64(c)))
    assert slab_check(st) == "ok"
    st.slabs[0, 2] += 1  # inuse
    assert "freelist holds" in slab_check(st)
    st.slabs[0, 2] -= 1
    assert slab_check(st) == "ok"
    st.objnext[st.slabs[0, 7] + ((a - (7 << 12)) // 64)] = 5  # allocated object now "free"
    assert slab_check(st) != "ok"


# ------------------------------------------------------------------ facade on a machine


@pytest.fixture(scope="module")
def small_machine():
    return Machine.create("128M")


_names = itertools.count()


def fresh(name: str) -> str:
    return f"{name}-{next(_names)}"


def test_facade_validation(small_machine):
    m = small_machine
    with pytest.raises(ConfigError, match="spaces"):
        KmemCache(m, "bad name", 64)
    with pytest.raises(ConfigError, match="GFP_SLAB_BUG_MASK"):
        KmemCache(m, fresh("hi"), 64, gfp=gfp.GFP_KERNEL | gfp.__GFP_HIGHMEM)
    with pytest.raises(ConfigError, match="GFP_SLAB_BUG_MASK"):
        KmemCache(m, fresh("d32"), 64, gfp="GFP_KERNEL|__GFP_DMA32")
    with pytest.raises(ConfigError, match="cpu"):
        KmemCache(m, fresh("cpu"), 64, cpu=99)
    n = fresh("dup")
    c = KmemCache(m, n, 64)
    with pytest.raises(ConfigError, match="already exists"):
        KmemCache(m, n, 64)
    for bad in (-1, "x", 1.5, True):
        with pytest.raises(InvalidObject):
            c.free(bad)
    c.destroy()
    with pytest.raises(ConfigError, match="destroyed"):
        c.alloc()


def test_facade_errors_name_the_problem(small_machine):
    m = small_machine
    a = KmemCache(m, fresh("a"), 200)
    b = KmemCache(m, fresh("b"), 200)
    x, y = a.alloc(), b.alloc()
    with pytest.raises(InvalidObject, match=f"belongs to kmem_cache {b.name}"):
        a.free(y)
    with pytest.raises(InvalidObject, match="not the start of an object"):
        a.free(x + 16)
    with pytest.raises(InvalidObject, match="not in any slab"):
        a.free(0x10 << 12)
    a.free(x)
    with pytest.raises(DoubleFree, match="double free"):
        a.free(x)
    with pytest.raises(ConfigError, match="still has 1 objects"):
        b.destroy()
    b.free(y)
    b.destroy()
    a.destroy()
    assert SlabAllocator.of(m).check() == "ok" and m.check() == "ok"


def test_refill_uses_page_allocator_and_shrink_returns_pages(small_machine):
    m = small_machine
    m.drain_all_pages()
    free0 = m.free_pages_count()
    c = KmemCache(m, fresh("order1"), 3000, order=1)  # 2 objects per order-1 slab
    addrs = [c.alloc() for _ in range(9)]
    s = c.stats()
    assert s["num_slabs"] == 5 and s["alloc_slab"] == 5 and s["slab_pages"] == 10
    for p in c.slab_pfns():
        assert m.page_state(int(p)) == "allocated head (order 1)"
    m.drain_all_pages()
    assert m.free_pages_count() == free0 - 10
    c.free_bulk(addrs)
    assert c.stats()["active_objs"] == 0
    # min_partial is 5 (SLUB's formula for 3008 bytes): no slab was discarded by the frees
    assert c.stats()["num_slabs"] == 5 and c.shrink() == 5
    assert c.stats()["num_slabs"] == 0
    m.drain_all_pages()
    assert m.free_pages_count() == free0
    assert c.check() == "ok" and m.check() == "ok"
    c.destroy()


def test_high_order_cache_on_a_machine(small_machine):
    m = small_machine
    c = KmemCache(m, fresh("huge"), 300_000, order=7)  # 1 object per 512 KiB slab
    xs = [c.alloc() for _ in range(3)]
    assert c.stats()["num_slabs"] == 3 and c.stats()["tail_bytes"] == 3 * ((PAGE << 7) - 300_000)
    for p in c.slab_pfns():
        assert m.page_state(int(p)) == "allocated head (order 7)"
    c.free_bulk(xs)
    c.destroy()
    assert m.check() == "ok"


def test_bytes_accounting_by_hand(small_machine):
    c = KmemCache(small_machine, fresh("acct"), 1000)  # size 1008, 4 per page, tail 64
    xs = c.alloc_bulk(6)
    b = c.bytes_accounted()
    assert b == {"objects_bytes": 6 * 1008, "slab_bytes": 2 * 4096, "slab_pages": 2,
                 "wasted_bytes": 2 * 4096 - 6 * 1008, "tail_bytes": 2 * 64, "free_object_bytes": 2 * 1008,
                 "padding_bytes": 6 * 8}
    c.free_bulk(xs)
    c.destroy()


def test_free_path_counters(small_machine):
    m = small_machine
    sa = SlabAllocator(m)
    c = KmemCache(m, "fp", 2048, allocator=sa)
    x = c.alloc()  # refill on an allocation path: not counted
    with sa.free_path():
        y = c.alloc()  # from the existing slab: an object allocation on a free path, no refill
        z = c.alloc()  # needs a refill: a page allocation on a free path
    k = c.counters()
    assert k["alloc_on_free_path"] == 2 and k["alloc_slab_on_free_path"] == 1 and k["alloc_slab"] == 2
    assert free_path_allocations(sa.state) == 1
    assert c.preload(5)
    with sa.free_path():
        for _ in range(3):
            c.alloc()
    assert c.counters()["alloc_slab_on_free_path"] == 1  # preloaded: no further refill
    for a in (x, y, z):
        c.free(a)
    c.free_bulk(c.objects())
    c.destroy()
    assert sa.check() == "ok"


def test_alloc_bulk_and_auto_discard(small_machine):
    m = small_machine
    c = KmemCache(m, fresh("bulk"), 512, min_partial=1)
    xs = c.alloc_bulk(800)
    assert len(set(xs.tolist())) == 800 and c.stats()["num_slabs"] == 100
    c.free_bulk(xs[::-1])
    # auto discard kept min_partial (1) slab
    assert c.stats()["num_slabs"] == 1 and c.stats()["empty_slabs"] == 1
    with pytest.raises(DoubleFree, match="free_bulk index 0"):
        c.free_bulk(xs[:3])
    c.shrink()
    c.destroy()
    assert m.check() == "ok"


# ------------------------------------------------------------------ /proc/slabinfo


def test_slabinfo_header_is_slab_common_text():
    # print_slabinfo_header() of mm/slab_common.c
    assert SLABINFO_HEADER == ("slabinfo - version: 2.1\n"
                               "# name            <active_objs> <num_objs> <objsize> <objperslab> "
                               "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata "
                               "<active_slabs> <num_slabs> <sharedavail>\n")


# real /proc/slabinfo lines (RHEL machine, sample in insights-core's slabinfo parser)
T0 = " : tunables    0    0    0 : slabdata "
REAL_LINES = [
    ("sw_flow                0      0   1256   13    4" + T0 + "     0      0      0",
     ("sw_flow", 0, 0, 1256, 13, 2, 0, 0)),
    ("xfs_inode           4845   5120    960    8    2" + T0 + "   640    640      0",
     ("xfs_inode", 4845, 5120, 960, 8, 1, 640, 640)),
    ("nf_conntrack_ffffffffaf313a40     12     12    320   12    1" + T0 + "     1      1      0",
     ("nf_conntrack_ffffffffaf313a40", 12, 12, 320, 12, 0, 1, 1)),
]


@pytest.mark.parametrize("line,args", REAL_LINES)
def test_slabinfo_line_format_matches_real_lines(line, args):
    assert format_slabinfo_line(*args) == line


def test_slabinfo_end_to_end_reproduces_real_lines(small_machine):
    m = small_machine
    sa = SlabAllocator(m)  # a separate slab_caches list, so the file holds exactly these caches
    c1 = KmemCache(m, "xfs_dqtrx", 528, order=1, allocator=sa)
    c2 = KmemCache(m, "xfs_efd_item", 416, order=1, allocator=sa)
    c3 = KmemCache(m, "nf_conntrack_ffffffffaf313a40", 320, allocator=sa)
    a2 = c2.alloc_bulk(76)
    a3 = c3.alloc_bulk(12)
    text = sa.slabinfo()
    assert text == SLABINFO_HEADER + (
        "nf_conntrack_ffffffffaf313a40     12     12    320   12    1" + T0 + "     1      1      0\n"
        "xfs_efd_item          76     76    416   19    2" + T0 + "     4      4      0\n"
        "xfs_dqtrx              0      0    528   15    2" + T0 + "     0      0      0\n")
    c3.free_bulk(a3)
    c3.destroy()
    assert "nf_conntrack" not in sa.slabinfo()
    c2.free_bulk(a2)
    c2.destroy()
    c1.destroy()
    assert m.check() == "ok"


def test_slabinfo_parses_back(small_machine):
    c = KmemCache(small_machine, fresh("parse"), 100)
    xs = c.alloc_bulk(100)
    c.free_bulk(xs[:37])
    line = c.slabinfo().splitlines()[2]
    head, tun, data = line.split(" : ")
    name, active, num, size, per, pages = head.split()
    s = c.stats()
    assert (name, int(active), int(num), int(size), int(per), int(pages)) == (
        c.name, 63, s["num_slabs"] * 36, 112, 36, 1)
    assert tun.split() == ["tunables", "0", "0", "0"]
    assert data.split() == ["slabdata", str(s["num_slabs"]), str(s["num_slabs"]), "0"]
    c.free_bulk(xs[37:])
    c.destroy()


# ------------------------------------------------------------------ i386: lowmem only


def _zone_of(m, pfn):
    return m.zones[m.layout.zone_of_pfn(int(pfn))]


def test_i386_slab_pages_are_lowmem_only():
    m = Machine.create("4G", layout="i386")
    zs = m.design.zs
    high = [i for i, z in enumerate(m.zones) if not z.direct_mapped and z.present]
    low = [i for i, z in enumerate(m.zones) if z.direct_mapped and z.present]
    assert sum(int(zs.z_free[i]) for i in high) > 3 * sum(int(zs.z_free[i]) for i in low)
    c = KmemCache(m, "radix_tree_node", 576)
    xs = c.alloc_bulk(7 * 3000)
    assert xs is not None
    pfns = c.slab_pfns()
    assert len(pfns) == 3000
    assert all(_zone_of(m, p).direct_mapped for p in pfns)
    assert {_zone_of(m, p).name for p in pfns} <= {"DMA", "Normal"}
    assert c.check() == "ok" and m.check() == "ok"


def test_i386_lowmem_exhaustion_fails_cleanly():
    m = Machine.create("4G", layout="i386")
    c = KmemCache(m, "buddy", 64, order=1)
    for _ in range(100):
        assert c.alloc() is not None
    hog = []
    for order in range(10, -1, -1):
        while (p := m.alloc_pages(gfp.GFP_KERNEL, order)) is not None:
            hog.append((p, order))
    hi = [i for i, z in enumerate(m.zones) if z.name == "HighMem"][0]
    high_free = int(m.design.zs.z_free[hi])
    assert high_free > 500_000
    # the cache still has free objects in its slab: those come first, then allocation fails
    got = []
    while (a := c.alloc()) is not None:
        got.append(a)
        assert len(got) < 10_000
    assert c.alloc() is None and c.alloc_bulk(10) is None
    k = c.counters()
    assert k["alloc_slab_failed"] >= 3
    assert c.check() == "ok" and m.check() == "ok"
    assert int(m.design.zs.z_free[hi]) == high_free  # HighMem was never used
    # a freed object is reused without a page
    c.free(got[-1])
    assert c.alloc() == got[-1]
    # giving lowmem back makes refills work again
    for p, order in hog:
        m.free_pages(p, order)
    assert c.alloc() is not None and c.counters()["alloc_slab"] > k["alloc_slab"]
    c.free_bulk(c.objects())
    c.shrink()
    assert c.stats()["num_slabs"] == 0 and m.check() == "ok"


# ------------------------------------------------------------------ numba callers (designs)


@njit
def _fill_with_refill(slab, cache, pa_st, gfp_mask, out):
    """What a design does: allocate objects, refilling through pa_alloc when the cache is empty."""
    i = 0
    refills = 0
    while i < out.shape[0]:
        a = kmem_cache_alloc_nb(slab, cache)
        if a == E_EMPTY:
            order = slab.caches[cache, CF_ORDER]
            pfn = pa_alloc(pa_st, gfp_mask, order, 0)
            if pfn < 0:
                return i, refills, -1
            rc = kmem_cache_add_slab_nb(slab, cache, pfn)
            if rc < 0:
                pa_free(pa_st, pfn, order, 0)
                return i, refills, rc
            refills += 1
            continue
        if a < 0:
            return i, refills, a
        out[i] = a
        i += 1
    return i, refills, 0


@njit
def _free_path_with_helper(slab, cache, pa_st, gfp_mask, n, preload):
    """Allocate n objects inside a free-path scope, optionally preloading first."""
    if preload:
        rc = kmem_cache_preload_nb(slab, cache, n, pa_st, gfp_mask, 0)
        if rc < 0:
            return rc
    slab_enter_free_path_nb(slab)
    for _ in range(n):
        a = kmem_cache_alloc_nb(slab, cache)
        if a == E_EMPTY:
            rc = refill_from_pages(slab, cache, pa_st, gfp_mask, 0)
            if rc < 0:
                slab_leave_free_path_nb(slab)
                return rc
            a = kmem_cache_alloc_nb(slab, cache)
    slab_leave_free_path_nb(slab)
    return 0


def test_njit_refill_loop_on_linux_state():
    m = Machine.create("64M")
    st, c = slab_state_add_cache(new_slab_state(), 576)
    st = slab_state_reserve(st, c, 200)
    out = np.zeros(1000, np.int64)
    n, refills, rc = _fill_with_refill(st, i64(c), m.design.state, i64(gfp.GFP_KERNEL), out)
    assert (n, rc) == (1000, 0)
    assert refills == -(-1000 // 7)
    assert len(set(out.tolist())) == 1000
    pfns = {int(a) >> 12 for a in out}
    assert len(pfns) == refills
    for p in pfns:
        assert m.page_state(p) == "allocated head (order 0)"
        assert virt_to_cache_nb(st, i64(p << 12)) == c
    assert slab_check(st) == "ok" and m.check() == "ok"
    # the free-path counters see refills made inside a free-path scope, and preloading avoids them
    st, d = slab_state_add_cache(st, 2048)
    st = slab_state_reserve(st, d, 50)
    assert _free_path_with_helper(st, i64(d), m.design.state, i64(gfp.GFP_KERNEL), 6, False) == 0
    assert int(st.cstat[d, 6]) == 3 and int(st.cstat[d, 5]) == 6
    assert _free_path_with_helper(st, i64(d), m.design.state, i64(gfp.GFP_KERNEL), 6, True) == 0
    assert int(st.cstat[d, 6]) == 3 and int(st.cstat[d, 3]) == 6
    assert free_path_allocations(st) == 3
    assert slab_check(st) == "ok" and m.check() == "ok"


def test_refill_from_pages_refuses_highmem():
    m = Machine.create("2G", layout="i386")
    st, c = slab_state_add_cache(new_slab_state(), 64)
    m.drain_all_pages()
    free0 = m.free_pages_count()
    rc = refill_from_pages(st, i64(c), m.design.state, i64(gfp.GFP_HIGHUSER), i64(0))
    assert rc == E_NOT_DIRECT  # the HighMem page went back
    m.drain_all_pages()
    assert m.free_pages_count() == free0
    assert int(st.caches[c, 8]) == 0 and int(st.cstat[c, 7]) == 1
    assert slab_check(st) == "ok" and m.check() == "ok"


# ------------------------------------------------------------------ stateful test vs a reference model


class SlabModel(RuleBasedStateMachine):
    """Random alloc/free/shrink on several caches of one machine, checked against a plain model."""

    def __init__(self):
        super().__init__()
        self.m = Machine.create("128M")
        self.m.drain_all_pages()
        self.free0 = self.m.free_pages_count()
        self.sa = SlabAllocator(self.m)
        self.caches: list[KmemCache] = []
        self.live: list[dict[int, None]] = []
        self.freed: list[list[int]] = []
        self.n_alloc: list[int] = []
        self.n_free: list[int] = []

    @initialize(geoms=hst.lists(hst.tuples(hst.integers(1, 3000), hst.integers(0, 2), hst.integers(0, 3),
                                           hst.booleans()), min_size=2, max_size=3))
    def make(self, geoms):
        for k, (size, order, mp, disc) in enumerate(geoms):
            if calculate_size(size) > PAGE << order:
                order = 1 if calculate_size(size) <= 2 * PAGE else 2
            self.caches.append(KmemCache(self.m, f"c{k}", size, order, min_partial=mp, auto_discard=disc,
                                         allocator=self.sa))
            self.live.append({})
            self.freed.append([])
            self.n_alloc.append(0)
            self.n_free.append(0)

    @rule(k=hst.integers(0, 2), n=hst.integers(1, 20))
    def alloc(self, k, n):
        k %= len(self.caches)
        for _ in range(n):
            a = self.caches[k].alloc()
            assert a is not None and a not in self.live[k]
            self.live[k][a] = None
        self.n_alloc[k] += n

    @rule(k=hst.integers(0, 2), n=hst.integers(1, 40))
    def alloc_bulk(self, k, n):
        k %= len(self.caches)
        xs = self.caches[k].alloc_bulk(n)
        for a in xs.tolist():
            assert a not in self.live[k]
            self.live[k][a] = None
        self.n_alloc[k] += n

    @rule(k=hst.integers(0, 2), data=hst.data())
    def free_some(self, k, data):
        k %= len(self.caches)
        if not self.live[k]:
            return
        pick = hst.sampled_from(sorted(self.live[k]))
        addrs = data.draw(hst.lists(pick, min_size=1, max_size=30, unique=True))
        if len(addrs) > 3:
            self.caches[k].free_bulk(addrs)
        else:
            for a in addrs:
                self.caches[k].free(a)
        for a in addrs:
            del self.live[k][a]
            self.freed[k].append(a)
        self.n_free[k] += len(addrs)

    @precondition(lambda self: any(self.live))
    @rule(k=hst.integers(0, 2), data=hst.data(), kind=hst.sampled_from(["misaligned", "wrong", "double",
                                                                         "foreign"]))
    def bad_free(self, k, data, kind):
        k %= len(self.caches)
        c = self.caches[k]
        before = [set(x.objects().tolist()) for x in self.caches], [x.slabs().tolist() for x in self.caches]
        if kind == "misaligned" and self.live[k]:
            a = data.draw(hst.sampled_from(sorted(self.live[k])))
            off = data.draw(hst.integers(1, c.size - 1)) if c.size > 16 else 8
            with pytest.raises(InvalidObject):
                c.free(a + off)
        elif kind == "wrong":
            others = [j for j in range(len(self.caches)) if j != k and self.live[j]]
            if not others:
                return
            j = data.draw(hst.sampled_from(others))
            with pytest.raises(InvalidObject, match="belongs to"):
                c.free(next(iter(self.live[j])))
        elif kind == "double":
            cands = [a for a in self.freed[k] if a not in self.live[k]]
            if not cands:
                return
            a = data.draw(hst.sampled_from(cands))
            # a freed object whose slab is gone is foreign; otherwise it is a double free
            with pytest.raises((DoubleFree, InvalidObject)):
                c.free(a)
        else:
            slab_pages = {int(p) + i for x in self.caches for p in x.slab_pfns() for i in range(1 << x.order)}
            pfn = data.draw(hst.integers(0x1000, 0x7000).filter(lambda p: p not in slab_pages))
            with pytest.raises(InvalidObject, match="not in any slab"):
                c.free(pfn << 12)
        after = [set(x.objects().tolist()) for x in self.caches], [x.slabs().tolist() for x in self.caches]
        assert before == after

    @rule(k=hst.integers(0, 2), keep=hst.sampled_from([0, -1, 1, 2]))
    def shrink(self, k, keep):
        k %= len(self.caches)
        c = self.caches[k]
        c.shrink(keep)
        s = c.stats()
        lim = c.min_partial if keep < 0 else keep
        assert s["empty_slabs"] == 0 or s["empty_slabs"] + s["partial_slabs"] <= lim

    @rule(k=hst.integers(0, 2))
    def alloc_on_free_path(self, k):
        k %= len(self.caches)
        c = self.caches[k]
        k0 = c.counters()
        with self.sa.free_path():
            a = c.alloc()
        k1 = c.counters()
        self.live[k][a] = None
        self.n_alloc[k] += 1
        assert k1["alloc_on_free_path"] == k0["alloc_on_free_path"] + 1
        refilled = k1["alloc_slab"] - k0["alloc_slab"]
        assert k1["alloc_slab_on_free_path"] - k0["alloc_slab_on_free_path"] == refilled

    @invariant()
    def consistent(self):
        if not self.caches:
            return
        assert self.sa.check() == "ok"
        assert self.m.check() == "ok"
        spans = []
        for k, c in enumerate(self.caches):
            objs = c.objects().tolist()
            assert objs == sorted(self.live[k])
            slabs = c.slabs()
            s = c.stats()
            span = PAGE << c.order
            starts = {int(p) << 12: int(u) for p, u, _ in slabs.tolist()}
            # every live object is in exactly one slab of its cache, at an object boundary
            per_slab: dict[int, int] = {}
            for a in objs:
                base = (a >> 12 >> c.order << c.order) << 12
                assert base in starts
                assert (a - base) % c.size == 0 and (a - base) // c.size < c.objects_per_slab
                per_slab[base] = per_slab.get(base, 0) + 1
                spans.append((a, a + c.size))
            assert all(per_slab.get(b, 0) == u for b, u in starts.items())
            for p in slabs[:, 0].tolist():
                assert self.m.page_state(p) == f"allocated head (order {c.order})"
            n = len(objs)
            assert s["active_objs"] == n and s["num_slabs"] == len(slabs)
            assert s["num_objs"] - s["active_objs"] == c.objects_free() == len(slabs) * c.objects_per_slab - n
            assert s["objects_bytes"] == n * c.size and s["slab_bytes"] == len(slabs) * span
            assert s["wasted_bytes"] == len(slabs) * span - n * c.size
            assert s["alloc"] == self.n_alloc[k] and s["free"] == self.n_free[k]
            assert s["alloc_slab"] - s["free_slab"] == len(slabs)
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))

    def teardown(self):
        for k, c in enumerate(self.caches):
            if self.live[k]:
                c.free_bulk(list(self.live[k]))
            c.destroy()
        self.m.drain_all_pages()
        assert self.m.free_pages_count() == self.free0  # no slab page leaked
        assert self.m.check() == "ok"


SlabModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow,
                                                              HealthCheck.filter_too_much])
TestSlabModel = SlabModel.TestCase


# ------------------------------------------------------------------ NUMBA_DISABLE_JIT

_SCENARIO = r"""
import json, sys
import numpy as np
from memdesc.mm.machine import Machine
from memdesc.mm.slab import KmemCache, new_slab_state, slab_state_add_cache, kmem_cache_add_slab_nb, \
    kmem_cache_alloc_nb, kmem_cache_free_nb, kmem_cache_shrink_nb, slab_check, slab_state_call
import memdesc._numba as nb
i64 = np.int64
st, a = slab_state_add_cache(new_slab_state(caches=1, slabs=1, objects=4, hash_slots=16), 1000, min_partial=1)
st, b = slab_state_add_cache(st, 200, order=1)
rng = np.random.default_rng(5)
log = []
live = []
pfn = 64
for step in range(300):
    c = int(rng.integers(0, 2))
    if rng.random() < 0.6 or not live:
        x = int(kmem_cache_alloc_nb(st, i64(c)))
        if x == -1:
            st, rc = slab_state_call(st, kmem_cache_add_slab_nb, i64(c), i64(pfn))
            pfn += 2
            x = int(kmem_cache_alloc_nb(st, i64(c)))
        live.append((c, x))
        log.append(x)
    else:
        c, x = live.pop(int(rng.integers(0, len(live))))
        log.append(int(kmem_cache_free_nb(st, i64(c), i64(x))))
    if step % 50 == 0:
        out = np.zeros(8, np.int64)
        log.append(int(kmem_cache_shrink_nb(st, i64(c), out, i64(-1))))
m = Machine.create("32M")
# __GFP_MOVABLE: an unmovable first allocation would claim a movable pageblock, and
# core.set_pageblock_migratetype (uint8 & ~mask) overflows under NUMBA_DISABLE_JIT with numpy 2
k = KmemCache(m, "k", 700, order=1, min_partial=0, gfp="GFP_KERNEL|__GFP_MOVABLE")
xs = k.alloc_bulk(40)
k.free_bulk(xs[::3])
log.extend(xs.tolist())
log.append(k.shrink())
result = {"jit_disabled": nb.JIT_DISABLED, "log": log, "check": slab_check(st), "kcheck": k.check(),
          "mcheck": m.check(), "stats": k.stats()}
"""


def test_same_results_without_jit():
    """The scenario run as plain Python (subprocess) and compiled (here) gives identical results."""
    a = run_json(_SCENARIO + "json.dump(result, sys.stdout)\n", jit=False, timeout=600)
    ns: dict = {}
    exec(_SCENARIO, ns)
    b = jsonable(ns["result"])
    assert a["jit_disabled"] is True and b["jit_disabled"] is False
    assert a["check"] == a["kcheck"] == a["mcheck"] == "ok"
    assert a["log"] == b["log"] and a["stats"] == b["stats"]
