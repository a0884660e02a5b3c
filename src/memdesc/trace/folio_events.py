"""Folio-level tracepoints (filemap, readahead, ...) of a capture, read into polars frames.

Theory
------
The kmem reader (:mod:`memdesc.trace.reader`) knows the six page-allocator events by
heart.  The folio-level events are many more, and they change between kernels, so this
reader is *driven by the capture's own format files* (``formats/<name>.format``, the
kernel's ``events/<sys>/<name>/format``): each event kind is one entry of
:data:`EVENT_KINDS` -- the tracepoint name and the record fields wanted -- and
:mod:`memdesc.trace.tpformat` turns the format file into a scanner program (literal
texts and conversions, in print order) and into decoders that map the printed tokens
back to record fields (``ofs=%lu`` of ``index << 12`` gives ``index``, ``dev=%d:%d``
gives ``s_dev``, ``__print_symbolic`` names give their values ...).  Adding an event
kind is adding one entry; no parser code changes.

One numba pass per block of lines (:func:`scan_buffer`) locates the ftrace header
(task, pid, cpu, timestamp: the same grammar as the kmem reader), looks the event name
up among the wanted kinds and runs that kind's program over the payload: literals are
compared byte for byte, numbers parsed in place, strings interned per block.  No Python
runs per line.  Lines are accounted exactly as in the kmem reader:

* blank, comment, preamble and stack-trace lines are skipped;
* lines of other tracepoints (kmem events included) are *skipped*, counted per name in
  ``other_events`` -- never malformed;
* a line of a wanted event whose payload does not follow its format is malformed
  (``truncated`` if it stops early, ``bad_field`` otherwise, ``not_an_event`` for a line
  with no event header); with ``strict=True`` the first one raises
  :class:`~memdesc.errors.FormatError` naming the file, line and text.

So ``lines == skipped + sum(other_events) + lost_markers + sum(malformed) + events``.

Result: :class:`FolioTrace`, one polars frame per kind (:meth:`FolioTrace.events`) with
columns ``line`` (1-based source line), ``cpu``, ``ts_ns``, ``pid`` and the kind's
fields (Int64; unsigned 64-bit values above 2**63 wrap).  The parse is cached as
Parquet (:mod:`memdesc.trace.cache`) under a key that includes the format files' text
and the kinds read.  Format files are taken from ``formats/`` beside the trace, else from
the Linux 6.18 copies bundled in ``memdesc/data/formats``.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from memdesc._numba import njit
from memdesc.errors import FormatError
from memdesc.trace import cache as trace_cache
from memdesc.trace import textparse as tp
from memdesc.trace import tpformat as tf
from memdesc.trace.reader import _SEP, _check_format, _Prefetch, _workers, detect_format
from memdesc.trace.source import DEFAULT_BLOCK, BlockReader, iter_bytes_blocks

#: bump when the output for the same input can change
FOLIO_PARSER_VERSION = 1
_MAX_EXAMPLES = 20
BUNDLED_FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"


@dataclass(frozen=True)
class EventKind:
    """One tracepoint the reader extracts: its name and ``(column, record field)`` pairs."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)


_DEV_INO = (("dev", "s_dev"), ("ino", "i_ino"))
_RA_STATE = (("order", "order"), ("size", "size"), ("async_size", "async_size"), ("ra_pages", "ra_pages"))
_SCAN_RANGE = (("start_pfn", "start_pfn"), ("end_pfn", "end_pfn"), ("nr_scanned", "nr_scanned"),
               ("nr_taken", "nr_taken"))
_ZONE_SCAN = (("zone_start", "zone_start"), ("migrate_pfn", "migrate_pfn"), ("free_pfn", "free_pfn"),
              ("zone_end", "zone_end"), ("sync", "sync"))

