"""Where an mm replay's event goes: the cost of each layer under ``add_folio_nb``, per design.

    .venv/bin/python benchmarks/bench_mm_ops.py [--designs linux,vmem] [--mem 4G] [--n 20000] [--json PATH]

``memdesc replay CAPTURE --mode mm`` spends its loop in two operations: a new folio
(``vmscan.add_folio_nb``: allocation with recovery, memcg charge, page cache or PTEs, LRU
batch) and a deletion (``vmscan.delete_folio_nb``: LRU batches drained, off the LRU,
unmapped, uncharged, out of the page cache, freed).  This benchmark times the same work
layer by layer, each as ``--n`` order-0 operations and then their undoing, from numba
loops on an empty machine (best of 5 rounds, ns per pair):

* ``page allocator``: ``dispatch.pa_alloc`` + ``pa_free`` (the design, pcp lists);
* ``+ folio layer``: ``folio.memdesc_alloc`` + ``folio_put_refs`` (a typed allocation: slot,
  descriptor where the design separates them, pfn map);
* ``+ allocation entry``: ``vmscan.alloc_folio_recover`` + put (the watermark test that
  wakes kswapd, the recovery path unused on an empty machine);
* ``file folio``, ``anon folio``: ``add_folio_nb`` + ``delete_folio_nb`` (the whole event
  pair the mm replay runs).

Each line's difference from the one above is what that layer adds.  The load average is
printed: the machine is shared, compare figures of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from memdesc._numba import njit
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm.folio import HEADROOM_SLABS, grow_memdesc_state
from memdesc.mm.machine import Machine
from memdesc.mm.memmap import MD_FILE
from memdesc.mm.page_alloc import dispatch
from memdesc.mm.slab import slab_state_headroom
from memdesc.mm.vmscan import Reclaim, add_folio_nb, alloc_folio_recover, delete_folio_nb
from memdesc.sim.mm_replay import READAHEAD_GFP


@njit
def page_allocator(ms, ss, pa, rs, cs, n, gfp, anon, out):
    for i in range(n):
        out[i] = dispatch.pa_alloc(pa, gfp, 0, i & 1)
    for i in range(n):
        dispatch.pa_free(pa, out[i], 0, i & 1)


@njit
def folio_layer(ms, ss, pa, rs, cs, n, gfp, anon, out):
    for i in range(n):
        out[i] = F.memdesc_alloc(ms, ss, pa, gfp, 0, MD_FILE, i & 1)
    for i in range(n):
        F.folio_put_refs(ms, ss, pa, out[i], 1, i & 1)


@njit
def allocation_entry(ms, ss, pa, rs, cs, n, gfp, anon, out):
    for i in range(n):
        out[i] = alloc_folio_recover(ms, ss, pa, rs, cs, gfp, 0, MD_FILE, i & 1)
    for i in range(n):
        F.folio_put_refs(ms, ss, pa, out[i], 1, i & 1)


@njit
def folio_event_pair(ms, ss, pa, rs, cs, n, gfp, anon, out):
    for i in range(n):
        out[i] = add_folio_nb(ms, ss, pa, rs, cs, anon, 0, 0, gfp, i & 1, 3, i, True)
    for i in range(n):
        delete_folio_nb(ms, ss, pa, rs, out[i], i & 1)


STEPS = (("page allocator", page_allocator, False), ("+ folio layer", folio_layer, False),
         ("+ allocation entry", allocation_entry, False), ("file folio (add + delete)", folio_event_pair, False),
         ("anon folio (add + delete)", folio_event_pair, True))


def run(design: str, mem: str, n: int) -> dict:
    m = Machine.create(mem, design=design, cpus=2)
    rc = Reclaim(m, max_memcgs=4, log_capacity=1 << 16)
    f = rc.folios
    f.state = grow_memdesc_state(f.state, 2 * n + 4096)
    f.slab.state = slab_state_headroom(f.slab.state, 4 * HEADROOM_SLABS + n // 16)
    out = np.zeros(n, np.int64)
    row = {}
    for name, kernel, anon in STEPS:
        gfp = np.int64(G.GFP_HIGHUSER_MOVABLE if anon else READAHEAD_GFP)

        def once(kernel=kernel, gfp=gfp, anon=anon, name=name):
            kernel(f.state, f.slab.state, f.pa, rc.state, rc.compact_state, np.int64(n), gfp, anon, out)
            if out.min() < 0:
                raise SystemExit(f"{design} {name}: an allocation failed ({out.min()}): make --n smaller")

        once()
        best = min(_timed(once) for _ in range(5))
        row[name] = round(best / n * 1e9, 1)
        rc.state.logn[0] = 0
    row["check"] = rc.check()
    return row


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--designs", default="linux,vmem")
    ap.add_argument("--mem", default="4G")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    rows = {d: run(d, a.mem, a.n) for d in a.designs.split(",")}
    load1 = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared); "
          f"load average {load0:.2f} -> {load1:.2f}; ns per pair, order 0, {a.n} at a time, best of 5")
    print(f"{'':28s}" + "".join(f"{d:>12s}" for d in rows))
    for name, _, _ in STEPS:
        print(f"{name:28s}" + "".join(f"{rows[d][name]:12.0f}" for d in rows))
    print(f"{'check':28s}" + "".join(f"{rows[d]['check']:>12s}" for d in rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"mem": a.mem, "n": a.n, "load": [load0, load1], "designs": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
