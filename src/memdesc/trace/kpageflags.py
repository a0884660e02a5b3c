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

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import zstandard

from memdesc._numba import njit
from memdesc.errors import ConfigError, FormatError
from memdesc.mm.mmzone import PAGE_SHIFT


class KPF(IntEnum):
    """KPF_* bit numbers (include/uapi/linux/kernel-page-flags.h, include/linux/kernel-page-flags.h)."""

    LOCKED = 0
    ERROR = 1
    REFERENCED = 2
    UPTODATE = 3
    DIRTY = 4
    LRU = 5
    ACTIVE = 6
    SLAB = 7
    WRITEBACK = 8
    RECLAIM = 9
    BUDDY = 10
    MMAP = 11
    ANON = 12
    SWAPCACHE = 13
    SWAPBACKED = 14
    COMPOUND_HEAD = 15
    COMPOUND_TAIL = 16
    HUGE = 17
    UNEVICTABLE = 18
    HWPOISON = 19
    NOPAGE = 20
    KSM = 21
    THP = 22
    OFFLINE = 23
    ZERO_PAGE = 24
    IDLE = 25
    PGTABLE = 26
    # [32-] kernel hacking assistances
    RESERVED = 32
    MLOCKED = 33
    OWNER_2 = 34  # was KPF_MAPPEDTODISK before 6.10
    PRIVATE = 35
    PRIVATE_2 = 36
    OWNER_PRIVATE = 37
    ARCH = 38
    UNCACHED = 39
    SOFTDIRTY = 40
    ARCH_2 = 41
    ARCH_3 = 42


def kpf_mask(*bits: KPF) -> np.uint64:
    """The u64 mask with the given KPF bits set."""
    m = 0
    for b in bits:
        m |= 1 << int(b)
    return np.uint64(m)


#: no kernel exports a bit at or above this one; a dump value that has one is not a dump
KPAGE_VALID_BITS = 48
#: x86-64 SECTION_SIZE_BITS = 27: 128 MiB memory sections (arch/x86/include/asm/sparsemem.h)
SECTION_SIZE_BITS = 27
PAGES_PER_SECTION = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# --------------------------------------------------------------------------- reading dumps

