"""Shared pytest fixtures.

``shared_traces`` points at ``$MEMDESC_SHARED_TRACES`` or ../shared/traces beside the clone
(the full real captures from a Linux 6.18 machine).  Tests that need it are skipped when it is absent on a developer's
machine (memdesc itself never needs it); under CI (``CI`` set) its absence is an error,
so those tests can never be skipped silently there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memdesc.sim.compare import compare

REPO = Path(__file__).resolve().parents[1]
#: the captures: $MEMDESC_SHARED_TRACES, else ../shared/traces beside the clone (never a path of one machine)
SHARED = Path(os.environ.get("MEMDESC_SHARED_TRACES") or REPO.parent / "shared" / "traces")


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} not present: CI must run the tests over the full real captures")
        pytest.skip(f"{SHARED} not present (full real captures)")
    return SHARED


#: the designs the sample comparison runs (one per design family: list heads, tree nodes, descriptors)
SAMPLE_COMPARE_DESIGNS = "linux,radix:reserve,vmem"


@pytest.fixture(scope="session")
def sample_comparison():
    """``memdesc compare`` on the bundled sample with three designs (shared by the compare,
    results and browser tests: one run)."""
    return compare(None, SAMPLE_COMPARE_DESIGNS)


def pytest_collection_modifyitems(config, items):
    """Every test that needs the captures (through the shared_traces fixture, directly or via
    another fixture) carries the ``shared`` marker, so ``-m "not shared"`` deselects them all."""
    for item in items:
        if "shared_traces" in getattr(item, "fixturenames", ()) and item.get_closest_marker("shared") is None:
            item.add_marker(pytest.mark.shared)


# ------------------------------------------------------------------ memory per test module
# CI machines have finite memory: the summary names the modules after which the test process
# grew most (resident set, from /proc/self/statm), so a test that keeps captures alive is found.
_RSS: dict[str, int] = {}


def _rss_mib() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    except (OSError, ValueError, IndexError):
        return 0


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or nextitem.module is not item.module:
        _RSS[item.module.__name__] = _rss_mib()


def pytest_terminal_summary(terminalreporter):
    if not _RSS:
        return
    prev, grew = 0, []
    for mod, rss in _RSS.items():
        grew.append((rss - prev, mod, rss))
        prev = rss
    top = ", ".join(f"{m} +{d} MiB (-> {r})" for d, m, r in sorted(grew, reverse=True)[:8] if d > 0)
    terminalreporter.write_line(f"resident memory after each test module, largest growth: {top}")
