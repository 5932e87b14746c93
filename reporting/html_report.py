"""Self-contained HTML report and terminal table for one model folder.

Everything here is a pure function of the model folder (nothing is recomputed from the scene):

- quality (PSNR, SSIM, LPIPS) comes from metrics.py's ``<model>/results.json``
  (``{method: {"PSNR", "SSIM", "LPIPS"?, ...}}``, methods named like the render folders);
- sizes and times come from the codec's
  ``<model>/compression/<layout>/iteration_<k>/report.json``, and those of other tools' codecs
  (SPZ, SOG: ``scripts/rd_sweep.py --peers``) from ``<model>/compression/peers/<codec>/peer.json``;
- the uncompressed size is the byte size of ``<model>/point_cloud/iteration_<N>/point_cloud.ply``;
- the rate–distortion sweep comes from ``<model>/compression/results.csv``
  (``Submethod,PSNR,SSIM,LPIPS,Size [Bytes],#Gaussians``);
- the pictures come from ``<model>/test/ours_<N>/{renders,gt}`` (uncompressed),
  ``<model>/test/compressed_<layout>_<k>/renders`` (decoded from the bitstream) and
  ``<model>/test/peer_<codec>/renders`` (decoded from another tool's file);
- 3D viewer pages, linked when present, are ``<model>/viewer/<method>.html`` (written by
  ``reporting.viewer_pages``; the report says how to get them when they are missing).

Images are embedded as base64 PNG data URIs, so ``report.html`` opens anywhere on its own.
Every path comes from ``utils/output_paths.py``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from arguments import read_cfg_args
from compression.layouts import LAYOUTS
from reporting.codec_results import (ResultsRow, read_json, read_peer_report, read_report,
                                     read_results_csv)
from utils.output_paths import (CFG_ARGS, PER_VIEW_JSON, REPORT_HTML, RESULTS_HEADER,
                                RESULTS_JSON, TEST_SPLIT, UNCOMPRESSED_METHOD,
                                compressed_method, parse_quality_submethod,
                                parse_sweep_submethod, peer_method, point_cloud_dir,
                                point_cloud_path, render_dir, render_name, results_csv_path,
                                saved_peer_reports, saved_reports, viewer_page_path)
from utils.splat_transform import NODE_HINT
from utils.system_utils import atomic_path, searchForMaxIteration

logger = logging.getLogger(__name__)

HEATMAP_MAX_ERROR = 0.25  # mean absolute RGB error mapped to the top of the colour scale
HEATMAP_CMAP = "magma"


@dataclass(frozen=True)
class Variant:
    """One row of the summary table: the uncompressed model, one decoded bitstream, or the
    model decoded from another tool's file (SPZ, SOG)."""

    label: str                      # shown to people ("uncompressed", "seed @ 300", "SPZ ...")
    method: str                     # results.json key and test/ folder name
    psnr: Optional[float]
    ssim: Optional[float]
    lpips: Optional[float]
    quality_source: str             # "metrics.py", or "report.json" / "peer.json" (metrics.py
                                    # not run on it)
    size_bytes: int
    num_gaussians: int
    bits_per_gaussian: float
    ratio: float                    # uncompressed PLY bytes / size_bytes
    encode_seconds: Optional[float] = None
    decode_seconds: Optional[float] = None
    layout: Optional[str] = None    # our layout; None for the uncompressed model and peers
    iteration: Optional[int] = None
    settings: dict[str, Any] = field(default_factory=dict)
    source: Optional[Path] = None   # the model file: the trained PLY, the saved bitstream or
                                    # the other tool's file
    codec: Optional[str] = None     # another tool's codec (spz, sog); None for ours

    @property
    def compressed(self) -> bool:
        """Whether this is a compressed model (ours or another tool's)."""
        return self.layout is not None or self.codec is not None


