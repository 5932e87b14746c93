"""3D viewer pages of a model folder, for the HTML report (application level, like runner.py).

One self-contained page per report variant, ``<model>/viewer/<method>.html``: the trained PLY as
it is, and the model decoded from each saved ``bins.zip`` (what a user of the bitstream sees).
splat-transform writes them (utils/splat_transform.py); a page newer than its source is kept.
"""
from __future__ import annotations

from pathlib import Path

from compression.bitstream import read_bitstream
from compression.pipeline import decode
from scene.interop import export_model
from utils.html_report import ReportData, viewer_page_path
from utils.splat_transform import convert


def write_viewer_pages(data: ReportData) -> dict[str, Path]:
    """Write the missing or stale viewer page of every variant of ``data``.

    Returns:
        method → page path, for every variant.

    Raises:
        SplatTransformUnavailable: no Node.js (nothing is written).
        FileNotFoundError, ValueError: a missing or corrupt source, or a failed conversion.
    """
    pages = {}
    for variant in data.variants:
        page = viewer_page_path(data.model_path, variant.method)
        source = variant.source
        assert source is not None, "collect_report gives every variant its model file"
        if not page.is_file() or page.stat().st_mtime < source.stat().st_mtime:
            if variant.layout is None:
                convert(source, page)
            else:
                export_model(decode(read_bitstream(source)), page)
        pages[variant.method] = page
    return pages
