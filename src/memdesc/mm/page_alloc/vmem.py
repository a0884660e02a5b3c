"""The ``vmem`` design: Matthew Wilcox's one-word memdesc over a vmem page allocator.

Theory
------
``struct page { unsigned long memdesc; }``: 8 bytes per page, a 4-bit type and a 60-bit
payload (memmap.py's W=1 table).  Free memory is managed as vmem segments (see
:mod:`memdesc.mm.page_alloc.vmem_arena` for the arenas, the 32-byte ``struct buddy``
descriptors and how the memdesc replaces vmem's arena list and hash).  The rule, from
Wilcox's write-up: "We must never allocate memory when freeing memory.  So we must
allocate the necessary struct buddy at the time we allocate the memory.  If we cannot do
so, we simply fail the allocation."

What each page's memdesc holds:

=============================  ==============================================================
page                           memdesc
=============================  ==============================================================
first/last page of a free      ``MD_FREE | descriptor`` (boundary tags; coalescing reads the
segment                        memdescs of ``pfn - 1`` and ``pfn + size``)
inside a free segment          ``MD_FREE`` with a null payload
allocated (also per-CPU        ``MD_BUDDY_ALLOC | descriptor`` on every page (the
cached) pages                  allocation's descriptor; a free converts it in place)
descriptor pages               ``MD_SLAB | slot`` in the descriptor cache's page table
reserved pages / holes         type 0 (bare) with subtype reserved / hole, zone and node
=============================  ==============================================================

Zones, watermarks, zonelists, gfp handling, pageblock migratetypes and the per-CPU
policy (high/batch/free_count, ``nr_pcp_high``/``nr_pcp_free``/``nr_pcp_alloc``) are
those of ``linux`` (the shared fields and helpers of :mod:`memdesc.mm.page_alloc.core`).
Mapping onto arenas, per zone:

* orders >= pageblock_order come from the *zone arena* of whole free pageblocks (and go
  back there): Linux's free pageblocks, which any migratetype may claim;
* smaller orders come from the arena of the request's migratetype, which *imports* a
  pageblock from the zone arena when it has nothing that fits (the pageblock takes the
  type), and *releases* a pageblock back when it becomes entirely free (mergeable types
  only: highatomic, CMA and isolated pageblocks stay typed, as Linux never merges them);
* failing that, Linux 6.15's fallbacks: *claim* (move a whole pageblock of a fallback type
  to the request's arena when ``free + alike >= pageblock/2``, ``try_to_claim_block``)
  and *steal* (carve from the fallback type's arena, pageblock type unchanged); neither
  under ``ALLOC_NOFRAGMENT``; highatomic reserves and CMA as in ``rmqueue_buddy``;
* per-CPU lists hold allocated segments: a 15-round magazine of pfns at the head, then
  segments linked through their descriptors (vmem_arena: "Per-CPU lists"); a free pushes a
  round without touching the allocation's descriptor, and ``free_pcppages_bulk`` frees
  batches from the tail into the arenas.

Descriptor accounting and the recursion bound are in vmem_arena's theory statement:
every allocation reserves ``VMEM_SEGS_PER_ALLOC_MAX`` (4) descriptors plus
``DESC_POPULATE_RESERVE`` (2) before it changes anything, or fails (counted in
``alloc_failed_for_metadata``); free paths take none (``free_path_allocations`` stays 0,
and ``free_stalls`` too: nothing on a free path can wait for memory).  Fault injection
(``AllocConfig.fail_descriptor_alloc``, like illumos' ``vmem_mtbf``) fails descriptor
reservations at random with a seeded generator.

Deviations from ``linux``, by construction of the design: a free block is a segment of any
length, so ``free_area[order]`` becomes "free segments of size class ``order``" for the
watermark test (``nr_free``; the class of ``MAX_PAGE_ORDER`` counts every larger one too),
while ``/proc/buddyinfo`` and pagetypeinfo decompose the segments into aligned blocks as
the kernel would count them; highatomic reserves are made for orders below
pageblock_order only; a bulk refill does not remember its fallback mode.
"""

from __future__ import annotations

import numpy as np

from memdesc import _mem
from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError
from memdesc.mm import gfp as G
from memdesc.mm import memmap as mmap
from memdesc.mm.memmap import MD_BUDDY_ALLOC, MD_FREE, MD_SLAB, MD_TYPE_MASK
from memdesc.mm.mm_init import MachineLayout
from memdesc.mm.mmzone import (
    MAX_PAGE_ORDER,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGE_SIZE,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    ZoneType,
    nr_pcp_lists,
)
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.page_alloc import vmem_arena as va
from memdesc.mm.page_alloc import vmem_exact as vx
from memdesc.mm.page_alloc.base import BuddyDesign
from memdesc.mm.page_alloc.setup import AllocConfig, build_zone_state
from memdesc.mm.page_alloc.vmem_arena import (
    A_ZONE,
    D_ARENA,
    D_KNEXT,
    D_KPREV,
    D_SIZE,
    D_START,
    D_TYPE,
    DESC_BYTES,
    DESC_MINFREE,
    DESC_PER_PAGE,
    DT_PCP,
    MAG_ROUNDS,
    NCLASS,
    NDCOLS,
    NR_ARENAS_PER_ZONE,
    NR_V,
    V_HEADS,
    V_IN_FREE,
    V_NDPAGES,
    V_NFREE,
    V_PCP_HEAD0,
    VMEM_ALLOC,
    VMEM_FREE,
    VMEM_SEGS_PER_ALLOC_MAX,
    arena_fit,
    arena_id,
    fl_head,
    md_tag,
    md_type,
    md_word,
    pcp_head,
)
from memdesc.mm.page_alloc.vmem_exact import vmem_take

E_META = -2  # internal: a descriptor reservation failed (the allocation fails at once)
#: owner byte of a descriptor page (an order-0 unmovable allocation made by the allocator itself)
PAGE_OFFSET_X86_64 = 0xFFFF888000000000
PAGE_OFFSET_I386 = 0xC0000000


class VmemStateType(StructType):
    pass


class VmemState(StructProxy):
    """core.ZONE_FIELDS, then: memdesc uint64[npages]; desc int64[rows, NDCOLS] (list heads,
    then descriptors); freemap int64[arenas]; afree int64[arenas] (free pages per arena);
    dpages int64[max descriptor pages] (pfn of each); vm int64[NR_V]; rng uint64[1]; mag
    int64[pcp lists, MAG_ROUNDS + 1] (each pcp list's magazine: count, then pfns)."""

    _fields = (*core.ZONE_FIELDS, "memdesc", "desc", "freemap", "afree", "dpages", "vm", "rng", "mag")


define_struct(VmemState, VmemStateType)


# ------------------------------------------------------------------ the watermark's list test
@njit
def vmem_list_first(st, lid):
    """list_first() of free_area[order].free_list[mt] as the watermark test uses it: the
    first free segment of size class ``order`` in the arena of ``mt`` (for a mergeable
    type, also the zone arena, whose free pageblocks any type may claim), or -1."""
    nb = core.nr_buddy_lists(st.z_start.shape[0])
    if lid >= nb:
        return -1
    mt = lid % MIGRATE_TYPES
    zo = lid // MIGRATE_TYPES
    order = zo % NR_PAGE_ORDERS
    z = zo // NR_PAGE_ORDERS
    for k in range(2):
        if k == 1 and mt >= MIGRATE_PCPTYPES:
            break
        a = arena_id(z, mt if k == 0 else A_ZONE)
        fm = st.freemap[a]
        if order < MAX_PAGE_ORDER:
            fm &= np.int64(1) << order
        else:
            fm &= -(np.int64(1) << order)
        if fm != 0:
            c = va.lowbit(fm) - 1
            return st.desc[st.desc[fl_head(a, c), D_KNEXT], D_START]
    return -1


