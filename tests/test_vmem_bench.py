"""The peer benchmark runs (smoke size) and its address-identity check holds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vmem_peers.py"


def test_bench_vmem_peers_quick():
    env = dict(os.environ, COLUMNS="240")
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "machine:" in text and "batch kernel" in text
    if importlib.util.find_spec("virtual_allocator") is not None:
        # vmem ADDRFIT and virtual-allocator FIRST_FIT are both address-ordered first fit
        assert text.count("vs vmem ADDRFIT: identical") == 2
    else:
        assert "virtual-allocator is not installed" in text
