"""``memdesc replay``: a real kernel's kmem trace replayed on a modelled machine.

Registered on the main typer app by :func:`register` (called from :mod:`memdesc.cli`).
Prints the events by type, events per second, the inconsistencies found, the final
buddyinfo beside the real ``after.buddyinfo`` and ``after.kpageflags`` (kernel text
format lines with a diff line, as ``memdesc snapshot`` prints them), fragmentation
indices and the invariant check.  ``--json`` writes :meth:`ReplayResult.as_dict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from memdesc.cli.options import (
    DEFAULT_DESIGN,
    EXIT_CHECK,
    CheckpointAtOpt,
    CheckpointEveryOpt,
    CheckpointOpt,
    DesignOpt,
    JsonOpt,
    Mode,
    RadixNodesOpt,
    ResumeOpt,
    SaveOpt,
    _fail,
    _write_json,
    console,
    given_on_command_line,
    print_proc_views,
    value,
)
from memdesc.mm.page_alloc import design_spec
from memdesc.sim.mm_replay import mm_replay
from memdesc.sim.replay import replay, sample_path

PathArg = Annotated[Path | None, typer.Argument(
    help="A trace file (ftrace text, .zst/.gz), or a capture directory (trace.txt.zst + before.*/after.*). "
         "Default: the bundled real sample.")]


def _buddy_lines(final: dict) -> list[str]:
    lines = []
    for key, d in final.items():
        node, zone = key.split(":", 1)
        head = f"Node {node}, zone {zone:>8s} "
        lines.append(f"model       {head}" + "".join(f"{x:6d} " for x in d["model"])
                     + f"  {d['model_free_pages']} pages")
        for name, label in (("proc", "/proc       "), ("kpageflags", "kpageflags  ")):
            if d.get(name) is None:
                continue
            lines.append(f"{label}{head}" + "".join(f"{x:6d} " for x in d[name]) + f"  {d[f'{name}_free_pages']} pages")
            pct = d[f"{name}_free_pages_diff_pct"]
            lines.append("diff        " + " " * len(head)
                         + "".join(f"{x:+6d} " if x else "     0 " for x in d[f"{name}_diff"])
                         + (f"  {pct:+.3f} %" if pct is not None else ""))
    return lines


def _share(a: int, n: int) -> str:
    return f"{100.0 * a / n:.2f} %" if n else "-"


def print_shadow(sh: dict, divs: dict | None) -> None:
    """The shadow replay's decisions per class (and the first divergences of each)."""
    t = Table(title="shadow replay: the model's decision beside the kernel's, per class", title_justify="left")
    for col in ("class", "decisions", "agree", "agree %", "informed", "informed agree", "informed %"):
        t.add_column(col, justify="left" if col == "class" else "right")
    rows = list(sh["by_class"].items()) + [("all", {"decisions": sh["decisions"], "agree": sh["agree"],
                                                    "informed_decisions": sh["informed_decisions"],
                                                    "informed_agree": sh["informed_agree"]})]
    for name, c in rows:
        t.add_row(name, str(c["decisions"]), str(c["agree"]), _share(c["agree"], c["decisions"]),
                  str(c["informed_decisions"]), str(c["informed_agree"]),
                  _share(c["informed_agree"], c["informed_decisions"]))
    console.print(t)
    dt = sh["drain_trigger"]
    fb = sh["fallbacks"]
    console.print(f"drain trigger (count >= high after a free, not a class): {dt['agree']}/{dt['decisions']} agree "
                  f"({_share(dt['agree'], dt['decisions'])}), informed "
                  f"{_share(dt['informed_agree'], dt['informed_decisions'])}; fallbacks model claim/steal "
                  f"{fb['model']['claim']}/{fb['model']['steal']}, trace "
                  f"{fb['trace']['claim']}/{fb['trace']['steal']}; free decisions never resolved by the trace "
                  f"{sh['free_decisions_unresolved']}")
    if not divs:
        return
    for name, recs in divs.items():
        if recs:
            console.print(f"[bold]first divergences: {name}[/]")
        for k, r in enumerate(recs):
            console.print(divergence_text(k + 1, r), markup=False, highlight=False, soft_wrap=True)


