"""The page cache (mm/filemap.py): multi-index folio entries, lookups, the kernel's miss scans,
__filemap_get_folio with FGP flags, folio split and truncation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdesc.errors import InvalidOrder
from memdesc.mm.filemap import (
    EEXIST,
    EINVAL,
    ENOENT,
    ENOMEM,
    FGP_CREAT,
    FGP_LOCK,
    FGP_NOWAIT,
    FGP_WRITE,
    MAX_PAGECACHE_ORDER,
    FilemapError,
    PageCache,
    fgf_set_order,
)


class Pages:
    """A folio source handing out consecutive pfns and recording frees."""

    def __init__(self, fail_above: int = 99):
        self.next = 0x1000
        self.freed: list[tuple[int, int]] = []
        self.fail_above = fail_above

    def alloc(self, order: int) -> int:
        if order > self.fail_above:
            return -1
        pfn = self.next
        self.next += 1 << order
        return pfn

    def free(self, pfn: int, order: int) -> None:
        self.freed.append((pfn, order))


def test_multi_index_entry_found_at_every_index_and_counted_once():
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30)
    fid = m.filemap_add_folio(512, 9)
    assert fid >= 0
    for i in (512, 513, 700, 1023):
        assert m.get_folio(i).id == fid
    assert m.get_folio(511) is None and m.get_folio(1024) is None
    assert (m.nrpages, m.nrfolios, pc.check()) == (512, 1, "ok")
    assert m.orders() == [(512, 9)]


def test_add_refuses_overlap_misalignment_and_orders_outside_the_mapping():
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30, max_order=4)
    assert m.filemap_add_folio(16, 4) >= 0
    assert m.filemap_add_folio(20, 0) == -EEXIST          # inside the order-4 folio
    assert m.filemap_add_folio(0, 5) == -EINVAL           # above the mapping's max order
    assert m.filemap_add_folio(8, 4) == -EINVAL           # misaligned
    assert m.filemap_add_folio(0, 4) >= 0
    small = pc.new_mapping(i_size=1 << 20, max_order=0)   # no large folios
    assert small.filemap_add_folio(0, 1) == -EINVAL
    with pytest.raises(InvalidOrder):
        m.filemap_add_folio(0, MAX_PAGECACHE_ORDER + 1)
    assert pc.check() == "ok"


def test_shadow_entries_are_misses_and_are_replaced_by_a_new_folio():
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30)
    f = m.filemap_add_folio(4, 2)
    m.remove(f, shadow=77)
    assert m.get_folio(4) is None and m.nrpages == 0
    assert m.next_miss(4, 10) == 4
    assert m.filemap_add_folio(4, 2) >= 0
    assert pc.check() == "ok"


def test_next_and_prev_miss_on_order_0_folios_match_a_set_reference():
    rng = np.random.default_rng(5)
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30)
    present = set(int(x) for x in rng.choice(300, 200, replace=False))
    for i in present:
        assert m.filemap_add_folio(i, 0) >= 0
    for start in range(0, 300, 7):
        for scan in (1, 5, 64, 400):
            want = next((j for j in range(start, start + scan) if j not in present), start + scan)
            if start == 0 and 0 in present:
                want = 0   # the kernel's wrap-around test "xas.xa_index == 0" fires at index 0 itself
            assert m.next_miss(start, scan) == want
            looked = [start - k for k in range(scan)]
            miss = next((j for j in looked if j < 0 or j not in present), None)
            if miss is None:
                want_p = start - scan + 1
            else:
                want_p = miss if miss >= 0 else (1 << 64) - 1
            assert m.prev_miss(start, scan) == want_p


def test_next_miss_inside_a_large_folio_reports_the_hole_one_late_as_the_kernel():
    """The 'files' capture: mid's order-1 folio at 11910, pages 11912..11919 cached, 11920 a
    hole; page_cache_async_ra's page_cache_next_miss(11911) returned 11921 (its ra_order
    started there).  xas_load leaves xa_offset on the folio's canonical slot."""
    pc = PageCache()
    m = pc.new_mapping(i_size=64 << 20)
    m.filemap_add_folio(11910, 1)
    for i in range(11912, 11920):
        m.filemap_add_folio(i, 0)
    assert m.next_miss(11911, 2048) == 11921
    assert m.next_miss(11910, 2048) == 11920   # from the folio's first index the walk is in step


def test_filemap_get_folio_flags_creat_orders_as_the_kernel():
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30)
    assert m.filemap_get_folio_flags(5) == -ENOENT
    f = m.filemap_get_folio_flags(1000, FGP_LOCK | FGP_CREAT | fgf_set_order(1 << 20))
    assert (f.index, f.order) == (1000, 3)              # __ffs(1000) = 3
    g = m.filemap_get_folio_flags(1024, FGP_LOCK | FGP_WRITE | FGP_CREAT | fgf_set_order(1 << 20))
    assert (g.index, g.order) == (1024, 8)              # ilog2(1 MiB) - PAGE_SHIFT
    h = m.filemap_get_folio_flags(2048, FGP_LOCK | FGP_CREAT | fgf_set_order(64 << 20))
    assert h.order == MAX_PAGECACHE_ORDER                # capped by the mapping
    assert m.filemap_get_folio_flags(1030, FGP_CREAT).id == g.id   # found, not created
    assert fgf_set_order(4096) == 0 and fgf_set_order(8191) == 0 and fgf_set_order(8192) >> 26 == 1
    nolarge = pc.new_mapping(i_size=1 << 20, max_order=0)
    assert nolarge.filemap_get_folio_flags(8, FGP_CREAT | fgf_set_order(1 << 20)).order == 0
    assert pc.check() == "ok"


