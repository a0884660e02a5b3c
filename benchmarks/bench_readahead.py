"""Throughput of the readahead validation (trace/folio_events + sim/readahead + mm/readahead).

    .venv/bin/python benchmarks/bench_readahead.py [CAPTURE] [--repeat N] [--workers W]

Default capture: ../shared/traces/files (2.36 M lines, 18 MB zstd).  Prints, best of
``--repeat`` runs (median beside it; the load average, because other processes share the
cores; CPU s = this process's CPU time, all threads):

* parse: ``read_folio_events(path, cache=False)`` -- decompress and scan every line, keep
  the page-cache and readahead events (lines/s and folio events/s);
* cached read: the same from its Parquet cache entry;
* validation: ``validate_readahead(path, trace=parsed, modes=("informed",))`` -- attribution,
  the pre-capture prescan, one model run over every folio-level event and the comparison
  (folio events/s; requests/s);
* all four runs (informed, raw, direct, plain_vma);
* end to end: parse + informed validation, the figure ``memdesc readahead --runs informed``
  costs on a capture it has not seen (folio events/s).

The first, untimed run compiles (or loads) the numba kernels.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench_parse import _timed  # (best wall, median wall, best CPU, result): one timing rule

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "traces" / "files"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    path = Path(args.capture)
    if path.is_dir():
        path = path / "trace.txt.zst"
    if not path.is_file():
        raise SystemExit(f"{path}: no such trace (pass a capture directory or a trace file)")
    os.environ["MEMDESC_CACHE"] = tempfile.mkdtemp(prefix="memdesc-bench-")   # a private, empty cache
    from memdesc.sim.readahead import MODES, validate_readahead
    from memdesc.trace.folio_events import PAGECACHE_KINDS, read_folio_events

    def parse(cache=False):
        return read_folio_events(path, kinds=PAGECACHE_KINDS, cache=cache, workers=args.workers)

    warm = parse()
    validate_readahead(path, trace=warm)                        # compile / load every kernel
    lines, events = warm.lines, warm.n_events
    requests = sum(warm.event_counts()[k] for k in ("mm_filemap_get_pages", "mm_filemap_fault"))
    print(f"capture: {path}  ({path.stat().st_size / 1e6:.1f} MB zstd, {lines:,} lines, {events:,} folio-level "
          f"events, {requests:,} read requests)")
    print(f"cores: {os.cpu_count()}  workers: {args.workers}  load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  {'':<40} {'wall (best)':>11} {'rate':>22} {'wall (median)':>14} {'CPU s':>7}")

    def row(label, timing, n, unit):
        best, med, cpu = timing[:3]
        print(f"  {label:<40} {best:9.3f} s {n / best / 1e6:9.3f} M {unit:<10} {med:12.3f} s {cpu:7.3f}")
        return best

    row("parse (read_folio_events, no cache)", _timed(parse, args.repeat), lines, "lines/s")
    p = _timed(parse, args.repeat)
    row("  the same, as folio events", p, events, "events/s")
    parse(cache=True)
    row("cached read (Parquet)", _timed(lambda: parse(cache=True), args.repeat), events, "events/s")
    v = _timed(lambda: validate_readahead(path, trace=warm, modes=("informed",)), args.repeat)
    row("validation, informed run", v, events, "events/s")
    row("  the same, as read requests", v, requests, "req/s")
    row("validation, all four runs", _timed(lambda: validate_readahead(path, trace=warm, modes=MODES),
                                            max(1, args.repeat - 1)), events, "events/s")
    e2e = _timed(lambda: validate_readahead(path, trace=parse(), modes=("informed",)), args.repeat)
    row("parse + informed validation", e2e, events, "events/s")
    s = e2e[3].summary()["readahead_agreement"]
    print(f"  agreement (informed): {s['exact']:,} / {s['events']:,} = {100 * s['fraction']:.3f} %")
    secs = e2e[3].seconds
    print("  last run's phases: " + ", ".join(f"{k} {x:.2f} s" for k, x in secs.items()))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
