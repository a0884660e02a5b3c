"""The slab allocator (mm/slub.c, simplified): kmem_caches of fixed-size kernel objects.

Theory
------
A *kmem_cache* hands out objects of one size.  It carves them from *slabs*: blocks of
2^order pages that it takes from the machine's page allocator and gives back when they
are empty.  memdesc needs it because later designs keep their metadata in modelled
memory -- the ``radix`` design's XArray nodes (576 bytes, 7 per 4 KiB page) and the
``vmem`` design's ``struct buddy`` descriptors live in slab caches -- and the research
question is whether *freeing* memory ever has to *allocate* memory.  So this allocator
makes both halves explicit and countable:

* ``kmem_cache_alloc_nb`` only takes an object from a slab the cache already has; when
  there is none it returns ``E_EMPTY`` and never calls the page allocator itself.
* *Refill* (``kmem_cache_add_slab_nb``) is a separate step: the caller, on an
  allocation path, gets 2^order pages from the page allocator and hands them to the
  cache -- the ``xas_nomem()`` pattern.  ``refill_from_pages`` is that step for callers
  that may use ``dispatch.pa_alloc``.
* ``kmem_cache_free_nb`` never allocates; it reports when a slab became empty beyond
  the cache's ``min_partial`` so the caller can discard it (``discard_slab``), which
  only *frees* pages.
* A caller declares "I am on a free path" with ``slab_enter_free_path_nb`` /
  ``slab_leave_free_path_nb`` (a nesting depth, like ``memalloc_noio_save()`` scopes);
  every object allocation and every refill made inside such a scope is counted
  (``alloc_on_free_path``, ``alloc_slab_on_free_path``).  A design whose free path
  allocates shows it in these counters.

Object layout (SLUB without debugging): object ``j`` of a slab at ``pfn`` is at physical
address ``(pfn << PAGE_SHIFT) + j * size``; ``size`` is the requested object size rounded
up to the alignment, at least 16 bytes (a memdesc's low 4 bits are its type tag, so every
memdesc is 16-byte aligned); ``objects = (PAGE_SIZE << order) // size`` (at most
MAX_OBJS_PER_PAGE = 32767, as SLUB's 15-bit ``objects`` field); the tail
``(PAGE_SIZE << order) - objects * size`` of every slab is waste.  Slab pages come only
from directly-mapped zones (``GFP_SLAB_BUG_MASK`` forbids ``__GFP_HIGHMEM`` and
``__GFP_DMA32``; ``refill_from_pages`` also verifies the zone of the page it got).

Slab pages are typed memory
---------------------------
A slab page is an allocation of memdesc type *slab*, described by a ``struct slab``.  Where
the design overlays descriptors on its 64-byte struct page (``linux``) the struct slab *is*
the head page (``page_type`` PGTY_slab) and nothing more is allocated.  Where struct page is
smaller (:func:`descriptors_separate`: ``linux:32``, ``radix``, ``vmem``) every slab page
carries a separately allocated struct slab (``SF_DESC``: its address; the design's words
point to it through ``dispatch.pa_set_memdesc``), taken from one more cache,
``memdesc_slab`` (``scfg[SCFG_SLABDESC]``, 64 bytes, the type table's ``struct slab``).  That
cache's own pages need struct slabs too -- the recursion -- and it is ended the way SLUB
bootstraps ``kmem_cache_node`` (``early_kmem_cache_node_alloc()`` puts the node in the slab it
allocates): a page of ``memdesc_slab`` is **self-hosted**, its first object is its own struct
slab.  So a refill makes at most two page allocations (a struct-slab page, then the cache's
page) and never recurses deeper; the struct-slab cache never discards its pages
(CFL_NO_DISCARD: like illumos' ``vmem_seg`` pages, they stay), so freeing a slab page -- its
struct slab goes back to ``memdesc_slab`` -- never cascades.  Bound: the struct-slab cache
holds at most ``1 + peak slab pages / 63`` pages.  HighMem never holds a slab (below).

Fault injection (``should_failslab()``, mm/failslab.c): every cache created with
``CFL_FAILSLAB`` (the descriptor caches) fails an allocation with the probability
``scfg[SCFG_FAIL_THRESH] / 2**53`` (``AllocConfig.fail_descriptor_alloc``), drawn from a
seeded xorshift generator (``rng``): ``kmem_cache_alloc_nb`` returns ``E_FAILSLAB`` and the
caller must not refill.

State (:class:`SlabState`, numpy arrays, any number of caches)
--------------------------------------------------------------
* ``caches[C, NR_CF]``: per cache its geometry (``size``, ``object_size``, ``align``,
  ``order``, ``objects``, ``min_partial``), live flag, objects in use, number of slabs,
  and the heads/tails/lengths of three slab lists: *partial* (0 < inuse < objects),
  *full* (inuse == objects) and *empty* (inuse == 0).  SLUB keeps empty slabs on the
  partial list; memdesc keeps them apart so allocation prefers partial slabs and
  shrinking finds empty ones in O(1).
* ``slabs[S, NR_SF]``: per slab (``struct slab``) its pfn, cache, inuse, freelist head,
  list links, the base of its objects in ``objnext``, its struct slab's address (-1:
  overlaid) and the design's cookie for it.  A slab slot freed by a
  discard goes on its cache's free-slot list and is reused only by that cache, so its
  ``objnext`` range always fits (bookkeeping grows with each cache's peak slab count).
* ``objnext[P]`` (int32): the per-slab freelists, like SLUB's free pointer stored in
  each free object: the index of the next free object, ``-1`` at the end, and
  ``OBJ_ALLOCATED`` (-2) for an object in use (double frees are detected in O(1)).
  A new slab's freelist is 0, 1, 2, ... (no CONFIG_SLAB_FREELIST_RANDOM); a freed
  object goes to the head of its slab's freelist (LIFO, as SLUB).
* ``hkey``/``hval``: ``virt_to_slab()``: an open-addressing hash (linear probing,
  backward-shift deletion, load <= 1/2) from *every* pfn of every slab to its slab --
  its size follows the slab pages, never the machine (machines may be 1 TiB).
* ``cstat[C, NR_SLAB_STATS]``: counters (``SLAB_STAT_NAMES``), ``meta``: global
  counts and the free-path depth.

Policies: allocation takes the first partial slab, else the first empty slab (a new
slab goes to the head of the empty list).  A free into a full slab moves it to the tail
of the partial list (SLUB's ``DEACTIVATE_TO_TAIL``); a slab that becomes empty goes to
the head of the empty list, and the free returns ``SLAB_FREE_DISCARD`` when the cache
already has ``min_partial`` other partial-or-empty slabs (SLUB's ``slab_empty`` test
``n->nr_partial >= s->min_partial``).  ``min_partial`` defaults to SLUB's
``clamp(ilog2(size) / 2, MIN_PARTIAL=5, MAX_PARTIAL=10)``.  Shrinking releases empty
slabs from the tail of the empty list while the cache has more than ``keep``
partial-or-empty slabs (``keep=0``: ``kmem_cache_shrink()``, every empty slab).

Capacity: arrays grow in Python (doubling) between kernel calls.  A kernel that would
need more room returns ``E_NOCAP_SLABS``/``E_NOCAP_OBJS``/``E_NOCAP_HASH`` *before*
changing anything; the caller returns to Python, calls :func:`slab_state_grow` (or
:func:`slab_state_reserve` up front) and retries.

Calling convention for designs (numba)
--------------------------------------
A design keeps a :class:`SlabState` in its own state (say a field ``st.slab``; when the
slab state grows, the design rebuilds its state around the new one), creates its
caches in Python with :func:`slab_state_add_cache`, and runs kernels through
:func:`slab_state_call` (grow and retry on ``E_NOCAP_*``) or reserves room up front with
:func:`slab_state_reserve`.  In its kernels::

    addr = kmem_cache_alloc_nb(st.slab, CACHE)
    if addr == E_EMPTY:                       # only ever on an allocation path
        rc = refill_from_pages(st.slab, CACHE, pa_st, gfp, cpu)   # pa_alloc + add_slab
        if rc < 0:
            return rc        # E_NOMEM: fail the operation; E_NOCAP_*: grow in Python, retry
        addr = kmem_cache_alloc_nb(st.slab, CACHE)

    slab_enter_free_path_nb(st.slab)          # around a free path: counts what it allocates
    ...
    rc = kmem_cache_free_nb(st.slab, CACHE, addr)    # never allocates
    if rc == SLAB_FREE_DISCARD:
        discard_slabs_nb(st.slab, CACHE, -1, pa_st, cpu)   # frees pages (pa_free) only
    slab_leave_free_path_nb(st.slab)

``kmem_cache_preload_nb`` (like ``radix_tree_preload()``) refills *before* entering a free
path so that the free path finds enough free objects.  numba cannot compile mutual
recursion between generic kernels: a design whose own ``pa_alloc`` allocates from this
slab must not call ``refill_from_pages`` on its own state from inside ``pa_alloc``;
it takes the pages from its buddy core directly (any function that returns a pfn) and
hands them to ``kmem_cache_add_slab_nb``, or preloads.  ``refill_from_pages`` needs only
``dispatch.pa_alloc``/``pa_free`` and the shared zone fields of the state
(``core.page_zone`` and ``z_direct``, for the direct-mapped check).

The Python facade is :class:`KmemCache` (one cache) over a :class:`SlabAllocator` (all
caches of a machine, ``/proc/slabinfo``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError, DoubleFree, InvariantViolation, MemdescError
from memdesc.mm import gfp as gfpmod
from memdesc.mm import memdesc as mdesc
from memdesc.mm.machine import to_gfp
from memdesc.mm.memmap import MD_BUDDY_ALLOC, MD_SLAB
from memdesc.mm.mmzone import MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc.core import page_zone
from memdesc.mm.page_alloc.dispatch import pa_alloc, pa_clear_memdesc, pa_free, pa_page_memdesc, pa_set_memdesc

# ------------------------------------------------------------------ constants

#: memdescs are 16-byte aligned (the low 4 bits of a memdesc are its type)
MEMDESC_MIN_ALIGN = 16
#: SLUB's limits (mm/slub.c)
MAX_OBJS_PER_PAGE = 32767
MIN_PARTIAL = 5
MAX_PARTIAL = 10
#: gfp bits a slab allocation must not carry (mm/internal.h)
GFP_SLAB_BUG_MASK = gfpmod.__GFP_DMA32 | gfpmod.__GFP_HIGHMEM | ~gfpmod.__GFP_BITS_MASK
GFP_COMP = gfpmod.__GFP_COMP

# return codes (>= 0 is success: an address, a slab slot, a count, or SLAB_FREE_DISCARD)
OK = 0
SLAB_FREE_DISCARD = 1
E_EMPTY = -1
E_BAD_CACHE = -2
E_FOREIGN = -3
E_WRONG_CACHE = -4
E_MISALIGNED = -5
E_DOUBLE_FREE = -6
E_PFN_ALIGN = -7
E_PFN_BUSY = -8
E_NOMEM = -9
E_NOT_DIRECT = -10
E_PAGE_FREE = -11
E_FAILSLAB = -12
E_NOCAP_SLABS = -16
E_NOCAP_OBJS = -17
E_NOCAP_HASH = -18

RC_NAMES = {
    E_EMPTY: "E_EMPTY", E_BAD_CACHE: "E_BAD_CACHE", E_FOREIGN: "E_FOREIGN", E_WRONG_CACHE: "E_WRONG_CACHE",
    E_MISALIGNED: "E_MISALIGNED", E_DOUBLE_FREE: "E_DOUBLE_FREE", E_PFN_ALIGN: "E_PFN_ALIGN",
    E_PFN_BUSY: "E_PFN_BUSY", E_NOMEM: "E_NOMEM", E_NOT_DIRECT: "E_NOT_DIRECT", E_PAGE_FREE: "E_PAGE_FREE",
    E_FAILSLAB: "E_FAILSLAB",
    E_NOCAP_SLABS: "E_NOCAP_SLABS", E_NOCAP_OBJS: "E_NOCAP_OBJS", E_NOCAP_HASH: "E_NOCAP_HASH",
}

# cache fields
(CF_SIZE, CF_OBJECT_SIZE, CF_ALIGN, CF_ORDER, CF_OBJS, CF_MIN_PARTIAL, CF_LIVE, CF_INUSE, CF_NR_SLABS,
 CF_FREESLOT) = range(10)
CF_HEAD = 10  # + list
CF_TAIL = 13  # + list
CF_NR = 16  # + list
CF_FLAGS = 19  # CFL_* bits
NR_CF = 20
#: cache flags: a descriptor cache whose allocations fault injection may fail (should_failslab());
#: a cache whose empty slabs are never discarded (the self-hosted struct-slab cache)
CFL_FAILSLAB = 1
CFL_NO_DISCARD = 2
#: min_partial of a CFL_NO_DISCARD cache: a free never reports SLAB_FREE_DISCARD
NO_DISCARD_MIN_PARTIAL = 1 << 62

# slab lists (SF_LIST values)
L_PARTIAL, L_FULL, L_EMPTY = 0, 1, 2
L_FREESLOT = 3  # an unused slot on its cache's free-slot list
LIST_NAMES = ("partial", "full", "empty")

# slab fields
SF_PFN, SF_CACHE, SF_INUSE, SF_FREE, SF_NEXT, SF_PREV, SF_LIST, SF_OBASE, SF_DESC, SF_COOKIE = range(10)
NR_SF = 10

OBJ_ALLOCATED = -2

# statistics per cache
(SS_ALLOC, SS_FREE, SS_ALLOC_EMPTY, SS_ALLOC_SLAB, SS_FREE_SLAB, SS_ALLOC_FREE_PATH, SS_ALLOC_SLAB_FREE_PATH,
 SS_ALLOC_SLAB_FAILED, SS_FREE_REJECTED, SS_FAILSLAB) = range(10)
NR_SLAB_STATS = 10
SLAB_STAT_NAMES = (
    "alloc", "free", "alloc_empty", "alloc_slab", "free_slab", "alloc_on_free_path",
    "alloc_slab_on_free_path", "alloc_slab_failed", "free_rejected", "failslab",
)

# global meta
M_NCACHES, M_NSLOTS, M_OBJTOP, M_HUSED, M_FREE_PATH, M_REJECTED, M_FP_ALLOCS = range(7)
NR_META = 8

# slab-wide configuration (scfg): the struct-slab cache (-1: struct slab overlays struct page,
# the linux design), the failslab threshold (rate * 2**53; 0 = off)
SCFG_SLABDESC, SCFG_FAIL_THRESH = range(2)
NR_SCFG = 4
#: bytes of a separately allocated struct slab (the type table, memdesc.mm.memdesc.SLAB)
STRUCT_SLAB_BYTES = mdesc.SLAB.bytes


class SlabStateType(StructType):
    pass


class SlabState(StructProxy):
    """Every kmem_cache of one slab allocator (see the module docstring): a numba struct (passed
    to kernels as one pointer) whose fields are these arrays; ``_replace`` and iteration as a
    NamedTuple's.

    caches int64[C, NR_CF]; cstat int64[C, NR_SLAB_STATS]; slabs int64[S, NR_SF]; objnext
    int32[P]; hkey/hval int64[H] (pfn -> slab slot, -1 = empty, H a power of two); meta
    int64[NR_META]; scfg int64[NR_SCFG]; rng uint64[1] (the failslab generator)."""

    _fields = ("caches", "cstat", "slabs", "objnext", "hkey", "hval", "meta", "scfg", "rng")

    def _replace(self, **changes) -> SlabState:
        return SlabState(**{f: changes.get(f, getattr(self, f)) for f in self._fields})

    def __iter__(self):
        return (getattr(self, f) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)


define_struct(SlabState, SlabStateType)


# ------------------------------------------------------------------ hash: pfn -> slab


@njit(inline="always")
def _hslot(pfn, mask):
    # two products that stay below 2**62: no int64 overflow for any pfn < 2**52
    h = (pfn & 0xFFFFFF) * 0x9E3779B1 + (pfn >> 24) * 0x85EBCA77
    h ^= h >> 29
    return h & mask


@njit(inline="always")
def _hash_find(st, pfn):
    """Slot of pfn in the hash, or -1."""
    hk = st.hkey
    mask = hk.shape[0] - 1
    i = _hslot(pfn, mask)
    while True:
        k = hk[i]
        if k == pfn:
            return i
        if k < 0:
            return -1
        i = (i + 1) & mask


@njit
def _hash_insert(hk, hv, pfn, val):
    mask = hk.shape[0] - 1
    i = _hslot(pfn, mask)
    while hk[i] >= 0:
        i = (i + 1) & mask
    hk[i] = pfn
    hv[i] = val


@njit
def _hash_delete_at(st, i):
    """Remove slot i (linear probing, backward-shift deletion: no tombstones)."""
    hk = st.hkey
    hv = st.hval
    mask = hk.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        k = hk[j]
        if k < 0:
            break
        home = _hslot(k, mask)
        # keep entry j where it is if its home lies cyclically in (i, j]
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if stays:
            continue
        hk[i] = k
        hv[i] = hv[j]
        i = j
    hk[i] = -1
    hv[i] = -1


@njit
def _rehash(old_k, old_v, new_k, new_v):
    for i in range(old_k.shape[0]):
        if old_k[i] >= 0:
            _hash_insert(new_k, new_v, old_k[i], old_v[i])


# ------------------------------------------------------------------ slab lists


@njit(inline="always")
def _cache_ok(st, c):
    return 0 <= c < st.meta[M_NCACHES] and st.caches[c, CF_LIVE] != 0


@njit(inline="always")
def _list_add(st, c, s, lst, tail):
    sl = st.slabs
    ca = st.caches
    sl[s, SF_LIST] = lst
    if tail:
        last = ca[c, CF_TAIL + lst]
        sl[s, SF_NEXT] = -1
        sl[s, SF_PREV] = last
        if last < 0:
            ca[c, CF_HEAD + lst] = s
        else:
            sl[last, SF_NEXT] = s
        ca[c, CF_TAIL + lst] = s
    else:
        first = ca[c, CF_HEAD + lst]
        sl[s, SF_PREV] = -1
        sl[s, SF_NEXT] = first
        if first < 0:
            ca[c, CF_TAIL + lst] = s
        else:
            sl[first, SF_PREV] = s
        ca[c, CF_HEAD + lst] = s
    ca[c, CF_NR + lst] += 1


@njit(inline="always")
def _list_del(st, c, s):
    sl = st.slabs
    ca = st.caches
    lst = sl[s, SF_LIST]
    nxt = sl[s, SF_NEXT]
    prv = sl[s, SF_PREV]
    if prv < 0:
        ca[c, CF_HEAD + lst] = nxt
    else:
        sl[prv, SF_NEXT] = nxt
    if nxt < 0:
        ca[c, CF_TAIL + lst] = prv
    else:
        sl[nxt, SF_PREV] = prv
    ca[c, CF_NR + lst] -= 1
    sl[s, SF_LIST] = -1
    sl[s, SF_NEXT] = -1
    sl[s, SF_PREV] = -1


# ------------------------------------------------------------------ free-path scope


@njit
def slab_enter_free_path_nb(st):
    """Declare that the caller is on a free path (nests); allocations are counted as such."""
    st.meta[M_FREE_PATH] += 1


@njit
def slab_leave_free_path_nb(st):
    """Leave the innermost free-path scope."""
    if st.meta[M_FREE_PATH] > 0:
        st.meta[M_FREE_PATH] -= 1


# ------------------------------------------------------------------ lookups


@njit(inline="always")
def virt_to_slab_nb(st, addr):
    """virt_to_slab(): the slab slot holding physical address addr, or -1."""
    if addr < 0:
        return -1
    i = _hash_find(st, addr >> PAGE_SHIFT)
    if i < 0:
        return -1
    return st.hval[i]


@njit
def virt_to_cache_nb(st, addr):
    """virt_to_cache(): the cache whose slab holds addr, or -1."""
    s = virt_to_slab_nb(st, addr)
    if s < 0:
        return -1
    return st.slabs[s, SF_CACHE]


@njit
def objects_free_nb(st, c):
    """Free objects in the cache's slabs (what it can hand out without a refill)."""
    if not _cache_ok(st, c):
        return E_BAD_CACHE
    ca = st.caches
    return ca[c, CF_NR_SLABS] * ca[c, CF_OBJS] - ca[c, CF_INUSE]


