"""Replay a real kernel's kmem trace on a modelled machine: exactly, or as a demand stream.

Theory
------
A capture (the layout of ``../shared/traces/*`` and of the bundled sample) is a kmem
trace of a running Linux machine plus /proc snapshots taken just before tracing started
(``before.*``) and just after it stopped (``after.*``).  :func:`replay` runs a trace
through one of two numba event loops (:mod:`memdesc.sim.replay_kernels`):

* ``mode="exact"``: start from the machine rebuilt from ``before.*``
  (:func:`memdesc.sim.snapshot.machine_from_snapshot`) and apply every event at its real pfn.
  If model and trace were perfectly consistent, the model would end in the real
  machine's state; the final free lists are compared with ``after.buddyinfo`` and with
  the free state rebuilt from ``after.kpageflags``.  Every event whose pages are not in
  the state the event implies is counted (per event and state found) and resolved
  without breaking an invariant.  Unavoidable sources: pages on per-CPU lists at snapshot
  time (kpageflags cannot see them: the import keeps them allocated, the trace then
  allocates or drains them), events between the snapshot and the start of tracing, pages
  the kernel takes off the free lists without a kmem tracepoint (highatomic reservation,
  free page reporting) and non-compound multi-page allocations that kpageflags shows as
  separate pages.  Three things the trace does show are used beyond the kmem events:
  compaction's free scanner (``__isolate_free_page()``) from its
  ``mm_compaction_isolate_freepages`` events (:mod:`memdesc.trace.compaction`), a batched
  free applied where ``free_unref_folios()`` puts the page on the pcp list (its
  ``mm_page_free_batched``, :func:`batched_pairs`), and each pageblock's migratetype at the
  start taken from the first event that prints it (:func:`first_revealed_types`).

* ``mode="shadow"``: the exact replay, recording before each event the model's own
  decision from its state (:mod:`memdesc.sim.shadow`).

* ``mode="policy"``: the trace is a demand stream served by a design (``linux``,
  ``radix``, ...): each ``mm_page_alloc`` (real failures included, counted apart) becomes
  ``pa_alloc(gfp, order, cpu)`` and the design picks the pfn; each ``mm_page_free``
  releases what its trace pfn was given.  From a capture the run starts from the
  ``before`` snapshot; from a bare trace file, from an empty machine.  zone_locked,
  pcpu_drain and extfrag events are the real allocator's internals: they are counted and
  set beside the model's own kmem events (its event log).

*Typed replay* (exact and policy, on by default): every ``mm_page_alloc`` gets a memdesc
type (:mod:`memdesc.sim.memtypes`: the capture's folio-level events, else the gfp/order
classifier) and becomes a typed allocation of the folio layer (:mod:`memdesc.mm.folio`):
on designs that separate descriptors its descriptor is allocated from its slab cache (slab
pages from the design itself) and freed with it.  Policy replay allocates descriptor and
pages with ``memdesc_alloc``; exact replay types the pages the trace placed
(``memdesc_adopt``).  A free of part of a typed allocation (``split_page()`` of a
non-compound allocation) ends its typing: the pieces are bare pages, as split_page() makes
them; a design that cannot split in place (vmem) keeps the allocation, typed, whole until
its last piece is freed.  The run reports descriptor bytes per type (with samples over the
run), two-part allocations, descriptor failures and allocations on free paths
(``typed``), and, from a capture with ``after.kpageflags``, the types of the pages still
allocated at the end against their kpageflags classes (``type_agreement``).  Checkpoints save
the allocator and the loop, not the folio layer: a checkpointed or resumed replay is untyped.

A run reports the events by type, events per second of the replay loop, inconsistencies,
the final buddyinfo beside the real one(s), and optionally samples the free lists every
N events (a Parquet time series).  The bundled sample (:func:`sample_path`) is the
``anon`` capture, so ``memdesc replay`` works on a fresh clone.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from memdesc import _html
from memdesc.errors import ConfigError, FormatError
from memdesc.mm import folio as F
from memdesc.mm import vmstat
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import (
    MIGRATETYPE_BY_NAME,
    NR_PAGE_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGE_SHIFT,
    PAGEBLOCK_ORDER,
)
from memdesc.mm.page_alloc import core, dispatch
from memdesc.sim import memtypes as MT
from memdesc.sim import replay_kernels as K
from memdesc.sim import shadow
from memdesc.sim import shadow_kernels as SK
from memdesc.sim.checkpoint import Checkpoints
from memdesc.sim.snapshot import capture as open_capture
from memdesc.sim.snapshot import kpage_snapshot, machine_from_snapshot
from memdesc.trace import events as E
from memdesc.trace.compaction import isolate_columns, read_isolate_freepages
from memdesc.trace.kpageflags import KPageSnapshot, PageClass
from memdesc.trace.reader import TraceReadResult, read_trace, to_numpy_columns

MODES = ("exact", "policy", "shadow", "mm")
#: modes run by another driver (``mm``: memdesc.sim.mm_replay, the folio-level events through the MM)
OTHER_DRIVER_MODES = ("mm",)
#: file names looked for in a capture directory, in this order
TRACE_NAMES = ("trace.txt.zst", "trace.txt.gz", "trace.txt", "trace.zst", "trace.gz", "trace")
#: rows of the model's event log in policy mode (counted and emptied whenever half full)
EVLOG_ROWS = 1 << 18
DEFAULT_CHUNK = 1 << 18
#: migratetype numbering of a 6.18 kernel without CONFIG_CMA (what the captures print)
DEFAULT_MT_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")


def sample_path() -> Path:
    """The bundled real capture (the ``anon`` workload, see its README)."""
    p = Path(str(importlib.resources.files("memdesc").joinpath("data", "sample")))
    if not (p / "trace.txt.zst").is_file():
        raise ConfigError(f"the bundled sample is missing ({p}): reinstall memdesc")
    return p


@dataclass
class ReplaySource:
    """A trace file and, when it belongs to a capture, the capture directory."""

    trace: Path
    capture: Path | None


def resolve_source(path: str | Path | None) -> ReplaySource:
    """A trace file, or a capture directory (trace.txt.zst + before.*/after.*); None: the sample."""
    p = sample_path() if path is None else Path(path)
    if p.is_dir():
        for name in TRACE_NAMES:
            if (p / name).is_file():
                cap = p if (p / "before.zoneinfo").is_file() else None
                return ReplaySource(p / name, cap)
        raise ConfigError(f"{p}: no trace file in this directory (looked for {', '.join(TRACE_NAMES)})")
    if not p.is_file():
        raise ConfigError(f"{p}: no such file or directory")
    return ReplaySource(p, None)


def mt_table(names: tuple[str, ...]) -> np.ndarray:
    """printed migratetype -> memdesc's internal one (-1 for numbers the kernel does not print)."""
    table = np.full(8, -1, np.int64)
    for i, n in enumerate(names[:8]):
        if n not in MIGRATETYPE_BY_NAME:
            raise FormatError(f"unknown migratetype name {n!r} (known: {', '.join(MIGRATETYPE_BY_NAME)})")
        table[i] = MIGRATETYPE_BY_NAME[n]
    return table


