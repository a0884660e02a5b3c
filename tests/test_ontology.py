"""The memdesc census of real kpageflags dumps, metadata per design, scanner cache lines, the CLI.

The census is checked against the raw dumps with independent code: numpy masks for every
KPF rule, kpage.classify_pages() for the PageClass each kind refines, page sums of the
folio histograms, zoneinfo's present counts for holes.  Hand-built machines pin the
scanner model's line counts.
"""

from __future__ import annotations

import html.parser
import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import zstandard
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.errors import ConfigError
from memdesc.mm import memdesc as md
from memdesc.sim import ontology as ont
from memdesc.sim.scanner import SCANNERS, scan_cost, scanner_table
from memdesc.trace import capture as capture_mod
from memdesc.trace.kpage import (
    _FILE_BITS,
    KPF,
    PageClass,
    ZoneSpan,
    classify_pages,
    kpf_mask,
    read_kpage_dump,
    unavailable_sections,
    zone_index_of_pfns,
    zone_spans_from_zoneinfo,
)
from memdesc.trace.kpagetype import (
    CENSUS_KINDS,
    KIND_CLASS,
    Census,
    census_from_arrays,
    census_from_files,
    present_from_zoneinfo,
)
from nojit import run_json

SAMPLE = Path(str(files("memdesc") / "data" / "sample"))


def F(*bits: KPF) -> int:
    return int(kpf_mask(*bits))


_COLS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def has(flags: np.ndarray, *bits: KPF) -> np.ndarray:
    """bool per pfn: any of the bits set (on a byte-transposed copy of the dump: 8x less memory
    traffic per test than the u64 array)."""
    hit = _COLS.get(id(flags))
    if hit is None or hit[0] is not flags:
        _COLS.clear()
        hit = _COLS[id(flags)] = (flags, np.ascontiguousarray(flags.view(np.uint8).reshape(-1, 8).T))
    cols = hit[1]
    out = np.zeros(flags.shape[0], bool)
    for b in bits:
        out |= (cols[int(b) >> 3] & np.uint8(1 << (int(b) & 7))) != 0
    return out


def reference_kinds(flags: np.ndarray, zones, present: dict, section_pages: int) -> np.ndarray:
    """The census rules written again with numpy masks (np.select, first match wins)."""
    n = flags.shape[0]
    zi = zone_index_of_pfns(zones, n)
    zero = np.repeat(unavailable_sections(flags, None, section_pages), section_pages)[:n]
    uninit = np.zeros(n, bool)
    for z in zones:
        idx = np.flatnonzero(zero[z.start_pfn:z.end_pfn]) + z.start_pfn
        k = max(0, idx.size - max(0, z.spanned - present[z.key]))
        uninit[idx[idx.size - k:]] = True
    code = {k: i for i, k in enumerate(CENSUS_KINDS)}
    conds = [(zi < 0) | (zero & ~uninit), uninit, has(flags, KPF.NOPAGE), has(flags, KPF.OFFLINE),
             has(flags, KPF.HWPOISON), has(flags, KPF.BUDDY), has(flags, KPF.ZERO_PAGE), has(flags, KPF.HUGE),
             has(flags, KPF.RESERVED), has(flags, KPF.SLAB), has(flags, KPF.PGTABLE), has(flags, KPF.KSM),
             has(flags, KPF.ANON), has(flags, *_FILE_BITS)]
    kinds = ["misc:hole", "misc:uninit", "misc:hole", "misc:offline", "hwpoison", "free", "misc:zero", "hugetlb",
             "misc:reserved", "slab", "pagetable", "ksm", "anon", "file"]
    return np.select(conds, [code[k] for k in kinds], default=code["misc:driver"]).astype(np.uint8)