# ------------------------------------------------------------------ alloc / free


@njit(inline="always")
def should_failslab(st, c):
    """Fault injection (mm/failslab.c): True when this allocation of descriptor cache c is to fail."""
    thresh = st.scfg[SCFG_FAIL_THRESH]
    if thresh == 0 or (st.caches[c, CF_FLAGS] & CFL_FAILSLAB) == 0:
        return False
    x = st.rng[0]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    st.rng[0] = x
    if np.int64(x >> np.uint64(11)) < thresh:
        st.cstat[c, SS_FAILSLAB] += 1
        return True
    return False


@njit(inline="always")
def kmem_cache_alloc_nb(st, c):
    """Take a free object: its physical address, E_EMPTY (no free object: refill), E_BAD_CACHE,
    or E_FAILSLAB (fault injection failed it: do not refill).

    Never calls the page allocator."""
    if not _cache_ok(st, c):
        return E_BAD_CACHE
    if should_failslab(st, c):
        return E_FAILSLAB
    return _take_object(st, c)


@njit(inline="always")
def _take_object(st, c):
    """kmem_cache_alloc_nb without fault injection (the cache is valid)."""
    ca = st.caches
    sl = st.slabs
    s = ca[c, CF_HEAD + L_PARTIAL]
    if s < 0:
        s = ca[c, CF_HEAD + L_EMPTY]
        if s < 0:
            st.cstat[c, SS_ALLOC_EMPTY] += 1
            return E_EMPTY
    j = sl[s, SF_FREE]
    base = sl[s, SF_OBASE]
    sl[s, SF_FREE] = st.objnext[base + j]
    st.objnext[base + j] = OBJ_ALLOCATED
    inuse = sl[s, SF_INUSE] + 1
    sl[s, SF_INUSE] = inuse
    if inuse == ca[c, CF_OBJS]:
        _list_del(st, c, s)
        _list_add(st, c, s, L_FULL, False)
    elif inuse == 1:
        _list_del(st, c, s)
        _list_add(st, c, s, L_PARTIAL, False)
    ca[c, CF_INUSE] += 1
    st.cstat[c, SS_ALLOC] += 1
    if st.meta[M_FREE_PATH] > 0:
        st.cstat[c, SS_ALLOC_FREE_PATH] += 1
        st.meta[M_FP_ALLOCS] += 1
    return (sl[s, SF_PFN] << PAGE_SHIFT) + j * ca[c, CF_SIZE]


