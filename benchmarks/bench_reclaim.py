"""Throughput of the reclaim replay (sim/reclaim + mm/vmscan + mm/swap + the folio layer).

    .venv/bin/python benchmarks/bench_reclaim.py [CAPTURE] [--repeat N] [--design D]

Default capture: ../shared/traces/reclaim.  The first, untimed run compiles (or loads) the
numba kernels and parses the trace (cached as Parquet).  Prints, best of ``--repeat``
(wall and CPU seconds, the load average beside them: other processes share the cores):
``run_reclaim`` (event attribution in polars, the model over every driver event: page-cache
adds, anon folios, reads, deletions, with every memcg reclaim round) and driver events/s.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from memdesc.sim.reclaim import run_reclaim

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "traces" / "reclaim"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--design", default="linux")
    a = ap.parse_args()
    r = run_reclaim(a.capture, design=a.design)
    n = sum(r["events"].values())
    best = None
    for _ in range(a.repeat):
        c, t = time.process_time(), time.perf_counter()
        run_reclaim(a.capture, design=a.design)
        w, cp = time.perf_counter() - t, time.process_time() - c
        best = (w, cp) if best is None or w < best[0] else best
    load = os.getloadavg()[0]
    print(f"{a.capture} design {a.design}: {n:,} driver events, {r['model']['reclaim_rounds']:,} memcg rounds; "
          f"best of {a.repeat}: {best[0]:.2f} s wall ({best[1]:.2f} CPU s), {n / best[0]:,.0f} events/s "
          f"(load average {load:.1f})")


if __name__ == "__main__":
    main()
