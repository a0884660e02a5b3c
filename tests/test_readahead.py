"""The readahead model (mm/readahead.py) against Linux 6.18's formulas and the captures' own numbers."""

from __future__ import annotations

import pytest

from memdesc.mm.filemap import PG_READAHEAD, PageCache
from memdesc.mm.readahead import (
    MMAP_LOTSAMISS,
    VM_EXEC,
    VM_HUGEPAGE,
    VM_RAND_READ,
    VM_SEQ_READ,
    Readahead,
    get_init_ra_size,
    get_next_ra_size,
)
from nojit import both

MB = 1 << 20
SYNC, ASYNC, ORDER, UNB, ADD = ("page_cache_sync_ra", "page_cache_async_ra", "page_cache_ra_order",
                                "page_cache_ra_unbounded", "mm_filemap_add_to_page_cache")


def _ra(size=768 * MB, ra_pages=32, max_order=9, **kw):
    pc = PageCache()
    m = pc.new_mapping(i_size=size, max_order=max_order)
    r = Readahead(pc)
    return r, r.open(m, ra_pages=ra_pages, **kw), m


def _decisions(effects):
    return [e for e in effects if e[0] != ADD]


def _adds(effects):
    return [(e[1], e[2]) for e in effects if e[0] == ADD]


# --------------------------------------------------------------------------------------------
# the window formulas
# --------------------------------------------------------------------------------------------
def _init_ref(size, mx):
    newsize = 1 << (size - 1).bit_length()          # roundup_pow_of_two
    if newsize <= mx // 32:
        return newsize * 4
    if newsize <= mx // 4:
        return newsize * 2
    return mx


def _next_ref(cur, mx):
    if cur < mx // 16:
        return 4 * cur
    if cur <= mx // 2:
        return 2 * cur
    return mx


def test_get_init_ra_size_follows_the_kernel_comment_for_128k():
    # mm/readahead.c: "for 128k (32 page) max ra: 1-2 page = 16k, 3-4 page 32k, 5-8 page = 64k, > 8 page = 128k"
    assert [get_init_ra_size(n, 32) for n in range(1, 12)] == [4, 4, 8, 8, 16, 16, 16, 16, 32, 32, 32]


@pytest.mark.parametrize("mx", [32, 128, 2048, 4096])
def test_window_formulas_over_a_range(mx):
    for n in range(1, 3 * mx):
        assert get_init_ra_size(n, mx) == _init_ref(n, mx), n
        assert get_next_ra_size(n, mx) == _next_ref(n, mx), n


# --------------------------------------------------------------------------------------------
# sequential reads: the capture's own numbers
# --------------------------------------------------------------------------------------------
def test_cat_of_a_large_file_ramps_windows_and_orders_as_the_capture():
    """'files' capture, first `cat` of the 768 MiB file (fadvise(SEQUENTIAL): ra_pages 4096, 128 KiB
    reads): every sync/async/ra_order event of the first 56 MiB, as the kernel printed them."""
    r, f, _ = _ra(ra_pages=4096)
    got = []
    for i in range(448):
        got += _decisions(r.read(f, i * 131072, 131072))
    want = [(SYNC, 0, 0, 0, 0), (ORDER, 0, 0, 128, 96),
            (ASYNC, 32, 0, 128, 96), (ORDER, 128, 2, 512, 512),
            (ASYNC, 128, 2, 512, 512), (ORDER, 640, 4, 1024, 1024),
            (ASYNC, 640, 4, 1024, 1024), (ORDER, 1664, 6, 2048, 2048),
            (ASYNC, 1664, 6, 2048, 2048), (ORDER, 3712, 8, 3968, 3968),
            (ASYNC, 3712, 8, 3968, 3968), (ORDER, 7680, 10, 3584, 3584),
            (ASYNC, 7680, 9, 3584, 3584), (ORDER, 11264, 11, 3072, 3072),
            (ASYNC, 11264, 9, 3072, 3072), (ORDER, 14336, 11, 4096, 4096)]
    assert got == want
    assert r.state(f)["order"] == 9 and r.state(f)["prev_pos"] == 448 * 131072


