"""The HTML pieces every generated page shares (``report.html``, ``sweep.html``): the style, the
page frame, tables of text cells and embedded PNG images.

Pages are self-contained: images travel as base64 PNG data URIs, the style inline.
"""
from __future__ import annotations

import base64
import html

# the CSS of every generated report page
PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:4px;text-align:center}figure img{display:block;width:200px;
image-rendering:pixelated}figcaption{font-size:12px}.view{margin-bottom:1em}
.note{color:#666;font-size:13px}
"""


def html_page(title: str, sections: list[str]) -> str:
    """A whole page: ``title`` (plain text, escaped here) and the sections' HTML, one a line."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def html_table(rows: list[list[str]], numeric_from: int = 1) -> str:
    """An HTML table of text cells (header row first; columns from ``numeric_from`` on are
    right-aligned numbers); every cell is escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from
                         else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def data_uri(png_bytes: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def html_figure(png_bytes: bytes, caption: str) -> str:
    """An embedded PNG with its caption (a ``<figure>`` of the page style)."""
    return (f'<figure><img src="{data_uri(png_bytes)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
