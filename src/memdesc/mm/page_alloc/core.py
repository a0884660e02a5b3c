"""The page allocator's shared algorithms (mm/page_alloc.c, Linux 6.18), as numba kernels.

Theory
------
Per zone, free memory is a set of *buddy blocks*: a block of order k is 2^k pages,
aligned to 2^k pfns, whose first page is marked PageBuddy with its order.  Blocks sit
on ``free_area[k].free_list[mt]``, mt being the migratetype of the block's pageblock
(2^9 pages).  Invariants kept by every operation (and verified by ``check``):

* every managed page of a zone is in exactly one of: a free block, a per-CPU list,
  an allocation; reserved pages and holes are never free;
* free blocks are aligned, inside one zone, and *maximally merged*: a block's buddy
  (``pfn ^ (1 << k)``) is not a free block of the same order, unless merging is
  forbidden (different zone, or order >= pageblock_order across an isolate/CMA/
  highatomic boundary);
* a free block is on the list of its pageblock's migratetype (since 6.9); blocks of
  order > pageblock_order cover pageblocks of one type;
* ``free_area[k].nr_free`` and NR_FREE_PAGES equal a recount.

Allocation: ``__alloc_pages`` walks the zonelist from the preferred zone down to the
highest zone the gfp allows, checks watermarks (min/low/high/promo from
min_free_kbytes, lowmem_reserve), and takes pages from the per-CPU lists (orders 0-3
and the THP order) or from the buddy lists: ``__rmqueue_smallest`` + ``expand``, then
the fallback modes of 6.15+: CMA, *claim* a whole pageblock of another type
(``__rmqueue_claim``/``try_to_claim_block``), or *steal* one block leaving the
pageblock's type unchanged (``__rmqueue_steal``).  Frees go to the per-CPU list, which
is drained in batches (``free_pcppages_bulk``) into ``__free_one_page``, which merges
with free buddies upward.

What is *not* modelled: reclaim, compaction, the OOM killer.  When the kernel would
reclaim, the model drains the per-CPU lists and unreserves highatomic pageblocks, retries
once, and then fails the allocation (counted).  A watermark boost (set by a fallback
that claims a pageblock) wakes kswapd at the next allocation allowed to; it stays in the
watermarks until kswapd's run ends (``kswapd_balance()``, which periodic work calls once
a second of modelled time).

Design hooks: every operation on free lists and on per-page state goes through the
primitives of :mod:`memdesc.mm.page_alloc.dispatch`, so ``linux`` (lists threaded
through an 8-word struct page) and ``radix`` (XArray deques, 2-word struct page) share
this code exactly.  The ``vmem`` design shares the zone, watermark and pcp layers only.

State: the fields of :data:`ZONE_FIELDS` (numpy arrays) hold the zone, watermark, pageblock and pcp
state that all designs share, plus *simulation bookkeeping* (statistics, the
``owner`` byte per page that plays page_owner, an optional event log) which is reported
separately from any design's metadata.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm import gfp as G
from memdesc.mm.memblock import block_order
from memdesc.mm.mmzone import (
    HPAGE_PMD_ORDER,
    MAX_PAGE_ORDER,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    NR_LOWORDER_PCP_LISTS,
    NR_PAGE_ORDERS,
    NR_PCP_LISTS,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
)
from memdesc.mm.page_alloc.dispatch import (
    buddy_order,
    clear_buddy,
    is_buddy,
    list_add,
    list_del,
    list_first,
    list_last,
    list_next,
    mark_allocated,
    mark_freed,
    mark_reserved,
    pa_free_extent,
    pa_own_page,
    pa_split,
    pcp_add,
    pcp_free_bulk,
    pcp_pop,
    pool_first_free,
    pool_free,
    pool_move_freepages_block,
    pool_prepare,
    pool_retype_block,
    pool_rmqueue,
    pool_rmqueue_smallest,
    set_buddy,
)

# ------------------------------------------------------------------ constants
MT_UNMOVABLE, MT_MOVABLE, MT_RECLAIMABLE, MT_HIGHATOMIC, MT_CMA, MT_ISOLATE = 0, 1, 2, 3, 4, 5
PB_MIGRATETYPE_MASK = 0x7
PB_MIGRATE_SKIP = 0x8

# GFP bits and alloc_flags (include/linux/gfp_types.h, mm/internal.h): one source, memdesc.mm.gfp
GFP_DMA = G.__GFP_DMA
GFP_HIGHMEM = G.__GFP_HIGHMEM
GFP_DMA32 = G.__GFP_DMA32
GFP_MOVABLE = G.__GFP_MOVABLE
GFP_RECLAIMABLE = G.__GFP_RECLAIMABLE
GFP_HIGH = G.__GFP_HIGH
GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
GFP_KSWAPD_RECLAIM = G.__GFP_KSWAPD_RECLAIM
GFP_MEMALLOC = G.__GFP_MEMALLOC
GFP_COMP = G.__GFP_COMP
GFP_NOMEMALLOC = G.__GFP_NOMEMALLOC
GFP_ZONEMASK = G.GFP_ZONEMASK
GFP_MOVABLE_SHIFT = G.GFP_MOVABLE_SHIFT
ALLOC_WMARK_MIN = G.ALLOC_WMARK_MIN
ALLOC_WMARK_LOW = G.ALLOC_WMARK_LOW
ALLOC_WMARK_HIGH = G.ALLOC_WMARK_HIGH
ALLOC_WMARK_MASK = G.ALLOC_WMARK_MASK
ALLOC_NO_WATERMARKS = G.ALLOC_NO_WATERMARKS
ALLOC_OOM = G.ALLOC_OOM
ALLOC_NON_BLOCK = G.ALLOC_NON_BLOCK
ALLOC_MIN_RESERVE = G.ALLOC_MIN_RESERVE
ALLOC_CPUSET = G.ALLOC_CPUSET
ALLOC_CMA = G.ALLOC_CMA
ALLOC_NOFRAGMENT = G.ALLOC_NOFRAGMENT
ALLOC_HIGHATOMIC = G.ALLOC_HIGHATOMIC
ALLOC_KSWAPD = G.ALLOC_KSWAPD
ALLOC_RESERVES = G.ALLOC_RESERVES

# zone->flags
ZONE_BOOSTED_WATERMARK = 1
ZONE_RECLAIM_ACTIVE = 2
ZONE_BELOW_HIGH = 4
#: model flag: kswapd was woken for this zone's boost and has not finished (pgdat->kswapd_wait)
ZONE_KSWAPD_WOKEN = 8

# pcp fields (per cpu, per zone)
PCP_COUNT, PCP_HIGH, PCP_HIGH_MIN, PCP_HIGH_MAX, PCP_BATCH, PCP_FREE_COUNT, PCP_ALLOC_FACTOR, PCP_FLAGS = range(8)
NR_PCP_FIELDS = 8
PCPF_PREV_FREE_HIGH_ORDER = 1
PCPF_FREE_HIGH_BATCH = 2
CONFIG_PCP_BATCH_SCALE_MAX = 5

# cfg entries
(CFG_PCP_ENABLED, CFG_MOBILITY_DISABLED, CFG_NR_ONLINE_NODES, CFG_CMA, CFG_EVLOG, CFG_BOOST_FACTOR,
 CFG_MOVABLE_IDX, CFG_PB_ORDER, CFG_PCP_THP) = range(9)
NR_CFG = 10

# fpi flags
FPI_NONE = 0
FPI_TO_TAIL = 2

# statistics (simulation bookkeeping)
(ST_ALLOC, ST_ALLOC_PAGES, ST_ALLOC_FAIL, ST_FREE, ST_FREE_PAGES, ST_PCP_ALLOC, ST_PCP_REFILL,
 ST_PCP_FREE, ST_PCP_DRAINED, ST_BUDDY_ALLOC, ST_BUDDY_FREE, ST_MERGE, ST_SPLIT, ST_EXTFRAG,
 ST_EXTFRAG_FRAGMENTING, ST_CLAIM, ST_STEAL, ST_SLOWPATH, ST_NOFRAGMENT_RETRY, ST_HIGHATOMIC_RESERVE,
 ST_HIGHATOMIC_UNRESERVE, ST_WMARK_FAIL, ST_BOOST, ST_DRAIN_ALL, ST_TAKE,
 ST_FREE_PATH_ALLOCS, ST_FREE_STALLS, ST_ALLOC_FAILED_FOR_META) = range(28)
NR_STATS = 32
STAT_NAMES = (
    "alloc", "alloc_pages", "alloc_failed", "free", "free_pages", "pcp_alloc", "pcp_refill",
    "pcp_free", "pcp_drained_pages", "buddy_alloc", "buddy_free", "merges", "splits", "extfrag",
    "extfrag_fragmenting", "claim", "steal", "slowpath", "nofragment_retry", "highatomic_reserve",
    "highatomic_unreserve", "watermark_fail", "watermark_boost", "drain_all", "take",
    "free_path_allocations", "free_stalls", "alloc_failed_for_metadata",
)

# per-zone vm events
ZS_PGALLOC, ZS_PGFREE, ZS_NUMA_HIT, ZS_NUMA_MISS, ZS_NUMA_FOREIGN, ZS_NUMA_LOCAL, ZS_NUMA_OTHER = range(7)
NR_ZSTATS = 8

# event log (mirrors the kmem tracepoints; filled only when cfg[CFG_EVLOG] is set)
EV_ALLOC, EV_ALLOC_ZONE_LOCKED, EV_FREE, EV_FREE_BATCHED, EV_PCPU_DRAIN, EV_EXTFRAG = range(6)
EVLOG_FIELDS = 8  # event, cpu, pfn, order, migratetype, gfp/percpu_refill/fallback_order, fallback_mt, extra

# owner byte per page (page_owner-like simulation bookkeeping, not design metadata):
# 0 = no state of its own (inside a free block or an allocation), 0xFD = reserved or hole,
# 0xFE = on a per-cpu list, else an allocation head: 1 | order << 1 | migratetype << 5
OWNER_NONE = 0
OWNER_RESERVED = 0xFD
OWNER_PCP = 0xFE

# free_pages / take error codes
OK = 0
E_RANGE = -1
E_NOT_HEAD = -2
E_ORDER = -3
E_DOUBLE_FREE = -4
E_RESERVED = -5
E_BUSY = -6
#: an allocation path's metadata reservation failed (pool_prepare): the allocation fails at once,
#: counted in alloc_failed_for_metadata (allocation paths return a pfn, -1, or this)
E_META = -2


#: The fields every design state carries first: zone, pageblock and per-CPU state shared by
#: all designs (struct zone / per_cpu_pages).  A design's state struct (see
#: memdesc._struct) is ZONE_FIELDS + its own fields; shared kernels use only these names.
ZONE_FIELDS = ("z_start", "z_end", "z_node", "z_idx", "z_type", "z_managed", "z_direct", "z_free",
    "z_free_highatomic", "z_free_cma", "z_reserved_highatomic", "z_flags", "nr_free", "wmark",
    "boost", "lowmem_reserve", "zonelist", "gfp_zone_table", "pb", "pb_zone", "pcp", "cpu_node",
    "cfg", "stats", "zstats", "owner", "evlog", "evlog_n")

# z_start: int64[Z]
# z_end: int64[Z] (start + spanned)
# z_node: int64[Z]
# z_idx: int64[Z]  zone_idx(): position within the node
# z_type: int64[Z]  memdesc ZoneType
# z_managed: int64[Z]
# z_direct: int64[Z]  1 if directly mapped
# z_free: int64[Z]  NR_FREE_PAGES
# z_free_highatomic: int64[Z]
# z_free_cma: int64[Z]
# z_reserved_highatomic: int64[Z]
# z_flags: int64[Z]
# nr_free: int64[Z, NR_PAGE_ORDERS]  free_area[].nr_free
# wmark: int64[Z, 4]
# boost: int64[Z]
# lowmem_reserve: int64[Z, zones per node]
# zonelist: int64[nodes, Z + 1]  node's fallback zonelist, -1 terminated
# gfp_zone_table: int64[16]  gfp & GFP_ZONEMASK -> highest zone_idx, -1 = invalid
# pb: uint8[nr_pageblocks]  migratetype | PB_migrate_skip
# pb_zone: int16[nr_pageblocks]  zone of the pageblock (-1 none)
# pcp: int64[cpus, Z, NR_PCP_FIELDS]
# cpu_node: int64[cpus]
# cfg: int64[NR_CFG]
# stats: int64[NR_STATS]
# zstats: int64[Z, NR_ZSTATS]
# owner: uint8[npages]  page_owner-like bookkeeping: allocation heads
# evlog: int64[cap, EVLOG_FIELDS]
# evlog_n: int64[1]


# ------------------------------------------------------------------ small helpers


@njit(inline="always")
def nr_zones(st):
    return st.z_start.shape[0]


@njit(inline="always")
def nr_cpus(st):
    return st.cpu_node.shape[0]


@njit(inline="always")
def buddy_lid(st, z, order, mt):
    """List id of zone z's free_area[order].free_list[mt]."""
    return (z * NR_PAGE_ORDERS + order) * MIGRATE_TYPES + mt


