"""A real machine's memory state, rebuilt from its /proc snapshot, loaded into any design.

Theory
------
A capture directory (the layout of ../shared/traces/*) holds, for ``before`` and
``after``: zoneinfo, buddyinfo, pagetypeinfo, meminfo, vmstat and raw kpageflags /
kpagecount dumps.  From them:

* the machine's layout comes from zoneinfo (zones exact, see mm_init);
* every pfn gets a class from kpageflags (memdesc.trace.kpageflags);
* free memory is the KPF_BUDDY runs decomposed into aligned, maximally merged blocks;
* pageblock migratetypes are inferred so that each zone has pagetypeinfo's block counts;
* pages classed hole / unavailable / offline / hwpoison / reserved are reserved in the
  model; every other pfn of a zone is allocated: a compound head with its tails as one
  allocation of the compound's order, any other page as an order-0 allocation.  The
  allocation's migratetype (the model's page_owner) is MOVABLE for anon and file pages,
  otherwise the pageblock's type when it is UNMOVABLE or RECLAIMABLE, else UNMOVABLE.

Pages sitting on per-CPU lists read as flagless pages with a zero count; they cannot be
told apart from other flagless kernel pages (vmalloc, stacks...), so the import keeps
them allocated and reports how many such candidates there are beside zoneinfo's pcp
counts.  A design built with ``boot=False`` then receives the state through
``init_from_snapshot``, so every design faces the real machine's fragmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memdesc.errors import ConfigError, FormatError
from memdesc.mm import gfp as gfpmod
from memdesc.mm import vmstat
from memdesc.mm.machine import Machine
from memdesc.mm.mm_init import layout_from_zoneinfo
from memdesc.mm.mmzone import MIGRATETYPE_NAMES, PAGEBLOCK_ORDER, MigrateType
from memdesc.mm.page_alloc import AllocConfig, get_design
from memdesc.trace.kpageblock import compare_free_counts, free_counts_by_migratetype, pagetypeinfo_tables
from memdesc.trace.kpageflags import KPF, KPageSnapshot, PageClass, kpf_mask

RESERVED_CLASSES = (PageClass.HOLE, PageClass.UNAVAILABLE, PageClass.OFFLINE, PageClass.HWPOISON,
                    PageClass.RESERVED)
MOVABLE_CLASSES = (PageClass.ANON, PageClass.FILE)


@dataclass
class CaptureFiles:
    """The /proc files of one side (``before``/``after``) of a capture directory."""

    directory: Path
    when: str

    def path(self, name: str, required: bool = True) -> Path | None:
        for p in (self.directory / f"{self.when}.{name}", self.directory / f"{self.when}.{name}.zst",
                  self.directory / name):
            if p.is_file():
                return p
        if required:
            raise FormatError(f"{self.directory}: no {self.when}.{name} (is this a capture directory?)")
        return None

    def zoneinfo(self) -> list[vmstat.ZoneInfo]:
        return vmstat.read_zoneinfo(self.path("zoneinfo"))

    def buddyinfo(self) -> vmstat.BuddyInfo | None:
        p = self.path("buddyinfo", required=False)
        return vmstat.read_buddyinfo(p) if p else None

    def pagetypeinfo(self) -> vmstat.PageTypeInfo | None:
        p = self.path("pagetypeinfo", required=False)
        return vmstat.read_pagetypeinfo(p) if p else None

    def meminfo(self) -> dict | None:
        p = self.path("meminfo", required=False)
        return vmstat.read_meminfo(p) if p else None


#: memo of :func:`reuse_snapshots` (None: every call reads and rebuilds afresh)
_MEMO: ContextVar[dict | None] = ContextVar("memdesc_snapshot_memo", default=None)


@contextmanager
def reuse_snapshots() -> Iterator[None]:
    """Within the block, each capture side's kpageflags is read and its allocator state rebuilt
    once, however many designs and replays load it (``memdesc compare`` and ``sweep`` run every
    design on one capture).  The rebuilt state is design independent and only read by the
    designs that load it (``tests/test_compare.py`` checks results are the same with and
    without)."""
    token = _MEMO.set({}) if _MEMO.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _MEMO.reset(token)


def _memo(key: tuple, make: Callable[[], Any]) -> Any:
    memo = _MEMO.get()
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def kpage_snapshot(directory: str | Path, when: str) -> KPageSnapshot:
    """The capture's ``when`` kpageflags dump, classified (memoised under :func:`reuse_snapshots`)."""
    d = Path(directory)
    return _memo(("kpage", d.resolve(), when), lambda: KPageSnapshot.from_capture(d, when))


