"""Anonymous memory: address spaces, VMAs, page tables, anon faults, zap/munmap/MADV_DONTNEED,
fork with copy-on-write (Linux 6.18 mm/memory.c, mm/mmap.c, mm/madvise.c, kernel/fork.c).

Theory
------
An address space (``mm_struct``) is a sorted table of VMAs (``[start, end)`` in pages, the
vm_flags the THP policy reads: VM_HUGEPAGE / VM_NOHUGEPAGE) and its page tables, kept as
arrays indexed by virtual page number:

* ``pte[mm, vpn]``: 0 for ``pte_none``, else the pfn + 1 with ``PTE_WRITE``; the shared
  zero page is ``PTE_ZERO`` (a read fault on anon memory maps it and allocates nothing);
* ``pmd[mm, vpn >> 9]``: a PMD mapping of a PMD-sized folio (pfn + 1 | ``PTE_WRITE``) or the
  huge zero page; ``ptt[mm, vpn >> 9]`` the slot of the PTE table page and ``dep[...]`` the
  page table *deposited* with a PMD mapping (``pgtable_trans_huge_deposit``: it becomes the
  PTE table when the PMD is split); ``pmdt[mm, vpn >> 18]`` the PMD table pages.  Page table
  pages are typed allocations (``ptdesc``) of :mod:`memdesc.mm.folio`, so on designs with
  separately allocated descriptors every page table costs a descriptor too (the PUD and
  PGD levels are one page each per mm and are not modelled).

Folios are :mod:`memdesc.mm.folio`'s: a fault allocates an anon folio (descriptor + pages
on every design), maps it with one PTE per page (``folio_add_new_anon_rmap``: one
reference per PTE, the allocation's reference becomes one of them) or one PMD, and puts
it on the inactive anon LRU.  ``page_folio()`` of a PTE is the folio layer's pfn map.

**Reverse map** (:mod:`memdesc.mm.rmap`): every mm has an ``anon_vma`` id (``mm_alloc``:
a new one; ``fork``: the parent's -- the fork family's root anon_vma), and a new anon folio
gets the faulting mm's id and the vpn of its first page as its rmap anchor
(``__folio_set_anon``: folio->mapping's anon_vma and folio->index).  The address spaces
register their page tables with the folio layer (``folio.set_page_tables``), so migration
(``remove_migration_ptes``) and the split of a PMD-mapped folio (``split_huge_pmd`` in
``unmap_folio``) rewrite them by walking the family's mms at that index.  ``check()``
verifies that every PTE/PMD is where the anchor of its folio leads.

**Faults** (``handle_mm_fault``; 6.18 semantics, :mod:`memdesc.mm.huge_memory` for the
policy): an empty PMD in a VMA that allows the PMD order gets a PMD THP (a read fault
the huge zero page if ``use_zero_page``); otherwise the PTE table is allocated and
``do_anonymous_page`` runs ``alloc_anon_folio``: allowable orders, those fitting the VMA,
highest order whose PTE range is all none, then allocation highest first with fallback,
order 0 last (``VM_FAULT_OOM`` if that fails).  A write to a write-protected PTE
(``do_wp_page``): the zero page is replaced by a new zeroed page; an anon folio mapped
only by this mm and holding no other references is reused
(``wp_can_reuse_anon_folio``: ref == mapcount, every page mapped once), else the page
is copied to a new order-0 folio (``wp_page_copy``: large folios are never copied
whole).  A write to a write-protected PMD reuses an exclusive folio, else splits the PMD
and copies the page (``do_huge_pmd_wp_page`` -> ``VM_FAULT_FALLBACK``).

**Zap** (``zap_page_range_single`` for MADV_DONTNEED, ``unmap_region`` for munmap and exit):
a PMD mapping inside the range is zapped whole (the deposited table freed); one that the
range cuts is split first (``__split_huge_pmd``: ``thp_split_pmd``).  PTEs are removed in
batches of consecutive pages of one folio (``folio_pte_batch``), so a folio unmapped whole
is never seen partially mapped; one left partially mapped goes on the deferred split queue
(counted in :mod:`memdesc.mm.huge_memory`).  munmap also frees the page tables no VMA
uses any more (``free_pgtables``); MADV_DONTNEED keeps them (CONFIG_PT_RECLAIM's freeing
of emptied PTE tables is not modelled).

**Fork** (``dup_mmap`` / ``copy_page_range``): the child gets the VMAs, a PTE table for
every PTE table of the parent, a deposited table per PMD mapping, and every present entry
write-protected in both (``folio_try_dup_anon_rmap_*``: one more mapping and reference per
PTE / PMD); a folio that may be DMA-pinned is copied into a new order-0 page per page
instead (``copy_present_page``; a pinned PMD folio is split first).

Not modelled: file and shmem VMAs (the page cache is :mod:`memdesc.mm.filemap`), swap
(reclaim's ``try_to_unmap`` does not reach these page tables),
mremap/mprotect, uffd, KSM, NUMA policies, khugepaged; VMAs merge only on mmap of an
adjacent range with equal flags.  Virtual addresses are page numbers in a per-mm window of
``vpages`` pages (mmap places top-down, 2 MiB-aligned when the length is a multiple of
2 MiB: ``thp_get_unmapped_area``).

Kernels take ``(st, ms, ss, pa, ...)``: this state, the folio state, the slab state and the
design state; the Python facade :class:`AddressSpaces` grows the folio layer between calls
(a kernel stops with its position when :func:`memdesc.mm.folio.headroom_ok` fails).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm import huge_memory as H
from memdesc.mm import rmap as R
from memdesc.mm.machine import Machine
from memdesc.mm.memmap import MD_ANON, MD_PAGETABLE

PTE_WRITE = R.PTE_WRITE
PTE_ZERO = R.PTE_ZERO
PTE_PFN_MASK = R.PTE_PFN_MASK
PMD_SHIFT = R.PMD_SHIFT
PUD_SHIFT = 18
#: GFP_PGTABLE_USER
GFP_PGTABLE_USER = G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO
GFP_ANON_ZERO = G.GFP_HIGHUSER_MOVABLE | G.__GFP_ZERO
GFP_ANON_COPY = G.GFP_HIGHUSER_MOVABLE

# fault results (vm_fault_t, simplified)
FAULT_OK = 0
FAULT_SIGSEGV = 1
FAULT_OOM = 2
FAULT_NOCAP = -22  # the folio layer needs room: grow and retry (nothing changed)

# cfg
(CF_VPAGES, CF_NMM, CF_NVMA, CF_TOP, CF_DEFRAG, CF_ZERO_PAGE) = range(6)
NR_CF = 8
# per-mm counters
(MMC_LIVE, MMC_RSS, MMC_LIMIT, MMC_CHARGED, MMC_PGTABLES) = range(5)
NR_MMC = 8
MMC_NAMES = ("live", "rss", "memcg_limit", "charged", "pgtables")


class MmStateType(StructType):
    pass


class MmState(StructProxy):
    """Address spaces: VMAs, page tables, counters (see the module docstring)."""

    _fields = ("cfg", "per_order", "mmc", "nvma", "vstart", "vend", "vflags", "pte", "pmd", "ptt", "dep",
               "pmdt", "anon_vma", "thp", "ev", "alloc_order")


define_struct(MmState, MmStateType)


def new_mm_state(vpages: int = 1 << 19, nmm: int = 4, nvma: int = 64,
                 settings: H.ThpSettings | None = None) -> MmState:
    settings = settings or H.ThpSettings()
    if vpages % (1 << PUD_SHIFT) or vpages <= 0:
        raise ConfigError(f"vpages {vpages}: a positive multiple of {1 << PUD_SHIFT} pages (1 GiB)")
    cfg = np.zeros(NR_CF, np.int64)
    cfg[CF_VPAGES] = vpages
    cfg[CF_NMM] = nmm
    cfg[CF_NVMA] = nvma
    cfg[CF_TOP] = settings.top()
    cfg[CF_DEFRAG] = settings.defrag_code()
    cfg[CF_ZERO_PAGE] = int(settings.use_zero_page)
    mmc = np.zeros((nmm, NR_MMC), np.int64)
    mmc[:, MMC_LIMIT] = -1
    return MmState(cfg=cfg, per_order=settings.per_order(), mmc=mmc, nvma=np.zeros(nmm, np.int64),
                   vstart=np.zeros((nmm, nvma), np.int64), vend=np.zeros((nmm, nvma), np.int64),
                   vflags=np.zeros((nmm, nvma), np.int64), pte=np.zeros((nmm, vpages), np.int64),
                   pmd=np.zeros((nmm, vpages >> PMD_SHIFT), np.int64),
                   ptt=np.full((nmm, vpages >> PMD_SHIFT), -1, np.int64),
                   dep=np.full((nmm, vpages >> PMD_SHIFT), -1, np.int64),
                   pmdt=np.full((nmm, vpages >> PUD_SHIFT), -1, np.int64), anon_vma=np.zeros(nmm, np.int64),
                   thp=np.zeros((H.NR_MTHP_STATS, H.NR_THP_ORDERS), np.int64), ev=np.zeros(H.NR_EV, np.int64),
                   alloc_order=np.zeros(H.NR_THP_ORDERS + 2, np.int64))


# ------------------------------------------------------------------ helpers (numba)


@njit(inline="always")
def find_vma(st, mm, vpn):
    """find_vma() proper: the index of the VMA containing vpn, or -1."""
    for i in range(st.nvma[mm]):
        if st.vstart[mm, i] <= vpn < st.vend[mm, i]:
            return i
    return -1


_pte_pfn = R.pte_pfn


@njit
def _pgtable_alloc(st, ms, ss, pa, mm, cpu):
    """pagetable_alloc() of a user page table page: the slot, or a folio-layer error."""
    s = F.memdesc_alloc(ms, ss, pa, GFP_PGTABLE_USER, 0, MD_PAGETABLE, cpu)
    if s >= 0:
        st.ev[H.EV_PGTABLE_ALLOC] += 1
        st.mmc[mm, MMC_PGTABLES] += 1
    return s


@njit
def _pgtable_free(st, ms, ss, pa, mm, s, cpu):
    F.memdesc_free(ms, ss, pa, s, cpu)
    st.ev[H.EV_PGTABLE_FREE] += 1
    st.mmc[mm, MMC_PGTABLES] -= 1


@njit
def _ensure_pmd_table(st, ms, ss, pa, mm, vpn, cpu):
    """pmd_alloc(): the PMD table covering vpn (OK or a folio-layer error)."""
    u = vpn >> PUD_SHIFT
    if st.pmdt[mm, u] >= 0:
        return F.OK
    s = _pgtable_alloc(st, ms, ss, pa, mm, cpu)
    if s < 0:
        return s
    st.pmdt[mm, u] = s
    return F.OK


@njit
def _charge(st, mm, nr):
    """mem_cgroup_charge() against the mm's memcg limit (pages; -1: none)."""
    lim = st.mmc[mm, MMC_LIMIT]
    if lim >= 0 and st.mmc[mm, MMC_CHARGED] + nr > lim:
        return False
    st.mmc[mm, MMC_CHARGED] += nr
    return True