#: the event kinds, one entry each (code = position); later users append entries
EVENT_KINDS: tuple[EventKind, ...] = (
    EventKind("mm_filemap_add_to_page_cache", _DEV_INO + (("index", "index"), ("order", "order"), ("pfn", "pfn"))),
    EventKind("mm_filemap_delete_from_page_cache",
              _DEV_INO + (("index", "index"), ("order", "order"), ("pfn", "pfn"))),
    EventKind("mm_filemap_get_pages", _DEV_INO + (("index", "index"), ("last_index", "last_index"))),
    EventKind("mm_filemap_fault", _DEV_INO + (("index", "index"),)),
    EventKind("mm_filemap_map_pages", _DEV_INO + (("index", "index"), ("last_index", "last_index"))),
    EventKind("page_cache_sync_ra", _DEV_INO + (("index", "index"), ("req_count", "req_count")) + _RA_STATE
              + (("mmap_miss", "mmap_miss"), ("prev_pos", "prev_pos"))),
    EventKind("page_cache_async_ra", _DEV_INO + (("index", "index"), ("req_count", "req_count")) + _RA_STATE
              + (("mmap_miss", "mmap_miss"), ("prev_pos", "prev_pos"))),
    EventKind("page_cache_ra_order", _DEV_INO + (("index", "index"),) + _RA_STATE),
    EventKind("page_cache_ra_unbounded", _DEV_INO + (("index", "index"), ("nr_to_read", "nr_to_read"),
                                                     ("lookahead_size", "lookahead_size"))),
    # compaction's free scanner (memdesc.trace.compaction: exact replay takes what it isolated)
    EventKind("mm_compaction_isolate_freepages", _SCAN_RANGE),
    EventKind("mm_compaction_fast_isolate_freepages", _SCAN_RANGE),
    # compaction runs and migration (memdesc.trace.compaction: the kernel's side of `memdesc compact`)
    EventKind("mm_compaction_begin", _ZONE_SCAN),
    EventKind("mm_compaction_end", _ZONE_SCAN + (("status", "status"),)),
    EventKind("mm_compaction_isolate_migratepages", _SCAN_RANGE),
    EventKind("mm_compaction_migratepages", (("nr_migrated", "nr_migrated"), ("nr_failed", "nr_failed"))),
    EventKind("mm_migrate_pages", (("succeeded", "succeeded"), ("failed", "failed"), ("thp_succeeded", "thp_succeeded"),
                                   ("thp_failed", "thp_failed"), ("nr_split", "large_folio_split"), ("mode", "mode"),
                                   ("reason", "reason"))),
    # LRU and reclaim (memdesc.sim.reclaim compares the model's reclaim with them)
    EventKind("mm_lru_insertion", (("pfn", "pfn"), ("lru", "lru"), ("flags", "flags"))),
    EventKind("mm_lru_activate", (("pfn", "pfn"),)),
    EventKind("mm_vmscan_lru_isolate", (("nr_requested", "nr_requested"), ("nr_scanned", "nr_scanned"),
                                        ("nr_skipped", "nr_skipped"), ("nr_taken", "nr_taken"), ("lru", "lru"))),
    EventKind("mm_vmscan_lru_shrink_inactive", (
        ("nr_scanned", "nr_scanned"), ("nr_reclaimed", "nr_reclaimed"), ("nr_dirty", "nr_dirty"),
        ("nr_writeback", "nr_writeback"), ("nr_congested", "nr_congested"), ("nr_immediate", "nr_immediate"),
        ("nr_activate_anon", "nr_activate0"), ("nr_activate_file", "nr_activate1"), ("nr_ref_keep", "nr_ref_keep"),
        ("nr_unmap_fail", "nr_unmap_fail"), ("priority", "priority"), ("reclaim_flags", "reclaim_flags"))),
    EventKind("mm_vmscan_lru_shrink_active", (
        ("nr_taken", "nr_taken"), ("nr_active", "nr_active"), ("nr_deactivated", "nr_deactivated"),
        ("nr_referenced", "nr_referenced"), ("priority", "priority"), ("reclaim_flags", "reclaim_flags"))),
    EventKind("mm_vmscan_memcg_reclaim_begin", (("order", "order"), ("gfp_flags", "gfp_flags"))),
    EventKind("mm_vmscan_memcg_reclaim_end", (("nr_reclaimed", "nr_reclaimed"),)),
    EventKind("mm_vmscan_direct_reclaim_begin", (("order", "order"), ("gfp_flags", "gfp_flags"))),
    EventKind("mm_vmscan_direct_reclaim_end", (("nr_reclaimed", "nr_reclaimed"),)),
    EventKind("mm_vmscan_kswapd_wake", (("nid", "nid"), ("order", "order"))),
    EventKind("mm_vmscan_kswapd_sleep", (("nid", "nid"),)),
    EventKind("mm_vmscan_wakeup_kswapd", (("nid", "nid"), ("order", "order"), ("gfp_flags", "gfp_flags"))),
)
#: the LRU and reclaim kinds (memdesc.sim.reclaim)
RECLAIM_KINDS = ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache", "mm_filemap_get_pages",
                 "mm_lru_insertion", "mm_lru_activate", "mm_vmscan_lru_isolate", "mm_vmscan_lru_shrink_inactive",
                 "mm_vmscan_lru_shrink_active", "mm_vmscan_memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_end",
                 "mm_vmscan_direct_reclaim_begin", "mm_vmscan_direct_reclaim_end", "mm_vmscan_kswapd_wake",
                 "mm_vmscan_kswapd_sleep", "mm_vmscan_wakeup_kswapd")
KIND_BY_NAME = {k.name: i for i, k in enumerate(EVENT_KINDS)}
#: the page-cache and readahead kinds (what mm/readahead validation reads)
PAGECACHE_KINDS = tuple(k.name for k in EVENT_KINDS[:9])

HEADER_SCHEMA = {"line": pl.UInt64(), "cpu": pl.Int16(), "ts_ns": pl.Int64(), "pid": pl.Int32()}


# ------------------------------------------------------------------------------------------
# compiled programs
# ------------------------------------------------------------------------------------------
OP_LIT = 0


