"""Read kmem page-allocator traces (ftrace, trace-cmd report, perf script) into polars.

Theory
------
A trace is a text file of events, one per line (see :mod:`memdesc.trace.textparse` for
the line grammar of the three producers).  :func:`read_trace` turns it into a
:class:`polars.DataFrame` with the schema of :mod:`memdesc.trace.events` — one row per
kmem page event, in source order — plus a :class:`TraceReadResult` account of
everything that was *not* turned into a row:

* comment (``#``), blank and preamble lines are skipped silently;
* other tracepoints are counted per name (``unknown_events``) and skipped;
* lost-event markers (``CPU:1 [LOST 12 EVENTS]``) add to ``lost_events``;
* malformed lines are counted per kind (``malformed``); with ``strict=True`` the first
  one raises :class:`~memdesc.errors.FormatError` naming the file, line number and line.

So ``lines == skipped + sum(unknown_events) + lost_markers + sum(malformed) + len(df)``
(``truncated_stream`` is not a line and is not in that sum).

Pipeline: a producer thread reads and decompresses blocks of whole lines
(:mod:`memdesc.trace.source`); up to ``workers`` threads run the numba line parser on
blocks (it releases the GIL); the calling thread maps the few hundred distinct gfp
strings through :func:`memdesc.mm.gfp.parse_gfp`, gathers the rows of each block and
concatenates the columns.  No Python code runs per line.  The parsed frame is cached
as Parquet (:mod:`memdesc.trace.cache`), so reading the same unchanged file again
skips all of this.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from memdesc.errors import FormatError
from memdesc.mm.gfp import parse_gfp
from memdesc.trace import cache as trace_cache
from memdesc.trace import textparse as tp
from memdesc.trace.events import (
    COMM_COLUMN,
    COMM_DTYPE,
    EVENT_BY_NAME,
    EVENT_NAMES,
    NUMPY_DTYPES,
    SCHEMA,
    SUBSYSTEM,
    empty_frame,
)
from memdesc.trace.source import DEFAULT_BLOCK, BlockReader, iter_bytes_blocks

FORMATS = ("ftrace", "trace-cmd", "perf")
_SEP = {"ftrace": tp.SEP_DASH, "trace-cmd": tp.SEP_DASH, "perf": tp.SEP_BLANK}
_MAX_EXAMPLES = 20


@dataclass
class TraceReadResult:
    """A parsed trace and the account of its lines.

    ``df``: the events (schema :data:`memdesc.trace.events.SCHEMA`, plus ``comm`` if
    asked).  ``lines``: lines read.  ``skipped``: blank, comment and preamble lines.
    ``unknown_events``: other tracepoints, count per name as printed.  ``malformed``:
    count per kind (:data:`memdesc.trace.events.MALFORMED_KINDS`; only kinds seen).
    ``examples``: the first malformed lines as (line number, kind, text).
    ``lost_events``/``lost_markers``: events the ring buffer dropped, as reported by
    ``[LOST n EVENTS]``/``[n EVENTS DROPPED]`` lines.  ``format``: ``ftrace``,
    ``trace-cmd`` or ``perf``.  ``compression``: ``plain``, ``gzip`` or ``zstd``.
    ``stream_error``: why a compressed input stopped early (None if it did not).
    ``seconds``: wall time of this read.  ``from_cache``: the frame came from the cache.
    """

    df: pl.DataFrame
    source: str
    format: str
    lines: int
    skipped: int = 0
    unknown_events: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, str, str]] = field(default_factory=list)
    lost_events: int = 0
    lost_markers: int = 0
    compression: str = "plain"
    stream_error: str | None = None
    seconds: float = 0.0
    from_cache: bool = False

    @property
    def events(self) -> int:
        return self.df.height

    @property
    def n_malformed(self) -> int:
        return sum(v for k, v in self.malformed.items() if k != "truncated_stream")

    def event_counts(self) -> dict[str, int]:
        """Rows per event name (every kmem event, zeros included)."""
        counts = np.bincount(self.df["event"].to_numpy(), minlength=len(EVENT_NAMES))
        return {name: int(counts[i]) for i, name in enumerate(EVENT_NAMES)}

    def summary(self) -> str:
        parts = [f"{self.source}: {self.format} ({self.compression}), {self.lines} lines, "
                 f"{self.events} events in {self.seconds:.3f} s"
                 + (" (cached)" if self.from_cache else "")]
        if self.unknown_events:
            parts.append(f"other events skipped: {self.unknown_events}")
        if self.malformed:
            parts.append(f"malformed: {self.malformed}")
        if self.lost_markers:
            parts.append(f"lost events: {self.lost_events} ({self.lost_markers} markers)")
        if self.stream_error:
            parts.append(f"stream error: {self.stream_error}")
        return "; ".join(parts)

    def _meta(self) -> dict:
        return {"source": self.source, "format": self.format, "lines": self.lines,
                "skipped": self.skipped, "unknown_events": self.unknown_events,
                "malformed": self.malformed, "examples": self.examples,
                "lost_events": self.lost_events, "lost_markers": self.lost_markers,
                "compression": self.compression, "stream_error": self.stream_error}

    @classmethod
    def _from_meta(cls, df: pl.DataFrame, meta: dict, seconds: float) -> TraceReadResult:
        return cls(df=df, source=meta["source"], format=meta["format"], lines=meta["lines"],
                   skipped=meta["skipped"], unknown_events=dict(meta["unknown_events"]),
                   malformed=dict(meta["malformed"]),
                   examples=[tuple(x) for x in meta["examples"]],
                   lost_events=meta["lost_events"], lost_markers=meta["lost_markers"],
                   compression=meta["compression"], stream_error=meta["stream_error"],
                   seconds=seconds, from_cache=True)


# ------------------------------------------------------------------------------
# format detection
# ------------------------------------------------------------------------------
_FTRACE_RE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:(?P<flags>\S+)\s+)?"
    r"(?P<ts>\d+(?:\.\d+)?):\s+(?P<event>\S+):(?P<pad>\s*)")
_PERF_RE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?:\d+/)?(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+(?:\.\d+)?):\s+"
    r"(?P<event>\S+):")
_PREAMBLE_RE = re.compile(r"^(?:cpus=\d+|version = \d+|CPU \d+ is empty)$")


def detect_format(sample: bytes | str) -> str:
    """``"ftrace"``, ``"trace-cmd"`` or ``"perf"`` from the first lines of a trace.

    perf if its ``<comm> <tid> [cpu]`` header fits more lines than ftrace's
    ``<comm>-<pid> [cpu]``; trace-cmd if there is its preamble (``cpus=N``) or the lines
    have no irq-flags column and the event name is padded (``mm_page_free:      page=``);
    ftrace otherwise (also when nothing fits: the caller then reports malformed lines).
    """
    text = sample.decode("utf-8", "replace") if isinstance(sample, bytes) else sample
    n_ftrace = n_perf = n_tracecmd = n_padded = n_lines = 0
    preamble = False
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if _PREAMBLE_RE.match(s):
            preamble = True
            continue
        n_lines += 1
        if n_lines > 200:
            break
        m = _FTRACE_RE.match(line)
        if m:
            n_ftrace += 1
            if m.group("flags") is None and len(m.group("event")) < 19:
                # trace-cmd pads short event names to 20 columns; ftrace prints one blank
                n_tracecmd += 1
                n_padded += len(m.group("pad")) >= 2
        if _PERF_RE.match(line):
            n_perf += 1
    if n_perf > n_ftrace:
        return "perf"
    if preamble or (n_tracecmd and 2 * n_padded > n_tracecmd):
        return "trace-cmd"
    return "ftrace"


# ------------------------------------------------------------------------------
# messages for malformed lines (used for strict errors and examples only)
# ------------------------------------------------------------------------------
_REQUIRED_KEYS = {
    "mm_page_alloc": ("pfn", "order", "migratetype", "gfp_flags"),
    "mm_page_alloc_zone_locked": ("pfn", "order", "migratetype", "percpu_refill"),
    "mm_page_free": ("pfn", "order"),
    "mm_page_free_direct": ("pfn", "order"),
    "mm_page_free_batched": ("pfn",),
    "mm_pagevec_free": ("pfn",),
    "mm_page_pcpu_drain": ("pfn", "order", "migratetype"),
    "mm_page_alloc_extfrag": ("pfn", "alloc_order", "fallback_order", "alloc_migratetype",
                              "fallback_migratetype", "fragmenting", "change_ownership"),
}
_INT_KEYS = {"order", "migratetype", "percpu_refill", "alloc_order", "fallback_order",
             "alloc_migratetype", "fallback_migratetype", "fragmenting", "change_ownership"}


def _explain(kind: str, line: str, fmt: str, gfp_error: str | None = None) -> str:
    if kind == "not_an_event":
        shape = ("'<task> <tid> [<cpu>] <secs>: kmem:<event>: <key>=<value> ...'" if fmt == "perf"
                 else "'<task>-<pid> [<cpu>] [<flags>] <secs>: <event>: <key>=<value> ...'")
        return f"not a {fmt} event line (expected {shape})"
    m = re.search(r"\s(?:kmem:)?(mm_\w+):(.*)$", line)
    event = m.group(1) if m else None
    fields = dict(re.findall(r"(\w+)=\s*(\S+)", m.group(2))) if m else {}
    if kind in ("truncated", "missing_field") and event in _REQUIRED_KEYS:
        missing = [k for k in _REQUIRED_KEYS[event] if k not in fields]
        what = "cut short" if kind == "truncated" else "incomplete"
        return f"{event} line {what}: missing {', '.join(missing) or 'a value'}"
    if kind == "truncated":
        return "event line cut short"
    if gfp_error is not None:
        return f"bad gfp_flags: {gfp_error}"
    for key, value in fields.items():
        if key == "pfn" and not re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}|\d{1,18}", value):
            return f"bad pfn {value!r}"
        if key in _INT_KEYS and not re.fullmatch(r"-?\d{1,3}", value):
            return f"bad {key} {value!r}"
        if key in ("order", "alloc_order") and not 0 <= int(value) <= 63:
            return f"bad {key} {value!r}"
    return "malformed event line (a field does not parse)"


# ------------------------------------------------------------------------------
# assembling blocks
# ------------------------------------------------------------------------------
class _GfpTable:
    """parse_gfp over distinct strings, remembered for the whole read."""

    def __init__(self, names):
        self._parse = parse_gfp
        self._names = names
        self._memo: dict[str, tuple[int, str | None]] = {}

    def lookup(self, strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """(values, bad, errors) with one extra last slot for "no gfp" (id -1)."""
        vals = np.zeros(len(strings) + 1, dtype=np.uint64)
        bad = np.zeros(len(strings) + 1, dtype=bool)
        errors: list[str | None] = [None] * (len(strings) + 1)
        for i, s in enumerate(strings):
            got = self._memo.get(s)
            if got is None:
                try:
                    got = (self._parse(s, self._names), None)
                except FormatError as exc:
                    got = (0, str(exc))
                self._memo[s] = got
            vals[i], errors[i] = got
            bad[i] = got[1] is not None
        return vals, bad, errors


class _Assembler:
    def __init__(self, source: str, fmt: str, strict: bool, comm: bool, gfp_names):
        self.source = source
        self.fmt = fmt
        self.strict = strict
        self.comm = comm
        self.gfp = _GfpTable(gfp_names)
        self.lines = 0
        self.skipped = 0
        self.lost_events = 0
        self.lost_markers = 0
        self.unknown: dict[str, int] = {}
        self.malformed: dict[str, int] = {}
        self.examples: list[tuple[int, str, str]] = []
        self.cols: dict[str, list[np.ndarray]] = {name: [] for name in SCHEMA}
        self.comm_ids: list[np.ndarray] = []
        self.comm_names: list[str] = []
        self._comm_index: dict[str, int] = {}

    def add(self, pb: tp.ParsedBuffer) -> None:
        n = pb.n
        base = self.lines
        status = pb.status
        lc = pb.cols
        gfp_ids = lc["gfp"]
        vals, bad, errors = self.gfp.lookup(pb.gfp_strings)
        ok = status == tp.ST_OK
        gfp_err_line: dict[int, str] = {}
        if bad.any():
            badline = ok & bad[gfp_ids]
            for i in np.flatnonzero(badline)[:_MAX_EXAMPLES].tolist():
                gfp_err_line[i] = errors[int(gfp_ids[i])]
            status = status.copy()
            status[badline] = tp.ST_BAD_FIELD
            ok &= ~badline
        counts = np.bincount(status, minlength=tp.ST_MISSING_FIELD + 1)
        if counts[tp.ST_OK] < n:
            self._account(pb, status, counts, base, gfp_err_line)
        if counts[tp.ST_OK] == n:
            rows = slice(None)  # every line is an event: take the columns as they are
            line = np.arange(base + 1, base + n + 1, dtype=np.uint64)
        else:
            rows = np.flatnonzero(ok)
            line = rows.astype(np.uint64) + np.uint64(base + 1)
        c = self.cols
        c["line"].append(line)
        for name in SCHEMA:
            if name not in ("line", "gfp"):
                c[name].append(lc[name][rows])
        c["gfp"].append(vals[gfp_ids[rows]])
        if self.comm:
            lut = np.empty(len(pb.comm_strings), dtype=np.uint32)
            for j, name in enumerate(pb.comm_strings):
                g = self._comm_index.get(name)
                if g is None:
                    g = self._comm_index[name] = len(self.comm_names)
                    self.comm_names.append(name)
                lut[j] = g
            self.comm_ids.append(lut[lc["comm"][rows]])
        self.lines += n

    def _account(self, pb: tp.ParsedBuffer, status: np.ndarray, counts: np.ndarray, base: int,
                 gfp_err_line: dict[int, str]) -> None:
        """Count (or, strict, raise on) the lines of a block that are not events."""
        bad_idx = np.flatnonzero(status >= tp.ST_NOT_AN_EVENT)
        if bad_idx.size:
            if self.strict:
                i = int(bad_idx[0])
                kind = tp.STATUS_KIND[int(status[i])]
                text = pb.line_text(i)
                raise FormatError(_explain(kind, text, self.fmt, gfp_err_line.get(i)),
                                  self.source, base + i + 1, text)
            for st_code, kind in tp.STATUS_KIND.items():
                if counts[st_code]:
                    self.malformed[kind] = self.malformed.get(kind, 0) + int(counts[st_code])
            for i in bad_idx[: max(0, _MAX_EXAMPLES - len(self.examples))].tolist():
                self.examples.append((base + i + 1, tp.STATUS_KIND[int(status[i])], pb.line_text(i)))
        self.skipped += int(counts[tp.ST_SKIP])
        if counts[tp.ST_LOST]:
            self.lost_markers += int(counts[tp.ST_LOST])
            self.lost_events += int(pb.cols["pfn"][status == tp.ST_LOST].sum())
        if counts[tp.ST_UNKNOWN]:
            per = np.bincount(pb.cols["name"][status == tp.ST_UNKNOWN], minlength=len(pb.name_strings))
            for name, k in zip(pb.name_strings, per.tolist(), strict=True):
                if k:
                    self.unknown[name] = self.unknown.get(name, 0) + k

    def add_tail(self, tail: bytes, truncated: bool) -> None:
        """The last line without a newline; when the stream was cut it is a partial line."""
        if not tail:
            return
        if not truncated:
            self.add(tp.parse_bytes(tail, _SEP[self.fmt], self.comm))
            return
        text = tail.decode("utf-8", "replace")
        if self.strict:
            raise FormatError("input ends in the middle of a line (truncated stream)",
                              self.source, self.lines + 1, text)
        self.lines += 1
        self.malformed["truncated"] = self.malformed.get("truncated", 0) + 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append((self.lines, "truncated", text))

    def frame(self) -> pl.DataFrame:
        if not self.cols["line"] or sum(a.size for a in self.cols["line"]) == 0:
            return empty_frame(self.comm)
        data = {}
        for name, dt in SCHEMA.items():
            data[name] = pl.Series(name, np.concatenate(self.cols[name]), dtype=dt)
        df = pl.DataFrame(data)
        if self.comm:
            ids = np.concatenate(self.comm_ids)
            cats = pl.Series(COMM_COLUMN, self.comm_names, dtype=pl.String)
            df = df.with_columns(cats.gather(ids).cast(COMM_DTYPE).alias(COMM_COLUMN))
        return df


def _run(blocks: Iterable[bytes], asm: _Assembler, workers: int) -> None:
    """Parse blocks on ``workers`` threads, feeding results to ``asm`` in order."""
    sep = _SEP[asm.fmt]
    if workers <= 1:
        for block in blocks:
            asm.add(tp.parse_bytes(block, sep, asm.comm))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for block in blocks:
            pending.append(pool.submit(tp.parse_bytes, block, sep, asm.comm))
            while len(pending) > workers:
                asm.add(pending.pop(0).result())
        for fut in pending:
            asm.add(fut.result())


class _Prefetch:
    """Run an iterator in a thread (decompression overlaps parsing); re-raise its errors."""

    _END = object()

    def __init__(self, it: Iterable[bytes], depth: int = 3):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._work, args=(it,), daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, it):
        try:
            for item in it:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the producer (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._t.join()


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(4, os.cpu_count() or 1))
    if workers < 1:
        raise FormatError(f"workers must be >= 1, got {workers}")
    return int(workers)


def _check_format(fmt: str) -> str:
    if fmt != "auto" and fmt not in FORMATS:
        raise FormatError(f"unknown trace format {fmt!r}: expected 'auto' or one of {', '.join(FORMATS)}")
    return fmt


# ------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------
def read_trace(path: str | Path, *, fmt: str = "auto", strict: bool = False, comm: bool = False,
               cache: bool = True, gfp_names: Sequence[tuple[int, str]] | None = None,
               workers: int | None = None, block_size: int = DEFAULT_BLOCK) -> TraceReadResult:
    """Read a kmem trace file (plain, ``.gz`` or ``.zst``; recognised by content).

    ``fmt``: ``"auto"`` (detected from the first lines), ``"ftrace"``, ``"trace-cmd"`` or
    ``"perf"``.  ``strict``: raise :class:`~memdesc.errors.FormatError` at the first
    malformed line or at a truncated compressed stream, instead of counting them.
    ``comm``: add the task-name column (costs time and memory).  ``cache``: read/write
    the Parquet cache.  ``gfp_names``: a ``__def_gfpflag_names`` table for traces of a
    kernel other than 6.18 (see :func:`memdesc.mm.gfp.gfpflag_names_from_format`).
    ``workers``: parser threads (default: the number of CPUs, at most 4).
    """
    t0 = time.perf_counter()
    fmt = _check_format(fmt)
    nworkers = _workers(workers)
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"no such trace file: {p}")
    key = None
    if cache:
        opts = {"fmt": fmt, "comm": bool(comm),
                "gfp_names": None if gfp_names is None else [list(x) for x in gfp_names]}
        key = trace_cache.cache_key(p, opts)
        hit = trace_cache.load(key) if key else None
        if hit is not None:
            df, meta = hit
            if not (strict and (meta["malformed"] or meta["stream_error"])):
                return TraceReadResult._from_meta(df, meta, time.perf_counter() - t0)
    reader = BlockReader(p, block_size)
    prefetch = _Prefetch(reader)
    try:
        blocks = iter(prefetch)
        first = next(blocks, b"")
        use_fmt = detect_format(bytes(first[:1 << 16]) or reader.tail[:1 << 16]) if fmt == "auto" else fmt
        asm = _Assembler(str(p), use_fmt, strict, comm, gfp_names)
        _run(itertools.chain([first] if first else [], blocks), asm, nworkers)
    finally:
        prefetch.close()
    truncated = reader.stream_error is not None
    asm.add_tail(reader.tail, truncated)
    if truncated:
        if strict:
            raise FormatError(f"{reader.stream_error}; {asm.lines} lines decoded", str(p))
        asm.malformed["truncated_stream"] = 1
    result = TraceReadResult(
        df=asm.frame(), source=str(p), format=use_fmt, lines=asm.lines, skipped=asm.skipped,
        unknown_events=asm.unknown, malformed=asm.malformed, examples=asm.examples,
        lost_events=asm.lost_events, lost_markers=asm.lost_markers,
        compression=reader.compression, stream_error=reader.stream_error)
    if key is not None:
        trace_cache.store(key, result.df, result._meta())
    result.seconds = time.perf_counter() - t0
    return result


def parse_trace_text(text: str | bytes, *, fmt: str = "auto", strict: bool = False, comm: bool = False,
                     gfp_names: Sequence[tuple[int, str]] | None = None, name: str = "<text>",
                     workers: int | None = None, block_size: int = DEFAULT_BLOCK) -> TraceReadResult:
    """Parse trace text held in memory (same rules as :func:`read_trace`, no cache)."""
    t0 = time.perf_counter()
    fmt = _check_format(fmt)
    data = text.encode() if isinstance(text, str) else bytes(text)
    use_fmt = detect_format(data[:1 << 16]) if fmt == "auto" else fmt
    asm = _Assembler(name, use_fmt, strict, comm, gfp_names)
    blocks, tail = iter_bytes_blocks(data, block_size)
    _run(blocks, asm, _workers(workers))
    asm.add_tail(tail, False)
    return TraceReadResult(
        df=asm.frame(), source=name, format=use_fmt, lines=asm.lines, skipped=asm.skipped,
        unknown_events=asm.unknown, malformed=asm.malformed, examples=asm.examples,
        lost_events=asm.lost_events, lost_markers=asm.lost_markers,
        seconds=time.perf_counter() - t0)


def to_numpy_columns(df: pl.DataFrame, columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The numeric columns of a trace frame as C-contiguous numpy arrays (for numba kernels).

    Dtypes are those of :data:`memdesc.trace.events.NUMPY_DTYPES`; ``comm`` is not included.
    """
    names = list(NUMPY_DTYPES) if columns is None else list(columns)
    out = {}
    for name in names:
        if name not in NUMPY_DTYPES:
            raise FormatError(f"{name!r} is not a numeric trace column ({', '.join(NUMPY_DTYPES)})")
        if name not in df.columns:
            raise FormatError(f"trace frame has no column {name!r}")
        arr = df.get_column(name).to_numpy()
        out[name] = np.ascontiguousarray(arr, dtype=NUMPY_DTYPES[name])
    return out


def event_code(name: str) -> int:
    """Event code of a tracepoint name (``mm_page_free``, ``kmem:mm_page_free``, old names)."""
    base = name.removeprefix(SUBSYSTEM + ":")
    if base not in EVENT_BY_NAME:
        raise FormatError(f"{name!r} is not a kmem page event ({', '.join(EVENT_BY_NAME)})")
    return EVENT_BY_NAME[base]
