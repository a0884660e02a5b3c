"""The memdesc census of a real machine: every pfn of a kpageflags dump mapped to a memdesc kind.

Theory
------
:mod:`memdesc.trace.kpage` gives every pfn one :class:`~memdesc.trace.kpage.PageClass`.
This module refines that ontology into the *kinds* of the memdesc type table
(:data:`memdesc.mm.memdesc.KINDS`: a type id, refined by bare subtype or descriptor
variant), so each pfn gets the memdesc word it would carry in Wilcox's plan.  The rules,
first match wins (the PageClass precedence, with three splits):

================  ==========================================  =====================
kind              rule (KPF bits of fs/proc/page.c, 6.18)     PageClass it refines
================  ==========================================  =====================
misc:hole         outside every zone span, KPF_NOPAGE, or an  hole / unavailable
                  all-zero section that is not present RAM
misc:uninit       an all-zero section of present RAM          unavailable
misc:offline      KPF_OFFLINE                                 offline
hwpoison          KPF_HWPOISON                                hwpoison
free              KPF_BUDDY                                   free
misc:zero         KPF_ZERO_PAGE                               zero_page
hugetlb           KPF_HUGE                                    hugetlb
misc:reserved     KPF_RESERVED                                reserved
slab              KPF_SLAB                                    slab
pagetable         KPF_PGTABLE                                 pgtable
ksm               KPF_KSM (set only with KPF_ANON)            anon
anon              KPF_ANON                                    anon
file              a page-cache/LRU state bit (kpage's list)   file
misc:driver       anything else (flagless kernel memory)      other
================  ==========================================  =====================

*Hole or uninit.*  A section that reads all zero is either not RAM (the PCI hole) or RAM
whose struct pages are not initialised yet (deferred struct-page init).  Per zone,
``spanned - present`` pfns are not RAM; the all-zero pfns beyond that count are uninit,
taken from the top of the zone (deferred init grows upward, in whole sections).  On the
Linux 6.18 captures this gives DMA32's 262144 all-zero pfns (the 3-4 GiB hole) as holes
and Normal's 4063232 (= present - managed) as uninit.

*Folios.*  A compound head (KPF_COMPOUND_HEAD) and the KPF_COMPOUND_TAIL pfns that follow
it are one allocation of order ``log2(1 + tails)``; every other non-tail pfn of an
allocated kind is an order-0 allocation; free memory's allocations are the buddy blocks
rebuilt by :mod:`memdesc.trace.kpagebuddy`.  A run whose length is not a power of two,
or a tail with no head before it, is counted in ``anomalies`` (the dump is not atomic).
The per-kind histograms of allocation orders (``folios``) and of THP heads (KPF_THP) come
from the same single pass.

Invariants (tests/test_ontology.py): the census sums to the dump's pfns; every kind equals
the count of its KPF rule computed independently from the raw dump; the kinds refining a
PageClass sum to :func:`~memdesc.trace.kpage.classify_pages`' count of that class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError, FormatError
from memdesc.mm import vmstat
from memdesc.mm.memdesc import KIND_BY_NAME
from memdesc.trace.kpage import (
    _FILE_BITS,
    KPF,
    PAGES_PER_SECTION,
    PageClass,
    ZoneSpan,
    _check_same_length,
    check_dump_array,
    check_zone_spans,
    kpageflags_bit_counts,
    kpf_mask,
    read_kpage_dump,
    unavailable_sections,
    zone_index_of_pfns,
    zone_spans_from_zoneinfo,
)
from memdesc.trace.kpagebuddy import FreeBlocks, rebuild_free_blocks

#: the kinds a kpageflags dump can show, in rule precedence order (their codes)
CENSUS_KINDS: tuple[str, ...] = (
    "misc:hole", "misc:uninit", "misc:offline", "hwpoison", "free", "misc:zero", "hugetlb", "misc:reserved",
    "slab", "pagetable", "ksm", "anon", "file", "misc:driver",
)
NR_CENSUS_KINDS = len(CENSUS_KINDS)
CENSUS_CODE = {k: i for i, k in enumerate(CENSUS_KINDS)}
K_HOLE, K_UNINIT, K_OFFLINE, K_HWPOISON, K_FREE, K_ZERO, K_HUGETLB, K_RESERVED = range(8)
K_SLAB, K_PAGETABLE, K_KSM, K_ANON, K_FILE, K_DRIVER = range(8, 14)
#: kinds with no allocation in them (no folio histogram, no descriptor)
NO_ALLOC_KINDS = (K_HOLE, K_UNINIT)

#: the PageClass each census kind refines (misc:hole refines hole and unavailable)
KIND_CLASS: dict[str, tuple[PageClass, ...]] = {
    "misc:hole": (PageClass.HOLE, PageClass.UNAVAILABLE), "misc:uninit": (PageClass.UNAVAILABLE,),
    "misc:offline": (PageClass.OFFLINE,), "hwpoison": (PageClass.HWPOISON,), "free": (PageClass.FREE,),
    "misc:zero": (PageClass.ZERO_PAGE,), "hugetlb": (PageClass.HUGETLB,), "misc:reserved": (PageClass.RESERVED,),
    "slab": (PageClass.SLAB,), "pagetable": (PageClass.PGTABLE,), "ksm": (PageClass.ANON,),
    "anon": (PageClass.ANON,), "file": (PageClass.FILE,), "misc:driver": (PageClass.OTHER,),
}

#: flag rules after the zone/section rules, in precedence order: (kind code, mask)
KIND_RULES: tuple[tuple[int, np.uint64], ...] = (
    (K_HOLE, kpf_mask(KPF.NOPAGE)),
    (K_OFFLINE, kpf_mask(KPF.OFFLINE)),
    (K_HWPOISON, kpf_mask(KPF.HWPOISON)),
    (K_FREE, kpf_mask(KPF.BUDDY)),
    (K_ZERO, kpf_mask(KPF.ZERO_PAGE)),
    (K_HUGETLB, kpf_mask(KPF.HUGE)),
    (K_RESERVED, kpf_mask(KPF.RESERVED)),
    (K_SLAB, kpf_mask(KPF.SLAB)),
    (K_PAGETABLE, kpf_mask(KPF.PGTABLE)),
    (K_KSM, kpf_mask(KPF.KSM)),
    (K_ANON, kpf_mask(KPF.ANON)),
    (K_FILE, kpf_mask(*_FILE_BITS)),
)
_RULE_MASKS = np.array([m for _, m in KIND_RULES], dtype=np.uint64)
_RULE_KINDS = np.array([k for k, _ in KIND_RULES], dtype=np.uint8)

#: orders 0..MAX_HIST_ORDER in histograms (1 GiB hugetlb is order 18)
MAX_HIST_ORDER = 20
NR_HIST = MAX_HIST_ORDER + 1
A_NOT_POW2, A_ORPHAN_TAIL, A_TAIL_KIND = 0, 1, 2
ANOMALY_NAMES = ("compound_not_power_of_two", "orphan_tails", "tail_kind_differs")

#: section codes of all-zero pfns
SEC_OK, SEC_HOLE, SEC_UNINIT = 0, 1, 2


@njit
def kpage_census(flags, zone_index, zero_code, rule_masks, rule_kinds, head_bit, tail_bit, thp_bit,
                 kind, head, order, counts, hist, thp_hist, anomalies):
    """One pass over a kpageflags dump: each pfn's census kind, its allocation's head pfn and
    order, pages per kind, allocation-order and THP histograms per kind, anomalies.

    ``zero_code[pfn]``: SEC_HOLE / SEC_UNINIT for pfns of all-zero sections, else SEC_OK.
    Free pages get head = themselves here (the caller fills in the rebuilt buddy blocks).
    """
    n = flags.shape[0]
    nrules = rule_masks.shape[0]
    hole = np.uint8(K_HOLE)
    uninit = np.uint8(K_UNINIT)
    driver = np.uint8(K_DRIVER)
    for pfn in range(n):
        if zone_index[pfn] < 0 or zero_code[pfn] == SEC_HOLE:
            k = hole
        elif zero_code[pfn] == SEC_UNINIT:
            k = uninit
        else:
            f = flags[pfn]
            k = driver
            for r in range(nrules):
                if f & rule_masks[r]:
                    k = rule_kinds[r]
                    break
        kind[pfn] = k
        counts[k] += 1
    pfn = 0
    while pfn < n:
        k = kind[pfn]
        f = flags[pfn]
        if k == hole or k == uninit:
            head[pfn] = pfn
            order[pfn] = 0
            pfn += 1
            continue
        if f & tail_bit:
            # a tail with no head before it
            anomalies[A_ORPHAN_TAIL] += 1
            head[pfn] = pfn
            order[pfn] = 0
            if k != K_FREE:
                hist[k, 0] += 1
            pfn += 1
            continue
        run = 1
        if f & head_bit:
            while pfn + run < n and (flags[pfn + run] & tail_bit) and not (flags[pfn + run] & head_bit):
                run += 1
        o = 0
        while (1 << (o + 1)) <= run:
            o += 1
        if (1 << o) != run:
            anomalies[A_NOT_POW2] += 1
        if o > MAX_HIST_ORDER:
            o = MAX_HIST_ORDER
        for j in range(run):
            head[pfn + j] = pfn
            order[pfn + j] = o
            if j > 0 and kind[pfn + j] != k:
                anomalies[A_TAIL_KIND] += 1
        if k != K_FREE:
            hist[k, o] += 1
            if f & thp_bit:
                thp_hist[k, o] += 1
        pfn += run


@njit
def fill_free_blocks(block_pfn, block_order, head, order):
    """Every page of a rebuilt buddy block points to the block's first page and order."""
    for i in range(block_pfn.shape[0]):
        p = block_pfn[i]
        o = block_order[i]
        for j in range(1 << o):
            head[p + j] = p
            order[p + j] = o