@dataclass
class _KindSpec:
    kind: EventKind
    fmt: tf.TracepointFormat
    nconv: int
    # per output column: list of (conversion index, decoder)
    sources: list[list[tuple[int, tf.NumDecoder | tf.StrDecoder]]]


@dataclass
class Program:
    """The scanner program of a set of event kinds (numpy arrays for the kernel)."""

    specs: list[_KindSpec]
    ev_tab: np.ndarray
    ev_len: np.ndarray
    op_kind: np.ndarray
    op_a: np.ndarray
    op_b: np.ndarray
    op_slot: np.ndarray
    k_start: np.ndarray
    k_end: np.ndarray
    lits: np.ndarray
    nvals: int
    digest: str


def compile_program(kinds: Sequence[EventKind], formats: dict[str, tf.TracepointFormat]) -> Program:
    """Build the scanner program of ``kinds`` from their format files."""
    specs = []
    ops_kind, ops_a, ops_b, ops_slot, starts, ends = [], [], [], [], [], []
    lits = bytearray()
    nvals = 1
    h = hashlib.blake2b(digest_size=12)
    for kind in kinds:
        fmt = formats.get(kind.name)
        if fmt is None:
            raise FormatError(f"no format file for event {kind.name!r}")
        h.update(kind.name.encode())
        h.update(repr(kind.columns).encode())
        h.update(fmt.print_fmt.encode())
        h.update("\x00".join(fmt.args).encode())
        srcs = tf.field_sources(fmt)
        col_sources = []
        for col, fld in kind.columns:
            if fld not in srcs:
                raise FormatError(f"{kind.name}: field {fld!r} (column {col!r}) is not printed by its format "
                                  f"({fmt.path or 'bundled'})")
            col_sources.append(srcs[fld])
        conv_i = 0
        starts.append(len(ops_kind))
        prog = fmt.program
        for pi, item in enumerate(prog):
            if isinstance(item, bytes):
                ops_kind.append(OP_LIT)
                ops_a.append(len(lits))
                ops_b.append(len(item))
                ops_slot.append(-1)
                lits.extend(item)
                continue
            ops_kind.append(item.kind)
            ops_slot.append(conv_i)
            conv_i += 1
            if item.kind == tf.CONV_STR_FIXED:
                ops_a.append(item.width)
                ops_b.append(-1)
            else:
                nxt = prog[pi + 1] if pi + 1 < len(prog) else None
                ops_a.append(0)
                ops_b.append(nxt[0] if isinstance(nxt, bytes) and nxt else -1)
        ends.append(len(ops_kind))
        nvals = max(nvals, conv_i)
        specs.append(_KindSpec(kind, fmt, conv_i, col_sources))
    tab, lens = tp._table([k.name for k in kinds]) if kinds else (np.zeros((0, 1), np.uint8), np.zeros(0, np.int64))
    a64 = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return Program(specs, tab, lens, a64(ops_kind), a64(ops_a), a64(ops_b), a64(ops_slot), a64(starts), a64(ends),
                   np.frombuffer(bytes(lits) or b"\0", dtype=np.uint8).copy(), nvals, h.hexdigest())


# ------------------------------------------------------------------------------------------
# the numba scanner
# ------------------------------------------------------------------------------------------
@njit
def _parse_num(buf, q, e, kind):
    """Parse a number at buf[q:e]; returns (ok, value, end)."""
    neg = False
    if kind == tf.CONV_SDEC and q < e and buf[q] == 45:
        neg = True
        q += 1
    a = q
    v = np.int64(0)
    if kind == tf.CONV_HEX or kind == tf.CONV_PTR:
        while q < e:
            d = tp._hex_digit(int(buf[q]))
            if d < 0:
                break
            v = v * 16 + d
            q += 1
    else:
        while q < e and 48 <= buf[q] <= 57:
            v = v * 10 + (buf[q] - 48)
            q += 1
    if q == a or q - a > 20:
        return False, v, q
    return True, -v if neg else v, q


