"""The ``radix`` design: Kent Overstreet's buddy allocator with radix-tree free lists.

Theory
------
Kent's proposal (folio thread, 2021): "replace the doubly-linked free lists threaded
through struct page with radix trees", so that struct page shrinks to two words -- word 0
the allocator-state/flags word (zone, node, type, order) and word 1 "a pointer to
allocatee state for allocated pages, but for free pages an index onto the freelist".
Nobody built it; this module does, on the shared algorithms of :mod:`.core` (same zones,
watermarks, migratetypes, fallbacks and per-CPU lists as ``linux``), so differences in
results come from the free-list structure alone.  Its known problem: "freeing a page may
require allocating a new page for the radix tree freelist, which is fine normally --
we're freeing a page after all -- but not if it's highmem."

**Free lists.**  Every list (``free_area[order].free_list[mt]`` of a zone and every
per-CPU list) is a deque kept in two XArrays of one shared node pool
(:mod:`memdesc.lib._xarray_kernels`): the *head side* holds the entries added at the
head, the *tail side* those added at the tail, each at the next index of its side
(``hn``/``tn``, growing upward).  Deque order is: head side from the highest index down,
then tail side from the lowest index up.  The entry is the pfn (a value entry); word 1 of
the page is ``idx << 3 | 4 | side << 1`` -- the index onto its free list -- so removing a
buddy during a merge is one ``xa_erase`` at a known index, O(tree height).  The first and
last entry of each side are cached per list (a new one is found with
:func:`~.radix_xa.xa_find_le_nb` / ``xa_find_ge_nb`` after an end is removed).  Indices
are never reused while a side is non-empty; a side that becomes empty restarts at 0.

**Tree nodes** (576 bytes, 7 per 4 KiB page, as ``struct xa_node`` in the
``radix_tree_node`` slab) live in *node pages*: blocks of directly-mapped memory taken
from the buddy lists (word 0 allocated, word 1 ``RX_SLAB_TAG | block``, owner byte
unmovable).  Node pages are kept for the life of the machine (the cache never shrinks):
nodes freed by deletions go back to the pool's spare stack.  A page for nodes is taken
without going through ``__alloc_pages`` (whose splits would themselves need nodes): the
smallest free block of a directly-mapped zone (GFP_KERNEL's zonelist) is unlinked; its
first page becomes nodes and its upper halves go back on the free lists with the nodes
just obtained (a half that cannot be inserted becomes node memory too).  HighMem is
never used for nodes.

**Where nodes come from** (``node_policy``, ``--radix-nodes``):

* ``consume`` -- Kent's path.  Allocation paths preload a small spare (like
  ``radix_tree_preload``: ``T_alloc = 2 h (NR_PAGE_ORDERS + 2)`` nodes, h the tree
  height bound below) with GFP_KERNEL rules (min watermark).  A free of a
  directly-mapped block first computes the worst case of nodes that free can need
  (bound below); if the spare holds fewer, the block being freed is *consumed*: it becomes
  node memory and the free is complete ("we're freeing a page after all").  A HighMem
  free cannot be consumed: a node shortfall in the middle of it takes a lowmem page with
  GFP_ATOMIC rules (the free path may run in interrupt context); when lowmem has none,
  the insertion cannot complete -- a **free stall**.
* ``reserve`` -- Wilcox's rule "never allocate memory when freeing memory" applied to
  Kent's structure: every allocation first fills the spare to the worst case ``B(P)`` of
  nodes that *all* outstanding frees could need; if it cannot, the allocation fails
  (``alloc_failed_for_reserve``; ``stats.alloc_failed_for_metadata``).  Frees never allocate.
* ``host`` -- not a design: nodes come from host memory, not modelled pages.  Used to
  check that the deques reproduce ``linux``'s list order exactly.

**Bounds.**  Inserting m entries at consecutive fresh indices x .. x+m-1 of one XArray
touches at most ``ceil((m-1)/64^(l+1)) + 1`` nodes of level l, so creates at most
``(m-1)/63 + 2h`` nodes, h the height for index x+m; a node freed and re-created in
between nets out, because it returned to the spare first.  Inserts go only to the next
index of a side, so for any sequence of frees making P insertions spread over at most E
list ends, the spare never drops by more than
``B(P) = ceil(P/63) + 2 h min(E, P)`` with ``h = levels(max index + P)``
(levels(v) = base-64 digits of v).  ``reserve`` keeps the spare >= ``B(P)`` for
P = 2 x outstanding allocations (one per-CPU insertion and one buddy insertion each; a
block larger than a pageblock also makes two) + pages on per-CPU lists + parked entries,
and E = every per-CPU list's head side + both sides of every buddy list of populated
zones.  ``consume`` uses the same bound for one free: M = 1 insertion, plus the whole
per-CPU list when it may be drained (count >= min(4 batch, high_min), the smallest value
``nr_pcp_high`` can return), over at most 1 + 2 x 11 x 6 list ends.

**Stalls and parking.**  An insertion that cannot get a node is *parked*: the page goes
on its list's overflow chain -- logically at the head (or tail) end, so deque order and
every count stay exactly right -- linked through its own two words (word 1: next, word 0
bits 10-50: previous; no memory is needed).  Parked entries are inserted into the tree,
oldest first, at the start of every later operation when nodes can be had.  A free (or a
drain) that parks any insertion counts one ``free_stall`` (``parked_on_free_path`` counts
the insertions): in the kernel that free would have had to wait for lowmem.  The page is
never lost and ``check()`` stays "ok".

**Counted metadata**: the memmap (16 bytes per pfn), per list two ``struct xarray``
(16 B each) and the deque's 12 words, ``nr_free`` per order, and node pages (``descriptors``:
4096 bytes per node page, spare and slab waste included).

Counters (``Machine.stats()``; :meth:`RadixDesign.node_stats`, which is ``design_stats()``
in every JSON summary; docs/radix.md explains each): ``free_path_allocations`` (node pages
allocated while freeing: consumed pages and lowmem pages taken), ``free_stalls`` (frees
that parked an insertion), ``alloc_failed_for_reserve``; node pages, live and spare nodes,
parked entries, the reserve target.
"""

from __future__ import annotations

import numpy as np

from memdesc import _mem as hugemem
from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError
from memdesc.lib import _xarray_kernels as kx
from memdesc.mm import gfp as G
from memdesc.mm import memmap as mmap
from memdesc.mm.memmap import (
    R2_ALLOC,
    R2_FREE,
    R2_NONE,
    R2_PCP,
    R2_RESERVED,
    R2_TAIL,
    R2_TYPE_MASK,
)
from memdesc.mm.mmzone import (
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    NR_PCP_LISTS,
    PAGE_SIZE,
)
from memdesc.mm.page_alloc import core, typed
from memdesc.mm.page_alloc.base import BuddyDesign, register_design
from memdesc.mm.page_alloc.radix_struct import field_getter
from memdesc.mm.page_alloc.radix_xa import (
    FAST_NEEDS_NODE,
    FAST_NO,
    xa_erase_fast_nb,
    xa_erase_top_nb,
    xa_expand_head_nb,
    xa_find_ge_nb,
    xa_find_le_nb,
    xa_store_fast_nb,
)

# ------------------------------------------------------------------ constants

NODE_BYTES = kx.XA_NODE_BYTES  # sizeof(struct xa_node)
NODES_PER_PAGE = PAGE_SIZE // NODE_BYTES  # 7
XA_BYTES = 16  # sizeof(struct xarray): spinlock, gfp flags, head pointer

# deque columns (dq[lid, ...])
(DQ_HN, DQ_TN, DQ_HTOP, DQ_HLOW, DQ_TLOW, DQ_TTOP, DQ_COUNT, DQ_NOV, DQ_HOV_NEW, DQ_HOV_OLD, DQ_TOV_OLD,
 DQ_TOV_NEW, DQ_PCPW) = range(13)
NDQ = 13

# word 1 of a page on a free list
W1_PARKED = 1
W1_TAIL = 2
W1_ON_LIST = 4
W1_SHIFT = 3
# word 0 of a parked page: bits 10-50 hold the previous entry of its overflow chain (pfn + 1)
W0_LINK_SHIFT = 10
W0_LINK_BITS = 41
ZN_MASK = np.uint64(((1 << (mmap.NODES_WIDTH + mmap.ZONES_WIDTH)) - 1) << mmap.ZONES_PGSHIFT)
LINK_MASK = np.uint64(((1 << W0_LINK_BITS) - 1) << W0_LINK_SHIFT)
#: word 1 of a node page: "allocatee state" = the radix_tree_node slab, block number in the low bits
RX_SLAB_TAG = 0x5AB << 48

