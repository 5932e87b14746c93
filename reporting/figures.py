"""The report's pictures as PNG bytes: error heat maps of the test views and the
rate–distortion plot; :func:`finish_rd_plot` gives every RD plot (``sweep.html``'s too) the same
axes, star and legend. Drawn with matplotlib's Agg backend (no display needed)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from reporting.codec_results import ResultsRow
from reporting.collect import ReportData
from utils.output_paths import parse_quality_submethod, parse_sweep_submethod

HEATMAP_MAX_ERROR = 0.25  # mean absolute RGB error mapped to the top of the colour scale
HEATMAP_CMAP = "magma"
#: RD-plot marker of each other tool's codec (another codec gets the last one)
PEER_MARKERS = {"spz": "^", "sog": "D"}
#: the RD sweeps of results.csv, each drawn as one line per layout: kind → line style
SWEEP_STYLES = {"bit-depth": "-", "quality": "--"}


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def load_rgb(path: Path) -> np.ndarray:
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


def rd_plot_png(data: ReportData) -> bytes:
    """Rate–distortion plot (PSNR vs bits per input Gaussian, log x) as PNG bytes.

    Every point's rate counts its file's bits over the trained model's Gaussians (a layout
    that prunes or merges is not credited for it). One colour per layout: its sweeps as lines
    (results.csv rows ``<layout>_<k>_b<bits>`` of the bit-depth sweep solid,
    ``<layout>_q<quality>`` of the quality sweep dashed), its saved iterations (report.json)
    as squares; other tools' codecs (peer.json) as their own markers, other trainings' bitstreams
    (a budgeted model) as diamonds; the uncompressed model as a star.
    """
    fig, ax = rd_figure((7.0, 4.2))
    layouts = sorted({v.layout for v in data.variants if v.layout} | {p.layout for p in data.sweep})
    for index, layout in enumerate(layouts):
        _draw_layout(ax, data, layout, f"C{index}")
    _draw_single_points(ax, data, first_colour=len(layouts))
    plain = data.variants[0]
    return finish_rd_plot(fig, ax, "bits per input Gaussian", None if plain.psnr is None
                          else (plain.bits_per_gaussian, plain.psnr))


def _sweep_curves(data: ReportData, layout: str) -> dict[str, list[tuple[str, ResultsRow]]]:
    """The measured results.csv points of ``layout`` by sweep kind (:data:`SWEEP_STYLES`), each
    ``(tag, row)`` (``"<bits> b"`` or ``"q<quality>"``), in order of size."""
    curves: dict[str, list[tuple[str, ResultsRow]]] = {kind: [] for kind in SWEEP_STYLES}
    for row in data.sweep:
        if row.layout != layout or row.psnr is None:
            continue
        bits, quality = parse_sweep_submethod(row.submethod), parse_quality_submethod(row.submethod)
        if bits:
            curves["bit-depth"].append((f"{bits[2]} b", row))
        elif quality:
            curves["quality"].append((f"q{quality[1]}", row))
    return {kind: sorted(points, key=lambda point: point[1].size_bytes)
            for kind, points in curves.items()}


def _draw_layout(ax: Any, data: ReportData, layout: str, colour: str) -> None:
    """One layout's sweep lines (tagged points) and its saved iterations as squares."""
    for kind, points in _sweep_curves(data, layout).items():
        if not points:
            continue
        xs = [data.bits_per_input_gaussian(row.size_bytes) for _, row in points]
        ax.plot(xs, [row.psnr for _, row in points], marker="o", color=colour,
                linestyle=SWEEP_STYLES[kind], label=f"{layout}: {kind} sweep")
        for x, (tag, row) in zip(xs, points):
            ax.annotate(tag, (x, row.psnr), textcoords="offset points",
                        xytext=(4, -10), fontsize=8, color=colour)
    saved = [v for v in data.variants
             if v.layout == layout and v.training is None and v.psnr is not None]
    ax.scatter([data.bits_per_input_gaussian(v.size_bytes) for v in saved],
               [v.psnr for v in saved], marker="s", s=60, zorder=3,
               color=colour, edgecolors="black", label=f"{layout}: saved iterations")


def _draw_single_points(ax: Any, data: ReportData, first_colour: int) -> None:
    """One point each, colours from ``C<first_colour>`` on: other tools' codecs with their own
    markers, then other trainings' bitstreams (a budgeted model of the scene) as diamonds."""
    singles = [v for v in data.variants if (v.codec is not None or v.training is not None)
               and v.psnr is not None]
    for index, v in enumerate(singles):  # peers first: the order of data.variants
        marker = "D" if v.codec is None else PEER_MARKERS.get(v.codec, "P")
        ax.scatter([data.bits_per_input_gaussian(v.size_bytes)], [v.psnr], marker=marker, s=80,
                   zorder=3, color=f"C{first_colour + index}", edgecolors="black",
                   label=v.label)


def rd_figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure (Agg, 100 dpi) of ``figsize`` inches and its one axes, for an RD plot that
    :func:`finish_rd_plot` completes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


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
