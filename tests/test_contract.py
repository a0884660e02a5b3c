"""The design contract's mechanics (base.register_design, layouts, prefetch) and the bugs of
issue 9 part 6, each with a test that fails without its fix."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from memdesc._numba import JIT_DISABLED
from memdesc.errors import ConfigError
from memdesc.mm import memmap
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import DESIGNS, LinuxDesign, core, dispatch, register_design
from memdesc.mm.page_alloc.vmem import FAULT_SEED
from memdesc.sim.churn import Churn

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ bugs of issue 9 part 6


@pytest.mark.parametrize("design", ["linux", "radix"])
def test_fail_descriptor_alloc_refused_by_designs_without_descriptors(design):
    """It was silently ignored on linux and radix.  The machine refuses it on linux; radix takes it
    for the descriptor caches of typed memory (mm/folio.py's failslab) -- but churn, which types
    nothing, refuses it on both."""
    if design == "linux":
        with pytest.raises(ConfigError, match="the linux design allocates no descriptors.*applies to: vmem"):
            Machine.create("64M", design=design, fail_descriptor_alloc=0.1)
    else:
        assert Machine.create("64M", design=design, fail_descriptor_alloc=0.1).check() == "ok"
    p = subprocess.run([sys.executable, "-c", "from memdesc.cli import main; main()", "churn", "--design", design,
                        "--mem", "64M", "--ops", "10", "--fail-descriptor-alloc", "0.1"],
                       capture_output=True, text=True, timeout=600, check=False)
    msg = " ".join(p.stderr.split())  # rich wraps long lines
    # the CLI names the flag and the designs it applies to (cli.options.design_only)
    assert p.returncode == 2 and f"applies to the vmem design only, not '{design}'" in msg and "Traceback" not in msg


def test_seed_reseeds_fault_injection():
    """seed_faults was never called: --seed did not reseed the descriptor fault injection."""
    rng = []
    for seed in (1, 2, 3, 3):
        m = Machine.create("64M", design="vmem", fail_descriptor_alloc=0.05)
        assert int(m.design.state.rng[0]) == FAULT_SEED
        Churn(m, orders="mix", gfp="mix", seed=seed)
        rng.append(int(m.design.state.rng[0]))
    # the default seed (1) gives the generator's default state: earlier seeded figures stand
    assert rng[0] == FAULT_SEED and len({rng[0], rng[1], rng[2]}) == 3 and rng[2] == rng[3]
    runs = []
    for seed in (1, 2):
        m = Machine.create("64M", design="vmem", fail_descriptor_alloc=0.05)
        Churn(m, orders="mix", gfp="mix", seed=seed).run(3000)
        runs.append(m.design.descriptor_stats()["injected_failures"])
    assert runs[0] > 0 and runs[1] > 0


def test_vmem_free_block_views_do_not_allocate_per_free_page():
    """vmem's nr_free / free_blocks allocated (free pages + 1) x 32 bytes per call."""
    m = Machine.create("1G", design="vmem")
    free_pages = int(m.design.zs.z_free.sum())
    assert free_pages > 200_000
    assert m.design.nr_free.shape[0] == len(m.zones) and m.design.free_blocks().shape[1] == 4  # compile
    tracemalloc.start()
    try:
        nr = m.design.nr_free
        _, peak_nr = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        blocks = m.design.free_blocks()
        _, peak_blocks = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_nr < 16 << 10, peak_nr  # a few (zones x migratetypes x orders) arrays
    assert peak_blocks < 2 * blocks.nbytes + (16 << 10), (peak_blocks, blocks.nbytes)
    assert int((nr * (1 << np.arange(nr.shape[1]))).sum()) == free_pages


def _imported_top_level_modules() -> set[str]:
    names = set()
    for p in (REPO / "src").rglob("*.py"):
        for m in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", p.read_text(), re.M):
            names.add(m.group(1))
    return names


#: declared dependencies kept without an import, and why
UNUSED_OK = {"matplotlib": "plots of the report helper (issue 9: keep it)"}


def test_every_declared_dependency_is_used():
    """pyarrow was declared but nothing imported it (polars writes and reads Parquet itself)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower().replace("-", "_") for d in deps}
    used = _imported_top_level_modules()
    unused = sorted(n for n in names if n not in used and n not in UNUSED_OK)
    assert not unused, f"declared but never imported: {unused}"


def test_parquet_without_pyarrow(tmp_path):
    """polars writes and reads Parquet (what the trace reader's cache does) with pyarrow unavailable."""
    script = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "import polars as pl\n"
        f"p = {str(tmp_path / 'x.parquet')!r}\n"
        "pl.DataFrame({'a': [1, 2, 3]}).write_parquet(p)\n"
        "assert pl.read_parquet(p)['a'].to_list() == [1, 2, 3]\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


# ------------------------------------------------------------------ register_design


def _register_expecting(cls, impls, match):
    try:
        with pytest.raises(ConfigError, match=match):
            register_design(cls, impls)
    finally:
        DESIGNS.pop(cls.name, None)
        assert "linux" in DESIGNS


def test_register_design_checks_the_contract():
    table = {n: f for n, f in dispatch._REGISTRY[LinuxDesign.state_cls].items() if n in dispatch.BUDDY_PRIMITIVES}

    class Wrong(LinuxDesign):
        name = "wrong"
        page_layout = "memdesc"  # a 1-word layout for an 8-word design

    _register_expecting(Wrong, table, "has 1 words, the design 8")

    class Partial(LinuxDesign):
        name = "partial"

    _register_expecting(Partial, {"list_add": table["list_add"]}, "part of the buddy layer")

    class NoInterface(LinuxDesign):
        name = "nointerface"

    _register_expecting(NoInterface, table, "lacks primitives: pa_alloc, pa_free, pa_take, pa_drain")

    class NoTyped(LinuxDesign):
        name = "notyped"

    full = {n: f for n, f in dispatch._REGISTRY[LinuxDesign.state_cls].items()
            if not n.startswith("__") and n not in ("pa_set_memdesc", "pa_clear_memdesc", "pa_page_memdesc")}
    _register_expecting(NoTyped, full, "lacks primitives: pa_set_memdesc, pa_clear_memdesc, pa_page_memdesc$")

    class Taken(LinuxDesign):
        name = "vmem"

    with pytest.raises(ConfigError, match="taken"):
        register_design(Taken, table)
    assert DESIGNS["vmem"].__name__ == "VmemDesign"


def test_layouts_are_told_apart_by_name_not_word_count():
    """memmap.LAYOUTS was keyed by word count: a second one-word design was decoded as vmem."""
    other = memmap.register_layout(memmap.PageLayout(
        "test_one_word", 1, "a second one-word layout", (memmap.Field("bits", 0, 0, 64, "raw"),),
        lambda w, out: out.update(kind="other"), lambda pfn, w, d: [f"page: other pfn:{pfn:#x}"]))
    try:
        w = np.array([0x55], np.uint64)
        assert memmap.describe_page(w, "test_one_word")["kind"] == "other"
        assert memmap.describe_page(w, "memdesc")["type"] == "free"
        assert memmap.dump_page(7, w, other) == "page: other pfn:0x7"
        with pytest.raises(ValueError, match="has 8 words, got 1"):
            memmap.describe_page(w, "struct_page")
    finally:
        memmap.LAYOUTS.pop("test_one_word")
    for name, cls in DESIGNS.items():
        m = Machine.create("64M", design=name)
        assert memmap.describe_page(m.design.page_words(0x1000), cls.page_layout)["layout"] == cls.page_layout


@pytest.mark.skipif(JIT_DISABLED, reason="the prefetch is a numba intrinsic")
def test_prefetch_target_is_declared():
    """_prefetch found the array by field name ("memmap"/"memdesc"): now Design.memmap_field."""
    from numba.core.errors import TypingError

    from memdesc import _prefetch

    class Undeclared:
        field_dict = {"pages": None}

    with pytest.raises(TypingError, match="declares no memmap_field"):
        _prefetch._prefetch_page_impl(Undeclared(), None)
    for cls in DESIGNS.values():
        nt = cls.state_cls._numba_type_class
        assert nt.memmap_field == cls.memmap_field


def test_zone_layer_defaults_and_design_primitives():
    """A list buddy gets core's zone layer; vmem registers its own and no buddy primitive."""
    lin = dispatch._REGISTRY[DESIGNS["linux"].state_cls]
    vm = dispatch._REGISTRY[DESIGNS["vmem"].state_cls]
    for name in dispatch.ZONE_PRIMITIVES:
        assert name in lin and name in vm
        if name in core.BUDDY_DEFAULTS:
            assert lin[name] is core.BUDDY_DEFAULTS[name]
            assert vm[name] is not core.BUDDY_DEFAULTS[name]
    assert not any(n in vm for n in dispatch.BUDDY_PRIMITIVES)


# ------------------------------------------------------------------ checkpoints on the command line


def _same_machine(a: Path, b: Path) -> None:
    ma, mb = Machine.load(a), Machine.load(b)
    sa, sb = ma.design.state_arrays(), mb.design.state_arrays()
    assert [k for k in sa if not np.array_equal(sa[k], sb[k])] == []


def test_churn_cli_checkpoint_and_resume(tmp_path):
    from typer.testing import CliRunner

    from memdesc.cli import app

    ck, end1, end2 = tmp_path / "c.ckpt", tmp_path / "e1.npz", tmp_path / "e2.npz"
    run = CliRunner().invoke(app, ["churn", "--design", "vmem", "--mem", "64M", "--ops", "6000", "--orders", "mix",
                                   "--gfp", "mix", "--seed", "4", "--checkpoint", str(ck), "--checkpoint-at", "2500",
                                   "--save", str(end1)])
    assert run.exit_code == 0, run.output
    res = CliRunner().invoke(app, ["churn", "--resume", str(ck), "--save", str(end2)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert f"resumed from {ck} after 2500 of 6000 pairs" in out
    _same_machine(end1, end2)
    bad = CliRunner().invoke(app, ["churn", "--resume", str(ck), "--design", "linux", "--seed", "1"])
    assert bad.exit_code == 2 and "drop --design, --seed" in " ".join(bad.output.split())
    bad = CliRunner().invoke(app, ["churn", "--mem", "64M", "--checkpoint", str(ck)])
    assert bad.exit_code != 0


def test_replay_cli_checkpoint_every_and_resume(tmp_path):
    from typer.testing import CliRunner

    from memdesc.cli import app
    from test_replay import policy_rows, write_trace  # tests/ is on sys.path (pytest rootdir)

    trace = write_trace(policy_rows() * 3, tmp_path / "t.txt")
    ck, end1, end2 = tmp_path / "r.ckpt", tmp_path / "e1.npz", tmp_path / "e2.npz"
    args = ["replay", str(trace), "--mode", "policy", "--design", "radix", "--mem", "64M", "--cpus", "2"]
    run = CliRunner().invoke(app, [*args, "--checkpoint", str(ck), "--checkpoint-every", "5", "--save", str(end1)])
    assert run.exit_code == 0, run.output
    res = CliRunner().invoke(app, ["replay", "--resume", str(ck), "--save", str(end2)])
    assert res.exit_code == 0, res.output
    n = 3 * len(policy_rows())
    assert f"resumed from {ck} at event {(n - 1) // 5 * 5}" in " ".join(res.output.split())
    _same_machine(end1, end2)
