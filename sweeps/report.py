"""``sweep.html``: the averages, one rate–distortion plot per scene and an aggregate, every job.

Self-contained like ``report.html`` (plots embedded as base64 PNG data URIs). The rate is bits
per input Gaussian (archive bytes × 8 / Gaussians before pruning), so that settings that prune
differently compare by their total size and scenes of different sizes can be averaged.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from statistics import fmean
from typing import Optional, Sequence

from reporting.figures import finish_rd_plot, rd_figure
from reporting.html_helpers import data_uri, html_page, html_table
from reporting.table import number_text
from sweeps.steps import FAILED, JobResult, SceneResult
from sweeps.table import average_cells, dataset_averages
from utils.system_utils import atomic_path

Point = tuple[float, float, str]  # (bits per input Gaussian, PSNR, label)


def _rate(result: JobResult) -> float:
    return 8.0 * result.size_bytes / result.input_gaussians


def _baseline(scene: SceneResult) -> Optional[tuple[float, float]]:
    if scene.status == FAILED or scene.psnr is None:
        return None
    return 8.0 * scene.ply_bytes / scene.input_gaussians, scene.psnr


def rd_plot_png(series: dict[str, list[Point]], baseline: Optional[tuple[float, float]],
                title: str) -> bytes:
    """PSNR against bits per input Gaussian (log x) as PNG bytes: one line per layout through
    its settings (labelled), the uncompressed PLY as a star."""
    fig, ax = rd_figure((6.4, 4.0))
    for index, (layout, points) in enumerate(series.items()):
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=f"C{index}",
                label=layout)
        for x, y, label in points:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=f"C{index}")
    ax.set_title(title, fontsize=10)
    return finish_rd_plot(fig, ax, "bits per input Gaussian", baseline)


def _scene_series(jobs: Sequence[JobResult]) -> dict[str, list[Point]]:
    series: dict[str, list[Point]] = {}
    for job in jobs:
        if job.status != FAILED:
            series.setdefault(job.layout, []).append((_rate(job), job.psnr, job.setting))
    return series


def _aggregate(jobs: Sequence[JobResult], scenes: Sequence[SceneResult]
               ) -> tuple[dict[str, list[Point]], Optional[tuple[float, float]], list[str]]:
    """Means over the scenes whose every job finished: per layout, one point per setting."""
    complete = [name for name in dict.fromkeys(j.scene for j in jobs)
                if all(j.status != FAILED for j in jobs if j.scene == name)]
    kept = [j for j in jobs if j.scene in complete]
    series: dict[str, list[Point]] = {}
    for layout in dict.fromkeys(j.layout for j in kept):
        for setting in dict.fromkeys(j.setting for j in kept if j.layout == layout):
            same = [j for j in kept if (j.layout, j.setting) == (layout, setting)]
            series.setdefault(layout, []).append(
                (fmean(_rate(j) for j in same), fmean(j.psnr for j in same), setting))
    baselines = [b for s in scenes if s.scene in complete and (b := _baseline(s))]
    baseline = ((fmean(b[0] for b in baselines), fmean(b[1] for b in baselines))
                if baselines and len(baselines) == len(complete) else None)
    return series, baseline, complete


#: the numeric columns of the jobs and scenes tables: (header, result field, format)
_JOB_NUMBERS = (("PSNR", "psnr", ".2f"), ("SSIM", "ssim", ".4f"), ("LPIPS", "lpips", ".4f"),
                ("bytes", "size_bytes", "d"), ("bits/Gaussian", "bits_per_gaussian", ".1f"),
                ("#Gaussians", "num_gaussians", "d"), ("input Gaussians", "input_gaussians", "d"),
                ("finetune it.", "finetune_iterations", "d"),
                ("encode s", "encode_seconds", ".2f"), ("decode s", "decode_seconds", ".2f"),
                ("finetune s", "finetune_seconds", ".1f"), ("job s", "job_seconds", ".1f"))
_SCENE_NUMBERS = (("PSNR", "psnr", ".2f"), ("SSIM", "ssim", ".4f"), ("LPIPS", "lpips", ".4f"),
                  ("PLY bytes", "ply_bytes", "d"), ("input Gaussians", "input_gaussians", "d"))


def _job_cells(jobs: Sequence[JobResult]) -> list[list[str]]:
    return [["scene", "setting", "layout", "status", *(h for h, _, _ in _JOB_NUMBERS)]] + [
        [j.scene, j.setting, j.layout, j.status,
         *(number_text(getattr(j, name), spec) for _, name, spec in _JOB_NUMBERS)]
        for j in jobs]


def _scene_cells(scenes: Sequence[SceneResult]) -> list[list[str]]:
    return [["scene", "dataset", "status", *(h for h, _, _ in _SCENE_NUMBERS)]] + [
        [s.scene, s.dataset, s.status,
         *(number_text(getattr(s, name), spec) for _, name, spec in _SCENE_NUMBERS)]
        for s in scenes]


def _failure_cells(jobs: Sequence[JobResult], out_dir: Path) -> list[list[str]]:
    cells = [["scene", "setting", "layout", "error", "log"]]
    for j in jobs:
        if j.status == FAILED:
            log = os.path.relpath(j.log, out_dir) if j.log else "-"
            cells.append([j.scene, j.setting, j.layout, j.error, log])
    return cells


def build_html(out_dir: Path, jobs: Sequence[JobResult], scenes: Sequence[SceneResult]) -> str:
    """The whole page as one string."""
    counts = {status: sum(j.status == status for j in jobs) for status in ("ok", "skipped",
                                                                            FAILED)}
    title = f"Sweep report: {out_dir.name}"
    sections = [f"<h1>{html.escape(title)}</h1>",
                f'<p class="note">Sweep folder <code>{html.escape(str(out_dir))}</code>: '
                f"{len(jobs)} jobs ({counts['ok']} ok, {counts['skipped']} skipped: finished by an "
                f"earlier run, {counts[FAILED]} failed). Quality: metrics.py on the test views "
                "rendered from each bitstream alone; sizes and times: the codec's report.json.</p>"]
    averages = dataset_averages(jobs)
    if averages:
        sections += ["<h2>Per-dataset averages</h2>", html_table(average_cells(averages),
                                                                 numeric_from=3)]
    series, baseline, complete = _aggregate(jobs, scenes)
    sections.append("<h2>Rate–distortion</h2>")
    if series:
        sections += [f'<p class="note">All scenes: means over the {len(complete)} scenes whose '
                     f"every job finished ({html.escape(', '.join(complete))}).</p>",
                     f'<img alt="aggregate rate-distortion plot" src="'
                     f'{data_uri(rd_plot_png(series, baseline, "mean over scenes"))}">']
    baselines = {s.scene: _baseline(s) for s in scenes}
    for name in dict.fromkeys(j.scene for j in jobs):
        scene_series = _scene_series([j for j in jobs if j.scene == name])
        if scene_series:
            png = rd_plot_png(scene_series, baselines.get(name), name)
            sections.append(f'<img alt="rate-distortion plot of {html.escape(name)}" '
                            f'src="{data_uri(png)}">')
    sections += ["<h2>Jobs</h2>", html_table(_job_cells(jobs), numeric_from=4)]
    if counts[FAILED]:
        sections += ["<h2>Failed jobs</h2>", html_table(_failure_cells(jobs, out_dir),
                                                        numeric_from=5)]
    sections += ["<h2>Scenes (uncompressed)</h2>",
                 html_table(_scene_cells(scenes), numeric_from=3)]
    return html_page(title, sections)


def write_html(path: Path, out_dir: Path, jobs: Sequence[JobResult],
               scenes: Sequence[SceneResult]) -> Path:
    """Write :func:`build_html` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(build_html(out_dir, jobs, scenes), encoding="utf-8")
    return path
