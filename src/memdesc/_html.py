"""Small HTML fragments for ``_repr_html_`` (Jupyter) and the compare report.

Plain strings, escaped, no dependency: a table from rows, a definition list from a dict.
Imported by every layer (it imports nothing from memdesc).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

STYLE = ("<style>.memdesc-t{border-collapse:collapse;font:12px/1.35 ui-monospace,monospace}"
         ".memdesc-t th,.memdesc-t td{border:1px solid #ccc;padding:2px 6px;text-align:right}"
         ".memdesc-t th:first-child,.memdesc-t td:first-child{text-align:left}"
         ".memdesc-t caption{text-align:left;font-weight:bold;padding:4px 0}</style>")


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def cell(v: Any) -> str:
    """A value as table text: ints with thin grouping, floats with 4 significant digits."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(headers: Iterable[Any], rows: Iterable[Iterable[Any]], caption: str | None = None,
          cls: str = "memdesc-t") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<table class="{cls}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv_table(d: Mapping[str, Any], caption: str | None = None) -> str:
    return table(("key", "value"), ((k, v) for k, v in d.items()), caption)


def fragment(*parts: str) -> str:
    """A self-contained fragment (style included) for ``_repr_html_``."""
    return '<div class="memdesc">' + STYLE + "".join(parts) + "</div>"
