"""Memory compaction (mm/compaction.c): two scanners, migration through the design.

Theory
------
Compaction makes high-order free blocks by moving movable folios out of the low end of a
zone into free pages at its high end.  Linux 6.18, as modelled here:

* **Two scanners, pageblock by pageblock.**  ``compact_zone()`` starts the *migrate scanner*
  at the zone start (``cc->migrate_pfn``) and the *free scanner* at the last pageblock
  (``cc->free_pfn = pageblock_start_pfn(zone_end - 1)``); a whole-zone compaction
  (``compact_memory``, the direct compaction of ``COMPACT_PRIO_SYNC_FULL``) starts there, any
  other from the zone's cached positions.  Each round, ``isolate_migratepages()`` takes the
  first suitable pageblock above ``migrate_pfn`` and ``isolate_migratepages_block()``
  isolates LRU folios from it (at most ``COMPACT_CLUSTER_MAX`` = 32 pages, then the round
  migrates); free pages (``PageBuddy``) are skipped by their order, compound pages of order
  >= pageblock_order (and, except for compact_memory, >= the requested order) by theirs,
  pinned anon folios (``refcount - 1 > mapcount`` once isolation took its reference:
  ``folio_try_get``, dropped by ``folio_putback_lru``; a migration needs exactly the expected
  references plus that one), non-LRU pages and, unless the mode is
  MIGRATE_SYNC, folios under writeback fail.  ``migrate_pages()`` then asks
  ``compaction_alloc()`` for a destination per folio: it takes the smallest isolated free
  block of at least the folio's order (``cc->freepages[order]``) and splits it, the halves
  going back to the lists; when none is left, ``isolate_freepages()`` walks down from
  ``free_pfn``, pageblock by pageblock, in MOVABLE (``suitable_migration_target``) blocks not
  wholly free, taking free blocks (``isolate_freepages_block``: ``__isolate_free_page`` keeps
  the order-0 min watermark) until it has as many pages as there are to migrate.  The zone
  is done when the scanners meet (``free_pfn`` and ``migrate_pfn`` in one pageblock:
  COMPACT_COMPLETE) or, for an allocation, as soon as a free block of the order is there
  (COMPACT_SUCCESS, checked at pageblock boundaries).  Isolated free pages left over go back
  (``release_free_list``).
* **Skip bits.**  A pageblock scanned wholly by the migrate scanner without isolating
  anything, or by the free scanner, gets PB_migrate_skip (core.PB_MIGRATE_SKIP in the
  pageblock flags); later scans pass it unless ``ignore_skip_hint`` (compact_memory, SYNC_FULL
  direct compaction, proactive compaction).  When the scanners meet after a whole-zone run
  the zone's ``compact_blockskip_flush`` is set and the bits are cleared on the next restart
  (``__reset_isolation_suitable``; the sampling of LRU/buddy pages it does is left out: every
  bit is cleared).
* **Suitability.**  ``compaction_suitable()``: the zone must be above its watermark (low for
  costly orders > 3, min otherwise) plus ``compact_gap(order)`` = 2 << order at order 0;
  for costly orders the fragmentation index (``__fragmentation_index``: 1000 - (1000 +
  1000 * free_pages / 2^order) / free_blocks_total, -1000 when a block of the order is free,
  0 with no free memory) must be above ``extfrag_threshold`` (500): at or below it the
  failure is a lack of memory, not fragmentation (COMPACT_NOT_SUITABLE_ZONE).
* **Deferral.**  A direct compaction that completes without success defers the zone
  (``defer_compaction``: ``compact_defer_shift``++, up to 6; ``compact_order_failed``); the
  next ``1 << shift`` attempts at that order or above are skipped (``compaction_deferred``);
  success resets (``compaction_defer_reset``).
* **Direct compaction** (:func:`try_to_compact_pages`, called by the MM layer's allocation
  slow path for costly orders): every zone of the zonelist with priority ``prio``
  (COMPACT_PRIO_ASYNC -> MIGRATE_ASYNC, SYNC_LIGHT -> MIGRATE_SYNC_LIGHT, SYNC_FULL ->
  MIGRATE_SYNC_LIGHT with the skip hints ignored and the whole zone scanned), deferred zones
  skipped above SYNC_FULL, stopping at the first COMPACT_SUCCESS.  **Capture**
  (``capture_control``): a block of the requested order that forms from freed sources while
  the allocating task compacts is taken by it; Linux catches it in ``__free_one_page``, the
  model when the scanner leaves an order-aligned block (``check_drain``: the per-CPU lists are
  drained there, which is when those pages reach the buddy in Linux too).
* **kcompactd** (:func:`kcompactd_do_work` for a wakeup of order N, :func:`kcompactd_timer` for
  one ``HPAGE_FRAG_CHECK_INTERVAL_MSEC`` tick): proactive compaction when the node's
  fragmentation score (``extfrag_for_order(zone, HPAGE_PMD_ORDER)`` weighted by the zone's
  share of the node's present pages) is above ``min(wmark_low + 10, 100)`` with ``wmark_low =
  max(100 - compaction_proactiveness, 5)``, compacting each zone until its score is at most
  wmark_low; a proactive run that does not lower the score backs off for 1 << 6 ticks.
* **compact_memory** (:func:`compact_node`): every populated zone, order -1, MIGRATE_SYNC,
  skip hints ignored, whole zone.
* **Migration through the design** (:mod:`memdesc.mm.migrate`): the destination's descriptor
  is allocated before the source is freed on designs with separate descriptors; failures for
  want of it end the batch with -ENOMEM (COMPACT_CONTENDED unless the scanners met).  A large
  folio for which ``compaction_alloc`` finds no block of its order is split to order 0 and its
  pieces migrated (``try_split_folio`` in ``migrate_pages_batch``: ``nr_split``), which on
  those designs needs a descriptor per piece (counted apart: ``split_descriptor_allocations``).

State: :class:`CompactState` (numpy arrays in one numba struct): per-zone fields of
``struct zone`` (``compact_cached_*``, ``compact_considered``, ``compact_defer_shift``,
``compact_order_failed``, ``compact_blockskip_flush``), the ``compact_control`` of the run,
its migrate list and free lists, counters, and an event log shaped like the compaction
tracepoints (begin/end with scanner positions, isolate_migratepages / isolate_freepages with
range, nr_scanned and nr_taken, migratepages with nr_migrated and nr_failed).  Kernels take
``(cs, ms, ss, pa)``: this state, the folio state, the slab state and the design state.

Not modelled: ``fast_find_migrateblock`` and ``fast_isolate_freepages`` (the free-list
searches that let a *partial* direct compaction jump; compact_memory never uses them),
``too_many_isolated`` throttling, lock contention and ``need_resched`` (COMPACT_CONTENDED
only for -ENOMEM), the per-CPU LRU batches (``lru_add_drain``), non-LRU movable_ops pages,
hugetlb, CMA, NUMA (one node), and time (kcompactd's timer is a call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba.extending import overload

from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm import memmap as mmap
from memdesc.mm import migrate as M
from memdesc.mm.machine import to_gfp
from memdesc.mm.mmzone import HPAGE_PMD_ORDER, MAX_PAGE_ORDER, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.page_alloc.dispatch import (
    pa_drain,
    pa_free,
    pa_free_block,
    pa_isolate_free,
    pa_split_alloc,
    pa_split_prepare,
    pa_zone_free_area,
)
from memdesc.mm.vmstat import fill_contig_page_info_nb

# ------------------------------------------------------------------ include/linux/compaction.h

# enum compact_priority
COMPACT_PRIO_SYNC_FULL, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_ASYNC = 0, 1, 2
MIN_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_FULL
MIN_COMPACT_COSTLY_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
DEF_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
INIT_COMPACT_PRIORITY = COMPACT_PRIO_ASYNC
PRIORITY_NAMES = ("sync_full", "sync_light", "async")

# enum compact_result
(COMPACT_NOT_SUITABLE_ZONE, COMPACT_SKIPPED, COMPACT_DEFERRED, COMPACT_NO_SUITABLE_PAGE, COMPACT_CONTINUE,
 COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED, COMPACT_CONTENDED, COMPACT_SUCCESS) = range(9)
#: as the tracepoints print them (compaction_status_string)
STATUS_NAMES = ("not_suitable_zone", "skipped", "deferred", "no_suitable_page", "continue", "complete",
                "partial_skipped", "contended", "success")

COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX
COMPACT_MAX_DEFER_SHIFT = 6
COMPACTION_HPAGE_ORDER = HPAGE_PMD_ORDER
HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500
#: sysctl defaults
EXTFRAG_THRESHOLD = 500
COMPACTION_PROACTIVENESS = 20

# isolate_migratepages() results
ISOLATE_ABORT, ISOLATE_NONE, ISOLATE_SUCCESS = 0, 1, 2

#: a compaction loop stopped for want of folio/slab capacity (grow in Python, then resume)
NEEDCAP = -1

# per-zone fields (cz[z, ...])
(CZ_CACHED_MIGRATE_ASYNC, CZ_CACHED_MIGRATE_SYNC, CZ_CACHED_FREE, CZ_CONSIDERED, CZ_DEFER_SHIFT, CZ_ORDER_FAILED,
 CZ_BLOCKSKIP_FLUSH, CZ_INIT_MIGRATE, CZ_INIT_FREE, CZ_PRESENT, CZ_END) = range(11)
NR_CZ = 11

# compact_control fields (cc[...])
(CC_ZONE, CC_ORDER, CC_MODE, CC_WHOLE_ZONE, CC_DIRECT, CC_IGNORE_SKIP, CC_PROACTIVE, CC_GFP, CC_MIGRATETYPE,
 CC_MIGRATE_PFN, CC_FREE_PFN, CC_NR_MIGRATEPAGES, CC_NR_FREEPAGES, CC_FINISH_PAGEBLOCK, CC_CONTENDED,
 CC_LAST_MIGRATED, CC_CAPTURE, CC_CAPTURED_PFN, CC_START_PFN, CC_END_PFN, CC_HIGHEST_ZONEIDX, CC_ALLOC_FLAGS,
 CC_MIGRATE_SCANNED, CC_FREE_SCANNED, CC_UPDATE_CACHED, CC_NR_MLIST, CC_RET, CC_CPU) = range(28)
NR_CC = 28

# configuration (cfg[...])
(CFG_EXTFRAG_THRESHOLD, CFG_PROACTIVENESS, CFG_LOG, CFG_UNEVICTABLE_ALLOWED, CFG_PROACTIVE_DEFER,
 CFG_KSWAPD_RUNNING, CFG_DIRECT) = range(7)
NR_CFG = 7

# counters (stats[...]; vmstat names where Linux has them)
(CS_COMPACT_STALL, CS_COMPACT_FAIL, CS_COMPACT_SUCCESS, CS_MIGRATE_SCANNED, CS_FREE_SCANNED, CS_ISOLATED,
 CS_MIGRATED, CS_MIGRATE_FAILED, CS_DESC_ALLOCS, CS_DESC_FAILED, CS_DEFERRED, CS_CAPTURED, CS_KCOMPACTD_WAKE,
 CS_PROACTIVE_RUNS, CS_NOCAP_STOPS, CS_FAILED_BUSY, CS_ZONE_RUNS, CS_FREE_ISOLATED, CS_FREE_RELEASED,
 CS_MIGRATE_BATCHES, CS_DAEMON_MIGRATE_SCANNED, CS_DAEMON_FREE_SCANNED, CS_SPLITS, CS_SPLIT_DESC_ALLOCS) = range(24)
NR_CS = 24
CS_NAMES = ("compact_stall", "compact_fail", "compact_success", "compact_migrate_scanned", "compact_free_scanned",
            "compact_isolated", "pages_migrated", "migrate_failed_folios", "descriptor_allocations",
            "descriptor_failures", "compact_deferred", "compact_captured", "kcompactd_wake", "proactive_runs",
            "capacity_stops", "failed_busy", "zone_runs", "free_pages_isolated", "free_pages_released",
            "migrate_batches", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned", "folios_split",
            "split_descriptor_allocations")

# event log rows: (kind, a, b, c, d, e, f)
EV_BEGIN, EV_END, EV_ISOLATE_MIGRATE, EV_ISOLATE_FREE, EV_MIGRATEPAGES, EV_SUITABLE, EV_DEFER, EV_DEFERRED = range(8)
EVENT_NAMES = ("mm_compaction_begin", "mm_compaction_end", "mm_compaction_isolate_migratepages",
               "mm_compaction_isolate_freepages", "mm_compaction_migratepages", "mm_compaction_suitable",
               "mm_compaction_defer_compaction", "mm_compaction_deferred")
LOG_FIELDS = 7

#: capacity of each cc->freepages[order] list
FP_CAP = 1024
#: most pieces a migrate batch's splits can add (a batch holds < COMPACT_CLUSTER_MAX + 2^(pageblock_order-1) pages)
MAX_SPLIT_PIECES = 2 * COMPACT_CLUSTER_MAX + (1 << PAGEBLOCK_ORDER)


class CompactStateType(StructType):
    pass


class CompactState(StructProxy):
    """Compaction state: per-zone fields, the compact_control, its lists, counters and log."""

    _fields = ("cfg", "cz", "cc", "mlist", "fp", "fpn", "pbvalid", "stats", "mstats", "log", "logn", "tmp_out",
               "tmp_slot", "tmp_dst")


define_struct(CompactState, CompactStateType)


def new_compact_state(pa, present: np.ndarray | None = None, log_capacity: int = 1 << 16,
                      direct: bool = True) -> CompactState:
    """Compaction state for design state ``pa`` (its zones and pageblocks).  ``direct``: whether
    the allocation slow path compacts (:func:`direct_compact_pages`; off = CONFIG_COMPACTION=n for
    the slow path, kcompactd and compact_memory still run)."""
    nz = pa.z_start.shape[0]
    cz = np.zeros((nz, NR_CZ), np.int64)
    for z in range(nz):
        s, e = int(pa.z_start[z]), int(pa.z_end[z])
        cz[z, CZ_CACHED_MIGRATE_ASYNC] = cz[z, CZ_CACHED_MIGRATE_SYNC] = s
        cz[z, CZ_INIT_MIGRATE] = s
        cz[z, CZ_CACHED_FREE] = cz[z, CZ_INIT_FREE] = ((e - 1) >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER if e > s else s
        cz[z, CZ_ORDER_FAILED] = NR_PAGE_ORDERS
        cz[z, CZ_PRESENT] = int(present[z]) if present is not None else int(pa.z_managed[z])
        cz[z, CZ_END] = e
    cfg = np.zeros(NR_CFG, np.int64)
    cfg[CFG_EXTFRAG_THRESHOLD] = EXTFRAG_THRESHOLD
    cfg[CFG_PROACTIVENESS] = COMPACTION_PROACTIVENESS
    cfg[CFG_LOG] = 1 if log_capacity > 0 else 0
    cfg[CFG_UNEVICTABLE_ALLOWED] = 1
    cfg[CFG_DIRECT] = 1 if direct else 0
    npb = pa.pb.shape[0]
    pbvalid = (np.asarray(pa.pb_zone[:npb]) >= 0).astype(np.uint8)
    # a pageblock whose pages are all reserved (holes, offline memory) has no valid struct pages
    owner = np.asarray(pa.owner)
    full = (owner.shape[0] >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
    allres = (owner[:full].reshape(-1, 1 << PAGEBLOCK_ORDER) == core.OWNER_RESERVED).all(axis=1)
    pbvalid[: allres.shape[0]] &= ~allres
    return CompactState(cfg=cfg, cz=cz, cc=np.zeros(NR_CC, np.int64), mlist=np.zeros(COMPACT_CLUSTER_MAX + 1, np.int64),
                        fp=np.zeros((NR_PAGE_ORDERS, FP_CAP), np.int64), fpn=np.zeros(NR_PAGE_ORDERS, np.int64),
                        pbvalid=pbvalid, stats=np.zeros(NR_CS, np.int64), mstats=np.zeros(M.NR_MS, np.int64),
                        log=np.zeros((max(1, log_capacity), LOG_FIELDS), np.int64), logn=np.zeros(2, np.int64),
                        tmp_out=np.zeros(COMPACT_CLUSTER_MAX + 1, np.int64),
                        tmp_slot=np.zeros(COMPACT_CLUSTER_MAX + 1, np.int64),
                        tmp_dst=np.zeros(COMPACT_CLUSTER_MAX + 1, np.int64))


# ------------------------------------------------------------------ helpers


@njit
def _log(cs, kind, a, b, c, d, e, f):
    if cs.cfg[CFG_LOG] == 0:
        return
    n = cs.logn[0]
    if n >= cs.log.shape[0]:
        cs.logn[1] += 1
        return
    r = cs.log[n]
    r[0] = kind
    r[1] = a
    r[2] = b
    r[3] = c
    r[4] = d
    r[5] = e
    r[6] = f
    cs.logn[0] = n + 1


@njit(inline="always")
def pageblock_start_pfn(pfn):
    return (pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER


@njit(inline="always")
def pageblock_end_pfn(pfn):
    return pageblock_start_pfn(pfn) + (np.int64(1) << PAGEBLOCK_ORDER)


@njit(inline="always")
def block_start_pfn(pfn, order):
    return (pfn >> order) << order


@njit(inline="always")
def block_end_pfn(pfn, order):
    return ((pfn + (np.int64(1) << order)) >> order) << order


@njit(inline="always")
def is_via_compact_memory(order):
    return order == -1


@njit(inline="always")
def compact_gap(order):
    return np.int64(2) << order


@njit
def get_pageblock_skip(pa, pfn):
    return (np.int64(pa.pb[pfn >> PAGEBLOCK_ORDER]) & core.PB_MIGRATE_SKIP) != 0


@njit
def set_pageblock_skip(pa, pfn):
    i = pfn >> PAGEBLOCK_ORDER
    pa.pb[i] = np.uint8(np.int64(pa.pb[i]) | core.PB_MIGRATE_SKIP)


@njit
def clear_pageblock_skip(pa, pfn):
    i = pfn >> PAGEBLOCK_ORDER
    pa.pb[i] = np.uint8(np.int64(pa.pb[i]) & ~core.PB_MIGRATE_SKIP)


@njit
def pageblock_valid(cs, pa, start, end, z):
    """pageblock_pfn_to_page(): the block's first and last pfn exist and are in zone z."""
    if start >= end:
        return False
    i = start >> PAGEBLOCK_ORDER
    if i >= cs.pbvalid.shape[0] or cs.pbvalid[i] == 0:
        return False
    return pa.pb_zone[i] == z and pa.pb_zone[(end - 1) >> PAGEBLOCK_ORDER] == z