def zero_section_codes(flags: np.ndarray, counts: np.ndarray | None, zones: Sequence[ZoneSpan],
                       present: Mapping[str, int], section_pages: int = PAGES_PER_SECTION) -> np.ndarray:
    """int8 per pfn: SEC_HOLE / SEC_UNINIT for the pfns of all-zero sections, else SEC_OK.

    Per zone, ``spanned - present[zone]`` pfns are not RAM; all-zero pfns beyond that count
    are uninit, taken from the top of the zone (see the module documentation)."""
    n = flags.shape[0]
    unavail = unavailable_sections(flags, counts, section_pages)
    per_pfn = np.repeat(unavail, section_pages)[:n]
    code = np.where(per_pfn, np.int8(SEC_HOLE), np.int8(SEC_OK)).astype(np.int8)
    for z in zones:
        if z.key not in present:
            raise ConfigError(f"zone {z.key}: no present page count (zoneinfo 'present')")
        idx = np.flatnonzero(per_pfn[z.start_pfn:z.end_pfn]) + z.start_pfn
        nonpresent = z.spanned - int(present[z.key])
        uninit = max(0, idx.shape[0] - max(0, nonpresent))
        if uninit:
            code[idx[idx.shape[0] - uninit:]] = SEC_UNINIT
    return code


