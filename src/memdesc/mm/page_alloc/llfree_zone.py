"""Kernels of the ``llfree`` design (:mod:`memdesc.mm.page_alloc.llfree`, whose theory
statement this module implements): the zone layer over one LLFree instance per zone
(:mod:`memdesc.lib._llfree_kernels`), the pcp lists threaded through the page words,
exact placement, the buddyinfo view of the bitfields and the invariant check.

Every function runs as plain Python too (``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.lib import _llfree_kernels as K
from memdesc.mm import gfp as G
from memdesc.mm import memmap as mmap
from memdesc.mm.memblock import block_order
from memdesc.mm.mmzone import MAX_PAGE_ORDER, MIGRATE_PCPTYPES, MIGRATE_TYPES, NR_PAGE_ORDERS
from memdesc.mm.page_alloc import core

# ------------------------------------------------------------------ the page word
LT_FREE, LT_RESERVED, LT_HOLE, LT_ALLOC, LT_TAIL, LT_PCP, LT_TYPED = range(7)
LT_NAMES = ("free", "reserved", "hole", "allocated", "tail", "pcp", "typed")
ZONE_MASK = K._i64(((1 << 13) - 1) << 51)  # node and zone (memmap.ZONES_PGSHIFT..63)
DESC_MASK = (1 << 43) - 1  # typed head: descriptor address / 8 + 1 in bits 8-50
M30 = (1 << 30) - 1
NEXT_MASK = np.int64(M30 << 4)
PREV_MASK = K._i64(M30 << 34)
MAX_PFNS = M30 - 1  # pcp links keep pfn + 1 in 30 bits
LM_CPU, LM_ERR, NR_LM = 0, 1, 4  # llm[]: the freeing CPU (-1: none), failed llfree puts (a bug if != 0)
CLS_IMMOVABLE, CLS_MOVABLE, CLS_HUGE = 0, 1, 2


# ------------------------------------------------------------------ helpers
@njit(inline="always")
def zone_bits(st, z):
    return (st.z_node[z] << mmap.NODES_PGSHIFT) | (st.z_idx[z] << mmap.ZONES_PGSHIFT)


@njit(inline="always")
def zw(st, z):
    """Zone z's LLFree state array (a view of ``ll``)."""
    return st.ll[st.llz[z, 0]:st.llz[z, 0] + st.llz[z, 1]]


@njit(inline="always")
def ll_class(order, mt):
    """``llfree_movable_request``'s class: huge for orders >= 9, else by movability."""
    if order >= K.HUGE_ORDER:
        return CLS_HUGE
    return CLS_MOVABLE if mt == core.MT_MOVABLE else CLS_IMMOVABLE


@njit(inline="always")
def child_entry(w, c):
    return w[w[K.M_CHILDREN] + c]


@njit(inline="always")
def size_class(e):
    """The nr_free class of a child entry: floor(log2(free)), 9 when entirely free, -1 none."""
    f = e & 0x7FFF
    if (e >> 15) & 1 or f == 0:
        return -1
    if f >= K.CHILD_SIZE:
        return K.HUGE_ORDER
    k = 0
    while (f >> (k + 1)) != 0:
        k += 1
    return k


@njit
def _contrib(st, z, w, c0, n, sign):
    """Add ``sign`` x the nr_free contribution of children c0..c0+n-1 and of their pairs."""
    for c in range(c0, c0 + n):
        k = size_class(child_entry(w, c))
        if k >= 0:
            st.nr_free[z, k] += sign
    for p in range(c0 >> 1, ((c0 + n - 1) >> 1) + 1):
        if 2 * p + 1 < w[K.M_NCHILD] and (child_entry(w, 2 * p) & 0xFFFF) == K.CHILD_SIZE \
                and (child_entry(w, 2 * p + 1) & 0xFFFF) == K.CHILD_SIZE:
            st.nr_free[z, MAX_PAGE_ORDER] += sign


@njit(inline="always")
def _nchildren(order):
    return np.int64(1) << max(order - K.HUGE_ORDER, 0)


