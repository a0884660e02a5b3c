"""XArray speed: kernel loops (numba) and the Python API.

Run:  .venv/bin/python benchmarks/bench_xarray.py [--n N] [--queue Q]

Figures printed (all per operation, in one run):

* ``deque store+erase``: the page-allocator free-list pattern -- one XArray used as a
  FIFO of Q value entries: store at the tail index, erase at the head index, both
  advancing (steady state: the tree is 2-3 levels deep and nodes recycle through the
  pool's free stack).  One pair = one xa_store_nb + one xa_erase_nb in an njit loop.
* ``deque store+find+erase``: as above, but the head is found with xa_find_nb: from index
  0 (the walk crosses the empty left part of the upper levels), or from a hint (the index
  after the last entry taken).
* ``random store+erase``: store/erase at random indices below 2**20 around a steady
  population (deeper tree, cache misses).
* ``load``: xa_load_nb of present entries in a 2**20-entry array.
* ``shared pool``: 200 XArrays in one pool (one per (zone, order, migratetype) free
  list of a page allocator), each a deque; store+erase pairs round-robin.
* Python API: XArray.store / load / erase and xa[i] from the interpreter.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from memdesc._numba import njit
from memdesc.lib import _xarray_kernels as K
from memdesc.lib.xarray import XaPool, XArray


@njit
def fill(P, H, xa, n):
    """Store value entries at 0 .. n-1; returns n (the next tail index)."""
    for i in range(n):
        K.xa_store_nb(P, H, xa, np.int64(i), K.xa_mk_value(np.int64(i)))
    return np.int64(n)


@njit
def deque_store_erase(P, H, xa, n, q):
    """Keep q entries; each step stores at the tail and erases the head."""
    head = np.int64(0)
    tail = fill(P, H, xa, q)
    t0 = np.int64(0)
    for _ in range(n):
        if K.xa_store_nb(P, H, xa, tail, K.xa_mk_value(tail)) != 0:
            return -1
        tail += 1
        if K.xa_erase_nb(P, H, xa, head) != K.xa_mk_value(head):
            return -1
        head += 1
    return t0 + head


@njit
def deque_store_find_erase(P, H, xa, n, q, hint):
    """As deque_store_erase, but the head is found: xa_find from 0, or (hint) from the
    index after the last one taken."""
    tail = fill(P, H, xa, q)
    m1 = np.int64(-1)
    start = np.int64(0)
    done = np.int64(0)
    for _ in range(n):
        if K.xa_store_nb(P, H, xa, tail, K.xa_mk_value(tail)) != 0:
            return -1
        tail += 1
        entry, index = K.xa_find_nb(P, H, xa, start, m1, np.int64(K.XA_PRESENT))
        if entry == 0:
            return -1
        K.xa_erase_nb(P, H, xa, index)
        if hint:
            start = index + 1
        done += 1
    return done


@njit
def random_store_erase(P, H, xa, idx):
    n = idx.shape[0] // 2
    for i in range(n):
        K.xa_store_nb(P, H, xa, idx[2 * i], K.xa_mk_value(idx[2 * i]))
        K.xa_erase_nb(P, H, xa, idx[2 * i + 1])
    return n


@njit
def load_many(P, H, xa, idx):
    s = np.int64(0)
    for i in idx:
        s += K.xa_load_nb(P, H, xa, i)
    return s


@njit
def shared_pool_deques(P, H, xas, n, q):
    k = xas.shape[0]
    heads = np.zeros(k, np.int64)
    tails = np.zeros(k, np.int64)
    for j in range(k):
        for _ in range(q):
            K.xa_store_nb(P, H, xas[j], tails[j], K.xa_mk_value(tails[j]))
            tails[j] += 1
    for i in range(n):
        j = i % k
        if K.xa_store_nb(P, H, xas[j], tails[j], K.xa_mk_value(tails[j])) != 0:
            return -1
        tails[j] += 1
        K.xa_erase_nb(P, H, xas[j], heads[j])
        heads[j] += 1
    return n


def timed(fn, *args):
    fn(*args)  # compile (and warm up) outside the timing
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def kernel_args(xa, nodes):
    xa.pool.supply(nodes)
    return xa.pool.arrays, xa.pool.heads, np.int64(xa.id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5_000_000, help="operations per kernel run")
    ap.add_argument("--queue", type=int, default=1000, help="deque length (steady-state population)")
    args = ap.parse_args()
    n, q = args.n, args.queue
    print(f"XArray benchmarks: n={n:,} ops per run, deque length {q} (best of 3)")

    def fresh():
        return kernel_args(XArray(), 4096)

    t = timed(lambda: deque_store_erase(*fresh(), n, q))
    print(f"  deque store+erase (njit)        {t / n * 1e9:8.1f} ns per pair")
    t = timed(lambda: deque_store_find_erase(*fresh(), n, q, False))
    print(f"  deque store+find(0)+erase       {t / n * 1e9:8.1f} ns per triple")
    t = timed(lambda: deque_store_find_erase(*fresh(), n, q, True))
    print(f"  deque store+find(hint)+erase    {t / n * 1e9:8.1f} ns per triple")
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 1 << 20, 2 * n).astype(np.int64)

    def rnd():
        P, H, x = fresh()
        fill(P, H, x, 1 << 19)
        return random_store_erase(P, H, x, idx)
    t_fill = timed(lambda: fill(*fresh(), 1 << 19))
    t = timed(rnd) - t_fill
    print(f"  random store+erase (njit, 2^20) {t / n * 1e9:8.1f} ns per pair")
    P, H, x = kernel_args(XArray(), 1 << 15)
    fill(P, H, x, 1 << 20)
    li = rng.integers(0, 1 << 20, n).astype(np.int64)
    t = timed(load_many, P, H, x, li)
    print(f"  load (njit, 2^20 entries)       {t / n * 1e9:8.1f} ns per load")

    pool = XaPool(capacity=4096, max_xarrays=256)
    arrays = [XArray(pool=pool) for _ in range(200)]
    pool.supply(8192)
    ids = np.array([a.id for a in arrays], np.int64)
    t = timed(lambda: shared_pool_deques(pool.arrays, pool.heads, ids, n, 50))
    print(f"  200 deques in one pool (njit)   {t / n * 1e9:8.1f} ns per pair "
          f"({pool.live_nodes} live nodes, {pool.memory_bytes / 1024:.0f} KiB)")

    m = 200_000
    xa = XArray()
    t0 = time.perf_counter()
    for i in range(m):
        xa.store(i, i)
    t_store = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(m):
        xa.load(i)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(m):
        xa[i]  # noqa: B018
    t_get = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(m):
        xa.erase(i)
    t_erase = time.perf_counter() - t0
    obj = object()
    t0 = time.perf_counter()
    for i in range(m):
        xa.store(i, obj)
    t_obj = time.perf_counter() - t0
    print(f"  Python API: store {t_store / m * 1e9:.0f} ns, load {t_load / m * 1e9:.0f} ns, "
          f"xa[i] {t_get / m * 1e9:.0f} ns, erase {t_erase / m * 1e9:.0f} ns, "
          f"store(object) {t_obj / m * 1e9:.0f} ns per call")


if __name__ == "__main__":
    main()
