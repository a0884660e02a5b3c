"""The kmem page tracepoints: event codes and the column schema of a parsed trace.

Theory
------
The page allocator announces its work through six tracepoints of
``include/trace/events/kmem.h`` (code: what happened):

* ``mm_page_alloc`` (:data:`ALLOC`): ``__alloc_pages()`` returned a block, or failed;
* ``mm_page_alloc_zone_locked`` (:data:`ALLOC_ZONE_LOCKED`): a block was taken off the
  buddy free lists under ``zone->lock`` (``percpu_refill=1``: to refill a per-cpu list);
* ``mm_page_free`` (:data:`FREE`): a block freed (``free_pages_prepare()``, every free);
* ``mm_page_free_batched`` (:data:`FREE_BATCHED`): a folio freed through the batched
  path (``free_unref_folios()``); printed ``order=0`` whatever its order, and the same
  free is *also* reported by ``mm_page_free`` (the real captures show both lines for
  each page), so a replay must not free it twice;
* ``mm_page_pcpu_drain`` (:data:`PCPU_DRAIN`): ``free_pcppages_bulk()`` moved a block
  from a per-cpu list back to the buddy lists;
* ``mm_page_alloc_extfrag`` (:data:`EXTFRAG`): ``__rmqueue_fallback()`` took a block
  from another migratetype's free list (external fragmentation).

Older kernels called ``mm_page_free`` ``mm_page_free_direct`` and
``mm_page_free_batched`` ``mm_pagevec_free``; both names map to the same codes.

One row of a parsed trace is one event.  Every event has the same columns (the
schema below); a column an event does not carry holds its *absent* value.  Invariants
the reader guarantees for every row:

* ``pfn >= 0`` except a failed ``mm_page_alloc``, which has ``pfn == -1`` (the kernel
  records ``pfn=-1UL`` and prints ``page=(null)``/``page=0000000000000000 pfn=0x0``;
  a null page with ``pfn=0`` is a failure, never pfn 0).
* ``0 <= order <= 63``; for ``EXTFRAG`` ``order`` is ``alloc_order`` and
  ``migratetype`` is ``alloc_migratetype``.
* ``gfp`` is the ``gfp_t`` value (:func:`memdesc.mm.gfp.parse_gfp` of the printed flags);
  0 for events that do not print ``gfp_flags``.
* ``migratetype`` is the integer the kernel printed (the numbering of *that* kernel's
  ``enum migratetype``, see :mod:`memdesc.mm.mmzone`); -1 when the event has none.
* rows are in source order; ``line`` is the 1-based line of the source text.
"""

from __future__ import annotations

import polars as pl

#: event codes (values of the ``event`` column); they index arrays of length NR_EVENTS
ALLOC = 0
ALLOC_ZONE_LOCKED = 1
FREE = 2
FREE_BATCHED = 3
PCPU_DRAIN = 4
EXTFRAG = 5
NR_EVENTS = 6

#: current tracepoint name of each code (what the writer prints)
EVENT_NAMES = (
    "mm_page_alloc",
    "mm_page_alloc_zone_locked",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
)

#: every tracepoint name the reader accepts, including the pre-3.3 names
EVENT_BY_NAME = {name: code for code, name in enumerate(EVENT_NAMES)}
EVENT_BY_NAME["mm_page_free_direct"] = FREE
EVENT_BY_NAME["mm_pagevec_free"] = FREE_BATCHED

#: subsystem prefix ``perf script`` puts before the event name
SUBSYSTEM = "kmem"

#: value of a column an event does not carry
ABSENT = -1
#: ``pfn`` of a failed allocation
PFN_FAILED = -1

#: columns of a parsed trace, in order, with their polars types
SCHEMA: dict[str, pl.DataType] = {
    "line": pl.UInt64(),            # 1-based line number in the source text
    "event": pl.UInt8(),            # event code (ALLOC ... EXTFRAG)
    "cpu": pl.Int16(),              # CPU the event was recorded on
    "ts_ns": pl.Int64(),            # timestamp in nanoseconds (trace clock)
    "pid": pl.Int32(),              # common_pid (the task id)
    "pfn": pl.Int64(),              # first pfn of the block; -1: failed allocation
    "order": pl.Int8(),             # order of the block (alloc_order for EXTFRAG)
    "gfp": pl.UInt64(),             # gfp_t value; 0 when the event has no gfp_flags
    "migratetype": pl.Int8(),       # migratetype (alloc_migratetype for EXTFRAG); -1 absent
    "percpu_refill": pl.Int8(),     # ALLOC_ZONE_LOCKED only; -1 absent
    "fallback_order": pl.Int8(),    # EXTFRAG only; -1 absent
    "fallback_migratetype": pl.Int8(),  # EXTFRAG only; -1 absent
    "fragmenting": pl.Int8(),       # EXTFRAG only (fallback_order < pageblock_order); -1 absent
    "change_ownership": pl.Int8(),  # EXTFRAG only; -1 absent
}
#: optional column (``read_trace(..., comm=True)``): the task name
COMM_COLUMN = "comm"
COMM_DTYPE = pl.Categorical()

#: numpy dtypes of the numeric columns (what :func:`memdesc.trace.reader.to_numpy_columns` returns)
NUMPY_DTYPES = {
    "line": "uint64", "event": "uint8", "cpu": "int16", "ts_ns": "int64", "pid": "int32",
    "pfn": "int64", "order": "int8", "gfp": "uint64", "migratetype": "int8",
    "percpu_refill": "int8", "fallback_order": "int8", "fallback_migratetype": "int8",
    "fragmenting": "int8", "change_ownership": "int8",
}

#: kinds of malformed lines (keys of ``TraceReadResult.malformed``)
MALFORMED_KINDS = (
    "not_an_event",     # no "<task>-<pid> [cpu] ... <ts>: <event>:" shape at all
    "truncated",        # a proper prefix of an event line: it ends before its required fields
    "bad_field",        # a field whose value does not parse (non-numeric pfn, unknown gfp flag ...)
    "missing_field",    # a required field absent although later fields are present
    "truncated_stream",  # the compressed input ended in the middle of a frame (counted once)
)


def empty_frame(comm: bool = False) -> pl.DataFrame:
    """A trace with no events (the schema, zero rows)."""
    cols = {name: pl.Series(name, [], dtype=dt) for name, dt in SCHEMA.items()}
    if comm:
        cols[COMM_COLUMN] = pl.Series(COMM_COLUMN, [], dtype=COMM_DTYPE)
    return pl.DataFrame(cols)
