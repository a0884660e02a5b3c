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
untimed run compiles (or loads) the numba kernels.
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
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), out


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
    lines = warm.lines
    print(f"trace: {path}  ({len(raw) / 1e6:.1f} MB on disk, {len(text) / 1e6:.1f} MB text, "
          f"{lines:,} lines, {warm.events:,} events)")
    print(f"cores: {os.cpu_count()}  workers: {args.workers}  load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def row(label, best, med, n=lines):
        print(f"  {label:<34} best {best:7.3f} s  {n / best / 1e6:6.2f} M lines/s   "
              f"(median {med:.3f} s, {n / med / 1e6:.2f} M lines/s)")

    best, med, _ = _timed(lambda: read_trace(path, cache=False, workers=args.workers), args.repeat)
    row("decompress+parse (read_trace)", best, med)
    best, med, _ = _timed(lambda: parse_trace_text(text, workers=args.workers), args.repeat)
    row("parse alone (parse_trace_text)", best, med)
    best, med, _ = _timed(lambda: textparse.parse_bytes(text, textparse.SEP_DASH, False), args.repeat)
    row("line kernel alone, 1 thread", best, med)
    best, med, _ = _timed(lambda: read_trace(path, cache=False, comm=True, workers=args.workers), args.repeat)
    row("decompress+parse with comm", best, med)

    t = time.perf_counter()
    first = read_trace(path)
    store = time.perf_counter() - t
    print(f"  {'first cached read (parse + store)':<34} {store:7.3f} s")
    best, med, res = _timed(lambda: read_trace(path), args.repeat)
    assert res.from_cache and res.df.equals(first.df)
    row("cached read (Parquet)", best, med)

    out = Path(tmp) / "out.txt.zst"
    best, med, _ = _timed(lambda: write_ftrace(first.df, out), max(1, args.repeat // 2))
    row("write_ftrace to .zst", best, med)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
