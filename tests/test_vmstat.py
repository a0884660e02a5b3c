"""Tests of memdesc.mm.vmstat: /proc formats byte for byte, fragmentation indices.

Ground truth: the real 6.18 /proc snapshots (bundled copies in tests/data/proc, all
captures through the ``shared_traces`` fixture), the published buddyinfo /
unusable_index / extfrag_index vector of reference 03 section 4.4, and lines written by
hand from the kernel's printf formats.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from memdesc.errors import FormatError, InvalidOrder
from memdesc.mm import vmstat as v

PROC = Path(__file__).parent / "data" / "proc"


def _text(name: str) -> str:
    return (PROC / name).read_text()


# ---------------------------------------------------------------------------
# bundled real files (run without ../shared)
# ---------------------------------------------------------------------------
def test_bundled_buddyinfo():
    text = _text("buddyinfo")
    info = v.parse_buddyinfo(text)
    assert v.format_buddyinfo(info) == text
    assert info.to_dict()["0:Normal"] == [5095, 3979, 15131, 11675, 5036, 2531, 1425, 575, 191, 93, 86]
    assert list(info.to_dict()) == ["0:DMA", "0:DMA32", "0:Normal"]
    assert v.BuddyInfo.from_dict(info.to_dict()) == info
    assert info.nr_free_array().shape == (3, 11) and info.nr_orders == 11


def test_bundled_pagetypeinfo():
    text = _text("pagetypeinfo")
    info = v.parse_pagetypeinfo(text)
    assert v.format_pagetypeinfo(info) == text
    assert (info.pageblock_order, info.pages_per_block) == (9, 512)
    assert info.migratetype_names == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    assert info.block_counts()[(0, "Normal")] == {"Unmovable": 273, "Movable": 2393, "Reclaimable": 150,
                                                  "HighAtomic": 0, "Isolate": 0}
    assert info.free_counts()[(0, "DMA32", "Movable")] == [1, 2, 4, 2, 5, 4, 3, 3, 4, 2, 752]
    assert info.free_array().shape == (3, 5, 11)
    assert all(z.mixed is None for z in info.zones)


def test_bundled_zoneinfo():
    text = _text("zoneinfo")
    zones = v.parse_zoneinfo(text)
    assert v.format_zoneinfo(zones) == text
    assert [z.zone for z in zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma, dma32, normal, movable, device = zones
    assert dma.node_stats is not None and dma.node_stats["nr_file_pages"] == 600211
    assert dma32.node_stats is None
    assert dma.protection == (0, 3019, 8651, 8651, 8651)
    assert (normal.min, normal.low, normal.high, normal.promo) == (10980, 13725, 16470, 19215)
    assert normal.stats["nr_free_pages"] == normal.pages_free == 677941
    assert normal.pagesets[0] == v.PerCpuPageset(0, 5605, 7114, 63, 6862, 90112, 28)
    assert normal.start_pfn == 1048576 and normal.node_unreclaimable == 0
    assert not movable.populated and movable.stats is None and movable.min == 32
    assert device.pagesets is None and device.start_pfn is None


def test_bundled_meminfo_and_vmstat():
    mi = v.parse_meminfo(_text("meminfo"))
    assert mi["MemTotal"] == 24684092 and mi["HugePages_Total"] == 0 and mi["Active(anon)"] == 1072
    assert len(mi) == 54
    vm = v.parse_vmstat(_text("vmstat"))
    assert vm["nr_free_pages"] == 1454698 and list(vm)[0] == "nr_free_pages" and len(vm) == 192


# ---------------------------------------------------------------------------
# every real capture
# ---------------------------------------------------------------------------
def _captures(shared_traces, suffix):
    files = sorted(shared_traces.glob(f"*/*.{suffix}"))
    assert len(files) >= 6
    return files


@pytest.mark.parametrize("suffix, reader, writer", [
    ("buddyinfo", v.read_buddyinfo, v.format_buddyinfo),
    ("pagetypeinfo", v.read_pagetypeinfo, v.format_pagetypeinfo),
    ("zoneinfo", v.read_zoneinfo, v.format_zoneinfo),
])
@pytest.mark.shared
def test_every_capture_roundtrips_byte_identically(shared_traces, suffix, reader, writer):
    for path in _captures(shared_traces, suffix):
        assert writer(reader(path)) == path.read_text(), path


@pytest.mark.shared
def test_captures_agree_with_each_other(shared_traces):
    """buddyinfo's nr_free is the sum over migratetypes of pagetypeinfo's free lists;
    zoneinfo's pages free equals its nr_free_pages counter (checks two parsers at once)."""
    for bpath in _captures(shared_traces, "buddyinfo"):
        b = v.read_buddyinfo(bpath)
        p = v.read_pagetypeinfo(bpath.with_suffix(".pagetypeinfo"))
        for row, pz in zip(b.rows, p.zones, strict=True):
            assert (row.node, row.zone) == (pz.node, pz.zone)
            assert list(row.nr_free) == [sum(col) for col in zip(*pz.free, strict=True)]
        for z in v.read_zoneinfo(bpath.with_suffix(".zoneinfo")):
            if z.populated:
                assert z.pages_free == z.stats["nr_free_pages"]
        assert v.read_meminfo(bpath.with_suffix(".meminfo"))["MemTotal"] > 0
        assert "pgalloc_normal" in v.read_vmstat(bpath.with_suffix(".vmstat"))


