"""CPU training benchmark: the CPU-sized recipe on ../shared/data/statuette (--eval, -r 4).

Prints one JSON object: seconds per iteration, final Gaussian count, final test PSNR.
Usage: ``python benchmarks/bench_training.py [--iterations N] [--resolution R] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from arguments import ModelParams, OptimizationParams, PipelineParams  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from training import TrainOptions, configure_logging, train  # noqa: E402
from utils.eval_utils import evaluate_views  # noqa: E402

SCENE = REPO.parent / "shared" / "data" / "statuette"


def cpu_recipe(iterations: int) -> OptimizationParams:
    """The 3DGS schedule compressed to ``iterations``: densify over the first half, opacity
    resets every third of that window, SH degrees in the first 30%, lr decay over the run."""
    return OptimizationParams(iterations=iterations, position_lr_max_steps=iterations,
                              densify_from_iter=iterations // 10,
                              densify_until_iter=iterations // 2,
                              densification_interval=100,
                              opacity_reset_interval=max(iterations // 3, 1),
                              sh_increase_interval=max(iterations // 10, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument("--resolution", type=int, default=4)
    parser.add_argument("--out", type=str, default=None, help="model folder (default: temp)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if not SCENE.is_dir():
        raise SystemExit(f"{SCENE} not found (../shared/data is needed for this benchmark)")
    configure_logging(args.quiet, sys.stderr)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_training_"))
    dataset = ModelParams(source_path=str(SCENE), model_path=str(out),
                          resolution=args.resolution, eval=True)
    opt = cpu_recipe(args.iterations)
    pipe = PipelineParams()
    start = time.perf_counter()
    scene, gaussians = train(dataset, opt, pipe, TrainOptions(
        test_iterations=[], save_iterations=[], quiet=args.quiet))
    seconds = time.perf_counter() - start
    metrics = evaluate_views(
        lambda cam: render(cam, gaussians, pipe, torch.zeros(3, device=gaussians.device))["render"],
        scene.getTestCameras())
    print(json.dumps({
        "scene": "statuette", "resolution": args.resolution, "iterations": args.iterations,
        "recipe": {k: getattr(opt, k) for k in ("densify_from_iter", "densify_until_iter",
                                                "densification_interval",
                                                "opacity_reset_interval",
                                                "sh_increase_interval")},
        "train_seconds": round(seconds, 1),
        "seconds_per_iteration": round(seconds / args.iterations, 4),
        "num_gaussians": gaussians.num_gaussians,
        "test_views": len(scene.getTestCameras()),
        "test_psnr": round(metrics["psnr"], 2), "test_l1": round(metrics["l1"], 5),
        "model_path": str(out)}))


if __name__ == "__main__":
    main()
