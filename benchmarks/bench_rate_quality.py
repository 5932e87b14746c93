"""Rate/quality benchmark of the codec on ../shared/data/statuette (CPU recipe, --eval).

Trains once with the CPU recipe of ``bench_training.py`` (or loads ``--ply``), then for each
layout (seed; official with ``--codebook_size 256``) compresses a copy of the trained model
and finetunes it, saving at iteration 0 and at the end. Prints one JSON object: the
uncompressed test PSNR and PLY size, and per layout and save the PSNR change, bins.zip size,
bits per Gaussian and the ratio to the uncompressed PLY.

Usage: ``python benchmarks/bench_rate_quality.py [--iterations 2000] [--resolution 8]
[--finetune_iterations 1000] [--out DIR] [--ply PLY]``.
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

from arguments import ModelParams, PipelineParams  # noqa: E402
from benchmarks.bench_training import cpu_recipe  # noqa: E402
from compression.settings import CompressionParams  # noqa: E402
from gaussian_renderer import render  # noqa: E402
from scene import Scene  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from training import TrainOptions, configure_logging, train  # noqa: E402
from training.compress import compress_model, resolve_compression  # noqa: E402
from utils.eval_utils import evaluate_views  # noqa: E402

SCENE = REPO.parent / "shared" / "data" / "statuette"
#: the layouts measured and the settings they take instead of their defaults
LAYOUT_OVERRIDES = {"seed": {}, "official": {"codebook_size": 256}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--finetune_iterations", type=int, default=1000)
    parser.add_argument("--out", type=str, default=None, help="model folder (default: temp)")
    parser.add_argument("--ply", type=str, default=None, help="trained PLY (skips training)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if not SCENE.is_dir():
        raise SystemExit(f"{SCENE} not found (../shared/data is needed for this benchmark)")
    configure_logging(args.quiet, sys.stderr)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_rate_"))
    dataset = ModelParams(source_path=str(SCENE), model_path=str(out),
                          resolution=args.resolution, eval=True)
    pipe = PipelineParams()
    start = time.perf_counter()
    if args.ply:
        gaussians = GaussianModel(dataset.sh_degree)
        gaussians.load_ply(args.ply)
        scene = Scene(dataset, None)
        scene.write_model_files()
    else:
        scene, gaussians = train(dataset, cpu_recipe(args.iterations), pipe,
                                 TrainOptions(test_iterations=[], save_iterations=[],
                                              quiet=args.quiet))
    train_seconds = time.perf_counter() - start
    background = torch.zeros(3, device=gaussians.device)
    base = evaluate_views(lambda cam: render(cam, gaussians, pipe, background)["render"],
                          scene.getTestCameras())["psnr"]
    trained = gaussians.capture_state()
    results = {}
    for layout, overrides in LAYOUT_OVERRIDES.items():
        model = GaussianModel(dataset.sh_degree)
        model.restore_state(trained)
        cfg = CompressionParams(layout=layout, finetune_iterations=args.finetune_iterations,
                                finetune_test_iterations=[0, args.finetune_iterations],
                                **overrides)
        start = time.perf_counter()
        reports = compress_model(model, scene, resolve_compression(cfg, scene=True), pipe, out,
                                 quiet=args.quiet).reports
        seconds = time.perf_counter() - start
        results[layout] = {
            "settings": overrides, "compress_and_finetune_seconds": round(seconds, 1),
            "saves": [{"iteration": r["iteration"], "psnr": round(r["psnr"], 3),
                       "psnr_change_db": round(r["psnr"] - base, 3),
                       "ssim": round(r["ssim"], 4), "size_bytes": r["size_bytes"],
                       "num_gaussians": r["num_gaussians"],
                       "bits_per_gaussian": round(r["bits_per_gaussian"], 1),
                       "ratio_to_ply": round(r["ply_size_bytes"] / r["size_bytes"], 2)}
                      for r in reports]}
    print(json.dumps({
        "scene": "statuette", "resolution": args.resolution,
        "train_iterations": 0 if args.ply else args.iterations,
        "train_seconds": round(train_seconds, 1),
        "finetune_iterations": args.finetune_iterations,
        "test_views": len(scene.getTestCameras()),
        "uncompressed": {"psnr": round(base, 3), "num_gaussians": gaussians.num_gaussians,
                         "ply_size_bytes": reports[0]["ply_size_bytes"]},
        "layouts": results, "model_path": str(out)}, indent=1))


if __name__ == "__main__":
    main()
