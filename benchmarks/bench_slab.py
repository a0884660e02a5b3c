"""Slab allocator throughput: numba kernels vs the Python facade.

    .venv/bin/python benchmarks/bench_slab.py [--objects N] [--mem 2G] [--size 576]

Prints, best of 5 runs each, on a fresh x86-64 machine running the linux design:
* fast path: kmem_cache_alloc_nb + kmem_cache_free_nb pairs on a warm cache (no page
  allocator involved), per pair, from a numba loop;
* churn with refill: N objects allocated (refilling through dispatch.pa_alloc, slabs
  handed over with kmem_cache_add_slab_nb) then freed (empty slabs discarded with
  pa_free), from a numba loop, per object (alloc + free);
* the same through KmemCache.alloc_bulk / free_bulk (one kernel call each);
* KmemCache.alloc() / free() called once per object from Python;
and the ratios of each to the kernel loop.
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from memdesc._numba import njit
from memdesc.mm import gfp
from memdesc.mm.machine import Machine
from memdesc.mm.slab import (
    KmemCache,
    SlabAllocator,
    discard_slabs_nb,
    kmem_cache_alloc_nb,
    kmem_cache_alloc_refill_nb,
    kmem_cache_free_nb,
)


def best(fn) -> float:
    return min(timeit.repeat(fn, number=1, repeat=5))


@njit
def fast_pairs(st, c, n):
    s = 0
    for _ in range(n):
        a = kmem_cache_alloc_nb(st, c)
        s += a
        kmem_cache_free_nb(st, c, a)
    return s


@njit
def churn(st, c, pa_st, g, out):
    for i in range(out.shape[0]):
        a = kmem_cache_alloc_refill_nb(st, c, pa_st, g, 0)
        if a < 0:
            return i
        out[i] = a
    for i in range(out.shape[0]):
        if kmem_cache_free_nb(st, c, out[i]) == 1:
            discard_slabs_nb(st, c, -1, pa_st, 0)
    return out.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=200_000, help="objects per churn run")
    ap.add_argument("--mem", default="2G", help="machine size")
    ap.add_argument("--size", type=int, default=576, help="object size (576 = XArray node)")
    args = ap.parse_args()
    n = args.objects

    m = Machine.create(args.mem)
    sa = SlabAllocator(m)
    cache = KmemCache(m, "bench", args.size, allocator=sa)
    c = np.int64(cache.id)
    g = np.int64(gfp.GFP_KERNEL)
    # warm up: compile, and size the slab state for n objects so no run has to grow it
    cache.free_bulk(cache.alloc_bulk(n))
    warm = cache.alloc()
    fast_pairs(sa.state, c, 10)
    out = np.empty(n, np.int64)
    assert churn(sa.state, c, m.design.state, g, out) == n
    pairs = 10 * n

    t_fast = best(lambda: fast_pairs(sa.state, c, pairs)) / pairs
    t_kernel = best(lambda: churn(sa.state, c, m.design.state, g, out)) / n

    def bulk():
        cache.free_bulk(cache.alloc_bulk(n))

    t_bulk = best(bulk) / n
    k = min(n, 20_000)

    def per_call():
        xs = [cache.alloc() for _ in range(k)]
        for a in xs:
            cache.free(a)

    t_call = best(per_call) / k
    cache.free(warm)
    assert cache.check() == "ok" and m.check() == "ok"
    s = cache.stats()
    print(f"machine {args.mem} (linux design), object size {cache.size} B, "
          f"{cache.objects_per_slab} per slab, {n} objects per churn run")
    print(f"  fast path (alloc+free pair, numba loop)      {t_fast * 1e9:9.1f} ns/pair")
    print(f"  churn with refill+discard (numba loop)       {t_kernel * 1e9:9.1f} ns/object")
    print(f"  churn via alloc_bulk/free_bulk (facade)      {t_bulk * 1e9:9.1f} ns/object  "
          f"(x{t_bulk / t_kernel:.2f} of the kernel loop)")
    print(f"  churn via alloc()/free() per call (facade)   {t_call * 1e9:9.1f} ns/object  "
          f"(x{t_call / t_kernel:.1f} of the kernel loop)")
    print(f"  slabs obtained {s['alloc_slab']}, released {s['free_slab']}, "
          f"alloc_slab_on_free_path {s['alloc_slab_on_free_path']}")


if __name__ == "__main__":
    main()
