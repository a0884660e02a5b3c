"""The modelled machine: a layout, a page-allocator design on it, and the kernel's views.

Theory
------
:class:`Machine` is the Python face of memdesc.  It owns a
:class:`~memdesc.mm.mm_init.MachineLayout` (nodes, zones, holes, reservations) and one
:class:`~memdesc.mm.page_alloc.base.Design` holding all allocator state in numpy arrays.
Single calls (``alloc_pages``, ``free_pages``) validate their arguments and raise
:class:`~memdesc.errors.MemdescError` subclasses on misuse, leaving the state untouched;
an allocation that finds no memory returns ``None`` (a normal result).  Bulk work
(churn, trace replay) runs in numba kernels on the design's state directly.

The /proc views (buddyinfo, pagetypeinfo, zoneinfo, debugfs extfrag) are produced in
the kernel's exact formats by :mod:`memdesc.mm.vmstat` from the design's counters.

Saved state.  Every byte of allocator state is in the design's state struct, so
:meth:`Machine.save` writes the machine as one ``.npz`` file: a JSON ``meta`` entry (format
version, design spec, layout, configuration, the design's Python-side attributes, the shape
and dtype of every array) and every state array, cut after its last non-zero row (the
untouched tail of a lazily zero-filled pool costs nothing) and compressed with zstd (a
struct page array is mostly repeated words: a 24 GiB machine's 400 MiB memmap saves in a
few MiB).
:meth:`Machine.load` builds the design with ``boot=False`` and copies the arrays back in
place, so a loaded machine continues bit-identically.  Drivers (replay, churn) store their
own loop state beside the machine in the same file (``extra_meta`` / ``extra_arrays``: a
checkpoint).  Loading uses no pickle: a file from elsewhere can at worst fail to load.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import zstandard

from memdesc import _html
from memdesc.errors import (
    ConfigError,
    DoubleFree,
    FormatError,
    InvalidOrder,
    InvalidPfn,
    NotAllocationHead,
    OrderMismatch,
)
from memdesc.mm import gfp as gfpmod
from memdesc.mm import memmap, vmstat
from memdesc.mm.mm_init import MachineLayout, i386_layout, layout_from_zoneinfo, x86_64_layout
from memdesc.mm.mmzone import (
    MAX_PAGE_ORDER,
    MIGRATETYPE_NAMES,
    NR_PAGE_ORDERS,
    PAGEBLOCK_ORDER,
    MigrateType,
)
from memdesc.mm.page_alloc import AllocConfig, Design, core, get_design

GfpLike = int | str
#: what Machine.save writes in meta["format"], and the version of that layout
SAVE_FORMAT = "memdesc-machine"
SAVE_VERSION = 1


def _used_rows(a: np.ndarray) -> int:
    """Rows of ``a`` (along axis 0) up to its last non-zero one, scanning back in ~8 MiB steps."""
    if a.ndim == 0 or a.shape[0] == 0:
        return 0 if a.ndim else 1
    flat = a.reshape(a.shape[0], -1)
    step = max(1, (1 << 20) // max(1, flat.shape[1]))
    n = a.shape[0]
    while n > 0:
        lo = max(0, n - step)
        nz = np.flatnonzero(flat[lo:n].any(axis=1))
        if nz.size:
            return lo + int(nz[-1]) + 1
        n = lo
    return 0

#: The counters every JSON summary reports at its top level, under the names issue 13 fixed.
#: ``OPS`` go in ``ops``; ``COUNTERS`` stand alone.  ``COUNTER_ALIASES`` are the names designs
#: use internally for the same counts (radix's node statistics, vmem's descriptor statistics):
#: a summary drops them from ``stats`` and ``design_stats``, so each counter has one name
#: (``tests/test_results.py`` checks the aliases equal the counter they name).
OPS = ("alloc", "free", "alloc_failed")
COUNTERS = ("free_path_allocations", "free_stalls", "alloc_failed_for_metadata")
COUNTER_ALIASES = {
    "free_path_allocations": "free_path_allocations",
    "free_stalls": "free_stalls",
    "alloc_failed_for_metadata": "alloc_failed_for_metadata",
    "alloc_failed_for_reserve": "alloc_failed_for_metadata",
    "alloc_failed_for_descriptor": "alloc_failed_for_metadata",
}


def summary_design_stats(raw: dict | None) -> dict:
    """A design's ``design_stats()`` without the counters a summary reports at top level."""
    return {k: v for k, v in (raw or {}).items() if k not in COUNTER_ALIASES}


