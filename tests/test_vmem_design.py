"""The ``vmem`` design: one-word memdesc, descriptors taken only at allocation time."""

from __future__ import annotations

import numpy as np
import pytest

from memdesc.errors import ConfigError, DoubleFree, NotAllocationHead, OrderMismatch
from memdesc.mm import memmap
from memdesc.mm.machine import COUNTER_ALIASES, Machine
from memdesc.mm.mmzone import PAGEBLOCK_NR_PAGES, ZoneType
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc import vmem_arena as va
from memdesc.mm.page_alloc.vmem import E_META, vmem_check_state
from memdesc.sim.churn import Churn


def _accounted(m: Machine, live_pages: int) -> int:
    """free + pcp + live allocations + descriptor pages: must equal the managed pages."""
    zs = m.design.zs
    return int(zs.z_free.sum() + zs.pcp[:, :, core.PCP_COUNT].sum()) + live_pages + int(zs.vm[va.V_NDPAGES])


def test_boot_state_and_sizes():
    m = Machine.create("512M", design="vmem")
    d = m.design
    assert m.check() == "ok"
    assert d.struct_page_bytes == 8 and d.words == 1
    md = m.metadata_bytes()
    assert md["memmap"] == 8 * d.npages
    assert md["descriptors"] == int(d.state.vm[va.V_NDPAGES]) * (4096 + 8)
    assert md["total"] == md["memmap"] + md["freelists"] + md["descriptors"] + md["pageblock_flags"]
    # every managed page is free at boot except the descriptor pages
    assert _accounted(m, 0) == int(d.zs.z_managed.sum())
    # reserved pages carry a bare (type 0) memdesc; free pages MD_FREE
    res = np.flatnonzero(d.zs.owner == core.OWNER_RESERVED)
    assert len(res) and not np.any(d.state.memdesc[res] & np.uint64(0xF))
    info = memmap.describe_page(d.page_words(int(res[0])), d.page_layout)
    assert info["type"] == "misc" and info["subtype"] in ("reserved", "hole")


def test_alloc_free_memdesc_words():
    m = Machine.create("256M", design="vmem", pcp=False)
    d = m.design
    pfn = m.alloc_pages("GFP_KERNEL", 2)
    words = [memmap.describe_page(d.page_words(pfn + i), d.page_layout) for i in range(4)]
    assert {w["type"] for w in words} == {"buddy-alloc"}
    assert len({w["descriptor"] for w in words}) == 1  # every page points at the allocation's descriptor
    addr = words[0]["descriptor"]
    assert addr % 16 == 0 and addr >= 0xFFFF888000000000  # a direct-map address, 16-byte aligned
    assert (addr - 0xFFFF888000000000) >> 12 in set(d.state.dpages[: d.state.vm[va.V_NDPAGES]].tolist())
    with pytest.raises(OrderMismatch):
        m.free_pages(pfn, 1)
    with pytest.raises(NotAllocationHead):
        m.free_pages(pfn + 1, 0)
    m.free_pages(pfn, 2)
    with pytest.raises(DoubleFree):
        m.free_pages(pfn, 2)
    assert memmap.describe_page(d.page_words(pfn), d.page_layout)["type"] == "free"
    assert m.check() == "ok"
    # the allocator's own descriptor pages cannot be freed by a caller
    dp = int(d.state.dpages[0])
    with pytest.raises(Exception, match="reserved page"):
        m.free_pages(dp, 0)


def test_coalescing_releases_descriptors_and_pageblocks():
    m = Machine.create("128M", design="vmem", pcp=False)
    d = m.design
    free0 = m.free_pages_count()
    inuse0 = int(d.state.vm[va.V_INUSE])
    pfns = [m.alloc_pages("GFP_KERNEL", 0) for _ in range(300)]
    assert m.check() == "ok"
    assert int(d.state.vm[va.V_INUSE]) > inuse0 + 299  # one descriptor per allocation
    for p in pfns[::2] + pfns[1::2]:
        m.free_pages(p, 0)
    assert m.check() == "ok"
    # everything coalesced back: as many descriptors and free pages as before (descriptor
    # pages added meanwhile are the only difference)
    added = int(d.state.vm[va.V_NDPAGES]) - 1
    assert m.free_pages_count() == free0 - added
    assert int(d.state.vm[va.V_INUSE]) <= inuse0 + 2 * added + 2


