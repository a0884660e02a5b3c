"""Folios and every other typed allocation, with their descriptors, on any design.

Theory
------
Linux describes allocated memory by *what it is*: a folio (file or anon), a slab, a page
table (``struct ptdesc``), a page_pool page (``struct netmem_desc``), a zsmalloc page
(``struct zpdesc``), or a bare page of some subtype (vmalloc, kernel stack, ...).  Today all
of these are overlaid on ``struct page`` (a large folio spans its first four struct pages);
in Matthew Wilcox's memdesc plan each is a *separately allocated descriptor* that every page
of the allocation points to.  This module is that layer, over any page-allocator design:

* **Typed allocation = descriptor + pages.**  ``memdesc_alloc`` takes the descriptor from
  its type's kmem_cache first (``kmem_cache_alloc(folio_slab)``, then
  ``alloc_page_desc()``: kernelnewbies MatthewWilcox/FolioAlloc), then the pages
  (``dispatch.pa_alloc``), then has the design record the type in its per-page words
  (``dispatch.pa_set_memdesc``).  Where the design overlays descriptors on struct page
  (``linux``: 64-byte struct page) there is no descriptor allocation at all; where struct
  page is smaller (``radix`` 16 B, ``vmem`` 8 B, ``linux:32``) every typed allocation that
  has a descriptor is *two* allocations (counted: ``two_part``).  Bare pages never have one.
  A failure of either part fails the allocation with nothing left behind.
* **Descriptors come from the slab** (:mod:`memdesc.mm.slab`): one kmem_cache per
  descriptor type and size (``memdesc_folio``, ``memdesc_large_folio``, ``memdesc_ptdesc``,
  ``memdesc_netmem``, ``memdesc_zpdesc``; a slab page's ``struct slab`` comes from the
  slab's own self-hosted ``memdesc_slab`` cache), 16-byte aligned, slab pages from
  directly-mapped zones only -- HighMem never holds a descriptor.  So one allocator counts
  every descriptor byte, and fault injection (failslab, ``fail_descriptor_alloc``) applies
  to every descriptor cache.
* **Freeing never allocates.**  ``memdesc_free`` clears the design's words, frees the pages
  and then the descriptor (which may free a slab page, whose struct slab goes back too),
  inside the slab's free-path scope: any allocation made there is counted
  (``free_path_allocations``; the design's own, e.g. radix tree nodes, count in its stats).
* **Operations that need memory** are explicit and counted per operation (``ostat``):
  ``split`` (uniform ``split_folio`` to any lower order, or the non-uniform, buddy-like
  ``folio_split`` at one page: an order-9 folio leaves 10 folios for the page cache, 11 for
  anon, which has no order-1 folios) needs one descriptor per new folio and, on designs
  whose allocator records allocations (vmem's struct buddy), the allocator's split
  (``pa_split_prepare``/``pa_split_alloc``) -- all obtained before anything changes;
  ``migrate`` allocates the destination folio and its descriptor before the source is freed;
  pinned folios are neither split nor migrated (``-EAGAIN``).

Folio state (columns of :class:`MemdescState`, one slot per typed allocation; Linux 6.18
semantics, include/linux/mm.h, mm_types.h, mm/rmap.c, mm/gup.c, mm/huge_memory.c):

* ``flags``: PG_* of the head page in memmap's 6.18 numbering (bits 0-21), and the flags of
  the folio's second page at bit 32 + n: PG_has_hwpoisoned = PG_active,
  PG_large_rmappable = PG_workingset, PG_partially_mapped = PG_readahead.
* ``ref`` (_refcount), ``mapcount`` (_mapcount of a small folio, -1 based),
  ``lmap`` (_large_mapcount, -1 based: every PTE and every PMD mapping counts one),
  ``emap`` (_entire_mapcount, -1 based), ``nrmap`` (_nr_pages_mapped: pages mapped by PTEs
  plus ENTIRELY_MAPPED = 0x800000 while PMD-mapped; kept only under CONFIG_PAGE_MAPCOUNT),
  ``pin`` (_pincount).  ``page_mc[pfn]`` counts the PTEs mapping each page: the page
  tables' view, which every design has; on designs whose struct page keeps a per-page
  ``_mapcount`` (``linux``, ``linux:32``: CONFIG_PAGE_MAPCOUNT) it *is* page->_mapcount + 1,
  the others run CONFIG_NO_PAGE_MAPCOUNT (no per-page mapcount, no _nr_pages_mapped), the
  configuration David Hildenbrand built for memdescs.
* Pins (``pin_user_pages``/``gup_put_folio``): a large folio (``folio_has_pincount()`` on
  64-bit) takes ``refs`` references and ``_pincount += refs``; a small one takes
  ``refs * GUP_PIN_COUNTING_BIAS`` (1024) references.  ``folio_maybe_dma_pinned()`` is
  ``_pincount > 0``, or ``refcount >= 1024`` for small folios (false positives possible).
* Mappings (the page-table side of a fault or a zap): mapping PTEs takes one reference per
  PTE and maps the pages (``__folio_add_rmap`` at PTE level), a PMD mapping one reference
  (PMD level); unmapping drops them and frees the folio at refcount 0.  An unmap that
  leaves a large anon folio partially mapped puts it on the deferred split queue
  (``deferred_split_folio(folio, true)``).
* ``mapping``/``index`` (page cache: one reference per page while set), the LRU lists of
  ``enum lru_list`` (links in ``lru_next``/``lru_prev``), ``memcg``, the deferred-split link.
* ``anon_vma``/``index`` of an anon folio: its rmap anchor (``__folio_set_anon``: Linux keeps
  the anon_vma in ``folio->mapping`` | FOLIO_MAPPING_ANON; here it has its own column, so
  ``mapping`` stays the page cache's).  Migration and the split of a PMD-mapped folio walk
  the page tables through it (:mod:`memdesc.mm.rmap`: ``remove_migration_ptes``,
  ``split_huge_pmd`` of ``unmap_folio``) when address spaces registered theirs
  (:func:`set_page_tables`; the ``rm_*`` fields, empty otherwise).
* LRU lists are per *lruvec*: one per memory cgroup (``memcg`` 0 is the root), rows
  ``memcg * NR_LRU_LISTS + lru`` of ``lru_head`` (first, last, folios, pages: the kernel's
  ``lruvec_lru_size`` counts pages); a folio's memcg is set (charged) before it is added.
* ``folio_put()`` at refcount 0 takes the folio off the LRU and the deferred split queue
  and frees it (descriptor included).  ``folio_expected_ref_count()`` is mappings + page
  cache references; split and migration require the caller's reference and nothing else.

The pfn -> folio map (``pfn_slot``: page_folio()) is simulation bookkeeping, as the
page_owner byte; what the design itself says about a page is ``pa_page_memdesc`` and
``check()`` compares the two.

Kernels take ``(ms, ss, pa, ...)``: this state, the slab state (NamedTuple) and the design
state; capacity grows in Python between kernel calls (``E_NOCAP_*`` before any change, or
:func:`headroom_ok` checked between operations of a batch).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from memdesc import _mem
from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError, InvalidPfn, MemdescError
from memdesc.mm import gfp as G
from memdesc.mm import memdesc as mdesc
from memdesc.mm import memmap as mmap
from memdesc.mm import rmap
from memdesc.mm.machine import Machine, to_gfp
from memdesc.mm.memmap import (
    MD_ANON,
    MD_FILE,
    MD_KSM,
    MD_MISC,
    MD_NETPOOL,
    MD_PAGETABLE,
    MD_SLAB,
    MD_TYPE_MASK,
    MD_ZSMALLOC,
)
from memdesc.mm.mmzone import MAX_PAGE_ORDER, PAGE_SIZE
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc.dispatch import (
    pa_alloc,
    pa_clear_memdesc,
    pa_free,
    pa_page_memdesc,
    pa_set_memdesc,
    pa_split_alloc,
    pa_split_prepare,
)
from memdesc.mm.slab import (
    CF_INUSE,
    CF_NR_SLABS,
    CF_SIZE,
    CFL_FAILSLAB,
    E_EMPTY,
    E_NOCAP_HASH,
    E_NOCAP_SLABS,
    M_FP_ALLOCS,
    M_NCACHES,
    OBJ_ALLOCATED,
    SCFG_SLABDESC,
    SF_CACHE,
    SF_OBASE,
    SF_PFN,
    SLAB_FREE_DISCARD,
    KmemCache,
    SlabAllocator,
    _take_object,
    descriptor_extra_bytes,
    discard_slabs_nb,
    kmem_cache_alloc_nb,
    kmem_cache_free_nb,
    refill_from_pages,
    slab_enter_free_path_nb,
    slab_headroom_ok,
    slab_leave_free_path_nb,
    slab_state_headroom,
    virt_to_slab_nb,
)

# ------------------------------------------------------------------ constants

NR_MDTYPES = 16
#: (module level: ``G.__GFP_COMP`` inside a class body would be name-mangled)
GFP_COMP = G.__GFP_COMP
GFP_ZERO = G.__GFP_ZERO
#: GUP_PIN_COUNTING_BIAS (include/linux/mm.h)
GUP_PIN_COUNTING_BIAS = 1024
#: _nr_pages_mapped while the folio is mapped entirely (mm/internal.h)
ENTIRELY_MAPPED = 0x800000
FOLIO_PAGES_MAPPED = ENTIRELY_MAPPED - 1

#: second-page flags live at bit 32 + their PG_ number
SECOND = 32
PG_has_hwpoisoned = SECOND + mmap.PG_active
PG_large_rmappable = SECOND + mmap.PG_workingset
PG_partially_mapped = SECOND + mmap.PG_readahead
#: folio flag names -> bit (folio_test_<name> / folio_set_<name> / folio_clear_<name>)
FOLIO_FLAGS: dict[str, int] = {
    **{name: i for i, name in enumerate(mmap.PAGEFLAG_NAMES)},
    "swapcache": mmap.PG_owner_priv_1, "mappedtodisk": mmap.PG_owner_2, "checked": mmap.PG_owner_priv_1,
    "has_hwpoisoned": PG_has_hwpoisoned, "large_rmappable": PG_large_rmappable,
    "partially_mapped": PG_partially_mapped,
}

# enum lru_list
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
NR_LRU_LISTS = 5
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
#: columns of ``lru_head`` (one row per (lruvec, list)): first, last, folios, pages
LH_FIRST, LH_LAST, LH_FOLIOS, LH_PAGES = range(4)

#: the memdesc types this layer allocates, named as the type table (memdesc.mm.memdesc) names them
TYPE_NAMES = {t.id: t.name for t in mdesc.MEMDESC_TYPES if t.id not in (mdesc.MD_FREE, mdesc.MD_BUDDY_ALLOC)}
TYPE_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}
TYPE_BY_NAME.update({"bare": MD_MISC, "folio": MD_FILE, "ptdesc": MD_PAGETABLE, "zpdesc": MD_ZSMALLOC,
                     "netmem": MD_NETPOOL})
FOLIO_TYPES = (MD_FILE, MD_ANON, MD_KSM)


def _descriptor_specs() -> dict[int, tuple[mdesc.DescriptorSpec, mdesc.DescriptorSpec]]:
    """Per memdesc type, its separately allocated descriptor (small, large allocation), from the
    type table's kinds (the kind named as the type; bare kinds and percpu have none)."""
    out = {}
    for t, name in TYPE_NAMES.items():
        k = mdesc.KIND_BY_NAME.get(name)
        if k is None or k.desc is None or k.desc.cache is None:
            continue
        out[t] = (k.descriptor(0), k.descriptor(1))
    return out


#: separately allocated descriptors per type (small, large): memdesc.mm.memdesc's structs
DESCRIPTOR_SPECS = _descriptor_specs()
#: their bytes (16-byte aligned sizes), where a design does not overlay them on struct page
DESCRIPTOR_BYTES: dict[int, tuple[int, int]] = {t: (a.bytes, b.bytes) for t, (a, b) in DESCRIPTOR_SPECS.items()}

# cfg
(MC_SEPARATE, MC_PAGE_MAPCOUNT, MC_NPAGES, MC_WORDS) = range(4)
NR_MC = 8
# meta
(MM_TOP, MM_NFREE, MM_LIVE, MM_DS_HEAD, MM_DS_TAIL, MM_DS_COUNT) = range(6)
NR_MM = 8
# per-type statistics
(TS_ALLOCS, TS_FREES, TS_LIVE, TS_LIVE_PAGES, TS_DESC_LIVE, TS_DESC_BYTES, TS_TWO_PART, TS_DESC_FAILED,
 TS_PAGE_FAILED, TS_DESC_ALLOCS) = range(10)
NR_TS = 10
TS_NAMES = ("alloc", "free", "live", "live_pages", "descriptors_live", "descriptor_bytes",
            "two_part_allocations", "descriptor_failures", "page_failures", "descriptor_allocations")
# operations and their statistics
(OP_ALLOC, OP_FREE, OP_SPLIT, OP_MIGRATE, OP_PIN, OP_UNPIN, OP_MAP, OP_UNMAP) = range(8)
NR_OPS = 8
OP_NAMES = ("alloc", "free", "split", "migrate", "pin", "unpin", "map", "unmap")
(OS_CALLS, OS_OK, OS_DESC_ALLOCS, OS_DESC_FAILED, OS_PAGE_ALLOCS, OS_PAGE_FAILED, OS_BUSY, OS_INVALID,
 OS_ALLOC_SPLIT_FAILED, OS_FREE_PATH_ALLOCS, OS_DESC_FREES, OS_PIECES) = range(12)
NR_OS = 12
OS_NAMES = ("calls", "ok", "descriptor_allocations", "descriptor_failures", "page_allocations", "page_failures",
            "busy", "invalid", "allocator_split_failures", "free_path_allocations", "descriptor_frees",
            "pieces")

# return codes (>= 0: a slot or a count)
OK = 0
E_NOMEM_DESC = -20   # the descriptor could not be had (slab refill failed or failslab)
E_NOMEM_PAGES = -21  # the page allocator failed
E_NOCAP = -22        # grow in Python and retry (nothing changed)
E_BADSLOT = -23      # not a live typed allocation of the right kind
E_BUSY = -24         # -EAGAIN: pinned, or references beyond the expected ones
E_INVAL = -25        # bad argument (order, page, type, unmapping what is not mapped)
E_MAPPED = -26       # refcount would reach 0 while the folio is still mapped
E_NOMEM_SPLIT = -27  # the allocator could not split the allocation (vmem: no struct buddy)
E_FREE = -28         # the page allocator refused the free (a model bug: counted)
RC_NAMES = {E_NOMEM_DESC: "E_NOMEM_DESC", E_NOMEM_PAGES: "E_NOMEM_PAGES", E_NOCAP: "E_NOCAP",
            E_BADSLOT: "E_BADSLOT", E_BUSY: "E_BUSY", E_INVAL: "E_INVAL", E_MAPPED: "E_MAPPED",
            E_NOMEM_SPLIT: "E_NOMEM_SPLIT", E_FREE: "E_FREE"}