# ------------------------------------------------------------------ fragmentation (mm/vmstat.c)


@njit
def fill_contig_page_info(pa, z, order):
    """(free_pages, free_blocks_total, free_blocks_suitable) of zone z for ``order``: the
    kernel's formula (vmstat) over the zone's free blocks as buddyinfo counts them
    (``pa_zone_free_area``: nr_free on a buddy design; LLFree's bitfields scanned)."""
    fp, tot, sui = fill_contig_page_info_nb(pa_zone_free_area(pa, z), order)
    return np.int64(fp), np.int64(tot), np.int64(sui)


@njit
def __fragmentation_index(order, free_pages, total, suitable):
    if total == 0:
        return np.int64(0)
    if suitable > 0:
        return np.int64(-1000)
    requested = np.int64(1) << order
    return np.int64(1000) - (np.int64(1000) + (free_pages * 1000) // requested) // total


@njit
def fragmentation_index(pa, z, order):
    """fragmentation_index(): -1000 if a block of the order is free, else 0 (lack of memory) ..
    1000 (external fragmentation)."""
    fp, tot, sui = fill_contig_page_info(pa, z, order)
    return __fragmentation_index(order, fp, tot, sui)


@njit
def extfrag_for_order(pa, z, order):
    """extfrag_for_order(): percent of free memory not in blocks of the order or above."""
    fp, tot, sui = fill_contig_page_info(pa, z, order)
    if fp == 0:
        return np.int64(0)
    return ((fp - (sui << order)) * 100) // fp


@njit
def fragmentation_score_zone(pa, z):
    return extfrag_for_order(pa, z, COMPACTION_HPAGE_ORDER)


@njit
def node_present_pages(cs, pa, node):
    n = np.int64(0)
    for z in range(pa.z_start.shape[0]):
        if pa.z_node[z] == node:
            n += cs.cz[z, CZ_PRESENT]
    return n


@njit
def fragmentation_score_zone_weighted(cs, pa, z):
    score = cs.cz[z, CZ_PRESENT] * fragmentation_score_zone(pa, z)
    return score // (node_present_pages(cs, pa, pa.z_node[z]) + 1)


@njit
def fragmentation_score_node(cs, pa, node):
    score = np.int64(0)
    for z in range(pa.z_start.shape[0]):
        if pa.z_node[z] != node or pa.z_managed[z] == 0:
            continue
        score += fragmentation_score_zone_weighted(cs, pa, z)
    return score


@njit
def fragmentation_score_wmark(cs, low):
    wmark_low = max(100 - cs.cfg[CFG_PROACTIVENESS], 5)
    if low:
        return np.int64(wmark_low)
    return np.int64(min(wmark_low + 10, 100))


@njit
def should_proactive_compact_node(cs, pa, node):
    if cs.cfg[CFG_PROACTIVENESS] == 0 or cs.cfg[CFG_KSWAPD_RUNNING] != 0:
        return False
    return fragmentation_score_node(cs, pa, node) > fragmentation_score_wmark(cs, False)


# ------------------------------------------------------------------ suitability and deferral


@njit
def __compaction_suitable(pa, z, order, highest_zoneidx, wmark_target):
    if order > PAGE_ALLOC_COSTLY_ORDER:
        watermark = core.wmark_pages(pa, z, G.WMARK_LOW)
    else:
        watermark = core.wmark_pages(pa, z, G.WMARK_MIN)
    watermark += compact_gap(order)
    return core.__zone_watermark_ok(pa, z, 0, watermark, highest_zoneidx, core.ALLOC_CMA, wmark_target)


@njit
def compaction_suitable_result(cs, pa, z, order, highest_zoneidx):
    """compaction_suitable()'s compact_result (the value mm_compaction_suitable prints)."""
    if not __compaction_suitable(pa, z, order, highest_zoneidx, pa.z_free[z]):
        r = COMPACT_SKIPPED
    else:
        r = COMPACT_CONTINUE
        if order > PAGE_ALLOC_COSTLY_ORDER:
            fi = fragmentation_index(pa, z, order)
            if 0 <= fi <= cs.cfg[CFG_EXTFRAG_THRESHOLD]:
                r = COMPACT_NOT_SUITABLE_ZONE
    _log(cs, EV_SUITABLE, z, order, r, 0, 0, 0)
    return r


@njit
def compaction_suitable(cs, pa, z, order, highest_zoneidx):
    return compaction_suitable_result(cs, pa, z, order, highest_zoneidx) == COMPACT_CONTINUE


@njit
def compaction_suit_allocation_order(cs, pa, z, order, highest_zoneidx, alloc_flags):
    """COMPACT_SUCCESS if the allocation would succeed now, COMPACT_SKIPPED if compaction is
    not suitable, else COMPACT_CONTINUE."""
    mark = core.wmark_pages(pa, z, alloc_flags & G.ALLOC_WMARK_MASK)
    if core.zone_watermark_ok(pa, z, order, mark, highest_zoneidx, alloc_flags):
        return COMPACT_SUCCESS
    if not compaction_suitable(cs, pa, z, order, highest_zoneidx):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


@njit
def defer_compaction(cs, z, order):
    cz = cs.cz
    cz[z, CZ_CONSIDERED] = 0
    cz[z, CZ_DEFER_SHIFT] += 1
    if order < cz[z, CZ_ORDER_FAILED]:
        cz[z, CZ_ORDER_FAILED] = order
    if cz[z, CZ_DEFER_SHIFT] > COMPACT_MAX_DEFER_SHIFT:
        cz[z, CZ_DEFER_SHIFT] = COMPACT_MAX_DEFER_SHIFT
    _log(cs, EV_DEFER, z, order, cz[z, CZ_CONSIDERED], cz[z, CZ_DEFER_SHIFT], cz[z, CZ_ORDER_FAILED], 0)


@njit
def compaction_deferred(cs, z, order):
    """True if compaction of zone z at ``order`` should be skipped this time."""
    cz = cs.cz
    defer_limit = np.int64(1) << cz[z, CZ_DEFER_SHIFT]
    if order < cz[z, CZ_ORDER_FAILED]:
        return False
    cz[z, CZ_CONSIDERED] += 1
    if cz[z, CZ_CONSIDERED] >= defer_limit:
        cz[z, CZ_CONSIDERED] = defer_limit
        return False
    _log(cs, EV_DEFERRED, z, order, cz[z, CZ_CONSIDERED], cz[z, CZ_DEFER_SHIFT], cz[z, CZ_ORDER_FAILED], 0)
    cs.stats[CS_DEFERRED] += 1
    return True


@njit
def compaction_defer_reset(cs, z, order, alloc_success):
    cz = cs.cz
    if alloc_success:
        cz[z, CZ_CONSIDERED] = 0
        cz[z, CZ_DEFER_SHIFT] = 0
    if order >= cz[z, CZ_ORDER_FAILED]:
        cz[z, CZ_ORDER_FAILED] = order + 1


@njit
def compaction_restarting(cs, z, order):
    cz = cs.cz
    if order < cz[z, CZ_ORDER_FAILED]:
        return False
    return (cz[z, CZ_DEFER_SHIFT] == COMPACT_MAX_DEFER_SHIFT
            and cz[z, CZ_CONSIDERED] >= (np.int64(1) << cz[z, CZ_DEFER_SHIFT]))


@njit
def reset_cached_positions(cs, pa, z):
    cz = cs.cz
    cz[z, CZ_CACHED_MIGRATE_ASYNC] = pa.z_start[z]
    cz[z, CZ_CACHED_MIGRATE_SYNC] = pa.z_start[z]
    cz[z, CZ_CACHED_FREE] = pageblock_start_pfn(cz[z, CZ_END] - 1)


@njit
def __reset_isolation_suitable(cs, pa, z):
    """Clear the zone's skip bits (Linux samples each block for an LRU or buddy page first and
    also moves the cached positions to the first such blocks: here every bit is cleared and
    the positions go to the zone's ends)."""
    if cs.cz[z, CZ_BLOCKSKIP_FLUSH] == 0:
        return
    cs.cz[z, CZ_BLOCKSKIP_FLUSH] = 0
    s = pageblock_start_pfn(pa.z_start[z])
    e = cs.cz[z, CZ_END]
    for p in range(s, e, np.int64(1) << PAGEBLOCK_ORDER):
        if pa.pb_zone[p >> PAGEBLOCK_ORDER] == z:
            clear_pageblock_skip(pa, p)


@njit
def reset_isolation_suitable(cs, pa):
    for z in range(pa.z_start.shape[0]):
        if pa.z_managed[z] > 0:
            __reset_isolation_suitable(cs, pa, z)


# ------------------------------------------------------------------ the free scanner


@njit
def _fp_add(cs, pfn, order):
    n = cs.fpn[order]
    cs.fp[order, n] = pfn
    cs.fpn[order] = n + 1


@njit
def _fp_room(cs):
    for o in range(NR_PAGE_ORDERS):
        if cs.fpn[o] >= FP_CAP - 2 * NR_PAGE_ORDERS:
            return False
    return True


@njit
def _is_compound_alloc(pa, ms, pfn):
    """compound_order(page) of an allocation head, 0 otherwise (a folio's order, or the
    page_owner entry's order for other allocations)."""
    s = ms.pfn_slot[pfn] - 1
    if s >= 0 and ms.pfn[s] == pfn:
        return np.int64(ms.order[s])
    v = pa.owner[pfn]
    if v != core.OWNER_NONE and v != core.OWNER_PCP and v != core.OWNER_RESERVED:
        return np.int64(core.owner_order(v))
    return np.int64(0)


@njit
def isolate_freepages_block(cs, ms, pa, z, start, end, stride):
    """isolate_freepages_block() (not strict): take free blocks with heads in [start, end)
    onto cc->freepages; returns (pfn reached, pages isolated)."""
    cc = cs.cc
    nr_scanned = np.int64(0)
    total = np.int64(0)
    p = start
    wmin = core.wmark_pages(pa, z, G.WMARK_MIN)
    while p < end:
        nr_scanned += 1
        k = _is_compound_alloc(pa, ms, p)
        if k > 0:
            if p + (np.int64(1) << k) <= end:
                p += (np.int64(1) << k) - 1
                nr_scanned += (np.int64(1) << k) - 1
            p += stride
            continue
        order = pa_free_block(pa, p)
        if order < 0:
            p += stride
            continue
        # __isolate_free_page(): keep the order-0 min watermark
        if not core.zone_watermark_ok(pa, z, 0, wmin + (np.int64(1) << order), 0, core.ALLOC_CMA):
            break
        if not _fp_room(cs) or pa_isolate_free(pa, p, order) != 0:
            break
        isolated = np.int64(1) << order
        _fp_add(cs, p, order)
        nr_scanned += isolated - 1
        total += isolated
        cc[CC_NR_FREEPAGES] += isolated
        cs.stats[CS_FREE_ISOLATED] += isolated
        if cc[CC_NR_MIGRATEPAGES] <= cc[CC_NR_FREEPAGES]:
            p += isolated
            break
        p += isolated
    if p > end:
        p = end
    _log(cs, EV_ISOLATE_FREE, start, p, nr_scanned, total, 0, 0)
    cc[CC_FREE_SCANNED] += nr_scanned
    cs.stats[CS_FREE_SCANNED] += nr_scanned
    if cc[CC_DIRECT] == 0 and cc[CC_PROACTIVE] == 0 and cc[CC_ORDER] != -1:
        cs.stats[CS_DAEMON_FREE_SCANNED] += nr_scanned
    if total > 0:
        cs.stats[CS_ISOLATED] += total
    return p, total


@njit
def suitable_migration_target(cs, ms, pa, pfn):
    """A free block of pageblock order (or the requested order) is not broken up; otherwise
    MOVABLE (or CMA) pageblocks only."""
    order = pa_free_block(pa, pfn)
    if order >= 0:
        lim = cs.cc[CC_ORDER] if cs.cc[CC_ORDER] > 0 else PAGEBLOCK_ORDER
        if order >= lim:
            return False
    mt = core.get_pfnblock_migratetype(pa, pfn)
    return mt == core.MT_MOVABLE or mt == core.MT_CMA


@njit
def isolation_suitable(cs, pa, pfn):
    if cs.cc[CC_IGNORE_SKIP] != 0:
        return True
    return not get_pageblock_skip(pa, pfn)


@njit
def update_pageblock_skip(cs, pa, pfn, cached):
    set_pageblock_skip(pa, pfn)
    z = cs.cc[CC_ZONE]
    if cached < cs.cz[z, CZ_CACHED_FREE]:
        cs.cz[z, CZ_CACHED_FREE] = cached


@njit
def isolate_freepages(cs, ms, pa):
    """isolate_freepages(): walk down from cc->free_pfn to the migrate scanner's pageblock."""
    cc = cs.cc
    z = cc[CC_ZONE]
    pbn = np.int64(1) << PAGEBLOCK_ORDER
    isolate_start = cc[CC_FREE_PFN]
    bstart = pageblock_start_pfn(isolate_start)
    bend = min(bstart + pbn, cs.cz[z, CZ_END])
    low_pfn = pageblock_end_pfn(cc[CC_MIGRATE_PFN])
    stride = np.int64(COMPACT_CLUSTER_MAX) if cc[CC_MODE] == M.MIGRATE_ASYNC else np.int64(1)
    while bstart >= low_pfn:
        if pageblock_valid(cs, pa, bstart, bend, z) and suitable_migration_target(cs, ms, pa, bstart) \
                and isolation_suitable(cs, pa, bstart):
            p, nr = isolate_freepages_block(cs, ms, pa, z, isolate_start, bend, stride)
            isolate_start = p
            if isolate_start == bend and cc[CC_IGNORE_SKIP] == 0:
                update_pageblock_skip(cs, pa, bstart, bstart - pbn)
            if cc[CC_NR_FREEPAGES] >= cc[CC_NR_MIGRATEPAGES] or not _fp_room(cs):
                if isolate_start >= bend:
                    isolate_start = bstart - pbn
                break
            elif isolate_start < bend:
                break
            if nr > 0:
                stride = 1
            else:
                stride = min(np.int64(COMPACT_CLUSTER_MAX), stride << 1)
        bend = bstart
        bstart -= pbn
        isolate_start = bstart
    cc[CC_FREE_PFN] = isolate_start


@njit
def compaction_alloc(cs, ms, ss, pa, order):
    """compaction_alloc(): a destination of 2^order pages from cc->freepages (splitting the
    smallest larger block, the halves going back), isolating more when they are empty.  The
    head pfn (an untyped allocation of that order) or -1."""
    cc = cs.cc
    for attempt in range(2):
        start = order
        while start < NR_PAGE_ORDERS and cs.fpn[start] == 0:
            start += 1
        if start == NR_PAGE_ORDERS:
            if attempt == 0:
                isolate_freepages(cs, ms, pa)
                continue
            return np.int64(-1)
        n = cs.fpn[start] - 1
        pfn = cs.fp[start, n]
        if start > order:
            if not pa_split_prepare(pa, start - order):
                return np.int64(-1)
            if not pa_split_alloc(pa, pfn, start, pfn, order, 0):
                return np.int64(-1)
        cs.fpn[start] = n
        k = start
        while k > order:
            k -= 1
            _fp_add(cs, pfn + (np.int64(1) << k), k)
        cc[CC_NR_FREEPAGES] -= np.int64(1) << order
        cc[CC_NR_MIGRATEPAGES] -= np.int64(1) << order
        return pfn
    return np.int64(-1)


@njit
def compaction_free(cs, pfn, order):
    """compaction_free(): an unused destination goes back to cc->freepages."""
    _fp_add(cs, pfn, order)
    cs.cc[CC_NR_FREEPAGES] += np.int64(1) << order
    cs.cc[CC_NR_MIGRATEPAGES] += np.int64(1) << order


@njit
def release_free_list(cs, pa, cpu):
    """release_free_list(): every isolated free block back to the allocator; the highest pfn."""
    high = np.int64(0)
    for o in range(NR_PAGE_ORDERS):
        for i in range(cs.fpn[o]):
            p = cs.fp[o, i]
            pa_free(pa, p, o, cpu)
            cs.stats[CS_FREE_RELEASED] += np.int64(1) << o
            if p > high:
                high = p
        cs.fpn[o] = 0
    cs.cc[CC_NR_FREEPAGES] = 0
    return high


# ------------------------------------------------------------------ the migrate scanner


@njit
def _putback(ms, ss, pa, s, lru, cpu):
    """folio_putback_lru(): back on its LRU list, the isolation reference dropped (folio_put:
    the folio is freed if that was the last one)."""
    if lru >= 0:
        F.lru_add(ms, s, lru, False)
    F.folio_put_refs(ms, ss, pa, s, 1, cpu)


@njit
def isolate_migratepages_block(cs, ms, pa, low, end):
    """isolate_migratepages_block(): isolate LRU folios from [low, end) (one pageblock) onto the
    migrate list, at most COMPACT_CLUSTER_MAX pages; cc->migrate_pfn becomes the pfn reached."""
    cc = cs.cc
    z = cc[CC_ZONE]
    start = low
    nr_scanned = np.int64(0)
    nr_isolated = np.int64(0)
    valid = False
    skip_abort = False
    async_migrate = cc[CC_MODE] != M.MIGRATE_SYNC
    while low < end:
        nr_scanned += 1
        if not valid and ((low & ((np.int64(1) << PAGEBLOCK_ORDER) - 1)) == 0 or low == pa.z_start[z]):
            if not isolation_suitable(cs, pa, low):
                low = end
                skip_abort = True
                break
            valid = True
        fo = pa_free_block(pa, low)
        if fo >= 0:
            if fo > 0:
                low += (np.int64(1) << fo) - 1
                nr_scanned += (np.int64(1) << fo) - 1
            low += 1
            continue
        s = ms.pfn_slot[low] - 1
        k = _is_compound_alloc(pa, ms, low)
        if k > 0:
            skip = k >= PAGEBLOCK_ORDER or (cc[CC_ORDER] != -1 and k >= cc[CC_ORDER])
            if skip or s < 0 or ms.lru[s] < 0:
                low += (np.int64(1) << k) - 1
                nr_scanned += (np.int64(1) << k) - 1
                low += 1
                continue
        if s < 0 or ms.pfn[s] != low or not F.folio_live(ms, s) or ms.lru[s] < 0:
            low += 1      # not an LRU folio head (kernel page, slab, a tail of an unisolated folio)
            continue
        nrp = np.int64(1) << ms.order[s]
        # a pinned anon folio cannot be migrated: not worth isolating (Linux tests
        # folio_ref_count - 1 > folio_mapcount after its folio_try_get, i.e. ref > mapcount here)
        if ms.mapping[s] == 0 and ms.ref[s] > F.folio_mapcount(ms, s):
            low += 1
            continue
        if (cc[CC_GFP] & G.__GFP_FS) == 0 and ms.mapping[s] != 0:
            low += 1
            continue
        if cs.cfg[CFG_UNEVICTABLE_ALLOWED] == 0 and ms.lru[s] == F.LRU_UNEVICTABLE:
            low += 1
            continue
        if async_migrate and (ms.flags[s] & (np.int64(1) << mmap.PG_writeback)) != 0:
            low += 1
            continue
        # folio_try_get + folio_test_clear_lru + lruvec_del_folio: isolated, with a reference
        ms.ref[s] += 1
        n = cc[CC_NR_MLIST]
        cs.mlist[n] = s
        cs.tmp_out[n] = ms.lru[s]
        cc[CC_NR_MLIST] = n + 1
        F.lru_del(ms, s)
        cc[CC_NR_MIGRATEPAGES] += nrp
        nr_isolated += nrp
        nr_scanned += nrp - 1
        low += nrp
        if cc[CC_NR_MIGRATEPAGES] >= COMPACT_CLUSTER_MAX and cc[CC_FINISH_PAGEBLOCK] == 0:
            break
        if cc[CC_NR_MLIST] >= COMPACT_CLUSTER_MAX:
            break
    if low > end:
        low = end
    if not skip_abort and low == end and (nr_isolated == 0 or cc[CC_FINISH_PAGEBLOCK] != 0):
        if valid and cc[CC_IGNORE_SKIP] == 0:
            set_pageblock_skip(pa, start)
        update_cached_migrate(cs, low)
    _log(cs, EV_ISOLATE_MIGRATE, start, low, nr_scanned, nr_isolated, 0, 0)
    cc[CC_MIGRATE_SCANNED] += nr_scanned
    cs.stats[CS_MIGRATE_SCANNED] += nr_scanned
    if cc[CC_DIRECT] == 0 and cc[CC_PROACTIVE] == 0 and cc[CC_ORDER] != -1:
        cs.stats[CS_DAEMON_MIGRATE_SCANNED] += nr_scanned
    cs.stats[CS_ISOLATED] += nr_isolated
    cc[CC_MIGRATE_PFN] = low
    return 0


@njit
def update_cached_migrate(cs, pfn):
    z = cs.cc[CC_ZONE]
    p = pageblock_end_pfn(pfn)
    if p > cs.cz[z, CZ_CACHED_MIGRATE_ASYNC]:
        cs.cz[z, CZ_CACHED_MIGRATE_ASYNC] = p
    if cs.cc[CC_MODE] != M.MIGRATE_ASYNC and p > cs.cz[z, CZ_CACHED_MIGRATE_SYNC]:
        cs.cz[z, CZ_CACHED_MIGRATE_SYNC] = p


@njit
def suitable_migration_source(cs, pa, pfn):
    cc = cs.cc
    if cc[CC_MODE] != M.MIGRATE_ASYNC or cc[CC_DIRECT] == 0:
        return True
    mt = core.get_pfnblock_migratetype(pa, pfn)
    if cc[CC_MIGRATETYPE] == core.MT_MOVABLE:
        return mt == core.MT_MOVABLE or mt == core.MT_CMA
    return mt == cc[CC_MIGRATETYPE]


@njit
def isolate_migratepages(cs, ms, pa):
    """isolate_migratepages(): the first suitable pageblock from cc->migrate_pfn."""
    cc = cs.cc
    z = cc[CC_ZONE]
    pbn = np.int64(1) << PAGEBLOCK_ORDER
    low = cc[CC_MIGRATE_PFN]
    bstart = max(pageblock_start_pfn(low), pa.z_start[z])
    bend = pageblock_end_pfn(low)
    while bend <= cc[CC_FREE_PFN]:
        ok = pageblock_valid(cs, pa, bstart, bend, z)
        if ok and ((low & (pbn - 1)) == 0 or low == pa.z_start[z]) and not isolation_suitable(cs, pa, bstart):
            ok = False
        elif ok and not suitable_migration_source(cs, pa, bstart):
            update_cached_migrate(cs, bend)
            ok = False
        if ok:
            if isolate_migratepages_block(cs, ms, pa, low, bend) != 0:
                return ISOLATE_ABORT
            break
        low = bend
        cc[CC_MIGRATE_PFN] = low
        bstart = bend
        bend += pbn
    return ISOLATE_SUCCESS if cc[CC_NR_MLIST] > 0 else ISOLATE_NONE


# ------------------------------------------------------------------ compact_zone


@njit
def compact_scanners_met(cs):
    return (cs.cc[CC_FREE_PFN] >> PAGEBLOCK_ORDER) <= (cs.cc[CC_MIGRATE_PFN] >> PAGEBLOCK_ORDER)


@njit
def __compact_finished(cs, pa):
    cc = cs.cc
    z = cc[CC_ZONE]
    if compact_scanners_met(cs):
        reset_cached_positions(cs, pa, z)
        if cc[CC_WHOLE_ZONE] != 0 or cc[CC_DIRECT] != 0:
            cs.cz[z, CZ_BLOCKSKIP_FLUSH] = 1
        if cc[CC_WHOLE_ZONE] != 0:
            return COMPACT_COMPLETE
        return COMPACT_PARTIAL_SKIPPED
    if cc[CC_PROACTIVE] != 0:
        if cs.cfg[CFG_KSWAPD_RUNNING] != 0:
            return COMPACT_PARTIAL_SKIPPED
        if fragmentation_score_zone(pa, z) > fragmentation_score_wmark(cs, True):
            return COMPACT_CONTINUE
        return COMPACT_SUCCESS
    if is_via_compact_memory(cc[CC_ORDER]):
        return COMPACT_CONTINUE
    if (cc[CC_MIGRATE_PFN] & ((np.int64(1) << PAGEBLOCK_ORDER) - 1)) != 0:
        return COMPACT_CONTINUE
    mt = cc[CC_MIGRATETYPE]
    for o in range(cc[CC_ORDER], NR_PAGE_ORDERS):
        if pa.nr_free[z, o] == 0:
            continue
        if not core.free_area_empty(pa, z, o, mt):
            return COMPACT_SUCCESS
        if mt == core.MT_MOVABLE and pa.cfg[core.CFG_CMA] != 0 and not core.free_area_empty(pa, z, o, core.MT_CMA):
            return COMPACT_SUCCESS
        if core.find_suitable_fallback(pa, z, o, mt, True) >= 0:
            return COMPACT_SUCCESS
    if cc[CC_CONTENDED] != 0:
        return COMPACT_CONTENDED
    return COMPACT_NO_SUITABLE_PAGE


@njit
def compact_finished(cs, pa):
    r = __compact_finished(cs, pa)
    if r == COMPACT_NO_SUITABLE_PAGE:
        r = COMPACT_CONTINUE
    return r


@njit
def compact_control_init(cs, pa, z, order, mode, gfp, alloc_flags, highest_zoneidx, whole_zone, direct,
                         ignore_skip, proactive, capture, cpu):
    """A fresh compact_control for zone z."""
    cc = cs.cc
    cc[:] = 0
    cc[CC_ZONE] = z
    cc[CC_ORDER] = order
    cc[CC_MODE] = mode
    cc[CC_GFP] = gfp
    cc[CC_ALLOC_FLAGS] = alloc_flags
    cc[CC_HIGHEST_ZONEIDX] = highest_zoneidx
    cc[CC_WHOLE_ZONE] = 1 if whole_zone else 0
    cc[CC_DIRECT] = 1 if direct else 0
    cc[CC_IGNORE_SKIP] = 1 if ignore_skip else 0
    cc[CC_PROACTIVE] = 1 if proactive else 0
    cc[CC_CAPTURE] = 1 if capture else 0
    cc[CC_CAPTURED_PFN] = -1
    cc[CC_MIGRATETYPE] = core.gfp_migratetype(pa, gfp)
    cc[CC_CPU] = cpu
    cc[CC_RET] = COMPACT_CONTINUE


@njit
def compact_zone_start(cs, pa):
    """compact_zone() up to the loop: COMPACT_CONTINUE, or the result without compacting."""
    cc = cs.cc
    z = cc[CC_ZONE]
    order = cc[CC_ORDER]
    start = pa.z_start[z]
    end = cs.cz[z, CZ_END]
    cc[CC_START_PFN] = start
    cc[CC_END_PFN] = end
    cs.stats[CS_ZONE_RUNS] += 1
    if not is_via_compact_memory(order):
        r = compaction_suit_allocation_order(cs, pa, z, order, cc[CC_HIGHEST_ZONEIDX], cc[CC_ALLOC_FLAGS])
        if r != COMPACT_CONTINUE:
            cc[CC_RET] = r
            return r
    if compaction_restarting(cs, z, order):
        __reset_isolation_suitable(cs, pa, z)
    cz = cs.cz
    sync = 1 if cc[CC_MODE] != M.MIGRATE_ASYNC else 0
    if cc[CC_WHOLE_ZONE] != 0:
        cc[CC_MIGRATE_PFN] = start
        cc[CC_FREE_PFN] = pageblock_start_pfn(end - 1)
    else:
        cc[CC_MIGRATE_PFN] = cz[z, CZ_CACHED_MIGRATE_ASYNC + sync]
        cc[CC_FREE_PFN] = cz[z, CZ_CACHED_FREE]
        if cc[CC_FREE_PFN] < start or cc[CC_FREE_PFN] >= end:
            cc[CC_FREE_PFN] = pageblock_start_pfn(end - 1)
            cz[z, CZ_CACHED_FREE] = cc[CC_FREE_PFN]
        if cc[CC_MIGRATE_PFN] < start or cc[CC_MIGRATE_PFN] >= end:
            cc[CC_MIGRATE_PFN] = start
            cz[z, CZ_CACHED_MIGRATE_ASYNC] = start
            cz[z, CZ_CACHED_MIGRATE_SYNC] = start
        if cc[CC_MIGRATE_PFN] <= cz[z, CZ_INIT_MIGRATE]:
            cc[CC_WHOLE_ZONE] = 1
    cc[CC_LAST_MIGRATED] = 0
    cc[CC_UPDATE_CACHED] = 1 if (sync == 0 and cz[z, CZ_CACHED_MIGRATE_ASYNC] == cz[z, CZ_CACHED_MIGRATE_SYNC]) \
        else 0
    _log(cs, EV_BEGIN, start, cc[CC_MIGRATE_PFN], cc[CC_FREE_PFN], end, sync, z)
    return COMPACT_CONTINUE


@njit
def _capture_check(cs, pa, lo, hi):
    """compaction_capture(): a free block of cc->order formed in [lo, hi) is taken (the first
    found; its extra halves go back).  True when captured."""
    cc = cs.cc
    order = cc[CC_ORDER]
    size = np.int64(1) << order
    p = block_start_pfn(lo, order)
    while p < hi:
        fo = pa_free_block(pa, p)
        if fo >= order:
            mt = core.get_pfnblock_migratetype(pa, p)
            ok = mt != core.MT_CMA and mt != core.MT_ISOLATE
            if order < PAGEBLOCK_ORDER and mt == core.MT_MOVABLE and cc[CC_MIGRATETYPE] != core.MT_MOVABLE:
                ok = False
            if ok and pa_isolate_free(pa, p, fo) == 0:
                if fo > order:
                    if pa_split_prepare(pa, fo - order) and pa_split_alloc(pa, p, fo, p, order, 0):
                        # the other pieces of the block go back to the allocator
                        q = p + size
                        k = order
                        while k < fo:
                            pa_free(pa, q, k, cc[CC_CPU])
                            q += np.int64(1) << k
                            k += 1
                    else:
                        pa_free(pa, p, fo, cc[CC_CPU])
                        p += size
                        continue
                cc[CC_CAPTURED_PFN] = p
                cs.stats[CS_CAPTURED] += 1
                return True
        p += size
    return False


@njit
def _migrate_batch(cs, ms, ss, pa):
    """migrate_pages(cc->migratepages, compaction_alloc, compaction_free, MR_COMPACTION): each
    folio gets a destination from compaction_alloc and moves; a large folio for which none can
    be had is split to order 0 (try_split_folio) and its pieces migrate in the same call;
    -ENOMEM otherwise ends the call.  Failed folios go back to their LRU lists, unused
    destinations to the free lists.  Returns (err, nr_succeeded pages, nr_failed folios)."""
    cc = cs.cc
    n = cc[CC_NR_MLIST]
    cap = n + MAX_SPLIT_PIECES
    ws = np.empty(cap, np.int64)
    wl = np.empty(cap, np.int64)
    for i in range(n):
        ws[i] = cs.mlist[i]
        wl[i] = cs.tmp_out[i]
    cnt = n
    cc[CC_NR_MLIST] = 0
    st = cs.mstats
    st[M.MS_CALLS] += 1
    s0 = st[M.MS_SUCCEEDED_PAGES]
    f0 = st[M.MS_FAILED]
    b0 = st[M.MS_FAILED_BUSY]
    n0 = st[M.MS_FAILED_NOMEM_DESC]
    d0 = st[M.MS_DESC_ALLOCS]
    sd0 = ms.ostat[F.OP_SPLIT, F.OS_DESC_ALLOCS]
    pieces = np.empty(F.MAX_PIECES, np.int64)
    err = np.int64(0)
    nsplit = np.int64(0)
    i = 0
    while i < cnt:
        s = ws[i]
        if err != 0:
            _putback(ms, ss, pa, s, wl[i], cc[CC_CPU])
            st[M.MS_NOT_TRIED] += 1
            i += 1
            continue
        order = np.int64(ms.order[s])
        d = compaction_alloc(cs, ms, ss, pa, order)
        if d < 0:
            if order > 0 and cnt + (np.int64(1) << order) <= cap:
                r = F.folio_split(ms, ss, pa, s, 0, 0, True, cc[CC_CPU], pieces)
                if r > 0:
                    nsplit += 1
                    for k in range(r):
                        if pieces[k] >= 0:
                            if k > 0:        # split to the migrate list: every piece holds a reference
                                ms.ref[pieces[k]] += 1
                            ws[cnt] = pieces[k]
                            wl[cnt] = wl[i]
                            cnt += 1
                    i += 1
                    continue
            st[M.MS_FAILED] += 1
            _putback(ms, ss, pa, s, wl[i], cc[CC_CPU])
            err = np.int64(-12)
            i += 1
            continue
        r, ns = M.migrate_one(ms, ss, pa, s, d, cc[CC_CPU], st)
        if r == M.MIG_OK:
            _putback(ms, ss, pa, ns, wl[i], cc[CC_CPU])
        else:
            compaction_free(cs, d, order)
            _putback(ms, ss, pa, s, wl[i], cc[CC_CPU])
            if r == M.MIG_ENOMEM or r == F.E_NOCAP:
                err = np.int64(-12)
                if r == F.E_NOCAP:
                    cs.stats[CS_NOCAP_STOPS] += 1
        i += 1
    succeeded = st[M.MS_SUCCEEDED_PAGES] - s0
    failed = st[M.MS_FAILED] - f0
    cc[CC_NR_MIGRATEPAGES] = 0
    cs.stats[CS_MIGRATED] += succeeded
    cs.stats[CS_MIGRATE_FAILED] += failed
    cs.stats[CS_FAILED_BUSY] += st[M.MS_FAILED_BUSY] - b0
    cs.stats[CS_DESC_FAILED] += st[M.MS_FAILED_NOMEM_DESC] - n0
    cs.stats[CS_DESC_ALLOCS] += st[M.MS_DESC_ALLOCS] - d0
    cs.stats[CS_SPLITS] += nsplit
    cs.stats[CS_SPLIT_DESC_ALLOCS] += ms.ostat[F.OP_SPLIT, F.OS_DESC_ALLOCS] - sd0
    cs.stats[CS_MIGRATE_BATCHES] += 1
    _log(cs, EV_MIGRATEPAGES, succeeded, failed, st[M.MS_FAILED_NOMEM_DESC] - n0, st[M.MS_DESC_ALLOCS] - d0,
         nsplit, 0)
    return err, succeeded, failed


@njit
def compact_zone_loop(cs, ms, ss, pa):
    """The loop of compact_zone(); the result, or NEEDCAP (nothing half done: grow the folio and
    slab states and call again)."""
    cc = cs.cc
    z = cc[CC_ZONE]
    while True:
        if not F.headroom_ok(ms, ss):
            return NEEDCAP
        ret = compact_finished(cs, pa)
        if ret != COMPACT_CONTINUE:
            return ret
        iteration_start = cc[CC_MIGRATE_PFN]
        cc[CC_FINISH_PAGEBLOCK] = 0
        if pageblock_start_pfn(cc[CC_LAST_MIGRATED]) == pageblock_start_pfn(iteration_start):
            cc[CC_FINISH_PAGEBLOCK] = 1
        r = isolate_migratepages(cs, ms, pa)
        if r == ISOLATE_ABORT:
            return COMPACT_CONTENDED
        if r == ISOLATE_SUCCESS:
            cc[CC_UPDATE_CACHED] = 0
            cc[CC_LAST_MIGRATED] = max(pa.z_start[z], pageblock_start_pfn(cc[CC_MIGRATE_PFN] - 1))
            err, _ok, _fail = _migrate_batch(cs, ms, ss, pa)
            if err != 0:
                if err == -12 and not compact_scanners_met(cs):
                    return COMPACT_CONTENDED
            if cc[CC_CAPTURE] != 0 and cc[CC_CAPTURED_PFN] >= 0:
                return COMPACT_SUCCESS
        elif cc[CC_UPDATE_CACHED] != 0:
            cs.cz[z, CZ_CACHED_MIGRATE_ASYNC] = cc[CC_MIGRATE_PFN]
        # check_drain: leaving an order-aligned block, the per-CPU pages reach the buddy
        if cc[CC_ORDER] > 0 and cc[CC_LAST_MIGRATED] != 0:
            cur = block_start_pfn(cc[CC_MIGRATE_PFN], cc[CC_ORDER])
            if cc[CC_LAST_MIGRATED] < cur:
                pa_drain(pa)
                if cc[CC_CAPTURE] != 0 and _capture_check(cs, pa, cc[CC_LAST_MIGRATED], cur):
                    cc[CC_LAST_MIGRATED] = 0
                    return COMPACT_SUCCESS
                cc[CC_LAST_MIGRATED] = 0


@njit
def compact_zone_end(cs, ms, ss, pa, ret):
    """The end of compact_zone(): leftover isolated folios back, free pages released."""
    cc = cs.cc
    z = cc[CC_ZONE]
    for i in range(cc[CC_NR_MLIST]):
        _putback(ms, ss, pa, cs.mlist[i], cs.tmp_out[i], cc[CC_CPU])
    cc[CC_NR_MLIST] = 0
    if cc[CC_NR_FREEPAGES] > 0 or cs.fpn.sum() > 0:
        high = pageblock_start_pfn(release_free_list(cs, pa, cc[CC_CPU]))
        if high > cs.cz[z, CZ_CACHED_FREE]:
            cs.cz[z, CZ_CACHED_FREE] = high
    cc[CC_RET] = ret
    sync = 1 if cc[CC_MODE] != M.MIGRATE_ASYNC else 0
    _log(cs, EV_END, cc[CC_START_PFN], cc[CC_MIGRATE_PFN], cc[CC_FREE_PFN], cc[CC_END_PFN], sync, ret)
    return ret


@njit
def compact_zone(cs, ms, ss, pa):
    """compact_zone() of the compact_control set by compact_control_init(); a capacity stop
    ends the run as COMPACT_CONTENDED (counted: capacity_stops)."""
    r = compact_zone_start(cs, pa)
    if r != COMPACT_CONTINUE:
        return r
    r = compact_zone_loop(cs, ms, ss, pa)
    if r == NEEDCAP:
        cs.stats[CS_NOCAP_STOPS] += 1
        r = COMPACT_CONTENDED
    return compact_zone_end(cs, ms, ss, pa, r)


# ------------------------------------------------------------------ callers


@njit
def compact_zone_order(cs, ms, ss, pa, z, order, gfp, prio, alloc_flags, highest_zoneidx, cpu):
    mode = M.MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else M.MIGRATE_SYNC_LIGHT
    full = prio == MIN_COMPACT_PRIORITY
    compact_control_init(cs, pa, z, order, mode, gfp, alloc_flags, highest_zoneidx, full, True, full, False, True,
                         cpu)
    r = compact_zone(cs, ms, ss, pa)
    captured = cs.cc[CC_CAPTURED_PFN]
    if captured >= 0:
        r = COMPACT_SUCCESS
    return r, captured


@njit
def _highest_zoneidx(pa, gfp):
    hz = pa.gfp_zone_table[gfp & core.GFP_ZONEMASK]
    if hz < 0:
        return np.int64(0)
    return np.int64(hz)


@njit
def try_to_compact_pages(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu):
    """try_to_compact_pages(): direct compaction for an allocation of ``order`` that failed.

    Every zone of the preferred node's zonelist up to gfp's highest zone, deferred zones
    skipped unless prio is COMPACT_PRIO_SYNC_FULL; stops at the first COMPACT_SUCCESS.
    Returns ``(status, captured_pfn)``: the highest compact_result over the zones and the head
    pfn of a captured block of ``order`` (an allocation the caller now owns, untyped, its
    page_owner entry MOVABLE), or -1.  Without __GFP_IO nothing is done (COMPACT_SKIPPED)."""
    rc = COMPACT_SKIPPED
    if (gfp & G.__GFP_IO) == 0:
        return np.int64(rc), np.int64(-1)
    cs.stats[CS_COMPACT_STALL] += 1
    hz = _highest_zoneidx(pa, gfp)
    node = 0
    captured = np.int64(-1)
    zl = pa.zonelist[node]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if pa.z_idx[z] > hz or pa.z_managed[z] == 0:
            continue
        if prio > MIN_COMPACT_PRIORITY and compaction_deferred(cs, z, order):
            rc = max(rc, COMPACT_DEFERRED)
            continue
        status, cap = compact_zone_order(cs, ms, ss, pa, z, order, gfp, prio, alloc_flags, hz, cpu)
        rc = max(status, rc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(cs, z, order, False)
            captured = cap
            break
        if prio != COMPACT_PRIO_ASYNC and (status == COMPACT_COMPLETE or status == COMPACT_PARTIAL_SKIPPED):
            defer_compaction(cs, z, order)
    if rc == COMPACT_SUCCESS:
        cs.stats[CS_COMPACT_SUCCESS] += 1
    else:
        cs.stats[CS_COMPACT_FAIL] += 1
    return np.int64(rc), captured


def direct_compact_pages(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu):
    """The slow path's call of try_to_compact_pages(): (status, captured pfn or -1).

    (COMPACT_SKIPPED, -1) -- as try_to_compact_pages() of a kernel built without
    CONFIG_COMPACTION -- when direct compaction is off in ``cs`` (``CFG_DIRECT``) or the design
    registers no compaction primitives (LLFree): the choice is made at compile time from the
    design's state type, so the MM's allocation entry compiles for every design."""
    if cs.cfg[CFG_DIRECT] == 0 or not dispatch.has(type(pa), *dispatch.COMPACTION_PRIMITIVES):
        return np.int64(COMPACT_SKIPPED), np.int64(-1)
    return try_to_compact_pages(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu)


@overload(direct_compact_pages, prefer_literal=False)
def _direct_compact_pages_typer(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu):
    if dispatch.has(type(pa), *dispatch.COMPACTION_PRIMITIVES):
        def impl(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu):
            if cs.cfg[CFG_DIRECT] == 0:
                return np.int64(COMPACT_SKIPPED), np.int64(-1)
            return try_to_compact_pages(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu)
    else:
        def impl(cs, ms, ss, pa, gfp, order, alloc_flags, prio, cpu):
            return np.int64(COMPACT_SKIPPED), np.int64(-1)
    return impl


@njit
def compaction_zonelist_suitable(pa, order, highest_zoneidx, reclaimable):
    """compaction_zonelist_suitable(): would any zone pass __compaction_suitable (min watermark)
    with its free pages plus ``reclaimable / order`` (the caller's zone_reclaimable_pages: the
    model's LRU is per node, so the node's count stands for each zone's)?"""
    if order <= 0:
        return False
    zl = pa.zonelist[0]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if pa.z_idx[z] > highest_zoneidx or pa.z_managed[z] == 0:
            continue
        if __compaction_suitable(pa, z, order, highest_zoneidx, pa.z_free[z] + reclaimable // order):
            return True
    return False


@njit
def compact_node(cs, ms, ss, pa, node, cpu):
    """compact_node() (vm.compact_memory): every populated zone of the node, order -1,
    MIGRATE_SYNC, skip hints ignored, whole zone.  Returns the number of zones run, or NEEDCAP
    never: a capacity stop ends a zone as COMPACT_CONTENDED (counted)."""
    nz = 0
    for z in range(pa.z_start.shape[0]):
        if pa.z_node[z] != node or pa.z_managed[z] == 0:
            continue
        compact_control_init(cs, pa, z, -1, M.MIGRATE_SYNC, G.GFP_KERNEL, 0, pa.z_idx[z], True, False, True, False,
                             False, cpu)
        compact_zone(cs, ms, ss, pa)
        nz += 1
    return nz


@njit
def proactive_compact_node(cs, ms, ss, pa, node, cpu):
    for z in range(pa.z_start.shape[0]):
        if pa.z_node[z] != node or pa.z_managed[z] == 0:
            continue
        compact_control_init(cs, pa, z, -1, M.MIGRATE_SYNC_LIGHT, G.GFP_KERNEL, 0, pa.z_idx[z], True, False, True,
                             True, False, cpu)
        compact_zone(cs, ms, ss, pa)
    cs.stats[CS_PROACTIVE_RUNS] += 1


@njit
def kcompactd_do_work(cs, ms, ss, pa, node, order, highest_zoneidx, cpu):
    """kcompactd_do_work() after wakeup_kcompactd(order, highest_zoneidx): MIGRATE_SYNC_LIGHT,
    skip hints kept, each zone up to highest_zoneidx where compaction is suitable and not
    deferred."""
    cs.stats[CS_KCOMPACTD_WAKE] += 1
    for z in range(pa.z_start.shape[0]):
        if pa.z_node[z] != node or pa.z_managed[z] == 0 or pa.z_idx[z] > highest_zoneidx:
            continue
        if compaction_deferred(cs, z, order):
            continue
        if compaction_suit_allocation_order(cs, pa, z, order, pa.z_idx[z], G.ALLOC_WMARK_MIN) != COMPACT_CONTINUE:
            continue
        compact_control_init(cs, pa, z, order, M.MIGRATE_SYNC_LIGHT, G.GFP_KERNEL, G.ALLOC_WMARK_MIN,
                             pa.z_idx[z], False, False, False, False, False, cpu)
        status = compact_zone(cs, ms, ss, pa)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(cs, z, order, False)
        elif status == COMPACT_PARTIAL_SKIPPED or status == COMPACT_COMPLETE:
            defer_compaction(cs, z, order)


@njit
def kcompactd_timer(cs, ms, ss, pa, node, cpu):
    """One HPAGE_FRAG_CHECK_INTERVAL_MSEC tick of kcompactd without a wakeup: proactive
    compaction when the node's score is above the high mark; a run that does not lower the
    score defers the next 1 << COMPACT_MAX_DEFER_SHIFT ticks.  True if it compacted."""
    if cs.cfg[CFG_PROACTIVE_DEFER] > 0:
        cs.cfg[CFG_PROACTIVE_DEFER] -= 1
        return False
    if not should_proactive_compact_node(cs, pa, node):
        return False
    prev = fragmentation_score_node(cs, pa, node)
    proactive_compact_node(cs, ms, ss, pa, node, cpu)
    score = fragmentation_score_node(cs, pa, node)
    if score >= prev:
        cs.cfg[CFG_PROACTIVE_DEFER] = np.int64(1) << COMPACT_MAX_DEFER_SHIFT
    return True


# ------------------------------------------------------------------ Python facade


@dataclass
class ZoneRun:
    """One compact_zone() run, as mm_compaction_begin/end show it, with its totals."""

    zone: int
    start_pfn: int
    end_pfn: int
    migrate_pfn_begin: int
    free_pfn_begin: int
    migrate_pfn_end: int
    free_pfn_end: int
    status: str
    sync: bool


def check_compactable(pa) -> None:
    """ConfigError naming the design when it registers no compaction primitives
    (``dispatch.COMPACTION_PRIMITIVES``: what the free scanner needs)."""
    if not dispatch.has(type(pa), *dispatch.COMPACTION_PRIMITIVES):
        name = dispatch.impl(type(pa), "__design__") or type(pa).__name__
        raise ConfigError(f"design {name!r} cannot be compacted: it registers no compaction primitives "
                          f"({', '.join(dispatch.COMPACTION_PRIMITIVES)})")


class Compaction:
    """Compaction of a machine's folios (``Compaction(folios)``): the folio layer (and its
    slab and design) plus the compaction state.  Methods run the kernels, growing the folio
    and slab states between compaction rounds when they run short."""

    def __init__(self, folios: F.Folios, log_capacity: int = 1 << 16, present: np.ndarray | None = None,
                 direct: bool = True):
        check_compactable(folios.pa)
        self.folios = folios
        self.state = new_compact_state(folios.pa, present, log_capacity, direct)

    # -- plumbing
    def _states(self):
        f = self.folios
        return self.state, f.state, f.slab.state, f.pa

    def _grow(self) -> None:
        f = self.folios
        f.state = F.grow_memdesc_state(f.state, 4 * F.MAX_PIECES)
        f.slab.state = F.slab_state_headroom(f.slab.state, 4 * F.HEADROOM_SLABS)

    def _zone_run(self) -> int:
        """compact_zone() of the prepared compact_control, growing on capacity stops."""
        cs = self.state
        f = self.folios
        f._ensure()
        r = int(compact_zone_start(cs, f.pa))
        if r != COMPACT_CONTINUE:
            return r
        while True:
            f._ensure()
            r = int(compact_zone_loop(cs, f.state, f.slab.state, f.pa))
            if r != NEEDCAP:
                break
            self._grow()
        return int(compact_zone_end(cs, f.state, f.slab.state, f.pa, np.int64(r)))

    def _cpu(self, cpu: int) -> np.int64:
        return self.folios._cpu(cpu)

    # -- entry points
    def compact_memory(self, node: int = 0, cpu: int = 0) -> list[int]:
        """echo 1 > /proc/sys/vm/compact_memory: compact_node() of every populated zone; the
        status of each zone run."""
        pa = self.folios.pa
        out = []
        for z in range(pa.z_start.shape[0]):
            if int(pa.z_node[z]) != node or int(pa.z_managed[z]) == 0:
                continue
            compact_control_init(self.state, pa, np.int64(z), np.int64(-1), np.int64(M.MIGRATE_SYNC),
                                 np.int64(G.GFP_KERNEL), np.int64(0), np.int64(pa.z_idx[z]), True, False, True,
                                 False, False, self._cpu(cpu))
            out.append(self._zone_run())
        return out

    def try_to_compact_pages(self, gfp: int | str, order: int, alloc_flags: int = G.ALLOC_WMARK_MIN,
                             prio: int = DEF_COMPACT_PRIORITY, cpu: int = 0) -> tuple[int, int]:
        """Direct compaction (see :func:`try_to_compact_pages`): (status, captured pfn or -1)."""
        if not 0 <= int(order) <= MAX_PAGE_ORDER:
            raise ConfigError(f"order {order} out of range 0..{MAX_PAGE_ORDER}")
        if prio not in (COMPACT_PRIO_SYNC_FULL, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_ASYNC):
            raise ConfigError(f"prio must be 0 (sync_full), 1 (sync_light) or 2 (async), got {prio}")
        g = to_gfp(gfp)
        self._ensure_generous()
        cs, ms, ss, pa = self._states()
        r, cap = try_to_compact_pages(cs, ms, ss, pa, np.int64(g), np.int64(order), np.int64(alloc_flags),
                                      np.int64(prio), self._cpu(cpu))
        return int(r), int(cap)

    def kcompactd(self, order: int, highest_zoneidx: int | None = None, node: int = 0, cpu: int = 0) -> None:
        """A kcompactd wakeup for ``order`` (wakeup_kcompactd from kswapd)."""
        pa = self.folios.pa
        hz = int(pa.z_idx.max()) if highest_zoneidx is None else int(highest_zoneidx)
        self._ensure_generous()
        cs, ms, ss, pa = self._states()
        kcompactd_do_work(cs, ms, ss, pa, np.int64(node), np.int64(order), np.int64(hz), self._cpu(cpu))

    def kcompactd_timer(self, node: int = 0, cpu: int = 0) -> bool:
        """One proactive-compaction check of kcompactd (500 ms tick)."""
        self._ensure_generous()
        cs, ms, ss, pa = self._states()
        return bool(kcompactd_timer(cs, ms, ss, pa, np.int64(node), self._cpu(cpu)))

    def _ensure_generous(self) -> None:
        """Room for many compaction rounds inside one kernel call (the njit entry points stop a
        zone as COMPACT_CONTENDED, counted, if it still runs out)."""
        f = self.folios
        f._ensure()
        ms = f.state
        free = ms.pfn.shape[0] - int(ms.meta[F.MM_TOP]) + int(ms.meta[F.MM_NFREE])
        if free < 8 * F.MAX_PIECES:
            f.state = F.grow_memdesc_state(ms, 8 * F.MAX_PIECES)
        f.slab.state = F.slab_state_headroom(f.slab.state, 4 * F.HEADROOM_SLABS)

    # -- reading
    def stats(self) -> dict[str, int]:
        return {n: int(v) for n, v in zip(CS_NAMES, self.state.stats, strict=True)}

    def migrate_stats(self) -> dict[str, int]:
        return {n: int(v) for n, v in zip(M.MS_NAMES, self.state.mstats, strict=True)}

    def events(self) -> np.ndarray:
        """The event log rows (kind, a..f) recorded so far."""
        return np.array(self.state.log[: int(self.state.logn[0])])

    def dropped_events(self) -> int:
        return int(self.state.logn[1])

    def clear_log(self) -> None:
        self.state.logn[:] = 0

    def zone_runs(self) -> list[ZoneRun]:
        ev = self.events()
        out: list[ZoneRun] = []
        begin = None
        for row in ev:
            k = int(row[0])
            if k == EV_BEGIN:
                begin = row
            elif k == EV_END and begin is not None:
                out.append(ZoneRun(zone=int(begin[6]), start_pfn=int(begin[1]), end_pfn=int(begin[4]),
                                   migrate_pfn_begin=int(begin[2]), free_pfn_begin=int(begin[3]),
                                   migrate_pfn_end=int(row[2]), free_pfn_end=int(row[3]),
                                   status=STATUS_NAMES[int(row[6])], sync=bool(row[5])))
                begin = None
        return out

    def zone_state(self, z: int) -> dict[str, int]:
        cz = self.state.cz[z]
        return {"compact_cached_migrate_pfn_async": int(cz[CZ_CACHED_MIGRATE_ASYNC]),
                "compact_cached_migrate_pfn_sync": int(cz[CZ_CACHED_MIGRATE_SYNC]),
                "compact_cached_free_pfn": int(cz[CZ_CACHED_FREE]), "compact_considered": int(cz[CZ_CONSIDERED]),
                "compact_defer_shift": int(cz[CZ_DEFER_SHIFT]), "compact_order_failed": int(cz[CZ_ORDER_FAILED]),
                "compact_blockskip_flush": int(cz[CZ_BLOCKSKIP_FLUSH])}

    def set_sysctl(self, extfrag_threshold: int | None = None, proactiveness: int | None = None,
                   unevictable_allowed: bool | None = None) -> None:
        if extfrag_threshold is not None:
            if not 0 <= extfrag_threshold <= 1000:
                raise ConfigError("extfrag_threshold must be in 0..1000")
            self.state.cfg[CFG_EXTFRAG_THRESHOLD] = extfrag_threshold
        if proactiveness is not None:
            if not 0 <= proactiveness <= 100:
                raise ConfigError("compaction_proactiveness must be in 0..100")
            self.state.cfg[CFG_PROACTIVENESS] = proactiveness
        if unevictable_allowed is not None:
            self.state.cfg[CFG_UNEVICTABLE_ALLOWED] = int(unevictable_allowed)