def test_async_window_folios_are_order_aligned_and_the_mark_sits_on_the_window_start():
    r, f, _ = _ra(ra_pages=4096)
    effects = []
    for i in range(24):
        effects += r.read(f, i * 131072, 131072)
    adds = _adds(effects)
    assert adds[:128] == [(i, 0) for i in range(128)]
    assert adds[128:256] == [(128 + 4 * i, 2) for i in range(128)]            # window 128..640, order 2
    assert all(i % (1 << o) == 0 for i, o in adds)
    # the mark of the window read ahead at 640 was consumed by the async readahead it triggered;
    # the next window's mark waits at its first folio
    assert not r.folio_flags(f, 640) & PG_READAHEAD and r.folio_flags(f, 1664) & PG_READAHEAD


def test_read_batches_that_wait_for_io_meet_the_next_mark():
    """'reclaim' capture, a 1 GiB file read with 1 MiB reads after one 4 KiB read: the kernel's
    filemap_get_pages(4..255) waited on folio 4 (read I/O) and, retrying, met the mark of the
    window it had just started: two async readaheads in one call."""
    r, f, _ = _ra(size=1 << 30, ra_pages=2048)
    assert _decisions(r.get_pages(f, 0, 1)) == [(SYNC, 0, 0, 0, 0), (ORDER, 0, 0, 4, 3)]
    r.set_state(f, prev_pos=4096)
    assert _decisions(r.get_pages(f, 1, 256)) == [(ASYNC, 1, 0, 4, 3), (ORDER, 4, 2, 16, 16)]
    e = r.get_pages(f, 4, 256)
    assert _decisions(e) == [(ASYNC, 4, 2, 16, 16), (ORDER, 20, 4, 60, 60),
                             (ASYNC, 20, 4, 60, 60), (ORDER, 80, 6, 240, 240)]
    assert _adds(e)[:5] == [(20, 2), (24, 3), (32, 4), (48, 4), (64, 4)]
    assert _decisions(r.get_pages(f, 80, 256)) == [(ASYNC, 80, 6, 240, 240), (ORDER, 320, 8, 448, 448)]


# --------------------------------------------------------------------------------------------
# page_cache_ra_order
# --------------------------------------------------------------------------------------------
def _ra_order_ref(start, order, size, async_size, isize_pages, max_order=9, cached=()):
    """The loop of page_cache_ra_order (6.18), transcribed: (folios, mark folio, stop index)."""
    limit = min(isize_pages - 1, start + size - 1)
    new_order = max(0, min(max_order, order, size.bit_length() - 1))
    mark = start + size - async_size
    index, out = start, []
    while index <= limit:
        o = new_order
        if index & ((1 << o) - 1):
            o = (index & -index).bit_length() - 1
        while o > 0 and index + (1 << o) - 1 > limit:
            o -= 1
        if any(p in cached for p in range(index, index + (1 << o))):
            return out, index
        out.append((index, o, index == mark & ~((1 << o) - 1)))
        index += 1 << o
    return out, None


@pytest.mark.parametrize("start,order,size,async_size,isize", [
    (10, 4, 64, 64, 10_000), (0, 9, 2048, 512, 10_000), (1000, 6, 300, 1, 10_000),
    (5, 9, 1024, 1024, 700), (3, 2, 5, 2, 6), (4096, 11, 4096, 4096, 1 << 20), (7, 9, 1, 0, 100)])
def test_ra_order_alignment_eof_clamp_and_mark(start, order, size, async_size, isize):
    r, f, m = _ra(size=isize * 4096)
    r.set_state(f, start=start, order=order, size=size, async_size=async_size)
    e = r.ra_order(f, start)
    want, stop = _ra_order_ref(start, order, size, async_size, isize)
    assert stop is None and _adds(e) == [(i, o) for i, o, _ in want]
    assert [bool(r.folio_flags(f, i) & PG_READAHEAD) for i, _, _ in want] == [mk for _, _, mk in want]
    assert r.state(f)["order"] == max(0, min(9, order, size.bit_length() - 1))
    assert all(i + (1 << o) <= isize for i, o in _adds(e))            # nothing past EOF


def test_ra_order_falls_back_to_unbounded_at_a_cached_folio():
    r, f, m = _ra(size=10_000 * 4096)
    m.filemap_add_folio(40, 0)
    r.set_state(f, start=0, order=4, size=64, async_size=16)
    e = r.ra_order(f, 0)
    want, stop = _ra_order_ref(0, 4, 64, 16, 10_000, cached={40})
    assert stop == 32                        # the order-4 folio at 32 would cover the cached page 40
    assert _decisions(e) == [(ORDER, 0, 4, 64, 16), (UNB, 32, 0, 32, 16)]
    # ra_unbounded: min-order folios over the holes from 32; its mark is at 32 + 32 - 16
    assert _adds(e) == [(i, o) for i, o, _ in want] + [(i, 0) for i in range(32, 64) if i != 40]
    assert r.folio_flags(f, 48) & PG_READAHEAD and not r.folio_flags(f, 32) & PG_READAHEAD