#: most new slots / descriptors a single operation may need (a uniform split of order 10 to 0)
MAX_PIECES = 1 << MAX_PAGE_ORDER
#: references to the address spaces' page tables (memdesc.mm.rmap), not the folio layer's own memory
RMAP_FIELDS = ("rm_pte", "rm_pmd", "rm_ptt", "rm_dep", "rm_av", "rm_stat")
#: slab headroom (slabs of any cache) kept before each operation of a batch
HEADROOM_SLABS = 64

# ------------------------------------------------------------------ state


class MemdescStateType(StructType):
    pass


class MemdescState(StructProxy):
    """Per-slot columns (capacity N), per-pfn maps (pfn_slot, page_mc), lists and counters."""

    _fields = ("cfg", "cache", "dsize", "tstat", "ostat", "meta", "fstack", "pfn", "order", "mtype", "sub", "gfp",
               "desc", "cookie", "flags", "ref", "mapcount", "lmap", "emap", "nrmap", "pin", "mapping", "index",
               "anon_vma", "lru", "lru_next", "lru_prev", "memcg", "ds_next", "ds_prev", "lru_head", "pfn_slot",
               "page_mc", "rm_pte", "rm_pmd", "rm_ptt", "rm_dep", "rm_av", "rm_stat")


define_struct(MemdescState, MemdescStateType)

SLOT_FIELDS = {  # per-slot columns and dtypes
    "pfn": np.int64, "order": np.int8, "mtype": np.int8, "sub": np.int8, "gfp": np.int64, "desc": np.int64,
    "cookie": np.int64, "flags": np.int64, "ref": np.int32, "mapcount": np.int32, "lmap": np.int32,
    "emap": np.int32, "nrmap": np.int32, "pin": np.int32, "mapping": np.int64, "index": np.int64,
    "anon_vma": np.int64,
    "lru": np.int8, "lru_next": np.int32, "lru_prev": np.int32, "memcg": np.int16, "ds_next": np.int32,
    "ds_prev": np.int32, "fstack": np.int32,
}


def new_memdesc_state(npages: int, capacity: int = 1024, separate: bool = False, page_mapcount: bool = True,
                      words: int = 8, nr_lruvecs: int = 1) -> MemdescState:
    """An empty state for a machine of npages pfns (slot columns grow on demand)."""
    cap = max(16, int(capacity))
    cols = {name: np.zeros(cap, dt) for name, dt in SLOT_FIELDS.items()}
    cols["mtype"][:] = -1
    cols["lru"][:] = -1
    cfg = np.zeros(NR_MC, np.int64)
    cfg[MC_SEPARATE] = int(separate)
    cfg[MC_PAGE_MAPCOUNT] = int(page_mapcount)
    cfg[MC_NPAGES] = int(npages)
    cfg[MC_WORDS] = int(words)
    meta = np.zeros(NR_MM, np.int64)
    meta[MM_DS_HEAD] = -1
    meta[MM_DS_TAIL] = -1
    lru_head = np.full((NR_LRU_LISTS * max(1, int(nr_lruvecs)), 4), -1, np.int64)
    lru_head[:, LH_FOLIOS:] = 0
    return MemdescState(cfg=cfg, cache=np.full((NR_MDTYPES, 2), -1, np.int64),
                        dsize=np.zeros((NR_MDTYPES, 2), np.int64), tstat=np.zeros((NR_MDTYPES, NR_TS), np.int64),
                        ostat=np.zeros((NR_OPS, NR_OS), np.int64), meta=meta, lru_head=lru_head,
                        pfn_slot=_mem.zeros(int(npages), np.int32), page_mc=_mem.zeros(int(npages), np.int32),
                        **rmap.empty_page_tables(), **cols)


def grow_memdesc_state(ms: MemdescState, min_free: int) -> MemdescState:
    """A state with room for at least ``min_free`` more slots (doubling); same maps and counters."""
    cap = ms.pfn.shape[0]
    used = int(ms.meta[MM_TOP]) - int(ms.meta[MM_NFREE])
    new = cap
    while new - used < min_free:
        new *= 2
    if new == cap:
        return ms
    fields = {f: getattr(ms, f) for f in MemdescState._fields}
    for name, dt in SLOT_FIELDS.items():
        a = np.zeros(new, dt)
        a[:cap] = fields[name]
        if name in ("mtype", "lru"):
            a[cap:] = -1
        fields[name] = a
    return MemdescState(**fields)


def set_page_tables(ms: MemdescState, pte: np.ndarray, pmd: np.ndarray, ptt: np.ndarray, dep: np.ndarray,
                    anon_vma: np.ndarray) -> MemdescState:
    """A state whose rmap walks (memdesc.mm.rmap) see these page tables (memdesc.mm.memory's
    arrays, by reference: ``pte[mm, vpn]``, ``pmd``/``ptt``/``dep[mm, vpn >> 9]``, the per-mm
    anon_vma ids).  One set of address spaces per folio layer."""
    if ms.rm_pte.size and ms.rm_pte is not pte:
        raise ConfigError("the folio layer already has address spaces (one AddressSpaces per machine)")
    return MemdescState(**{**{f: getattr(ms, f) for f in MemdescState._fields}, "rm_pte": pte, "rm_pmd": pmd,
                           "rm_ptt": ptt, "rm_dep": dep, "rm_av": anon_vma})


def set_nr_lruvecs(ms: MemdescState, n: int) -> MemdescState:
    """A state with room for ``n`` lruvecs (memcgs 0..n-1); existing lists kept."""
    have = ms.lru_head.shape[0] // NR_LRU_LISTS
    if n <= have:
        return ms
    if n > np.iinfo(np.int16).max:
        raise ConfigError(f"{n} memory cgroups: at most {np.iinfo(np.int16).max}")
    lh = np.full((NR_LRU_LISTS * n, 4), -1, np.int64)
    lh[:, LH_FOLIOS:] = 0
    lh[:ms.lru_head.shape[0]] = ms.lru_head
    return MemdescState(**{f: (lh if f == "lru_head" else getattr(ms, f)) for f in MemdescState._fields})


@njit(inline="always")
def lru_row(ms, s, lru):
    """The lru_head row of list ``lru`` of folio s's lruvec (folio_lruvec())."""
    return np.int64(ms.memcg[s]) * NR_LRU_LISTS + lru


@njit(inline="always")
def headroom_ok(ms, ss):
    """Room for the largest single operation without growing (checked between operations)."""
    free = ms.pfn.shape[0] - ms.meta[MM_TOP] + ms.meta[MM_NFREE]
    return free >= MAX_PIECES + 1 and slab_headroom_ok(ss, HEADROOM_SLABS)


# ------------------------------------------------------------------ small helpers


@njit(inline="always")
def _is_folio_type(t):
    return t == MD_FILE or t == MD_ANON or t == MD_KSM


@njit(inline="always")
def slot_live(ms, slot):
    return 0 <= slot < ms.meta[MM_TOP] and ms.mtype[slot] >= 0


@njit(inline="always")
def folio_live(ms, slot):
    return slot_live(ms, slot) and _is_folio_type(ms.mtype[slot])


@njit(inline="always")
def _large(order):
    return 1 if order > 0 else 0


@njit(inline="always")
def _slot_get(ms):
    n = ms.meta[MM_NFREE]
    if n > 0:
        ms.meta[MM_NFREE] = n - 1
        return np.int64(ms.fstack[n - 1])
    s = ms.meta[MM_TOP]
    ms.meta[MM_TOP] = s + 1
    return s


@njit(inline="always")
def _slot_put(ms, s):
    ms.mtype[s] = -1
    n = ms.meta[MM_NFREE]
    ms.fstack[n] = s
    ms.meta[MM_NFREE] = n + 1


@njit(inline="always")
def _slots_free(ms):
    return ms.pfn.shape[0] - ms.meta[MM_TOP] + ms.meta[MM_NFREE]


@njit(inline="always")
def desc_gfp(gfp):
    """The gfp a descriptor allocation inherits (kmalloc's: reclaim and constraint bits only;
    never __GFP_HIGHMEM/__GFP_MOVABLE/__GFP_DMA32: descriptors are directly mapped kernel memory)."""
    return gfp & (G.GFP_RECLAIM_MASK | G.GFP_CONSTRAINT_MASK)


@njit(inline="always")
def _desc_alloc(ss, c, gfp, pa, cpu):
    """kmem_cache_alloc() of a descriptor: address, or E_NOMEM_DESC / E_NOCAP."""
    a = kmem_cache_alloc_nb(ss, c)
    if a == E_EMPTY:
        rc = refill_from_pages(ss, c, pa, desc_gfp(gfp), cpu)
        if rc < 0:
            return E_NOCAP if E_NOCAP_HASH <= rc <= E_NOCAP_SLABS else E_NOMEM_DESC
        a = _take_object(ss, c)
    if a < 0:
        return E_NOMEM_DESC
    return a


@njit(inline="always")
def _desc_free(ss, c, addr, pa, cpu):
    """kmem_cache_free() of a descriptor (the caller is in a free-path scope); an emptied slab
    beyond min_partial goes back to the page allocator (its struct slab with it)."""
    if kmem_cache_free_nb(ss, c, addr) == SLAB_FREE_DISCARD:
        discard_slabs_nb(ss, c, -1, pa, cpu)


@njit(inline="always")
def _fp_allocs(ss, pa):
    return ss.meta[M_FP_ALLOCS] + pa.stats[core.ST_FREE_PATH_ALLOCS]


@njit(inline="always")
def _account_alloc(ms, t, order, desc, size):
    ts = ms.tstat
    ts[t, TS_ALLOCS] += 1
    ts[t, TS_LIVE] += 1
    ts[t, TS_LIVE_PAGES] += np.int64(1) << order
    if desc >= 0:
        ts[t, TS_DESC_LIVE] += 1
        ts[t, TS_DESC_BYTES] += size
        ts[t, TS_TWO_PART] += 1
        ts[t, TS_DESC_ALLOCS] += 1


@njit(inline="always")
def _account_free(ms, t, order, desc, size):
    ts = ms.tstat
    ts[t, TS_FREES] += 1
    ts[t, TS_LIVE] -= 1
    ts[t, TS_LIVE_PAGES] -= np.int64(1) << order
    if desc >= 0:
        ts[t, TS_DESC_LIVE] -= 1
        ts[t, TS_DESC_BYTES] -= size


@njit(inline="always")
def _init_slot(ms, s, pfn, order, mdtype, gfp, desc):
    t = mdtype & MD_TYPE_MASK
    ms.pfn[s] = pfn
    ms.order[s] = order
    ms.mtype[s] = t
    ms.sub[s] = (mdtype >> mmap.MD_SUBTYPE_SHIFT) & mmap.MD_SUBTYPE_MASK
    ms.gfp[s] = gfp
    ms.desc[s] = desc
    ms.flags[s] = 0
    if order > 0:
        ms.flags[s] = np.int64(1) << mmap.PG_head
        if t == MD_FILE or t == MD_ANON:
            ms.flags[s] |= np.int64(1) << PG_large_rmappable
    ms.ref[s] = 1
    ms.mapcount[s] = -1
    ms.lmap[s] = -1
    ms.emap[s] = -1
    ms.nrmap[s] = 0
    ms.pin[s] = 0
    ms.mapping[s] = 0
    ms.index[s] = 0
    ms.anon_vma[s] = 0
    ms.lru[s] = -1
    ms.lru_next[s] = -1
    ms.lru_prev[s] = -1
    ms.memcg[s] = 0
    ms.ds_next[s] = -1
    ms.ds_prev[s] = -2  # -2: not on the deferred split queue


@njit(inline="always")
def _map_pages(ms, pfn, order, s):
    v = np.int32(s + 1)
    for i in range(np.int64(1) << order):
        ms.pfn_slot[pfn + i] = v


@njit(inline="always")
def _unmap_pages(ms, pfn, order):
    for i in range(np.int64(1) << order):
        ms.pfn_slot[pfn + i] = 0


# ------------------------------------------------------------------ allocation and free


@njit(inline="always")
def _typed_desc(ms, ss, pa, gfp, order, t, cpu, os_):
    """The descriptor of a new typed allocation of type t: its address, -1 (none: overlaid, or a
    type without one), E_NOMEM_DESC (counted) or E_NOCAP."""
    c = ms.cache[t, _large(order)]
    if c < 0:
        return np.int64(-1)
    desc = _desc_alloc(ss, c, gfp, pa, cpu)
    if desc == E_NOCAP:
        return desc
    if desc < 0:
        os_[OS_DESC_FAILED] += 1
        ms.tstat[t, TS_DESC_FAILED] += 1
        return np.int64(E_NOMEM_DESC)
    os_[OS_DESC_ALLOCS] += 1
    return desc


@njit(inline="always")
def _typed_install(ms, pa, pfn, order, mdtype, gfp, desc):
    """Slot, design words and pfn map of a typed allocation whose pages and descriptor are had."""
    t = mdtype & MD_TYPE_MASK
    s = _slot_get(ms)
    _init_slot(ms, s, pfn, order, mdtype, gfp, desc)
    ms.cookie[s] = pa_set_memdesc(pa, pfn, order, mdtype, desc)
    _map_pages(ms, pfn, order, s)
    ms.meta[MM_LIVE] += 1
    _account_alloc(ms, t, order, desc, ms.dsize[t, _large(order)])
    return s


@njit
def _alloc_typed(ms, ss, pa, gfp, order, mdtype, cpu, op):
    """Descriptor (where the design separates them), then pages, then the design's words; the
    slot, or E_NOMEM_DESC / E_NOMEM_PAGES / E_NOCAP with nothing left allocated.  Descriptor
    and page allocations and failures are counted in operation ``op``'s statistics."""
    t = mdtype & MD_TYPE_MASK
    os_ = ms.ostat[op]
    if _slots_free(ms) < 1:
        return E_NOCAP
    desc = _typed_desc(ms, ss, pa, gfp, order, t, cpu, os_)
    if desc == E_NOCAP or desc == E_NOMEM_DESC:
        return desc
    pfn = pa_alloc(pa, gfp, order, cpu)
    os_[OS_PAGE_ALLOCS] += 1
    if pfn < 0:
        if desc >= 0:
            slab_enter_free_path_nb(ss)
            _desc_free(ss, ms.cache[t, _large(order)], desc, pa, cpu)
            slab_leave_free_path_nb(ss)
        os_[OS_PAGE_FAILED] += 1
        ms.tstat[t, TS_PAGE_FAILED] += 1
        return E_NOMEM_PAGES
    return _typed_install(ms, pa, pfn, order, mdtype, gfp, desc)


@njit
def memdesc_adopt(ms, ss, pa, pfn, order, gfp, mdtype, cpu):
    """Type pages the caller already allocated at [pfn, 2^order) (exact replay: the trace placed
    them): the descriptor (where the design separates them) and the design's words, counted as
    operation alloc.  The slot, or E_NOMEM_DESC / E_NOCAP / E_INVAL with nothing changed (the
    pages stay the caller's, untyped)."""
    os_ = ms.ostat[OP_ALLOC]
    if order < 0 or order > MAX_PAGE_ORDER or pfn < 0 or pfn + (np.int64(1) << order) > ms.pfn_slot.shape[0]:
        os_[OS_CALLS] += 1
        os_[OS_INVALID] += 1
        return E_INVAL
    if _slots_free(ms) < 1:
        return E_NOCAP
    t = mdtype & MD_TYPE_MASK
    desc = _typed_desc(ms, ss, pa, gfp, order, t, cpu, os_)
    if desc == E_NOCAP:
        return desc
    os_[OS_CALLS] += 1
    if desc == E_NOMEM_DESC:
        return desc
    os_[OS_OK] += 1
    return _typed_install(ms, pa, pfn, order, mdtype, gfp, desc)