def check_census_against_dump(c: Census, flags: np.ndarray, counts: np.ndarray | None) -> None:
    """Every cross-check of the census against the raw dump."""
    n = flags.shape[0]
    census = c.census()
    assert list(census) == list(CENSUS_KINDS)
    assert sum(census.values()) == n
    ref = reference_kinds(flags, c.zones, c.present, c.section_pages)
    assert (c.kind == ref).all()
    # each kind refines a PageClass: classify_pages (kpage's own code) agrees on every class
    classes = np.bincount(classify_pages(flags, zone_index_of_pfns(c.zones, n), counts, c.section_pages),
                          minlength=len(PageClass))
    for cls in PageClass:
        mine = sum(v for k, v in census.items() if KIND_CLASS[k] == (cls,))
        if cls in (PageClass.HOLE, PageClass.UNAVAILABLE):
            continue
        assert mine == classes[cls], cls
    assert census["misc:hole"] + census["misc:uninit"] == classes[PageClass.HOLE] + classes[PageClass.UNAVAILABLE]
    # per zone, the uninit pfns are the all-zero pfns beyond what zoneinfo says is not present
    for i, z in enumerate(c.zones):
        zone_kinds = c.kind[z.start_pfn:z.end_pfn]
        zero = np.count_nonzero((zone_kinds == 0) | (zone_kinds == 1))
        assert np.count_nonzero(zone_kinds == 1) == max(0, zero - (z.spanned - c.present[z.key])), i
    # the free census is the rebuilt buddy blocks' pages (no free page is also offline/poisoned here)
    if not (has(flags, KPF.BUDDY) & has(flags, KPF.OFFLINE, KPF.HWPOISON)).any():
        assert census["free"] == sum(c.free_blocks.free_pages().values())
    # flags: the census kernel's counts of the bits that define kinds are the dump's
    for b in (KPF.BUDDY, KPF.SLAB, KPF.PGTABLE, KPF.ANON, KPF.KSM, KPF.HUGE, KPF.THP, KPF.COMPOUND_HEAD,
              KPF.COMPOUND_TAIL, KPF.RESERVED, KPF.OFFLINE, KPF.HWPOISON, KPF.ZERO_PAGE, KPF.LRU):
        assert c.bit_counts[b] == np.count_nonzero(has(flags, b))
    # folios: compound heads are allocations of their run's order; the histogram covers every page
    if not any(c.anomaly_counts().values()):
        alloc_pages = sum((1 << int(o)) * v for k, h in c.folios().items() if k != "free" for o, v in h.items())
        assert alloc_pages == n - census["misc:hole"] - census["misc:uninit"] - census["free"]
        heads = has(flags, KPF.COMPOUND_HEAD) & (c.kind != CENSUS_KINDS.index("free"))
        assert sum(v for k, h in c.folios().items() if k != "free" for o, v in h.items() if o != "0") \
            == np.count_nonzero(heads & (c.order > 0))
        thp_heads = np.count_nonzero(has(flags, KPF.THP) & has(flags, KPF.COMPOUND_HEAD))
        assert sum(v for h in c.thp().values() for v in h.values()) == thp_heads
        # every tail's head is the compound head before it, and the order covers it
        tails = np.flatnonzero(has(flags, KPF.COMPOUND_TAIL))
        assert (has(flags[c.head[tails]], KPF.COMPOUND_HEAD)).all()
        assert (tails - c.head[tails] < (1 << c.order[tails].astype(np.int64))).all()


