"""Policy and exact replay of real kmem traces on the ``radix`` design.

The independent reference is ``linux``: with tree nodes outside the model (``radix:host``)
the radix deques must make exactly linux's decisions on a real demand stream, so the final
free lists, statistics and policy counts are identical.  With modelled nodes (``consume``,
``reserve``) the replay must keep every invariant; on these x86-64 captures (every zone
directly mapped) no free stalls, and ``reserve`` never allocates while freeing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.sim.replay import replay, sample_path


@pytest.fixture(scope="module")
def sample_runs():
    out = {}
    for mode in ("policy", "exact"):
        for design in ("linux", "radix:host", "radix", "radix:reserve"):
            out[mode, design] = replay(sample_path(), mode=mode, design=design)
    return out


@pytest.mark.parametrize("mode", ["policy", "exact"])
def test_sample_host_nodes_replay_like_linux(sample_runs, mode):
    lin, rad = sample_runs[mode, "linux"], sample_runs[mode, "radix:host"]
    assert lin.check == rad.check == "ok"
    np.testing.assert_array_equal(lin.machine.design.free_blocks(), rad.machine.design.free_blocks())
    assert lin.machine.stats() == rad.machine.stats()
    assert lin.policy == rad.policy and lin.inconsistencies == rad.inconsistencies
    assert {k: v["model"] for k, v in lin.final_vs_real.items()} == \
        {k: v["model"] for k, v in rad.final_vs_real.items()}


@pytest.mark.parametrize("mode", ["policy", "exact"])
@pytest.mark.parametrize("design", ["radix", "radix:reserve"])
def test_sample_replay_with_modelled_nodes(sample_runs, mode, design):
    r = sample_runs[mode, design]
    assert r.check == "ok"
    s = r.as_dict()
    ds = s["design_stats"]
    assert s["struct_page_bytes"] == 16 and s["metadata_bytes"]["descriptors"] == ds["tree_node_bytes"] > 0
    assert s["free_stalls"] == 0 and ds["parked_now"] == 0
    if design == "radix:reserve":
        assert s["free_path_allocations"] == 0 and s["alloc_failed_for_metadata"] == 0


def test_cli_replay_radix_nodes(tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["replay", "--sample", "--mode", "policy", "--design", "radix",
                                   "--radix-nodes", "reserve", "--json", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["check"] == "ok" and d["design_stats"]["policy"] == "reserve" and d["free_path_allocations"] == 0
    res = CliRunner().invoke(app, ["replay", "--sample", "--design", "vmem", "--radix-nodes", "consume"])
    assert res.exit_code != 0


@pytest.mark.shared
@pytest.mark.parametrize("capture", ["anon", "build", "pagecache"])
def test_shared_traces_policy_replay(shared_traces, capture):
    for design in ("radix", "radix:reserve"):
        r = replay(shared_traces / capture, mode="policy", design=design)
        assert r.check == "ok", (capture, design, r.check)
        assert r.malformed_lines == 0
        ds = r.machine.design.design_stats()
        assert ds["free_stalls"] == 0 and ds["parked_now"] == 0
        if design == "radix:reserve":
            assert ds["free_path_allocations"] == 0


@pytest.mark.shared
@pytest.mark.parametrize("capture", ["anon", "build", "pagecache"])
def test_shared_traces_exact_replay(shared_traces, capture):
    """Exact replay puts the real kernel's placement on the radix lists (core.py's buddy code
    over the radix primitives): the final free lists are those of linux's exact replay."""
    lin = replay(shared_traces / capture, mode="exact", design="linux")
    rad = replay(shared_traces / capture, mode="exact", design="radix:host")
    assert lin.check == rad.check == "ok"
    assert {k: v["model"] for k, v in lin.final_vs_real.items()} == \
        {k: v["model"] for k, v in rad.final_vs_real.items()}
    r = replay(shared_traces / capture, mode="exact", design="radix")
    assert r.check == "ok" and r.machine.design.design_stats()["parked_now"] == 0
