"""Throughput of the mm replay (``memdesc replay CAPTURE --mode mm``) per capture and design.

    .venv/bin/python benchmarks/bench_mm_replay.py [--captures files,mthp,reclaim,compaction]
                                                   [--designs linux,...|all] [--repeat N] [--json PATH]

For each capture and design: one untimed run (compiles or loads the numba kernels, parses
the trace into the Parquet cache), then ``--repeat`` runs; the best run's replay loop
(``replay_folio_events`` over every driver event, with the reclaim and direct compaction it
triggers, without the capture's compact_memory runs, timed apart) in driver events/s, and
the trace's folio-level events (page-cache adds/deletes, read requests, LRU insertions) plus
the kmem frees the loop consumed, per second of the loop.  The load average is printed
beside them: the machine is shared, figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from memdesc.mm.page_alloc import design_variants
from memdesc.sim.mm_replay import mm_replay
from memdesc.sim.snapshot import reuse_snapshots

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEMDESC_SHARED_TRACES") or REPO.parent / "shared" / "traces")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", default="files,mthp,reclaim,compaction")
    ap.add_argument("--designs", default="linux")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-compact-memory", action="store_true",
                    help="skip the capture's compact_memory runs (not timed in the loop anyway; saves minutes)")
    a = ap.parse_args()
    designs = design_variants() if a.designs == "all" else a.designs.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)")
    rows = []
    for cap in a.captures.split(","):
        for d in designs:
            with reuse_snapshots():
                kw = {"compact_memory": not a.no_compact_memory}
                r = mm_replay(SHARED / cap, design=d, **kw)
                best = r
                for _ in range(a.repeat):
                    x = mm_replay(SHARED / cap, design=d, **kw)
                    best = x if x["seconds"] < best["seconds"] else best
            te = best["trace_events"]
            consumed = (te["mm_filemap_add_to_page_cache"] + te["mm_filemap_delete_from_page_cache"]
                        + te["mm_filemap_get_pages"] + te["mm_lru_insertion"] + te["mm_page_free(_batched)"])
            row = {"capture": cap, "design": d, "driver_events": best["events_replayed"],
                   "seconds": round(best["seconds"], 4),
                   "events_per_second": round(best["events_per_second"]),
                   "trace_events_per_second": round(consumed / best["seconds"]) if best["seconds"] else None,
                   "compact_memory_seconds": round(best["compact_memory_seconds"], 2),
                   "load_seconds": round(best["load_seconds"], 1), "check": best["check"],
                   "load_average": os.getloadavg()[0]}
            rows.append(row)
            print(f"{cap:>10} {d:>14}: {row['driver_events']:>9,} driver events in {row['seconds']:.3f} s = "
                  f"{row['events_per_second'] / 1e6:.2f} M events/s ({row['trace_events_per_second'] / 1e6:.2f} M "
                  f"trace events/s); compact_memory {row['compact_memory_seconds']} s; load "
                  f"{row['load_seconds']} s; check {row['check']} (load average {row['load_average']:.1f})",
                  flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
