"""The ``mthp`` capture's anonymous-memory workload, run on the model and held against the kernel.

Theory
------
The capture (``shared/traces/mthp``) ran a Python program (``workload.sh``) with 16 KiB and
64 KiB anon folios set to ``always`` and PMD THP on ``madvise``:

1. mmap 384 MiB private anon and write every page;
2. MADV_DONTNEED 8 KiB in every 64 KiB (partially mapped folios -> deferred split);
3. mmap 256 MiB, MADV_HUGEPAGE, write every page, MADV_DONTNEED the first half of every 2 MiB;
4. fork; the child writes every fourth page of the 384 MiB (copy on write) and exits;
5. heap churn of 40,000 Python objects (glibc malloc), then both mappings are closed.

:func:`run_workload` drives :class:`memdesc.mm.memory.AddressSpaces` with steps 1-4 and the
final munmaps exactly as the script issues them (lengths, offsets, madvise, touch strides),
under the THP settings the script set (parsed from ``workload.sh`` and the capture's
``before.thp_stats`` / README).  Step 5 is *not* driven: what the interpreter's heap does
(brk growth and trimming by glibc's malloc, the arena layout) is not in the script and not
in the trace (mm_page_alloc has no virtual address).

:func:`trace_windows` reads the capture's mm_page_alloc events (the kmem reader), picks
the workload's process (the pid with the most order-9 anon THP allocations) and the forked
child (the pid with the most copy-on-write allocations), and cuts the workload's events at
landmarks the trace itself shows: step 1 begins at the first run of 32 consecutive order-4
folio allocations (one 2 MiB PTE table's worth), step 3 at the first order-9 allocation,
step 4 at the child's first event, step 5 after its last.  Allocations are classified by
gfp and order as the kernel makes them: anon THP faults (``GFP_TRANSHUGE*``, order >= 2),
order-0 anon faults (``GFP_HIGHUSER_MOVABLE|__GFP_ZERO``), copies (``GFP_HIGHUSER_MOVABLE``
without __GFP_ZERO: wp_page_copy), page tables (``GFP_PGTABLE_USER``).

:func:`validate_mthp` lays the model's figures beside the trace windows and the per-size
``thp_stats`` deltas (after - before).  The thp_stats deltas cover the whole machine during
the capture (the interpreter's heap in step 5 and every other process), so the comparison
also reports how much of each delta the trace attributes to the workload's steps 1-4, to
its other faults (interpreter start, heap churn) and to other processes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from memdesc.errors import ConfigError, FormatError
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm import huge_memory as H
from memdesc.mm.machine import Machine
from memdesc.mm.memory import AddressSpaces
from memdesc.mm.page_alloc.core import PCP_COUNT
from memdesc.trace.reader import event_code, read_trace

MiB = 1 << 20
KiB = 1 << 10
P = F.PAGE_SIZE
STEPS = ("step1_touch", "step2_dontneed", "step3_pmd_thp", "step4_fork_cow", "close")

# gfp classes of the trace's allocations
GFP_PGTABLE = G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO | G.__GFP_COMP
GFP_ANON0 = G.GFP_HIGHUSER_MOVABLE | G.__GFP_ZERO | G.__GFP_COMP
GFP_COPY = G.GFP_HIGHUSER_MOVABLE | G.__GFP_COMP
_THP_BASE = G.GFP_TRANSHUGE_LIGHT


def settings_of_capture(capture: Path) -> H.ThpSettings:
    """The THP settings the workload ran under: before.thp_stats's per-size settings, the
    ``echo <setting> > $T/hugepages-<size>/enabled`` lines of workload.sh, the top-level
    setting from the README's ``transparent hugepages: always [madvise] never``."""
    capture = Path(capture)
    st = capture / "before.thp_stats"
    s = H.ThpSettings.from_thp_stats(st.read_text()) if st.is_file() else H.ThpSettings()
    wl = capture / "workload.sh"
    if wl.is_file():
        for val, size in re.findall(r"echo (never|always|madvise|inherit) > \S*hugepages-(\d+kB)/enabled",
                                    wl.read_text()):
            s.sizes[size] = val
    rd = capture / "README"
    if rd.is_file():
        m = re.search(r"transparent hugepages: ([^\n]*)", rd.read_text())
        sel = re.search(r"\[(always|madvise|never)\]", m.group(1)) if m else None
        if sel:
            s.enabled = sel.group(1)
    return s