def _h(v) -> str:
    return "-" if v is None or v == -1 else hex(v)


def divergence_text(k: int, r: dict) -> str:
    """One divergence record: the kernel's choice, the model's, and the model's state then."""
    what = f"{r['kernel_kind']}" + (f" {r['kernel_value']}" if r["kernel_value"] != -1 else "")
    mine = f"{r['model_kind']}" + (f" {r['model_value']}" if r["model_value"] != -1 else "")
    head = (f"  #{k} line {r['line']} cpu {r['cpu']}: kernel {_h(r['kernel_pfn'])} ({what}, zone {r['kernel_zone']}, "
            f"pageblock {r['kernel_pb_type']}, in the model: {r['kernel_pfn_state']}); model {_h(r['model_pfn'])} "
            f"({mine}, zone {r['model_zone']}, pageblock {r['model_pb_type']}); order {r['order']} "
            f"{r['migratetype'] or ''} {'informed' if r['informed'] else 'uninformed'}")
    state = (f"     list {r['list']} head {_h(r['list_head'])} tail {_h(r['list_tail'])}; pcp count {r['pcp_count']} "
             f"(unseen {r['pcp_unseen']}) high {r['pcp_high']} batch {r['pcp_batch']}; watermarks min/low/high "
             f"{r['wmark_min']}/{r['wmark_low']}/{r['wmark_high']}, free {r['zone_free']}")
    return head + "\n" + state


def print_typed(ty: dict) -> None:
    """The typed replay's figures: per memdesc type, allocations and live descriptors."""
    sep = "separately allocated" if ty["descriptors_separate"] else "overlaid on struct page"
    t = Table(title=f"typed allocations ({ty['design']}: {ty['struct_page_bytes']}-byte struct page, descriptors "
                    f"{sep})", title_justify="left")
    for c in ("type", "allocations", "frees", "live", "live pages", "descriptors live", "descriptor bytes"):
        t.add_column(c, justify="left" if c == "type" else "right")
    for name, row in ty["types"].items():
        t.add_row(name, str(row["alloc"]), str(row["free"]), str(row["live"]), str(row["live_pages"]),
                  str(row["descriptors_live"]), str(row["descriptor_bytes"]))
    console.print(t)
    slab = sum(ty["descriptor_slab_bytes"].values())
    console.print(f"two-part allocations (descriptor + pages) {ty['two_part_allocations']}, descriptor failures "
                  f"{ty['descriptor_failures']}, free-path allocations {ty['free_path_allocations']} "
                  f"(slab {ty['free_path_allocations_slab']}, design {ty['free_path_allocations_design']}); "
                  f"descriptor slab pages {slab} bytes; typing ended by split frees "
                  f"{ty.get('typed_allocations_split', 0)}")
    src = ty.get("sources", {})
    if src:
        console.print("type sources: " + "; ".join(f"{s} " + ", ".join(f"{k} {v}" for k, v in row.items())
                                                   for s, row in src.items()))


def _pct(f: float | None) -> str:
    return "-" if f is None else f"{100 * f:.1f} %"


def print_type_agreement(ta: dict) -> None:
    """The confusion matrix of typed replay: model type (rows) against after.kpageflags class."""
    frac = ta["fraction"]
    cols = sorted({c for row in ta["matrix"].values() for c in row})
    t = Table(title=f"type agreement with after.kpageflags: {ta['agree']} of {ta['pages']} pages "
                    f"({_pct(frac)}) -- pages allocated in the trace and still "
                    "allocated at its end; rows: the model's type, columns: kpageflags' class "
                    f"(without the pages the dump shows free: {_pct(ta['not_free_in_dump']['fraction'])})",
              title_justify="left")
    t.add_column("model \\ kpageflags")
    for c in cols:
        t.add_column(c, justify="right")
    for name, row in ta["matrix"].items():
        t.add_row(name, *[str(row.get(c, 0)) for c in cols])
    console.print(t)


