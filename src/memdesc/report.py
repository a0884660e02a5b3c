"""The ``memdesc compare`` report: one self-contained HTML file with plots.

Theory
------
A report people read, offline: one HTML file with inline CSS and inline SVG figures drawn
by matplotlib (the memory maps are raster images inside their SVG, as data URIs), no
script, no web font, no network request — it opens from a mail attachment.  Per capture:
the side-by-side table, metadata bytes per page, fragmentation over the run (unusable
free space index and fragmentation index at orders 4 and 9 of the largest zone), the free
blocks per order at the end, replay speed, and a memory map per design.  Under every
figure stands the command that reproduces it.  ``tests/test_report_browser.py`` opens
the file in headless Chromium, checks every figure has a size and the console is clean,
and keeps a screenshot (docs/compare.png).

Layer: above :mod:`memdesc.sim` (it draws a :class:`memdesc.sim.compare.Comparison`),
below :mod:`memdesc.cli`.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from memdesc.sim.compare import MAP_STATES, ORDERS, Comparison, command_line  # noqa: E402
from memdesc.sim.replay import sample_path  # noqa: E402
from memdesc.units import format_size  # noqa: E402

#: one colour per design, in the order of the comparison's designs (Okabe-Ito, colour-blind safe)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
#: memory-map colours, in MAP_STATES order
MAP_COLOURS = ("#ffffff", "#7f7f7f", "#b7e4c7", "#f4d35e", "#d62828", "#3a86ff", "#8338ec", "#adb5bd")

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:21px;margin:36px 0 8px;border-bottom:2px solid #ddd}
h3{font-size:17px;margin:24px 0 6px}
.meta{color:#555;font-size:13px}
table.cmp{border-collapse:collapse;font:13px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;background:#fff;margin:8px 0}
table.cmp th,table.cmp td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right;white-space:nowrap}
table.cmp th:first-child,table.cmp td:first-child{text-align:left}
table.cmp thead th{background:#f0f0f0}
td.bad{color:#b00020;font-weight:600} td.good{color:#1b7f3b}
figure{margin:16px 0;background:#fff;border:1px solid #e3e3e3;padding:10px}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#333;margin-top:6px}
pre.cmd{background:#272822;color:#f8f8f2;padding:6px 10px;font-size:12px;overflow-x:auto;margin:6px 0 0}
.maps{display:grid;grid-template-columns:1fr;gap:6px}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border:1px solid #999}
.howto li{margin:4px 0}
"""


def _version() -> str:
    try:
        return version("memdesc")
    except PackageNotFoundError:
        return "dev"


def _svg(fig) -> str:
    """A figure as inline SVG markup (no XML prolog, no fixed pixel size)."""
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    s = buf.getvalue()
    s = s[s.index("<svg"):]
    return re.sub(r"<!--.*?-->", "", s, flags=re.S)


def _figure(svg: str, caption: str, command: str) -> str:
    return (f"<figure>{svg}<figcaption>{caption}</figcaption>"
            f'<pre class="cmd">{html.escape(command)}</pre></figure>')


def _colours(designs: list[str]) -> dict[str, str]:
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(designs)}