# ------------------------------------------------------------------ the model side


def _snap(a: AddressSpaces) -> dict:
    return {"alloc_order": a.st.alloc_order.copy(), "ev": a.st.ev.copy(), "thp": a.st.thp.copy(),
            "split": a.folios.state.ostat[F.OP_SPLIT].copy()}


def _delta(a: AddressSpaces, s0: dict) -> dict:
    d = a.st.alloc_order - s0["alloc_order"]
    ev = a.st.ev - s0["ev"]
    out = {"anon_folios": {str(o): int(d[o]) for o in range(H.NR_THP_ORDERS) if d[o]},
           "cow_copies": int(d[H.NR_THP_ORDERS]),
           "pgtable_allocs": int(ev[H.EV_PGTABLE_ALLOC]), "pgtable_frees": int(ev[H.EV_PGTABLE_FREE]),
           "faults": int(ev[H.EV_PGFAULT])}
    thp = a.st.thp - s0["thp"]
    out["thp_stats"] = {k: v for k, v in H.thp_stats_dict(thp).items() if any(v.values())}
    return out


def run_workload(design: str = "linux", mem: str = "2G", settings: H.ThpSettings | None = None,
                 shrink: bool = False, scale: int = 1, check_each_step: bool = True) -> dict:
    """Steps 1-4 of workload.sh and the final munmaps on a machine of ``design``.

    ``shrink``: run the deferred split shrinker after step 2 (as memory pressure would; the
    capture had none), to count the splits and the descriptor allocations they need.
    ``scale``: divide the mapping sizes by this (tests: 8 keeps every ratio)."""
    if scale < 1 or (384 * MiB) % (scale * 2 * MiB) or (256 * MiB) % (scale * 2 * MiB):
        raise ConfigError(f"scale {scale}: 384 MiB and 256 MiB must stay multiples of 2 MiB")
    t0 = time.perf_counter()
    settings = settings or H.ThpSettings(sizes={"16kB": "always", "64kB": "always"})
    machine = Machine.create(mem, design=design, cpus=2)
    a = AddressSpaces(machine, settings)
    la, lb = 384 * MiB // scale, 256 * MiB // scale
    steps: dict[str, dict] = {}
    checks: dict[str, str] = {}
    mm = a.mm_alloc()

    def done(name, s0):
        steps[name] = _delta(a, s0)
        if check_each_step:
            checks[name] = a.check()

    s0 = _snap(a)
    A = a.mmap(mm, la)
    a.touch(mm, A, la)
    done("step1_touch", s0)
    s0 = _snap(a)
    for off in range(0, la, 64 * KiB):
        a.madvise_dontneed(mm, A + off + 8 * KiB, 8 * KiB)
    shrinker = None
    if shrink:
        q = int(a.folios.state.meta[F.MM_DS_COUNT])
        sp0 = a.folios.state.ostat[F.OP_SPLIT].copy()
        zs = machine.design.zs
        free0 = int(zs.z_free.sum()) + int(zs.pcp[:, :, PCP_COUNT].sum())
        a.shrink_deferred_split()
        sp = a.folios.state.ostat[F.OP_SPLIT] - sp0
        shrinker = {"queued": q, "split": int(sp[F.OS_OK]), "split_failed": int(sp[F.OS_CALLS] - sp[F.OS_OK]),
                    "descriptor_allocations": int(sp[F.OS_DESC_ALLOCS]),
                    "descriptor_failures": int(sp[F.OS_DESC_FAILED]),
                    "allocator_split_failures": int(sp[F.OS_ALLOC_SPLIT_FAILED]),
                    "pieces": int(sp[F.OS_PIECES]),
                    "pages_freed": int(zs.z_free.sum()) + int(zs.pcp[:, :, PCP_COUNT].sum()) - free0,
                    "free_path_allocations": int(sp[F.OS_FREE_PATH_ALLOCS])}
    done("step2_dontneed", s0)
    s0 = _snap(a)
    B = a.mmap(mm, lb)
    a.madvise_hugepage(mm, B, lb)
    a.touch(mm, B, lb)
    for off in range(0, lb, 2 * MiB):
        a.madvise_dontneed(mm, B + off, 1 * MiB)
    done("step3_pmd_thp", s0)
    s0 = _snap(a)
    child = a.fork(mm)
    fork_pt = int(a.st.ev[H.EV_PGTABLE_ALLOC] - s0["ev"][H.EV_PGTABLE_ALLOC])
    a.touch(child, A, la, step=4 * P)
    a.exit_mm(child)
    done("step4_fork_cow", s0)
    steps["step4_fork_cow"]["fork_pgtable_allocs"] = fork_pt
    s0 = _snap(a)
    a.munmap(mm, A, la)
    a.munmap(mm, B, lb)
    done("close", s0)
    a.exit_mm(mm)
    final = a.check()
    return {
        "design": design, "mem": mem, "scale": scale,
        "settings": {"enabled": settings.enabled, "defrag": settings.defrag,
                     "sizes": {f"{H.size_kb(o)}kB": H.SETTING_NAMES[int(v)]
                               for o, v in enumerate(settings.per_order()) if o >= 2}},
        "steps": steps, "checks": checks, "check": final,
        "thp_stats": {k: v for k, v in a.thp_stats().items() if any(v.values())},
        "events": a.events(), "anon_allocations": a.anon_allocations(),
        "shrinker": shrinker,
        "descriptor_allocations": {"split": int(a.folios.state.ostat[F.OP_SPLIT, F.OS_DESC_ALLOCS]),
                                   "alloc": int(a.folios.state.ostat[F.OP_ALLOC, F.OS_DESC_ALLOCS])},
        "descriptors_separate": a.folios.layout.separate,
        "seconds": round(time.perf_counter() - t0, 3),
    }