@njit
def scan_buffer(buf, pos, li, sep, out_status, o_kind, o_cpu, o_ts, o_pid, o_vals, o_name,
                ev_tab, ev_len, op_kind, op_a, op_b, op_slot, k_start, k_end, lits,
                str_slots, str_ents, name_slots, name_ents, counts):
    """Scan the lines of ``buf`` from byte ``pos``, writing rows from ``li`` on.

    Returns the next row index (``counts[2]`` = next byte) or PARSE_TABLE_FULL.  A row's
    ``o_vals`` hold the conversions' values (strings: ids of the block's string table).
    """
    n = buf.shape[0]
    cap = out_status.shape[0]
    while pos < n and li < cap:
        e = tp._find_newline(buf, pos, n)
        nxt = e + 1
        if e > pos and buf[e - 1] == 13:
            e -= 1
        st = tp.ST_OK
        p = pos
        while True:
            while p < e and tp._is_blank(buf[p]):
                p += 1
            if p == e or buf[p] == 35:
                st = tp.ST_SKIP
                break
            comm_end, pid, cpu, q = tp._find_header(buf, p, e, sep)
            if comm_end < 0:
                st = tp._non_event_status(buf, p > pos, p, e, li, o_ts)
                break
            o_cpu[li] = cpu
            o_pid[li] = pid
            ts = -1
            for _ in range(2):
                while q < e and tp._is_blank(buf[q]):
                    q += 1
                a = q
                while q < e and not tp._is_blank(buf[q]):
                    q += 1
                if q == a:
                    st = tp.ST_TRUNCATED
                    break
                if buf[q - 1] == 58:
                    ts = tp._parse_ts(buf, a, q - 1)
                    if ts >= 0:
                        break
                if q == e:
                    st = tp.ST_TRUNCATED
                    break
            if st != tp.ST_OK:
                break
            if ts < 0:
                st = tp.ST_BAD_FIELD
                break
            o_ts[li] = ts
            while q < e and tp._is_blank(buf[q]):
                q += 1
            if tp._match_at(buf, q, e, tp._LIT_STACK) or tp._match_at(buf, q, e, tp._LIT_USTACK):
                st = tp.ST_SKIP
                break
            a = q
            while q < e and not tp._is_blank(buf[q]):
                q += 1
            if q == a or buf[q - 1] != 58:
                st = tp.ST_TRUNCATED if q == e else tp.ST_BAD_FIELD
                break
            na = a
            for k in range(a, q - 1):  # perf: "<sys>:<event>:"
                if buf[k] == 58:
                    na = k + 1
            idx = tp._lookup(buf, na, q - 1, ev_tab, ev_len)
            if idx < 0:
                nid = tp._intern(buf, na, q - 1, name_slots, name_ents, counts, 1)
                if nid == -2:
                    return tp.PARSE_TABLE_FULL
                o_name[li] = nid
                st = tp.ST_UNKNOWN
                break
            o_kind[li] = idx
            # the payload starts after one blank (ftrace prints "<name>: <payload>")
            if q < e and buf[q] == 32:
                q += 1
            for j in range(k_start[idx], k_end[idx]):
                ok = op_kind[j]
                if ok == OP_LIT:
                    la = op_a[j]
                    ln = op_b[j]
                    if q + ln > e:
                        # a proper prefix of the literal is a cut line
                        st = tp.ST_TRUNCATED
                        for t in range(e - q):
                            if buf[q + t] != lits[la + t]:
                                st = tp.ST_BAD_FIELD
                                break
                        break
                    same = True
                    for t in range(ln):
                        if buf[q + t] != lits[la + t]:
                            same = False
                            break
                    if not same:
                        st = tp.ST_BAD_FIELD
                        break
                    q += ln
                elif ok == tf.CONV_STR_FIXED:
                    w = op_a[j]
                    if q + w > e:
                        st = tp.ST_TRUNCATED
                        break
                    sid = tp._intern(buf, q, q + w, str_slots, str_ents, counts, 0)
                    if sid == -2:
                        return tp.PARSE_TABLE_FULL
                    o_vals[li, op_slot[j]] = sid
                    q += w
                elif ok == tf.CONV_STR_VAR:
                    delim = op_b[j]
                    a = q
                    if delim < 0:
                        if j + 1 == k_end[idx]:
                            b = e
                            while b > a and tp._is_blank(buf[b - 1]):
                                b -= 1
                            q = e
                        else:
                            while q < e and not tp._is_blank(buf[q]):
                                q += 1
                            b = q
                    else:
                        while q < e and buf[q] != delim:
                            q += 1
                        b = q
                    sid = tp._intern(buf, a, b, str_slots, str_ents, counts, 0)
                    if sid == -2:
                        return tp.PARSE_TABLE_FULL
                    o_vals[li, op_slot[j]] = sid
                elif ok == tf.CONV_CHAR:
                    if q >= e:
                        st = tp.ST_TRUNCATED
                        break
                    o_vals[li, op_slot[j]] = buf[q]
                    q += 1
                else:
                    if q >= e:
                        st = tp.ST_TRUNCATED
                        break
                    if ok == tf.CONV_PTR and buf[q] == 40:  # "(null)" / "(nil)"
                        while q < e and buf[q] != 41:
                            q += 1
                        q += 1
                        o_vals[li, op_slot[j]] = 0
                        continue
                    good, v, q = _parse_num(buf, q, e, ok)
                    if not good:
                        st = tp.ST_TRUNCATED if q >= e else tp.ST_BAD_FIELD
                        break
                    o_vals[li, op_slot[j]] = v
            if st != tp.ST_OK:
                break
            while q < e and tp._is_blank(buf[q]):
                q += 1
            if q < e:
                st = tp.ST_BAD_FIELD
            break
        out_status[li] = st
        li += 1
        pos = nxt
    counts[2] = pos
    return li