@dataclass(frozen=True)
class ViewImages:
    """PNG paths of one test view: ground truth and one render per variant method."""

    name: str
    gt: Path
    renders: dict[str, Path]        # method -> render PNG


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, read from one model folder."""

    model_path: Path
    train_iteration: int
    variants: list[Variant]         # uncompressed first
    sweep: list[ResultsRow]         # compression/results.csv
    train_settings: dict[str, Any]
    views: list[ViewImages]
    per_view_psnr: dict[str, dict[str, float]]   # method -> image name -> PSNR
    viewer_pages: dict[str, Path] = field(default_factory=dict)   # method -> existing page


# ------------------------------------------------------------------------------- reading

def ply_vertex_count(path: Path) -> int:
    """Number of Gaussians in a PLY, read from its ``element vertex N`` header line.

    Raises:
        ValueError: the file has no PLY header with a vertex element.
    """
    with path.open("rb") as f:
        header = f.read(4096).split(b"end_header", 1)[0].decode("ascii", errors="replace")
    match = re.search(r"^element vertex (\d+)\s*$", header, flags=re.MULTILINE)
    if not header.startswith("ply") or match is None:
        raise ValueError(f"{path}: not a PLY file with an 'element vertex' header")
    return int(match.group(1))


def _quality(results: dict[str, Any], method: str, fallback: dict[str, Any],
             fallback_name: str = "report.json"
             ) -> tuple[Optional[float], Optional[float], Optional[float], str]:
    if method in results:
        entry = results[method]
        return entry.get("PSNR"), entry.get("SSIM"), entry.get("LPIPS"), "metrics.py"
    return fallback.get("psnr"), fallback.get("ssim"), fallback.get("lpips"), fallback_name


def _compressed_variants(model: Path, results: dict[str, Any]) -> list[Variant]:
    variants = []
    for report_path in saved_reports(model):
        rep = read_report(report_path)
        method = render_name(compressed_method(rep["layout"]), rep["iteration"])
        psnr, ssim, lpips, source = _quality(results, method, rep)
        variants.append(Variant(
            label=f"{rep['layout']} @ {rep['iteration']}", method=method, psnr=psnr, ssim=ssim,
            lpips=lpips, quality_source=source, size_bytes=int(rep["size_bytes"]),
            num_gaussians=int(rep["num_gaussians"]),
            bits_per_gaussian=float(rep["bits_per_gaussian"]),
            ratio=float(rep["ply_size_bytes"]) / float(rep["size_bytes"]),
            encode_seconds=rep["encode_seconds"], decode_seconds=rep["decode_seconds"],
            layout=rep["layout"], iteration=int(rep["iteration"]),
            settings=dict(rep.get("settings") or {}),
            source=_bitstream_beside(report_path, rep)))
    return variants


def _peer_variants(model: Path, results: dict[str, Any]) -> list[Variant]:
    """Other tools' codecs run on the model (``compression/peers/<codec>/peer.json``)."""
    variants = []
    for report_path in saved_peer_reports(model):
        rep = read_peer_report(report_path)
        method = peer_method(rep["codec"])
        psnr, ssim, lpips, source = _quality(results, method, rep, "peer.json")
        variants.append(Variant(
            label=rep["label"], method=method, psnr=psnr, ssim=ssim, lpips=lpips,
            quality_source=source, size_bytes=int(rep["size_bytes"]),
            num_gaussians=int(rep["num_gaussians"]),
            bits_per_gaussian=float(rep["bits_per_gaussian"]),
            ratio=float(rep["ply_size_bytes"]) / float(rep["size_bytes"]),
            encode_seconds=rep["encode_seconds"], decode_seconds=rep["decode_seconds"],
            settings={"tool": rep["tool"]}, source=report_path.parent / rep["file"],
            codec=rep["codec"]))
    return variants


def _bitstream_beside(report_path: Path, report: dict[str, Any]) -> Optional[Path]:
    """The bitstream file saved beside ``report.json``; None for a layout this version lacks."""
    layout = LAYOUTS.get(report["layout"])
    return None if layout is None else report_path.parent / layout.codec.container.file_name


def _views(model: Path, methods: list[str], max_views: int) -> list[ViewImages]:
    """Test views that the uncompressed folder holds, with every method's render of them."""
    gt_dir = render_dir(model, TEST_SPLIT, methods[0]) / "gt"
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir}: no ground-truth renders (run render.py first)")
    views = []
    for gt in sorted(gt_dir.glob("*.png"))[:max_views]:
        renders = {m: render_dir(model, TEST_SPLIT, m) / "renders" / gt.name for m in methods}
        views.append(ViewImages(gt.stem, gt, {m: p for m, p in renders.items() if p.is_file()}))
    return views