@njit
def memdesc_alloc(ms, ss, pa, gfp, order, mdtype, cpu):
    """A typed allocation of 2^order pages: the slot, or E_NOMEM_DESC / E_NOMEM_PAGES / E_NOCAP /
    E_INVAL.  ``mdtype``: memdesc type (bits 0-3), a bare page's subtype in bits 4-10.

    The descriptor first (from its type's cache, where the design separates descriptors), then
    the pages, then the design's words; on any failure nothing stays allocated."""
    os_ = ms.ostat[OP_ALLOC]
    if order < 0 or order > MAX_PAGE_ORDER:
        os_[OS_CALLS] += 1
        os_[OS_INVALID] += 1
        return E_INVAL
    s = _alloc_typed(ms, ss, pa, gfp, order, mdtype, cpu, OP_ALLOC)
    if s == E_NOCAP:
        return s
    os_[OS_CALLS] += 1
    if s >= 0:
        os_[OS_OK] += 1
    return s


@njit
def _release(ms, ss, pa, s, cpu, op):
    """Free slot s's pages and descriptor (a free path: never allocates; what it does allocate
    is counted in operation ``op``).  OK or E_FREE (nothing changed)."""
    t = ms.mtype[s]
    pfn = ms.pfn[s]
    order = np.int64(ms.order[s])
    desc = ms.desc[s]
    os_ = ms.ostat[op]
    fp0 = _fp_allocs(ss, pa)
    slab_enter_free_path_nb(ss)
    pa_clear_memdesc(pa, pfn, order, ms.cookie[s])
    _unmap_pages(ms, pfn, order)
    if pa_free(pa, pfn, order, cpu) != 0:
        ms.cookie[s] = pa_set_memdesc(pa, pfn, order, t | (np.int64(ms.sub[s]) << mmap.MD_SUBTYPE_SHIFT), desc)
        _map_pages(ms, pfn, order, s)
        slab_leave_free_path_nb(ss)
        return E_FREE
    if desc >= 0:
        _desc_free(ss, ms.cache[t, _large(order)], desc, pa, cpu)
        os_[OS_DESC_FREES] += 1
    slab_leave_free_path_nb(ss)
    _account_free(ms, t, order, desc, ms.dsize[t, _large(order)])
    ms.meta[MM_LIVE] -= 1
    _slot_put(ms, s)
    os_[OS_FREE_PATH_ALLOCS] += _fp_allocs(ss, pa) - fp0
    return OK


@njit
def _free_op(ms, ss, pa, s, cpu):
    """A free counted as operation free (calls, ok, invalid)."""
    os_ = ms.ostat[OP_FREE]
    os_[OS_CALLS] += 1
    rc = _release(ms, ss, pa, s, cpu, OP_FREE)
    if rc == OK:
        os_[OS_OK] += 1
    else:
        os_[OS_INVALID] += 1
    return rc


@njit
def memdesc_free(ms, ss, pa, s, cpu):
    """Free a typed allocation that is not a folio (pagetable_free(), free a slab page, a
    netmem/zpdesc page, a bare page): OK, E_BADSLOT or E_FREE.  Folios are freed by their
    last folio_put()."""
    if not slot_live(ms, s) or _is_folio_type(ms.mtype[s]):
        return E_BADSLOT
    return _free_op(ms, ss, pa, s, cpu)


@njit
def memdesc_release(ms, ss, pa, s, cpu):
    """Free any typed allocation, folios included, whatever its references (trace replay: the
    trace's mm_page_free is the last folio_put()): OK, E_BADSLOT or E_FREE."""
    if not slot_live(ms, s):
        return E_BADSLOT
    if ms.lru[s] >= 0:
        lru_del(ms, s)
    _deferred_del(ms, s)
    return _free_op(ms, ss, pa, s, cpu)


@njit
def memdesc_disown(ms, ss, pa, s, cpu, clear):
    """The typed allocation s ends but its pages stay allocated to the caller (trace replay: the
    trace frees part of them, split_page(), or another event takes them): the design's words are
    cleared (``clear``; False: the caller cleared them with :func:`memdesc_words_clear` before
    the pages changed hands) and the descriptor is freed -- a free path, which never allocates
    (what it does allocate is counted as operation free's free_path_allocations).  OK or
    E_BADSLOT."""
    if not slot_live(ms, s):
        return E_BADSLOT
    if ms.lru[s] >= 0:
        lru_del(ms, s)
    _deferred_del(ms, s)
    t = ms.mtype[s]
    pfn = ms.pfn[s]
    order = np.int64(ms.order[s])
    desc = ms.desc[s]
    os_ = ms.ostat[OP_FREE]
    os_[OS_CALLS] += 1
    fp0 = _fp_allocs(ss, pa)
    slab_enter_free_path_nb(ss)
    if clear:
        pa_clear_memdesc(pa, pfn, order, ms.cookie[s])
    _unmap_pages(ms, pfn, order)
    if desc >= 0:
        _desc_free(ss, ms.cache[t, _large(order)], desc, pa, cpu)
        os_[OS_DESC_FREES] += 1
    slab_leave_free_path_nb(ss)
    _account_free(ms, t, order, desc, ms.dsize[t, _large(order)])
    ms.meta[MM_LIVE] -= 1
    _slot_put(ms, s)
    os_[OS_FREE_PATH_ALLOCS] += _fp_allocs(ss, pa) - fp0
    os_[OS_OK] += 1
    return OK


@njit
def memdesc_words_clear(ms, pa, s):
    """pa_clear_memdesc() of slot s's pages, the slot unchanged (exact replay clears the words
    before an event may release the pages, and sets them again if it did not)."""
    pa_clear_memdesc(pa, ms.pfn[s], np.int64(ms.order[s]), ms.cookie[s])


@njit
def memdesc_words_set(ms, pa, s):
    """pa_set_memdesc() of slot s's pages again (after :func:`memdesc_words_clear`)."""
    ms.cookie[s] = pa_set_memdesc(pa, ms.pfn[s], np.int64(ms.order[s]),
                                  np.int64(ms.mtype[s]) | (np.int64(ms.sub[s]) << mmap.MD_SUBTYPE_SHIFT), ms.desc[s])


# ------------------------------------------------------------------ LRU and deferred split lists


@njit
def lru_add(ms, s, lru, tail):
    """lruvec_add_folio() (tail=False: list head, as folio_add_lru's batch does) and PG_lru;
    PG_active follows the list.  E_INVAL if already on a list or lru out of range."""
    if not folio_live(ms, s) or lru < 0 or lru >= NR_LRU_LISTS or ms.lru[s] >= 0:
        return E_INVAL
    row = lru_row(ms, s, lru)
    if ms.memcg[s] < 0 or row >= ms.lru_head.shape[0]:
        return E_INVAL
    h = ms.lru_head[row]
    if tail:
        last = h[1]
        ms.lru_prev[s] = last
        ms.lru_next[s] = -1
        if last < 0:
            h[0] = s
        else:
            ms.lru_next[last] = s
        h[1] = s
    else:
        first = h[0]
        ms.lru_next[s] = first
        ms.lru_prev[s] = -1
        if first < 0:
            h[1] = s
        else:
            ms.lru_prev[first] = s
        h[0] = s
    h[2] += 1
    h[3] += np.int64(1) << ms.order[s]
    ms.lru[s] = lru
    ms.flags[s] |= np.int64(1) << mmap.PG_lru
    if lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE:
        ms.flags[s] |= np.int64(1) << mmap.PG_active
    else:
        ms.flags[s] &= ~(np.int64(1) << mmap.PG_active)
    if lru == LRU_UNEVICTABLE:
        ms.flags[s] |= np.int64(1) << mmap.PG_unevictable
    return OK


@njit
def _lru_insert_after(ms, s, prev):
    """Put s on prev's LRU list right after prev (lru_add_split_folio)."""
    lru = ms.lru[prev]
    row = lru_row(ms, prev, lru)
    nxt = ms.lru_next[prev]
    ms.lru_prev[s] = prev
    ms.lru_next[s] = nxt
    ms.lru_next[prev] = s
    if nxt < 0:
        ms.lru_head[row, 1] = s
    else:
        ms.lru_prev[nxt] = s
    ms.lru_head[row, 2] += 1
    ms.lru_head[row, 3] += np.int64(1) << ms.order[s]
    ms.lru[s] = lru


@njit
def lru_del(ms, s):
    """lruvec_del_folio(): off its list, PG_lru cleared (PG_active kept, as the kernel)."""
    if not folio_live(ms, s) or ms.lru[s] < 0:
        return E_INVAL
    lru = ms.lru[s]
    row = lru_row(ms, s, lru)
    nxt = ms.lru_next[s]
    prv = ms.lru_prev[s]
    if prv < 0:
        ms.lru_head[row, 0] = nxt
    else:
        ms.lru_next[prv] = nxt
    if nxt < 0:
        ms.lru_head[row, 1] = prv
    else:
        ms.lru_prev[nxt] = prv
    ms.lru_head[row, 2] -= 1
    ms.lru_head[row, 3] -= np.int64(1) << ms.order[s]
    ms.lru[s] = -1
    ms.lru_next[s] = -1
    ms.lru_prev[s] = -1
    ms.flags[s] &= ~(np.int64(1) << mmap.PG_lru)
    return OK


@njit
def _lru_replace(ms, old, new):
    """new takes old's place on its LRU list (migration: folio_migrate_flags + putback)."""
    lru = ms.lru[old]
    row = lru_row(ms, old, lru)
    nxt = ms.lru_next[old]
    prv = ms.lru_prev[old]
    ms.lru[new] = lru
    ms.lru_next[new] = nxt
    ms.lru_prev[new] = prv
    if prv < 0:
        ms.lru_head[row, 0] = new
    else:
        ms.lru_next[prv] = new
    if nxt < 0:
        ms.lru_head[row, 1] = new
    else:
        ms.lru_prev[nxt] = new
    ms.lru[old] = -1
    ms.lru_next[old] = -1
    ms.lru_prev[old] = -1


@njit(inline="always")
def _on_deferred(ms, s):
    return ms.ds_prev[s] != -2


@njit
def deferred_split_folio(ms, s, partially_mapped):
    """deferred_split_folio(): a large anon folio joins the deferred split queue (tail);
    ``partially_mapped`` sets PG_partially_mapped.  E_INVAL for other folios."""
    if not folio_live(ms, s) or ms.order[s] <= 1 or ms.mtype[s] != MD_ANON:
        return E_INVAL
    if partially_mapped:
        ms.flags[s] |= np.int64(1) << PG_partially_mapped
    if _on_deferred(ms, s):
        return OK
    last = ms.meta[MM_DS_TAIL]
    ms.ds_prev[s] = last
    ms.ds_next[s] = -1
    if last < 0:
        ms.meta[MM_DS_HEAD] = s
    else:
        ms.ds_next[last] = s
    ms.meta[MM_DS_TAIL] = s
    ms.meta[MM_DS_COUNT] += 1
    return OK


@njit
def _deferred_del(ms, s):
    """folio_unqueue_deferred_split(): off the queue, PG_partially_mapped cleared."""
    if not _on_deferred(ms, s):
        return
    nxt = ms.ds_next[s]
    prv = ms.ds_prev[s]
    if prv < 0:
        ms.meta[MM_DS_HEAD] = nxt
    else:
        ms.ds_next[prv] = nxt
    if nxt < 0:
        ms.meta[MM_DS_TAIL] = prv
    else:
        ms.ds_prev[nxt] = prv
    ms.meta[MM_DS_COUNT] -= 1
    ms.ds_next[s] = -1
    ms.ds_prev[s] = -2
    ms.flags[s] &= ~(np.int64(1) << PG_partially_mapped)


# ------------------------------------------------------------------ references and folio_put


@njit(inline="always")
def folio_mapcount(ms, s):
    """folio_mapcount(): total mappings (every PTE and every PMD counts one)."""
    if ms.order[s] > 0:
        return np.int64(ms.lmap[s]) + 1
    return np.int64(ms.mapcount[s]) + 1


@njit(inline="always")
def folio_expected_ref_count(ms, s):
    """folio_expected_ref_count(): page-cache references (one per page while in a mapping;
    anon folios have no swap cache in the model), one for PG_private, one per mapping."""
    r = np.int64(0)
    if ms.mtype[s] != MD_ANON:
        if ms.mapping[s] != 0:
            r += np.int64(1) << ms.order[s]
        if ms.flags[s] & (np.int64(1) << mmap.PG_private):
            r += 1
    return r + folio_mapcount(ms, s)


@njit(inline="always")
def folio_maybe_dma_pinned(ms, s):
    """folio_maybe_dma_pinned(): _pincount > 0 for large folios (folio_has_pincount on
    64-bit), else refcount >= GUP_PIN_COUNTING_BIAS (false positives possible)."""
    if ms.order[s] > 0:
        return ms.pin[s] > 0
    return ms.ref[s] >= GUP_PIN_COUNTING_BIAS


@njit
def _folio_free(ms, ss, pa, s, cpu):
    """__folio_put(): refcount reached 0: off the LRU and the deferred split queue, then free."""
    if ms.lru[s] >= 0:
        lru_del(ms, s)
    _deferred_del(ms, s)
    return _free_op(ms, ss, pa, s, cpu)


@njit
def folio_put_refs(ms, ss, pa, s, refs, cpu):
    """folio_put_refs(): drop refs references; at 0 the folio is freed.  Returns the remaining
    count (0: freed), E_BADSLOT, E_INVAL (more refs than held) or E_MAPPED (the folio is still
    mapped or in a mapping: the kernel would BUG; nothing changes)."""
    if not folio_live(ms, s):
        return E_BADSLOT
    r = np.int64(ms.ref[s]) - refs
    if r < 0 or refs < 0:
        return E_INVAL
    if r == 0:
        if folio_mapcount(ms, s) > 0 or ms.mapping[s] != 0:
            return E_MAPPED
        ms.ref[s] = 0
        rc = _folio_free(ms, ss, pa, s, cpu)
        if rc < 0:
            ms.ref[s] = refs
            return rc
        return np.int64(0)
    ms.ref[s] = r
    return r


@njit
def folio_get(ms, s):
    """folio_get(): the new reference count, or E_BADSLOT."""
    if not folio_live(ms, s):
        return E_BADSLOT
    ms.ref[s] += 1
    return np.int64(ms.ref[s])


# ------------------------------------------------------------------ mappings (rmap + page-table refs)


