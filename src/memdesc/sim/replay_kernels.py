"""Trace replay kernels: a real kernel's kmem events applied to a modelled allocator.

Theory
------
A trace is a sequence of kmem events (columns of :mod:`memdesc.trace.events`).  The two
replay modes run it through one numba loop each, over the parsed columns, in chunks:

*Exact replay* (:func:`exact_kernel`) applies every event at its real pfn, so the model
follows the real allocator's state.  Each pfn range an event names is first classified
(:func:`classify`, one of the ``S_*`` states: inside a free block, on a per-CPU list of
this CPU or another, a block taken off the free lists for its caller and not yet handed
out (*pending*), an allocation, inside a larger allocation ...), then taken out of that
state (:func:`release_range`) and put in the state the event says it enters:

=============================  ==================  =========================================
event                          expected state      new state
=============================  ==================  =========================================
mm_page_alloc_zone_locked      free                the CPU's pcp list (percpu_refill=1) or
                                                   pending (it awaits its mm_page_alloc)
mm_page_alloc                  pcp (this CPU),     allocated (prep_new_page: gfp, mt)
                               pending
mm_page_free                   allocated (or a     pcp list of the CPU (pcp_allowed_order,
                               sub-block of a      pageblock not isolated), else the buddy
                               larger allocation:  (free_one_page, merging)
                               split_page)
mm_page_pcpu_drain             pcp (this CPU)      the buddy (__free_one_page, merging)
mm_page_free_batched           pcp or free         the paired mm_page_free is applied here
                                                   (free_unref_folios() commits the page to
                                                   the pcp list at this event); otherwise none
compaction:                    free                allocated: the free blocks with heads in
mm_compaction_isolate_freepages                    the scanned range, nr_taken pages
                                                   (compaction's __isolate_free_page())
mm_page_alloc_extfrag          free, pcp, pending  change_ownership=1: the pageblock(s)
                                                   become alloc_migratetype; a block still
                                                   free was claimed or stolen without a
                                                   zone_locked event: taken like one
=============================  ==================  =========================================

Any other state is an *inconsistency* (counted per event and state in ``cnt``) but is
still resolved: the range is first brought to no state whatever it held (free blocks
taken, pcp entries removed, allocations split and released), so the model's invariants
always hold.  Ranges touching reserved pages or holes, or that are misaligned, are
skipped (counted), and so are pages the *design* allocated for its own metadata (radix's
tree-node pages: an allocation neither the snapshot nor the trace made): in the real
machine they held something else, in the model they are the design's, and replay must not
free them behind its back.  The migratetype a zone_locked or pcpu_drain event prints is the
pageblock's (free lists follow pageblock types since 6.9): a pageblock whose modelled
type differs is corrected (``move_freepages_block``), which repairs the types the
snapshot import could only infer.

*Policy replay* (:func:`policy_kernel`) treats the trace as a demand stream: each
mm_page_alloc is served by the design (``pa_alloc`` chooses the pfn) and remembered in
the *replay map* (trace pfn -> model pfn and order, simulation bookkeeping); each
mm_page_free releases the model allocation its trace pfn was given (splitting it for
frees of sub-blocks).  A run started from a snapshot enters every snapshot allocation in
the map at its own pfn (``MAP_PRE``), so frees of pre-trace pages release them; a
zone_locked or pcpu_drain event at a pfn the map still holds as pre-trace allocated proves
the page was already free (a per-CPU page at snapshot time): it is released too.

Design interface used.  Policy replay needs only ``pa_alloc`` and ``pa_free``.  A free of
part of an allocation splits the model allocation in place (``pa_split`` and the
``owner`` byte) when the design may split on a free path (``Design.splits_on_free``, passed
to the kernel); otherwise (vmem, whose allocation descriptors a free path may not create)
the model allocation is kept whole and released with its last piece (``splits_deferred``).
Exact replay uses the exact-placement primitives of :mod:`memdesc.mm.page_alloc.dispatch`
(``EXACT_PRIMITIVES``: which free block holds a pfn, free a range at its pfns, set a
pageblock's type, mark a range allocated / unallocated, split, link / unlink a pcp page,
bring memory online) with ``pa_take``; every design has them (its own, or core's buddy code
for ``linux`` and ``radix``), so one kernel source serves every design.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm import folio as F
from memdesc.mm.memblock import block_order
from memdesc.mm.mmzone import (
    MAX_PAGE_ORDER,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    NR_PCP_LISTS,
)
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.page_alloc.core import buddy_halve
from memdesc.sim.clock import periodic_work
from memdesc.trace import events as E

EV_ALLOC = E.ALLOC
EV_ZONE_LOCKED = E.ALLOC_ZONE_LOCKED
EV_FREE = E.FREE
EV_FREE_BATCHED = E.FREE_BATCHED
EV_PCPU_DRAIN = E.PCPU_DRAIN
EV_EXTFRAG = E.EXTFRAG
#: compaction's free scanner (compaction:mm_compaction_isolate_freepages), merged into the
#: columns by line when the capture has it: pfn = start_pfn, gfp = end_pfn, aux = nr_taken
EV_ISOLATE_FREE = E.NR_EVENTS
NR_EVENTS = E.NR_EVENTS + 1
#: names of the event codes exact replay counts (the kmem tracepoints, then the compaction one)
EVENT_NAMES = (*E.EVENT_NAMES, "mm_compaction_isolate_freepages")

OWNER_NONE = core.OWNER_NONE
OWNER_PCP = core.OWNER_PCP
OWNER_RESERVED = core.OWNER_RESERVED

# ------------------------------------------------------------------ exact replay: page states
(S_FREE, S_PCP, S_PCP_OTHER_CPU, S_PENDING, S_ALLOC, S_ALLOC_LARGER, S_PCP_LARGER, S_MIXED,
 S_DESIGN, S_UNAVAILABLE, S_RESERVED, S_BAD) = range(12)
NR_STATES = 12
#: how each state is named in reports
STATE_NAMES = ("free", "pcp", "pcp of another cpu", "pending (taken, not yet allocated)", "allocated",
               "inside a larger allocation", "inside a larger pcp block", "mixed (several blocks or states)",
               "the design's own metadata pages (allocated by neither the snapshot nor the trace)",
               "not yet accepted/online (all-zero section in the snapshot)",
               "reserved, hole or outside the zones", "misaligned pfn or bad order")
#: states in which each event is expected (anything else is an inconsistency)
EXPECTED = {
    EV_ALLOC: (S_PCP, S_PENDING),
    EV_ZONE_LOCKED: (S_FREE,),
    EV_FREE: (S_ALLOC, S_ALLOC_LARGER, S_UNAVAILABLE),
    EV_FREE_BATCHED: (S_PCP, S_FREE),
    EV_PCPU_DRAIN: (S_PCP,),
    EV_EXTFRAG: (S_FREE, S_PCP, S_PENDING),
    EV_ISOLATE_FREE: (S_FREE,),
}

#: replay-side location of a page (``loc`` array, exact mode): cpu * NR_PCP_LISTS + pindex on a pcp
#: list; for an allocation head, one of these (an allocation head with LOC_NONE was made by the
#: design itself, e.g. radix's tree-node pages: replay does not touch it)
LOC_NONE = -1
LOC_PENDING = -2   # taken off the free lists for its caller, mm_page_alloc not seen yet
LOC_ALLOC = -3     # allocated by the snapshot or by the trace

# misc counters of the exact kernel
(X_FAILED, X_CPU_FOLDED, X_PB_CORRECTED, X_PB_EXTFRAG, X_EXTFRAG_MISMATCH, X_EXTFRAG_TAKE,
 X_SPLIT_FREE, X_ACCEPTED, X_ACCEPTED_UNSEEN, X_DESIGN_TOOK, X_FREE_DEFERRED, X_ISOLATED,
 X_ISOLATE_SHORT) = range(13)
NR_X = 13
X_NAMES = ("failed_allocations", "cpu_folded", "pageblock_types_corrected", "pageblock_types_changed_by_extfrag",
           "extfrag_fallback_type_mismatch", "extfrag_claimed_without_zone_locked", "split_frees",
           "pages_accepted", "blocks_accepted_without_a_free", "events_skipped_design_took_the_pages",
           "frees_applied_at_free_batched", "pages_isolated_by_compaction", "isolated_pages_not_free_in_model")


# ------------------------------------------------------------------ shared helpers


@njit(inline="always")
def fold_cpu(cpu, ncpu, ctr, k):
    """The trace's CPU on a model with ncpu CPUs (cpu % ncpu; ctr[k] counts the folded ones)."""
    if cpu >= ncpu or cpu < 0:
        ctr[k] += 1
        return cpu % ncpu
    return cpu


