"""Reclaim against a capture: the memcg's page-cache and anon activity drives the model.

Theory
------
The ``reclaim`` capture runs a Python process in a cgroup-v1 memory cgroup limited to
512 MiB.  Its kernel charged to that memcg every folio the process brought in and reclaimed
from the memcg's lruvec whenever a charge hit the limit (``mm_vmscan_memcg_reclaim_begin``
/ ``_end``, ``mm_vmscan_lru_isolate``, ``mm_vmscan_lru_shrink_inactive``,
``mm_filemap_delete_from_page_cache`` of the reclaimed folios).  The model is driven by
what the process *asked for* -- not by what reclaim did:

* every ``mm_filemap_add_to_page_cache`` of a cgroup task: a page-cache folio of that order
  is allocated (on the model machine, with recovery), charged to the model memcg (the
  readahead gfp of the capture's reclaim events, forced when the model refuses a charge
  the kernel granted -- counted) and put in the CPU's LRU batch (the event's CPU);
* every anon ``mm_lru_insertion`` of a cgroup task (the capture has no fault event; the
  insertion follows the fault by at most a batch): an order-0 anon folio, charged
  (``GFP_HIGHUSER_MOVABLE``), mapped, added to the LRU;
* every ``mm_filemap_get_pages`` of a cgroup task: ``folio_mark_accessed`` of the newest
  folio covering the request's first index, unless the task's previous read of the file
  was of the same folio (``filemap_read`` marks the first folio of a read only when the read
  does not start in the folio the previous one ended in: ``pos_same_folio``);
* every ``mm_filemap_delete_from_page_cache`` *outside* the kernel's reclaim rounds (a
  truncation, another task's deletion) of a folio the model still holds: deleted and
  uncharged.  Deletions inside the kernel's rounds are the kernel's reclaim: the model
  decides its own.

Folios are identified by the add (or anon insertion) that created them: ``aid``.  A kernel
deletion is attributed to the most recent add of its pfn before it; a read to the most
recent add of a folio covering its index.  The model's reclaimed folios are logged with
their aid, so the two sets of evicted folios can be compared folio by folio.

The cgroup's tasks are the pids of the capture's ``mm_vmscan_memcg_reclaim_begin`` events
(unless given).  What the model cannot see: the memcg's kmem charges (slab, page tables),
pages charged before the capture, the exact charge moment of anon folios, and which
memcg each folio of the capture belongs to beyond its task; these are the causes of gaps
(see docs/mm.md, "LRU and reclaim").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm import gfp as G
from memdesc.mm.folio import HEADROOM_SLABS, MAX_PIECES, grow_memdesc_state, headroom_ok
from memdesc.mm.machine import Machine
from memdesc.mm.slab import slab_state_headroom
from memdesc.mm.swap import (
    LOG_ISOLATE,
    LOG_MEMCG_BEGIN,
    LOG_MEMCG_END,
    LOG_RECLAIMED,
    LOG_SHRINK_INACTIVE,
    MCF_FAILCNT,
    MCF_WATERMARK,
    VM_NAMES,
    grow_log,
)
from memdesc.mm.vmscan import (
    Reclaim,
    add_folio_nb,
    delete_folio_nb,
    folio_mark_accessed,
    kswapd_run,
)
from memdesc.trace.folio_events import RECLAIM_KINDS, read_folio_events

EV_ADD, EV_ANON, EV_ACCESS, EV_DELETE = range(4)
#: the gfp of the capture's memcg reclaim (readahead: mapping gfp | __GFP_NORETRY | __GFP_NOWARN)
READAHEAD_GFP = G.GFP_NOFS | G.__GFP_HIGHMEM | G.__GFP_MOVABLE | G.__GFP_NOWARN | G.__GFP_NORETRY | G.__GFP_HARDWALL
ANON_GFP = G.GFP_HIGHUSER_MOVABLE


@dataclass
class ReclaimEvents:
    """The driver's event stream (trace order) and the kernel's own reclaim, from a capture."""

    kind: np.ndarray
    aid: np.ndarray
    order: np.ndarray
    cpu: np.ndarray
    mapping: np.ndarray
    index: np.ndarray
    line: np.ndarray
    n_ids: int
    pids: list[int]
    kernel: dict = field(default_factory=dict)
    kernel_deleted_aids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    kernel_round_events: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _latest_add(adds: pl.DataFrame, q: pl.DataFrame, on: list[str]) -> pl.Series:
    """For each row of q, the aid of the latest add before its line with equal ``on`` keys."""
    a = adds.select(["line", "aid", *on]).sort("line")
    j = q.with_row_index("qrow").sort("line").join_asof(a, on="line", by=on, strategy="backward",
                                                         check_sortedness=False)
    return j.sort("qrow")["aid"]


def load_reclaim_events(path: str | Path, pids: list[int] | None = None) -> ReclaimEvents:
    ft = read_folio_events(path, kinds=RECLAIM_KINDS)
    ev = {k: ft.events(k) for k in RECLAIM_KINDS}
    rb = ev["mm_vmscan_memcg_reclaim_begin"]
    re_ = ev["mm_vmscan_memcg_reclaim_end"]
    if pids is None:
        pids = sorted(int(p) for p in rb["pid"].unique())
    if not pids:
        raise ConfigError(f"{path}: no memcg reclaim in the capture and no --pid given: nothing to compare")
    inpid = pl.col("pid").is_in(pids)
    adds = ev["mm_filemap_add_to_page_cache"].with_row_index("aid").with_columns(pl.col("aid").cast(pl.Int64))
    n_add = adds.height
    ins = ev["mm_lru_insertion"]
    anon = ins.filter(inpid & ((pl.col("lru") <= 1) | ((pl.col("flags") & 2) != 0)))
    anon = anon.with_row_index("aid").with_columns((pl.col("aid").cast(pl.Int64) + n_add).alias("aid"))
    # kernel reclaim rounds: [begin line, end line] per pid
    rounds = []
    for pid in pids:
        b = rb.filter(pl.col("pid") == pid)["line"].to_numpy()
        e = re_.filter(pl.col("pid") == pid)["line"].to_numpy()
        if len(b) != len(e) or (len(b) and np.any(e < b)):
            raise ConfigError(f"{path}: memcg reclaim begin/end events of pid {pid} do not pair up")
        rounds.extend(zip(b.tolist(), e.tolist(), [pid] * len(b), strict=True))
    rounds.sort()
    rb_lines = np.array([r[0] for r in rounds], np.int64)
    re_lines = np.array([r[1] for r in rounds], np.int64)
    rpid = np.array([r[2] for r in rounds], np.int64)

    def in_round(df: pl.DataFrame) -> np.ndarray:
        lines = df["line"].to_numpy().astype(np.int64)
        pid = df["pid"].to_numpy().astype(np.int64)
        k = np.searchsorted(rb_lines, lines, side="right") - 1
        ok = k >= 0
        kk = np.maximum(k, 0)
        return ok & (lines <= re_lines[kk]) & (pid == rpid[kk]) if len(rb_lines) else np.zeros(len(lines), bool)

    dels = ev["mm_filemap_delete_from_page_cache"]
    dels = dels.with_columns(_latest_add(adds, dels, ["pfn"]).alias("aid"))
    dels = dels.with_columns(pl.Series("in_round", in_round(dels)))
    # reads: the latest add of a folio (any order) covering the first index of the request
    gp = ev["mm_filemap_get_pages"].filter(inpid)
    gp_aid = np.full(gp.height, -1, np.int64)
    for o in range(12):
        q = gp.with_columns((pl.col("index") & ~((1 << o) - 1)).alias("index"), pl.lit(o, pl.Int64).alias("order"))
        a = _latest_add(adds, q, ["dev", "ino", "index", "order"]).fill_null(-1).to_numpy()
        gp_aid = np.maximum(gp_aid, a)      # aids follow the line: the newest folio covering the index
    # filemap_read() marks the first folio of a read only if the read does not start in the
    # folio the task's previous read of the file ended in (pos_same_folio): one mark per folio
    # for a sequential reader
    gp = gp.with_columns(pl.Series("aid", gp_aid)).with_columns(
        pl.col("aid").shift(1).over(["pid", "dev", "ino"]).alias("prev_aid"))
    gp = gp.filter(pl.col("prev_aid").is_null() | (pl.col("aid") != pl.col("prev_aid")))
    gp_aid = gp["aid"].to_numpy()
    # the stream (trace order)
    cadd = adds.filter(inpid)
    ext = dels.filter(~pl.col("in_round") & pl.col("aid").is_not_null())
    inode = pl.concat([cadd.select("dev", "ino"), ext.select("dev", "ino")]).unique().with_row_index("mapping")
    inode = inode.with_columns((pl.col("mapping").cast(pl.Int64) + 1).alias("mapping"))
    cadd = cadd.join(inode, on=["dev", "ino"], how="left")

    def part(df, kind, aid, order, mapping, index):
        return pl.DataFrame({"line": df["line"].cast(pl.Int64), "kind": pl.Series([kind] * df.height, dtype=pl.Int64),
                             "aid": aid, "order": order, "cpu": df["cpu"].cast(pl.Int64), "mapping": mapping,
                             "index": index}, schema={"line": pl.Int64, "kind": pl.Int64, "aid": pl.Int64,
                                                      "order": pl.Int64, "cpu": pl.Int64, "mapping": pl.Int64,
                                                      "index": pl.Int64})

    zeros = lambda df: pl.Series([0] * df.height, dtype=pl.Int64)  # noqa: E731
    parts = [
        part(cadd, EV_ADD, cadd["aid"], cadd["order"], cadd["mapping"], cadd["index"]),
        part(anon, EV_ANON, anon["aid"], zeros(anon), zeros(anon), zeros(anon)),
        part(gp, EV_ACCESS, pl.Series(gp_aid), zeros(gp), zeros(gp), gp["index"]),
        part(ext, EV_DELETE, ext["aid"], ext["order"], zeros(ext), ext["index"]),
    ]
    st = pl.concat(parts).sort("line", maintain_order=True)
    # kernel figures
    ri = ev["mm_vmscan_lru_shrink_inactive"].filter(inpid)
    iso = ev["mm_vmscan_lru_isolate"].filter(inpid)
    kdel = dels.filter(pl.col("in_round"))
    kernel = {
        "reclaim_rounds": int(len(rb_lines)),
        "round_reclaimed": int(re_.filter(inpid)["nr_reclaimed"].sum() or 0),
        "shrink_inactive": int(ri.height),
        "pages_scanned": int(ri["nr_scanned"].sum() or 0),
        "pages_reclaimed": int(ri["nr_reclaimed"].sum() or 0),
        "isolate_requested": int(iso["nr_requested"].sum() or 0),
        "pages_taken": int(iso["nr_taken"].sum() or 0),
        "activate_file": int(ri["nr_activate_file"].sum() or 0),
        "nr_dirty": int(ri["nr_dirty"].sum() or 0),
        "nr_writeback": int(ri["nr_writeback"].sum() or 0),
        "shrink_active": int(ev["mm_vmscan_lru_shrink_active"].filter(inpid).height),
        "deletions": int(kdel.height),
        "deleted_pages": int((2 ** kdel["order"]).sum() or 0),
        "kswapd_wake": int(ev["mm_vmscan_kswapd_wake"].height),
        "kswapd_sleep": int(ev["mm_vmscan_kswapd_sleep"].height),
        "direct_reclaim": int(ev["mm_vmscan_direct_reclaim_begin"].height),
        "by_priority": {int(k): int(v) for k, v in ri.group_by("priority").len().sort("priority").iter_rows()},
    }
    # the driver event at which each kernel round ran (the next driver event after its begin)
    sl = st["line"].to_numpy()
    round_ev = np.searchsorted(sl, rb_lines, side="left")
    return ReclaimEvents(kind=st["kind"].to_numpy().astype(np.int64), aid=st["aid"].fill_null(-1).to_numpy()
                         .astype(np.int64), order=st["order"].fill_null(0).to_numpy().astype(np.int64),
                         cpu=st["cpu"].to_numpy().astype(np.int64), mapping=st["mapping"].to_numpy().astype(np.int64),
                         index=st["index"].to_numpy().astype(np.int64), line=sl.astype(np.int64),
                         n_ids=n_add + anon.height, pids=pids, kernel=kernel,
                         kernel_deleted_aids=kdel["aid"].drop_nulls().to_numpy().astype(np.int64),
                         kernel_round_events=round_ev.astype(np.int64))


@njit
def replay_reclaim_kernel(ms, ss, pa, rs, cs, kind, aid, order, cpu, mapping, index, memcg, aid2slot, slot2aid,
                          first, counts):
    """Run events [first, ...) until the end or until the folio state or the log needs room
    (returns the next event).  counts: adds, anon, accesses, deletes, charge_forced, missing,
    alloc_failed."""
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
        if k == 0 or k == 1:
            anon = k == 1
            gfp = np.int64(ANON_GFP) if anon else np.int64(READAHEAD_GFP)
            if order[i] > 0:
                gfp |= G.__GFP_COMP
            fails = rs.vm[27]
            s = add_folio_nb(ms, ss, pa, rs, cs, anon, order[i], memcg, gfp, c, mapping[i], index[i], True)
            if s == -22:
                return i
            if s < 0:
                counts[6] += 1
            else:
                aid2slot[aid[i]] = s
                slot2aid[s] = aid[i]
            if rs.vm[27] > fails:
                counts[4] += 1
            counts[1 if anon else 0] += 1
        elif k == 2:
            a = aid[i]
            if a >= 0 and aid2slot[a] >= 0:
                folio_mark_accessed(ms, rs, aid2slot[a], c)
                counts[2] += 1
            else:
                counts[5] += 1
        else:
            a = aid[i]
            if a >= 0 and aid2slot[a] >= 0:
                s = aid2slot[a]
                if delete_folio_nb(ms, ss, pa, rs, s, c) >= 0:
                    aid2slot[a] = -1
                    slot2aid[s] = -1
                    counts[3] += 1
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


def _pct(model: float, kernel: float) -> float | None:
    return None if kernel == 0 else round(100.0 * (model - kernel) / kernel, 3)


def run_reclaim(path: str | Path, *, mem: str = "2G", design: str = "linux", limit_pages: int | None = None,
                swap_pages: int = 0, pids: list[int] | None = None, cpus: int = 2) -> dict:
    """Replay a capture's cgroup activity on the model; the model's reclaim beside the kernel's."""
    p = Path(path)
    trace = p / "trace.txt.zst" if p.is_dir() else p
    cap = trace.parent
    evs = load_reclaim_events(trace, pids)
    if limit_pages is None:
        limit_pages = _capture_limit(cap)
    m = Machine.create(mem, design=design, cpus=cpus)
    rc = Reclaim(m, max_memcgs=4, swap_pages=swap_pages, log_capacity=1 << 18)
    memcg = rc.memcg_create(limit_pages)
    f = rc.folios
    aid2slot = np.full(max(1, evs.n_ids), -1, np.int64)
    slot2aid = np.full(f.state.pfn.shape[0], -1, np.int64)
    counts = np.zeros(8, np.int64)
    logs = []
    i = 0
    n = len(evs.kind)
    while True:
        i = int(replay_reclaim_kernel(f.state, f.slab.state, f.pa, rc.state, rc.compact_state, evs.kind, evs.aid,
                                      evs.order, evs.cpu, evs.mapping, evs.index, np.int64(memcg), aid2slot, slot2aid,
                                      np.int64(i), counts))
        ln = int(rc.state.logn[0])
        logs.append(rc.state.log[:ln].copy())
        rc.state.logn[0] = 0
        if i >= n:
            break
        if not headroom_ok(f.state, f.slab.state):
            f.state = grow_memdesc_state(f.state, 2 * MAX_PIECES)
            f.slab.state = slab_state_headroom(f.slab.state, 4 * HEADROOM_SLABS)
        if slot2aid.shape[0] < f.state.pfn.shape[0]:
            s2 = np.full(f.state.pfn.shape[0], -1, np.int64)
            s2[:slot2aid.shape[0]] = slot2aid
            slot2aid = s2
        if rc.state.log.shape[0] < 1 << 18:
            rc.state = grow_log(rc.state, 1 << 18)
    if int(rc.state.logn[1]):
        raise ConfigError(f"the model's event log dropped {int(rc.state.logn[1])} rows: folio identities are lost")
    log = np.concatenate(logs) if logs else np.zeros((0, 14), np.int64)
    check = rc.check()
    return _compare(evs, rc, memcg, log, counts, cap, limit_pages, mem, design, swap_pages, check)