# node policies
P_CONSUME, P_RESERVE, P_HOST = 0, 1, 2
POLICIES = {"consume": P_CONSUME, "reserve": P_RESERVE, "host": P_HOST}

# operation context (who is inserting)
CTX_IDLE, CTX_ALLOC, CTX_FREE, CTX_BOOT = 0, 1, 2, 3
# watermark rule of a node-page allocation
RULE_NOWMARK, RULE_KERNEL, RULE_ATOMIC = 0, 1, 2

# rx[] control words and counters
(RX_POLICY, RX_CTX, RX_NBL, RX_NEXT_NODE, RX_CAP_NODES, RX_NBLOCKS, RX_NODE_PAGES, RX_ALLOCS, RX_PCP_ENTRIES,
 RX_NOV, RX_MAX_END, RX_ENDS,
 RX_GRAB_PRELOAD, RX_GRAB_MIDOP, RX_GRAB_FREE, RX_GRAB_BOOT, RX_CONSUMED, RX_PARK_FREE, RX_PARK_ALLOC,
 RX_PARK_BOOT, RX_CAP_FAIL, RX_RESERVE_SHORT, RX_FLUSHED, RX_HOST_NODES, RX_META_FAIL,
 RX_FREE_NEED_MAX, RX_STALLED) = range(27)
NRX = 32
RX_COUNTER_NAMES = {
    RX_GRAB_PRELOAD: "node_pages_preloaded",
    RX_GRAB_MIDOP: "node_pages_taken_mid_allocation",
    RX_GRAB_FREE: "node_pages_taken_while_freeing",
    RX_GRAB_BOOT: "node_pages_taken_at_boot",
    RX_CONSUMED: "freed_pages_consumed_for_nodes",
    RX_PARK_FREE: "parked_on_free_path",
    RX_PARK_ALLOC: "parked_on_alloc_path",
    RX_PARK_BOOT: "parked_at_boot",
    RX_CAP_FAIL: "node_pool_capacity_exhausted",
    RX_RESERVE_SHORT: "reserve_shortfalls",
    RX_FLUSHED: "parked_entries_inserted_later",
    RX_HOST_NODES: "host_nodes",
    RX_META_FAIL: "alloc_failed_for_reserve",
    RX_FREE_NEED_MAX: "largest_free_bound",
}

U0 = np.uint64(0)


def njit_norc(fn=None, **kw):
    """Compiled without NRT reference counting, for hot helpers that take arrays and never
    allocate: in a reference-counted function every array bound from the state struct costs
    calls of NRT_incref/NRT_decref, which made a list operation several times slower."""
    if fn is None:
        return lambda f: njit(_nrt=False, **kw)(f)
    return njit(_nrt=False)(fn)


class RadixStateType(StructType):
    pass


class RadixState(StructProxy):
    """core.ZONE_FIELDS, then the memmap (uint64[npages, 2]), the deques (int64[nlists, NDQ]),
    the XArray heads (two per list), the node pool (kx.XaPool arrays), the node-page table and
    the control/counter words."""

    _fields = (*core.ZONE_FIELDS, "memmap", "dq", "xa_heads", "xa_slots", "xa_marks", "xa_meta", "xa_free",
               "xa_ctl", "xa_xas", "nb_pfn", "nb_order", "nb_first", "rx")


define_struct(RadixState, RadixStateType)

# reference-count-free field access (radix_struct): the hot paths are compiled without NRT
_mm = field_getter("memmap")
_dq = field_getter("dq")
_rx = field_getter("rx")
_slots = field_getter("xa_slots")
_meta = field_getter("xa_meta")
_heads = field_getter("xa_heads")
_ctl = field_getter("xa_ctl")
_marks = field_getter("xa_marks")
_free = field_getter("xa_free")
_xas = field_getter("xa_xas")
_nb_pfn = field_getter("nb_pfn")
_cfg = field_getter("cfg")
_pcp = field_getter("pcp")
_pb = field_getter("pb")
_pb_zone = field_getter("pb_zone")
_z_direct = field_getter("z_direct")
_gzt = field_getter("gfp_zone_table")
_stats = field_getter("stats")


# ------------------------------------------------------------------ small helpers


@njit(inline="always")
def _pool(st):
    return kx.XaPool(_slots(st), _marks(st), _meta(st), _free(st), _ctl(st), _xas(st))


@njit(inline="always")
def _spare(st):
    return _ctl(st)[kx.C_FREE_TOP]


@njit(inline="always")
def _w0_set(st, pfn, low):
    """Word 0 := its zone/node bits | ``low`` (type, order, cpu/link bits)."""
    mm = _mm(st)
    mm[pfn, 0] = (mm[pfn, 0] & ZN_MASK) | np.uint64(low)


@njit(inline="always")
def _w0_type(st, pfn):
    return np.int64(_mm(st)[pfn, 0] & np.uint64(R2_TYPE_MASK))


@njit(inline="always")
def _w1(st, pfn):
    return np.int64(_mm(st)[pfn, 1])


@njit(inline="always")
def _value(e):
    return e >> 1


@njit_norc
def levels(v):
    """Base-64 digits of v (>= 1): the height of an XArray holding index v."""
    n = 1
    x = v
    while x >= 64:
        x >>= 6
        n += 1
    return n


# ------------------------------------------------------------------ node pages


@njit
def _new_node_block(st, pfn, order):
    """Make the (already unlinked) block [pfn, pfn + 2^order) node memory; give its nodes to the pool."""
    rx = st.rx
    n = NODES_PER_PAGE << order
    blk = rx[RX_NBLOCKS]
    first = rx[RX_NEXT_NODE]
    st.nb_pfn[blk] = pfn
    st.nb_order[blk] = order
    st.nb_first[blk] = first
    st.owner[pfn] = core.owner_encode(order, core.MT_UNMOVABLE)
    _w0_set(st, pfn, R2_ALLOC | (order << mmap.R2_ORDER_SHIFT))
    st.memmap[pfn, 1] = np.uint64(RX_SLAB_TAG | blk)
    for i in range(1, 1 << order):
        _w0_set(st, pfn + i, R2_TAIL)
        st.memmap[pfn + i, 1] = np.uint64(pfn)
    kx.pool_give_range_nb(_pool(st), first, n)
    rx[RX_NEXT_NODE] = first + n
    rx[RX_NBLOCKS] = blk + 1
    rx[RX_NODE_PAGES] += 1 << order
    z = core.page_zone(st, pfn)
    st.zstats[z, core.ZS_PGALLOC] += 1 << order


@njit(inline="always")
def _capacity_for(st, order):
    return st.rx[RX_NEXT_NODE] + (NODES_PER_PAGE << order) <= st.rx[RX_CAP_NODES] \
        and st.rx[RX_NBLOCKS] < st.nb_pfn.shape[0]


@njit
def _host_nodes(st, n):
    """``host`` policy: n nodes that live in host memory (no modelled page)."""
    rx = st.rx
    first = rx[RX_NEXT_NODE]
    if first + n > rx[RX_CAP_NODES]:
        rx[RX_CAP_FAIL] += 1
        return False
    kx.pool_give_range_nb(_pool(st), first, n)
    rx[RX_NEXT_NODE] = first + n
    rx[RX_HOST_NODES] += n
    return True


@njit(inline="always")
def _mt_of(k):
    # the lists a node page is taken from, in this order (never highatomic, CMA or isolate)
    if k == 0:
        return core.MT_UNMOVABLE
    if k == 1:
        return core.MT_RECLAIMABLE
    return core.MT_MOVABLE


@njit
def _wmark_ok(st, z, order, rule, hz):
    if rule == RULE_NOWMARK:
        return True
    flags = core.ALLOC_WMARK_MIN
    if rule == RULE_ATOMIC:  # GFP_ATOMIC: __GFP_HIGH and no direct reclaim
        flags |= core.ALLOC_MIN_RESERVE | core.ALLOC_NON_BLOCK
    return core.__zone_watermark_ok(st, z, order, core.wmark_pages(st, z, 0), hz, flags, st.z_free[z])