def collect_report(model_path: str | Path, max_views: int = 6) -> ReportData:
    """Read every source of the report from ``model_path``.

    Args:
        model_path: model folder written by train.py / render.py / metrics.py.
        max_views: at most this many test views get pictures (all keep their numbers).

    Raises:
        FileNotFoundError: the trained PLY, results.json or the uncompressed renders are missing.
        ValueError: a source file is malformed.
    """
    model = Path(model_path)
    if not model.is_dir():
        raise FileNotFoundError(f"{model}: model folder not found")
    train_iter = searchForMaxIteration(point_cloud_dir(model))
    ply = point_cloud_path(model, train_iter)
    if not ply.is_file():
        raise FileNotFoundError(f"{ply}: trained PLY not found")
    results = read_json(model / RESULTS_JSON)
    ply_bytes = ply.stat().st_size
    num_gaussians = ply_vertex_count(ply)
    ours = render_name(UNCOMPRESSED_METHOD, train_iter)
    psnr, ssim, lpips, source = _quality(results, ours, {})
    uncompressed = Variant(
        label="uncompressed", method=ours, psnr=psnr, ssim=ssim, lpips=lpips,
        quality_source=source, size_bytes=ply_bytes, num_gaussians=num_gaussians,
        bits_per_gaussian=8.0 * ply_bytes / max(num_gaussians, 1), ratio=1.0, source=ply)
    variants = [uncompressed] + _compressed_variants(model, results) \
        + _peer_variants(model, results)
    rendered = [v.method for v in variants
                if (render_dir(model, TEST_SPLIT, v.method) / "renders").is_dir()]
    if ours not in rendered:
        raise FileNotFoundError(f"{render_dir(model, TEST_SPLIT, ours)}: uncompressed renders "
                                f"not found (run render.py -m {model} first)")
    per_view_path = model / PER_VIEW_JSON
    per_view = read_json(per_view_path) if per_view_path.is_file() else {}
    cfg = model / CFG_ARGS
    return ReportData(
        model_path=model, train_iteration=train_iter, variants=variants,
        sweep=read_results_csv(results_csv_path(model)),
        train_settings=read_cfg_args(cfg) if cfg.is_file() else {},
        views=_views(model, rendered, max_views),
        per_view_psnr={m: v.get("PSNR", {}) for m, v in per_view.items()},
        viewer_pages={v.method: page for v in variants
                      if (page := viewer_page_path(model, v.method)).is_file()})


# ------------------------------------------------------------------------------- the table

def number_text(value: Optional[float], spec: str) -> str:
    """A table cell: ``value`` formatted with ``spec``, ``-`` when it is unknown."""
    return "-" if value is None else format(value, spec)


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.2f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def bits_per_input_gaussian(data: ReportData, size_bytes: int) -> float:
    """Bits of a file of ``size_bytes`` per Gaussian of the trained model (the rate every
    codec is compared at, whatever it prunes or merges)."""
    return 8.0 * size_bytes / max(data.variants[0].num_gaussians, 1)


def table_rows(data: ReportData) -> list[list[str]]:
    """The summary table as text cells, header first (shared by the terminal and the HTML)."""
    rows = [["variant", "PSNR", "SSIM", "LPIPS", "size", "bits/Gaussian", "bits/input Gaussian",
             "#Gaussians", "ratio", "encode s", "decode s"]]
    for v in data.variants:
        mark = "" if v.quality_source == "metrics.py" else "*"
        rows.append([v.label + mark, number_text(v.psnr, ".2f"), number_text(v.ssim, ".4f"),
                     number_text(v.lpips, ".4f"), _size_text(v.size_bytes),
                     f"{v.bits_per_gaussian:.1f}",
                     f"{bits_per_input_gaussian(data, v.size_bytes):.1f}", str(v.num_gaussians),
                     f"{v.ratio:.1f}x", number_text(v.encode_seconds, ".1f"),
                     number_text(v.decode_seconds, ".2f")])
    return rows


