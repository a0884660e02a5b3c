"""Page reclaim (mm/vmscan.c, classic LRU), memcg charging with reclaim, kswapd, and the MM's
allocation entry with recovery.

Theory
------
Linux 6.18 reclaims from per-lruvec LRU lists (one lruvec per memory cgroup and node; the
folio layer's lists, :mod:`memdesc.mm.folio`).  The captures' kernel runs the classic
two-list LRU, not MGLRU (its ``reclaim`` capture shows ``mm_vmscan_lru_shrink_inactive``).
Every function below is a port of the 6.18 function of the same name, reduced to one node:

* **Entry points.**  ``try_to_free_mem_cgroup_pages`` (memcg limit reached:
  ``nr_to_reclaim = max(nr_pages, SWAP_CLUSTER_MAX)``, the target's subtree only, no
  global ``pgscan_direct``/``pgsteal_direct`` counts), ``try_to_free_pages`` (direct
  reclaim: ``nr_to_reclaim = SWAP_CLUSTER_MAX``, ``reclaim_idx = gfp_zone(gfp)``,
  ``allocstall``) and kswapd's ``balance_pgdat``.  ``do_try_to_free_pages`` walks the
  priority from ``DEF_PRIORITY`` = 12 down to 0, stopping once ``nr_reclaimed >=
  nr_to_reclaim``; with nothing reclaimed and active lists left unaged it retries once
  with ``force_deactivate``.
* ``shrink_node`` -> ``prepare_scan_control`` (``may_deactivate`` per type when the
  target's inactive list is low, ``cache_trim_mode`` when the inactive file list alone has
  ``file >> priority`` pages and needs no deactivation, ``file_is_tiny`` for global reclaim)
  -> ``shrink_node_memcgs`` (every memcg of the target's subtree in id order, a partial walk
  stopping once enough is reclaimed unless kswapd) -> ``shrink_lruvec``.
* ``get_scan_count``: ``scan = lruvec_size >> priority`` per evictable list, balanced
  ``SCAN_FILE`` when anon cannot be reclaimed (no swap: the default), ``SCAN_EQUAL`` at
  priority 0, ``SCAN_ANON`` for tiny file, ``SCAN_FILE`` in cache-trim mode, else
  ``SCAN_FRACT`` with ``ap = swappiness * (total + 1) / (anon_cost + 1)``, ``fp = (200 -
  swappiness) * (total + 1) / (file_cost + 1)`` where ``anon_cost = total + sc->anon_cost``
  etc. (the ``lru_note_cost`` costs of :mod:`memdesc.mm.swap`).
* ``shrink_lruvec``: batches of ``min(nr[lru], SWAP_CLUSTER_MAX)`` over inactive anon,
  active anon, inactive file, active file while inactive anon or either file count is left;
  after ``nr_to_reclaim`` (counted within this lruvec) the smaller type stops and the other
  is cut to its unscanned share (the proportional adjustment), except in the first round of
  global direct reclaim; then the anon active list is aged when anon can be aged and its
  inactive list is low.
* ``inactive_is_low``: ``inactive * int_sqrt(10 * GB(inactive + active)) < active``
  (ratio 1 below 1 GiB).
* ``isolate_lru_folios``: from the list tail, counting *pages* (``scan += nr_pages`` until
  ``scan >= nr_to_scan``: one 512-page folio satisfies a request of 12, as the capture shows);
  folios above ``reclaim_idx`` are skipped (put back), others taken with a reference.
* ``shrink_folio_list``: unevictable -> activate; dirty/writeback accounting; writeback
  folios are marked PG_reclaim and activated (kswapd meeting a PG_reclaim folio under
  writeback with the node flagged WRITEBACK counts ``nr_immediate``); references
  (``folio_check_references``: mapped and young -> keep, or activate if referenced twice;
  an unmapped referenced file folio is reclaimed clean); anon needs a swap slot
  (``add_to_swap``, else activate); mapped folios are unmapped (pinned: unmap fails ->
  activate); a dirty file folio is activated with PG_reclaim (``nr_vmscan_immediate_reclaim``)
  unless kswapd meets it again with the node flagged DIRTY, then written (``pageout``:
  writeback starts, the folio stays; its completion rotates it to the inactive tail);
  otherwise ``__remove_mapping`` (page-cache deletion, logged) and the folio is freed.
  Survivors go back to the list heads in isolation order (``move_folios_to_lru``).
* ``shrink_active_list``: isolates from the active tail, keeps referenced executable file
  folios (not known to the model: none), deactivates the rest (PG_workingset set),
  ``pgrefill`` / ``pgdeactivate``.
* **memcg charge** (``try_charge_memcg``): stock, batch of 64, exact size, then
  ``try_to_free_mem_cgroup_pages(mem_over_limit, nr_pages)``; retry while the margin
  suffices; drain the stocks once; ``__GFP_NORETRY`` gives up; a small charge retries while
  reclaim made progress, up to ``MAX_RECLAIM_RETRIES``; then the OOM point (counted, the
  charge fails: no OOM killer).
* **kswapd**: woken (``wakeup_kswapd``) when an allocation allowed to wake it finds its
  zones below the low watermark; ``balance_pgdat`` reclaims with ``nr_to_reclaim = sum
  max(high_wmark, 32)`` per priority until a zone is balanced at the *high* watermark
  (``pgdat_balanced``), boost reclaim first when watermarks are boosted; at the end the
  boost is taken back (``core.kswapd_balance``) and kswapd sleeps.
* **The MM allocation entry** ``alloc_folio_recover`` (the slow path's recovery, which the
  page allocator's own slow path in ``core`` does not do): the design's allocation; on
  failure wake kswapd, then ``__alloc_pages_direct_reclaim`` (``try_to_free_pages``, then
  retry), then ``__alloc_pages_direct_compact`` through mm/compaction.py's
  ``try_to_compact_pages``, in ``__alloc_pages_slowpath``'s order: costly orders (and
  non-movable orders > 0) compact asynchronously *before* reclaim, and a costly
  ``__GFP_NORETRY`` request (a THP fault) gives up at once when that compaction was skipped or
  deferred; then rounds of reclaim + compaction, retried per ``should_reclaim_retry``
  (``MAX_RECLAIM_RETRIES`` rounds without progress; stop when even all reclaimable pages would
  not lift a zone over its min watermark) and ``should_compact_retry`` (priority raised
  towards ``MIN_COMPACT_PRIORITY``, ``MAX_COMPACT_RETRIES`` after successes).  A block the
  compactor captured becomes the folio (``memdesc_adopt_held``: its descriptor allocated
  then).  A design without compaction primitives (every registered design has them today), and
  a compaction state built with ``direct=False``, compact nothing (``COMPACT_SKIPPED``, as without CONFIG_COMPACTION).

Not modelled: the VMA flags (``VM_EXEC`` rotation on the active list, ``VM_LOCKED``; mlock
is PG_mlocked), workingset refault detection (shadow entries; refaults are not activated),
MGLRU, memory.low/min protection, the throttling of reclaim (``reclaim_throttle``,
``too_many_isolated``), slab shrinkers, NUMA (one node), the memcg v2 ``memory.high``
path, swap-in, and the I/O time of writeback (completed when the caller says).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm import gfp as G
from memdesc.mm.compaction import (
    COMPACT_DEFERRED,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    DEF_COMPACT_PRIORITY,
    INIT_COMPACT_PRIORITY,
    MIN_COMPACT_COSTLY_PRIORITY,
    MIN_COMPACT_PRIORITY,
    Compaction,
    compaction_zonelist_suitable,
    direct_compact_pages,
    new_compact_state,
)
from memdesc.mm.folio import (
    E_NOCAP,
    E_NOMEM_PAGES,
    HEADROOM_SLABS,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    MAX_PIECES,
    MD_ANON,
    MD_FILE,
    MM_TOP,
    NR_LRU_LISTS,
    Folios,
    folio_attach_mapping,
    folio_detach_mapping,
    folio_live,
    folio_map_ptes,
    folio_mapcount,
    folio_maybe_dma_pinned,
    folio_put_refs,
    folio_unmap_ptes,
    grow_memdesc_state,
    headroom_ok,
    lru_add,
    lru_del,
    memdesc_adopt_held,
    memdesc_alloc,
    set_nr_lruvecs,
)
from memdesc.mm.machine import to_gfp
from memdesc.mm.memcontrol import (
    consume_stock,
    drain_all_stock,
    in_subtree,
    mem_cgroup_create,
    mem_cgroup_margin,
    page_counter_charge,
    page_counter_try_charge,
    page_counter_uncharge,
    refill_stock,
)
from memdesc.mm.mmzone import MAX_PAGE_ORDER
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.slab import slab_state_headroom
from memdesc.mm.swap import (
    B_ACTIVE,
    B_DIRTY,
    B_MLOCKED,
    B_RECLAIM,
    B_REFERENCED,
    B_SWAPBACKED,
    B_SWAPCACHE,
    B_WORKINGSET,
    B_WRITEBACK,
    B_YOUNG,
    DEF_PRIORITY,
    DEFAULT_SWAPPINESS,
    KS_FAILURES,
    KS_ORDER,
    KS_RUNS,
    KS_WOKEN,
    KS_ZONEIDX,
    LOG_CHARGE_FAIL,
    LOG_DEFAULT,
    LOG_DIRECT_BEGIN,
    LOG_DIRECT_END,
    LOG_ISOLATE,
    LOG_KINDS,
    LOG_KSWAPD_SLEEP,
    LOG_KSWAPD_WAKE,
    LOG_MEMCG_BEGIN,
    LOG_MEMCG_END,
    LOG_RECLAIMED,
    LOG_SHRINK_ACTIVE,
    LOG_SHRINK_INACTIVE,
    LOG_WAKEUP_KSWAPD,
    LRU_LIST_NAMES,
    MAX_RECLAIM_RETRIES,
    MAX_SWAPPINESS,
    MC_NAMES,
    MCF_ANON_COST,
    MCF_EVENTS_MAX,
    MCF_FILE_COST,
    MCF_ONLINE,
    MCF_OOM,
    MCF_PARENT,
    MCF_PGDEACTIVATE,
    MCF_PGREFILL,
    MCF_PGSCAN,
    MCF_PGSTEAL,
    MCF_ROUNDS,
    MCF_USAGE,
    MEMCG_CHARGE_BATCH,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGE_COUNTER_MAX,
    RC_LAPTOP_MODE,
    RC_NMEMCG,
    RC_SWAPPINESS,
    SWAP_CLUSTER_MAX,
    VM_ALLOC_FAIL,
    VM_ALLOCSTALL,
    VM_CHARGE_FAIL,
    VM_COMPACT_STALL,
    VM_DIRECT_RECLAIM,
    VM_IMMEDIATE,
    VM_KSWAPD_SLEEP,
    VM_KSWAPD_WAKE,
    VM_MEMCG_RECLAIM,
    VM_NAMES,
    VM_OOM,
    VM_PAGEOUTRUN,
    VM_PGACTIVATE,
    VM_PGDEACTIVATE,
    VM_PGREFILL,
    VM_PGROTATED,
    VM_PGSCAN_ANON,
    VM_PGSCAN_DIRECT,
    VM_PGSCAN_FILE,
    VM_PGSCAN_KSWAPD,
    VM_PGSCAN_MEMCG,
    VM_PGSTEAL_ANON,
    VM_PGSTEAL_DIRECT,
    VM_PGSTEAL_FILE,
    VM_PGSTEAL_KSWAPD,
    VM_PGSTEAL_MEMCG,
    VM_PSWPOUT,
    VM_WB_DONE,
    VM_WRITE,
    add_to_swap,
    check_batches,
    folio_add_lru,
    folio_evictable,
    folio_is_file_lru,
    folio_lru_list,
    folio_mark_accessed,
    lru_add_drain_all,
    lru_add_drain_cpu,
    lru_note_cost,
    lruvec_size,
    lruvec_size_tree,
    new_reclaim_state,
    nr_swap_pages,
    rlog,
)

# scan_control (one reclaim at a time; rs.sc)
(SC_NR_TO_RECLAIM, SC_NR_RECLAIMED, SC_NR_SCANNED, SC_PRIORITY, SC_MAY_WRITEPAGE, SC_MAY_UNMAP, SC_MAY_SWAP,
 SC_TARGET, SC_RECLAIM_IDX, SC_ORDER, SC_GFP, SC_MAY_DEACTIVATE, SC_FORCE_DEACTIVATE, SC_SKIPPED_DEACTIVATE,
 SC_CACHE_TRIM, SC_KSWAPD, SC_CGROUP, SC_FILE_IS_TINY, SC_ANON_COST, SC_FILE_COST, SC_NR_DIRTY,
 SC_NR_UNQUEUED_DIRTY, SC_NR_CONGESTED, SC_NR_WRITEBACK, SC_NR_IMMEDIATE, SC_NR_TAKEN, SC_NR_FILE_TAKEN, SC_CPU,
 SC_PGDAT_DIRTY, SC_PGDAT_WRITEBACK) = range(30)
DEACTIVATE_ANON, DEACTIVATE_FILE = 1, 2
SCAN_EQUAL, SCAN_FRACT, SCAN_ANON, SCAN_FILE = range(4)

# folio_check_references()
FOLIOREF_RECLAIM, FOLIOREF_RECLAIM_CLEAN, FOLIOREF_KEEP, FOLIOREF_ACTIVATE = range(4)

# trace reclaim_flags (include/trace/events/vmscan.h)
RECLAIM_WB_ANON, RECLAIM_WB_FILE, RECLAIM_WB_SYNC, RECLAIM_WB_ASYNC = 0x1, 0x2, 0x4, 0x8

# errors of the charge / allocation entries
E_NOMEM = -12

PGDAT_WRITEBACK_MASK = 1
PGDAT_DIRTY_MASK = 2
KS_PGDAT_FLAGS = 5


@njit(inline="always")
def int_sqrt(x):
    """int_sqrt(): floor of the square root."""
    if x <= 0:
        return np.int64(0)
    r = np.int64(np.sqrt(np.float64(x)))
    while r * r > x:
        r -= 1
    while (r + 1) * (r + 1) <= x:
        r += 1
    return r


@njit
def inactive_is_low_sizes(inactive, active):
    """inactive_is_low() on the list sizes in pages (4 KiB pages: GB = pages >> 18)."""
    gb = (inactive + active) >> 18
    ratio = int_sqrt(10 * gb) if gb else np.int64(1)
    return inactive * ratio < active


@njit
def inactive_is_low(ms, rs, memcg, inactive_lru, tree):
    if tree:
        ina = lruvec_size_tree(ms, rs, memcg, inactive_lru)
        act = lruvec_size_tree(ms, rs, memcg, inactive_lru + 1)
    else:
        ina = lruvec_size(ms, memcg, inactive_lru)
        act = lruvec_size(ms, memcg, inactive_lru + 1)
    return inactive_is_low_sizes(ina, act)


@njit
def can_reclaim_anon_pages(rs):
    """can_reclaim_anon_pages(): a swap slot is free (no demotion: one node)."""
    return nr_swap_pages(rs) > 0


@njit
def scan_fractions(swappiness, anon_cost_in, file_cost_in):
    """get_scan_count()'s SCAN_FRACT fractions (ap, fp) from the lruvec costs."""
    total_cost = anon_cost_in + file_cost_in
    anon_cost = total_cost + anon_cost_in
    file_cost = total_cost + file_cost_in
    total_cost = anon_cost + file_cost
    ap = swappiness * (total_cost + 1)
    ap //= anon_cost + 1
    fp = (MAX_SWAPPINESS - swappiness) * (total_cost + 1)
    fp //= file_cost + 1
    return ap, fp