@njit
def folio_map_ptes(ms, s, page, nr):
    """Map pages [page, page + nr) of the folio with one PTE each: __folio_add_rmap() at PTE
    level, and one reference per PTE.  Returns the new mapcount or E_BADSLOT / E_INVAL."""
    os_ = ms.ostat[OP_MAP]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        return E_BADSLOT
    n = np.int64(1) << ms.order[s]
    if nr < 1 or page < 0 or page + nr > n:
        os_[OS_INVALID] += 1
        return E_INVAL
    pfn = ms.pfn[s] + page
    if ms.order[s] == 0:
        ms.mapcount[s] += 1
        ms.page_mc[pfn] += 1
    else:
        first = 0
        for i in range(nr):
            ms.page_mc[pfn + i] += 1
            if ms.page_mc[pfn + i] == 1:
                first += 1
        if ms.cfg[MC_PAGE_MAPCOUNT] != 0:
            ms.nrmap[s] += first
        ms.lmap[s] += nr
    ms.ref[s] += nr
    os_[OS_OK] += 1
    return folio_mapcount(ms, s)


@njit
def folio_map_pmd(ms, s):
    """Map the whole (large) folio with one PMD: __folio_add_rmap() at PMD level, one reference."""
    os_ = ms.ostat[OP_MAP]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s) or ms.order[s] == 0:
        os_[OS_INVALID] += 1
        return E_INVAL if slot_live(ms, s) else E_BADSLOT
    ms.emap[s] += 1
    if ms.emap[s] == 0 and ms.cfg[MC_PAGE_MAPCOUNT] != 0:
        ms.nrmap[s] += ENTIRELY_MAPPED
    ms.lmap[s] += 1
    ms.ref[s] += 1
    os_[OS_OK] += 1
    return folio_mapcount(ms, s)


@njit
def _check_partially_mapped(ms, s, partially_mapped):
    if partially_mapped and ms.mtype[s] == MD_ANON and not (ms.flags[s] & (np.int64(1) << PG_partially_mapped)):
        deferred_split_folio(ms, s, True)


@njit
def folio_unmap_ptes(ms, ss, pa, s, page, nr, cpu):
    """Zap nr PTEs mapping pages [page, page + nr): __folio_remove_rmap() at PTE level (a large
    anon folio left partially mapped goes on the deferred split queue), then the references
    are dropped (the folio is freed at 0).  Returns the remaining reference count, or
    E_BADSLOT / E_INVAL (a page not mapped)."""
    os_ = ms.ostat[OP_UNMAP]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        return E_BADSLOT
    n = np.int64(1) << ms.order[s]
    pfn = ms.pfn[s] + page
    if nr < 1 or page < 0 or page + nr > n:
        os_[OS_INVALID] += 1
        return E_INVAL
    for i in range(nr):
        if ms.page_mc[pfn + i] <= 0:
            os_[OS_INVALID] += 1
            return E_INVAL
    if ms.order[s] == 0:
        ms.mapcount[s] -= 1
        ms.page_mc[pfn] -= 1
    else:
        last = 0
        for i in range(nr):
            ms.page_mc[pfn + i] -= 1
            if ms.page_mc[pfn + i] == 0:
                last += 1
        ms.lmap[s] -= nr
        partially = False
        if ms.cfg[MC_PAGE_MAPCOUNT] != 0:
            nrp = 0
            if last:
                ms.nrmap[s] -= last
                if ms.nrmap[s] < ENTIRELY_MAPPED:
                    nrp = last
            partially = nrp != 0 and ms.nrmap[s] != 0
        else:
            left = np.int64(ms.lmap[s]) + 1
            partially = left != 0 and left < n and ms.emap[s] < 0
        _check_partially_mapped(ms, s, partially)
    os_[OS_OK] += 1
    return folio_put_refs(ms, ss, pa, s, nr, cpu)


@njit
def folio_unmap_pmd(ms, ss, pa, s, cpu):
    """Zap a PMD mapping: __folio_remove_rmap() at PMD level, then folio_put()."""
    os_ = ms.ostat[OP_UNMAP]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        return E_BADSLOT
    if ms.order[s] == 0 or ms.emap[s] < 0:
        os_[OS_INVALID] += 1
        return E_INVAL
    n = np.int64(1) << ms.order[s]
    ms.lmap[s] -= 1
    ms.emap[s] -= 1
    last = ms.emap[s] < 0
    partially = False
    if ms.cfg[MC_PAGE_MAPCOUNT] != 0:
        nrp = 0
        if last:
            ms.nrmap[s] -= ENTIRELY_MAPPED
            if ms.nrmap[s] < ENTIRELY_MAPPED:
                nrp = n - ms.nrmap[s]
        partially = nrp != 0 and nrp < n
    else:
        left = np.int64(ms.lmap[s]) + 1
        partially = last and left != 0 and left < n
    _check_partially_mapped(ms, s, partially)
    os_[OS_OK] += 1
    return folio_put_refs(ms, ss, pa, s, 1, cpu)


@njit
def folio_split_pmd(ms, s):
    """__split_huge_pmd_locked() for one PMD mapping: it becomes a PTE mapping of every page
    (per-page mapcounts + 1, _large_mapcount + nr - 1, folio_ref_add(nr - 1))."""
    if not folio_live(ms, s):
        return E_BADSLOT
    if ms.order[s] == 0 or ms.emap[s] < 0:
        return E_INVAL
    n = np.int64(1) << ms.order[s]
    pfn = ms.pfn[s]
    ms.emap[s] -= 1
    pm = ms.cfg[MC_PAGE_MAPCOUNT] != 0
    if pm and ms.emap[s] < 0:
        ms.nrmap[s] -= ENTIRELY_MAPPED
    for i in range(n):
        ms.page_mc[pfn + i] += 1
        if pm and ms.page_mc[pfn + i] == 1:
            ms.nrmap[s] += 1
    ms.lmap[s] += n - 1
    ms.ref[s] += n - 1
    return OK


# ------------------------------------------------------------------ pins (mm/gup.c)


@njit
def folio_pin(ms, s, refs):
    """try_grab_folio(FOLL_PIN) / pin_user_pages() on one folio: GUP_PIN_COUNTING_BIAS
    references per pin for small folios, refs + _pincount for large ones."""
    os_ = ms.ostat[OP_PIN]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        return E_BADSLOT
    if refs < 1:
        os_[OS_INVALID] += 1
        return E_INVAL
    if ms.order[s] > 0:
        ms.ref[s] += refs
        ms.pin[s] += refs
    else:
        ms.ref[s] += refs * GUP_PIN_COUNTING_BIAS
    os_[OS_OK] += 1
    return OK


@njit
def folio_unpin(ms, ss, pa, s, refs, cpu):
    """gup_put_folio(FOLL_PIN) / unpin_user_pages(): undo folio_pin (E_INVAL if not that pinned)."""
    os_ = ms.ostat[OP_UNPIN]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        return E_BADSLOT
    if refs < 1:
        os_[OS_INVALID] += 1
        return E_INVAL
    if ms.order[s] > 0:
        if ms.pin[s] < refs:
            os_[OS_INVALID] += 1
            return E_INVAL
        ms.pin[s] -= refs
        drop = refs
    else:
        drop = refs * GUP_PIN_COUNTING_BIAS
        if ms.ref[s] < drop:
            os_[OS_INVALID] += 1
            return E_INVAL
    os_[OS_OK] += 1
    return folio_put_refs(ms, ss, pa, s, drop, cpu)


# ------------------------------------------------------------------ page cache attachment


@njit
def folio_attach_mapping(ms, s, mapping, index):
    """__filemap_add_folio()'s folio side: mapping and index set, folio_nr_pages references."""
    if not folio_live(ms, s) or mapping == 0 or ms.mapping[s] != 0 or ms.mtype[s] == MD_ANON:
        return E_INVAL
    ms.mapping[s] = mapping
    ms.index[s] = index
    ms.ref[s] += np.int64(1) << ms.order[s]
    return OK


@njit
def folio_detach_mapping(ms, ss, pa, s, cpu):
    """__filemap_remove_folio() + folio_put_refs(nr): the page cache lets go of the folio."""
    if not folio_live(ms, s) or ms.mapping[s] == 0:
        return E_INVAL
    ms.mapping[s] = 0
    return folio_put_refs(ms, ss, pa, s, np.int64(1) << ms.order[s], cpu)


@njit
def folio_set_anon(ms, s, anon_vma, index):
    """__folio_set_anon(): a new anon folio's rmap anchor -- folio->mapping's anon_vma (kept in
    its own column, see memdesc.mm.rmap) and folio->index, its linear page index."""
    ms.anon_vma[s] = anon_vma
    ms.index[s] = index


# ------------------------------------------------------------------ split (mm/huge_memory.c)


@njit
def split_pieces(order, new_order, at, uniform, anon, out_off, out_order):
    """The folios a split leaves, in pfn order: (offset, order) into out_*; returns how many.

    Uniform (split_folio_to_order): 2^(order - new_order) folios of new_order.  Non-uniform
    (folio_split at page ``at``): buddy halving toward ``at`` down to new_order -- for an
    anon folio an order-1 piece is split once more (anon folios are never order 1)."""
    n = 0
    if uniform:
        step = np.int64(1) << new_order
        for i in range(np.int64(1) << (order - new_order)):
            out_off[n] = i * step
            out_order[n] = new_order
            n += 1
        return n
    # halving: the halves without `at`, largest first, then the piece holding `at`
    cur = np.int64(0)
    co = order
    while co > new_order:
        co -= 1
        half = np.int64(1) << co
        if at >= cur + half:
            other = cur
            cur = cur + half
        else:
            other = cur + half
        if anon and co == 1:
            out_off[n] = other
            out_order[n] = 0
            out_off[n + 1] = other + 1
            out_order[n + 1] = 0
            n += 2
        else:
            out_off[n] = other
            out_order[n] = co
            n += 1
    out_off[n] = cur
    out_order[n] = new_order
    n += 1
    # pfn order (insertion sort: at most 2 * MAX_PAGE_ORDER + 2 pieces)
    for i in range(1, n):
        ko = out_off[i]
        kr = out_order[i]
        j = i - 1
        while j >= 0 and out_off[j] > ko:
            out_off[j + 1] = out_off[j]
            out_order[j + 1] = out_order[j]
            j -= 1
        out_off[j + 1] = ko
        out_order[j + 1] = kr
    return n


@njit
def _alloc_head_containing(pa, pfn, order):
    """The allocation (page_owner head) of order >= ``order`` that contains pfn: (head, order)."""
    for o in range(order, MAX_PAGE_ORDER + 1):
        h = pfn & ~((np.int64(1) << o) - 1)
        v = pa.owner[h]
        if v != core.OWNER_NONE and v != core.OWNER_PCP and v != core.OWNER_RESERVED:
            ho = core.owner_order(v)
            if ho >= o and h + (np.int64(1) << ho) > pfn:
                return h, ho
    return np.int64(-1), np.int64(-1)


@njit
def folio_split(ms, ss, pa, s, new_order, at, uniform, cpu, out):
    """Split folio s: uniformly to new_order (split_folio_to_order) or non-uniformly at page
    ``at`` (folio_split).  Requires the caller's reference and nothing beyond the expected
    ones (a pinned folio is busy).  Everything the split needs -- one descriptor per new folio,
    the allocator's own records (pa_split_prepare) -- is obtained before anything changes.

    Writes the slots of the resulting folios, in pfn order, to ``out`` (-1 for one that was
    freed at once: unmapped and not in the page cache); the folio holding ``at`` keeps the
    caller's reference.  Returns the number of folios, or E_BADSLOT, E_INVAL, E_BUSY,
    E_NOMEM_DESC, E_NOMEM_SPLIT, E_NOCAP."""
    os_ = ms.ostat[OP_SPLIT]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        os_[OS_CALLS] -= 1
        return E_BADSLOT
    order = np.int64(ms.order[s])
    t = ms.mtype[s]
    anon = t == MD_ANON
    if new_order < 0 or new_order >= order or at < 0 or at >= (np.int64(1) << order) \
            or (anon and new_order == 1) or t == MD_KSM:
        os_[OS_INVALID] += 1
        return E_INVAL
    if folio_maybe_dma_pinned(ms, s) or ms.ref[s] != folio_expected_ref_count(ms, s) + 1:
        os_[OS_BUSY] += 1
        return E_BUSY
    off = np.empty(MAX_PIECES, np.int64)
    pord = np.empty(MAX_PIECES, np.int64)
    n = split_pieces(order, new_order, at, uniform, anon, off, pord)
    if _slots_free(ms) < n:
        os_[OS_CALLS] -= 1
        return E_NOCAP
    # 1. descriptors for the n - 1 new folios (piece 0 keeps s's descriptor if it fits)
    pfn0 = ms.pfn[s]
    descs = np.full(n, -1, np.int64)
    first_keep = True
    c0 = ms.cache[t, _large(order)]
    if c0 >= 0 and ms.cache[t, _large(pord[0])] != c0:
        first_keep = False  # piece 0 changes descriptor size class (large -> small): a new one
    rc = OK
    for i in range(n):
        if i == 0 and first_keep:
            descs[0] = ms.desc[s]
            continue
        c = ms.cache[t, _large(pord[i])]
        if c < 0:
            continue
        d = _desc_alloc(ss, c, ms.gfp[s], pa, cpu)
        if d < 0:
            rc = d
            break
        descs[i] = d
        os_[OS_DESC_ALLOCS] += 1
    if rc == OK and not pa_split_prepare(pa, n - 1):
        rc = E_NOMEM_SPLIT
    if rc != OK:
        slab_enter_free_path_nb(ss)
        for i in range(n):
            if descs[i] >= 0 and not (i == 0 and first_keep):
                _desc_free(ss, ms.cache[t, _large(pord[i])], descs[i], pa, cpu)
        slab_leave_free_path_nb(ss)
        if rc == E_NOCAP:
            os_[OS_CALLS] -= 1
        elif rc == E_NOMEM_SPLIT:
            os_[OS_ALLOC_SPLIT_FAILED] += 1
        else:
            os_[OS_DESC_FAILED] += 1
            ms.tstat[t, TS_DESC_FAILED] += 1
        return rc
    # 2. the allocator's split: every piece an allocation of its own
    gfp = ms.gfp[s]
    pa_clear_memdesc(pa, pfn0, order, ms.cookie[s])
    for i in range(n):
        p = pfn0 + off[i]
        h, ho = _alloc_head_containing(pa, p, pord[i])
        if ho > pord[i]:
            pa_split_alloc(pa, h, ho, p, pord[i], gfp | core.GFP_COMP if pord[i] > 0 else gfp)
    # 3. entire (PMD) mappings become PTE mappings (unmap_folio: split_huge_pmd through the
    # rmap walk of an anon folio's page tables), then the pieces
    anon_vma = ms.anon_vma[s]
    if ms.emap[s] >= 0 and anon_vma != 0:
        rmap.split_huge_pmd_folio(ms, anon_vma, ms.index[s], pfn0)
    while ms.emap[s] >= 0:
        folio_split_pmd(ms, s)
    old_desc = ms.desc[s]
    old_dsize = ms.dsize[t, _large(order)]
    caller_piece = 0
    for i in range(n):
        if off[i] <= at < off[i] + (np.int64(1) << pord[i]):
            caller_piece = i
    flags = ms.flags[s] & ((np.int64(1) << SECOND) - 1) & ~(np.int64(1) << mmap.PG_head)
    mapping = ms.mapping[s]
    index = ms.index[s]
    memcg = ms.memcg[s]
    sub = np.int64(ms.sub[s])
    _deferred_del(ms, s)
    # statistics: one allocation became n (same pages); descriptors: the new ones, less the old
    # one if piece 0 could not keep it
    ts = ms.tstat[t]
    ts[TS_LIVE] += n - 1
    if old_desc >= 0:
        ts[TS_DESC_LIVE] -= 1
        ts[TS_DESC_BYTES] -= old_dsize
    if not first_keep and old_desc >= 0:
        slab_enter_free_path_nb(ss)
        _desc_free(ss, c0, old_desc, pa, cpu)
        slab_leave_free_path_nb(ss)
    ms.meta[MM_LIVE] += n - 1
    prev = s
    for i in range(n):
        o = pord[i]
        p = pfn0 + off[i]
        ps = s if i == 0 else _slot_get(ms)
        lru = ms.lru[s]
        if i > 0:
            _init_slot(ms, ps, p, o, t | (sub << mmap.MD_SUBTYPE_SHIFT), gfp, descs[i])
        else:
            if lru >= 0:  # the head stays on its list with fewer pages; the pieces add theirs
                ms.lru_head[lru_row(ms, s, lru), 3] -= (np.int64(1) << ms.order[s]) - (np.int64(1) << o)
            ms.order[s] = o
            ms.desc[s] = descs[0]
        ms.flags[ps] = flags
        if o > 0:
            ms.flags[ps] |= np.int64(1) << mmap.PG_head
            if t == MD_FILE or t == MD_ANON:
                ms.flags[ps] |= np.int64(1) << PG_large_rmappable
        ms.mapping[ps] = mapping
        ms.index[ps] = index + off[i]
        ms.anon_vma[ps] = anon_vma
        ms.memcg[ps] = memcg
        # mappings of the piece's pages
        mc = np.int64(0)
        mapped = np.int64(0)
        for q in range(np.int64(1) << o):
            v = np.int64(ms.page_mc[p + q])
            mc += v
            if v > 0:
                mapped += 1
        if o == 0:
            ms.mapcount[ps] = mc - 1
            ms.lmap[ps] = -1
            ms.nrmap[ps] = 0
        else:
            ms.mapcount[ps] = -1
            ms.lmap[ps] = mc - 1
            ms.nrmap[ps] = mapped if ms.cfg[MC_PAGE_MAPCOUNT] != 0 else 0
        ms.emap[ps] = -1
        ms.pin[ps] = 0
        ms.ref[ps] = folio_expected_ref_count(ms, ps) + (1 if i == caller_piece else 0)
        ms.cookie[ps] = pa_set_memdesc(pa, p, o, t | (sub << mmap.MD_SUBTYPE_SHIFT), descs[i])
        _map_pages(ms, p, o, ps)
        if descs[i] >= 0:
            ts[TS_DESC_LIVE] += 1
            ts[TS_DESC_BYTES] += ms.dsize[t, _large(o)]
            if not (i == 0 and first_keep):
                ts[TS_DESC_ALLOCS] += 1
        if i > 0 and lru >= 0:
            _lru_insert_after(ms, ps, prev)
            ms.flags[ps] |= np.int64(1) << mmap.PG_lru
        if i > 0:
            prev = ps
        out[i] = ps
    # folios nobody references any more are freed (free_folio_and_swap_cache)
    for i in range(n):
        ps = out[i]
        if ms.ref[ps] == 0:
            if ms.lru[ps] >= 0:
                lru_del(ms, ps)
            _release(ms, ss, pa, ps, cpu, OP_SPLIT)
            out[i] = -1
    os_[OS_OK] += 1
    os_[OS_PIECES] += n
    return n


