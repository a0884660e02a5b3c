"""The modelled machine's physical layout: nodes, zones, holes, reservations (mm/mm_init.c).

Theory
------
A machine is a pfn range [0, max_pfn) of 4 KiB pages.  Firmware leaves holes (pfns with
no RAM: ``spanned - present``) and the kernel reserves some present pages at boot
(firmware tables, the kernel image, and — the point of this project — the memmap
itself: ``present - managed``).  Every node owns one zone of each *configured* zone
type, in ``pgdat->node_zones`` order; a zone may be empty (spanned 0).  Zones of one
node do not overlap, zones of different nodes do not overlap.

Layouts are built from:

* a size on x86-64 (:func:`x86_64_layout`): ZONE_DMA below 16 MiB, ZONE_DMA32 below
  4 GiB, ZONE_NORMAL above.  Like a QEMU/PC machine, RAM below 4 GiB stops at 3 GiB
  (the PCI hole is [3 GiB, 4 GiB)); pfn 0 and the legacy VGA/BIOS hole [0x9f, 0x100)
  are not RAM; [1, 0x9f) is reserved by firmware; the kernel image is reserved at
  16 MiB.  These match the real machine in ../shared/traces exactly for DMA.
* a size on i386 (:func:`i386_layout`): ZONE_DMA below 16 MiB, ZONE_NORMAL up to
  896 MiB (directly mapped), ZONE_HIGHMEM above — *not directly mapped*: kernel
  metadata cannot live there.  This is the machine of Kent Overstreet's problem.
* a real ``/proc/zoneinfo`` (:func:`layout_from_zoneinfo`): zone start_pfn, spanned,
  present and managed come out exactly; since zoneinfo does not say *where* holes and
  reservations are, holes are placed at the end of each zone's span (DMA: at the
  legacy hole) and reserved pages at the end of its present pages.  A kpageflags
  snapshot (memdesc.trace) replaces this guess with the real per-pfn state.

The memmap of a synthetic machine lives in modelled memory: ``W * 8`` bytes per
spanned pfn, allocated top-down in the highest directly-mapped memory of each node
(as memblock does), so a design with a smaller struct page leaves more pages managed.
A zoneinfo-built machine keeps the real kernel's ``managed`` counts for every design
(so designs are compared on identical free memory); its memmap bytes are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from memdesc.errors import ConfigError
from memdesc.mm.mmzone import (
    MAX_ORDER_NR_PAGES,
    PAGE_SHIFT,
    PAGE_SIZE,
    ZONE_BY_NAME,
    ZONE_NAMES,
    ZONES_I386,
    ZONES_X86_64,
    ZoneType,
)
from memdesc.units import parse_size

GiB_PAGES = (1 << 30) >> PAGE_SHIFT
MiB_PAGES = (1 << 20) >> PAGE_SHIFT
DMA_END_PFN = 16 * MiB_PAGES  # 0x1000
DMA32_END_PFN = 4 * GiB_PAGES  # 0x100000
LOWMEM_TOP_PFN = 3 * GiB_PAGES  # RAM below 4 GiB stops at 3 GiB (PCI hole above)
I386_MAX_LOW_PFN = 896 * MiB_PAGES  # 0x38000: end of the directly mapped region
LEGACY_HOLE = (0x9F, 0x100)  # 640 KiB .. 1 MiB
FIRMWARE_RESERVED = (0x1, 0x9F)
KERNEL_START_PFN = 16 * MiB_PAGES  # CONFIG_PHYSICAL_START = 0x1000000
DEFAULT_KERNEL_PAGES = 32 * MiB_PAGES


@dataclass(frozen=True)
class Reservation:
    """A range of present pages the kernel reserved at boot (not managed)."""

    start_pfn: int
    nr_pages: int
    what: str  # "firmware", "kernel", "memmap", "reserved"

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages


@dataclass(frozen=True)
class ZoneSpec:
    """One zone of one node: the fields of struct zone that define its memory."""

    node: int
    ztype: ZoneType
    start_pfn: int
    spanned: int
    present: int
    managed: int
    direct_mapped: bool
    holes: tuple[tuple[int, int], ...] = ()  # [start, end) pfn ranges without RAM

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.ztype]

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned

    @property
    def populated(self) -> bool:
        return self.present > 0

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "name": self.name,
            "start_pfn": self.start_pfn,
            "spanned": self.spanned,
            "present": self.present,
            "managed": self.managed,
            "direct_mapped": self.direct_mapped,
        }


@dataclass(frozen=True)
class MachineLayout:
    """The whole machine: configured zone types, zones per node, reservations, CPUs."""

    arch: str
    zone_types: tuple[ZoneType, ...]
    zones: tuple[ZoneSpec, ...]  # node-major, in zone_types order within a node
    reservations: tuple[Reservation, ...]
    nr_cpus: int = 2
    cpu_node: tuple[int, ...] = (0, 0)
    thp: bool = True
    cma: bool = False
    #: pageblock_order: 9 (x86-64, i386 PAE: 2 MiB huge pages), 10 (non-PAE i386: 4 MiB)
    pageblock_order: int = 9
    #: where the layout came from ("x86_64 16G", "zoneinfo FILE", ...)
    source: str = ""
    #: bytes of struct page the layout's memmap reservation was sized for
    memmap_words: int = 8
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def nr_nodes(self) -> int:
        return 1 + max(z.node for z in self.zones)

    @property
    def max_pfn(self) -> int:
        return max(z.end_pfn for z in self.zones if z.spanned) if any(z.spanned for z in self.zones) else 0

    @property
    def zones_per_node(self) -> int:
        return len(self.zone_types)

    def zone_index(self, node: int, ztype: ZoneType) -> int:
        return node * len(self.zone_types) + self.zone_types.index(ztype)

    def zone_of_pfn(self, pfn: int) -> int:
        for i, z in enumerate(self.zones):
            if z.start_pfn <= pfn < z.end_pfn:
                return i
        return -1

    def with_cpus(self, nr_cpus: int) -> MachineLayout:
        if nr_cpus < 1:
            raise ConfigError(f"need at least one CPU, got {nr_cpus}")
        nodes = self.nr_nodes
        per = max(1, nr_cpus // nodes)
        cpu_node = tuple(min(c // per, nodes - 1) for c in range(nr_cpus))
        return replace(self, nr_cpus=nr_cpus, cpu_node=cpu_node)

    def to_json(self) -> dict:
        """Every field as JSON values (Machine.save); :meth:`from_json` gives the layout back."""
        return {
            "arch": self.arch, "zone_types": [int(t) for t in self.zone_types],
            "zones": [[z.node, int(z.ztype), z.start_pfn, z.spanned, z.present, z.managed, bool(z.direct_mapped),
                       [list(h) for h in z.holes]] for z in self.zones],
            "reservations": [[r.start_pfn, r.nr_pages, r.what] for r in self.reservations],
            "nr_cpus": self.nr_cpus, "cpu_node": list(self.cpu_node), "thp": self.thp, "cma": self.cma,
            "source": self.source, "memmap_words": self.memmap_words, "pageblock_order": self.pageblock_order,
        }

    @classmethod
    def from_json(cls, d: dict) -> MachineLayout:
        try:
            zones = tuple(ZoneSpec(int(n), ZoneType(t), int(s), int(sp), int(pr), int(m), bool(dm),
                                   tuple((int(a), int(b)) for a, b in holes))
                          for n, t, s, sp, pr, m, dm, holes in d["zones"])
            return cls(arch=str(d["arch"]), zone_types=tuple(ZoneType(t) for t in d["zone_types"]), zones=zones,
                       reservations=tuple(Reservation(int(a), int(b), str(w)) for a, b, w in d["reservations"]),
                       nr_cpus=int(d["nr_cpus"]), cpu_node=tuple(int(c) for c in d["cpu_node"]), thp=bool(d["thp"]),
                       cma=bool(d["cma"]), source=str(d["source"]), memmap_words=int(d["memmap_words"]),
                       pageblock_order=int(d.get("pageblock_order", 9)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"not a machine layout ({type(e).__name__}: {e})") from None

    def describe(self) -> dict:
        return {
            "arch": self.arch,
            "source": self.source,
            "nodes": self.nr_nodes,
            "cpus": self.nr_cpus,
            "max_pfn": self.max_pfn,
            "zones": [z.as_dict() for z in self.zones],
        }


# --------------------------------------------------------------------------- builders


def _memmap_pages(spanned: int, words: int) -> int:
    return -(-spanned * words * 8 // PAGE_SIZE)


def _carve(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Intersect RAM ranges with [start, end)."""
    out = []
    for s, e in ranges:
        s2, e2 = max(s, start), min(e, end)
        if s2 < e2:
            out.append((s2, e2))
    return out