def _fmt(v, kind: str = "") -> str:
    if v is None:
        return "-"
    if kind == "bytes":
        return format_size(int(v))
    if kind == "rate":
        return f"{v / 1e6:.2f} M"
    if kind == "index":
        return f"{v / 1000:.3f}"
    if kind == "pct":
        return f"{v:+.3f} %"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table_rows(cap: dict) -> list[tuple[str, list[str], list[bool | None]]]:
    """The side-by-side rows of one capture: (label, cells per design, good/bad flags)."""
    designs = cap["designs"]
    names = list(designs)
    rows = []

    def add(label, get, kind="", judge=None):
        vals = [get(designs[d]) for d in names]
        rows.append((label, [_fmt(v, kind) for v in vals], [judge(v) if judge and v is not None else None
                                                             for v in vals]))

    zero_good = lambda v: v == 0  # noqa: E731
    add("struct page (B)", lambda r: r["struct_page_bytes"])
    add("metadata B/page", lambda r: r["metadata_bytes_per_page"])
    add("metadata total", lambda r: r["metadata_bytes"]["total"], "bytes")
    add("  memmap", lambda r: r["metadata_bytes"]["memmap"], "bytes")
    add("  free lists", lambda r: r["metadata_bytes"]["freelists"], "bytes")
    add("  nodes/descriptors", lambda r: r["metadata_bytes"]["descriptors"], "bytes")
    by_type = [r.get("metadata_bytes_by_type") for r in designs.values()]
    if any(by_type):
        types = list(dict.fromkeys(t for b in by_type if b for t in b["types"]))
        add("metadata by type (trace allocations: struct pages + descriptors)", lambda r: "")
        for t in types:
            add(f"  {t}", lambda r, t=t: ((r.get("metadata_bytes_by_type") or {}).get("types", {}).get(t) or {})
                .get("total_bytes"), "bytes")
        add("  descriptor slab pages", lambda r: (r.get("metadata_bytes_by_type") or {}).get("descriptor_slab_bytes"),
            "bytes")
    add("free-path allocs", lambda r: r["free_path_allocations"], judge=zero_good)
    add("free stalls", lambda r: r["free_stalls"], judge=zero_good)
    add("failed for metadata", lambda r: r["alloc_failed_for_metadata"], judge=zero_good)
    add("allocs failed", lambda r: r["ops"]["alloc_failed"])
    for k, label in (("unusable_index", "unusable"), ("extfrag_index", "extfrag")):
        for o in ORDERS:
            add(f"{label} o{o} end", lambda r, k=k, o=o: (r["fragmentation"][k][str(o)] or [None])[-1], "index")
    add("policy events/s", lambda r: r["policy"]["events_per_second"], "rate")
    add("exact events/s", lambda r: r["exact"]["events_per_second"] if r["exact"] else None, "rate")
    add("exact vs /proc free", lambda r: (_main_diff(r) if r["exact"] else None), "pct")
    if any(r["highmem"] for r in designs.values()):
        add("HighMem stalled frees", lambda r: r["highmem"]["stalled_frees"] if r["highmem"] else None,
            judge=zero_good)
        add("HighMem meta failures",
            lambda r: r["highmem"]["late_user_failed_for_metadata"] if r["highmem"] else None)
    add("check", lambda r: r["check"], judge=lambda v: v == "ok")
    return rows


def _main_diff(r: dict) -> float | None:
    d = r["exact"]["free_pages_diff_pct"]
    z = r["fragmentation"]["zone"]
    return d.get(z) if z in d else next((v for v in d.values() if v is not None), None)


def _html_table(cap: dict) -> str:
    names = list(cap["designs"])
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(d)}</th>" for d in names) + "</tr>"
    body = []
    for label, cells, flags in table_rows(cap):
        tds = "".join(f'<td class="{"good" if f else "bad" if f is False else ""}">{html.escape(c)}</td>'
                      for c, f in zip(cells, flags, strict=True))
        indent = ' style="padding-left:22px"' if label.startswith("  ") else ""
        body.append(f"<tr><td{indent}>{html.escape(label.strip())}</td>{tds}</tr>")
    return f'<table class="cmp"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


# ---------------------------------------------------------------------- figures


