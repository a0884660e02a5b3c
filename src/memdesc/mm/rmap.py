"""The reverse map of anonymous folios (Linux 6.18 mm/rmap.c, mm/migrate.c): from a folio to
the page-table entries that map it, and the walks that rewrite them.

Theory
------
Linux finds the mappings of an anon folio through ``folio->mapping``, which holds its
``anon_vma`` (| ``FOLIO_MAPPING_ANON``), and ``folio->index``, its linear page index
(``__folio_set_anon()`` sets both when a fault maps a new folio: the faulting VMA's
anon_vma, or for a folio not exclusive to it the root anon_vma).  ``rmap_walk_anon()``
walks the anon_vma's interval tree -- the VMAs of the mm that faulted it and of the
children forked from it (``anon_vma_fork`` links every child VMA into its parent's
anon_vmas) -- and for each VMA ``vma_address()`` gives the folio's address there;
``page_vma_mapped_walk()`` then checks the PMD or the PTEs of ``[address, address +
nr_pages)`` for entries naming the folio's pages.  Migration unmaps the source through that
walk (``try_to_migrate``: migration entries) and ``remove_migration_ptes(src, dst)`` walks
the *destination* (which inherited mapping and index) and replaces every migration entry by
a PTE of the corresponding destination page (``remove_migration_pte``) or a PMD
(``remove_migration_pmd``), keeping the write bit (``is_writable_migration_entry``).
Splitting a PMD-mapped folio unmaps it first with ``TTU_SPLIT_HUGE_PMD``: each PMD mapping
becomes a PTE table (``__split_huge_pmd_locked``: the deposited table is withdrawn and
filled, ``thp_split_pmd`` counted) before the folio is split.

The model (see :mod:`memdesc.mm.memory` for the page tables ``pte[mm, vpn]`` = pfn + 1 |
``PTE_WRITE`` and ``pmd[mm, vpn >> 9]``):

* **anon_vma = the fork family's root.**  Each address space created by ``mm_alloc`` gets a
  new anon_vma id (never reused); ``fork`` gives the child its parent's id.  A folio's
  ``anon_vma`` column (the folio layer keeps it beside ``mapping``, which stays the page
  cache's, so every ``mapping != 0`` test keeps meaning "in the page cache") is the id of
  the mm that mapped it new, its ``index`` the virtual page of its first page (VMAs are
  anonymous with ``vm_pgoff == vm_start``, no mremap: the linear page index *is* the vpn, in
  every mm of the family).  The walk visits every live mm with that id: the mms Linux's
  interval tree lists, plus, for a folio a child faulted, its parent and siblings (Linux
  walks the child's own anon_vma there).  Visiting an mm that does not map the folio
  changes nothing -- the entries are checked, as ``page_vma_mapped_walk`` checks them.
* **No migration entries.**  The folio layer moves the mappings as counters (``page_mc``,
  mapcounts, references) in one step, so the walk looks for entries naming the *source*
  pfns where Linux looks for migration entries naming them; nothing can fault in between.
* **Where the page tables are.**  The folio layer cannot see the address spaces (mm/folio
  is below mm/memory), so :class:`memdesc.mm.memory.AddressSpaces` registers references to
  its page-table arrays in the folio state (``rm_pte``, ``rm_pmd``, ``rm_ptt``, ``rm_dep``,
  ``rm_av``: the per-mm anon_vma ids, 0 for a free mm slot); without address spaces they are
  empty and every walk is a no-op.  The folio state is regrown by copying its per-slot
  columns only, so the references survive ``grow_memdesc_state``; the folio layer is not
  part of ``Machine.save`` checkpoints.

Kernels: :func:`remove_migration_ptes` (called by the folio layer's migration for an anon
folio with an anon_vma) and :func:`split_huge_pmd_folio` (called by its split before a
PMD-mapped anon folio is split); :func:`split_pmd_entry` is ``__split_huge_pmd_locked``'s
page-table part, shared with the fault and zap paths of :mod:`memdesc.mm.memory`.  Counters
(``rm_stat``): walks, PTEs and PMDs rewritten, PMDs split by a walk.

Not modelled: file rmap (``rmap_walk_file``: there are no file VMAs), KSM, the
``try_to_unmap`` walk of reclaim (swap entries are not in the page tables),
``RMP_USE_SHARED_ZEROPAGE`` (unused pages of a split folio mapped to the zero page), young /
dirty / soft-dirty bits, hugetlb, device-private entries.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm.mmzone import HPAGE_PMD_ORDER

#: page-table entry encoding (memdesc.mm.memory): pfn + 1 in the low bits, then the flags
PTE_WRITE = np.int64(1) << 61
PTE_ZERO = np.int64(1) << 60
PTE_PFN_MASK = PTE_ZERO - 1
PMD_SHIFT = HPAGE_PMD_ORDER
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER

# counters (rm_stat)
(RMS_WALKS, RMS_PTES, RMS_PMDS, RMS_SPLIT_PMDS) = range(4)
NR_RMS = 4
RMS_NAMES = ("walks", "ptes_remapped", "pmds_remapped", "pmds_split")


def empty_page_tables() -> dict[str, np.ndarray]:
    """The folio state's rmap fields when no address spaces are registered."""
    z2 = np.zeros((0, 0), np.int64)
    return {"rm_pte": z2, "rm_pmd": z2, "rm_ptt": z2, "rm_dep": z2, "rm_av": np.zeros(0, np.int64),
            "rm_stat": np.zeros(NR_RMS, np.int64)}


