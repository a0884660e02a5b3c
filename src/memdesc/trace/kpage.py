"""/proc/kpageflags and /proc/kpagecount: the dump format, the KPF bits, zone spans and page classes.

The base layer of :mod:`memdesc.trace.kpageflags` (whose module documentation explains the
data): :mod:`~memdesc.trace.kpagebuddy` and :mod:`~memdesc.trace.kpageblock` build on these
names, and :class:`~memdesc.trace.kpageflags.KPageSnapshot` on all three.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import zstandard

from memdesc._numba import njit
from memdesc.errors import ConfigError, FormatError
from memdesc.mm.mmzone import PAGE_SHIFT
from memdesc.mm.vmstat import parse_zoneinfo


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
