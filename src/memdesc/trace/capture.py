"""Make a capture on the running machine: kmem (and folio-level) tracepoints plus /proc snapshots.

Theory
------
A *capture* is one workload seen by a real kernel: the ftrace text of its page-allocator
(and, optionally, folio-level) tracepoints, and the machine's memory state just before
tracing was switched on and just after it was switched off.  It is the input of
``memdesc replay`` (exact and policy), ``memdesc snapshot`` and ``memdesc compare``, and
has exactly the layout of the captures in ``../shared/traces``:

=======================  ===================================================================
trace.txt.zst            tracefs ``trace_pipe`` text, zstd-compressed as it streams
before.* / after.*       /proc/buddyinfo, pagetypeinfo, zoneinfo, meminfo, vmstat (verbatim);
                         thp_stats (per-size mTHP ``enabled`` and ``stats/*`` from
                         /sys/kernel/mm/transparent_hugepage/hugepages-*kB, one
                         ``hugepages-NkB name value`` line each); kpageflags.zst and
                         kpagecount.zst (the raw u64-per-pfn dumps, zstd-compressed)
formats/<event>.format   the kernel's format file of every enabled event
workload.sh              the command that ran (shell-quoted, with its working directory)
workload.log             what it printed (stdout and stderr, also echoed live)
README                   what ran, kernel (``uname -a``), machine, events, duration, counts
=======================  ===================================================================

Invariants
~~~~~~~~~~
* **Snapshot ordering.**  Events are enabled with ``tracing_on`` = 0; ``before.*`` is
  read (small /proc files first, then thp_stats, kpageflags, kpagecount), then
  ``tracing_on`` = 1, then the command starts.  When it ends, ``tracing_on`` = 0 and
  ``after.*`` is read in the same order.  So every traced event happened after every
  ``before`` read and before every ``after`` read; what the trace cannot hold is what
  happened *during* a snapshot (the kpageflags read takes about a second per 24 GiB and
  the machine keeps running) -- exact replay counts that as inconsistencies.
* **No lost events, or they are counted.**  A reader thread drains ``trace_pipe``
  (non-blocking reads of up to 64 KiB, each a run of whole lines) into a zstd stream for
  the whole run, and after ``tracing_on`` = 0 until the pipe is empty.  Only one Python
  call per read, none per line.  Events the ring buffer could not keep are counted three
  ways: the per-CPU ``overrun`` / ``commit overrun`` / ``dropped events`` counters of
  ``per_cpu/cpu*/stats`` (after minus before), the ``[LOST n EVENTS]`` lines the kernel
  writes into the text, and the ``entries`` still unread at the end (must be 0).  The
  README states all of them; the ring buffer's ``read events`` equals the trace's lines.
* **The tracing state is given back.**  By default the capture uses a private tracefs
  instance (``instances/memdesc-capture-PID``, like ``trace-cmd -B``): the top-level
  buffer, its ``tracing_on``, ``set_event`` and ``buffer_size_kb`` and whatever another
  tracer is doing there are never touched, and the instance is removed at the end.  With
  ``top_level=True`` (kernels without instances) the top-level state is saved and
  restored: ``tracing_on``, ``current_tracer``, the events enabled (only those the
  capture enabled are disabled again), ``buffer_size_kb`` (per CPU when they differ) and
  the trace cleared (its previous contents cannot be kept: the capture consumes them).
  Both happen in ``finally`` blocks, so an exception, a failing command or Ctrl-C
  restores the state too; tracefs is unmounted again if the capture mounted it.
* **Interruption.**  The first SIGINT/SIGTERM/SIGHUP while the command runs stops the
  command (after a 0.5 s grace in which a terminal's Ctrl-C reaches it directly: the
  same signal to the command and all its descendants, SIGTERM 5 s later, SIGKILL 5 s
  after that) and the capture completes normally: after.* snapshot, README marked
  *interrupted*.  A second signal kills the command at once; a third aborts the capture
  (still restoring the tracing state and closing the zstd stream, so what was written
  stays readable).  ``--duration`` stops the command the same way when time is up.

What the trace cannot see: pages moved without a tracepoint (compaction's
``__isolate_free_page``, highatomic reservation), per-CPU-list contents at snapshot time
(kpageflags shows them as flagless allocated pages), and anything in the snapshot
windows.  Every process on the machine is in the trace, not only the command's.

This module does real-kernel I/O only (root, tracefs, /proc); it never imports the page
allocator.  The CLI is :mod:`memdesc.cli.capture`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from memdesc.errors import CaptureError, MemdescError
from memdesc.mm import vmstat
from memdesc.trace.reader import read_trace

# ---------------------------------------------------------------------------------------------- what is captured

#: the page-allocator events every capture has (include/trace/events/kmem.h)
KMEM_EVENTS: tuple[tuple[str, str], ...] = tuple(("kmem", e) for e in (
    "mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched", "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag"))

#: the folio-level events of the shared folio captures (their formats/ dirs), by subsystem
FOLIO_EVENTS: tuple[tuple[str, str], ...] = (
    *(("filemap", e) for e in ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache",
                               "mm_filemap_get_pages", "mm_filemap_fault", "mm_filemap_map_pages")),
    *(("readahead", e) for e in ("page_cache_sync_ra", "page_cache_async_ra", "page_cache_ra_order",
                                 "page_cache_ra_unbounded")),
    *(("pagemap", e) for e in ("mm_lru_insertion", "mm_lru_activate")),
    *(("vmscan", e) for e in ("mm_vmscan_kswapd_sleep", "mm_vmscan_kswapd_wake", "mm_vmscan_wakeup_kswapd",
                              "mm_vmscan_direct_reclaim_begin", "mm_vmscan_direct_reclaim_end",
                              "mm_vmscan_memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_end",
                              "mm_vmscan_lru_isolate", "mm_vmscan_lru_shrink_inactive",
                              "mm_vmscan_lru_shrink_active", "mm_vmscan_write_folio")),
    *(("compaction", e) for e in ("mm_compaction_isolate_migratepages", "mm_compaction_isolate_freepages",
                                  "mm_compaction_fast_isolate_freepages", "mm_compaction_migratepages",
                                  "mm_compaction_begin", "mm_compaction_end", "mm_compaction_try_to_compact_pages",
                                  "mm_compaction_finished", "mm_compaction_suitable", "mm_compaction_deferred",
                                  "mm_compaction_defer_compaction", "mm_compaction_defer_reset",
                                  "mm_compaction_kcompactd_sleep", "mm_compaction_wakeup_kcompactd",
                                  "mm_compaction_kcompactd_wake")),
    ("migrate", "mm_migrate_pages"),
    *(("huge_memory", e) for e in ("mm_khugepaged_scan_pmd", "mm_collapse_huge_page",
                                   "mm_collapse_huge_page_isolate", "mm_collapse_huge_page_swapin",
                                   "mm_khugepaged_scan_file", "mm_khugepaged_collapse_file")),
    *(("thp", e) for e in ("set_migration_pmd", "remove_migration_pmd")),
)
#: subsystems whose every event the folio set takes ("all compaction, huge_memory and thp events")
FOLIO_WHOLE_SUBSYSTEMS = ("compaction", "huge_memory", "thp")

EVENT_SETS = ("kmem", "folio")

#: /proc files of a snapshot, in the order they are read (the small ones first: nearly one instant)
PROC_FILES = ("buddyinfo", "pagetypeinfo", "zoneinfo", "meminfo", "vmstat")
KPAGE_FILES = ("kpageflags", "kpagecount")

TRACEFS_PATHS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
THP_SYSFS = Path("/sys/kernel/mm/transparent_hugepage")
INSTANCE_PREFIX = "memdesc-capture-"

#: default per-CPU ring buffer (KiB), capped at 1/64 of MemAvailable over all CPUs
DEFAULT_BUFFER_KB = 64 << 10
MIN_BUFFER_KB = 1024
#: bytes per kpageflags/kpagecount read (8 bytes a pfn: 1 Mi pfns = 4 GiB of memory a read)
KPAGE_CHUNK = 8 << 20
PIPE_READ = 1 << 16
ZSTD_LEVEL = 3

#: escalation when the command is to stop: grace for a terminal's Ctrl-C, then signal, SIGTERM, SIGKILL
GRACE_S = 0.5
ESCALATE_S = 5.0

Log = Callable[[str], None]


def _nolog(_msg: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------- small file I/O


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _write(path: Path, value: str) -> None:
    """Write a tracefs control file (one write call, as ``echo`` does)."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise CaptureError(f"cannot write {value.strip()!r} to {path}: {e.strerror}") from None


