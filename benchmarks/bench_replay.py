"""Trace replay benchmark: events per second of the replay loop, per capture, mode and design.

    .venv/bin/python benchmarks/bench_replay.py                         # the three captures
    .venv/bin/python benchmarks/bench_replay.py --captures sample --repeat 1   # quick

For each capture (``anon``, ``build``, ``pagecache`` of ../shared/traces, or the bundled
``sample``) and each design, runs round-robin ``--repeat`` times, each on a fresh machine
rebuilt from the capture's ``before`` snapshot:

* ``exact``: every event applied at its real pfn (every design);
* ``policy``: the trace as demands served by the design, counting the model's own kmem
  events (what ``memdesc replay --mode policy`` does);
* ``policy-nolog``: the same without the model's event log.

Replays are typed (every allocation a memdesc type, its descriptor allocated on the design:
:mod:`memdesc.sim.replay`); a mode with the suffix ``-untyped`` runs the same replay untyped
(``typed=False``: the allocator alone, as before typed replay), so one run gives both::

    .venv/bin/python benchmarks/bench_replay.py --captures build,pagecache \
        --modes policy-nolog-untyped,policy-nolog --repeat 3

Only the numba event loop is timed (parsing, the snapshot import and compilation are not):
events/s = trace events / loop seconds.  The median, min and max are printed with the CPU
model and the load average before and after (the machine is shared and noisy), and the
ratio of each row to exact/linux on the same capture, measured in the same run.  For
reference, the real kernel produced the build trace's 2,487,341 events in 112.4 s of
wall time (22 k events/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from bench_churn import cpu_model  # benchmarks/ is on sys.path when this script runs
from memdesc.mm.page_alloc import DESIGNS
from memdesc.sim.replay import replay, sample_path

SHARED = [Path(os.environ["MEMDESC_SHARED_TRACES"])] if "MEMDESC_SHARED_TRACES" in os.environ else [
    Path(__file__).resolve().parents[1].parent / "shared" / "traces"]


def capture_dir(name: str) -> Path | None:
    if name == "sample":
        return sample_path()
    for root in SHARED:
        if (root / name / "trace.txt.zst").is_file():
            return root / name
    return None


def run_one(path: Path, mode: str, design: str) -> dict:
    typed = not mode.endswith("-untyped")
    mode = mode.removesuffix("-untyped")
    policy = mode.startswith("policy")
    r = replay(path, mode="policy" if policy else "exact", design=design, compare=False,
               model_events=(mode == "policy"), typed=typed)
    return {"events": r.events_replayed, "seconds": r.seconds, "eps": r.events_per_second, "check": r.check}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", default="anon,build,pagecache", help="comma list; 'sample' = the bundled one")
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--modes", default="exact,policy,policy-nolog")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    caps = {c: capture_dir(c) for c in a.captures.split(",") if c}
    missing = [c for c, p in caps.items() if p is None]
    if missing:
        print(f"not found (skipped): {', '.join(missing)}")
    caps = {c: p for c, p in caps.items() if p is not None}
    rows = []
    for design in a.designs.split(","):
        for mode in a.modes.split(","):
            rows.append((design, mode))
    load0 = os.getloadavg()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average before: "
          + " ".join(f"{x:.2f}" for x in load0))
    results: dict = {}
    for cap, path in caps.items():
        for design, mode in rows:  # compile (or load from the cache) before timing
            run_one(path, mode, design)
        runs: dict = {row: [] for row in rows}
        for _ in range(a.repeat):
            for row in rows:
                runs[row].append(run_one(path, row[1], row[0]))
        base = statistics.median(x["eps"] for x in runs[rows[0]])
        print(f"\n{cap}: {runs[rows[0]][0]['events']} events ({path})")
        print(f"  {'design':8s} {'mode':21s} {'M events/s (median)':>20s} {'min':>8s} {'max':>8s} "
              f"{'vs ' + rows[0][0] + '/' + rows[0][1]:>14s}  check")
        for row in rows:
            eps = [x["eps"] / 1e6 for x in runs[row]]
            med = statistics.median(eps)
            print(f"  {row[0]:8s} {row[1]:21s} {med:20.2f} {min(eps):8.2f} {max(eps):8.2f} "
                  f"{med * 1e6 / base:14.2f}  {runs[row][-1]['check']}")
            results.setdefault(cap, {})[f"{row[0]}/{row[1]}"] = {
                "median_meps": med, "min_meps": min(eps), "max_meps": max(eps), "runs": runs[row]}
    load1 = os.getloadavg()
    print("\nload average after: " + " ".join(f"{x:.2f}" for x in load1))
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu_model(), "load_before": load0, "load_after": load1,
                                            "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
