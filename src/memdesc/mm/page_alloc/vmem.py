"""The ``vmem`` design: Matthew Wilcox's one-word memdesc over a vmem page allocator.

Theory
------
``struct page { unsigned long memdesc; }``: 8 bytes per page, a 4-bit type and a 60-bit
payload (memmap.py's ``memdesc`` layout).  Free memory is managed as vmem segments (see
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

vmem is not a list buddy: it implements the *zone layer* of the design contract
(:mod:`memdesc.mm.page_alloc.base`) over its arenas and runs everything above it from
:mod:`memdesc.mm.page_alloc.core` unchanged -- zonelists, watermarks, gfp handling, the
per-CPU lists' high/batch/free_count policy, highatomic reserves and the slow path are
``linux``'s code.  The zone layer, per zone:

===========================  ===============================================================
primitive                    vmem
===========================  ===============================================================
pool_prepare                 reserve the worst case of descriptors (``desc_reserve``), or
                             E_META: the allocation fails before anything changes
pool_rmqueue (__rmqueue)     orders >= pageblock_order: whole pageblocks from the *zone
                             arena* of free pageblocks (which any migratetype may claim),
                             retyped; smaller orders: CMA when it holds most free memory,
                             the arena of the request's migratetype, which *imports* a
                             pageblock from the zone arena when nothing fits (the pageblock
                             takes the type), CMA, then Linux 6.15's *claim* (a whole
                             pageblock of a fallback type moves to the request's arena when
                             ``free + alike >= pageblock/2``) and *steal* (carve from the
                             fallback type's arena, type unchanged)
pool_rmqueue_smallest        the highatomic arena (orders below pageblock_order)
pool_free (__free_one_page)  the segment's pages back to the arenas, coalescing; a pageblock
                             that becomes entirely free in a mergeable type's arena is
                             *released* to the zone arena (highatomic, CMA and isolated
                             pageblocks stay typed, as Linux never merges them)
pool_first_free              the first free segment of size class ``order`` (for a mergeable
                             type also in the zone arena): the watermark test
pool_move_freepages_block    ``move_pageblock``: the pageblock's free segments change arena
pcp_add / pcp_pop            per-CPU lists of allocated segments: a 15-round magazine of pfns
                             at the head, then segments linked through their descriptors
                             (vmem_arena: "Per-CPU lists"); a free pushes a round without
                             touching the allocation's descriptor
mark_allocated, mark_freed   nothing: the pool already wrote the memdescs
===========================  ===============================================================

Descriptor accounting and the recursion bound are in vmem_arena's theory statement:
every allocation reserves ``VMEM_SEGS_PER_ALLOC_MAX`` (4) descriptors plus
``DESC_POPULATE_RESERVE`` (2) before it changes anything, or fails (counted in
``alloc_failed_for_metadata``); free paths take none (``free_path_allocations`` stays 0,
and ``free_stalls`` too: nothing on a free path can wait for memory).  Fault injection
(``AllocConfig.fail_descriptor_alloc``, like illumos' ``vmem_mtbf``) fails descriptor
reservations at random with a seeded generator (:meth:`VmemDesign.seed_faults`).

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
from memdesc.mm import memmap as mmap
from memdesc.mm.memblock import block_order
from memdesc.mm.memmap import MD_BUDDY_ALLOC, MD_FREE, MD_SLAB, MD_TYPE_MASK
from memdesc.mm.mmzone import (
    MAX_PAGE_ORDER,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    PAGE_SIZE,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    ZoneType,
    nr_pcp_lists,
)
from memdesc.mm.page_alloc import core, typed
from memdesc.mm.page_alloc import vmem_arena as va
from memdesc.mm.page_alloc import vmem_exact as vx
from memdesc.mm.page_alloc.base import Design, register_design
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

#: a descriptor reservation failed: the allocation fails at once (core.E_META)
E_META = core.E_META
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
def vmem_pool_first_free(st, z, order, mt):
    """pool_first_free: the first free segment of size class ``order`` in the arena of
    ``mt`` (for a mergeable type, also the zone arena, whose free pageblocks any type may
    claim), or -1."""
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
def _pageblock_free_movable(st, start):
    """(free pages, movable pages) of a pageblock (prep_move_freepages_block), for
    try_to_claim_block's threshold (core.claim_block_ok)."""
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
    return free_pages, movable


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
    core.boost_on_fallback(st, z, alloc_flags)
    free_pages, movable = _pageblock_free_movable(st, start)
    if not core.claim_block_ok(st, free_pages, movable, mt, best_k):
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


# ------------------------------------------------------------------ the zone layer
@njit
def vmem_pool_prepare(st, z, order):
    """pool_prepare: reserve the worst case of descriptors taking one block can need."""
    if va.desc_reserve(st, VMEM_SEGS_PER_ALLOC_MAX):
        return np.int64(core.OK)
    return np.int64(E_META)