@njit
def _grab_block(st, rule):
    """Take the smallest free block of a directly-mapped zone for tree nodes (GFP_KERNEL's
    zonelist, highest zone first); False if none may be taken under ``rule``."""
    hz = st.gfp_zone_table[0]
    zl = st.zonelist[0]
    for i in range(zl.shape[0]):
        z = zl[i]
        if z < 0:
            break
        if st.z_direct[z] == 0 or st.z_idx[z] > hz or st.z_free[z] == 0:
            continue
        for order in range(NR_PAGE_ORDERS):
            if st.nr_free[z, order] == 0:
                continue
            pfn = -1
            mt = 0
            for k in range(3):
                mt = _mt_of(k)
                lid = core.buddy_lid(st, z, order, mt)
                p = radix_list_first(st, lid)
                while p >= 0 and not (_w0_type(st, p) == R2_FREE and radix_buddy_order(st, p) == order):
                    p = radix_list_next(st, lid, p)  # (a half that expand() has not marked yet)
                if p >= 0:
                    pfn = p
                    break
            if pfn < 0:
                continue
            if not _wmark_ok(st, z, order, rule, hz):
                break  # larger blocks of this zone would fail too
            if not _capacity_for(st, 0):
                st.rx[RX_CAP_FAIL] += 1
                return False
            core.del_page_from_free_list(st, pfn, z, order, mt)
            _split_for_nodes(st, pfn, z, order, 0)
            return True
    return False


@njit
def _split_for_nodes(st, pfn, z, order, keep):
    """expand() for a block that gives memory to the tree nodes: its first 2^keep pages become
    node memory, the upper halves go on the head of their free lists (their pageblock's type)
    using those nodes.  A half that cannot be inserted becomes node memory too; one that has
    no room in the node table either stays free, parked."""
    _new_node_block(st, pfn, keep)
    o = order
    while o > keep:
        o -= 1
        half = pfn + (1 << o)
        mt = core.get_pfnblock_migratetype(st, half)
        lid = core.buddy_lid(st, z, o, mt)
        if st.dq[lid, DQ_HOV_NEW] < 0 and _tree_store(st, lid, half, False):
            st.dq[lid, DQ_COUNT] += 1
            radix_set_buddy(st, half, o)
            st.nr_free[z, o] += 1
            core.account_freepages(st, z, 1 << o, mt)
        elif _capacity_for(st, o):
            _new_node_block(st, half, o)
        else:
            st.dq[lid, DQ_COUNT] += 1
            radix_set_buddy(st, half, o)
            _park(st, lid, half, False)
            st.nr_free[z, o] += 1
            core.account_freepages(st, z, 1 << o, mt)


@njit
def _supply(st, want):
    """Bring the spare stack to ``want`` nodes in the middle of an operation; False if impossible."""
    rx = st.rx
    ctx = rx[RX_CTX]
    while _spare(st) < want:
        if rx[RX_POLICY] == P_HOST:
            if not _host_nodes(st, max(want - _spare(st), NODES_PER_PAGE)):
                return False
            continue
        rule = RULE_NOWMARK if ctx == CTX_BOOT else RULE_ATOMIC
        if not _grab_block(st, rule):
            return False
        if ctx == CTX_FREE:
            rx[RX_GRAB_FREE] += 1
            st.stats[core.ST_FREE_PATH_ALLOCS] += 1
        elif ctx == CTX_BOOT:
            rx[RX_GRAB_BOOT] += 1
        else:
            rx[RX_GRAB_MIDOP] += 1
    return True


@njit
def _preload(st, target):
    """Fill the spare to ``target`` nodes on an allocation path (GFP_KERNEL rules); True if reached."""
    rx = st.rx
    while _spare(st) < target:
        if rx[RX_POLICY] == P_HOST:
            if not _host_nodes(st, target - _spare(st)):
                return False
            continue
        if not _grab_block(st, RULE_KERNEL):
            return False
        rx[RX_GRAB_PRELOAD] += 1
    return True


# ------------------------------------------------------------------ the deques


@njit_norc(inline="always")
def _stored(mm, dq, rx, lid, pfn, tail, idx):
    """Bookkeeping after pfn was stored at index idx of a side of list lid."""
    side = 1 if tail else 0
    mm[pfn, 1] = np.uint64((idx << W1_SHIFT) | W1_ON_LIST | (side << 1))
    if tail:
        dq[lid, DQ_TN] = idx + 1
        if dq[lid, DQ_TTOP] < 0:
            dq[lid, DQ_TLOW] = pfn
        dq[lid, DQ_TTOP] = pfn
    else:
        dq[lid, DQ_HN] = idx + 1
        if dq[lid, DQ_HTOP] < 0:
            dq[lid, DQ_HLOW] = pfn
        dq[lid, DQ_HTOP] = pfn
    if idx > rx[RX_MAX_END]:
        rx[RX_MAX_END] = idx


@njit_norc(inline="always")
def _erased(mm, dq, slots, meta, heads, lid, pfn, tail, idx, leaf):
    """Bookkeeping after pfn was erased from index idx of a side of list lid (``leaf``: the
    leaf that held it if still in the tree, else negative): give the index back if it was the
    last one handed out, find the side's new first/last entry (in that leaf when it is there)."""
    xa = 2 * lid + (1 if tail else 0)
    ncol = DQ_TN if tail else DQ_HN
    hi = DQ_TTOP if tail else DQ_HTOP
    lo = DQ_TLOW if tail else DQ_HLOW
    if idx == dq[lid, ncol] - 1:
        dq[lid, ncol] = idx  # the last index handed out is free again (see the bounds)
    if pfn == dq[lid, hi] and pfn == dq[lid, lo]:
        dq[lid, hi] = -1
        dq[lid, lo] = -1
        dq[lid, ncol] = 0  # the side is empty: a new run starts at index 0
    elif pfn == dq[lid, hi]:
        o = (idx & kx.XA_CHUNK_MASK) - 1
        if leaf >= 0:
            while o >= 0 and slots[leaf, o] == 0:
                o -= 1
        if leaf >= 0 and o >= 0:
            dq[lid, hi] = slots[leaf, o] >> 1
        else:
            e, _i = xa_find_le_nb(slots, meta, heads, xa, idx - 1)
            dq[lid, hi] = e >> 1
    elif pfn == dq[lid, lo]:
        o = (idx & kx.XA_CHUNK_MASK) + 1
        if leaf >= 0:
            while o <= kx.XA_CHUNK_MASK and slots[leaf, o] == 0:
                o += 1
        if leaf >= 0 and o <= kx.XA_CHUNK_MASK:
            dq[lid, lo] = slots[leaf, o] >> 1
        else:
            e, _i = xa_find_ge_nb(slots, meta, heads, xa, idx + 1)
            dq[lid, lo] = e >> 1
    mm[pfn, 1] = U0


@njit_norc
def _store_any_fast(st, xa, idx, entry):
    """xa_store_fast_nb, and the one-leaf expansion it leaves to xa_expand_head_nb; False if
    neither applies (or no spare node for the expansion)."""
    r = xa_store_fast_nb(_slots(st), _meta(st), _heads(st), xa, idx, entry)
    if r == 0:
        return True
    if r == FAST_NEEDS_NODE:
        return xa_expand_head_nb(_pool(st), _heads(st), xa, idx, entry)
    return False


@njit_norc
def _list_add_fast(st, lid, pfn, tail):
    """list_add's common case: nothing parked on the list, no node needed from outside the
    spare stack.  Returns False, having changed nothing, otherwise."""
    dq = _dq(st)
    if dq[lid, DQ_NOV] > 0:
        return False
    idx = dq[lid, DQ_TN if tail else DQ_HN]
    xa = 2 * lid + (1 if tail else 0)
    entry = (pfn << 1) | 1
    r = xa_store_fast_nb(_slots(st), _meta(st), _heads(st), xa, idx, entry)
    if r != 0 and not (r == FAST_NEEDS_NODE and xa_expand_head_nb(_pool(st), _heads(st), xa, idx, entry)):
        return False
    mm = _mm(st)
    rx = _rx(st)
    _stored(mm, dq, rx, lid, pfn, tail, idx)
    pw = dq[lid, DQ_PCPW]
    if pw >= 0:
        mm[pfn, 0] = (mm[pfn, 0] & ZN_MASK) | np.uint64(pw)
        rx[RX_PCP_ENTRIES] += 1
    dq[lid, DQ_COUNT] += 1
    return True


@njit_norc
def _list_del_fast(st, lid, pfn):
    """list_del's common case: a tree entry (not parked); False (nothing changed) otherwise."""
    mm = _mm(st)
    w1 = np.int64(mm[pfn, 1])
    if w1 & W1_PARKED:
        return False
    tail = (w1 & W1_TAIL) != 0
    idx = w1 >> W1_SHIFT
    xa = 2 * lid + (1 if tail else 0)
    slots = _slots(st)
    meta = _meta(st)
    heads = _heads(st)
    leaf = xa_erase_fast_nb(slots, meta, heads, xa, idx)
    if leaf == FAST_NO:
        return False
    if leaf == FAST_NEEDS_NODE:
        xa_erase_top_nb(_pool(st), heads, xa, idx)
    dq = _dq(st)
    _erased(mm, dq, slots, meta, heads, lid, pfn, tail, idx, leaf)
    dq[lid, DQ_COUNT] -= 1
    if dq[lid, DQ_PCPW] >= 0:
        mm[pfn, 0] &= ZN_MASK
        _rx(st)[RX_PCP_ENTRIES] -= 1
    return True


