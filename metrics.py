"""Evaluate rendered test views: PSNR, SSIM and (with VGG weights) LPIPS per model folder.

Usage: ``python metrics.py -m <model> [<model> ...] [--lpips_weights PATH] [--quiet]``

Reads ``<model>/test/<method>/{renders,gt}/*.png`` and writes ``<model>/results.json`` and
``<model>/per_view.json`` (the original 3DGS format). LPIPS needs a weights file (see
``utils/lpips.py`` for its keys), given by ``--lpips_weights`` or the ``LPIPS_WEIGHTS``
environment variable; without one, LPIPS is left out of the results.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import torch

from utils.cli import run_main
from utils.lpips import LPIPS, load_lpips
from utils.metrics_utils import evaluate_model, format_table
from utils.render_utils import default_device
from utils.threads import add_threads_argument, set_threads

log = logging.getLogger("metrics")


def pick_device(name: str) -> torch.device:
    """``auto``: the current accelerator when one is available, else the CPU."""
    return default_device() if name == "auto" else torch.device(name)


def resolve_lpips(weights: str | None, device: torch.device) -> LPIPS | None:
    """The LPIPS network from ``weights`` or ``$LPIPS_WEIGHTS``; None (said in one line) if unset."""
    weights = weights or os.environ.get("LPIPS_WEIGHTS")
    if not weights:
        log.warning("LPIPS unavailable: no weights given (--lpips_weights or LPIPS_WEIGHTS); "
                    "reporting PSNR and SSIM only")
        return None
    return load_lpips(weights, device)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_paths", "-m", required=True, nargs="+", type=str, default=[])
    parser.add_argument("--lpips_weights", type=str, default=None,
                        help="state dict with VGG16 'features.*' and LPIPS 'lin*' weights")
    parser.add_argument("--device", type=str, default="auto", help="torch device (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    set_threads(args.threads)

    device = pick_device(args.device)
    lpips_net = resolve_lpips(args.lpips_weights, device)
    for model_path in args.model_paths:
        results = evaluate_model(model_path, lpips_net, device, progress=not args.quiet)
        if not args.quiet:
            print(format_table(model_path, results))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "metrics.py", sys.argv[1:]))