# ------------------------------------------------------------------ taking pages from arenas
@njit
def _alloc_from(st, z, t, addr, size, mt_acct):
    n = va.seg_alloc(st, t, addr, size)
    core.account_freepages(st, z, -size, mt_acct)
    return n


@njit
def _try_arena(st, z, k, order):
    """Allocate 2^order aligned pages from arena k of zone z: descriptor or -1."""
    size = np.int64(1) << order
    t, addr = arena_fit(st, arena_id(z, k), size, size)
    if t < 0:
        return -1
    return _alloc_from(st, z, t, addr, size, k)


@njit
def _try_import(st, z, mt, order):
    """Import a pageblock from the zone arena into mt's arena and allocate from it."""
    za = arena_id(z, A_ZONE)
    if st.freemap[za] == 0:
        return -1
    t, _addr = arena_fit(st, za, PAGEBLOCK_NR_PAGES, PAGEBLOCK_NR_PAGES)
    if t < 0:
        return -1
    n = va.import_pageblock(st, z, t, mt)
    size = np.int64(1) << order
    return _alloc_from(st, z, n, st.desc[n, D_START], size, core.get_pfnblock_migratetype(st, st.desc[n, D_START]))


@njit
def _zone_alloc(st, z, order, mt):
    """Orders >= pageblock_order: whole pageblocks from the zone arena, retyped to mt."""
    size = np.int64(1) << order
    t, addr = arena_fit(st, arena_id(z, A_ZONE), size, size)
    if t < 0:
        return -1
    n = va.seg_alloc(st, t, addr, size)
    core.change_pageblock_range(st, addr, order, mt)
    core.account_freepages(st, z, -size, mt)
    return n


@njit
def _pageblock_free_alike(st, start, start_mt, block_mt):
    """(free pages, alike pages) of a pageblock, for try_to_claim_block's threshold."""
    d = st.desc
    free_pages = 0
    movable = 0
    p = start
    end = start + PAGEBLOCK_NR_PAGES
    while p < end:
        w = np.int64(st.memdesc[p])
        typ = w & MD_TYPE_MASK
        t = w >> 4
        if typ == MD_FREE and t != 0 and d[t, D_START] == p:
            free_pages += d[t, D_SIZE]
            p += d[t, D_SIZE]
            continue
        if typ == MD_BUDDY_ALLOC and t != 0:
            v = st.owner[d[t, D_START]]
            if v != core.OWNER_PCP and core.owner_mt(v) == core.MT_MOVABLE:
                movable += min(d[t, D_SIZE], end - p)
            p = d[t, D_START] + d[t, D_SIZE]
            continue
        p += 1
    if start_mt == core.MT_MOVABLE:
        alike = movable
    elif block_mt == core.MT_MOVABLE:
        alike = PAGEBLOCK_NR_PAGES - (free_pages + movable)
    else:
        alike = 0
    return free_pages, alike


@njit
def _rmqueue_claim(st, z, order, mt, alloc_flags, cpu):
    """__rmqueue_claim: the largest free segment of a fallback type; claim its pageblock."""
    if order < PAGEBLOCK_ORDER and (alloc_flags & core.ALLOC_NOFRAGMENT):
        return -1
    if not core.should_try_claim_block(st, order, mt):
        return -1
    best_c = -1
    best_k = -1
    for i in range(MIGRATE_PCPTYPES - 1):
        k = core.fallback_mt(mt, i)
        fm = st.freemap[arena_id(z, k)] & -(np.int64(1) << order)
        if fm != 0:
            c = va.highbit(fm) - 1
            if c > best_c:
                best_c = c
                best_k = k
    if best_k < 0:
        return -1
    a = arena_id(z, best_k)
    t = st.desc[fl_head(a, best_c), D_KNEXT]
    start = st.desc[t, D_START] & ~np.int64(PAGEBLOCK_NR_PAGES - 1)
    if core.boost_watermark(st, z) and (alloc_flags & core.ALLOC_KSWAPD):
        st.z_flags[z] |= core.ZONE_BOOSTED_WATERMARK
    free_pages, alike = _pageblock_free_alike(st, start, mt, best_k)
    if free_pages + alike < (1 << (PAGEBLOCK_ORDER - 1)) and st.cfg[core.CFG_MOBILITY_DISABLED] == 0:
        return -1
    va.move_pageblock(st, z, start, best_k, mt)
    n = _try_arena(st, z, core.get_pfnblock_migratetype(st, start), order)
    if n >= 0:
        st.stats[core.ST_CLAIM] += 1
        core.extfrag_event(st, st.desc[n, D_START], order, min(best_c, MAX_PAGE_ORDER), mt, best_k, cpu)
    return n


@njit
def _rmqueue_steal(st, z, order, mt, alloc_flags, cpu):
    if alloc_flags & core.ALLOC_NOFRAGMENT:
        return -1
    for i in range(MIGRATE_PCPTYPES - 1):
        k = core.fallback_mt(mt, i)
        n = _try_arena(st, z, k, order)
        if n >= 0:
            st.stats[core.ST_STEAL] += 1
            c = va.highbit(st.desc[n, D_SIZE]) - 1
            core.extfrag_event(st, st.desc[n, D_START], order, min(c, MAX_PAGE_ORDER), mt, k, cpu)
            return n
    return -1


@njit
def vmem_rmqueue(st, z, order, mt, alloc_flags, cpu):
    """__rmqueue + rmqueue_buddy for one zone: a descriptor, -1 (no space) or E_META.

    Reserves the worst-case descriptors first: nothing changes when that fails.
    """
    if not va.desc_reserve(st, VMEM_SEGS_PER_ALLOC_MAX):
        return E_META
    if order >= PAGEBLOCK_ORDER:
        return _zone_alloc(st, z, order, mt)
    n = -1
    if alloc_flags & core.ALLOC_HIGHATOMIC:
        n = _try_arena(st, z, core.MT_HIGHATOMIC, order)
    cma = st.cfg[core.CFG_CMA] != 0 and (alloc_flags & core.ALLOC_CMA) != 0
    if n < 0 and cma and st.z_free_cma[z] > st.z_free[z] // 2:
        n = _try_arena(st, z, core.MT_CMA, order)
    if n < 0:
        n = _try_arena(st, z, mt, order)
    if n < 0:
        n = _try_import(st, z, mt, order)
    if n < 0 and cma:
        n = _try_arena(st, z, core.MT_CMA, order)
    if n < 0:
        n = _rmqueue_claim(st, z, order, mt, alloc_flags, cpu)
    if n < 0:
        n = _rmqueue_steal(st, z, order, mt, alloc_flags, cpu)
    if n < 0 and (alloc_flags & (core.ALLOC_OOM | core.ALLOC_NON_BLOCK)):
        n = _try_arena(st, z, core.MT_HIGHATOMIC, order)
    return n


# ------------------------------------------------------------------ per-CPU lists
@njit
def vmem_rmqueue_pcplist(st, z, order, mt, alloc_flags, cpu):
    """rmqueue_pcplist(): pfn, -1 or E_META (the refill's reservation failed)."""
    pcp = st.pcp[cpu, z]
    pcp[core.PCP_FREE_COUNT] >>= 1
    h = pcp_head(st, cpu, z, core.order_to_pindex(mt, order))
    if va.pcp_empty(st, h):
        d = st.desc
        batch = core.nr_pcp_alloc(st, pcp, z, order)
        got = 0
        rc = -1
        for _ in range(batch):
            rc = vmem_rmqueue(st, z, order, mt, alloc_flags, cpu)
            if rc < 0:
                break
            va.pcp_push_tail(st, h, rc)
            st.owner[d[rc, D_START]] = core.OWNER_PCP
            got += 1
        st.stats[core.ST_PCP_REFILL] += 1
        pcp[core.PCP_COUNT] += got << order
        if got == 0:
            return rc
    pfn = va.pcp_pop_head(st, h)
    st.owner[pfn] = core.OWNER_NONE
    pcp[core.PCP_COUNT] -= 1 << order
    st.stats[core.ST_PCP_ALLOC] += 1
    return pfn


