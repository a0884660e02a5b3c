"""Exact placement on the ``vmem`` design: the primitives exact trace replay runs on.

Theory
------
Exact replay (:mod:`memdesc.sim.replay_kernels`) applies every kmem event of a real kernel at
its real pfn.  On a buddy design it works on free blocks and list links; on ``vmem`` each
step maps onto segments and ``struct buddy`` descriptors (:mod:`~.vmem_arena`):

=================================  ===========================================================
kernel step (buddy designs)        vmem
=================================  ===========================================================
find_free_block_containing         the free segment holding pfn: walk the memdescs left to the
                                   segment's first page (page by page inside the pageblock,
                                   pageblock by pageblock beyond: zone-arena segments start on
                                   pageblock boundaries)
take_page_off_buddy                :func:`vmem_take`: carve [pfn, 2^order) out of its segment
                                   (allocation side: descriptors reserved first)
pages in *no state* (taken, off a  stay covered by allocated-segment descriptors (VMEM_ALLOC,
pcp list, unallocated)             page_owner entry cleared): nothing to free or allocate
prep_new_page / pcp list_add       one descriptor for the block: the no-state descriptors of
                                   the range are *merged* (the others released); on a pcp
                                   list's head it is a magazine round, on its tail linked
free_one_page / split_large_buddy  the block's descriptor goes into the arenas (coalescing only
                                   releases descriptors); several pageblocks go to the zone
                                   arena when all are mergeable, else pageblock by pageblock
__move_freepages_block             :func:`~.vmem_arena.move_pageblock`; a pageblock inside a
                                   zone-arena segment just takes a mergeable type, or is cut
                                   out into a non-mergeable type's arena (2 descriptors)
split_page (a free of part of an   one descriptor per buddy piece
allocation)
__free_pages_core / accept_page    a new segment (memory hot-add: vmem_add may allocate)
=================================  ===========================================================

Descriptor accounting.  "Never allocate memory when freeing memory" holds for every free
the trace shows: freeing a whole block only converts and releases descriptors.  The one
exception is a block of several pageblocks whose types the *trace* made differ and not all
mergeable (the design itself never makes such a block: it retypes whole-pageblock
allocations): freeing it pageblock by pageblock takes a descriptor per extra piece, on the
free path, so it is counted in ``free_path_allocations``.  Descriptors the replay needs for
its own work are reserved first (without fault injection: a model repair, not a kernel
allocation) and counted apart in ``vm``:

* ``V_XP_SPLIT`` (``split_page_descriptors``): pieces of a split allocation.  The kernel's
  split_page() runs when the caller allocates (alloc_pages_exact, or a driver that splits a
  non-compound page); the replay only learns of it at the first free of a piece, so it does
  the split then, on the allocating side's account;
* ``V_XP_FIXUP`` (``replay_fixup_descriptors``): repairs of inconsistencies (freeing part of
  a block the replay holds), pageblock-type corrections that cut a pageblock out of a
  zone-arena segment, and memory brought in during the trace.

All kernels are plain Python on numpy arrays too (``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm.memmap import MD_FREE, MD_TYPE_MASK
from memdesc.mm.mmzone import MIGRATE_PCPTYPES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc import vmem_arena as va
from memdesc.mm.page_alloc.vmem_arena import (
    A_ZONE,
    D_ARENA,
    D_SIZE,
    D_START,
    D_TYPE,
    DESC_POPULATE_RESERVE,
    V_IN_FREE,
    V_NFREE,
    V_XP_FIXUP,
    V_XP_SPLIT,
    VMEM_ALLOC,
    VMEM_SEGS_PER_ALLOC_MAX,
    arena_id,
    md_tag,
    md_type,
    pcp_head,
)

PB_MASK = PAGEBLOCK_NR_PAGES - 1
E_NOMEM = -12  # no page could be had for descriptors (the machine is out of directly-mapped memory)


# ------------------------------------------------------------------ finding and taking free pages
@njit
def vmem_find_free_segment(st, pfn):
    """The free segment containing pfn, or -1: walk left over interior pages to the first
    page (page by page inside the pageblock, then pageblock by pageblock: zone-arena
    segments start on pageblock boundaries)."""
    if pfn < 0 or pfn >= st.memdesc.shape[0] or md_type(st, pfn) != MD_FREE:
        return -1
    p = pfn
    while p >= 0:
        w = np.int64(st.memdesc[p])
        if (w & MD_TYPE_MASK) != MD_FREE:
            return -1
        t = w >> 4
        if t != 0:
            s = st.desc[t, D_START]
            if s <= pfn < s + st.desc[t, D_SIZE]:
                return t
            return -1
        if (p & PB_MASK) == 0:
            p -= PAGEBLOCK_NR_PAGES
        else:
            p -= 1
    return -1


@njit
def vmem_take(st, pfn, order):
    """take_page_off_buddy(): remove exactly [pfn, pfn + 2^order) from the free segments.

    The pages become an allocation of ``order`` (descriptor and memdesc set, page_owner
    entry as an unmovable allocation) that a later free returns.  E_BUSY if the pages are
    not all free in one segment or the descriptors cannot be reserved.  The reservation
    comes first (it may take a page for descriptors out of this very segment), then the
    segment is looked up.
    """
    size = np.int64(1) << order
    t = vmem_find_free_segment(st, pfn)
    if t < 0 or pfn + size > st.desc[t, D_START] + st.desc[t, D_SIZE]:
        return core.E_BUSY
    # worst case: split the zone-arena segment at the pageblock (1), import it (2), carve (2)
    if not va.desc_reserve(st, VMEM_SEGS_PER_ALLOC_MAX + 1):
        return core.E_BUSY
    t = vmem_find_free_segment(st, pfn)
    if t < 0 or pfn + size > st.desc[t, D_START] + st.desc[t, D_SIZE]:
        return core.E_BUSY
    z = core.page_zone(st, pfn)
    a = st.desc[t, D_ARENA]
    k = a - arena_id(z, 0)
    if k == A_ZONE and (order < PAGEBLOCK_ORDER or (pfn & PB_MASK) != 0):
        # inside the zone arena: import the pageblock first (its type is kept)
        pb = pfn & ~np.int64(PB_MASK)
        mt = core.get_pfnblock_migratetype(st, pb)
        s = st.desc[t, D_START]
        if s != pb:
            # split the zone-arena segment at the pageblock (a free segment of the zone arena)
            r = va.desc_get(st)
            va.fl_delete(st, a, t)
            rsize = s + st.desc[t, D_SIZE] - pb
            st.desc[t, D_SIZE] = pb - s
            va.set_bounds(st, t)
            va.fl_insert(st, a, t)
            va.seg_set_free(st, r, a, pb, rsize)
            t = r
        t = va.import_pageblock(st, z, t, mt)
        k = core.get_pfnblock_migratetype(st, pb)
    va.seg_alloc(st, t, pfn, size)
    core.account_freepages(st, z, -size, k if k != A_ZONE else core.get_pfnblock_migratetype(st, pfn))
    st.owner[pfn] = core.owner_encode(order, core.MT_UNMOVABLE)
    st.stats[core.ST_TAKE] += 1
    return core.OK


@njit
def vmem_xp_free_extent(st, pfn):
    """pa_free_extent: [start, end) of the free segment holding pfn, or (-1, -1)."""
    t = vmem_find_free_segment(st, pfn)
    if t < 0:
        return np.int64(-1), np.int64(-1)
    s = st.desc[t, D_START]
    return s, s + st.desc[t, D_SIZE]


# ------------------------------------------------------------------ descriptors for the replay's own work
@njit
def xp_reserve(st, need):
    """Have ``need`` descriptors (plus the populate reserve) for a replay-side operation: no
    fault injection, no watermark (a model repair, not a kernel allocation).  False if no
    page can be had for descriptors."""
    while st.vm[V_NFREE] < need + DESC_POPULATE_RESERVE:
        if not va.desc_populate(st, False):
            return False
    return True


@njit
def _xp_desc(st, counter):
    """One descriptor for a step that cannot fail (a free): populated if the pool runs low,
    which on a free path is counted (desc_populate / desc_get see vm[V_IN_FREE])."""
    if st.vm[V_NFREE] < 1 + DESC_POPULATE_RESERVE:
        va.desc_populate(st, False)
    if counter >= 0:
        st.vm[counter] += 1
    return va.desc_get(st)


@njit
def _set_alloc(st, t, start, size, mark):
    d = st.desc
    d[t, D_START] = start
    d[t, D_SIZE] = size
    d[t, D_TYPE] = VMEM_ALLOC
    d[t, D_ARENA] = -1
    if mark:
        va.mark_alloc_pages(st, t, start, size)


# ------------------------------------------------------------------ freeing no-state pages
@njit
def _piece_end(st, p, e):
    """End of the piece of [p, e) that can go to one arena: consecutive whole pageblocks of
    mergeable types (the zone arena), else up to the end of p's pageblock."""
    pbe = (p & ~np.int64(PB_MASK)) + PAGEBLOCK_NR_PAGES
    if (p & PB_MASK) == 0 and pbe <= e and core.get_pfnblock_migratetype(st, p) < MIGRATE_PCPTYPES:
        q = pbe
        while q + PAGEBLOCK_NR_PAGES <= e and core.get_pfnblock_migratetype(st, q) < MIGRATE_PCPTYPES:
            q += PAGEBLOCK_NR_PAGES
        return q
    return min(e, pbe)


