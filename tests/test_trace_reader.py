"""Tests of the kmem trace readers and the ftrace writer (memdesc.trace.reader / writer).

Expected values come from an independent oracle: a few regular expressions applied
line by line in Python (:func:`oracle`), written from the kernel's print formats, not
from the numba parser.  gfp strings are mapped by memdesc.mm.gfp.parse_gfp in both.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memdesc.errors import FormatError
from memdesc.mm.gfp import parse_gfp
from memdesc.trace import cache as trace_cache
from memdesc.trace.events import (
    ALLOC,
    ALLOC_ZONE_LOCKED,
    EVENT_BY_NAME,
    EVENT_NAMES,
    EXTFRAG,
    FREE,
    FREE_BATCHED,
    NUMPY_DTYPES,
    PCPU_DRAIN,
    SCHEMA,
)
from memdesc.trace.reader import (
    TraceReadResult,
    detect_format,
    parse_trace_text,
    read_trace,
    to_numpy_columns,
)
from memdesc.trace.writer import write_ftrace
from nojit import run_json

DATA = Path(__file__).resolve().parent / "data" / "trace"
FTRACE = DATA / "ftrace-header.txt"
PERF = DATA / "perf-script.txt"
TRACECMD = DATA / "trace-cmd-report.txt"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory (never the user's)."""
    monkeypatch.setenv("MEMDESC_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------
# the oracle
# ------------------------------------------------------------------------------
_ORACLE_FTRACE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:[^\s\d]\S*\s+)?(?P<sec>\d+)\.(?P<frac>\d+):"
    r"\s+(?P<event>\S+):(?P<info>.*)$")
_ORACLE_PERF = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?:\d+/)?(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<sec>\d+)\.(?P<frac>\d+):"
    r"\s+(?P<event>\S+):(?P<info>.*)$")
_NULL_PAGES = {"(null)", "(nil)", "0000000000000000", "0x0", "0"}


