"""/proc/buddyinfo, /proc/pagetypeinfo, /proc/zoneinfo and the fragmentation indices.

Theory
------
mm/vmstat.c renders the page allocator's state as text.  This module holds the same
state as frozen data objects and converts both ways, so that a real machine's files
and the model's output are the *same objects*, and ``format(parse(text)) == text``
byte for byte (tested on every capture of the 6.18 machine).

* ``/proc/buddyinfo`` (``frag_show_print``): per populated zone ``"Node %d, zone %8s "``
  then ``"%6lu "`` of ``free_area[order].nr_free`` for every order.
* ``/proc/pagetypeinfo`` (``pagetypeinfo_show``), once per node with memory: the
  pageblock order, the free-list lengths per (zone, migratetype, order) -- the kernel
  stops counting a list at 100000 entries and then prints ``>100000`` -- the number of
  pageblocks of each migratetype, and with page_owner the "mixed" pageblocks.
* ``/proc/zoneinfo`` (``zoneinfo_show_print``): every zone, populated or not.  The
  node's counters are printed before its first *populated* zone; an unpopulated zone
  stops after ``protection:``.
* debugfs ``extfrag/unusable_index`` and ``extfrag/extfrag_index``: per zone and order
  the unusable-free-space index and the fragmentation index, integers x1000 computed
  with the kernel's truncating integer formulas (``fill_contig_page_info``,
  ``unusable_free_index``, ``__fragmentation_index``) and printed ``"%d.%03d "`` /
  ``"%2d.%03d "`` with C division semantics (so -1000 is ``-1.000`` and -500 would be
  `` 0.-500``).

Invariants: counts are non-negative integers; a table's rows all have the same number
of orders / migratetypes; parsers raise :class:`~memdesc.errors.FormatError` with path
and line number on anything the kernel cannot have printed.  The index functions are
numba kernels over ``nr_free`` arrays (``*_nb``) with validating Python wrappers.
Source: mm/vmstat.c and mm/page_owner.c (linux-mm tree, 2026; the 6.18 zoneinfo has no
``reserved_highatomic``/``free_highatomic`` lines, which we print only when set).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from memdesc._numba import njit
from memdesc.errors import FormatError, InvalidOrder

#: the pagetypeinfo free-list walk stops at this many entries and prints ">"
PAGETYPEINFO_FREE_CAP = 100000


def seq_printf(fmt: str, *args) -> str:
    """C printf of a kernel format string, verbatim (Python's %-formatting has C's
    semantics for ``%d %i %s %-12s %03d``, ignores the ``l`` length modifier)."""
    return fmt % args


# ---------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------
def read_proc_file(path: str | PathLike) -> str:
    """Text of a /proc (or debugfs) snapshot file; ``*.zst`` files are decompressed."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path=str(p)) from None
    if p.suffix == ".zst":
        import zstandard

        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as r:
                raw = r.read()
        except zstandard.ZstdError as e:
            raise FormatError(f"not a valid zstd file: {e}", path=str(p)) from None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise FormatError(f"not a text /proc file (byte 0x{raw[e.start]:02x} at offset {e.start})",
                          path=str(p)) from None


class _Lines:
    """Line cursor that raises FormatError with path, 1-based line number and the line."""

    def __init__(self, text: str, path: str | None, what: str):
        if not isinstance(text, str):
            raise FormatError(f"{what}: expected text, got {type(text).__name__}", path=path)
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.path, self.what, self.i = path, what, 0
        if not self.lines:
            raise FormatError(f"empty {what}", path=path)

    def more(self) -> bool:
        return self.i < len(self.lines)

    def peek(self) -> str | None:
        return self.lines[self.i] if self.i < len(self.lines) else None

    def next(self) -> str:
        if self.i >= len(self.lines):
            raise FormatError(f"{self.what}: unexpected end of file", path=self.path,
                              lineno=len(self.lines))
        self.i += 1
        return self.lines[self.i - 1]

    def error(self, message: str, back: int = 1) -> FormatError:
        n = max(self.i - back, 0)
        line = self.lines[n] if n < len(self.lines) else None
        return FormatError(f"{self.what}: {message}", path=self.path, lineno=n + 1, line=line)


def _counts(values, what: str, allow_negative: bool = False) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise FormatError(f"{what}: counts must be integers, got {v!r}")
        if v < 0 and not allow_negative:
            raise FormatError(f"{what}: counts must be non-negative, got {v}")
        out.append(int(v))
    return tuple(out)


def _check_zone_id(node, zone, what: str) -> None:
    if isinstance(node, bool) or not isinstance(node, int | np.integer) or node < 0:
        raise FormatError(f"{what}: node must be a non-negative integer, got {node!r}")
    if not isinstance(zone, str) or not zone or any(c.isspace() for c in zone):
        raise FormatError(f"{what}: zone name must be a non-empty word, got {zone!r}")


def _build(path: str | None, cls, *args):
    """``cls(*args)``; a validation error is reported against the file."""
    try:
        return cls(*args)
    except FormatError as e:
        raise FormatError(str(e), path=path) from None


_UINT_RE = re.compile(r"\d+\Z")


def _uints(fields: list[str], src: _Lines, what: str) -> tuple[int, ...]:
    for f in fields:
        if not _UINT_RE.match(f):
            raise src.error(f"{what}: {f!r} is not a non-negative integer")
    return tuple(int(f) for f in fields)