@njit(inline="always")
def nr_buddy_lists(nzones):
    return nzones * NR_PAGE_ORDERS * MIGRATE_TYPES


@njit(inline="always")
def pcp_lid(st, cpu, z, pindex):
    """List id of cpu's per_cpu_pages.lists[pindex] of zone z."""
    nz = st.z_start.shape[0]
    return nr_buddy_lists(nz) + (cpu * nz + z) * NR_PCP_LISTS + pindex


@njit(inline="always")
def order_to_pindex(mt, order):
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (1 if mt == MT_MOVABLE else 0)
    return MIGRATE_PCPTYPES * order + mt


@njit(inline="always")
def pindex_to_order(pindex):
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return HPAGE_PMD_ORDER
    return pindex // MIGRATE_PCPTYPES


@njit(inline="always")
def pcp_allowed_order(st, order):
    """pcp_allowed_order(): orders 0..PAGE_ALLOC_COSTLY_ORDER, and the PMD (THP) order when the
    kernel has CONFIG_TRANSPARENT_HUGEPAGE (cfg[CFG_PCP_THP])."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or (st.cfg[CFG_PCP_THP] != 0 and order == HPAGE_PMD_ORDER)


@njit(inline="always")
def pageblock_order(st):
    """The machine's pageblock_order (9, or 10 on non-PAE i386)."""
    return st.cfg[CFG_PB_ORDER]


@njit(inline="always")
def pageblock_nr_pages(st):
    return np.int64(1) << st.cfg[CFG_PB_ORDER]


@njit(inline="always")
def get_pfnblock_migratetype(st, pfn):
    return np.int64(st.pb[pfn >> PAGEBLOCK_ORDER] & PB_MIGRATETYPE_MASK)


@njit(inline="always")
def set_pageblock_migratetype(st, pfn, mt):
    """Set the migratetype of pfn's pageblock: every entry of the flags array it covers
    (one per 2^PAGEBLOCK_ORDER pfns; 2^(pageblock_order - PAGEBLOCK_ORDER) of them)."""
    # (inlined functions must not rebind their parameters: numba's inliner can leak the
    # new value into the caller's variable)
    newmt = mt
    if st.cfg[CFG_MOBILITY_DISABLED] != 0 and mt < MIGRATE_PCPTYPES:
        newmt = MT_UNMOVABLE
    shift = st.cfg[CFG_PB_ORDER] - PAGEBLOCK_ORDER
    first = (pfn >> st.cfg[CFG_PB_ORDER]) << shift
    for i in range(first, first + (np.int64(1) << shift)):
        st.pb[i] = np.uint8((np.int64(st.pb[i]) & 0xF8) | newmt)


@njit(inline="always")
def page_zone(st, pfn):
    """page_zone(): the zone id of pfn (-1 outside every zone)."""
    return np.int64(st.pb_zone[pfn >> PAGEBLOCK_ORDER])


@njit(inline="always")
def zone_spans_pfn(st, z, pfn):
    return st.z_start[z] <= pfn < st.z_end[z]


@njit(inline="always")
def migratetype_is_mergeable(mt):
    return mt < MIGRATE_PCPTYPES


@njit(inline="always")
def owner_encode(order, mt):
    return np.uint8(1 | (order << 1) | (mt << 5))


@njit(inline="always")
def owner_order(v):
    return (np.int64(v) >> 1) & 0xF


@njit(inline="always")
def owner_mt(v):
    return (np.int64(v) >> 5) & 0x7


@njit
def trace_event(st, ev, cpu, pfn, order, mt, a, b, c):
    """Record a kmem tracepoint into the event log (when enabled)."""
    if st.cfg[CFG_EVLOG] == 0:
        return
    n = st.evlog_n[0]
    if n >= st.evlog.shape[0]:
        st.evlog_n[0] = n + 1  # count overruns; caller sizes the log
        return
    log = st.evlog
    log[n, 0] = ev
    log[n, 1] = cpu
    log[n, 2] = pfn
    log[n, 3] = order
    log[n, 4] = mt
    log[n, 5] = a
    log[n, 6] = b
    log[n, 7] = c
    st.evlog_n[0] = n + 1


# ------------------------------------------------------------------ free lists


@njit(inline="always")
def account_freepages(st, z, nr_pages, mt):
    if mt == MT_ISOLATE:
        return
    st.z_free[z] += nr_pages
    if mt == MT_CMA:
        st.z_free_cma[z] += nr_pages
    elif mt == MT_HIGHATOMIC:
        st.z_free_highatomic[z] += nr_pages


@njit(inline="always")
def __add_to_free_list(st, pfn, z, order, mt, tail):
    list_add(st, buddy_lid(st, z, order, mt), pfn, tail)
    st.nr_free[z, order] += 1


@njit(inline="always")
def move_to_free_list(st, pfn, z, order, old_mt, new_mt):
    list_del(st, buddy_lid(st, z, order, old_mt), pfn)
    list_add(st, buddy_lid(st, z, order, new_mt), pfn, True)
    account_freepages(st, z, -(1 << order), old_mt)
    account_freepages(st, z, 1 << order, new_mt)


@njit(inline="always")
def __del_page_from_free_list(st, pfn, z, order, mt):
    list_del(st, buddy_lid(st, z, order, mt), pfn)
    clear_buddy(st, pfn)
    st.nr_free[z, order] -= 1


@njit(inline="always")
def del_page_from_free_list(st, pfn, z, order, mt):
    __del_page_from_free_list(st, pfn, z, order, mt)
    account_freepages(st, z, -(1 << order), mt)


@njit(inline="always")
def get_page_from_free_area(st, z, order, mt):
    return list_first(st, buddy_lid(st, z, order, mt))


@njit(inline="always")
def free_area_empty(st, z, order, mt):
    """free_area_empty(): through the zone layer (pool_first_free), so that callers above the
    allocator (compaction's compact_finished, find_suitable_fallback) work on every design; a
    list buddy's pool_first_free is get_page_from_free_area, the same list head."""
    return pool_first_free(st, z, order, mt) < 0


@njit(inline="always")
def page_is_buddy(st, z, buddy, order):
    """page_is_buddy(): buddy exists, is PageBuddy of this order, in the same zone."""
    if buddy < 0 or buddy >= st.owner.shape[0]:
        return False
    if not is_buddy(st, buddy):
        return False
    if buddy_order(st, buddy) != order:
        return False
    return page_zone(st, buddy) == z


@njit
def buddy_merge_likely(st, z, pfn, buddy_pfn, order):
    if order >= MAX_PAGE_ORDER - 1:
        return False
    higher_page_pfn = buddy_pfn & pfn
    higher_buddy = higher_page_pfn ^ (1 << (order + 1))
    return page_is_buddy(st, z, higher_buddy, order + 1)


@njit
def __free_one_page(st, pfn, z, order, mt, fpi):
    """Free a block into the buddy lists, merging with free buddies (mm/page_alloc.c)."""
    buddy_pfn = 0
    account_freepages(st, z, 1 << order, mt)
    while order < MAX_PAGE_ORDER:
        buddy_mt = mt
        buddy_pfn = pfn ^ (1 << order)
        if not page_is_buddy(st, z, buddy_pfn, order):
            break
        if order >= pageblock_order(st):
            buddy_mt = get_pfnblock_migratetype(st, buddy_pfn)
            if mt != buddy_mt and (not migratetype_is_mergeable(mt) or not migratetype_is_mergeable(buddy_mt)):
                break
        __del_page_from_free_list(st, buddy_pfn, z, order, buddy_mt)
        if buddy_mt != mt:
            set_pageblock_migratetype(st, buddy_pfn, mt)
        st.stats[ST_MERGE] += 1
        pfn = buddy_pfn & pfn
        order += 1
    set_buddy(st, pfn, order)
    if fpi & FPI_TO_TAIL:
        to_tail = True
    else:
        to_tail = buddy_merge_likely(st, z, pfn, buddy_pfn, order)
    __add_to_free_list(st, pfn, z, order, mt, to_tail)


@njit
def split_large_buddy(st, z, pfn, order, fpi):
    """Free a block pageblock by pageblock, each with its own migratetype."""
    end = pfn + (1 << order)
    if order > pageblock_order(st):
        order = pageblock_order(st)
    while True:
        mt = get_pfnblock_migratetype(st, pfn)
        __free_one_page(st, pfn, z, order, mt, fpi)
        pfn += 1 << order
        if pfn == end:
            break


@njit
def free_one_page(st, z, pfn, order, fpi):
    st.stats[ST_BUDDY_FREE] += 1
    pool_free(st, z, pfn, order, fpi)