@njit
def _tree_store(st, lid, pfn, tail):
    """Insert pfn at the next index of a side of list lid using spare nodes only; False on -ENOMEM."""
    idx = st.dq[lid, DQ_TN if tail else DQ_HN]
    xa = 2 * lid + (1 if tail else 0)
    if not _store_any_fast(st, xa, idx, (pfn << 1) | 1):
        e = kx.xa_store_nb(_pool(st), st.xa_heads, xa, idx, (pfn << 1) | 1)
        if kx.xa_is_err(e):
            return False
    _stored(st.memmap, st.dq, st.rx, lid, pfn, tail, idx)
    return True


@njit
def _tree_add(st, lid, pfn, tail):
    """Insert, obtaining nodes as the context allows; False if none could be had."""
    while not _tree_store(st, lid, pfn, tail):
        if not _supply(st, st.xa_ctl[kx.C_WANT]):
            return False
    return True


@njit(inline="always")
def _link_get_next(st, pfn):
    return (_w1(st, pfn) >> W1_SHIFT) - 1


@njit(inline="always")
def _link_set_next(st, pfn, nxt, tail):
    st.memmap[pfn, 1] = np.uint64(((nxt + 1) << W1_SHIFT) | W1_ON_LIST | (W1_TAIL if tail else 0) | W1_PARKED)


@njit(inline="always")
def _link_get_prev(st, pfn):
    return np.int64((st.memmap[pfn, 0] & LINK_MASK) >> np.uint64(W0_LINK_SHIFT)) - 1


@njit(inline="always")
def _link_set_prev(st, pfn, prv):
    st.memmap[pfn, 0] = (st.memmap[pfn, 0] & ~LINK_MASK) | (np.uint64(prv + 1) << np.uint64(W0_LINK_SHIFT))


@njit
def _park(st, lid, pfn, tail):
    """Put pfn on the overflow chain at its end of list lid (logical deque order kept)."""
    dq = st.dq
    if tail:
        last = dq[lid, DQ_TOV_NEW]
        _link_set_next(st, pfn, -1, True)
        _link_set_prev(st, pfn, last)
        if last >= 0:
            _link_set_next(st, last, pfn, True)
        else:
            dq[lid, DQ_TOV_OLD] = pfn
        dq[lid, DQ_TOV_NEW] = pfn
    else:
        first = dq[lid, DQ_HOV_NEW]
        _link_set_next(st, pfn, first, False)
        _link_set_prev(st, pfn, -1)
        if first >= 0:
            _link_set_prev(st, first, pfn)
        else:
            dq[lid, DQ_HOV_OLD] = pfn
        dq[lid, DQ_HOV_NEW] = pfn
    dq[lid, DQ_NOV] += 1
    rx = st.rx
    rx[RX_NOV] += 1
    ctx = rx[RX_CTX]
    if ctx == CTX_FREE:
        rx[RX_PARK_FREE] += 1
        rx[RX_STALLED] = 1  # counted once per free, by _free_end / radix_pa_drain
    elif ctx == CTX_BOOT:
        rx[RX_PARK_BOOT] += 1
    else:
        rx[RX_PARK_ALLOC] += 1


@njit
def _unpark(st, lid, pfn):
    dq = st.dq
    tail = (_w1(st, pfn) & W1_TAIL) != 0
    nxt = _link_get_next(st, pfn)
    prv = _link_get_prev(st, pfn)
    first_col = DQ_TOV_OLD if tail else DQ_HOV_NEW
    last_col = DQ_TOV_NEW if tail else DQ_HOV_OLD
    if prv >= 0:
        _link_set_next(st, prv, nxt, tail)
    else:
        dq[lid, first_col] = nxt
    if nxt >= 0:
        _link_set_prev(st, nxt, prv)
    else:
        dq[lid, last_col] = prv
    st.memmap[pfn, 0] &= ~LINK_MASK
    dq[lid, DQ_NOV] -= 1
    st.rx[RX_NOV] -= 1


@njit
def _flush_list(st, lid):
    """Insert list lid's parked entries into its trees, oldest first; False if nodes ran out."""
    dq = st.dq
    pcp = dq[lid, DQ_PCPW] >= 0
    while dq[lid, DQ_HOV_OLD] >= 0:
        p = dq[lid, DQ_HOV_OLD]
        prv = _link_get_prev(st, p)
        st.memmap[p, 0] &= ~LINK_MASK
        if pcp:
            _w0_set(st, p, dq[lid, DQ_PCPW])
        if not _tree_add(st, lid, p, False):
            _link_set_prev(st, p, prv)
            return False
        dq[lid, DQ_HOV_OLD] = prv
        if prv >= 0:
            _link_set_next(st, prv, -1, False)
        else:
            dq[lid, DQ_HOV_NEW] = -1
        dq[lid, DQ_NOV] -= 1
        st.rx[RX_NOV] -= 1
        st.rx[RX_FLUSHED] += 1
    while dq[lid, DQ_TOV_OLD] >= 0:
        p = dq[lid, DQ_TOV_OLD]
        nxt = _link_get_next(st, p)
        st.memmap[p, 0] &= ~LINK_MASK
        if pcp:
            _w0_set(st, p, dq[lid, DQ_PCPW])
        if not _tree_add(st, lid, p, True):
            _link_set_next(st, p, nxt, True)
            _link_set_prev(st, p, -1)  # still the oldest; the pcp word just set overlaps the link bits
            return False
        dq[lid, DQ_TOV_OLD] = nxt
        if nxt >= 0:
            _link_set_prev(st, nxt, -1)
        else:
            dq[lid, DQ_TOV_NEW] = -1
        dq[lid, DQ_NOV] -= 1
        st.rx[RX_NOV] -= 1
        st.rx[RX_FLUSHED] += 1
    return True


@njit
def _flush_all(st):
    """Retry every parked insertion (start of each operation); stops at the first shortage."""
    for lid in range(st.dq.shape[0]):
        if st.dq[lid, DQ_NOV] > 0:
            if not _flush_list(st, lid):
                return False
            if st.rx[RX_NOV] == 0:
                break
    return True


# ------------------------------------------------------------------ list primitives


@njit
def _list_add_slow(st, lid, pfn, tail):
    dq = st.dq
    pw = dq[lid, DQ_PCPW]
    if pw >= 0:
        _w0_set(st, pfn, pw)
        st.rx[RX_PCP_ENTRIES] += 1
    dq[lid, DQ_COUNT] += 1
    if dq[lid, DQ_NOV] > 0 and dq[lid, DQ_TOV_OLD if tail else DQ_HOV_NEW] >= 0:
        # older insertions at this end are parked: they go first
        if not _flush_list(st, lid):
            _park(st, lid, pfn, tail)
            return
    if not _tree_add(st, lid, pfn, tail):
        _park(st, lid, pfn, tail)


@njit
def _list_del_slow(st, lid, pfn):
    mm = st.memmap
    dq = st.dq
    w1 = np.int64(mm[pfn, 1])
    if w1 & W1_PARKED:
        _unpark(st, lid, pfn)
        mm[pfn, 1] = U0
    else:
        tail = (w1 & W1_TAIL) != 0
        idx = w1 >> W1_SHIFT
        kx.xa_erase_nb(_pool(st), st.xa_heads, 2 * lid + (1 if tail else 0), idx)
        _erased(mm, dq, st.xa_slots, st.xa_meta, st.xa_heads, lid, pfn, tail, idx, np.int64(-1))
    dq[lid, DQ_COUNT] -= 1
    if dq[lid, DQ_PCPW] >= 0:
        _w0_set(st, pfn, R2_NONE)
        st.rx[RX_PCP_ENTRIES] -= 1


# The primitives: a reference-counted caller (core's kernels) may call functions compiled
# without NRT, not the other way round, so each is a thin wrapper (inlined into the caller)
# around the NRT-free common case and the reference-counted general case.
@njit(inline="always")
def radix_list_add(st, lid, pfn, tail):
    if not _list_add_fast(st, lid, pfn, tail):
        _list_add_slow(st, lid, pfn, tail)


@njit(inline="always")
def radix_list_del(st, lid, pfn):
    if not _list_del_fast(st, lid, pfn):
        _list_del_slow(st, lid, pfn)


