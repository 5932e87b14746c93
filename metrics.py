"""Evaluate rendered test views: PSNR, SSIM and LPIPS per model folder.

Usage: ``python metrics.py -m <model> [<model> ...] [--lpips_weights PATH] [--quiet]``

Reads ``<model>/test/<method>/{renders,gt}/*.png`` and writes ``<model>/results.json`` and
``<model>/per_view.json`` (the original 3DGS format). LPIPS (VGG) uses torchvision's VGG16
weights from torch's cache (``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``, downloaded
there on first use) as graphdeco's metrics.py does through the lpips package, or a weights
file given by ``--lpips_weights`` / ``$LPIPS_WEIGHTS`` (``utils/lpips.py``). Offline without
the cached file, one line says LPIPS was skipped and PSNR/SSIM are reported alone.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import torch

from utils.cli import run_main
from utils.lpips import lpips_for_evaluation
from utils.metrics_utils import evaluate_model, format_table, rendered_methods
from utils.render_utils import default_device
from utils.threads import add_threads_argument, set_threads

log = logging.getLogger("metrics")


def pick_device(name: str) -> torch.device:
    """``auto``: the current accelerator when one is available, else the CPU."""
    return default_device() if name == "auto" else torch.device(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_paths", "-m", required=True, nargs="+", type=str, default=[])
    parser.add_argument("--lpips_weights", type=str, default=None,
                        help="state dict with VGG16 'features.*' and LPIPS 'lin*' weights (default: "
                             "$LPIPS_WEIGHTS, else torchvision's VGG16 from torch's cache)")
    parser.add_argument("--device", type=str, default="auto", help="torch device (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    set_threads(args.threads)

    for model_path in args.model_paths:  # every input checked before LPIPS loads (or downloads)
        rendered_methods(model_path)
    device = pick_device(args.device)
    lpips_net = lpips_for_evaluation(args.lpips_weights, device, progress=not args.quiet)
    for model_path in args.model_paths:
        results = evaluate_model(model_path, lpips_net, device, progress=not args.quiet)
        if not args.quiet:
            print(format_table(model_path, results))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "metrics.py", sys.argv[1:]))
