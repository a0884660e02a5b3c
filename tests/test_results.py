"""Results are data: typed models, the committed JSON Schema, one name per counter, the CLI's conventions."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from memdesc.cli import app, options
from memdesc.mm.machine import COUNTER_ALIASES, COUNTERS, Machine
from memdesc.results import COMMANDS, schema
from memdesc.sim.churn import Churn
from memdesc.sim.replay import sample_path
from memdesc.trace.capture import CaptureResult
from schema_check import check, committed

#: names the same counters had before issue 13 (and churn's old key names)
OLD_NAMES = {"alloc_failed_for_reserve", "alloc_failed_for_descriptor", "allocs", "frees"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_committed_schema_is_the_generated_one(command):
    assert committed(command) == json.loads(json.dumps(schema(command))), \
        f"regenerate with: python -m memdesc.results --write ({command})"


def _keys(d, skip=("phases", "rows")):
    """Every key of a nested JSON object (not descending into ``skip``) with its count."""
    out: dict[str, int] = {}

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                out[k] = out.get(k, 0) + 1
                if k not in skip:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(d)
    return out


def _run(args, path):
    r = CliRunner().invoke(app, [*args, "--json", str(path)])
    assert r.exit_code == 0, r.output
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, sample_comparison):
    """Every command's --json (small runs; compare from the shared sample comparison)."""
    t = tmp_path_factory.mktemp("json")
    trace = t / "churn.txt.zst"
    out = {
        "machine": _run(["machine", "--mem", "256M"], t / "machine.json"),
        "churn": _run(["churn", "--mem", "256M", "--cpus", "2", "--ops", "3000", "--orders", "mix", "--gfp", "mix",
                       "--trace-out", str(trace)], t / "churn.json"),
        "inspect": _run(["inspect", "0x1200", "--mem", "256M", "--design", "radix", "--churn", "500"],
                        t / "inspect.json"),
        "snapshot": _run(["snapshot", str(sample_path()), "--design", "vmem"], t / "snapshot.json"),
        "replay": _run(["replay", str(trace), "--mem", "256M", "--cpus", "2", "--mode", "exact"], t / "replay.json"),
        "scenario": _run(["scenario", "highmem-free", "--mem", "1G", "--design", "all", "--no-steps"],
                         t / "scenario.json"),
        "ontology": _run(["ontology", str(sample_path()), "--formula"], t / "ontology.json"),
        "readahead": _run(["readahead", "--runs", "informed,raw", "--divergences", "1"], t / "readahead.json"),
        "anon": _run(["anon", "--designs", "linux", "--scale", "64", "--mem", "256M"], t / "anon.json"),
    }
    p = t / "compare.json"
    options._write_json(p, sample_comparison.summary, "compare")
    out["compare"] = json.loads(p.read_text())
    return out


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("sweep", "capture", "compact", "reclaim",
                                                                "scenario-thp", "replay_mm")])
def test_every_command_json_validates_against_the_committed_schema(outputs, command):
    """sweep: tests/test_sweep.py; capture: below (a real capture needs root and tracefs);
    compact: tests/test_compaction_shared.py (a full compaction of a 24 GiB snapshot);
    reclaim: tests/test_reclaim_shared.py (it needs the reclaim capture); scenario-thp:
    tests/test_scenario_thp.py (every design, both variants); replay_mm: tests/test_mm_replay.py
    (it needs a capture with folio-level events)."""
    check(command, outputs[command])


def test_capture_json_fits_the_schema(tmp_path):
    """What ``memdesc capture --json`` writes, for an aborted capture (no tracefs needed)."""
    r = CaptureResult(outdir=tmp_path, command=["true"], cwd=str(tmp_path), events_set="kmem", events_enabled=[],
                      events_missing=[], buffer_kb=1024, mode="instance")
    check("capture", r.as_dict())


def test_a_missing_key_fails_validation(outputs):
    bad = dict(outputs["churn"])
    del bad["free_stalls"]
    with pytest.raises(jsonschema.ValidationError, match="free_stalls"):
        check("churn", bad)


