"""Physical-memory scanners per design: the model's cache lines per pfn beside a timed scan.

    .venv/bin/python benchmarks/bench_scanner.py [--traces DIR] [--capture build] [--repeat N]

For a real snapshot (default the build capture; the bundled sample when DIR is absent) it
lays out, for each design, arrays exactly like the design's memory: the memmap (64, 32,
16 or 8 bytes per pfn, the fields each design keeps there), a descriptor heap (folios,
struct slab, ptdesc of the census at their separately allocated sizes, packed into 4 KiB
slab pages of 16-byte aligned objects) and the design's free structures (vmem: a 32-byte
struct buddy per free block; llfree: the 512-bit bitfields).  numba kernels then walk every
zone as each scanner does (the control flow of sim/scanner.py, which mirrors
isolate_migratepages_block(), snapshot_page() and page_idle_get_folio()), reading the real
fields and summing them so nothing is optimised away.  Descriptor objects are placed in a
seeded random order (descriptors allocated over time have no pfn locality: ``random``) or
in pfn order (the best case: ``pfn-order``).

Printed per design and scanner: the model's distinct cache lines per pfn, and the measured
ns per pfn (best of N, covered pfns) for both placements; a warning if the timed
compaction scan did not visit exactly the pfns the model visits.  The machine is printed too.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

from memdesc._numba import njit
from memdesc.mm import memdesc as md
from memdesc.mm.mmzone import PAGE_SIZE, PAGEBLOCK_ORDER
from memdesc.sim.ontology import read_capture
from memdesc.sim.scanner import SCANNERS, lru_heads, scanner_table
from memdesc.trace.kpagetype import (
    CENSUS_KINDS,
    K_ANON,
    K_FILE,
    K_FREE,
    K_HOLE,
    K_HUGETLB,
    K_KSM,
    K_PAGETABLE,
    K_SLAB,
    K_UNINIT,
)

DESIGNS = md.DESIGN_NAMES
D_LINUX, D_L32, D_RADIX, D_VMEM, D_LLFREE = range(5)
WORDS = (8, 4, 2, 1, 1)
PG_LRU, PG_HEAD = 5, 6
PGTY_BUDDY, PGTY_TABLE, PGTY_HUGETLB, PGTY_SLAB = 0xF0, 0xF2, 0xF4, 0xF5
R2_NONE, R2_FREE, R2_ALLOC, R2_TAIL = 0, 2, 4, 5
#: memdesc type of each census kind (0: bare)
KIND_TYPE = np.zeros(len(CENSUS_KINDS), np.int64)
for _i, _k in enumerate(CENSUS_KINDS):
    KIND_TYPE[_i] = md.KIND_BY_NAME[_k].type_id
HEAP_BASE = 4096


@njit
def _folio(k):
    return k == K_FILE or k == K_ANON or k == K_KSM or k == K_HUGETLB


# ----------------------------------------------------------------- layouts
def descriptor_heap(c, lru, placement: str, seed: int = 1):
    """Byte offsets (per head pfn, -1 none) of every separately allocated descriptor in a heap of
    4 KiB slab pages, and the heap (uint64 words) with the fields scanners read filled in."""
    kinds = c.kind
    heads = np.flatnonzero((c.head == np.arange(c.npfn)) & (kinds != K_FREE) & (kinds != K_HOLE)
                           & (kinds != K_UNINIT))
    size = np.zeros(heads.shape[0], np.int64)
    for code, name in enumerate(CENSUS_KINDS):
        k = md.KIND_BY_NAME[name]
        sel = kinds[heads] == code
        for large in (0, 1):
            d = k.descriptor(large)
            if d is None or d.cache is None:
                continue
            m = sel & ((c.order[heads] > 0) == bool(large))
            size[m] = d.bytes
    has = size > 0
    heads, size = heads[has], size[has]
    rng = np.random.default_rng(seed)
    addr = np.full(c.npfn, -1, np.int64)
    off = HEAP_BASE
    for s in np.unique(size):
        idx = np.flatnonzero(size == s)
        if placement == "random":
            idx = idx[rng.permutation(idx.shape[0])]
        per = PAGE_SIZE // s
        slot = np.arange(idx.shape[0])
        addr[heads[idx]] = off + (slot // per) * PAGE_SIZE + (slot % per) * s
        off += -(-idx.shape[0] // per) * PAGE_SIZE
    heap = np.zeros(off // 8 + 64, np.uint64)
    fill_heap(heap, addr, heads, kinds, c.order.astype(np.int64), lru)
    return addr, heap


@njit
def fill_heap(heap, addr, heads, kind, order, lru):
    for i in range(heads.shape[0]):
        h = heads[i]
        w = addr[h] >> 3
        k = kind[h]
        f = np.uint64(0)
        if _folio(k) and lru[h]:
            f |= np.uint64(1 << PG_LRU)
        heap[w] = f
        if _folio(k):
            heap[w + 3] = np.uint64(0x10000 + h)  # mapping
            heap[w + 6] = np.uint64(1) << np.uint64(32)  # _refcount 1, _mapcount 0
            heap[w + 8] = np.uint64(h)  # pfn
            heap[w + 9] = np.uint64(order[h])  # order
            if order[h] > 0:
                heap[w + 10] = np.uint64(1)  # _large_mapcount
        else:
            heap[w + 1] = np.uint64(0x20000 + h)


@njit
def fill_memmap(design, mem, aux, kind, head, order, lru, addr, ktype):
    n = kind.shape[0]
    for p in range(n):
        k = kind[p]
        h = head[p]
        o = order[p]
        if k == K_HOLE or k == K_UNINIT:
            continue
        free = k == K_FREE
        if design == D_LINUX:
            if free:
                if p == h:
                    mem[p, 6] = np.uint64(PGTY_BUDDY << 24)
                    mem[p, 5] = np.uint64(o)
                else:
                    mem[p, 6] = np.uint64(0xFFFFFFFF)
                continue
            f = np.uint64(0)
            if p == h:
                if o > 0:
                    f |= np.uint64(1 << PG_HEAD)
                if _folio(k) and lru[h]:
                    f |= np.uint64(1 << PG_LRU)
                pt = np.uint64(0)
                if k == K_SLAB:
                    pt = np.uint64(PGTY_SLAB << 24)
                elif k == K_PAGETABLE:
                    pt = np.uint64(PGTY_TABLE << 24)
                elif k == K_HUGETLB:
                    pt = np.uint64(PGTY_HUGETLB << 24)
                mem[p, 0] = f
                mem[p, 6] = pt | (np.uint64(1) << np.uint64(32))
                if _folio(k):
                    mem[p, 3] = np.uint64(0x10000 + h)
            else:
                mem[p, 1] = (np.uint64(h) << np.uint64(2)) | np.uint64(1)
                if p == h + 1:
                    mem[p, 0] = np.uint64(o)  # _flags_1: the folio order
                    mem[p, 2] = np.uint64(1)  # _large_mapcount
        elif design == D_L32:
            if free:
                if p == h:
                    mem[p, 0] = np.uint64(o) << np.uint64(8)
                    mem[p, 1] = np.uint64(md.MD_FREE)  # buddy_list aliases the memdesc
                continue
            t = ktype[k]
            if t != 0 and addr[h] >= 0:
                mem[p, 1] = np.uint64(addr[h]) | np.uint64(t)
            mem[p, 3] = np.uint64(0 if _folio(k) else 1)
        elif design == D_RADIX:
            if free:
                if p == h:
                    mem[p, 0] = np.uint64(R2_FREE | (o << 4))
                continue
            if p == h:
                mem[p, 0] = np.uint64(R2_ALLOC | (o << 4))
                t = ktype[k]
                if t != 0 and addr[h] >= 0:
                    mem[p, 1] = np.uint64(addr[h]) | np.uint64(t)
            else:
                mem[p, 0] = np.uint64(R2_TAIL)
                mem[p, 1] = np.uint64(h)
        else:
            if free:
                if design == D_VMEM and p == h:
                    mem[p, 0] = np.uint64(aux[0] + 32 * p) | np.uint64(md.MD_FREE)  # its struct buddy
                else:
                    mem[p, 0] = np.uint64(md.MD_FREE)
                continue
            if design == D_LLFREE:
                aux[1 + (p >> 6)] |= np.uint64(1) << np.uint64(p & 63)  # allocated bit
            t = ktype[k]
            if t != 0 and addr[h] >= 0:
                mem[p, 0] = np.uint64(addr[h]) | np.uint64(t)


# ----------------------------------------------------------------- timed scans
@njit
def _desc_words(heap, a, nwords):
    s = np.uint64(0)
    w = a >> 3
    for i in range(nwords):
        s += heap[w + i]
    return s


@njit
def scan_compaction(design, mem, heap, aux, bheap, ok, zone_lo, zone_hi, visits):
    acc = np.uint64(0)
    for z in range(zone_lo.shape[0]):
        b = zone_lo[z]
        hi = zone_hi[z]
        while b < hi:
            end = min(((b >> PAGEBLOCK_ORDER) + 1) << PAGEBLOCK_ORDER, hi)
            p = b
            while p < end:
                if not ok[p >> 15]:
                    p = end
                    continue
                visits[0] += 1
                if design == D_LINUX:
                    ci = mem[p, 1]
                    h = np.int64(ci >> np.uint64(2)) if ci & np.uint64(1) else p
                    if (mem[h, 6] >> np.uint64(24)) & np.uint64(0xFF) == PGTY_HUGETLB:
                        p = h + (1 << np.int64(mem[h + 1, 0] & np.uint64(0xFF)))
                        continue
                    if (mem[p, 6] >> np.uint64(24)) & np.uint64(0xFF) == PGTY_BUDDY:
                        p += 1 << np.int64(mem[p, 5])
                        continue
                    f = mem[p, 0]
                    o = 0
                    if h == p and f & np.uint64(1 << PG_HEAD):
                        o = np.int64(mem[p + 1, 0] & np.uint64(0xFF))
                        if o >= PAGEBLOCK_ORDER:
                            p += 1 << o
                            continue
                    if not (mem[h, 0] & np.uint64(1 << PG_LRU)) or h != p:
                        acc += f
                        p += 1
                        continue
                    rc = mem[p, 6] >> np.uint64(32)
                    mc = mem[p + 1, 2] if o > 0 else mem[p, 6] & np.uint64(0xFFFFFFFF)
                    acc += rc + mc + mem[p, 3]
                    p += 1 << o
                    continue
                if design == D_LLFREE:
                    w = mem[p, 0]
                    if (w & np.uint64(15)) == md.MD_FREE:
                        # the run's end from the bitfield row: next allocated bit
                        q = p
                        while q < end and not (aux[1 + (q >> 6)] >> np.uint64(q & 63)) & np.uint64(1):
                            q += 1
                        p = q
                        continue
                    t = np.int64(w & np.uint64(15))
                    a = np.int64(w & ~np.uint64(15))
                elif design == D_VMEM:
                    w = mem[p, 0]
                    t = np.int64(w & np.uint64(15))
                    if t == md.MD_FREE:
                        if w >> np.uint64(4):
                            bd = np.int64((w & ~np.uint64(15)) - np.uint64(aux[0])) >> 3
                            p += np.int64(bheap[bd + 1])  # struct buddy: size
                        else:
                            p += 1
                        continue
                    a = np.int64(w & ~np.uint64(15))
                elif design == D_RADIX:
                    w0 = mem[p, 0]
                    rt = np.int64(w0 & np.uint64(15))
                    if rt == R2_FREE:
                        p += 1 << np.int64((w0 >> np.uint64(4)) & np.uint64(63))
                        continue
                    if rt == R2_NONE:
                        p += 1
                        continue
                    w1 = mem[p, 1]
                    if rt == R2_TAIL:
                        w1 = mem[np.int64(w1), 1]
                    t = np.int64(w1 & np.uint64(15))
                    a = np.int64(w1 & ~np.uint64(15))
                else:  # linux:32
                    w1 = mem[p, 1]
                    t = np.int64(w1 & np.uint64(15))
                    if t == md.MD_FREE:
                        p += 1 << np.int64((mem[p, 0] >> np.uint64(8)) & np.uint64(63))
                        continue
                    a = np.int64(w1 & ~np.uint64(15))
                if t == md.MD_FILE or t == md.MD_ANON or t == md.MD_KSM:
                    dw = a >> 3
                    f = heap[dw]
                    o = np.int64(heap[dw + 9] & np.uint64(0xFF))
                    first = np.int64(heap[dw + 8])
                    if first == p and o >= PAGEBLOCK_ORDER:
                        p += 1 << o
                        continue
                    if f & np.uint64(1 << PG_LRU) and first == p:
                        mc = heap[dw + 10] if o > 0 else heap[dw + 6] & np.uint64(0xFFFFFFFF)
                        acc += (heap[dw + 6] >> np.uint64(32)) + mc + heap[dw + 3]
                        p += 1 << o
                        continue
                    acc += f
                acc += np.uint64(t)
                p += 1
            b = end
    return acc


@njit
def scan_pfns(scanner, design, mem, heap, ok, zone_lo, zone_hi):
    """kpageflags (scanner 1) or page_idle (scanner 2): every covered pfn."""
    acc = np.uint64(0)
    for z in range(zone_lo.shape[0]):
        for p in range(zone_lo[z], zone_hi[z]):
            if not ok[p >> 15]:
                continue
            if design == D_LINUX:
                ci = mem[p, 1]
                if scanner == 1:
                    for i in range(8):
                        acc += mem[p, i]
                    if ci & np.uint64(1):
                        h = np.int64(ci >> np.uint64(2))
                        n = 3 if (mem[h + 1, 0] & np.uint64(0xFF)) > 1 else 2
                        for j in range(n):
                            for i in range(8):
                                acc += mem[h + j, i]
                    elif mem[p, 0] & np.uint64(1 << PG_HEAD):
                        for i in range(8):
                            acc += mem[p + 1, i]
                    elif (mem[p, 6] >> np.uint64(32)) == 0 and mem[p, 6] == np.uint64(0xFFFFFFFF):
                        # is_free_buddy_page(): look for the head of a free block below
                        for o in range(11):
                            q = p & ~((1 << o) - 1)
                            if (mem[q, 6] >> np.uint64(24)) & np.uint64(0xFF) == PGTY_BUDDY \
                                    and np.int64(mem[q, 5]) >= o:
                                acc += mem[q, 5]
                                break
                else:
                    h = np.int64(ci >> np.uint64(2)) if ci & np.uint64(1) else p
                    f = mem[h, 0]
                    if f & np.uint64(1 << PG_LRU):
                        acc += (mem[h, 6] >> np.uint64(32)) + f
                continue
            if design == D_RADIX:
                w0 = mem[p, 0]
                rt = np.int64(w0 & np.uint64(15))
                if rt == R2_ALLOC or rt == R2_TAIL:
                    w1 = mem[p, 1]
                    if rt == R2_TAIL:
                        w1 = mem[np.int64(w1), 1]
                elif rt == R2_NONE and scanner == 1:
                    for o in range(11):
                        q = p & ~((1 << o) - 1)
                        if np.int64(mem[q, 0] & np.uint64(15)) == R2_FREE:
                            acc += mem[q, 0]
                            break
                    continue
                else:
                    acc += w0
                    continue
            elif design == D_L32:
                w1 = mem[p, 1]
                acc += mem[p, 0]
                if w1 == 0 and mem[p, 3] == 0 and scanner == 1:
                    for o in range(11):
                        q = p & ~((1 << o) - 1)
                        if mem[q, 1] == np.uint64(md.MD_FREE) and np.int64(mem[q, 0] >> np.uint64(8)) >= o:
                            acc += mem[q, 0]
                            break
                    continue
            else:
                w1 = mem[p, 0]
            t = np.int64(w1 & np.uint64(15))
            a = np.int64(w1 & ~np.uint64(15))
            if t == 0 or t == md.MD_FREE or a == 0:
                acc += w1
                continue
            if scanner == 1:
                # snapshot the whole descriptor: folio 80 B (large 128 B), struct slab / ptdesc 64 B
                if t == md.MD_FILE or t == md.MD_ANON or t == md.MD_KSM:
                    nw = 16 if heap[(a >> 3) + 9] & np.uint64(0xFF) else 10
                else:
                    nw = 8
                acc += _desc_words(heap, a, nw)
            elif t == md.MD_FILE or t == md.MD_ANON or t == md.MD_KSM:
                dw = a >> 3
                f = heap[dw]
                if f & np.uint64(1 << PG_LRU):
                    acc += heap[dw + 6] >> np.uint64(32)
                acc += f
    return acc


def layout(c, lru, design: str, placement: str):
    di = DESIGNS.index(design)
    addr, heap = descriptor_heap(c, lru, placement) if di != D_LINUX else (np.full(c.npfn, -1, np.int64),
                                                                            np.zeros(8, np.uint64))
    mem = np.zeros((c.npfn + 2, WORDS[di]), np.uint64)
    fb = c.free_blocks
    aux = np.zeros(2 + c.npfn // 64 + 1, np.uint64)
    aux[0] = np.uint64(1 << 44)  # base address of the struct buddy heap (vmem)
    bheap = np.zeros(4 * c.npfn if di == D_VMEM else 4, np.uint64)
    if di == D_VMEM:
        bheap[4 * fb.pfn + 1] = (1 << fb.order.astype(np.int64)).astype(np.uint64)  # struct buddy.size
        bheap[4 * fb.pfn] = fb.pfn.astype(np.uint64)  # .start
    fill_memmap(di, mem, aux, c.kind, c.head, c.order.astype(np.int64), lru, addr, KIND_TYPE)
    return di, mem, heap, aux, bheap


def timed(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=Path(os.environ.get("MEMDESC_SHARED_TRACES", "../shared/traces")))
    ap.add_argument("--capture", default="build")
    ap.add_argument("--when", default="before")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    d = a.traces / a.capture
    if not (d / f"{a.when}.kpageflags.zst").is_file():
        d = Path(str(files("memdesc") / "data" / "sample"))
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    c, _zi = read_capture(d, a.when)
    lru = lru_heads(c)
    model = scanner_table(c)
    ok = c.memmap_sections() & np.array([
        bool(((c.kind[s * c.section_pages:(s + 1) * c.section_pages] != K_HOLE)
              & (c.kind[s * c.section_pages:(s + 1) * c.section_pages] != K_UNINIT)).any())
        for s in range(-(-c.npfn // c.section_pages))])
    lo = np.array([z.start_pfn for z in c.zones], np.int64)
    hi = np.array([z.end_pfn for z in c.zones], np.int64)
    covered = model["linux"]["kpageflags"].covered_pfns
    print(f"capture {d} ({a.when}): {covered} covered pfns (RAM with initialised struct pages)")
    rows = []
    for design in DESIGNS:
        for placement in (("random", "pfn-order") if design != "linux" else ("-",)):
            di, mem, heap, aux, bheap = layout(c, lru, design, placement)
            ns = {}
            visits = np.zeros(1, np.int64)
            scan_compaction(di, mem, heap, aux, bheap, ok, lo, hi, visits)
            if visits[0] != model[design]["compaction"].visited_pfns:
                print(f"WARNING {design}: the timed compaction scan visited {visits[0]} pfns, the model "
                      f"{model[design]['compaction'].visited_pfns}")
            for s in SCANNERS:
                if s == "compaction":
                    t = timed(lambda: scan_compaction(di, mem, heap, aux, bheap, ok, lo, hi, visits),  # noqa: B023
                              a.repeat)
                else:
                    si = SCANNERS.index(s)
                    t = timed(lambda: scan_pfns(si, di, mem, heap, ok, lo, hi), a.repeat)  # noqa: B023
                ns[s] = 1e9 * t / covered
            rows.append((design, placement, ns))
    print(f"{'design':9s} {'placement':10s} " + " ".join(f"{s + ' lines':>17s} {'ns/pfn':>7s}" for s in SCANNERS))
    for design, placement, ns in rows:
        print(f"{design:9s} {placement:10s} " + " ".join(
            f"{model[design][s].lines_per_pfn:17.3f} {ns[s]:7.2f}" for s in SCANNERS))


if __name__ == "__main__":
    main()
