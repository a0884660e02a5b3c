"""Shadow replay: exact replay that records, before each event, the model's own decision.

Theory
------
``memdesc replay CAPTURE --mode shadow`` runs the exact replay of
:mod:`memdesc.sim.replay` and, before each real event is applied, lets the ``linux``
model decide from its current state what it would do — which pcp page, which buddy
block, claim or steal, pcp or buddy for a free, which pages a drain returns and how many
(the classes and the knowledge of list positions are described in
:mod:`memdesc.sim.shadow_kernels`) — and counts whether the kernel did the same.  The
decision is computed by core.py's own functions (read-only choices and pcp bookkeeping on
copies), never by a second implementation.

What the before-snapshot cannot give is set up here: zoneinfo's per-CPU ``high`` and
``count`` (the pcp pages the model does not have, ``pcp_unseen``), the two pcp rows
bounding the invisible counters, and the *unknown* position of every free block of the
snapshot.

The result (:func:`summary`) is the JSON key ``shadow``: totals and per class
``decisions``, ``agree``, ``informed_decisions``, ``informed_agree``, plus the fallback
kinds the model chose beside the trace's, free decisions the trace never resolved, and the
first N disagreements of each class with the model's state (:func:`divergences`).
"""

from __future__ import annotations

import numpy as np

from memdesc.errors import ConfigError
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import MIGRATE_TYPES, NR_PAGE_ORDERS, NR_PCP_LISTS
from memdesc.mm.page_alloc import core, dispatch
from memdesc.sim import replay_kernels as R
from memdesc.sim import shadow_kernels as S
from memdesc.sim.snapshot import capture as open_capture

#: disagreements kept per class by default (``--divergences``)
DEFAULT_DIVERGENCES = 0


def next_alloc_index(ev: np.ndarray, cpu: np.ndarray, ncpu: int) -> np.ndarray:
    """For every event, the index of the next mm_page_alloc on the same (folded) CPU, or -1:
    the allocation a zone_locked or extfrag event belongs to (its gfp decides the zone)."""
    n = ev.shape[0]
    out = np.full(n, -1, np.int64)
    c = cpu.astype(np.int64) % max(1, ncpu)
    idx = np.arange(n, dtype=np.int64)
    for k in range(ncpu):
        mine = idx[c == k]
        allocs = mine[ev[mine] == R.EV_ALLOC]
        if allocs.shape[0] == 0:
            continue
        pos = np.searchsorted(allocs, mine, side="left")
        ok = pos < allocs.shape[0]
        out[mine[ok]] = allocs[pos[ok]]
    return out


def vmstat_phase(cols: dict[str, np.ndarray]) -> int:
    """The phase (ns within the second) at which the traced kernel runs vmstat_update(), or -1.

    decay_pcp_high() drains from vmstat_update(): a pcpu_drain batch that no free on its CPU
    started.  Its timer is rounded to whole seconds of jiffies (round_jiffies_relative()), so
    every such batch starts at about the same point of a second of the trace clock; the
    median over the trace's batches is taken."""
    ev = cols["event"]
    cpu = cols["cpu"].astype(np.int64)
    ts = cols["ts_ns"]
    samples = []
    for c in np.unique(cpu):
        idx = np.flatnonzero(cpu == c)
        e = ev[idx]
        prev = np.concatenate([[-1], e[:-1]])
        start = (e == R.EV_PCPU_DRAIN) & (prev != R.EV_PCPU_DRAIN) & (prev != R.EV_FREE) \
            & (prev != R.EV_FREE_BATCHED)
        samples.append(ts[idx[start]] % 1_000_000_000)
    s = np.concatenate(samples) if samples else np.zeros(0, np.int64)
    if s.shape[0] == 0:
        return -1
    return int(np.median(s))


def _zone_index(machine: Machine) -> dict[tuple[int, str], int]:
    return {(z.node, z.name): i for i, z in enumerate(machine.zones)}


def runs_core_buddy(state_type: type) -> bool:
    """Whether a design's zone layer is core's list buddy (it registers the buddy layer and
    its ``pool_rmqueue`` is core's __rmqueue): only then are core's read-only choice functions
    (``rmqueue_peek``, ``find_rmqueue_*``, ``claimed_block_pick``) the design's own decisions."""
    return (dispatch.has(state_type, *dispatch.BUDDY_PRIMITIVES)
            and dispatch.impl(state_type, "pool_rmqueue") is core.BUDDY_DEFAULTS["pool_rmqueue"])


