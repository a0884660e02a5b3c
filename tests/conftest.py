"""Shared pytest fixtures.

``shared_traces`` points at ../shared/traces (the full real captures from a Linux
6.18 machine).  Tests that need it are skipped when it is absent on a developer's
machine (memdesc itself never needs it); under CI (``CI`` set) its absence is an error,
so those tests can never be skipped silently there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [Path(os.environ["MEMDESC_SHARED_TRACES"])] if "MEMDESC_SHARED_TRACES" in os.environ else [
    REPO.parent / "shared" / "traces", Path("/work/shared/traces")]
SHARED = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} not present: CI must run the tests over the full real captures")
        pytest.skip(f"{SHARED} not present (full real captures)")
    return SHARED