# ----------------------------------------------------------------- a hand-built machine
def synthetic(section_pages: int = 1024):
    """8 sections of 1024 pfns: DMA32 [0, 4096) with a hole section, Normal [4096, 8192) with an
    uninit section; free blocks, slab and THP compounds, anon, KSM, page tables, ..."""
    n = 8 * section_pages
    f = np.zeros(n, np.uint64)
    f[0] = F(KPF.RESERVED)
    f[1:512] = F(KPF.RESERVED)
    f[512:1024] = F(KPF.BUDDY)  # an order-9 block
    f[1024] = F(KPF.SLAB, KPF.COMPOUND_HEAD)
    f[1025:1032] = F(KPF.SLAB, KPF.COMPOUND_TAIL)  # order-3 slab
    f[1032] = F(KPF.SLAB, KPF.ANON, KPF.KSM)  # slab outranks the overlay bits
    f[1033] = F(KPF.PGTABLE)
    f[1034] = F(KPF.ANON, KPF.KSM, KPF.MMAP)
    f[1035] = F(KPF.ANON, KPF.LRU, KPF.MMAP)
    f[1036] = F(KPF.ZERO_PAGE)
    f[1037] = F(KPF.OFFLINE)
    f[1038] = F(KPF.HWPOISON)
    f[1039] = 0  # flagless kernel page
    f[1040:1048] = F(KPF.BUDDY)  # order 3
    f[1536] = F(KPF.LRU, KPF.UPTODATE, KPF.THP, KPF.COMPOUND_HEAD)
    f[1537:2048] = F(KPF.LRU, KPF.UPTODATE, KPF.THP, KPF.COMPOUND_TAIL)  # order-9 file THP
    f[2048:3072] = F(KPF.HUGE)
    f[2048] |= F(KPF.COMPOUND_HEAD)
    f[2049:3072] |= F(KPF.COMPOUND_TAIL)  # an order-10 hugetlb folio
    # [3072, 4096): all zero -> a hole (DMA32 spans 4096, 3072 present)
    f[4096:5120] = F(KPF.BUDDY)
    f[5120] = F(KPF.ANON, KPF.LRU, KPF.COMPOUND_HEAD, KPF.THP)
    f[5121:5136] = F(KPF.ANON, KPF.LRU, KPF.COMPOUND_TAIL, KPF.THP)  # order-4 anon mTHP
    f[5136:6144] = F(KPF.LRU, KPF.REFERENCED)
    f[6144:7168] = F(KPF.BUDDY)
    # [7168, 8192): all zero -> uninit (Normal fully present)
    zones = (ZoneSpan(0, "DMA32", 0, 4096), ZoneSpan(0, "Normal", 4096, 8192))
    present = {"0:DMA32": 3072, "0:Normal": 4096}
    return f, zones, present


def test_synthetic_census_is_exact():
    f, zones, present = synthetic()
    c = census_from_arrays(f, zones, present, section_pages=1024)
    check_census_against_dump(c, f, None)
    census = c.census()
    assert census["misc:hole"] == 1024 and census["misc:uninit"] == 1024
    assert census["slab"] == 9 and census["ksm"] == 1 and census["anon"] == 1 + 16
    assert census["hugetlb"] == 1024 and census["misc:driver"] == 1 + 488  # pfn 1039 and [1048, 1536)
    assert census["free"] == 512 + 8 + 1024 + 1024
    assert c.folios()["slab"] == {"0": 1, "3": 1}
    assert c.folios()["file"] == {"9": 1, "0": 1008}
    assert c.folios()["free"] == {"3": 1, "9": 1, "10": 2}
    assert c.thp() == {"anon": {"4": 1}, "file": {"9": 1}}
    assert c.memmap_pfns() == 7 * 1024  # the hole section has no struct pages
    assert c.ram_pages() == 7168


