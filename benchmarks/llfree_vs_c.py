"""memdesc.lib.llfree against llfree-c itself: the same request streams, op by op.

Builds ``benchmarks/llfree_c/llc_replay.c`` against a checkout of luhsra/llfree-c (gcc; the
two C23 ``enum : uint8_t`` declarations of ``include/llfree.h`` are compiled as plain enums,
which changes no value), replays random request streams through it and through the model's
kernels, and compares every result: the frame or error of every get, the error of every
put, the class of every frame, and the final lower and tree statistics.  Streams mix
orders 0..9 (order >= 10 would reach llfree-c's broken try_update_huge_n undo, see
docs/llfree.md), CPU-local and global requests, allocations at a given frame, drains and
partial puts (orders 0..6) of huge frames.

``--write-golden FILE`` stores the streams and llfree-c's results (tests/data/llfree_golden.npz
is made this way; tests/test_llfree.py replays it without a C compiler).

Run:  ``.venv/bin/python benchmarks/llfree_vs_c.py --llfree-c ../llfree-c [--ops N] [--churn]``
(``--llfree-c`` may be a checkout or a bare git directory; HEAD is used.)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memdesc.lib import _llfree_kernels as K
from memdesc.lib.llfree import Classing, LLFree

HERE = Path(__file__).resolve().parent

# (name, frames, cores, classing 0 simple / 1 movable, seed): the golden set is the first four
CONFIGS = [
    ("simple-1cpu", 24 * 4096 - 300, 1, 0, 1),
    ("movable-4cpu", 40 * 4096, 4, 1, 2),
    ("movable-2cpu-small", 5 * 4096 + 777, 2, 1, 3),
    ("simple-3cpu", 64 * 4096, 3, 0, 4),
    ("movable-8cpu", 256 * 4096, 8, 1, 5),
    ("simple-16cpu-few-trees", 12 * 4096, 16, 0, 6),
]


def build(src: Path, work: Path) -> Path:
    """Compile llc_replay against llfree-c at ``src`` (checkout or git dir) in ``work``."""
    tree = work / "llfree-c"
    if (src / "HEAD").exists() and not (src / "src").exists():  # a bare git directory
        tree.mkdir()
        archive = subprocess.run(["git", f"--git-dir={src}", "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "x", "-C", str(tree)], input=archive.stdout, check=True)
    else:
        shutil.copytree(src, tree)
    header = tree / "include" / "llfree.h"
    header.write_text(header.read_text().replace("enum : uint8_t {", "enum {"))
    exe = work / "llc_replay"
    cmd = ["gcc", "-std=gnu11", "-O2", "-DSTD", "-DNO_LOG", "-I", "src", "-I", "include", "-I", "std", "-o", str(exe),
           *sorted(str(p) for p in (tree / "src").glob("*.c")), str(HERE / "llfree_c" / "llc_replay.c")]
    subprocess.run(cmd, cwd=tree, check=True, capture_output=True)
    return exe


def make_stream(n: int, frames: int, cores: int, classing: int, seed: int, churn: bool = False) -> np.ndarray:
    """A random stream of ``n`` records (see llc_replay.c).

    It avoids what reaches llfree-c's multi-row ``field_toggle`` undo, which CASes in the
    wrong direction and asserts (970bb3d): allocations at a given frame of order 7-8, and
    refused puts of order 7-8.
    """
    rng = np.random.default_rng(seed)
    ncls = 3 if classing else 2
    ops = np.zeros((n, 5), np.int64)
    live: list[int] = []
    target = int(rng.integers(frames // 4, frames)) if not churn else frames // 2
    used = 0
    orders = np.array([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    for i in range(n):
        u = rng.random()
        if churn:
            kind = 1 if used >= target and live else 0
        elif live and (u < 0.40 or used > target):
            kind = 1
        elif u < 0.41:
            kind = 2
        elif live and u < 0.43 and ops[live[-1], 1] == 9:
            kind = 3
        else:
            kind = 0
        local = int(rng.integers(-1, cores)) if not churn else int(rng.integers(0, cores))
        if kind == 0:
            order = 0 if churn else int(rng.choice(orders))
            cls = (ncls - 1 if order >= 9 else int(rng.integers(0, ncls - 1))) if rng.random() < 0.9 \
                else int(rng.integers(0, ncls))
            frame = -1
            if not churn and order not in (7, 8) and rng.random() < 0.05:  # (see make_stream)
                frame = int(rng.integers(0, frames >> order)) << order
                if frame + (1 << order) > frames:
                    frame = -1
            ops[i] = (0, order, cls, local, frame)
            live.append(i)
            used += 1 << order
        elif kind in (1, 3):
            k = int(rng.integers(len(live))) if kind == 1 else len(live) - 1
            j = live[k]
            jorder = int(ops[j, 1])
            if kind == 1:
                live[k] = live[-1]
                live.pop()
                used -= 1 << jorder
                ops[i] = (1, j, int(rng.integers(0, ncls)) if rng.random() < 0.2 else ops[j, 2], local, 0)
            else:
                # a partial put of a huge frame (it splits), of orders 0..6: a refused put
                # of orders 7-8 reaches llfree-c's broken multi-row undo (an assert)
                order = int(rng.integers(0, 7))
                off = int(rng.integers(0, 1 << (jorder - order))) << order
                ops[i] = (3, j, order, (int(ops[j, 2]) << 8) | (local + 1), off)
        else:
            ops[i] = (2, 0, 0, 0, 0)
    return ops


def run_c(exe: Path, frames: int, cores: int, classing: int, ops: np.ndarray, work: Path) -> np.ndarray:
    opsf, outf = work / "ops.bin", work / "out.bin"
    ops.astype(np.int64).tofile(opsf)
    r = subprocess.run([str(exe), str(frames), str(cores), str(classing), str(opsf), str(outf)],
                       capture_output=True, text=True)  # llfree-c logs its fallbacks on stderr
    if r.returncode:
        raise RuntimeError(f"llc_replay failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return np.fromfile(outf, np.int64)


def run_model(frames: int, cores: int, classing: int, ops: np.ndarray) -> np.ndarray:
    """The same stream through the model's kernels (raw results: -1 memory, -2 argument)."""
    a = LLFree(frames, Classing.movable(cores) if classing else Classing.simple(cores))
    w = a.w
    n = len(ops)
    out = np.zeros(2 * n + 4, np.int64)
    for i in range(n):
        kind, x, y, z, d = (int(v) for v in ops[i])
        if kind == 0:
            r = int(K.k_get(w, d, x, y, z))
            out[2 * i], out[2 * i + 1] = (r >> 3, r & 7) if r >= 0 else (r, 0)
        elif kind in (1, 3):
            got = out[2 * x]
            if got < 0:
                continue
            if kind == 1:
                out[2 * i] = int(K.k_put(w, int(got), int(ops[x, 1]), y, z))
            else:
                out[2 * i] = int(K.k_put(w, int(got) + d, y, z >> 8, (z & 0xFF) - 1))
        else:
            K.k_drain(w)
    s = a.stats()
    out[2 * n:] = (s.free_frames, s.free_huge, s.free_trees, a.tree_stats().free_frames)
    a.validate()
    return out