# ---------------------------------------------------------------------------
# /proc/buddyinfo
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BuddyInfoRow:
    """One line of /proc/buddyinfo: ``nr_free[order]`` of one populated zone."""

    node: int
    zone: str
    nr_free: tuple[int, ...]

    def __post_init__(self):
        _check_zone_id(self.node, self.zone, "buddyinfo")
        object.__setattr__(self, "node", int(self.node))
        object.__setattr__(self, "nr_free", _counts(self.nr_free, "buddyinfo"))
        if not self.nr_free:
            raise FormatError("buddyinfo: a row needs at least one order")


@dataclass(frozen=True)
class BuddyInfo:
    """/proc/buddyinfo: one row per populated zone, nodes in order."""

    rows: tuple[BuddyInfoRow, ...]

    def __post_init__(self):
        rows = tuple(r if isinstance(r, BuddyInfoRow) else BuddyInfoRow(*r) for r in self.rows)
        if len({len(r.nr_free) for r in rows}) > 1:
            raise FormatError("buddyinfo: rows have different numbers of orders")
        keys = [(r.node, r.zone) for r in rows]
        if len(set(keys)) != len(keys):
            raise FormatError("buddyinfo: a (node, zone) appears twice")
        object.__setattr__(self, "rows", rows)

    @property
    def nr_orders(self) -> int:
        return len(self.rows[0].nr_free) if self.rows else 0

    def to_dict(self) -> dict[str, list[int]]:
        """``{"NODE:ZONE": [nr_free per order]}``."""
        return {f"{r.node}:{r.zone}": list(r.nr_free) for r in self.rows}

    @classmethod
    def from_dict(cls, d: Mapping[str, Iterable[int]]) -> BuddyInfo:
        rows = []
        for key, counts in d.items():
            node, sep, zone = str(key).partition(":")
            if not sep or not node.isdigit():
                raise FormatError(f"buddyinfo: key {key!r} is not 'NODE:ZONE'")
            rows.append(BuddyInfoRow(int(node), zone, tuple(counts)))
        return cls(tuple(rows))

    def nr_free_array(self) -> np.ndarray:
        """``int64[len(rows), nr_orders]`` of the counts (input of the index kernels)."""
        return np.array([r.nr_free for r in self.rows], dtype=np.int64).reshape(len(self.rows),
                                                                                 self.nr_orders)


def format_buddyinfo(info: BuddyInfo) -> str:
    """/proc/buddyinfo text, byte-identical to ``frag_show_print``."""
    out = []
    for r in info.rows:
        out.append(seq_printf("Node %d, zone %8s ", r.node, r.zone)
                   + "".join(seq_printf("%6lu ", n) for n in r.nr_free) + "\n")
    return "".join(out)


_ZONE_ROW_RE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)(?:\s+(.*?))?\s*\Z")


def parse_buddyinfo(text: str, path: str | None = None) -> BuddyInfo:
    src = _Lines(text, path, "buddyinfo")
    rows = []
    while src.more():
        line = src.next()
        m = _ZONE_ROW_RE.match(line)
        if not m or not m.group(3):
            raise src.error("expected 'Node N, zone NAME count count ...'")
        counts = _uints(m.group(3).split(), src, "buddyinfo")
        if rows and len(counts) != len(rows[0].nr_free):
            raise src.error(f"{len(counts)} orders, previous rows have {len(rows[0].nr_free)}")
        try:
            rows.append(BuddyInfoRow(int(m.group(1)), m.group(2), counts))
        except FormatError as e:
            raise src.error(str(e)) from None
    return _build(path, BuddyInfo, tuple(rows))


def read_buddyinfo(path: str | PathLike) -> BuddyInfo:
    return parse_buddyinfo(read_proc_file(path), str(path))


# ---------------------------------------------------------------------------
# /proc/pagetypeinfo
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PageTypeZone:
    """One populated zone of /proc/pagetypeinfo.

    ``free[mt][order]``: length of the free list (the text shows ``>cap`` when it is
    ``>= cap``); ``blocks[mt]``: pageblocks of that migratetype; ``mixed[mt]``: pageblocks
    holding pages of another migratetype (page_owner only, else None).
    """

    node: int
    zone: str
    free: tuple[tuple[int, ...], ...]
    blocks: tuple[int, ...]
    mixed: tuple[int, ...] | None = None

    def __post_init__(self):
        _check_zone_id(self.node, self.zone, "pagetypeinfo")
        object.__setattr__(self, "node", int(self.node))
        free = tuple(_counts(row, "pagetypeinfo free") for row in self.free)
        if not free or len({len(r) for r in free}) != 1 or not free[0]:
            raise FormatError(f"pagetypeinfo: zone {self.zone} needs one equally long free row "
                              "per migratetype")
        object.__setattr__(self, "free", free)
        object.__setattr__(self, "blocks", _counts(self.blocks, "pagetypeinfo blocks"))
        if len(self.blocks) != len(free):
            raise FormatError(f"pagetypeinfo: zone {self.zone} has {len(free)} free rows but "
                              f"{len(self.blocks)} block counts")
        if self.mixed is not None:
            object.__setattr__(self, "mixed", _counts(self.mixed, "pagetypeinfo mixed"))
            if len(self.mixed) != len(free):
                raise FormatError(f"pagetypeinfo: zone {self.zone} mixed counts do not match migratetypes")


