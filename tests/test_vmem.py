"""Unit tests of the vmem arena (memdesc.lib.vmem) and its numba core.

Expected values come from the paper, illumos vmem.c / NetBSD subr_vmem.c semantics worked
out by hand in the comments, never from running the code under test.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from memdesc.errors import DoubleFree, InvariantViolation
from memdesc.lib import _vmem_kernels as K
from memdesc.lib.vmem import (
    VMEM_MINFREE,
    VMEM_SEGS_PER_ALLOC_MAX,
    Policy,
    Segment,
    SegType,
    Vmem,
    VmemBadAddress,
    VmemConstraintError,
    VmemDoubleFree,
    VmemExhausted,
    VmemInvalidRequest,
    VmemSizeMismatch,
    VmemSpanOverlap,
    qcache_slabsize,
)

PAGE = 4096
BOTH = SegType.ALLOC | SegType.FREE


def snapshot(a: Vmem):
    return a._seg.copy()


def same(a: Vmem, seg) -> bool:
    """Same tags, hash and arena scalars (the K_* kstat counters may move)."""
    return (np.array_equal(a._seg[:, :K.NFIELDS], seg[:, :K.NFIELDS])
            and np.array_equal(a._seg[:, K.F_HASH], seg[:, K.F_HASH])
            and np.array_equal(a._seg[:K.K_ALLOC, K.F_META], seg[:K.K_ALLOC, K.F_META]))


# --- the paper's worked example -------------------------------------------------------------
def test_paper_xalloc_example_erratum():
    # Paper §4.3.2: "vmem_xalloc(foo, 20, 64, 8, 0, 200, 300) ... addr will be 262 ... (262 mod
    # 64 = 8)".  262 mod 64 is 6, so 262 cannot satisfy phase 8; with phase 6 the lowest
    # address >= 200 that is 6 past a 64 boundary is 4*64 + 6 = 262, which is the paper's
    # answer on an arena whose [200, 300) is free.
    assert 262 % 64 == 6
    foo = Vmem("foo", 0, 1024, quantum=1)
    assert foo.xalloc(20, 64, 6, 0, 200, 300) == 262
    assert foo.walk(SegType.ALLOC) == [Segment(262, 20, SegType.ALLOC)]
    # with the printed phase 8 the lowest valid address is 3*64 + 8 = 200, then 4*64 + 8
    bar = Vmem("bar", 0, 1024, quantum=1)
    assert bar.xalloc(20, 64, 8, 0, 200, 300) == 200
    assert bar.xalloc(20, 64, 8, 0, 200, 300) == 264
    # and nothing else in [200, 300) is 8 past a 64 boundary
    assert bar.xalloc(20, 64, 8, 0, 200, 300, nosleep=True) is None
    for x in (foo, bar):
        x.check()


def test_netbsd_unittest_boundaries():
    # NetBSD subr_vmem.c UNITTEST prologue, with maxaddr made exclusive (illumos/paper).
    vm = Vmem("test", quantum=1)
    for addr, size in [(0, 50), (100, 200), (2000, 1), (40000, 65536), (10000, 10000), (500, 1000),
                       (0xFFFFFF00, 0x100)]:
        vm.add(addr, size)
    vm.check()
    # 0x101 bytes cannot fit a 0x100 range
    with pytest.raises(VmemConstraintError):
        vm.xalloc(0x101, 0, 0, 0, 0xFFFFFF00, 0x100000000)
    assert vm.xalloc(50, 0, 0, 0, 0, 50) == 0
    vm.xfree(0, 50)
    assert vm.xalloc(25, 0, 0, 0, 0, 25) == 0
    # the 0x100 span cannot hold 0x100 bytes starting one byte in; a range ending one byte
    # early is too small for the size whatever the arena holds
    assert vm.xalloc(0x100, 0, 0, 0, 0xFFFFFF01, 0x100000001, nosleep=True) is None
    with pytest.raises(VmemConstraintError):
        vm.xalloc(0x100, 0, 0, 0, 0xFFFFFF00, 0xFFFFFFFF)
    assert vm.xalloc(0x100, 0, 0, 0, 0xFFFFFF00, 0x100000000) == 0xFFFFFF00
    vm.check()


# --- policies -------------------------------------------------------------------------------
def make_holes(holes, total=1 << 16):
    """Arena [0, total) fully allocated in pieces, then the listed holes freed, in order."""
    a = Vmem("holes", 0, total, quantum=1)
    cuts = sorted({0, total, *(h for h, _ in holes), *(h + n for h, n in holes)})
    pieces = list(zip(cuts, cuts[1:], strict=False))
    for lo, hi in pieces:
        assert a.xalloc(hi - lo, 0, 0, 0, lo, hi) == lo
    for h, n in holes:
        a.xfree(h, n)
    a.check()
    return a


def test_instant_fit_takes_first_of_first_definite_list():
    # holes: 24 @ 1000 (class [16,32)), 40 @ 2000 ([32,64)), 70 @ 3000 ([64,128))
    a = make_holes([(1000, 24), (2000, 40), (3000, 70)])
    before = a.stats()["search"]
    # 20 is not a power of two: instant fit uses freelist[highbit(20)] = [32, 64): the 40
    assert a.alloc(20) == 2000
    # ... without searching (constant time)
    assert a.stats()["search"] == before
    # the 20-byte remainder [2020, 2040) went to the head of [16, 32) (LIFO), and a power of
    # two (16) may use its own class: it gets the remainder, not the older 24 hole
    assert a.alloc(16) == 2020
    assert a.alloc(16) == 1000
    a.check()


def test_instant_fit_falls_back_to_the_smaller_list():
    # only a 24 hole: 20 has no definite list, so vmem_xalloc searches [16, 32)
    a = make_holes([(5000, 24)])
    assert a.alloc(20) == 5000
    assert a.alloc(30, nosleep=True) is None  # 4 left, nothing else
    assert a.stats()["fail"] == 1


def test_best_fit_and_first_fit():
    # class [16, 32) holds 30 @ 100 and 17 @ 300; freelists are LIFO: 17 (freed last) first
    a = make_holes([(100, 30), (300, 17), (700, 64)])
    b = make_holes([(100, 30), (300, 17), (700, 64)])
    assert a.alloc(17, Policy.BESTFIT) == 300  # exact fit
    assert b.alloc(16, Policy.FIRSTFIT) == 300  # first in list order
    c = make_holes([(300, 17), (100, 30), (700, 64)])  # now 30 is first in the list
    assert c.alloc(16, Policy.FIRSTFIT) == 100
    d = make_holes([(300, 17), (100, 30), (700, 64)])
    assert d.alloc(16, Policy.BESTFIT) == 300  # smallest that fits, whatever the order
    e = make_holes([(100, 30), (300, 17), (700, 64)])
    assert e.alloc(31, Policy.BESTFIT) == 700  # 30 and 17 too small: next list
    for x in (a, b, c, d, e):
        x.check()


def test_addrfit_is_lowest_address_first_fit():
    a = make_holes([(3000, 70), (1000, 24), (2000, 40)])
    assert a.alloc(30, Policy.ADDRFIT) == 2000  # 24 @ 1000 is too small
    assert a.alloc(10, Policy.ADDRFIT) == 1000
    assert a.alloc(10, Policy.ADDRFIT) == 1010
    # holes now: [1020, 1024), [2030, 2040), [3000, 3070); the first 16-aligned fit is 2032
    assert a.xalloc(8, 16, 0, 0, policy=Policy.ADDRFIT) == 2032
    a.check()


def test_next_fit_cycles_like_pids():
    # illumos: "the perfect policy for allocating things like process IDs"
    pids = Vmem("pid", 1, 9, quantum=1)  # ids 1..9
    got = [pids.alloc(1, Policy.NEXTFIT) for _ in range(4)]
    assert got == [1, 2, 3, 4]
    pids.free(2, 1)
    assert pids.alloc(1, Policy.NEXTFIT) == 5  # does not reuse 2 yet
    for _ in range(4):
        pids.alloc(1, Policy.NEXTFIT)  # 6, 7, 8, 9
    assert pids.alloc(1, Policy.NEXTFIT) == 2  # wrapped around
    assert pids.alloc(1, Policy.NEXTFIT, nosleep=True) is None
    pids.check()


def test_next_fit_merges_free_space_split_by_the_rotor():
    a = Vmem("nf", 0, 8, quantum=1)
    assert [a.alloc(2, Policy.NEXTFIT) for _ in range(2)] == [0, 2]  # rotor after [2, 4)
    a.free(2, 2)  # [2, 4) free | rotor | [4, 8) free: the rotor keeps them apart
    a.check()
    assert len(a.walk(SegType.FREE)) == 2
    # neither piece holds 6: a full circle, then vmem_advance() merges them into [2, 8)
    assert a.alloc(6, Policy.NEXTFIT) == 2
    a.check()
    a.free(0, 2)
    assert a.alloc(2, Policy.NEXTFIT) == 0


# --- errors ---------------------------------------------------------------------------------
def test_free_errors_leave_the_arena_unchanged():
    a = Vmem("err", 0x10000, 0x10000, quantum=16)
    p = a.alloc(100)
    q = a.alloc(300)
    snap = snapshot(a)
    with pytest.raises(VmemSizeMismatch, match="has size 112"):
        a.free(p, 200)
    with pytest.raises(VmemBadAddress, match="not at its start"):
        a.free(p + 16, 96)
    with pytest.raises(VmemBadAddress, match="not in any span"):
        a.free(0x100, 16)
    with pytest.raises(VmemBadAddress):
        a.free(-5, 16)
    assert same(a, snap)
    a.free(p, 100)
    with pytest.raises(VmemDoubleFree, match="double free") as ei:
        a.free(p, 100)
    assert isinstance(ei.value, DoubleFree)
    a.free(q, 300)
    a.check()
    assert a.size(SegType.ALLOC) == 0


def test_size_check_is_on_the_rounded_size():
    # NetBSD vmem_xfree: KASSERT(bt->bt_size == vmem_roundup_size(vm, size))
    a = Vmem("r", 0, 1 << 20, quantum=PAGE)
    p = a.alloc(5000)
    assert a.size(SegType.ALLOC) == 2 * PAGE
    a.free(p, 8000)  # both round to two pages
    assert a.size(SegType.ALLOC) == 0


@pytest.mark.parametrize("bad", [0, -1, 1 << 62, 2.5, "8", None])
def test_bad_sizes(bad):
    a = Vmem("s", 0, 1 << 20, quantum=1)
    with pytest.raises(VmemInvalidRequest):
        a.alloc(bad)


def test_bad_arguments():
    with pytest.raises(VmemInvalidRequest, match="power of two"):
        Vmem("q", quantum=3)
    a = Vmem("a", 0, 1 << 20, quantum=8)
    with pytest.raises(VmemInvalidRequest, match="policy"):
        a.alloc(8, policy=0x8000)
    assert a.alloc(8, policy=0x100) == 0  # plain vmflag ints work too
    with pytest.raises(VmemConstraintError, match="quantum"):
        a.xalloc(16, align=12)
    with pytest.raises(VmemConstraintError, match="inconsistent"):
        a.xalloc(16, align=64, phase=64)
    with pytest.raises(VmemConstraintError, match="inconsistent"):
        a.xalloc(16, align=48)
    with pytest.raises(VmemConstraintError, match="overconstrained"):
        a.xalloc(64, align=32, phase=8, nocross=64)
    with pytest.raises(VmemConstraintError, match="cannot hold"):
        a.xalloc(64, minaddr=128, maxaddr=160)
    with pytest.raises(VmemConstraintError, match="NEXTFIT"):
        a.xalloc(64, policy=Policy.NEXTFIT)
    with pytest.raises(VmemSpanOverlap):
        a.add((1 << 20) - 8, 16)
    with pytest.raises(VmemInvalidRequest, match="aligned"):
        a.add(1 << 21, 12)
    with pytest.raises(VmemInvalidRequest):
        a.walk(0x400)
    with pytest.raises(VmemInvalidRequest):
        a.size(SegType.SPAN)
    a.check()


def test_exhaustion_raises_or_returns_none():
    a = Vmem("x", 0, 4 * PAGE, quantum=PAGE)
    assert a.alloc(4 * PAGE) == 0
    with pytest.raises(VmemExhausted, match="cannot allocate"):
        a.alloc(PAGE)
    assert a.alloc(PAGE, nosleep=True) is None
    assert a.stats()["fail"] == 2


# --- queries --------------------------------------------------------------------------------
def test_walk_size_contains():
    a = Vmem("w", quantum=PAGE)
    a.add(0x100000, 0x10000)
    a.add(0x10000, 0x4000)  # a lower span added later still walks first
    p = a.alloc(PAGE)
    assert a.walk(SegType.SPAN) == [Segment(0x10000, 0x4000, SegType.SPAN),
                                    Segment(0x100000, 0x10000, SegType.SPAN)]
    allocs = a.walk(SegType.ALLOC)
    assert allocs == [Segment(p, PAGE, SegType.ALLOC)]
    assert a.size(SegType.ALLOC) == PAGE
    assert a.size(SegType.FREE) == 0x14000 - PAGE
    assert a.size() == 0x14000
    assert a.contains(0x10000, 0x4000)
    assert not a.contains(0x10000, 0x4001)  # runs past the span
    assert not a.contains(0x13000, 0x100000 - 0x13000 + PAGE)  # straddles the hole
    assert a.contains(0x10F000, PAGE)
    assert not a.contains(0x110000, 1)
    st = a.stats()
    assert st["contains"] == 5 and st["spans"] == 2


def test_user_word_and_tag():
    a = Vmem("u", 0, 1 << 20, quantum=PAGE)
    p = a.alloc(3 * PAGE)
    assert a.user(p) == 0
    a.set_user(p, -12345)
    assert a.user(p) == -12345
    t = a.tag_of(p)
    assert a.state.start[t] == p and a.state.size[t] == 3 * PAGE and a.state.user[t] == -12345
    with pytest.raises(VmemBadAddress):
        a.user(p + PAGE)
    a.free(p, 3 * PAGE)
    q = a.alloc(3 * PAGE)  # a fresh allocation starts with user == 0
    assert a.user(q) == 0


# --- boundary tags: populate before mutating, free never allocates --------------------------
def test_tag_worst_cases_match_illumos():
    # illumos: exact / left / middle allocations need 0 / 1 / 2 new segments, a span 2.
    assert VMEM_SEGS_PER_ALLOC_MAX == 4 and VMEM_MINFREE == 4
    a = Vmem("t", quantum=1)
    a.add(0, 1000)
    assert a.tags_in_use == 2
    a.xalloc(100, minaddr=400, maxaddr=500)  # middle
    assert a.tags_in_use == 2 + 2
    a.xalloc(100, minaddr=0, maxaddr=100)  # left end of [0, 400)
    assert a.tags_in_use == 4 + 1
    a.xalloc(300, minaddr=100, maxaddr=400)  # exactly [100, 400)
    assert a.tags_in_use == 5
    a.check()


def test_populate_grows_pool_and_hash():
    a = Vmem("p", 0, 1 << 30, quantum=PAGE, tags=4)
    ptrs = [a.alloc(PAGE) for _ in range(3000)]
    st = a.stats()
    assert st["populate"] >= 1 and st["tags_capacity"] >= 3001
    assert st["hash_buckets"] > 16
    a.check()
    rng = random.Random(1)
    rng.shuffle(ptrs)
    for p in ptrs:
        a.free(p, PAGE)
    a.check()
    assert a.tags_in_use == 2


def test_populate_fn_accounts_and_vetoes():
    grants = []

    def populate(arena, ntags):
        grants.append(ntags)
        return len(grants) < 3

    a = Vmem("v", 0, 1 << 30, quantum=1, tags=4, populate_fn=populate)
    initial = a.tags_capacity
    assert initial >= 4
    n = 0
    while True:
        snap = snapshot(a)
        # every other unit stays allocated, so each alloc costs one tag
        p = a.xalloc(1, minaddr=2 * n, maxaddr=2 * n + 1, nosleep=True)
        if p is None:
            break
        n += 1
    assert len(grants) == 3
    assert a.tags_capacity == initial + sum(grants[:2])
    st = a.stats()
    assert st["populate"] == 2 and st["populate_fail"] == 1
    # the failed call changed nothing but the fail counters
    assert same(a, snap)
    with pytest.raises(VmemExhausted, match="populate"):
        a.xalloc(1, minaddr=2 * n, maxaddr=2 * n + 1)
    a.check()


def test_kernel_refuses_without_tags_and_changes_nothing():
    a = Vmem("k", 0, 1 << 20, quantum=1, tags=8)
    i = 0
    while a.tags_free >= VMEM_MINFREE:  # middle allocations: two tags each, no populate
        a.xalloc(1, minaddr=10 * i + 1, maxaddr=10 * i + 2)
        i += 1
    assert a.tags_free < VMEM_MINFREE and a.stats()["populate"] == 0
    snap = snapshot(a)
    for r in (K.k_alloc(a._seg, 5, 0),
              K.k_alloc(a._seg, 5, int(Policy.NEXTFIT)),
              K.k_xalloc(a._seg, 5, 1, 0, 0, 0, K.VMEM_MAXADDR, 0, VMEM_MINFREE)):
        assert r == K.E_NOTAGS
    assert same(a, snap)


def test_free_never_needs_a_tag():
    a = Vmem("f", 0, 1 << 20, quantum=1, tags=64)
    ptrs = [a.xalloc(3, minaddr=4 * i + 1, maxaddr=4 * i + 4) for i in range(20)]
    seg = a.state.seg
    drained = [int(K.vmem_getseg(seg)) for _ in range(a.tags_free)]
    assert a.tags_free == 0
    populates = a.stats()["populate"]
    for p in ptrs:
        before = a.tags_free
        a.free(p, 3)
        assert a.tags_free == before + 2  # both neighbours coalesce: two tags come back
    assert a.stats()["populate"] == populates
    for t in drained:
        K.vmem_putseg(seg, t)
    a.check()
    assert a.size(SegType.ALLOC) == 0 and a.tags_in_use == 2


# --- import / release -----------------------------------------------------------------------
def test_import_and_release_to_source():
    heap = Vmem("heap", 0x1000000, 0x100000, quantum=PAGE)
    va = Vmem("kmem_va", quantum=PAGE, source=heap)
    p = va.alloc(2 * PAGE)
    assert heap.contains(p, 2 * PAGE) and heap.size(SegType.ALLOC) == 2 * PAGE
    assert va.stats()["mem_import"] == 2 * PAGE and va.stats()["import"] == 1
    va.free(p, 2 * PAGE)  # the span is entirely free: it goes back
    assert heap.size(SegType.ALLOC) == 0 and va.size() == 0
    assert va.stats()["release"] == 1
    va.check()
    heap.check()


def test_min_import_and_partial_spans():
    heap = Vmem("heap", 0, 1 << 24, quantum=PAGE)
    va = Vmem("va", quantum=PAGE, source=heap, min_import=16 * PAGE)
    a = va.alloc(PAGE)
    b = va.alloc(PAGE)
    assert heap.size(SegType.ALLOC) == 16 * PAGE  # one import served both
    va.free(a, PAGE)
    assert heap.size(SegType.ALLOC) == 16 * PAGE  # b keeps the span
    va.free(b, PAGE)
    assert heap.size(SegType.ALLOC) == 0
    for x in (va, heap):
        x.check()


def test_aligned_import_uses_aphase():
    # illumos: align > aquantum => aphase = align - aquantum; import size + aphase
    heap = Vmem("heap", PAGE, 1 << 24, quantum=PAGE)  # starts at one page: not 64K aligned
    va = Vmem("va", quantum=PAGE, source=heap)
    p = va.xalloc(PAGE, align=16 * PAGE)
    assert p % (16 * PAGE) == 0
    assert heap.size(SegType.ALLOC) == PAGE + 15 * PAGE
    va.xfree(p, PAGE)
    assert heap.size(SegType.ALLOC) == 0


def test_constrained_requests_do_not_import():
    heap = Vmem("heap", 0, 1 << 24, quantum=PAGE)
    va = Vmem("va", quantum=PAGE, source=heap)
    assert va.xalloc(PAGE, nocross=16 * PAGE, nosleep=True) is None
    assert va.xalloc(PAGE, minaddr=0, maxaddr=1 << 20, nosleep=True) is None
    assert heap.size(SegType.ALLOC) == 0


def test_custom_import_with_side_effects_and_exhausted_source():
    mapped = []

    def segkmem_alloc(src, size):  # vmem_alloc from the heap, then "map" the pages
        addr = src.alloc(size, nosleep=True)
        if addr is not None:
            mapped.append((addr, size))
        return addr

    def segkmem_free(src, addr, size):
        mapped.remove((addr, size))
        src.free(addr, size)

    heap = Vmem("heap", 0, 8 * PAGE, quantum=PAGE)
    kmem = Vmem("kmem", quantum=PAGE, source=heap, import_fn=segkmem_alloc, release_fn=segkmem_free)
    ptrs = [kmem.alloc(2 * PAGE) for _ in range(4)]
    assert len(mapped) == 4 and kmem.alloc(PAGE, nosleep=True) is None
    with pytest.raises(VmemExhausted, match="source"):
        kmem.alloc(PAGE)
    for p in ptrs:
        kmem.free(p, 2 * PAGE)
    assert mapped == [] and heap.size(SegType.ALLOC) == 0


def test_three_level_arenas_appendix_a():
    heap = Vmem("heap_arena", 1 << 30, 1 << 26, quantum=PAGE)
    va = Vmem("kmem_va_arena", quantum=PAGE, source=heap, qcache_max=8 * PAGE)
    default = Vmem("kmem_default_arena", quantum=PAGE, source=va)
    rng = random.Random(3)
    live = []
    for _ in range(400):
        if live and rng.random() < 0.45:
            p, n = live.pop(rng.randrange(len(live)))
            default.free(p, n)
        else:
            n = rng.choice([1, 2, 3, 8, 20]) * PAGE
            live.append((default.alloc(n), n))
    for x in (heap, va, default):
        x.check()
    for p, n in live:
        default.free(p, n)
    va.reap()
    assert default.size() == 0 and va.size(SegType.ALLOC) == 0
    assert heap.size(SegType.ALLOC) == 0
    for x in (heap, va, default):
        x.check()


# --- quantum caches -------------------------------------------------------------------------
def test_qcache_slabsize_formula():
    # paper §4.4.4: "five 3-page objects fill 15/16 of a 16-page slab"
    assert qcache_slabsize(3 * PAGE) == 16 * PAGE
    assert 5 * 3 * PAGE / (16 * PAGE) == 15 / 16
    assert qcache_slabsize(8 * PAGE) == 32 * PAGE  # next power of two above 24 pages
    assert qcache_slabsize(4) == 64  # illumos' 64-byte minimum


def test_qcache_serves_small_sizes_from_slabs():
    a = Vmem("qc", 0, 1 << 24, quantum=PAGE, qcache_max=3 * PAGE)
    slab = 16 * PAGE
    ptrs = [a.alloc(PAGE) for _ in range(16)]
    assert a.size(SegType.ALLOC) == slab and a.stats()["alloc"] == 1  # one segment
    assert sorted(ptrs) == list(range(ptrs[0], ptrs[0] + slab, PAGE))
    ptrs.append(a.alloc(PAGE))
    assert a.size(SegType.ALLOC) == 2 * slab
    big = [a.alloc(3 * PAGE) for _ in range(5)]  # 5 per 16-page slab
    assert a.size(SegType.ALLOC) == 3 * slab
    a.check()
    for p in big:
        a.free(p, 3 * PAGE)
    for p in ptrs:
        a.free(p, PAGE)
    a.check()
    # one empty slab kept per cache (two caches used), until reaped
    assert a.size(SegType.ALLOC) == 2 * slab
    a.reap()
    assert a.size(SegType.ALLOC) == 0
    a.check()
    st = a.stats()["qcache"]
    assert st["qc_4096"]["slab_create"] == 2 and st["qc_12288"]["alloc"] == 5


def test_qcache_errors():
    a = Vmem("qe", 0, 1 << 24, quantum=PAGE, qcache_max=2 * PAGE)
    p = a.alloc(PAGE)
    q = a.alloc(PAGE)
    x = a.xalloc(PAGE)  # bypasses the cache
    with pytest.raises(VmemSizeMismatch, match="qe_4096"):
        a.free(p, 2 * PAGE)
    a.free(p, PAGE)
    with pytest.raises(VmemDoubleFree):
        a.free(p, PAGE)
    with pytest.raises(VmemBadAddress, match="xfree"):
        a.free(x, PAGE)
    with pytest.raises(VmemBadAddress, match="quantum-cache slab"):
        a.xfree(q, PAGE)
    a.xfree(x, PAGE)
    a.free(q, PAGE)
    a.check()


def test_qcache_efficacy_few_segment_allocations():
    # Appendix B: most small allocations never reach the segment list
    a = Vmem("dvma", 0, 1 << 30, quantum=PAGE, qcache_max=2 * PAGE)
    rng = random.Random(5)
    live = []
    for _ in range(5000):
        if live and rng.random() < 0.5:
            p, n = live.pop(rng.randrange(len(live)))
            a.free(p, n)
        else:
            n = rng.choice([PAGE, 2 * PAGE])
            live.append((a.alloc(n), n))
    st = a.stats()
    qallocs = sum(c["alloc"] for c in st["qcache"].values())
    assert st["alloc"] == sum(c["slab_create"] for c in st["qcache"].values())
    assert st["alloc"] * 20 < qallocs  # under 5% of the small allocations reach the segments
    a.check()


# --- batch kernel ---------------------------------------------------------------------------
def random_ops(n, seed, maxsize=64 * PAGE, live=200):
    rng = np.random.default_rng(seed)
    ops = []
    outstanding = []
    for i in range(n):
        if outstanding and (len(outstanding) >= live or rng.random() < 0.45):
            j = outstanding.pop(int(rng.integers(len(outstanding))))
            ops.append(-(j + 1))
        else:
            ops.append(int(rng.integers(1, maxsize)))
            outstanding.append(i)
    return np.array(ops, np.int64)


@pytest.mark.parametrize("policy", list(Policy), ids=lambda p: p.name)
def test_batch_equals_per_call(policy):
    ops = random_ops(3000, seed=int(policy) + 1)
    a = Vmem("batch", 0, 1 << 26, quantum=PAGE, tags=8)
    b = Vmem("calls", 0, 1 << 26, quantum=PAGE, tags=8)
    out = a.run(ops, policy)
    ref = []
    for op in ops.tolist():
        if op > 0:
            ref.append(b.alloc(op, policy, nosleep=True))
            ref[-1] = -1 if ref[-1] is None else ref[-1]
        else:
            j = -op - 1
            if ref[j] >= 0:
                b.free(ref[j], int(ops[j]))
            ref.append(ref[j])
    assert out.tolist() == ref
    a.check()
    assert a.walk(BOTH) == b.walk(BOTH)


def test_batch_aligns_imports_and_errors():
    heap = Vmem("heap", 0, 1 << 28, quantum=PAGE)
    va = Vmem("va", quantum=PAGE, source=heap, tags=4)
    ops = random_ops(2000, seed=9)
    sizes = np.where(ops > 0, ops, 1)
    aligns = np.where(ops > 0, 1 << np.ceil(np.log2(np.maximum(sizes, PAGE))).astype(np.int64), 0)
    out = va.run(ops, aligns=aligns)
    allocs = ops > 0
    assert np.all(out[allocs] >= 0) and np.all(out[allocs] % aligns[allocs] == 0)
    va.check()
    # every allocation was freed: everything went back to the heap
    still = set(np.nonzero(allocs)[0].tolist()) - {-int(o) - 1 for o in ops if o < 0}
    for j in still:
        va.xfree(int(out[j]), int(ops[j]))
    assert va.size() == 0 and heap.size(SegType.ALLOC) == 0
    assert va.stats()["release"] >= 1 and va.stats()["populate"] >= 1
    with pytest.raises(VmemInvalidRequest, match="already freed"):
        va.run([PAGE, -1, -1])
    with pytest.raises(VmemInvalidRequest, match="earlier op"):
        va.run([PAGE, -3])
    with pytest.raises(VmemInvalidRequest):
        va.run([PAGE, 0])
    with pytest.raises(VmemConstraintError):
        va.run([PAGE], aligns=[3 * PAGE])
    small = Vmem("small", 0, 4 * PAGE, quantum=PAGE)
    out = small.run([3 * PAGE, 3 * PAGE, -1, 3 * PAGE, -2])  # the failed op 1 is skipped on free
    assert out.tolist() == [0, -1, 0, 0, -1]
    assert small.stats()["fail"] == 1


# --- the invariant checker can fail --------------------------------------------------------
@pytest.mark.parametrize("corrupt", ["freemap", "size", "hash", "stack", "inuse"])
def test_check_detects_corruption(corrupt):
    a = Vmem("c", 0, 1 << 20, quantum=PAGE)
    p = a.alloc(3 * PAGE)
    a.alloc(5 * PAGE)
    a.free(p, 3 * PAGE)
    a.check()
    t = a.tag_of(a.walk(SegType.ALLOC)[0].start)
    if corrupt == "freemap":
        a._meta[K.M_FREEMAP] |= 1 << 40
    elif corrupt == "size":
        a._seg[t, K.F_SIZE] += PAGE
    elif corrupt == "hash":
        a._htab[:] = -1
    elif corrupt == "stack":
        a._seg[0, K.F_STACK] = t
    else:
        a._meta[K.M_INUSE] += 1
    with pytest.raises(InvariantViolation):
        a.check()


# --- NetBSD UNITTEST-style random stress with every invariant after each step ---------------
@pytest.mark.parametrize("policy", list(Policy), ids=lambda p: p.name)
def test_random_stress_netbsd_style(policy):
    rng = random.Random(int(policy) + 11)
    vm = Vmem("test", quantum=1, tags=4, qcache_max=8 if policy == Policy.INSTANTFIT else 0)
    spans = [(0, 50), (100, 200), (2000, 1), (40000, 65536), (10000, 10000), (500, 1000),
             (0xFFFFFF00, 0x100)]
    for s, n in spans:
        vm.add(s, n)
    reg: list[tuple[int, int, bool]] = []
    for _ in range(600):
        t = rng.randrange(100)
        if t > 45:
            sz = rng.randrange(500) + 1
            if t > 70:
                align = 1 << rng.randrange(15)
                phase = rng.randrange(65536)
                nocross = 1 << rng.randrange(15)
                if align <= phase:
                    phase = 0
                if (phase ^ (phase + sz - 1)) & -nocross:
                    nocross = 0
                lo, hi = sorted((rng.randrange(50000), rng.randrange(70000)))
                xpol = Policy.INSTANTFIT if policy == Policy.NEXTFIT else policy
                try:
                    p = vm.xalloc(sz, align, phase, nocross, lo, hi, xpol, nosleep=True)
                except VmemConstraintError:  # illumos would panic: "overconstrained allocation"
                    overcon = nocross and (align > nocross or -(-(phase + sz) & -align) > nocross)
                    assert hi - lo < sz or overcon
                    continue
                if p is not None:
                    assert p % align == phase and lo <= p and p + sz <= hi
                    assert nocross == 0 or (p ^ (p + sz - 1)) & -nocross == 0
                    reg.append((p, sz, True))
            else:
                p = vm.alloc(sz, policy, nosleep=True)
                if p is not None:
                    reg.append((p, sz, False))
            if p is not None:
                assert any(s <= p and p + sz <= s + n for s, n in spans)
        elif reg:
            i = rng.randrange(len(reg))
            p, sz, x = reg[i]
            reg[i] = reg[-1]
            reg.pop()
            (vm.xfree if x else vm.free)(p, sz)
        vm.check()
        ivs = sorted((p, p + sz) for p, sz, _ in reg)
        assert all(e0 <= s1 for (_, e0), (s1, _) in zip(ivs, ivs[1:], strict=False))
    for p, sz, x in reg:
        (vm.xfree if x else vm.free)(p, sz)
    vm.reap()
    vm.check()
    assert vm.size(SegType.ALLOC) == 0
    runs: list[list[int]] = []  # merge what the NEXTFIT rotor may keep apart
    for s, n, _ in vm.walk(SegType.FREE):
        if runs and runs[-1][1] == s:
            runs[-1][1] = s + n
        else:
            runs.append([s, s + n])
    assert runs == [[s, s + n] for s, n in sorted(spans)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aligned_search_agrees_with_general_search(seed):
    """The xalloc(size, align) fast path (``_search_aligned``) picks the same segment and
    address, and counts the same searches, as illumos' general loop (``_search_freelists``
    with ``vmem_fit``) from every starting freelist of a fragmented arena."""
    rng = np.random.default_rng(seed)
    q = 64
    a = Vmem("agree", 0, 1 << 22, quantum=q, tags=1 << 10)
    n = 3000
    ops = np.empty(n, np.int64)
    live: list[int] = []
    for i in range(n):
        if live and rng.random() < 0.45:
            ops[i] = -(live.pop(int(rng.integers(len(live)))) + 1)
        else:
            ops[i] = int(rng.integers(1, 40 * q))
            live.append(i)
    aligns = np.where(ops > 0, q << rng.integers(0, 6, n), 0)
    a.run(ops, aligns=aligns)
    seg = a.state.seg
    nonempty = [c for c in range(K.VMEM_FREELISTS) if seg[K.T_FREELIST + c, K.F_KNEXT] != K.T_FREELIST + c]
    assert len(nonempty) >= 4 and seg[K.M_NBUSY, K.F_META] > 100  # fragmented enough to mean something
    for size in (q, 3 * q, 8 * q, 13 * q, 32 * q, 100 * q):
        for align in (q, 2 * q, 16 * q, 64 * q, 1024 * q):
            for c in nonempty:
                for one_list in (True, False):
                    k0 = int(seg[K.K_SEARCH, K.F_META])
                    want = K._search_freelists(seg, c, size, align, 0, 0, 0, K.VMEM_MAXADDR, 0, one_list)
                    k1 = int(seg[K.K_SEARCH, K.F_META])
                    got = K._search_aligned(seg, c, size, align, one_list)
                    assert tuple(map(int, got)) == tuple(map(int, want)), (size, align, c, one_list)
                    assert int(seg[K.K_SEARCH, K.F_META]) - k1 == k1 - k0
    a.check()


@pytest.mark.parametrize(("ops", "aligns", "policy", "err", "match"), [
    ([PAGE, 0], None, Policy.INSTANTFIT, VmemInvalidRequest, "ops must be sizes"),
    ([PAGE, 1 << 62], [0, 0], Policy.INSTANTFIT, VmemInvalidRequest, "ops must be sizes"),
    ([PAGE, PAGE], [0], Policy.INSTANTFIT, VmemInvalidRequest, "one entry per op"),
    ([PAGE], [3 * PAGE], Policy.INSTANTFIT, VmemConstraintError, "powers of two"),
    ([PAGE], [-PAGE], Policy.INSTANTFIT, VmemConstraintError, "powers of two"),
    ([PAGE], [PAGE // 2], Policy.INSTANTFIT, VmemConstraintError, "multiples of the quantum"),
    ([PAGE, -1], [0, 1 << 62], Policy.INSTANTFIT, VmemConstraintError, "below 2\\*\\*62"),
    ([PAGE], [2 * PAGE], Policy.NEXTFIT, VmemConstraintError, "NEXTFIT"),
])
def test_batch_stream_validation(ops, aligns, policy, err, match):
    """run() refuses a malformed stream before running any of it."""
    a = Vmem("v", 0, 1 << 20, quantum=PAGE)
    with pytest.raises(err, match=match):
        a.run(ops, policy, aligns=aligns)
    assert a.size(SegType.ALLOC) == 0


def test_batch_stream_validation_accepts_what_it_should():
    a = Vmem("v", 0, 1 << 20, quantum=PAGE)
    # a free's align entry is ignored unless >= 2**62; align 0 and the quantum mean "none"
    out = a.run([PAGE, -1, 2 * PAGE, PAGE], aligns=[0, 3, 2 * PAGE, PAGE])
    assert out.tolist() == [0, 0, 0, 2 * PAGE]
    assert a.run([PAGE], Policy.NEXTFIT, aligns=[PAGE]).tolist() == [3 * PAGE]
