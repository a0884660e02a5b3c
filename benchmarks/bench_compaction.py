"""A full compaction (vm.compact_memory) per design: time, pages migrated, descriptor allocations.

    .venv/bin/python benchmarks/bench_compaction.py [--designs linux,radix,vmem,llfree] [--mem 1G]
                                                    [--capture ../shared/traces/compaction] [--json PATH]

1. **Synthetic**: a fresh x86-64 machine of ``--mem`` filled with order-0 (and every 7th an
   order-2) LRU anon folios, every other one freed (each pageblock half used, no order-9 block
   free); then ``compact_memory()``: seconds (the compaction alone, kernels compiled by a
   warm-up on a small machine first), pages migrated, pages per second, descriptor allocations,
   order-9 blocks before and after.
2. **Capture** (``--capture``): :func:`memdesc.sim.compact.compact_capture` on the capture's
   before-snapshot (rebuild, folio adoption, compaction): the compaction's seconds and the
   figures ``memdesc compact`` reports, beside the kernel's own full compaction.

Figures depend on the machine; the report names it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from memdesc.mm import compaction as C
from memdesc.mm import folio as F
from memdesc.mm.machine import Machine
from memdesc.sim.compact import compact_capture


def fragmented(design: str, mem: str) -> tuple[Machine, F.Folios]:
    m = Machine.create(mem, design=design, cpus=2)
    f = F.Folios.of(m)
    hs = []
    while True:
        h = f.folio_alloc(gfp="GFP_HIGHUSER_MOVABLE", order=2 if len(hs) % 7 == 6 else 0)
        if h is None:
            break
        f.lru_add(h, "inactive_anon")
        hs.append(h)
    for i, h in enumerate(hs):
        if i % 2:
            f.lru_del(h)
            f.put(h)
        else:   # as a page fault leaves them: mapped (a PTE per page), the allocation's reference dropped
            f.map_ptes(h, 0, f.nr_pages(h))
            f.put(h)
    return m, f


def order9(m: Machine) -> int:
    nf = np.asarray(m.design.nr_free)   # buddyinfo's view on every design
    return int(sum(int(nf[:, o].sum()) << (o - 9) for o in range(9, nf.shape[1])))


def synthetic(design: str, mem: str) -> dict:
    m, f = fragmented(design, "32M")  # warm-up: compile
    C.Compaction(f).compact_memory()
    m, f = fragmented(design, mem)
    c = C.Compaction(f)
    o9 = order9(m)
    t = time.perf_counter()
    c.compact_memory()
    dt = time.perf_counter() - t
    s = c.stats()
    return {"design": design, "mem": mem, "seconds": dt, "pages_migrated": s["pages_migrated"],
            "pages_per_second": s["pages_migrated"] / dt if dt else None,
            "migrate_scanned": s["compact_migrate_scanned"], "free_scanned": s["compact_free_scanned"],
            "descriptor_allocations": s["descriptor_allocations"], "descriptor_failures": s["descriptor_failures"],
            "order9_before": o9, "order9_after": order9(m), "check": f.check()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", default="linux,radix,vmem,llfree")
    ap.add_argument("--mem", default="1G")
    ap.add_argument("--capture", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
           "synthetic": [], "capture": []}
    for d in a.designs.split(","):
        r = synthetic(d, a.mem)
        out["synthetic"].append(r)
        print(f"synthetic {d:6s} {a.mem}: {r['seconds']:.3f} s, {r['pages_migrated']:,} pages migrated "
              f"({r['pages_per_second']:,.0f}/s), descriptor allocations {r['descriptor_allocations']:,}, "
              f"order-9 blocks {r['order9_before']} -> {r['order9_after']}, check {r['check']}")
    if a.capture is not None:
        for d in a.designs.split(","):
            t = time.perf_counter()
            r = compact_capture(a.capture, d)
            total = time.perf_counter() - t
            keep = {k: r[k] for k in ("design", "seconds", "pages_migrated", "folios_migrated", "migrate_failed_folios",
                                      "descriptor_allocations", "order9_blocks_before", "order9_blocks_after",
                                      "check")}
            keep["total_seconds"] = total
            keep["adoption"] = r["adoption"]
            out["capture"].append(keep)
            print(f"capture {d:6s}: compaction {r['seconds']:.2f} s (with rebuild and adoption {total:.1f} s), "
                  f"{r['pages_migrated']:,} pages migrated, descriptor allocations {r['descriptor_allocations']:,} "
                  f"(adoption {r['adoption']['descriptor_allocations']:,}), order-9 blocks "
                  f"{r['order9_blocks_before']:,} -> {r['order9_blocks_after']:,}, check {r['check']}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
