"""The whole MM as a policy replay: a capture's folio-level events drive the MM models.

Theory
------
``memdesc replay CAPTURE --mode mm`` rebuilds the machine from the capture's ``before``
snapshot (:func:`memdesc.sim.snapshot.machine_from_snapshot`, any design), makes the
snapshot's anon and file pages folios of the folio layer
(:func:`memdesc.sim.compact.adopt_snapshot_folios`: on the LRU lists kpageflags shows,
reclaimable and migratable like any other), and then replays what the capture's tasks
*asked for*, at the model's own pfns -- the page cache, the anon model's folios, the LRU,
reclaim and compaction decide the rest:

* every ``mm_filemap_add_to_page_cache``: a file folio of the event's order through the
  MM's allocation entry with recovery (``vmscan.alloc_folio_recover``: the design's
  allocation, kswapd, direct reclaim, direct compaction), with the gfp of the kernel's own
  allocation of that folio (the ``mm_page_alloc`` of the same pfn just before it: readahead
  ``__GFP_NORETRY``, writes without), charged to its memcg, attached to its mapping at its
  index and put in the CPU's LRU batch;
* every anon ``mm_lru_insertion`` (the captures have no anon fault event; ``folio_add_lru``
  of a new anon folio follows its allocation) whose pfn was freshly allocated
  (an ``mm_page_alloc`` of the pfn after its last free): an anon folio of that allocation's
  order and gfp (mTHP 16/64 KiB, PMD THP, order-0 faults, COW copies), mapped, on the LRU.
  An insertion without a fresh allocation is a folio the kernel put back or migrated
  (compaction's destinations come from its free scanner, with no ``mm_page_alloc``): not a
  new folio, counted (``anon_insertions_not_new``);
* every ``mm_filemap_get_pages``: ``folio_mark_accessed`` of the newest folio covering the
  first index of the read, once per folio for a sequential reader (``filemap_read``'s
  ``pos_same_folio``);
* every ``mm_filemap_delete_from_page_cache`` outside the kernel's own reclaim rounds
  (memcg and direct reclaim ``_begin``/``_end`` of the deleting task; deletions inside are
  the kernel's reclaim: the model reclaims by its own decisions) of a folio the model still
  holds -- one the trace added before, else the snapshot's folio at that pfn: deleted
  (truncation, drop_caches, unlink);
* every ``mm_page_free`` / ``mm_page_free_batched`` of a pfn whose latest event was an anon
  folio's insertion (or, with no event at all before, the snapshot's anon folio there): the
  anon folio is unmapped and freed (munmap, MADV_DONTNEED, exit).  A free of a *tail* page
  (a folio split first) is not attributed, and an anon folio compaction migrated in the
  kernel is freed in the model when the kernel frees its old pfn;
* the capture's full compactions (``mm_compaction_begin`` of a sync whole-zone run from the
  zone start: ``vm.compact_memory``) run ``compact_node`` on the model at the same point.

kswapd runs after each event when an allocation woke it.  The ``reclaim`` capture's cgroup
(the tasks of its memcg reclaim events) gets a memcg with the workload's limit; every other
task charges the root.

Events are identified by ``aid`` as in :mod:`memdesc.sim.reclaim` (which drives the same
kernel, :func:`replay_folio_events`, with its cgroup's events only): a page-cache add or
an anon insertion of the trace, or a folio adopted from the snapshot.

Not modelled: kernel allocations (slab, page tables, vmalloc, per-CPU lists: the policy
replay's territory; their net change is in the gap to ``after.buddyinfo``), khugepaged
collapse, the deferred split of partly unmapped anon folios (the model frees the whole
folio when its head is freed), swap, the page cache before the trace beyond what the
snapshot shows (every snapshot file page is an unmapped folio of no known inode), and
kcompactd's proactive compaction.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from memdesc._numba import njit
from memdesc.errors import ConfigError, FormatError
from memdesc.mm import compaction as C
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm.folio import HEADROOM_SLABS, MAX_PIECES, grow_memdesc_state, headroom_ok
from memdesc.mm.mmzone import NR_PAGE_ORDERS
from memdesc.mm.page_alloc.core import PCP_COUNT
from memdesc.mm.slab import slab_state_headroom
from memdesc.mm.swap import LOG_MEMCG_BEGIN, LOG_RECLAIMED, LOG_SHRINK_INACTIVE, VM_NAMES, grow_log
from memdesc.mm.vmscan import Reclaim, add_folio_nb, delete_folio_nb, folio_mark_accessed, kswapd_run
from memdesc.sim.compact import adopt_snapshot_folios
from memdesc.sim.replay import compare_final
from memdesc.sim.snapshot import RESERVED_CLASSES, kpage_snapshot, machine_from_snapshot, reuse_snapshots
from memdesc.trace import events as E
from memdesc.trace.folio_events import read_folio_events
from memdesc.trace.kpage import PageClass
from memdesc.trace.reader import read_trace

#: driver event kinds
EV_ADD, EV_ANON, EV_ACCESS, EV_DELETE, EV_COMPACT = range(5)
EV_NAMES = ("page_cache_add", "anon_folio", "mark_accessed", "delete", "compact_memory")
#: the gfp of the capture's memcg reclaim (readahead: mapping gfp | __GFP_NORETRY | __GFP_NOWARN)
READAHEAD_GFP = G.GFP_NOFS | G.__GFP_HIGHMEM | G.__GFP_MOVABLE | G.__GFP_NOWARN | G.__GFP_NORETRY | G.__GFP_HARDWALL
ANON_GFP = G.GFP_HIGHUSER_MOVABLE
#: counts of :func:`replay_folio_events`
(C_ADDS, C_ANON, C_ACCESSES, C_DELETES, C_CHARGE_FORCED, C_ACCESS_UNMATCHED, C_ALLOC_FAILED, C_DELETE_UNHELD,
 C_COMPACT, NR_COUNTS) = range(10)

MM_KINDS = ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache", "mm_filemap_get_pages",
            "mm_lru_insertion", "mm_vmscan_memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_end",
            "mm_vmscan_direct_reclaim_begin", "mm_vmscan_direct_reclaim_end", "mm_vmscan_lru_shrink_inactive",
            "mm_vmscan_kswapd_wake", "mm_compaction_begin", "mm_compaction_end", "mm_compaction_migratepages",
            "mm_compaction_isolate_migratepages", "mm_compaction_isolate_freepages")


# ------------------------------------------------------------------ the shared event-driving kernel


@njit
def replay_folio_events(ms, ss, pa, rs, cs, kind, aid, order, gfp, cpu, memcg, mapping, index, aid2slot, slot2aid,
                        first, counts, made):
    """Run events [first, ...) until the end or until the folio state or the log needs room
    (returns the next event).  ``counts``: see the ``C_*`` indices; ``made[anon, order]``: folios
    made.  ``cs``: the compaction state of the allocation entry's direct compaction.  EV_COMPACT
    events are returned to the caller (the index of the event, unrun): the caller compacts and calls
    again from the next one."""
    n = kind.shape[0]
    i = first
    while i < n:
        if not headroom_ok(ms, ss) or rs.logn[0] + 4096 > rs.log.shape[0]:
            return i
        if aid2slot.shape[0] > 0 and slot2aid.shape[0] < ms.pfn.shape[0]:
            return i
        k = kind[i]
        c = cpu[i]
        log0 = rs.logn[0]
        if k == EV_ADD or k == EV_ANON:
            anon = k == EV_ANON
            fails = rs.vm[27]
            s = add_folio_nb(ms, ss, pa, rs, cs, anon, order[i], memcg[i], gfp[i], c, mapping[i], index[i], True)
            if s == -22:
                return i
            if s < 0:
                counts[C_ALLOC_FAILED] += 1
            else:
                aid2slot[aid[i]] = s
                slot2aid[s] = aid[i]
                made[1 if anon else 0, min(order[i], made.shape[1] - 1)] += 1
            if rs.vm[27] > fails:
                counts[C_CHARGE_FORCED] += 1
            counts[C_ANON if anon else C_ADDS] += 1
        elif k == EV_ACCESS:
            a = aid[i]
            if a >= 0 and aid2slot[a] >= 0:
                folio_mark_accessed(ms, rs, aid2slot[a], c)
                counts[C_ACCESSES] += 1
            else:
                counts[C_ACCESS_UNMATCHED] += 1
        elif k == EV_DELETE:
            a = aid[i]
            if a >= 0 and aid2slot[a] >= 0:
                s = aid2slot[a]
                if delete_folio_nb(ms, ss, pa, rs, s, c) >= 0:
                    aid2slot[a] = -1
                    slot2aid[s] = -1
                    counts[C_DELETES] += 1
            else:
                counts[C_DELETE_UNHELD] += 1
        else:
            return i
        kswapd_run(ms, ss, pa, rs, c)
        # name the folios reclaimed during this event by their aid; stamp the event index
        for r in range(log0, rs.logn[0]):
            row = rs.log[r]
            row[12] = i
            if row[0] == LOG_RECLAIMED:
                s = row[1]
                a = slot2aid[s]
                row[13] = a
                if a >= 0:
                    aid2slot[a] = -1
                slot2aid[s] = -1
        i += 1
    return i


# ------------------------------------------------------------------ shared stream pieces


def latest_add(adds: pl.DataFrame, q: pl.DataFrame, on: list[str], col: str = "aid") -> pl.Series:
    """For each row of q, ``col`` of the latest row of ``adds`` before its line with equal ``on`` keys."""
    a = adds.select(["line", col, *on]).sort("line")
    j = q.select(["line", *on]).with_row_index("qrow").sort("line").join_asof(
        a, on="line", by=on, strategy="backward", check_sortedness=False)
    return j.sort("qrow")[col]


def read_marks(adds: pl.DataFrame, gp: pl.DataFrame) -> pl.DataFrame:
    """The reads that mark a folio accessed, with the folio's aid: the latest add (any order)
    covering the first index of the request; filemap_read() marks the first folio of a read
    only if the read does not start in the folio the task's previous read of the file ended
    in (pos_same_folio): one mark per folio for a sequential reader."""
    gp_aid = np.full(gp.height, -1, np.int64)
    for o in range(12):
        q = gp.with_columns((pl.col("index") & ~((1 << o) - 1)).alias("index"), pl.lit(o, pl.Int64).alias("order"))
        a = latest_add(adds, q, ["dev", "ino", "index", "order"]).fill_null(-1).to_numpy()
        gp_aid = np.maximum(gp_aid, a)      # aids follow the line: the newest folio covering the index
    gp = gp.with_columns(pl.Series("aid", gp_aid)).with_columns(
        pl.col("aid").shift(1).over(["pid", "dev", "ino"]).alias("prev_aid"))
    return gp.filter(pl.col("prev_aid").is_null() | (pl.col("aid") != pl.col("prev_aid")))


@dataclass
class Rounds:
    """The kernel's reclaim rounds (begin/end line and task), in line order."""

    begin: np.ndarray
    end: np.ndarray
    pid: np.ndarray

    @classmethod
    def of(cls, begin: pl.DataFrame, end: pl.DataFrame, pids: list[int], path) -> Rounds:
        rounds = []
        for pid in pids:
            b = begin.filter(pl.col("pid") == pid)["line"].to_numpy()
            e = end.filter(pl.col("pid") == pid)["line"].to_numpy()
            if len(b) != len(e) or (len(b) and np.any(e < b)):
                raise ConfigError(f"{path}: reclaim begin/end events of pid {pid} do not pair up")
            rounds.extend(zip(b.tolist(), e.tolist(), [pid] * len(b), strict=True))
        rounds.sort()
        return cls(np.array([r[0] for r in rounds], np.int64), np.array([r[1] for r in rounds], np.int64),
                   np.array([r[2] for r in rounds], np.int64))

    def __len__(self) -> int:
        return len(self.begin)

    def inside(self, df: pl.DataFrame) -> np.ndarray:
        """Whether each row of df (line, pid) is inside a round of its task."""
        lines = df["line"].to_numpy().astype(np.int64)
        if not len(self.begin):
            return np.zeros(len(lines), bool)
        pid = df["pid"].to_numpy().astype(np.int64)
        k = np.searchsorted(self.begin, lines, side="right") - 1
        kk = np.maximum(k, 0)
        return (k >= 0) & (lines <= self.end[kk]) & (pid == self.pid[kk])