def _build(arch: str, zone_types: tuple[ZoneType, ...], ram: list[tuple[int, int]],
           zone_bounds: list[tuple[ZoneType, int, int]], nodes: int, words: int,
           direct_limit: int, kernel_pages: int, source: str, thp: bool,
           pageblock_order: int = 9) -> MachineLayout:
    """Assemble zones from RAM ranges, split RAM over nodes, reserve firmware/kernel/memmap."""
    total = sum(e - s for s, e in ram)
    if nodes < 1:
        raise ConfigError(f"--nodes must be >= 1, got {nodes}")
    per_node = total // nodes
    if per_node < 16 * MiB_PAGES:
        raise ConfigError(f"{nodes} nodes leave only {per_node * PAGE_SIZE >> 20} MiB per node (need 16 MiB)")
    # node boundaries: split present RAM evenly, cut on MAX_ORDER-aligned pfns
    cuts: list[int] = []
    acc = 0
    for s, e in ram:
        while len(cuts) < nodes - 1 and acc + (e - s) > per_node * (len(cuts) + 1):
            c = s + per_node * (len(cuts) + 1) - acc
            cuts.append(max(s, c - c % MAX_ORDER_NR_PAGES))
        acc += e - s
    bounds = [0, *cuts, 1 << 62]
    node_ranges = [_carve(ram, bounds[n], bounds[n + 1]) for n in range(nodes)]

    reservations: list[Reservation] = []
    zones: list[ZoneSpec] = []
    for n in range(nodes):
        nram = node_ranges[n]
        node_zone_ranges: list[tuple[ZoneType, int, int, list[tuple[int, int]]]] = []
        for zt in zone_types:
            zr = [(zt2, lo, hi) for (zt2, lo, hi) in zone_bounds if zt2 == zt]
            if not zr:
                node_zone_ranges.append((zt, 0, 0, []))
                continue
            _, lo, hi = zr[0]
            pieces = _carve(nram, lo, hi)
            if not pieces:
                node_zone_ranges.append((zt, 0, 0, []))
                continue
            # the zone spans the node's pfn range clipped to the zone's limits (holes included)
            zs, ze = max(nram[0][0], lo), min(nram[-1][1], hi)
            node_zone_ranges.append((zt, zs, ze, pieces))
        # reservations in this node
        node_res: list[Reservation] = []
        if n == 0:
            fs, fe = FIRMWARE_RESERVED
            node_res.append(Reservation(fs, fe - fs, "firmware"))
            # the kernel image at 16 MiB, at most an eighth of the RAM
            node_pages = sum(e - s for s, e in nram)
            kp = min(kernel_pages, node_pages // 8,
                     max(0, sum(e - s for s, e in _carve(nram, KERNEL_START_PFN, 1 << 62))))
            if kp:
                node_res.append(Reservation(KERNEL_START_PFN, kp, "kernel"))
        # the node's memmap, top-down in directly mapped RAM not reserved yet (memblock_alloc)
        spanned_node = (nram[-1][1] - nram[0][0]) if nram else 0
        need = _memmap_pages(spanned_node, words)
        direct = _carve(nram, 0, direct_limit)
        for r in node_res:
            direct = [p for s, e in direct for p in ((s, min(e, r.start_pfn)), (max(s, r.end_pfn), e))
                      if p[0] < p[1]]
        for s, e in reversed(direct):
            if need == 0:
                break
            take = min(need, e - s)
            node_res.append(Reservation(e - take, take, "memmap"))
            need -= take
        if need:
            raise ConfigError(f"node {n}: not enough directly mapped memory for a {words * 8}-byte memmap")
        reservations.extend(node_res)
        for zt, zs, ze, pieces in node_zone_ranges:
            if ze <= zs:
                zones.append(ZoneSpec(n, zt, 0, 0, 0, 0, _direct_mapped(zt, arch)))
                continue
            present = sum(e - s for s, e in pieces)
            holes = []
            prev = zs
            for s, e in pieces:
                if s > prev:
                    holes.append((prev, s))
                prev = e
            if ze > prev:
                holes.append((prev, ze))
            reserved = sum(
                e - s
                for r in node_res
                for s, e in _carve(pieces, r.start_pfn, r.end_pfn)
            )
            if reserved >= present:
                raise ConfigError(f"node {n} zone {ZONE_NAMES[zt]}: the memmap and kernel reservations "
                                  f"leave no managed pages; use more memory")
            zones.append(ZoneSpec(n, zt, zs, ze - zs, present, present - reserved,
                                  _direct_mapped(zt, arch), tuple(holes)))
    layout = MachineLayout(arch=arch, zone_types=zone_types, zones=tuple(zones),
                           reservations=tuple(sorted(reservations, key=lambda r: r.start_pfn)),
                           source=source, memmap_words=words, thp=thp, pageblock_order=pageblock_order)
    return layout.with_cpus(2 * nodes)


