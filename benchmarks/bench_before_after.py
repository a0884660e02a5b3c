"""Before/after: churn and replay speed per design of two source trees, in one run.

    git archive main src | tar -x -C /tmp/before           # the tree to compare against
    nice -n 5 .venv/bin/python benchmarks/bench_before_after.py --before /tmp/before/src --after src

What the design contract costs (or saves): the same benchmark scripts of this folder
(``bench_churn.py``: ns per alloc+free pair, order-0 and mixed churn; ``bench_replay.py``:
M events/s of the bundled sample, exact and policy replay without the event log) run on
each tree in turn, ``--rounds`` times alternating (before, after, before, after ...), every
tree with its own numba cache (``MEMDESC_CACHE``), compiled before the first timed round.
Prints, per design and workload, the median over all rounds of each tree's medians and the
ratio after/before, with the CPU model and load averages (the machine is shared: compare
only figures of one run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_churn import cpu_model  # benchmarks/ is on sys.path when this script runs

HERE = Path(__file__).resolve().parent
WARM = ("import sys; sys.path.insert(0, {here!r})\n"
        "from bench_churn import run_one\n"
        "from memdesc.sim.replay import replay\n"
        "for d in {designs!r}:\n"
        "    run_one(d, '256M', 1000, 'mix', 0)\n"
        "    replay(None, mode='exact', design=d, compare=False)\n"
        "    replay(None, mode='policy', design=d, compare=False, model_events=False)\n")


def env_for(src: Path, cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(src), "MEMDESC_CACHE": str(cache)}


def run(args: list[str], env: dict) -> None:
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, type=Path, help="src/ of the tree before")
    ap.add_argument("--after", required=True, type=Path, help="src/ of the tree after")
    ap.add_argument("--designs", default="linux,radix,vmem")
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per round of each benchmark")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "memdesc-before-after")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    designs = tuple(d for d in a.designs.split(",") if d)
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    envs = {k: env_for(v, a.cache / k) for k, v in trees.items()}
    for k in trees:  # compile (or load) every kernel timed below
        run(["-c", WARM.format(here=str(HERE), designs=designs)], envs[k])
    load0 = os.getloadavg()
    med: dict = {k: {} for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.rounds):
            for k in trees:
                cj, rj = Path(tmp) / f"churn-{k}-{rnd}.json", Path(tmp) / f"replay-{k}-{rnd}.json"
                run([str(HERE / "bench_churn.py"), "--mem", a.mem, "--pairs", str(a.pairs), "--repeat",
                     str(a.repeat), "--designs", ",".join(designs), "--json", str(cj)], envs[k])
                run([str(HERE / "bench_replay.py"), "--captures", "sample", "--repeat", str(a.repeat),
                     "--designs", ",".join(designs), "--modes", "exact,policy-nolog", "--json", str(rj)], envs[k])
                for w, rows in json.loads(cj.read_text())["results"].items():
                    for d, r in rows.items():
                        med[k].setdefault((f"churn {w} ns/pair", d), []).append(r["median"])
                for _cap, rows in json.loads(rj.read_text())["results"].items():
                    for key, r in rows.items():
                        d, mode = key.split("/")
                        med[k].setdefault((f"replay {mode} M ev/s", d), []).append(r["median_meps"])
    load1 = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    print(f"before: {trees['before']}\nafter:  {trees['after']}")
    print(f"{a.rounds} rounds alternating before/after, each the median of {a.repeat} runs; churn on {a.mem}, "
          f"{a.pairs} pairs; replay of the bundled sample")
    print(f"{'measure':28s} {'design':8s} {'before':>10s} {'after':>10s} {'after/before':>13s}")
    out = []
    for key in med["before"]:
        b = statistics.median(med["before"][key])
        f = statistics.median(med["after"].get(key, [float("nan")]))
        print(f"{key[0]:28s} {key[1]:8s} {b:10.2f} {f:10.2f} {f / b:13.3f}")
        out.append({"measure": key[0], "design": key[1], "before": b, "after": f,
                    "before_rounds": med["before"][key], "after_rounds": med["after"].get(key, [])})
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu_model(), "load": [load0[0], load1[0]], "rows": out},
                                           indent=2) + "\n")


if __name__ == "__main__":
    main()