def stream_part(df: pl.DataFrame, kind: int, aid, order, gfp, memcg, mapping, index) -> pl.DataFrame:
    """Rows of the driver stream (see :func:`replay_folio_events`)."""
    n = df.height

    def col(v):
        return v.cast(pl.Int64) if isinstance(v, pl.Series) else pl.Series([int(v)] * n, dtype=pl.Int64)

    return pl.DataFrame({"line": df["line"].cast(pl.Int64), "kind": col(kind), "aid": col(aid), "order": col(order),
                         "gfp": col(gfp), "cpu": df["cpu"].cast(pl.Int64), "memcg": col(memcg),
                         "mapping": col(mapping), "index": col(index)})


def capture_limit(cap: Path) -> int:
    """The memcg limit the workload set (``memory.limit_in_bytes``), in pages; 512 MiB else."""
    ws = cap / "workload.sh"
    if ws.is_file():
        mt = re.search(r"echo \$\(\((\d+) << (\d+)\)\) > \$CG/memory\.(limit_in_bytes|max)", ws.read_text())
        if mt:
            return (int(mt.group(1)) << int(mt.group(2))) >> 12
    return (512 << 20) >> 12


def vmstat_delta(cap: Path, names: tuple[str, ...]) -> dict[str, int]:
    """after - before of /proc/vmstat counters of a capture (those present on both sides)."""
    out = {}
    b, a = cap / "before.vmstat", cap / "after.vmstat"
    if not (b.is_file() and a.is_file()):
        return out
    rd = lambda f: dict((ln.split()[0], int(ln.split()[1])) for ln in f.read_text().splitlines() if ln.strip())  # noqa: E731
    vb, va = rd(b), rd(a)
    for k in names:
        if k in va and k in vb:
            out[k] = va[k] - vb[k]
    return out