class _Parsed:
    """Per-line output of :func:`scan_buffer` for one block."""

    def __init__(self, data, n, status, kind, cpu, ts, pid, vals, name, tables, counts):
        self.data = data
        self.n = n
        self.status = status[:n]
        self.kind = kind[:n]
        self.cpu = cpu[:n]
        self.ts = ts[:n]
        self.pid = pid[:n]
        self.vals = vals[:n]
        self.name = name[:n]
        self.strings = tables[0].strings(data, int(counts[0]))
        self.names = tables[1].strings(data, int(counts[1]))
        self._starts = None

    def line_text(self, i: int) -> str:
        if self._starts is None:
            nl = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)
            self._starts = np.concatenate(([0], nl + 1))
        a = int(self._starts[i])
        b = int(self._starts[i + 1]) - 1 if i + 1 < self._starts.shape[0] else len(self.data)
        return bytes(self.data[a:b]).rstrip(b"\r").decode("utf-8", "replace")


def _scan_bytes(data, sep: int, prog: Program) -> _Parsed:
    buf = np.frombuffer(data, dtype=np.uint8)
    nbytes = len(data)
    cap = nbytes // 96 + 16
    caps = [256, 256]
    while True:
        status = np.empty(cap, np.uint8)
        kind = np.zeros(cap, np.uint8)
        cpu = np.zeros(cap, np.int16)
        ts = np.zeros(cap, np.int64)
        pid = np.zeros(cap, np.int32)
        vals = np.zeros((cap, prog.nvals), np.int64)
        name = np.zeros(cap, np.int32)
        tables = [tp.InternTable(c) for c in caps]
        counts = np.zeros(3, np.int64)
        li = 0
        full = False
        while True:
            li = scan_buffer(buf, counts[2], li, sep, status, kind, cpu, ts, pid, vals, name,
                             prog.ev_tab, prog.ev_len, prog.op_kind, prog.op_a, prog.op_b, prog.op_slot,
                             prog.k_start, prog.k_end, prog.lits, tables[0].slots, tables[0].ents,
                             tables[1].slots, tables[1].ents, counts)
            if li == tp.PARSE_TABLE_FULL:
                full = True
                break
            if counts[2] >= nbytes:
                break
            cap *= 2  # rows ran out: grow and continue where the scan stopped
            status, kind, cpu, ts, pid, name = (np.resize(x, cap) for x in (status, kind, cpu, ts, pid, name))
            vals = np.resize(vals, (cap, prog.nvals))
        if not full:
            return _Parsed(data, int(li), status, kind, cpu, ts, pid, vals, name, tables, counts)
        for i in range(2):
            if counts[i] >= caps[i]:
                caps[i] *= 8


# ------------------------------------------------------------------------------------------
# assembling
# ------------------------------------------------------------------------------------------
@dataclass
class FolioTrace:
    """Folio-level events of a trace: one frame per kind, and the account of its lines.

    ``frames``: kind name -> polars frame (``line``, ``cpu``, ``ts_ns``, ``pid`` and the
    kind's columns).  ``other_events``: lines of other tracepoints, per name (skipped,
    not malformed).  ``malformed``: count per kind of problem; ``examples``: the first
    malformed lines (line number, kind, text).  ``formats``: where the format files came
    from (a directory, or ``bundled``).
    """

    frames: dict[str, pl.DataFrame]
    source: str
    format: str
    lines: int
    formats: str
    skipped: int = 0
    other_events: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, str, str]] = field(default_factory=list)
    lost_events: int = 0
    lost_markers: int = 0
    compression: str = "plain"
    stream_error: str | None = None
    seconds: float = 0.0
    from_cache: bool = False

    def events(self, kind: str) -> pl.DataFrame:
        """The frame of one event kind (zero rows if the trace has none)."""
        if kind not in self.frames:
            raise FormatError(f"{kind!r} was not read (kinds read: {', '.join(self.frames)})")
        return self.frames[kind]

    @property
    def n_events(self) -> int:
        return sum(f.height for f in self.frames.values())

    @property
    def n_malformed(self) -> int:
        return sum(v for k, v in self.malformed.items() if k != "truncated_stream")

    def event_counts(self) -> dict[str, int]:
        return {k: f.height for k, f in self.frames.items()}

    def summary(self) -> str:
        parts = [f"{self.source}: {self.format} ({self.compression}), {self.lines} lines, "
                 f"{self.n_events} folio-level events in {self.seconds:.3f} s"
                 + (" (cached)" if self.from_cache else "")]
        if self.malformed:
            parts.append(f"malformed: {self.malformed}")
        if self.lost_markers:
            parts.append(f"lost events: {self.lost_events} ({self.lost_markers} markers)")
        if self.stream_error:
            parts.append(f"stream error: {self.stream_error}")
        return "; ".join(parts)

    def _meta(self) -> dict:
        return {"source": self.source, "format": self.format, "lines": self.lines, "formats": self.formats,
                "skipped": self.skipped, "other_events": self.other_events, "malformed": self.malformed,
                "examples": self.examples, "lost_events": self.lost_events, "lost_markers": self.lost_markers,
                "compression": self.compression, "stream_error": self.stream_error,
                "kinds": {k: list(f.columns) for k, f in self.frames.items()}}