@njit
def expand(st, z, pfn, low, high, mt):
    """Split a block of order high down to low, putting the upper halves on the free lists."""
    size = 1 << high
    nr_added = 0
    o = high
    while o > low:
        o -= 1
        size >>= 1
        __add_to_free_list(st, pfn + size, z, o, mt, False)
        set_buddy(st, pfn + size, o)
        nr_added += size
        st.stats[ST_SPLIT] += 1
    return nr_added


@njit
def page_del_and_expand(st, z, pfn, low, high, mt):
    nr_pages = 1 << high
    __del_page_from_free_list(st, pfn, z, high, mt)
    nr_pages -= expand(st, z, pfn, low, high, mt)
    account_freepages(st, z, -nr_pages, mt)


@njit
def find_rmqueue_smallest(st, z, order, mt):
    """__rmqueue_smallest()'s choice, read-only: (pfn, current_order) of the block it takes
    (the head of the smallest non-empty free list of type mt from order up), or (-1, -1)."""
    for current_order in range(order, NR_PAGE_ORDERS):
        pfn = get_page_from_free_area(st, z, current_order, mt)
        if pfn >= 0:
            return pfn, np.int64(current_order)
    return np.int64(-1), np.int64(-1)


@njit
def __rmqueue_smallest(st, z, order, mt, cpu):
    pfn, current_order = find_rmqueue_smallest(st, z, order, mt)
    if pfn < 0:
        return -1
    page_del_and_expand(st, z, pfn, order, current_order, mt)
    trace_event(st, EV_ALLOC_ZONE_LOCKED, cpu, pfn, order, mt,
                1 if (pcp_allowed_order(st, order) and mt < MIGRATE_PCPTYPES) else 0, 0, 0)
    return pfn


@njit(inline="always")
def fallback_mt(mt, i):
    # fallbacks[MIGRATE_TYPES][MIGRATE_PCPTYPES - 1]
    if mt == MT_UNMOVABLE:
        return MT_RECLAIMABLE if i == 0 else MT_MOVABLE
    if mt == MT_MOVABLE:
        return MT_RECLAIMABLE if i == 0 else MT_UNMOVABLE
    return MT_UNMOVABLE if i == 0 else MT_MOVABLE


@njit
def should_try_claim_block(st, order, start_mt):
    if order >= pageblock_order(st):
        return True
    if order >= pageblock_order(st) // 2 or start_mt == MT_RECLAIMABLE or start_mt == MT_UNMOVABLE \
            or st.cfg[CFG_MOBILITY_DISABLED] != 0:
        return True
    return False


@njit
def find_suitable_fallback(st, z, order, mt, claimable):
    if mt >= MIGRATE_PCPTYPES:
        return -1
    if claimable and not should_try_claim_block(st, order, mt):
        return -2
    if st.nr_free[z, order] == 0:
        return -1
    for i in range(MIGRATE_PCPTYPES - 1):
        fmt = fallback_mt(mt, i)
        if not free_area_empty(st, z, order, fmt):
            return fmt
    return -1


@njit
def __move_freepages_block(st, z, start_pfn, old_mt, new_mt):
    end_pfn = start_pfn + pageblock_nr_pages(st)
    pfn = start_pfn
    pages_moved = 0
    while pfn < end_pfn:
        if not is_buddy(st, pfn):
            pfn += 1
            continue
        order = buddy_order(st, pfn)
        move_to_free_list(st, pfn, z, order, old_mt, new_mt)
        pfn += 1 << order
        pages_moved += 1 << order
    set_pageblock_migratetype(st, start_pfn, new_mt)
    return pages_moved


@njit
def prep_move_freepages_block(st, z, pfn):
    """(pageblock start or -1, free pages, movable pages) of pfn's pageblock."""
    start = pfn & ~(pageblock_nr_pages(st) - 1)
    end = start + pageblock_nr_pages(st)
    if not zone_spans_pfn(st, z, start) or not zone_spans_pfn(st, z, end - 1):
        return -1, 0, 0
    free_pages = 0
    movable_pages = 0
    p = start
    while p < end:
        if is_buddy(st, p):
            nr = 1 << buddy_order(st, p)
            free_pages += nr
            p += nr
            continue
        v = st.owner[p]
        if v != OWNER_NONE and v != OWNER_RESERVED and v != OWNER_PCP:
            # PageLRU() || __PageMovable(): the model counts pages of movable allocations
            nr = 1 << owner_order(v)
            if owner_mt(v) == MT_MOVABLE:
                movable_pages += min(nr, end - p)
            p += nr
            continue
        p += 1
    return start, free_pages, movable_pages


@njit
def move_freepages_block(st, z, pfn, old_mt, new_mt):
    start = pfn & ~(pageblock_nr_pages(st) - 1)
    if not zone_spans_pfn(st, z, start) or not zone_spans_pfn(st, z, start + pageblock_nr_pages(st) - 1):
        return -1
    return __move_freepages_block(st, z, start, old_mt, new_mt)


@njit
def change_pageblock_range(st, pfn, start_order, mt):
    nr = 1 << (start_order - pageblock_order(st))
    for i in range(nr):
        set_pageblock_migratetype(st, pfn + i * pageblock_nr_pages(st), mt)


@njit
def boost_watermark(st, z):
    factor = st.cfg[CFG_BOOST_FACTOR]
    if factor == 0:
        return False
    if pageblock_nr_pages(st) * 4 > st.z_managed[z]:
        return False
    max_boost = st.wmark[z, 2] * factor // 10000
    if max_boost == 0:
        return False
    max_boost = max(pageblock_nr_pages(st), max_boost)
    st.boost[z] = min(st.boost[z] + pageblock_nr_pages(st), max_boost)
    st.stats[ST_BOOST] += 1
    return True


#: claim_block_start(): a block of pageblock_order or more is claimed whole
CLAIM_WHOLE = -2


@njit
def claim_block_start(st, z, pfn, current_order, start_type, block_type):
    """try_to_claim_block()'s decision, read-only: CLAIM_WHOLE (current_order >=
    pageblock_order), the start pfn of the pageblock it claims (half of it free or of a
    compatible type), or -1 (the block is not claimed)."""
    if current_order >= pageblock_order(st):
        return np.int64(CLAIM_WHOLE)
    start_pfn, free_pages, movable_pages = prep_move_freepages_block(st, z, pfn)
    if start_pfn < 0:
        return np.int64(-1)
    if claim_block_ok(st, free_pages, movable_pages, start_type, block_type):
        return np.int64(start_pfn)
    return np.int64(-1)


@njit
def boost_on_fallback(st, z, alloc_flags):
    """try_to_claim_block()'s watermark boost: a fallback boosts the zone's watermarks; with
    ALLOC_KSWAPD the zone is flagged, and kswapd takes the boost back when its run ends
    (wakeup_kswapd, kswapd_balance)."""
    if boost_watermark(st, z) and (alloc_flags & ALLOC_KSWAPD):
        st.z_flags[z] |= ZONE_BOOSTED_WATERMARK


@njit
def claim_block_ok(st, free_pages, movable_pages, start_type, block_type):
    """try_to_claim_block()'s test: a pageblock of block_type may be claimed for start_type
    when its free and compatible ("alike") pages are at least half of it."""
    if start_type == MT_MOVABLE:
        alike_pages = movable_pages
    elif block_type == MT_MOVABLE:
        alike_pages = pageblock_nr_pages(st) - (free_pages + movable_pages)
    else:
        alike_pages = 0
    return free_pages + alike_pages >= (pageblock_nr_pages(st) >> 1) or st.cfg[CFG_MOBILITY_DISABLED] != 0


@njit
def try_to_claim_block(st, z, pfn, current_order, order, start_type, block_type, alloc_flags, cpu):
    if current_order >= pageblock_order(st):
        del_page_from_free_list(st, pfn, z, current_order, block_type)
        change_pageblock_range(st, pfn, current_order, start_type)
        nr_added = expand(st, z, pfn, order, current_order, start_type)
        account_freepages(st, z, nr_added, start_type)
        return pfn
    boost_on_fallback(st, z, alloc_flags)
    start_pfn = claim_block_start(st, z, pfn, current_order, start_type, block_type)
    if start_pfn < 0:
        return -1
    __move_freepages_block(st, z, start_pfn, block_type, start_type)
    return __rmqueue_smallest(st, z, order, start_type, cpu)


@njit
def __rmqueue_claim(st, z, order, start_mt, alloc_flags, cpu):
    min_order = order
    if order < pageblock_order(st) and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = pageblock_order(st)
    current_order = MAX_PAGE_ORDER
    while current_order >= min_order:
        fmt = find_suitable_fallback(st, z, current_order, start_mt, True)
        if fmt == -1:
            current_order -= 1
            continue
        if fmt == -2:
            break
        pfn = get_page_from_free_area(st, z, current_order, fmt)
        pfn = try_to_claim_block(st, z, pfn, current_order, order, start_mt, fmt, alloc_flags, cpu)
        if pfn >= 0:
            st.stats[ST_CLAIM] += 1
            extfrag_event(st, pfn, order, current_order, start_mt, fmt, cpu)
            return pfn
        current_order -= 1
    return -1


@njit
def find_rmqueue_steal(st, z, order, start_mt):
    """__rmqueue_steal()'s choice, read-only: (pfn, current_order, fallback_mt) of the
    block it would take, or (-1, -1, -1)."""
    for current_order in range(order, NR_PAGE_ORDERS):
        fmt = find_suitable_fallback(st, z, current_order, start_mt, False)
        if fmt < 0:
            continue
        return get_page_from_free_area(st, z, current_order, fmt), np.int64(current_order), np.int64(fmt)
    return np.int64(-1), np.int64(-1), np.int64(-1)


@njit
def __rmqueue_steal(st, z, order, start_mt, cpu):
    pfn, current_order, fmt = find_rmqueue_steal(st, z, order, start_mt)
    if pfn < 0:
        return -1
    page_del_and_expand(st, z, pfn, order, current_order, fmt)
    st.stats[ST_STEAL] += 1
    extfrag_event(st, pfn, order, current_order, start_mt, fmt, cpu)
    return pfn


@njit
def extfrag_event(st, pfn, order, fallback_order, alloc_mt, fallback_mt_, cpu):
    st.stats[ST_EXTFRAG] += 1
    if fallback_order < pageblock_order(st):
        st.stats[ST_EXTFRAG_FRAGMENTING] += 1
    change_ownership = 1 if get_pfnblock_migratetype(st, pfn) == alloc_mt else 0
    trace_event(st, EV_EXTFRAG, cpu, pfn, order, alloc_mt, fallback_order, fallback_mt_, change_ownership)


# rmqueue modes (6.15+)
RMQUEUE_NORMAL, RMQUEUE_CMA, RMQUEUE_CLAIM, RMQUEUE_STEAL = 0, 1, 2, 3