# ------------------------------------------------------------------ the mm stream


@dataclass
class MmStream:
    """The driver's event stream (trace order) and what the loader could not attribute."""

    kind: np.ndarray
    aid: np.ndarray
    order: np.ndarray
    gfp: np.ndarray
    cpu: np.ndarray
    memcg: np.ndarray
    mapping: np.ndarray
    index: np.ndarray
    line: np.ndarray
    n_ids: int
    memcg_pids: list[int]
    anomalies: dict[str, int] = field(default_factory=dict)
    kernel: dict = field(default_factory=dict)
    trace_events: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.kind)


def read_mm_events(trace: Path, until_line: int | None = None, cache: bool = True) -> tuple[dict, pl.DataFrame]:
    """The folio-level events (per kind) and the kmem events of a trace, up to ``until_line``;
    FormatError when it has no folio-level events to drive the models."""
    if until_line is not None and until_line < 1:
        raise ConfigError(f"until_line must be >= 1, got {until_line}")
    ft = read_folio_events(trace, kinds=MM_KINDS, cache=cache)
    ev = {k: ft.events(k) for k in MM_KINDS}
    km = read_trace(trace, cache=cache).df.select("line", "event", "cpu", "pid", "pfn", "order", "gfp")
    if until_line is not None:
        ev = {k: v.filter(pl.col("line") <= until_line) for k, v in ev.items()}
        km = km.filter(pl.col("line") <= until_line)
    km = km.with_columns(pl.col("line").cast(pl.Int64), pl.col("gfp").cast(pl.Int64), pl.col("order").cast(pl.Int64))
    if ev["mm_filemap_add_to_page_cache"].height + ev["mm_lru_insertion"].height == 0:
        raise FormatError(f"{trace}: no folio-level events (mm_filemap_add_to_page_cache, mm_lru_insertion): "
                          "the mm replay needs a capture with filemap and pagemap events (files, mthp, reclaim, "
                          "compaction)")
    return ev, km


