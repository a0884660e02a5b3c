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
