"""Real machines' struct pages, read back from /proc/kpageflags and /proc/kpagecount dumps.

Theory
------
``/proc/kpageflags`` and ``/proc/kpagecount`` (fs/proc/page.c) are arrays of one
little-endian u64 per pfn, pfn 0 first, up to ``round_up(max_pfn, PAGES_PER_SECTION)``.
kpageflags holds ``stable_page_flags(page)``: the KPF_* bits of
include/uapi/linux/kernel-page-flags.h (0..26) and the "kernel hacking" bits of
include/linux/kernel-page-flags.h (32..42).  kpagecount holds the page's mapcount
(``folio_precise_page_mapcount()``, or the folio average without CONFIG_PAGE_MAPCOUNT).

What the bits say, in Linux 6.18 (read from fs/proc/page.c and mm/util.c set_ps_flags()):

* folio-level flags (SLAB, ANON, LRU, THP, HUGE, PGTABLE ...) are read from the folio
  snapshot, so every tail page of a slab, a THP or a hugetlb folio carries its head's
  flags plus KPF_COMPOUND_TAIL.  Only the head has KPF_COMPOUND_HEAD.
* KPF_BUDDY is set on *every* page of a free buddy block: on the first page because it
  is ``PageBuddy``, on the others because ``page_count(page) == 0 &&
  is_free_buddy_page(page)``.  Pages on the per-cpu (pcp) lists are not in a buddy
  block and read as allocated pages with no flags -- exactly as NR_FREE_PAGES and
  /proc/buddyinfo, which do not count pcp pages either.
* ``kpage_read()`` writes **0** (not KPF_NOPAGE) for a pfn whose section is not online
  (``pfn_to_online_page() == NULL``); KPF_NOPAGE comes only from older kernels.  Pages of
  an online section whose struct page was never initialised (CONFIG_DEFERRED_STRUCT_PAGE_INIT
  sections not yet grown into) also read 0 flags and 0 count.  Sub-section holes inside
  an online section are initialised PG_reserved (``init_unavailable_range()``).
  We therefore call a whole memory section (PAGES_PER_SECTION pfns) whose every flags
  word and count is 0 *unavailable*: no allocator can hand out 128 MiB of pages
  without setting a single flag (memblock allocations are PG_reserved).

Ontology
--------
Every pfn gets exactly one primary :class:`PageClass`; the first rule that matches
wins, in this precedence order (lower value first):

=============  ====================================================================
hole           outside every zone span, or KPF_NOPAGE
unavailable    in an all-zero memory section (section offline or memmap not initialised)
offline        KPF_OFFLINE (PageOffline: ballooned, virtio-mem/hv unplugged pages)
hwpoison       KPF_HWPOISON
free           KPF_BUDDY (in a free buddy block)
zero_page      KPF_ZERO_PAGE (the shared zero page, and the huge zero folio)
hugetlb        KPF_HUGE (hugetlbfs folio, allocated or in the hugetlb pool)
reserved       KPF_RESERVED (memblock/kernel image/firmware pages, sub-section holes)
slab           KPF_SLAB (slab folio; the ANON/KSM bits slab pages sometimes show are
               slab fields overlaying ``folio->mapping``, so slab outranks anon)
pgtable        KPF_PGTABLE (page-table pages: PageTable page type)
anon           KPF_ANON (anonymous folio, incl. KSM and swap cache)
file           not anon, with any page-cache/LRU state bit: LRU, MMAP, UPTODATE, DIRTY,
               WRITEBACK, LOCKED, REFERENCED, ACTIVE, RECLAIM, SWAPBACKED (shmem),
               UNEVICTABLE, MLOCKED, OWNER_2 (mappedtodisk), PRIVATE, PRIVATE_2
other          anything else: allocated kernel memory with no further flags (vmalloc,
               kernel stacks, large kmalloc, page_pool, percpu, drivers) and pages
               sitting on pcp lists
=============  ====================================================================

Orthogonal attributes (compound head/tail, THP, KSM, mlock ...) are counted separately
(:meth:`KPageSnapshot.attributes`).  An *allocation* is a non-tail page, so a 512-page
THP or an order-3 slab counts once; for ``free`` the allocation count is the number of
rebuilt buddy blocks.  Higher-order allocations made without __GFP_COMP are not visible
as such in kpageflags and count one per page.

Caveats: ``file`` also takes non-anon driver pages mapped into user space (MMAP set);
a free page on a pcp list is ``other``; the dumps are not atomic (reading 24 GiB of
kpageflags takes about a second, and kpagecount is read after it), so a page can be free
in one and mapped in the other.

What the Linux 6.18 captures (24 GiB, zones DMA/DMA32/Normal) show: DMA32's 262144
unavailable pfns are the 3-4 GiB PCI hole (spanned - present); Normal's are exactly
present - managed (4063232 pfns = 124 sections, later 117): sections whose struct pages
are not initialised yet.  Between captures they are initialised in whole sections in
ascending pfn order (76..82), the signature of deferred struct-page init
(``deferred_grow_zone``); they are not hugetlb (no KPF_HUGE, HugePages_Total 0), not
reserved (no KPF_RESERVED) and not ballooned (no KPF_OFFLINE).  Per zone, KPF_RESERVED
pages == spanned - managed - unavailable exactly.

The free state (buddy blocks, /proc/buddyinfo) is rebuilt in
:mod:`memdesc.trace.kpagebuddy`; pageblock migratetypes are inferred in
:mod:`memdesc.trace.kpageblock`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from memdesc.errors import ConfigError
from memdesc.mm.mmzone import PAGE_SHIFT
from memdesc.trace.kpage import (  # noqa: F401  (re-exported: the public names of this module)
    _FILE_BITS,
    _RULE_CLASSES,
    _RULE_MASKS,
    _ZSTD_MAGIC,
    ATTRIBUTES,
    CLASS_NAMES,
    CLASS_RULES,
    KPAGE_VALID_BITS,
    KPF,
    NR_PAGE_CLASSES,
    PAGES_PER_SECTION,
    SECTION_SIZE_BITS,
    PageClass,
    ZoneSpan,
    _check_same_length,
    check_dump_array,
    check_zone_spans,
    classify_pages,
    kpageflags_bit_counts,
    kpf_mask,
    parse_kpage_dump,
    read_kpage_dump,
    stable_page_class,
    unavailable_sections,
    zone_index_of_pfns,
    zone_spans_from_zoneinfo,
)
from memdesc.trace.kpageblock import infer_pageblock_migratetypes
from memdesc.trace.kpagebuddy import rebuild_free_blocks


class KPageSnapshot:
    """One kpageflags (+ optional kpagecount) snapshot with its zone spans.

    A thin facade: the per-pfn arrays live in numpy; classes, buddy blocks and
    statistics are computed on first use and cached.
    """

    def __init__(self, flags: np.ndarray, counts: np.ndarray | None = None,
                 zones: Iterable[ZoneSpan] = (), *, section_pages: int = PAGES_PER_SECTION):
        flags = check_dump_array(flags)
        if counts is not None:
            counts = check_dump_array(counts, "kpagecount")
        _check_same_length(flags, counts)
        self.flags = flags
        self.counts = counts
        self.zones = check_zone_spans(zones, flags.shape[0])
        if not self.zones:
            raise ConfigError("no zone spans given: pass the zones of the snapshot's zoneinfo")
        self.section_pages = section_pages
        self._zone_index: np.ndarray | None = None
        self._classes: np.ndarray | None = None
        self._blocks = None
        self._bits: np.ndarray | None = None

    @classmethod
    def from_files(cls, kpageflags: str | os.PathLike, kpagecount: str | os.PathLike | None = None,
                   zones: Iterable[ZoneSpan] = (), **kw) -> KPageSnapshot:
        flags = read_kpage_dump(kpageflags)
        counts = read_kpage_dump(kpagecount) if kpagecount is not None else None
        return cls(flags, counts, zones, **kw)

    @classmethod
    def from_capture(cls, directory: str | os.PathLike, state: str = "before", **kw) -> KPageSnapshot:
        """``{state}.kpageflags[.zst]``, ``{state}.kpagecount[.zst]`` (optional) and
        ``{state}.zoneinfo`` of a capture directory (the layout of the shared traces)."""
        d = Path(directory)

        def find(name: str, required: bool) -> Path | None:
            for p in (d / f"{state}.{name}.zst", d / f"{state}.{name}"):
                if p.is_file():
                    return p
            if required:
                raise FileNotFoundError(f"{d}: no {state}.{name}[.zst]")
            return None

        flags = find("kpageflags", True)
        zoneinfo = d / f"{state}.zoneinfo"
        if not zoneinfo.is_file():
            raise FileNotFoundError(f"{d}: no {state}.zoneinfo (needed for the zone spans)")
        zones = zone_spans_from_zoneinfo(zoneinfo.read_text())
        return cls.from_files(flags, find("kpagecount", False), zones, **kw)

    # ------------------------------------------------------------------ arrays
    @property
    def npfn(self) -> int:
        return int(self.flags.shape[0])

    @property
    def zone_index(self) -> np.ndarray:
        if self._zone_index is None:
            self._zone_index = zone_index_of_pfns(self.zones, self.npfn)
        return self._zone_index

    @property
    def page_class(self) -> np.ndarray:
        """uint8 PageClass per pfn."""
        if self._classes is None:
            self._classes = classify_pages(self.flags, self.zone_index, self.counts, self.section_pages)
        return self._classes

    def has(self, *bits: KPF) -> np.ndarray:
        """bool per pfn: all the given KPF bits are set."""
        m = kpf_mask(*bits)
        return (self.flags & m) == m

    # ------------------------------------------------------------------ statistics
    def classes(self) -> dict[str, int]:
        """Pages per primary class (every class listed, in precedence order)."""
        n = np.bincount(self.page_class, minlength=NR_PAGE_CLASSES)
        return {name: int(n[i]) for i, name in enumerate(CLASS_NAMES)}

    def classes_by_zone(self) -> dict[str, dict[str, int]]:
        """Pages per class in each zone (``"NODE:ZONE"``) and ``"outside"`` every zone."""
        key = (self.zone_index.astype(np.int64) + 1) * NR_PAGE_CLASSES + self.page_class
        n = np.bincount(key, minlength=(len(self.zones) + 1) * NR_PAGE_CLASSES)
        n = n.reshape(len(self.zones) + 1, NR_PAGE_CLASSES)
        names = ["outside"] + [z.key for z in self.zones]
        return {nm: {c: int(n[i, j]) for j, c in enumerate(CLASS_NAMES)} for i, nm in enumerate(names)}

    def allocations(self) -> dict[str, int]:
        """Allocations per class: non-tail pages (a THP counts once); ``free``: buddy blocks;
        ``hole``/``unavailable``: 0 (nothing is allocated there)."""
        head = (self.flags & kpf_mask(KPF.COMPOUND_TAIL)) == 0
        n = np.bincount(self.page_class[head], minlength=NR_PAGE_CLASSES)
        out = {name: int(n[i]) for i, name in enumerate(CLASS_NAMES)}
        out["free"] = int(self.free_blocks().pfn.shape[0])
        out["hole"] = out["unavailable"] = 0
        return out

    def bit_counts(self) -> np.ndarray:
        """int64[64]: pfns with each bit of the flags word set."""
        if self._bits is None:
            self._bits = np.zeros(64, dtype=np.int64)
            kpageflags_bit_counts(self.flags, self._bits)
        return self._bits

    def attributes(self) -> dict[str, int]:
        """Pages with each orthogonal attribute (compound head/tail, THP, KSM, mlock, ...)."""
        bits = self.bit_counts()
        out = {}
        for name, need in ATTRIBUTES.items():
            out[name] = int(bits[need[0]]) if len(need) == 1 else int(np.count_nonzero(self.has(*need)))
        thp = self.has(KPF.THP)
        out["thp_anon"] = int(np.count_nonzero(thp & (self.page_class == PageClass.ANON)))
        out["thp_file"] = int(np.count_nonzero(thp & (self.page_class == PageClass.FILE)))
        return out

    def flag_counts(self) -> dict[str, int]:
        """Pages with each KPF bit set."""
        bits = self.bit_counts()
        return {b.name: int(bits[b]) for b in KPF}

    def mapped_stats(self) -> dict[str, dict[str, int]]:
        """kpagecount joined with the classes: per class (and ``"total"``) the pages mapped 0,
        1 and 2+ times and the total number of mappings (sum of mapcounts)."""
        if self.counts is None:
            raise ConfigError("no kpagecount dump in this snapshot: mapped_stats() needs one")
        c = self.counts
        cls = self.page_class
        unmapped = np.bincount(cls[c == 0], minlength=NR_PAGE_CLASSES)
        once = np.bincount(cls[c == 1], minlength=NR_PAGE_CLASSES)
        multi = np.bincount(cls[c >= 2], minlength=NR_PAGE_CLASSES)
        # float64 sums are exact below 2^53 mappings
        maps = np.bincount(cls, weights=c, minlength=NR_PAGE_CLASSES)
        out = {}
        for i, name in enumerate(CLASS_NAMES):
            out[name] = {"unmapped": int(unmapped[i]), "mapped_once": int(once[i]),
                         "mapped_multi": int(multi[i]), "mappings": int(maps[i])}
        out["total"] = {k: sum(v[k] for v in out.values()) for k in
                        ("unmapped", "mapped_once", "mapped_multi", "mappings")}
        return out

    # ------------------------------------------------------------------ free state
    def free_blocks(self):
        """The rebuilt buddy blocks (:class:`memdesc.trace.kpagebuddy.FreeBlocks`)."""
        if self._blocks is None:
            self._blocks = rebuild_free_blocks(self.flags, self.zones)
        return self._blocks

    def buddyinfo_rebuilt(self) -> dict[str, list[int]]:
        """/proc/buddyinfo rebuilt from the buddy blocks: ``{"NODE:ZONE": [11 counts]}``."""
        return self.free_blocks().buddyinfo()

    def pageblock_migratetypes(self, block_counts: Mapping[str, Mapping[str, int]]):
        """Infer each pageblock's migratetype from its contents and pagetypeinfo's per-zone
        block counts (see :func:`memdesc.trace.kpageblock.infer_pageblock_migratetypes`)."""
        return infer_pageblock_migratetypes(self.page_class, self.zones, block_counts)

    def summary(self) -> dict:
        """Everything above as plain ints/lists/dicts (json-serialisable)."""
        blocks = self.free_blocks()
        out = {
            "pfns": self.npfn,
            "bytes_per_page": 1 << PAGE_SHIFT,
            "zones": [{"key": z.key, "start_pfn": z.start_pfn, "end_pfn": z.end_pfn} for z in self.zones],
            "classes": self.classes(),
            "classes_by_zone": self.classes_by_zone(),
            "allocations": self.allocations(),
            "attributes": self.attributes(),
            "free_pages_rebuilt": blocks.free_pages(),
            "free_blocks": int(blocks.pfn.shape[0]),
            "buddyinfo_rebuilt": blocks.buddyinfo(),
        }
        if self.counts is not None:
            out["mapped"] = self.mapped_stats()
        return out