@njit
def get_scan_count(ms, rs, memcg, nr):
    """get_scan_count(): pages to scan per evictable list of memcg's lruvec at sc->priority."""
    sc = rs.sc
    swappiness = rs.cfg[RC_SWAPPINESS]
    prio = sc[SC_PRIORITY]
    fraction0 = np.int64(1)
    fraction1 = np.int64(1)
    denominator = np.int64(1)
    if not sc[SC_MAY_SWAP] or not can_reclaim_anon_pages(rs):
        balance = SCAN_FILE
    elif sc[SC_CGROUP] and swappiness == 0:
        balance = SCAN_FILE
    elif prio == 0 and swappiness:
        balance = SCAN_EQUAL
    elif sc[SC_FILE_IS_TINY]:
        balance = SCAN_ANON
    elif sc[SC_CACHE_TRIM]:
        balance = SCAN_FILE
    else:
        balance = SCAN_FRACT
        fraction0, fraction1 = scan_fractions(swappiness, sc[SC_ANON_COST], sc[SC_FILE_COST])
        denominator = fraction0 + fraction1
    for lru in range(4):
        file = lru >= LRU_INACTIVE_FILE
        size = lruvec_size(ms, memcg, lru)
        scan = size >> prio
        if scan == 0 and rs.mc[memcg, MCF_ONLINE] == 0:
            scan = min(size, np.int64(SWAP_CLUSTER_MAX))
        if balance == SCAN_FRACT:
            fr = fraction1 if file else fraction0
            if rs.mc[memcg, MCF_ONLINE]:
                scan = scan * fr // denominator
            else:
                scan = (scan * fr + denominator - 1) // denominator
        elif balance == SCAN_FILE or balance == SCAN_ANON:
            if (balance == SCAN_FILE) != file:
                scan = 0
        nr[lru] = scan
    return balance


@njit
def folio_zone_idx(pa, ms, s):
    z = core.page_zone(pa, ms.pfn[s])
    return pa.z_idx[z] if z >= 0 else np.int64(0)