# ---------------------------------------------------------------------------
# the model side: objects built from parts print in the kernel's format
# ---------------------------------------------------------------------------
def _zone_block(text: str, zone: str) -> str:
    start = text.index(f"zone {zone:>8}\n") - len("Node 0, ")
    nxt = text.find("\nNode ", start)
    return text[start: len(text) if nxt < 0 else nxt + 1]


def test_unpopulated_zone_printed_the_short_way():
    movable = v.ZoneInfo(node=0, zone="Movable", pages_free=0, min=32, low=32, high=32, spanned=0, present=0,
                         managed=0, protection=(0, 0, 0, 0, 0), promo=32)
    assert v.format_zoneinfo([movable]) == _zone_block(_text("zoneinfo"), "Movable")


def test_model_subset_prints_kernel_lines_in_order():
    real = _zone_block(_text("zoneinfo"), "DMA32")
    z = v.ZoneInfo(0, "DMA32", pages_free=772917, min=5886, low=7357, high=8828, promo=10299, spanned=1044480,
                   present=782336, managed=772917, protection=(0, 0, 5632, 5632, 5632),
                   pagesets=[v.PerCpuPageset(0, 0, 3678, 63, 3678, 48307, 24),
                             v.PerCpuPageset(1, 0, 0, 63, 3678, 48307, 24)],
                   node_unreclaimable=0, start_pfn=4096)
    ours = v.format_zoneinfo([z]).splitlines()
    real_lines = iter(real.splitlines())
    assert all(line in real_lines for line in ours)  # an ordered subsequence of the real zone


def test_zoneinfo_model_errors():
    with pytest.raises(FormatError, match="unpopulated"):
        v.ZoneInfo(0, "Movable", 0, 0, 0, 0, 0, 0, 0, (0,), pagesets=[v.PerCpuPageset(0, 0, 0, 1)])
    zones = v.parse_zoneinfo(_text("zoneinfo"))
    moved = [zones[0].__class__(**{**zones[0].__dict__, "node_stats": None}),
             zones[1].__class__(**{**zones[1].__dict__, "node_stats": {"nr_mapped": 1}}), *zones[2:]]
    with pytest.raises(FormatError, match="first populated zone"):
        v.format_zoneinfo(moved)
    with pytest.raises(FormatError, match="together"):
        v.PerCpuPageset(0, 0, 0, 1, high_min=3)
    with pytest.raises(FormatError, match="non-negative"):
        v.ZoneInfo(0, "Normal", -1, 0, 0, 0, 0, 1, 1, (0,))
    with pytest.raises(FormatError, match="ZoneInfo"):
        v.format_zoneinfo(["Node 0"])


def test_zoneinfo_optional_newer_and_older_fields_roundtrip():
    z = v.ZoneInfo(1, "Normal", 10, 1, 2, 3, 100, 100, 90, (0, 0), boost=None, promo=None, cma=None,
                   stats={"nr_free_pages": 10}, pagesets=[v.PerCpuPageset(0, 1, 2, 3)],
                   node_unreclaimable=1, start_pfn=4096, reserved_highatomic=512, free_highatomic=3)
    text = v.format_zoneinfo([z])
    assert "  reserved_highatomic: 512\n  free_highatomic:     3\n" in text
    assert "boost" not in text and "high_min" not in text and "vm stats" not in text
    assert v.parse_zoneinfo(text) == [z]