def test_mapping_without_large_folios_reads_order_0_through_unbounded():
    r, f, _ = _ra(size=10_000 * 4096, max_order=0)
    r.set_state(f, start=100, order=6, size=256, async_size=256)
    e = r.ra_order(f, 100)
    assert _decisions(e) == [(ORDER, 100, 6, 256, 256), (UNB, 100, 0, 256, 256)]
    assert _adds(e) == [(i, 0) for i in range(100, 356)] and r.state(f)["order"] == 0


# --------------------------------------------------------------------------------------------
# page_cache_sync_ra
# --------------------------------------------------------------------------------------------
def test_small_random_read_reads_as_is():
    r, f, _ = _ra(size=64 * MB, ra_pages=2048)
    r.set_state(f, prev_pos=50 << 20)
    assert r.sync_ra(f, 3084, 1) == [(SYNC, 3084, 0, 0, 0), (UNB, 3084, 0, 1, 0), (ADD, 3084, 0, 1, 0)]
    assert r.state(f)["size"] == 0


def test_sync_readahead_after_cached_history_and_from_file_start():
    r, f, m = _ra(size=64 * MB, ra_pages=2048)
    for i in range(3000, 3010):
        m.filemap_add_folio(i, 0)
    r.set_state(f, prev_pos=50 << 20)
    # 10 pages of history before index 3010: window contig + req = 11, async 1
    assert _decisions(r.sync_ra(f, 3010, 1)) == [(SYNC, 3010, 0, 0, 0), (ORDER, 3010, 0, 11, 1)]
    # cached from page 0: the history counts double
    r2, f2, m2 = _ra(size=64 * MB, ra_pages=2048)
    for i in range(0, 20):
        m2.filemap_add_folio(i, 0)
    r2.set_state(f2, prev_pos=50 << 20)
    assert _decisions(r2.sync_ra(f2, 20, 4)) == [(SYNC, 20, 0, 0, 0), (ORDER, 20, 0, 44, 1)]


def test_sequential_miss_and_oversized_read_take_the_initial_window():
    r, f, _ = _ra(size=64 * MB, ra_pages=32)
    r.set_state(f, prev_pos=100 * 4096)
    assert _decisions(r.sync_ra(f, 101, 3)) == [(SYNC, 101, 0, 0, 0), (ORDER, 101, 0, 8, 5)]
    r.set_state(f, prev_pos=-1)
    assert _decisions(r.sync_ra(f, 500, 40)) == [(SYNC, 500, 0, 8, 5), (ORDER, 500, 0, 32, 16)]


def test_fmode_random_reads_only_the_request_in_2m_chunks():
    r, f, _ = _ra(size=64 * MB, ra_pages=32, io_pages=2048, random=True)
    e = r.sync_ra(f, 10, 1000)
    assert _decisions(e) == [(SYNC, 10, 0, 0, 0), (UNB, 10, 0, 512, 0), (UNB, 522, 0, 488, 0)]


# --------------------------------------------------------------------------------------------
# page_cache_async_ra
# --------------------------------------------------------------------------------------------
def test_async_off_the_expected_mark_measures_the_old_window_with_next_miss():
    r, f, m = _ra(size=64 * MB, ra_pages=2048)
    for i in range(100, 140):
        m.filemap_add_folio(i, 0)
    r.set_state(f, start=0, size=8, async_size=4, order=0)       # expected mark 4: 110 is not it
    e = r.async_ra(f, 110, 5)
    # next_miss(111) = 140: size = 140 - 110 + 5 = 35, below 2048/16: x4 = 140; order 2, end 280 aligned
    assert _decisions(e) == [(ASYNC, 110, 0, 8, 4), (ORDER, 140, 2, 140, 140)]
    r.set_state(f, start=0, size=8, async_size=4, order=0)
    m.filemap_add_folio(2000, 0)
    # a lone marked page: next_miss(2001) = 2001, size (1 + 5) x4 = 24, the end aligned to 4 pages: 23
    assert _decisions(r.async_ra(f, 2000, 5)) == [(ASYNC, 2000, 0, 8, 4), (ORDER, 2001, 2, 23, 23)]


