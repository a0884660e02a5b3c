"""compaction:mm_compaction_isolate_freepages events of a trace, for exact replay.

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

The events are read by the folio-level reader (:mod:`memdesc.trace.folio_events`, driven
by the capture's format files, or the bundled 6.18 ones), with their source line numbers,
which number the same lines as the kmem reader's ``line`` column, so the two merge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from memdesc.trace.folio_events import read_folio_events

ISOLATE = "mm_compaction_isolate_freepages"
FAST = "mm_compaction_fast_isolate_freepages"
SCHEMA = {"line": pl.UInt64(), "cpu": pl.Int16(), "ts_ns": pl.Int64(), "start_pfn": pl.Int64(),
          "end_pfn": pl.Int64(), "nr_scanned": pl.Int64(), "nr_taken": pl.Int64(), "fast": pl.Boolean()}


def read_isolate_freepages(path: str | Path, cache: bool = True) -> tuple[pl.DataFrame, int]:
    """The (fast_)isolate_freepages events of a trace file: (frame of :data:`SCHEMA` in line
    order, number of such lines that did not parse)."""
    res = read_folio_events(path, kinds=(ISOLATE, FAST), cache=cache)
    frames = []
    for kind, fast in ((ISOLATE, False), (FAST, True)):
        f = res.events(kind)
        frames.append(f.select([pl.col(c).cast(t) for c, t in SCHEMA.items() if c != "fast"])
                      .with_columns(pl.lit(fast).alias("fast")))
    return pl.concat(frames).sort("line"), res.n_malformed


def isolate_columns(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """numpy columns of the (slow-scanner) isolate_freepages events, in line order."""
    d = df.filter(~pl.col("fast")).sort("line")
    return {c: d[c].to_numpy() for c in ("line", "cpu", "ts_ns", "start_pfn", "end_pfn", "nr_taken")}