def test_zero_free_path_allocations_per_call():
    """Independent of the in-kernel flag: no free changes the descriptor-allocation count
    or the descriptor pages, over a random alloc/free sequence on every path (pcp, bulk
    drains, releases, zone arena)."""
    m = Machine.create("256M", design="vmem", cpus=2)
    d = m.design
    vm = d.state.vm
    rng = np.random.default_rng(5)
    live: list[tuple[int, int]] = []
    frees = 0
    for _ in range(6000):
        if live and (rng.random() < 0.5 or len(live) > 3000):
            pfn, order = live.pop(int(rng.integers(len(live))))
            before = (int(vm[va.V_DESC_ALLOCS]), int(vm[va.V_NDPAGES]))
            m.free_pages(pfn, order, cpu=int(rng.integers(2)))
            assert (int(vm[va.V_DESC_ALLOCS]), int(vm[va.V_NDPAGES])) == before
            frees += 1
        else:
            order = int(rng.choice([0, 0, 0, 1, 3, 9, 10]))
            gfp = str(rng.choice(["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE"]))
            pfn = m.alloc_pages(gfp, order, cpu=int(rng.integers(2)))
            if pfn is not None:
                live.append((pfn, order))
    before = int(vm[va.V_DESC_ALLOCS])
    m.drain_all_pages()
    assert int(vm[va.V_DESC_ALLOCS]) == before
    assert frees > 2000 and m.stats()["free_path_allocations"] == 0
    assert m.check() == "ok"


def test_free_path_counter_counts():
    """The in-kernel instrument works: a descriptor taken inside a free-path scope is counted."""
    m = Machine.create("64M", design="vmem")
    st = m.design.state
    st.vm[va.V_IN_FREE] = 1
    t = va.desc_get(st)
    st.vm[va.V_IN_FREE] = 0
    assert m.stats()["free_path_allocations"] == 1
    va.desc_put(st, t)


def test_churn_mix_long_zero_free_path_allocations():
    m = Machine.create("512M", design="vmem")
    c = Churn(m, orders="mix", gfp="mix", occupancy=0.7, seed=3)
    r = c.run(400_000)
    st = m.stats()
    assert r.free_errors == 0 and st["free"] > 350_000
    assert st["free_path_allocations"] == 0 and st["free_stalls"] == 0
    assert m.check() == "ok"
    assert _accounted(m, int(c.ctr[1])) == int(m.design.zs.z_managed.sum())
    assert c.free_all() == 0
    m.drain_all_pages()
    assert m.check() == "ok"
    assert _accounted(m, 0) == int(m.design.zs.z_managed.sum())


def test_fault_injection_one_million_ops():
    """1 M operations with 1 % of descriptor allocations failing: allocations fail cleanly
    (counted), frees never fail, no page is lost, check() stays clean."""
    m = Machine.create("128M", design="vmem", fail_descriptor_alloc=0.01)
    assert m.design.fail_rate == pytest.approx(0.01)
    c = Churn(m, orders="mix", gfp="mix", occupancy=0.6, seed=11)
    r = c.run(500_000)
    st = m.stats()
    ds = m.design.descriptor_stats()
    assert r.operations == 1_000_000 and r.free_errors == 0
    # each descriptor reservation fails with probability 0.01: the count is binomial
    expected = 0.01 * ds["reserve_calls"]
    assert ds["injected_failures"] > 100
    assert abs(ds["injected_failures"] - expected) < 5 * expected ** 0.5 + 10
    assert st["alloc_failed_for_metadata"] > 0 and st["alloc_failed_for_metadata"] <= ds["injected_failures"]
    assert st["free_path_allocations"] == 0
    assert m.check() == "ok"
    assert _accounted(m, int(c.ctr[1])) == int(m.design.zs.z_managed.sum())
    assert c.free_all() == 0
    m.drain_all_pages()
    assert m.check() == "ok" and _accounted(m, 0) == int(m.design.zs.z_managed.sum())


def test_failed_reservation_changes_nothing():
    m = Machine.create("64M", design="vmem", fail_descriptor_alloc=1.0, pcp=False)
    st = m.design.state
    snap = (st.memdesc.copy(), st.desc.copy(), st.z_free.copy(), st.owner.copy())
    assert m.alloc_pages("GFP_KERNEL", 0) is None
    assert m.stats()["alloc_failed_for_metadata"] == 1
    assert all(np.array_equal(a, b) for a, b in zip(snap, (st.memdesc, st.desc, st.z_free, st.owner), strict=True))
    assert E_META < 0


def test_bad_fault_rate():
    with pytest.raises(ConfigError, match="fail_descriptor_alloc"):
        Machine.create("64M", design="vmem", fail_descriptor_alloc=1.5)