def capture(directory: str | Path, when: str = "before") -> CaptureFiles:
    d = Path(directory)
    if when not in ("before", "after"):
        raise ConfigError(f"--when must be before or after, got {when!r}")
    if not d.is_dir():
        raise ConfigError(f"{d}: not a directory")
    return CaptureFiles(d, when)


@dataclass
class SnapshotState:
    """Everything needed to load a snapshot into a design, plus the import's own report."""

    npfn: int
    reserved: np.ndarray
    alloc_pfn: np.ndarray
    alloc_order: np.ndarray
    alloc_mt: np.ndarray
    alloc_gfp: np.ndarray
    free_pfn: np.ndarray
    free_order: np.ndarray
    pageblock_mt: np.ndarray  # per pageblock of the whole pfn range
    online_sections: np.ndarray  # bool per memory section: not all hole/unavailable
    report: dict = field(default_factory=dict)


def _compound_heads(flags: np.ndarray, alloc_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Allocation heads and orders: compound heads with their tails, other pages order 0."""
    head_bit = kpf_mask(KPF.COMPOUND_HEAD)
    tail_bit = kpf_mask(KPF.COMPOUND_TAIL)
    is_tail = (flags & tail_bit) != 0
    is_head = (flags & head_bit) != 0
    heads = np.flatnonzero(alloc_mask & ~is_tail)
    order = np.zeros(heads.shape[0], np.int64)
    ch = np.flatnonzero(alloc_mask & is_head)
    if ch.shape[0]:
        nontail = np.flatnonzero(~is_tail)
        # first non-tail pfn after each compound head
        nxt = nontail[np.searchsorted(nontail, ch, side="right")] if nontail.shape[0] else ch + 1
        size = nxt - ch
        ok = (size & (size - 1)) == 0
        o = np.log2(np.maximum(size, 1)).astype(np.int64)
        ok &= (ch & (size - 1)) == 0
        ok &= o <= 10
        idx = np.searchsorted(heads, ch)
        order[idx[ok]] = o[ok]
        # compounds whose size is not a buddy block: every page becomes its own order-0 allocation
        bad = ch[~ok]
        if bad.shape[0]:
            extra = np.concatenate([np.arange(h + 1, n) for h, n in zip(bad, nxt[~ok], strict=True)])
            heads = np.concatenate([heads, extra])
            order = np.concatenate([order, np.zeros(extra.shape[0], np.int64)])
            srt = np.argsort(heads, kind="stable")
            heads, order = heads[srt], order[srt]
    # tails that follow no allocated head (e.g. their head is reserved) become order-0 pages
    covered = np.zeros(flags.shape[0], np.bool_)
    big = order > 0
    for h, o in zip(heads[big], order[big], strict=True):
        covered[h:h + (1 << int(o))] = True
    orphan = np.flatnonzero(alloc_mask & is_tail & ~covered)
    if orphan.shape[0]:
        heads = np.concatenate([heads, orphan])
        order = np.concatenate([order, np.zeros(orphan.shape[0], np.int64)])
        srt = np.argsort(heads, kind="stable")
        heads, order = heads[srt], order[srt]
    return heads, order


def rebuild_state(files: CaptureFiles, npfn_min: int = 0) -> tuple[SnapshotState, KPageSnapshot]:
    """Classify a snapshot and turn it into allocator state arrays (design independent;
    memoised under :func:`reuse_snapshots`)."""
    return _memo(("state", files.directory.resolve(), files.when, int(npfn_min)),
                 lambda: _rebuild_state(files, npfn_min))


def _rebuild_state(files: CaptureFiles, npfn_min: int) -> tuple[SnapshotState, KPageSnapshot]:
    snap = kpage_snapshot(files.directory, files.when)
    npfn = max(snap.npfn, npfn_min)
    classes = snap.page_class
    flags = snap.flags
    zone_index = snap.zone_index
    in_zone = zone_index >= 0
    reserved_mask = in_zone & np.isin(classes, np.array(RESERVED_CLASSES, np.uint8))
    free_mask = classes == PageClass.FREE
    alloc_mask = in_zone & ~reserved_mask & ~free_mask
    heads, orders = _compound_heads(flags, alloc_mask)
    # pageblock types
    pti = files.pagetypeinfo()
    pb = np.full((npfn + (1 << PAGEBLOCK_ORDER) - 1) >> PAGEBLOCK_ORDER, MigrateType.MOVABLE, np.uint8)
    report: dict = {}
    types = None
    if pti is not None:
        _free_tables, block_counts = pagetypeinfo_tables(pti)
        types = snap.pageblock_migratetypes(block_counts)
        assigned = types.migratetype >= 0
        pb[types.pageblock[assigned]] = types.migratetype[assigned].astype(np.uint8)
    blocks = snap.free_blocks()
    # a free block larger than a pageblock covers pageblocks of one type (the kernel merged them)
    for p, o in zip(blocks.pfn[blocks.order > PAGEBLOCK_ORDER], blocks.order[blocks.order > PAGEBLOCK_ORDER],
                    strict=True):
        first = int(p) >> PAGEBLOCK_ORDER
        pb[first:first + (1 << (int(o) - PAGEBLOCK_ORDER))] = pb[first]
    if types is not None and pti is not None:
        rebuilt = free_counts_by_migratetype(blocks, types)
        real = {f"{z.node}:{z.zone}": {n: list(r) for n, r in zip(pti.migratetype_names, z.free, strict=True)}
                for z in pti.zones}
        try:
            report["pagetypeinfo_match"] = compare_free_counts(rebuilt, real)["fraction"]
        except ConfigError:
            report["pagetypeinfo_match"] = None
    cls_h = classes[heads]
    pbt = pb[heads >> PAGEBLOCK_ORDER].astype(np.int64)
    mt = np.where(np.isin(cls_h, np.array(MOVABLE_CLASSES, np.uint8)), int(MigrateType.MOVABLE),
                  np.where((pbt == MigrateType.UNMOVABLE) | (pbt == MigrateType.RECLAIMABLE), pbt,
                           int(MigrateType.UNMOVABLE)))
    gfp = np.where(orders > 0, gfpmod.__GFP_COMP, 0).astype(np.int64)
    # pcp candidates: flagless pages with a zero count
    if snap.counts is not None:
        cand = alloc_mask & (classes == PageClass.OTHER) & (flags == 0) & (snap.counts == 0)
        report["pcp_candidates"] = int(np.count_nonzero(cand))
    zinfo = files.zoneinfo()
    report["pcp_pages_zoneinfo"] = int(sum(p.count for z in zinfo if z.pagesets for p in z.pagesets))
    nsec = -(-npfn // snap.section_pages)
    present = np.zeros(nsec * snap.section_pages, np.bool_)
    present[: classes.shape[0]] = (classes != PageClass.HOLE) & (classes != PageClass.UNAVAILABLE)
    online = present.reshape(nsec, snap.section_pages).any(axis=1)
    st = SnapshotState(npfn=npfn, reserved=np.flatnonzero(reserved_mask).astype(np.int64), alloc_pfn=heads,
                       alloc_order=orders, alloc_mt=mt.astype(np.int64), alloc_gfp=gfp,
                       free_pfn=blocks.pfn.astype(np.int64), free_order=blocks.order.astype(np.int64),
                       pageblock_mt=pb, online_sections=online, report=report)
    return st, snap


def machine_from_snapshot(directory: str | Path, when: str = "before", design: str = "linux",
                          cpus: int | None = None, **config_kw):
    """A Machine (any design) in the exact state of a capture's snapshot.

    Returns ``(machine, snapshot_state, kpage_snapshot)``.
    """
    files = capture(directory, when)
    cls = get_design(design)
    zinfo = files.zoneinfo()
    layout = layout_from_zoneinfo(zinfo, source=f"{files.directory.name} {when}", nr_cpus=cpus, words=cls.words)
    state, snap = rebuild_state(files, layout.max_pfn)
    config = AllocConfig(**config_kw)
    d = cls(layout, config, boot=False, npages=state.npfn)
    d.init_from_snapshot(state.reserved, state.alloc_pfn, state.alloc_order, state.alloc_mt, state.alloc_gfp,
                         state.free_pfn, state.free_order, state.pageblock_mt[: d.zs.pb.shape[0]])
    d.set_online_sections(state.online_sections, snap.section_pages)
    m = Machine.from_design(layout, d)
    return m, state, snap


def buddyinfo_diff(model: dict[str, list[int]], real: dict[str, list[int]]) -> dict:
    """Per zone: model, real, per-order difference and free pages on both sides."""
    out = {}
    for key, r in real.items():
        mo = model.get(key, [0] * len(r))
        mp = sum(c << o for o, c in enumerate(mo))
        rp = sum(c << o for o, c in enumerate(r))
        out[key] = {"model": list(mo), "real": list(r), "diff": [a - b for a, b in zip(mo, r, strict=True)],
                    "model_free_pages": mp, "real_free_pages": rp,
                    "free_pages_diff_pct": (100.0 * (mp - rp) / rp) if rp else 0.0}
    return out


MIGRATETYPE_ORDER = MIGRATETYPE_NAMES
