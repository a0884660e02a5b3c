"""Constants of the modelled memory-management subsystem (include/linux/mmzone.h).

Theory
------
Physical memory is a range of page frame numbers (pfns) of 4 KiB pages.  It is
split into nodes (``pg_data_t``), each split into zones by physical address and
addressability (``enum zone_type``).  Each zone owns a buddy allocator whose free
blocks have an order 0..MAX_PAGE_ORDER (a block of order k is 2^k pages, aligned to
2^k pfns) and a migratetype taken from its pageblock (2^pageblock_order pages).

This module only holds the numbers and names; the machine is in
:mod:`memdesc.mm.machine`, the allocators in :mod:`memdesc.mm.page_alloc`.

Internal numbering is fixed (so numba kernels can use plain integers); which zones
and migratetypes a given kernel *configures* (and therefore prints in /proc) is a
property of the machine (``Machine.zone_types``, ``Machine.migratetype_names``).
"""

from __future__ import annotations

from enum import IntEnum

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER
#: pageblock_order of x86-64 and i386 PAE (HUGETLB_PAGE_ORDER).  It is also the granularity of
#: the pageblock-flags array: a machine with a larger pageblock_order (non-PAE i386: 4 MiB huge
#: pages, pageblock_order 10; MachineLayout.pageblock_order) keeps its 2^(order - 9) entries of
#: a pageblock equal.
PAGEBLOCK_ORDER = 9
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
#: order of a PMD-mapped THP (x86-64 and i386 PAE): the order of the per-CPU THP lists
HPAGE_PMD_ORDER = 9
PAGE_ALLOC_COSTLY_ORDER = 3
#: bits of pageblock flags per pageblock (include/linux/pageblock-flags.h): 3 migratetype bits,
#: PB_compact_skip and, since 6.16, PB_migrate_isolate (isolation is a bit of its own, no longer
#: a migratetype value), rounded up to a power of two: roundup_pow_of_two(5) = 8
NR_PAGEBLOCK_BITS = 8
#: x86-64 / i386 sizes of the structures whose bytes we account
BYTES_PER_WORD = 8
LIST_HEAD_BYTES = 16


class ZoneType(IntEnum):
    """``enum zone_type`` with every zone a config can have (numbering is ours)."""

    DMA = 0
    DMA32 = 1
    NORMAL = 2
    HIGHMEM = 3
    MOVABLE = 4
    DEVICE = 5


#: names exactly as the kernel prints them (zone->name)
ZONE_NAMES = {
    ZoneType.DMA: "DMA",
    ZoneType.DMA32: "DMA32",
    ZoneType.NORMAL: "Normal",
    ZoneType.HIGHMEM: "HighMem",
    ZoneType.MOVABLE: "Movable",
    ZoneType.DEVICE: "Device",
}
ZONE_BY_NAME = {v: k for k, v in ZONE_NAMES.items()}

#: zones a kernel configures, in pgdat->node_zones order, per architecture
ZONES_X86_64 = (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL, ZoneType.MOVABLE, ZoneType.DEVICE)
ZONES_I386 = (ZoneType.DMA, ZoneType.NORMAL, ZoneType.HIGHMEM, ZoneType.MOVABLE)


class MigrateType(IntEnum):
    """``enum migratetype`` with CONFIG_CMA and CONFIG_MEMORY_ISOLATION (internal numbering)."""

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3  # == MIGRATE_PCPTYPES
    CMA = 4
    ISOLATE = 5


MIGRATE_PCPTYPES = 3
MIGRATE_TYPES = 6
#: names as /proc/pagetypeinfo prints them (migratetype_names[])
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
MIGRATETYPE_BY_NAME = {n: i for i, n in enumerate(MIGRATETYPE_NAMES)}

#: fallbacks[] of mm/page_alloc.c: the order in which other types' free lists are raided
FALLBACKS = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
}

#: watermark indices (enum zone_watermarks)
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = 0, 1, 2, 3
NR_WMARK = 4

#: per-cpu page lists: 3 types x orders 0..3, plus (CONFIG_TRANSPARENT_HUGEPAGE) two lists for
#: PMD-order (THP) pages, one movable and one not: NR_PCP_LISTS = 12 + 2.  A machine without THP
#: (MachineLayout.thp false) has the 12 only; the arrays keep room for 14.
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP = 2
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP


def order_to_pindex(migratetype: int, order: int) -> int:
    """mm/page_alloc.c order_to_pindex(): which pcp list holds (migratetype, order)."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        assert order == HPAGE_PMD_ORDER
        return NR_LOWORDER_PCP_LISTS + (1 if migratetype == MigrateType.MOVABLE else 0)
    return MIGRATE_PCPTYPES * order + migratetype


def pcp_allowed_order(order: int, thp: bool = True) -> bool:
    return order <= PAGE_ALLOC_COSTLY_ORDER or (thp and order == HPAGE_PMD_ORDER)


def nr_pcp_lists(thp: bool = True) -> int:
    """pcp lists per CPU and zone a kernel configures (NR_PCP_LISTS, or 12 without THP)."""
    return NR_PCP_LISTS if thp else NR_LOWORDER_PCP_LISTS


def pindex_to_order(pindex: int) -> int:
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return HPAGE_PMD_ORDER
    return pindex // MIGRATE_PCPTYPES
