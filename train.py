"""Train a 3D Gaussian Splatting model: ``python train.py -s <scene> -m <model folder>``.

Flags keep the original 3DGS names (``arguments/``; the codec's in ``compression/settings.py``,
whose unset values come from the chosen layout). Outputs go to the model folder:
cfg_args, cameras.json, input.ply, point_cloud/iteration_<N>/point_cloud.ply, chkpnt<N>.pth and
TensorBoard events. Then, unless --skip_compress, the codec runs on the trained model (one
--layout per run) into compression/<layout>/iteration_<k>/. ``--given_ply_path <model>`` skips
training and compresses that model: a 3DGS PLY, a .spz, .sog, .splat, .ksplat or PlayCanvas
compressed .ply converted by splat-transform, or one of our bitstreams (bins folder, bins.zip,
compact .gsc) decoded (with -s: cameras for the importance, finetune and evaluation; without:
camera-free importance, no finetune); the codec's prepare (a size target's search) then runs
before anything is written, so a refused target leaves the model folder as it was.
"""
from __future__ import annotations

import argparse
import logging
import sys
import uuid
from pathlib import Path
from typing import Optional, Sequence

from arguments import ModelParams, OptimizationParams, PipelineParams, add_arguments, extract
from compression.settings import CompressionParams
from training import TrainOptions, configure_logging, train
from training.compress import (compress_model, load_given_model, prepare_compression,
                               resolve_compression, write_model_files)
from utils.cli import run_main
from utils.threads import add_threads_argument, set_threads

logger = logging.getLogger("train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for cls in (ModelParams, OptimizationParams, PipelineParams, CompressionParams):
        add_arguments(parser, cls)
    parser.add_argument("--test_iterations", nargs="+", type=int, default=[7_000, 30_000])
    parser.add_argument("--save_iterations", nargs="+", type=int, default=[7_000, 30_000],
                        help="the final iteration is always saved too")
    parser.add_argument("--checkpoint_iterations", nargs="+", type=int, default=[])
    parser.add_argument("--start_checkpoint", type=str, default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--detect_anomaly", action="store_true",
                        help="torch.autograd anomaly detection (slow)")
    add_threads_argument(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    args.threads = set_threads(args.threads)  # cfg_args records the count that ran
    flags = extract(CompressionParams, args)
    settings = resolve_compression(flags, scene=bool(args.source_path))
    vars(args).update(settings.recorded)  # cfg_args records what runs
    if not args.source_path and not flags.given_ply_path:
        raise ValueError("-s/--source_path is required (or --given_ply_path to compress a PLY)")
    if args.source_path and not Path(args.source_path).is_dir():
        raise FileNotFoundError(f"-s/--source_path {args.source_path}: scene folder not found")
    if not args.model_path:
        args.model_path = str(Path("output") / uuid.uuid4().hex[:10])
    logger.info("Output folder: %s", args.model_path)
    dataset, pipe = extract(ModelParams, args), extract(PipelineParams, args)
    prepared = None
    if flags.given_ply_path:
        scene, gaussians = load_given_model(dataset, flags.given_ply_path)
        if not flags.skip_compress:  # a refused setting or target leaves the folder as it was
            prepared = prepare_compression(gaussians, scene, settings, pipe, seed=args.seed)
        write_model_files(args.model_path, scene, args)
    else:
        options = TrainOptions(test_iterations=args.test_iterations,
                               save_iterations=args.save_iterations,
                               checkpoint_iterations=args.checkpoint_iterations,
                               start_checkpoint=args.start_checkpoint, quiet=args.quiet,
                               seed=args.seed, detect_anomaly=args.detect_anomaly)
        scene, gaussians = train(dataset, extract(OptimizationParams, args), pipe, options,
                                 cfg=args)
        logger.info("Training complete.")
    if flags.skip_compress:
        logger.info("--skip_compress: no codec run.")
        return
    compress_model(gaussians, scene, settings, pipe, args.model_path, quiet=args.quiet,
                   seed=args.seed, prepared=prepared)


if __name__ == "__main__":
    sys.exit(run_main(main, "train.py", sys.argv[1:]))
