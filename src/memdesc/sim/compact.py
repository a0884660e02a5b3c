"""A full compaction (vm.compact_memory) of a real machine's snapshot, on any design.

Theory
------
The machine is rebuilt from a capture's snapshot (:func:`memdesc.sim.snapshot.machine_from_snapshot`:
zones from zoneinfo, free blocks and allocations from kpageflags, pageblock types from
pagetypeinfo).  Its anon and file pages become folios of the folio layer
(:meth:`memdesc.mm.folio.Folios.adopt`: a compound head with its order, any other page order
0; on designs with separate descriptors each gets its descriptor from the slab, counted as
the *adoption*'s allocations, apart from compaction's): on the LRU list kpageflags says
(``KPF_LRU``, ``KPF_ACTIVE``, ``KPF_UNEVICTABLE``; anon = ``KPF_ANON``), flagged writeback
where ``KPF_WRITEBACK`` is set.  Pages that are not anon or file (slab, page tables, kernel
allocations, per-CPU list pages that read as flagless) stay untyped allocations: the
migrate scanner passes them as Linux passes non-LRU pages.  Then
:meth:`memdesc.mm.compaction.Compaction.compact_memory` runs every zone.

Each anon folio is mapped once per page and each file folio sits in a page cache (one
mapping for all: the dump does not name inodes), with the references the fault and
page-cache paths leave (the allocation's own reference dropped), so compaction's isolation
takes its reference as Linux's does.  What is *not* rebuilt: the page tables themselves and
extra references (kpagecount is not turned into mapcounts: every anon page counts one
mapping), pins (none), the
per-CPU LRU batches, non-LRU movable pages (zsmalloc, balloon).  So the model migrates
every LRU folio its scanner reaches that Linux would migrate barring transient references.

The kernel side comes from the capture's trace (:func:`memdesc.trace.compaction.compaction_runs`):
the runs of the full compaction (sync, order -1, whole zone: mm_compaction_begin with
``migrate_pfn == zone_start``), their scanner positions and summed isolation and migration
events.  The snapshot is the machine *before* the workload (``--when before``) or after the
full compaction (``after``); the kernel's compaction ran between the two, on a state no
snapshot shows, so the comparison is of the scanners' behaviour on a like machine, not a
replay (see docs/mm.md, "Compaction and migration", for the measured gaps and their causes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from memdesc._numba import njit
from memdesc.mm import compaction as C
from memdesc.mm import folio as F
from memdesc.mm import memmap as mmap
from memdesc.mm.mmzone import HPAGE_PMD_ORDER, NR_PAGE_ORDERS, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc.dispatch import pa_zone_free_area
from memdesc.sim.snapshot import machine_from_snapshot, reuse_snapshots
from memdesc.trace.compaction import compaction_runs
from memdesc.trace.kpageflags import KPF, PageClass, kpf_mask


def _lru_of(flags: np.ndarray, anon: np.ndarray) -> np.ndarray:
    lru = np.full(flags.shape[0], -1, np.int64)
    on = (flags & kpf_mask(KPF.LRU)) != 0
    act = (flags & kpf_mask(KPF.ACTIVE)) != 0
    unev = (flags & kpf_mask(KPF.UNEVICTABLE)) != 0
    lru[on & anon & ~act] = F.LRU_INACTIVE_ANON
    lru[on & anon & act] = F.LRU_ACTIVE_ANON
    lru[on & ~anon & ~act] = F.LRU_INACTIVE_FILE
    lru[on & ~anon & act] = F.LRU_ACTIVE_FILE
    lru[on & unev] = F.LRU_UNEVICTABLE
    return lru


def _free_area(pa) -> dict[str, list[int]]:
    """Free blocks per order and zone as /proc/buddyinfo counts them (``pa_zone_free_area``:
    vmem's and llfree's ``nr_free`` hold size classes for their watermark tests)."""
    return {str(z): [int(x) for x in pa_zone_free_area(pa, z)] for z in range(pa.z_start.shape[0])
            if int(pa.z_managed[z]) > 0}


def _blocks_of_order(nr_free: list[int], order: int) -> int:
    """Free blocks of ``order`` one could allocate: each free block of order >= it counts 2^(o - order)."""
    return sum(int(c) << (o - order) for o, c in enumerate(nr_free) if o >= order)


#: the page-cache mapping id of the snapshot's file folios (their inodes are not in the dump)
SNAPSHOT_MAPPING = 1


@njit
def as_faulted_or_cached(ms, ss, pa, slots, anon, cpu):
    """The references the kernel's fault and page-cache paths leave on a folio: an anon folio
    mapped once per page (one PTE each), a file folio in a page cache (SNAPSHOT_MAPPING, index
    its pfn); then the allocation's reference dropped (the folio_put after folio_add_lru)."""
    for i in range(slots.shape[0]):
        s = slots[i]
        if s < 0:
            continue
        if anon[i]:
            F.folio_map_ptes(ms, s, 0, np.int64(1) << ms.order[s])
        else:
            F.folio_attach_mapping(ms, s, SNAPSHOT_MAPPING, ms.pfn[s])
        F.folio_put_refs(ms, ss, pa, s, 1, cpu)


