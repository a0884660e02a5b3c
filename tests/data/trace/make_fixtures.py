"""Regenerate the small trace fixtures of this directory from the real captures.

    python tests/data/trace/make_fixtures.py [/path/to/shared/traces]

Every fixture line is a real line of ../shared/traces (Linux 6.18, 2 CPUs), cut in a
few windows chosen to cover every event type and awkward task names; the trace-cmd
fixture re-prints real ftrace lines the way ``trace-cmd report`` prints them (see
tests/data/trace/README.md).  Run it only to rebuild the fixtures; the tests read the
committed files.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (trace, first line, last line) windows, 1-based inclusive
FTRACE_WINDOWS = [
    ("build", 15, 30),              # mm_page_free, mm_page_free_batched
    ("build", 280, 299),            # order-2/3 allocations
    ("build", 21225, 21240),        # order-1 frees (kdamond.0)
    ("build", 26000, 26015),        # mm_page_pcpu_drain of order-1 pages
    ("build", 1084030, 1084059),    # task "memfd:sealed-91" (a dash and digits inside comm)
    ("build", 1648330, 1648379),    # task "<...>" (comm not recorded)
    ("build", 1928430, 1928449),    # kworker/u8:1
    ("build", 2016093, 2016242),    # mm_page_alloc_extfrag among zone_locked/pcpu_drain, d..3.
]
PERF_WINDOWS = [(1, 60), (1185, 1215), (4230, 4260), (9590, 9650), (12125, 12140), (95845, 95870)]
# pagecache: pcpu_drain, free_batched, <idle>, percpu_refill=1, extfrag
TRACECMD_WINDOWS = [(15, 30), (130, 145), (955, 985), (1655, 1680), (60110, 60229)]

FTRACE_HEADER = """\
# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""

_FTRACE_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+(?P<sec>\d+)\.(?P<usec>\d{6}):"
    r" (?P<event>\w+): (?P<info>.*)$")


def _lines(path: Path, windows) -> list[str]:
    wanted = {}
    for a, b in windows:
        for i in range(a, b + 1):
            wanted[i] = None
    last = max(wanted)
    text = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    for i, line in enumerate(text.decode().splitlines(), start=1):
        if i in wanted:
            wanted[i] = line
        if i >= last:
            break
    return [wanted[i] for i in sorted(wanted)]


def as_trace_cmd(line: str) -> str:
    """Print a real ftrace line as ``trace-cmd report`` prints the same record.

    trace-cmd (tracecmd/trace-read.c): ``"%16s-%-5d [%03d]"``, then ``" %6.1000d:"``
    (libtraceevent: ``"%5llu.%06llu"``), then ``" %s: "`` and the name padded to 20
    columns, then the event's print fmt evaluated by libtraceevent, which cannot resolve
    ``vmemmap_base`` and prints ``page=`` as ``0x<pfn>`` (as ``perf script`` does).
    """
    m = _FTRACE_LINE.match(line)
    if m is None:
        raise ValueError(f"not an ftrace line: {line!r}")
    info = m["info"]
    pfn = re.search(r"pfn=0x([0-9a-f]+)", info)[1]
    info = re.sub(r"page=\S+", f"page=0x{pfn}", info, count=1)
    name = m["event"]
    pad = " " * max(0, 20 - len(name))
    return (f"{m['comm']:>16}-{int(m['pid']):<5} [{int(m['cpu']):03d}] {int(m['sec']):5d}.{m['usec']}:"
            f" {name}: {pad}{info}")


def main(shared: Path) -> None:
    by_trace: dict[str, list] = {}
    for name, a, b in FTRACE_WINDOWS:
        by_trace.setdefault(name, []).append((a, b))
    body = []
    for name, windows in by_trace.items():
        body += _lines(shared / name / "trace.txt.zst", windows)
    (HERE / "ftrace-header.txt").write_text(FTRACE_HEADER.format(n=len(body)) + "\n".join(body) + "\n")

    perf = _lines(shared / "perf-sample" / "perf-script.txt.zst", PERF_WINDOWS)
    (HERE / "perf-script.txt").write_text("\n".join(perf) + "\n")

    tc = [as_trace_cmd(x) for x in _lines(shared / "pagecache" / "trace.txt.zst", TRACECMD_WINDOWS)]
    (HERE / "trace-cmd-report.txt").write_text("cpus=2\n" + "\n".join(tc) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2].parent / "shared" / "traces")
