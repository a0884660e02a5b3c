"""Typed memory on each design: the ``pa_*memdesc`` and ``pa_split_alloc`` primitives.

Each design module registers its entry of this module (``LINUX``, ``RADIX``, ``VMEM``) with
its other primitives (:func:`memdesc.mm.page_alloc.base.register_design` requires
``dispatch.TYPED_PRIMITIVES`` of every design).

Theory
------
The descriptor layer (:mod:`memdesc.mm.slab` for slab pages, :mod:`memdesc.mm.folio` for
folios, page tables and every other typed allocation) keeps the *contents* of descriptors
in its own arrays and their *bytes* in slab caches.  What differs per design is where a
page says what it is -- the design's per-page words -- and that is what these primitives
write (declared in :mod:`memdesc.mm.page_alloc.dispatch`, ``TYPED_PRIMITIVES``):

========  ====================================================================================
design    what ``pa_set_memdesc(pfn, order, type, desc)`` writes
========  ====================================================================================
linux     the descriptor *is* struct page (overlay): ``page_type`` of the head page (word 6,
          low 32 bits) becomes PGTY_slab / PGTY_table / PGTY_zsmalloc for those types, as
          ``__SetPageSlab``/``__folio_set_pagetable``/``__SetPageZsmalloc`` do; folios keep
          ``_mapcount`` -1 (their fields live in the head page and the three after it)
radix     word 1 of the head page -- Kent's "pointer to allocatee state for allocated pages"
          -- becomes the descriptor's address; tails keep the head pfn (two hops: tail ->
          head -> descriptor)
vmem      nothing yet: every page keeps ``MD_BUDDY_ALLOC | struct buddy`` (the allocator's own
          descriptor, which its free path reads).  The memdesc of every page pointing to the
          typed descriptor, with the struct buddy reached through the descriptor, comes with
          the design-contract refactoring of vmem (see docs/memdesc.md, "Descriptors from the
          slab")
========  ====================================================================================

``pa_clear_memdesc`` undoes it before a free or a split (it only writes words, never
allocates).  ``pa_split_alloc`` is ``split_page()``: for buddy designs the allocation's
struct pages are rewritten as buddy pieces (``mark_freed`` + ``mark_allocated``) and
page_owner entries are written per piece (``core.buddy_split_alloc``, a buddy default);
vmem splits the allocation's segment with its
exact-placement primitive ``pa_split``.  ``pa_split_prepare(pieces)`` comes first: vmem
reserves one ``struct buddy`` per new piece as any allocation path does (watermark, fault
injection) and fails, changing nothing, when it cannot -- a split needs memory on vmem;
buddy designs need nothing.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm import memmap as mmap
from memdesc.mm.memdesc import SUB_KMALLOC_LARGE as MD_SUB_KMALLOC_LARGE
from memdesc.mm.memmap import (
    MD_PAGETABLE,
    MD_SLAB,
    MD_ZSMALLOC,
    PAGE_TYPE_NONE,
    R2_ALLOC,
    R2_TAIL,
    R2_TYPE_MASK,
    W8_TYPE_REF,
    PGTY_large_kmalloc,
    PGTY_slab,
    PGTY_table,
    PGTY_zsmalloc,
)
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc import vmem_arena as va

U32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def _linux_pgty(mdtype):
    sub = (mdtype >> mmap.MD_SUBTYPE_SHIFT) & mmap.MD_SUBTYPE_MASK
    mdtype = mdtype & mmap.MD_TYPE_MASK
    if mdtype == MD_SLAB:
        return PGTY_slab
    if mdtype == MD_PAGETABLE:
        return PGTY_table
    if mdtype == MD_ZSMALLOC:
        return PGTY_zsmalloc
    if mdtype == mmap.MD_MISC and sub == MD_SUB_KMALLOC_LARGE:
        return PGTY_large_kmalloc
    return -1


# ------------------------------------------------------------------ linux: overlay


@njit
def linux_set_memdesc(st, pfn, order, mdtype, desc):
    t = _linux_pgty(mdtype)
    if t >= 0:
        w = st.memmap[pfn, W8_TYPE_REF]
        st.memmap[pfn, W8_TYPE_REF] = (w & ~U32) | np.uint64(t << 24)
    return np.int64(0)


@njit
def linux_clear_memdesc(st, pfn, order, cookie):
    w = st.memmap[pfn, W8_TYPE_REF]
    if (w & U32) != np.uint64(PAGE_TYPE_NONE):
        st.memmap[pfn, W8_TYPE_REF] = (w & ~U32) | np.uint64(PAGE_TYPE_NONE)


@njit
def linux_page_memdesc(st, pfn):
    w = st.memmap[pfn, W8_TYPE_REF] & U32
    if w == np.uint64(PAGE_TYPE_NONE):
        return np.int64(-1), np.int64(-1)
    t = np.int64(w >> np.uint64(24))
    if t == PGTY_slab:
        return np.int64(MD_SLAB), np.int64(-1)
    if t == PGTY_table:
        return np.int64(MD_PAGETABLE), np.int64(-1)
    if t == PGTY_zsmalloc:
        return np.int64(MD_ZSMALLOC), np.int64(-1)
    return np.int64(-1), np.int64(-1)


# ------------------------------------------------------------------ radix: word 1 = allocatee pointer


@njit
def radix_set_memdesc(st, pfn, order, mdtype, desc):
    if desc >= 0:
        st.memmap[pfn, 1] = np.uint64(desc)
    return np.int64(0)


@njit
def radix_clear_memdesc(st, pfn, order, cookie):
    st.memmap[pfn, 1] = np.uint64(0)


@njit
def radix_page_memdesc(st, pfn):
    mm = st.memmap
    t = mm[pfn, 0] & np.uint64(R2_TYPE_MASK)
    head = pfn
    if t == np.uint64(R2_TAIL):
        head = np.int64(mm[pfn, 1])
    elif t != np.uint64(R2_ALLOC):
        return np.int64(-1), np.int64(-1)
    w = np.int64(mm[head, 1])
    return np.int64(-1), (w if w > 0 else np.int64(-1))


# ------------------------------------------------------------------ vmem (words unchanged for now)


@njit
def vmem_set_memdesc(st, pfn, order, mdtype, desc):
    return np.int64(0)


@njit
def vmem_clear_memdesc(st, pfn, order, cookie):
    pass


@njit
def vmem_page_memdesc(st, pfn):
    return np.int64(st.memdesc[pfn]) & mmap.MD_TYPE_MASK, np.int64(-1)


@njit
def vmem_split_prepare(st, pieces):
    """Every new piece is a segment of its own: one struct buddy each, reserved as an
    allocation path reserves them (watermark, fault injection); nothing changes on failure."""
    if pieces <= 0:
        return True
    return va.desc_reserve(st, pieces)


@njit
def vmem_split_alloc(st, head, horder, pfn, order, gfp):
    """The segment splits with vmem's exact-placement ``pa_split`` (the descriptors were
    reserved by vmem_split_prepare); page_owner per piece (core.split_allocation)."""
    return core.split_allocation(st, head, horder, pfn, order)


#: what each design registers (base.register_design checks every design has TYPED_PRIMITIVES)
LINUX = {"pa_set_memdesc": linux_set_memdesc, "pa_clear_memdesc": linux_clear_memdesc,
         "pa_page_memdesc": linux_page_memdesc}
RADIX = {"pa_set_memdesc": radix_set_memdesc, "pa_clear_memdesc": radix_clear_memdesc,
         "pa_page_memdesc": radix_page_memdesc}
VMEM = {"pa_set_memdesc": vmem_set_memdesc, "pa_clear_memdesc": vmem_clear_memdesc,
        "pa_page_memdesc": vmem_page_memdesc, "pa_split_alloc": vmem_split_alloc,
        "pa_split_prepare": vmem_split_prepare}
