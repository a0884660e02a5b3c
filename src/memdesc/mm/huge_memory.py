"""Transparent huge pages for anonymous memory: the mTHP order policy, the deferred split queue
and its shrinker, and the per-size counters (Linux 6.18 mm/huge_memory.c, mm/memory.c).

Theory
------
**Which orders a fault may use.**  Each anon folio size has a setting, as in
``/sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/enabled``: ``never``, ``always``,
``madvise`` or ``inherit`` (take the top-level ``transparent_hugepage/enabled``, which is
``always``, ``madvise`` or ``never``).  The PMD size defaults to ``inherit``, the others to
``never``.  ``__thp_vma_allowable_orders()`` for an anon VMA at fault time is

    always | (madvise if VM_HUGEPAGE) | (inherit if top-level always,
                                          or top-level madvise and VM_HUGEPAGE)

and nothing for VM_NOHUGEPAGE.  Orders 0 and 1 are never anon THPs.
``thp_vma_suitable_orders()`` keeps the orders whose naturally aligned block around the
faulting address lies inside the VMA (anon VMAs have ``vm_pgoff == vm_start >> PAGE_SHIFT``,
so the pgoff alignment check always holds).  ``alloc_anon_folio()`` then drops, from the
highest order down, every order whose aligned PTE range is not all ``pte_none`` (the first
order whose range is empty stops the scan: every lower order's range is inside it), and
tries the remaining orders highest first: an allocation failure counts
``anon_fault_fallback`` for that order and tries the next one, a memcg charge failure
``anon_fault_fallback_charge``; order 0 is the last resort.  The PMD order is tried
before all of these by ``do_huge_pmd_anonymous_page()`` when the PMD is empty
(``thp_fault_alloc`` / ``thp_fault_fallback`` and the PMD size's counters).

**The gfp of a THP fault** (``vma_thp_gfp_mask``) follows ``transparent_hugepage/defrag``;
with the default ``madvise``: ``GFP_TRANSHUGE_LIGHT`` for a VMA without VM_HUGEPAGE,
``GFP_TRANSHUGE`` (direct reclaim) for a madvised one; a PMD-sized folio also gets
``__GFP_THISNODE | __GFP_NORETRY`` from the mempolicy path (the capture shows
``GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE`` for its order-9 faults).

**Deferred split.**  ``deferred_split_folio(folio, partially_mapped)`` (the queue itself
is :mod:`memdesc.mm.folio`'s) is called when an unmap leaves a large anon folio partially
mapped -- the first time sets PG_partially_mapped and counts ``split_deferred`` and
``nr_anon_partially_mapped`` for the folio's order (``thp_deferred_split_page`` for a
PMD-sized one) -- and, without the flag, for every PMD THP made at fault (the
"underused" shrinker's candidates).  ``deferred_split_scan()`` (the shrinker) walks the
queue: a folio that is not partially mapped is kept only if ``thp_underused()``, which
is false at the default ``max_ptes_none = 511``, so it leaves the queue; a partially
mapped one is split to order 0 (``split_folio``); its unmapped pages are freed at once.
A split counts ``split`` (or ``split_failed``: pinned, extra references, or -- on
designs with separate descriptors -- no memory for the new descriptors) and moves
``nr_anon`` from the old order to the new ones (order 0 is not counted).  Freeing a large
anon folio decrements ``nr_anon`` (and ``nr_anon_partially_mapped`` if flagged).

Counters (``thp`` array, ``[stat, order]``): the names of the sysfs ``stats/`` files.
Not modelled: swap-in/out and shmem counters, ``anon_fault_declined`` is never counted
(no mTHP for userfaultfd-armed VMAs: there are none), khugepaged collapse, the
``underused`` split (its threshold never triggers at the default ``max_ptes_none``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm import folio as F
from memdesc.mm import gfp as G

PMD_ORDER = 9
HPAGE_PMD_NR = 1 << PMD_ORDER
NR_THP_ORDERS = PMD_ORDER + 1
#: anon orders below PMD size that may be THPs (orders 0 and 1 never are)
ANON_PTE_ORDERS_MASK = ((1 << PMD_ORDER) - 1) & ~0b11

# per-size settings (hugepages-<size>kB/enabled) and the top-level one
THP_NEVER, THP_ALWAYS, THP_MADVISE, THP_INHERIT = range(4)
SETTING_NAMES = ("never", "always", "madvise", "inherit")
SETTING_BY_NAME = {n: i for i, n in enumerate(SETTING_NAMES)}
# transparent_hugepage/defrag
DEFRAG_ALWAYS, DEFRAG_DEFER, DEFRAG_DEFER_MADVISE, DEFRAG_MADVISE, DEFRAG_NEVER = range(5)
DEFRAG_NAMES = ("always", "defer", "defer+madvise", "madvise", "never")

# vm_flags bits the policy reads (include/linux/mm.h values)
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000

# per-size counters (sysfs hugepages-<size>kB/stats/<name>)
(MTHP_ANON_FAULT_ALLOC, MTHP_ANON_FAULT_FALLBACK, MTHP_ANON_FAULT_FALLBACK_CHARGE, MTHP_SPLIT, MTHP_SPLIT_FAILED,
 MTHP_SPLIT_DEFERRED, MTHP_NR_ANON, MTHP_NR_ANON_PARTIALLY_MAPPED) = range(8)
NR_MTHP_STATS = 8
MTHP_STAT_NAMES = ("anon_fault_alloc", "anon_fault_fallback", "anon_fault_fallback_charge", "split",
                   "split_failed", "split_deferred", "nr_anon", "nr_anon_partially_mapped")

# vm events the model counts (include/linux/vm_event_item.h names), and its own counters
(EV_THP_FAULT_ALLOC, EV_THP_FAULT_FALLBACK, EV_THP_FAULT_FALLBACK_CHARGE, EV_THP_SPLIT_PMD,
 EV_THP_DEFERRED_SPLIT_PAGE, EV_THP_SPLIT_PAGE, EV_THP_SPLIT_PAGE_FAILED, EV_PGFAULT, EV_COW, EV_COW_REUSE,
 EV_ZERO_MAP, EV_SIGSEGV, EV_OOM, EV_PGTABLE_ALLOC, EV_PGTABLE_FREE, EV_FORK_COPY, EV_SHRINKER_SCANNED,
 EV_SHRINKER_DEQUEUED, EV_THP_ZERO_PMD) = range(19)
NR_EV = 24
EV_NAMES = ("thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge", "thp_split_pmd",
            "thp_deferred_split_page", "thp_split_page", "thp_split_page_failed", "pgfault", "cow_copies",
            "cow_reuses", "zero_page_maps", "sigsegv", "oom", "pgtable_allocs", "pgtable_frees",
            "fork_copies_pinned", "shrinker_scanned", "shrinker_dequeued", "huge_zero_pmd_maps")


def size_kb(order: int) -> int:
    return 4 << order


@dataclass
class ThpSettings:
    """/sys/kernel/mm/transparent_hugepage: ``enabled`` (top level), ``defrag``, ``use_zero_page``
    and the per-size ``enabled`` settings (orders 2..9; keys are orders or "<size>kB")."""

    enabled: str = "madvise"
    defrag: str = "madvise"
    use_zero_page: bool = True
    sizes: dict = field(default_factory=dict)

    def per_order(self) -> np.ndarray:
        """The per-order setting codes (index = order; orders 0 and 1: never)."""
        out = np.full(NR_THP_ORDERS, THP_NEVER, np.int64)
        out[PMD_ORDER] = THP_INHERIT
        for k, v in self.sizes.items():
            o = _order_of(k)
            if v not in SETTING_BY_NAME:
                raise ConfigError(f"hugepages-{size_kb(o)}kB/enabled: {v!r} is not one of {', '.join(SETTING_NAMES)}")
            out[o] = SETTING_BY_NAME[v]
        return out

    def top(self) -> int:
        if self.enabled not in ("always", "madvise", "never"):
            raise ConfigError(f"transparent_hugepage/enabled: {self.enabled!r} is not always, madvise or never")
        return SETTING_BY_NAME[self.enabled]

    def defrag_code(self) -> int:
        if self.defrag not in DEFRAG_NAMES:
            raise ConfigError(f"transparent_hugepage/defrag: {self.defrag!r} is not one of {', '.join(DEFRAG_NAMES)}")
        return DEFRAG_NAMES.index(self.defrag)

    @classmethod
    def from_thp_stats(cls, text: str) -> ThpSettings:
        """The per-size settings of a capture's thp_stats file (``hugepages-16kB enabled=... [always] ...``)."""
        sizes = {}
        for line in text.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].startswith("enabled="):
                sel = [w[1:-1] for w in parts[1][len("enabled="):].split() if w.startswith("[")]
                if sel:
                    sizes[parts[0].removeprefix("hugepages-")] = sel[0]
        return cls(sizes=sizes)