@njit
def _uncharge(st, mm, nr):
    st.mmc[mm, MMC_CHARGED] -= nr


@njit
def _new_anon_folio(st, ms, ss, pa, gfp, order, cpu):
    """vma_alloc_folio() of an anon folio: slot or a folio-layer error."""
    return F.memdesc_alloc(ms, ss, pa, gfp | (F.GFP_COMP if order > 0 else 0), order, MD_ANON, cpu)


@njit
def _new_charged_page(st, ms, ss, pa, mm, gfp, cpu):
    """An order-0 anon folio charged to mm: (FAULT_OK, slot), (FAULT_NOCAP, -1), or
    (FAULT_OOM, -1) with the OOM counted and nothing left allocated."""
    s = _new_anon_folio(st, ms, ss, pa, gfp, 0, cpu)
    if s == F.E_NOCAP:
        return np.int64(FAULT_NOCAP), np.int64(-1)
    if s < 0 or not _charge(st, mm, 1):
        if s >= 0:
            F.folio_put_refs(ms, ss, pa, s, 1, cpu)
        st.ev[H.EV_OOM] += 1
        return np.int64(FAULT_OOM), np.int64(-1)
    return np.int64(FAULT_OK), s


@njit
def _map_new_folio(st, ms, ss, pa, mm, s, vpn0, nr, writable, cpu):
    """folio_add_new_anon_rmap + set_ptes + folio_add_lru_vma for a fresh folio of nr pages at
    vpn0 (its allocation reference becomes one of the PTE references)."""
    F.folio_map_ptes(ms, s, 0, nr)
    F.folio_set_anon(ms, s, st.anon_vma[mm], vpn0)
    F.folio_put_refs(ms, ss, pa, s, 1, cpu)
    pfn = ms.pfn[s]
    w = PTE_WRITE if writable else np.int64(0)
    for i in range(nr):
        st.pte[mm, vpn0 + i] = (pfn + i + 1) | w
    order = np.int64(ms.order[s])
    H.count_mthp_stat(st.thp, order, H.MTHP_NR_ANON, 1)
    st.alloc_order[order] += 1
    st.mmc[mm, MMC_RSS] += nr
    F.lru_add(ms, s, F.LRU_INACTIVE_ANON, False)


