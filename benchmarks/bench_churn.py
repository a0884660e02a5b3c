"""Churn benchmark: ns per alloc+free pair for each design, in one run.

    .venv/bin/python benchmarks/bench_churn.py                      # 16G, 10M pairs, all designs
    .venv/bin/python benchmarks/bench_churn.py --mem 2G --pairs 200000 --repeat 1   # quick

Two workloads per design (issue "Foundation", item 11):

* order-0 churn at 50 % occupancy on a 16 GiB x86-64 machine (GFP_KERNEL, 2 CPUs);
* mixed-order churn (the ``mix`` order and gfp distributions of memdesc.sim.churn).

Each (design, workload) runs ``--repeat`` times round-robin on fresh machines; the median,
min and max ns per pair are printed, with the machine's CPU model and load average, and the
ratio of each design to ``linux`` measured in the same run.  Compilation is excluded (the
kernels are compiled before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics

from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import DESIGNS
from memdesc.sim.churn import Churn


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_one(design: str, mem: str, pairs: int, workload: str, seed: int) -> dict:
    m = Machine.create(mem, design=design)
    if workload == "order0":
        c = Churn(m, order=0, gfp="GFP_KERNEL", occupancy=0.5, seed=seed)
    else:
        c = Churn(m, orders="mix", gfp="mix", occupancy=0.5, seed=seed)
    r = c.run(pairs)
    return {"ns_per_pair": r.ns_per_pair, "failed": r.alloc_failed, "check": m.check(),
            "metadata_bytes": m.metadata_bytes()["total"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", default="16G")
    ap.add_argument("--pairs", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--workloads", default="order0,mix")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    designs = [d for d in a.designs.split(",") if d]
    workloads = [w for w in a.workloads.split(",") if w]
    # warm up: compile every design's kernels before timing anything
    for d in designs:
        run_one(d, "256M", 1000, "mix", 0)
    load0 = os.getloadavg()
    results: dict = {w: {d: [] for d in designs} for w in workloads}
    checks = []
    for rep in range(a.repeat):
        for w in workloads:
            for d in designs:
                r = run_one(d, a.mem, a.pairs, w, seed=rep + 1)
                results[w][d].append(r["ns_per_pair"])
                checks.append(r["check"])
    load1 = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; load average before {load0[0]:.2f}, "
          f"after {load1[0]:.2f}")
    print(f"churn on a {a.mem} x86-64 machine, {a.pairs} alloc+free pairs after filling to 50 %, "
          f"{a.repeat} runs each")
    print(f"{'workload':10s} {'design':14s} {'median ns/pair':>15s} {'min':>9s} {'max':>9s} {'vs linux':>9s}")
    summary = {"machine": cpu_model(), "mem": a.mem, "pairs": a.pairs, "load": [load0[0], load1[0]],
               "results": {}}
    for w in workloads:
        base = statistics.median(results[w]["linux"]) if "linux" in results[w] else None
        for d in designs:
            xs = results[w][d]
            med = statistics.median(xs)
            ratio = f"{med / base:8.2f}x" if base else ""
            print(f"{w:10s} {d:14s} {med:15.1f} {min(xs):9.1f} {max(xs):9.1f} {ratio:>9s}")
            summary["results"].setdefault(w, {})[d] = {"median": med, "min": min(xs), "max": max(xs)}
    print("check:", "ok" if all(c == "ok" for c in checks) else checks)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)



if __name__ == "__main__":
    main()