# ------------------------------------------------------------------ migration (mm/migrate.c)


@njit
def folio_migrate(ms, ss, pa, s, cpu):
    """migrate_folio() to a new folio from the page allocator (alloc_migration_target with the
    folio's own gfp): the destination's descriptor and pages are allocated first; then state,
    mappings, page cache and LRU position move, and the source (pages and descriptor) is freed.
    Requires the caller's reference and nothing beyond the expected ones; a pinned folio is
    busy (folio_maybe_dma_pinned: not migratable).  Returns the new slot or E_BADSLOT, E_BUSY,
    E_NOMEM_DESC, E_NOMEM_PAGES, E_NOCAP."""
    os_ = ms.ostat[OP_MIGRATE]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        os_[OS_CALLS] -= 1
        return E_BADSLOT
    if folio_maybe_dma_pinned(ms, s) or ms.ref[s] != folio_expected_ref_count(ms, s) + 1:
        os_[OS_BUSY] += 1
        return E_BUSY
    t = ms.mtype[s]
    order = np.int64(ms.order[s])
    mdtype = t | (np.int64(ms.sub[s]) << mmap.MD_SUBTYPE_SHIFT)
    nd = _alloc_typed(ms, ss, pa, ms.gfp[s], order, mdtype, cpu, OP_MIGRATE)
    if nd == E_NOCAP:
        os_[OS_CALLS] -= 1
        return E_NOCAP
    if nd < 0:
        return nd
    return _migrate_move(ms, ss, pa, s, nd, cpu)


@njit
def _migrate_move(ms, ss, pa, s, nd, cpu):
    """The second half of a migration, once the destination folio nd exists: state, mappings,
    page cache and LRU position move to nd and the source (pages and descriptor) is freed."""
    os_ = ms.ostat[OP_MIGRATE]
    order = np.int64(ms.order[s])
    # folio_migrate_mapping + folio_migrate_flags + remove_migration_ptes
    src = ms.pfn[s]
    dst = ms.pfn[nd]
    for q in range(np.int64(1) << order):
        ms.page_mc[dst + q] = ms.page_mc[src + q]
        ms.page_mc[src + q] = 0
    ms.flags[nd] = ms.flags[s]
    ms.ref[nd] = ms.ref[s]
    ms.mapcount[nd] = ms.mapcount[s]
    ms.lmap[nd] = ms.lmap[s]
    ms.emap[nd] = ms.emap[s]
    ms.nrmap[nd] = ms.nrmap[s]
    ms.mapping[nd] = ms.mapping[s]
    ms.index[nd] = ms.index[s]
    ms.anon_vma[nd] = ms.anon_vma[s]
    ms.memcg[nd] = ms.memcg[s]
    # remove_migration_ptes(src, dst): the rmap walk of an anon folio's page tables
    if ms.anon_vma[nd] != 0:
        rmap.remove_migration_ptes(ms, ms.anon_vma[nd], ms.index[nd], src, dst, np.int64(1) << order)
    if ms.lru[s] >= 0:
        _lru_replace(ms, s, nd)
    if _on_deferred(ms, s):
        partially = (ms.flags[s] & (np.int64(1) << PG_partially_mapped)) != 0
        _deferred_del(ms, s)
        deferred_split_folio(ms, nd, partially)
    # the source goes: its mappings moved, its references with them
    ms.mapcount[s] = -1
    ms.lmap[s] = -1
    ms.emap[s] = -1
    ms.nrmap[s] = 0
    ms.mapping[s] = 0
    ms.anon_vma[s] = 0
    ms.ref[s] = 0
    rc = _release(ms, ss, pa, s, cpu, OP_MIGRATE)
    if rc < 0:
        return rc
    os_[OS_OK] += 1
    return nd


@njit
def _type_at(ms, ss, pa, gfp, order, mdtype, pfn, cpu, op):
    """Type the allocation [pfn, 2^order), which the caller already holds, as memdesc type
    mdtype: its descriptor first (where the design separates them), then the design's words.
    The slot, or E_NOMEM_DESC / E_NOCAP with nothing changed (the caller keeps the pages)."""
    if _slots_free(ms) < 1:
        return E_NOCAP
    desc = _typed_desc(ms, ss, pa, gfp, order, mdtype & MD_TYPE_MASK, cpu, ms.ostat[op])
    if desc == E_NOCAP or desc == E_NOMEM_DESC:
        return desc
    return _typed_install(ms, pa, pfn, order, mdtype, gfp, desc)


@njit
def memdesc_adopt_held(ms, ss, pa, pfn, order, mdtype, gfp, cpu):
    """An allocation the page allocator already holds (a snapshot's anon or file page, say)
    becomes a typed allocation (as memdesc_adopt, through _type_at, refusing a typed pfn): its
    descriptor is allocated (counted as an allocation) and the
    design's words written.  The slot, or E_NOMEM_DESC / E_NOCAP / E_INVAL (pfn already typed)."""
    if ms.pfn_slot[pfn] != 0 or order < 0 or order > MAX_PAGE_ORDER:
        return E_INVAL
    s = _type_at(ms, ss, pa, gfp, order, mdtype, pfn, cpu, OP_ALLOC)
    if s == E_NOCAP:
        return s
    os_ = ms.ostat[OP_ALLOC]
    os_[OS_CALLS] += 1
    if s >= 0:
        os_[OS_OK] += 1
    return s


@njit
def folio_migrate_to(ms, ss, pa, s, dst, cpu):
    """migrate_folio() to pages the caller isolated (compaction's free scanner: compaction_alloc):
    [dst, 2^order) is an untyped allocation of the folio's order that the caller holds.  The
    destination's descriptor is allocated before anything moves; on failure (E_NOMEM_DESC, or
    E_BUSY for a pinned folio or one with unexpected references) nothing changed and the caller
    keeps dst.  Returns the new slot."""
    os_ = ms.ostat[OP_MIGRATE]
    os_[OS_CALLS] += 1
    if not folio_live(ms, s):
        os_[OS_CALLS] -= 1
        return E_BADSLOT
    if folio_maybe_dma_pinned(ms, s) or ms.ref[s] != folio_expected_ref_count(ms, s) + 1:
        os_[OS_BUSY] += 1
        return E_BUSY
    t = ms.mtype[s]
    order = np.int64(ms.order[s])
    mdtype = t | (np.int64(ms.sub[s]) << mmap.MD_SUBTYPE_SHIFT)
    nd = _type_at(ms, ss, pa, ms.gfp[s], order, mdtype, dst, cpu, OP_MIGRATE)
    if nd == E_NOCAP:
        os_[OS_CALLS] -= 1
        return E_NOCAP
    if nd < 0:
        return nd
    os_[OS_PAGE_ALLOCS] += 1
    return _migrate_move(ms, ss, pa, s, nd, cpu)


@njit
def adopt_kernel(ms, ss, pa, pfns, orders, types, lrus, first, cpu, out):
    """memdesc_adopt_held() of allocations first.. of the arrays (type per entry; ``lrus[i]`` >= 0
    puts the folio on that LRU list, at the tail as the oldest).  ``out[i]``: the slot or the
    error.  Returns the index reached: it stops early (E_NOCAP territory) when headroom runs out,
    so the caller grows the state and calls again from there."""
    n = pfns.shape[0]
    i = first
    while i < n:
        if not headroom_ok(ms, ss):
            return i
        s = memdesc_adopt_held(ms, ss, pa, pfns[i], orders[i], types[i], G.GFP_HIGHUSER_MOVABLE, cpu)
        out[i] = s
        if s >= 0 and lrus[i] >= 0:
            lru_add(ms, s, lrus[i], True)
        i += 1
    return i


# ------------------------------------------------------------------ batch streams

# stream op codes (columns op, a, b, c, d of a stream; h = a handle: index into `handles`)
(S_ALLOC, S_PUT, S_GET, S_FREE, S_MAP, S_UNMAP, S_MAP_PMD, S_UNMAP_PMD, S_SPLIT_PMD, S_PIN, S_UNPIN, S_LRU_ADD,
 S_LRU_DEL, S_ATTACH, S_DETACH, S_SPLIT, S_MIGRATE, S_DEFERRED) = range(18)
STREAM_OPS = {
    "alloc": S_ALLOC, "put": S_PUT, "get": S_GET, "free": S_FREE, "map": S_MAP, "unmap": S_UNMAP,
    "map_pmd": S_MAP_PMD, "unmap_pmd": S_UNMAP_PMD, "split_pmd": S_SPLIT_PMD, "pin": S_PIN, "unpin": S_UNPIN,
    "lru_add": S_LRU_ADD, "lru_del": S_LRU_DEL, "attach": S_ATTACH, "detach": S_DETACH, "split": S_SPLIT,
    "migrate": S_MIGRATE, "deferred": S_DEFERRED,
}


@njit
def _after_put(ms, handles, h, rc):
    if rc == 0 and handles[h] >= 0 and not slot_live(ms, handles[h]):
        handles[h] = -1


@njit
def folio_stream_kernel(ms, ss, pa, op, a, b, c, d, handles, results, first, last, cpu):
    """Run stream operations [first, last) (see STREAM_OPS; the Python facade documents the
    columns).  Handles name folios across operations: an alloc writes its slot to handles[a],
    a free or a last put sets it to -1, a migration replaces it, a split writes piece k >= 1 to
    handles[d + k - 1] (piece 0 stays in handles[a]).  ``results[i]`` is each operation's return
    value.  Returns the index after the last operation run: it stops early when the state
    needs to grow (the caller grows it and resumes)."""
    tmp = np.empty(MAX_PIECES, np.int64)
    for i in range(first, last):
        if not headroom_ok(ms, ss):
            return i
        o = op[i]
        h = a[i]
        s = handles[h] if o != S_ALLOC else np.int64(-1)
        rc = np.int64(E_INVAL)
        if o == S_ALLOC:
            rc = memdesc_alloc(ms, ss, pa, d[i], c[i], b[i], cpu)
            handles[h] = rc if rc >= 0 else -1
        elif s < 0:
            rc = E_BADSLOT
        elif o == S_PUT:
            rc = folio_put_refs(ms, ss, pa, s, 1, cpu)
            _after_put(ms, handles, h, rc)
        elif o == S_GET:
            rc = folio_get(ms, s)
        elif o == S_FREE:
            rc = memdesc_free(ms, ss, pa, s, cpu)
            if rc == OK:
                handles[h] = -1
        elif o == S_MAP:
            rc = folio_map_ptes(ms, s, b[i], c[i])
        elif o == S_UNMAP:
            rc = folio_unmap_ptes(ms, ss, pa, s, b[i], c[i], cpu)
            _after_put(ms, handles, h, rc)
        elif o == S_MAP_PMD:
            rc = folio_map_pmd(ms, s)
        elif o == S_UNMAP_PMD:
            rc = folio_unmap_pmd(ms, ss, pa, s, cpu)
            _after_put(ms, handles, h, rc)
        elif o == S_SPLIT_PMD:
            rc = folio_split_pmd(ms, s)
        elif o == S_PIN:
            rc = folio_pin(ms, s, b[i])
        elif o == S_UNPIN:
            rc = folio_unpin(ms, ss, pa, s, b[i], cpu)
            _after_put(ms, handles, h, rc)
        elif o == S_LRU_ADD:
            rc = lru_add(ms, s, b[i], c[i] != 0)
        elif o == S_LRU_DEL:
            rc = lru_del(ms, s)
        elif o == S_ATTACH:
            rc = folio_attach_mapping(ms, s, b[i], c[i])
        elif o == S_DETACH:
            rc = folio_detach_mapping(ms, ss, pa, s, cpu)
            _after_put(ms, handles, h, rc)
        elif o == S_SPLIT:
            rc = folio_split(ms, ss, pa, s, b[i], c[i] if c[i] >= 0 else 0, c[i] < 0, cpu, tmp)
            if rc >= 0:
                handles[h] = tmp[0]
                for k in range(1, rc):
                    handles[d[i] + k - 1] = tmp[k]
        elif o == S_MIGRATE:
            rc = folio_migrate(ms, ss, pa, s, cpu)
            if rc >= 0:
                handles[h] = rc
        elif o == S_DEFERRED:
            rc = deferred_split_folio(ms, s, b[i] != 0)
        results[i] = rc
    return last


