"""Speed-up of ``memdesc sweep`` with Dask workers on this machine.

Runs the same grid (fresh output each time) on a LocalCluster of 1, 2, ... worker processes
and prints wall time, cells per minute and the speed-up over one worker.  Each run starts its
own cluster, so the figures include worker start-up and the per-process compilation of the
design state constructors (numba structrefs), as a user's sweep does.

    python benchmarks/bench_sweep.py                       # churn:1G x every design x 2 occupancies
    python benchmarks/bench_sweep.py ../shared/traces/anon ../shared/traces/pagecache \\
        --designs linux,vmem --param watermark_scale_factor=10,100 --workers 1,2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from memdesc.sim.sweep import grid, parse_params, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="*", default=["churn:1G"])
    ap.add_argument("--designs", default="all")
    ap.add_argument("--param", action="append", default=None)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = ap.parse_args()
    params = parse_params(args.param or ["occupancy=0.3,0.6", "ops=3000000"])
    cells = grid(args.captures, args.designs, params)
    print(f"{len(cells)} cells ({', '.join(args.captures)} x {args.designs} x {params}); "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.2f}")
    base = None
    for n in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            res = run(cells, Path(d) / "sweep.parquet", workers=n)
            wall = time.perf_counter() - t
        cell_s = float(res.table["seconds"].sum())
        base = base or wall
        print(f"workers {n}: {wall:7.1f} s wall, {len(cells) / wall * 60:6.1f} cells/min, "
              f"cells' own time {cell_s:7.1f} s, speed-up {base / wall:4.2f}x, failed {res.failed}, "
              f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
