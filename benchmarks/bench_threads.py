"""Training-step time with torch's default thread count and with ours, on an idle CPU and beside
a competing busy process; prints one JSON object.

The step is the real one (``training/trainer.py``: render, L1 + D-SSIM, backward, Adam) on the
bundled lego sample as ``make demo`` trains it (-r 2: 100 px views, white background, 3,000
random initial points, SH degree 3, torch backend); densification is off so that every timed
step sees the same Gaussians. Each measurement is a fresh child process (thread settings are
fixed when OpenMP starts): ``--warmup`` untimed then ``--iterations`` timed steps. The
competitor is a pure-Python busy loop (one CPU, no threads). Configurations:

* ``torch_default``: no thread setting at all (one OpenMP thread per CPU);
* ``torch_default_passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads
  sleep at once instead of spinning first);
* ``one_thread``: ``OMP_NUM_THREADS=1``;
* ``ours``: ``utils.threads.set_threads()``, what every entry point applies without --threads.

    python benchmarks/bench_threads.py [--repeats 3] [--iterations 10] [--warmup 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = {"torch_default": {}, "torch_default_passive": {"OMP_WAIT_POLICY": "PASSIVE"},
           "one_thread": {"OMP_NUM_THREADS": "1"}, "ours": {}}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def child(config: str, warmup: int, iterations: int) -> dict:
    """Time ``iterations`` training steps after ``warmup`` ones, in this process."""
    import torch

    from arguments import ModelParams, OptimizationParams, PipelineParams
    from scene import Scene
    from scene.gaussian_model import GaussianModel
    from training.trainer import TrainOptions, _TrainingLoop, seed_everything
    from utils.threads import set_threads

    if config == "ours":
        set_threads()
    steps = warmup + iterations
    with tempfile.TemporaryDirectory(prefix="bench_threads_") as model_path:
        dataset = ModelParams(source_path=str(REPO / "data" / "lego_sample"),
                              model_path=model_path, resolution=2, white_background=True,
                              eval=True, num_random_points=3000)
        opt = OptimizationParams(iterations=steps, position_lr_max_steps=steps,
                                 densify_from_iter=steps + 1, densify_until_iter=steps + 1,
                                 opacity_reset_interval=steps + 1, sh_increase_interval=1)
        generator = seed_everything(0)
        gaussians = GaussianModel(dataset.sh_degree)
        scene = Scene(dataset, gaussians, seed=0)
        scene.load_images()
        loop = _TrainingLoop(scene, gaussians, opt, PipelineParams(backend="torch"),
                             TrainOptions(test_iterations=[], save_iterations=[]), generator,
                             torch.device("cpu"))
        seconds = []
        for step in range(1, steps + 1):
            start = time.perf_counter()
            loop._step(step)
            seconds.append(time.perf_counter() - start)
    return {"threads": torch.get_num_threads(), "gaussians": gaussians.num_gaussians,
            "seconds": seconds[warmup:]}


def run_child(config: str, warmup: int, iterations: int) -> dict:
    """One measurement in a fresh process whose environment sets only ``config``'s variables."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(CONFIGS[config])
    done = subprocess.run([sys.executable, __file__, "--child", config, "--warmup", str(warmup),
                           "--iterations", str(iterations)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="child runs per configuration")
    parser.add_argument("--iterations", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per run")
    parser.add_argument("--loads", nargs="+", choices=("idle", "busy"), default=["idle", "busy"],
                        help="machine states to measure (default: both)")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.warmup, args.iterations)))
        return

    report: dict = {"cpus": os.cpu_count(), "load_average_before": os.getloadavg(),
                    "iterations": args.iterations, "warmup": args.warmup,
                    "repeats": args.repeats, "cases": {}}
    for load in args.loads:
        competitor = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      if load == "busy" else None)
        try:
            runs: dict[str, list[dict]] = {config: [] for config in CONFIGS}
            for _ in range(args.repeats):  # configurations interleaved, so drifts hit all alike
                for config in CONFIGS:
                    runs[config].append(run_child(config, args.warmup, args.iterations))
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
        for config, results in runs.items():
            every_step = [s for r in results for s in r["seconds"]]
            report["cases"][f"{config}/{load}"] = {
                "threads": results[0]["threads"], "gaussians": results[0]["gaussians"],
                "median_s_per_iteration": round(statistics.median(every_step), 4),
                "run_medians_s": [round(statistics.median(r["seconds"]), 4) for r in results],
                "min_s": round(min(every_step), 4), "max_s": round(max(every_step), 4)}
    cases = report["cases"]
    for config in CONFIGS if len(args.loads) == 2 else []:
        cases[f"{config}/busy"]["slowdown_vs_idle"] = round(
            cases[f"{config}/busy"]["median_s_per_iteration"]
            / cases[f"{config}/idle"]["median_s_per_iteration"], 2)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