@njit_norc
def radix_list_first(st, lid):
    dq = _dq(st)
    if dq[lid, DQ_HOV_NEW] >= 0:
        return dq[lid, DQ_HOV_NEW]
    if dq[lid, DQ_HTOP] >= 0:
        return dq[lid, DQ_HTOP]
    if dq[lid, DQ_TLOW] >= 0:
        return dq[lid, DQ_TLOW]
    return dq[lid, DQ_TOV_OLD]


@njit_norc
def radix_list_last(st, lid):
    dq = _dq(st)
    if dq[lid, DQ_TOV_NEW] >= 0:
        return dq[lid, DQ_TOV_NEW]
    if dq[lid, DQ_TTOP] >= 0:
        return dq[lid, DQ_TTOP]
    if dq[lid, DQ_HLOW] >= 0:
        return dq[lid, DQ_HLOW]
    return dq[lid, DQ_HOV_OLD]


@njit_norc
def radix_list_next(st, lid, pfn):
    dq = _dq(st)
    w1 = _w1(st, pfn)
    tail = (w1 & W1_TAIL) != 0
    if w1 & W1_PARKED:
        nxt = _link_get_next(st, pfn)
        if nxt >= 0 or tail:
            return nxt
        if dq[lid, DQ_HTOP] >= 0:
            return dq[lid, DQ_HTOP]
        if dq[lid, DQ_TLOW] >= 0:
            return dq[lid, DQ_TLOW]
        return dq[lid, DQ_TOV_OLD]
    idx = w1 >> W1_SHIFT
    if not tail:
        e, _i = xa_find_le_nb(_slots(st), _meta(st), _heads(st), 2 * lid, idx - 1)
        if e != 0:
            return _value(e)
        if dq[lid, DQ_TLOW] >= 0:
            return dq[lid, DQ_TLOW]
        return dq[lid, DQ_TOV_OLD]
    e, _i = xa_find_ge_nb(_slots(st), _meta(st), _heads(st), 2 * lid + 1, idx + 1)
    if e != 0:
        return _value(e)
    return dq[lid, DQ_TOV_OLD]


# ------------------------------------------------------------------ page state primitives


@njit_norc
def radix_set_buddy(st, pfn, order):
    # keep word 0's link bits: a parked page is marked free after it went on its list
    mm = _mm(st)
    mm[pfn, 0] = (mm[pfn, 0] & (ZN_MASK | LINK_MASK)) | np.uint64(R2_FREE | (order << mmap.R2_ORDER_SHIFT))


@njit_norc
def radix_clear_buddy(st, pfn):
    _w0_set(st, pfn, R2_NONE)


@njit_norc
def radix_is_buddy(st, pfn):
    return _w0_type(st, pfn) == R2_FREE


@njit_norc
def radix_buddy_order(st, pfn):
    return np.int64((_mm(st)[pfn, 0] >> np.uint64(mmap.R2_ORDER_SHIFT)) & np.uint64(mmap.R2_ORDER_MASK))


@njit_norc
def radix_mark_allocated(st, pfn, order, gfp):
    """post_alloc_hook(): word 0 allocated + order; word 1 is the allocatee's (none in the model: 0);
    compound tails (__GFP_COMP) get type tail and the head pfn in word 1."""
    mm = _mm(st)
    mm[pfn, 0] = (mm[pfn, 0] & ZN_MASK) | np.uint64(R2_ALLOC | (order << mmap.R2_ORDER_SHIFT))
    mm[pfn, 1] = U0
    if order > 0 and (gfp & core.GFP_COMP):
        for i in range(1, 1 << order):
            mm[pfn + i, 0] = (mm[pfn + i, 0] & ZN_MASK) | np.uint64(R2_TAIL)
            mm[pfn + i, 1] = np.uint64(pfn)


@njit_norc
def radix_mark_freed(st, pfn, order):
    mm = _mm(st)
    mm[pfn, 0] &= ZN_MASK
    mm[pfn, 1] = U0
    if order > 0 and (mm[pfn + 1, 0] & np.uint64(R2_TYPE_MASK)) == np.uint64(R2_TAIL):
        for i in range(1, 1 << order):
            mm[pfn + i, 0] &= ZN_MASK
            mm[pfn + i, 1] = U0


@njit_norc
def radix_mark_reserved(st, pfn, kind):
    _w0_set(st, pfn, R2_RESERVED)


# ------------------------------------------------------------------ bounds


@njit_norc
def reserve_target(st, pending):
    """B(P): the most nodes ``pending`` insertions by frees can take from the spare (theory)."""
    if pending <= 0:
        return np.int64(0)
    rx = _rx(st)
    h = levels(rx[RX_MAX_END] + pending)
    return (pending + 62) // 63 + 2 * h * min(rx[RX_ENDS], pending)


@njit_norc
def pending_insertions(st):
    rx = _rx(st)
    return 2 * rx[RX_ALLOCS] + rx[RX_PCP_ENTRIES] + rx[RX_NOV]


#: alloc_preload() never exceeds this (11 levels: a 64-bit index)
PRELOAD_MAX = 2 * kx.XA_MAX_PATH * (NR_PAGE_ORDERS + 2)


@njit_norc
def alloc_preload(st):
    """T_alloc: the spare an allocation path preloads (splits into every order, a pcp refill)."""
    return 2 * levels(_rx(st)[RX_MAX_END] + 4096) * (NR_PAGE_ORDERS + 2)


@njit_norc
def free_bound(st, z, pfn, order, cpu):
    """The most nodes one free of [pfn, 2^order) on cpu can need now (theory)."""
    mt = np.int64(_pb(st)[pfn >> core.PAGEBLOCK_ORDER] & core.PB_MIGRATETYPE_MASK)
    cfg = _cfg(st)
    pcp_order = order <= core.PAGE_ALLOC_COSTLY_ORDER or (cfg[core.CFG_PCP_THP] != 0
                                                          and order == core.HPAGE_PMD_ORDER)
    if cfg[core.CFG_PCP_ENABLED] != 0 and pcp_order and mt != core.MT_ISOLATE:
        pcp = _pcp(st)
        after = pcp[cpu, z, core.PCP_COUNT] + (1 << order)
        high_min = pcp[cpu, z, core.PCP_HIGH_MIN]
        lb = min(4 * pcp[cpu, z, core.PCP_BATCH], high_min)
        m = 1
        if not (order == 0 and high_min > 0 and after < lb):
            m = 1 + after  # the free may drain the whole list to the buddy lists
        ends = min(m, 1 + 2 * NR_PAGE_ORDERS * MIGRATE_TYPES)
    else:
        m = 2 if order > cfg[core.CFG_PB_ORDER] else 1
        ends = m
    h = levels(_rx(st)[RX_MAX_END] + m)
    return (m + 62) // 63 + 2 * h * ends


# ------------------------------------------------------------------ the design interface
# Each pa_* primitive is a thin reference-counted wrapper (inlined into the caller) that
# asks an NRT-free helper what to do and calls core's kernels; the rare cases (parked
# entries, preloads) are separate reference-counted functions.

FREE_NORMAL, FREE_CONSUME, FREE_FLUSH = 0, 1, 3


@njit_norc(inline="always")
def _node_page(mm, pfn):
    return (mm[pfn, 0] & np.uint64(R2_TYPE_MASK)) == np.uint64(R2_ALLOC) \
        and (np.int64(mm[pfn, 1]) >> 48) == (RX_SLAB_TAG >> 48)


@njit(inline="always")
def _is_node_page(st, pfn):
    return _w0_type(st, pfn) == R2_ALLOC and (_w1(st, pfn) >> 48) == (RX_SLAB_TAG >> 48)


@njit_norc
def radix_own_page(st, pfn):
    """pa_own_page: tree-node memory is the allocator's own (frees of it are refused)."""
    return _node_page(_mm(st), pfn)


@njit
def _flush_parked(st, ctx):
    st.rx[RX_CTX] = ctx
    _flush_all(st)


@njit_norc
def _free_begin(st, pfn, order, cpu, flushed):
    """After check_free (which refuses tree-node pages: pa_own_page): FREE_FLUSH (insert
    parked entries first, unless ``flushed``), FREE_CONSUME (Kent's path) or FREE_NORMAL."""
    rx = _rx(st)
    rx[RX_CTX] = CTX_FREE
    if rx[RX_NOV] > 0 and not flushed:
        return FREE_FLUSH
    if rx[RX_POLICY] != P_CONSUME:
        return FREE_NORMAL
    z = np.int64(_pb_zone(st)[pfn >> core.PAGEBLOCK_ORDER])
    if _z_direct(st)[z] == 0:
        return FREE_NORMAL  # HighMem: nodes come from lowmem, mid-free, if at all
    need = free_bound(st, z, pfn, order, cpu)
    if need > rx[RX_FREE_NEED_MAX]:
        rx[RX_FREE_NEED_MAX] = need
    if _ctl(st)[kx.C_FREE_TOP] < need and rx[RX_NEXT_NODE] + (NODES_PER_PAGE << order) <= rx[RX_CAP_NODES] \
            and rx[RX_NBLOCKS] < _nb_pfn(st).shape[0]:
        return FREE_CONSUME
    return FREE_NORMAL