def test_pagetypeinfo_multinode_mixed_and_cap():
    names = ("Unmovable", "Movable")
    info = v.PageTypeInfo(9, 512, names, (
        v.PageTypeZone(0, "Normal", ((1, 2), (150000, 100000)), (3, 4), (0, 1)),
        v.PageTypeZone(1, "Normal", ((0, 99999), (5, 6)), (1, 2), (0, 0)),
    ))
    text = v.format_pagetypeinfo(info)
    assert text.count("Page block order: 9\nPages per block:  512\n\n") == 2
    assert "Node    0, zone   Normal, type      Movable >100000 >100000 \n" in text
    assert "Node    1, zone   Normal, type    Unmovable      0  99999 \n" in text
    assert "\nNumber of mixed blocks    Unmovable      Movable \nNode 1, zone   Normal            0" in text
    back = v.parse_pagetypeinfo(text)
    assert back.zones[0].free[1] == (100000, 100000) and back.capped(back.zones[0].free[1][0])
    assert v.format_pagetypeinfo(back) == text
    exact = v.PageTypeInfo(9, 512, names, info.zones, free_cap=None)  # pre-cap kernels
    assert "150000" in v.format_pagetypeinfo(exact)
    assert v.parse_pagetypeinfo(v.format_pagetypeinfo(exact)) == exact


def test_pagetypeinfo_model_errors():
    with pytest.raises(FormatError, match="migratetypes"):
        v.PageTypeInfo(9, 512, ("A", "B"), (v.PageTypeZone(0, "Normal", ((1,),), (1,)),))
    with pytest.raises(FormatError, match="all or nothing"):
        v.PageTypeInfo(9, 512, ("A",), (v.PageTypeZone(0, "DMA", ((1,),), (1,), (0,)),
                                        v.PageTypeZone(0, "Normal", ((1,),), (1,))))
    with pytest.raises(FormatError, match="contiguous"):
        v.PageTypeInfo(9, 512, ("A",), (v.PageTypeZone(0, "DMA", ((1,),), (1,)),
                                        v.PageTypeZone(1, "DMA", ((1,),), (1,)),
                                        v.PageTypeZone(0, "Normal", ((1,),), (1,))))


# ---------------------------------------------------------------------------
# malformed input: FormatError with path and line
# ---------------------------------------------------------------------------
def test_reader_reports_path_and_line(tmp_path):
    bad = tmp_path / "buddyinfo"
    lines = _text("buddyinfo").splitlines(keepends=True)
    lines[1] = lines[1].replace("752", "75x")
    bad.write_text("".join(lines))
    with pytest.raises(FormatError) as e:
        v.read_buddyinfo(bad)
    assert e.value.path == str(bad) and e.value.lineno == 2 and "'75x'" in str(e.value)
    assert f"{bad}:2:" in str(e.value)


@pytest.mark.parametrize("parser, text, lineno, match", [
    (v.parse_buddyinfo, "", None, "empty"),
    (v.parse_buddyinfo, "Node 0, zone Normal 1 2\nNode 0, zone DMA 1\n", 2, "1 orders"),
    (v.parse_buddyinfo, "Node 0, zone Normal 1 2\nNode 0, zone Normal 1 2\n", None, "twice"),
    (v.parse_buddyinfo, "Zone 0 1 2\n", 1, "expected 'Node"),
    (v.parse_unusable_index, "Node 0, zone Normal 0.5\n", 1, "how the kernel prints"),
    (v.parse_extfrag_index, "Node 0, zone Normal x.000\n", 1, "not an index"),
    (v.parse_meminfo, "MemTotal 5 kB\n", 1, "Name:"),
    (v.parse_meminfo, "A: 1\nA: 2\n", 2, "twice"),
    (v.parse_vmstat, "nr_free_pages x\n", 1, "name value"),
])
def test_small_parsers_reject_malformed(parser, text, lineno, match):
    with pytest.raises(FormatError, match=match) as e:
        parser(text, "f")
    assert e.value.lineno == lineno and e.value.path == "f"