@dataclass(frozen=True)
class PageTypeInfo:
    """/proc/pagetypeinfo: header values, migratetype names in print order, zones.

    ``free_cap`` is the kernel's free-list walk limit (100000; ``None`` for old kernels
    that printed exact counts).
    """

    pageblock_order: int
    pages_per_block: int
    migratetype_names: tuple[str, ...]
    zones: tuple[PageTypeZone, ...]
    free_cap: int | None = PAGETYPEINFO_FREE_CAP

    def __post_init__(self):
        if isinstance(self.pageblock_order, bool) or not isinstance(self.pageblock_order, int) \
                or not 0 <= self.pageblock_order < 64:
            raise FormatError(f"pagetypeinfo: bad pageblock order {self.pageblock_order!r}")
        _counts([self.pages_per_block], "pagetypeinfo pages per block")
        names = tuple(self.migratetype_names)
        if not names or any(not isinstance(n, str) or not n or any(c.isspace() for c in n) for n in names):
            raise FormatError(f"pagetypeinfo: bad migratetype names {names!r}")
        object.__setattr__(self, "migratetype_names", names)
        zones = tuple(z if isinstance(z, PageTypeZone) else PageTypeZone(*z) for z in self.zones)
        object.__setattr__(self, "zones", zones)
        if not zones:
            raise FormatError("pagetypeinfo: no zones")
        for z in zones:
            if len(z.free) != len(names):
                raise FormatError(f"pagetypeinfo: zone {z.zone} has {len(z.free)} migratetypes, "
                                  f"header names {len(names)}")
        if len({len(z.free[0]) for z in zones}) != 1:
            raise FormatError("pagetypeinfo: zones have different numbers of orders")
        if len({z.mixed is None for z in zones}) != 1:
            raise FormatError("pagetypeinfo: the mixed-blocks section is all or nothing")
        seen, last = set(), None
        for z in zones:
            if z.node != last:
                if z.node in seen:
                    raise FormatError(f"pagetypeinfo: zones of node {z.node} are not contiguous")
                seen.add(z.node)
                last = z.node
        if self.free_cap is not None:
            _counts([self.free_cap], "pagetypeinfo cap")

    @property
    def nr_orders(self) -> int:
        return len(self.zones[0].free[0])

    def free_counts(self) -> dict[tuple[int, str, str], list[int]]:
        """``{(node, zone, migratetype_name): [free-list length per order]}``."""
        return {(z.node, z.zone, name): list(row) for z in self.zones
                for name, row in zip(self.migratetype_names, z.free, strict=True)}

    def block_counts(self) -> dict[tuple[int, str], dict[str, int]]:
        """``{(node, zone): {migratetype_name: pageblocks}}``."""
        names = self.migratetype_names
        return {(z.node, z.zone): dict(zip(names, z.blocks, strict=True)) for z in self.zones}

    def capped(self, count: int) -> bool:
        """True if the kernel prints ``count`` as ``>cap`` (the list walk stopped)."""
        return self.free_cap is not None and count >= self.free_cap

    def free_array(self) -> np.ndarray:
        """``int64[zones, migratetypes, orders]`` (capped counts are the cap)."""
        return np.array([z.free for z in self.zones], dtype=np.int64)


def _names_line(title: str, names: Iterable[str]) -> str:
    return seq_printf("\n%-23s", title) + "".join(seq_printf("%12s ", n) for n in names) + "\n"


def _count_row(z: PageTypeZone, counts: tuple[int, ...]) -> str:
    """pagetypeinfo_showblockcount_print / pagetypeinfo_showmixedcount_print."""
    return (seq_printf("Node %d, zone %8s ", z.node, z.zone)
            + "".join(seq_printf("%12lu ", n) for n in counts) + "\n")


def format_pagetypeinfo(info: PageTypeInfo) -> str:
    """/proc/pagetypeinfo text, byte-identical to ``pagetypeinfo_show`` (per node)."""
    out = []
    nodes: list[list[PageTypeZone]] = []
    for z in info.zones:
        if not nodes or nodes[-1][0].node != z.node:
            nodes.append([])
        nodes[-1].append(z)
    for zones in nodes:
        out.append(seq_printf("Page block order: %d\n", info.pageblock_order))
        out.append(seq_printf("Pages per block:  %lu\n", info.pages_per_block))
        out.append("\n")
        out.append(seq_printf("%-43s ", "Free pages count per migrate type at order")
                   + "".join(seq_printf("%6d ", o) for o in range(info.nr_orders)) + "\n")
        for z in zones:
            for name, row in zip(info.migratetype_names, z.free, strict=True):
                # the kernel prints the count at which its walk stopped, with ">"
                cells = (seq_printf("%s%6lu ", ">", info.free_cap) if info.capped(n)
                         else seq_printf("%s%6lu ", "", n) for n in row)
                out.append(seq_printf("Node %4d, zone %8s, type %12s ", z.node, z.zone, name)
                           + "".join(cells) + "\n")
        out.append(_names_line("Number of blocks type ", info.migratetype_names))
        out.extend(_count_row(z, z.blocks) for z in zones)
        if zones[0].mixed is not None:
            out.append(_names_line("Number of mixed blocks ", info.migratetype_names))
            out.extend(_count_row(z, z.mixed) for z in zones)
    return "".join(out)


_PT_ORDER_RE = re.compile(r"Page block order:\s+(\d+)\s*\Z")
_PT_PPB_RE = re.compile(r"Pages per block:\s+(\d+)\s*\Z")
_PT_FREEHDR_RE = re.compile(r"Free pages count per migrate type at order\s+(.*?)\s*\Z")
_PT_FREEROW_RE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)\s+(.*?)\s*\Z")
_PT_BLOCKHDR_RE = re.compile(r"Number of blocks type\s+(.*?)\s*\Z")
_PT_MIXEDHDR_RE = re.compile(r"Number of mixed blocks\s+(.*?)\s*\Z")