def _map_mt(col: np.ndarray, table: np.ndarray) -> np.ndarray:
    c = col.astype(np.int64)
    ok = (c >= 0) & (c < table.shape[0])
    return np.where(ok, table[np.clip(c, 0, table.shape[0] - 1)], -1).astype(np.int8)


@dataclass
class ReplayResult:
    """What a replay did and found (see :meth:`as_dict` for the JSON form)."""

    mode: str
    machine: Machine
    source: str
    capture: str | None
    events: dict[str, int]
    events_replayed: int
    seconds: float
    load_seconds: float
    read_seconds: float
    malformed_lines: int
    lost_events: int
    inconsistencies: dict[str, int]
    notes: dict[str, int]
    states: dict[str, dict[str, int]] = field(default_factory=dict)
    policy: dict[str, int] = field(default_factory=dict)
    model_events: dict[str, int] | None = None
    replay_map_bytes: int = 0
    final_vs_real: dict | None = None
    pcp_pages: dict = field(default_factory=dict)
    samples: pl.DataFrame | None = None
    check: str = "not run"
    shadow: dict | None = None
    divergences: dict | None = None
    typed: dict | None = None
    type_agreement: dict | None = None
    folios: F.Folios | None = None
    #: the event a resumed run started at (0: from the beginning)
    resumed_at: int = 0
    #: the loop's own arrays at the end (replay map / page locations, counters): what a checkpoint saves
    loop_state: dict = field(default_factory=dict, repr=False)

    @property
    def events_per_second(self) -> float:
        return self.events_replayed / self.seconds if self.seconds > 0 else 0.0

    def _repr_html_(self) -> str:
        """Jupyter: what was replayed, how fast, what was found, and the machine at the end."""
        m = self.machine
        head = _html.kv_table({"source": self.source, "mode": self.mode, "design": m.design.name,
                               "events replayed": self.events_replayed,
                               "events per second": round(self.events_per_second),
                               "inconsistencies": sum(self.inconsistencies.values()), "check": self.check},
                              caption="replay")
        events = _html.table(("tracepoint", "events"), self.events.items(), caption="events")
        return _html.fragment(head, events, m._repr_html_())

    def as_dict(self) -> dict:
        """Machine.summary() plus the replay's own keys (what ``--json`` writes)."""
        d = self.machine.summary()
        d.update({
            "mode": self.mode, "source": self.source, "capture": self.capture, "events": self.events,
            "events_replayed": self.events_replayed, "seconds": self.seconds,
            "events_per_second": self.events_per_second, "load_seconds": self.load_seconds,
            "read_seconds": self.read_seconds, "malformed_lines": self.malformed_lines,
            "lost_events": self.lost_events, "inconsistencies": self.inconsistencies, "notes": self.notes,
            "states": self.states, "policy": self.policy, "model_events": self.model_events,
            "replay_map_bytes": self.replay_map_bytes, "final_vs_real": self.final_vs_real,
            "pcp_pages": self.pcp_pages,
            "resumed_at": self.resumed_at,
            "check": self.check,
        })
        d["typed"] = self.typed
        d["type_agreement"] = self.type_agreement
        if self.shadow is not None:
            d["shadow"] = self.shadow
            if self.divergences is not None:
                d["divergences"] = self.divergences
        return d


# ------------------------------------------------------------------ machine


def _trace_extent(cols: dict[str, np.ndarray]) -> int:
    """One past the highest pfn any event touches."""
    pfn = cols["pfn"]
    ok = pfn >= 0
    if not ok.any():
        return 0
    order = np.clip(cols["order"].astype(np.int64), 0, 20)
    return int((pfn[ok] + (np.int64(1) << order[ok])).max())