def _truncate(path: Path) -> None:
    """``echo > trace``: open with O_TRUNC clears a tracefs buffer."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)


# ---------------------------------------------------------------------------------------------- preconditions


def check_root() -> None:
    if os.geteuid() != 0:
        raise CaptureError("memdesc capture needs root: tracefs and /proc/kpageflags are root-only "
                           "(run it with sudo)")


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _lockdown() -> str | None:
    p = Path("/sys/kernel/security/lockdown")
    with contextlib.suppress(OSError):
        m = re.search(r"\[(\w+)\]", p.read_text())
        if m and m.group(1) != "none":
            return m.group(1)
    return None


def tracefs_supported() -> bool:
    """The running kernel has tracefs (listed in /proc/filesystems)."""
    try:
        return any(line.split()[-1] == "tracefs" for line in _read(Path("/proc/filesystems")).splitlines()
                   if line.strip())
    except OSError:
        return False


def find_tracefs(mount: bool = True) -> tuple[Path, bool]:
    """The tracefs directory, mounting it at /sys/kernel/tracing if needed and allowed.

    Returns ``(path, mounted_here)``.  Raises CaptureError saying why tracefs is unavailable.
    """
    for p in TRACEFS_PATHS:
        if (p / "trace_pipe").exists():
            return p, False
    if not tracefs_supported():
        raise CaptureError("tracefs is unavailable: this kernel has no tracefs in /proc/filesystems "
                           "(built without CONFIG_TRACING / CONFIG_EVENT_TRACING?)")
    target = TRACEFS_PATHS[0]
    if not mount:
        raise CaptureError(f"tracefs is not mounted (mount -t tracefs nodev {target})")
    if not target.is_dir():
        raise CaptureError(f"tracefs is unavailable: {target} does not exist (is sysfs mounted?)")
    rc = _libc().mount(b"nodev", str(target).encode(), b"tracefs", 0, None)
    if rc != 0:
        e = ctypes.get_errno()
        lock = _lockdown()
        why = f"kernel lockdown={lock}" if lock else os.strerror(e)
        raise CaptureError(f"tracefs is unavailable: mount -t tracefs nodev {target} failed: {why}")
    if not (target / "trace_pipe").exists():
        raise CaptureError(f"tracefs is unavailable: mounted at {target} but it has no trace_pipe")
    return target, True


def _umount(path: Path) -> None:
    _libc().umount2(str(path).encode(), 0)


def check_outdir(outdir: Path, force: bool) -> None:
    """OUTDIR must be a directory that is empty or absent, unless ``force``."""
    if outdir.exists() and not outdir.is_dir():
        raise CaptureError(f"{outdir}: exists and is not a directory")
    if outdir.is_dir() and any(outdir.iterdir()) and not force:
        raise CaptureError(f"{outdir}: not empty (use --force to write the capture into it anyway)")


def prepare_outdir(outdir: Path, force: bool) -> None:
    """Create OUTDIR; with ``force``, the capture files already in it go (other files stay)."""
    check_outdir(outdir, force)
    if outdir.is_dir():
        for p in outdir.iterdir():
            if (p.name.startswith(("before.", "after.")) or p.name in ("trace.txt.zst", "README", "workload.sh",
                                                                        "workload.log")):
                p.unlink()
        fmt = outdir / "formats"
        if fmt.is_dir():
            for p in fmt.glob("*.format"):
                p.unlink()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "formats").mkdir(exist_ok=True)
    except OSError as e:
        raise CaptureError(f"cannot create {outdir}: {e.strerror}") from None


def resolve_events(tracefs: Path, which: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(events to enable, events of the set this kernel does not have).  A missing kmem event is an error."""
    if which not in EVENT_SETS:
        raise CaptureError(f"--events must be one of {', '.join(EVENT_SETS)}, got {which!r}")
    ev = tracefs / "events"
    missing_kmem = [f"{s}:{e}" for s, e in KMEM_EVENTS if not (ev / s / e / "enable").exists()]
    if missing_kmem:
        raise CaptureError(f"this kernel ({platform.release()}) lacks the page-allocator tracepoint(s) "
                           f"{', '.join(missing_kmem)} (not in {ev}); a capture needs all six kmem events")
    wanted = list(KMEM_EVENTS)
    if which == "folio":
        wanted += FOLIO_EVENTS
        for sub in FOLIO_WHOLE_SUBSYSTEMS:
            d = ev / sub
            if d.is_dir():
                wanted += [(sub, p.name) for p in sorted(d.iterdir()) if (p / "enable").exists()]
    wanted = list(dict.fromkeys(wanted))
    present = [x for x in wanted if (ev / x[0] / x[1] / "enable").exists()]
    missing = [x for x in wanted if x not in present]
    return present, missing


