"""compaction:mm_compaction_isolate_freepages events of a trace (a minimal reading path).

Theory
------
Compaction's free scanner (``isolate_freepages_block()`` in mm/compaction.c) takes free
buddy blocks off the free lists with ``__isolate_free_page()``: no ``mm_page_alloc*``
tracepoint fires.  The isolated blocks become the targets of migration
(``compaction_alloc()``: no tracepoint either), and those left over are handed back
through ``release_free_list()`` -> ``__free_pages()``, which *does* fire
``mm_page_free``.  The only trace of the isolation itself is
``mm_compaction_isolate_freepages``, printed once per scanned range::

    range=(0x<start_pfn> ~ 0x<end_pfn>) nr_scanned=<n> nr_taken=<pages>

``start_pfn`` is where the scan began and ``end_pfn`` where it stopped, so the blocks
taken are the free blocks whose head lies in ``[start_pfn, end_pfn)``, in pfn order,
``nr_taken`` pages in all (``total_isolated``).  ``mm_compaction_fast_isolate_freepages``
shares the format but its range is a search window, not the pages taken; it is read too
(``fast`` column) so a replay can count it.

This module reads only those two events, with their source line numbers (so they can be
merged with the kmem events of :mod:`memdesc.trace.reader`, whose ``line`` column numbers
the same lines), through the same block reader, and caches the result as Parquet.
Other lines are skipped; a line of these events that does not parse is counted.  It is a
stop-gap: the general folio-level reader (``trace/folio_events.py``, being written) will
read these events from the capture's format files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from memdesc.errors import FormatError
from memdesc.trace import cache as trace_cache
from memdesc.trace.source import BlockReader

ISOLATE_FREEPAGES = b"mm_compaction_isolate_freepages: "
FAST_ISOLATE_FREEPAGES = b"mm_compaction_fast_isolate_freepages: "
#: bump when the output for the same input can change
VERSION = 1
SCHEMA = {"line": pl.UInt64(), "cpu": pl.Int16(), "ts_ns": pl.Int64(), "start_pfn": pl.Int64(),
          "end_pfn": pl.Int64(), "nr_scanned": pl.Int64(), "nr_taken": pl.Int64(), "fast": pl.Boolean()}
_LINE = re.compile(rb"\[(\d+)\][^:]*?(\d+)\.(\d+): mm_compaction_(fast_)?isolate_freepages: "
                   rb"range=\(0x([0-9a-fA-F]+) ~ 0x([0-9a-fA-F]+)\) nr_scanned=(\d+) nr_taken=(\d+)")


def read_isolate_freepages(path: str | Path, cache: bool = True) -> tuple[pl.DataFrame, int]:
    """The (fast_)isolate_freepages events of a trace file: (frame of :data:`SCHEMA`,
    number of such lines that did not parse)."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"no such trace file: {p}")
    key = trace_cache.cache_key(p, {"compaction_events": VERSION}) if cache else None
    if key is not None:
        hit = trace_cache.load(key)
        if hit is not None:
            return hit[0], int(hit[1].get("bad", 0))
    rows: dict[str, list] = {k: [] for k in SCHEMA}
    bad = 0
    line0 = 0
    for block in BlockReader(p):
        data = bytes(block)
        nl = 0  # newlines in data[:upto]
        upto = 0
        pos = data.find(b"isolate_freepages: ")
        while pos >= 0:
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            nl += data.count(b"\n", upto, start)
            upto = start
            m = _LINE.search(data, start, end)
            if m is None:
                bad += 1
            else:
                rows["line"].append(line0 + nl + 1)
                rows["cpu"].append(int(m.group(1)))
                rows["ts_ns"].append(int(m.group(2)) * 1_000_000_000 + int(m.group(3).ljust(9, b"0")[:9]))
                rows["start_pfn"].append(int(m.group(5), 16))
                rows["end_pfn"].append(int(m.group(6), 16))
                rows["nr_scanned"].append(int(m.group(7)))
                rows["nr_taken"].append(int(m.group(8)))
                rows["fast"].append(m.group(4) is not None)
            pos = data.find(b"isolate_freepages: ", end)
        line0 += data.count(b"\n")
    df = pl.DataFrame(rows, schema=SCHEMA)
    if key is not None:
        trace_cache.store(key, df, {"bad": bad})
    return df, bad


def isolate_columns(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """numpy columns of the (slow-scanner) isolate_freepages events, in line order."""
    d = df.filter(~pl.col("fast")).sort("line")
    return {c: d[c].to_numpy() for c in ("line", "cpu", "ts_ns", "start_pfn", "end_pfn", "nr_taken")}