def oracle(text: str, perf: bool = False) -> list[dict]:
    """Rows expected from a trace text, by regular expressions (slow, independent)."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = (_ORACLE_PERF if perf else _ORACLE_FTRACE).match(line)
        if m is None:
            continue
        event = m["event"].removeprefix("kmem:")
        if event not in EVENT_BY_NAME:
            continue
        code = EVENT_BY_NAME[event]
        f = dict(re.findall(r"(\w+)=\s*(\S+)", m["info"]))
        pfn = int(f["pfn"], 16) if f["pfn"].startswith("0x") else int(f["pfn"])
        if code in (ALLOC, ALLOC_ZONE_LOCKED) and pfn == 0 and f.get("page", "0") in _NULL_PAGES:
            pfn = -1
        extfrag = code == EXTFRAG
        rows.append({
            "line": lineno, "event": code, "cpu": int(m["cpu"]),
            "ts_ns": int(m["sec"]) * 10**9 + int(m["frac"].ljust(9, "0")),
            "pid": int(m["pid"]), "pfn": pfn,
            "order": int(f["alloc_order"] if extfrag else f.get("order", 0)),
            "gfp": parse_gfp(f["gfp_flags"]) if "gfp_flags" in f else 0,
            "migratetype": int(f.get("alloc_migratetype" if extfrag else "migratetype", -1)),
            "percpu_refill": int(f.get("percpu_refill", -1)),
            "fallback_order": int(f.get("fallback_order", -1)),
            "fallback_migratetype": int(f.get("fallback_migratetype", -1)),
            "fragmenting": int(f.get("fragmenting", -1)),
            "change_ownership": int(f.get("change_ownership", -1)),
            "comm": m["comm"].strip(),
        })
    return rows


def assert_matches_oracle(df: pl.DataFrame, rows: list[dict], comm: bool = False) -> None:
    assert df.height == len(rows)
    for name in SCHEMA:
        assert df[name].to_list() == [r[name] for r in rows], name
    if comm:
        assert df["comm"].cast(pl.String).to_list() == [r["comm"] for r in rows]


def frame_equal(a: pl.DataFrame, b: pl.DataFrame, skip=("line",)) -> bool:
    return a.drop(list(skip)).equals(b.drop(list(skip)))


# ------------------------------------------------------------------------------
# real fixtures
# ------------------------------------------------------------------------------
@pytest.mark.parametrize("path,fmt,perf", [(FTRACE, "ftrace", False), (PERF, "perf", True),
                                           (TRACECMD, "trace-cmd", False)])
def test_fixture_matches_oracle(path, fmt, perf):
    res = read_trace(path, comm=True, cache=False)
    text = path.read_text()
    assert res.format == fmt
    assert res.lines == len(text.splitlines())
    assert res.malformed == {} and res.unknown_events == {}
    assert_matches_oracle(res.df, oracle(text, perf), comm=True)
    assert res.skipped + res.events == res.lines
    assert list(res.df.columns) == [*SCHEMA, "comm"]
    assert dict(zip(res.df.columns, res.df.dtypes, strict=True)) == {**SCHEMA, "comm": pl.Categorical()}


def test_fixtures_cover_every_event_and_awkward_task_names():
    names = set()
    seen = np.zeros(len(EVENT_NAMES), dtype=int)
    for path in (FTRACE, PERF, TRACECMD):
        res = read_trace(path, comm=True, cache=False)
        seen += np.array(list(res.event_counts().values()))
        names |= set(res.df["comm"].cast(pl.String).to_list())
    assert (seen > 0).all()
    assert {"<...>", "memfd:sealed-91", "kworker/u8:1", "kworker/1:0-vir", "<idle>"} <= names


def test_header_is_optional():
    text = FTRACE.read_text()
    body = "\n".join(x for x in text.splitlines() if not x.startswith("#")) + "\n"
    with_header = parse_trace_text(text)
    without = parse_trace_text(body)
    assert frame_equal(with_header.df, without.df)
    assert (with_header.df["line"] - without.df["line"]).unique().to_list() == [12]


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_inputs_equal_plain(tmp_path, compress):
    raw = FTRACE.read_bytes()
    path = tmp_path / ("t.gz" if compress == "gzip" else "t.zst")
    path.write_bytes(gzip.compress(raw) if compress == "gzip" else zstandard.ZstdCompressor().compress(raw))
    plain = read_trace(FTRACE, cache=False)
    packed = read_trace(path, cache=False)
    assert packed.compression == compress
    assert packed.df.equals(plain.df)


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path):
    raw = PERF.read_bytes()
    half = raw.index(b"\n", len(raw) // 2) + 1
    z = tmp_path / "two.zst"
    cz = zstandard.ZstdCompressor()
    z.write_bytes(cz.compress(raw[:half]) + cz.compress(raw[half:]))
    g = tmp_path / "two.gz"
    g.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    plain = read_trace(PERF, cache=False).df
    assert read_trace(z, cache=False).df.equals(plain)
    assert read_trace(g, cache=False).df.equals(plain)


def test_tiny_blocks_and_thread_counts_agree(tmp_path):
    """Block boundaries fall mid-line everywhere: the carry-over must not lose or split a line."""
    full = read_trace(FTRACE, cache=False, workers=1)
    for block in (64, 1000, 4096):
        for workers in (1, 2, 3):
            res = read_trace(FTRACE, cache=False, workers=workers, block_size=block)
            assert res.df.equals(full.df) and res.lines == full.lines
    text = FTRACE.read_text()
    assert parse_trace_text(text, block_size=100, workers=2).df.equals(full.df)
    z = tmp_path / "t.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(FTRACE.read_bytes()))
    assert read_trace(z, cache=False, block_size=333).df.equals(full.df)


def test_crlf_and_missing_final_newline():
    text = PERF.read_text()
    crlf = text.replace("\n", "\r\n")
    assert frame_equal(parse_trace_text(crlf).df, parse_trace_text(text).df, skip=())
    assert parse_trace_text(text.rstrip("\n")).df.equals(parse_trace_text(text).df)


# ------------------------------------------------------------------------------
# line shapes (synthetic lines, each in a documented real format)
# ------------------------------------------------------------------------------
# reference/03 §1.1: a 2021 linux-mm posting (decimal pfn, patch-added nr_free=)
OLD_ALLOC = ("           <...>-22275 [006] ....   889.213383: mm_page_alloc: page=00000000d2be5665 "
             "pfn=970744 order=0 migratetype=0 nr_free=3650 gfp_flags=GFP_HIGHUSER|__GFP_ZERO")
# kmem.h before 3.3: mm_page_free_direct, mm_pagevec_free (cold=), zone_locked/pcpu_drain with cpu=
OLD_NAMES = """\
            bash-1234  [000] ....   100.000001: mm_page_free_direct: page=ffffea0000c43f88 pfn=802815 order=0
            bash-1234  [000] ....   100.000002: mm_pagevec_free: page=ffffea0000c43fc0 pfn=802816 order=0 cold=1
            bash-1234  [000] ....   100.000003: mm_page_alloc_zone_locked: page=ffffea0000c44000 pfn=802817 order=0 migratetype=1 cpu=0 percpu_refill=1
            bash-1234  [000] ....   100.000004: mm_page_pcpu_drain: page=ffffea0000c44040 pfn=802818 order=0 cpu=0 migratetype=1
