"""``sweep.csv`` (one row per job) and the per-dataset averages in the paper's table format.

The averages put our jobs (status ok or skipped) beside the MesonGS paper's published results
(``sweeps.published``) for the same scenes where the scene names and the configuration match
(the paper publishes c1 and c3).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Optional, Sequence

from sweeps.published import PUBLISHED
from sweeps.steps import FAILED, JobResult
from utils.system_utils import atomic_path

COLUMNS = tuple(field.name for field in dataclasses.fields(JobResult))
PAPER_METHOD = "MesonGS (paper)"


def _cell(name: str, value: object, out_dir: Path) -> str:
    if value is None or value == "":
        return ""
    if name in ("log", "folder"):
        return os.path.relpath(str(value), out_dir)
    return format(value, ".6g") if isinstance(value, float) else str(value)


def write_sweep_csv(path: Path, results: Sequence[JobResult], out_dir: Path) -> Path:
    """Write ``sweep.csv`` atomically: header :data:`COLUMNS`, one row per result.

    Empty cells stand for unknown values (failed jobs, LPIPS without weights); ``log`` and
    ``folder`` are relative to ``out_dir``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in results:
        writer.writerow([_cell(name, getattr(result, name), out_dir) for name in COLUMNS])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path


@dataclass(frozen=True)
class AverageRow:
    """Means over the scenes of one dataset for one setting and method."""

    dataset: str
    setting: str
    method: str          # "ours (<layout>)" or PAPER_METHOD
    scenes: int
    psnr: float
    ssim: float
    lpips: Optional[float]
    size_bytes: float
    num_gaussians: float
    bytes_per_gaussian: float


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    return None if not values or any(v is None for v in values) else fmean(values)


def dataset_averages(results: Sequence[JobResult]) -> list[AverageRow]:
    """Per (dataset, setting): one row per layout over its finished scenes, then the paper's
    row over the same scenes when the paper published every one of them for that setting."""
    finished = [r for r in results if r.status != FAILED]
    groups = list(dict.fromkeys((r.dataset, r.setting) for r in finished))
    rows: list[AverageRow] = []
    for dataset, setting in groups:
        group = [r for r in finished if (r.dataset, r.setting) == (dataset, setting)]
        for layout in dict.fromkeys(r.layout for r in group):
            ours = [r for r in group if r.layout == layout]
            rows.append(AverageRow(
                dataset, setting, f"ours ({layout})", len(ours), fmean(r.psnr for r in ours),
                fmean(r.ssim for r in ours), _mean([r.lpips for r in ours]),
                fmean(r.size_bytes for r in ours), fmean(r.num_gaussians for r in ours),
                fmean(r.size_bytes / r.num_gaussians for r in ours)))
        scenes = list(dict.fromkeys(r.scene for r in group))
        paper = [PUBLISHED.get((scene, setting)) for scene in scenes]
        if all(p is not None for p in paper):
            rows.append(AverageRow(
                dataset, setting, PAPER_METHOD, len(paper), fmean(p.psnr for p in paper),
                fmean(p.ssim for p in paper), fmean(p.lpips for p in paper),
                fmean(p.size_bytes for p in paper), fmean(p.num_gaussians for p in paper),
                fmean(p.size_bytes / p.num_gaussians for p in paper)))
    return rows


def average_cells(rows: Sequence[AverageRow]) -> list[list[str]]:
    """The averages as text cells, header first (shared by the Markdown and the HTML)."""
    cells = [["Dataset", "Setting", "Method", "Scenes", "PSNR", "SSIM", "LPIPS", "Size [MB]",
              "#Gaussians", "bytes/Gaussian"]]
    for row in rows:
        cells.append([row.dataset, row.setting, row.method, str(row.scenes), f"{row.psnr:.2f}",
                      f"{row.ssim:.4f}", "-" if row.lpips is None else f"{row.lpips:.4f}",
                      f"{row.size_bytes / 1e6:.3f}", f"{row.num_gaussians:.0f}",
                      f"{row.bytes_per_gaussian:.2f}"])
    return cells


def averages_markdown(rows: Sequence[AverageRow]) -> str:
    """A Markdown table of :func:`average_cells` with a line saying what it averages."""
    cells = average_cells(rows)
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(cells[0]))
    note = (f"Means over the scenes of each dataset (jobs with status ok or skipped; test views; "
            f"size = bytes of the compressed archive, 1 MB = 10^6 bytes). {PAPER_METHOD}: the "
            f"published MesonGS results for the same scenes (c1 and c3 only).")
    return note + "\n\n" + "\n".join(lines) + "\n"