@njit
def _unmap_pte_batch(st, ms, ss, pa, mm, s, page, nr, cpu):
    """Remove nr PTE mappings of folio s from page ``page`` on (rmap + references + counters)."""
    order = np.int64(ms.order[s])
    was = (ms.flags[s] & (np.int64(1) << F.PG_partially_mapped)) != 0
    F.folio_unmap_ptes(ms, ss, pa, s, page, nr, cpu)
    st.mmc[mm, MMC_RSS] -= nr
    _uncharge(st, mm, nr)
    H.account_after_unmap(ms, st.thp, st.ev, s, order, was)


@njit
def _unmap_pmd(st, ms, ss, pa, mm, s, cpu):
    order = np.int64(ms.order[s])
    was = (ms.flags[s] & (np.int64(1) << F.PG_partially_mapped)) != 0
    F.folio_unmap_pmd(ms, ss, pa, s, cpu)
    st.mmc[mm, MMC_RSS] -= np.int64(1) << order
    _uncharge(st, mm, np.int64(1) << order)
    H.account_after_unmap(ms, st.thp, st.ev, s, order, was)


@njit
def _split_pmd(st, ms, mm, p):
    """__split_huge_pmd() of PMD entry p: PTEs for every page (the deposited table withdrawn)."""
    pfn = R.split_pmd_entry(st.pte, st.pmd, st.ptt, st.dep, mm, p)
    if pfn < 0:
        return
    F.folio_split_pmd(ms, np.int64(ms.pfn_slot[pfn]) - 1)
    st.ev[H.EV_THP_SPLIT_PMD] += 1


# ------------------------------------------------------------------ faults


@njit
def _do_huge_pmd_anonymous_page(st, ms, ss, pa, mm, vi, vpn, write, cpu):
    """FAULT_OK if a PMD mapping was made, 1 to fall back to PTEs, FAULT_OOM, FAULT_NOCAP."""
    p = vpn >> PMD_SHIFT
    if not write and st.cfg[CF_ZERO_PAGE]:
        d = _pgtable_alloc(st, ms, ss, pa, mm, cpu)
        if d == F.E_NOCAP:
            return FAULT_NOCAP
        if d < 0:
            return 1
        st.dep[mm, p] = d
        st.pmd[mm, p] = PTE_ZERO
        st.ev[H.EV_THP_ZERO_PMD] += 1
        return FAULT_OK
    gfp = H.vma_thp_gfp_mask(st.cfg[CF_DEFRAG], st.vflags[mm, vi], H.PMD_ORDER)
    s = _new_anon_folio(st, ms, ss, pa, gfp, H.PMD_ORDER, cpu)
    if s == F.E_NOCAP:
        return FAULT_NOCAP
    if s < 0:
        st.ev[H.EV_THP_FAULT_FALLBACK] += 1
        H.count_mthp_stat(st.thp, H.PMD_ORDER, H.MTHP_ANON_FAULT_FALLBACK, 1)
        return 1
    if not _charge(st, mm, H.HPAGE_PMD_NR):
        F.folio_put_refs(ms, ss, pa, s, 1, cpu)
        st.ev[H.EV_THP_FAULT_FALLBACK_CHARGE] += 1
        H.count_mthp_stat(st.thp, H.PMD_ORDER, H.MTHP_ANON_FAULT_FALLBACK_CHARGE, 1)
        return 1
    d = _pgtable_alloc(st, ms, ss, pa, mm, cpu)
    if d < 0:
        F.folio_put_refs(ms, ss, pa, s, 1, cpu)
        _uncharge(st, mm, H.HPAGE_PMD_NR)
        return FAULT_NOCAP if d == F.E_NOCAP else FAULT_OOM
    st.dep[mm, p] = d
    F.folio_map_pmd(ms, s)
    F.folio_set_anon(ms, s, st.anon_vma[mm], p << PMD_SHIFT)
    F.folio_put_refs(ms, ss, pa, s, 1, cpu)
    st.pmd[mm, p] = (ms.pfn[s] + 1) | PTE_WRITE
    st.mmc[mm, MMC_RSS] += H.HPAGE_PMD_NR
    H.count_mthp_stat(st.thp, H.PMD_ORDER, H.MTHP_NR_ANON, 1)
    st.alloc_order[H.PMD_ORDER] += 1
    F.lru_add(ms, s, F.LRU_INACTIVE_ANON, False)
    st.ev[H.EV_THP_FAULT_ALLOC] += 1
    H.count_mthp_stat(st.thp, H.PMD_ORDER, H.MTHP_ANON_FAULT_ALLOC, 1)
    H.deferred_split_folio_counted(ms, st.thp, st.ev, s, False)
    return FAULT_OK