@njit
def isolate_lru_folios(ms, pa, rs, nr_to_scan, memcg, lru):
    """isolate_lru_folios(): folios from the tail of one list into rs.iso (a reference each).
    Returns (nr_taken pages, nr_scanned pages, nr_skipped pages, folios taken)."""
    sc = rs.sc
    row = np.int64(memcg) * NR_LRU_LISTS + lru
    scan = np.int64(0)
    total_scan = np.int64(0)
    nr_taken = np.int64(0)
    skipped = np.int64(0)
    ntaken = 0
    nskip = 0
    skip = np.empty(rs.iso.shape[0], np.int64)
    while scan < nr_to_scan and ms.lru_head[row, 1] >= 0 and ntaken < rs.iso.shape[0] \
            and nskip < skip.shape[0]:
        s = ms.lru_head[row, 1]
        nr_pages = np.int64(1) << ms.order[s]
        total_scan += nr_pages
        lru_del(ms, s)
        if folio_zone_idx(pa, ms, s) > sc[SC_RECLAIM_IDX]:
            skipped += nr_pages
            skip[nskip] = s
            nskip += 1
            continue
        scan += nr_pages
        if not sc[SC_MAY_UNMAP] and folio_mapcount(ms, s) > 0:
            lru_add(ms, s, lru, False)          # list_move to the head: rotated
            continue
        ms.ref[s] += 1                          # folio_try_get(); PG_lru cleared by lru_del
        rs.iso[ntaken] = s
        ntaken += 1
        nr_taken += nr_pages
    # skipped folios go back to the head (list_splice(&folios_skipped, src))
    for i in range(nskip - 1, -1, -1):
        lru_add(ms, skip[i], lru, False)
    rlog(rs, LOG_ISOLATE, sc[SC_RECLAIM_IDX], sc[SC_ORDER], nr_to_scan, total_scan, skipped, nr_taken, lru,
         memcg, 0, 0, 0)
    return nr_taken, total_scan, skipped, ntaken


@njit
def folio_referenced(ms, s):
    """folio_referenced(): young PTEs (the model's FOLIO_YOUNG bit) count once per mapping."""
    mc = folio_mapcount(ms, s)
    if mc > 0 and (ms.flags[s] & B_YOUNG):
        ms.flags[s] &= ~B_YOUNG
        return mc
    return np.int64(0)


@njit
def folio_check_references(ms, s):
    referenced_ptes = folio_referenced(ms, s)
    referenced_folio = (ms.flags[s] & B_REFERENCED) != 0
    ms.flags[s] &= ~B_REFERENCED
    if referenced_ptes:
        ms.flags[s] |= B_REFERENCED
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    if referenced_folio and folio_is_file_lru(ms, s):
        return FOLIOREF_RECLAIM_CLEAN
    return FOLIOREF_RECLAIM


@njit
def try_to_unmap(ms, ss, pa, s, cpu):
    """try_to_unmap(): every PTE mapping of the folio goes (pinned folios are not unmapped)."""
    if folio_maybe_dma_pinned(ms, s):
        return False
    p0 = ms.pfn[s]
    for q in range(np.int64(1) << ms.order[s]):
        while ms.page_mc[p0 + q] > 0:
            if folio_unmap_ptes(ms, ss, pa, s, q, 1, cpu) < 0:
                return False
    return folio_mapcount(ms, s) <= 0


@njit
def free_reclaimed(ms, ss, pa, rs, s, cpu):
    """__remove_mapping() + the isolation reference: the folio is freed (uncharged)."""
    nr = np.int64(1) << ms.order[s]
    memcg = ms.memcg[s]
    # __remove_mapping(): folio_ref_freeze(1 + page-cache references) or the folio stays
    expected = 1 + (nr if ms.mapping[s] != 0 else 0)
    if ms.ref[s] != expected:
        return False
    rlog(rs, LOG_RECLAIMED, s, ms.pfn[s], ms.order[s], ms.mapping[s], ms.index[s], memcg,
         1 if folio_is_file_lru(ms, s) else 0, 0, 0, 0, 0)
    if ms.mapping[s] != 0:
        if folio_detach_mapping(ms, ss, pa, s, cpu) < 0:
            return False
    if ms.flags[s] & B_SWAPCACHE:
        ms.flags[s] &= ~B_SWAPCACHE
    rc = folio_put_refs(ms, ss, pa, s, 1, cpu)
    if rc != 0:
        return False
    page_counter_uncharge(rs, memcg, nr)
    return True


@njit
def shrink_folio_list(ms, ss, pa, rs, ntaken, stat, cpu):
    """shrink_folio_list() over rs.iso[:ntaken]; survivors stay in rs.iso (marked), freed
    ones become -1.  stat: nr_dirty, nr_unqueued_dirty, nr_congested, nr_writeback,
    nr_immediate, nr_pageout, nr_activate_anon, nr_activate_file, nr_ref_keep,
    nr_unmap_fail.  Returns pages reclaimed."""
    sc = rs.sc
    nr_reclaimed = np.int64(0)
    pgactivate = np.int64(0)
    for i in range(ntaken):
        s = rs.iso[i]
        nr_pages = np.int64(1) << ms.order[s]
        sc[SC_NR_SCANNED] += nr_pages
        activate = False
        keep = False
        file = folio_is_file_lru(ms, s)
        if not folio_evictable(ms, s):
            activate = True
        elif not sc[SC_MAY_UNMAP] and folio_mapcount(ms, s) > 0:
            keep = True
        else:
            dirty = (ms.flags[s] & B_DIRTY) != 0
            writeback = (ms.flags[s] & B_WRITEBACK) != 0
            if dirty or writeback:
                stat[0] += nr_pages
            if dirty and not writeback:
                stat[1] += nr_pages
            if writeback and (ms.flags[s] & B_RECLAIM):
                stat[2] += nr_pages
            if writeback:
                if sc[SC_KSWAPD] and (ms.flags[s] & B_RECLAIM) and (rs.ks[KS_PGDAT_FLAGS] & PGDAT_WRITEBACK_MASK):
                    stat[4] += nr_pages
                else:
                    # writeback_throttling_sane() or !PG_reclaim: mark and activate (the
                    # legacy-memcg wait of case 3 is not modelled)
                    ms.flags[s] |= B_RECLAIM
                    stat[3] += nr_pages
                activate = True
            if not activate:
                ref = folio_check_references(ms, s)
                if ref == FOLIOREF_ACTIVATE:
                    activate = True
                elif ref == FOLIOREF_KEEP:
                    stat[8] += nr_pages
                    keep = True
                else:
                    if not file and not (ms.flags[s] & B_SWAPCACHE):
                        if not (sc[SC_GFP] & G.__GFP_IO) or folio_maybe_dma_pinned(ms, s):
                            keep = True
                        elif not add_to_swap(ms, rs, s):
                            activate = True
                    if not keep and not activate and folio_mapcount(ms, s) > 0:
                        if not try_to_unmap(ms, ss, pa, s, cpu):
                            stat[9] += nr_pages
                            activate = True
                    if not keep and not activate and file and (ms.flags[s] & B_DIRTY):
                        if not sc[SC_KSWAPD] or not (ms.flags[s] & B_RECLAIM) \
                                or not (rs.ks[KS_PGDAT_FLAGS] & PGDAT_DIRTY_MASK):
                            rs.vm[VM_IMMEDIATE] += nr_pages
                            ms.flags[s] |= B_RECLAIM
                            activate = True
                        elif ref == FOLIOREF_RECLAIM_CLEAN or not sc[SC_MAY_WRITEPAGE] \
                                or not (sc[SC_GFP] & G.__GFP_FS):
                            keep = True
                        else:
                            # pageout(): writeback starts; the folio stays until it completes
                            ms.flags[s] &= ~B_DIRTY
                            ms.flags[s] |= B_WRITEBACK | B_RECLAIM
                            rs.vm[VM_WRITE] += nr_pages
                            stat[5] += nr_pages
                            keep = True
                    if not keep and not activate and not file:
                        # synchronous swap write (SWP_SYNCHRONOUS_IO device)
                        rs.vm[VM_PSWPOUT] += nr_pages
                        stat[5] += nr_pages
                    if not keep and not activate:
                        if free_reclaimed(ms, ss, pa, rs, s, cpu):
                            nr_reclaimed += nr_pages
                            rs.iso[i] = -1
                            continue
                        keep = True
        if activate and not keep:
            ms.flags[s] |= B_ACTIVE
            if file:
                stat[7] += nr_pages
            else:
                stat[6] += nr_pages
            pgactivate += nr_pages
    rs.vm[VM_PGACTIVATE] += pgactivate
    return nr_reclaimed


@njit
def move_folios_to_lru(ms, ss, pa, rs, n, memcg):
    """move_folios_to_lru(): survivors back to the list heads in isolation order; the
    isolation reference dropped (a folio nobody else holds is freed).  Returns pages moved."""
    moved = np.int64(0)
    for i in range(n):
        s = rs.iso[i]
        if s < 0:
            continue
        rs.iso[i] = -1
        lru_add(ms, s, folio_lru_list(ms, s), False)
        moved += np.int64(1) << ms.order[s]
        ms.ref[s] -= 1
    return moved