def test_filemap_get_folio_flags_falls_back_to_smaller_orders_when_pages_fail():
    src = Pages(fail_above=2)
    pc = PageCache(source=src)
    m = pc.new_mapping(i_size=1 << 30)
    f = m.filemap_get_folio_flags(64, FGP_CREAT | fgf_set_order(256 << 10))
    assert (f.index, f.order, f.pfn) == (64, 2, 0x1000)
    src.fail_above = -1
    assert m.filemap_get_folio_flags(128, FGP_CREAT) == -ENOMEM
    assert m.filemap_get_folio_flags(128, FGP_CREAT | FGP_NOWAIT) == -11   # -EAGAIN


def test_non_uniform_split_leaves_the_buddy_orders():
    """folio_split of an order-9 folio at page 3: 8, 7, ..., 2 and the low pages as 1, 0, 0
    (reference 04, after lkml 2502.0/08749)."""
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30)
    fid = m.filemap_add_folio(0, 9)
    assert m.split(fid, 0, at=3) == 0
    assert m.orders() == [(0, 1), (2, 0), (3, 0), (4, 2), (8, 3), (16, 4), (32, 5), (64, 6), (128, 7), (256, 8)]
    assert pc.stats()["split_steps"] == 9 and pc.check() == "ok"


def test_uniform_split_and_split_to_a_larger_order():
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 30)
    a = m.filemap_add_folio(0, 6)
    assert m.split(a, 2, uniform=True) == 0
    assert m.orders() == [(i, 2) for i in range(0, 64, 4)]
    b = m.filemap_add_folio(512, 9)
    assert m.split(b, 4, at=600) == 0                     # non-uniform down to order 4 around page 600
    assert [o for i, o in m.orders() if i >= 512] == [6, 4, 4, 5, 7, 8]
    with pytest.raises(FilemapError):
        m.split(m.get_folio(512), 0, at=10)
    assert pc.check() == "ok"


def test_truncate_inside_a_large_folio_splits_it_and_frees_the_tail():
    src = Pages()
    pc = PageCache(source=src)
    m = pc.new_mapping(i_size=2 << 20)
    m.filemap_add_folio(0, 9)
    removed = m.truncate(300 * 4096)
    assert m.orders() == [(0, 8), (256, 5), (288, 3), (296, 2)]
    assert sorted(o for _, o in removed) == [0, 0, 1, 4, 6, 7]
    assert sum(1 << o for _, o in removed) == 512 - 300
    assert sorted(src.freed) == sorted(removed) and m.i_size == 300 * 4096
    # a cut inside a page keeps the page (zeroed in the kernel)
    m2 = pc.new_mapping(i_size=2 << 20)
    m2.filemap_add_folio(0, 9)
    m2.truncate(3 * 4096 + 100)
    assert m2.orders() == [(0, 1), (2, 0), (3, 0)]
    assert pc.check() == "ok"


def test_hole_punch_splits_both_ends():
    pc = PageCache()
    m = pc.new_mapping(i_size=4 << 20)
    m.filemap_add_folio(0, 9)
    removed = m.truncate_inode_pages_range(100 * 4096, 400 * 4096 - 1)
    left = m.orders()
    covered = set()
    for i, o in left:
        covered |= set(range(i, i + (1 << o)))
    assert covered == set(range(0, 100)) | set(range(400, 512))
    assert sum(1 << o for _, o in removed) == 300
    assert pc.check() == "ok"


def test_aligned_truncation_removes_whole_folios_without_splitting():
    pc = PageCache()
    m = pc.new_mapping(i_size=4 << 20)
    m.filemap_add_folio(0, 9)
    m.filemap_add_folio(512, 9)
    removed = m.truncate(512 * 4096)
    assert (m.orders(), removed, pc.stats()["split_steps"]) == ([(0, 9)], [(-1, 9)], 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "truncate"]), st.integers(0, 255),
                          st.integers(0, 5)), max_size=40))
def test_random_operations_keep_the_page_cache_consistent_with_a_page_set(ops):
    pc = PageCache()
    m = pc.new_mapping(i_size=1 << 20, max_order=5)
    pages: dict[int, int] = {}   # page -> folio start
    for op, a, o in ops:
        if op == "add":
            idx = a & ~((1 << o) - 1)
            r = m.filemap_add_folio(idx, o)
            clash = any(p in pages for p in range(idx, idx + (1 << o)))
            assert (r == -EEXIST) == clash
            if r >= 0:
                for p in range(idx, idx + (1 << o)):
                    pages[p] = idx
        elif op == "remove":
            f = m.get_folio(a)
            assert (f is None) == (a not in pages)
            if f is not None:
                m.remove(f)
                for p in range(f.index, f.index + f.nr_pages):
                    del pages[p]
        else:
            m.truncate_inode_pages_range(a * 4096, -1)
            for p in [p for p in pages if p >= a]:
                del pages[p]
            m.i_size = 1 << 20
        assert set(pages) == {p for f in m.folios() for p in range(f.index, f.index + f.nr_pages)}
        assert m.nrpages == len(pages)
    assert pc.check() == "ok"