# ------------------------------------------------------------------ the kernel side


def _trace_file(capture: Path) -> Path:
    p = Path(capture)
    if p.is_dir():
        for name in ("trace.txt.zst", "trace.txt", "trace.txt.gz"):
            if (p / name).is_file():
                return p / name
        raise FormatError(f"{p}: no trace.txt[.zst|.gz] in this capture directory")
    return p


def _classify(order: np.ndarray, gfp: np.ndarray) -> np.ndarray:
    """0 other, 1 anon THP (order >= 2), 2 order-0 anon fault, 3 copy (COW), 4 page table."""
    cls = np.zeros(order.shape[0], np.int8)
    thp = ((gfp & _THP_BASE) == _THP_BASE) & ((gfp & G.__GFP_ZERO) == 0) & (order >= 2)
    cls[thp] = 1
    cls[(order == 0) & (gfp == GFP_ANON0)] = 2
    cls[(order == 0) & (gfp == GFP_COPY)] = 3
    cls[(order == 0) & (gfp == GFP_PGTABLE)] = 4
    return cls


def _count(order, cls, mask) -> dict:
    o = order[mask]
    c = cls[mask]
    thp = c == 1
    out = {"anon_folios": {str(k): int((thp & (o == k)).sum()) for k in range(2, 10) if (thp & (o == k)).any()},
           "anon_order0": int((c == 2).sum()), "copies": int((c == 3).sum()), "pgtables": int((c == 4).sum())}
    return out