@njit
def vmem_rmqueue_zone(st, z, order, alloc_flags, mt, cpu):
    """rmqueue(): the per-CPU list for its orders, else the arenas: pfn, -1 or E_META."""
    n = -1
    if st.cfg[core.CFG_PCP_ENABLED] != 0 and core.pcp_allowed_order(st, order):
        n = vmem_rmqueue_pcplist(st, z, order, mt, alloc_flags, cpu)
        if n == E_META:
            return n
    if n < 0:
        n = vmem_rmqueue(st, z, order, mt, alloc_flags, cpu)
        if n >= 0:
            st.stats[core.ST_BUDDY_ALLOC] += 1
            n = st.desc[n, D_START]
    if (alloc_flags & core.ALLOC_KSWAPD) and (st.z_flags[z] & core.ZONE_BOOSTED_WATERMARK):
        core.wakeup_kswapd(st, z)
    return n


@njit
def vmem_free_to_arena(st, z, t):
    """__free_one_page(): the segment's pages go back to its zone's arenas (never allocates)."""
    start = st.desc[t, D_START]
    mt = core.get_pfnblock_migratetype(st, start)
    core.account_freepages(st, z, st.desc[t, D_SIZE], mt)
    va.arena_free(st, z, t, mt)


@njit
def vmem_free_pcppages_bulk(st, z, count, cpu, pindex):
    pcp = st.pcp[cpu, z]
    count = min(pcp[core.PCP_COUNT], count)
    pindex = pindex - 1
    d = st.desc
    while count > 0:
        while True:
            pindex += 1
            if pindex > core.NR_PCP_LISTS - 1:
                pindex = 0
            h = pcp_head(st, cpu, z, pindex)
            if not va.pcp_empty(st, h):
                break
        nr_pages = np.int64(1) << core.pindex_to_order(pindex)
        while True:
            t = va.pcp_pop_tail(st, h)
            pfn = d[t, D_START]
            st.owner[pfn] = core.OWNER_NONE
            count -= nr_pages
            pcp[core.PCP_COUNT] -= nr_pages
            st.stats[core.ST_PCP_DRAINED] += nr_pages
            core.trace_event(st, core.EV_PCPU_DRAIN, cpu, pfn, core.pindex_to_order(pindex),
                             core.get_pfnblock_migratetype(st, pfn), 0, 0, 0)
            vmem_free_to_arena(st, z, t)
            if count <= 0 or va.pcp_empty(st, h):
                break


