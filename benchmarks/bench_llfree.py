"""LLFree (memdesc.lib.llfree) speed and fragmentation, beside the vmem arena on the same job.

Each scenario fills a frame space (default 16 GiB of 4 KiB frames) to 50 % with
allocations of one order, then churns: every pair frees one live allocation and
allocates a new one.  Victims are chosen

* ``random``: uniformly among the live allocations (no locality: the worst case for
  LLFree's tree reservations, which stay near the CPU's last tree), or
* ``recent``: the most recent allocation (LIFO, the hot case of a pcp-like reuse).

Figures (ns per get+put pair, best of ``--repeat`` fresh runs; wall time, and the thread's CPU
time in parentheses, which a machine shared with other jobs inflates less):

* ``batch``: the whole stream in one ``LLFree.run`` kernel call (fill excluded);
* ``per call``: a Python loop over ``LLFree.get`` / ``LLFree.put`` (loop included);
* ``vmem batch``: the same stream through ``Vmem.run`` (quantum 1 frame; an order-k
  request is ``xalloc(2^k, align=2^k)``, instant fit) -- the arena the ``vmem`` design uses;
  through its batch kernel, the fill untimed as for LLFree.

LLFree's counters show how often a get had to reserve a new tree.  Fragmentation: after
the random order-0 churn, how many entirely free 2 MiB blocks remain, against the most
the free frames could form (free frames / 512); for vmem the aligned 512-frame blocks
inside free segments.

Run:  ``.venv/bin/python benchmarks/bench_llfree.py [--mem 16G] [--pairs N] [--repeat R] [--cpus C]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from numba import njit

from memdesc.lib import _llfree_kernels as K
from memdesc.lib import _vmem_kernels as VK
from memdesc.lib.llfree import HUGE_ORDER, Classing, LLFree
from memdesc.lib.vmem import SegType, Vmem
from memdesc.units import parse_size


def churn_stream(nfill: int, npairs: int, order: int, seed: int, recent: bool) -> np.ndarray:
    """``nfill`` gets of ``order``, then ``npairs`` (put a victim, get) pairs."""
    return _churn_stream(nfill, npairs, order, np.random.default_rng(seed).random(npairs), recent)


@njit(cache=True)
def _churn_stream(nfill, npairs, order, u, recent):
    ops = np.empty(nfill + 2 * npairs, np.int64)
    live = np.empty(nfill + npairs, np.int64)
    nl = 0
    for i in range(nfill):
        ops[i] = order
        live[nl] = i
        nl += 1
    i = nfill
    for p in range(npairs):
        k = nl - 1 if recent else int(u[p] * nl)
        ops[i] = -(live[k] + 1)
        live[k] = live[nl - 1]
        nl -= 1
        i += 1
        ops[i] = order
        live[nl] = i
        nl += 1
        i += 1
    return ops


def per_call(a: LLFree, ops: np.ndarray, nfill: int, cls: int, locs: np.ndarray) -> tuple[float, float]:
    """Wall and CPU seconds for the pairs of ``ops`` through get/put from Python (the fill
    done in batch)."""
    out = np.full(len(ops), -1, np.int64)
    out[:nfill] = a.run(ops[:nfill], classes=cls, locals=locs[:nfill])
    res = out.tolist()
    opl = ops.tolist()
    loc = locs.tolist()
    get, put = a.get, a.put
    t, c = time.perf_counter(), time.thread_time()
    for i in range(nfill, len(opl)):
        op = opl[i]
        if op >= 0:
            res[i] = get(op, cls, loc[i])
        else:
            j = -op - 1
            put(res[j], opl[j], cls, loc[i])
    return time.perf_counter() - t, time.thread_time() - c


def vmem_ops(ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.where(ops >= 0, 1 << np.maximum(ops, 0), ops)
    return sizes, np.where((ops >= 0) & (sizes > 1), sizes, 0)


def vmem_huge_blocks(v: Vmem) -> int:
    n = 0
    for s in v.walk(SegType.FREE):
        first = -(-s.start // 512) * 512
        n += max(0, (s.start + s.size - first) // 512)
    return n


def llfree_churn(frames: int, cpus: int, ops: np.ndarray, nfill: int, cls: int, locs: np.ndarray):
    """Fill, then time the churn: both halves of one stream through the batch kernel (the
    churn's puts refer to the fill's gets), the fill untimed."""
    a = LLFree(frames, Classing.simple(cpus))
    n = len(ops)
    cl = np.full(n, cls, np.int64)
    out = np.full(n, -1, np.int64)
    outcls = np.zeros(n, np.int64)
    done = np.zeros(n, np.int8)
    K.k_batch(a.w, ops[:nfill], cl[:nfill], locs[:nfill], out[:nfill], outcls[:nfill], done[:nfill], 0)
    before = a.counters()
    t, c = time.perf_counter(), time.thread_time()
    pos = K.k_batch(a.w, ops, cl, locs, out, outcls, done, nfill)
    dt = time.perf_counter() - t
    a.cpu_seconds = time.thread_time() - c
    assert pos == n and a.w[K.M_STATUS] == 0 and (out >= 0).all()
    return a, dt, before


def vmem_churn(frames: int, sizes: np.ndarray, aligns: np.ndarray, nfill: int):
    """The same split for the vmem arena, through its batch kernel; the tag pool is sized for
    the whole stream up front so that the kernel never stops to grow it."""
    n = len(sizes)
    # live allocations <= nfill and free segments <= live + 1: 2 nfill tags, capped at a 4 Mi pool
    v = Vmem("frames", 0, frames, quantum=1, tags=min(2 * nfill + 64, (1 << 22) - VK.T_FIRST))
    seg = v.state.seg
    out = np.full(n, -1, np.int64)
    done = np.zeros(n, np.int8)
    VK.k_batch(seg, sizes[:nfill], aligns[:nfill], 0, out[:nfill], done[:nfill], 0, False)
    t, c = time.perf_counter(), time.thread_time()
    pos = VK.k_batch(seg, sizes, aligns, 0, out, done, nfill, False)
    dt = time.perf_counter() - t
    v.cpu_seconds = time.thread_time() - c
    assert pos == n and seg[VK.M_STATUS, VK.F_META] == 0 and (out >= 0).all()
    v.check()
    return v, dt


def scenario(frames: int, order: int, pairs: int, victims: str, cpus: int, repeat: int, calls: int) -> dict:
    nfill = frames // 2 >> order
    ops = churn_stream(nfill, pairs, order, 1, victims == "recent")
    rng = np.random.default_rng(2)
    locs = rng.integers(0, cpus, len(ops)) if cpus > 1 else np.zeros(len(ops), np.int64)
    cls = 1 if order >= HUGE_ORDER else 0
    best = {"batch": np.inf, "batch_cpu": np.inf, "vmem": np.inf, "vmem_cpu": np.inf, "calls": np.inf,
            "calls_cpu": np.inf}
    r: dict = {}
    sizes, aligns = vmem_ops(ops)
    for rep in range(repeat):
        a, dt, before = llfree_churn(frames, cpus, ops, nfill, cls, locs)
        best["batch"] = min(best["batch"], dt)
        best["batch_cpu"] = min(best["batch_cpu"], a.cpu_seconds)
        c = a.counters()
        r["reserve_per_1000_gets"] = 1000 * (c["reserve"] - before["reserve"]) / pairs
        r["llfree_stats"] = a.stats()._asdict()
        a.validate()
        v, vt = vmem_churn(frames, sizes, aligns, nfill)
        best["vmem"] = min(best["vmem"], vt)
        best["vmem_cpu"] = min(best["vmem_cpu"], v.cpu_seconds)
        r["vmem_free_huge"] = vmem_huge_blocks(v)
        del v
        if rep == 0 and calls:
            n = min(calls, pairs)
            wall, cpu = per_call(LLFree(frames, Classing.simple(cpus)), ops[:nfill + 2 * n], nfill, cls, locs)
            best["calls"], best["calls_cpu"] = wall / n * pairs, cpu / n * pairs
    r.update({k: v / pairs * 1e9 for k, v in best.items()})
    free = r["llfree_stats"]["free_frames"]
    r["llfree_huge_fraction"] = r["llfree_stats"]["free_huge"] / max(1, free // 512)
    r["vmem_huge_fraction"] = r["vmem_free_huge"] / max(1, free // 512)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", default="16G")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--huge-pairs", type=int, default=200_000)
    ap.add_argument("--calls", type=int, default=300_000, help="pairs timed through the per-call API")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=4, help="CPUs of the multi-CPU scenarios")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    frames = parse_size(a.mem) // 4096
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load {os.getloadavg()[0]:.2f}")
    scenario(1 << 16, 0, 1000, "random", 1, 1, 100)  # compile
    rows = [("order 0, random victims, 1 CPU", 0, a.pairs, "random", 1),
            (f"order 0, random victims, {a.cpus} CPUs", 0, a.pairs, "random", a.cpus),
            ("order 0, most recent victim, 1 CPU", 0, a.pairs, "recent", 1),
            ("order 9, random victims, 1 CPU", 9, a.huge_pairs, "random", 1),
            (f"order 9, random victims, {a.cpus} CPUs", 9, a.huge_pairs, "random", a.cpus)]
    out = {}
    print(f"{a.mem} ({frames} frames), 50 % occupancy, ns per get+put pair (best of {a.repeat})")
    print(f"{'scenario':40s} {'batch':>6s} {'(cpu)':>6s} {'per call':>9s} {'(cpu)':>6s} {'vmem batch':>11s} "
          f"{'(cpu)':>6s} {'reserve/1000 gets':>18s} {'free 2M blocks llfree / vmem':>29s}")
    for name, order, pairs, victims, cpus in rows:
        r = scenario(frames, order, pairs, victims, cpus, a.repeat, a.calls)
        out[name] = r
        frag = f"{r['llfree_huge_fraction']:.1%} / {r['vmem_huge_fraction']:.1%}" if order == 0 else "-"
        print(f"{name:40s} {r['batch']:6.0f} {r['batch_cpu']:6.0f} {r['calls']:9.0f} {r['calls_cpu']:6.0f} "
              f"{r['vmem']:11.0f} {r['vmem_cpu']:6.0f} {r['reserve_per_1000_gets']:18.1f} {frag:>29s}")
    print(f"load {os.getloadavg()[0]:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