def compare(name: str, c: np.ndarray, m: np.ndarray, ops: np.ndarray) -> bool:
    n = len(ops)
    if np.array_equal(c, m):
        gets = ops[:, 0] == 0
        ok = int((c[0:2 * n:2][gets] >= 0).sum())
        print(f"{name}: {n} ops identical ({int(gets.sum())} gets, {ok} served; final free {c[2 * n]} "
              f"frames, {c[2 * n + 1]} huge, {c[2 * n + 2]} trees)")
        return True
    diff = np.flatnonzero(c != m)
    i = int(diff[0]) // 2
    what = "final statistics" if i >= n else f"op {i} {ops[i].tolist()}"
    print(f"{name}: FIRST DIFFERENCE at {what}: llfree-c {c[2 * i:2 * i + 2].tolist()} "
          f"model {m[2 * i:2 * i + 2].tolist()}")
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llfree-c", type=Path, required=True, help="llfree-c checkout or git directory")
    ap.add_argument("--ops", type=int, default=200_000, help="ops per random stream")
    ap.add_argument("--churn", action="store_true", help="also the 16 GiB 50 %% order-0 churn of bench_llfree")
    ap.add_argument("--write-golden", type=Path, help="store the first four streams and llfree-c's results")
    ap.add_argument("--golden-ops", type=int, default=6000)
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exe = build(args.llfree_c.resolve(), work)
        golden = {}
        for k, (name, frames, cores, classing, seed) in enumerate(CONFIGS):
            ops = make_stream(args.ops, frames, cores, classing, seed)
            t = time.perf_counter()
            c = run_c(exe, frames, cores, classing, ops, work)
            m = run_model(frames, cores, classing, ops)
            ok &= compare(f"{name} ({time.perf_counter() - t:.1f} s)", c, m, ops)
            if args.write_golden and k < 4:
                g = make_stream(args.golden_ops, frames, cores, classing, seed + 100)
                golden[f"{name}/ops"] = g.astype(np.int32)
                golden[f"{name}/out"] = run_c(exe, frames, cores, classing, g, work).astype(np.int32)
                golden[f"{name}/config"] = np.array([frames, cores, classing], np.int64)
        if args.churn:
            frames = (16 << 30) // 4096
            for cores in (1, 4):
                ops = make_stream(frames // 2 + 2_000_000, frames, cores, 0, 7, churn=True)
                c = run_c(exe, frames, cores, 0, ops, work)
                m = run_model(frames, cores, 0, ops)
                ok &= compare(f"churn 16 GiB, {cores} cpu", c, m, ops)
        if args.write_golden:
            np.savez_compressed(args.write_golden, **golden)
            print(f"wrote {args.write_golden} ({args.write_golden.stat().st_size} bytes)")
    print("IDENTICAL" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