@njit
def _after_get(st, z, w, f, order):
    """nr_free after a get of 2^order frames at f: the children held ``2^order`` more free
    frames before (or were entirely free, for orders >= 9)."""
    c0 = f >> K.CHILD_ORDER
    n = _nchildren(order)
    ci = w[K.M_CHILDREN] + c0
    if order < K.HUGE_ORDER:
        new = w[ci]
        w[ci] = new + (np.int64(1) << order)
        _contrib(st, z, w, c0, 1, -1)
        w[ci] = new
    else:
        for j in range(n):
            w[ci + j] = K.CHILD_SIZE
        _contrib(st, z, w, c0, n, -1)
        for j in range(n):
            w[ci + j] = np.int64(1) << 15
    _contrib(st, z, w, c0, n, 1)


@njit
def _put(st, z, w, f, order, local):
    """Free 2^order allocated frames at f through llfree_put; a block of order >= 9 whose
    children are not huge goes back half a child at a time.  Keeps nr_free."""
    c0 = f >> K.CHILD_ORDER
    n = _nchildren(order)
    cls = K.tree_class(w[K.tw(w, f >> K.TREE_ORDER)])
    _contrib(st, z, w, c0, n, -1)
    if order < K.HUGE_ORDER:
        r = K.llfree_put(w, f, order, cls, local)
    else:
        r = 0
        for c in range(c0, c0 + n):
            if (child_entry(w, c) >> 15) & 1:
                r |= K.llfree_put(w, c << K.CHILD_ORDER, K.HUGE_ORDER, cls, local)
            else:
                for h in range(2):
                    r |= K.llfree_put(w, (c << K.CHILD_ORDER) + h * (K.CHILD_SIZE >> 1), K.HUGE_ORDER - 1, cls, local)
    _contrib(st, z, w, c0, n, 1)
    if r != 0:
        st.llm[LM_ERR] += 1
    return r


# ------------------------------------------------------------------ the zone layer
@njit
def ll_pool_prepare(st, z, order):
    """Nothing to reserve: LLFree's metadata is fixed at boot."""
    return np.int64(core.OK)


@njit
def ll_pool_rmqueue(st, z, order, mt, alloc_flags, mode, cpu):
    """llfree_get from the CPU's reservation of the request's class, with llfree-c's
    fallbacks; (pfn, mode), pfn -1 when LLFree has nothing."""
    w = zw(st, z)
    cls = ll_class(order, mt)
    r = K.llfree_get(w, -1, order, cls, cpu)
    if r < 0:
        return np.int64(-1), mode
    f = r >> 3
    _after_get(st, z, w, f, order)
    pfn = st.llz[z, 2] + f
    if (r & 7) == cls and mt < MIGRATE_PCPTYPES:
        # served in a tree of the request's class (Match or Demote, not Steal): the pageblocks
        # take the request's type, so frees go to its pcp list as after a claim in Linux
        for k in range(_nchildren(order)):
            q = pfn + (k << K.CHILD_ORDER)
            if core.get_pfnblock_migratetype(st, q) < MIGRATE_PCPTYPES:
                core.set_pageblock_migratetype(st, q, mt)
    core.account_freepages(st, z, -(np.int64(1) << order), core.get_pfnblock_migratetype(st, pfn))
    return pfn, mode


@njit
def ll_pool_none(st, z, order, mt, cpu):
    """pool_rmqueue_smallest: no highatomic reserves in LLFree."""
    return np.int64(-1)


@njit
def ll_pool_free(st, z, pfn, order, fpi):
    """llfree_put by the freeing CPU (llm[LM_CPU], -1: into the tree's counter)."""
    st.pages[pfn] = zone_bits(st, z)
    _put(st, z, zw(st, z), pfn - st.llz[z, 2], order, st.llm[LM_CPU])
    core.account_freepages(st, z, np.int64(1) << order, core.get_pfnblock_migratetype(st, pfn))


@njit
def ll_first_free(st, z, order, mt):
    """pool_first_free: a free aligned 2^order block in a child of size class ``order`` (an
    entirely free child for 9, pair for 10), or -1.  Classes are per tree, not per
    pageblock type: every mergeable type gets the same answer."""
    if mt >= MIGRATE_PCPTYPES or st.nr_free[z, order] == 0:
        return np.int64(-1)
    w = zw(st, z)
    base = st.llz[z, 2]
    for c in range(w[K.M_NCHILD]):
        e = child_entry(w, c)
        if order == MAX_PAGE_ORDER:
            if (c & 1) == 0 and c + 1 < w[K.M_NCHILD] and (e & 0xFFFF) == K.CHILD_SIZE \
                    and (child_entry(w, c + 1) & 0xFFFF) == K.CHILD_SIZE:
                return base + (c << K.CHILD_ORDER)
        elif size_class(e) == order:
            if order == K.HUGE_ORDER:
                return base + (c << K.CHILD_ORDER)
            for f in range(c << K.CHILD_ORDER, (c + 1) << K.CHILD_ORDER, 1 << order):
                if K.lower_is_free(w, f, order):
                    return base + f
    return np.int64(-1)