def adopt_snapshot_folios(folios: F.Folios, state, snap) -> dict:
    """Make the snapshot's anon and file allocations folios (see the module docstring)."""
    heads = state.alloc_pfn
    cls = snap.page_class[heads]
    sel = np.isin(cls, np.array([PageClass.ANON, PageClass.FILE], np.uint8))
    pfns = heads[sel].astype(np.int64)
    orders = state.alloc_order[sel].astype(np.int64)
    anon = cls[sel] == PageClass.ANON
    types = np.where(anon, F.MD_ANON, F.MD_FILE).astype(np.int64)
    flags = snap.flags[pfns]
    lrus = _lru_of(flags, anon)
    d0 = int(folios.state.ostat[F.OP_ALLOC, F.OS_DESC_ALLOCS])
    out = folios.adopt(pfns, orders, types, lrus)
    as_faulted_or_cached(folios.state, folios.slab.state, folios.pa, out, anon, np.int64(0))
    ok = out >= 0
    wb = ok & ((flags & kpf_mask(KPF.WRITEBACK)) != 0)
    if wb.any():
        folios.state.flags[out[wb]] |= np.int64(1) << mmap.PG_writeback
    return {"folios": int(ok.sum()), "pages": int((np.int64(1) << orders[ok]).sum()),
            "anon_folios": int((ok & anon).sum()), "file_folios": int((ok & ~anon).sum()),
            "on_lru": int((ok & (lrus >= 0)).sum()), "large_folios": int((ok & (orders > 0)).sum()),
            "descriptor_allocations": int(folios.state.ostat[F.OP_ALLOC, F.OS_DESC_ALLOCS]) - d0,
            "failed": int((~ok).sum())}


def _zone_names(machine) -> dict[int, str]:
    zs = [z for z in machine.layout.zones]
    pa = machine.design.zs
    out = {}
    for z in range(pa.z_start.shape[0]):
        match = [s for s in zs if s.spanned and int(s.start_pfn) == int(pa.z_start[z])]
        out[z] = f"{match[0].node}:{match[0].name}" if match else str(z)
    return out


def _present(machine) -> np.ndarray:
    pa = machine.design.zs
    out = np.array(pa.z_managed, np.int64)
    for z in range(pa.z_start.shape[0]):
        for s in machine.layout.zones:
            if s.spanned and int(s.start_pfn) == int(pa.z_start[z]):
                out[z] = int(s.present)
    return out


def kernel_runs(directory: str | Path, cache: bool = True) -> list[dict]:
    """The capture's full-compaction runs (sync, whole zone from its start), in trace order;
    [] when the capture has no trace or no such run."""
    d = Path(directory)
    tr = next((p for p in (d / "trace.txt.zst", d / "trace.txt") if p.is_file()), None)
    if tr is None:
        return []
    runs, _bad = compaction_runs(tr, cache=cache)
    return [r for r in runs if r["sync"] and r["migrate_pfn_begin"] == r["zone_start"] and r["status"] is not None]