@njit
def xp_free_segment(st, n, counter):
    """Free the no-state allocated segment n into its zone's arenas, piece by piece where its
    pageblocks cannot share one arena (split_large_buddy); each extra piece takes a
    descriptor, counted in vm[counter] (or, on a free path, in free_path_allocations)."""
    d = st.desc
    p = d[n, D_START]
    e = p + d[n, D_SIZE]
    z = core.page_zone(st, p)
    while p < e:
        q = _piece_end(st, p, e)
        m = -1
        if q < e:
            m = _xp_desc(st, counter)
            _set_alloc(st, m, q, e - q, False)  # its pages are rewritten when it is freed
            d[n, D_SIZE] = q - p
        mt = core.get_pfnblock_migratetype(st, p)
        core.account_freepages(st, z, q - p, mt)
        va.arena_free(st, z, n, mt)
        n = m
        p = q


@njit
def vmem_xp_free_range(st, start, end, fpi):
    """pa_free_range: free the no-state pages [start, end) into the arenas.

    A descriptor wholly inside the range is a block the kernel freed: freed on the free path
    (vm[V_IN_FREE] set).  One reaching outside is a block the replay frees part of (a repair):
    the part gets a descriptor of its own (the rest keeps the old one), reserved first."""
    d = st.desc
    p = start
    while p < end:
        t = md_tag(st, p)
        ts = d[t, D_START]
        te = ts + d[t, D_SIZE]
        b = min(te, end)
        if ts == p and te <= end:
            st.vm[V_IN_FREE] += 1
            xp_free_segment(st, t, -1)
            st.vm[V_IN_FREE] -= 1
        else:
            if not xp_reserve(st, 2 + ((b - p) >> PAGEBLOCK_ORDER) + 1):
                return E_NOMEM
            t = md_tag(st, p)  # (populating never touches no-state pages)
            if ts < p and te > b:
                m = va.desc_get(st)
                st.vm[V_XP_FIXUP] += 1
                _set_alloc(st, m, b, te - b, True)
                d[t, D_SIZE] = p - ts
            elif ts < p:
                d[t, D_SIZE] = p - ts
            else:
                d[t, D_START] = b
                d[t, D_SIZE] = te - b
            n = va.desc_get(st)
            st.vm[V_XP_FIXUP] += 1
            _set_alloc(st, n, p, b - p, False)  # freeing rewrites its pages
            xp_free_segment(st, n, V_XP_FIXUP)
        p = b
    return 0