"""  # noqa: E501


def test_decimal_pfns_and_old_event_names():
    res = parse_trace_text(OLD_ALLOC + "\n" + OLD_NAMES)
    df = res.df
    assert res.malformed == {}
    assert df["event"].to_list() == [ALLOC, FREE, FREE_BATCHED, ALLOC_ZONE_LOCKED, PCPU_DRAIN]
    assert df["pfn"].to_list() == [970744, 802815, 802816, 802817, 802818]
    assert df["pid"].to_list()[0] == 22275 and df["cpu"].to_list()[0] == 6
    assert df["gfp"][0] == parse_gfp("GFP_HIGHUSER|__GFP_ZERO")
    assert df["percpu_refill"].to_list() == [-1, -1, -1, 1, -1]
    assert df["migratetype"].to_list() == [0, -1, -1, 1, 1]
    assert_matches_oracle(df, oracle(OLD_ALLOC + "\n" + OLD_NAMES))


FAILED = """\
           a.out-100     [001] d..1.   10.000001: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE
           a.out-100     [001] ....    10.000002: mm_page_alloc: page=(null) pfn=0x0 order=3 migratetype=0 gfp_flags=GFP_KERNEL
           a.out-100     [001] ....    10.000003: mm_page_alloc: page=          (null) pfn=0 order=2 migratetype=0 gfp_flags=GFP_KERNEL
           a.out-100     [001] .....   10.000004: mm_page_free: page=ffffea0000000000 pfn=0x0 order=0
           a.out-100     [001] .....   10.000005: mm_page_alloc: page=00000000deadbeef pfn=0x0 order=0 migratetype=0 gfp_flags=GFP_KERNEL
"""  # noqa: E501


def test_failed_allocation_is_pfn_minus_one_not_pfn_zero():
    res = parse_trace_text(FAILED)
    assert res.malformed == {}
    # the kernel prints a failure as a NULL page with pfn 0 (kmem.h: pfn != -1UL ? pfn : 0);
    # a free of pfn 0, or an allocation whose page is not NULL, really is pfn 0
    assert res.df["pfn"].to_list() == [-1, -1, -1, 0, 0]
    assert res.df["order"].to_list() == [9, 3, 2, 0, 0]
    perf = "       a.out   100 [001]    10.000001:   kmem:mm_page_alloc: page=(nil) pfn=0x0 order=1 migratetype=0 gfp_flags=GFP_KERNEL\n"  # noqa: E501
    assert parse_trace_text(perf).df["pfn"].to_list() == [-1]


TASK_NAMES = """\
 Web Content-4567    [000] .....   50.000001: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0
    kworker/u8:1-123     [001] d..2.   50.000002: mm_page_free: page=ffffea0000000080 pfn=0x2 order=1
           <...>-22275   [001] .....   50.000003: mm_page_free: page=ffffea00000000c0 pfn=0x3 order=2
  CPU 0/KVM-999     [001] .....   50.000004: mm_page_free: page=ffffea0000000100 pfn=0x4 order=3
 a [1] b-77      [000] .....   50.000005: mm_page_free: page=ffffea0000000140 pfn=0x5 order=4
     bash-1234    (   1234) [000] .....   50.000006: mm_page_free: page=ffffea0000000180 pfn=0x6 order=5
"""
PERF_NAMES = """\
     Web Content  4567 [000]    50.000001:        kmem:mm_page_free: page=0x1 pfn=0x1 order=0
 kworker/1:0-vir  4379 [001]    50.000002:        kmem:mm_page_free: page=0x2 pfn=0x2 order=1
       CPU 0/KVM  5555/5560 [001]    50.000003:        kmem:mm_page_free: page=0x3 pfn=0x3 order=2
"""


def test_task_names_with_spaces_dashes_brackets():
    res = parse_trace_text(TASK_NAMES, comm=True)
    assert res.malformed == {} and res.format == "ftrace"
    assert res.df["comm"].cast(pl.String).to_list() == [
        "Web Content", "kworker/u8:1", "<...>", "CPU 0/KVM", "a [1] b", "bash"]
    assert res.df["pid"].to_list() == [4567, 123, 22275, 999, 77, 1234]
    assert res.df["cpu"].to_list() == [0, 1, 1, 1, 0, 0]
    assert res.df["pfn"].to_list() == [1, 2, 3, 4, 5, 6]
    p = parse_trace_text(PERF_NAMES, comm=True)
    assert p.format == "perf" and p.malformed == {}
    assert p.df["comm"].cast(pl.String).to_list() == ["Web Content", "kworker/1:0-vir", "CPU 0/KVM"]
    assert p.df["pid"].to_list() == [4567, 4379, 5560]  # pid/tid: the tid is the common_pid


MIXED = """\
# tracer: nop
            bash-1    [000] .....   1.000001: sched_switch: prev_comm=bash prev_pid=1 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
            bash-1    [000] .....   1.000002: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0
            bash-1    [000] .....   1.000003: kmalloc: call_site=kmem_cache_alloc+0x1 ptr=ffff888100000000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL
CPU:1 [LOST 1234 EVENTS]
            bash-1    [000] .....   1.000004: sched_switch: prev_comm=bash prev_pid=1 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120

            bash-1    [000] .....   1.000005: mm_page_free: page=ffffea0000000080 pfn=0x2 order=0
"""  # noqa: E501


def test_unknown_events_counted_and_skipped_lost_markers_summed():
    res = parse_trace_text(MIXED)
    assert res.unknown_events == {"sched_switch": 2, "kmalloc": 1}
    assert res.df["pfn"].to_list() == [1, 2]
    assert res.df["line"].to_list() == [3, 8]
    assert res.lost_events == 1234 and res.lost_markers == 1
    assert res.malformed == {}
    assert res.lines == 8 == res.skipped + sum(res.unknown_events.values()) + res.lost_markers + res.events
    perf = "       bash   1 [000]     1.000001:     sched:sched_switch: prev_comm=bash prev_pid=1\n"
    assert parse_trace_text(perf, fmt="perf").unknown_events == {"sched:sched_switch": 1}


# perf script of a `perf record -g` capture prints the call chain under each sample;
# ftrace's stacktrace option prints "<stack trace>" and " => symbol" lines
PERF_CALLCHAIN = """\
            perf 14187 [001]  1174.983426:             kmem:mm_page_alloc: page=0x119984 pfn=0x119984 order=0 migratetype=0 gfp_flags=GFP_KERNEL
\tffffffff8134a1b2 __alloc_pages_noprof+0x262 ([kernel.kallsyms])
\tffffffff8134a1b2 alloc_pages_mpol+0x9a ([kernel.kallsyms])
\t    7f0a12345678 [unknown] (/usr/lib/libc.so.6)

            perf 14187 [001]  1174.983477:             kmem:mm_page_free: page=0x119985 pfn=0x119985 order=0
"""  # noqa: E501
FTRACE_STACK = """\
            bash-1    [000] .....   1.000002: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0
            bash-1    [000] .....   1.000003: <stack trace>
 => free_unref_folios
 => folios_put_refs
            bash-1    [000] .....   1.000005: mm_page_free: page=ffffea0000000080 pfn=0x2 order=0