#: split_page() / the tail loop of __free_pages(): the design's ``pa_split`` and the pieces'
#: page_owner entries; False, with nothing changed, if the design cannot split
exact_split = core.split_allocation


@njit
def record_sample(st, samples, sample_pos, sample_n, i):
    k = sample_n[0]
    if k >= samples.shape[0]:
        return
    nz = st.z_start.shape[0]
    for z in range(nz):
        for o in range(NR_PAGE_ORDERS):
            samples[k, z, o] = st.nr_free[z, o]
        samples[k, z, NR_PAGE_ORDERS] = st.z_free[z]
    sample_pos[k] = i
    sample_n[0] = k + 1


# ------------------------------------------------------------------ exact placement
# Every design has the exact-placement primitives of dispatch (its own, or core's buddy code
# for linux and radix: base.register_design fills them in), so one kernel serves all designs.

xp_free_extent = dispatch.pa_free_extent
xp_free_range = dispatch.pa_free_range
xp_set_pageblock_type = dispatch.pa_set_pageblock_type
xp_mark_allocated = dispatch.pa_mark_allocated
xp_mark_unallocated = dispatch.pa_mark_unallocated
xp_split = dispatch.pa_split
xp_pcp_link = dispatch.pa_pcp_link
xp_pcp_unlink = dispatch.pa_pcp_unlink
xp_online_range = dispatch.pa_online_range


@njit
def xp_take_range(st, start, end):
    """Take the free pages [start, end) out of the pool, to no state: take_page_off_buddy()
    on each aligned block, none crossing the end of the free block it lies in (a buddy
    design has them all in one block; vmem may hold them in several segments, e.g. after a
    pageblock was retyped).  False if a page was not free or the design refused (those
    already taken are then given back)."""
    pfn = start
    fe = np.int64(-1)
    while pfn < end:
        if pfn >= fe:
            fs, fe = xp_free_extent(st, pfn)
            if fs < 0:
                xp_free_range(st, start, pfn, core.FPI_TO_TAIL)
                return False
        order = block_order(pfn, min(end, fe), MAX_PAGE_ORDER)
        if dispatch.pa_take(st, pfn, order) != core.OK:
            xp_free_range(st, start, pfn, core.FPI_TO_TAIL)
            return False
        st.owner[pfn] = OWNER_NONE  # a design may mark what it takes as allocated: here it is no state
        pfn += np.int64(1) << order
    return True


# ------------------------------------------------------------------ exact replay: states


@njit
def _pcp_order(loc, pfn):
    return core.pindex_to_order(np.int64(loc[pfn]) % NR_PCP_LISTS)


@njit
def _scan_mixed(st, loc, pfn, end):
    for p in range(pfn, end):
        v = st.owner[p]
        if v == OWNER_RESERVED:
            return S_RESERVED
        if v != OWNER_NONE and v != OWNER_PCP and loc[p] == LOC_NONE:
            return S_DESIGN
    return S_MIXED


@njit
def containing_block(st, loc, pfn, order):
    """(head, order) of the allocation or pcp block of order > ``order`` that contains pfn, or (-1, 0)."""
    for o in range(order + 1, NR_PAGE_ORDERS):
        hh = pfn & ~((np.int64(1) << o) - 1)
        w = st.owner[hh]
        if w == OWNER_PCP:
            ho = _pcp_order(loc, hh)
            if ho >= o:
                return hh, ho
        elif w != OWNER_NONE and w != OWNER_RESERVED:
            ho = core.owner_order(w)
            if ho >= o:
                return hh, ho
    return np.int64(-1), np.int64(0)


