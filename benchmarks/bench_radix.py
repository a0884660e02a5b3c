"""The ``radix`` design: scale, churn speed and replay speed beside ``linux``, in one run.

    .venv/bin/python benchmarks/bench_radix.py                    # everything (1T machine included)
    .venv/bin/python benchmarks/bench_radix.py --scale 64G --pairs 1000000 --repeat 1   # quick

Three parts:

* **scale**: ``Machine.create(mem, design=...)`` in a fresh subprocess per (design, size):
  creation seconds, peak RSS of the process (ru_maxrss, interpreter and numba included),
  host bytes per modelled page, beside the *modelled* metadata bytes per page (memmap,
  free lists, tree-node pages, pageblock flags).  ``linux`` (64-byte struct page) is
  measured only up to ``--linux-max`` (its 1T memmap alone is 16 GiB of host RAM).
* **churn**: order-0 alloc+free pairs at 50 % occupancy (GFP_KERNEL, 2 CPUs) on ``--mem``,
  ns per pair, each design ``--repeat`` times round-robin (benchmarks/bench_churn.py).
* **replay**: policy replay of ``--capture`` (default the ``build`` capture of
  ../shared/traces, else the bundled sample), events per second of the replay loop
  (benchmarks/bench_replay.py), round-robin.

Medians, min and max are printed with the CPU model and load average; ratios are to
``linux`` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench_churn import cpu_model
from bench_churn import run_one as churn_one
from bench_replay import capture_dir
from bench_replay import run_one as replay_one
from memdesc.units import parse_size

SCALE_CHILD = r'''
import json, resource, sys, time
from memdesc.mm.machine import Machine
mem, design = sys.argv[1], sys.argv[2]
t = time.perf_counter()
m = Machine.create(mem=mem, design=design)
dt = time.perf_counter() - t
md = m.metadata_bytes()
out = {"create_s": dt, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
       "pages": int(m.max_pfn), "metadata": md, "struct_page_bytes": m.design.struct_page_bytes}
t = time.perf_counter()
out["check"] = m.check()
out["check_s"] = time.perf_counter() - t
print(json.dumps(out))
'''

BASELINE_CHILD = r'''
import json, resource
import memdesc.mm.machine, memdesc.mm.page_alloc.radix  # noqa: F401  (interpreter + numba + kernels)
print(json.dumps({"maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
'''


def child(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"child failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def scale(sizes: list[str], designs: list[str], linux_max: str) -> dict:
    base = child(BASELINE_CHILD)["maxrss"]
    print(f"\nscale: Machine.create() in a fresh process (baseline RSS of the interpreter with the kernels "
          f"loaded: {base / 2**20:.0f} MiB)")
    print(f"{'mem':>6s} {'design':14s} {'create s':>9s} {'peak RSS':>10s} {'host B/page':>12s} "
          f"{'(minus baseline)':>17s} {'modelled B/page':>16s} {'struct page':>12s} {'check':>6s}")
    out = {}
    for mem in sizes:
        for d in designs:
            if d == "linux" and parse_size(mem) > parse_size(linux_max):
                continue
            r = child(SCALE_CHILD, mem, d)
            pages = r["pages"]
            row = {"create_s": r["create_s"], "peak_rss": r["maxrss"], "host_bytes_per_page": r["maxrss"] / pages,
                   "host_bytes_per_page_minus_baseline": (r["maxrss"] - base) / pages,
                   "modelled_metadata_bytes_per_page": r["metadata"]["total"] / pages,
                   "metadata": r["metadata"], "check": r["check"]}
            out[f"{mem}/{d}"] = row
            print(f"{mem:>6s} {d:14s} {r['create_s']:9.1f} {r['maxrss'] / 2**30:8.2f} G "
                  f"{row['host_bytes_per_page']:12.2f} {row['host_bytes_per_page_minus_baseline']:17.2f} "
                  f"{row['modelled_metadata_bytes_per_page']:16.3f} {r['struct_page_bytes']:10d} B {r['check']:>6s}")
    return out


def rows(title: str, unit: str, results: dict, better_low: bool) -> dict:
    print(f"\n{title}")
    print(f"{'design':14s} {'median ' + unit:>18s} {'min':>10s} {'max':>10s} {'vs linux':>9s}")
    base = statistics.median(results["linux"]) if "linux" in results else None
    out = {}
    for d, xs in results.items():
        med = statistics.median(xs)
        ratio = f"{med / base:8.2f}x" if base else ""
        print(f"{d:14s} {med:18.3f} {min(xs):10.3f} {max(xs):10.3f} {ratio:>9s}")
        out[d] = {"median": med, "min": min(xs), "max": max(xs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="64G,1T", help="machine sizes for the scale part ('' to skip)")
    ap.add_argument("--linux-max", default="64G", help="largest size to build the linux design at")
    ap.add_argument("--mem", default="16G", help="machine size for churn")
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--designs", default="linux,radix,radix:reserve")
    ap.add_argument("--capture", default="build", help="replay capture: anon, build, pagecache or sample")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    designs = [d for d in a.designs.split(",") if d]
    load0 = os.getloadavg()
    summary: dict = {"machine": cpu_model()}
    sizes = [s for s in a.scale.split(",") if s]
    if sizes:
        summary["scale"] = scale(sizes, designs, a.linux_max)
    for d in designs:  # compile before timing
        churn_one(d, "256M", 1000, "order0", 0)
    churn: dict = {d: [] for d in designs}
    checks = []
    for rep in range(a.repeat):
        for d in designs:
            r = churn_one(d, a.mem, a.pairs, "order0", seed=rep + 1)
            churn[d].append(r["ns_per_pair"])
            checks.append(r["check"])
    summary["churn"] = rows(f"order-0 churn, {a.mem} x86-64, {a.pairs} pairs at 50 % occupancy, {a.repeat} runs",
                            "ns/pair", churn, True)
    path = capture_dir(a.capture) or capture_dir("sample")
    rep_eps: dict = {d: [] for d in designs}
    for d in designs:
        replay_one(path, "policy", d)  # compile and cache the parsed trace
    for _ in range(a.repeat):
        for d in designs:
            r = replay_one(path, "policy", d)
            rep_eps[d].append(r["eps"] / 1e6)
            checks.append(r["check"])
    summary["replay"] = rows(f"policy replay of {path} ({r['events']} events), {a.repeat} runs",
                             "M events/s", rep_eps, False)
    load1 = os.getloadavg()
    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} CPUs; load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    print("check:", "ok" if all(c == "ok" for c in checks) else checks)
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
