"""The model's own kmem event log as a trace: what ``memdesc churn --trace-out`` writes.

Theory
------
When ``cfg[CFG_EVLOG]`` is set, the shared allocator code records the kmem tracepoints
the real kernel would emit (:func:`memdesc.mm.page_alloc.core.trace_event`), one row of
``(event, cpu, pfn, order, migratetype, a, b, c)`` per event, at the same places in the
code as ``include/trace/events/kmem.h``'s callers:

==========================  ====================================================  ==============
row event                   fields                                                tracepoint
==========================  ====================================================  ==============
EV_ALLOC                    pfn (-1: failed), order, mt = ac.migratetype, a = gfp  mm_page_alloc
EV_ALLOC_ZONE_LOCKED        pfn, order, mt, a = percpu_refill                      ..._zone_locked
EV_FREE                     pfn, order (mt = -1)                                   mm_page_free
EV_PCPU_DRAIN               pfn, order, mt (the pageblock's, at drain time)        mm_page_pcpu_drain
EV_EXTFRAG                  pfn, order = alloc_order, mt = alloc_migratetype,      ..._alloc_extfrag
                            a = fallback_order, b = fallback_migratetype,
                            c = change_ownership
==========================  ====================================================  ==============

These are every field the tracepoints print, so the conversion loses nothing but time
and task: the model has no clock, so events get timestamps one microsecond apart in log
order, and task ``<...>``/pid 0 (ftrace's own placeholder for an unrecorded task).  The
model never emits ``mm_page_free_batched`` (its frees do not go through
``free_unref_folios()``).  Migratetypes are printed in the numbering of the modelled
kernel's configuration (without CONFIG_CMA, MIGRATE_ISOLATE is 4), exactly what the
replay engine maps back through the migratetype names.

A log that overflowed its capacity (``evlog_n`` > rows) is written up to its capacity,
followed by ftrace's ``CPU:0 [LOST n EVENTS]`` marker, which the reader counts.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import zstandard

from memdesc.errors import ConfigError
from memdesc.mm.mmzone import MIGRATE_TYPES, MIGRATETYPE_NAMES, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core
from memdesc.trace import events as E
from memdesc.trace.writer import write_ftrace

#: microseconds between two consecutive logged events in the written trace
TICK_NS = 1000


def printed_migratetypes(names: tuple[str, ...]) -> np.ndarray:
    """internal migratetype -> the number a kernel configured with ``names`` prints (-1: absent)."""
    table = np.full(MIGRATE_TYPES, -1, np.int64)
    for i, n in enumerate(MIGRATETYPE_NAMES):
        if n in names:
            table[i] = names.index(n)
    return table


def event_log_rows(machine) -> tuple[np.ndarray, int]:
    """The recorded rows of a machine's event log (a copy) and the number of rows lost."""
    zs = machine.design.zs
    if int(zs.cfg[core.CFG_EVLOG]) == 0:
        raise ConfigError("the machine records no kmem events: build it with an event log "
                          "(AllocConfig(evlog=N), Machine.create(..., evlog=N))")
    n = int(zs.evlog_n[0])
    cap = zs.evlog.shape[0]
    kept = min(n, cap)
    return np.array(zs.evlog[:kept]), n - kept


def event_log_frame(machine) -> pl.DataFrame:
    """The machine's event log as a trace frame (schema :data:`memdesc.trace.events.SCHEMA`)."""
    rows, _lost = event_log_rows(machine)
    return rows_to_frame(rows, machine.migratetype_names)


def rows_to_frame(rows: np.ndarray, names: tuple[str, ...]) -> pl.DataFrame:
    """Event-log rows (``core.EVLOG_FIELDS`` columns) to a trace frame."""
    n = rows.shape[0]
    ev = rows[:, 0].astype(np.int64)
    if n and (ev.min() < 0 or ev.max() >= E.NR_EVENTS):
        raise ConfigError(f"event log holds an unknown event code {int(ev.max())}")
    mt_print = printed_migratetypes(tuple(names))

    def printed(col: np.ndarray) -> np.ndarray:
        out = np.full(col.shape[0], -1, np.int64)
        ok = (col >= 0) & (col < MIGRATE_TYPES)
        out[ok] = mt_print[col[ok]]
        if np.any(ok & (out < 0)):
            bad = int(col[ok & (out < 0)][0])
            raise ConfigError(f"event log holds migratetype {MIGRATETYPE_NAMES[bad]}, which a kernel "
                              f"configured with {', '.join(names)} cannot print")
        return out

    is_alloc = ev == E.ALLOC
    is_zl = ev == E.ALLOC_ZONE_LOCKED
    is_ext = ev == E.EXTFRAG
    has_mt = is_alloc | is_zl | is_ext | (ev == E.PCPU_DRAIN)
    mt = np.where(has_mt, printed(rows[:, 4]), -1)
    fbo = np.where(is_ext, rows[:, 5], -1)
    cols = {
        "line": np.arange(1, n + 1, dtype=np.uint64),
        "event": ev.astype(np.uint8),
        "cpu": rows[:, 1].astype(np.int16),
        "ts_ns": np.arange(n, dtype=np.int64) * TICK_NS,
        "pid": np.zeros(n, np.int32),
        "pfn": rows[:, 2].astype(np.int64),
        "order": rows[:, 3].astype(np.int8),
        "gfp": np.where(is_alloc, rows[:, 5], 0).astype(np.uint64),
        "migratetype": mt.astype(np.int8),
        "percpu_refill": np.where(is_zl, rows[:, 5], -1).astype(np.int8),
        "fallback_order": fbo.astype(np.int8),
        "fallback_migratetype": np.where(is_ext, printed(rows[:, 6]), -1).astype(np.int8),
        "fragmenting": np.where(is_ext, (fbo < PAGEBLOCK_ORDER).astype(np.int64), -1).astype(np.int8),
        "change_ownership": np.where(is_ext, rows[:, 7], -1).astype(np.int8),
    }
    return pl.DataFrame({name: pl.Series(name, cols[name], dtype=dt) for name, dt in E.SCHEMA.items()})


def _append_text(path: Path, text: str, level: int) -> None:
    """Append text as a new zstd frame / gzip member / plain text (readers decode them in turn)."""
    name = path.name.lower()
    data = text.encode()
    if name.endswith(".zst") or name.endswith(".zstd"):
        data = zstandard.ZstdCompressor(level=level).compress(data)
    elif name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=min(max(level, 1), 9))
    with open(path, "ab") as f:
        f.write(data)


def write_event_log(machine, path: str | Path, *, header: bool = False, level: int = 3) -> int:
    """Write a machine's kmem event log as an ftrace text trace; returns the events written.

    ``path`` ending in ``.zst`` is zstd-compressed, ``.gz`` gzip, anything else plain text.
    If the log overflowed, the recorded events are followed by a ``[LOST n EVENTS]`` marker.
    """
    rows, lost = event_log_rows(machine)
    df = rows_to_frame(rows, machine.migratetype_names)
    path = Path(path)
    try:
        n = write_ftrace(df, path, header=header, level=level)
        if lost:
            _append_text(path, f"CPU:0 [LOST {lost} EVENTS]\n", level)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    return n