def test_synthetic_scanner_lines_hand_computed():
    """Two pageblocks: an order-9 free block, then an order-9 LRU file THP (zone [0, 1024))."""
    n = 1024
    f = np.zeros(n, np.uint64)
    f[0:512] = F(KPF.BUDDY)
    f[512] = F(KPF.LRU, KPF.THP, KPF.COMPOUND_HEAD)
    f[513:] = F(KPF.LRU, KPF.THP, KPF.COMPOUND_TAIL)
    c = census_from_arrays(f, (ZoneSpan(0, "Normal", 0, n),), {"0:Normal": n}, section_pages=1024)
    got = {d: {s: scan_cost(c, d, s) for s in SCANNERS} for d in md.DESIGN_NAMES}
    lines = {d: {s: r.lines for s, r in row.items()} for d, row in got.items()}
    # compaction: linux reads the free head, the THP head and its page[1]; memdesc designs read the
    # first word of each pageblock, the THP's descriptor (flags, order, pfn of a 128-byte folio: 2
    # lines) and, for the free block, vmem its struct buddy / llfree its bitfield line
    assert lines["linux"]["compaction"] == 3
    assert lines["linux:32"]["compaction"] == 2 + 2
    assert lines["radix"]["compaction"] == 2 + 2
    assert lines["vmem"]["compaction"] == 2 + 2 + 1
    assert lines["llfree"]["compaction"] == 2 + 2 + 1
    # kpageflags: every struct page, and the whole descriptor once (128 B: 2 lines)
    assert lines["linux"]["kpageflags"] == 1024
    assert lines["linux:32"]["kpageflags"] == 512 + 2
    assert lines["radix"]["kpageflags"] == 256 + 2
    assert lines["vmem"]["kpageflags"] == lines["llfree"]["kpageflags"] == 128 + 2
    # page_idle: flags and refcount of an LRU folio are in its first line
    assert lines["linux"]["page_idle"] == 1024
    assert lines["vmem"]["page_idle"] == 128 + 1
    assert lines["linux:32"]["page_idle"] == 512 + 1
    assert all(r.covered_pfns == n for row in got.values() for r in row.values())


def test_scanner_tails_and_non_lru_compounds():
    """An order-3 slab and a non-LRU order-2 file folio: the compaction scanner visits every pfn;
    linux reads each struct page (tails also their head's), memdesc designs the type in the word
    and, for the folio only, its descriptor."""
    n = 512
    f = np.zeros(n, np.uint64)
    f[0] = F(KPF.SLAB, KPF.COMPOUND_HEAD)
    f[1:8] = F(KPF.SLAB, KPF.COMPOUND_TAIL)
    f[8] = F(KPF.UPTODATE, KPF.COMPOUND_HEAD)
    f[9:12] = F(KPF.UPTODATE, KPF.COMPOUND_TAIL)
    f[12:] = F(KPF.BUDDY)
    c = census_from_arrays(f, (ZoneSpan(0, "Normal", 0, n),), {"0:Normal": n}, section_pages=512)
    r = {d: scan_cost(c, d, "compaction") for d in md.DESIGN_NAMES}
    # pfns 0-11, then the free blocks' heads 12 (order 2), 16 (4), 32, 64, 128, 256 (8), each skipped
    assert r["linux"].visited_pfns == 12 + 6
    assert r["linux"].memmap_lines == 12 + 6
    # radix: 16-byte pages, 4 per line: pfns 0-11 (lines 0-2) and the free heads (lines 3, 4, 8, 16, 32, 64)
    assert r["radix"].memmap_lines == 3 + 6
    # vmem: 8 per line: lines 0, 1 (pfns 0-15), 2, 4, 8, 16, 32; a struct buddy line per skipped block
    assert r["vmem"].memmap_lines == 7 and r["vmem"].aux_lines == 6
    # folio (order 2, not LRU): fields flags, order, pfn of a 128-byte folio -> 2 lines; slab: none
    assert r["vmem"].descriptor_lines == r["radix"].descriptor_lines == 2
    assert r["linux"].descriptor_lines == 0


def memdesc_words() -> list[int]:
    """W=1 words of a seeded mix of bare and typed pages, encoded and decoded by the kernels."""
    rng = np.random.default_rng(3)
    n = 64
    fields = [rng.integers(0, 16, n), rng.integers(0, 128, n), rng.integers(0, 2, n), rng.integers(0, 64, n),
              rng.integers(0, 8, n), rng.integers(0, 1024, n)]
    words = np.empty(n, np.uint64)
    md.md_encode_words(*fields, (rng.integers(1, 1 << 40, n) << 4).astype(np.uint64), words)
    out = [np.empty(n, np.int64) for _ in range(6)] + [np.empty(n, np.uint64)]
    md.md_decode_words(words, *out)
    return [int(w) for w in words] + [int(x) for a in out for x in a]