@njit
def __rmqueue(st, z, order, mt, alloc_flags, mode, cpu):
    """Take a block from the buddy lists.  ``mode`` is the fallback level where the previous
    call of a bulk refill found pages (enum rmqueue_mode, 6.15+); returns (pfn, mode)."""
    if st.cfg[CFG_CMA] != 0 and (alloc_flags & ALLOC_CMA) and st.z_free_cma[z] > st.z_free[z] // 2:
        pfn = __rmqueue_smallest(st, z, order, MT_CMA, cpu)
        if pfn >= 0:
            return pfn, mode
    m = mode
    if m == RMQUEUE_NORMAL:
        pfn = __rmqueue_smallest(st, z, order, mt, cpu)
        if pfn >= 0:
            return pfn, mode
        m = RMQUEUE_CMA
    if m == RMQUEUE_CMA:
        if st.cfg[CFG_CMA] != 0 and (alloc_flags & ALLOC_CMA):
            pfn = __rmqueue_smallest(st, z, order, MT_CMA, cpu)
            if pfn >= 0:
                return pfn, RMQUEUE_CMA
        m = RMQUEUE_CLAIM
    if m == RMQUEUE_CLAIM:
        pfn = __rmqueue_claim(st, z, order, mt, alloc_flags, cpu)
        if pfn >= 0:
            return pfn, RMQUEUE_NORMAL
        m = RMQUEUE_STEAL
    if m == RMQUEUE_STEAL:
        if not (alloc_flags & ALLOC_NOFRAGMENT):
            pfn = __rmqueue_steal(st, z, order, mt, cpu)
            if pfn >= 0:
                return pfn, RMQUEUE_STEAL
    return -1, mode


# ------------------------------------------------------------------ read-only choices ("peek")
# What __rmqueue() and rmqueue_buddy() would take from the current state, without taking it:
# built from the same helpers as the real paths (find_rmqueue_smallest, find_suitable_fallback,
# claim_block_start, find_rmqueue_steal), so a shadow replay asks the model's own code.  They
# belong to the buddy layer's zone defaults (BUDDY_DEFAULTS: pool_rmqueue = __rmqueue): they are
# a design's decisions only when it runs them (memdesc.sim.shadow.runs_core_buddy checks that).

#: kinds of rmqueue_peek() answers: where the block would come from
PEEK_NONE, PEEK_NORMAL, PEEK_CMA, PEEK_CLAIM, PEEK_STEAL, PEEK_HIGHATOMIC = range(6)


@njit
def claimed_block_pick(st, z, start_pfn, order, start_type):
    """The block __rmqueue_smallest(order, start_type) returns right after try_to_claim_block()
    moved the pageblock at start_pfn to start_type: __move_freepages_block() appended the
    pageblock's free blocks, in pfn order, to the tails of the start_type lists, so for the
    smallest order >= order with a block, the head of that list if it had one before, else the
    lowest-pfn block of that order in the pageblock.  (After a failed normal mode the lists
    were empty, so it is the pageblock's own block.)  Returns (pfn, order) or (-1, -1)."""
    end = start_pfn + pageblock_nr_pages(st)
    for k in range(order, NR_PAGE_ORDERS):
        head = get_page_from_free_area(st, z, k, start_type)
        if head >= 0:
            return np.int64(head), np.int64(k)
        p = start_pfn
        while p < end:
            if is_buddy(st, p):
                kp = np.int64(buddy_order(st, p))
                if kp == k:
                    return np.int64(p), np.int64(k)
                p += np.int64(1) << kp
            else:
                p += 1
    return np.int64(-1), np.int64(-1)


@njit
def rmqueue_claim_peek(st, z, order, start_mt, alloc_flags):
    """__rmqueue_claim()'s outcome, read-only (its boost_watermark() side effect left out):
    (pfn returned, fallback order, fallback migratetype), or (-1, -1, -1)."""
    min_order = order
    if order < pageblock_order(st) and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = pageblock_order(st)
    current_order = MAX_PAGE_ORDER
    while current_order >= min_order:
        fmt = find_suitable_fallback(st, z, current_order, start_mt, True)
        if fmt == -1:
            current_order -= 1
            continue
        if fmt == -2:
            break
        pfn = get_page_from_free_area(st, z, current_order, fmt)
        start = claim_block_start(st, z, pfn, current_order, start_mt, fmt)
        if start == CLAIM_WHOLE:
            return np.int64(pfn), np.int64(current_order), np.int64(fmt)
        if start >= 0:
            q, _k = claimed_block_pick(st, z, start, order, start_mt)
            return q, np.int64(current_order), np.int64(fmt)
        current_order -= 1
    return np.int64(-1), np.int64(-1), np.int64(-1)


@njit
def rmqueue_peek(st, z, order, mt, alloc_flags, mode):
    """__rmqueue()'s choice, read-only: (pfn, kind, current order, migratetype of the list it
    comes from); kind is one of the PEEK_* values (PEEK_NONE: it would fail)."""
    if st.cfg[CFG_CMA] != 0 and (alloc_flags & ALLOC_CMA) and st.z_free_cma[z] > st.z_free[z] // 2:
        pfn, co = find_rmqueue_smallest(st, z, order, MT_CMA)
        if pfn >= 0:
            return pfn, np.int64(PEEK_CMA), co, np.int64(MT_CMA)
    m = mode
    if m == RMQUEUE_NORMAL:
        pfn, co = find_rmqueue_smallest(st, z, order, mt)
        if pfn >= 0:
            return pfn, np.int64(PEEK_NORMAL), co, np.int64(mt)
        m = RMQUEUE_CMA
    if m == RMQUEUE_CMA:
        if st.cfg[CFG_CMA] != 0 and (alloc_flags & ALLOC_CMA):
            pfn, co = find_rmqueue_smallest(st, z, order, MT_CMA)
            if pfn >= 0:
                return pfn, np.int64(PEEK_CMA), co, np.int64(MT_CMA)
        m = RMQUEUE_CLAIM
    if m == RMQUEUE_CLAIM:
        pfn, co, fmt = rmqueue_claim_peek(st, z, order, mt, alloc_flags)
        if pfn >= 0:
            return pfn, np.int64(PEEK_CLAIM), co, fmt
        m = RMQUEUE_STEAL
    if m == RMQUEUE_STEAL and not (alloc_flags & ALLOC_NOFRAGMENT):
        pfn, co, fmt = find_rmqueue_steal(st, z, order, mt)
        if pfn >= 0:
            return pfn, np.int64(PEEK_STEAL), co, fmt
    return np.int64(-1), np.int64(PEEK_NONE), np.int64(-1), np.int64(-1)


@njit
def rmqueue_buddy_peek(st, z, order, alloc_flags, mt):
    """rmqueue_buddy()'s choice, read-only (see rmqueue_peek())."""
    if alloc_flags & ALLOC_HIGHATOMIC:
        pfn, co = find_rmqueue_smallest(st, z, order, MT_HIGHATOMIC)
        if pfn >= 0:
            return pfn, np.int64(PEEK_HIGHATOMIC), co, np.int64(MT_HIGHATOMIC)
    pfn, kind, co, fmt = rmqueue_peek(st, z, order, mt, alloc_flags, RMQUEUE_NORMAL)
    if pfn < 0 and (alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK)):
        pfn, co = find_rmqueue_smallest(st, z, order, MT_HIGHATOMIC)
        if pfn >= 0:
            return pfn, np.int64(PEEK_HIGHATOMIC), co, np.int64(MT_HIGHATOMIC)
    return pfn, kind, co, fmt


# ------------------------------------------------------------------ per-cpu lists


@njit
def free_pcppages_bulk(st, z, count, cpu, pindex):
    """free_pcppages_bulk(): up to count pages from the tails of cpu's pcp lists of zone z,
    round robin from list pindex, back to the pool."""
    pcp = st.pcp[cpu, z]
    count = min(pcp[PCP_COUNT], count)
    pindex = pindex - 1
    while count > 0:
        while True:
            pindex += 1
            if pindex > NR_PCP_LISTS - 1:
                pindex = 0
            pfn = pcp_pop(st, cpu, z, pindex, True)
            if pfn >= 0:
                break
        order = pindex_to_order(pindex)
        nr_pages = 1 << order
        while True:
            mt = get_pfnblock_migratetype(st, pfn)
            st.owner[pfn] = OWNER_NONE
            count -= nr_pages
            pcp[PCP_COUNT] -= nr_pages
            st.stats[ST_PCP_DRAINED] += nr_pages
            pool_free(st, z, pfn, order, FPI_NONE)
            trace_event(st, EV_PCPU_DRAIN, cpu, pfn, order, mt, 0, 0, 0)
            if count <= 0:
                break
            pfn = pcp_pop(st, cpu, z, pindex, True)
            if pfn < 0:
                break


@njit
def drain_pages_zone(st, cpu, z):
    pcp = st.pcp[cpu, z]
    while pcp[PCP_COUNT] > 0:
        to_drain = min(pcp[PCP_COUNT], pcp[PCP_BATCH] << CONFIG_PCP_BATCH_SCALE_MAX)
        free_pcppages_bulk(st, z, to_drain, cpu, 0)


@njit
def drain_all_pages(st):
    st.stats[ST_DRAIN_ALL] += 1
    for cpu in range(nr_cpus(st)):
        for z in range(nr_zones(st)):
            if st.pcp[cpu, z, PCP_COUNT] > 0:
                drain_pages_zone(st, cpu, z)


@njit
def nr_pcp_free(pcp, batch, high, free_high):
    if free_high:
        return min(pcp[PCP_COUNT], batch << CONFIG_PCP_BATCH_SCALE_MAX)
    if high < batch:
        return 1
    min_nr_free = batch
    max_nr_free = high - batch
    return min(max(pcp[PCP_FREE_COUNT], min_nr_free), max_nr_free)


@njit
def nr_pcp_high(st, pcp, z, batch, free_high):
    high_min = pcp[PCP_HIGH_MIN]
    high_max = pcp[PCP_HIGH_MAX]
    high = min(max(pcp[PCP_HIGH], high_min), high_max)
    pcp[PCP_HIGH] = high
    if high == 0:
        return 0
    if free_high:
        pcp[PCP_HIGH] = max(high - (batch << CONFIG_PCP_BATCH_SCALE_MAX), high_min)
        return 0
    if st.z_flags[z] & ZONE_RECLAIM_ACTIVE:
        free_count = max(pcp[PCP_FREE_COUNT], batch)
        pcp[PCP_HIGH] = max(high - free_count, high_min)
        return min(batch << 2, pcp[PCP_HIGH])
    if high_min == high_max:
        return high
    if st.z_flags[z] & ZONE_BELOW_HIGH:
        free_count = max(pcp[PCP_FREE_COUNT], batch)
        pcp[PCP_HIGH] = max(high - free_count, high_min)
        high = max(pcp[PCP_COUNT], high_min)
    elif pcp[PCP_COUNT] >= high:
        need_high = pcp[PCP_FREE_COUNT] + batch
        if pcp[PCP_HIGH] < need_high:
            pcp[PCP_HIGH] = min(max(need_high, high_min), high_max)
    return high


