"""The folio-level event reader: format-driven scanning, field decoding, accounting, cache, no-JIT equality."""

from __future__ import annotations

import re

import polars as pl
import pytest
import zstandard

from memdesc.errors import FormatError
from memdesc.sim.readahead import sample_path
from memdesc.trace import tpformat as tf
from memdesc.trace.folio_events import (
    EVENT_KINDS,
    EventKind,
    compile_program,
    load_formats,
    parse_folio_text,
    read_folio_events,
)
from nojit import both


def _sample_text() -> str:
    return zstandard.ZstdDecompressor().decompressobj().decompress(sample_path().read_bytes()).decode()


# --------------------------------------------------------------------------------------------
# a reference parser: plain regular expressions over the print formats of 6.18
# --------------------------------------------------------------------------------------------
_HEAD = r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<s>\d+)\.(?P<us>\d+):\s+(?P<ev>\w+): "
_DEV = r"(?P<maj>\d+):(?P<min>\d+)"
_REF = {
    "mm_filemap_add_to_page_cache": rf"dev {_DEV} ino (?P<ino>[0-9a-f]+) pfn=0x(?P<pfn>[0-9a-f]+) ofs=(?P<ofs>\d+) "
                                    r"order=(?P<order>\d+)$",
    "mm_filemap_delete_from_page_cache": rf"dev {_DEV} ino (?P<ino>[0-9a-f]+) pfn=0x(?P<pfn>[0-9a-f]+) "
                                         r"ofs=(?P<ofs>\d+) order=(?P<order>\d+)$",
    "mm_filemap_get_pages": rf"dev={_DEV} ino=(?P<ino>[0-9a-f]+) ofs=(?P<ofs>\d+)-(?P<end>\d+)$",
    "mm_filemap_map_pages": rf"dev={_DEV} ino=(?P<ino>[0-9a-f]+) ofs=(?P<ofs>\d+)-(?P<end>\d+)$",
    "mm_filemap_fault": rf"dev={_DEV} ino=(?P<ino>[0-9a-f]+) ofs=(?P<ofs>\d+)$",
    "page_cache_sync_ra": rf"dev={_DEV} ino=(?P<ino>[0-9a-f]+) index=(?P<index>\d+) req_count=(?P<req_count>\d+) "
                          r"order=(?P<order>\d+) size=(?P<size>\d+) async_size=(?P<async_size>\d+) "
                          r"ra_pages=(?P<ra_pages>\d+) mmap_miss=(?P<mmap_miss>\d+) prev_pos=(?P<prev_pos>-?\d+)$",
    "page_cache_ra_order": rf"dev={_DEV} ino=(?P<ino>[0-9a-f]+) index=(?P<index>\d+) order=(?P<order>\d+) "
                           r"size=(?P<size>\d+) async_size=(?P<async_size>\d+) ra_pages=(?P<ra_pages>\d+)$",
    "page_cache_ra_unbounded": rf"dev={_DEV} ino=(?P<ino>[0-9a-f]+) index=(?P<index>\d+) "
                               r"nr_to_read=(?P<nr_to_read>\d+) lookahead_size=(?P<lookahead_size>\d+)$",
}
_REF["page_cache_async_ra"] = _REF["page_cache_sync_ra"]


