"""Segment arenas over one pool of ``struct buddy`` descriptors: the kernels of the ``vmem`` design.

Theory
------
Free memory is a set of *segments* (runs of pfns), managed the way Bonwick's vmem
manages an arena (see :mod:`memdesc.lib.vmem`): every segment, free or allocated, is
described by an external *boundary tag* -- here the ``struct buddy`` descriptor of
Matthew Wilcox's memdesc plan -- and each arena keeps its free segments on
power-of-two freelists (``freelist[c]`` holds sizes in ``[2**c, 2**(c+1))``) with a
bitmap of the non-empty lists, so *instant fit* is one ``lowbit``.  What differs from
the general arena of :mod:`memdesc.lib._vmem_kernels`, and why:

* **The memdesc replaces the arena list and the hash.**  Every page has a one-word
  memdesc (4-bit type, 60-bit payload).  The first and the last page of a free segment
  hold ``MD_FREE | descriptor``; the pages inside it hold ``MD_FREE`` with a null
  payload; every page of an allocation holds ``MD_BUDDY_ALLOC | descriptor``.  A free
  finds its descriptor from the freed pfn's memdesc (vmem's allocated-segment hash) and
  its neighbours from the memdescs of ``pfn - 1`` and ``pfn + size`` (vmem's
  address-ordered arena list), so a descriptor needs no address links: it is four
  words, **32 bytes** (``start``; ``size``, type and arena packed in one word; the
  freelist/pcp ``list_head``), 16-byte aligned, 128 to a 4 KiB page.
* **Many arenas, one descriptor cache.**  Per zone there is a *zone arena* of whole
  free pageblocks and one arena per migratetype whose segments each lie inside one
  pageblock (a pageblock imported into the arena is vmem's imported span; a pageblock
  that becomes entirely free in a mergeable type's arena is released back to the zone
  arena, where it coalesces).  All arenas draw descriptors from one pool, carved from
  *descriptor pages* taken from directly-mapped zones (never HighMem), exactly as
  illumos' ``vmem_populate()`` carves ``vmem_seg_t``'s out of pages from
  ``vmem_seg_arena`` and never gives those pages back.
* **Per-CPU lists: a magazine, then descriptors.**  A page cached on a per-CPU list stays
  an allocated segment.  The head of ``pcp->lists[pindex]`` is a *magazine* (Bonwick &
  Adams' per-CPU layer, the other half of the vmem paper): up to ``MAG_ROUNDS`` (15)
  pfns in a 128-byte array; beyond it the list continues through the descriptors'
  ``list_head``.  A free to the pcp list pushes a round and never touches the allocation's
  descriptor -- which for a page freed long after its allocation is a cache miss, the one
  the real design would pay on every free if the list were linked through descriptors
  only -- and an allocation from the list pops a round.  A full magazine spills its oldest
  round onto the linked part; the order of the list is exactly Linux's (head = newest),
  so the design makes the same choices as with descriptor links alone.

Descriptors and the "never allocate when freeing" rule
------------------------------------------------------
Descriptors come only from a free stack (``desc[:nfree, D_STACK]``, SLUB's free
pointer).  Every allocation-path operation first *reserves* its worst case
(:func:`desc_reserve`): ``VMEM_SEGS_PER_ALLOC_MAX`` = 4 (a pageblock import needs at
most 2 -- the imported pageblock's segment and a zone-arena remainder, vmem's span
create -- and carving the allocation from the middle of a segment 2 -- the
allocation's descriptor and the second remainder), plus ``DESC_POPULATE_RESERVE`` = 2
kept back for the next :func:`desc_populate`, whose own page may need a pageblock
import.  Populating takes the *first* page of a free segment (0 new descriptors) and
pushes 128 descriptors, so the recursion is bounded: depth 1, at most 2 descriptors,
always available.  If the reservation fails (no page for descriptors, or an injected
fault), the operation fails *before changing anything*.  A free converts the
allocation's descriptor into the free segment's and coalescing only *releases*
descriptors; nothing on the free path calls :func:`desc_get` -- and if anything did, the
``free_path_allocations`` counter would say so (``vm[V_IN_FREE]`` marks the free path).

All kernels are plain Python on numpy arrays too (``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.lib._vmem_kernels import VMEM_ALLOC, VMEM_FREE, VMEM_MARKER, highbit, lowbit, vmem_fit
from memdesc.mm.memmap import MD_BUDDY_ALLOC, MD_FREE, MD_SLAB, MD_TYPE_MASK
from memdesc.mm.mmzone import MAX_PAGE_ORDER, MIGRATE_PCPTYPES, MIGRATE_TYPES, PAGE_SIZE, PAGEBLOCK_NR_PAGES
from memdesc.mm.page_alloc import core

# ------------------------------------------------------------------ layout
#: descriptor pool columns: one row per descriptor (the model's 32-byte struct buddy)
D_START, D_SIZE, D_TYPE, D_ARENA, D_KNEXT, D_KPREV, D_STACK, D_SPARE = range(8)
NDCOLS = 8
#: an allocated segment on the linked part of a per-CPU list (D_TYPE = VMEM_ALLOC | DT_PCP)
DT_PCP = 0x40
#: rounds in a per-CPU list's magazine (row of MAG_ROUNDS + 1 words: 128 bytes)
MAG_ROUNDS = 15
#: the modelled descriptor: start, size|type|arena, list_head
DESC_BYTES = 32
DESC_PER_PAGE = PAGE_SIZE // DESC_BYTES

#: arenas per zone: one per migratetype, then the zone arena of whole free pageblocks
NR_ARENAS_PER_ZONE = MIGRATE_TYPES + 1
A_ZONE = MIGRATE_TYPES
#: freelist classes per arena (segments up to 2**48 pages)
NCLASS = 48

#: tag budget (illumos vmem.c names): import = span create, then a middle allocation
VMEM_SEGS_PER_IMPORT = 2
VMEM_SEGS_PER_MIDDLE_ALLOC = 2
VMEM_SEGS_PER_ALLOC_MAX = VMEM_SEGS_PER_IMPORT + VMEM_SEGS_PER_MIDDLE_ALLOC
#: kept back for desc_populate's own pageblock import (illumos VMEM_POPULATE_RESERVE)
DESC_POPULATE_RESERVE = 2
DESC_MINFREE = VMEM_SEGS_PER_ALLOC_MAX + DESC_POPULATE_RESERVE

# vm[] slots: descriptor cache and fault injection
(V_NFREE, V_NDPAGES, V_INUSE, V_IN_FREE, V_FAIL_THRESH, V_DESC_ALLOCS, V_DESC_FREES, V_POPULATE,
 V_POPULATE_FAIL, V_INJECTED, V_HEADS, V_PCP_HEAD0, V_MAXDP, V_RESERVE_CALLS, V_FREE_PATH_PAGES, V_XP_SPLIT,
 V_XP_FIXUP) = range(17)
NR_V = 18
VM_NAMES = ("descriptors_free", "descriptor_pages", "descriptors_inuse", "free_path_depth",
            "fail_threshold", "descriptor_allocs", "descriptor_frees", "populate", "populate_failed",
            "injected_failures", "heads", "pcp_head0", "max_descriptor_pages", "reserve_calls",
            "free_path_page_allocs", "split_page_descriptors", "replay_fixup_descriptors")

MD_FREE_INTERIOR = np.uint64(MD_FREE)
PB_MASK = PAGEBLOCK_NR_PAGES - 1


# ------------------------------------------------------------------ small helpers
@njit(inline="always")
def arena_id(z, k):
    return z * NR_ARENAS_PER_ZONE + k


@njit(inline="always")
def fl_head(a, c):
    """Row of arena a's freelist[c] head (sentinel)."""
    return a * NCLASS + c