@njit
def pcp_free_commit_count(st, pcp, z, order):
    """The per_cpu_pages bookkeeping of free_frozen_page_commit() for a block of ``order``
    whose pages ``pcp[PCP_COUNT]`` already includes: alloc_factor, the free_high test,
    PCPF_PREV_FREE_HIGH_ORDER, free_count and nr_pcp_high().  Returns how many pages the
    commit drains (nr_pcp_free(), 0 if count stays below high).  Works on any pcp row, so a
    shadow replay can run it on copies."""
    pcp[PCP_ALLOC_FACTOR] >>= 1
    batch = pcp[PCP_BATCH]
    free_high = False
    if order != 0 and order <= PAGE_ALLOC_COSTLY_ORDER:
        free_high = (pcp[PCP_FREE_COUNT] >= (batch + pcp[PCP_HIGH_MIN] // 2)
                     and (pcp[PCP_FLAGS] & PCPF_PREV_FREE_HIGH_ORDER) != 0
                     and ((pcp[PCP_FLAGS] & PCPF_FREE_HIGH_BATCH) == 0 or pcp[PCP_COUNT] >= batch))
        pcp[PCP_FLAGS] |= PCPF_PREV_FREE_HIGH_ORDER
    elif pcp[PCP_FLAGS] & PCPF_PREV_FREE_HIGH_ORDER:
        pcp[PCP_FLAGS] &= ~PCPF_PREV_FREE_HIGH_ORDER
    if pcp[PCP_FREE_COUNT] < (batch << CONFIG_PCP_BATCH_SCALE_MAX):
        pcp[PCP_FREE_COUNT] += 1 << order
    high = nr_pcp_high(st, pcp, z, batch, free_high)
    if pcp[PCP_COUNT] >= high:
        return nr_pcp_free(pcp, batch, high, free_high)
    return -1


@njit
def free_unref_page_commit(st, z, cpu, pfn, mt, order):
    pcp = st.pcp[cpu, z]
    pindex = order_to_pindex(mt, order)
    pcp_add(st, cpu, z, pindex, pfn, False)
    st.owner[pfn] = OWNER_PCP
    pcp[PCP_COUNT] += 1 << order
    st.stats[ST_PCP_FREE] += 1
    to_free = pcp_free_commit_count(st, pcp, z, order)
    if to_free >= 0:
        free_pcppages_bulk(st, z, to_free, cpu, pindex)
        if (st.z_flags[z] & ZONE_BELOW_HIGH) and zone_watermark_ok(st, z, 0, high_wmark_pages(st, z),
                                                                    st.cfg[CFG_MOVABLE_IDX], 0):
            st.z_flags[z] &= ~ZONE_BELOW_HIGH


@njit
def nr_pcp_alloc(st, pcp, z, order):
    base_batch = pcp[PCP_BATCH]
    high_min = pcp[PCP_HIGH_MIN]
    high_max = pcp[PCP_HIGH_MAX]
    high = min(max(pcp[PCP_HIGH], high_min), high_max)
    pcp[PCP_HIGH] = high
    if high < base_batch:
        return 1
    if order:
        batch = base_batch
    else:
        batch = base_batch << pcp[PCP_ALLOC_FACTOR]
    if high_min != high_max and not (st.z_flags[z] & ZONE_BELOW_HIGH):
        high = min(high + batch, high_max)
        pcp[PCP_HIGH] = high
    if not order:
        max_nr_alloc = max(high - pcp[PCP_COUNT] - base_batch, base_batch)
        if batch <= max_nr_alloc and pcp[PCP_ALLOC_FACTOR] < CONFIG_PCP_BATCH_SCALE_MAX:
            pcp[PCP_ALLOC_FACTOR] += 1
        batch = min(batch, max_nr_alloc)
    if batch > 1:
        batch = max(batch >> order, 2)
    return batch


@njit
def rmqueue_bulk(st, z, order, count, cpu, pindex, mt, alloc_flags):
    """rmqueue_bulk(): up to count blocks from the pool onto the tail of cpu's pcp list pindex.

    Returns (blocks taken, why it stopped: -1 the pool had none, or E_META)."""
    mode = RMQUEUE_NORMAL
    i = 0
    rc = np.int64(-1)
    while i < count:
        rc = pool_prepare(st, z, order)
        if rc < 0:
            break
        pfn, mode = pool_rmqueue(st, z, order, mt, alloc_flags, mode, cpu)
        if pfn < 0:
            rc = pfn
            break
        pcp_add(st, cpu, z, pindex, pfn, True)
        st.owner[pfn] = OWNER_PCP
        i += 1
    return i, rc


@njit
def rmqueue_pcplist(st, z, order, mt, alloc_flags, cpu):
    """rmqueue_pcplist(): the head of the CPU's pcp list, refilled in a batch when empty;
    pfn, -1, or E_META (the refill's reservation failed)."""
    pcp = st.pcp[cpu, z]
    pcp[PCP_FREE_COUNT] >>= 1
    pindex = order_to_pindex(mt, order)
    pfn = pcp_pop(st, cpu, z, pindex, False)
    if pfn < 0:
        batch = nr_pcp_alloc(st, pcp, z, order)
        alloced, rc = rmqueue_bulk(st, z, order, batch, cpu, pindex, mt, alloc_flags)
        st.stats[ST_PCP_REFILL] += 1
        pcp[PCP_COUNT] += alloced << order
        pfn = pcp_pop(st, cpu, z, pindex, False)
        if pfn < 0:
            return rc
    st.owner[pfn] = OWNER_NONE
    pcp[PCP_COUNT] -= 1 << order
    st.stats[ST_PCP_ALLOC] += 1
    return pfn


@njit
def rmqueue_buddy(st, z, order, alloc_flags, mt, cpu):
    """rmqueue_buddy(): one block from the pool, the highatomic reserve first when allowed and
    last for OOM / non-blocking requests; pfn, -1, or E_META."""
    rc = pool_prepare(st, z, order)
    if rc < 0:
        return rc
    pfn = -1
    if alloc_flags & ALLOC_HIGHATOMIC:
        pfn = pool_rmqueue_smallest(st, z, order, MT_HIGHATOMIC, cpu)
    if pfn < 0:
        pfn, _mode = pool_rmqueue(st, z, order, mt, alloc_flags, RMQUEUE_NORMAL, cpu)
        if pfn < 0 and (alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK)):
            pfn = pool_rmqueue_smallest(st, z, order, MT_HIGHATOMIC, cpu)
    if pfn >= 0:
        st.stats[ST_BUDDY_ALLOC] += 1
    return pfn


@njit
def rmqueue(st, z, order, alloc_flags, mt, cpu):
    pfn = -1
    if st.cfg[CFG_PCP_ENABLED] != 0 and pcp_allowed_order(st, order):
        pfn = rmqueue_pcplist(st, z, order, mt, alloc_flags, cpu)
        if pfn == E_META:
            return pfn
    if pfn < 0:
        pfn = rmqueue_buddy(st, z, order, alloc_flags, mt, cpu)
    if (alloc_flags & ALLOC_KSWAPD) and (st.z_flags[z] & ZONE_BOOSTED_WATERMARK):
        wakeup_kswapd(st, z)
    return pfn


@njit
def wakeup_kswapd(st, z):
    """rmqueue() found ZONE_BOOSTED_WATERMARK: clear it and wake kswapd.  The boost stays until
    kswapd's balance_pgdat() ends and takes it back (kswapd_balance(), run by the modelled clock)."""
    st.z_flags[z] &= ~ZONE_BOOSTED_WATERMARK
    st.z_flags[z] |= ZONE_KSWAPD_WOKEN


@njit
def kswapd_balance(st):
    """The end of kswapd's balance_pgdat() after a wakeup: ``zone->watermark_boost -=
    zone_boosts[i]`` takes each woken zone's boost back (the boost reclaim kswapd does before
    is not modelled)."""
    for z in range(st.z_start.shape[0]):
        if st.z_flags[z] & ZONE_KSWAPD_WOKEN:
            st.boost[z] = 0
            st.z_flags[z] &= ~ZONE_KSWAPD_WOKEN


# ------------------------------------------------------------------ watermarks


@njit(inline="always")
def nr_zones_in_node(st):
    return st.lowmem_reserve.shape[1]


@njit(inline="always")
def wmark_pages(st, z, w):
    return st.wmark[z, w] + st.boost[z]


@njit(inline="always")
def high_wmark_pages(st, z):
    return st.wmark[z, 2] + st.boost[z]


@njit
def __zone_watermark_unusable_free(st, z, order, alloc_flags):
    unusable_free = (1 << order) - 1
    if not (alloc_flags & ALLOC_RESERVES):
        unusable_free += st.z_free_highatomic[z]
    if st.cfg[CFG_CMA] != 0 and not (alloc_flags & ALLOC_CMA):
        unusable_free += st.z_free_cma[z]
    return unusable_free


@njit
def __zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags, free_pages):
    mn = mark
    free_pages -= __zone_watermark_unusable_free(st, z, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                mn -= mn // 4
        if alloc_flags & ALLOC_OOM:
            mn -= mn // 2
    if free_pages <= mn + st.lowmem_reserve[z, highest_zoneidx]:
        return False
    if order == 0:
        return True
    for o in range(order, NR_PAGE_ORDERS):
        if st.nr_free[z, o] == 0:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            if pool_first_free(st, z, o, mt) >= 0:
                return True
        if st.cfg[CFG_CMA] != 0 and (alloc_flags & ALLOC_CMA) and pool_first_free(st, z, o, MT_CMA) >= 0:
            return True
        if (alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)) and pool_first_free(st, z, o, MT_HIGHATOMIC) >= 0:
            return True
    return False


@njit
def zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags):
    return __zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags, st.z_free[z])


@njit
def zone_watermark_fast(st, z, order, mark, highest_zoneidx, alloc_flags):
    free_pages = st.z_free[z]
    if order == 0:
        reserved = __zone_watermark_unusable_free(st, z, 0, alloc_flags)
        usable_free = free_pages - min(free_pages, reserved)
        if usable_free > mark + st.lowmem_reserve[z, highest_zoneidx]:
            return True
    if __zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags, free_pages):
        return True
    if order == 0 and (alloc_flags & ALLOC_MIN_RESERVE) and st.boost[z] != 0 \
            and (alloc_flags & ALLOC_WMARK_MASK) == ALLOC_WMARK_MIN:
        return __zone_watermark_ok(st, z, order, st.wmark[z, 0], highest_zoneidx, alloc_flags, free_pages)
    return False


# ------------------------------------------------------------------ the allocator entry


