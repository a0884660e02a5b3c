"""The modelled machine and the `linux` design: layouts, boot state, /proc views, API errors.

Expected values come from the real machine's /proc/zoneinfo (tests/data/proc, a copy of
../shared/traces/build/before.zoneinfo) or from hand calculation in the comments, never
from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memdesc.errors import (
    ConfigError,
    DoubleFree,
    InvalidOrder,
    InvalidPfn,
    NotAllocationHead,
    OrderMismatch,
)
from memdesc.mm import vmstat
from memdesc.mm.machine import Machine
from memdesc.mm.mm_init import i386_layout, x86_64_layout
from memdesc.mm.mmzone import ZoneType

DATA = Path(__file__).parent / "data" / "proc"


@pytest.fixture(scope="module")
def real_zoneinfo():
    return vmstat.read_zoneinfo(DATA / "zoneinfo")


def test_x86_64_layout_matches_pc_memory_map():
    lay = x86_64_layout("24G")
    dma, dma32, normal = lay.zones[0], lay.zones[1], lay.zones[2]
    # pfn 0 and the VGA/BIOS hole [0x9f, 0x100) are not RAM: 4095 spanned, 3998 present
    assert (dma.start_pfn, dma.spanned, dma.present) == (1, 4095, 3998)
    # RAM below 4 GiB stops at 3 GiB: DMA32 spans to 4 GiB with a 1 GiB hole
    assert (dma32.start_pfn, dma32.spanned, dma32.present) == (4096, (4 << 18) - 4096, (3 << 18) - 4096)
    # 24 GiB - 3 GiB above 4 GiB
    assert (normal.start_pfn, normal.present) == (1 << 20, 21 << 18)
    assert all(z.direct_mapped for z in lay.zones[:4])


def test_i386_layout_has_highmem_not_directly_mapped():
    lay = i386_layout("4G")
    names = [z.name for z in lay.zones]
    assert names == ["DMA", "Normal", "HighMem", "Movable"]
    normal, high = lay.zones[1], lay.zones[2]
    assert normal.end_pfn == 896 << 8  # 896 MiB
    assert normal.direct_mapped and not high.direct_mapped
    # the memmap (64 B per pfn) must live in directly mapped memory
    memmap = [r for r in lay.reservations if r.what == "memmap"]
    assert memmap and all(r.end_pfn <= normal.end_pfn for r in memmap)


def test_memmap_reservation_depends_on_struct_page_size():
    # smaller struct page, more managed pages: 64 B vs 16 B per pfn of 0x440000 pfns
    l8, l2 = x86_64_layout("16G", words=8), x86_64_layout("16G", words=2)
    managed8 = sum(z.managed for z in l8.zones)
    managed2 = sum(z.managed for z in l2.zones)
    assert managed2 - managed8 == (0x440000 * 64 - 0x440000 * 16) // 4096


def test_nodes_split_memory(tmp_path):
    m = Machine.create("4G", nodes=2)
    assert m.layout.nr_nodes == 2 and m.nr_cpus == 4
    assert {z.node for z in m.zones if z.present} == {0, 1}
    assert m.check() == "ok"
    # node 1's CPUs allocate from node 1 first (its zonelist starts locally)
    pfn = m.alloc_pages("GFP_KERNEL", 0, cpu=3)
    z = m.layout.zone_of_pfn(pfn)
    assert m.zones[z].node == 1


def test_machine_from_real_zoneinfo_reproduces_zones_and_watermarks(real_zoneinfo):
    m = Machine.from_zoneinfo(DATA / "zoneinfo")
    for real, ours in zip(real_zoneinfo, m.zoneinfo(), strict=True):
        assert (ours.node, ours.zone) == (real.node, real.zone)
        assert (ours.spanned, ours.present, ours.managed) == (real.spanned, real.present, real.managed)
        if real.populated:
            assert ours.start_pfn == real.start_pfn
        # min_free_kbytes, khugepaged's recommendation and watermark_scale_factor
        assert (ours.min, ours.low, ours.high, ours.promo) == (real.min, real.low, real.high, real.promo)
        assert ours.protection == real.protection
        if real.pagesets:
            for pr, po in zip(real.pagesets, ours.pagesets, strict=True):
                assert (po.batch, po.high_min, po.high_max) == (pr.batch, pr.high_min, pr.high_max)
    assert m.check() == "ok"


@pytest.mark.shared
def test_every_capture_zoneinfo_reproduces_exactly(shared_traces):
    for d in sorted(p for p in shared_traces.iterdir() if (p / "before.zoneinfo").exists()):
        for when in ("before", "after"):
            real = vmstat.read_zoneinfo(d / f"{when}.zoneinfo")
            m = Machine.from_zoneinfo(d / f"{when}.zoneinfo")
            got = [(z.node, z.name, z.start_pfn if z.spanned else None, z.spanned, z.present, z.managed)
                   for z in m.zones]
            want = [(z.node, z.zone, z.start_pfn if z.populated else None, z.spanned, z.present, z.managed)
                    for z in real]
            assert got == want, d.name


def test_boot_state_is_maximally_merged():
    m = Machine.create("1G")
    bi = m.buddyinfo().to_dict()
    # DMA [1, 0x1000) with firmware [1, 0x9f) reserved and the hole [0x9f, 0x100): free
    # [0x100, 0x1000) = one order-8 block (0x100), one order-9 (0x200), three order-10
    assert bi["0:DMA"] == [0] * 8 + [1, 1, 3]
    assert m.check() == "ok"


def test_free_everything_merges_back_to_boot_state():
    m = Machine.create("512M")
    boot = m.buddyinfo().to_dict()
    rng = np.random.default_rng(7)
    live = []
    for _ in range(3000):
        order = int(rng.choice([0, 0, 0, 1, 2, 3, 4, 9]))
        gfp = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE"][rng.integers(3)]
        p = m.alloc_pages(gfp, order, cpu=int(rng.integers(2)))
        if p is not None:
            live.append((p, order))
        if live and rng.random() < 0.3:
            p, o = live.pop(int(rng.integers(len(live))))
            m.free_pages(p, o, cpu=int(rng.integers(2)))
    assert m.check() == "ok"
    for p, o in live:
        m.free_pages(p, o)
    m.drain_all_pages()
    assert m.check() == "ok"
    # pageblock types may have changed (claimed blocks), but every zone is one merged
    # free area again: the same buddyinfo as at boot
    assert m.buddyinfo().to_dict() == boot
    assert m.free_pages_count() == sum(z.managed for z in m.zones)


def test_invalid_calls_raise_and_leave_state_unchanged():
    m = Machine.create("256M")
    p = m.alloc_pages("GFP_KERNEL|__GFP_COMP", 2)
    before = (m.buddyinfo().to_dict(), m.free_pages_count())
    with pytest.raises(InvalidOrder):
        m.alloc_pages("GFP_KERNEL", 11)
    with pytest.raises(OrderMismatch):
        m.free_pages(p, 3)
    with pytest.raises(NotAllocationHead):
        m.free_pages(p + 1, 2)
    with pytest.raises(InvalidPfn):
        m.free_pages(m.max_pfn + 5, 0)
    with pytest.raises(InvalidPfn):
        m.free_pages(0xA0, 0)  # inside the legacy VGA hole
    with pytest.raises(InvalidOrder):
        m.free_pages(p, -1)
    with pytest.raises(ConfigError):
        m.alloc_pages("GFP_KERNEL", 0, cpu=99)
    with pytest.raises(ConfigError):
        m.alloc_pages("__GFP_MOVABLE|__GFP_RECLAIMABLE", 0)
    assert (m.buddyinfo().to_dict(), m.free_pages_count()) == before
    m.free_pages(p, 2)
    with pytest.raises(DoubleFree):
        m.free_pages(p, 2)
    free_block = int(m.design.free_blocks()[0, 0])
    with pytest.raises(DoubleFree):
        m.free_pages(free_block + 1, 0)
    assert m.check() == "ok"


def test_allocation_failure_is_a_result_not_an_exception():
    m = Machine.create("64M", pcp=False)
    got = []
    while (p := m.alloc_pages("GFP_ATOMIC", 3)) is not None:
        got.append(p)
        assert len(got) < 10_000
    assert got and m.stats()["alloc_failed"] >= 1
    assert m.check() == "ok"
    for p in got:
        m.free_pages(p, 3)
    assert m.check() == "ok"


def test_i386_kernel_allocations_never_come_from_highmem():
    m = Machine.create("4G", layout="i386")
    high = next(i for i, z in enumerate(m.zones) if z.ztype == ZoneType.HIGHMEM)
    for _ in range(2000):
        p = m.alloc_pages("GFP_KERNEL", 0)
        assert not m.zones[high].start_pfn <= p < m.zones[high].end_pfn
    q = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)
    assert m.zones[high].start_pfn <= q < m.zones[high].end_pfn


def test_pcp_lists_hold_freed_pages_until_drained():
    m = Machine.create("256M")
    p = m.alloc_pages("GFP_KERNEL", 0)
    m.free_pages(p, 0)
    assert m.page_state(p) == "pcp"
    m.drain_all_pages()
    assert m.page_state(p).startswith("free")
    assert m.check() == "ok"


def test_describe_page_decodes_buddy_and_compound_pages():
    m = Machine.create("256M", pcp=False)
    p = m.alloc_pages("GFP_KERNEL|__GFP_COMP", 2)
    text = m.describe_page(p)
    assert "refcount:1" in text and "head" in text
    tail = m.describe_page(p + 1)
    assert f"tail(head pfn {p:#x})" in tail
    m.free_pages(p, 2)
    head = int(m.design.free_blocks()[0, 0])
    assert "page_type: f0(buddy)" in m.describe_page(head)
    with pytest.raises(InvalidPfn):
        m.describe_page(m.max_pfn)


def test_proc_views_parse_back():
    m = Machine.create("2G")
    for _ in range(500):
        m.alloc_pages("GFP_KERNEL", 0)
    files = m.proc_files()
    assert vmstat.format_buddyinfo(vmstat.parse_buddyinfo(files["buddyinfo"])) == files["buddyinfo"]
    pti = vmstat.parse_pagetypeinfo(files["pagetypeinfo"])
    assert pti.migratetype_names == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    # the pagetypeinfo per-type free lists add up to buddyinfo
    bi = vmstat.parse_buddyinfo(files["buddyinfo"]).to_dict()
    for z in pti.zones:
        sums = [sum(row[o] for row in z.free) for o in range(11)]
        assert sums == bi[f"{z.node}:{z.zone}"]
    assert vmstat.format_zoneinfo(vmstat.parse_zoneinfo(files["zoneinfo"])) == files["zoneinfo"]