def _kv(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['kernel'] if d['kernel'] is not None else '-'} / {d['model']}" + (
        f" ({d['diff_pct']:+.1f} %)" if d.get("diff_pct") is not None else "")


def print_mm(r: dict) -> None:
    """The mm replay: driver events, folios made, reclaim and compaction beside the kernel's,
    free lists beside after.buddyinfo, the type census beside after.kpageflags."""
    console.print(f"[bold]{r['capture']}[/]: mode [bold]mm[/], design [bold]{r['design']}[/], {r['cpus']} CPUs; "
                  f"snapshot folios adopted {r['adoption']['folios']} ({r['adoption']['pages']} pages)")
    t = Table(title="driver events (from the capture's folio-level events)", title_justify="left")
    t.add_column("event")
    t.add_column("count", justify="right")
    for k, v in r["events"].items():
        t.add_row(k, str(v))
    console.print(t)
    console.print(f"replay loop: {r['seconds']:.3f} s = [bold]{r['events_per_second'] / 1e6:.2f} M events/s[/] "
                  f"(load {r['load_seconds']:.1f} s); applied: "
                  + ", ".join(f"{k} {v}" for k, v in r["applied"].items()))
    console.print("anomalies (not attributed, counted): " + ", ".join(f"{k} {v}" for k, v in r["anomalies"].items()))
    t = Table(title="folios made (order: count)", title_justify="left")
    t.add_column("type")
    t.add_column("per order")
    for k, v in r["folios_made"].items():
        t.add_row(k, ", ".join(f"{o}: {c}" for o, c in v.items()) or "-")
    console.print(t)
    t = Table(title="reclaim and compaction: kernel / model", title_justify="left")
    t.add_column("figure")
    t.add_column("kernel / model", justify="right")
    for k, v in r["reclaim"].items():
        t.add_row(f"reclaim {k}", _kv(v))
    c = r["compaction"]
    for k in ("compact_memory_runs", "compact_stall", "pages_migrated", "isolate_freepages"):
        t.add_row(f"compaction {k}", _kv(c[k]))
    console.print(t)
    if not c["available"]:
        console.print(f"[yellow]compaction not run:[/] {c['note']}")
    t = Table(title="pages by kind at the end: after.kpageflags / model", title_justify="left")
    t.add_column("kind")
    t.add_column("kernel / model", justify="right")
    for k, v in r["census"].items():
        t.add_row(k, _kv(v))
    console.print(t)
    if r["final_vs_real"]:
        console.print("[bold]final buddyinfo: model beside after.buddyinfo and after.kpageflags[/]")
        console.print("\n".join(_buddy_lines(r["final_vs_real"])), markup=False, highlight=False, soft_wrap=True)
    console.print(f"check: [bold]{r['check']}[/]")