@njit(inline="always")
def md_word(typ, t):
    return np.uint64(typ | (t << 4))


@njit(inline="always")
def md_type(st, pfn):
    return np.int64(st.memdesc[pfn]) & MD_TYPE_MASK


@njit(inline="always")
def md_tag(st, pfn):
    return np.int64(st.memdesc[pfn]) >> 4


@njit(inline="always")
def _kinsert(d, vprev, t):
    vnext = d[vprev, D_KNEXT]
    d[t, D_KNEXT] = vnext
    d[t, D_KPREV] = vprev
    d[vprev, D_KNEXT] = t
    d[vnext, D_KPREV] = t


@njit(inline="always")
def _kinsert_tail(d, head, t):
    _kinsert(d, d[head, D_KPREV], t)


@njit(inline="always")
def _kdelete(d, t):
    vprev = d[t, D_KPREV]
    vnext = d[t, D_KNEXT]
    d[vprev, D_KNEXT] = vnext
    d[vnext, D_KPREV] = vprev


@njit(inline="always")
def xorshift_draw(rng):
    """53 random bits (Marsaglia's xorshift64; no multiply, so no overflow without the JIT)."""
    x = rng[0]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    rng[0] = x
    return np.int64(x >> np.uint64(11))


# ------------------------------------------------------------------ descriptor cache
@njit(inline="always")
def desc_get(st):
    """Pop a descriptor (the caller reserved it).  Counted; counted again if on a free path."""
    vm = st.vm
    n = vm[V_NFREE] - 1
    vm[V_NFREE] = n
    vm[V_INUSE] += 1
    vm[V_DESC_ALLOCS] += 1
    if vm[V_IN_FREE] != 0:
        st.stats[core.ST_FREE_PATH_ALLOCS] += 1
    return st.desc[n, D_STACK]