@njit(inline="always")
def _reject(st, c):
    if c >= 0:
        st.cstat[c, SS_FREE_REJECTED] += 1
    else:
        st.meta[M_REJECTED] += 1


@njit(inline="always")
def kmem_cache_free_nb(st, c, addr):
    """Free the object at addr (c = -1: kfree(), any cache).  Never allocates.

    Returns OK, SLAB_FREE_DISCARD (freed; its slab became empty and the cache holds at
    least min_partial other partial/empty slabs: the caller may discard), or an error:
    E_BAD_CACHE, E_FOREIGN (no slab there), E_WRONG_CACHE, E_MISALIGNED (not an object
    start), E_DOUBLE_FREE.  On error only the free_rejected counter changes."""
    if c >= 0 and not _cache_ok(st, c):
        return E_BAD_CACHE
    s = virt_to_slab_nb(st, addr)
    if s < 0:
        _reject(st, c)
        return E_FOREIGN
    sl = st.slabs
    ca = st.caches
    sc = sl[s, SF_CACHE]
    if c >= 0 and sc != c:
        _reject(st, c)
        return E_WRONG_CACHE
    c = sc
    off = addr - (sl[s, SF_PFN] << PAGE_SHIFT)
    size = ca[c, CF_SIZE]
    objs = ca[c, CF_OBJS]
    j = off // size
    if off - j * size != 0 or j >= objs:
        _reject(st, c)
        return E_MISALIGNED
    base = sl[s, SF_OBASE]
    if st.objnext[base + j] != OBJ_ALLOCATED:
        _reject(st, c)
        return E_DOUBLE_FREE
    st.objnext[base + j] = sl[s, SF_FREE]
    sl[s, SF_FREE] = j
    inuse = sl[s, SF_INUSE] - 1
    sl[s, SF_INUSE] = inuse
    ca[c, CF_INUSE] -= 1
    st.cstat[c, SS_FREE] += 1
    rc = OK
    if inuse == 0:
        on_partial = 1 if sl[s, SF_LIST] == L_PARTIAL else 0
        others = ca[c, CF_NR + L_PARTIAL] + ca[c, CF_NR + L_EMPTY] - on_partial
        _list_del(st, c, s)
        _list_add(st, c, s, L_EMPTY, False)
        if others >= ca[c, CF_MIN_PARTIAL]:
            rc = SLAB_FREE_DISCARD
    elif inuse == objs - 1:
        _list_del(st, c, s)
        _list_add(st, c, s, L_PARTIAL, True)
    return rc


@njit
def kfree_nb(st, addr):
    """kfree(): free addr in whichever cache owns it (see kmem_cache_free_nb)."""
    return kmem_cache_free_nb(st, -1, addr)


# ------------------------------------------------------------------ refill / shrink


@njit
def kmem_cache_can_add_slab_nb(st, c):
    """OK if kmem_cache_add_slab_nb has room for one more slab of cache c, else E_NOCAP_*."""
    if not _cache_ok(st, c):
        return E_BAD_CACHE
    ca = st.caches
    if ca[c, CF_FREESLOT] < 0:
        if st.meta[M_NSLOTS] >= st.slabs.shape[0]:
            return E_NOCAP_SLABS
        if st.meta[M_OBJTOP] + ca[c, CF_OBJS] > st.objnext.shape[0]:
            return E_NOCAP_OBJS
    if 2 * (st.meta[M_HUSED] + (1 << ca[c, CF_ORDER])) > st.hkey.shape[0]:
        return E_NOCAP_HASH
    return OK


@njit
def kmem_cache_add_slab_nb(st, c, pfn):
    """Hand 2^order pages at pfn (just allocated by the caller) to cache c: the refill step.

    Returns the new slab's slot (>= 0) or, with nothing changed, E_BAD_CACHE, E_NOCAP_*,
    E_PFN_ALIGN (pfn not aligned to 2^order) or E_PFN_BUSY (a page already in a slab).
    Counted as alloc_slab (and alloc_slab_on_free_path inside a free-path scope)."""
    rc = kmem_cache_can_add_slab_nb(st, c)
    if rc < 0:
        return rc
    ca = st.caches
    sl = st.slabs
    order = ca[c, CF_ORDER]
    npages = 1 << order
    if pfn < 0 or (pfn & (npages - 1)) != 0:
        return E_PFN_ALIGN
    for i in range(npages):
        if _hash_find(st, pfn + i) >= 0:
            return E_PFN_BUSY
    objs = ca[c, CF_OBJS]
    s = ca[c, CF_FREESLOT]
    if s >= 0:
        ca[c, CF_FREESLOT] = sl[s, SF_NEXT]
    else:
        s = st.meta[M_NSLOTS]
        st.meta[M_NSLOTS] = s + 1
        sl[s, SF_OBASE] = st.meta[M_OBJTOP]
        st.meta[M_OBJTOP] += objs
        sl[s, SF_CACHE] = c
    sl[s, SF_PFN] = pfn
    sl[s, SF_INUSE] = 0
    sl[s, SF_FREE] = 0
    sl[s, SF_DESC] = -1
    sl[s, SF_COOKIE] = 0
    base = sl[s, SF_OBASE]
    on = st.objnext
    for j in range(objs - 1):
        on[base + j] = j + 1
    on[base + objs - 1] = -1
    for i in range(npages):
        _hash_insert(st.hkey, st.hval, pfn + i, s)
    st.meta[M_HUSED] += npages
    _list_add(st, c, s, L_EMPTY, False)
    ca[c, CF_NR_SLABS] += 1
    st.cstat[c, SS_ALLOC_SLAB] += 1
    if st.meta[M_FREE_PATH] > 0:
        st.cstat[c, SS_ALLOC_SLAB_FREE_PATH] += 1
        st.meta[M_FP_ALLOCS] += 1
    return s


@njit
def _release_slab(st, c, s):
    """Take an empty slab out of the cache (its pages go back to the caller)."""
    ca = st.caches
    sl = st.slabs
    _list_del(st, c, s)
    pfn = sl[s, SF_PFN]
    npages = 1 << ca[c, CF_ORDER]
    for i in range(npages):
        _hash_delete_at(st, _hash_find(st, pfn + i))
    st.meta[M_HUSED] -= npages
    sl[s, SF_PFN] = -1
    sl[s, SF_FREE] = -1
    sl[s, SF_DESC] = -1
    sl[s, SF_COOKIE] = 0
    sl[s, SF_LIST] = L_FREESLOT
    sl[s, SF_NEXT] = ca[c, CF_FREESLOT]
    ca[c, CF_FREESLOT] = s
    ca[c, CF_NR_SLABS] -= 1
    st.cstat[c, SS_FREE_SLAB] += 1


@njit(inline="always")
def _keep_limit(st, c, keep):
    return st.caches[c, CF_MIN_PARTIAL] if keep < 0 else keep


@njit(inline="always")
def _may_shrink(st, c, keep):
    ca = st.caches
    return ca[c, CF_NR + L_EMPTY] > 0 and ca[c, CF_NR + L_PARTIAL] + ca[c, CF_NR + L_EMPTY] > keep


@njit
def kmem_cache_shrink_nb(st, c, out_pfns, keep):
    """Release empty slabs while the cache has more than keep partial-or-empty slabs
    (keep < 0: its min_partial; 0: every empty slab, kmem_cache_shrink()).

    The first pfn of each released slab (2^order pages, to be freed by the caller with
    that order: discard_slab) is written to out_pfns; returns how many (at most
    len(out_pfns); call again while it returns len(out_pfns)), or E_BAD_CACHE."""
    if not _cache_ok(st, c):
        return E_BAD_CACHE
    lim = _keep_limit(st, c, keep)
    n = 0
    while n < out_pfns.shape[0] and _may_shrink(st, c, lim):
        s = st.caches[c, CF_TAIL + L_EMPTY]
        out_pfns[n] = st.slabs[s, SF_PFN]
        desc = st.slabs[s, SF_DESC]
        n += 1
        _release_slab(st, c, s)
        _put_slab_desc(st, c, desc)
    return n


@njit(inline="always")
def _put_slab_desc(st, c, desc):
    """The struct slab of a slab just released goes back to its cache (a free: never allocates;
    the struct-slab cache never discards, so nothing cascades)."""
    sc = st.scfg[SCFG_SLABDESC]
    if desc >= 0 and c != sc:
        kmem_cache_free_nb(st, sc, desc)


@njit
def discard_slabs_nb(st, c, keep, pa_st, cpu):
    """kmem_cache_shrink_nb + free the pages with dispatch.pa_free (discard_slab()).

    Only frees.  Returns the number of slabs released, E_BAD_CACHE, or E_PAGE_FREE when
    the page allocator refused a slab page (that slab is left in the cache)."""
    if not _cache_ok(st, c):
        return E_BAD_CACHE
    lim = _keep_limit(st, c, keep)
    order = st.caches[c, CF_ORDER]
    n = 0
    while _may_shrink(st, c, lim):
        s = st.caches[c, CF_TAIL + L_EMPTY]
        pfn = st.slabs[s, SF_PFN]
        desc = st.slabs[s, SF_DESC]
        pa_clear_memdesc(pa_st, pfn, order, st.slabs[s, SF_COOKIE])
        if pa_free(pa_st, pfn, order, cpu) != 0:
            st.slabs[s, SF_COOKIE] = pa_set_memdesc(pa_st, pfn, order, MD_SLAB, desc)
            return E_PAGE_FREE
        _release_slab(st, c, s)
        _put_slab_desc(st, c, desc)
        n += 1
    return n


