"""Shadow replay of every capture: the model's decisions beside the kernel's, and the end state.

    .venv/bin/python benchmarks/bench_shadow.py                        # every shared capture
    .venv/bin/python benchmarks/bench_shadow.py --captures mthp,files --json out.json

For each capture of ../shared/traces (or ``sample``, the bundled one) runs
``memdesc replay CAPTURE --mode shadow`` once (exact replay with the model's own decision
recorded before each event, :mod:`memdesc.sim.shadow`) and prints, per decision class,
decisions / agreement / informed decisions / informed agreement, the drain trigger (apart),
the fallback kinds the model chose beside the trace's, and the end state: free pages per
zone against after.buddyinfo and after.kpageflags, in percent.  One run per capture, one at
a time (``nice`` it on a shared machine); ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench_churn import cpu_model  # benchmarks/ is on sys.path when this script runs
from memdesc.sim.replay import replay, sample_path
from memdesc.sim.shadow_kernels import CLASS_NAMES

SHARED = Path(os.environ.get("MEMDESC_SHARED_TRACES") or Path(__file__).resolve().parents[1].parent / "shared"
              / "traces")
CAPTURES = ("anon", "build", "pagecache", "files", "mthp", "reclaim", "compaction")


def pct(a: int, n: int) -> str:
    return f"{100.0 * a / n:6.2f}" if n else "     -"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", default=",".join(CAPTURES), help="comma list; 'sample' = the bundled one")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print(f"# {cpu_model()}, load {os.getloadavg()[0]:.2f}")
    out = {}
    for name in args.captures.split(","):
        path = sample_path() if name == "sample" else SHARED / name
        t = time.perf_counter()
        r = replay(path, mode="shadow")
        wall = time.perf_counter() - t
        sh = r.shadow
        print(f"\n## {name}: {r.events_replayed} events, loop {r.seconds:.2f} s ({r.events_per_second / 1e6:.2f} M/s), "
              f"wall {wall:.0f} s, check {r.check}")
        print(f"{'class':12s} {'decisions':>10s} {'agree %':>8s} {'informed':>10s} {'inf. agree %':>12s}")
        for c in CLASS_NAMES:
            d = sh["by_class"][c]
            print(f"{c:12s} {d['decisions']:10d} {pct(d['agree'], d['decisions']):>8s} {d['informed_decisions']:10d} "
                  f"{pct(d['informed_agree'], d['informed_decisions']):>12s}")
        print(f"{'all':12s} {sh['decisions']:10d} {pct(sh['agree'], sh['decisions']):>8s} "
              f"{sh['informed_decisions']:10d} {pct(sh['informed_agree'], sh['informed_decisions']):>12s}")
        dt = sh["drain_trigger"]
        print(f"drain trigger {pct(dt['agree'], dt['decisions'])} % of {dt['decisions']} (informed "
              f"{pct(dt['informed_agree'], dt['informed_decisions'])} %); fallbacks model {sh['fallbacks']['model']} "
              f"trace {sh['fallbacks']['trace']}")
        for z, row in (r.final_vs_real or {}).items():
            if row.get("proc_free_pages"):
                print(f"{z:10s} free pages model {row['model_free_pages']} vs buddyinfo {row['proc_free_pages']} "
                      f"({row['proc_free_pages_diff_pct']:+.3f} %), kpageflags {row['kpageflags_free_pages']} "
                      f"({row['kpageflags_free_pages_diff_pct']:+.3f} %)")
        out[name] = {"shadow": sh, "final_vs_real": r.final_vs_real, "notes": r.notes,
                     "inconsistencies": r.inconsistencies, "seconds": r.seconds, "wall": wall,
                     "events": r.events_replayed, "check": r.check}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