def test_same_results_without_jit(tmp_path):
    """The census, scanner and memdesc word kernels give the same results with NUMBA_DISABLE_JIT=1."""
    code = (
        "import json\n"
        "from test_ontology import synthetic\n"
        "from memdesc.trace.kpagetype import census_from_arrays\n"
        "from memdesc.sim.scanner import scanner_table\n"
        "f, z, p = synthetic()\n"
        "c = census_from_arrays(f, z, p, section_pages=1024)\n"
        "t = scanner_table(c)\n"
        "from test_ontology import memdesc_words\n"
        "print(json.dumps({'census': c.census(), 'folios': c.folios(), 'head': int(c.head.sum()),"
        " 'order': int(c.order.astype(int).sum()), 'words': memdesc_words(),"
        " 'scan': {d: {s: r.as_dict() for s, r in row.items()} for d, row in t.items()}}))\n")
    nojit = run_json(code, jit=False, timeout=None)
    f, z, p = synthetic()
    c = census_from_arrays(f, z, p, section_pages=1024)
    t = scanner_table(c)
    assert nojit == {"census": c.census(), "folios": c.folios(), "head": int(c.head.sum()),
                     "order": int(c.order.astype(int).sum()), "words": memdesc_words(),
                     "scan": {d: {s: r.as_dict() for s, r in row.items()} for d, row in t.items()}}


# ----------------------------------------------------------------- the bundled real sample
def sample_arrays(when: str):
    flags = read_kpage_dump(SAMPLE / f"{when}.kpageflags.zst")
    counts = read_kpage_dump(SAMPLE / f"{when}.kpagecount.zst")
    zi = (SAMPLE / f"{when}.zoneinfo").read_text()
    return flags, counts, zone_spans_from_zoneinfo(zi), present_from_zoneinfo(zi)


@pytest.mark.parametrize("when", ["before", "after"])
def test_census_of_the_sample_equals_kpageflags(when):
    flags, counts, zones, present = sample_arrays(when)
    c = census_from_files(SAMPLE / f"{when}.kpageflags.zst", SAMPLE / f"{when}.zoneinfo",
                          SAMPLE / f"{when}.kpagecount.zst")
    check_census_against_dump(c, flags, counts)
    # the Linux 6.18 machine: DMA32's all-zero sections are the 3-4 GiB hole, Normal's are RAM
    assert c.census()["misc:hole"] == 262144 + 1  # and pfn 0, before DMA
    assert c.census()["misc:uninit"] == c.present["0:Normal"] - np.count_nonzero(
        (c.kind[1048576:] != 0) & (c.kind[1048576:] != 1))
    assert c.memmap_pfns() == c.npfn - 262144


