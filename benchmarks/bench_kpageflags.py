"""kpageflags snapshots: speed of read/classify/rebuild/infer, and how the rebuild compares with /proc.

    .venv/bin/python benchmarks/bench_kpageflags.py [--traces DIR] [--repeat N]

For every before/after snapshot of the real captures (or the bundled sample when
DIR is absent) prints: wall times of each step (best of N; numba compiled beforehand)
and pfns per second; the numba classification kernel against a plain-numpy version
of the same precedence rules (ratio in the same run, results checked equal);
rebuilt vs /proc/buddyinfo per zone and order; the pageblock-migratetype inference's
free-count match figure vs a random assignment with the same block counts; class
counts against meminfo/vmstat.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

from memdesc.mm.vmstat import parse_buddyinfo, parse_meminfo, parse_pagetypeinfo, parse_vmstat, parse_zoneinfo
from memdesc.trace.kpageblock import (
    PageblockTypes,
    compare_free_counts,
    free_counts_by_migratetype,
    infer_pageblock_migratetypes,
    pagetypeinfo_tables,
)
from memdesc.trace.kpagebuddy import compare_buddyinfo, rebuild_free_blocks
from memdesc.trace.kpageflags import (
    CLASS_RULES,
    PAGES_PER_SECTION,
    KPageSnapshot,
    PageClass,
    classify_pages,
    read_kpage_dump,
    unavailable_sections,
    zone_index_of_pfns,
    zone_spans_from_zoneinfo,
)


def classify_numpy(flags, zone_index, counts):
    """The same precedence rules with numpy masks (reference for the kernel's speed)."""
    out = np.full(flags.shape[0], PageClass.OTHER, dtype=np.uint8)
    for cls, mask in reversed(CLASS_RULES):
        out[(flags & mask) != 0] = cls
    unavail = np.repeat(unavailable_sections(flags, counts), PAGES_PER_SECTION)[: flags.shape[0]]
    out[unavail] = PageClass.UNAVAILABLE
    out[zone_index < 0] = PageClass.HOLE
    return out


def best(fn, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = fn()
        t.append(time.perf_counter() - t0)
    return min(t), r


def random_assignment(pbt: PageblockTypes, rng) -> PageblockTypes:
    mt = pbt.migratetype.copy()
    for zi in range(len(pbt.zones)):
        sel = np.flatnonzero(pbt.zone == zi)
        mt[sel] = rng.permutation(mt[sel])
    return PageblockTypes(pbt.pageblock, pbt.zone, mt, pbt.content, pbt.scores, pbt.zones)


def run(d: Path, state: str, repeat: int) -> None:
    t = lambda ext: (d / f"{state}.{ext}").read_text()  # noqa: E731
    zoneinfo = parse_zoneinfo(t("zoneinfo"))
    zones = zone_spans_from_zoneinfo(zoneinfo)
    proc_buddy = parse_buddyinfo(t("buddyinfo")).to_dict()
    pt_free, pt_blocks = pagetypeinfo_tables(parse_pagetypeinfo(t("pagetypeinfo")))
    mi, vm = parse_meminfo(t("meminfo")), parse_vmstat(t("vmstat"))

    t_read, flags = best(lambda: read_kpage_dump(d / f"{state}.kpageflags.zst"), repeat)
    counts = read_kpage_dump(d / f"{state}.kpagecount.zst")
    n = flags.shape[0]
    zi = zone_index_of_pfns(zones, n)
    classify_pages(flags[:4096], zi[:4096])  # compile
    t_cls, cls = best(lambda: classify_pages(flags, zi, counts), repeat)
    t_np, cls_np = best(lambda: classify_numpy(flags, zi, counts), repeat)
    assert np.array_equal(cls, cls_np), "numba and numpy classifications differ"
    t_reb, blocks = best(lambda: rebuild_free_blocks(flags, zones), repeat)
    t_pb, pbt = best(lambda: infer_pageblock_migratetypes(cls, zones, pt_blocks), repeat)

    print(f"\n== {d.name}/{state}: {n} pfns ({n * 4096 / 2**30:.1f} GiB)")
    print(f"  read+unzstd {t_read * 1e3:7.1f} ms | classify numba {t_cls * 1e3:6.1f} ms "
          f"({n / t_cls / 1e6:6.0f} Mpfn/s), numpy {t_np * 1e3:6.1f} ms (numba {t_np / t_cls:4.1f}x faster) "
          f"| rebuild {t_reb * 1e3:6.1f} ms ({len(blocks)} blocks) | pageblock inference {t_pb * 1e3:6.1f} ms")
    for key, dz in compare_buddyinfo(blocks.buddyinfo(), proc_buddy).items():
        print(f"  {key:9s} free rebuilt {dz['free_pages_rebuilt']:8d} /proc {dz['free_pages_proc']:8d} "
              f"({dz['free_pages_rel_diff'] * 100:+.3f} %)  per-order rebuilt-/proc {dz['order_diff']}")

    match = compare_free_counts(free_counts_by_migratetype(blocks, pbt), pt_free)
    rng = np.random.default_rng(0)
    rand = [compare_free_counts(free_counts_by_migratetype(blocks, random_assignment(pbt, rng)), pt_free)
            for _ in range(5)]
    for key in ("0:Normal", None):
        m = match["zones"][key]["fraction"] if key else match["fraction"]
        r = np.mean([x["zones"][key]["fraction"] if key else x["fraction"] for x in rand])
        print(f"  free pages on the right (type, order) list, {key or 'all zones'}: inferred {m:.4f}, "
              f"random assignment {r:.4f}")
    nt = match["zones"]["0:Normal"]["types"]
    print("  Normal free pages per type rebuilt//proc: "
          + ", ".join(f"{k} {v['rebuilt_pages']}/{v['proc_pages']}" for k, v in nt.items() if v["proc_pages"]))

    snap = KPageSnapshot(flags, counts, zones)
    c = snap.classes()
    print("  classes:", {k: v for k, v in c.items() if v})
    print("  allocations:", {k: v for k, v in snap.allocations().items() if v})
    print(f"  slab {c['slab']} vs meminfo Slab {mi['Slab'] // 4} | pgtable {c['pgtable']} vs PageTables "
          f"{mi['PageTables'] // 4} | file {c['file']} vs nr_file_pages {vm['nr_file_pages']} | anon "
          f"{c['anon']} vs AnonPages {mi['AnonPages'] // 4} | mlocked {snap.attributes()['mlocked']} vs "
          f"Mlocked {mi['Mlocked'] // 4}")
    by = snap.classes_by_zone()
    zmap = {z.zone: z for z in zoneinfo}
    print("  unavailable pages: " + ", ".join(
        f"{k} {v['unavailable']} (spanned-present {zmap[k.split(':')[1]].spanned - zmap[k.split(':')[1]].present}, "
        f"present-managed {zmap[k.split(':')[1]].present - zmap[k.split(':')[1]].managed})"
        for k, v in by.items() if k != "outside"))


def main():
    ap = argparse.ArgumentParser()
    default = os.environ.get("MEMDESC_SHARED_TRACES",
                             str(Path(__file__).resolve().parents[2] / "shared" / "traces"))
    ap.add_argument("--traces", default=default)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    root = Path(a.traces)
    if root.is_dir():
        for cap in ("build", "anon", "pagecache"):
            for state in ("before", "after"):
                run(root / cap, state, a.repeat)
    else:
        print(f"{root} not present: using the bundled sample (anon/before)")
        run(Path(str(files("memdesc") / "data" / "sample")), "before", a.repeat)


if __name__ == "__main__":
    main()