def _parse_block_rows(src: _Lines, zones: list[tuple[int, str]], ntypes: int,
                      what: str) -> list[tuple[int, ...]]:
    rows = []
    for node, zone in zones:
        line = src.next()
        m = _ZONE_ROW_RE.match(line)
        if not m or not m.group(3):
            raise src.error(f"expected the {what} row of node {node} zone {zone}")
        if (int(m.group(1)), m.group(2)) != (node, zone):
            raise src.error(f"{what} rows must follow the free-list zones: expected node {node} zone {zone}")
        counts = _uints(m.group(3).split(), src, what)
        if len(counts) != ntypes:
            raise src.error(f"{len(counts)} {what} counts for {ntypes} migratetypes")
        rows.append(counts)
    return rows


def parse_pagetypeinfo(text: str, path: str | None = None) -> PageTypeInfo:
    src = _Lines(text, path, "pagetypeinfo")
    header: tuple[int, int, tuple[str, ...], int] | None = None
    zones: list[PageTypeZone] = []
    saw_cap, saw_over_cap = False, False
    while src.more():
        m = _PT_ORDER_RE.match(src.next())
        if not m:
            raise src.error("expected 'Page block order: N'")
        pb_order = int(m.group(1))
        m = _PT_PPB_RE.match(src.next())
        if not m:
            raise src.error("expected 'Pages per block:  N'")
        ppb = int(m.group(1))
        if src.next().strip():
            raise src.error("expected an empty line")
        m = _PT_FREEHDR_RE.match(src.next())
        if not m:
            raise src.error("expected 'Free pages count per migrate type at order 0 1 ...'")
        orders = _uints(m.group(1).split(), src, "order header")
        if orders != tuple(range(len(orders))) or not orders:
            raise src.error("order header must be 0 1 2 ...")
        free: dict[tuple[int, str], list[tuple[str, tuple[int, ...]]]] = {}
        while (line := src.next()).strip():
            m = _PT_FREEROW_RE.match(line)
            if not m:
                raise src.error("expected 'Node N, zone NAME, type TYPE count ...'")
            cells = m.group(4).split()
            counts = []
            for c in cells:
                capped = c.startswith(">")
                if not _UINT_RE.match(c[1:] if capped else c):
                    raise src.error(f"free count {c!r} is not a (capped) non-negative integer")
                n = int(c[1:] if capped else c)
                if capped:
                    saw_cap = True
                    if n != PAGETYPEINFO_FREE_CAP:
                        raise src.error(f"'>' marks the kernel's walk limit {PAGETYPEINFO_FREE_CAP}, "
                                        f"got {c!r}")
                elif n >= PAGETYPEINFO_FREE_CAP:
                    saw_over_cap = True
                counts.append(n)
            if len(counts) != len(orders):
                raise src.error(f"{len(counts)} free counts for {len(orders)} orders")
            key = (int(m.group(1)), m.group(2))
            if key in free and key != list(free)[-1]:
                raise src.error(f"free-list rows of node {key[0]} zone {key[1]} are not contiguous")
            free.setdefault(key, []).append((m.group(3), tuple(counts)))
        m = _PT_BLOCKHDR_RE.match(src.next())
        if not m:
            raise src.error("expected 'Number of blocks type NAME NAME ...'")
        names = tuple(m.group(1).split())
        for (node, zone), rows in free.items():
            if tuple(n for n, _ in rows) != names:
                raise src.error(f"node {node} zone {zone}: free-list types {[n for n, _ in rows]} do not "
                                f"match the block header {list(names)}")
        keys = list(free)
        blocks = _parse_block_rows(src, keys, len(names), "pageblock")
        mixed = None
        if src.more() and not src.peek().strip():
            src.next()
            m = _PT_MIXEDHDR_RE.match(src.next())
            if not m:
                raise src.error("expected 'Number of mixed blocks NAME NAME ...'")
            mnames = tuple(m.group(1).split())
            if mnames != names:
                raise src.error("mixed-block header names differ from the block header")
            mixed = _parse_block_rows(src, keys, len(names), "mixed-block")
        if header is None:
            header = (pb_order, ppb, names, len(orders))
        elif header != (pb_order, ppb, names, len(orders)):
            raise src.error("this node's header differs from the previous node's", back=0)
        for i, key in enumerate(keys):
            try:
                zones.append(PageTypeZone(key[0], key[1], tuple(c for _, c in free[key]), blocks[i],
                                          None if mixed is None else mixed[i]))
            except FormatError as e:
                raise src.error(str(e), back=0) from None
    if saw_cap and saw_over_cap:
        raise FormatError("pagetypeinfo: mixes '>' capped counts with uncapped counts above the cap",
                          path=path)
    assert header is not None
    return _build(path, PageTypeInfo, header[0], header[1], header[2], tuple(zones),
                  None if saw_over_cap else PAGETYPEINFO_FREE_CAP)


def read_pagetypeinfo(path: str | PathLike) -> PageTypeInfo:
    return parse_pagetypeinfo(read_proc_file(path), str(path))


