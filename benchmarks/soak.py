"""Soak: the conformance state machine run for >= N stateful steps per design, check() after each.

    nice -n 10 .venv/bin/python benchmarks/soak.py                   # 100,000 steps per design
    .venv/bin/python benchmarks/soak.py --steps 2000 --designs vmem    # quick
    nice -n 10 .venv/bin/python benchmarks/soak.py --max-seconds 600   # at most 10 min per design

``--max-seconds`` bounds each design's soak in time: it stops after the batch that passes
the bound and reports the steps actually run (fewer than ``--steps`` if the bound came first).

The state machine is tests/test_conformance.py's (``machine_for``: a reference model of live
allocations; alignment, zone, overlap, owner-byte, accounting and counter checks and the
design's full ``check()`` after every step), driven by hypothesis with the soak settings
(up to 60 steps per example) until the step count is reached.  Every registered design and
every non-default spec (radix's node policies) is soaked; ``--layouts`` adds i386 (HighMem).
Prints steps, examples, seconds and steps/s per design with the machine and load average;
``--json`` writes them.  Any failure is hypothesis' shrunk counterexample and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_churn import cpu_model  # noqa: E402  (benchmarks/ is on sys.path when this script runs)
from test_conformance import SPECS, machine_for  # noqa: E402


def soak(spec: str, layout: str, mem: str, steps: int, per_example: int, max_seconds: float = 0.0) -> dict:
    cls = machine_for(spec, layout, mem)
    t = time.perf_counter()
    examples = 0
    while cls.steps < steps and not (max_seconds and time.perf_counter() - t >= max_seconds):
        batch = max(1, min(200, (steps - cls.steps) // per_example + 1))
        if max_seconds:
            batch = min(batch, 20)
        run_state_machine_as_test(cls, settings=settings(
            max_examples=batch, stateful_step_count=per_example, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))
        examples += batch
    s = time.perf_counter() - t
    return {"spec": spec, "layout": layout, "mem": mem, "steps": cls.steps, "examples": examples, "seconds": s,
            "steps_per_second": cls.steps / s, "complete": cls.steps >= steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--per-example", type=int, default=60, help="stateful_step_count")
    ap.add_argument("--designs", default=",".join(SPECS), help="comma list of specs")
    ap.add_argument("--layouts", default="x86_64", help="x86_64 (64M) and/or i386 (1G)")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="time bound per design (0: none)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    load0 = os.getloadavg()
    rows = []
    for layout in a.layouts.split(","):
        mem = "1G" if layout == "i386" else "64M"
        for spec in [s for s in a.designs.split(",") if s]:
            r = soak(spec, layout, mem, a.steps, a.per_example, a.max_seconds)
            rows.append(r)
            print(f"{spec:24s} {layout:7s} {r['steps']:9d} steps {r['examples']:6d} examples "
                  f"{r['seconds']:8.1f} s {r['steps_per_second']:8.1f} steps/s  check() after every step: ok"
                  f"{'' if r['complete'] else f' (time bound: {a.steps} not reached)'}",
                  flush=True)
    load1 = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": cpu_model(), "load": [load0[0], load1[0]], "runs": rows},
                                           indent=2))


if __name__ == "__main__":
    main()
