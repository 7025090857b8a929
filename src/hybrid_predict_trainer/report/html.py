"""A single self-contained HTML page: inline CSS, PNG figures embedded as base64.

Why self-contained: the report is mailed, attached to tickets and opened from CI artifacts;
one file with no external references always renders the same.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1000px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f7f7f9;padding:.8em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.sev-error{color:#b00020;font-weight:600}.sev-warning{color:#a15c00;font-weight:600}
.muted{color:#777}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: bool = True) -> str:
    """An HTML table; cells that look numeric are right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="num"' if numeric and _numeric(v) else ""
            cells.append(f"<td{cls}>{v if _is_html(v) else esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def image(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption class=\"muted\">{esc(caption)}</figcaption></figure>")


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> str:
    parts = [f"<h2>{esc(h)}</h2>\n{body}" for h, body in sections if body]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"muted\">{esc(subtitle)}</p>"
            + "\n".join(parts) + "</body></html>\n")


class Raw(str):
    """Already-escaped HTML to place in a table cell."""


def _is_html(v: Any) -> bool:
    return isinstance(v, Raw)


def _numeric(v: Any) -> bool:
    if isinstance(v, (int, float)):
        return True
    s = str(v).strip().rstrip("%x")
    try:
        float(s)
        return True
    except ValueError:
        return False