# ------------------------------------------------------------------ giving no-state pages a state
@njit
def xp_gather(st, start, end):
    """One descriptor for the no-state pages [start, end), which the caller's descriptors
    cover, each wholly inside: the first is kept, the others released (no allocation)."""
    d = st.desc
    keep = md_tag(st, start)
    p = d[keep, D_START] + d[keep, D_SIZE]
    if d[keep, D_START] == start and p == end:
        return keep
    while p < end:
        t = md_tag(st, p)
        p = d[t, D_START] + d[t, D_SIZE]
        va.desc_put(st, t)
    _set_alloc(st, keep, start, end - start, True)
    return keep


@njit
def vmem_xp_mark_allocated(st, pfn, order, gfp):
    xp_gather(st, pfn, pfn + (np.int64(1) << order))


@njit
def vmem_xp_mark_unallocated(st, pfn, order):
    """The allocation keeps its descriptor while its pages are in no state."""
    return


@njit
def vmem_xp_split(st, head, horder, pfn, order):
    """pa_split: the allocation [head, 2^horder) becomes buddy pieces of one descriptor each
    (split_page(): reserved on the allocating side, counted in V_XP_SPLIT)."""
    need = horder - order
    if need <= 0:
        return True
    if not xp_reserve(st, need):
        return False
    t = md_tag(st, head)
    cur = head
    co = horder
    while co > order:
        co -= 1
        half = np.int64(1) << co
        if pfn >= cur + half:
            other = cur
            cur = cur + half
        else:
            other = cur + half
        _set_alloc(st, va.desc_get(st), other, half, True)
    st.desc[t, D_START] = cur
    st.desc[t, D_SIZE] = np.int64(1) << order
    st.vm[V_XP_SPLIT] += need
    return True