@njit
def ll_cannot_move(st, z, pfn, old_mt, new_mt):
    """pool_move_freepages_block: LLFree classes trees, not pageblocks (-1: nothing moved)."""
    return np.int64(-1)


@njit
def ll_cannot_retype(st, z, pfn, order, old_mt, new_mt):
    return False


@njit(inline="always")
def _pcp_row(st, cpu, z, pindex):
    return (cpu * st.z_start.shape[0] + z) * core.NR_PCP_LISTS + pindex


@njit(inline="always")
def _set_next(st, p, nxt):
    st.pages[p] = (st.pages[p] & ~NEXT_MASK) | (nxt << 4)


@njit(inline="always")
def _set_prev(st, p, prv):
    st.pages[p] = (st.pages[p] & ~PREV_MASK) | (prv << 34)


@njit
def ll_pcp_add(st, cpu, z, pindex, pfn, tail):
    """list_add / list_add_tail of pfn to a pcp list threaded through the page words."""
    i = _pcp_row(st, cpu, z, pindex)
    h = st.pcph[i, 0]
    t = st.pcph[i, 1]
    if h == 0:
        st.pages[pfn] = LT_PCP
        st.pcph[i, 0] = pfn + 1
        st.pcph[i, 1] = pfn + 1
    elif tail:
        st.pages[pfn] = LT_PCP | (t << 34)
        _set_next(st, t - 1, pfn + 1)
        st.pcph[i, 1] = pfn + 1
    else:
        st.pages[pfn] = LT_PCP | (h << 4)
        _set_prev(st, h - 1, pfn + 1)
        st.pcph[i, 0] = pfn + 1


@njit
def ll_pcp_unlink(st, cpu, z, pindex, pfn):
    """list_del of a pcp page; its word goes back to bare (zone and node)."""
    i = _pcp_row(st, cpu, z, pindex)
    wd = st.pages[pfn]
    nxt = (wd >> 4) & M30
    prv = (wd >> 34) & M30
    if prv != 0:
        _set_next(st, prv - 1, nxt)
    else:
        st.pcph[i, 0] = nxt
    if nxt != 0:
        _set_prev(st, nxt - 1, prv)
    else:
        st.pcph[i, 1] = prv
    st.pages[pfn] = zone_bits(st, z)


@njit
def ll_pcp_pop(st, cpu, z, pindex, tail):
    e = st.pcph[_pcp_row(st, cpu, z, pindex), 1 if tail else 0]
    if e == 0:
        return np.int64(-1)
    ll_pcp_unlink(st, cpu, z, pindex, e - 1)
    return e - 1


@njit
def ll_mark_allocated(st, pfn, order, gfp):
    """prep_new_page: the head keeps order and migratetype, tails their head's pfn."""
    zb = zone_bits(st, core.page_zone(st, pfn))
    st.pages[pfn] = zb | LT_ALLOC | (order << 4) | (np.int64(G.gfp_migratetype_nb(gfp) & 7) << 10)
    for q in range(pfn + 1, pfn + (np.int64(1) << order)):
        st.pages[q] = zb | LT_TAIL | (pfn << 4)


@njit
def ll_mark_freed(st, pfn, order):
    """free_pages_prepare: the words back to bare (the free state is the bitfield's)."""
    zb = zone_bits(st, core.page_zone(st, pfn))
    for q in range(pfn, pfn + (np.int64(1) << order)):
        st.pages[q] = zb


