"""``memdesc readahead``: the readahead model held against a real capture, event by event.

Registered on the main typer app by :func:`register`.  Prints the agreement per event
kind (the informed run: the page cache follows the capture; beside it the raw run: the
model's own folios), the agreement of every run, the classes of divergence and the first
diverging requests with the kernel's events beside the model's (sync/async events show the
``file_ra_state`` each side found).  ``--json`` writes
:meth:`memdesc.sim.readahead.ReadaheadValidation.summary` plus the divergences shown.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memdesc.cli.options import JsonOpt, _fail, _write_json, console, value
from memdesc.errors import FormatError
from memdesc.sim.readahead import KIND_NAMES, MODES, sample_path, validate_readahead

#: the validation runs (``--show``)
Run = Enum("Run", {m: m for m in MODES}, type=str)
Run.__doc__ = "Readahead validation runs (``--show``)."

CaptureArg = Annotated[Path | None, typer.Argument(
    help="A capture directory (trace.txt.zst and formats/) or a trace file. Default: the bundled excerpt of the "
         "files capture.")]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:.3f} %"


def register(app: typer.Typer) -> None:
    """Add the ``readahead`` command to ``app``."""

    @app.command("readahead")
    def readahead_cmd(
        capture: CaptureArg = None,
        json_path: JsonOpt = None,
        divergences: Annotated[int, typer.Option("--divergences", help="Show the first N diverging requests.")] = 5,
        runs: Annotated[str, typer.Option("--runs", help="Comma-separated runs: informed (page cache follows the "
                                                        "capture), raw (the model's own folios), direct (no "
                                                        "pre-capture pages inferred from readahead windows), "
                                                        "plain_vma (no VMA inferred for faults).")]
        = ",".join(MODES),
        show: Annotated[Run, typer.Option("--show", help="The run whose diverging requests are shown.")]
        = "informed",
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Parse the trace again (ignore the Parquet "
                                                                  "cache).")] = False,
    ) -> None:
        """Validate the readahead model (mm/readahead.c, 6.18) against a capture's folio-level events."""
        show = value(show)
        modes = tuple(m.strip() for m in runs.split(",") if m.strip())
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            _fail(f"unknown run(s) {', '.join(bad) or '(none)'}: choose from {', '.join(MODES)}")
        if "informed" not in modes:
            modes = ("informed",) + modes
        if show not in modes:
            _fail(f"--show {show}: not one of the runs ({', '.join(modes)})")
        if divergences < 0:
            _fail("--divergences must be >= 0")
        path = capture if capture is not None else sample_path()
        if not path.exists():
            _fail(f"{path}: no such file or directory")
        with console.status(f"validating readahead on {path} (first use compiles the kernels)..."):
            try:
                v = validate_readahead(path, modes=modes, divergences=max(divergences, 1), cache=not no_cache)
            except FormatError as e:
                _fail(str(e))
        s = v.summary()
        inp = s["inputs"]
        console.print(f"[bold]{v.source}[/]: {inp['lines']:,} lines; requests: "
                      + ", ".join(f"{n.removeprefix('mm_filemap_')} {c:,}" for n, c in inp["requests"].items())
                      + f"; {inp['files']:,} open files of {inp['mappings']:,} inodes")
        t = Table(title="readahead agreement per event kind (exact: index, order, size, async_size)",
                  title_justify="left")
        for col in ("event", "kernel", "model", "exact", "events", "informed", "raw"):
            t.add_column(col, justify="left" if col == "event" else "right")
        inf = s["readahead_agreement"]
        rawk = s.get("readahead_agreement_raw", {}).get("by_kind", {})
        for name in KIND_NAMES:
            b = inf["by_kind"][name]
            r = rawk.get(name)
            short = name.removeprefix("page_cache_").removeprefix("mm_filemap_")
            t.add_row(short, f"{b['kernel']:,}", f"{b['model']:,}", f"{b['exact']:,}", f"{b['events']:,}",
                      _pct(b["fraction"]), _pct(r["fraction"]) if r else "-")
        raw_all = _pct(s["readahead_agreement_raw"]["fraction"]) if "readahead_agreement_raw" in s else "-"
        t.add_row("[bold]all[/]", "", "", f"{inf['exact']:,}", f"{inf['events']:,}",
                  f"[bold]{_pct(inf['fraction'])}[/]", raw_all)
        console.print(t)
        for mode in modes:
            a = s[f"readahead_agreement_{mode}"]
            console.print(f"  {mode:10s} {a['exact']:>9,} / {a['events']:<9,} = {_pct(a['fraction'])}   "
                          f"({a['requests_diverging']:,} of {a['requests']:,} requests diverge)")
        seeds = inp["seeded_by_source"]
        console.print(f"[dim]inputs: {inp['seeded_folios']:,} folios cached before the capture (deleted "
                      f"{seeds['deleted']:,}, found by a request {seeds['found_by_request']:,}, skipped by kernel "
                      f"readahead {seeds['skipped_by_readahead']:,}); {inp['file_generations']:,} file generations; "
                      f"{inp['exec_vma_faults']:,} faults in exec VMAs; {inp['kernel_adds_without_request']:,} "
                      f"adds without a read request (writes) applied as state[/]")
        cls = s[f"readahead_agreement_{show}"]["divergence_classes"]
        if cls:
            ct = Table(title=f"divergence classes ({show} run; first differing event of each request)",
                       title_justify="left")
            ct.add_column("requests", justify="right")
            ct.add_column("class")
            for name, c in list(cls.items())[:12]:
                ct.add_row(f"{c:,}", name)
            console.print(ct)
        shown = v.divergences(show, divergences)
        for i, d in enumerate(shown, 1):
            rq = d["request"]
            rng = f"pages {rq['index']}..{rq['last_index']}" if "last_index" in rq else f"page {rq['index']}"
            dt = Table(title=f"{show} #{i} line {rq['line']}: {rq['kind'].removeprefix('mm_filemap_')} pid {rq['pid']} "
                             f"ino {rq['ino']:#x} {rng}", title_justify="left", show_lines=False)
            dt.add_column("kernel")
            dt.add_column("model")
            k, m = d["kernel"], d["model"]
            for j in range(max(len(k), len(m))):
                dt.add_row(k[j] if j < len(k) else "", m[j] if j < len(m) else "")
            console.print(dt)
        out = dict(s)
        out["divergences"] = shown
        _write_json(json_path, out, "readahead")