def to_gfp(gfp: GfpLike) -> int:
    """A gfp mask from an int or a string as ftrace prints it (``GFP_KERNEL|__GFP_COMP``)."""
    if isinstance(gfp, str):
        return gfpmod.parse_gfp(gfp)
    if isinstance(gfp, bool) or not isinstance(gfp, int | np.integer) or gfp < 0:
        raise ConfigError(f"gfp must be a non-negative int or a string like 'GFP_KERNEL', got {gfp!r}")
    return int(gfp)


class Machine:
    """A modelled machine running one page-allocator design."""

    def __init__(self, layout: MachineLayout, design: str | type[Design] = "linux",
                 config: AllocConfig | None = None):
        cls = get_design(design)
        self.layout = layout
        self.config = config or AllocConfig()
        self.design: Design = cls(layout, self.config)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_design(cls, layout: MachineLayout, design: Design) -> Machine:
        """Wrap an already built design (e.g. one loaded from a snapshot)."""
        m = cls.__new__(cls)
        m.layout = layout
        m.config = design.config
        m.design = design
        return m

    @classmethod
    def create(cls, mem: str | int = "16G", design: str | type[Design] = "linux", layout: str = "x86_64",
               nodes: int = 1, cpus: int | None = None, zoneinfo: str | Path | None = None,
               config: AllocConfig | None = None, **config_kw) -> Machine:
        """Build a machine from a size (``mem``, ``layout`` x86_64|i386, ``nodes``) or a zoneinfo file."""
        dcls = get_design(design)
        if config is None:
            config = AllocConfig(**config_kw)
        elif config_kw:
            raise ConfigError("pass either config= or keyword tunables, not both")
        if zoneinfo is not None:
            lay = layout_from_zoneinfo(vmstat.read_zoneinfo(zoneinfo), source=f"zoneinfo {zoneinfo}",
                                       nr_cpus=cpus, words=dcls.words)
        elif layout == "x86_64":
            lay = x86_64_layout(mem, nodes=nodes, words=dcls.words)
        elif layout == "i386":
            lay = i386_layout(mem, nodes=nodes, words=dcls.words)
        elif layout == "i386-nopae":
            lay = i386_layout(mem, nodes=nodes, words=dcls.words, pae=False)
        else:
            raise ConfigError(f"unknown layout {layout!r}: use x86_64, i386 or i386-nopae (or zoneinfo=FILE)")
        if cpus is not None and zoneinfo is None:
            lay = lay.with_cpus(cpus)
        return cls(lay, dcls, config)

    @classmethod
    def from_zoneinfo(cls, path: str | Path, design: str | type[Design] = "linux", cpus: int | None = None,
                      **config_kw) -> Machine:
        return cls.create(design=design, zoneinfo=path, cpus=cpus, **config_kw)

    # ------------------------------------------------------------------ basic facts
    @property
    def zones(self):
        return self.layout.zones

    @property
    def nr_cpus(self) -> int:
        return self.layout.nr_cpus

    @property
    def max_pfn(self) -> int:
        return self.layout.max_pfn

    @property
    def state(self):
        return self.design.state

    @property
    def migratetype_names(self) -> tuple[str, ...]:
        """Names /proc/pagetypeinfo prints, in this kernel configuration's order."""
        return tuple(n for i, n in enumerate(MIGRATETYPE_NAMES)
                     if i != MigrateType.CMA or self.config.cma)

    def _mt_indices(self) -> list[int]:
        return [i for i in range(len(MIGRATETYPE_NAMES)) if i != MigrateType.CMA or self.config.cma]

    # ------------------------------------------------------------------ allocation
    def _check_cpu(self, cpu: int) -> int:
        if not 0 <= int(cpu) < self.nr_cpus:
            raise ConfigError(f"cpu {cpu} out of range: the machine has {self.nr_cpus} CPUs")
        return int(cpu)

    @staticmethod
    def _check_order(order: int) -> int:
        if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 0 <= order <= MAX_PAGE_ORDER:
            raise InvalidOrder(f"order {order!r} outside 0..{MAX_PAGE_ORDER} (MAX_PAGE_ORDER)")
        return int(order)

    def alloc_pages(self, gfp: GfpLike = "GFP_KERNEL", order: int = 0, cpu: int = 0) -> int | None:
        """Allocate 2^order pages; the first pfn, or None when no memory satisfies the request."""
        g = to_gfp(gfp)
        order = self._check_order(order)
        cpu = self._check_cpu(cpu)
        if (g & gfpmod.GFP_MOVABLE_MASK) == gfpmod.GFP_MOVABLE_MASK:
            raise ConfigError(f"gfp {gfpmod.format_gfp(g)}: __GFP_MOVABLE and __GFP_RECLAIMABLE together "
                              "is a caller bug")
        if self.design.zs.gfp_zone_table[g & gfpmod.GFP_ZONEMASK] < 0:
            raise ConfigError(f"gfp {gfpmod.format_gfp(g)}: invalid zone modifier combination (GFP_ZONE_BAD)")
        pfn = self.design.alloc(g, order, cpu)
        return None if pfn < 0 else pfn

    def free_pages(self, pfn: int, order: int = 0, cpu: int = 0) -> None:
        """Free an allocation; raises on misuse (double free, wrong order, not a head...)."""
        order = self._check_order(order)
        cpu = self._check_cpu(cpu)
        if isinstance(pfn, bool) or not isinstance(pfn, int | np.integer):
            raise InvalidPfn(f"pfn must be an integer, got {pfn!r}")
        pfn = int(pfn)
        rc = self.design.free(pfn, order, cpu)
        if rc == core.OK:
            return
        self._raise_free_error(rc, pfn, order)

    def _raise_free_error(self, rc: int, pfn: int, order: int) -> None:
        if rc == core.E_RANGE:
            raise InvalidPfn(f"pfn {pfn:#x} is outside every zone of the machine (max_pfn {self.max_pfn:#x})")
        if rc == core.E_RESERVED:
            raise InvalidPfn(f"pfn {pfn:#x} is a reserved page or a hole, it was never allocated")
        if rc == core.E_DOUBLE_FREE:
            raise DoubleFree(f"double free: pfn {pfn:#x} is already free")
        if rc == core.E_NOT_HEAD:
            raise NotAllocationHead(f"pfn {pfn:#x} is not the first page of an allocation")
        if rc == core.E_ORDER:
            v = int(self.design.zs.owner[pfn])
            raise OrderMismatch(f"pfn {pfn:#x} was allocated with order {core.owner_order(v)}, "
                                f"freed with order {order}")
        raise InvalidPfn(f"free_pages({pfn:#x}, {order}) failed with code {rc}")

    def take(self, pfn: int, order: int) -> bool:
        """Remove the free block [pfn, pfn + 2^order) from the allocator (take_page_off_buddy)."""
        order = self._check_order(order)
        if not 0 <= int(pfn) < self.max_pfn:
            raise InvalidPfn(f"pfn {pfn:#x} outside the machine")
        return self.design.take(int(pfn), order) == core.OK

    def drain_all_pages(self) -> None:
        self.design.drain()

    # ------------------------------------------------------------------ views
    def _populated(self) -> list[int]:
        return [i for i, z in enumerate(self.zones) if z.present > 0]

    def buddyinfo(self) -> vmstat.BuddyInfo:
        nr_free = self.design.nr_free
        rows = tuple(vmstat.BuddyInfoRow(self.zones[i].node, self.zones[i].name,
                                         tuple(int(x) for x in nr_free[i]))
                     for i in self._populated())
        return vmstat.BuddyInfo(rows)

    def pagetypeinfo(self) -> vmstat.PageTypeInfo:
        counts = self.design.free_counts_by_migratetype()
        blocks = self.design.pageblock_counts()
        mts = self._mt_indices()
        zones = []
        for i in self._populated():
            z = self.zones[i]
            zones.append(vmstat.PageTypeZone(
                z.node, z.name,
                tuple(tuple(int(x) for x in counts[i, mt]) for mt in mts),
                tuple(int(blocks[i, mt]) for mt in mts)))
        pbo = self.layout.pageblock_order
        return vmstat.PageTypeInfo(pbo, 1 << pbo, self.migratetype_names, tuple(zones))

    def zoneinfo(self) -> list[vmstat.ZoneInfo]:
        """The /proc/zoneinfo subset the model knows: header, protection, pagesets, start_pfn."""
        zs = self.design.zs
        out = []
        for i, z in enumerate(self.zones):
            prot = tuple(int(x) for x in zs.lowmem_reserve[i])
            wm = zs.wmark[i]
            common = dict(node=z.node, zone=z.name, pages_free=int(zs.z_free[i]), min=int(wm[0]),
                          low=int(wm[1]), high=int(wm[2]), promo=int(wm[3]), spanned=z.spanned,
                          present=z.present, managed=int(zs.z_managed[i]), protection=prot,
                          boost=int(zs.boost[i]), cma=0)
            if z.present == 0:
                out.append(vmstat.ZoneInfo(**common))
                continue
            psets = tuple(vmstat.PerCpuPageset(cpu, int(zs.pcp[cpu, i, core.PCP_COUNT]),
                                               int(zs.pcp[cpu, i, core.PCP_HIGH]),
                                               int(zs.pcp[cpu, i, core.PCP_BATCH]),
                                               int(zs.pcp[cpu, i, core.PCP_HIGH_MIN]),
                                               int(zs.pcp[cpu, i, core.PCP_HIGH_MAX]))
                          for cpu in range(self.nr_cpus))
            out.append(vmstat.ZoneInfo(**common, stats={"nr_free_pages": int(zs.z_free[i])}, pagesets=psets,
                                       node_unreclaimable=0, start_pfn=z.start_pfn))
        return out

    def unusable_index(self) -> list[vmstat.FragIndexRow]:
        return vmstat.unusable_index_rows(self.buddyinfo())

    def extfrag_index(self) -> list[vmstat.FragIndexRow]:
        return vmstat.extfrag_index_rows(self.buddyinfo())

    def proc_files(self) -> dict[str, str]:
        """Every view as the text of its /proc (or debugfs) file."""
        return {
            "buddyinfo": vmstat.format_buddyinfo(self.buddyinfo()),
            "pagetypeinfo": vmstat.format_pagetypeinfo(self.pagetypeinfo()),
            "zoneinfo": vmstat.format_zoneinfo(self.zoneinfo()),
            "unusable_index": vmstat.format_unusable_index(self.unusable_index()),
            "extfrag_index": vmstat.format_extfrag_index(self.extfrag_index()),
        }

    def free_pages_count(self) -> int:
        return int(self.design.zs.z_free.sum())

    # ------------------------------------------------------------------ inspection
    def check(self) -> str:
        """Full invariant check: "ok" or a sentence naming the first violation."""
        return self.design.check()

    def page_state(self, pfn: int) -> str:
        """What the page is, from the owner bytes and the design's pa_free_extent (any design)."""
        d = self.design
        owner = d.zs.owner
        if not 0 <= pfn < owner.shape[0] or core.page_zone(d.state, pfn) < 0:
            return "not in any zone"
        v = int(owner[pfn])
        if v == core.OWNER_RESERVED:
            return "reserved"
        if v == core.OWNER_PCP:
            return "pcp"
        if v != core.OWNER_NONE:
            what = "the design's own metadata page" if d.is_own_page(pfn) else "allocated head"
            return f"{what} (order {core.owner_order(v)})"
        start, _end = d.free_extent(pfn)
        if start >= 0:
            return f"free (in block {start:#x})"
        for o in range(1, NR_PAGE_ORDERS):
            head = pfn & ~((1 << o) - 1)
            w = int(owner[head])
            if w == core.OWNER_PCP:
                return f"pcp (tail of the block at {head:#x})"
            if w not in (core.OWNER_NONE, core.OWNER_RESERVED) and core.owner_order(w) >= o:
                return "allocated (tail)"
        return "in no state (a bug: check() would say so)"

    def describe_page(self, pfn: int) -> str:
        """The page's struct page / memdesc decoded like the kernel's dump_page()."""
        if isinstance(pfn, bool) or not isinstance(pfn, int | np.integer) or not 0 <= pfn < self.max_pfn:
            raise InvalidPfn(f"pfn {pfn!r} outside the machine (0..{self.max_pfn - 1:#x})")
        pfn = int(pfn)
        words = self.design.page_words(pfn)
        zi = self.layout.zone_of_pfn(pfn)
        extra = {
            "state": self.page_state(pfn),
            "zone": f"node {self.zones[zi].node} {self.zones[zi].name}" if zi >= 0 else "none",
            "pageblock": f"{pfn >> self.layout.pageblock_order} type "
                         f"{MIGRATETYPE_NAMES[int(self.design.zs.pb[pfn >> PAGEBLOCK_ORDER]) & 7]}",
            "design": f"{self.design.name} ({self.design.struct_page_bytes} B struct page)",
        }
        return memmap.dump_page(pfn, words, self.design.page_layout, memmap.zone_names_for(self.layout.zone_types),
                                extra)

    def metadata_bytes(self) -> dict[str, int]:
        return self.design.metadata_bytes()

    def stats(self) -> dict[str, int]:
        st = self.design.zs.stats
        return {name: int(st[i]) for i, name in enumerate(core.STAT_NAMES)}

    def summary(self) -> dict:
        """The JSON summary keys shared by every command (see the CLI)."""
        md = self.metadata_bytes()
        st = self.stats()
        return {
            "machine": self.layout.describe(),
            "design": self.design.name,
            "struct_page_bytes": self.design.struct_page_bytes,
            "metadata_bytes": md,
            "bookkeeping_bytes": self.design.bookkeeping_bytes(),
            "min_free_kbytes": getattr(self.design, "min_free_kbytes", None),
            "ops": {k: st[k] for k in OPS},
            "stats": {k: v for k, v in st.items() if k not in OPS and k not in COUNTER_ALIASES},
            **{k: st[k] for k in COUNTERS},
            "design_stats": summary_design_stats(self.design.design_stats()),
            "buddyinfo": self.buddyinfo().to_dict(),
            "unusable_index": {f"{r.node}:{r.zone}": list(r.values) for r in self.unusable_index()},
            "extfrag_index": {f"{r.node}:{r.zone}": list(r.values) for r in self.extfrag_index()},
            "free_pages": self.free_pages_count(),
        }

    # ------------------------------------------------------------------ saved state
    def save(self, path: str | Path, *, extra_meta: dict | None = None,
             extra_arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Write the whole machine to ``path`` (see the module docstring); atomically: a
        checkpoint being rewritten is never left half written.  Returns the path."""
        path = Path(path)
        d = self.design
        arrays: dict[str, np.ndarray] = {}
        info = {}
        cz = zstandard.ZstdCompressor(level=1)
        for name, a in d.state_arrays().items():
            rows = _used_rows(a)
            part = np.ascontiguousarray(a[:rows] if a.ndim else a)
            arrays[f"state.{name}"] = np.frombuffer(cz.compress(part.tobytes()), np.uint8)
            info[name] = {"shape": list(a.shape), "dtype": a.dtype.str, "rows": rows, "codec": "zstd"}
        for name, a in (extra_arrays or {}).items():
            arrays[f"extra.{name}"] = np.asarray(a)
        meta = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "design": d.spec(),
                "layout": self.layout.to_json(), "config": dataclasses.asdict(self.config),
                "design_state": d.python_state(), "arrays": info, "extra": extra_meta or {}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return path

    @staticmethod
    def _read_meta(z, path: Path) -> dict:
        try:
            meta = json.loads(bytes(z["meta"]).decode())
        except (KeyError, ValueError, UnicodeDecodeError):
            raise FormatError("not a saved memdesc machine (no meta entry)", str(path)) from None
        if meta.get("format") != SAVE_FORMAT:
            raise FormatError(f"not a saved memdesc machine (format {meta.get('format')!r})", str(path))
        if meta.get("version") != SAVE_VERSION:
            raise FormatError(f"saved with format version {meta.get('version')}, this memdesc reads "
                              f"version {SAVE_VERSION}", str(path))
        return meta

    @classmethod
    def load(cls, path: str | Path) -> Machine:
        """A machine exactly as :meth:`save` wrote it."""
        return cls.load_checkpoint(path)[0]

    @classmethod
    def load_checkpoint(cls, path: str | Path) -> tuple[Machine, dict, dict[str, np.ndarray]]:
        """(machine, extra_meta, extra_arrays): a saved machine with what a driver stored beside it."""
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(f"cannot read a saved machine: {e}", str(path)) from None
        with z:
            meta = cls._read_meta(z, path)
            layout = MachineLayout.from_json(meta["layout"])
            fields = {f.name for f in dataclasses.fields(AllocConfig)}
            config = AllocConfig(**{k: v for k, v in meta["config"].items() if k in fields})
            dcls = get_design(meta["design"])
            ds = meta["design_state"]
            d = dcls(layout, config, boot=False, npages=int(ds["npages"]))
            dz = zstandard.ZstdDecompressor()
            for name, a in d.state_arrays().items():
                info = meta["arrays"].get(name)
                if info is None or list(a.shape) != info["shape"] or a.dtype.str != info["dtype"]:
                    raise FormatError(f"saved array {name} {info} does not fit the {d.name} design's "
                                      f"{list(a.shape)} {a.dtype.str}", str(path))
                rows = int(info["rows"]) if a.ndim else 1
                try:
                    raw = dz.decompress(z[f"state.{name}"].tobytes())
                except zstandard.ZstdError as e:
                    raise FormatError(f"saved array {name} is damaged: {e}", str(path)) from None
                if a.ndim == 0:
                    a[...] = np.frombuffer(raw, a.dtype)[0]
                    continue
                a[:rows] = np.frombuffer(raw, a.dtype).reshape((rows, *a.shape[1:]))
                if rows < a.shape[0] and _used_rows(a[rows:]):
                    a[rows:] = 0
            d.load_python_state(ds)
            extra = {k[len("extra."):]: z[k] for k in z.files if k.startswith("extra.")}
        return cls.from_design(layout, d), meta["extra"], extra

    def _repr_html_(self) -> str:
        """Jupyter: the zones, the metadata bytes, the counters and /proc/buddyinfo."""
        zs = self.design.zs
        zones = _html.table(("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "direct mapped"),
                            ((z.node, z.name, hex(z.start_pfn), z.spanned, z.present, int(zs.z_managed[i]),
                              int(zs.z_free[i]), "yes" if z.direct_mapped else "no")
                             for i, z in enumerate(self.zones) if z.present),
                            caption=f"{self.layout.source}: design {self.design.name} "
                                    f"({self.design.struct_page_bytes}-byte struct page), {self.nr_cpus} CPUs")
        st = self.stats()
        counters = _html.kv_table({**self.metadata_bytes(), **{k: st[k] for k in (*OPS, *COUNTERS)}},
                                  caption="metadata bytes and counters")
        bi = self.buddyinfo()
        buddy = _html.table(("zone", *range(bi.nr_orders)), ((f"{r.node}:{r.zone}", *r.nr_free) for r in bi.rows),
                            caption="/proc/buddyinfo (free blocks per order)")
        return _html.fragment(zones, counters, buddy)

    def __repr__(self) -> str:
        return (f"Machine({self.layout.source!r}, design={self.design.name!r}, nodes={self.layout.nr_nodes}, "
                f"cpus={self.nr_cpus}, max_pfn={self.max_pfn:#x})")


NR_ORDERS = NR_PAGE_ORDERS
