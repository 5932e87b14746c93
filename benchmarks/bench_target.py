"""Size targets against the quality ladder (``--layout compact``) on trained models.

For each model folder (``train.py`` output: cfg_args names the scene, its resolution and
background; the latest ``point_cloud/iteration_<N>/point_cloud.ply`` is compressed) and each
``--quality`` level of ``--levels``: compress at that level with the finetune, then with
``--target_size`` set to the level's finetuned size, so that the target's file and the
level's file have about the same size and their PSNRs compare directly. One evaluation (the
held-out test views) at the end of each finetune. Prints one JSON object: per model and level
the ladder's size and PSNR, the target's size reached, whether it lies in [97 %, 100 %], its
PSNR and the difference, the ladder position found, the probes and the search's seconds.

Usage: ``python benchmarks/bench_target.py MODEL [MODEL ...] [--levels 3 5 7]
[--finetune_iterations 500] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import ModelParams, PipelineParams, read_cfg_args  # noqa: E402
from compression.settings import ByteSize, CompressionParams  # noqa: E402
from scene import Scene  # noqa: E402
from scene.formats import ply_vertex_count  # noqa: E402
from scene.gaussian_model import GaussianModel  # noqa: E402
from training import configure_logging  # noqa: E402
from training.compress import compress_model, resolve_compression  # noqa: E402
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
              quiet: bool, **flags) -> dict:
    """compress_model on a fresh copy of the model into ``out``: the last save's report and
    the run's seconds."""
    shutil.rmtree(out, ignore_errors=True)
    gaussians = GaussianModel(dataset.sh_degree)
    gaussians.load_ply(ply)
    cfg = CompressionParams(layout="compact", finetune_iterations=iterations,
                            finetune_test_iterations=[iterations], **flags)
    start = time.perf_counter()
    report = compress_model(gaussians, scene, resolve_compression(cfg, scene=True),
                            PipelineParams(), out, quiet=quiet).reports[-1]
    return {**report, "run_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="trained model folders")
    parser.add_argument("--levels", nargs="+", type=int, default=[3, 5, 7])
    parser.add_argument("--finetune_iterations", type=int, default=500)
    parser.add_argument("--out", type=str, default=None, help="work folder (default: temp)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    configure_logging(args.quiet)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_target_"))
    results = {}
    for folder in map(Path, args.models):
        scene, ply, dataset = _scene(folder, work / folder.name)
        rows = []
        for level in args.levels:
            ladder = _compress(scene, ply, dataset, work / folder.name / f"q{level}",
                               args.finetune_iterations, args.quiet, quality=level)
            target_bytes = ladder["size_bytes"]
            sized = _compress(scene, ply, dataset, work / folder.name / f"t{level}",
                              args.finetune_iterations, args.quiet,
                              target_size=ByteSize(target_bytes))
            target = sized["target"]
            rows.append({
                "quality": level, "ladder_bytes": ladder["size_bytes"],
                "ladder_psnr": round(ladder["psnr"], 3), "target_bytes": target_bytes,
                "reached_bytes": sized["size_bytes"],
                "share_of_target": round(sized["size_bytes"] / target_bytes, 4),
                "within": target["within"], "target_psnr": round(sized["psnr"], 3),
                "psnr_minus_ladder": round(sized["psnr"] - ladder["psnr"], 3),
                "ladder_position": round(target["settings"]["ladder_position"], 3),
                "outcome": target["outcome"], "probes": len(target["search"]["probes"]),
                "fit_probes": len((target["fit"] or {}).get("probes", [])),
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
    print(json.dumps({"finetune_iterations": args.finetune_iterations, "models": results,
                      "work": str(work)}, indent=1))


if __name__ == "__main__":
    main()