@njit
def reserve_highatomic_pageblock(st, pfn, order, z):
    pb_nr = pageblock_nr_pages(st)
    if st.z_managed[z] // 100 < pb_nr:
        return
    max_managed = ((st.z_managed[z] // 100 + pb_nr - 1) // pb_nr) * pb_nr
    if st.z_reserved_highatomic[z] >= max_managed:
        return
    mt = get_pfnblock_migratetype(st, pfn)
    if not migratetype_is_mergeable(mt):
        return
    if order < pageblock_order(st):
        if pool_move_freepages_block(st, z, pfn, mt, MT_HIGHATOMIC) == -1:
            return
        st.z_reserved_highatomic[z] += pb_nr
    else:
        if not pool_retype_block(st, z, pfn, order, mt, MT_HIGHATOMIC):
            return
        st.z_reserved_highatomic[z] += 1 << order
    st.stats[ST_HIGHATOMIC_RESERVE] += 1


@njit
def unreserve_highatomic_pageblock(st, node, highest_zoneidx, mt, force):
    zl = st.zonelist[node]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if st.z_idx[z] > highest_zoneidx:
            continue
        if not force and st.z_reserved_highatomic[z] <= pageblock_nr_pages(st):
            continue
        for order in range(NR_PAGE_ORDERS):
            pfn = pool_first_free(st, z, order, MT_HIGHATOMIC)
            if pfn < 0:
                continue
            size = max(pageblock_nr_pages(st), 1 << order)
            size = min(size, st.z_reserved_highatomic[z])
            st.z_reserved_highatomic[z] -= size
            if order < pageblock_order(st):
                ret = pool_move_freepages_block(st, z, pfn, MT_HIGHATOMIC, mt)
            else:
                ret = 1 if pool_retype_block(st, z, pfn, order, MT_HIGHATOMIC, mt) else -1
            if ret > 0:
                st.stats[ST_HIGHATOMIC_UNRESERVE] += 1
                return True
    return False


@njit
def alloc_flags_nofragment(st, z, gfp):
    """alloc_flags_nofragment() for preferred zone z: Normal with a DMA32 zone just below it."""
    below = z - 1 if st.z_idx[z] > 0 else z
    has_dma32 = st.z_type[below] == 1  # ZoneType.DMA32 directly below (x86-64)
    return G.alloc_flags_nofragment_nb(gfp, st.z_type[z], has_dma32, st.z_managed[below] > 0,
                                       st.cfg[CFG_NR_ONLINE_NODES], False)


@njit
def prep_new_page(st, pfn, order, gfp, mt):
    mark_allocated(st, pfn, order, gfp)
    st.owner[pfn] = owner_encode(order, mt)


@njit
def zone_allows(st, z, order, alloc_flags, highest_zoneidx):
    """get_page_from_freelist()'s watermark test of one zone: first against the high
    watermark (setting ZONE_BELOW_HIGH when it fails, as the kernel does to shrink pcp->high),
    then against the allocation's own watermark."""
    if not (st.z_flags[z] & ZONE_BELOW_HIGH):
        if zone_watermark_fast(st, z, order, high_wmark_pages(st, z), highest_zoneidx, alloc_flags):
            return True
        st.z_flags[z] |= ZONE_BELOW_HIGH
    mark = wmark_pages(st, z, alloc_flags & ALLOC_WMARK_MASK)
    if zone_watermark_fast(st, z, order, mark, highest_zoneidx, alloc_flags):
        return True
    if alloc_flags & ALLOC_NO_WATERMARKS:
        return True
    st.stats[ST_WMARK_FAIL] += 1
    return False


@njit
def get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu):
    """Walk the zonelist for a zone above its watermark and take pages from it; pfn, -1, or
    E_META (a metadata reservation failed: stop at once)."""
    zl = st.zonelist[node]
    while True:
        no_fallback = (alloc_flags & ALLOC_NOFRAGMENT) != 0
        retry = False
        preferred = -1
        for i in range(zl.shape[0]):
            z = zl[i]
            if z < 0:
                break
            if st.z_idx[z] > highest_zoneidx:
                continue
            if preferred < 0:
                preferred = z
            if no_fallback and st.cfg[CFG_NR_ONLINE_NODES] > 1 and z != preferred \
                    and st.z_node[z] != st.z_node[preferred]:
                # moving to a remote node: locality beats fragmentation avoidance
                retry = True
                break
            if not zone_allows(st, z, order, alloc_flags, highest_zoneidx):
                continue
            pfn = rmqueue(st, z, order, alloc_flags, mt, cpu)
            if pfn == E_META:
                return pfn
            if pfn >= 0:
                prep_new_page(st, pfn, order, gfp, mt)
                if alloc_flags & ALLOC_HIGHATOMIC:
                    reserve_highatomic_pageblock(st, pfn, order, z)
                zone_statistics(st, preferred, z, node, order)
                return pfn
        if retry or no_fallback:
            # It's possible on a UMA machine to get through all zones that are fragmented:
            # reset ALLOC_NOFRAGMENT and try again.
            alloc_flags &= ~ALLOC_NOFRAGMENT
            st.stats[ST_NOFRAGMENT_RETRY] += 1
            continue
        return -1


@njit
def zone_statistics(st, preferred, z, node, order):
    st.zstats[z, ZS_PGALLOC] += 1 << order
    if st.z_node[z] == st.z_node[preferred]:
        st.zstats[z, ZS_NUMA_HIT] += 1
    else:
        st.zstats[z, ZS_NUMA_MISS] += 1
        st.zstats[preferred, ZS_NUMA_FOREIGN] += 1
    if st.z_node[z] == node:
        st.zstats[z, ZS_NUMA_LOCAL] += 1
    else:
        st.zstats[z, ZS_NUMA_OTHER] += 1


@njit
def first_zone(st, node, highest_zoneidx):
    zl = st.zonelist[node]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if st.z_idx[z] <= highest_zoneidx:
            return z
    return -1


@njit(inline="always")
def gfp_migratetype(st, gfp):
    """gfp_migratetype(): every request is MIGRATE_UNMOVABLE when page_group_by_mobility_disabled
    (a machine too small for grouping by mobility), else the gfp's mobility bits."""
    if st.cfg[CFG_MOBILITY_DISABLED] != 0:
        return np.int64(MT_UNMOVABLE)
    return np.int64(G.gfp_migratetype_nb(gfp))


@njit
def __alloc_pages(st, gfp, order, cpu):
    """__alloc_pages_noprof(): the fast path, then the (reclaim-less) slow path.

    Returns the pfn of the first page, or -1 if the allocation failed (a failed metadata
    reservation, E_META, fails it at once and is counted in alloc_failed_for_metadata).
    """
    node = st.cpu_node[cpu]
    highest_zoneidx = st.gfp_zone_table[gfp & GFP_ZONEMASK]
    mt = gfp_migratetype(st, gfp)
    if highest_zoneidx < 0 or mt == 3 or order < 0 or order > MAX_PAGE_ORDER:
        st.stats[ST_ALLOC_FAIL] += 1
        return -1
    preferred = first_zone(st, node, highest_zoneidx)
    if preferred < 0:
        st.stats[ST_ALLOC_FAIL] += 1
        return -1
    cma = st.cfg[CFG_CMA] != 0
    alloc_flags = ALLOC_WMARK_LOW
    if cma and mt == MT_MOVABLE:
        alloc_flags |= ALLOC_CMA
    alloc_flags |= alloc_flags_nofragment(st, preferred, gfp)
    pfn = get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    if pfn == -1:
        pfn = __alloc_pages_slowpath(st, gfp, order, node, highest_zoneidx, mt, cpu)
    if pfn < 0:
        st.stats[ST_ALLOC_FAIL] += 1
        if pfn == E_META:
            st.stats[ST_ALLOC_FAILED_FOR_META] += 1
        trace_event(st, EV_ALLOC, cpu, -1, order, mt, gfp, 0, 0)
        return -1
    st.stats[ST_ALLOC] += 1
    st.stats[ST_ALLOC_PAGES] += 1 << order
    trace_event(st, EV_ALLOC, cpu, pfn, order, mt, gfp, 0, 0)
    return pfn


@njit
def __alloc_pages_slowpath(st, gfp, order, node, highest_zoneidx, mt, cpu):
    st.stats[ST_SLOWPATH] += 1
    alloc_flags = G.gfp_to_alloc_flags_nb(gfp, order, st.cfg[CFG_CMA] != 0, False, False)
    pfn = get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    if pfn >= 0 or pfn == E_META:
        return pfn
    if (gfp & GFP_MEMALLOC) and not (gfp & GFP_NOMEMALLOC):
        pfn = get_page_from_freelist(st, gfp, order, ALLOC_NO_WATERMARKS, node, highest_zoneidx, mt, cpu)
        if pfn >= 0 or pfn == E_META:
            return pfn
    if not (gfp & GFP_DIRECT_RECLAIM):
        return -1
    # No reclaim in the model: give back what the kernel gives back before OOM -
    # the per-cpu lists and the highatomic reserves - and retry.
    unreserve_highatomic_pageblock(st, node, highest_zoneidx, mt, False)
    drain_all_pages(st)
    pfn = get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    if pfn >= 0 or pfn == E_META:
        return pfn
    if unreserve_highatomic_pageblock(st, node, highest_zoneidx, mt, True):
        pfn = get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    return pfn


@njit
def check_free(st, pfn, order):
    """Validate free_pages(pfn, order) without touching state: OK or an error code."""
    if order < 0 or order > MAX_PAGE_ORDER:
        return E_ORDER
    if pfn < 0 or pfn >= st.owner.shape[0]:
        return E_RANGE
    if page_zone(st, pfn) < 0:
        return E_RANGE
    v = st.owner[pfn]
    if v == OWNER_RESERVED:
        return E_RESERVED
    if v == OWNER_PCP:
        return E_DOUBLE_FREE
    if v == OWNER_NONE:
        if pa_free_extent(st, pfn)[0] >= 0:
            return E_DOUBLE_FREE
        return E_NOT_HEAD
    if pa_own_page(st, pfn):
        return E_RESERVED  # the design's own metadata page
    if owner_order(v) != order:
        return E_ORDER
    return OK


@njit
def __free_pages(st, pfn, order, cpu):
    """free_pages() / __free_frozen_pages(): to the per-cpu list or straight to the buddy.

    The caller must have validated with :func:`check_free`.
    """
    z = page_zone(st, pfn)
    trace_event(st, EV_FREE, cpu, pfn, order, -1, 0, 0, 0)
    mark_freed(st, pfn, order)
    st.owner[pfn] = OWNER_NONE
    st.stats[ST_FREE] += 1
    st.stats[ST_FREE_PAGES] += 1 << order
    st.zstats[z, ZS_PGFREE] += 1 << order
    if not pcp_allowed_order(st, order) or st.cfg[CFG_PCP_ENABLED] == 0:
        free_one_page(st, z, pfn, order, FPI_NONE)
        return
    mt = get_pfnblock_migratetype(st, pfn)
    if mt >= MIGRATE_PCPTYPES:
        if mt == MT_ISOLATE:
            free_one_page(st, z, pfn, order, FPI_NONE)
            return
        mt = MT_MOVABLE
    free_unref_page_commit(st, z, cpu, pfn, mt, order)


@njit
def free_pages_checked(st, pfn, order, cpu):
    rc = check_free(st, pfn, order)
    if rc != OK:
        return rc
    __free_pages(st, pfn, order, cpu)
    return OK


@njit
def buddy_free_range(st, start, end, fpi):
    """__free_pages_memory() with the caller's fpi: the pages [start, end), in no state, go to
    the buddy lists in the largest aligned blocks (mm/memblock.py), each freed by
    split_large_buddy() (one aligned block: exactly free_one_page() without its counter).
    Boot (FPI_TO_TAIL) and the buddy designs' pa_free_range."""
    pfn = np.int64(start)
    while pfn < end:
        order = block_order(pfn, end, MAX_PAGE_ORDER)
        split_large_buddy(st, page_zone(st, pfn), pfn, order, fpi)
        pfn += np.int64(1) << order
    return 0


# ------------------------------------------------------------------ take (exact placement)


@njit
def find_free_block_containing(st, pfn):
    """The head pfn of the free buddy block containing pfn, or -1 (find_large_buddy)."""
    for order in range(NR_PAGE_ORDERS):
        head = pfn & ~((1 << order) - 1)
        if head < 0 or head >= st.owner.shape[0]:
            return -1
        if is_buddy(st, head) and head + (1 << buddy_order(st, head)) > pfn:
            return head
    return -1


@njit
def take_page_off_buddy(st, pfn, order):
    """Remove exactly [pfn, pfn + 2^order) from the buddy lists (take_page_off_buddy()).

    The block containing it is split; the other parts stay free.  Returns OK or
    E_BUSY if those pages are not all free in one buddy block.
    """
    head = find_free_block_containing(st, pfn)
    if head < 0:
        return E_BUSY
    z = page_zone(st, head)
    horder = buddy_order(st, head)
    if horder < order:
        return E_BUSY
    mt = get_pfnblock_migratetype(st, head)
    del_page_from_free_list(st, head, z, horder, mt)
    # split down towards pfn, freeing the halves that do not contain it
    cur = head
    cur_order = horder
    while cur_order > order:
        cur_order -= 1
        half = 1 << cur_order
        if pfn >= cur + half:
            other = cur
            cur = cur + half
        else:
            other = cur + half
        omt = get_pfnblock_migratetype(st, other)
        set_buddy(st, other, cur_order)
        __add_to_free_list(st, other, z, cur_order, omt, False)
        account_freepages(st, z, 1 << cur_order, omt)
    st.stats[ST_TAKE] += 1
    return OK


# ------------------------------------------------------------------ invariant check

(CHK_OK, CHK_NOT_BUDDY, CHK_ORDER, CHK_ALIGN, CHK_ZONE, CHK_MT, CHK_OVERLAP, CHK_COUNT_NR_FREE,
 CHK_COUNT_FREE_PAGES, CHK_PCP_STATE, CHK_PCP_COUNT, CHK_ALLOC_OVERLAP, CHK_LOST, CHK_UNMERGED,
 CHK_RESERVED_FREE, CHK_HIGHATOMIC) = range(16)
CHECK_MESSAGES = {
    CHK_NOT_BUDDY: "pfn {p:#x} on free list (zone {a}, order {b}) is not PageBuddy",
    CHK_ORDER: "pfn {p:#x} on free list of order {b} has buddy order {a}",
    CHK_ALIGN: "free block pfn {p:#x} order {b} is not aligned",
    CHK_ZONE: "free block pfn {p:#x} order {b} is not inside zone {a}",
    CHK_MT: "free block pfn {p:#x} is on the migratetype {a} list but its pageblock is type {b}",
    CHK_OVERLAP: "page {p:#x} is covered twice (state {a} and {b})",
    CHK_COUNT_NR_FREE: "zone {a} order {b}: free_area.nr_free differs from the list count at pfn {p}",
    CHK_COUNT_FREE_PAGES: "zone {a}: NR_FREE_PAGES {p} differs from the recount {b}",
    CHK_PCP_STATE: "pfn {p:#x} on pcp list of cpu {a} is not marked as a pcp page (or is PageBuddy)",
    CHK_PCP_COUNT: "cpu {a} zone {b}: pcp count differs from the pages on its lists ({p})",
    CHK_ALLOC_OVERLAP: "allocation at pfn {p:#x} order {a} overlaps free or reserved pages (state {b})",
    CHK_LOST: "page {p:#x} in zone {a} is in no state: neither free, on a pcp list, allocated nor reserved",
    CHK_UNMERGED: "free blocks {p:#x} and its buddy (order {a}) should have been merged",
    CHK_RESERVED_FREE: "reserved page {p:#x} is free",
    CHK_HIGHATOMIC: "zone {a}: nr_free_highatomic differs from the recount {b}",
}
COVER_FREE, COVER_PCP, COVER_ALLOC, COVER_RESERVED = 1, 2, 3, 4


@njit
def check_buddy_state(st):
    """Full invariant check of a buddy-based design; returns (code, pfn, a, b)."""
    npages = st.owner.shape[0]
    cover = np.zeros(npages, np.uint8)
    nz = st.z_start.shape[0]
    # reserved pages
    for p in range(npages):
        if st.owner[p] == OWNER_RESERVED:
            cover[p] = COVER_RESERVED
    # buddy lists
    for z in range(nz):
        free_pages = 0
        free_ha = 0
        for order in range(NR_PAGE_ORDERS):
            cnt = 0
            for mt in range(MIGRATE_TYPES):
                lid = buddy_lid(st, z, order, mt)
                p = list_first(st, lid)
                while p >= 0:
                    if not is_buddy(st, p):
                        return CHK_NOT_BUDDY, p, z, order
                    if buddy_order(st, p) != order:
                        return CHK_ORDER, p, buddy_order(st, p), order
                    if p & ((1 << order) - 1):
                        return CHK_ALIGN, p, 0, order
                    if p < st.z_start[z] or p + (1 << order) > st.z_end[z] or page_zone(st, p) != z:
                        return CHK_ZONE, p, z, order
                    nb = max(1, (1 << order) >> PAGEBLOCK_ORDER)
                    for k in range(nb):
                        bmt = get_pfnblock_migratetype(st, p + k * PAGEBLOCK_NR_PAGES)
                        if bmt != mt:
                            return CHK_MT, p, mt, bmt
                    for q in range(p, p + (1 << order)):
                        if cover[q] != 0:
                            if cover[q] == COVER_RESERVED:
                                return CHK_RESERVED_FREE, q, 0, 0
                            return CHK_OVERLAP, q, cover[q], COVER_FREE
                        cover[q] = COVER_FREE
                    cnt += 1
                    if mt != MT_ISOLATE:
                        free_pages += 1 << order
                    if mt == MT_HIGHATOMIC:
                        free_ha += 1 << order
                    p = list_next(st, lid, p)
            if cnt != st.nr_free[z, order]:
                return CHK_COUNT_NR_FREE, cnt, z, order
        if free_pages != st.z_free[z]:
            return CHK_COUNT_FREE_PAGES, st.z_free[z], z, free_pages
        if free_ha != st.z_free_highatomic[z]:
            return CHK_HIGHATOMIC, 0, z, free_ha
    # per-cpu lists
    for cpu in range(st.cpu_node.shape[0]):
        for z in range(nz):
            pages = 0
            for pindex in range(NR_PCP_LISTS):
                lid = pcp_lid(st, cpu, z, pindex)
                order = pindex_to_order(pindex)
                p = list_first(st, lid)
                while p >= 0:
                    if st.owner[p] != OWNER_PCP or is_buddy(st, p):
                        return CHK_PCP_STATE, p, cpu, 0
                    for q in range(p, p + (1 << order)):
                        if cover[q] != 0:
                            return CHK_OVERLAP, q, cover[q], COVER_PCP
                        cover[q] = COVER_PCP
                    pages += 1 << order
                    p = list_next(st, lid, p)
            if pages != st.pcp[cpu, z, PCP_COUNT]:
                return CHK_PCP_COUNT, pages, cpu, z
    # allocations
    for p in range(npages):
        v = st.owner[p]
        if v == OWNER_NONE or v == OWNER_RESERVED or v == OWNER_PCP:
            continue
        order = owner_order(v)
        for q in range(p, p + (1 << order)):
            if cover[q] != 0:
                return CHK_ALLOC_OVERLAP, p, order, cover[q]
            cover[q] = COVER_ALLOC
    # every page of every zone is in exactly one state
    for z in range(nz):
        for p in range(st.z_start[z], st.z_end[z]):
            if cover[p] == 0:
                return CHK_LOST, p, z, 0
    # maximal merging
    for z in range(nz):
        for order in range(MAX_PAGE_ORDER):
            for mt in range(MIGRATE_TYPES):
                lid = buddy_lid(st, z, order, mt)
                p = list_first(st, lid)
                while p >= 0:
                    b = p ^ (1 << order)
                    if page_is_buddy(st, z, b, order):
                        ok_to_merge = True
                        if order >= pageblock_order(st):
                            bmt = get_pfnblock_migratetype(st, b)
                            if mt != bmt and (not migratetype_is_mergeable(mt)
                                              or not migratetype_is_mergeable(bmt)):
                                ok_to_merge = False
                        if ok_to_merge:
                            return CHK_UNMERGED, min(p, b), order, 0
                    p = list_next(st, lid, p)
    return CHK_OK, -1, 0, 0


@njit
def collect_free_blocks(st, out):
    """Fill out[n, 4] with (pfn, order, migratetype, zone) of every free block; returns n."""
    n = 0
    for z in range(st.z_start.shape[0]):
        for order in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                lid = buddy_lid(st, z, order, mt)
                p = list_first(st, lid)
                while p >= 0:
                    if n < out.shape[0]:
                        out[n, 0] = p
                        out[n, 1] = order
                        out[n, 2] = mt
                        out[n, 3] = z
                    n += 1
                    p = list_next(st, lid, p)
    return n


@njit
def free_counts_by_mt(st, out):
    """out[z, mt, order] = number of free blocks on each list (pagetypeinfo's list walk)."""
    for z in range(st.z_start.shape[0]):
        for order in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                lid = buddy_lid(st, z, order, mt)
                p = list_first(st, lid)
                c = 0
                while p >= 0:
                    c += 1
                    p = list_next(st, lid, p)
                out[z, mt, order] = c


@njit
def init_free_state(st, starts, ends, res_pfns):
    """Mark reserved pages, then free every managed range to the buddy (memblock_free_all)."""
    for i in range(res_pfns.shape[0]):
        p = res_pfns[i]
        st.owner[p] = OWNER_RESERVED
        mark_reserved(st, p, 0)
    for i in range(starts.shape[0]):
        buddy_free_range(st, starts[i], ends[i], FPI_TO_TAIL)


@njit
def init_from_snapshot(st, res_pfns, alloc_pfn, alloc_order, alloc_mt, alloc_gfp, free_pfn, free_order,
                       pcp_pfn, pcp_cpu):
    """Rebuild the allocator state of a real machine's snapshot (see memdesc.sim.snapshot).

    The caller has set the pageblock migratetypes.  Reserved pages and holes are marked,
    allocations get their struct page state and owner entry, free blocks go on the free
    list of their pageblock's type (in pfn order, to the tail), and pcp pages (order 0)
    on the given CPU's list.  Returns the number of free blocks placed.
    """
    for i in range(res_pfns.shape[0]):
        p = res_pfns[i]
        st.owner[p] = OWNER_RESERVED
        mark_reserved(st, p, 0)
    for i in range(alloc_pfn.shape[0]):
        p = alloc_pfn[i]
        mark_allocated(st, p, alloc_order[i], alloc_gfp[i])
        st.owner[p] = owner_encode(alloc_order[i], alloc_mt[i])
    n = 0
    for i in range(free_pfn.shape[0]):
        p = free_pfn[i]
        z = page_zone(st, p)
        order = free_order[i]
        mt = get_pfnblock_migratetype(st, p)
        set_buddy(st, p, order)
        __add_to_free_list(st, p, z, order, mt, True)
        account_freepages(st, z, 1 << order, mt)
        n += 1
    for i in range(pcp_pfn.shape[0]):
        p = pcp_pfn[i]
        z = page_zone(st, p)
        cpu = pcp_cpu[i]
        mt = get_pfnblock_migratetype(st, p)
        if mt >= MIGRATE_PCPTYPES:
            mt = MT_MOVABLE
        list_add(st, pcp_lid(st, cpu, z, order_to_pindex(mt, 0)), p, True)
        st.owner[p] = OWNER_PCP
        st.pcp[cpu, z, PCP_COUNT] += 1
    return n


# ------------------------------------------------------------------ periodic work (vmstat_update)

#: sysctl_stat_interval: vmstat_update() runs on every CPU once a second (HZ)
VMSTAT_INTERVAL_NS = 1_000_000_000


@njit
def pcp_decay_high(pcp):
    """decay_pcp_high()'s bookkeeping on one pcp row: high shrinks by 1/8 toward high_min
    (at most by batch << CONFIG_PCP_BATCH_SCALE_MAX below count).  Returns (todo, pages to
    drain)."""
    todo = 0
    high_min = pcp[PCP_HIGH_MIN]
    batch = pcp[PCP_BATCH]
    if pcp[PCP_HIGH] > high_min:
        pcp[PCP_HIGH] = max(pcp[PCP_COUNT] - (batch << CONFIG_PCP_BATCH_SCALE_MAX),
                            pcp[PCP_HIGH] - (pcp[PCP_HIGH] >> 3), high_min)
        if pcp[PCP_HIGH] > high_min:
            todo += 1
    return todo, pcp[PCP_COUNT] - pcp[PCP_HIGH]


@njit
def decay_pcp_high(st, z, cpu):
    """decay_pcp_high(): shrink an idle pcp's high by 1/8 toward high_min and free the excess."""
    todo, to_drain = pcp_decay_high(st.pcp[cpu, z])
    if to_drain > 0:
        pcp_free_bulk(st, z, to_drain, cpu, 0)
        todo += 1
    return todo


@njit
def vmstat_update(st):
    """refresh_cpu_vm_stats(do_pagesets=true) on every CPU: decay every populated zone's pcp.
    (Periodic work: the callers also run kswapd_balance() at each tick.)"""
    for cpu in range(st.cpu_node.shape[0]):
        for z in range(st.z_start.shape[0]):
            if st.z_managed[z] > 0:
                decay_pcp_high(st, z, cpu)


# ------------------------------------------------------------------ the zone layer on buddy lists
# core's implementation of the zone-layer and exact-placement primitives (dispatch) for a design
# that registers the buddy layer (list_* and PageBuddy state): linux and radix run exactly this
# code; a design that is not a list buddy registers its own (see base.register_design).


@njit
def buddy_pool_prepare(st, z, order):
    """Nothing to reserve: a list buddy keeps no metadata outside struct page."""
    return np.int64(OK)


@njit
def buddy_pool_free(st, z, pfn, order, fpi):
    split_large_buddy(st, z, pfn, order, fpi)


@njit
def buddy_pool_retype_block(st, z, pfn, order, old_mt, new_mt):
    """A block of order >= pageblock_order: a free one moves to new_mt's list (tail), then its
    pageblocks take new_mt (reserve_highatomic_pageblock / unreserve_highatomic_pageblock)."""
    if is_buddy(st, pfn):
        move_to_free_list(st, pfn, z, order, old_mt, new_mt)
    change_pageblock_range(st, pfn, order, new_mt)
    return True


@njit
def buddy_pcp_add(st, cpu, z, pindex, pfn, tail):
    list_add(st, pcp_lid(st, cpu, z, pindex), pfn, tail)


@njit
def buddy_pcp_pop(st, cpu, z, pindex, tail):
    lid = pcp_lid(st, cpu, z, pindex)
    pfn = list_last(st, lid) if tail else list_first(st, lid)
    if pfn >= 0:
        list_del(st, lid, pfn)
    return pfn


@njit
def buddy_pcp_unlink(st, cpu, z, pindex, pfn):
    list_del(st, pcp_lid(st, cpu, z, pindex), pfn)


@njit
def buddy_free_extent(st, pfn):
    h = find_free_block_containing(st, pfn)
    if h < 0:
        return np.int64(-1), np.int64(-1)
    return np.int64(h), np.int64(h) + (np.int64(1) << buddy_order(st, h))


@njit
def buddy_set_pageblock_type(st, z, pfn, old_mt, new_mt):
    return __move_freepages_block(st, z, pfn, old_mt, new_mt)


@njit(inline="always")
def buddy_halve(cur, co, pfn):
    """Halve the block at cur into two of order co: (the half without pfn, the half with it)."""
    half = np.int64(1) << co
    if pfn >= cur + half:
        return cur, cur + half
    return cur + half, cur


@njit
def split_page_gfp(st, head, horder, pfn, order, gfp):
    """split_page() on struct page: the allocation [head, 2^horder) becomes allocations of
    decreasing order (buddy halves, with gfp's compound state), [pfn, 2^order) one of them
    (page_owner is the caller's: split_owner)."""
    mark_freed(st, head, horder)
    cur = head
    co = horder
    while co > order:
        co -= 1
        other, cur = buddy_halve(cur, co, pfn)
        mark_allocated(st, other, co, gfp)
    mark_allocated(st, cur, order, gfp)
    return True


@njit
def split_page(st, head, horder, pfn, order):
    """pa_split on struct page (exact placement): split_page_gfp() with no gfp."""
    return split_page_gfp(st, head, horder, pfn, order, 0)


@njit
def split_owner(st, head, horder, pfn, order, mt):
    """The page_owner entries of a split allocation's pieces: every buddy half of
    [head, 2^horder) down to [pfn, 2^order) an allocation head keeping migratetype mt."""
    cur = head
    co = horder
    while co > order:
        co -= 1
        other, cur = buddy_halve(cur, co, pfn)
        st.owner[other] = owner_encode(co, mt)
    st.owner[cur] = owner_encode(order, mt)


@njit
def split_allocation(st, head, horder, pfn, order):
    """Split the allocation [head, 2^horder) so [pfn, 2^order) is one of its own, with the
    design's ``pa_split`` and the pieces' page_owner entries; False, nothing changed, if the
    design cannot (split_page() / the tail loop of __free_pages())."""
    mt = owner_mt(st.owner[head])
    if not pa_split(st, head, horder, pfn, order):
        return False
    split_owner(st, head, horder, pfn, order, mt)
    return True


@njit
def buddy_split_alloc(st, head, horder, pfn, order, gfp):
    """pa_split_alloc on struct page (split_page() of a typed allocation): buddy halves with
    gfp's compound state, each keeping the allocation's migratetype in page_owner."""
    mt = owner_mt(st.owner[head])
    split_page_gfp(st, head, horder, pfn, order, gfp)
    split_owner(st, head, horder, pfn, order, mt)
    return True


@njit
def buddy_split_prepare(st, pieces):
    """A buddy design splits an allocation by rewriting struct pages: it needs nothing."""
    return True


@njit
def buddy_online_range(st, start, end):
    """accept_page() / __free_pages_core(): pages that were not there join the buddy, free."""
    for q in range(start, end):
        mark_freed(st, q, 0)
    return buddy_free_range(st, start, end, FPI_TO_TAIL)


@njit
def no_own_pages(st, pfn):
    return False


@njit
def free_area_of(counts, z):
    """The per-order row of zone z from free-block counts[zone, migratetype, order] (what a
    design's buddyinfo scan fills): a design's pa_zone_free_area when nr_free is not it."""
    out = np.zeros(counts.shape[2], np.int64)
    for mt in range(counts.shape[1]):
        for o in range(counts.shape[2]):
            out[o] += counts[z, mt, o]
    return out


@njit
def zone_free_area(st, z):
    """zone->free_area[*].nr_free: the design's nr_free row (list buddies count their free
    blocks there, as buddyinfo shows them; vmem and llfree register their own scans)."""
    return st.nr_free[z]


#: defaults every design gets unless it registers its own (dispatch "optional" layer)
GENERIC_DEFAULTS = {
    "pcp_free_bulk": free_pcppages_bulk,
    "pa_own_page": no_own_pages,
    "pa_zone_free_area": zone_free_area,
}

#: the zone layer and exact placement on the buddy layer: what a design registering list_* and
#: PageBuddy state gets (dispatch "zone" and "exact" layers, and the typed layer's split)
BUDDY_DEFAULTS = {
    "pool_prepare": buddy_pool_prepare,
    "pool_rmqueue": __rmqueue,
    "pool_rmqueue_smallest": __rmqueue_smallest,
    "pool_free": buddy_pool_free,
    "pool_first_free": get_page_from_free_area,
    "pool_move_freepages_block": move_freepages_block,
    "pool_retype_block": buddy_pool_retype_block,
    "pcp_add": buddy_pcp_add,
    "pcp_pop": buddy_pcp_pop,
    "pa_free_extent": buddy_free_extent,
    "pa_free_range": buddy_free_range,
    "pa_set_pageblock_type": buddy_set_pageblock_type,
    "pa_mark_allocated": mark_allocated,
    "pa_mark_unallocated": mark_freed,
    "pa_split": split_page,
    "pa_pcp_link": buddy_pcp_add,
    "pa_pcp_unlink": buddy_pcp_unlink,
    "pa_online_range": buddy_online_range,
    "pa_split_alloc": buddy_split_alloc,
    "pa_split_prepare": buddy_split_prepare,
}