def register(app: typer.Typer) -> None:
    """Add the ``replay`` command to ``app``."""

    @app.command("replay")
    def replay_cmd(
        ctx: typer.Context,
        path: PathArg = None,
        sample: Annotated[bool, typer.Option("--sample", help="Replay the bundled real sample (anon "
                                                              "capture).")] = False,
        mode: Annotated[Mode, typer.Option("--mode", help="exact: every event at its real pfn; policy: the "
                                                           "trace as demands served by --design; shadow: "
                                                           "exact, with the model's own decision recorded "
                                                           "before each event; mm: the capture's folio-level "
                                                           "events drive the page cache, anon, LRU, reclaim "
                                                           "and compaction models (JSON key mm).")] = Mode.exact,
        design: DesignOpt = DEFAULT_DESIGN,
        mem: Annotated[str | None, typer.Option("--mem", help="Memory of the empty machine a bare trace starts "
                                                              "from (default: covers the trace's pfns).")] = None,
        cpus: Annotated[int | None, typer.Option("--cpus", min=1, help="Modelled CPUs (default: the capture's, or "
                                                                       "the trace's).")] = None,
        json_path: JsonOpt = None,
        proc_out: Annotated[Path | None, typer.Option("--proc-out", help="Write the final /proc views "
                                                                        "(buddyinfo, pagetypeinfo, ...) here.")] = None,
        every: Annotated[int, typer.Option("--every", min=0, help="Sample buddyinfo and free pages per zone every N "
                                                           "events (Parquet, see --samples-out).")] = 0,
        samples_out: Annotated[Path, typer.Option("--samples-out", help="Parquet file of the --every "
                                                                       "samples.")] = Path("replay-samples.parquet"),
        strict: Annotated[bool, typer.Option("--strict", help="Malformed lines are errors; exit 1 if the replay "
                                                              "finds any inconsistency.")] = False,
        radix_nodes: RadixNodesOpt = None,
        divergences: Annotated[int, typer.Option("--divergences", help="Shadow mode: show the first N "
                                                                       "disagreements of each decision class "
                                                                       "with the model's state.")] = 0,
        typed: Annotated[bool, typer.Option("--typed/--untyped", help="Typed replay (exact and policy): every "
                                                                      "allocation a memdesc type, its descriptor "
                                                                      "allocated and freed on the design, the "
                                                                      "types against after.kpageflags.")] = True,
        checkpoint: CheckpointOpt = None,
        checkpoint_at: CheckpointAtOpt = 0,
        checkpoint_every: CheckpointEveryOpt = 0,
        resume: ResumeOpt = None,
        save: SaveOpt = None,
    ) -> None:
        """Replay a real kmem trace: exactly (real pfns) or as a demand stream for a design.

        --checkpoint-at/--checkpoint-every count trace events."""
        if resume is not None:
            bad = given_on_command_line(ctx, "mode", "design", "mem", "cpus", "every", "radix_nodes", "sample",
                                        "divergences")
            if bad:
                _fail(f"--resume continues the saved replay with its own mode, design and machine; drop "
                      f"{', '.join(bad)}")
        design = design_spec(design, radix_nodes=value(radix_nodes))
        mode = value(mode)
        if mode == "mm":
            bad = given_on_command_line(ctx, "mem", "every", "divergences", "checkpoint", "checkpoint_at",
                                        "checkpoint_every", "resume", "save", "proc_out", "typed", "strict")
            if bad:
                _fail(f"--mode mm takes a capture, --design, --cpus and --json; drop {', '.join(bad)}")
            if sample and path is not None:
                _fail("give either a PATH or --sample, not both")
            src = sample_path() if (sample or path is None) else path
            with console.status(f"mm replay of {src} on {design} (first use compiles)"):
                r = mm_replay(src, design=design, cpus=cpus)
            print_mm(r)
            _write_json(json_path, {"mode": "mm", "source": str(src), "mm": r}, "replay_mm")
            if r["check"] != "ok":
                raise typer.Exit(EXIT_CHECK)
            return

        if sample and path is not None:
            _fail("give either a PATH or --sample, not both")
        src = sample_path() if (sample or path is None) else path
        if resume is not None and path is None:
            src = None  # the checkpoint's trace
        with Progress(TextColumn("[bold]replay[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as prog:
            task = prog.add_task(f"reading the trace, building the {design} machine (first use compiles)",
                                 total=None, start=False)

            def on_start(total: int) -> None:
                prog.update(task, total=total, description=f"{mode} ({design})")
                prog.start_task(task)

            r = replay(src, mode=mode, design=design, mem=mem, cpus=cpus, every=every, strict=strict,
                       divergences=divergences, typed=typed, progress=lambda n: prog.advance(task, n),
                       on_start=on_start,
                       checkpoint=checkpoint, checkpoint_at=checkpoint_at, checkpoint_every=checkpoint_every,
                       resume=resume)
        m = r.machine
        if r.resumed_at:
            console.print(f"[dim]resumed from {resume} at event {r.resumed_at}[/]")
        console.print(f"[bold]{r.source}[/] ({r.capture and 'capture, started from before.*' or 'bare trace'}): "
                      f"{r.events_replayed} events, mode [bold]{r.mode}[/], design [bold]{m.design.name}[/], "
                      f"{m.nr_cpus} CPUs")
        t = Table(title="events", title_justify="left")
        t.add_column("tracepoint")
        t.add_column("trace", justify="right")
        if r.model_events is not None:
            t.add_column("model (policy)", justify="right")
        for name, n in r.events.items():
            row = [name, str(n)]
            if r.model_events is not None:
                row.append(str(r.model_events.get(name, 0)))
            t.add_row(*row)
        console.print(t)
        console.print(f"replay loop: {r.seconds:.3f} s = [bold]{r.events_per_second / 1e6:.2f} M events/s[/] "
                      f"(read {r.read_seconds:.2f} s, machine and columns {r.load_seconds:.2f} s); "
                      f"malformed lines {r.malformed_lines}, lost events {r.lost_events}")
        if r.policy:
            p = r.policy
            console.print(f"policy: {p['allocations']} allocations ({p['real_failures']} failed in the trace, "
                          f"{p['model_failures']} failed in the model), {p['frees']} frees "
                          f"({p['frees_of_trace_allocations']} of trace allocations, "
                          f"{p['frees_of_pre_trace_allocations']} of pre-trace ones, {p['split_frees']} split, "
                          f"{p['frees_of_unknown_pages']} of unknown pages); stale pre-trace allocations released "
                          f"{p['stale_pre_trace_released']}; replay map {r.replay_map_bytes} bytes")
        if r.shadow is not None:
            print_shadow(r.shadow, r.divergences)
        if r.typed is not None:
            print_typed(r.typed)
        if r.type_agreement is not None:
            print_type_agreement(r.type_agreement)
        notes = {k: v for k, v in r.notes.items() if v}
        if notes:
            console.print("notes: " + ", ".join(f"{k} {v}" for k, v in notes.items()))
        if r.inconsistencies:
            what = "event: state the model held the pages in" if r.mode != "policy" else "policy replay"
            it = Table(title=f"inconsistencies ({what})", title_justify="left")
            it.add_column("kind")
            it.add_column("count", justify="right")
            for k, v in sorted(r.inconsistencies.items(), key=lambda kv: -kv[1]):
                it.add_row(k, str(v))
            console.print(it)
        else:
            console.print("inconsistencies: none")
        if r.final_vs_real:
            console.print("[bold]final buddyinfo: model beside after.buddyinfo and after.kpageflags[/]")
            console.print("\n".join(_buddy_lines(r.final_vs_real)), markup=False, highlight=False, soft_wrap=True)
            pcp = r.pcp_pages
            if "after_zoneinfo" in pcp:
                console.print(f"pages on per-CPU lists: model {pcp['model']}, after.zoneinfo {pcp['after_zoneinfo']}")
            print_proc_views(m, ("unusable_index", "extfrag_index"))
        else:
            print_proc_views(m)
        if proc_out is not None:
            try:
                proc_out.mkdir(parents=True, exist_ok=True)
                for name, text in m.proc_files().items():
                    (proc_out / name).write_text(text)
            except OSError as e:
                _fail(f"cannot write {proc_out}: {e.strerror}")
            console.print(f"[dim]/proc views written to {proc_out}[/]")
        if every and r.samples is not None:
            try:
                samples_out.parent.mkdir(parents=True, exist_ok=True)
                r.samples.write_parquet(samples_out)
            except OSError as e:
                _fail(f"cannot write {samples_out}: {e.strerror}")
            console.print(f"[dim]{r.samples.height} samples written to {samples_out}[/]")
        console.print(f"check: [bold]{r.check}[/]")
        if save is not None:
            m.save(save)
            console.print(f"[dim]machine saved to {save}[/]")
        _write_json(json_path, r.as_dict(), "replay")
        if r.check != "ok":
            raise typer.Exit(EXIT_CHECK)
        if strict and r.inconsistencies:
            console.print(f"[bold red]--strict:[/] {sum(r.inconsistencies.values())} inconsistencies")
            raise typer.Exit(EXIT_CHECK)