@njit
def _slab_page_alloc(st, c, pa_st, gfp, cpu):
    """allocate_slab()'s page: 2^order pages from pa_alloc (__GFP_COMP for order > 0) in a
    directly-mapped zone; the pfn, or E_NOMEM / E_NOT_DIRECT (counted as alloc_slab_failed)."""
    order = st.caches[c, CF_ORDER]
    g = gfp | GFP_COMP if order > 0 else gfp
    pfn = pa_alloc(pa_st, g, order, cpu)
    if pfn < 0:
        st.cstat[c, SS_ALLOC_SLAB_FAILED] += 1
        return E_NOMEM
    z = page_zone(pa_st, pfn)
    if z < 0 or pa_st.z_direct[z] == 0:
        pa_free(pa_st, pfn, order, cpu)
        st.cstat[c, SS_ALLOC_SLAB_FAILED] += 1
        return E_NOT_DIRECT
    return pfn


@njit
def _install_slab(st, c, pfn, desc, pa_st):
    """Hand the slab page to cache c (capacity was checked) and type it: memdesc type slab,
    described by the struct slab at desc (-1: overlaid on struct page)."""
    s = kmem_cache_add_slab_nb(st, c, pfn)
    st.slabs[s, SF_DESC] = desc
    st.slabs[s, SF_COOKIE] = pa_set_memdesc(pa_st, pfn, st.caches[c, CF_ORDER], MD_SLAB, desc)
    return s


@njit
def _refill_slabdesc(st, pa_st, gfp, cpu):
    """A new page for the struct-slab cache.  Its own struct slab is its first object
    (self-hosted, as SLUB's early_kmem_cache_node_alloc() puts a kmem_cache_node in the slab
    it allocates), so this needs no further descriptor: the recursion ends here."""
    sc = st.scfg[SCFG_SLABDESC]
    pfn = _slab_page_alloc(st, sc, pa_st, gfp, cpu)
    if pfn < 0:
        return pfn
    s = kmem_cache_add_slab_nb(st, sc, pfn)
    # the cache had no free object (that is why it is refilled): object 0 of the new slab is next
    addr = _take_object(st, sc)
    st.slabs[s, SF_DESC] = addr
    st.slabs[s, SF_COOKIE] = pa_set_memdesc(pa_st, pfn, st.caches[sc, CF_ORDER], MD_SLAB, addr)
    return s


@njit
def _can_refill(st, c):
    """Room for one slab of c and, with separate struct slabs, one of the struct-slab cache."""
    rc = kmem_cache_can_add_slab_nb(st, c)
    if rc < 0:
        return rc
    sc = st.scfg[SCFG_SLABDESC]
    if sc < 0 or sc == c:
        return OK
    ca = st.caches
    if ca[c, CF_FREESLOT] < 0 and ca[sc, CF_FREESLOT] < 0:
        if st.meta[M_NSLOTS] + 2 > st.slabs.shape[0]:
            return E_NOCAP_SLABS
        if st.meta[M_OBJTOP] + ca[c, CF_OBJS] + ca[sc, CF_OBJS] > st.objnext.shape[0]:
            return E_NOCAP_OBJS
    if 2 * (st.meta[M_HUSED] + (1 << ca[c, CF_ORDER]) + (1 << ca[sc, CF_ORDER])) > st.hkey.shape[0]:
        return E_NOCAP_HASH
    return OK


@njit
def refill_from_pages(st, c, pa_st, gfp, cpu):
    """Refill cache c with one slab from the page allocator state pa_st (allocate_slab()).

    The slab page is typed memory (memdesc type slab).  Where the design allocates
    descriptors separately (``scfg[SCFG_SLABDESC] >= 0``), its ``struct slab`` comes first
    from the struct-slab cache -- which, when empty, is refilled with a self-hosted page
    (:func:`_refill_slabdesc`): at most two page allocations, never a deeper recursion.
    Then 2^order pages with dispatch.pa_alloc (adding __GFP_COMP for order > 0) from a
    directly-mapped zone, handed to kmem_cache_add_slab_nb and typed with
    dispatch.pa_set_memdesc.  Call it on allocation paths only.  Returns the slab slot
    (>= 0), E_NOCAP_* (checked first: nothing is allocated), E_NOMEM (the page allocator
    failed, or the struct slab could not be had: counted as alloc_slab_failed),
    E_NOT_DIRECT (the page allocator returned a page of a zone that is not directly mapped;
    the page is given back), E_BAD_CACHE."""
    rc = _can_refill(st, c)
    if rc < 0:
        return rc
    sc = st.scfg[SCFG_SLABDESC]
    if sc < 0:
        pfn = _slab_page_alloc(st, c, pa_st, gfp, cpu)
        if pfn < 0:
            return pfn
        return _install_slab(st, c, pfn, np.int64(-1), pa_st)
    if c == sc:
        return _refill_slabdesc(st, pa_st, gfp, cpu)
    desc = kmem_cache_alloc_nb(st, sc)
    if desc == E_EMPTY:
        rc = _refill_slabdesc(st, pa_st, gfp, cpu)
        if rc < 0:
            st.cstat[c, SS_ALLOC_SLAB_FAILED] += 1
            return E_NOMEM
        desc = kmem_cache_alloc_nb(st, sc)
    if desc < 0:
        st.cstat[c, SS_ALLOC_SLAB_FAILED] += 1
        return E_NOMEM
    pfn = _slab_page_alloc(st, c, pa_st, gfp, cpu)
    if pfn < 0:
        kmem_cache_free_nb(st, sc, desc)
        return pfn
    return _install_slab(st, c, pfn, desc, pa_st)


@njit
def kmem_cache_alloc_refill_nb(st, c, pa_st, gfp, cpu):
    """kmem_cache_alloc() with the slow path: take an object, refilling from pa_st if needed.

    Returns the object's address or a negative code from refill_from_pages."""
    addr = kmem_cache_alloc_nb(st, c)
    if addr != E_EMPTY:
        return addr
    rc = refill_from_pages(st, c, pa_st, gfp, cpu)
    if rc < 0:
        return rc
    return _take_object(st, c)


@njit
def kmem_cache_preload_nb(st, c, nr, pa_st, gfp, cpu):
    """radix_tree_preload(): refill until the cache has nr free objects (0 or negative code).

    Call it before entering a free path that will allocate up to nr objects."""
    if not _cache_ok(st, c):
        return E_BAD_CACHE
    while objects_free_nb(st, c) < nr:
        rc = refill_from_pages(st, c, pa_st, gfp, cpu)
        if rc < 0:
            return rc
    return OK


@njit
def kmem_cache_free_discard_nb(st, c, addr, pa_st, cpu, discard):
    """kmem_cache_free_nb, then (if discard and it says so) discard_slabs_nb down to min_partial."""
    rc = kmem_cache_free_nb(st, c, addr)
    if rc == SLAB_FREE_DISCARD and discard:
        if c < 0:
            c = virt_to_cache_nb(st, addr)
        n = discard_slabs_nb(st, c, -1, pa_st, cpu)
        if n < 0:
            return n
        return OK
    return rc


@njit
def kmem_cache_alloc_bulk_nb(st, c, pa_st, gfp, cpu, out):
    """Allocate len(out) objects (refilling as needed): (number allocated, OK or the code that stopped it)."""
    n = 0
    while n < out.shape[0]:
        a = kmem_cache_alloc_refill_nb(st, c, pa_st, gfp, cpu)
        if a < 0:
            return n, a
        out[n] = a
        n += 1
    return n, OK


@njit
def kmem_cache_free_bulk_nb(st, c, addrs, pa_st, cpu, discard):
    """Free addrs in order: (number freed, OK or the error of addrs[number freed])."""
    for i in range(addrs.shape[0]):
        rc = kmem_cache_free_discard_nb(st, c, addrs[i], pa_st, cpu, discard)
        if rc < 0:
            return i, rc
    return addrs.shape[0], OK


# ------------------------------------------------------------------ consistency check

(CHK_OK, CHK_LIST_LINK, CHK_LIST_MEMBER, CHK_LIST_INUSE, CHK_LIST_COUNT, CHK_LIST_CYCLE, CHK_FREELIST,
 CHK_FREE_COUNT, CHK_ALLOC_COUNT, CHK_HASH_MISSING, CHK_HASH_COUNT, CHK_HASH_STRAY, CHK_CACHE_INUSE,
 CHK_CACHE_SLABS, CHK_STATS, CHK_FREESLOT, CHK_PFN_ALIGN, CHK_FREE_PATH, CHK_SLAB_DESC, CHK_SLAB_DESC_COUNT) = range(20)

CHECK_MESSAGES = {
    CHK_LIST_LINK: "cache {a}: slab list {b} has broken links",
    CHK_LIST_MEMBER: "slab {a}: on a list of cache {b} but recorded elsewhere",
    CHK_LIST_INUSE: "slab {a}: inuse {b} does not match its list",
    CHK_LIST_COUNT: "cache {a}: length of slab list {b} differs from its counter",
    CHK_LIST_CYCLE: "cache {a}: slab list {b} does not terminate",
    CHK_FREELIST: "slab {a}: freelist entry {b} is out of range or allocated",
    CHK_FREE_COUNT: "slab {a}: freelist holds {b} objects, not objects - inuse",
    CHK_ALLOC_COUNT: "slab {a}: {b} objects marked allocated, not inuse",
    CHK_HASH_MISSING: "slab {a}: pfn {b:#x} is not mapped to it by virt_to_slab",
    CHK_HASH_COUNT: "the pfn->slab hash holds {a} entries, expected {b}",
    CHK_HASH_STRAY: "the pfn->slab hash maps pfn {a:#x} to slab {b}, which does not hold it",
    CHK_CACHE_INUSE: "cache {a}: objects in use {b} differs from the sum over its slabs",
    CHK_CACHE_SLABS: "cache {a}: slab count {b} differs from its live slabs",
    CHK_STATS: "cache {a}: counters disagree (alloc - free != inuse or alloc_slab - free_slab != slabs)",
    CHK_FREESLOT: "cache {a}: free-slot list is inconsistent at slot {b}",
    CHK_PFN_ALIGN: "slab {a}: pfn {b:#x} is not aligned to the slab order",
    CHK_FREE_PATH: "free-path depth is {a}: a caller entered a free path and never left it",
    CHK_SLAB_DESC: "slab {a}: its struct slab {b:#x} is not an allocated object of the struct-slab cache "
                   "(or, in that cache, not its own first object)",
    CHK_SLAB_DESC_COUNT: "the struct-slab cache has {a} objects in use, fewer than the {b} slabs it describes",
}


