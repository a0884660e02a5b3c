"""Tests of memdesc.mm.gfp against the kernel's tables and the real 6.18 captures.

Independent ground truth used here:
* the ``print fmt`` of the captured kernel's mm_page_alloc event (the C expressions of
  ``__def_gfpflag_names`` as that kernel compiled them), bundled in tests/data/gfp;
* every distinct ``migratetype=N gfp_flags=...`` pair printed in the real traces;
* values that appear in kernel OOM reports (``gfp_mask=0xcc0(GFP_KERNEL)``,
  ``0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)``, ``0x400cc0(GFP_KERNEL_ACCOUNT)``);
* tables worked out by hand from the comments and code of gfp.h / page_alloc.c.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdesc.errors import ConfigError, FormatError, InvalidOrder
from memdesc.mm import gfp as g
from memdesc.mm.mmzone import MIGRATETYPE_NAMES, ZONES_I386, ZONES_X86_64, MigrateType, ZoneType
from nojit import subprocess_env

DATA = Path(__file__).parent / "data" / "gfp"
REPO = Path(__file__).resolve().parents[1]
BUNDLED_STRINGS = DATA.joinpath("trace_gfp_strings.txt").read_text().split()

Z = ZoneType


# ---------------------------------------------------------------------------
# bit layout and tables
# ---------------------------------------------------------------------------
def test_composite_values_match_kernel_reports():
    # values printed by 6.x kernels in OOM / page-owner reports
    assert g.GFP_KERNEL == 0xCC0
    assert g.GFP_KERNEL_ACCOUNT == 0x400CC0
    assert g.GFP_HIGHUSER_MOVABLE | g.__GFP_COMP == 0x140CCA
    assert g.GFP_NOFS == 0xC40 and g.GFP_NOIO == 0xC00
    # 6.18: GFP_ATOMIC lost __GFP_ATOMIC (6.3), GFP_NOWAIT gained __GFP_NOWARN
    assert g.GFP_ATOMIC == 0x820
    assert g.GFP_NOWAIT == 0x2800
    assert g.__GFP_BITS_SHIFT == 25 and g.__GFP_BITS_MASK == 0x1FFFFFF
    assert g.__GFP_NO_OBJ_EXT == 1 << 24
    assert g.GFP_ZONEMASK == 0xF


def test_print_table_matches_captured_kernel_format():
    table = g.gfpflag_names_from_format((DATA / "mm_page_alloc.format").read_text())
    assert table == g.GFPFLAG_NAMES
    assert table[0] == (g.GFP_TRANSHUGE, "GFP_TRANSHUGE")
    assert table[-1] == (1 << 24, "__GFP_NO_OBJ_EXT")


def test_format_table_reader_rejects_garbage():
    with pytest.raises(FormatError, match="__print_flags"):
        g.gfpflag_names_from_format("print fmt: \"page=%p\", REC->page")
    with pytest.raises(FormatError, match="unterminated"):
        g.gfpflag_names_from_format('__print_flags(REC->gfp_flags, "|", {(1UL << 3), "A"}')
    with pytest.raises(FormatError, match="C expression"):
        g.gfpflag_names_from_format('__print_flags(REC->gfp_flags, "|", {(1UL <<), "A"}, { 0, NULL })')


def test_format_table_reader_evaluates_c_expressions():
    text = ('x __print_flags(REC->gfp_flags, "|", {( unsigned long)(((1UL) << (3)) | 0x10), "A"}, '
            '{(( gfp_t)(0x7f) & ~(( gfp_t)0x3)), "B"}, {010, "C"}, { 0, ((void *)0) } ) : "none"')
    assert g.gfpflag_names_from_format(text) == ((0x18, "A"), (0x7C, "B"), (8, "C"))


def test_kernel_build_bug_ons():
    # gfp_to_alloc_flags(): bit-identical twins
    assert g.__GFP_HIGH == g.ALLOC_MIN_RESERVE
    assert g.__GFP_KSWAPD_RECLAIM == g.ALLOC_KSWAPD
    # gfp_migratetype(): the mobility bits are the migratetype numbers of mmzone.py
    assert 1 << g.GFP_MOVABLE_SHIFT == g.__GFP_MOVABLE
    assert g.__GFP_MOVABLE >> g.GFP_MOVABLE_SHIFT == MigrateType.MOVABLE
    assert g.__GFP_RECLAIMABLE >> g.GFP_MOVABLE_SHIFT == MigrateType.RECLAIMABLE
    assert g.GFP_MOVABLE_MASK >> g.GFP_MOVABLE_SHIFT == MigrateType.HIGHATOMIC


def test_intflag_mirror():
    assert g.GFP.KERNEL == g.GFP_KERNEL and g.GFP.COMP == g.__GFP_COMP
    assert g.GFP.NOIO is g.GFP.RECLAIM
    assert g.GFP.DMA == g.GFP_DMA and g.GFP.NO_OBJ_EXT == 1 << 24
    assert g.GFP_FLAGS["__GFP_COMP"] == g.__GFP_COMP and g.GFP_FLAGS["GFP_NOWAIT"] == g.GFP_NOWAIT


# ---------------------------------------------------------------------------
# show_gfp_flags / parse
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [
    (0, "none"),
    (0x140CCA, "GFP_HIGHUSER_MOVABLE|__GFP_COMP"),
    (0xCC0, "GFP_KERNEL"),
    (g.__GFP_RECLAIM, "GFP_NOIO"),  # GFP_NOIO comes before __GFP_RECLAIM in the table
    (g.GFP_KERNEL | g.__GFP_HARDWALL, "GFP_USER"),
    (g.__GFP_DMA, "GFP_DMA"),
    (g.__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (g.GFP_KERNEL | 0x200, "GFP_KERNEL|0x200"),  # the unused bit is leftover hex
    (1 << 30, "0x40000000"),
    (g.GFP_NOFS | g.__GFP_HIGHMEM | g.__GFP_MOVABLE | g.__GFP_NOWARN | g.__GFP_NORETRY | g.__GFP_COMP
     | g.__GFP_HARDWALL,
     "GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL"),
])
def test_format_gfp(value, text):
    assert g.format_gfp(value) == text
    assert g.parse_gfp(text) == value


def test_parse_gfp_raw_hex_and_mixtures():
    assert g.parse_gfp("0x140cca") == 0x140CCA
    assert g.parse_gfp(" GFP_KERNEL|0x200 ") == 0xEC0
    assert g.parse_gfp("GFP_NOWAIT|__GFP_NOWARN") == g.GFP_NOWAIT  # redundant flags are fine
    custom = ((0x3, "BOTH"), (0x1, "ONE"))
    assert g.format_gfp(0x7, custom) == "BOTH|0x4"
    assert g.parse_gfp("BOTH|0x4", custom) == 7


@pytest.mark.parametrize("text, match", [
    ("GFP_FOO", "unknown gfp flag 'GFP_FOO'"),
    ("GFP_KERNEL|__GFP_ATOMIC", "'__GFP_ATOMIC'"),
    ("", "empty"),
    ("GFP_KERNEL||__GFP_COMP", "empty flag name"),
    ("none|GFP_KERNEL", "stand alone"),
    ("0xzz", "unknown"),
    ("0x" + "f" * 17, "unsigned long"),
])
def test_parse_gfp_errors(text, match):
    with pytest.raises(FormatError, match=match):
        g.parse_gfp(text)


def test_parse_gfp_rejects_non_strings():
    with pytest.raises(FormatError):
        g.parse_gfp(0xCC0)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "GFP_KERNEL", None, True])
def test_format_gfp_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        g.format_gfp(bad)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_format_parse_roundtrip(value):
    text = g.format_gfp(value)
    assert g.parse_gfp(text) == value
    names = text.split("|")
    assert len(names) == len(set(names))
    # only the last element may be raw hex, and it holds no bit a named flag could print
    for name in names[:-1]:
        assert not name.startswith("0x")
    if names[-1].startswith("0x"):
        left = int(names[-1], 16)
        assert all(left & (1 << b) == 0 for b in g.GFP_BITS.values())


def test_bundled_trace_strings_roundtrip():
    assert len(BUNDLED_STRINGS) == 32
    for s in BUNDLED_STRINGS:
        assert g.format_gfp(g.parse_gfp(s)) == s


# ---------------------------------------------------------------------------
# the real traces
# ---------------------------------------------------------------------------
def _pairs_in(path: Path) -> set[tuple[int, str]]:
    """Distinct (migratetype, gfp string) pairs of mm_page_alloc lines in a .zst trace."""
    pattern = "migratetype=-?[0-9]+ gfp_flags=[^ ]*"
    if shutil.which("zstd") and shutil.which("grep"):
        out = subprocess.run(f"zstd -dc '{path}' | LC_ALL=C grep -oE '{pattern}' | LC_ALL=C sort -u",
                             shell=True, check=True, capture_output=True, text=True).stdout
        lines = out.split("\n")
    else:
        import io
        import re

        import zstandard

        rx = re.compile(pattern)
        lines = set()
        with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
            for line in io.TextIOWrapper(r, encoding="ascii", errors="replace"):
                if "gfp_flags=" in line:
                    lines.update(rx.findall(line))
    pairs = set()
    for line in lines:
        if line:
            mt, _, flags = line.partition(" gfp_flags=")
            pairs.add((int(mt.removeprefix("migratetype=")), flags))
    return pairs


@pytest.fixture(scope="module")
def trace_pairs(shared_traces) -> set[tuple[int, str]]:
    files = sorted(shared_traces.glob("*/trace.txt.zst")) + sorted(shared_traces.glob("*/perf-script.txt.zst"))
    assert len(files) >= 4
    with ThreadPoolExecutor(max_workers=4) as ex:
        return set().union(*ex.map(_pairs_in, files))


@pytest.mark.shared
def test_every_trace_gfp_string_roundtrips(trace_pairs):
    """Every gfp string of every real capture parses and prints back identically.  The bundled
    list (from the first captures) is a sample, not the complete set: newer captures bring
    strings it lacks (GFP_TRANSHUGE_LIGHT from the mTHP and compaction workloads), and any
    capture may bring more."""
    strings = {s for _, s in trace_pairs}
    assert len(strings) >= len(BUNDLED_STRINGS)
    bad = {s: g.format_gfp(g.parse_gfp(s)) for s in strings if g.format_gfp(g.parse_gfp(s)) != s}
    assert not bad, bad


@pytest.mark.shared
def test_migratetype_matches_the_kernel_in_every_trace_line(trace_pairs):
    for mt, s in trace_pairs:
        assert g.gfp_migratetype(g.parse_gfp(s)) == mt, s


# ---------------------------------------------------------------------------
# gfp_zone
# ---------------------------------------------------------------------------
BAD = [0x3, 0x5, 0x6, 0x7, 0xB, 0xD, 0xE, 0xF]


def test_zone_table_words_by_hand():
    # x86-64: kernel zones DMA=0 DMA32=1 Normal=2 Movable=3 Device=4, GFP_ZONES_SHIFT 2
    assert g.gfp_zone_table_word(ZONES_X86_64) == (0x1320122, 2)
    # i386: DMA=0 Normal=1 HighMem=2 Movable=3, ZONES_SHIFT 2
    assert g.gfp_zone_table_word(ZONES_I386) == (0x1310121, 2)


@pytest.mark.parametrize("zones, expect", [
    (ZONES_X86_64, {0x0: Z.NORMAL, 0x1: Z.DMA, 0x2: Z.NORMAL, 0x4: Z.DMA32, 0x8: Z.NORMAL, 0x9: Z.DMA,
                    0xA: Z.MOVABLE, 0xC: Z.DMA32}),
    (ZONES_I386, {0x0: Z.NORMAL, 0x1: Z.DMA, 0x2: Z.HIGHMEM, 0x4: Z.NORMAL, 0x8: Z.NORMAL, 0x9: Z.DMA,
                  0xA: Z.MOVABLE, 0xC: Z.NORMAL}),
    (("Normal", "Movable"), {0x0: Z.NORMAL, 0x1: Z.NORMAL, 0x2: Z.NORMAL, 0x4: Z.NORMAL, 0x8: Z.NORMAL,
                             0x9: Z.NORMAL, 0xA: Z.MOVABLE, 0xC: Z.NORMAL}),
])
def test_gfp_zone_follows_the_gfp_h_table(zones, expect):
    table = g.gfp_zone_table(zones)
    for bits in range(16):
        for extra in (0, g.GFP_KERNEL | g.__GFP_COMP):
            gfp = bits | extra
            if bits in BAD:
                assert table[bits] == -1
                with pytest.raises(ConfigError, match="GFP_ZONE_BAD"):
                    g.gfp_zone(gfp, zones)
            else:
                assert g.gfp_zone(gfp, zones) == expect[bits]
                assert g.gfp_zone_nb(gfp, table) == expect[bits]


def test_gfp_zone_common_requests_x86_64():
    assert g.gfp_zone(g.GFP_KERNEL, ZONES_X86_64) == Z.NORMAL
    assert g.gfp_zone(g.GFP_HIGHUSER_MOVABLE, ZONES_X86_64) == Z.MOVABLE
    assert g.gfp_zone(g.GFP_HIGHUSER, ZONES_X86_64) == Z.NORMAL
    assert g.gfp_zone(g.GFP_DMA32 | g.GFP_KERNEL, ZONES_X86_64) == Z.DMA32
    assert g.gfp_zone(g.GFP_TRANSHUGE, ZONES_X86_64) == Z.MOVABLE


def test_zone_config_errors():
    with pytest.raises(ConfigError, match="ZONE_NORMAL"):
        g.gfp_zone_table((Z.DMA, Z.MOVABLE))
    with pytest.raises(ConfigError, match="unknown zone name"):
        g.gfp_zone(0, ("Normal", "Movable", "Lowmem"))
    with pytest.raises(ConfigError):
        g.gfp_zone(0, (2, 4, 99))


def test_is_highmem_idx():
    assert not any(g.is_highmem_idx(z, ZONES_X86_64) for z in ZONES_X86_64)
    assert g.is_highmem_idx(Z.HIGHMEM, ZONES_I386)
    assert g.is_highmem_idx(Z.MOVABLE, ZONES_I386)
    assert not g.is_highmem_idx(Z.MOVABLE, ZONES_I386, movable_zone=Z.NORMAL)
    assert not g.is_highmem_idx(Z.NORMAL, ZONES_I386)


# ---------------------------------------------------------------------------
# migratetype, compound, alloc_flags
# ---------------------------------------------------------------------------
def test_gfp_migratetype():
    assert g.gfp_migratetype(g.GFP_HIGHUSER_MOVABLE) == MigrateType.MOVABLE
    assert g.gfp_migratetype(g.GFP_KERNEL) == MigrateType.UNMOVABLE
    assert g.gfp_migratetype(g.GFP_KERNEL | g.__GFP_RECLAIMABLE) == MigrateType.RECLAIMABLE
    assert g.gfp_migratetype(g.GFP_HIGHUSER_MOVABLE, mobility_disabled=True) == MigrateType.UNMOVABLE
    assert g.gfp_to_migratetype_name(g.GFP_TRANSHUGE) == "Movable"
    assert g.gfp_to_migratetype_name(g.GFP_NOFS | g.__GFP_RECLAIMABLE, MIGRATETYPE_NAMES) == "Reclaimable"
    with pytest.raises(ConfigError, match="both"):
        g.gfp_migratetype(g.__GFP_MOVABLE | g.__GFP_RECLAIMABLE)
    assert g.gfp_migratetype_nb(g.__GFP_MOVABLE | g.__GFP_RECLAIMABLE) == 3  # the kernel's value


def test_gfp_compound():
    assert g.gfp_compound(g.GFP_KERNEL | g.__GFP_COMP, 2)
    assert not g.gfp_compound(g.GFP_KERNEL | g.__GFP_COMP, 0)
    assert not g.gfp_compound(g.GFP_KERNEL, 3)
    assert g.gfpflags_allow_blocking(g.GFP_KERNEL) and not g.gfpflags_allow_blocking(g.GFP_ATOMIC)
    with pytest.raises(InvalidOrder):
        g.gfp_compound(g.GFP_KERNEL, 11)


W_MIN, W_LOW = g.ALLOC_WMARK_MIN, g.ALLOC_WMARK_LOW
CPUSET, KSWAPD, NB, MR, HA, CMA, NOFRAG = (g.ALLOC_CPUSET, g.ALLOC_KSWAPD, g.ALLOC_NON_BLOCK, g.ALLOC_MIN_RESERVE,
                                           g.ALLOC_HIGHATOMIC, g.ALLOC_CMA, g.ALLOC_NOFRAGMENT)


@pytest.mark.parametrize("gfp, order, kw, expect", [
    (g.GFP_KERNEL, 0, {}, W_MIN | CPUSET | KSWAPD),
    (g.GFP_KERNEL, 0, {"rt_task": True}, W_MIN | CPUSET | KSWAPD | MR),
    (g.GFP_KERNEL, 0, {"defrag_mode": True}, W_MIN | CPUSET | KSWAPD | NOFRAG),
    (g.GFP_ATOMIC, 0, {}, W_MIN | MR | KSWAPD | NB),  # cpuset ignored for non-blocking __GFP_HIGH
    (g.GFP_ATOMIC, 0, {"rt_task": True}, W_MIN | MR | KSWAPD | NB),  # rt only on the blocking branch
    (g.GFP_ATOMIC, 2, {}, W_MIN | MR | KSWAPD | NB | HA),
    (g.GFP_NOWAIT, 2, {}, W_MIN | CPUSET | KSWAPD | NB),  # no HIGHATOMIC without __GFP_HIGH (6.15 fix)
    (g.GFP_ATOMIC | g.__GFP_NOMEMALLOC, 1, {}, W_MIN | MR | KSWAPD),
    (g.GFP_TRANSHUGE_LIGHT, 9, {}, W_MIN | CPUSET),
    (g.GFP_TRANSHUGE_LIGHT, 9, {"cma": True}, W_MIN | CPUSET | CMA),
    (g.GFP_HIGHUSER_MOVABLE, 0, {"cma": True}, W_MIN | CPUSET | KSWAPD | CMA),
    (g.GFP_KERNEL, 0, {"cma": True}, W_MIN | CPUSET | KSWAPD),
])
def test_gfp_to_alloc_flags(gfp, order, kw, expect):
    assert g.gfp_to_alloc_flags(gfp, order, **kw) == expect


def test_alloc_flags_values_and_names():
    assert g.format_alloc_flags(W_MIN | MR | KSWAPD | NB) == \
        "ALLOC_WMARK_MIN|ALLOC_NON_BLOCK|ALLOC_MIN_RESERVE|ALLOC_KSWAPD"
    assert g.format_alloc_flags(W_LOW | NOFRAG | 0x1000) == "ALLOC_WMARK_LOW|ALLOC_NOFRAGMENT|0x1000"
    assert (g.ALLOC_NO_WATERMARKS, g.ALLOC_OOM, g.ALLOC_CPUSET, g.ALLOC_CMA, g.ALLOC_TRYLOCK) == \
        (0x4, 0x8, 0x40, 0x80, 0x400)
    assert g.ALLOC_RESERVES == 0x238
    with pytest.raises(ConfigError):
        g.format_alloc_flags(-1)


def test_pfmemalloc_flags():
    assert g.gfp_pfmemalloc_flags(g.GFP_KERNEL) == 0
    assert g.gfp_pfmemalloc_flags(g.GFP_KERNEL | g.__GFP_MEMALLOC) == g.ALLOC_NO_WATERMARKS
    assert g.gfp_pfmemalloc_flags(g.GFP_KERNEL | g.__GFP_MEMALLOC | g.__GFP_NOMEMALLOC) == 0
    assert g.gfp_pfmemalloc_flags(g.GFP_KERNEL, pf_memalloc=True) == g.ALLOC_NO_WATERMARKS
    assert g.gfp_pfmemalloc_flags(g.GFP_KERNEL, pf_memalloc=True, in_interrupt=True) == 0
    assert g.gfp_pfmemalloc_flags(g.GFP_ATOMIC, pf_memalloc=True, in_interrupt=True,
                                  in_serving_softirq=True) == g.ALLOC_NO_WATERMARKS
    assert g.gfp_pfmemalloc_flags(g.GFP_KERNEL, oom_reserves_allowed=True) == g.ALLOC_OOM


def test_nofragment_and_fastpath():
    assert g.alloc_flags_nofragment(g.GFP_KERNEL, Z.NORMAL, ZONES_X86_64) == KSWAPD | NOFRAG
    assert g.alloc_flags_nofragment(g.GFP_KERNEL, Z.DMA32, ZONES_X86_64) == KSWAPD
    assert g.alloc_flags_nofragment(g.GFP_TRANSHUGE, Z.NORMAL, ZONES_X86_64) == NOFRAG
    assert g.alloc_flags_nofragment(g.GFP_KERNEL, Z.NORMAL, ZONES_I386) == KSWAPD  # no CONFIG_ZONE_DMA32
    assert g.alloc_flags_nofragment(g.GFP_KERNEL, Z.NORMAL, ZONES_X86_64, dma32_populated=False,
                                    nr_online_nodes=2) == KSWAPD
    assert g.alloc_flags_nofragment(g.GFP_KERNEL, Z.DMA, ZONES_I386, defrag_mode=True) == KSWAPD | NOFRAG
    assert g.fastpath_alloc_flags(g.GFP_HIGHUSER_MOVABLE, Z.NORMAL, ZONES_X86_64) == W_LOW | KSWAPD | NOFRAG
    assert g.fastpath_alloc_flags(g.GFP_HIGHUSER_MOVABLE, Z.MOVABLE, ZONES_X86_64, cma=True) == \
        W_LOW | KSWAPD | CMA


@pytest.mark.parametrize("bad", [-1, 2**32, "GFP_KERNEL", 1.0, None])
def test_semantic_api_rejects_bad_gfp(bad):
    with pytest.raises(ConfigError):
        g.gfp_to_alloc_flags(bad)
    with pytest.raises(ConfigError):
        g.gfp_zone(bad, ZONES_X86_64)


@pytest.mark.parametrize("order", [-1, 11, 2.0, True])
def test_alloc_flags_rejects_bad_order(order):
    with pytest.raises(InvalidOrder):
        g.gfp_to_alloc_flags(g.GFP_KERNEL, order)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, g.__GFP_BITS_MASK), st.integers(0, 10), st.booleans())
def test_alloc_flags_invariants(gfp, order, rt):
    f = g.gfp_to_alloc_flags(gfp, order, rt_task=rt)
    assert f & g.ALLOC_WMARK_MASK == g.ALLOC_WMARK_MIN
    assert bool(f & KSWAPD) == bool(gfp & g.__GFP_KSWAPD_RECLAIM)
    blocking = bool(gfp & g.__GFP_DIRECT_RECLAIM)
    assert bool(f & NB) == (not blocking and not gfp & g.__GFP_NOMEMALLOC)
    assert bool(f & HA) == bool(f & NB and f & MR and order > 0)
    assert bool(f & MR) == bool(gfp & g.__GFP_HIGH or (blocking and rt))
    assert bool(f & CPUSET) == (blocking or not gfp & g.__GFP_HIGH)


# ---------------------------------------------------------------------------
# kernels: compiled and interpreted agree
# ---------------------------------------------------------------------------
def test_kernels_agree_with_python_api():
    """Exhaustive over the bits the allocator kernels read (named *kernels* so the
    NUMBA_DISABLE_JIT run below executes it as plain Python as well)."""
    bits = [g.__GFP_DMA, g.__GFP_HIGHMEM, g.__GFP_DMA32, g.__GFP_MOVABLE, g.__GFP_RECLAIMABLE, g.__GFP_HIGH,
            g.__GFP_DIRECT_RECLAIM, g.__GFP_KSWAPD_RECLAIM, g.__GFP_NOMEMALLOC, g.__GFP_MEMALLOC, g.__GFP_COMP]
    table = g.gfp_zone_table(ZONES_X86_64)
    for combo in range(1 << len(bits)):
        gfp = sum(b for i, b in enumerate(bits) if combo >> i & 1)
        z = int(g.gfp_zone_nb(gfp, table))
        if z >= 0:
            assert z == g.gfp_zone(gfp, ZONES_X86_64)
        for order in (0, 3):
            f = g.gfp_to_alloc_flags_nb(gfp, order, True, False, False)
            assert f == g.gfp_to_alloc_flags(gfp, order, cma=True)
            assert g.gfp_compound_nb(gfp, order) == bool(order and gfp & g.__GFP_COMP)
        assert g.fastpath_alloc_flags_nb(gfp, 2, True, False, False) & g.ALLOC_WMARK_MASK == g.ALLOC_WMARK_LOW
        assert g.gfp_pfmemalloc_flags_nb(gfp, False, False, False, False) == (
            g.ALLOC_NO_WATERMARKS if gfp & g.__GFP_MEMALLOC and not gfp & g.__GFP_NOMEMALLOC else 0)
    assert isinstance(table, np.ndarray) and table.dtype == np.int64


def test_numba_disabled_run():
    """The numba kernels of gfp.py and vmstat.py also run as plain Python: the tests
    named ``*kernels*`` of both modules, again under NUMBA_DISABLE_JIT=1."""
    env = subprocess_env(jit=False)  # this tree's src/ first, as in every no-JIT run (tests/nojit.py)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", "kernels",
                        str(REPO / "tests" / "test_gfp.py"), str(REPO / "tests" / "test_vmstat.py")],
                       env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout
