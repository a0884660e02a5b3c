"""Boot-time setup of the shared zone state: watermarks, lowmem_reserve, zonelists, pcp.

Theory
------
Everything here runs once per machine, in Python, and reproduces the integer formulas of
mm/page_alloc.c and mm/khugepaged.c exactly (verified against the real machine's
/proc/zoneinfo in ../shared/traces: min/low/high/promo, protection, pcp batch,
high_min and high_max all come out identical):

* ``min_free_kbytes = int_sqrt(lowmem_kbytes * 16)`` clamped to [128, 262144]; with THP
  enabled, khugepaged raises it to ``pageblock_nr_pages * nr_zones * (2 + 3 * 3)`` pages
  (at most 5 % of lowmem) — the real machine runs with that value;
* per zone ``min = pages_min * managed / lowmem_managed`` (HighMem/Movable:
  ``clamp(managed / 1024, 32, 128)``), ``delta = max(min / 4, managed * wsf / 10000)``,
  low/high/promo = min + delta, + 2 delta, + 3 delta;
* ``lowmem_reserve[j] = sum(managed of zones above, up to j) / ratio`` with ratios
  DMA 256, DMA32 256, Normal 32, HighMem/Movable 0;
* ``batch = rounddown_pow_of_two(b + b / 2) - 1`` with ``b = min(managed >> 10, 256) / 4``;
  ``high_min = max(low_wmark / cpus_of_node, 4 * batch)``,
  ``high_max = max(managed / 8 / cpus_of_node, 4 * batch)``; with
  ``percpu_pagelist_high_fraction`` N (``AllocConfig``, 0 by default) both are
  ``max(managed / N / cpus_of_node, 4 * batch)`` and auto-tuning has no room;
* ``pageblock_order`` and whether the per-CPU THP lists exist come from the layout
  (``MachineLayout.pageblock_order``: 9, or 10 on non-PAE i386; THP on or off);
* ``PCPF_FREE_HIGH_BATCH`` when the CPU's last-level-cache slice holds more than
  ``3 * batch`` pages (zone_pcp_update_cacheinfo(); ``AllocConfig.llc_slice_kb``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memdesc import _mem as hugemem
from memdesc.errors import ConfigError
from memdesc.mm import gfp as gfpmod
from memdesc.mm import mmzone
from memdesc.mm.mm_init import MachineLayout
from memdesc.mm.mmzone import (
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    PAGE_SHIFT,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    ZoneType,
)
from memdesc.mm.page_alloc import core

SWAP_CLUSTER_MAX = 32
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
LOWMEM_RESERVE_RATIO = {
    ZoneType.DMA: 256,
    ZoneType.DMA32: 256,
    ZoneType.NORMAL: 32,
    ZoneType.HIGHMEM: 0,
    ZoneType.MOVABLE: 0,
    ZoneType.DEVICE: 0,
}


@dataclass
class AllocConfig:
    """Tunables of the modelled allocator (sysctls and config options)."""

    pcp: bool = True  # per-CPU page lists on/off
    min_free_kbytes: int | None = None  # None: computed like the kernel
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000
    thp: bool | None = None  # None: the layout's default (x86-64 on, i386 off)
    cma: bool = False
    evlog: int = 0  # capacity of the kmem event log (0 = off)
    #: per-CPU slice of the last-level cache in KiB (cacheinfo's per_cpu_data_slice_size: LLC size
    #: / CPUs sharing it); zone_pcp_update_cacheinfo() sets PCPF_FREE_HIGH_BATCH on a pcp whose
    #: batch pages fit three times in it.  Default: the captures' kind of machine (6.18 KVM guest,
    #: 2 vCPUs sharing a 480 MiB L3).  0: no cache information (the flag is never set).
    llc_slice_kb: int = 245760
    fail_descriptor_alloc: float = 0.0  # vmem: rate of injected descriptor-allocation failures
    #: vm.percpu_pagelist_high_fraction: 0 (the default) auto-tunes each pcp's high between
    #: high_min (low watermark / CPUs of the node) and high_max (managed / 8 / CPUs); N >= 8 fixes
    #: high_min = high_max = managed / N / CPUs of the node (zone_set_pageset_high_and_batch()).
    percpu_pagelist_high_fraction: int = 0


def int_sqrt(x: int) -> int:
    return math.isqrt(x)


def rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def gfp_zone_table(zone_types: tuple[ZoneType, ...]) -> np.ndarray:
    """gfp & GFP_ZONEMASK -> highest usable zone_idx (position in ``zone_types``), -1 = GFP_ZONE_BAD."""
    by_type = gfpmod.gfp_zone_table(zone_types)
    return np.array([zone_types.index(ZoneType(int(v))) if v >= 0 else -1 for v in by_type], np.int64)


def compute_min_free_kbytes(layout: MachineLayout, managed: list[int], thp: bool) -> int:
    """calculate_min_free_kbytes() and khugepaged's set_recommended_min_free_kbytes()."""
    zt = layout.zone_types
    normal_idx = zt.index(ZoneType.NORMAL)
    lowmem_pages = sum(m for z, m in zip(layout.zones, managed, strict=True) if zt.index(z.ztype) <= normal_idx)
    mfk = min(max(int_sqrt(lowmem_pages * (mmzone.PAGE_SIZE >> 10) * 16), 128), 262144)
    if thp:
        pb_pages = 1 << layout.pageblock_order
        nr_zones = sum(1 for z, m in zip(layout.zones, managed, strict=True)
                       if z.present and zt.index(z.ztype) <= normal_idx)
        recommended = pb_pages * nr_zones * 2
        recommended += pb_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
        recommended = min(recommended, lowmem_pages // 20)
        recommended <<= PAGE_SHIFT - 10
        mfk = max(mfk, recommended)
    return mfk


def compute_watermarks(layout: MachineLayout, managed: list[int], min_free_kbytes: int,
                       wsf: int) -> np.ndarray:
    """__setup_per_zone_wmarks(): int64[Z, 4] (min, low, high, promo)."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(m for z, m in zip(layout.zones, managed, strict=True)
                       if z.ztype not in (ZoneType.HIGHMEM, ZoneType.MOVABLE))
    wm = np.zeros((len(layout.zones), 4), np.int64)
    for i, (z, m) in enumerate(zip(layout.zones, managed, strict=True)):
        tmp = pages_min * m // lowmem_pages if lowmem_pages else 0
        if z.ztype in (ZoneType.HIGHMEM, ZoneType.MOVABLE):
            wmin = min(max(m // 1024, SWAP_CLUSTER_MAX), 128)
        else:
            wmin = tmp
        delta = max(tmp >> 2, m * wsf // 10000)
        wm[i] = (wmin, wmin + delta, wmin + 2 * delta, wmin + 3 * delta)
    return wm


def compute_lowmem_reserve(layout: MachineLayout, managed: list[int]) -> np.ndarray:
    """setup_per_zone_lowmem_reserve(): int64[Z, zones per node] (the zoneinfo 'protection')."""
    nzt = len(layout.zone_types)
    res = np.zeros((len(layout.zones), nzt), np.int64)
    for node in range(layout.nr_nodes):
        base = node * nzt
        for i in range(nzt - 1):
            ratio = LOWMEM_RESERVE_RATIO[layout.zone_types[i]]
            clear = ratio == 0 or managed[base + i] == 0
            acc = 0
            for j in range(i + 1, nzt):
                acc += managed[base + j]
                res[base + i, j] = 0 if clear else acc // ratio
    return res


def zone_batchsize(managed: int) -> int:
    batch = min(managed >> 10, (1 << 20) >> PAGE_SHIFT)
    batch //= 4
    if batch < 1:
        batch = 1
    return rounddown_pow_of_two(batch + batch // 2) - 1


def zone_highsize(managed: int, low_wmark: int, batch: int, cpus_of_node: int, nr_cpus: int,
                  high_fraction: int) -> int:
    total = low_wmark if not high_fraction else managed // high_fraction
    nr_split = cpus_of_node or nr_cpus
    high = total // nr_split
    return max(high, batch << 2)


def pcp_cacheinfo_flags(llc_slice_kb: int, batch: int) -> int:
    """zone_pcp_update_cacheinfo(): PCPF_FREE_HIGH_BATCH when the CPU's slice of the last-level
    cache holds more than 3 * batch pages (a free_high drain then waits for batch pages on the
    pcp: "pcp->batch pages can be preserved in PCP before draining PCP for consecutive
    high-order pages freeing without allocation")."""
    if llc_slice_kb < 0:
        raise ConfigError(f"llc_slice_kb must be >= 0, got {llc_slice_kb}")
    pages = (llc_slice_kb << 10) >> PAGE_SHIFT
    return core.PCPF_FREE_HIGH_BATCH if pages > 3 * batch else 0


def build_zonelists(layout: MachineLayout) -> np.ndarray:
    """build_zonelists(): for each node, its zones high to low, then other nodes by distance
    (the model's distance is |a - b|, ties to the higher node id next, as find_next_best_node)."""
    nodes = layout.nr_nodes
    nzt = len(layout.zone_types)
    Z = len(layout.zones)
    zl = np.full((nodes, Z + 1), -1, np.int64)
    for n in range(nodes):
        order = sorted(range(nodes), key=lambda m: (abs(m - n), m < n, m))
        out = []
        for m in order:
            for i in reversed(range(nzt)):
                z = m * nzt + i
                if layout.zones[z].managed > 0:
                    out.append(z)
        zl[n, : len(out)] = out
    return zl


def build_zone_state(layout: MachineLayout, managed: list[int], npages: int, cfg: AllocConfig) -> tuple[dict, int]:
    """All shared zone/pageblock/pcp arrays for ``layout`` (core.ZONE_FIELDS) and min_free_kbytes."""
    Z = len(layout.zones)
    nzt = len(layout.zone_types)
    ncpu = layout.nr_cpus
    thp = layout.thp if cfg.thp is None else cfg.thp
    pbo = layout.pageblock_order
    frac = cfg.percpu_pagelist_high_fraction
    if frac != 0 and frac < MIN_PERCPU_PAGELIST_HIGH_FRACTION:
        raise ConfigError(f"percpu_pagelist_high_fraction must be 0 or >= {MIN_PERCPU_PAGELIST_HIGH_FRACTION}"
                          f" (the sysctl's range), got {frac}")
    if pbo < PAGEBLOCK_ORDER or pbo > mmzone.MAX_PAGE_ORDER:
        raise ConfigError(f"pageblock_order {pbo} outside {PAGEBLOCK_ORDER}..{mmzone.MAX_PAGE_ORDER}")
    if thp and pbo != mmzone.HPAGE_PMD_ORDER:
        raise ConfigError(f"THP with pageblock_order {pbo} (4 MiB PMDs, non-PAE i386) is not modelled")
    mfk = cfg.min_free_kbytes if cfg.min_free_kbytes is not None else compute_min_free_kbytes(layout, managed, thp)
    wm = compute_watermarks(layout, managed, mfk, cfg.watermark_scale_factor)
    lowmem = compute_lowmem_reserve(layout, managed)
    npb = (npages + PAGEBLOCK_NR_PAGES - 1) >> PAGEBLOCK_ORDER
    pb = np.full(npb, core.MT_MOVABLE, np.uint8)
    pb_zone = np.full(npb, -1, np.int16)
    for i, z in enumerate(layout.zones):
        if z.spanned:
            first = z.start_pfn >> PAGEBLOCK_ORDER
            last = (z.end_pfn - 1) >> PAGEBLOCK_ORDER
            pb_zone[first:last + 1] = i
    pcp = np.zeros((ncpu, Z, core.NR_PCP_FIELDS), np.int64)
    cpus_per_node = [sum(1 for c in layout.cpu_node if c == n) for n in range(layout.nr_nodes)]
    for i, z in enumerate(layout.zones):
        if z.present == 0:
            pcp[:, i, core.PCP_BATCH] = 1  # boot pageset: high 0, batch 1
            continue
        batch = max(1, zone_batchsize(managed[i]))
        frac = cfg.percpu_pagelist_high_fraction
        hmin = zone_highsize(managed[i], int(wm[i, 1]), batch, cpus_per_node[z.node], ncpu, frac)
        hmax = hmin if frac else zone_highsize(managed[i], int(wm[i, 1]), batch, cpus_per_node[z.node],
                                               ncpu, MIN_PERCPU_PAGELIST_HIGH_FRACTION)
        pcp[:, i, core.PCP_BATCH] = batch
        pcp[:, i, core.PCP_HIGH_MIN] = hmin
        pcp[:, i, core.PCP_HIGH_MAX] = hmax
        pcp[:, i, core.PCP_FLAGS] = pcp_cacheinfo_flags(cfg.llc_slice_kb, batch)
    c = np.zeros(core.NR_CFG, np.int64)
    c[core.CFG_PCP_ENABLED] = int(cfg.pcp)
    c[core.CFG_NR_ONLINE_NODES] = layout.nr_nodes
    c[core.CFG_CMA] = int(cfg.cma)
    c[core.CFG_EVLOG] = int(cfg.evlog > 0)
    c[core.CFG_BOOST_FACTOR] = cfg.watermark_boost_factor
    c[core.CFG_MOVABLE_IDX] = layout.zone_types.index(ZoneType.MOVABLE) if ZoneType.MOVABLE in layout.zone_types \
        else nzt - 1
    movable_idx = c[core.CFG_MOVABLE_IDX]
    vm_total = sum(max(0, managed[i] - int(wm[i, 2])) for i, z in enumerate(layout.zones)
                   if layout.zone_types.index(z.ztype) <= movable_idx)
    c[core.CFG_MOBILITY_DISABLED] = int(vm_total < (1 << pbo) * MIGRATE_TYPES)
    c[core.CFG_PB_ORDER] = pbo
    c[core.CFG_PCP_THP] = int(thp)
    fields = dict(
        z_start=np.array([z.start_pfn for z in layout.zones], np.int64),
        z_end=np.array([z.end_pfn for z in layout.zones], np.int64),
        z_node=np.array([z.node for z in layout.zones], np.int64),
        z_idx=np.array([layout.zone_types.index(z.ztype) for z in layout.zones], np.int64),
        z_type=np.array([int(z.ztype) for z in layout.zones], np.int64),
        z_managed=np.array(managed, np.int64),
        z_direct=np.array([int(z.direct_mapped) for z in layout.zones], np.int64),
        z_free=np.zeros(Z, np.int64),
        z_free_highatomic=np.zeros(Z, np.int64),
        z_free_cma=np.zeros(Z, np.int64),
        z_reserved_highatomic=np.zeros(Z, np.int64),
        z_flags=np.zeros(Z, np.int64),
        nr_free=np.zeros((Z, NR_PAGE_ORDERS), np.int64),
        wmark=wm,
        boost=np.zeros(Z, np.int64),
        lowmem_reserve=lowmem,
        zonelist=build_zonelists(layout),
        gfp_zone_table=gfp_zone_table(layout.zone_types),
        pb=pb,
        pb_zone=pb_zone,
        pcp=pcp,
        cpu_node=np.array(layout.cpu_node, np.int64),
        cfg=c,
        stats=np.zeros(core.NR_STATS, np.int64),
        zstats=np.zeros((Z, core.NR_ZSTATS), np.int64),
        owner=hugemem.zeros(npages, np.uint8),
        evlog=np.zeros((max(cfg.evlog, 1), core.EVLOG_FIELDS), np.int64),
        evlog_n=np.zeros(1, np.int64),
    )
    assert tuple(fields) == core.ZONE_FIELDS
    return fields, mfk
