"""Compaction events of a trace: the free scanner's isolations for exact replay, and whole
compaction runs for ``memdesc compact``.

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

A compaction *run* (``compact_zone()``) is framed by ``mm_compaction_begin`` and
``mm_compaction_end`` (``zone_start``, ``migrate_pfn``, ``free_pfn``, ``zone_end``, sync, and
the compact_result at the end); between them, on the same CPU and task, each
``isolate_migratepages_block()`` prints ``mm_compaction_isolate_migratepages`` (range,
nr_scanned, nr_taken pages), each ``isolate_freepages_block()`` the event above, and each
``migrate_pages()`` call ``mm_migrate_pages`` (succeeded pages, failed folios, mode,
reason) then ``mm_compaction_migratepages`` (nr_migrated, nr_failed).
:func:`compaction_runs` attributes every such event to the run whose begin/end lines enclose
it (by pid: runs of different tasks may interleave) and sums them per run.
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


RUN_KINDS = ("mm_compaction_begin", "mm_compaction_end", "mm_compaction_isolate_migratepages", ISOLATE,
             "mm_compaction_migratepages", "mm_migrate_pages")
#: the compact_result names as mm_compaction_end prints them
STATUS = {0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page", 4: "continue", 5: "complete",
          6: "partial_skipped", 7: "contended", 8: "success"}


def compaction_runs(path: str | Path, cache: bool = True) -> tuple[list[dict], int]:
    """The compaction runs of a trace, each a dict: pid, zone_start, zone_end, sync, status,
    migrate_pfn/free_pfn at begin and end, and the sums of the events inside it
    (``isolate_migratepages``: calls, nr_scanned, nr_taken; ``isolate_freepages`` likewise;
    ``migratepages``: calls, nr_migrated, nr_failed; ``migrate_pages``: succeeded, failed).
    Second value: lines of these kinds that did not parse."""
    res = read_folio_events(path, kinds=RUN_KINDS, cache=cache)
    begin = res.events("mm_compaction_begin").sort("line")
    end = res.events("mm_compaction_end").sort("line")
    runs: list[dict] = []
    open_by_pid: dict[int, dict] = {}
    rows = sorted([("b", r) for r in begin.iter_rows(named=True)] + [("e", r) for r in end.iter_rows(named=True)],
                  key=lambda x: x[1]["line"])
    for kind, r in rows:
        pid = int(r["pid"])
        if kind == "b":
            run = {"pid": pid, "line_begin": int(r["line"]), "line_end": None, "zone_start": int(r["zone_start"]),
                   "zone_end": int(r["zone_end"]), "sync": bool(r["sync"]), "migrate_pfn_begin": int(r["migrate_pfn"]),
                   "free_pfn_begin": int(r["free_pfn"]), "migrate_pfn_end": None, "free_pfn_end": None,
                   "status": None}
            open_by_pid[pid] = run
            runs.append(run)
        else:
            run = open_by_pid.pop(pid, None)
            if run is None:
                continue
            run.update(line_end=int(r["line"]), migrate_pfn_end=int(r["migrate_pfn"]), free_pfn_end=int(r["free_pfn"]),
                       status=STATUS.get(int(r["status"]), str(int(r["status"]))))
    sums = {"mm_compaction_isolate_migratepages": ("isolate_migratepages", ("nr_scanned", "nr_taken")),
            ISOLATE: ("isolate_freepages", ("nr_scanned", "nr_taken")),
            "mm_compaction_migratepages": ("migratepages", ("nr_migrated", "nr_failed")),
            "mm_migrate_pages": ("migrate_pages", ("succeeded", "failed", "nr_split"))}
    for run in runs:
        for _kind, (name, cols) in sums.items():
            run[name] = {"calls": 0, **{c: 0 for c in cols}}
    for kind, (name, cols) in sums.items():
        df = res.events(kind)
        if kind == "mm_migrate_pages":
            df = df.filter(pl.col("reason") == 0)  # MR_COMPACTION
        for run in runs:
            if run["line_end"] is None:
                continue
            d = df.filter((pl.col("pid") == run["pid"]) & (pl.col("line") > run["line_begin"])
                          & (pl.col("line") < run["line_end"]))
            run[name] = {"calls": d.height, **{c: int(d[c].sum()) if d.height else 0 for c in cols}}
    return runs, res.n_malformed


def isolate_columns(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """numpy columns of the (slow-scanner) isolate_freepages events, in line order."""
    d = df.filter(~pl.col("fast")).sort("line")
    return {c: d[c].to_numpy() for c in ("line", "cpu", "ts_ns", "start_pfn", "end_pfn", "nr_taken")}