@njit
def _do_anonymous_page(st, ms, ss, pa, mm, vi, vpn, write, cpu):
    """do_anonymous_page() with alloc_anon_folio() (the PTE table exists)."""
    if not write and st.cfg[CF_ZERO_PAGE]:
        st.pte[mm, vpn] = PTE_ZERO
        st.ev[H.EV_ZERO_MAP] += 1
        return FAULT_OK
    vf = st.vflags[mm, vi]
    orders = H.thp_vma_allowable_orders(st.per_order, st.cfg[CF_TOP], vf, H.ANON_PTE_ORDERS_MASK)
    orders = H.thp_vma_suitable_orders(st.vstart[mm, vi], st.vend[mm, vi], vpn, orders)
    order = H.highest_order(orders)
    while orders:
        base = vpn & ~((np.int64(1) << order) - 1)
        empty = True
        for i in range(np.int64(1) << order):
            if st.pte[mm, base + i] != 0:
                empty = False
                break
        if empty:
            break
        orders, order = H.next_order(orders, order)
    gfp = H.vma_thp_gfp_mask(st.cfg[CF_DEFRAG], vf, 0)
    while orders:
        s = _new_anon_folio(st, ms, ss, pa, gfp, order, cpu)
        if s == F.E_NOCAP:
            return FAULT_NOCAP
        nr = np.int64(1) << order
        if s >= 0:
            if _charge(st, mm, nr):
                _map_new_folio(st, ms, ss, pa, mm, s, vpn & ~(nr - 1), nr, True, cpu)
                H.count_mthp_stat(st.thp, order, H.MTHP_ANON_FAULT_ALLOC, 1)
                return FAULT_OK
            F.folio_put_refs(ms, ss, pa, s, 1, cpu)
            H.count_mthp_stat(st.thp, order, H.MTHP_ANON_FAULT_FALLBACK_CHARGE, 1)
        else:
            H.count_mthp_stat(st.thp, order, H.MTHP_ANON_FAULT_FALLBACK, 1)
        orders, order = H.next_order(orders, order)
    r, s = _new_charged_page(st, ms, ss, pa, mm, GFP_ANON_ZERO, cpu)
    if r != FAULT_OK:
        return r
    _map_new_folio(st, ms, ss, pa, mm, s, vpn, 1, True, cpu)
    return FAULT_OK


@njit
def _can_reuse(ms, s, pmd_level):
    """wp_can_reuse_anon_folio(): no references beyond the mappings and the folio mapped by
    this mm only -- every page by at most one PTE and no PMD mapping beside them (a PTE-level
    fault), or exactly one PMD mapping and nothing else (a PMD-level fault)."""
    if F.folio_maybe_dma_pinned(ms, s):
        return False
    if np.int64(ms.ref[s]) != F.folio_mapcount(ms, s):
        return False
    if ms.order[s] > 0:
        if pmd_level:
            return ms.emap[s] == 0 and ms.lmap[s] == 0
        if ms.emap[s] >= 0:
            return False
    pfn = ms.pfn[s]
    for i in range(np.int64(1) << ms.order[s]):
        if ms.page_mc[pfn + i] > 1:
            return False
    return True


@njit
def _do_wp_page(st, ms, ss, pa, mm, vpn, cpu):
    """do_wp_page() on a write-protected PTE (present or the zero page)."""
    v = st.pte[mm, vpn]
    if v & PTE_ZERO:
        r, s = _new_charged_page(st, ms, ss, pa, mm, GFP_ANON_ZERO, cpu)
        if r != FAULT_OK:
            return r
        st.pte[mm, vpn] = 0
        _map_new_folio(st, ms, ss, pa, mm, s, vpn, 1, True, cpu)
        st.ev[H.EV_COW] += 1
        return FAULT_OK
    pfn = _pte_pfn(v)
    old = np.int64(ms.pfn_slot[pfn]) - 1
    if _can_reuse(ms, old, False):
        st.pte[mm, vpn] = v | PTE_WRITE
        st.ev[H.EV_COW_REUSE] += 1
        return FAULT_OK
    r, s = _new_charged_page(st, ms, ss, pa, mm, GFP_ANON_COPY, cpu)
    if r != FAULT_OK:
        return r
    # the old mapping goes (its charge with it: the new page's was taken above)
    _unmap_pte_batch(st, ms, ss, pa, mm, old, pfn - ms.pfn[old], 1, cpu)
    st.pte[mm, vpn] = 0
    _map_new_folio(st, ms, ss, pa, mm, s, vpn, 1, True, cpu)
    st.alloc_order[H.NR_THP_ORDERS] += 1  # of which COW copies
    st.ev[H.EV_COW] += 1
    return FAULT_OK


@njit
def handle_mm_fault(st, ms, ss, pa, mm, vpn, write, cpu):
    """A user fault at page vpn of mm: FAULT_OK, FAULT_SIGSEGV, FAULT_OOM or FAULT_NOCAP."""
    vi = find_vma(st, mm, vpn)
    if vi < 0:
        st.ev[H.EV_SIGSEGV] += 1
        return FAULT_SIGSEGV
    st.ev[H.EV_PGFAULT] += 1
    p = vpn >> PMD_SHIFT
    rc = _ensure_pmd_table(st, ms, ss, pa, mm, vpn, cpu)
    if rc < 0:
        if rc == F.E_NOCAP:
            st.ev[H.EV_PGFAULT] -= 1
            return FAULT_NOCAP
        st.ev[H.EV_OOM] += 1
        return FAULT_OOM
    v = st.pmd[mm, p]
    if v != 0:
        if not write or (v & PTE_WRITE):
            return FAULT_OK
        if v & PTE_ZERO:
            _split_pmd(st, ms, mm, p)
        else:
            s = np.int64(ms.pfn_slot[_pte_pfn(v)]) - 1
            if _can_reuse(ms, s, True):
                st.pmd[mm, p] = v | PTE_WRITE
                st.ev[H.EV_COW_REUSE] += 1
                return FAULT_OK
            _split_pmd(st, ms, mm, p)
    if st.ptt[mm, p] < 0:
        base = p << PMD_SHIFT
        allowed = H.thp_vma_allowable_orders(st.per_order, st.cfg[CF_TOP], st.vflags[mm, vi],
                                             np.int64(1) << H.PMD_ORDER)
        allowed = H.thp_vma_suitable_orders(st.vstart[mm, vi], st.vend[mm, vi], vpn, allowed)
        if allowed:
            rc = _do_huge_pmd_anonymous_page(st, ms, ss, pa, mm, vi, vpn, write, cpu)
            if rc != 1:
                if rc == FAULT_NOCAP:
                    st.ev[H.EV_PGFAULT] -= 1
                return rc
        t = _pgtable_alloc(st, ms, ss, pa, mm, cpu)
        if t < 0:
            if t == F.E_NOCAP:
                st.ev[H.EV_PGFAULT] -= 1
                return FAULT_NOCAP
            st.ev[H.EV_OOM] += 1
            return FAULT_OOM
        st.ptt[mm, p] = t
        for i in range(H.HPAGE_PMD_NR):
            st.pte[mm, base + i] = 0
    v = st.pte[mm, vpn]
    if v == 0:
        rc = _do_anonymous_page(st, ms, ss, pa, mm, vi, vpn, write, cpu)
    elif write and not (v & PTE_WRITE):
        rc = _do_wp_page(st, ms, ss, pa, mm, vpn, cpu)
    else:
        rc = FAULT_OK
    if rc == FAULT_NOCAP:
        st.ev[H.EV_PGFAULT] -= 1
    return rc