@njit
def ll_free_extent(st, pfn):
    """The largest free aligned block (<= MAX_PAGE_ORDER) holding pfn, by LLFree's bits."""
    z = core.page_zone(st, pfn)
    if z < 0 or st.llz[z, 1] == 0:
        return np.int64(-1), np.int64(-1)
    w = zw(st, z)
    base = st.llz[z, 2]
    f = pfn - base
    if f < 0 or f >= w[K.M_FRAMES] or not K.lower_is_free(w, f, 0):
        return np.int64(-1), np.int64(-1)
    o = 0
    while o < MAX_PAGE_ORDER:
        h = f & ~((np.int64(2) << o) - 1)
        if h + (np.int64(2) << o) > w[K.M_FRAMES] or not K.lower_is_free(w, h, o + 1):
            break
        o += 1
    s = base + (f & ~((np.int64(1) << o) - 1))
    return s, s + (np.int64(1) << o)


# ------------------------------------------------------------------ the interface
@njit
def ll_pa_free(st, pfn, order, cpu):
    """free_pages(): checked, then core's free path with ``cpu`` as the putting CPU."""
    rc = core.check_free(st, pfn, order)
    if rc == core.OK:
        st.llm[LM_CPU] = cpu
        core.__free_pages(st, pfn, order, cpu)
        st.llm[LM_CPU] = -1
    return rc


@njit
def ll_pa_drain(st):
    """drain_all_pages(), then every CPU reservation back to its tree (llfree_drain)."""
    core.drain_all_pages(st)
    for z in range(st.z_start.shape[0]):
        if st.llz[z, 1] > 0:
            K.llfree_drain(zw(st, z))


@njit
def ll_take(st, pfn, order):
    """take_page_off_buddy(): exactly these free frames out of LLFree (llfree_take), to no state."""
    z = core.page_zone(st, pfn)
    if z < 0 or st.llz[z, 1] == 0:
        return np.int64(core.E_BUSY)
    w = zw(st, z)
    f = pfn - st.llz[z, 2]
    if f < 0 or f + (np.int64(1) << order) > w[K.M_FRAMES]:
        return np.int64(core.E_BUSY)
    c0 = f >> K.CHILD_ORDER
    _contrib(st, z, w, c0, _nchildren(order), -1)
    r = K.llfree_take(w, f, order)
    _contrib(st, z, w, c0, _nchildren(order), 1)
    if r != 0:
        return np.int64(core.E_BUSY)
    core.account_freepages(st, z, -(np.int64(1) << order), core.get_pfnblock_migratetype(st, pfn))
    st.stats[core.ST_TAKE] += 1
    return np.int64(core.OK)


# ------------------------------------------------------------------ compaction's free scanner
@njit
def ll_free_block(st, pfn):
    """pa_free_block(): the largest aligned block (<= MAX_PAGE_ORDER) that starts at pfn with
    every frame free in LLFree (frames in a CPU's tree reservation are free; pcp pages are
    allocated in LLFree), or -1.  Scanning up from a pfn that is not free, the first free
    frame starts such a block, as the head of a buddy block does."""
    z = core.page_zone(st, pfn)
    if z < 0 or st.llz[z, 1] == 0:
        return np.int64(-1)
    w = zw(st, z)
    f = pfn - st.llz[z, 2]
    if f < 0 or f >= w[K.M_FRAMES] or not K.lower_is_free(w, f, 0):
        return np.int64(-1)
    o = np.int64(0)
    while o < MAX_PAGE_ORDER and (f & ((np.int64(2) << o) - 1)) == 0 \
            and f + (np.int64(2) << o) <= w[K.M_FRAMES] and K.lower_is_free(w, f, o + 1):
        o += 1
    return o


@njit
def ll_isolate_free(st, pfn, order):
    """pa_isolate_free(): __isolate_free_page() + post_alloc_hook(): exactly these free frames
    out of LLFree (llfree_take, whatever reservation or tree counter holds them), then an
    allocation head of a movable allocation."""
    if ll_take(st, pfn, order) != core.OK:
        return np.int64(core.E_BUSY)
    ll_mark_allocated(st, pfn, order, G.__GFP_MOVABLE)
    st.owner[pfn] = core.owner_encode(order, core.MT_MOVABLE)
    return np.int64(core.OK)