def _capture_limit(cap: Path) -> int:
    """The memcg limit the workload set (``memory.limit_in_bytes``), in pages; 512 MiB else."""
    ws = cap / "workload.sh"
    if ws.is_file():
        import re

        mt = re.search(r"echo \$\(\((\d+) << (\d+)\)\) > \$CG/memory\.(limit_in_bytes|max)", ws.read_text())
        if mt:
            return (int(mt.group(1)) << int(mt.group(2))) >> 12
    return (512 << 20) >> 12


def _vmstat_delta(cap: Path) -> dict[str, int]:
    out = {}
    b, a = cap / "before.vmstat", cap / "after.vmstat"
    if not (b.is_file() and a.is_file()):
        return out
    rd = lambda f: dict((ln.split()[0], int(ln.split()[1])) for ln in f.read_text().splitlines() if ln.strip())  # noqa: E731
    vb, va = rd(b), rd(a)
    for k in ("pgscan_file", "pgsteal_file", "pgscan_anon", "pgsteal_anon", "pgscan_kswapd", "pgscan_direct",
              "pgsteal_kswapd", "pgsteal_direct", "pgrefill", "pgdeactivate", "allocstall_normal",
              "nr_vmscan_immediate_reclaim", "pageoutrun"):
        if k in va and k in vb:
            out[k] = va[k] - vb[k]
    return out