@njit_norc(inline="always")
def _count_stall(st):
    """One ``free_stall`` for a free (or drain) that parked any insertion."""
    rx = _rx(st)
    if rx[RX_STALLED]:
        _stats(st)[core.ST_FREE_STALLS] += 1
        rx[RX_STALLED] = 0


@njit_norc
def _free_end(st):
    rx = _rx(st)
    if rx[RX_ALLOCS] > 0:
        rx[RX_ALLOCS] -= 1
    _count_stall(st)
    rx[RX_CTX] = CTX_IDLE


@njit
def _consume_freed(st, pfn, order, cpu):
    """Kent's path: the block being freed gives its first 2^k pages to the tree nodes (the
    fewest that cover the shortfall); the rest goes on the free lists; the free is complete."""
    z = core.page_zone(st, pfn)
    deficit = free_bound(st, z, pfn, order, cpu) - _spare(st)
    keep = 0
    while keep < order and (NODES_PER_PAGE << keep) < deficit:
        keep += 1
    core.trace_event(st, core.EV_FREE, cpu, pfn, order, -1, 0, 0, 0)
    radix_mark_freed(st, pfn, order)
    st.stats[core.ST_FREE] += 1
    st.stats[core.ST_FREE_PAGES] += 1 << order
    st.zstats[z, core.ZS_PGFREE] += 1 << order
    _split_for_nodes(st, pfn, z, order, keep)
    st.rx[RX_CONSUMED] += 1
    st.stats[core.ST_FREE_PATH_ALLOCS] += 1


@njit(inline="always")
def radix_pa_free(st, pfn, order, cpu):
    rc = core.check_free(st, pfn, order)
    if rc != core.OK:
        return rc
    d = _free_begin(st, pfn, order, cpu, False)
    if d == FREE_FLUSH:
        _flush_parked(st, CTX_FREE)
        d = _free_begin(st, pfn, order, cpu, True)
    if d == FREE_CONSUME:
        _consume_freed(st, pfn, order, cpu)
    else:
        core.__free_pages(st, pfn, order, cpu)
    _free_end(st)
    return core.OK


@njit
def _reserve_fail(st, gfp, order, cpu):
    st.stats[core.ST_ALLOC_FAILED_FOR_META] += 1
    st.stats[core.ST_ALLOC_FAIL] += 1
    st.rx[RX_META_FAIL] += 1
    st.rx[RX_CTX] = CTX_IDLE
    core.trace_event(st, core.EV_ALLOC, cpu, -1, order, G.gfp_migratetype_nb(gfp), gfp, 0, 0)


@njit_norc
def _alloc_begin(st, gfp, credits):
    """ctx := alloc; 0 if the spare already holds what this policy wants, 1 if not, -1 for a
    gfp with an invalid zone combination (core fails it)."""
    if _gzt(st)[gfp & core.GFP_ZONEMASK] < 0:
        return -1
    rx = _rx(st)
    rx[RX_CTX] = CTX_ALLOC
    if rx[RX_NOV] > 0:
        return 1
    spare = _ctl(st)[kx.C_FREE_TOP]
    pol = rx[RX_POLICY]
    if pol == P_RESERVE:
        if spare < reserve_target(st, pending_insertions(st) + credits) + alloc_preload(st):
            return 1
    elif pol == P_CONSUME:
        if spare < PRELOAD_MAX and spare < alloc_preload(st):
            return 1
    return 0


@njit
def _alloc_prepare(st, credits):
    """The slow half of _alloc_begin: insert parked entries, preload; False if the reserve
    (policy reserve) cannot be filled."""
    rx = st.rx
    if rx[RX_NOV] > 0:
        _flush_all(st)
    pol = rx[RX_POLICY]
    if pol == P_RESERVE:
        need = reserve_target(st, pending_insertions(st) + credits)
        _preload(st, need + alloc_preload(st))
        if _spare(st) < need:
            return False
    elif pol == P_CONSUME:
        _preload(st, alloc_preload(st))
    return True


@njit_norc
def _alloc_end(st, credited):
    """ctx := idle; 1 if the reserve must be refilled (policy reserve), else 0."""
    rx = _rx(st)
    if credited:
        rx[RX_ALLOCS] += 1
    rx[RX_CTX] = CTX_IDLE
    if rx[RX_POLICY] == P_RESERVE and _ctl(st)[kx.C_FREE_TOP] < reserve_target(st, pending_insertions(st)):
        return 1
    return 0


@njit
def _alloc_refill(st):
    st.rx[RX_CTX] = CTX_ALLOC
    if not _preload(st, reserve_target(st, pending_insertions(st))):
        st.rx[RX_RESERVE_SHORT] += 1
    st.rx[RX_CTX] = CTX_IDLE


@njit(inline="always")
def radix_pa_alloc(st, gfp, order, cpu):
    b = _alloc_begin(st, gfp, 2)
    if b < 0:
        return core.__alloc_pages(st, gfp, order, cpu)  # counts the failure itself
    if b > 0 and not _alloc_prepare(st, 2):
        _reserve_fail(st, gfp, order, cpu)
        return np.int64(-1)
    pfn = core.__alloc_pages(st, gfp, order, cpu)
    if _alloc_end(st, pfn >= 0):
        _alloc_refill(st)
    return pfn


@njit
def radix_pa_take(st, pfn, order):
    if _alloc_begin(st, 0, 2) > 0 and not _alloc_prepare(st, 2):
        st.rx[RX_CTX] = CTX_IDLE
        st.rx[RX_META_FAIL] += 1
        st.stats[core.ST_ALLOC_FAILED_FOR_META] += 1
        return core.E_BUSY
    rc = core.take_page_off_buddy(st, pfn, order)
    if _alloc_end(st, rc == core.OK):
        _alloc_refill(st)
    return rc


@njit
def radix_pa_drain(st):
    rx = st.rx
    rx[RX_CTX] = CTX_FREE
    if rx[RX_NOV] > 0:
        _flush_all(st)
    core.drain_all_pages(st)
    _count_stall(st)
    rx[RX_CTX] = CTX_IDLE


@njit
def radix_pcp_free_bulk(st, z, count, cpu, pindex):
    """free_pcppages_bulk() from outside a free (the pcp high decay of vmstat_update): a free
    path, so its insertions may stall like a free's."""
    rx = st.rx
    rx[RX_CTX] = CTX_FREE
    if rx[RX_NOV] > 0:
        _flush_all(st)
    core.free_pcppages_bulk(st, z, count, cpu, pindex)
    _count_stall(st)
    rx[RX_CTX] = CTX_IDLE




# ------------------------------------------------------------------ invariant check

(RC_OK, RC_ENTRY, RC_WORD1, RC_INDEX, RC_ENDS, RC_COUNT, RC_CHAIN, RC_PCP_WORD0, RC_TREE, RC_POOL, RC_NODE_ZONE,
 RC_NODE_PAGE, RC_NODE_TOTAL, RC_TOTALS, RC_PARKED_BUDDY) = range(15)
RADIX_CHECK_MESSAGES = {
    RC_ENTRY: "list {a}: tree slot {b} holds {x:#x}, not a pfn value entry",
    RC_WORD1: "pfn {x:#x} on list {a}: word 1 does not point back to its slot (side/index {b})",
    RC_INDEX: "list {a}: entry at index {b} is not below the side's next index",
    RC_ENDS: "list {a}: cached first/last entries are wrong (pfn {x:#x}, side {b})",
    RC_COUNT: "list {a}: {x} entries found, deque count says {b}",
    RC_CHAIN: "list {a}: overflow chain broken at pfn {x:#x} (end {b})",
    RC_PCP_WORD0: "pfn {x:#x} on per-CPU list {a}: word 0 is not type pcp with the list's cpu and order",
    RC_TREE: "XArray {a} of the free lists: structure check failed with code {b}",
    RC_POOL: "node pool: {x} nodes in trees + spare, {b} handed out ({a} in trees)",
    RC_NODE_ZONE: "node page {x:#x} (block {b}) is not in a directly-mapped zone",
    RC_NODE_PAGE: "node page {x:#x} (block {b}) is not marked as the allocator's node memory",
    RC_NODE_TOTAL: "node pages hold {x} nodes but {b} were handed to the pool",
    RC_TOTALS: "design counter {a} is {b}, recount {x}",
    RC_PARKED_BUDDY: "pfn {x:#x} on list {a}: parked entry with stale word-0 links",
}


