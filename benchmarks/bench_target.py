"""Size targets against the quality ladder (``--layout compact``) on trained models.

For each model folder (``train.py`` output: cfg_args names the scene, its resolution and
background; the latest ``point_cloud/iteration_<N>/point_cloud.ply`` is compressed) and each
``--quality`` level of ``--levels``: compress at that level with the finetune, then with
``--target_size`` set to the level's finetuned size, so that the target's file and the
level's file have about the same size and their PSNRs compare directly. One evaluation (the
held-out test views) at the end of each finetune, and the level's file is also saved before
its finetune (its growth through the finetune, what ``FINETUNE_SIZE_RATIO`` predicts). Prints
one JSON object (with the date, the load average at start and end, and the ratio the search
used): per model and level the ladder's size, growth and PSNR, the target's size reached,
whether it lies in [97 %, 100 %], its PSNR and the difference, the ladder position found, the
probes, the voxels the fit dropped and the search's seconds.

Usage: ``python benchmarks/bench_target.py MODEL [MODEL ...] [--levels 3 5 7]
[--finetune_iterations 500] [--seed 0] [--out DIR]``; ``--seed`` is ``train.py``'s (the
finetune's randomness), the same for the ladder's and the target's runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import ModelParams, PipelineParams, read_cfg_args  # noqa: E402
from compression.settings import ByteSize, CompressionParams  # noqa: E402
from scene import Scene  # noqa: E402
from scene.formats import ply_vertex_count  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from training import configure_logging  # noqa: E402
from training.compress import (FINETUNE_SIZE_RATIO, compress_model,  # noqa: E402
                               resolve_compression)
from utils.system_utils import searchForMaxIteration  # noqa: E402


def _scene(model: Path, out: Path) -> tuple[Scene, Path, ModelParams]:
    """The model's scene (as cfg_args describes it) and its latest trained PLY."""
    cfg = read_cfg_args(model / "cfg_args")
    dataset = ModelParams(source_path=cfg["source_path"], model_path=str(out),
                          resolution=cfg["resolution"], eval=True,
                          white_background=cfg["white_background"],
                          sh_degree=cfg["sh_degree"])
    iteration = searchForMaxIteration(model / "point_cloud")
    ply = model / "point_cloud" / f"iteration_{iteration}" / "point_cloud.ply"
    return Scene(dataset, None), ply, dataset


def _compress(scene: Scene, ply: Path, dataset: ModelParams, out: Path, iterations: int,
              quiet: bool, tests: list[int], seed: int, **flags) -> tuple[dict, dict]:
    """compress_model on a fresh copy of the model into ``out``, saved at ``tests``: the first
    and the last save's reports, the last with the run's seconds."""
    shutil.rmtree(out, ignore_errors=True)
    gaussians = GaussianModel(dataset.sh_degree)
    gaussians.load_ply(ply)
    cfg = CompressionParams(layout="compact", finetune_iterations=iterations,
                            finetune_test_iterations=tests, **flags)
    start = time.perf_counter()
    reports = compress_model(gaussians, scene, resolve_compression(cfg, scene=True),
                             PipelineParams(), out, quiet=quiet, seed=seed).reports
    return reports[0], {**reports[-1], "run_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="trained model folders")
    parser.add_argument("--levels", nargs="+", type=int, default=[3, 5, 7])
    parser.add_argument("--finetune_iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="train.py's --seed (0)")
    parser.add_argument("--out", type=str, default=None, help="work folder (default: temp)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    configure_logging(args.quiet, sys.stderr)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_target_"))
    started, load = datetime.now(timezone.utc).isoformat(timespec="seconds"), os.getloadavg()
    results = {}
    for folder in map(Path, args.models):
        scene, ply, dataset = _scene(folder, work / folder.name)
        rows = []
        for level in args.levels:
            unfinetuned, ladder = _compress(scene, ply, dataset, work / folder.name / f"q{level}",
                                            args.finetune_iterations, args.quiet,
                                            [0, args.finetune_iterations], args.seed,
                                            quality=level)
            target_bytes = ladder["size_bytes"]
            _, sized = _compress(scene, ply, dataset, work / folder.name / f"t{level}",
                                 args.finetune_iterations, args.quiet,
                                 [args.finetune_iterations], args.seed,
                                 target_size=ByteSize(target_bytes))
            target = sized["target"]
            rows.append({
                "quality": level, "ladder_bytes": ladder["size_bytes"],
                "ladder_psnr": round(ladder["psnr"], 3),
                "ladder_growth": round(ladder["size_bytes"] / unfinetuned["size_bytes"], 4),
                "target_bytes": target_bytes,
                "reached_bytes": sized["size_bytes"],
                "share_of_target": round(sized["size_bytes"] / target_bytes, 4),
                "within": target["within"], "target_psnr": round(sized["psnr"], 3),
                "psnr_minus_ladder": round(sized["psnr"] - ladder["psnr"], 3),
                "ladder_position": round(target["settings"]["ladder_position"], 3),
                "outcome": target["outcome"], "probes": len(target["search"]["probes"]),
                "fit_probes": len((target["fit"] or {}).get("probes", [])),
                "fit_dropped_voxels": (target["fit"]["probes"][0]["num_gaussians"]
                                       - sized["num_gaussians"]) if target["fit"] else None,
                "search_seconds": round(target["search"]["seconds"], 1),
                "ladder_run_seconds": round(ladder["run_seconds"], 1),
                "target_run_seconds": round(sized["run_seconds"], 1),
                "finetuned_over_probe": round(
                    target["fit"]["probes"][0]["size_bytes"]
                    / max(p["size_bytes"] for p in target["search"]["probes"]
                          if p["size_bytes"] <= target["search"]["goal"][1]), 4)
                if target["fit"] else None})
            print(json.dumps({"model": folder.name, **rows[-1]}), file=sys.stderr, flush=True)
        results[folder.name] = {"num_gaussians": ply_vertex_count(ply),
                                "test_views": len(scene.getTestCameras()), "levels": rows}
    print(json.dumps({"date": started,
                      "load_average": [[round(x, 2) for x in v] for v in (load, os.getloadavg())],
                      "finetune_size_ratio": FINETUNE_SIZE_RATIO,
                      "finetune_iterations": args.finetune_iterations, "seed": args.seed,
                      "models": results,
                      "work": str(work)}, indent=1))


if __name__ == "__main__":
    main()