def fig_metadata(cap: dict, colours: dict[str, str]):
    names = list(cap["designs"])
    parts = (("memmap", "memmap (struct page / memdesc)"), ("freelists", "free lists"),
             ("descriptors", "tree nodes / descriptors"))
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.45 * len(names)))
    left = np.zeros(len(names))
    pages = max(1, cap["present_pages"])
    shades = ("#4c72b0", "#dd8452", "#55a868")
    for (key, label), shade in zip(parts, shades, strict=True):
        vals = np.array([cap["designs"][d]["metadata_bytes"][key] / pages for d in names])
        ax.barh(names, vals, left=left, label=label, color=shade)
        left += vals
    for i, d in enumerate(names):
        ax.text(left[i], i, f" {cap['designs'][d]['metadata_bytes_per_page']:.1f} B", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("metadata bytes per present page")
    ax.set_xlim(0, left.max() * 1.18 if left.max() > 0 else 1)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def fig_fragmentation(cap: dict, colours: dict[str, str]):
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    zone = next(iter(cap["designs"].values()))["fragmentation"]["zone"]
    for col, o in enumerate(ORDERS):
        for row, (k, label) in enumerate((("unusable_index", "unusable free space index"),
                                          ("extfrag_index", "fragmentation index"))):
            ax = axes[row, col]
            for d, r in cap["designs"].items():
                f = r["fragmentation"]
                y = np.array(f[k][str(o)], float) / 1000.0
                ax.plot(np.array(f["event_index"]) / 1e6, y, label=d, color=colours[d], lw=1.3)
            ax.set_title(f"{label}, order {o}", fontsize=10)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("trace events (millions)")
    axes[1, 0].set_ylabel("-1: would succeed; toward 1: fragmentation", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"zone {zone}, sampled over the policy replay", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=min(len(labels), 6),
               fontsize=8, frameon=False)
    return fig


def fig_free_blocks(cap: dict, colours: dict[str, str]):
    names = list(cap["designs"])
    fig, ax = plt.subplots(figsize=(10, 3.6))
    n = len(names)
    w = 0.8 / n
    orders = np.arange(len(next(iter(cap["designs"].values()))["free_blocks"]["pages_by_order"]))
    for i, d in enumerate(names):
        pages = np.array(cap["designs"][d]["free_blocks"]["pages_by_order"], float)
        mib = pages * 4096 / (1 << 20)
        ax.bar(orders + (i - (n - 1) / 2) * w, mib, width=w, label=d, color=colours[d])
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xticks(orders)
    ax.set_xticklabels([f"{o}\n{format_size(4096 << o)}" for o in orders], fontsize=8)
    ax.set_xlabel("free block order (size)")
    ax.set_ylabel("free memory in such blocks (MiB)")
    ax.legend(fontsize=8, frameon=False, ncol=min(n, 5))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def fig_speed(cap: dict, colours: dict[str, str]):
    names = list(cap["designs"])
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.5 * len(names)))
    y = np.arange(len(names))
    pol = [cap["designs"][d]["policy"]["events_per_second"] / 1e6 for d in names]
    exa = [(cap["designs"][d]["exact"] or {}).get("events_per_second", 0) / 1e6 for d in names]
    ax.barh(y - 0.2, pol, height=0.4, label="policy replay", color=[colours[d] for d in names])
    ax.barh(y + 0.2, exa, height=0.4, label="exact replay", color=[colours[d] for d in names], alpha=0.45)
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("M trace events per second (replay loop)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def fig_memory_map(grid: np.ndarray, design: str, pfns_per_cell: int):
    fig, ax = plt.subplots(figsize=(10, max(0.8, 10 * grid.shape[0] / grid.shape[1]) + 0.4))
    ax.imshow(grid, cmap=ListedColormap(MAP_COLOURS), vmin=0, vmax=len(MAP_STATES) - 1, interpolation="nearest",
              aspect="auto")
    ax.set_yticks([])
    ax.set_xticks([])
    ax.set_title(f"{design}: pfn 0 at the top left, {pfns_per_cell} pfns per cell, "
                 f"{grid.shape[1] * pfns_per_cell:,} pfns per row", fontsize=9, loc="left")
    return fig


def fig_map_legend():
    fig, ax = plt.subplots(figsize=(10, 0.4))
    ax.axis("off")
    ax.legend(handles=[Patch(facecolor=c, edgecolor="#999", label=s) for s, c in zip(MAP_STATES, MAP_COLOURS,
                                                                                      strict=True)],
              loc="center", ncol=len(MAP_STATES), fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------- the page

HOWTO = """
<h2 id="howto">How to read this report</h2>
<ul class="howto">
<li><b>Designs.</b> <code>linux</code>: today's list buddy allocator, 64-byte struct page.
<code>radix:*</code>: Kent Overstreet's radix-tree free lists with a 16-byte struct page; the suffix is where tree
nodes come from (<code>consume</code>: a free short of nodes consumes the page being freed;
<code>reserve</code>: reserved at allocation time; <code>host</code>: outside the model).
<code>vmem</code>: Matthew Wilcox's one-word memdesc over a vmem arena, 32-byte descriptors reserved at allocation.</li>
<li><b>Policy replay</b> (the headline figures): the capture's kmem trace is a demand stream; each design decides
where every allocation goes, starting from the real machine's state before the trace.
<b>Exact replay</b> applies every event at its real pfn: its distance from the real <code>after.buddyinfo</code>
checks the model, not the design.</li>
<li><b>Metadata per page</b>: the design's own bytes (memmap + free-list heads + tree nodes or descriptors) per
present page.</li>
<li><b>Free-path allocations / free stalls</b>: times the design had to allocate memory while freeing memory,
and frees that could not complete.  Wilcox's rule is that both stay 0.  <b>Allocs failed for metadata</b>: the
price of that rule — allocations refused because the metadata their free will need could not be reserved.</li>
<li><b>Fragmentation</b>: the kernel's own indices (debugfs <code>extfrag/unusable_index</code> and
<code>extfrag_index</code>) for the largest zone, sampled over the run.  Unusable index: share of free memory in
blocks too small for the order (0 good, 1 bad).  Fragmentation index: -1 when such a request would succeed; near 0
a failure would be for lack of memory, near 1 for fragmentation.  Order 4 is the first costly order, order 9 a
2&nbsp;MiB THP.</li>
<li><b>Free blocks</b>: free memory at the end by the size of the block it is in (a design that keeps large
blocks serves THPs).  <b>Memory map</b>: every pfn's state at the end; each cell shows what most of its pfns are.</li>
<li><b>Check</b>: the design's full invariant check after every run ("ok", or the first violation).</li>
</ul>
"""


def render(c: Comparison, title: str = "memdesc compare") -> str:
    s = c.summary
    colours = _colours(s["designs"])
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           f"<style>{CSS}</style></head><body><main>",
           f"<h1>{html.escape(title)}</h1>",
           f'<p class="meta">memdesc {html.escape(_version())} · {now} · {len(s["captures"])} capture(s) × '
           f'{len(s["designs"])} designs · {s["seconds"]:.1f} s · check: <b>{html.escape(s["check"])}</b></p>',
           f'<pre class="cmd">{html.escape(s["commands"]["compare"])} --html report.html</pre>',
           '<p><a href="#howto">How to read this report</a></p>']
    infos = {i.name: i for i in c.captures}
    for cap in s["captures"]:
        name = cap["name"]
        info = infos.get(name)
        one = command_line([cap["path"]], s["designs"], None, "auto", True)
        out.append(f"<h2>{html.escape(name)}</h2>")
        where = "the bundled sample (the anon capture)" if cap["path"] == str(sample_path()) else cap["path"]
        out.append(f'<p class="meta">{html.escape(where)} · {cap["events"]:,} events · layout '
                   f'{html.escape(cap["layout"])}{" (HighMem)" if cap["has_highmem"] else ""} · '
                   f'{cap["present_pages"]:,} present pages</p>')
        out.append(_html_table(cap))
        out.append(f'<pre class="cmd">{html.escape(one)}</pre>')
        out.append("<h3>Metadata bytes per page</h3>")
        out.append(_figure(_svg(fig_metadata(cap, colours)),
                           "The design's own metadata per present page, by structure.", one + " --json r.json"))
        out.append("<h3>Fragmentation over the run</h3>")
        every = next(iter(cap["designs"].values()))["fragmentation"]["every"]
        out.append(_figure(_svg(fig_fragmentation(cap, colours)),
                           f"Indices of mm/vmstat.c for the largest zone, every {every:,} events of the policy "
                           "replay.",
                           command_line([cap["path"]], s["designs"], every, "auto", True, "--parquet r.parquet")))
        out.append("<h3>Free blocks at the end</h3>")
        out.append(_figure(_svg(fig_free_blocks(cap, colours)),
                           "Free memory by the order of the free block holding it (all zones), after the policy "
                           "replay.", one + " --json r.json"))
        out.append("<h3>Replay speed</h3>")
        out.append(_figure(_svg(fig_speed(cap, colours)),
                           "Trace events per second of the replay loop (policy: solid; exact: light).",
                           one + " --json r.json"))
        out.append("<h3>Memory maps</h3>")
        out.append(_figure(_svg(fig_map_legend()), "Page states.", one + " --html report.html"))
        for d in cap["designs"]:
            grid = c.maps.get((name, d))
            if grid is None:
                continue
            per = info.pfns_per_cell if info else 1
            out.append(_figure(_svg(fig_memory_map(grid, d, per)),
                               f"{html.escape(d)}: every pfn after the policy replay.",
                               command_line([cap["path"]], [d], None, "auto", True, "--html map.html")))
    out.append(HOWTO)
    out.append("</main></body></html>")
    return "\n".join(out)


def write_html(c: Comparison, path: str | Path, title: str = "memdesc compare") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(c, title), encoding="utf-8")
    return p


__all__ = ["render", "table_rows", "write_html"]
