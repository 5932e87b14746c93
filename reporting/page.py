"""``<model>/report.html``: the self-contained report page of one model folder.

Sections: the summary table, the rate–distortion plot (and where the SPZ / SOG points come
from, or how to get them), results.csv, the 3D viewer pages (links, or how to get them), the
test views with their error heat maps, the settings. The data come from
:mod:`reporting.collect`, the cells from :mod:`reporting.table`, the pictures from
:mod:`reporting.figures`; images are embedded, so the page opens anywhere on its own.
"""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from reporting.collect import ReportData, ViewImages, collect_report
from reporting.figures import (HEATMAP_CMAP, HEATMAP_MAX_ERROR, error_heatmap, load_rgb,
                               png_bytes, rd_plot_png)
from reporting.html_helpers import data_uri, html_figure, html_page, html_table
from reporting.table import size_text, sweep_rows, table_rows
from utils.output_paths import REPORT_HTML
from utils.splat_transform import NODE_HINT
from utils.system_utils import atomic_path

logger = logging.getLogger(__name__)


def write_report(model_path: str | Path, max_views: int = 6,
                 trainings: Sequence[str | Path] = ()) -> tuple[Path, ReportData]:
    """Collect (:func:`collect_report`, ``trainings`` included), build and atomically write
    ``<model_path>/report.html``.

    Returns:
        The written path and the data it shows.
    """
    data = collect_report(model_path, max_views=max_views, trainings=trainings)
    return save_report(data), data


def save_report(data: ReportData) -> Path:
    """Build and atomically write ``<model>/report.html`` from collected ``data``."""
    out = data.model_path / REPORT_HTML
    with atomic_path(out) as tmp:
        tmp.write_text(build_html(data), encoding="utf-8")
    logger.info("wrote %s", out)
    return out


def build_html(data: ReportData) -> str:
    """The full report page (one string, every image embedded as a base64 PNG data URI)."""
    sections = [*_summary_html(data), *_rd_html(data), *_viewer_html(data),
                *_views_html(data), *_settings_html(data)]
    return html_page(f"Compression report: {data.model_path.name}", sections)


def _summary_html(data: ReportData) -> list[str]:
    sections = [
        f"<h1>Compression report: {html.escape(data.model_path.name)}</h1>",
        f'<p class="note">Model folder <code>{html.escape(str(data.model_path))}</code>, '
        f"trained for {data.train_iteration} iterations. Quality: metrics.py "
        "(results.json); sizes and times: the codec's report.json; ratio = uncompressed PLY "
        "bytes / compressed bytes.</p>",
        "<h2>Summary</h2>", html_table(table_rows(data)),
    ]
    if not data.measured:
        sections.append('<p class="note">* quality from the codec\'s report.json or peer.json '
                        "(metrics.py has not measured this variant).</p>")
    return sections


def _rd_html(data: ReportData) -> list[str]:
    """The RD plot, where its peer points come from, and results.csv when it has rows."""
    sections = ["<h2>Rate–distortion</h2>",
                f'<img alt="rate-distortion plot" src="{data_uri(rd_plot_png(data))}">',
                _peers_note(data)]
    if data.sweep:
        sections += ["<h3>compression/results.csv</h3>", html_table(sweep_rows(data))]
    return sections


def _peers_note(data: ReportData) -> str:
    """Where the SPZ / SOG points come from, or how to get them."""
    peers = [v for v in data.variants if v.codec is not None]
    if peers:
        tools = sorted({str(v.settings.get("tool")) for v in peers})
        return (f'<p class="note">{html.escape(", ".join(v.label for v in peers))}: the trained '
                f"PLY written and read back by {html.escape(', '.join(tools))} "
                "(<code>scripts/rd_sweep.py --peers</code>), rendered and scored like our "
                "bitstreams. Rates count bits over the trained model's Gaussians.</p>")
    return ('<p class="note">No SPZ / SOG points: <code>python scripts/rd_sweep.py -m '
            f"{html.escape(str(data.model_path))} --peers</code> writes the trained PLY as SPZ "
            "and SOG with PlayCanvas's splat-transform, reads them back and scores them on the "
            f"test views (then rerun metrics.py and this report). It needs "
            f"{html.escape(NODE_HINT)}.</p>")


def _viewer_html(data: ReportData) -> list[str]:
    """Links to the 3D viewer pages, and how to get the missing ones."""
    items = [f'<li><a href="{html.escape(page.relative_to(data.model_path).as_posix())}">'
             f"{html.escape(v.label)}</a> ({size_text(page.stat().st_size)})</li>"
             for v in data.variants if (page := data.viewer_pages.get(v.method))]
    sections = ["<h2>3D viewer</h2>"]
    if items:
        sections += ['<p class="note">Self-contained viewer pages (PlayCanvas SuperSplat viewer, '
                     "written by splat-transform): the uncompressed model and the models "
                     "decoded from the bitstreams.</p>", f"<ul>{''.join(items)}</ul>"]
    missing = [v.label for v in data.variants if v.method not in data.viewer_pages]
    if missing:
        sections.append(
            f'<p class="note">No viewer page for {html.escape(", ".join(missing))}. '
            f"<code>python scripts/make_report.py -m {html.escape(str(data.model_path))}</code> "
            "writes them when Node.js is available: "
            f"{html.escape(NODE_HINT)}. One model at a time: <code>python render.py "
            "--given_ply_path &lt;PLY or bins.zip&gt; --export page.html</code>.</p>")
    return sections


def _views_html(data: ReportData) -> list[str]:
    return ["<h2>Test views</h2>",
            f'<p class="note">Error heat maps: mean absolute RGB error against the ground truth, '
            f"{HEATMAP_CMAP} colour map from 0 (black) to {HEATMAP_MAX_ERROR} (white) and above."
            "</p>", *(_view_html(data, view) for view in data.views)]


def _view_html(data: ReportData, view: ViewImages) -> str:
    """One test view: ground truth, every variant's render, the compressed ones' heat maps."""
    gt = load_rgb(view.gt)
    cells = [html_figure(view.gt.read_bytes(), "ground truth")]
    heatmaps = []
    for v in data.variants:
        path = view.renders.get(v.method)
        if path is None:
            continue
        psnr = data.per_view_psnr.get(v.method, {}).get(view.gt.name)
        cells.append(html_figure(path.read_bytes(),
                                 v.label + ("" if psnr is None else f" ({psnr:.2f} dB)")))
        if v.compressed:
            heatmaps.append(html_figure(png_bytes(error_heatmap(load_rgb(path), gt)),
                                        f"|error| {v.label}"))
    return (f'<div class="view"><h3>{html.escape(view.name)}</h3>'
            + "".join(cells + heatmaps) + "</div>")


def _settings_html(data: ReportData) -> list[str]:
    """The training settings (cfg_args) and the last saved iteration's codec settings of each
    layout."""
    sections = ["<h2>Settings</h2>"]
    if data.train_settings:
        sections += ["<h3>Training (cfg_args)</h3>",
                     html_table(_settings_rows(data.train_settings))]
    last_per_layout = {v.layout: v for v in data.variants if v.layout is not None}
    for v in last_per_layout.values():
        if v.settings:
            sections += [f"<h3>Codec: {html.escape(v.label)}</h3>",
                         html_table(_settings_rows(v.settings))]
    return sections


def _settings_rows(settings: dict[str, Any]) -> list[list[str]]:
    return [["setting", "value"]] + [[k, json.dumps(v)] for k, v in sorted(settings.items())]
