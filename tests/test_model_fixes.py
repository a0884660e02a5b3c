"""Divergences of the linux model from Linux 6.18 found by review and by shadow replay, one test each.

Each test fails without its fix (the fix and its kernel source are named in the test's docstring).
"""

from __future__ import annotations

import numpy as np
import pytest

from memdesc.errors import ConfigError
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import NR_PAGEBLOCK_BITS, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc.setup import AllocConfig, pcp_cacheinfo_flags


def test_pageblock_flags_are_eight_bits_per_pageblock():
    """NR_PAGEBLOCK_BITS is 8 since 6.16: 3 migratetype bits, PB_compact_skip and PB_migrate_isolate
    rounded up to a power of two (was 4: metadata bytes half the kernel's)."""
    assert NR_PAGEBLOCK_BITS == 8
    m = Machine.create("64M", cpus=1)
    npb = m.design.zs.pb.shape[0]
    assert m.design.metadata_bytes()["pageblock_flags"] == npb  # one byte per pageblock
    assert npb == -(-m.max_pfn // (1 << PAGEBLOCK_ORDER))


def test_free_high_batch_set_from_the_llc_slice():
    """zone_pcp_update_cacheinfo(): PCPF_FREE_HIGH_BATCH when the CPU's last-level-cache slice holds
    more than 3 * batch pages.  The captures' kind of machine (2 vCPUs sharing a 480 MiB L3) sets it
    on every populated zone; without cache information it stays clear (was never set)."""
    assert pcp_cacheinfo_flags(245760, 63) == core.PCPF_FREE_HIGH_BATCH
    assert pcp_cacheinfo_flags(3 * 63 * 4, 63) == 0          # exactly 3 * batch pages: not more
    assert pcp_cacheinfo_flags(3 * 63 * 4 + 4, 63) == core.PCPF_FREE_HIGH_BATCH
    m = Machine.create("4G", cpus=2)
    zs = m.design.zs
    populated = zs.z_managed > 0
    flags = zs.pcp[:, :, core.PCP_FLAGS]
    assert (flags[:, populated] & core.PCPF_FREE_HIGH_BATCH).all()
    m0 = Machine.create("4G", cpus=2, llc_slice_kb=0)
    assert not (m0.design.zs.pcp[:, :, core.PCP_FLAGS] & core.PCPF_FREE_HIGH_BATCH).any()


def test_free_high_batch_keeps_batch_pages_on_the_pcp():
    """With PCPF_FREE_HIGH_BATCH, consecutive high-order frees drain the pcp only once it holds
    batch pages (free_frozen_page_commit()); without it, at once."""
    def drained(flags: int) -> int:
        m = Machine.create("1G", cpus=1, llc_slice_kb=245760 if flags else 0)
        st = m.design.state
        z = int(np.flatnonzero(st.z_managed > 0)[-1])
        row = st.pcp[0, z].copy()
        batch = int(row[core.PCP_BATCH])
        row[core.PCP_FREE_COUNT] = batch + int(row[core.PCP_HIGH_MIN]) // 2
        row[core.PCP_FLAGS] |= core.PCPF_PREV_FREE_HIGH_ORDER
        row[core.PCP_COUNT] = 4  # one order-2 page just added, fewer than batch pages
        return int(core.pcp_free_commit_count(st, row, z, 2))
    assert drained(0) == 4          # free_high: drain min(count, batch << 5) at once
    assert drained(1) == -1         # free_high waits for batch pages: nothing drained


def test_llc_slice_must_not_be_negative():
    with pytest.raises(Exception, match="llc_slice_kb"):
        pcp_cacheinfo_flags(-1, 63)
    assert AllocConfig().llc_slice_kb == 245760


def test_gfp_migratetype_honours_mobility_grouping_disabled():
    """gfp_migratetype() returns MIGRATE_UNMOVABLE for every request when
    page_group_by_mobility_disabled (was: the gfp's mobility bits, so a movable request took a
    movable block and one with both bits failed)."""
    from memdesc.mm import gfp as G
    m = Machine.create("64M", cpus=1, pcp=False)
    d = m.design
    d.zs.cfg[core.CFG_MOBILITY_DISABLED] = 1   # what a machine below 6 pageblocks per type gets
    movable = G.parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_COMP")
    p = d.alloc(movable, 0, 0)
    assert p >= 0 and core.owner_mt(d.zs.owner[p]) == core.MT_UNMOVABLE
    both = G.parse_gfp("GFP_KERNEL|__GFP_MOVABLE|__GFP_RECLAIMABLE")
    q = d.alloc(both, 0, 0)
    assert q >= 0 and core.owner_mt(d.zs.owner[q]) == core.MT_UNMOVABLE
    d.zs.cfg[core.CFG_MOBILITY_DISABLED] = 0
    r = d.alloc(movable, 0, 0)
    assert core.owner_mt(d.zs.owner[r]) == core.MT_MOVABLE and d.alloc(both, 0, 0) == -1
    assert d.check() == "ok"


def _normal(m) -> int:
    zs = m.design.zs
    return int(np.flatnonzero(zs.z_managed > 0)[-1])


def test_watermark_boost_stays_until_kswapd_has_run():
    """A boost set by a claiming fallback wakes kswapd at the next allocation that may wake it;
    the boost stays in the watermarks until kswapd's run ends (balance_pgdat() takes it back),
    which the modelled clock's periodic work does.  It was dropped at the wakeup itself."""
    from memdesc.mm import gfp as G
    from memdesc.sim.clock import advance, new_clock
    m = Machine.create("1G", cpus=1)
    st = m.design.state
    z = _normal(m)
    assert core.boost_watermark(st, z)
    st.z_flags[z] |= core.ZONE_BOOSTED_WATERMARK
    boost = int(st.boost[z])
    assert boost > 0
    high = int(core.high_wmark_pages(st, z))
    assert m.design.alloc(G.parse_gfp("GFP_KERNEL"), 0, 0) >= 0        # __GFP_KSWAPD_RECLAIM: wakes kswapd
    assert not st.z_flags[z] & core.ZONE_BOOSTED_WATERMARK
    assert st.z_flags[z] & core.ZONE_KSWAPD_WOKEN
    assert int(st.boost[z]) == boost and int(core.high_wmark_pages(st, z)) == high
    clk = new_clock(1000)
    advance(st, clk, core.VMSTAT_INTERVAL_NS - 1)                        # kswapd has not finished yet
    assert int(st.boost[z]) == boost
    advance(st, clk, 1)
    assert int(st.boost[z]) == 0 and not st.z_flags[z] & core.ZONE_KSWAPD_WOKEN


def test_churn_and_scenarios_run_periodic_work_on_a_modelled_clock():
    """decay_pcp_high()/vmstat_update() ran only in trace replay; churn and scenarios now advance a
    modelled clock (ns_per_op per operation) and decay pcp->high once a modelled second."""
    from memdesc.sim.churn import Churn
    from memdesc.sim.scenarios import highmem_free

    def run(ns_per_op: int) -> int:
        m = Machine.create("1G", cpus=1)
        st = m.design.state
        z = _normal(m)
        st.pcp[0, z, core.PCP_HIGH] = st.pcp[0, z, core.PCP_HIGH_MAX]   # as after many refills
        ch = Churn(m, order=0, occupancy=0.05, seed=3, ns_per_op=ns_per_op)
        ch.run(200)
        return int(st.pcp[0, z, core.PCP_HIGH])

    hmax = int(Machine.create("1G", cpus=1).design.zs.pcp[0, -3:, core.PCP_HIGH_MAX].max())
    stopped = run(0)
    ticking = run(core.VMSTAT_INTERVAL_NS // 50)    # 400+ operations: several modelled seconds
    assert stopped >= hmax - 64                     # only refills move it (up to high_max)
    assert ticking < stopped * 7 // 8 + 1           # at least one decay by an eighth
    a = highmem_free("linux", layout="i386", mem="1200M", seed=2, ns_per_op=0)
    b = highmem_free("linux", layout="i386", mem="1200M", seed=2, ns_per_op=core.VMSTAT_INTERVAL_NS)
    assert a.check == b.check == "ok"
    assert a.stats["pcp_drained_pages"] != b.stats["pcp_drained_pages"]


def test_pageblock_order_and_thp_pcp_lists_are_per_layout():
    """x86-64 and i386 PAE have pageblock_order 9, non-PAE i386 10 (4 MiB huge pages); the per-CPU
    THP lists exist only with THP (the i386 layouts have it off).  Both were x86-64's everywhere:
    an order-9 allocation on i386 went through a THP pcp list the kernel does not have."""
    from memdesc.mm import gfp as G
    from memdesc.mm.mmzone import nr_pcp_lists
    x86 = Machine.create("2G", cpus=1)
    pae = Machine.create("2G", cpus=1, layout="i386")
    nopae = Machine.create("2G", cpus=1, layout="i386-nopae")
    for m, pbo, thp in ((x86, 9, 1), (pae, 9, 0), (nopae, 10, 0)):
        cfg = m.design.zs.cfg
        assert (int(cfg[core.CFG_PB_ORDER]), int(cfg[core.CFG_PCP_THP])) == (pbo, thp)
        assert m.pagetypeinfo().pages_per_block == 1 << pbo
        assert m.design.freelist_bytes() == len(m.zones) * (11 * (6 * 16 + 8)) + len(m.zones) * nr_pcp_lists(
            bool(thp)) * 16
    # order 9: from a THP pcp list on x86-64 (a refill fills it), straight from the buddy on i386
    thp_gfp = G.parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_COMP")
    for m, via_pcp in ((x86, True), (pae, False)):
        st = m.design.state
        refills = int(st.stats[core.ST_PCP_REFILL])
        assert m.design.alloc(thp_gfp, 9, 0) >= 0
        assert (int(st.stats[core.ST_PCP_REFILL]) > refills) == via_pcp
    # non-PAE: one type per 1024-page pageblock; pagetypeinfo counts 1024-page blocks
    st = nopae.design.state
    pb = st.pb & core.PB_MIGRATETYPE_MASK
    assert (pb[0::2] == pb[1::2]).all()
    counts = nopae.design.pageblock_counts()
    assert counts.sum() * 1024 <= sum(z.spanned for z in nopae.zones) + 1024 * len(nopae.zones)
    gfp = G.parse_gfp("GFP_KERNEL")
    got = [nopae.design.alloc(gfp, 0, 0) for _ in range(3000)]
    assert min(got) >= 0 and nopae.check() == "ok"
    pb = st.pb & core.PB_MIGRATETYPE_MASK
    assert (pb[0::2] == pb[1::2]).all()        # claims retype whole 4 MiB pageblocks
    with pytest.raises(Exception, match="4 GiB"):
        Machine.create("6G", layout="i386-nopae")
    with pytest.raises(Exception, match="not supported"):
        Machine.create("2G", layout="i386-nopae", design="vmem")


def test_percpu_pagelist_high_fraction_fixes_high_as_the_sysctl_does():
    """vm.percpu_pagelist_high_fraction N: high_min = high_max = max(managed / N / cpus, 4 batch)
    (zone_set_pageset_high_and_batch()); 0 keeps auto-tuning between low/cpus and managed/8/cpus;
    values 1..7 are outside the sysctl's range."""
    auto = Machine.create("4G", cpus=2).design.zs
    fixed = Machine.create("4G", cpus=2, percpu_pagelist_high_fraction=16).design.zs
    z = int(np.argmax(auto.z_managed))
    managed, batch = int(auto.z_managed[z]), int(auto.pcp[0, z, core.PCP_BATCH])
    assert auto.pcp[0, z, core.PCP_HIGH_MIN] < auto.pcp[0, z, core.PCP_HIGH_MAX]
    assert auto.pcp[0, z, core.PCP_HIGH_MAX] == max(managed // 8 // 2, 4 * batch)
    want = max(managed // 16 // 2, 4 * batch)
    assert fixed.pcp[0, z, core.PCP_HIGH_MIN] == fixed.pcp[0, z, core.PCP_HIGH_MAX] == want
    assert fixed.pcp[0, z, core.PCP_BATCH] == batch
    with pytest.raises(ConfigError, match="percpu_pagelist_high_fraction"):
        Machine.create("1G", percpu_pagelist_high_fraction=4)