@njit
def vmem_free_unref_page_commit(st, z, cpu, pfn, mt, order):
    """free_frozen_page_commit(): the allocation at pfn goes to the head of its pcp list (a
    magazine round: its descriptor is not touched)."""
    pcp = st.pcp[cpu, z]
    pcp[core.PCP_ALLOC_FACTOR] >>= 1
    pindex = core.order_to_pindex(mt, order)
    va.pcp_push_head(st, pcp_head(st, cpu, z, pindex), pfn)
    st.owner[pfn] = core.OWNER_PCP
    pcp[core.PCP_COUNT] += 1 << order
    st.stats[core.ST_PCP_FREE] += 1
    batch = pcp[core.PCP_BATCH]
    free_high = False
    if order != 0 and order <= PAGE_ALLOC_COSTLY_ORDER:
        free_high = (pcp[core.PCP_FREE_COUNT] >= (batch + pcp[core.PCP_HIGH_MIN] // 2)
                     and (pcp[core.PCP_FLAGS] & core.PCPF_PREV_FREE_HIGH_ORDER) != 0
                     and ((pcp[core.PCP_FLAGS] & core.PCPF_FREE_HIGH_BATCH) == 0 or pcp[core.PCP_COUNT] >= batch))
        pcp[core.PCP_FLAGS] |= core.PCPF_PREV_FREE_HIGH_ORDER
    elif pcp[core.PCP_FLAGS] & core.PCPF_PREV_FREE_HIGH_ORDER:
        pcp[core.PCP_FLAGS] &= ~core.PCPF_PREV_FREE_HIGH_ORDER
    if pcp[core.PCP_FREE_COUNT] < (batch << core.CONFIG_PCP_BATCH_SCALE_MAX):
        pcp[core.PCP_FREE_COUNT] += 1 << order
    high = core.nr_pcp_high(st, pcp, z, batch, free_high)
    if pcp[core.PCP_COUNT] >= high:
        vmem_free_pcppages_bulk(st, z, core.nr_pcp_free(pcp, batch, high, free_high), cpu, pindex)
        if (st.z_flags[z] & core.ZONE_BELOW_HIGH) and core.zone_watermark_ok(
                st, z, 0, core.high_wmark_pages(st, z), st.cfg[core.CFG_MOVABLE_IDX], 0):
            st.z_flags[z] &= ~core.ZONE_BELOW_HIGH


@njit
def vmem_drain_all_pages(st):
    st.vm[V_IN_FREE] += 1
    st.stats[core.ST_DRAIN_ALL] += 1
    for cpu in range(st.cpu_node.shape[0]):
        for z in range(st.z_start.shape[0]):
            pcp = st.pcp[cpu, z]
            while pcp[core.PCP_COUNT] > 0:
                to_drain = min(pcp[core.PCP_COUNT], pcp[core.PCP_BATCH] << core.CONFIG_PCP_BATCH_SCALE_MAX)
                vmem_free_pcppages_bulk(st, z, to_drain, cpu, 0)
    st.vm[V_IN_FREE] -= 1


# ------------------------------------------------------------------ highatomic reserves
@njit
def vmem_reserve_highatomic(st, pfn, order, z):
    if order >= PAGEBLOCK_ORDER or st.z_managed[z] // 100 < PAGEBLOCK_NR_PAGES:
        return
    max_managed = ((st.z_managed[z] // 100 + PAGEBLOCK_NR_PAGES - 1) // PAGEBLOCK_NR_PAGES) * PAGEBLOCK_NR_PAGES
    if st.z_reserved_highatomic[z] >= max_managed:
        return
    mt = core.get_pfnblock_migratetype(st, pfn)
    if not core.migratetype_is_mergeable(mt):
        return
    va.move_pageblock(st, z, pfn & ~np.int64(PAGEBLOCK_NR_PAGES - 1), mt, core.MT_HIGHATOMIC)
    st.z_reserved_highatomic[z] += PAGEBLOCK_NR_PAGES
    st.stats[core.ST_HIGHATOMIC_RESERVE] += 1


@njit
def vmem_unreserve_highatomic(st, node, highest_zoneidx, mt, force):
    zl = st.zonelist[node]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if st.z_idx[z] > highest_zoneidx:
            continue
        if not force and st.z_reserved_highatomic[z] <= PAGEBLOCK_NR_PAGES:
            continue
        a = arena_id(z, core.MT_HIGHATOMIC)
        if st.freemap[a] == 0:
            continue
        t = st.desc[fl_head(a, va.lowbit(st.freemap[a]) - 1), D_KNEXT]
        start = st.desc[t, D_START] & ~np.int64(PAGEBLOCK_NR_PAGES - 1)
        st.z_reserved_highatomic[z] -= min(PAGEBLOCK_NR_PAGES, st.z_reserved_highatomic[z])
        va.move_pageblock(st, z, start, core.MT_HIGHATOMIC, mt)
        st.stats[core.ST_HIGHATOMIC_UNRESERVE] += 1
        return True
    return False


# ------------------------------------------------------------------ the allocator entry
@njit
def vmem_get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu):
    """get_page_from_freelist() over the arenas: pfn, -1, or E_META (stop at once)."""
    zl = st.zonelist[node]
    while True:
        no_fallback = (alloc_flags & core.ALLOC_NOFRAGMENT) != 0
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
            if no_fallback and st.cfg[core.CFG_NR_ONLINE_NODES] > 1 and z != preferred \
                    and st.z_node[z] != st.z_node[preferred]:
                retry = True
                break
            ok = False
            if not (st.z_flags[z] & core.ZONE_BELOW_HIGH):
                if core.zone_watermark_fast(st, z, order, core.high_wmark_pages(st, z), highest_zoneidx,
                                            alloc_flags):
                    ok = True
                else:
                    st.z_flags[z] |= core.ZONE_BELOW_HIGH
            if not ok:
                mark = core.wmark_pages(st, z, alloc_flags & core.ALLOC_WMARK_MASK)
                if core.zone_watermark_fast(st, z, order, mark, highest_zoneidx, alloc_flags):
                    ok = True
                elif alloc_flags & core.ALLOC_NO_WATERMARKS:
                    ok = True
                else:
                    st.stats[core.ST_WMARK_FAIL] += 1
            if not ok:
                continue
            pfn = vmem_rmqueue_zone(st, z, order, alloc_flags, mt, cpu)
            if pfn == E_META:
                return E_META
            if pfn >= 0:
                st.owner[pfn] = core.owner_encode(order, mt)
                if alloc_flags & core.ALLOC_HIGHATOMIC:
                    vmem_reserve_highatomic(st, pfn, order, z)
                core.zone_statistics(st, preferred, z, node, order)
                return pfn
        if retry or no_fallback:
            alloc_flags &= ~core.ALLOC_NOFRAGMENT
            st.stats[core.ST_NOFRAGMENT_RETRY] += 1
            continue
        return -1


@njit
def vmem_alloc_slowpath(st, gfp, order, node, highest_zoneidx, mt, cpu):
    st.stats[core.ST_SLOWPATH] += 1
    alloc_flags = G.gfp_to_alloc_flags_nb(gfp, order, st.cfg[core.CFG_CMA] != 0, False, False)
    pfn = vmem_get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    if pfn >= 0 or pfn == E_META:
        return pfn
    if (gfp & core.GFP_MEMALLOC) and not (gfp & core.GFP_NOMEMALLOC):
        pfn = vmem_get_page_from_freelist(st, gfp, order, core.ALLOC_NO_WATERMARKS, node, highest_zoneidx, mt, cpu)
        if pfn >= 0 or pfn == E_META:
            return pfn
    if not (gfp & core.GFP_DIRECT_RECLAIM):
        return -1
    vmem_unreserve_highatomic(st, node, highest_zoneidx, mt, False)
    vmem_drain_all_pages(st)
    pfn = vmem_get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    if pfn >= 0 or pfn == E_META:
        return pfn
    if vmem_unreserve_highatomic(st, node, highest_zoneidx, mt, True):
        pfn = vmem_get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    return pfn


@njit
def vmem_alloc_pages(st, gfp, order, cpu):
    """__alloc_pages(): pfn or -1.  A failed descriptor reservation fails the allocation."""
    node = st.cpu_node[cpu]
    highest_zoneidx = st.gfp_zone_table[gfp & core.GFP_ZONEMASK]
    mt = core.gfp_migratetype(st, gfp)
    if highest_zoneidx < 0 or mt == 3 or order < 0 or order > MAX_PAGE_ORDER:
        st.stats[core.ST_ALLOC_FAIL] += 1
        return -1
    preferred = core.first_zone(st, node, highest_zoneidx)
    if preferred < 0:
        st.stats[core.ST_ALLOC_FAIL] += 1
        return -1
    alloc_flags = core.ALLOC_WMARK_LOW
    if st.cfg[core.CFG_CMA] != 0 and mt == core.MT_MOVABLE:
        alloc_flags |= core.ALLOC_CMA
    alloc_flags |= core.alloc_flags_nofragment(st, preferred, gfp)
    pfn = vmem_get_page_from_freelist(st, gfp, order, alloc_flags, node, highest_zoneidx, mt, cpu)
    if pfn == -1:
        pfn = vmem_alloc_slowpath(st, gfp, order, node, highest_zoneidx, mt, cpu)
    if pfn < 0:
        st.stats[core.ST_ALLOC_FAIL] += 1
        if pfn == E_META:
            st.stats[core.ST_ALLOC_FAILED_FOR_META] += 1
        core.trace_event(st, core.EV_ALLOC, cpu, -1, order, mt, gfp, 0, 0)
        return -1
    st.stats[core.ST_ALLOC] += 1
    st.stats[core.ST_ALLOC_PAGES] += 1 << order
    core.trace_event(st, core.EV_ALLOC, cpu, pfn, order, mt, gfp, 0, 0)
    return pfn


# ------------------------------------------------------------------ free
@njit
def vmem_check_free(st, pfn, order):
    """Validate free_pages(pfn, order) without touching state (core.check_free's codes)."""
    if order < 0 or order > MAX_PAGE_ORDER:
        return core.E_ORDER
    if pfn < 0 or pfn >= st.owner.shape[0] or core.page_zone(st, pfn) < 0:
        return core.E_RANGE
    v = st.owner[pfn]
    if v == core.OWNER_RESERVED:
        return core.E_RESERVED
    if v == core.OWNER_PCP:
        return core.E_DOUBLE_FREE
    typ = md_type(st, pfn)
    if typ == MD_SLAB:
        return core.E_RESERVED  # the allocator's own descriptor page
    if v == core.OWNER_NONE:
        return core.E_DOUBLE_FREE if typ == MD_FREE else core.E_NOT_HEAD
    if core.owner_order(v) != order:
        return core.E_ORDER
    return core.OK


@njit
def vmem_free_pages(st, pfn, order, cpu):
    """free_pages(): 0 or an error code (state unchanged).  Takes no descriptor."""
    rc = vmem_check_free(st, pfn, order)
    if rc != core.OK:
        return rc
    st.vm[V_IN_FREE] += 1
    z = core.page_zone(st, pfn)
    core.trace_event(st, core.EV_FREE, cpu, pfn, order, -1, 0, 0, 0)
    st.owner[pfn] = core.OWNER_NONE
    st.stats[core.ST_FREE] += 1
    st.stats[core.ST_FREE_PAGES] += 1 << order
    st.zstats[z, core.ZS_PGFREE] += 1 << order
    mt = core.get_pfnblock_migratetype(st, pfn)
    if not core.pcp_allowed_order(st, order) or st.cfg[core.CFG_PCP_ENABLED] == 0 or mt == core.MT_ISOLATE:
        st.stats[core.ST_BUDDY_FREE] += 1
        vmem_free_to_arena(st, z, md_tag(st, pfn))
    else:
        if mt >= MIGRATE_PCPTYPES:
            mt = core.MT_MOVABLE
        vmem_free_unref_page_commit(st, z, cpu, pfn, mt, order)
    st.vm[V_IN_FREE] -= 1
    return core.OK


@njit
def vmem_pa_drain(st):
    vmem_drain_all_pages(st)


dispatch.register(VmemState, {
    "pa_alloc": vmem_alloc_pages,
    "pa_free": vmem_free_pages,
    "pa_take": vmem_take,
    "pa_drain": vmem_pa_drain,
    "pcp_free_bulk": vmem_free_pcppages_bulk,
    "list_first": vmem_list_first,
    # exact placement (trace replay at the real kernel's pfns): vmem_exact
    "pa_free_extent": vx.vmem_xp_free_extent,
    "pa_free_range": vx.vmem_xp_free_range,
    "pa_set_pageblock_type": vx.vmem_xp_set_pageblock_type,
    "pa_mark_allocated": vx.vmem_xp_mark_allocated,
    "pa_mark_unallocated": vx.vmem_xp_mark_unallocated,
    "pa_split": vx.vmem_xp_split,
    "pa_pcp_link": vx.vmem_xp_pcp_link,
    "pa_pcp_unlink": vx.vmem_xp_pcp_unlink,
    "pa_online_range": vx.vmem_xp_online_range,
})


# ------------------------------------------------------------------ boot and snapshot import
@njit
def _ensure_descriptors(st):
    while st.vm[V_NFREE] < DESC_MINFREE:
        if not va.desc_populate(st, False):
            return False
    return True


@njit
def vmem_add_free_range(st, z, s, e):
    """Free [s, e) (a maximal run of free pages of zone z) at boot: whole pageblocks of a
    mergeable type go to the zone arena, the rest to their pageblock type's arena.
    Returns False when no descriptor can be had."""
    p = s
    while p < e:
        if not _ensure_descriptors(st):
            return False
        pbe = (p & ~np.int64(PAGEBLOCK_NR_PAGES - 1)) + PAGEBLOCK_NR_PAGES
        if (p & (PAGEBLOCK_NR_PAGES - 1)) == 0 and pbe <= e:
            q = p
            while q + PAGEBLOCK_NR_PAGES <= e and core.get_pfnblock_migratetype(st, q) < MIGRATE_PCPTYPES:
                q += PAGEBLOCK_NR_PAGES
            if q > p:
                va.seg_create_free(st, arena_id(z, A_ZONE), p, q - p)
                core.account_freepages(st, z, q - p, core.MT_MOVABLE)
                p = q
                continue
        end = min(e, pbe)
        mt = core.get_pfnblock_migratetype(st, p)
        va.seg_create_free(st, arena_id(z, mt), p, end - p)
        core.account_freepages(st, z, end - p, mt)
        p = end
    return True


@njit
def vmem_init_state(st, first_dpage, starts, ends, zones, alloc_pfn, alloc_order, alloc_mt, pcp_pfn, pcp_cpu):
    """Boot (or snapshot import): the first descriptor page, free runs, then allocations and
    per-CPU pages (each with its descriptor).  Returns -1 when done, else the index of the
    free run (0..) or allocation (len(starts)..) for which no descriptor could be had."""
    va.desc_add_page(st, first_dpage)
    for i in range(starts.shape[0]):
        if not vmem_add_free_range(st, zones[i], starts[i], ends[i]):
            return i
    d = st.desc
    for i in range(alloc_pfn.shape[0] + pcp_pfn.shape[0]):
        if not _ensure_descriptors(st):
            return starts.shape[0] + i
        pcp = i >= alloc_pfn.shape[0]
        p = pcp_pfn[i - alloc_pfn.shape[0]] if pcp else alloc_pfn[i]
        order = 0 if pcp else alloc_order[i]
        t = va.desc_get(st)
        d[t, D_START] = p
        d[t, D_SIZE] = np.int64(1) << order
        d[t, D_TYPE] = VMEM_ALLOC
        d[t, D_ARENA] = -1
        va.mark_alloc_pages(st, t, p, np.int64(1) << order)
        if pcp:
            z = core.page_zone(st, p)
            cpu = pcp_cpu[i - alloc_pfn.shape[0]]
            mt = core.get_pfnblock_migratetype(st, p)
            if mt >= MIGRATE_PCPTYPES:
                mt = core.MT_MOVABLE
            va.pcp_push_tail(st, pcp_head(st, cpu, z, core.order_to_pindex(mt, 0)), t)
            st.owner[p] = core.OWNER_PCP
            st.pcp[cpu, z, core.PCP_COUNT] += 1
        else:
            st.owner[p] = core.owner_encode(order, alloc_mt[i])
    return -1


# ------------------------------------------------------------------ invariant check
(VC_OK, VC_DESC_COUNT, VC_STACK, VC_SEG_RANGE, VC_SEG_ZONE, VC_SEG_PAGEBLOCK, VC_SEG_MT, VC_BOUND, VC_INTERIOR,
 VC_ALLOC_MD, VC_ALLOC_OWNER, VC_OVERLAP, VC_LOST, VC_DPAGE, VC_RESERVED, VC_FREELIST, VC_FREEMAP,
 VC_UNCOALESCED, VC_UNRELEASED, VC_PCP, VC_PCP_COUNT, VC_ARENA_FREE, VC_ZONE_FREE, VC_NR_FREE, VC_HIGHATOMIC,
 VC_ZONE_ALIGN) = range(26)
VCHECK_MESSAGES = {
    VC_DESC_COUNT: "descriptor accounting: {a} in use + {b} free != {c} carved from descriptor pages",
    VC_STACK: "descriptor {a} on the free stack is in use or listed twice",
    VC_SEG_RANGE: "descriptor {a}: segment [{b:#x}, +{c}) is empty or outside the machine",
    VC_SEG_ZONE: "free segment {a} at pfn {b:#x} is not inside the zone of its arena {c}",
    VC_SEG_PAGEBLOCK: "free segment {a} at pfn {b:#x} of a migratetype arena crosses a pageblock boundary",
    VC_SEG_MT: "free segment {a} at pfn {b:#x} is in the arena of type {c} but its pageblock has another type",
    VC_BOUND: "free segment {a}: the memdesc of its boundary page {b:#x} does not point to it",
    VC_INTERIOR: "free segment {a}: inner page {b:#x} has memdesc {c:#x}, not a bare MD_FREE",
    VC_ALLOC_MD: "allocation {a}: page {b:#x} has memdesc {c:#x}, not MD_BUDDY_ALLOC pointing to it",
    VC_ALLOC_OWNER: "allocation {a} at pfn {b:#x}: page_owner entry {c:#x} disagrees (order or pcp state)",
    VC_OVERLAP: "page {b:#x} is covered twice (states {a} and {c})",
    VC_LOST: "page {b:#x} of zone {a} is in no state: not free, allocated, pcp, descriptor page nor reserved",
    VC_DPAGE: "descriptor page {a} (pfn {b:#x}) is not a directly-mapped page with memdesc MD_SLAB",
    VC_RESERVED: "reserved page {b:#x} has memdesc {c:#x}, not a bare (type 0) memdesc",
    VC_FREELIST: "arena {a} freelist {b}: member {c} is not a free segment of this arena and class",
    VC_FREEMAP: "arena {a}: freemap bit {b} disagrees with freelist emptiness",
    VC_UNCOALESCED: "free segments {a} and {c} of one arena are adjacent at pfn {b:#x} (not coalesced)",
    VC_UNRELEASED: "free segment {a} at pfn {b:#x} is a whole free pageblock left in migratetype arena {c}",
    VC_PCP: "pcp list {a}: member {c} is not a per-cpu cached allocation of the list's order",
    VC_PCP_COUNT: "cpu {a} zone {b}: pcp count differs from the pages on its lists ({c})",
    VC_ARENA_FREE: "arena {a}: free page counter {b} differs from the recount {c}",
    VC_ZONE_FREE: "zone {a}: NR_FREE_PAGES {b} differs from the recount {c}",
    VC_NR_FREE: "zone {a} class {b}: nr_free differs from the freelist count {c}",
    VC_HIGHATOMIC: "zone {a}: nr_free_highatomic {b} differs from the recount {c}",
    VC_ZONE_ALIGN: "zone-arena segment {a} at pfn {b:#x} is not whole pageblocks ({c} pages)",
}
COV_FREE, COV_ALLOC, COV_PCP, COV_DPAGE, COV_RESERVED = 1, 2, 3, 4, 5


@njit
def vmem_check_state(st):
    """Full invariant check; (code, a, b, c) with code VC_OK when consistent."""
    d = st.desc
    mm = st.memdesc
    vm = st.vm
    npages = mm.shape[0]
    nz = st.z_start.shape[0]
    heads = vm[V_HEADS]
    hi = heads + vm[V_NDPAGES] * DESC_PER_PAGE
    cover = np.zeros(npages, np.uint8)
    # descriptor pages
    for k in range(vm[V_NDPAGES]):
        p = st.dpages[k]
        z = core.page_zone(st, p)
        if z < 0 or st.z_direct[z] == 0 or np.int64(mm[p]) != np.int64(md_word(MD_SLAB, k)) or cover[p] != 0:
            return VC_DPAGE, k, p, 0
        cover[p] = COV_DPAGE
    # reserved pages
    for p in range(npages):
        if st.owner[p] == core.OWNER_RESERVED:
            if (np.int64(mm[p]) & MD_TYPE_MASK) != 0:
                return VC_RESERVED, 0, p, np.int64(mm[p])
            if cover[p] != 0:
                return VC_OVERLAP, cover[p], p, COV_RESERVED
            cover[p] = COV_RESERVED
    # descriptors
    narenas = st.freemap.shape[0]
    afree = np.zeros(narenas, np.int64)
    nseg = np.zeros(narenas, np.int64)
    zfree = np.zeros(nz, np.int64)
    zha = np.zeros(nz, np.int64)
    inuse = 0
    npcp = 0
    for t in range(heads, hi):
        ty = d[t, D_TYPE]
        if ty == 0:
            continue
        inuse += 1
        s = d[t, D_START]
        n = d[t, D_SIZE]
        if n <= 0 or s < 0 or s + n > npages:
            return VC_SEG_RANGE, t, s, n
        if ty == VMEM_FREE:
            a = d[t, D_ARENA]
            z = a // NR_ARENAS_PER_ZONE
            k = a % NR_ARENAS_PER_ZONE
            if a < 0 or a >= narenas or core.page_zone(st, s) != z or core.page_zone(st, s + n - 1) != z:
                return VC_SEG_ZONE, t, s, a
            if k == A_ZONE:
                if (s & (PAGEBLOCK_NR_PAGES - 1)) != 0 or (n & (PAGEBLOCK_NR_PAGES - 1)) != 0:
                    return VC_ZONE_ALIGN, t, s, n
            else:
                if (s >> PAGEBLOCK_ORDER) != ((s + n - 1) >> PAGEBLOCK_ORDER):
                    return VC_SEG_PAGEBLOCK, t, s, k
                if core.get_pfnblock_migratetype(st, s) != k:
                    return VC_SEG_MT, t, s, k
                if n == PAGEBLOCK_NR_PAGES and k < MIGRATE_PCPTYPES:
                    return VC_UNRELEASED, t, s, k
            w = np.int64(md_word(MD_FREE, t))
            if np.int64(mm[s]) != w:
                return VC_BOUND, t, s, 0
            if np.int64(mm[s + n - 1]) != w:
                return VC_BOUND, t, s + n - 1, 0
            for p in range(s, s + n):
                if p != s and p != s + n - 1 and np.int64(mm[p]) != MD_FREE:
                    return VC_INTERIOR, t, p, np.int64(mm[p])
                if cover[p] != 0:
                    return VC_OVERLAP, cover[p], p, COV_FREE
                cover[p] = COV_FREE
            afree[a] += n
            nseg[a] += 1
            if k != core.MT_ISOLATE:
                zfree[z] += n
            if k == core.MT_HIGHATOMIC:
                zha[z] += n
            # coalescing: no free neighbour of the same arena where merging is allowed
            if s > 0 and (k == A_ZONE or (s & (PAGEBLOCK_NR_PAGES - 1)) != 0):
                wl = np.int64(mm[s - 1])
                lt = wl >> 4
                if (wl & MD_TYPE_MASK) == MD_FREE and lt != 0 and d[lt, D_TYPE] == VMEM_FREE and d[lt, D_ARENA] == a:
                    return VC_UNCOALESCED, lt, s, t
        elif (ty & ~DT_PCP) == VMEM_ALLOC:
            w = np.int64(md_word(MD_BUDDY_ALLOC, t))
            cv = COV_ALLOC
            v = np.int64(st.owner[s])
            if (ty & DT_PCP) or v == core.OWNER_PCP:  # linked part, or a magazine round
                npcp += 1
                cv = COV_PCP
                if v != core.OWNER_PCP:
                    return VC_ALLOC_OWNER, t, s, v
            elif v == core.OWNER_NONE or v == core.OWNER_PCP or v == core.OWNER_RESERVED \
                    or (np.int64(1) << core.owner_order(v)) != n:
                return VC_ALLOC_OWNER, t, s, v
            for p in range(s, s + n):
                if np.int64(mm[p]) != w:
                    return VC_ALLOC_MD, t, p, np.int64(mm[p])
                if cover[p] != 0:
                    return VC_OVERLAP, cover[p], p, cv
                cover[p] = cv
        else:
            return VC_SEG_RANGE, t, s, n
    if inuse != vm[va.V_INUSE] or inuse + vm[V_NFREE] != hi - heads:
        return VC_DESC_COUNT, inuse, vm[V_NFREE], hi - heads
    for i in range(vm[V_NFREE]):
        t = d[i, va.D_STACK]
        if t < heads or t >= hi or d[t, D_TYPE] != 0:
            return VC_STACK, t, 0, 0
    # freelists, freemap, nr_free
    listed = np.zeros(narenas, np.int64)
    nrf = np.zeros((nz, NR_PAGE_ORDERS), np.int64)
    for a in range(narenas):
        for c in range(NCLASS):
            h = fl_head(a, c)
            t = d[h, D_KNEXT]
            cnt = 0
            while t != h:
                cnt += 1
                if t < heads or t >= hi or d[t, D_TYPE] != VMEM_FREE or d[t, D_ARENA] != a \
                        or va.highbit(d[t, D_SIZE]) - 1 != c or cnt > nseg[a] or d[d[t, D_KNEXT], D_KPREV] != t:
                    return VC_FREELIST, a, c, t
                t = d[t, D_KNEXT]
            if ((st.freemap[a] >> c) & 1) != (1 if cnt > 0 else 0):
                return VC_FREEMAP, a, c, 0
            listed[a] += cnt
            nrf[a // NR_ARENAS_PER_ZONE, min(c, MAX_PAGE_ORDER)] += cnt
        if listed[a] != nseg[a]:
            return VC_FREELIST, a, -1, listed[a]
        if afree[a] != st.afree[a]:
            return VC_ARENA_FREE, a, st.afree[a], afree[a]
    for z in range(nz):
        for o in range(NR_PAGE_ORDERS):
            if nrf[z, o] != st.nr_free[z, o]:
                return VC_NR_FREE, z, o, nrf[z, o]
        if zfree[z] != st.z_free[z]:
            return VC_ZONE_FREE, z, st.z_free[z], zfree[z]
        if zha[z] != st.z_free_highatomic[z]:
            return VC_HIGHATOMIC, z, st.z_free_highatomic[z], zha[z]
    # per-cpu lists: the magazine's rounds, then the linked part
    seen = 0
    listed_pcp = np.zeros(hi, np.uint8)
    for cpu in range(st.cpu_node.shape[0]):
        for z in range(nz):
            pages = 0
            for pindex in range(core.NR_PCP_LISTS):
                h = pcp_head(st, cpu, z, pindex)
                sz = np.int64(1) << core.pindex_to_order(pindex)
                m = va.pcp_mag(st, h)
                if m[0] < 0 or m[0] > va.MAG_ROUNDS:
                    return VC_PCP, h, 0, m[0]
                for i in range(1, m[0] + 1):
                    p = m[i]
                    if p < 0 or p >= npages or md_type(st, p) != MD_BUDDY_ALLOC:
                        return VC_PCP, h, p, -1
                    t = md_tag(st, p)
                    seen += 1
                    if t < heads or t >= hi or d[t, D_TYPE] != VMEM_ALLOC or d[t, D_START] != p \
                            or d[t, D_SIZE] != sz or core.page_zone(st, p) != z or listed_pcp[t] != 0:
                        return VC_PCP, h, p, t
                    listed_pcp[t] = 1
                    pages += sz
                t = d[h, D_KNEXT]
                while t != h:
                    seen += 1
                    if t < heads or t >= hi or d[t, D_TYPE] != (VMEM_ALLOC | DT_PCP) or d[t, D_SIZE] != sz \
                            or core.page_zone(st, d[t, D_START]) != z or seen > npcp or listed_pcp[t] != 0:
                        return VC_PCP, h, 0, t
                    listed_pcp[t] = 1
                    pages += sz
                    t = d[t, D_KNEXT]
            if pages != st.pcp[cpu, z, core.PCP_COUNT]:
                return VC_PCP_COUNT, cpu, z, pages
    if seen != npcp:
        return VC_PCP, -1, 0, npcp
    # every page of every zone in exactly one state
    for z in range(nz):
        for p in range(st.z_start[z], st.z_end[z]):
            if cover[p] == 0:
                return VC_LOST, z, p, 0
    return VC_OK, 0, 0, 0


@njit(inline="always")
def _block_order(p, e):
    """Order of the largest aligned block at p that ends by e (memblock_free_pages' split)."""
    o = MAX_PAGE_ORDER
    if p != 0:
        o = min(va.lowbit(p) - 1, MAX_PAGE_ORDER)
    while p + (np.int64(1) << o) > e:
        o -= 1
    return o


@njit
def vmem_free_block_list(st, out):
    """(pfn, order, migratetype, zone) of every aligned block of the free segments; returns n."""
    d = st.desc
    heads = st.vm[V_HEADS]
    hi = heads + st.vm[V_NDPAGES] * DESC_PER_PAGE
    n = 0
    for t in range(heads, hi):
        if d[t, D_TYPE] != VMEM_FREE:
            continue
        z = d[t, D_ARENA] // NR_ARENAS_PER_ZONE
        p = d[t, D_START]
        e = p + d[t, D_SIZE]
        while p < e:
            o = _block_order(p, e)
            if n < out.shape[0]:
                out[n, 0] = p
                out[n, 1] = o
                out[n, 2] = core.get_pfnblock_migratetype(st, p)
                out[n, 3] = z
            n += 1
            p += np.int64(1) << o
    return n


# ------------------------------------------------------------------ the design
def _mag_array(nlists: int) -> np.ndarray:
    """The pcp magazines, one 128-byte row per list, rows on cache-line boundaries."""
    row = MAG_ROUNDS + 1
    raw = np.zeros(nlists * row + 8, np.int64)
    off = (-(raw.ctypes.data // 8)) % 8
    return raw[off:off + nlists * row].reshape(nlists, row)


#: seed of the fault-injection generator (AllocConfig has the rate; reseed with seed_faults())
FAULT_SEED = 0x9E3779B97F4A7C15


class VmemDesign(BuddyDesign):
    """Wilcox's design: 8-byte memdesc per page, vmem segments, descriptors allocated at
    allocation time only.  Shares zones, watermarks and pcp policy with ``linux``."""

    name = "vmem"
    words = 1
    state_cls = VmemState

    def __init__(self, layout: MachineLayout, config: AllocConfig | None = None, boot: bool = True,
                 npages: int | None = None):
        super(BuddyDesign, self).__init__(layout, config)
        rate = float(getattr(self.config, "fail_descriptor_alloc", 0.0) or 0.0)
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"fail_descriptor_alloc must be a rate in [0, 1], got {rate}")
        if layout.pageblock_order != PAGEBLOCK_ORDER:
            raise ConfigError(f"the vmem design's arenas are cut in 2^{PAGEBLOCK_ORDER}-page pageblocks: a layout "
                              f"with pageblock_order {layout.pageblock_order} ({layout.source}) is not supported")
        self.npages = max(layout.max_pfn, npages or 0)
        managed = [z.managed for z in layout.zones]
        zone_fields, self.min_free_kbytes = build_zone_state(layout, managed, self.npages, self.config)
        self.state = self._make_state(zone_fields, self.npages, 0)
        self.state.vm[va.V_FAIL_THRESH] = int(round(rate * (1 << 53)))
        self.page_offset = PAGE_OFFSET_I386 if ZoneType.HIGHMEM in layout.zone_types else PAGE_OFFSET_X86_64
        if boot:
            starts, ends, res = self._managed_ranges()
            self._load(res, starts, ends)

    # -- construction
    def _initial_memdesc(self) -> np.ndarray:
        """Bare 'hole' memdescs, MD_FREE inside zones (the loader then marks reserved pages)."""
        md = _mem.full(self.npages, mmap.MD_SUB_HOLE << mmap.MD_SUBTYPE_SHIFT, np.uint64)
        for z in self.layout.zones:
            if z.spanned:
                md[z.start_pfn:z.end_pfn] = np.uint64(MD_FREE)
        return md

    def _bare(self, pfns: np.ndarray, subtype: int) -> None:
        zs = self.state
        z = zs.pb_zone[pfns >> PAGEBLOCK_ORDER].astype(np.int64)
        bits = np.where(z >= 0, (zs.z_node[np.maximum(z, 0)] << mmap.NODES_PGSHIFT)
                        | (zs.z_idx[np.maximum(z, 0)] << mmap.ZONES_PGSHIFT), 0).astype(np.uint64)
        zs.memdesc[pfns] = bits | np.uint64(subtype << mmap.MD_SUBTYPE_SHIFT)

    def _load(self, reserved: np.ndarray, starts: np.ndarray, ends: np.ndarray,
              alloc_pfn=None, alloc_order=None, alloc_mt=None, pcp_pfn=None, pcp_cpu=None) -> None:
        st = self.state
        empty = np.zeros(0, np.int64)
        reserved = np.asarray(reserved, np.int64)
        st.owner[reserved] = core.OWNER_RESERVED
        self._bare(reserved, mmap.MD_SUB_RESERVED)
        holes = [np.arange(hs, he) for z in self.layout.zones if z.spanned for hs, he in z.holes]
        if holes:
            h = np.concatenate(holes).astype(np.int64)
            self._bare(h[st.owner[h] == core.OWNER_RESERVED], mmap.MD_SUB_HOLE)
        zones = st.pb_zone[starts >> PAGEBLOCK_ORDER].astype(np.int64)
        # the first descriptor page: top-down from the highest directly-mapped zone (memblock-style)
        direct = [i for i in np.argsort(-ends) if st.z_direct[zones[i]] and ends[i] > starts[i]]
        if not direct:
            raise ConfigError("vmem: no free page in a directly-mapped zone to hold the first descriptors")
        i0 = int(max(direct, key=lambda i: (int(zones[i]), int(ends[i]))))
        ends = ends.copy()
        ends[i0] -= 1
        first = int(ends[i0])
        keep = ends > starts
        # direct-mapped zones first: descriptor pages come from their segments
        s, e, z = starts[keep], ends[keep], zones[keep]
        order = np.lexsort((s, -st.z_direct[z]))
        s, e, z = s[order], e[order], z[order]
        ap = empty if alloc_pfn is None else alloc_pfn.astype(np.int64)
        pp = empty if pcp_pfn is None else pcp_pfn.astype(np.int64)
        rc = vmem_init_state(st, np.int64(first), s.astype(np.int64), e.astype(np.int64), z,
                             ap, empty if alloc_order is None else alloc_order.astype(np.int64),
                             empty if alloc_mt is None else alloc_mt.astype(np.int64),
                             pp, empty if pcp_cpu is None else pcp_cpu.astype(np.int64))
        if rc >= 0:
            what = "free runs" if rc < len(s) else "allocations"
            raise ConfigError(f"vmem: out of memory for descriptors while loading the {what} "
                              f"({int(st.vm[V_NDPAGES])} descriptor pages in use)")

    def init_from_snapshot(self, reserved: np.ndarray, alloc_pfn: np.ndarray, alloc_order: np.ndarray,
                           alloc_mt: np.ndarray, alloc_gfp: np.ndarray, free_pfn: np.ndarray,
                           free_order: np.ndarray, pageblock_mt: np.ndarray,
                           pcp_pfn: np.ndarray | None = None, pcp_cpu: np.ndarray | None = None) -> None:
        """Load a real machine's state (built with ``boot=False``): free blocks are merged
        into runs, every allocation gets its descriptor (descriptor pages come out of the
        snapshot's free memory, as they would on a machine running this design)."""
        st = self.state
        st.pb[:] = (st.pb & 0xF8) | pageblock_mt.astype(np.uint8)
        fs = np.asarray(free_pfn, np.int64)
        fe = fs + (np.int64(1) << np.asarray(free_order, np.int64))
        o = np.argsort(fs)
        fs, fe = fs[o], fe[o]
        if len(fs):
            zone = st.pb_zone[fs >> PAGEBLOCK_ORDER]
            brk = np.ones(len(fs), np.bool_)
            brk[1:] = (fs[1:] != fe[:-1]) | (zone[1:] != zone[:-1])
            idx = np.flatnonzero(brk)
            starts = fs[idx]
            ends = np.append(fe[idx[1:] - 1], fe[-1])
        else:
            starts = ends = np.zeros(0, np.int64)
        self._load(reserved, starts, ends, np.asarray(alloc_pfn), np.asarray(alloc_order), np.asarray(alloc_mt),
                   pcp_pfn, pcp_cpu)

    def _make_state(self, zone_fields: dict, npages: int, nlists: int) -> VmemState:
        """The state: zone fields, memdesc, the descriptor pool (list heads first, then room for
        the most descriptors the machine can ever need, left unbacked until used)."""
        layout = self.layout
        nz = len(layout.zones)
        narenas = nz * NR_ARENAS_PER_ZONE
        npcp = layout.nr_cpus * nz * core.NR_PCP_LISTS
        nheads = narenas * NCLASS + npcp
        # bound: every descriptor in use describes at least one distinct page of a zone (spanned,
        # not managed: memory accepted or onlined later gets descriptors too)
        spanned = int((zone_fields["z_end"] - zone_fields["z_start"]).sum())
        maxdp = -(-(spanned + DESC_MINFREE) // DESC_PER_PAGE) + 2
        desc = _mem.zeros((nheads + maxdp * DESC_PER_PAGE, NDCOLS), np.int64)  # backed as used
        va.init_heads(desc, nheads)
        vm = np.zeros(NR_V, np.int64)
        vm[V_HEADS] = nheads
        vm[V_PCP_HEAD0] = narenas * NCLASS
        vm[va.V_MAXDP] = maxdp
        return VmemState(**zone_fields, memdesc=self._initial_memdesc(), desc=desc,
                         freemap=np.zeros(narenas, np.int64), afree=np.zeros(narenas, np.int64),
                         dpages=np.zeros(maxdp, np.int64), vm=vm, rng=np.array([FAULT_SEED], np.uint64),
                         mag=_mag_array(npcp))

    # -- fault injection
    @property
    def fail_rate(self) -> float:
        return float(self.state.vm[va.V_FAIL_THRESH]) / (1 << 53)

    def seed_faults(self, seed: int) -> None:
        """Reseed the descriptor fault-injection generator (xorshift64, state never 0)."""
        self.state.rng[0] = np.uint64((int(seed) * 0x9E3779B97F4A7C15) % (1 << 64) or 1)

    # -- accounting
    def descriptor_address(self, tag: int) -> int:
        """Kernel virtual address of descriptor ``tag`` (its slot in its descriptor page)."""
        k, j = divmod(int(tag) - int(self.state.vm[V_HEADS]), DESC_PER_PAGE)
        return self.page_offset + (int(self.state.dpages[k]) << 12) + j * DESC_BYTES

    def page_words(self, pfn: int) -> np.ndarray:
        """The page's memdesc, with the model's descriptor numbers shown as the kernel virtual
        addresses they stand for (16-byte aligned, so the low 4 bits keep the type)."""
        w = int(self.state.memdesc[pfn])
        typ, payload = w & MD_TYPE_MASK, w >> 4
        if typ in (MD_FREE, MD_BUDDY_ALLOC) and payload:
            w = self.descriptor_address(payload) | typ
        elif typ == MD_SLAB:
            w = (self.page_offset + (int(self.state.dpages[payload]) << 12)) | typ
        return np.array([w], np.uint64)

    def memmap_bytes(self) -> int:
        return int(self.state.memdesc.nbytes)

    def freelist_bytes(self) -> int:
        """Arena freelist heads, freemap and free counters; per pcp list a list head and a
        magazine (count and MAG_ROUNDS pfns)."""
        narenas = self.state.freemap.shape[0]
        pcp = self.layout.nr_cpus * len(self.layout.zones) * nr_pcp_lists(bool(self.state.cfg[core.CFG_PCP_THP]))
        return narenas * (NCLASS * 16 + 8 + 8) + pcp * (16 + 8 * (MAG_ROUNDS + 1))

    def descriptor_bytes(self) -> int:
        """Descriptor pages (whole pages: free descriptors included) and their page table."""
        nd = int(self.state.vm[V_NDPAGES])
        return nd * (PAGE_SIZE + 8)

    def descriptor_stats(self) -> dict[str, int]:
        vm = self.state.vm
        st = self.state.stats
        return {
            "descriptor_bytes_each": DESC_BYTES,
            "descriptors_in_use": int(vm[va.V_INUSE]),
            "descriptors_free": int(vm[V_NFREE]),
            "descriptor_pages": int(vm[V_NDPAGES]),
            "descriptor_allocs": int(vm[va.V_DESC_ALLOCS]),
            "descriptor_frees": int(vm[va.V_DESC_FREES]),
            "populate": int(vm[va.V_POPULATE]),
            "populate_failed": int(vm[va.V_POPULATE_FAIL]),
            "reserve_calls": int(vm[va.V_RESERVE_CALLS]),
            "injected_failures": int(vm[va.V_INJECTED]),
            "free_path_allocations": int(st[core.ST_FREE_PATH_ALLOCS]),
            "free_stalls": int(st[core.ST_FREE_STALLS]),
            "alloc_failed_for_descriptor": int(st[core.ST_ALLOC_FAILED_FOR_META]),
            "split_page_descriptors": int(vm[va.V_XP_SPLIT]),
            "replay_fixup_descriptors": int(vm[va.V_XP_FIXUP]),
        }

    def design_stats(self) -> dict:
        """The descriptor figures (:meth:`descriptor_stats`) in every JSON summary."""
        return self.descriptor_stats()

    # -- views
    @property
    def nr_free(self) -> np.ndarray:
        """/proc/buddyinfo's counts: the free segments decomposed into aligned blocks."""
        b = self.free_blocks()
        out = np.zeros((len(self.layout.zones), NR_PAGE_ORDERS), np.int64)
        np.add.at(out, (b[:, 3], b[:, 1]), 1)
        return out

    def free_blocks(self) -> np.ndarray:
        out = np.zeros((int(self.state.z_free.sum() + self.state.afree.sum()) + 1, 4), np.int64)
        n = vmem_free_block_list(self.state, out)
        return out[:n]

    def free_counts_by_migratetype(self) -> np.ndarray:
        """pagetypeinfo's free counts: aligned blocks by their pageblock's type."""
        b = self.free_blocks()
        out = np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
        np.add.at(out, (b[:, 3], b[:, 2], b[:, 1]), 1)
        return out

    def check(self) -> str:
        code, a, b, c = vmem_check_state(self.state)
        if code != VC_OK:
            return VCHECK_MESSAGES[int(code)].format(a=int(a), b=int(b), c=int(c))
        return "ok"