def format_table(data: ReportData) -> str:
    """Fixed-width text table of :func:`table_rows`, with a footnote when one is needed."""
    rows = table_rows(data)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    if any(v.quality_source != "metrics.py" for v in data.variants):
        lines.append("* quality from the codec's report.json or peer.json (metrics.py has not "
                     "measured it)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- pictures

def data_uri(png_bytes: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def _png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def error_heatmap(render: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Colour-mapped mean absolute RGB error.

    Args:
        render: [H, W, 3] float in [0, 1].
        gt: [H, W, 3] float in [0, 1].

    Returns:
        [H, W, 3] uint8; the colour scale spans 0 … ``HEATMAP_MAX_ERROR``.
    """
    import matplotlib

    if render.shape != gt.shape:
        raise ValueError(f"render shape {render.shape} differs from ground truth {gt.shape}")
    err = np.abs(render - gt).mean(axis=-1) / HEATMAP_MAX_ERROR
    rgba = matplotlib.colormaps[HEATMAP_CMAP](np.clip(err, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


#: RD-plot marker of each other tool's codec (another codec gets the last one)
PEER_MARKERS = {"spz": "^", "sog": "D"}


def rd_plot_png(data: ReportData) -> bytes:
    """Rate–distortion plot (PSNR vs bits per input Gaussian, log x) as PNG bytes (Agg).

    Every point's rate counts its file's bits over the trained model's Gaussians (a layout
    that prunes or merges is not credited for it). One colour per layout: its sweeps as lines
    (results.csv rows ``<layout>_<k>_b<bits>`` of the bit-depth sweep solid,
    ``<layout>_q<quality>`` of the quality sweep dashed), its saved iterations (report.json)
    as squares; other tools' codecs (peer.json) as their own markers; the uncompressed model
    as a star.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    plain = data.variants[0]
    layouts = sorted({v.layout for v in data.variants if v.layout} | {p.layout for p in data.sweep})
    colours = {lay: f"C{i}" for i, lay in enumerate(layouts)}
    for layout in layouts:
        points = []
        for p in data.sweep:
            bits = parse_sweep_submethod(p.submethod)
            quality = parse_quality_submethod(p.submethod)
            if p.layout == layout and p.psnr is not None and (bits or quality):
                points.append((f"{bits[2]} b" if bits else f"q{quality[1]}",
                               "bit-depth" if bits else "quality", p))
        for kind in ("bit-depth", "quality"):
            pts = sorted(((tag, p) for tag, k, p in points if k == kind),
                         key=lambda tp: tp[1].size_bytes)
            if not pts:
                continue
            xs = [bits_per_input_gaussian(data, p.size_bytes) for _, p in pts]
            ax.plot(xs, [p.psnr for _, p in pts], marker="o", color=colours[layout],
                    linestyle="-" if kind == "bit-depth" else "--",
                    label=f"{layout}: {kind} sweep")
            for x, (tag, p) in zip(xs, pts):
                ax.annotate(tag, (x, p.psnr), textcoords="offset points",
                            xytext=(4, -10), fontsize=8, color=colours[layout])
        saved = [v for v in data.variants if v.layout == layout and v.psnr is not None]
        ax.scatter([bits_per_input_gaussian(data, v.size_bytes) for v in saved],
                   [v.psnr for v in saved], marker="s", s=60, zorder=3,
                   color=colours[layout], edgecolors="black", label=f"{layout}: saved iterations")
    peers = [v for v in data.variants if v.codec is not None and v.psnr is not None]
    for index, v in enumerate(peers):
        ax.scatter([bits_per_input_gaussian(data, v.size_bytes)], [v.psnr],
                   marker=PEER_MARKERS.get(v.codec, "P"), s=80, zorder=3,
                   color=f"C{len(layouts) + index}", edgecolors="black", label=v.label)
    return finish_rd_plot(fig, ax, "bits per input Gaussian", None if plain.psnr is None
                          else (plain.bits_per_gaussian, plain.psnr))


def finish_rd_plot(fig: Any, ax: Any, rate_label: str,
                   uncompressed: Optional[tuple[float, float]]) -> bytes:
    """Finish a PSNR-against-rate plot like every report's: the uncompressed model
    ``(rate, PSNR)`` as a gold star, a log rate axis named ``rate_label``, grid and legend.

    Returns:
        The matplotlib figure as PNG bytes.
    """
    if uncompressed is not None:
        ax.scatter([uncompressed[0]], [uncompressed[1]], marker="*", s=160, zorder=3,
                   color="gold", edgecolors="black", label="uncompressed PLY")
    ax.set_xscale("log")
    ax.set_xlabel(f"{rate_label} (log scale)")
    ax.set_ylabel("PSNR [dB] on the test views")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ------------------------------------------------------------------------------- HTML

# the CSS of every generated report page
PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:4px;text-align:center}figure img{display:block;width:200px;
image-rendering:pixelated}figcaption{font-size:12px}.view{margin-bottom:1em}
.note{color:#666;font-size:13px}
"""


def html_table(rows: list[list[str]], numeric_from: int = 1) -> str:
    """An HTML table of text cells (header row first; columns from ``numeric_from`` on are
    right-aligned numbers); every cell is escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from
                         else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _settings_rows(settings: dict[str, Any]) -> list[list[str]]:
    return [["setting", "value"]] + [[k, json.dumps(v)] for k, v in sorted(settings.items())]


def _figure(uri: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _view_html(data: ReportData, view: ViewImages) -> str:
    gt = _load_rgb(view.gt)
    cells = [_figure(data_uri(view.gt.read_bytes()), "ground truth")]
    heatmaps = []
    for v in data.variants:
        path = view.renders.get(v.method)
        if path is None:
            continue
        psnr = data.per_view_psnr.get(v.method, {}).get(view.gt.name)
        caption = v.label + ("" if psnr is None else f" ({psnr:.2f} dB)")
        cells.append(_figure(data_uri(path.read_bytes()), caption))
        if v.compressed:
            heat = _png_bytes(error_heatmap(_load_rgb(path), gt))
            heatmaps.append(_figure(data_uri(heat), f"|error| {v.label}"))
    return (f'<div class="view"><h3>{html.escape(view.name)}</h3>'
            + "".join(cells + heatmaps) + "</div>")


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
             f"{html.escape(v.label)}</a> ({_size_text(page.stat().st_size)})</li>"
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


def build_html(data: ReportData) -> str:
    """The full report page (one string, every image embedded as a base64 PNG data URI)."""
    sections = [
        f"<h1>Compression report: {html.escape(data.model_path.name)}</h1>",
        f'<p class="note">Model folder <code>{html.escape(str(data.model_path))}</code>, '
        f"trained for {data.train_iteration} iterations. Quality: metrics.py "
        "(results.json); sizes and times: the codec's report.json; ratio = uncompressed PLY "
        "bytes / compressed bytes.</p>",
        "<h2>Summary</h2>", html_table(table_rows(data)),
    ]
    if any(v.quality_source != "metrics.py" for v in data.variants):
        sections.append('<p class="note">* quality from the codec\'s report.json or peer.json '
                        "(metrics.py has not measured this variant).</p>")
    sections += ["<h2>Rate–distortion</h2>",
                 f'<img alt="rate-distortion plot" src="{data_uri(rd_plot_png(data))}">',
                 _peers_note(data)]
    if data.sweep:
        sweep_rows = [list(RESULTS_HEADER)] + [
            [p.submethod, number_text(p.psnr, ".2f"), number_text(p.ssim, ".4f"),
             number_text(p.lpips, ".4f"), str(p.size_bytes), str(p.num_gaussians)]
            for p in data.sweep]
        sections += ["<h3>compression/results.csv</h3>", html_table(sweep_rows)]
    sections += _viewer_html(data)
    sections += [
        "<h2>Test views</h2>",
        f'<p class="note">Error heat maps: mean absolute RGB error against the ground truth, '
        f"{HEATMAP_CMAP} colour map from 0 (black) to {HEATMAP_MAX_ERROR} (white) and above."
        "</p>"]
    sections += [_view_html(data, view) for view in data.views]
    sections.append("<h2>Settings</h2>")
    if data.train_settings:
        sections += ["<h3>Training (cfg_args)</h3>",
                     html_table(_settings_rows(data.train_settings))]
    last_per_layout = {v.layout: v for v in data.variants if v.layout is not None}
    for v in last_per_layout.values():
        if v.settings:
            sections += [f"<h3>Codec: {html.escape(v.label)}</h3>",
                         html_table(_settings_rows(v.settings))]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Compression report: {html.escape(data.model_path.name)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>\n" + "\n".join(sections)
            + "\n</body></html>\n")


def write_report(model_path: str | Path, max_views: int = 6) -> tuple[Path, ReportData]:
    """Collect, build and atomically write ``<model_path>/report.html``.

    Returns:
        The written path and the data it shows.
    """
    data = collect_report(model_path, max_views=max_views)
    out = data.model_path / REPORT_HTML
    with atomic_path(out) as tmp:
        tmp.write_text(build_html(data), encoding="utf-8")
    logger.info("wrote %s", out)
    return out, data