"""


def test_stack_traces_are_skipped():
    res = parse_trace_text(PERF_CALLCHAIN)
    assert res.format == "perf" and res.malformed == {}
    assert res.df["pfn"].to_list() == [0x119984, 0x119985] and res.skipped == 4
    res = parse_trace_text(FTRACE_STACK)
    assert res.malformed == {} and res.df["pfn"].to_list() == [1, 2]
    # an unindented hex word is not a call chain
    assert parse_trace_text("ffffffff8134a1b2 __alloc_pages\n").malformed == {"not_an_event": 1}


def test_trace_cmd_preamble_and_dropped_events():
    text = ("version = 6\nCPU 3 is empty\ncpus=4\nCPU:2 [77 EVENTS DROPPED]\nCPU:0 [EVENTS DROPPED]\n"
            + "\n".join(TRACECMD.read_text().splitlines()[1:4]) + "\n")
    res = parse_trace_text(text)
    assert res.format == "trace-cmd"
    assert res.malformed == {} and res.events == 3
    assert res.lost_markers == 2 and res.lost_events == 77


def test_gfp_raw_hex_none_and_unknown_flag():
    base = "       x-1     [000] .....   2.000000: mm_page_alloc: page=ffffea0000000040 pfn=0x1 order=0 migratetype=0 "
    text = (base + "gfp_flags=0x140cca\n" + base + "gfp_flags=none\n" + base + "gfp_flags=GFP_KERNEL|0x1000000\n"
            + base + "gfp_flags=GFP_BOGUS|__GFP_COMP\n")
    res = parse_trace_text(text)
    assert res.df["gfp"].to_list() == [0x140CCA, 0, parse_gfp("GFP_KERNEL") | 0x1000000]
    assert res.malformed == {"bad_field": 1}
    assert res.examples[0][:2] == (4, "bad_field")
    with pytest.raises(FormatError, match=r"<text>:4: bad gfp_flags: .*GFP_BOGUS"):
        parse_trace_text(text, strict=True)


def test_gfp_table_of_another_kernel():
    """An old kernel's flag name parses with that kernel's __def_gfpflag_names table."""
    from memdesc.mm.gfp import GFPFLAG_NAMES

    line = ("  x-1 [000] ....  2.000000: mm_page_alloc: page=ffffea0000000040 pfn=12 order=0 "
            "migratetype=0 gfp_flags=GFP_KERNEL|GFP_NOTRACK\n")
    assert parse_trace_text(line).malformed == {"bad_field": 1}
    names = (*GFPFLAG_NAMES, (1 << 21, "GFP_NOTRACK"))  # 4.x: ___GFP_NOTRACK was 0x200000
    res = parse_trace_text(line, gfp_names=names)
    assert res.malformed == {} and res.df["gfp"][0] == parse_gfp("GFP_KERNEL") | (1 << 21)


def test_timestamps_ns_precision_and_no_flags_column():
    text = ("   x-1 [000]   5.123456789: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0\n"
            "   x-1 [000] .N.1.  5.5: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0\n"
            "   x-1 [000]  123456789012: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0\n")
    res = parse_trace_text(text)
    assert res.malformed == {}
    assert res.df["ts_ns"].to_list() == [5_123_456_789, 5_500_000_000, 123456789012]


# ------------------------------------------------------------------------------
# malformed input
# ------------------------------------------------------------------------------
GOOD = "            bash-7    [001] .....   3.000001: mm_page_free: page=ffffea0000000040 pfn=0x1 order=0"
ALLOC_LINE = ("            bash-7    [001] .....   3.000002: mm_page_alloc: page=ffffea0000000080 pfn=0x2 "
              "order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP")
BAD_LINES = {
    "garbage \x01\x02 trailing": "not_an_event",
    "Traceback (most recent call last):": "not_an_event",
    ALLOC_LINE[:60]: "truncated",                                # cut inside the header/event name
    ALLOC_LINE[:115]: "truncated",                               # cut after order=0 mig
    ALLOC_LINE.split(" gfp_flags")[0]: "truncated",              # cut before gfp_flags
    "            bash-7    [001] .....   3.000001: mm_page_alloc: page=ffffea0000000080 pfn=": "truncated",
    GOOD.replace("pfn=0x1", "pfn=0xZZ"): "bad_field",
    GOOD.replace("pfn=0x1", "pfn=twelve"): "bad_field",
    GOOD.replace("order=0", "order=99"): "bad_field",
    GOOD.replace("order=0", "order=-1"): "bad_field",
    GOOD.replace("3.000001", "3.0x0001"): "bad_field",
    GOOD.replace("pfn=0x1 ", "pfn=0x1 junk "): "bad_field",
    GOOD.replace("pfn=0x1 ", ""): "missing_field",
    ALLOC_LINE.replace(" order=0", ""): "missing_field",
}


def test_malformed_lines_counted_by_kind():
    text = "\n".join([GOOD, *BAD_LINES, ALLOC_LINE]) + "\n"
    res = parse_trace_text(text)
    expected: dict[str, int] = {}
    for kind in BAD_LINES.values():
        expected[kind] = expected.get(kind, 0) + 1
    assert res.malformed == expected
    assert res.df["line"].to_list() == [1, len(BAD_LINES) + 2]
    assert [e[1] for e in res.examples] == list(BAD_LINES.values())
    assert [e[0] for e in res.examples] == list(range(2, len(BAD_LINES) + 2))
    assert res.n_malformed == len(BAD_LINES)
    assert res.lines == res.skipped + res.events + res.n_malformed


@pytest.mark.parametrize("bad,kind", list(BAD_LINES.items()))
def test_strict_raises_with_file_line_and_text(tmp_path, bad, kind):
    path = tmp_path / "t.txt"
    path.write_text(f"{GOOD}\n{GOOD}\n{bad}\n{GOOD}\n")
    with pytest.raises(FormatError) as info:
        read_trace(path, strict=True, cache=False)
    err = info.value
    assert err.path == str(path) and err.lineno == 3 and err.line == bad
    assert f"{path}:3:" in str(err)
    lenient = read_trace(path, cache=False)
    assert lenient.malformed == {kind: 1} and lenient.events == 3


def test_wrong_format_override_reports_every_line():
    res = read_trace(PERF, fmt="ftrace", cache=False)
    assert res.events == 0 and res.malformed == {"not_an_event": res.lines}
    with pytest.raises(FormatError, match="not a ftrace event line"):
        read_trace(PERF, fmt="ftrace", strict=True, cache=False)
    assert read_trace(FTRACE, fmt="trace-cmd", cache=False).df.equals(read_trace(FTRACE, cache=False).df)
    with pytest.raises(FormatError, match="unknown trace format"):
        read_trace(FTRACE, fmt="systemtap")


def test_detect_format():
    assert detect_format(FTRACE.read_bytes()) == "ftrace"
    assert detect_format(PERF.read_bytes()) == "perf"
    assert detect_format(TRACECMD.read_bytes()) == "trace-cmd"
    no_preamble = "\n".join(TRACECMD.read_text().splitlines()[1:])
    assert detect_format(no_preamble) == "trace-cmd"
    assert detect_format("") == "ftrace"


def _truncated_zst(tmp_path: Path) -> tuple[Path, bytes]:
    # enough text for several 128 KiB zstd blocks in one frame (the copies differ in their
    # pfns, so that they do not compress to nothing), then cut at 2/3 of the frame
    text = FTRACE.read_text()
    raw = "".join(re.sub(r"pfn=0x([0-9a-f]+)", lambda m, k=k: f"pfn={int(m[1], 16) + 7 * k:#x}", text)
                  for k in range(40)).encode()
    packed = zstandard.ZstdCompressor(level=3).compress(raw)
    path = tmp_path / "cut.zst"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    return path, raw


def test_truncated_zst_lenient_parses_the_decoded_prefix(tmp_path):
    path, raw = _truncated_zst(tmp_path)
    res = read_trace(path, cache=False)
    assert res.malformed.get("truncated_stream") == 1
    assert "truncated" in res.stream_error
    full = parse_trace_text(raw)
    assert 0 < res.events < full.events
    assert res.df.equals(full.df.head(res.events))
    # the partial last line is held back and counted, not parsed as a (wrong) event
    assert res.malformed.get("truncated", 0) <= 1
    assert res.lines == res.skipped + res.events + res.malformed.get("truncated", 0)


def test_truncated_zst_strict_is_a_clear_error(tmp_path):
    path, _ = _truncated_zst(tmp_path)
    with pytest.raises(FormatError, match=r"truncated"):
        read_trace(path, strict=True, cache=False)


def test_truncated_gzip_and_corrupt_zstd(tmp_path):
    raw = FTRACE.read_bytes() * 4
    g = tmp_path / "cut.gz"
    packed = gzip.compress(raw)
    g.write_bytes(packed[: len(packed) // 2])
    res = read_trace(g, cache=False)
    assert res.malformed.get("truncated_stream") == 1 and res.events > 0
    bad = tmp_path / "bad.zst"
    z = bytearray(zstandard.ZstdCompressor().compress(raw))
    z[len(z) // 2: len(z) // 2 + 64] = b"\xff" * 64
    bad.write_bytes(bytes(z))
    res = read_trace(bad, cache=False)
    assert res.malformed.get("truncated_stream") == 1 and "corrupt" in res.stream_error
    with pytest.raises(FormatError):
        read_trace(bad, strict=True, cache=False)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    res = read_trace(empty, cache=False)
    assert res.events == 0 and res.lines == 0 and list(res.df.columns) == list(SCHEMA)
    with pytest.raises(FormatError, match="no such trace file"):
        read_trace(tmp_path / "nope.txt")


# ------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------
def test_cache_hit_miss_and_invalidation(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(FTRACE.read_bytes())
    first = read_trace(path)
    assert not first.from_cache
    second = read_trace(path)
    assert second.from_cache and second.df.equals(first.df)
    assert second.lines == first.lines and second.format == first.format
    assert read_trace(path, comm=True).from_cache is False  # options are part of the key
    # a changed file (size, mtime) is a miss
    path.write_bytes(FTRACE.read_bytes() + GOOD.encode() + b"\n")
    third = read_trace(path)
    assert not third.from_cache and third.events == first.events + 1
    assert trace_cache.clear() >= 2


def test_cached_malformed_file_still_raises_in_strict_mode(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(f"{GOOD}\ngarbage\n")
    assert read_trace(path).malformed == {"not_an_event": 1}
    assert read_trace(path).from_cache
    with pytest.raises(FormatError, match=":2:"):
        read_trace(path, strict=True)


def test_unreadable_cache_entry_is_ignored(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(PERF.read_bytes())
    read_trace(path)
    for entry in trace_cache.cache_dir().glob("*.parquet"):
        entry.write_bytes(b"not parquet")
    again = read_trace(path)
    assert not again.from_cache and again.events == 225


# ------------------------------------------------------------------------------
# numpy export
# ------------------------------------------------------------------------------
def test_to_numpy_columns():
    df = read_trace(FTRACE, cache=False, comm=True).df
    cols = to_numpy_columns(df)
    assert set(cols) == set(NUMPY_DTYPES)
    for name, arr in cols.items():
        assert arr.dtype == np.dtype(NUMPY_DTYPES[name]) and arr.flags.c_contiguous
        assert arr.tolist() == df[name].to_list()
    sub = to_numpy_columns(df, ["pfn", "order"])
    assert list(sub) == ["pfn", "order"]
    with pytest.raises(FormatError):
        to_numpy_columns(df, ["comm"])


# ------------------------------------------------------------------------------
# writer round trip
# ------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".txt", ".txt.gz", ".txt.zst"])
@pytest.mark.parametrize("fixture", [FTRACE, PERF, TRACECMD])
def test_write_ftrace_round_trip(tmp_path, fixture, suffix):
    res = read_trace(fixture, comm=True, cache=False)
    out = tmp_path / f"out{suffix}"
    assert write_ftrace(res.df, out, header=True) == res.events
    back = read_trace(out, comm=True, cache=False)
    assert back.format == "ftrace" and back.malformed == {} and back.unknown_events == {}
    assert frame_equal(back.df, res.df)
    # without comm the writer prints "<...>", as ftrace does for an unrecorded task name
    write_ftrace(res.df.drop("comm"), out)
    assert set(read_trace(out, comm=True, cache=False).df["comm"].cast(pl.String)) == {"<...>"}


def test_written_lines_have_the_exact_ftrace_shape(tmp_path):
    text = FTRACE.read_text()
    real = [x for x in text.splitlines() if not x.startswith("#")]
    res = parse_trace_text(text, comm=True)
    out = tmp_path / "o.txt"
    write_ftrace(res.df, out)
    written = out.read_text().splitlines()
    # everything but the irq flags and the (hashed) page pointer is byte-identical
    def strip(line):
        line = re.sub(r"\] \S+ +(\d+\.\d+:)", r"] F \1", line)
        return re.sub(r"page=\S+", "page=P", line)
    assert [strip(x) for x in written] == [strip(x) for x in real]


def test_write_failed_allocation_and_validation(tmp_path):
    res = parse_trace_text(FAILED)
    out = tmp_path / "f.txt"
    write_ftrace(res.df, out)
    text = out.read_text()
    assert text.count("page=0000000000000000 pfn=0x0 ") == 3
    assert frame_equal(read_trace(out, cache=False).df, res.df)
    bad = res.df.with_columns(pl.lit(-5, dtype=pl.Int64).alias("ts_ns"))
    with pytest.raises(FormatError, match="negative timestamp"):
        write_ftrace(bad, out)
    with pytest.raises(FormatError, match="without columns"):
        write_ftrace(res.df.drop("gfp"), out)


_GFP_BITS = st.integers(min_value=0, max_value=(1 << 25) - 1)


@st.composite
def trace_frames(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    rows = []
    for _ in range(n):
        ev = draw(st.sampled_from(range(len(EVENT_NAMES))))
        is_alloc = ev in (ALLOC, ALLOC_ZONE_LOCKED)
        row = {"event": ev, "cpu": draw(st.integers(0, 1023)),
               "ts_ns": draw(st.integers(0, 10**15)) * draw(st.sampled_from([1, 1000])),
               "pid": draw(st.integers(0, 4_194_304)),
               "pfn": draw(st.integers(-1 if is_alloc else 0, 1 << 40)),
               "order": draw(st.integers(0, 10)),
               "gfp": draw(_GFP_BITS) if ev == ALLOC else 0,
               "migratetype": draw(st.integers(0, 5)) if ev in (ALLOC, ALLOC_ZONE_LOCKED, PCPU_DRAIN, EXTFRAG)
               else -1,
               "percpu_refill": draw(st.integers(0, 1)) if ev == ALLOC_ZONE_LOCKED else -1}
        for col in ("fallback_order", "fallback_migratetype", "fragmenting", "change_ownership"):
            row[col] = draw(st.integers(0, 10)) if ev == EXTFRAG else -1
        if ev == FREE_BATCHED:
            row["order"] = 0
        rows.append(row)
    cols = {name: pl.Series(name, [r[name] for r in rows] if name != "line" else list(range(1, n + 1)),
                            dtype=dt) for name, dt in SCHEMA.items()}
    return pl.DataFrame(cols)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=trace_frames())
def test_write_read_round_trip_property(tmp_path, df):
    out = tmp_path / "p.txt.zst"
    write_ftrace(df, out)
    back = read_trace(out, cache=False)
    assert back.malformed == {}
    assert frame_equal(back.df, df)


# ------------------------------------------------------------------------------
# the parser kernel without the JIT
# ------------------------------------------------------------------------------
_NOJIT_SCRIPT = r"""
import json, sys
from memdesc.trace.reader import parse_trace_text
from memdesc.trace.writer import write_ftrace
text = sys.stdin.read()
res = parse_trace_text(text, comm=True)
write_ftrace(res.df, sys.argv[1])
print(json.dumps({"rows": res.df.drop("comm").rows(), "comm": res.df["comm"].cast(str).to_list(),
                  "malformed": res.malformed, "unknown": res.unknown_events, "lost": res.lost_events,
                  "written": open(sys.argv[1]).read()}))
