"""Every registered design side by side, in one run: churn speed, replay speed, order-9
availability after each capture, metadata bytes per page.

    .venv/bin/python benchmarks/bench_designs.py                         # 16G churn, every capture
    .venv/bin/python benchmarks/bench_designs.py --pairs 200000 --captures sample --repeat 1   # quick

Per design (``DESIGNS``, plus ``llfree`` without per-CPU page lists: ``llfree/no-pcp``,
llfree-linux's configuration, whose per-CPU cache is LLFree's tree reservations):

* **order-0 churn**: GFP_KERNEL at 50 % occupancy on a 16 GiB x86-64 machine with 2 CPUs,
  ``--pairs`` alloc+free pairs after the fill (uniformly random victims), ``--repeat`` runs
  round-robin on fresh machines: median wall ns per pair and the thread's CPU ns per pair
  (the machine is shared: wall time is inflated by other jobs, CPU time much less);
* **metadata bytes per page**: ``metadata_bytes()["total"]`` / pages of the churned machine
  (memmap + free-list structures + descriptors + pageblock bits; llfree: its one-word memmap
  and llfree-c's buffers, ``LLFree.metadata_size``);
* **policy replay** of every capture in ../shared/traces with kmem events (from its before
  snapshot; the trace as demands the design serves, counting the model's events): M events
  per second of the replay loop (wall, and per CPU-second of the thread), and **order-9
  availability** at the end -- free 2 MiB blocks (order >= 9 blocks of the buddyinfo view,
  in 2 MiB units) and the share of free memory they hold, beside the real kernel's
  after.buddyinfo.

Compilation and snapshot import are not timed.  The CPU model and the load average before
and after are printed: read ratios between designs of one run rather than absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from bench_churn import cpu_model  # benchmarks/ is on sys.path when this script runs
from bench_replay import capture_dir
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import DESIGNS
from memdesc.sim.churn import Churn
from memdesc.sim.replay import replay

CAPTURES = "anon,build,pagecache,files,mthp,reclaim,compaction"  # the bundled sample is the anon capture
HUGE = 9


def variants(names: str) -> list[tuple[str, str, bool]]:
    """(label, design, pcp) rows."""
    out = []
    for n in names.split(","):
        if n.endswith("/no-pcp"):
            out.append((n, n.removesuffix("/no-pcp"), False))
        elif n:
            out.append((n, n, True))
    return out


def churn_one(design: str, pcp: bool, mem: str, pairs: int, seed: int) -> dict:
    m = Machine.create(mem, design=design, cpus=2, pcp=pcp)
    c = Churn(m, order=0, gfp="GFP_KERNEL", occupancy=0.5, seed=seed)
    t = time.thread_time()
    r = c.run(pairs)
    cpu = time.thread_time() - t
    md = m.metadata_bytes()
    return {"wall_ns": r.ns_per_pair, "cpu_ns": cpu * 1e9 / pairs, "failed": r.alloc_failed, "check": m.check(),
            "metadata": md, "bytes_per_page": md["total"] / m.design.npages}


def huge_blocks(counts: np.ndarray) -> int:
    """Free 2 MiB blocks in buddyinfo counts [zone, order] (an order-10 block is two)."""
    c = np.asarray(counts, np.int64)
    return int(sum(int(c[:, o].sum()) << (o - HUGE) for o in range(HUGE, c.shape[1])))


def real_after(path: Path) -> tuple[int, int]:
    """(free 2 MiB blocks, free pages) of the capture's after.buddyinfo."""
    blocks = free = 0
    f = path / "after.buddyinfo"
    if not f.is_file():
        return -1, -1
    for line in f.read_text().splitlines():
        counts = [int(x) for x in line.split()[4:]]
        free += sum(n << o for o, n in enumerate(counts))
        blocks += sum(n << (o - HUGE) for o, n in enumerate(counts) if o >= HUGE)
    return blocks, free