# ------------------------------------------------------------------ random operations (benchmarks, fault injection)

(R_ALLOCS, R_ALLOC_FAILED, R_FREES, R_FREE_FAILED, R_SPLITS, R_SPLIT_FAILED, R_MIGRATES, R_MIGRATE_FAILED,
 R_PINS, R_BUSY, R_MAPS, R_OPS) = range(12)
NR_R = 12
R_NAMES = ("allocations", "allocation_failures", "frees", "failed_frees", "splits", "split_failures", "migrations",
           "migration_failures", "pins", "busy", "maps", "operations")


@njit(inline="always")
def _xs(rng):
    x = rng[0]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    rng[0] = x
    return np.int64(x >> np.uint64(11))


@njit(inline="always")
def _pick(rng, n):
    """A uniform draw in [0, n) for n < 2**31 (32 random bits times n: no int64 overflow)."""
    return ((_xs(rng) >> 21) * n) >> 32


@njit
def random_ops_kernel(ms, ss, pa, rng, live, nlive, types, orders, weights, n, cpu, counts):
    """n random operations over a pool of live typed allocations (``live[:nlive[0]]`` slots
    owned by the driver: each holds exactly the caller's reference).  ``weights``: cumulative
    thresholds (out of 2**53) for alloc, free, split, migrate, pin+unpin, map+unmap.  Types and
    orders are drawn from ``types``/``orders``.  Returns the number of operations done (it
    stops early when the state must grow)."""
    tmp = np.empty(MAX_PIECES, np.int64)
    cap = live.shape[0]
    for k in range(n):
        if not headroom_ok(ms, ss) or nlive[0] + MAX_PIECES >= cap:
            return k
        counts[R_OPS] += 1
        r = _xs(rng)
        m = nlive[0]
        if r < weights[0] or m == 0:
            t = types[_pick(rng, types.shape[0])]
            o = orders[_pick(rng, orders.shape[0])]
            if (t & MD_TYPE_MASK) == MD_KSM:
                o = 0
            gfp = G.GFP_HIGHUSER_MOVABLE | (G.__GFP_COMP if o > 0 else 0)
            if not _is_folio_type(t & MD_TYPE_MASK):
                gfp = G.GFP_KERNEL | (G.__GFP_COMP if o > 0 else 0)
            s = memdesc_alloc(ms, ss, pa, gfp, o, t, cpu)
            counts[R_ALLOCS] += 1
            if s < 0:
                counts[R_ALLOC_FAILED] += 1
            else:
                live[m] = s
                nlive[0] = m + 1
            continue
        j = _pick(rng, m)
        s = live[j]
        if r < weights[1]:
            counts[R_FREES] += 1
            rc = drop_all(ms, ss, pa, s, cpu)
            if rc != 0:
                counts[R_FREE_FAILED] += 1
            else:
                live[j] = live[m - 1]
                nlive[0] = m - 1
        elif r < weights[2]:
            if not _is_folio_type(ms.mtype[s]) or ms.order[s] == 0 or ms.mtype[s] == MD_KSM:
                continue
            counts[R_SPLITS] += 1
            o = np.int64(ms.order[s])
            no = _pick(rng, o)
            anon = ms.mtype[s] == MD_ANON
            if anon and no == 1:
                no = 0
            uniform = (_xs(rng) & 1) == 0
            at = _pick(rng, np.int64(1) << o)
            rc = folio_split(ms, ss, pa, s, no, at, uniform, cpu, tmp)
            if rc < 0:
                counts[R_SPLIT_FAILED] += 1
                if rc == E_BUSY:
                    counts[R_BUSY] += 1
                continue
            # keep the pieces the split left alive (the caller's is the one holding `at`)
            live[j] = live[m - 1]
            m -= 1
            for q in range(rc):
                ps = tmp[q]
                if ps < 0:
                    continue
                if ms.ref[ps] == folio_expected_ref_count(ms, ps):
                    ms.ref[ps] += 1  # the driver takes a reference on each piece it keeps
                live[m] = ps
                m += 1
            nlive[0] = m
        elif r < weights[3]:
            if not _is_folio_type(ms.mtype[s]):
                continue
            counts[R_MIGRATES] += 1
            rc = folio_migrate(ms, ss, pa, s, cpu)
            if rc < 0:
                counts[R_MIGRATE_FAILED] += 1
                if rc == E_BUSY:
                    counts[R_BUSY] += 1
            else:
                live[j] = rc
        elif r < weights[4]:
            if not _is_folio_type(ms.mtype[s]):
                continue
            counts[R_PINS] += 1
            if folio_maybe_dma_pinned(ms, s) and (ms.order[s] > 0 or ms.ref[s] >= GUP_PIN_COUNTING_BIAS):
                rc = folio_unpin(ms, ss, pa, s, 1, cpu)
            else:
                rc = folio_pin(ms, s, 1)
            if rc < 0:
                counts[R_FREE_FAILED] += 1
        else:
            if not _is_folio_type(ms.mtype[s]):
                continue
            counts[R_MAPS] += 1
            nr = np.int64(1) << ms.order[s]
            page = _pick(rng, nr)
            if ms.page_mc[ms.pfn[s] + page] > 0 and ((_xs(rng) & 1) == 0 or ms.page_mc[ms.pfn[s] + page] >= 8):
                rc = folio_unmap_ptes(ms, ss, pa, s, page, 1, cpu)
            else:
                rc = folio_map_ptes(ms, s, page, 1)
            if rc < 0:
                counts[R_FREE_FAILED] += 1
    return n


@njit
def drop_all(ms, ss, pa, s, cpu):
    """What an owner holding one reference does to let go of a typed allocation: unpin, unmap
    (PMD and PTEs), take it out of the page cache, put its reference (a folio is freed when
    nothing else holds it), or free a non-folio.  0, or a negative code."""
    if not slot_live(ms, s):
        return E_BADSLOT
    if not _is_folio_type(ms.mtype[s]):
        return memdesc_free(ms, ss, pa, s, cpu)
    while ms.order[s] > 0 and ms.pin[s] > 0:
        folio_unpin(ms, ss, pa, s, 1, cpu)
    while ms.order[s] == 0 and ms.ref[s] > GUP_PIN_COUNTING_BIAS:
        folio_unpin(ms, ss, pa, s, 1, cpu)
    while ms.emap[s] >= 0:
        folio_unmap_pmd(ms, ss, pa, s, cpu)
    pfn = ms.pfn[s]
    for q in range(np.int64(1) << ms.order[s]):
        while ms.page_mc[pfn + q] > 0:
            folio_unmap_ptes(ms, ss, pa, s, q, 1, cpu)
    if ms.mapping[s] != 0:
        folio_detach_mapping(ms, ss, pa, s, cpu)
    rc = folio_put_refs(ms, ss, pa, s, 1, cpu)
    return np.int64(0) if rc == 0 else (rc if rc < 0 else E_BUSY)


@njit
def release_all_kernel(ms, ss, pa, live, nlive, cpu, counts):
    """Give back everything the random driver holds (drop_all on each).  Returns the failures."""
    bad = 0
    for j in range(nlive[0]):
        if drop_all(ms, ss, pa, live[j], cpu) != 0:
            bad += 1
    counts[R_FREE_FAILED] += bad
    nlive[0] = 0
    return bad


# ------------------------------------------------------------------ the type of an allocation from its gfp

_GFP_WRITE = G.__GFP_WRITE
_GFP_MOVABLE = G.__GFP_MOVABLE
_GFP_ZERO = G.__GFP_ZERO
_GFP_NOMEMALLOC = G.__GFP_NOMEMALLOC
_GFP_NORETRY = G.__GFP_NORETRY
_GFP_NOWARN = G.__GFP_NOWARN
_GFP_FS = G.__GFP_FS
_GFP_RECLAIMABLE = G.__GFP_RECLAIMABLE
_GFP_COMP = G.__GFP_COMP
_GFP_ACCOUNT = G.__GFP_ACCOUNT
MD_BARE_DRIVER = MD_MISC | (mdesc.SUB_DRIVER << mmap.MD_SUBTYPE_SHIFT)
MD_BARE_KMALLOC_LARGE = MD_MISC | (mdesc.SUB_KMALLOC_LARGE << mmap.MD_SUBTYPE_SHIFT)
#: the classifier's rules, in order (docs/memdesc.md prints them; the first that matches wins)
CLASSIFIER_RULES = (
    ("__GFP_WRITE", "file", "page cache write (grab_cache_page_write_begin: mapping gfp | __GFP_WRITE)"),
    ("__GFP_MOVABLE and __GFP_ZERO", "anon", "anonymous fault (vma_alloc_zeroed_movable_folio)"),
    ("__GFP_MOVABLE, order > 0, __GFP_NOMEMALLOC", "anon", "THP / mTHP fault (GFP_TRANSHUGE[_LIGHT])"),
    ("__GFP_MOVABLE, __GFP_NORETRY or no __GFP_FS", "file", "readahead (readahead_gfp_mask) or a NOFS mapping"),
    ("__GFP_MOVABLE", "anon", "other user pages (COW copies: GFP_HIGHUSER_MOVABLE)"),
    ("__GFP_RECLAIMABLE", "slab", "SLAB_RECLAIM_ACCOUNT caches"),
    ("__GFP_COMP, __GFP_NORETRY, __GFP_NOWARN", "slab", "allocate_slab()'s first try at the cache's order"),
    ("order 0, __GFP_COMP, __GFP_ZERO, __GFP_ACCOUNT", "pagetable",
     "GFP_PGTABLE_USER; pagetable_alloc adds __GFP_COMP"),
    ("__GFP_COMP without __GFP_FS, __GFP_ACCOUNT, __GFP_ZERO", "file", "page cache of NOFS / NOWAIT paths "
     "(buffer heads, block-device mappings)"),
    ("__GFP_COMP, order > 0", "misc:kmalloc_large", "kmalloc() above the slab sizes"),
    ("anything else", "misc:driver", "vmalloc, kernel stacks, page_pool, percpu ...: kpageflags shows them "
     "flagless"),
)


@njit(inline="always")
def classify_allocation(gfp, order):
    """The memdesc type (with a bare page's subtype in bits 4-10) of an allocation known only by its
    gfp and order: the rules of CLASSIFIER_RULES, from how the kernel's callers build their gfp."""
    if gfp & _GFP_WRITE:
        return MD_FILE
    if gfp & _GFP_MOVABLE:
        if gfp & _GFP_ZERO:
            return MD_ANON
        if order > 0 and (gfp & _GFP_NOMEMALLOC):
            return MD_ANON
        if (gfp & _GFP_NORETRY) or not (gfp & _GFP_FS):
            return MD_FILE
        return MD_ANON
    if gfp & _GFP_RECLAIMABLE:
        return MD_SLAB
    comp = (gfp & _GFP_COMP) != 0
    if comp and (gfp & _GFP_NORETRY) and (gfp & _GFP_NOWARN):
        return MD_SLAB
    if comp and order == 0 and (gfp & _GFP_ZERO) and (gfp & _GFP_ACCOUNT):
        return MD_PAGETABLE
    if comp and not (gfp & (_GFP_FS | _GFP_ACCOUNT | _GFP_ZERO)):
        return MD_FILE
    if comp and order > 0:
        return MD_BARE_KMALLOC_LARGE
    return MD_BARE_DRIVER


@njit
def classify_allocations(gfp, order, out):
    """classify_allocation over arrays (one entry per allocation event)."""
    for i in range(out.shape[0]):
        out[i] = classify_allocation(np.int64(gfp[i]), np.int64(order[i]))


# ------------------------------------------------------------------ consistency check

(MCHK_OK, MCHK_FREELIST, MCHK_OWNER, MCHK_PFNMAP, MCHK_DESC, MCHK_DESC_COUNT, MCHK_DESIGN, MCHK_REF,
 MCHK_MAPCOUNT, MCHK_NRMAP, MCHK_STRAY_MAP, MCHK_LRU, MCHK_DEFERRED, MCHK_STATS, MCHK_PIN) = range(15)
MCHECK_MESSAGES = {
    MCHK_FREELIST: "the free-slot stack is inconsistent at slot {a}",
    MCHK_OWNER: "slot {a}: pfn {b:#x} is not an allocation of its order in the page allocator",
    MCHK_PFNMAP: "page {b:#x} of slot {a} does not map back to it (page_folio)",
    MCHK_DESC: "slot {a}: descriptor {b:#x} is not an allocated object of its type's cache",
    MCHK_DESC_COUNT: "descriptor cache {a} has {b} objects in use, the typed allocations hold another number",
    MCHK_DESIGN: "slot {a}: the design's words of page {b:#x} do not name its descriptor",
    MCHK_REF: "slot {a}: refcount {b} is below the references its mappings and page cache hold",
    MCHK_MAPCOUNT: "slot {a}: mapcount {b} disagrees with the mappings of its pages",
    MCHK_NRMAP: "slot {a}: _nr_pages_mapped {b} disagrees with its mapped pages",
    MCHK_STRAY_MAP: "page {b:#x} maps to slot {a}, which does not hold it (or is mapped without a folio)",
    MCHK_LRU: "LRU list {a} is broken at slot {b}",
    MCHK_DEFERRED: "the deferred split queue is broken at slot {a}",
    MCHK_STATS: "type {a}: live counters disagree with the live allocations ({b})",
    MCHK_PIN: "slot {a}: _pincount {b} on a folio that cannot hold pins",
}