"""


def test_kernels_agree_without_jit(tmp_path):
    lines = PERF.read_text().splitlines()[:40]
    text = "\n".join([*lines, *TASK_NAMES.splitlines(), *FAILED.splitlines(), *MIXED.splitlines(),
                      *BAD_LINES, OLD_ALLOC, *FTRACE_STACK.splitlines(), *PERF_CALLCHAIN.splitlines()]) + "\n"
    text_ftrace = "\n".join(x for x in text.splitlines() if "kmem:" not in x) + "\n"
    got = run_json(_NOJIT_SCRIPT, jit=False, args=[tmp_path / "w.txt"], input=text_ftrace, timeout=None)
    res = parse_trace_text(text_ftrace, comm=True)
    write_ftrace(res.df, tmp_path / "jit.txt")
    assert got["rows"] == [list(r) for r in res.df.drop("comm").rows()]
    assert got["comm"] == res.df["comm"].cast(pl.String).to_list()
    assert got["malformed"] == res.malformed and got["unknown"] == res.unknown_events
    assert got["lost"] == res.lost_events
    assert got["written"] == (tmp_path / "jit.txt").read_text()


# ------------------------------------------------------------------------------
# the full real captures
# ------------------------------------------------------------------------------
def _text(path: Path) -> str:
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read().decode()


@pytest.mark.shared
@pytest.mark.parametrize("name", ["build", "anon", "pagecache"])
def test_full_capture_counts_equal_text_counts(shared_traces, name):
    path = shared_traces / name / "trace.txt.zst"
    res = read_trace(path, cache=False)
    text = _text(path)
    assert res.format == "ftrace" and res.compression == "zstd"
    assert res.malformed == {} and res.unknown_events == {} and res.lost_markers == 0
    assert res.stream_error is None
    assert res.lines == text.count("\n")
    # independent count: the event name as ftrace prints it, " <name>: "
    assert res.event_counts() == {n: text.count(f" {n}: ") for n in EVENT_NAMES}
    # spot-check 2000 rows against the oracle
    lines = text.splitlines()
    pick = np.random.default_rng(1).choice(len(lines), size=2000, replace=False)
    pick.sort()
    rows = oracle("\n".join(lines[i] for i in pick))
    sub = res.df[pick.tolist()]
    for r, line in zip(rows, pick.tolist(), strict=True):
        r["line"] = line + 1
    assert_matches_oracle(sub, rows)


@pytest.mark.shared
def test_perf_sample_counts_equal_text_counts(shared_traces):
    path = shared_traces / "perf-sample" / "perf-script.txt.zst"
    res = read_trace(path, cache=False, comm=True)
    text = _text(path)
    assert res.format == "perf" and res.malformed == {} and res.unknown_events == {}
    assert res.lines == text.count("\n")
    assert res.event_counts() == {n: text.count(f"kmem:{n}: ") for n in EVENT_NAMES}
    assert_matches_oracle(res.df, oracle(text, perf=True), comm=True)


@pytest.mark.shared
def test_real_capture_cut_mid_frame(shared_traces, tmp_path):
    src = shared_traces / "anon" / "trace.txt.zst"
    cut = tmp_path / "anon-cut.zst"
    cut.write_bytes(src.read_bytes()[:1_500_000])
    res = read_trace(cut, cache=False)
    assert res.malformed.get("truncated_stream") == 1 and res.events > 100_000
    full = read_trace(src, cache=False)
    assert res.df.equals(full.df.head(res.events))
    with pytest.raises(FormatError, match="truncated"):
        read_trace(cut, strict=True, cache=False)


@pytest.mark.shared
def test_full_capture_round_trips_through_the_writer(shared_traces, tmp_path):
    res = read_trace(shared_traces / "anon" / "trace.txt.zst")
    out = tmp_path / "anon.txt.zst"
    write_ftrace(res.df, out)
    assert frame_equal(read_trace(out, cache=False).df, res.df)
    cached = read_trace(shared_traces / "anon" / "trace.txt.zst")
    assert cached.from_cache and cached.df.equals(res.df)


def test_result_summary_mentions_everything():
    res = parse_trace_text(MIXED + "garbage\n")
    s = res.summary()
    assert "sched_switch" in s and "not_an_event" in s and "lost events: 1234" in s
    assert isinstance(res, TraceReadResult)
