"""The examples of docs/llfree.md run and print what the page says."""

from __future__ import annotations

import doctest
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "llfree.md"


def test_llfree_doc_examples():
    res = doctest.testfile(str(DOC), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False)
    assert res.attempted >= 25, f"only {res.attempted} examples found in {DOC}"
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in {DOC} failed"
