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


def test_tests_needing_the_captures_are_marked_shared():
    """conftest marks every collected test that uses the shared_traces fixture (directly or through
    another fixture) with ``shared``, whether or not it says so itself."""
    import pytest

    class Item:
        def __init__(self, fixtures, marked):
            self.fixturenames = fixtures
            self.markers = ["shared"] if marked else []

        def get_closest_marker(self, name):
            return name if name in self.markers else None

        def add_marker(self, m):
            self.markers.append(m.name)

    items = [Item(("shared_traces", "tmp_path"), False), Item(("shared_traces",), True), Item(("tmp_path",), False)]
    conftest.pytest_collection_modifyitems(None, items)
    assert [it.markers for it in items] == [["shared"], ["shared"], []]
    assert isinstance(pytest.mark.shared, pytest.MarkDecorator)
