"""Split, migration and pin costs per design, and descriptor fault injection over many operations.

    .venv/bin/python benchmarks/bench_folio_ops.py [--designs linux,radix,vmem] [--mem 2G] [--n 2000]
                                                   [--fault-ops 1000000] [--fault-rate 0.05] [--json PATH]

For every design, on a fresh x86-64 machine (``--mem``), from numba loops (best of 3):

* ``alloc_free``: folio_alloc + folio_put of an order-0 and of an order-9 anon folio (the
  two-part allocation where descriptors are separate), ns per pair;
* ``split``: an order-9 anon folio mapped by one PMD, split non-uniformly at page 3 (11
  folios) and uniformly to order 0 (512 folios): ns per split beyond the same cycle
  without the split, descriptor allocations per split, and how many splits failed for
  memory (descriptors or the allocator's records);
* ``migrate``: an order-0 and an order-9 mapped folio migrated 4 times: ns per migration,
  descriptor allocations per migration;
* ``pin``: pin_user_pages + unpin of a mapped order-0 folio: ns per pair; and how often a
  pinned folio refused migration (it must always: ``pinned_migrations_refused``);
* ``fault``: ``--fault-ops`` random operations (alloc / free / split / migrate / pin /
  map) with failslab at ``--fault-rate`` on every descriptor cache (and vmem's struct
  buddy): lost pages, failed frees, descriptor failures, free-path allocations, check.

Descriptor figures are per operation and come from the layer's counters, not from timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from memdesc._numba import njit
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm.machine import Machine
from memdesc.mm.memmap import MD_ANON

GFP_THP = G.GFP_HIGHUSER_MOVABLE | G.__GFP_COMP
GFP_SMALL = G.GFP_HIGHUSER_MOVABLE


@njit
def alloc_free_loop(ms, ss, pa, n, order, gfp):
    ok = 0
    for _ in range(n):
        s = F.memdesc_alloc(ms, ss, pa, gfp, order, MD_ANON, 0)
        if s < 0:
            continue
        F.folio_put_refs(ms, ss, pa, s, 1, 0)
        ok += 1
    return ok


@njit
def split_loop(ms, ss, pa, n, new_order, at, uniform, do_split, out):
    """Per iteration: fault an order-9 folio in with one PMD, take the splitter's reference,
    split (or not), then zap everything and drop the references."""
    done = 0
    failed = 0
    for _ in range(n):
        if not F.headroom_ok(ms, ss):
            break
        s = F.memdesc_alloc(ms, ss, pa, GFP_THP, 9, MD_ANON, 0)
        if s < 0:
            continue
        F.folio_map_pmd(ms, s)
        F.folio_put_refs(ms, ss, pa, s, 1, 0)
        F.folio_get(ms, s)
        k = 1
        out[0] = s
        if do_split:
            k = F.folio_split(ms, ss, pa, s, new_order, at, uniform, 0, out)
            if k < 0:
                failed += 1
                k = 1
                out[0] = s
        for j in range(k):
            p = out[j]
            if p < 0:
                continue
            F.drop_all(ms, ss, pa, p, 0)
        done += 1
    return done, failed


@njit
def migrate_loop(ms, ss, pa, n, order, times):
    done = 0
    failed = 0
    gfp = GFP_THP if order > 0 else GFP_SMALL
    for _ in range(n):
        if not F.headroom_ok(ms, ss):
            break
        s = F.memdesc_alloc(ms, ss, pa, gfp, order, MD_ANON, 0)
        if s < 0:
            continue
        F.folio_map_ptes(ms, s, 0, np.int64(1) << order)
        for _ in range(times):
            t = F.folio_migrate(ms, ss, pa, s, 0)
            if t < 0:
                failed += 1
            else:
                s = t
        F.drop_all(ms, ss, pa, s, 0)
        done += 1
    return done, failed


@njit
def pin_loop(ms, ss, pa, n):
    s = F.memdesc_alloc(ms, ss, pa, GFP_SMALL, 0, MD_ANON, 0)
    F.folio_map_ptes(ms, s, 0, 1)
    refused = 0
    for _ in range(n):
        F.folio_pin(ms, s, 1)
        if F.folio_migrate(ms, ss, pa, s, 0) == F.E_BUSY:
            refused += 1
        F.folio_unpin(ms, ss, pa, s, 1, 0)
    F.drop_all(ms, ss, pa, s, 0)
    return refused


def timed(f: F.Folios, kernel, *args, repeat: int = 3):
    """Best wall time of ``repeat`` runs of kernel(ms, ss, pa, *args) and its last result."""
    best = float("inf")
    res = None
    for _ in range(repeat):
        f._ensure()
        t = time.perf_counter()
        res = kernel(f.state, f.slab.state, f.pa, *args)
        best = min(best, time.perf_counter() - t)
    return best, res


def op_delta(f: F.Folios, before: dict, op: str, key: str) -> int:
    return f.op_stats()[op][key] - before[op][key]


def bench_design(design: str, mem: str, n: int, fault_ops: int, fault_rate: float) -> dict:
    m = Machine.create(mem, design=design)
    f = F.Folios.of(m)
    f.state = F.grow_memdesc_state(f.state, 8 * F.MAX_PIECES)
    out = np.empty(F.MAX_PIECES, np.int64)
    # compile everything once
    alloc_free_loop(f.state, f.slab.state, f.pa, 2, 0, GFP_SMALL)
    split_loop(f.state, f.slab.state, f.pa, 1, 0, 3, False, True, out)
    migrate_loop(f.state, f.slab.state, f.pa, 1, 0, 1)
    pin_loop(f.state, f.slab.state, f.pa, 2)
    r: dict = {"design": design, "struct_page_bytes": m.design.struct_page_bytes,
               "descriptors_separate": f.layout.separate}
    for order in (0, 9):
        k = n * (10 if order == 0 else 1)
        t, ok = timed(f, alloc_free_loop, k, order, GFP_THP if order else GFP_SMALL)
        r[f"alloc_free_order{order}_ns"] = round(t / max(ok, 1) * 1e9, 1)
    t0, _ = timed(f, split_loop, n, 0, 3, False, False, out)
    for name, new_order, uniform in (("split_at_page_order0", 0, False), ("split_uniform_order0", 0, True)):
        before = f.op_stats()
        t, (done, failed) = timed(f, split_loop, n, new_order, 3, uniform, True, out)
        calls = op_delta(f, before, "split", "calls")
        r[name] = {
            "ns_per_split": round((t - t0) / max(done, 1) * 1e9, 1),
            "folios": int(f.op_stats()["split"]["pieces"] - before["split"]["pieces"]) // max(calls - failed, 1),
            "descriptor_allocations_per_split": round(op_delta(f, before, "split", "descriptor_allocations")
                                                      / max(calls, 1), 2),
            "failed_for_memory": op_delta(f, before, "split", "descriptor_failures")
            + op_delta(f, before, "split", "allocator_split_failures"),
        }
    for order in (0, 9):
        before = f.op_stats()
        k = n * (5 if order == 0 else 1)
        ta, _ = timed(f, migrate_loop, k, order, 0)
        t, (done, failed) = timed(f, migrate_loop, k, order, 4)
        migs = op_delta(f, before, "migrate", "calls")
        r[f"migrate_order{order}"] = {
            "ns_per_migration": round((t - ta) / max(4 * done, 1) * 1e9, 1),
            "descriptor_allocations_per_migration": round(op_delta(f, before, "migrate", "descriptor_allocations")
                                                          / max(migs, 1), 3),
            "failed": int(failed),
            "free_path_allocations": op_delta(f, before, "migrate", "free_path_allocations"),
        }
    t, refused = timed(f, pin_loop, n * 10)
    r["pin_unpin_migrate_attempt_ns"] = round(t / (n * 10) * 1e9, 1)
    r["pinned_migrations_refused"] = f"{refused}/{n * 10}"
    r["check"] = f.check()
    if fault_ops:
        mf = Machine.create(mem, design=design, fail_descriptor_alloc=fault_rate)
        ff = F.Folios.of(mf)
        F.run_random(ff, 1000, seed=1)  # compile
        t = time.perf_counter()
        rr = F.run_random(ff, fault_ops, seed=2026)
        el = time.perf_counter() - t
        acc = ff.page_accounting()
        s = ff.summary()
        r["fault"] = {
            "operations": rr["operations"], "seconds": round(el, 2), "ops_per_second": round(rr["operations"] / el),
            "rate": fault_rate, "lost_pages": acc["lost"], "failed_frees": rr["failed_frees"],
            "pages_still_typed": acc["typed"], "descriptor_failures": s["descriptor_failures"],
            "allocation_failures": rr["allocation_failures"], "split_failures": rr["split_failures"],
            "migration_failures": rr["migration_failures"], "free_path_allocations": ff.free_path_allocations(),
            "check": ff.check(),
        }
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--designs", default="linux,radix,vmem")
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--n", type=int, default=2000, help="order-9 folios per split/migrate measurement")
    ap.add_argument("--fault-ops", type=int, default=1_000_000)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = {"machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
           "mem": args.mem, "designs": []}
    for d in args.designs.split(","):
        r = bench_design(d, args.mem, args.n, args.fault_ops, args.fault_rate)
        res["designs"].append(r)
        print(json.dumps(r, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