def compact_capture(directory: str | Path, design: str = "linux", when: str = "before", cpus: int | None = None,
                    kernel: bool = True, cache: bool = True, **config) -> dict:
    """Rebuild the capture's ``when`` snapshot on ``design``, adopt its folios, run a full
    compaction and report it beside the kernel's own full compaction of the capture."""
    with reuse_snapshots():
        m, state, snap = machine_from_snapshot(directory, when, design, cpus, **config)
    C.check_compactable(m.design.zs)
    folios = F.Folios.of(m)
    adoption = adopt_snapshot_folios(folios, state, snap)
    pa = m.design.zs
    names = _zone_names(m)
    before = _free_area(pa)
    comp = C.Compaction(folios, present=_present(m), log_capacity=1 << 18)
    score_before = {names[z]: int(C.fragmentation_score_zone(pa, np.int64(z))) for z in map(int, before)}
    node_score_before = int(C.fragmentation_score_node(comp.state, pa, np.int64(0)))
    t0 = time.perf_counter()
    comp.compact_memory()
    seconds = time.perf_counter() - t0
    after = _free_area(pa)
    stats = comp.stats()
    ev = comp.events()
    zones = []
    runs = comp.zone_runs()
    # per-run sums of the model's events, attributed by position in the log
    bounds = np.flatnonzero((ev[:, 0] == C.EV_BEGIN) | (ev[:, 0] == C.EV_END)) if ev.shape[0] else np.array([], int)
    k_runs = kernel_runs(directory, cache=cache) if kernel else []
    k_by_start = {r["zone_start"]: r for r in k_runs}
    for i, r in enumerate(runs):
        lo, hi = (int(bounds[2 * i]), int(bounds[2 * i + 1])) if bounds.shape[0] >= 2 * i + 2 else (0, 0)
        seg = ev[lo:hi]

        def sums(kind, seg=seg):
            s = seg[seg[:, 0] == kind]
            return s

        im = sums(C.EV_ISOLATE_MIGRATE)
        isf = sums(C.EV_ISOLATE_FREE)
        mp = sums(C.EV_MIGRATEPAGES)
        z = r.zone
        nf0, nf1 = before[str(z)], after[str(z)]
        model = {
            "migrate_pfn_begin": r.migrate_pfn_begin, "free_pfn_begin": r.free_pfn_begin,
            "migrate_pfn_end": r.migrate_pfn_end, "free_pfn_end": r.free_pfn_end,
            "meeting_pfn": (min(r.migrate_pfn_end, r.free_pfn_end) >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER,
            "status": r.status,
            "isolate_migratepages": {"calls": int(im.shape[0]), "nr_scanned": int(im[:, 3].sum()),
                                     "nr_taken": int(im[:, 4].sum())},
            "isolate_freepages": {"calls": int(isf.shape[0]), "nr_scanned": int(isf[:, 3].sum()),
                                  "nr_taken": int(isf[:, 4].sum())},
            "migratepages": {"calls": int(mp.shape[0]), "nr_migrated": int(mp[:, 1].sum()),
                             "nr_failed": int(mp[:, 2].sum()), "descriptor_allocations": int(mp[:, 4].sum()),
                             "descriptor_failures": int(mp[:, 3].sum()), "nr_split": int(mp[:, 5].sum())},
        }
        kr = k_by_start.get(r.start_pfn)
        kern = None
        if kr is not None:
            kern = {k: kr[k] for k in ("zone_end", "migrate_pfn_begin", "free_pfn_begin", "migrate_pfn_end",
                                       "free_pfn_end", "status", "isolate_migratepages", "isolate_freepages",
                                       "migratepages", "migrate_pages")}
            kern["meeting_pfn"] = (min(kr["migrate_pfn_end"], kr["free_pfn_end"]) >> PAGEBLOCK_ORDER) \
                << PAGEBLOCK_ORDER
        zones.append({
            "zone": names.get(z, str(z)), "start_pfn": r.start_pfn, "end_pfn": r.end_pfn, "model": model,
            "kernel": kern,
            "free_area_before": nf0, "free_area_after": nf1,
            "free_pages_before": sum(c << o for o, c in enumerate(nf0)),
            "free_pages_after": sum(c << o for o, c in enumerate(nf1)),
            "order9_blocks_before": _blocks_of_order(nf0, HPAGE_PMD_ORDER),
            "order9_blocks_after": _blocks_of_order(nf1, HPAGE_PMD_ORDER),
            "fragmentation_score_before": score_before.get(names[z], 0),
            "fragmentation_score_after": int(C.fragmentation_score_zone(pa, np.int64(z))),
        })
    o9 = lambda fa: sum(_blocks_of_order(v, HPAGE_PMD_ORDER) for v in fa.values())  # noqa: E731
    check = m.check()
    fc = folios.check()
    return {
        "capture": str(directory), "when": when, "design": design,
        "adoption": adoption,
        "seconds": seconds,
        "pages_migrated": stats["pages_migrated"],
        "folios_migrated": int(comp.state.mstats[C.M.MS_SUCCEEDED]),
        "migrate_failed_folios": stats["migrate_failed_folios"],
        "failed_busy": stats["failed_busy"],
        "descriptor_allocations": stats["descriptor_allocations"],
        "descriptor_failures": stats["descriptor_failures"],
        "folios_split": stats["folios_split"],
        "split_descriptor_allocations": stats["split_descriptor_allocations"],
        "compact_migrate_scanned": stats["compact_migrate_scanned"],
        "compact_free_scanned": stats["compact_free_scanned"],
        "compact_isolated": stats["compact_isolated"],
        "order9_blocks_before": o9(before), "order9_blocks_after": o9(after),
        "free_pages_before": sum(sum(c << o for o, c in enumerate(v)) for v in before.values()),
        "free_pages_after": sum(sum(c << o for o, c in enumerate(v)) for v in after.values()),
        "fragmentation_score_node_before": node_score_before,
        "fragmentation_score_node_after": int(C.fragmentation_score_node(comp.state, pa, np.int64(0))),
        "zones": zones,
        "stats": stats,
        "events_dropped": comp.dropped_events(),
        "check": check if check != "ok" else ("ok" if fc == "ok" else f"folios: {fc}"),
        "kernel_runs": len(k_runs),
        "nr_page_orders": NR_PAGE_ORDERS,
    }

