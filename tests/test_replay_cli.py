"""``memdesc replay``: output, --json keys, --proc-out, --every, --strict, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.mm import vmstat
from memdesc.sim.replay import sample_path
from test_replay import exact_rows, write_trace  # tests/ is on sys.path (pytest rootdir)

SUMMARY_KEYS = ("machine", "design", "struct_page_bytes", "metadata_bytes", "ops", "buddyinfo", "unusable_index",
                "extfrag_index", "free_pages", "mode", "events", "events_per_second", "inconsistencies",
                "malformed_lines", "final_vs_real", "check")


def test_bare_trace_json_proc_out_and_samples(tmp_path):
    trace = write_trace(exact_rows(), tmp_path / "t.txt.zst")
    out = tmp_path / "r.json"
    proc = tmp_path / "proc"
    samples = tmp_path / "s.parquet"
    r = CliRunner().invoke(app, ["replay", str(trace), "--mem", "64M", "--cpus", "2", "--json", str(out),
                                 "--proc-out", str(proc), "--every", "5", "--samples-out", str(samples)])
    assert r.exit_code == 0, r.output
    assert "check: ok" in r.output and "mm_page_pcpu_drain: pcp of another cpu" in r.output
    d = json.loads(out.read_text())
    for key in SUMMARY_KEYS:
        assert key in d, key
    assert d["mode"] == "exact" and d["check"] == "ok" and d["final_vs_real"] is None
    assert d["events"]["mm_page_alloc"] == 6 and d["inconsistencies"]["mm_page_free: free"] == 1
    # the /proc views are the kernel's text formats, readable by the parsers
    bi = vmstat.read_buddyinfo(proc / "buddyinfo")
    assert bi.to_dict() == d["buddyinfo"]
    assert {p.name for p in proc.iterdir()} == {"buddyinfo", "pagetypeinfo", "zoneinfo", "unusable_index",
                                                 "extfrag_index"}
    s = pl.read_parquet(samples)
    assert s.height == 2 * (len(exact_rows()) // 5) and "order_10" in s.columns


def test_strict_fails_on_inconsistencies(tmp_path):
    trace = write_trace(exact_rows(), tmp_path / "t.txt")
    r = CliRunner().invoke(app, ["replay", str(trace), "--mem", "64M", "--cpus", "2", "--strict"])
    assert r.exit_code == 1 and "--strict" in r.output


def test_sample_is_the_default(tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["replay", "--json", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["capture"] == str(sample_path()) and d["events_replayed"] == 914525
    real = vmstat.read_buddyinfo(sample_path() / "after.buddyinfo").to_dict()
    assert d["final_vs_real"]["0:Normal"]["proc"] == real["0:Normal"]
    # the model's buddyinfo line, the real one and the diff line, in the kernel's format
    assert "model       Node 0, zone   Normal" in r.output and "/proc       Node 0, zone   Normal" in r.output


def test_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(app, ["replay", str(tmp_path), "--sample"])
    assert r.exit_code == 2 and "either a PATH or --sample" in r.output
    p = subprocess.run([sys.executable, "-c", "from memdesc.cli import main; main()", "replay",
                        str(tmp_path / "missing.txt")], capture_output=True, text=True, timeout=300, check=False)
    msg = " ".join(p.stderr.split())   # rich wraps long lines
    assert p.returncode == 2 and "no such file or directory" in msg and "Traceback" not in msg
    p = subprocess.run([sys.executable, "-c", "from memdesc.cli import main; main()", "replay", "--mode", "fast",
                        str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    msg = " ".join(p.stderr.split())
    assert p.returncode == 2 and "'fast' is not one of" in msg and "'exact'" in msg and "'policy'" in msg


def test_churn_trace_out_replays_to_the_same_machine(tmp_path):
    """``memdesc churn --trace-out`` then ``memdesc replay`` of that file on the same machine."""
    trace, cj, rj = tmp_path / "churn.txt.zst", tmp_path / "churn.json", tmp_path / "replay.json"
    args = ["--mem", "256M", "--cpus", "2"]
    r = CliRunner().invoke(app, ["churn", *args, "--ops", "3000", "--orders", "mix", "--gfp", "mix",
                                 "--trace-out", str(trace), "--json", str(cj)])
    assert r.exit_code == 0, r.output
    for mode in ("exact", "policy"):
        r = CliRunner().invoke(app, ["replay", str(trace), *args, "--mode", mode, "--json", str(rj)])
        assert r.exit_code == 0, r.output
        churn, rep = json.loads(cj.read_text()), json.loads(rj.read_text())
        assert rep["check"] == "ok" and rep["inconsistencies"] == {}
        assert rep["buddyinfo"] == churn["buddyinfo"] and rep["free_pages"] == churn["free_pages"]