def test_sample_designs_loaded_and_formulas(tmp_path):
    r = ont.ontology(SAMPLE, "after", load=True, scanners=False)
    det = r["design_detail"]
    for d in ("linux", "radix", "vmem", "llfree"):
        assert det[d]["freelist_source"].startswith(f"design {d}") and det[d]["check"] == "ok"
    assert det["linux:32"]["freelist_source"].startswith("design linux")
    designs = r["designs"]
    assert designs["linux:32"]["freelist_bytes"] == designs["linux"]["freelist_bytes"]
    f = ont.ontology(SAMPLE, "after", load=False, scanners=False)["designs"]
    # linux's formula is the design's own; radix and vmem within 8 % (measured at most 5.7 % on the
    # sample, build and files captures, before and after)
    assert f["linux"]["freelist_bytes"] == designs["linux"]["freelist_bytes"]
    # llfree's formula is LLFree.metadata_size per zone, what the design reports
    assert f["llfree"]["freelist_bytes"] == designs["llfree"]["freelist_bytes"]
    for d in ("radix", "vmem"):
        assert abs(f[d]["freelist_bytes"] / designs[d]["freelist_bytes"] - 1) < 0.08, d
        assert abs(f[d]["descriptor_bytes"].get("buddy", 0) - designs[d]["descriptor_bytes"].get("buddy", 0)) \
            <= 0.02 * max(1, designs[d]["descriptor_bytes"].get("buddy", 0))
    # totals add up; smaller struct pages cost less in total on this machine
    for v in designs.values():
        assert v["total_bytes"] == v["struct_page_bytes"] + sum(v["descriptor_bytes"].values()) + v["freelist_bytes"]
        assert v["bytes_per_page"] == pytest.approx(v["total_bytes"] / r["ram_pages"])
        assert v["percent_of_ram"] == pytest.approx(100 * v["total_bytes"] / r["ram_bytes"])
    assert designs["linux"]["struct_page_bytes"] == r["memmap_pfns"] * 64
    assert designs["vmem"]["descriptor_bytes"]["buddy"] > 0 and "buddy" not in designs["llfree"]["descriptor_bytes"]


def test_result_displays_in_jupyter():
    """ontology() returns the --json dict itself, which renders as HTML tables in Jupyter: the
    census by type, every design's metadata, the scanners' lines per pfn."""
    r = ont.ontology(SAMPLE, "after", load=False, scanners=True)
    assert isinstance(r, dict) and json.loads(json.dumps(r))["designs"] == r["designs"]
    h = r._repr_html_()
    html.parser.HTMLParser().feed(h)
    assert h.count("<table") == 4
    for d in md.DESIGN_NAMES:
        assert f"<td>{d}</td>" in h
    assert f"<td>{r['designs']['linux']['total_bytes']:,}</td>" in h
    assert f"<td>{r['census']['file']:,}</td>" in h and "page_idle" in h