@njit
def vmem_pool_rmqueue(st, z, order, mt, alloc_flags, mode, cpu):
    """pool_rmqueue (__rmqueue over the arenas, see the theory): (pfn, mode), pfn -1 when
    nothing fits.  The descriptors were reserved by pool_prepare; a bulk refill's mode is
    not kept."""
    if order >= PAGEBLOCK_ORDER:
        n = _zone_alloc(st, z, order, mt)
    else:
        cma = st.cfg[core.CFG_CMA] != 0 and (alloc_flags & core.ALLOC_CMA) != 0
        n = -1
        if cma and st.z_free_cma[z] > st.z_free[z] // 2:
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
    if n < 0:
        return np.int64(-1), mode
    return st.desc[n, D_START], mode


@njit
def vmem_pool_rmqueue_smallest(st, z, order, mt, cpu):
    """pool_rmqueue_smallest: from exactly mt's arena (no import); the highatomic reserves
    hold pageblocks of smaller allocations only, so nothing for orders >= pageblock_order."""
    if order >= PAGEBLOCK_ORDER:
        return np.int64(-1)
    n = _try_arena(st, z, mt, order)
    if n < 0:
        return np.int64(-1)
    return st.desc[n, D_START]


@njit
def vmem_pool_free(st, z, pfn, order, fpi):
    """pool_free: the allocated segment at pfn goes back to the arenas (never allocates)."""
    vmem_free_to_arena(st, z, md_tag(st, pfn))


@njit
def vmem_pool_move_freepages_block(st, z, pfn, old_mt, new_mt):
    """pool_move_freepages_block: the pageblock's free segments move to new_mt's arena."""
    return va.move_pageblock(st, z, pfn & ~np.int64(PAGEBLOCK_NR_PAGES - 1), old_mt, new_mt)


@njit
def vmem_pool_retype_block(st, z, pfn, order, old_mt, new_mt):
    """pool_retype_block: a free segment of exactly one pageblock (a highatomic one being
    unreserved) moves arena; an allocation of pageblock order or more keeps its type."""
    if order > PAGEBLOCK_ORDER or md_type(st, pfn) != MD_FREE:
        return False
    va.move_pageblock(st, z, pfn, old_mt, new_mt)
    return True


@njit
def vmem_pcp_add(st, cpu, z, pindex, pfn, tail):
    """pcp_add: a free pushes a magazine round at the head (the descriptor is not touched);
    a refill links the segment's descriptor at the tail."""
    h = pcp_head(st, cpu, z, pindex)
    if tail:
        va.pcp_push_tail(st, h, md_tag(st, pfn))
    else:
        va.pcp_push_head(st, h, pfn)


@njit
def vmem_pcp_pop(st, cpu, z, pindex, tail):
    h = pcp_head(st, cpu, z, pindex)
    if va.pcp_empty(st, h):
        return np.int64(-1)
    if tail:
        return st.desc[va.pcp_pop_tail(st, h), D_START]
    return va.pcp_pop_head(st, h)


@njit
def vmem_nothing(st, pfn, order):
    """mark_freed: nothing (the memdescs stay MD_BUDDY_ALLOC until the pool rewrites them)."""
    return


@njit
def vmem_nothing_alloc(st, pfn, order, gfp):
    """mark_allocated: nothing (the pool wrote MD_BUDDY_ALLOC when it carved the segment)."""
    return


@njit
def vmem_own_page(st, pfn):
    """pa_own_page: a descriptor page."""
    return md_type(st, pfn) == MD_SLAB


@njit
def vmem_pa_free(st, pfn, order, cpu):
    """free_pages(): 0 or an error code (state unchanged); the free path takes no descriptor
    (vm[V_IN_FREE] marks it, so that any would be counted in free_path_allocations)."""
    rc = core.check_free(st, pfn, order)
    if rc != core.OK:
        return rc
    st.vm[V_IN_FREE] += 1
    core.__free_pages(st, pfn, order, cpu)
    st.vm[V_IN_FREE] -= 1
    return core.OK


@njit
def vmem_pa_drain(st):
    st.vm[V_IN_FREE] += 1
    core.drain_all_pages(st)
    st.vm[V_IN_FREE] -= 1


@njit
def vmem_free_to_arena(st, z, t):
    """__free_one_page(): the segment's pages go back to its zone's arenas (never allocates)."""
    start = st.desc[t, D_START]
    mt = core.get_pfnblock_migratetype(st, start)
    core.account_freepages(st, z, st.desc[t, D_SIZE], mt)
    va.arena_free(st, z, t, mt)


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


@njit
def vmem_free_blocks(st, out, counts):
    """The aligned blocks of the free segments (what buddyinfo and pagetypeinfo count): rows
    (pfn, order, migratetype, zone) into ``out`` while it has room, and counts[z, mt, order]."""
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
            o = block_order(p, e, MAX_PAGE_ORDER)
            mt = core.get_pfnblock_migratetype(st, p)
            if n < out.shape[0]:
                out[n, 0] = p
                out[n, 1] = o
                out[n, 2] = mt
                out[n, 3] = z
            counts[z, mt, o] += 1
            n += 1
            p += np.int64(1) << o


