"""Inferring pageblock migratetypes from a kpageflags snapshot and /proc/pagetypeinfo counts.

Theory
------
Each pageblock (2^pageblock_order = 512 pages on x86-64) has a migratetype stored in
the zone's pageblock bitmap (``get_pageblock_migratetype()``).  It is not in kpageflags;
/proc/pagetypeinfo gives only, per zone, how many pageblocks have each type ("Number
of blocks type", counted by ``pagetypeinfo_showblockcount_print()``, which steps
``pfn = zone_start_pfn, + pageblock_nr_pages ...`` and skips pfns whose section is not
online) and how many free blocks of each order sit on each type's free list.

What the contents say: the page allocator serves MIGRATE_MOVABLE requests (anon, page
cache) from movable pageblocks, slab caches created with SLAB_RECLAIM_ACCOUNT (dentry,
inode ...) from reclaimable ones and other kernel allocations (unreclaimable slab, page
tables, vmalloc, kernel stacks) from unmovable ones, until fallback (``steal_suitable_fallback``)
mixes them.  KPF_SLAB cannot tell a reclaimable slab from an unreclaimable one, so the
best the data allows is: reclaimable blocks are the slab-dense ones with little other
kernel memory, unmovable blocks the ones with the most non-movable content.

Scores (fractions of the block's 512 pages, from the :class:`PageClass` histogram):

* movable      = anon + file + hugetlb + zero_page + free
* reclaimable  = slab - (pgtable + reserved + other)
* unmovable    = 1 - movable (slab, page tables, reserved, other kernel pages)
* highatomic   = unmovable score (no signal of its own)
* cma          = movable score;  isolate = free fraction

Assignment is greedy per type, in the order Reclaimable, Unmovable, HighAtomic, CMA,
Isolate, Movable: each type takes, among the blocks not yet assigned, its quota of the
highest-scoring ones (ties: lower pfn first).  The quotas are exactly the counts passed
in (parsed from pagetypeinfo), so the per-zone block counts always match; blocks left
over when the quotas sum to less than the blocks present stay unassigned (-1).

How good it is can be measured without circularity: the per-(type, order) free counts
of the rebuilt buddy blocks (each free block takes its first pageblock's type) against
pagetypeinfo's "Free pages count per migrate type", which the inference never sees
(:func:`compare_free_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm.mmzone import (
    MIGRATE_TYPES,
    MIGRATETYPE_BY_NAME,
    MIGRATETYPE_NAMES,
    NR_PAGE_ORDERS,
    PAGEBLOCK_ORDER,
    MigrateType,
)
from memdesc.trace.kpage import NR_PAGE_CLASSES, PageClass, ZoneSpan, check_zone_spans
from memdesc.trace.kpagebuddy import FreeBlocks

#: greedy assignment order (Movable last: it takes what the others leave)
ASSIGN_ORDER = (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE, MigrateType.HIGHATOMIC,
                MigrateType.CMA, MigrateType.ISOLATE, MigrateType.MOVABLE)

_MOVABLE_CLASSES = (PageClass.ANON, PageClass.FILE, PageClass.HUGETLB, PageClass.ZERO_PAGE, PageClass.FREE)
_KERNEL_CLASSES = (PageClass.PGTABLE, PageClass.RESERVED, PageClass.OTHER)


@njit
def pageblock_class_histogram(page_class, pageblocks, pageblock_order, nr_classes, out):
    """Pages of each class in each listed pageblock (out: len(pageblocks) x nr_classes)."""
    npfn = page_class.shape[0]
    for i in range(pageblocks.shape[0]):
        start = pageblocks[i] << pageblock_order
        end = min(start + (1 << pageblock_order), npfn)
        for pfn in range(start, end):
            out[i, page_class[pfn]] += 1


def migratetype_scores(content: np.ndarray) -> np.ndarray:
    """(blocks, MIGRATE_TYPES) float64 scores from a (blocks, NR_PAGE_CLASSES) histogram."""
    size = np.maximum(content.sum(axis=1), 1).astype(np.float64)
    movable = content[:, list(_MOVABLE_CLASSES)].sum(axis=1) / size
    kernel = content[:, list(_KERNEL_CLASSES)].sum(axis=1) / size
    slab = content[:, PageClass.SLAB] / size
    free = content[:, PageClass.FREE] / size
    s = np.empty((content.shape[0], MIGRATE_TYPES), dtype=np.float64)
    s[:, MigrateType.MOVABLE] = movable
    s[:, MigrateType.RECLAIMABLE] = slab - kernel
    s[:, MigrateType.UNMOVABLE] = 1.0 - movable
    s[:, MigrateType.HIGHATOMIC] = 1.0 - movable
    s[:, MigrateType.CMA] = movable
    s[:, MigrateType.ISOLATE] = free
    return s


def _migratetype_index(name) -> int:
    if isinstance(name, (int, np.integer)) and 0 <= int(name) < MIGRATE_TYPES:
        return int(name)
    if isinstance(name, str) and name in MIGRATETYPE_BY_NAME:
        return MIGRATETYPE_BY_NAME[name]
    raise ConfigError(f"unknown migratetype {name!r}: expected one of {', '.join(MIGRATETYPE_NAMES)}")


def zone_key(key) -> str:
    """``"NODE:ZONE"`` from ``"0:Normal"`` or ``(0, "Normal")``."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"{int(key[0])}:{key[1]}"
    if isinstance(key, str) and ":" in key:
        return key
    raise ConfigError(f"zone key {key!r}: expected 'NODE:ZONE' or (node, zone)")