@njit
def _reserved_state(unavail, pfn):
    if pfn < unavail.shape[0] and unavail[pfn]:
        return S_UNAVAILABLE
    return S_RESERVED


@njit
def classify(st, loc, unavail, pfn, order, cpu):
    """The state (``S_*``) of the range [pfn, pfn + 2^order) in the model."""
    npages = st.owner.shape[0]
    if order < 0 or order > MAX_PAGE_ORDER or pfn < 0 or (pfn & ((np.int64(1) << order) - 1)) != 0:
        return S_BAD
    end = pfn + (np.int64(1) << order)
    if end > npages:
        return S_RESERVED
    z = core.page_zone(st, pfn)
    if z < 0 or not core.zone_spans_pfn(st, z, pfn) or not core.zone_spans_pfn(st, z, end - 1):
        return S_RESERVED
    v = st.owner[pfn]
    if v == OWNER_RESERVED:
        return _reserved_state(unavail, pfn)
    if v == OWNER_PCP:
        o = _pcp_order(loc, pfn)
        if o == order:
            return S_PCP if np.int64(loc[pfn]) // NR_PCP_LISTS == cpu else S_PCP_OTHER_CPU
        if o > order:
            return S_PCP_LARGER
        return _scan_mixed(st, loc, pfn, end)
    if v != OWNER_NONE:
        if loc[pfn] == LOC_NONE:
            return S_DESIGN
        o = core.owner_order(v)
        if o == order:
            return S_PENDING if loc[pfn] == LOC_PENDING else S_ALLOC
        if o > order:
            return S_ALLOC_LARGER
        return _scan_mixed(st, loc, pfn, end)
    fs, fe = xp_free_extent(st, pfn)
    if fs >= 0:
        if fe >= end:
            return S_FREE
        return _scan_mixed(st, loc, pfn, end)
    hh, ho = containing_block(st, loc, pfn, order)
    if hh >= 0:
        if st.owner[hh] == OWNER_PCP:
            return S_PCP_LARGER
        return S_DESIGN if loc[hh] == LOC_NONE else S_ALLOC_LARGER
    return _scan_mixed(st, loc, pfn, end)


@njit
def accept_block(st, unavail, pfn, order):
    """Pages the snapshot saw as not yet there (an all-zero kpageflags section: memory not yet
    accepted or onlined) join the zone, free: what ``__free_pages_core()``/``accept_page()``
    do when the kernel brings memory in.  All of [pfn, 2^order) must be such pages."""
    npages = st.owner.shape[0]
    end = pfn + (np.int64(1) << order)
    if pfn < 0 or end > npages or end > unavail.shape[0]:
        return False
    z = core.page_zone(st, pfn)
    if z < 0 or not core.zone_spans_pfn(st, z, pfn) or not core.zone_spans_pfn(st, z, end - 1):
        return False
    for q in range(pfn, end):
        if st.owner[q] != OWNER_RESERVED or not unavail[q]:
            return False
    for q in range(pfn, end):
        st.owner[q] = OWNER_NONE
    if xp_online_range(st, pfn, end) != 0:
        for q in range(pfn, end):
            st.owner[q] = OWNER_RESERVED
        return False
    st.z_managed[z] += end - pfn
    st.stats[core.ST_BUDDY_FREE] += 1
    return True


@njit
def pcp_add(st, loc, pfn, order, cpu, pindex, tail):
    z = core.page_zone(st, pfn)
    xp_pcp_link(st, cpu, z, pindex, pfn, tail)
    st.owner[pfn] = OWNER_PCP
    st.pcp[cpu, z, core.PCP_COUNT] += np.int64(1) << order
    loc[pfn] = cpu * NR_PCP_LISTS + pindex


@njit
def pcp_remove(st, loc, pfn):
    """Take pfn off the pcp list it is on; returns its order."""
    lv = np.int64(loc[pfn])
    cpu = lv // NR_PCP_LISTS
    pindex = lv % NR_PCP_LISTS
    order = core.pindex_to_order(pindex)
    z = core.page_zone(st, pfn)
    xp_pcp_unlink(st, cpu, z, pindex, pfn)
    st.pcp[cpu, z, core.PCP_COUNT] -= np.int64(1) << order
    st.owner[pfn] = OWNER_NONE
    loc[pfn] = LOC_NONE
    return order


@njit
def _unallocate(st, loc, pfn, order):
    xp_mark_unallocated(st, pfn, order)
    st.owner[pfn] = OWNER_NONE
    loc[pfn] = LOC_NONE


@njit
def _free_outside(st, head, horder, pfn, order):
    """Free the buddy halves of [head, 2^horder) that do not contain [pfn, 2^order)."""
    cur = head
    co = horder
    while co > order:
        co -= 1
        other, cur = buddy_halve(cur, co, pfn)
        xp_free_range(st, other, other + (np.int64(1) << co), core.FPI_NONE)


@njit
def release_range(st, loc, pfn, order, state):
    """Bring [pfn, pfn + 2^order) from ``state`` to no state: off every list, not allocated.

    Returns False if the design refused: a design that keeps its metadata in allocator pages
    (radix) may take the very block for itself while the replay works; the range is then
    left in valid states (what was already released goes back to the free lists)."""
    if state == S_FREE:
        return xp_take_range(st, pfn, pfn + (np.int64(1) << order))
    if state == S_PCP or state == S_PCP_OTHER_CPU:
        pcp_remove(st, loc, pfn)
    elif state == S_PENDING or state == S_ALLOC:
        _unallocate(st, loc, pfn, order)
    elif state == S_ALLOC_LARGER:
        h, ho = containing_block(st, loc, pfn, order)
        if not exact_split(st, h, ho, pfn, order):
            return False
        for q in range(h, h + (np.int64(1) << ho)):
            if st.owner[q] != OWNER_NONE:
                loc[q] = LOC_ALLOC
        _unallocate(st, loc, pfn, order)
    elif state == S_PCP_LARGER:
        h, ho = containing_block(st, loc, pfn, order)
        pcp_remove(st, loc, h)
        _free_outside(st, h, ho, pfn, order)
    else:
        # S_MIXED: every block inside the range lies wholly inside it (buddy alignment)
        end = pfn + (np.int64(1) << order)
        p = pfn
        while p < end:
            v = st.owner[p]
            if v == OWNER_PCP:
                p += np.int64(1) << pcp_remove(st, loc, p)
            elif v != OWNER_NONE and v != OWNER_RESERVED:
                if loc[p] == LOC_NONE:  # the design's own page, made while we worked
                    xp_free_range(st, pfn, p, core.FPI_TO_TAIL)
                    return False
                o = core.owner_order(v)
                _unallocate(st, loc, p, o)
                p += np.int64(1) << o
            else:
                fs, fe = xp_free_extent(st, p)
                if fs < 0:
                    p += 1
                    continue
                q = min(fe, end)
                if not xp_take_range(st, p, q):
                    xp_free_range(st, pfn, p, core.FPI_TO_TAIL)
                    return False
                p = q
    return True