@njit(inline="always")
def desc_put(st, t):
    vm = st.vm
    n = vm[V_NFREE]
    st.desc[n, D_STACK] = t
    st.desc[t, D_TYPE] = 0
    vm[V_NFREE] = n + 1
    vm[V_INUSE] -= 1
    vm[V_DESC_FREES] += 1


@njit
def desc_add_page(st, pfn):
    """Carve descriptor page pfn into DESC_PER_PAGE descriptors (vmem_populate's carving)."""
    vm = st.vm
    k = vm[V_NDPAGES]
    st.dpages[k] = pfn
    vm[V_NDPAGES] = k + 1
    st.memdesc[pfn] = md_word(MD_SLAB, k)
    st.owner[pfn] = core.owner_encode(0, core.MT_UNMOVABLE)
    base = vm[V_HEADS] + k * DESC_PER_PAGE
    n = vm[V_NFREE]
    d = st.desc
    for j in range(DESC_PER_PAGE - 1, -1, -1):  # lowest descriptor on top
        d[n, D_STACK] = base + j
        n += 1
    vm[V_NFREE] = n


@njit
def take_first_page(st, t):
    """Take the first page of free segment t (no new descriptor; t is released if it was one page)."""
    d = st.desc
    a = d[t, D_ARENA]
    pfn = d[t, D_START]
    size = d[t, D_SIZE]
    fl_delete(st, a, t)
    if size == 1:
        desc_put(st, t)
    else:
        d[t, D_START] = pfn + 1
        d[t, D_SIZE] = size - 1
        st.memdesc[pfn + 1] = md_word(MD_FREE, t)
        fl_insert(st, a, t)
    st.afree[a] -= 1
    return pfn


@njit
def _populate_from_zone(st, z):
    """A page for descriptors from zone z: unmovable arena, a pageblock import, then a steal."""
    for k in (core.MT_UNMOVABLE, A_ZONE, core.MT_RECLAIMABLE, core.MT_MOVABLE):
        a = arena_id(z, k)
        fm = st.freemap[a]
        if fm == 0:
            continue
        c = lowbit(fm) - 1
        t = st.desc[fl_head(a, c), D_KNEXT]
        if k == A_ZONE:
            t = import_pageblock(st, z, t, core.MT_UNMOVABLE)
            a = arena_id(z, core.MT_UNMOVABLE)
        pfn = take_first_page(st, t)
        core.account_freepages(st, z, -1, core.MT_UNMOVABLE if k == A_ZONE else k)
        return pfn
    return -1


@njit
def desc_populate(st, check_wmark):
    """Add one descriptor page from a directly-mapped zone (highest first); False if none.

    Needs at most DESC_POPULATE_RESERVE descriptors (a pageblock import), which the
    reservation rule keeps available.  With ``check_wmark`` the zone must stay above
    its min watermark less half (``__GFP_HIGH``: the allocator's own metadata).
    """
    vm = st.vm
    if vm[V_NDPAGES] >= st.dpages.shape[0] or vm[V_NFREE] < DESC_POPULATE_RESERVE:
        vm[V_POPULATE_FAIL] += 1
        return False
    if vm[V_IN_FREE] != 0:
        vm[V_FREE_PATH_PAGES] += 1
        st.stats[core.ST_FREE_PATH_ALLOCS] += 1
    nz = st.z_start.shape[0]
    for zi in range(nz):
        z = nz - 1 - zi
        if st.z_direct[z] == 0 or st.z_managed[z] == 0:
            continue
        if check_wmark:
            mn = st.wmark[z, 0]
            if st.z_free[z] - 1 <= mn - mn // 2:
                continue
        pfn = _populate_from_zone(st, z)
        if pfn >= 0:
            desc_add_page(st, pfn)
            vm[V_POPULATE] += 1
            return True
    vm[V_POPULATE_FAIL] += 1
    return False