# --------------------------------------------------------------------------------------------
# the fault path
# --------------------------------------------------------------------------------------------
def test_read_around_window_and_the_fgp_creat_page():
    r, f, _ = _ra(size=64 * MB, ra_pages=2048)
    e = r.fault(f, 5000)
    assert _decisions(e) == [(ORDER, 3976, 0, 2048, 512)]
    assert _adds(e) == [(i, 0) for i in range(3976, 6024)]
    assert r.state(f)["mmap_miss"] == 1
    assert r.fault(f, 5001) == []                                  # a hit on an unmarked folio
    assert r.state(f)["mmap_miss"] == 0


def test_mmap_miss_stops_read_around_after_lotsamiss():
    r, f, _ = _ra(size=1 << 30, ra_pages=32)
    r.set_state(f, mmap_miss=MMAP_LOTSAMISS)
    e = r.fault(f, 100_000)
    assert e == [(ADD, 100_000, 0, 1, 0)] and r.state(f)["mmap_miss"] == MMAP_LOTSAMISS + 1
    # fault-around maps 16 uptodate pages: mmap_miss goes down by 16
    r.complete_reads()
    assert r.map_pages(f, 100_000, 100_015) == 1 and r.state(f)["mmap_miss"] == MMAP_LOTSAMISS


def test_vma_kinds_of_the_fault_path():
    r, f, _ = _ra(size=1 << 30, ra_pages=2048)
    assert _decisions(r.fault(f, 32728, vm_flags=VM_EXEC, vm_start=0, vm_end=32895)) == [
        (ORDER, 32728, 0, 167, 0)]                                   # 'reclaim': the window ends at the VMA
    assert _decisions(r.fault(f, 70_000, vm_flags=VM_HUGEPAGE)) == [(ORDER, 69_632, 9, 1024, 512)]
    assert set(_adds(r.fault(f, 90_000, vm_flags=VM_HUGEPAGE | VM_RAND_READ))) == {(89_600, 9)}
    # VM_SEQ_READ: sync readahead of ra_pages (here an isolated miss: read as is)
    assert _decisions(r.fault(f, 200_000, vm_flags=VM_SEQ_READ)) == [(SYNC, 200_000, 9, 512, 512),
                                                                     (UNB, 200_000, 0, 2048, 0)]
    assert r.fault(f, 250_000, vm_flags=VM_RAND_READ) == [(ADD, 250_000, 0, 1, 0)]
    assert r.fault(f, 262_144) == []                                 # beyond EOF: SIGBUS


def test_async_mmap_readahead_on_a_marked_folio_uses_ra_pages_as_request():
    r, f, _ = _ra(size=64 * MB, ra_pages=2048)
    r.fault(f, 5000)
    r.complete_reads()
    assert r.fault(f, 5511) == []
    e = r.fault(f, 5512)                                           # the mark: 3976 + 2048 - 512
    assert _decisions(e) == [(ASYNC, 5512, 0, 2048, 512), (ORDER, 6024, 2, 2048, 2048)]


# --------------------------------------------------------------------------------------------
# numba and plain Python agree
# --------------------------------------------------------------------------------------------
_SCRIPT = """
import json
from memdesc.mm.filemap import PageCache
from memdesc.mm.readahead import Readahead, VM_EXEC
pc = PageCache()
m = pc.new_mapping(i_size=64 << 20)
r = Readahead(pc)
f = r.open(m, ra_pages=512)
out = []
for i in range(40):
    out.append(r.read(f, i * 65536, 65536))
g = r.open(m, ra_pages=512)
for idx in (9000, 9001, 12000, 9400, 15000):
    out.append(r.fault(g, idx))
out.append(r.map_pages(g, 9000, 9015))
h = r.open(m, ra_pages=512)
r.set_state(h, prev_pos=1 << 24)
for idx in (7000, 7001, 7003, 3000):
    out.append(r.read(h, idx * 4096, 4096))
out.append(r.fault(g, 14000, vm_flags=VM_EXEC, vm_end=14100))
m.truncate(5 << 20)
out.append(m.orders())
out.append([r.state(x) for x in (f, g, h)])
out.append(pc.check())
print(json.dumps(out))
"""


def test_same_results_without_numba():
    outs = both(_SCRIPT, timeout=900)
    assert outs[0] == outs[1]
    assert outs[0][-1] == "ok" and sum(len(x) for x in outs[0][:-3] if isinstance(x, list)) > 1000