@njit
def shrink_inactive_list(ms, ss, pa, rs, nr_to_scan, memcg, lru, cpu):
    sc = rs.sc
    lru_add_drain_cpu(ms, rs, cpu)
    file = lru >= LRU_INACTIVE_FILE
    nr_taken, nr_scanned, _skipped, ntaken = isolate_lru_folios(ms, pa, rs, nr_to_scan, memcg, lru)
    if sc[SC_KSWAPD]:
        if not sc[SC_CGROUP]:
            rs.vm[VM_PGSCAN_KSWAPD] += nr_scanned
    elif not sc[SC_CGROUP]:
        rs.vm[VM_PGSCAN_DIRECT] += nr_scanned
    rs.mc[memcg, MCF_PGSCAN] += nr_scanned
    if sc[SC_CGROUP]:
        rs.vm[VM_PGSCAN_MEMCG] += nr_scanned
    rs.vm[VM_PGSCAN_FILE if file else VM_PGSCAN_ANON] += nr_scanned
    if nr_taken == 0:
        return np.int64(0)
    stat = np.zeros(10, np.int64)
    nr_reclaimed = shrink_folio_list(ms, ss, pa, rs, ntaken, stat, cpu)
    move_folios_to_lru(ms, ss, pa, rs, ntaken, memcg)
    if sc[SC_KSWAPD]:
        if not sc[SC_CGROUP]:
            rs.vm[VM_PGSTEAL_KSWAPD] += nr_reclaimed
    elif not sc[SC_CGROUP]:
        rs.vm[VM_PGSTEAL_DIRECT] += nr_reclaimed
    if sc[SC_CGROUP]:
        rs.vm[VM_PGSTEAL_MEMCG] += nr_reclaimed
    rs.mc[memcg, MCF_PGSTEAL] += nr_reclaimed
    rs.vm[VM_PGSTEAL_FILE if file else VM_PGSTEAL_ANON] += nr_reclaimed
    lru_note_cost(ms, rs, memcg, file, stat[5], nr_scanned - nr_reclaimed)
    sc[SC_NR_DIRTY] += stat[0]
    sc[SC_NR_CONGESTED] += stat[2]
    sc[SC_NR_UNQUEUED_DIRTY] += stat[1]
    sc[SC_NR_WRITEBACK] += stat[3]
    sc[SC_NR_IMMEDIATE] += stat[4]
    sc[SC_NR_TAKEN] += nr_taken
    if file:
        sc[SC_NR_FILE_TAKEN] += nr_taken
    flags = (RECLAIM_WB_FILE if file else RECLAIM_WB_ANON) | RECLAIM_WB_ASYNC
    rlog(rs, LOG_SHRINK_INACTIVE, nr_scanned, nr_reclaimed, stat[0], stat[3], stat[2], stat[4], stat[6], stat[7],
         stat[8], sc[SC_PRIORITY], flags)
    return nr_reclaimed


@njit
def shrink_active_list(ms, ss, pa, rs, nr_to_scan, memcg, lru, cpu):
    """shrink_active_list(): the active tail is deactivated (PG_workingset set)."""
    sc = rs.sc
    lru_add_drain_cpu(ms, rs, cpu)
    file = lru >= LRU_INACTIVE_FILE
    nr_taken, nr_scanned, _skipped, ntaken = isolate_lru_folios(ms, pa, rs, nr_to_scan, memcg, lru)
    if not sc[SC_CGROUP]:
        rs.vm[VM_PGREFILL] += nr_scanned
    rs.mc[memcg, MCF_PGREFILL] += nr_scanned
    nr_rotated = np.int64(0)
    nr_deactivate = np.int64(0)
    nr_activate = np.int64(0)
    for i in range(ntaken):
        s = rs.iso[i]
        if not folio_evictable(ms, s):
            continue
        # a referenced VM_EXEC file folio would stay active (rotated): VMA flags are not
        # modelled, so folio_referenced() only clears the young bits here
        folio_referenced(ms, s)
        ms.flags[s] &= ~B_ACTIVE
        ms.flags[s] |= B_WORKINGSET
    for i in range(ntaken):
        s = rs.iso[i]
        if ms.flags[s] & B_ACTIVE:
            nr_activate += np.int64(1) << ms.order[s]
        else:
            nr_deactivate += np.int64(1) << ms.order[s]
    move_folios_to_lru(ms, ss, pa, rs, ntaken, memcg)
    rs.vm[VM_PGDEACTIVATE] += nr_deactivate
    rs.mc[memcg, MCF_PGDEACTIVATE] += nr_deactivate
    lru_note_cost(ms, rs, memcg, file, 0, nr_rotated)
    flags = (RECLAIM_WB_FILE if file else RECLAIM_WB_ANON) | RECLAIM_WB_ASYNC
    rlog(rs, LOG_SHRINK_ACTIVE, nr_taken, nr_activate, nr_deactivate, nr_rotated, sc[SC_PRIORITY], flags, memcg,
         0, 0, 0, 0)


@njit
def shrink_list(ms, ss, pa, rs, lru, nr_to_scan, memcg, cpu):
    sc = rs.sc
    if lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE:
        bit = DEACTIVATE_FILE if lru == LRU_ACTIVE_FILE else DEACTIVATE_ANON
        if sc[SC_MAY_DEACTIVATE] & bit:
            shrink_active_list(ms, ss, pa, rs, nr_to_scan, memcg, lru, cpu)
        else:
            sc[SC_SKIPPED_DEACTIVATE] = 1
        return np.int64(0)
    return shrink_inactive_list(ms, ss, pa, rs, nr_to_scan, memcg, lru, cpu)


@njit
def shrink_lruvec(ms, ss, pa, rs, memcg, cpu):
    sc = rs.sc
    nr = np.zeros(4, np.int64)
    get_scan_count(ms, rs, memcg, nr)
    targets = nr.copy()
    nr_to_reclaim = sc[SC_NR_TO_RECLAIM]
    nr_reclaimed = np.int64(0)
    proportional = (not sc[SC_CGROUP]) and (not sc[SC_KSWAPD]) and sc[SC_PRIORITY] == DEF_PRIORITY
    while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
        for lru in range(4):
            if nr[lru]:
                nr_to_scan = min(nr[lru], np.int64(SWAP_CLUSTER_MAX))
                nr[lru] -= nr_to_scan
                nr_reclaimed += shrink_list(ms, ss, pa, rs, lru, nr_to_scan, memcg, cpu)
        if nr_reclaimed < nr_to_reclaim or proportional:
            continue
        nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
        nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
        if not nr_file or not nr_anon:
            break
        if nr_file > nr_anon:
            scan_target = targets[LRU_INACTIVE_ANON] + targets[LRU_ACTIVE_ANON] + 1
            lru = LRU_INACTIVE_ANON
            percentage = nr_anon * 100 // scan_target
        else:
            scan_target = targets[LRU_INACTIVE_FILE] + targets[LRU_ACTIVE_FILE] + 1
            lru = LRU_INACTIVE_FILE
            percentage = nr_file * 100 // scan_target
        nr[lru] = 0
        nr[lru + 1] = 0
        lru = LRU_INACTIVE_ANON if lru == LRU_INACTIVE_FILE else LRU_INACTIVE_FILE
        nr_scanned = targets[lru] - nr[lru]
        nr[lru] = targets[lru] * (100 - percentage) // 100
        nr[lru] -= min(nr[lru], nr_scanned)
        lru += 1
        nr_scanned = targets[lru] - nr[lru]
        nr[lru] = targets[lru] * (100 - percentage) // 100
        nr[lru] -= min(nr[lru], nr_scanned)
    sc[SC_NR_RECLAIMED] += nr_reclaimed
    if can_reclaim_anon_pages(rs) and inactive_is_low(ms, rs, memcg, LRU_INACTIVE_ANON, False):
        shrink_active_list(ms, ss, pa, rs, SWAP_CLUSTER_MAX, memcg, LRU_ACTIVE_ANON, cpu)


@njit
def total_high_wmark(pa, reclaim_idx):
    t = np.int64(0)
    for z in range(pa.z_start.shape[0]):
        if pa.z_idx[z] <= reclaim_idx and pa.z_managed[z] > 0:
            t += core.high_wmark_pages(pa, z)
    return t


@njit
def prepare_scan_control(ms, pa, rs):
    sc = rs.sc
    target = sc[SC_TARGET]
    sc[SC_ANON_COST] = rs.mc[target, MCF_ANON_COST]
    sc[SC_FILE_COST] = rs.mc[target, MCF_FILE_COST]
    if not sc[SC_FORCE_DEACTIVATE]:
        md = np.int64(0)
        if inactive_is_low(ms, rs, target, LRU_INACTIVE_ANON, True):
            md |= DEACTIVATE_ANON
        if inactive_is_low(ms, rs, target, LRU_INACTIVE_FILE, True):
            md |= DEACTIVATE_FILE
        sc[SC_MAY_DEACTIVATE] = md
    else:
        sc[SC_MAY_DEACTIVATE] = DEACTIVATE_ANON | DEACTIVATE_FILE
    file = lruvec_size_tree(ms, rs, target, LRU_INACTIVE_FILE)
    sc[SC_CACHE_TRIM] = 1 if ((file >> sc[SC_PRIORITY]) and not (sc[SC_MAY_DEACTIVATE] & DEACTIVATE_FILE)) else 0
    sc[SC_FILE_IS_TINY] = 0
    if not sc[SC_CGROUP]:
        free = np.int64(0)
        for z in range(pa.z_start.shape[0]):
            free += pa.z_free[z]
        filep = lruvec_size_tree(ms, rs, 0, LRU_INACTIVE_FILE) + lruvec_size_tree(ms, rs, 0, LRU_ACTIVE_FILE)
        anon = lruvec_size_tree(ms, rs, 0, LRU_INACTIVE_ANON)
        if filep + free <= total_high_wmark(pa, sc[SC_RECLAIM_IDX]) \
                and not (sc[SC_MAY_DEACTIVATE] & DEACTIVATE_ANON) and (anon >> sc[SC_PRIORITY]):
            sc[SC_FILE_IS_TINY] = 1


