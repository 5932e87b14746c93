"""Everything the report of one model folder shows, read from the files the other steps wrote
(nothing is recomputed from the scene):

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
  ``reporting.viewer_pages``);
- other trainings of the same scene (``trainings``: e.g. an MCMC run with a Gaussian budget)
  add their saved bitstreams as rows, their quality from their own ``results.json``, their
  rate counted over this model's Gaussians (the whole scene's bytes at equal footing).

Every path comes from ``utils/output_paths.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from arguments import read_cfg_args
from compression.layouts import LAYOUTS
from reporting.codec_results import ResultsRow, read_results_csv
from scene.formats import ply_vertex_count
from utils.output_paths import (CFG_ARGS, PER_VIEW_JSON, RESULTS_JSON, TEST_SPLIT,
                                UNCOMPRESSED_METHOD, compressed_method, peer_method,
                                point_cloud_dir, point_cloud_path, render_dir, render_name,
                                results_csv_path, saved_peer_reports, saved_reports,
                                viewer_page_path)
from utils.result_files import read_json, read_peer_report, read_report
from utils.system_utils import searchForMaxIteration

#: the quality source of a variant metrics.py has measured
METRICS = "metrics.py"


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
    training: Optional[str] = None  # the other training's folder name (a budgeted model of the
                                    # same scene); None for this model's own bitstreams

    @property
    def compressed(self) -> bool:
        """Whether this is a compressed model (ours or another tool's)."""
        return self.layout is not None or self.codec is not None

    @property
    def measured(self) -> bool:
        """Whether metrics.py measured its quality (else it comes from the codec's report)."""
        return self.quality_source == METRICS


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

    @property
    def measured(self) -> bool:
        """Whether metrics.py measured every variant (no footnote needed)."""
        return all(v.measured for v in self.variants)

    def bits_per_input_gaussian(self, size_bytes: int) -> float:
        """Bits of a file of ``size_bytes`` per Gaussian of the trained model (the rate every
        codec is compared at, whatever it prunes or merges)."""
        return 8.0 * size_bytes / max(self.variants[0].num_gaussians, 1)


def collect_report(model_path: str | Path, max_views: int = 6,
                   trainings: Sequence[str | Path] = ()) -> ReportData:
    """Read every source of the report from ``model_path``.

    Args:
        model_path: model folder written by train.py / render.py / metrics.py.
        max_views: at most this many test views get pictures (all keep their numbers).
        trainings: model folders of other trainings of the same scene whose saved bitstreams
            are shown beside this model's (no pictures of them).

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
    variants = [_uncompressed_variant(ply, train_iter, results),
                *_compressed_variants(model, results), *_peer_variants(model, results),
                *(v for other in map(Path, trainings) for v in _training_variants(other))]
    rendered = [v.method for v in variants
                if (render_dir(model, TEST_SPLIT, v.method) / "renders").is_dir()]
    if variants[0].method not in rendered:
        raise FileNotFoundError(f"{render_dir(model, TEST_SPLIT, variants[0].method)}: "
                                f"uncompressed renders not found (run render.py -m {model} first)")
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


def _quality(results: dict[str, Any], method: str, fallback: dict[str, Any],
             fallback_name: str = "report.json"
             ) -> tuple[Optional[float], Optional[float], Optional[float], str]:
    """PSNR, SSIM, LPIPS of ``method`` and where they come from: metrics.py's results, else the
    codec's own report (``fallback``)."""
    if method in results:
        entry = results[method]
        return entry.get("PSNR"), entry.get("SSIM"), entry.get("LPIPS"), METRICS
    return fallback.get("psnr"), fallback.get("ssim"), fallback.get("lpips"), fallback_name


def _uncompressed_variant(ply: Path, train_iter: int, results: dict[str, Any]) -> Variant:
    """The trained PLY as it is (the reference of every ratio)."""
    ply_bytes, num_gaussians = ply.stat().st_size, ply_vertex_count(ply)
    method = render_name(UNCOMPRESSED_METHOD, train_iter)
    psnr, ssim, lpips, source = _quality(results, method, {})
    return Variant(label="uncompressed", method=method, psnr=psnr, ssim=ssim, lpips=lpips,
                   quality_source=source, size_bytes=ply_bytes, num_gaussians=num_gaussians,
                   bits_per_gaussian=8.0 * ply_bytes / max(num_gaussians, 1), ratio=1.0,
                   source=ply)


def _compressed_variants(model: Path, results: dict[str, Any]) -> list[Variant]:
    """Our saved bitstreams (``compression/<layout>/iteration_<k>/report.json``)."""
    variants = []
    for report_path in saved_reports(model):
        rep = read_report(report_path)
        method = render_name(compressed_method(rep["layout"]), rep["iteration"])
        psnr, ssim, lpips, source = _quality(results, method, rep)
        variants.append(Variant(
            label=f"{rep['layout']} @ {rep['iteration']}", method=method, psnr=psnr, ssim=ssim,
            lpips=lpips, quality_source=source, **_size_fields(rep),
            layout=rep["layout"], iteration=int(rep["iteration"]),
            settings=dict(rep.get("settings") or {}),
            source=_bitstream_beside(report_path, rep)))
    return variants


def _training_variants(model: Path) -> list[Variant]:
    """Another training's saved bitstreams, named after its folder (its results.json is
    required: they are compared by metrics.py's quality)."""
    return [replace(v, label=f"{v.label}, {model.name}", method=f"{model.name}_{v.method}",
                    training=model.name)
            for v in _compressed_variants(model, read_json(model / RESULTS_JSON))]


def _peer_variants(model: Path, results: dict[str, Any]) -> list[Variant]:
    """Other tools' codecs run on the model (``compression/peers/<codec>/peer.json``)."""
    variants = []
    for report_path in saved_peer_reports(model):
        rep = read_peer_report(report_path)
        method = peer_method(rep["codec"])
        psnr, ssim, lpips, source = _quality(results, method, rep, "peer.json")
        variants.append(Variant(
            label=rep["label"], method=method, psnr=psnr, ssim=ssim, lpips=lpips,
            quality_source=source, **_size_fields(rep), settings={"tool": rep["tool"]},
            source=report_path.parent / rep["file"], codec=rep["codec"]))
    return variants


def _size_fields(report: dict[str, Any]) -> dict[str, Any]:
    """A variant's sizes, counts and times from its report.json or peer.json."""
    return {"size_bytes": int(report["size_bytes"]),
            "num_gaussians": int(report["num_gaussians"]),
            "bits_per_gaussian": float(report["bits_per_gaussian"]),
            "ratio": float(report["ply_size_bytes"]) / float(report["size_bytes"]),
            "encode_seconds": report["encode_seconds"],
            "decode_seconds": report["decode_seconds"]}


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