@njit
def memdesc_check_nb(ms, ss, pa):
    """Full invariant check of the typed allocations against the slab and the design."""
    top = ms.meta[MM_TOP]
    nf = ms.meta[MM_NFREE]
    seen = np.zeros(max(top, 1), np.uint8)
    for i in range(nf):
        s = ms.fstack[i]
        if s < 0 or s >= top or seen[s] or ms.mtype[s] >= 0:
            return MCHK_FREELIST, s, 0
        seen[s] = 1
    live = np.zeros(NR_MDTYPES, np.int64)
    pages = np.zeros(NR_MDTYPES, np.int64)
    ndesc = np.zeros(NR_MDTYPES, np.int64)
    nc = ss.meta[M_NCACHES]
    inuse = np.zeros(max(nc, 1), np.int64)
    for s in range(top):
        t = ms.mtype[s]
        if t < 0:
            if not seen[s]:
                return MCHK_FREELIST, s, 0
            continue
        pfn = ms.pfn[s]
        order = np.int64(ms.order[s])
        v = pa.owner[pfn]
        if v == core.OWNER_NONE or v == core.OWNER_PCP or v == core.OWNER_RESERVED or core.owner_order(v) != order:
            return MCHK_OWNER, s, pfn
        n = np.int64(1) << order
        for q in range(n):
            if ms.pfn_slot[pfn + q] != s + 1:
                return MCHK_PFNMAP, s, pfn + q
        live[t] += 1
        pages[t] += n
        d = ms.desc[s]
        c = ms.cache[t, _large(order)]
        if (c < 0) != (d < 0):
            return MCHK_DESC, s, d
        if d >= 0:
            ndesc[t] += 1
            sl = virt_to_slab_nb(ss, d)
            if sl < 0 or ss.slabs[sl, SF_CACHE] != c:
                return MCHK_DESC, s, d
            off = d - (ss.slabs[sl, SF_PFN] << 12)
            size = ss.caches[c, CF_SIZE]
            if off % size != 0 or ss.objnext[ss.slabs[sl, SF_OBASE] + off // size] != OBJ_ALLOCATED:
                return MCHK_DESC, s, d
            inuse[c] += 1
        dt, dd = pa_page_memdesc(pa, pfn)
        if dd >= 0 and dd != d:
            return MCHK_DESIGN, s, pfn
        if _is_folio_type(t):
            mc = np.int64(0)
            mapped = np.int64(0)
            for q in range(n):
                mc += ms.page_mc[pfn + q]
                if ms.page_mc[pfn + q] > 0:
                    mapped += 1
            if order == 0:
                if ms.mapcount[s] + 1 != mc:
                    return MCHK_MAPCOUNT, s, ms.mapcount[s] + 1
            else:
                if ms.lmap[s] + 1 != mc + ms.emap[s] + 1:
                    return MCHK_MAPCOUNT, s, ms.lmap[s] + 1
                if ms.cfg[MC_PAGE_MAPCOUNT] != 0:
                    want = mapped + (ENTIRELY_MAPPED if ms.emap[s] >= 0 else 0)
                    if ms.nrmap[s] != want:
                        return MCHK_NRMAP, s, ms.nrmap[s]
            extra = ms.pin[s] if order > 0 else 0
            if ms.ref[s] < folio_expected_ref_count(ms, s) + extra or ms.ref[s] < 1:
                return MCHK_REF, s, ms.ref[s]
            if ms.pin[s] != 0 and order == 0:
                return MCHK_PIN, s, ms.pin[s]
        else:
            if ms.pin[s] != 0:
                return MCHK_PIN, s, ms.pin[s]
    # stray pfn map entries and stray mappings
    for p in range(ms.pfn_slot.shape[0]):
        v = np.int64(ms.pfn_slot[p])
        if v == 0:
            if ms.page_mc[p] != 0:
                return MCHK_STRAY_MAP, -1, p
            continue
        s = v - 1
        if s >= top or ms.mtype[s] < 0 or not (ms.pfn[s] <= p < ms.pfn[s] + (np.int64(1) << ms.order[s])):
            return MCHK_STRAY_MAP, s, p
        if ms.page_mc[p] != 0 and not _is_folio_type(ms.mtype[s]):
            return MCHK_STRAY_MAP, s, p
    # descriptor caches: objects in use = descriptors held (struct slabs also describe slab pages)
    sc = ss.scfg[SCFG_SLABDESC]
    is_desc = np.zeros(max(nc, 1), np.uint8)
    for t in range(NR_MDTYPES):
        for lg in range(2):
            if ms.cache[t, lg] >= 0:
                is_desc[ms.cache[t, lg]] = 1
    for c in range(nc):
        if not is_desc[c]:
            continue
        want = inuse[c]
        if c == sc:
            for cc in range(nc):
                want += ss.caches[cc, CF_NR_SLABS]
        if ss.caches[c, CF_INUSE] != want:
            return MCHK_DESC_COUNT, c, ss.caches[c, CF_INUSE]
    # LRU lists
    for row in range(ms.lru_head.shape[0]):
        lru = row % NR_LRU_LISTS
        s = ms.lru_head[row, 0]
        prev = np.int64(-1)
        cnt = 0
        lpages = np.int64(0)
        while s >= 0:
            if s >= top or ms.mtype[s] < 0 or ms.lru[s] != lru or ms.lru_prev[s] != prev \
                    or lru_row(ms, s, lru) != row or not (ms.flags[s] & (np.int64(1) << mmap.PG_lru)):
                return MCHK_LRU, row, s
            cnt += 1
            lpages += np.int64(1) << ms.order[s]
            if cnt > top:
                return MCHK_LRU, row, s
            prev = s
            s = ms.lru_next[s]
        if prev != ms.lru_head[row, 1] or cnt != ms.lru_head[row, 2] or lpages != ms.lru_head[row, 3]:
            return MCHK_LRU, row, prev
    # deferred split queue
    s = ms.meta[MM_DS_HEAD]
    prev = np.int64(-1)
    cnt = 0
    while s >= 0:
        if s >= top or ms.mtype[s] != MD_ANON or ms.ds_prev[s] != prev or ms.order[s] <= 1:
            return MCHK_DEFERRED, s, 0
        cnt += 1
        if cnt > top:
            return MCHK_DEFERRED, s, 0
        prev = s
        s = ms.ds_next[s]
    if prev != ms.meta[MM_DS_TAIL] or cnt != ms.meta[MM_DS_COUNT]:
        return MCHK_DEFERRED, prev, 0
    for t in range(NR_MDTYPES):
        if live[t] != ms.tstat[t, TS_LIVE] or pages[t] != ms.tstat[t, TS_LIVE_PAGES] \
                or ndesc[t] != ms.tstat[t, TS_DESC_LIVE]:
            return MCHK_STATS, t, live[t]
    return MCHK_OK, 0, 0


# ------------------------------------------------------------------ the descriptor layout of a design


@dataclass(frozen=True)
class DescriptorLayout:
    """How a design represents descriptors: ``separate`` (allocated from the slab, else
    overlaid on struct page), bytes per type (small, large), ``page_mapcount`` (struct page
    keeps a per-page _mapcount: CONFIG_PAGE_MAPCOUNT)."""

    design: str
    struct_page_bytes: int
    separate: bool
    page_mapcount: bool
    sizes: dict[int, tuple[int, int]]

    @classmethod
    def of(cls, design) -> DescriptorLayout:
        spb = int(design.struct_page_bytes)
        spec = mdesc.DESIGN_SPECS.get(str(getattr(design, "memdesc_name", design.name)))
        separate = spec.separate_descriptors if spec is not None else spb < 64
        extra = descriptor_extra_bytes(design)
        sizes = {t: (a + extra, b + extra) for t, (a, b) in DESCRIPTOR_BYTES.items()} if separate else {}
        # 6.18's struct page keeps _mapcount in 64 bytes and in the 32-byte step (union with private)
        return cls(design.name, spb, separate, spb >= 32, sizes)


def _cache_name(t: int, large: bool) -> str:
    """The kmem_cache of type t's descriptor: the type table's cache name (folio and folio_large
    are shared by file, anon and KSM folios)."""
    return "memdesc_" + DESCRIPTOR_SPECS[t][1 if large else 0].cache


# ------------------------------------------------------------------ Python facade


class FolioError(MemdescError):
    """A folio operation the kernel would refuse (not a live folio, bad page, busy)."""


class FolioBusy(FolioError):
    """-EAGAIN: the folio is pinned or holds references beyond the expected ones."""


def _rc_error(rc: int, what: str) -> MemdescError:
    if rc == E_BUSY:
        return FolioBusy(f"{what}: the folio is pinned or has unexpected references (-EAGAIN)")
    if rc == E_BADSLOT:
        return FolioError(f"{what}: not a live folio / typed allocation")
    if rc == E_MAPPED:
        return FolioError(f"{what}: the last reference of a folio that is still mapped or in the page cache")
    if rc == E_FREE:
        return FolioError(f"{what}: the page allocator refused the free")
    return FolioError(f"{what}: invalid argument ({RC_NAMES.get(rc, rc)})")


class Folios:
    """The folio and descriptor layer of a machine (``Folios.of(machine)``).

    Handles are slots (ints): ``folio_alloc`` returns one, ``migrate`` returns the new one,
    ``split`` the list of pieces.  Allocation failures return None (a normal result); misuse
    raises :class:`FolioError`; ``split``/``migrate`` of a busy folio raise :class:`FolioBusy`
    and return None when memory (pages, descriptors, the allocator's split) ran out."""

    _per_machine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, machine: Machine, capacity: int = 1024):
        self.machine = machine
        self.slab = SlabAllocator.of(machine)
        self.layout = DescriptorLayout.of(machine.design)
        self.state = new_memdesc_state(machine.design.zs.owner.shape[0], capacity, self.layout.separate,
                                       self.layout.page_mapcount, machine.design.words)
        self.caches: dict[tuple[int, int], KmemCache] = {}
        by_name: dict[str, KmemCache] = {}
        if self.layout.separate:
            for t, (small, large) in self.layout.sizes.items():
                for lg, size in ((0, small), (1, large)):
                    name = _cache_name(t, bool(lg))
                    if t == MD_SLAB:
                        kc = self.slab.slab_desc
                    elif name in by_name:
                        kc = by_name[name]
                    else:
                        kc = KmemCache(machine, name, size, allocator=self.slab, flags=CFL_FAILSLAB)
                        by_name[name] = kc
                    self.caches[(t, lg)] = kc
                    self.state.cache[t, lg] = kc.id
                    self.state.dsize[t, lg] = kc.size

    @classmethod
    def of(cls, machine: Machine) -> Folios:
        f = cls._per_machine.get(machine)
        if f is None:
            f = cls(machine)
            cls._per_machine[machine] = f
        return f

    # -- plumbing
    @property
    def pa(self):
        return self.machine.design.state

    def _ensure(self) -> None:
        ms = self.state
        if not headroom_ok(ms, self.slab.state):
            self.state = grow_memdesc_state(ms, MAX_PIECES + 1)
            self.slab.state = slab_state_headroom(self.slab.state, HEADROOM_SLABS)

    def _run(self, kernel, *args):
        while True:
            self._ensure()
            rc = kernel(self.state, self.slab.state, self.pa, *args)
            r = int(rc[0] if isinstance(rc, tuple) else rc)
            if r != E_NOCAP:
                return rc
            self.state = grow_memdesc_state(self.state, 2 * MAX_PIECES)
            self.slab.state = slab_state_headroom(self.slab.state, 4 * HEADROOM_SLABS)

    def _cpu(self, cpu: int) -> np.int64:
        if not 0 <= int(cpu) < self.machine.nr_cpus:
            raise ConfigError(f"cpu {cpu} out of range: the machine has {self.machine.nr_cpus} CPUs")
        return np.int64(cpu)

    def _slot(self, s: int, folio: bool = True) -> np.int64:
        if isinstance(s, bool) or not isinstance(s, int | np.integer):
            raise FolioError(f"a folio handle is an int, got {s!r}")
        ok = folio_live(self.state, np.int64(s)) if folio else slot_live(self.state, np.int64(s))
        if not ok:
            raise FolioError(f"{int(s)} is not a live {'folio' if folio else 'typed allocation'}")
        return np.int64(s)

    # -- allocation
    def alloc(self, mdtype: int | str, order: int = 0, gfp: int | str | None = None, cpu: int = 0,
              subtype: int = 0) -> int | None:
        """A typed allocation (descriptor + pages); its handle, or None if memory ran out."""
        t = TYPE_BY_NAME[mdtype] if isinstance(mdtype, str) else int(mdtype)
        if t not in TYPE_NAMES:
            raise ConfigError(f"unknown memdesc type {mdtype!r}; known: {', '.join(TYPE_NAMES.values())}")
        if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 0 <= order <= MAX_PAGE_ORDER:
            raise ConfigError(f"order {order!r} outside 0..{MAX_PAGE_ORDER}")
        if t == MD_KSM and order:
            raise ConfigError("KSM folios are order 0")
        if gfp is None:
            gfp = G.GFP_HIGHUSER_MOVABLE if t in FOLIO_TYPES else G.GFP_KERNEL
            if order:
                gfp |= GFP_COMP
        g = to_gfp(gfp)
        md = t | (int(subtype) << mmap.MD_SUBTYPE_SHIFT)
        rc = int(self._run(memdesc_alloc, np.int64(g), np.int64(order), np.int64(md), self._cpu(cpu)))
        return rc if rc >= 0 else None

    def folio_alloc(self, gfp: int | str | None = None, order: int = 0, anon: bool = True, cpu: int = 0) -> int | None:
        """folio_alloc() (vma_alloc_folio for anon, filemap_alloc_folio for file): refcount 1."""
        return self.alloc(MD_ANON if anon else MD_FILE, order, gfp, cpu)

    def pagetable_alloc(self, gfp: int | str = "GFP_PGTABLE_USER", order: int = 0, cpu: int = 0) -> int | None:
        """pagetable_alloc(): a page table page with its ptdesc."""
        g = to_gfp(gfp) if gfp != "GFP_PGTABLE_USER" else G.GFP_KERNEL_ACCOUNT | GFP_ZERO
        return self.alloc(MD_PAGETABLE, order, g, cpu)

    def free(self, s: int, cpu: int = 0) -> None:
        """Free a typed allocation that is not a folio (pagetable_free, a netmem/zpdesc/bare page,
        a slab page): pages and descriptor go back (its struct slab, for a slab page)."""
        rc = int(self._run(memdesc_free, self._slot(s, folio=False), self._cpu(cpu)))
        if rc != OK:
            raise _rc_error(rc, f"free({s})")

    # -- references
    def get(self, s: int) -> int:
        return int(folio_get(self.state, self._slot(s)))

    def put(self, s: int, refs: int = 1, cpu: int = 0) -> int:
        """folio_put_refs(): the remaining refcount (0: the folio was freed)."""
        rc = int(self._run(folio_put_refs, self._slot(s), np.int64(refs), self._cpu(cpu)))
        if rc < 0:
            raise _rc_error(rc, f"folio_put({s})")
        return rc

    def ref_count(self, s: int) -> int:
        return int(self.state.ref[self._slot(s, folio=False)])

    def mapcount(self, s: int) -> int:
        return int(folio_mapcount(self.state, self._slot(s)))

    def maybe_dma_pinned(self, s: int) -> bool:
        return bool(folio_maybe_dma_pinned(self.state, self._slot(s)))

    # -- facts
    def page_folio(self, pfn: int) -> int | None:
        """page_folio(): the handle of the typed allocation holding pfn, or None."""
        if not 0 <= int(pfn) < self.state.pfn_slot.shape[0]:
            raise InvalidPfn(f"pfn {pfn!r} outside the machine")
        v = int(self.state.pfn_slot[int(pfn)])
        return v - 1 if v else None

    def pfn(self, s: int) -> int:
        return int(self.state.pfn[self._slot(s, folio=False)])

    def order(self, s: int) -> int:
        return int(self.state.order[self._slot(s, folio=False)])

    def nr_pages(self, s: int) -> int:
        return 1 << self.order(s)

    def type_name(self, s: int) -> str:
        return TYPE_NAMES[int(self.state.mtype[self._slot(s, folio=False)])]

    def descriptor(self, s: int) -> int | None:
        d = int(self.state.desc[self._slot(s, folio=False)])
        return d if d >= 0 else None

    def test(self, s: int, flag: str) -> bool:
        return bool(self.state.flags[self._slot(s)] >> FOLIO_FLAGS[flag] & 1)

    def set(self, s: int, flag: str) -> None:
        self.state.flags[self._slot(s)] |= np.int64(1) << FOLIO_FLAGS[flag]

    def clear(self, s: int, flag: str) -> None:
        self.state.flags[self._slot(s)] &= ~(np.int64(1) << FOLIO_FLAGS[flag])

    def flags(self, s: int) -> list[str]:
        f = int(self.state.flags[self._slot(s)])
        names = {v: k for k, v in FOLIO_FLAGS.items() if k not in ("swapcache", "checked", "mappedtodisk")}
        return [names[b] for b in sorted(names) if f >> b & 1]

    # -- mappings, pins, lists, page cache
    def _ok(self, rc, what: str) -> int:
        r = int(rc)
        if r < 0:
            raise _rc_error(r, what)
        return r

    def map_ptes(self, s: int, page: int = 0, nr: int = 1) -> int:
        return self._ok(folio_map_ptes(self.state, self._slot(s), np.int64(page), np.int64(nr)), "map_ptes")

    def unmap_ptes(self, s: int, page: int = 0, nr: int = 1, cpu: int = 0) -> int:
        return self._ok(self._run(folio_unmap_ptes, self._slot(s), np.int64(page), np.int64(nr), self._cpu(cpu)),
                        "unmap_ptes")

    def map_pmd(self, s: int) -> int:
        return self._ok(folio_map_pmd(self.state, self._slot(s)), "map_pmd")

    def unmap_pmd(self, s: int, cpu: int = 0) -> int:
        return self._ok(self._run(folio_unmap_pmd, self._slot(s), self._cpu(cpu)), "unmap_pmd")

    def split_pmd(self, s: int) -> None:
        self._ok(folio_split_pmd(self.state, self._slot(s)), "split_huge_pmd")

    def pin(self, s: int, refs: int = 1) -> None:
        """pin_user_pages() on the folio (refs pins)."""
        self._ok(folio_pin(self.state, self._slot(s), np.int64(refs)), "pin_user_pages")

    def unpin(self, s: int, refs: int = 1, cpu: int = 0) -> int:
        return self._ok(self._run(folio_unpin, self._slot(s), np.int64(refs), self._cpu(cpu)), "unpin_user_pages")

    def lru_add(self, s: int, lru: str | int, tail: bool = False) -> None:
        li = LRU_NAMES.index(lru) if isinstance(lru, str) else int(lru)
        self._ok(lru_add(self.state, self._slot(s), np.int64(li), tail), "lruvec_add_folio")

    def lru_del(self, s: int) -> None:
        self._ok(lru_del(self.state, self._slot(s)), "lruvec_del_folio")

    def lru_list(self, lru: str | int, memcg: int = 0) -> list[int]:
        """The folios of one LRU list of memcg's lruvec, head (newest) first."""
        li = LRU_NAMES.index(lru) if isinstance(lru, str) else int(lru)
        row = int(memcg) * NR_LRU_LISTS + li
        if not 0 <= row < self.state.lru_head.shape[0]:
            raise ConfigError(f"no lruvec for memcg {memcg}")
        out, s = [], int(self.state.lru_head[row, 0])
        while s >= 0:
            out.append(s)
            s = int(self.state.lru_next[s])
        return out

    def deferred_split(self, s: int, partially_mapped: bool = False) -> None:
        self._ok(deferred_split_folio(self.state, self._slot(s), partially_mapped), "deferred_split_folio")

    def deferred_list(self) -> list[int]:
        out, s = [], int(self.state.meta[MM_DS_HEAD])
        while s >= 0:
            out.append(s)
            s = int(self.state.ds_next[s])
        return out

    def add_to_page_cache(self, s: int, mapping: int, index: int) -> None:
        """The folio side of filemap_add_folio(): mapping, index, folio_nr_pages references."""
        self._ok(folio_attach_mapping(self.state, self._slot(s), np.int64(mapping), np.int64(index)),
                 "filemap_add_folio")

    def remove_from_page_cache(self, s: int, cpu: int = 0) -> int:
        return self._ok(self._run(folio_detach_mapping, self._slot(s), self._cpu(cpu)), "filemap_remove_folio")

    # -- operations that need memory
    def split(self, s: int, new_order: int = 0, at: int | None = None, cpu: int = 0) -> list[int | None] | None:
        """split_folio_to_order (``at`` None) or folio_split at page ``at``: the folios left, in pfn
        order (None for one freed at once), or None when memory ran out (nothing changed)."""
        out = np.empty(MAX_PIECES, np.int64)
        rc = int(self._run(folio_split, self._slot(s), np.int64(new_order), np.int64(at or 0), at is None,
                           self._cpu(cpu), out))
        if rc in (E_NOMEM_DESC, E_NOMEM_SPLIT):
            return None
        if rc < 0:
            raise _rc_error(rc, f"split({s})")
        return [int(x) if x >= 0 else None for x in out[:rc]]

    def migrate(self, s: int, cpu: int = 0) -> int | None:
        """migrate_folio(): the new folio's handle, or None when memory ran out (nothing changed)."""
        rc = int(self._run(folio_migrate, self._slot(s), self._cpu(cpu)))
        if rc in (E_NOMEM_DESC, E_NOMEM_PAGES):
            return None
        if rc < 0:
            raise _rc_error(rc, f"migrate({s})")
        return rc

    def adopt(self, pfns: np.ndarray, orders: np.ndarray, types: np.ndarray, lrus: np.ndarray | None = None,
              cpu: int = 0) -> np.ndarray:
        """Make allocations the page allocator already holds typed allocations (memdesc_adopt_held):
        per entry the slot, or a negative error (E_NOMEM_DESC when its descriptor could not be had,
        E_INVAL when the pfn is typed already)."""
        pfns = np.ascontiguousarray(pfns, np.int64)
        n = pfns.shape[0]
        orders = np.ascontiguousarray(orders, np.int64)
        types = np.ascontiguousarray(types, np.int64)
        lrus = np.full(n, -1, np.int64) if lrus is None else np.ascontiguousarray(lrus, np.int64)
        if not (orders.shape[0] == types.shape[0] == lrus.shape[0] == n):
            raise ConfigError("adopt: pfns, orders, types and lrus must have one length")
        out = np.full(n, E_INVAL, np.int64)
        i = 0
        while i < n:
            self._ensure()
            j = int(adopt_kernel(self.state, self.slab.state, self.pa, pfns, orders, types, lrus, np.int64(i),
                                 self._cpu(cpu), out))
            if j == i:
                self.state = grow_memdesc_state(self.state, 2 * MAX_PIECES + n - i)
                self.slab.state = slab_state_headroom(self.slab.state, 4 * HEADROOM_SLABS)
            i = j
        return out

    # -- batches
    def run(self, op: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
            handles: np.ndarray, cpu: int = 0) -> np.ndarray:
        """Run a stream of operations in one kernel (folio_stream_kernel): columns ``op`` (codes of
        STREAM_OPS), ``a`` (handle), ``b``/``c``/``d`` (see below); returns each result.

        alloc: b = memdesc type (| subtype << 4), c = order, d = gfp; map/unmap: b = page,
        c = nr; pin/unpin: b = refs; lru_add: b = list, c = tail; attach: b = mapping,
        c = index; split: b = new order, c = page (-1: uniform), d = the handle of the second
        piece (piece k >= 1 goes to handle d + k - 1); deferred: b = partially mapped."""
        cols = [np.ascontiguousarray(x, np.int64) for x in (op, a, b, c, d)]
        n = cols[0].shape[0]
        if any(x.shape[0] != n for x in cols):
            raise ConfigError("stream columns must have the same length")
        if handles.dtype != np.int64:
            raise ConfigError("handles must be an int64 array")
        res = np.zeros(n, np.int64)
        i = 0
        while i < n:
            self._ensure()
            i = int(folio_stream_kernel(self.state, self.slab.state, self.pa, *cols, handles, res, i, n,
                                        self._cpu(cpu)))
            if i < n:
                self.state = grow_memdesc_state(self.state, 2 * MAX_PIECES)
                self.slab.state = slab_state_headroom(self.slab.state, 4 * HEADROOM_SLABS)
        return res

    # -- reports
    def check(self) -> str:
        """The typed allocations, their descriptors and lists, the slab and the design: "ok" or
        the first violation."""
        msg = self.machine.check()
        if msg != "ok":
            return msg
        msg = self.slab.check()
        if msg != "ok":
            return msg
        code, a, b = memdesc_check_nb(self.state, self.slab.state, self.pa)
        if code != MCHK_OK:
            return MCHECK_MESSAGES[int(code)].format(a=int(a), b=int(b))
        return "ok"

    def type_stats(self) -> dict[str, dict[str, int]]:
        out = {}
        for t, name in TYPE_NAMES.items():
            row = self.state.tstat[t]
            if row.any():
                out[name] = {k: int(row[i]) for i, k in enumerate(TS_NAMES)}
        return out

    def op_stats(self) -> dict[str, dict[str, int]]:
        return {OP_NAMES[o]: {k: int(self.state.ostat[o, i]) for i, k in enumerate(OS_NAMES)}
                for o in range(NR_OPS)}

    def descriptor_bytes(self) -> dict[str, int]:
        """Bytes of live descriptors per type (objects x slab object size); 0 where overlaid."""
        return {TYPE_NAMES[t]: int(self.state.tstat[t, TS_DESC_BYTES]) for t in TYPE_NAMES
                if self.state.tstat[t, TS_DESC_BYTES]}

    def descriptor_slab_bytes(self) -> dict[str, int]:
        """Slab pages of every descriptor cache (the pages, free objects and tails included)."""
        out: dict[str, int] = {}
        seen = set()
        for kc in list(self.caches.values()) + ([self.slab.slab_desc] if self.slab.slab_desc else []):
            if kc.id in seen:
                continue
            seen.add(kc.id)
            out[kc.name] = kc.bytes_accounted()["slab_bytes"]
        return out

    def free_path_allocations(self) -> int:
        """Allocations made on free paths: slab objects and slab pages inside free-path scopes,
        plus the design's own (radix tree nodes, vmem struct buddies)."""
        return int(self.slab.state.meta[M_FP_ALLOCS]) + int(self.pa.stats[core.ST_FREE_PATH_ALLOCS])

    def page_accounting(self) -> dict[str, int]:
        """Where every managed page is: free, on a pcp list, in a typed allocation, in a slab page,
        in the design's own metadata pages (radix tree nodes, vmem descriptor pages), or
        elsewhere (allocated outside this layer); ``lost`` must be 0."""
        zs = self.machine.design.zs
        managed = int(zs.z_managed.sum())
        free = int(zs.z_free.sum())
        pcp = int(zs.pcp[:, :, core.PCP_COUNT].sum())
        typed = int(self.state.tstat[:, TS_LIVE_PAGES].sum())
        slab = int(self.slab.stats().get("slab_pages", 0))
        ds = self.machine.design.design_stats()
        design = int(ds.get("node_pages", 0)) + int(ds.get("descriptor_pages", 0))
        own = zs.owner
        heads = (own != core.OWNER_NONE) & (own != core.OWNER_PCP) & (own != core.OWNER_RESERVED)
        allocated = int((np.int64(1) << ((own[heads].astype(np.int64) >> 1) & 0xF)).sum())
        other = allocated - typed - slab - design
        return {"managed": managed, "free": free, "pcp": pcp, "typed": typed, "slab": slab, "design": design,
                "other": other, "lost": managed - free - pcp - allocated}

    def summary(self) -> dict:
        """JSON-ready figures: layout, per type, per operation, bytes, free-path allocations."""
        lay = self.layout
        return {
            "design": lay.design, "struct_page_bytes": lay.struct_page_bytes,
            "descriptors_separate": lay.separate, "page_mapcount": lay.page_mapcount,
            "descriptor_sizes": {TYPE_NAMES[t]: list(v) for t, v in lay.sizes.items()},
            "types": self.type_stats(), "operations": self.op_stats(),
            "descriptor_bytes": self.descriptor_bytes(), "descriptor_slab_bytes": self.descriptor_slab_bytes(),
            "two_part_allocations": int(self.state.tstat[:, TS_TWO_PART].sum()),
            "descriptor_failures": int(self.state.tstat[:, TS_DESC_FAILED].sum()),
            "free_path_allocations": self.free_path_allocations(),
            "live": int(self.state.meta[MM_LIVE]),
            "bookkeeping_bytes": int(sum(getattr(self.state, f).nbytes for f in MemdescState._fields
                                         if f not in RMAP_FIELDS)),
        }