def pagetypeinfo_tables(info) -> tuple[dict[str, dict[str, list[int]]], dict[str, dict[str, int]]]:
    """``(free, blocks)`` of a parsed /proc/pagetypeinfo (:func:`memdesc.mm.vmstat.parse_pagetypeinfo`):
    ``free = {"NODE:ZONE": {type: [free-list length per order]}}`` and
    ``blocks = {"NODE:ZONE": {type: pageblocks}}`` -- the inputs of
    :func:`infer_pageblock_migratetypes` and :func:`compare_free_counts`."""
    names = info.migratetype_names
    free = {f"{z.node}:{z.zone}": {n: list(row) for n, row in zip(names, z.free, strict=True)}
            for z in info.zones}
    blocks = {f"{z.node}:{z.zone}": dict(zip(names, (int(b) for b in z.blocks), strict=True))
              for z in info.zones}
    return free, blocks


def zone_pageblocks(page_class: np.ndarray, zone: ZoneSpan,
                    pageblock_order: int = PAGEBLOCK_ORDER) -> np.ndarray:
    """Pageblock numbers pagetypeinfo counts for ``zone``: those of pfn zone_start + k * 512
    whose section is online (not hole/unavailable)."""
    pfns = np.arange(zone.start_pfn, zone.end_pfn, 1 << pageblock_order, dtype=np.int64)
    c = page_class[pfns]
    pfns = pfns[(c != PageClass.HOLE) & (c != PageClass.UNAVAILABLE)]
    return pfns >> pageblock_order


@dataclass(frozen=True)
class PageblockTypes:
    """Inferred migratetype of each pageblock pagetypeinfo counts.

    ``pageblock`` (int64, pfn >> pageblock_order), ``zone`` (int16 index into ``zones``),
    ``migratetype`` (int8 :class:`MigrateType`, -1 = left unassigned), ``content``
    ((n, NR_PAGE_CLASSES) pages per class), ``scores`` ((n, MIGRATE_TYPES)).
    """

    pageblock: np.ndarray
    zone: np.ndarray
    migratetype: np.ndarray
    content: np.ndarray
    scores: np.ndarray
    zones: tuple[ZoneSpan, ...]
    pageblock_order: int = PAGEBLOCK_ORDER

    def type_of_pfns(self, pfns: np.ndarray) -> np.ndarray:
        """int8 migratetype of the pageblocks holding ``pfns`` (-1 if not a counted pageblock)."""
        pb = np.asarray(pfns, dtype=np.int64) >> self.pageblock_order
        i = np.searchsorted(self.pageblock, pb)
        i = np.minimum(i, max(self.pageblock.shape[0] - 1, 0))
        if self.pageblock.shape[0] == 0:
            return np.full(pb.shape, -1, dtype=np.int8)
        hit = self.pageblock[i] == pb
        return np.where(hit, self.migratetype[i], -1).astype(np.int8)

    def block_counts(self) -> dict[str, dict[str, int]]:
        """``{"NODE:ZONE": {type name: pageblocks}}`` of the assignment (plus ``"unassigned"``)."""
        out = {}
        for zi, z in enumerate(self.zones):
            mt = self.migratetype[self.zone == zi]
            row = {name: int(np.count_nonzero(mt == t)) for t, name in enumerate(MIGRATETYPE_NAMES)}
            row["unassigned"] = int(np.count_nonzero(mt < 0))
            out[z.key] = row
        return out