@njit
def _check_side(st, lid, side, cnt_out):
    """Walk one side of list lid; (code, x, b)."""
    dq = st.dq
    xa = 2 * lid + side
    code, _n, _o, _m = kx.xa_check_nb(_pool(st), st.xa_heads, xa, False, False)
    if code != 0:
        return RC_TREE, np.int64(code), xa
    nxt_col = DQ_TN if side else DQ_HN
    lo_col = DQ_TLOW if side else DQ_HLOW
    hi_col = DQ_TTOP if side else DQ_HTOP
    e, idx = xa_find_ge_nb(st.xa_slots, st.xa_meta, st.xa_heads, xa, 0)
    first_pfn = -1
    last_pfn = -1
    n = 0
    pcp = st.dq[lid, DQ_PCPW] >= 0
    while e != 0:
        if not kx.xa_is_value(e):
            return RC_ENTRY, e, idx
        pfn = _value(e)
        if pfn < 0 or pfn >= st.memmap.shape[0]:
            return RC_ENTRY, e, idx
        if _w1(st, pfn) != ((idx << W1_SHIFT) | W1_ON_LIST | (side << 1)):
            return RC_WORD1, pfn, side * (1 << 40) + idx
        if idx >= dq[lid, nxt_col]:
            return RC_INDEX, pfn, idx
        if pcp and (st.memmap[pfn, 0] & ~ZN_MASK) != np.uint64(dq[lid, DQ_PCPW]):
            return RC_PCP_WORD0, pfn, 0
        if not pcp and (st.memmap[pfn, 0] & LINK_MASK) != U0:
            return RC_PARKED_BUDDY, pfn, 0
        if first_pfn < 0:
            first_pfn = pfn
        last_pfn = pfn
        n += 1
        e, idx = xa_find_ge_nb(st.xa_slots, st.xa_meta, st.xa_heads, xa, idx + 1)
    if dq[lid, lo_col] != first_pfn or dq[lid, hi_col] != last_pfn:
        return RC_ENDS, max(first_pfn, dq[lid, lo_col]), side
    if n == 0 and dq[lid, nxt_col] != 0:
        return RC_ENDS, -1, side
    cnt_out[0] += n
    return RC_OK, np.int64(0), np.int64(0)


@njit
def _check_chain(st, lid, tail, cnt_out):
    dq = st.dq
    first = dq[lid, DQ_TOV_OLD if tail else DQ_HOV_NEW]
    last = dq[lid, DQ_TOV_NEW if tail else DQ_HOV_OLD]
    p = first
    prv = -1
    n = 0
    pcp = st.dq[lid, DQ_PCPW] >= 0
    while p >= 0:
        w1 = _w1(st, p)
        if (w1 & (W1_PARKED | W1_ON_LIST)) != (W1_PARKED | W1_ON_LIST) or ((w1 & W1_TAIL) != 0) != tail:
            return RC_CHAIN, p, 1
        if _link_get_prev(st, p) != prv:
            return RC_CHAIN, p, 2
        if pcp:
            if (st.memmap[p, 0] & np.uint64(R2_TYPE_MASK)) != np.uint64(R2_PCP):
                return RC_PCP_WORD0, p, 0
        n += 1
        if n > st.memmap.shape[0]:
            return RC_CHAIN, p, 3
        prv = p
        p = _link_get_next(st, p)
    if prv != last:
        return RC_CHAIN, prv, 4
    cnt_out[0] += n
    return RC_OK, np.int64(0), np.int64(0)


@njit
def radix_check(st):
    """Deques, trees, node pool and node pages; (code, x, a, b)."""
    dq = st.dq
    cnt = np.zeros(1, np.int64)
    nov_total = 0
    pcp_total = 0
    for lid in range(dq.shape[0]):
        cnt[0] = 0
        for side in range(2):
            code, x, b = _check_side(st, lid, side, cnt)
            if code != RC_OK:
                return code, x, lid, b
        before = cnt[0]
        for t in range(2):
            code, x, b = _check_chain(st, lid, t == 1, cnt)
            if code != RC_OK:
                return code, x, lid, b
        parked = cnt[0] - before
        if parked != dq[lid, DQ_NOV]:
            return RC_COUNT, parked, lid, dq[lid, DQ_NOV]
        if cnt[0] != dq[lid, DQ_COUNT]:
            return RC_COUNT, cnt[0], lid, dq[lid, DQ_COUNT]
        nov_total += parked
        if dq[lid, DQ_PCPW] >= 0:
            pcp_total += cnt[0]
    rx = st.rx
    if nov_total != rx[RX_NOV]:
        return RC_TOTALS, nov_total, RX_NOV, rx[RX_NOV]
    if pcp_total != rx[RX_PCP_ENTRIES]:
        return RC_TOTALS, pcp_total, RX_PCP_ENTRIES, rx[RX_PCP_ENTRIES]
    ctl = st.xa_ctl
    live = 0
    for xa in range(st.xa_heads.shape[0]):
        live += st.xa_heads[xa, kx.H_NODES]
    if live != ctl[kx.C_LIVE] or live + ctl[kx.C_FREE_TOP] != rx[RX_NEXT_NODE]:
        return RC_POOL, live + ctl[kx.C_FREE_TOP], live, rx[RX_NEXT_NODE]
    total = 0
    pages = 0
    for blk in range(rx[RX_NBLOCKS]):
        p = st.nb_pfn[blk]
        o = st.nb_order[blk]
        z = core.page_zone(st, p)
        if z < 0 or st.z_direct[z] == 0:
            return RC_NODE_ZONE, p, 0, blk
        if not _is_node_page(st, p) or (_w1(st, p) & 0xFFFFFFFFFFFF) != blk \
                or st.owner[p] != core.owner_encode(o, core.MT_UNMOVABLE) or radix_buddy_order(st, p) != o:
            return RC_NODE_PAGE, p, 0, blk
        for i in range(1, 1 << o):
            if _w0_type(st, p + i) != R2_TAIL or _w1(st, p + i) != p:
                return RC_NODE_PAGE, p + i, 0, blk
        if rx[RX_HOST_NODES] == 0 and st.nb_first[blk] != total:
            return RC_NODE_TOTAL, st.nb_first[blk], 0, total
        total += NODES_PER_PAGE << o
        pages += 1 << o
    if pages != rx[RX_NODE_PAGES]:
        return RC_TOTALS, pages, RX_NODE_PAGES, rx[RX_NODE_PAGES]
    if total + rx[RX_HOST_NODES] != rx[RX_NEXT_NODE]:
        return RC_NODE_TOTAL, total + rx[RX_HOST_NODES], 0, rx[RX_NEXT_NODE]
    return RC_OK, np.int64(0), np.int64(0), np.int64(0)


# ------------------------------------------------------------------ Python side