class _Assembler:
    def __init__(self, source: str, fmt: str, strict: bool, prog: Program):
        self.source = source
        self.fmt = fmt
        self.strict = strict
        self.prog = prog
        self.lines = 0
        self.skipped = 0
        self.lost_events = 0
        self.lost_markers = 0
        self.other: dict[str, int] = {}
        self.malformed: dict[str, int] = {}
        self.examples: list[tuple[int, str, str]] = []
        self.cols: list[dict[str, list[np.ndarray]]] = [
            {c: [] for c in itertools.chain(HEADER_SCHEMA, s.kind.column_names)} for s in prog.specs]
        self._str_memo: dict[tuple[int, int, str], int | None] = {}

    def _decode_strings(self, k: int, j: int, dec: tf.StrDecoder, strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vals = np.zeros(len(strings) + 1, np.int64)
        bad = np.zeros(len(strings) + 1, bool)
        for i, s in enumerate(strings):
            key = (k, j, s)
            if key not in self._str_memo:
                self._str_memo[key] = tf.decode_string(dec, s)
            v = self._str_memo[key]
            if v is None:
                bad[i] = True
            else:
                v &= tf.MASK64
                vals[i] = v - (1 << 64) if v >= 1 << 63 else v
        return vals, bad

    def add(self, pb: _Parsed) -> None:
        n = pb.n
        base = self.lines
        status = pb.status.copy()
        ok = status == tp.ST_OK
        per_kind_rows = []
        for k, spec in enumerate(self.prog.specs):
            rows = np.flatnonzero(ok & (pb.kind == k))
            out = {}
            bad_rows = np.zeros(rows.size, bool)
            vals = pb.vals[rows]
            for (col, _), sources in zip(spec.kind.columns, spec.sources, strict=True):
                acc = None
                for j, dec in sources:
                    v = vals[:, j]
                    if isinstance(dec, tf.NumDecoder):
                        a = dec.aff
                        if a.kind == "lin":
                            piece = ((v - np.int64(a.post)) >> np.int64(a.shift)) - np.int64(a.add)
                        elif a.kind == "shr":
                            piece = v << np.int64(a.param)
                        else:
                            piece = v & np.int64(a.param)
                        if a.kind == "lin":
                            if acc is None:
                                acc = piece
                            continue
                    else:
                        lut, bad = self._decode_strings(k, j, dec, pb.strings)
                        ids = np.where((v >= 0) & (v < len(pb.strings)), v, len(pb.strings))
                        piece = lut[ids]
                        bad_rows |= bad[ids]
                    acc = piece if acc is None else acc | piece
                out[col] = acc
            if bad_rows.any():
                status[rows[bad_rows]] = tp.ST_BAD_FIELD
                keep = ~bad_rows
                rows = rows[keep]
                out = {c: a[keep] for c, a in out.items()}
            per_kind_rows.append((rows, out))
        counts = np.bincount(status, minlength=tp.ST_MISSING_FIELD + 1)
        bad_idx = np.flatnonzero(status >= tp.ST_NOT_AN_EVENT)
        if bad_idx.size:
            if self.strict:
                i = int(bad_idx[0])
                kind = tp.STATUS_KIND[int(status[i])]
                text = pb.line_text(i)
                raise FormatError(_explain(kind, text, self.prog, int(pb.kind[i])), self.source, base + i + 1, text)
            for code, kind in tp.STATUS_KIND.items():
                if counts[code]:
                    self.malformed[kind] = self.malformed.get(kind, 0) + int(counts[code])
            for i in bad_idx[: max(0, _MAX_EXAMPLES - len(self.examples))].tolist():
                self.examples.append((base + i + 1, tp.STATUS_KIND[int(status[i])], pb.line_text(i)))
        self.skipped += int(counts[tp.ST_SKIP])
        if counts[tp.ST_LOST]:
            self.lost_markers += int(counts[tp.ST_LOST])
            self.lost_events += int(pb.ts[status == tp.ST_LOST].sum())
        if counts[tp.ST_UNKNOWN]:
            per = np.bincount(pb.name[status == tp.ST_UNKNOWN], minlength=len(pb.names))
            for name, c in zip(pb.names, per.tolist(), strict=True):
                if c:
                    self.other[name] = self.other.get(name, 0) + c
        for k, (rows, out) in enumerate(per_kind_rows):
            c = self.cols[k]
            c["line"].append(rows.astype(np.uint64) + np.uint64(base + 1))
            c["cpu"].append(pb.cpu[rows])
            c["ts_ns"].append(pb.ts[rows])
            c["pid"].append(pb.pid[rows])
            for col, arr in out.items():
                c[col].append(arr)
        self.lines += n

    def add_tail(self, tail: bytes, truncated: bool) -> None:
        if not tail:
            return
        if not truncated:
            self.add(_scan_bytes(tail, _SEP[self.fmt], self.prog))
            return
        text = tail.decode("utf-8", "replace")
        if self.strict:
            raise FormatError("input ends in the middle of a line (truncated stream)", self.source,
                              self.lines + 1, text)
        self.lines += 1
        self.malformed["truncated"] = self.malformed.get("truncated", 0) + 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append((self.lines, "truncated", text))

    def frames(self) -> dict[str, pl.DataFrame]:
        out = {}
        for spec, c in zip(self.prog.specs, self.cols, strict=True):
            data = {}
            for name, dt in HEADER_SCHEMA.items():
                arr = np.concatenate(c[name]) if c[name] else np.zeros(0)
                data[name] = pl.Series(name, arr, dtype=dt)
            for col in spec.kind.column_names:
                arr = np.concatenate(c[col]) if c[col] else np.zeros(0, np.int64)
                data[col] = pl.Series(col, arr, dtype=pl.Int64())
            out[spec.kind.name] = pl.DataFrame(data)
        return out


def _explain(kind: str, line: str, prog: Program, k: int) -> str:
    if kind == "not_an_event":
        return "not an ftrace event line (expected '<task>-<pid> [<cpu>] [<flags>] <secs>: <event>: <payload>')"
    name = prog.specs[k].kind.name if 0 <= k < len(prog.specs) else "event"
    shape = prog.specs[k].fmt.print_fmt if 0 <= k < len(prog.specs) else ""
    if kind == "truncated":
        return f"{name} line cut short (its format is {shape!r})"
    return f"{name} line does not follow its format {shape!r}"


def _run(blocks: Iterable, asm: _Assembler, workers: int) -> None:
    sep = _SEP[asm.fmt]
    if workers <= 1:
        for block in blocks:
            asm.add(_scan_bytes(block, sep, asm.prog))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for block in blocks:
            pending.append(pool.submit(_scan_bytes, block, sep, asm.prog))
            while len(pending) > workers:
                asm.add(pending.pop(0).result())
        for fut in pending:
            asm.add(fut.result())


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------
def load_formats(trace_path: str | Path | None = None, formats_dir: str | Path | None = None,
                 kinds: Sequence[str] | None = None) -> tuple[dict[str, tf.TracepointFormat], str]:
    """Format files for ``kinds``: from ``formats_dir``, else ``formats/`` beside the trace,
    else the bundled Linux 6.18 copies.  Returns (formats by name, where they came from)."""
    want = list(kinds) if kinds is not None else [k.name for k in EVENT_KINDS]
    cands = []
    if formats_dir is not None:
        d = Path(formats_dir)
        if not d.is_dir():
            raise FormatError(f"no such formats directory: {d}")
        cands.append(d)
    elif trace_path is not None:
        d = Path(trace_path).resolve().parent / "formats"
        if d.is_dir():
            cands.append(d)
    cands.append(BUNDLED_FORMATS)
    out: dict[str, tf.TracepointFormat] = {}
    where = "bundled"
    for d in cands:
        files = tf.find_formats(d)
        for name in want:
            if name not in out and name in files:
                out[name] = tf.read_format(files[name])
                if d != BUNDLED_FORMATS:
                    where = str(d)
    return out, where


def _kinds(kinds: Sequence[str | EventKind] | None) -> list[EventKind]:
    if kinds is None:
        return list(EVENT_KINDS)
    out = []
    for name in kinds:
        if isinstance(name, EventKind):
            out.append(name)
            continue
        if name not in KIND_BY_NAME:
            raise FormatError(f"unknown folio event kind {name!r} (known: {', '.join(KIND_BY_NAME)})")
        out.append(EVENT_KINDS[KIND_BY_NAME[name]])
    return out


def read_folio_events(path: str | Path, *, kinds: Sequence[str | EventKind] | None = None, strict: bool = False,
                      cache: bool = True, formats_dir: str | Path | None = None, fmt: str = "auto",
                      workers: int | None = None, block_size: int = DEFAULT_BLOCK) -> FolioTrace:
    """Read the folio-level events of a trace file (plain, gz or zst).

    ``kinds``: event names to extract (default: all of :data:`EVENT_KINDS`), or
    :class:`EventKind` entries not in the table (a new kind needs only its entry).  ``strict``:
    raise :class:`FormatError` at the first malformed line of a wanted event.
    ``formats_dir``: the kernel format files (default: ``formats/`` beside the trace, then
    the bundled 6.18 ones).  ``fmt``: ``auto``, ``ftrace``, ``trace-cmd`` or ``perf``.
    """
    t0 = time.perf_counter()
    fmt = _check_format(fmt)
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"no such trace file: {p}")
    kl = _kinds(kinds)
    formats, where = load_formats(p, formats_dir, [k.name for k in kl])
    prog = compile_program(kl, formats)
    key = None
    if cache:
        key = trace_cache.cache_key(p, {"folio_parser": FOLIO_PARSER_VERSION, "program": prog.digest, "fmt": fmt})
        hit = trace_cache.load(key) if key else None
        if hit is not None:
            df, meta = hit
            if not (strict and (meta["malformed"] or meta["stream_error"])):
                return _from_cache(df, meta, time.perf_counter() - t0)
    reader = BlockReader(p, block_size)
    prefetch = _Prefetch(reader)
    try:
        blocks = iter(prefetch)
        first = next(blocks, b"")
        use_fmt = detect_format(bytes(first[:1 << 16]) or reader.tail[:1 << 16]) if fmt == "auto" else fmt
        asm = _Assembler(str(p), use_fmt, strict, prog)
        _run(itertools.chain([first] if first else [], blocks), asm, _workers(workers))
    finally:
        prefetch.close()
    truncated = reader.stream_error is not None
    asm.add_tail(reader.tail, truncated)
    if truncated:
        if strict:
            raise FormatError(f"{reader.stream_error}; {asm.lines} lines decoded", str(p))
        asm.malformed["truncated_stream"] = 1
    res = FolioTrace(frames=asm.frames(), source=str(p), format=use_fmt, lines=asm.lines, formats=where,
                     skipped=asm.skipped, other_events=asm.other, malformed=asm.malformed, examples=asm.examples,
                     lost_events=asm.lost_events, lost_markers=asm.lost_markers,
                     compression=reader.compression, stream_error=reader.stream_error)
    if key is not None:
        trace_cache.store(key, _to_long(res), res._meta())
    res.seconds = time.perf_counter() - t0
    return res