def default_buffer_kb() -> int:
    """64 MiB per CPU, at most 1/64 of MemAvailable over all CPUs, at least 1 MiB."""
    ncpu = os.cpu_count() or 1
    with contextlib.suppress(OSError, KeyError, ValueError):
        avail_kb = vmstat.read_meminfo("/proc/meminfo")["MemAvailable"]
        return max(MIN_BUFFER_KB, min(DEFAULT_BUFFER_KB, avail_kb // 64 // ncpu))
    return DEFAULT_BUFFER_KB


# ---------------------------------------------------------------------------------------------- the trace buffer


def parse_cpu_stats(text: str) -> dict[str, float]:
    """One ``per_cpu/cpuN/stats`` file: ``{"entries": ..., "overrun": ..., "dropped events": ...}``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if not sep:
            continue
        v = v.strip()
        with contextlib.suppress(ValueError):
            out[k.strip()] = float(v) if "." in v else int(v)
    return out


#: per-CPU counters of events the ring buffer lost
LOSS_COUNTERS = ("overrun", "commit overrun", "dropped events")


class TraceBuffer:
    """A tracefs ring buffer (a private instance, or the top-level one) with its state kept.

    ``open()`` prepares it (tracing off, buffer size, the events), ``close()`` gives back
    what was there before (see the module's invariants); ``close`` is idempotent.
    """

    def __init__(self, tracefs: Path, top_level: bool = False, log: Log = _nolog):
        self.tracefs = tracefs
        self.top_level = top_level
        self.log = log
        self.dir = tracefs if top_level else tracefs / "instances" / f"{INSTANCE_PREFIX}{os.getpid()}"
        self.created = False
        self.enabled: list[tuple[str, str]] = []
        self.saved: dict[str, object] = {}
        self.closed = False

    # -- life cycle
    def open(self, events: Sequence[tuple[str, str]], buffer_kb: int) -> None:
        if self.top_level:
            self._save_top_level()
            _write(self.dir / "tracing_on", "0")
            if self.saved["current_tracer"] != "nop":
                _write(self.dir / "current_tracer", "nop")
        else:
            _remove_stale_instances(self.tracefs, self.log)
            try:
                self.dir.mkdir()
            except OSError as e:
                raise CaptureError(f"cannot create the tracefs instance {self.dir}: {e.strerror} "
                                   f"(use --top-level on kernels without instances)") from None
            self.created = True
            _write(self.dir / "tracing_on", "0")
        _write(self.dir / "buffer_size_kb", str(int(buffer_kb)))
        _truncate(self.dir / "trace")
        for sub, name in events:
            f = self.dir / "events" / sub / name / "enable"
            if _read(f).strip().startswith("1"):
                continue  # already on (top level): leave it on afterwards too
            _write(f, "1")
            self.enabled.append((sub, name))

    def close(self) -> list[str]:
        """Give the state back; returns what could not be restored (empty when all was)."""
        if self.closed:
            return []
        self.closed = True
        problems: list[str] = []

        def attempt(what: str, fn) -> None:
            try:
                fn()
            except (OSError, CaptureError) as e:
                problems.append(f"{what}: {e}")

        attempt("tracing_on", lambda: _write(self.dir / "tracing_on", "0"))
        for sub, name in self.enabled:
            attempt(f"{sub}:{name}", lambda s=sub, n=name: _write(self.dir / "events" / s / n / "enable", "0"))
        if self.top_level:
            s = self.saved
            attempt("trace", lambda: _truncate(self.dir / "trace"))
            if s.get("current_tracer") not in (None, "nop"):
                attempt("current_tracer", lambda: _write(self.dir / "current_tracer", str(s["current_tracer"])))
            per_cpu = s.get("per_cpu_buffer_kb")
            if per_cpu:
                for cpu, kb in per_cpu.items():
                    attempt(f"cpu{cpu} buffer_size_kb",
                            lambda c=cpu, k=kb: _write(self.dir / "per_cpu" / f"cpu{c}" / "buffer_size_kb", str(k)))
            elif s.get("buffer_size_kb") is not None:
                attempt("buffer_size_kb", lambda: _write(self.dir / "buffer_size_kb", str(s["buffer_size_kb"])))
            if "tracing_on" in s:
                attempt("tracing_on", lambda: _write(self.dir / "tracing_on", str(s["tracing_on"])))
        elif self.created:
            attempt("instance", self._rmdir)
        return problems

    def _rmdir(self) -> None:
        for _ in range(50):  # EBUSY while a reader still holds trace_pipe open
            try:
                self.dir.rmdir()
                return
            except OSError as e:
                if e.errno != 16:
                    raise
                time.sleep(0.05)
        self.dir.rmdir()

    def _save_top_level(self) -> None:
        d = self.dir
        s: dict[str, object] = {"tracing_on": _read(d / "tracing_on").strip(),
                                "current_tracer": _read(d / "current_tracer").strip()}
        size = _read(d / "buffer_size_kb").strip()
        m = re.fullmatch(r"(\d+)(?: \(expanded: (\d+)\))?", size)
        if m:
            # an unexpanded boot buffer (7 KiB) grows to its expanded size on first use anyway
            s["buffer_size_kb"] = int(m.group(2) or m.group(1))
        else:  # "X": the CPUs' sizes differ
            s["per_cpu_buffer_kb"] = {int(p.name[3:]): int(_read(p / "buffer_size_kb").split()[0])
                                      for p in sorted((d / "per_cpu").glob("cpu*"))}
        s["buffer_size_kb_text"] = size
        self.saved = s

    # -- while tracing
    def on(self) -> None:
        _write(self.dir / "tracing_on", "1")

    def off(self) -> None:
        _write(self.dir / "tracing_on", "0")

    def marker(self, text: str) -> None:
        with contextlib.suppress(OSError):
            _write(self.dir / "trace_marker", text)

    def stats(self) -> dict[int, dict[str, float]]:
        out = {}
        for p in sorted((self.dir / "per_cpu").glob("cpu*"), key=lambda q: int(q.name[3:])):
            with contextlib.suppress(OSError):
                out[int(p.name[3:])] = parse_cpu_stats(_read(p / "stats"))
        return out

    @property
    def pipe(self) -> Path:
        return self.dir / "trace_pipe"


def _remove_stale_instances(tracefs: Path, log: Log) -> None:
    """Instances left by a capture that was SIGKILLed (its pid gone) hold ring-buffer memory: remove them."""
    inst = tracefs / "instances"
    if not inst.is_dir():
        return
    for d in inst.glob(f"{INSTANCE_PREFIX}*"):
        pid = d.name[len(INSTANCE_PREFIX):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                for ev in (d / "events").glob("*/*/enable"):
                    with contextlib.suppress(OSError):
                        _write(ev, "0")
                d.rmdir()
                log(f"removed the stale tracefs instance {d.name}")


def loss_totals(before: dict[int, dict[str, float]], after: dict[int, dict[str, float]]) -> dict[str, int]:
    """Per-CPU loss counters summed over CPUs, after minus before, plus what is still unread."""
    out = {}
    for k in LOSS_COUNTERS:
        out[k] = int(sum(after.get(c, {}).get(k, 0) - before.get(c, {}).get(k, 0) for c in after))
    out["unread entries"] = int(sum(s.get("entries", 0) for s in after.values()))
    out["read events"] = int(sum(after.get(c, {}).get("read events", 0) - before.get(c, {}).get("read events", 0)
                                 for c in after))
    return out


# ---------------------------------------------------------------------------------------------- trace_pipe -> zstd


class PipeStreamer(threading.Thread):
    """Drain ``trace_pipe`` into a zstd-compressed file until told to stop and the pipe is empty.

    Non-blocking reads of up to 64 KiB (the kernel hands out whole lines); an empty pipe
    costs a 5 ms sleep.  The stream is flushed to a complete zstd block every second, so
    even a capture killed with SIGKILL leaves a decodable prefix.
    """

    def __init__(self, pipe: Path, out: Path, level: int = ZSTD_LEVEL):
        super().__init__(name="memdesc-capture-trace_pipe", daemon=True)
        self.pipe = pipe
        self.out = out
        self.level = level
        self.bytes = 0
        self.lines = 0
        self.lost_markers = 0
        self.error: BaseException | None = None
        self._stop_at: float | None = None
        self._halt = threading.Event()
        self._opened = threading.Event()

    def start(self) -> None:  # type: ignore[override]
        super().start()
        self._opened.wait(5.0)
        if self.error is not None:
            raise CaptureError(f"cannot read {self.pipe}: {self.error}")

    def stop(self, timeout: float | None = None) -> None:
        """Stop once the pipe is empty (``timeout`` s at most: then what is left stays unread)."""
        self._stop_at = None if timeout is None else time.monotonic() + timeout
        self._halt.set()
        self.join()
        if self.error is not None:
            raise CaptureError(f"reading {self.pipe} failed: {self.error}")

    def run(self) -> None:
        try:
            fd = os.open(self.pipe, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            self.error = e
            self._opened.set()
            return
        self._opened.set()
        try:
            with open(self.out, "wb") as f, zstandard.ZstdCompressor(level=self.level).stream_writer(
                    f, closefd=False) as z:
                last_flush = time.monotonic()
                while True:
                    try:
                        b = os.read(fd, PIPE_READ)
                    except BlockingIOError:
                        b = None
                    if b:
                        z.write(b)
                        self.bytes += len(b)
                        self.lines += b.count(b"\n")
                        self.lost_markers += b.count(b" [LOST ")
                        if self._stop_at is not None and time.monotonic() > self._stop_at:
                            break
                        continue
                    if self._halt.is_set():
                        break
                    now = time.monotonic()
                    if now - last_flush > 1.0:
                        z.flush(zstandard.FLUSH_BLOCK)
                        last_flush = now
                    time.sleep(0.005)
        except BaseException as e:  # reported by stop()
            self.error = e
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------- snapshots


def thp_stats_text(root: Path = THP_SYSFS) -> str | None:
    """Per-size mTHP settings and counters, one ``hugepages-NkB <name> <value>`` line each (sorted).

    The ``enabled`` line is ``hugepages-NkB enabled=<the file>``; None without per-size mTHP.
    """
    sizes = sorted(p for p in root.glob("hugepages-*") if p.is_dir()) if root.is_dir() else []
    if not sizes:
        return None
    lines = []
    for d in sizes:
        with contextlib.suppress(OSError):
            lines.append(f"{d.name} enabled={_read(d / 'enabled').strip()}")
        st = d / "stats"
        if st.is_dir():
            for s in sorted(st.iterdir()):
                with contextlib.suppress(OSError):
                    lines.append(f"{d.name} {s.name} {_read(s).strip()}")
    return "\n".join(lines) + "\n"


def read_thp_stats(path: Path) -> dict[str, dict[str, str | int]]:
    """A thp_stats file back: ``{"hugepages-64kB": {"enabled": "always [inherit] ...", "split": 0, ...}}``."""
    out: dict[str, dict[str, str | int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        size, _, rest = line.partition(" ")
        if not size.startswith("hugepages-") or not rest:
            raise CaptureError(f"{path}:{n}: not a thp_stats line (hugepages-NkB name value): {line!r}")
        d = out.setdefault(size, {})
        if rest.startswith("enabled="):
            d["enabled"] = rest[len("enabled="):]
            continue
        name, _, value = rest.partition(" ")
        try:
            d[name] = int(value)
        except ValueError:
            raise CaptureError(f"{path}:{n}: {name} is not a number: {value!r}") from None
    return out


def dump_kpage(src: Path, dst: Path, chunk: int = KPAGE_CHUNK, level: int = ZSTD_LEVEL) -> int:
    """Copy a /proc/kpageflags-like file into a zstd file, ``chunk`` bytes (a multiple of 8) a read."""
    n = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f, open(dst, "wb") as o, zstandard.ZstdCompressor(
            level=level).stream_writer(o, closefd=False) as z:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            z.write(view[:k])
            n += k
    if n % 8:
        raise CaptureError(f"{src}: read {n} bytes, not a multiple of 8")
    return n


@dataclass
class SnapshotTimes:
    """When each file of one side was read (seconds from the start of the capture) and how long it took."""

    files: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def start(self) -> float:
        return min(a for a, _ in self.files.values()) if self.files else 0.0

    @property
    def end(self) -> float:
        return max(a + b for a, b in self.files.values()) if self.files else 0.0


def take_snapshot(outdir: Path, when: str, t0: float, proc: Path = Path("/proc"),
                  thp: Path = THP_SYSFS) -> SnapshotTimes:
    """Write ``{when}.*``: the /proc files, thp_stats, then the kpageflags / kpagecount dumps."""
    times = SnapshotTimes()
    for name in PROC_FILES:
        a = time.monotonic()
        src = proc / name
        if src.exists():
            (outdir / f"{when}.{name}").write_bytes(src.read_bytes())
            times.files[name] = (a - t0, time.monotonic() - a)
    a = time.monotonic()
    text = thp_stats_text(thp)
    if text is not None:
        (outdir / f"{when}.thp_stats").write_text(text)
        times.files["thp_stats"] = (a - t0, time.monotonic() - a)
    for name in KPAGE_FILES:
        a = time.monotonic()
        try:
            dump_kpage(proc / name, outdir / f"{when}.{name}.zst")
        except OSError as e:
            raise CaptureError(f"cannot read {proc / name}: {e.strerror}") from None
        times.files[name] = (a - t0, time.monotonic() - a)
    return times


def copy_formats(tracefs: Path, events: Sequence[tuple[str, str]], outdir: Path) -> int:
    d = outdir / "formats"
    d.mkdir(exist_ok=True)
    for sub, name in events:
        (d / f"{name}.format").write_bytes((tracefs / "events" / sub / name / "format").read_bytes())
    return len(events)


# ---------------------------------------------------------------------------------------------- the machine


def uname_a() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["uname", "-a"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in _read(Path("/proc/cpuinfo")).splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("model name", "Model", "Hardware", "cpu model", "uarch"):
                return v.strip()
    return platform.processor() or platform.machine()


def _fs_of(path: Path) -> str | None:
    """Filesystem type of the mount holding ``path`` (/proc/self/mountinfo, longest mount point)."""
    best, fstype = -1, None
    p = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in _read(Path("/proc/self/mountinfo")).splitlines():
            left, _, right = line.partition(" - ")
            parts = left.split()
            if len(parts) < 5 or not right:
                continue
            mp = parts[4].replace("\\040", " ")
            if (p == mp or p.startswith(mp.rstrip("/") + "/")) and len(mp) > best:
                best, fstype = len(mp), right.split()[0]
    return fstype


def machine_description(outdir: Path | None = None) -> dict:
    """Kernel, CPU, memory, NUMA, zones, page size, THP and filesystem of the running machine."""
    mem_kb = 0
    with contextlib.suppress(OSError, KeyError, ValueError):
        mem_kb = vmstat.read_meminfo("/proc/meminfo")["MemTotal"]
    zones: list[str] = []
    with contextlib.suppress(OSError, ValueError, MemdescError):
        zones = list(dict.fromkeys(z.zone for z in vmstat.read_zoneinfo("/proc/zoneinfo") if z.present))
    nodes = len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))) or 1
    thp = None
    with contextlib.suppress(OSError):
        thp = _read(THP_SYSFS / "enabled").strip()
    return {
        "uname": uname_a(), "release": platform.release(), "arch": platform.machine(), "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(), "cpus": os.cpu_count() or 1, "mem_total_kb": int(mem_kb), "numa_nodes": nodes,
        "zones": zones, "page_size": os.sysconf("SC_PAGE_SIZE"), "thp": thp,
        "filesystem": _fs_of(outdir) if outdir is not None else None, "cwd_filesystem": _fs_of(Path.cwd()),
    }


# ---------------------------------------------------------------------------------------------- the command


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo.extend(children.get(q, ()))
    return out


def signal_tree(pid: int, sig: int) -> int:
    """Send ``sig`` to ``pid`` and all its descendants; returns how many processes got it."""
    n = 0
    for q in _descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(q, sig)
            n += 1
    return n


class _Tee(threading.Thread):
    """Copy the command's output to our stdout and to workload.log as it comes."""

    def __init__(self, fd: int, log_path: Path, echo: bool):
        super().__init__(name="memdesc-capture-tee", daemon=True)
        self.fd = fd
        self.log_path = log_path
        self.echo = echo
        self._halt = threading.Event()

    def run(self) -> None:
        out = sys.stdout.buffer if self.echo and hasattr(sys.stdout, "buffer") else None
        with open(self.log_path, "wb") as log:
            while True:
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if not r:
                    if self._halt.is_set():
                        break
                    continue
                try:
                    b = os.read(self.fd, 1 << 16)
                except OSError:
                    break
                if not b:
                    break
                log.write(b)
                if out is not None:
                    with contextlib.suppress(OSError, ValueError):
                        out.write(b)
                        out.flush()

    def finish(self) -> None:
        """Wait for EOF a little (a daemonised grandchild may keep the pipe open), then stop."""
        self.join(1.0)
        self._halt.set()
        self.join()
        os.close(self.fd)


class _Signals:
    """SIGINT/SIGTERM/SIGHUP during a capture: counted; what they do depends on the phase."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.phase = "setup"
        self.received: list[tuple[int, float]] = []
        self.child: subprocess.Popen | None = None
        self._old: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handler)

    def uninstall(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handler(self, signum, _frame) -> None:
        self.received.append((signum, time.monotonic()))
        n = len(self.received)
        if self.phase == "cleanup":
            return
        if self.phase == "running":
            if n == 2 and self.child is not None and self.child.poll() is None:
                signal_tree(self.child.pid, signal.SIGKILL)
            if n <= 2:
                return
        raise KeyboardInterrupt(f"capture aborted by {signal.Signals(signum).name}")


# ---------------------------------------------------------------------------------------------- the capture


@dataclass
class CaptureResult:
    """What one capture did (``as_dict`` is the ``--json`` summary)."""

    outdir: Path
    command: list[str]
    cwd: str
    events_set: str
    events_enabled: list[str]
    events_missing: list[str]
    buffer_kb: int
    mode: str
    status: str = "aborted"  # complete | interrupted | aborted
    stop_reason: str | None = None
    exit_status: int | None = None
    command_seconds: float = 0.0
    traced_seconds: float = 0.0
    started: str = ""
    trace_bytes: int = 0
    trace_lines: int = 0
    compressed_bytes: int = 0
    events: dict[str, int] = field(default_factory=dict)
    lost_markers: int = 0
    lost_events: int = 0
    loss: dict[str, int] = field(default_factory=dict)
    stats_before: dict = field(default_factory=dict)
    stats_after: dict = field(default_factory=dict)
    snapshots: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    restore_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    malformed_lines: int = 0

    @property
    def overruns(self) -> int:
        """Ring-buffer overruns: events overwritten before they were read (``overrun`` + ``commit overrun``)."""
        return int(self.loss.get("overrun", 0) + self.loss.get("commit overrun", 0))

    @property
    def events_lost(self) -> int:
        """Events not in the trace by any count: the per-CPU loss counters or the [LOST n EVENTS] lines
        (two views of the same losses: the larger), plus what was still unread at the end."""
        counters = sum(self.loss.get(k, 0) for k in LOSS_COUNTERS)
        return int(max(counters, self.lost_events) + self.loss.get("unread entries", 0))

    @property
    def returncode(self) -> int:
        """The command's exit status, 128+N if killed by signal N; 130 for an aborted capture."""
        if self.status == "aborted" or self.exit_status is None:
            return 130
        return self.exit_status if self.exit_status >= 0 else 128 - self.exit_status

    def as_dict(self) -> dict:
        return {
            "outdir": str(self.outdir), "command": self.command, "cwd": self.cwd, "events_set": self.events_set,
            "events_enabled": self.events_enabled, "events_missing": self.events_missing,
            "buffer_size_kb": self.buffer_kb, "tracefs_buffer": self.mode, "status": self.status,
            "stop_reason": self.stop_reason, "exit_status": self.exit_status, "returncode": self.returncode,
            "command_seconds": self.command_seconds, "traced_seconds": self.traced_seconds,
            "started": self.started, "trace_bytes": self.trace_bytes, "trace_lines": self.trace_lines,
            "compressed_bytes": self.compressed_bytes, "events": self.events, "lost_markers": self.lost_markers,
            "lost_events": self.lost_events, "loss": self.loss, "overruns": self.overruns,
            "events_lost": self.events_lost,
            "malformed_lines": self.malformed_lines, "stats_before": self.stats_before,
            "stats_after": self.stats_after,
            "snapshots": {w: {k: list(v) for k, v in d.items()} for w, d in self.snapshots.items()},
            "machine": self.machine, "restore_problems": self.restore_problems, "notes": self.notes,
        }


def _check_command(command: Sequence[str]) -> None:
    exe = command[0]
    if "/" in exe:
        if not os.access(exe, os.X_OK):
            raise CaptureError(f"{exe}: not an executable file")
    elif shutil.which(exe) is None:
        raise CaptureError(f"{exe}: command not found in PATH")


def capture(outdir: str | Path, command: Sequence[str] = (), *, events: str = "kmem",
            buffer_kb: int | None = None, duration: float | None = None, force: bool = False,
            top_level: bool = False, echo: bool = True, count: bool = True, log: Log = _nolog,
            tracefs: Path | None = None) -> CaptureResult:
    """Run ``command`` under tracing and write a capture into ``outdir`` (see the module docstring).

    ``events``: ``kmem`` or ``folio``.  ``buffer_kb``: per-CPU ring buffer (default
    :func:`default_buffer_kb`).  ``duration``: stop the command after this many seconds
    (without a command: trace the idle machine that long).  ``force``: write into a
    non-empty ``outdir``.  ``top_level``: use the top-level tracefs buffer instead of a
    private instance.  ``echo``: copy the command's output to stdout (it always goes to
    workload.log).  ``count``: parse the trace at the end for per-event counts and LOST
    markers.  ``log(msg)`` receives progress lines.  ``tracefs``: the tracefs directory
    (default: found, and mounted if needed).
    """
    command = list(command)
    if not command and duration is None:
        raise CaptureError("nothing to capture: give a COMMAND (after --) or --duration")
    if duration is not None and duration <= 0:
        raise CaptureError(f"--duration must be > 0 seconds, got {duration}")
    if buffer_kb is not None and buffer_kb < 4:
        raise CaptureError(f"--buffer-kb must be >= 4, got {buffer_kb}")
    out = Path(outdir)
    check_outdir(out, force)
    if command:
        _check_command(command)
    check_root()
    mounted = False
    if tracefs is None:
        tracefs, mounted = find_tracefs(mount=True)
        if mounted:
            log(f"mounted tracefs at {tracefs}")
    elif not (tracefs / "trace_pipe").exists():
        raise CaptureError(f"tracefs is unavailable: {tracefs} has no trace_pipe")
    try:
        return _capture(out, command, events, buffer_kb, duration, force, top_level, echo, count, log, tracefs)
    finally:
        if mounted:
            with contextlib.suppress(OSError):
                _umount(tracefs)


def _capture(out: Path, command: list[str], events: str, buffer_kb: int | None, duration: float | None,
             force: bool, top_level: bool, echo: bool, count: bool, log: Log, tracefs: Path) -> CaptureResult:
    enabled, missing = resolve_events(tracefs, events)
    if missing:
        log(f"not on this kernel (not enabled): {', '.join(f'{s}:{e}' for s, e in missing)}")
    created = not out.exists()
    prepare_outdir(out, force)
    kb = int(buffer_kb) if buffer_kb is not None else default_buffer_kb()
    res = CaptureResult(outdir=out, command=command or ["sleep", f"{duration:g}"], cwd=os.getcwd(),
                        events_set=events, events_enabled=[f"{s}:{e}" for s, e in enabled],
                        events_missing=[f"{s}:{e}" for s, e in missing], buffer_kb=kb,
                        mode="top-level" if top_level else "instance")
    res.machine = machine_description(out)
    res.started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    sig = _Signals()
    buf = TraceBuffer(tracefs, top_level, log)
    streamer: PipeStreamer | None = None
    tee: _Tee | None = None
    traced = False
    error: Exception | None = None
    t0 = time.monotonic()
    sig.install()
    try:
        buf.open(enabled, kb)
        res.mode = "top-level" if top_level else f"instance {buf.dir.name}"
        copy_formats(tracefs, enabled, out)
        log(f"{len(enabled)} events enabled in {buf.dir}, {kb} KiB ring buffer per CPU")
        res.stats_before = buf.stats()
        streamer = PipeStreamer(buf.pipe, out / "trace.txt.zst")
        streamer.start()
        log("before snapshot (/proc files, thp_stats, kpageflags, kpagecount)")
        res.snapshots["before"] = take_snapshot(out, "before", t0).files
        buf.on()
        traced = True
        t_on = time.monotonic()
        buf.marker("memdesc-capture: start (the command is in workload.sh)")
        sig.phase = "running"
        if command:
            log(f"running: {shlex.join(command)}")
            rfd, wfd = os.pipe()
            try:
                child = subprocess.Popen(command, stdout=wfd, stderr=wfd, close_fds=True)
            except OSError as e:
                os.close(rfd)
                raise CaptureError(f"cannot run {command[0]}: {e.strerror}") from None
            finally:
                os.close(wfd)
            sig.child = child
            tee = _Tee(rfd, out / "workload.log", echo)
            tee.start()
            res.exit_status, res.stop_reason = _wait(child, sig, duration, t_on, log)
        else:
            log(f"tracing the machine for {duration:g} s")
            res.stop_reason = _sleep(sig, duration or 0.0)
            res.exit_status = 0
        res.command_seconds = time.monotonic() - t_on
        buf.marker(f"memdesc-capture: end exit_status={res.exit_status}")
        buf.off()
        res.traced_seconds = time.monotonic() - t_on
        sig.phase = "finishing"
        if tee is not None:
            tee.finish()
            tee = None
        log("after snapshot")
        res.snapshots["after"] = take_snapshot(out, "after", t0).files
        streamer.stop()
        res.stats_after = buf.stats()
        res.status = "interrupted" if res.stop_reason else "complete"
    except KeyboardInterrupt as e:
        if not traced:
            raise
        res.notes.append(f"aborted: {e or 'interrupted'}")
        log(f"aborted ({e or 'interrupted'}): restoring the tracing state, keeping what was written")
    except Exception as e:  # noqa: BLE001 - re-raised once the state is restored and the README written
        error = e
        res.notes.append(f"failed: {e}")
    finally:
        sig.phase = "cleanup"  # signals are only counted from here on: the state must be given back
        problems: list[str] = []

        def step(what: str, fn) -> None:  # every step runs, whatever the others did
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - reported, and the next steps still restore the state
                problems.append(f"{what}: {e}")

        step("tracing_on", buf.off)
        if sig.child is not None:
            step("stopping the command", lambda: _reap(sig.child, res))
        if tee is not None:
            step("workload.log", tee.finish)
        if streamer is not None and streamer.is_alive():
            step("trace_pipe", lambda: streamer.stop(timeout=10.0))
        if not res.stats_after and traced:
            step("ring-buffer stats", lambda: res.stats_after.update(buf.stats()))
        step("restore", lambda: problems.extend(buf.close()))
        step("signals", sig.uninstall)
        if not traced:
            step("removing the partial capture", lambda: _remove_partial(out, created))
        res.restore_problems = problems
    if error is not None and not traced:
        raise error
    if streamer is not None:
        res.trace_bytes, res.trace_lines, res.lost_markers = streamer.bytes, streamer.lines, streamer.lost_markers
    res.loss = loss_totals(res.stats_before, res.stats_after) if res.stats_after else {}
    trace = out / "trace.txt.zst"
    res.compressed_bytes = trace.stat().st_size if trace.is_file() else 0
    _write_workload(out, res.command, res.cwd, bool(command))
    if not (out / "workload.log").exists():
        (out / "workload.log").write_bytes(b"")
    if count and res.trace_lines:
        try:
            _count(res, trace, log)
        except KeyboardInterrupt:
            res.notes.append("the event count was interrupted")
    write_readme(res)
    if error is not None:
        raise error
    return res


def _reap(child: subprocess.Popen, res: CaptureResult) -> None:
    if child.poll() is None:
        signal_tree(child.pid, signal.SIGKILL)
        child.wait()
    res.exit_status = child.returncode


def _remove_partial(out: Path, created: bool) -> None:
    """Nothing was traced: take away what the capture wrote (and OUTDIR itself if it made it)."""
    for p in out.glob("before.*"):
        p.unlink()
    for name in ("trace.txt.zst", "workload.log"):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    fmt = out / "formats"
    if fmt.is_dir():
        for p in fmt.glob("*.format"):
            p.unlink()
        with contextlib.suppress(OSError):
            fmt.rmdir()
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def _wait(child: subprocess.Popen, sig: _Signals, duration: float | None, t_on: float,
          log: Log) -> tuple[int, str | None]:
    """Wait for the command; stop it (signal, SIGTERM, SIGKILL) on a signal or when ``duration`` is up."""
    reason: str | None = None
    stop_t = 0.0
    stage = 0  # 0 nothing sent, 1 first signal sent, 2 SIGTERM sent, 3 SIGKILL sent
    first = signal.SIGINT
    while True:
        try:
            return child.wait(timeout=0.05), reason
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if reason is None:
            if sig.received:
                first, t = sig.received[0]
                reason = f"{signal.Signals(first).name} received"
                stop_t = t + GRACE_S
                log(f"{reason}: stopping the command")
            elif duration is not None and now - t_on >= duration:
                reason = f"--duration {duration:g} s reached"
                stop_t = now
                log(f"{reason}: stopping the command")
        if reason is None:
            continue
        if stage == 0 and now >= stop_t:
            signal_tree(child.pid, first)
            stage, stop_t = 1, now + ESCALATE_S
        elif stage == 1 and now >= stop_t:
            log("the command ignores it: SIGTERM")
            signal_tree(child.pid, signal.SIGTERM)
            stage, stop_t = 2, now + ESCALATE_S
        elif stage == 2 and now >= stop_t:
            log("the command ignores SIGTERM: SIGKILL")
            signal_tree(child.pid, signal.SIGKILL)
            stage = 3


def _sleep(sig: _Signals, duration: float) -> str | None:
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if sig.received:
            return f"{signal.Signals(sig.received[0][0]).name} received"
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
    return None


def _count(res: CaptureResult, trace: Path, log: Log) -> None:
    log("counting the events in the trace")
    try:
        rr = read_trace(trace)
    except (OSError, MemdescError) as e:  # a count is a report: never lose the capture over it
        res.notes.append(f"could not count the events: {e}")
        return
    counts = {k: v for k, v in rr.event_counts().items() if v}
    counts.update(rr.unknown_events)
    res.events = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    res.lost_events = rr.lost_events
    res.malformed_lines = rr.n_malformed


def _write_workload(out: Path, command: list[str], cwd: str, real: bool) -> None:
    what = "the command memdesc capture ran" if real else "no command: memdesc capture traced the machine this long"
    text = (f"#!/bin/sh\n# {what} (argv shell-quoted), in its working directory\n"
            f"cd {shlex.quote(cwd)} || exit 1\n{shlex.join(command)}\n")
    p = out / "workload.sh"
    p.write_text(text)
    p.chmod(0o755)


# ---------------------------------------------------------------------------------------------- README


def _gib(kb: int) -> str:
    g = kb / (1 << 20)
    return f"{g:.0f} GiB" if g >= 10 else f"{g:.1f} GiB"


def _wrap(text: str, width: int = 116, indent: str = "") -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = indent + w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return "\n".join(lines)


def readme_text(res: CaptureResult) -> str:
    m = res.machine
    kmem = [e.split(":", 1)[1] for e in res.events_enabled if e.startswith("kmem:")]
    others: dict[str, list[str]] = {}
    for e in res.events_enabled:
        sub, name = e.split(":", 1)
        if sub != "kmem":
            others.setdefault(sub, []).append(name)
    lo = res.loss
    overrun = lo.get("overrun", 0) + lo.get("commit overrun", 0)
    status = {"complete": "", "interrupted": f"INTERRUPTED ({res.stop_reason}): the command was stopped; the "
                                              "capture is complete up to that point.\n",
              "aborted": "ABORTED: the capture was cut short; the files present are what was written "
                         "(the trace is a readable prefix).\n"}[res.status]
    wl = shlex.join(res.command)
    exit_s = ("-" if res.exit_status is None else
              str(res.exit_status) if res.exit_status >= 0 else f"killed by {signal.Signals(-res.exit_status).name}")
    evcount = sum(v for k, v in res.events.items()) if res.events else None
    lines = [
        status + _wrap(f"Workload: `{wl}` (workload.sh; run in {res.cwd}), captured with `memdesc capture "
                       f"--events {res.events_set}` on {res.started}. Exit status: {exit_s}."),
        _wrap(f"Wall time of the workload: {res.command_seconds:.3f} s; trace lines: {res.trace_lines}; "
              f"ring-buffer overruns: {overrun}; dropped events: {lo.get('dropped events', 0)}; lost events "
              f"([LOST n EVENTS] lines): {res.lost_events} ({res.lost_markers} markers); events left unread: "
              f"{lo.get('unread entries', 0)}"
              + (" (no event lost)." if res.overruns == 0 and lo else ".")),
        "",
        f"Kernel: {m.get('uname')}",
        _wrap(f"Machine: {m.get('cpu_model')}, {m.get('cpus')} CPUs, {_gib(m.get('mem_total_kb', 0))} RAM "
              f"(MemTotal {m.get('mem_total_kb', 0)} kB; {m.get('numa_nodes')} NUMA node"
              f"{'s' if m.get('numa_nodes', 1) > 1 else ''}; zones {', '.join(m.get('zones') or ['?'])}), "
              f"{m.get('page_size', 4096) // 1024} KiB pages, {m.get('arch')}, filesystem of the working directory "
              f"{m.get('cwd_filesystem') or '?'}, transparent hugepages: {m.get('thp') or 'not available'}"
              + (" (per-size settings in before.thp_stats)." if (res.outdir / "before.thp_stats").is_file()
                 else ".")),
        _wrap("Captured from tracefs trace_pipe (ftrace text format) of a "
              + ("private tracefs instance" if res.mode.startswith("instance") else "the top-level tracefs buffer")
              + f" ({res.mode}), ring buffer {res.buffer_kb} KiB per CPU. Events enabled "
              f"({len(res.events_enabled)}): the {len(kmem)} kmem page-allocation events ({', '.join(kmem)})"
              + ("" if not others else " and the folio-level events: "
                 + "; ".join(f"{sub} ({', '.join(n)})" for sub, n in others.items()))
              + ". Their format files are in formats/."),
    ]
    if res.events_missing:
        lines.append(_wrap("Not on this kernel, so not enabled: " + ", ".join(res.events_missing) + "."))
    lines.append("Every process on the machine is in the trace, not only the workload's; two tracing_mark_write "
                 "lines mark the command's start and end.")
    if res.events:
        lines += ["", f"Events in the trace ({evcount}):"]
        lines += [f"  {k:<40s} {v:>10d}" for k, v in res.events.items()]
    lines += [
        "",
        "Files:",
        "  trace.txt.zst          the trace (zstd-compressed text)",
        "  before.* / after.*     /proc/buddyinfo, pagetypeinfo, zoneinfo, meminfo, vmstat; thp_stats (per-size mTHP",
        "                         settings and counters from /sys/kernel/mm/transparent_hugepage/hugepages-*kB); "
        "zstd-compressed",
        "                         raw dumps of /proc/kpageflags and /proc/kpagecount (one little-endian u64 per PFN, "
        "PFN 0 first)",
        "  formats/               the kernel's format file of every enabled event",
        "  workload.sh            the command that ran; workload.log: what it printed",
    ]
    timing = []
    for when in ("before", "after"):
        files = res.snapshots.get(when)
        if files:
            a = min(s for s, _ in files.values())
            b = max(s + d for s, d in files.values())
            timing.append(f"{when}.* took {b - a:.2f} s ({', '.join(f'{k} {d:.2f}' for k, (_, d) in files.items())})")
    lines.append(_wrap("Timing: before.* were read just before tracing was switched on; after.* right after it was "
                       "switched off, in the order " + ", ".join([*PROC_FILES, "thp_stats", *KPAGE_FILES])
                       + " (the kpageflags read is not an atomic picture, and the system keeps running in between)"
                       + (": " + "; ".join(timing) if timing else "") + "."))
    st = res.stats_after
    if st:
        lines += ["", "Ring buffer per CPU at the end (per_cpu/cpu*/stats; counters since the capture began):"]
        for cpu, s in st.items():
            b = res.stats_before.get(cpu, {})
            lines.append(f"  cpu{cpu}: " + ", ".join(
                f"{k} {int(s.get(k, 0) - (b.get(k, 0) if k != 'entries' else 0))}"
                for k in ("read events", "entries", *LOSS_COUNTERS)))
    if res.restore_problems:
        lines += ["", "Problems while finishing (tracing state, command, files): " + "; ".join(res.restore_problems)]
    for n in res.notes:
        lines.append(f"Note: {n}")
    return "\n".join(lines) + "\n"


def write_readme(res: CaptureResult) -> None:
    with contextlib.suppress(OSError):
        (res.outdir / "README").write_text(readme_text(res))


__all__ = ["EVENT_SETS", "FOLIO_EVENTS", "KMEM_EVENTS", "CaptureResult", "PipeStreamer", "TraceBuffer", "capture",
           "check_root", "default_buffer_kb", "dump_kpage", "find_tracefs", "loss_totals", "machine_description",
           "parse_cpu_stats", "prepare_outdir", "read_thp_stats", "readme_text", "resolve_events", "signal_tree",
           "take_snapshot", "thp_stats_text", "tracefs_supported"]
