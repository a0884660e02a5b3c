"""Where the tests look for the shared captures: never an absolute path of one machine."""

from __future__ import annotations

import os
from pathlib import Path

import conftest

REPO = Path(__file__).resolve().parents[1]


def test_shared_traces_beside_the_clone_or_from_the_environment():
    expected = os.environ.get("MEMDESC_SHARED_TRACES") or REPO.parent / "shared" / "traces"
    assert conftest.SHARED == Path(expected)


def test_no_absolute_capture_path_in_code():
    bad = [str(p.relative_to(REPO)) for d in ("src", "tests", "benchmarks") for p in (REPO / d).rglob("*.py")
           if p.name != "test_conftest.py" and "/work/shared" in p.read_text()]
    assert not bad, f"absolute capture paths in {bad}"
