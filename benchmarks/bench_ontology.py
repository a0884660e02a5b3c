"""memdesc ontology: the census of a 24 GiB kpageflags dump in <= 2 s, and the whole command's time.

    .venv/bin/python benchmarks/bench_ontology.py [--traces DIR] [--capture build] [--repeat N] [--proc]

For one capture (default: build; the bundled sample when DIR is absent) prints, best of N
with numba compiled beforehand:

* read: the zstd-compressed kpageflags + kpagecount dumps decompressed and checked;
* census: zones, all-zero sections, the census kernel (kind, head, order of every pfn,
  folio and THP histograms), the rebuilt buddy blocks;
* read + census (the claim: <= 2 s for a 24 GiB dump, 6.5 M pfns);
* the scanner model (3 scanners x 5 designs);
* ``memdesc ontology --formula`` end to end, and with the snapshot loaded into the designs.

With ``--proc`` also the running machine: copying /proc/kpageflags, kpagecount (kernel
time) and the census of that copy.  Prints the machine (CPU model, CPUs, load).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from memdesc.sim import ontology as ont
from memdesc.sim.scanner import scanner_table
from memdesc.trace.kpage import read_kpage_dump, zone_spans_from_zoneinfo
from memdesc.trace.kpagetype import census_from_arrays, present_from_zoneinfo


def best(fn, repeat):
    ts = []
    r = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), sorted(ts)[len(ts) // 2], r


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, load {load:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=Path(os.environ.get("MEMDESC_SHARED_TRACES", "../shared/traces")))
    ap.add_argument("--capture", default="build")
    ap.add_argument("--when", default="before")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--proc", action="store_true", help="also time the running machine's /proc")
    a = ap.parse_args()
    d = a.traces / a.capture
    if not (d / f"{a.when}.kpageflags.zst").is_file():
        d = Path(str(files("memdesc") / "data" / "sample"))
    print(machine())
    print(f"capture {d} ({a.when})")
    zi = (d / f"{a.when}.zoneinfo").read_text()
    zones = zone_spans_from_zoneinfo(zi)
    present = present_from_zoneinfo(zi)

    def read():
        return read_kpage_dump(d / f"{a.when}.kpageflags.zst"), read_kpage_dump(d / f"{a.when}.kpagecount.zst")

    flags, counts = read()
    census_from_arrays(flags, zones, present, counts)  # compile
    t_read, m_read, _ = best(read, a.repeat)
    t_c, m_c, c = best(lambda: census_from_arrays(flags, zones, present, counts), a.repeat)
    def read_census():
        f, n = read()
        return census_from_arrays(f, zones, present, n)

    t_rc, m_rc, _ = best(read_census, a.repeat)
    npfn = flags.shape[0]
    gib = npfn * 4096 / 2**30
    print(f"dump: {npfn} pfns ({gib:.1f} GiB of pfn space), {c.ram_pages() * 4096 / 2**30:.1f} GiB present")
    print(f"read (zstd, 2 dumps)   best {t_read:.3f} s  median {m_read:.3f} s")
    print(f"census                 best {t_c:.3f} s  median {m_c:.3f} s  ({npfn / t_c / 1e6:.0f} M pfns/s)")
    print(f"read + census          best {t_rc:.3f} s  median {m_rc:.3f} s  (claim: <= 2 s) "
          f"{'OK' if t_rc <= 2.0 else 'OVER'}")
    scanner_table(c)  # compile
    t_s, m_s, _ = best(lambda: scanner_table(c), a.repeat)
    print(f"scanner model (3 x 5)  best {t_s:.3f} s  median {m_s:.3f} s")
    t_f, m_f, _ = best(lambda: ont.ontology(d, a.when, load=False), max(1, a.repeat // 2))
    print(f"ontology --formula     best {t_f:.3f} s  median {m_f:.3f} s")
    t_l, m_l, _ = best(lambda: ont.ontology(d, a.when, load=True), 1)
    print(f"ontology (designs loaded) {t_l:.1f} s")
    if a.proc:
        if not os.access("/proc/kpageflags", os.R_OK):
            print("/proc/kpageflags not readable (needs root): skipped")
            return
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ont.snapshot_proc(tmp)
            t_copy = time.perf_counter() - t0
            t0 = time.perf_counter()
            cp = ont.read_capture(tmp)[0]
            t_pc = time.perf_counter() - t0
        print(f"/proc copy (kernel reads kpageflags + kpagecount) {t_copy:.2f} s; census of the copy {t_pc:.2f} s "
              f"({cp.npfn} pfns)")


if __name__ == "__main__":
    main()