def _reference(text: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {k: [] for k in _REF}
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(_HEAD, line)
        if not m or m.group("ev") not in _REF:
            continue
        p = re.match(_REF[m.group("ev")], line[m.end():])
        assert p, line
        g = p.groupdict()
        row = {"line": n, "cpu": int(m.group("cpu")), "pid": int(m.group("pid")),
               "ts_ns": int(m.group("s")) * 10**9 + int(m.group("us")) * 1000,
               "dev": (int(g.pop("maj")) << 20) | int(g.pop("min")), "ino": int(g.pop("ino"), 16)}
        if "ofs" in g:
            row["index"] = int(g.pop("ofs")) >> 12
        if "end" in g:
            row["last_index"] = ((int(g.pop("end")) + 1) >> 12) - 1
        if "pfn" in g:
            row["pfn"] = int(g.pop("pfn"), 16)
        row.update({k: int(v) for k, v in g.items()})
        out[m.group("ev")].append(row)
    return out


def test_sample_matches_a_regex_reference_parser_field_by_field():
    text = _sample_text()
    res = read_folio_events(sample_path(), kinds=list(_REF), cache=False)  # the kinds the reference parses
    ref = _reference(text)
    assert res.formats == "bundled"  # the excerpt has no formats/ beside it
    for kind, rows in ref.items():
        df = res.events(kind)
        assert df.height == len(rows) > 0, kind
        want = pl.DataFrame(rows).select(df.columns)
        got = df.with_columns(pl.all().cast(pl.Int64))
        assert got.equals(want.with_columns(pl.all().cast(pl.Int64))), kind
    assert sum(len(r) for r in ref.values()) == res.n_events == 5732


def test_line_accounting_other_events_skipped_not_malformed():
    res = read_folio_events(sample_path(), cache=False)
    assert res.malformed == {} and res.examples == []
    assert res.other_events == {"mm_page_alloc": 85, "mm_page_free": 45, "mm_page_free_batched": 42}
    assert res.events("mm_lru_insertion").height == 38  # a kind of the reader since the LRU/reclaim events
    assert res.lines == 5942 == res.skipped + sum(res.other_events.values()) + res.n_events + res.n_malformed


def test_decoded_fields_of_known_lines():
    text = (
        "   cat-14176   [001] .....  1189.745615: mm_filemap_get_pages: dev=254:0 ino=166002 ofs=126976-131071\n"
        "   dd-14130    [000] .....  1182.422392: page_cache_sync_ra: dev=254:0 ino=3f85d index=0 req_count=1 "
        "order=0 size=0 async_size=0 ra_pages=2048 mmap_miss=0 prev_pos=-1\n"
        "   bash-14124  [000] .....  1182.403831: mm_filemap_add_to_page_cache: dev 254:0 ino 51a1a8 pfn=0x17a7df "
        "ofs=1048576 order=8\n")
    res = parse_folio_text(text)
    gp = res.events("mm_filemap_get_pages").row(0, named=True)
    assert (gp["dev"], gp["ino"], gp["index"], gp["last_index"]) == (254 << 20, 0x166002, 31, 31)
    sy = res.events("page_cache_sync_ra").row(0, named=True)
    assert (sy["index"], sy["req_count"], sy["ra_pages"], sy["prev_pos"], sy["pid"]) == (0, 1, 2048, -1, 14130)
    ad = res.events("mm_filemap_add_to_page_cache").row(0, named=True)
    assert (ad["ino"], ad["pfn"], ad["index"], ad["order"], ad["ts_ns"]) == (0x51a1a8, 0x17a7df, 256, 8,
                                                                             1182403831000)


BAD = (
    "   cat-1   [001] .....  1.000001: mm_filemap_get_pages: dev=254:0 ino=166002 ofs=0-4095\n"
    "   cat-1   [001] .....  1.000002: mm_filemap_get_pages: dev=254:0 ino=zz ofs=0-4095\n"
    "   cat-1   [001] .....  1.000003: page_cache_ra_order: dev=254:0 ino=1 index=0 order=0 size=4\n"
    "   cat-1   [001] .....  1.000004: mm_page_alloc: page=0000 pfn=0x1 order=0 migratetype=1 gfp_flags=GFP_KERNEL\n"
    "   cat-1   [001] .....  1.000005: some_other_event: whatever=1\n"
    "this is not a trace line\n"
)


def test_lenient_counts_malformed_lines_of_wanted_events_only():
    res = parse_folio_text(BAD)
    assert res.events("mm_filemap_get_pages").height == 1
    assert res.malformed == {"bad_field": 1, "truncated": 1, "not_an_event": 1}
    assert res.other_events == {"mm_page_alloc": 1, "some_other_event": 1}
    assert [e[0] for e in res.examples] == [2, 3, 6]


def test_strict_names_the_first_malformed_line():
    with pytest.raises(FormatError, match=r":2: mm_filemap_get_pages line does not follow its format"):
        parse_folio_text(BAD, strict=True)


def test_unknown_kind_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(FormatError, match="unknown folio event kind"):
        parse_folio_text("", kinds=["mm_no_such_event"])
    with pytest.raises(FormatError, match="no such trace file"):
        read_folio_events(tmp_path / "nope.zst")


def test_a_new_kind_is_one_entry_decoders_from_the_format_file(tmp_path):
    """The shapes later users need (LRU insertion flags from ternaries, compaction status from
    __print_symbolic, reclaim flags from __print_flags), from the kernel's format text."""
    fmts = tmp_path / "formats"
    fmts.mkdir()
    (fmts / "mm_lru_insertion.format").write_text(
        "name: mm_lru_insertion\nID: 621\nformat:\n"
        "\tfield:unsigned long pfn;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:enum lru_list lru;\toffset:24;\tsize:4;\tsigned:0;\n"
        "\tfield:unsigned long flags;\toffset:32;\tsize:8;\tsigned:0;\n\n"
        'print fmt: "folio=%p pfn=0x%lx lru=%d flags=%s%s%s%s%s%s", REC->folio, REC->pfn, REC->lru, '
        'REC->flags & 0x0001u ? "M" : " ", REC->flags & 0x0002u ? "a" : "f", REC->flags & 0x0008u ? "s" : " ", '
        'REC->flags & 0x0010u ? "b" : " ", REC->flags & 0x0020u ? "d" : " ", REC->flags & 0x0040u ? "B" : " "\n')
    (fmts / "mm_compaction_end.format").write_text(
        "name: mm_compaction_end\nID: 669\nformat:\n"
        "\tfield:unsigned long zone_start;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:int status;\toffset:48;\tsize:4;\tsigned:1;\n\n"
        'print fmt: "zone_start=0x%lx migrate_pfn=0x%lx free_pfn=0x%lx zone_end=0x%lx, mode=%s status=%s", '
        'REC->zone_start, REC->migrate_pfn, REC->free_pfn, REC->zone_end, REC->sync ? "sync" : "async", '
        '__print_symbolic(REC->status, {1, "skipped"}, {2, "deferred"}, {4, "continue"}, {8, "success"}, '
        '{6, "partial_skipped"}, {5, "complete"}, {3, "no_suitable_page"}, {0, "not_suitable_zone"}, '
        '{7, "contended"})\n')
    (fmts / "mm_vmscan_write_folio.format").write_text(
        "name: mm_vmscan_write_folio\nID: 628\nformat:\n"
        "\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;\n\n"
        'print fmt: "page=%p pfn=0x%lx flags=%s", REC->pfn, REC->pfn, (REC->reclaim_flags) ? '
        '__print_flags(REC->reclaim_flags, "|", {0x0001u, "RECLAIM_WB_ANON"}, {0x0002u, "RECLAIM_WB_FILE"}, '
        '{0x0010u, "RECLAIM_WB_MIXED"}, {0x0004u, "RECLAIM_WB_SYNC"}, {0x0008u, "RECLAIM_WB_ASYNC"} ) '
        ': "RECLAIM_WB_NONE"\n')
    lru = EventKind("mm_lru_insertion", (("pfn", "pfn"), ("lru", "lru"), ("flags", "flags")))
    end = EventKind("mm_compaction_end", (("zone_start", "zone_start"), ("migrate_pfn", "migrate_pfn"),
                                          ("sync", "sync"), ("status", "status")))
    wf = EventKind("mm_vmscan_write_folio", (("pfn", "pfn"), ("reclaim_flags", "reclaim_flags")))
    text = (
        "  bash-1 [000] d..3.  1.1: mm_lru_insertion: folio=0000000076c56d65 pfn=0x14e8c2 lru=0 flags=Ma b  \n"
        "  bash-1 [000] d..3.  1.2: mm_lru_insertion: folio=0000000076c56d65 pfn=0x10 lru=2 flags= f    \n"
        "  kcompactd0-5 [001] .....  1.3: mm_compaction_end: zone_start=0x1000 migrate_pfn=0x2000 "
        "free_pfn=0x3000 zone_end=0x4000, mode=sync status=partial_skipped\n"
        "  kswapd0-6 [001] .....  1.4: mm_vmscan_write_folio: page=0000000076c56d65 pfn=0x99 "
        "flags=RECLAIM_WB_FILE|RECLAIM_WB_ASYNC\n")
    res = parse_folio_text(text, kinds=[lru, end, wf], formats_dir=fmts)
    assert res.events("mm_lru_insertion").select("pfn", "lru", "flags").rows() == [(0x14e8c2, 0, 0x1 | 0x2 | 0x10),
                                                                                   (0x10, 2, 0)]
    assert res.events("mm_compaction_end").select("zone_start", "migrate_pfn", "sync", "status").rows() == [
        (0x1000, 0x2000, 1, 6)]
    assert res.events("mm_vmscan_write_folio").select("pfn", "reclaim_flags").rows() == [(0x99, 0x2 | 0x8)]


def test_every_capture_format_of_the_table_compiles():
    """Every kind of the table has its fields printed in the bundled 6.18 formats."""
    formats, where = load_formats(None, None, [k.name for k in EVENT_KINDS])
    prog = compile_program(list(EVENT_KINDS), formats)
    assert where == "bundled" and len(prog.specs) == len(EVENT_KINDS)
    # the ofs decoders invert index << 12 and ((last_index + 1) << 12) - 1
    gp = tf.field_sources(formats["mm_filemap_get_pages"])
    assert gp["last_index"][0][1].aff == tf.Affine("last_index", add=1, shift=12, post=-1)


def test_parquet_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMDESC_CACHE", str(tmp_path))
    a = read_folio_events(sample_path(), cache=True)
    b = read_folio_events(sample_path(), cache=True)
    assert not a.from_cache and b.from_cache
    for k in a.frames:
        assert a.events(k).equals(b.events(k)), k
    assert (a.lines, a.other_events, a.skipped) == (b.lines, b.other_events, b.skipped)


_NOJIT = """
import json, sys, zstandard
from memdesc.trace.folio_events import parse_folio_text
text = zstandard.ZstdDecompressor().decompressobj().decompress(open(sys.argv[1], 'rb').read()).decode()
lines = text.splitlines(True)[:900]
r = parse_folio_text(''.join(lines) + BAD)
print(json.dumps({k: f.rows() for k, f in r.frames.items()} | {"_acct": [r.lines, r.skipped, r.malformed,
                  r.other_events]}))
"""


def test_scanner_same_results_without_numba():
    code = f"BAD = {BAD!r}\n" + _NOJIT
    outs = both(code, args=[sample_path()], timeout=600)
    assert outs[0] == outs[1]
    assert sum(len(v) for k, v in outs[0].items() if not k.startswith("_")) > 500
    assert outs[0]["_acct"][0] == 906