# ------------------------------------------------------------------ exact placement
@njit
def ll_free_range(st, start, end, fpi):
    """Pages [start, end) in no state back to LLFree in aligned blocks (global puts)."""
    p = np.int64(start)
    while p < end:
        o = block_order(p, end, MAX_PAGE_ORDER)
        z = core.page_zone(st, p)
        st.pages[p] = zone_bits(st, z)
        if _put(st, z, zw(st, z), p - st.llz[z, 2], o, -1) != 0:
            return np.int64(core.E_BUSY)
        core.account_freepages(st, z, np.int64(1) << o, core.get_pfnblock_migratetype(st, p))
        p += np.int64(1) << o
    return np.int64(0)


@njit
def ll_set_pageblock_type(st, z, pfn, old_mt, new_mt):
    """A pageblock (one child) takes new_mt; its free frames change account."""
    w = zw(st, z)
    e = child_entry(w, (pfn - st.llz[z, 2]) >> K.CHILD_ORDER)
    n = np.int64(0) if (e >> 15) & 1 else e & 0x7FFF
    core.account_freepages(st, z, -n, old_mt)
    core.account_freepages(st, z, n, new_mt)
    core.set_pageblock_migratetype(st, pfn, new_mt)
    return n


@njit
def ll_online_range(st, start, end):
    """accept_page() / __free_pages_core(): reserved frames (allocated bits) join LLFree free."""
    for q in range(start, end):
        st.pages[q] = zone_bits(st, core.page_zone(st, q))
    return ll_free_range(st, start, end, core.FPI_TO_TAIL)


# ------------------------------------------------------------------ views and the check
@njit
def _emit(st, out, counts, n, z, s, e):
    """The free run [s, e) as the aligned blocks a buddy allocator would hold (block_order)."""
    p = s
    while p < e:
        o = block_order(p, e, MAX_PAGE_ORDER)
        row = (p, o, core.get_pfnblock_migratetype(st, p), z)
        counts[z, row[2], o] += 1
        if n < out.shape[0]:
            for k in range(4):
                out[n, k] = row[k]
        n += 1
        p += np.int64(1) << o
    return n


@njit
def ll_free_blocks(st, out, counts):
    """Maximal free runs from the bitfields, as the aligned blocks buddyinfo counts: rows
    (pfn, order, migratetype, zone) into ``out`` while it has room, and counts[z, mt, order]."""
    n = 0
    for z in range(st.z_start.shape[0]):
        n = _zone_free_blocks(st, z, out, counts, n)
    return n


