"""3D viewer pages of a model folder, for the HTML report (application level: it decodes
bitstreams and runs an external tool, so it lives here and not in the codec core).

One self-contained page per report variant, ``<model>/viewer/<method>.html``
(``utils.output_paths.viewer_page_path``): the trained PLY as it is, and the model decoded from
each saved bitstream (what a user of the bitstream sees). splat-transform writes them
(utils/splat_transform.py); a page newer than its source is kept.
"""
from __future__ import annotations

from pathlib import Path

from compression.bitstream import decode_file
from reporting.collect import ReportData
from scene.gaussian_model import GaussianModel
from scene.interop import export_model
from utils.output_paths import viewer_page_path
from utils.splat_transform import convert


def write_viewer_pages(data: ReportData) -> dict[str, Path]:
    """Write the missing or stale viewer page of every variant of ``data`` that has a model file.

    Returns:
        method → page path, for every such variant.

    Raises:
        SplatTransformUnavailable: no Node.js (nothing is written).
        FileNotFoundError, ValueError: a missing or corrupt source, or a failed conversion.
    """
    pages = {}
    for variant in data.variants:
        if variant.source is None:  # a bitstream of a layout this version does not know
            continue
        page = viewer_page_path(data.model_path, variant.method)
        if not page.is_file() or page.stat().st_mtime < variant.source.stat().st_mtime:
            if variant.layout is None:
                convert(variant.source, page)
            else:
                decoded = decode_file(variant.source)
                export_model(GaussianModel.from_params(decoded), page)
        pages[variant.method] = page
    return pages
