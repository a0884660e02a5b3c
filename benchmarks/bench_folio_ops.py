"""Split, migration and pin costs per design, and descriptor fault injection over many operations.

    .venv/bin/python benchmarks/bench_folio_ops.py [--designs linux,radix,vmem] [--mem 2G] [--n 2000]
                                                   [--fault-ops 1000000] [--fault-rate 0.05] [--json PATH]

For every design, on a fresh x86-64 machine (``--mem``), from numba loops (best of 3):

* ``alloc_free``: folio_alloc + folio_put of an order-0 and of an order-9 anon folio (the
  two-part allocation where descriptors are separate), ns per pair;
* ``split``: ``--n`` order-9 anon folios mapped by one PMD, each split non-uniformly at page
  3 (11 folios) or uniformly to order 0 (512 folios; the PMD mapping becomes 512 PTE
  mappings): ns per split (the splits alone are timed), descriptor allocations per split,
  and how many splits failed for memory (descriptors or the allocator's records);
* ``migrate``: mapped order-0 (5 x ``--n``) and order-9 (``--n``) folios migrated once each:
  ns per migration (the migrations alone), descriptor allocations per migration;
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
from memdesc.mm.slab import slab_state_headroom

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
def fault_in(ms, ss, pa, n, order, pmd, out):
    """n anon folios faulted in: mapped by one PMD (pmd) or a PTE per page, holding the caller's
    reference beside the mapping's (as a splitter or migrator does); their slots in out."""
    k = 0
    gfp = GFP_THP if order > 0 else GFP_SMALL
    for _ in range(n):
        if not F.headroom_ok(ms, ss):
            break
        s = F.memdesc_alloc(ms, ss, pa, gfp, order, MD_ANON, 0)
        if s < 0:
            continue
        if pmd:
            F.folio_map_pmd(ms, s)
        else:
            F.folio_map_ptes(ms, s, 0, np.int64(1) << order)
        out[k] = s
        k += 1
    return k


@njit
def split_all(ms, ss, pa, slots, n, new_order, at, uniform, pieces):
    """Split each folio; the pieces go to pieces[] (count returned, and the failures)."""
    tmp = np.empty(F.MAX_PIECES, np.int64)
    k = 0
    failed = 0
    for i in range(n):
        r = F.folio_split(ms, ss, pa, slots[i], new_order, at, uniform, 0, tmp)
        if r < 0:
            failed += 1
            pieces[k] = slots[i]
            k += 1
            continue
        for j in range(r):
            if tmp[j] >= 0:
                pieces[k] = tmp[j]
                k += 1
    return k, failed


@njit
def migrate_all(ms, ss, pa, slots, n):
    failed = 0
    for i in range(n):
        t = F.folio_migrate(ms, ss, pa, slots[i], 0)
        if t < 0:
            failed += 1
        else:
            slots[i] = t
    return failed


@njit
def drop_slots(ms, ss, pa, slots, n):
    for i in range(n):
        F.drop_all(ms, ss, pa, slots[i], 0)


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
    # room for every descriptor the measured loops allocate (they cannot grow state mid-loop)
    f.slab.state = slab_state_headroom(f.slab.state, 16 * n + F.HEADROOM_SLABS)
    # compile everything once
    alloc_free_loop(f.state, f.slab.state, f.pa, 2, 0, GFP_SMALL)
    pin_loop(f.state, f.slab.state, f.pa, 2)
    r: dict = {"design": design, "struct_page_bytes": m.design.struct_page_bytes,
               "descriptors_separate": f.layout.separate}
    for order in (0, 9):
        k = n * (10 if order == 0 else 1)
        t, ok = timed(f, alloc_free_loop, k, order, GFP_THP if order else GFP_SMALL)
        r[f"alloc_free_order{order}_ns"] = round(t / max(ok, 1) * 1e9, 1)
    slots = np.empty(n * 8, np.int64)
    pieces = np.empty(n * 520, np.int64)
    for name, new_order, uniform in (("split_at_page_order0", 0, False), ("split_uniform_order0", 0, True)):
        best = float("inf")
        for _ in range(3):
            f._ensure()
            f.state = F.grow_memdesc_state(f.state, n * 520)
            k = int(fault_in(f.state, f.slab.state, f.pa, n, 9, True, slots))
            before = f.op_stats()
            t = time.perf_counter()
            np_, failed = split_all(f.state, f.slab.state, f.pa, slots, k, new_order, 3, uniform, pieces)
            best = min(best, (time.perf_counter() - t) / max(k, 1))
            calls = op_delta(f, before, "split", "calls")
            ok = calls - int(failed)
            r[name] = {
                "ns_per_split": None, "folios": op_delta(f, before, "split", "pieces") // max(ok, 1),
                "descriptor_allocations_per_split": round(op_delta(f, before, "split", "descriptor_allocations")
                                                          / max(calls, 1), 2),
                "failed_for_memory": op_delta(f, before, "split", "descriptor_failures")
                + op_delta(f, before, "split", "allocator_split_failures"),
            }
            drop_slots(f.state, f.slab.state, f.pa, pieces, np_)
        r[name]["ns_per_split"] = round(best * 1e9, 1)
    for order in (0, 9):
        best = float("inf")
        k = n * (5 if order == 0 else 1)
        for _ in range(3):
            f._ensure()
            f.state = F.grow_memdesc_state(f.state, 2 * k)
            got = int(fault_in(f.state, f.slab.state, f.pa, k, order, False, slots))
            before = f.op_stats()
            t = time.perf_counter()
            failed = migrate_all(f.state, f.slab.state, f.pa, slots, got)
            best = min(best, (time.perf_counter() - t) / max(got, 1))
            migs = op_delta(f, before, "migrate", "calls")
            r[f"migrate_order{order}"] = {
                "ns_per_migration": None,
                "descriptor_allocations_per_migration": round(
                    op_delta(f, before, "migrate", "descriptor_allocations") / max(migs, 1), 3),
                "failed": int(failed),
                "free_path_allocations": op_delta(f, before, "migrate", "free_path_allocations"),
            }
            drop_slots(f.state, f.slab.state, f.pa, slots, got)
        r[f"migrate_order{order}"]["ns_per_migration"] = round(best * 1e9, 1)
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