def replay_one(path: Path, design: str) -> dict:
    cpu = [0.0, 0.0, 0, 0]  # thread CPU time at the first and the last chunk's end, events after the first

    def progress(done: int) -> None:
        if cpu[3] == 0:
            cpu[0] = time.thread_time()
        else:
            cpu[1] = time.thread_time()
            cpu[2] += done
        cpu[3] += 1

    # chunks of 100,000 events: the loop's CPU time is taken from the end of the first chunk
    # (which may include compiling the kernel) to the end of the last
    r = replay(path, mode="policy", design=design, compare=False, model_events=True, progress=progress,
               chunk=100_000)
    m = r.machine
    blocks = huge_blocks(m.design.nr_free)
    free = int(m.design.zs.z_free.sum())
    return {"events": r.events_replayed, "eps": r.events_per_second,
            "eps_cpu": cpu[2] / (cpu[1] - cpu[0]) if cpu[1] > cpu[0] else 0.0,
            "check": r.check, "huge_blocks": blocks,
            "free_pages": free, "huge_share": blocks * 512 / free if free else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", default="16G")
    ap.add_argument("--pairs", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--designs", default=",".join([*DESIGNS, "llfree/no-pcp"]))
    ap.add_argument("--captures", default=CAPTURES, help="comma list; 'sample' = the bundled one; '' = none")
    ap.add_argument("--replay-repeat", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = variants(a.designs)
    load0 = os.getloadavg()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average before: " + " ".join(f"{x:.2f}" for x in load0))
    out: dict = {"cpu": cpu_model(), "load_before": load0, "churn": {}, "replay": {}}
    for _label, d, pcp in rows:  # compile (or load from the cache) before timing
        churn_one(d, pcp, "256M", 1000, 1)
    runs: dict = {r[0]: [] for r in rows}
    for i in range(a.repeat):
        for label, d, pcp in rows:
            runs[label].append(churn_one(d, pcp, a.mem, a.pairs, 1 + i))
    base = statistics.median(x["cpu_ns"] for x in runs[rows[0][0]])
    print(f"\norder-0 churn, {a.mem}, 2 CPUs, 50 % occupancy, {a.pairs} pairs, median of {a.repeat}:")
    print(f"  {'design':14s} {'wall ns/pair':>12s} {'CPU ns/pair':>12s} {'min':>7s} {'max':>7s} "
          f"{'CPU vs ' + rows[0][0]:>12s} {'B/page':>8s}  check")
    for label, _d, _pcp in rows:
        wall = statistics.median(x["wall_ns"] for x in runs[label])
        cpus = [x["cpu_ns"] for x in runs[label]]
        med = statistics.median(cpus)
        bpp = runs[label][-1]["bytes_per_page"]
        print(f"  {label:14s} {wall:12.0f} {med:12.0f} {min(cpus):7.0f} {max(cpus):7.0f} {med / base:12.2f} "
              f"{bpp:8.2f}  {runs[label][-1]['check']}")
        out["churn"][label] = {"wall_ns_median": wall, "cpu_ns_median": med, "runs": runs[label]}
    caps = {c: capture_dir(c) for c in a.captures.split(",") if c}
    missing = [c for c, p in caps.items() if p is None]
    if missing:
        print(f"\nnot found (skipped): {', '.join(missing)}")
    reps = [r for r in rows if r[2]]  # a capture's machine comes from its snapshot (pcp on)
    for cap, path in caps.items():
        if path is None:
            continue
        res = {}
        for label, d, _pcp in reps:
            rr = [replay_one(path, d) for _ in range(a.replay_repeat)]
            res[label] = {**rr[-1], "eps_median": statistics.median(x["eps"] for x in rr),
                          "eps_cpu_median": statistics.median(x["eps_cpu"] for x in rr)}
        rb, rf = real_after(path)
        first = next(iter(res.values()))
        print(f"\n{cap}: {first['events']} events; real kernel after: {rb} free 2 MiB blocks"
              + (f" ({rb * 512 / rf:.1%} of free memory)" if rf > 0 else ""))
        print(f"  {'design':14s} {'M events/s':>10s} {'per CPU-s':>10s} {'free 2M blocks':>14s} {'of free mem':>11s}"
              "  check")
        for label, x in res.items():
            print(f"  {label:14s} {x['eps_median'] / 1e6:10.2f} {x['eps_cpu_median'] / 1e6:10.2f} "
                  f"{x['huge_blocks']:14d} {x['huge_share']:11.1%}  {x['check']}")
        out["replay"][cap] = {"real_huge_blocks": rb, "real_free_pages": rf, "designs": res}
    load1 = os.getloadavg()
    out["load_after"] = load1
    print("\nload average after: " + " ".join(f"{x:.2f}" for x in load1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