def _bare_machine(design: str, mem: str | None, cpus: int | None, npfn: int, evlog: int,
                  config: dict | None = None) -> Machine:
    if mem is None:
        unit = 64 << 20
        mem = str(max(unit, -(-(npfn << PAGE_SHIFT) // unit) * unit))
    return Machine.create(mem=mem, design=design, cpus=cpus, evlog=evlog, **(config or {}))


@dataclass
class StartState:
    """The machine a replay starts from, and what the replay knows about it.

    ``unavailable``: per pfn, whether the snapshot saw it as not yet there (an all-zero
    kpageflags section: memory the kernel had not accepted or onlined yet).
    ``pre_pfn``/``pre_order``: the allocations that existed before the trace (the snapshot's;
    none on an empty machine; on a machine passed in, every allocation it holds).  Any other
    allocation the model holds is the design's own metadata (radix tree-node pages, vmem
    descriptor pages): replay never touches it.  ``from_snapshot``: started from a capture.
    """

    machine: Machine
    unavailable: np.ndarray
    pre_pfn: np.ndarray
    pre_order: np.ndarray
    from_snapshot: bool = False

    @classmethod
    def of_machine(cls, machine: Machine) -> StartState:
        """A machine passed in: every allocation it holds counts as allocated before the trace."""
        owner = machine.design.zs.owner
        heads = np.flatnonzero((owner != core.OWNER_NONE) & (owner != core.OWNER_RESERVED)
                               & (owner != core.OWNER_PCP)).astype(np.int64)
        return cls(machine, np.zeros(1, np.bool_), heads, (owner[heads].astype(np.int64) >> 1) & 0xF)


def build_machine(src: ReplaySource, mode: str, design: str = "linux", mem: str | None = None,
                  cpus: int | None = None, npfn: int = 0, trace_cpus: int = 1,
                  model_events: bool = True, config: dict | None = None) -> StartState:
    """The machine a replay starts from: the capture's ``before`` snapshot, or an empty one.

    In policy mode the machine records its own kmem events (counted, not kept) unless
    ``model_events`` is false.  ``config``: AllocConfig tunables (watermark_scale_factor,
    fail_descriptor_alloc, ...)."""
    evlog = EVLOG_ROWS if (mode == "policy" and model_events) else 0
    config = dict(config or {})
    if "evlog" in config:
        raise ConfigError("evlog is set by the replay (model_events)")
    if src.capture is not None:
        if mem is not None:
            raise ConfigError("--mem applies to a bare trace file; a capture's machine comes from its zoneinfo")
        m, state, snap = machine_from_snapshot(src.capture, "before", design, cpus, evlog=evlog, **config)
        return StartState(m, np.ascontiguousarray(snap.page_class == PageClass.UNAVAILABLE),
                          state.alloc_pfn.astype(np.int64), state.alloc_order.astype(np.int64), True)
    m = _bare_machine(design, mem, cpus if cpus is not None else max(1, trace_cpus), npfn, evlog, config)
    empty = np.zeros(0, np.int64)
    return StartState(m, np.zeros(1, np.bool_), empty, empty)


# ------------------------------------------------------------------ comparison with the real after state


def _pages(counts) -> int:
    return int(sum(int(c) << o for o, c in enumerate(counts)))


def _pct(a: int, b: int) -> float | None:
    return None if b == 0 else 100.0 * (a - b) / b


def compare_final(machine: Machine, capture: Path) -> dict | None:
    """Per zone ("NODE:ZONE"): the model's free lists beside after.buddyinfo and the free state
    rebuilt from after.kpageflags: counts per order, their differences, free pages and the
    differences in percent of the real value."""
    files = open_capture(capture, "after")
    proc = files.buddyinfo()
    kpf = None
    if files.path("kpageflags", required=False) is not None and (capture / "after.zoneinfo").is_file():
        kpf = kpage_snapshot(capture, "after").buddyinfo_rebuilt()
    if proc is None and kpf is None:
        return None
    proc_d = proc.to_dict() if proc is not None else {}
    model = machine.buddyinfo().to_dict()
    out: dict = {}
    for key in dict.fromkeys([*proc_d, *(kpf or {})]):
        mo = model.get(key, [0] * NR_PAGE_ORDERS)
        row: dict = {"model_free_pages": _pages(mo), "model": list(mo)}
        for name, table in (("proc", proc_d), ("kpageflags", kpf or {})):
            if key not in table:
                row[f"{name}_free_pages"] = None
                continue
            real = list(table[key])
            rp = _pages(real)
            row[f"{name}_free_pages"] = rp
            row[name] = real
            row[f"{name}_diff"] = [a - b for a, b in zip(mo, real, strict=False)]
            row[f"{name}_free_pages_diff_pct"] = _pct(row["model_free_pages"], rp)
            row[f"{name}_order_diff_pct"] = [_pct(a, b) for a, b in zip(mo, real, strict=False)]
        out[key] = row
    return out


def pcp_pages(machine: Machine, capture: Path | None) -> dict:
    """Pages on per-CPU lists at the end: the model's, and after.zoneinfo's when there is one."""
    out = {"model": int(machine.design.zs.pcp[:, :, core.PCP_COUNT].sum())}
    zi = capture / "after.zoneinfo" if capture is not None else None
    if zi is not None and zi.is_file():
        out["after_zoneinfo"] = int(sum(p.count for z in vmstat.read_zoneinfo(zi) if z.pagesets for p in z.pagesets))
    return out


# ------------------------------------------------------------------ the replay


def batched_pairs(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The ``bm`` column of exact replay: pairs each mm_page_free of a pcp order with the
    mm_page_free_batched of the same page that follows it (free_unref_folios() prints the
    first in its prepare loop, the second when the page goes on the pcp list).  For
    mm_page_free: 1 if paired, else 0; for mm_page_free_batched: the paired free's order,
    else -1; -1 for other events."""
    n = ev.shape[0]
    bm = np.full(n, -1, np.int8)
    bm[ev == E.FREE] = 0
    idx = np.flatnonzero(pfn >= 0)
    if idx.shape[0] < 2:
        return bm
    srt = idx[np.lexsort((idx, pfn[idx]))]  # by pfn, then source order
    a, b = srt[:-1], srt[1:]
    o = order[a].astype(np.int64)
    m = ((pfn[a] == pfn[b]) & (ev[a] == E.FREE) & (ev[b] == E.FREE_BATCHED)
         & ((o <= PAGE_ALLOC_COSTLY_ORDER) | (o == PAGEBLOCK_ORDER)))
    bm[a[m]] = 1
    bm[b[m]] = o[m]
    return bm


def _columns(df: pl.DataFrame, names: tuple[str, ...], isolate: dict[str, np.ndarray] | None = None
             ) -> dict[str, np.ndarray]:
    cols = to_numpy_columns(df, ("line", "event", "cpu", "pfn", "order", "gfp", "migratetype", "percpu_refill",
                                 "fallback_order", "fallback_migratetype", "change_ownership", "ts_ns"))
    table = mt_table(names)
    cols["mt"] = _map_mt(cols["migratetype"], table)
    cols["fbmt"] = _map_mt(cols["fallback_migratetype"], table)
    cols["gfp"] = cols["gfp"].astype(np.int64)
    cols["bm"] = batched_pairs(cols["event"], cols["pfn"], cols["order"])
    cols["aux"] = np.zeros(cols["event"].shape[0], np.int64)
    if isolate is not None and isolate["line"].shape[0]:
        cols = _merge_isolate(cols, isolate)
    return cols


def _merge_isolate(cols: dict[str, np.ndarray], iso: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Insert the compaction free scanner's events (K.EV_ISOLATE_FREE) among the kmem events by
    source line: pfn = start_pfn, gfp = end_pfn, aux = nr_taken."""
    k = iso["line"].shape[0]
    extra = {name: np.zeros(k, a.dtype) for name, a in cols.items()}
    for name in ("migratetype", "percpu_refill", "fallback_order", "fallback_migratetype", "change_ownership",
                 "mt", "fbmt", "bm"):
        extra[name][:] = -1
    extra["line"][:] = iso["line"]
    extra["event"][:] = K.EV_ISOLATE_FREE
    extra["cpu"][:] = iso["cpu"]
    extra["ts_ns"][:] = iso["ts_ns"]
    extra["pfn"][:] = iso["start_pfn"]
    extra["gfp"][:] = iso["end_pfn"]
    extra["aux"][:] = iso["nr_taken"]
    order = np.argsort(np.concatenate([cols["line"], extra["line"]]), kind="stable")
    return {name: np.ascontiguousarray(np.concatenate([cols[name], extra[name]])[order]) for name in cols}


def _samples_frame(machine: Machine, samples: np.ndarray, pos: np.ndarray, n: int, ts: np.ndarray) -> pl.DataFrame:
    zones = machine.zones
    rows: dict[str, list] = {"event_index": [], "ts_ns": [], "node": [], "zone": [], "free_pages": []}
    for o in range(NR_PAGE_ORDERS):
        rows[f"order_{o}"] = []
    for k in range(n):
        for zi, z in enumerate(zones):
            if z.present == 0:
                continue
            rows["event_index"].append(int(pos[k]) + 1)
            rows["ts_ns"].append(int(ts[pos[k]]))
            rows["node"].append(z.node)
            rows["zone"].append(z.name)
            rows["free_pages"].append(int(samples[k, zi, NR_PAGE_ORDERS]))
            for o in range(NR_PAGE_ORDERS):
                rows[f"order_{o}"].append(int(samples[k, zi, o]))
    schema = {"event_index": pl.Int64, "ts_ns": pl.Int64, "node": pl.Int32, "zone": pl.String,
              "free_pages": pl.Int64, **{f"order_{o}": pl.Int64 for o in range(NR_PAGE_ORDERS)}}
    return pl.DataFrame(rows, schema=schema)


@dataclass
class TypedRun:
    """The typed layer of a replay: the folio layer of the machine, each event's memdesc type
    (-1: not an allocation), where the types came from, and descriptor bytes per type sampled
    after every chunk of events.  ``on`` False: an untyped replay (the kernels still take the
    arguments; nothing is typed)."""

    on: bool
    folios: F.Folios
    types: np.ndarray
    source: np.ndarray
    holder: np.ndarray
    samples: list = field(default_factory=list)

    def ready(self) -> F.Folios:
        """The folio layer with headroom for the next kernel call (grown here, between calls)."""
        if self.on:
            self.folios._ensure()
        return self.folios

    def sample(self, event_index: int) -> None:
        if self.on:
            self.samples.append((int(event_index), self.folios.state.tstat[:, F.TS_DESC_BYTES].copy()))

    @classmethod
    def build(cls, machine: Machine, cols: dict[str, np.ndarray], npfn: int, trace: Path | None,
              on: bool) -> TypedRun:
        n = cols["event"].shape[0]
        fo = F.Folios.of(machine)
        if not on:
            z = np.full(n, -1, np.int64)
            return cls(False, fo, z, np.full(n, -1, np.int8), np.full(1, -1, np.int64))
        fev = MT.folio_type_events(trace) if trace is not None else None
        npages = max(int(npfn), int(machine.design.zs.owner.shape[0]))
        types, source, holder = MT.allocation_types(cols, npages, fev)
        return cls(True, fo, types, source, holder)

    def summary(self, policy_counts: dict[str, int] | None = None) -> dict:
        """The ``typed`` JSON section: descriptor bytes per type (end and samples), two-part
        allocations, descriptor failures, free-path allocations, allocations per type and source."""
        fo = self.folios
        s = fo.summary()
        names = {t: n for t, n in F.TYPE_NAMES.items()}
        over_time = [{"event_index": k, "descriptor_bytes": {names[t]: int(v[t]) for t in names if v[t]}}
                     for k, v in self.samples]
        if len(over_time) > 64:  # keep a few: evenly spaced, the last one included
            idx = np.unique(np.linspace(0, len(over_time) - 1, 64).astype(int))
            over_time = [over_time[i] for i in idx]
        out = {k: s[k] for k in ("design", "struct_page_bytes", "descriptors_separate", "descriptor_sizes",
                                 "descriptor_bytes", "descriptor_slab_bytes", "two_part_allocations",
                                 "descriptor_failures", "free_path_allocations", "live")}
        ms = fo.state  # the caches' object sizes (struct slab: the slab's own self-hosted cache)
        out["descriptor_sizes"] = {names[t]: [int(ms.dsize[t, 0]), int(ms.dsize[t, 1])] for t in names
                                   if ms.cache[t, 0] >= 0 or ms.cache[t, 1] >= 0}
        out["free_path_allocations_slab"] = int(fo.slab.state.meta[F.M_FP_ALLOCS])
        out["free_path_allocations_design"] = int(fo.pa.stats[core.ST_FREE_PATH_ALLOCS])
        out["types"] = s["types"]
        out["descriptor_bytes_over_time"] = over_time
        out["sources"] = MT.type_sources(self.types, self.source)
        out["operations"] = {k: v for k, v in s["operations"].items() if k in ("alloc", "free")}
        if policy_counts is not None:
            out["typed_allocations_split"] = policy_counts.get("typed_allocations_split", 0)
        return out


def type_agreement_of(ty: TypedRun, capture: Path | None) -> dict | None:
    """``type_agreement`` of a typed replay of a capture with an after.kpageflags dump."""
    if not ty.on or capture is None or not any((capture / f"after.kpageflags{x}").is_file()
                                               for x in ("", ".zst", ".gz")):
        return None
    snap = KPageSnapshot.from_capture(capture, "after")
    return MT.type_agreement(ty.types, ty.holder, snap.page_class)


def _in_chunks(n: int, chunk: int, step: Callable[[int, int], int], progress, first: int = 0,
               ckpt: Checkpoints | None = None, save: Callable[[int, float], None] | None = None,
               elapsed: float = 0.0) -> float:
    """Run ``step(i, j) -> next i`` over events [first, n) in chunks, calling ``save(i, elapsed)``
    at every checkpoint position before n; seconds spent in ``step`` (plus ``elapsed``)."""
    i = first
    while i < n:
        stop = ckpt.next_stop(i, n) if ckpt is not None and ckpt.active else n
        t = time.perf_counter()
        nxt = int(step(i, min(stop, i + chunk)))
        elapsed += time.perf_counter() - t
        if progress:
            progress(nxt - i)
        i = nxt
        if save is not None and i == stop and i < n:
            save(i, elapsed)
    return elapsed


def _exact_loop_state(m: Machine, start: StartState, samp) -> dict[str, np.ndarray]:
    """The exact loop's own arrays (beside the machine): what a checkpoint saves."""
    st = m.state
    loc = np.full(st.owner.shape[0], K.LOC_NONE, np.int32)
    loc[start.pre_pfn[start.pre_pfn < loc.shape[0]]] = K.LOC_ALLOC
    return {"loc": loc, "cnt": np.zeros((K.NR_EVENTS, K.NR_STATES), np.int64), "xc": np.zeros(K.NR_X, np.int64),
            "unavail": start.unavailable, "samples": samp[0], "sample_pos": samp[1], "sample_n": samp[2]}


def _policy_loop_state(m: Machine, start: StartState, samp, npfn: int) -> dict[str, np.ndarray]:
    """The policy loop's own arrays: the replay map, counters, the trace clock, the model's
    event counts, samples."""
    st = m.state
    nmap = max(npfn, st.owner.shape[0] if start.pre_pfn.shape[0] else 0, 1)
    map_pfn = np.full(nmap, -1, np.int64)
    map_order = np.full(nmap, K.MAP_NONE, np.int8)
    if start.pre_pfn.shape[0]:
        keep = start.pre_pfn < nmap
        map_pfn[start.pre_pfn[keep]] = start.pre_pfn[keep]
        map_order[start.pre_pfn[keep]] = (K.MAP_PRE + start.pre_order[keep]).astype(np.int8)
    # a design that cannot split an allocation in place releases it when its last piece goes
    defer = np.zeros(1 if m.design.splits_on_free else st.owner.shape[0], np.int64)
    return {"map_pfn": map_pfn, "map_order": map_order, "defer": defer, "pc": np.zeros(K.NR_P, np.int64),
            # next vmstat_update, in trace time (-1: at the first event)
            "tick": np.full(1, -1, np.int64), "model_ev": np.zeros(E.NR_EVENTS, np.int64),
            "lost": np.zeros(1, np.int64), "unavail": start.unavailable,
            "samples": samp[0], "sample_pos": samp[1], "sample_n": samp[2]}


def _run_exact(m: Machine, cols: dict, chunk: int, every: int, progress, ls: dict, first: int,
               ckpt: Checkpoints | None, save, elapsed: float, ty: TypedRun) -> tuple[float, dict]:
    d = m.design
    if not d.exact_replay or not dispatch.has(type(d.state), *dispatch.EXACT_PRIMITIVES):
        raise ConfigError(f"exact replay needs a design with the exact-placement primitives "
                          f"({', '.join(dispatch.EXACT_PRIMITIVES)}): the {d.name} design does not have them")
    st = m.state
    loc, cnt, xc, unavail = ls["loc"], ls["cnt"], ls["xc"], ls["unavail"]
    ncpu = m.nr_cpus
    pcp_on = bool(st.cfg[core.CFG_PCP_ENABLED])
    samples, pos, sn = ls["samples"], ls["sample_pos"], ls["sample_n"]
    args = (cols["event"], cols["cpu"], cols["pfn"], cols["order"], cols["gfp"], cols["mt"], cols["percpu_refill"],
            cols["fallback_order"], cols["fbmt"], cols["change_ownership"], cols["aux"], cols["bm"])
    def step(i: int, j: int) -> int:
        fo = ty.ready()
        nxt = K.exact_kernel(st, fo.state, fo.slab.state, ty.on, loc, unavail, *args, ty.types, i, j, ncpu, pcp_on,
                             cnt, xc, every, samples, pos, sn)
        ty.sample(nxt)
        return nxt

    step(0, 0)  # compile (or load from the cache) before timing
    elapsed = _in_chunks(cols["event"].shape[0], chunk, step, progress, first, ckpt, save, elapsed)
    return elapsed, {"cnt": cnt, "xc": xc, "map_bytes": int(loc.nbytes)}


def _run_policy(m: Machine, cols: dict, chunk: int, every: int, progress, ls: dict, first: int,
                ckpt: Checkpoints | None, save, elapsed: float, ty: TypedRun) -> tuple[float, dict]:
    st = m.state
    unavail = ls["unavail"]
    map_pfn, map_order, defer, pc = ls["map_pfn"], ls["map_order"], ls["defer"], ls["pc"]
    split = bool(m.design.splits_on_free)
    evlog_on = int(st.cfg[core.CFG_EVLOG]) != 0
    cap = st.evlog.shape[0]
    limit = cap // 2 if evlog_on else np.iinfo(np.int64).max
    model_ev, lost = ls["model_ev"], ls["lost"]
    ncpu = m.nr_cpus
    samples, pos, sn = ls["samples"], ls["sample_pos"], ls["sample_n"]
    args = (cols["event"], cols["cpu"], cols["pfn"], cols["order"], cols["gfp"], ty.types, cols["ts_ns"], ls["tick"])
    def flush() -> None:
        k = int(st.evlog_n[0])
        kept = min(k, cap)
        model_ev[:] += np.bincount(st.evlog[:kept, 0], minlength=E.NR_EVENTS)[:E.NR_EVENTS]
        lost[0] += k - kept
        st.evlog_n[0] = 0

    def step(i: int, j: int) -> int:
        fo = ty.ready()
        nxt = K.policy_kernel(st, split, fo.state, fo.slab.state, ty.on, unavail, *args, i, j, ncpu, map_pfn,
                              map_order, defer, pc, every, samples, pos, sn, limit)
        ty.sample(nxt)
        # emptied only where the kernel stopped for it (never at a chunk's end): the log, a state
        # array, is then the same however the run is cut into chunks or checkpoints
        if evlog_on and st.evlog_n[0] > limit:
            flush()
        return nxt

    step(0, 0)  # compile (or load from the cache) before timing
    elapsed = _in_chunks(cols["event"].shape[0], chunk, step, progress, first, ckpt, save, elapsed)
    if evlog_on:
        flush()
    model = None
    if evlog_on:
        model = {name: int(model_ev[c]) for c, name in enumerate(E.EVENT_NAMES)}
        if lost[0]:
            model["lost"] = int(lost[0])
    return elapsed, {"pc": pc, "model_events": model,
                     "map_bytes": int(map_pfn.nbytes + map_order.nbytes + defer.nbytes)}


def first_revealed_types(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pageblock migratetypes as the trace first shows them: (pageblock index, type).

    The snapshot gives only the number of pageblocks of each type (pagetypeinfo); which
    block has which type is inferred.  Three events print a block's type: a zone_locked
    event the list it took the block from (the pageblock's type since 6.9; for a claim, the
    new type, and the extfrag after it the old one as fallback_migratetype), a pcpu_drain
    get_pfnblock_migratetype(), an extfrag the fallback type of the block it raided.  The
    first such event of a pageblock gives its type at the start of the trace, unless an
    event the trace does not show changed it before (a highatomic reservation, an
    isolation)."""
    ev, pfn, order = cols["event"], cols["pfn"], cols["order"].astype(np.int64)
    mt = cols["mt"].astype(np.int64)
    fbmt = cols["fbmt"].astype(np.int64)
    reveal = np.where(ev == E.EXTFRAG, fbmt, mt)
    # a claim below pageblock_order: zone_locked (new type) then extfrag of the same block
    idx = np.flatnonzero((pfn >= 0) & ((ev == E.ALLOC_ZONE_LOCKED) | (ev == E.EXTFRAG)))
    if idx.shape[0] > 1:
        srt = idx[np.lexsort((idx, pfn[idx]))]
        a, b = srt[:-1], srt[1:]
        claim = (pfn[a] == pfn[b]) & (ev[a] == E.ALLOC_ZONE_LOCKED) & (ev[b] == E.EXTFRAG) \
            & (cols["change_ownership"][b] == 1)
        reveal[a[claim]] = fbmt[b[claim]]
    # an extfrag event shows the type of the whole fallback block (fallback_order)
    span = np.where(ev == E.EXTFRAG, np.maximum(order, cols["fallback_order"].astype(np.int64)), order)
    sel = np.flatnonzero((pfn >= 0) & ((ev == E.ALLOC_ZONE_LOCKED) | (ev == E.PCPU_DRAIN) | (ev == E.EXTFRAG))
                         & (reveal >= 0) & (reveal < len(MIGRATETYPE_BY_NAME)) & (span <= 10))
    pbs = [pfn[sel] >> PAGEBLOCK_ORDER]
    pos = [sel]
    big = sel[span[sel] > PAGEBLOCK_ORDER]
    base = (pfn[big] >> 10) << (10 - PAGEBLOCK_ORDER)
    for k in range(1 << (10 - PAGEBLOCK_ORDER)):  # every pageblock of an order-10 block
        pbs.append(base + k)
        pos.append(big)
    pb_all = np.concatenate(pbs)
    pos_all = np.concatenate(pos)
    srt = np.lexsort((pos_all, pb_all))
    pb_all, pos_all = pb_all[srt], pos_all[srt]
    first = np.ones(pb_all.shape[0], np.bool_)
    first[1:] = pb_all[1:] != pb_all[:-1]
    return pb_all[first], reveal[pos_all[first]]


def apply_revealed_types(m: Machine, cols: dict[str, np.ndarray]) -> int:
    """Set each pageblock to the type the trace first shows for it (first_revealed_types());
    returns the pageblocks changed.  Free blocks move to their new lists at the tail, as
    set_block_type() does."""
    st = m.state
    pb, t = first_revealed_types(cols)
    ok = pb < st.pb.shape[0]
    pb, t = pb[ok], t[ok]
    cur = (st.pb[pb] & core.PB_MIGRATETYPE_MASK).astype(np.int64)
    diff = np.flatnonzero((cur != t) & (st.pb_zone[pb] >= 0))
    return int(K.set_block_types(st, (pb[diff] << PAGEBLOCK_ORDER).astype(np.int64), t[diff].astype(np.int64)))


def _run_shadow(m: Machine, cols: dict, chunk: int, progress, start: StartState, capture: Path | None,
                ndiv: int) -> tuple[float, dict]:
    """Exact replay with the model's decision recorded before each event (memdesc.sim.shadow)."""
    st = m.state
    sh = shadow.init_state(m, cols, start.pre_pfn, capture, ndiv, start.from_snapshot)
    loc = np.full(st.owner.shape[0], K.LOC_NONE, np.int32)
    loc[start.pre_pfn[start.pre_pfn < loc.shape[0]]] = K.LOC_ALLOC
    cnt = np.zeros((K.NR_EVENTS, K.NR_STATES), np.int64)
    xc = np.zeros(K.NR_X, np.int64)
    ncpu = m.nr_cpus
    pcp_on = bool(st.cfg[core.CFG_PCP_ENABLED])
    unavail = start.unavailable
    args = (cols["event"], cols["cpu"], cols["pfn"], cols["order"], cols["gfp"], cols["mt"], cols["percpu_refill"],
            cols["fallback_order"], cols["fbmt"], cols["change_ownership"], cols["aux"], cols["bm"], cols["ts_ns"])

    def step(i: int, j: int) -> int:
        return SK.shadow_kernel(st, sh, loc, unavail, *args, i, j, ncpu, pcp_on, cnt, xc)

    step(0, 0)  # compile (or load from the cache) before timing
    elapsed = _in_chunks(cols["event"].shape[0], chunk, step, progress)
    SK.finish(st, sh, loc, unavail, ncpu)
    return elapsed, {"cnt": cnt, "xc": xc, "map_bytes": int(loc.nbytes), "shadow": shadow.summary(sh),
                     "divergences": shadow.divergences(sh, m) if ndiv else None}


def trace_digest(cols: dict[str, np.ndarray]) -> str:
    """A digest of the columns the replay loops read (a resumed run must see the same trace)."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("event", "cpu", "pfn", "order", "gfp", "mt", "percpu_refill", "fallback_order", "fbmt",
                 "change_ownership", "aux", "bm", "ts_ns"):
        h.update(name.encode())
        h.update(np.ascontiguousarray(cols[name]).tobytes())
    return h.hexdigest()


def replay(source: str | Path | TraceReadResult | pl.DataFrame | None = None, *, mode: str = "exact",
           design: str = "linux", machine: Machine | None = None, mem: str | None = None, cpus: int | None = None,
           every: int = 0, strict: bool = False, compare: bool = True, chunk: int = DEFAULT_CHUNK,
           mt_names: tuple[str, ...] | None = None, model_events: bool = True,
           trace: TraceReadResult | None = None, config: dict | None = None, compaction: bool = True,
           divergences: int = 0, pageblock_types: str = "trace", typed: bool = False,
           progress: Callable[[int], None] | None = None,
           on_start: Callable[[int], None] | None = None,
           checkpoint: str | Path | None = None, checkpoint_at: int = 0, checkpoint_every: int = 0,
           resume: str | Path | None = None) -> ReplayResult:
    """Replay a trace (see the module docstring).

    ``source``: a trace file, a capture directory, None (the bundled sample), or an
    already parsed trace (TraceReadResult / frame).  ``machine``: replay onto this machine
    (changed in place) instead of building one.  ``mem``/``cpus``: size of the empty
    machine of a bare trace.  ``every``: sample the free lists every N events
    (``result.samples``).  ``strict``: malformed trace lines raise FormatError.
    ``mt_names``: the traced kernel's migratetype names in its numbering (default: the
    capture's pagetypeinfo, else the machine's configuration).  ``model_events``: in policy
    mode, count the model's own kmem events (its event log; costs a little time).
    ``trace``: the already parsed trace of ``source`` (a capture or file): one read serves
    several replays of it (``memdesc compare``).  ``config``: AllocConfig tunables of the
    machine the replay builds (``memdesc sweep`` parameters).
    ``compaction``: in exact mode, replay compaction's free scanner from the trace's
    mm_compaction_isolate_freepages events (when it has any).  ``mode="shadow"``: exact
    replay recording the model's own decision before each event (:mod:`memdesc.sim.shadow`);
    ``divergences``: keep the first N disagreements of each decision class with the model's
    state.  ``pageblock_types``: in exact and shadow mode from a capture, ``"trace"`` sets each
    pageblock to the type the trace first shows for it (:func:`first_revealed_types`; the
    snapshot only gives how many blocks have each type), ``"snapshot"`` keeps the inferred
    types.  ``typed``: typed replay (exact and policy; see the module docstring): memdesc
    types, descriptors on the design, ``type_agreement``; off by default in the Python API (the
    allocator's own figures, less memory), on in ``memdesc replay`` (``--typed``, the default)
    and in ``memdesc compare``; off when checkpointing or resuming.
    ``progress(n)`` is called
    after each chunk with the events done; ``on_start(total)`` once before the first.

    ``checkpoint``: save the machine and the loop's state to this file after
    ``checkpoint_at`` events and/or every ``checkpoint_every`` events (Machine.save).
    ``resume``: continue a run from such a file: mode, design, machine, sampling and the
    position come from it; ``source`` (default: the checkpoint's) must be the same trace.
    A resumed run ends bit-identical to an uninterrupted one.
    """
    ckpt = Checkpoints(Path(checkpoint) if checkpoint is not None else None, checkpoint_at, checkpoint_every)
    resumed: tuple[Machine, dict, dict] | None = None
    if resume is not None:
        if machine is not None or mem is not None or cpus is not None:
            raise ConfigError("--resume continues a saved run: its machine comes from the checkpoint")
        resumed = Machine.load_checkpoint(resume)
        meta = resumed[1]
        if meta.get("kind") != "replay":
            raise ConfigError(f"{resume}: not a replay checkpoint (kind {meta.get('kind')!r})")
        mode, every, mt_names = meta["mode"], int(meta["every"]), tuple(meta["mt_names"])
        compaction = bool(meta.get("compaction", True))
        if source is None and meta["source_path"] is not None:
            source = meta["source_path"]
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode in OTHER_DRIVER_MODES:
        raise ConfigError(f"mode {mode!r} is run by memdesc.sim.mm_replay.mm_replay (the kmem replay loop does "
                          "not drive folio-level events)")
    if every < 0:
        raise ConfigError(f"--every must be >= 0, got {every}")
    if divergences < 0:
        raise ConfigError(f"--divergences must be >= 0, got {divergences}")
    if mode == "shadow" and (ckpt.active or resume is not None):
        raise ConfigError("shadow replay is not checkpointed (its decision state is not saved): use exact or policy")
    if pageblock_types not in ("trace", "snapshot"):
        raise ConfigError(f"pageblock_types must be 'trace' or 'snapshot', got {pageblock_types!r}")
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    t0 = time.perf_counter()
    src: ReplaySource | None = None
    if isinstance(source, TraceReadResult):
        rr = source
    elif isinstance(source, pl.DataFrame):
        rr = TraceReadResult(df=source, source="<frame>", format="frame", lines=source.height)
    else:
        src = resolve_source(source)
        rr = trace if trace is not None else read_trace(src.trace, strict=strict)
    df = rr.df
    read_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    npfn = 0
    if df.height:
        npfn = _trace_extent(to_numpy_columns(df, ("pfn", "order")))
    trace_cpus = int(df["cpu"].max()) + 1 if df.height else 1
    capture = src.capture if src is not None else None
    from_snapshot = False
    if resumed is not None:
        machine = resumed[0]
        from_snapshot = bool(resumed[1]["from_snapshot"])
        start = None
    elif machine is None:
        start = build_machine(src or ReplaySource(Path("<frame>"), None), mode, design, mem, cpus, npfn, trace_cpus,
                              model_events, config)
        machine = start.machine
        from_snapshot = start.from_snapshot
    elif mem is not None or cpus is not None or config:
        raise ConfigError("mem/cpus/config shape a machine the replay builds; not with machine=")
    else:
        start = StartState.of_machine(machine)
        from_snapshot = start.from_snapshot
    if mt_names is None:
        mt_names = machine.migratetype_names
        if capture is not None:
            pti = open_capture(capture, "before").pagetypeinfo()
            if pti is not None:
                mt_names = tuple(pti.migratetype_names)
    isolate = None
    compaction_lines = 0
    if compaction and mode != "policy" and src is not None:
        iso_df, _bad = read_isolate_freepages(src.trace)
        isolate = isolate_columns(iso_df)
        compaction_lines = int(isolate["line"].shape[0])
    cols = _columns(df, tuple(mt_names), isolate)
    n = cols["event"].shape[0]
    digest = trace_digest(cols) if (resumed is not None or ckpt.active) else None
    first, elapsed0 = 0, 0.0
    pb_revealed = 0
    if resumed is not None:
        meta, ls = resumed[1], resumed[2]
        if meta["events"] != n or meta["trace_digest"] != digest:
            raise ConfigError(f"{resume}: the checkpoint was taken on another trace ({meta['events']} events, "
                              f"{meta['source']}); this one has {n}")
        first, elapsed0 = int(meta["position"]), float(meta["seconds"])
        pb_revealed = int(meta.get("pageblock_types_from_trace", 0))
    else:
        if mode != "policy" and from_snapshot and pageblock_types == "trace":
            pb_revealed = apply_revealed_types(machine, cols)
        nsamp = n // every + 1 if every else 1
        samp = (np.zeros((nsamp, len(machine.zones), NR_PAGE_ORDERS + 1), np.int64), np.zeros(nsamp, np.int64),
                np.zeros(1, np.int64))
        ls = _policy_loop_state(machine, start, samp, npfn) if mode == "policy" else \
            _exact_loop_state(machine, start, samp)
    ty = TypedRun.build(machine, cols, npfn, src.trace if src is not None else None,
                        typed and mode != "shadow" and resumed is None and not ckpt.active)
    if ty.on:
        chunk = min(chunk, max(1 << 12, -(-n // 16)))  # descriptor bytes sampled after every chunk
    load_s = time.perf_counter() - t1

    def save(i: int, elapsed: float) -> None:
        machine.save(ckpt.path, extra_arrays=ls, extra_meta={
            "kind": "replay", "mode": mode, "every": every, "mt_names": list(mt_names), "position": i,
            "events": n, "trace_digest": digest, "seconds": elapsed, "from_snapshot": from_snapshot,
            "compaction": bool(compaction), "pageblock_types_from_trace": pb_revealed,
            "source": str(src.trace) if src else rr.source,
            "source_path": str(src.capture or src.trace) if src else None})

    if on_start:
        on_start(n)
    shadow_out = None
    if mode in ("exact", "shadow"):
        if mode == "exact":
            elapsed, out = _run_exact(machine, cols, chunk, every, progress, ls, first, ckpt, save, elapsed0, ty)
        else:
            if every:
                raise ConfigError("--every samples exact and policy replays, not shadow replay")
            elapsed, out = _run_shadow(machine, cols, chunk, progress, start, capture, divergences)
            shadow_out = out
        cnt, xc = out["cnt"], out["xc"]
        states = {}
        inconsistencies = {}
        for e in range(K.NR_EVENTS):
            row = {K.STATE_NAMES[s]: int(cnt[e, s]) for s in range(K.NR_STATES) if cnt[e, s]}
            if row:
                states[K.EVENT_NAMES[e]] = row
            for s in range(K.NR_STATES):
                if cnt[e, s] and s not in K.EXPECTED[e]:
                    inconsistencies[f"{K.EVENT_NAMES[e]}: {K.STATE_NAMES[s]}"] = int(cnt[e, s])
        notes = {name: int(xc[i]) for i, name in enumerate(K.X_NAMES)}
        notes["pageblock_types_from_trace"] = pb_revealed
        policy: dict[str, int] = {}
        typed_counts = None
        model_events = None
    else:
        elapsed, out = _run_policy(machine, cols, chunk, every, progress, ls, first, ckpt, save, elapsed0, ty)
        pc = out["pc"]
        policy = {name: int(pc[i]) for i, name in enumerate(K.P_NAMES) if name not in K.P_TYPED_KEYS}
        typed_counts = {name: int(pc[i]) for i, name in enumerate(K.P_NAMES) if name in K.P_TYPED_KEYS}
        bad = ["bad_events", "model_free_errors", "stale_trace_entries_released"]
        if from_snapshot:
            bad.append("frees_of_unknown_pages")
        inconsistencies = {k: policy[k] for k in bad if policy[k]}
        notes = {}
        states = {}
        model_events = out["model_events"]
    final = compare_final(machine, capture) if (compare and capture is not None) else None
    samples = None
    if every:
        samples = _samples_frame(machine, ls["samples"], ls["sample_pos"], int(ls["sample_n"][0]), cols["ts_ns"])
    events = rr.event_counts() if df.height else {name: 0 for name in E.EVENT_NAMES}
    if compaction_lines:
        events[K.EVENT_NAMES[K.EV_ISOLATE_FREE]] = compaction_lines
    return ReplayResult(
        mode=mode, machine=machine, source=str(src.trace) if src else rr.source,
        capture=str(capture) if capture else None, events=events, events_replayed=n - first, seconds=elapsed - elapsed0,
        load_seconds=load_s, read_seconds=read_s, malformed_lines=rr.n_malformed, lost_events=rr.lost_events,
        inconsistencies=inconsistencies, notes=notes, states=states, policy=policy, model_events=model_events,
        replay_map_bytes=out["map_bytes"], final_vs_real=final, pcp_pages=pcp_pages(machine, capture),
        samples=samples, check=ty.folios.check() if ty.on else machine.check(),
        typed=ty.summary(typed_counts) if ty.on else None, type_agreement=type_agreement_of(ty, capture),
        folios=ty.folios if ty.on else None,
        shadow=shadow_out["shadow"] if shadow_out else None,
        divergences=shadow_out["divergences"] if shadow_out else None, resumed_at=first, loop_state=ls)


__all__ = ["MODES", "Checkpoints", "ReplayResult", "ReplaySource", "StartState", "build_machine", "compare_final",
           "mt_table", "replay", "resolve_source", "sample_path", "trace_digest"]
