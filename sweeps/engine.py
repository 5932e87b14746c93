"""Run a sweep's steps: on Ray (embedded or a cluster) or serially in this process.

On Ray, every step is a task with declared resources (``cpus_per_job`` CPUs, ``gpus_per_job``
GPUs) running in a worker process; a job's task takes its scene step's task as an argument, so
Ray starts it once that scene is trained, and scenes and jobs of different scenes run side by
side. Without an address Ray runs embedded on this machine (a new local instance: no server to
start, no dashboard); with ``address`` (``auto``, ``ray://host:port``) it joins a running
cluster.

Resuming: a step whose ``sweep_step.json`` says it finished ``ok`` with the same command lines
is not run again (its jobs get status ``skipped``); when a scene step must run, all its jobs
run too (their input changes).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from tqdm import tqdm

from sweeps.plan import JobStep, SceneStep, SweepPlan
from sweeps.steps import (FAILED, OK, SKIPPED, JobResult, SceneResult, failed_job, reusable_result,
                          run_job, run_scene)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Executor:
    """Where and how the steps run.

    Attributes:
        use_ray: False runs the steps one after the other in this process (no Ray).
        address: None: embedded Ray; else the cluster address for ``ray.init``.
        runtime_env: Ray's runtime environment (e.g. ``{"working_dir": "."}``), or None.
        num_cpus: CPUs of the embedded Ray (None: the machine's).
        cpus_per_job: CPUs each step declares; also its OMP/MKL thread count.
        gpus_per_job: GPUs each step declares (None: 1 where Ray sees a GPU, else 0).
    """

    use_ray: bool = True
    address: Optional[str] = None
    runtime_env: Optional[dict[str, Any]] = None
    num_cpus: Optional[int] = None
    cpus_per_job: int = 1
    gpus_per_job: Optional[float] = None


class _Progress:
    """The progress bar over jobs; hands each finished job to ``on_result``."""

    def __init__(self, total: int, quiet: bool,
                 on_result: Callable[[JobResult], None]) -> None:
        self.counts = {OK: 0, SKIPPED: 0, FAILED: 0}
        self.bar = tqdm(total=total, desc="sweep", unit="job", disable=quiet,
                        dynamic_ncols=True)
        self.on_result = on_result

    def add(self, result: JobResult) -> None:
        self.counts[result.status] += 1
        self.bar.set_postfix(self.counts, refresh=False)
        self.bar.update(1)
        self.on_result(result)

    def close(self) -> None:
        self.bar.close()


def execute(plan: SweepPlan, executor: Executor, *, on_result: Callable[[JobResult], None],
            quiet: bool = False) -> tuple[list[SceneResult], list[JobResult]]:
    """Run what is not finished yet and return every scene's and job's result.

    Args:
        plan: the steps.
        executor: Ray or serial, and the resources of each step.
        on_result: called in this process with each job's result as it finishes (skipped and
            unrunnable jobs first).
        quiet: no progress bar.

    Returns:
        ``(scene results, job results)`` in the plan's order.

    Raises:
        KeyboardInterrupt: after cancelling the running steps (their records are not written,
            so a rerun runs them again).
        ValueError: resources no Ray node offers.
    """
    scene_results: dict[str, SceneResult] = {}
    scenes_to_run: list[SceneStep] = []
    for step in plan.scenes:
        recorded = reusable_result(step.folder, step.commands)
        if recorded is None:
            scenes_to_run.append(step)
        else:
            scene_results[step.scene.name] = dataclasses.replace(SceneResult(**recorded),
                                                                 status=SKIPPED)
    done: dict[JobStep, JobResult] = {}
    jobs_to_run: list[JobStep] = []
    progress = _Progress(len(plan.jobs), quiet, on_result)
    try:
        for job in plan.jobs:
            scene = scene_results.get(job.scene.name)
            recorded = (reusable_result(job.folder, job.commands(Path(scene.ply)))
                        if scene is not None and not job.error else None)
            if job.error:
                done[job] = failed_job(job, job.error)
            elif recorded is not None:
                done[job] = dataclasses.replace(JobResult(**recorded), status=SKIPPED)
            else:
                jobs_to_run.append(job)
                continue
            progress.add(done[job])
        needed = {job.scene.name for job in jobs_to_run}
        scenes_to_run = [step for step in scenes_to_run if step.scene.name in needed]
        ran_scenes, ran_jobs = {}, {}
        if jobs_to_run:
            run = _run_on_ray if executor.use_ray else _run_serially
            ran_scenes, ran_jobs = run(scenes_to_run, jobs_to_run, scene_results, executor,
                                       progress)
    finally:
        progress.close()
    scene_results.update(ran_scenes)
    done.update(ran_jobs)
    return ([scene_results[s.scene.name] for s in plan.scenes if s.scene.name in scene_results],
            [done[job] for job in plan.jobs])


def _run_serially(scenes: list[SceneStep], jobs: list[JobStep],
                  finished_scenes: dict[str, SceneResult], executor: Executor,
                  progress: _Progress) -> tuple[dict[str, SceneResult], dict[JobStep, JobResult]]:
    steps = {step.scene.name: step for step in scenes}
    ran_scenes: dict[str, SceneResult] = {}
    ran_jobs: dict[JobStep, JobResult] = {}
    for job in jobs:
        name = job.scene.name
        if name not in finished_scenes and name not in ran_scenes:
            ran_scenes[name] = run_scene(steps[name], executor.cpus_per_job)
        ran_jobs[job] = run_job(job, finished_scenes.get(name) or ran_scenes[name],
                                executor.cpus_per_job)
        progress.add(ran_jobs[job])
    return ran_scenes, ran_jobs


def _init_ray(executor: Executor) -> None:
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                               "runtime_env": executor.runtime_env}
    if executor.address is None:  # "local": a new instance, even where RAY_ADDRESS is set
        options.update(address="local", num_cpus=executor.num_cpus, include_dashboard=False)
        ray.init(**options)
        return
    try:
        ray.init(address=executor.address, **options)
    except ConnectionError as exc:
        raise ValueError(f"--address {executor.address}: no Ray cluster reachable there "
                         f"({' '.join(str(exc).split())})") from None


def _resources(executor: Executor) -> tuple[int, float]:
    """``(cpus, gpus)`` per step, checked against the largest node of the Ray cluster."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    gpus = executor.gpus_per_job
    if gpus is None:
        gpus = 1 if most_gpus > 0 else 0
    for flag, wanted, most in (("--cpus_per_job", executor.cpus_per_job, most_cpus),
                               ("--gpus_per_job", gpus, most_gpus)):
        if wanted > most:  # the steps would wait forever
            raise ValueError(f"{flag} {wanted:g}: no Ray node has that many (largest: "
                             f"{most:g})")
    return executor.cpus_per_job, gpus