@njit
def set_block_type(st, pfn, order, newmt):
    """Set the migratetype of the pageblock(s) spanning [pfn, 2^max(order, pageblock_order)).

    Free blocks inside move to the new type's lists (move_freepages_block()).  A free block
    larger than the span, containing it, is changed whole.  Returns pageblocks changed.
    """
    if newmt < 0 or newmt >= MIGRATE_TYPES:
        return 0
    npages = st.owner.shape[0]
    span = max(order, core.pageblock_order(st))
    start = pfn & ~((np.int64(1) << span) - 1)
    end = min(start + (np.int64(1) << span), npages)
    if start < 0 or start >= npages:
        return 0
    fs, fe = xp_free_extent(st, start)
    if fs >= 0 and (fs < start or fe > end):
        # the free block holding it (a segment of any length: its part inside the aligned
        # MAX_PAGE_ORDER block, which for a buddy block is the block itself).  Only ever
        # widened: a vmem segment may merely overlap the span (start before it, end inside)
        base = start & ~((np.int64(1) << MAX_PAGE_ORDER) - 1)
        start = min(start, max(fs, base))
        end = max(end, min(fe, base + (np.int64(1) << MAX_PAGE_ORDER)))
    z = core.page_zone(st, start)
    if z < 0:
        return 0
    changed = 0
    b = start
    while b < end:
        old = core.get_pfnblock_migratetype(st, b)
        if old != newmt and core.page_zone(st, b) == z:
            xp_set_pageblock_type(st, z, b, old, newmt)
            if old == core.MT_HIGHATOMIC:
                st.z_reserved_highatomic[z] = max(0, st.z_reserved_highatomic[z] - core.pageblock_nr_pages(st))
            if newmt == core.MT_HIGHATOMIC:
                st.z_reserved_highatomic[z] += core.pageblock_nr_pages(st)
            changed += 1
        b += core.pageblock_nr_pages(st)
    return changed


@njit
def set_block_types(st, pfns, types):
    """set_block_type() of each pageblock start in pfns; returns pageblocks changed."""
    n = 0
    for k in range(pfns.shape[0]):
        if core.get_pfnblock_migratetype(st, pfns[k]) != types[k]:
            n += set_block_type(st, pfns[k], 0, types[k])
    return n


@njit
def taken(st, loc, pfn, order, cpu, mt, refill):
    """A block taken off the free lists: onto the CPU's pcp list, or pending for its caller."""
    if refill and core.pcp_allowed_order(st, order) and 0 <= mt < MIGRATE_PCPTYPES:
        pcp_add(st, loc, pfn, order, cpu, core.order_to_pindex(mt, order), True)
    else:
        xp_mark_allocated(st, pfn, order, 0)
        st.owner[pfn] = core.owner_encode(order, mt if 0 <= mt < MIGRATE_TYPES else 0)
        loc[pfn] = LOC_PENDING


@njit
def free_block(st, loc, pfn, order, cpu, pcp_on):
    """free_frozen_pages(): to the CPU's pcp list, or to the buddy (isolated pageblock, big order)."""
    z = core.page_zone(st, pfn)
    nr = np.int64(1) << order
    st.stats[core.ST_FREE] += 1
    st.stats[core.ST_FREE_PAGES] += nr
    st.zstats[z, core.ZS_PGFREE] += nr
    if pcp_on and core.pcp_allowed_order(st, order):
        mt = core.get_pfnblock_migratetype(st, pfn)
        if mt != core.MT_ISOLATE:
            if mt >= MIGRATE_PCPTYPES:
                mt = core.MT_MOVABLE
            pcp_add(st, loc, pfn, order, cpu, core.order_to_pindex(mt, order), False)
            st.stats[core.ST_PCP_FREE] += 1
            return
    st.stats[core.ST_BUDDY_FREE] += 1
    xp_free_range(st, pfn, pfn + nr, core.FPI_NONE)


@njit
def _release(st, loc, pfn, order, state, xc):
    if release_range(st, loc, pfn, order, state):
        return True
    xc[X_DESIGN_TOOK] += 1
    return False


@njit
def _state(st, loc, unavail, pfn, order, cpu, e, cnt, xc):
    """classify(), counted; pages not yet accepted/online are brought in first (the kernel
    must have done so before this event: the trace did not show it)."""
    s = classify(st, loc, unavail, pfn, order, cpu)
    cnt[e, s] += 1
    if s == S_UNAVAILABLE and e != EV_FREE:
        head = pfn & ~((np.int64(1) << MAX_PAGE_ORDER) - 1)
        if accept_block(st, unavail, head, MAX_PAGE_ORDER) or accept_block(st, unavail, pfn, order):
            xc[X_ACCEPTED_UNSEEN] += 1
        s = classify(st, loc, unavail, pfn, order, cpu)
    return s


