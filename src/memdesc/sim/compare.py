"""Every design on real captures, side by side: the data behind ``memdesc compare``.

Theory
------
The question a kernel developer brings is one page long: on *this* workload, what does
each design cost in metadata, does it ever need memory to free memory, how does it
fragment, how fast does it run.  :func:`compare` answers it for each capture and each
design of the registry (:func:`memdesc.mm.page_alloc.design_variants`: every design, once
per radix node policy, and whatever is registered later):

* **policy replay** (every design): the capture's kmem trace as the demand stream, served
  by the design from the machine rebuilt from ``before.*`` (:mod:`memdesc.sim.replay`).
  It gives the headline figures: metadata bytes (per present page), ``free_path_allocations``,
  ``free_stalls``, ``alloc_failed_for_metadata``, the unusable-free-space and
  fragmentation indices of mm/vmstat.c at the end and *over the run* (the free lists
  sampled every ``every`` events, orders 4 and 9 of the largest zone), the free blocks per
  order at the end, and the replay loop's events per second;
* **exact replay** where the design supports it (every event at its real pfn): a
  consistency check, reported as the distance of the end state from ``after.buddyinfo``;
* the **highmem-free scenario** (:mod:`memdesc.sim.scenarios`) where the capture's layout
  has HighMem (i386), or always with ``highmem="always"`` (on an i386 machine of
  ``highmem_mem``);
* a **memory map** per design: every pfn's state at the end of the policy replay (free,
  per-CPU list, allocated by migratetype, reserved, no memory), downsampled to a grid of
  cells, each cell the state most of its pfns are in.

Metadata *per memory type* (anon, file, slab...) comes from typed replay
(:func:`metadata_by_type`): every allocation of the trace is a typed allocation of the folio
layer, so at the end of the policy replay each memdesc type has its live pages (their
struct pages) and its live descriptors (overlaid on struct page on ``linux``, separately
allocated from the slab on the others).

Every figure is a function of the capture, the design and ``every`` (replay is
deterministic); only the speeds vary between runs.  A capture's snapshot is read and
rebuilt once for all designs (:func:`memdesc.sim.snapshot.reuse_snapshots`).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from memdesc import _html
from memdesc.errors import ConfigError
from memdesc.mm import vmstat
from memdesc.mm.machine import COUNTERS, Machine, summary_design_stats
from memdesc.mm.mmzone import NR_PAGE_ORDERS, PAGE_SIZE
from memdesc.mm.page_alloc import core, design_variants, get_design
from memdesc.results import validate
from memdesc.sim.replay import ReplayResult, replay, resolve_source, sample_path
from memdesc.sim.scenarios import highmem_free
from memdesc.sim.snapshot import reuse_snapshots
from memdesc.trace.reader import read_trace

#: orders whose fragmentation the comparison follows over the run (PAGE_ALLOC_COSTLY_ORDER + 1
#: is 4: the smallest order compaction works hard for; 9: a PMD-sized THP)
ORDERS = (4, 9)
#: samples of the free lists over a replay when ``every`` is not given
DEFAULT_SAMPLES = 200
HIGHMEM_CHOICES = ("auto", "always", "never")
#: memory-map states, in colour-legend order
MAP_STATES = ("no memory", "reserved", "free", "per-CPU list", "unmovable", "movable", "reclaimable",
              "other allocated")
MAP_NONE, MAP_RESERVED, MAP_FREE, MAP_PCP, MAP_UNMOVABLE, MAP_MOVABLE, MAP_RECLAIMABLE, MAP_OTHER = range(8)
MAP_WIDTH = 512
MAP_ROWS = 128


def metadata_by_type(r: ReplayResult) -> dict | None:
    """Metadata bytes per memory type at the end of a typed replay, or None (untyped).

    Per memdesc type of the trace's allocations still live at the end: ``pages``,
    ``struct_page_bytes`` (pages x the design's struct page), ``descriptor_bytes`` (its live
    descriptors: 0 where they overlay struct page) and ``total_bytes``; plus ``descriptor_slab_bytes``,
    the slab pages every descriptor cache holds (objects, free slots and the slabs' own tails).
    Allocations the snapshot held before the trace are not typed (their type is the
    ontology's: ``memdesc ontology``)."""
    fo = r.folios
    if r.typed is None or fo is None:
        return None
    spb = int(r.typed["struct_page_bytes"])
    out: dict = {}
    for name, row in r.typed["types"].items():
        pages = int(row["live_pages"])
        if not pages and not row["descriptor_bytes"]:
            continue
        d = int(row["descriptor_bytes"])
        out[name] = {"pages": pages, "struct_page_bytes": pages * spb, "descriptor_bytes": d,
                     "total_bytes": pages * spb + d}
    return {"types": out, "descriptor_slab_bytes": int(sum(r.typed["descriptor_slab_bytes"].values())),
            "descriptors_separate": bool(r.typed["descriptors_separate"])}


# ---------------------------------------------------------------------- pieces


def page_states(machine: Machine) -> np.ndarray:
    """One :data:`MAP_STATES` index per pfn of the machine, from the allocator's state."""
    d = machine.design
    zs = d.zs
    npfn = machine.max_pfn
    out = np.zeros(npfn, np.uint8)
    for z in machine.zones:
        if z.present:
            out[z.start_pfn:min(z.start_pfn + z.spanned, npfn)] = MAP_OTHER
    owner = zs.owner[:npfn]
    heads = np.flatnonzero((owner != core.OWNER_NONE) & (owner != core.OWNER_RESERVED) & (owner != core.OWNER_PCP))
    if heads.shape[0]:
        v = owner[heads].astype(np.int64)
        order = (v >> 1) & 0xF
        mt = (v >> 5) & 0x7
        state = np.select([mt == 0, mt == 1, mt == 2], [MAP_UNMOVABLE, MAP_MOVABLE, MAP_RECLAIMABLE],
                          MAP_OTHER).astype(np.uint8)
        _paint(out, heads, order, state)
    blocks = d.free_blocks()
    if blocks.shape[0]:
        _paint(out, blocks[:, 0], blocks[:, 1], np.full(blocks.shape[0], MAP_FREE, np.uint8))
    out[owner == core.OWNER_PCP] = MAP_PCP
    out[owner == core.OWNER_RESERVED] = MAP_RESERVED
    return out


def _paint(out: np.ndarray, start: np.ndarray, order: np.ndarray, state: np.ndarray) -> None:
    size = np.int64(1) << order.astype(np.int64)
    idx = np.repeat(start.astype(np.int64), size) + (np.arange(int(size.sum()), dtype=np.int64)
                                                     - np.repeat(np.cumsum(size) - size, size))
    keep = idx < out.shape[0]
    out[idx[keep]] = np.repeat(state, size)[keep]


def downsample(states: np.ndarray, width: int = MAP_WIDTH, rows: int = MAP_ROWS) -> tuple[np.ndarray, int]:
    """(grid of cells [rows', width], pfns per cell): each cell the state most of its pfns are in."""
    n = states.shape[0]
    per = max(1, -(-n // (width * rows)))
    ncell = -(-n // per)
    cell = np.arange(n, dtype=np.int64) // per
    nst = len(MAP_STATES)
    counts = np.bincount(cell * nst + states, minlength=ncell * nst).reshape(ncell, nst)
    grid = counts.argmax(axis=1).astype(np.uint8)
    nrow = -(-ncell // width)
    full = np.full(nrow * width, MAP_NONE, np.uint8)
    full[:ncell] = grid
    return full.reshape(nrow, width), per


def fragmentation_frame(samples: pl.DataFrame) -> pl.DataFrame:
    """Per sample and zone: the unusable and fragmentation indices (x1000) at every order."""
    nr = samples.select([f"order_{o}" for o in range(NR_PAGE_ORDERS)]).to_numpy().astype(np.int64)
    nr = np.ascontiguousarray(nr)
    unusable = vmstat.unusable_index_table_nb(nr)
    extfrag = vmstat.fragmentation_index_table_nb(nr)
    cols = {"event_index": samples["event_index"],
            "zone": (samples["node"].cast(pl.String) + ":" + samples["zone"]),
            "free_pages": samples["free_pages"]}
    for o in ORDERS:
        cols[f"unusable_{o}"] = pl.Series(unusable[:, o])
        cols[f"extfrag_{o}"] = pl.Series(extfrag[:, o])
    return pl.DataFrame(cols)


def free_block_orders(machine: Machine) -> dict:
    bi = machine.design.nr_free
    blocks = [int(x) for x in np.asarray(bi).sum(axis=0)]
    return {"blocks_by_order": blocks, "pages_by_order": [b << o for o, b in enumerate(blocks)]}


def main_zone(machine: Machine) -> str:
    """The zone with the most managed pages ("NODE:ZONE"): the one the series follow."""
    zs = machine.design.zs
    i = int(np.argmax([int(zs.z_managed[i]) if z.present else -1 for i, z in enumerate(machine.zones)]))
    z = machine.zones[i]
    return f"{z.node}:{z.name}"


def _first_failure(checks: dict[str, str | None]) -> str:
    for what, c in checks.items():
        if c is not None and c != "ok":
            return f"{what}: {c}"
    return "ok"


# ---------------------------------------------------------------------- result


@dataclass
class CaptureInfo:
    name: str
    path: Path
    events: int
    max_pfn: int
    pfns_per_cell: int = 1


@dataclass
class Comparison:
    """What :func:`compare` found: ``summary`` is the JSON (``CompareCommand``); the rest is
    what the report draws: the fragmentation series of every design and zone, the memory
    maps, and the commands that reproduce each part."""

    summary: dict
    series: pl.DataFrame
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    captures: list[CaptureInfo] = field(default_factory=list)

    @property
    def designs(self) -> list[str]:
        return list(self.summary["designs"])

    def rows(self) -> list[dict]:
        """One flat row per (capture, design): the headline figures."""
        out = []
        for cap in self.summary["captures"]:
            for d, r in cap["designs"].items():
                frag = r["fragmentation"]
                last = {f"{k}_{o}": (frag[k][str(o)][-1] if frag[k][str(o)] else None)
                        for k in ("unusable_index", "extfrag_index") for o in frag["orders"]}
                out.append({
                    "capture": cap["name"], "design": d, "struct_page_bytes": r["struct_page_bytes"],
                    "metadata_bytes": r["metadata_bytes"]["total"],
                    "metadata_bytes_per_page": r["metadata_bytes_per_page"],
                    "descriptor_bytes": r["metadata_bytes"]["descriptors"],
                    **{k: r[k] for k in COUNTERS},
                    "alloc_failed": r["ops"]["alloc_failed"],
                    **last,
                    "events_per_second": r["events_per_second"],
                    "exact_events_per_second": r["exact"]["events_per_second"] if r["exact"] else None,
                    "highmem_stalled_frees": r["highmem"]["stalled_frees"] if r["highmem"] else None,
                    "check": r["check"],
                })
        return out

    def table(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows())

    def free_blocks_table(self) -> pl.DataFrame:
        rows = []
        for cap in self.summary["captures"]:
            for d, r in cap["designs"].items():
                fb = r["free_blocks"]
                for o, (b, p) in enumerate(zip(fb["blocks_by_order"], fb["pages_by_order"], strict=True)):
                    rows.append({"capture": cap["name"], "design": d, "order": o, "blocks": b, "pages": p})
        return pl.DataFrame(rows)

    def _repr_html_(self) -> str:
        t = self.table()
        cols = ["capture", "design", "struct_page_bytes", "metadata_bytes_per_page", *COUNTERS,
                "unusable_index_4", "unusable_index_9", "events_per_second", "check"]
        return _html.fragment(_html.table(cols, t.select(cols).rows(),
                                          caption=f"memdesc compare: {len(self.captures)} capture(s), "
                                                  f"{len(self.designs)} designs"))


# ---------------------------------------------------------------------- the run


def resolve_designs(designs: str | Sequence[str] | None) -> list[str]:
    """``None``/``"all"``: every registered design variant; else the given specs, each checked."""
    if designs is None or designs == "all" or (not isinstance(designs, str) and list(designs) == ["all"]):
        return design_variants()
    specs = [s.strip() for s in (designs.split(",") if isinstance(designs, str) else designs) if s.strip()]
    if not specs:
        raise ConfigError("--designs: no design given")
    for s in specs:
        get_design(s)
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--designs names a design twice: {','.join(specs)}")
    return specs


def _has_highmem(machine: Machine) -> bool:
    return any(z.present and not z.direct_mapped for z in machine.zones)


def _policy_figures(r: ReplayResult, present_pages: int, every: int) -> tuple[dict, pl.DataFrame]:
    m = r.machine
    s = m.summary()
    zone = main_zone(m)
    frames = fragmentation_frame(r.samples) if r.samples is not None else None
    if frames is not None:
        mine = frames.filter(pl.col("zone") == zone)
        series = {"zone": zone, "every": every, "orders": list(ORDERS),
                  "event_index": mine["event_index"].to_list(),
                  "unusable_index": {str(o): mine[f"unusable_{o}"].to_list() for o in ORDERS},
                  "extfrag_index": {str(o): mine[f"extfrag_{o}"].to_list() for o in ORDERS}}
    else:
        series = {"zone": zone, "every": 0, "orders": list(ORDERS), "event_index": [],
                  "unusable_index": {str(o): [] for o in ORDERS}, "extfrag_index": {str(o): [] for o in ORDERS}}
    p = r.policy
    out = {
        "struct_page_bytes": s["struct_page_bytes"],
        "metadata_bytes": s["metadata_bytes"],
        "metadata_bytes_per_page": s["metadata_bytes"]["total"] / max(1, present_pages),
        "metadata_bytes_by_type": metadata_by_type(r),
        **{k: s[k] for k in COUNTERS},
        "ops": s["ops"],
        "unusable_index": s["unusable_index"],
        "extfrag_index": s["extfrag_index"],
        "fragmentation": series,
        "free_blocks": free_block_orders(m),
        "events_per_second": r.events_per_second,
        "policy": {"events_per_second": r.events_per_second, "seconds": r.seconds, "check": r.check,
                   "allocations": p.get("allocations", 0), "model_failures": p.get("model_failures", 0),
                   "real_failures": p.get("real_failures", 0),
                   "inconsistencies": int(sum(r.inconsistencies.values()))},
        "design_stats": summary_design_stats(m.design.design_stats()),
    }
    return out, frames if frames is not None else pl.DataFrame()


def _exact_figures(r: ReplayResult) -> dict:
    fv = r.final_vs_real or {}
    return {"events_per_second": r.events_per_second, "seconds": r.seconds, "check": r.check,
            "inconsistencies": int(sum(r.inconsistencies.values())),
            "free_pages_diff_pct": {k: v.get("proc_free_pages_diff_pct") for k, v in fv.items()}}


def _highmem_figures(spec: str, layout: str, mem: str) -> dict:
    h = highmem_free(spec, None, layout, mem)
    keys = ("layout", "mem", "frees_attempted", "stalled_frees", "free_path_allocations", "free_stalls",
            "late_user_attempts", "late_user_failed_for_metadata", "metadata_node_bytes", "check")
    return {k: getattr(h, k) for k in keys}


def command_line(paths: Sequence[str], designs: Sequence[str], every: int | None, highmem: str,
                 exact: bool, extra: str = "") -> str:
    """The ``memdesc compare`` command that reproduces a comparison (or one part of it); the
    bundled sample, the default capture, is left out."""
    sample = str(sample_path())
    parts = ["memdesc", "compare", *[shlex.quote(p) for p in paths if str(p) != sample],
             "--designs", ",".join(designs)]
    if every:
        parts += ["--every", str(every)]
    if highmem != "auto":
        parts += ["--highmem", highmem]
    if not exact:
        parts.append("--no-exact")
    return " ".join(parts) + (f" {extra}" if extra else "")


def compare(captures: Sequence[str | Path] | None = None, designs: str | Sequence[str] | None = None, *,
            every: int | None = None, exact: bool = True, highmem: str = "auto", highmem_mem: str = "4G",
            progress: Callable[[str], None] | None = None) -> Comparison:
    """Run every design on every capture (see the module's theory statement).

    ``captures``: capture directories or trace files (default: the bundled sample);
    ``designs``: specs or "all" (default: every registered variant); ``every``: sample the
    free lists every N events (default: about 200 samples per replay); ``exact``: also run
    exact replay where the design supports it; ``highmem``: auto (where the layout has
    HighMem) | always | never; ``progress(what)`` is called before each run.
    """
    if highmem not in HIGHMEM_CHOICES:
        raise ConfigError(f"--highmem must be one of {', '.join(HIGHMEM_CHOICES)}, got {highmem!r}")
    if every is not None and every < 1:
        raise ConfigError(f"--every must be >= 1, got {every}")
    specs = resolve_designs(designs)
    paths = [Path(c) for c in captures] if captures else [sample_path()]
    t0 = time.perf_counter()
    out_caps: list[dict] = []
    infos: list[CaptureInfo] = []
    frames: list[pl.DataFrame] = []
    maps: dict[tuple[str, str], np.ndarray] = {}
    names = _capture_names(paths)
    with reuse_snapshots():
        for path, name in zip(paths, names, strict=True):
            src = resolve_source(path)
            if progress:
                progress(f"{name}: reading the trace")
            rr = read_trace(src.trace)
            n = rr.df.height
            ev = every or max(1, n // DEFAULT_SAMPLES)
            cap: dict = {"name": name, "path": str(path), "events": n, "designs": {}}
            info = CaptureInfo(name, path, n, 0)
            for spec in specs:
                if progress:
                    progress(f"{name}: {spec} policy replay")
                r = replay(path, mode="policy", design=spec, every=ev, trace=rr, model_events=False, typed=True)
                m = r.machine
                if not cap.get("layout"):
                    cap["layout"] = m.layout.arch
                    cap["has_highmem"] = _has_highmem(m)
                    cap["present_pages"] = int(sum(z.present for z in m.zones))
                    info.max_pfn = m.max_pfn
                fig, fr = _policy_figures(r, cap["present_pages"], ev)
                if fr.height:
                    frames.append(fr.with_columns(pl.lit(name).alias("capture"), pl.lit(spec).alias("design")))
                grid, per = downsample(page_states(m))
                maps[name, spec] = grid
                info.pfns_per_cell = per
                del r, m
                checks: dict[str, str | None] = {"policy": fig["policy"]["check"]}
                fig["exact"] = None
                fig["exact_unsupported"] = None
                if exact:
                    if progress:
                        progress(f"{name}: {spec} exact replay")
                    try:
                        rx = replay(path, mode="exact", design=spec, trace=rr, typed=True)
                    except ConfigError as e:
                        fig["exact_unsupported"] = str(e)
                    else:
                        fig["exact"] = _exact_figures(rx)
                        checks["exact"] = rx.check
                        del rx
                fig["highmem"] = None
                if highmem == "always" or (highmem == "auto" and cap["has_highmem"]):
                    if progress:
                        progress(f"{name}: {spec} highmem-free scenario")
                    mem = highmem_mem if highmem == "always" else str(cap["present_pages"] * PAGE_SIZE)
                    fig["highmem"] = _highmem_figures(spec, "i386", mem)
                    checks["highmem-free"] = fig["highmem"]["check"]
                fig["check"] = _first_failure(checks)
                cap["designs"][spec] = fig
            out_caps.append(cap)
            infos.append(info)
    cmd = command_line([str(p) for p in paths], specs, every, highmem, exact)
    summary = {"captures": out_caps, "designs": specs, "seconds": time.perf_counter() - t0,
               "check": _first_failure({f"{c['name']} {d}": r["check"] for c in out_caps
                                        for d, r in c["designs"].items()}),
               "commands": {"compare": cmd}}
    validate("compare", summary)
    series = pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
    return Comparison(summary=summary, series=series, maps=maps, captures=infos)


def _capture_names(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the directory (or file) name, made unique with its parents."""
    names = []
    for p in paths:
        base = p.name if p.is_dir() else p.name.split(".")[0] if p.parent == Path(".") else p.parent.name
        names.append(base or str(p))
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


__all__ = ["Comparison", "MAP_STATES", "ORDERS", "compare", "command_line", "downsample", "fragmentation_frame",
           "metadata_by_type", "page_states", "resolve_designs"]