@njit
def slab_check_nb(st):
    """Full invariant check: (CHK_OK, 0, 0) or (code, a, b) for CHECK_MESSAGES."""
    ca = st.caches
    sl = st.slabs
    on = st.objnext
    nc = st.meta[M_NCACHES]
    ns = st.meta[M_NSLOTS]
    if st.meta[M_FREE_PATH] != 0:
        return CHK_FREE_PATH, st.meta[M_FREE_PATH], 0
    # lists
    for c in range(nc):
        objs = ca[c, CF_OBJS]
        for lst in range(3):
            s = ca[c, CF_HEAD + lst]
            prev = -1
            n = 0
            while s >= 0:
                if s >= ns or sl[s, SF_PREV] != prev:
                    return CHK_LIST_LINK, c, lst
                if sl[s, SF_CACHE] != c or sl[s, SF_LIST] != lst:
                    return CHK_LIST_MEMBER, s, c
                u = sl[s, SF_INUSE]
                if lst == L_PARTIAL:
                    good = 0 < u < objs
                elif lst == L_FULL:
                    good = u == objs
                else:
                    good = u == 0
                if not good:
                    return CHK_LIST_INUSE, s, u
                n += 1
                if n > ns:
                    return CHK_LIST_CYCLE, c, lst
                prev = s
                s = sl[s, SF_NEXT]
            if ca[c, CF_TAIL + lst] != prev:
                return CHK_LIST_LINK, c, lst
            if n != ca[c, CF_NR + lst]:
                return CHK_LIST_COUNT, c, lst
        # free-slot list
        s = ca[c, CF_FREESLOT]
        n = 0
        while s >= 0:
            if s >= ns or sl[s, SF_CACHE] != c or sl[s, SF_LIST] != L_FREESLOT:
                return CHK_FREESLOT, c, s
            n += 1
            if n > ns:
                return CHK_FREESLOT, c, s
            s = sl[s, SF_NEXT]
    # slabs: freelists, allocated marks, hash
    inuse_sum = np.zeros(max(nc, 1), np.int64)
    slab_cnt = np.zeros(max(nc, 1), np.int64)
    free_slots = np.zeros(max(nc, 1), np.int64)
    pages = 0
    for s in range(ns):
        c = sl[s, SF_CACHE]
        if sl[s, SF_LIST] == L_FREESLOT:
            free_slots[c] += 1
            continue
        objs = ca[c, CF_OBJS]
        base = sl[s, SF_OBASE]
        u = sl[s, SF_INUSE]
        nfree = 0
        j = sl[s, SF_FREE]
        while j != -1:
            if j < 0 or j >= objs:
                return CHK_FREELIST, s, j
            nfree += 1
            if nfree > objs:
                return CHK_FREE_COUNT, s, nfree
            j = on[base + j]
        if nfree != objs - u:
            return CHK_FREE_COUNT, s, nfree
        nalloc = 0
        for k in range(objs):
            if on[base + k] == OBJ_ALLOCATED:
                nalloc += 1
        if nalloc != u:
            return CHK_ALLOC_COUNT, s, nalloc
        pfn = sl[s, SF_PFN]
        npages = 1 << ca[c, CF_ORDER]
        if pfn < 0 or (pfn & (npages - 1)) != 0:
            return CHK_PFN_ALIGN, s, pfn
        for i in range(npages):
            h = _hash_find(st, pfn + i)
            if h < 0 or st.hval[h] != s:
                return CHK_HASH_MISSING, s, pfn + i
        pages += npages
        inuse_sum[c] += u
        slab_cnt[c] += 1
        if not _slab_desc_ok(st, s):
            return CHK_SLAB_DESC, s, sl[s, SF_DESC]
    for c in range(nc):
        if inuse_sum[c] != ca[c, CF_INUSE]:
            return CHK_CACHE_INUSE, c, ca[c, CF_INUSE]
        if slab_cnt[c] != ca[c, CF_NR_SLABS]:
            return CHK_CACHE_SLABS, c, ca[c, CF_NR_SLABS]
        if (st.cstat[c, SS_ALLOC] - st.cstat[c, SS_FREE] != ca[c, CF_INUSE]
                or st.cstat[c, SS_ALLOC_SLAB] - st.cstat[c, SS_FREE_SLAB] != ca[c, CF_NR_SLABS]):
            return CHK_STATS, c, 0
        n = 0
        s = ca[c, CF_FREESLOT]
        while s >= 0:
            n += 1
            s = sl[s, SF_NEXT]
        if n != free_slots[c]:
            return CHK_FREESLOT, c, -1
    used = 0
    for i in range(st.hkey.shape[0]):
        k = st.hkey[i]
        if k >= 0:
            used += 1
            s = st.hval[i]
            if s < 0 or s >= ns or sl[s, SF_LIST] == L_FREESLOT:
                return CHK_HASH_STRAY, k, s
            p0 = sl[s, SF_PFN]
            if not p0 <= k < p0 + (1 << ca[sl[s, SF_CACHE], CF_ORDER]):
                return CHK_HASH_STRAY, k, s
    if used != pages or used != st.meta[M_HUSED]:
        return CHK_HASH_COUNT, used, pages
    sc = st.scfg[SCFG_SLABDESC]
    if sc >= 0:
        nslabs = 0
        for c in range(nc):
            nslabs += ca[c, CF_NR_SLABS]
        # every slab holds one; typed slab allocations (memdesc.mm.folio) hold the others
        if ca[sc, CF_INUSE] < nslabs:
            return CHK_SLAB_DESC_COUNT, ca[sc, CF_INUSE], nslabs
    return CHK_OK, 0, 0


@njit
def _slab_desc_ok(st, s):
    """Slab s's struct slab: none (overlay), its own first object (struct-slab cache), or an
    allocated object of the struct-slab cache."""
    sc = st.scfg[SCFG_SLABDESC]
    desc = st.slabs[s, SF_DESC]
    if sc < 0:
        return desc == -1
    if st.slabs[s, SF_CACHE] == sc:
        return desc == st.slabs[s, SF_PFN] << PAGE_SHIFT
    t = virt_to_slab_nb(st, desc)
    if t < 0 or st.slabs[t, SF_CACHE] != sc:
        return False
    off = desc - (st.slabs[t, SF_PFN] << PAGE_SHIFT)
    size = st.caches[sc, CF_SIZE]
    j = off // size
    return off == j * size and st.objnext[st.slabs[t, SF_OBASE] + j] == OBJ_ALLOCATED


@njit
def _collect_slabs(st, c, out):
    """pfn, inuse, list of every slab of cache c (rows of out); returns the count."""
    n = 0
    for s in range(st.meta[M_NSLOTS]):
        if st.slabs[s, SF_CACHE] == c and st.slabs[s, SF_LIST] != L_FREESLOT:
            out[n, 0] = st.slabs[s, SF_PFN]
            out[n, 1] = st.slabs[s, SF_INUSE]
            out[n, 2] = st.slabs[s, SF_LIST]
            n += 1
    return n


@njit
def _collect_objects(st, c, out):
    """Addresses of every object in use in cache c (out sized to its inuse); returns the count."""
    n = 0
    size = st.caches[c, CF_SIZE]
    objs = st.caches[c, CF_OBJS]
    for s in range(st.meta[M_NSLOTS]):
        if st.slabs[s, SF_CACHE] != c or st.slabs[s, SF_LIST] == L_FREESLOT:
            continue
        base = st.slabs[s, SF_OBASE]
        a0 = st.slabs[s, SF_PFN] << PAGE_SHIFT
        for j in range(objs):
            if st.objnext[base + j] == OBJ_ALLOCATED:
                out[n] = a0 + j * size
                n += 1
    return n


# ------------------------------------------------------------------ Python-side state management


def calculate_size(size: int, align: int = MEMDESC_MIN_ALIGN) -> int:
    """s->size: size rounded up to the effective alignment max(align, 16)."""
    a = max(int(align), MEMDESC_MIN_ALIGN)
    return (int(size) + a - 1) // a * a


