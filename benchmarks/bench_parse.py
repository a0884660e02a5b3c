"""Throughput of the kmem trace reader (memdesc.trace.reader).

    .venv/bin/python benchmarks/bench_parse.py [trace.txt.zst] [--repeat N] [--workers W]

Default trace: ../shared/traces/build/trace.txt.zst (2.49 M lines, 19 MB zstd, 344 MB
text).  Prints lines/s for

* decompress+parse: ``read_trace(path, cache=False)`` (streaming zstd, parser threads);
* parse alone: ``parse_trace_text(text)`` on the already decompressed text in memory;
* the numba line kernel alone on one thread (no gathering into a frame);
* cached: ``read_trace(path)`` when its Parquet cache entry exists;
* writing it back: ``write_ftrace`` to .zst.

Each figure is the best of ``--repeat`` runs (the median is printed too); the machine's
load average is printed with them because other processes share its cores.  The first,
untimed run compiles (or loads) the numba kernels.  ``CPU s`` is the CPU time of the
process (all threads): ``lines / CPU s`` does not depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "traces" / "build" / "trace.txt.zst"


def _timed(fn, repeat):
    """(best wall s, median wall s, best CPU s of this process (all threads), result)."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(times), statistics.median(times), min(cpu), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    path = Path(args.trace)
    if not path.is_file():
        raise SystemExit(f"{path}: no such trace (pass a trace file)")

    tmp = tempfile.mkdtemp(prefix="memdesc-bench-")
    os.environ["MEMDESC_CACHE"] = tmp  # a private, initially empty cache
    from memdesc.trace import textparse
    from memdesc.trace.reader import parse_trace_text, read_trace
    from memdesc.trace.writer import write_ftrace

    with open(path, "rb") as f:
        raw = f.read()
    text = zstandard.ZstdDecompressor().stream_reader(raw).read() if raw[:4] == b"\x28\xb5\x2f\xfd" else raw
    warm = read_trace(path, cache=False, workers=args.workers)  # compile / load kernels
    write_ftrace(warm.df.head(10), Path(tmp) / "warm.txt")
    lines = warm.lines
    print(f"trace: {path}  ({len(raw) / 1e6:.1f} MB on disk, {len(text) / 1e6:.1f} MB text, "
          f"{lines:,} lines, {warm.events:,} events)")
    print(f"cores: {os.cpu_count()}  workers: {args.workers}  load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print(f"  {'':<34} {'wall (best)':>11} {'lines/s':>13} {'wall (median)':>14} {'CPU s':>7}"
          f" {'lines/CPU-s':>12}")

    def row(label, timing, n=lines):
        best, med, cpu = timing[:3]
        print(f"  {label:<34} {best:9.3f} s {n / best / 1e6:9.2f} M/s {med:12.3f} s {cpu:7.3f}"
              f" {n / cpu / 1e6:10.2f} M")
        return best

    cold = row("decompress+parse (read_trace)",
               _timed(lambda: read_trace(path, cache=False, workers=args.workers), args.repeat))
    row("parse alone (parse_trace_text)", _timed(lambda: parse_trace_text(text, workers=args.workers),
                                                 args.repeat))
    row("line kernel alone, 1 thread",
        _timed(lambda: textparse.parse_bytes(text, textparse.SEP_DASH, False), args.repeat))
    row("decompress+parse with comm",
        _timed(lambda: read_trace(path, cache=False, comm=True, workers=args.workers), args.repeat))

    t = time.perf_counter()
    first = read_trace(path)
    print(f"  {'first read with cache (parse+store)':<34} {time.perf_counter() - t:9.3f} s")
    timing = _timed(lambda: read_trace(path), args.repeat)
    res = timing[3]
    assert res.from_cache and res.df.equals(first.df)
    cached = row("cached read (Parquet)", timing)
    print(f"  cached read is {cold / cached:.1f}x faster than decompress+parse")
    out = Path(tmp) / "out.txt.zst"
    row("write_ftrace to .zst", _timed(lambda: write_ftrace(first.df, out), max(1, args.repeat // 2)))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