def test_one_name_per_counter(outputs):
    for command, d in outputs.items():
        keys = _keys(d)
        assert not OLD_NAMES & set(keys), (command, OLD_NAMES & set(keys))
    for command in ("machine", "churn", "inspect", "snapshot", "replay"):
        # replay's ``typed`` section is the typed layer's own account (its free_path_allocations
        # split into the slab's and the design's): the machine's counters are named once outside it
        keys = _keys(outputs[command], skip=("phases", "rows", "typed"))
        for k in (*COUNTERS, "ops"):
            assert keys[k] == 1, (command, k, keys[k])
    for run in outputs["scenario"]["runs"]:
        keys = _keys(run)
        assert all(keys[k] == 1 for k in COUNTERS)
        assert run["free_stalls"] >= sum(p["free_stalls"] for p in run["phases"])
    ch = outputs["churn"]["churn"]
    assert ch["alloc"] <= outputs["churn"]["ops"]["alloc"] and ch["free"] <= outputs["churn"]["ops"]["free"]


def test_aliases_equal_the_counter_they_name():
    m = Machine.create("128M", design="vmem", fail_descriptor_alloc=0.05)
    Churn(m, orders="mix", gfp="mix", occupancy=0.5, seed=2).run(5000)
    raw = m.design.design_stats()
    assert raw["alloc_failed_for_descriptor"] == m.stats()["alloc_failed_for_metadata"] > 0
    m = Machine.create("64M", design="radix:reserve")
    while m.alloc_pages("GFP_KERNEL", 0) is not None:
        pass
    raw = m.design.design_stats()
    assert raw["alloc_failed_for_reserve"] == m.stats()["alloc_failed_for_metadata"]
    for k, v in COUNTER_ALIASES.items():
        if k in raw:
            assert raw[k] == m.stats()[v], k
    s = m.summary()
    assert not set(COUNTER_ALIASES) & set(s["design_stats"]) and not set(COUNTER_ALIASES) & set(s["stats"])


DESIGN_COMMANDS = [
    ["machine", "--mem", "64M"],
    ["churn", "--mem", "64M", "--ops", "10"],
    ["inspect", "0x10", "--mem", "64M"],
    ["snapshot", str(sample_path())],
    ["replay", "--sample"],
    ["scenario", "highmem-free", "--mem", "1G"],
]


@pytest.mark.parametrize("args", DESIGN_COMMANDS, ids=lambda a: a[0])
def test_a_flag_for_another_design_is_an_error(args):
    r = CliRunner().invoke(app, [*args, "--design", "linux", "--radix-nodes", "reserve"])
    assert r.exit_code == 2 and "applies to the radix design only, not 'linux'" in " ".join(r.output.split())


def test_vmem_flags_and_enums():
    r = CliRunner().invoke(app, ["churn", "--design", "radix", "--fail-descriptor-alloc", "0.1", "--ops", "1"])
    assert r.exit_code == 2 and "applies to the vmem design only, not 'radix'" in " ".join(r.output.split())
    for args, choices in ((["machine"], "x86_64|i386"), (["replay"], "exact|policy"), (["snapshot"], "before|after"),
                          (["churn"], "consume|reserve|host"), (["scenario", "highmem-free"], "i386|x86_64|both"),
                          (["compare"], "auto|always|never")):
        r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and choices in r.output, (args, r.output)
    r = CliRunner().invoke(app, ["machine", "--layout", "sparc"])
    assert r.exit_code == 2 and "'sparc' is not one of" in r.output


def test_exit_code_1_when_the_check_fails(monkeypatch):
    """0 ok, 1 a check failed, 2 a usage error: snapshot too (it exited 0 on a failed check)."""
    monkeypatch.setattr(Machine, "check", lambda self: "broken on purpose")
    for args in (["snapshot", str(sample_path())], ["machine", "--mem", "64M"],
                 ["churn", "--mem", "64M", "--ops", "5"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1, (args, r.output)


def test_scenario_default_design_and_80_columns(monkeypatch, tmp_path):
    monkeypatch.setattr(options.console, "width", 80)
    r = CliRunner().invoke(app, ["scenario", "highmem-free", "--mem", "1G", "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "s.json").read_text())
    assert [x["design"] for x in d["runs"]] == ["linux"] and d["params"]["design"] == "linux"
    assert "…" not in r.output and max(map(len, r.output.splitlines())) <= 80
    r = CliRunner().invoke(app, ["scenario", "highmem-free", "--mem", "1G", "--design", "all", "--layout", "both"])
    assert r.exit_code == 0 and "…" not in r.output and max(map(len, r.output.splitlines())) <= 80
    assert "vmem" in r.output and "reserve" in r.output