@njit
def touch_kernel(st, ms, ss, pa, mm, start, end, step, write, cpu, res):
    """Fault pages start, start + step, ... < end (a program touching memory); stops when the
    folio layer needs room and returns the next page to touch (== end when done).
    ``res`` counts results [ok, sigsegv, oom]."""
    vpn = start
    while vpn < end:
        if not F.headroom_ok(ms, ss):
            return vpn
        rc = handle_mm_fault(st, ms, ss, pa, mm, vpn, write, cpu)
        if rc == FAULT_NOCAP:
            return vpn
        res[rc] += 1
        vpn += step
    return vpn


# ------------------------------------------------------------------ zap


@njit
def _zap_ptes(st, ms, ss, pa, mm, a, b, cpu):
    """zap_pte_range() over [a, b) within one PTE table: batches of consecutive pages of one folio."""
    vpn = a
    while vpn < b:
        v = st.pte[mm, vpn]
        if v == 0:
            vpn += 1
            continue
        if v & PTE_ZERO:
            st.pte[mm, vpn] = 0
            vpn += 1
            continue
        pfn = _pte_pfn(v)
        s = np.int64(ms.pfn_slot[pfn]) - 1
        page = pfn - ms.pfn[s]
        n = np.int64(1) << ms.order[s]
        nr = np.int64(1)
        while vpn + nr < b and page + nr < n:
            w = st.pte[mm, vpn + nr]
            if w == 0 or (w & PTE_ZERO) or _pte_pfn(w) != pfn + nr:
                break
            nr += 1
        for i in range(nr):
            st.pte[mm, vpn + i] = 0
        _unmap_pte_batch(st, ms, ss, pa, mm, s, page, nr, cpu)
        vpn += nr


@njit
def zap_kernel(st, ms, ss, pa, mm, start, end, cpu):
    """unmap_page_range() of [start, end): returns the next PMD-aligned page to zap (== end when
    done; stops early when the folio layer needs room)."""
    end = min(end, st.cfg[CF_VPAGES])
    vpn = max(start, np.int64(0))
    while vpn < end:
        if not F.headroom_ok(ms, ss):
            return vpn
        p = vpn >> PMD_SHIFT
        pbase = p << PMD_SHIFT
        pend = pbase + H.HPAGE_PMD_NR
        b = min(end, pend)
        v = st.pmd[mm, p]
        if v != 0:
            if vpn == pbase and b == pend:
                # zap_huge_pmd
                st.pmd[mm, p] = 0
                if not (v & PTE_ZERO):
                    s = np.int64(ms.pfn_slot[_pte_pfn(v)]) - 1
                    _unmap_pmd(st, ms, ss, pa, mm, s, cpu)
                _pgtable_free(st, ms, ss, pa, mm, st.dep[mm, p], cpu)
                st.dep[mm, p] = -1
                vpn = b
                continue
            _split_pmd(st, ms, mm, p)
        if st.ptt[mm, p] >= 0:
            _zap_ptes(st, ms, ss, pa, mm, vpn, b, cpu)
        vpn = b
    return vpn


@njit
def free_pgtables_kernel(st, ms, ss, pa, mm, start, end, cpu):
    """free_pgtables() after munmap of [start, end): PTE tables (and PMD tables) of the range
    that no VMA overlaps any more are freed (their entries are all none)."""
    p0 = start >> PMD_SHIFT
    p1 = (end + H.HPAGE_PMD_NR - 1) >> PMD_SHIFT
    for p in range(p0, p1):
        if st.ptt[mm, p] < 0 and st.dep[mm, p] < 0:
            continue
        lo = p << PMD_SHIFT
        hi = lo + H.HPAGE_PMD_NR
        used = False
        for i in range(st.nvma[mm]):
            if st.vstart[mm, i] < hi and st.vend[mm, i] > lo:
                used = True
                break
        if not used and st.ptt[mm, p] >= 0:
            _pgtable_free(st, ms, ss, pa, mm, st.ptt[mm, p], cpu)
            st.ptt[mm, p] = -1
    u0 = start >> PUD_SHIFT
    u1 = (end + (np.int64(1) << PUD_SHIFT) - 1) >> PUD_SHIFT
    for u in range(u0, u1):
        if st.pmdt[mm, u] < 0:
            continue
        lo = u << PUD_SHIFT
        hi = lo + (np.int64(1) << PUD_SHIFT)
        used = False
        for i in range(st.nvma[mm]):
            if st.vstart[mm, i] < hi and st.vend[mm, i] > lo:
                used = True
                break
        if not used:
            _pgtable_free(st, ms, ss, pa, mm, st.pmdt[mm, u], cpu)
            st.pmdt[mm, u] = -1


# ------------------------------------------------------------------ fork