@njit(inline="always")
def pte_pfn(v):
    """The pfn a present entry names (pte_pfn / pmd_pfn)."""
    return (v & PTE_PFN_MASK) - 1


@njit
def split_pmd_entry(pte, pmd, ptt, dep, mm, p):
    """__split_huge_pmd_locked()'s page tables: PMD entry p of mm becomes a PTE table (the
    deposited table withdrawn, every page's PTE written with the PMD's write bit, the huge
    zero page as zero-page PTEs).  Returns the first pfn mapped, or -1 for the huge zero page."""
    v = pmd[mm, p]
    base = p << PMD_SHIFT
    ptt[mm, p] = dep[mm, p]
    dep[mm, p] = -1
    pmd[mm, p] = 0
    if v & PTE_ZERO:
        for i in range(HPAGE_PMD_NR):
            pte[mm, base + i] = PTE_ZERO
        return np.int64(-1)
    w = v & PTE_WRITE
    pfn = pte_pfn(v)
    for i in range(HPAGE_PMD_NR):
        pte[mm, base + i] = (pfn + i + 1) | w
    return pfn


@njit
def remove_migration_ptes(ms, anon_vma, index, src, dst, nr):
    """remove_migration_ptes(src, dst) of an anon folio of nr pages that moved from pfn src to
    pfn dst: rmap_walk_anon() over the mms of ``anon_vma`` at linear index ``index``; every PMD
    (remove_migration_pmd) and PTE (remove_migration_pte) of [index, index + nr) naming a
    source page now names the destination page at the same offset, its flags kept.
    Returns the number of entries rewritten."""
    if anon_vma == 0:
        return np.int64(0)
    ms.rm_stat[RMS_WALKS] += 1
    n = np.int64(0)
    vpages = ms.rm_pte.shape[1]
    for mm in range(ms.rm_av.shape[0]):
        if ms.rm_av[mm] != anon_vma:
            continue
        if nr == HPAGE_PMD_NR and (index & (HPAGE_PMD_NR - 1)) == 0 and 0 <= index < vpages:
            p = index >> PMD_SHIFT
            v = ms.rm_pmd[mm, p]
            if v != 0 and (v & PTE_ZERO) == 0 and pte_pfn(v) == src:
                ms.rm_pmd[mm, p] = (v & ~PTE_PFN_MASK) | (dst + 1)
                ms.rm_stat[RMS_PMDS] += 1
                n += 1
                continue
        for vpn in range(max(index, np.int64(0)), min(index + nr, vpages)):
            v = ms.rm_pte[mm, vpn]
            if v == 0 or (v & PTE_ZERO) != 0:
                continue
            pfn = pte_pfn(v)
            if src <= pfn < src + nr:
                ms.rm_pte[mm, vpn] = (v & ~PTE_PFN_MASK) | (dst + (pfn - src) + 1)
                ms.rm_stat[RMS_PTES] += 1
                n += 1
    return n


@njit
def split_huge_pmd_folio(ms, anon_vma, index, pfn):
    """unmap_folio() with TTU_SPLIT_HUGE_PMD of a PMD-sized anon folio at pfn about to be
    split: every PMD mapping of it (rmap_walk_anon over ``anon_vma`` at ``index``) becomes a
    PTE table of the same pages.  The folio layer converts the mapcounts itself
    (folio_split_pmd).  Returns the number of PMDs split."""
    if anon_vma == 0 or (index & (HPAGE_PMD_NR - 1)) != 0 or not 0 <= index < ms.rm_pte.shape[1]:
        return np.int64(0)
    ms.rm_stat[RMS_WALKS] += 1
    p = index >> PMD_SHIFT
    n = np.int64(0)
    for mm in range(ms.rm_av.shape[0]):
        if ms.rm_av[mm] != anon_vma:
            continue
        v = ms.rm_pmd[mm, p]
        if v != 0 and (v & PTE_ZERO) == 0 and pte_pfn(v) == pfn:
            split_pmd_entry(ms.rm_pte, ms.rm_pmd, ms.rm_ptt, ms.rm_dep, mm, p)
            n += 1
    ms.rm_stat[RMS_SPLIT_PMDS] += n
    return n


__all__ = ["PTE_WRITE", "PTE_ZERO", "PTE_PFN_MASK", "PMD_SHIFT", "HPAGE_PMD_NR", "RMS_NAMES", "empty_page_tables",
           "pte_pfn", "split_pmd_entry", "remove_migration_ptes", "split_huge_pmd_folio"]