@njit
def vmem_xp_pcp_link(st, cpu, z, pindex, pfn, tail):
    """pa_pcp_link: the block at pfn (one descriptor for it first) joins the list's head (a
    magazine round) or tail (the linked part)."""
    t = xp_gather(st, pfn, pfn + (np.int64(1) << core.pindex_to_order(pindex)))
    h = pcp_head(st, cpu, z, pindex)
    if tail:
        va.pcp_push_tail(st, h, t)
    else:
        va.pcp_push_head(st, h, pfn)


@njit
def vmem_xp_pcp_unlink(st, cpu, z, pindex, pfn):
    va.pcp_unlink(st, pcp_head(st, cpu, z, pindex), pfn)


# ------------------------------------------------------------------ pageblock types, new memory
@njit
def vmem_xp_set_pageblock_type(st, z, pfn, old_mt, new_mt):
    """pa_set_pageblock_type (__move_freepages_block): free pages moved."""
    start = pfn & ~np.int64(PB_MASK)
    za = arena_id(z, A_ZONE)
    t = vmem_find_free_segment(st, start)
    if t < 0 or st.desc[t, D_ARENA] != za:
        return va.move_pageblock(st, z, start, old_mt, new_mt)
    if new_mt < MIGRATE_PCPTYPES:
        # a whole free pageblock of the zone arena: any mergeable type may own it
        core.set_pageblock_migratetype(st, start, new_mt)
        return np.int64(PAGEBLOCK_NR_PAGES)
    # cut the pageblock out of its zone-arena segment into the type's arena
    if not xp_reserve(st, 2):
        return np.int64(0)
    t = vmem_find_free_segment(st, start)
    if t < 0 or st.desc[t, D_ARENA] != za:  # populating took from it
        return va.move_pageblock(st, z, start, core.get_pfnblock_migratetype(st, start), new_mt)
    d = st.desc
    s = d[t, D_START]
    e = s + d[t, D_SIZE]
    va.fl_delete(st, za, t)
    st.afree[za] -= e - s
    if s < start:
        d[t, D_SIZE] = start - s
        va.set_bounds(st, t)
        va.fl_insert(st, za, t)
        st.afree[za] += start - s
        pbt = va.desc_get(st)
        st.vm[V_XP_FIXUP] += 1
    else:
        pbt = t
    if e > start + PAGEBLOCK_NR_PAGES:
        r = va.desc_get(st)
        st.vm[V_XP_FIXUP] += 1
        va.seg_set_free(st, r, za, start + PAGEBLOCK_NR_PAGES, e - start - PAGEBLOCK_NR_PAGES)
        st.afree[za] += e - start - PAGEBLOCK_NR_PAGES
    old = core.get_pfnblock_migratetype(st, start)
    core.set_pageblock_migratetype(st, start, new_mt)
    nmt = core.get_pfnblock_migratetype(st, start)
    na = arena_id(z, nmt)
    va.seg_set_free(st, pbt, na, start, PAGEBLOCK_NR_PAGES)
    st.afree[na] += PAGEBLOCK_NR_PAGES
    core.account_freepages(st, z, -PAGEBLOCK_NR_PAGES, old)
    core.account_freepages(st, z, PAGEBLOCK_NR_PAGES, nmt)
    return np.int64(PAGEBLOCK_NR_PAGES)


@njit
def vmem_xp_online_range(st, start, end):
    """pa_online_range: pages that were not there become a free segment (memory hot-add)."""
    if not xp_reserve(st, 2 + ((end - start) >> PAGEBLOCK_ORDER)):
        return E_NOMEM
    t = va.desc_get(st)
    st.vm[V_XP_FIXUP] += 1
    _set_alloc(st, t, start, end - start, True)
    xp_free_segment(st, t, V_XP_FIXUP)
    return 0


__all__ = ["E_NOMEM", "vmem_find_free_segment", "vmem_take"]