def trace_windows(capture: Path, cache: bool = True) -> dict:
    """The workload's allocations in the capture, cut into the steps (see the module docstring)."""
    r = read_trace(_trace_file(capture), cache=cache)
    df = r.df.filter(pl.col("event") == event_code("mm_page_alloc"))
    pid = df["pid"].to_numpy()
    order = df["order"].to_numpy().astype(np.int64)
    gfp = df["gfp"].to_numpy().astype(np.int64)
    line = df["line"].to_numpy().astype(np.int64)
    cls = _classify(order, gfp)
    o9 = (cls == 1) & (order == 9)
    if not o9.any():
        raise FormatError(f"{capture}: no order-9 anon THP allocation: not the mthp workload's capture")
    pids, n9 = np.unique(pid[o9], return_counts=True)
    wpid = int(pids[np.argmax(n9)])
    cow = (cls == 3) & (pid != wpid)
    cp, nc = np.unique(pid[cow], return_counts=True)
    if not cp.size:
        raise FormatError(f"{capture}: no copy-on-write allocations by another process: no fork child found")
    cpid = int(cp[np.argmax(nc)])
    w = pid == wpid
    c = pid == cpid
    widx = np.flatnonzero(w & (cls == 1))
    wo = order[widx]
    s1 = None
    for i in range(len(widx) - 31):
        if wo[i] == 4 and (wo[i:i + 32] == 4).all():
            s1 = int(line[widx[i]])
            break
    if s1 is None:
        raise FormatError(f"{capture}: no run of 32 order-4 folio allocations (step 1) by pid {wpid}")
    s3 = int(line[np.flatnonzero(w & o9)[0]])
    cl = line[c]
    s4, s5 = int(cl.min()), int(cl.max())
    windows = {
        "start": w & (line < s1),
        "step1_2": w & (line >= s1) & (line < s3),
        "step3_fork": w & (line >= s3) & (line < s4),
        "step4_child": c,
        "step4_parent": w & (line >= s4) & (line <= s5),
        "step5_exit": w & (line > s5),
    }
    out = {"workload_pid": wpid, "child_pid": cpid,
           "landmarks": {"step1_line": s1, "step3_line": s3, "fork_line": s4, "child_exit_line": s5},
           "windows": {k: _count(order, cls, m) for k, m in windows.items()},
           "others": _count(order, cls, ~(w | c))}
    return out


def thp_stats_delta(capture: Path) -> dict[str, dict[str, int]]:
    b = H.parse_thp_stats((Path(capture) / "before.thp_stats").read_text())
    a = H.parse_thp_stats((Path(capture) / "after.thp_stats").read_text())
    return {size: {k: a[size][k] - v for k, v in d.items() if k in a.get(size, {})} for size, d in b.items()}


# ------------------------------------------------------------------ comparison


@dataclass
class Row:
    what: str
    model: int
    kernel: int
    note: str = ""

    def as_dict(self) -> dict:
        diff = self.model - self.kernel
        return {"what": self.what, "model": self.model, "kernel": self.kernel, "diff": diff,
                "relative": None if self.kernel == 0 else round(diff / self.kernel, 6), "note": self.note}


