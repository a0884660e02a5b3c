"""Rebuilding the buddy allocator's free blocks and /proc/buddyinfo from a kpageflags dump.

Theory
------
A free buddy block of order k is 2^k pfns, aligned to 2^k pfns, inside one zone; since
Linux 4.x every one of its pages reads KPF_BUDDY (the first is ``PageBuddy``, the others
pass ``is_free_buddy_page()``).  kpageflags does not say where one free block ends and
the next begins, but the buddy allocator all but forces the answer: ``__free_one_page()``
merges a freed block with its buddy (``pfn ^ (1 << order)``) whenever the buddy is a
free block of the same order in the same zone (``page_is_buddy()`` compares zones), so
in a settled zone no two free buddies of equal order sit side by side.  The free pfns
of a zone then form maximal runs, and each run ``[p, e)`` is the unique decomposition
into maximally merged aligned blocks: at pfn p take

    order = min(ctz(p), floor(log2(e - p)), MAX_PAGE_ORDER)

and continue at ``p + 2^order``.  This is the loop of mm/memblock.c
``__free_pages_memory()``, which hands boot memory to the buddy allocator in the same
blocks (:mod:`memdesc.mm.memblock`, the one copy of that split).

Invariants of the result: blocks are disjoint, aligned to their order, never cross a
zone boundary, and cover exactly the KPF_BUDDY pfns inside the zone spans.

Where the real free lists can differ: the kpageflags read is not atomic (about a second
for 24 GiB, while the system allocates and frees); buddies of order >= pageblock_order
do not merge when one pageblock is of an unmergeable migratetype (HighAtomic, CMA,
Isolate); and a block being split or merged at the instant of the read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from memdesc.errors import ConfigError, InvalidOrder, InvariantViolation
from memdesc.mm.memblock import free_pages_memory
from memdesc.mm.mmzone import MAX_PAGE_ORDER, NR_PAGE_ORDERS
from memdesc.trace.kpage import KPF, ZoneSpan, check_dump_array, check_zone_spans, kpf_mask


def decompose_runs(starts: np.ndarray, ends: np.ndarray, zones: np.ndarray | None = None,
                   max_order: int = MAX_PAGE_ORDER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split runs ``[starts[i], ends[i])`` into maximally merged aligned buddy blocks.

    Returns ``(pfn int64, order int8, zone int16)`` arrays in pfn order within each run.
    """
    if not 0 <= max_order <= 62:
        raise InvalidOrder(f"max_order must be in 0..62, got {max_order}")
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    ends = np.ascontiguousarray(ends, dtype=np.int64)
    if starts.shape != ends.shape or starts.ndim != 1:
        raise ConfigError(f"starts {starts.shape} and ends {ends.shape} must be 1-d and of equal length")
    if zones is None:
        zones = np.zeros(starts.shape[0], dtype=np.int16)
    zones = np.ascontiguousarray(zones, dtype=np.int16)
    if zones.shape != starts.shape:
        raise ConfigError(f"zones {zones.shape} must match starts {starts.shape}")
    if starts.size and (starts.min() < 0 or (ends < starts).any()):
        raise ConfigError("runs must have 0 <= start <= end")
    lengths = ends - starts
    # a run of L pages needs at most 2*log2(L)+2 blocks; bound by pages and by that
    cap = int(np.minimum(lengths, 2 * (np.log2(np.maximum(lengths, 1)).astype(np.int64) + 1)
                         + lengths // (1 << max_order)).sum())
    out_pfn = np.empty(cap, dtype=np.int64)
    out_order = np.empty(cap, dtype=np.int8)
    out_zone = np.empty(cap, dtype=np.int16)
    n = free_pages_memory(starts, ends, zones, np.int64(max_order), out_pfn, out_order, out_zone)
    if n < 0:
        raise InvariantViolation(f"decomposition of {starts.shape[0]} runs exceeded its bound of {cap} blocks")
    return out_pfn[:n], out_order[:n], out_zone[:n]


def buddy_runs(flags: np.ndarray, zones: Sequence[ZoneSpan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of KPF_BUDDY pfns inside each zone span (never crossing a zone boundary).

    Returns ``(start, end, zone index)`` arrays."""
    mask = kpf_mask(KPF.BUDDY)
    st, en, zi = [], [], []
    for i, z in enumerate(zones):
        b = ((flags[z.start_pfn:z.end_pfn] & mask) != 0).view(np.int8)
        d = np.diff(b, prepend=np.int8(0), append=np.int8(0))
        s = np.flatnonzero(d == 1) + z.start_pfn
        st.append(s)
        en.append(np.flatnonzero(d == -1) + z.start_pfn)
        zi.append(np.full(s.shape[0], i, dtype=np.int16))
    if not st:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16)
    return (np.concatenate(st).astype(np.int64), np.concatenate(en).astype(np.int64), np.concatenate(zi))


@dataclass(frozen=True)
class FreeBlocks:
    """Rebuilt free buddy blocks: ``pfn`` (int64), ``order`` (int8), ``zone`` (int16 index into
    ``zones``), sorted by pfn."""

    pfn: np.ndarray
    order: np.ndarray
    zone: np.ndarray
    zones: tuple[ZoneSpan, ...]

    def __len__(self) -> int:
        return int(self.pfn.shape[0])

    def counts(self) -> np.ndarray:
        """(zones, NR_PAGE_ORDERS) int64: free blocks per zone and order."""
        nz = len(self.zones)
        key = self.zone.astype(np.int64) * NR_PAGE_ORDERS + self.order
        return np.bincount(key, minlength=nz * NR_PAGE_ORDERS).reshape(nz, NR_PAGE_ORDERS)

    def buddyinfo(self) -> dict[str, list[int]]:
        """``{"NODE:ZONE": [nr_free at order 0..10]}`` like /proc/buddyinfo."""
        c = self.counts()
        return {z.key: [int(x) for x in c[i]] for i, z in enumerate(self.zones)}

    def free_pages(self) -> dict[str, int]:
        """Free pages per zone (``"NODE:ZONE"``)."""
        pages = self.counts() @ (1 << np.arange(NR_PAGE_ORDERS, dtype=np.int64))
        return {z.key: int(pages[i]) for i, z in enumerate(self.zones)}


def rebuild_free_blocks(flags: np.ndarray, zones: Sequence[ZoneSpan],
                        max_order: int = MAX_PAGE_ORDER) -> FreeBlocks:
    """The buddy blocks of a kpageflags dump: KPF_BUDDY runs per zone, maximally merged."""
    flags = check_dump_array(flags)
    zones = check_zone_spans(zones, int(flags.shape[0]))
    st, en, zi = buddy_runs(flags, zones)
    pfn, order, zone = decompose_runs(st, en, zi, max_order)
    return FreeBlocks(pfn, order, zone, zones)


def buddyinfo_pages(counts: Sequence[int]) -> int:
    """Free pages of one buddyinfo row (sum of nr_free[k] << k)."""
    return int(sum(int(c) << k for k, c in enumerate(counts)))


def compare_buddyinfo(rebuilt: Mapping[str, Sequence[int]],
                      proc: Mapping[str, Sequence[int]]) -> dict[str, dict]:
    """Per zone: per-order differences (rebuilt - proc), free pages of both, and the relative
    difference of free pages.  Zones are matched by ``"NODE:ZONE"`` key; a zone missing on
    either side is an error."""
    if set(rebuilt) != set(proc):
        raise ConfigError(f"zones differ: rebuilt {sorted(rebuilt)} vs /proc {sorted(proc)}")
    out = {}
    for key in rebuilt:
        r, p = list(rebuilt[key]), list(proc[key])
        if len(r) != NR_PAGE_ORDERS or len(p) != NR_PAGE_ORDERS:
            raise ConfigError(f"zone {key}: buddyinfo rows need {NR_PAGE_ORDERS} orders")
        rp, pp = buddyinfo_pages(r), buddyinfo_pages(p)
        out[key] = {"order_diff": [a - b for a, b in zip(r, p, strict=True)],
                    "free_pages_rebuilt": rp, "free_pages_proc": pp,
                    "free_pages_rel_diff": (rp - pp) / pp if pp else float(rp != 0)}
    return out