def _direct_mapped(zt: ZoneType, arch: str) -> bool:
    if arch == "i386":
        return zt in (ZoneType.DMA, ZoneType.NORMAL)
    return zt != ZoneType.DEVICE


def _ram_ranges(pages: int) -> list[tuple[int, int]]:
    """PC-style RAM map for ``pages`` pages of RAM: pfn 0 and the legacy hole are not RAM;
    RAM below 4 GiB stops at 3 GiB and continues at 4 GiB."""
    if pages < 32 * MiB_PAGES:
        raise ConfigError(f"machine too small: {pages * PAGE_SIZE >> 20} MiB (need at least 32 MiB)")
    below = min(pages, LOWMEM_TOP_PFN)
    ram = [(1, LEGACY_HOLE[0]), (LEGACY_HOLE[1], below)]
    if pages > LOWMEM_TOP_PFN:
        ram.append((DMA32_END_PFN, DMA32_END_PFN + pages - LOWMEM_TOP_PFN))
    return ram


def x86_64_layout(mem: str | int = "16G", nodes: int = 1, words: int = 8,
                  kernel_pages: int = DEFAULT_KERNEL_PAGES) -> MachineLayout:
    """An x86-64 PC with ``mem`` bytes of RAM: DMA < 16 MiB, DMA32 < 4 GiB, Normal above."""
    pages = parse_size(mem) >> PAGE_SHIFT
    ram = _ram_ranges(pages)
    bounds = [
        (ZoneType.DMA, 0, DMA_END_PFN),
        (ZoneType.DMA32, DMA_END_PFN, DMA32_END_PFN),
        (ZoneType.NORMAL, DMA32_END_PFN, 1 << 62),
    ]
    return _build("x86_64", ZONES_X86_64, ram, bounds, nodes, words, 1 << 62, kernel_pages,
                  f"x86_64 {mem}", thp=True)