@njit
def shrink_node(ms, ss, pa, rs, cpu):
    """shrink_node(): prepare_scan_control, then every memcg of the target's subtree."""
    sc = rs.sc
    for k in (SC_NR_DIRTY, SC_NR_UNQUEUED_DIRTY, SC_NR_CONGESTED, SC_NR_WRITEBACK, SC_NR_IMMEDIATE, SC_NR_TAKEN,
              SC_NR_FILE_TAKEN):
        sc[k] = 0
    prepare_scan_control(ms, pa, rs)
    target = sc[SC_TARGET]
    n = rs.cfg[RC_NMEMCG]
    for m in range(n):
        if m != 0 and rs.mc[m, MCF_ONLINE] == 0:
            continue
        if not in_subtree(rs, m, target):
            continue
        shrink_lruvec(ms, ss, pa, rs, m, cpu)
        if not sc[SC_KSWAPD] and sc[SC_NR_RECLAIMED] >= sc[SC_NR_TO_RECLAIM]:
            break
    if sc[SC_KSWAPD]:
        if sc[SC_NR_WRITEBACK] and sc[SC_NR_WRITEBACK] == sc[SC_NR_TAKEN]:
            rs.ks[KS_PGDAT_FLAGS] |= PGDAT_WRITEBACK_MASK
        if sc[SC_NR_UNQUEUED_DIRTY] and sc[SC_NR_UNQUEUED_DIRTY] == sc[SC_NR_FILE_TAKEN]:
            rs.ks[KS_PGDAT_FLAGS] |= PGDAT_DIRTY_MASK


@njit
def do_try_to_free_pages(ms, ss, pa, rs, cpu):
    sc = rs.sc
    initial_priority = sc[SC_PRIORITY]
    for _attempt in range(2):
        if not sc[SC_CGROUP]:
            rs.vm[VM_ALLOCSTALL] += 1
        while True:
            sc[SC_NR_SCANNED] = 0
            shrink_node(ms, ss, pa, rs, cpu)
            if sc[SC_NR_RECLAIMED] >= sc[SC_NR_TO_RECLAIM]:
                break
            if sc[SC_PRIORITY] < DEF_PRIORITY - 2:
                sc[SC_MAY_WRITEPAGE] = 1
            sc[SC_PRIORITY] -= 1
            if sc[SC_PRIORITY] < 0:
                break
        if sc[SC_NR_RECLAIMED]:
            return sc[SC_NR_RECLAIMED]
        if sc[SC_SKIPPED_DEACTIVATE]:
            sc[SC_PRIORITY] = initial_priority
            sc[SC_FORCE_DEACTIVATE] = 1
            sc[SC_SKIPPED_DEACTIVATE] = 0
            continue
        break
    return sc[SC_NR_RECLAIMED]


@njit
def _init_sc(rs, nr_to_reclaim, gfp, order, target, cgroup, kswapd, reclaim_idx, may_swap, cpu):
    sc = rs.sc
    sc[:] = 0
    sc[SC_NR_TO_RECLAIM] = nr_to_reclaim
    sc[SC_PRIORITY] = DEF_PRIORITY
    sc[SC_MAY_WRITEPAGE] = 0 if rs.cfg[RC_LAPTOP_MODE] else 1
    sc[SC_MAY_UNMAP] = 1
    sc[SC_MAY_SWAP] = may_swap
    sc[SC_TARGET] = target
    sc[SC_CGROUP] = cgroup
    sc[SC_KSWAPD] = kswapd
    sc[SC_RECLAIM_IDX] = reclaim_idx
    sc[SC_ORDER] = order
    sc[SC_GFP] = gfp
    sc[SC_CPU] = cpu