def test_i386_no_descriptor_in_highmem():
    m = Machine.create("2G", design="vmem", layout="i386")
    d = m.design
    zt = m.layout.zone_types
    hi = [i for i, z in enumerate(m.zones) if z.ztype == ZoneType.HIGHMEM]
    assert hi
    c = Churn(m, orders="mix", gfp="mix", occupancy=0.6, seed=2)
    c.run(200_000)
    nd = int(d.state.vm[va.V_NDPAGES])
    assert nd > 1
    for pfn in d.state.dpages[:nd]:
        z = int(d.zs.pb_zone[int(pfn) >> 9])
        assert m.zones[z].direct_mapped and zt[int(d.zs.z_idx[z])] != ZoneType.HIGHMEM
    assert m.stats()["free_path_allocations"] == 0
    assert m.check() == "ok"


def test_take_exact_block():
    m = Machine.create("64M", design="vmem", pcp=False)
    d = m.design
    blocks = d.free_blocks()
    big = blocks[blocks[:, 1] == 10][0]
    pfn = int(big[0]) + 3 * PAGEBLOCK_NR_PAGES // 2 + 4
    assert m.take(pfn, 2)
    assert not m.take(pfn, 0)  # no longer free
    assert m.check() == "ok"
    m.free_pages(pfn, 2)
    assert m.check() == "ok"


def test_check_detects_corruption():
    m = Machine.create("64M", design="vmem", pcp=False)
    st = m.design.state
    pfn = m.alloc_pages("GFP_KERNEL", 0)
    st.memdesc[pfn + 1] = np.uint64(memmap.MD_BUDDY_ALLOC | (5 << 4))
    assert m.check() != "ok"
    code = int(vmem_check_state(st)[0])
    assert code != 0


@pytest.mark.parametrize("design", ["linux", "vmem"])
def test_pcp_list_order_is_linux_order(design):
    """The pcp list is LIFO at its head and drained from its tail, on vmem as on linux: a
    magazine of MAG_ROUNDS pfns in front of the descriptor-linked part must not change the
    order.  40 pages (more than a magazine) freed on one CPU come back newest first."""
    m = Machine.create("1G", design=design)
    pfns = [m.alloc_pages("GFP_KERNEL", 0, cpu=0) for _ in range(40)]
    drained = m.stats()["pcp_drained_pages"]
    for p in pfns:
        m.free_pages(p, 0, cpu=0)
    assert m.check() == "ok"
    assert m.stats()["pcp_drained_pages"] == drained  # nothing left the lists (else the test is void)
    again = [m.alloc_pages("GFP_KERNEL", 0, cpu=0) for _ in range(40)]
    assert again == pfns[::-1]
    assert m.check() == "ok"


def test_pcp_magazine_spills_without_reading_descriptors_on_free():
    """A free to a pcp list with room in its magazine touches no descriptor; the 16th spills
    the oldest round onto the linked part (which check() walks), and the list stays whole."""
    m = Machine.create("1G", design="vmem")
    st = m.state
    pfns = [m.alloc_pages("GFP_KERNEL", 0, cpu=1) for _ in range(va.MAG_ROUNDS + 5)]
    z = core.page_zone(st, pfns[0])
    h = va.pcp_head(st, 1, z, core.order_to_pindex(0, 0))
    assert int(va.pcp_mag(st, h)[0]) == 0  # the allocations emptied the magazine (the refill is linked)
    for k, p in enumerate(pfns):
        t = va.md_tag(st, p)
        row = st.desc[t].copy()
        m.free_pages(p, 0, cpu=1)
        if k < va.MAG_ROUNDS:
            assert np.array_equal(st.desc[t], row)  # the freed allocation's descriptor untouched
    mag = va.pcp_mag(st, h)
    assert int(mag[0]) == va.MAG_ROUNDS and list(mag[1:]) == pfns[5:]
    assert m.check() == "ok"
    # the spilled rounds head the linked part, newest first (then what the refill left)
    d = st.desc
    t, linked = int(d[h, va.D_KNEXT]), []
    while t != h and len(linked) < 5:
        linked.append(int(d[t, va.D_START]))
        assert int(d[t, va.D_TYPE]) == va.VMEM_ALLOC | va.DT_PCP
        t = int(d[t, va.D_KNEXT])
    assert linked == pfns[4::-1]
    m.drain_all_pages()
    assert int(va.pcp_mag(st, h)[0]) == 0 and int(d[h, va.D_KNEXT]) == h and m.check() == "ok"


def test_summary_carries_the_descriptor_figures():
    m = Machine.create("256M", design="vmem")
    Churn(m, orders="mix", gfp="mix", occupancy=0.3, seed=3).run(2000)
    s = m.summary()
    ds = s["design_stats"]
    raw = m.design.descriptor_stats()
    assert ds == {k: v for k, v in raw.items() if k not in COUNTER_ALIASES}
    assert ds["descriptors_in_use"] > 0 and raw["free_path_allocations"] == s["free_path_allocations"] == 0
    assert ds["descriptor_pages"] * va.DESC_PER_PAGE == ds["descriptors_in_use"] + ds["descriptors_free"]