def _workload_log(cap: Path) -> dict[str, int]:
    f = cap / "workload.log"
    if not f.is_file():
        return {}
    vals = f.read_text().split()
    if len(vals) >= 2 and all(v.isdigit() for v in vals[:2]):
        return {"failcnt": int(vals[0]), "max_usage_pages": int(vals[1]) >> 12}
    return {}


def _compare(evs, rc, memcg, log, counts, cap, limit_pages, mem, design, swap_pages, check) -> dict:
    k = evs.kernel
    kinds = log[:, 0] if len(log) else np.zeros(0, np.int64)
    si = log[kinds == LOG_SHRINK_INACTIVE]
    iso = log[kinds == LOG_ISOLATE]
    rb = log[kinds == LOG_MEMCG_BEGIN]
    re_ = log[kinds == LOG_MEMCG_END]
    rec = log[kinds == LOG_RECLAIMED]
    vm = {kk: int(v) for kk, v in zip(VM_NAMES, rc.state.vm, strict=True)}
    model = {
        "reclaim_rounds": int(len(rb)),
        "round_reclaimed": int(re_[:, 1].sum()) if len(re_) else 0,
        "shrink_inactive": int(len(si)),
        "pages_scanned": int(si[:, 1].sum()) if len(si) else 0,
        "pages_reclaimed": int(si[:, 2].sum()) if len(si) else 0,
        "isolate_requested": int(iso[:, 3].sum()) if len(iso) else 0,
        "pages_taken": int(iso[:, 6].sum()) if len(iso) else 0,
        "activate_file": int(si[:, 8].sum()) if len(si) else 0,
        "nr_dirty": int(si[:, 3].sum()) if len(si) else 0,
        "nr_writeback": int(si[:, 4].sum()) if len(si) else 0,
        "shrink_active": int((kinds == 9).sum()),
        "deletions": int(len(rec)),
        "deleted_pages": int((1 << rec[:, 3]).sum()) if len(rec) else 0,
        "kswapd_wake": vm["kswapd_wake"],
        "kswapd_sleep": vm["kswapd_sleep"],
        "direct_reclaim": vm["direct_reclaim"],
        "by_priority": {int(p): int(c) for p, c in zip(*np.unique(si[:, 10], return_counts=True), strict=True)}
        if len(si) else {},
    }
    kset = set(evs.kernel_deleted_aids.tolist())
    mset = set(int(a) for a in rec[:, 13] if a >= 0) if len(rec) else set()
    both = len(kset & mset)
    # rounds at the same driver event
    mev = set(int(e) for e in rb[:, 12]) if len(rb) else set()
    kev = evs.kernel_round_events.tolist()
    same = sum(1 for e in kev if e in mev)
    vmd = _vmstat_delta(cap)
    wl = _workload_log(cap)
    figures = {}
    for name in ("reclaim_rounds", "round_reclaimed", "shrink_inactive", "pages_scanned", "pages_reclaimed",
                 "pages_taken", "deletions", "deleted_pages"):
        figures[name] = {"kernel": k[name], "model": model[name], "diff_pct": _pct(model[name], k[name])}
    vmcmp = {}
    for name, mv in (("pgscan_file", vm["pgscan_file"]), ("pgsteal_file", vm["pgsteal_file"]),
                     ("pgscan_anon", vm["pgscan_anon"]), ("pgsteal_anon", vm["pgsteal_anon"]),
                     ("pgscan_kswapd", vm["pgscan_kswapd"]), ("pgscan_direct", vm["pgscan_direct"]),
                     ("pgsteal_kswapd", vm["pgsteal_kswapd"]), ("pgsteal_direct", vm["pgsteal_direct"]),
                     ("pgrefill", vm["pgrefill"]), ("pgdeactivate", vm["pgdeactivate"])):
        if name in vmd:
            vmcmp[name] = {"kernel": vmd[name], "model": mv, "diff_pct": _pct(mv, vmd[name])}
    mc = rc.state.mc[memcg]
    return {
        "capture": str(cap), "design": design, "mem": mem, "limit_pages": int(limit_pages), "swap_pages": swap_pages,
        "pids": evs.pids, "events": {"adds": int(counts[0]), "anon": int(counts[1]), "accesses": int(counts[2]),
                                     "deletes": int(counts[3]), "charges_forced": int(counts[4]),
                                     "accesses_unmatched": int(counts[5]), "alloc_failed": int(counts[6])},
        "kernel": k, "model": model, "figures": figures, "vmstat": vmcmp,
        "folios": {"kernel_reclaimed": len(kset), "model_reclaimed": len(mset), "both": both,
                   "jaccard": round(both / max(1, len(kset | mset)), 4)},
        "rounds_same_event": {"kernel_rounds": len(kev), "model_round_at_same_event": same,
                              "fraction": round(same / max(1, len(kev)), 4)},
        "memcg": {"failcnt": {"kernel": wl.get("failcnt"), "model": int(mc[MCF_FAILCNT])},
                  "max_usage_pages": {"kernel": wl.get("max_usage_pages"), "model": int(mc[MCF_WATERMARK])}},
        "model_vmstat": vm,
        "log_dropped": int(rc.state.logn[1]),
        "check": check,
    }