@njit
def isolate_free_range(st, loc, start, end, nr_taken, xc):
    """mm_compaction_isolate_freepages: compaction's free scanner took the free blocks whose
    head lies in [start, end), nr_taken pages in pfn order (__isolate_free_page(): no kmem
    event).  They become allocations (migration targets, or pages handed back later with an
    mm_page_free); returns the pages taken in the model."""
    npages = st.owner.shape[0]
    if start < 0 or end > npages or start >= end:
        return np.int64(0)
    taken_pages = np.int64(0)
    q = start
    while q < end and taken_pages < nr_taken:
        if st.owner[q] != OWNER_NONE:
            q += 1
            continue
        fs, fe = xp_free_extent(st, q)
        if fs < 0:
            q += 1
            continue
        a = max(fs, q)
        b = min(fe, end, a + (nr_taken - taken_pages))
        if not xp_take_range(st, a, b):
            xc[X_DESIGN_TOOK] += 1
            q = fe
            continue
        # the taken pages become allocations of the largest aligned blocks
        x = a
        while x < b:
            k = block_order(x, b, MAX_PAGE_ORDER)
            xp_mark_allocated(st, x, k, 0)
            st.owner[x] = core.owner_encode(k, core.MT_MOVABLE)
            loc[x] = LOC_ALLOC
            x += np.int64(1) << k
        taken_pages += b - a
        q = b
    return taken_pages


@njit
def exact_event(st, loc, unavail, e, c, p, o, gfp, mt, refill, fbo, fbmt, chown, aux, bm, pcp_on, cnt, xc):
    """Apply one event at its real pfn (see the module docstring).

    ``bm`` pairs the two halves of a batched free (free_unref_folios()): for mm_page_free,
    1 when its mm_page_free_batched follows (the page reaches the pcp list only then, so the
    free is applied there); for mm_page_free_batched, the order of its mm_page_free, or -1.
    ``aux``: mm_compaction_isolate_freepages' nr_taken (``gfp`` holds its end pfn)."""
    npages = st.owner.shape[0]
    if e == EV_ALLOC:
        if p < 0:
            xc[X_FAILED] += 1
            st.stats[core.ST_ALLOC_FAIL] += 1
        else:
            s = _state(st, loc, unavail, p, o, c, e, cnt, xc)
            if s <= S_MIXED and _release(st, loc, p, o, s, xc):
                xp_mark_allocated(st, p, o, gfp)
                st.owner[p] = core.owner_encode(o, mt if 0 <= mt < MIGRATE_TYPES else 0)
                loc[p] = LOC_ALLOC
                st.stats[core.ST_ALLOC] += 1
                st.stats[core.ST_ALLOC_PAGES] += np.int64(1) << o
                st.zstats[core.page_zone(st, p), core.ZS_PGALLOC] += np.int64(1) << o
    elif e == EV_ZONE_LOCKED:
        s = _state(st, loc, unavail, p, o, c, e, cnt, xc)
        if s <= S_MIXED:
            if s == S_FREE and 0 <= mt < MIGRATE_TYPES and core.get_pfnblock_migratetype(st, p) != mt:
                xc[X_PB_CORRECTED] += set_block_type(st, p, o, mt)
            if _release(st, loc, p, o, s, xc):
                taken(st, loc, p, o, c, mt, refill == 1)
    elif e == EV_FREE:
        if bm == 1:
            xc[X_FREE_DEFERRED] += 1
        else:
            apply_free(st, loc, unavail, p, o, c, pcp_on, cnt, xc)
    elif e == EV_FREE_BATCHED:
        if bm >= 0:
            apply_free(st, loc, unavail, p, bm, c, pcp_on, cnt, xc)
        # printed order=0 whatever the folio's order: check the head is no longer allocated
        if p < 0 or p >= npages:
            s = S_RESERVED
        elif st.owner[p] == OWNER_PCP:
            s = S_PCP
        elif xp_free_extent(st, p)[0] >= 0:
            s = S_FREE
        else:
            s = classify(st, loc, unavail, p, 0, c)
        cnt[e, s] += 1
    elif e == EV_PCPU_DRAIN:
        s = _state(st, loc, unavail, p, o, c, e, cnt, xc)
        if s <= S_MIXED:
            if 0 <= mt < MIGRATE_TYPES and core.get_pfnblock_migratetype(st, p) != mt:
                xc[X_PB_CORRECTED] += set_block_type(st, p, o, mt)
            if _release(st, loc, p, o, s, xc):
                xp_free_range(st, p, p + (np.int64(1) << o), core.FPI_NONE)
                st.stats[core.ST_PCP_DRAINED] += np.int64(1) << o
    elif e == EV_EXTFRAG:
        st.stats[core.ST_EXTFRAG] += 1
        s = _state(st, loc, unavail, p, o, c, e, cnt, xc)
        if s <= S_MIXED:
            if chown == 1 and 0 <= mt < MIGRATE_TYPES:
                cur = core.get_pfnblock_migratetype(st, p)
                if cur != mt and cur != fbmt:
                    xc[X_EXTFRAG_MISMATCH] += 1
                xc[X_PB_EXTFRAG] += set_block_type(st, p, min(max(fbo, o), MAX_PAGE_ORDER), mt)
            if s == S_FREE and _release(st, loc, p, o, s, xc):
                taken(st, loc, p, o, c, mt, True)
                xc[X_EXTFRAG_TAKE] += 1
    elif e == EV_ISOLATE_FREE:
        got = isolate_free_range(st, loc, p, gfp, aux, xc)
        xc[X_ISOLATED] += got
        xc[X_ISOLATE_SHORT] += max(np.int64(0), aux - got)
        cnt[e, S_FREE] += 1


@njit
def apply_free(st, loc, unavail, p, o, c, pcp_on, cnt, xc):
    """mm_page_free: the block leaves its allocation for the CPU's pcp list or the buddy."""
    s = _state(st, loc, unavail, p, o, c, EV_FREE, cnt, xc)
    if s == S_UNAVAILABLE:
        if accept_block(st, unavail, p, o):
            xc[X_ACCEPTED] += np.int64(1) << o
    elif s <= S_MIXED:
        if s == S_ALLOC_LARGER:
            xc[X_SPLIT_FREE] += 1
        if _release(st, loc, p, o, s, xc):
            free_block(st, loc, p, o, c, pcp_on)


@njit
def _typed_range(e, p, o, bm):
    """The pfn range (start, order) whose allocations an exact event may release, or (-1, 0)."""
    if p < 0:
        return np.int64(-1), np.int64(0)
    if e == EV_ALLOC or e == EV_ZONE_LOCKED or e == EV_PCPU_DRAIN:
        return p, o
    if e == EV_FREE and bm != 1:
        return p, o
    if e == EV_FREE_BATCHED and bm >= 0:
        return p, bm
    return np.int64(-1), np.int64(0)


