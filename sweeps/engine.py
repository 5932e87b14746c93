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

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

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
        cpus_per_job: CPUs each step declares.
        gpus_per_job: GPUs each step declares (None: 1 where Ray sees a GPU, else 0).
        threads_per_job: each step's CPU threads (OMP/MKL, hence torch's through
            ``utils.threads``); None: ``cpus_per_job``, the CPUs Ray reserved for it.
    """

    use_ray: bool = True
    address: Optional[str] = None
    runtime_env: Optional[dict[str, Any]] = None
    num_cpus: Optional[int] = None
    cpus_per_job: int = 1
    gpus_per_job: Optional[float] = None
    threads_per_job: Optional[int] = None

    def __post_init__(self) -> None:
        if self.cpus_per_job < 1 or (self.gpus_per_job is not None and self.gpus_per_job < 0):
            raise ValueError("--cpus_per_job must be at least 1 and --gpus_per_job at least 0")
        if self.threads_per_job is not None and self.threads_per_job < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads_per_job}")
        if not self.use_ray and (self.address or self.runtime_env):
            raise ValueError("--serial runs without Ray: drop --address / --runtime_env")

    @property
    def step_threads(self) -> int:
        """Each step's CPU threads: ``threads_per_job``, else the CPUs the step declares."""
        return self.threads_per_job or self.cpus_per_job


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
        KeyboardInterrupt: after stopping Ray and with it the running steps (their records
            are not written, so a rerun runs them again).
        ValueError: resources no Ray node offers.
    """
    scene_results: dict[str, SceneResult] = {}
    for step in plan.scenes:
        reused = reusable_result(step.folder, step.commands, SceneResult)
        if reused is not None:
            scene_results[step.scene.name] = reused
    done: dict[JobStep, JobResult] = {}
    for job in plan.jobs:
        scene = scene_results.get(job.scene.name)
        if job.error:
            done[job] = failed_job(job, job.error)
        elif scene is not None:
            reused = reusable_result(job.folder, job.commands(Path(scene.ply)), JobResult)
            if reused is not None:
                done[job] = reused
    jobs = [job for job in plan.jobs if job not in done]
    scenes = [step for step in plan.scenes if step.scene.name not in scene_results
              and any(job.scene == step.scene for job in jobs)]
    session = (_ray_session(executor) if executor.use_ray and jobs
               else contextlib.nullcontext((executor.cpus_per_job, 0)))
    with session as (cpus, gpus):
        progress = _Progress(len(plan.jobs), quiet, on_result)
        try:
            for job in plan.jobs:
                if job in done:
                    progress.add(done[job])
            run = _run_on_ray if executor.use_ray else _run_serially
            ran_scenes, ran_jobs = (run(scenes, jobs, scene_results, cpus, gpus,
                                        executor.step_threads, progress) if jobs else ({}, {}))
        finally:
            progress.close()
    scene_results.update(ran_scenes)
    done.update(ran_jobs)
    return ([scene_results[s.scene.name] for s in plan.scenes if s.scene.name in scene_results],
            [done[job] for job in plan.jobs])


StepOutcomes = tuple[dict[str, SceneResult], dict[JobStep, JobResult]]


def _run_serially(scenes: list[SceneStep], jobs: list[JobStep],
                  finished_scenes: dict[str, SceneResult], cpus: int, gpus: float,
                  threads: int, progress: _Progress) -> StepOutcomes:
    """Each scene step when its first job needs it, then the job, on ``threads`` threads;
    CPUs and GPUs are not managed."""
    steps = {step.scene.name: step for step in scenes}
    ran_scenes: dict[str, SceneResult] = {}
    ran_jobs: dict[JobStep, JobResult] = {}
    for job in jobs:
        name = job.scene.name
        if name not in finished_scenes and name not in ran_scenes:
            ran_scenes[name] = run_scene(steps[name], threads)
        scene = finished_scenes[name] if name in finished_scenes else ran_scenes[name]
        ran_jobs[job] = run_job(job, scene, threads)
        progress.add(ran_jobs[job])
    return ran_scenes, ran_jobs


@contextlib.contextmanager
def _ray_session(executor: Executor) -> Iterator[tuple[int, float]]:
    """Ray started (embedded) or joined (``address``) for the block; yields ``(cpus, gpus)``
    per step, checked against the largest node so that no step waits forever.

    Leaving the block (an interrupt included) calls ``ray.shutdown()``, which is also what
    stops the steps still running: an embedded Ray stops its workers, a cluster kills the
    workers of a driver that left, and a Ray worker kills its child processes (the step's
    command) as it exits; no ``sweep_step.json`` of an unfinished step is written. The steps
    are deliberately not ``ray.cancel``-ed first: cancelling a task whose reply is arriving
    (a sibling job finishing with the one just collected) aborts this process inside Ray's
    core worker ("Check failed: ... Tried to complete task that was not pending", exit 1).
    """
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "runtime_env": executor.runtime_env}
    if executor.address is None:  # "local": a new instance, even where RAY_ADDRESS is set
        ray.init(address="local", num_cpus=executor.num_cpus, include_dashboard=False,
                 logging_level=logging.ERROR, **options)
    else:
        try:
            ray.init(address=executor.address, logging_level=logging.WARNING, **options)
        except ConnectionError as exc:
            raise ValueError(f"--address {executor.address}: no Ray cluster reachable there "
                             f"({' '.join(str(exc).split())})") from None
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
        most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
        gpus = executor.gpus_per_job
        if gpus is None:
            gpus = 1 if most_gpus > 0 else 0
        for flag, wanted, most in (("--cpus_per_job", executor.cpus_per_job, most_cpus),
                                   ("--gpus_per_job", gpus, most_gpus)):
            if wanted > most:
                raise ValueError(f"{flag} {wanted:g}: no Ray node has that many (largest: "
                                 f"{most:g})")
        logger.info("Ray: %g CPU and %g GPU per step", executor.cpus_per_job, gpus)
        yield executor.cpus_per_job, gpus
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """For the block, SIGINT sets the yielded event instead of raising KeyboardInterrupt where
    it lands: Ray's core worker runs Python's signal handlers from inside its own calls, and a
    KeyboardInterrupt raised there was seen to vanish (the interrupted sweep ran on to its end).
    The caller checks the event between short waits. Outside the main thread (which alone
    receives signals) nothing is installed."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_on_ray(scenes: list[SceneStep], jobs: list[JobStep],
                finished_scenes: dict[str, SceneResult], cpus: int, gpus: float,
                threads: int, progress: _Progress) -> StepOutcomes:
    """Submit every step as a Ray task declaring ``cpus`` and ``gpus``, its commands on
    ``threads`` threads; collect the jobs as they finish."""
    import ray
    from ray.exceptions import RayError

    scene_task = ray.remote(run_scene).options(num_cpus=cpus, num_gpus=gpus)
    job_task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus)
    scene_refs = {step.scene.name: scene_task.remote(step, threads) for step in scenes}
    pending = {job_task.remote(job, scene_refs[job.scene.name] if job.scene.name in scene_refs
                               else finished_scenes[job.scene.name], threads): job
               for job in jobs}
    ran_jobs: dict[JobStep, JobResult] = {}
    # Ctrl-C propagates from here without ray.cancel: the session's ray.shutdown() stops the
    # steps (see _ray_session)
    with _sigint_flag() as interrupted:
        while pending and not interrupted.is_set():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if not ready:
                continue
            job = pending.pop(ready[0])
            try:
                ran_jobs[job] = ray.get(ready[0])
            except RayError as exc:  # a crashed worker or step, not a failed command
                ran_jobs[job] = failed_job(job, f"Ray: {str(exc).strip().splitlines()[-1]}",
                                           str(job.folder / "job.log"))
            progress.add(ran_jobs[job])
        if interrupted.is_set():
            raise KeyboardInterrupt
    ran_scenes = {}
    for name, ref in scene_refs.items():
        try:
            ran_scenes[name] = ray.get(ref)
        except RayError:
            pass  # its jobs carry the error
    return ran_scenes, ran_jobs