def _run_on_ray(scenes: list[SceneStep], jobs: list[JobStep],
                finished_scenes: dict[str, SceneResult], executor: Executor,
                progress: _Progress) -> tuple[dict[str, SceneResult], dict[JobStep, JobResult]]:
    import ray
    from ray.exceptions import RayError

    _init_ray(executor)
    pending: dict[Any, JobStep] = {}
    scene_refs: dict[str, Any] = {}
    try:
        cpus, gpus = _resources(executor)
        logger.info("Ray: %g CPU and %g GPU per step", cpus, gpus)
        scene_task = ray.remote(run_scene).options(num_cpus=cpus, num_gpus=gpus)
        job_task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus)
        scene_refs = {step.scene.name: scene_task.remote(step, cpus) for step in scenes}
        pending = {job_task.remote(job, scene_refs[job.scene.name] if job.scene.name in scene_refs
                                   else finished_scenes[job.scene.name], cpus): job
                   for job in jobs}
        ran_jobs: dict[JobStep, JobResult] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                ran_jobs[job] = ray.get(ready[0])
            except RayError as exc:  # a crashed worker or step, not a failed command
                ran_jobs[job] = failed_job(job, f"Ray: {str(exc).strip().splitlines()[-1]}",
                                           str(job.folder / "job.log"))
            progress.add(ran_jobs[job])
        ran_scenes = {}
        for name, ref in scene_refs.items():
            try:
                ran_scenes[name] = ray.get(ref)
            except RayError:
                pass  # its jobs already carry the error
        return ran_scenes, ran_jobs
    except KeyboardInterrupt:
        running = [*pending, *scene_refs.values()]
        for ref in running:
            ray.cancel(ref)  # the task's subprocess.run kills its command
        ray.wait(running, num_returns=len(running), timeout=10)  # before Ray stops the workers
        raise
    finally:
        ray.shutdown()