def parse_folio_text(text: str | bytes, *, kinds: Sequence[str | EventKind] | None = None, strict: bool = False,
                     formats_dir: str | Path | None = None, name: str = "<text>", fmt: str = "auto",
                     workers: int | None = 1, block_size: int = DEFAULT_BLOCK) -> FolioTrace:
    """Parse trace text held in memory (same rules as :func:`read_folio_events`, no cache)."""
    t0 = time.perf_counter()
    fmt = _check_format(fmt)
    kl = _kinds(kinds)
    formats, where = load_formats(None, formats_dir, [k.name for k in kl])
    prog = compile_program(kl, formats)
    data = text.encode() if isinstance(text, str) else bytes(text)
    use_fmt = detect_format(data[:1 << 16]) if fmt == "auto" else fmt
    asm = _Assembler(name, use_fmt, strict, prog)
    blocks, tail = iter_bytes_blocks(data, block_size)
    _run(blocks, asm, _workers(workers))
    asm.add_tail(tail, False)
    return FolioTrace(frames=asm.frames(), source=name, format=use_fmt, lines=asm.lines, formats=where,
                      skipped=asm.skipped, other_events=asm.other, malformed=asm.malformed, examples=asm.examples,
                      lost_events=asm.lost_events, lost_markers=asm.lost_markers,
                      seconds=time.perf_counter() - t0)