@njit
def copy_range_kernel(st, ms, ss, pa, src, start, end, dst, cpu):
    """copy_page_range() of [start, end) (one VMA, PMD-aligned steps) from mm src to mm dst.
    Returns the next page to copy (== end when done; stops early when the folio layer needs
    room), or -1 - page on an allocation failure (fork fails with -ENOMEM)."""
    vpn = start
    while vpn < end:
        if not F.headroom_ok(ms, ss):
            return vpn
        p = vpn >> PMD_SHIFT
        pbase = p << PMD_SHIFT
        b = min(end, pbase + H.HPAGE_PMD_NR)
        if _ensure_pmd_table(st, ms, ss, pa, dst, vpn, cpu) < 0:
            return -1 - vpn
        v = st.pmd[src, p]
        if v != 0:
            s = np.int64(-1) if (v & PTE_ZERO) else np.int64(ms.pfn_slot[_pte_pfn(v)]) - 1
            if s >= 0 and F.folio_maybe_dma_pinned(ms, s):
                _split_pmd(st, ms, src, p)
            else:
                d = _pgtable_alloc(st, ms, ss, pa, dst, cpu)
                if d < 0:
                    return -1 - vpn
                st.dep[dst, p] = d
                if s >= 0:
                    F.folio_map_pmd(ms, s)
                    st.mmc[dst, MMC_RSS] += H.HPAGE_PMD_NR
                    st.mmc[dst, MMC_CHARGED] += H.HPAGE_PMD_NR
                st.pmd[src, p] = v & ~PTE_WRITE
                st.pmd[dst, p] = v & ~PTE_WRITE
                vpn = b
                continue
        if st.ptt[src, p] >= 0:
            if st.ptt[dst, p] < 0:
                t = _pgtable_alloc(st, ms, ss, pa, dst, cpu)
                if t < 0:
                    return -1 - vpn
                st.ptt[dst, p] = t
            q = vpn
            while q < b:
                w = st.pte[src, q]
                if w == 0:
                    q += 1
                    continue
                if w & PTE_ZERO:
                    st.pte[dst, q] = PTE_ZERO
                    q += 1
                    continue
                pfn = _pte_pfn(w)
                s = np.int64(ms.pfn_slot[pfn]) - 1
                page = pfn - ms.pfn[s]
                if F.folio_maybe_dma_pinned(ms, s):
                    # copy_present_page(): the child gets its own copy now
                    c = _new_anon_folio(st, ms, ss, pa, GFP_ANON_COPY, 0, cpu)
                    if c < 0:
                        return -1 - q
                    st.mmc[dst, MMC_CHARGED] += 1
                    _map_new_folio(st, ms, ss, pa, dst, c, q, 1, True, cpu)
                    st.ev[H.EV_FORK_COPY] += 1
                    q += 1
                    continue
                n = np.int64(1) << ms.order[s]
                nr = np.int64(1)
                while q + nr < b and page + nr < n:
                    x = st.pte[src, q + nr]
                    if x == 0 or (x & PTE_ZERO) or _pte_pfn(x) != pfn + nr:
                        break
                    nr += 1
                F.folio_map_ptes(ms, s, page, nr)
                for i in range(nr):
                    x = st.pte[src, q + i] & ~PTE_WRITE
                    st.pte[src, q + i] = x
                    st.pte[dst, q + i] = x
                st.mmc[dst, MMC_RSS] += nr
                st.mmc[dst, MMC_CHARGED] += nr
                q += nr
        vpn = b
    return vpn


# ------------------------------------------------------------------ consistency


@njit
def mm_check_nb(st, ms):
    """Page tables vs folios: every PTE/PMD names a live anon folio page, and per page the PTEs
    of all mms add up to the folio layer's page_mc; PMD mappings to _entire_mapcount; RSS.
    Returns (code, a, b): 0 ok."""
    nmm = st.cfg[CF_NMM]
    npages = ms.page_mc.shape[0]
    cnt = np.zeros(npages, np.int64)
    cap = ms.pfn.shape[0]
    pmdc = np.zeros(cap, np.int64)
    for mm in range(nmm):
        if st.mmc[mm, MMC_LIVE] == 0:
            continue
        rss = np.int64(0)
        for p in range(st.pmd.shape[1]):
            v = st.pmd[mm, p]
            if v != 0:
                if st.dep[mm, p] < 0:
                    return 5, mm, p
                if not (v & PTE_ZERO):
                    s = np.int64(ms.pfn_slot[_pte_pfn(v)]) - 1
                    if s < 0 or ms.mtype[s] != MD_ANON or ms.order[s] != H.PMD_ORDER:
                        return 1, mm, p << PMD_SHIFT
                    if ms.anon_vma[s] != st.anon_vma[mm] or ms.index[s] != p << PMD_SHIFT:
                        return 8, mm, p << PMD_SHIFT
                    pmdc[s] += 1
                    rss += H.HPAGE_PMD_NR
                continue
            base = p << PMD_SHIFT
            if st.ptt[mm, p] < 0:
                for i in range(H.HPAGE_PMD_NR):
                    if st.pte[mm, base + i] != 0:
                        return 6, mm, base + i
                continue
            for i in range(H.HPAGE_PMD_NR):
                w = st.pte[mm, base + i]
                if w == 0 or (w & PTE_ZERO):
                    continue
                pfn = _pte_pfn(w)
                s = np.int64(ms.pfn_slot[pfn]) - 1
                if s < 0 or ms.mtype[s] != MD_ANON:
                    return 1, mm, base + i
                if find_vma(st, mm, base + i) < 0:
                    return 4, mm, base + i
                if ms.anon_vma[s] != st.anon_vma[mm] or ms.index[s] + (pfn - ms.pfn[s]) != base + i:
                    return 8, mm, base + i
                cnt[pfn] += 1
                rss += 1
        if rss != st.mmc[mm, MMC_RSS]:
            return 3, mm, rss
    for pfn in range(npages):
        s = np.int64(ms.pfn_slot[pfn]) - 1
        if s >= 0 and ms.mtype[s] == MD_ANON:
            if cnt[pfn] != ms.page_mc[pfn]:
                return 2, pfn, cnt[pfn]
    for s in range(ms.meta[F.MM_TOP]):
        if ms.mtype[s] == MD_ANON and ms.order[s] > 0 and pmdc[s] != np.int64(ms.emap[s]) + 1:
            return 7, s, pmdc[s]
    return 0, 0, 0


MM_CHECK_MESSAGES = {
    1: "mm {a}: page {b:#x} maps a page that is not in a live anon folio (of the right order)",
    2: "pfn {a:#x}: {b} PTEs map it, the folio layer counts another number (page_mc)",
    3: "mm {a}: RSS counter disagrees with the mapped pages ({b})",
    4: "mm {a}: page {b:#x} is mapped outside every VMA",
    5: "mm {a}: PMD {b} is mapped without a deposited page table",
    6: "mm {a}: PTE at page {b:#x} without a PTE table",
    7: "folio slot {a}: {b} PMD mappings, _entire_mapcount says otherwise",
    8: "mm {a}: page {b:#x} maps a folio whose rmap anchor (anon_vma, index) does not lead there",
}


# ------------------------------------------------------------------ Python facade


def _pages(nbytes: int, what: str) -> int:
    if nbytes <= 0 or nbytes % F.PAGE_SIZE:
        raise ConfigError(f"{what}: {nbytes} is not a positive multiple of the page size ({F.PAGE_SIZE})")
    return nbytes // F.PAGE_SIZE