def node_capacity(npages: int) -> int:
    """Node-pool capacity (host arrays, zero-filled lazily): enough for any realistic run.

    An exhausted pool is counted (``node_pool_capacity_exhausted``) and treated like
    lowmem exhaustion, never as corruption.
    """
    return NODES_PER_PAGE * max(8192, min(npages // 16, 1 << 21))


#: RadixDesign.with_options: one subclass per non-default node policy
_POLICY_CLASSES: dict[str, type] = {}


class RadixDesign(BuddyDesign):
    """Kent Overstreet's design: 2-word struct page, free lists as XArray deques."""

    name = "radix"
    words = 2
    page_layout = "radix2"
    memmap_field = "memmap"
    state_cls = RadixState
    metadata_counters = ("free_path_allocations", "free_stalls", "alloc_failed_for_metadata")
    node_policy = "consume"
    #: the option a bare design spec value sets: ``"radix:reserve"`` (see memdesc.mm.page_alloc)
    spec_key = "radix_nodes"
    #: every value of the main option: ``memdesc compare`` runs one variant per value
    spec_values = tuple(POLICIES)
    options = {"radix_nodes": tuple(POLICIES)}

    @classmethod
    def with_options(cls, radix_nodes: str | None = None, **unknown) -> type[RadixDesign]:
        """The design class with options set: ``radix_nodes`` = consume | reserve | host.

        The same options give the same class (``get_design("radix:reserve")`` twice is one class).
        """
        if unknown:
            raise ConfigError(f"radix design: unknown option(s) {', '.join(unknown)}; it takes radix_nodes")
        if radix_nodes is None:
            return cls
        if radix_nodes not in POLICIES:
            raise ConfigError(f"--radix-nodes must be one of {', '.join(POLICIES)}, got {radix_nodes!r}")
        if radix_nodes == RadixDesign.node_policy:
            return RadixDesign
        sub = _POLICY_CLASSES.get(radix_nodes)
        if sub is None:
            sub = type(f"RadixDesign_{radix_nodes}", (RadixDesign,),
                       {"node_policy": radix_nodes, "__module__": __name__,
                        "spec_options": {"radix_nodes": radix_nodes},
                        "__doc__": f"{RadixDesign.__doc__} (tree nodes: {radix_nodes})"})
            _POLICY_CLASSES[radix_nodes] = sub
        return sub

    def __init__(self, layout, config=None, boot: bool = True, npages: int | None = None):
        if self.node_policy not in POLICIES:
            raise ConfigError(f"radix node policy must be one of {', '.join(POLICIES)}, got {self.node_policy!r}")
        super().__init__(layout, config, boot=boot, npages=npages)
        self.state.rx[RX_CTX] = CTX_IDLE
        if boot:
            self._settle()

    def _settle(self) -> None:
        """After boot or a snapshot load: insert anything parked, fill the reserve."""
        rx = self.state.rx
        rx[RX_CTX] = CTX_BOOT
        if rx[RX_NOV]:
            _flush_all(self.state)
        if rx[RX_POLICY] == P_RESERVE:
            need = int(reserve_target(self.state, pending_insertions(self.state)))
            if not _preload(self.state, need):
                rx[RX_RESERVE_SHORT] += 1
        rx[RX_CTX] = CTX_IDLE

    def _make_state(self, zone_fields: dict, npages: int, nlists: int) -> RadixState:
        nz = len(self.layout.zones)
        nbl = nz * NR_PAGE_ORDERS * MIGRATE_TYPES
        mm = hugemem.zeros((npages, 2), np.uint64)
        dq = np.full((nlists, NDQ), -1, np.int64)
        dq[:, DQ_HN] = 0
        dq[:, DQ_TN] = 0
        dq[:, DQ_COUNT] = 0
        dq[:, DQ_NOV] = 0
        # word 0 of a page on each per-CPU list (type pcp, the list's order and cpu); -1: a buddy list
        for cpu in range(self.layout.nr_cpus):
            for z in range(nz):
                for pindex in range(NR_PCP_LISTS):
                    order = int(core.pindex_to_order(pindex))
                    dq[nbl + (cpu * nz + z) * NR_PCP_LISTS + pindex, DQ_PCPW] = \
                        R2_PCP | (order << mmap.R2_ORDER_SHIFT) | (cpu << mmap.R2_CPU_SHIFT)
        cap = node_capacity(npages)
        # zero-filled, so untouched capacity costs no host memory
        meta = np.zeros((cap, kx.M_LEN), np.int64)
        rx = np.zeros(NRX, np.int64)
        rx[RX_POLICY] = POLICIES[self.node_policy]
        rx[RX_CTX] = CTX_BOOT
        rx[RX_NBL] = nbl
        rx[RX_CAP_NODES] = cap
        populated = sum(1 for z in self.layout.zones if z.managed > 0)
        rx[RX_ENDS] = populated * (self.layout.nr_cpus * NR_PCP_LISTS + 2 * NR_PAGE_ORDERS * MIGRATE_TYPES)
        nblk = cap // NODES_PER_PAGE
        return RadixState(**zone_fields, memmap=mm, dq=dq, xa_heads=kx.new_heads(2 * nlists),
                          xa_slots=np.zeros((cap, kx.XA_CHUNK_SIZE), np.int64),
                          xa_marks=np.zeros((cap, kx.XA_MAX_MARKS), np.int64), xa_meta=meta,
                          xa_free=np.zeros(cap, np.int64), xa_ctl=np.zeros(kx.C_LEN, np.int64),
                          xa_xas=np.zeros(kx.X_LEN, np.int64), nb_pfn=np.full(nblk, -1, np.int64),
                          nb_order=np.zeros(nblk, np.int64), nb_first=np.zeros(nblk, np.int64), rx=rx)

    def _init_page_flags(self) -> None:
        mm = self.state.memmap
        for z in self.layout.zones:
            if z.spanned:
                bits = np.uint64(mmap.zone_node_bits(z.node, self.layout.zone_types.index(z.ztype)))
                mm[z.start_pfn:z.end_pfn, 0] |= bits

    def init_from_snapshot(self, reserved, alloc_pfn, alloc_order, alloc_mt, alloc_gfp, free_pfn, free_order,
                           pageblock_mt, pcp_pfn=None, pcp_cpu=None) -> None:
        self.state.rx[RX_CTX] = CTX_BOOT
        super().init_from_snapshot(reserved, alloc_pfn, alloc_order, alloc_mt, alloc_gfp, free_pfn, free_order,
                                   pageblock_mt, pcp_pfn, pcp_cpu)
        self.state.rx[RX_ALLOCS] = len(alloc_pfn)
        self._settle()

    # -- accounting
    def freelist_bytes(self) -> int:
        nlists = self.state.dq.shape[0]
        nz = len(self.layout.zones)
        return nlists * (2 * XA_BYTES + NDQ * 8) + nz * NR_PAGE_ORDERS * 8

    def node_pages(self) -> int:
        return int(self.state.rx[RX_NODE_PAGES])

    def own_pages(self) -> int:
        """Tree-node pages (the design's own metadata)."""
        return self.node_pages()

    def descriptor_bytes(self) -> int:
        """Tree-node memory: every node page (spare nodes and slab tail waste included)."""
        return self.node_pages() * PAGE_SIZE

    def host_bytes(self) -> dict[str, int]:
        """Host memory actually backing the model: every state array, the node pool counted
        by the nodes handed out (the rest of its capacity is untouched zero pages)."""
        st = self.state
        per_node = (kx.XA_CHUNK_SIZE + kx.XA_MAX_MARKS + kx.M_LEN + 1) * 8
        pool = int(st.rx[RX_NEXT_NODE]) * per_node
        other = 0
        for f in RadixState._fields:
            a = getattr(st, f)
            if f in ("xa_slots", "xa_marks", "xa_meta", "xa_free"):
                continue
            other += int(a.nbytes)
        return {"state_arrays": other, "node_pool": pool, "total": other + pool}

    def node_stats(self) -> dict:
        """Tree-node figures: pages, live/spare nodes, parked entries, reserve, counters."""
        st = self.state
        rx = st.rx
        ctl = st.xa_ctl
        free_pages = int(st.z_free.sum()) + int(st.pcp[:, :, core.PCP_COUNT].sum())
        live = int(ctl[kx.C_LIVE])
        pending = int(pending_insertions(st))
        target = int(reserve_target(st, pending)) if rx[RX_POLICY] == P_RESERVE else 0
        out = {
            "policy": self.node_policy,
            "node_pages": int(rx[RX_NODE_PAGES]),
            "tree_node_bytes": self.descriptor_bytes(),
            "nodes_live": live,
            "nodes_spare": int(ctl[kx.C_FREE_TOP]),
            "nodes_per_free_page": live / free_pages if free_pages else 0.0,
            "parked_now": int(rx[RX_NOV]),
            "pending_insertions": pending,
            "reserve_target_nodes": target,
            "reserve_target_bytes": target * NODE_BYTES,
            "free_path_allocations": int(st.stats[core.ST_FREE_PATH_ALLOCS]),
            "free_stalls": int(st.stats[core.ST_FREE_STALLS]),
            "alloc_failed_for_reserve": int(rx[RX_META_FAIL]),
        }
        for k, name in RX_COUNTER_NAMES.items():
            out[name] = int(rx[k])
        return out

    def design_stats(self) -> dict:
        """Every JSON summary's ``design_stats``: :meth:`node_stats`."""
        return self.node_stats()

    def design_check(self) -> str | None:
        code, x, a, b = radix_check(self.state)
        if code != RC_OK:
            return RADIX_CHECK_MESSAGES[int(code)].format(x=int(x), a=int(a), b=int(b))
        return None


register_design(RadixDesign, {
    **typed.RADIX,
    "pa_alloc": radix_pa_alloc,
    "pa_free": radix_pa_free,
    "pa_take": radix_pa_take,
    "pa_drain": radix_pa_drain,
    "pcp_free_bulk": radix_pcp_free_bulk,
    "pa_own_page": radix_own_page,
    "list_add": radix_list_add,
    "list_del": radix_list_del,
    "list_first": radix_list_first,
    "list_last": radix_list_last,
    "list_next": radix_list_next,
    "set_buddy": radix_set_buddy,
    "clear_buddy": radix_clear_buddy,
    "is_buddy": radix_is_buddy,
    "buddy_order": radix_buddy_order,
    "mark_allocated": radix_mark_allocated,
    "mark_freed": radix_mark_freed,
    "mark_reserved": radix_mark_reserved,
})
