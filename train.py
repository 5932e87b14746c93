"""Train a 3D Gaussian Splatting model: ``python train.py -s <scene> -m <model folder>``.

Flags keep the original 3DGS names (see ``arguments/``). Outputs go to the model folder:
cfg_args, cameras.json, input.ply, point_cloud/iteration_<N>/point_cloud.ply, chkpnt<N>.pth and
TensorBoard events.
"""
from __future__ import annotations

import argparse
import logging
import sys
import uuid
from pathlib import Path
from typing import Optional, Sequence

from arguments import (CompressionParams, ModelParams, OptimizationParams, PipelineParams,
                       add_arguments, extract)
from training import TrainOptions, configure_logging, train

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
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    if not args.source_path:
        raise SystemExit("train.py: -s/--source_path is required")
    if not Path(args.source_path).is_dir():
        raise SystemExit(f"train.py: scene folder {args.source_path} not found")
    if not args.model_path:
        args.model_path = str(Path("output") / uuid.uuid4().hex[:10])
    logger.info("Output folder: %s", args.model_path)
    options = TrainOptions(test_iterations=args.test_iterations,
                           save_iterations=args.save_iterations,
                           checkpoint_iterations=args.checkpoint_iterations,
                           start_checkpoint=args.start_checkpoint, quiet=args.quiet,
                           seed=args.seed, detect_anomaly=args.detect_anomaly)
    scene, gaussians = train(extract(ModelParams, args), extract(OptimizationParams, args),
                             extract(PipelineParams, args), options, cfg=args)
    compression = extract(CompressionParams, args)
    if compression.skip_compress:
        logger.info("Training complete (--skip_compress: no codec run).")
    else:
        logger.info("Training complete.")


if __name__ == "__main__":
    sys.exit(main())