@njit
def _typed_walk(ms, pa, p, o, op, st, loc, ss, alloc_applied, cpu):
    """Visit every typed allocation overlapping [p, 2^o).  op 0: clear its design words;
    op 1: set them again if the design still holds it as the same trace allocation, else end it
    (memdesc_disown).  Returns how many were visited."""
    npages = ms.pfn_slot.shape[0]
    if o < 0 or o > MAX_PAGE_ORDER:
        return 0
    end = min(p + (np.int64(1) << o), npages)
    q = p
    n = 0
    while q < end:
        v = np.int64(ms.pfn_slot[q])
        if v == 0:
            q += 1
            continue
        s = v - 1
        head = ms.pfn[s]
        so = np.int64(ms.order[s])
        q = head + (np.int64(1) << so)
        n += 1
        if op == 0:
            F.memdesc_words_clear(ms, pa, s)
            continue
        w = st.owner[head]
        held = (w != OWNER_NONE and w != OWNER_PCP and w != OWNER_RESERVED and core.owner_order(w) == so
                and loc[head] == LOC_ALLOC)
        if held and not alloc_applied:
            F.memdesc_words_set(ms, pa, s)
        else:
            F.memdesc_disown(ms, ss, pa, s, cpu, False)  # its words were cleared before the event
    return n


@njit
def exact_typed_event(st, ms, ss, loc, unavail, e, c, p, o, gfp, mt, refill, fbo, fbmt, chown, aux, bm, mdtype,
                      pcp_on, cnt, xc):
    """exact_event() with the typed layer: the typed allocations the event may release have their
    design words cleared first; afterwards each is set again if the design still holds it, or
    ended; an mm_page_alloc the model applied becomes a typed allocation of ``mdtype``
    (:func:`memdesc.mm.folio.memdesc_adopt`).  The typed layer's own page traffic (descriptor
    slab pages) bypasses the per-CPU lists, whose contents mirror the real kernel's."""
    tp, to = _typed_range(e, p, o, bm)
    touched = 0
    if tp >= 0:
        touched = _typed_walk(ms, st, tp, to, 0, st, loc, ss, False, c)
    a0 = st.stats[core.ST_ALLOC]
    exact_event(st, loc, unavail, e, c, p, o, gfp, mt, refill, fbo, fbmt, chown, aux, bm, pcp_on, cnt, xc)
    applied = e == EV_ALLOC and st.stats[core.ST_ALLOC] != a0
    pcp_cfg = st.cfg[core.CFG_PCP_ENABLED]
    st.cfg[core.CFG_PCP_ENABLED] = 0
    if touched:
        _typed_walk(ms, st, tp, to, 1, st, loc, ss, applied, c)
    if applied:
        F.memdesc_adopt(ms, ss, st, p, o, gfp, mdtype, c)
    st.cfg[core.CFG_PCP_ENABLED] = pcp_cfg


@njit
def exact_kernel(st, ms, ss, typed, loc, unavail, ev, cpu_col, pfn_col, order_col, gfp_col, mt_col, refill_col,
                 fbo_col, fbmt_col, chown_col, aux_col, bm_col, type_col, first, last, ncpu, pcp_on, cnt, xc, every,
                 samples, sample_pos, sample_n):
    """Apply events [first, last) at their real pfns (see the module docstring); with ``typed``,
    through :func:`exact_typed_event` (it returns early, the index of the next event, when the
    folio layer or the slab needs to grow)."""
    for i in range(first, last):
        c = fold_cpu(np.int64(cpu_col[i]), ncpu, xc, X_CPU_FOLDED)
        if typed:
            if (i == first or (i & 7) == 0) and not F.headroom_ok(ms, ss):
                return i
            exact_typed_event(st, ms, ss, loc, unavail, np.int64(ev[i]), c, np.int64(pfn_col[i]),
                              np.int64(order_col[i]), np.int64(gfp_col[i]), np.int64(mt_col[i]),
                              np.int64(refill_col[i]), np.int64(fbo_col[i]), np.int64(fbmt_col[i]),
                              np.int64(chown_col[i]), np.int64(aux_col[i]), np.int64(bm_col[i]),
                              np.int64(type_col[i]), pcp_on, cnt, xc)
        else:
            exact_event(st, loc, unavail, np.int64(ev[i]), c, np.int64(pfn_col[i]), np.int64(order_col[i]),
                        np.int64(gfp_col[i]), np.int64(mt_col[i]), np.int64(refill_col[i]), np.int64(fbo_col[i]),
                        np.int64(fbmt_col[i]), np.int64(chown_col[i]), np.int64(aux_col[i]),
                        np.int64(bm_col[i]), pcp_on, cnt, xc)
        if every > 0 and (i + 1) % every == 0:
            record_sample(st, samples, sample_pos, sample_n, i)
    return last


# ------------------------------------------------------------------ policy replay

#: replay map (per trace pfn): map_order -1 = no entry, else order + one of these origins
MAP_NONE = -1
MAP_TRACE = 0   # allocated during the trace: map_pfn is the model pfn the design chose
MAP_PRE = 16    # allocated before the trace (snapshot): the model holds it at the same pfn
MAP_FAILED = 32  # the design could not serve the allocation: no model pages behind it
MAP_DEFER = 48  # a piece of an allocation the design cannot split: map_pfn is the model
#                 allocation's first pfn, released when its last piece is (see defer)
MAP_ORDER_MASK = 15
#: defer[model head] = order << DEFER_SHIFT | pages of the allocation still live in the trace
DEFER_SHIFT = 40

(P_ALLOCS, P_REAL_FAILED, P_REAL_FAILED_SERVED, P_MODEL_FAILED, P_FREES, P_FREE_TRACE, P_FREE_PRE,
 P_FREE_OF_FAILED, P_SPLIT_FREE, P_FREE_SPANNING, P_FREE_UNMAPPED, P_STALE_PRE, P_STALE_TRACE, P_BAD,
 P_MODEL_FREE_ERROR, P_CPU_FOLDED, P_ACCEPTED, P_DEFERRED, P_TYPED_SPLIT, P_DESC_FAILED) = range(20)