@njit
def desc_reserve(st, need):
    """Reserve ``need`` descriptors for an allocation-path operation (reserve before mutate).

    Fails (False, nothing changed but possibly a new descriptor page) on an injected
    fault or when no descriptor page can be had.
    """
    vm = st.vm
    vm[V_RESERVE_CALLS] += 1
    th = vm[V_FAIL_THRESH]
    if th > 0 and xorshift_draw(st.rng) < th:
        vm[V_INJECTED] += 1
        return False
    while vm[V_NFREE] < need + DESC_POPULATE_RESERVE:
        if not desc_populate(st, True):
            return False
    return True


# ------------------------------------------------------------------ freelists
@njit(inline="always")
def fl_insert(st, a, t):
    """Put free segment t on arena a's freelist of its size class; nr_free[zone][min(class,
    MAX_PAGE_ORDER)] counts free segments per class (what the watermark test reads)."""
    c = highbit(st.desc[t, D_SIZE]) - 1
    st.freemap[a] |= np.int64(1) << c
    _kinsert(st.desc, fl_head(a, c), t)
    st.nr_free[a // NR_ARENAS_PER_ZONE, min(c, MAX_PAGE_ORDER)] += 1


@njit(inline="always")
def fl_delete(st, a, t):
    d = st.desc
    c = highbit(d[t, D_SIZE]) - 1
    if d[t, D_KNEXT] == d[t, D_KPREV]:  # both neighbours are the head: the list empties
        st.freemap[a] &= ~(np.int64(1) << c)
    _kdelete(d, t)
    st.nr_free[a // NR_ARENAS_PER_ZONE, min(c, MAX_PAGE_ORDER)] -= 1


@njit(inline="always")
def set_bounds(st, t):
    s = st.desc[t, D_START]
    w = md_word(MD_FREE, t)
    st.memdesc[s] = w
    st.memdesc[s + st.desc[t, D_SIZE] - 1] = w


@njit
def seg_create_free(st, a, start, size):
    """A new free segment in arena a (descriptor reserved by the caller; no coalescing)."""
    t = desc_get(st)
    seg_set_free(st, t, a, start, size)
    st.afree[a] += size
    return t


@njit
def seg_set_free(st, t, a, start, size):
    """Descriptor t describes the free segment [start, start+size) of arena a: fields,
    boundary memdescs, freelist."""
    d = st.desc
    d[t, D_START] = start
    d[t, D_SIZE] = size
    d[t, D_TYPE] = VMEM_FREE
    d[t, D_ARENA] = a
    set_bounds(st, t)
    fl_insert(st, a, t)


@njit
def mark_alloc_pages(st, t, start, size):
    w = md_word(MD_BUDDY_ALLOC, t)
    for p in range(start, start + size):
        st.memdesc[p] = w


@njit
def seg_alloc(st, t, addr, size):
    """Allocate [addr, addr+size) from free segment t; leftovers stay free.  Returns the
    allocation's descriptor (at most 2 new descriptors: reserved by the caller)."""
    d = st.desc
    a = d[t, D_ARENA]
    vs_start = d[t, D_START]
    vs_size = d[t, D_SIZE]
    vs_end = vs_start + vs_size
    left = addr - vs_start
    right = vs_end - addr - size
    st.afree[a] -= size
    if left == 0 and right == 0:
        fl_delete(st, a, t)
        n = t
    elif left == 0:
        # from the start; the remainder keeps t (and its freelist if the class is unchanged)
        if (vs_size ^ right) < (vs_size & right):
            d[t, D_START] = addr + size
            d[t, D_SIZE] = right
        else:
            fl_delete(st, a, t)
            d[t, D_START] = addr + size
            d[t, D_SIZE] = right
            fl_insert(st, a, t)
        st.memdesc[addr + size] = md_word(MD_FREE, t)
        n = desc_get(st)
    else:
        fl_delete(st, a, t)
        d[t, D_SIZE] = left
        st.memdesc[addr - 1] = md_word(MD_FREE, t)
        fl_insert(st, a, t)
        if right > 0:
            seg_set_free(st, desc_get(st), a, addr + size, right)
        n = desc_get(st)
    d[n, D_START] = addr
    d[n, D_SIZE] = size
    d[n, D_TYPE] = VMEM_ALLOC
    d[n, D_ARENA] = a
    mark_alloc_pages(st, n, addr, size)
    return n


@njit
def arena_fit(st, a, size, align):
    """Instant fit of an aligned request in arena a: ``(tag, addr)``, tag -1 if nothing fits.

    The head of freelist[highbit(size)-1] is tried first (an exact fit keeps larger
    segments whole, as the buddy allocator's smallest-order-first), then the first
    segment of the first larger non-empty list -- every member of a list above
    ``size + align - 1`` fits, so that is O(1) -- then the rest of the size's own list.
    """
    fm = st.freemap[a]
    if fm == 0:
        return -1, -1
    d = st.desc
    c0 = highbit(size) - 1
    if (fm >> c0) & 1:
        t = d[fl_head(a, c0), D_KNEXT]
        addr = vmem_fit(d[t, D_START], d[t, D_SIZE], size, align, 0, 0, 0, np.int64(1) << 62)
        if addr >= 0:
            return t, addr
    cfit = highbit(size + align - 2) if size + align - 1 > 1 else 0
    # every member of a list from cfit up fits: the first of the first non-empty one
    m = fm & -(np.int64(1) << cfit) if cfit < 63 else np.int64(0)
    if m != 0:
        c = lowbit(m) - 1
        t = d[fl_head(a, c), D_KNEXT]
        return t, vmem_fit(d[t, D_START], d[t, D_SIZE], size, align, 0, 0, 0, np.int64(1) << 62)
    # lists that only might fit: search them (NetBSD's retry of the skipped list)
    for c in range(c0, min(cfit, NCLASS)):
        if not (fm >> c) & 1:
            continue
        head = fl_head(a, c)
        t = d[head, D_KNEXT]
        while t != head:
            addr = vmem_fit(d[t, D_START], d[t, D_SIZE], size, align, 0, 0, 0, np.int64(1) << 62)
            if addr >= 0:
                return t, addr
            t = d[t, D_KNEXT]
    return -1, -1


# ------------------------------------------------------------------ free and coalesce
@njit
def seg_free_coalesce(st, t, a, zone_arena):
    """Turn descriptor t (pages already marked MD_FREE interior) into a free segment of
    arena a, coalescing with free neighbours of the same arena (within the pageblock for a
    migratetype arena).  Only releases descriptors.  Returns the resulting segment (not
    yet on a freelist)."""
    d = st.desc
    mm = st.memdesc
    start = d[t, D_START]
    size = d[t, D_SIZE]
    d[t, D_TYPE] = VMEM_FREE
    d[t, D_ARENA] = a
    mm[start] = MD_FREE_INTERIOR  # a released segment still has its bounds; set_bounds redoes them
    mm[start + size - 1] = MD_FREE_INTERIOR
    if start > 0 and (zone_arena or (start & PB_MASK) != 0):
        w = np.int64(mm[start - 1])
        lt = w >> 4
        if (w & MD_TYPE_MASK) == MD_FREE and lt != 0 and d[lt, D_ARENA] == a and d[lt, D_TYPE] == VMEM_FREE:
            fl_delete(st, a, lt)
            mm[start - 1] = MD_FREE_INTERIOR
            d[lt, D_SIZE] += size
            desc_put(st, t)
            t = lt
            start = d[t, D_START]
            size = d[t, D_SIZE]
    end = start + size
    if end < mm.shape[0] and (zone_arena or (end & PB_MASK) != 0):
        w = np.int64(mm[end])
        rt = w >> 4
        if (w & MD_TYPE_MASK) == MD_FREE and rt != 0 and d[rt, D_ARENA] == a and d[rt, D_TYPE] == VMEM_FREE:
            fl_delete(st, a, rt)
            mm[end] = MD_FREE_INTERIOR
            d[t, D_SIZE] += d[rt, D_SIZE]
            desc_put(st, rt)
    set_bounds(st, t)
    return t


@njit
def release_pageblock(st, z, t):
    """Free segment t (off any freelist) covers a whole pageblock of a mergeable type's
    arena: hand it back to the zone arena (vmem's span release), coalescing there."""
    a = st.desc[t, D_ARENA]
    st.afree[a] -= PAGEBLOCK_NR_PAGES
    za = arena_id(z, A_ZONE)
    t = seg_free_coalesce(st, t, za, True)
    fl_insert(st, za, t)
    st.afree[za] += PAGEBLOCK_NR_PAGES


@njit
def arena_free(st, z, t, mt):
    """Free allocated segment t into zone z: the zone arena for whole pageblocks of a
    mergeable type, else the arena of the pageblock's migratetype ``mt`` (the segment then
    lies in one pageblock); coalesce; release a pageblock that became entirely free.  Never
    takes a descriptor."""
    d = st.desc
    start = d[t, D_START]
    size = d[t, D_SIZE]
    mm = st.memdesc
    for p in range(start, start + size):
        mm[p] = MD_FREE_INTERIOR
    if size >= PAGEBLOCK_NR_PAGES and (start & PB_MASK) == 0 and (size & PB_MASK) == 0 and mt < MIGRATE_PCPTYPES:
        a = arena_id(z, A_ZONE)
        t = seg_free_coalesce(st, t, a, True)
        fl_insert(st, a, t)
        st.afree[a] += size
        return
    a = arena_id(z, mt)
    t = seg_free_coalesce(st, t, a, False)
    st.afree[a] += size
    if d[t, D_SIZE] == PAGEBLOCK_NR_PAGES and mt < MIGRATE_PCPTYPES:
        release_pageblock(st, z, t)
    else:
        fl_insert(st, a, t)


@njit
def import_pageblock(st, z, t, mt):
    """Import the first pageblock of zone-arena segment t into the arena of ``mt`` (sets
    the pageblock's type).  Needs up to VMEM_SEGS_PER_IMPORT descriptors (reserved).
    Returns the new free segment in the migratetype arena."""
    d = st.desc
    za = arena_id(z, A_ZONE)
    start = d[t, D_START]
    size = d[t, D_SIZE]
    fl_delete(st, za, t)
    st.afree[za] -= PAGEBLOCK_NR_PAGES
    if size > PAGEBLOCK_NR_PAGES:
        # the remainder keeps t; the pageblock gets a new descriptor
        d[t, D_START] = start + PAGEBLOCK_NR_PAGES
        d[t, D_SIZE] = size - PAGEBLOCK_NR_PAGES
        set_bounds(st, t)
        fl_insert(st, za, t)
        n = desc_get(st)
    else:
        n = t
    core.set_pageblock_migratetype(st, start, mt)
    a = arena_id(z, core.get_pfnblock_migratetype(st, start))
    seg_set_free(st, n, a, start, PAGEBLOCK_NR_PAGES)
    st.afree[a] += PAGEBLOCK_NR_PAGES
    return n


@njit
def move_pageblock(st, z, start, old_mt, new_mt):
    """Move every free segment of the pageblock at ``start`` from old_mt's arena to new_mt's
    and retype the pageblock (move_freepages_block()).  No descriptor is taken.  Returns the
    free pages moved; a pageblock that is then entirely free in a mergeable arena is released."""
    d = st.desc
    oa = arena_id(z, old_mt)
    core.set_pageblock_migratetype(st, start, new_mt)
    nmt = core.get_pfnblock_migratetype(st, start)
    na = arena_id(z, nmt)
    p = start
    end = start + PAGEBLOCK_NR_PAGES
    moved = 0
    last = -1
    while p < end:
        w = np.int64(st.memdesc[p])
        typ = w & MD_TYPE_MASK
        t = w >> 4
        if typ == MD_FREE and t != 0 and d[t, D_START] == p:
            if oa != na:
                fl_delete(st, oa, t)
                d[t, D_ARENA] = na
                fl_insert(st, na, t)
            moved += d[t, D_SIZE]
            last = t
            p += d[t, D_SIZE]
        elif (typ == MD_BUDDY_ALLOC or typ == MD_FREE) and t != 0:
            p = d[t, D_START] + d[t, D_SIZE]
        else:
            p += 1
    st.afree[oa] -= moved
    st.afree[na] += moved
    core.account_freepages(st, z, -moved, old_mt)
    core.account_freepages(st, z, moved, nmt)
    if moved == PAGEBLOCK_NR_PAGES and nmt < MIGRATE_PCPTYPES:
        fl_delete(st, na, last)
        release_pageblock(st, z, last)
    return moved


# ------------------------------------------------------------------ per-CPU lists (magazine + descriptor-linked)
# A pcp list is, head to tail: the rounds of its magazine (newest first), then the allocated
# segments linked through their descriptors.  Freeing to the head pushes a round (the pfn)
# and touches no descriptor; a full magazine spills its oldest round to the head of the linked
# part; allocating takes the head; free_pcppages_bulk takes the tail; a refill appends to the
# tail (the linked part).  The order of the list is exactly Linux's.
@njit(inline="always")
def pcp_head(st, cpu, z, pindex):
    nz = st.z_start.shape[0]
    return st.vm[V_PCP_HEAD0] + (cpu * nz + z) * core.NR_PCP_LISTS + pindex


@njit(inline="always")
def pcp_mag(st, h):
    """The magazine of pcp list h: [0] the number of rounds, [1..] the rounds, oldest first."""
    return st.mag[h - st.vm[V_PCP_HEAD0]]


@njit(inline="always")
def pcp_empty(st, h):
    return st.desc[h, D_KNEXT] == h and pcp_mag(st, h)[0] == 0


@njit(inline="always")
def _mag_drop(m, i):
    """Remove round i of magazine m (later rounds move down)."""
    n = m[0]
    for j in range(i, n):
        m[j] = m[j + 1]
    m[0] = n - 1


@njit
def pcp_spill(st, h):
    """The oldest round of a full magazine goes to the head of the linked part."""
    m = pcp_mag(st, h)
    t = md_tag(st, m[1])
    st.desc[t, D_TYPE] = VMEM_ALLOC | DT_PCP
    _kinsert(st.desc, h, t)
    _mag_drop(m, 1)


@njit(inline="always")
def pcp_push_head(st, h, pfn):
    """list_add(): the allocation at pfn (its descriptor untouched) becomes the list's head."""
    m = pcp_mag(st, h)
    if m[0] == MAG_ROUNDS:
        pcp_spill(st, h)
    n = m[0] + 1
    m[n] = pfn
    m[0] = n


@njit(inline="always")
def pcp_push_tail(st, h, t):
    """list_add_tail(): allocation t becomes the list's tail (the linked part's tail)."""
    st.desc[t, D_TYPE] = VMEM_ALLOC | DT_PCP
    _kinsert_tail(st.desc, h, t)


@njit(inline="always")
def pcp_pop_head(st, h):
    """Take the head of a non-empty list: its pfn (from a magazine round: no descriptor read)."""
    m = pcp_mag(st, h)
    n = m[0]
    if n > 0:
        m[0] = n - 1
        return m[n]
    d = st.desc
    t = d[h, D_KNEXT]
    _kdelete(d, t)
    d[t, D_TYPE] = VMEM_ALLOC
    return d[t, D_START]


@njit
def pcp_pop_tail(st, h):
    """Take the tail of a non-empty list: its descriptor."""
    d = st.desc
    t = d[h, D_KPREV]
    if t != h:
        _kdelete(d, t)
        d[t, D_TYPE] = VMEM_ALLOC
        return t
    m = pcp_mag(st, h)
    t = md_tag(st, m[1])
    _mag_drop(m, 1)
    return t


@njit
def pcp_unlink(st, h, pfn):
    """Take the allocation at pfn off list h, wherever it is (list_del)."""
    m = pcp_mag(st, h)
    for i in range(1, m[0] + 1):
        if m[i] == pfn:
            _mag_drop(m, i)
            return
    t = md_tag(st, pfn)
    _kdelete(st.desc, t)
    st.desc[t, D_TYPE] = VMEM_ALLOC


@njit
def collect_segments(st, typ, out):
    """Fill out[n, 4] with (start, size, arena, tag) of every descriptor of type ``typ`` in use."""
    d = st.desc
    n = 0
    lo = st.vm[V_HEADS]
    hi = lo + st.vm[V_NDPAGES] * DESC_PER_PAGE
    for t in range(lo, hi):
        if d[t, D_TYPE] == typ:
            if n < out.shape[0]:
                out[n, 0] = d[t, D_START]
                out[n, 1] = d[t, D_SIZE]
                out[n, 2] = d[t, D_ARENA]
                out[n, 3] = t
            n += 1
    return n


@njit
def init_heads(d, nheads):
    for h in range(nheads):
        d[h, D_KNEXT] = h
        d[h, D_KPREV] = h
        d[h, D_TYPE] = VMEM_MARKER


__all__ = ["VMEM_ALLOC", "VMEM_FREE"]