def i386_layout(mem: str | int = "4G", nodes: int = 1, words: int = 8,
                kernel_pages: int = 8 * MiB_PAGES, pae: bool = True) -> MachineLayout:
    """A 32-bit PC with ``mem`` bytes: DMA < 16 MiB, Normal < 896 MiB, HighMem above.

    ``pae``: PAE paging (2 MiB huge pages: pageblock_order 9, up to 64 GiB); without it 4 MiB
    huge pages (HPAGE_SHIFT 22: pageblock_order 10) and at most 4 GiB.  THP is off (no per-CPU
    THP lists) either way."""
    pages = parse_size(mem) >> PAGE_SHIFT
    if not pae and pages > (4 << 30) >> PAGE_SHIFT:
        raise ConfigError(f"a non-PAE i386 machine addresses at most 4 GiB, not {mem}")
    ram = _ram_ranges(pages)
    bounds = [
        (ZoneType.DMA, 0, DMA_END_PFN),
        (ZoneType.NORMAL, DMA_END_PFN, I386_MAX_LOW_PFN),
        (ZoneType.HIGHMEM, I386_MAX_LOW_PFN, 1 << 62),
    ]
    return _build("i386", ZONES_I386, ram, bounds, nodes, words, I386_MAX_LOW_PFN, kernel_pages,
                  f"i386{'' if pae else ' non-PAE'} {mem}", thp=False, pageblock_order=9 if pae else 10)