NR_P = 20
P_NAMES = ("allocations", "real_failures", "real_failures_served_by_model", "model_failures", "frees",
           "frees_of_trace_allocations", "frees_of_pre_trace_allocations", "frees_of_model_failures",
           "split_frees", "frees_spanning_several_allocations", "frees_of_unknown_pages",
           "stale_pre_trace_released", "stale_trace_entries_released", "bad_events", "model_free_errors",
           "cpu_folded", "pages_accepted", "splits_deferred", "typed_allocations_split",
           "descriptor_failures")
#: the typed-replay counters (reported under ``typed``, not in ``policy``: its keys stay as they were)
P_TYPED_KEYS = ("typed_allocations_split", "descriptor_failures")

@njit
def typed_slot(ms, pfn, order):
    """The typed allocation (slot) that is exactly [pfn, 2^order) in the model, or -1."""
    if pfn < 0 or pfn >= ms.pfn_slot.shape[0]:
        return np.int64(-1)
    s = np.int64(ms.pfn_slot[pfn]) - 1
    if s >= 0 and ms.pfn[s] == pfn and np.int64(ms.order[s]) == order:
        return s
    return np.int64(-1)


@njit
def model_free(st, ms, ss, pfn, order, cpu):
    """Free the model allocation [pfn, 2^order): through the typed layer (descriptor, design
    words, pages) when it is a typed allocation, else the design's pa_free.  0 or an error."""
    s = typed_slot(ms, pfn, order)
    if s >= 0:
        return 0 if F.memdesc_release(ms, ss, st, s, cpu) == F.OK else 1
    return dispatch.pa_free(st, pfn, order, cpu)


@njit
def map_release(st, ms, ss, map_pfn, map_order, defer, h, cpu, pc):
    """Drop the map entry at h, freeing the model allocation behind it; returns its origin."""
    v = np.int64(map_order[h])
    origin = v & ~MAP_ORDER_MASK
    mh = map_pfn[h]
    if origin == MAP_DEFER:
        left = defer[mh] - (np.int64(1) << (v & MAP_ORDER_MASK))
        defer[mh] = left
        if (left & ((np.int64(1) << DEFER_SHIFT) - 1)) == 0:
            defer[mh] = 0
            if model_free(st, ms, ss, mh, left >> DEFER_SHIFT, cpu) != 0:
                pc[P_MODEL_FREE_ERROR] += 1
    elif origin != MAP_FAILED:
        if model_free(st, ms, ss, mh, v & MAP_ORDER_MASK, cpu) != 0:
            pc[P_MODEL_FREE_ERROR] += 1
    map_order[h] = MAP_NONE
    map_pfn[h] = -1
    return origin


@njit
def map_containing(map_order, pfn, order):
    """Head of the map entry of order > ``order`` containing pfn, or -1."""
    for o in range(order + 1, NR_PAGE_ORDERS):
        hh = pfn & ~((np.int64(1) << o) - 1)
        v = np.int64(map_order[hh])
        if v >= 0 and (v & MAP_ORDER_MASK) >= o:
            return hh
    return np.int64(-1)


@njit
def model_split(st, split, head, horder, pfn, order):
    """Split the model allocation in place (exact_split) when the design may split on a free
    path (``split``: Design.splits_on_free), else False."""
    if split:
        return exact_split(st, head, horder, pfn, order)
    return False


@njit
def map_split(st, split, ms, ss, map_pfn, map_order, defer, h, pfn, order, pc):
    """Split entry h so that [pfn, 2^order) is an entry of its own, and its model allocation
    with it; a design that cannot split keeps the allocation whole until its last piece goes."""
    v = np.int64(map_order[h])
    origin = v & ~MAP_ORDER_MASK
    ho = v & MAP_ORDER_MASK
    mh = map_pfn[h]
    if origin == MAP_TRACE or origin == MAP_PRE:
        s = typed_slot(ms, mh, ho)
        if s >= 0 and split:
            # split_page() of a typed allocation: its pieces are bare pages from now on
            F.memdesc_disown(ms, ss, st, s, 0, True)
            pc[P_TYPED_SPLIT] += 1
        if not model_split(st, split, mh, ho, mh + (pfn - h), order):
            defer[mh] = (ho << DEFER_SHIFT) | (np.int64(1) << ho)
            origin = MAP_DEFER
            pc[P_DEFERRED] += 1
    cur = h
    co = ho
    while co > order:
        co -= 1
        other, cur = buddy_halve(cur, co, pfn)
        map_order[other] = origin + co
        map_pfn[other] = _piece_pfn(origin, mh, other - h)
    map_order[cur] = origin + order
    map_pfn[cur] = _piece_pfn(origin, mh, cur - h)


@njit(inline="always")
def _piece_pfn(origin, mh, offset):
    if origin == MAP_FAILED:
        return np.int64(-1)
    if origin == MAP_DEFER:
        return mh
    return mh + offset


@njit
def map_release_range(st, split, ms, ss, map_pfn, map_order, defer, pfn, order, cpu, pre_only, pc):
    """Release every entry overlapping [pfn, 2^order) (only pre-trace ones if ``pre_only``)."""
    h = map_containing(map_order, pfn, order)
    if h >= 0:
        if pre_only and (np.int64(map_order[h]) & ~MAP_ORDER_MASK) != MAP_PRE:
            return
        map_split(st, split, ms, ss, map_pfn, map_order, defer, h, pfn, order, pc)
    end = pfn + (np.int64(1) << order)
    q = pfn
    while q < end:
        v = np.int64(map_order[q])
        if v < 0:
            q += 1
            continue
        step = np.int64(1) << (v & MAP_ORDER_MASK)
        origin = v & ~MAP_ORDER_MASK
        if not pre_only or origin == MAP_PRE:
            map_release(st, ms, ss, map_pfn, map_order, defer, q, cpu, pc)
            if origin == MAP_PRE:
                pc[P_STALE_PRE] += 1
            else:
                pc[P_STALE_TRACE] += 1
        q += step