def calculate_min_partial(size: int) -> int:
    """SLUB's min_partial: clamp(ilog2(size) / 2, MIN_PARTIAL, MAX_PARTIAL)."""
    return min(MAX_PARTIAL, max(MIN_PARTIAL, (int(size).bit_length() - 1) // 2))


def new_slab_state(caches: int = 4, slabs: int = 64, objects: int = 4096, hash_slots: int = 256) -> SlabState:
    """An empty SlabState with the given initial capacities (they grow on demand); struct slab
    overlaid on struct page (no struct-slab cache) and no fault injection until configured
    (:func:`slab_state_set_descriptors`)."""
    hs = 1 << max(4, (int(hash_slots) - 1).bit_length())
    ca = np.zeros((max(1, caches), NR_CF), np.int64)
    ca[:, CF_FREESLOT] = -1
    ca[:, CF_HEAD:CF_HEAD + 3] = -1
    ca[:, CF_TAIL:CF_TAIL + 3] = -1
    sl = np.full((max(1, slabs), NR_SF), -1, np.int64)
    return SlabState(caches=ca, cstat=np.zeros((max(1, caches), NR_SLAB_STATS), np.int64), slabs=sl,
                     objnext=np.full(max(1, objects), -1, np.int32), hkey=np.full(hs, -1, np.int64),
                     hval=np.full(hs, -1, np.int64), meta=np.zeros(NR_META, np.int64),
                     scfg=np.array([-1, 0, 0, 0], np.int64), rng=np.array([FAILSLAB_SEED], np.uint64))


def _validate_geometry(size: int, order: int, align: int) -> tuple[int, int, int]:
    for what, v in (("size", size), ("order", order), ("align", align)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ConfigError(f"kmem_cache {what} must be an integer, got {v!r}")
    if size < 1:
        raise ConfigError(f"kmem_cache object size must be at least 1 byte, got {size}")
    if not 0 <= order <= MAX_PAGE_ORDER:
        raise ConfigError(f"slab order {order} outside 0..{MAX_PAGE_ORDER} (MAX_PAGE_ORDER)")
    if align < 1 or align & (align - 1) or align > PAGE_SIZE:
        raise ConfigError(f"alignment {align} must be a power of two no larger than {PAGE_SIZE}")
    rsize = calculate_size(size, align)
    objs = (PAGE_SIZE << order) // rsize
    if objs < 1:
        need = max(0, (rsize - 1).bit_length() - PAGE_SHIFT)
        raise ConfigError(f"an object of {rsize} bytes does not fit in an order-{order} slab "
                          f"({PAGE_SIZE << order} bytes); use order >= {need}")
    if objs > MAX_OBJS_PER_PAGE:
        raise ConfigError(f"{objs} objects of {rsize} bytes per order-{order} slab exceed "
                          f"MAX_OBJS_PER_PAGE ({MAX_OBJS_PER_PAGE}); use a smaller order")
    return int(size), int(order), int(align)


def slab_state_add_cache(st: SlabState, size: int, order: int = 0, align: int = MEMDESC_MIN_ALIGN,
                         min_partial: int | None = None, flags: int = 0) -> tuple[SlabState, int]:
    """Create a cache (kmem_cache_create()); returns the (possibly regrown) state and its index.

    ``flags``: CFL_FAILSLAB (a descriptor cache: fault injection applies), CFL_NO_DISCARD
    (empty slabs are kept: min_partial becomes NO_DISCARD_MIN_PARTIAL)."""
    size, order, align = _validate_geometry(size, order, align)
    rsize = calculate_size(size, align)
    if min_partial is None:
        min_partial = calculate_min_partial(rsize)
    if isinstance(min_partial, bool) or not isinstance(min_partial, int | np.integer) or min_partial < 0:
        raise ConfigError(f"min_partial must be a non-negative integer, got {min_partial!r}")
    c = int(st.meta[M_NCACHES])
    if c >= st.caches.shape[0]:
        cap = 2 * st.caches.shape[0]
        ca = np.zeros((cap, NR_CF), np.int64)
        ca[:, CF_FREESLOT] = -1
        ca[:, CF_HEAD:CF_HEAD + 3] = -1
        ca[:, CF_TAIL:CF_TAIL + 3] = -1
        ca[:c] = st.caches[:c]
        cs = np.zeros((cap, NR_SLAB_STATS), np.int64)
        cs[:c] = st.cstat[:c]
        st = st._replace(caches=ca, cstat=cs)
    row = st.caches[c]
    row[CF_SIZE] = rsize
    row[CF_OBJECT_SIZE] = size
    row[CF_ALIGN] = max(align, MEMDESC_MIN_ALIGN)
    row[CF_ORDER] = order
    row[CF_OBJS] = (PAGE_SIZE << order) // rsize
    row[CF_MIN_PARTIAL] = NO_DISCARD_MIN_PARTIAL if flags & CFL_NO_DISCARD else int(min_partial)
    row[CF_FLAGS] = int(flags)
    row[CF_LIVE] = 1
    st.meta[M_NCACHES] = c + 1
    return st, c


#: seed of the failslab generator (reseed with slab_state_seed_faults)
FAILSLAB_SEED = 0x2545F4914F6CDD1D


def slab_state_set_descriptors(st: SlabState, separate: bool, fail_rate: float = 0.0,
                               struct_slab_bytes: int = STRUCT_SLAB_BYTES) -> tuple[SlabState, int]:
    """Configure how slab pages are described: ``separate`` creates the struct-slab cache
    (self-hosted, never discarded, fault-injectable); ``fail_rate`` in [0, 1] is the failslab
    rate of every descriptor cache.  Returns the state and the struct-slab cache (-1 if none)."""
    if not 0.0 <= float(fail_rate) <= 1.0:
        raise ConfigError(f"fail_descriptor_alloc must be a rate in [0, 1], got {fail_rate}")
    st.scfg[SCFG_FAIL_THRESH] = int(round(float(fail_rate) * (1 << 53)))
    sc = int(st.scfg[SCFG_SLABDESC])
    if separate and sc < 0:
        st, sc = slab_state_add_cache(st, struct_slab_bytes, 0, MEMDESC_MIN_ALIGN, None,
                                      CFL_FAILSLAB | CFL_NO_DISCARD)
        st.scfg[SCFG_SLABDESC] = sc
    return st, sc


def slab_state_seed_faults(st: SlabState, seed: int) -> None:
    """Reseed the failslab generator (xorshift64: the state is never 0)."""
    st.rng[0] = np.uint64((int(seed) * 0x9E3779B97F4A7C15) % (1 << 64) or 1)


def _grow_hash(st: SlabState, min_entries: int) -> SlabState:
    """Rehash into the smallest power-of-two table holding min_entries at load <= 1/2."""
    cap = st.hkey.shape[0]
    while 2 * min_entries > cap:
        cap *= 2
    hk = np.full(cap, -1, np.int64)
    hv = np.full(cap, -1, np.int64)
    _rehash(st.hkey, st.hval, hk, hv)
    return st._replace(hkey=hk, hval=hv)


def slab_state_grow(st: SlabState, code: int) -> SlabState:
    """Grow the capacity that ``code`` (an E_NOCAP_* return) says is exhausted (doubling)."""
    if code == E_NOCAP_SLABS:
        old = st.slabs
        sl = np.full((2 * old.shape[0], NR_SF), -1, np.int64)
        sl[:old.shape[0]] = old
        return st._replace(slabs=sl)
    if code == E_NOCAP_OBJS:
        nc = int(st.meta[M_NCACHES])
        biggest = int(st.caches[:nc, CF_OBJS].max()) if nc else 1
        cap = max(2 * st.objnext.shape[0], int(st.meta[M_OBJTOP]) + biggest)
        on = np.full(cap, -1, np.int32)
        on[:st.objnext.shape[0]] = st.objnext
        return st._replace(objnext=on)
    if code == E_NOCAP_HASH:
        nc = int(st.meta[M_NCACHES])
        pages = 1 << int(st.caches[:nc, CF_ORDER].max()) if nc else 1
        return _grow_hash(st, max(st.hkey.shape[0], int(st.meta[M_HUSED]) + pages))
    raise ConfigError(f"slab_state_grow: {code} is not a capacity code (E_NOCAP_*)")


def slab_state_reserve(st: SlabState, cache: int, nr_slabs: int) -> SlabState:
    """Make room for nr_slabs more slabs of ``cache`` so that kernels will not hit E_NOCAP_*."""
    if not 0 <= cache < int(st.meta[M_NCACHES]):
        raise ConfigError(f"no cache {cache} in this slab state")
    objs = int(st.caches[cache, CF_OBJS])
    npages = 1 << int(st.caches[cache, CF_ORDER])
    nslots = int(st.meta[M_NSLOTS]) + nr_slabs
    if nslots > st.slabs.shape[0]:
        cap = st.slabs.shape[0]
        while cap < nslots:
            cap *= 2
        sl = np.full((cap, NR_SF), -1, np.int64)
        sl[:st.slabs.shape[0]] = st.slabs
        st = st._replace(slabs=sl)
    nobj = int(st.meta[M_OBJTOP]) + nr_slabs * objs
    if nobj > st.objnext.shape[0]:
        cap = st.objnext.shape[0]
        while cap < nobj:
            cap *= 2
        on = np.full(cap, -1, np.int32)
        on[:st.objnext.shape[0]] = st.objnext
        st = st._replace(objnext=on)
    need = int(st.meta[M_HUSED]) + nr_slabs * npages
    if 2 * need > st.hkey.shape[0]:
        st = _grow_hash(st, need)
    return st


@njit(inline="always")
def slab_headroom_ok(st, nslabs):
    """Room for nslabs more slabs of any cache (largest objects-per-slab and order) without
    growing: a kernel running many operations checks this between them and returns to Python
    to grow (:func:`slab_state_headroom`) when it fails."""
    nc = st.meta[M_NCACHES]
    objs = 1
    pages = 1
    for c in range(nc):
        objs = max(objs, st.caches[c, CF_OBJS])
        pages = max(pages, np.int64(1) << st.caches[c, CF_ORDER])
    return (st.meta[M_NSLOTS] + nslabs <= st.slabs.shape[0]
            and st.meta[M_OBJTOP] + nslabs * objs <= st.objnext.shape[0]
            and 2 * (st.meta[M_HUSED] + nslabs * pages) <= st.hkey.shape[0])


def slab_state_headroom(st: SlabState, nslabs: int) -> SlabState:
    """Grow every capacity so that slab_headroom_ok(st, nslabs) holds."""
    while not slab_headroom_ok(st, np.int64(nslabs)):
        nc = int(st.meta[M_NCACHES])
        objs = max([1] + [int(st.caches[c, CF_OBJS]) for c in range(nc)])
        pages = max([1] + [1 << int(st.caches[c, CF_ORDER]) for c in range(nc)])
        if int(st.meta[M_NSLOTS]) + nslabs > st.slabs.shape[0]:
            st = slab_state_grow(st, E_NOCAP_SLABS)
        elif int(st.meta[M_OBJTOP]) + nslabs * objs > st.objnext.shape[0]:
            st = slab_state_grow(st, E_NOCAP_OBJS)
        else:
            st = _grow_hash(st, int(st.meta[M_HUSED]) + nslabs * pages)
    return st


def is_nocap(rc: int) -> bool:
    return E_NOCAP_HASH <= rc <= E_NOCAP_SLABS


def slab_state_call(st: SlabState, kernel, *args) -> tuple[SlabState, object]:
    """Run ``kernel(st, *args)``, growing the state and retrying while it returns E_NOCAP_*.

    For kernels returning a code or a tuple whose second item is the code.  Returns the
    (possibly regrown) state and the kernel's result."""
    while True:
        r = kernel(st, *args)
        rc = int(r[1] if isinstance(r, tuple) else r)
        if not is_nocap(rc):
            return st, r
        st = slab_state_grow(st, rc)


def slab_check(st: SlabState) -> str:
    """"ok" or a sentence naming the first violated invariant of the slab state."""
    code, a, b = slab_check_nb(st)
    if code == CHK_OK:
        return "ok"
    return CHECK_MESSAGES[int(code)].format(a=int(a), b=int(b))


def cache_counters(st: SlabState, cache: int) -> dict[str, int]:
    return {name: int(st.cstat[cache, i]) for i, name in enumerate(SLAB_STAT_NAMES)}


def cache_bytes(st: SlabState, cache: int) -> dict[str, int]:
    """Bytes of one cache, all counted from the state.

    ``objects_bytes`` = objects in use x size; ``slab_bytes`` = slabs x PAGE_SIZE << order;
    ``wasted_bytes`` = slab_bytes - objects_bytes (free objects + slab tails);
    ``tail_bytes`` = slabs x (slab size - objects x size); ``free_object_bytes`` = free
    objects x size; ``padding_bytes`` = objects in use x (size - requested object size)."""
    r = st.caches[cache]
    size, order, objs = int(r[CF_SIZE]), int(r[CF_ORDER]), int(r[CF_OBJS])
    inuse, nslabs = int(r[CF_INUSE]), int(r[CF_NR_SLABS])
    slab_size = PAGE_SIZE << order
    obytes = inuse * size
    sbytes = nslabs * slab_size
    return {
        "objects_bytes": obytes,
        "slab_bytes": sbytes,
        "slab_pages": nslabs << order,
        "wasted_bytes": sbytes - obytes,
        "tail_bytes": nslabs * (slab_size - objs * size),
        "free_object_bytes": (nslabs * objs - inuse) * size,
        "padding_bytes": inuse * (size - int(r[CF_OBJECT_SIZE])),
    }


#: bytes every separately allocated descriptor carries on top of its type's, per design: vmem's
#: descriptors hold the pointer to their allocation's struct buddy, which the free path needs and
#: may not allocate ("the allocation obtains everything its later free will need")
DESCRIPTOR_EXTRA_BYTES = {"vmem": 8}


def descriptor_extra_bytes(design) -> int:
    return DESCRIPTOR_EXTRA_BYTES.get(str(design.name).split(":")[0], 0)


def descriptors_separate(design) -> bool:
    """Whether a design allocates memory descriptors apart from struct page: every design whose
    struct page is smaller than Linux's 64 bytes (a folio, a struct slab, a ptdesc cannot be
    overlaid on it), so its slab pages carry a separately allocated struct slab."""
    return int(design.struct_page_bytes) < 64


def free_path_allocations(st: SlabState) -> int:
    """Slab pages obtained from the page allocator inside free-path scopes (all caches)."""
    nc = int(st.meta[M_NCACHES])
    return int(st.cstat[:nc, SS_ALLOC_SLAB_FREE_PATH].sum())


# ------------------------------------------------------------------ /proc/slabinfo

SLABINFO_HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor>"
    " : slabdata <active_slabs> <num_slabs> <sharedavail>\n"
)


def format_slabinfo_line(name: str, active_objs: int, num_objs: int, size: int, objperslab: int,
                         order: int, active_slabs: int, num_slabs: int, limit: int = 0, batchcount: int = 0,
                         shared: int = 0, shared_avail: int = 0) -> str:
    """One cache_show() line of mm/slab_common.c, without the newline (SLUB: tunables are 0)."""
    return (f"{name:<17} {active_objs:6d} {num_objs:6d} {size:6d} {objperslab:4d} {1 << order:4d}"
            f" : tunables {limit:4d} {batchcount:4d} {shared:4d}"
            f" : slabdata {active_slabs:6d} {num_slabs:6d} {shared_avail:6d}")


def slabinfo_line(st: SlabState, cache: int, name: str) -> str:
    """get_slabinfo() for SLUB: every object not on a freelist is active; active_slabs = num_slabs."""
    r = st.caches[cache]
    nslabs = int(r[CF_NR_SLABS])
    return format_slabinfo_line(name, int(r[CF_INUSE]), nslabs * int(r[CF_OBJS]), int(r[CF_SIZE]),
                                int(r[CF_OBJS]), int(r[CF_ORDER]), nslabs, nslabs)


# ------------------------------------------------------------------ Python facade


class InvalidObject(MemdescError, ValueError):
    """An address that is not an object of the cache (foreign, other cache, not an object start)."""


_NAME_RE = re.compile(r"^\S+$")


class SlabAllocator:
    """All kmem_caches of one machine: the slab_caches list, /proc/slabinfo, the shared SlabState.

    ``SlabAllocator.of(machine)`` returns the machine's allocator (created on first use)."""

    _per_machine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, machine):
        self.machine = machine
        self.state: SlabState = new_slab_state()
        self.caches: list[KmemCache] = []
        #: the design allocates descriptors apart from struct page (so slab pages get a struct slab)
        self.separate = descriptors_separate(machine.design)
        self.state, _ = slab_state_set_descriptors(
            self.state, False, float(getattr(machine.design.config, "fail_descriptor_alloc", 0.0) or 0.0))
        #: the struct-slab cache (self-hosted; None where struct slab overlays struct page)
        self.slab_desc: KmemCache | None = None
        if self.separate:
            size = STRUCT_SLAB_BYTES + descriptor_extra_bytes(machine.design)
            self.slab_desc = KmemCache(machine, "memdesc_slab", size, allocator=self,
                                       flags=CFL_FAILSLAB | CFL_NO_DISCARD)
            self.state.scfg[SCFG_SLABDESC] = self.slab_desc.id

    @classmethod
    def of(cls, machine) -> SlabAllocator:
        sa = cls._per_machine.get(machine)
        if sa is None:
            sa = cls(machine)
            cls._per_machine[machine] = sa
        return sa

    @property
    def pa_state(self):
        """The page-allocator design's state (what dispatch.pa_alloc runs on)."""
        return self.machine.design.state

    def grow(self, code: int) -> None:
        self.state = slab_state_grow(self.state, code)

    def seed_faults(self, seed: int) -> None:
        """Reseed the failslab generator of the descriptor caches."""
        slab_state_seed_faults(self.state, seed)

    def _add(self, cache: KmemCache, size: int, order: int, align: int, min_partial: int | None,
             flags: int = 0) -> int:
        if any(c.name == cache.name for c in self.caches):
            raise ConfigError(f"a kmem_cache named {cache.name!r} already exists on this machine")
        self.state, idx = slab_state_add_cache(self.state, size, order, align, min_partial, flags)
        self.caches.append(cache)
        return idx

    @contextmanager
    def free_path(self) -> Iterator[None]:
        """Scope in which every slab allocation counts as made on a free path."""
        self.state.meta[M_FREE_PATH] += 1
        try:
            yield
        finally:
            self.state.meta[M_FREE_PATH] -= 1

    def check(self) -> str:
        """The slab state's invariants, then the page side: every slab's pages are an
        allocation of that order in the page allocator, in a directly-mapped zone."""
        msg = slab_check(self.state)
        if msg != "ok":
            return msg
        zs = self.machine.design.zs
        for c in self.caches:
            if not c.live:
                continue
            pfns = c.slab_pfns()
            if pfns.size == 0:
                continue
            own = zs.owner[pfns].astype(np.int64)
            bad = np.flatnonzero(((own & 1) == 0) | (((own >> 1) & 0xF) != c.order) | (own >= 0xFD))
            if bad.size:
                p = int(pfns[bad[0]])
                return (f"cache {c.name}: slab pfn {p:#x} is not an order-{c.order} allocation of the page "
                        f"allocator ({self.machine.page_state(p)})")
            zone = zs.pb_zone[pfns >> PAGEBLOCK_ORDER]
            nd = np.flatnonzero((zone < 0) | (zs.z_direct[np.maximum(zone, 0)] == 0))
            if nd.size:
                return f"cache {c.name}: slab pfn {int(pfns[nd[0]]):#x} is not in a directly-mapped zone"
        return self.check_memdesc()

    def check_memdesc(self) -> str:
        """Every slab page reads as typed memory of type slab on the design (pa_page_memdesc):
        its type, where the design records one, is slab; its descriptor, where the design points
        to one, is the slab's struct slab."""
        st = self.state
        pa = self.pa_state
        ns = int(st.meta[M_NSLOTS])
        for s in range(ns):
            if st.slabs[s, SF_LIST] == L_FREESLOT:
                continue
            pfn = int(st.slabs[s, SF_PFN])
            typ, desc = (int(x) for x in pa_page_memdesc(pa, np.int64(pfn)))
            want = int(st.slabs[s, SF_DESC])
            if desc >= 0 and desc != want:
                return f"slab pfn {pfn:#x}: the design's words point to descriptor {desc:#x}, not {want:#x}"
            if typ >= 0 and typ not in (MD_SLAB, MD_BUDDY_ALLOC):
                return f"slab pfn {pfn:#x}: the design's words say memdesc type {typ}, not slab"
        return "ok"

    def slabinfo(self) -> str:
        """/proc/slabinfo: the header, then one line per live cache, newest first (list_add order)."""
        lines = [c.slabinfo_line() for c in reversed(self.caches) if c.live]
        return SLABINFO_HEADER + "".join(line + "\n" for line in lines)

    def stats(self) -> dict[str, int]:
        """Totals over every cache: counters and bytes."""
        out: dict[str, int] = {}
        for c in self.caches:
            for k, v in {**c.counters(), **c.bytes_accounted()}.items():
                out[k] = out.get(k, 0) + v
        out["caches"] = sum(1 for c in self.caches if c.live)
        return out

    def find(self, addr: int) -> tuple[KmemCache, int] | None:
        """(cache, slab pfn) of the slab holding addr, or None."""
        s = int(virt_to_slab_nb(self.state, np.int64(addr)))
        if s < 0:
            return None
        c = int(self.state.slabs[s, SF_CACHE])
        return self.caches[c], int(self.state.slabs[s, SF_PFN])


class KmemCache:
    """A kmem_cache of fixed-size objects on a machine (kmem_cache_create()).

    ``alloc()`` returns an object's physical address (``pfn << 12 | offset``), refilling
    from the machine's page allocator (``gfp``, default GFP_KERNEL; never HighMem) when
    the cache has no free object, or None when the page allocator cannot give a slab.
    ``free(addr)`` raises :class:`~memdesc.errors.DoubleFree` or :class:`InvalidObject`
    on misuse, changing nothing.  With ``auto_discard`` (SLUB's behaviour) a free that
    empties a slab beyond ``min_partial`` gives the slab's pages back to the page
    allocator at once; ``shrink()`` gives back every empty slab."""

    def __init__(self, machine, name: str, size: int, order: int = 0, align: int = MEMDESC_MIN_ALIGN, *,
                 min_partial: int | None = None, gfp: int | str = "GFP_KERNEL", cpu: int = 0,
                 auto_discard: bool = True, allocator: SlabAllocator | None = None, flags: int = 0):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"kmem_cache name must be a non-empty string without spaces, got {name!r}")
        g = to_gfp(gfp)
        if g & GFP_SLAB_BUG_MASK:
            raise ConfigError(f"gfp {gfpmod.format_gfp(g)} has bits of GFP_SLAB_BUG_MASK "
                              "(__GFP_DMA32|__GFP_HIGHMEM): slab pages must be directly mapped")
        if machine.design.zs.gfp_zone_table[g & gfpmod.GFP_ZONEMASK] < 0:
            raise ConfigError(f"gfp {gfpmod.format_gfp(g)}: invalid zone modifier combination")
        if (g & gfpmod.GFP_MOVABLE_MASK) == gfpmod.GFP_MOVABLE_MASK:
            raise ConfigError(f"gfp {gfpmod.format_gfp(g)}: __GFP_MOVABLE and __GFP_RECLAIMABLE together")
        if isinstance(cpu, bool) or not isinstance(cpu, int | np.integer) or not 0 <= cpu < machine.nr_cpus:
            raise ConfigError(f"cpu {cpu!r} out of range: the machine has {machine.nr_cpus} CPUs")
        if allocator is None:
            allocator = SlabAllocator.of(machine)
        elif allocator.machine is not machine:
            raise ConfigError("the allocator belongs to another machine")
        self.machine = machine
        self.name = name
        self.gfp = g
        self.cpu = int(cpu)
        self.auto_discard = bool(auto_discard)
        self.allocator = allocator
        self.id = allocator._add(self, size, order, align, min_partial, flags)
        self._live = True

    # -- geometry
    def _field(self, f: int) -> int:
        return int(self.allocator.state.caches[self.id, f])

    @property
    def size(self) -> int:
        """s->size: the object size rounded up to the alignment (what slabinfo prints)."""
        return self._field(CF_SIZE)

    @property
    def object_size(self) -> int:
        return self._field(CF_OBJECT_SIZE)

    @property
    def align(self) -> int:
        return self._field(CF_ALIGN)

    @property
    def order(self) -> int:
        return self._field(CF_ORDER)

    @property
    def objects_per_slab(self) -> int:
        return self._field(CF_OBJS)

    @property
    def min_partial(self) -> int:
        return self._field(CF_MIN_PARTIAL)

    @min_partial.setter
    def min_partial(self, v: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ConfigError(f"min_partial must be a non-negative integer, got {v!r}")
        self.allocator.state.caches[self.id, CF_MIN_PARTIAL] = int(v)

    @property
    def live(self) -> bool:
        return self._live

    def _require_live(self) -> None:
        if not self._live:
            raise ConfigError(f"kmem_cache {self.name} has been destroyed")

    # -- operations
    def _call(self, kernel, *args):
        """Run kernel(state, cache, *args), growing the state and retrying on E_NOCAP_*."""
        sa = self.allocator
        sa.state, r = slab_state_call(sa.state, kernel, np.int64(self.id), *args)
        return r

    def alloc(self) -> int | None:
        """kmem_cache_alloc(): an object's address, or None if no slab page could be had."""
        self._require_live()
        a = int(self._call(kmem_cache_alloc_refill_nb, self.allocator.pa_state, np.int64(self.gfp),
                           np.int64(self.cpu)))
        if a >= 0:
            return a
        if a in (E_NOMEM, E_FAILSLAB):
            return None
        self._raise(a, None)

    def alloc_bulk(self, n: int) -> np.ndarray | None:
        """kmem_cache_alloc_bulk(): n addresses (int64 array) or None (all or nothing)."""
        self._require_live()
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ConfigError(f"alloc_bulk needs a non-negative count, got {n!r}")
        out = np.empty(int(n), np.int64)
        done = 0
        sa = self.allocator
        while done < n:
            k, rc = kmem_cache_alloc_bulk_nb(sa.state, np.int64(self.id), sa.pa_state, np.int64(self.gfp),
                                             np.int64(self.cpu), out[done:])
            done += int(k)
            if rc == OK:
                break
            if is_nocap(int(rc)):
                sa.grow(int(rc))
                continue
            if done:
                self.free_bulk(out[:done])
            if rc in (E_NOMEM, E_FAILSLAB):
                return None
            self._raise(int(rc), None)
        return out

    def free(self, addr: int) -> None:
        """kmem_cache_free(); raises DoubleFree / InvalidObject on misuse (nothing changes)."""
        self._require_live()
        addr = self._check_addr(addr)
        rc = int(kmem_cache_free_discard_nb(self.allocator.state, np.int64(self.id), np.int64(addr),
                                            self.allocator.pa_state, np.int64(self.cpu), self.auto_discard))
        if rc < 0:
            self._raise(rc, addr)

    def free_bulk(self, addrs: Iterable[int] | np.ndarray) -> None:
        """kmem_cache_free_bulk(): frees in order; on a bad address raises after freeing those before it."""
        self._require_live()
        a = np.asarray(addrs)
        if a.size and (a.dtype.kind not in "iu" or a.ndim != 1):
            raise ConfigError("free_bulk needs a one-dimensional sequence of integer addresses")
        a = a.astype(np.int64, copy=False)
        k, rc = kmem_cache_free_bulk_nb(self.allocator.state, np.int64(self.id), a, self.allocator.pa_state,
                                        np.int64(self.cpu), self.auto_discard)
        if rc < 0:
            self._raise(int(rc), int(a[k]), f" (free_bulk index {int(k)}; the {int(k)} before it were freed)")

    def shrink(self, keep: int = 0) -> int:
        """kmem_cache_shrink(): give empty slabs back to the page allocator; returns how many.

        Keeps empty slabs while the cache has at most ``keep`` partial-or-empty slabs
        (0: release every empty slab; -1: down to min_partial)."""
        self._require_live()
        if isinstance(keep, bool) or not isinstance(keep, int | np.integer) or keep < -1:
            raise ConfigError(f"keep must be an integer >= -1, got {keep!r}")
        n = int(discard_slabs_nb(self.allocator.state, np.int64(self.id), np.int64(keep),
                                 self.allocator.pa_state, np.int64(self.cpu)))
        if n < 0:
            self._raise(n, None)
        return n

    def destroy(self) -> None:
        """kmem_cache_destroy(): every object must have been freed; all slabs are given back."""
        self._require_live()
        inuse = self._field(CF_INUSE)
        if inuse:
            raise ConfigError(f"kmem_cache_destroy {self.name}: slab cache still has {inuse} objects")
        self.shrink(0)
        self.allocator.state.caches[self.id, CF_LIVE] = 0
        self._live = False

    def preload(self, nr: int) -> bool:
        """Refill until at least nr objects are free (radix_tree_preload()); False if memory ran out."""
        self._require_live()
        rc = int(self._call(kmem_cache_preload_nb, np.int64(nr), self.allocator.pa_state, np.int64(self.gfp),
                            np.int64(self.cpu)))
        if rc == OK:
            return True
        if rc == E_NOMEM:
            return False
        self._raise(rc, None)

    # -- errors
    @staticmethod
    def _check_addr(addr) -> int:
        if isinstance(addr, bool) or not isinstance(addr, int | np.integer):
            raise InvalidObject(f"object address must be an integer, got {addr!r}")
        if not 0 <= int(addr) < (1 << 62):
            raise InvalidObject(f"object address {int(addr):#x} is outside physical memory")
        return int(addr)

    def _raise(self, rc: int, addr: int | None, extra: str = ""):
        where = f"{addr:#x}" if addr is not None else "?"
        if rc == E_DOUBLE_FREE:
            raise DoubleFree(f"double free of object {where} in kmem_cache {self.name}{extra}")
        if rc == E_FOREIGN:
            raise InvalidObject(f"address {where} is not in any slab (kmem_cache {self.name}){extra}")
        if rc == E_WRONG_CACHE:
            found = self.allocator.find(addr)
            other = found[0].name if found else "?"
            raise InvalidObject(f"address {where} belongs to kmem_cache {other}, not {self.name}{extra}")
        if rc == E_MISALIGNED:
            raise InvalidObject(f"address {where} is not the start of an object of kmem_cache {self.name} "
                                f"(objects are {self.size} bytes apart from the slab start){extra}")
        if rc == E_NOT_DIRECT:
            raise InvariantViolation(f"kmem_cache {self.name}: the page allocator returned a page outside "
                                     f"the directly-mapped zones for gfp {gfpmod.format_gfp(self.gfp)}")
        if rc == E_PAGE_FREE:
            raise InvariantViolation(f"kmem_cache {self.name}: the page allocator refused a slab page")
        raise InvariantViolation(f"kmem_cache {self.name}: unexpected code {RC_NAMES.get(rc, rc)}{extra}")

    # -- views
    def owns(self, addr: int) -> bool:
        """True if addr lies in one of this cache's slabs (allocated or not)."""
        return int(virt_to_cache_nb(self.allocator.state, np.int64(addr))) == self.id

    __contains__ = owns

    def objects_free(self) -> int:
        return int(objects_free_nb(self.allocator.state, np.int64(self.id)))

    def slabs(self) -> np.ndarray:
        """int64[n, 3]: pfn, inuse, list (L_PARTIAL/L_FULL/L_EMPTY) of every slab."""
        st = self.allocator.state
        out = np.empty((self._field(CF_NR_SLABS), 3), np.int64)
        n = _collect_slabs(st, np.int64(self.id), out)
        return out[:n]

    def slab_pfns(self) -> np.ndarray:
        return self.slabs()[:, 0].copy()

    def objects(self) -> np.ndarray:
        """Sorted addresses of every object in use."""
        out = np.empty(self._field(CF_INUSE), np.int64)
        n = _collect_objects(self.allocator.state, np.int64(self.id), out)
        return np.sort(out[:n])

    def counters(self) -> dict[str, int]:
        return cache_counters(self.allocator.state, self.id)

    def bytes_accounted(self) -> dict[str, int]:
        return cache_bytes(self.allocator.state, self.id)

    def stats(self) -> dict[str, int]:
        """Geometry, slab counts, bytes and counters of the cache in one dict."""
        r = self.allocator.state.caches[self.id]
        objs, nslabs = int(r[CF_OBJS]), int(r[CF_NR_SLABS])
        return {
            "object_size": int(r[CF_OBJECT_SIZE]), "size": int(r[CF_SIZE]), "align": int(r[CF_ALIGN]),
            "order": int(r[CF_ORDER]), "objects_per_slab": objs, "min_partial": int(r[CF_MIN_PARTIAL]),
            "active_objs": int(r[CF_INUSE]), "num_objs": nslabs * objs, "num_slabs": nslabs,
            "partial_slabs": int(r[CF_NR + L_PARTIAL]), "full_slabs": int(r[CF_NR + L_FULL]),
            "empty_slabs": int(r[CF_NR + L_EMPTY]),
            **self.bytes_accounted(), **self.counters(),
        }

    def slabinfo_line(self) -> str:
        return slabinfo_line(self.allocator.state, self.id, self.name)

    def slabinfo(self) -> str:
        """/proc/slabinfo holding this cache only."""
        return SLABINFO_HEADER + self.slabinfo_line() + "\n"

    def check(self) -> str:
        return self.allocator.check()

    def __repr__(self) -> str:
        return (f"KmemCache({self.name!r}, size={self.size}, order={self.order}, "
                f"objects_per_slab={self.objects_per_slab})")