def _edit(name: str, old: str, new: str) -> str:
    text = _text(name)
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("text, match", [
    ("".join(_text("pagetypeinfo").splitlines(keepends=True)[:6]), "end of file"),
    (_text("pagetypeinfo")[:300], "expected 'Node N, zone NAME, type"),
    (_edit("pagetypeinfo", "Pages per block:  512", "Pages per block: x"), "Pages per block"),
    (_edit("pagetypeinfo", "     3 \n", " >99999 \n"), "walk limit"),
    (_edit("pagetypeinfo", "type   HighAtomic      0", "type     Reserve      0"), "do not match"),
    (_edit("pagetypeinfo", "\nNode 0, zone    DMA32 ", "\nNode 0, zone   Normal "), "must follow"),
    (_edit("pagetypeinfo", "Number of blocks type ", "Blocks "), "Number of blocks"),
    (_edit("pagetypeinfo", "   0 \nNode    0, zone    DMA32, type    Unmovable", "   0 \n  \n"),
     "Number of blocks"),
])
def test_pagetypeinfo_rejects_malformed(text, match):
    with pytest.raises(FormatError, match=match):
        v.parse_pagetypeinfo(text, "pagetypeinfo")


@pytest.mark.parametrize("old, new, match", [
    ("        boost    0\n", "        bogus    0\n", "unexpected zone field 'bogus'"),
    ("        min      29\n", "", "before required"),
    ("        cma      0\n        protection: (0, 3019", "        cma      0\n", "protection"),
    ("  pages free     3840\n", "  pages free     many\n", "pages free"),
    ("              high:     0\n              batch:    1", "              batch:    1\n              high:     0",
     "out of order"),
    ("  start_pfn:           1\n", "  start_pfn:           1\n  bogus_field: 3\n", "unexpected 'bogus_field'"),
    ("        protection: (0, 3019", "        protection: (0 3019", "protection"),
    ("  node_unreclaimable:  0\n  start_pfn:           1\n", "  something else\n", "unexpected line"),
])
def test_zoneinfo_rejects_malformed(old, new, match):
    with pytest.raises(FormatError, match=match) as e:
        v.parse_zoneinfo(_edit("zoneinfo", old, new), "zoneinfo")
    assert e.value.path == "zoneinfo" and e.value.lineno is not None


def test_read_proc_file_plain_zst_and_errors(tmp_path):
    text = _text("zoneinfo")
    zst = tmp_path / "zoneinfo.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    assert v.read_proc_file(zst) == text
    assert v.read_zoneinfo(zst) == v.parse_zoneinfo(text)
    with pytest.raises(FormatError, match="cannot read") as e:
        v.read_proc_file(tmp_path / "missing")
    assert e.value.path == str(tmp_path / "missing")
    (tmp_path / "bad.zst").write_bytes(b"not zstd at all")
    with pytest.raises(FormatError, match="zstd"):
        v.read_proc_file(tmp_path / "bad.zst")
    (tmp_path / "bin").write_bytes(b"Node 0\xff\x00")
    with pytest.raises(FormatError, match="not a text"):
        v.read_buddyinfo(tmp_path / "bin")


# ---------------------------------------------------------------------------
# fragmentation indices
# ---------------------------------------------------------------------------
GOLDEN_BUDDYINFO = """\
Node 0, zone   Normal 1134904 1124019 975094 1027980 973525 755862 528091 316182 123744      0      0
Node 1, zone   Normal 864976 1041246 994760 895916 726438 565284 415625 266573 118000      0      0
"""
# as published (whitespace collapsed by the blog), reference 03 section 4.4
GOLDEN_UNUSABLE = """\
Node 0, zone   Normal 0.000 0.007 0.020 0.045 0.096 0.192 0.342 0.552 0.803 1.000 1.000
Node 1, zone   Normal 0.000 0.006 0.021 0.051 0.104 0.190 0.325 0.522 0.775 1.000 1.000
"""
GOLDEN_EXTFRAG = ("Node 0, zone Normal" + " -1.000" * 9 + " 0.955 0.978\n"
                  "Node 1, zone Normal" + " -1.000" * 9 + " 0.956 0.978\n")


def test_golden_vector_values():
    info = v.parse_buddyinfo(GOLDEN_BUDDYINFO)
    assert v.unusable_index_rows(info) == v.parse_unusable_index(GOLDEN_UNUSABLE)
    assert v.extfrag_index_rows(info) == v.parse_extfrag_index(GOLDEN_EXTFRAG)
    nr_free = info.rows[0].nr_free
    assert [v.unusable_free_index(nr_free, o) for o in range(11)] == \
        [0, 7, 20, 45, 96, 192, 342, 552, 803, 1000, 1000]
    assert [v.fragmentation_index(nr_free, o) for o in (8, 9, 10)] == [-1000, 955, 978]