def run_random(folios: Folios, n: int, seed: int = 1, types=(MD_ANON, MD_FILE), orders=(0, 0, 0, 2, 4, 9),
               weights=(0.3, 0.25, 0.1, 0.1, 0.1, 0.15), cpu: int = 0, release: bool = True) -> dict[str, int]:
    """n random operations (alloc / free / split / migrate / pin-unpin / map-unmap with the given
    weights) over a pool of typed allocations, in numba; with ``release`` everything is given back
    at the end.  Returns the driver's counters (R_NAMES)."""
    w = np.cumsum(np.asarray(weights, np.float64))
    if w[-1] <= 0:
        raise ConfigError("weights must not all be zero")
    thresh = np.minimum((w / w[-1] * (1 << 53)).astype(np.int64), 1 << 53)
    rng = np.array([np.uint64((int(seed) * 0x9E3779B97F4A7C15) % (1 << 64) or 1)], np.uint64)
    cap = 1 << 16
    live = np.empty(cap, np.int64)
    nlive = np.zeros(1, np.int64)
    counts = np.zeros(NR_R, np.int64)
    ty = np.asarray(types, np.int64)
    od = np.asarray(orders, np.int64)
    done = 0
    while done < n:
        folios._ensure()
        if nlive[0] + MAX_PIECES + 1 >= live.shape[0]:
            bigger = np.empty(2 * live.shape[0], np.int64)
            bigger[:live.shape[0]] = live
            live = bigger
        k = int(random_ops_kernel(folios.state, folios.slab.state, folios.pa, rng, live, nlive, ty, od, thresh,
                                  np.int64(n - done), np.int64(cpu), counts))
        done += k
        if done < n:
            folios.state = grow_memdesc_state(folios.state, 2 * MAX_PIECES)
            folios.slab.state = slab_state_headroom(folios.slab.state, 4 * HEADROOM_SLABS)
    if release:
        folios._ensure()
        release_all_kernel(folios.state, folios.slab.state, folios.pa, live, nlive, np.int64(cpu), counts)
    out = {name: int(counts[i]) for i, name in enumerate(R_NAMES)}
    out["live_at_end"] = int(nlive[0])
    return out


__all__ = ["DESCRIPTOR_BYTES", "DescriptorLayout", "FOLIO_FLAGS", "FolioBusy", "FolioError", "Folios",
           "GUP_PIN_COUNTING_BIAS", "LRU_NAMES", "MemdescState", "STREAM_OPS", "TYPE_NAMES", "run_random",
           "split_pieces", "PAGE_SIZE"]
