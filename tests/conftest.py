"""Shared pytest fixtures.

``shared_traces`` points at ../shared/traces (the full real captures from a Linux
6.18 machine).  Tests that need it are skipped when it is absent; CI always has it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEMDESC_SHARED_TRACES", REPO.parent / "shared" / "traces"))


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (full real captures)")
    return SHARED