@dataclass
class Census:
    """A dump's memdesc census (see the module documentation)."""

    zones: tuple[ZoneSpan, ...]
    kind: np.ndarray  # uint8 census kind code per pfn
    head: np.ndarray  # int64: first pfn of the pfn's allocation or free block
    order: np.ndarray  # int8: order of that allocation or block
    counts: np.ndarray  # int64 per kind
    hist: np.ndarray  # int64 [kind, order]: allocations (free: buddy blocks)
    thp_hist: np.ndarray  # int64 [kind, order]: KPF_THP heads
    anomalies: np.ndarray  # int64 per ANOMALY_NAMES
    bit_counts: np.ndarray  # int64[64]: pfns with each KPF bit
    free_blocks: FreeBlocks
    present: dict[str, int]
    section_pages: int = PAGES_PER_SECTION
    flags: np.ndarray | None = field(default=None, repr=False)
    mapcounts: np.ndarray | None = field(default=None, repr=False)

    @property
    def npfn(self) -> int:
        return int(self.kind.shape[0])

    def census(self) -> dict[str, int]:
        """``{kind: pages}`` for every census kind (0 included)."""
        return {k: int(self.counts[i]) for i, k in enumerate(CENSUS_KINDS)}

    def folios(self) -> dict[str, dict[str, int]]:
        """``{kind: {order: allocations}}``: compound runs and order-0 pages per kind; free: the
        rebuilt buddy blocks; the no-allocation kinds (hole, uninit) are empty."""
        return {k: {str(o): int(c) for o, c in enumerate(self.hist[i]) if c}
                for i, k in enumerate(CENSUS_KINDS)}

    def thp(self) -> dict[str, dict[str, int]]:
        """``{kind: {order: KPF_THP heads}}`` for the kinds that have any."""
        return {k: {str(o): int(c) for o, c in enumerate(self.thp_hist[i]) if c}
                for i, k in enumerate(CENSUS_KINDS) if self.thp_hist[i].any()}

    def allocations(self) -> dict[str, int]:
        return {k: int(self.hist[i].sum()) for i, k in enumerate(CENSUS_KINDS)}

    def anomaly_counts(self) -> dict[str, int]:
        return {n: int(self.anomalies[i]) for i, n in enumerate(ANOMALY_NAMES)}

    def ram_pages(self) -> int:
        """Present RAM pages (sum of the zones' ``present``)."""
        return int(sum(self.present.values()))

    def memmap_sections(self) -> np.ndarray:
        """bool per memory section: it has a memmap (SPARSEMEM_VMEMMAP allocates struct pages
        for every pfn of a present section): any pfn of it is not misc:hole."""
        ns = -(-self.npfn // self.section_pages)
        has = np.zeros(ns * self.section_pages, np.bool_)
        has[: self.npfn] = self.kind != K_HOLE
        return has.reshape(ns, self.section_pages).any(axis=1)

    def memmap_pfns(self) -> int:
        """pfns with a struct page: every pfn of every present section."""
        return int(self.memmap_sections().sum()) * self.section_pages

    def descriptor_counts(self) -> dict[str, dict[int, int]]:
        """Allocations per census kind and order (the number of descriptors a design that
        allocates descriptors separately needs, before slab packing)."""
        return {k: {o: int(c) for o, c in enumerate(self.hist[i]) if c} for i, k in enumerate(CENSUS_KINDS)}

    def summary(self) -> dict:
        return {"pfns": self.npfn, "census": self.census(), "folios": self.folios(), "thp": self.thp(),
                "allocations": self.allocations(), "anomalies": self.anomaly_counts(),
                "ram_pages": self.ram_pages(), "memmap_pfns": self.memmap_pfns()}


def census_from_arrays(flags: np.ndarray, zones: Sequence[ZoneSpan], present: Mapping[str, int],
                       counts: np.ndarray | None = None, section_pages: int = PAGES_PER_SECTION) -> Census:
    """The census of a kpageflags dump (``flags``; ``counts`` = kpagecount, optional: a
    section reads all zero only when both do) with the zones' spans and present pages."""
    flags = check_dump_array(flags)
    if counts is not None:
        counts = check_dump_array(counts, "kpagecount")
        _check_same_length(flags, counts)
    zones = check_zone_spans(zones, int(flags.shape[0]))
    if not zones:
        raise ConfigError("no zone spans: the census needs the snapshot's zoneinfo")
    n = int(flags.shape[0])
    zone_index = zone_index_of_pfns(zones, n)
    zero = zero_section_codes(flags, counts, zones, present, section_pages)
    kind = np.empty(n, np.uint8)
    head = np.empty(n, np.int64)
    order = np.empty(n, np.int8)
    kc = np.zeros(NR_CENSUS_KINDS, np.int64)
    hist = np.zeros((NR_CENSUS_KINDS, NR_HIST), np.int64)
    thp = np.zeros((NR_CENSUS_KINDS, NR_HIST), np.int64)
    anomalies = np.zeros(len(ANOMALY_NAMES), np.int64)
    kpage_census(flags, zone_index, zero, _RULE_MASKS, _RULE_KINDS, kpf_mask(KPF.COMPOUND_HEAD),
                 kpf_mask(KPF.COMPOUND_TAIL), kpf_mask(KPF.THP), kind, head, order, kc, hist, thp, anomalies)
    blocks = rebuild_free_blocks(flags, zones)
    fill_free_blocks(blocks.pfn, blocks.order.astype(np.int64), head, order)
    hist[K_FREE, :] = 0
    bo = np.bincount(blocks.order.astype(np.int64), minlength=NR_HIST)
    hist[K_FREE, : bo.shape[0]] += bo[:NR_HIST]
    bits = np.zeros(64, np.int64)
    kpageflags_bit_counts(flags, bits)
    return Census(zones=zones, kind=kind, head=head, order=order, counts=kc, hist=hist, thp_hist=thp,
                  anomalies=anomalies, bit_counts=bits, free_blocks=blocks, present=dict(present),
                  section_pages=section_pages, flags=flags, mapcounts=counts)


def present_from_zoneinfo(zoneinfo) -> dict[str, int]:
    """``{"NODE:ZONE": present}`` of the spanning zones of /proc/zoneinfo (text or parsed)."""
    if isinstance(zoneinfo, str):
        zoneinfo = vmstat.parse_zoneinfo(zoneinfo)
    return {f"{z.node}:{z.zone}": int(z.present) for z in zoneinfo if z.spanned}


def census_from_files(kpageflags: str | os.PathLike, zoneinfo: str | os.PathLike,
                      kpagecount: str | os.PathLike | None = None) -> Census:
    """Read a kpageflags dump (raw or zstd), optional kpagecount and the zoneinfo beside them."""
    zi_text = Path(zoneinfo).read_text()
    try:
        zones = zone_spans_from_zoneinfo(zi_text)
    except FormatError as e:
        raise FormatError(f"{zoneinfo}: {e}") from None
    flags = read_kpage_dump(kpageflags)
    counts = read_kpage_dump(kpagecount) if kpagecount is not None else None
    return census_from_arrays(flags, zones, present_from_zoneinfo(zi_text), counts)


def census_kind_for(name: str) -> int:
    """Census code of a kind name (a :data:`memdesc.mm.memdesc.KINDS` name kpageflags can show)."""
    if name not in CENSUS_CODE:
        if name in KIND_BY_NAME:
            raise ConfigError(f"kind {name!r} is in the memdesc table but kpageflags cannot show it")
        raise ConfigError(f"unknown kind {name!r}")
    return CENSUS_CODE[name]
