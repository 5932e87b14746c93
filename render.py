"""Render the train/test views of a trained model, like the original 3DGS render.py.

    python render.py -m <model> [-s <scene>] [--iteration N] [--skip_train] [--skip_test] [--quiet]

Flags saved in ``<model>/cfg_args`` at training time are reused; flags given here win. Images
go to ``<model>/<train|test>/ours_<N>/{renders,gt}/00000.png ...``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from arguments import ModelParams, PipelineParams, add_arguments, extract, get_combined_args
from gaussian_renderer import render
from scene import Scene
from scene.gaussian_model import GaussianModel
from utils.render_utils import default_device, render_sets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Render the views of a trained 3DGS model.")
    add_arguments(parser, ModelParams, sentinel=True)
    add_arguments(parser, PipelineParams, sentinel=True)
    parser.add_argument("--iteration", type=int, default=-1,
                        help="iteration to render (default: -1, the latest saved)")
    parser.add_argument("--skip_train", action="store_true", help="do not render train views")
    parser.add_argument("--skip_test", action="store_true", help="do not render test views")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> list[Path]:
    parser = build_parser()
    args = get_combined_args(parser, argv)
    if not getattr(args, "model_path", None):
        parser.error("-m/--model_path is required")
    if not Path(args.model_path).is_dir():
        parser.error(f"-m/--model_path {args.model_path}: model folder not found")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    dataset, pipe = extract(ModelParams, args), extract(PipelineParams, args)

    gaussians = GaussianModel(dataset.sh_degree)
    scene = Scene(dataset, gaussians, load_iteration=args.iteration, shuffle=False)
    device = default_device()
    gaussians.to(device)
    background = torch.full((3,), float(dataset.white_background), device=device)

    def render_fn(view):
        return render(view.to(device), gaussians, pipe, background)["render"]

    return render_sets(scene, render_fn, scene.loaded_iter, skip_train=args.skip_train,
                       skip_test=args.skip_test, method="ours", quiet=args.quiet)


if __name__ == "__main__":
    main(sys.argv[1:])