def init_state(machine: Machine, cols: dict[str, np.ndarray], pre_pfn: np.ndarray, capture,
               ndiv: int, from_snapshot: bool) -> S.ShadowState:
    """The shadow state of a replay starting from ``machine`` (see the module docstring)."""
    d = machine.design
    if not runs_core_buddy(type(d.state)):
        raise ConfigError(f"shadow replay asks core.py's buddy code for the model's choices: the {d.name} design "
                          "does not run on it (use linux or radix)")
    st = d.state
    npages = st.owner.shape[0]
    nz = len(machine.zones)
    ncpu = machine.nr_cpus
    nbuddy = nz * NR_PAGE_ORDERS * MIGRATE_TYPES
    nlists = nbuddy + ncpu * nz * NR_PCP_LISTS
    unk = np.zeros(npages, np.uint8)
    unk_cnt = np.zeros(nlists, np.int64)
    pcp_unseen = np.zeros((ncpu, nz), np.int64)
    if from_snapshot:
        fb = d.free_blocks()
        if fb.shape[0]:
            unk[fb[:, 0]] = 1
            lid = (fb[:, 3] * NR_PAGE_ORDERS + fb[:, 1]) * MIGRATE_TYPES + fb[:, 2]
            np.add.at(unk_cnt, lid, 1)
    presnap = np.zeros(npages, np.uint8)
    keep = pre_pfn[(pre_pfn >= 0) & (pre_pfn < npages)]
    presnap[keep] = 1 if from_snapshot else 0
    zi = None
    if capture is not None and (capture / "before.zoneinfo").is_file():
        zi = open_capture(capture, "before").zoneinfo()
    pcp = st.pcp
    pcp[:, :, core.PCP_FREE_COUNT] = 0
    pcp[:, :, core.PCP_ALLOC_FACTOR] = 0
    pcp[:, :, core.PCP_FLAGS] &= core.PCPF_FREE_HIGH_BATCH
    if zi is not None:
        zidx = _zone_index(machine)
        for z in zi:
            i = zidx.get((z.node, z.zone))
            if i is None or not z.pagesets:
                continue
            for c, ps in enumerate(z.pagesets[:ncpu]):
                pcp_unseen[c, i] = ps.count
                pcp[c, i, core.PCP_HIGH] = ps.high
    hi = pcp.copy()
    hi[:, :, core.PCP_FREE_COUNT] = hi[:, :, core.PCP_BATCH] << core.CONFIG_PCP_BATCH_SCALE_MAX
    hi[:, :, core.PCP_ALLOC_FACTOR] = core.CONFIG_PCP_BATCH_SCALE_MAX
    hi[:, :, core.PCP_FLAGS] |= core.PCPF_PREV_FREE_HIGH_ORDER
    pcp_done = np.zeros(nlists, np.uint8)
    for c in range(ncpu):
        for z in range(nz):
            if pcp_unseen[c, z] == 0:
                base = nbuddy + (c * nz + z) * NR_PCP_LISTS
                pcp_done[base:base + NR_PCP_LISTS] = 1
    for z in range(nz):
        if st.z_managed[z] > 0 and st.z_free[z] < st.wmark[z, 2] + st.boost[z]:
            st.z_flags[z] |= core.ZONE_BELOW_HIGH
    ctx = np.zeros((ncpu, S.NR_X), np.int64)
    ctx[:, [S.X_ALLOC, S.X_RLID, S.X_KPFN]] = -1
    ev = cols["event"]
    misc = np.zeros(8, np.int64)
    misc[S.M_PHASE] = vmstat_phase(cols)
    misc[S.M_TRIG_FIRST] = -1
    nfree = int(np.count_nonzero(ev == R.EV_FREE) + np.count_nonzero(ev == R.EV_FREE_BATCHED)) + 1
    return S.ShadowState(
        dcount=np.zeros((S.NR_CLASSES, S.NR_D), np.int64),
        divs=np.full((S.NR_CLASSES, max(0, ndiv), S.NR_DIV_FIELDS), -1, np.int64),
        ndiv=np.zeros(S.NR_CLASSES, np.int64),
        unk=unk, unk_cnt=unk_cnt,
        headins=np.zeros(npages, np.uint8),
        phantom=np.zeros(npages, np.uint8),
        presnap=presnap,
        pcp_done=pcp_done,
        pcp_unseen=pcp_unseen,
        row_hi=hi,
        ctx=ctx,
        pend=np.full(npages, -1, np.int32),
        fdec=np.zeros((nfree, 4), np.int64),
        nfdec=np.zeros(1, np.int64),
        nxt_alloc=next_alloc_index(ev, cols["cpu"], ncpu),
        lines=cols["line"].astype(np.int64),
        fall=np.zeros((2, 2), np.int64),
        tick=np.full(ncpu, -1, np.int64),
        last_tick=np.zeros(ncpu, np.int64),
        cand=np.zeros((S.CAND, 4), np.int64),
        misc=misc,
        trig=np.zeros(4, np.int64),
    )


