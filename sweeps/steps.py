"""The body of each sweep step: run its command lines as subprocesses, read what they wrote.

A step runs in a clean folder (emptied first), one subprocess per command line with the
project's own scripts and this interpreter, stdout and stderr into one log file. A finished
step writes ``sweep_step.json`` (atomically, last): its result and its command lines, so that a
later sweep with the same command lines reuses it instead of running it again. The functions
here are what a Ray task runs (``sweeps.engine``); they work the same in-process.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

from scene.formats import ply_vertex_count
from scene.interop import standard_ply
from sweeps.plan import Command, JobStep, SceneStep
from utils.output_paths import (GIVEN_SUFFIX, JOB_LOG, REPORT_JSON, RESULTS_JSON, SCENE_LOG,
                                SWEEP_STEP_JSON, UNCOMPRESSED_METHOD, compressed_method,
                                iteration_dir, layout_dir, point_cloud_dir, point_cloud_path,
                                render_name)
from utils.result_files import read_json, read_report
from utils.system_utils import atomic_path, searchForMaxIteration

PROJECT = Path(__file__).resolve().parents[1]  # where train.py, render.py, metrics.py are
_ERROR_LINE = re.compile(r"^[\w.-]+\.py: error: .*$", re.MULTILINE)
_MAX_ERROR_CHARS = 400

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass(frozen=True)
class SceneResult:
    """The outcome of a scene step: the PLY the jobs compress and the uncompressed scores."""

    scene: str
    dataset: str
    status: str                      # ok | skipped | failed
    ply: Optional[str] = None
    input_gaussians: Optional[int] = None
    ply_bytes: Optional[int] = None
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    lpips: Optional[float] = None
    error: str = ""
    log: str = ""


@dataclass(frozen=True)
class JobResult:
    """One row of ``sweep.csv`` (its fields are the columns, in this order).

    Quality comes from metrics.py on the test views rendered from the bitstream alone; size,
    counts and codec times from the codec's report.json of the last finetune iteration.
    ``input_gaussians`` counts the Gaussians before pruning (the scene step's PLY);
    ``job_seconds`` is the wall time of the whole job.
    """

    scene: str
    dataset: str
    setting: str
    layout: str
    status: str                      # ok | skipped | failed
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    lpips: Optional[float] = None
    size_bytes: Optional[int] = None
    bits_per_gaussian: Optional[float] = None
    num_gaussians: Optional[int] = None
    input_gaussians: Optional[int] = None
    finetune_iterations: Optional[int] = None
    encode_seconds: Optional[float] = None
    decode_seconds: Optional[float] = None
    finetune_seconds: Optional[float] = None
    job_seconds: Optional[float] = None
    error: str = ""
    log: str = ""
    folder: str = ""


StepResult = TypeVar("StepResult", SceneResult, JobResult)


# ------------------------------------------------------------------------------ records

def _write_record(folder: Path, result: SceneResult | JobResult,
                  commands: Sequence[Command]) -> None:
    record = {"commands": [list(c) for c in commands], "result": dataclasses.asdict(result)}
    with atomic_path(folder / SWEEP_STEP_JSON) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def reusable_result(folder: Path, commands: Sequence[Command], kind: type[StepResult]
                    ) -> Optional[StepResult]:
    """The recorded result of a step that finished ``ok`` with the same command lines, as
    ``kind`` with status ``skipped``; None when the step must run.

    An unreadable or outdated record counts as absent (the step runs again).
    """
    try:
        record = json.loads((folder / SWEEP_STEP_JSON).read_text())
        if record["commands"] != [list(c) for c in commands] or record["result"]["status"] != OK:
            return None
        return dataclasses.replace(kind(**record["result"]), status=SKIPPED)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------ running

def error_line(log: Path) -> str:
    """The ``<program>: error: ...`` line of a failed command, else its last log line."""
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 65536))
        tail = handle.read().decode("utf-8", errors="replace")
    errors = _ERROR_LINE.findall(tail)
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    line = errors[-1] if errors else (lines[-1] if lines else "no output")
    return line[:_MAX_ERROR_CHARS]


def run_commands(commands: Sequence[Command], folder: Path, log_name: str,
                 threads: int) -> Optional[str]:
    """Empty ``folder``, then run each command there until one fails.

    Each command is ``(script, *arguments)`` with a script of this project; it runs with this
    interpreter, from the project folder, ``threads`` threads (``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS``, which the entry points' ``utils.threads`` default follows) and its
    output appended to ``folder/log_name``. An interrupt (Ctrl-C in a serial sweep) kills
    the running command and propagates.

    Returns:
        None when every command succeeded, else ``"<script> exited with status <n>: <its
        error line>"``.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    log = folder / log_name
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w") as out:
        for script, *arguments in commands:
            out.write(f"$ {shlex.join([script, *arguments])}\n")
            out.flush()
            status = subprocess.run([sys.executable, str(PROJECT / script), *arguments],
                                    cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT).returncode
            if status != 0:
                return f"{script} exited with status {status}: {error_line(log)}"
    return None


def _scores(model_path: Path, method: str) -> dict[str, Any]:
    """metrics.py's averages of one render method of a model folder.

    Raises:
        FileNotFoundError, ValueError: no results.json, or no entry for ``method``.
    """
    path = model_path / RESULTS_JSON
    scores = read_json(path).get(method)
    if scores is None:
        raise ValueError(f"{path}: no entry for {method}")
    return scores


def run_scene(step: SceneStep, threads: int) -> SceneResult:
    """Train (or check the given model file of) one scene and score the uncompressed model."""
    log = step.folder / SCENE_LOG
    error = run_commands(step.commands, step.folder, log.name, threads)
    fields: dict[str, Any] = {}
    if error is None:
        try:
            if step.given_ply is not None:  # render.py draws it as ours_given
                ply, method = step.given_ply, render_name(UNCOMPRESSED_METHOD, GIVEN_SUFFIX)
            else:
                iteration = searchForMaxIteration(point_cloud_dir(step.folder))
                ply = point_cloud_path(step.folder, iteration)
                method = render_name(UNCOMPRESSED_METHOD, iteration)
            scores = _scores(step.folder, method)
            with standard_ply(ply) as readable:  # another tool's format: converted to count
                input_gaussians = ply_vertex_count(readable)
            fields = {"ply": str(ply), "input_gaussians": input_gaussians,
                      "ply_bytes": ply.stat().st_size, "psnr": scores["PSNR"],
                      "ssim": scores["SSIM"], "lpips": scores.get("LPIPS")}
        except (FileNotFoundError, ValueError, KeyError) as exc:
            error = f"reading the scene step's outputs: {exc}"
    result = SceneResult(step.scene.name, step.scene.dataset, FAILED if error else OK,
                         error=error or "", log=str(log), **fields)
    _write_record(step.folder, result, step.commands)
    return result


def failed_job(job: JobStep, error: str, log: str = "") -> JobResult:
    """The row of a job that could not run (a planning error or a failed scene step)."""
    return JobResult(job.scene.name, job.scene.dataset, job.setting, job.layout, FAILED,
                     error=error[:_MAX_ERROR_CHARS], log=log, folder=str(job.folder))


def run_job(job: JobStep, scene: SceneResult, threads: int) -> JobResult:
    """Compress the scene's PLY with the job's setting, render from the bitstream, score it."""
    if job.error:
        return failed_job(job, job.error)
    if scene.status == FAILED:
        return failed_job(job, f"scene step failed: {scene.error}", scene.log)
    start = time.perf_counter()
    commands = job.commands(Path(scene.ply))
    log = job.folder / JOB_LOG
    error = run_commands(commands, job.folder, log.name, threads)
    fields: dict[str, Any] = {}
    if error is None:
        try:
            latest = searchForMaxIteration(layout_dir(job.folder, job.layout))
            report = read_report(iteration_dir(job.folder, job.layout, latest) / REPORT_JSON)
            scores = _scores(job.folder, render_name(compressed_method(job.layout), latest))
            fields = {"psnr": scores["PSNR"], "ssim": scores["SSIM"],
                      "lpips": scores.get("LPIPS"), "size_bytes": report["size_bytes"],
                      "bits_per_gaussian": report["bits_per_gaussian"],
                      "num_gaussians": report["num_gaussians"],
                      "input_gaussians": scene.input_gaussians,
                      "finetune_iterations": report["iteration"],
                      "encode_seconds": report["encode_seconds"],
                      "decode_seconds": report["decode_seconds"],
                      "finetune_seconds": report["finetune_seconds"]}
        except (FileNotFoundError, ValueError, KeyError) as exc:
            error = f"reading the job's outputs: {exc}"
    result = JobResult(job.scene.name, job.scene.dataset, job.setting, job.layout,
                       FAILED if error else OK, job_seconds=time.perf_counter() - start,
                       error=error or "", log=str(log), folder=str(job.folder), **fields)
    _write_record(job.folder, result, commands)
    return result