# ---------------------------------------------------------------------------
# /proc/zoneinfo
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PerCpuPageset:
    """One ``cpu:`` block of a zone's ``pagesets`` (struct per_cpu_pages + stat threshold).

    ``high_min``/``high_max`` exist since 6.7, ``stat_threshold`` with CONFIG_SMP;
    None means "not printed".
    """

    cpu: int
    count: int
    high: int
    batch: int
    high_min: int | None = None
    high_max: int | None = None
    stat_threshold: int | None = None

    def __post_init__(self):
        for name in ("cpu", "count", "high", "batch", "high_min", "high_max", "stat_threshold"):
            v = getattr(self, name)
            if v is None and name in ("high_min", "high_max", "stat_threshold"):
                continue
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise FormatError(f"zoneinfo pageset: {name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if (self.high_min is None) != (self.high_max is None):
            raise FormatError("zoneinfo pageset: high_min and high_max are printed together")


#: header fields after ``pages free`` in print order; optional ones may be None
_ZONE_HEADER_FMT = (
    ("boost", "\n        boost    %lu"), ("min", "\n        min      %lu"), ("low", "\n        low      %lu"),
    ("high", "\n        high     %lu"), ("promo", "\n        promo    %lu"),
    ("spanned", "\n        spanned  %lu"), ("present", "\n        present  %lu"),
    ("managed", "\n        managed  %lu"), ("cma", "\n        cma      %lu"),
)
_ZONE_HEADER = tuple(n for n, _ in _ZONE_HEADER_FMT)
_ZONE_HEADER_OPTIONAL = ("boost", "promo", "cma")
_ZONE_TRAILER_FMT = (
    ("node_unreclaimable", "\n  node_unreclaimable:  %u"),
    ("start_pfn", "\n  start_pfn:           %lu"),
    ("reserved_highatomic", "\n  reserved_highatomic: %lu"),
    ("free_highatomic", "\n  free_highatomic:     %lu"),
)
_ZONE_TRAILER = tuple(n for n, _ in _ZONE_TRAILER_FMT)


@dataclass(frozen=True)
class ZoneInfo:
    """One zone of /proc/zoneinfo.

    ``node_stats`` (the node's "per-node stats", printed before the node's first
    populated zone) and ``stats`` (zone and NUMA counters) keep the kernel's order.
    Optional fields that are None are not printed.  An unpopulated zone
    (``present == 0``) is printed up to ``protection:`` only, so it may not hold
    stats, pagesets or the trailing fields.
    """

    node: int
    zone: str
    pages_free: int
    min: int
    low: int
    high: int
    spanned: int
    present: int
    managed: int
    protection: tuple[int, ...]
    boost: int | None = 0
    promo: int | None = None
    cma: int | None = 0
    node_stats: Mapping[str, int] | None = None
    stats: Mapping[str, int] | None = None
    pagesets: tuple[PerCpuPageset, ...] | None = None
    node_unreclaimable: int | None = None
    start_pfn: int | None = None
    reserved_highatomic: int | None = None
    free_highatomic: int | None = None

    def __post_init__(self):
        _check_zone_id(self.node, self.zone, "zoneinfo")
        where = f"zoneinfo node {self.node} zone {self.zone}"
        object.__setattr__(self, "node", int(self.node))
        for name in ("pages_free", *_ZONE_HEADER, *_ZONE_TRAILER):
            v = getattr(self, name)
            if v is None and (name in _ZONE_HEADER_OPTIONAL or name in _ZONE_TRAILER):
                continue
            object.__setattr__(self, name, _counts([v], f"{where} {name}")[0])
        prot = _counts(self.protection, f"{where} protection", allow_negative=True)
        if not prot:
            raise FormatError(f"{where}: protection needs at least one value")
        object.__setattr__(self, "protection", prot)
        for name in ("node_stats", "stats"):
            v = getattr(self, name)
            if v is None:
                continue
            d = {}
            for k, n in dict(v).items():
                if not isinstance(k, str) or not k or any(c.isspace() for c in k):
                    raise FormatError(f"{where}: bad counter name {k!r}")
                d[k] = _counts([n], f"{where} {k}")[0]
            object.__setattr__(self, name, MappingProxyType(d))
        if self.pagesets is not None:
            ps = tuple(p if isinstance(p, PerCpuPageset) else PerCpuPageset(*p) for p in self.pagesets)
            object.__setattr__(self, "pagesets", ps)
        if self.reserved_highatomic is not None or self.free_highatomic is not None:
            if self.start_pfn is None:
                raise FormatError(f"{where}: reserved/free_highatomic are printed after start_pfn")
        if not self.populated:
            extra = [n for n in ("stats", "pagesets", *_ZONE_TRAILER) if getattr(self, n) is not None]
            if extra:
                raise FormatError(f"{where}: unpopulated (present 0) zones print nothing after "
                                  f"protection, but {', '.join(extra)} given")

    @property
    def populated(self) -> bool:
        """``populated_zone()``: present_pages != 0."""
        return self.present != 0


_ZI_NODE_RE = re.compile(r"Node (\d+), zone +(\S+)\Z")
_ZI_STAT_RE = re.compile(r"      (\S+) +(\d+)\Z")
_ZI_FREE_RE = re.compile(r"  pages free +(\d+)\Z")
_ZI_HEADER_RE = re.compile(r"        (\w+) +(\d+)\Z")
_ZI_PROT_RE = re.compile(r"        protection: \((-?\d+(?:, -?\d+)*)\)\Z")
_ZI_CPU_RE = re.compile(r"    cpu: (\d+)\Z")
_ZI_PCP_RE = re.compile(r"              (count|high|batch|high_min|high_max): +(-?\d+)\Z")
_ZI_THRESH_RE = re.compile(r"  vm stats threshold: +(-?\d+)\Z")
_ZI_TRAILER_RE = re.compile(r"  (\w+): +(\d+)\Z")
_PCP_FIELDS = ("count", "high", "batch", "high_min", "high_max")


def _zone_from_fields(src: _Lines, f: dict) -> ZoneInfo:
    try:
        return ZoneInfo(**f)
    except (FormatError, TypeError) as e:
        raise src.error(str(e), back=0) from None


def parse_zoneinfo(text: str, path: str | None = None) -> list[ZoneInfo]:
    """Parse /proc/zoneinfo into one :class:`ZoneInfo` per zone, in file order."""
    src = _Lines(text, path, "zoneinfo")
    zones: list[ZoneInfo] = []
    while src.more():
        m = _ZI_NODE_RE.match(src.next())
        if not m:
            raise src.error("expected 'Node N, zone NAME'")
        f: dict = {"node": int(m.group(1)), "zone": m.group(2)}
        line = src.next()
        if line == "  per-node stats":
            node_stats = {}
            while (m := _ZI_STAT_RE.match(line := src.next())):
                if m.group(1) in node_stats:
                    raise src.error(f"counter {m.group(1)} appears twice")
                node_stats[m.group(1)] = int(m.group(2))
            f["node_stats"] = node_stats
        m = _ZI_FREE_RE.match(line)
        if not m:
            raise src.error("expected '  pages free     N'")
        f["pages_free"] = int(m.group(1))
        expected = list(_ZONE_HEADER)
        for name in _ZONE_HEADER_OPTIONAL:
            f[name] = None
        while (m := _ZI_HEADER_RE.match(line := src.next())):
            name = m.group(1)
            if name not in expected:
                raise src.error(f"unexpected zone field {name!r} (expected one of {expected})")
            skipped = expected[:expected.index(name)]
            if any(s not in _ZONE_HEADER_OPTIONAL for s in skipped):
                raise src.error(f"zone field {name!r} before required {skipped}")
            del expected[:expected.index(name) + 1]
            f[name] = int(m.group(2))
        if any(s not in _ZONE_HEADER_OPTIONAL for s in expected):
            raise src.error(f"missing zone fields {[s for s in expected if s not in _ZONE_HEADER_OPTIONAL]}")
        m = _ZI_PROT_RE.match(line)
        if not m:
            raise src.error("expected '        protection: (N, N, ...)'")
        f["protection"] = tuple(int(v) for v in m.group(1).split(", "))
        if f["present"] == 0:  # unpopulated: nothing more for this zone
            zones.append(_zone_from_fields(src, f))
            continue
        stats = {}
        while (line := src.peek()) is not None and (m := _ZI_STAT_RE.match(line)):
            src.next()
            if m.group(1) in stats:
                raise src.error(f"counter {m.group(1)} appears twice")
            stats[m.group(1)] = int(m.group(2))
        if stats:
            f["stats"] = stats
        if src.peek() == "  pagesets":
            src.next()
            pagesets = []
            while (line := src.peek()) is not None and (m := _ZI_CPU_RE.match(line)):
                src.next()
                p: dict = {"cpu": int(m.group(1))}
                remaining = list(_PCP_FIELDS)
                while (line := src.peek()) is not None and (m := _ZI_PCP_RE.match(line)):
                    src.next()
                    if not remaining or m.group(1) != remaining[0]:
                        raise src.error(f"pageset field {m.group(1)!r} out of order "
                                        f"(expected {remaining[:1]})")
                    remaining.pop(0)
                    p[m.group(1)] = int(m.group(2))
                if remaining and remaining != ["high_min", "high_max"]:
                    raise src.error(f"pageset of cpu {p['cpu']} lacks {remaining}", back=0)
                if (line := src.peek()) is not None and (m := _ZI_THRESH_RE.match(line)):
                    src.next()
                    p["stat_threshold"] = int(m.group(1))
                try:
                    pagesets.append(PerCpuPageset(**p))
                except FormatError as e:
                    raise src.error(str(e)) from None
            f["pagesets"] = tuple(pagesets)
        expected = list(_ZONE_TRAILER)
        while (line := src.peek()) is not None and (m := _ZI_TRAILER_RE.match(line)):
            src.next()
            name = m.group(1)
            if not expected or name != expected[0]:
                raise src.error(f"unexpected {name!r} (expected {expected[:1] or 'a new zone'})")
            expected.pop(0)
            f[name] = int(m.group(2))
        if src.more() and not _ZI_NODE_RE.match(src.peek()):
            src.next()
            raise src.error("unexpected line in a populated zone")
        zones.append(_zone_from_fields(src, f))
    _check_zoneinfo_nodes(zones, path)
    return zones


def _check_zoneinfo_nodes(zones: list[ZoneInfo], path: str | None = None) -> None:
    """Per-node stats appear once, on the node's first populated zone (is_zone_first_populated)."""
    first_populated: dict[int, str] = {}
    for z in zones:
        if z.populated and z.node not in first_populated:
            first_populated[z.node] = z.zone
    for z in zones:
        if z.node_stats is not None and first_populated.get(z.node) != z.zone:
            raise FormatError(f"zoneinfo: per-node stats of node {z.node} belong to its first populated zone "
                              f"({first_populated.get(z.node)}), not {z.zone}", path=path)
    seen = set()
    for z in zones:
        if (z.node, z.zone) in seen:
            raise FormatError(f"zoneinfo: node {z.node} zone {z.zone} appears twice", path=path)
        seen.add((z.node, z.zone))


def format_zoneinfo(zones: Iterable[ZoneInfo]) -> str:
    """/proc/zoneinfo text (``zoneinfo_show_print``) for the fields each zone holds."""
    zones = list(zones)
    for z in zones:
        if not isinstance(z, ZoneInfo):
            raise FormatError(f"format_zoneinfo needs ZoneInfo objects, got {type(z).__name__}")
    _check_zoneinfo_nodes(zones)
    out = []
    for z in zones:
        out.append(seq_printf("Node %d, zone %8s", z.node, z.zone))
        if z.node_stats is not None:
            out.append("\n  per-node stats")
            out.extend(seq_printf("\n      %-12s %lu", k, v) for k, v in z.node_stats.items())
        out.append(seq_printf("\n  pages free     %lu", z.pages_free))
        out.extend(seq_printf(fmt, getattr(z, name)) for name, fmt in _ZONE_HEADER_FMT
                   if getattr(z, name) is not None)
        out.append(seq_printf("\n        protection: (%ld", z.protection[0]))
        out.extend(seq_printf(", %ld", v) for v in z.protection[1:])
        out.append(")")
        if z.populated:
            if z.stats is not None:
                out.extend(seq_printf("\n      %-12s %lu", k, v) for k, v in z.stats.items())
            if z.pagesets is not None:
                out.append("\n  pagesets")
                for p in z.pagesets:
                    out.append(seq_printf("\n    cpu: %i"
                                          "\n              count:    %i"
                                          "\n              high:     %i"
                                          "\n              batch:    %i", p.cpu, p.count, p.high, p.batch))
                    if p.high_min is not None:
                        out.append(seq_printf("\n              high_min: %i"
                                              "\n              high_max: %i", p.high_min, p.high_max))
                    if p.stat_threshold is not None:
                        out.append(seq_printf("\n  vm stats threshold: %d", p.stat_threshold))
            out.extend(seq_printf(fmt, getattr(z, name)) for name, fmt in _ZONE_TRAILER_FMT
                       if getattr(z, name) is not None)
        out.append("\n")
    return "".join(out)


def read_zoneinfo(path: str | PathLike) -> list[ZoneInfo]:
    return parse_zoneinfo(read_proc_file(path), str(path))


# ---------------------------------------------------------------------------
# Fragmentation indices (CONFIG_COMPACTION part of mm/vmstat.c)
# ---------------------------------------------------------------------------
class ContigPageInfo(NamedTuple):
    """struct contig_page_info."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


@njit
def fill_contig_page_info_nb(nr_free, suitable_order):
    """fill_contig_page_info() over ``nr_free[order]``: (free_pages, free_blocks_total,
    free_blocks_suitable)."""
    free_pages = 0
    total = 0
    suitable = 0
    for order in range(nr_free.shape[0]):
        blocks = int(nr_free[order])
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return free_pages, total, suitable


@njit
def _unusable_share_nb(nr_free, order, scale, if_empty):
    """(free pages not in blocks of >= 2^order) * scale / free pages, truncated."""
    free_pages, total, suitable = fill_contig_page_info_nb(nr_free, order)
    if free_pages == 0:
        return if_empty
    return ((free_pages - (suitable << order)) * scale) // free_pages


@njit
def unusable_free_index_nb(nr_free, order):
    """unusable_free_index() x1000: share of free memory in blocks smaller than 2^order
    (1000 when nothing is free)."""
    return _unusable_share_nb(nr_free, order, 1000, 1000)


@njit
def extfrag_for_order_nb(nr_free, order):
    """extfrag_for_order(): percentage of free pages in blocks smaller than 2^order
    (0 when nothing is free)."""
    return _unusable_share_nb(nr_free, order, 100, 0)


@njit
def fragmentation_index_nb(nr_free, order):
    """__fragmentation_index() x1000: -1000 if the request would succeed, else towards
    0 (lack of memory) or 1000 (fragmentation).  0 for an order beyond the table (WARN)."""
    if order > nr_free.shape[0] - 1:
        return 0
    free_pages, total, suitable = fill_contig_page_info_nb(nr_free, order)
    if total == 0:
        return 0
    if suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + (free_pages * 1000) // requested) // total


@njit
def _index_table_nb(nr_free_2d, fragmentation):
    rows, orders = nr_free_2d.shape
    out = np.empty((rows, orders), dtype=np.int64)
    for i in range(rows):
        for o in range(orders):
            if fragmentation:
                out[i, o] = fragmentation_index_nb(nr_free_2d[i], o)
            else:
                out[i, o] = unusable_free_index_nb(nr_free_2d[i], o)
    return out


@njit
def unusable_index_table_nb(nr_free_2d):
    """unusable_free_index for every (row, order) of an ``int64[rows, orders]`` table."""
    return _index_table_nb(nr_free_2d, False)


@njit
def fragmentation_index_table_nb(nr_free_2d):
    """__fragmentation_index for every (row, order) of an ``int64[rows, orders]`` table."""
    return _index_table_nb(nr_free_2d, True)


def _nr_free(nr_free, order) -> tuple[np.ndarray, int]:
    arr = np.asarray(nr_free)
    if arr.ndim != 1 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == object):
        raise FormatError(f"nr_free must be a non-empty 1-d sequence of integers, got {nr_free!r}")
    counts = _counts(arr.tolist(), "nr_free")
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 0 <= order < arr.size:
        raise InvalidOrder(f"order must be an integer in 0..{arr.size - 1}, got {order!r}")
    return np.array(counts, dtype=np.int64), int(order)


def fill_contig_page_info(nr_free, suitable_order: int) -> ContigPageInfo:
    return ContigPageInfo(*(int(v) for v in fill_contig_page_info_nb(*_nr_free(nr_free, suitable_order))))


def unusable_free_index(nr_free, order: int) -> int:
    """Unusable free space index x1000 of a zone with ``nr_free[order]`` free blocks."""
    return int(unusable_free_index_nb(*_nr_free(nr_free, order)))


def fragmentation_index(nr_free, order: int) -> int:
    """``fragmentation_index()`` x1000 (the value compaction compares with extfrag_threshold)."""
    return int(fragmentation_index_nb(*_nr_free(nr_free, order)))


def extfrag_for_order(nr_free, order: int) -> int:
    """``extfrag_for_order()`` in percent (proactive compaction's zone score)."""
    return int(extfrag_for_order_nb(*_nr_free(nr_free, order)))


@dataclass(frozen=True)
class FragIndexRow:
    """One line of extfrag/unusable_index or extfrag/extfrag_index: values x1000 per order."""

    node: int
    zone: str
    values: tuple[int, ...] = field(default=())

    def __post_init__(self):
        _check_zone_id(self.node, self.zone, "fragmentation index")
        object.__setattr__(self, "node", int(self.node))
        object.__setattr__(self, "values", _counts(self.values, "fragmentation index", allow_negative=True))


def _c_div_mod(a: int, b: int) -> tuple[int, int]:
    """C's truncating ``a / b`` and ``a % b``."""
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q
    return q, a - q * b


def _index_cell(index: int, fmt: str) -> str:
    q, r = _c_div_mod(index, 1000)
    return seq_printf(fmt, q, r)


def unusable_index_rows(info: BuddyInfo) -> list[FragIndexRow]:
    """The rows of extfrag/unusable_index for the zones of a buddyinfo."""
    table = unusable_index_table_nb(info.nr_free_array())
    return [FragIndexRow(r.node, r.zone, tuple(int(v) for v in table[i])) for i, r in enumerate(info.rows)]


def extfrag_index_rows(info: BuddyInfo) -> list[FragIndexRow]:
    """The rows of extfrag/extfrag_index for the zones of a buddyinfo."""
    table = fragmentation_index_table_nb(info.nr_free_array())
    return [FragIndexRow(r.node, r.zone, tuple(int(v) for v in table[i])) for i, r in enumerate(info.rows)]


def _format_index_rows(rows, fmt: str) -> str:
    out = []
    for r in rows:
        if not isinstance(r, FragIndexRow):
            r = FragIndexRow(*r)
        out.append(seq_printf("Node %d, zone %8s ", r.node, r.zone)
                   + "".join(_index_cell(v, fmt) for v in r.values) + "\n")
    return "".join(out)


def format_unusable_index(rows: Iterable[FragIndexRow]) -> str:
    """debugfs extfrag/unusable_index text (``"%d.%03d "`` per order)."""
    return _format_index_rows(rows, "%d.%03d ")


def format_extfrag_index(rows: Iterable[FragIndexRow]) -> str:
    """debugfs extfrag/extfrag_index text (``"%2d.%03d "`` per order)."""
    return _format_index_rows(rows, "%2d.%03d ")


_INDEX_CELL_RE = re.compile(r"(-?\d+)\.(-?\d+)\Z")


def _parse_index_rows(text: str, path: str | None, what: str, fmt: str) -> list[FragIndexRow]:
    src = _Lines(text, path, what)
    rows: list[FragIndexRow] = []
    while src.more():
        m = _ZONE_ROW_RE.match(src.next())
        if not m or not m.group(3):
            raise src.error("expected 'Node N, zone NAME x.xxx x.xxx ...'")
        values = []
        for cell in m.group(3).split():
            c = _INDEX_CELL_RE.match(cell)
            if not c:
                raise src.error(f"{cell!r} is not an index printed as %d.%03d")
            v = int(c.group(1)) * 1000 + int(c.group(2))
            if _index_cell(v, fmt).strip() != cell:
                raise src.error(f"{cell!r} is not how the kernel prints an index")
            values.append(v)
        if rows and len(values) != len(rows[0].values):
            raise src.error(f"{len(values)} orders, previous rows have {len(rows[0].values)}")
        rows.append(FragIndexRow(int(m.group(1)), m.group(2), tuple(values)))
    return rows


def parse_unusable_index(text: str, path: str | None = None) -> list[FragIndexRow]:
    return _parse_index_rows(text, path, "unusable_index", "%d.%03d ")


def parse_extfrag_index(text: str, path: str | None = None) -> list[FragIndexRow]:
    return _parse_index_rows(text, path, "extfrag_index", "%2d.%03d ")


# ---------------------------------------------------------------------------
# /proc/meminfo and /proc/vmstat
# ---------------------------------------------------------------------------
_MEMINFO_RE = re.compile(r"([^:\s]+):\s+(\d+)( kB)?\Z")
_VMSTAT_RE = re.compile(r"(\S+) (\d+)\Z")


def _parse_key_values(text: str, path: str | None, what: str, rx: re.Pattern, shape: str) -> dict[str, int]:
    src = _Lines(text, path, what)
    out: dict[str, int] = {}
    while src.more():
        m = rx.match(src.next())
        if not m:
            raise src.error(f"expected {shape!r}")
        if m.group(1) in out:
            raise src.error(f"{m.group(1)} appears twice")
        out[m.group(1)] = int(m.group(2))
    return out


def parse_meminfo(text: str, path: str | None = None) -> dict[str, int]:
    """/proc/meminfo as ``{name: value}``; values are as printed (kB for the ``kB``
    lines, counts for ``HugePages_*``)."""
    return _parse_key_values(text, path, "meminfo", _MEMINFO_RE, "Name:   value [kB]")


def parse_vmstat(text: str, path: str | None = None) -> dict[str, int]:
    """/proc/vmstat as ``{counter: value}`` in file order."""
    return _parse_key_values(text, path, "vmstat", _VMSTAT_RE, "name value")


def read_meminfo(path: str | PathLike) -> dict[str, int]:
    return parse_meminfo(read_proc_file(path), str(path))


def read_vmstat(path: str | PathLike) -> dict[str, int]:
    return parse_vmstat(read_proc_file(path), str(path))
