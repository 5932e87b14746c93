"""Sweeps over scenes × settings × layouts, run as Ray tasks (``python sweep.py``).

``run_sweep(SweepOptions(...))`` plans the steps (``plan``), runs them on Ray or serially
(``engine``, each step's body in ``steps``), and writes into the sweep folder:

* ``sweep.csv``: one row per job (``table.COLUMNS``), status ok, skipped or failed;
* ``sweep_averages.md``: per-dataset averages beside the paper's published numbers;
* ``sweep.html``: the averages, one rate–distortion plot per scene and an aggregate, every job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from compression.layouts import PAPER_LAYOUT
from sweeps.engine import Executor, execute
from sweeps.plan import (build_plan, config_settings, find_scenes, grid_settings, split_grid,
                         training_points, with_training_points)
from sweeps.report import write_html
from sweeps.steps import FAILED, JobResult, SceneResult
from sweeps.table import averages_markdown, dataset_averages, write_sweep_csv
from utils.output_paths import SWEEP_AVERAGES_MD, SWEEP_CSV, SWEEP_HTML
from utils.system_utils import atomic_path

__all__ = ["Executor", "SweepOptions", "SweepSummary", "run_sweep"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SweepOptions:
    """What to sweep and where to write it.

    Attributes:
        scenes: scene folders or folders of scene folders.
        out_dir: the sweep folder.
        configs: paper configurations (c1, c2, c3), or empty when ``grid`` is given.
        grid: ``key=v1,v2`` axes over compression flags (settings) and training flags (one
            scene step per point), or empty when ``configs`` is given.
        layouts: codec layouts (names in ``compression.layouts.LAYOUTS``); every setting runs
            with each.
        extra_flags: parsed train.py flags (name → value) for every step; must hold ``eval``.
        given_ply_pattern: compress ``<scene>``-patterned model files instead of training (a
            PLY or any format ``train.py --given_ply_path`` reads).
        lpips_weights: LPIPS weights for metrics.py (None: its default, torchvision's VGG16
            from torch's cache).
        executor: Ray (embedded or a cluster) or serial, and the resources of each step.
    """

    scenes: Sequence[str | Path]
    out_dir: Path
    configs: Sequence[str] = ()
    grid: Sequence[str] = ()
    layouts: Sequence[str] = (PAPER_LAYOUT,)
    extra_flags: Mapping[str, Any] = field(default_factory=dict)
    given_ply_pattern: Optional[str] = None
    lpips_weights: Optional[Path] = None
    executor: Executor = Executor()


@dataclass(frozen=True)
class SweepSummary:
    """The results of a sweep and the files written."""

    jobs: list[JobResult]
    scenes: list[SceneResult]
    csv: Path
    averages: Path
    html: Path

    @property
    def failed(self) -> list[JobResult]:
        """The jobs that failed."""
        return [job for job in self.jobs if job.status == FAILED]


def run_sweep(options: SweepOptions, quiet: bool = False) -> SweepSummary:
    """Plan, run (resuming finished steps) and report a sweep.

    ``sweep.csv`` is rewritten after every finished job, so an interrupted sweep leaves the
    rows of the jobs that finished; the averages and the HTML are written at the end.

    Raises:
        FileNotFoundError, ValueError: bad scenes, settings, layouts or flags (nothing runs).
        KeyboardInterrupt: the sweep was interrupted (finished jobs are kept).
    """
    if bool(options.configs) == bool(options.grid):
        raise ValueError("give either --configs or --grid")
    codec_axes, training_axes = split_grid(options.grid)
    settings = (config_settings(options.configs) if options.configs
                else grid_settings(codec_axes))
    scenes = with_training_points(find_scenes(options.scenes), training_points(training_axes))
    out_dir = Path(options.out_dir).absolute()
    weights = Path(options.lpips_weights).absolute() if options.lpips_weights else None
    if weights is not None and not weights.is_file():
        raise FileNotFoundError(f"{options.lpips_weights}: LPIPS weights not found")
    plan = build_plan(scenes, settings, options.layouts, out_dir,
                      options.extra_flags, given_ply_pattern=options.given_ply_pattern,
                      lpips_weights=weights)
    csv_path = out_dir / SWEEP_CSV
    finished: dict[tuple[str, str, str], JobResult] = {}
    order = [(job.scene.name, job.setting, job.layout) for job in plan.jobs]

    def record(result: JobResult) -> None:
        finished[(result.scene, result.setting, result.layout)] = result
        write_sweep_csv(csv_path, [finished[key] for key in order if key in finished], out_dir)

    logger.info("sweep: %d scenes, %d settings, %d layouts: %d jobs into %s", len(plan.scenes),
                len(settings), len(options.layouts), len(plan.jobs), out_dir)
    scenes, jobs = execute(plan, options.executor, on_result=record, quiet=quiet)
    write_sweep_csv(csv_path, jobs, out_dir)
    averages_path = out_dir / SWEEP_AVERAGES_MD
    with atomic_path(averages_path) as tmp:
        tmp.write_text(averages_markdown(dataset_averages(jobs)))
    html_path = write_html(out_dir / SWEEP_HTML, out_dir, jobs, scenes)
    return SweepSummary(jobs, scenes, csv_path, averages_path, html_path)