def _get(d: dict, *keys, default=0):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def compare(model: dict, tw: dict, delta: dict) -> list[dict]:
    """Model figures beside the trace windows and the thp_stats deltas."""
    st = model["steps"]
    win = tw["windows"]
    w_all = {"4": 0, "2": 0, "9": 0}
    for v in win.values():
        for k in w_all:
            w_all[k] += _get(v, "anon_folios", k)
    oth = tw["others"]
    rows = [
        Row("step 1: 64 KiB anon folios (order 4)", _get(st, "step1_touch", "anon_folios", "4"),
            _get(win, "step1_2", "anon_folios", "4"),
            "trace window step 1-2 (first 32-run of order 4 .. first order 9)"),
        Row("step 1: 16 KiB anon folios (order 2)", _get(st, "step1_touch", "anon_folios", "2"),
            _get(win, "step1_2", "anon_folios", "2"), "kernel: the interpreter's own faults interleaved"),
        Row("step 1: order-0 anon faults", _get(st, "step1_touch", "anon_folios", "0"),
            _get(win, "step1_2", "anon_order0"), "kernel: the interpreter's own faults interleaved"),
        Row("step 1-2: page tables",
            _get(st, "step1_touch", "pgtable_allocs") + _get(st, "step2_dontneed", "pgtable_allocs"),
            _get(win, "step1_2", "pgtables"), "model: PTE + PMD tables (PUD/PGD levels not modelled)"),
        Row("step 3: PMD THPs (order 9)", _get(st, "step3_pmd_thp", "anon_folios", "9"),
            _get(win, "step3_fork", "anon_folios", "9")),
        Row("step 3 + fork: page tables", _get(st, "step3_pmd_thp", "pgtable_allocs")
            + _get(st, "step4_fork_cow", "fork_pgtable_allocs"), _get(win, "step3_fork", "pgtables"),
            "deposited tables, the child's copies; kernel also copies the interpreter's other mappings"),
        Row("step 4: copy-on-write copies in the child", _get(st, "step4_fork_cow", "cow_copies"),
            _get(win, "step4_child", "copies"), "kernel: the child interpreter's own COW faults too"),
    ]
    for size, order in (("64kB", "4"), ("16kB", "2"), ("2048kB", "9")):
        m = model["thp_stats"].get(size, {})
        d = delta.get(size, {})
        wl = w_all[order]
        steps = _get(win, "step1_2", "anon_folios", order) + _get(win, "step3_fork", "anon_folios", order)
        note = f"trace: workload {wl:,} (steps 1-4 {steps:,}), other processes {_get(oth, 'anon_folios', order):,}"
        rows.append(Row(f"thp_stats {size} anon_fault_alloc", m.get("anon_fault_alloc", 0),
                        d.get("anon_fault_alloc", 0), note))
        for k in ("anon_fault_fallback", "split", "split_deferred", "nr_anon", "nr_anon_partially_mapped"):
            note = ""
            if k == "split_deferred":
                note = "folios freed by the heap churn and other processes after a partial unmap"
            elif k == "nr_anon":
                note = "model: every workload folio is freed by the end; kernel: other processes' live folios"
            rows.append(Row(f"thp_stats {size} {k}", m.get(k, 0), d.get(k, 0), note))
    return [r.as_dict() for r in rows]


def validate_mthp(capture: Path, designs=("linux", "radix", "vmem"), mem: str = "2G", shrink: bool = False,
                  cache: bool = True) -> dict:
    """Run the workload on each design and compare with the capture (JSON-ready)."""
    capture = Path(capture)
    if not capture.is_dir():
        raise FormatError(f"{capture}: expected a capture directory (trace.txt.zst, before/after.thp_stats, "
                          "workload.sh)")
    for f in ("before.thp_stats", "after.thp_stats"):
        if not (capture / f).is_file():
            raise FormatError(f"{capture}: no {f}")
    t0 = time.perf_counter()
    settings = settings_of_capture(capture)
    tw = trace_windows(capture, cache=cache)
    delta = thp_stats_delta(capture)
    runs = {}
    for d in designs:
        runs[d] = run_workload(d, mem, settings, shrink=shrink)
    first = runs[designs[0]]
    rows = compare(first, tw, delta)
    same = all(r["steps"] == first["steps"] and r["thp_stats"] == first["thp_stats"] for r in runs.values())
    return {"source": str(capture), "settings": first["settings"], "trace": tw, "thp_stats_delta": delta,
            "runs": runs, "agreement": rows, "designs_agree": same,
            "check": "ok" if all(r["check"] == "ok" and all(v == "ok" for v in r["checks"].values())
                                 for r in runs.values()) else "failed",
            "seconds": round(time.perf_counter() - t0, 3)}


__all__ = ["run_workload", "settings_of_capture", "thp_stats_delta", "trace_windows", "validate_mthp"]