def test_cli_json_keys(tmp_path):
    out = tmp_path / "o.json"
    res = CliRunner().invoke(app, ["ontology", str(SAMPLE), "--when", "after", "--formula", "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert {"census", "folios", "designs", "scanner"} <= set(r)
    assert list(r["census"]) == list(CENSUS_KINDS) and list(r["folios"]) == list(CENSUS_KINDS)
    assert list(r["designs"]) == list(md.DESIGN_NAMES) == list(r["scanner"])
    for v in r["designs"].values():
        assert set(v) == {"struct_page_bytes", "descriptor_bytes", "freelist_bytes", "total_bytes", "bytes_per_page",
                          "percent_of_ram"}
        assert set(CENSUS_KINDS) <= set(v["descriptor_bytes"])
    for row in r["scanner"].values():
        assert list(row) == list(SCANNERS) and all(x > 0 for x in row.values())
    assert r["scanner"]["linux"]["kpageflags"] == 1.0  # one 64-byte struct page per pfn, nothing else
    assert "memdesc census" in res.output and "page_idle" in res.output and "llfree" in res.output


def test_cli_errors(tmp_path):
    res = CliRunner().invoke(app, ["ontology"])
    assert res.exit_code == 2 and "capture directory" in res.output
    res = CliRunner().invoke(app, ["ontology", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a directory" in res.output
    (tmp_path / "before.zoneinfo").write_text((SAMPLE / "before.zoneinfo").read_text())
    res = CliRunner().invoke(app, ["ontology", str(tmp_path)])
    assert res.exit_code == 2 and "no before.kpageflags" in res.output
    (tmp_path / "before.kpageflags").write_bytes(b"not a dump\n")
    res = subprocess.run([sys.executable, "-c", "from memdesc.cli import main; main()", "ontology", str(tmp_path)],
                         capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    assert res.returncode == 2 and "not a multiple of 8" in res.stderr and "Traceback" not in res.stderr


def test_proc_snapshot_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        ont.snapshot_proc(tmp_path / "out", proc=tmp_path)
    fake = tmp_path / "proc"
    fake.mkdir()
    for name in ("kpageflags", "kpagecount"):
        (fake / name).write_bytes(zstandard.ZstdDecompressor().decompress(
            (SAMPLE / f"before.{name}.zst").read_bytes(), max_output_size=1 << 27))
    for name in ("zoneinfo", "buddyinfo", "pagetypeinfo", "meminfo", "vmstat"):
        (fake / name).write_bytes((SAMPLE / f"before.{name}").read_bytes())
    real_open = open

    def denied(path, *a, **k):
        if str(path) == str(fake / "kpageflags"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(capture_mod, "open", denied, raising=False)
    with pytest.raises(ConfigError, match="needs root"):
        ont.snapshot_proc(tmp_path / "out2", proc=fake)
    monkeypatch.undo()
    d = ont.snapshot_proc(tmp_path / "out3", proc=fake)
    assert (read_kpage_dump(d / "before.kpageflags.zst") == read_kpage_dump(SAMPLE / "before.kpageflags.zst")).all()
    r = ont.ontology_of_proc(fake, load=False, scanners=False)
    assert r["census"] == ont.ontology(SAMPLE, "before", load=False, scanners=False)["census"]


@pytest.mark.skipif(not os.access("/proc/kpageflags", os.R_OK), reason="/proc/kpageflags not readable (needs root)")
def test_running_machine(tmp_path):
    r = ont.ontology_of_proc("/proc", keep=tmp_path, load=False, scanners=True)
    flags = read_kpage_dump(tmp_path / "before.kpageflags.zst")
    counts = read_kpage_dump(tmp_path / "before.kpagecount.zst")
    c = census_from_files(tmp_path / "before.kpageflags.zst", tmp_path / "before.zoneinfo",
                          tmp_path / "before.kpagecount.zst")
    check_census_against_dump(c, flags, counts)
    assert r["census"] == c.census() and r["capture"] == "/proc"
    assert r["scanner"]["linux"]["kpageflags"] == 1.0


# ----------------------------------------------------------------- every shared capture
def _captures(root: Path):
    return sorted(p for p in root.iterdir() if (p / "before.kpageflags.zst").is_file())


@pytest.mark.shared
def test_census_of_every_shared_capture(shared_traces):
    caps = _captures(shared_traces)
    assert len(caps) >= 7
    for cap in caps:
        for when in ("before", "after"):
            flags = read_kpage_dump(cap / f"{when}.kpageflags.zst")
            counts = read_kpage_dump(cap / f"{when}.kpagecount.zst")
            zi = (cap / f"{when}.zoneinfo").read_text()
            c = census_from_arrays(flags, zone_spans_from_zoneinfo(zi), present_from_zoneinfo(zi), counts)
            check_census_against_dump(c, flags, counts)


@pytest.mark.shared
def test_build_capture_figures(shared_traces):
    """The build capture's census and per-design figures (README/docs quote them)."""
    r = ont.ontology(shared_traces / "build", "before", load=False, scanners=True)
    assert r["census"]["file"] == 600277 and r["census"]["slab"] == 74914 and r["census"]["free"] == 1454474
    d = r["designs"]
    assert d["linux"]["percent_of_ram"] == pytest.approx(1.5626, abs=5e-4)
    order = sorted(d, key=lambda k: d[k]["total_bytes"], reverse=True)
    assert order == ["linux", "linux:32", "radix", "vmem", "llfree"]
    t = scanner_table(ont.read_capture(shared_traces / "build")[0])
    assert t["linux"]["kpageflags"].lines_per_pfn == 1.0
    # the descriptor indirection costs compaction more lines on linux:32 than linux's 64-byte pages
    assert t["linux:32"]["compaction"].lines_per_pfn > t["linux"]["compaction"].lines_per_pfn