@njit
def ll_zone_free_area(st, z):
    """pa_zone_free_area(): zone z's free blocks per order as buddyinfo counts them (a scan of
    the bitfields: nr_free holds LLFree's child size classes, not blocks)."""
    counts = np.zeros((st.z_start.shape[0], MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
    _zone_free_blocks(st, z, np.zeros((0, 4), np.int64), counts, 0)
    return core.free_area_of(counts, z)


@njit
def _zone_free_blocks(st, z, out, counts, n):
    """ll_free_blocks() of zone z, rows from index n on; returns the new n."""
    if st.llz[z, 1] != 0:
        w = zw(st, z)
        base = st.llz[z, 2]
        run = np.int64(-1)
        for c in range(w[K.M_NCHILD]):
            e = child_entry(w, c)
            f0 = np.int64(c) << K.CHILD_ORDER
            if (e & 0xFFFF) == K.CHILD_SIZE:
                if run < 0:
                    run = f0
                continue
            for r in range(K.FIELD_N):
                row = np.int64(-1) if (e >> 15) & 1 else w[w[K.M_FIELDS] + c * K.FIELD_N + r]
                fr = f0 + r * 64
                if row == -1 or row == 0:
                    if row == -1 and run >= 0:
                        n = _emit(st, out, counts, n, z, base + run, base + fr)
                        run = -1
                    elif row == 0 and run < 0:
                        run = fr
                    continue
                for b in range(64):
                    if (row >> b) & 1:
                        if run >= 0:
                            n = _emit(st, out, counts, n, z, base + run, base + fr + b)
                            run = -1
                    elif run < 0:
                        run = fr + b
        if run >= 0:
            n = _emit(st, out, counts, n, z, base + run, base + w[K.M_FRAMES])
    return n


(LC_OK, LC_LLFREE, LC_ZONE_FREE, LC_NR_FREE, LC_FREE_STATE, LC_ALLOC, LC_PCP, LC_PCP_COUNT, LC_LOST, LC_PUT,
 LC_RESERVED) = range(11)
LCHECK_MESSAGES = {
    LC_LLFREE: "zone {a}: llfree: {msg} (index {b})",
    LC_ZONE_FREE: "zone {a}: NR_FREE_PAGES (or its CMA/highatomic part) {b} differs from LLFree's free frames {c}",
    LC_NR_FREE: "zone {a} class {b}: nr_free differs from the recount of the child counters ({c})",
    LC_FREE_STATE: "page {b:#x} is free in LLFree but has owner {c:#x} or a word that is not bare",
    LC_ALLOC: "allocation at {b:#x}: page {c:#x} is free in LLFree or its word is not head/tail",
    LC_PCP: "pcp list {a}: page {b:#x} is not an allocated pcp page of the list ({c})",
    LC_PCP_COUNT: "cpu {a} zone {b}: pcp count differs from the pages on its lists ({c})",
    LC_LOST: "page {b:#x} of zone {a} is allocated in LLFree but in no state (not allocated, pcp, reserved)",
    LC_PUT: "{b} llfree puts failed (a bug of the design)",
    LC_RESERVED: "reserved page {b:#x} is free in LLFree or its word is not reserved/hole",
}


@njit
def ll_check(st):
    """Full invariant check: (code, a, b, c), code LC_OK when consistent."""
    if st.llm[LM_ERR] != 0:
        return LC_PUT, 0, st.llm[LM_ERR], 0
    nz = st.z_start.shape[0]
    npages = st.pages.shape[0]
    cover = np.zeros(npages, np.uint8)
    cnt = np.zeros(NR_PAGE_ORDERS, np.int64)
    for z in range(nz):
        if st.llz[z, 1] == 0:
            continue
        w = zw(st, z)
        code, idx = K.llfree_validate(w)
        if code != 0:
            return LC_LLFREE, z, idx, code
        base = st.llz[z, 2]
        free = np.zeros(3, np.int64)  # NR_FREE_PAGES, CMA, highatomic
        cnt[:] = 0
        for c in range(w[K.M_NCHILD]):
            e = child_entry(w, c)
            k = size_class(e)
            if k >= 0:
                cnt[k] += 1
            if (c & 1) == 0 and c + 1 < w[K.M_NCHILD] and (e & 0xFFFF) == K.CHILD_SIZE \
                    and (child_entry(w, c + 1) & 0xFFFF) == K.CHILD_SIZE:
                cnt[MAX_PAGE_ORDER] += 1
            p = base + (np.int64(c) << K.CHILD_ORDER)
            if 0 <= p < npages and e >> 15 == 0:
                mt = core.get_pfnblock_migratetype(st, p)
                if mt != core.MT_ISOLATE:
                    free[0] += e & 0x7FFF
                if mt == core.MT_CMA:
                    free[1] += e & 0x7FFF
                elif mt == core.MT_HIGHATOMIC:
                    free[2] += e & 0x7FFF
        for o in range(NR_PAGE_ORDERS):
            if cnt[o] != st.nr_free[z, o]:
                return LC_NR_FREE, z, o, cnt[o]
        if free[0] != st.z_free[z] or free[1] != st.z_free_cma[z] or free[2] != st.z_free_highatomic[z]:
            return LC_ZONE_FREE, z, st.z_free[z], free[0]
        zb = zone_bits(st, z)
        for p in range(st.z_start[z], st.z_end[z]):
            f = p - base
            v = st.owner[p]
            if K.lower_is_free(w, f, 0):
                if v != core.OWNER_NONE or st.pages[p] != zb:
                    return LC_FREE_STATE, z, p, v
                cover[p] = 1
            elif v == core.OWNER_RESERVED:
                if (st.pages[p] & 0xF) != LT_RESERVED and (st.pages[p] & 0xF) != LT_HOLE:
                    return LC_RESERVED, z, p, 0
                cover[p] = 1
            elif v != core.OWNER_NONE and v != core.OWNER_PCP:
                o = core.owner_order(v)
                for q in range(p, p + (np.int64(1) << o)):
                    t = st.pages[q] & 0xF
                    want = LT_TAIL if q > p else (t if t == LT_TYPED else LT_ALLOC)
                    if q >= npages or K.lower_is_free(w, q - base, 0) or t != want:
                        return LC_ALLOC, z, p, q
                    cover[q] = 1
    ncpu = st.pcp.shape[0]
    for cpu in range(ncpu):
        for z in range(nz):
            pages = 0
            for pi in range(core.NR_PCP_LISTS):
                i = _pcp_row(st, cpu, z, pi)
                e = st.pcph[i, 0]
                seen = 0
                while e != 0:
                    p = e - 1
                    seen += 1
                    o = core.pindex_to_order(pi)
                    if st.owner[p] != core.OWNER_PCP or (st.pages[p] & 0xF) != LT_PCP or core.page_zone(st, p) != z \
                            or seen > npages or K.lower_is_free(zw(st, z), p - st.llz[z, 2], 0):
                        return LC_PCP, i, p, o
                    for q in range(p, p + (np.int64(1) << o)):
                        cover[q] = 1
                    pages += np.int64(1) << o
                    e = (st.pages[p] >> 4) & M30
            if pages != st.pcp[cpu, z, core.PCP_COUNT]:
                return LC_PCP_COUNT, cpu, z, pages
    for z in range(nz):
        lost = np.flatnonzero(cover[st.z_start[z]:st.z_end[z]] == 0)
        if lost.shape[0] > 0:
            return LC_LOST, z, st.z_start[z] + lost[0], 0
    return LC_OK, 0, 0, 0


@njit
def ll_init_words(st, reserved, holes, alloc_pfn, alloc_order, alloc_gfp, alloc_mt, pcp_pfn, pcp_cpu):
    """Boot / snapshot: page words and owner bytes of reserved pages, holes, allocations
    and pcp pages (linked at the tails of their lists); nr_free from the child counters."""
    for z in range(st.z_start.shape[0]):
        zb = zone_bits(st, z)
        for p in range(st.z_start[z], st.z_end[z]):
            st.pages[p] = zb
        if st.llz[z, 1] > 0:
            w = zw(st, z)
            _contrib(st, z, w, 0, w[K.M_NCHILD], 1)
    for i in range(reserved.shape[0]):
        p = reserved[i]
        st.owner[p] = core.OWNER_RESERVED
        st.pages[p] = (st.pages[p] & ~np.int64(0xF)) | (LT_HOLE if holes[i] else LT_RESERVED)
    for i in range(alloc_pfn.shape[0]):
        ll_mark_allocated(st, alloc_pfn[i], alloc_order[i], alloc_gfp[i])
        st.owner[alloc_pfn[i]] = core.owner_encode(alloc_order[i], alloc_mt[i])
    for i in range(pcp_pfn.shape[0]):
        p = pcp_pfn[i]
        z = core.page_zone(st, p)
        mt = core.get_pfnblock_migratetype(st, p)
        if mt >= MIGRATE_PCPTYPES:
            mt = core.MT_MOVABLE
        ll_pcp_add(st, pcp_cpu[i], z, core.order_to_pindex(mt, 0), p, True)
        st.owner[p] = core.OWNER_PCP
        st.pcp[pcp_cpu[i], z, core.PCP_COUNT] += 1


# ------------------------------------------------------------------ typed memory (memory descriptors)
@njit
def ll_set_memdesc(st, pfn, order, mdtype, desc):
    """The head word becomes the page's memdesc: LT_TYPED, the memdesc type (bits 4-7) and
    the descriptor's address / 8 + 1 (bits 8-50; 0: none); tails keep the head pfn (two
    hops, as radix).  The cookie is the allocation's word, which pa_clear_memdesc puts back."""
    old = st.pages[pfn]
    d = (desc >> 3) + 1 if desc >= 0 else np.int64(0)
    st.pages[pfn] = (old & ZONE_MASK) | LT_TYPED | ((np.int64(mdtype) & 0xF) << 4) | ((d & DESC_MASK) << 8)
    return old


@njit
def ll_clear_memdesc(st, pfn, order, cookie):
    st.pages[pfn] = cookie


@njit
def ll_page_memdesc(st, pfn):
    w = st.pages[pfn]
    if (w & 0xF) == LT_TAIL:
        w = st.pages[(w >> 4) & M30]
    if (w & 0xF) != LT_TYPED:
        return np.int64(-1), np.int64(-1)
    d = (w >> 8) & DESC_MASK
    return (w >> 4) & 0xF, ((d - 1) << 3) if d > 0 else np.int64(-1)

