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

from memdesc.errors import ConfigError
from memdesc.mm import gfp as G
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import NR_PAGE_ORDERS
from memdesc.mm.swap import (
    LOG_ISOLATE,
    LOG_MEMCG_BEGIN,
    LOG_MEMCG_END,
    LOG_RECLAIMED,
    LOG_SHRINK_INACTIVE,
    MCF_FAILCNT,
    MCF_WATERMARK,
    VM_NAMES,
)
from memdesc.mm.vmscan import Reclaim
from memdesc.sim.mm_replay import (
    ANON_GFP,
    EV_ACCESS,
    EV_ADD,
    EV_ANON,
    EV_DELETE,
    NR_COUNTS,
    READAHEAD_GFP,
    Rounds,
    capture_limit,
    latest_add,
    make_room,
    read_marks,
    replay_folio_events,
    stream_part,
    vmstat_delta,
)
from memdesc.trace.folio_events import RECLAIM_KINDS, read_folio_events

__all__ = ["ANON_GFP", "EV_ACCESS", "EV_ADD", "EV_ANON", "EV_DELETE", "READAHEAD_GFP", "ReclaimEvents",
           "load_reclaim_events", "run_reclaim"]


@dataclass
class ReclaimEvents:
    """The driver's event stream (trace order) and the kernel's own reclaim, from a capture."""

    kind: np.ndarray
    aid: np.ndarray
    order: np.ndarray
    gfp: np.ndarray
    cpu: np.ndarray
    mapping: np.ndarray
    index: np.ndarray
    line: np.ndarray
    n_ids: int
    pids: list[int]
    kernel: dict = field(default_factory=dict)
    kernel_deleted_aids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    kernel_round_events: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


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
    rounds = Rounds.of(rb, re_, pids, path)
    rb_lines = rounds.begin

    dels = ev["mm_filemap_delete_from_page_cache"]
    dels = dels.with_columns(latest_add(adds, dels, ["pfn"]).alias("aid"))
    dels = dels.with_columns(pl.Series("in_round", rounds.inside(dels)))
    # reads: the latest add covering the first index of the request, once per folio (read_marks)
    gp = read_marks(adds, ev["mm_filemap_get_pages"].filter(inpid))
    gp_aid = gp["aid"].to_numpy()
    # the stream (trace order)
    cadd = adds.filter(inpid)
    ext = dels.filter(~pl.col("in_round") & pl.col("aid").is_not_null())
    inode = pl.concat([cadd.select("dev", "ino"), ext.select("dev", "ino")]).unique().with_row_index("mapping")
    inode = inode.with_columns((pl.col("mapping").cast(pl.Int64) + 1).alias("mapping"))
    cadd = cadd.join(inode, on=["dev", "ino"], how="left")

    zeros = lambda df: pl.Series([0] * df.height, dtype=pl.Int64)  # noqa: E731
    add_gfp = pl.when(pl.col("order") > 0).then(READAHEAD_GFP | G.__GFP_COMP).otherwise(READAHEAD_GFP)
    parts = [
        stream_part(cadd, EV_ADD, cadd["aid"], cadd["order"], cadd.select(add_gfp.alias("g"))["g"], 0,
                    cadd["mapping"], cadd["index"]),
        stream_part(anon, EV_ANON, anon["aid"], zeros(anon), ANON_GFP, 0, zeros(anon), zeros(anon)),
        stream_part(gp, EV_ACCESS, pl.Series(gp_aid), zeros(gp), 0, 0, zeros(gp), gp["index"]),
        stream_part(ext, EV_DELETE, ext["aid"], ext["order"], 0, 0, zeros(ext), ext["index"]),
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
                         gfp=st["gfp"].to_numpy().astype(np.int64),
                         cpu=st["cpu"].to_numpy().astype(np.int64), mapping=st["mapping"].to_numpy().astype(np.int64),
                         index=st["index"].to_numpy().astype(np.int64), line=sl.astype(np.int64),
                         n_ids=n_add + anon.height, pids=pids, kernel=kernel,
                         kernel_deleted_aids=kdel["aid"].drop_nulls().to_numpy().astype(np.int64),
                         kernel_round_events=round_ev.astype(np.int64))


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
        limit_pages = capture_limit(cap)
    m = Machine.create(mem, design=design, cpus=cpus)
    rc = Reclaim(m, max_memcgs=4, swap_pages=swap_pages, log_capacity=1 << 18)
    memcg = rc.memcg_create(limit_pages)
    f = rc.folios
    aid2slot = np.full(max(1, evs.n_ids), -1, np.int64)
    slot2aid = np.full(f.state.pfn.shape[0], -1, np.int64)
    counts = np.zeros(NR_COUNTS, np.int64)
    made = np.zeros((2, NR_PAGE_ORDERS + 1), np.int64)
    memcgs = np.full(len(evs.kind), memcg, np.int64)
    logs = []
    i = 0
    n = len(evs.kind)
    while True:
        i = int(replay_folio_events(f.state, f.slab.state, f.pa, rc.state, rc.compact_state, evs.kind, evs.aid,
                                    evs.order, evs.gfp, evs.cpu, memcgs, evs.mapping, evs.index, aid2slot, slot2aid,
                                    np.int64(i), counts, made))
        ln = int(rc.state.logn[0])
        logs.append(rc.state.log[:ln].copy())
        rc.state.logn[0] = 0
        if i >= n:
            break
        slot2aid = make_room(rc, slot2aid)
    if int(rc.state.logn[1]):
        raise ConfigError(f"the model's event log dropped {int(rc.state.logn[1])} rows: folio identities are lost")
    log = np.concatenate(logs) if logs else np.zeros((0, 14), np.int64)
    check = rc.check()
    return _compare(evs, rc, memcg, log, counts, cap, limit_pages, mem, design, swap_pages, check)


def _vmstat_delta(cap: Path) -> dict[str, int]:
    return vmstat_delta(cap, ("pgscan_file", "pgsteal_file", "pgscan_anon", "pgsteal_anon", "pgscan_kswapd",
                              "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pgrefill", "pgdeactivate",
                              "allocstall_normal", "nr_vmscan_immediate_reclaim", "pageoutrun"))


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