def infer_pageblock_migratetypes(page_class: np.ndarray, zones: Sequence[ZoneSpan],
                                 block_counts: Mapping[str, Mapping[str | int, int]],
                                 pageblock_order: int = PAGEBLOCK_ORDER) -> PageblockTypes:
    """Assign each counted pageblock a migratetype so that every zone gets exactly
    ``block_counts[zone key][type]`` pageblocks of each type, greedily by content score.

    ``block_counts``: ``{"0:Normal": {"Unmovable": 273, "Movable": 2393, ...}, ...}`` (zones
    as ``"NODE:ZONE"`` or ``(node, zone)``, types as pagetypeinfo prints them or
    :class:`MigrateType` values), e.g. ``pagetypeinfo_tables(parse_pagetypeinfo(text))[1]``.
    Zones of ``zones`` missing from it are left unassigned; zones in it but not in
    ``zones`` are an error.
    """
    page_class = np.asarray(page_class)
    if page_class.dtype != np.uint8 or page_class.ndim != 1:
        raise ConfigError(f"page_class must be the 1-d uint8 PageClass array of a snapshot, got "
                          f"{page_class.dtype} {page_class.shape}")
    zones = check_zone_spans(zones, int(page_class.shape[0]))
    keys = {z.key: i for i, z in enumerate(zones)}
    block_counts = {zone_key(k): v for k, v in block_counts.items()}
    for key in block_counts:
        if key not in keys:
            raise ConfigError(f"block counts for zone {key!r}, which is not among the spans "
                              f"({', '.join(keys)})")
    pbs, zidx = [], []
    for i, z in enumerate(zones):
        pb = zone_pageblocks(page_class, z, pageblock_order)
        pbs.append(pb)
        zidx.append(np.full(pb.shape[0], i, dtype=np.int16))
    pageblock = np.concatenate(pbs) if pbs else np.zeros(0, np.int64)
    zone = np.concatenate(zidx) if zidx else np.zeros(0, np.int16)
    order = np.argsort(pageblock, kind="stable")
    pageblock, zone = pageblock[order], zone[order]
    content = np.zeros((pageblock.shape[0], NR_PAGE_CLASSES), dtype=np.int32)
    pageblock_class_histogram(page_class, pageblock, np.int64(pageblock_order), NR_PAGE_CLASSES, content)
    scores = migratetype_scores(content)
    mt = np.full(pageblock.shape[0], -1, dtype=np.int8)
    for key, counts in block_counts.items():
        quota = np.zeros(MIGRATE_TYPES, dtype=np.int64)
        for name, n in counts.items():
            if int(n) < 0:
                raise ConfigError(f"zone {key}: negative pageblock count {n} for {name}")
            quota[_migratetype_index(name)] += int(n)
        members = np.flatnonzero(zone == keys[key])
        for t in ASSIGN_ORDER:
            q = int(quota[t])
            if q == 0:
                continue
            cand = members[mt[members] < 0]
            # highest score first; stable sort on -score keeps lower pfns first among ties
            pick = cand[np.argsort(-scores[cand, t], kind="stable")[:q]]
            mt[pick] = t
    return PageblockTypes(pageblock, zone, mt, content, scores, zones, pageblock_order)


def free_counts_by_migratetype(blocks: FreeBlocks, types: PageblockTypes) -> dict[str, dict[str, list[int]]]:
    """Free blocks per zone, migratetype and order, each free block on the free list of its
    first pageblock's type -- the shape of pagetypeinfo's "Free pages count per migrate
    type" table.  Blocks in unassigned pageblocks are listed under ``"unassigned"``."""
    mt = types.type_of_pfns(blocks.pfn).astype(np.int64)
    row = np.where(mt < 0, MIGRATE_TYPES, mt)
    nz = len(blocks.zones)
    key = (blocks.zone.astype(np.int64) * (MIGRATE_TYPES + 1) + row) * NR_PAGE_ORDERS + blocks.order
    c = np.bincount(key, minlength=nz * (MIGRATE_TYPES + 1) * NR_PAGE_ORDERS)
    c = c.reshape(nz, MIGRATE_TYPES + 1, NR_PAGE_ORDERS)
    names = list(MIGRATETYPE_NAMES) + ["unassigned"]
    return {z.key: {names[t]: [int(x) for x in c[zi, t]] for t in range(MIGRATE_TYPES + 1)}
            for zi, z in enumerate(blocks.zones)}


def compare_free_counts(rebuilt: Mapping[str, Mapping[str, Sequence[int]]],
                        proc: Mapping[str, Mapping[str, Sequence[int]]]) -> dict:
    """How well per-(type, order) free counts agree.

    For every zone of ``proc`` and every (type, order) cell, the matched pages are
    ``min(rebuilt, proc) << order``; the figure is matched / proc free pages, per zone and
    overall (1.0 = every free page of /proc is found on the same type's list at the same
    order).  Also returns free pages per type on both sides.
    """
    rebuilt = {zone_key(k): v for k, v in rebuilt.items()}
    proc = {zone_key(k): v for k, v in proc.items()}
    out: dict = {"zones": {}}
    tot_m = tot_p = 0
    for key, ptypes in proc.items():
        if key not in rebuilt:
            raise ConfigError(f"zone {key!r} of /proc/pagetypeinfo is not in the rebuilt counts")
        rtypes = rebuilt[key]
        m = p = 0
        per_type = {}
        for name, prow in ptypes.items():
            rrow = rtypes.get(name, [0] * NR_PAGE_ORDERS)
            if len(prow) != NR_PAGE_ORDERS or len(rrow) != NR_PAGE_ORDERS:
                raise ConfigError(f"zone {key} type {name}: need {NR_PAGE_ORDERS} orders")
            m += sum(min(int(a), int(b)) << k for k, (a, b) in enumerate(zip(rrow, prow, strict=True)))
            pp = sum(int(b) << k for k, b in enumerate(prow))
            p += pp
            per_type[name] = {"rebuilt_pages": sum(int(a) << k for k, a in enumerate(rrow)), "proc_pages": pp}
        out["zones"][key] = {"matched_pages": m, "proc_pages": p, "fraction": m / p if p else 1.0,
                             "types": per_type}
        tot_m += m
        tot_p += p
    out["matched_pages"], out["proc_pages"] = tot_m, tot_p
    out["fraction"] = tot_m / tot_p if tot_p else 1.0
    return out