@njit
def _map_has_overlap(map_order, pfn, order):
    if map_order[pfn] >= 0:
        return True
    if map_containing(map_order, pfn, order) >= 0:
        return True
    for q in range(pfn + 1, pfn + (np.int64(1) << order)):
        if map_order[q] >= 0:
            return True
    return False


@njit
def policy_free(st, split, ms, ss, map_pfn, map_order, defer, unavail, pfn, order, cpu, pc):
    """mm_page_free in policy mode: release the model allocation behind the trace pfn."""
    pc[P_FREES] += 1
    v = np.int64(map_order[pfn])
    if v >= 0 and (v & MAP_ORDER_MASK) == order:
        origin = map_release(st, ms, ss, map_pfn, map_order, defer, pfn, cpu, pc)
        if origin == MAP_PRE:
            pc[P_FREE_PRE] += 1
        elif origin == MAP_FAILED:
            pc[P_FREE_OF_FAILED] += 1
        elif origin == MAP_DEFER:
            pc[P_SPLIT_FREE] += 1
        else:
            pc[P_FREE_TRACE] += 1
        return
    h = map_containing(map_order, pfn, order)
    if h >= 0:
        map_split(st, split, ms, ss, map_pfn, map_order, defer, h, pfn, order, pc)
        map_release(st, ms, ss, map_pfn, map_order, defer, pfn, cpu, pc)
        pc[P_SPLIT_FREE] += 1
        return
    end = pfn + (np.int64(1) << order)
    found = 0
    q = pfn
    while q < end:
        w = np.int64(map_order[q])
        if w >= 0:
            map_release(st, ms, ss, map_pfn, map_order, defer, q, cpu, pc)
            found += 1
            q += np.int64(1) << (w & MAP_ORDER_MASK)
        else:
            q += 1
    if found:
        pc[P_FREE_SPANNING] += 1
    elif accept_block(st, unavail, pfn, order):
        # memory the snapshot saw as not yet there joins the model too (same pfns)
        pc[P_ACCEPTED] += np.int64(1) << order
    else:
        pc[P_FREE_UNMAPPED] += 1


@njit
def policy_kernel(st, split, ms, ss, typed, unavail, ev, cpu_col, pfn_col, order_col, gfp_col, type_col, ts_col, tick,
                  first, last, ncpu, map_pfn, map_order, defer, pc, every, samples, sample_pos, sample_n,
                  evlog_limit):
    """Serve events [first, last) with the design's own policy (see the module docstring).

    The model's periodic work runs on the trace's clock: once per second of trace time
    (``tick[0]`` holds the next due timestamp) ``memdesc.sim.clock.periodic_work``: the per-CPU
    lists' high marks decay as the kernel's vmstat_update() does them, and kswapd takes a
    watermark boost back.

    Typed replay (``typed``): each allocation is a typed allocation of its type
    (``type_col``, :mod:`memdesc.sim.memtypes`) through :func:`memdesc.mm.folio.memdesc_alloc`
    -- descriptor from its slab cache where the design separates descriptors, then the pages --
    and each free releases both (``ms``/``ss``: the folio layer's and the slab's state).

    Returns the index after the last event handled: it stops early when the model's event
    log holds more than ``evlog_limit`` rows, so the caller can count and empty it, and
    (typed) when the folio layer or the slab needs to grow.
    """
    nmap = map_order.shape[0]
    for i in range(first, last):
        if typed and (i == first or (i & 7) == 0) and not F.headroom_ok(ms, ss):
            return i
        if ts_col[i] >= tick[0]:
            if tick[0] >= 0:
                periodic_work(st)
            tick[0] = ts_col[i] + core.VMSTAT_INTERVAL_NS
        e = np.int64(ev[i])
        c = fold_cpu(np.int64(cpu_col[i]), ncpu, pc, P_CPU_FOLDED)
        p = np.int64(pfn_col[i])
        o = np.int64(order_col[i])
        if e == EV_ALLOC or e == EV_FREE or e == EV_ZONE_LOCKED or e == EV_PCPU_DRAIN:
            bad = o < 0 or o > MAX_PAGE_ORDER or (p < 0 and e != EV_ALLOC)
            if not bad and p >= 0:
                bad = (p & ((np.int64(1) << o) - 1)) != 0 or p + (np.int64(1) << o) > nmap
            if bad:
                pc[P_BAD] += 1
                continue
        if e == EV_ALLOC:
            pc[P_ALLOCS] += 1
            if p >= 0 and _map_has_overlap(map_order, p, o):
                # the real kernel hands out these pages, so whatever the map holds there was freed
                map_release_range(st, split, ms, ss, map_pfn, map_order, defer, p, o, c, False, pc)
            g = np.int64(gfp_col[i])
            if typed and p >= 0:
                slot = F.memdesc_alloc(ms, ss, st, g, o, np.int64(type_col[i]), c)
                mp = ms.pfn[slot] if slot >= 0 else np.int64(-1)
                if slot == F.E_NOMEM_DESC:
                    pc[P_DESC_FAILED] += 1
            else:
                mp = dispatch.pa_alloc(st, g, o, c)
            if p < 0:
                pc[P_REAL_FAILED] += 1
                if mp >= 0:
                    pc[P_REAL_FAILED_SERVED] += 1
                    dispatch.pa_free(st, mp, o, c)
            elif mp < 0:
                pc[P_MODEL_FAILED] += 1
                map_order[p] = MAP_FAILED + o
                map_pfn[p] = -1
            else:
                map_order[p] = MAP_TRACE + o
                map_pfn[p] = mp
        elif e == EV_FREE:
            policy_free(st, split, ms, ss, map_pfn, map_order, defer, unavail, p, o, c, pc)
        elif e == EV_ZONE_LOCKED or e == EV_PCPU_DRAIN:
            if _map_has_overlap(map_order, p, o):
                map_release_range(st, split, ms, ss, map_pfn, map_order, defer, p, o, c, True, pc)
        if every > 0 and (i + 1) % every == 0:
            record_sample(st, samples, sample_pos, sample_n, i)
        if st.evlog_n[0] > evlog_limit:
            return i + 1
    return last