@njit
def try_to_free_mem_cgroup_pages(ms, ss, pa, rs, memcg, nr_pages, gfp, may_swap, cpu):
    """try_to_free_mem_cgroup_pages(): reclaim from memcg's subtree; pages reclaimed."""
    g = (gfp & G.GFP_RECLAIM_MASK) | (G.GFP_HIGHUSER_MOVABLE & ~G.GFP_RECLAIM_MASK)
    _init_sc(rs, max(nr_pages, np.int64(SWAP_CLUSTER_MAX)), g, 0, memcg, 1, 0, 3, 1 if may_swap else 0, cpu)
    rs.vm[VM_MEMCG_RECLAIM] += 1
    rs.mc[memcg, MCF_ROUNDS] += 1
    rlog(rs, LOG_MEMCG_BEGIN, 0, g, memcg, nr_pages, 0, 0, 0, 0, 0, 0, 0)
    nr = do_try_to_free_pages(ms, ss, pa, rs, cpu)
    rlog(rs, LOG_MEMCG_END, nr, memcg, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return nr


@njit
def try_to_free_pages(ms, ss, pa, rs, gfp, order, cpu):
    """try_to_free_pages(): direct reclaim of SWAP_CLUSTER_MAX pages over every memcg."""
    reclaim_idx = pa.gfp_zone_table[gfp & G.GFP_ZONEMASK]
    _init_sc(rs, SWAP_CLUSTER_MAX, gfp, order, 0, 0, 0, max(reclaim_idx, np.int64(0)), 1, cpu)
    rs.vm[VM_DIRECT_RECLAIM] += 1
    rlog(rs, LOG_DIRECT_BEGIN, order, gfp, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    nr = do_try_to_free_pages(ms, ss, pa, rs, cpu)
    rlog(rs, LOG_DIRECT_END, nr, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return nr


# ------------------------------------------------------------------ memcg charge with reclaim


@njit
def try_charge_memcg(ms, ss, pa, rs, memcg, gfp, nr_pages, cpu):
    """try_charge_memcg(): 0, or E_NOMEM (nothing charged)."""
    if memcg <= 0:
        return 0
    batch = max(np.int64(MEMCG_CHARGE_BATCH), nr_pages)
    if consume_stock(rs, memcg, nr_pages, cpu):
        return 0
    nr_retries = MAX_RECLAIM_RETRIES
    drained = False
    while True:
        over = page_counter_try_charge(rs, memcg, batch)
        if over < 0:
            if batch > nr_pages:
                refill_stock(rs, memcg, batch - nr_pages, cpu)
            return 0
        if batch > nr_pages:
            batch = nr_pages
            continue
        if not (gfp & G.__GFP_DIRECT_RECLAIM):
            break
        rs.mc[over, MCF_EVENTS_MAX] += 1
        nr_reclaimed = try_to_free_mem_cgroup_pages(ms, ss, pa, rs, over, nr_pages, gfp, True, cpu)
        if mem_cgroup_margin(rs, over) >= nr_pages:
            continue
        if not drained:
            drain_all_stock(rs, over)
            drained = True
            continue
        if gfp & G.__GFP_NORETRY:
            break
        if nr_reclaimed and nr_pages <= (1 << PAGE_ALLOC_COSTLY_ORDER):
            continue
        if nr_retries > 0:
            nr_retries -= 1
            continue
        if not (gfp & G.__GFP_RETRY_MAYFAIL):
            rs.mc[over, MCF_OOM] += 1        # mem_cgroup_oom(): no OOM killer in the model
            rs.vm[VM_OOM] += 1
        break
    if gfp & G.__GFP_NOFAIL:
        page_counter_charge(rs, memcg, nr_pages)
        return 0
    rs.vm[VM_CHARGE_FAIL] += 1
    rlog(rs, LOG_CHARGE_FAIL, memcg, nr_pages, gfp, 0, 0, 0, 0, 0, 0, 0, 0)
    return E_NOMEM


# ------------------------------------------------------------------ kswapd


@njit
def zones_below(pa, node, highest_zoneidx, order, w):
    """True when no zone of the node up to highest_zoneidx passes watermark w (0 min, 1 low,
    2 high, boost included) at this order."""
    zl = pa.zonelist[node]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if pa.z_idx[z] > highest_zoneidx or pa.z_managed[z] == 0:
            continue
        if core.zone_watermark_ok(pa, z, order, core.wmark_pages(pa, z, w), highest_zoneidx, 0):
            return False
    return True


@njit
def wakeup_kswapd(pa, rs, order, highest_zoneidx, gfp):
    """wakeup_kswapd(): kswapd is woken for (order, highest_zoneidx) unless already awake."""
    rlog(rs, LOG_WAKEUP_KSWAPD, 0, order, gfp, highest_zoneidx, 0, 0, 0, 0, 0, 0, 0)
    if rs.ks[KS_WOKEN]:
        rs.ks[KS_ORDER] = max(rs.ks[KS_ORDER], order)
        rs.ks[KS_ZONEIDX] = max(rs.ks[KS_ZONEIDX], highest_zoneidx)
        return
    rs.ks[KS_WOKEN] = 1
    rs.ks[KS_ORDER] = order
    rs.ks[KS_ZONEIDX] = highest_zoneidx
    rs.vm[VM_KSWAPD_WAKE] += 1
    rlog(rs, LOG_KSWAPD_WAKE, 0, order, highest_zoneidx, 0, 0, 0, 0, 0, 0, 0, 0)


@njit
def pgdat_balanced(pa, order, highest_zoneidx):
    """pgdat_balanced(): some managed zone up to highest_zoneidx is over its high watermark."""
    zl = pa.zonelist[0]
    managed = False
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if pa.z_idx[z] > highest_zoneidx or pa.z_managed[z] == 0:
            continue
        managed = True
        if core.zone_watermark_ok(pa, z, order, core.high_wmark_pages(pa, z), highest_zoneidx, 0):
            return True
    return not managed


@njit
def balance_pgdat(ms, ss, pa, rs, order, highest_zoneidx, cpu):
    """balance_pgdat(): reclaim until balanced at the high watermark (boost reclaim first)."""
    nr_boost_reclaim = np.int64(0)
    for z in range(pa.z_start.shape[0]):
        if pa.z_idx[z] <= highest_zoneidx:
            nr_boost_reclaim += pa.boost[z]
    boosted = nr_boost_reclaim > 0
    rs.vm[VM_PAGEOUTRUN] += 1
    _init_sc(rs, 0, G.GFP_KERNEL, order, 0, 0, 1, highest_zoneidx, 1, cpu)
    sc = rs.sc
    total = np.int64(0)
    restart = True
    while restart:
        restart = False
        sc[SC_PRIORITY] = DEF_PRIORITY
        while True:
            sc[SC_RECLAIM_IDX] = highest_zoneidx
            balanced = pgdat_balanced(pa, sc[SC_ORDER], highest_zoneidx)
            if not balanced and nr_boost_reclaim:
                nr_boost_reclaim = 0
                restart = True
                break
            if not nr_boost_reclaim and balanced:
                break
            raise_priority = True
            if nr_boost_reclaim and sc[SC_PRIORITY] == DEF_PRIORITY - 2:
                raise_priority = False
            sc[SC_MAY_WRITEPAGE] = 1 if (not rs.cfg[RC_LAPTOP_MODE] and not nr_boost_reclaim) else 0
            sc[SC_MAY_SWAP] = 0 if nr_boost_reclaim else 1
            if sc[SC_PRIORITY] < DEF_PRIORITY - 2:
                sc[SC_MAY_WRITEPAGE] = 1
            sc[SC_NR_SCANNED] = 0
            before = sc[SC_NR_RECLAIMED]
            # kswapd_shrink_node()
            nr_to_reclaim = np.int64(0)
            for z in range(pa.z_start.shape[0]):
                if pa.z_idx[z] <= highest_zoneidx and pa.z_managed[z] > 0:
                    nr_to_reclaim += max(core.high_wmark_pages(pa, z), np.int64(SWAP_CLUSTER_MAX))
            sc[SC_NR_TO_RECLAIM] = nr_to_reclaim
            shrink_node(ms, ss, pa, rs, cpu)
            if sc[SC_NR_SCANNED] >= nr_to_reclaim:
                raise_priority = False
            nr_reclaimed = sc[SC_NR_RECLAIMED] - before
            total += nr_reclaimed
            nr_boost_reclaim -= min(nr_boost_reclaim, nr_reclaimed)
            if nr_boost_reclaim and not nr_reclaimed:
                break
            if raise_priority or not nr_reclaimed:
                sc[SC_PRIORITY] -= 1
            if sc[SC_PRIORITY] < 1:
                break
    if not total:
        rs.ks[KS_FAILURES] += 1
    if boosted:
        core.kswapd_balance(pa)
    return total


@njit
def kswapd_run(ms, ss, pa, rs, cpu):
    """One kswapd wakeup: balance_pgdat, then sleep when balanced (kswapd_try_to_sleep).
    Returns pages reclaimed (-1 if kswapd was not awake)."""
    if not rs.ks[KS_WOKEN]:
        return np.int64(-1)
    rs.ks[KS_RUNS] += 1
    order = rs.ks[KS_ORDER]
    zidx = rs.ks[KS_ZONEIDX]
    nr = balance_pgdat(ms, ss, pa, rs, order, zidx, cpu)
    rs.ks[KS_WOKEN] = 0
    rs.ks[KS_ORDER] = 0
    rs.ks[KS_PGDAT_FLAGS] = 0
    rs.vm[VM_KSWAPD_SLEEP] += 1
    rlog(rs, LOG_KSWAPD_SLEEP, 0, nr, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return nr


# ------------------------------------------------------------------ the allocation entry (reclaim + compaction)

#: should_compact_retry()'s bound on retries after compaction succeeded (mm/page_alloc.c)
MAX_COMPACT_RETRIES = 16


@njit
def reclaimable_pages(ms, rs):
    """zone_reclaimable_pages() for the node: file LRU pages, anon too when swap has room."""
    t = lruvec_size_tree(ms, rs, 0, LRU_INACTIVE_FILE) + lruvec_size_tree(ms, rs, 0, LRU_ACTIVE_FILE)
    if nr_swap_pages(rs) > 0:
        t += lruvec_size_tree(ms, rs, 0, LRU_INACTIVE_ANON) + lruvec_size_tree(ms, rs, 0, LRU_ACTIVE_ANON)
    return t


@njit
def should_reclaim_retry(ms, pa, rs, order, highest_zoneidx, no_progress_loops):
    """should_reclaim_retry(): costly orders and MAX_RECLAIM_RETRIES loops without progress
    stop; otherwise retry if free + reclaimable pages would pass the min watermark."""
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return False
    reclaimable = reclaimable_pages(ms, rs)
    zl = pa.zonelist[0]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if pa.z_idx[z] > highest_zoneidx or pa.z_managed[z] == 0:
            continue
        avail = pa.z_free[z] + reclaimable
        if core.__zone_watermark_ok(pa, z, order, core.wmark_pages(pa, z, 0), highest_zoneidx, 0, avail):
            return True
    return False


@njit
def should_compact_retry(ms, pa, rs, order, highest_zoneidx, compact_result, prio_retries):
    """should_compact_retry() (CONFIG_COMPACTION): retry after a skipped compaction if reclaim
    could make it suitable; after a success up to MAX_COMPACT_RETRIES (a quarter for costly
    orders); after a failure with the priority raised one step, down to MIN_COMPACT_PRIORITY
    (MIN_COMPACT_COSTLY_PRIORITY for costly orders).  ``prio_retries`` = [priority, retries],
    updated in place."""
    if order == 0:
        return False
    if compact_result == COMPACT_SKIPPED:
        return compaction_zonelist_suitable(pa, order, highest_zoneidx, reclaimable_pages(ms, rs))
    if compact_result == COMPACT_SUCCESS:
        max_retries = MAX_COMPACT_RETRIES // 4 if order > PAGE_ALLOC_COSTLY_ORDER else MAX_COMPACT_RETRIES
        prio_retries[1] += 1
        if prio_retries[1] <= max_retries:
            return True
    min_priority = MIN_COMPACT_COSTLY_PRIORITY if order > PAGE_ALLOC_COSTLY_ORDER else MIN_COMPACT_PRIORITY
    if prio_retries[0] > min_priority:
        prio_retries[0] -= 1
        prio_retries[1] = 0
        return True
    return False


@njit
def __alloc_pages_direct_compact(ms, ss, pa, rs, cs, gfp, order, mdtype, prio, cpu):
    """__alloc_pages_direct_compact(): compaction, then the folio from the block it captured
    (typed now: its descriptor allocated) or a fresh attempt.  Returns (slot or negative
    error, compact_result); order 0 does not compact (E_NOMEM_PAGES, COMPACT_SKIPPED)."""
    if order == 0:
        return np.int64(E_NOMEM_PAGES), np.int64(COMPACT_SKIPPED)
    result, captured = direct_compact_pages(cs, ms, ss, pa, gfp, order, np.int64(0), prio, cpu)
    if result == COMPACT_SKIPPED:
        return np.int64(E_NOMEM_PAGES), result
    rs.vm[VM_COMPACT_STALL] += 1
    if captured >= 0:
        s = memdesc_adopt_held(ms, ss, pa, captured, order, mdtype, gfp, cpu)
        if s < 0:                 # no descriptor (or no room): the captured block goes back
            dispatch.pa_free(pa, captured, order, cpu)
        return s, result
    return memdesc_alloc(ms, ss, pa, gfp, order, mdtype, cpu), result


@njit
def alloc_folio_recover(ms, ss, pa, rs, cs, gfp, order, mdtype, cpu):
    """The MM's allocation entry (``__alloc_pages_slowpath``'s recovery): a typed allocation
    through the folio layer; on failure kswapd is woken, costly orders compact first, then
    direct reclaim and direct compaction run before each retry, which
    ``should_reclaim_retry`` / ``should_compact_retry`` bound.  ``cs``: the compaction state
    (mm/compaction.py).  Returns the slot, or a negative error (folio layer's, or E_NOMEM)."""
    highest_zoneidx = pa.gfp_zone_table[gfp & G.GFP_ZONEMASK]
    s = memdesc_alloc(ms, ss, pa, gfp, order, mdtype, cpu)
    if (gfp & G.__GFP_KSWAPD_RECLAIM) and highest_zoneidx >= 0 \
            and zones_below(pa, pa.cpu_node[cpu], highest_zoneidx, order, 1):
        wakeup_kswapd(pa, rs, order, highest_zoneidx, gfp)
    if s >= 0 or s == E_NOCAP:      # E_NOCAP: the caller grows and retries
        return s
    if not (gfp & G.__GFP_DIRECT_RECLAIM) or highest_zoneidx < 0:
        rs.vm[VM_ALLOC_FAIL] += 1
        return s
    costly = order > PAGE_ALLOC_COSTLY_ORDER
    prio_retries = np.zeros(2, np.int64)
    prio_retries[0] = DEF_COMPACT_PRIORITY
    compact_result = np.int64(COMPACT_SKIPPED)
    if costly or (order > 0 and core.gfp_migratetype(pa, gfp) != core.MT_MOVABLE):
        s, compact_result = __alloc_pages_direct_compact(ms, ss, pa, rs, cs, gfp, order, mdtype,
                                                         np.int64(INIT_COMPACT_PRIORITY), cpu)
        if s >= 0 or s == E_NOCAP:
            return s
        if costly and (gfp & G.__GFP_NORETRY):
            if compact_result == COMPACT_SKIPPED or compact_result == COMPACT_DEFERRED:
                rs.vm[VM_ALLOC_FAIL] += 1
                return s
            prio_retries[0] = INIT_COMPACT_PRIORITY
    no_progress = 0
    tries = 0
    while tries < 4 * (MAX_RECLAIM_RETRIES + MAX_COMPACT_RETRIES):
        tries += 1
        if (gfp & G.__GFP_KSWAPD_RECLAIM) and not rs.ks[KS_WOKEN]:
            wakeup_kswapd(pa, rs, order, highest_zoneidx, gfp)
        s = memdesc_alloc(ms, ss, pa, gfp, order, mdtype, cpu)
        if s >= 0 or s == E_NOCAP:
            return s
        progress = try_to_free_pages(ms, ss, pa, rs, gfp, order, cpu)
        s = memdesc_alloc(ms, ss, pa, gfp, order, mdtype, cpu)
        if s >= 0 or s == E_NOCAP:
            return s
        s, compact_result = __alloc_pages_direct_compact(ms, ss, pa, rs, cs, gfp, order, mdtype,
                                                         prio_retries[0], cpu)
        if s >= 0 or s == E_NOCAP:
            return s
        if gfp & G.__GFP_NORETRY:
            break
        if costly and not (gfp & G.__GFP_RETRY_MAYFAIL):
            break
        if progress:
            no_progress = 0
        else:
            no_progress += 1
        if should_reclaim_retry(ms, pa, rs, order, highest_zoneidx, no_progress):
            continue
        if progress and should_compact_retry(ms, pa, rs, order, highest_zoneidx, compact_result, prio_retries):
            continue
        break
    rs.vm[VM_ALLOC_FAIL] += 1
    return s


# ------------------------------------------------------------------ writeback completion


@njit
def folio_end_writeback(ms, rs, s):
    """folio_end_writeback(): PG_writeback cleared; a PG_reclaim folio on an inactive list
    rotates to its tail (folio_rotate_reclaimable, pgrotated)."""
    if not folio_live(ms, s) or not (ms.flags[s] & B_WRITEBACK):
        return False
    ms.flags[s] &= ~B_WRITEBACK
    rs.vm[VM_WB_DONE] += 1
    if ms.flags[s] & B_RECLAIM:
        ms.flags[s] &= ~B_RECLAIM
        if ms.lru[s] >= 0 and not (ms.flags[s] & B_ACTIVE) and folio_evictable(ms, s):
            lru = ms.lru[s]
            lru_del(ms, s)
            lru_add(ms, s, lru, True)
            rs.vm[VM_PGROTATED] += np.int64(1) << ms.order[s]
    return True


@njit
def folio_charge_and_add(ms, ss, pa, rs, s, memcg, gfp, cpu, force):
    """mem_cgroup_charge() of a new folio, then (caller) folio_add_lru.  force: charge even
    over the limit (a replay whose kernel succeeded)."""
    nr = np.int64(1) << ms.order[s]
    rc = try_charge_memcg(ms, ss, pa, rs, memcg, gfp, nr, cpu)
    if rc < 0:
        if not force:
            return rc
        page_counter_charge(rs, memcg, nr)
    ms.memcg[s] = memcg
    return np.int64(0)


@njit
def mem_cgroup_uncharge(ms, rs, s):
    page_counter_uncharge(rs, ms.memcg[s], np.int64(1) << ms.order[s])



# ------------------------------------------------------------------ folio life cycle (facade and replay)


@njit
def add_folio_nb(ms, ss, pa, rs, cs, anon, order, memcg, gfp, cpu, mapping, index, force):
    """A new folio: allocation with recovery, memcg charge (with memcg reclaim), page cache
    (file: mapping, index) or one PTE per page (anon), then folio_add_lru.  Returns the slot
    or a negative error (E_NOMEM: the charge failed and force is off; the folio is freed)."""
    mdtype = MD_ANON if anon else MD_FILE
    s = alloc_folio_recover(ms, ss, pa, rs, cs, gfp, order, mdtype, cpu)
    if s < 0:
        return s
    if folio_charge_and_add(ms, ss, pa, rs, s, memcg, gfp, cpu, force) < 0:
        folio_put_refs(ms, ss, pa, s, 1, cpu)
        return np.int64(E_NOMEM)
    nr = np.int64(1) << order
    if anon:
        ms.flags[s] |= B_SWAPBACKED
        folio_map_ptes(ms, s, 0, nr)
    else:
        folio_attach_mapping(ms, s, mapping, index)
    ms.ref[s] -= 1            # the allocation's reference: the mapping / page cache holds it now
    folio_add_lru(ms, rs, s, cpu)
    return s


@njit
def add_folios_nb(ms, ss, pa, rs, cs, n, anon, order, memcg, gfp, mapping, first_index, ncpu, out):
    """n folios as :func:`add_folio_nb` (file: indices first_index + i << order; CPU i % ncpu);
    out[i] = slot or error.  Stops early (returns the count done) when the folio state needs
    room; the caller grows it and continues."""
    for i in range(n):
        if not headroom_ok(ms, ss):
            return i
        out[i] = add_folio_nb(ms, ss, pa, rs, cs, anon, order, memcg, gfp, i % ncpu, mapping,
                              first_index + (i << order), False)
        if out[i] == E_NOCAP:
            return i
    return n


@njit
def delete_folio_nb(ms, ss, pa, rs, s, cpu):
    """Truncation / unmap of a folio: batches drained, off the LRU, uncharged, every PTE and
    the page cache let go (the folio is freed).  0 or a negative error."""
    if not folio_live(ms, s):
        return np.int64(-23)
    lru_add_drain_all(ms, rs)
    if ms.lru[s] >= 0:
        lru_del(ms, s)
    ms.ref[s] += 1
    if not try_to_unmap(ms, ss, pa, s, cpu):
        ms.ref[s] -= 1
        return np.int64(-24)
    mem_cgroup_uncharge(ms, rs, s)
    if ms.flags[s] & B_SWAPCACHE:
        ms.flags[s] &= ~B_SWAPCACHE
    if ms.mapping[s] != 0:
        folio_detach_mapping(ms, ss, pa, s, cpu)
    return folio_put_refs(ms, ss, pa, s, ms.ref[s], cpu)


@njit
def reclaim_check_nb(ms, rs):
    """The reclaim layer's invariants: (code, a, b); code 0 when consistent.
    1: a batch holds a dead folio or one already on a list; 2: a folio left isolated;
    3: memcg usage != charged folio pages + its stocks (a = memcg, b = difference);
    4: a folio on an LRU list of a memcg that is not online; 5: PG_active disagrees with the list."""
    c = check_batches(ms, rs)
    if c:
        return np.int64(1), np.int64(c - 1), np.int64(0)
    for i in range(rs.iso.shape[0]):
        if rs.iso[i] >= 0:
            return np.int64(2), np.int64(i), rs.iso[i]
    n = rs.cfg[RC_NMEMCG]
    charged = np.zeros(n, np.int64)
    top = ms.meta[MM_TOP]
    for s in range(top):
        if not folio_live(ms, s):
            continue
        m = np.int64(ms.memcg[s])
        if ms.lru[s] >= 0:
            if m >= n or (m > 0 and rs.mc[m, MCF_ONLINE] == 0):
                return np.int64(4), m, np.int64(s)
            act = (ms.flags[s] & B_ACTIVE) != 0
            want = ms.lru[s] == LRU_ACTIVE_ANON or ms.lru[s] == LRU_ACTIVE_FILE
            if act != want:
                return np.int64(5), np.int64(s), np.int64(ms.lru[s])
        # charged to m and every ancestor
        while 0 < m < n:
            charged[m] += np.int64(1) << ms.order[s]
            m = rs.mc[m, MCF_PARENT]
    for m in range(1, n):
        want = charged[m]
        for c2 in range(rs.stock.shape[0]):
            if rs.stock[c2, 0] >= 0 and in_subtree(rs, rs.stock[c2, 0], m):
                want += rs.stock[c2, 1]
        if rs.mc[m, MCF_USAGE] != want:
            return np.int64(3), np.int64(m), rs.mc[m, MCF_USAGE] - want
    return np.int64(0), np.int64(0), np.int64(0)


RECLAIM_CHECK_MESSAGES = {
    1: "a per-CPU folio batch of cpu {a} holds a dead folio or one already on an LRU list",
    2: "isolation slot {a} still holds folio {b} between operations",
    3: "memcg {a}: usage differs from its charged folios and stocks by {b} pages",
    4: "folio {b} is on an LRU list of memcg {a}, which is not online",
    5: "folio {a}: PG_active disagrees with its list {b}",
}


_GFP_COMP = G.__GFP_COMP   # (module level: name mangling in a class body)


class Reclaim:
    """LRU lists, memory cgroups and reclaim over a machine's folio layer (thin facade over
    the kernels above; handles are the folio layer's slots).

    ``Reclaim(machine, swap_pages=0)``: no swap device by default (anon folios are then
    never reclaimed), ``swap_pages`` > 0 for one.  ``compaction``: whether the allocation
    entry compacts directly (``self.compaction``, a :class:`memdesc.mm.compaction.Compaction`
    over the same folios; None on a design without compaction primitives, which then never
    compacts).  ``memcg_create(limit_pages)`` gives a
    memcg id; ``add_folio`` charges and adds a folio as the kernel's fault / page-cache paths
    do; ``mark_accessed``, ``touch`` (the PTEs' accessed bits), ``set_dirty``,
    ``end_writeback``, ``delete``; ``reclaim_memcg``, ``try_to_free_pages``, ``kswapd``."""

    def __init__(self, machine, *, max_memcgs: int = 64, swap_pages: int = 0,
                 swappiness: int = DEFAULT_SWAPPINESS, log_capacity: int = 1 << 16, log_mask: int = LOG_DEFAULT,
                 compaction: bool = True):
        self.machine = machine
        self.folios = Folios.of(machine)
        self.folios.state = set_nr_lruvecs(self.folios.state, max_memcgs)
        self.state = new_reclaim_state(machine.nr_cpus, max_memcgs, swap_pages, swappiness, log_capacity, log_mask)
        pa = self.folios.pa
        if dispatch.has(type(pa), *dispatch.COMPACTION_PRIMITIVES):
            self.compaction: Compaction | None = Compaction(self.folios, log_capacity=log_capacity, direct=compaction)
            self.compact_state = self.compaction.state
        else:
            self.compaction = None
            self.compact_state = new_compact_state(pa, log_capacity=0, direct=False)

    # -- plumbing
    @property
    def ms(self):
        return self.folios.state

    def _run(self, kernel, *args):
        f = self.folios
        while True:
            f._ensure()
            rc = kernel(f.state, f.slab.state, f.pa, self.state, *args)
            r = int(rc[0] if isinstance(rc, tuple) else rc)
            if r != E_NOCAP:
                return rc
            f.state = grow_memdesc_state(f.state, 2 * MAX_PIECES)
            f.slab.state = slab_state_headroom(f.slab.state, 4 * HEADROOM_SLABS)

    def _cpu(self, cpu: int) -> np.int64:
        return self.folios._cpu(cpu)

    def _memcg(self, memcg: int) -> np.int64:
        n = int(self.state.cfg[RC_NMEMCG])
        if not 0 <= int(memcg) < n or (memcg and not self.state.mc[memcg, MCF_ONLINE]):
            raise ConfigError(f"no online memcg {memcg} (memcgs: 0..{n - 1})")
        return np.int64(memcg)

    # -- memory cgroups
    def memcg_create(self, limit_pages: int | None = None, parent: int = 0) -> int:
        return mem_cgroup_create(self.state, parent, limit_pages)

    def memcg_stat(self, memcg: int) -> dict[str, int]:
        m = int(self._memcg(memcg))
        out = {k: int(v) for k, v in zip(MC_NAMES, self.state.mc[m], strict=True)}
        out["max"] = -1 if out["max"] >= int(PAGE_COUNTER_MAX) else out["max"]
        out.update(self.lru_sizes(m))
        return out

    # -- folios
    def add_folio(self, anon: bool = False, order: int = 0, memcg: int = 0, gfp: int | str | None = None,
                  cpu: int = 0, mapping: int = 1, index: int = 0, force: bool = False) -> int | None:
        """A new anon (mapped by one PTE per page) or page-cache folio, charged to memcg and
        put in this CPU's LRU batch.  None when memory (or the memcg's limit) refused it."""
        if not 0 <= order <= MAX_PAGE_ORDER:
            raise ConfigError(f"order {order} outside 0..{MAX_PAGE_ORDER}")
        if not anon and mapping <= 0:
            raise ConfigError("a page-cache folio needs a mapping id > 0")
        if gfp is None:
            gfp = G.GFP_HIGHUSER_MOVABLE | (_GFP_COMP if order else 0)
        rc = int(self._run(add_folio_nb, self.compact_state, bool(anon), np.int64(order), self._memcg(memcg),
                           np.int64(to_gfp(gfp)), self._cpu(cpu), np.int64(0 if anon else mapping), np.int64(index),
                           bool(force)))
        return rc if rc >= 0 else None

    def add_folios(self, n: int, anon: bool = False, order: int = 0, memcg: int = 0, mapping: int = 1,
                   first_index: int = 0, gfp: int | str | None = None) -> list[int | None]:
        """``n`` folios as :meth:`add_folio` in one kernel call (CPUs taken in turn; file folios
        at consecutive indices); their handles (None where memory or the limit refused)."""
        if not 0 <= order <= MAX_PAGE_ORDER or n < 0:
            raise ConfigError(f"order {order} outside 0..{MAX_PAGE_ORDER} or n {n} < 0")
        if gfp is None:
            gfp = G.GFP_HIGHUSER_MOVABLE | (_GFP_COMP if order else 0)
        out = np.full(n, -1, np.int64)
        done = 0
        f = self.folios
        while done < n:
            f._ensure()
            k = int(add_folios_nb(f.state, f.slab.state, f.pa, self.state, self.compact_state, np.int64(n - done),
                                  bool(anon),
                                  np.int64(order), self._memcg(memcg), np.int64(to_gfp(gfp)),
                                  np.int64(0 if anon else mapping), np.int64(first_index + (done << order)),
                                  np.int64(self.machine.nr_cpus), out[done:]))
            done += k
            if done < n:
                f.state = grow_memdesc_state(f.state, 2 * MAX_PIECES)
                f.slab.state = slab_state_headroom(f.slab.state, 4 * HEADROOM_SLABS)
        return [int(x) if x >= 0 else None for x in out]

    def mark_accessed(self, s: int, cpu: int = 0) -> None:
        folio_mark_accessed(self.ms, self.state, self.folios._slot(s), self._cpu(cpu))

    def touch(self, s: int) -> None:
        """The PTEs mapping the folio were accessed (their young bits set)."""
        self.ms.flags[self.folios._slot(s)] |= B_YOUNG

    def set_dirty(self, s: int) -> None:
        self.ms.flags[self.folios._slot(s)] |= B_DIRTY

    def end_writeback(self, s: int) -> bool:
        return bool(folio_end_writeback(self.ms, self.state, self.folios._slot(s)))

    def mlock(self, s: int) -> None:
        """PG_mlocked: the folio goes to the unevictable list when reclaim next meets it."""
        self.ms.flags[self.folios._slot(s)] |= B_MLOCKED

    def delete(self, s: int, cpu: int = 0) -> None:
        rc = int(self._run(delete_folio_nb, self.folios._slot(s), self._cpu(cpu)))
        if rc < 0:
            raise ConfigError(f"delete({s}) failed ({rc}): the folio is pinned or still referenced")

    def drain(self, cpu: int | None = None) -> None:
        if cpu is None:
            lru_add_drain_all(self.ms, self.state)
        else:
            lru_add_drain_cpu(self.ms, self.state, self._cpu(cpu))

    # -- reclaim
    def reclaim_memcg(self, memcg: int, nr_pages: int = SWAP_CLUSTER_MAX, gfp: int | str = "GFP_KERNEL",
                      cpu: int = 0) -> int:
        return int(self._run(try_to_free_mem_cgroup_pages, self._memcg(memcg), np.int64(nr_pages),
                             np.int64(to_gfp(gfp)), True, self._cpu(cpu)))

    def try_to_free_pages(self, gfp: int | str = "GFP_KERNEL", order: int = 0, cpu: int = 0) -> int:
        return int(self._run(try_to_free_pages, np.int64(to_gfp(gfp)), np.int64(order), self._cpu(cpu)))

    def kswapd(self, cpu: int = 0) -> int | None:
        """Run kswapd if it was woken: pages it reclaimed, or None if it was asleep."""
        r = int(self._run(kswapd_run, self._cpu(cpu)))
        return None if r < 0 else r

    @property
    def kswapd_awake(self) -> bool:
        return bool(self.state.ks[KS_WOKEN])

    def alloc(self, order: int = 0, gfp: int | str | None = None, anon: bool = True, cpu: int = 0) -> int | None:
        """A folio through the MM's allocation entry with recovery (no memcg, not on the LRU)."""
        if gfp is None:
            gfp = G.GFP_HIGHUSER_MOVABLE | (_GFP_COMP if order else 0)
        rc = int(self._run(alloc_folio_recover, self.compact_state, np.int64(to_gfp(gfp)), np.int64(order),
                           np.int64(MD_ANON if anon else MD_FILE), self._cpu(cpu)))
        return rc if rc >= 0 else None

    # -- views
    def lru_sizes(self, memcg: int = 0) -> dict[str, int]:
        m = int(memcg)
        return {name: int(self.ms.lru_head[m * NR_LRU_LISTS + i, 3]) for i, name in enumerate(LRU_LIST_NAMES)}

    def vmstat(self) -> dict[str, int]:
        return {k: int(v) for k, v in zip(VM_NAMES, self.state.vm, strict=True)}

    def log(self) -> list[tuple]:
        n = int(self.state.logn[0])
        return [(LOG_KINDS[int(r[0])], *map(int, r[1:12])) for r in self.state.log[:n]]

    def clear_log(self) -> None:
        self.state.logn[:] = 0

    def check(self) -> str:
        """"ok", or the first inconsistency of the folio layer or of the reclaim state."""
        r = self.folios.check()
        if r != "ok":
            return r
        code, a, b = reclaim_check_nb(self.ms, self.state)
        if code:
            return RECLAIM_CHECK_MESSAGES[int(code)].format(a=int(a), b=int(b))
        return "ok"