def _order_of(key) -> int:
    if isinstance(key, str):
        s = key.removeprefix("hugepages-").removesuffix("kB")
        try:
            kb = int(s)
        except ValueError:
            raise ConfigError(f"THP size {key!r}: expected an order or '<size>kB'") from None
        o = (kb // 4).bit_length() - 1
        if kb != 4 << o:
            raise ConfigError(f"THP size {key!r} is not a power-of-two multiple of 4 kB")
    else:
        o = int(key)
    if not 2 <= o <= PMD_ORDER:
        raise ConfigError(f"THP order {o} outside 2..{PMD_ORDER} (anon THPs are orders 2..9 with 4 KiB pages)")
    return o


# ------------------------------------------------------------------ the order policy (numba)


@njit(inline="always")
def thp_vma_allowable_orders(per_order, top, vm_flags, orders):
    """__thp_vma_allowable_orders() for an anon VMA at fault time: the bitmask of ``orders``
    that the per-size settings allow for a VMA with ``vm_flags``."""
    if vm_flags & VM_NOHUGEPAGE:
        return np.int64(0)
    madv = (vm_flags & VM_HUGEPAGE) != 0
    mask = np.int64(0)
    for o in range(2, NR_THP_ORDERS):
        s = per_order[o]
        ok = s == THP_ALWAYS or (s == THP_MADVISE and madv) or \
            (s == THP_INHERIT and (top == THP_ALWAYS or (top == THP_MADVISE and madv)))
        if ok:
            mask |= np.int64(1) << o
    return mask & orders


@njit(inline="always")
def thp_vma_suitable_orders(vm_start, vm_end, vpn, orders):
    """thp_vma_suitable_orders(): the orders whose aligned block around page ``vpn`` lies in
    [vm_start, vm_end) (pages)."""
    out = np.int64(0)
    for o in range(2, NR_THP_ORDERS):
        if orders & (np.int64(1) << o):
            h = vpn & ~((np.int64(1) << o) - 1)
            if h >= vm_start and h + (np.int64(1) << o) <= vm_end:
                out |= np.int64(1) << o
    return out


@njit(inline="always")
def highest_order(orders):
    """highest_order(): the top set bit (-1 for none)."""
    o = np.int64(-1)
    while orders:
        orders >>= 1
        o += 1
    return o


@njit(inline="always")
def next_order(orders, prev):
    """next_order(): the orders below ``prev`` (clears prev), and the highest of them."""
    orders &= ~(np.int64(1) << prev)
    return orders, highest_order(orders)


@njit(inline="always")
def vma_thp_gfp_mask(defrag, vm_flags, order):
    """vma_thp_gfp_mask() (+ the mempolicy's __GFP_THISNODE | __GFP_NORETRY for PMD size)."""
    madv = (vm_flags & VM_HUGEPAGE) != 0
    if defrag == DEFRAG_ALWAYS:
        g = G.GFP_TRANSHUGE | (0 if madv else G.__GFP_NORETRY)
    elif defrag == DEFRAG_DEFER:
        g = G.GFP_TRANSHUGE_LIGHT | G.__GFP_KSWAPD_RECLAIM
    elif defrag == DEFRAG_DEFER_MADVISE:
        g = G.GFP_TRANSHUGE_LIGHT | (G.__GFP_DIRECT_RECLAIM if madv else G.__GFP_KSWAPD_RECLAIM)
    elif defrag == DEFRAG_MADVISE:
        g = G.GFP_TRANSHUGE_LIGHT | (G.__GFP_DIRECT_RECLAIM if madv else 0)
    else:
        g = G.GFP_TRANSHUGE_LIGHT
    if order == PMD_ORDER:
        g |= G.__GFP_THISNODE | G.__GFP_NORETRY
    return np.int64(g)


@njit(inline="always")
def count_mthp_stat(thp, order, item, delta):
    """count_mthp_stat()/mod_mthp_stat(): orders 0 and above PMD are not counted."""
    if 0 < order <= PMD_ORDER:
        thp[item, order] += delta


# ------------------------------------------------------------------ deferred split (numba)


@njit(inline="always")
def _partially_mapped(ms, s):
    return (ms.flags[s] & (np.int64(1) << F.PG_partially_mapped)) != 0


@njit
def deferred_split_folio_counted(ms, thp, ev, s, partially_mapped):
    """deferred_split_folio() with its counters (split_deferred and nr_anon_partially_mapped
    the first time a folio is found partially mapped)."""
    order = np.int64(ms.order[s])
    was = _partially_mapped(ms, s)
    rc = F.deferred_split_folio(ms, s, partially_mapped)
    if rc == F.OK and partially_mapped and not was:
        count_mthp_stat(thp, order, MTHP_SPLIT_DEFERRED, 1)
        count_mthp_stat(thp, order, MTHP_NR_ANON_PARTIALLY_MAPPED, 1)
        if order == PMD_ORDER:
            ev[EV_THP_DEFERRED_SPLIT_PAGE] += 1
    return rc


@njit
def account_after_unmap(ms, thp, ev, s, order, was_pm):
    """Counters after an unmap of (large anon) folio s that had ``order`` and PG_partially_mapped
    ``was_pm`` before: freed -> nr_anon (and nr_anon_partially_mapped) down; newly partially
    mapped (the folio layer queued it) -> split_deferred, nr_anon_partially_mapped up."""
    if order < 2:
        return
    if ms.mtype[s] < 0:  # freed
        count_mthp_stat(thp, order, MTHP_NR_ANON, -1)
        if was_pm:
            count_mthp_stat(thp, order, MTHP_NR_ANON_PARTIALLY_MAPPED, -1)
        return
    if _partially_mapped(ms, s) and not was_pm:
        count_mthp_stat(thp, order, MTHP_SPLIT_DEFERRED, 1)
        count_mthp_stat(thp, order, MTHP_NR_ANON_PARTIALLY_MAPPED, 1)
        if order == PMD_ORDER:
            ev[EV_THP_DEFERRED_SPLIT_PAGE] += 1


@njit
def split_folio_counted(ms, ss, pa, thp, ev, s, cpu, out):
    """split_folio() of an anon folio to order 0 by a caller holding one extra reference (which
    it drops afterwards): split / split_failed, nr_anon moved.  Returns folio_split's code
    (E_NOCAP: nothing changed, grow and retry)."""
    order = np.int64(ms.order[s])
    was_pm = _partially_mapped(ms, s)
    n = F.folio_split(ms, ss, pa, s, 0, 0, True, cpu, out)
    if n == F.E_NOCAP:
        return n
    if n > 0:
        count_mthp_stat(thp, order, MTHP_SPLIT, 1)
        count_mthp_stat(thp, order, MTHP_NR_ANON, -1)
        if was_pm:
            count_mthp_stat(thp, order, MTHP_NR_ANON_PARTIALLY_MAPPED, -1)
        if order == PMD_ORDER:
            ev[EV_THP_SPLIT_PAGE] += 1
        # the caller's reference is on piece 0 (at = 0)
        if out[0] >= 0:
            F.folio_put_refs(ms, ss, pa, out[0], 1, cpu)
    else:
        count_mthp_stat(thp, order, MTHP_SPLIT_FAILED, 1)
        if order == PMD_ORDER:
            ev[EV_THP_SPLIT_PAGE_FAILED] += 1
        F.folio_put_refs(ms, ss, pa, s, 1, cpu)
    return n


@njit
def deferred_split_scan(ms, ss, pa, thp, ev, nr_to_scan, cpu):
    """deferred_split_scan(): walk up to ``nr_to_scan`` folios of the queue from its head;
    partially mapped ones are split to order 0 (a failed split stays queued), the others
    leave the queue (thp_underused() is false at max_ptes_none = 511).  Returns the number
    of folios scanned; stops early (fewer than asked, queue not empty) when the folio
    layer needs room -- call again after growing."""
    out = np.empty(F.MAX_PIECES, np.int64)
    done = np.int64(0)
    s = np.int64(ms.meta[F.MM_DS_HEAD])
    while s >= 0 and done < nr_to_scan:
        if not F.headroom_ok(ms, ss):
            break
        nxt = np.int64(ms.ds_next[s])
        done += 1
        ev[EV_SHRINKER_SCANNED] += 1
        if not _partially_mapped(ms, s):
            F._deferred_del(ms, s)
            ev[EV_SHRINKER_DEQUEUED] += 1
        else:
            F.folio_get(ms, s)
            rc = split_folio_counted(ms, ss, pa, thp, ev, s, cpu, out)
            if rc == F.E_NOCAP:
                F.folio_put_refs(ms, ss, pa, s, 1, cpu)
                done -= 1
                ev[EV_SHRINKER_SCANNED] -= 1
                break
            if rc < 0 and ms.mtype[s] >= 0 and F._on_deferred(ms, s):
                # kernel: a failed split keeps the folio queued -- rotate it to the tail
                F._deferred_del(ms, s)
                ms.flags[s] |= np.int64(1) << F.PG_partially_mapped
                F.deferred_split_folio(ms, s, True)
        s = nxt
    return done


def thp_stats_dict(thp: np.ndarray, orders=None) -> dict[str, dict[str, int]]:
    """{"<size>kB": {stat: value}} for orders 2..9 (all, or the given ones)."""
    orders = range(2, NR_THP_ORDERS) if orders is None else orders
    return {f"{size_kb(o)}kB": {n: int(thp[i, o]) for i, n in enumerate(MTHP_STAT_NAMES)} for o in orders}


def parse_thp_stats(text: str) -> dict[str, dict[str, int]]:
    """A capture's thp_stats file -> {"<size>kB": {counter: value}} (the ``enabled=`` lines skipped)."""
    out: dict[str, dict[str, int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[0].startswith("hugepages-"):
            raise ConfigError(f"thp_stats line {n}: expected 'hugepages-<size>kB <counter> <value>', got {line!r}")
        size = parts[0].removeprefix("hugepages-")
        if parts[1].startswith("enabled="):
            continue
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            raise ConfigError(f"thp_stats line {n}: expected 'hugepages-<size>kB <counter> <value>', got {line!r}")
        out.setdefault(size, {})[parts[1]] = int(parts[2])
    return out


__all__ = ["MTHP_STAT_NAMES", "EV_NAMES", "PMD_ORDER", "ThpSettings", "deferred_split_scan", "parse_thp_stats",
           "thp_stats_dict", "thp_vma_allowable_orders", "thp_vma_suitable_orders", "vma_thp_gfp_mask"]
