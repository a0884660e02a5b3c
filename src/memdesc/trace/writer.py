"""Write a trace frame back as ftrace text (plain, ``.gz`` or ``.zst``).

Theory
------
:func:`write_ftrace` prints each row exactly as ``trace_pipe`` prints the event on a
6.18 kernel, so that :func:`memdesc.trace.reader.read_trace` gives the same rows back:

* header ``"%16s-%-7d [%03d] %s %5lu.%06lu: "`` (``kernel/trace/trace_output.c``):
  the task name right-aligned in 16 columns (``<...>`` when the frame has no ``comm``
  column, as ftrace prints a task whose name it did not record), the pid left-aligned in
  7, the CPU, the irq-flags column (``.....``: the frame does not keep irq state) and
  the timestamp in microseconds (nine digits if a timestamp is not a whole number of
  microseconds, so nothing is lost);
* payload: the ``TP_printk`` format of the event (``include/trace/events/kmem.h``),
  ``pfn=0x%lx``, ``gfp_flags`` printed by :func:`memdesc.mm.gfp.format_gfp`.  ``page=``
  is the unhashed ``%p`` of the ``struct page`` (vmemmap at ``0xffffea0000000000``,
  64-byte pages: what ``no_hash_pointers`` would show); a failed allocation prints
  ``page=0000000000000000 pfn=0x0`` as the kernel does.

The text is produced by a numba kernel in blocks of rows (bounded memory) and streamed
to the output; gfp and task-name strings are formatted once per distinct value.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import zstandard

from memdesc._numba import njit
from memdesc.errors import FormatError
from memdesc.mm.gfp import format_gfp
from memdesc.mm.mmzone import PAGEBLOCK_ORDER
from memdesc.trace.events import (
    ALLOC,
    ALLOC_ZONE_LOCKED,
    COMM_COLUMN,
    EVENT_NAMES,
    EXTFRAG,
    NR_EVENTS,
    PCPU_DRAIN,
    SCHEMA,
)

#: ``struct page`` address of pfn 0 on x86-64 with the default (non-KASLR) vmemmap base
VMEMMAP_BASE = 0xFFFFEA0000000000
STRUCT_PAGE_SIZE = 64
_VMEMMAP_SPAN = 1 << 40  # offsets below this print as "ffffea" + 10 hex digits
_ROWS_PER_BLOCK = 65536

FTRACE_HEADER = (
    "# tracer: nop\n"
    "#\n"
    "# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}\n"
    "#\n"
    "#                                _-----=> irqs-off/BH-disabled\n"
    "#                               / _----=> need-resched\n"
    "#                              | / _---=> hardirq/softirq\n"
    "#                              || / _--=> preempt-depth\n"
    "#                              ||| / _-=> migrate-disable\n"
    "#                              |||| /     delay\n"
    "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
    "#              | |         |   |||||     |         |\n"
)


def _strtab(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = [s.encode() for s in strings] or [b""]
    width = max(1, max(len(b) for b in raw))
    tab = np.zeros((len(raw), width), dtype=np.uint8)
    lens = np.zeros(len(raw), dtype=np.int64)
    for i, b in enumerate(raw):
        tab[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        lens[i] = len(b)
    return tab, lens


def _lit(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8).copy()


_NAME_TAB, _NAME_LEN = _strtab(list(EVENT_NAMES))
_L_PAGE = _lit("page=")
_L_PFN = _lit(" pfn=0x")
_L_ORDER = _lit(" order=")
_L_MT = _lit(" migratetype=")
_L_GFP = _lit(" gfp_flags=")
_L_REFILL = _lit(" percpu_refill=")
_L_AORDER = _lit(" alloc_order=")
_L_FBO = _lit(" fallback_order=")
_L_PBO = _lit(" pageblock_order=")
_L_AMT = _lit(" alloc_migratetype=")
_L_FBMT = _lit(" fallback_migratetype=")
_L_FRAG = _lit(" fragmenting=")
_L_CHOWN = _lit(" change_ownership=")
_L_FLAGS = _lit(" [")
_L_VMEMMAP = _lit(f"{VMEMMAP_BASE >> 40:06x}")


@njit
def _put(out, o, lit):
    for k in range(lit.shape[0]):
        out[o + k] = lit[k]
    return o + lit.shape[0]


@njit
def _put_row(out, o, tab, lens, i):
    for k in range(lens[i]):
        out[o + k] = tab[i, k]
    return o + lens[i]


@njit
def _ndigits(v, base):
    n = 1
    while v >= base:
        v //= base
        n += 1
    return n


@njit
def _put_uint(out, o, v, width, pad, base):
    """Unsigned ``v`` in ``base`` (10/16, lowercase), right-aligned to ``width`` with ``pad``."""
    nd = _ndigits(v, base)
    for _ in range(width - nd):
        out[o] = pad
        o += 1
    k = o + nd - 1
    while True:
        d = v % base
        out[k] = 48 + d if d < 10 else 87 + d
        v //= base
        k -= 1
        if v == 0:
            break
    return o + nd


@njit
def _put_int(out, o, v):
    if v < 0:
        out[o] = 45
        return _put_uint(out, o + 1, -v, 0, 32, 10)
    return _put_uint(out, o, v, 0, 32, 10)


@njit
def format_ftrace_lines(out, event, cpu, ts, pid, pfn, order, gfp_id, mt, refill, fbo, fbmt, frag,
                        chown, comm_id, comm_tab, comm_len, gfp_tab, gfp_len, ts_digits, pb_order):
    """Print rows as ftrace lines into ``out`` (bytes); returns the number of bytes used."""
    o = 0
    for i in range(event.shape[0]):
        # "%16s-%-7d [%03d] ..... %5lu.%06lu: "
        c = comm_id[i]
        for _ in range(16 - comm_len[c]):
            out[o] = 32
            o += 1
        o = _put_row(out, o, comm_tab, comm_len, c)
        out[o] = 45
        o += 1
        start = o
        o = _put_uint(out, o, pid[i], 0, 32, 10)
        while o - start < 7:
            out[o] = 32
            o += 1
        o = _put(out, o, _L_FLAGS)
        o = _put_uint(out, o, cpu[i], 3, 48, 10)
        out[o] = 93  # ']'
        out[o + 1] = 32
        o += 2
        for _ in range(5):
            out[o] = 46  # '.'
            o += 1
        out[o] = 32
        o += 1
        t = ts[i]
        if ts_digits == 6:
            o = _put_uint(out, o, t // 1_000_000_000, 5, 32, 10)
            out[o] = 46
            o = _put_uint(out, o + 1, (t % 1_000_000_000) // 1000, 6, 48, 10)
        else:
            o = _put_uint(out, o, t // 1_000_000_000, 5, 32, 10)
            out[o] = 46
            o = _put_uint(out, o + 1, t % 1_000_000_000, 9, 48, 10)
        out[o] = 58
        out[o + 1] = 32
        o += 2
        ev = event[i]
        o = _put_row(out, o, _NAME_TAB, _NAME_LEN, ev)
        out[o] = 58
        out[o + 1] = 32
        o += 2
        # payload
        p = pfn[i]
        o = _put(out, o, _L_PAGE)
        if p < 0:
            o = _put_uint(out, o, 0, 16, 48, 16)
            p = 0
        else:
            off = p * STRUCT_PAGE_SIZE
            if off < _VMEMMAP_SPAN:
                o = _put(out, o, _L_VMEMMAP)
                o = _put_uint(out, o, off, 10, 48, 16)
            else:
                o = _put_uint(out, o, off, 16, 48, 16)
        o = _put(out, o, _L_PFN)
        o = _put_uint(out, o, p, 0, 48, 16)
        if ev == EXTFRAG:
            o = _put(out, o, _L_AORDER)
            o = _put_int(out, o, order[i])
            o = _put(out, o, _L_FBO)
            o = _put_int(out, o, fbo[i])
            o = _put(out, o, _L_PBO)
            o = _put_int(out, o, pb_order)
            o = _put(out, o, _L_AMT)
            o = _put_int(out, o, mt[i])
            o = _put(out, o, _L_FBMT)
            o = _put_int(out, o, fbmt[i])
            o = _put(out, o, _L_FRAG)
            o = _put_int(out, o, frag[i])
            o = _put(out, o, _L_CHOWN)
            o = _put_int(out, o, chown[i])
        else:
            o = _put(out, o, _L_ORDER)
            o = _put_int(out, o, order[i])
            if ev == ALLOC or ev == ALLOC_ZONE_LOCKED or ev == PCPU_DRAIN:
                o = _put(out, o, _L_MT)
                o = _put_int(out, o, mt[i])
            if ev == ALLOC:
                o = _put(out, o, _L_GFP)
                o = _put_row(out, o, gfp_tab, gfp_len, gfp_id[i])
            elif ev == ALLOC_ZONE_LOCKED:
                o = _put(out, o, _L_REFILL)
                o = _put_int(out, o, refill[i])
        out[o] = 10
        o += 1
    return o


def _check(df: pl.DataFrame) -> None:
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise FormatError(f"cannot write a trace frame without columns {missing}")
    checks = [
        ("event", (pl.col("event") >= NR_EVENTS).any(), "an event code outside 0..5"),
        ("ts_ns", (pl.col("ts_ns") < 0).any(), "a negative timestamp"),
        ("pid", (pl.col("pid") < 0).any(), "a negative pid"),
        ("cpu", (pl.col("cpu") < 0).any(), "a negative cpu"),
        ("pfn", (pl.col("pfn") < -1).any(), "a pfn below -1"),
        ("pfn", ((pl.col("pfn") == -1) & ~pl.col("event").is_in([ALLOC, ALLOC_ZONE_LOCKED])).any(),
         "pfn -1 (a failed allocation) on an event other than an allocation"),
        ("order", ((pl.col("order") < 0) | (pl.col("order") > 63)).any(), "an order outside 0..63"),
    ]
    bad = df.select([expr.alias(f"{i}") for i, (_, expr, _) in enumerate(checks)]).row(0)
    for flag, (col, _, what) in zip(bad, checks, strict=True):
        if flag:
            raise FormatError(f"cannot write the trace: column {col!r} has {what}")


def _open_out(path: Path, level: int):
    name = path.name.lower()
    if name.endswith(".zst") or name.endswith(".zstd"):
        fh = open(path, "wb")
        return zstandard.ZstdCompressor(level=level).stream_writer(fh, closefd=True)
    if name.endswith(".gz"):
        return gzip.open(path, "wb", compresslevel=min(max(level, 1), 9))
    return open(path, "wb")


def write_ftrace(df: pl.DataFrame, path: str | Path, *, header: bool = False, level: int = 3) -> int:
    """Write a trace frame as ftrace text; returns the number of lines written.

    ``path`` ending in ``.zst`` is zstd-compressed (``level``), ``.gz`` gzip, else plain.
    ``header=True`` starts the file with the header of ``/sys/kernel/tracing/trace``.
    """
    _check(df)
    path = Path(path)
    n = df.height
    # distinct values are few: format each once (sorted unique + searchsorted, no full sort)
    gfp_vals = df.get_column("gfp").to_numpy()
    uniq = np.sort(df.get_column("gfp").unique().to_numpy())
    gfp_id = np.searchsorted(uniq, gfp_vals)
    gfp_tab, gfp_len = _strtab([format_gfp(int(v)) for v in uniq.tolist()])
    if COMM_COLUMN in df.columns:
        comm_col = df.get_column(COMM_COLUMN).cast(pl.String).fill_null("<...>")
        names = comm_col.unique().sort()
        comm_id = (comm_col.rank("dense").cast(pl.Int64) - 1).to_numpy()
        comm_tab, comm_len = _strtab([s[:64] for s in names.to_list()])
    else:
        comm_tab, comm_len = _strtab(["<...>"])
        comm_id = np.zeros(n, dtype=np.int64)
    ts = df.get_column("ts_ns").to_numpy()
    ts_digits = 6 if n == 0 or not np.any(ts % 1000) else 9
    cols = {c: np.ascontiguousarray(df.get_column(c).to_numpy()) for c in
            ("event", "cpu", "pid", "pfn", "order", "migratetype", "percpu_refill", "fallback_order",
             "fallback_migratetype", "fragmenting", "change_ownership")}
    ts = np.ascontiguousarray(ts)
    gfp_id = np.ascontiguousarray(gfp_id.astype(np.int64))
    comm_id = np.ascontiguousarray(comm_id.astype(np.int64))
    # longest possible line: header 16+comm+1+10+2+5+2+6+1+21+11+27+2, payload <= 300 + gfp
    row_max = 120 + int(comm_len.max()) + 300 + int(gfp_len.max())
    with _open_out(path, level) as out:
        if header:
            ncpu = int(cols["cpu"].max()) + 1 if n else 1
            out.write(FTRACE_HEADER.format(n=n, cpus=ncpu).encode())
        buf = np.empty(_ROWS_PER_BLOCK * row_max, dtype=np.uint8)
        for a in range(0, n, _ROWS_PER_BLOCK):
            b = min(n, a + _ROWS_PER_BLOCK)
            used = format_ftrace_lines(
                buf, cols["event"][a:b], cols["cpu"][a:b], ts[a:b], cols["pid"][a:b], cols["pfn"][a:b],
                cols["order"][a:b], gfp_id[a:b], cols["migratetype"][a:b], cols["percpu_refill"][a:b],
                cols["fallback_order"][a:b], cols["fallback_migratetype"][a:b], cols["fragmenting"][a:b],
                cols["change_ownership"][a:b], comm_id[a:b], comm_tab, comm_len, gfp_tab, gfp_len,
                ts_digits, PAGEBLOCK_ORDER)
            out.write(buf[:used].tobytes())
    return n
