"""gfp string conversion and fragmentation-index throughput.

    .venv/bin/python benchmarks/bench_gfp_vmstat.py [--calls N] [--zones Z]

Prints, best of 5 runs each:
* parse_gfp / format_gfp per call on the 32 distinct gfp strings of the real 6.18
  traces (bundled in tests/data/gfp), through the default-table cache and uncached
  (the table walk itself), and their ratio;
* unusable_index_table_nb / fragmentation_index_table_nb on a Z x 11 table of random
  free counts (cells per second), against the same kernels run as plain Python in a
  child process under NUMBA_DISABLE_JIT=1 (on the first 2000 zones; results checked equal).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from memdesc.mm import gfp, vmstat

STRINGS = (Path(__file__).resolve().parents[1] / "tests" / "data" / "gfp" / "trace_gfp_strings.txt").read_text().split()


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000, help="gfp conversions per run")
    ap.add_argument("--zones", type=int, default=20_000, help="rows of the index table")
    args = ap.parse_args()

    items = (STRINGS * (args.calls // len(STRINGS) + 1))[: args.calls]
    values = [gfp.parse_gfp(s) for s in items]
    rows = [
        ("parse_gfp (cached)", lambda: [gfp.parse_gfp(s) for s in items]),
        ("parse_gfp (table walk)", lambda: [gfp._parse_flags(s, gfp.GFP_FLAGS) for s in items]),
        ("format_gfp (cached)", lambda: [gfp.format_gfp(x) for x in values]),
        ("format_gfp (table walk)", lambda: [gfp._show_flags(x, gfp.GFPFLAG_NAMES) for x in values]),
    ]
    print(f"gfp strings: {len(STRINGS)} distinct, {args.calls} calls per run")
    per = {}
    for name, fn in rows:
        per[name] = best(fn) / args.calls
        print(f"  {name:26s} {per[name] * 1e9:8.0f} ns/call")
    print(f"  cache speed-up: parse x{per['parse_gfp (table walk)'] / per['parse_gfp (cached)']:.1f}, "
          f"format x{per['format_gfp (table walk)'] / per['format_gfp (cached)']:.1f}")

    print(f"fragmentation indices: {args.zones} zones x 11 orders")
    table = index_table(args.zones)
    vmstat.unusable_index_table_nb(table[:2])  # compile
    vmstat.fragmentation_index_table_nb(table[:2])
    py_rows = min(args.zones, 2000)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, __file__, "--python-kernels", str(args.zones), str(py_rows)], env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    weights = np.arange(1, py_rows * 11 + 1).reshape(py_rows, 11)
    for (name, kernel), line in zip(KERNELS, out, strict=True):
        t_py, checksum = float(line.split()[0]), int(line.split()[1])
        assert checksum == int((kernel(table[:py_rows]) * weights).sum()), "JIT and no-JIT results differ"
        t_nb = best(lambda k=kernel: k(table)) / table.size
        print(f"  {name:15s} numba {1 / t_nb / 1e6:8.2f} M cells/s   same kernel without JIT "
              f"{1 / t_py / 1e6:8.3f} M cells/s ({py_rows} zones)   ratio x{t_py / t_nb:.0f}")


KERNELS = (("unusable_index", vmstat.unusable_index_table_nb),
           ("extfrag_index", vmstat.fragmentation_index_table_nb))


def index_table(zones: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    table = rng.integers(0, 5000, size=(zones, 11)).astype(np.int64)
    table[:, 8:] = rng.integers(0, 2, size=(zones, 3))  # scarce high orders: non-trivial extfrag values
    return table


def python_kernels(zones: int, rows: int) -> None:
    """Child process under NUMBA_DISABLE_JIT=1: seconds per cell and a checksum of each kernel."""
    table = index_table(zones)[:rows]
    for _, kernel in KERNELS:
        t = best(lambda k=kernel: k(table), repeat=3) / table.size
        print(t, int((kernel(table) * np.arange(1, table.size + 1).reshape(table.shape)).sum()))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--python-kernels":
        python_kernels(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