def _to_long(res: FolioTrace) -> pl.DataFrame:
    """All kinds in one frame for the cache: header columns, ``kind`` and ``v0..vN``."""
    width = max((len(f.columns) - len(HEADER_SCHEMA) for f in res.frames.values()), default=0)
    parts = []
    for k, f in enumerate(res.frames.values()):
        cols = [c for c in f.columns if c not in HEADER_SCHEMA]
        sel = [pl.col(c).alias(c) for c in HEADER_SCHEMA] + [pl.lit(k, dtype=pl.UInt8()).alias("kind")]
        sel += [pl.col(c).alias(f"v{i}") for i, c in enumerate(cols)]
        sel += [pl.lit(None, dtype=pl.Int64()).alias(f"v{i}") for i in range(len(cols), width)]
        parts.append(f.select(sel))
    if not parts:
        return pl.DataFrame({c: pl.Series(c, [], dtype=d) for c, d in HEADER_SCHEMA.items()})
    return pl.concat(parts)


def _from_cache(df: pl.DataFrame, meta: dict, seconds: float) -> FolioTrace:
    frames = {}
    for k, (name, cols) in enumerate(meta["kinds"].items()):
        fields = [c for c in cols if c not in HEADER_SCHEMA]
        sub = df.filter(pl.col("kind") == k) if "kind" in df.columns else df.head(0)
        frames[name] = sub.select([pl.col(c) for c in HEADER_SCHEMA] + [pl.col(f"v{i}").alias(c)
                                                                          for i, c in enumerate(fields)])
    return FolioTrace(frames=frames, source=meta["source"], format=meta["format"], lines=meta["lines"],
                      formats=meta["formats"], skipped=meta["skipped"], other_events=dict(meta["other_events"]),
                      malformed=dict(meta["malformed"]), examples=[tuple(x) for x in meta["examples"]],
                      lost_events=meta["lost_events"], lost_markers=meta["lost_markers"],
                      compression=meta["compression"], stream_error=meta["stream_error"], seconds=seconds,
                      from_cache=True)
