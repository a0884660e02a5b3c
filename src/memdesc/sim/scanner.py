"""Physical-memory scanners on each design: distinct cache lines touched per pfn, from a real snapshot.

Theory
------
The cost raised against memdescs in 2022 ("especially painful for physical memory
scanning") and never measured: a pfn scanner that reads a 64-byte struct page today reads
a 32/16/8-byte one after the split, plus the descriptor the page points to.  This module
counts, exactly for a real machine's per-pfn kinds and orders (:mod:`memdesc.trace.kpagetype`),
the distinct 64-byte cache lines each scanner touches, divided by the pfns it covers.  A
line is counted once per scan (a sequential scan touches a struct-page line for its
neighbours too; a large folio's pages share one descriptor, a slab's pages one struct slab).

Scanners (the fields each reads, from Linux 6.18):

* ``compaction`` -- the migrate scanner of a full compaction pass
  (``isolate_migratepages_block()``, cc->order = -1, pageblock by pageblock): per pfn
  ``PageHuge`` (page_folio + page type), ``PageBuddy`` (page type; the order in
  ``page->private`` skips the free block), ``PageCompound``/``compound_order`` (order >=
  pageblock_order skips the folio), ``PageLRU`` (head flags), for non-LRU pages
  ``page_has_movable_ops`` (page flags), for LRU folios the isolation checks:
  ``folio_get_nontail_page`` (refcount), ``folio_mapping``, the pin test
  ``refcount - 1 > mapcount`` (a large folio's ``_large_mapcount`` in page[1]), flags; an
  isolated large folio is skipped whole.  The isolation itself (LRU unlinking), the
  pageblock skip bits and the free scanner are not counted: they are the same in every
  design.
* ``kpageflags`` -- a read of /proc/kpageflags: ``snapshot_page()`` copies the struct
  page and, for a large folio, its first two or three struct pages; ``set_ps_flags()``
  finds a free page's buddy head (``is_free_buddy_page``).  With separate descriptors the
  snapshot copies the whole descriptor.
* ``page_idle`` -- a read of /sys/kernel/mm/page_idle/bitmap: ``page_idle_get_folio()``
  (page_folio, LRU flag, ``folio_try_get``) then ``folio_test_idle``.  The rmap walk for
  idle folios is not counted.

How each design answers (the control flow is the kernel's in every design; only where the
answers are stored differs):

==========  ============================================================================
linux       everything in 64-byte struct pages: the page's own, its head's (compound_info),
            page[1] of a large folio (order, _large_mapcount), page[2]
linux:32    32-byte struct page: flags + memdesc (+ buddy order in flags); folio, slab and
            ptdesc fields one pointer away; a non-folio type is known from the memdesc
            without a dereference
radix       16-byte struct page: word 0 says free/allocated/tail and the order; word 1 is
            the (tagged) descriptor pointer, or for a tail the head pfn (one more struct
            page read)
vmem        8-byte memdesc; a free segment's extent is in its 32-byte struct buddy (one
            line per free extent the scanner skips)
llfree      8-byte memdesc (free pages hold type free); LLFree keeps no free blocks, the end
            of a free run is found in the pageblock's 512-bit bitfield (one line per 512 pfns)
==========  ============================================================================

Descriptors are objects of 16-byte aligned slab caches; the lines a read of some fields
costs is averaged over the object's position in its slab
(:func:`memdesc.mm.memdesc.lines_touched`).  Free extents are the snapshot's rebuilt buddy
blocks in every design.  The pfns covered are the zones' pfns that have RAM with an
initialised struct page (not misc:hole, not misc:uninit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm import memdesc as md
from memdesc.mm.mmzone import PAGEBLOCK_ORDER
from memdesc.trace.kpage import KPF, kpf_mask
from memdesc.trace.kpagetype import (
    CENSUS_KINDS,
    K_ANON,
    K_FILE,
    K_FREE,
    K_HOLE,
    K_HUGETLB,
    K_KSM,
    K_UNINIT,
    NR_CENSUS_KINDS,
    Census,
)

SCANNERS: tuple[str, ...] = ("compaction", "kpageflags", "page_idle")
S_COMPACTION, S_KPAGEFLAGS, S_PAGE_IDLE = 0, 1, 2

FM_PAGE, FM_VMEM, FM_LLFREE = 0, 1, 2  # where a free block's extent is read
TM_COMPOUND, TM_MEMDESC, TM_HEADPFN = 0, 1, 2  # how a tail page finds its folio

#: per design: (struct page bytes, separate descriptors, free mode, tail mode)
DESIGN_PARAMS: dict[str, tuple[int, int, int, int]] = {
    "linux": (64, 0, FM_PAGE, TM_COMPOUND),
    "linux:32": (32, 1, FM_PAGE, TM_MEMDESC),
    "radix": (16, 1, FM_PAGE, TM_HEADPFN),
    "vmem": (8, 1, FM_VMEM, TM_MEMDESC),
    "llfree": (8, 1, FM_LLFREE, TM_MEMDESC),
}
#: the vmem struct buddy fields a scanner reads to skip a free extent
BUDDY_FIELDS = ("start", "size")
#: LLFree: one 64-byte bitfield (512 bits) per 2 MiB (llfree-c src/bitfield.h): pfn >> 9 is its line
LLFREE_FIELD_SHIFT = 9

# descriptor field sets: [variant] -> fields; V_ISOLATE: an LRU folio isolated by compaction,
# V_TEST: a folio compaction only tests (not on the LRU, hugetlb, order >= pageblock_order),
# V_ALL: the whole descriptor (kpageflags' snapshot), V_IDLE_LRU / V_IDLE: page_idle
V_ISOLATE, V_TEST, V_ALL, V_IDLE_LRU, V_IDLE = range(5)
NR_VARIANTS = 5
_FOLIO_KINDS = (K_FILE, K_ANON, K_KSM, K_HUGETLB)


def _fields(variant: int, large: bool) -> tuple[str, ...] | None:
    if variant == V_ISOLATE:
        return ("flags", "order", "pfn", "_refcount", "mapping", "_large_mapcount" if large else "_mapcount")
    if variant == V_TEST:
        return ("flags", "order", "pfn")
    if variant == V_IDLE_LRU:
        return ("flags", "_refcount")
    if variant == V_IDLE:
        return ("flags",)
    return None  # V_ALL


def descriptor_line_table() -> np.ndarray:
    """float64 [census kind, large (0/1), variant]: expected cache lines of one descriptor read.

    Only folio kinds are read with the folio variants; slab and page-table descriptors only
    by kpageflags (V_ALL); kinds without a separate descriptor cost 0."""
    out = np.zeros((NR_CENSUS_KINDS, 2, NR_VARIANTS), np.float64)
    for code, name in enumerate(CENSUS_KINDS):
        k = md.KIND_BY_NAME[name]
        for large in (0, 1):
            d = k.descriptor(large)
            if d is None or d.cache is None:
                continue
            for v in range(NR_VARIANTS):
                if v != V_ALL and code not in _FOLIO_KINDS:
                    continue
                names = _fields(v, bool(large))
                offs = tuple((o, s) for _, o, s in d.fields) if names is None else tuple(d.offset(n) for n in names)
                out[code, large, v] = md.lines_touched(offs, d.bytes)
    return out


def buddy_extent_lines() -> float:
    return md.lines_touched(tuple(md.BUDDY.offset(n) for n in BUDDY_FIELDS), md.BUDDY.bytes)


@njit
def _touch_line(mark, line):
    if not mark[line]:
        mark[line] = True
        return 1
    return 0


@njit
def _is_folio(k):
    return k == K_FILE or k == K_ANON or k == K_KSM or k == K_HUGETLB


@njit
def _touch_desc(dmark, h, k, o, variant, etab):
    if dmark[h]:
        return 0.0
    dmark[h] = True
    return etab[k, 1 if o > 0 else 0, variant]


@njit
def scan_lines(scanner, sp, sep, free_mode, tail_mode, kind, head, order, lru, zone_lo, zone_hi, etab,
               buddy_lines, out):
    """Walk every zone as ``scanner`` does on a design; out = [memmap lines, descriptor lines,
    aux lines (struct buddy / LLFree bitfield), visited pfns, covered pfns]."""
    n = kind.shape[0]
    mark = np.zeros((n * sp + 63) // 64 + 1, np.bool_)
    dmark = np.zeros(n, np.bool_)
    amark = np.zeros(n, np.bool_)  # vmem: struct buddy of the block at pfn; llfree: bitfield line index
    mem = 0
    desc = 0.0
    aux = 0.0
    visits = 0
    covered = 0
    for z in range(zone_lo.shape[0]):
        lo = zone_lo[z]
        hi = zone_hi[z]
        for p in range(lo, hi):
            if kind[p] != K_HOLE and kind[p] != K_UNINIT:
                covered += 1
        if scanner != S_COMPACTION:
            for p in range(lo, hi):
                k = kind[p]
                if k == K_HOLE or k == K_UNINIT:
                    continue
                visits += 1
                mem += _touch_line(mark, (p * sp) >> 6)
                h = head[p]
                o = order[p]
                if k == K_FREE:
                    if p != h and (free_mode == FM_PAGE):
                        # is_free_buddy_page(): the head's struct page holds PageBuddy and the order
                        mem += _touch_line(mark, (h * sp) >> 6)
                    continue
                if sep == 0:
                    if p != h:
                        mem += _touch_line(mark, (h * sp) >> 6)
                    if scanner == S_KPAGEFLAGS and o > 0:
                        mem += _touch_line(mark, ((h + 1) * sp) >> 6)
                        if o > 1:
                            mem += _touch_line(mark, ((h + 2) * sp) >> 6)
                    continue
                if tail_mode == TM_HEADPFN and p != h:
                    mem += _touch_line(mark, (h * sp) >> 6)
                if scanner == S_KPAGEFLAGS:
                    desc += _touch_desc(dmark, h, k, o, V_ALL, etab)
                elif _is_folio(k):
                    desc += _touch_desc(dmark, h, k, o, V_IDLE_LRU if lru[h] else V_IDLE, etab)
            continue
        # compaction: pageblock by pageblock from the zone start
        b = lo
        while b < hi:
            end = min(((b >> PAGEBLOCK_ORDER) + 1) << PAGEBLOCK_ORDER, hi)
            p = b
            while p < end:
                k = kind[p]
                if k == K_HOLE or k == K_UNINIT:
                    p += 1
                    continue
                visits += 1
                mem += _touch_line(mark, (p * sp) >> 6)
                h = head[p]
                o = order[p]
                if k == K_FREE:
                    if free_mode == FM_LLFREE:
                        # the memdesc says free; the free run's end is in the pageblock's bitfield row
                        aux += _touch_line(amark, p >> LLFREE_FIELD_SHIFT)
                        while p < end and kind[p] == K_FREE:
                            p += 1
                        continue
                    if p == h:
                        if free_mode == FM_VMEM:
                            if not amark[h]:
                                amark[h] = True
                                aux += buddy_lines
                        p = h + (1 << o)
                        continue
                    p += 1  # not the block's first page: PageBuddy is false, nothing to skip
                    continue
                folio = _is_folio(k)
                if sep == 0:
                    if p != h:
                        mem += _touch_line(mark, (h * sp) >> 6)
                    elif o > 0:
                        mem += _touch_line(mark, ((h + 1) * sp) >> 6)  # compound_order: page[1]
                elif tail_mode == TM_HEADPFN and p != h:
                    mem += _touch_line(mark, (h * sp) >> 6)
                if k == K_HUGETLB:
                    if sep:
                        desc += _touch_desc(dmark, h, k, o, V_TEST, etab)
                    p = h + (1 << o)
                    continue
                if p == h and o >= PAGEBLOCK_ORDER and (sep == 0 or folio):
                    if sep:
                        desc += _touch_desc(dmark, h, k, o, V_TEST, etab)
                    p = h + (1 << o)
                    continue
                if folio and lru[h] and p == h:
                    if sep:
                        desc += _touch_desc(dmark, h, k, o, V_ISOLATE, etab)
                    p = h + (1 << o)
                    continue
                if folio and sep:
                    desc += _touch_desc(dmark, h, k, o, V_TEST, etab)
                p += 1
            b = end
    out[0] = mem
    out[1] = desc
    out[2] = aux
    out[3] = visits
    out[4] = covered


@dataclass(frozen=True)
class ScanResult:
    design: str
    scanner: str
    memmap_lines: int
    descriptor_lines: float
    aux_lines: float
    visited_pfns: int
    covered_pfns: int

    @property
    def lines(self) -> float:
        return self.memmap_lines + self.descriptor_lines + self.aux_lines

    @property
    def lines_per_pfn(self) -> float:
        return self.lines / self.covered_pfns if self.covered_pfns else 0.0

    def as_dict(self) -> dict:
        return {"cache_lines_per_pfn": self.lines_per_pfn, "memmap_lines": self.memmap_lines,
                "descriptor_lines": self.descriptor_lines, "aux_lines": self.aux_lines,
                "visited_pfns": self.visited_pfns, "covered_pfns": self.covered_pfns}


def lru_heads(census: Census) -> np.ndarray:
    """bool per pfn: KPF_LRU (read at the head pfn of each folio)."""
    if census.flags is None:
        raise ConfigError("the census has no flags array (needed for the LRU bit)")
    return (census.flags & kpf_mask(KPF.LRU)) != 0


def scan_cost(census: Census, design: str, scanner: str, *, lru: np.ndarray | None = None,
              etab: np.ndarray | None = None) -> ScanResult:
    """Cache lines one scanner touches on one design over the census' machine."""
    if design not in DESIGN_PARAMS:
        raise ConfigError(f"no scanner model for design {design!r}; known: {', '.join(DESIGN_PARAMS)}")
    if scanner not in SCANNERS:
        raise ConfigError(f"unknown scanner {scanner!r}; known: {', '.join(SCANNERS)}")
    sp, sep, fm, tm = DESIGN_PARAMS[design]
    if lru is None:
        lru = lru_heads(census)
    if etab is None:
        etab = descriptor_line_table()
    lo = np.array([z.start_pfn for z in census.zones], np.int64)
    hi = np.array([z.end_pfn for z in census.zones], np.int64)
    out = np.zeros(5, np.float64)
    scan_lines(SCANNERS.index(scanner), sp, sep, fm, tm, census.kind, census.head, census.order.astype(np.int64),
               lru, lo, hi, etab, buddy_extent_lines(), out)
    return ScanResult(design, scanner, int(out[0]), float(out[1]), float(out[2]), int(out[3]), int(out[4]))


def scanner_table(census: Census, designs=tuple(DESIGN_PARAMS)) -> dict[str, dict[str, ScanResult]]:
    """``{design: {scanner: ScanResult}}`` for every design and scanner."""
    lru = lru_heads(census)
    etab = descriptor_line_table()
    return {d: {s: scan_cost(census, d, s, lru=lru, etab=etab) for s in SCANNERS} for d in designs}