def parse_kpage_dump(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of a kpageflags/kpagecount dump (raw or zstd) into a uint64 array.

    ``source`` names the input in error messages.  Raises :class:`FormatError` for
    empty input, a size that is not a multiple of 8, a corrupt zstd stream, or values
    that no kernel writes (bits >= 48 set: e.g. a text file).
    """
    if data[:4] == _ZSTD_MAGIC:
        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as r:
                data = r.read()
        except zstandard.ZstdError as e:
            raise FormatError(f"corrupt zstd stream: {e}", source) from None
    elif source.endswith(".zst"):
        raise FormatError("named .zst but not zstd-compressed (no zstd magic 28 b5 2f fd)", source)
    if len(data) == 0:
        raise FormatError("empty: a kpageflags/kpagecount dump has one u64 per pfn", source)
    if len(data) % 8:
        raise FormatError(f"{len(data)} bytes is not a multiple of 8: a kpageflags/kpagecount dump "
                          "is an array of little-endian u64 (truncated copy?)", source)
    arr = np.frombuffer(data, dtype="<u8")
    if arr.dtype != np.dtype(np.uint64):  # big-endian host
        arr = arr.astype(np.uint64)
    bad = np.flatnonzero(arr >> np.uint64(KPAGE_VALID_BITS))
    if bad.size:
        pfn = int(bad[0])
        head = data[:32]
        hint = " (it starts with text: not a raw dump)" if all(
            32 <= b < 127 or b in b"\t\n\r" for b in head) else ""
        raise FormatError(f"pfn {pfn} holds {int(arr[pfn]):#x}, which sets bits >= {KPAGE_VALID_BITS} "
                          f"that no kernel writes to /proc/kpageflags or /proc/kpagecount{hint}; "
                          f"{bad.size} of {arr.size} entries are like this", source)
    return arr


def read_kpage_dump(path: str | os.PathLike) -> np.ndarray:
    """Read a /proc/kpageflags or /proc/kpagecount dump (zstd-compressed or raw).

    Returns a read-only ``uint64`` array, one entry per pfn, pfn 0 first.
    """
    p = Path(path)
    return parse_kpage_dump(p.read_bytes(), str(p))


# --------------------------------------------------------------------------- zones

@dataclass(frozen=True)
class ZoneSpan:
    """A zone's pfn span ``[start_pfn, end_pfn)`` (zone_start_pfn, + spanned_pages)."""

    node: int
    name: str
    start_pfn: int
    end_pfn: int

    def __post_init__(self):
        if not (0 <= self.start_pfn <= self.end_pfn):
            raise ConfigError(f"zone {self.key}: bad span [{self.start_pfn}, {self.end_pfn})")

    @property
    def key(self) -> str:
        """``"NODE:ZONE"``, e.g. ``"0:Normal"``."""
        return f"{self.node}:{self.name}"

    @property
    def spanned(self) -> int:
        return self.end_pfn - self.start_pfn


def zone_spans_from_zoneinfo(zoneinfo) -> tuple[ZoneSpan, ...]:
    """The spans of the populated zones of /proc/zoneinfo: ``[start_pfn, start_pfn + spanned)``.

    ``zoneinfo`` is the file's text or its parsed zones (:func:`memdesc.mm.vmstat.parse_zoneinfo`:
    objects with ``node``, ``zone``, ``spanned`` and ``start_pfn``).  Zones spanning 0 pages
    (an unconfigured Movable or Device zone) are left out.
    """
    if isinstance(zoneinfo, str):
        from memdesc.mm.vmstat import parse_zoneinfo
        zoneinfo = parse_zoneinfo(zoneinfo)
    spans = []
    for z in zoneinfo:
        if z.spanned == 0:
            continue
        if z.start_pfn is None:
            raise FormatError(f"zone {z.node}:{z.zone} spans {z.spanned} pages but has no start_pfn")
        spans.append(ZoneSpan(int(z.node), str(z.zone), int(z.start_pfn), int(z.start_pfn) + int(z.spanned)))
    if not spans:
        raise FormatError("zoneinfo has no zone that spans any page")
    return tuple(spans)


def check_zone_spans(zones: Iterable[ZoneSpan], npfn: int) -> tuple[ZoneSpan, ...]:
    """Validate spans against a dump of ``npfn`` pfns; drop empty ones; sort by start_pfn."""
    out = []
    for z in zones:
        if not isinstance(z, ZoneSpan):
            raise ConfigError(f"zone spans must be ZoneSpan objects, got {z!r}")
        if z.spanned == 0:
            continue
        if z.end_pfn > npfn:
            raise ConfigError(f"zone {z.key} spans pfns [{z.start_pfn}, {z.end_pfn}) but the dump "
                              f"has only {npfn} pfns")
        out.append(z)
    out.sort(key=lambda z: z.start_pfn)
    for a, b in zip(out, out[1:], strict=False):
        if b.start_pfn < a.end_pfn:
            raise ConfigError(f"zones {a.key} [{a.start_pfn}, {a.end_pfn}) and {b.key} "
                              f"[{b.start_pfn}, {b.end_pfn}) overlap")
    if len(out) > 127:
        raise ConfigError(f"{len(out)} zones: at most 127 are supported")
    return tuple(out)


def zone_index_of_pfns(zones: Sequence[ZoneSpan], npfn: int) -> np.ndarray:
    """int8 array: index into ``zones`` of each pfn's zone, -1 outside every span."""
    zi = np.full(npfn, -1, dtype=np.int8)
    for i, z in enumerate(zones):
        zi[z.start_pfn:z.end_pfn] = i
    return zi


# --------------------------------------------------------------------------- classes

class PageClass(IntEnum):
    """Primary use of a pfn; lower value = higher precedence (see the module docstring)."""

    HOLE = 0
    UNAVAILABLE = 1
    OFFLINE = 2
    HWPOISON = 3
    FREE = 4
    ZERO_PAGE = 5
    HUGETLB = 6
    RESERVED = 7
    SLAB = 8
    PGTABLE = 9
    ANON = 10
    FILE = 11
    OTHER = 12


NR_PAGE_CLASSES = len(PageClass)
CLASS_NAMES = tuple(c.name.lower() for c in PageClass)

#: flag-only rules, in precedence order (HOLE/UNAVAILABLE come from zones and sections)
_FILE_BITS = (KPF.LRU, KPF.MMAP, KPF.UPTODATE, KPF.DIRTY, KPF.WRITEBACK, KPF.LOCKED, KPF.REFERENCED,
              KPF.ACTIVE, KPF.RECLAIM, KPF.SWAPBACKED, KPF.UNEVICTABLE, KPF.MLOCKED, KPF.OWNER_2,
              KPF.PRIVATE, KPF.PRIVATE_2)
CLASS_RULES: tuple[tuple[PageClass, np.uint64], ...] = (
    (PageClass.HOLE, kpf_mask(KPF.NOPAGE)),
    (PageClass.OFFLINE, kpf_mask(KPF.OFFLINE)),
    (PageClass.HWPOISON, kpf_mask(KPF.HWPOISON)),
    (PageClass.FREE, kpf_mask(KPF.BUDDY)),
    (PageClass.ZERO_PAGE, kpf_mask(KPF.ZERO_PAGE)),
    (PageClass.HUGETLB, kpf_mask(KPF.HUGE)),
    (PageClass.RESERVED, kpf_mask(KPF.RESERVED)),
    (PageClass.SLAB, kpf_mask(KPF.SLAB)),
    (PageClass.PGTABLE, kpf_mask(KPF.PGTABLE)),
    (PageClass.ANON, kpf_mask(KPF.ANON)),
    (PageClass.FILE, kpf_mask(*_FILE_BITS)),
)
_RULE_MASKS = np.array([m for _, m in CLASS_RULES], dtype=np.uint64)
_RULE_CLASSES = np.array([int(c) for c, _ in CLASS_RULES], dtype=np.uint8)


@njit
def stable_page_class(flags, zone_index, unavailable_section, section_shift, rule_masks, rule_classes,
                      other, hole, unavailable, out):
    """Inverse of fs/proc/page.c stable_page_flags(): each pfn's primary PageClass.

    ``unavailable_section[s]`` is true when section ``s`` reads all zero.
    """
    nrules = rule_masks.shape[0]
    for pfn in range(flags.shape[0]):
        if zone_index[pfn] < 0:
            out[pfn] = hole
            continue
        f = flags[pfn]
        if unavailable_section[pfn >> section_shift]:
            out[pfn] = unavailable
            continue
        c = other
        for r in range(nrules):
            if f & rule_masks[r]:
                c = rule_classes[r]
                break
        out[pfn] = c


@njit
def kpageflags_bit_counts(flags, out):
    """out[b] += number of pfns with bit b set (one pass; page-types -s style totals)."""
    one = np.uint64(1)
    for i in range(flags.shape[0]):
        f = flags[i]
        b = 0
        while f:
            if f & one:
                out[b] += 1
            f = f >> one
            b += 1


def unavailable_sections(flags: np.ndarray, counts: np.ndarray | None = None,
                         section_pages: int = PAGES_PER_SECTION) -> np.ndarray:
    """bool per memory section: every flags word (and count, if given) in it is 0."""
    if section_pages <= 0 or section_pages & (section_pages - 1):
        raise ConfigError(f"section_pages must be a power of two, got {section_pages}")
    nz = flags != 0
    if counts is not None:
        nz |= counts != 0
    starts = np.arange(0, flags.shape[0], section_pages)
    if starts.size == 0:
        return np.zeros(0, dtype=bool)
    return ~np.logical_or.reduceat(nz, starts)


def check_dump_array(a, what: str = "kpageflags") -> np.ndarray:
    """``a`` as a 1-d uint64 array, or :class:`ConfigError` naming what is wrong."""
    a = np.asarray(a)
    if a.dtype != np.uint64 or a.ndim != 1:
        raise ConfigError(f"{what} must be a 1-d uint64 array (one u64 per pfn), got {a.dtype} {a.shape}")
    return a


def classify_pages(flags: np.ndarray, zone_index: np.ndarray, counts: np.ndarray | None = None,
                   section_pages: int = PAGES_PER_SECTION) -> np.ndarray:
    """uint8 :class:`PageClass` of every pfn (see the precedence table in the module docstring).

    ``zone_index``: int8 per pfn from :func:`zone_index_of_pfns` (-1 outside the zones)."""
    flags = check_dump_array(flags)
    if counts is not None:
        counts = check_dump_array(counts, "kpagecount")
        _check_same_length(flags, counts)
    zone_index = np.asarray(zone_index)
    if zone_index.shape != flags.shape or zone_index.dtype != np.int8:
        raise ConfigError(f"zone_index must be int8 with one entry per pfn ({flags.shape[0]}), got "
                          f"{zone_index.dtype} {zone_index.shape}")
    unavail = unavailable_sections(flags, counts, section_pages)
    out = np.empty(flags.shape[0], dtype=np.uint8)
    stable_page_class(flags, zone_index, unavail, int(section_pages).bit_length() - 1, _RULE_MASKS,
                      _RULE_CLASSES, np.uint8(PageClass.OTHER), np.uint8(PageClass.HOLE),
                      np.uint8(PageClass.UNAVAILABLE), out)
    return out


def _check_same_length(flags: np.ndarray, counts: np.ndarray | None) -> None:
    if counts is not None and counts.shape != flags.shape:
        raise ConfigError(f"kpagecount dump has {counts.shape[0]} pfns but kpageflags has "
                          f"{flags.shape[0]}: not the same snapshot")


#: attributes reported by KPageSnapshot.attributes(): name -> (bits that must all be set)
ATTRIBUTES: dict[str, tuple[KPF, ...]] = {
    "compound_head": (KPF.COMPOUND_HEAD,),
    "compound_tail": (KPF.COMPOUND_TAIL,),
    "thp": (KPF.THP,),
    "thp_head": (KPF.THP, KPF.COMPOUND_HEAD),
    "ksm": (KPF.KSM,),
    "lru": (KPF.LRU,),
    "active": (KPF.ACTIVE,),
    "mmap": (KPF.MMAP,),
    "mlocked": (KPF.MLOCKED,),
    "unevictable": (KPF.UNEVICTABLE,),
    "dirty": (KPF.DIRTY,),
    "writeback": (KPF.WRITEBACK,),
    "swapbacked": (KPF.SWAPBACKED,),
    "swapcache": (KPF.SWAPCACHE,),
    "idle": (KPF.IDLE,),
}


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
            from memdesc.trace.kpagebuddy import rebuild_free_blocks
            self._blocks = rebuild_free_blocks(self.flags, self.zones)
        return self._blocks

    def buddyinfo_rebuilt(self) -> dict[str, list[int]]:
        """/proc/buddyinfo rebuilt from the buddy blocks: ``{"NODE:ZONE": [11 counts]}``."""
        return self.free_blocks().buddyinfo()

    def pageblock_migratetypes(self, block_counts: Mapping[str, Mapping[str, int]]):
        """Infer each pageblock's migratetype from its contents and pagetypeinfo's per-zone
        block counts (see :func:`memdesc.trace.kpageblock.infer_pageblock_migratetypes`)."""
        from memdesc.trace.kpageblock import infer_pageblock_migratetypes
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