def layout_from_zoneinfo(zoneinfo, source: str = "zoneinfo", nr_cpus: int | None = None,
                         words: int = 8) -> MachineLayout:
    """Build the layout of a real machine from parsed /proc/zoneinfo entries.

    ``zoneinfo`` is the list returned by :func:`memdesc.mm.vmstat.parse_zoneinfo`.
    start_pfn, spanned, present and managed of every zone come out exactly.
    """
    zinfo = list(zoneinfo)
    if not zinfo:
        raise ConfigError(f"{source}: no zones in zoneinfo")
    names = []
    for z in zinfo:
        if z.node == zinfo[0].node:
            names.append(z.zone)
    try:
        zone_types = tuple(ZONE_BY_NAME[n] for n in names)
    except KeyError as e:
        raise ConfigError(f"{source}: unknown zone name {e.args[0]!r}") from None
    arch = "i386" if ZoneType.HIGHMEM in zone_types else "x86_64"
    zones: list[ZoneSpec] = []
    reservations: list[Reservation] = []
    ncpu = 0
    for z in zinfo:
        zt = ZONE_BY_NAME[z.zone]
        ncpu = max(ncpu, len(z.pagesets or ()))
        if not z.spanned:
            zones.append(ZoneSpec(z.node, zt, 0, 0, 0, 0, _direct_mapped(zt, arch)))
            continue
        start = int(z.start_pfn)
        end = start + int(z.spanned)
        hole = int(z.spanned) - int(z.present)
        holes: tuple[tuple[int, int], ...] = ()
        if hole:
            if zt == ZoneType.DMA and start <= LEGACY_HOLE[0] and hole == LEGACY_HOLE[1] - LEGACY_HOLE[0] \
                    and end >= LEGACY_HOLE[1]:
                holes = (LEGACY_HOLE,)
            else:
                holes = ((end - hole, end),)
        reserved = int(z.present) - int(z.managed)
        if reserved:
            # the last `reserved` present pages of the zone
            pieces = [(start, end)]
            for hs, he in holes:
                pieces = [p for s, e in pieces for p in ((s, min(e, hs)), (max(s, he), e)) if p[0] < p[1]]
            need = reserved
            for s, e in reversed(pieces):
                take = min(need, e - s)
                if take:
                    reservations.append(Reservation(e - take, take, "reserved"))
                need -= take
                if not need:
                    break
        zones.append(ZoneSpec(z.node, zt, start, int(z.spanned), int(z.present), int(z.managed),
                              _direct_mapped(zt, arch), holes))
    nodes = 1 + max(z.node for z in zones)
    ncpu = nr_cpus or ncpu or 2
    layout = MachineLayout(arch=arch, zone_types=zone_types, zones=tuple(zones),
                           reservations=tuple(sorted(reservations, key=lambda r: r.start_pfn)),
                           source=source, memmap_words=words, thp=True)
    del nodes
    return layout.with_cpus(ncpu)