def load_mm_stream(trace: Path, ev: dict, km: pl.DataFrame, *, adopted_file: np.ndarray | None = None,
                   adopted_anon: np.ndarray | None = None) -> MmStream:
    """The mm replay's stream from a trace's events (:func:`read_mm_events`).  ``adopted_file``
    / ``adopted_anon``: head pfns of the snapshot's folios (their aids follow the trace's, in
    this order)."""
    t0 = time.perf_counter()
    an: dict[str, int] = {}
    allocs = km.filter((pl.col("event") == E.ALLOC) & (pl.col("pfn") >= 0)).select(
        "line", "pfn", pl.col("order").alias("a_order"), pl.col("gfp").alias("a_gfp"),
        pl.col("line").alias("a_line"))
    frees = km.filter(pl.col("event").is_in([E.FREE, E.FREE_BATCHED])).select(
        "line", "cpu", "pid", "pfn", pl.col("line").alias("f_line"))
    # the memcg of the capture's cgroup: the tasks of its memcg reclaim
    rb, re_ = ev["mm_vmscan_memcg_reclaim_begin"], ev["mm_vmscan_memcg_reclaim_end"]
    memcg_pids = sorted(int(p) for p in rb["pid"].unique())
    rounds = Rounds.of(rb, re_, memcg_pids, trace)
    db, de = ev["mm_vmscan_direct_reclaim_begin"], ev["mm_vmscan_direct_reclaim_end"]
    drounds = Rounds.of(db, de, sorted(int(p) for p in db["pid"].unique()), trace)
    in_cg = pl.col("pid").is_in(memcg_pids)
    # page-cache adds: order from the event, gfp of the folio's allocation
    adds = ev["mm_filemap_add_to_page_cache"].with_row_index("aid").with_columns(pl.col("aid").cast(pl.Int64))
    n_add = adds.height
    a_gfp = latest_add(allocs, adds, ["pfn"], "a_gfp")
    fallback = pl.when(pl.col("order") > 0).then(READAHEAD_GFP | G.__GFP_COMP).otherwise(READAHEAD_GFP)
    adds = adds.with_columns(pl.Series("gfp", a_gfp)).with_columns(pl.coalesce("gfp", fallback).alias("gfp"))
    an["page_cache_adds_without_allocation"] = int(a_gfp.null_count())
    # anon insertions: a new folio when the pfn was allocated after its last free
    ins = ev["mm_lru_insertion"]
    anon = ins.filter((pl.col("lru") <= 1) | ((pl.col("flags") & 2) != 0))
    anon = anon.with_columns(latest_add(allocs, anon, ["pfn"], "a_line").alias("a_line"),
                             latest_add(allocs, anon, ["pfn"], "a_order").alias("a_order"),
                             latest_add(allocs, anon, ["pfn"], "a_gfp").alias("a_gfp"),
                             latest_add(frees, anon, ["pfn"], "f_line").alias("f_line"))
    fresh = pl.col("a_line").is_not_null() & (pl.col("f_line").is_null() | (pl.col("a_line") > pl.col("f_line")))
    an["anon_insertions_not_new"] = int(anon.filter(~fresh).height)
    anon = anon.filter(fresh)
    # one folio per allocation: a later insertion of the same allocation (put back) is not new
    anon = anon.unique(subset=["pfn", "a_line"], keep="first", maintain_order=True)
    anon = anon.with_row_index("aid").with_columns((pl.col("aid").cast(pl.Int64) + n_add).alias("aid"))
    n_ids = n_add + anon.height
    # the snapshot's folios
    adopted_file = np.zeros(0, np.int64) if adopted_file is None else np.asarray(adopted_file, np.int64)
    adopted_anon = np.zeros(0, np.int64) if adopted_anon is None else np.asarray(adopted_anon, np.int64)
    pre_file = pl.DataFrame({"pfn": adopted_file, "pre_aid": np.arange(len(adopted_file), dtype=np.int64) + n_ids})
    n_ids += len(adopted_file)
    pre_anon = pl.DataFrame({"pfn": adopted_anon, "pre_aid": np.arange(len(adopted_anon), dtype=np.int64) + n_ids})
    n_ids += len(adopted_anon)
    # page-cache deletions outside the kernel's reclaim rounds
    dels = ev["mm_filemap_delete_from_page_cache"]
    dels = dels.with_columns(latest_add(adds, dels, ["pfn"]).alias("aid"))
    inround = rounds.inside(dels) | drounds.inside(dels)
    kdel = dels.filter(pl.Series(inround))
    ext = dels.filter(~pl.Series(inround))
    ext = ext.join(pre_file, on="pfn", how="left").with_columns(
        pl.coalesce("aid", "pre_aid").alias("aid")).drop("pre_aid")
    an["deletions_of_unknown_folios"] = int(ext["aid"].null_count())
    ext = ext.filter(pl.col("aid").is_not_null())
    # anon frees: the pfn's latest event was an anon folio's insertion (or none: the snapshot's folio)
    ai = anon.select("line", "pfn", "aid", pl.col("line").alias("i_line"))
    fr = frees.with_columns(latest_add(ai, frees, ["pfn"], "aid").alias("aid"),
                            latest_add(ai, frees, ["pfn"], "i_line").alias("i_line"),
                            latest_add(allocs, frees, ["pfn"], "a_line").alias("a_line"))
    trace_anon = pl.col("aid").is_not_null() & (pl.col("a_line").is_null() | (pl.col("a_line") < pl.col("i_line")))
    pre = fr.filter(pl.col("aid").is_null() & pl.col("a_line").is_null()).drop("aid").join(pre_anon, on="pfn",
                                                                                           how="inner")
    afr = pl.concat([fr.filter(trace_anon).select("line", "cpu", "aid"),
                     pre.select("line", "cpu", pl.col("pre_aid").alias("aid"))]).sort("line")
    # the driver stream
    inode = pl.concat([adds.select("dev", "ino"), ext.select("dev", "ino")]).unique(maintain_order=True) \
        .with_row_index("mapping").with_columns((pl.col("mapping").cast(pl.Int64) + 1).alias("mapping"))
    adds_m = adds.join(inode, on=["dev", "ino"], how="left").with_columns(
        pl.when(in_cg).then(1).otherwise(0).alias("memcg"))
    anon = anon.with_columns(pl.when(in_cg).then(1).otherwise(0).alias("memcg"))
    gp = read_marks(adds, ev["mm_filemap_get_pages"])
    comp = ev["mm_compaction_begin"]
    full = comp.filter((pl.col("sync") != 0) & (pl.col("migrate_pfn") == pl.col("zone_start")))
    # one compact_memory per burst of whole-zone runs (one per zone): the first begin of each
    keep, seen = [], set()
    for zs in full["zone_start"].to_list():
        keep.append(not seen or zs in seen)
        seen = {zs} if keep[-1] else seen | {zs}
    full = full.filter(pl.Series(keep, dtype=pl.Boolean)) if keep else full
    z = lambda df: pl.Series([0] * df.height, dtype=pl.Int64)  # noqa: E731
    parts = [
        stream_part(adds_m, EV_ADD, adds_m["aid"], adds_m["order"], adds_m["gfp"], adds_m["memcg"],
                    adds_m["mapping"], adds_m["index"]),
        stream_part(anon, EV_ANON, anon["aid"], anon["a_order"], anon["a_gfp"], anon["memcg"], 0, 0),
        stream_part(gp, EV_ACCESS, gp["aid"], 0, 0, 0, 0, gp["index"]),
        stream_part(ext, EV_DELETE, ext["aid"], z(ext), 0, 0, 0, 0),
        stream_part(afr, EV_DELETE, afr["aid"], 0, 0, 0, 0, 0),
        stream_part(full, EV_COMPACT, -1, -1, 0, 0, 0, 0),
    ]
    st = pl.concat(parts).sort("line", maintain_order=True)
    si = ev["mm_vmscan_lru_shrink_inactive"]
    mp = ev["mm_compaction_migratepages"]
    kernel = {
        "memcg_reclaim_rounds": len(rounds), "direct_reclaim_rounds": len(drounds),
        "kswapd_wake": int(ev["mm_vmscan_kswapd_wake"].height),
        "pages_scanned": int(si["nr_scanned"].sum() or 0), "pages_reclaimed": int(si["nr_reclaimed"].sum() or 0),
        "reclaim_deletions": int(kdel.height),
        "compaction_runs": int(comp.height),
        "compact_memory_runs": int(full.height),
        "compaction_isolate_migratepages": int(ev["mm_compaction_isolate_migratepages"]["nr_taken"].sum() or 0),
        "compaction_isolate_freepages": int(ev["mm_compaction_isolate_freepages"]["nr_taken"].sum() or 0),
        "pages_migrated": int(mp["nr_migrated"].sum() or 0), "migrate_failed": int(mp["nr_failed"].sum() or 0),
    }
    trace_events = {"mm_filemap_add_to_page_cache": n_add,
                    "mm_filemap_delete_from_page_cache": int(dels.height),
                    "mm_filemap_get_pages": int(ev["mm_filemap_get_pages"].height),
                    "mm_lru_insertion": int(ins.height), "mm_lru_insertion_anon_new": int(anon.height),
                    "mm_page_alloc": int(allocs.height), "mm_page_free(_batched)": int(frees.height),
                    "mm_page_free_of_anon_folios": int(afr.height)}
    col = lambda c: st[c].fill_null(-1 if c == "aid" else 0).to_numpy().astype(np.int64)  # noqa: E731
    return MmStream(kind=col("kind"), aid=col("aid"), order=col("order"), gfp=col("gfp"), cpu=col("cpu"),
                    memcg=col("memcg"), mapping=col("mapping"), index=col("index"), line=col("line"), n_ids=n_ids,
                    memcg_pids=memcg_pids, anomalies=an, kernel=kernel, trace_events=trace_events,
                    seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------ the run


@dataclass
class Driven:
    """What :func:`drive` returns: the kernel's counts, folios made (file/anon x order), the
    model's reclaim from its log, the compact_memory runs and the loop's seconds (without them)."""

    counts: np.ndarray
    made: np.ndarray
    reclaim_log: dict
    compact_memory: list
    seconds: float
    compact_seconds: float


def make_room(rc: Reclaim, slot2aid: np.ndarray) -> np.ndarray:
    """What :func:`replay_folio_events` returns to the caller for: room in the folio and slab
    states, the slot -> aid map as long as the folio state, a reclaim log of 2^18 rows.
    Returns the (possibly grown) slot -> aid map; the states are grown in place in ``rc``."""
    f = rc.folios
    if not headroom_ok(f.state, f.slab.state):
        f.state = grow_memdesc_state(f.state, 2 * MAX_PIECES)
        f.slab.state = slab_state_headroom(f.slab.state, 4 * HEADROOM_SLABS)
    if slot2aid.shape[0] < f.state.pfn.shape[0]:
        s2 = np.full(f.state.pfn.shape[0], -1, np.int64)
        s2[:slot2aid.shape[0]] = slot2aid
        slot2aid = s2
    if rc.state.log.shape[0] < 1 << 18:
        rc.state = grow_log(rc.state, 1 << 18)
    return slot2aid


def drive(rc: Reclaim, comp, st: MmStream, memcg_col: np.ndarray, aid2slot: np.ndarray,
          slot2aid: np.ndarray) -> Driven:
    """Run a stream through :func:`replay_folio_events` to its end: the folio and slab states
    and the reclaim log grown between kernel calls, compact_memory run at EV_COMPACT (``comp``:
    a :class:`~memdesc.mm.compaction.Compaction`, or None to skip them)."""
    f = rc.folios
    counts = np.zeros(NR_COUNTS, np.int64)
    made = np.zeros((2, NR_PAGE_ORDERS + 1), np.int64)
    reclaim_log = {"memcg_rounds": 0, "shrink_inactive": 0, "pages_scanned": 0, "pages_reclaimed": 0,
                   "folios_reclaimed": 0}
    compact_memory = []
    n = len(st)
    i = 0
    compact_seconds = 0.0
    t0 = time.perf_counter()
    while True:
        i = int(replay_folio_events(f.state, f.slab.state, f.pa, rc.state, rc.compact_state, st.kind, st.aid,
                                    st.order, st.gfp, st.cpu, memcg_col, st.mapping, st.index, aid2slot, slot2aid,
                                    np.int64(i), counts, made))
        ln = int(rc.state.logn[0])
        log = rc.state.log[:ln]
        k = log[:, 0]
        si = log[k == LOG_SHRINK_INACTIVE]
        reclaim_log["memcg_rounds"] += int((k == LOG_MEMCG_BEGIN).sum())
        reclaim_log["shrink_inactive"] += len(si)
        reclaim_log["pages_scanned"] += int(si[:, 1].sum())
        reclaim_log["pages_reclaimed"] += int(si[:, 2].sum())
        reclaim_log["folios_reclaimed"] += int((k == LOG_RECLAIMED).sum())
        rc.state.logn[0] = 0
        if i >= n:
            break
        if st.kind[i] == EV_COMPACT:
            if comp is not None:
                before = int(comp.stats()["pages_migrated"])
                tc = time.perf_counter()
                comp.compact_memory(cpu=int(st.cpu[i]))
                dt = time.perf_counter() - tc
                compact_seconds += dt
                compact_memory.append({"line": int(st.line[i]), "seconds": dt,
                                       "pages_migrated": int(comp.stats()["pages_migrated"]) - before})
                counts[C_COMPACT] += 1
            i += 1
            continue
        slot2aid = make_room(rc, slot2aid)
    seconds = time.perf_counter() - t0 - compact_seconds
    if int(rc.state.logn[1]):
        raise ConfigError(f"the model's reclaim log dropped {int(rc.state.logn[1])} rows")
    return Driven(counts, made, reclaim_log, compact_memory, seconds, compact_seconds)


def _census_model(machine, ms) -> dict[str, int]:
    """Pages per kind at the end of the run: anon and file folios, free (buddy and per-CPU), other."""
    top = int(ms.meta[F.MM_TOP])
    mt = ms.mtype[:top]
    pages = np.int64(1) << ms.order[:top].astype(np.int64)
    pa = machine.design.zs
    free = int(pa.z_free.sum()) + int(pa.pcp[:, :, PCP_COUNT].sum())
    anon = int(pages[mt == F.MD_ANON].sum())
    file = int(pages[mt == F.MD_FILE].sum())
    managed = int(pa.z_managed.sum())
    return {"anon": anon, "file": file, "free": free, "other": managed - anon - file - free}


def _census_kpageflags(cap: Path) -> dict[str, int] | None:
    from_files = cap / "after.kpageflags.zst"
    if not (from_files.is_file() and (cap / "after.zoneinfo").is_file()):
        return None
    snap = kpage_snapshot(cap, "after")
    cnt = np.bincount(snap.page_class, minlength=len(PageClass))
    anon, file, free = int(cnt[PageClass.ANON]), int(cnt[PageClass.FILE]), int(cnt[PageClass.FREE])
    not_mem = sum(int(cnt[c]) for c in RESERVED_CLASSES)
    return {"anon": anon, "file": file, "free": free, "other": int(cnt.sum()) - anon - file - free - not_mem}


def _pct(model: float, kernel: float) -> float | None:
    return None if kernel == 0 else round(100.0 * (model - kernel) / kernel, 3)


def _km(kernel, model) -> dict:
    return {"kernel": kernel, "model": model, "diff_pct": None if kernel is None else _pct(model, kernel)}


def mm_replay(source: str | Path, *, design: str = "linux", cpus: int | None = None, until_line: int | None = None,
              compaction: bool = True, compact_memory: bool = True, cache: bool = True) -> dict:
    """``memdesc replay CAPTURE --mode mm``: see the module docstring.  Returns the ``mm`` result.
    ``until_line``: replay the trace's events up to that line (a slice); ``compaction=False``:
    no compaction at all; ``compact_memory=False``: not the capture's compact_memory runs."""
    p = Path(source)
    cap = p if p.is_dir() else p.parent
    trace = next((t for t in (cap / "trace.txt.zst", cap / "trace.txt") if t.is_file()), None) if p.is_dir() else p
    if trace is None or not trace.is_file():
        raise ConfigError(f"{source}: no trace.txt.zst in this directory (is it a capture?)")
    if not (cap / "before.zoneinfo").is_file():
        raise ConfigError(f"{cap}: the mm replay starts from the capture's before snapshot, and there is no "
                          "before.zoneinfo here (a capture directory with before.*/after.* is needed)")
    t_load = time.perf_counter()
    ev, km = read_mm_events(trace, until_line, cache)
    with reuse_snapshots():
        m, state, snap = machine_from_snapshot(cap, "before", design, cpus)
    rc = Reclaim(m, max_memcgs=4, log_capacity=1 << 18, compaction=compaction)
    f = rc.folios
    adoption = adopt_snapshot_folios(f, state, snap)
    top = int(f.state.meta[F.MM_TOP])
    mt = f.state.mtype[:top]
    adopted_file = f.state.pfn[:top][mt == F.MD_FILE].astype(np.int64)
    adopted_anon = f.state.pfn[:top][mt == F.MD_ANON].astype(np.int64)
    st = load_mm_stream(trace, ev, km, adopted_file=adopted_file, adopted_anon=adopted_anon)
    memcg = 0
    limit = None
    if st.memcg_pids:
        limit = capture_limit(cap)
        memcg = rc.memcg_create(limit)
    memcg_col = np.where(st.memcg == 1, memcg, 0).astype(np.int64)
    comp = rc.compaction if compaction else None
    comp_note = "off"
    if compaction:
        try:
            C.check_compactable(f.pa)
            comp_note = "ok"
        except ConfigError as e:
            comp_note = str(e)
    aid2slot = np.full(max(1, st.n_ids), -1, np.int64)
    slot2aid = np.full(f.state.pfn.shape[0], -1, np.int64)
    # the snapshot's folios are held from the start
    n_tr = st.n_ids - len(adopted_file) - len(adopted_anon)
    slots = np.flatnonzero(mt == F.MD_FILE).astype(np.int64)
    aid2slot[n_tr:n_tr + len(slots)] = slots
    slot2aid[slots] = np.arange(n_tr, n_tr + len(slots))
    slots_a = np.flatnonzero(mt == F.MD_ANON).astype(np.int64)
    aid2slot[n_tr + len(slots):n_tr + len(slots) + len(slots_a)] = slots_a
    slot2aid[slots_a] = np.arange(n_tr + len(slots), n_tr + len(slots) + len(slots_a))
    load_seconds = time.perf_counter() - t_load
    d = drive(rc, comp if compact_memory else None, st, memcg_col, aid2slot, slot2aid)
    counts, reclaim_log, compact_memory, seconds = d.counts, d.reclaim_log, d.compact_memory, d.seconds
    compact_seconds = d.compact_seconds
    n = len(st)
    check = rc.check()
    vm = {kk: int(v) for kk, v in zip(VM_NAMES, rc.state.vm, strict=True)}
    # folios made, per order and type
    made = {name: {str(o): int(c) for o, c in enumerate(d.made[t]) if c} for t, name in enumerate(("file", "anon"))}
    vmd = vmstat_delta(cap, ("pgscan_file", "pgsteal_file", "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd",
                             "pgsteal_direct", "allocstall_normal", "allocstall_movable", "compact_stall",
                             "compact_fail", "compact_success", "compact_migrate_scanned", "compact_free_scanned",
                             "compact_isolated", "pgmigrate_success", "pgmigrate_fail", "thp_fault_alloc",
                             "thp_fault_fallback"))
    k = st.kernel
    cstats = comp.stats() if comp is not None else {}
    reclaim = {
        "memcg_reclaim_rounds": _km(k["memcg_reclaim_rounds"], reclaim_log["memcg_rounds"]),
        "direct_reclaim": _km(k["direct_reclaim_rounds"], vm["direct_reclaim"]),
        "kswapd_wake": _km(k["kswapd_wake"], vm["kswapd_wake"]),
        "pages_scanned": _km(k["pages_scanned"], reclaim_log["pages_scanned"]),
        "pages_reclaimed": _km(k["pages_reclaimed"], reclaim_log["pages_reclaimed"]),
        "deletions": _km(k["reclaim_deletions"], reclaim_log["folios_reclaimed"]),
    }
    if until_line is not None:      # the capture's vmstat and after snapshot cover the whole trace, not a slice
        vmd = {}
    for name in ("pgscan_file", "pgsteal_file", "pgscan_kswapd", "pgscan_direct"):
        if name in vmd:
            reclaim[f"vmstat_{name}"] = _km(vmd[name], vm.get(name, 0))
    compaction_out = {
        "available": comp is not None, "note": comp_note,
        "compact_memory_runs": _km(k["compact_memory_runs"], int(counts[C_COMPACT])),
        "compact_stall": _km(vmd.get("compact_stall"), vm["compact_stall"]),
        "pages_migrated": _km(k["pages_migrated"], int(cstats.get("pages_migrated", 0))),
        "isolate_freepages": _km(k["compaction_isolate_freepages"], int(cstats.get("compact_isolated", 0))),
        "compact_memory": compact_memory,
    }
    if comp is not None:
        compaction_out["model_stats"] = {kk: int(v) for kk, v in cstats.items()}
    ev_counts = {name: int((st.kind == kk).sum()) for kk, name in enumerate(EV_NAMES)}
    final = compare_final(m, cap) if until_line is None else None
    census_k = _census_kpageflags(cap) if until_line is None else None
    census_m = _census_model(m, f.state)
    census = {name: _km(None if census_k is None else census_k[name], census_m[name]) for name in census_m}
    return {
        "capture": str(cap), "design": design, "until_line": until_line, "cpus": m.nr_cpus,
        "events": ev_counts, "events_replayed": n, "trace_events": st.trace_events,
        "events_per_second": n / seconds if seconds > 0 else 0.0, "seconds": seconds,
        "load_seconds": load_seconds, "stream_seconds": st.seconds, "compact_memory_seconds": compact_seconds,
        "applied": {"page_cache_adds": int(counts[C_ADDS]), "anon_folios": int(counts[C_ANON]),
                    "accesses": int(counts[C_ACCESSES]), "deletes": int(counts[C_DELETES]),
                    "charges_forced": int(counts[C_CHARGE_FORCED]), "alloc_failed": int(counts[C_ALLOC_FAILED]),
                    "compact_memory": int(counts[C_COMPACT])},
        "anomalies": {**st.anomalies, "accesses_unmatched": int(counts[C_ACCESS_UNMATCHED]),
                      "deletes_of_folios_not_held": int(counts[C_DELETE_UNHELD])},
        "adoption": adoption,
        "folios_made": made,
        "memcg": {"pids": st.memcg_pids, "limit_pages": limit},
        "reclaim": reclaim, "compaction": compaction_out,
        "vmstat_delta": vmd, "model_vmstat": vm,
        "final_vs_real": final, "census": census,
        "check": check,
    }