class AddressSpaces:
    """Processes' address spaces over a machine's folio layer.

    Addresses and lengths are in bytes (page-aligned); an mm is an int (``mm_alloc`` /
    ``fork``).  ``touch`` faults pages in; ``madvise_dontneed``, ``munmap`` zap;
    ``shrink_deferred_split`` runs the deferred split shrinker.  ``check()`` checks the page
    tables against the folio layer, then the folio layer itself."""

    def __init__(self, machine: Machine, settings: H.ThpSettings | None = None, vpages: int = 1 << 19,
                 nmm: int = 4, nvma: int = 64):
        self.machine = machine
        self.folios = F.Folios.of(machine)
        self.settings = settings or H.ThpSettings()
        self.st = new_mm_state(vpages, nmm, nvma, self.settings)
        st = self.st
        self.folios.state = F.set_page_tables(self.folios.state, st.pte, st.pmd, st.ptt, st.dep, st.anon_vma)
        self._next_anon_vma = 1
        self.vpages = vpages
        self._top = np.full(nmm, vpages, np.int64)  # top-down mmap cursor (mmap_base)

    # -- plumbing
    def _args(self):
        f = self.folios
        return self.st, f.state, f.slab.state, f.pa

    def _grow(self):
        f = self.folios
        f.state = F.grow_memdesc_state(f.state, 2 * F.MAX_PIECES)
        f.slab.state = F.slab_state_headroom(f.slab.state, 4 * F.HEADROOM_SLABS)

    def _loop(self, kernel, start, end, *args):
        pos = start
        while True:
            self.folios._ensure()
            pos = int(kernel(*self._args(), *args[:1], np.int64(pos), *args[1:]))
            if pos < 0 or pos >= end:
                return pos
            self._grow()

    def _range(self, addr: int, length: int) -> tuple[int, int]:
        """(first page, pages) of a page-aligned range inside the address space (-EINVAL else)."""
        a = _pages(addr, "address") if addr else 0
        n = _pages(length, "length")
        if a + n > self.vpages:
            raise ConfigError(f"range {addr:#x}+{length:#x} leaves the {self.vpages}-page address space (-EINVAL)")
        return a, n

    def _mm(self, mm: int) -> np.int64:
        if not (0 <= int(mm) < self.st.cfg[CF_NMM]) or not self.st.mmc[int(mm), MMC_LIVE]:
            raise ConfigError(f"mm {mm} is not a live address space")
        return np.int64(mm)

    # -- mm_struct and VMAs
    def mm_alloc(self, memcg_limit_pages: int = -1) -> int:
        free = np.flatnonzero(self.st.mmc[:, MMC_LIVE] == 0)
        if not free.size:
            raise ConfigError(f"no free mm slot (nmm={int(self.st.cfg[CF_NMM])})")
        mm = int(free[0])
        self.st.mmc[mm] = 0
        self.st.mmc[mm, MMC_LIVE] = 1
        self.st.mmc[mm, MMC_LIMIT] = memcg_limit_pages
        self.st.nvma[mm] = 0
        self.st.anon_vma[mm] = self._next_anon_vma  # anon_vma_prepare(): a new root
        self._next_anon_vma += 1
        self._top[mm] = self.vpages
        return mm

    def vmas(self, mm: int) -> list[tuple[int, int, int]]:
        m = int(self._mm(mm))
        n = int(self.st.nvma[m])
        return [(int(self.st.vstart[m, i]) * F.PAGE_SIZE, int(self.st.vend[m, i]) * F.PAGE_SIZE,
                 int(self.st.vflags[m, i])) for i in range(n)]

    def _set_vmas(self, m: int, vmas: list[tuple[int, int, int]]) -> None:
        vmas = sorted(vmas)
        if len(vmas) > self.st.vstart.shape[1]:
            raise ConfigError(f"mm {m}: more than {self.st.vstart.shape[1]} VMAs")
        self.st.nvma[m] = len(vmas)
        for i, (a, b, f) in enumerate(vmas):
            self.st.vstart[m, i], self.st.vend[m, i], self.st.vflags[m, i] = a, b, f

    def _vma_list(self, m: int) -> list[tuple[int, int, int]]:
        return [(int(self.st.vstart[m, i]), int(self.st.vend[m, i]), int(self.st.vflags[m, i]))
                for i in range(int(self.st.nvma[m]))]

    def mmap(self, mm: int, length: int, addr: int | None = None, flags: int = 0) -> int:
        """mmap(MAP_PRIVATE | MAP_ANONYMOUS): the address.  Without ``addr`` the range is placed
        top-down below the last one, 2 MiB-aligned if length is a multiple of 2 MiB."""
        m = int(self._mm(mm))
        n = _pages(length, "mmap length")
        vmas = self._vma_list(m)
        if addr is None:
            align = H.HPAGE_PMD_NR if n % H.HPAGE_PMD_NR == 0 else 1
            top = int(self._top[m])
            a = ((top - n) // align) * align
            while a >= H.HPAGE_PMD_NR and any(s < a + n and e > a for s, e, _ in vmas):
                lo = min(s for s, e, _ in vmas if s < a + n and e > a)
                a = ((lo - n) // align) * align
            if a < H.HPAGE_PMD_NR:
                raise ConfigError(f"mmap of {length} bytes: no room in the {self.vpages}-page address space")
            self._top[m] = a
        else:
            a = _pages(addr, "mmap address") if addr else 0
            if a + n > self.vpages or any(s < a + n and e > a for s, e, _ in vmas):
                raise ConfigError(f"mmap at {addr:#x}: overlaps a mapping or leaves the address space")
        # vma_merge with an adjacent VMA of the same flags
        new = (a, a + n, int(flags))
        out = []
        for v in vmas:
            if v[2] == new[2] and (v[1] == new[0] or v[0] == new[1]):
                new = (min(v[0], new[0]), max(v[1], new[1]), new[2])
            else:
                out.append(v)
        self._set_vmas(m, out + [new])
        return a * F.PAGE_SIZE

    def madvise_hugepage(self, mm: int, addr: int, length: int, on: bool = True) -> None:
        """MADV_HUGEPAGE (on) / MADV_NOHUGEPAGE (off) of a range: VMAs split at its ends."""
        flag, clear = (H.VM_HUGEPAGE, H.VM_NOHUGEPAGE) if on else (H.VM_NOHUGEPAGE, H.VM_HUGEPAGE)
        self._change_flags(int(self._mm(mm)), *self._range(addr, length), flag, clear)

    def _change_flags(self, m, a, n, set_, clear):
        out = []
        b = a + n
        for s, e, f in self._vma_list(m):
            if e <= a or s >= b:
                out.append((s, e, f))
                continue
            if s < a:
                out.append((s, a, f))
            if e > b:
                out.append((b, e, f))
            out.append((max(s, a), min(e, b), (f | set_) & ~clear))
        self._set_vmas(m, out)

    # -- faults and zaps
    def touch(self, mm: int, addr: int, length: int, step: int = F.PAGE_SIZE, write: bool = True) -> dict:
        """Touch [addr, addr + length) every ``step`` bytes (a write or a read fault per page):
        counts of fault results."""
        m = self._mm(mm)
        a, n = self._range(addr, length)
        st_ = _pages(step, "step")
        res = np.zeros(3, np.int64)
        self._loop(touch_kernel, a, a + n, m, np.int64(a + n), np.int64(st_), bool(write), np.int64(0), res)
        return {"ok": int(res[0]), "sigsegv": int(res[1]), "oom": int(res[2])}

    def fault(self, mm: int, addr: int, write: bool = True) -> str:
        """One fault at addr: "ok", "sigsegv" or "oom"."""
        r = self.touch(mm, addr - addr % F.PAGE_SIZE, F.PAGE_SIZE, write=write)
        return next(k for k, v in r.items() if v)

    def madvise_dontneed(self, mm: int, addr: int, length: int) -> None:
        """MADV_DONTNEED: zap the range (page tables stay)."""
        m = self._mm(mm)
        a, n = self._range(addr, length)
        self._loop(zap_kernel, a, a + n, m, np.int64(a + n), np.int64(0))

    def munmap(self, mm: int, addr: int, length: int) -> None:
        """munmap: zap, drop the VMAs' range (splitting VMAs), free unused page tables."""
        m = int(self._mm(mm))
        a, n = self._range(addr, length)
        self._loop(zap_kernel, a, a + n, np.int64(m), np.int64(a + n), np.int64(0))
        out = []
        for s, e, f in self._vma_list(m):
            if e <= a or s >= a + n:
                out.append((s, e, f))
                continue
            if s < a:
                out.append((s, a, f))
            if e > a + n:
                out.append((a + n, e, f))
        self._set_vmas(m, out)
        self.folios._ensure()
        free_pgtables_kernel(*self._args(), np.int64(m), np.int64(a), np.int64(a + n), np.int64(0))

    def exit_mm(self, mm: int) -> None:
        """exit_mmap(): unmap everything and free the page tables; the mm slot is free again."""
        m = int(self._mm(mm))
        for s, e, _ in self._vma_list(m):
            self.munmap(m, s * F.PAGE_SIZE, (e - s) * F.PAGE_SIZE)
        self.folios._ensure()
        free_pgtables_kernel(*self._args(), np.int64(m), np.int64(0), np.int64(self.vpages), np.int64(0))
        self.st.mmc[m, MMC_LIVE] = 0
        self.st.nvma[m] = 0
        self.st.anon_vma[m] = 0

    def fork(self, mm: int) -> int:
        """fork(): a new mm with the parent's VMAs and page tables, every anon mapping shared
        write-protected (pinned folios copied).  Raises ConfigError (-ENOMEM) if memory ran out
        (the half-built child is torn down)."""
        p = int(self._mm(mm))
        c = self.mm_alloc(int(self.st.mmc[p, MMC_LIMIT]))
        self.st.anon_vma[c] = self.st.anon_vma[p]  # anon_vma_fork(): the family's root
        vmas = self._vma_list(p)
        self._set_vmas(c, vmas)
        self._top[c] = self._top[p]
        for s, e, _ in vmas:
            r = self._loop(copy_range_kernel, s, e, np.int64(p), np.int64(e), np.int64(c), np.int64(0))
            if r < 0:
                self.exit_mm(c)
                raise ConfigError(f"fork: out of memory copying page {-1 - r:#x} (-ENOMEM)")
        return c

    def shrink_deferred_split(self, nr_to_scan: int | None = None) -> int:
        """Run the deferred split shrinker over up to nr_to_scan queued folios (all by default)."""
        f = self.folios
        want = int(f.state.meta[F.MM_DS_COUNT]) if nr_to_scan is None else int(nr_to_scan)
        done = 0
        while done < want and f.state.meta[F.MM_DS_COUNT] > 0:
            f._ensure()
            k = int(H.deferred_split_scan(f.state, f.slab.state, f.pa, self.st.thp, self.st.ev,
                                          np.int64(want - done), np.int64(0)))
            done += k
            if done < want and f.state.meta[F.MM_DS_COUNT] > 0:
                self._grow()
        return done

    # -- reports
    def check(self) -> str:
        code, a, b = mm_check_nb(self.st, self.folios.state)
        if code:
            return MM_CHECK_MESSAGES[int(code)].format(a=int(a), b=int(b))
        return self.folios.check()

    def thp_stats(self) -> dict[str, dict[str, int]]:
        return H.thp_stats_dict(self.st.thp)

    def events(self) -> dict[str, int]:
        """The THP and fault events; thp_split_pmd includes the PMDs the folio layer's rmap walk
        split (a PMD-mapped folio split by compaction or the deferred split shrinker)."""
        ev = {n: int(self.st.ev[i]) for i, n in enumerate(H.EV_NAMES)}
        ev["thp_split_pmd"] += int(self.folios.state.rm_stat[R.RMS_SPLIT_PMDS])
        return ev

    def rmap_stats(self) -> dict[str, int]:
        """The folio layer's rmap walks (memdesc.mm.rmap): walks, PTEs and PMDs rewritten by
        migration, PMDs split."""
        return {n: int(v) for n, v in zip(R.RMS_NAMES, self.folios.state.rm_stat, strict=True)}

    def anon_allocations(self) -> dict[str, int]:
        """Anon folios allocated per order (faults and copies), and of these the COW copies."""
        out = {str(o): int(self.st.alloc_order[o]) for o in range(H.NR_THP_ORDERS) if self.st.alloc_order[o]}
        out["cow_copies"] = int(self.st.alloc_order[H.NR_THP_ORDERS])
        return out

    def mm_counters(self, mm: int) -> dict[str, int]:
        m = int(mm)
        return {n: int(self.st.mmc[m, i]) for i, n in enumerate(MMC_NAMES)}


__all__ = ["AddressSpaces", "MmState", "new_mm_state", "handle_mm_fault", "touch_kernel", "zap_kernel",
           "copy_range_kernel", "free_pgtables_kernel", "mm_check_nb", "PTE_WRITE", "PTE_ZERO"]