def test_golden_vector_exact_kernel_spacing():
    info = v.parse_buddyinfo(GOLDEN_BUDDYINFO)
    # "Node %d, zone %8s " + "%6lu " / "%d.%03d " / "%2d.%03d " per order, written out by hand
    assert v.format_buddyinfo(info).splitlines(keepends=True)[0] == (
        "Node 0, zone   Normal 1134904 1124019 975094 1027980 973525 755862 528091 316182 123744      0      0 \n")
    assert v.format_unusable_index(v.unusable_index_rows(info)).splitlines(keepends=True)[1] == (
        "Node 1, zone   Normal 0.000 0.006 0.021 0.051 0.104 0.190 0.325 0.522 0.775 1.000 1.000 \n")
    assert v.format_extfrag_index(v.extfrag_index_rows(info)).splitlines(keepends=True)[0] == (
        "Node 0, zone   Normal -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000  0.955  0.978 \n")
    text = v.format_extfrag_index(v.extfrag_index_rows(info))
    assert v.format_extfrag_index(v.parse_extfrag_index(text)) == text


def test_negative_index_printed_with_c_division():
    # one free order-0 page, order-1 request: 1000 - (1000 + 1000*1/2)/1 = -500
    nr_free = [1] + [0] * 10
    assert v.fragmentation_index(nr_free, 1) == -500
    row = [v.FragIndexRow(0, "DMA", (-500, -1000, 0, 999))]
    text = v.format_extfrag_index(row)
    assert text == "Node 0, zone      DMA  0.-500 -1.000  0.000  0.999 \n"  # C: -500/1000 = 0, -500%1000 = -500
    assert v.parse_extfrag_index(text) == row
    assert v.format_unusable_index([(0, "DMA", (1000, 0, 7))]) == "Node 0, zone      DMA 1.000 0.000 0.007 \n"


def test_fill_contig_page_info_and_extfrag_for_order():
    assert v.fill_contig_page_info([1, 0, 2], 1) == (9, 3, 4)
    assert v.fill_contig_page_info([0, 0, 0], 0) == (0, 0, 0)
    assert v.unusable_free_index([0, 0], 1) == 1000  # no free memory: all unusable
    assert v.fragmentation_index([0, 0], 1) == 0
    assert v.extfrag_for_order([0, 0], 1) == 0
    assert v.extfrag_for_order([4, 0, 1], 2) == 50
    with pytest.raises(InvalidOrder):
        v.unusable_free_index([1, 2], 2)
    with pytest.raises(FormatError):
        v.fragmentation_index([1, -2], 0)
    with pytest.raises(FormatError):
        v.extfrag_for_order([[1, 2]], 0)


nr_free_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(nr_free_lists, st.data())
def test_index_kernels_match_definitions(nr_free, data):
    """Unusable free space index = floor(1000 * (free - sum_{i>=j} 2^i k_i) / free)
    (Gorman & Whitcroft); fragmentation index as the kernel comment defines it."""
    j = data.draw(st.integers(0, len(nr_free) - 1))
    arr = np.array(nr_free, dtype=np.int64)
    free = sum(k << i for i, k in enumerate(nr_free))
    usable = sum(k << i for i, k in enumerate(nr_free) if i >= j)
    u = int(v.unusable_free_index_nb(arr, j))
    assert u == (1000 if free == 0 else int(Fraction(1000 * (free - usable), free)))
    assert int(v.extfrag_for_order_nb(arr, j)) == (0 if free == 0 else u // 10)
    f = int(v.fragmentation_index_nb(arr, j))
    if sum(nr_free) == 0:
        assert f == 0
    elif usable:
        assert f == -1000
    else:
        assert f == 1000 - (1000 + free * 1000 // (1 << j)) // sum(nr_free)
        assert -1000 < f < 1000
    table_u = v.unusable_index_table_nb(arr.reshape(1, -1))
    assert table_u[0, j] == u and v.fragmentation_index_table_nb(arr.reshape(1, -1))[0, j] == f


def test_index_kernels_monotone_on_real_capture():
    info = v.parse_buddyinfo(_text("buddyinfo"))
    for row in info.nr_free_array():
        us = [v.unusable_free_index_nb(row, o) for o in range(row.size)]
        assert us == sorted(us) and us[0] == 0
        assert all(v.fragmentation_index_nb(row, o) == -1000 for o in range(row.size))  # all orders free
