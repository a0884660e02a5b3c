"""The ontology of a real machine: its memdesc census and what each design's metadata would cost.

Theory
------
Wilcox's "State of the Page" (Aug 2022) estimated what struct page and separately
allocated descriptors cost ("memmap occupies 1.6% of memory"; an 8-byte memdesc 0.2%;
"88 + 2·8 = 104 B vs 128 B today" for a mean folio of two pages).  This module computes
that estimate from a real machine: the census of its kpageflags dump
(:mod:`memdesc.trace.kpagetype`) priced in every design of the memdesc type table
(:mod:`memdesc.mm.memdesc`):

* ``struct_page_bytes`` = struct page size x pfns with a memmap (every pfn of a present
  memory section, SPARSEMEM_VMEMMAP; the PCI hole has none);
* ``descriptor_bytes`` per kind = allocations of the kind x its separately allocated
  descriptor (a folio per folio whatever its order, a struct slab per slab, a ptdesc per
  page table); ``linux`` overlays them on struct page (0 extra).  The descriptor caches
  are packed into order-0 slabs, and every slab page of a descriptor cache is itself a
  slab that needs a struct slab: ``descriptor_slabs`` holds the packing waste and those
  struct slabs, computed to the fixed point (the recursion converges: 64 B per 4 KiB
  page is a ratio of 1/64).  ``vmem`` adds ``buddy``: the 32-byte struct buddy every
  allocation reserves for its free;
* ``freelist_bytes`` = the free-memory structures: list heads, pcp heads and pageblock
  bits (``linux``, ``linux:32``: the unchanged list buddy), XArray deques and their node
  pages (``radix``), vmem arenas, magazines and the struct buddy of free segments and
  spares (``vmem``), LLFree's bitfields, children, trees and per-CPU reservations
  (``llfree``, from llfree-c's published layout).  Where a design exists in
  :mod:`memdesc.mm.page_alloc`, the snapshot is loaded into it
  (:func:`memdesc.sim.snapshot.machine_from_snapshot`) and its own ``metadata_bytes()`` are
  used (``design_detail[d]["freelist_source"]`` says which); otherwise a formula.

``bytes_per_page`` divides the total by the present RAM pages, ``percent_of_ram`` by
their bytes.  What kpageflags cannot tell apart (vmalloc, page_pool, zsmalloc, percpu and
pcp-cached pages are all flagless ``misc:driver``) is priced as bare memory, so the
separate designs' descriptor figures are a lower bound by those pages' descriptors.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from memdesc import _html
from memdesc.errors import CaptureError, ConfigError, FormatError, MemdescError
from memdesc.lib.llfree import MIN_PAGES as LLFREE_MIN_PAGES
from memdesc.lib.llfree import TREE_SIZE as LLFREE_TREE_SIZE
from memdesc.lib.llfree import Classing, LLFree
from memdesc.mm import memdesc as md
from memdesc.mm import vmstat
from memdesc.mm.mmzone import (
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    NR_PAGEBLOCK_BITS,
    NR_PCP_LISTS,
    PAGE_SIZE,
    PAGEBLOCK_ORDER,
)
from memdesc.mm.page_alloc import get_design
from memdesc.sim.scanner import SCANNERS, scanner_table
from memdesc.sim.snapshot import capture, machine_from_snapshot
from memdesc.trace.capture import take_snapshot
from memdesc.trace.kpagetype import CENSUS_KINDS, Census, census_from_files

DESIGNS: tuple[str, ...] = md.DESIGN_NAMES

# ----------------------------------------------------------------- formulas (no design loaded)
#: linux free_area: per zone and order, MIGRATE_TYPES list heads (16 B) + nr_free (8 B);
#: per CPU and zone NR_PCP_LISTS list heads (LinuxDesign.freelist_bytes)
LIST_HEAD = 16
#: radix: per list two struct xarray (16 B) and a 13-word deque (radix.XA_BYTES, radix.NDQ);
#: tree nodes of 576 B, 7 per 4 KiB page
XA_BYTES, RADIX_DEQUE_WORDS, XA_NODE_SLOTS, XA_NODES_PER_PAGE = 16, 13, 64, 7
#: vmem: 32-byte struct buddy, 128 per descriptor page plus an 8-byte page-table entry; per zone
#: MIGRATE_TYPES + 1 arenas of 48 freelist heads, freemap and free count; per pcp list a head and
#: a 15-round magazine (vmem_arena: DESC_BYTES, NCLASS, MAG_ROUNDS, DESC_MINFREE)
VMEM_DESC, VMEM_NCLASS, VMEM_MAG_ROUNDS, VMEM_DESC_MINFREE = 32, 48, 15, 6


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


def pageblock_bytes(npfn: int) -> int:
    npb = -(-npfn // (1 << PAGEBLOCK_ORDER))
    return (npb * NR_PAGEBLOCK_BITS + 7) // 8


def list_buddy_bytes(nzones: int, ncpus: int) -> int:
    """free_area list heads and nr_free, pcp list heads (exactly LinuxDesign.freelist_bytes)."""
    return nzones * NR_PAGE_ORDERS * (MIGRATE_TYPES * LIST_HEAD + 8) + ncpus * nzones * NR_PCP_LISTS * LIST_HEAD


def xarray_nodes(entries: int) -> int:
    """Nodes of an XArray holding ``entries`` values at consecutive indices (one per level)."""
    nodes = 0
    n = entries
    while n > 1:
        n = -(-n // XA_NODE_SLOTS)
        nodes += n
    return nodes if entries > 1 else 0


def radix_formula(census: Census, nzones: int, ncpus: int) -> int:
    """Radix free lists: deque structures per list, nr_free, and node pages for the free blocks
    (one deque side per zone and order; migratetype split and pcp lists not modelled)."""
    nlists = nzones * NR_PAGE_ORDERS * MIGRATE_TYPES + ncpus * nzones * NR_PCP_LISTS
    heads = nlists * (2 * XA_BYTES + RADIX_DEQUE_WORDS * 8) + nzones * NR_PAGE_ORDERS * 8
    counts = census.free_blocks.counts()
    nodes = sum(xarray_nodes(int(c)) for c in counts.ravel())
    return heads + -(-nodes // XA_NODES_PER_PAGE) * PAGE_SIZE


def free_segments(census: Census) -> int:
    """Free segments as the vmem design's arenas hold them: maximal free runs per zone, whose whole
    free pageblocks form one zone-arena segment and whose partial pageblocks at either end are
    segments of a migratetype arena."""
    fb = census.free_blocks
    if len(fb) == 0:
        return 0
    end = fb.pfn + (1 << fb.order.astype(np.int64))
    joined = (fb.pfn[1:] == end[:-1]) & (fb.zone[1:] == fb.zone[:-1])
    first = np.concatenate(([True], ~joined))
    last = np.concatenate((~joined, [True]))
    s = fb.pfn[first]
    e = end[last]
    pb = 1 << PAGEBLOCK_ORDER
    up = -(-s // pb) * pb
    down = e // pb * pb
    whole = down > up
    head = (s % pb != 0) & (np.minimum(e, up) > s)
    tail = (e % pb != 0) & (down >= up) & (down > s)
    return int(whole.sum() + head.sum() + tail.sum())


def vmem_formula(census: Census, nzones: int, ncpus: int, allocations: int) -> tuple[int, int]:
    """(freelist bytes, struct buddy bytes reserved by allocations) of the vmem design, by formula."""
    segments = free_segments(census)
    ndesc = segments + allocations + VMEM_DESC_MINFREE
    pages = -(-ndesc // (PAGE_SIZE // VMEM_DESC))
    desc_total = pages * (PAGE_SIZE + 8)
    heads = nzones * (MIGRATE_TYPES + 1) * (VMEM_NCLASS * 16 + 16) \
        + ncpus * nzones * NR_PCP_LISTS * (16 + 8 * (VMEM_MAG_ROUNDS + 1))
    buddy = allocations * VMEM_DESC
    return heads + desc_total - buddy, buddy


def llfree_formula(census: Census, nzones: int, ncpus: int) -> int:
    """LLFree metadata as the llfree design keeps it: one instance per zone from the zone's start
    rounded down to a tree (16 MiB), llfree-c's buffers (``LLFree.metadata_size``: struct,
    per-CPU reservations of the movable classing, tree entries, children and bitfields), and a
    list head per pcp list (LLFreeDesign.freelist_bytes)."""
    total = 0
    zones = [z for z in census.zones if z.spanned]
    for z in zones:
        frames = max(z.end_pfn - (z.start_pfn & ~(LLFREE_TREE_SIZE - 1)), LLFREE_MIN_PAGES)
        total += LLFree.metadata_size(Classing.movable(ncpus), frames).total
    return total + ncpus * nzones * NR_PCP_LISTS * LIST_HEAD


# ----------------------------------------------------------------- descriptors
def descriptor_objects(census: Census) -> dict[str, dict[str, int]]:
    """``{kind: {cache: objects}}``: separately allocated descriptors the census needs."""
    out: dict[str, dict[str, int]] = {}
    for i, name in enumerate(CENSUS_KINDS):
        kind = md.KIND_BY_NAME[name]
        for o, c in enumerate(census.hist[i]):
            d = kind.descriptor(o)
            if not c or d is None or d.cache is None:
                continue
            out.setdefault(name, {})
            out[name][d.cache] = out[name].get(d.cache, 0) + int(c)
    return out


def pack_descriptors(objects: dict[str, dict[str, int]]) -> tuple[dict[str, int], dict[str, dict]]:
    """Descriptor bytes per kind plus ``descriptor_slabs`` (slab packing waste and the struct slab
    of every descriptor slab page, to the fixed point), and per cache its objects and pages."""
    per_cache: dict[str, int] = {}
    for caches in objects.values():
        for c, n in caches.items():
            per_cache[c] = per_cache.get(c, 0) + n
    census_slabs = per_cache.get("slab", 0)
    pages: dict[str, int] = {}
    for _ in range(64):
        new = {c: -(-n // md.objects_per_slab(md.DESCRIPTOR_CACHES[c])) for c, n in per_cache.items() if n}
        own = sum(new.values())
        slab_objs = census_slabs + own
        if per_cache.get("slab", 0) == slab_objs and new == pages:
            break
        per_cache["slab"] = slab_objs
        pages = new
    else:  # pragma: no cover - 1/64 per round converges in a handful of rounds
        raise ConfigError("descriptor slab recursion did not converge")
    by_kind = {k: sum(n * md.DESCRIPTOR_CACHES[c] for c, n in caches.items()) for k, caches in objects.items()}
    total = sum(p * PAGE_SIZE for p in pages.values())
    by_kind["descriptor_slabs"] = total - sum(by_kind.values())
    caches = {c: {"objects": per_cache[c], "object_bytes": md.DESCRIPTOR_CACHES[c],
                  "objects_per_slab": md.objects_per_slab(md.DESCRIPTOR_CACHES[c]), "slab_pages": pages.get(c, 0)}
              for c in per_cache if per_cache[c]}
    return by_kind, caches


# ----------------------------------------------------------------- the report
def _loadable(design: str) -> bool:
    try:
        get_design(design)
    except MemdescError:
        return False
    return True


#: designs whose own metadata_bytes() are used (linux:32 keeps linux's list buddy)
LOADED_DESIGNS = ("linux", "radix", "vmem", "llfree")


def load_designs(directory: str | Path, when: str, designs=LOADED_DESIGNS) -> dict[str, dict]:
    """Load the snapshot into every design that exists in memdesc.mm.page_alloc: ``{design:
    {"metadata_bytes": ..., "allocations": n, "check": ...}}`` (the designs' own figures)."""
    out = {}
    for d in designs:
        if not _loadable(d):
            continue
        m, state, _snap = machine_from_snapshot(directory, when, d)
        out[d] = {"metadata_bytes": {k: int(v) for k, v in m.design.metadata_bytes().items()},
                  "allocations": int(state.alloc_pfn.shape[0]), "check": m.check()}
    return out


def design_metadata(census: Census, zoneinfo: list, loaded: dict[str, dict] | None = None) -> tuple[dict, dict]:
    """``(designs, design_detail)``: the JSON ``designs`` block and how each figure was made."""
    loaded = loaded or {}
    nzones = len(zoneinfo)
    ncpus = max((len(z.pagesets) for z in zoneinfo if z.pagesets), default=1)
    ram = census.ram_pages()
    memmap_pfns = census.memmap_pfns()
    objects = descriptor_objects(census)
    sep_desc, caches = pack_descriptors(objects)
    # what the vmem design holds as allocations (reserved/offline/hwpoison pages are reserved: bare)
    allocations = int(sum(v for k, v in census.allocations().items()
                          if k not in ("free", "misc:reserved", "misc:offline", "hwpoison")))
    pb = pageblock_bytes(census.npfn)
    designs: dict[str, dict] = {}
    detail: dict[str, dict] = {}
    for d in DESIGNS:
        spec = md.DESIGN_SPECS[d]
        sp_bytes = memmap_pfns * spec.struct_page_bytes
        desc = {k: 0 for k in CENSUS_KINDS}
        det: dict = {"struct_page": spec.struct_page_bytes, "memmap_pfns": memmap_pfns}
        if spec.separate_descriptors:
            desc.update(sep_desc)
            det["descriptor_caches"] = caches
        else:
            det["overlay_bytes"] = {k: sum(md.overlay_bytes(k, o) * int(c) for o, c in enumerate(census.hist[i]))
                                    for i, k in enumerate(CENSUS_KINDS)}
        base = "linux" if d == "linux:32" else d  # linux:32 keeps the list buddy
        mb = loaded.get(base, {}).get("metadata_bytes")
        if mb is not None:
            fl = mb["freelists"] + mb["descriptors"] + mb["pageblock_flags"]
            det["freelist_source"] = (f"design {base}: metadata_bytes() freelists + descriptors + pageblock_flags"
                                      + (" (the list buddy of linux)" if d == "linux:32" else ""))
            det["metadata_bytes"] = mb
            det["check"] = loaded[base]["check"]
            if d == "vmem":
                buddy = loaded[base]["allocations"] * VMEM_DESC
                desc["buddy"] = buddy
                fl -= buddy
                det["freelist_source"] += "; allocations' reserved struct buddy in descriptor_bytes['buddy']"
        else:
            if d in ("linux", "linux:32"):
                fl = list_buddy_bytes(nzones, ncpus) + pb
            elif d == "radix":
                fl = radix_formula(census, nzones, ncpus) + pb
            elif d == "vmem":
                fl, buddy = vmem_formula(census, nzones, ncpus, allocations)
                fl += pb
                desc["buddy"] = buddy
            else:
                fl = llfree_formula(census, nzones, ncpus) + pb
            det["freelist_source"] = "formula"
        total = sp_bytes + sum(desc.values()) + fl
        designs[d] = {"struct_page_bytes": sp_bytes, "descriptor_bytes": desc, "freelist_bytes": int(fl),
                      "total_bytes": int(total), "bytes_per_page": total / ram if ram else 0.0,
                      "percent_of_ram": 100.0 * total / (ram * PAGE_SIZE) if ram else 0.0}
        detail[d] = det
    return designs, detail


def read_capture(directory: str | Path, when: str = "before") -> tuple[Census, list]:
    """The census and parsed zoneinfo of one side of a capture directory."""
    files = capture(directory, when)
    flags = files.path("kpageflags")
    counts = files.path("kpagecount", required=False)
    zi = files.path("zoneinfo")
    zoneinfo = vmstat.read_zoneinfo(zi)
    return census_from_files(flags, zi, counts), zoneinfo


class OntologyResult(dict):
    """What :func:`ontology` returns: the ``--json`` dict itself (every key as documented), which
    Jupyter displays as tables (``_repr_html_``): the capture, the census by memory type, the
    metadata of each design, and the scanners' cache lines per pfn."""

    def _repr_html_(self) -> str:
        head = _html.kv_table({"capture": self.get("capture"), "when": self.get("when"), "pfns": self.get("pfns"),
                               "RAM pages": self.get("ram_pages"), "memmap pfns": self.get("memmap_pfns"),
                               "anomalies": sum(self.get("anomalies", {}).values())}, caption="ontology")
        census = self.get("census", {})
        alloc = self.get("allocations", {})
        ram = max(1, int(self.get("ram_pages") or 0))
        types = _html.table(("type", "pages", "% of RAM", "allocations"),
                            ((t, n, round(100.0 * n / ram, 3), alloc.get(t, 0)) for t, n in census.items() if n),
                            caption="memory types (pages in use by each; free = the buddy's)")
        designs = self.get("designs", {})
        dt = _html.table(("design", "struct page / memmap bytes", "descriptor bytes", "free-list bytes",
                          "total bytes", "bytes per page", "% of RAM"),
                         ((d, r.get("struct_page_bytes"), sum(r.get("descriptor_bytes", {}).values()),
                           r.get("freelist_bytes"), r.get("total_bytes"), r.get("bytes_per_page"),
                           r.get("percent_of_ram")) for d, r in designs.items()),
                         caption="metadata per design (every descriptor counted)")
        parts = [head, types, dt]
        sc = self.get("scanner")
        if sc:
            names = sorted({n for row in sc.values() for n in row})
            parts.append(_html.table(("design", *names), ((d, *(row.get(n) for n in names)) for d, row in sc.items()),
                                     caption="physical-memory scanners: cache lines touched per pfn"))
        return _html.fragment(*parts)


def ontology(directory: str | Path, when: str = "before", *, load: bool = True,
             scanners: bool = True) -> OntologyResult:
    """Everything ``memdesc ontology`` prints and writes (see the module documentation), as an
    :class:`OntologyResult` (a dict that displays in Jupyter)."""
    t0 = time.perf_counter()
    census, zoneinfo = read_capture(directory, when)
    t_census = time.perf_counter() - t0
    loaded = load_designs(directory, when) if load else {}
    designs, detail = design_metadata(census, zoneinfo, loaded)
    out = OntologyResult({"capture": str(directory), "when": when, "pfns": census.npfn, "ram_pages": census.ram_pages(),
           "ram_bytes": census.ram_pages() * PAGE_SIZE, "memmap_pfns": census.memmap_pfns(),
           "census": census.census(), "folios": census.folios(), "thp": census.thp(),
           "allocations": census.allocations(), "anomalies": census.anomaly_counts(),
           "designs": designs, "design_detail": detail})
    if scanners:
        table = scanner_table(census)
        out["scanner"] = {d: {s: r.lines_per_pfn for s, r in row.items()} for d, row in table.items()}
        out["scanner_detail"] = {d: {s: r.as_dict() for s, r in row.items()} for d, row in table.items()}
    out["seconds"] = {"census": t_census, "total": time.perf_counter() - t0}
    return out


# ----------------------------------------------------------------- the running machine
def snapshot_proc(dest: str | Path, proc: str | Path = "/proc", when: str = "before") -> Path:
    """Copy the running machine's /proc files into ``dest`` as ``{when}.NAME`` (a capture
    directory any command reads), with :func:`memdesc.trace.capture.take_snapshot` -- the
    snapshot ``memdesc capture`` takes.  kpageflags/kpagecount need root (CAP_SYS_ADMIN)."""
    proc = Path(proc)
    dest = Path(dest)
    for name in ("kpageflags", "zoneinfo"):
        if not (proc / name).exists():
            raise ConfigError(f"{proc / name} does not exist (not a Linux /proc, or CONFIG_PROC_PAGE_MONITOR off)")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        take_snapshot(dest, when, time.monotonic(), proc=proc)
    except PermissionError as e:
        raise ConfigError(f"{e.filename or proc}: permission denied: the /proc snapshot needs root "
                          "(CAP_SYS_ADMIN for /proc/kpageflags and /proc/kpagecount)") from None
    except CaptureError as e:
        hint = " (needs root: CAP_SYS_ADMIN)" if "ermission" in str(e) else ""
        raise ConfigError(f"{e}{hint}") from None
    if not any(dest.glob(f"{when}.kpageflags*")) or (dest / f"{when}.kpageflags.zst").stat().st_size == 0:
        raise FormatError("read nothing (no online memory section?)", str(proc / "kpageflags"))
    return dest


def ontology_of_proc(proc: str | Path = "/proc", *, keep: str | Path | None = None, **kw) -> OntologyResult:
    """:func:`ontology` of the running machine: its /proc files copied once (one moment), then read."""
    if keep is not None:
        d = snapshot_proc(keep, proc)
        out = ontology(d, "before", **kw)
    else:
        with tempfile.TemporaryDirectory(prefix="memdesc-proc-") as tmp:
            d = snapshot_proc(tmp, proc)
            out = ontology(d, "before", **kw)
    out["capture"] = str(proc)
    return out


__all__ = ["DESIGNS", "SCANNERS", "OntologyResult", "design_metadata", "descriptor_objects", "load_designs", "ontology",
           "ontology_of_proc", "pack_descriptors", "read_capture", "snapshot_proc"]