@njit
def vmem_zone_free_area(st, z):
    """pa_zone_free_area(): zone z's free segments as the aligned blocks buddyinfo counts
    (nr_free holds size classes of segments, which the watermark test reads)."""
    counts = np.zeros((st.z_start.shape[0], MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
    vmem_free_blocks(st, np.zeros((0, 4), np.int64), counts)
    return core.free_area_of(counts, z)


# ------------------------------------------------------------------ the design
def _mag_array(nlists: int) -> np.ndarray:
    """The pcp magazines, one 128-byte row per list, rows on cache-line boundaries."""
    row = MAG_ROUNDS + 1
    raw = np.zeros(nlists * row + 8, np.int64)
    off = (-(raw.ctypes.data // 8)) % 8
    return raw[off:off + nlists * row].reshape(nlists, row)


#: seed of the fault-injection generator (AllocConfig has the rate; reseed with seed_faults())
FAULT_SEED = 0x9E3779B97F4A7C15


class VmemDesign(Design):
    """Wilcox's design: 8-byte memdesc per page, vmem segments, descriptors allocated at
    allocation time only.  Implements the zone layer; zones, watermarks, pcp policy,
    highatomic and the slow path are core's (``linux``'s)."""

    name = "vmem"
    words = 1
    page_layout = "memdesc"
    memmap_field = "memdesc"
    state_cls = VmemState
    splits_on_free = False  # a split needs descriptors, which a free path may not take
    fault_injection = True
    metadata_counters = ("free_path_allocations", "alloc_failed_for_metadata")

    @property
    def page_offset(self) -> int:
        """Kernel virtual address of pfn 0 in the direct map (descriptor addresses)."""
        return PAGE_OFFSET_I386 if ZoneType.HIGHMEM in self.layout.zone_types else PAGE_OFFSET_X86_64

    # -- construction
    def boot(self) -> None:
        starts, ends, res = self._managed_ranges()
        self._load(res, starts, ends)

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
        if layout.pageblock_order != PAGEBLOCK_ORDER:
            raise ConfigError(f"the vmem design's arenas are cut in 2^{PAGEBLOCK_ORDER}-page pageblocks: a layout "
                              f"with pageblock_order {layout.pageblock_order} ({layout.source}) is not supported")
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
        vm[va.V_FAIL_THRESH] = int(round(float(self.config.fail_descriptor_alloc or 0.0) * (1 << 53)))
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

    def own_pages(self) -> int:
        """Descriptor pages (the design's own metadata)."""
        return int(self.state.vm[V_NDPAGES])

    # -- views
    @property
    def nr_free(self) -> np.ndarray:
        """/proc/buddyinfo's counts: the free segments decomposed into aligned blocks."""
        return self.free_counts_by_migratetype().sum(axis=1)

    def free_blocks(self) -> np.ndarray:
        out = np.zeros((int(self.free_counts_by_migratetype().sum()), 4), np.int64)
        vmem_free_blocks(self.state, out, np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64))
        return out

    def free_counts_by_migratetype(self) -> np.ndarray:
        """pagetypeinfo's free counts: aligned blocks by their pageblock's type."""
        counts = np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
        vmem_free_blocks(self.state, np.zeros((0, 4), np.int64), counts)
        return counts

    def check(self) -> str:
        code, a, b, c = vmem_check_state(self.state)
        if code != VC_OK:
            return VCHECK_MESSAGES[int(code)].format(a=int(a), b=int(b), c=int(c))
        return "ok"


register_design(VmemDesign, {
    **typed.VMEM,
    "pa_zone_free_area": vmem_zone_free_area,
    "pa_alloc": core.__alloc_pages,
    "pa_free": vmem_pa_free,
    "pa_take": vmem_take,
    "pa_drain": vmem_pa_drain,
    # the zone layer over the arenas
    "pool_prepare": vmem_pool_prepare,
    "pool_rmqueue": vmem_pool_rmqueue,
    "pool_rmqueue_smallest": vmem_pool_rmqueue_smallest,
    "pool_free": vmem_pool_free,
    "pool_first_free": vmem_pool_first_free,
    "pool_move_freepages_block": vmem_pool_move_freepages_block,
    "pool_retype_block": vmem_pool_retype_block,
    "pcp_add": vmem_pcp_add,
    "pcp_pop": vmem_pcp_pop,
    "mark_allocated": vmem_nothing_alloc,
    "mark_freed": vmem_nothing,
    "pa_free_extent": vx.vmem_xp_free_extent,
    "pa_own_page": vmem_own_page,
    # exact placement (trace replay at the real kernel's pfns): vmem_exact
    "pa_free_range": vx.vmem_xp_free_range,
    "pa_set_pageblock_type": vx.vmem_xp_set_pageblock_type,
    "pa_mark_allocated": vx.vmem_xp_mark_allocated,
    "pa_mark_unallocated": vx.vmem_xp_mark_unallocated,
    "pa_split": vx.vmem_xp_split,
    "pa_pcp_link": vx.vmem_xp_pcp_link,
    "pa_pcp_unlink": vx.vmem_xp_pcp_unlink,
    "pa_online_range": vx.vmem_xp_online_range,
})