def summary(sh: S.ShadowState) -> dict:
    """The JSON form (key ``shadow``)."""
    dc = sh.dcount
    by_class = {}
    for k, name in enumerate(S.CLASS_NAMES):
        by_class[name] = {"decisions": int(dc[k, S.D_N]), "agree": int(dc[k, S.D_AGREE]),
                          "informed_decisions": int(dc[k, S.D_INF]), "informed_agree": int(dc[k, S.D_INF_AGREE])}
    n = int(dc[:, S.D_N].sum())
    a = int(dc[:, S.D_AGREE].sum())
    ni = int(dc[:, S.D_INF].sum())
    ai = int(dc[:, S.D_INF_AGREE].sum())
    nf = int(sh.nfdec[0])
    status = sh.fdec[:nf, 2]
    return {
        "decisions": n, "agree": a, "fraction": (a / n) if n else None,
        "informed_decisions": ni, "informed_agree": ai, "informed_fraction": (ai / ni) if ni else None,
        "by_class": by_class,
        "fallbacks": {"model": {"claim": int(sh.fall[0, 0]), "steal": int(sh.fall[0, 1])},
                      "trace": {"claim": int(sh.fall[1, 0]), "steal": int(sh.fall[1, 1])}},
        "free_decisions_unresolved": int(np.count_nonzero(status != 1)),
        "drain_trigger": {"decisions": int(sh.trig[0]), "agree": int(sh.trig[1]),
                          "informed_decisions": int(sh.trig[2]), "informed_agree": int(sh.trig[3]),
                          "first_informed_disagreement_line": (int(sh.lines[sh.misc[S.M_TRIG_FIRST]])
                                                               if sh.misc[S.M_TRIG_FIRST] >= 0 else None)},
        "pcp_pages_unseen_at_end": int(sh.pcp_unseen.sum()),
        "candidate_buffer_overflows": int(sh.misc[S.M_NO_ROOM]),
        "vmstat_updates": int(sh.misc[S.M_TICKS] + sh.misc[S.M_RESYNC]),
        "vmstat_phase_ms": round(int(sh.misc[S.M_PHASE]) / 1e6, 3) if sh.misc[S.M_PHASE] >= 0 else None,
    }


def divergences(sh: S.ShadowState, machine: Machine) -> dict[str, list[dict]]:
    """The recorded disagreements per class, as dicts of :data:`shadow_kernels.DIV_FIELDS`."""
    zones = [f"{z.node}:{z.name}" for z in machine.zones]
    mtn = machine.migratetype_names
    out: dict[str, list[dict]] = {}
    for k, name in enumerate(S.CLASS_NAMES):
        rows = []
        for r in sh.divs[k, : int(sh.ndiv[k])]:
            d = {f: int(v) for f, v in zip(S.DIV_FIELDS, r, strict=True)}
            for f in ("kernel_zone", "model_zone"):
                d[f] = zones[d[f]] if 0 <= d[f] < len(zones) else None
            for f in ("kernel_kind", "model_kind"):
                d[f] = S.KIND_NAMES.get(d[f], str(d[f]))
            for f in ("migratetype", "kernel_pb_type", "model_pb_type"):
                d[f] = mtn[d[f]] if 0 <= d[f] < len(mtn) else None
            s = d["kernel_pfn_state"]
            d["kernel_pfn_state"] = R.STATE_NAMES[s] if 0 <= s < len(R.STATE_NAMES) else None
            d["informed"] = bool(d["informed"])
            rows.append(d)
        out[name] = rows
    return out


__all__ = ["DEFAULT_DIVERGENCES", "divergences", "init_state", "next_alloc_index", "summary"]

